//! Mounting on the host: runs the FUSE helper or `mount -t nfs`, waits until the mount
//! answers, reads the kernel's mount tables (`/proc/self/mountinfo`, and a container's own
//! through `/proc/<pid>/`). Everything here blocks: callers run it on a blocking thread.
//!
//! Layout under `<data-dir>/volumes/`: `<name>/` is the mount point of each volume; `.berth/`
//! (mode 0700) holds what the helpers need: the passwd file (only while the helper starts),
//! its log, the file cache and the staging mount point used to create a NAS sub-directory.

use super::command;
use super::{Driver, VolumeDef, VolumeError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a helper may take to mount and answer (an unreachable endpoint makes s3fs retry
/// for about 20 s before it gives up).
pub const MOUNT_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Debug, Clone)]
pub struct Dirs {
    root: PathBuf,
}

pub use crate::mountinfo::Entry as MountEntry;

/// What the host's mount point shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostState {
    Unmounted,
    Alive,
    /// Mounted, but the helper behind it is gone (or the server refuses): the error seen.
    Dead(String),
}

impl HostState {
    pub fn as_str(&self) -> &'static str {
        match self {
            HostState::Unmounted => "unmounted",
            HostState::Alive => "mounted",
            HostState::Dead(_) => "broken",
        }
    }
}

/// What a container sees at the path where a host-mounted volume should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewState {
    Ok,
    /// Not the volume's file system there (the container started before the mount).
    Missing,
    /// The mount it holds is dead (its helper died and the host mount was replaced).
    Dead,
}

fn io(name: &str, op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> VolumeError {
    let (name, path) = (name.to_string(), path.display().to_string());
    move |source| VolumeError::Io {
        name,
        op,
        path,
        source,
    }
}

impl Dirs {
    pub fn new(data_dir: &Path) -> Dirs {
        Dirs {
            root: data_dir.join("volumes"),
        }
    }

    pub fn mountpoint(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn private(&self) -> PathBuf {
        self.root.join(".berth")
    }

    fn prepare(&self, name: &str) -> Result<PathBuf, VolumeError> {
        let private = self.private();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&private)
            .map_err(io(name, "creating", &private))?;
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700))
            .map_err(io(name, "securing", &private))?;
        let mp = self.mountpoint(name);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&mp)
            .map_err(io(name, "creating", &mp))?;
        Ok(mp)
    }

    /// Removes a volume's mount point and files (after it is unmounted).
    pub fn forget(&self, name: &str) {
        let p = self.private();
        for f in [
            p.join(format!("{name}.log")),
            p.join(format!("{name}.passwd")),
        ] {
            let _ = std::fs::remove_file(f);
        }
        let _ = std::fs::remove_dir_all(p.join(format!("{name}.cache")));
        let _ = std::fs::remove_dir(p.join(format!("{name}.stage")));
        let _ = std::fs::remove_dir(self.mountpoint(name));
    }
}

/// The FUSE helper: `ossfs` when installed, else `s3fs`.
pub fn fuse_helper() -> Option<&'static str> {
    ["ossfs", "s3fs"].into_iter().find(|p| in_path(p))
}

pub fn in_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths).any(|d| {
                std::fs::metadata(d.join(program))
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
        })
        .unwrap_or(false)
}

/// Mounts `def` at its mount point. On failure nothing stays mounted and the error carries
/// the helper's own text. For `oss` the running helper is returned (the caller watches it).
pub fn mount(dirs: &Dirs, def: &VolumeDef) -> Result<Option<Child>, VolumeError> {
    match def.driver {
        Driver::Local => Ok(None),
        Driver::Oss => mount_oss(dirs, def).map(Some),
        Driver::Nas => mount_nas(dirs, def).map(|()| None),
    }
}

