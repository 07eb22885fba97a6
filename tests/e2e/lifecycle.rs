use crate::harness::*;
use std::time::Duration;

fn web(scale: u32) -> String {
    format!(
        "services:\n  web:\n    image: {IMAGE}\n    command: httpd -f -p 8080 -h /www\n    stop_grace_period: 1s\n    ports: [\"8080\"]\n    labels:\n      berth.scale: \"{scale}\"\n"
    )
}

#[test]
fn deploy_scale_kill_stop_start_rm() {
    let a = Agent::start();
    let out = a.deploy("life", &web(1));
    assert!(out.contains("1/1 running"), "{out}");
    let inst = a.running("life");
    assert_eq!(inst.len(), 1);
    assert_eq!(inst[0].name, "life_web_1");
    // The page answers on the published port.
    let port = inst[0].ports[0].host_port;
    let body = ureq::get(format!("http://127.0.0.1:{port}/"))
        .call()
        .expect("http")
        .body_mut()
        .read_to_string()
        .expect("body");
    assert_eq!(body.trim(), "hello from berth");

    a.ok(&["scale", "life", "web=3"]);
    assert_eq!(a.running("life").len(), 3);
    a.ok(&["scale", "life", "web=1"]);
    wait_until("scale down to 1", Duration::from_secs(30), || {
        a.engine_containers("life").len() == 1
    });

    // Killed from outside: replaced.
    docker_ok(&["kill", "life_web_1"]);
    wait_until("killed container replaced", Duration::from_secs(15), || {
        a.running("life").len() == 1
    });
    let events = a.ok(&["events", "life"]);
    assert!(
        events.contains("life_web_1 exited with code 137"),
        "{events}"
    );

    a.ok(&["stop", "life"]);
    assert!(a.running("life").is_empty());
    assert!(a.ok(&["apps"]).contains("stopped"));
    a.ok(&["start", "life"]);
    assert_eq!(a.running("life").len(), 1);

    a.ok(&["rm", "life"]);
    assert!(a.engine_containers("life").is_empty());
    let nets = docker_ok(&[
        "network",
        "ls",
        "--filter",
        &format!("label=berth.node={}", a.node_id),
        "-q",
    ]);
    assert!(nets.is_empty(), "network left behind");
    assert!(a.fails(&["ps", "life"]).contains("not deployed"));
}

#[test]
fn redeploy_recreates_and_updates_replace_only_changed_services() {
    let a = Agent::start();
    let tpl = |cmd: &str| {
        format!(
            "services:\n  a:\n    image: {IMAGE}\n    command: {cmd}\n    stop_grace_period: 1s\n  b:\n    image: {IMAGE}\n    command: sleep 3600\n    stop_grace_period: 1s\n"
        )
    };
    a.deploy("upd", &tpl("sleep 1000"));
    let ids = |a: &Agent| -> Vec<(String, String)> {
        a.running("upd")
            .into_iter()
            .map(|i| (i.service, i.container_id))
            .collect()
    };
    let before = ids(&a);
    assert_eq!(before.len(), 2);

    let out = a.deploy("upd", &tpl("sleep 2000"));
    assert!(
        out.contains("deploying a") && out.contains("unchanged b"),
        "{out}"
    );
    // The deploy returns once a's new version runs; the old container goes after.
    wait_until("a's old container removed", Duration::from_secs(20), || {
        ids(&a).len() == 2
    });
    let after = ids(&a);
    assert_ne!(before[0], after[0], "changed service a must be replaced");
    assert_eq!(
        before[1], after[1],
        "unchanged service b must keep its container"
    );

    a.ok(&["redeploy", "upd"]);
    let again = ids(&a);
    assert!(
        again.iter().zip(&after).all(|(x, y)| x.1 != y.1),
        "redeploy recreates every container"
    );
    let spec = a.ok(&["inspect", "upd", "--json"]);
    assert!(
        spec.contains("sleep") && spec.contains("\"redeploy_gen\": 1"),
        "{spec}"
    );
}

