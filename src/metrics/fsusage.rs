//! The size of a container's writable layer, as cAdvisor's `container_fs_usage_bytes`
//! reports it, and the capacity of the file system under it (`container_fs_limit_bytes`).
//!
//! The layer is the `upperdir` of the overlay mounted at the container's root (read from
//! the container's first process's mountinfo). Its contents belong to the container, so the
//! walk never follows a symlink: every directory is opened relative to its parent's fd with
//! `O_NOFOLLOW`, every entry is `fstatat`ed with `AT_SYMLINK_NOFOLLOW`, and a walk stops after
//! [`MAX_ENTRIES`] entries (reported as incomplete). Like cAdvisor, this runs on a slower
//! cycle than the other figures ([`REFRESH`]), so the fast cycle stays cheap.

use nix::dir::Dir;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, SFlag, fstatat};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

/// How often one container's layer is measured again.
pub const REFRESH: Duration = Duration::from_secs(60);
/// Entries one walk visits at most.
pub const MAX_ENTRIES: u64 = 200_000;

/// One measurement.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FsUsage {
    /// Bytes the layer's files occupy (allocated blocks, as `du` counts).
    pub usage: u64,
    /// Capacity of the file system holding the layer.
    pub limit: u64,
    /// The file system's device (cAdvisor's `device` label).
    pub device: String,
    /// False when the walk stopped at [`MAX_ENTRIES`].
    pub complete: bool,
}

/// The `upperdir=` of the overlay mounted at `/` in a mountinfo text (pure).
pub fn upperdir(mountinfo: &str) -> Option<String> {
    crate::mountinfo::parse(mountinfo)
        .into_iter()
        .find(|m| m.mountpoint == "/" && m.fstype == "overlay")?
        .super_options
        .split(',')
        .find_map(|o| o.strip_prefix("upperdir="))
        .map(str::to_string)
}

/// Measures the writable layer of the container whose first process is `pid`.
pub fn measure(pid: u32, mounts: &[super::host::Mount]) -> Option<FsUsage> {
    // The container's own mount table (a container allowed to mount could make it long):
    // at most 4 MiB of it, and the root overlay is among the first lines.
    let mut raw = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(
            std::fs::File::open(format!("/proc/{pid}/mountinfo")).ok()?,
            4 << 20,
        ),
        &mut raw,
    )
    .ok()?;
    let info = String::from_utf8_lossy(&raw);
    let upper = upperdir(&info)?;
    let dir = Dir::open(
        upper.as_str(),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let mut budget = MAX_ENTRIES;
    let usage = walk(dir.as_fd(), &mut budget, 0);
    let vfs = nix::sys::statvfs::fstatvfs(dir.as_fd()).ok()?;
    let device = mounts
        .iter()
        .filter(|m| upper.starts_with(&m.path))
        .max_by_key(|m| m.path.len())
        .map(|m| m.device.clone())
        .unwrap_or_default();
    Some(FsUsage {
        usage,
        limit: vfs.blocks() as u64 * vfs.fragment_size() as u64,
        device,
        complete: budget > 0,
    })
}

/// Sums the allocated bytes under `dir` without following symlinks.
fn walk(dir: BorrowedFd<'_>, budget: &mut u64, depth: u32) -> u64 {
    let Ok(mut d) = Dir::openat(
        dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) else {
        return 0;
    };
    // No more names than the budget left: a directory of millions of files (the container
    // makes them) costs at most that much memory.
    let names: Vec<std::ffi::CString> = d
        .iter()
        .flatten()
        .map(|e| e.file_name().to_owned())
        .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
        .take(usize::try_from(*budget).unwrap_or(usize::MAX))
        .collect();
    let mut total = 0;
    for name in names {
        if *budget == 0 {
            break;
        }
        *budget -= 1;
        let Ok(st) = fstatat(dir, name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW) else {
            continue;
        };
        total += st.st_blocks as u64 * 512;
        let is_dir = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
        if is_dir
            && depth < 256
            && let Ok(sub) = Dir::openat(
                dir,
                name.as_c_str(),
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
        {
            total += walk(sub.as_fd(), budget, depth + 1);
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_root_overlays_upperdir() {
        let info = "1290 1200 0:63 / / rw,relatime master:447 - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/A:/var/lib/docker/overlay2/l/B,upperdir=/var/lib/docker/overlay2/abc/diff,workdir=/var/lib/docker/overlay2/abc/work\n1291 1290 0:65 / /proc rw,nosuid - proc proc rw\n";
        assert_eq!(
            upperdir(info).as_deref(),
            Some("/var/lib/docker/overlay2/abc/diff")
        );
        assert_eq!(
            upperdir("1 0 0:1 / / rw - ext4 /dev/vda rw\n"),
            None,
            "a root that is not an overlay"
        );
        assert_eq!(crate::mountinfo::unescape("/a\\040b"), "/a b");
    }

    #[test]
    fn counts_files_and_never_follows_a_symlink_out() {
        let tmp = tempfile::tempdir().expect("tmp");
        let upper = tmp.path().join("upper");
        std::fs::create_dir_all(upper.join("d/e")).expect("dirs");
        std::fs::write(upper.join("d/e/f"), vec![7u8; 64 * 1024]).expect("file");
        // A link out to a big host directory: not followed.
        std::os::unix::fs::symlink("/usr", upper.join("d/host")).expect("link");
        let dir =
            Dir::open(&upper, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).expect("open");
        let mut budget = MAX_ENTRIES;
        let n = walk(dir.as_fd(), &mut budget, 0);
        assert!((64 * 1024..1 << 20).contains(&n), "{n}");
        assert_eq!(budget, MAX_ENTRIES - 4);
        let mut small = 2;
        walk(dir.as_fd(), &mut small, 0);
        assert_eq!(small, 0, "the walk stops at its budget");
    }

    #[test]
    fn a_directory_of_many_files_costs_no_more_than_the_budget() {
        // The container's writable layer holds one directory with many entries; the walk
        // reads at most the budget's worth of names and says the figure is incomplete.
        let tmp = tempfile::tempdir().expect("tmp");
        for i in 0..3000 {
            std::fs::write(tmp.path().join(format!("f{i}")), b"x").expect("file");
        }
        let dir = Dir::open(
            tmp.path(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            Mode::empty(),
        )
        .expect("open");
        let mut budget = 100;
        let n = walk(dir.as_fd(), &mut budget, 0);
        assert_eq!(budget, 0);
        // At most 100 files of one block each were counted.
        assert!(n <= 100 * 64 * 1024, "{n}");
    }
}
