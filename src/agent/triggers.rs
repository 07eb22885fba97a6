//! Triggers (`berth trigger create|ls|rm`): a webhook that redeploys an app (pulling its
//! images again, for a CI that pushed a new `:latest`) or scales a service. Called as
//! `POST /hooks/<id>?secret=...` without an API token: the secret is checked in constant
//! time against its stored SHA-256 digest (it is shown once, at creation), calls are
//! rate-limited per trigger and wrong secrets per minute overall, and every call is an event
//! naming its source address and result.

use super::access::{constant_time_eq as same, digest};
use super::{CoreError, Ops};
use crate::store::TriggerRow;
use crate::wire::{ScaleRequest, TriggerCreate, TriggerCreated, TriggerFired, TriggerView};
use ring::rand::{SecureRandom, SystemRandom};
use std::collections::HashMap;
use std::sync::Mutex;

/// Accepted calls per trigger per minute.
pub const CALLS_PER_MINUTE: u32 = 10;
/// Refused calls (unknown id or wrong secret) per minute from one address.
pub const FAILURES_PER_MINUTE: u32 = 30;
/// Refused calls per minute from every address together (a guesser spread over many
/// addresses), high enough that one guessing address cannot lock the others out.
pub const FAILURES_PER_MINUTE_ALL: u32 = 600;
/// Addresses counted per minute; beyond, refusals count toward the overall limit only.
const SOURCES_KEPT: usize = 4096;
/// Triggers per app.
const MAX_PER_APP: usize = 20;

/// This minute's counts.
#[derive(Default)]
struct Minute {
    minute: i64,
    calls: HashMap<String, u32>,
    refusals: HashMap<String, u32>,
    refused_all: u32,
}

/// Rate limits, per minute: accepted calls by trigger, refusals by source address and
/// overall.
#[derive(Default)]
pub struct Limits {
    inner: Mutex<Minute>,
}

/// The address part of `ip:port` (`[v6]:port`).
fn source(from: &str) -> &str {
    from.rsplit_once(':').map_or(from, |(ip, _)| ip)
}

impl Limits {
    fn minute(&self, now_ms: i64) -> std::sync::MutexGuard<'_, Minute> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let m = now_ms / 60_000;
        if g.minute != m {
            *g = Minute {
                minute: m,
                ..Minute::default()
            };
        }
        g
    }

    /// Counts a refusal of a call from `from`.
    fn refused(&self, from: &str, now_ms: i64) {
        let mut g = self.minute(now_ms);
        g.refused_all = g.refused_all.saturating_add(1);
        let src = source(from);
        if g.refusals.contains_key(src) || g.refusals.len() < SOURCES_KEPT {
            let n = g.refusals.entry(src.to_string()).or_default();
            *n = n.saturating_add(1);
        }
    }

    /// May a call from `from` be checked this minute?
    fn failures_left(&self, from: &str, now_ms: i64) -> bool {
        let g = self.minute(now_ms);
        g.refused_all < FAILURES_PER_MINUTE_ALL
            && g.refusals.get(source(from)).copied().unwrap_or(0) < FAILURES_PER_MINUTE
    }

    /// Counts a call of `id`; false once this minute's allowance is used up.
    fn call(&self, id: &str, now_ms: i64) -> bool {
        let mut g = self.minute(now_ms);
        let n = g.calls.entry(id.to_string()).or_default();
        *n = n.saturating_add(1);
        *n <= CALLS_PER_MINUTE
    }
}

fn random_hex(bytes: usize) -> Result<String, CoreError> {
    let mut b = vec![0u8; bytes];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| CoreError::Host("the system gave no random bytes".into()))?;
    Ok(hex::encode(b))
}

fn view(t: TriggerRow) -> TriggerView {
    TriggerView {
        path: format!("/hooks/{}", t.id),
        id: t.id,
        app: t.app,
        action: t.action,
        service: t.service,
        replicas: t.replicas,
        created_ms: t.created_ms,
        calls: t.calls,
        last_ms: t.last_ms,
    }
}

/// Why a hook call was refused: the status and what the caller is told.
#[derive(Debug)]
pub struct Refused(pub u16, pub String);

