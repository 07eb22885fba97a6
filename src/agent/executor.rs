//! Turns planned actions into engine calls: the only place that does so.
//!
//! Actions run in phases (stop/remove, networks, create/start, network removal) so a slot's
//! old container is gone before its new one takes the name; within a phase they run in
//! parallel, at most [`PARALLEL`] at once. Removals of instances whose version lost its
//! traffic or failed run in the background instead (their names and slots are no one
//! else's), so the pass, and the new version's readiness, never waits on their stop grace. A failing container is retried with exponential
//! backoff (up to 60 s) instead of on every pass.

use super::Core;
use crate::model::StopGrace;
use crate::plan::{Action, Plan, RemoveReason};
use crate::runtime::{CreateRequest, RuntimeError, network_name};
use crate::store::StoredApp;
use futures_util::StreamExt;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

const PARALLEL: usize = 8;

fn phase(a: &Action, desired: &BTreeMap<String, std::sync::Arc<StoredApp>>) -> u8 {
    match a {
        Action::Stop { .. } | Action::Remove { .. } => 0,
        // A duplicate network goes before anything is created on the name.
        Action::RemoveNetwork { app, .. } if desired.contains_key(app) => 0,
        Action::CreateNetwork { .. } => 1,
        Action::Create { .. } | Action::Start { .. } => 2,
        Action::RemoveNetwork { .. } => 3,
    }
}

/// Removals that free nothing a create of this pass needs (another version's container
/// name, no slot of a live version): they run in the background, so a stop that takes its
/// whole grace period never holds up the new version.
fn background(a: &Action) -> Option<(&str, &str)> {
    match a {
        Action::Remove {
            id,
            app,
            reason: RemoveReason::Retired | RemoveReason::Discarded,
            ..
        } => Some((id, app)),
        _ => None,
    }
}

