//! Container figures from cgroup files (v1 and v2; cgroupfs and systemd layouts) and
//! `/proc/<pid>/net/dev`, never from the engine's stats API.
//!
//! The layout is detected once from `/proc/self/mounts`; a container's directory is found by
//! trying the cgroupfs (`docker/<id>`) and systemd (`system.slice/docker-<id>.scope`) names.
//! File parsers are pure functions over the text, tested on samples of both versions.

use super::procfile::Kept;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// Where the cgroup hierarchies are mounted.
#[derive(Debug)]
pub struct Cgroups {
    pub version: Version,
    /// v1: controller -> mount point; v2: "" -> the unified mount.
    mounts: BTreeMap<String, PathBuf>,
    /// Whether containers were last found in the systemd layout.
    systemd: std::sync::atomic::AtomicBool,
}

/// One container's counters at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerStats {
    pub cpu_total_ns: u64,
    pub cpu_user_ns: u64,
    pub cpu_system_ns: u64,
    pub percpu_ns: Vec<u64>,
    pub throttle_periods: u64,
    pub throttled_periods: u64,
    pub throttled_ns: u64,
    pub mem_usage: u64,
    /// None = unlimited.
    pub mem_limit: Option<u64>,
    pub mem_max_usage: Option<u64>,
    pub mem_failcnt: u64,
    /// `memory.stat` as the kernel names it (v1: cache, rss, total_inactive_file, ...; v2:
    /// anon, file, inactive_file, ...).
    pub mem_stat: KeyValues,
    /// OOM kills the kernel counted (v2 `memory.events`; on v1 they come from the engine's
    /// `oom` events instead, which saves a read per container).
    pub oom_kills: u64,
    pub blkio: Vec<BlkDevice>,
    /// The container's first process (for `/proc/<pid>/net/dev` and its start time).
    pub pid: Option<u32>,
}

impl ContainerStats {
    pub fn mem_stat(&self, key: &str) -> Option<u64> {
        self.mem_stat.get(key)
    }

    /// Usage without the reclaimable page cache (what `docker stats` and cAdvisor's working
    /// set show).
    pub fn working_set(&self) -> u64 {
        let inactive = self
            .mem_stat("total_inactive_file")
            .or_else(|| self.mem_stat("inactive_file"))
            .unwrap_or(0);
        self.mem_usage.saturating_sub(inactive)
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct BlkDevice {
    pub major: u32,
    pub minor: u32,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub read_ops: u64,
    pub write_ops: u64,
    /// cgroup v1's other operations (`Sync`, `Async`, `Discard`, `Total`) under Telegraf's
    /// field names (`io_service_bytes_recursive_sync`, ...); v2's io.stat has none.
    pub more: Vec<(String, u64)>,
}

impl BlkDevice {
    /// Telegraf's docker_container_blkio fields for this device.
    pub fn telegraf_fields(&self) -> Vec<(String, u64)> {
        let mut out = vec![
            (
                "io_service_bytes_recursive_read".to_string(),
                self.read_bytes,
            ),
            (
                "io_service_bytes_recursive_write".to_string(),
                self.write_bytes,
            ),
            ("io_serviced_recursive_read".to_string(), self.read_ops),
            ("io_serviced_recursive_write".to_string(), self.write_ops),
        ];
        out.extend(self.more.iter().cloned());
        out
    }
}

/// One network interface's counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetDev {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
    /// The other columns of /proc/net/dev: rx fifo, frame, compressed, multicast; tx fifo,
    /// colls, carrier, compressed.
    pub rx_fifo: u64,
    pub rx_frame: u64,
    pub rx_compressed: u64,
    pub rx_multicast: u64,
    pub tx_fifo: u64,
    pub tx_colls: u64,
    pub tx_carrier: u64,
    pub tx_compressed: u64,
}

impl NetDev {
    /// Adds another interface's counters (Telegraf's `network=total`).
    pub fn add(&mut self, o: &NetDev) {
        self.rx_bytes += o.rx_bytes;
        self.rx_packets += o.rx_packets;
        self.rx_errors += o.rx_errors;
        self.rx_dropped += o.rx_dropped;
        self.tx_bytes += o.tx_bytes;
        self.tx_packets += o.tx_packets;
        self.tx_errors += o.tx_errors;
        self.tx_dropped += o.tx_dropped;
    }
}

/// The file read first in a container's main cgroup directory (v1, v2): it says whether the
/// cgroup still exists, and its kept copy which layout the container is in.
const PROBE: &str = "cpuacct.usage_percpu";
const PROBE_V2: &str = "cpu.stat";

/// USER_HZ: the unit of `cpuacct.stat` and `/proc/*/stat` times (100 on every Linux build we
/// run on).
pub const USER_HZ: u64 = 100;

impl Cgroups {
    pub fn detect() -> Cgroups {
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        Cgroups::from_mounts(&mounts)
    }

