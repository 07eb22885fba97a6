use crate::harness::*;
use std::time::Duration;

/// Every bad input gets a clear error and changes nothing.
#[test]
fn bad_inputs_are_refused_and_change_nothing() {
    let a = Agent::start();
    let deploy_err = |name: &str, yaml: &str| -> String {
        let p = a.template(name, yaml);
        a.fails(&["deploy", "-f", path_str(&p), "--name", name])
    };
    let e = deploy_err("yaml", "services:\n  web:\n    image: a\n   ports: [80\n");
    assert!(e.contains("not valid YAML") && e.contains("line 4"), "{e}");
    let e = deploy_err(
        "unknown",
        &format!("services:\n  web:\n    image: {IMAGE}\n    colour: blue\n"),
    );
    assert!(
        e.contains("unknown key `colour`") && e.contains("service \"web\""),
        "{e}"
    );
    let e = deploy_err("build", "services:\n  web:\n    build: .\n");
    assert!(e.contains("`build` is not supported"), "{e}");
    let e = deploy_err(
        "port",
        &format!("services:\n  web:\n    image: {IMAGE}\n    ports: [\"99999:80\"]\n"),
    );
    assert!(e.contains("invalid port"), "{e}");
    let e = deploy_err(
        "absent",
        "services:\n  web:\n    image: berth-e2e/absent:404\n",
    );
    assert!(e.contains("berth image load"), "{e}");
    // A host port something else holds.
    let held = std::net::TcpListener::bind("0.0.0.0:0").expect("bind");
    let hp = held.local_addr().expect("addr").port();
    let e = deploy_err(
        "taken",
        &format!(
            "services:\n  web:\n    image: {IMAGE}\n    command: sleep 60\n    ports: [\"{hp}:80\"]\n"
        ),
    );
    assert!(
        e.contains(&format!("host port {hp}/tcp is already in use")),
        "{e}"
    );
    let e = deploy_err(
        "vars",
        &format!(
            "services:\n  web:\n    image: {IMAGE}\n    command: echo ${{NOT_SET_ANYWHERE}}\n"
        ),
    );
    assert!(e.contains("variable `NOT_SET_ANYWHERE` is not set"), "{e}");
    assert!(
        a.fails(&["scale", "ghost", "web=2"])
            .contains("not deployed")
    );
    assert!(a.fails(&["stop", "ghost"]).contains("not deployed"));
    assert!(a.fails(&["rm", "ghost"]).contains("not deployed"));

    // Nothing was applied.
    let apps: Vec<berth::wire::AppStatus> =
        serde_json::from_str(&a.ok(&["apps", "--json"])).expect("json");
    assert!(apps.is_empty(), "{apps:?}");
    let label = format!("label=berth.node={}", a.node_id);
    assert!(docker_ok(&["ps", "-aq", "--filter", &label]).is_empty());
}

#[test]
fn api_needs_the_token_and_never_panics_on_garbage() {
    let a = Agent::start();
    // The token file is private; the CLI also takes the token from --token and BERTH_TOKEN.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(a.dir.path().join("api.token"))
        .expect("token file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let cli = |args: &[&str], token_env: Option<&str>| {
        let mut c = std::process::Command::new(bin());
        c.args(args)
            .env("BERTH_API", a.api())
            .env("BERTH_TOKEN_FILE", "/nonexistent")
            .current_dir(a.dir.path());
        match token_env {
            Some(t) => c.env("BERTH_TOKEN", t),
            None => c.env_remove("BERTH_TOKEN"),
        };
        c.output().expect("cli runs")
    };
    assert!(cli(&["--token", &a.token(), "apps"], None).status.success());
    assert!(cli(&["apps"], Some(&a.token())).status.success());
    let wrong = cli(&["--token", "wrong", "apps"], None);
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("missing or wrong API token"));
    assert_eq!(a.get_raw("/v1/apps", false).expect("answer").0, 401);
    assert_eq!(a.get_raw("/v1/health", false).expect("answer").0, 200);
    let bodies: [&[u8]; 6] = [
        b"",
        b"{",
        b"null",
        b"[1,2]",
        b"{\"name\":\"x\",\"template\":5}",
        &[0xff, 0xfe, 0x00],
    ];
    for b in bodies {
        let (s, body) = a.post_raw("/v1/apps", b, true);
        assert_eq!(s, 400, "{body}");
        assert!(body.contains("\"error\""), "{body}");
    }
    let (s, _) = a.post_raw("/v1/apps/x/scale", b"{\"services\":{\"web\":-1}}", true);
    assert!(s == 400 || s == 404);
    let (s, body) = a.post_raw(
        "/v1/apps",
        serde_json::json!({"name": "../../etc", "template": "services: {web: {image: a}}"})
            .to_string()
            .as_bytes(),
        true,
    );
    assert_eq!(s, 400, "{body}");
    assert_eq!(a.get_raw("/v1/nope", true).expect("answer").0, 404);
    assert_eq!(a.get_raw("/v1/apps/UPPER", true).expect("answer").0, 400);
    // Still alive.
    assert_eq!(a.get_raw("/v1/apps", true).expect("answer").0, 200);
}

