//! The agent: the loop that keeps this node's engine equal to the desired state.
//!
//! Role: owns the [`Core`] (store + runtime + node identity), runs reconcile passes on engine
//! events, on a periodic tick and on demand from the API, and records events.
//!
//! Invariants: policy lives in `plan`; this module only gathers inputs, calls the planner and
//! executes the actions (`executor`). One reconcile pass at a time (`ops` lock). Desired state
//! is always written to the store before the engine is touched, so a crash at any point is
//! recovered by the next pass (level-triggered).

pub mod access;
pub mod autoscale;
mod backoff;
mod certs;
pub mod configsets;
mod custom;
mod exec;
pub use exec::{ExecTarget, ExecWhere};

mod executor;
pub mod fleet;
pub mod jobs;
mod logship;
pub mod names;
mod observe;
mod ops;
mod promport;
mod registries;
mod routes;
mod telemetry;
mod triggers;
mod versions;
mod volumes;
pub use volumes::CoreAtRest;

pub use ops::{CoreError, Ops};

use crate::config::AgentConfig;
use crate::model::Release;
use crate::model::{EventKind, NetworkMode};
use crate::plan::{self, DesiredApp, DesiredService, DesiredVersion, Observed};
use crate::runtime::{ContainerRuntime, RuntimeError};
use crate::store::{Store, StoreError, StoredApp};
use futures_util::StreamExt;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// Notices waiting at most (beyond, a notice is logged and dropped).
const MAX_NOTICES: usize = 1000;

/// An event for the notifiers (`[metrics.notify]`), as a webhook receives it.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Notice {
    pub kind: String,
    pub app: String,
    pub service: String,
    pub message: String,
    pub time_ms: i64,
}

/// What one reconcile pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// Actions run against the engine.
    pub attempted: usize,
    /// Actions skipped (backoff) plus services waiting for their dependencies.
    pub pending: usize,
}

impl Pass {
    pub fn settled(&self) -> bool {
        self.attempted == 0 && self.pending == 0
    }
}

/// Why the reconcile loop wakes: every input of a pass, one enum. Wake-ups that arrive
/// before a pass starts make one pass (a set of reasons, logged with it); the loop is
/// level-triggered, so a reason only says what prompted a look, never what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    /// The periodic tick, the safety net for anything missed.
    Tick,
    /// Work left pending by the previous pass (backoff, dependencies starting) or done by it.
    Pending,
    /// The engine reported a container of this node dying, stopping or going, or its
    /// event stream reconnected (events may have been missed).
    Engine,
    /// A probe moved an instance's health.
    Health,
    /// An operation changed the desired state (deploy, scale, traffic, redeploy...) or asks
    /// for the router to be current.
    Command,
    /// A version was settled (normal or failed): the next step of its release.
    Release,
    /// A removal the executor ran in the background finished.
    Removed,
    /// The cluster changed what this node runs (placement, another member's app, a
    /// member's state).
    Cluster,
}

impl Wake {
    const ALL: [Wake; 8] = [
        Wake::Tick,
        Wake::Pending,
        Wake::Engine,
        Wake::Health,
        Wake::Command,
        Wake::Release,
        Wake::Removed,
        Wake::Cluster,
    ];

    fn bit(self) -> u8 {
        1 << (self as u8)
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Wake::Tick => "tick",
            Wake::Pending => "pending",
            Wake::Engine => "engine",
            Wake::Health => "health",
            Wake::Command => "command",
            Wake::Release => "release",
            Wake::Removed => "removed",
            Wake::Cluster => "cluster",
        }
    }
}

/// The reasons gathered since the last pass started, and the loop's doorbell.
#[derive(Default)]
struct Wakes {
    set: std::sync::atomic::AtomicU8,
    bell: Notify,
}

impl Wakes {
    fn ring(&self, why: Wake) {
        self.set
            .fetch_or(why.bit(), std::sync::atomic::Ordering::AcqRel);
        self.bell.notify_one();
    }

    /// Takes the reasons gathered so far (empty when nothing rang).
    fn take(&self) -> Vec<Wake> {
        let set = self.set.swap(0, std::sync::atomic::Ordering::AcqRel);
        Wake::ALL
            .into_iter()
            .filter(|w| set & w.bit() != 0)
            .collect()
    }
}