impl Core {
    /// Runs the plan; returns how many actions were attempted (not skipped for backoff) and
    /// how many run in the background (started now or earlier, still running).
    pub(super) async fn execute(
        &self,
        plan: &Plan,
        apps: &BTreeMap<String, std::sync::Arc<StoredApp>>,
    ) -> (usize, usize) {
        let attempted = AtomicUsize::new(0);
        let mut in_background = 0;
        let me = self.me.get().and_then(std::sync::Weak::upgrade);
        if let Some(core) = &me {
            for a in &plan.actions {
                let Some((id, app)) = background(a) else {
                    continue;
                };
                in_background += 1;
                let fresh = self
                    .removing
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id.to_string());
                if !fresh {
                    continue;
                }
                attempted.fetch_add(1, Ordering::Relaxed);
                // The task needs the app only for the stop grace period.
                let one: BTreeMap<String, std::sync::Arc<StoredApp>> = apps
                    .get(app)
                    .map(|s| (app.to_string(), s.clone()))
                    .into_iter()
                    .collect();
                let (core, a, id) = (core.clone(), a.clone(), id.to_string());
                tokio::spawn(async move {
                    core.run_action(&a, &one).await;
                    core.removing
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&id);
                    core.wake(super::Wake::Removed);
                });
            }
        }
        for p in 0..=3u8 {
            let actions: Vec<&Action> = plan
                .actions
                .iter()
                .filter(|a| phase(a, apps) == p)
                .filter(|a| me.is_none() || background(a).is_none())
                .collect();
            futures_util::stream::iter(actions)
                .for_each_concurrent(PARALLEL, |a| async {
                    if self.run_action(a, apps).await {
                        attempted.fetch_add(1, Ordering::Relaxed);
                    }
                })
                .await;
        }
        (attempted.into_inner(), in_background)
    }

    /// Returns false when the action was skipped because its container is in backoff.
    async fn run_action(
        &self,
        action: &Action,
        apps: &BTreeMap<String, std::sync::Arc<StoredApp>>,
    ) -> bool {
        match action {
            Action::CreateNetwork { app } => self.create_network(app).await,
            Action::RemoveNetwork { id, app } => {
                self.remove_network(id, app, apps.contains_key(app)).await
            }
            Action::Stop {
                id,
                name,
                app,
                service,
            } => {
                let Some(stopped) = self.drain_and_stop(id, apps, app, service).await else {
                    return false;
                };
                match stopped {
                    Ok(()) => self.event(
                        crate::model::EventKind::Stop,
                        app,
                        service,
                        &format!("stopped {name}"),
                    ),
                    Err(e) => self.fail(app, service, id, &format!("cannot stop {name}: {e}")),
                }
            }
            Action::Remove {
                id,
                name,
                app,
                service,
                reason,
            } => {
                return self
                    .remove_instance(id, name, app, service, *reason, apps)
                    .await;
            }
            Action::Start {
                id,
                name,
                app,
                service,
            } => {
                if self.backoff.active(name) {
                    return false;
                }
                self.start_instance(id, (name, name), app, service).await;
            }
            Action::Create {
                app,
                service,
                version,
                slot,
            } => {
                return self
                    .create_instance(app, service, *version, *slot, apps)
                    .await;
            }
        }
        true
    }

    async fn create_network(&self, app: &str) {
        if let Err(e) = self.runtime.create_network(&self.node_id, app).await {
            self.event(
                crate::model::EventKind::Error,
                app,
                "",
                &format!(
                    "cannot create network {}: {e}{}",
                    network_name(&self.node_id, app),
                    network_hint(&e.to_string())
                ),
            );
        }
    }

    /// `duplicate`: the app still exists, so this is a second network of its name.
    async fn remove_network(&self, id: &str, app: &str, duplicate: bool) {
        match self.runtime.remove_network(id).await {
            Ok(()) if duplicate => self.event(
                crate::model::EventKind::Network,
                app,
                "",
                &format!(
                    "removed a duplicate of network {}",
                    network_name(&self.node_id, app)
                ),
            ),
            Ok(()) => {}
            Err(e) => tracing::warn!(app, error = %e, "cannot remove network yet"),
        }
    }

    /// Stopped first so the process gets its grace period; the removal says if it failed.
    async fn remove_instance(
        &self,
        id: &str,
        name: &str,
        app: &str,
        service: &str,
        reason: crate::plan::RemoveReason,
        apps: &BTreeMap<String, std::sync::Arc<StoredApp>>,
    ) -> bool {
        if self.drain_and_stop(id, apps, app, service).await.is_none() {
            return false;
        }
        match self.runtime.remove(id, false).await {
            Ok(()) => {
                if reason == crate::plan::RemoveReason::Unhealthy {
                    // Back the slot off until a successor is healthy (a service that never
                    // turns healthy is retried at 2, 4, 8 ... 60 s, not in a tight loop).
                    self.backoff.fail(
                        name,
                        app,
                        service,
                        "replaced after failing its health probe",
                        true,
                    );
                }
                self.event(
                    crate::model::EventKind::Remove,
                    app,
                    service,
                    &format!("removed {name} ({})", reason.as_str()),
                )
            }
            Err(e) => self.fail(app, service, id, &format!("cannot remove {name}: {e}")),
        }
        true
    }

    /// Starts a container berth made, noting the start as its own (not the engine's) and
    /// clearing or extending the slot's backoff.
    /// Starts a container: `key` is its slot's backoff key (`runtime::container_name`),
    /// `name` its name now.
    async fn start_instance(&self, id: &str, (key, name): (&str, &str), app: &str, service: &str) {
        self.note_our_start(id);
        match self.runtime.start(id).await {
            Ok(()) => {
                self.backoff.started(key);
                self.event(
                    crate::model::EventKind::Start,
                    app,
                    service,
                    &format!("started {name}"),
                );
            }
            Err(e) => self.fail(app, service, key, &format!("cannot start {name}: {e}")),
        }
    }

    /// Creates and starts one instance: its host-mounted volumes mounted first (a mount that
    /// fails fails this instance with the helper's own words).
    async fn create_instance(
        &self,
        app: &str,
        service: &str,
        version: u32,
        slot: u32,
        apps: &BTreeMap<String, std::sync::Arc<StoredApp>>,
    ) -> bool {
        let name = crate::runtime::container_name(app, service, version, slot);
        if self.backoff.active(&name) {
            return false;
        }
        let Some(stored) = apps.get(app) else {
            return false;
        };
        match self
            .make_container(stored, service, version, slot, None)
            .await
        {
            Ok(Some((id, made))) => self.start_instance(&id, (&name, &made), app, service).await,
            Ok(None) => return false,
            Err(e) => self.fail(app, service, &name, &e),
        }
        true
    }

    /// Creates (does not start) `slot` of `version` of `service`, or of a job's run and
    /// attempt: its host-mounted volumes mounted first. `None`: the version is not live.
    /// The error says why, in the user's terms.
    pub(super) async fn make_container(
        &self,
        stored: &StoredApp,
        service: &str,
        version: u32,
        slot: u32,
        job: Option<crate::model::JobRef>,
    ) -> Result<Option<(String, String)>, String> {
        let app = stored.spec.name.as_str();
        let volumes = self.volume_sources(stored);
        let Some(mut req) = create_request(&self.node_id, stored, service, version, slot, volumes)
        else {
            return Ok(None);
        };
        req.job = job;
        let name = req.container_name();
        for (key, src) in &req.volumes {
            let crate::model::VolumeSource::Host(_) = src else {
                continue;
            };
            let Some(v) = stored.spec.volumes.get(key) else {
                continue;
            };
            if let Err(e) = self
                .ensure_mounted(&v.object_name(&stored.spec.name, key))
                .await
            {
                return Err(format!("cannot create {name}: {e}"));
            }
        }
        self.image_here(app, service, stored)
            .await
            .map_err(|e| format!("cannot create {name}: {e}"))?;
        let mut made = self.runtime.create(&req).await;
        if matches!(made, Err(RuntimeError::NameTaken(_))) && req.compose && req.job.is_none() {
            // The compose name is held (the instance it replaces is still there, or a
            // container berth does not manage): the versioned name, renamed later.
            req.compose = false;
            made = self.runtime.create(&req).await;
        }
        let name = req.container_name();
        let id = match made {
            Ok(id) => id,
            Err(RuntimeError::NameTaken(_)) => {
                return Err(format!(
                    "cannot create {name}: a container berth does not manage has that name; rename or remove it (docker rm {name})"
                ));
            }
            Err(e) => return Err(format!("cannot create {name}: {e}")),
        };
        self.event(
            crate::model::EventKind::Create,
            app,
            service,
            &format!("created {name} from {}", req.spec.image),
        );
        Ok(Some((id, name)))
    }

    /// The service's image on this host before a container is made of it: a deploy pulls
    /// on the host it is asked on, so a member running another member's slots pulls what
    /// it lacks here (with this host's registry login, else the owner's, handed over in the
    /// app's record), as the service's `pull_policy` allows.
    async fn image_here(&self, app: &str, service: &str, stored: &StoredApp) -> Result<(), String> {
        let Some(s) = stored.spec.services.get(service) else {
            return Ok(());
        };
        let here = self
            .runtime
            .image_id(&s.image)
            .await
            .map_err(|e| e.to_string())?;
        let owners = self.owners_image_id(app, &s.image);
        if let Some(id) = &here {
            // Present: it serves unless the owner runs another build of that name (a
            // redeploy re-pulled `:latest` there), pulled once to match.
            let stale = owners
                .as_ref()
                .is_some_and(|o| o != id && s.pull_policy != crate::model::PullPolicy::Never);
            if !stale
                || !owners
                    .as_ref()
                    .is_some_and(|o| self.first_pull_for(&s.image, o))
            {
                return Ok(());
            }
            let auth = self.pull_auth(app, &s.image).map_err(|e| e.to_string())?;
            let why = match self
                .runtime
                .pull(&s.image, s.platform.as_deref(), auth.as_ref())
                .await
            {
                Ok(()) => match self.runtime.image_id(&s.image).await.ok().flatten() {
                    Some(now) if Some(&now) == owners.as_ref() => {
                        format!(
                            "pulled {} again: the owner runs another build of it",
                            s.image
                        )
                    }
                    _ => format!(
                        "pulled {} again, but the registry now has another build than the owner's: running what it gave",
                        s.image
                    ),
                },
                Err(e) => format!(
                    "the owner runs another build of {} and pulling it failed ({e}): running this host's",
                    s.image
                ),
            };
            self.event(crate::model::EventKind::Image, app, service, &why);
            return Ok(());
        }
        if s.pull_policy == crate::model::PullPolicy::Never {
            return Err(format!(
                "image {} is not on this host and its service says `pull_policy: never`: load it here with `berth image load`",
                s.image
            ));
        }
        let auth = self.pull_auth(app, &s.image).map_err(|e| e.to_string())?;
        self.runtime
            .pull(&s.image, s.platform.as_deref(), auth.as_ref())
            .await
            .map_err(|e| {
                format!(
                    "image {} is not on this host and its pull failed: {e}",
                    s.image
                )
            })?;
        self.event(
            crate::model::EventKind::Image,
            app,
            service,
            &format!("pulled {} (it was not on this host)", s.image),
        );
        Ok(())
    }

    /// Takes the instance out of traffic (its in-flight requests finish, up to the grace
    /// period), then stops it with that grace. `None` while it is in backoff (keyed by id:
    /// the name may already be reused).
    async fn drain_and_stop(
        &self,
        id: &str,
        apps: &BTreeMap<String, std::sync::Arc<StoredApp>>,
        app: &str,
        service: &str,
    ) -> Option<Result<(), RuntimeError>> {
        if self.backoff.active(id) {
            return None;
        }
        let grace = grace_of(apps, app, service);
        self.router.drain(id, grace).await;
        Some(self.runtime.stop(id, grace).await)
    }

    /// Restarts a running container outside a plan (a volume repair: the container must see
    /// a fresh mount), under the same backoff and error reporting as the plan's actions.
    /// False when it was skipped (in backoff) or failed.
    pub(super) async fn restart_container(&self, id: &str, name: &str, why: &str) -> bool {
        self.restart_with_grace(id, name, why, 10).await
    }

    /// [`Self::restart_container`] with the service's stop grace (`berth restart`); requests
    /// the stopping container refuses are retried on the service's other instances.
    pub(super) async fn restart_with_grace(
        &self,
        id: &str,
        name: &str,
        why: &str,
        grace: u32,
    ) -> bool {
        if self.backoff.active(name) {
            return false;
        }
        let restarted = async {
            self.runtime.stop(id, grace).await?;
            self.note_our_start(id);
            self.runtime.start(id).await
        }
        .await;
        match restarted {
            Ok(()) => {
                self.backoff.started(name);
                self.event(
                    crate::model::EventKind::Restart,
                    "",
                    "",
                    &format!("restarted {name} {why}"),
                );
                true
            }
            Err(e) => {
                self.fail("", "", name, &format!("cannot restart {name} {why}: {e}"));
                false
            }
        }
    }

    fn fail(&self, app: &str, service: &str, name: &str, message: &str) {
        let n = self.backoff.fail(name, app, service, message, false);
        // Report the first failures and then every tenth, so a crash loop does not flood.
        if n <= 3 || n.is_multiple_of(10) {
            let suffix = if n > 1 {
                format!(" (attempt {n})")
            } else {
                String::new()
            };
            self.event(
                crate::model::EventKind::Error,
                app,
                service,
                &format!("{message}{suffix}"),
            );
        }
    }
}

