//! Unit tests of the small parsers; whole templates are tested by `tests/spec_corpus.rs`.

use super::values::{parse_duration_ms, parse_port_short, parse_size, shell_split};
use super::*;

fn vars(pairs: &[(&str, &str)]) -> Vars {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn substitution_follows_compose() {
    let v = vars(&[("A", "x"), ("EMPTY", "")]);
    let i = |s: &str| interpolate(s, &v, "test");
    assert_eq!(i("$A ${A} $$A $$"), Ok("x x $A $".into()));
    assert_eq!(
        i("${EMPTY:-d} ${EMPTY-d} ${UNSET-d} ${UNSET:-$A}"),
        Ok("d  d x".into())
    );
    assert_eq!(i("${A:+alt}${EMPTY:+alt}${EMPTY+set}"), Ok("altset".into()));
    assert!(matches!(
        i("${UNSET}"),
        Err(SpecError::UnsetVariable { .. })
    ));
    assert!(matches!(
        i("${EMPTY:?needed}"),
        Err(SpecError::UnsetVariable { .. })
    ));
    assert_eq!(i("${EMPTY?needed}"), Ok(String::new()));
    assert!(matches!(i("${A"), Err(SpecError::BadSubstitution { .. })));
    assert!(matches!(
        i("${A/x}"),
        Err(SpecError::BadSubstitution { .. })
    ));
    // Not a variable: literal, as docker compose leaves it.
    assert_eq!(
        i("cost $5 $(date) $2a$14$.x end$"),
        Ok("cost $5 $(date) $2a$14$.x end$".into())
    );
    assert_eq!(referenced_vars("$A ${B:-x} $$C ${D}"), ["A", "B", "D"]);
}

#[test]
fn environment_keys_without_values_come_from_the_deploy_variables_or_stay_unset() {
    let text = "services:\n  web:\n    image: a\n    environment:\n      - DB_PASSWORD\n      - MISSING\n      - SET=1\n  db:\n    image: b\n    environment:\n      ROOT_PASSWORD:\n      NOPE:\n      X: \"\"\n";
    assert_eq!(
        bare_environment_keys(text),
        ["DB_PASSWORD", "MISSING", "NOPE", "ROOT_PASSWORD"]
    );
    // The same walk finds the env files the client sends (top-level services too).
    assert_eq!(
        env_files(
            "services:\n  web: {image: a, env_file: [b.env, a.env]}\n  db: {image: b, env_file: a.env}\n"
        ),
        ["a.env", "b.env"]
    );
    assert_eq!(env_files("web: {image: a, env_file: c.env}\n"), ["c.env"]);
    assert!(env_files("not: [valid").is_empty());
    let inputs = Inputs {
        vars: vars(&[("DB_PASSWORD", "s3cret"), ("ROOT_PASSWORD", "r00t")]),
        ..Default::default()
    };
    let app = parse(text, "app", &inputs).expect("parses");
    let web = &app.services["web"].environment;
    assert_eq!(web.get("DB_PASSWORD").map(String::as_str), Some("s3cret"));
    assert_eq!(web.get("SET").map(String::as_str), Some("1"));
    assert!(!web.contains_key("MISSING"), "unset, not empty: {web:?}");
    let db = &app.services["db"].environment;
    assert_eq!(db.get("ROOT_PASSWORD").map(String::as_str), Some("r00t"));
    assert!(!db.contains_key("NOPE"));
    assert_eq!(
        db.get("X").map(String::as_str),
        Some(""),
        "an explicit empty value stays"
    );
}

#[test]
fn durations_sizes_and_commands() {
    assert_eq!(parse_duration_ms("1m30s"), Some(90_000));
    assert_eq!(parse_duration_ms("500ms"), Some(500));
    assert_eq!(parse_duration_ms("10"), Some(10_000));
    assert_eq!(parse_duration_ms("1.5h"), Some(5_400_000));
    assert_eq!(parse_duration_ms("10x"), None);
    assert_eq!(parse_duration_ms(""), None);
    assert_eq!(parse_size("512m"), Some(512 << 20));
    assert_eq!(parse_size("1g"), Some(1 << 30));
    assert_eq!(parse_size("64mb"), Some(64 << 20));
    assert_eq!(parse_size("-1"), None);
    assert_eq!(
        shell_split(r#"sh -c "echo 'a b'" x\ y"#),
        Some(vec![
            "sh".into(),
            "-c".into(),
            "echo 'a b'".into(),
            "x y".into()
        ])
    );
    assert_eq!(shell_split("unbalanced 'quote"), None);
}

#[test]
fn port_syntax() {
    let p = parse_port_short("127.0.0.1:8000-8001:9000-9001/udp", "t").expect("ports");
    assert_eq!(p.len(), 2);
    assert_eq!((p[1].host_port, p[1].container_port), (Some(8001), 9001));
    assert_eq!(
        parse_port_short("80", "t").expect("port")[0].host_port,
        None
    );
    assert_eq!(
        parse_port_short("[::1]:8080:80", "t").expect("v6")[0]
            .host_ip
            .as_deref(),
        Some("::1")
    );
    for bad in [
        "0",
        "80/sctp",
        "a:80",
        "8000-8002:9000-9001",
        "1.2.3:80:80",
        "9001-9000",
    ] {
        assert!(parse_port_short(bad, "t").is_err(), "{bad}");
    }
}

#[test]
fn names_and_start_order() {
    assert!(valid_name("shop-1_a"));
    for bad in ["", "Shop", "-a", "a b", "../x", &"a".repeat(49)] {
        assert!(!valid_name(bad), "{bad}");
    }
    // Service names may be as long as a DNS label (a real file has one of 52).
    assert!(valid_service_name(&"a".repeat(63)));
    assert!(valid_service_name(
        "mastodon-streaming-websocket-service-with-a-long-name"
    ));
    for bad in ["", "Shop", "-a", "a.b", &"a".repeat(64), "é"] {
        assert!(!valid_service_name(bad), "{bad}");
    }
    let spec = parse(
        "services:\n  web: {image: a, depends_on: [api]}\n  api: {image: a, links: [db]}\n  db: {image: a}\n",
        "app",
        &Inputs::default(),
    )
    .expect("parses");
    assert_eq!(start_order(&spec), ["db", "api", "web"]);
}

#[test]
fn service_hash_ignores_replicas_only() {
    let text = |scale: &str, cmd: &str| {
        format!(
            "services:\n  web:\n    image: a\n    command: {cmd}\n    labels:\n      berth.scale: \"{scale}\"\n"
        )
    };
    let h = |t: String| {
        service_hash(&parse(&t, "a", &Inputs::default()).expect("parses").services["web"])
    };
    assert_eq!(h(text("1", "x")), h(text("5", "x")));
    assert_ne!(h(text("1", "x")), h(text("1", "y")));
}

#[test]
fn a_client_gathers_what_a_template_needs_from_one_load() {
    let text = "name: shop\nservices:\n  web:\n    image: a:${TAG}\n    environment: [DB_PASSWORD, X=1]\n    env_file: [b.env, a.env]\n    secrets: [pw]\nsecrets:\n  pw:\n    environment: PW_VAR\n";
    let n = client_needs(text);
    assert_eq!(n.name.as_deref(), Some("shop"));
    assert_eq!(n.vars, ["DB_PASSWORD", "PW_VAR", "TAG"]);
    assert_eq!(n.env_files, ["a.env", "b.env"]);
    // Not YAML: the `$VAR` references only; `parse` reports the error.
    assert_eq!(client_needs("a: [$B").vars, ["B"]);
}

#[test]
fn flow_closer_repairs_are_bounded() {
    // 40 closers left of their key, each needing spaces: the first 32 spaces are added, then
    // the scanner's own error stands (no unbounded re-scanning of a hostile template).
    let mut text = String::from("services:\n  web:\n    image: a\nx-lists:\n");
    for i in 0..40 {
        text.push_str(&format!("  l{i}: [\n    x\n ]\n"));
    }
    let t = std::time::Instant::now();
    let e = parse(&text, "app", &Inputs::default()).expect_err("too many repairs");
    assert!(e.to_string().contains("indentation"), "{e}");
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
    // A few are repaired.
    let few: String = (0..3).map(|i| format!("  l{i}: [\n    x\n ]\n")).collect();
    let ok = format!("services:\n  web:\n    image: a\nx-lists:\n{few}");
    assert!(parse(&ok, "app", &Inputs::default()).is_ok());
}

#[test]
fn quoted_scalar_repairs_do_not_grow_a_document_without_bound() {
    // A quoted scalar that starts far right and runs over many short lines: indenting each
    // line to its column would add ~4 MB; the repair gives up and the scanner's error stands.
    let pad = " ".repeat(4000);
    let lines = "x\n".repeat(1000);
    let text = format!("services:\n  web:\n    image: a\n    labels:\n      k:{pad}\"{lines}\"\n");
    let e = parse(&text, "app", &Inputs::default()).expect_err("not repaired");
    assert!(e.to_string().contains("quoted scalar"), "{e}");
    // A short one is read as libyaml reads it.
    let ok = "services:\n  web:\n    image: a\n    labels:\n      k: \"one\ntwo\"\n";
    let spec = parse(ok, "app", &Inputs::default()).expect("repaired");
    assert_eq!(spec.services["web"].labels["k"], "one two");
}

#[test]
fn a_quoted_scalar_far_right_over_many_lines_is_refused_without_building_the_repair() {
    // Just under the template size bound: a quote at column ~500,000 followed by ~250,000
    // short lines. Indenting each to the quote's column would take ~125 GB; the repair stops
    // at its growth bound as it builds, and the scanner's error stands.
    let pad = " ".repeat(500_000);
    let lines = "x\n".repeat(250_000);
    let text = format!("services:\n  web:\n    image: a\n    labels:\n      k:{pad}\"{lines}\"\n");
    assert!(text.len() < crate::spec::MAX_TEMPLATE_BYTES);
    let t = std::time::Instant::now();
    let e = parse(&text, "app", &Inputs::default()).expect_err("not repaired");
    assert!(e.to_string().contains("quoted scalar"), "{e}");
    assert!(
        t.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn every_spelling_of_reschedule_on_node_failure_means_the_same() {
    let placement = |service: &str| -> Result<Vec<String>, SpecError> {
        let text = format!("services:\n  s:\n    image: x\n{service}");
        Ok(parse(&text, "a", &Inputs::default())?.services["s"]
            .placement
            .clone())
    };
    let on = vec!["reschedule:on-node-failure".to_string()];
    for s in [
        "    environment:\n      - reschedule:on-node-failure\n",
        "    labels:\n      aliyun.reschedule: on-node-failure\n",
        "    labels:\n      berth.reschedule: \"true\"\n",
        "    labels:\n      com.docker.swarm.reschedule-policies: '[\"on-node-failure\"]'\n",
        "    labels:\n      com.docker.swarm.reschedule-policies: on-node-failure\n",
        // Twice says it once.
        "    environment:\n      - reschedule:on-node-failure\n    labels:\n      aliyun.reschedule: \"true\"\n",
    ] {
        assert_eq!(placement(s).as_ref(), Ok(&on), "{s}");
    }
    assert_eq!(
        placement("    labels:\n      aliyun.reschedule: \"off\"\n"),
        Ok(vec![])
    );
    for bad in [
        "    labels:\n      aliyun.reschedule: always\n",
        "    labels:\n      com.docker.swarm.reschedule-policies: '[\"always\"]'\n",
        "    labels:\n      com.docker.swarm.reschedule-policies: '[\"on-node'\n",
        "    environment:\n      - reschedule:always\n",
    ] {
        let e = placement(bad).expect_err(bad).to_string();
        assert!(e.contains("on-node-failure"), "{bad}: {e}");
    }
}

#[test]
fn strip_service_cuts_one_block_and_keeps_the_rest() {
    let v2 = "version: '3'\n# the shop\nservices:\n  web:\n    image: nginx\n    labels:\n      aliyun.scale: '2'\n\n  # the cache\n  cache: # redis\n    image: redis\n    command:\n      - redis-server\n  worker:\n    image: busybox\nvolumes:\n  data: {}\n";
    assert_eq!(
        strip_service(v2, "cache").expect("cut"),
        "version: '3'\n# the shop\nservices:\n  web:\n    image: nginx\n    labels:\n      aliyun.scale: '2'\n\n  # the cache\n  worker:\n    image: busybox\nvolumes:\n  data: {}\n"
    );
    // The last service of the block ends at the next top-level key.
    let cut = strip_service(v2, "worker").expect("cut");
    assert!(
        cut.ends_with("      - redis-server\nvolumes:\n  data: {}\n"),
        "{cut}"
    );
    // A nested key of the same name is not a service.
    assert_eq!(strip_service(v2, "labels"), None);
    assert_eq!(strip_service(v2, "image"), None);
    // Version 1: services at the top level.
    let v1 = "web:\n  image: nginx\n  links:\n    - db\ndb:\n  image: mysql\n";
    assert_eq!(
        strip_service(v1, "db").expect("cut"),
        "web:\n  image: nginx\n  links:\n    - db\n"
    );
    // Flow style has no block to cut.
    assert_eq!(
        strip_service("services: {web: {image: nginx}}\n", "web"),
        None
    );
}
