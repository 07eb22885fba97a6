//! `/proc/PID/mountinfo` and `/proc/mounts` text (pure): one parser for the volume manager
//! (which mounts are alive), the metrics (a container's writable layer) and the host's file
//! systems, and the kernel's octal escapes (`\040` for a space).

/// One line of a mountinfo table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub mountpoint: String,
    pub fstype: String,
    pub source: String,
    /// The file system's own options (`upperdir=...` for an overlay), escapes undone.
    pub super_options: String,
}

/// Every well-formed line; others are skipped.
pub fn parse(text: &str) -> Vec<Entry> {
    text.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mountpoint = unescape(left.split(' ').nth(4)?);
            let mut r = right.split(' ');
            let fstype = r.next()?.to_string();
            let source = unescape(r.next().unwrap_or(""));
            let super_options = unescape(r.next().unwrap_or(""));
            Some(Entry {
                mountpoint,
                fstype,
                source,
                super_options,
            })
        })
        .collect()
}

/// Undoes the kernel's octal escapes of space, tab, newline and backslash (`\040`).
pub fn unescape(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_string();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_with_escapes() {
        let t = "43 27 0:39 / /var/lib/berth/volumes/a\\040b rw,nosuid - fuse.s3fs s3fs rw,user_id=0\n\
                 50 27 0:45 / /mnt/n rw shared:5 - nfs4 srv:/export rw,vers=4.2\n\
                 garbage\n";
        let m = parse(t);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].mountpoint, "/var/lib/berth/volumes/a b");
        assert_eq!(m[0].fstype, "fuse.s3fs");
        assert_eq!(m[1].fstype, "nfs4");
        assert_eq!(m[1].source, "srv:/export");
        assert_eq!(m[1].super_options, "rw,vers=4.2");
        assert_eq!(unescape("/a\\040b\\134"), "/a b\\");
        assert_eq!(unescape("/a\\04"), "/a\\04");
    }
}
