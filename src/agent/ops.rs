//! Operations the API asks of the core: deploy, scale, stop/start, rm, redeploy, queries.
//!
//! Invariant: every operation validates completely before it writes anything, so bad input
//! changes nothing; the engine is then driven by reconcile passes, never directly from here
//! (except `rm`, which removes what the app owned under the reconcile lock).

use super::{Core, desired_replicas};
use crate::model::AppSpec;
use crate::model::PullPolicy;
use crate::model::{Instance, NetworkMode, Protocol, Release, ServiceRelease, VersionState};
use crate::runtime::{ImageInfo, PruneReport, RuntimeError};
use crate::spec::{self, SpecError};
use crate::store::StoreError;
use crate::store::StoredApp;
use crate::wire::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Volume(#[from] crate::volumes::VolumeError),
    /// The host failed berth (a file it must write); the request was fine.
    #[error("{0}")]
    Host(String),
    #[error(transparent)]
    Cluster(#[from] crate::cluster::hub::ClusterError),
}

/// The user-facing operations, what the API asks: deploy, scale, stop/start, redeploy, rm,
/// versions and traffic, images, volumes, and the queries. A type apart from the reconcile
/// loop ([`Core`]): an operation validates, writes the desired state and asks the loop for a
/// pass; it reaches the engine itself only for what a pass does not do (images, `rm` under the
/// ops lock, volume objects).
#[derive(Clone)]
pub struct Ops {
    pub(super) core: std::sync::Arc<Core>,
    /// This host's cluster membership (in no cluster until init or join).
    pub(super) cluster: std::sync::Arc<crate::cluster::hub::Hub>,
}

impl Ops {
    pub fn new(
        core: std::sync::Arc<Core>,
        cluster: std::sync::Arc<crate::cluster::hub::Hub>,
    ) -> Ops {
        core.names.attach(&cluster);
        core.autoscaler.attach_cluster(&cluster);
        core.jobs.attach_cluster(&cluster);
        Ops { core, cluster }
    }

    /// The cluster: members, init, tokens, join, leave.
    pub fn cluster(&self) -> &crate::cluster::hub::Hub {
        &self.cluster
    }

    /// Who this node is (`/v1/health`).
    pub fn health(&self) -> Health {
        Health {
            status: "ok".into(),
            node_id: self.core.node_id.clone(),
            node_name: self.core.node_name.clone(),
            engine: self.core.engine.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    /// The `[metrics]` and `[logs]` settings in force.
    pub fn settings(&self) -> std::sync::Arc<super::Settings> {
        self.core.settings()
    }

    pub fn event(&self, kind: crate::model::EventKind, app: &str, service: &str, message: &str) {
        self.core.event(kind, app, service, message)
    }

    pub fn stopping(&self) -> bool {
        self.core.stopping()
    }

    /// `berth node label`: sets and removes this node's labels.
    pub fn node_label(
        &self,
        req: crate::wire::LabelRequest,
    ) -> Result<crate::wire::NodeSettings, CoreError> {
        let valid_key = |k: &str| {
            !k.is_empty()
                && k.len() <= 63
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b))
        };
        for (k, v) in &req.set {
            if !valid_key(k) {
                return Err(CoreError::BadRequest(format!(
                    "label key {k:?}: use 1-63 letters, digits, '.', '_', '-' or '/'"
                )));
            }
            if v.len() > 128 || v.chars().any(|c| c.is_control()) {
                return Err(CoreError::BadRequest(format!(
                    "label {k}: the value is at most 128 characters, without control characters"
                )));
            }
        }
        if let Some(k) = req.remove.iter().find(|k| !valid_key(k)) {
            return Err(CoreError::BadRequest(format!(
                "label key {k:?} is not a valid key"
            )));
        }
        let mut s = self.core.store.node_settings()?;
        for k in &req.remove {
            s.labels.remove(k);
        }
        s.labels.extend(req.set.clone());
        if s.labels.len() > 64 {
            return Err(CoreError::BadRequest("a node has at most 64 labels".into()));
        }
        self.core.store.set_node_settings(&s)?;
        let shown: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        self.core.event(
            crate::model::EventKind::Node,
            "",
            "",
            &format!("node {} labels: {}", self.core.node_name, shown.join(" ")),
        );
        self.core.wake(super::Wake::Command);
        Ok(s)
    }

    /// `berth node drain` / `undrain`: whether placement may put new instances here.
    pub fn node_drain(&self, drain: bool) -> Result<crate::wire::NodeSettings, CoreError> {
        let mut s = self.core.store.node_settings()?;
        if s.drain != drain {
            s.drain = drain;
            self.core.store.set_node_settings(&s)?;
            self.core.event(
                crate::model::EventKind::Node,
                "",
                "",
                &format!(
                    "node {} {}",
                    self.core.node_name,
                    if drain {
                        "drained: no new instances are placed here"
                    } else {
                        "undrained"
                    }
                ),
            );
            self.core.wake(super::Wake::Command);
        }
        Ok(s)
    }

    /// `berth nodes`: the members, with each one's labels and drain flag (this host's from
    /// its store, the others' from their node records).
    pub async fn nodes(&self) -> Result<Vec<crate::wire::NodeView>, CoreError> {
        self.nodes_counting(None).await
    }

    /// [`Ops::nodes`], with this host's instance count given when the caller has just
    /// listed the engine (`None`: listed here).
    async fn nodes_counting(
        &self,
        listed: Option<usize>,
    ) -> Result<Vec<crate::wire::NodeView>, CoreError> {
        let mut list = self.cluster.nodes().await?;
        let mine = self.core.store.node_settings()?;
        let theirs: BTreeMap<String, serde_json::Value> = self
            .cluster
            .remote(crate::cluster::state::Kind::Node)
            .into_iter()
            .map(|r| (r.node_id, r.body))
            .collect();
        for n in &mut list {
            let s = if n.me {
                mine.clone()
            } else {
                theirs
                    .get(&n.node_id)
                    .and_then(|b| serde_json::from_value(b["settings"].clone()).ok())
                    .unwrap_or_default()
            };
            n.labels = s.labels;
            n.drain = s.drain;
            if n.me {
                n.agent = env!("CARGO_PKG_VERSION").into();
                n.instances = match listed {
                    Some(c) => c as u64,
                    None => self.core.instances().await?.len() as u64,
                };
                let u = self.host_use();
                (n.cpus, n.cpu_percent, n.mem_total, n.mem_used) =
                    (u.cpus, u.cpu_percent, u.mem_total, u.mem_used);
                n.protocol = crate::cluster::spoken();
            } else if let Some(b) = theirs.get(&n.node_id) {
                n.agent = b["agent"].as_str().unwrap_or_default().to_string();
                n.instances = b["instances"].as_u64().unwrap_or(0);
                n.protocol = protocol_of(b);
                if let Ok(u) = serde_json::from_value::<HostUse>(b["use"].clone()) {
                    (n.cpus, n.cpu_percent, n.mem_total, n.mem_used) =
                        (u.cpus, u.cpu_percent, u.mem_total, u.mem_used);
                }
            }
        }
        Ok(list)
    }

    /// `berth events` across the cluster: this host's last `limit` events and the other
    /// members' recent ones (each host shares its last [`EVENTS_SHARED`]), merged by time.
    pub fn cluster_events(
        &self,
        app: Option<&str>,
        limit: i64,
    ) -> Result<Vec<crate::wire::Event>, CoreError> {
        let mut list: Vec<crate::wire::Event> = self
            .core
            .store
            .events(app, 0, limit)?
            .into_iter()
            .map(|e| crate::wire::Event {
                node: self.core.node_name.clone(),
                ..e.into()
            })
            .collect();
        for r in self.cluster.remote(crate::cluster::state::Kind::Event) {
            if let Ok(mut e) = serde_json::from_value::<crate::wire::Event>(r.body)
                && app.is_none_or(|a| a == e.app)
            {
                e.id = 0;
                e.node = r.node_name;
                list.push(e);
            }
        }
        list.sort_by_key(|e| e.time_ms);
        let keep = list.len().saturating_sub(limit.max(0) as usize);
        Ok(list.split_off(keep))
    }

    /// This host's capacity and use, from the collector's latest cycle.
    pub fn host_use(&self) -> HostUse {
        HostUse::of(self.core.metrics.latest().as_deref())
    }

    /// The cluster protocol member `node_id` speaks, from its node record (0: none yet).
    pub fn member_protocol(&self, node_id: &str) -> u32 {
        self.cluster
            .remote(crate::cluster::state::Kind::Node)
            .into_iter()
            .find(|r| r.node_id == node_id)
            .map(|r| protocol_of(&r.body))
            .unwrap_or(0)
    }

    /// The member that owns `app`, when this host does not and another one does.
    pub fn remote_owner(&self, app: &str) -> Option<String> {
        if !self.cluster.active() || matches!(self.core.store.get_app(app), Ok(Some(_))) {
            return None;
        }
        self.cluster.owner_of(app).map(|r| r.node_id)
    }

    /// Waits (up to `limit`) for the next reconcile pass to hand its table to the router.
    pub async fn next_pass(&self, limit: std::time::Duration) {
        let _ = tokio::time::timeout(limit, self.core.routed.notified()).await;
    }

    /// Publishes this host's records to the cluster (its node, apps and instances), when it
    /// is in one.
    pub async fn publish_to_cluster(&self) -> Result<(), CoreError> {
        use crate::cluster::state::Kind;
        if !self.cluster.active() {
            self.core.set_fleet(None);
            return Ok(());
        }
        // A member held to an older protocol (a mixed-version cluster) runs its apps alone,
        // as that release did.
        let places = crate::cluster::spoken() >= crate::cluster::PLACEMENT_PROTOCOL;
        // One engine list serves all (a pass just listed too; this runs only in a cluster).
        let listed = self.core.instances().await?;
        if places {
            self.settle_ownership(listed.len()).await?;
        }
        let apps = self.apps_over(&listed)?;
        let instances = self.ps_over(None, listed.clone())?;
        let mut records = Vec::with_capacity(1 + apps.len() + instances.len());
        let body = |v: serde_json::Result<serde_json::Value>| v.unwrap_or_default();
        records.push((
            Kind::Node,
            self.core.node_id.clone(),
            serde_json::json!({
                "name": self.core.node_name,
                "engine": self.core.engine,
                "agent": env!("CARGO_PKG_VERSION"),
                "instances": instances.len(),
                "settings": self.core.store.node_settings()?,
                "use": self.host_use(),
                "tokens": self.core.store.token_counts()?,
                "protocol": crate::cluster::spoken(),
                "loads": self.core.autoscaler.loads(),
                "requests": self.core.router.last_requests(),
            }),
        ));
        for a in &apps {
            records.push((Kind::App, a.name.clone(), body(serde_json::to_value(a))));
        }
        for i in &instances {
            records.push((
                Kind::Instance,
                i.name.clone(),
                body(serde_json::to_value(i)),
            ));
        }
        for e in self.core.store.events(None, 0, EVENTS_SHARED)? {
            records.push((
                Kind::Event,
                e.id.to_string(),
                body(serde_json::to_value(crate::wire::Event::from(e))),
            ));
        }
        // This host's apps whole (the template too: a member that takes one over from this
        // host, lost, keeps all of it), with where their instances run.
        let own = self.core.store.apps_shared()?;
        let assignments = self.core.store.assignments()?;
        let claims = self
            .core
            .claims
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for a in own.iter().filter(|_| places) {
            let placed: Vec<&crate::model::Assignment> = assignments
                .iter()
                .filter(|x| x.app == a.spec.name)
                .collect();
            let batches: Vec<(&String, u32, &crate::plan::Claim)> = claims
                .iter()
                .filter(|((app, ..), _)| *app == a.spec.name)
                .map(|((_, service, version), c)| (service, *version, c))
                .collect();
            let files = self.file_values_of(a);
            let volumes = self.core.shared_volumes_of(a);
            let registries = self.core.logins_of(a);
            let images = self.core.image_ids_of(a).await;
            records.push((
                Kind::Spec,
                a.spec.name.clone(),
                serde_json::json!({ "app": a, "assignments": placed, "claims": batches, "files": files, "volumes": volumes, "registries": registries, "images": images }),
            ));
        }
        for (name, body) in self.config_set_records() {
            records.push((Kind::ConfigSet, name, body));
        }
        self.cluster
            .publish(
                &[
                    Kind::Node,
                    Kind::App,
                    Kind::Instance,
                    Kind::Event,
                    Kind::Spec,
                    Kind::ConfigSet,
                ],
                records,
            )
            .await;
        let fleet = if places {
            Some(self.fleet_over(&listed, &own).await?)
        } else {
            None
        };
        self.core.set_fleet(fleet);
        Ok(())
    }

    /// Moves apps' ownership where members were lost (Cluster II). An app this host holds
    /// that another member holds at a higher ownership epoch was taken over while this host
    /// was away: this host gives it up (its containers stay, run now as that member places
    /// them). An app whose owner is lost past `[cluster] reschedule_after` (or removed) is
    /// taken over by one member, the same on every host that sees it (rendezvous order
    /// over the alive members that place), and only on a side that sees a strict majority
    /// of the members: two sides of a partition never both take it.
    async fn settle_ownership(&self, listed: usize) -> Result<(), CoreError> {
        use crate::cluster::state::Kind;
        let own = self.core.store.apps_shared()?;
        // The copy of each app at the highest epoch, of the other members'.
        let mut best: BTreeMap<String, (u64, crate::cluster::hub::Remote, bool)> = BTreeMap::new();
        for (r, removed) in self.cluster.remote_with_removed(Kind::Spec) {
            let Some(name) = r.body["app"]["spec"]["name"].as_str().map(str::to_string) else {
                continue;
            };
            let epoch = r.body["app"]["epoch"].as_u64().unwrap_or(0);
            if best.get(&name).is_none_or(|(e, ..)| epoch > *e) {
                best.insert(name, (epoch, r, removed));
            }
        }
        for a in own.iter() {
            let Some((epoch, r, _)) = best.get(&a.spec.name) else {
                continue;
            };
            if *epoch > a.epoch {
                self.core.store.delete_app(&a.spec.name)?;
                self.core.event(
                    crate::model::EventKind::Cluster,
                    &a.spec.name,
                    "",
                    &format!(
                        "{} took this app over while this host was away (ownership epoch {epoch}, here {}): it is owned there now; changes made here meanwhile are dropped, and this host runs what {} places here",
                        r.node_name, a.epoch, r.node_name
                    ),
                );
            }
        }
        let members = self.nodes_counting(Some(listed)).await?;
        let sight = Sight::of(&members, self.cluster.reschedule_after_ms());
        if !sight.majority() {
            return Ok(());
        }
        let candidates: Vec<&str> = members
            .iter()
            .filter(|n| {
                n.state == "alive"
                    && (n.me
                        || !n.agent.is_empty() && n.protocol >= crate::cluster::PLACEMENT_PROTOCOL)
            })
            .map(|n| n.node_id.as_str())
            .collect();
        for (name, (epoch, r, removed)) in best {
            if own.iter().any(|a| a.spec.name == name) {
                continue;
            }
            let gone = removed
                || members
                    .iter()
                    .any(|n| n.node_id == r.node_id && sight.lost_long(n));
            if !gone
                || crate::plan::placement::successor(&name, candidates.iter().copied())
                    != Some(self.core.node_id.as_str())
            {
                continue;
            }
            let Some((app, assignments)) = self.replica_of(&r.body) else {
                continue;
            };
            if let Ok(v) = serde_json::from_value(r.body["volumes"].clone()) {
                self.core.keep_shared_volumes(&name, v).await;
            }
            self.core
                .store
                .take_over_app(&app, epoch + 1, &assignments)?;
            let why = if removed {
                "was removed".to_string()
            } else {
                format!(
                    "has been lost for {} s",
                    (sight.now - r.seen_ms).max(0) / 1000
                )
            };
            self.core.event(
                crate::model::EventKind::Cluster,
                &name,
                "",
                &format!(
                    "took this app over from {}, which {why}: changes to it are made here now (ownership epoch {})",
                    r.node_name,
                    epoch + 1
                ),
            );
            self.core.wake(super::Wake::Command);
        }
        Ok(())
    }

    /// The secrets and configs `app`'s deploys wrote from values (`environment:`,
    /// `content:`), by file name, as this host holds them: they travel with the app's
    /// `Spec` record (sealed, like every record) so a member running its instances, or
    /// taking it over, writes them too.
    fn file_values_of(&self, app: &crate::store::StoredApp) -> BTreeMap<String, String> {
        let dir = self.core.files_dir.join(&app.spec.name);
        let mut out = BTreeMap::new();
        for f in file_sources(app) {
            if let crate::model::FileSource::File(p) = f {
                let p = std::path::Path::new(p);
                if p.parent() == Some(dir.as_path())
                    && let Some(name) = p.file_name().and_then(|n| n.to_str())
                    && !out.contains_key(name)
                    && let Ok(v) = std::fs::read_to_string(p)
                {
                    out.insert(name.to_string(), v);
                }
            }
        }
        out
    }

    /// Points another member's app's value files at this host's copies (under its own
    /// `files/APP/`), written from `files` (its `Spec` record's) where missing: 0700
    /// directory, 0400 files, whole or not at all. A file that cannot be written is left
    /// pointing nowhere here: the container's create fails and says so.
    fn localise_files(&self, app: &mut crate::store::StoredApp, files: &serde_json::Value) {
        let Ok(files) = serde_json::from_value::<BTreeMap<String, String>>(files.clone()) else {
            return;
        };
        let Some(dir) = app_files_dir(&self.core.files_dir, &app.spec.name) else {
            tracing::warn!(app = %app.spec.name, "another member's app name is not one plain path component: its files are not written");
            return;
        };
        if files.is_empty() {
            return;
        }
        let mut write = Vec::new();
        let mut fix = |f: &mut crate::model::FileSource| {
            let crate::model::FileSource::File(p) = &f else {
                return;
            };
            let Some(name) = std::path::Path::new(p).file_name().and_then(|n| n.to_str()) else {
                return;
            };
            if let Some(v) = files.get(name) {
                let here = dir.join(name);
                if !here.exists() {
                    write.push((here.clone(), v.clone()));
                }
                *f = crate::model::FileSource::File(here.to_string_lossy().into_owned());
            }
        };
        let specs = app.spec.services.values_mut().chain(
            app.versions
                .values_mut()
                .flatten()
                .map(|l| &mut l.version.spec),
        );
        for s in specs {
            let s = std::sync::Arc::make_mut(s);
            s.secrets
                .iter_mut()
                .chain(s.configs.iter_mut())
                .map(|f| &mut f.source)
                .chain(s.ext.ssl_cert.iter_mut().map(|c| &mut c.key))
                .for_each(&mut fix);
        }
        write.sort();
        write.dedup();
        self.core
            .remote_files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(app.spec.name.clone());
        if let Err(e) = write_file_values(&write) {
            tracing::warn!(app = %app.spec.name, error = %e, "cannot write another member's secret files");
        }
    }

    /// Removes this host's copies of the secret files of other members' apps that are gone
    /// from the cluster (neither replicated by a member, nor this host's own now, nor with a
    /// container here: a container keeps its files until it is gone).
    fn forget_remote_files(
        &self,
        own: &[std::sync::Arc<crate::store::StoredApp>],
        fleet: &super::fleet::Fleet,
    ) {
        let mut held = self
            .core
            .remote_files
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let gone: Vec<String> = held
            .iter()
            .filter(|n| {
                !own.iter().any(|a| &a.spec.name == *n)
                    && !fleet.remote.iter().any(|r| &r.app.spec.name == *n)
                    && !fleet.runs_here(n)
            })
            .cloned()
            .collect();
        for name in gone {
            let Some(dir) = app_files_dir(&self.core.files_dir, &name) else {
                held.remove(&name);
                continue;
            };
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(app = %name, error = %e, "cannot remove another member's secret files");
                    continue;
                }
            }
            held.remove(&name);
        }
    }

    /// An app and its assignments from another member's `Spec` record, its value files
    /// written here and pointed at ([`Ops::localise_files`]).
    pub(super) fn replica_of(
        &self,
        body: &serde_json::Value,
    ) -> Option<(crate::store::StoredApp, Vec<crate::model::Assignment>)> {
        let mut app: crate::store::StoredApp = serde_json::from_value(body["app"].clone()).ok()?;
        let assignments = serde_json::from_value(body["assignments"].clone()).ok()?;
        self.localise_files(&mut app, &body["files"]);
        Some((app, assignments))
    }

    /// Which member holds each app: of the copies this host knows (its own and the other
    /// members' `Spec` records), the one at the highest ownership epoch (this host's on a
    /// tie, then the member's with the lowest id, so every host agrees).
    fn holders(&self, own: &[std::sync::Arc<crate::store::StoredApp>]) -> BTreeMap<String, String> {
        let mut best: BTreeMap<String, (u64, std::cmp::Reverse<String>)> = own
            .iter()
            .map(|a| {
                (
                    a.spec.name.clone(),
                    (a.epoch, std::cmp::Reverse(String::new())),
                )
            })
            .collect();
        for r in self.cluster.remote(crate::cluster::state::Kind::Spec) {
            let Some(name) = r.body["app"]["spec"]["name"].as_str() else {
                continue;
            };
            let key = (
                r.body["app"]["epoch"].as_u64().unwrap_or(0),
                std::cmp::Reverse(r.node_id.clone()),
            );
            if best.get(name).is_none_or(|b| key > *b) {
                best.insert(name.to_string(), key);
            }
        }
        best.into_iter()
            .map(|(name, (_, std::cmp::Reverse(node)))| {
                let node = if node.is_empty() {
                    self.core.node_id.clone()
                } else {
                    node
                };
                (name, node)
            })
            .collect()
    }

    /// `berth rebalance APP/SERVICE`: spreads the service's instances over the members
    /// again (`plan::placement::rebalance`); the moves are start-first.
    pub async fn rebalance(
        &self,
        app: &str,
        service: &str,
    ) -> Result<crate::wire::RebalanceResponse, CoreError> {
        let stored = self.stored_service(app, service)?;
        if !self.cluster.active() {
            return Err(CoreError::BadRequest(
                "rebalance spreads instances over a cluster's members, and this host is in no cluster (`berth cluster init`, `berth cluster join`)".into(),
            ));
        }
        self.refresh_fleet().await?;
        let Some(fleet) = self.core.fleet() else {
            return Err(CoreError::BadRequest(format!(
                "this host speaks cluster protocol {}, which does not place instances over the members: upgrade it",
                crate::cluster::spoken()
            )));
        };
        // Not beside a pass: it writes the assignments too.
        let _pass = self.core.ops.lock().await;
        let current = self.core.store.assignments()?;
        let mut list: Vec<crate::model::Assignment> = current
            .iter()
            .filter(|a| a.app == app && a.service != service)
            .cloned()
            .collect();
        let mut moved = 0;
        for live in stored.live(service) {
            let Some(d) = super::fleet::demand(&stored, service, live) else {
                continue;
            };
            let (mine, n) = crate::plan::placement::rebalance(&d, &fleet.nodes, &current)
                .map_err(|e| CoreError::BadRequest(e.to_string()))?;
            list.extend(mine);
            moved += n;
        }
        // Versions no longer live keep theirs until the pass drops them.
        list.extend(
            current
                .iter()
                .filter(|a| {
                    a.app == app
                        && a.service == service
                        && !stored
                            .live(service)
                            .iter()
                            .any(|l| l.version.number == a.version)
                })
                .cloned(),
        );
        list.sort();
        let message = if moved == 0 {
            format!("{app}/{service} is spread as evenly as its rules allow: nothing to move")
        } else {
            self.core.store.set_assignments(app, &list)?;
            format!(
                "{app}/{service}: {moved} instance(s) moving; each starts on its new member before the old one stops"
            )
        };
        self.core.event(
            crate::model::EventKind::Deploy,
            app,
            service,
            &format!("rebalance: {message}"),
        );
        self.core.wake(super::Wake::Command);
        Ok(crate::wire::RebalanceResponse { moved, message })
    }

    /// Hands the next pass the cluster as the replicated records say it is now (a deploy or
    /// a scale places over it).
    async fn refresh_fleet(&self) -> Result<(), CoreError> {
        if !self.cluster.active() || crate::cluster::spoken() < crate::cluster::PLACEMENT_PROTOCOL {
            return Ok(());
        }
        let listed = self.core.instances().await?;
        let own = self.core.store.apps_shared()?;
        let fleet = self.fleet_over(&listed, &own).await?;
        self.core.set_fleet(Some(fleet));
        Ok(())
    }

    /// The cluster for the next pass: the members placement may use (alive, not drained,
    /// speaking a protocol that runs placed slots, with a node record), what runs on each,
    /// and the other members' apps.
    async fn fleet_over(
        &self,
        listed: &[Instance],
        own: &[std::sync::Arc<crate::store::StoredApp>],
    ) -> Result<super::fleet::Fleet, CoreError> {
        use crate::cluster::state::Kind;
        use crate::plan::placement::NodeInfo;
        let mut fleet = super::fleet::Fleet::default();
        let holders = self.holders(own);
        for r in self.cluster.remote(Kind::Spec) {
            fleet.owners.insert(r.node_id.clone());
            let Some((mut app, assignments)) = self.replica_of(&r.body) else {
                continue;
            };
            // A lost owner's last copy of an app another member took over is not its.
            if holders.get(&app.spec.name).is_some_and(|h| h != &r.node_id) {
                continue;
            }
            app.owner = r.node_id.clone();
            // Its shared volumes, where it places instances here.
            let here = |a: &crate::model::Assignment| {
                a.node == self.core.node_id || a.from == self.core.node_id
            };
            if assignments.iter().any(here) {
                if let Ok(v) = serde_json::from_value(r.body["volumes"].clone()) {
                    self.core.keep_shared_volumes(&app.spec.name, v).await;
                }
                // The owner's registry logins and image ids, for the pulls of its images
                // here.
                self.core.keep_carried(
                    &app.spec.name,
                    super::registries::Carried {
                        logins: serde_json::from_value(r.body["registries"].clone())
                            .unwrap_or_default(),
                        images: serde_json::from_value(r.body["images"].clone())
                            .unwrap_or_default(),
                    },
                );
            }
            let claims = serde_json::from_value(r.body["claims"].clone()).unwrap_or_default();
            fleet.remote.push(super::fleet::RemoteApp {
                app: std::sync::Arc::new(app),
                assignments,
                claims,
            });
        }
        for r in self.cluster.remote(Kind::Node) {
            if r.state == crate::cluster::gossip::MemberState::Alive
                && let Ok(loads) = serde_json::from_value::<Vec<crate::plan::autoscale::Load>>(
                    r.body["loads"].clone(),
                )
            {
                fleet.loads.extend(loads);
            }
            if r.state == crate::cluster::gossip::MemberState::Alive
                && let Ok(requests) =
                    serde_json::from_value::<Vec<(String, i64)>>(r.body["requests"].clone())
            {
                for (label, ms) in requests {
                    let e = fleet.requests.entry(label).or_insert(ms);
                    *e = (*e).max(ms);
                }
            }
            fleet.owners.insert(r.node_id);
        }
        let known: BTreeMap<&str, &crate::store::StoredApp> = own
            .iter()
            .chain(fleet.remote.iter().map(|r| &r.app))
            .map(|a| (a.spec.name.as_str(), &**a))
            .collect();
        // What runs on each member: this host's from the engine, the others' from their
        // instance records.
        let mut running: BTreeMap<String, Vec<crate::plan::placement::Running>> = BTreeMap::new();
        running.insert(
            self.core.node_id.clone(),
            listed
                .iter()
                .map(|i| super::fleet::running(i, &known))
                .collect(),
        );
        // The other members' instance records, read once: what runs on each (for room and
        // affinity), and, of the alive members, what serves (for counts, moves and routing).
        let members = self.nodes_counting(Some(listed.len())).await?;
        let ips: BTreeMap<&str, std::net::IpAddr> = members
            .iter()
            .map(|n| (n.node_id.as_str(), n.address.ip()))
            .collect();
        let mut serving = Vec::new();
        for r in self.cluster.remote(Kind::Instance) {
            let Ok(v) = serde_json::from_value::<InstanceView>(r.body) else {
                continue;
            };
            let r0 = crate::plan::placement::Running {
                app: v.app.clone(),
                service: v.service.clone(),
                image: v.image.clone(),
                name: v.name.clone(),
                ..Default::default()
            };
            let number = crate::model::version_number(&v.service, &v.version);
            if r.state == crate::cluster::gossip::MemberState::Alive && v.state != "removing" {
                fleet
                    .present
                    .insert((v.app.clone(), v.service.clone(), v.version.clone(), v.slot));
                if matches!(v.state.as_str(), "running" | "restarting" | "created") {
                    fleet.elsewhere.push(crate::plan::names::Elsewhere {
                        app: v.app.clone(),
                        service: v.service.clone(),
                        node: r.node_id.clone(),
                        ready: v.state == "running" && matches!(v.health.as_str(), "" | "healthy"),
                        exposed: v.exposed.clone(),
                    });
                }
            }
            running
                .entry(r.node_id.clone())
                .or_default()
                .push(super::fleet::reserved(r0, number, &known));
            if r.state == crate::cluster::gossip::MemberState::Alive
                && super::fleet::serves(&v)
                && let Some(ip) = ips.get(r.node_id.as_str())
            {
                fleet.ready_slots.insert((
                    v.app.clone(),
                    v.service.clone(),
                    v.version.clone(),
                    v.slot,
                    r.node_id.clone(),
                ));
                fleet.endpoints.push(crate::router::table::RemoteEndpoint {
                    app: v.app.clone(),
                    service: v.service.clone(),
                    version: v.version.clone(),
                    id: v.container_id.clone(),
                    ip: *ip,
                    ports: v.ports.clone(),
                    reported_ms: r.at_ms,
                });
                serving.push(v);
            }
        }
        fleet.ready = super::fleet::count_ready(serving);
        // Rescheduling off a lost member: only past the grace period, and only on a side of
        // a partition that sees a strict majority of the members it last knew (those that
        // did not leave), so two sides never both move the same instances.
        let sight = Sight::of(&members, self.cluster.reschedule_after_ms());
        let majority = sight.majority();
        for n in members {
            let lost = sight.lost_long(&n);
            if lost && !majority {
                fleet.held.insert(
                    n.node_id.clone(),
                    format!(
                        "this host sees {} of the {} members, not a strict majority, so it moves nothing (a partition's other side may run them); `berth node rm {}` moves them",
                        sight.seen, sight.known, n.name
                    ),
                );
            }
            let speaks = if n.me {
                crate::cluster::spoken()
            } else {
                n.protocol
            };
            let closed = if n.state != "alive" {
                Some(n.state.clone())
            } else if n.drain {
                Some("drained".to_string())
            } else if !n.me && n.agent.is_empty() {
                Some("no node record yet".to_string())
            } else if speaks < crate::cluster::PLACEMENT_PROTOCOL {
                Some(format!("speaks cluster protocol {speaks}"))
            } else {
                None
            };
            let open = closed.is_none();
            let drained = n.drain && n.state == "alive";
            if let Some(why) = closed {
                fleet.closed.insert(n.name.clone(), why);
            }
            fleet.nodes.push(NodeInfo {
                running: running.remove(&n.node_id).unwrap_or_default(),
                id: n.node_id,
                name: n.name,
                labels: n.labels,
                open,
                drained,
                lost: lost && majority,
                cpu_millis: u64::from(n.cpus) * 1000,
                mem_bytes: n.mem_total,
                gpus: 0,
            });
        }
        fleet.local_slots = listed
            .iter()
            .filter_map(|i| {
                Some((
                    i.app.clone(),
                    i.service.clone(),
                    i.version_number()?,
                    i.slot,
                ))
            })
            .collect();
        for i in listed
            .iter()
            .filter(|i| i.state != crate::model::InstanceState::Removing)
        {
            fleet
                .present
                .insert((i.app.clone(), i.service.clone(), i.version.clone(), i.slot));
        }
        for i in listed.iter().filter(|i| crate::plan::is_ready(i)) {
            fleet.ready_slots.insert((
                i.app.clone(),
                i.service.clone(),
                i.version.clone(),
                i.slot,
                self.core.node_id.clone(),
            ));
        }
        self.forget_remote_files(own, &fleet);
        Ok(fleet)
    }
}

