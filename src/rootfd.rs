//! Paths under a directory that someone else controls (a container's root, an NFS export),
//! opened from a directory fd with `openat2` so that no symlink, `..` or magic link leads out.
//!
//! Role: berth runs as root and reads files inside containers (log files) and creates
//! directories in exports anyone may write. A path opened by name under `/proc/PID/root`
//! follows symlinks, and an absolute link resolves against the *host's* root: a container that
//! links `/var/log/app.log` to `/etc/shadow` would have berth read the host's file. Here:
//! - [`Root::of_process`] opens `/proc/PID` as a directory fd, checks from it that the process
//!   is still in the container's cgroup (pid reuse), and opens its `root` from that fd;
//! - [`Root::open`] resolves a path with `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS` (symlinks
//!   stay inside the root, absolute ones included) as an `O_PATH` fd, which opens nothing:
//!   a FIFO or device node is never opened, so it can neither block nor act;
//! - [`Node`] is what was found, by `fstat` of that fd; only a regular file is reopened for
//!   reading (through `/proc/self/fd`, the same inode, non-blocking), only a directory listed;
//! - entries of a directory are opened from its fd without following symlinks at all.
//!
//! Invariant: every byte read comes from an fd obtained this way; no check-then-reopen by path.

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

fn errno(e: nix::errno::Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// A directory fd that paths are resolved inside.
pub struct Root {
    fd: OwnedFd,
}

/// What a path names.
pub enum Node {
    File(OpenFile),
    Dir(Dir),
    /// A FIFO, socket, device node or symlink: never opened.
    Other(&'static str),
}

/// A regular file, open for reading.
pub struct OpenFile {
    pub file: File,
    pub stat: FileStat,
}

/// A directory: its fd (`O_PATH`) and its `stat`.
pub struct Dir {
    fd: OwnedFd,
    pub stat: FileStat,
}

fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT
}

fn describe(k: SFlag) -> &'static str {
    match k {
        SFlag::S_IFIFO => "a FIFO",
        SFlag::S_IFSOCK => "a socket",
        SFlag::S_IFCHR => "a character device",
        SFlag::S_IFBLK => "a block device",
        SFlag::S_IFLNK => "a symlink",
        _ => "not a regular file",
    }
}

/// Opens an `O_PATH` fd into what it names: a regular file for reading (non-blocking, so
/// even a file on a stuck FUSE mount is not waited for at open), a directory as it is.
fn classify(fd: OwnedFd) -> io::Result<Node> {
    let stat = fstat(&fd).map_err(errno)?;
    match kind(&stat) {
        SFlag::S_IFREG => {
            // The same inode, reopened for reading: /proc/self/fd/N of an O_PATH fd.
            let file = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags((OFlag::O_NONBLOCK | OFlag::O_NOCTTY).bits())
                .open(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
            // Refuse if what was reopened is not what was checked (it cannot be, but a bug
            // here would read a host file).
            let again = fstat(&file).map_err(errno)?;
            if (again.st_dev, again.st_ino) != (stat.st_dev, stat.st_ino) {
                return Err(io::Error::other("the file changed while it was opened"));
            }
            Ok(Node::File(OpenFile { file, stat }))
        }
        SFlag::S_IFDIR => Ok(Node::Dir(Dir { fd, stat })),
        k => Ok(Node::Other(describe(k))),
    }
}

impl Root {
    /// A host directory as a root (an NFS export mounted aside, a test's temp dir).
    pub fn dir(path: &Path) -> io::Result<Root> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno)?;
        Ok(Root { fd })
    }

    /// The root directory of process `pid`, provided it still runs in the cgroup of container
    /// `container_id` (a pid reused by another process is refused).
    pub fn of_process(pid: u32, container_id: &str) -> io::Result<Root> {
        let proc_dir = nix::fcntl::open(
            format!("/proc/{pid}").as_str(),
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno)?;
        // From the /proc/PID fd: if PID is reused after this open, reads through the fd
        // fail (ESRCH) rather than describe the new process.
        let how = OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
        let mut cgroup = String::new();
        File::from(openat2(&proc_dir, "cgroup", how).map_err(errno)?)
            .take(64 << 10)
            .read_to_string(&mut cgroup)?;
        if container_id.is_empty() || !cgroup.contains(container_id) {
            return Err(io::Error::other(format!(
                "process {pid} is no longer in container {container_id}"
            )));
        }
        // `root` is a magic link: followed here on purpose, from the /proc/PID fd only
        // (openat2's RESOLVE_BENEATH would refuse any magic link).
        let fd = nix::fcntl::openat(
            &proc_dir,
            "root",
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno)?;
        Ok(Root { fd })
    }

    /// What `path` names inside this root: absolute and relative symlinks and `..` resolve
    /// inside it, magic links are refused.
    pub fn open(&self, path: &str) -> io::Result<Node> {
        let rel = path.trim_start_matches('/');
        let rel = if rel.is_empty() { "." } else { rel };
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        classify(openat2(&self.fd, rel, how).map_err(errno)?)
    }

    /// Makes directory `rel` and its missing parents inside this root, one component at a
    /// time from the parent's fd, never following a symlink; `mode` is set (by fd) on the
    /// directories made here, not on ones that existed.
    pub fn make_dirs(&self, rel: &str, mode: Option<u32>) -> io::Result<()> {
        let mut dir = self.fd.try_clone()?;
        for comp in rel.split('/').filter(|c| !c.is_empty() && *c != ".") {
            if comp == ".." {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "`..` is not allowed in a sub-directory",
                ));
            }
            let made = match nix::sys::stat::mkdirat(&dir, comp, Mode::from_bits_truncate(0o700)) {
                Ok(()) => true,
                Err(nix::errno::Errno::EEXIST) => false,
                Err(e) => return Err(errno(e)),
            };
            let how = OpenHow::new()
                .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
                .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
            let next = openat2(&dir, comp, how).map_err(|e| match e {
                nix::errno::Errno::ELOOP | nix::errno::Errno::ENOTDIR => io::Error::other(format!(
                    "{comp:?} exists and is not a directory (a symlink is not followed)"
                )),
                e => errno(e),
            })?;
            if made && let Some(m) = mode {
                nix::sys::stat::fchmod(&next, Mode::from_bits_truncate(m)).map_err(errno)?;
            }
            dir = next;
        }
        Ok(())
    }
}