#[test]
fn depends_start_order_and_global() {
    let a = Agent::start();
    let yaml = format!(
        "services:\n  web:\n    image: {IMAGE}\n    command: sleep 3600\n    stop_grace_period: 1s\n    depends_on: [db]\n    labels:\n      aliyun.scale: \"2\"\n  db:\n    image: {IMAGE}\n    command: sleep 3600\n    stop_grace_period: 1s\n  mon:\n    image: {IMAGE}\n    command: sleep 3600\n    stop_grace_period: 1s\n    labels:\n      berth.global: \"true\"\n      berth.scale: \"5\"\n"
    );
    a.deploy("ord", &yaml);
    assert_eq!(a.running("ord").len(), 4, "db + 2 web + 1 global mon");
    // db started before any web container was created.
    let ev = a.ok(&["events", "ord", "-n", "100"]);
    let pos = |s: &str| {
        ev.find(s)
            .unwrap_or_else(|| panic!("{s} not in events:\n{ev}"))
    };
    assert!(pos("started ord_db_1") < pos("created ord_web_1"), "{ev}");
    assert!(pos("started ord_db_1") < pos("created ord_web_2"), "{ev}");
}

/// The brief's example templates that mean something on one host deploy unchanged, with
/// local images tagged as they name them (nothing can be pulled here).
#[test]
fn brief_examples_deploy_on_one_host() {
    // The brief's examples, copied unchanged into tests/data/ok as example-NAME.yml.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ok");
    let a = Agent::start();
    for image in ["wordpress:4.2", "wordpress"] {
        docker_ok(&["tag", WEB_IMAGE, image]);
    }
    for image in [
        "mysql:5.6",
        "mysql",
        "redis",
        "mariadb",
        "registry.example.com/nodejsapp",
        "registry.example.com/custom",
    ] {
        docker_ok(&["tag", IDLE_IMAGE, image]);
    }
    // (file, app, expected running containers)
    for (file, app, want) in [
        ("example-wordpress.yml", "wp", 3 + 1),
        ("example-depends-sticky.yml", "sticky", 3),
        ("example-rolling.yml", "rolling", 4 + 1),
        ("example-monitoring.yml", "mon", 1 + 1 + 2),
    ] {
        let out = a.ok(&[
            "deploy",
            "-f",
            path_str(&dir.join(file)),
            "--name",
            app,
            "--timeout",
            "60",
        ]);
        assert!(
            out.contains(&format!("{want}/{want} running")),
            "{file}: {out}"
        );
        let inspect: berth::wire::InspectResponse =
            serde_json::from_str(&a.ok(&["inspect", app, "--json"])).expect("json");
        assert!(!inspect.spec.services.is_empty());
    }
    // Links and depends from the seed platform's templates: wordpress reaches db as `mysql`.
    let out = docker_ok(&["exec", "wp_web_1", "nslookup", "mysql"]);
    assert!(out.contains("Address"), "{out}");
    // Cleanup is the harness's (docker rm -f): these images ignore SIGTERM, so `rm` would
    // wait out each container's 10 s grace.
}

