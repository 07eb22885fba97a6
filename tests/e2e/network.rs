use crate::harness::*;

/// Services answer to their names and link aliases on the app's own network.
#[test]
fn services_resolve_by_name_and_link_alias() {
    let a = Agent::start();
    let yaml = format!(
        "services:\n  db:\n    image: {IMAGE}\n    command: httpd -f -p 8080 -h /www\n    stop_grace_period: 1s\n  web:\n    image: {IMAGE}\n    command: sleep 3600\n    stop_grace_period: 1s\n    links: [\"db:database\"]\n"
    );
    a.deploy("dns", &yaml);
    for host in ["db", "database"] {
        let out = docker_ok(&[
            "exec",
            "dns_web_1",
            "wget",
            "-q",
            "-O-",
            &format!("http://{host}:8080/"),
        ]);
        assert_eq!(out, "hello from berth", "via {host}");
    }
    let net = docker_ok(&[
        "inspect",
        "-f",
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}",
        "dns_web_1",
    ]);
    assert_eq!(net, format!("berth_dns_{}", &a.node_id[..6]));
    let labels = docker_ok(&[
        "inspect",
        "-f",
        "{{index .Config.Labels \"berth.app\"}} {{index .Config.Labels \"berth.slot\"}} {{.HostConfig.RestartPolicy.Name}}",
        "dns_web_1",
    ]);
    // No `restart` in the template: the one-shot rule, which the engine holds as on-failure
    // (a crash comes back at once; an exit 0 stays).
    assert_eq!(labels, "dns 1 on-failure");
}

/// `container_name` (as real compose files use it): the container keeps berth's name and the
/// given name answers on the app network, for other services and their config files.
#[test]
fn a_container_name_answers_as_an_alias_on_the_app_network() {
    let a = Agent::start();
    let yaml = format!(
        "services:\n  db:\n    image: {IMAGE}\n    container_name: myproject-db\n    command: httpd -f -p 8080 -h /www\n    stop_grace_period: 1s\n  web:\n    image: {IMAGE}\n    command: sleep 3600\n    stop_grace_period: 1s\n"
    );
    let cfg = a.berth(&["config", "-f", path_str(&a.template("cname", &yaml))]);
    let warned = String::from_utf8_lossy(&cfg.stderr).into_owned();
    assert!(
        cfg.status.success()
            && warned.contains("`container_name: myproject-db` is a network alias"),
        "berth config warns: {warned}"
    );
    a.deploy("cname", &yaml);
    let got = docker_ok(&[
        "exec",
        "cname_web_1",
        "wget",
        "-q",
        "-O-",
        "http://myproject-db:8080/",
    ]);
    assert_eq!(got, "hello from berth");
    // No container took the given name (it stays free for whatever else runs on the host).
    let names = docker_ok(&["ps", "-a", "--format", "{{.Names}}"]);
    assert!(!names.lines().any(|n| n == "myproject-db"), "{names}");
}

/// `berth image load` brings an image onto an offline host; the app then deploys with it.
#[test]
fn image_load_then_deploy() {
    let a = Agent::start();
    let name = format!("berth-e2e/loaded-{}:1", a.node_id);
    docker_ok(&["tag", IMAGE, &name]);
    let tar = a.dir.path().join("img.tar");
    docker_ok(&["save", "-o", path_str(&tar), &name]);
    docker_ok(&["rmi", &name]);
    let out = a.ok(&["image", "load", path_str(&tar)]);
    assert!(out.contains("Loaded image"), "{out}");
    assert!(a.ok(&["images"]).contains(&name));
    a.deploy("loaded", &format!("services:\n  web:\n    image: {name}\n    command: sleep 60\n    stop_grace_period: 1s\n"));
    a.ok(&["rm", "loaded"]);
    docker_ok(&["rmi", &name]);
    let bad = a.dir.path().join("bad.tar");
    std::fs::write(&bad, vec![7u8; 4096]).expect("write");
    assert!(
        a.fails(&["image", "load", path_str(&bad)])
            .contains("tarball")
    );
}

/// `external_links` as compose does it: a container outside the app that is on the app's
/// network answers to the link alias.
#[test]
fn external_links_alias_a_container_on_the_app_network() {
    let a = Agent::start();
    let ext = format!("ext_{}", a.node_id);
    // Removed even when the test fails (a `docker run` that cannot start leaves it created).
    let _cleanup = Containers(vec![ext.clone()]);
    docker_ok(&[
        "run", "-d", "--name", &ext, IMAGE, "httpd", "-f", "-p", "8080", "-h", "/www",
    ]);
    a.deploy(
        "xl",
        &format!("services:\n  web:\n    image: {IMAGE}\n    command: sleep 600\n    stop_grace_period: 1s\n    external_links: [\"{ext}:legacy\"]\n"),
    );
    docker_ok(&[
        "network",
        "connect",
        &format!("berth_xl_{}", &a.node_id[..6]),
        &ext,
    ]);
    let out = docker_ok(&[
        "exec",
        "xl_web_1",
        "wget",
        "-q",
        "-O-",
        "http://legacy:8080/",
    ]);
    assert_eq!(out, "hello from berth");
    docker_ok(&["rm", "-f", &ext]);
}

/// A service name as long as a DNS label (real files have ones over 48 characters): the engine
/// takes the container name berth derives, and the name resolves on the app network.
#[test]
fn a_sixty_three_character_service_name_deploys_and_resolves() {
    let a = Agent::start();
    let long = format!("db-{}", "x".repeat(60));
    assert_eq!(long.len(), 63);
    let yaml = format!(
        "services:\n  {long}:\n    image: {IMAGE}\n    command: httpd -f -p 8080 -h /www\n    stop_grace_period: 1s\n  web:\n    image: {IMAGE}\n    command: sleep 3600\n    stop_grace_period: 1s\n"
    );
    a.deploy("longname", &yaml);
    let got = docker_ok(&[
        "exec",
        "longname_web_1",
        "wget",
        "-q",
        "-O-",
        &format!("http://{long}:8080/"),
    ]);
    assert_eq!(got, "hello from berth");
    // Per-service commands take the name too.
    a.ok(&["scale", "longname", &format!("{long}=2")]);
    a.wait_running("longname", 3, std::time::Duration::from_secs(60));
}
