//! The pure planner: `plan(desired, observed) -> actions`.
//!
//! Role: decide what the executor must do so the engine matches the desired state: create
//! missing instances (dependencies first), start created or stopped ones, replace outdated
//! ones, remove duplicates, extra slots and orphans, manage app networks.
//!
//! Invariants: no I/O, no clock, deterministic (same input, same actions in the same order).
//! Level-triggered: it looks only at the current state, so a plan after a crash or an agent
//! restart is just another plan. Never plans to touch an instance it was not given (the
//! caller only passes this node's containers).

pub mod autoscale;
pub mod jobs;
pub mod names;
pub mod placement;
pub mod release;
pub mod routes;

use crate::model::{AppNetwork, Instance, InstanceState, RestartPolicy};
use std::collections::{BTreeMap, BTreeSet};

/// A version of a service that runs instances.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredVersion {
    pub number: u32,
    /// Instances it runs (slots 1..=replicas), before a rolling update takes slots from it.
    pub replicas: u32,
    /// Hash its instances must carry (spec + redeploy generation).
    pub spec_hash: String,
    /// A rolling update: it takes over the other versions' slots this many at a time, the
    /// next batch only once every slot it took runs ready.
    pub rolling: Option<u32>,
    /// In a cluster, the slots placement gave this node (the others run elsewhere); `None`:
    /// every slot runs here (one host, or an app placement has not spread).
    pub here: Option<BTreeSet<u32>>,
    /// In a cluster, the owner's batch of a rolling update over all members ([`claim`]):
    /// the rolling version runs exactly these slots (of this node's), and the other versions
    /// give up the released ones. `None`: a rolling update batches by what this node sees.
    pub claim: Option<Claim>,
}

/// A rolling update's batch over the whole cluster, as the app's owner computes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Claim {
    /// The slots the rolling version holds: its batches so far.
    pub slots: BTreeSet<u32>,
    /// Those whose new instance runs ready: the other versions stop theirs (start-first
    /// across hosts: an old instance stops only once its successor serves, wherever it runs).
    pub released: BTreeSet<u32>,
}

/// The batch of a rolling update of `replicas` slots, `parallelism` at a time, from what
/// runs on every member: the slots with an instance of the rolling version (`started`),
/// those of them ready (`ready`), and those with an instance of another live version
/// (`others`). It holds what it started and what no other version fills; once every slot it
/// holds runs ready, it takes the next `parallelism` (lowest first).
pub fn claim(
    replicas: u32,
    parallelism: u32,
    started: &BTreeSet<u32>,
    ready: &BTreeSet<u32>,
    others: &BTreeSet<u32>,
) -> Claim {
    let mut slots: BTreeSet<u32> = (1..=replicas)
        .filter(|s| started.contains(s) || !others.contains(s))
        .collect();
    if slots.iter().all(|s| ready.contains(s)) {
        let next: Vec<u32> = (1..=replicas)
            .filter(|s| !slots.contains(s))
            .take(parallelism.max(1) as usize)
            .collect();
        slots.extend(next);
    }
    let released = slots
        .iter()
        .copied()
        .filter(|s| ready.contains(s))
        .collect();
    Claim { slots, released }
}

