//! Log files inside containers (`logs:` / `log_store_NAME:` labels), read from the host
//! through `/proc/<pid>/root`, surviving rotation by rename and by truncation.
//!
//! Positions are `inode:offset`, keyed `file:NAME` for a file (the inode tells a rotated file
//! from its successor: the rest of the old one is read first, found by inode in the same
//! directory) and `file:NAME:INODE` for each file of a directory. Only whole lines are taken;
//! a last line without its newline waits for the next poll.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Most bytes read from one file per poll.
const MAX_READ: u64 = 8 << 20;

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
fn fingerprint(path: &Path, upto: u64) -> u64 {
    let mut buf = Vec::new();
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.take(HEAD.min(upto)).read_to_end(&mut buf);
    }
    buf.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// Where to continue in `p` (size `size`) given a stored offset and fingerprint.
fn resume_offset(p: &Path, size: u64, offset: u64, fp: u64) -> u64 {
    if size < offset || (offset > 0 && fingerprint(p, offset) != fp) {
        0 // truncated (copytruncate), maybe written again since
    } else {
        offset
    }
}

/// Reads whole lines of `path` from `offset`; returns them and the offset after the last one.
/// `all` takes a final line without its newline too (the file will not grow any more).
fn read_lines(path: &Path, offset: u64, all: bool) -> std::io::Result<(Vec<String>, u64)> {
    let mut f = std::fs::File::open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    f.take(MAX_READ).read_to_end(&mut buf)?;
    let end = match buf.iter().rposition(|b| *b == b'\n') {
        Some(i) => i + 1,
        None if all || buf.len() as u64 >= MAX_READ => buf.len(),
        None => 0,
    };
    let lines = buf[..end]
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| String::from_utf8_lossy(l.strip_suffix(b"\r").unwrap_or(l)).into_owned())
        .collect();
    Ok((lines, offset + end as u64))
}

fn find_inode(dir: &Path, inode: u64) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .find(|e| e.metadata().is_ok_and(|m| m.ino() == inode && m.is_file()))
        .map(|e| e.path())
}

/// Polls one source under `root` (the container's `/proc/<pid>/root`). `cps` holds this
/// container's positions; returns the new lines and the positions to store with them.
pub fn poll(
    root: &Path,
    name: &str,
    path: &str,
    cps: &HashMap<String, String>,
) -> (Vec<Read1>, Vec<(String, String)>) {
    let full = root.join(path.trim_start_matches('/'));
    let mut lines = Vec::new();
    let mut out_cps = Vec::new();
    let Ok(meta) = std::fs::metadata(&full) else {
        return (lines, out_cps);
    };
    let mut take = |text: Vec<String>| {
        lines.extend(text.into_iter().map(|t| Read1 {
            name: name.to_string(),
            text: t,
        }))
    };
    if meta.is_dir() {
        let Ok(entries) = std::fs::read_dir(&full) else {
            return (lines, out_cps);
        };
        let mut files: Vec<(u64, PathBuf, u64)> = entries
            .flatten()
            .filter_map(|e| {
                let m = e.metadata().ok()?;
                m.is_file().then(|| (m.ino(), e.path(), m.len()))
            })
            .collect();
        // Oldest first (rotated files first, by modification order of their inodes).
        files.sort_by_key(|(_, p, _)| std::fs::metadata(p).and_then(|m| m.modified()).ok());
        for (inode, p, size) in files {
            let key = format!("file:{name}:{inode}");
            let mut offset = cps
                .get(&key)
                .and_then(|s| parse_pos(s))
                .map(|x| x.1)
                .unwrap_or(0);
            if size < offset {
                offset = 0; // truncated
            }
            if size == offset {
                continue;
            }
            if let Ok((text, next)) = read_lines(&p, offset, false) {
                take(text);
                out_cps.push((key, format!("{inode}:{next}")));
            }
        }
        return (lines, out_cps);
    }
    let key = format!("file:{name}");
    let inode = meta.ino();
    let (mut cp_inode, mut offset, fp) = cps
        .get(&key)
        .and_then(|s| parse_pos(s))
        .unwrap_or((inode, 0, 0));
    if cp_inode != inode {
        // Rotated by rename: finish the old file if it is still beside the new one.
        if let Some(Ok((text, _))) = full
            .parent()
            .and_then(|d| find_inode(d, cp_inode))
            .map(|old| read_lines(&old, offset, true))
        {
            take(text);
        }
        cp_inode = inode;
        offset = 0;
    } else {
        offset = resume_offset(&full, meta.len(), offset, fp);
    }
    if let Some(Ok((text, next))) = (meta.len() > offset).then(|| read_lines(&full, offset, false))
    {
        take(text);
        offset = next;
    }
    out_cps.push((
        key,
        format!("{cp_inode}:{offset}:{}", fingerprint(&full, offset)),
    ));
    (lines, out_cps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

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
        let (lines, new) = poll(root, name, path, cps);
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
}
