//! `berth doctor`: checks that this host can run the agent, and says how to fix what cannot.
//!
//! Role: reads the host directly (engine socket, /proc, /sys, /dev/fuse, the data dir, the
//! ports in the config), because it must work before any agent runs. Each check gives a
//! level, what was found and, unless it is fine, the fix. Nothing is changed on the host
//! (the data-dir probe writes and removes one temporary file).

use crate::config::AgentConfig;
use serde::Serialize;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::Duration;

/// The oldest engine API berth is tested against (Docker 20.10).
pub const MIN_API: (u32, u32) = (1, 41);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub level: Level,
    pub detail: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub fix: String,
}

fn check(name: &'static str, level: Level, detail: impl Into<String>, fix: &str) -> Check {
    Check {
        name,
        level,
        detail: detail.into(),
        fix: if level == Level::Ok {
            String::new()
        } else {
            fix.to_string()
        },
    }
}

/// Every check, in the order shown.
pub fn run(cfg: &AgentConfig) -> Vec<Check> {
    let mut out = vec![engine(&cfg.docker_host), cgroups(), fuse(), nfs()];
    out.extend(ports(cfg));
    out.push(api_exposure(cfg.listen, cfg.api_tls.is_some()));
    out.push(data_dir(&cfg.data_dir));
    out.push(cluster(&cfg.data_dir));
    out.push(clock());
    out
}

/// Whether this host is in a cluster, and whether it holds a key the cluster still uses (the
/// agent notes when packets under keys it lacks arrive while no member answers it).
fn cluster(dir: &Path) -> Check {
    let ring = match crate::cluster::keys::Keyring::load(&dir.join("cluster.key")) {
        Ok(None) => return check("cluster", Level::Ok, "in no cluster", ""),
        Ok(Some(r)) => r,
        Err(e) => {
            return check(
                "cluster",
                Level::Fail,
                format!("the cluster key file does not load: {e}"),
                "`berth cluster leave`, then join again with a new token",
            );
        }
    };
    match std::fs::read_to_string(dir.join(crate::cluster::hub::STRANDED_FILE)) {
        Ok(says) => check(
            "cluster",
            Level::Warn,
            format!(
                "cluster {}: this host holds only retired keys: {}",
                ring.cluster,
                says.trim()
            ),
            "`berth cluster leave`, then `berth cluster join TOKEN` with a token made on a member",
        ),
        Err(_) => check(
            "cluster",
            Level::Ok,
            format!(
                "cluster {}, sealing with key {}",
                ring.cluster,
                ring.sealing_id()
            ),
            "",
        ),
    }
}

/// `1.41` -> (1, 41).
pub fn parse_api(v: &str) -> Option<(u32, u32)> {
    let (a, b) = v.trim().split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

fn engine(endpoint: &str) -> Check {
    let fix = "start the engine (`systemctl start docker`), or point [agent] docker_host / --docker-host at it; the agent runs as root or in the docker group";
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return check("engine", Level::Fail, e.to_string(), fix),
    };
    let info = rt.block_on(async {
        let d = crate::runtime::docker::DockerRuntime::connect(endpoint).await?;
        d.engine_info().await
    });
    let info = match info {
        Ok(i) => i,
        Err(e) => return check("engine", Level::Fail, e.to_string(), fix),
    };
    let detail = format!(
        "Docker {} (API {}) at {endpoint}, cgroup v{} with the {} driver",
        info.version, info.api_version, info.cgroup_version, info.cgroup_driver
    );
    match parse_api(&info.api_version) {
        Some(v) if v >= MIN_API => check("engine", Level::Ok, detail, ""),
        _ => check(
            "engine",
            Level::Fail,
            format!(
                "{detail}: berth needs API {}.{} or newer",
                MIN_API.0, MIN_API.1
            ),
            "upgrade the engine to Docker 20.10 or newer",
        ),
    }
}

fn cgroups() -> Check {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        let controllers =
            std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
        let missing: Vec<&str> = ["cpu", "memory", "io"]
            .into_iter()
            .filter(|c| !controllers.split_whitespace().any(|x| x == *c))
            .collect();
        if missing.is_empty() {
            check("cgroups", Level::Ok, "cgroup v2 (unified)", "")
        } else {
            check(
                "cgroups",
                Level::Warn,
                format!("cgroup v2 without the {} controller(s)", missing.join(", ")),
                "enable them (systemd does on boot; on other inits write +cpu +memory +io to cgroup.subtree_control); container figures that need them are left out",
            )
        }
    } else if root.join("memory").is_dir() || root.join("cpu,cpuacct").is_dir() {
        check("cgroups", Level::Ok, "cgroup v1 (legacy hierarchy)", "")
    } else {
        check(
            "cgroups",
            Level::Warn,
            "no cgroup hierarchy under /sys/fs/cgroup",
            "mount cgroup2 on /sys/fs/cgroup; without it containers have no cpu/memory figures",
        )
    }
}

