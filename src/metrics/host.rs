//! Host figures from /proc and statvfs, with pure parsers for each file.

use super::cgroup::{NetDev, parse_net_dev};
use std::path::Path;

/// One `cpu` line of /proc/stat, in USER_HZ ticks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CpuTimes {
    /// "cpu-total" or "cpu0", "cpu1", ...
    pub name: String,
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
    pub guest: u64,
    pub guest_nice: u64,
}

impl CpuTimes {
    /// All ticks (guest time is already counted inside user/nice).
    pub fn total(&self) -> u64 {
        self.user
            + self.nice
            + self.system
            + self.idle
            + self.iowait
            + self.irq
            + self.softirq
            + self.steal
    }

    /// (Telegraf field, ticks) pairs.
    pub fn modes(&self) -> [(&'static str, u64); 10] {
        [
            ("user", self.user),
            ("system", self.system),
            ("idle", self.idle),
            ("nice", self.nice),
            ("iowait", self.iowait),
            ("irq", self.irq),
            ("softirq", self.softirq),
            ("steal", self.steal),
            ("guest", self.guest),
            ("guest_nice", self.guest_nice),
        ]
    }
}

/// The `cpu` lines of /proc/stat (the aggregate first, named "cpu-total") and `btime`.
pub fn parse_proc_stat(text: &str) -> (Vec<CpuTimes>, u64) {
    let mut cpus = Vec::new();
    let mut btime = 0;
    for l in text.lines() {
        let mut f = l.split_whitespace();
        let Some(name) = f.next() else { continue };
        if name == "btime" {
            btime = f.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            continue;
        }
        if !name.starts_with("cpu") {
            continue;
        }
        let v: Vec<u64> = f.map(|x| x.parse().unwrap_or(0)).collect();
        let at = |i: usize| v.get(i).copied().unwrap_or(0);
        cpus.push(CpuTimes {
            name: if name == "cpu" {
                "cpu-total".into()
            } else {
                name.into()
            },
            user: at(0),
            nice: at(1),
            system: at(2),
            idle: at(3),
            iowait: at(4),
            irq: at(5),
            softirq: at(6),
            steal: at(7),
            guest: at(8),
            guest_nice: at(9),
        });
    }
    (cpus, btime)
}

/// The counters of /proc/stat besides the cpu lines, as node_exporter's stat collector
/// reads them (a line the kernel does not have stays `None`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatCounters {
    /// `intr`: the total of interrupts serviced (its first number).
    pub intr: Option<u64>,
    pub ctxt: Option<u64>,
    /// `processes`: forks since boot.
    pub processes: Option<u64>,
    pub procs_running: Option<u64>,
    pub procs_blocked: Option<u64>,
}

pub fn parse_stat_counters(text: &str) -> StatCounters {
    let mut out = StatCounters::default();
    for l in text.lines() {
        let mut f = l.split_whitespace();
        let (Some(name), Some(v)) = (f.next(), f.next().and_then(|v| v.parse().ok())) else {
            continue;
        };
        match name {
            "intr" => out.intr = Some(v),
            "ctxt" => out.ctxt = Some(v),
            "processes" => out.processes = Some(v),
            "procs_running" => out.procs_running = Some(v),
            "procs_blocked" => out.procs_blocked = Some(v),
            _ => {}
        }
    }
    out
}

/// The /proc/vmstat fields node_exporter's vmstat collector exports by default (its
/// `--collector.vmstat.fields` default, `^(oom_kill|pgpg|pswp|pg.*fault).*`).
pub fn parse_vmstat(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            let wanted = k.starts_with("oom_kill")
                || k.starts_with("pgpg")
                || k.starts_with("pswp")
                || (k.starts_with("pg") && k[2..].contains("fault"));
            wanted.then(|| Some((k.to_string(), v.trim().parse().ok()?)))?
        })
        .collect()
}

/// /proc/meminfo as (key, bytes).
pub fn parse_meminfo(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|l| {
            let (k, rest) = l.split_once(':')?;
            let mut f = rest.split_whitespace();
            let v: u64 = f.next()?.parse().ok()?;
            let mul = if f.next() == Some("kB") { 1024 } else { 1 };
            Some((k.to_string(), v * mul))
        })
        .collect()
}

/// One block device line of /proc/diskstats.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DiskIo {
    pub name: String,
    pub reads: u64,
    pub merged_reads: u64,
    pub read_bytes: u64,
    pub read_time: u64,
    pub writes: u64,
    pub merged_writes: u64,
    pub write_bytes: u64,
    pub write_time: u64,
    pub iops_in_progress: u64,
    pub io_time: u64,
    pub weighted_io_time: u64,
    /// Discards completed, merged, sectors, ms (kernels since 4.18; absent before).
    pub discards: Option<[u64; 4]>,
    /// Flush requests completed, ms (kernels since 5.5).
    pub flushes: Option<[u64; 2]>,
}

