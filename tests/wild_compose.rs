//! Compose files from the wild (`tests/data/wild/*/`, sources in `SOURCES.md`): each goes
//! through `berth config` (the real CLI, from the file's directory: its `.env` and env files
//! as compose reads them) and through Debian's `docker-compose` 1.29 `config` with the same
//! environment, and what they mean is compared service by service: names, images, ports,
//! environment, volumes and restart policy. A file berth refuses must be one listed below,
//! with the reason the README gives. Without `docker-compose` the comparison is reported as
//! skipped (scripts/test installs it); berth's half still runs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use yaml_rust2::{Yaml, YamlLoader};

/// What a case is expected to do besides parsing alike in both tools.
enum Expect {
    /// Both parse; compare.
    Same,
    /// berth refuses, with this in its message (a feature listed in README).
    BerthRefuses(&'static str),
    /// Both refuse (the file is invalid for compose v2 too); berth's message holds this.
    BothRefuse(&'static str),
    /// docker-compose 1.29 refuses what compose v2 (the current compose) accepts; berth
    /// accepts it as v2 does.
    #[allow(dead_code)] // the reason, for the reader
    OldComposeRefuses(&'static str),
}

fn expectation(case: &str) -> Expect {
    match case {
        // A fixed address for a DNS upstream: berth runs versions side by side and replicas,
        // which cannot share one address (README, "Templates").
        "awesome-pihole-cloudflared-DoH" => Expect::BerthRefuses("ipv4_address"),
        // Mounts a named volume it never declares: compose v2 refuses it too.
        "library-yourls" => Expect::BothRefuse("named volume \"db\" is not declared"),
        // Its env_file is written by Portainer, not in the repository.
        "paperless-portainer" => Expect::BothRefuse("stack.env"),
        "library-influxdb" => Expect::OldComposeRefuses("top-level `name` (compose v2's)"),
        "library-mongo" => Expect::OldComposeRefuses("a boolean in `environment`"),
        _ => Expect::Same,
    }
}

#[derive(Debug, Default, PartialEq)]
struct Service {
    image: String,
    /// (host ip, host port, container port, protocol)
    ports: BTreeSet<(String, Option<u16>, u16, String)>,
    environment: BTreeMap<String, String>,
    /// (kind, source, target, read-only)
    volumes: BTreeSet<(String, String, String, bool)>,
    restart: String,
}

fn cases() -> Vec<(String, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/wild");
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(&root)
        .expect("tests/data/wild")
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| {
            let dir = e.path();
            let file = std::fs::read_dir(&dir)
                .ok()?
                .flatten()
                .map(|f| f.path())
                .find(|p| p.extension().is_some_and(|x| x == "yml" || x == "yaml"))?;
            Some((e.file_name().to_string_lossy().into_owned(), file))
        })
        .collect();
    out.sort();
    out
}

/// The same environment for both tools: nothing from the machine running the test.
fn clean(cmd: &mut Command, dir: &Path) {
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", "/home/wild");
}

fn berth(file: &Path) -> Result<serde_json::Value, String> {
    let dir = file.parent().expect("dir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
    cmd.arg("config")
        .arg("-f")
        .arg(file.file_name().expect("name"));
    clean(&mut cmd, dir);
    let o = cmd.output().expect("berth runs");
    if !o.status.success() {
        return Err(String::from_utf8_lossy(&o.stderr).into_owned());
    }
    serde_json::from_slice(&o.stdout).map_err(|e| format!("berth printed no JSON: {e}"))
}

fn docker_compose(file: &Path) -> Option<Result<Yaml, String>> {
    let dir = file.parent().expect("dir");
    let mut cmd = Command::new("docker-compose");
    cmd.arg("-f")
        .arg(file.file_name().expect("name"))
        .arg("config");
    clean(&mut cmd, dir);
    let o = cmd.output().ok()?;
    if !o.status.success() {
        return Some(Err(String::from_utf8_lossy(&o.stderr).into_owned()));
    }
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    Some(
        YamlLoader::load_from_str(&text)
            .map_err(|e| e.to_string())
            .map(|d| d.into_iter().next().unwrap_or(Yaml::Null)),
    )
}

fn text(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn get<'a>(y: &'a Yaml, k: &str) -> &'a Yaml {
    &y[k]
}

/// docker-compose 1.29's normalised service.
fn from_compose(s: &Yaml) -> Service {
    let mut out = Service {
        image: text(get(s, "image")).unwrap_or_default(),
        restart: text(get(s, "restart")).unwrap_or_default(),
        ..Default::default()
    };
    if let Some(ports) = get(s, "ports").as_vec() {
        for p in ports {
            match p {
                Yaml::Hash(_) => {
                    let target = text(get(p, "target")).and_then(|t| t.parse().ok());
                    out.ports.insert((
                        text(get(p, "host_ip")).unwrap_or_default(),
                        text(get(p, "published")).and_then(|t| t.parse().ok()),
                        target.unwrap_or(0),
                        text(get(p, "protocol")).unwrap_or_else(|| "tcp".into()),
                    ));
                }
                other => {
                    let t = text(other).unwrap_or_default();
                    let (spec, proto) = t.split_once('/').unwrap_or((&t, "tcp"));
                    let parts: Vec<&str> = spec.rsplitn(3, ':').collect();
                    out.ports.insert((
                        parts.get(2).unwrap_or(&"").to_string(),
                        parts.get(1).and_then(|h| h.parse().ok()),
                        parts[0].parse().unwrap_or(0),
                        proto.to_string(),
                    ));
                }
            }
        }
    }
    if let Some(env) = get(s, "environment").as_hash() {
        for (k, v) in env {
            // `config` prints a literal `$` escaped as `$$`.
            if let (Some(k), Some(v)) = (text(k), text(v)) {
                out.environment.insert(k, v.replace("$$", "$"));
            }
        }
    }
    if let Some(vols) = get(s, "volumes").as_vec() {
        for v in vols {
            match v {
                Yaml::Hash(_) => {
                    let kind = text(get(v, "type")).unwrap_or_default();
                    if kind == "tmpfs" {
                        continue;
                    }
                    let source = text(get(v, "source")).unwrap_or_default();
                    let kind = match (kind.as_str(), source.is_empty()) {
                        ("volume", true) => "anonymous".to_string(),
                        (k, _) => k.to_string(),
                    };
                    out.volumes.insert((
                        kind,
                        source,
                        text(get(v, "target")).unwrap_or_default(),
                        get(v, "read_only").as_bool().unwrap_or(false),
                    ));
                }
                other => {
                    let t = text(other).unwrap_or_default();
                    let parts: Vec<&str> = t.split(':').collect();
                    let (source, target, mode) = match parts.as_slice() {
                        [t] => ("", *t, ""),
                        [s, t] => (*s, *t, ""),
                        [s, t, m, ..] => (*s, *t, *m),
                        [] => continue,
                    };
                    let kind = if source.is_empty() {
                        "anonymous"
                    } else if source.starts_with('/') {
                        "bind"
                    } else {
                        "volume"
                    };
                    out.volumes.insert((
                        kind.to_string(),
                        source.to_string(),
                        target.to_string(),
                        mode.split(',').any(|m| m == "ro"),
                    ));
                }
            }
        }
    }
    out
}

/// berth's normalised service (`berth config` JSON).
fn from_berth(s: &serde_json::Value) -> Service {
    let str_of = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let mut out = Service {
        image: str_of(&s["image"]),
        ..Default::default()
    };
    out.restart = match s["restart"]["mode"].as_str().unwrap_or_default() {
        // No `restart` in the file: berth's one-shot rule (README), compose's "no".
        "unless-completed" => String::new(),
        "on-failure" => match s["restart"]["max_retries"].as_u64() {
            Some(n) => format!("on-failure:{n}"),
            None => "on-failure".into(),
        },
        m => m.to_string(),
    };
    for p in s["ports"].as_array().into_iter().flatten() {
        out.ports.insert((
            str_of(&p["host_ip"]),
            p["host_port"].as_u64().map(|h| h as u16),
            p["container_port"].as_u64().unwrap_or(0) as u16,
            str_of(&p["protocol"]),
        ));
    }
    for (k, v) in s["environment"].as_object().into_iter().flatten() {
        out.environment.insert(k.clone(), str_of(v));
    }
    for v in s["volumes"].as_array().into_iter().flatten() {
        let kind = str_of(&v["kind"]);
        if kind == "tmpfs" {
            continue;
        }
        out.volumes.insert((
            kind,
            str_of(&v["source"]),
            str_of(&v["target"]),
            v["read_only"].as_bool().unwrap_or(false),
        ));
    }
    out
}

#[test]
fn compose_files_from_the_wild_mean_the_same_to_berth_and_docker_compose() {
    let cases = cases();
    assert!(cases.len() >= 40, "the corpus has {} files", cases.len());
    let have_compose = Command::new("docker-compose")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_compose {
        eprintln!(
            "SKIPPED the comparison with docker-compose: it is not installed (scripts/test installs Debian's docker-compose 1.29); berth's half runs"
        );
    }
    let mut failures = Vec::new();
    let mut compared = 0;
    for (case, file) in &cases {
        let ours = berth(file);
        let theirs = if have_compose {
            docker_compose(file)
        } else {
            None
        };
        match (expectation(case), ours, theirs) {
            (Expect::BerthRefuses(why), Err(e), theirs) => {
                if !e.contains(why) {
                    failures.push(format!("{case}: refused, but not for {why:?}: {e}"));
                }
                if let Some(Err(t)) = theirs {
                    failures.push(format!("{case}: docker-compose refuses it too now: {t}"));
                }
            }
            (Expect::BothRefuse(why), Err(e), theirs) => {
                if !e.contains(why) {
                    failures.push(format!("{case}: refused, but not for {why:?}: {e}"));
                }
                if let Some(Ok(_)) = theirs {
                    // 1.29 may be laxer than compose v2 here; berth follows v2.
                }
            }
            (Expect::OldComposeRefuses(_), Ok(_), Some(Ok(_))) => {
                failures.push(format!(
                    "{case}: docker-compose 1.29 accepts it now: compare it"
                ));
            }
            (Expect::OldComposeRefuses(_), Ok(_), _) => {}
            (Expect::Same, Ok(ours), theirs) => {
                let Some(theirs) = theirs else { continue };
                let theirs = match theirs {
                    Ok(t) => t,
                    Err(e) => {
                        failures.push(format!("{case}: docker-compose refuses it: {e}"));
                        continue;
                    }
                };
                compared += 1;
                let a: BTreeMap<String, Service> = ours["services"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), from_berth(v)))
                    .collect();
                let mut b: BTreeMap<String, Service> = theirs["services"]
                    .as_hash()
                    .into_iter()
                    .flatten()
                    .filter_map(|(k, v)| Some((text(k)?, from_compose(v))))
                    .collect();
                // `config` keeps `volumes_from: [service:NAME:MODE]`; what it means is the
                // other service's volumes at the same paths (berth writes them out).
                for (k, v) in theirs["services"].as_hash().into_iter().flatten() {
                    let Some(name) = text(k) else { continue };
                    for e in get(v, "volumes_from").as_vec().into_iter().flatten() {
                        let e = text(e).unwrap_or_default();
                        let mut parts = e.split(':');
                        let (Some("service"), Some(src)) = (parts.next(), parts.next()) else {
                            continue;
                        };
                        let ro = parts.next() == Some("ro");
                        let shared: Vec<_> = b
                            .get(src)
                            .map(|s| s.volumes.iter().cloned().collect())
                            .unwrap_or_default();
                        if let Some(svc) = b.get_mut(&name) {
                            for (kind, source, target, r) in shared {
                                if !svc.volumes.iter().any(|m| m.2 == target) {
                                    svc.volumes.insert((kind, source, target, r || ro));
                                }
                            }
                        }
                    }
                }
                if a.keys().collect::<Vec<_>>() != b.keys().collect::<Vec<_>>() {
                    failures.push(format!(
                        "{case}: services differ: berth {:?}, docker-compose {:?}",
                        a.keys().collect::<Vec<_>>(),
                        b.keys().collect::<Vec<_>>()
                    ));
                    continue;
                }
                for (name, ours) in &a {
                    let theirs = &b[name];
                    if ours != theirs {
                        failures.push(format!(
                            "{case}, service {name}:\n  berth:          {ours:?}\n  docker-compose: {theirs:?}"
                        ));
                    }
                }
            }
            (_, Ok(_), _) => failures.push(format!("{case}: berth accepts it, expected a refusal")),
            (_, Err(e), _) => failures.push(format!("{case}: berth refuses it: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    if have_compose {
        assert!(
            compared >= 40,
            "compared {compared} files with docker-compose"
        );
    }
}