pub struct Core {
    /// Where `environment:`/`content:` secrets and configs are written (`DIR/APP/...`).
    files_dir: std::path::PathBuf,
    store: Arc<Store>,
    runtime: Arc<dyn ContainerRuntime>,
    pub node_id: String,
    pub node_name: String,
    pub engine: String,
    wakes: Wakes,
    /// Held by a reconcile pass and by operations that must not interleave with one.
    ops: tokio::sync::Mutex<()>,
    /// Serialises deploys: two deploys of one app never interleave.
    deploys: tokio::sync::Mutex<()>,
    /// One change of a config set at a time (read, merge, write).
    config_sets: std::sync::Mutex<()>,
    /// What another member's apps pull with here (from their `Spec` records; in memory
    /// only): app -> the owner's registry logins and image ids.
    carried: std::sync::Mutex<HashMap<String, registries::Carried>>,
    /// The ids of the images this host's apps run, as pulled here (image -> id), for the
    /// members that run their slots; and the (image, id) pulls made for another member's.
    image_ids: std::sync::Mutex<HashMap<String, String>>,
    pulled_for: std::sync::Mutex<std::collections::HashSet<(String, String)>>,
    /// Node and job events waiting to go to the notifiers (`[metrics.notify]`).
    notices: std::sync::Mutex<Vec<Notice>>,
    backoff: backoff::Backoffs,
    /// Compose names a rename to failed, and when (ms): not tried again for a minute.
    rename_failed: Mutex<HashMap<String, i64>>,
    /// The templates' certificates as loaded (`certs.rs`).
    label_keys: Mutex<certs::KeyCache>,
    /// Containers this agent started recently (to tell engine restarts apart).
    our_starts: Mutex<HashMap<String, Instant>>,
    /// Woken when an event is recorded (for `events -f`).
    events_changed: Notify,
    /// Counts the engine's container events for this node (and reconnects of their stream):
    /// readers that mirror the container list list again only when it moved.
    engine_changes: tokio::sync::watch::Sender<u64>,
    prober: crate::health::Prober,
    /// How long a version may take to become normal (see `[agent] version_deadline`).
    version_deadline_ms: i64,
    pub router: crate::router::Router,
    /// Hook calls per minute (`agent/triggers.rs`).
    trigger_limits: triggers::Limits,
    router_domain: String,
    /// Domains with a certificate, when the HTTPS router runs (for `https://` routes).
    tls_domains: Vec<String>,
    /// Router errors last reported (so a port that cannot be bound is reported once).
    router_errors: Mutex<Vec<String>>,
    /// The traffic split of every service as the last pass gave it to the router (what
    /// `berth versions` shows), and that pass's number (`passes`: passes started).
    splits: Mutex<(u64, Arc<crate::router::table::Splits>)>,
    passes: std::sync::atomic::AtomicU64,
    pub(super) routed: Notify,
    /// The agent itself, for work that outlives a pass (set once it is in an `Arc`).
    me: std::sync::OnceLock<std::sync::Weak<Core>>,
    /// The containers seen done, as the store keeps them (`remember_done`; None until read).
    seen_done: Mutex<Option<BTreeMap<String, i64>>>,
    /// Ids of containers being removed in the background.
    removing: Mutex<std::collections::HashSet<String>>,
    /// Latest metrics, the last hour, sink senders.
    metrics: crate::metrics::Hub,
    /// `[metrics]` and `[logs]`: replaced whole by a SIGHUP reload (`Core::apply_settings`);
    /// loops that keep derived state notice a reload by the `Arc` changing.
    settings: std::sync::RwLock<Arc<Settings>>,
    /// Set when the agent shuts down (ends log streams).
    stopping: std::sync::atomic::AtomicBool,
    /// Volume mounts and sealed credentials.
    volumes: volumes::VolumeHub,
    /// The cluster as the last publish saw it (None: in no cluster; every slot runs here).
    fleet: Mutex<Option<Arc<fleet::Fleet>>>,
    /// Placement errors last reported, by (app, service): each is an event once.
    placement_errors: Mutex<BTreeSet<(String, String, String)>>,
    /// This node's apps' rolling batches over the cluster, as the last pass computed them
    /// (published with the apps).
    pub(crate) claims: Mutex<fleet::Claims>,
    /// Other members' apps whose secret and config files this host wrote (under
    /// `files/APP/`): removed here once the app is gone from the cluster.
    pub(crate) remote_files: Mutex<BTreeSet<String>>,
    /// Service names across hosts: holders, their listeners, where connections go.
    pub(crate) names: names::Names,
    /// No holder exists and none is wanted (in no cluster, nothing to look at).
    names_clean: std::sync::atomic::AtomicBool,
    /// Autoscaled services' recent figures and decisions.
    pub(crate) autoscaler: autoscale::Autoscaler,
    /// Jobs' runner: definitions, pending removals, its doorbell.
    pub(crate) jobs: jobs::Jobs,
    /// The log collector, once the log loop started it (job containers are removed only
    /// after their logs were read to the end).
    pub(crate) log_shipper: std::sync::OnceLock<Arc<crate::logs::Shipper>>,
}

/// The settings a reload may change.
pub struct Settings {
    pub metrics: crate::metrics::MetricsConfig,
    pub logs: crate::config::LogsConfig,
}

pub fn desired_replicas(app: &StoredApp, service: &str) -> u32 {
    match app.spec.services.get(service) {
        Some(s) if s.global => 1,
        // One host: `max_replicas_per_node` caps what runs here, as Swarm leaves the rest
        // pending when no other node can take them.
        Some(s) => app
            .replicas(service)
            .min(s.max_per_node.unwrap_or(u32::MAX)),
        None => 0,
    }
}

/// Batch size of a rolling update (`rolling_updates.parallelism`, else compose
/// `deploy.update_config.parallelism`, else 1).
pub fn parallelism(s: &crate::model::ServiceSpec) -> u32 {
    s.ext
        .rolling_updates
        .as_ref()
        .map(|r| r.parallelism)
        .or_else(|| s.update_config.as_ref().map(|u| u.parallelism))
        .unwrap_or(1)
        .max(1)
}

/// The desired state of `apps`; in a cluster (`here`), each version runs only the slots
/// placed on this node, out of its cluster-wide replica count.
fn desired_state(
    apps: &[std::sync::Arc<StoredApp>],
    placement: Option<&fleet::Placement>,
) -> Vec<DesiredApp> {
    let here = placement.map(|p| &p.here);
    apps.iter()
        .map(|a| DesiredApp {
            name: a.spec.name.clone(),
            stopped: a.stopped,
            resumed_ms: a.updated_ms,
            // A job's tasks run as the job runner starts them, not as services.
            services: crate::spec::start_order(&a.spec)
                .into_iter()
                .filter(|_| !jobs::is_job(a))
                .filter_map(|name| {
                    let s = a.spec.services.get(&name)?;
                    let replicas = desired_replicas(a, &name);
                    Some(DesiredService {
                        versions: a
                            .live(&name)
                            .iter()
                            .map(|l| {
                                let mine = here.map(|h| {
                                    let key = (a.spec.name.clone(), name.clone(), l.version.number);
                                    h.get(&key).cloned().unwrap_or_default()
                                });
                                // Placement spreads the whole count (a global service: one
                                // per node, slots numbered over the nodes).
                                let replicas = match &mine {
                                    Some(m) => l
                                        .version
                                        .instances(a.replicas(&name))
                                        .max(m.last().copied().unwrap_or(0)),
                                    None => l.version.instances(replicas),
                                };
                                DesiredVersion {
                                    number: l.version.number,
                                    replicas,
                                    spec_hash: l.hash.clone(),
                                    rolling: (l.version.release == Release::Rolling)
                                        .then(|| parallelism(&l.version.spec)),
                                    here: mine,
                                    claim: placement.and_then(|p| {
                                        p.claims
                                            .get(&(
                                                a.spec.name.clone(),
                                                name.clone(),
                                                l.version.number,
                                            ))
                                            .cloned()
                                    }),
                                }
                            })
                            .collect(),
                        discard: a.failed.get(&name).cloned().unwrap_or_default(),
                        depends_on: s.depends_on.clone(),
                        restart: s.restart,
                        bridge: s.network_mode == NetworkMode::Bridge,
                        stopped: a.stopped_services.get(&name).cloned(),
                        name,
                    })
                })
                .collect(),
        })
        .collect()
}

