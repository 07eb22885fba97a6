//! Scale to zero, the router's side: when each autoscaled service was last asked for, and
//! holding a request (or a TCP connection) for a service with no ready instance that can
//! start from zero, while the agent starts one.
//!
//! Invariants: at most [`MAX_HELD`] requests are held at once (more get 503 at once); a
//! hold ends at the service's `cold_start_timeout`; the agent is told once per held request
//! (it starts one instance however many ask); a held request is picked again on every
//! table change, so it goes to the first instance that turns ready.

use super::table::Backend;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Requests and connections held at once, over all services.
pub const MAX_HELD: usize = 1000;

/// What the router tells the agent.
#[derive(Debug, Clone, PartialEq)]
pub enum ColdEvent {
    /// A request came for a service that can start from zero and has no ready instance.
    Wanted { app: String, service: String },
    /// A held request was sent to an instance after `held`.
    Served {
        app: String,
        service: String,
        held: Duration,
        /// From the table swap that made an instance ready to the request picking it: the
        /// router's own share of the wait.
        after_ready: Duration,
    },
}

pub type Hook = Arc<dyn Fn(ColdEvent) + Send + Sync>;

/// When a backend was last asked for (ms since the epoch), shared by the tables that have
/// it. Always equal (it is state, not part of what a table says).
#[derive(Debug, Clone, Default)]
pub struct Used(pub Arc<AtomicI64>);

impl PartialEq for Used {
    fn eq(&self, _: &Used) -> bool {
        true
    }
}

impl Used {
    pub fn touch(&self) {
        self.0.store(crate::clock::now_ms(), Ordering::Relaxed);
    }
}

/// A service a request waits for.
#[derive(Debug, Clone)]
pub struct ColdTarget {
    pub app: String,
    pub service: String,
    pub label: Arc<str>,
    pub timeout: Duration,
}

impl ColdTarget {
    /// The target when `b` can start from zero.
    pub fn of(b: &Backend) -> Option<ColdTarget> {
        Some(ColdTarget {
            app: b.app.clone(),
            service: b.service.clone(),
            label: b.label.clone(),
            timeout: Duration::from_secs(u64::from(b.cold_start?)),
        })
    }
}

/// Why a held request is answered 503.
#[derive(Debug, PartialEq)]
pub enum Refusal {
    /// [`MAX_HELD`] are held already.
    Full,
    /// No instance turned ready within the timeout.
    Timeout(Duration),
}

impl Refusal {
    pub fn message(&self, label: &str) -> String {
        match self {
            Refusal::Full => format!(
                "berth: {label} is starting from zero and {MAX_HELD} requests already wait for it; try again shortly"
            ),
            Refusal::Timeout(t) => format!(
                "berth: {label} is starting from zero and was not ready within {} s; try again shortly",
                t.as_secs()
            ),
        }
    }
}

pub struct Cold {
    hook: OnceLock<Hook>,
    held: AtomicUsize,
    /// Set to the time of every table swap: held requests pick again.
    tables: tokio::sync::watch::Sender<Instant>,
    /// By `app/service`.
    used: Mutex<HashMap<Arc<str>, Used>>,
}

impl Default for Cold {
    fn default() -> Cold {
        Cold {
            hook: OnceLock::new(),
            held: AtomicUsize::new(0),
            tables: tokio::sync::watch::Sender::new(Instant::now()),
            used: Mutex::default(),
        }
    }
}

struct HeldSlot<'a>(&'a AtomicUsize);

impl Drop for HeldSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Cold {
    pub fn set_hook(&self, hook: Hook) {
        let _ = self.hook.set(hook);
    }

    /// A new table is in place.
    pub fn table_changed(&self) {
        self.tables.send_replace(Instant::now());
    }

    /// The shared last-use cell of `label` (made on first sight; `keep` are the labels of
    /// the new table, the others are forgotten).
    pub fn used_of(&self, label: &Arc<str>) -> Used {
        self.used
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(label.clone())
            .or_default()
            .clone()
    }

