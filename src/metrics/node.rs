//! The host figures node_exporter's default collectors (and Telegraf's kernel, processes,
//! swap, system and netstat inputs) read beyond cpu, memory, disks and load: pressure,
//! netstat/snmp, sockstat, softnet, file descriptors, entropy, conntrack, ARP, UDP queues,
//! the kernel clock (adjtimex), interface classes, process states, TCP states and logged-in
//! users. Each file has a pure parser; [`NodeSample::read`] reads them all. A file the kernel
//! does not have leaves its figures out (`None` or empty), as the reference exporters do.

use super::procfile::Kept;
use std::collections::{BTreeMap, HashMap};

/// node_exporter's netstat collector's default field filter
/// (`^(.*_(InErrors|InErrs)|Ip_Forwarding|Ip(6|Ext)_(InOctets|OutOctets)|Icmp6?_(InMsgs|OutMsgs)|TcpExt_(Listen.*|Syncookies.*|TCPSynRetrans|TCPTimeouts|TCPOFOQueue|TCPRcvQDrop)|Tcp_(ActiveOpens|InSegs|OutSegs|OutRsts|PassiveOpens|RetransSegs|CurrEstab)|Udp6?_(InDatagrams|OutDatagrams|NoPorts|RcvbufErrors|SndbufErrors))$`),
/// plus `Tcp_MaxConn`, which Node Exporter Full draws beside `CurrEstab` (its panel is empty
/// with a default node_exporter; one constant series more costs nothing).
pub fn netstat_default_field(key: &str) -> bool {
    let Some((proto, name)) = key.split_once('_') else {
        return false;
    };
    if name.ends_with("InErrors") || name.ends_with("InErrs") {
        return true;
    }
    match proto {
        "Ip" => name == "Forwarding",
        "Ip6" | "IpExt" => matches!(name, "InOctets" | "OutOctets"),
        "Icmp" | "Icmp6" => matches!(name, "InMsgs" | "OutMsgs"),
        "TcpExt" => {
            name.starts_with("Listen")
                || name.starts_with("Syncookies")
                || matches!(
                    name,
                    "TCPSynRetrans" | "TCPTimeouts" | "TCPOFOQueue" | "TCPRcvQDrop"
                )
        }
        "Tcp" => matches!(
            name,
            "ActiveOpens"
                | "MaxConn"
                | "InSegs"
                | "OutSegs"
                | "OutRsts"
                | "PassiveOpens"
                | "RetransSegs"
                | "CurrEstab"
        ),
        "Udp" | "Udp6" => matches!(
            name,
            "InDatagrams" | "OutDatagrams" | "NoPorts" | "RcvbufErrors" | "SndbufErrors"
        ),
        _ => false,
    }
}

/// /proc/net/netstat and /proc/net/snmp: pairs of lines, `Proto: names...` then
/// `Proto: values...`. Returns (protocol, field, value) in file order.
pub fn parse_netstat(text: &str) -> Vec<(String, String, f64)> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        let (Some((p1, names)), Some((p2, values))) =
            (names.split_once(':'), values.split_once(':'))
        else {
            continue;
        };
        if p1 != p2 {
            continue;
        }
        let names: Vec<&str> = names.split_whitespace().collect();
        let values: Vec<&str> = values.split_whitespace().collect();
        if names.len() != values.len() {
            continue;
        }
        for (n, v) in names.iter().zip(values) {
            if let Ok(v) = v.parse::<f64>() {
                out.push((p1.to_string(), n.to_string(), v));
            }
        }
    }
    out
}

/// /proc/net/snmp6: `Ip6InReceives  123` per line -> ("Ip6", "InReceives", 123).
pub fn parse_snmp6(text: &str) -> Vec<(String, String, f64)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (key, v) = (f.next()?, f.next()?.parse::<f64>().ok()?);
            let split = ["Ip6", "Icmp6", "UdpLite6", "Udp6"]
                .iter()
                .find(|p| key.starts_with(*p))?;
            Some((split.to_string(), key[split.len()..].to_string(), v))
        })
        .collect()
}

/// /proc/net/sockstat (and sockstat6): `TCP: inuse 1 orphan 0 ...` -> `TCP_inuse` ...;
/// `sockets: used N` -> `sockets_used`; each `mem` (pages) also as `mem_bytes`.
pub fn parse_sockstat(text: &str, page_size: u64) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for l in text.lines() {
        let Some((proto, rest)) = l.split_once(':') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        for pair in f.chunks(2) {
            let [name, v] = pair else { continue };
            let Ok(v) = v.parse::<f64>() else { continue };
            out.push((format!("{proto}_{name}"), v));
            if *name == "mem" {
                out.push((format!("{proto}_mem_bytes"), v * page_size as f64));
            }
        }
    }
    out
}

