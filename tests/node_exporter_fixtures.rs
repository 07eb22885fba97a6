//! berth's hardware collectors against node_exporter's own fixtures (tests/data/node_exporter,
//! sources in SOURCES.md): the sysfs tree node_exporter tests itself with, and the output it
//! prints for it. Every series node_exporter's hwmon, thermal_zone, powersupplyclass, cpufreq
//! and schedstat collectors print must come out of berth with the same name, labels and value,
//! and berth must print nothing those collectors do not.

use berth::metrics::sysclass;
use std::collections::BTreeMap;
use std::path::Path;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/node_exporter");

/// Unpacks a `ttar` archive (node_exporter's text tar: `Directory:`, `Path:` with `Lines:` or
/// `SymlinkTo:`, a trailing `NOEOL` for files without a final newline) under `into`.
fn untar(ttar: &[u8], into: &Path) {
    let lines: Vec<&[u8]> = ttar.split(|b| *b == b'\n').collect();
    let text = |l: &[u8]| String::from_utf8_lossy(l).into_owned();
    let mut i = 0;
    while i < lines.len() {
        let l = text(lines[i]);
        if let Some(d) = l.strip_prefix("Directory: ") {
            std::fs::create_dir_all(into.join(d)).expect("mkdir");
            i += 1;
        } else if let Some(p) = l.strip_prefix("Path: ") {
            let path = into.join(p);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            let next = text(lines[i + 1]);
            if let Some(target) = next.strip_prefix("SymlinkTo: ") {
                std::os::unix::fs::symlink(target, &path).expect("symlink");
                i += 2;
            } else if let Some(n) = next.strip_prefix("Lines: ") {
                let n: usize = n.parse().expect("line count");
                let mut body: Vec<u8> = Vec::new();
                for l in &lines[i + 2..i + 2 + n] {
                    body.extend_from_slice(l);
                    body.push(b'\n');
                }
                if body.ends_with(b"NOEOL\n") {
                    body.truncate(body.len() - 6);
                }
                std::fs::write(&path, body).expect("write");
                i += 2 + n;
            } else {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
}

type Labels = Vec<(String, String)>;
type Series = BTreeMap<(String, Labels), f64>;

/// One exposition line: `name{k="v",...} value`.
fn parse_line(l: &str) -> Option<(String, Labels, f64)> {
    let name_end = l.find(['{', ' '])?;
    let name = l[..name_end].to_string();
    let mut labels = Vec::new();
    let mut rest = &l[name_end..];
    if let Some(r) = rest.strip_prefix('{') {
        let mut chars = r.char_indices().peekable();
        let mut key = String::new();
        let mut end = 0;
        while let Some((at, c)) = chars.next() {
            match c {
                '}' => {
                    end = at + 1;
                    break;
                }
                ',' => {}
                '=' => {
                    chars.next(); // the opening quote
                    let mut v = String::new();
                    while let Some((_, c)) = chars.next() {
                        match c {
                            '\\' => match chars.next().map(|x| x.1) {
                                Some('n') => v.push('\n'),
                                Some(o) => v.push(o),
                                None => {}
                            },
                            '"' => break,
                            o => v.push(o),
                        }
                    }
                    labels.push((std::mem::take(&mut key), v));
                }
                o => key.push(o),
            }
        }
        rest = &r[end..];
    }
    labels.sort();
    Some((name, labels, rest.trim().parse().ok()?))
}

fn ours(name: &str) -> bool {
    [
        "node_hwmon_",
        "node_thermal_zone_",
        "node_cooling_device_",
        "node_power_supply_",
        "node_cpu_scaling_",
        "node_cpu_frequency_",
        "node_schedstat_",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

#[test]
fn hardware_collectors_print_what_node_exporter_prints_for_its_fixtures() {
    let tmp = tempfile::tempdir().expect("tmp");
    untar(
        &std::fs::read(format!("{DATA}/sys.ttar")).expect("sys.ttar"),
        tmp.path(),
    );
    let got = sysclass::read(&tmp.path().join("sys"), &Path::new(DATA).join("proc"));

    let expected_text =
        String::from_utf8_lossy(&std::fs::read(format!("{DATA}/e2e-output.txt")).expect("output"))
            .into_owned();
    let mut expected = Series::new();
    for l in expected_text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, labels, v)) = parse_line(l) else {
            continue;
        };
        // node_cpu_frequency_hertz{core,package} is the cpu collector's /proc/cpuinfo figure
        // (its --collector.cpu.info flag, off by default), not cpufreq's.
        if ours(&name) && !labels.iter().any(|(k, _)| k == "package") {
            expected.insert((name, labels), v);
        }
    }
    assert!(expected.len() > 150, "fixture read: {}", expected.len());

    // node_exporter's end-to-end-test.sh runs with
    // `--collector.hwmon.chip-include=(applesmc|asus_nb_wmi|coretemp|hwmon4|ieee80211|nct6779)`
    // (berth reads every chip, as node_exporter's default does).
    let chip_included = |labels: &[(String, String)]| {
        labels.iter().filter(|(k, _)| k == "chip").all(|(_, c)| {
            [
                "applesmc",
                "asus_nb_wmi",
                "coretemp",
                "hwmon4",
                "ieee80211",
                "nct6779",
            ]
            .iter()
            .any(|p| c.contains(p))
        })
    };
    let mut have = Series::new();
    for (name, fam) in &got.0 {
        assert!(ours(name), "{name} is not one of these collectors'");
        for (labels, v) in fam.samples.iter().filter(|(l, _)| chip_included(l)) {
            let mut labels = labels.clone();
            labels.sort();
            assert!(
                have.insert((name.clone(), labels.clone()), *v).is_none(),
                "{name}{labels:?} twice"
            );
        }
    }
    let mut problems = Vec::new();
    for ((name, labels), v) in &expected {
        match have.get(&(name.clone(), labels.clone())) {
            None => problems.push(format!("missing {name}{labels:?} {v}")),
            Some(h) if (h - v).abs() > v.abs() * 1e-9 + 1e-12 => {
                problems.push(format!("{name}{labels:?}: berth {h}, node_exporter {v}"))
            }
            Some(_) => {}
        }
    }
    for (name, labels) in have.keys() {
        if !expected.contains_key(&(name.clone(), labels.clone())) {
            problems.push(format!("extra {name}{labels:?}"));
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {} series differ:\n{}",
        problems.len(),
        expected.len(),
        problems.join("\n")
    );
}