impl Ops {
    pub fn create_trigger(
        &self,
        app: &str,
        req: TriggerCreate,
    ) -> Result<TriggerCreated, CoreError> {
        let stored = self
            .core
            .store
            .get_app(app)?
            .ok_or_else(|| super::ops::unknown_app(app))?;
        let (service, replicas) = match req.action.as_str() {
            "redeploy" => {
                if req.service.is_some() || req.replicas.is_some() {
                    return Err(CoreError::BadRequest(
                        "--service and --replicas go with --action scale".into(),
                    ));
                }
                (String::new(), 0)
            }
            "scale" => {
                let (Some(s), Some(n)) = (req.service, req.replicas) else {
                    return Err(CoreError::BadRequest(
                        "--action scale needs --service S and --replicas N".into(),
                    ));
                };
                if !stored.spec.services.contains_key(&s) {
                    return Err(CoreError::NotFound(format!(
                        "app {app:?} has no service {s:?}"
                    )));
                }
                if n > crate::spec::MAX_REPLICAS {
                    return Err(CoreError::BadRequest(format!(
                        "--replicas {n}: at most {}",
                        crate::spec::MAX_REPLICAS
                    )));
                }
                (s, n)
            }
            other => {
                return Err(CoreError::BadRequest(format!(
                    "--action {other:?}: use redeploy or scale"
                )));
            }
        };
        if self.core.store.triggers(Some(app))?.len() >= MAX_PER_APP {
            return Err(CoreError::Conflict(format!(
                "{app} has {MAX_PER_APP} triggers, the most berth keeps: remove one with `berth trigger rm ID`"
            )));
        }
        let id = random_hex(8)?;
        let secret = random_hex(24)?;
        let row = TriggerRow {
            id: id.clone(),
            app: app.to_string(),
            action: req.action.clone(),
            service,
            replicas,
            secret_digest: digest(&secret),
            created_ms: crate::clock::now_ms(),
            calls: 0,
            last_ms: 0,
        };
        self.core.store.put_trigger(&row)?;
        self.core.event(
            crate::model::EventKind::Agent,
            app,
            &row.service,
            &format!("trigger {id} created ({})", row.action),
        );
        Ok(TriggerCreated {
            url_path: format!("/hooks/{id}?secret={secret}"),
            trigger: view(row),
        })
    }

    pub fn triggers(&self, app: Option<&str>) -> Result<Vec<TriggerView>, CoreError> {
        Ok(self
            .core
            .store
            .triggers(app)?
            .into_iter()
            .map(view)
            .collect())
    }

    pub fn remove_trigger(&self, id: &str) -> Result<(), CoreError> {
        let t = self.core.store.trigger(id)?.ok_or_else(|| {
            CoreError::NotFound(format!("no trigger {id:?}: `berth trigger ls` lists them"))
        })?;
        self.core.store.remove_trigger(id)?;
        self.core.event(
            crate::model::EventKind::Agent,
            &t.app,
            &t.service,
            &format!("trigger {id} removed"),
        );
        Ok(())
    }

