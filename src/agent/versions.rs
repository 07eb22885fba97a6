//! Moves live versions through their states: `creating` -> `normal` once every instance it
//! should run is ready (a start-first or rolling version then takes all the traffic; a
//! blue/green one is `awaiting confirmation`), or -> `failed` with the last probe or start
//! error when that does not happen within its deadline (a rolling update fails sooner: as soon
//! as a new instance turns unhealthy or cannot start). A failed release step ends, so the
//! planner brings the previous version back (rollback) and removes the new one.

use super::{Core, CoreError, desired_replicas, parallelism};
use crate::model::{Health, Instance, InstanceState, Release, VersionState};
use crate::plan::release::Step;
use crate::store::{LiveVersion, StoredApp};

enum Outcome {
    Ready(u32, u32),
    Failed(String),
}

impl Core {
    /// One `version` event per decision of the release state machine (each names its
    /// cause), except for the version `skip` whose own event says it already.
    pub(super) fn record_decisions(
        &self,
        app: &str,
        service: &str,
        decisions: &[crate::plan::release::Decision],
        skip: Option<u32>,
    ) {
        for d in decisions.iter().filter(|d| Some(d.number) != skip) {
            self.event(crate::model::EventKind::Version, app, service, &d.message());
        }
    }

    /// Returns whether a version changed state.
    /// In a cluster (`cluster`), a version counts the instances placement spread and those
    /// that run ready on the other members, as their records say.
    pub(super) fn update_versions(
        &self,
        apps: &[std::sync::Arc<StoredApp>],
        instances: &[Instance],
        cluster: Option<(&super::fleet::Fleet, &super::fleet::Placement)>,
    ) -> bool {
        let now = crate::clock::now_ms();
        let mut changed = false;
        for app in apps.iter().filter(|a| !a.stopped) {
            for (service, live) in &app.versions {
                let replicas = desired_replicas(app, service);
                for l in live {
                    if l.version.state != VersionState::Creating {
                        continue;
                    }
                    let spread = cluster.map(|(f, p)| {
                        let key = (app.spec.name.clone(), service.clone(), l.version.number);
                        let total = p.total.get(&key).copied().unwrap_or(0);
                        let name = (key.0, key.1, l.version.name());
                        (total, f.ready.get(&name).copied().unwrap_or(0))
                    });
                    // A job's version is its tasks' definition: current once stored (its runs
                    // have states of their own).
                    let outcome = if super::jobs::is_job(app) {
                        Some(Outcome::Ready(0, 0))
                    } else {
                        self.outcome(app, service, l, (replicas, spread), instances, now)
                    };
                    let Some(outcome) = outcome else {
                        continue;
                    };
                    match self.settle_version(app, service, l, outcome) {
                        Ok(()) => changed = true,
                        Err(e) => tracing::warn!(error = %e, "cannot save a version state"),
                    }
                }
            }
        }
        changed
    }