fn fuse() -> Check {
    let dev = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse");
    let helper = crate::volumes::host::fuse_helper();
    match (dev, helper) {
        (Ok(_), Some(h)) => check(
            "fuse",
            Level::Ok,
            format!("/dev/fuse usable, {h} installed"),
            "",
        ),
        (Ok(_), None) => check(
            "fuse",
            Level::Warn,
            "/dev/fuse usable but neither ossfs nor s3fs is installed",
            "oss volumes need one: `apt install s3fs` (or `dnf install s3fs-fuse`)",
        ),
        (Err(e), _) => check(
            "fuse",
            Level::Warn,
            format!("/dev/fuse: {e}"),
            "oss volumes need FUSE: `modprobe fuse`, and `apt install fuse3 s3fs`",
        ),
    }
}

fn nfs() -> Check {
    let kernel = std::fs::read_to_string("/proc/filesystems")
        .unwrap_or_default()
        .lines()
        .any(|l| matches!(l.split_whitespace().last(), Some("nfs" | "nfs4")));
    let helper = crate::volumes::host::in_path("mount.nfs")
        || Path::new("/sbin/mount.nfs").exists()
        || Path::new("/usr/sbin/mount.nfs").exists();
    match (kernel, helper) {
        (true, true) => check(
            "nfs",
            Level::Ok,
            "kernel NFS client and mount.nfs present",
            "",
        ),
        (false, _) => check(
            "nfs",
            Level::Warn,
            "the kernel has no NFS client loaded (`nfs` is not in /proc/filesystems)",
            "nas volumes need it: `modprobe nfs` (package linux-modules-extra on some kernels)",
        ),
        (true, false) => check(
            "nfs",
            Level::Warn,
            "mount.nfs is not installed",
            "nas volumes need it: `apt install nfs-common` (or `dnf install nfs-utils`)",
        ),
    }
}

/// Whether a berth agent answers its health route at `addr`.
fn agent_at(addr: SocketAddr) -> bool {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into();
    agent
        .get(format!("http://{addr}/v1/health"))
        .call()
        .ok()
        .and_then(|mut r| r.body_mut().read_to_string().ok())
        .is_some_and(|b| b.contains("node_id"))
}

fn ports(cfg: &AgentConfig) -> Vec<Check> {
    let agent_running = agent_at(cfg.listen);
    let mut wanted = vec![("api port", cfg.listen, "[agent] listen / --listen")];
    if let Some(a) = cfg.router_http {
        wanted.push(("router http port", a, "[router] http / --router-http"));
    }
    if let Some(a) = cfg.router_https {
        wanted.push(("router https port", a, "[router] https / --router-https"));
    }
    wanted
        .into_iter()
        .map(|(name, addr, setting)| match TcpListener::bind(addr) {
            Ok(_) => check("ports", Level::Ok, format!("{name} {addr} is free"), ""),
            Err(_) if agent_running => check(
                "ports",
                Level::Ok,
                format!("{name} {addr} is held by the running berth agent"),
                "",
            ),
            Err(e) => check(
                "ports",
                Level::Fail,
                format!("{name} {addr}: {e}"),
                &format!(
                    "find the holder with `ss -ltnp 'sport = :{}'`, stop it or choose another address with {setting}",
                    addr.port()
                ),
            ),
        })
        .collect()
}

/// What the agent says at start (and `berth doctor` shows) when its API is reachable from
/// other hosts: the API speaks plain HTTP, and its token is root on this host.
pub fn api_exposure_warning(listen: SocketAddr, tls: bool) -> Option<String> {
    (!listen.ip().is_loopback() && !tls).then(|| {
        format!(
            "the API listens on {listen} without TLS: the token crosses the network in clear, and whoever holds it is root on this host (templates may be privileged, bind /, use the host network)"
        )
    })
}

fn api_exposure(listen: SocketAddr, tls: bool) -> Check {
    match api_exposure_warning(listen, tls) {
        None if tls => check(
            "api",
            Level::Ok,
            format!("the API listens on {listen} over TLS ([agent] tls_cert)"),
            "",
        ),
        None => check(
            "api",
            Level::Ok,
            format!("the API listens on loopback only ({listen})"),
            "",
        ),
        Some(w) => check(
            "api",
            Level::Warn,
            w,
            "serve it over TLS ([agent] tls_cert and tls_key; the CLI trusts the certificate with --ca-cert), or listen on 127.0.0.1 ([agent] listen) and reach it through `ssh -L`",
        ),
    }
}

