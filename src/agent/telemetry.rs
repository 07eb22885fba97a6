//! The metrics loop: every interval, gather this node's containers (one engine list call),
//! read their cgroups and the host (metrics::collect, on a blocking thread), add custom app
//! metrics, queue the points for every sink in the outbox, evaluate alarms, and publish the
//! snapshot for the API (`/metrics`, `top`, `metrics APP`).

use super::Core;
use crate::metrics::collect::{self, Collector, Target};
use crate::metrics::history::Alarms;
use crate::metrics::line::Point;
use crate::metrics::sink::{InfluxSink, MAX_BATCH_LINES, Sink};
use crate::metrics::{MetricsConfig, cgroup::Cgroups};
use crate::model::{Health, Instance};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The OS host name (Telegraf's `host` tag).
fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

fn target(core: &Core, i: &Instance) -> Target {
    let (restarts, oom) = core.metrics.counters(&i.id);
    Target {
        id: i.id.clone(),
        name: i.name.clone(),
        image: i.image.clone(),
        app: i.app.clone(),
        service: i.service.clone(),
        version: i.version.clone(),
        slot: i.slot,
        status: i.state.as_str().to_string(),
        health: match i.health {
            Health::None => None,
            Health::Failed => Some("unhealthy".into()),
            h => Some(h.as_str().to_string()),
        },
        failing_streak: u32::from(matches!(i.health, Health::Unhealthy | Health::Failed)),
        exit_code: i.exit_code.unwrap_or(0),
        restart_count: restarts,
        oom_killed: oom,
    }
}

/// Encodes points into outbox rows of at most [`MAX_BATCH_LINES`] lines.
pub fn encode_rows<'a>(points: impl Iterator<Item = &'a Point>) -> Vec<(i64, Vec<u8>)> {
    let mut rows = Vec::new();
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut n = 0;
    for p in points {
        if p.encode(&mut buf) {
            n += 1;
        }
        if n == MAX_BATCH_LINES {
            rows.push((n, std::mem::take(&mut buf)));
            n = 0;
        }
    }
    if n > 0 {
        rows.push((n, buf));
    }
    rows
}

/// Per-service add-on sinks (`monitoring.addon.influxdb`): (app, service, sink).
fn addon_sinks(core: &Core) -> Vec<(String, String, InfluxSink)> {
    let apps = core.store.list_apps().unwrap_or_default();
    let mut out = Vec::new();
    for a in &apps {
        for (name, s) in &a.spec.services {
            if let Some(url) = s.ext.monitoring.as_ref().and_then(|m| m.influxdb.as_ref()) {
                out.push((a.spec.name.clone(), name.clone(), InfluxSink::addon(url)));
            }
        }
    }
    out
}

pub async fn metrics_loop(
    core: Arc<Core>,
    cfg: MetricsConfig,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let host = host_name();
    let interval = Duration::from_millis(cfg.interval_ms);
    let mut collector = Some(Collector::new(Cgroups::detect()));
    let mut alarms = Alarms::default();
    let mut reported = std::collections::HashMap::new();
    let report: crate::metrics::sink::Report = {
        let core = core.clone();
        Arc::new(move |kind: &str, msg: &str| core.event(kind, "", "", msg))
    };
    let global: Vec<Sink> = cfg.influxdb.iter().cloned().map(Sink::Influx).collect();
    core.metrics.ensure_senders(&core.store, &global, &report);
    loop {
        // Cycles start on multiples of the interval (as Telegraf's round_interval does).
        let now = crate::timefmt::now_ns();
        let step = cfg.interval_ms as i64 * 1_000_000;
        let wait = Duration::from_nanos((step - now.rem_euclid(step)) as u64).min(interval);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
        let started = Instant::now();
        let instances = match core.instances().await {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(error = %e, "metrics: cannot list containers");
                continue;
            }
        };
        let ids: HashSet<&str> = instances.iter().map(|i| i.id.as_str()).collect();
        core.metrics.retain_counters(&ids);
        let targets: Vec<Target> = instances.iter().map(|i| target(&core, i)).collect();
        let Some(mut c) = collector.take() else {
            return;
        };
        let (node, host2) = (core.node_name.clone(), host.clone());
        let at = crate::timefmt::now_ns();
        let joined = tokio::task::spawn_blocking(move || {
            let s = c.collect(&host2, &node, targets, at);
            (c, s)
        })
        .await;
        let Ok((c, snapshot)) = joined else {
            tracing::error!("metrics: the collector panicked; metrics stop");
            return;
        };
        collector = Some(c);
        let mut points = collect::points(&snapshot);
        points.extend(super::custom::collect(&core, &instances, at, &mut reported).await);
        queue(&core, &cfg, &global, &report, &points);
        for (raised, app, service, msg) in alarms.evaluate(&alarm_rules(&core, &cfg), &snapshot) {
            core.event(
                if raised { "alarm" } else { "alarm-cleared" },
                &app,
                &service,
                &msg,
            );
        }
        core.metrics.set_latest(snapshot, started.elapsed());
    }
}

/// Rules from berth.toml, then those added with `berth alarm add`.
pub fn alarm_rules(core: &Core, cfg: &MetricsConfig) -> Vec<crate::metrics::history::AlarmRule> {
    let mut rules = cfg.alarms.clone();
    for json in core.store.alarms().unwrap_or_default() {
        match serde_json::from_str(&json) {
            Ok(r) => rules.push(r),
            Err(e) => tracing::warn!(error = %e, "an unreadable stored alarm rule is skipped"),
        }
    }
    rules
}

/// Queues the cycle's points: all of them for every configured sink, each service's own
/// series for its add-on sink.
fn queue(
    core: &Arc<Core>,
    cfg: &MetricsConfig,
    global: &[Sink],
    report: &crate::metrics::sink::Report,
    points: &[Point],
) {
    if !global.is_empty() {
        let rows = encode_rows(points.iter());
        for s in global {
            if let Err(e) = core
                .store
                .outbox_push(&s.key(), &rows, cfg.outbox_max_bytes)
            {
                tracing::warn!(sink = %s.key(), error = %e, "cannot queue metrics");
            }
        }
    }
    let mut by_sink: BTreeMap<String, (Sink, Vec<&Point>)> = BTreeMap::new();
    for (app, service, sink) in addon_sinks(core) {
        let mine = points.iter().filter(|p| {
            p.tag_value("app") == Some(&app) && p.tag_value("service") == Some(&service)
        });
        let e = by_sink
            .entry(sink.key())
            .or_insert_with(|| (Sink::Influx(sink.clone()), Vec::new()));
        e.1.extend(mine);
    }
    let sinks: Vec<Sink> = by_sink.values().map(|(s, _)| s.clone()).collect();
    core.metrics.ensure_senders(&core.store, &sinks, report);
    for (key, (_, pts)) in by_sink {
        let rows = encode_rows(pts.into_iter());
        if let Err(e) = core.store.outbox_push(&key, &rows, cfg.outbox_max_bytes) {
            tracing::warn!(sink = %key, error = %e, "cannot queue metrics");
        }
    }
}
