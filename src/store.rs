//! SQLite state: the desired state of every app, scale overrides and the event log.
//!
//! Invariants: the only module that knows SQL. One writer connection behind a mutex (SQLite
//! allows one writer anyway; serialising here gives clean errors instead of SQLITE_BUSY);
//! reads use a pool of their own connections, so WAL lets them run beside a write. Schema
//! changes are numbered migrations recorded in `PRAGMA user_version`, applied at open.

use crate::model::{AppSpec, Event, ServiceSpec, Version, VersionState};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the state database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("state database error while {op}: {source}")]
    Sql {
        op: &'static str,
        source: rusqlite::Error,
    },
    #[error("stored spec of app {app:?} is unreadable: {source}")]
    Corrupt {
        app: String,
        source: serde_json::Error,
    },
    #[error(
        "the state database was written by a newer berth (schema {found}, this berth knows {known}): upgrade berth"
    )]
    TooNew { found: i64, known: i64 },
}

fn sql(op: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Sql { op, source }
}

const MIGRATIONS: &[&str] = &[
    // 1: the single-host core.
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
     CREATE TABLE apps (
        name TEXT PRIMARY KEY,
        spec TEXT NOT NULL,
        template TEXT NOT NULL,
        stopped INTEGER NOT NULL DEFAULT 0,
        redeploy_gen INTEGER NOT NULL DEFAULT 0,
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL);
     CREATE TABLE scale_overrides (
        app TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
        service TEXT NOT NULL,
        replicas INTEGER NOT NULL,
        PRIMARY KEY (app, service));
     CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        time_ms INTEGER NOT NULL,
        kind TEXT NOT NULL,
        app TEXT NOT NULL DEFAULT '',
        service TEXT NOT NULL DEFAULT '',
        message TEXT NOT NULL);
     CREATE INDEX events_app ON events(app, id);",
    // 2: versions. Counters outlive versions and apps, so a number is never reused.
    "CREATE TABLE versions (
        app TEXT NOT NULL,
        service TEXT NOT NULL,
        number INTEGER NOT NULL,
        spec TEXT NOT NULL,
        message TEXT NOT NULL DEFAULT '',
        state TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        weight INTEGER NOT NULL DEFAULT 0,
        created_ms INTEGER NOT NULL,
        PRIMARY KEY (app, service, number));
     CREATE TABLE version_counters (
        app TEXT NOT NULL,
        service TEXT NOT NULL,
        last INTEGER NOT NULL,
        PRIMARY KEY (app, service));",
];

/// Events kept; older ones are pruned as new ones arrive.
const EVENTS_KEPT: i64 = 20_000;

/// The version of a service that has the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CurrentVersion {
    pub number: u32,
    pub state: VersionState,
    pub created_ms: i64,
}

/// An app as stored: its spec plus the operator's run-time changes.
#[derive(Debug, Clone)]
pub struct StoredApp {
    pub spec: AppSpec,
    pub template: String,
    pub stopped: bool,
    /// Bumped by `redeploy`: part of every container's spec hash, so all are recreated.
    pub redeploy_gen: i64,
    /// `berth scale` overrides, by service.
    pub scale: std::collections::BTreeMap<String, u32>,
    /// The version each service runs (the one with traffic), by service.
    pub current: std::collections::BTreeMap<String, CurrentVersion>,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// The hash each service's instances must carry (`berth.spec`), computed once at load.
    hashes: std::collections::BTreeMap<String, String>,
}

impl StoredApp {
    /// The hash an instance of `service` must carry: its spec plus the redeploy generation.
    pub fn hash(&self, service: &str) -> &str {
        self.hashes
            .get(service)
            .map(String::as_str)
            .unwrap_or_default()
    }

