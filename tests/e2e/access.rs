//! Access roles against the real agent: each role allowed and refused on a table of
//! endpoints, the CLI working with a named token, changes named in the events, the console
//! signing in with one, and a removed token refused at once.

use super::harness::*;

/// A request with `token`; (status, body).
fn call(a: &Agent, method: &str, path: &str, body: &str, token: &str) -> (u16, String) {
    let url = format!("{}{path}", a.api());
    let auth = format!("Bearer {token}");
    let agent = http_agent();
    let r = match method {
        "GET" => agent.get(&url).header("Authorization", &auth).call(),
        "DELETE" => agent.delete(&url).header("Authorization", &auth).call(),
        _ => agent
            .post(&url)
            .header("Authorization", &auth)
            .header("Content-Type", "application/json")
            .send(body.as_bytes()),
    };
    match r {
        Ok(mut r) => (
            r.status().as_u16(),
            r.body_mut().read_to_string().unwrap_or_default(),
        ),
        Err(e) => (0, e.to_string()),
    }
}

fn token_for(a: &Agent, name: &str, role: &str) -> String {
    let t = a.ok(&["access", "create", name, "--role", role]);
    let t = t.trim().to_string();
    assert!(t.starts_with("bt_") && t.len() == 67, "{t}");
    t
}

#[test]
fn roles_allow_and_refuse_by_a_table_of_endpoints() {
    let a = Agent::start();
    a.deploy(
        "shop",
        &format!("services:\n  web:\n    image: {IMAGE}\n    command: sleep 3600\n    stop_grace_period: 1s\n"),
    );
    let viewer = token_for(&a, "dashboard", "viewer");
    let operator = token_for(&a, "ci", "operator");
    let admin = token_for(&a, "ops-lead", "admin");
    let e = a.fails(&["access", "create", "ci", "--role", "viewer"]);
    assert!(e.contains("exists"), "{e}");

    // (method, path, body, least role). A body that is wrong on purpose makes a passed
    // check answer 400 or 404 instead of acting.
    let table: &[(&str, &str, &str, &str)] = &[
        ("GET", "/v1/apps", "", "viewer"),
        ("GET", "/v1/apps/shop", "", "viewer"),
        ("GET", "/v1/apps/shop/spec", "", "operator"),
        ("GET", "/v1/ps", "", "viewer"),
        ("GET", "/v1/events", "", "viewer"),
        ("GET", "/v1/logs?app=shop", "", "viewer"),
        ("POST", "/v1/apps", "{}", "operator"),
        ("POST", "/v1/apps/shop/scale", "{}", "operator"),
        ("POST", "/v1/apps/shop/services/web/restart", "", "operator"),
        ("POST", "/v1/run", "{}", "operator"),
        (
            "POST",
            "/v1/apps/ghost/triggers",
            "{\"action\":\"redeploy\"}",
            "operator",
        ),
        ("GET", "/v1/access", "", "admin"),
        ("POST", "/v1/access", "{}", "admin"),
        ("GET", "/v1/registries", "", "admin"),
        ("POST", "/v1/registries", "{}", "admin"),
        ("POST", "/v1/volumes", "{}", "admin"),
        ("POST", "/v1/cluster/init", "{\"bad\": 1}", "admin"),
    ];
    let rank = |r: &str| ["viewer", "operator", "admin"].iter().position(|x| *x == r);
    for (method, path, body, least) in table {
        for (role, token) in [
            ("viewer", &viewer),
            ("operator", &operator),
            ("admin", &admin),
        ] {
            let (status, text) = call(&a, method, path, body, token);
            if rank(role) < rank(least) {
                assert_eq!(status, 403, "{role} {method} {path}: {text}");
                assert!(text.contains(&format!("needs {least}")), "{text}");
            } else {
                assert!(
                    status != 403 && status != 401 && status != 0,
                    "{role} {method} {path}: {status} {text}"
                );
            }
        }
    }
    // Prune (admin) is refused to an operator; not run here (it would remove the images
    // other tests use).
    let (status, text) = call(&a, "POST", "/v1/system/prune", "", &operator);
    assert_eq!(status, 403, "{text}");
    // Nothing a refused call asked for happened.
    assert_eq!(a.running("shop").len(), 1);

    // The CLI with a named token; the change is named in the events.
    let as_ci = |args: &[&str]| {
        a.follow_command(args)
            .env_remove("BERTH_TOKEN_FILE")
            .env("BERTH_TOKEN", &operator)
            .output()
            .expect("cli")
    };
    let out = as_ci(&["scale", "shop", "web=2"]);
    assert!(out.status.success(), "{out:?}");
    a.wait_running("shop", 2, std::time::Duration::from_secs(60));
    let ev = a.ok(&["events"]);
    assert!(
        ev.contains("POST /v1/apps/shop/scale by access ci (operator)"),
        "{ev}"
    );
    let out = as_ci(&["registry", "ls"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs admin"));

    // The console signs in with a viewer token; its session may read, not change.
    let (status, _) = a.post_raw(
        "/v1/session",
        format!("{{\"token\": \"{viewer}\"}}").as_bytes(),
        false,
    );
    assert_eq!(status, 200);

    // Listed without the tokens; removed: refused at once.
    let ls = a.ok(&["access", "ls"]);
    assert!(
        ls.contains("dashboard") && ls.contains("viewer") && !ls.contains("bt_"),
        "{ls}"
    );
    a.ok(&["access", "rm", "dashboard"]);
    assert_eq!(call(&a, "GET", "/v1/apps", "", &viewer).0, 401);
    assert_eq!(call(&a, "GET", "/v1/apps", "", "bt_0000").0, 401);
    let e = a.fails(&["access", "create", "api.token", "--role", "admin"]);
    assert!(e.contains("api.token"), "{e}");
}
