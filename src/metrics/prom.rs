//! Prometheus text format 0.0.4 (pure): cAdvisor's container names, node_exporter's host
//! names, and berth's own figures.

use super::collect::{ContainerSample, Snapshot, container_tags};
use std::fmt::Write;

/// berth's own figures at scrape time.
#[derive(Debug, Clone, Default)]
pub struct Own {
    /// (sink, waiting lines, dropped lines).
    pub outbox: Vec<(String, i64, i64)>,
    pub reconcile_seconds: f64,
    pub log_lines_total: u64,
    pub log_lines_dropped_total: u64,
    pub collect_seconds: f64,
    pub cycles_skipped_total: u64,
    /// The agent process itself, as Prometheus clients' process collector reports it.
    pub process: Option<super::node::ProcessSelf>,
}

/// Escapes a label value: backslash, double quote and newline.
fn label_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// node_exporter's meminfo collector (Linux): each /proc/meminfo field it exports and its
/// metric name after `node_memory_` (`Active(anon)` -> `Active_anon_bytes`; the HugePages
/// counts have no unit and no `_bytes`). Its source, `collector/meminfo_linux.go` (node_exporter
/// a7dcc3a, 2026-08), lists exactly these.
const MEMINFO: [(&str, &str); 51] = [
    ("Active", "Active_bytes"),
    ("Active(anon)", "Active_anon_bytes"),
    ("Active(file)", "Active_file_bytes"),
    ("AnonHugePages", "AnonHugePages_bytes"),
    ("AnonPages", "AnonPages_bytes"),
    ("Bounce", "Bounce_bytes"),
    ("Buffers", "Buffers_bytes"),
    ("Cached", "Cached_bytes"),
    ("CmaFree", "CmaFree_bytes"),
    ("CmaTotal", "CmaTotal_bytes"),
    ("CommitLimit", "CommitLimit_bytes"),
    ("Committed_AS", "Committed_AS_bytes"),
    ("DirectMap1G", "DirectMap1G_bytes"),
    ("DirectMap2M", "DirectMap2M_bytes"),
    ("DirectMap4k", "DirectMap4k_bytes"),
    ("Dirty", "Dirty_bytes"),
    ("HardwareCorrupted", "HardwareCorrupted_bytes"),
    ("Hugepagesize", "Hugepagesize_bytes"),
    ("Inactive", "Inactive_bytes"),
    ("Inactive(anon)", "Inactive_anon_bytes"),
    ("Inactive(file)", "Inactive_file_bytes"),
    ("KernelStack", "KernelStack_bytes"),
    ("Mapped", "Mapped_bytes"),
    ("MemAvailable", "MemAvailable_bytes"),
    ("MemFree", "MemFree_bytes"),
    ("MemTotal", "MemTotal_bytes"),
    ("Mlocked", "Mlocked_bytes"),
    ("NFS_Unstable", "NFS_Unstable_bytes"),
    ("PageTables", "PageTables_bytes"),
    ("Percpu", "Percpu_bytes"),
    ("SReclaimable", "SReclaimable_bytes"),
    ("SUnreclaim", "SUnreclaim_bytes"),
    ("Shmem", "Shmem_bytes"),
    ("ShmemHugePages", "ShmemHugePages_bytes"),
    ("ShmemPmdMapped", "ShmemPmdMapped_bytes"),
    ("Slab", "Slab_bytes"),
    ("SwapCached", "SwapCached_bytes"),
    ("SwapFree", "SwapFree_bytes"),
    ("SwapTotal", "SwapTotal_bytes"),
    ("Unevictable", "Unevictable_bytes"),
    ("VmallocChunk", "VmallocChunk_bytes"),
    ("VmallocTotal", "VmallocTotal_bytes"),
    ("VmallocUsed", "VmallocUsed_bytes"),
    ("Writeback", "Writeback_bytes"),
    ("WritebackTmp", "WritebackTmp_bytes"),
    ("Zswap", "Zswap_bytes"),
    ("Zswapped", "Zswapped_bytes"),
    ("HugePages_Free", "HugePages_Free"),
    ("HugePages_Rsvd", "HugePages_Rsvd"),
    ("HugePages_Surp", "HugePages_Surp"),
    ("HugePages_Total", "HugePages_Total"),
];

struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: f64) {
        self.sample_plus(name, labels, None, v)
    }

    /// A sample whose labels are a shared set plus one of its own (interface, device).
    fn sample_plus(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        extra: Option<(&str, &str)>,
        v: f64,
    ) {
        self.out.push_str(name);
        if !labels.is_empty() || extra.is_some() {
            self.out.push('{');
            for (i, (k, val)) in labels.iter().chain(extra.as_ref()).enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                label_value(self.out, val);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        if v.is_finite() {
            let _ = write!(self.out, "{v}");
        } else {
            self.out.push_str(if v.is_nan() {
                "NaN"
            } else if v > 0.0 {
                "+Inf"
            } else {
                "-Inf"
            });
        }
        self.out.push('\n');
    }
}