/// /proc/diskstats without loop, ram and device-mapper-less partitions of no activity.
pub fn parse_diskstats(text: &str) -> Vec<DiskIo> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 14 {
                return None;
            }
            let name = f[2];
            if name.starts_with("loop") || name.starts_with("ram") {
                return None;
            }
            let n = |i: usize| f[i].parse::<u64>().unwrap_or(0);
            Some(DiskIo {
                name: name.to_string(),
                reads: n(3),
                merged_reads: n(4),
                read_bytes: n(5) * 512,
                read_time: n(6),
                writes: n(7),
                merged_writes: n(8),
                write_bytes: n(9) * 512,
                write_time: n(10),
                iops_in_progress: n(11),
                io_time: n(12),
                weighted_io_time: n(13),
                discards: (f.len() >= 18).then(|| [n(14), n(15), n(16), n(17)]),
                flushes: (f.len() >= 20).then(|| [n(18), n(19)]),
            })
        })
        .collect()
}

/// A mounted file system worth reporting (Telegraf's `disk` input skips these types).
const SKIPPED_FS: &[&str] = &[
    "tmpfs",
    "devtmpfs",
    "devfs",
    "iso9660",
    "overlay",
    "aufs",
    "squashfs",
    "proc",
    "sysfs",
    "cgroup",
    "cgroup2",
    "mqueue",
    "devpts",
    "securityfs",
    "pstore",
    "debugfs",
    "tracefs",
    "configfs",
    "fusectl",
    "hugetlbfs",
    "bpf",
    "autofs",
    "binfmt_misc",
    "nsfs",
    "rpc_pipefs",
    "ramfs",
    "efivarfs",
    "fuse.lxcfs",
    "shm",
    "nfsd",
];

#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    pub device: String,
    pub path: String,
    pub fstype: String,
    pub mode: &'static str,
}

/// /proc/self/mounts, without pseudo and container file systems, one entry per path.
pub fn parse_mounts(text: &str) -> Vec<Mount> {
    let mut out: Vec<Mount> = Vec::new();
    for l in text.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 4 || SKIPPED_FS.contains(&f[2]) {
            continue;
        }
        // Docker's per-container bind mounts of /etc/hosts and friends are noise.
        let path = crate::mountinfo::unescape(f[1]);
        if path.starts_with("/var/lib/docker/") || path.starts_with("/run/docker/") {
            continue;
        }
        if out.iter().any(|m| m.path == path) {
            continue;
        }
        out.push(Mount {
            device: f[0].trim_start_matches("/dev/").to_string(),
            path,
            fstype: f[2].to_string(),
            mode: if f[3].split(',').any(|o| o == "ro") {
                "ro"
            } else {
                "rw"
            },
        });
    }
    out
}

/// Sizes of a mounted file system in bytes, "free" being what an unprivileged user may still
/// write (as `df` and Telegraf report).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DiskUsage {
    pub total: u64,
    pub free: u64,
    pub used: u64,
    pub inodes_total: u64,
    pub inodes_free: u64,
    /// Free space root may use too (`f_bfree`; `free` is `f_bavail`, Telegraf's `free`).
    pub free_root: u64,
    pub readonly: bool,
}

pub fn disk_usage(path: &str) -> Option<DiskUsage> {
    let s = nix::sys::statvfs::statvfs(Path::new(path)).ok()?;
    let frag = s.fragment_size();
    let total = s.blocks() * frag;
    let free = s.blocks_available() * frag;
    let used = (s.blocks() - s.blocks_free()) * frag;
    Some(DiskUsage {
        total,
        free,
        used,
        inodes_total: s.files(),
        inodes_free: s.files_free(),
        free_root: s.blocks_free() * frag,
        readonly: s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY),
    })
}

/// Everything read from /proc for one host sample.
#[derive(Debug, Clone, Default)]
pub struct HostSample {
    pub cpus: Vec<CpuTimes>,
    pub boot_time_s: u64,
    pub mem: Vec<(String, u64)>,
    pub load: [f64; 3],
    pub uptime_s: u64,
    pub net: Vec<NetDev>,
    pub disks: Vec<DiskIo>,
    pub mounts: Vec<Mount>,
    /// The uname(2) fields, as node_exporter's `node_uname_info` labels them.
    pub uname: Option<Uname>,
    pub stat: StatCounters,
    /// /proc/vmstat, node_exporter's default fields.
    pub vmstat: Vec<(String, u64)>,
    /// The rest node_exporter's default collectors and Telegraf's host inputs read.
    pub node: super::node::NodeSample,
    /// Sensors, thermal zones, power supplies, CPU frequencies, scheduler statistics.
    pub hw: super::sysclass::Families,
    pub machine: MachineIds,
}