/// What this host sees of the members, for moving things off lost ones: a member counts
/// as known unless it left, as seen when alive; a lost one is let go of after `grace` ms.
struct Sight {
    seen: usize,
    known: usize,
    grace: i64,
    now: i64,
}

impl Sight {
    fn of(members: &[crate::wire::NodeView], grace: i64) -> Sight {
        Sight {
            seen: members.iter().filter(|n| n.state == "alive").count(),
            known: members.iter().filter(|n| n.state != "left").count(),
            grace,
            now: crate::clock::now_ms(),
        }
    }

    /// A strict majority of the members known: only such a side moves anything.
    fn majority(&self) -> bool {
        2 * self.seen > self.known
    }

    /// Lost for the grace period at least.
    fn lost_long(&self, n: &crate::wire::NodeView) -> bool {
        n.state == "lost" && self.now - n.since_ms >= self.grace
    }
}

/// A host's capacity and use as its node record carries it: coarse on purpose, so the record
/// changes (and travels) only when the figures move by a step.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HostUse {
    pub cpus: u32,
    /// Busy percent of all CPUs, to the nearest 5.
    pub cpu_percent: Option<f64>,
    pub mem_total: u64,
    /// Total less available, to the nearest 1% of the total.
    pub mem_used: u64,
}

impl HostUse {
    /// From the collector's latest cycle (`None`: none yet).
    pub fn of(s: Option<&crate::metrics::collect::Snapshot>) -> HostUse {
        let Some(s) = s else {
            return HostUse::default();
        };
        let host = crate::metrics::history::figures(s)
            .into_iter()
            .next()
            .map(|(_, _, _, f)| f);
        let mem_total = s.sample.mem("MemTotal");
        let step = (mem_total / 100).max(1);
        HostUse {
            // cpu-total comes first, then one row per CPU.
            cpus: s.cpu_percent.len().saturating_sub(1).max(1) as u32,
            cpu_percent: host
                .as_ref()
                .and_then(|f| f.cpu_percent)
                .map(|p| (p / 5.0).round() * 5.0),
            mem_total,
            mem_used: host
                .map(|f| ((f.mem_bytes as u64 + step / 2) / step) * step)
                .unwrap_or(0)
                .min(mem_total),
        }
    }
}

