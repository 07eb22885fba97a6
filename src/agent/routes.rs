//! Routes shared between services (`berth routes APP`, `berth traffic APP --route R
//! S=W...`) and the seed's blue/green between services (`berth release confirm|abort APP`):
//! a `--blue-green` deploy that drops services keeps them beside the services it adds, which
//! start at 0% of every route they share with them (`plan::routes`); confirm drops the old
//! services, abort drops the new ones and restores the template the release replaced.
//! Services present in both templates with a blue/green version of their own are confirmed
//! or aborted with it.

use super::{CoreError, Ops};
use crate::model::{EventKind, Release, ServiceRelease, VersionState};
use crate::plan::routes;
use crate::store::{ReleaseStart, StoredApp};
use crate::wire::{RouteShare, RouteTrafficRequest, RouteView};

impl Ops {
    /// The routes the app's services share, each service's part and ready instances.
    pub fn routes(&self, app: &str) -> Result<Vec<RouteView>, CoreError> {
        let stored = self
            .core
            .store
            .get_app(app)?
            .ok_or_else(|| super::ops::unknown_app(app))?;
        Ok(route_views(&stored, |svc| {
            self.core
                .split_of(app, svc)
                .map(|s| s.iter().map(|x| x.ready).sum())
                .unwrap_or(0)
        }))
    }

    /// `berth traffic APP --route R SERVICE=PERCENT...`: the split of one shared route.
    pub async fn set_route_traffic(
        &self,
        app: &str,
        req: RouteTrafficRequest,
    ) -> Result<Vec<RouteView>, CoreError> {
        let stored = self
            .core
            .store
            .get_app(app)?
            .ok_or_else(|| super::ops::unknown_app(app))?;
        let shared = routes::shared(&stored.spec);
        let (key, services) = routes::find(&shared, &req.route, &self.core.router_domain)
            .map_err(CoreError::BadRequest)?;
        let weights =
            routes::parse_weights(services, &req.weights).map_err(CoreError::BadRequest)?;
        self.core.store.set_route_weights(app, key, &weights)?;
        let desc: Vec<String> = weights.iter().map(|(s, w)| format!("{s}={w}%")).collect();
        self.core.event(
            EventKind::Traffic,
            app,
            "",
            &format!("route {key} traffic set: {}", desc.join(" ")),
        );
        self.core.wake(super::Wake::Command);
        self.core
            .routed_after_now(std::time::Duration::from_secs(3))
            .await;
        self.routes(app)
    }

    /// `berth release confirm|abort APP`: ends the app's blue/green release between
    /// services, and the blue/green versions of its other services.
    pub async fn release_app(&self, app: &str, confirm: bool) -> Result<String, CoreError> {
        let _serial = self.core.deploys.lock().await;
        let stored = self
            .core
            .store
            .get_app(app)?
            .ok_or_else(|| super::ops::unknown_app(app))?;
        let start = self.core.store.release_start(app)?;
        let awaiting: Vec<String> = stored
            .spec
            .services
            .keys()
            .filter(|s| {
                stored.live(s).iter().any(|l| {
                    l.version.release == Release::BlueGreen
                        && matches!(
                            l.version.state,
                            VersionState::Awaiting | VersionState::Creating
                        )
                })
            })
            .filter(|s| {
                start
                    .as_ref()
                    .is_none_or(|st| !st.release.old.contains(s) && !st.release.new.contains(s))
            })
            .cloned()
            .collect();
        if start.is_none() && awaiting.is_empty() {
            return Err(CoreError::Conflict(format!(
                "no blue/green release is waiting in {app}: deploy with --blue-green first"
            )));
        }
        // Everything is checked before anything changes: a release is finished whole or
        // not at all.
        let step = match confirm {
            true => crate::plan::release::Step::Confirm,
            false => crate::plan::release::Step::Abort,
        };
        let now = crate::clock::now_ms();
        for service in &awaiting {
            let mut vs = self.core.store.versions(app, service)?;
            crate::plan::release::apply(&mut vs, &step, now).map_err(|e| {
                CoreError::Conflict(format!(
                    "{service}: {}; nothing was changed",
                    CoreError::from(e)
                ))
            })?;
        }
        if confirm && let Some(st) = &start {
            for service in &st.release.new {
                let vs = self.core.store.versions(app, service)?;
                if let Some(v) = vs
                    .iter()
                    .max_by_key(|v| v.number)
                    .filter(|v| matches!(v.state, VersionState::Creating | VersionState::Failed))
                {
                    return Err(CoreError::Conflict(format!(
                        "{} is not ready to take the traffic (state {}{}): confirm once `berth ps {app}` shows it running, or abort with `berth release abort {app}`; nothing was changed",
                        v.name(),
                        v.state.as_str(),
                        match v.reason.is_empty() {
                            true => String::new(),
                            false => format!(": {}", v.reason),
                        }
                    )));
                }
            }
        }
        let mut said = Vec::new();
        if let Some(start) = start {
            said.push(self.finish_between(&stored, start, confirm)?);
        }
        for service in awaiting {
            self.release(app, &service, confirm).await?;
            said.push(format!(
                "{service}: {}",
                if confirm {
                    "the blue/green version takes all the traffic"
                } else {
                    "the blue/green version is stopped"
                }
            ));
        }
        self.core.wake(super::Wake::Command);
        Ok(format!(
            "{app}: release {}: {}",
            if confirm { "confirmed" } else { "aborted" },
            said.join("; ")
        ))
    }