/// `events -f` follows live; an out-of-memory kill shows as `oom`, and the engine restarting
/// the container on its own (restart policy) as `restart`.
#[test]
fn events_follow_shows_oom_and_engine_restarts() {
    let a = Agent::start();
    let mut follow = std::process::Command::new(bin())
        .args(["events", "hog", "-f"])
        .env("BERTH_API", a.api())
        .env("BERTH_TOKEN_FILE", a.dir.path().join("api.token"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("events -f runs");
    // Doubles a string until the 16 MiB limit kills it; `always` makes the engine restart it.
    let p = a.template(
        "hog",
        &format!("services:\n  web:\n    image: {IMAGE}\n    command: sh -c 'sleep 1; x=aaaaaaaa; while :; do x=$$x$$x; done'\n    mem_limit: 16m\n    memswap_limit: 16m\n    restart: always\n"),
    );
    a.ok(&["deploy", "-f", path_str(&p), "--name", "hog", "--detach"]);
    wait_until("oom and restart events", Duration::from_secs(40), || {
        let ev = a.ok(&["events", "hog", "-n", "200"]);
        ev.contains("ran out of memory") && ev.contains("was restarted by the engine")
    });
    let _ = follow.kill();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut follow.stdout.take().expect("stdout"), &mut out)
        .expect("read");
    let _ = follow.wait();
    assert!(
        out.contains("deploy") && out.contains("oom"),
        "events -f printed:\n{out}"
    );
}

/// `rm` keeps an app's named volumes (data outlives the app); `rm --volumes` removes them.
#[test]
fn rm_keeps_named_volumes_unless_asked() {
    let a = Agent::start();
    let yaml = format!(
        "services:\n  web:\n    image: {IMAGE}\n    command: sh -c 'echo kept > /data/f; exec sleep 600'\n    stop_grace_period: 1s\n    volumes: [\"data:/data\"]\nvolumes:\n  data: {{}}\n"
    );
    let vols = |a: &Agent| {
        docker_ok(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            &format!("label=berth.node={}", a.node_id),
        ])
    };
    a.deploy("vol", &yaml);
    a.ok(&["rm", "vol"]);
    assert_eq!(vols(&a), "vol_data", "rm without --volumes keeps the data");
    a.deploy("vol", &yaml);
    // Version numbers continue after rm, so this is web-002, named as compose does.
    let out = docker_ok(&["exec", "vol_web_1", "cat", "/data/f"]);
    assert_eq!(out, "kept");
    a.ok(&["rm", "vol", "--volumes"]);
    assert_eq!(vols(&a), "", "rm --volumes removes them");
}

/// The one-shot rule: a service without `restart` whose container exits 0 on its own is done
/// (not restarted, not replaced, its version normal), a crashing one is restarted, an agent
/// crash changes neither, and a new deploy runs the one-shot again as `docker compose up`.
#[test]
fn a_one_shot_without_restart_is_done_and_a_crash_is_restarted() {
    let mut a = Agent::start();
    let yaml = format!(
        "services:\n  init:\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"echo configured\"]\n  web:\n    image: {IMAGE}\n    command: sleep 600\n    depends_on: [init]\n  flaky:\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"sleep 1; exit 3\"]\n"
    );
    let p = a.template("oneshot", &yaml);
    a.ok(&["deploy", "-f", path_str(&p), "-d"]);
    // Every container of a service, whatever its state, one id a line.
    let id_of = |service: &str| {
        a.ps("oneshot")
            .into_iter()
            .filter(|i| i.service == service)
            .map(|i| i.container_id)
            .collect::<Vec<_>>()
            .join("\n")
    };
    wait_until("init ran and web runs", Duration::from_secs(60), || {
        let init = id_of("init");
        init.lines().count() == 1
            && docker_ok(&[
                "inspect",
                "-f",
                "{{.State.Status}} {{.State.ExitCode}}",
                init.trim(),
            ]) == "exited 0"
            && a.running("oneshot").iter().any(|i| i.service == "web")
    });
    let init = id_of("init").trim().to_string();
    let started = |id: &str| docker_ok(&["inspect", "-f", "{{.State.StartedAt}}", id]);
    let first_start = started(&init);
    // Several reconcile passes later: the same container, never started again.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(id_of("init").trim(), init, "the one-shot was replaced");
    assert_eq!(
        started(&init),
        first_start,
        "the one-shot was started again"
    );
    // The crashing service is brought back.
    wait_until("flaky restarted", Duration::from_secs(30), || {
        let f = id_of("flaky");
        !f.trim().is_empty()
            && docker_ok(&["inspect", "-f", "{{.RestartCount}}", f.trim()])
                .parse::<u32>()
                .unwrap_or(0)
                >= 1
    });
    let versions = a.ok(&["versions", "oneshot/init"]);
    assert!(
        versions.contains("normal"),
        "a done one-shot's version is normal: {versions}"
    );
    // An agent crash changes nothing.
    a.restart();
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(
        started(&init),
        first_start,
        "restarted after an agent crash"
    );
    // A new deploy runs it again, as `docker compose up` does.
    a.ok(&["deploy", "-f", path_str(&p), "-d"]);
    wait_until("the one-shot ran again", Duration::from_secs(30), || {
        started(&init) != first_start
            && docker_ok(&["inspect", "-f", "{{.State.Status}}", &init]) == "exited"
    });
}