/// One CPU's row of /proc/net/softnet_stat.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Softnet {
    pub cpu: u32,
    pub processed: u64,
    pub dropped: u64,
    pub time_squeezed: u64,
    pub cpu_collision: u64,
    pub received_rps: u64,
    pub flow_limit_count: u64,
    /// Column 12, kernels since 5.10.
    pub backlog_len: Option<u64>,
}

/// /proc/net/softnet_stat (hex columns). The CPU is column 13 where the kernel writes it,
/// else the row's index.
pub fn parse_softnet(text: &str) -> Vec<Softnet> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let v: Vec<u64> = l
                .split_whitespace()
                .map(|x| u64::from_str_radix(x, 16).unwrap_or(0))
                .collect();
            if v.len() < 11 {
                return None;
            }
            Some(Softnet {
                cpu: v.get(12).map(|c| *c as u32).unwrap_or(i as u32),
                processed: v[0],
                dropped: v[1],
                time_squeezed: v[2],
                cpu_collision: v[8],
                received_rps: v[9],
                flow_limit_count: v[10],
                backlog_len: v.get(11).copied(),
            })
        })
        .collect()
}

/// /proc/pressure/{cpu,io,memory,irq}: the `total=` microseconds of the `some` and `full`
/// lines.
pub fn parse_pressure(text: &str) -> (Option<u64>, Option<u64>) {
    let mut some = None;
    let mut full = None;
    for l in text.lines() {
        let total = l
            .split_whitespace()
            .find_map(|f| f.strip_prefix("total="))
            .and_then(|v| v.parse().ok());
        if l.starts_with("some ") {
            some = total;
        } else if l.starts_with("full ") {
            full = total;
        }
    }
    (some, full)
}

/// /proc/net/arp -> entries per device.
pub fn parse_arp(text: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for l in text.lines().skip(1) {
        if let Some(dev) = l.split_whitespace().nth(5) {
            *out.entry(dev.to_string()).or_insert(0) += 1;
        }
    }
    out
}

/// /proc/net/udp{,6}: the summed tx and rx queue lengths (hex `tx:rx` in column 5).
pub fn parse_udp_queues(text: &str) -> (u64, u64) {
    let (mut tx, mut rx) = (0, 0);
    for l in text.lines().skip(1) {
        if let Some((t, r)) = l.split_whitespace().nth(4).and_then(|q| q.split_once(':')) {
            tx += u64::from_str_radix(t, 16).unwrap_or(0);
            rx += u64::from_str_radix(r, 16).unwrap_or(0);
        }
    }
    (tx, rx)
}

/// TCP connection states of /proc/net/tcp{,6} (hex `st` column) counted as Telegraf's netstat
/// input names them, plus the number of UDP sockets.
pub fn tcp_state_name(st: u8) -> &'static str {
    match st {
        1 => "tcp_established",
        2 => "tcp_syn_sent",
        3 => "tcp_syn_recv",
        4 => "tcp_fin_wait1",
        5 => "tcp_fin_wait2",
        6 => "tcp_time_wait",
        7 => "tcp_close",
        8 => "tcp_close_wait",
        9 => "tcp_last_ack",
        10 => "tcp_listen",
        11 => "tcp_closing",
        _ => "tcp_none",
    }
}

pub const TCP_STATES: [&str; 12] = [
    "tcp_established",
    "tcp_syn_sent",
    "tcp_syn_recv",
    "tcp_fin_wait1",
    "tcp_fin_wait2",
    "tcp_time_wait",
    "tcp_close",
    "tcp_close_wait",
    "tcp_last_ack",
    "tcp_listen",
    "tcp_closing",
    "tcp_none",
];

pub fn count_tcp_states(text: &str, into: &mut BTreeMap<&'static str, u64>) {
    for l in text.lines().skip(1) {
        if let Some(st) = l
            .split_whitespace()
            .nth(3)
            .and_then(|s| u8::from_str_radix(s, 16).ok())
        {
            *into.entry(tcp_state_name(st)).or_insert(0) += 1;
        }
    }
}

