//! SQLite state: the desired state of every app, scale overrides, the event log, the durable
//! outbox (`outbox`), the log store (`logs`) and volume definitions (`volumes`).
//!
//! Invariants: the only module that knows SQL. One writer connection behind a mutex (SQLite
//! allows one writer anyway; serialising here gives clean errors instead of SQLITE_BUSY);
//! reads use a pool of their own connections, so WAL lets them run beside a write. Schema
//! changes are numbered migrations recorded in `PRAGMA user_version`, applied at open.

use crate::clock::now_ms;
use crate::ids::random_hex;
use crate::model::{AppSpec, Event, Release, ServiceSpec, Version, VersionState};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

mod access;
mod cluster;
mod configsets;
mod jobs;
mod logs;
mod outbox;
mod registries;
mod triggers;
mod vfs;
mod volumes;
pub use access::AccessRow;
pub use cluster::MemberRow;
pub use configsets::{AppInputsRow, ConfigItemRow, ConfigSetRow};
pub use jobs::{AttemptRow, RunRow};

pub use logs::{LogBatch, LogLine, LogQuery, Packed};
pub use outbox::{OutboxRow, OutboxStats};
pub use registries::RegistryRow;
pub use triggers::TriggerRow;
pub use volumes::VolumeRow;

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
    /// The release rules refused the change (nothing was written).
    #[error(transparent)]
    Refused(#[from] crate::plan::release::ReleaseError),
    /// The change conflicts with what is stored (the message says what to do).
    #[error("{0}")]
    Conflict(String),
}

impl StoreError {
    /// The database or its file system is out of space (SQLITE_FULL, or ENOSPC under it).
    pub fn is_disk_full(&self) -> bool {
        let source = match self {
            StoreError::Sql { source, .. } | StoreError::Open { source, .. } => source,
            _ => return false,
        };
        matches!(
            source,
            rusqlite::Error::SqliteFailure(e, _)
                if e.code == rusqlite::ErrorCode::DiskFull
                    || e.extended_code == rusqlite::ffi::SQLITE_IOERR_WRITE
                    || e.extended_code == rusqlite::ffi::SQLITE_IOERR_FSYNC
        )
    }
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
    // 3: several versions at once: the release step each is in, and when it last started.
    "ALTER TABLE versions ADD COLUMN release TEXT NOT NULL DEFAULT '';
     ALTER TABLE versions ADD COLUMN since_ms INTEGER NOT NULL DEFAULT 0;
     UPDATE versions SET since_ms = created_ms;",
    // 4: a service deployed before versions existed gets one, normal, with all the traffic
    // (so every service always has a live version; its old containers retire once the
    // version's own run ready).
    "INSERT INTO versions(app, service, number, spec, message, state, reason, weight,
                          created_ms, release, since_ms)
     SELECT a.name, s.key,
            COALESCE((SELECT last FROM version_counters c
                      WHERE c.app = a.name AND c.service = s.key), 0) + 1,
            s.value, '', 'normal', '', 100, a.updated_ms, '', a.updated_ms
     FROM apps a, json_each(a.spec, '$.services') s
     WHERE NOT EXISTS (SELECT 1 FROM versions v
                       WHERE v.app = a.name AND v.service = s.key
                         AND (v.weight > 0 OR v.release <> ''));
     INSERT INTO version_counters(app, service, last)
     SELECT app, service, MAX(number) FROM versions WHERE true GROUP BY app, service
     ON CONFLICT(app, service) DO UPDATE SET last = MAX(last, excluded.last);",
    // 5: the durable outbox (line protocol / syslog batches per sink), its drop counters,
    // the log store and the log collectors' checkpoints.
    "CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        sink TEXT NOT NULL,
        lines INTEGER NOT NULL,
        body BLOB NOT NULL);
     CREATE INDEX outbox_sink ON outbox(sink, id);
     CREATE TABLE outbox_dropped (
        sink TEXT PRIMARY KEY,
        lines INTEGER NOT NULL DEFAULT 0,
        reason TEXT NOT NULL DEFAULT '');
     CREATE TABLE log_lines (
        id INTEGER PRIMARY KEY,
        time_ns INTEGER NOT NULL,
        app TEXT NOT NULL,
        service TEXT NOT NULL,
        version TEXT NOT NULL,
        slot INTEGER NOT NULL,
        node TEXT NOT NULL,
        container TEXT NOT NULL,
        stream TEXT NOT NULL,
        message TEXT NOT NULL);
     CREATE INDEX log_lines_app ON log_lines(app, service, id);
     CREATE INDEX log_lines_time ON log_lines(time_ns);
     CREATE TABLE log_checkpoints (
        container TEXT NOT NULL,
        source TEXT NOT NULL,
        position TEXT NOT NULL,
        PRIMARY KEY (container, source));",
    // 6: alarm rules added at run time (`berth alarm add`), as JSON.
    "CREATE TABLE alarms (name TEXT PRIMARY KEY, rule TEXT NOT NULL);",
    // 7: volumes (credentials sealed, see volumes::secret).
    "CREATE TABLE volumes (
        name TEXT PRIMARY KEY,
        driver TEXT NOT NULL,
        opts TEXT NOT NULL,
        sealed BLOB NOT NULL,
        app TEXT NOT NULL DEFAULT '',
        created_ms INTEGER NOT NULL);",
    // 8: one-shot containers the agent saw done, so a reboot does not run them again.
    "CREATE TABLE seen_done (container_id TEXT PRIMARY KEY, finished_ms INTEGER NOT NULL);",
    // 9: the cluster: join tokens' uses on this member, and the members last known (whom to
    // rejoin through after a restart).
    "CREATE TABLE cluster_tokens (id TEXT PRIMARY KEY, used INTEGER NOT NULL);
     CREATE TABLE cluster_members (
        node TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        addr TEXT NOT NULL,
        state TEXT NOT NULL,
        seen_ms INTEGER NOT NULL);",
    // 10: where this node's apps' instances run in a cluster (placement's assignments).
    "CREATE TABLE assignments (
        app TEXT NOT NULL,
        service TEXT NOT NULL,
        version INTEGER NOT NULL,
        slot INTEGER NOT NULL,
        node TEXT NOT NULL,
        PRIMARY KEY (app, service, version, slot));",
    // 11: a move under way keeps the slot on its old node until the new instance runs.
    "ALTER TABLE assignments ADD COLUMN from_node TEXT NOT NULL DEFAULT '';",
    // 12: an app's ownership epoch, bumped when a member takes it over from a lost owner
    // (the copy with the higher epoch wins when the two meet again).
    "ALTER TABLE apps ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;",
    // 13: the other members' records as last pulled (a host started while a member is away
    // still shows that member's apps and can take them over from their Spec records).
    "CREATE TABLE cluster_replicas (
        node TEXT PRIMARY KEY,
        epoch INTEGER NOT NULL,
        version INTEGER NOT NULL,
        records TEXT NOT NULL);",
    // 14: jobs (issue 21): runs, their containers' attempts, cron schedule state, and each
    // app's last run number (kept when the app is removed, so names are never reused).
    "CREATE TABLE job_runs (
        app TEXT NOT NULL,
        run INTEGER NOT NULL,
        trigger TEXT NOT NULL,
        due_ms INTEGER NOT NULL,
        state TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        started_ms INTEGER NOT NULL DEFAULT 0,
        ended_ms INTEGER NOT NULL DEFAULT 0,
        tasks TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY (app, run));
     CREATE TABLE job_attempts (
        app TEXT NOT NULL,
        run INTEGER NOT NULL,
        task TEXT NOT NULL,
        slot INTEGER NOT NULL,
        attempt INTEGER NOT NULL,
        container TEXT NOT NULL,
        started_ms INTEGER NOT NULL,
        ended_ms INTEGER NOT NULL DEFAULT 0,
        exit_code INTEGER,
        removed INTEGER NOT NULL DEFAULT 0,
        node TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (app, run, task, slot, attempt));
     CREATE TABLE job_schedules (
        app TEXT PRIMARY KEY,
        suspended INTEGER NOT NULL DEFAULT 0,
        last_due_ms INTEGER NOT NULL DEFAULT 0);
     CREATE TABLE job_counters (app TEXT PRIMARY KEY, last_run INTEGER NOT NULL);",
    // 15: services (slot 0) and single slots stopped by `berth stop APP/SERVICE[/SLOT]`.
    "CREATE TABLE stopped_services (
        app TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
        service TEXT NOT NULL,
        slot INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (app, service, slot));",
    // 16: private registry logins (`berth registry login`), the password sealed.
    "CREATE TABLE registries (
        host TEXT PRIMARY KEY,
        username TEXT NOT NULL,
        sealed BLOB NOT NULL,
        created_ms INTEGER NOT NULL);",
    // 17: redeploy triggers (webhooks), the secret kept as a digest.
    "CREATE TABLE triggers (
        id TEXT PRIMARY KEY,
        app TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
        action TEXT NOT NULL,
        service TEXT NOT NULL DEFAULT '',
        replicas INTEGER NOT NULL DEFAULT 0,
        secret_digest BLOB NOT NULL,
        created_ms INTEGER NOT NULL,
        calls INTEGER NOT NULL DEFAULT 0,
        last_ms INTEGER NOT NULL DEFAULT 0);",
    // 18: access tokens with roles, each kept as its SHA-256.
    "CREATE TABLE access_tokens (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        digest BLOB NOT NULL UNIQUE,
        created_ms INTEGER NOT NULL);",
    // 19: config sets (`berth configset`), secret items sealed; what each app was deployed
    // with (sealed inputs, its bound set and that set's revision then).
    "CREATE TABLE config_sets (
        name TEXT PRIMARY KEY,
        description TEXT NOT NULL DEFAULT '',
        rev INTEGER NOT NULL,
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL);
     CREATE TABLE config_items (
        set_name TEXT NOT NULL REFERENCES config_sets(name) ON DELETE CASCADE,
        key TEXT NOT NULL,
        value BLOB NOT NULL,
        secret INTEGER NOT NULL,
        PRIMARY KEY (set_name, key));
     CREATE TABLE app_inputs (
        app TEXT PRIMARY KEY,
        config_set TEXT NOT NULL DEFAULT '',
        set_rev INTEGER NOT NULL DEFAULT 0,
        sealed BLOB NOT NULL);",
    // 20: routes shared between services: their weights by service (`berth traffic APP
    // --route`), and a blue/green release between services under way (with what abort
    // restores).
    "CREATE TABLE route_weights (
        app TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
        route TEXT NOT NULL,
        service TEXT NOT NULL,
        weight INTEGER NOT NULL,
        PRIMARY KEY (app, route, service));
     CREATE TABLE service_releases (
        app TEXT PRIMARY KEY REFERENCES apps(name) ON DELETE CASCADE,
        old TEXT NOT NULL,
        new TEXT NOT NULL,
        previous_spec TEXT NOT NULL,
        previous_template TEXT NOT NULL,
        since_ms INTEGER NOT NULL);",
    // 21: a run of log lines from one source stored as one row (`store::logs`, "Packed
    // rows"): how many lines the row holds (1: `message` is the line itself).
    "ALTER TABLE log_lines ADD COLUMN lines INTEGER NOT NULL DEFAULT 1;",
    // 22: the room the stored lines take, as retention counts it (`store::logs`,
    // `LINE_OVERHEAD` = 64 a line), kept up to date by the writes that add and delete lines
    // so a retention pass does not read every stored message to sum it.
    "CREATE TABLE log_totals (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        bytes INTEGER NOT NULL);
     INSERT INTO log_totals(id, bytes)
     SELECT 0, COALESCE(SUM(length(CAST(message AS BLOB)) + lines * 64), 0) FROM log_lines;",
];