/// After a reboot: a one-shot the agent saw done before it stays done, while a service
/// without `restart` whose container the shutdown stopped (exit 0 on SIGTERM) comes back.
#[test]
fn after_a_reboot_a_done_one_shot_stays_done_and_what_the_shutdown_stopped_comes_back() {
    let mut a = Agent::start();
    let yaml = format!(
        "services:\n  init:\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"echo configured\"]\n  web:\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep 600 & wait\"]\n    stop_grace_period: 5s\n"
    );
    let p = a.template("boot", &yaml);
    a.ok(&["deploy", "-f", path_str(&p), "-d"]);
    let id_of = |a: &Agent, service: &str| {
        a.ps("boot")
            .into_iter()
            .find(|i| i.service == service)
            .map(|i| i.container_id)
            .unwrap_or_default()
    };
    wait_until("init done and web running", Duration::from_secs(60), || {
        let init = id_of(&a, "init");
        !init.is_empty()
            && docker_ok(&[
                "inspect",
                "-f",
                "{{.State.Status}} {{.State.ExitCode}}",
                &init,
            ]) == "exited 0"
            && a.running("boot").iter().any(|i| i.service == "web")
    });
    // Reconcile passes see the one-shot done (and record it).
    std::thread::sleep(Duration::from_secs(6));
    let (init, web) = (id_of(&a, "init"), id_of(&a, "web"));
    let started = |id: &str| docker_ok(&["inspect", "-f", "{{.State.StartedAt}}", id]);
    let (init_start, web_start) = (started(&init), started(&web));
    // The shutdown: the agent goes first (its unit starts after the engine's), then the
    // engine stops the containers; web exits 0 on the SIGTERM.
    a.restart_as_after_reboot(|| {
        docker_ok(&["stop", &web]);
        assert_eq!(
            docker_ok(&["inspect", "-f", "{{.State.ExitCode}}", &web]),
            "0"
        );
    });
    wait_until(
        "web came back after the reboot",
        Duration::from_secs(30),
        || {
            started(&web) != web_start
                && docker_ok(&["inspect", "-f", "{{.State.Status}}", &web]) == "running"
        },
    );
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(
        started(&init),
        init_start,
        "the one-shot seen done ran again after the reboot"
    );
    assert_eq!(id_of(&a, "init"), init, "the one-shot was replaced");
}