impl DesiredVersion {
    /// Does slot `slot` of this version run on this node?
    fn runs_here(&self, slot: u32) -> bool {
        self.here.as_ref().is_none_or(|h| h.contains(&slot))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DesiredService {
    pub name: String,
    /// Live versions. Instances of any other version are retired once every slot of these
    /// runs ready (start-first), so traffic always has somewhere to go.
    pub versions: Vec<DesiredVersion>,
    /// Versions that failed (or were superseded while on their way in): their instances
    /// carried no traffic and go at once, without waiting for the live ones.
    pub discard: Vec<u32>,
    pub depends_on: Vec<String>,
    pub restart: RestartPolicy,
    /// Needs the app network (bridge mode).
    pub bridge: bool,
    /// Stopped by `berth stop APP/SERVICE[/SLOT]`: `Some` of an empty set stops every slot,
    /// of a set only those; their containers are kept, stopped.
    pub stopped: Option<BTreeSet<u32>>,
}

impl DesiredService {
    /// Is this slot stopped by the operator (the service whole, or the slot)?
    pub fn slot_stopped(&self, slot: u32) -> bool {
        self.stopped
            .as_ref()
            .is_some_and(|s| s.is_empty() || s.contains(&slot))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DesiredApp {
    pub name: String,
    pub stopped: bool,
    /// When the app was last deployed, started, redeployed or scaled (ms since the epoch): a
    /// one-shot container that finished before it runs again.
    pub resumed_ms: i64,
    pub services: Vec<DesiredService>,
}

#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub instances: Vec<Instance>,
    /// When the host booted (ms since the epoch): a container that finished before it was
    /// stopped by the shutdown, not done.
    pub boot_ms: i64,
    /// This node's app networks.
    pub networks: Vec<AppNetwork>,
    /// Containers the agent saw done (exited 0 on their own) while the host was up, with
    /// when they finished: one of them found exited after a reboot is still done.
    pub seen_done: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveReason {
    /// The app or service is no longer desired.
    Orphan,
    /// A second container for one slot.
    Duplicate,
    /// Slot above the replica count.
    ScaleDown,
    /// Created from an older spec.
    Outdated,
    /// Its health probe kept failing.
    Unhealthy,
    /// Its version no longer has traffic, and the versions that do are ready.
    Retired,
    /// A rolling update gave its slot to the new version.
    Replaced,
    /// Placement put its slot on another node.
    Moved,
    /// Its version failed or was superseded before it carried traffic.
    Discarded,
}

impl RemoveReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RemoveReason::Orphan => "no longer part of a deployed app",
            RemoveReason::Duplicate => "duplicate of its slot",
            RemoveReason::ScaleDown => "scaled down",
            RemoveReason::Outdated => "spec changed",
            RemoveReason::Unhealthy => "unhealthy",
            RemoveReason::Retired => "its version has no traffic any more",
            RemoveReason::Replaced => "replaced by the rolling update",
            RemoveReason::Moved => "its slot is placed on another node",
            RemoveReason::Discarded => "its version failed or was superseded",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    CreateNetwork {
        app: String,
    },
    /// Create and start instance `slot` of a version of a service.
    Create {
        app: String,
        service: String,
        version: u32,
        slot: u32,
    },
    Start {
        id: String,
        name: String,
        app: String,
        service: String,
    },
    Stop {
        id: String,
        name: String,
        app: String,
        service: String,
    },
    Remove {
        id: String,
        name: String,
        app: String,
        service: String,
        reason: RemoveReason,
    },
    /// Remove a network by id: the app is gone, or this is a duplicate of its network (an
    /// interrupted create can leave two of one name, which makes the name unusable).
    RemoveNetwork {
        id: String,
        app: String,
    },
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// Services waiting for their dependencies: plan again once the actions ran.
    pub waiting: Vec<(String, String)>,
}

/// Running and healthy (or without a probe): fit for dependants and traffic.
pub fn is_ready(i: &Instance) -> bool {
    i.state == InstanceState::Running && i.health.ready()
}

/// A container that did its work: it exited 0 and its policy leaves it so (no `restart`,
/// `no`, `on-failure`). It counts as ready: its version is normal and its slot satisfied.
pub fn is_done(i: &Instance, policy: RestartPolicy) -> bool {
    i.state == InstanceState::Exited
        && i.exit_code == Some(0)
        && i.finished_ms.is_some()
        && !matches!(policy, RestartPolicy::Always | RestartPolicy::UnlessStopped)
}

fn is_live(i: &Instance) -> bool {
    matches!(
        i.state,
        InstanceState::Running | InstanceState::Restarting | InstanceState::Paused
    )
}

/// Picks the instance to keep for a slot: up to date first, then live, then the newest.
fn keeper<'a>(candidates: &[&'a Instance], hash: &str) -> &'a Instance {
    let mut sorted = candidates.to_vec();
    sorted.sort_by_key(|i| {
        (
            i.spec_hash != hash,
            !is_live(i),
            i.state == InstanceState::Removing,
            std::cmp::Reverse(i.created),
            i.id.clone(),
        )
    });
    sorted[0]
}