/// cAdvisor's container families for the containers `keep` takes.
fn container_families(s: &Snapshot, keep: &dyn Fn(&ContainerSample) -> bool, f: &mut Family) {
    let running: Vec<_> = s
        .containers
        .iter()
        .filter(|c| c.stats.is_some() && keep(c))
        .collect();
    // Container label sets: cAdvisor's `id`, `name`, `image` plus berth's tags.
    let labels: Vec<Vec<(String, String)>> = running
        .iter()
        .map(|c| {
            let mut l = vec![
                ("id".to_string(), format!("/docker/{}", c.target.id)),
                ("name".to_string(), c.target.name.clone()),
                ("image".to_string(), c.target.image.clone()),
            ];
            l.extend(container_tags(s, &c.target).into_iter().filter(|(k, _)| {
                matches!(k.as_str(), "app" | "service" | "version" | "slot" | "node")
            }));
            // cAdvisor's `container_label_<key>`, the key's other characters as `_`.
            for (k, v) in &c.target.labels {
                let name: String = format!("container_label_{k}")
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                    .collect();
                if !v.is_empty() && !l.iter().any(|(n, _)| *n == name) {
                    l.push((name, v.clone()));
                }
            }
            l
        })
        .collect();
    let labels: Vec<Vec<(&str, &str)>> = labels
        .iter()
        .map(|l| l.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect())
        .collect();
    let host_total = s.sample.mem("MemTotal");
    type Get<'a> = &'a dyn Fn(&super::collect::ContainerSample) -> Option<f64>;
    let families: [(&str, &str, &str, Get); 9] = [
        (
            "container_cpu_usage_seconds_total",
            "counter",
            "Cumulative cpu time consumed in seconds.",
            &|c| c.stats.as_ref().map(|s| s.cpu_total_ns as f64 / 1e9),
        ),
        (
            "container_cpu_user_seconds_total",
            "counter",
            "Cumulative user cpu time consumed in seconds.",
            &|c| c.stats.as_ref().map(|s| s.cpu_user_ns as f64 / 1e9),
        ),
        (
            "container_cpu_system_seconds_total",
            "counter",
            "Cumulative system cpu time consumed in seconds.",
            &|c| c.stats.as_ref().map(|s| s.cpu_system_ns as f64 / 1e9),
        ),
        (
            "container_memory_usage_bytes",
            "gauge",
            "Current memory usage in bytes, including all memory regardless of when it was accessed.",
            &|c| c.stats.as_ref().map(|s| s.mem_usage as f64),
        ),
        (
            "container_memory_working_set_bytes",
            "gauge",
            "Current working set in bytes.",
            &|c| c.stats.as_ref().map(|s| s.working_set() as f64),
        ),
        (
            "container_memory_rss",
            "gauge",
            "Size of RSS in bytes.",
            &|c| {
                c.stats
                    .as_ref()
                    .and_then(|s| {
                        s.mem_stat("total_rss")
                            .or(s.mem_stat("rss"))
                            .or(s.mem_stat("anon"))
                    })
                    .map(|v| v as f64)
            },
        ),
        (
            "container_memory_cache",
            "gauge",
            "Number of bytes of page cache memory.",
            &|c| {
                c.stats
                    .as_ref()
                    .and_then(|s| {
                        s.mem_stat("total_cache")
                            .or(s.mem_stat("cache"))
                            .or(s.mem_stat("file"))
                    })
                    .map(|v| v as f64)
            },
        ),
        (
            "container_spec_memory_limit_bytes",
            "gauge",
            "Memory limit for the container.",
            &|c| Some(c.mem_limit(host_total) as f64),
        ),
        (
            "container_start_time_seconds",
            "gauge",
            "Start time of the container since unix epoch in seconds.",
            &|c| c.started_ns.map(|t| t as f64 / 1e9),
        ),
    ];
    for (name, kind, help, get) in families {
        f.head(name, kind, help);
        for (c, l) in running.iter().zip(&labels) {
            if let Some(v) = get(c) {
                f.sample(name, l, v);
            }
        }
    }
    type NetGet = fn(&super::cgroup::NetDev) -> u64;
    let nets: [(&str, &str, NetGet); 8] = [
        (
            "container_network_receive_bytes_total",
            "Cumulative count of bytes received",
            |n| n.rx_bytes,
        ),
        (
            "container_network_receive_packets_total",
            "Cumulative count of packets received",
            |n| n.rx_packets,
        ),
        (
            "container_network_receive_errors_total",
            "Cumulative count of errors encountered while receiving",
            |n| n.rx_errors,
        ),
        (
            "container_network_receive_packets_dropped_total",
            "Cumulative count of packets dropped while receiving",
            |n| n.rx_dropped,
        ),
        (
            "container_network_transmit_bytes_total",
            "Cumulative count of bytes transmitted",
            |n| n.tx_bytes,
        ),
        (
            "container_network_transmit_packets_total",
            "Cumulative count of packets transmitted",
            |n| n.tx_packets,
        ),
        (
            "container_network_transmit_errors_total",
            "Cumulative count of errors encountered while transmitting",
            |n| n.tx_errors,
        ),
        (
            "container_network_transmit_packets_dropped_total",
            "Cumulative count of packets dropped while transmitting",
            |n| n.tx_dropped,
        ),
    ];
    for (name, help, get) in nets {
        f.head(name, "counter", help);
        for (c, l) in running.iter().zip(&labels) {
            for n in &c.net {
                f.sample_plus(name, l, Some(("interface", &n.name)), get(n) as f64);
            }
        }
    }
    for (name, help, read) in [
        (
            "container_fs_reads_bytes_total",
            "Cumulative count of bytes read",
            true,
        ),
        (
            "container_fs_writes_bytes_total",
            "Cumulative count of bytes written",
            false,
        ),
    ] {
        f.head(name, "counter", help);
        for (c, l) in running.iter().zip(&labels) {
            for d in c.stats.iter().flat_map(|s| &s.blkio) {
                let dev = format!("{}:{}", d.major, d.minor);
                f.sample_plus(
                    name,
                    l,
                    Some(("device", &dev)),
                    if read { d.read_bytes } else { d.write_bytes } as f64,
                );
            }
        }
    }
    // cAdvisor's writable-layer figures, from the slower cycle.
    for (name, help, limit) in [
        (
            "container_fs_usage_bytes",
            "Number of bytes that are consumed by the container on this filesystem.",
            false,
        ),
        (
            "container_fs_limit_bytes",
            "Number of bytes that can be consumed by the container on this filesystem.",
            true,
        ),
    ] {
        f.head(name, "gauge", help);
        for (c, l) in running.iter().zip(&labels) {
            if let Some(u) = &c.fs {
                f.sample_plus(
                    name,
                    l,
                    Some(("device", &u.device)),
                    if limit { u.limit } else { u.usage } as f64,
                );
            }
        }
    }
}

/// `berth_container_running` for the containers `keep` takes.
fn running_family(s: &Snapshot, keep: &dyn Fn(&ContainerSample) -> bool, f: &mut Family) {
    // Every container berth knows, running or not (cAdvisor has no equivalent; kube-state's
    // naming): 1 for the state it is in.
    f.head(
        "berth_container_running",
        "gauge",
        "1 when the container runs, else 0.",
    );
    for c in s.containers.iter().filter(|c| keep(c)) {
        let slot = c.target.slot.to_string();
        f.sample(
            "berth_container_running",
            &[
                ("name", &c.target.name),
                ("app", &c.target.app),
                ("service", &c.target.service),
                ("version", &c.target.version),
                ("slot", &slot),
                ("node", &s.node),
            ],
            if c.stats.is_some() { 1.0 } else { 0.0 },
        );
    }
}

/// One service's series only (`monitoring.addon.prometheus`): its containers' cAdvisor
/// families and `berth_container_running`, none of the host's or the other apps'.
pub fn encode_service(s: &Snapshot, app: &str, service: &str) -> String {
    let mut out = String::with_capacity(4096);
    let mut f = Family { out: &mut out };
    let keep = |c: &ContainerSample| c.target.app == app && c.target.service == service;
    container_families(s, &keep, &mut f);
    running_family(s, &keep, &mut f);
    out
}