/// Events kept; older ones are pruned as new ones arrive.
const EVENTS_KEPT: i64 = 20_000;

/// A version that runs instances (it has traffic or a release step under way), with the hash
/// its instances carry (`berth.spec`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LiveVersion {
    pub version: Version,
    pub hash: String,
}

impl LiveVersion {
    /// Is `i` (an instance of this version's service) an up-to-date instance of it?
    pub fn runs(&self, i: &crate::model::Instance) -> bool {
        i.version_number() == Some(self.version.number) && i.spec_hash == self.hash
    }
}

/// An app as stored: its spec plus the operator's run-time changes. In a cluster the owner
/// replicates it whole (`Kind::Spec`), so a node placement gave slots of it runs them.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StoredApp {
    pub spec: AppSpec,
    pub template: String,
    pub stopped: bool,
    /// Bumped by `redeploy`: part of every container's spec hash, so all are recreated.
    pub redeploy_gen: i64,
    /// `berth scale` overrides, by service.
    pub scale: std::collections::BTreeMap<String, u32>,
    /// Services stopped by `berth stop APP/SERVICE[/SLOT]`: an empty set stops the whole
    /// service, otherwise only the slots named. A deploy or redeploy clears them.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub stopped_services: std::collections::BTreeMap<String, std::collections::BTreeSet<u32>>,
    /// The versions that run instances, by service, oldest first; hashes computed at load.
    pub versions: std::collections::BTreeMap<String, Vec<LiveVersion>>,
    /// Failed versions without traffic, by service: their instances go at once.
    pub failed: std::collections::BTreeMap<String, Vec<u32>>,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// The node that owns it, for a replica of another node's app; empty for this node's.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub owner: String,
    /// Ownership epoch: 0 for an app deployed here, one more each time a member takes it
    /// over from a lost owner. Where two members hold it, the higher epoch owns it.
    #[serde(default)]
    pub epoch: u64,
    /// Weights set on routes its services share, by route key then service (none set:
    /// equal shares).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub route_weights: crate::plan::routes::RouteWeights,
    /// A blue/green release between services under way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_release: Option<crate::model::ServiceRelease>,
}

/// What `berth release abort APP` restores: the app as it was before the blue/green deploy
/// between services.
#[derive(Debug, Clone)]
pub struct ReleaseStart {
    pub release: crate::model::ServiceRelease,
    pub previous_spec: AppSpec,
    pub previous_template: String,
}

impl StoredApp {
    /// The live versions of a service.
    pub fn live(&self, service: &str) -> &[LiveVersion] {
        self.versions
            .get(service)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// The live version `number` of a service.
    pub fn live_version(&self, service: &str, number: u32) -> Option<&LiveVersion> {
        self.live(service)
            .iter()
            .find(|l| l.version.number == number)
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
    ack_sync: AckSync,
    /// Bumped after every write, whatever it changed.
    writes: std::sync::atomic::AtomicU64,
    /// Bumped after a write to one app's rows only (a deploy, a version's state, a scale),
    /// once the app's name is in `dirty`.
    app_writes: std::sync::atomic::AtomicU64,
    /// The apps written through `write_app` since the cached list was read.
    dirty: Mutex<std::collections::BTreeSet<String>>,
    /// `list_apps` as read at a (`writes`, `app_writes`) count: served again only while no
    /// write came since (loops on a host with a thousand apps read them every few seconds);
    /// after writes to single apps only, it is read again for those apps alone, the others'
    /// records shared with the list before (a thousand deploys no longer parse a thousand
    /// apps each, which left the heap fragmented).
    apps_cache: Mutex<Option<AppsCache>>,
    /// Held while the cached list is rebuilt (one rebuild at a time: two would each take a
    /// part of `dirty`).
    rebuild: Mutex<()>,
}

/// The app list as read at a count of writes.
struct AppsCache {
    writes: u64,
    app_writes: u64,
    apps: AppList,
}

/// Every app, sorted by name: one snapshot, shared; each app's record shared with the
/// snapshots before it that it did not change in.
pub type AppList = std::sync::Arc<Vec<std::sync::Arc<StoredApp>>>;

/// How writes that acknowledge a user's command are committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckSync {
    /// The WAL is synced at the commit: survives a power loss (the agent's mode).
    Full,
    /// Synced at checkpoints only (for comparison in benchmarks).
    Normal,
}

impl AckSync {
    fn pragma(self) -> &'static str {
        match self {
            AckSync::Full => "PRAGMA synchronous=FULL",
            AckSync::Normal => "PRAGMA synchronous=NORMAL",
        }
    }
}

