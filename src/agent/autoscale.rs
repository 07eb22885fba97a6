//! Autoscaling, the agent's side (the decisions are `plan::autoscale`): after each metrics
//! cycle, every autoscaled service of this host's apps gets a sample (the averages over the
//! instances of its versions that have traffic, from the cycle's figures: no extra engine
//! call), and a decision; a decision to scale sets the service's count as `berth scale`
//! does and records an event with the figures that caused it.
//!
//! Invariants: only the app's owner decides (this host's apps); the count is stored, so a
//! restart keeps it; the samples and the last decision's time live in memory (after a
//! restart a decision waits for fresh periods).

use super::Core;
use crate::metrics::collect::Snapshot;
use crate::model::{EventKind, ServiceSpec};
use crate::plan::autoscale::{self, Decision, Load, Sample};
use crate::router::cold::ColdEvent;
use crate::store::StoredApp;
use crate::wire::{PeriodView, ServiceAutoscale};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

/// How long a start from zero is taken as under way (the longest `cold_start_timeout`).
const STARTING_FOR: std::time::Duration = std::time::Duration::from_secs(300);

/// Decisions kept per service for `berth autoscale`.
const DECISIONS_KEPT: usize = 10;

type Key = (String, String);

/// One service's autoscaling state.
#[derive(Debug, Default, Clone)]
struct Scaler {
    samples: VecDeque<Sample>,
    last_decision_ms: Option<i64>,
    /// The count the last sample saw: a change made elsewhere (`berth scale`, a deploy)
    /// starts the periods again, as a decision does.
    count: u32,
    changed_ms: i64,
    hold: String,
    decisions: VecDeque<(i64, String)>,
}

#[derive(Default)]
pub struct Autoscaler {
    services: Mutex<BTreeMap<Key, Scaler>>,
    /// Services being started from zero for a held request, since when.
    starting: Mutex<BTreeMap<Key, std::time::Instant>>,
    /// This host's figures of the autoscaled services it runs instances of (of any
    /// member's app): what its node record carries to their owners.
    local: Mutex<Vec<Load>>,
    /// The cluster, to ask an app's owner to start a service at zero.
    hub: std::sync::OnceLock<std::sync::Weak<crate::cluster::hub::Hub>>,
}

/// Connects the router's held requests to the agent: a request for a service at zero
/// starts one instance (once, however many wait); the first one served is an event with
/// how long it was held.
pub(super) fn attach(core: &std::sync::Arc<Core>) {
    let me = std::sync::Arc::downgrade(core);
    let rt = tokio::runtime::Handle::current();
    core.router
        .set_cold_start_hook(std::sync::Arc::new(move |ev: ColdEvent| {
            let Some(core) = me.upgrade() else { return };
            match ev {
                ColdEvent::Wanted { app, service } => {
                    let key = (app.clone(), service.clone());
                    {
                        let mut s = core
                            .autoscaler
                            .starting
                            .lock()
                            .unwrap_or_else(|p| p.into_inner());
                        // One start at a time; one that never served is tried again after
                        // the longest hold (a request held then would have timed out).
                        if s.get(&key).is_some_and(|t| t.elapsed() < STARTING_FOR) {
                            return;
                        }
                        s.insert(key, std::time::Instant::now());
                    }
                    rt.spawn(async move { wake(&core, &app, &service).await });
                }
                ColdEvent::Served {
                    app,
                    service,
                    held,
                    after_ready,
                } => {
                    let key = (app.clone(), service.clone());
                    let started = core
                        .autoscaler
                        .starting
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&key);
                    if let Some(at) = started {
                        core.event(
                            EventKind::Autoscale,
                            &app,
                            &service,
                            &format!(
                                "cold start of {app}/{service}: the first request went through after {} ms (held {} ms, {} µs of it in the router after the instance was ready)",
                                at.elapsed().as_millis(),
                                held.as_millis(),
                                after_ready.as_micros()
                            ),
                        );
                    }
                }
            }
        }));
}

