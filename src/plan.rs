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

use crate::model::{AppNetwork, Instance, InstanceState, RestartPolicy};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, PartialEq)]
pub struct DesiredService {
    pub name: String,
    pub replicas: u32,
    /// Hash the instances must carry (spec + redeploy generation).
    pub spec_hash: String,
    pub depends_on: Vec<String>,
    pub restart: RestartPolicy,
    /// Needs the app network (bridge mode).
    pub bridge: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DesiredApp {
    pub name: String,
    pub stopped: bool,
    pub services: Vec<DesiredService>,
}

#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub instances: Vec<Instance>,
    /// This node's app networks.
    pub networks: Vec<AppNetwork>,
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
}

impl RemoveReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RemoveReason::Orphan => "no longer part of a deployed app",
            RemoveReason::Duplicate => "duplicate of its slot",
            RemoveReason::ScaleDown => "scaled down",
            RemoveReason::Outdated => "spec changed",
            RemoveReason::Unhealthy => "unhealthy",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    CreateNetwork {
        app: String,
    },
    /// Create and start instance `slot` of a service.
    Create {
        app: String,
        service: String,
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

fn create(app: &DesiredApp, svc: &DesiredService, slot: u32) -> Action {
    Action::Create {
        app: app.name.clone(),
        service: svc.name.clone(),
        slot,
    }
}

/// Should an exited instance be brought back? Compose semantics for `restart`.
fn wants_restart(policy: RestartPolicy, exit_code: Option<i64>) -> bool {
    match policy {
        RestartPolicy::No => false,
        RestartPolicy::OnFailure { .. } => exit_code != Some(0),
        RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
    }
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

    // Group this node's instances: app -> service -> slot -> instances.
    let mut groups: BTreeMap<&str, BTreeMap<&str, BTreeMap<u32, Vec<&Instance>>>> = BTreeMap::new();
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
            .entry(i.slot)
            .or_default()
            .push(i);
    }

    for app in desired {
        let empty = BTreeMap::new();
        let app_groups = groups.get(app.name.as_str()).unwrap_or(&empty);
        if !app.stopped
            && app.services.iter().any(|s| s.bridge && s.replicas > 0)
            && !nets.contains_key(app.name.as_str())
        {
            out.actions.push(Action::CreateNetwork {
                app: app.name.clone(),
            });
        }
        // A service is ready when every desired slot runs an up-to-date, healthy instance.
        let ready: BTreeSet<&str> = app
            .services
            .iter()
            .filter(|s| {
                let slots = app_groups.get(s.name.as_str());
                (1..=s.replicas).all(|slot| {
                    slots.and_then(|m| m.get(&slot)).is_some_and(|v| {
                        v.iter().any(|i| i.spec_hash == s.spec_hash && is_ready(i))
                    })
                })
            })
            .map(|s| s.name.as_str())
            .collect();

        for svc in &app.services {
            let empty_slots = BTreeMap::new();
            let slots = app_groups.get(svc.name.as_str()).unwrap_or(&empty_slots);
            let deps_ready = svc.depends_on.iter().all(|d| ready.contains(d.as_str()));
            let mut blocked = false;

            for (&slot, candidates) in slots {
                let keep = keeper(candidates, &svc.spec_hash);
                for other in candidates.iter().filter(|c| c.id != keep.id) {
                    if other.state != InstanceState::Removing {
                        out.actions.push(remove(other, RemoveReason::Duplicate));
                    }
                }
                if slot > svc.replicas {
                    out.actions.push(remove(keep, RemoveReason::ScaleDown));
                    continue;
                }
                if app.stopped {
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
                if keep.spec_hash != svc.spec_hash {
                    if deps_ready {
                        out.actions.push(remove(keep, RemoveReason::Outdated));
                        out.actions.push(create(app, svc, slot));
                    } else {
                        blocked = true;
                    }
                    continue;
                }
                if keep.state == InstanceState::Running
                    && keep.health == crate::model::Health::Failed
                {
                    out.actions.push(remove(keep, RemoveReason::Unhealthy));
                    out.actions.push(create(app, svc, slot));
                    continue;
                }
                let start = match keep.state {
                    InstanceState::Created => true,
                    InstanceState::Exited => wants_restart(svc.restart, keep.exit_code),
                    // The engine brings `dead` containers back only by recreation.
                    InstanceState::Dead => {
                        out.actions.push(remove(keep, RemoveReason::Outdated));
                        out.actions.push(create(app, svc, slot));
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
                for slot in 1..=svc.replicas {
                    if slots.contains_key(&slot) {
                        continue;
                    }
                    if deps_ready {
                        out.actions.push(create(app, svc, slot));
                    } else {
                        blocked = true;
                    }
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
mod tests;
