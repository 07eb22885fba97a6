//! Volumes in the agent: the objects (`berth volume create/ls/inspect/rm`, a template's
//! top-level `volumes:`), and the host mounts of `oss`/`nas` volumes: mounted once per volume
//! when a container needs it, shared by every container that uses it, unmounted when the last
//! one stops, and repaired (remounted, the containers that held the dead mount restarted)
//! when a helper dies or after a reboot. The volume loop checks every [`CHECK_EVERY`] and
//! whenever a helper berth started exits.

use super::{Core, CoreError, Ops};
use crate::model::{AppSpec, VolumeSource};
use crate::runtime::MountUse;
use crate::store::{StoredApp, VolumeRow};
use crate::volumes::host::{self, Dirs, HostState, ViewState};
use crate::volumes::secret::Sealer;
use crate::volumes::{Driver, VolumeDef, VolumeError, validate};
use crate::wire::{VolumeUser, VolumeView};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// How often mounts and the containers' views of them are checked.
pub const CHECK_EVERY: Duration = Duration::from_secs(3);

/// A stat of a mount longer than this counts as "does not answer" (and is not waited for).
const STAT_TIMEOUT: Duration = Duration::from_secs(5);

/// The agent's volume state.
pub struct VolumeHub {
    pub dirs: Dirs,
    key_path: std::path::PathBuf,
    sealer: OnceLock<Sealer>,
    /// One mount or unmount of a volume at a time.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Wakes the volume loop (a helper exited).
    pub wake: Arc<tokio::sync::Notify>,
    /// The last error reported per volume (so a failing remount is reported once).
    reported: Mutex<HashMap<String, String>>,
}

impl VolumeHub {
    pub fn new(data_dir: &std::path::Path) -> VolumeHub {
        VolumeHub {
            dirs: Dirs::new(data_dir),
            key_path: data_dir.join("volume-secrets.key"),
            sealer: OnceLock::new(),
            locks: Mutex::new(HashMap::new()),
            wake: Arc::new(tokio::sync::Notify::new()),
            reported: Mutex::new(HashMap::new()),
        }
    }

    pub(super) fn sealer(&self) -> Result<&Sealer, VolumeError> {
        if let Some(s) = self.sealer.get() {
            return Ok(s);
        }
        let s = Sealer::open(&self.key_path)?;
        Ok(self.sealer.get_or_init(|| s))
    }

    /// Seals `plain` under the data dir's at-rest key (`what` binds it to its place).
    pub fn seal_at_rest(&self, what: &str, plain: &[u8]) -> Result<Vec<u8>, VolumeError> {
        self.sealer()?.seal(what, plain)
    }

    pub fn unseal_at_rest(&self, what: &str, sealed: &[u8]) -> Result<Vec<u8>, VolumeError> {
        self.sealer()?.unseal(what, sealed)
    }

    fn lock(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    /// True when `msg` differs from what was last reported for `name`.
    fn newly(&self, name: &str, msg: &str) -> bool {
        let mut r = self.reported.lock().unwrap_or_else(|p| p.into_inner());
        if r.get(name).map(String::as_str) == Some(msg) {
            return false;
        }
        r.insert(name.to_string(), msg.to_string());
        true
    }

    fn clear_report(&self, name: &str) {
        self.reported
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }
}

/// Runs a blocking mount-table check off the loop, giving up after [`STAT_TIMEOUT`].
async fn host_state(dirs: &Dirs, name: &str) -> HostState {
    let (dirs, n) = (dirs.clone(), name.to_string());
    match tokio::time::timeout(
        STAT_TIMEOUT,
        tokio::task::spawn_blocking(move || host::state(&dirs, &n)),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(_)) => HostState::Dead("the check panicked".into()),
        Err(_) => HostState::Dead(format!(
            "the mount does not answer within {} s",
            STAT_TIMEOUT.as_secs()
        )),
    }
}