/// A held request wants `app/service`: started here when this host owns the app, else its
/// owner is asked (`POST .../wake`).
async fn wake(core: &Core, app: &str, service: &str) {
    if matches!(core.store.get_app(app), Ok(Some(_))) {
        return start_from_zero(core, app, service);
    }
    let hub = core.autoscaler.hub.get().and_then(|h| h.upgrade());
    let owner = hub.as_ref().and_then(|h| h.owner_of(app));
    let (Some(hub), Some(owner)) = (hub, owner) else {
        forget_start(core, app, service);
        return;
    };
    let url = format!("/v1/apps/{app}/services/{service}/wake");
    match hub.forward(&owner.node_id, "POST", &url, b"").await {
        Ok(r) if r.status < 300 => {}
        Ok(r) => {
            forget_start(core, app, service);
            tracing::warn!(app, service, status = r.status, body = %r.body, "the owner did not start a service at zero");
        }
        Err(e) => {
            forget_start(core, app, service);
            tracing::warn!(app, service, error = %e, "cannot ask the owner to start a service at zero");
        }
    }
}

fn forget_start(core: &Core, app: &str, service: &str) {
    core.autoscaler
        .starting
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&(app.to_string(), service.to_string()));
}

/// Sets a service at zero (one that scales to zero) to one instance (a held request here,
/// or a member's asking).
pub(super) fn start_from_zero(core: &Core, app: &str, service: &str) {
    let forget = || forget_start(core, app, service);
    let stored = match core.store.get_app(app) {
        Ok(Some(a)) => a,
        _ => return forget(),
    };
    let at_zero = stored
        .spec
        .services
        .get(service)
        .and_then(|s| s.ext.auto_scaling.as_ref())
        .is_some_and(|a| a.min_instances == 0)
        && stored.replicas(service) == 0
        && !stored.stopped;
    if !at_zero {
        // Starting already (or not ours to start): the held requests wait for the table.
        return;
    }
    match core.store.set_scale(app, &[(service.to_string(), 1)]) {
        Ok(()) => {
            core.event(
                EventKind::Autoscale,
                app,
                service,
                &format!("cold start of {app}/{service}: a request came while at zero; starting one instance"),
            );
            core.wake(super::Wake::Command);
        }
        Err(e) => {
            forget();
            core.event(
                EventKind::Error,
                app,
                service,
                &format!("cold start of {app}/{service} could not be saved: {e}"),
            );
        }
    }
}

/// The CPU cores a service's containers are limited to (`cpus`, or a CFS quota), if any.
fn cpu_limit(s: &ServiceSpec) -> Option<f64> {
    if let Some(n) = s.nano_cpus.filter(|n| *n > 0) {
        return Some(n as f64 / 1e9);
    }
    let quota = s.engine.cpu_quota.filter(|q| *q > 0)?;
    let period = s.engine.cpu_period.filter(|p| *p > 0).unwrap_or(100_000);
    Some(quota as f64 / period as f64)
}

/// The sample of `service` in this cycle: the averages over the running instances of its
/// versions with traffic, and how many (None when none of them has figures yet).
fn sample(app: &StoredApp, service: &str, s: &Snapshot, host_mem: u64) -> Option<(Sample, u32)> {
    let serving: BTreeMap<String, Option<f64>> = app
        .live(service)
        .iter()
        .filter(|l| l.version.weight > 0)
        .map(|l| (l.version.name(), cpu_limit(&l.version.spec)))
        .collect();
    let (mut cpu, mut mem, mut n) = (0.0, 0.0, 0u32);
    for c in &s.containers {
        let t = &c.target;
        if t.app != app.spec.name || t.service != service || t.status != "running" {
            continue;
        }
        let (Some(limit), Some(pct), Some(m)) = (
            serving.get(&t.version),
            c.cpu_percent,
            c.mem_percent(host_mem),
        ) else {
            continue;
        };
        cpu += match limit {
            Some(cores) => pct / cores,
            None => pct,
        };
        mem += m;
        n += 1;
    }
    (n > 0).then(|| {
        (
            Sample {
                at_ms: s.time_ns / 1_000_000,
                cpu: cpu / f64::from(n),
                memory: mem / f64::from(n),
            },
            n,
        )
    })
}