    fn outcome(
        &self,
        app: &StoredApp,
        service: &str,
        l: &LiveVersion,
        (replicas, spread): (u32, Option<(u32, u32)>),
        instances: &[Instance],
        now: i64,
    ) -> Option<Outcome> {
        let v = &l.version;
        // In a cluster (`spread`): the count placed, and the ready ones elsewhere.
        let (want, elsewhere) = match spread {
            // Nothing placed (no member can take it): it waits, and fails at its deadline.
            Some((total, ready)) if total > 0 => (total, ready),
            Some(_) => (v.instances(replicas).max(1), 0),
            None => (v.instances(replicas), 0),
        };
        let mine: Vec<&Instance> = instances
            .iter()
            .filter(|i| {
                i.app == app.spec.name
                    && i.service == service
                    && l.runs(i)
                    && (spread.is_some() || i.slot <= want)
            })
            .collect();
        let ready = mine
            .iter()
            .filter(|i| crate::plan::is_ready(i) || crate::plan::is_done(i, v.spec.restart))
            .count() as u32
            + elsewhere;
        if ready >= want {
            return Some(Outcome::Ready(ready, want));
        }
        let rolling = v.release == Release::Rolling;
        if rolling {
            // A batch fails as soon as one of its instances does: it exited, stayed unhealthy
            // until replaced, or answered once and then stopped answering. One that has not
            // answered yet is starting (a slow start is not a failure before its deadline).
            for i in &mine {
                let broken = i.health == Health::Failed
                    || i.health == Health::Unhealthy && self.prober.answered(&i.id)
                    || matches!(i.state, InstanceState::Exited | InstanceState::Dead)
                        && !crate::plan::is_done(i, v.spec.restart);
                if broken {
                    let why = self.prober.last_error(&i.id).unwrap_or_else(|| {
                        format!("{} is {} {}", i.name, i.state.as_str(), i.health.as_str())
                    });
                    return Some(Outcome::Failed(why));
                }
            }
            for slot in 1..=want {
                let name = crate::runtime::container_name(&app.spec.name, service, v.number, slot);
                if let Some(e) = self.backoff.error_of(&name) {
                    return Some(Outcome::Failed(e));
                }
            }
        }
        let delay_ms = v
            .spec
            .ext
            .probe
            .as_ref()
            .map(|p| i64::from(p.initial_delay_seconds) * 1000)
            .unwrap_or(0);
        // A rolling update has the deadline for each of its batches.
        let batches = if rolling {
            i64::from(want.div_ceil(parallelism(&v.spec)).max(1))
        } else {
            1
        };
        if now - v.since_ms <= (self.version_deadline_ms + delay_ms) * batches {
            return None;
        }
        let reason = mine
            .iter()
            .find_map(|i| self.prober.last_error(&i.id))
            .or_else(|| {
                (1..=want).find_map(|slot| {
                    self.backoff.error_of(&crate::runtime::container_name(
                        &app.spec.name,
                        service,
                        v.number,
                        slot,
                    ))
                })
            })
            .unwrap_or_else(|| format!("only {ready} of {want} instances became ready"));
        Some(Outcome::Failed(reason))
    }

    fn settle_version(
        &self,
        app: &StoredApp,
        service: &str,
        l: &LiveVersion,
        outcome: Outcome,
    ) -> Result<(), CoreError> {
        let v = &l.version;
        let (name, number, now) = (v.name(), v.number, crate::clock::now_ms());
        let a = app.spec.name.as_str();
        let (step, ready_of) = match outcome {
            Outcome::Ready(ready, want) => (Step::Ready(number), Some((ready, want))),
            Outcome::Failed(reason) => (Step::Fail(number, reason), None),
        };
        let (applied, serving) = self.store.edit_versions(a, service, |vs| {
            let applied = crate::plan::release::apply(vs, &step, now)?;
            let serving = vs
                .iter()
                .filter(|o| o.weight > 0 && o.number != number)
                .map(|o| o.name())
                .collect::<Vec<_>>()
                .join(", ");
            Ok::<_, CoreError>((applied, serving))
        })?;
        let msg = match (&step, ready_of) {
            (_, Some(_)) if super::jobs::is_job(app) => {
                format!("version {name} is current: the job's next run uses it")
            }
            (_, Some((ready, want))) => match v.release {
                Release::Promote | Release::Rolling => format!(
                    "version {name} is normal ({ready} of {want} instances ready) and takes all the traffic"
                ),
                Release::BlueGreen => format!(
                    "version {name} is ready ({ready} of {want} instances) at 0% of the traffic, awaiting confirmation: `berth release confirm {a}/{service}` (or `abort`)"
                ),
                _ => format!("version {name} is normal ({ready} of {want} instances ready)"),
            },
            (Step::Fail(_, reason), _) => match v.release {
                Release::Rolling if !serving.is_empty() => {
                    format!("rolling update to {name} failed: {reason}; rolled back to {serving}")
                }
                Release::Promote | Release::BlueGreen | Release::Standby if !serving.is_empty() => {
                    format!("version {name} failed: {reason}; the traffic stays on {serving}")
                }
                _ => format!("version {name} failed: {reason}"),
            },
            _ => return Ok(()),
        };
        self.event(crate::model::EventKind::Version, a, service, &msg);
        self.record_decisions(a, service, &applied.decisions, Some(number));
        self.wake(super::Wake::Release);
        Ok(())
    }
}
