//! Pseudo-files (/proc, cgroup) kept open between collection cycles and read again from
//! offset 0, as Netdata's `procfile` does: the kernel generates the text afresh on a read at
//! offset 0, and the open (a path walk through /sys/fs/cgroup or /proc) costs ten times the
//! read on a small file. With 100 containers that is the difference between ~15 µs and
//! ~1.5 µs per cgroup file, a dozen files per container.
//!
//! Invariants: a file not read during a cycle is closed at [`Kept::end_cycle`] (so a removed
//! cgroup or an exited process is not held longer than one cycle); a read that fails on a kept
//! file (ENODEV once its cgroup is removed, ESRCH once its process exited) drops it and opens
//! the path again once, which also follows a reused pid; at most `cap` files are kept (past
//! that, files are opened, read and closed as before); a read returns at most [`MAX_BYTES`].

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The most one read returns: far above any pseudo-file the collector reads (memory.stat
/// is ~1.5 KiB, /proc/net/dev ~7 KiB per 100 interfaces, mounts ~50 KiB per 200 mounts).
pub const MAX_BYTES: usize = 16 << 20;

struct Entry {
    file: File,
    /// A caller's tag (e.g. the process start time behind a /proc/PID/net file): a different
    /// tag means the file is opened again.
    tag: u64,
    cycle: u64,
}

/// The kept files of one reader (the collector owns one).
pub struct Kept {
    /// Keyed by the path's bytes (`Path`'s own hash walks its components: a tenth of a
    /// cycle's user time with 1,600 kept files).
    open: HashMap<std::ffi::OsString, Entry>,
    cycle: u64,
    cap: usize,
    buf: Vec<u8>,
    /// Whether the last read opened its file (first read, or the kept one failed).
    opened: bool,
}

impl Kept {
    pub fn new(cap: usize) -> Kept {
        Kept {
            open: HashMap::new(),
            cycle: 0,
            cap,
            buf: Vec::new(),
            opened: false,
        }
    }

    /// How many files are open now.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// Whether `path` is kept open.
    pub fn contains(&self, path: &Path) -> bool {
        self.open.contains_key(path.as_os_str())
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// The whole file at `path` (None when it cannot be opened or read, or is not UTF-8).
    pub fn read(&mut self, path: &Path) -> Option<String> {
        self.read_with(path, 0, false)
    }

    /// As [`Kept::read`], for a file the kernel generates as one record (every cgroup
    /// control file but `cgroup.procs`/`tasks`, `/proc/PID/stat`): a read that returns less
    /// than it asked for has the whole text, which saves the read that would return 0. Not
    /// for multi-record seq_files (`/proc/net/*`, `mountinfo`): those stop a read short
    /// when the next record does not fit the kernel's page.
    pub fn read_single(&mut self, path: &Path) -> Option<String> {
        self.read_with(path, 0, true)
    }

    /// As [`Kept::read`], opening the file again when `tag` differs from the one it was
    /// opened with.
    pub fn read_tagged(&mut self, path: &Path, tag: u64) -> Option<String> {
        self.read_with(path, tag, false)
    }

    /// Whether the last read opened its file rather than reading a kept one again (its
    /// cgroup or process may be a new one under the same path).
    pub fn last_opened(&self) -> bool {
        self.opened
    }

    fn read_with(&mut self, path: &Path, tag: u64, single: bool) -> Option<String> {
        self.opened = false;
        if let Some(e) = self.open.get_mut(path.as_os_str()) {
            if e.tag == tag
                && let Ok(n) = read_at0(&e.file, &mut self.buf, single)
            {
                e.cycle = self.cycle;
                return String::from_utf8(self.buf[..n].to_vec()).ok();
            }
            // Gone (removed cgroup, exited process) or retagged: open the path afresh.
            self.open.remove(path.as_os_str());
        }
        self.opened = true;
        let file = File::open(path).ok()?;
        let n = read_at0(&file, &mut self.buf, single).ok()?;
        let text = String::from_utf8(self.buf[..n].to_vec()).ok();
        if self.open.len() < self.cap {
            self.open.insert(
                path.as_os_str().to_os_string(),
                Entry {
                    file,
                    tag,
                    cycle: self.cycle,
                },
            );
        }
        text
    }

    /// Closes every file not read since the previous call.
    pub fn end_cycle(&mut self) {
        let cycle = self.cycle;
        self.open.retain(|_, e| e.cycle == cycle);
        self.cycle += 1;
    }
}

/// Reads `file` from offset 0 to its end into `buf` (pread: the file offset is not used) and
/// returns how many bytes it holds. `buf` stays initialized to its length, which only grows.
/// `single`: the file is one record, so a short read is its end.
fn read_at0(file: &File, buf: &mut Vec<u8>, single: bool) -> std::io::Result<usize> {
    if buf.len() < 4096 {
        buf.resize(4096, 0);
    }
    let mut n = 0;
    loop {
        if n == buf.len() {
            if n >= MAX_BYTES {
                // Exactly at the bound is fine; one byte more is not.
                let mut probe = [0u8; 1];
                return match file.read_at(&mut probe, n as u64) {
                    Ok(0) => Ok(n),
                    Ok(_) => Err(std::io::Error::other("pseudo-file over the read bound")),
                    Err(e) => Err(e),
                };
            }
            buf.resize((n * 2).min(MAX_BYTES), 0);
        }
        match file.read_at(&mut buf[n..], n as u64) {
            Ok(0) => return Ok(n),
            Ok(k) => {
                n += k;
                if single && n < buf.len() {
                    return Ok(n);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// How many files a collector may keep open: a quarter of the soft open-file limit (the API,
/// the router and the engine's connections need the rest), at most 50,000. The agent raises
/// its soft limit to the hard one at start ([`raise_fd_limit`]).
pub fn fd_budget() -> usize {
    use nix::sys::resource::{Resource, getrlimit};
    getrlimit(Resource::RLIMIT_NOFILE)
        .map(|(soft, _)| (soft / 4).min(50_000) as usize)
        .unwrap_or(256)
}

/// Raises the soft open-file limit to the hard one (as Go's runtime does at start); returns
/// the soft limit now in force.
pub fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                hard
            } else {
                soft
            }
        }
        Ok((soft, _)) => soft,
        Err(_) => 0,
    }
}

/// Reads an open file whole from offset 0 (None when it fails or is not UTF-8).
pub fn read_file_once(file: &File) -> Option<String> {
    let mut buf = Vec::new();
    let n = read_at0(file, &mut buf, false).ok()?;
    buf.truncate(n);
    String::from_utf8(buf).ok()
}

/// Reads a small pseudo-file once: open, read until EOF, close (no size query first, which
/// `fs::read_to_string` makes and which pseudo-files answer with 0 or 4096 anyway).
pub fn read_once(p: &Path) -> Option<String> {
    read_file_once(&File::open(p).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn burn() {
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < std::time::Duration::from_millis(60) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
    }

    #[test]
    fn a_kept_file_reads_fresh_text_each_time() {
        // This thread's CPU time (field 14 of its stat) moves between two reads of the same
        // kept file: the kernel generated the text again.
        let tid = nix::unistd::gettid();
        let path = PathBuf::from(format!("/proc/self/task/{tid}/stat"));
        let utime = |t: &str| -> u64 {
            let rest = &t[t.rfind(')').expect("stat") + 1..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime")
        };
        let mut k = Kept::new(10);
        let a = k.read(&path).expect("first read");
        assert_eq!(k.len(), 1);
        // Until the kernel counted a tick more for this thread (as a fresh open reads it):
        // on a loaded machine 60 ms of wall time may not hold a tick of CPU.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            burn();
            let fresh = std::fs::read_to_string(&path).expect("fresh read");
            if utime(&fresh) > utime(&a) || std::time::Instant::now() > deadline {
                break;
            }
        }
        let b = k.read(&path).expect("second read");
        assert_eq!(k.len(), 1, "the same file is reused");
        assert!(utime(&b) > utime(&a), "{a}\n{b}");
    }

    #[test]
    fn a_single_record_read_gets_the_whole_text_and_says_when_it_opened() {
        let mut k = Kept::new(10);
        // One record (single_open), read once; the same text a read to EOF gives.
        let own = PathBuf::from("/proc/self/stat");
        let first = k.read_single(&own).expect("stat");
        assert!(k.last_opened());
        assert!(first.contains(')') && first.ends_with('\n'));
        assert!(k.read_single(&own).is_some());
        assert!(!k.last_opened(), "kept: read again, not opened");
        // Past the first buffer: a long text still comes whole.
        let dir = tempfile::tempdir().expect("tempdir");
        let long = dir.path().join("long");
        let text = "x".repeat(10_000) + "\n";
        std::fs::write(&long, &text).expect("write");
        assert_eq!(k.read_single(&long).as_deref(), Some(text.as_str()));
    }

    #[test]
    fn files_not_read_in_a_cycle_are_closed_and_the_cap_holds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths: Vec<PathBuf> = (0..5)
            .map(|i| {
                let p = dir.path().join(format!("f{i}"));
                std::fs::write(&p, format!("v{i}")).expect("write");
                p
            })
            .collect();
        let mut k = Kept::new(3);
        for p in &paths {
            assert!(k.read(p).is_some());
        }
        assert_eq!(k.len(), 3, "at most cap files stay open");
        k.end_cycle();
        assert_eq!(k.len(), 3);
        assert_eq!(k.read(&paths[0]).as_deref(), Some("v0"));
        k.end_cycle();
        assert_eq!(k.len(), 1, "only the file read in the last cycle stays");
        // A file rewritten in place reads its new text; a removed one still reads what the
        // open file holds (a regular file): pseudo-files fail instead, and that is tested
        // against a real exited process below.
        std::fs::write(&paths[0], "new").expect("rewrite");
        assert_eq!(k.read(&paths[0]).as_deref(), Some("new"));
        assert_eq!(k.read(&dir.path().join("missing")), None);
    }

    #[test]
    fn an_exited_process_file_is_dropped_and_a_tag_change_reopens() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let path = PathBuf::from(format!("/proc/{}/stat", child.id()));
        let mut k = Kept::new(10);
        assert!(k.read(&path).is_some_and(|t| t.contains("(sleep)")));
        child.kill().expect("kill");
        child.wait().expect("reap");
        assert_eq!(k.read(&path), None, "an exited process reads as gone");
        assert_eq!(k.len(), 0);
        // Retagging opens the file again (same path, same text here).
        let own = PathBuf::from("/proc/self/stat");
        assert!(k.read_tagged(&own, 1).is_some());
        assert!(k.read_tagged(&own, 2).is_some());
        assert_eq!(k.len(), 1);
    }

    #[test]
    fn a_file_over_the_bound_is_refused_not_read_whole() {
        // A container controls some of what it shows (its /proc/PID/net/dev grows with every
        // interface it makes): a read stops at MAX_BYTES and gives nothing.
        let dir = tempfile::tempdir().expect("tempdir");
        let big = dir.path().join("big");
        std::fs::File::create(&big)
            .and_then(|f| f.set_len(MAX_BYTES as u64 + 1))
            .expect("sparse file");
        assert_eq!(read_once(&big), None);
        let mut k = Kept::new(4);
        assert_eq!(k.read(&big), None);
        assert_eq!(k.len(), 0, "nothing kept for it");
        let fits = dir.path().join("fits");
        std::fs::File::create(&fits)
            .and_then(|f| f.set_len(MAX_BYTES as u64))
            .expect("sparse file");
        assert_eq!(read_once(&fits).map(|t| t.len()), Some(MAX_BYTES));
        // The one-record read keeps the same bound.
        assert_eq!(k.read_single(&big), None);
        assert_eq!(k.len(), 0);
    }

    #[test]
    fn read_once_reads_a_pseudo_file_whole() {
        let t = read_once(Path::new("/proc/self/status")).expect("status");
        assert!(t.starts_with("Name:") && t.contains("\nVmRSS:"), "{t}");
        assert_eq!(read_once(Path::new("/proc/self/no-such-file")), None);
    }
}
