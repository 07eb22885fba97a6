//! One collection cycle: read every container's cgroup counters and the host's /proc files
//! into a [`Snapshot`], then turn a snapshot into Telegraf-compatible points ([`points`], pure).

use super::cgroup::{self, Cgroups, ContainerStats, NetDev};
use super::host::{CpuTimes, DiskUsage, HostSample, Mount, disk_usage};
use super::line::{Point, Value};
use std::collections::HashMap;

/// A container to measure, as the agent knows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Target {
    pub id: String,
    pub name: String,
    pub image: String,
    pub app: String,
    pub service: String,
    pub version: String,
    pub slot: u32,
    /// The engine's state word: running, exited, created, restarting, paused.
    pub status: String,
    /// healthy / unhealthy / starting, when the service has a probe.
    pub health: Option<String>,
    pub failing_streak: u32,
    pub exit_code: i64,
    pub restart_count: u64,
    pub oom_killed: bool,
    /// The container's own labels (not berth's): cAdvisor's `container_label_*`.
    pub labels: std::collections::BTreeMap<String, String>,
}

/// One container's figures at one moment.
#[derive(Debug, Clone, Default)]
pub struct ContainerSample {
    pub target: Target,
    /// None when it is not running (no cgroup).
    pub stats: Option<ContainerStats>,
    pub net: Vec<NetDev>,
    /// Percent of one CPU since the previous cycle (Docker's formula; up to 100 x CPUs).
    pub cpu_percent: Option<f64>,
    pub started_ns: Option<i64>,
    /// The writable layer's size, measured on the slower cycle (cAdvisor's fs figures).
    pub fs: Option<super::fsusage::FsUsage>,
}

impl ContainerSample {
    /// Memory limit: the cgroup's, else the host's memory.
    pub fn mem_limit(&self, host_total: u64) -> u64 {
        self.stats
            .as_ref()
            .and_then(|s| s.mem_limit)
            .filter(|l| *l > 0 && *l < host_total)
            .unwrap_or(host_total)
    }

    pub fn mem_percent(&self, host_total: u64) -> Option<f64> {
        let s = self.stats.as_ref()?;
        let limit = self.mem_limit(host_total);
        (limit > 0).then(|| s.working_set() as f64 * 100.0 / limit as f64)
    }
}