    /// The same, for a spec that is not stored yet (a deploy comparing old and new).
    pub fn hash_of(svc: &ServiceSpec, redeploy_gen: i64) -> String {
        format!("{}.{}", crate::spec::service_hash(svc), redeploy_gen)
    }
    pub fn replicas(&self, service: &str) -> u32 {
        self.scale
            .get(service)
            .copied()
            .or_else(|| self.spec.services.get(service).map(|s| s.replicas))
            .unwrap_or(0)
    }
}

pub struct Store {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn open_conn(path: &Path) -> Result<Connection, StoreError> {
    let open = |source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    };
    let c = Connection::open(path).map_err(open)?;
    c.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(open)?;
    c.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;")
        .map_err(open)?;
    Ok(c)
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let mut c = open_conn(path)?;
        migrate(&mut c)?;
        Ok(Store {
            path: path.to_path_buf(),
            writer: Mutex::new(c),
            readers: Mutex::new(Vec::new()),
        })
    }

    fn write<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        // A poisoned lock only means another thread panicked mid-call; the connection itself
        // is still consistent (SQLite rolled back the open transaction).
        let mut g = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match conn {
            Some(c) => c,
            None => open_conn(&self.path)?,
        };
        let out = f(&conn);
        let mut pool = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < 8 {
            pool.push(conn);
        }
        out
    }

    /// The node id, generated on first use and kept for the life of the data dir.
    pub fn node_id(&self) -> Result<String, StoreError> {
        self.write(|c| {
            let existing: Option<String> = c
                .query_row("SELECT value FROM meta WHERE key='node_id'", [], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(sql("reading the node id"))?;
            if let Some(id) = existing {
                return Ok(id);
            }
            let id = random_hex(8);
            c.execute(
                "INSERT INTO meta(key, value) VALUES('node_id', ?1)",
                params![id],
            )
            .map_err(sql("saving the node id"))?;
            Ok(id)
        })
    }

    /// Creates or replaces an app's spec. A new deploy clears `berth scale` overrides, so the
    /// template's replica counts are restored, and starts a stopped app. Each service in
    /// `new_versions` gets a new version with all the traffic (earlier ones are stopped);
    /// versions of services no longer in the spec are dropped. Returns the new version numbers.
    pub fn put_app(
        &self,
        spec: &AppSpec,
        template: &str,
        new_versions: &[String],
        message: &str,
    ) -> Result<Vec<(String, u32)>, StoreError> {
        let json = serde_json::to_string(spec).map_err(|source| StoreError::Corrupt {
            app: spec.name.clone(),
            source,
        })?;
        let now = now_ms();
        self.write(|c| {
            let tx = c.transaction().map_err(sql("starting a deploy"))?;
            tx.execute(
                "INSERT INTO apps(name, spec, template, stopped, created_ms, updated_ms)
                 VALUES(?1, ?2, ?3, 0, ?4, ?4)
                 ON CONFLICT(name) DO UPDATE SET spec=excluded.spec, template=excluded.template,
                    stopped=0, updated_ms=excluded.updated_ms",
                params![spec.name, json, template, now],
            )
            .map_err(sql("saving the app"))?;
            tx.execute(
                "DELETE FROM scale_overrides WHERE app=?1",
                params![spec.name],
            )
            .map_err(sql("resetting scale"))?;
            let mut created = Vec::new();
            for svc in new_versions {
                let Some(s) = spec.services.get(svc) else {
                    continue;
                };
                let n = insert_version(&tx, &spec.name, svc, s, message, now)?;
                created.push((svc.clone(), n));
            }
            let existing: Vec<String> = {
                let mut st = tx
                    .prepare("SELECT DISTINCT service FROM versions WHERE app=?1")
                    .map_err(sql("reading versions"))?;
                let rows = st
                    .query_map(params![spec.name], |r| r.get(0))
                    .map_err(sql("reading versions"))?;
                rows.collect::<Result<_, _>>()
                    .map_err(sql("reading versions"))?
            };
            for svc in existing.iter().filter(|s| !spec.services.contains_key(*s)) {
                tx.execute(
                    "DELETE FROM versions WHERE app=?1 AND service=?2",
                    params![spec.name, svc],
                )
                .map_err(sql("dropping versions"))?;
            }
            tx.commit().map_err(sql("committing a deploy"))?;
            Ok(created)
        })
    }

    pub fn versions(&self, app: &str, service: &str) -> Result<Vec<Version>, StoreError> {
        self.read(|c| {
            let mut st = c
                .prepare(
                    "SELECT number, spec, message, state, reason, weight, created_ms FROM versions
                     WHERE app=?1 AND service=?2 ORDER BY number",
                )
                .map_err(sql("reading versions"))?;
            let rows = st
                .query_map(params![app, service], |r| {
                    Ok((
                        r.get::<_, u32>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, u32>(5)?,
                        r.get::<_, i64>(6)?,
                    ))
                })
                .map_err(sql("reading versions"))?;
            let mut out = Vec::new();
            for row in rows {
                let (number, spec, message, state, reason, weight, created_ms) =
                    row.map_err(sql("reading versions"))?;
                let spec: ServiceSpec =
                    serde_json::from_str(&spec).map_err(|source| StoreError::Corrupt {
                        app: app.to_string(),
                        source,
                    })?;
                out.push(Version {
                    app: app.to_string(),
                    service: service.to_string(),
                    number,
                    spec,
                    message,
                    state: VersionState::parse(&state),
                    reason,
                    weight,
                    created_ms,
                });
            }
            Ok(out)
        })
    }

    pub fn set_version_state(
        &self,
        app: &str,
        service: &str,
        number: u32,
        state: VersionState,
        reason: &str,
    ) -> Result<(), StoreError> {
        self.write(|c| {
            c.execute(
                "UPDATE versions SET state=?4, reason=?5 WHERE app=?1 AND service=?2 AND number=?3",
                params![app, service, number, state.as_str(), reason],
            )
            .map_err(sql("saving a version state"))?;
            Ok(())
        })
    }

    /// Deletes a version; returns false when there is none with that number.
    pub fn delete_version(
        &self,
        app: &str,
        service: &str,
        number: u32,
    ) -> Result<bool, StoreError> {
        self.write(|c| {
            let n = c
                .execute(
                    "DELETE FROM versions WHERE app=?1 AND service=?2 AND number=?3",
                    params![app, service, number],
                )
                .map_err(sql("deleting a version"))?;
            Ok(n > 0)
        })
    }

    pub fn get_app(&self, name: &str) -> Result<Option<StoredApp>, StoreError> {
        self.read(|c| load_app(c, name))
    }

    /// Every app, read in one transaction so the list is one consistent snapshot.
    pub fn list_apps(&self) -> Result<Vec<StoredApp>, StoreError> {
        self.read(|c| {
            let tx = c.unchecked_transaction().map_err(sql("listing apps"))?;
            let names: Vec<String> = {
                let mut st = tx
                    .prepare("SELECT name FROM apps ORDER BY name")
                    .map_err(sql("listing apps"))?;
                let rows = st
                    .query_map([], |r| r.get(0))
                    .map_err(sql("listing apps"))?;
                rows.collect::<Result<_, _>>()
                    .map_err(sql("listing apps"))?
            };
            let mut out = Vec::with_capacity(names.len());
            for n in names {
                out.extend(load_app(&tx, &n)?);
            }
            Ok(out)
        })
    }

    /// Returns false when the app does not exist.
    pub fn set_stopped(&self, name: &str, stopped: bool) -> Result<bool, StoreError> {
        self.write(|c| {
            let n = c
                .execute(
                    "UPDATE apps SET stopped=?2, updated_ms=?3 WHERE name=?1",
                    params![name, stopped, now_ms()],
                )
                .map_err(sql("stopping or starting an app"))?;
            Ok(n > 0)
        })
    }

    pub fn bump_redeploy(&self, name: &str) -> Result<bool, StoreError> {
        self.write(|c| {
            let tx = c.transaction().map_err(sql("starting a redeploy"))?;
            let n = tx
                .execute(
                    "UPDATE apps SET redeploy_gen=redeploy_gen+1, stopped=0, updated_ms=?2 WHERE name=?1",
                    params![name, now_ms()],
                )
                .map_err(sql("redeploying an app"))?;
            tx.execute("DELETE FROM scale_overrides WHERE app=?1", params![name])
                .map_err(sql("resetting scale"))?;
            tx.commit().map_err(sql("committing a redeploy"))?;
            Ok(n > 0)
        })
    }

    /// Sets replica overrides for several services at once (all or nothing).
    pub fn set_scale(&self, app: &str, scale: &[(String, u32)]) -> Result<(), StoreError> {
        self.write(|c| {
            let tx = c.transaction().map_err(sql("starting a scale"))?;
            for (svc, n) in scale {
                tx.execute(
                    "INSERT INTO scale_overrides(app, service, replicas) VALUES(?1, ?2, ?3)
                     ON CONFLICT(app, service) DO UPDATE SET replicas=excluded.replicas",
                    params![app, svc, n],
                )
                .map_err(sql("saving scale"))?;
            }
            tx.execute(
                "UPDATE apps SET updated_ms=?2 WHERE name=?1",
                params![app, now_ms()],
            )
            .map_err(sql("saving scale"))?;
            tx.commit().map_err(sql("committing a scale"))
        })
    }

    pub fn delete_app(&self, name: &str) -> Result<bool, StoreError> {
        self.write(|c| {
            let tx = c.transaction().map_err(sql("removing an app"))?;
            let n = tx
                .execute("DELETE FROM apps WHERE name=?1", params![name])
                .map_err(sql("removing an app"))?;
            // The counters stay: a redeployed app continues its numbering.
            tx.execute("DELETE FROM versions WHERE app=?1", params![name])
                .map_err(sql("removing an app's versions"))?;
            tx.commit().map_err(sql("removing an app"))?;
            Ok(n > 0)
        })
    }

    pub fn add_event(
        &self,
        kind: &str,
        app: &str,
        service: &str,
        message: &str,
    ) -> Result<i64, StoreError> {
        self.write(|c| {
            c.execute(
                "INSERT INTO events(time_ms, kind, app, service, message) VALUES(?1, ?2, ?3, ?4, ?5)",
                params![now_ms(), kind, app, service, message],
            )
            .map_err(sql("recording an event"))?;
            let id = c.last_insert_rowid();
            if id % 1000 == 0 {
                c.execute("DELETE FROM events WHERE id <= ?1", params![id - EVENTS_KEPT])
                    .map_err(sql("pruning events"))?;
            }
            Ok(id)
        })
    }

    /// Events after `after_id` (oldest first), optionally of one app; at most `limit`. With
    /// `after_id == 0` and a limit, the newest `limit` events are returned.
    pub fn events(
        &self,
        app: Option<&str>,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<Event>, StoreError> {
        self.read(|c| {
            let mut st = c
                .prepare(
                    "SELECT id, time_ms, kind, app, service, message FROM (
                        SELECT * FROM events WHERE id > ?1 AND (?2 IS NULL OR app = ?2)
                        ORDER BY id DESC LIMIT ?3) ORDER BY id",
                )
                .map_err(sql("reading events"))?;
            let limit = if after_id > 0 { i64::MAX } else { limit };
            let rows = st
                .query_map(params![after_id, app, limit], |r| {
                    Ok(Event {
                        id: r.get(0)?,
                        time_ms: r.get(1)?,
                        kind: r.get(2)?,
                        app: r.get(3)?,
                        service: r.get(4)?,
                        message: r.get(5)?,
                    })
                })
                .map_err(sql("reading events"))?;
            rows.collect::<Result<_, _>>()
                .map_err(sql("reading events"))
        })
    }
}

