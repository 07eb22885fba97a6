//! Real public dashboards (tests/data/dashboards, sources in SOURCES.md) against a real agent:
//! every series, label, measurement, field and tag their queries and template variables use
//! must reach a real Prometheus (scraping the agent) and a real InfluxDB v1 (fed by the
//! agent), except the few listed in `ABSENT`, each with the reason it cannot exist here.

use super::backends::{Influx, Prometheus};
use super::dashrefs::{influx_refs, prometheus_refs};
use super::harness::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

const APP: &str = "dash";

/// References that cannot be present, with why. `*` matches any suffix. Entries that depend on
/// the host apply only where the host lacks what they need, so on a host that has it the
/// series must be there.
fn absent() -> Vec<(&'static str, String)> {
    let mut out: Vec<(&'static str, String)> = vec![
        (
            "docker.DUMMY",
            "a placeholder in Chronograf's docker-engine.json (`SELECT mean(\"DUMMY\")`): no exporter has it".into(),
        ),
        (
            "docker_container_blkio.io_merged_recursive_*",
            CFQ.into(),
        ),
        ("docker_container_blkio.io_queue_recursive_*", CFQ.into()),
        ("docker_container_blkio.io_wait_time_*", CFQ.into()),
        (
            "node_interrupts_total",
            "node_exporter's interrupts collector is off by default (a series per IRQ and CPU)".into(),
        ),
        (
            "node_systemd_*",
            "node_exporter's systemd collector is off by default (it talks to systemd over D-Bus)".into(),
        ),
        (
            "node_kernel_hung_tasks",
            "Node Exporter Full's spelling: node_exporter (and berth) name it node_kernel_hung_tasks_total".into(),
        ),
        (
            "node_scrape_collector_*",
            "node_exporter's self-monitoring per collector; berth reports its cycle as berth_collect_seconds".into(),
        ),
        (
            "node_textfile_scrape_error",
            "node_exporter's textfile collector (.prom files in a directory); berth takes custom metrics from containers".into(),
        ),
    ];
    let lacks = |path: &str| !Path::new(path).exists();
    // On cgroup v1, the root's throttle counters say whether this kernel accounts block I/O
    // per cgroup at all (a Firecracker VM's virtio disk: all zero).
    let v1_root = std::fs::read_to_string("/sys/fs/cgroup/blkio/blkio.throttle.io_service_bytes")
        .unwrap_or_default();
    let totals: Vec<&str> = v1_root
        .lines()
        .filter_map(|l| l.strip_prefix("Total "))
        .collect();
    if !totals.is_empty() && totals.iter().all(|t| *t == "0") {
        for r in [
            "docker_container_blkio.io_service_bytes_recursive_*",
            "docker_container_blkio.io_serviced_recursive_*",
        ] {
            out.push((r, "this kernel accounts no block I/O to cgroups (the root cgroup's blkio.throttle counters are all 0)".into()));
        }
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    if !meminfo.contains("HardwareCorrupted:") {
        out.push((
            "node_memory_HardwareCorrupted_bytes",
            "this kernel has no HardwareCorrupted in /proc/meminfo (no CONFIG_MEMORY_FAILURE)"
                .into(),
        ));
    }
    if lacks("/proc/pressure/irq") {
        out.push((
            "node_pressure_irq_*",
            "this kernel has no /proc/pressure/irq (CONFIG_IRQ_TIME_ACCOUNTING and PSI for IRQs)"
                .into(),
        ));
    }
    if lacks("/proc/schedstat") {
        out.push((
            "node_schedstat_*",
            "this kernel has no /proc/schedstat (CONFIG_SCHED_INFO)".into(),
        ));
    }
    if lacks("/var/run/utmp") {
        out.push((
            "system.n_users",
            "this host has no /var/run/utmp (nobody logs in to a container host's VM)".into(),
        ));
    }
    for (dir, refs) in [
        ("/sys/class/hwmon", "node_hwmon_*"),
        ("/sys/class/thermal", "node_cooling_device_*"),
        ("/sys/class/power_supply", "node_power_supply_*"),
        (
            "/sys/devices/system/cpu/cpu0/cpufreq",
            "node_cpu_scaling_frequency_*",
        ),
    ] {
        let empty = std::fs::read_dir(dir)
            .map(|mut d| d.next().is_none())
            .unwrap_or(true);
        if empty {
            out.push((refs, format!("this host (a VM) has no {dir}: no sensors, fans, cooling devices, power supplies or frequency scaling to read")));
        }
    }
    out
}

/// CFQ's per-cgroup statistics (blkio.io_merged, io_queued, io_wait_time): the CFQ scheduler
/// left Linux in 5.0, so the engine (and Telegraf through it) report none on current kernels.
const CFQ: &str = "CFQ-only blkio statistics: the CFQ scheduler left Linux in 5.0 and the engine reports none since";

fn absent_reason(absent: &[(&'static str, String)], r: &str) -> Option<String> {
    absent.iter().find_map(|(pat, why)| {
        let hit = match pat.strip_suffix('*') {
            Some(prefix) => r.starts_with(prefix),
            None => r == *pat,
        };
        hit.then(|| why.clone())
    })
}

fn load(dir: &str) -> Vec<(String, serde_json::Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/dashboards")
        .join(dir);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .expect("dashboards dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("dashboard");
            (
                p.file_name().expect("name").to_string_lossy().into_owned(),
                serde_json::from_str(&text).expect("dashboard JSON"),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn public_dashboards_find_every_series_they_query() {
    let influx = Influx::start();
    let a = Agent::start_with_config(&format!(
        "[metrics]\ninterval = \"1s\"\nprometheus_public = true\n[[metrics.influxdb]]\nurl = \"{}\"\ndatabase = \"telegraf\"\n",
        influx.url()
    ));
    // A container that reads and writes its disk (block I/O per device) and its network.
    a.deploy(
        APP,
        r#"
services:
  io:
    image: berth-test/busybox
    command: ["sh", "-c", "while :; do dd if=/dev/urandom of=/tmp/f bs=64k count=16 conv=fsync 2>/dev/null; cat /tmp/f > /dev/null; wget -q -T 1 -O /dev/null http://127.0.0.1:1/ 2>/dev/null; sleep 1; done"]
    labels:
      org.label-schema.group: "monitoring"
"#,
    );
    a.wait_running(APP, 1, Duration::from_secs(60));
    let p = Prometheus::start(&format!("127.0.0.1:{}", a.port));
    wait_until(
        "container points in InfluxDB and container series in Prometheus",
        Duration::from_secs(60),
        || {
            !influx
                .rows(&format!(
                    "SELECT usage_total FROM docker_container_cpu WHERE app='{APP}'"
                ))
                .is_empty()
                && !p
                    .query(&format!(
                        "container_cpu_usage_seconds_total{{app=\"{APP}\"}}"
                    ))
                    .is_empty()
                && !p.query("node_uname_info").is_empty()
        },
    );
    // A few more cycles: rates and per-cycle series have two samples.
    std::thread::sleep(Duration::from_secs(4));

    let mut missing: Vec<String> = Vec::new();
    let absent = absent();
    let mut listed: BTreeSet<String> = BTreeSet::new();
    let mut counted = 0;
    let mut note = |r: String, missing: &mut Vec<String>| match absent_reason(&absent, &r) {
        Some(why) => {
            listed.insert(format!("{r}: {why}"));
        }
        None => missing.push(r),
    };
    for (file, d) in load("prometheus") {
        for (metric, labels) in prometheus_refs(&d) {
            counted += 1;
            let series = p.query(&metric);
            if series.is_empty() {
                note(metric.clone(), &mut missing);
                continue;
            }
            for l in labels {
                let has = series
                    .iter()
                    .any(|s| s["metric"][&l].as_str().is_some_and(|v| !v.is_empty()));
                if !has {
                    note(format!("{metric}{{{l}}}"), &mut missing);
                }
            }
        }
        eprintln!("checked {file}");
    }
    for (file, d) in load("influxdb") {
        let refs = influx_refs(&d);
        for (m, fields) in &refs.fields {
            let have = influx
                .query(&format!("SHOW FIELD KEYS FROM \"{m}\""))
                .to_string();
            for f in fields {
                counted += 1;
                if !have.contains(&format!("[\"{f}\",")) {
                    note(format!("{m}.{f}"), &mut missing);
                }
            }
        }
        for (m, tags) in &refs.tags {
            let have = influx
                .query(&format!("SHOW TAG KEYS FROM \"{m}\""))
                .to_string();
            for t in tags {
                counted += 1;
                if !have.contains(&format!("[\"{t}\"]")) {
                    note(format!("{m},{t}"), &mut missing);
                }
            }
        }
        eprintln!("checked {file}");
    }
    eprintln!(
        "{counted} references; absent as listed ({}):\n{}",
        listed.len(),
        listed.iter().cloned().collect::<Vec<_>>().join("\n")
    );
    assert!(counted > 300, "the dashboards were not read: {counted}");
    missing.sort();
    missing.dedup();
    assert!(
        missing.is_empty(),
        "{} references the dashboards use are missing:\n{}",
        missing.len(),
        missing.join("\n")
    );
    a.ok(&["rm", APP]);
}