/// Object names every app's template refers to (declared or external), by app.
fn referenced(apps: &[std::sync::Arc<StoredApp>]) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for a in apps {
        for (key, v) in &a.spec.volumes {
            out.entry(v.object_name(&a.spec.name, key))
                .or_default()
                .insert(a.spec.name.clone());
        }
    }
    out
}

/// Object names the running desired state needs mounted: volumes mounted by a service of an
/// app that is not stopped.
fn wanted(apps: &[std::sync::Arc<StoredApp>]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for a in apps.iter().filter(|a| !a.stopped) {
        out.extend(wanted_by(&a.spec, |name| {
            super::desired_replicas(a, name) > 0
        }));
    }
    out
}

/// Object names the services of `spec` that `runs` mount.
fn wanted_by(spec: &AppSpec, runs: impl Fn(&str) -> bool) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (_, s) in spec.services.iter().filter(|(n, _)| runs(n)) {
        for m in s
            .volumes
            .iter()
            .filter(|m| m.kind == crate::model::MountKind::Volume)
        {
            if let Some(v) = spec.volumes.get(&m.source) {
                out.insert(v.object_name(&spec.name, &m.source));
            }
        }
    }
    out
}

/// Credentials replaced by the mask in a template's text (they are sealed in the volume
/// store; the stored template keeps no copy).
pub fn redact_template(template: &str, app: &AppSpec) -> String {
    let mut t = template.to_string();
    for v in app.volumes.values() {
        for k in crate::volumes::SECRET_OPTS {
            if let Some(secret) = v.driver_opts.get(*k).filter(|s| !s.is_empty()) {
                t = t.replace(secret.as_str(), crate::volumes::MASK);
            }
        }
    }
    t
}

/// The spec with its volumes' credentials masked (for the store and the API).
pub fn redact_spec(app: &mut AppSpec) {
    for v in app.volumes.values_mut() {
        v.driver_opts = crate::volumes::mask(&v.driver_opts);
    }
}

/// A host-mounted volume as an app's `Spec` record carries it to the members.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SharedVolume {
    pub name: String,
    pub driver: Driver,
    pub opts: BTreeMap<String, String>,
}

impl Core {
    fn volume_def(&self, row: &VolumeRow) -> Result<VolumeDef, CoreError> {
        let driver = Driver::parse(&row.driver)?;
        let mut opts: BTreeMap<String, String> = serde_json::from_str(&row.opts).map_err(|e| {
            VolumeError::Invalid(format!(
                "the stored options of volume {:?} are unreadable: {e}",
                row.name
            ))
        })?;
        if !row.sealed.is_empty() {
            let plain = self.volumes.sealer()?.unseal(&row.name, &row.sealed)?;
            let secrets: BTreeMap<String, String> = serde_json::from_slice(&plain)
                .map_err(|e| VolumeError::Secret(format!("unreadable credentials: {e}")))?;
            opts.extend(secrets);
        }
        Ok(VolumeDef {
            name: row.name.clone(),
            driver,
            opts,
        })
    }

    fn volume_row(&self, def: &VolumeDef, app: &str) -> Result<VolumeRow, CoreError> {
        let secrets = def.secret_opts();
        let sealed = if secrets.is_empty() {
            Vec::new()
        } else {
            let json =
                serde_json::to_vec(&secrets).map_err(|e| VolumeError::Secret(e.to_string()))?;
            self.volumes.sealer()?.seal(&def.name, &json)?
        };
        Ok(VolumeRow {
            name: def.name.clone(),
            driver: def.driver.as_str().to_string(),
            opts: serde_json::to_string(&def.public_opts())
                .map_err(|e| VolumeError::Invalid(e.to_string()))?,
            sealed,
            app: app.to_string(),
            created_ms: crate::clock::now_ms(),
        })
    }