/// One entry of a directory, opened without following a symlink.
pub struct Entry {
    pub name: String,
    pub node: Node,
}

impl Dir {
    /// The regular files of this directory most recently modified, at most `keep` of them,
    /// from the first `max_names` entries listed (`.` and `..` left out): each is looked at
    /// with `fstatat` (no symlink followed, nothing opened), then the chosen ones are opened
    /// from this directory's fd without following symlinks and checked again by `fstat`.
    /// A directory an untrusted container fills with entries costs at most `max_names`
    /// stats and `keep` opens; its newest files, the ones being written, are the ones kept.
    pub fn newest_files(&self, max_names: usize, keep: usize) -> io::Result<Vec<Entry>> {
        let how = OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
        let listing = openat2(&self.fd, ".", how).map_err(errno)?;
        let mut d = nix::dir::Dir::from_fd(listing).map_err(errno)?;
        let mut found: Vec<((i64, i64), std::ffi::CString)> = Vec::new();
        let mut listed = 0;
        for e in d.iter() {
            let e = e.map_err(errno)?;
            let name = e.file_name();
            if matches!(name.to_bytes(), b"." | b"..") {
                continue;
            }
            if listed >= max_names {
                break;
            }
            listed += 1;
            // Gone since the listing, or not a regular file: left out.
            let Ok(st) =
                nix::sys::stat::fstatat(&self.fd, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
            else {
                continue;
            };
            if kind(&st) == SFlag::S_IFREG {
                found.push(((st.st_mtime, st.st_mtime_nsec), name.to_owned()));
            }
        }
        found.sort_by_key(|f| std::cmp::Reverse(f.0));
        found.truncate(keep);
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
        let mut out = Vec::new();
        for (_, name) in found {
            // Replaced since the stat by something else: `classify` says what it is now.
            if let Ok(node) = openat2(&self.fd, name.as_c_str(), how)
                .map_err(errno)
                .and_then(classify)
            {
                out.push(Entry {
                    name: String::from_utf8_lossy(name.to_bytes()).into_owned(),
                    node,
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn symlinks_resolve_inside_the_root_and_special_files_are_not_opened() {
        let host = tempfile::tempdir().expect("tmp");
        std::fs::write(host.path().join("secret"), "host secret\n").expect("write");
        let root = tempfile::tempdir().expect("tmp");
        let r = root.path();
        std::fs::create_dir_all(r.join("var/log")).expect("mkdir");
        std::fs::write(r.join("etc-passwd"), "container file\n").expect("write");
        // An absolute link to a host path: inside the root it names the root's own path.
        let host_secret = host.path().join("secret");
        std::os::unix::fs::symlink(&host_secret, r.join("var/log/abs.log")).expect("link");
        std::os::unix::fs::symlink("../../../../../../../../..", r.join("var/log/up"))
            .expect("link");
        std::os::unix::fs::symlink("/etc-passwd", r.join("var/log/inside.log")).expect("link");
        nix::unistd::mkfifo(&r.join("var/log/fifo.log"), Mode::from_bits_truncate(0o644))
            .expect("fifo");
        let root = Root::dir(r).expect("root");
        assert!(root.open("/var/log/abs.log").is_err(), "no host file");
        let up = format!("/var/log/up{}", host_secret.display());
        assert!(root.open(&up).is_err(), "no way up");
        match root.open("/var/log/inside.log").expect("inside") {
            Node::File(mut f) => {
                let mut s = String::new();
                f.file.read_to_string(&mut s).expect("read");
                assert_eq!(s, "container file\n");
            }
            _ => panic!("a file"),
        }
        // A FIFO is named, never opened (an open for reading would block).
        assert!(matches!(
            root.open("/var/log/fifo.log").expect("fifo"),
            Node::Other("a FIFO")
        ));
        assert!(matches!(
            root.open("/proc/self/root/etc/passwd"),
            Err(_) | Ok(Node::Other(_))
        ));
        // Entries of a directory: links are not followed.
        let Node::Dir(d) = root.open("/var/log").expect("dir") else {
            panic!("a dir")
        };
        assert!(
            d.newest_files(100, 100).expect("entries").is_empty(),
            "links and special files are not files of the directory"
        );
        // Many files: the newest `keep` are the ones taken.
        let many = r.join("many");
        std::fs::create_dir_all(&many).expect("mkdir");
        for i in 0..50 {
            let f = many.join(format!("{i:02}.log"));
            std::fs::write(&f, "x").expect("write");
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000 + i);
            std::fs::File::options()
                .write(true)
                .open(&f)
                .and_then(|f| f.set_modified(t))
                .expect("mtime");
        }
        let Node::Dir(m) = root.open("/many").expect("dir") else {
            panic!("a dir")
        };
        let mut names: Vec<String> = m
            .newest_files(1000, 3)
            .expect("entries")
            .into_iter()
            .map(|e| e.name)
            .collect();
        names.sort();
        assert_eq!(names, ["47.log", "48.log", "49.log"]);
        assert!(
            m.newest_files(10, 64).expect("entries").len() <= 10,
            "listing bounded"
        );
    }

    #[test]
    fn a_process_root_needs_the_process_in_the_container_cgroup() {
        let me = std::process::id();
        let cgroup = std::fs::read_to_string("/proc/self/cgroup").expect("cgroup");
        // The last path component of this process's cgroup stands in for a container id.
        let id = cgroup
            .lines()
            .filter_map(|l| l.rsplit('/').next())
            .find(|s| !s.is_empty())
            .unwrap_or("");
        if !id.is_empty() {
            let root = Root::of_process(me, id).expect("own root");
            assert!(matches!(
                root.open("/proc/self/status"),
                Ok(Node::File(_)) | Err(_)
            ));
            assert!(matches!(root.open("/"), Ok(Node::Dir(_))));
        }
        let e = Root::of_process(me, "0123456789abcdef-not-a-container").err();
        assert!(e.is_some_and(|e| e.to_string().contains("no longer in container")));
    }

    #[test]
    fn dirs_are_made_without_following_links_and_get_their_mode() {
        let host = tempfile::tempdir().expect("tmp");
        let export = tempfile::tempdir().expect("tmp");
        std::os::unix::fs::symlink(host.path(), export.path().join("evil")).expect("link");
        let root = Root::dir(export.path()).expect("root");
        let e = root
            .make_dirs("evil/sub", Some(0o777))
            .expect_err("refused");
        assert!(e.to_string().contains("not a directory"), "{e}");
        assert!(!host.path().join("sub").exists(), "nothing made outside");
        assert!(root.make_dirs("a/../../x", None).is_err());
        root.make_dirs("a/b", Some(0o750)).expect("made");
        let mode = |p: &str| {
            std::fs::metadata(export.path().join(p))
                .expect("meta")
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("a/b"), 0o750);
        root.make_dirs("a/b", Some(0o700)).expect("exists");
        assert_eq!(mode("a/b"), 0o750, "an existing directory keeps its mode");
    }
}