/// Sockets by state name, and the bytes in all their (tx, rx) queues.
pub type TcpCounts = (BTreeMap<&'static str, u64>, (u64, u64));

/// Sockets by TCP state and the bytes in their (tx, rx) queues from a netlink dump, as
/// node_exporter's tcpstat collector reads them. The kernel walks its established-socket hash
/// (sized by memory, not by sockets) once per dump, so the IPv4 and IPv6 sockets come from one
/// dump: the compatibility request (`TCPDIAG_GETSOCK`, kept since Linux 3.3) dumps both
/// families where `SOCK_DIAG_BY_FAMILY` needs one walk per family, which is the fallback.
/// `/proc/net/tcp*` walks the hash twice with more work per bucket (13 ms a cycle with 100
/// containers). None when netlink is unavailable: read the files then.
pub fn tcp_states_netlink() -> Option<TcpCounts> {
    use super::netlink::{DumpError, dump};
    use nix::sys::socket::SockProtocol::NetlinkSockDiag;
    const TCPDIAG_GETSOCK: u16 = 18;
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    let mut counts: TcpCounts = (BTreeMap::new(), (0, 0));
    // inet_diag_msg: family, state, timer, retrans, id (48), expires, rqueue, wqueue, uid,
    // inode.
    fn count(m: &[u8], (states, queued): &mut TcpCounts) {
        if let (Some(&state), Some(rq), Some(wq)) = (m.get(1), m.get(56..60), m.get(60..64)) {
            *states.entry(tcp_state_name(state)).or_insert(0) += 1;
            queued.1 += u64::from(u32::from_ne_bytes(rq.try_into().unwrap_or_default()));
            queued.0 += u64::from(u32::from_ne_bytes(wq.try_into().unwrap_or_default()));
        }
    }
    // inet_diag_req: family (ignored: both), src/dst len, ext, id (48), states, dbs.
    let mut req: Vec<u8> = Vec::with_capacity(60);
    req.extend([0u8; 4]);
    req.extend([0u8; 48]);
    req.extend(0xfffu32.to_ne_bytes());
    req.extend(0u32.to_ne_bytes());
    if dump(NetlinkSockDiag, TCPDIAG_GETSOCK, &req, |_, m| {
        count(m, &mut counts)
    })
    .is_ok()
    {
        return Some(counts);
    }
    counts = (BTreeMap::new(), (0, 0));
    for family in [nix::libc::AF_INET as u8, nix::libc::AF_INET6 as u8] {
        // inet_diag_req_v2: family, IPPROTO_TCP, no extensions, every state, any socket.
        let mut req: Vec<u8> = Vec::with_capacity(56);
        req.extend([family, nix::libc::IPPROTO_TCP as u8, 0, 0]);
        req.extend(0xfffu32.to_ne_bytes());
        req.extend([0u8; 48]);
        match dump(NetlinkSockDiag, SOCK_DIAG_BY_FAMILY, &req, |_, m| {
            count(m, &mut counts)
        }) {
            Ok(()) => {}
            // No IPv6 on this host: no IPv6 sockets. Any other failure: use the files.
            Err(DumpError::Kernel(_)) if family == nix::libc::AF_INET6 as u8 => {}
            Err(_) => return None,
        }
    }
    Some(counts)
}

/// Process states as Telegraf's processes input counts them from /proc/PID/stat.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcStates {
    pub running: u64,
    pub sleeping: u64,
    pub blocked: u64,
    pub zombies: u64,
    pub dead: u64,
    pub stopped: u64,
    pub paging: u64,
    pub idle: u64,
    pub parked: u64,
    pub unknown: u64,
    pub total: u64,
    pub total_threads: u64,
}

impl ProcStates {
    /// Every process's state from its /proc/PID/stat (kept open in `files`: ~8 µs a process
    /// where open, read and close cost ~20 µs).
    pub fn read(files: &mut Kept) -> ProcStates {
        let mut procs = ProcStates::default();
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return procs;
        };
        let mut path = String::with_capacity(32);
        for e in dir.flatten() {
            let name = e.file_name();
            let Some(pid) = name.to_str() else { continue };
            if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            path.clear();
            path.push_str("/proc/");
            path.push_str(pid);
            path.push_str("/stat");
            // A process that exited since the listing is not counted.
            if let Some(stat) = files.read_single(std::path::Path::new(&path)) {
                procs.add(&stat);
            }
        }
        procs
    }

    /// Adds one /proc/PID/stat (state after the command's closing parenthesis, threads in
    /// field 20).
    pub fn add(&mut self, stat: &str) {
        let Some(at) = stat.rfind(')') else { return };
        let mut f = stat[at + 1..].split_whitespace();
        let Some(state) = f.next().and_then(|s| s.chars().next()) else {
            return;
        };
        match state {
            'R' => self.running += 1,
            'S' => self.sleeping += 1,
            'D' => self.blocked += 1,
            'Z' => self.zombies += 1,
            'X' => self.dead += 1,
            'T' | 't' => self.stopped += 1,
            'W' => self.paging += 1,
            'I' => self.idle += 1,
            'P' => self.parked += 1,
            _ => self.unknown += 1,
        }
        self.total += 1;
        // Field 20 (num_threads): 17 after the state.
        self.total_threads += f.nth(16).and_then(|t| t.parse().ok()).unwrap_or(0);
    }
}

