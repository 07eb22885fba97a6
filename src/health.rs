//! Health probes (http, tcp, cmd) and their state machine.
//!
//! Role: every running instance whose service has a `probe.*` label is probed every
//! [`INTERVAL`] after its initial delay. One success makes it healthy; [`FAILURES`] consecutive
//! failures make it unhealthy; unhealthy for [`REPLACE_AFTER`] makes it `failed`, which the
//! planner answers by replacing the instance.
//!
//! Invariants: `Tracker::step` is pure (time comes in as a value) and holds the whole state
//! machine. Probes reach an instance at its address on the app network (127.0.0.1 in host
//! network mode); an http probe is healthy on 2xx/3xx, a tcp probe on connect, a cmd probe on
//! exit 0 inside the container.

use crate::model::{Health, Instance, NetworkMode, Probe, ProbeKind};
use crate::runtime::ContainerRuntime;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const INTERVAL: Duration = Duration::from_secs(2);
/// Until its first answer, an http or tcp probe runs this often (a connection refused is
/// cheap), so a starting instance serves as soon as it can (a cold start from zero waits on
/// it); failures still count once per [`INTERVAL`].
pub const STARTING_INTERVAL: Duration = Duration::from_millis(200);
/// Consecutive failures that make an instance unhealthy.
pub const FAILURES: u32 = 3;
/// How long an instance may stay unhealthy before it is replaced.
pub const REPLACE_AFTER: Duration = Duration::from_secs(10);

/// What to probe.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub id: String,
    pub name: String,
    pub app: String,
    pub service: String,
    pub probe: Probe,
    pub ip: String,
    pub network_mode: NetworkMode,
}

impl Target {
    pub fn for_instance(i: &Instance, probe: &Probe, network_mode: NetworkMode) -> Target {
        Target {
            id: i.id.clone(),
            name: i.name.clone(),
            app: i.app.clone(),
            service: i.service.clone(),
            probe: probe.clone(),
            ip: i.ip.clone(),
            network_mode,
        }
    }
}

/// The state machine of one instance's health.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracker {
    pub health: Health,
    pub failures: u32,
    pub next_due: Instant,
    pub unhealthy_since: Option<Instant>,
    pub last_error: String,
    /// Whether the probe has succeeded once: an instance that never has is still starting,
    /// however many of its probes failed (a slow start is not a broken release).
    pub answered: bool,
    /// Probed every [`STARTING_INTERVAL`] until the first answer.
    pub fast_start: bool,
    /// When a failure was last counted (fast probes count one per [`INTERVAL`]).
    counted_at: Option<Instant>,
}

/// A change of health worth an event.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub from: Health,
    pub to: Health,
}

impl Tracker {
    pub fn new(now: Instant, initial_delay: Duration) -> Tracker {
        Tracker {
            health: Health::Starting,
            failures: 0,
            next_due: now + initial_delay,
            unhealthy_since: None,
            last_error: String::new(),
            answered: false,
            fast_start: false,
            counted_at: None,
        }
    }

    /// The same, probed every [`STARTING_INTERVAL`] until its first answer.
    pub fn fast(mut self) -> Tracker {
        self.fast_start = true;
        self
    }

    /// Applies one probe result at `now`.
    pub fn step(&mut self, result: Result<(), String>, now: Instant) -> Option<Transition> {
        let from = self.health;
        self.next_due = now + INTERVAL;
        match result {
            Ok(()) => {
                self.answered = true;
                self.failures = 0;
                self.unhealthy_since = None;
                self.health = Health::Healthy;
            }
            Err(e) => {
                self.last_error = e;
                if self.fast_start && !self.answered {
                    self.next_due = now + STARTING_INTERVAL;
                    if self
                        .counted_at
                        .is_some_and(|c| now.duration_since(c) < INTERVAL)
                    {
                        return None;
                    }
                }
                self.counted_at = Some(now);
                self.failures = self.failures.saturating_add(1);
                if self.failures >= FAILURES {
                    let since = *self.unhealthy_since.get_or_insert(now);
                    self.health = if now.duration_since(since) >= REPLACE_AFTER {
                        Health::Failed
                    } else {
                        Health::Unhealthy
                    };
                }
            }
        }
        (from != self.health).then_some(Transition {
            from,
            to: self.health,
        })
    }
}

/// The health of every probed instance of this node.
#[derive(Default)]
pub struct Prober {
    states: Mutex<HashMap<String, (Target, Tracker)>>,
}

impl Prober {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Target, Tracker)>> {
        self.states.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tracks exactly these targets: new ones start in `starting`, gone ones are forgotten.
    pub fn sync(&self, targets: Vec<Target>, now: Instant) {
        let mut s = self.lock();
        let keep: std::collections::HashSet<String> =
            targets.iter().map(|t| t.id.clone()).collect();
        s.retain(|id, _| keep.contains(id));
        for t in targets {
            match s.get_mut(&t.id) {
                // The address can change (a restart by the engine); the state carries on.
                Some((old, _)) => *old = t,
                None => {
                    let delay = Duration::from_secs(u64::from(t.probe.initial_delay_seconds));
                    let mut tracker = Tracker::new(now, delay);
                    if matches!(t.probe.kind, ProbeKind::Http { .. } | ProbeKind::Tcp { .. }) {
                        tracker = tracker.fast();
                    }
                    s.insert(t.id.clone(), (t, tracker));
                }
            }
        }
    }