fn data_dir(dir: &Path) -> Check {
    use std::os::unix::fs::PermissionsExt;
    let fix_mode = format!(
        "`chmod 0700 {}`: it holds the API token and volume keys",
        dir.display()
    );
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = dir.parent().unwrap_or(Path::new("/"));
            return match std::fs::metadata(parent) {
                Ok(_) => check(
                    "data dir",
                    Level::Ok,
                    format!(
                        "{} does not exist yet; the agent makes it (mode 0700)",
                        dir.display()
                    ),
                    "",
                ),
                Err(e) => check(
                    "data dir",
                    Level::Fail,
                    format!("{}: {e}", parent.display()),
                    "create it, or choose another [agent] data_dir / --data-dir",
                ),
            };
        }
        Err(e) => {
            return check(
                "data dir",
                Level::Fail,
                format!("{}: {e}", dir.display()),
                "run as root, or choose a data_dir this user owns",
            );
        }
    };
    let probe = dir.join(format!(".doctor-{}", std::process::id()));
    if let Err(e) = std::fs::write(&probe, b"x") {
        return check(
            "data dir",
            Level::Fail,
            format!("{} is not writable: {e}", dir.display()),
            "run as root, or choose a data_dir this user owns (is the disk read-only or full?)",
        );
    }
    let _ = std::fs::remove_file(&probe);
    let free = nix::sys::statvfs::statvfs(dir)
        .map(|s| s.blocks_available() * s.fragment_size())
        .unwrap_or(u64::MAX);
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        check(
            "data dir",
            Level::Warn,
            format!("{} is writable but has mode {mode:04o}", dir.display()),
            &fix_mode,
        )
    } else if free < 1 << 30 {
        check(
            "data dir",
            Level::Warn,
            format!("{} has {} MiB free", dir.display(), free >> 20),
            "free space: the state, log store and outbox live there ([logs] max_size_mb, [metrics] outbox_max_mb bound them)",
        )
    } else {
        check(
            "data dir",
            Level::Ok,
            format!(
                "{} writable, mode {mode:04o}, {} GiB free",
                dir.display(),
                free >> 30
            ),
            "",
        )
    }
}

/// The kernel's NTP state: Some(true) synchronised, Some(false) not, None unknown.
fn ntp_synchronised() -> Option<bool> {
    // SAFETY: ntp_adjtime with modes = 0 only reads the kernel's state into `t`, a plain
    // C struct for which all-zero bytes are a valid value.
    let mut t: nix::libc::timex = unsafe { std::mem::zeroed() };
    let state = unsafe { nix::libc::ntp_adjtime(&mut t) };
    match state {
        -1 => None,
        nix::libc::TIME_ERROR => Some(false),
        _ => Some(true),
    }
}

fn clock() -> Check {
    let now = crate::timefmt::now_ns() / 1_000_000_000;
    let built: i64 = env!("BERTH_BUILD_EPOCH").parse().unwrap_or(0);
    if now < built {
        return check(
            "clock",
            Level::Fail,
            format!(
                "the clock says {} , before this binary was built",
                crate::timefmt::rfc3339_micros(now * 1_000_000_000)
            ),
            "set the time (`timedatectl set-ntp true`, or `date -s`); certificates, logs and metrics depend on it",
        );
    }
    match ntp_synchronised() {
        Some(true) => check("clock", Level::Ok, "synchronised (kernel NTP state)", ""),
        Some(false) => check(
            "clock",
            Level::Warn,
            "not synchronised to a time source",
            "run an NTP client (`apt install chrony` or `timedatectl set-ntp true`); hosts of a cluster need agreeing clocks",
        ),
        None => check(
            "clock",
            Level::Warn,
            "the kernel's NTP state cannot be read",
            "check `timedatectl`",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions_compare_numerically() {
        assert_eq!(parse_api("1.41"), Some((1, 41)));
        assert!(parse_api("1.50").expect("v") >= MIN_API);
        assert!(parse_api("1.9").expect("v") < MIN_API);
        assert_eq!(parse_api("x"), None);
    }

    #[test]
    fn an_api_beyond_loopback_is_warned_about() {
        let local = api_exposure("127.0.0.1:7878".parse().expect("addr"), false);
        assert_eq!(local.level, Level::Ok);
        let open = api_exposure("0.0.0.0:7878".parse().expect("addr"), false);
        assert_eq!(open.level, Level::Warn);
        assert!(open.detail.contains("root on this host") && open.fix.contains("tls_cert"));
        assert!(api_exposure_warning("[::1]:7878".parse().expect("addr"), false).is_none());
        let tls = api_exposure("0.0.0.0:7878".parse().expect("addr"), true);
        assert_eq!(tls.level, Level::Ok);
        assert!(tls.detail.contains("over TLS"));
    }

    #[test]
    fn a_taken_port_fails_with_the_fix() {
        let held = TcpListener::bind("127.0.0.1:0").expect("bind");
        let cfg = crate::config::load_agent(&crate::config::AgentFlags {
            config: Some("/nonexistent-for-test".into()),
            ..Default::default()
        });
        assert!(cfg.is_err(), "a named config that is missing is an error");
        // An empty file of its own, so the host's /etc/berth/berth.toml plays no part.
        let empty = tempfile::NamedTempFile::new().expect("tmp");
        let mut cfg = crate::config::load_agent(&crate::config::AgentFlags {
            config: Some(empty.path().to_path_buf()),
            listen: Some(held.local_addr().expect("addr").to_string()),
            data_dir: Some("/tmp".into()),
            ..Default::default()
        })
        .expect("defaults load");
        cfg.router_http = None;
        let c = ports(&cfg);
        assert_eq!(c[0].level, Level::Fail, "{c:?}");
        assert!(c[0].fix.contains("ss -ltnp"), "{c:?}");
    }
}