/// SQLite virtual-machine steps between two calls of the progress handler (a few µs).
const PACE_OPS: i32 = 1000;

/// The writer's page cache, KiB: its inserts walk the log's indexes.
const WRITER_CACHE_KIB: u32 = 1024;
/// Each pooled reader's: most reads are one app's rows or a scan larger than any cache.
const READER_CACHE_KIB: u32 = 256;

fn open_conn(path: &Path, cache_kib: u32) -> Result<Connection, StoreError> {
    let open = |source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    };
    // Through the paced VFS when it registered (it always does; without it the checkpoint
    // is one long stretch again, nothing worse).
    let mut c = match vfs::register() {
        Ok(()) => Connection::open_with_flags_and_vfs(path, OpenFlags::default(), vfs::NAME),
        Err(e) => {
            tracing::warn!(error = %e, "SQLite's paced VFS is not available");
            Connection::open(path)
        }
    }
    .map_err(open)?;
    c.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(open)?;
    // Long statements (retention's deletes, a big batch) give the CPU up in turns when a
    // background thread runs them (`pace`); elsewhere the handler does nothing.
    c.progress_handler(
        PACE_OPS,
        Some(|| {
            crate::pace::point();
            false
        }),
    )
    .map_err(open)?;
    // Up to nine connections (the writer and a pool of readers), each with a page cache of
    // `cache_kib` (SQLite's default is 2 MiB): the kernel's page cache holds the file anyway.
    c.execute_batch(&format!(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;
         PRAGMA cache_size=-{cache_kib};"
    ))
    .map_err(open)?;
    Ok(c)
}

