//! Log files inside containers (`logs:` / `log_store_NAME:` labels), read from the host
//! through the container's root, surviving rotation by rename and by truncation.
//!
//! Positions are `inode:offset`, keyed `file:NAME` for a file (the inode tells a rotated file
//! from its successor: the rest of the old one is read first, found by inode in the same
//! directory) and `file:NAME:INODE` for each file of a directory. Only whole lines are taken;
//! a last line without its newline waits for the next poll.
//!
//! The container is untrusted: every path is opened through [`crate::rootfd::Root`] (symlinks
//! resolve inside the container, never out to the host), only regular files are read, and
//! each poll is bounded: [`MAX_READ`] bytes per source, [`MAX_LINE`] per line, [`MAX_FILES`]
//! files read (the newest) of at most [`MAX_ENTRIES`] listed per directory.

use crate::rootfd::{Node, OpenFile, Root};
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};

/// Most bytes read from one source (a file, or all files of a directory) per poll.
pub const MAX_READ: u64 = 1 << 20;
/// Longest line taken from a file; a longer one is cut there.
pub const MAX_LINE: usize = 64 << 10;
/// Most files of a log directory read per poll (the most recently modified ones).
pub const MAX_FILES: usize = 64;
/// Most entries of a log directory listed per poll.
pub const MAX_ENTRIES: usize = 4096;

#[derive(Debug, Clone, PartialEq)]
pub struct Read1 {
    /// The source's name (the stream of its lines).
    pub name: String,
    pub text: String,
}

/// `inode:offset:fingerprint`.
fn parse_pos(s: &str) -> Option<(u64, u64, u64)> {
    let mut it = s.split(':');
    Some((
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
        it.next().and_then(|f| f.parse().ok()).unwrap_or(0),
    ))
}

/// Bytes of a file's head that identify its content: a file truncated and written again
/// past the old offset between two polls has a different head.
const HEAD: u64 = 64;