    pub fn forget_except(&self, keep: &std::collections::HashSet<Arc<str>>) {
        self.used
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|k, _| keep.contains(k));
    }

    /// Every `app/service` asked for since start, with when it last was (ms).
    pub fn last_requests(&self) -> Vec<(String, i64)> {
        let used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        used.iter()
            .map(|(k, u)| (k.to_string(), u.0.load(Ordering::Relaxed)))
            .filter(|(_, ms)| *ms > 0)
            .collect()
    }

    /// When `app/service` was last asked for through the router (ms), if ever since start.
    pub fn last_request_ms(&self, label: &str) -> Option<i64> {
        let used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        let ms = used.get(label)?.0.load(Ordering::Relaxed);
        (ms > 0).then_some(ms)
    }

    /// Holds the caller until `pick` gives an answer (`Some`): it is asked now and after
    /// every table change, until the target's timeout. The agent is told the service is
    /// wanted, and when the request goes through, after how long.
    pub async fn hold<R>(
        &self,
        target: &ColdTarget,
        mut pick: impl FnMut() -> Option<R>,
    ) -> Result<R, Refusal> {
        let n = self.held.fetch_add(1, Ordering::AcqRel);
        let _slot = HeldSlot(&self.held);
        if n >= MAX_HELD {
            return Err(Refusal::Full);
        }
        let mut tables = self.tables.subscribe();
        let hook = self.hook.get();
        if let Some(h) = hook {
            h(ColdEvent::Wanted {
                app: target.app.clone(),
                service: target.service.clone(),
            });
        }
        let started = Instant::now();
        let mut changed = started;
        let deadline = tokio::time::Instant::now() + target.timeout;
        loop {
            if let Some(r) = pick() {
                if let Some(h) = hook {
                    h(ColdEvent::Served {
                        app: target.app.clone(),
                        service: target.service.clone(),
                        held: started.elapsed(),
                        after_ready: changed.elapsed(),
                    });
                }
                return Ok(r);
            }
            match tokio::time::timeout_at(deadline, tables.changed()).await {
                Ok(Ok(())) => changed = *tables.borrow_and_update(),
                // The router is going away, or the time is up.
                Ok(Err(_)) | Err(_) => return Err(Refusal::Timeout(target.timeout)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(timeout_ms: u64) -> ColdTarget {
        ColdTarget {
            app: "shop".into(),
            service: "web".into(),
            label: "shop/web".into(),
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    /// The agent is told; held requests go through on the table swap that makes the
    /// service ready; past the bound a request is refused at once; past the timeout, 503.
    #[tokio::test]
    async fn holds_until_ready_bounded_and_timed() {
        let cold = Arc::new(Cold::default());
        let events = Arc::new(Mutex::new(Vec::new()));
        let e = events.clone();
        cold.set_hook(Arc::new(move |ev| {
            e.lock().unwrap_or_else(|p| p.into_inner()).push(ev)
        }));
        let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut held = Vec::new();
        for _ in 0..MAX_HELD {
            let (cold, ready) = (cold.clone(), ready.clone());
            held.push(tokio::spawn(async move {
                cold.hold(&target(20_000), || {
                    ready.load(Ordering::SeqCst).then_some(())
                })
                .await
            }));
        }
        // Every one of them is waiting now.
        for _ in 0..200 {
            if cold.held.load(Ordering::SeqCst) == MAX_HELD {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(cold.held.load(Ordering::SeqCst), MAX_HELD);
        let t = Instant::now();
        assert_eq!(
            cold.hold(&target(20_000), || Some(())).await,
            Err(Refusal::Full)
        );
        assert!(t.elapsed() < Duration::from_millis(100), "refused at once");
        // Not ready on a swap: they keep waiting; ready on the next: all through.
        cold.table_changed();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(held.iter().all(|h| !h.is_finished()));
        ready.store(true, Ordering::SeqCst);
        cold.table_changed();
        for h in held {
            assert_eq!(h.await.expect("join"), Ok(()));
        }
        assert_eq!(cold.held.load(Ordering::SeqCst), 0);
        let ev = events.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let wanted = ev
            .iter()
            .filter(|e| matches!(e, ColdEvent::Wanted { .. }))
            .count();
        let served = ev
            .iter()
            .filter(|e| matches!(e, ColdEvent::Served { .. }))
            .count();
        assert_eq!(
            (wanted, served),
            (MAX_HELD, MAX_HELD),
            "a refused request tells no one"
        );
        // Never ready: 503 after the timeout.
        let t = Instant::now();
        assert_eq!(
            cold.hold(&target(300), || None::<()>).await,
            Err(Refusal::Timeout(Duration::from_millis(300)))
        );
        assert!(t.elapsed() >= Duration::from_millis(300));
    }
}
