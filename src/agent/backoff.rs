//! Failure memory: a container (by name, or by id for stop/remove) that failed is not retried
//! before its backoff ends (2, 4, 8 ... 60 s). Entries know their app and service, so "is this
//! app failing, and why" is a lookup, not a guess from container names.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

struct Entry {
    app: String,
    service: String,
    until: Instant,
    failures: u32,
    last_error: String,
    /// Replaced for failing its probe: only a healthy successor clears this, not a start.
    unhealthy: bool,
}

#[derive(Default)]
pub(super) struct Backoffs(Mutex<HashMap<String, Entry>>);

impl Backoffs {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Is `key` still waiting out a failure?
    pub fn active(&self, key: &str) -> bool {
        self.lock()
            .get(key)
            .is_some_and(|e| Instant::now() < e.until)
    }

    /// Records a failure; returns how many in a row.
    pub fn fail(&self, key: &str, app: &str, service: &str, error: &str, unhealthy: bool) -> u32 {
        let mut m = self.lock();
        let e = m.entry(key.to_string()).or_insert_with(|| Entry {
            app: app.to_string(),
            service: service.to_string(),
            until: Instant::now(),
            failures: 0,
            last_error: String::new(),
            unhealthy: false,
        });
        e.unhealthy |= unhealthy;
        e.failures += 1;
        e.until = Instant::now() + Duration::from_secs((1u64 << e.failures.min(6)).min(60));
        e.last_error = error.to_string();
        e.failures
    }

    /// A container started: clears start failures, but not an unhealthy history (that waits
    /// for the successor to turn healthy, so a never-healthy service keeps backing off).
    pub fn started(&self, key: &str) {
        let mut m = self.lock();
        if m.get(key).is_some_and(|e| !e.unhealthy) {
            m.remove(key);
        }
    }

    /// Drops the entries `gone(key, app, service)` says belong to nothing berth still runs
    /// (containers of a version that failed or lost its traffic), so their old failures
    /// are not counted against the versions that run now.
    pub fn forget(&self, gone: impl Fn(&str, &str, &str) -> bool) {
        self.lock().retain(|k, e| !gone(k, &e.app, &e.service));
    }

    pub fn healthy(&self, key: &str) {
        self.lock().remove(key);
    }

    /// The last error of one container (by name), while it is failing.
    pub fn error_of(&self, key: &str) -> Option<String> {
        self.lock().get(key).map(|e| e.last_error.clone())
    }

    /// Last errors of the containers whose names start with `prefix` (one version's:
    /// `{app}_{service}-NNN_`), failing now.
    pub fn errors_named(&self, prefix: &str) -> Vec<String> {
        let m = self.lock();
        let mut out: Vec<(&String, String)> = m
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, e)| (k, e.last_error.clone()))
            .collect();
        out.sort();
        out.into_iter().map(|(_, e)| e).collect()
    }

    /// Last errors of an app's (or one service's) containers that are failing now.
    pub fn errors(&self, app: &str, service: Option<&str>) -> Vec<String> {
        self.lock()
            .values()
            .filter(|e| e.app == app && service.is_none_or(|s| e.service == s))
            .map(|e| e.last_error.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: failures were found by the container-name prefix `{app}_`, so app `a` was
    /// reported failing because of app `a_b`.
    #[test]
    fn errors_belong_to_their_own_app_and_service() {
        let b = Backoffs::default();
        b.fail("a_b_web_1", "a_b", "web", "boom", false);
        assert!(b.errors("a", None).is_empty());
        assert_eq!(b.errors("a_b", Some("web")), ["boom"]);
        assert!(b.errors("a_b", Some("db")).is_empty());
        assert!(b.active("a_b_web_1"));
    }

    #[test]
    fn a_start_does_not_clear_an_unhealthy_history_but_health_does() {
        let b = Backoffs::default();
        b.fail("x", "a", "web", "start failed", false);
        b.started("x");
        assert!(!b.active("x"));
        b.fail("y", "a", "web", "replaced: unhealthy", true);
        b.started("y");
        assert!(b.active("y"));
        b.healthy("y");
        assert!(b.errors("a", None).is_empty());
    }
}