/// Everything one cycle read.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub time_ns: i64,
    /// The OS host name (Telegraf's `host` tag) and berth's node name.
    pub host: String,
    pub node: String,
    pub sample: HostSample,
    /// Per cpu (cpu-total first): percent of each mode since the previous cycle.
    pub cpu_percent: Vec<(String, [(&'static str, f64); 10])>,
    pub containers: Vec<ContainerSample>,
    pub disks: Vec<(Mount, DiskUsage)>,
    /// The engine's `/info` of this cycle (None when it did not answer).
    pub engine: Option<crate::runtime::EngineInfo>,
}

/// Keeps what rates need from the previous cycle.
pub struct Collector {
    cgroups: Cgroups,
    prev_cpus: Vec<CpuTimes>,
    /// container id -> (its cpu ns, the host's total ticks) at the previous cycle.
    prev_containers: HashMap<String, (u64, u64)>,
    /// container id -> (first pid, its start time): read once per process.
    started: HashMap<String, (u32, Option<i64>)>,
    /// container id -> its writable layer's last measurement and when it was taken.
    fs: HashMap<String, (super::fsusage::FsUsage, std::time::Instant)>,
    /// What reads keep between cycles, the open files included (host, process and the
    /// containers' cgroup and net files: one set, closed together at the end of a cycle).
    host: super::host::HostCache,
}

impl Collector {
    pub fn new(cgroups: Cgroups) -> Collector {
        Collector {
            cgroups,
            prev_cpus: Vec::new(),
            prev_containers: HashMap::new(),
            started: HashMap::new(),
            fs: HashMap::new(),
            host: Default::default(),
        }
    }

    pub fn cgroups(&self) -> &Cgroups {
        &self.cgroups
    }

    /// Reads the host and every target (no engine calls).
    pub fn collect(
        &mut self,
        host: &str,
        node: &str,
        targets: Vec<Target>,
        now_ns: i64,
    ) -> Snapshot {
        let sample = HostSample::read(&mut self.host);
        let host_ticks = sample.cpus.first().map(CpuTimes::total).unwrap_or(0);
        let cpu_percent = cpu_percent(&self.prev_cpus, &sample.cpus);
        self.prev_cpus = sample.cpus.clone();
        let n_cpus = sample.n_cpus() as f64;
        let mut prev = std::mem::take(&mut self.prev_containers);
        let mut started = std::mem::take(&mut self.started);
        let mut fs = std::mem::take(&mut self.fs);
        // Layer sizes are measured on a slower cycle, a few containers per cycle at most.
        let mut fs_budget = 8;
        let containers: Vec<ContainerSample> = targets
            .into_iter()
            .map(|t| {
                let known_pid = started.get(&t.id).map(|(p, _)| *p);
                let stats = (t.status == "running")
                    .then(|| self.cgroups.read(&t.id, &mut self.host.files, known_pid))
                    .flatten();
                let pid = stats.as_ref().and_then(|s| s.pid);
                let started_ns = pid.and_then(|p| {
                    let known = started.remove(&t.id).filter(|(pid, _)| *pid == p);
                    let at = known
                        .map(|k| k.1)
                        .unwrap_or_else(|| cgroup::process_start_ns(p, sample.boot_time_s));
                    self.started.insert(t.id.clone(), (p, at));
                    at
                });
                let mut s = ContainerSample {
                    // The process's start time tags its kept net file: a reused pid (a new
                    // network namespace) opens it again.
                    net: pid
                        .map(|p| cgroup::net_of(p, started_ns.unwrap_or(0), &mut self.host.files))
                        .unwrap_or_default(),
                    started_ns,
                    fs: None,
                    target: t,
                    stats,
                    cpu_percent: None,
                };
                if let Some(pid) = s.stats.as_ref().and_then(|st| st.pid) {
                    // A fresh figure is kept; a stale one is measured again when this
                    // cycle's budget allows, else kept until a later cycle does.
                    let old = fs.remove(&s.target.id);
                    let fresh = old
                        .as_ref()
                        .is_some_and(|(_, at)| at.elapsed() < super::fsusage::REFRESH);
                    let measured = if !fresh && fs_budget > 0 {
                        fs_budget -= 1;
                        super::fsusage::measure(pid, &sample.mounts)
                            .map(|u| (u, std::time::Instant::now()))
                            .or(old)
                    } else {
                        old
                    };
                    if let Some((u, at)) = measured {
                        s.fs = Some(u.clone());
                        self.fs.insert(s.target.id.clone(), (u, at));
                    }
                }
                if let Some(st) = &s.stats {
                    if let Some((c0, h0)) = prev.remove(&s.target.id) {
                        let dh =
                            host_ticks.saturating_sub(h0) as f64 * (1e9 / cgroup::USER_HZ as f64);
                        if dh > 0.0 && st.cpu_total_ns >= c0 {
                            s.cpu_percent =
                                Some((st.cpu_total_ns - c0) as f64 / dh * n_cpus * 100.0);
                        }
                    }
                    self.prev_containers
                        .insert(s.target.id.clone(), (st.cpu_total_ns, host_ticks));
                }
                s
            })
            .collect();
        // Files of containers that stopped or went away this cycle are closed.
        self.host.files.end_cycle();
        let disks = sample
            .mounts
            .iter()
            .filter_map(|m| disk_usage(&m.path).map(|u| (m.clone(), u)))
            .filter(|(_, u)| u.total > 0)
            .collect();
        Snapshot {
            time_ns: now_ns,
            host: host.to_string(),
            node: node.to_string(),
            sample,
            cpu_percent,
            containers,
            disks,
            engine: None,
        }
    }
}

/// Percent per mode between two /proc/stat samples (empty on the first cycle).
pub fn cpu_percent(
    prev: &[CpuTimes],
    now: &[CpuTimes],
) -> Vec<(String, [(&'static str, f64); 10])> {
    now.iter()
        .filter_map(|c| {
            let p = prev.iter().find(|p| p.name == c.name)?;
            let total = c.total().saturating_sub(p.total()) as f64;
            if total <= 0.0 {
                return None;
            }
            let (a, b) = (c.modes(), p.modes());
            let mut out = [("", 0.0); 10];
            for i in 0..10 {
                out[i] = (a[i].0, a[i].1.saturating_sub(b[i].1) as f64 * 100.0 / total);
            }
            Some((c.name.clone(), out))
        })
        .collect()
}

/// Telegraf splits `image:tag` into container_image and container_version.
fn split_image(image: &str) -> (&str, &str) {
    match image.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, tag),
        _ => (image, "unknown"),
    }
}

/// The tags every container series carries.
pub fn container_tags(s: &Snapshot, t: &Target) -> Vec<(String, String)> {
    let (image, version) = split_image(&t.image);
    let mut tags: Vec<(String, String)> = Vec::with_capacity(12);
    if let Some(e) = &s.engine {
        tags.push(("engine_host".into(), e.name.clone()));
        tags.push(("server_version".into(), e.server_version.clone()));
    }
    tags.extend([
        ("host".into(), s.host.clone()),
        ("container_name".into(), t.name.clone()),
        ("container_image".into(), image.into()),
        ("container_version".into(), version.into()),
        ("container_status".into(), t.status.clone()),
        ("app".into(), t.app.clone()),
        ("service".into(), t.service.clone()),
        ("version".into(), t.version.clone()),
        ("slot".into(), t.slot.to_string()),
        ("node".into(), s.node.clone()),
    ]);
    tags
}

fn int(v: u64) -> Value {
    Value::Int(v.min(i64::MAX as u64) as i64)
}

/// The snapshot as Telegraf's docker, cpu, mem, disk, diskio, net and system inputs write it.
pub fn points(s: &Snapshot) -> Vec<Point> {
    let mut out = Vec::with_capacity(16 + s.containers.len() * 8);
    let t = s.time_ns;
    let host_total = s.sample.mem("MemTotal");
    for c in &s.containers {
        let tags = container_tags(s, &c.target);
        let pt = |m: &str| Point {
            measurement: m.to_string(),
            tags: tags.clone(),
            fields: Vec::new(),
            time_ns: t,
        };
        let id = Value::Str(c.target.id.clone());
        if let Some(st) = &c.stats {
            let mut p = pt("docker_container_cpu")
                .tag("cpu", "cpu-total")
                .field("usage_total", int(st.cpu_total_ns))
                .field("usage_in_usermode", int(st.cpu_user_ns))
                .field("usage_in_kernelmode", int(st.cpu_system_ns))
                .field("throttling_periods", int(st.throttle_periods))
                .field("throttling_throttled_periods", int(st.throttled_periods))
                .field("throttling_throttled_time", int(st.throttled_ns));
            if let Some(pc) = c.cpu_percent {
                p = p.float("usage_percent", pc);
            }
            out.push(p.field("container_id", id.clone()));
            for (i, ns) in st.percpu_ns.iter().enumerate() {
                out.push(
                    pt("docker_container_cpu")
                        .tag("cpu", format!("cpu{i}"))
                        .field("usage_total", int(*ns))
                        .field("container_id", id.clone()),
                );
            }
            let mut m = pt("docker_container_mem");
            for (k, v) in st.mem_stat.iter() {
                m = m.field(k, int(v));
            }
            m = m
                .field("usage", int(st.mem_usage))
                .field("limit", int(c.mem_limit(host_total)))
                .field("fail_count", int(st.mem_failcnt));
            if let Some(mx) = st.mem_max_usage {
                m = m.field("max_usage", int(mx));
            }
            if let Some(pc) = c.mem_percent(host_total) {
                m = m.float("usage_percent", pc);
            }
            out.push(m.field("container_id", id.clone()));
            // Per network and, as Telegraf's default `total_include` adds, a `total` one
            // (none for a container in the host's network, as Telegraf).
            let net_fields = |p: Point, n: &NetDev| {
                p.field("rx_bytes", int(n.rx_bytes))
                    .field("rx_packets", int(n.rx_packets))
                    .field("rx_errors", int(n.rx_errors))
                    .field("rx_dropped", int(n.rx_dropped))
                    .field("tx_bytes", int(n.tx_bytes))
                    .field("tx_packets", int(n.tx_packets))
                    .field("tx_errors", int(n.tx_errors))
                    .field("tx_dropped", int(n.tx_dropped))
                    .field("container_id", id.clone())
            };
            let mut total = NetDev::default();
            for n in &c.net {
                out.push(net_fields(
                    pt("docker_container_net").tag("network", n.name.clone()),
                    n,
                ));
                total.add(n);
            }
            if !c.net.is_empty() {
                out.push(net_fields(
                    pt("docker_container_net").tag("network", "total"),
                    &total,
                ));
            }
            // Per device and a `total` (always written, with only container_id when the
            // kernel counted no device, as Telegraf writes it).
            let mut sum: Vec<(String, u64)> = Vec::new();
            for d in &st.blkio {
                let fields = d.telegraf_fields();
                let mut p =
                    pt("docker_container_blkio").tag("device", format!("{}:{}", d.major, d.minor));
                for (k, v) in &fields {
                    p = p.field(k.clone(), int(*v));
                    match sum.iter_mut().find(|(n, _)| n == k) {
                        Some(e) => e.1 += v,
                        None => sum.push((k.clone(), *v)),
                    }
                }
                out.push(p.field("container_id", id.clone()));
            }
            let mut p = pt("docker_container_blkio").tag("device", "total");
            for (k, v) in sum {
                p = p.field(k, int(v));
            }
            out.push(p.field("container_id", id.clone()));
        }
        let mut p = pt("docker_container_status")
            .field(
                "oomkilled",
                Value::Bool(
                    c.target.oom_killed || c.stats.as_ref().is_some_and(|s| s.oom_kills > 0),
                ),
            )
            .field(
                "pid",
                int(c.stats.as_ref().and_then(|s| s.pid).unwrap_or(0) as u64),
            )
            .field("exitcode", Value::Int(c.target.exit_code))
            .field("restart_count", int(c.target.restart_count));
        if let Some(st) = c.started_ns {
            p = p
                .field("started_at", Value::Int(st))
                .field("uptime_ns", Value::Int((t - st).max(0)));
        }
        out.push(p.field("container_id", id.clone()));
        if let Some(h) = &c.target.health {
            out.push(
                pt("docker_container_health")
                    .field("health_status", Value::Str(h.clone()))
                    .field("failing_streak", Value::Int(c.target.failing_streak as i64)),
            );
        }
    }
    host_points(s, &mut out);
    out
}

fn host_points(s: &Snapshot, out: &mut Vec<Point>) {
    let t = s.time_ns;
    let h = &s.host;
    let node = &s.node;
    let pt = |m: &str| {
        Point::new(m, t)
            .tag("host", h.clone())
            .tag("node", node.clone())
    };
    for (name, modes) in &s.cpu_percent {
        let mut p = pt("cpu").tag("cpu", name.clone());
        for (mode, v) in modes {
            p = p.float(format!("usage_{mode}"), *v);
        }
        out.push(p);
    }
    let m = &s.sample;
    let total = m.mem("MemTotal");
    if total > 0 {
        let free = m.mem("MemFree");
        let buffered = m.mem("Buffers");
        let cached = m.mem("Cached") + m.mem("SReclaimable");
        let available = m.mem("MemAvailable");
        let used = total.saturating_sub(free + buffered + cached);
        out.push(
            pt("mem")
                .field("total", int(total))
                .field("available", int(available))
                .field("used", int(used))
                .field("free", int(free))
                .field("cached", int(cached))
                .field("buffered", int(buffered))
                .field("active", int(m.mem("Active")))
                .field("inactive", int(m.mem("Inactive")))
                .field("slab", int(m.mem("Slab")))
                .field("shared", int(m.mem("Shmem")))
                .field("swap_total", int(m.mem("SwapTotal")))
                .field("swap_free", int(m.mem("SwapFree")))
                .float("used_percent", used as f64 * 100.0 / total as f64)
                .float("available_percent", available as f64 * 100.0 / total as f64),
        );
    }
    for (mnt, u) in &s.disks {
        let denom = (u.used + u.free) as f64;
        out.push(
            pt("disk")
                .tag("path", mnt.path.clone())
                .tag("device", mnt.device.clone())
                .tag("fstype", mnt.fstype.clone())
                .tag("mode", mnt.mode)
                .field("total", int(u.total))
                .field("free", int(u.free))
                .field("used", int(u.used))
                .float(
                    "used_percent",
                    if denom > 0.0 {
                        u.used as f64 * 100.0 / denom
                    } else {
                        0.0
                    },
                )
                .field("inodes_total", int(u.inodes_total))
                .field("inodes_free", int(u.inodes_free))
                .field(
                    "inodes_used",
                    int(u.inodes_total.saturating_sub(u.inodes_free)),
                ),
        );
    }
    for d in &m.disks {
        out.push(
            pt("diskio")
                .tag("name", d.name.clone())
                .field("reads", int(d.reads))
                .field("writes", int(d.writes))
                .field("read_bytes", int(d.read_bytes))
                .field("write_bytes", int(d.write_bytes))
                .field("read_time", int(d.read_time))
                .field("write_time", int(d.write_time))
                .field("io_time", int(d.io_time))
                .field("weighted_io_time", int(d.weighted_io_time))
                .field("iops_in_progress", int(d.iops_in_progress))
                .field("merged_reads", int(d.merged_reads))
                .field("merged_writes", int(d.merged_writes)),
        );
    }
    for n in &m.net {
        out.push(
            pt("net")
                .tag("interface", n.name.clone())
                .field("bytes_sent", int(n.tx_bytes))
                .field("bytes_recv", int(n.rx_bytes))
                .field("packets_sent", int(n.tx_packets))
                .field("packets_recv", int(n.rx_packets))
                .field("err_in", int(n.rx_errors))
                .field("err_out", int(n.tx_errors))
                .field("drop_in", int(n.rx_dropped))
                .field("drop_out", int(n.tx_dropped))
                .field(
                    "speed",
                    Value::Int(
                        m.node
                            .netclass
                            .iter()
                            .find(|c| c.device == n.name)
                            .and_then(|c| c.speed_mbps)
                            .map(|v| v as i64)
                            .unwrap_or(-1),
                    ),
                ),
        );
    }
    let mut system = pt("system")
        .float("load1", m.load[0])
        .float("load5", m.load[1])
        .float("load15", m.load[2])
        .field("n_cpus", int(m.n_cpus() as u64))
        .field("uptime", int(m.uptime_s));
    // Telegraf leaves n_users out when the host has no utmp.
    if let Some(u) = m.node.users {
        system = system.field("n_users", int(u));
    }
    out.push(system);
    telegraf_host_inputs(s, out);
}

/// Telegraf's default kernel, processes and swap inputs, its netstat input, the `net`
/// input's protocol counters (`interface=all`, from /proc/net/snmp) and the docker input's
/// engine-wide `docker` measurement.
fn telegraf_host_inputs(s: &Snapshot, out: &mut Vec<Point>) {
    let t = s.time_ns;
    let m = &s.sample;
    let n = &m.node;
    let pt = |name: &str| {
        Point::new(name, t)
            .tag("host", s.host.clone())
            .tag("node", s.node.clone())
    };
    let mut kernel = pt("kernel").field("boot_time", int(m.boot_time_s));
    for (field, v) in [
        ("interrupts", m.stat.intr),
        ("context_switches", m.stat.ctxt),
        ("processes_forked", m.stat.processes),
    ] {
        if let Some(v) = v {
            kernel = kernel.field(field, int(v));
        }
    }
    if let Some((avail, _)) = n.entropy {
        kernel = kernel.field("entropy_avail", int(avail));
    }
    out.push(kernel);
    let p = &n.procs;
    out.push(
        pt("processes")
            .field("blocked", int(p.blocked))
            .field("zombies", int(p.zombies))
            .field("stopped", int(p.stopped))
            .field("running", int(p.running))
            .field("sleeping", int(p.sleeping))
            .field("total", int(p.total))
            .field("unknown", int(p.unknown))
            .field("dead", int(p.dead))
            .field("paging", int(p.paging))
            .field("total_threads", int(p.total_threads))
            .field("idle", int(p.idle)),
    );
    // swap: gopsutil's figures (in/out are pages swapped times 4 KiB, as it computes them).
    let (total, free) = (m.mem("SwapTotal"), m.mem("SwapFree"));
    let used = total.saturating_sub(free);
    let vm = |k: &str| {
        m.vmstat
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| *v)
            .unwrap_or(0)
    };
    out.push(
        pt("swap")
            .field("total", int(total))
            .field("used", int(used))
            .field("free", int(free))
            .float(
                "used_percent",
                if total > 0 {
                    used as f64 * 100.0 / total as f64
                } else {
                    0.0
                },
            )
            .field("in", int(vm("pswpin") * 4096))
            .field("out", int(vm("pswpout") * 4096)),
    );
    let mut netstat = pt("netstat").field("udp_socket", int(n.udp_sockets));
    for state in super::node::TCP_STATES {
        netstat = netstat.field(state, int(n.tcp_states.get(state).copied().unwrap_or(0)));
    }
    out.push(netstat);
    let snmp: Vec<_> = n
        .netstat
        .iter()
        .filter(|(p, _, _)| {
            matches!(
                p.as_str(),
                "Ip" | "Icmp" | "IcmpMsg" | "Tcp" | "Udp" | "UdpLite"
            )
        })
        .collect();
    if !snmp.is_empty() {
        let mut all = pt("net").tag("interface", "all");
        for (proto, field, v) in snmp {
            all = all.field(
                format!(
                    "{}_{}",
                    proto.to_ascii_lowercase(),
                    field.to_ascii_lowercase()
                ),
                Value::Int(*v as i64),
            );
        }
        out.push(all);
    }
    if let Some(e) = &s.engine {
        out.push(
            Point::new("docker", t)
                .tag("engine_host", e.name.clone())
                .tag("server_version", e.server_version.clone())
                .tag("host", s.host.clone())
                .tag("node", s.node.clone())
                .field("n_cpus", Value::Int(e.n_cpus))
                .field(
                    "n_used_file_descriptors",
                    Value::Int(e.n_used_file_descriptors),
                )
                .field("n_containers", Value::Int(e.n_containers))
                .field("n_containers_running", Value::Int(e.n_containers_running))
                .field("n_containers_stopped", Value::Int(e.n_containers_stopped))
                .field("n_containers_paused", Value::Int(e.n_containers_paused))
                .field("n_images", Value::Int(e.n_images))
                .field("n_goroutines", Value::Int(e.n_goroutines))
                .field("n_listener_events", Value::Int(e.n_listener_events))
                .field("memory_total", Value::Int(e.memory_total)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_points_carry_telegraf_names_and_berth_tags() {
        let s = Snapshot {
            time_ns: 5,
            host: "h1".into(),
            node: "n1".into(),
            containers: vec![ContainerSample {
                target: Target {
                    id: "abc".into(),
                    name: "shop_web-001_1".into(),
                    image: "registry:5000/shop/web:1.2".into(),
                    app: "shop".into(),
                    service: "web".into(),
                    version: "web-001".into(),
                    slot: 1,
                    status: "running".into(),
                    health: Some("healthy".into()),
                    ..Default::default()
                },
                stats: Some(ContainerStats {
                    cpu_total_ns: 10,
                    mem_usage: 100,
                    mem_stat: crate::metrics::cgroup::KeyValues::new("inactive_file 40\n".into()),
                    ..Default::default()
                }),
                cpu_percent: Some(12.5),
                ..Default::default()
            }],
            ..Default::default()
        };
        let lines: Vec<String> = points(&s).iter().map(Point::to_line).collect();
        let cpu = lines
            .iter()
            .find(|l| l.starts_with("docker_container_cpu,"))
            .unwrap();
        assert!(cpu.contains("container_image=registry:5000/shop/web,container_version=1.2"));
        assert!(
            cpu.contains(",app=shop,service=web,version=web-001,slot=1,node=n1,cpu=cpu-total ")
        );
        assert!(cpu.contains("usage_total=10i") && cpu.contains("usage_percent=12.5"));
        let mem = lines
            .iter()
            .find(|l| l.starts_with("docker_container_mem,"))
            .unwrap();
        assert!(mem.contains("inactive_file=40i,usage=100i"));
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("docker_container_health,")
                    && l.contains("health_status=\"healthy\""))
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("docker_container_status,"))
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("system,host=h1,node=n1 "))
        );
    }

    #[test]
    fn cpu_percent_needs_two_samples() {
        let a = CpuTimes {
            name: "cpu-total".into(),
            user: 10,
            idle: 90,
            ..Default::default()
        };
        let b = CpuTimes {
            name: "cpu-total".into(),
            user: 30,
            idle: 170,
            ..Default::default()
        };
        assert!(cpu_percent(&[], std::slice::from_ref(&a)).is_empty());
        let p = cpu_percent(&[a], &[b]);
        assert_eq!(p[0].1[0], ("user", 20.0));
        assert_eq!(p[0].1[2], ("idle", 80.0));
    }

    #[test]
    fn telegraf_default_inputs_docker_engine_and_blkio_totals() {
        use crate::metrics::cgroup::BlkDevice;
        let mut procs = super::super::node::ProcStates::default();
        procs.add("1 (init) S 0 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 3 0 10 20 30");
        let mut tcp_states = std::collections::BTreeMap::new();
        tcp_states.insert("tcp_established", 5);
        let dev = |minor, read_bytes| BlkDevice {
            major: 8,
            minor,
            read_bytes,
            ..Default::default()
        };
        let s = Snapshot {
            time_ns: 5,
            host: "h1".into(),
            node: "n1".into(),
            sample: HostSample {
                mem: crate::metrics::host::parse_meminfo("SwapTotal: 4 kB\nSwapFree: 1 kB\n"),
                vmstat: vec![("pswpin".into(), 2)],
                node: super::super::node::NodeSample {
                    procs,
                    tcp_states,
                    udp_sockets: 3,
                    entropy: Some((256, None)),
                    netstat: vec![
                        ("Tcp".into(), "CurrEstab".into(), 5.0),
                        ("TcpExt".into(), "ListenDrops".into(), 1.0),
                    ],
                    ..Default::default()
                },
                ..Default::default()
            },
            engine: Some(crate::runtime::EngineInfo {
                name: "eng1".into(),
                server_version: "28.1.1".into(),
                n_containers: 7,
                ..Default::default()
            }),
            containers: vec![ContainerSample {
                target: Target {
                    id: "abc".into(),
                    name: "shop_web-001_1".into(),
                    status: "running".into(),
                    ..Default::default()
                },
                stats: Some(ContainerStats {
                    blkio: vec![dev(0, 100), dev(16, 50)],
                    ..Default::default()
                }),
                net: vec![crate::metrics::cgroup::NetDev {
                    name: "eth0".into(),
                    rx_bytes: 9,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let lines: Vec<String> = points(&s).iter().map(Point::to_line).collect();
        let find = |prefix: &str| -> &String {
            lines
                .iter()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix} in {lines:#?}"))
        };
        // engine_host and server_version come first among a container's tags.
        assert!(
            find("docker_container_cpu,")
                .starts_with("docker_container_cpu,engine_host=eng1,server_version=28.1.1,")
        );
        assert!(find("docker_container_blkio,").contains(",device=8:0 "));
        assert!(find("docker_container_blkio,").contains("io_service_bytes_recursive_read=100i"));
        let total = lines
            .iter()
            .find(|l| l.starts_with("docker_container_blkio,") && l.contains(",device=total "))
            .expect("a device=total point");
        assert!(
            total.contains("io_service_bytes_recursive_read=150i"),
            "{total}"
        );
        assert!(find("docker_container_net,").contains(",network=eth0 "));
        assert!(lines.iter().any(|l| l.starts_with("docker_container_net,")
            && l.contains(",network=total ")
            && l.contains("rx_bytes=9i")));
        let docker = find("docker,");
        assert!(
            docker.starts_with("docker,engine_host=eng1,server_version=28.1.1,host=h1,node=n1 ")
        );
        assert!(docker.contains("n_containers=7i"));
        assert!(find("kernel,").contains("entropy_avail=256i"));
        let p = find("processes,");
        assert!(
            p.contains("sleeping=1i") && p.contains("total_threads=3i"),
            "{p}"
        );
        let swap = find("swap,");
        assert!(
            swap.contains("total=4096i")
                && swap.contains("used=3072i")
                && swap.contains("in=8192i"),
            "{swap}"
        );
        let ns = find("netstat,");
        assert!(
            ns.contains("tcp_established=5i") && ns.contains("udp_socket=3i"),
            "{ns}"
        );
        // /proc/net/snmp's protocols only (not TcpExt), lower-cased as Telegraf's net input does.
        let all = find("net,host=h1,node=n1,interface=all ");
        assert!(
            all.contains("tcp_currestab=5i") && !all.contains("listendrops"),
            "{all}"
        );
    }
}