    /// From the text of `/proc/self/mounts`: v1 when any `cgroup` (v1) controller mount
    /// exists, else v2 at its `cgroup2` mount.
    pub fn from_mounts(text: &str) -> Cgroups {
        let mut v1 = BTreeMap::new();
        let mut v2 = None;
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 4 {
                continue;
            }
            match f[2] {
                "cgroup" => {
                    for opt in f[3].split(',') {
                        if matches!(opt, "cpu" | "cpuacct" | "memory" | "blkio" | "pids") {
                            v1.insert(opt.to_string(), PathBuf::from(f[1]));
                        }
                    }
                }
                "cgroup2" if v2.is_none() || f[1] == "/sys/fs/cgroup" => {
                    v2 = Some(PathBuf::from(f[1]))
                }
                _ => {}
            }
        }
        if v1.contains_key("memory") || v1.contains_key("cpuacct") {
            Cgroups::at(Version::V1, v1)
        } else {
            let root = v2.unwrap_or_else(|| PathBuf::from("/sys/fs/cgroup"));
            Cgroups::at(Version::V2, BTreeMap::from([(String::new(), root)]))
        }
    }

    /// A cgroups view rooted elsewhere (tests build a tree in a temp dir).
    pub fn at(version: Version, mounts: BTreeMap<String, PathBuf>) -> Cgroups {
        Cgroups {
            version,
            mounts,
            systemd: Default::default(),
        }
    }

    /// The container's directory under one controller's hierarchy ("" on v2).
    /// The container's directory under one controller's hierarchy ("" on v2), in a known
    /// layout (no file system access).
    fn path(&self, controller: &str, id: &str, systemd: bool) -> Option<PathBuf> {
        let root = self.mounts.get(controller)?;
        Some(match systemd {
            false => root.join(format!("docker/{id}")),
            true => root.join(format!("system.slice/docker-{id}.scope")),
        })
    }

    /// Which layout the container's cgroup is in (None: it has none, it stopped). One `stat`:
    /// the layout that matched last is tried first.
    fn layout(&self, id: &str) -> Option<bool> {
        let main = match self.version {
            Version::V1 => "cpuacct",
            Version::V2 => "",
        };
        let first = self.systemd.load(std::sync::atomic::Ordering::Relaxed);
        let found = [first, !first]
            .into_iter()
            .find(|sd| self.path(main, id, *sd).is_some_and(|p| p.is_dir()))?;
        self.systemd
            .store(found, std::sync::atomic::Ordering::Relaxed);
        Some(found)
    }

    /// [`Cgroups::layout`], without a `stat` when the container's files are already kept
    /// open in one layout.
    fn layout_kept(&self, id: &str, files: &Kept) -> Option<bool> {
        let (main, probe) = match self.version {
            Version::V1 => ("cpuacct", PROBE),
            Version::V2 => ("", PROBE_V2),
        };
        [false, true]
            .into_iter()
            .find(|sd| {
                self.path(main, id, *sd)
                    .is_some_and(|p| files.contains(&p.join(probe)))
            })
            .or_else(|| self.layout(id))
    }

    fn dir(&self, controller: &str, id: &str) -> Option<PathBuf> {
        self.path(controller, id, self.layout(id)?)
    }

    /// The container's first process, from its cgroup (no engine call).
    pub fn pid(&self, id: &str) -> Option<u32> {
        let ctrl = match self.version {
            Version::V1 => "cpuacct",
            Version::V2 => "",
        };
        read(&self.dir(ctrl, id)?.join("cgroup.procs")).and_then(|t| first_pid(&t))
    }

    /// Reads one container's counters; None when its cgroup is gone (it stopped). `pid` is
    /// the first process found at an earlier read: `cgroup.procs` is read again only when
    /// there is none or the cgroup's files had to be opened anew (a restarted container gets
    /// a new cgroup under the same path, and a new first process).
    pub fn read(&self, id: &str, files: &mut Kept, pid: Option<u32>) -> Option<ContainerStats> {
        match self.version {
            Version::V1 => self.read_v1(id, files, pid),
            Version::V2 => self.read_v2(id, files, pid),
        }
    }