/// utmp records of type USER_PROCESS (7): the logged-in users `who` lists.
pub fn count_utmp_users(bytes: &[u8]) -> u64 {
    const RECORD: usize = 384;
    bytes
        .chunks_exact(RECORD)
        .filter(|r| i16::from_ne_bytes([r[0], r[1]]) == 7)
        .count() as u64
}

/// adjtimex(2) as node_exporter's timex collector reports it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timex {
    pub sync_status: f64,
    pub offset_seconds: f64,
    pub frequency_adjustment_ratio: f64,
    pub maxerror_seconds: f64,
    pub estimated_error_seconds: f64,
    pub status: f64,
    pub loop_time_constant: f64,
    pub tick_seconds: f64,
    pub pps_frequency_hertz: f64,
    pub pps_jitter_seconds: f64,
    pub pps_shift_seconds: f64,
    pub pps_stability_hertz: f64,
    pub pps_jitter_total: f64,
    pub pps_calibration_total: f64,
    pub pps_error_total: f64,
    pub pps_stability_exceeded_total: f64,
    pub tai_offset_seconds: f64,
}

impl Timex {
    pub fn read() -> Option<Timex> {
        // SAFETY: adjtimex with modes = 0 only reads the kernel's clock state into `t`, a
        // plain C struct for which all-zero bytes are a valid value.
        let mut t: nix::libc::timex = unsafe { std::mem::zeroed() };
        let state = unsafe { nix::libc::adjtimex(&mut t) };
        if state == -1 {
            return None;
        }
        const PPM16: f64 = 1_000_000.0 * 65536.0;
        const STA_NANO: i32 = 0x2000;
        let div = if t.status & STA_NANO != 0 { 1e9 } else { 1e6 };
        Some(Timex {
            sync_status: if state == nix::libc::TIME_ERROR {
                0.0
            } else {
                1.0
            },
            offset_seconds: t.offset as f64 / div,
            frequency_adjustment_ratio: 1.0 + t.freq as f64 / PPM16,
            maxerror_seconds: t.maxerror as f64 / 1e6,
            estimated_error_seconds: t.esterror as f64 / 1e6,
            status: t.status as f64,
            loop_time_constant: t.constant as f64,
            tick_seconds: t.tick as f64 / 1e6,
            pps_frequency_hertz: t.ppsfreq as f64 / PPM16,
            pps_jitter_seconds: t.jitter as f64 / div,
            pps_shift_seconds: t.shift as f64,
            pps_stability_hertz: t.stabil as f64 / PPM16,
            pps_jitter_total: t.jitcnt as f64,
            pps_calibration_total: t.calcnt as f64,
            pps_error_total: t.errcnt as f64,
            pps_stability_exceeded_total: t.stbcnt as f64,
            tai_offset_seconds: t.tai as f64,
        })
    }
}

/// /sys/class/net/IFACE as node_exporter's netclass collector reads it (the figures used by
/// dashboards).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetClass {
    pub device: String,
    pub carrier: Option<u64>,
    pub mtu: Option<u64>,
    /// Mbit/s; absent when the driver reports none (-1).
    pub speed_mbps: Option<u64>,
    pub operstate: String,
    pub rx_nohandler: Option<u64>,
    /// `address`, `broadcast`, `duplex`, `ifalias` as sysfs has them ("" when unreadable).
    pub address: String,
    pub broadcast: String,
    pub duplex: String,
    pub ifalias: String,
    /// `flags` (IFF_UP is bit 0: node_exporter's `adminstate`).
    pub flags: Option<u64>,
}

impl NetClass {
    /// `up` when IFF_UP is set, `down` when not, `unknown` without flags (node_exporter).
    pub fn adminstate(&self) -> &'static str {
        match self.flags {
            Some(f) if f & 1 == 1 => "up",
            Some(_) => "down",
            None => "unknown",
        }
    }
}

/// The sysfs attributes netlink does not carry as sysfs shows them: `flags` (dev->flags,
/// where netlink adds IFF_RUNNING and IFF_LOWER_UP and drops a bridge port's IFF_PROMISC),
/// `speed` and `duplex` (ethtool). Kept per interface and read again only when the link
/// changed (its name, netlink flags or carrier changes) or after [`NetClassCache::REFRESH`].
#[derive(Debug, Default)]
pub struct NetClassCache {
    by_index: HashMap<i32, CachedAttrs>,
}