impl Autoscaler {
    /// Connects to the cluster: a request held here for another member's app at zero asks
    /// its owner to start it.
    pub fn attach_cluster(&self, hub: &std::sync::Arc<crate::cluster::hub::Hub>) {
        let _ = self.hub.set(std::sync::Arc::downgrade(hub));
    }

    /// Takes this cycle's samples of every autoscaled service of `apps` (this host's) and
    /// returns the decisions to apply: (app, service, new count, why).
    /// This host's figures of the autoscaled services it runs, for its node record.
    pub fn loads(&self) -> Vec<Load> {
        self.local.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Takes this cycle's figures of every autoscaled service of `apps` (this host's and
    /// the other members' it knows).
    fn measure(&self, apps: &[&StoredApp], s: &Snapshot) -> BTreeMap<Key, (Sample, u32)> {
        let host_mem = s.sample.mem("MemTotal");
        let mut out = BTreeMap::new();
        for app in apps {
            for (name, svc) in &app.spec.services {
                if svc.ext.auto_scaling.is_none() {
                    continue;
                }
                if let Some(x) = sample(app, name, s, host_mem) {
                    out.insert((app.spec.name.clone(), name.clone()), x);
                }
            }
        }
        *self.local.lock().unwrap_or_else(|p| p.into_inner()) = out
            .iter()
            .map(|((app, service), (x, n))| Load {
                app: app.clone(),
                service: service.clone(),
                cpu: x.cpu,
                memory: x.memory,
                instances: *n,
                at_ms: x.at_ms,
            })
            .collect();
        out
    }

    /// Adds this cycle's sample of every autoscaled service of `apps` (this host's: the
    /// figures measured here with the members' `loads`) and returns the decisions to
    /// apply: (app, service, new count, why).
    fn observe(
        &self,
        apps: &[std::sync::Arc<StoredApp>],
        now: i64,
        measured_here: &BTreeMap<Key, (Sample, u32)>,
        loads: &[Load],
        last_request: &dyn Fn(&str, &str) -> Option<i64>,
        members_last: &dyn Fn(&str, &str) -> Option<i64>,
    ) -> Vec<(String, String, u32, String)> {
        let mut all = self.services.lock().unwrap_or_else(|p| p.into_inner());
        let mut keep = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        for app in apps.iter().filter(|a| !a.stopped) {
            for (name, svc) in &app.spec.services {
                let Some(policy) = &svc.ext.auto_scaling else {
                    continue;
                };
                let key = (app.spec.name.clone(), name.clone());
                keep.insert(key.clone());
                let st = all.entry(key.clone()).or_default();
                let count = app.replicas(name);
                if count != st.count {
                    st.count = count;
                    st.changed_ms = now;
                    st.samples.clear();
                }
                // Members' figures older than a period (or 30 s) are not used.
                let fresh = (i64::from(policy.period_seconds) * 1000).max(30_000);
                if let Some(x) = autoscale::combine(
                    &app.spec.name,
                    name,
                    measured_here.get(&key).copied(),
                    loads,
                    now,
                    fresh,
                ) {
                    st.samples.push_back(x);
                }
                let span = i64::from(policy.period_seconds) * i64::from(policy.periods) * 1000;
                while st.samples.front().is_some_and(|x| x.at_ms < now - span) {
                    st.samples.pop_front();
                }
                // Scale to zero: nothing through the router since it last came up (or this
                // agent started).
                // In a cluster, through any alive member's router (their node records say).
                let quiet_since = last_request(&app.spec.name, name)
                    .unwrap_or(0)
                    .max(members_last(&app.spec.name, name).unwrap_or(0))
                    .max(st.changed_ms);
                if autoscale::idle(policy, count, quiet_since, now) {
                    let why = format!(
                        "no request through the router for {} s",
                        (now - quiet_since) / 1000
                    );
                    st.last_decision_ms = Some(now);
                    st.hold = why.clone();
                    st.decisions.push_front((now, why.clone()));
                    st.decisions.truncate(DECISIONS_KEPT);
                    out.push((app.spec.name.clone(), name.clone(), 0, why));
                    continue;
                }
                let since = st.changed_ms.max(st.last_decision_ms.unwrap_or(0));
                let measured = autoscale::periods(
                    st.samples.make_contiguous(),
                    now,
                    i64::from(policy.period_seconds) * 1000,
                    policy.periods,
                    since,
                );
                match autoscale::decide(policy, count, &measured, st.last_decision_ms, now) {
                    Decision::Hold(why) => st.hold = why,
                    Decision::Scale { to, why } => {
                        st.last_decision_ms = Some(now);
                        st.hold = why.clone();
                        st.decisions.push_front((now, why.clone()));
                        st.decisions.truncate(DECISIONS_KEPT);
                        out.push((app.spec.name.clone(), name.clone(), to, why));
                    }
                }
            }
        }
        all.retain(|k, _| keep.contains(k));
        out
    }

    /// The state of `app`'s autoscaled services (one when `service` is given).
    pub fn view(&self, app: &StoredApp, service: Option<&str>) -> Vec<ServiceAutoscale> {
        let all = self.services.lock().unwrap_or_else(|p| p.into_inner());
        app.spec
            .services
            .iter()
            .filter(|(name, _)| service.is_none_or(|s| s == name.as_str()))
            .filter_map(|(name, svc)| {
                let policy = svc.ext.auto_scaling.clone()?;
                let st = all
                    .get(&(app.spec.name.clone(), name.clone()))
                    .cloned()
                    .unwrap_or_default();
                let now = st.samples.back().map(|x| x.at_ms).unwrap_or(0);
                let periods = autoscale::periods(
                    &st.samples.iter().copied().collect::<Vec<_>>(),
                    now,
                    i64::from(policy.period_seconds) * 1000,
                    policy.periods,
                    0,
                )
                .into_iter()
                .map(|p| PeriodView {
                    start_ms: p.start_ms,
                    cpu_percent: p.cpu,
                    memory_percent: p.memory,
                    samples: p.samples,
                })
                .collect();
                Some(ServiceAutoscale {
                    app: app.spec.name.clone(),
                    service: name.clone(),
                    instances: app.replicas(name),
                    state: if st.hold.is_empty() {
                        "no figures yet (one metrics cycle at least)".into()
                    } else {
                        st.hold
                    },
                    decisions: st.decisions.into_iter().collect(),
                    periods,
                    policy,
                })
            })
            .collect()
    }
}

/// After a metrics cycle: samples, decisions, and the decided counts stored. `apps` are
/// this host's, as the cycle read them for its sinks (read once per cycle).
pub(super) fn after_cycle(core: &Core, apps: &[std::sync::Arc<StoredApp>], s: &Snapshot) {
    let fleet = core.fleet();
    let known: Vec<&StoredApp> = apps
        .iter()
        .chain(fleet.iter().flat_map(|f| f.remote.iter().map(|r| &r.app)))
        .map(|a| &**a)
        .collect();
    let here = core.autoscaler.measure(&known, s);
    let decided = core.autoscaler.observe(
        apps,
        s.time_ns / 1_000_000,
        &here,
        fleet
            .as_ref()
            .map(|f| f.loads.as_slice())
            .unwrap_or_default(),
        &|a, svc| core.router.last_request_ms(a, svc),
        &|a, svc| {
            fleet
                .as_ref()
                .and_then(|f| f.requests.get(&format!("{a}/{svc}")).copied())
        },
    );
    if decided.is_empty() {
        return;
    }
    for (app, service, to, why) in decided {
        match core.store.set_scale(&app, &[(service.clone(), to)]) {
            Ok(()) if to == 0 => core.event(
                EventKind::Autoscale,
                &app,
                &service,
                &format!("scaled {app}/{service} to zero: {why}"),
            ),
            Ok(()) => core.event(
                EventKind::Autoscale,
                &app,
                &service,
                &format!("autoscaled {app}/{service} to {to}: {why}"),
            ),
            Err(e) => core.event(
                EventKind::Error,
                &app,
                &service,
                &format!("autoscaling {app}/{service} to {to} could not be saved: {e}"),
            ),
        }
    }
    core.wake(super::Wake::Command);
}
