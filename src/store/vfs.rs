//! SQLite's own VFS ("unix"), with every page read and written a point of `pace`.
//!
//! Why: the WAL checkpoint runs inside the commit that crosses `wal_autocheckpoint` and
//! copies about a thousand pages from the WAL into the database in one call: 4 MB read and
//! written with no statement step between, so the progress handler never runs. On the log
//! writer's background thread that was the one stretch of CPU `pace` could not cut into
//! turns; with the access log on it held up the router's next step for milliseconds once a
//! second (BENCHMARKS.md, issue 23). Here each page is a point: on a thread that has not
//! entered `pace::Background` a point costs a thread-local read and nothing else.
//!
//! How: `xOpen` opens the file through the default VFS, then points the file at a copy of
//! the method table it was given in which `xRead` and `xWrite` first call `pace::point` and
//! then the original. The file itself is the default VFS's (same size and layout), so every
//! other method runs unchanged; locks and the WAL index are shared with connections opened
//! through the default VFS in this or another process.
//!
//! Invariants: the VFS and the method tables live for the whole process (SQLite keeps
//! pointers to them); one copy per original table, made under a lock.

use rusqlite::ffi;
use std::ffi::{CStr, c_int, c_void};
use std::sync::{Mutex, OnceLock};

/// The name connections open with (`Connection::open_with_flags_and_vfs`).
pub const NAME: &CStr = c"berth-paced";

/// A copy of a file's method table and the table it copies (first, so a pointer to this is
/// a pointer to the copy).
#[repr(C)]
struct Paced {
    methods: ffi::sqlite3_io_methods,
    original: *const ffi::sqlite3_io_methods,
}

/// The copies made so far.
struct Tables(Vec<&'static Paced>);
// SAFETY: the tables are immutable once made and live for the process; the raw pointers in
// them point at SQLite's static method tables.
unsafe impl Send for Tables {}

static TABLES: Mutex<Tables> = Mutex::new(Tables(Vec::new()));

/// The default VFS, whose methods the paced one calls.
struct Base(*mut ffi::sqlite3_vfs);
// SAFETY: SQLite's VFS objects are process-wide and safe to use from any thread.
unsafe impl Send for Base {}
unsafe impl Sync for Base {}

static BASE: OnceLock<Result<Base, String>> = OnceLock::new();

/// Registers the paced VFS (once; later calls return the first result).
pub fn register() -> Result<(), String> {
    BASE.get_or_init(|| {
        // SAFETY: sqlite3_vfs_find(NULL) returns the default VFS or NULL; the copy is leaked
        // so that it outlives every connection, as sqlite3_vfs_register requires.
        unsafe {
            if ffi::sqlite3_initialize() != ffi::SQLITE_OK {
                return Err("SQLite did not initialise".to_string());
            }
            let base = ffi::sqlite3_vfs_find(std::ptr::null());
            if base.is_null() {
                return Err("SQLite has no default VFS".to_string());
            }
            let mut vfs = *base;
            vfs.pNext = std::ptr::null_mut();
            vfs.zName = NAME.as_ptr();
            vfs.xOpen = Some(open);
            // Every other method is the default VFS's, called with this copy, which carries
            // the same app data, path length and file size.
            let vfs = Box::leak(Box::new(vfs));
            match ffi::sqlite3_vfs_register(vfs, 0) {
                ffi::SQLITE_OK => Ok(Base(base)),
                rc => Err(format!("SQLite refused the paced VFS (code {rc})")),
            }
        }
    })
    .as_ref()
    .map(|_| ())
    .map_err(Clone::clone)
}

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let Some(Ok(base)) = BASE.get() else {
        return ffi::SQLITE_ERROR;
    };
    // SAFETY: SQLite hands a file of the default VFS's size (the copy's szOsFile); the
    // default VFS opens it and sets its method table, which is replaced by a paced copy.
    unsafe {
        let Some(base_open) = (*base.0).xOpen else {
            return ffi::SQLITE_ERROR;
        };
        let rc = base_open(base.0, name, file, flags, out_flags);
        let methods = (*file).pMethods;
        if !methods.is_null() {
            (*file).pMethods = paced(methods);
        }
        rc
    }
}

/// The paced copy of `original` (made once).
fn paced(original: *const ffi::sqlite3_io_methods) -> *const ffi::sqlite3_io_methods {
    let mut tables = TABLES.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(t) = tables.0.iter().find(|t| std::ptr::eq(t.original, original)) {
        return &t.methods;
    }
    // SAFETY: `original` is a method table of the default VFS, static in SQLite.
    let mut methods = unsafe { *original };
    methods.xRead = Some(read);
    methods.xWrite = Some(write);
    let t: &'static Paced = Box::leak(Box::new(Paced { methods, original }));
    tables.0.push(t);
    &t.methods
}

/// The original table of a file opened through [`open`].
///
/// SAFETY: `file`'s method table is a `Paced` (only [`open`] hands such files to SQLite).
unsafe fn original(file: *mut ffi::sqlite3_file) -> *const ffi::sqlite3_io_methods {
    unsafe { (*((*file).pMethods as *const Paced)).original }
}

unsafe extern "C" fn read(
    file: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    crate::pace::point();
    // SAFETY: the default VFS's xRead, on its own file.
    unsafe {
        match (*original(file)).xRead {
            Some(f) => f(file, buf, amount, offset),
            None => ffi::SQLITE_IOERR_READ,
        }
    }
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    crate::pace::point();
    // SAFETY: the default VFS's xWrite, on its own file.
    unsafe {
        match (*original(file)).xWrite {
            Some(f) => f(file, buf, amount, offset),
            None => ffi::SQLITE_IOERR_WRITE,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::pace::POINTS;

    #[test]
    fn a_checkpoint_reads_and_writes_each_page_through_a_point_of_pace() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        let c = super::super::open_conn(&path, 1024).expect("open");
        c.execute_batch(
            "PRAGMA wal_autocheckpoint=0;
             CREATE TABLE t(x BLOB);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
             INSERT INTO t SELECT randomblob(1000) FROM n;",
        )
        .expect("fill the WAL");
        let before = POINTS.with(|p| p.get());
        let (busy, log, copied): (i64, i64, i64) = c
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .expect("checkpoint");
        let points = POINTS.with(|p| p.get()) - before;
        assert_eq!(busy, 0);
        assert!(
            copied >= 500 && copied == log,
            "{copied} of {log} pages copied"
        );
        // Each page copied is read from the WAL and written to the database: about two
        // points a page (a statement's progress handler would give a handful).
        assert!(
            points >= copied as u64,
            "{points} points for {copied} pages: the checkpoint does not run through the paced VFS"
        );
        // And the data is all there, read back through a second connection.
        let r = super::super::open_conn(&path, 256).expect("open a reader");
        let n: i64 = r
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .expect("count");
        assert_eq!(n, 2000);
    }
}