fn remove(i: &Instance, reason: RemoveReason) -> Action {
    Action::Remove {
        id: i.id.clone(),
        name: i.name.clone(),
        app: i.app.clone(),
        service: i.service.clone(),
        reason,
    }
}

fn create(app: &DesiredApp, svc: &DesiredService, v: &DesiredVersion, slot: u32) -> Action {
    Action::Create {
        app: app.name.clone(),
        service: svc.name.clone(),
        version: v.number,
        slot,
    }
}

/// One service's instances: version -> slot -> instances, plus those of versions that are
/// not live (retiring).
struct Grouped<'a> {
    by_version: BTreeMap<u32, BTreeMap<u32, Vec<&'a Instance>>>,
    retiring: Vec<&'a Instance>,
    /// The service's restart policy: a done one-shot counts as ready ([`is_done`]).
    restart: RestartPolicy,
}

impl<'a> Grouped<'a> {
    fn new(svc: &DesiredService, instances: &[&'a Instance]) -> Grouped<'a> {
        let mut g = Grouped {
            by_version: BTreeMap::new(),
            retiring: Vec::new(),
            restart: svc.restart,
        };
        for i in instances {
            // A container without a version (from before versions) retires like any other.
            if let Some(n) = i.version_number()
                && svc.versions.iter().any(|v| v.number == n)
            {
                g.by_version
                    .entry(n)
                    .or_default()
                    .entry(i.slot)
                    .or_default()
                    .push(i);
            } else {
                g.retiring.push(i);
            }
        }
        g
    }

    fn slot(&self, version: u32, slot: u32) -> Option<&Vec<&'a Instance>> {
        self.by_version.get(&version)?.get(&slot)
    }

    /// A slot runs ready, or its one-shot is done (so what depends on it starts, and a
    /// rolling update moves on).
    fn slot_ready(&self, v: &DesiredVersion, slot: u32) -> bool {
        self.slot(v.number, slot).is_some_and(|l| {
            l.iter()
                .any(|i| i.spec_hash == v.spec_hash && (is_ready(i) || is_done(i, self.restart)))
        })
    }

    /// The slots each version should run. A rolling version holds the slots it has an
    /// instance in and those no other version fills; when all of them run ready and
    /// `advance` allows, it takes the next `parallelism` slots from the other versions.
    fn wanted(&self, svc: &DesiredService, advance: bool) -> BTreeMap<u32, BTreeSet<u32>> {
        let mut out: BTreeMap<u32, BTreeSet<u32>> = svc
            .versions
            .iter()
            .map(|v| {
                let slots = (1..=v.replicas).filter(|&s| v.runs_here(s)).collect();
                (v.number, slots)
            })
            .collect();
        let Some((r, parallelism)) = svc.versions.iter().find_map(|v| v.rolling.map(|p| (v, p)))
        else {
            return out;
        };
        // In a cluster the owner batches over every member: follow its claim.
        if let Some(c) = &r.claim {
            for v in &svc.versions {
                if let Some(slots) = out.get_mut(&v.number) {
                    if v.number == r.number {
                        slots.retain(|s| c.slots.contains(s));
                    } else {
                        slots.retain(|s| !c.released.contains(s));
                    }
                }
            }
            return out;
        }
        let filled_by_other = |slot: u32| {
            svc.versions.iter().any(|o| {
                o.number != r.number
                    && self
                        .slot(o.number, slot)
                        .is_some_and(|l| l.iter().any(|i| i.state != InstanceState::Removing))
            })
        };
        // Only this node's slots: a batch here waits for health reported here.
        let mut claimed: BTreeSet<u32> = (1..=r.replicas)
            .filter(|&s| r.runs_here(s))
            .filter(|&s| self.slot(r.number, s).is_some() || !filled_by_other(s))
            .collect();
        if advance
            && claimed
                .iter()
                .all(|&s| self.slot_ready(r, s) || svc.slot_stopped(s))
        {
            let next: Vec<u32> = (1..=r.replicas)
                .filter(|&s| r.runs_here(s))
                .filter(|s| !claimed.contains(s))
                .take(parallelism.max(1) as usize)
                .collect();
            claimed.extend(next);
        }
        for v in &svc.versions {
            if let Some(slots) = out.get_mut(&v.number) {
                if v.number == r.number {
                    *slots = claimed.clone();
                } else {
                    slots.retain(|s| !claimed.contains(s));
                }
            }
        }
        out
    }

    /// Every wanted slot of every live version runs an up-to-date, ready instance.
    fn ready(&self, svc: &DesiredService) -> bool {
        let wanted = self.wanted(svc, false);
        svc.versions.iter().all(|v| {
            wanted.get(&v.number).is_none_or(|slots| {
                slots
                    .iter()
                    .filter(|&&s| !svc.slot_stopped(s))
                    .all(|&s| self.slot_ready(v, s))
            })
        })
    }
}

/// Should an exited instance be brought back? Compose semantics for `restart`; without it,
/// the one-shot rule ([`RestartPolicy::UnlessCompleted`]): an exit 0 after the app was last
/// deployed or started is done when it came after the host booted, or when the agent saw it
/// done before the reboot (an exit 0 that the shutdown caused is not done: it comes back).
fn wants_restart(policy: RestartPolicy, i: &Instance, when: &When) -> bool {
    match policy {
        RestartPolicy::No => false,
        RestartPolicy::OnFailure { .. } => i.exit_code != Some(0),
        RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
        RestartPolicy::UnlessCompleted => {
            let done = i.exit_code == Some(0)
                && i.finished_ms.is_some_and(|f| {
                    f > when.resumed_ms.max(when.boot_ms)
                        || (f > when.resumed_ms && when.seen_done.get(&i.id) == Some(&f))
                });
            !done
        }
    }
}

/// What a version's slots are planned under.
#[derive(Debug, Clone, Copy)]
struct When<'a> {
    /// The services it depends on are ready.
    deps_ready: bool,
    /// When the app was last deployed or started, and when the host booted (ms): what
    /// decides whether a one-shot is done ([`wants_restart`]).
    resumed_ms: i64,
    boot_ms: i64,
    seen_done: &'a BTreeMap<String, i64>,
}