/// Custom points (line protocol from `monitoring.script`/`http`) as Prometheus text, named
/// as Telegraf's prometheus_client output names them: `<measurement>_<field>`, the tags as
/// labels; numbers and booleans (1/0) only, strings have no Prometheus form.
/// The router's figures: HTTP answers per route, version and status class with their time
/// to the response head, TCP connections per router port and version, requests no route
/// took, and the access log's records (written, dropped).
pub fn encode_router(r: &crate::router::stats::RouterFigures) -> String {
    let mut out = String::new();
    let mut f = Family { out: &mut out };
    let (tcp, http): (Vec<_>, Vec<_>) = r
        .routes
        .iter()
        .partition(|x| x.key.route.starts_with("tcp://") || x.key.route.starts_with("udp://"));
    let labels = |k: &'_ crate::router::stats::StatKey| {
        [
            ("route", k.route.clone()),
            ("app", k.app.clone()),
            ("service", k.service.clone()),
            ("version", k.version.clone()),
        ]
    };
    f.head(
        "berth_router_requests_total",
        "counter",
        "HTTP requests the router answered, per route, version (empty: the router's own answer on the route) and status class.",
    );
    for x in &http {
        let l = labels(&x.key);
        let l: Vec<(&str, &str)> = l.iter().map(|(k, v)| (*k, v.as_str())).collect();
        for (i, n) in x.classes.iter().enumerate() {
            let code = format!("{}xx", i + 1);
            f.sample_plus(
                "berth_router_requests_total",
                &l,
                Some(("code", &code)),
                *n as f64,
            );
        }
    }
    f.head(
        "berth_router_request_duration_seconds",
        "summary",
        "Time from a request's arrival to its answer's head, per route and version.",
    );
    for x in &http {
        let l = labels(&x.key);
        let l: Vec<(&str, &str)> = l.iter().map(|(k, v)| (*k, v.as_str())).collect();
        f.sample("berth_router_request_duration_seconds_sum", &l, x.seconds);
        f.sample(
            "berth_router_request_duration_seconds_count",
            &l,
            x.classes.iter().sum::<u64>() as f64,
        );
    }
    f.head(
        "berth_router_connections_total",
        "counter",
        "TCP connections (route tcp://:PORT) and UDP flows (udp://:PORT) the router took per router port and version.",
    );
    for x in &tcp {
        let l = labels(&x.key);
        let l: Vec<(&str, &str)> = l.iter().map(|(k, v)| (*k, v.as_str())).collect();
        f.sample("berth_router_connections_total", &l, x.connections as f64);
    }
    f.head(
        "berth_router_unrouted_requests_total",
        "counter",
        "HTTP requests no route took (404s, the health URI, triggers).",
    );
    f.sample(
        "berth_router_unrouted_requests_total",
        &[],
        r.unrouted as f64,
    );
    f.head(
        "berth_router_access_log_lines_total",
        "counter",
        "Access log lines written to the log store.",
    );
    f.sample(
        "berth_router_access_log_lines_total",
        &[],
        r.access_logged as f64,
    );
    f.head(
        "berth_router_access_log_dropped_total",
        "counter",
        "Access log lines dropped because the store could not keep up.",
    );
    f.sample(
        "berth_router_access_log_dropped_total",
        &[],
        r.access_dropped as f64,
    );
    out
}

pub fn encode_points(points: &[&super::line::Point]) -> String {
    type Labelled = (Vec<(String, String)>, f64);
    let mut by_name: std::collections::BTreeMap<String, Vec<Labelled>> =
        std::collections::BTreeMap::new();
    for p in points {
        for (field, v) in &p.fields {
            let value = match v {
                super::line::Value::Float(f) => *f,
                super::line::Value::Int(i) => *i as f64,
                super::line::Value::UInt(u) => *u as f64,
                super::line::Value::Bool(b) => f64::from(u8::from(*b)),
                super::line::Value::Str(_) => continue,
            };
            let name = metric_name(&format!("{}_{field}", p.measurement));
            let labels = p
                .tags
                .iter()
                .map(|(k, v)| (metric_name(k), v.clone()))
                .collect();
            by_name.entry(name).or_default().push((labels, value));
        }
    }
    let mut out = String::new();
    let mut f = Family { out: &mut out };
    for (name, samples) in &by_name {
        f.head(
            name,
            "untyped",
            "A custom metric of the service (monitoring.script or monitoring.http).",
        );
        for (labels, v) in samples {
            let l: Vec<(&str, &str)> = labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            f.sample(name, &l, *v);
        }
    }
    out
}

/// A Prometheus metric or label name: `[a-zA-Z_][a-zA-Z0-9_]*`, other characters as `_`.
fn metric_name(s: &str) -> String {
    let mut n: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if n.is_empty() || n.starts_with(|c: char| c.is_ascii_digit()) {
        n.insert(0, '_');
    }
    n
}

