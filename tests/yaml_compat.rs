//! berth reads every YAML document libyaml reads, to the same value: the YAML test suite's
//! documents (`tests/data/yaml-suite/`, SOURCES.md) read by libyaml (PyYAML's CSafeLoader;
//! go-yaml, which docker compose v2 uses, is its port) and by `spec::yaml_document`, which
//! reads a template's YAML exactly as `berth deploy` does. Where libyaml forgives what the
//! YAML spec refuses (a comment right after a quote, tabs and short indentation inside flow
//! collections and quoted scalars, `[-]`, a flow closer at its key's indentation), berth
//! reads it as libyaml does (`values::read_as_libyaml`).

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Documents where berth and libyaml differ, each with the reason.
const KNOWN: &[(&str, &str)] = &[
    // Not repaired: leading whitespace-only lines longer than the content's indentation.
    (
        "S98Z",
        "a block scalar whose first lines hold only spaces, more than its first comment line: the spec refuses it and no compose file needs it",
    ),
    // Tags: libyaml builds Python sets, bytes and ordered pairs; a template has no use for
    // them and berth reads the untagged value.
    ("2XXW", "!!set"),
    ("565N", "!!binary"),
    ("J7PZ", "!!omap"),
    ("FH7J", "!!null and !!str on empty nodes"),
    // libyaml departs from the spec here; the suite's in.json agrees with berth.
    (
        "652Z",
        "`?foo` in a flow map is a plain scalar, not a key indicator",
    ),
    ("HM87-01", "`[?x]` is the scalar `?x`"),
    ("Y2GN", "`&an:chor` is an anchor named `an:chor`"),
    (
        "JEF9-02",
        "trailing spaces at the end of a kept block scalar without a final newline",
    ),
    (
        "L24T-01",
        "trailing spaces at the end of a block scalar without a final newline",
    ),
];

const LIBYAML: &str = r#"
import json, sys, datetime, yaml
def norm(x):
    if isinstance(x, dict): return {key(k): norm(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)): return [norm(v) for v in x]
    if isinstance(x, (set, frozenset)): return sorted(norm(v) for v in x)
    if isinstance(x, (datetime.date, datetime.datetime)): return str(x)
    if isinstance(x, bytes): return x.decode("latin1")
    return x
def key(k):
    if isinstance(k, str): return k
    if isinstance(k, bool): return str(k).lower()
    if k is None: return "null"
    if isinstance(k, (int, float)): return str(k)
    return json.dumps(norm(k))
for path in sys.stdin.read().split("\n"):
    if not path: continue
    try:
        docs = list(yaml.load_all(open(path, "rb").read(), Loader=yaml.CSafeLoader))
        if len(docs) > 1: print(json.dumps({"multi": True}))
        else: print(json.dumps({"ok": norm(docs[0] if docs else None)}, default=str))
    except Exception as e:
        print(json.dumps({"err": str(e).splitlines()[0]}))
"#;

/// Scalars compared by their text, lower case: YAML 1.1 (libyaml) and 1.2 (berth) type some
/// plain scalars differently (`yes`, `0755`), which a template reads as text either way.
fn norm(v: &Value) -> Value {
    match v {
        Value::Null => Value::Null,
        Value::Bool(b) => Value::String(b.to_string()),
        Value::Number(n) => Value::String(n.to_string().to_lowercase()),
        Value::String(s) => Value::String(s.to_lowercase()),
        Value::Array(a) => Value::Array(a.iter().map(norm).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), norm(v))).collect()),
    }
}

fn libyaml(files: &[PathBuf]) -> Option<Vec<Value>> {
    let mut child = Command::new("python3")
        .args(["-c", LIBYAML])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let list: String = files.iter().map(|p| format!("{}\n", p.display())).collect();
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(list.as_bytes())
        .expect("write the list");
    let out = child.wait_with_output().expect("python3");
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), files.len(), "one verdict a file");
    Some(lines)
}

fn has_libyaml() -> bool {
    Command::new("python3")
        .args(["-c", "import yaml; yaml.CSafeLoader"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn berth_reads_every_document_libyaml_reads_to_the_same_value() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/yaml-suite");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("the suite")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() > 400, "{} documents", files.len());
    if !has_libyaml() {
        assert!(
            std::env::var_os("CI").is_none(),
            "python3-yaml (libyaml) is missing: scripts/test installs it"
        );
        eprintln!(
            "SKIPPED: python3 with PyYAML's libyaml loader is not installed (scripts/test installs python3-yaml)"
        );
        return;
    }
    let theirs = libyaml(&files).expect("libyaml ran");
    let known: BTreeMap<&str, &str> = KNOWN.iter().copied().collect();
    let mut failures = Vec::new();
    let mut read = 0;
    let mut seen_known = Vec::new();
    for (file, verdict) in files.iter().zip(&theirs) {
        let id = file.file_stem().and_then(|s| s.to_str()).expect("name");
        let Some(value) = verdict.get("ok") else {
            continue;
        };
        let text = match std::fs::read(file).map(String::from_utf8) {
            Ok(Ok(t)) => t,
            _ => {
                failures.push(format!("{id}: not UTF-8, which libyaml reads"));
                continue;
            }
        };
        read += 1;
        let ours = berth::spec::yaml_document(&text);
        let same = ours.as_ref().is_ok_and(|o| norm(o) == norm(value));
        if known.contains_key(id) {
            seen_known.push(id.to_string());
            if same {
                failures.push(format!("{id}: listed as a difference, but berth now reads it as libyaml: take it off the list"));
            }
            continue;
        }
        match ours {
            Err(e) => failures.push(format!("{id}: libyaml reads it, berth refuses it: {e}")),
            Ok(o) if !same => failures.push(format!("{id}: libyaml reads {value}, berth {o}")),
            Ok(_) => {}
        }
    }
    assert_eq!(
        seen_known.len(),
        KNOWN.len(),
        "every listed difference is a document libyaml reads: {seen_known:?}"
    );
    assert!(read > 200, "libyaml read only {read} documents");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The repairs in a template's own shapes: each document libyaml reads is read the same, and
/// an error after a repair keeps its line.
#[test]
fn libyaml_laxities_in_templates_read_as_docker_compose_reads_them() {
    let doc = "services:\n  web:\n    image: \"nginx:1.27\"# pinned\n    command: [\"sh\",\n\t\"-c\", \"echo hi\"]#note\n    environment:\n      GREETING: \"hello\n  world\"\n    entrypoint: [-]\n";
    let v = berth::spec::yaml_document(doc).expect("reads");
    let web = &v["services"]["web"];
    assert_eq!(web["image"], "nginx:1.27");
    assert_eq!(web["command"], serde_json::json!(["sh", "-c", "echo hi"]));
    assert_eq!(web["environment"]["GREETING"], "hello world");
    assert_eq!(web["entrypoint"], serde_json::json!(["-"]));
    // A real error after the repaired lines keeps its own line number.
    let bad = format!("{doc}    ports: [\"80\n  bad: [\n");
    let e = berth::spec::yaml_document(&bad)
        .expect_err("refused")
        .to_string();
    assert!(e.contains("line 9") || e.contains("line 10"), "{e}");
    // A tab used as block indentation is refused, as libyaml refuses it.
    let e = berth::spec::yaml_document("services:\n\tweb:\n\t\timage: x\n").expect_err("tab");
    assert!(e.to_string().contains("line 2"), "{e}");
}