/// What cAdvisor labels its machine figures with.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MachineIds {
    pub boot_id: String,
    pub machine_id: String,
    pub system_uuid: String,
}

impl MachineIds {
    /// Read once per process: none of them changes while the agent runs.
    pub fn read() -> MachineIds {
        static IDS: std::sync::OnceLock<MachineIds> = std::sync::OnceLock::new();
        IDS.get_or_init(|| {
            let r = |p: &str| {
                std::fs::read_to_string(p)
                    .map(|s| s.trim().to_string())
                    .unwrap_or_default()
            };
            MachineIds {
                boot_id: r("/proc/sys/kernel/random/boot_id"),
                machine_id: r("/etc/machine-id"),
                system_uuid: r("/sys/class/dmi/id/product_uuid"),
            }
        })
        .clone()
    }
}

/// uname(2): `sysname`, `nodename`, `release`, `version`, `machine`, and the NIS
/// `domainname` (`(none)` when unset, as the kernel says).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Uname {
    pub sysname: String,
    pub nodename: String,
    pub release: String,
    pub version: String,
    pub machine: String,
    pub domainname: String,
}

impl Uname {
    pub fn read() -> Option<Uname> {
        let u = nix::sys::utsname::uname().ok()?;
        let s = |v: &std::ffi::OsStr| v.to_string_lossy().into_owned();
        Some(Uname {
            sysname: s(u.sysname()),
            nodename: s(u.nodename()),
            release: s(u.release()),
            version: s(u.version()),
            machine: s(u.machine()),
            domainname: s(u.domainname()),
        })
    }
}

/// What reads keep between cycles (the collector owns it): pseudo-files kept open (host
/// files, every process's stat, and the containers' cgroup and net files), the interface
/// attributes netlink lacks, and the mount table until the kernel says it changed.
pub struct HostCache {
    pub files: super::procfile::Kept,
    pub netclass: super::node::NetClassCache,
    pub mounts: MountTable,
}

impl Default for HostCache {
    fn default() -> Self {
        HostCache {
            files: super::procfile::Kept::new(super::procfile::fd_budget()),
            netclass: Default::default(),
            mounts: Default::default(),
        }
    }
}

/// /proc/self/mounts, parsed again only when a mount or unmount happened since: the file
/// is kept open and polled (the kernel marks it POLLPRI on every change of the mount
/// namespace, see proc(5)), where reading and parsing it costs ~1.5 ms with 200 mounts.
#[derive(Debug, Default)]
pub struct MountTable {
    file: Option<std::fs::File>,
    mounts: Vec<Mount>,
}

impl MountTable {
    /// The mounts now (filtered as [`parse_mounts`] does).
    pub fn read(&mut self) -> Vec<Mount> {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        use std::os::fd::AsFd;
        let unchanged = self.file.as_ref().is_some_and(|f| {
            let mut fds = [PollFd::new(f.as_fd(), PollFlags::POLLPRI)];
            matches!(poll(&mut fds, PollTimeout::ZERO), Ok(0))
        });
        if unchanged {
            return self.mounts.clone();
        }
        // Opened before it is read: a change from here on shows at the next poll.
        if self.file.is_none() {
            self.file = std::fs::File::open("/proc/self/mounts").ok();
        }
        let text = self
            .file
            .as_ref()
            .and_then(super::procfile::read_file_once)
            .unwrap_or_default();
        self.mounts = parse_mounts(&text);
        self.mounts.clone()
    }
}