/// FNV-1a of the first `min(HEAD, upto)` bytes.
fn fingerprint(f: &mut OpenFile, upto: u64) -> u64 {
    let mut buf = Vec::new();
    if f.file.seek(SeekFrom::Start(0)).is_ok() {
        let _ = (&mut f.file).take(HEAD.min(upto)).read_to_end(&mut buf);
    }
    buf.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// Where to continue in `f` given a stored offset and fingerprint.
fn resume_offset(f: &mut OpenFile, offset: u64, fp: u64) -> u64 {
    let size = f.stat.st_size as u64;
    if size < offset || (offset > 0 && fingerprint(f, offset) != fp) {
        0 // truncated (copytruncate), maybe written again since
    } else {
        offset
    }
}

/// Reads whole lines of `f` from `offset`, at most `budget` bytes; returns them and the
/// offset after the last one. `all` takes a final line without its newline too (the file
/// will not grow any more). A line longer than [`MAX_LINE`] is cut.
fn read_lines(
    f: &mut OpenFile,
    offset: u64,
    all: bool,
    budget: &mut u64,
) -> std::io::Result<(Vec<String>, u64)> {
    f.file.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    (&mut f.file).take(*budget).read_to_end(&mut buf)?;
    let end = match buf.iter().rposition(|b| *b == b'\n') {
        Some(i) => i + 1,
        // A line that does not end within the budget: taken as it is, so the file moves on.
        None if all || buf.len() as u64 >= MAX_READ => buf.len(),
        None => 0,
    };
    *budget = budget.saturating_sub(end as u64);
    let lines = buf[..end]
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .flat_map(|l| l.strip_suffix(b"\r").unwrap_or(l).chunks(MAX_LINE))
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    Ok((lines, offset + end as u64))
}

/// A regular file of `dir` with inode `inode`.
fn find_inode(root: &Root, dir: &str, inode: u64) -> Option<OpenFile> {
    let Ok(Node::Dir(d)) = root.open(dir) else {
        return None;
    };
    d.newest_files(MAX_ENTRIES, MAX_FILES)
        .ok()?
        .into_iter()
        .find_map(|e| match e.node {
            Node::File(f) if f.stat.st_ino == inode => Some(f),
            _ => None,
        })
}

/// Polls one source under `root` (the container's root). `cps` holds this container's
/// positions; returns the new lines and the positions to store with them.
pub fn poll(
    root: &Root,
    name: &str,
    path: &str,
    cps: &HashMap<String, String>,
) -> (Vec<Read1>, Vec<(String, String)>) {
    let mut lines = Vec::new();
    let mut out_cps = Vec::new();
    let Ok(node) = root.open(path) else {
        return (lines, out_cps);
    };
    let mut budget = MAX_READ;
    let mut take = |text: Vec<String>| {
        lines.extend(text.into_iter().map(|t| Read1 {
            name: name.to_string(),
            text: t,
        }))
    };
    let mut f = match node {
        Node::File(f) => f,
        Node::Other(_) => return (lines, out_cps),
        Node::Dir(d) => {
            let Ok(entries) = d.newest_files(MAX_ENTRIES, MAX_FILES) else {
                return (lines, out_cps);
            };
            let mut files: Vec<OpenFile> = entries
                .into_iter()
                .filter_map(|e| match e.node {
                    Node::File(f) => Some(f),
                    _ => None,
                })
                .collect();
            // Oldest first (rotated files first, by modification time).
            files.sort_by_key(|f| (f.stat.st_mtime, f.stat.st_mtime_nsec));
            for mut f in files {
                let (inode, size) = (f.stat.st_ino, f.stat.st_size as u64);
                let key = format!("file:{name}:{inode}");
                let mut offset = cps
                    .get(&key)
                    .and_then(|s| parse_pos(s))
                    .map(|x| x.1)
                    .unwrap_or(0);
                if size < offset {
                    offset = 0; // truncated
                }
                if size == offset || budget == 0 {
                    continue;
                }
                if let Ok((text, next)) = read_lines(&mut f, offset, false, &mut budget) {
                    take(text);
                    out_cps.push((key, format!("{inode}:{next}")));
                }
            }
            return (lines, out_cps);
        }
    };
    let key = format!("file:{name}");
    let inode = f.stat.st_ino;
    let (mut cp_inode, mut offset, fp) = cps
        .get(&key)
        .and_then(|s| parse_pos(s))
        .unwrap_or((inode, 0, 0));
    if cp_inode != inode {
        // Rotated by rename: finish the old file if it is still beside the new one.
        let dir = match path.rsplit_once('/') {
            Some(("", _)) | None => "/",
            Some((d, _)) => d,
        };
        if let Some(Ok((text, _))) = find_inode(root, dir, cp_inode)
            .map(|mut old| read_lines(&mut old, offset, true, &mut budget))
        {
            take(text);
        }
        cp_inode = inode;
        offset = 0;
    } else {
        offset = resume_offset(&mut f, offset, fp);
    }
    if f.stat.st_size as u64 > offset
        && budget > 0
        && let Ok((text, next)) = read_lines(&mut f, offset, false, &mut budget)
    {
        take(text);
        offset = next;
    }
    out_cps.push((
        key,
        format!("{cp_inode}:{offset}:{}", fingerprint(&mut f, offset)),
    ));
    (lines, out_cps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::path::Path;

    fn append(p: &Path, s: &str) {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .unwrap()
            .write_all(s.as_bytes())
            .unwrap();
    }

    fn run(root: &Path, name: &str, path: &str, cps: &mut HashMap<String, String>) -> Vec<String> {
        let root = Root::dir(root).expect("root");
        let (lines, new) = poll(&root, name, path, cps);
        cps.extend(new);
        lines.into_iter().map(|l| l.text).collect()
    }

    #[test]
    fn follows_a_file_through_rename_and_truncate() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("var/log")).unwrap();
        let f = root.path().join("var/log/app.log");
        let mut cps = HashMap::new();
        append(&f, "1\n2\npart");
        assert_eq!(
            run(root.path(), "app", "/var/log/app.log", &mut cps),
            ["1", "2"]
        );
        append(&f, "ial\n3\n");
        // Rotation by rename, then a new file: the rest of the old one comes first.
        std::fs::rename(&f, root.path().join("var/log/app.log.1")).unwrap();
        append(&f, "4\n");
        assert_eq!(
            run(root.path(), "app", "/var/log/app.log", &mut cps),
            ["partial", "3", "4"]
        );
        assert!(
            run(root.path(), "app", "/var/log/app.log", &mut cps).is_empty(),
            "nothing twice"
        );
        // copytruncate: the file shrinks in place, and is written again before the next
        // poll (to the same size, then past the old offset): its head tells it apart.
        std::fs::write(&f, "5\n").unwrap();
        assert_eq!(run(root.path(), "app", "/var/log/app.log", &mut cps), ["5"]);
        std::fs::write(&f, "6\n7 and more\n").unwrap();
        assert_eq!(
            run(root.path(), "app", "/var/log/app.log", &mut cps),
            ["6", "7 and more"]
        );
    }

    #[test]
    fn follows_every_file_of_a_directory_by_inode() {
        let root = tempfile::tempdir().unwrap();
        let d = root.path().join("logs");
        std::fs::create_dir_all(&d).unwrap();
        let mut cps = HashMap::new();
        append(&d.join("a.log"), "a1\n");
        append(&d.join("b.log"), "b1\n");
        let mut got = run(root.path(), "dir", "/logs", &mut cps);
        got.sort();
        assert_eq!(got, ["a1", "b1"]);
        std::fs::rename(d.join("a.log"), d.join("a.log.1")).unwrap();
        append(&d.join("a.log.1"), "a2\n");
        assert_eq!(
            run(root.path(), "dir", "/logs", &mut cps),
            ["a2"],
            "a renamed file is not read again"
        );
    }

    #[test]
    fn links_out_of_the_root_special_files_and_floods_are_refused_or_bounded() {
        let host = tempfile::tempdir().unwrap();
        std::fs::write(host.path().join("shadow"), "root:secret\n").unwrap();
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("var/log")).unwrap();
        std::os::unix::fs::symlink(host.path().join("shadow"), r.join("var/log/app.log")).unwrap();
        std::os::unix::fs::symlink(host.path(), r.join("var/log/dir")).unwrap();
        nix::unistd::mkfifo(
            &r.join("var/log/fifo.log"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        let mut cps = HashMap::new();
        assert!(run(r, "app", "/var/log/app.log", &mut cps).is_empty());
        assert!(run(r, "dir", "/var/log/dir", &mut cps).is_empty());
        // A FIFO would block an open for reading forever: it is never opened.
        assert!(run(r, "fifo", "/var/log/fifo.log", &mut cps).is_empty());
        // A directory of links to host files yields nothing either.
        let d = r.join("links");
        std::fs::create_dir_all(&d).unwrap();
        std::os::unix::fs::symlink(host.path().join("shadow"), d.join("a.log")).unwrap();
        assert!(run(r, "links", "/links", &mut cps).is_empty());
        // Sparse 8 MiB files without a newline: one poll reads MAX_READ bytes in all, in
        // lines of at most MAX_LINE.
        let flood = r.join("flood");
        std::fs::create_dir_all(&flood).unwrap();
        for i in 0..4 {
            let f = std::fs::File::create(flood.join(format!("{i}.log"))).unwrap();
            f.set_len(8 << 20).unwrap();
        }
        let root_fd = Root::dir(r).unwrap();
        let (lines, _) = poll(&root_fd, "flood", "/flood", &HashMap::new());
        let bytes: usize = lines.iter().map(|l| l.text.len()).sum();
        assert!(bytes as u64 <= MAX_READ, "{bytes} bytes in one poll");
        assert!(lines.iter().all(|l| l.text.len() <= MAX_LINE));
    }
}