    /// The `oss`/`nas` volumes `app` uses, whole (credentials unsealed), for its `Spec`
    /// record: a member that runs its instances mounts the same volumes (the record travels
    /// sealed under the cluster key, and is saved sealed under each member's at-rest key).
    pub(super) fn shared_volumes_of(&self, app: &StoredApp) -> Vec<SharedVolume> {
        let mut out = Vec::new();
        for (key, v) in &app.spec.volumes {
            let object = v.object_name(&app.spec.name, key);
            let Ok(Some(row)) = self.store.volume(&object) else {
                continue;
            };
            match self.volume_def(&row) {
                Ok(def) if def.driver.host_mounted() => out.push(SharedVolume {
                    name: def.name,
                    driver: def.driver,
                    opts: def.opts,
                }),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(volume = %object, error = %e, "cannot share a volume's definition")
                }
            }
        }
        out
    }

    /// Keeps the `oss`/`nas` volumes of another member's app (`app`, from its `Spec`
    /// record) here, sealed under this host's key, so its instances here mount them as the
    /// owner's do. A volume this host holds with other options is left as it is while a
    /// container here uses it (the next deploy's options reach it after).
    pub(super) async fn keep_shared_volumes(&self, app: &str, shared: Vec<SharedVolume>) {
        for v in shared {
            let def = match validate(&v.name, v.driver, &v.opts) {
                Ok(d) if d.driver.host_mounted() => d,
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(volume = %v.name, error = %e, "another member's volume is not valid here");
                    continue;
                }
            };
            let held = self.store.volume(&def.name).ok().flatten();
            if let Some(row) = &held {
                if self.volume_def(row).is_ok_and(|d| d == def) {
                    continue;
                }
                let uses = self.runtime.mount_uses().await.unwrap_or_default();
                if !self.users_of(&uses, &def.name, def.driver).is_empty() {
                    continue;
                }
            }
            match self.volume_row(&def, app) {
                Ok(row) => {
                    if let Err(e) = self.store.put_volume(&row) {
                        tracing::warn!(volume = %def.name, error = %e, "cannot keep another member's volume");
                    }
                }
                Err(e) => {
                    tracing::warn!(volume = %def.name, error = %e, "cannot keep another member's volume")
                }
            }
        }
    }

    fn stored_volume(&self, name: &str) -> Result<(VolumeRow, VolumeDef), CoreError> {
        let row = self.store.volume(name)?.ok_or_else(|| {
            CoreError::NotFound(format!(
                "no volume {name:?}: `berth volume ls` lists them, `berth volume create` makes one"
            ))
        })?;
        let def = self.volume_def(&row)?;
        Ok((row, def))
    }

    fn mountpoint_of(&self, name: &str) -> String {
        self.volumes
            .dirs
            .mountpoint(name)
            .to_string_lossy()
            .into_owned()
    }

    /// The containers using a volume: the engine volume `name` (local), or a bind of its
    /// mount point (oss, nas).
    fn users_of<'a>(&self, uses: &'a [MountUse], name: &str, driver: Driver) -> Vec<&'a MountUse> {
        let mp = self.mountpoint_of(name);
        uses.iter()
            .filter(|u| match driver {
                Driver::Local => u.volume.as_deref() == Some(name),
                _ => u.volume.is_none() && u.source == mp,
            })
            .collect()
    }

    /// `berth volume create`.
    fn volume_labels(&self, name: &str, app: &str) -> BTreeMap<String, String> {
        let mut l = BTreeMap::from([
            ("berth.volume".to_string(), name.to_string()),
            (crate::model::labels::NODE.to_string(), self.node_id.clone()),
        ]);
        if !app.is_empty() {
            l.insert(crate::model::labels::APP.to_string(), app.to_string());
        }
        l
    }

    /// `berth volume ls`.
    /// Removes a volume (its mount, its engine volume, its definition). With `check`, refuses
    /// while anything uses it.
    async fn remove_volume_object(&self, def: &VolumeDef, check: bool) -> Result<(), CoreError> {
        let name = def.name.as_str();
        let uses = self.runtime.mount_uses().await?;
        if check {
            let users = self.users_of(&uses, name, def.driver);
            if !users.is_empty() {
                let list: Vec<String> = users
                    .iter()
                    .map(|u| {
                        format!(
                            "{} ({})",
                            u.container,
                            if u.running { "running" } else { "stopped" }
                        )
                    })
                    .collect();
                return Err(CoreError::Conflict(format!(
                    "volume {name:?} is in use by {}: remove those containers first (`berth rm APP`, or `docker rm` for others)",
                    list.join(", ")
                )));
            }
            let apps = referenced(&self.store.apps_shared()?);
            if let Some(a) = apps.get(name) {
                let a: Vec<&str> = a.iter().map(String::as_str).collect();
                return Err(CoreError::Conflict(format!(
                    "volume {name:?} is named in the template of app {}: `berth rm` the app first",
                    a.join(", ")
                )));
            }
        }
        if def.driver.host_mounted() {
            let lock = self.volumes.lock(name);
            let _held = lock.lock().await;
            let (dirs, n) = (self.volumes.dirs.clone(), name.to_string());
            tokio::task::spawn_blocking(move || {
                host::unmount(&dirs, &n)?;
                dirs.forget(&n);
                Ok::<(), VolumeError>(())
            })
            .await
            .map_err(|_| VolumeError::Invalid("the unmount panicked".into()))??;
        } else {
            self.runtime.remove_volumes(&[name.to_string()]).await?;
        }
        self.store.remove_volume(name)?;
        self.volumes.clear_report(name);
        Ok(())
    }

    /// Deploy step: checks and creates the volumes a template declares, and mounts the
    /// host-mounted ones its running services use, so that a mount that fails fails the
    /// deploy with the helper's words. Nothing is saved unless every step holds; a volume
    /// mounted here for nothing is unmounted by the volume loop.
    pub(super) async fn prepare_volumes(
        &self,
        spec: &AppSpec,
        stopped: bool,
    ) -> Result<(), CoreError> {
        if spec.volumes.is_empty() {
            return Ok(());
        }
        let uses = self.runtime.mount_uses().await?;
        let mut to_save = Vec::new();
        for (key, v) in &spec.volumes {
            let object = v.object_name(&spec.name, key);
            let stored = self.store.volume(&object)?;
            if v.external {
                let exists = match &stored {
                    Some(_) => true,
                    None => self.runtime.volume_mountpoint(&object).await?.is_some(),
                };
                if !exists {
                    return Err(CoreError::BadRequest(format!(
                        "volume {key:?} is external, but there is no volume {object:?}: create it first with `berth volume create {object} --driver ...`"
                    )));
                }
                continue;
            }
            let def = validate(&object, Driver::parse(&v.driver)?, &v.driver_opts)?;
            match stored {
                Some(row) => {
                    let old = self.volume_def(&row)?;
                    if old == def {
                        continue;
                    }
                    if !row.app.is_empty() && row.app != spec.name {
                        return Err(CoreError::Conflict(format!(
                            "volume {object:?} belongs to app {:?} with other options: give this one another `name:`, or make it `external: true` to share it as it is",
                            row.app
                        )));
                    }
                    let running: Vec<&str> = self
                        .users_of(&uses, &old.name, old.driver)
                        .into_iter()
                        .filter(|u| u.running)
                        .map(|u| u.container.as_str())
                        .collect();
                    if !running.is_empty() || old.driver != def.driver {
                        return Err(CoreError::Conflict(format!(
                            "the options of volume {object:?} changed, but {}: `berth stop {}` first (or `berth volume rm` it to change its driver)",
                            if running.is_empty() {
                                "its driver cannot change in place".to_string()
                            } else {
                                format!("it is mounted by {}", running.join(", "))
                            },
                            spec.name
                        )));
                    }
                    if old.driver.host_mounted() {
                        let (dirs, n) = (self.volumes.dirs.clone(), object.clone());
                        let _ = tokio::task::spawn_blocking(move || host::unmount(&dirs, &n)).await;
                    }
                    to_save.push(def);
                }
                None => to_save.push(def),
            }
        }
        // Host-mounted volumes the app's running services use: mounted now.
        let needed = if stopped {
            BTreeSet::new()
        } else {
            wanted_by(spec, |name| {
                spec.services
                    .get(name)
                    .is_some_and(|s| s.global || s.replicas > 0)
            })
        };
        for (key, v) in &spec.volumes {
            let object = v.object_name(&spec.name, key);
            if !needed.contains(&object) {
                continue;
            }
            let new = to_save.iter().find(|d| d.name == object);
            let driver = match new {
                Some(d) => Some(d.driver),
                None => self
                    .store
                    .volume(&object)?
                    .and_then(|r| Driver::parse(&r.driver).ok()),
            };
            if driver.is_some_and(Driver::host_mounted) {
                self.mount(&object, new).await?;
            }
        }
        for def in &to_save {
            if def.driver == Driver::Local {
                self.runtime
                    .create_volume(
                        &def.name,
                        &def.opts,
                        &self.volume_labels(&def.name, &spec.name),
                    )
                    .await?;
            }
        }
        for def in &to_save {
            self.store.put_volume(&self.volume_row(def, &spec.name)?)?;
        }
        Ok(())
    }

    /// Where each of an app's named volumes comes from, by template key.
    pub(super) fn volume_sources(&self, app: &StoredApp) -> BTreeMap<String, VolumeSource> {
        let mut out = BTreeMap::new();
        for (key, v) in &app.spec.volumes {
            let object = v.object_name(&app.spec.name, key);
            let driver = self
                .store
                .volume(&object)
                .ok()
                .flatten()
                .and_then(|r| Driver::parse(&r.driver).ok())
                .unwrap_or(Driver::Local);
            let src = if driver.host_mounted() {
                VolumeSource::Host(
                    self.volumes
                        .dirs
                        .mountpoint(&object)
                        .to_string_lossy()
                        .into_owned(),
                )
            } else {
                VolumeSource::Engine(object)
            };
            out.insert(key.clone(), src);
        }
        out
    }

    /// Makes sure the host-mounted volume `name` is mounted and answers.
    pub(super) async fn ensure_mounted(&self, name: &str) -> Result<(), CoreError> {
        self.mount(name, None).await
    }

    /// Mounts the host-mounted volume `name` unless its mount answers. Its definition (`def`
    /// for one not stored yet) is read, and its credentials unsealed, only when it must mount.
    async fn mount(&self, name: &str, def: Option<&VolumeDef>) -> Result<(), CoreError> {
        let lock = self.volumes.lock(name);
        let _held = lock.lock().await;
        let dirs = self.volumes.dirs.clone();
        let before = host_state(&dirs, name).await;
        if before == HostState::Alive {
            return Ok(());
        }
        let d = match def {
            Some(d) => d.clone(),
            None => self.stored_volume(name)?.1,
        };
        if !d.driver.host_mounted() {
            return Ok(());
        }
        let driver = d.driver;
        let wake = self.volumes.wake.clone();
        let started = std::time::Instant::now();
        tokio::task::spawn_blocking(move || {
            if let HostState::Dead(_) = before {
                host::unmount_path(&dirs.mountpoint(&d.name));
            }
            let child = host::mount(&dirs, &d)?;
            if let Some(mut c) = child {
                // Reaped here; its end wakes the volume loop at once.
                std::thread::spawn(move || {
                    let _ = c.wait();
                    wake.notify_one();
                });
            }
            Ok::<(), VolumeError>(())
        })
        .await
        .map_err(|_| VolumeError::Invalid("the mount panicked".into()))??;
        self.volumes.clear_report(name);
        self.event(
            crate::model::EventKind::Volume,
            "",
            "",
            &format!(
                "mounted volume {name} ({}) at {} in {} ms",
                driver.as_str(),
                self.mountpoint_of(name),
                started.elapsed().as_millis()
            ),
        );
        Ok(())
    }

    /// Removes the volumes an app declared (`berth rm --volumes`): only the app's own, the
    /// ones its template made. A volume made with `berth volume create` (no app), another
    /// app's, or one berth has no record of (a person's engine volume) is kept, even when the
    /// template names it without `external: true`.
    pub(super) async fn remove_app_volumes(&self, app: &AppSpec) -> Result<Vec<String>, CoreError> {
        let mut removed = Vec::new();
        for (key, v) in app.volumes.iter().filter(|(_, v)| !v.external) {
            let object = v.object_name(&app.name, key);
            match self.store.volume(&object)? {
                Some(row) if row.app == app.name => {
                    let def = self.volume_def(&row)?;
                    self.remove_volume_object(&def, false).await?;
                    removed.push(object);
                }
                Some(_) | None => {
                    tracing::info!(volume = %object, app = %app.name, "volume kept: not made by this app");
                }
            }
        }
        Ok(removed)
    }

    /// Volumes no app names and no container uses (`berth system prune`).
    pub(super) async fn prune_volumes(&self) -> Result<Vec<String>, CoreError> {
        let uses = self.runtime.mount_uses().await?;
        let refs = referenced(&self.store.apps_shared()?);
        let mut removed = Vec::new();
        for row in self.store.volumes()? {
            if refs.contains_key(&row.name) {
                continue;
            }
            let def = match self.volume_def(&row) {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(volume = %row.name, error = %e, "volume kept");
                    continue;
                }
            };
            if !self.users_of(&uses, &def.name, def.driver).is_empty() {
                continue;
            }
            match self.remove_volume_object(&def, false).await {
                Ok(()) => removed.push(row.name),
                Err(e) => tracing::warn!(volume = %row.name, error = %e, "volume kept"),
            }
        }
        Ok(removed)
    }

    /// One pass of the volume loop.
    pub(super) async fn check_volumes(&self, cgroups: &crate::metrics::cgroup::Cgroups) {
        let Ok(rows) = self.store.volumes() else {
            return;
        };
        let host_rows: Vec<VolumeRow> = rows
            .into_iter()
            .filter(|r| Driver::parse(&r.driver).is_ok_and(Driver::host_mounted))
            .collect();
        if host_rows.is_empty() {
            return;
        }
        let Ok(uses) = self.runtime.mount_uses().await else {
            return;
        };
        let apps = self.store.apps_shared().unwrap_or_default();
        let want = wanted(&apps);
        for row in host_rows {
            let Ok(driver) = Driver::parse(&row.driver) else {
                continue;
            };
            let name = row.name.as_str();
            let running: Vec<&MountUse> = self
                .users_of(&uses, name, driver)
                .into_iter()
                .filter(|u| u.running)
                .collect();
            let needed = !running.is_empty() || want.contains(name);
            let state = host_state(&self.volumes.dirs, name).await;
            match (&state, needed) {
                (HostState::Alive, true) | (HostState::Unmounted, false) => {}
                (_, true) => {
                    let why = match &state {
                        HostState::Dead(e) => {
                            format!("its mount is broken ({e}), so the helper has died")
                        }
                        _ => "it is not mounted".into(),
                    };
                    if self.volumes.newly(name, &why) {
                        self.event(
                            crate::model::EventKind::Volume,
                            "",
                            "",
                            &format!("volume {} is needed but {why}: mounting it again", name),
                        );
                    }
                    if let Err(e) = self.mount(name, None).await {
                        let msg = e.to_string();
                        if self.volumes.newly(name, &msg) {
                            self.event(crate::model::EventKind::Error, "", "", &msg);
                        }
                        continue;
                    }
                }
                (_, false) => {
                    let lock = self.volumes.lock(name);
                    let _held = lock.lock().await;
                    let (dirs, n) = (self.volumes.dirs.clone(), name.to_string());
                    match tokio::task::spawn_blocking(move || host::unmount(&dirs, &n)).await {
                        Ok(Ok(())) => self.event(
                            crate::model::EventKind::Volume,
                            "",
                            "",
                            &format!("unmounted volume {} (no running container uses it)", name),
                        ),
                        Ok(Err(e)) => {
                            tracing::warn!(volume = %name, error = %e, "cannot unmount")
                        }
                        Err(_) => {}
                    }
                    continue;
                }
            }
            // The host mount answers: each running user must see it, not a dead copy or the
            // bare directory it bound before the mount existed.
            for u in running {
                let Some(pid) = cgroups.pid(&u.id) else {
                    continue;
                };
                let target = u.target.clone();
                let view = tokio::time::timeout(
                    STAT_TIMEOUT,
                    tokio::task::spawn_blocking(move || host::container_view(pid, &target, driver)),
                )
                .await;
                let view = match view {
                    Ok(Ok(v)) => v,
                    _ => continue,
                };
                if view == ViewState::Ok {
                    continue;
                }
                let why = if view == ViewState::Dead {
                    "its mount was dead"
                } else {
                    "it started before the volume was mounted"
                };
                self.restart_container(
                    &u.id,
                    &u.container,
                    &format!("to remount volume {name} ({why})"),
                )
                .await;
            }
        }
    }
}