#[derive(Debug)]
struct CachedAttrs {
    key: (String, u32, Option<u32>),
    flags: Option<u64>,
    speed_mbps: Option<u64>,
    duplex: String,
    at: std::time::Instant,
}

impl NetClassCache {
    pub const REFRESH: std::time::Duration = std::time::Duration::from_secs(60);
}

fn sys_text(base: &std::path::Path, f: &str) -> String {
    std::fs::read_to_string(base.join(f))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn sys_num(base: &std::path::Path, f: &str) -> Option<u64> {
    sys_text(base, f).parse().ok()
}

fn sys_flags(base: &std::path::Path) -> Option<u64> {
    u64::from_str_radix(sys_text(base, "flags").trim_start_matches("0x"), 16).ok()
}

impl NetClass {
    /// Every interface of this namespace: one `RTM_GETLINK` dump, plus the three sysfs
    /// attributes netlink lacks from `cache` (read for a new or changed link). Without
    /// netlink, every attribute from sysfs.
    pub fn read_all(cache: &mut NetClassCache) -> Vec<NetClass> {
        let Ok(links) = super::netlink::links() else {
            return NetClass::read_all_sysfs();
        };
        let mut seen = HashMap::with_capacity(links.len());
        let mut out: Vec<NetClass> = links
            .into_iter()
            .map(|l| {
                let key = (l.name.clone(), l.flags, l.carrier_changes);
                let attrs = match cache.by_index.remove(&l.index) {
                    Some(c) if c.key == key && c.at.elapsed() < NetClassCache::REFRESH => c,
                    _ => {
                        let base = std::path::Path::new("/sys/class/net").join(&l.name);
                        CachedAttrs {
                            key,
                            flags: sys_flags(&base),
                            speed_mbps: sys_num(&base, "speed"),
                            duplex: sys_text(&base, "duplex"),
                            at: std::time::Instant::now(),
                        }
                    }
                };
                let up = l.flags & nix::libc::IFF_UP as u32 != 0;
                let c = NetClass {
                    // sysfs refuses `carrier` on an interface that is not up.
                    carrier: l.carrier.filter(|_| up).map(u64::from),
                    mtu: l.mtu.map(u64::from),
                    speed_mbps: attrs.speed_mbps,
                    operstate: super::netlink::operstate_name(l.operstate).to_string(),
                    rx_nohandler: l.rx_nohandler,
                    address: l.address,
                    broadcast: l.broadcast,
                    duplex: attrs.duplex.clone(),
                    ifalias: l.ifalias,
                    flags: attrs.flags,
                    device: l.name,
                };
                seen.insert(l.index, attrs);
                c
            })
            .collect();
        // Interfaces that went away are forgotten.
        cache.by_index = seen;
        out.sort_by(|a, b| a.device.cmp(&b.device));
        out
    }

    /// Every attribute from /sys/class/net (where netlink is unavailable).
    pub fn read_all_sysfs() -> Vec<NetClass> {
        let Ok(dir) = std::fs::read_dir("/sys/class/net") else {
            return Vec::new();
        };
        let mut out: Vec<NetClass> = dir
            .flatten()
            .map(|e| {
                let base = e.path();
                NetClass {
                    carrier: sys_num(&base, "carrier"),
                    mtu: sys_num(&base, "mtu"),
                    // -1 (no speed) does not parse as u64: absent.
                    speed_mbps: sys_num(&base, "speed"),
                    operstate: sys_text(&base, "operstate"),
                    address: sys_text(&base, "address"),
                    broadcast: sys_text(&base, "broadcast"),
                    duplex: sys_text(&base, "duplex"),
                    ifalias: sys_text(&base, "ifalias"),
                    flags: sys_flags(&base),
                    rx_nohandler: sys_num(&base, "statistics/rx_nohandler"),
                    device: e.file_name().to_string_lossy().into_owned(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.device.cmp(&b.device));
        out
    }
}

/// The agent's own process (/proc/self), as the Prometheus clients' process collector
/// reports it (`process_*`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessSelf {
    pub cpu_seconds: f64,
    pub open_fds: u64,
    pub max_fds: Option<u64>,
    pub virtual_bytes: u64,
    /// None = unlimited (reported as -1, as the clients do).
    pub virtual_max_bytes: Option<u64>,
    pub resident_bytes: u64,
    pub start_time_seconds: f64,
}

/// /proc/PID/limits: the soft limit of `what` (`Max open files`), None when unlimited.
pub fn parse_limit(limits: &str, what: &str) -> Option<u64> {
    let rest = limits.lines().find_map(|l| l.strip_prefix(what))?;
    rest.split_whitespace().next()?.parse().ok()
}

impl ProcessSelf {
    pub fn read() -> Option<ProcessSelf> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let f: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
        // After the command: state is field 3, so field N is f[N - 3].
        let at = |n: usize| {
            f.get(n - 3)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let hz = super::cgroup::USER_HZ as f64;
        let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .map(|p| p as u64)
            .unwrap_or(4096);
        let btime = std::fs::read_to_string("/proc/stat")
            .ok()
            .map(|t| super::host::parse_proc_stat(&t).1)
            .unwrap_or(0);
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        Some(ProcessSelf {
            cpu_seconds: (at(14) + at(15)) as f64 / hz,
            open_fds: std::fs::read_dir("/proc/self/fd")
                .map(|d| d.count() as u64)
                .unwrap_or(0),
            max_fds: parse_limit(&limits, "Max open files"),
            virtual_bytes: at(23),
            virtual_max_bytes: parse_limit(&limits, "Max address space"),
            resident_bytes: at(24) * page,
            start_time_seconds: btime as f64 + at(22) as f64 / hz,
        })
    }
}

/// Everything this module reads, once per collection cycle.
#[derive(Debug, Clone, Default)]
pub struct NodeSample {
    /// resource -> (some, full) stall totals in microseconds.
    pub pressure: Vec<(&'static str, Option<u64>, Option<u64>)>,
    /// /proc/net/netstat + snmp + snmp6, (protocol, field, value).
    pub netstat: Vec<(String, String, f64)>,
    pub sockstat: Vec<(String, f64)>,
    pub softnet: Vec<Softnet>,
    /// /proc/sys/fs/file-nr: (allocated, maximum).
    pub filefd: Option<(u64, u64)>,
    /// (available bits, pool size bits).
    pub entropy: Option<(u64, Option<u64>)>,
    /// (entries, limit).
    pub conntrack: Option<(u64, u64)>,
    pub arp: BTreeMap<String, u64>,
    /// ("v4"|"v6", tx, rx).
    pub udp_queues: Vec<(&'static str, u64, u64)>,
    pub timex: Option<Timex>,
    pub netclass: Vec<NetClass>,
    pub procs: ProcStates,
    pub tcp_states: BTreeMap<&'static str, u64>,
    /// Bytes in all TCP sockets' (tx, rx) queues (node_exporter's tcpstat
    /// `tx_queued_bytes`/`rx_queued_bytes`).
    pub tcp_queued: (u64, u64),
    pub udp_sockets: u64,
    /// /proc/sys/kernel/hung_task_detect_count (kernels since 6.10).
    pub hung_tasks: Option<u64>,
    /// /proc/sys/kernel/pid_max and threads-max.
    pub pid_max: Option<u64>,
    pub threads_max: Option<u64>,
    /// Logged-in users (None without /var/run/utmp).
    pub users: Option<u64>,
}

fn num(text: Option<String>) -> Option<u64> {
    text?.trim().parse().ok()
}

impl NodeSample {
    pub fn read(netclass: &mut NetClassCache, files: &mut Kept) -> NodeSample {
        let procs = ProcStates::read(files);
        let mut read = |p: &str| files.read(std::path::Path::new(p));
        let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .map(|p| p as u64)
            .unwrap_or(4096);
        let mut netstat = Vec::new();
        for f in ["/proc/net/netstat", "/proc/net/snmp"] {
            netstat.extend(parse_netstat(&read(f).unwrap_or_default()));
        }
        netstat.extend(parse_snmp6(&read("/proc/net/snmp6").unwrap_or_default()));
        let mut sockstat = parse_sockstat(&read("/proc/net/sockstat").unwrap_or_default(), page);
        sockstat.extend(parse_sockstat(
            &read("/proc/net/sockstat6").unwrap_or_default(),
            page,
        ));
        let mut udp_queues = Vec::new();
        let mut udp_sockets = 0;
        for (file, ip) in [("/proc/net/udp", "v4"), ("/proc/net/udp6", "v6")] {
            if let Some(t) = read(file) {
                let (tx, rx) = parse_udp_queues(&t);
                udp_queues.push((ip, tx, rx));
                udp_sockets += t.lines().skip(1).filter(|l| !l.trim().is_empty()).count() as u64;
            }
        }
        let (tcp_states, tcp_queued) = tcp_states_netlink().unwrap_or_else(|| {
            let mut states = BTreeMap::new();
            let mut queued = (0, 0);
            for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
                let text = read(f).unwrap_or_default();
                count_tcp_states(&text, &mut states);
                // The same `tx_queue:rx_queue` column as the UDP tables.
                let (tx, rx) = parse_udp_queues(&text);
                queued.0 += tx;
                queued.1 += rx;
            }
            (states, queued)
        });
        NodeSample {
            pressure: ["cpu", "io", "memory", "irq"]
                .into_iter()
                .filter_map(|r| {
                    let (some, full) = parse_pressure(&read(&format!("/proc/pressure/{r}"))?);
                    Some((r, some, full))
                })
                .collect(),
            netstat,
            sockstat,
            softnet: parse_softnet(&read("/proc/net/softnet_stat").unwrap_or_default()),
            filefd: read("/proc/sys/fs/file-nr").and_then(|t| {
                let v: Vec<u64> = t
                    .split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect();
                Some((*v.first()?, *v.get(2)?))
            }),
            entropy: num(read("/proc/sys/kernel/random/entropy_avail"))
                .map(|a| (a, num(read("/proc/sys/kernel/random/poolsize")))),
            conntrack: num(read("/proc/sys/net/netfilter/nf_conntrack_count"))
                .zip(num(read("/proc/sys/net/netfilter/nf_conntrack_max"))),
            arp: parse_arp(&read("/proc/net/arp").unwrap_or_default()),
            udp_queues,
            timex: Timex::read(),
            netclass: NetClass::read_all(netclass),
            procs,
            tcp_states,
            tcp_queued,
            udp_sockets,
            hung_tasks: num(read("/proc/sys/kernel/hung_task_detect_count")),
            pid_max: num(read("/proc/sys/kernel/pid_max")),
            threads_max: num(read("/proc/sys/kernel/threads-max")),
            users: std::fs::read("/var/run/utmp")
                .ok()
                .map(|b| count_utmp_users(&b)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netstat_pairs_and_the_default_filter() {
        let t = "TcpExt: SyncookiesSent ListenDrops TCPTimeouts PruneCalled\nTcpExt: 1 2 3 4\nIpExt: InOctets OutOctets InBcastPkts\nIpExt: 10 20 30\n";
        let v = parse_netstat(t);
        assert_eq!(v.len(), 7);
        let kept: Vec<String> = v
            .iter()
            .map(|(p, n, _)| format!("{p}_{n}"))
            .filter(|k| netstat_default_field(k))
            .collect();
        assert_eq!(
            kept,
            [
                "TcpExt_SyncookiesSent",
                "TcpExt_ListenDrops",
                "TcpExt_TCPTimeouts",
                "IpExt_InOctets",
                "IpExt_OutOctets"
            ]
        );
        for k in [
            "Udp_InErrors",
            "Tcp_InErrs",
            "Ip_Forwarding",
            "Icmp6_OutMsgs",
            "Udp6_NoPorts",
            "Tcp_MaxConn",
        ] {
            assert!(netstat_default_field(k), "{k}");
        }
        for k in [
            "Tcp_RtoMax",
            "Ip_InReceives",
            "Udp_InCsumErrors2",
            "TcpExt_PruneCalled",
        ] {
            assert!(!netstat_default_field(k), "{k}");
        }
        assert_eq!(
            parse_snmp6("Ip6InReceives   5\nIcmp6InMsgs 2\nUdp6NoPorts 1\nUdpLite6InErrors 0\n"),
            vec![
                ("Ip6".into(), "InReceives".into(), 5.0),
                ("Icmp6".into(), "InMsgs".into(), 2.0),
                ("Udp6".into(), "NoPorts".into(), 1.0),
                ("UdpLite6".into(), "InErrors".into(), 0.0),
            ]
        );
    }

    #[test]
    fn sockstat_softnet_pressure_arp_udp_and_tcp() {
        let s = parse_sockstat(
            "sockets: used 24\nTCP: inuse 1 orphan 0 tw 2 alloc 1 mem 3\nFRAG: inuse 0 memory 0\n",
            4096,
        );
        assert!(s.contains(&("sockets_used".into(), 24.0)));
        assert!(s.contains(&("TCP_tw".into(), 2.0)));
        assert!(s.contains(&("TCP_mem_bytes".into(), 3.0 * 4096.0)));
        assert!(s.contains(&("FRAG_memory".into(), 0.0)));
        let n = parse_softnet(
            "0000000a 00000001 00000002 00000000 00000000 00000000 00000000 00000000 00000000 00000003 00000004 00000000 00000000 00000000 00000000\n0000000b 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000005 00000001\n",
        );
        assert_eq!(n[0].processed, 10);
        assert_eq!(n[0].received_rps, 3);
        assert_eq!(n[0].flow_limit_count, 4);
        assert_eq!((n[1].cpu, n[1].backlog_len), (1, Some(5)));
        assert_eq!(
            parse_pressure(
                "some avg10=0.00 avg60=0.00 avg300=0.00 total=1491\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=7\n"
            ),
            (Some(1491), Some(7))
        );
        assert_eq!(parse_pressure("some avg10=0 total=3\n"), (Some(3), None));
        let arp = parse_arp(
            "IP address       HW type     Flags       HW address            Mask     Device\n172.17.0.2 0x1 0x2 02:42:ac:11:00:02 * docker0\n10.0.0.1 0x1 0x2 aa:bb:cc:dd:ee:ff * eth0\n172.17.0.3 0x1 0x2 02:42:ac:11:00:03 * docker0\n",
        );
        assert_eq!(arp["docker0"], 2);
        assert_eq!(
            parse_udp_queues(
                "  sl  local_address rem_address   st tx_queue rx_queue\n 1: 00000000:0044 00000000:0000 07 00000010:00000200 00:00000000 00000000\n"
            ),
            (16, 512)
        );
        let mut st = BTreeMap::new();
        count_tcp_states(
            "  sl  local rem st\n 0: 0:1 0:0 0A 0\n 1: 0:1 0:0 01 0\n 2: 0:1 0:0 01 0\n",
            &mut st,
        );
        assert_eq!(st["tcp_listen"], 1);
        assert_eq!(st["tcp_established"], 2);
    }

    #[test]
    fn tcp_states_from_netlink_match_the_proc_files() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        // An IPv6 listener too (where the host has IPv6): one dump must count both families.
        let v6 = std::net::TcpListener::bind("[::1]:0").ok();
        if v6.is_none() {
            eprintln!("no IPv6 loopback here: only IPv4 sockets are compared");
        }
        use std::io::Write;
        (&client).write_all(&[7u8; 100]).expect("write");
        std::thread::sleep(std::time::Duration::from_millis(50));
        let (states, queued) = tcp_states_netlink().expect("sock_diag netlink");
        let mut from_files = BTreeMap::new();
        for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
            count_tcp_states(
                &std::fs::read_to_string(f).unwrap_or_default(),
                &mut from_files,
            );
        }
        assert!(
            states["tcp_listen"] >= 1 && states["tcp_established"] >= 2,
            "{states:?}"
        );
        // Listening sockets do not come and go under a test; both ways see the same.
        assert_eq!(states.get("tcp_listen"), from_files.get("tcp_listen"));
        // The 100 bytes wait in the server's receive queue (nobody reads them).
        assert!(queued.1 >= 100, "{queued:?}");
        drop((client, server, v6));
    }

    #[test]
    fn process_states_and_users() {
        let mut p = ProcStates::default();
        p.add("1 (systemd) S 0 1 1 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 10 20 30");
        p.add("42 (a (weird) name) D 1 42 42 0 -1 0 0 0 0 0 0 0 0 0 20 0 7 0 10 20 30");
        p.add("43 (z) Z 1 43 43 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 10 20 30");
        assert_eq!((p.sleeping, p.blocked, p.zombies, p.total), (1, 1, 1, 3));
        assert_eq!(p.total_threads, 9);
        let mut utmp = vec![0u8; 384 * 3];
        utmp[0] = 2; // BOOT_TIME
        utmp[384] = 7; // USER_PROCESS
        utmp[768] = 7;
        assert_eq!(count_utmp_users(&utmp), 2);
    }

    #[test]
    fn netclass_from_netlink_and_its_cache_match_sysfs() {
        let mut cache = NetClassCache::default();
        let mut last = String::new();
        // Interfaces may come and go meanwhile (other tests): a few tries.
        for _ in 0..5 {
            let fresh = NetClass::read_all(&mut cache);
            let cached = NetClass::read_all(&mut cache);
            let sysfs = NetClass::read_all_sysfs();
            if fresh == sysfs && cached == sysfs {
                assert!(sysfs.iter().any(|c| c.device == "lo" && c.mtu.is_some()));
                return;
            }
            last = format!("netlink: {fresh:#?}\ncached: {cached:#?}\nsysfs: {sysfs:#?}");
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        panic!("netlink and sysfs disagree:\n{last}");
    }

    #[test]
    fn reads_this_host() {
        let n = NodeSample::read(&mut NetClassCache::default(), &mut Kept::new(1000));
        assert!(n.procs.total > 0 && n.procs.total_threads >= n.procs.total);
        assert!(n.filefd.is_some());
        assert!(n.netstat.iter().any(|(p, _, _)| p == "Tcp"));
        assert!(n.timex.as_ref().is_some_and(|t| t.tick_seconds > 0.0));
        assert!(n.netclass.iter().any(|c| c.device == "lo"));
    }
}