#[test]
fn config_validates_locally_and_examples_pass() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let o = std::process::Command::new(bin())
        .args(["config", "-f"])
        .arg(dir.join("examples/hello.yml"))
        .output()
        .expect("runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let spec: berth::model::AppSpec = serde_json::from_slice(&o.stdout).expect("normalised json");
    assert_eq!(spec.services["web"].replicas, 2);
    // The brief's example templates, copied unchanged into tests/data/ok/example-*.yml.
    let examples: Vec<std::path::PathBuf> = std::fs::read_dir(dir.join("tests/data/ok"))
        .expect("tests/data/ok")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "yml")
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("example-"))
        })
        .collect();
    assert_eq!(
        examples.len(),
        7,
        "the brief's seven examples: {examples:?}"
    );
    for p in examples {
        let o = std::process::Command::new(bin())
            .args(["config", "-f"])
            .arg(&p)
            .output()
            .expect("runs");
        assert!(
            o.status.success(),
            "{}: {}",
            p.display(),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

/// `redeploy` of an app whose image is gone (and cannot be pulled, offline) says to load it,
/// and changes nothing.
#[test]
fn redeploy_with_the_image_gone_says_to_load_it() {
    let a = Agent::start();
    let name = format!("berth-e2e/vanishing-{}:1", a.node_id);
    docker_ok(&["tag", IMAGE, &name]);
    a.deploy("van", &format!("services:\n  web:\n    image: {name}\n    command: sleep 600\n    stop_grace_period: 1s\n"));
    let before = a.running("van")[0].container_id.clone();
    docker_ok(&["rmi", &name]);
    let err = a.fails(&["redeploy", "van"]);
    assert!(err.contains("berth image load"), "{err}");
    assert_eq!(
        a.running("van")[0].container_id,
        before,
        "nothing recreated"
    );
}

/// `- KEY` in `environment` takes its value from the shell the CLI runs in (or `--env`), as
/// in compose, and is left unset when nothing has it (never `KEY=""`).
#[test]
fn bare_environment_keys_take_the_shell_value_or_stay_unset() {
    let a = Agent::start();
    let p = a.template(
        "bare",
        &format!(
            "services:\n  web:\n    image: {IMAGE}\n    command: sleep 3600\n    stop_grace_period: 1s\n    environment:\n      - BERTH_E2E_DB_PASSWORD\n      - BERTH_E2E_FROM_FLAG\n      - BERTH_E2E_NOWHERE\n"
        ),
    );
    let out = std::process::Command::new(bin())
        .args([
            "deploy",
            "-f",
            path_str(&p),
            "--name",
            "bare",
            "--env",
            "BERTH_E2E_FROM_FLAG=flag",
            "--timeout",
            "60",
        ])
        .env("BERTH_API", a.api())
        .env("BERTH_TOKEN_FILE", a.dir.path().join("api.token"))
        .env("BERTH_E2E_DB_PASSWORD", "s3cret")
        .env_remove("BERTH_E2E_NOWHERE")
        .output()
        .expect("cli runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let env = docker_ok(&["exec", "bare_web_1", "env"]);
    assert!(
        env.lines().any(|l| l == "BERTH_E2E_DB_PASSWORD=s3cret"),
        "{env}"
    );
    assert!(
        env.lines().any(|l| l == "BERTH_E2E_FROM_FLAG=flag"),
        "{env}"
    );
    assert!(
        !env.contains("BERTH_E2E_NOWHERE"),
        "unset, not empty: {env}"
    );
}

/// `pids_limit`, `security_opt` and `scale` (standard compose keys) reach the engine.
#[test]
fn pids_limit_security_opt_and_scale_reach_the_engine() {
    let a = Agent::start();
    a.deploy(
        "sec",
        &format!(
            "services:\n  web:\n    image: {IMAGE}\n    command: sleep 3600\n    stop_grace_period: 1s\n    scale: 2\n    pids_limit: 50\n    security_opt: [\"no-new-privileges:true\"]\n"
        ),
    );
    a.wait_running("sec", 2, std::time::Duration::from_secs(60));
    let got = docker_ok(&[
        "inspect",
        "-f",
        "{{.HostConfig.PidsLimit}} {{.HostConfig.SecurityOpt}}",
        "sec_web_2",
    ]);
    assert_eq!(got, "50 [no-new-privileges:true]");
    // The limit holds inside: the kernel's pids controller says so.
    let max = docker_ok(&[
        "exec",
        "sec_web_1",
        "sh",
        "-c",
        "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max",
    ]);
    assert_eq!(max, "50");
}

/// The compose `deploy:` section as the engine gets it: limits and reservations (cpus,
/// memory, pids), `max_replicas_per_node` capping what runs on one host, a
/// `replicated-job` whose instances run to completion and stay done, and the warnings for
/// what berth does otherwise.
#[test]
fn deploy_section_resources_job_mode_and_per_node_cap_reach_the_engine() {
    let a = Agent::start();
    let yaml = format!(
        "services:
  web:
    image: {IMAGE}
    command: sleep 3600
    stop_grace_period: 1s
    deploy:
      replicas: 3
      resources:
        limits: {{cpus: \"0.5\", memory: 64M, pids: 40}}
        reservations: {{cpus: \"0.25\", memory: 16M}}
      placement:
        max_replicas_per_node: 2
      update_config: {{delay: 5s}}
  migrate:
    image: {IMAGE}
    command: [\"sh\", \"-c\", \"echo migrated\"]
    deploy:
      mode: replicated-job
      replicas: 2
"
    );
    let p = a.template("dep", &yaml);
    let cfg = a.ok(&["config", "-f", path_str(&p)]);
    assert!(
        cfg.contains("2 of its 3 instances run on this host")
            && cfg.contains("update_config.delay: not applied"),
        "{cfg}"
    );
    a.ok(&["deploy", "-f", path_str(&p), "-d"]);
    wait_until(
        "web runs 2 and the job ran",
        Duration::from_secs(60),
        || {
            let ps = a.ps("dep");
            ps.iter()
                .filter(|i| i.service == "web" && i.state == "running")
                .count()
                == 2
                && ps.iter().filter(|i| i.service == "migrate").all(|i| {
                    docker_ok(&[
                        "inspect",
                        "-f",
                        "{{.State.Status}} {{.State.ExitCode}}",
                        &i.container_id,
                    ]) == "exited 0"
                })
                && ps.iter().filter(|i| i.service == "migrate").count() == 2
        },
    );
    let got = docker_ok(&[
        "inspect",
        "-f",
        "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}} {{.HostConfig.MemoryReservation}} {{.HostConfig.PidsLimit}}",
        "dep_web_1",
    ]);
    assert_eq!(got, "500000000 67108864 16777216 40");
    // The cap holds over reconcile passes: no third instance, and the job is not run again.
    let job: Vec<String> = a
        .ps("dep")
        .into_iter()
        .filter(|i| i.service == "migrate")
        .map(|i| i.container_id)
        .collect();
    let started = |id: &str| docker_ok(&["inspect", "-f", "{{.State.StartedAt}}", id]);
    let first: Vec<String> = job.iter().map(|id| started(id)).collect();
    std::thread::sleep(Duration::from_secs(6));
    let ps = a.ps("dep");
    assert_eq!(
        ps.iter().filter(|i| i.service == "web").count(),
        2,
        "{ps:?}"
    );
    let again: Vec<String> = job.iter().map(|id| started(id)).collect();
    assert_eq!(first, again, "a finished job instance was started again");
    let versions = a.ok(&["versions", "dep/migrate"]);
    assert!(versions.contains("normal"), "{versions}");
}

/// `deploy.resources.reservations.devices` reach the engine as device requests. This host has
/// no GPU driver, so the engine refuses to start the container: the request is checked on
/// the created container, and the start error reaches the events.
#[test]
fn gpu_device_requests_reach_the_engine() {
    let a = Agent::start();
    let yaml = format!(
        "services:\n  gpu:\n    image: {IMAGE}\n    command: sleep 600\n    deploy:\n      resources:\n        reservations:\n          devices:\n            - driver: nvidia\n              count: all\n              capabilities: [gpu]\n"
    );
    let p = a.template("gpu", &yaml);
    a.ok(&["deploy", "-f", path_str(&p), "-d"]);
    wait_until("the container is created", Duration::from_secs(60), || {
        !a.ps("gpu").is_empty()
    });
    let id = a.ps("gpu")[0].container_id.clone();
    let req = docker_ok(&[
        "inspect",
        "-f",
        "{{range .HostConfig.DeviceRequests}}{{.Driver}} {{.Count}} {{.Capabilities}}{{end}}",
        &id,
    ]);
    assert_eq!(req, "nvidia -1 [[gpu]]");
    wait_until(
        "the engine's refusal is an event",
        Duration::from_secs(60),
        || a.ok(&["events", "gpu"]).contains("device driver"),
    );
}

/// As compose: relative bind sources resolve against the project directory (the template's,
/// or --project-directory), its `.env` is read, the shell's environment wins over it,
/// profiles pick the services, and `pull_policy: never` does not pull.
#[test]
fn project_directory_dotenv_profiles_and_pull_policy_as_compose() {
    let a = Agent::start();
    let proj = a.dir.path().join("shop");
    std::fs::create_dir_all(proj.join("data")).expect("mkdir");
    std::fs::write(proj.join("data/hello.txt"), "hello-from-bind\n").expect("write");
    std::fs::write(
        proj.join(".env"),
        "GREETING=from-dotenv # a comment compose drops\nTAG=latest\n",
    )
    .expect("write .env");
    let file = proj.join("compose.yml");
    std::fs::write(
        &file,
        format!(
            "services:\n  web:\n    image: berth-test/busybox:${{TAG}}\n    command: [\"sh\", \"-c\", \"cat /data/hello.txt; echo greeting=$$GREETING; sleep 600\"]\n    environment: [GREETING]\n    volumes: [\"./data:/data:ro\"]\n  extra:\n    image: {IMAGE}\n    command: sleep 600\n    profiles: [extra]\n"
        ),
    )
    .expect("write template");
    // From another working directory: the CLI sends the template's directory.
    let out = a.ok(&[
        "deploy",
        "-f",
        path_str(&file),
        "--name",
        "shop",
        "--timeout",
        "60",
    ]);
    assert!(out.contains("deployed"), "{out}");
    a.wait_running("shop", 1, Duration::from_secs(60));
    let names: Vec<String> = a
        .running("shop")
        .iter()
        .map(|i| i.service.clone())
        .collect();
    assert_eq!(
        names,
        ["web"],
        "the service in an inactive profile is not deployed"
    );
    let id = a.running("shop")[0].container_id.clone();
    let id = id.as_str();
    let src = docker_ok(&["inspect", "-f", "{{range .Mounts}}{{.Source}}{{end}}", id]);
    let abs = std::fs::canonicalize(proj.join("data")).expect("canonical");
    assert_eq!(
        src.trim(),
        path_str(&abs),
        "bind source resolved against the project"
    );
    assert!(
        a.ok(&["inspect", "shop"]).contains(path_str(&abs)),
        "inspect shows what the relative source became"
    );
    let mut logs = String::new();
    let printed = (0..100).any(|_| {
        logs = docker_ok(&["logs", id]);
        logs.contains("hello-from-bind") && logs.lines().any(|l| l == "greeting=from-dotenv") || {
            std::thread::sleep(Duration::from_millis(200));
            false
        }
    });
    assert!(printed, "the container printed: {logs:?}");

    // The shell's environment wins over `.env`, as in compose.
    let cfg = std::process::Command::new(bin())
        .args(["config", "-f", path_str(&file), "--name", "shop"])
        .env("GREETING", "from-shell")
        .output()
        .expect("config runs");
    let text = String::from_utf8_lossy(&cfg.stdout);
    assert!(text.contains("\"GREETING\": \"from-shell\""), "{text}");
    // `--project-directory` moves where relative paths (and `.env`) are read from.
    let other = a.dir.path().join("elsewhere");
    std::fs::create_dir_all(&other).expect("mkdir");
    let text = a.ok(&[
        "config",
        "-f",
        path_str(&file),
        "--name",
        "shop",
        "--project-directory",
        path_str(&other),
        "-e",
        "TAG=latest",
    ]);
    assert!(
        text.contains(&format!("{}/data", path_str(&other))),
        "{text}"
    );
    assert!(
        !text.contains("from-dotenv"),
        "no .env in the other directory: {text}"
    );

    // --profile deploys the profiled service too.
    a.ok(&[
        "deploy",
        "-f",
        path_str(&file),
        "--name",
        "shop",
        "--profile",
        "extra",
        "--timeout",
        "60",
    ]);
    a.wait_running("shop", 2, Duration::from_secs(60));

    // `pull_policy: never` with an image the host lacks: refused before anything starts.
    let p = a.template(
        "never",
        "services:\n  web:\n    image: berth-e2e/absent:never\n    pull_policy: never\n",
    );
    let e = a.fails(&["deploy", "-f", path_str(&p), "--name", "never"]);
    assert!(
        e.contains("pull_policy: never") && e.contains("berth image load"),
        "{e}"
    );
    assert!(a.engine_containers("never").is_empty());
}

/// Secrets and configs as compose runs them without a swarm: files bind-mounted read-only,
/// from a file beside the template, from a variable, or inline; a variable's value is never
/// shown by `inspect`.
#[test]
fn secrets_and_configs_are_read_only_files_in_the_container() {
    let a = Agent::start();
    let proj = a.dir.path().join("vault");
    std::fs::create_dir_all(proj.join("secrets")).expect("mkdir");
    std::fs::write(proj.join("secrets/api.key"), "key-from-file\n").expect("write");
    let file = proj.join("vault.yml");
    std::fs::write(
        &file,
        format!(
            "services:\n  app:\n    image: {IMAGE}\n    command: sleep 600\n    secrets:\n      - db_password\n      - source: api_key\n        target: keys/api.key\n    configs:\n      - source: motd\n        target: /etc/motd\nsecrets:\n  db_password:\n    environment: DB_PASSWORD\n  api_key:\n    file: ./secrets/api.key\nconfigs:\n  motd:\n    content: welcome aboard\n"
        ),
    )
    .expect("write template");
    let o = std::process::Command::new(bin())
        .args(["deploy", "-f", path_str(&file), "--timeout", "60"])
        .env("BERTH_API", a.api())
        .env("BERTH_TOKEN_FILE", a.dir.path().join("api.token"))
        .env("DB_PASSWORD", "pw-from-shell-7391")
        .output()
        .expect("cli runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    a.wait_running("vault", 1, Duration::from_secs(60));
    let id = a.running("vault")[0].container_id.clone();
    let id = id.as_str();
    let cat = |p: &str| docker_ok(&["exec", id, "cat", p]);
    assert_eq!(cat("/run/secrets/db_password").trim(), "pw-from-shell-7391");
    assert_eq!(cat("/run/secrets/keys/api.key").trim(), "key-from-file");
    assert_eq!(cat("/etc/motd").trim(), "welcome aboard");
    // Read-only inside.
    let w = std::process::Command::new("docker")
        .args(["exec", id, "sh", "-c", "echo x > /run/secrets/db_password"])
        .output()
        .expect("docker exec");
    assert!(!w.status.success(), "a secret is writable in the container");
    // The value is in a 0400 file under the data dir, never in the stored spec.
    let inspect = a.ok(&["inspect", "vault"]);
    assert!(!inspect.contains("pw-from-shell-7391"), "{inspect}");
    let written = a.dir.path().join("files/vault");
    let modes: Vec<u32> = std::fs::read_dir(&written)
        .expect("written secrets")
        .flatten()
        .map(|e| {
            use std::os::unix::fs::PermissionsExt;
            e.metadata().expect("meta").permissions().mode() & 0o777
        })
        .collect();
    assert!(
        !modes.is_empty() && modes.iter().all(|m| *m == 0o400),
        "{modes:?}"
    );
    // A missing secret file is refused before anything changes.
    std::fs::remove_file(proj.join("secrets/api.key")).expect("rm");
    let o = std::process::Command::new(bin())
        .args(["deploy", "-f", path_str(&file), "--timeout", "60"])
        .env("BERTH_API", a.api())
        .env("BERTH_TOKEN_FILE", a.dir.path().join("api.token"))
        .env("DB_PASSWORD", "changed")
        .output()
        .expect("cli runs");
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.contains("not a file on this host"),
        "{e}"
    );
    a.ok(&["rm", "vault"]);
    assert!(!written.exists(), "rm removes the app's written secrets");
}

/// A Swarm-classic label affinity deploys; on one host, a rule the host does not meet is a
/// warning that says so.
#[test]
fn label_affinity_deploys_and_says_when_this_host_does_not_meet_it() {
    let a = Agent::start();
    let p = a.template(
        "kafka",
        &format!(
            "zookeeper:\n  image: {IMAGE}\n  command: sleep 600\n  labels:\n    role: zookeeper\nkafka:\n  image: {IMAGE}\n  command: sleep 600\n  environment:\n    - affinity:role!=zookeeper\n    - affinity:service==zookeeper\n"
        ),
    );
    let o = a.berth(&["deploy", "-f", path_str(&p), "--timeout", "60"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("`affinity:role!=zookeeper` is not met on this host"),
        "{err}"
    );
    assert!(
        !err.contains("affinity:service==zookeeper"),
        "a met rule is quiet: {err}"
    );
    a.wait_running("kafka", 2, Duration::from_secs(60));
}

/// Compose keys that are engine settings reach the engine as they are.
#[test]
fn engine_settings_from_compose_reach_the_engine() {
    let a = Agent::start();
    a.deploy(
        "knobs",
        &format!(
            "services:\n  web:\n    image: {IMAGE}\n    command: sleep 600\n    cpu_period: 100000\n    cpu_quota: 50000\n    mem_reservation: 32m\n    mem_swappiness: 10\n    oom_score_adj: 500\n    group_add: [\"1001\"]\n    domainname: example.lan\n    runtime: runc\n    cgroup: private\n"
        ),
    );
    a.wait_running("knobs", 1, Duration::from_secs(60));
    let id = a.running("knobs")[0].container_id.clone();
    let got = docker_ok(&[
        "inspect",
        "-f",
        "{{.HostConfig.CpuPeriod}} {{.HostConfig.CpuQuota}} {{.HostConfig.MemoryReservation}} {{.HostConfig.MemorySwappiness}} {{.HostConfig.OomScoreAdj}} {{.HostConfig.GroupAdd}} {{.Config.Domainname}} {{.HostConfig.Runtime}}",
        &id,
    ]);
    assert_eq!(got, "100000 50000 33554432 10 500 [1001] example.lan runc");
    // The process sees them too. (A negative oom_score_adj and device cgroup rules fail in
    // `docker run` itself on this VM; the spec corpus covers their translation.)
    assert_eq!(
        docker_ok(&["exec", &id, "cat", "/proc/1/oom_score_adj"]),
        "500"
    );
    assert!(
        docker_ok(&["exec", &id, "id", "-G"])
            .split(' ')
            .any(|g| g == "1001")
    );
}