    /// `POST /hooks/<id>?secret=...` from `from`: checks, counts and runs the trigger.
    /// Serves the triggers on the router's listeners too (`POST /hooks/<id>?secret=` where
    /// no route takes the request), answered as on the API.
    pub fn serve_triggers_on_router(&self) {
        // Weak: the router (held by the core) must not keep the core alive.
        let core = std::sync::Arc::downgrade(&self.core);
        let cluster = std::sync::Arc::downgrade(&self.cluster);
        let rt = tokio::runtime::Handle::current();
        self.core
            .router
            .set_trigger_hook(std::sync::Arc::new(move |id, secret, from| {
                let ops = core
                    .upgrade()
                    .zip(cluster.upgrade())
                    .map(|(c, h)| Ops::new(c, h));
                let rt = rt.clone();
                Box::pin(async move {
                    let Some(ops) = ops else {
                        return (503, r#"{"error":"this agent is stopping"}"#.to_string());
                    };
                    let fired = tokio::task::spawn_blocking(move || {
                        rt.block_on(ops.fire_trigger(&id, &secret, &from))
                    })
                    .await;
                    let err = |s: u16, m: &str| (s, serde_json::json!({ "error": m }).to_string());
                    match fired {
                        Ok(Ok(Ok(done))) => (200, serde_json::to_string(&done).unwrap_or_default()),
                        Ok(Ok(Err(Refused(s, m)))) => err(s, &m),
                        Ok(Err(e)) => err(500, &e.to_string()),
                        Err(_) => err(
                            500,
                            "internal error: the trigger failed (see the agent's log)",
                        ),
                    }
                })
            }));
    }

    pub async fn fire_trigger(
        &self,
        id: &str,
        secret: &str,
        from: &str,
    ) -> Result<Result<TriggerFired, Refused>, CoreError> {
        let now = crate::clock::now_ms();
        let limits = &self.core.trigger_limits;
        if !limits.failures_left(from, now) {
            return Ok(Err(Refused(
                429,
                "too many refused trigger calls this minute: try again in a minute".into(),
            )));
        }
        let found = self.core.store.trigger(id)?;
        let ok = found
            .as_ref()
            .is_some_and(|t| same(&digest(secret), &t.secret_digest));
        let t = match found {
            Some(t) if ok => t,
            other => {
                limits.refused(from, now);
                // One answer for an unknown id and a wrong secret: neither is told apart.
                let (app, service) = other.map(|t| (t.app, t.service)).unwrap_or_default();
                self.core.event(
                    crate::model::EventKind::Error,
                    &app,
                    &service,
                    &format!("trigger call from {from} refused: unknown trigger or wrong secret"),
                );
                return Ok(Err(Refused(403, "unknown trigger or wrong secret".into())));
            }
        };
        if !limits.call(id, now) {
            self.core.event(
                crate::model::EventKind::Error,
                &t.app,
                &t.service,
                &format!(
                    "trigger {id} call from {from} refused: more than {CALLS_PER_MINUTE} calls this minute"
                ),
            );
            return Ok(Err(Refused(
                429,
                format!(
                    "trigger {id} was called more than {CALLS_PER_MINUTE} times this minute: try again later"
                ),
            )));
        }
        self.core.store.trigger_called(id, now)?;
        let outcome = match t.action.as_str() {
            "scale" => self
                .scale(
                    &t.app,
                    ScaleRequest {
                        services: [(t.service.clone(), t.replicas)].into(),
                    },
                )
                .await
                .map(|_| format!("scale-{}-{}", t.service, t.replicas)),
            _ => self
                .redeploy(&t.app, crate::wire::RedeployRequest { pull: true })
                .await
                .and_then(|_| {
                    let generation = self
                        .core
                        .store
                        .get_app(&t.app)?
                        .map(|a| a.redeploy_gen)
                        .unwrap_or_default();
                    Ok(format!("redeploy-{generation}"))
                }),
        };
        let result = match &outcome {
            Ok(o) => format!("ok ({o})"),
            Err(e) => format!("failed: {e}"),
        };
        self.core.event(
            if t.action == "scale" {
                crate::model::EventKind::Scale
            } else {
                crate::model::EventKind::Redeploy
            },
            &t.app,
            &t.service,
            &format!("trigger {id} ({}) called from {from}: {result}", t.action),
        );
        let outcome = outcome?;
        Ok(Ok(TriggerFired {
            trigger: id.to_string(),
            app: t.app,
            action: t.action,
            outcome,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_count_per_minute() {
        let l = Limits::default();
        for _ in 0..CALLS_PER_MINUTE {
            assert!(l.call("a", 1_000));
        }
        assert!(!l.call("a", 2_000), "the 11th call in a minute");
        assert!(l.call("b", 2_000), "per trigger");
        assert!(l.call("a", 61_000), "a new minute");
        for _ in 0..FAILURES_PER_MINUTE {
            assert!(l.failures_left("10.0.0.1:4000", 0));
            l.refused("10.0.0.1:4000", 0);
        }
        // Per address (any port): the guesser is stopped, the others are not.
        assert!(!l.failures_left("10.0.0.1:4001", 0));
        assert!(l.failures_left("10.0.0.2:4000", 0));
        assert!(l.failures_left("10.0.0.1:4001", 60_000), "a new minute");
        // Spread over many addresses: the overall limit.
        for i in 0..FAILURES_PER_MINUTE_ALL {
            l.refused(&format!("10.1.{}.{}:1", i / 256, i % 256), 120_000);
        }
        assert!(!l.failures_left("10.9.9.9:1", 120_000));
        assert_eq!(source("[::1]:80"), "[::1]");
        assert!(same(b"abc", b"abc") && !same(b"abc", b"abd") && !same(b"ab", b"abc"));
    }
}