/// Plans one version's slots; returns true when something waits for dependencies.
fn plan_version(
    out: &mut Plan,
    app: &DesiredApp,
    svc: &DesiredService,
    v: &DesiredVersion,
    slots: &BTreeMap<u32, Vec<&Instance>>,
    want: &BTreeSet<u32>,
    when: When,
) -> bool {
    let deps_ready = when.deps_ready;
    let mut blocked = false;
    for (&slot, candidates) in slots {
        let keep = keeper(candidates, &v.spec_hash);
        for other in candidates.iter().filter(|c| c.id != keep.id) {
            if other.state != InstanceState::Removing {
                out.actions.push(remove(other, RemoveReason::Duplicate));
            }
        }
        if !want.contains(&slot) {
            if keep.state != InstanceState::Removing {
                let reason = if slot <= v.replicas && !v.runs_here(slot) {
                    RemoveReason::Moved
                } else if slot <= v.replicas {
                    RemoveReason::Replaced
                } else {
                    RemoveReason::ScaleDown
                };
                out.actions.push(remove(keep, reason));
            }
            continue;
        }
        if app.stopped || svc.slot_stopped(slot) {
            if is_live(keep) {
                out.actions.push(Action::Stop {
                    id: keep.id.clone(),
                    name: keep.name.clone(),
                    app: app.name.clone(),
                    service: svc.name.clone(),
                });
            }
            continue;
        }
        if keep.spec_hash != v.spec_hash {
            if deps_ready {
                out.actions.push(remove(keep, RemoveReason::Outdated));
                out.actions.push(create(app, svc, v, slot));
            } else {
                blocked = true;
            }
            continue;
        }
        if keep.state == InstanceState::Running && keep.health == crate::model::Health::Failed {
            out.actions.push(remove(keep, RemoveReason::Unhealthy));
            out.actions.push(create(app, svc, v, slot));
            continue;
        }
        let start = match keep.state {
            InstanceState::Created => true,
            InstanceState::Exited => wants_restart(svc.restart, keep, &when),
            // The engine brings `dead` containers back only by recreation.
            InstanceState::Dead => {
                out.actions.push(remove(keep, RemoveReason::Outdated));
                out.actions.push(create(app, svc, v, slot));
                false
            }
            _ => false,
        };
        if start {
            if deps_ready {
                out.actions.push(Action::Start {
                    id: keep.id.clone(),
                    name: keep.name.clone(),
                    app: app.name.clone(),
                    service: svc.name.clone(),
                });
            } else {
                blocked = true;
            }
        }
    }
    if !app.stopped {
        for &slot in want {
            if slots.contains_key(&slot) || svc.slot_stopped(slot) {
                continue;
            }
            if deps_ready {
                out.actions.push(create(app, svc, v, slot));
            } else {
                blocked = true;
            }
        }
    }
    blocked
}