fn mount_oss(dirs: &Dirs, def: &VolumeDef) -> Result<Child, VolumeError> {
    let name = &def.name;
    let fail = |detail: String| VolumeError::Mount {
        name: name.clone(),
        detail,
    };
    let helper = fuse_helper().ok_or_else(|| {
        fail("no FUSE helper for object storage is installed: install s3fs (apt install s3fs) or ossfs".into())
    })?;
    if !Path::new("/dev/fuse").exists() {
        return Err(fail(
            "/dev/fuse is missing: load the fuse module (modprobe fuse)".into(),
        ));
    }
    let mp = dirs.prepare(name)?;
    let private = dirs.private();
    let passwd = private.join(format!("{name}.passwd"));
    let cache = private.join(format!("{name}.cache"));
    if def.opts.get("cache").map(String::as_str) == Some("true") {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&cache)
            .map_err(io(name, "creating", &cache))?;
    }
    if def.opts.get("access_key").is_some_and(|k| !k.is_empty()) {
        let _ = std::fs::remove_file(&passwd);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&passwd)
            .map_err(io(name, "creating", &passwd))?;
        f.write_all(command::passwd_line(def).as_bytes())
            .map_err(io(name, "writing", &passwd))?;
    }
    let log_path = private.join(format!("{name}.log"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .read(true)
        .mode(0o600)
        .open(&log_path)
        .map_err(io(name, "creating", &log_path))?;
    let err_log = log.try_clone().map_err(io(name, "opening", &log_path))?;
    let args = command::oss_args(
        def,
        &mp.to_string_lossy(),
        &passwd.to_string_lossy(),
        &cache.to_string_lossy(),
    );
    let spawned = {
        use std::os::unix::process::CommandExt;
        Command::new(helper)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log)
            // Its own process group: a signal to the agent's group leaves it running, as do
            // the containers that use it.
            .process_group(0)
            .spawn()
    };
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_file(&passwd);
            return Err(fail(format!("cannot run {helper}: {e}")));
        }
    };
    let ready = wait_ready(&mp, &mut child);
    // The helper read its passwd file at start: the credentials leave the disk again.
    let _ = std::fs::remove_file(&passwd);
    match ready {
        Ok(()) => Ok(child),
        Err(why) => {
            let _ = child.kill();
            let _ = child.wait();
            unmount_path(&mp);
            let said = log_tail(&log_path);
            let (style, because) = command::request_style(def);
            let tried = format!(
                "endpoint {}, {style}-style requests ({because})",
                def.opts
                    .get("endpoint")
                    .map(String::as_str)
                    .unwrap_or_default()
            );
            Err(fail(if said.is_empty() {
                format!("{helper} {why}; tried {tried}")
            } else {
                format!("{helper}: {said}; tried {tried}")
            }))
        }
    }
}

/// Waits until the mount shows in the table and answers a stat (which waits for the
/// helper's own start-up checks), or the helper exits, or the time is up.
fn wait_ready(mp: &Path, child: &mut Child) -> Result<(), String> {
    let start = Instant::now();
    let target = mp.to_string_lossy().to_string();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited ({})", describe(status)));
        }
        if mounted_at(&target).is_some() {
            return match std::fs::metadata(mp) {
                Ok(_) => Ok(()),
                Err(e) => {
                    // Give it a moment to write why before it is killed.
                    let deadline = Instant::now() + Duration::from_secs(2);
                    while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Err(format!("mounted but does not answer: {e}"))
                }
            };
        }
        if start.elapsed() > MOUNT_TIMEOUT {
            return Err(format!(
                "did not mount within {} s",
                MOUNT_TIMEOUT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn describe(s: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (_, Some(sig)) => format!("killed by signal {sig}"),
        _ => "ended".into(),
    }
}

/// The last error lines the helper wrote (s3fs tags them `[CRT]`/`[ERR]`), else its last lines.
fn log_tail(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = f.seek(std::io::SeekFrom::Start(len.saturating_sub(8192)));
        let _ = f.read_to_string(&mut text);
    }
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let errors: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.contains("[CRT]") || l.contains("[ERR]") || l.contains("rror"))
        .collect();
    let pick = if errors.is_empty() { &lines } else { &errors };
    pick.iter()
        .rev()
        .take(3)
        .rev()
        .copied()
        .collect::<Vec<_>>()
        .join("; ")
}

fn mount_nas(dirs: &Dirs, def: &VolumeDef) -> Result<(), VolumeError> {
    let name = &def.name;
    let fail = |detail: String| VolumeError::Mount {
        name: name.clone(),
        detail,
    };
    if !in_path("mount.nfs") {
        return Err(fail(
            "the NFS mount helper is missing: install nfs-common (Debian) or nfs-utils (RHEL)"
                .into(),
        ));
    }
    let mp = dirs.prepare(name)?;
    if let Some(sub) = def.opts.get("subdir") {
        // Mount the export's root aside, make the sub-directory, unmount.
        let stage = dirs.private().join(format!("{name}.stage"));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&stage)
            .map_err(io(name, "creating", &stage))?;
        let root = command::nfs_source(def, false);
        run(
            "mount",
            &command::nfs_args(def, &root, &stage.to_string_lossy()),
        )
        .map_err(&fail)?;
        // Anyone who can write the export may have planted symlinks: the sub-directory is
        // made from directory fds, never following one.
        let made = crate::rootfd::Root::dir(&stage).and_then(|r| {
            r.make_dirs(sub, def.opts.get("mode").and_then(|m| super::parse_mode(m)))
        });
        unmount_path(&stage);
        made.map_err(|e| {
            fail(format!(
                "cannot create sub-directory {sub:?} in {root}: {e}"
            ))
        })?;
    }
    let src = command::nfs_source(def, true);
    run(
        "mount",
        &command::nfs_args(def, &src, &mp.to_string_lossy()),
    )
    .map_err(&fail)?;
    if let Err(e) = std::fs::metadata(&mp) {
        unmount_path(&mp);
        return Err(fail(format!("{src} mounted but does not answer: {e}")));
    }
    Ok(())
}

