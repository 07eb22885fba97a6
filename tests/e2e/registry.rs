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

/// POST to a hook URL; (status, body).
fn hook(url: &str) -> (u16, String) {
    match http_agent().post(url).send_empty() {
        Ok(mut r) => (
            r.status().as_u16(),
            r.body_mut().read_to_string().unwrap_or_default(),
        ),
        Err(e) => (0, e.to_string()),
    }
}

/// The image id a container (by id or name) runs.
fn image_of(container: &str) -> String {
    docker_ok(&["inspect", "-f", "{{.Image}}", container])
        .trim()
        .to_string()
}

/// A trigger redeploys with the image CI pushed since (pulled again through the login), or
/// scales; a wrong secret or a removed trigger is refused, and every call is an event.
#[test]
fn triggers_redeploy_with_the_new_image_and_refuse_a_wrong_secret() {
    let reg = Registry::start();
    let image = reg.push(IMAGE, "team/app:latest");
    let a = Agent::start();
    let out = login(&a, &reg.host(), &reg.user, &reg.password);
    assert!(out.status.success(), "{out:?}");
    a.deploy(
        "hooked",
        &format!("services:\n  app:\n    image: {image}\n    command: sleep 3600\n    stop_grace_period: 1s\n"),
    );
    // By id: the container is renamed to its compose name a moment after the deploy.
    let first = a.running("hooked")[0].container_id.clone();
    let old = image_of(&first);

    let out = a.ok(&["trigger", "create", "hooked", "--action", "redeploy"]);
    let url = out
        .lines()
        .find_map(|l| l.strip_prefix("POST "))
        .expect("a URL")
        .to_string();
    assert!(url.contains("/hooks/") && url.contains("?secret="), "{url}");
    let (base, secret) = url.split_once("?secret=").expect("secret");
    // The secret is not listed again, anywhere.
    let ls = a.ok(&["trigger", "ls", "hooked"]);
    assert!(ls.contains("redeploy") && !ls.contains(secret), "{ls}");

    // Wrong secrets and unknown triggers: refused alike, nothing redeployed.
    for bad in [
        format!("{base}?secret=wrong"),
        format!("{base}?secret={}", &secret[..secret.len() - 1]),
        base.to_string(),
        url.replace("/hooks/", "/hooks/0000"),
    ] {
        let (status, body) = hook(&bad);
        assert_eq!(status, 403, "{bad}: {body}");
        assert!(body.contains("unknown trigger or wrong secret"), "{body}");
    }
    assert_eq!(a.running("hooked")[0].container_id, first);

    // CI pushes a new :latest, then calls the hook: the app runs the new image.
    let new_image = reg.push(WEB_IMAGE, "team/app:latest");
    assert_eq!(new_image, image);
    let new_id = docker_ok(&["image", "inspect", "-f", "{{.Id}}", WEB_IMAGE])
        .trim()
        .to_string();
    assert_ne!(new_id, old);
    let (status, body) = hook(&url);
    assert_eq!(status, 200, "{body}");
    let fired: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(fired["outcome"], "redeploy-1", "{body}");
    wait_until("the new image runs", Duration::from_secs(60), || {
        a.running("hooked")
            .first()
            .is_some_and(|i| image_of(&i.container_id) == new_id)
    });
    let ev = a.ok(&["events", "hooked"]);
    assert!(ev.contains("called from 127.0.0.1:"), "{ev}");
    assert!(
        ev.contains("refused: unknown trigger or wrong secret"),
        "{ev}"
    );

    // A scale trigger.
    let out = a.ok(&[
        "trigger",
        "create",
        "hooked",
        "--action",
        "scale",
        "--service",
        "app",
        "--replicas",
        "2",
    ]);
    let scale_url = out
        .lines()
        .find_map(|l| l.strip_prefix("POST "))
        .expect("a URL")
        .to_string();
    let (status, body) = hook(&scale_url);
    assert_eq!(status, 200, "{body}");
    a.wait_running("hooked", 2, Duration::from_secs(60));
    let e = a.fails(&[
        "trigger",
        "create",
        "hooked",
        "--action",
        "scale",
        "--service",
        "nope",
        "--replicas",
        "2",
    ]);
    assert!(e.contains("no service"), "{e}");

    // Removed: its URL no longer works.
    let id = base.rsplit('/').next().expect("id");
    a.ok(&["trigger", "rm", id]);
    assert_eq!(hook(&url).0, 403);
    assert!(a.ok(&["trigger", "ls"]).contains("scale app=2"));

    // Guessing is bounded: after 30 refusals in a minute every call is refused (429), the
    // right secret too, until the minute is over.
    // (Up to 70 guesses: a minute that turns during the loop starts the count again.)
    let mut statuses = Vec::new();
    for i in 0..70 {
        statuses.push(hook(&format!("{base}?secret=guess{i}")).0);
        if statuses.last() == Some(&429) {
            break;
        }
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    assert_eq!(hook(&scale_url).0, 429);
}