/// What the other members run of this host's apps (see `Ops::elsewhere`).
#[derive(Debug, Default)]
struct Elsewhere {
    /// Slots placed, by (app, service, version).
    placed: BTreeMap<(String, String, u32), u32>,
    /// Instances running ready and up to date on other members.
    ready: super::fleet::Ready,
}

/// The protocol a node record says its member speaks (records of protocol 1 did not say).
fn protocol_of(record: &serde_json::Value) -> u32 {
    record["protocol"].as_u64().unwrap_or(1) as u32
}

/// How many of its latest events a host shares with the cluster.
pub const EVENTS_SHARED: i64 = 50;

impl From<crate::plan::release::ReleaseError> for CoreError {
    fn from(e: crate::plan::release::ReleaseError) -> CoreError {
        use crate::plan::release::ReleaseError as R;
        match e {
            R::Invalid(m) => CoreError::BadRequest(m),
            R::NotFound(m) => CoreError::NotFound(m),
            R::Conflict(m) => CoreError::Conflict(m),
        }
    }
}

/// How stale another member's row is: None while it is alive.
fn stale(r: &crate::cluster::hub::Remote) -> Option<String> {
    use crate::cluster::gossip::MemberState;
    if r.state == MemberState::Alive {
        return None;
    }
    let ago = (crate::clock::now_ms() - r.seen_ms).max(0) / 1000;
    Some(format!("{}, last heard {ago} s ago", r.state.as_str()))
}