impl Ops {
    pub async fn volume_create(
        &self,
        req: crate::wire::VolumeCreateRequest,
    ) -> Result<VolumeView, CoreError> {
        let driver = Driver::parse(&req.driver)?;
        let def = validate(&req.name, driver, &req.opts)?;
        let _serial = self.core.deploys.lock().await;
        if self.core.store.volume(&def.name)?.is_some() {
            return Err(CoreError::Conflict(format!(
                "volume {:?} already exists: pick another name, or `berth volume rm {}` first",
                def.name, def.name
            )));
        }
        let row = self.core.volume_row(&def, "")?;
        if driver == Driver::Local {
            self.core
                .runtime
                .create_volume(
                    &def.name,
                    &def.opts,
                    &self.core.volume_labels(&def.name, ""),
                )
                .await?;
        }
        self.core.store.put_volume(&row)?;
        self.core.event(
            crate::model::EventKind::Volume,
            "",
            "",
            &format!("created volume {} ({})", def.name, driver.as_str()),
        );
        self.volume_inspect(&def.name).await
    }

    pub async fn volume_list(&self) -> Result<Vec<VolumeView>, CoreError> {
        let uses = self.core.runtime.mount_uses().await?;
        let apps = self.core.store.apps_shared()?;
        let refs = referenced(&apps);
        let mut out = Vec::new();
        for row in self.core.store.volumes()? {
            out.push(self.view(&row, &uses, &refs).await);
        }
        Ok(out)
    }

