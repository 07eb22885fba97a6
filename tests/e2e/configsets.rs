//! Config sets against the real agent and engine: a deploy bound to a set takes its items
//! (between --env and the shell's environment), secrets stay masked everywhere berth shows
//! them, a change marks the app out of date, `redeploy` and `configset apply` deploy the new
//! values as new versions, and a bound set cannot be removed.

use super::harness::*;
use std::time::Duration;

const APP: &str = r#"services:
  app:
    image: berth-test/busybox
    command: ["sh", "-c", "sleep 3600"]
    stop_grace_period: 1s
    environment:
      GREETING: ${GREETING}
      LEVEL: ${LEVEL:-info}
      DB_PASS: ${DB_PASS}
      REGION: ${REGION:-none}
"#;

/// The running container's environment, as the engine has it.
fn env_of(a: &Agent, app: &str) -> Vec<String> {
    one_env_of(a, app).unwrap_or_else(|running| panic!("not one running container: {running}"))
}

/// The same when exactly one container runs, else the list seen (a poll may catch a
/// rolling update between its two versions).
fn one_env_of(a: &Agent, app: &str) -> Result<Vec<String>, String> {
    let running = a.running(app);
    if running.len() != 1 {
        return Err(format!("{running:?}"));
    }
    let out = a.docker_ok(&[
        "inspect",
        "-f",
        "{{json .Config.Env}}",
        &running[0].container_id,
    ]);
    Ok(serde_json::from_str(out.trim()).expect("env list"))
}

fn has(env: &[String], kv: &str) -> bool {
    env.iter().any(|e| e == kv)
}