pub fn plan(desired: &[DesiredApp], observed: &Observed) -> Plan {
    let mut out = Plan::default();
    // Networks by app, oldest first; all but the oldest are duplicates.
    let mut nets: BTreeMap<&str, Vec<&AppNetwork>> = BTreeMap::new();
    for n in &observed.networks {
        nets.entry(n.app.as_str()).or_default().push(n);
    }
    for list in nets.values_mut() {
        list.sort_by(|a, b| (&a.created, &a.id).cmp(&(&b.created, &b.id)));
        for dup in list.iter().skip(1) {
            out.actions.push(Action::RemoveNetwork {
                id: dup.id.clone(),
                app: dup.app.clone(),
            });
        }
    }
    let desired_by_name: BTreeMap<&str, &DesiredApp> =
        desired.iter().map(|a| (a.name.as_str(), a)).collect();

    // Group this node's instances: app -> service -> instances.
    let mut groups: BTreeMap<&str, BTreeMap<&str, Vec<&Instance>>> = BTreeMap::new();
    for i in &observed.instances {
        let wanted = desired_by_name
            .get(i.app.as_str())
            .is_some_and(|a| a.services.iter().any(|s| s.name == i.service));
        if !wanted {
            if i.state != InstanceState::Removing {
                out.actions.push(remove(i, RemoveReason::Orphan));
            }
            continue;
        }
        groups
            .entry(i.app.as_str())
            .or_default()
            .entry(i.service.as_str())
            .or_default()
            .push(i);
    }

    for app in desired {
        if !app.stopped
            && app.services.iter().any(|s| {
                s.bridge
                    && s.versions
                        .iter()
                        .any(|v| (1..=v.replicas).any(|n| v.runs_here(n)))
            })
            && !nets.contains_key(app.name.as_str())
        {
            out.actions.push(Action::CreateNetwork {
                app: app.name.clone(),
            });
        }
        let grouped: Vec<Grouped> = app
            .services
            .iter()
            .map(|s| {
                let list = groups
                    .get(app.name.as_str())
                    .and_then(|g| g.get(s.name.as_str()))
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                Grouped::new(s, list)
            })
            .collect();
        // A service is ready when every wanted slot runs an up-to-date, healthy instance.
        let ready: BTreeSet<&str> = app
            .services
            .iter()
            .zip(&grouped)
            .filter(|(s, g)| g.ready(s))
            .map(|(s, _)| s.name.as_str())
            .collect();

        for (svc, g) in app.services.iter().zip(&grouped) {
            let deps_ready = svc.depends_on.iter().all(|d| ready.contains(d.as_str()));
            let mut blocked = false;
            let wanted = g.wanted(svc, deps_ready && !app.stopped);
            for v in &svc.versions {
                let none = BTreeSet::new();
                let want = wanted.get(&v.number).unwrap_or(&none);
                let empty = BTreeMap::new();
                let slots = g.by_version.get(&v.number).unwrap_or(&empty);
                let when = When {
                    deps_ready,
                    resumed_ms: app.resumed_ms,
                    boot_ms: observed.boot_ms,
                    seen_done: &observed.seen_done,
                };
                blocked |= plan_version(&mut out, app, svc, v, slots, want, when);
            }
            // Instances of versions without traffic serve until the live ones are ready.
            let live_ready = ready.contains(svc.name.as_str());
            for i in &g.retiring {
                let broken = !is_live(i)
                    || matches!(
                        i.health,
                        crate::model::Health::Unhealthy | crate::model::Health::Failed
                    );
                let discarded = i.version_number().is_some_and(|n| svc.discard.contains(&n));
                if i.state == InstanceState::Removing {
                    continue;
                }
                if discarded {
                    out.actions.push(remove(i, RemoveReason::Discarded));
                } else if app.stopped || live_ready || broken {
                    out.actions.push(remove(i, RemoveReason::Retired));
                }
            }
            if blocked {
                out.waiting.push((app.name.clone(), svc.name.clone()));
            }
        }
    }

    // Networks of apps that are gone (their containers are removed above, first).
    for (app, list) in &nets {
        if !desired_by_name.contains_key(app)
            && let Some(first) = list.first()
        {
            out.actions.push(Action::RemoveNetwork {
                id: first.id.clone(),
                app: first.app.clone(),
            });
        }
    }
    out
}