    /// `berth volume ls` in a cluster: this host's volumes and every alive member's (asked
    /// at once with `local=1`), each row with its node, so a shared volume shows its state
    /// on each member that mounts it. A member that does not answer is left out (logged).
    pub async fn cluster_volume_list(&self) -> Result<Vec<VolumeView>, CoreError> {
        let mut out = self.volume_list().await?;
        if !self.cluster().active() {
            return Ok(out);
        }
        for body in self.ask_members("/v1/volumes?local=1").await {
            out.extend(serde_json::from_str::<Vec<VolumeView>>(&body).unwrap_or_default());
        }
        out.sort_by(|a, b| (&a.name, &a.node).cmp(&(&b.name, &b.node)));
        Ok(out)
    }

    /// `berth volume inspect`.
    pub async fn volume_inspect(&self, name: &str) -> Result<VolumeView, CoreError> {
        let row = self.core.stored_volume(name)?.0;
        let uses = self.core.runtime.mount_uses().await?;
        let refs = referenced(&self.core.store.apps_shared()?);
        Ok(self.view(&row, &uses, &refs).await)
    }

    async fn view(
        &self,
        row: &VolumeRow,
        uses: &[MountUse],
        refs: &BTreeMap<String, BTreeSet<String>>,
    ) -> VolumeView {
        let mut v = VolumeView {
            name: row.name.clone(),
            driver: row.driver.clone(),
            node: self.core.node_name.clone(),
            created_ms: row.created_ms,
            apps: refs
                .get(&row.name)
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default(),
            ..Default::default()
        };
        let def = match self.core.volume_def(row) {
            Ok(d) => d,
            Err(e) => {
                v.state = "error".into();
                v.error = e.to_string();
                return v;
            }
        };
        v.opts = def.masked();
        if def.driver == crate::volumes::Driver::Oss {
            let (style, because) = crate::volumes::command::request_style(&def);
            v.request_style = format!("{style} style ({because})");
        }
        if def.driver.host_mounted() {
            v.mountpoint = self.core.mountpoint_of(&def.name);
            let state = host_state(&self.core.volumes.dirs, &def.name).await;
            v.state = state.as_str().into();
            if let HostState::Dead(e) = state {
                v.error = e;
            }
        } else {
            match self.core.runtime.volume_mountpoint(&def.name).await {
                Ok(Some(mp)) => {
                    v.mountpoint = mp;
                    v.state = "ready".into();
                }
                Ok(None) => v.state = "absent".into(),
                Err(e) => {
                    v.state = "error".into();
                    v.error = e.to_string();
                }
            }
        }
        v.used_by = self
            .core
            .users_of(uses, &def.name, def.driver)
            .into_iter()
            .map(|u| VolumeUser {
                container: u.container.clone(),
                running: u.running,
                target: u.target.clone(),
            })
            .collect();
        v
    }