/// What to do about an engine's refusal to make a network, when berth knows.
fn network_hint(error: &str) -> &'static str {
    if error.contains("non-overlapping IPv4 address pool") {
        // Docker's default pools hold about 30 bridge networks, and each app has one.
        "; the engine has no address range left for another network (its default pools hold about 30): give dockerd more with \"default-address-pools\" in /etc/docker/daemon.json, e.g. [{\"base\": \"10.200.0.0/16\", \"size\": 24}], and restart it"
    } else {
        ""
    }
}

/// The stop grace of a service (10 s when the app or service is gone).
fn grace_of(apps: &BTreeMap<String, std::sync::Arc<StoredApp>>, app: &str, service: &str) -> u32 {
    apps.get(app)
        .and_then(|a| a.spec.services.get(service))
        .map(|s| s.grace_seconds())
        .unwrap_or(10)
}

/// What the engine needs to create `slot` of a live version of `service`.
pub fn create_request(
    node: &str,
    app: &StoredApp,
    service: &str,
    version: u32,
    slot: u32,
    volumes: BTreeMap<String, crate::model::VolumeSource>,
) -> Option<CreateRequest> {
    let live = app.live_version(service, version)?;
    // DNS names: the service, plus every alias other services link to it by.
    let aliases = crate::plan::names::dns_names(&app.spec, service);
    Some(CreateRequest {
        node: node.to_string(),
        app: app.spec.name.clone(),
        service: service.to_string(),
        slot,
        spec_hash: live.hash.clone(),
        version,
        network: Some(network_name(node, &app.spec.name)),
        aliases,
        spec: (*live.version.spec).clone(),
        volumes,
        owner: app.owner.clone(),
        job: None,
        compose: app.live(service).len() == 1,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_engine_out_of_address_pools_is_told_how_to_get_more() {
        let e = "create network berth_cb35_054cba: could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network";
        assert!(super::network_hint(e).contains("default-address-pools"));
        assert_eq!(super::network_hint("network exists"), "");
    }
}