/// Runs a command to its end (at most [`MOUNT_TIMEOUT`]); Err carries what it printed.
fn run(program: &str, args: &[String]) -> Result<(), String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let mut out = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut out);
                }
                if let Some(mut o) = child.stdout.take() {
                    let _ = o.read_to_string(&mut out);
                }
                if status.success() {
                    return Ok(());
                }
                let out = out.trim();
                return Err(if out.is_empty() {
                    format!("{program} {}: {}", args.join(" "), describe(status))
                } else {
                    format!("{program}: {out}")
                });
            }
            Ok(None) if start.elapsed() > MOUNT_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{program} {} did not finish within {} s",
                    args.join(" "),
                    MOUNT_TIMEOUT.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(25)),
            Err(e) => return Err(format!("waiting for {program}: {e}")),
        }
    }
}

/// Unmounts whatever is at `path` (a busy or dead mount is detached); quiet when nothing is.
pub fn unmount_path(path: &Path) {
    use nix::mount::{MntFlags, umount2};
    let target = path.to_string_lossy().to_string();
    while mounted_at(&target).is_some() {
        if umount2(path, MntFlags::empty()).is_err() && umount2(path, MntFlags::MNT_DETACH).is_err()
        {
            return;
        }
    }
}

/// Unmounts a volume; Err when something stays mounted.
pub fn unmount(dirs: &Dirs, name: &str) -> Result<(), VolumeError> {
    let mp = dirs.mountpoint(name);
    unmount_path(&mp);
    if mounted_at(&mp.to_string_lossy()).is_some() {
        return Err(VolumeError::Unmount {
            name: name.to_string(),
            detail: format!("{} is still mounted", mp.display()),
        });
    }
    Ok(())
}

/// The host mount at `path`, when there is one (the last one, which is what shows).
pub fn mounted_at(path: &str) -> Option<MountEntry> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    parse_mountinfo(&text)
        .into_iter()
        .rev()
        .find(|m| m.mountpoint == path)
}

/// The state of a volume's mount point on the host. Stats the mount (blocks as long as the
/// file system does).
pub fn state(dirs: &Dirs, name: &str) -> HostState {
    let mp = dirs.mountpoint(name);
    if mounted_at(&mp.to_string_lossy()).is_none() {
        return HostState::Unmounted;
    }
    match std::fs::metadata(&mp) {
        Ok(_) => HostState::Alive,
        Err(e) => HostState::Dead(e.to_string()),
    }
}

/// What the container whose first process is `pid` sees at `target` for a volume of `driver`.
pub fn container_view(pid: u32, target: &str, driver: Driver) -> ViewState {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")) else {
        return ViewState::Ok; // gone meanwhile: nothing to repair
    };
    let entry = parse_mountinfo(&text)
        .into_iter()
        .rev()
        .find(|m| m.mountpoint == target);
    let fits = entry.is_some_and(|m| match driver {
        Driver::Oss => m.fstype.starts_with("fuse"),
        Driver::Nas => m.fstype.starts_with("nfs"),
        Driver::Local => true,
    });
    if !fits {
        return ViewState::Missing;
    }
    // Resolved inside the container's root (a link there must not make berth stat a host
    // path); the fstat reaches the mount, which is what tells a dead one.
    let root = std::path::PathBuf::from(format!("/proc/{pid}/root"));
    match crate::rootfd::Root::dir(&root).and_then(|r| r.open(target).map(|_| ())) {
        Err(e) if dead_errno(&e) => ViewState::Dead,
        _ => ViewState::Ok,
    }
}

/// The errors a mount whose helper or server is gone gives.
fn dead_errno(e: &std::io::Error) -> bool {
    use nix::errno::Errno;
    e.raw_os_error().is_some_and(|n| {
        [Errno::ENOTCONN, Errno::ECONNABORTED, Errno::EIO]
            .iter()
            .any(|x| *x as i32 == n)
    })
}

pub use crate::mountinfo::parse as parse_mountinfo;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helper_errors_prefer_error_lines() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("l");
        std::fs::write(
            &p,
            "[INF] start\n[CRT] s3fs.cpp:s3fs_check_service(3597): unable to connect\n[INF] bye\n",
        )
        .expect("write");
        assert_eq!(
            log_tail(&p),
            "[CRT] s3fs.cpp:s3fs_check_service(3597): unable to connect"
        );
    }
}