/// The whole exposition.
pub fn encode(s: &Snapshot, own: &Own) -> String {
    let mut out = String::with_capacity(4096 + s.containers.len() * 2048);
    let mut f = Family { out: &mut out };
    let all = |_: &ContainerSample| true;
    container_families(s, &all, &mut f);
    let host_total = s.sample.mem("MemTotal");
    // cAdvisor's machine figures.
    let machine: Vec<(&str, &str)> = m_labels(&s.sample);
    f.head("machine_cpu_cores", "gauge", "Number of logical CPU cores.");
    f.sample("machine_cpu_cores", &machine, s.sample.n_cpus() as f64);
    f.head(
        "machine_memory_bytes",
        "gauge",
        "Amount of memory installed on the machine.",
    );
    f.sample("machine_memory_bytes", &machine, host_total as f64);
    running_family(s, &all, &mut f);
    // Host: node_exporter's names, its meminfo collector's camelCase ones included
    // (`node_memory_MemTotal_bytes`: dashboards query exactly those; promtool's lint flags
    // them as it flags node_exporter's own output).
    let m = &s.sample;
    f.head(
        "node_cpu_seconds_total",
        "counter",
        "Seconds the CPUs spent in each mode.",
    );
    for c in m.cpus.iter().skip(1) {
        let cpu = c.name.trim_start_matches("cpu");
        for (mode, ticks) in c.modes().iter().take(8) {
            f.sample(
                "node_cpu_seconds_total",
                &[("cpu", cpu), ("mode", mode)],
                *ticks as f64 / super::cgroup::USER_HZ as f64,
            );
        }
    }
    // node_exporter's uname collector: Node Exporter Full reads its `$job`, `$node` and
    // `$nodename` variables from this series.
    if let Some(u) = &m.uname {
        f.head(
            "node_uname_info",
            "gauge",
            "Labeled system information as provided by the uname system call.",
        );
        f.sample(
            "node_uname_info",
            &[
                ("domainname", &u.domainname),
                ("machine", &u.machine),
                ("nodename", &u.nodename),
                ("release", &u.release),
                ("sysname", &u.sysname),
                ("version", &u.version),
            ],
            1.0,
        );
    }
    for (key, name) in MEMINFO {
        // A field this kernel does not have is absent, as node_exporter leaves it out.
        let Some(v) = m.mem.iter().find(|(k, _)| k == key).map(|(_, v)| *v) else {
            continue;
        };
        let metric = format!("node_memory_{name}");
        f.head(
            &metric,
            "gauge",
            &format!("Memory information field {name}."),
        );
        f.sample(&metric, &[], v as f64);
    }
    for (i, name) in ["node_load1", "node_load5", "node_load15"]
        .iter()
        .enumerate()
    {
        f.head(name, "gauge", "Load average.");
        f.sample(name, &[], m.load[i]);
    }
    f.head(
        "node_boot_time_seconds",
        "gauge",
        "Node boot time, in unixtime.",
    );
    f.sample("node_boot_time_seconds", &[], m.boot_time_s as f64);
    // node_exporter's time collector (here: the time of the collection cycle).
    f.head(
        "node_time_seconds",
        "gauge",
        "System time in seconds since epoch (1970).",
    );
    f.sample("node_time_seconds", &[], s.time_ns as f64 / 1e9);
    // Its stat collector.
    for (name, kind, help, v) in [
        (
            "node_intr_total",
            "counter",
            "Total number of interrupts serviced.",
            m.stat.intr,
        ),
        (
            "node_context_switches_total",
            "counter",
            "Total number of context switches.",
            m.stat.ctxt,
        ),
        (
            "node_forks_total",
            "counter",
            "Total number of forks.",
            m.stat.processes,
        ),
        (
            "node_procs_running",
            "gauge",
            "Number of processes in runnable state.",
            m.stat.procs_running,
        ),
        (
            "node_procs_blocked",
            "gauge",
            "Number of processes blocked waiting for I/O to complete.",
            m.stat.procs_blocked,
        ),
    ] {
        if let Some(v) = v {
            f.head(name, kind, help);
            f.sample(name, &[], v as f64);
        }
    }
    // Its vmstat collector: untyped, as node_exporter declares them.
    for (k, v) in &m.vmstat {
        let name = format!("node_vmstat_{k}");
        f.head(
            &name,
            "untyped",
            &format!("/proc/vmstat information field {k}."),
        );
        f.sample(&name, &[], *v as f64);
    }
    for (name, help, pick) in [
        ("node_filesystem_size_bytes", "Filesystem size in bytes.", 0),
        (
            "node_filesystem_avail_bytes",
            "Filesystem space available to non-root users in bytes.",
            1,
        ),
        ("node_filesystem_files", "Filesystem total file nodes.", 2),
        (
            "node_filesystem_files_free",
            "Filesystem total free file nodes.",
            3,
        ),
        (
            "node_filesystem_free_bytes",
            "Filesystem free space in bytes.",
            4,
        ),
        (
            "node_filesystem_readonly",
            "Filesystem read-only status.",
            5,
        ),
        (
            "node_filesystem_device_error",
            "Whether an error occurred while getting statistics for the given device.",
            6,
        ),
    ] {
        f.head(name, "gauge", help);
        for (mnt, u) in &s.disks {
            // Only file systems whose statfs answered are listed, so device_error is 0.
            let v = [
                u.total,
                u.free,
                u.inodes_total,
                u.inodes_free,
                u.free_root,
                u64::from(u.readonly),
                0,
            ][pick];
            f.sample(
                name,
                &[
                    ("device", &mnt.device),
                    ("fstype", &mnt.fstype),
                    ("mountpoint", &mnt.path),
                ],
                v as f64,
            );
        }
    }
    // node_exporter's netdev collector: every column of /proc/net/dev.
    type DevGet = fn(&super::cgroup::NetDev) -> u64;
    let host_net: [(&str, DevGet); 16] = [
        ("node_network_receive_bytes_total", |n| n.rx_bytes),
        ("node_network_receive_packets_total", |n| n.rx_packets),
        ("node_network_receive_errs_total", |n| n.rx_errors),
        ("node_network_receive_drop_total", |n| n.rx_dropped),
        ("node_network_receive_fifo_total", |n| n.rx_fifo),
        ("node_network_receive_frame_total", |n| n.rx_frame),
        ("node_network_receive_compressed_total", |n| n.rx_compressed),
        ("node_network_receive_multicast_total", |n| n.rx_multicast),
        ("node_network_transmit_bytes_total", |n| n.tx_bytes),
        ("node_network_transmit_packets_total", |n| n.tx_packets),
        ("node_network_transmit_errs_total", |n| n.tx_errors),
        ("node_network_transmit_drop_total", |n| n.tx_dropped),
        ("node_network_transmit_fifo_total", |n| n.tx_fifo),
        ("node_network_transmit_colls_total", |n| n.tx_colls),
        ("node_network_transmit_carrier_total", |n| n.tx_carrier),
        ("node_network_transmit_compressed_total", |n| {
            n.tx_compressed
        }),
    ];
    for (name, get) in host_net {
        f.head(
            name,
            "counter",
            &format!(
                "Network device statistic {}.",
                name.trim_start_matches("node_network_")
                    .trim_end_matches("_total")
            ),
        );
        for n in &m.net {
            f.sample(name, &[("device", &n.name)], get(n) as f64);
        }
    }
    node_families(&mut f, &m.node);
    for (name, fam) in &m.hw.0 {
        f.head(name, fam.kind, &fam.help);
        for (labels, v) in &fam.samples {
            let labels: Vec<(&str, &str)> = labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            f.sample(name, &labels, *v);
        }
    }
    f.head(
        "node_cpu_guest_seconds_total",
        "counter",
        "Seconds the CPUs spent in guests (VMs) for each mode.",
    );
    for c in m.cpus.iter().skip(1) {
        let cpu = c.name.trim_start_matches("cpu");
        for (mode, ticks) in [("nice", c.guest_nice), ("user", c.guest)] {
            f.sample(
                "node_cpu_guest_seconds_total",
                &[("cpu", cpu), ("mode", mode)],
                ticks as f64 / super::cgroup::USER_HZ as f64,
            );
        }
    }
    // node_exporter's diskstats collector: counts as they are, times from ms to seconds.
    type DiskGet = fn(&super::host::DiskIo) -> u64;
    let disk: [(&str, &str, &str, DiskGet, f64); 11] = [
        (
            "node_disk_reads_completed_total",
            "counter",
            "The total number of reads completed successfully.",
            |d| d.reads,
            1.0,
        ),
        (
            "node_disk_reads_merged_total",
            "counter",
            "The total number of reads merged.",
            |d| d.merged_reads,
            1.0,
        ),
        (
            "node_disk_read_bytes_total",
            "counter",
            "The total number of bytes read successfully.",
            |d| d.read_bytes,
            1.0,
        ),
        (
            "node_disk_read_time_seconds_total",
            "counter",
            "The total number of seconds spent by all reads.",
            |d| d.read_time,
            0.001,
        ),
        (
            "node_disk_writes_completed_total",
            "counter",
            "The total number of writes completed successfully.",
            |d| d.writes,
            1.0,
        ),
        (
            "node_disk_writes_merged_total",
            "counter",
            "The number of writes merged.",
            |d| d.merged_writes,
            1.0,
        ),
        (
            "node_disk_written_bytes_total",
            "counter",
            "The total number of bytes written successfully.",
            |d| d.write_bytes,
            1.0,
        ),
        (
            "node_disk_write_time_seconds_total",
            "counter",
            "This is the total number of seconds spent by all writes.",
            |d| d.write_time,
            0.001,
        ),
        (
            "node_disk_io_now",
            "gauge",
            "The number of I/Os currently in progress.",
            |d| d.iops_in_progress,
            1.0,
        ),
        (
            "node_disk_io_time_seconds_total",
            "counter",
            "Total seconds spent doing I/Os.",
            |d| d.io_time,
            0.001,
        ),
        (
            "node_disk_io_time_weighted_seconds_total",
            "counter",
            "The weighted # of seconds spent doing I/Os.",
            |d| d.weighted_io_time,
            0.001,
        ),
    ];
    for (name, kind, help, get, factor) in disk {
        f.head(name, kind, help);
        for d in &m.disks {
            f.sample(name, &[("device", &d.name)], get(d) as f64 * factor);
        }
    }
    // Discard and flush columns: only on kernels that write them.
    for (i, name, help, factor) in [
        (
            0,
            "node_disk_discards_completed_total",
            "The total number of discards completed successfully.",
            1.0,
        ),
        (
            1,
            "node_disk_discards_merged_total",
            "The total number of discards merged.",
            1.0,
        ),
        (
            2,
            "node_disk_discarded_sectors_total",
            "The total number of sectors discarded successfully.",
            1.0,
        ),
        (
            3,
            "node_disk_discard_time_seconds_total",
            "This is the total number of seconds spent by all discards.",
            0.001,
        ),
    ] {
        if m.disks.iter().any(|d| d.discards.is_some()) {
            f.head(name, "counter", help);
        }
        for d in &m.disks {
            if let Some(v) = d.discards {
                f.sample(name, &[("device", &d.name)], v[i] as f64 * factor);
            }
        }
    }
    for (i, name, help, factor) in [
        (
            0,
            "node_disk_flush_requests_total",
            "The total number of flush requests completed successfully",
            1.0,
        ),
        (
            1,
            "node_disk_flush_requests_time_seconds_total",
            "This is the total number of seconds spent by all flush requests.",
            0.001,
        ),
    ] {
        if m.disks.iter().any(|d| d.flushes.is_some()) {
            f.head(name, "counter", help);
        }
        for d in &m.disks {
            if let Some(v) = d.flushes {
                f.sample(name, &[("device", &d.name)], v[i] as f64 * factor);
            }
        }
    }
    // berth's own.
    f.head(
        "berth_outbox_lines",
        "gauge",
        "Lines waiting in the durable outbox, per sink.",
    );
    for (sink, lines, _) in &own.outbox {
        f.sample("berth_outbox_lines", &[("sink", sink)], *lines as f64);
    }
    f.head(
        "berth_outbox_dropped_lines_total",
        "counter",
        "Lines dropped for a sink (outbox full or refused as bad data).",
    );
    for (sink, _, dropped) in &own.outbox {
        f.sample(
            "berth_outbox_dropped_lines_total",
            &[("sink", sink)],
            *dropped as f64,
        );
    }
    f.head(
        "berth_reconcile_seconds",
        "gauge",
        "Duration of the last reconcile pass.",
    );
    f.sample("berth_reconcile_seconds", &[], own.reconcile_seconds);
    f.head(
        "berth_collect_seconds",
        "gauge",
        "Duration of the last metrics collection cycle.",
    );
    f.sample("berth_collect_seconds", &[], own.collect_seconds);
    f.head(
        "berth_metrics_cycles_skipped_total",
        "counter",
        "Collection ticks skipped because the cycle before ran over the interval.",
    );
    f.sample(
        "berth_metrics_cycles_skipped_total",
        &[],
        own.cycles_skipped_total as f64,
    );
    f.head(
        "berth_log_lines_total",
        "counter",
        "Log lines collected since the agent started.",
    );
    f.sample("berth_log_lines_total", &[], own.log_lines_total as f64);
    f.head(
        "berth_log_lines_dropped_total",
        "counter",
        "Log lines dropped because they could not be stored (disk full) since the agent started.",
    );
    f.sample(
        "berth_log_lines_dropped_total",
        &[],
        own.log_lines_dropped_total as f64,
    );
    f.head(
        "berth_containers",
        "gauge",
        "Containers this agent manages.",
    );
    f.sample("berth_containers", &[], s.containers.len() as f64);
    if let Some(p) = &own.process {
        for (name, kind, help, v) in [
            (
                "process_cpu_seconds_total",
                "counter",
                "Total user and system CPU time spent in seconds.",
                Some(p.cpu_seconds),
            ),
            (
                "process_open_fds",
                "gauge",
                "Number of open file descriptors.",
                Some(p.open_fds as f64),
            ),
            (
                "process_max_fds",
                "gauge",
                "Maximum number of open file descriptors.",
                p.max_fds.map(|v| v as f64),
            ),
            (
                "process_virtual_memory_bytes",
                "gauge",
                "Virtual memory size in bytes.",
                Some(p.virtual_bytes as f64),
            ),
            (
                "process_virtual_memory_max_bytes",
                "gauge",
                "Maximum amount of virtual memory available in bytes.",
                Some(p.virtual_max_bytes.map(|v| v as f64).unwrap_or(-1.0)),
            ),
            (
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size in bytes.",
                Some(p.resident_bytes as f64),
            ),
            (
                "process_start_time_seconds",
                "gauge",
                "Start time of the process since unix epoch in seconds.",
                Some(p.start_time_seconds),
            ),
        ] {
            if let Some(v) = v {
                f.head(name, kind, help);
                f.sample(name, &[], v);
            }
        }
    }
    out
}