impl Core {
    /// The agent over `store` and `runtime`, in an `Arc` that knows itself (for work that
    /// outlives a pass).
    pub async fn new(
        store: Arc<Store>,
        runtime: Arc<dyn ContainerRuntime>,
        cfg: &AgentConfig,
    ) -> Result<Arc<Core>, AgentError> {
        let core = Arc::new(Core::build(store, runtime, cfg).await?);
        let _ = core.me.set(Arc::downgrade(&core));
        autoscale::attach(&core);
        Ok(core)
    }

    async fn build(
        store: Arc<Store>,
        runtime: Arc<dyn ContainerRuntime>,
        cfg: &AgentConfig,
    ) -> Result<Core, AgentError> {
        let node_id = store.node_id()?;
        let engine = runtime.ping().await?;
        // `https://` routes exist only when the HTTPS router runs.
        let tls_domains = if cfg.router_https.is_some() {
            cfg.router_tls_domains.clone()
        } else {
            Vec::new()
        };
        Ok(Core {
            store,
            runtime,
            node_id,
            node_name: cfg.node_name.clone(),
            engine,
            wakes: Wakes::default(),
            ops: tokio::sync::Mutex::new(()),
            deploys: tokio::sync::Mutex::new(()),
            config_sets: std::sync::Mutex::new(()),
            carried: std::sync::Mutex::default(),
            image_ids: std::sync::Mutex::default(),
            pulled_for: std::sync::Mutex::default(),
            notices: std::sync::Mutex::new(Vec::new()),
            backoff: backoff::Backoffs::default(),
            rename_failed: Default::default(),
            label_keys: Mutex::default(),
            our_starts: Mutex::new(HashMap::new()),
            events_changed: Notify::new(),
            engine_changes: tokio::sync::watch::Sender::new(0),
            prober: crate::health::Prober::default(),
            version_deadline_ms: cfg.version_deadline_ms as i64,
            router: crate::router::Router::new(
                cfg.router_tcp_ip,
                tls_domains.clone(),
                cfg.router_limits.clone(),
            ),
            trigger_limits: triggers::Limits::default(),
            router_domain: cfg.router_domain.clone(),
            tls_domains,
            router_errors: Mutex::new(Vec::new()),
            splits: Mutex::new((0, Arc::default())),
            passes: std::sync::atomic::AtomicU64::new(0),
            routed: Notify::new(),
            me: std::sync::OnceLock::new(),
            removing: Mutex::default(),
            seen_done: Mutex::new(None),
            fleet: Mutex::new(None),
            placement_errors: Mutex::default(),
            claims: Mutex::default(),
            remote_files: Mutex::default(),
            names: names::Names::default(),
            names_clean: std::sync::atomic::AtomicBool::new(false),
            autoscaler: autoscale::Autoscaler::default(),
            jobs: jobs::Jobs::default(),
            log_shipper: std::sync::OnceLock::new(),
            metrics: crate::metrics::Hub::default(),
            settings: std::sync::RwLock::new(Arc::new(Settings {
                metrics: cfg.metrics.clone(),
                logs: cfg.logs.clone(),
            })),
            stopping: std::sync::atomic::AtomicBool::new(false),
            volumes: volumes::VolumeHub::new(&cfg.data_dir),
            files_dir: cfg.data_dir.join("files"),
        })
    }

    /// The `[metrics]` and `[logs]` settings in force.
    pub(super) fn settings(&self) -> Arc<Settings> {
        self.settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_settings(&self, s: Settings) {
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(s);
    }

    pub(super) fn stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Asks the loop for a reconcile pass soon, saying why.
    pub(super) fn wake(&self, why: Wake) {
        self.wakes.ring(why);
        if why == Wake::Command {
            // A command may have changed a job (deploy, scale, stop, start, rm).
            self.jobs.touch();
        }
    }

    pub fn event(&self, kind: EventKind, app: &str, service: &str, message: &str) {
        let kind = kind.as_str();
        tracing::info!(kind, app, service, message, "event");
        if let Err(e) = self.store.add_event(kind, app, service, message) {
            tracing::error!(error = %e, "cannot record event");
        }
        self.events_changed.notify_waiters();
        // Node and job events the notifiers want: the metrics loop sends them (its next cycle).
        if self.settings().metrics.notify.wants(kind, message) {
            let mut q = self.notices.lock().unwrap_or_else(|p| p.into_inner());
            if q.len() < MAX_NOTICES {
                q.push(Notice {
                    kind: kind.to_string(),
                    app: app.to_string(),
                    service: service.to_string(),
                    message: message.to_string(),
                    time_ms: crate::clock::now_ms(),
                });
            } else {
                tracing::warn!(
                    kind,
                    message,
                    "too many notices waiting: this one is not sent"
                );
            }
        }
    }

    /// The notices waiting for the metrics loop.
    pub(crate) fn take_notices(&self) -> Vec<Notice> {
        std::mem::take(&mut *self.notices.lock().unwrap_or_else(|p| p.into_inner()))
    }

    async fn observe(&self, apps: &[std::sync::Arc<StoredApp>]) -> Result<Observed, RuntimeError> {
        let mut instances = self.runtime.list(&self.node_id).await?;
        self.track_health(apps, &instances);
        self.annotate_health(&mut instances);
        let boot_ms = boot_ms();
        let seen_done = self.remember_done(&instances, boot_ms);
        Ok(Observed {
            instances,
            networks: self.runtime.networks(&self.node_id).await?,
            boot_ms,
            seen_done,
        })
    }

    /// The containers seen done (exited 0 since the host booted), as the store keeps them
    /// for the next boot: new ones added, containers gone forgotten. A store error leaves
    /// the record as it was (a one-shot then runs again after a reboot: the safe side).
    fn remember_done(
        &self,
        instances: &[crate::model::Instance],
        boot_ms: i64,
    ) -> std::collections::BTreeMap<String, i64> {
        // Read from the store once; afterwards the store is only written when it changes.
        let mut cache = self.seen_done.lock().unwrap_or_else(|p| p.into_inner());
        if cache.is_none() {
            match self.store.seen_done() {
                Ok(k) => *cache = Some(k),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the containers seen done");
                    return Default::default();
                }
            }
        }
        let kept = cache.get_or_insert_with(Default::default);
        let mut now: std::collections::BTreeMap<String, i64> = instances
            .iter()
            .filter_map(|i| Some((i.id.clone(), kept.get(&i.id).copied()?)))
            .collect();
        for i in instances {
            if i.state == crate::model::InstanceState::Exited
                && i.exit_code == Some(0)
                && let Some(f) = i.finished_ms.filter(|&f| f > boot_ms)
            {
                now.insert(i.id.clone(), f);
            }
        }
        if now != *kept {
            if let Err(e) = self.store.set_seen_done(&now) {
                tracing::warn!(error = %e, "cannot record the containers seen done");
                return kept.clone();
            }
            *kept = now.clone();
        }
        now
    }