fn load_app(c: &Connection, name: &str) -> Result<Option<StoredApp>, StoreError> {
    let row = c
        .query_row(
            "SELECT spec, template, stopped, redeploy_gen, created_ms, updated_ms FROM apps WHERE name=?1",
            params![name],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, bool>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            },
        )
        .optional()
        .map_err(sql("reading an app"))?;
    let Some((spec, template, stopped, redeploy_gen, created_ms, updated_ms)) = row else {
        return Ok(None);
    };
    let spec: AppSpec = serde_json::from_str(&spec).map_err(|source| StoreError::Corrupt {
        app: name.to_string(),
        source,
    })?;
    let scale = load_scale(c, name)?;
    let current = load_current(c, name)?;
    let hashes = spec
        .services
        .iter()
        .map(|(n, s)| (n.clone(), StoredApp::hash_of(s, redeploy_gen)))
        .collect();
    Ok(Some(StoredApp {
        spec,
        template,
        stopped,
        redeploy_gen,
        scale,
        current,
        created_ms,
        updated_ms,
        hashes,
    }))
}

fn insert_version(
    tx: &rusqlite::Transaction<'_>,
    app: &str,
    service: &str,
    spec: &ServiceSpec,
    message: &str,
    now: i64,
) -> Result<u32, StoreError> {
    let last: Option<u32> = tx
        .query_row(
            "SELECT last FROM version_counters WHERE app=?1 AND service=?2",
            params![app, service],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql("numbering a version"))?;
    let n = last.unwrap_or(0) + 1;
    tx.execute(
        "INSERT INTO version_counters(app, service, last) VALUES(?1, ?2, ?3)
         ON CONFLICT(app, service) DO UPDATE SET last=excluded.last",
        params![app, service, n],
    )
    .map_err(sql("numbering a version"))?;
    // The new version takes the traffic; earlier ones are stopped (a failed one keeps its reason).
    tx.execute(
        "UPDATE versions SET weight=0, state=CASE WHEN state='failed' THEN state ELSE 'stopped' END
         WHERE app=?1 AND service=?2",
        params![app, service],
    )
    .map_err(sql("stopping earlier versions"))?;
    let json = serde_json::to_string(spec).map_err(|source| StoreError::Corrupt {
        app: app.to_string(),
        source,
    })?;
    tx.execute(
        "INSERT INTO versions(app, service, number, spec, message, state, weight, created_ms)
         VALUES(?1, ?2, ?3, ?4, ?5, 'creating', 100, ?6)",
        params![app, service, n, json, message, now],
    )
    .map_err(sql("saving a version"))?;
    Ok(n)
}

