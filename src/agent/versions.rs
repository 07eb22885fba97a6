//! Moves each service's current version from `creating` to `normal` once every desired
//! instance runs healthy, or to `failed` (with the last probe or start error as the reason)
//! when that does not happen within its deadline.

use super::{Core, desired_replicas};
use crate::model::{Instance, VersionState, version_name};
use crate::store::StoredApp;

impl Core {
    pub(super) fn update_versions(&self, apps: &[StoredApp], instances: &[Instance]) {
        let now = crate::store::now_ms();
        for app in apps.iter().filter(|a| !a.stopped) {
            for (service, cur) in &app.current {
                if cur.state != VersionState::Creating {
                    continue;
                }
                let Some(svc) = app.spec.services.get(service) else {
                    continue;
                };
                let hash = app.hash(service);
                let want = desired_replicas(app, service);
                let mine: Vec<&Instance> = instances
                    .iter()
                    .filter(|i| {
                        i.app == app.spec.name
                            && &i.service == service
                            && i.spec_hash == hash
                            && i.slot <= want
                    })
                    .collect();
                let ready = mine.iter().filter(|i| crate::plan::is_ready(i)).count() as u32;
                let name = version_name(service, cur.number);
                let delay_ms = svc
                    .ext
                    .probe
                    .as_ref()
                    .map(|p| i64::from(p.initial_delay_seconds) * 1000)
                    .unwrap_or(0);
                let (state, reason, msg) = if ready >= want {
                    (
                        VersionState::Normal,
                        String::new(),
                        format!("version {name} is normal ({ready} of {want} instances ready)"),
                    )
                } else if now - cur.created_ms > self.version_deadline_ms + delay_ms {
                    let reason = mine
                        .iter()
                        .find_map(|i| self.prober.last_error(&i.id))
                        .or_else(|| {
                            self.failures(&app.spec.name, Some(service))
                                .into_iter()
                                .next()
                        })
                        .unwrap_or_else(|| {
                            format!("only {ready} of {want} instances became ready")
                        });
                    let msg = format!("version {name} failed: {reason}");
                    (VersionState::Failed, reason, msg)
                } else {
                    continue;
                };
                match self.store.set_version_state(
                    &app.spec.name,
                    service,
                    cur.number,
                    state,
                    &reason,
                ) {
                    Ok(()) => self.event("version", &app.spec.name, service, &msg),
                    Err(e) => tracing::warn!(error = %e, "cannot save a version state"),
                }
            }
        }
    }
}