    pub fn health(&self, id: &str) -> Option<Health> {
        self.lock().get(id).map(|(_, t)| t.health)
    }

    /// Whether the instance's probe has succeeded at least once.
    pub fn answered(&self, id: &str) -> bool {
        self.lock().get(id).is_some_and(|(_, t)| t.answered)
    }

    pub fn last_error(&self, id: &str) -> Option<String> {
        self.lock()
            .get(id)
            .map(|(_, t)| t.last_error.clone())
            .filter(|e| !e.is_empty())
    }

    /// Targets whose probe is due; they are not due again until their result is recorded.
    pub fn take_due(&self, now: Instant) -> Vec<Target> {
        let mut s = self.lock();
        s.values_mut()
            .filter(|(_, t)| t.next_due <= now)
            .map(|(target, t)| {
                t.next_due = now + Duration::from_secs(3600);
                target.clone()
            })
            .collect()
    }

    pub fn record(
        &self,
        id: &str,
        result: Result<(), String>,
        now: Instant,
    ) -> Option<(Target, Transition, String)> {
        let mut s = self.lock();
        let (target, tracker) = s.get_mut(id)?;
        let tr = tracker.step(result, now)?;
        Some((target.clone(), tr, tracker.last_error.clone()))
    }
}

/// Runs one probe.
pub async fn probe(t: &Target, runtime: &dyn ContainerRuntime) -> Result<(), String> {
    let timeout = Duration::from_secs(u64::from(t.probe.timeout_seconds.max(1)));
    let host = match t.network_mode {
        NetworkMode::Host => "127.0.0.1".to_string(),
        _ if t.ip.is_empty() => return Err("the instance has no address on its network".into()),
        _ => t.ip.clone(),
    };
    match &t.probe.kind {
        ProbeKind::Tcp { port } => tokio::time::timeout(
            timeout,
            tokio::net::TcpStream::connect((host.as_str(), *port)),
        )
        .await
        .map_err(|_| {
            format!(
                "tcp {host}:{port}: no connection within {} s",
                timeout.as_secs()
            )
        })?
        .map(|_| ())
        .map_err(|e| format!("tcp {host}:{port}: {e}")),
        ProbeKind::Http { port, path } => {
            tokio::time::timeout(timeout, http_status(&host, *port, path))
                .await
                .map_err(|_| {
                    format!(
                        "http://{host}:{port}{path}: no answer within {} s",
                        timeout.as_secs()
                    )
                })?
                .and_then(|code| {
                    if (200..400).contains(&code) {
                        Ok(())
                    } else {
                        Err(format!("http://{host}:{port}{path} answered {code}"))
                    }
                })
        }
        ProbeKind::Cmd { command } => {
            let (code, out) = runtime
                .exec(
                    &t.id,
                    vec!["sh".into(), "-c".into(), command.clone()],
                    timeout,
                    4096,
                )
                .await
                .map_err(|e| format!("`{command}`: {e}"))?;
            if code == 0 {
                Ok(())
            } else {
                let out = out.trim();
                let out: String = out.chars().take(200).collect();
                Err(format!(
                    "`{command}` exited with {code}{}",
                    if out.is_empty() {
                        String::new()
                    } else {
                        format!(": {out}")
                    }
                ))
            }
        }
    }
}