fn load_current(
    c: &Connection,
    app: &str,
) -> Result<std::collections::BTreeMap<String, CurrentVersion>, StoreError> {
    let mut st = c
        .prepare("SELECT service, number, state, created_ms FROM versions WHERE app=?1 AND weight > 0 ORDER BY number")
        .map_err(sql("reading versions"))?;
    let rows = st
        .query_map(params![app], |r| {
            Ok((
                r.get::<_, String>(0)?,
                CurrentVersion {
                    number: r.get(1)?,
                    state: VersionState::parse(&r.get::<_, String>(2)?),
                    created_ms: r.get(3)?,
                },
            ))
        })
        .map_err(sql("reading versions"))?;
    // Ordered by number: the newest with traffic wins.
    rows.collect::<Result<_, _>>()
        .map_err(sql("reading versions"))
}

fn load_scale(
    c: &Connection,
    app: &str,
) -> Result<std::collections::BTreeMap<String, u32>, StoreError> {
    let mut st = c
        .prepare("SELECT service, replicas FROM scale_overrides WHERE app=?1")
        .map_err(sql("reading scale"))?;
    let rows = st
        .query_map(params![app], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?))
        })
        .map_err(sql("reading scale"))?;
    rows.collect::<Result<_, _>>().map_err(sql("reading scale"))
}