    /// This node's instances with their current health (for queries).
    pub(super) async fn instances(&self) -> Result<Vec<crate::model::Instance>, RuntimeError> {
        let mut list = self.runtime.list(&self.node_id).await?;
        self.annotate_health(&mut list);
        Ok(list)
    }

    /// Calls `f` with every running instance and the spec of its own version (a new version
    /// may probe or monitor differently); versions without traffic any more are looked up in
    /// the store (rare: while they drain), once per service.
    pub(super) fn each_running_spec<'a>(
        &self,
        apps: &'a [std::sync::Arc<StoredApp>],
        instances: &'a [crate::model::Instance],
        mut f: impl FnMut(&'a crate::model::Instance, &crate::model::ServiceSpec),
    ) {
        let running = || {
            instances.iter().filter_map(|i| {
                let app = apps.iter().find(|a| a.spec.name == i.app)?;
                (i.state == crate::model::InstanceState::Running).then_some((
                    i,
                    app,
                    i.version_number()?,
                ))
            })
        };
        let mut old: HashMap<(&str, &str), Vec<crate::model::Version>> = HashMap::new();
        for (i, app, n) in running() {
            if app.live_version(&i.service, n).is_none() {
                old.entry((&i.app, &i.service))
                    .or_insert_with(|| self.store.versions(&i.app, &i.service).unwrap_or_default());
            }
        }
        for (i, app, n) in running() {
            let spec = match app.live_version(&i.service, n) {
                Some(l) => &l.version.spec,
                None => {
                    let Some(v) = old
                        .get(&(i.app.as_str(), i.service.as_str()))
                        .and_then(|vs| vs.iter().find(|v| v.number == n))
                    else {
                        continue;
                    };
                    &v.spec
                }
            };
            f(i, spec);
        }
    }

    /// Probes exactly the running instances whose version has a probe, as that version says.
    fn track_health(
        &self,
        apps: &[std::sync::Arc<StoredApp>],
        instances: &[crate::model::Instance],
    ) {
        let mut targets = Vec::new();
        self.each_running_spec(apps, instances, |i, spec| {
            if let Some(probe) = spec.ext.probe.as_ref() {
                targets.push(crate::health::Target::for_instance(
                    i,
                    probe,
                    spec.network_mode,
                ));
            }
        });
        self.prober.sync(targets, Instant::now());
    }

    /// Probe results override what the engine says; without a probe the engine's own
    /// healthcheck (compose `healthcheck:`) stands.
    fn annotate_health(&self, instances: &mut [crate::model::Instance]) {
        for i in instances.iter_mut() {
            if let Some(h) = self.prober.health(&i.id) {
                i.health = h;
            }
        }
    }

    /// One pass: read desired state, observe the engine, plan, execute.
    pub(super) async fn reconcile_once(&self) -> Result<Pass, CoreError> {
        let _guard = self.ops.lock().await;
        self.reconcile_locked().await
    }