/// `redis` -> `redis:latest`; a registry port is not a tag; digests stay as they are.
/// The instances to rename to their compose name (`{app}_{service}_{slot}`): those of a
/// service's only live version (`only_live(app, service)`: its number, when it has exactly
/// one) still carrying a versioned name (made while another version ran beside it, or while
/// the instance they replace held the name), when no container here has that name; one per
/// name. Job containers keep theirs.
pub fn compose_renames(
    only_live: impl Fn(&str, &str) -> Option<u32>,
    instances: &[Instance],
) -> Vec<(String, String)> {
    let taken: BTreeSet<&str> = instances.iter().map(|i| i.name.as_str()).collect();
    let mut out = Vec::new();
    for i in instances.iter().filter(|i| i.job.is_none()) {
        let Some(only) = only_live(&i.app, &i.service) else {
            continue;
        };
        if i.version_number() != Some(only) {
            continue;
        }
        let want = crate::runtime::compose_name(&i.app, &i.service, i.slot);
        if i.name != want && !taken.contains(want.as_str()) {
            out.push((i.id.clone(), want));
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    out.dedup_by(|a, b| a.1 == b.1);
    out
}

pub fn normalize_image_ref(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') || last.contains(':') {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

/// What `berth image prune` removes: every reference of an image no container uses, except
/// the tags a deployed app (or one of its kept versions) names. An app scaled to zero or
/// stopped keeps its image: on an offline host it could not be pulled back.
pub fn images_to_prune(
    images: &[crate::runtime::ImageInfo],
    in_use: &BTreeSet<String>,
    referenced: &BTreeSet<String>,
) -> Vec<String> {
    let mut out = Vec::new();
    for img in images.iter().filter(|i| !in_use.contains(&i.id)) {
        let tags: Vec<&String> = img
            .tags
            .iter()
            .filter(|t| t.as_str() != "<none>:<none>")
            .collect();
        if tags.is_empty() {
            out.push(img.id.clone());
            continue;
        }
        out.extend(
            tags.into_iter()
                .filter(|t| !referenced.contains(*t))
                .cloned(),
        );
    }
    out
}

#[cfg(test)]
pub(crate) mod tests;