impl HostSample {
    pub fn read(cache: &mut HostCache) -> HostSample {
        let files = &mut cache.files;
        // These four are one record each (single_open): a short read is their end.
        let mut r = |p: &str| {
            match matches!(
                p,
                "/proc/stat" | "/proc/meminfo" | "/proc/loadavg" | "/proc/uptime"
            ) {
                true => files.read_single(Path::new(p)),
                false => files.read(Path::new(p)),
            }
            .unwrap_or_default()
        };
        let stat = r("/proc/stat");
        let (cpus, boot_time_s) = parse_proc_stat(&stat);
        let lv: Vec<f64> = r("/proc/loadavg")
            .split_whitespace()
            .take(3)
            .map(|v| v.parse().unwrap_or(0.0))
            .collect();
        HostSample {
            cpus,
            boot_time_s,
            mem: parse_meminfo(&r("/proc/meminfo")),
            load: [
                lv.first().copied().unwrap_or(0.0),
                lv.get(1).copied().unwrap_or(0.0),
                lv.get(2).copied().unwrap_or(0.0),
            ],
            uptime_s: r("/proc/uptime")
                .split('.')
                .next()
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0),
            net: parse_net_dev(&r("/proc/net/dev")),
            disks: parse_diskstats(&r("/proc/diskstats")),
            vmstat: parse_vmstat(&r("/proc/vmstat")),
            mounts: cache.mounts.read(),
            uname: Uname::read(),
            stat: parse_stat_counters(&stat),
            node: super::node::NodeSample::read(&mut cache.netclass, &mut cache.files),
            hw: super::sysclass::read(std::path::Path::new("/sys"), std::path::Path::new("/proc")),
            machine: MachineIds::read(),
        }
    }

    pub fn mem(&self, key: &str) -> u64 {
        self.mem
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| *v)
            .unwrap_or(0)
    }

    /// Number of CPUs (per-cpu lines, without the aggregate).
    pub fn n_cpus(&self) -> usize {
        self.cpus.len().saturating_sub(1).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mount_table_is_parsed_again_only_after_a_mount_or_unmount() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIPPED the_mount_table_is_parsed_again...: mounting needs root");
            return;
        }
        // Under target/: a disk file system (a tmpfs /tmp would be filtered out).
        let dir =
            tempfile::tempdir_in(concat!(env!("CARGO_MANIFEST_DIR"), "/target")).expect("tempdir");
        let at = dir.path().to_string_lossy().into_owned();
        let mut t = MountTable::default();
        let before = t.read();
        assert!(!before.iter().any(|m| m.path == at));
        // Nothing changed: the cached table, without reading the file.
        assert!(t.file.is_some());
        assert_eq!(t.read(), before);
        // The directory bound onto itself: a new mount of the same file system.
        nix::mount::mount(
            Some(dir.path()),
            dir.path(),
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .expect("bind mount");
        let mounted = t.read();
        let found = mounted.iter().find(|m| m.path == at).cloned();
        nix::mount::umount(dir.path()).expect("umount");
        assert!(found.is_some(), "mount seen: {mounted:?}");
        assert!(!t.read().iter().any(|m| m.path == at), "unmount seen");
    }

    #[test]
    fn parses_proc_files() {
        let (cpus, btime) = parse_proc_stat(
            "cpu  10 1 5 100 2 0 1 0 0 0\ncpu0 5 0 2 50 1 0 0 0 0 0\nintr 1\nbtime 1700000000\n",
        );
        assert_eq!(cpus.len(), 2);
        assert_eq!(cpus[0].name, "cpu-total");
        assert_eq!(cpus[0].total(), 119);
        assert_eq!(btime, 1_700_000_000);
        let mem = parse_meminfo("MemTotal:       16384 kB\nHugePages_Total:       0\n");
        assert_eq!(mem[0], ("MemTotal".into(), 16384 * 1024));
        assert_eq!(mem[1].1, 0);
        let d = parse_diskstats(
            "   8       0 sda 100 5 2000 30 50 2 800 40 0 60 70 0 0 0 0\n   7       0 loop0 1 0 2 0 0 0 0 0 0 0 0\n",
        );
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].read_bytes, 2000 * 512);
        let m = parse_mounts(
            "/dev/sda1 / ext4 rw,relatime 0 0\ntmpfs /run tmpfs rw 0 0\noverlay /var/lib/docker/overlay2/x/merged overlay rw 0 0\n/dev/sdb1 /mnt/my\\040disk xfs ro 0 0\n",
        );
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].path, "/mnt/my disk");
        assert_eq!(m[1].mode, "ro");
    }

    #[test]
    fn stat_counters_and_vmstat_as_node_exporter_reads_them() {
        let stat = "cpu  1 2 3 4\nintr 12345 0 7 0\nctxt 999\nbtime 1700000000\nprocesses 4242\nprocs_running 3\nprocs_blocked 1\n";
        assert_eq!(
            parse_stat_counters(stat),
            StatCounters {
                intr: Some(12345),
                ctxt: Some(999),
                processes: Some(4242),
                procs_running: Some(3),
                procs_blocked: Some(1),
            }
        );
        assert_eq!(parse_stat_counters("cpu 1 2\n"), StatCounters::default());
        let vmstat = "nr_free_pages 100\npgpgin 10\npgpgout 20\npswpin 1\npswpout 2\npgfault 300\npgmajfault 4\npgfree 50\noom_kill 0\nthp_fault_alloc 9\n";
        let names: Vec<String> = parse_vmstat(vmstat).into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            names,
            [
                "pgpgin",
                "pgpgout",
                "pswpin",
                "pswpout",
                "pgfault",
                "pgmajfault",
                "oom_kill"
            ]
        );
    }
}