impl Store {
    /// Like [`Store::open`], with the commit mode of acknowledged writes given (the
    /// benchmark compares both; the agent always uses [`AckSync::Full`]).
    pub fn open_with(path: &Path, ack_sync: AckSync) -> Result<Store, StoreError> {
        let mut s = Store::open(path)?;
        s.ack_sync = ack_sync;
        Ok(s)
    }

    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let mut c = open_conn(path, WRITER_CACHE_KIB)?;
        migrate(&mut c)?;
        Ok(Store {
            path: path.to_path_buf(),
            writer: Mutex::new(c),
            readers: Mutex::new(Vec::new()),
            ack_sync: AckSync::Full,
            writes: std::sync::atomic::AtomicU64::new(0),
            app_writes: std::sync::atomic::AtomicU64::new(0),
            dirty: Mutex::new(std::collections::BTreeSet::new()),
            apps_cache: Mutex::new(None),
            rebuild: Mutex::new(()),
        })
    }

    /// Folds the write-ahead log into the database file (at shutdown, so `state.db` alone
    /// is complete, e.g. for a backup copy taken while the agent is stopped).
    pub fn checkpoint_wal(&self) {
        let r = self.write_unlisted(|c| {
            c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .map_err(sql("checkpointing the WAL"))
        });
        if let Err(e) = r {
            tracing::warn!(error = %e, "cannot checkpoint the WAL");
        }
    }

    /// A write to the rows of app `app` only (its row and its versions, scale, stop marks,
    /// route weights, release): the cached list reads that app again, not every app.
    /// `acked`: committed as [`Store::write_acked`].
    fn write_app<T>(
        &self,
        app: &str,
        acked: bool,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let out = if acked {
            self.write_acked_unlisted(f)
        } else {
            self.write_unlisted(f)
        };
        // After the commit, the name, then the count: a list read after the count changed
        // finds the name (see `apps_shared`).
        self.dirty
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(app.to_string());
        self.app_writes
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        out
    }

    /// A write to tables the app list never reads (logs, outbox, events, job runs, cluster
    /// records, seen containers: not `apps`, `versions`, `scale_overrides`): it leaves the
    /// cached list (`apps_shared`) standing, so the agent's own frequent writes do not make
    /// every reader of a thousand apps parse them all again. A write to one app's rows uses `write_app`; any other, `write_acked`.
    fn write_unlisted<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        // A poisoned lock only means another thread panicked mid-call; the connection itself
        // is still consistent (SQLite rolled back the open transaction).
        let mut g = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    /// A write that acknowledges a user's command (deploy, scale, stop, rm, traffic, alarm,
    /// volume): committed with `synchronous=FULL`, so the WAL is on disk before the answer
    /// and a power loss cannot roll back a deploy whose containers would then look like
    /// orphans. The agent's own frequent writes (logs, outbox, events, states) stay NORMAL,
    /// which cannot corrupt, only lose the last moments. Cost: `benches/store.rs`.
    fn write_acked<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let out = self.write_acked_unlisted(f);
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        out
    }

    /// [`Store::write_acked`] to tables the app list never reads (see `write_unlisted`).
    fn write_acked_unlisted<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.write_unlisted(|c| {
            c.execute_batch(self.ack_sync.pragma())
                .map_err(sql("asking for a durable commit"))?;
            let out = f(c);
            let back = c
                .execute_batch("PRAGMA synchronous=NORMAL")
                .map_err(sql("restoring the commit mode"));
            let out = out?;
            back?;
            Ok(out)
        })
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match conn {
            Some(c) => c,
            None => open_conn(&self.path, READER_CACHE_KIB)?,
        };
        let out = f(&conn);
        let mut pool = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < 8 {
            pool.push(conn);
        }
        out
    }

    /// Adds or replaces an alarm rule.
    pub fn put_alarm(&self, name: &str, rule_json: &str) -> Result<(), StoreError> {
        self.write_acked(|c| {
            c.execute(
                "INSERT INTO alarms(name, rule) VALUES (?1, ?2)
                 ON CONFLICT(name) DO UPDATE SET rule = excluded.rule",
                params![name, rule_json],
            )
            .map_err(sql("saving an alarm"))?;
            Ok(())
        })
    }

    /// Removes an alarm rule; false when there was none of that name.
    pub fn remove_alarm(&self, name: &str) -> Result<bool, StoreError> {
        self.write_acked(|c| {
            Ok(
                c.execute("DELETE FROM alarms WHERE name = ?1", params![name])
                    .map_err(sql("removing an alarm"))?
                    > 0,
            )
        })
    }

    /// Stored alarm rules as JSON, by name.
    pub fn alarms(&self) -> Result<Vec<String>, StoreError> {
        self.read(|c| strings(c, "SELECT rule FROM alarms ORDER BY name", "reading alarms"))
    }

    /// Containers the agent saw done (exited 0 on their own while the host was up), with
    /// when they finished.
    pub fn seen_done(&self) -> Result<std::collections::BTreeMap<String, i64>, StoreError> {
        self.read(|c| {
            let mut st = c
                .prepare("SELECT container_id, finished_ms FROM seen_done")
                .map_err(sql("reading done containers"))?;
            let rows = st
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .map_err(sql("reading done containers"))?;
            rows.collect::<Result<_, _>>()
                .map_err(sql("reading done containers"))
        })
    }

    /// Replaces the done containers with `done` (containers gone are forgotten).
    pub fn set_seen_done(
        &self,
        done: &std::collections::BTreeMap<String, i64>,
    ) -> Result<(), StoreError> {
        self.write_unlisted(|c| {
            let tx = c.transaction().map_err(sql("saving done containers"))?;
            tx.execute("DELETE FROM seen_done", [])
                .map_err(sql("saving done containers"))?;
            for (id, f) in done {
                tx.execute(
                    "INSERT INTO seen_done(container_id, finished_ms) VALUES (?1, ?2)",
                    params![id, f],
                )
                .map_err(sql("saving done containers"))?;
            }
            tx.commit().map_err(sql("saving done containers"))
        })
    }

    /// The node id, generated on first use and kept for the life of the data dir.
    pub fn node_id(&self) -> Result<String, StoreError> {
        self.write_unlisted(|c| {
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
    /// `new_versions` gets a new version in the given release step (`release::Step::Deploy`;
    /// when the release rules refuse it, nothing is written: `StoreError::Refused`); versions
    /// of services no longer in the spec are dropped. Returns each new version's number and
    /// the release decisions it caused.
    pub fn put_app(
        &self,
        spec: &AppSpec,
        template: &str,
        new_versions: &[(String, Release)],
        message: &str,
    ) -> Result<Vec<(String, u32, Vec<crate::plan::release::Decision>)>, StoreError> {
        self.put_app_with(
            spec,
            template,
            new_versions,
            message,
            &Default::default(),
            None,
        )
    }

    /// [`Store::put_app`] with the weights of the routes its services share (replacing any),
    /// and `start`: the blue/green release between services this deploy begins.
    pub fn put_app_with(
        &self,
        spec: &AppSpec,
        template: &str,
        new_versions: &[(String, Release)],
        message: &str,
        route_weights: &crate::plan::routes::RouteWeights,
        start: Option<&ReleaseStart>,
    ) -> Result<Vec<(String, u32, Vec<crate::plan::release::Decision>)>, StoreError> {
        let start = match start {
            Some(s) => Some((
                s,
                serde_json::to_string(&s.previous_spec).map_err(|source| StoreError::Corrupt {
                    app: spec.name.clone(),
                    source,
                })?,
            )),
            None => None,
        };
        let json = serde_json::to_string(spec).map_err(|source| StoreError::Corrupt {
            app: spec.name.clone(),
            source,
        })?;
        let now = now_ms();
        self.write_app(&spec.name, true, |c| {
            let tx = c.transaction().map_err(sql("starting a deploy"))?;
            tx.execute(
                "INSERT INTO apps(name, spec, template, stopped, created_ms, updated_ms)
                 VALUES(?1, ?2, ?3, 0, ?4, ?4)
                 ON CONFLICT(name) DO UPDATE SET spec=excluded.spec, template=excluded.template,
                    stopped=0, updated_ms=excluded.updated_ms",
                params![spec.name, json, template, now],
            )
            .map_err(sql("saving the app"))?;
            for table in ["scale_overrides", "stopped_services"] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE app=?1"),
                    params![spec.name],
                )
                .map_err(sql("resetting scale"))?;
            }
            write_route_weights(&tx, &spec.name, route_weights)?;
            tx.execute(
                "DELETE FROM service_releases WHERE app=?1",
                params![spec.name],
            )
            .map_err(sql("saving a release between services"))?;
            if let Some((s, previous)) = &start {
                tx.execute(
                    "INSERT INTO service_releases(app, old, new, previous_spec, previous_template, since_ms)
                     VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        spec.name,
                        s.release.old.join(","),
                        s.release.new.join(","),
                        previous,
                        s.previous_template,
                        s.release.since_ms
                    ],
                )
                .map_err(sql("saving a release between services"))?;
            }
            let mut created = Vec::new();
            for (svc, release) in new_versions {
                let Some(s) = spec.services.get(svc) else {
                    continue;
                };
                let number = next_version_number(&tx, &spec.name, svc)?;
                let mut vs = read_versions(&tx, &spec.name, svc, false)?;
                let applied = crate::plan::release::apply(
                    &mut vs,
                    &crate::plan::release::Step::Deploy(Box::new(Version {
                        app: spec.name.clone(),
                        service: svc.clone(),
                        number,
                        spec: s.clone(),
                        message: message.to_string(),
                        state: VersionState::Creating,
                        reason: String::new(),
                        weight: 0,
                        created_ms: now,
                        release: *release,
                        since_ms: now,
                    })),
                    now,
                )?;
                write_versions(&tx, &vs)?;
                created.push((svc.clone(), number, applied.decisions));
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

    /// Drops one service from a deployed app (`berth rm APP/SERVICE`): the app's spec and
    /// template become `spec` and `template` (which no longer have it), and the service's
    /// versions, scale override and stop marks go; the other services keep theirs.
    pub fn remove_service(
        &self,
        spec: &AppSpec,
        template: &str,
        service: &str,
    ) -> Result<bool, StoreError> {
        let json = serde_json::to_string(spec).map_err(|source| StoreError::Corrupt {
            app: spec.name.clone(),
            source,
        })?;
        self.write_app(&spec.name, true, |c| {
            let tx = c.transaction().map_err(sql("removing a service"))?;
            let n = tx
                .execute(
                    "UPDATE apps SET spec=?2, template=?3, updated_ms=?4 WHERE name=?1",
                    params![spec.name, json, template, now_ms()],
                )
                .map_err(sql("removing a service"))?;
            for table in [
                "versions",
                "scale_overrides",
                "stopped_services",
                "route_weights",
            ] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE app=?1 AND service=?2"),
                    params![spec.name, service],
                )
                .map_err(sql("removing a service"))?;
            }
            tx.commit().map_err(sql("removing a service"))?;
            Ok(n > 0)
        })
    }

    /// Sets the weights of one shared route (`berth traffic APP --route`).
    pub fn set_route_weights(
        &self,
        app: &str,
        route: &str,
        weights: &std::collections::BTreeMap<String, u32>,
    ) -> Result<(), StoreError> {
        self.write_app(app, true, |c| {
            let tx = c.transaction().map_err(sql("writing route weights"))?;
            tx.execute(
                "DELETE FROM route_weights WHERE app=?1 AND route=?2",
                params![app, route],
            )
            .map_err(sql("writing route weights"))?;
            for (service, weight) in weights {
                tx.execute(
                    "INSERT INTO route_weights(app, route, service, weight) VALUES(?1, ?2, ?3, ?4)",
                    params![app, route, service, weight],
                )
                .map_err(sql("writing route weights"))?;
            }
            tx.commit().map_err(sql("writing route weights"))
        })
    }

    /// The blue/green release between services under way, with what abort restores.
    pub fn release_start(&self, app: &str) -> Result<Option<ReleaseStart>, StoreError> {
        let Some((release, spec, previous_template)) =
            self.read(|c| load_service_release(c, app))?
        else {
            return Ok(None);
        };
        let previous_spec = serde_json::from_str(&spec).map_err(|source| StoreError::Corrupt {
            app: app.to_string(),
            source,
        })?;
        Ok(Some(ReleaseStart {
            release,
            previous_spec,
            previous_template,
        }))
    }

    /// Ends a blue/green release between services: the app's spec and template become
    /// `spec` and `template`, the services `dropped` lose their versions, scale overrides and
    /// stop marks, the route weights become `route_weights`.
    pub fn finish_service_release(
        &self,
        spec: &AppSpec,
        template: &str,
        dropped: &[String],
        route_weights: &crate::plan::routes::RouteWeights,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(spec).map_err(|source| StoreError::Corrupt {
            app: spec.name.clone(),
            source,
        })?;
        self.write_app(&spec.name, true, |c| {
            let tx = c.transaction().map_err(sql("finishing a release"))?;
            tx.execute(
                "UPDATE apps SET spec=?2, template=?3, updated_ms=?4 WHERE name=?1",
                params![spec.name, json, template, now_ms()],
            )
            .map_err(sql("finishing a release"))?;
            for service in dropped {
                for table in ["versions", "scale_overrides", "stopped_services"] {
                    tx.execute(
                        &format!("DELETE FROM {table} WHERE app=?1 AND service=?2"),
                        params![spec.name, service],
                    )
                    .map_err(sql("finishing a release"))?;
                }
            }
            write_route_weights(&tx, &spec.name, route_weights)?;
            tx.execute(
                "DELETE FROM service_releases WHERE app=?1",
                params![spec.name],
            )
            .map_err(sql("finishing a release"))?;
            tx.commit().map_err(sql("finishing a release"))
        })
    }

    /// Every version of a service, oldest first.
    pub fn versions(&self, app: &str, service: &str) -> Result<Vec<Version>, StoreError> {
        self.read(|c| read_versions(c, app, service, false))
    }

    /// Changes a service's versions in one transaction: `f` gets them all (oldest first) and
    /// what it leaves is saved, unless it fails, in which case nothing is.
    pub fn edit_versions<T, E: From<StoreError>>(
        &self,
        app: &str,
        service: &str,
        f: impl FnOnce(&mut Vec<Version>) -> Result<T, E>,
    ) -> Result<T, E> {
        self.write_app(app, true, |c| {
            let tx = c.transaction().map_err(sql("starting a version change"))?;
            let mut vs = read_versions(&tx, app, service, false)?;
            match f(&mut vs) {
                Ok(t) => {
                    write_versions(&tx, &vs)?;
                    tx.commit().map_err(sql("saving versions"))?;
                    Ok(Ok(t))
                }
                Err(e) => Ok(Err(e)),
            }
        })?
    }

    pub fn set_version_state(
        &self,
        app: &str,
        service: &str,
        number: u32,
        state: VersionState,
        reason: &str,
    ) -> Result<(), StoreError> {
        self.write_app(app, false, |c| {
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
        self.write_app(app, true, |c| {
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
        Ok(self.apps_shared()?.iter().map(|a| (**a).clone()).collect())
    }

    /// [`Store::list_apps`] without a copy: the snapshot itself, shared (for readers that
    /// only look, every few seconds, at what may be a thousand apps).
    pub fn apps_shared(&self) -> Result<AppList, StoreError> {
        use std::sync::atomic::Ordering::Acquire;
        let fresh = |c: &Option<AppsCache>, w: u64, aw: u64| {
            c.as_ref()
                .filter(|c| c.writes == w && c.app_writes == aw)
                .map(|c| c.apps.clone())
        };
        let (w, aw) = (self.writes.load(Acquire), self.app_writes.load(Acquire));
        if let Some(apps) = fresh(&self.cache(), w, aw) {
            return Ok(apps);
        }
        let _one = self.rebuild.lock().unwrap_or_else(|p| p.into_inner());
        // The counts are read before the names and the rows: a write that commits meanwhile
        // makes this copy stale at once, and its name stays for the next rebuild.
        let (w, aw) = (self.writes.load(Acquire), self.app_writes.load(Acquire));
        let before = {
            let c = self.cache();
            if let Some(apps) = fresh(&c, w, aw) {
                return Ok(apps);
            }
            c.as_ref().filter(|c| c.writes == w).map(|c| c.apps.clone())
        };
        let dirty = std::mem::take(&mut *self.dirty.lock().unwrap_or_else(|p| p.into_inner()));
        let read = self.read(|c| {
            let tx = c.unchecked_transaction().map_err(sql("listing apps"))?;
            match &before {
                // Only single apps were written since: those are read again.
                Some(before) => {
                    let mut list: Vec<std::sync::Arc<StoredApp>> = before
                        .iter()
                        .filter(|a| !dirty.contains(&a.spec.name))
                        .cloned()
                        .collect();
                    for n in &dirty {
                        list.extend(load_app(&tx, n)?.map(std::sync::Arc::new));
                    }
                    list.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
                    Ok(list)
                }
                None => {
                    let names =
                        strings(&tx, "SELECT name FROM apps ORDER BY name", "listing apps")?;
                    let mut out = Vec::with_capacity(names.len());
                    for n in names {
                        out.extend(load_app(&tx, &n)?.map(std::sync::Arc::new));
                    }
                    Ok(out)
                }
            }
        });
        let apps = match read {
            Ok(a) => a,
            Err(e) => {
                // Not read: the names stay to be read next time.
                self.dirty
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(dirty);
                return Err(e);
            }
        };
        let apps = std::sync::Arc::new(apps);
        *self.cache() = Some(AppsCache {
            writes: w,
            app_writes: aw,
            apps: apps.clone(),
        });
        Ok(apps)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Option<AppsCache>> {
        self.apps_cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Returns false when the app does not exist.
    pub fn set_stopped(&self, name: &str, stopped: bool) -> Result<bool, StoreError> {
        self.write_app(name, true, |c| {
            let n = c
                .execute(
                    "UPDATE apps SET stopped=?2, updated_ms=?3 WHERE name=?1",
                    params![name, stopped, now_ms()],
                )
                .map_err(sql("stopping or starting an app"))?;
            Ok(n > 0)
        })
    }

    /// Stops (`stopped`) or starts one service of an app, or one slot of it (`slot` > 0).
    /// Starting a service clears its stopped slots too; starting a slot of a service stopped
    /// whole is refused by the caller. Returns false when the app does not exist.
    pub fn set_service_stopped(
        &self,
        app: &str,
        service: &str,
        slot: u32,
        stopped: bool,
    ) -> Result<bool, StoreError> {
        self.write_app(app, true, |c| {
            let tx = c.transaction().map_err(sql("stopping a service"))?;
            let n = tx
                .execute(
                    "UPDATE apps SET updated_ms=?2 WHERE name=?1",
                    params![app, now_ms()],
                )
                .map_err(sql("stopping a service"))?;
            if n == 0 {
                return Ok(false);
            }
            if stopped {
                tx.execute(
                    "INSERT OR IGNORE INTO stopped_services(app, service, slot) VALUES(?1, ?2, ?3)",
                    params![app, service, slot],
                )
                .map_err(sql("stopping a service"))?;
            } else if slot == 0 {
                tx.execute(
                    "DELETE FROM stopped_services WHERE app=?1 AND service=?2",
                    params![app, service],
                )
                .map_err(sql("starting a service"))?;
            } else {
                tx.execute(
                    "DELETE FROM stopped_services WHERE app=?1 AND service=?2 AND slot=?3",
                    params![app, service, slot],
                )
                .map_err(sql("starting a service"))?;
            }
            tx.commit().map_err(sql("stopping a service"))?;
            Ok(true)
        })
    }

    pub fn bump_redeploy(&self, name: &str) -> Result<bool, StoreError> {
        self.write_app(name, true, |c| {
            let tx = c.transaction().map_err(sql("starting a redeploy"))?;
            let n = tx
                .execute(
                    "UPDATE apps SET redeploy_gen=redeploy_gen+1, stopped=0, updated_ms=?2 WHERE name=?1",
                    params![name, now_ms()],
                )
                .map_err(sql("redeploying an app"))?;
            for table in ["scale_overrides", "stopped_services"] {
                tx.execute(&format!("DELETE FROM {table} WHERE app=?1"), params![name])
                    .map_err(sql("resetting scale"))?;
            }
            tx.commit().map_err(sql("committing a redeploy"))?;
            Ok(n > 0)
        })
    }

    /// Sets replica overrides for several services at once (all or nothing).
    pub fn set_scale(&self, app: &str, scale: &[(String, u32)]) -> Result<(), StoreError> {
        self.write_app(app, true, |c| {
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

    /// Takes over `app` (another member's, as its replica says it) at ownership epoch
    /// `epoch`: its spec, template, scale, live versions and `assignments` become this
    /// store's, in one transaction; the version counters continue from its numbers.
    pub fn take_over_app(
        &self,
        app: &StoredApp,
        epoch: u64,
        assignments: &[crate::model::Assignment],
    ) -> Result<(), StoreError> {
        let name = app.spec.name.clone();
        let corrupt = |source| StoreError::Corrupt {
            app: name.clone(),
            source,
        };
        let json = serde_json::to_string(&app.spec).map_err(corrupt)?;
        let versions: Vec<Version> = app
            .versions
            .values()
            .flatten()
            .map(|l| l.version.clone())
            .collect();
        self.write_app(&name, true, |c| {
            let tx = c.transaction().map_err(sql("taking over an app"))?;
            tx.execute(
                "INSERT INTO apps(name, spec, template, stopped, redeploy_gen, created_ms, updated_ms, epoch)
                 VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT(name) DO UPDATE SET spec=excluded.spec, template=excluded.template,
                    stopped=excluded.stopped, redeploy_gen=excluded.redeploy_gen,
                    created_ms=excluded.created_ms, updated_ms=excluded.updated_ms,
                    epoch=excluded.epoch",
                params![
                    name,
                    json,
                    app.template,
                    app.stopped,
                    app.redeploy_gen,
                    app.created_ms,
                    app.updated_ms,
                    i64::try_from(epoch).unwrap_or(i64::MAX)
                ],
            )
            .map_err(sql("taking over an app"))?;
            for table in [
                "scale_overrides",
                "stopped_services",
                "versions",
                "assignments",
            ] {
                tx.execute(&format!("DELETE FROM {table} WHERE app=?1"), params![name])
                    .map_err(sql("taking over an app"))?;
            }
            for (svc, slots) in &app.stopped_services {
                for slot in slots.iter().copied().chain(slots.is_empty().then_some(0)) {
                    tx.execute(
                        "INSERT OR IGNORE INTO stopped_services(app, service, slot) VALUES(?1, ?2, ?3)",
                        params![name, svc, slot],
                    )
                    .map_err(sql("taking over an app's stopped services"))?;
                }
            }
            for (svc, n) in &app.scale {
                tx.execute(
                    "INSERT INTO scale_overrides(app, service, replicas) VALUES(?1, ?2, ?3)",
                    params![name, svc, n],
                )
                .map_err(sql("taking over an app's scale"))?;
            }
            write_versions(&tx, &versions)?;
            for v in &versions {
                tx.execute(
                    "INSERT INTO version_counters(app, service, last) VALUES(?1, ?2, ?3)
                     ON CONFLICT(app, service) DO UPDATE SET last=MAX(last, excluded.last)",
                    params![name, v.service, v.number],
                )
                .map_err(sql("taking over an app's version numbers"))?;
            }
            cluster::insert_assignments(&tx, &name, assignments)?;
            tx.commit().map_err(sql("taking over an app"))
        })
    }

    pub fn delete_app(&self, name: &str) -> Result<bool, StoreError> {
        self.write_app(name, true, |c| {
            let tx = c.transaction().map_err(sql("removing an app"))?;
            let n = tx
                .execute("DELETE FROM apps WHERE name=?1", params![name])
                .map_err(sql("removing an app"))?;
            // The counters stay: a redeployed app continues its numbering.
            tx.execute("DELETE FROM versions WHERE app=?1", params![name])
                .map_err(sql("removing an app's versions"))?;
            tx.execute("DELETE FROM assignments WHERE app=?1", params![name])
                .map_err(sql("removing an app's assignments"))?;
            tx.execute("DELETE FROM app_inputs WHERE app=?1", params![name])
                .map_err(sql("removing an app's deploy inputs"))?;
            for table in ["job_runs", "job_attempts", "job_schedules"] {
                tx.execute(&format!("DELETE FROM {table} WHERE app=?1"), params![name])
                    .map_err(sql("removing an app's job runs"))?;
            }
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
        self.write_unlisted(|c| {
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
            "SELECT spec, template, stopped, redeploy_gen, created_ms, updated_ms, epoch FROM apps WHERE name=?1",
            params![name],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, bool>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, i64>(6)?,
                ))
            },
        )
        .optional()
        .map_err(sql("reading an app"))?;
    let Some((spec, template, stopped, redeploy_gen, created_ms, updated_ms, epoch)) = row else {
        return Ok(None);
    };
    let spec: AppSpec = serde_json::from_str(&spec).map_err(|source| StoreError::Corrupt {
        app: name.to_string(),
        source,
    })?;
    let scale = load_scale(c, name)?;
    let stopped_services = load_stopped_services(c, name)?;
    let versions = load_live(c, &spec, redeploy_gen)?;
    let failed = load_failed(c, name)?;
    let route_weights = load_route_weights(c, name)?;
    let service_release = load_service_release(c, name)?.map(|(r, _, _)| r);
    Ok(Some(StoredApp {
        route_weights,
        service_release,
        failed,
        spec,
        template,
        stopped,
        redeploy_gen,
        scale,
        stopped_services,
        versions,
        created_ms,
        updated_ms,
        owner: String::new(),
        epoch: u64::try_from(epoch).unwrap_or(0),
    }))
}

fn next_version_number(
    tx: &rusqlite::Transaction<'_>,
    app: &str,
    service: &str,
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
    Ok(n)
}

/// A service's versions (only the live ones when `live_only`), oldest first.
fn read_versions(
    c: &Connection,
    app: &str,
    service: &str,
    live_only: bool,
) -> Result<Vec<Version>, StoreError> {
    let mut st = c
        .prepare_cached(
            "SELECT service, number, spec, message, state, reason, weight, created_ms, release, since_ms
             FROM versions WHERE app=?1 AND (?2 IS NULL OR service=?2)
               AND (?3 = 0 OR weight > 0 OR release <> '')
             ORDER BY service, number",
        )
        .map_err(sql("reading versions"))?;
    let service = (!service.is_empty()).then_some(service);
    let rows = st
        .query_map(params![app, service, live_only], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, u32>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, u32>(6)?,
                r.get::<_, i64>(7)?,
                r.get::<_, String>(8)?,
                r.get::<_, i64>(9)?,
            ))
        })
        .map_err(sql("reading versions"))?;
    let mut out = Vec::new();
    for row in rows {
        let (service, number, spec, message, state, reason, weight, created_ms, release, since_ms) =
            row.map_err(sql("reading versions"))?;
        let spec: ServiceSpec =
            serde_json::from_str(&spec).map_err(|source| StoreError::Corrupt {
                app: app.to_string(),
                source,
            })?;
        out.push(Version {
            app: app.to_string(),
            service,
            number,
            spec: std::sync::Arc::new(spec),
            message,
            state: VersionState::parse(&state),
            reason,
            weight,
            created_ms,
            release: Release::parse(&release),
            since_ms,
        });
    }
    Ok(out)
}

/// Saves versions (inserting new ones); the spec of an existing version never changes.
fn write_versions(tx: &rusqlite::Transaction<'_>, vs: &[Version]) -> Result<(), StoreError> {
    let mut st = tx
        .prepare_cached(
            "INSERT INTO versions(app, service, number, spec, message, state, reason, weight,
                                  created_ms, release, since_ms)
             VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT(app, service, number) DO UPDATE SET state=excluded.state,
                reason=excluded.reason, weight=excluded.weight, release=excluded.release,
                since_ms=excluded.since_ms",
        )
        .map_err(sql("saving versions"))?;
    for v in vs {
        let json = serde_json::to_string(&v.spec).map_err(|source| StoreError::Corrupt {
            app: v.app.clone(),
            source,
        })?;
        st.execute(params![
            v.app,
            v.service,
            v.number,
            json,
            v.message,
            v.state.as_str(),
            v.reason,
            v.weight,
            v.created_ms,
            v.release.as_str(),
            v.since_ms
        ])
        .map_err(sql("saving versions"))?;
    }
    Ok(())
}

/// The live versions of every service of an app, with their hashes.
fn load_live(
    c: &Connection,
    spec: &AppSpec,
    redeploy_gen: i64,
) -> Result<std::collections::BTreeMap<String, Vec<LiveVersion>>, StoreError> {
    let mut out: std::collections::BTreeMap<String, Vec<LiveVersion>> =
        std::collections::BTreeMap::new();
    for mut v in read_versions(c, &spec.name, "", true)? {
        let Some(current) = spec.services.get(&v.service) else {
            continue;
        };
        // The version that is the app's current spec (most often the only one) shares it:
        // one copy in memory, not two, for each of what may be a thousand apps.
        if v.spec == *current {
            v.spec = current.clone();
        }
        let hash = StoredApp::hash_of(&v.spec, redeploy_gen);
        out.entry(v.service.clone())
            .or_default()
            .push(LiveVersion { version: v, hash });
    }
    // Kept in the apps' snapshot: no room for versions that will not come.
    out.values_mut().for_each(Vec::shrink_to_fit);
    Ok(out)
}

fn load_failed(
    c: &Connection,
    app: &str,
) -> Result<std::collections::BTreeMap<String, Vec<u32>>, StoreError> {
    let mut st = c
        .prepare_cached(
            "SELECT service, number FROM versions WHERE app=?1 AND state='failed' AND weight=0 ORDER BY number",
        )
        .map_err(sql("reading failed versions"))?;
    let rows = st
        .query_map(params![app], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?))
        })
        .map_err(sql("reading failed versions"))?;
    let mut out: std::collections::BTreeMap<String, Vec<u32>> = std::collections::BTreeMap::new();
    for row in rows {
        let (service, number) = row.map_err(sql("reading failed versions"))?;
        out.entry(service).or_default().push(number);
    }
    Ok(out)
}

fn load_route_weights(
    c: &Connection,
    app: &str,
) -> Result<crate::plan::routes::RouteWeights, StoreError> {
    let mut st = c
        .prepare("SELECT route, service, weight FROM route_weights WHERE app=?1")
        .map_err(sql("reading route weights"))?;
    let rows = st
        .query_map(params![app], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, u32>(2)?,
            ))
        })
        .map_err(sql("reading route weights"))?;
    let mut out = crate::plan::routes::RouteWeights::new();
    for row in rows {
        let (route, service, weight) = row.map_err(sql("reading route weights"))?;
        out.entry(route).or_default().insert(service, weight);
    }
    Ok(out)
}

/// The blue/green release between services under way, with the spec and template it
/// replaced.
fn load_service_release(
    c: &Connection,
    app: &str,
) -> Result<Option<(crate::model::ServiceRelease, String, String)>, StoreError> {
    let row = c
        .query_row(
            "SELECT old, new, since_ms, previous_spec, previous_template FROM service_releases WHERE app=?1",
            params![app],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                ))
            },
        )
        .optional()
        .map_err(sql("reading a release between services"))?;
    let Some((old, new, since_ms, spec, template)) = row else {
        return Ok(None);
    };
    let list = |s: &str| -> Vec<String> {
        s.split(',')
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .collect()
    };
    Ok(Some((
        crate::model::ServiceRelease {
            old: list(&old),
            new: list(&new),
            since_ms,
        },
        spec,
        template,
    )))
}