/// `berth stop|start|restart APP/SERVICE[/SLOT]` and `berth rm APP/SERVICE` on the real
/// engine: the rest of the app runs on untouched; a restart keeps the container (same id,
/// new start time); a deploy starts what was stopped.
#[test]
fn per_service_and_per_slot_actions() {
    let a = Agent::start();
    let tpl = format!(
        "services:\n  web:\n    image: {IMAGE}\n    command: httpd -f -p 8080 -h /www\n    stop_grace_period: 1s\n    labels:\n      berth.scale: \"2\"\n  worker:\n    image: {IMAGE}\n    command: sleep 3600\n    stop_grace_period: 1s\n  cache:\n    image: {IMAGE}\n    command: sleep 3600\n    stop_grace_period: 1s\n"
    );
    a.deploy("ops", &tpl);
    assert_eq!(a.running("ops").len(), 4);
    let id_of = |svc: &str, slot: u32| -> String {
        a.ps("ops")
            .into_iter()
            .find(|i| i.service == svc && i.slot == slot)
            .map(|i| i.container_id)
            .unwrap_or_default()
    };
    let running = |svc: &str| -> Vec<u32> {
        a.running("ops")
            .into_iter()
            .filter(|i| i.service == svc)
            .map(|i| i.slot)
            .collect()
    };
    let worker = id_of("worker", 1);

    // One slot: stopped, kept, and neither replaced nor restarted by the agent.
    let web2 = id_of("web", 2);
    a.ok(&["stop", "ops/web/2"]);
    assert_eq!(running("web"), vec![1]);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(running("web"), vec![1], "a stopped slot stays stopped");
    assert_eq!(
        id_of("web", 2),
        web2,
        "the stopped slot's container is kept"
    );
    assert_eq!(
        docker_ok(&["inspect", "-f", "{{.State.Status}}", &web2]).trim(),
        "exited"
    );
    assert_eq!(running("worker"), vec![1]);
    a.ok(&["start", "ops/web/2"]);
    assert_eq!(running("web"), vec![1, 2]);
    assert_eq!(id_of("web", 2), web2, "started again, the same container");

    // A whole service.
    a.ok(&["stop", "ops/worker"]);
    assert!(running("worker").is_empty());
    assert_eq!(running("web"), vec![1, 2]);
    let e = a.fails(&["start", "ops/worker/1"]);
    assert!(e.contains("stopped as a whole"), "{e}");
    a.ok(&["start", "ops/worker"]);
    assert_eq!(running("worker"), vec![1]);
    assert_eq!(id_of("worker", 1), worker);

    // Restart: the same container, started again.
    let started = |id: &str| docker_ok(&["inspect", "-f", "{{.State.StartedAt}}", id]);
    let before = started(&worker);
    let out = a.ok(&["restart", "ops/worker"]);
    assert!(out.contains("restarted ops_worker"), "{out}");
    assert_eq!(id_of("worker", 1), worker);
    assert_ne!(started(&worker), before, "restarted");
    let web1 = id_of("web", 1);
    let web1_before = started(&web1);
    let out = a.ok(&["restart", "ops/web/2"]);
    assert_eq!(out.matches("restarted").count(), 1, "{out}");
    assert_eq!(started(&web1), web1_before, "slot 1 untouched");
    let out = a.ok(&["restart", "ops"]);
    assert_eq!(out.matches("restarted").count(), 4, "{out}");
    let ev = a.ok(&["events", "ops"]);
    assert!(ev.contains("stopping ops/web/2"), "{ev}");
    assert!(ev.contains("restarting ops/worker"), "{ev}");

    // Bad targets change nothing.
    for (args, says) in [
        (&["stop", "ops/nope"][..], "has no service \"nope\""),
        (&["stop", "ops/web/3"][..], "there is no slot 3"),
        (&["stop", "ops/web/0"][..], "APP/SERVICE/SLOT"),
        (&["restart", "ghost/web"][..], "not deployed"),
        (&["rm", "ops/web/1"][..], "APP/SERVICE"),
    ] {
        let e = a.fails(args);
        assert!(e.contains(says), "{args:?}: {e}");
    }
    assert_eq!(a.running("ops").len(), 4);

    // A deploy starts what was stopped.
    a.ok(&["stop", "ops/cache"]);
    assert!(running("cache").is_empty());
    a.deploy("ops", &tpl);
    assert_eq!(running("cache"), vec![1]);

    // rm APP/SERVICE: the service's containers go, the others stay as they were.
    let web_ids = (id_of("web", 1), id_of("web", 2));
    a.ok(&["rm", "ops/cache"]);
    assert!(
        a.engine_containers("ops")
            .iter()
            .all(|(name, _)| !name.contains("_cache")),
        "{:?}",
        a.engine_containers("ops")
    );
    assert_eq!((id_of("web", 1), id_of("web", 2)), web_ids);
    let spec = a.ok(&["inspect", "ops"]);
    assert!(!spec.contains("\"cache\""), "{spec}");
    let e = a.fails(&["rm", "ops/cache"]);
    assert!(e.contains("has no service"), "{e}");
    a.ok(&["rm", "ops/worker"]);
    let e = a.fails(&["rm", "ops/web"]);
    assert!(e.contains("only service"), "{e}");
    assert_eq!(running("web"), vec![1, 2]);
}

/// An image that exposes ports (`EXPOSE 80` and a UDP port), built from the test web image.
fn exposed_image() -> &'static str {
    const NAME: &str = "berth-test/exposed:latest";
    if !std::process::Command::new("docker")
        .args(["image", "inspect", NAME])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let mut child = std::process::Command::new("docker")
            .args(["build", "-q", "-t", NAME, "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("docker build");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(format!("FROM {WEB_IMAGE}\nEXPOSE 53/udp 80\n").as_bytes())
            .expect("dockerfile");
        assert!(child.wait().expect("build").success(), "docker build");
    }
    NAME
}