    fn read_v1(&self, id: &str, files: &mut Kept, pid: Option<u32>) -> Option<ContainerStats> {
        let sd = self.layout_kept(id, files)?;
        let dir = |c: &str| self.path(c, id, sd);
        let cpuacct = dir("cpuacct")?;
        // The first read says whether the cgroup is still there (a stopped container's is
        // removed; its kept files then fail). Total CPU is the sum of the per-CPU figures
        // (what `cpuacct.usage` adds up itself), which saves a read.
        let percpu: Vec<u64> = files
            .read_single(&cpuacct.join(PROBE))?
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        let mut s = ContainerStats {
            cpu_total_ns: percpu.iter().sum(),
            percpu_ns: percpu,
            pid: first_pid_of(&cpuacct, files.last_opened(), pid),
            ..Default::default()
        };
        if let Some(t) = files.read_single(&cpuacct.join("cpuacct.stat")) {
            let kv = t.as_str();
            let ns = 1_000_000_000 / USER_HZ;
            s.cpu_user_ns = get(kv, "user") * ns;
            s.cpu_system_ns = get(kv, "system") * ns;
        }
        if let Some(t) = dir("cpu").and_then(|d| files.read_single(&d.join("cpu.stat"))) {
            let kv = t.as_str();
            s.throttle_periods = get(kv, "nr_periods");
            s.throttled_periods = get(kv, "nr_throttled");
            s.throttled_ns = get(kv, "throttled_time");
        }
        if let Some(mem) = dir("memory") {
            s.mem_usage = num(files.read_single(&mem.join("memory.usage_in_bytes"))).unwrap_or(0);
            s.mem_max_usage = num(files.read_single(&mem.join("memory.max_usage_in_bytes")));
            s.mem_failcnt = num(files.read_single(&mem.join("memory.failcnt"))).unwrap_or(0);
            s.mem_stat = files
                .read_single(&mem.join("memory.stat"))
                .map(KeyValues::new)
                .unwrap_or_default();
            // The limit from memory.stat (the smallest up the hierarchy: what applies),
            // which saves reading `memory.limit_in_bytes`. v1 writes "no limit" as a huge
            // page-aligned number.
            s.mem_limit = s
                .mem_stat("hierarchical_memory_limit")
                .filter(|l| *l < 1 << 62);
        }
        if let Some(blk) = dir("blkio") {
            // The throttle layer counts every I/O whatever the scheduler (the CFQ-only
            // `io_service_bytes_recursive` stays empty under mq-deadline/BFQ); the first file
            // that exists is read, one read per figure.
            let mut pick = |names: &[&str]| {
                names
                    .iter()
                    .find_map(|n| files.read_single(&blk.join(n)))
                    .unwrap_or_default()
            };
            let bytes = pick(&[
                "blkio.throttle.io_service_bytes_recursive",
                "blkio.throttle.io_service_bytes",
                "blkio.io_service_bytes_recursive",
            ]);
            let ops = pick(&[
                "blkio.throttle.io_serviced_recursive",
                "blkio.throttle.io_serviced",
                "blkio.io_serviced_recursive",
            ]);
            s.blkio = parse_blkio_v1(&bytes, &ops);
        }
        Some(s)
    }

    fn read_v2(&self, id: &str, files: &mut Kept, pid: Option<u32>) -> Option<ContainerStats> {
        let d = self.path("", id, self.layout_kept(id, files)?)?;
        let cpu = files.read_single(&d.join(PROBE_V2))?;
        let mut s = ContainerStats {
            pid: first_pid_of(&d, files.last_opened(), pid),
            ..Default::default()
        };
        let kv = cpu.as_str();
        s.cpu_total_ns = get(kv, "usage_usec") * 1000;
        s.cpu_user_ns = get(kv, "user_usec") * 1000;
        s.cpu_system_ns = get(kv, "system_usec") * 1000;
        s.throttle_periods = get(kv, "nr_periods");
        s.throttled_periods = get(kv, "nr_throttled");
        s.throttled_ns = get(kv, "throttled_usec") * 1000;
        s.mem_usage = num(files.read_single(&d.join("memory.current"))).unwrap_or(0);
        s.mem_limit = num(files.read_single(&d.join("memory.max")));
        s.mem_max_usage = num(files.read_single(&d.join("memory.peak")));
        s.mem_stat = files
            .read_single(&d.join("memory.stat"))
            .map(KeyValues::new)
            .unwrap_or_default();
        if let Some(t) = files.read_single(&d.join("memory.events")) {
            let kv = t.as_str();
            s.mem_failcnt = get(kv, "max");
            s.oom_kills = get(kv, "oom_kill");
        }
        s.blkio = files
            .read_single(&d.join("io.stat"))
            .map(|t| parse_io_stat_v2(&t))
            .unwrap_or_default();
        Some(s)
    }
}