fn write_route_weights(
    tx: &rusqlite::Transaction<'_>,
    app: &str,
    weights: &crate::plan::routes::RouteWeights,
) -> Result<(), StoreError> {
    tx.execute("DELETE FROM route_weights WHERE app=?1", params![app])
        .map_err(sql("writing route weights"))?;
    for (route, services) in weights {
        for (service, weight) in services {
            tx.execute(
                "INSERT INTO route_weights(app, route, service, weight) VALUES(?1, ?2, ?3, ?4)",
                params![app, route, service, weight],
            )
            .map_err(sql("writing route weights"))?;
        }
    }
    Ok(())
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

/// An app's stopped services: slot 0 in the table stops the whole service (an empty set).
fn load_stopped_services(
    c: &Connection,
    app: &str,
) -> Result<std::collections::BTreeMap<String, std::collections::BTreeSet<u32>>, StoreError> {
    let mut st = c
        .prepare("SELECT service, slot FROM stopped_services WHERE app=?1 ORDER BY service, slot")
        .map_err(sql("reading stopped services"))?;
    let rows = st
        .query_map(params![app], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?))
        })
        .map_err(sql("reading stopped services"))?;
    let mut out: std::collections::BTreeMap<String, std::collections::BTreeSet<u32>> =
        Default::default();
    let mut whole = std::collections::BTreeSet::new();
    for row in rows {
        let (svc, slot) = row.map_err(sql("reading stopped services"))?;
        if slot == 0 {
            whole.insert(svc.clone());
        }
        out.entry(svc).or_default().insert(slot);
    }
    for (svc, slots) in out.iter_mut() {
        if whole.contains(svc) {
            slots.clear();
        }
    }
    Ok(out)
}