/// cAdvisor's machine labels.
fn m_labels(m: &super::host::HostSample) -> Vec<(&str, &str)> {
    vec![
        ("boot_id", m.machine.boot_id.as_str()),
        ("machine_id", m.machine.machine_id.as_str()),
        ("system_uuid", m.machine.system_uuid.as_str()),
    ]
}

/// node_exporter's default collectors beyond cpu, memory, disks, load and netdev: pressure,
/// netstat, sockstat, softnet, filefd, entropy, conntrack, arp, udp_queues, timex, netclass,
/// kernel_hung; and the processes and tcpstat collectors. A figure the kernel does not give is left out, as node_exporter leaves it out.
fn node_families(f: &mut Family<'_>, n: &super::node::NodeSample) {
    let one = |f: &mut Family<'_>, name: &str, kind: &str, help: &str, v: f64| {
        f.head(name, kind, help);
        f.sample(name, &[], v);
    };
    for (res, some, full) in &n.pressure {
        let (waiting, stalled) = match *res {
            "cpu" => (
                Some("Total time in seconds that processes have waited for CPU time"),
                None,
            ),
            "io" => (
                Some("Total time in seconds that processes have waited due to IO congestion"),
                Some("Total time in seconds no process could make progress due to IO congestion"),
            ),
            "memory" => (
                Some("Total time in seconds that processes have waited for memory"),
                Some(
                    "Total time in seconds no process could make progress due to memory congestion",
                ),
            ),
            _ => (
                None,
                Some("Total time in seconds no process could make progress due to IRQ congestion"),
            ),
        };
        if let (Some(help), Some(v)) = (waiting, some) {
            one(
                f,
                &format!("node_pressure_{res}_waiting_seconds_total"),
                "counter",
                help,
                *v as f64 / 1e6,
            );
        }
        if let (Some(help), Some(v)) = (stalled, full) {
            one(
                f,
                &format!("node_pressure_{res}_stalled_seconds_total"),
                "counter",
                help,
                *v as f64 / 1e6,
            );
        }
    }
    for (proto, field, v) in &n.netstat {
        let key = format!("{proto}_{field}");
        if super::node::netstat_default_field(&key) {
            one(
                f,
                &format!("node_netstat_{key}"),
                "untyped",
                &format!("Statistic {proto}{field}."),
                *v,
            );
        }
    }
    for (key, v) in &n.sockstat {
        let help = if key == "sockets_used" {
            "Number of IPv4 sockets in use.".to_string()
        } else {
            format!(
                "Number of {} sockets in state {}.",
                key.split('_').next().unwrap_or(""),
                key.split_once('_').map(|x| x.1).unwrap_or("")
            )
        };
        one(f, &format!("node_sockstat_{key}"), "gauge", &help, *v);
    }
    type SoftGet = fn(&super::node::Softnet) -> Option<u64>;
    let soft: [(&str, &str, &str, SoftGet); 7] = [
        (
            "node_softnet_processed_total",
            "counter",
            "Number of processed packets",
            |s| Some(s.processed),
        ),
        (
            "node_softnet_dropped_total",
            "counter",
            "Number of dropped packets",
            |s| Some(s.dropped),
        ),
        (
            "node_softnet_times_squeezed_total",
            "counter",
            "Number of times processing packets ran out of quota",
            |s| Some(s.time_squeezed),
        ),
        (
            "node_softnet_cpu_collision_total",
            "counter",
            "Number of collision occur while obtaining device lock while transmitting",
            |s| Some(s.cpu_collision),
        ),
        (
            "node_softnet_received_rps_total",
            "counter",
            "Number of times cpu woken up received_rps",
            |s| Some(s.received_rps),
        ),
        (
            "node_softnet_flow_limit_count_total",
            "counter",
            "Number of times flow limit has been reached",
            |s| Some(s.flow_limit_count),
        ),
        (
            "node_softnet_backlog_len",
            "gauge",
            "Softnet backlog status",
            |s| s.backlog_len,
        ),
    ];
    for (name, kind, help, get) in soft {
        if n.softnet.iter().any(|s| get(s).is_some()) {
            f.head(name, kind, help);
        }
        for s in &n.softnet {
            if let Some(v) = get(s) {
                f.sample(name, &[("cpu", &s.cpu.to_string())], v as f64);
            }
        }
    }
    if let Some((allocated, maximum)) = n.filefd {
        one(
            f,
            "node_filefd_allocated",
            "gauge",
            "File descriptor statistics: allocated.",
            allocated as f64,
        );
        one(
            f,
            "node_filefd_maximum",
            "gauge",
            "File descriptor statistics: maximum.",
            maximum as f64,
        );
    }
    if let Some((avail, pool)) = n.entropy {
        one(
            f,
            "node_entropy_available_bits",
            "gauge",
            "Bits of available entropy.",
            avail as f64,
        );
        if let Some(p) = pool {
            one(
                f,
                "node_entropy_pool_size_bits",
                "gauge",
                "Bits of entropy pool.",
                p as f64,
            );
        }
    }
    if let Some((entries, limit)) = n.conntrack {
        one(
            f,
            "node_nf_conntrack_entries",
            "gauge",
            "Number of currently allocated flow entries for connection tracking.",
            entries as f64,
        );
        one(
            f,
            "node_nf_conntrack_entries_limit",
            "gauge",
            "Maximum size of connection tracking table.",
            limit as f64,
        );
    }
    f.head("node_arp_entries", "gauge", "ARP entries by device");
    for (dev, count) in &n.arp {
        f.sample("node_arp_entries", &[("device", dev)], *count as f64);
    }
    if !n.udp_queues.is_empty() {
        f.head(
            "node_udp_queues",
            "gauge",
            "Number of allocated memory in the kernel for UDP datagrams in bytes.",
        );
        for (ip, tx, rx) in &n.udp_queues {
            f.sample(
                "node_udp_queues",
                &[("ip", ip), ("queue", "tx")],
                *tx as f64,
            );
            f.sample(
                "node_udp_queues",
                &[("ip", ip), ("queue", "rx")],
                *rx as f64,
            );
        }
    }
    if let Some(t) = &n.timex {
        for (name, kind, help, v) in [
            (
                "node_timex_sync_status",
                "gauge",
                "Is clock synchronized to a reliable server (1 = yes, 0 = no).",
                t.sync_status,
            ),
            (
                "node_timex_offset_seconds",
                "gauge",
                "Time offset in between local system and reference clock.",
                t.offset_seconds,
            ),
            (
                "node_timex_frequency_adjustment_ratio",
                "gauge",
                "Local clock frequency adjustment.",
                t.frequency_adjustment_ratio,
            ),
            (
                "node_timex_maxerror_seconds",
                "gauge",
                "Maximum error in seconds.",
                t.maxerror_seconds,
            ),
            (
                "node_timex_estimated_error_seconds",
                "gauge",
                "Estimated error in seconds.",
                t.estimated_error_seconds,
            ),
            (
                "node_timex_status",
                "gauge",
                "Value of the status array bits.",
                t.status,
            ),
            (
                "node_timex_loop_time_constant",
                "gauge",
                "Phase-locked loop time constant.",
                t.loop_time_constant,
            ),
            (
                "node_timex_tick_seconds",
                "gauge",
                "Seconds between clock ticks.",
                t.tick_seconds,
            ),
            (
                "node_timex_pps_frequency_hertz",
                "gauge",
                "Pulse per second frequency.",
                t.pps_frequency_hertz,
            ),
            (
                "node_timex_pps_jitter_seconds",
                "gauge",
                "Pulse per second jitter.",
                t.pps_jitter_seconds,
            ),
            (
                "node_timex_pps_shift_seconds",
                "gauge",
                "Pulse per second interval duration.",
                t.pps_shift_seconds,
            ),
            (
                "node_timex_pps_stability_hertz",
                "gauge",
                "Pulse per second stability, average of recent frequency changes.",
                t.pps_stability_hertz,
            ),
            (
                "node_timex_pps_jitter_total",
                "counter",
                "Pulse per second count of jitter limit exceeded events.",
                t.pps_jitter_total,
            ),
            (
                "node_timex_pps_calibration_total",
                "counter",
                "Pulse per second count of calibration intervals.",
                t.pps_calibration_total,
            ),
            (
                "node_timex_pps_error_total",
                "counter",
                "Pulse per second count of calibration errors.",
                t.pps_error_total,
            ),
            (
                "node_timex_pps_stability_exceeded_total",
                "counter",
                "Pulse per second count of stability limit exceeded events.",
                t.pps_stability_exceeded_total,
            ),
            (
                "node_timex_tai_offset_seconds",
                "gauge",
                "International Atomic Time (TAI) offset.",
                t.tai_offset_seconds,
            ),
        ] {
            one(f, name, kind, help, v);
        }
    }
    type ClassGet = fn(&super::node::NetClass) -> Option<f64>;
    let class: [(&str, &str, &str, ClassGet); 5] = [
        (
            "node_network_carrier",
            "gauge",
            "Network device property: carrier",
            |c| c.carrier.map(|v| v as f64),
        ),
        (
            "node_network_mtu_bytes",
            "gauge",
            "Network device property: mtu_bytes",
            |c| c.mtu.map(|v| v as f64),
        ),
        (
            "node_network_speed_bytes",
            "gauge",
            "Network device property: speed_bytes",
            |c| c.speed_mbps.map(|v| (v * 1_000_000 / 8) as f64),
        ),
        (
            "node_network_up",
            "gauge",
            "Value is 1 if operstate is 'up', 0 otherwise.",
            |c| Some(if c.operstate == "up" { 1.0 } else { 0.0 }),
        ),
        (
            "node_network_receive_nohandler_total",
            "counter",
            "Network device statistic receive_nohandler.",
            |c| c.rx_nohandler.map(|v| v as f64),
        ),
    ];
    for (name, kind, help, get) in class {
        if n.netclass.iter().any(|c| get(c).is_some()) {
            f.head(name, kind, help);
        }
        for c in &n.netclass {
            if let Some(v) = get(c) {
                // node_network_up also carries `operstate`: Node Exporter Full queries
                // `node_network_up{operstate="up"}` (node_exporter puts it on node_network_info
                // only); an extra label leaves every by-device query working.
                if name == "node_network_up" {
                    f.sample(
                        name,
                        &[("device", &c.device), ("operstate", &c.operstate)],
                        v,
                    );
                } else {
                    f.sample(name, &[("device", &c.device)], v);
                }
            }
        }
    }
    if let Some(v) = n.hung_tasks {
        one(
            f,
            "node_kernel_hung_tasks_total",
            "counter",
            "Total number of tasks that have been detected as hung since the system booted.",
            v as f64,
        );
    }
    // The processes and tcpstat collectors (off by default in node_exporter; berth reads the
    // same files for Telegraf's processes and netstat inputs, so they cost nothing more).
    let p = &n.procs;
    f.head(
        "node_processes_state",
        "gauge",
        "Number of processes in each state.",
    );
    for (state, v) in [
        ("R", p.running),
        ("S", p.sleeping),
        ("D", p.blocked),
        ("Z", p.zombies),
        ("X", p.dead),
        ("T", p.stopped),
        ("W", p.paging),
        ("I", p.idle),
        ("P", p.parked),
    ] {
        if v > 0 {
            f.sample("node_processes_state", &[("state", state)], v as f64);
        }
    }
    one(
        f,
        "node_processes_pids",
        "gauge",
        "Number of PIDs",
        p.total as f64,
    );
    one(
        f,
        "node_processes_threads",
        "gauge",
        "Allocated threads in system",
        p.total_threads as f64,
    );
    if let Some(v) = n.pid_max {
        one(
            f,
            "node_processes_max_processes",
            "gauge",
            "Number of max PIDs limit",
            v as f64,
        );
    }
    if let Some(v) = n.threads_max {
        one(
            f,
            "node_processes_max_threads",
            "gauge",
            "Limit of threads in the system",
            v as f64,
        );
    }
    f.head(
        "node_tcp_connection_states",
        "gauge",
        "Number of connection states.",
    );
    for st in super::node::TCP_STATES {
        if st == "tcp_none" {
            continue;
        }
        let v = n.tcp_states.get(st).copied().unwrap_or(0);
        let state = st.trim_start_matches("tcp_");
        f.sample("node_tcp_connection_states", &[("state", state)], v as f64);
    }
    f.sample(
        "node_tcp_connection_states",
        &[("state", "tx_queued_bytes")],
        n.tcp_queued.0 as f64,
    );
    f.sample(
        "node_tcp_connection_states",
        &[("state", "rx_queued_bytes")],
        n.tcp_queued.1 as f64,
    );
    if !n.netclass.is_empty() {
        f.head(
            "node_network_info",
            "gauge",
            "Non-numeric data from /sys/class/net/<iface>, value is always 1.",
        );
    }
    for c in &n.netclass {
        f.sample(
            "node_network_info",
            &[
                ("device", &c.device),
                ("address", &c.address),
                ("broadcast", &c.broadcast),
                ("duplex", &c.duplex),
                ("operstate", &c.operstate),
                ("adminstate", c.adminstate()),
                ("ifalias", &c.ifalias),
            ],
            1.0,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::cgroup::ContainerStats;
    use crate::metrics::collect::{ContainerSample, Target};

    #[test]
    fn writes_families_with_escaped_labels() {
        let s = Snapshot {
            node: "n\"1".into(),
            containers: vec![ContainerSample {
                target: Target {
                    id: "abc".into(),
                    name: "shop_web-001_1".into(),
                    app: "shop".into(),
                    status: "running".into(),
                    ..Default::default()
                },
                stats: Some(ContainerStats {
                    cpu_total_ns: 1_500_000_000,
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        let text = encode(
            &s,
            &Own {
                outbox: vec![("influxdb x".into(), 3, 1)],
                ..Default::default()
            },
        );
        assert!(text.contains("# TYPE container_cpu_usage_seconds_total counter\n"));
        assert!(text.contains("container_cpu_usage_seconds_total{id=\"/docker/abc\",name=\"shop_web-001_1\",image=\"\",app=\"shop\",service=\"\",version=\"\",slot=\"0\",node=\"n\\\"1\"} 1.5\n"));
        assert!(text.contains("berth_outbox_lines{sink=\"influxdb x\"} 3\n"));
        // Every family is declared once.
        let mut seen = std::collections::BTreeSet::new();
        for l in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            assert!(seen.insert(l.to_string()), "{l} twice");
        }
    }

    #[test]
    fn host_memory_and_uname_carry_node_exporters_names() {
        let meminfo = "MemTotal:       16384 kB\nActive(anon):     100 kB\nHugePages_Total:       4\nZswap:     8 kB\nUnaccepted:     8 kB\n";
        let s = Snapshot {
            sample: crate::metrics::host::HostSample {
                mem: crate::metrics::host::parse_meminfo(meminfo),
                stat: crate::metrics::host::parse_stat_counters("ctxt 999\nprocs_running 3\n"),
                vmstat: vec![("pgmajfault".into(), 4)],
                disks: crate::metrics::host::parse_diskstats(
                    "   8       0 sda 10 1 80 5 20 2 160 7 3 40 2500\n",
                ),
                uname: Some(crate::metrics::host::Uname {
                    sysname: "Linux".into(),
                    nodename: "h1".into(),
                    release: "6.1.0".into(),
                    version: "#1 SMP \"x\"".into(),
                    machine: "x86_64".into(),
                    domainname: "(none)".into(),
                }),
                ..Default::default()
            },
            disks: vec![(
                crate::metrics::host::Mount {
                    device: "/dev/sda1".into(),
                    path: "/".into(),
                    fstype: "ext4".into(),
                    mode: "rw",
                },
                crate::metrics::host::DiskUsage {
                    total: 100,
                    free: 40,
                    free_root: 50,
                    readonly: true,
                    ..Default::default()
                },
            )],
            ..Default::default()
        };
        let text = encode(&s, &Own::default());
        assert!(text.contains("# HELP node_memory_MemTotal_bytes Memory information field MemTotal_bytes.\n# TYPE node_memory_MemTotal_bytes gauge\nnode_memory_MemTotal_bytes 16777216\n"), "{text}");
        assert!(text.contains("\nnode_memory_Active_anon_bytes 102400\n"));
        assert!(text.contains("\nnode_memory_HugePages_Total 4\n"));
        assert!(text.contains(
            "# TYPE node_context_switches_total counter\nnode_context_switches_total 999\n"
        ));
        assert!(text.contains("# TYPE node_procs_running gauge\nnode_procs_running 3\n"));
        assert!(
            !text.contains("node_forks_total"),
            "absent where /proc/stat has no line"
        );
        assert!(text.contains("# HELP node_vmstat_pgmajfault /proc/vmstat information field pgmajfault.\n# TYPE node_vmstat_pgmajfault untyped\nnode_vmstat_pgmajfault 4\n"));
        let fs = "{device=\"/dev/sda1\",fstype=\"ext4\",mountpoint=\"/\"}";
        for line in [
            format!("node_filesystem_avail_bytes{fs} 40\n"),
            format!("node_filesystem_free_bytes{fs} 50\n"),
            format!("node_filesystem_readonly{fs} 1\n"),
            format!("node_filesystem_device_error{fs} 0\n"),
        ] {
            assert!(text.contains(&line), "{line} missing: {text}");
        }
        // Fields node_exporter does not export, and fields this kernel lacks, are absent.
        assert!(
            text.contains("node_disk_io_time_weighted_seconds_total{device=\"sda\"} 2.5\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE node_disk_io_now gauge\nnode_disk_io_now{device=\"sda\"} 3\n")
        );
        assert!(text.contains("\nnode_memory_Zswap_bytes 8192\n"));
        assert!(!text.contains("Unaccepted") && !text.contains("node_memory_SwapTotal_bytes"));
        assert!(text.contains("node_uname_info{domainname=\"(none)\",machine=\"x86_64\",nodename=\"h1\",release=\"6.1.0\",sysname=\"Linux\",version=\"#1 SMP \\\"x\\\"\"} 1\n"), "{text}");
    }

    #[test]
    fn node_collectors_and_cadvisor_extras_carry_the_reference_names() {
        use crate::metrics::node::{NetClass, NodeSample, ProcStates};
        let mut procs = ProcStates::default();
        procs.add("1 (init) S 0 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 3 0 10 20 30");
        procs.add("2 (busy) R 0 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 10 20 30");
        let mut tcp_states = std::collections::BTreeMap::new();
        tcp_states.insert("tcp_listen", 2);
        let s = Snapshot {
            sample: crate::metrics::host::HostSample {
                mem: crate::metrics::host::parse_meminfo("MemTotal: 1024 kB\n"),
                node: NodeSample {
                    pressure: vec![
                        ("cpu", Some(2_500_000), None),
                        ("io", Some(1), Some(3_000_000)),
                    ],
                    netstat: vec![
                        ("Tcp".into(), "CurrEstab".into(), 4.0),
                        ("Tcp".into(), "RtoMax".into(), 120000.0),
                    ],
                    entropy: Some((256, Some(256))),
                    netclass: vec![NetClass {
                        device: "eth0".into(),
                        operstate: "up".into(),
                        mtu: Some(1500),
                        address: "02:00:00:00:00:01".into(),
                        flags: Some(0x1003),
                        ..Default::default()
                    }],
                    procs,
                    tcp_states,
                    tcp_queued: (10, 20),
                    hung_tasks: Some(0),
                    pid_max: Some(4194304),
                    ..Default::default()
                },
                ..Default::default()
            },
            containers: vec![ContainerSample {
                target: Target {
                    id: "abc".into(),
                    name: "shop_web-001_1".into(),
                    status: "running".into(),
                    labels: [(
                        "org.label-schema.group".to_string(),
                        "monitoring".to_string(),
                    )]
                    .into_iter()
                    .collect(),
                    ..Default::default()
                },
                stats: Some(ContainerStats::default()),
                fs: Some(crate::metrics::fsusage::FsUsage {
                    usage: 4096,
                    limit: 1 << 30,
                    device: "/dev/vda".into(),
                    complete: true,
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        let own = Own {
            process: Some(crate::metrics::node::ProcessSelf {
                open_fds: 12,
                max_fds: Some(1024),
                ..Default::default()
            }),
            ..Default::default()
        };
        let text = encode(&s, &own);
        for line in [
            "# TYPE node_pressure_cpu_waiting_seconds_total counter\nnode_pressure_cpu_waiting_seconds_total 2.5\n",
            "\nnode_pressure_io_stalled_seconds_total 3\n",
            "# TYPE node_netstat_Tcp_CurrEstab untyped\nnode_netstat_Tcp_CurrEstab 4\n",
            "\nnode_entropy_available_bits 256\n",
            "\nnode_network_mtu_bytes{device=\"eth0\"} 1500\n",
            "\nnode_network_up{device=\"eth0\",operstate=\"up\"} 1\n",
            "\nnode_network_info{device=\"eth0\",address=\"02:00:00:00:00:01\",broadcast=\"\",duplex=\"\",operstate=\"up\",adminstate=\"up\",ifalias=\"\"} 1\n",
            "# TYPE node_kernel_hung_tasks_total counter\nnode_kernel_hung_tasks_total 0\n",
            "\nnode_processes_state{state=\"R\"} 1\n",
            "\nnode_processes_state{state=\"S\"} 1\n",
            "\nnode_processes_pids 2\n",
            "\nnode_processes_threads 4\n",
            "\nnode_processes_max_processes 4194304\n",
            "\nnode_tcp_connection_states{state=\"listen\"} 2\n",
            "\nnode_tcp_connection_states{state=\"established\"} 0\n",
            "\nnode_tcp_connection_states{state=\"rx_queued_bytes\"} 20\n",
            "\nprocess_open_fds 12\n",
            "\nprocess_max_fds 1024\n",
            "container_label_org_label_schema_group=\"monitoring\"",
            "\nmachine_memory_bytes{",
            "# TYPE machine_cpu_cores gauge\n",
        ] {
            assert!(text.contains(line), "{line} missing:\n{text}");
        }
        assert!(
            text.lines()
                .any(|l| l.starts_with("container_fs_usage_bytes{")
                    && l.contains("device=\"/dev/vda\"")
                    && l.ends_with(" 4096")),
            "{text}"
        );
        // Outside node_exporter's default netstat fields; no irq pressure or threads limit
        // where the kernel gives none.
        for absent in [
            "node_netstat_Tcp_RtoMax",
            "node_pressure_cpu_stalled",
            "node_pressure_irq",
            "node_processes_max_threads",
            "node_processes_state{state=\"D\"}",
        ] {
            assert!(!text.contains(absent), "{absent} present:\n{text}");
        }
        let mut seen = std::collections::BTreeSet::new();
        for l in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            assert!(seen.insert(l.to_string()), "{l} twice");
        }
    }
}