/// The container's first process: `known` while its cgroup's files stay open, else read from
/// `cgroup.procs` in `dir` (once, not kept: it lists every process).
fn first_pid_of(dir: &Path, opened: bool, known: Option<u32>) -> Option<u32> {
    match known {
        Some(p) if !opened => Some(p),
        _ => read(&dir.join("cgroup.procs")).and_then(|t| first_pid(&t)),
    }
}

fn read(p: &Path) -> Option<String> {
    super::procfile::read_once(p)
}

fn num(text: Option<String>) -> Option<u64> {
    text?.trim().parse().ok()
}

fn first_pid(t: &str) -> Option<u32> {
    t.split_whitespace().next()?.parse().ok()
}

/// `key value` lines (memory.stat, cpu.stat, cpuacct.stat, memory.events).
pub fn key_values(t: &str) -> impl Iterator<Item = (&str, u64)> {
    t.lines().filter_map(|l| {
        let mut it = l.split_whitespace();
        let k = it.next()?;
        let v = it.next()?.parse().ok()?;
        Some((k, v))
    })
}

/// One key of a `key value` text.
fn value_of(t: &str, key: &str) -> Option<u64> {
    key_values(t).find(|(k, _)| *k == key).map(|(_, v)| v)
}

/// One key of a `key value` text (0 when absent).
fn get(t: &str, key: &str) -> u64 {
    value_of(t, key).unwrap_or(0)
}

/// A `key value` file kept as the kernel wrote it (memory.stat: ~40 lines a container),
/// parsed when read: one string where a parsed copy would be forty.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyValues(String);

impl KeyValues {
    pub fn new(text: String) -> KeyValues {
        KeyValues(text)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        key_values(&self.0)
    }

    pub fn get(&self, key: &str) -> Option<u64> {
        value_of(&self.0, key)
    }
}

fn device(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

fn entry(out: &mut Vec<BlkDevice>, major: u32, minor: u32) -> &mut BlkDevice {
    let i = match out
        .iter()
        .position(|d| d.major == major && d.minor == minor)
    {
        Some(i) => i,
        None => {
            out.push(BlkDevice {
                major,
                minor,
                ..Default::default()
            });
            out.len() - 1
        }
    };
    &mut out[i]
}

/// v1 `blkio.*io_service_bytes*` and `*io_serviced*`: `8:0 Read 4096` lines.
pub fn parse_blkio_v1(bytes: &str, ops: &str) -> Vec<BlkDevice> {
    let mut out = Vec::new();
    for (text, is_bytes) in [(bytes, true), (ops, false)] {
        for l in text.lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (Some((ma, mi)), 3) = (f.first().and_then(|d| device(d)), f.len()) else {
                continue;
            };
            let Ok(v) = f[2].parse::<u64>() else { continue };
            let d = entry(&mut out, ma, mi);
            match (f[1], is_bytes) {
                ("Read", true) => d.read_bytes = v,
                ("Write", true) => d.write_bytes = v,
                ("Read", false) => d.read_ops = v,
                ("Write", false) => d.write_ops = v,
                (op @ ("Sync" | "Async" | "Discard" | "Total"), _) => {
                    let kind = if is_bytes {
                        "io_service_bytes_recursive"
                    } else {
                        "io_serviced_recursive"
                    };
                    d.more
                        .push((format!("{kind}_{}", op.to_ascii_lowercase()), v));
                }
                _ => {}
            }
        }
    }
    out
}

/// v2 `io.stat`: `8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0` lines.
pub fn parse_io_stat_v2(text: &str) -> Vec<BlkDevice> {
    let mut out = Vec::new();
    for l in text.lines() {
        let mut f = l.split_whitespace();
        let Some((ma, mi)) = f.next().and_then(device) else {
            continue;
        };
        let d = entry(&mut out, ma, mi);
        for kv in f {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let v = v.parse().unwrap_or(0);
            match k {
                "rbytes" => d.read_bytes = v,
                "wbytes" => d.write_bytes = v,
                "rios" => d.read_ops = v,
                "wios" => d.write_ops = v,
                _ => {}
            }
        }
    }
    out
}