    /// Confirm: the old services go, the new ones share their routes (equal shares). Abort:
    /// the new services go and the app's spec and template are the ones the release
    /// replaced.
    fn finish_between(
        &self,
        stored: &StoredApp,
        start: ReleaseStart,
        confirm: bool,
    ) -> Result<String, CoreError> {
        let ReleaseStart {
            release,
            previous_spec,
            previous_template,
        } = start;
        let (spec, template, dropped) = if confirm {
            let mut spec = stored.spec.clone();
            spec.services.retain(|s, _| !release.old.contains(s));
            (spec, stored.template.clone(), release.old.clone())
        } else {
            (previous_spec, previous_template, release.new.clone())
        };
        let weights = if confirm {
            Default::default()
        } else {
            routes::kept(&stored.route_weights, &spec)
        };
        self.core
            .store
            .finish_service_release(&spec, &template, &dropped, &weights)?;
        let msg = if confirm {
            format!(
                "release between services confirmed: {} take the traffic, {} removed",
                release.new.join(", "),
                release.old.join(", ")
            )
        } else {
            format!(
                "release between services aborted: {} removed, the traffic stays on {}",
                release.new.join(", "),
                release.old.join(", ")
            )
        };
        self.core
            .event(EventKind::Release, &stored.spec.name, "", &msg);
        Ok(msg)
    }
}

/// What `berth release` and `berth apps` say about a release between services.
pub fn describe(app: &str, r: &ServiceRelease) -> String {
    format!(
        "blue-green: awaiting confirmation ({} -> {}: `berth traffic {app} --route ROUTE ...`, then `berth release confirm {app}` or `abort`)",
        r.old.join(","),
        r.new.join(",")
    )
}

/// The shared routes of an app as `berth routes` shows them; `ready` counts a service's
/// ready instances.
pub fn route_views(stored: &StoredApp, ready: impl Fn(&str) -> u32) -> Vec<RouteView> {
    let release = stored.service_release.as_ref();
    routes::shared(&stored.spec)
        .into_iter()
        .map(|(route, services)| {
            let weights = routes::service_weights(&services, stored.route_weights.get(&route));
            RouteView {
                services: services
                    .iter()
                    .zip(weights)
                    .map(|(s, weight)| RouteShare {
                        ready: ready(s),
                        role: match release {
                            Some(r) if r.old.contains(s) => "old".into(),
                            Some(r) if r.new.contains(s) => "new".into(),
                            _ => String::new(),
                        },
                        service: s.clone(),
                        weight,
                    })
                    .collect(),
                route,
            }
        })
        .collect()
}