fn migrate(c: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sql("reading the schema version"))?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(StoreError::TooNew {
            found: version,
            known,
        });
    }
    for (i, m) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = c.transaction().map_err(sql("migrating the schema"))?;
        tx.execute_batch(m).map_err(sql("migrating the schema"))?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(sql("migrating the schema"))?;
        tx.commit().map_err(sql("migrating the schema"))?;
    }
    Ok(())
}

/// Random bytes as hex, from the system's secure generator.
pub fn random_hex(bytes: usize) -> String {
    use ring::rand::SecureRandom;
    let mut buf = vec![0u8; bytes];
    // SystemRandom only fails when the OS has no entropy source at all; fall back to time so
    // a node id is still produced (it is an identifier, not a secret).
    if ring::rand::SystemRandom::new().fill(&mut buf).is_err() {
        let t = now_ms().to_le_bytes();
        for (i, b) in buf.iter_mut().enumerate() {
            *b = t[i % t.len()] ^ (i as u8);
        }
    }
    hex::encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str) -> AppSpec {
        crate::spec::parse(
            "services:\n  web:\n    image: a\n",
            name,
            &Default::default(),
        )
        .expect("spec")
    }

    #[test]
    fn app_roundtrip_scale_and_redeploy() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Store::open(&dir.path().join("state.db")).expect("open");
        let id = s.node_id().expect("id");
        assert_eq!(id, s.node_id().expect("id again"));
        s.put_app(&spec("shop"), "t", &["web".into()], "")
            .expect("put");
        s.set_scale("shop", &[("web".into(), 4)]).expect("scale");
        let a = s.get_app("shop").expect("get").expect("exists");
        assert_eq!(a.replicas("web"), 4);
        s.bump_redeploy("shop").expect("redeploy");
        let a = s.get_app("shop").expect("get").expect("exists");
        assert_eq!((a.replicas("web"), a.redeploy_gen), (1, 1));
        assert!(s.delete_app("shop").expect("rm"));
        assert!(s.get_app("shop").expect("get").is_none());
    }

    #[test]
    fn version_numbers_are_never_reused() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Store::open(&dir.path().join("state.db")).expect("open");
        let web = vec!["web".to_string()];
        assert_eq!(
            s.put_app(&spec("v"), "t", &web, "one").expect("put"),
            [("web".to_string(), 1)]
        );
        assert_eq!(s.put_app(&spec("v"), "t", &web, "").expect("put")[0].1, 2);
        let v = s.versions("v", "web").expect("versions");
        assert_eq!(
            v.iter()
                .map(|v| (v.number, v.weight, v.state))
                .collect::<Vec<_>>(),
            [
                (1, 0, VersionState::Stopped),
                (2, 100, VersionState::Creating)
            ]
        );
        assert_eq!(
            s.get_app("v").expect("get").expect("app").current["web"].number,
            2
        );
        assert!(s.delete_version("v", "web", 2).expect("rm"));
        assert_eq!(s.put_app(&spec("v"), "t", &web, "").expect("put")[0].1, 3);
        // Even an app removed and deployed again continues its numbering.
        s.delete_app("v").expect("rm app");
        assert!(s.versions("v", "web").expect("versions").is_empty());
        assert_eq!(s.put_app(&spec("v"), "t", &web, "").expect("put")[0].1, 4);
    }

    #[test]
    fn reopen_keeps_state_and_events_page() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("state.db");
        {
            let s = Store::open(&p).expect("open");
            s.put_app(&spec("a"), "t", &[], "").expect("put");
            for i in 0..5 {
                s.add_event("test", "a", "", &format!("e{i}"))
                    .expect("event");
            }
        }
        let s = Store::open(&p).expect("reopen");
        assert_eq!(s.list_apps().expect("list").len(), 1);
        let last2 = s.events(Some("a"), 0, 2).expect("events");
        assert_eq!(
            last2.iter().map(|e| e.message.as_str()).collect::<Vec<_>>(),
            ["e3", "e4"]
        );
        let after = s.events(None, last2[0].id, 10).expect("events");
        assert_eq!(after.len(), 1);
    }
}