/// GET `path` and return the status code (the body is not read). Uses hyper's client, which
/// the router uses too; no idle connections are kept to instances between probes.
async fn http_status(host: &str, port: u16, path: &str) -> Result<u16, String> {
    use hyper_util::client::legacy::Client;
    use hyper_util::client::legacy::connect::HttpConnector;
    type Probe = Client<HttpConnector, http_body_util::Empty<bytes::Bytes>>;
    static CLIENT: std::sync::OnceLock<Probe> = std::sync::OnceLock::new();
    let client = CLIENT.get_or_init(|| {
        Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(HttpConnector::new())
    });
    let url = format!("http://{host}:{port}{path}");
    let req = hyper::Request::get(&url)
        .header(hyper::header::USER_AGENT, "berth-probe")
        .body(http_body_util::Empty::new())
        .map_err(|e| format!("{url}: {e}"))?;
    let resp = client.request(req).await.map_err(|e| {
        // hyper-util's error text is "client error (Connect)"; the cause says why.
        let cause = std::error::Error::source(&e)
            .map(|c| c.to_string())
            .unwrap_or_default();
        format!(
            "{url}: {e}{}",
            if cause.is_empty() {
                String::new()
            } else {
                format!(": {cause}")
            }
        )
    })?;
    Ok(resp.status().as_u16())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_success_heals_three_failures_hurt_and_lingering_fails() {
        let t0 = Instant::now();
        let mut t = Tracker::new(t0, Duration::from_secs(5));
        assert_eq!(
            (t.health, t.next_due),
            (Health::Starting, t0 + Duration::from_secs(5))
        );
        let s = |secs: u64| t0 + Duration::from_secs(secs);
        assert_eq!(
            t.step(Ok(()), s(5)),
            Some(Transition {
                from: Health::Starting,
                to: Health::Healthy
            })
        );
        assert_eq!(t.step(Err("x".into()), s(7)), None);
        assert_eq!(t.step(Err("x".into()), s(9)), None);
        assert_eq!(
            t.step(Err("down".into()), s(11)),
            Some(Transition {
                from: Health::Healthy,
                to: Health::Unhealthy
            })
        );
        assert_eq!(t.last_error, "down");
        // A success in between resets the count.
        assert_eq!(t.step(Ok(()), s(13)).map(|x| x.to), Some(Health::Healthy));
        for i in 0..3 {
            t.step(Err("x".into()), s(15 + 2 * i));
        }
        assert_eq!(t.health, Health::Unhealthy);
        assert_eq!(
            t.step(Err("x".into()), s(23)),
            None,
            "not yet 10 s unhealthy"
        );
        assert_eq!(
            t.step(Err("x".into()), s(29)).map(|x| x.to),
            Some(Health::Failed)
        );
    }

    #[test]
    fn never_healthy_instance_fails_too() {
        let t0 = Instant::now();
        let mut t = Tracker::new(t0, Duration::ZERO);
        let mut last = None;
        for i in 0..10 {
            if let Some(tr) = t.step(Err("refused".into()), t0 + Duration::from_secs(2 * i)) {
                last = Some(tr.to);
            }
        }
        assert_eq!(last, Some(Health::Failed));
        assert!(!t.answered, "it never answered");
    }

    /// A fast-starting probe runs every 200 ms until its first answer but fails no sooner
    /// than a normal one; after the answer it runs at the normal interval.
    #[test]
    fn a_starting_instance_is_probed_often_without_failing_sooner() {
        let t0 = Instant::now();
        let mut t = Tracker::new(t0, Duration::ZERO).fast();
        let ms = |m: u64| t0 + Duration::from_millis(m);
        let mut failed_at = None;
        for i in 0..100 {
            let now = ms(200 * i);
            if t.next_due > now {
                continue;
            }
            if let Some(tr) = t.step(Err("refused".into()), now)
                && tr.to == Health::Unhealthy
            {
                failed_at = Some(200 * i);
                break;
            }
            assert_eq!(t.next_due, now + STARTING_INTERVAL);
        }
        // Three failures counted 2 s apart, as without the fast start.
        assert_eq!(failed_at, Some(4000));
        let mut t = Tracker::new(t0, Duration::ZERO).fast();
        t.step(Err("refused".into()), ms(0));
        assert_eq!(t.step(Ok(()), ms(200)).map(|x| x.to), Some(Health::Healthy));
        assert_eq!(t.next_due, ms(200) + INTERVAL);
        t.step(Err("down".into()), ms(2200));
        assert_eq!(
            t.next_due,
            ms(2200) + INTERVAL,
            "normal cadence once answered"
        );
    }

    #[test]
    fn answered_once_is_remembered_through_later_failures() {
        let t0 = Instant::now();
        let mut t = Tracker::new(t0, Duration::ZERO);
        t.step(Err("refused".into()), t0);
        assert!(!t.answered);
        t.step(Ok(()), t0 + Duration::from_secs(2));
        for i in 2..6 {
            t.step(Err("down".into()), t0 + Duration::from_secs(2 * i));
        }
        assert_eq!((t.health, t.answered), (Health::Unhealthy, true));
    }

    #[test]
    fn prober_tracks_only_current_targets_and_hands_out_due_ones_once() {
        let p = Prober::default();
        let now = Instant::now();
        let target = |id: &str| Target {
            id: id.into(),
            name: format!("a_web_{id}"),
            app: "a".into(),
            service: "web".into(),
            probe: Probe {
                kind: ProbeKind::Tcp { port: 1 },
                timeout_seconds: 1,
                initial_delay_seconds: 0,
            },
            ip: "127.0.0.1".into(),
            network_mode: NetworkMode::Bridge,
        };
        p.sync(vec![target("1"), target("2")], now);
        assert_eq!(p.take_due(now).len(), 2);
        assert!(p.take_due(now).is_empty(), "in flight");
        p.sync(vec![target("2")], now);
        assert_eq!(p.health("1"), None);
        assert_eq!(p.health("2"), Some(Health::Starting));
        assert!(p.record("2", Ok(()), now).is_some());
        assert_eq!(p.health("2"), Some(Health::Healthy));
    }
}