#[test]
fn a_bound_app_takes_the_sets_values_masks_its_secrets_and_follows_its_changes() {
    let a = Agent::start();
    let dir = tempfile::tempdir().expect("tmp");
    let envf = dir.path().join("prod.env");
    std::fs::write(&envf, "# the seed's items\nGREETING=hello\nLEVEL=debug\n").expect("env file");
    let out = a.ok(&[
        "configset",
        "create",
        "prod",
        "--from-env-file",
        path_str(&envf),
        "-e",
        "DB_PASS=s3cret-value",
        "--secret",
        "DB_PASS",
        "--description",
        "production settings",
    ]);
    assert!(
        out.contains("created config set prod with 3 item(s)"),
        "{out}"
    );
    // Bad input changes nothing and says what is wrong.
    let e = a.fails(&["configset", "create", "prod", "-e", "A=1"]);
    assert!(e.contains("exists"), "{e}");
    let e = a.fails(&["configset", "create", "x".repeat(33).as_str(), "-e", "A=1"]);
    assert!(e.contains("1 to 32"), "{e}");
    let e = a.fails(&["configset", "set", "prod", "BAD-KEY=1"]);
    assert!(e.contains("not valid"), "{e}");
    let e = a.fails(&[
        "configset",
        "set",
        "prod",
        &format!("K={}", "v".repeat(129)),
    ]);
    assert!(e.contains("1 to 128"), "{e}");
    let many: Vec<String> = (0..48).map(|i| format!("K{i}=v")).collect();
    let mut args = vec!["configset", "set", "prod"];
    args.extend(many.iter().map(String::as_str));
    let e = a.fails(&args);
    assert!(e.contains("at most 50"), "{e}");
    let shown = a.ok(&["configset", "show", "prod"]);
    assert!(shown.contains("revision:    1"), "{shown}");
    assert!(!shown.contains("s3cret-value"), "{shown}");
    assert!(shown.contains("********"), "{shown}");

    // diff: each template variable against the set (REGION is not in it).
    let p = a.template("web", APP);
    let diff = a.ok(&[
        "configset",
        "diff",
        "prod",
        "-f",
        path_str(&p),
        "-e",
        "LEVEL=debug",
        "-e",
        "GREETING=hi",
    ]);
    let line = |v: &str| {
        diff.lines()
            .find(|l| l.starts_with(v))
            .unwrap_or_else(|| panic!("{v} in {diff}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(line("LEVEL")[1], "same", "{diff}");
    assert_eq!(line("GREETING")[1], "different", "{diff}");
    assert_eq!(line("REGION")[1], "missing", "{diff}");
    assert_eq!(line("DB_PASS")[1], "different", "{diff}");
    assert!(!diff.contains("s3cret-value"), "{diff}");
    // The deploy's dry run shows the same and deploys nothing.
    let dry = a.ok(&[
        "deploy",
        "-f",
        path_str(&p),
        "--name",
        "web",
        "--config-set",
        "prod",
        "--dry-run",
    ]);
    assert!(
        dry.contains("missing") && dry.contains("nothing was deployed"),
        "{dry}"
    );
    assert!(a.fails(&["ps", "web"]).contains("not deployed"));
    let e = a.fails(&["deploy", "-f", path_str(&p), "--config-set", "nope"]);
    assert!(e.contains("no config set is named \"nope\""), "{e}");
    assert!(
        a.fails(&["ps", "web"]).contains("not deployed"),
        "a refused deploy made nothing"
    );

    // Deploy bound to it: --env over the set, the set over the shell's environment.
    let o = a
        .follow_command(&[
            "deploy",
            "-f",
            path_str(&p),
            "--name",
            "web",
            "--config-set",
            "prod",
            "-e",
            "GREETING=from-cli",
            "--timeout",
            "60",
        ])
        .env("LEVEL", "from-shell")
        .env("REGION", "from-shell")
        .output()
        .expect("cli");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    a.wait_running("web", 1, Duration::from_secs(60));
    let env = env_of(&a, "web");
    assert!(has(&env, "GREETING=from-cli"), "{env:?}");
    assert!(has(&env, "LEVEL=debug"), "the set over the shell: {env:?}");
    assert!(has(&env, "REGION=from-shell"), "{env:?}");
    assert!(has(&env, "DB_PASS=s3cret-value"), "{env:?}");
    // Masked in what berth shows of the app.
    let spec = a.ok(&["inspect", "web"]);
    assert!(!spec.contains("s3cret-value"), "{spec}");
    assert!(spec.contains("DB_PASS"), "{spec}");
    let ls = a.ok(&["configset", "ls"]);
    assert!(ls.contains("prod") && !ls.contains("out of date"), "{ls}");

    // A change marks the app out of date; a bound set cannot be removed.
    let out = a.ok(&[
        "configset",
        "set",
        "prod",
        "LEVEL=warn",
        "DB_PASS=n3w-secret",
    ]);
    assert!(
        out.contains("revision 2") && out.contains("out of date: web"),
        "{out}"
    );
    let apps = a.ok(&["apps"]);
    assert!(apps.contains("config set prod changed"), "{apps}");
    let e = a.fails(&["configset", "rm", "prod"]);
    assert!(e.contains("bound to web"), "{e}");
    let events = a.ok(&["events", "-n", "50"]);
    assert!(
        events.contains("config set prod revision 2: set DB_PASS, LEVEL"),
        "{events}"
    );
    assert!(!events.contains("n3w-secret"), "{events}");

    // redeploy picks the new values up: a new version, the CLI's --env still over the set.
    a.ok(&["redeploy", "web"]);
    wait_until("web runs the new values", Duration::from_secs(60), || {
        one_env_of(&a, "web")
            .is_ok_and(|env| has(&env, "LEVEL=warn") && has(&env, "DB_PASS=n3w-secret"))
    });
    let env = env_of(&a, "web");
    assert!(has(&env, "GREETING=from-cli"), "{env:?}");
    assert!(has(&env, "REGION=from-shell"), "{env:?}");
    let versions = a.ok(&["versions", "web/app"]);
    assert!(versions.contains("002"), "{versions}");
    assert!(!a.ok(&["apps"]).contains("changed"));

    // apply: every bound app out of date, as a versioned deploy; unset too.
    a.ok(&["configset", "unset", "prod", "LEVEL"]);
    let out = a.ok(&["configset", "apply", "prod"]);
    assert!(out.contains("web: deploying"), "{out}");
    // Without the set's item, the shell's value of the first deploy shows through.
    wait_until("web at the shell's LEVEL", Duration::from_secs(60), || {
        one_env_of(&a, "web").is_ok_and(|env| has(&env, "LEVEL=from-shell"))
    });
    let out = a.ok(&["configset", "apply", "prod"]);
    assert!(out.contains("web: up to date"), "{out}");
    // Deployed without the set: unbound, and the set can go.
    a.ok(&[
        "deploy",
        "-f",
        path_str(&p),
        "--name",
        "web",
        "-e",
        "GREETING=plain",
        "-e",
        "DB_PASS=plain",
        "--timeout",
        "60",
    ]);
    let ls = a.ok(&["configset", "ls"]);
    assert!(
        ls.lines()
            .any(|l| l.starts_with("prod") && l.contains(" - ")),
        "{ls}"
    );
    a.ok(&["configset", "rm", "prod"]);
    let e = a.fails(&["configset", "show", "prod"]);
    assert!(e.contains("no config set"), "{e}");
}

#[test]
fn secret_items_need_admin_and_operators_may_change_the_rest() {
    let a = Agent::start();
    let op = a
        .ok(&["access", "create", "ci", "--role", "operator"])
        .trim()
        .to_string();
    let as_op = |args: &[&str]| {
        a.follow_command(args)
            .env("BERTH_TOKEN", &op)
            .env_remove("BERTH_TOKEN_FILE")
            .output()
            .expect("cli")
    };
    let o = as_op(&[
        "configset",
        "create",
        "s",
        "-e",
        "A=1",
        "-e",
        "P=x",
        "--secret",
        "P",
    ]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("secret config items need admin"), "{e}");
    assert!(
        a.fails(&["configset", "show", "s"])
            .contains("no config set")
    );
    let o = as_op(&["configset", "create", "s", "-e", "A=1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    a.ok(&["configset", "set", "s", "P=x", "--secret", "P"]);
    let shown = a.ok(&["configset", "show", "s", "--json"]);
    assert!(
        shown.contains("\"secret\": true") && !shown.contains("\"x\""),
        "{shown}"
    );
    // An operator may not replace or remove a secret item either, only the others.
    for args in [
        &["configset", "set", "s", "P=mine"][..],
        &["configset", "unset", "s", "P"][..],
        &["configset", "set", "s", "A=2", "P=mine"][..],
    ] {
        let o = as_op(args);
        assert!(!o.status.success(), "{args:?} was taken");
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(
            e.contains("item P of config set s is secret") && e.contains("needs admin"),
            "{e}"
        );
    }
    let o = as_op(&["configset", "set", "s", "A=2"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let shown = a.ok(&["configset", "show", "s", "--json"]);
    assert!(
        shown.contains("\"2\"") && shown.matches("\"secret\": true").count() == 1,
        "{shown}"
    );
}
