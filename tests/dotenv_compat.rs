//! berth reads `.env` files as docker compose does: compose-go's own dotenv fixtures
//! (`tests/data/dotenv/`, copied byte for byte) must give the values compose-go's tests assert.

use berth::spec::parse_dotenv;
use std::collections::BTreeMap;
use std::path::Path;

fn read(name: &str, env: &[(&str, &str)]) -> Result<BTreeMap<String, String>, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/dotenv")
        .join(name);
    let text = std::fs::read_to_string(&path).expect("fixture");
    let env: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let lookup = |k: &str| env.get(k).cloned();
    parse_dotenv(&text, name, &lookup)
        .map(|v| v.into_iter().collect())
        .map_err(|e| e.to_string())
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Only the keys compose-go's test names are compared (it checks those, not the rest).
fn check(name: &str, env: &[(&str, &str)], want: &[(&str, &str)]) {
    let got = read(name, env).unwrap_or_else(|e| panic!("{name}: {e}"));
    for (k, v) in want {
        assert_eq!(
            got.get(*k).map(String::as_str),
            Some(*v),
            "{name}: {k} in {got:?}"
        );
    }
}

#[test]
fn compose_go_fixtures_give_compose_go_values() {
    let plain = [
        ("OPTION_A", "1"),
        ("OPTION_B", "2"),
        ("OPTION_C", "3"),
        ("OPTION_D", "4"),
        ("OPTION_E", "5"),
    ];
    check("plain.env", &[], &plain);
    // The same with a UTF-8 byte order mark first.
    check("utf8-bom.env", &[], &plain);
    let got = read("plain.env", &[]).expect("plain");
    assert_eq!(got.get("456").map(String::as_str), Some("ABC"));
    assert_eq!(got.get("OPTION_F").map(String::as_str), Some(""));
    assert_eq!(got.get("OPTION_H").map(String::as_str), Some("my string"));
    check(
        "exported.env",
        &[],
        &[("OPTION_A", "2"), ("OPTION_B", "\\n")],
    );
    check(
        "equals.env",
        &[],
        &[(
            "OPTION_A",
            "postgres://localhost:5432/database?sslmode=disable",
        )],
    );
    check(
        "quoted.env",
        &[],
        &[
            ("OPTION_A", "1"),
            ("OPTION_B", "2"),
            ("OPTION_C", ""),
            ("OPTION_D", "\\n"),
            ("OPTION_E", "1"),
            ("OPTION_F", "2"),
            ("OPTION_G", ""),
            ("OPTION_H", "\n"),
            ("OPTION_I", "echo 'asd'"),
            ("OPTION_J", "first line\nsecond line\nthird line\nand so on"),
            ("OPTION_K", "Let's go!"),
            ("OPTION_Z", "last value"),
        ],
    );
    check(
        "unquoted.env",
        &[],
        &[
            ("OPTION_A", "some quoted phrase"),
            ("OPTION_B", "first one with an unquoted phrase"),
            ("OPTION_C", "then another one with an unquoted phrase"),
            (
                "OPTION_D",
                "then another one with an unquoted phrase special è char",
            ),
            ("OPTION_E", "then another one quoted phrase"),
        ],
    );
    let subst = [
        ("OPTION_A", "1"),
        ("OPTION_B", "1"),
        ("OPTION_C", "1"),
        ("OPTION_D", "1_1"),
        ("OPTION_E", ""),
    ];
    check("substitutions.env", &[], &subst);
    check("substitutions-default.env", &[], &subst);
    check(
        "substitutions-default.env",
        &[("OPTION_A", "5")],
        &[
            ("OPTION_A", "5"),
            ("OPTION_B", "5"),
            ("OPTION_C", "5"),
            ("OPTION_D", "5_5"),
            ("OPTION_E", ""),
        ],
    );
    check(
        "special.env",
        &[],
        &[
            ("VAR-WITH-DASHES", "dashes"),
            ("VAR.WITH.DOTS", "dots"),
            ("VAR_WITH_UNDERSCORES", "underscores"),
        ],
    );
    // A key alone on its line comes from the environment, and is absent without it.
    let env = [("VAR_TO_BE_LOADED_FROM_OS_ENV", "SOME_RANDOM_VALUE")];
    let got = read("inherited-multi-var.env", &env).expect("inherited");
    assert_eq!(
        got,
        map(&[
            ("VAR_TO_BE_LOADED_FROM_OS_ENV", "SOME_RANDOM_VALUE"),
            ("bar", "baz"),
            ("foo", "bar"),
        ])
    );
    let got = read("inherited-multi-var.env", &[]).expect("inherited");
    assert_eq!(got, map(&[("bar", "baz"), ("foo", "bar")]));
    // compose-go: "line 7: key cannot contain a space".
    let e = read("invalid1.env", &[]).expect_err("invalid");
    assert!(
        e.contains("line 7") && e.contains("cannot contain a space"),
        "{e}"
    );
}

#[test]
fn compose_go_expanding_cases() {
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("FOO=test\nBAR=$FOO", &[("FOO", "test"), ("BAR", "test")]),
        (
            "FOO=test\nBAR=${FOO}bar",
            &[("FOO", "test"), ("BAR", "testbar")],
        ),
        ("BAR=$FOO", &[("BAR", "")]),
        (
            "FOO=test\nBAR=\"quote $FOO\"",
            &[("FOO", "test"), ("BAR", "quote test")],
        ),
        ("BAR='quote $FOO'", &[("BAR", "quote $FOO")]),
        (r#"FOO="foo\$BAR""#, &[("FOO", "foo$BAR")]),
        (r#"FOO="foo\${BAR}""#, &[("FOO", "foo${BAR}")]),
        (
            "FOO=test\nBAR=\"foo\\${FOO} ${FOO}\"",
            &[("FOO", "test"), ("BAR", "foo${FOO} test")],
        ),
        (
            "TEST_URLS=\"stratum+tcp://stratum.antpool.com:3333\nstratum+tcp://stratum.antpool.com:443\"",
            &[(
                "TEST_URLS",
                "stratum+tcp://stratum.antpool.com:3333\nstratum+tcp://stratum.antpool.com:443",
            )],
        ),
    ];
    for (input, want) in cases {
        let got: BTreeMap<String, String> = parse_dotenv(input, "inline", &|_| None)
            .unwrap_or_else(|e| panic!("{input:?}: {e}"))
            .into_iter()
            .collect();
        assert_eq!(got, map(want), "{input:?}");
    }
}