fn unknown_service(app: &str, service: &str, stored: &crate::store::StoredApp) -> CoreError {
    CoreError::NotFound(format!(
        "app {app:?} has no service {service:?}; its services are: {}",
        stored
            .spec
            .services
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

pub(super) fn unknown_app(name: &str) -> CoreError {
    CoreError::NotFound(format!(
        "app {name:?} is not deployed on this node: `berth apps` lists the deployed apps"
    ))
}

/// Swarm-classic `affinity:` rules judged on this host, the one every service runs on until
/// placement across hosts lands: each rule this host does not meet (given what berth runs
/// here, this app's new spec included) is a warning that says so.
fn affinity_warnings(
    app: &crate::model::AppSpec,
    others: &[std::sync::Arc<crate::store::StoredApp>],
) -> Vec<String> {
    let mut out = Vec::new();
    for (name, svc) in &app.services {
        let here = app
            .services
            .iter()
            .filter(|(n, _)| *n != name)
            .chain(others.iter().flat_map(|a| a.spec.services.iter()))
            .map(|(n, s)| spec::HostContainer {
                service: n,
                image: &s.image,
                name: "",
                labels: &s.labels,
            });
        for rule in &svc.placement {
            let Some(a) = spec::Affinity::of(rule) else {
                continue;
            };
            if !a.met(here.clone()) {
                out.push(format!(
                    "service {name:?}: `{rule}` is not met on this host{}: berth runs every service on the host it is deployed to until placement across hosts (the cluster) lands",
                    if a.soft { " (a preference)" } else { "" }
                ));
            }
        }
    }
    out
}

/// Where each `environment:`/`content:` secret or config of `app` is written (under
/// `files_dir/APP/`, one file per value: `secrets-NAME-DIGEST`), with every service's
/// reference pointed at it. Returns the files to write (path, bytes).
fn place_file_values(
    app: &mut crate::model::AppSpec,
    files_dir: &std::path::Path,
) -> Vec<(std::path::PathBuf, String)> {
    use crate::model::FileSource;
    let dir = files_dir.join(&app.name);
    let mut out = Vec::new();
    for svc in app.services.values_mut() {
        let svc = std::sync::Arc::make_mut(svc);
        let refs = svc
            .secrets
            .iter_mut()
            .map(|f| ("secrets", f))
            .chain(svc.configs.iter_mut().map(|f| ("configs", f)));
        for (kind, f) in refs {
            let FileSource::Value { digest } = &f.source else {
                continue;
            };
            let path = dir.join(format!("{kind}-{}-{digest}", f.name));
            if let Some(v) = app.file_values.get(&format!("{kind}/{}", f.name)) {
                out.push((path.clone(), v.clone()));
            }
            f.source = FileSource::File(path.to_string_lossy().into_owned());
        }
    }
    for (name, svc) in app.services.iter_mut() {
        let Some(c) = svc.ext.ssl_cert.as_ref() else {
            continue;
        };
        let FileSource::Value { digest } = &c.key else {
            continue;
        };
        let path = dir.join(format!("tls-{name}-{digest}.key"));
        if let Some(v) = app.file_values.get(&spec::tls_key_value(name)) {
            out.push((path.clone(), v.clone()));
        }
        if let Some(c) = std::sync::Arc::make_mut(svc).ext.ssl_cert.as_mut() {
            c.key = FileSource::File(path.to_string_lossy().into_owned());
        }
    }
    out
}

/// The template with the lines of every label certificate's private key masked (the key is
/// written under the data directory; the stored template keeps no copy). Each base64 line
/// appears in the text as written, whether the label joins them with `\n` or line breaks.
fn redact_tls_keys(template: &str, app: &AppSpec) -> String {
    let mut t = template.to_string();
    for (_, pem) in app
        .file_values
        .iter()
        .filter(|(k, _)| k.starts_with("tls/"))
    {
        for line in pem
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        {
            t = t.replace(line, crate::volumes::MASK);
        }
    }
    t
}

/// Where every secret, config and label certificate's key of `app`'s services comes from,
/// in its spec and its live versions.
fn file_sources(app: &crate::store::StoredApp) -> impl Iterator<Item = &crate::model::FileSource> {
    app.spec
        .services
        .values()
        .map(|s| &**s)
        .chain(app.versions.values().flatten().map(|l| &*l.version.spec))
        .flat_map(|s| {
            s.secrets
                .iter()
                .chain(s.configs.iter())
                .map(|f| &f.source)
                .chain(s.ext.ssl_cert.iter().map(|c| &c.key))
        })
}

/// Writes the files [`place_file_values`] named: the directory 0700, each file 0400 (root
/// reads it; the container sees it through a read-only bind), whole or not at
/// ([`crate::atomic_file::create`]). A file's name holds its value's digest,
/// so one that exists already holds these bytes and is left as it is.
fn write_file_values(files: &[(std::path::PathBuf, String)]) -> Result<(), CoreError> {
    use std::os::unix::fs::DirBuilderExt;
    for (path, value) in files {
        let fail = |e: std::io::Error| {
            CoreError::Host(format!("cannot write secret file {}: {e}", path.display()))
        };
        let Some(dir) = path.parent() else { continue };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(fail)?;
        crate::atomic_file::create(path, value.as_bytes(), 0o400).map_err(fail)?;
    }
    Ok(())
}

/// Is this host port free to bind? (The engine's proxy binds published ports, so a port
/// published by another container shows as taken too.)
fn port_free(ip: Option<&str>, port: u16, proto: Protocol) -> bool {
    let ip = ip.unwrap_or("0.0.0.0");
    match proto {
        Protocol::Tcp => std::net::TcpListener::bind((ip, port)).is_ok(),
        Protocol::Udp => std::net::UdpSocket::bind((ip, port)).is_ok(),
    }
}

/// A `file:` secret or config must be a file here (a missing bind source would become an
/// empty directory in the container). Checked before the values are placed: every file
/// source then is one the template names.
fn check_file_sources(app: &AppSpec) -> Result<(), CoreError> {
    for (name, svc) in &app.services {
        for f in svc.secrets.iter().chain(&svc.configs) {
            if let crate::model::FileSource::File(p) = &f.source
                && !std::path::Path::new(p).is_file()
            {
                return Err(CoreError::BadRequest(format!(
                    "service {name:?}: {:?} comes from the file {p}, which is not a file on this host: create it, or fix `file:` (relative paths are resolved against the project directory)",
                    f.name
                )));
            }
        }
    }
    Ok(())
}

/// `--message`, trimmed: at most 50 characters on one line.
fn deploy_message(m: &str) -> Result<String, CoreError> {
    let message = m.trim().to_string();
    if message.chars().count() > 50 || message.chars().any(char::is_control) {
        return Err(CoreError::BadRequest(format!(
            "--message {message:?} is too long or has control characters: at most 50 characters on one line"
        )));
    }
    Ok(message)
}

/// `--traffic`: `all` (the default) or `none` (true).
/// What a deploy changes, service by service, against the app as stored.
#[derive(Debug, Default, PartialEq)]
struct ServiceDiff {
    changed: Vec<String>,
    unchanged: Vec<String>,
    removed: Vec<String>,
}

impl ServiceDiff {
    fn of(app: &AppSpec, previous: Option<&StoredApp>) -> ServiceDiff {
        let generation = previous.map(|p| p.redeploy_gen).unwrap_or(0);
        let mut d = ServiceDiff::default();
        for (name, svc) in &app.services {
            let same = previous
                .and_then(|p| p.spec.services.get(name))
                .is_some_and(|old| {
                    StoredApp::hash_of(old, generation) == StoredApp::hash_of(svc, generation)
                });
            if same {
                d.unchanged.push(name.clone())
            } else {
                d.changed.push(name.clone())
            }
        }
        if let Some(p) = previous {
            d.removed = p
                .spec
                .services
                .keys()
                .filter(|k| !app.services.contains_key(*k))
                .cloned()
                .collect();
        }
        d
    }

    /// The deploy's event: what changed, the new versions, the message.
    fn summary(&self, app: &AppSpec, update: bool, versions: &[String], message: &str) -> String {
        let mut msg = format!("deployed {} ({} services", app.name, app.services.len());
        if update {
            msg.push_str(&format!(
                "; changed: {}",
                if self.changed.is_empty() {
                    "none".into()
                } else {
                    self.changed.join(", ")
                }
            ));
            if !self.removed.is_empty() {
                msg.push_str(&format!("; removed: {}", self.removed.join(", ")));
            }
        }
        msg.push(')');
        if !versions.is_empty() {
            msg.push_str(&format!(": new versions {}", versions.join(", ")));
        }
        if !message.is_empty() {
            msg.push_str(&format!(" \"{message}\""));
        }
        msg
    }
}

impl Ops {
    /// Checks a template as [`Ops::deploy`] parses it, storing nothing (the console's
    /// validation as the user types).
    pub fn check_template(&self, given: &DeployRequest) -> crate::wire::TemplateCheck {
        let name = if given.name.is_empty() {
            "app"
        } else {
            &given.name
        };
        let (req, config) = match self.with_config_set(given).and_then(|(r, _)| {
            let rows = match given.config_set.is_empty() {
                true => Vec::new(),
                false => self.config_diff(&given.config_set, given)?,
            };
            Ok((r, rows))
        }) {
            Ok(x) => x,
            Err(e) => {
                return crate::wire::TemplateCheck {
                    ok: false,
                    error: Some(e.to_string()),
                    ..Default::default()
                };
            }
        };
        match spec::parse(&req.template, name, &req.inputs()) {
            Ok(app) => crate::wire::TemplateCheck {
                ok: true,
                services: app.services.keys().cloned().collect(),
                warnings: app.warnings.clone(),
                config,
                ..Default::default()
            },
            Err(e) => {
                let at = e.position(&req.template);
                crate::wire::TemplateCheck {
                    ok: false,
                    error: Some(e.to_string()),
                    line: at.map(|a| a.0),
                    column: at.map(|a| a.1),
                    ..Default::default()
                }
            }
        }
    }

    pub async fn deploy(&self, given: DeployRequest) -> Result<DeployResponse, CoreError> {
        let _serial = self.core.deploys.lock().await;
        // Everything is checked before anything is made or stored; the bound config set's
        // items fill the variables between the request's own (`--env` over them).
        let (req, set_rev) = self.with_config_set(&given)?;
        let mut app = spec::parse(&req.template, &req.name, &req.inputs())?;
        check_file_sources(&app)?;
        let label_hosts = self.check_label_certs(&mut app)?;
        let file_values = place_file_values(&mut app, &self.core.files_dir);
        let message = deploy_message(&req.message)?;
        let traffic_none = req.traffic == crate::model::NewTraffic::None;
        let previous = self.core.store.get_app(&app.name)?;
        self.warn_affinity(&mut app)?;
        // Placed over the freshest view (a member that joined a moment ago counts).
        self.refresh_fleet().await?;
        if let Some(f) = self.core.fleet() {
            let scale = previous
                .as_ref()
                .map(|p| p.scale.clone())
                .unwrap_or_default();
            let w = super::fleet::check(&app, &scale, &f.nodes)
                .map_err(|e| CoreError::BadRequest(format!("cannot place {}: {e}", app.name)))?;
            app.warnings.extend(w);
        }
        self.warn_https_without_certificate(&mut app, &label_hosts);
        self.warn_unresolved_externals(&mut app).await;
        if let Some(p) = &previous
            && let Some(r) = &p.service_release
        {
            return Err(CoreError::Conflict(format!(
                "{} has a blue/green release between services awaiting confirmation ({} -> {}): confirm it (`berth release confirm {n}`) or roll it back (`berth release abort {n}`) before the next deploy",
                p.spec.name,
                r.old.join(","),
                r.new.join(","),
                n = p.spec.name
            )));
        }
        let mut diff = ServiceDiff::of(&app, previous.as_ref());
        // `--blue-green` with a template that drops services (the seed renames `nginx-v1`
        // to `nginx-v2`): a release between services. The dropped ones stay until confirmed,
        // the added ones start at 0% of the routes they share with them.
        let between = match &previous {
            Some(p) if req.blue_green && !diff.removed.is_empty() => Some(ServiceRelease {
                old: std::mem::take(&mut diff.removed),
                new: diff
                    .changed
                    .iter()
                    .filter(|s| !p.spec.services.contains_key(*s))
                    .cloned()
                    .collect(),
                since_ms: crate::clock::now_ms(),
            }),
            _ => None,
        };
        let releases = self.choose_releases(
            &app,
            &diff.changed,
            |s| {
                req.blue_green
                    && between
                        .as_ref()
                        .is_none_or(|b| !b.new.iter().any(|n| n == s))
            },
            traffic_none,
        )?;
        self.ensure_images(app.services.values().map(|s| &**s), req.pull)
            .await?;
        self.check_host_ports(&app, &diff.changed).await?;

        // Volumes: made, and mounted for the services that use them (a mount that fails
        // fails the deploy here, before anything is stored). Their credentials are sealed in
        // the volume store; the app's spec and template keep none.
        let stopped = previous.as_ref().is_some_and(|p| p.stopped);
        self.core.prepare_volumes(&app, stopped).await?;
        write_file_values(&file_values)?;
        let template = redact_tls_keys(&super::volumes::redact_template(&req.template, &app), &app);
        super::volumes::redact_spec(&mut app);
        let (route_weights, start) = match (&previous, between) {
            (Some(p), Some(release)) => {
                let mut merged = app.clone();
                for s in &release.old {
                    if let Some(svc) = p.spec.services.get(s) {
                        merged.services.insert(s.clone(), svc.clone());
                    }
                }
                let weights =
                    crate::plan::routes::release_start(&merged, &release.new, &p.route_weights);
                app = merged;
                let start = crate::store::ReleaseStart {
                    release,
                    previous_spec: p.spec.clone(),
                    previous_template: p.template.clone(),
                };
                (weights, Some(start))
            }
            (Some(p), None) => (crate::plan::routes::kept(&p.route_weights, &app), None),
            (None, _) => Default::default(),
        };
        let created = self
            .core
            .store
            .put_app_with(
                &app,
                &template,
                &releases,
                &message,
                &route_weights,
                start.as_ref(),
            )
            .map_err(|e| match e {
                crate::store::StoreError::Refused(r) => CoreError::from(r),
                e => CoreError::from(e),
            })?;
        // What this deploy drew on, for a redeploy after its config set changes (the app's
        // name as parsed: the request may have left it to the template).
        let mut inputs = given;
        inputs.name = app.name.clone();
        if let Err(e) = self.record_inputs(&inputs, set_rev) {
            app.warnings.push(format!(
                "the deploy's inputs could not be stored, so `berth redeploy` cannot pick up config set changes for it: {e}"
            ));
        }
        let versions: Vec<String> = created
            .iter()
            .map(|(s, n, _)| crate::model::version_name(s, *n))
            .collect();
        let mut summary = diff.summary(&app, previous.is_some(), &versions, &message);
        let release = start.as_ref().map(|s| {
            let shared: Vec<String> = crate::plan::routes::shared(&app)
                .into_iter()
                .filter(|(_, svcs)| svcs.iter().any(|x| s.release.new.contains(x)))
                .map(|(r, _)| r)
                .collect();
            format!(
                "blue/green between services: {new} start beside {old}{routes}; `berth traffic {a} --route ROUTE {n}=30 {o}=70` shifts traffic, `berth release confirm {a}` keeps {new} (removing {old}), `berth release abort {a}` removes {new}",
                new = s.release.new.join(", "),
                old = s.release.old.join(", "),
                routes = if shared.is_empty() {
                    String::new()
                } else {
                    format!(" at 0% of {}", shared.join(", "))
                },
                a = app.name,
                n = s.release.new.first().map(String::as_str).unwrap_or("NEW"),
                o = s.release.old.first().map(String::as_str).unwrap_or("OLD"),
            )
        });
        if let Some(r) = &release {
            summary.push_str(&format!("; {r}"));
        }
        self.core
            .event(crate::model::EventKind::Deploy, &app.name, "", &summary);
        for (service, _, decisions) in &created {
            self.core
                .record_decisions(&app.name, service, decisions, None);
        }
        self.core.wake(super::Wake::Command);
        let job_run = self.job_deployed(&app.name, !diff.changed.is_empty())?;
        Ok(DeployResponse {
            release,
            job_run,
            app: app.name,
            changed: diff.changed,
            unchanged: diff.unchanged,
            removed: diff.removed,
            warnings: app.warnings,
            versions,
        })
    }

    /// `berth run NAME IMAGE`: deploys the one-service template the request stands for
    /// (`spec::run`), as an ordinary deploy; the image is on the host (pulled when absent, or
    /// with `pull`) before the template is written, since its exposed ports decide the
    /// default port. Refused over an app that was deployed from a template.
    pub async fn run_image(
        &self,
        req: crate::wire::RunRequest,
    ) -> Result<DeployResponse, CoreError> {
        if let Some(existing) = self.core.store.get_app(&req.name)?
            && !existing.template.starts_with(spec::run::HEADER)
        {
            return Err(CoreError::Conflict(format!(
                "app {} exists and was deployed from a template: change it with `berth deploy`, or choose another name",
                req.name
            )));
        }
        // Checked before anything is pulled (the same checks run on the template).
        spec::run::check(&req).map_err(CoreError::BadRequest)?;
        self.ensure_image(&req.image, None, PullPolicy::Missing, req.pull)
            .await?;
        let exposed = self.core.runtime.image_exposed(&req.image).await?;
        let template = spec::run::template(&req, &exposed).map_err(CoreError::BadRequest)?;
        self.deploy(DeployRequest {
            name: req.name,
            template,
            message: "deployed from an image (berth run)".into(),
            ..Default::default()
        })
        .await
    }

    /// An `external:` service whose host does not resolve from here: a warning and an
    /// event, not a failure (the address may come later; connections fail until it does).
    async fn warn_unresolved_externals(&self, app: &mut AppSpec) {
        let mut warnings = Vec::new();
        for (name, ext) in &app.externals {
            let port = ext.ports.first().copied().unwrap_or(1);
            let found = tokio::time::timeout(
                std::time::Duration::from_secs(3),
                tokio::net::lookup_host((ext.host.as_str(), port)),
            )
            .await;
            let why = match found {
                Ok(Ok(mut addrs)) => match addrs.next() {
                    Some(_) => continue,
                    None => "no address".to_string(),
                },
                Ok(Err(e)) => e.to_string(),
                Err(_) => "no answer within 3 s".to_string(),
            };
            let w = format!(
                "external service {name}: host {} does not resolve from this host ({why}); connections to {name} fail until it does",
                ext.host
            );
            self.core
                .event(crate::model::EventKind::Deploy, &app.name, name, &w);
            warnings.push(w);
        }
        app.warnings.extend(warnings);
    }

    /// Affinity rules are checked against the other apps on this host (warnings only).
    fn warn_affinity(&self, app: &mut AppSpec) -> Result<(), CoreError> {
        let has_affinity = app
            .services
            .values()
            .any(|s| s.placement.iter().any(|p| spec::Affinity::of(p).is_some()));
        if has_affinity {
            let others: Vec<std::sync::Arc<crate::store::StoredApp>> = self
                .core
                .store
                .apps_shared()?
                .iter()
                .filter(|a| a.spec.name != app.name)
                .cloned()
                .collect();
            let w = affinity_warnings(app, &others);
            app.warnings.extend(w);
        }
        Ok(())
    }

    /// An https route is terminated by the router when a certificate covers its host;
    /// without one it is served over plain HTTP only, which the deploy warns about.
    /// Each service's `proxy.SSL_CERT` must be one the router can serve (the key belongs to
    /// the certificate, which names DNS names); a route host it does not name, a second
    /// default certificate and a router without its HTTPS listener are warnings. Returns the
    /// hosts the template's certificates cover.
    fn check_label_certs(&self, app: &mut AppSpec) -> Result<Vec<String>, CoreError> {
        let mut covered = Vec::new();
        let mut warnings = Vec::new();
        for (name, svc) in &app.services {
            let Some(c) = &svc.ext.ssl_cert else {
                continue;
            };
            let label = if c.default {
                "DEFAULT_SSL_CERT"
            } else {
                "SSL_CERT"
            };
            let key = app
                .file_values
                .get(&spec::tls_key_value(name))
                .map(String::as_str)
                .unwrap_or_default();
            let lk = crate::router::tls::label_key(&c.chain, key).map_err(|e| {
                CoreError::BadRequest(format!("service {name:?}, label proxy.{label}: {e}"))
            })?;
            let (yes, no) = super::certs::covered_hosts(
                &app.name,
                name,
                svc,
                &lk.names,
                &self.core.router_domain,
            );
            if !no.is_empty() {
                warnings.push(format!(
                    "service {name:?}: proxy.{label} names {}, not {}: over HTTPS those are served {}",
                    lk.names.join(", "),
                    no.join(", "),
                    if c.default {
                        "with it anyway, and clients warn that the name does not match"
                    } else {
                        "with berth.toml's certificate for them, or the default one"
                    }
                ));
            }
            if !self.core.router.https_listening() {
                warnings.push(format!(
                    "service {name:?}: proxy.{label} is served by the router's HTTPS listener, which is off: set [router] https (or --router-https) in berth.toml"
                ));
            }
            if c.default
                && let Some(other) = self
                    .core
                    .store
                    .apps_shared()?
                    .iter()
                    .filter(|a| a.spec.name != app.name)
                    .find(|a| {
                        a.spec
                            .services
                            .values()
                            .any(|s| s.ext.ssl_cert.as_ref().is_some_and(|c| c.default))
                    })
            {
                warnings.push(format!(
                    "service {name:?}: app {:?} gives a DEFAULT_SSL_CERT too: the router serves the one of the app first by name ({:?}) to names no certificate covers",
                    other.spec.name,
                    std::cmp::min(&other.spec.name, &app.name)
                ));
            }
            covered.extend(yes);
        }
        app.warnings.extend(warnings);
        Ok(covered)
    }

    fn warn_https_without_certificate(&self, app: &mut AppSpec, label_hosts: &[String]) {
        let mut warnings = Vec::new();
        for (name, svc) in &app.services {
            for (port, routes) in &svc.ext.routing {
                for r in routes
                    .iter()
                    .filter(|r| r.scheme == crate::model::Scheme::Https)
                {
                    let Some(host) = crate::router::table::route_host(r, &self.core.router_domain)
                    else {
                        continue;
                    };
                    if !label_hosts.contains(&host.to_ascii_lowercase())
                        && !self
                            .core
                            .tls_domains
                            .iter()
                            .any(|d| crate::router::tls::covers(d, &host))
                    {
                        warnings.push(format!(
                            "service {name:?}: routing.port_{port} routes https://{host}, but the router has no certificate for it, so it is served over plain HTTP only: add [[router.tls]] domain = \"{host}\" with cert and key to berth.toml and set [router] https (or --router-https)"
                        ));
                    }
                }
            }
        }
        app.warnings.extend(warnings);
    }

    /// Each changed service's release step. A service has at most MAX_VERSIONS versions (a
    /// changed one needs room for one more), and a release under way refuses the next.
    fn choose_releases(
        &self,
        app: &AppSpec,
        changed: &[String],
        blue_green: impl Fn(&str) -> bool,
        traffic_none: bool,
    ) -> Result<Vec<(String, Release)>, CoreError> {
        let mut releases = Vec::new();
        for name in changed {
            let versions = self.core.store.versions(&app.name, name)?;
            if versions.len() >= crate::model::MAX_VERSIONS {
                let oldest = versions.iter().find(|v| v.weight == 0).map(|v| v.name());
                return Err(CoreError::Conflict(format!(
                    "service {name:?} already has {} versions, the most berth keeps: delete one first with `berth version rm {}/{name} NNN`{}",
                    versions.len(),
                    app.name,
                    oldest
                        .map(|o| format!(" (the oldest without traffic is {o})"))
                        .unwrap_or_default()
                )));
            }
            // Checked again when the version is written.
            crate::plan::release::admit(&versions)?;
            let release = crate::plan::release::choose(
                name,
                &app.services[name],
                &versions,
                blue_green(name),
                traffic_none,
            )?;
            releases.push((name.clone(), release));
        }
        Ok(releases)
    }

    /// Host ports of changed services must be free, unless this app already holds them.
    async fn check_host_ports(&self, app: &AppSpec, changed: &[String]) -> Result<(), CoreError> {
        let ours: Vec<Instance> = self
            .core
            .runtime
            .list(&self.core.node_id)
            .await?
            .into_iter()
            .filter(|i| i.app == app.name)
            .collect();
        for name in changed {
            let svc = &app.services[name];
            if svc.network_mode != NetworkMode::Bridge {
                continue;
            }
            for p in &svc.ports {
                let Some(hp) = p.host_port else { continue };
                let held_by_us = ours.iter().any(|i| {
                    i.ports
                        .iter()
                        .any(|q| q.host_port == hp && q.protocol == p.protocol)
                });
                if !held_by_us && !port_free(p.host_ip.as_deref(), hp, p.protocol) {
                    return Err(CoreError::Conflict(format!(
                        "service {name:?}: host port {hp}/{} is already in use on this host: choose another port in `ports:` or stop what holds it",
                        p.protocol.as_str()
                    )));
                }
            }
        }
        Ok(())
    }

    /// Every service's image on the host, each pulled as its `pull_policy` says (`--pull`
    /// pulls them all), once per image and platform.
    async fn ensure_images(
        &self,
        services: impl Iterator<Item = &crate::model::ServiceSpec>,
        force_pull: bool,
    ) -> Result<(), CoreError> {
        let mut wanted: BTreeMap<(&str, Option<&str>), PullPolicy> = BTreeMap::new();
        for s in services {
            let p = wanted
                .entry((s.image.as_str(), s.platform.as_deref()))
                .or_insert(s.pull_policy);
            // The most eager policy of the services sharing an image wins.
            *p = match (*p, s.pull_policy) {
                (PullPolicy::Always, _) | (_, PullPolicy::Always) => PullPolicy::Always,
                (PullPolicy::Missing, _) | (_, PullPolicy::Missing) => PullPolicy::Missing,
                _ => PullPolicy::Never,
            };
        }
        for ((image, platform), policy) in wanted {
            self.ensure_image(image, platform, policy, force_pull)
                .await?;
        }
        Ok(())
    }

    async fn ensure_image(
        &self,
        image: &str,
        platform: Option<&str>,
        policy: PullPolicy,
        force_pull: bool,
    ) -> Result<(), CoreError> {
        let present = self.core.runtime.image_present(image).await?;
        let pull = force_pull || policy == PullPolicy::Always;
        if present && !pull {
            return Ok(());
        }
        if !present && !pull && policy == PullPolicy::Never {
            return Err(CoreError::BadRequest(format!(
                "image {image} is not on this host and its service says `pull_policy: never`: load it with `berth image load` (or deploy with --pull)"
            )));
        }
        let auth = self.core.registry_auth(image)?;
        match self.core.runtime.pull(image, platform, auth.as_ref()).await {
            Ok(()) => {
                // What the members running this app's slots pull to match.
                self.core.note_image_id(image).await;
                Ok(())
            }
            // Asked to refresh but offline: the local copy still serves.
            Err(e) if present => {
                tracing::warn!(image, error = %e, "pull failed; using the local image");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Every app of the cluster: this host's, then the other members' as last pulled (a
    /// member that is not alive marks its rows stale).
    pub async fn apps(&self) -> Result<Vec<AppStatus>, CoreError> {
        let mut list = self.local_apps().await?;
        let holders = self.holders(&self.core.store.apps_shared()?);
        for r in self.cluster.remote(crate::cluster::state::Kind::App) {
            let superseded = r.body["name"]
                .as_str()
                .and_then(|n| holders.get(n))
                .is_some_and(|h| h != &r.node_id);
            if superseded {
                continue;
            }
            if let Ok(mut a) = serde_json::from_value::<AppStatus>(r.body.clone()) {
                a.node = r.node_name.clone();
                a.stale = stale(&r);
                list.push(a);
            }
        }
        Ok(list)
    }

    async fn local_apps(&self) -> Result<Vec<AppStatus>, CoreError> {
        let instances = self.core.instances().await?;
        self.apps_over(&instances)
    }

    /// This host's apps as `instances` (this node's, listed once by the caller) show them.
    fn apps_over(&self, instances: &[Instance]) -> Result<Vec<AppStatus>, CoreError> {
        let apps = self.core.store.apps_shared()?;
        let elsewhere = self.elsewhere()?;
        let mut bound = self.bound_sets();
        Ok(apps
            .iter()
            .map(|a| {
                let mut s = self.status_of(a, instances, &elsewhere);
                s.config = bound.remove(&a.spec.name);
                s
            })
            .collect())
    }

    pub async fn app_status(&self, name: &str) -> Result<AppStatus, CoreError> {
        let app = self
            .core
            .store
            .get_app(name)?
            .ok_or_else(|| unknown_app(name))?;
        let instances = self.core.instances().await?;
        let mut s = self.status_of(&app, &instances, &self.elsewhere()?);
        s.config = self.bound_sets().remove(name);
        Ok(s)
    }

    /// In a cluster: where this host's apps' instances are placed, and the other members'
    /// instances that run ready and up to date (their hosts say so in their records).
    fn elsewhere(&self) -> Result<Elsewhere, CoreError> {
        let mut e = Elsewhere::default();
        if !self.cluster.active() {
            return Ok(e);
        }
        for a in self.core.store.assignments()? {
            *e.placed.entry((a.app, a.service, a.version)).or_default() += 1;
        }
        e.ready = self.ready_elsewhere();
        Ok(e)
    }

    /// The other members' instances that run ready and up to date (members alive only).
    fn ready_elsewhere(&self) -> super::fleet::Ready {
        super::fleet::count_ready(
            self.cluster
                .remote(crate::cluster::state::Kind::Instance)
                .into_iter()
                .filter(|r| r.state == crate::cluster::gossip::MemberState::Alive)
                .filter_map(|r| serde_json::from_value::<InstanceView>(r.body).ok()),
        )
    }

    fn status_of(
        &self,
        a: &crate::store::StoredApp,
        instances: &[Instance],
        elsewhere: &Elsewhere,
    ) -> AppStatus {
        let mut services = Vec::new();
        let (mut desired, mut running) = (0, 0);
        let mut settled = true;
        for (name, s) in &a.spec.services {
            // Placed over the cluster: the count placement spread (a global service: one per
            // eligible member).
            let placed = |l: &crate::store::LiveVersion| {
                elsewhere
                    .placed
                    .get(&(a.spec.name.clone(), name.clone(), l.version.number))
                    .copied()
            };
            let replicas = desired_replicas(a, name);
            let live = a.live(name);
            // A rolling version shares its slots with the version it replaces.
            let d = if a.stopped {
                0
            } else {
                live.iter()
                    .filter(|l| l.version.release != Release::Rolling)
                    .map(|l| placed(l).unwrap_or_else(|| l.version.instances(replicas)))
                    .sum()
            };
            let here = instances
                .iter()
                .filter(|i| {
                    i.app == a.spec.name
                        && &i.service == name
                        && (crate::plan::is_ready(i) || crate::plan::is_done(i, s.restart))
                        && live.iter().any(|l| {
                            l.runs(i)
                                && (placed(l).is_some() || i.slot <= l.version.instances(replicas))
                        })
                })
                .count() as u32;
            let there: u32 = live
                .iter()
                .filter(|l| l.version.release != Release::Rolling)
                .filter_map(|l| {
                    let key = (a.spec.name.clone(), name.clone(), l.version.name());
                    elsewhere.ready.get(&key).copied()
                })
                .sum();
            let r = here + there;
            // Settled: no release step under way and no instance of a version that lost its
            // traffic still draining.
            settled &= live.iter().all(|l| {
                l.version.state != VersionState::Creating
                    && !matches!(l.version.release, Release::Promote | Release::Rolling)
            }) && !instances.iter().any(|i| {
                i.app == a.spec.name
                    && &i.service == name
                    && !live
                        .iter()
                        .any(|l| i.version_number() == Some(l.version.number))
            });
            desired += d;
            running += r.min(d);
            services.push(ServiceStatus {
                name: name.clone(),
                image: s.image.clone(),
                desired: d,
                running: r.min(d),
                auto: s.ext.auto_scaling.as_ref().map(|x| x.bounds()),
            });
        }
        use crate::model::AppState;
        let state = if a.stopped {
            AppState::Stopped
        } else if running == desired && settled {
            AppState::Running
        } else if !self.core.failures(&a.spec.name, None).is_empty() {
            AppState::Failing
        } else {
            AppState::Deploying
        };
        AppStatus {
            name: a.spec.name.clone(),
            services,
            desired,
            running,
            state,
            updated_ms: a.updated_ms,
            node: if self.cluster.active() {
                self.core.node_name.clone()
            } else {
                String::new()
            },
            stale: None,
            job: None,
            config: None,
            release: a
                .service_release
                .as_ref()
                .map(|r| super::routes::describe(&a.spec.name, r)),
        }
        .with_job(&self.core, a, instances)
    }

    /// The cluster's containers: this host's, then the other members' as last pulled.
    pub async fn ps(&self, app: Option<&str>) -> Result<Vec<InstanceView>, CoreError> {
        let remote: Vec<InstanceView> = self
            .cluster
            .remote(crate::cluster::state::Kind::Instance)
            .into_iter()
            .filter_map(|r| {
                let mut i = serde_json::from_value::<InstanceView>(r.body.clone()).ok()?;
                i.node = r.node_name.clone();
                i.stale = stale(&r);
                Some(i)
            })
            .filter(|i| app.is_none_or(|a| a == i.app))
            .collect();
        let owned_elsewhere = app.is_some_and(|a| {
            self.cluster
                .remote(crate::cluster::state::Kind::App)
                .iter()
                .any(|r| r.body["name"] == a)
        });
        let mut list = match self.local_ps(app).await {
            Err(CoreError::NotFound(_)) if owned_elsewhere => Vec::new(),
            other => other?,
        };
        list.extend(remote);
        list.extend(self.external_rows(app)?);
        Ok(list)
    }

    /// A row per `external:` service of the apps listed (this host's and the other
    /// members'): where its name leads.
    fn external_rows(&self, app: Option<&str>) -> Result<Vec<InstanceView>, CoreError> {
        let mut specs: BTreeMap<String, crate::model::AppSpec> = BTreeMap::new();
        for r in self.cluster.remote(crate::cluster::state::Kind::Spec) {
            if let Ok(a) = serde_json::from_value::<crate::store::StoredApp>(r.body["app"].clone())
            {
                specs.insert(a.spec.name.clone(), a.spec);
            }
        }
        for a in self.core.store.apps_shared()?.iter() {
            specs.insert(a.spec.name.clone(), a.spec.clone());
        }
        let mut out = Vec::new();
        for spec in specs.values().filter(|s| app.is_none_or(|a| a == s.name)) {
            for (name, ext) in &spec.externals {
                let ports: Vec<String> = ext.ports.iter().map(u16::to_string).collect();
                out.push(InstanceView {
                    app: spec.name.clone(),
                    service: name.clone(),
                    name: format!("{}_{name}", spec.name),
                    state: "external".into(),
                    status: format!("-> {}:{}", ext.host, ports.join(",")),
                    exposed: ext.ports.clone(),
                    up_to_date: true,
                    ..InstanceView::default()
                });
            }
        }
        Ok(out)
    }

    async fn local_ps(&self, app: Option<&str>) -> Result<Vec<InstanceView>, CoreError> {
        let instances = self.core.instances().await?;
        self.ps_over(app, instances)
    }

    /// This host's containers from `instances` (this node's, listed once by the caller).
    fn ps_over(
        &self,
        app: Option<&str>,
        instances: Vec<Instance>,
    ) -> Result<Vec<InstanceView>, CoreError> {
        let mut apps: BTreeMap<String, std::sync::Arc<crate::store::StoredApp>> = self
            .core
            .store
            .apps_shared()?
            .iter()
            .map(|a| (a.spec.name.clone(), a.clone()))
            .collect();
        // Slots of other members' apps placed here are up to date by their owners' specs.
        if let Some(f) = self.core.fleet() {
            for r in &f.remote {
                apps.entry(r.app.spec.name.clone())
                    .or_insert_with(|| r.app.clone());
            }
        }
        if let Some(name) = app
            && !apps.contains_key(name)
        {
            return Err(unknown_app(name));
        }
        let mut list: Vec<InstanceView> = instances
            .into_iter()
            .filter(|i| app.is_none_or(|a| a == i.app))
            .map(|i| {
                let stored = apps.get(&i.app);
                let up_to_date =
                    stored.is_some_and(|a| a.live(&i.service).iter().any(|l| l.runs(&i)));
                let autoscale = stored.and_then(|a| {
                    let x = a.spec.services.get(&i.service)?.ext.auto_scaling.as_ref()?;
                    Some(format!("{} ({})", a.replicas(&i.service), x.bounds()))
                });
                let endpoints = stored
                    .and_then(|a| a.spec.services.get(&i.service))
                    .map(|svc| {
                        crate::router::table::service_endpoints(
                            &i.app,
                            &i.service,
                            svc,
                            &self.core.router_domain,
                            self.core.router.tcp_ip(),
                        )
                    })
                    .unwrap_or_default();
                InstanceView {
                    container_id: i.id.chars().take(12).collect(),
                    state: i.state.as_str().into(),
                    app: i.app,
                    service: i.service,
                    slot: i.slot,
                    name: i.name,
                    version: i.version,
                    image: i.image,
                    exit_code: i.exit_code,
                    ports: i.ports,
                    exposed: i.exposed,
                    autoscale,
                    node: self.core.node_name.clone(),
                    stale: None,
                    endpoints,
                    created: i.created,
                    status: i.status,
                    health: i.health.as_str().into(),
                    health_error: self
                        .core
                        .prober
                        .last_error(&i.id)
                        .filter(|_| !i.health.ready()),
                    up_to_date,
                }
            })
            .collect();
        list.sort_by(|a, b| (&a.app, &a.service, a.slot).cmp(&(&b.app, &b.service, b.slot)));
        Ok(list)
    }

    pub fn inspect(&self, name: &str) -> Result<InspectResponse, CoreError> {
        let a = self
            .core
            .store
            .get_app(name)?
            .ok_or_else(|| unknown_app(name))?;
        // The bound config set's secret items are masked wherever they landed.
        let secrets = self.secret_values(name);
        let mut spec = a.spec;
        if !secrets.is_empty() {
            for svc in spec.services.values_mut() {
                for v in std::sync::Arc::make_mut(svc).environment.values_mut() {
                    *v = super::configsets::mask_secrets(v, &secrets);
                }
            }
        }
        Ok(InspectResponse {
            spec,
            template: a.template,
            stopped_services: a.stopped_services,
            stopped: a.stopped,
            scale: a.scale,
            redeploy_gen: a.redeploy_gen,
            created_ms: a.created_ms,
            updated_ms: a.updated_ms,
        })
    }

    pub async fn scale(&self, name: &str, req: ScaleRequest) -> Result<AppStatus, CoreError> {
        let app = self
            .core
            .store
            .get_app(name)?
            .ok_or_else(|| unknown_app(name))?;
        if req.services.is_empty() {
            return Err(CoreError::BadRequest(
                "nothing to scale: give SERVICE=N".into(),
            ));
        }
        self.refresh_fleet().await?;
        let mut changes = Vec::new();
        for (svc, n) in &req.services {
            let s = app.spec.services.get(svc).ok_or_else(|| {
                CoreError::NotFound(format!(
                    "app {name:?} has no service {svc:?}; its services are: {}",
                    app.spec
                        .services
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
            if *n > spec::MAX_REPLICAS {
                return Err(CoreError::BadRequest(format!(
                    "{svc}={n}: at most {} replicas",
                    spec::MAX_REPLICAS
                )));
            }
            if s.global {
                return Err(CoreError::BadRequest(format!(
                    "service {svc:?} is global (one per node): it cannot be scaled"
                )));
            }
            if let Some(a) = &s.ext.auto_scaling
                && !(a.min_instances..=a.max_instances).contains(n)
            {
                return Err(CoreError::BadRequest(format!(
                    "{svc}={n}: service {svc:?} autoscales between {} and {} instances; scale within them, or change its auto_scaling labels and deploy",
                    a.min_instances, a.max_instances
                )));
            }
            if *n > 1 && s.ports.iter().any(|p| p.host_port.is_some()) {
                return Err(CoreError::BadRequest(format!(
                    "service {svc:?} publishes a fixed host port, so only one replica can bind it: publish only the container port to scale"
                )));
            }
            changes.push((svc.clone(), *n));
        }
        self.core.store.set_scale(name, &changes)?;
        let desc: Vec<String> = changes.iter().map(|(s, n)| format!("{s}={n}")).collect();
        self.core.event(
            crate::model::EventKind::Scale,
            name,
            "",
            &format!("scaled {name}: {}", desc.join(" ")),
        );
        // A job's tasks' container counts.
        self.core.jobs.touch();
        self.core
            .reconcile_until_settled(Duration::from_secs(60))
            .await?;
        self.app_status(name).await
    }

    /// The event of a stop or start of `what` (an app, a service or a slot).
    fn stop_event(&self, stopped: bool, app: &str, service: &str, what: &str) {
        let (kind, verb) = if stopped {
            (crate::model::EventKind::Stop, "stopping")
        } else {
            (crate::model::EventKind::Start, "starting")
        };
        self.core
            .event(kind, app, service, &format!("{verb} {what}"));
    }

    pub async fn set_stopped(&self, name: &str, stopped: bool) -> Result<AppStatus, CoreError> {
        if !self.core.store.set_stopped(name, stopped)? {
            return Err(unknown_app(name));
        }
        self.stop_event(stopped, name, "", name);
        // A job stopped has its running run cancelled; started, its queue runs again.
        self.core.jobs.touch();
        self.core
            .reconcile_until_settled(Duration::from_secs(120))
            .await?;
        self.app_status(name).await
    }

    /// The app, service and slot a per-service action names, checked: the service is in the
    /// app, the slot among its slots, and the app is not a job (its tasks run per run).
    fn service_target(
        &self,
        name: &str,
        service: &str,
        slot: Option<u32>,
        verb: &str,
    ) -> Result<crate::store::StoredApp, CoreError> {
        let app = self
            .core
            .store
            .get_app(name)?
            .ok_or_else(|| unknown_app(name))?;
        if super::jobs::is_job(&app) {
            return Err(CoreError::BadRequest(format!(
                "{name} is a job: its tasks run per run, so `berth {verb}` acts on the whole job only (`berth job cancel {name}` stops a run)"
            )));
        }
        if !app.spec.services.contains_key(service) {
            let names: Vec<&str> = app.spec.services.keys().map(String::as_str).collect();
            return Err(CoreError::NotFound(format!(
                "app {name:?} has no service {service:?}: its services are {}",
                names.join(", ")
            )));
        }
        if let Some(n) = slot {
            let slots = app
                .live(service)
                .iter()
                .map(|l| l.version.instances(app.replicas(service)))
                .max()
                .unwrap_or(0);
            if n == 0 || n > slots {
                return Err(CoreError::NotFound(format!(
                    "{name}/{service} has {slots} slot(s) (1..{slots}): there is no slot {n}; `berth ps {name}` lists them"
                )));
            }
        }
        Ok(app)
    }

    /// `berth stop|start APP/SERVICE[/SLOT]`: the service (or one slot of it) stops, its
    /// containers kept, and starts again; the rest of the app runs on. A deploy or redeploy
    /// starts everything again.
    pub async fn set_service_stopped(
        &self,
        name: &str,
        service: &str,
        slot: Option<u32>,
        stopped: bool,
    ) -> Result<AppStatus, CoreError> {
        let verb = if stopped { "stop" } else { "start" };
        let app = self.service_target(name, service, slot, verb)?;
        let whole = app
            .stopped_services
            .get(service)
            .is_some_and(|s| s.is_empty());
        if !stopped && slot.is_some() && whole {
            return Err(CoreError::Conflict(format!(
                "{name}/{service} is stopped as a whole: `berth start {name}/{service}` starts every slot"
            )));
        }
        if app.stopped && !stopped {
            return Err(CoreError::Conflict(format!(
                "app {name} is stopped: `berth start {name}` starts it"
            )));
        }
        let target = match slot {
            Some(n) => format!("{name}/{service}/{n}"),
            None => format!("{name}/{service}"),
        };
        if !self
            .core
            .store
            .set_service_stopped(name, service, slot.unwrap_or(0), stopped)?
        {
            return Err(unknown_app(name));
        }
        self.stop_event(stopped, name, service, &target);
        self.core
            .reconcile_until_settled(Duration::from_secs(120))
            .await?;
        self.app_status(name).await
    }

    /// `berth restart APP[/SERVICE[/SLOT]]`: each container stops (with its service's grace)
    /// and starts again, the same container; on a cluster, the members that run them do it.
    /// A service or slot stopped by `berth stop` is started again.
    pub async fn restart(
        &self,
        name: &str,
        service: Option<&str>,
        slot: Option<u32>,
    ) -> Result<crate::wire::RestartResponse, CoreError> {
        let app = match service {
            Some(s) => self.service_target(name, s, slot, "restart")?,
            None => self
                .core
                .store
                .get_app(name)?
                .ok_or_else(|| unknown_app(name))?,
        };
        if app.stopped {
            return Err(CoreError::Conflict(format!(
                "app {name} is stopped: `berth start {name}` starts it"
            )));
        }
        if super::jobs::is_job(&app) {
            return Err(CoreError::BadRequest(format!(
                "{name} is a job: `berth job run {name}` runs it again"
            )));
        }
        // What `berth stop` stopped comes back (slot 0: the whole service).
        let stopped: Vec<(String, u32)> = match (service, slot) {
            (Some(s), Some(n)) => {
                if app.stopped_services.get(s).is_some_and(|x| x.is_empty()) {
                    return Err(CoreError::Conflict(format!(
                        "{name}/{s} is stopped as a whole: `berth start {name}/{s}` starts every slot"
                    )));
                }
                app.stopped_services
                    .get(s)
                    .filter(|x| x.contains(&n))
                    .map(|_| vec![(s.to_string(), n)])
                    .unwrap_or_default()
            }
            (Some(s), None) if app.stopped_services.contains_key(s) => vec![(s.to_string(), 0)],
            (Some(_), None) => Vec::new(),
            (None, _) => app
                .stopped_services
                .keys()
                .map(|s| (s.clone(), 0))
                .collect(),
        };
        for (s, n) in &stopped {
            self.core.store.set_service_stopped(name, s, *n, false)?;
        }
        let targets: Vec<InstanceView> = self
            .ps(Some(name))
            .await?
            .into_iter()
            .filter(|i| service.is_none_or(|s| s == i.service))
            .filter(|i| slot.is_none_or(|n| n == i.slot))
            .filter(|i| i.state == "running")
            .collect();
        let what = match (service, slot) {
            (Some(s), Some(n)) => format!("{name}/{s}/{n}"),
            (Some(s), None) => format!("{name}/{s}"),
            _ => name.to_string(),
        };
        self.core.event(
            crate::model::EventKind::Restart,
            name,
            service.unwrap_or(""),
            &format!("restarting {what}: {} container(s)", targets.len()),
        );
        let mut restarted = Vec::new();
        let mut failed = Vec::new();
        for i in &targets {
            let r = if i.node == self.core.node_name {
                self.restart_here(name, &i.name)
                    .await
                    .map_err(|e| e.to_string())
            } else {
                self.ask_restart(&i.node, name, &i.name).await
            };
            match r {
                Ok(()) => restarted.push(i.name.clone()),
                Err(e) => failed.push(format!("{}: {e}", i.name)),
            }
        }
        if !stopped.is_empty() {
            self.core
                .reconcile_until_settled(Duration::from_secs(120))
                .await?;
        }
        Ok(crate::wire::RestartResponse {
            app: name.to_string(),
            restarted,
            failed,
        })
    }

    /// Restarts one of this host's containers of `app` by name (a member asked by the app's
    /// owner, or the owner itself).
    pub async fn restart_here(&self, app: &str, container: &str) -> Result<(), CoreError> {
        let i = self
            .core
            .instances()
            .await?
            .into_iter()
            .find(|i| i.app == app && i.name == container)
            .ok_or_else(|| {
                CoreError::NotFound(format!(
                    "no container {container} of {app} on this host: `berth ps {app}` lists them"
                ))
            })?;
        let grace = self
            .core
            .store
            .get_app(app)?
            .or_else(|| {
                self.core.fleet().and_then(|f| {
                    f.remote
                        .iter()
                        .find(|r| r.app.spec.name == app)
                        .map(|r| (*r.app).clone())
                })
            })
            .and_then(|a| {
                use crate::model::StopGrace;
                a.spec.services.get(&i.service).map(|s| s.grace_seconds())
            })
            .unwrap_or(10);
        if self
            .core
            .restart_with_grace(&i.id, &i.name, "(berth restart)", grace)
            .await
        {
            Ok(())
        } else {
            Err(CoreError::Conflict(format!(
                "{container} could not be restarted now (it is in restart backoff, or the engine refused: `berth events {app}` says which)"
            )))
        }
    }

    async fn ask_restart(&self, node: &str, app: &str, container: &str) -> Result<(), String> {
        let body = serde_json::to_vec(&crate::wire::RestartHereRequest {
            container: container.to_string(),
        })
        .map_err(|e| e.to_string())?;
        let reply = self
            .cluster
            .forward(node, "POST", &format!("/v1/apps/{app}/here/restart"), &body)
            .await
            .map_err(|e| e.to_string())?;
        if (200..300).contains(&reply.status) {
            Ok(())
        } else {
            Err(format!("{node}: {}", reply.body.trim()))
        }
    }

    pub async fn redeploy(&self, name: &str, req: RedeployRequest) -> Result<AppStatus, CoreError> {
        // Bound to a config set that changed since: its template parsed again with the new
        // values, as a normal versioned deploy (the services it changes are replaced).
        if let Some(mut again) = self.stale_inputs(name)? {
            again.pull = req.pull;
            again.message = format!("config set {} changed", again.config_set);
            if !self.deploy(again).await?.changed.is_empty() {
                return self.app_status(name).await;
            }
            // The change touched nothing the services use: recreated as any redeploy.
        }
        let _serial = self.core.deploys.lock().await;
        let app = self
            .core
            .store
            .get_app(name)?
            .ok_or_else(|| unknown_app(name))?;
        self.ensure_images(app.spec.services.values().map(|s| &**s), req.pull)
            .await?;
        self.core.store.bump_redeploy(name)?;
        self.core.event(
            crate::model::EventKind::Redeploy,
            name,
            "",
            &format!("redeploying {name}: recreating every container"),
        );
        self.core.wake(super::Wake::Command);
        self.app_status(name).await
    }

    /// `berth rm APP/SERVICE`: drops one service from a deployed app, as deploying the
    /// template without it would; the other services run on untouched. Refused while another
    /// service depends on it or links to it, and for the app's last service (`berth rm APP`).
    pub async fn remove_service(&self, name: &str, service: &str) -> Result<AppStatus, CoreError> {
        let _serial = self.core.deploys.lock().await;
        let app = self.service_target(name, service, None, "rm")?;
        if app.spec.services.len() == 1 {
            return Err(CoreError::Conflict(format!(
                "{service} is the only service of {name}: `berth rm {name}` removes the app"
            )));
        }
        let users: Vec<String> = app
            .spec
            .services
            .iter()
            .filter(|(n, _)| n.as_str() != service)
            .filter(|(_, s)| {
                s.depends_on.iter().any(|d| d == service)
                    || s.links.iter().any(|l| l.target == service)
            })
            .map(|(n, _)| n.clone())
            .collect();
        if !users.is_empty() {
            return Err(CoreError::Conflict(format!(
                "{} of {name} depend on or link to {service}: remove them first, or deploy a template without them all",
                users.join(", ")
            )));
        }
        let mut spec = app.spec.clone();
        spec.services.remove(service);
        let template = spec::strip_service(&app.template, service).unwrap_or_else(|| {
            format!(
                "# `berth rm {name}/{service}` removed service {service}; this template still names it\n{}",
                app.template
            )
        });
        let _guard = self.core.ops.lock().await;
        if !self.core.store.remove_service(&spec, &template, service)? {
            return Err(unknown_app(name));
        }
        drop(_guard);
        // A redeploy that parses the template again must not bring the service back.
        self.forget_input_service(name, service);
        self.core.event(
            crate::model::EventKind::Rm,
            name,
            service,
            &format!("removing {name}/{service}"),
        );
        // The service is gone from the desired state: a pass removes its containers.
        self.core
            .reconcile_until_settled(Duration::from_secs(60))
            .await?;
        self.app_status(name).await
    }

    /// Removes an app: its containers and network now, its named volumes when asked.
    pub async fn remove_app(&self, name: &str, volumes: bool) -> Result<(), CoreError> {
        let _serial = self.core.deploys.lock().await;
        let app = self
            .core
            .store
            .get_app(name)?
            .ok_or_else(|| unknown_app(name))?;
        let _guard = self.core.ops.lock().await;
        let jobs = self.core.jobs.hold().await;
        self.core.store.delete_app(name)?;
        drop(jobs);
        self.core.event(
            crate::model::EventKind::Rm,
            name,
            "",
            &format!("removing {name}"),
        );
        // The app is gone from the desired state: a pass removes its containers and network.
        self.core.reconcile_locked().await?;
        // Its written secrets and configs (their containers are gone).
        match std::fs::remove_dir_all(self.core.files_dir.join(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(app = name, error = %e, "cannot remove the app's secret files")
            }
            _ => {}
        }
        if volumes {
            let names = self.core.remove_app_volumes(&app.spec).await?;
            if !names.is_empty() {
                self.core.event(
                    crate::model::EventKind::Rm,
                    name,
                    "",
                    &format!("removed volumes {}", names.join(", ")),
                );
            }
        }
        Ok(())
    }

    /// The app, when it has `service`; else a message naming what exists.
    fn stored_service(&self, app: &str, service: &str) -> Result<StoredApp, CoreError> {
        let stored = self
            .core
            .store
            .get_app(app)?
            .ok_or_else(|| unknown_app(app))?;
        if !stored.spec.services.contains_key(service) {
            return Err(unknown_service(app, service, &stored));
        }
        Ok(stored)
    }

    /// A service's versions, each with the share of the traffic the router gives it now
    /// (`weight`) and the one set for it (`set_weight`; they differ during a rolling update,
    /// or while a version with traffic has no ready instance).
    /// A member's router holds a request for `app/service`: start it when it is at zero
    /// (nothing when it runs or is starting already).
    pub fn wake(&self, app: &str, service: &str) -> Result<serde_json::Value, CoreError> {
        let stored = self.stored_service(app, service)?;
        let scales_to_zero = stored
            .spec
            .services
            .get(service)
            .and_then(|s| s.ext.auto_scaling.as_ref())
            .is_some_and(|a| a.min_instances == 0);
        if !scales_to_zero {
            return Err(CoreError::BadRequest(format!(
                "{app}/{service} does not scale to zero (auto_scaling.min_instances is not 0)"
            )));
        }
        super::autoscale::start_from_zero(&self.core, app, service);
        Ok(serde_json::json!({ "instances": stored.replicas(service).max(1) }))
    }

    /// The autoscaling state of `app`'s autoscaled services (or of one).
    pub fn autoscale(
        &self,
        app: &str,
        service: Option<&str>,
    ) -> Result<Vec<crate::wire::ServiceAutoscale>, CoreError> {
        let stored = match service {
            Some(s) => self.stored_service(app, s)?,
            None => self
                .core
                .store
                .get_app(app)?
                .ok_or_else(|| unknown_app(app))?,
        };
        let list = self.core.autoscaler.view(&stored, service);
        if list.is_empty() {
            return Err(CoreError::NotFound(format!(
                "{} does not autoscale: give it auto_scaling labels (min_instances, max_instances, max_cpu...)",
                match service {
                    Some(s) => format!("{app}/{s}"),
                    None => format!("no service of {app}"),
                }
            )));
        }
        Ok(list)
    }

    pub fn versions(&self, app: &str, service: &str) -> Result<Vec<VersionView>, CoreError> {
        let stored = self.stored_service(app, service)?;
        let replicas = desired_replicas(&stored, service);
        let split = self.core.split_of(app, service);
        // In a cluster: the count placed (the split counts the instances ready on the other
        // members).
        let elsewhere = self.elsewhere()?;
        let key = |v: &crate::model::Version| (app.to_string(), service.to_string(), v.number);
        Ok(self
            .core
            .store
            .versions(app, service)?
            .into_iter()
            .map(|v| VersionView {
                set_weight: v.weight,
                name: v.name(),
                number: v.number,
                image: v.spec.image.clone(),
                created_ms: v.created_ms,
                // What a live version runs (following `berth scale`); others what they had.
                replicas: match elsewhere.placed.get(&key(&v)) {
                    Some(n) if v.live() => *n,
                    _ if v.live() => v.instances(replicas),
                    _ => v.spec.replicas,
                },
                weight: match &split {
                    Some(split) => split
                        .iter()
                        .find(|s| s.number == v.number)
                        .map(|s| s.weight)
                        .unwrap_or(0),
                    None => v.weight,
                },
                ready: split
                    .iter()
                    .flatten()
                    .find(|s| s.number == v.number)
                    .map(|s| s.ready)
                    .unwrap_or(0),
                state: v.state.as_str().into(),
                release: v.release.as_str().into(),
                errors: self.core.backoff.errors_named(&format!(
                    "{app}_{}_",
                    crate::model::version_name(service, v.number)
                )),
                reason: v.reason,
                message: v.message,
            })
            .collect())
    }

    pub fn delete_version(&self, app: &str, service: &str, number: u32) -> Result<(), CoreError> {
        self.stored_service(app, service)?;
        let name = crate::model::version_name(service, number);
        let versions = self.core.store.versions(app, service)?;
        let Some(v) = versions.iter().find(|v| v.number == number) else {
            return Err(CoreError::NotFound(format!(
                "{app}/{service} has no version {name}; it has {}",
                versions
                    .iter()
                    .map(|v| v.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        if v.weight > 0 {
            return Err(CoreError::Conflict(format!(
                "{name} has {}% of the traffic: deploy or roll back to another version first",
                v.weight
            )));
        }
        self.core.store.delete_version(app, service, number)?;
        self.core.event(
            crate::model::EventKind::Version,
            app,
            service,
            &format!("deleted version {name}"),
        );
        Ok(())
    }

    /// Applies a step of the release state machine to a service's versions in one
    /// transaction (nothing changes when it refuses), records its decisions as events (the
    /// summary `message(subject)` for the version the step is about) and answers the versions.
    async fn change_versions(
        &self,
        app: &str,
        service: &str,
        kind: crate::model::EventKind,
        step: crate::plan::release::Step,
        message: impl FnOnce(u32, &[crate::plan::release::Decision]) -> String,
    ) -> Result<Vec<VersionView>, CoreError> {
        self.stored_service(app, service)?;
        let now = crate::clock::now_ms();
        let applied = self.core.store.edit_versions(app, service, |vs| {
            crate::plan::release::apply(vs, &step, now).map_err(CoreError::from)
        })?;
        if let Some(n) = applied.subject {
            self.core
                .event(kind, app, service, &message(n, &applied.decisions));
        }
        self.core
            .record_decisions(app, service, &applied.decisions, None);
        // Answer with the split the router applies after the change.
        self.core
            .routed_after_now(std::time::Duration::from_secs(3))
            .await;
        self.versions(app, service)
    }

    /// `berth traffic`: sets the weights of a service's versions (they must add up to 100).
    pub async fn set_traffic(
        &self,
        app: &str,
        service: &str,
        req: TrafficRequest,
    ) -> Result<Vec<VersionView>, CoreError> {
        let args: Vec<String> = req
            .weights
            .iter()
            .map(|(v, w)| format!("{v}={w}"))
            .collect();
        let weights = crate::plan::release::parse_weights(service, &args)?;
        let desc: Vec<String> = weights
            .iter()
            .map(|(n, w)| format!("{}={w}%", crate::model::version_name(service, *n)))
            .collect();
        self.change_versions(
            app,
            service,
            crate::model::EventKind::Traffic,
            crate::plan::release::Step::Traffic(weights),
            |_, _| format!("traffic set: {}", desc.join(" ")),
        )
        .await
    }

    /// `berth rollback`: the release under way is rolled back, or all the traffic goes to
    /// the named version or the previous one that did not fail.
    pub async fn rollback(
        &self,
        app: &str,
        service: &str,
        req: RollbackRequest,
    ) -> Result<Vec<VersionView>, CoreError> {
        let target = match req.version.trim() {
            "" => None,
            v => Some(crate::plan::release::parse_version(service, v)?),
        };
        self.change_versions(
            app,
            service,
            crate::model::EventKind::Traffic,
            crate::plan::release::Step::Rollback(target),
            |to, ds| {
                let name = crate::model::version_name(service, to);
                let stopped = ds.iter().find(|d| d.reason == "rolled back");
                let now = ds.iter().find(|d| d.number == to).map(|d| d.after);
                match (stopped, now) {
                    (Some(d), _) => format!(
                        "rolled back {} (the release under way): the traffic stays on {name}",
                        d.version
                    ),
                    (None, Some(s)) if s.weight < 100 => format!(
                        "rolling back: {name} starts beside the current version and takes all the traffic once ready"
                    ),
                    _ => format!("rolled back: {name} takes all the traffic"),
                }
            },
        )
        .await
    }

    /// `berth release confirm|abort` of a blue/green release.
    pub async fn release(
        &self,
        app: &str,
        service: &str,
        confirm: bool,
    ) -> Result<Vec<VersionView>, CoreError> {
        let step = if confirm {
            crate::plan::release::Step::Confirm
        } else {
            crate::plan::release::Step::Abort
        };
        self.change_versions(
            app,
            service,
            crate::model::EventKind::Release,
            step,
            |n, _| {
                let name = crate::model::version_name(service, n);
                if confirm {
                    format!("release confirmed: {name} takes all the traffic")
                } else {
                    format!("release aborted: {name} is stopped")
                }
            },
        )
        .await
    }

    /// The images an app names: its services' and every kept version's.
    fn app_images(&self, app: &StoredApp) -> Result<BTreeSet<String>, CoreError> {
        let mut out = BTreeSet::new();
        for (name, svc) in &app.spec.services {
            out.insert(svc.image.clone());
            for v in self.core.store.versions(&app.spec.name, name)? {
                out.insert(v.spec.image.clone());
            }
        }
        Ok(out)
    }

    /// `berth image save APP`: the images the app needs (every kept version's, so a rollback
    /// works offline too), checked present, and the engine's tarball of them.
    pub async fn save_app_images(
        &self,
        name: &str,
    ) -> Result<
        (
            Vec<String>,
            futures_util::stream::BoxStream<'static, Result<bytes::Bytes, RuntimeError>>,
        ),
        CoreError,
    > {
        let app = self
            .core
            .store
            .get_app(name)?
            .ok_or_else(|| unknown_app(name))?;
        let images: Vec<String> = self.app_images(&app)?.into_iter().collect();
        let mut missing = Vec::new();
        for i in &images {
            if !self.core.runtime.image_present(i).await? {
                missing.push(i.clone());
            }
        }
        if !missing.is_empty() {
            return Err(CoreError::Conflict(format!(
                "{} not on this host: pull or load {} first (`berth redeploy {name} --pull` fetches them)",
                missing.join(", "),
                if missing.len() == 1 { "it" } else { "them" }
            )));
        }
        let stream = self.core.runtime.save_images(&images);
        Ok((images, stream))
    }

    pub async fn images(&self) -> Result<Vec<ImageInfo>, CoreError> {
        Ok(self.core.runtime.images().await?)
    }

    /// Loads a tarball as it streams in (the API checked that it is at least one tar block).
    pub async fn load_images(
        &self,
        tar: crate::runtime::TarStream,
    ) -> Result<Vec<String>, CoreError> {
        let out = self.core.runtime.load_images(tar).await.map_err(|e| match e {
            RuntimeError::Engine { detail, .. } => CoreError::BadRequest(format!(
                "the engine could not load the tarball: {detail} (make one with `docker save IMAGE -o FILE.tar`)"
            )),
            other => other.into(),
        })?;
        self.core.event(
            crate::model::EventKind::Image,
            "",
            "",
            &format!("loaded images: {}", out.join("; ")),
        );
        Ok(out)
    }

    /// Removes images no container uses, keeping every image a deployed app or one of its
    /// versions names (see `plan::images_to_prune`).
    pub async fn prune_images(&self) -> Result<PruneReport, CoreError> {
        let _serial = self.core.deploys.lock().await;
        let mut referenced = BTreeSet::new();
        for app in self.core.store.apps_shared()?.iter() {
            referenced.extend(
                self.app_images(app)?
                    .iter()
                    .map(|i| crate::plan::normalize_image_ref(i)),
            );
        }
        let images = self.core.runtime.images().await?;
        let in_use = self.core.runtime.images_in_use().await?;
        let mut report = PruneReport::default();
        for reference in crate::plan::images_to_prune(&images, &in_use, &referenced) {
            match self.core.runtime.remove_image(&reference).await {
                Ok(()) => report.deleted.push(reference),
                // Another image still builds on it, or it was just taken into use: keep it.
                Err(e) => tracing::info!(reference, error = %e, "image kept"),
            }
        }
        let after: BTreeSet<String> = self
            .core
            .runtime
            .images()
            .await?
            .into_iter()
            .map(|i| i.id)
            .collect();
        report.space_reclaimed = images
            .iter()
            .filter(|i| !after.contains(&i.id))
            .map(|i| i.size)
            .sum();
        self.core.event(
            crate::model::EventKind::Image,
            "",
            "",
            &format!(
                "pruned {} image references, {} bytes reclaimed",
                report.deleted.len(),
                report.space_reclaimed
            ),
        );
        Ok(report)
    }

    /// `berth system prune`: unused images, and volumes no app names and no container uses.
    pub async fn system_prune(&self) -> Result<crate::wire::SystemPruneReport, CoreError> {
        let images = self.prune_images().await?;
        let volumes = {
            let _serial = self.core.deploys.lock().await;
            self.core.prune_volumes().await?
        };
        if !volumes.is_empty() {
            self.core.event(
                crate::model::EventKind::Volume,
                "",
                "",
                &format!("pruned volumes {}", volumes.join(", ")),
            );
        }
        Ok(crate::wire::SystemPruneReport {
            images: images.deleted,
            space_reclaimed: images.space_reclaimed,
            volumes,
        })
    }

    /// Events after `after` (or the newest `limit`), waiting up to `wait` for new ones.
    pub async fn events(
        &self,
        app: Option<&str>,
        after: i64,
        limit: i64,
        wait: Duration,
    ) -> Result<Vec<crate::model::Event>, CoreError> {
        // A one-shot listing of an unknown app is most likely a typo; a follower may be
        // waiting for an app about to be deployed.
        if let Some(name) = app
            && wait.is_zero()
            && self.core.store.get_app(name)?.is_none()
            && self.core.store.events(Some(name), 0, 1)?.is_empty()
        {
            return Err(unknown_app(name));
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.core.events_changed.notified();
            let ev = self.core.store.events(app, after, limit)?;
            if !ev.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(ev);
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }
}

/// The directory of app `app`'s secret and config files under `base`, when the name (which
/// another member may have sent) is one plain path component: never `..`, `/`, `a/b`, empty.
fn app_files_dir(base: &std::path::Path, app: &str) -> Option<std::path::PathBuf> {
    let plain = matches!(
        std::path::Path::new(app).components().collect::<Vec<_>>()[..],
        [std::path::Component::Normal(_)]
    ) && !app.contains('/');
    plain.then(|| base.join(app))
}

#[cfg(test)]
mod files_dir_tests {
    #[test]
    fn a_hostile_members_app_name_never_names_a_directory_outside_files() {
        let base = std::path::Path::new("/var/lib/berth/files");
        for name in [
            "../../etc",
            "..",
            ".",
            "",
            "/etc",
            "/",
            "a/b",
            "a/../../etc",
            "shop/",
            "./shop",
        ] {
            assert_eq!(super::app_files_dir(base, name), None, "{name:?}");
        }
        assert_eq!(super::app_files_dir(base, "shop"), Some(base.join("shop")));
    }
}
