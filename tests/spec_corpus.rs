//! Data-driven parser tests: every `tests/data/ok/NAME.yml` must parse to `NAME.json`, every
//! `tests/data/bad/NAME.yml` must fail with the message in `NAME.err`.
//! Variables: a first line `# vars: K=V K2=V2`. What the CLI sends besides: a line
//! `# inputs: project=/DIR home=/DIR profiles=a,b`. Files for env_file: `NAME.env` beside it
//! is offered as `app.env`. Run with BERTH_BLESS=1 to (re)write the expectations.

use berth::spec::{self, Inputs};
use std::path::Path;

fn inputs_for(path: &Path, text: &str) -> Inputs {
    let mut inputs = Inputs::default();
    if let Some(rest) = text.lines().next().and_then(|l| l.strip_prefix("# vars:")) {
        for kv in rest.split_whitespace() {
            if let Some((k, v)) = kv.split_once('=') {
                inputs.vars.insert(k.into(), v.into());
            }
        }
    }
    if let Some(rest) = text.lines().find_map(|l| l.strip_prefix("# inputs:")) {
        for kv in rest.split_whitespace() {
            match kv.split_once('=') {
                Some(("project", v)) => inputs.project_dir = Some(v.into()),
                Some(("home", v)) => inputs.home = Some(v.into()),
                Some(("profiles", v)) => inputs.profiles = v.split(',').map(Into::into).collect(),
                _ => panic!("{}: unknown input {kv:?}", path.display()),
            }
        }
    }
    let env = path.with_extension("env");
    if let Ok(t) = std::fs::read_to_string(env) {
        inputs.files.insert("app.env".into(), t);
    }
    inputs
}

fn corpus(dir: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(dir))
        .expect("corpus dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    v.sort();
    v
}

fn check(path: &Path, actual: &str, ext: &str, failures: &mut Vec<String>) {
    let expected_path = path.with_extension(ext);
    if std::env::var_os("BERTH_BLESS").is_some() {
        std::fs::write(&expected_path, actual).expect("write expectation");
        return;
    }
    match std::fs::read_to_string(&expected_path) {
        Ok(exp) if exp == actual => {}
        Ok(exp) => failures.push(format!(
            "{}:\n--- expected\n{exp}\n--- actual\n{actual}",
            path.display()
        )),
        Err(_) => failures.push(format!(
            "{}: no {ext} file (run with BERTH_BLESS=1)",
            path.display()
        )),
    }
}

#[test]
fn templates_that_parse() {
    let mut failures = Vec::new();
    let files = corpus("tests/data/ok");
    assert!(files.len() >= 8, "corpus is missing");
    for path in files {
        let text = std::fs::read_to_string(&path).expect("read");
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("app");
        match spec::parse(&text, name, &inputs_for(&path, &text)) {
            Ok(app) => {
                let json = serde_json::to_string_pretty(&app).expect("json") + "\n";
                check(&path, &json, "json", &mut failures);
            }
            Err(e) => failures.push(format!("{}: unexpected error: {e}", path.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn templates_that_fail() {
    let mut failures = Vec::new();
    let files = corpus("tests/data/bad");
    assert!(files.len() >= 10, "corpus is missing");
    for path in files {
        let text = std::fs::read_to_string(&path).expect("read");
        match spec::parse(&text, "app", &inputs_for(&path, &text)) {
            Ok(_) => failures.push(format!("{}: parsed but should fail", path.display())),
            Err(e) => check(&path, &format!("{e}\n"), "err", &mut failures),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The brief's own example templates (`shared/brief/examples/*.yml`, the seed platform's
/// guide), copied unchanged into `tests/data/ok/example-*.yml` so a plain checkout has them.
const BRIEF_EXAMPLES: [&str; 7] = [
    "batch",
    "cron",
    "depends-sticky",
    "monitoring",
    "placement",
    "rolling",
    "wordpress",
];

#[test]
fn brief_examples_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ok");
    for name in BRIEF_EXAMPLES {
        let p = dir.join(format!("example-{name}.yml"));
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (the brief's example must be in tests/data)",
                p.display()
            )
        });
        if let Err(err) = spec::parse(&text, "example", &Inputs::default()) {
            panic!("{}: {err}", p.display());
        }
    }
}