    async fn reconcile_locked(&self) -> Result<Pass, CoreError> {
        let started = Instant::now();
        let pass = self
            .passes
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel)
            + 1;
        // The store's shared snapshot: an idle pass copies none of what may be a thousand
        // apps (only a cluster's apps of other members are added, to a copy).
        let own = self.store.apps_shared()?;
        self.forget_dead_versions(&own);
        let fleet = self.fleet();
        let own_count = own.len();
        let (apps, placement) = self.with_fleet(own, fleet.as_deref())?;
        let desired = desired_state(&apps, placement.as_ref());
        let mut observed = self.observe(&apps).await?;
        // Another node's container is planned only when its app is desired here or its
        // owner's records are: one whose owner this node knows nothing of is left alone.
        observed.instances.retain(|i| {
            i.owner.is_empty()
                || apps.iter().any(|a| a.spec.name == i.app)
                || fleet.as_ref().is_some_and(|f| f.owners.contains(&i.owner))
        });
        // Job containers are the job runner's (`jobs.rs`); those of an app gone, or no
        // longer a job, are orphans like any other.
        observed.instances.retain(|i| {
            i.job.is_none()
                || !apps
                    .iter()
                    .chain(fleet.iter().flat_map(|f| f.remote.iter().map(|r| &r.app)))
                    .any(|a| a.spec.name == i.app && jobs::is_job(a))
        });
        let plan = plan::plan(&desired, &observed);
        // The router follows the versions as this pass leaves them (this node decides its
        // own apps' versions; the others' owners decide theirs).
        let cluster = fleet.as_deref().zip(placement.as_ref());
        let apps = if self.update_versions(&apps[..own_count], &observed.instances, cluster) {
            let fresh = self.store.apps_shared()?;
            if apps.len() == own_count {
                fresh
            } else {
                let mut fresh = fresh.as_ref().clone();
                fresh.extend(apps.iter().skip(own_count).cloned());
                Arc::new(fresh)
            }
        } else {
            apps
        };
        // Instances about to stop leave the routing table first, then drain (executor).
        let leaving: BTreeSet<&str> = plan
            .actions
            .iter()
            .filter_map(|a| match a {
                plan::Action::Stop { id, .. } | plan::Action::Remove { id, .. } => {
                    Some(id.as_str())
                }
                _ => None,
            })
            .collect();
        self.update_router(&apps, &observed.instances, &leaving, pass);
        self.update_names(&apps, &observed.instances).await;
        // Names settle once nothing else is to do: an instance of a service's only live
        // version takes its compose name.
        let renames = match plan.actions.is_empty() {
            true => plan::compose_renames(
                |app, service| match apps.iter().find(|a| a.spec.name == app)?.live(service) {
                    [one] => Some(one.version.number),
                    _ => None,
                },
                &observed.instances,
            ),
            false => Vec::new(),
        };
        self.rename_instances(&renames, &observed.instances).await;
        let (mut attempted, mut in_background) = (0, 0usize);
        if !plan.actions.is_empty() {
            let by_name: BTreeMap<String, Arc<StoredApp>> = apps
                .iter()
                .map(|a| (a.spec.name.clone(), a.clone()))
                .collect();
            (attempted, in_background) = self.execute(&plan, &by_name).await;
        }
        self.metrics.set_reconcile_time(started.elapsed());
        tracing::debug!(
            actions = plan.actions.len(),
            attempted,
            in_background,
            waiting = plan.waiting.len(),
            ms = started.elapsed().as_millis() as u64,
            "reconciled"
        );
        Ok(Pass {
            attempted,
            pending: plan.actions.len() - attempted.min(plan.actions.len()) + plan.waiting.len(),
        })
    }

    /// Renames instances to their compose names (`plan::compose_renames`), each an event;
    /// a name another container holds is tried again a minute later.
    async fn rename_instances(
        &self,
        renames: &[(String, String)],
        instances: &[crate::model::Instance],
    ) {
        let now = crate::clock::now_ms();
        for (id, to) in renames {
            {
                let mut failed = self.rename_failed.lock().unwrap_or_else(|p| p.into_inner());
                failed.retain(|_, t| now - *t < 60_000);
                if failed.contains_key(to) {
                    continue;
                }
            }
            let Some(i) = instances.iter().find(|i| &i.id == id) else {
                continue;
            };
            match self.runtime.rename(id, to).await {
                Ok(()) => self.event(
                    EventKind::Create,
                    &i.app,
                    &i.service,
                    &format!(
                        "renamed {} to {to} ({} is the only version)",
                        i.name, i.version
                    ),
                ),
                Err(e) => {
                    tracing::info!(container = %i.name, to = %to, error = %e, "not renamed");
                    self.rename_failed
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(to.clone(), now);
                }
            }
        }
    }

    /// The cluster as the last publish saw it.
    pub(super) fn fleet(&self) -> Option<Arc<fleet::Fleet>> {
        self.fleet.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Hands the pass the cluster (None: in no cluster); a change in what it means for
    /// this node wakes a pass.
    pub(super) fn set_fleet(&self, f: Option<fleet::Fleet>) {
        let mut g = self.fleet.lock().unwrap_or_else(|p| p.into_inner());
        let before = g.as_deref().map(fleet::Fleet::fingerprint);
        let after = f.as_ref().map(fleet::Fleet::fingerprint);
        *g = f.map(Arc::new);
        drop(g);
        if before != after {
            self.wake(Wake::Cluster);
        }
    }

    /// In a cluster: places this node's apps (keeping the assignments in the store), and
    /// adds the other nodes' apps that have a slot or a container here. Returns every app
    /// this pass runs (this node's first) and the slots placed here.
    fn with_fleet(
        &self,
        apps: crate::store::AppList,
        fleet: Option<&fleet::Fleet>,
    ) -> Result<(crate::store::AppList, Option<fleet::Placement>), StoreError> {
        let Some(f) = fleet else {
            let stored = self.store.assignments()?;
            if stored.is_empty() {
                return Ok((apps, None));
            }
            let p = fleet::stored_only(&self.node_id, &apps, &stored);
            return Ok((apps, Some(p)));
        };
        let current = self.store.assignments()?;
        let start = fleet::adopt(&self.node_id, &apps, &current, &f.local_slots);
        let (mut placed, errors) = fleet::place(&apps, &start, &f.nodes, &f.held);
        fleet::settle_moves(&mut placed, &f.ready_slots);
        for a in apps.iter() {
            let name = &a.spec.name;
            let of = |l: &[crate::model::Assignment]| -> Vec<crate::model::Assignment> {
                l.iter().filter(|x| &x.app == name).cloned().collect()
            };
            let now = of(&placed);
            if now != of(&current) {
                self.store.set_assignments(name, &now)?;
                let mut per: BTreeMap<&str, u32> = BTreeMap::new();
                for x in &now {
                    let node = f
                        .nodes
                        .iter()
                        .find(|n| n.id == x.node)
                        .map_or(x.node.as_str(), |n| n.name.as_str());
                    *per.entry(node).or_default() += 1;
                }
                let list: Vec<String> = per.iter().map(|(n, c)| format!("{c} on {n}")).collect();
                let closed: Vec<String> = f
                    .closed
                    .iter()
                    .map(|(n, why)| format!("{n} ({why})"))
                    .collect();
                let closed = if closed.is_empty() {
                    String::new()
                } else {
                    format!("; taking none: {}", closed.join(", "))
                };
                self.event(
                    EventKind::Deploy,
                    name,
                    "",
                    &format!("placed: {}{closed}", list.join(", ")),
                );
            }
        }
        self.report_placement(errors);
        let mut total: BTreeMap<(String, String, u32), u32> = BTreeMap::new();
        for a in &placed {
            *total
                .entry((a.app.clone(), a.service.clone(), a.version))
                .or_default() += 1;
        }
        let mut here = fleet::here(&self.node_id, &placed);
        // This node's apps' rolling updates batch over the whole cluster; the others follow
        // their owners' batches.
        let mut claims = fleet::claims(&apps, f);
        *self.claims.lock().unwrap_or_else(|p| p.into_inner()) = claims.clone();
        let mine: BTreeSet<String> = apps.iter().map(|a| a.spec.name.clone()).collect();
        let mut others = Vec::new();
        for r in &f.remote {
            if mine.contains(&r.app.spec.name) {
                continue;
            }
            let h = fleet::here(&self.node_id, &r.assignments);
            if h.values().any(|slots| !slots.is_empty()) || f.runs_here(&r.app.spec.name) {
                here.extend(h);
                for (service, version, c) in &r.claims {
                    claims.insert(
                        (r.app.spec.name.clone(), service.clone(), *version),
                        c.clone(),
                    );
                }
                others.push(r.app.clone());
            }
        }
        let apps = if others.is_empty() {
            apps
        } else {
            let mut all = apps.as_ref().clone();
            all.extend(others);
            Arc::new(all)
        };
        Ok((
            apps,
            Some(fleet::Placement {
                here,
                total,
                claims,
            }),
        ))
    }

    /// Each placement error or warning becomes an event once (and again once it changes).
    fn report_placement(&self, said: Vec<(String, String, String)>) {
        let mut seen = self
            .placement_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let now: BTreeSet<(String, String, String)> = said.into_iter().collect();
        for said @ (app, service, msg) in &now {
            if !seen.contains(said) {
                let kind = if msg.starts_with("cannot place") {
                    EventKind::Error
                } else {
                    EventKind::Deploy
                };
                self.event(kind, app, service, msg);
            }
        }
        *seen = now;
    }

    /// Passes until nothing is left to do (dependencies up, nothing in backoff), or `limit`.
    pub(super) async fn reconcile_until_settled(&self, limit: Duration) -> Result<(), CoreError> {
        let deadline = Instant::now() + limit;
        loop {
            let pass = self.reconcile_once().await?;
            if pass.settled() || Instant::now() >= deadline {
                return Ok(());
            }
            if pass.attempted == 0 {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    /// Swaps in a routing table built from this pass's view; reports new router errors once.
    fn update_router(
        &self,
        apps: &[std::sync::Arc<StoredApp>],
        instances: &[crate::model::Instance],
        leaving: &BTreeSet<&str>,
        pass: u64,
    ) {
        // In a cluster every member routes every app, to its instances on every member.
        let fleet = self.fleet();
        let mut all: Vec<Arc<StoredApp>>;
        let apps = match &fleet {
            Some(f)
                if f.remote
                    .iter()
                    .any(|r| !apps.iter().any(|a| a.spec.name == r.app.spec.name)) =>
            {
                all = apps.to_vec();
                for r in &f.remote {
                    if !all.iter().any(|a| a.spec.name == r.app.spec.name) {
                        all.push(r.app.clone());
                    }
                }
                &all[..]
            }
            _ => apps,
        };
        let (elsewhere, remote) = match &fleet {
            Some(f) => (&f.ready, &f.endpoints[..]),
            None => (&BTreeMap::new(), &[][..]),
        };
        let splits = Arc::new(crate::router::table::splits(
            apps, instances, leaving, elsewhere,
        ));
        self.router.set_label_certs(self.label_certs(apps));
        let errors = self.router.update(crate::router::table::build(
            apps,
            (instances, remote),
            leaving,
            &splits,
            &self.router_domain,
        ));
        {
            let mut s = self.splits.lock().unwrap_or_else(|p| p.into_inner());
            if pass > s.0 {
                *s = (pass, splits);
            }
        }
        self.routed.notify_waiters();
        let mut last = self.router_errors.lock().unwrap_or_else(|p| p.into_inner());
        for e in errors.iter().filter(|e| !last.contains(e)) {
            self.event(
                crate::model::EventKind::Error,
                "",
                "",
                &format!("{e}: free the port or change the lb.port label"),
            );
        }
        *last = errors;
    }

    /// Starts the router's internal side (`.local` routes) and points the holders of
    /// `.local` names at it.
    pub fn start_internal_router(
        &self,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> std::io::Result<std::net::SocketAddr> {
        let addr = self.router.start_internal(stop)?;
        self.names.set_router(addr);
        Ok(addr)
    }

    /// Keeps a holder for each service of an app running here that also runs on other
    /// members, listening on its ports, and where its connections go (`names`).
    async fn update_names(
        &self,
        apps: &[std::sync::Arc<StoredApp>],
        instances: &[crate::model::Instance],
    ) {
        use std::sync::atomic::Ordering;
        let fleet = self.fleet();
        let externals = apps.iter().any(|a| {
            !a.spec.externals.is_empty()
                || a.spec.services.values().any(|s| !s.local_routes.is_empty())
        });
        if fleet.is_none() && !externals && self.names_clean.load(Ordering::Relaxed) {
            return;
        }
        let specs: Vec<&crate::model::AppSpec> = apps.iter().map(|a| &a.spec).collect();
        let elsewhere = fleet
            .as_ref()
            .map(|f| f.elsewhere.as_slice())
            .unwrap_or(&[]);
        let want = plan::names::wanted(&specs, instances, elsewhere);
        let mut local: BTreeMap<(String, String), Vec<std::net::IpAddr>> = BTreeMap::new();
        for i in instances.iter().filter(|i| plan::is_ready(i)) {
            if let Ok(ip) = i.ip.parse() {
                local
                    .entry((i.app.clone(), i.service.clone()))
                    .or_default()
                    .push(ip);
            }
        }
        let wanted_none = want.is_empty();
        let errors = self
            .names
            .update(self.runtime.as_ref(), &self.node_id, want, local)
            .await;
        self.names_clean
            .store(wanted_none && errors.is_empty(), Ordering::Relaxed);
        for e in self.names.new_errors(errors) {
            self.event(crate::model::EventKind::Error, "", "", &e);
        }
    }

    /// Failures of containers of versions that no longer run (`{app}_{service}-NNN_slot`
    /// names of versions that are not live) are forgotten.
    fn forget_dead_versions(&self, apps: &[std::sync::Arc<StoredApp>]) {
        self.backoff.forget(|key, app, service| {
            let Some(a) = apps.iter().find(|a| a.spec.name == app) else {
                return false;
            };
            let Some(rest) = key.strip_prefix(&format!("{app}_{service}-")) else {
                return false;
            };
            let Some((number, _slot)) = rest.split_once('_') else {
                return false;
            };
            let Ok(n) = number.parse::<u32>() else {
                return false;
            };
            a.live_version(service, n).is_none()
        });
    }

    /// The traffic split of a service the router uses now (`None` before the first pass
    /// that saw it).
    pub(super) fn split_of(
        &self,
        app: &str,
        service: &str,
    ) -> Option<Vec<crate::router::table::Share>> {
        let s = self.splits.lock().unwrap_or_else(|p| p.into_inner());
        s.1.get(&(app.to_string(), service.to_string())).cloned()
    }

    /// Waits (up to `limit`) until a pass that started after this call has handed its
    /// table to the router, so an answer about traffic shows what the router does.
    pub(super) async fn routed_after_now(&self, limit: Duration) {
        let after = self.passes.load(std::sync::atomic::Ordering::Acquire);
        self.wake(Wake::Command);
        let _ = tokio::time::timeout(limit, async {
            loop {
                let routed = self.routed.notified();
                tokio::pin!(routed);
                routed.as_mut().enable();
                if self.splits.lock().unwrap_or_else(|p| p.into_inner()).0 > after {
                    return;
                }
                routed.await;
            }
        })
        .await;
    }

    /// Records a health transition: an event, backoff bookkeeping, a reconcile pass.
    fn health_changed(
        &self,
        t: &crate::health::Target,
        tr: &crate::health::Transition,
        error: &str,
    ) {
        use crate::model::Health;
        let msg = match tr.to {
            Health::Healthy => {
                self.backoff.healthy(&t.name);
                format!("{} is healthy", t.name)
            }
            Health::Unhealthy => format!("{} is unhealthy: {error}", t.name),
            Health::Failed => format!(
                "{} stayed unhealthy for {} s, replacing it: {error}",
                t.name,
                crate::health::REPLACE_AFTER.as_secs()
            ),
            _ => return,
        };
        self.event(crate::model::EventKind::Health, &t.app, &t.service, &msg);
        self.wake(Wake::Health);
    }

    /// Last errors of an app's (or one service's) containers that are failing now.
    pub(super) fn failures(&self, app: &str, service: Option<&str>) -> Vec<String> {
        self.backoff.errors(app, service)
    }

    fn note_our_start(&self, id: &str) {
        let mut m = self.our_starts.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        m.retain(|_, t| now.duration_since(*t) < Duration::from_secs(30));
        m.insert(id.to_string(), now);
    }

    fn started_by_us(&self, id: &str) -> bool {
        let m = self.our_starts.lock().unwrap_or_else(|p| p.into_inner());
        m.get(id)
            .is_some_and(|t| t.elapsed() < Duration::from_secs(15))
    }
}

/// Runs a reconcile pass whenever a [`Wake`] rings, until `shutdown` fires.
async fn reconcile_loop(
    core: Arc<Core>,
    interval: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut timer = Some(Wake::Tick);
    while !*shutdown.borrow() {
        let mut why = core.wakes.take();
        why.extend(timer.take().filter(|t| !why.contains(t)));
        let outcome = core.reconcile_once().await;
        let why: Vec<&str> = why.iter().map(|w| w.as_str()).collect();
        tracing::debug!(why = %why.join(","), "pass for");
        // After a pass that changed something, look again at once (dependencies may now be
        // ready); when work is pending (backoff, dependencies starting), look again soon;
        // otherwise wait for a wake-up or the tick.
        let (pause, then) = match outcome {
            Ok(pass) if pass.attempted > 0 => (Duration::ZERO, Wake::Pending),
            Ok(pass) if pass.pending > 0 => (Duration::from_millis(250), Wake::Pending),
            Ok(_) => (interval, Wake::Tick),
            Err(e) => {
                tracing::warn!(error = %e, "reconcile failed; retrying on the next tick");
                (interval, Wake::Tick)
            }
        };
        if pause.is_zero() {
            timer = Some(then);
            continue;
        }
        tokio::select! {
            _ = core.wakes.bell.notified() => {}
            _ = tokio::time::sleep(pause) => timer = Some(then),
            _ = shutdown.changed() => return,
        }
    }
}

/// Runs due probes, each in its own task so a slow one delays no other.
async fn probe_loop(core: Arc<Core>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = shutdown.changed() => return,
        }
        for target in core.prober.take_due(Instant::now()) {
            let core = core.clone();
            tokio::spawn(async move {
                let result = crate::health::probe(&target, core.runtime.as_ref()).await;
                if let Some((t, tr, err)) = core.prober.record(&target.id, result, Instant::now()) {
                    core.health_changed(&t, &tr, &err);
                }
            });
        }
    }
}

/// Follows the engine's events for this node: records die/oom/restarts and wakes the loop.
async fn watch_engine(core: Arc<Core>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    loop {
        let mut stream = core.runtime.events(&core.node_id);
        loop {
            let next = tokio::select! {
                n = stream.next() => n,
                _ = shutdown.changed() => return,
            };
            match next {
                Some(Ok(ev)) if ev.app.is_empty() => {
                    // A holder of service names (`names`): no instance; a pass rebinds
                    // its listeners after it started again.
                    if matches!(
                        ev.action,
                        crate::runtime::EngineAction::Start | crate::runtime::EngineAction::Die
                    ) {
                        core.wake(Wake::Engine);
                    }
                }
                Some(Ok(ev)) => {
                    core.engine_changes.send_modify(|n| *n += 1);
                    let name = if ev.name.is_empty() {
                        ev.id.chars().take(12).collect()
                    } else {
                        ev.name.clone()
                    };
                    use crate::runtime::EngineAction as A;
                    match ev.action {
                        A::Die => {
                            let code = ev
                                .exit_code
                                .map(|c| format!(" with code {c}"))
                                .unwrap_or_default();
                            core.event(
                                crate::model::EventKind::Die,
                                &ev.app,
                                &ev.service,
                                &format!("{name} exited{code}"),
                            );
                            // The engine sends `die` a moment before its container list shows
                            // the exit; look again shortly so the replacement is not a tick late.
                            core.wake(Wake::Engine);
                            let later = core.clone();
                            tokio::spawn(async move {
                                for ms in [300, 1000] {
                                    tokio::time::sleep(Duration::from_millis(ms)).await;
                                    later.wake(Wake::Engine);
                                }
                            });
                        }
                        A::Oom => {
                            core.metrics.note_engine_event(&ev.id, "oom");
                            core.event(
                                crate::model::EventKind::Oom,
                                &ev.app,
                                &ev.service,
                                &format!("{name} ran out of memory (OOM kill)"),
                            )
                        }
                        A::Start if !core.started_by_us(&ev.id) => {
                            core.metrics.note_engine_event(&ev.id, "restart");
                            core.event(
                                crate::model::EventKind::Restart,
                                &ev.app,
                                &ev.service,
                                &format!("{name} was restarted by the engine"),
                            );
                        }
                        A::Destroy | A::Stop | A::Kill => core.wake(Wake::Engine),
                        A::Start | A::Restart | A::Other => {}
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "engine event stream failed; reconnecting");
                    break;
                }
                None => break,
            }
        }
        core.wake(Wake::Engine);
        // Events may have been missed while the stream was down.
        core.engine_changes.send_modify(|n| *n += 1);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// When this host booted, in ms since the epoch (`btime` in /proc/stat, parsed as the metrics
/// collector parses it; 0 when unknown). Read once: it does not change.
fn boot_ms() -> i64 {
    static BOOT: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *BOOT.get_or_init(|| {
        let stat = crate::metrics::procfile::read_once(Path::new("/proc/stat")).unwrap_or_default();
        crate::metrics::host::parse_proc_stat(&stat).1 as i64 * 1000
    })
}

/// The agent's loops, started together and stopped together.
pub struct Loops {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Core {
    /// Starts the reconcile loop, the engine watcher, the prober, the log followers, the
    /// metrics collector and the volume watcher (the sinks brought in line first).
    pub fn start_loops(self: &Arc<Core>, reconcile_interval: Duration) -> Loops {
        let (stop, rx) = tokio::sync::watch::channel(false);
        let core = self;
        telemetry::sync_sinks(core);
        // The order is the order they stop in: the log loop returns once the lines read so
        // far are stored with their checkpoints.
        let mut tasks = Vec::new();
        if let Some(log) = core.router.start_access_log() {
            tasks.push(tokio::spawn(logship::access_loop(
                core.clone(),
                log,
                rx.clone(),
            )));
        }
        tasks.extend([
            tokio::spawn(reconcile_loop(core.clone(), reconcile_interval, rx.clone())),
            tokio::spawn(watch_engine(core.clone(), rx.clone())),
            tokio::spawn(probe_loop(core.clone(), rx.clone())),
            tokio::spawn(telemetry::metrics_loop(core.clone(), rx.clone())),
            tokio::spawn(logship::log_loop(core.clone(), rx.clone())),
            tokio::spawn(jobs::job_loop(core.clone(), rx.clone())),
            tokio::spawn(promport::promport_loop(core.clone(), rx.clone())),
            tokio::spawn(volumes::volume_loop(core.clone(), rx)),
        ]);
        Loops { stop, tasks }
    }

    /// Replaces the settings a reload may change (`[metrics]`, `[logs]`) and brings the
    /// sinks' senders in line; returns how many sinks run.
    pub fn apply_settings(self: &Arc<Core>, s: Settings) -> usize {
        self.set_settings(s);
        telemetry::sync_sinks(self)
    }

    /// Marks the agent as stopping (log streams end).
    pub fn begin_stop(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// After the loops stopped: delivers the outbox for a while and checkpoints the state
    /// file; returns how many lines still wait in the outbox.
    pub async fn drain(self: &Arc<Core>, within: Duration) -> i64 {
        let drain = self.clone();
        let _ = tokio::task::spawn_blocking(move || {
            drain.metrics.drain_senders(within);
            drain.store.checkpoint_wal();
        })
        .await;
        self.store
            .outbox_stats()
            .map(|s| s.iter().map(|x| x.lines).sum::<i64>())
            .unwrap_or(0)
    }
}

impl Loops {
    /// Asks every loop to stop and waits for them.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Wake, Wakes};

    #[test]
    fn wake_ups_before_a_pass_are_one_set_of_reasons() {
        let w = Wakes::default();
        assert!(w.take().is_empty());
        w.ring(Wake::Health);
        w.ring(Wake::Engine);
        w.ring(Wake::Health);
        assert_eq!(w.take(), vec![Wake::Engine, Wake::Health]);
        assert!(w.take().is_empty(), "taking empties the set");
        for k in Wake::ALL {
            w.ring(k);
        }
        assert_eq!(w.take(), Wake::ALL.to_vec());
    }
}