/// The first column of every row of a query without parameters, as text.
fn strings(c: &Connection, query: &str, op: &'static str) -> Result<Vec<String>, StoreError> {
    let mut st = c.prepare(query).map_err(sql(op))?;
    let rows = st.query_map([], |r| r.get(0)).map_err(sql(op))?;
    rows.collect::<Result<_, _>>().map_err(sql(op))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledged_writes_commit_with_full_sync_and_the_rest_with_normal() {
        let dir = tempfile::tempdir().expect("tmp");
        let st = Store::open(&dir.path().join("s.db")).expect("open");
        let mode = |c: &Connection| -> Result<i64, StoreError> {
            c.query_row("PRAGMA synchronous", [], |r| r.get(0))
                .map_err(sql("reading the mode"))
        };
        assert_eq!(st.write_acked(|c| mode(c)).expect("acked"), 2, "FULL");
        assert_eq!(
            st.write_unlisted(|c| mode(c)).expect("plain"),
            1,
            "NORMAL again"
        );
        // A failing acknowledged write leaves the connection in NORMAL too.
        let _ = st.write_acked(|_| -> Result<(), StoreError> {
            Err(StoreError::TooNew { found: 0, known: 0 })
        });
        assert_eq!(st.write_unlisted(|c| mode(c)).expect("plain"), 1);
        // The user-command writes go through it (a deploy).
        st.put_app(&spec("d"), "", &[], "").expect("deploy");
    }

    /// The cached app list is served again across writes to tables it never reads (events,
    /// logs, outbox, job runs) and read anew after any write to one it does.
    #[test]
    fn the_app_list_cache_outlives_unrelated_writes_only() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Store::open(&dir.path().join("state.db")).expect("open");
        s.put_app(&spec("shop"), "t", &[("web".into(), Release::Promote)], "")
            .expect("put");
        let first = s.apps_shared().expect("list");
        s.add_event("deploy", "shop", "", "hello").expect("event");
        s.checkpoint_wal();
        let again = s.apps_shared().expect("list");
        assert!(
            std::sync::Arc::ptr_eq(&first, &again),
            "an event kept the list"
        );
        s.set_scale("shop", &[("web".into(), 3)]).expect("scale");
        let after = s.apps_shared().expect("list");
        assert!(
            !std::sync::Arc::ptr_eq(&first, &after),
            "a scale reads it again"
        );
        assert_eq!(after[0].replicas("web"), 3);
        s.set_stopped("shop", true).expect("stop");
        assert!(s.apps_shared().expect("list")[0].stopped);
    }

    /// Stopped services and slots load as set; starting a service clears its slots too; a
    /// deploy clears them all; an unknown app writes nothing.
    #[test]
    fn stopped_services_round_trip_and_a_deploy_clears_them() {
        let dir = tempfile::tempdir().expect("dir");
        let s = Store::open(&dir.path().join("state.db")).expect("open");
        s.put_app(&spec("shop"), "", &[], "").expect("deploy");
        let stopped = |s: &Store| {
            s.get_app("shop")
                .expect("get")
                .expect("app")
                .stopped_services
        };
        assert!(s.set_service_stopped("shop", "web", 2, true).expect("stop"));
        assert!(s.set_service_stopped("shop", "web", 3, true).expect("stop"));
        assert_eq!(stopped(&s)["web"], [2, 3].into());
        s.set_service_stopped("shop", "web", 3, false)
            .expect("start");
        assert_eq!(stopped(&s)["web"], [2].into());
        // Slot 0 is the whole service: an empty set.
        s.set_service_stopped("shop", "web", 0, true).expect("stop");
        assert!(stopped(&s)["web"].is_empty());
        s.set_service_stopped("shop", "web", 0, false)
            .expect("start");
        assert!(stopped(&s).is_empty());
        s.set_service_stopped("shop", "web", 1, true).expect("stop");
        s.put_app(&spec("shop"), "", &[], "").expect("deploy");
        assert!(stopped(&s).is_empty(), "a deploy starts everything");
        assert!(
            !s.set_service_stopped("ghost", "web", 0, true)
                .expect("stop")
        );
    }

    fn spec(name: &str) -> AppSpec {
        crate::spec::parse(
            "services:\n  web:\n    image: a\n",
            name,
            &Default::default(),
        )
        .expect("spec")
    }

    /// A data dir from before versions: every service gets version 1 with the traffic, and
    /// its numbering continues from there.
    #[test]
    fn services_deployed_before_versions_get_one() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("state.db");
        {
            let c = Connection::open(&path).expect("open");
            c.execute_batch(MIGRATIONS[0]).expect("migration 1");
            c.execute(
                "INSERT INTO apps(name, spec, template, created_ms, updated_ms) VALUES(?1, ?2, 't', 5, 7)",
                params!["old", serde_json::to_string(&spec("old")).expect("json")],
            )
            .expect("app");
            c.pragma_update(None, "user_version", 1).expect("version");
        }
        let s = Store::open(&path).expect("migrate");
        let app = s.get_app("old").expect("get").expect("app");
        let live = app.live("web");
        assert_eq!(live.len(), 1);
        let v = &live[0].version;
        assert_eq!(
            (v.number, v.weight, v.state),
            (1, 100, VersionState::Normal)
        );
        assert_eq!(v.spec, spec("old").services["web"]);
        let web = [("web".to_string(), Release::Promote)];
        assert_eq!(s.put_app(&spec("old"), "t", &web, "").expect("put")[0].1, 2);
    }

    #[test]
    fn app_roundtrip_scale_and_redeploy() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Store::open(&dir.path().join("state.db")).expect("open");
        let id = s.node_id().expect("id");
        assert_eq!(id, s.node_id().expect("id again"));
        s.put_app(&spec("shop"), "t", &[("web".into(), Release::Promote)], "")
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
        let web = vec![("web".to_string(), Release::Promote)];
        let first = s.put_app(&spec("v"), "t", &web, "one").expect("put");
        assert_eq!((first[0].0.as_str(), first[0].1), ("web", 1));
        assert_eq!(s.put_app(&spec("v"), "t", &web, "").expect("put")[0].1, 2);
        let v = s.versions("v", "web").expect("versions");
        // The first takes the traffic; the second starts beside it, on its way to take it.
        assert_eq!(
            v.iter()
                .map(|v| (v.number, v.weight, v.state, v.release))
                .collect::<Vec<_>>(),
            [
                (1, 100, VersionState::Creating, Release::None),
                (2, 0, VersionState::Creating, Release::Promote)
            ]
        );
        let live = |s: &Store| -> Vec<u32> {
            s.get_app("v")
                .expect("get")
                .expect("app")
                .live("web")
                .iter()
                .map(|l| l.version.number)
                .collect()
        };
        assert_eq!(live(&s), [1, 2]);
        // A failed edit changes nothing; a good one is saved.
        use crate::plan::release::Step;
        /// What a caller's edit may fail with: the store, or the release rules.
        #[derive(Debug)]
        enum CoreError {
            #[allow(dead_code)]
            Store(StoreError),
            #[allow(dead_code)]
            Release(crate::plan::release::ReleaseError),
        }
        impl From<StoreError> for CoreError {
            fn from(e: StoreError) -> Self {
                CoreError::Store(e)
            }
        }
        impl From<crate::plan::release::ReleaseError> for CoreError {
            fn from(e: crate::plan::release::ReleaseError) -> Self {
                CoreError::Release(e)
            }
        }
        let r: Result<(), CoreError> = s.edit_versions("v", "web", |vs| {
            vs[0].weight = 0;
            Ok(crate::plan::release::apply(vs, &Step::Traffic(vec![(9, 100)]), 1).map(|_| ())?)
        });
        assert!(r.is_err());
        assert_eq!(live(&s), [1, 2]);
        s.edit_versions("v", "web", |vs| {
            Ok::<_, CoreError>(crate::plan::release::apply(vs, &Step::Ready(2), 1)?)
        })
        .expect("promote");
        assert_eq!(live(&s), [2]);
        s.edit_versions("v", "web", |vs| {
            Ok::<_, CoreError>(crate::plan::release::apply(vs, &Step::Rollback(None), 1)?)
        })
        .expect("rollback");
        // Start-first: web-001 comes back beside web-002 and takes the traffic once ready.
        assert_eq!(live(&s), [1, 2]);
        s.edit_versions("v", "web", |vs| {
            Ok::<_, CoreError>(crate::plan::release::apply(vs, &Step::Ready(1), 1)?)
        })
        .expect("promote");
        assert_eq!(live(&s), [1]);
        assert!(s.delete_version("v", "web", 2).expect("rm"));
        assert_eq!(s.put_app(&spec("v"), "t", &web, "").expect("put")[0].1, 3);
        // Even an app removed and deployed again continues its numbering.
        s.delete_app("v").expect("rm app");
        assert!(s.versions("v", "web").expect("versions").is_empty());
        assert_eq!(s.put_app(&spec("v"), "t", &web, "").expect("put")[0].1, 4);
    }

    #[test]
    fn the_apps_read_again_are_served_from_memory_until_a_write() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Store::open(&dir.path().join("state.db")).expect("open");
        s.put_app(&spec("a"), "t", &[], "").expect("put");
        let first = s.list_apps().expect("list");
        assert!(!first[0].stopped);
        let stamp = |s: &Store| s.cache().as_ref().map(|c| (c.writes, c.app_writes));
        let cached = stamp(&s);
        assert_eq!(s.list_apps().expect("list").len(), first.len());
        assert_eq!(stamp(&s), cached, "served from memory");
        // Every kind of write makes the next read go to the database.
        s.set_stopped("a", true).expect("stop");
        assert!(s.list_apps().expect("list")[0].stopped);
        s.put_app(&spec("b"), "t", &[], "").expect("put");
        assert_eq!(s.list_apps().expect("list").len(), 2);
        s.delete_app("a").expect("rm");
        assert_eq!(s.list_apps().expect("list").len(), 1);
    }

    /// After writes to single apps, only those are read again: the others' records are the
    /// same ones (shared), an app removed goes, one deployed comes in name order; a write of
    /// another kind reads everything again.
    #[test]
    fn a_write_to_one_app_reads_that_app_alone_again() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Store::open(&dir.path().join("state.db")).expect("open");
        for n in ["a", "c", "d"] {
            s.put_app(&spec(n), "t", &[("web".into(), Release::Promote)], "")
                .expect("put");
        }
        let first = s.apps_shared().expect("list");
        let names = |l: &AppList| l.iter().map(|a| a.spec.name.clone()).collect::<Vec<_>>();
        s.set_scale("c", &[("web".into(), 4)]).expect("scale");
        s.delete_app("d").expect("rm");
        s.put_app(&spec("b"), "t", &[], "").expect("put");
        let next = s.apps_shared().expect("list");
        assert_eq!(names(&next), ["a", "b", "c"]);
        assert!(std::sync::Arc::ptr_eq(&first[0], &next[0]), "a is shared");
        assert_eq!(next[2].replicas("web"), 4, "c read again");
        assert!(s.dirty.lock().unwrap().is_empty());
        // A version's state is the app's too.
        let n = s.versions("a", "web").expect("versions")[0].number;
        s.set_version_state("a", "web", n, VersionState::Failed, "probe")
            .expect("state");
        let again = s.apps_shared().expect("list");
        assert!(
            !std::sync::Arc::ptr_eq(&first[0], &again[0]),
            "a read again"
        );
        assert!(std::sync::Arc::ptr_eq(&next[1], &again[1]), "b shared");
        // The same list as reading everything from the database.
        let s2 = Store::open(&dir.path().join("state.db")).expect("open");
        let json = |s: &Store| serde_json::to_value(s.list_apps().expect("list")).expect("json");
        assert_eq!(json(&s2), json(&s), "as the database says");
        // Any other write: everything is read anew.
        s.put_alarm("cpu", "{}").expect("alarm");
        let all = s.apps_shared().expect("list");
        assert!(!std::sync::Arc::ptr_eq(&again[1], &all[1]));
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

    #[test]
    fn containers_seen_done_survive_a_reopen_and_are_replaced_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.db");
        let st = Store::open(&path).expect("open");
        assert!(st.seen_done().expect("read").is_empty());
        let done = std::collections::BTreeMap::from([("a".to_string(), 10), ("b".to_string(), 20)]);
        st.set_seen_done(&done).expect("save");
        drop(st);
        let st = Store::open(&path).expect("reopen");
        assert_eq!(st.seen_done().expect("read"), done);
        // A container gone is forgotten.
        let fewer = std::collections::BTreeMap::from([("b".to_string(), 20)]);
        st.set_seen_done(&fewer).expect("save");
        assert_eq!(st.seen_done().expect("read"), fewer);
    }
}