    /// `berth volume rm`: refused while a container (any state) uses the volume or an app's
    /// template names it.
    pub async fn volume_rm(&self, name: &str) -> Result<(), CoreError> {
        let _serial = self.core.deploys.lock().await;
        let (_, def) = self.core.stored_volume(name)?;
        self.core.remove_volume_object(&def, true).await?;
        self.core.event(
            crate::model::EventKind::Volume,
            "",
            "",
            &format!("removed volume {name}"),
        );
        Ok(())
    }
}

/// Checks mounts every [`CHECK_EVERY`] and when a helper exits.
pub async fn volume_loop(core: Arc<Core>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let cgroups = crate::metrics::cgroup::Cgroups::detect();
    let wake = core.volumes.wake.clone();
    loop {
        core.check_volumes(&cgroups).await;
        tokio::select! {
            _ = tokio::time::sleep(CHECK_EVERY) => {}
            _ = wake.notified() => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// The cluster's saved records, sealed under the volumes' at-rest key (`DATA_DIR/
/// volume-secrets.key`): the members' records hold their secrets.
pub struct CoreAtRest(pub Arc<super::Core>);

impl crate::cluster::hub::AtRest for CoreAtRest {
    fn seal(&self, what: &str, plain: &[u8]) -> Result<Vec<u8>, String> {
        self.0
            .volumes
            .seal_at_rest(what, plain)
            .map_err(|e| e.to_string())
    }
    fn unseal(&self, what: &str, sealed: &[u8]) -> Result<Vec<u8>, String> {
        self.0
            .volumes
            .unseal_at_rest(what, sealed)
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_and_specs_lose_their_credentials() {
        let t = "volumes:\n  d:\n    driver: oss\n    driver_opts:\n      secret_key: S3CR3T\n      access_key: AKID\n";
        let mut app = AppSpec {
            name: "a".into(),
            labels: BTreeMap::new(),
            services: BTreeMap::new(),
            externals: BTreeMap::new(),
            proxy_ports: Vec::new(),
            volumes: BTreeMap::from([(
                "d".to_string(),
                crate::model::VolumeSpec {
                    driver: "oss".into(),
                    driver_opts: BTreeMap::from([
                        ("secret_key".to_string(), "S3CR3T".to_string()),
                        ("access_key".to_string(), "AKID".to_string()),
                        ("bucket".to_string(), "b".to_string()),
                    ]),
                    ..Default::default()
                },
            )]),
            warnings: Vec::new(),
            file_values: BTreeMap::new(),
        };
        let r = redact_template(t, &app);
        assert!(!r.contains("S3CR3T") && !r.contains("AKID"), "{r}");
        redact_spec(&mut app);
        let json = serde_json::to_string(&app).expect("json");
        assert!(!json.contains("S3CR3T") && !json.contains("AKID"), "{json}");
        assert!(json.contains("\"bucket\":\"b\""));
    }
}