/// `/proc/<pid>/net/dev` (and the host's `/proc/net/dev`), without `lo`.
pub fn parse_net_dev(text: &str) -> Vec<NetDev> {
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let name = name.trim();
            if name == "lo" {
                return None;
            }
            let v: Vec<u64> = rest
                .split_whitespace()
                .map(|x| x.parse().unwrap_or(0))
                .collect();
            if v.len() < 16 {
                return None;
            }
            Some(NetDev {
                name: name.to_string(),
                rx_bytes: v[0],
                rx_packets: v[1],
                rx_errors: v[2],
                rx_dropped: v[3],
                tx_bytes: v[8],
                tx_packets: v[9],
                tx_errors: v[10],
                tx_dropped: v[11],
                rx_fifo: v[4],
                rx_frame: v[5],
                rx_compressed: v[6],
                rx_multicast: v[7],
                tx_fifo: v[12],
                tx_colls: v[13],
                tx_carrier: v[14],
                tx_compressed: v[15],
            })
        })
        .collect()
}

/// A process's network counters (its network namespace's interfaces). `tag` (the process's
/// start time) reopens the kept file when the pid now names another process.
pub fn net_of(pid: u32, tag: i64, files: &mut Kept) -> Vec<NetDev> {
    files
        .read_tagged(Path::new(&format!("/proc/{pid}/net/dev")), tag as u64)
        .map(|t| parse_net_dev(&t))
        .unwrap_or_default()
}