/// `berth run NAME IMAGE`: a one-service app from an image, reached through the router and on
/// the image's exposed port, with variables and a command as given; bad input stores nothing.
#[test]
fn run_deploys_an_image_without_a_template() {
    let http_port = free_port();
    let a = Agent::start_with_config(&format!("[router]\nhttp = \"127.0.0.1:{http_port}\"\n"));
    let image = exposed_image();
    // Routed, two replicas, probed on the image's port.
    let out = a.ok(&[
        "run",
        "hello",
        image,
        "--replicas",
        "2",
        "--route",
        "hello.test",
        "--probe",
        "/license.txt",
    ]);
    assert!(out.contains("hello-001"), "{out}");
    assert_eq!(a.running("hello").len(), 2);
    let (status, body, _) = router_get(http_port, "hello.test", "/", None);
    assert_eq!((status, body.trim()), (200, "hello from berth"));
    let tpl = a.ok(&["inspect", "hello", "--template"]);
    assert!(
        tpl.starts_with("# Deployed from an image: berth run hello"),
        "{tpl}"
    );
    assert!(
        tpl.contains("aliyun.routing.port_80: \"hello.test\""),
        "{tpl}"
    );
    assert!(tpl.contains("http://container:80/license.txt"), "{tpl}");
    assert!(
        a.ok(&["inspect", "hello"])
            .contains("deployed from an image")
    );

    // No route: the image's first exposed TCP port is published on a free host port.
    a.ok(&["run", "plain", image]);
    let i = &a.running("plain")[0];
    let p = i
        .ports
        .iter()
        .find(|p| p.container_port == 80)
        .expect("80 published");
    let body = ureq::get(format!("http://127.0.0.1:{}/", p.host_port))
        .call()
        .expect("http")
        .body_mut()
        .read_to_string()
        .expect("body");
    assert_eq!(body.trim(), "hello from berth");

    // A command and variables as written ($ included), on a port named with -p.
    let port = free_port();
    a.ok(&[
        "run",
        "cmd",
        IMAGE,
        "-p",
        &format!("127.0.0.1:{port}:8080"),
        "-e",
        "GREETING=hi $HOME ${X}",
        "--",
        "sh",
        "-c",
        "echo \"$GREETING\" > /www/g && exec httpd -f -p 8080 -h /www",
    ]);
    let body = ureq::get(format!("http://127.0.0.1:{port}/g"))
        .call()
        .expect("http")
        .body_mut()
        .read_to_string()
        .expect("body");
    assert_eq!(body.trim(), "hi $HOME ${X}");
    // Run again with another variable: a new version of the same app.
    let out = a.ok(&[
        "run",
        "cmd",
        IMAGE,
        "-p",
        &format!("127.0.0.1:{port}:8080"),
        "-e",
        "GREETING=two",
        "--",
        "sh",
        "-c",
        "echo \"$GREETING\" > /www/g && exec httpd -f -p 8080 -h /www",
    ]);
    assert!(out.contains("cmd-002"), "{out}");

    // Bad input: a clear error, and nothing stored.
    a.deploy(
        "tpl",
        &format!("services:\n  web:\n    image: {IMAGE}\n    command: sleep 600\n"),
    );
    for (args, says) in [
        (
            &["run", "nope", "berth-test/absent:latest"][..],
            "berth-test/absent",
        ),
        (
            &["run", "noport", IMAGE, "--route", "x.test"][..],
            "exposes no TCP port",
        ),
        (&["run", "Bad_Name", IMAGE][..], "app name"),
        (&["run", "badp", image, "-p", "80-90"][..], "one number"),
        (&["run", "bade", image, "-e", "=x"][..], "KEY=VALUE"),
        (&["run", "tpl", IMAGE][..], "deployed from a template"),
    ] {
        let e = a.fails(args);
        assert!(e.contains(says), "{args:?}: {e}");
    }
    let apps = a.ok(&["apps"]);
    for gone in ["nope", "noport", "badp", "bade"] {
        assert!(!apps.contains(gone), "{gone} stored: {apps}");
    }
}
