//! Files written whole or not at all: a crash leaves the old file or the new one, never a
//! short one (secrets, keys, the API token).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

fn temp_beside(path: &Path) -> std::path::PathBuf {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir.join(format!(".{name}.{}.tmp", std::process::id()))
}

fn write_synced(tmp: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let _ = std::fs::remove_file(tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(tmp)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all()
}

/// Creates `path` with `bytes` and `mode` all at once: written to a temporary file beside it,
/// synced, then linked into place (never replacing an existing file), and the directory
/// synced. A crash leaves either no file or the whole file, never a short one. Returns false
/// when `path` already existed (and is left as it was).
pub fn create(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<bool> {
    let tmp = temp_beside(path);
    let linked = write_synced(&tmp, bytes, mode).and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            sync_dir(path)?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Writes `path` with `bytes` and `mode`, replacing what was there in one rename (written to
/// a temporary file beside it and synced first, the directory synced after).
pub fn replace(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let tmp = temp_beside(path);
    let done = write_synced(&tmp, bytes, mode).and_then(|()| std::fs::rename(&tmp, path));
    if done.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    done?;
    sync_dir(path)
}