/// When a process started, in nanoseconds since the epoch (from `/proc/<pid>/stat` field 22,
/// in ticks since boot).
pub fn process_start_ns(pid: u32, boot_time_s: u64) -> Option<i64> {
    let t = read(Path::new(&format!("/proc/{pid}/stat")))?;
    // The command (field 2) may hold spaces: count fields after its closing parenthesis.
    let rest = &t[t.rfind(')')? + 1..];
    let ticks: u64 = rest.split_whitespace().nth(19)?.parse().ok()?;
    Some((boot_time_s as i64) * 1_000_000_000 + (ticks * (1_000_000_000 / USER_HZ)) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_v1_and_v2_from_mounts() {
        let v1 = "cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,nosuid,cpu,cpuacct 0 0\n\
                  cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n\
                  cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n";
        let c = Cgroups::from_mounts(v1);
        assert_eq!(c.version, Version::V1);
        assert_eq!(
            c.mounts["cpuacct"],
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")
        );
        let v2 = "cgroup2 /sys/fs/cgroup cgroup2 rw,nsdelegate 0 0\n";
        assert_eq!(Cgroups::from_mounts(v2).version, Version::V2);
    }

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn reads_a_v2_systemd_layout() {
        let tmp = tempfile::tempdir().unwrap();
        let d = "system.slice/docker-abc.scope";
        write(
            tmp.path(),
            &format!("{d}/cpu.stat"),
            "usage_usec 2000\nuser_usec 1500\nsystem_usec 500\nnr_periods 4\nnr_throttled 1\nthrottled_usec 7\n",
        );
        write(tmp.path(), &format!("{d}/memory.current"), "1000\n");
        write(tmp.path(), &format!("{d}/memory.max"), "max\n");
        write(
            tmp.path(),
            &format!("{d}/memory.stat"),
            "anon 600\nfile 400\ninactive_file 300\n",
        );
        write(
            tmp.path(),
            &format!("{d}/memory.events"),
            "low 0\nhigh 0\nmax 2\noom 1\noom_kill 1\n",
        );
        write(
            tmp.path(),
            &format!("{d}/io.stat"),
            "8:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n",
        );
        write(tmp.path(), &format!("{d}/cgroup.procs"), "42\n43\n");
        let c = Cgroups::at(
            Version::V2,
            BTreeMap::from([(String::new(), tmp.path().to_path_buf())]),
        );
        let s = c.read("abc", &mut Kept::new(64), None).unwrap();
        assert_eq!(s.cpu_total_ns, 2_000_000);
        assert_eq!(s.cpu_user_ns, 1_500_000);
        assert_eq!(s.throttled_ns, 7000);
        assert_eq!(s.mem_limit, None);
        assert_eq!(s.working_set(), 700);
        assert_eq!(s.oom_kills, 1);
        assert_eq!(s.blkio[0].write_bytes, 20);
        assert_eq!(s.pid, Some(42));
        assert!(c.read("other", &mut Kept::new(64), None).is_none());
    }

    #[test]
    fn reads_a_v1_cgroupfs_layout() {
        let tmp = tempfile::tempdir().unwrap();
        let m = |c: &str| (c.to_string(), tmp.path().join(c));
        let c = Cgroups::at(
            Version::V1,
            BTreeMap::from([m("cpuacct"), m("cpu"), m("memory"), m("blkio")]),
        );
        write(
            tmp.path(),
            "cpuacct/docker/abc/cpuacct.usage_percpu",
            "3000000000 2000000000 \n",
        );
        write(
            tmp.path(),
            "cpuacct/docker/abc/cpuacct.stat",
            "user 300\nsystem 200\n",
        );
        write(tmp.path(), "cpuacct/docker/abc/cgroup.procs", "7\n");
        write(
            tmp.path(),
            "cpu/docker/abc/cpu.stat",
            "nr_periods 0\nnr_throttled 0\nthrottled_time 0\n",
        );
        write(
            tmp.path(),
            "memory/docker/abc/memory.usage_in_bytes",
            "2048\n",
        );
        write(
            tmp.path(),
            "memory/docker/abc/memory.stat",
            "cache 100\nrss 900\nhierarchical_memory_limit 9223372036854771712\n\
             total_inactive_file 48\n",
        );
        write(
            tmp.path(),
            "memory/docker/abc/memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
        );
        write(
            tmp.path(),
            "blkio/docker/abc/blkio.io_service_bytes_recursive",
            "Total 0\n",
        );
        write(
            tmp.path(),
            "blkio/docker/abc/blkio.throttle.io_service_bytes",
            "8:0 Read 4096\n8:0 Write 8192\n8:0 Total 12288\nTotal 12288\n",
        );
        write(
            tmp.path(),
            "blkio/docker/abc/blkio.throttle.io_serviced",
            "8:0 Read 1\n8:0 Write 2\n",
        );
        let mut kept = Kept::new(64);
        let s = c.read("abc", &mut kept, None).unwrap();
        assert_eq!(
            s.cpu_total_ns, 5_000_000_000,
            "the sum of the per-CPU figures"
        );
        assert_eq!(s.percpu_ns, vec![3_000_000_000, 2_000_000_000]);
        assert_eq!(s.cpu_user_ns, 3_000_000_000);
        assert_eq!(s.mem_limit, None);
        assert_eq!(s.working_set(), 2000);
        assert_eq!(
            s.blkio,
            vec![BlkDevice {
                major: 8,
                minor: 0,
                read_bytes: 4096,
                write_bytes: 8192,
                read_ops: 1,
                write_ops: 2,
                more: vec![("io_service_bytes_recursive_total".into(), 12288)],
            }]
        );
        assert_eq!(s.pid, Some(7));
        // A limit shows (from memory.stat: the limit that applies up the hierarchy).
        write(
            tmp.path(),
            "memory/docker/abc/memory.stat",
            "cache 100\nrss 900\nhierarchical_memory_limit 67108864\n",
        );
        // While the cgroup's files stay open the first process is the one found before:
        // `cgroup.procs` (every process) is not read again each cycle.
        write(tmp.path(), "cpuacct/docker/abc/cgroup.procs", "8\n");
        let again = c.read("abc", &mut kept, s.pid).unwrap();
        assert_eq!(again.mem_limit, Some(64 << 20));
        assert_eq!(again.pid, Some(7));
        // Opened anew (a restarted container's new cgroup), or no pid known: read again.
        assert_eq!(
            c.read("abc", &mut Kept::new(64), Some(7)).unwrap().pid,
            Some(8)
        );
        assert_eq!(c.read("abc", &mut kept, None).unwrap().pid, Some(8));
    }

    #[test]
    fn parses_net_dev() {
        let t = "Inter-|   Receive                                                |  Transmit\n \
                 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
                 lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0\n  \
                 eth0:    1500      10    1    2    0     0          0         0      700       5    0    3    0     0       0          0\n";
        let n = parse_net_dev(t);
        assert_eq!(n.len(), 1);
        assert_eq!(
            (
                n[0].rx_bytes,
                n[0].rx_packets,
                n[0].rx_errors,
                n[0].rx_dropped
            ),
            (1500, 10, 1, 2)
        );
        assert_eq!((n[0].tx_bytes, n[0].tx_dropped), (700, 3));
    }
}
