//! Private registries against a real one (Debian's docker-registry with htpasswd auth): an
//! image pushed there deploys only with `berth registry login`, with the registry's own
//! refusal without it, and the password never shows.

use super::backends::Registry;
use super::harness::*;
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

/// `berth registry login HOST -u USER --password-stdin`, the password piped in.
fn login(a: &Agent, host: &str, user: &str, password: &str) -> std::process::Output {
    let mut child = a
        .follow_command(&["registry", "login", host, "-u", user, "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cli");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{password}\n").as_bytes())
        .expect("password");
    child.wait_with_output().expect("cli")
}

#[test]
fn deploys_from_a_private_registry_with_a_login_and_not_without() {
    let reg = Registry::start();
    let image = reg.push(IMAGE, "team/busybox:pushed");
    let a = Agent::start();
    let tpl = format!(
        "services:\n  app:\n    image: {image}\n    command: sleep 3600\n    stop_grace_period: 1s\n"
    );

    // No login: the registry's own refusal, and nothing stored.
    let p = a.template("priv", &tpl);
    let e = a.fails(&["deploy", "-f", path_str(&p), "--name", "priv"]);
    assert!(
        e.contains(&image)
            && (e.contains("no basic auth credentials") || e.contains("unauthorized")),
        "{e}"
    );
    assert!(!a.ok(&["apps"]).contains("priv"));

    // A wrong password: the registry refuses the pull.
    let out = login(&a, &reg.host(), &reg.user, "not-the-password");
    assert!(out.status.success(), "{out:?}");
    let e = a.fails(&["deploy", "-f", path_str(&p), "--name", "priv"]);
    assert!(
        e.contains("unauthorized") || e.contains("authentication required"),
        "{e}"
    );

    // The right one: deployed, pulled with it.
    let out = login(&a, &reg.host(), &reg.user, &reg.password);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("logged in to 127.0.0.1:"));
    a.deploy("priv", &tpl);
    a.wait_running("priv", 1, Duration::from_secs(60));
    // `berth run --pull` pulls through the same login.
    a.ok(&["run", "runpriv", &image, "--pull", "--", "sleep", "3600"]);
    a.wait_running("runpriv", 1, Duration::from_secs(60));

    // Listed without the password; the password is nowhere in clear.
    let ls = a.ok(&["registry", "ls"]);
    assert!(ls.contains(&reg.host()) && ls.contains(&reg.user), "{ls}");
    let (status, api) = a.get_raw("/v1/registries", true).expect("api");
    assert_eq!(status, 200);
    let db = std::fs::read(a.dir.path().join("state.db")).expect("db");
    for (what, text) in [
        ("ls", ls.clone()),
        ("api", api),
        ("agent log", a.log()),
        ("events", a.ok(&["events"])),
        ("state.db", String::from_utf8_lossy(&db).into_owned()),
    ] {
        assert!(!text.contains(&reg.password), "{what} shows the password");
    }

    // Bad input changes nothing.
    let out = login(&a, "bad host", "u", "p");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a registry host"));
    let out = login(&a, &reg.host(), &reg.user, "");
    assert!(String::from_utf8_lossy(&out.stderr).contains("password is empty"));
    let e = a.fails(&["registry", "logout", "never.example.com"]);
    assert!(e.contains("no login for registry never.example.com"), "{e}");

    // Logged out: forgotten.
    a.ok(&["registry", "logout", &reg.host()]);
    assert!(!a.ok(&["registry", "ls"]).contains(&reg.host()));
}
