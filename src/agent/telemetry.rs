//! The metrics loop: every interval, gather this node's containers (one engine list call),
//! read their cgroups and the host (metrics::collect, on a blocking thread), add custom app
//! metrics, queue the points for every sink in the outbox, evaluate alarms, and publish the
//! snapshot for the API (`/metrics`, `top`, `metrics APP`).

use super::Core;
use crate::metrics::cgroup::Cgroups;
use crate::metrics::collect::{self, Collector, Target};
use crate::metrics::history::Alarms;
use crate::metrics::line::{Point, encode_batches};
use crate::metrics::sink::{InfluxSink, MAX_BATCH_LINES, Report, Sink};
use crate::model::{Health, Instance};
use crate::store::StoredApp;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
        labels: i.labels.clone(),
    }
}

/// Per-service add-on sinks (`monitoring.addon.influxdb`): (app, service, sink).
fn addon_sinks(apps: &[std::sync::Arc<StoredApp>]) -> Vec<(String, String, InfluxSink)> {
    let mut out = Vec::new();
    for a in apps {
        for (name, s) in &a.spec.services {
            if let Some(url) = s.ext.monitoring.as_ref().and_then(|m| m.influxdb.as_ref()) {
                out.push((a.spec.name.clone(), name.clone(), InfluxSink::addon(url)));
            }
        }
    }
    out
}

/// Reports a sink's state changes as agent events.
pub fn sink_report(core: &Arc<Core>) -> Report {
    let core = core.clone();
    Arc::new(move |msg: &str| core.event(crate::model::EventKind::Sink, "", "", msg))
}

/// The sinks berth.toml names: `[[metrics.influxdb]]` and `[[logs.syslog]]`.
pub fn configured_sinks(s: &super::Settings) -> Vec<Sink> {
    s.metrics
        .influxdb
        .iter()
        .cloned()
        .map(Sink::Influx)
        .chain(s.logs.syslog.iter().cloned().map(Sink::Syslog))
        .collect()
}

/// Makes the running senders match the settings in force (at start and after a reload):
/// starts the senders of the configured sinks (metrics, log export and the add-ons the
/// deployed apps name), stops those of sinks no longer configured and drops their queues,
/// which would otherwise hold their share of the outbox bound for ever. Returns how many
/// sinks there are.
pub fn sync_sinks(core: &Arc<Core>) -> usize {
    let sinks = configured_sinks(&core.settings());
    let apps = core.store.apps_shared().unwrap_or_default();
    let mut keys: Vec<String> = sinks.iter().map(Sink::key).collect();
    keys.extend(addon_sinks(&apps).iter().map(|(_, _, s)| s.key()));
    // Alarm notices wait for their webhooks across restarts.
    let hooks = notify_sinks(&alarm_rules(core), &core.settings().metrics.notify.to);
    keys.extend(hooks.iter().map(Sink::key));
    core.metrics
        .ensure_senders(&core.store, &hooks, &sink_report(core));
    core.metrics
        .stop_senders_except(&keys.iter().cloned().collect());
    match core.store.outbox_forget_except(&keys) {
        Ok(n) if n > 0 => core.event(
            crate::model::EventKind::Sink,
            "",
            "",
            &format!("dropped {n} queued batches of sinks no longer configured"),
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot clear the outbox of old sinks"),
    }
    core.metrics
        .ensure_senders(&core.store, &sinks, &sink_report(core));
    keys.len()
}

pub async fn metrics_loop(core: Arc<Core>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let host = crate::config::host_name();
    let global_sinks = |s: &super::Settings| -> Arc<Vec<Sink>> {
        Arc::new(
            s.metrics
                .influxdb
                .iter()
                .cloned()
                .map(Sink::Influx)
                .collect(),
        )
    };
    // The interval and the sinks as of the settings last seen (a reload replaces them).
    let mut settings = core.settings();
    let mut step = settings.metrics.interval_ms as i64 * 1_000_000;
    let mut global = global_sinks(&settings);
    let mut collector = Some(Collector::new(Cgroups::detect()));
    let mut alarms = Alarms::default();
    let report = sink_report(&core);
    let http = super::custom::http_agent();
    // Custom metrics (scripts run in containers, HTTP scrapes) run beside the cycle, as
    // Telegraf's inputs do: a slow one never delays the container and host figures, and while
    // one is still running at the next tick that tick has no custom metrics.
    let mut custom: Option<tokio::task::JoinHandle<Reported>> = None;
    let mut reported = Some(Reported::new());
    // Cycles run on multiples of the interval (as Telegraf's round_interval does) and every
    // point of a cycle carries its tick as its time.
    let mut tick = next_tick(crate::timefmt::now_ns(), step);
    loop {
        let now_settings = core.settings();
        if !Arc::ptr_eq(&now_settings, &settings) {
            settings = now_settings;
            global = global_sinks(&settings);
            if settings.metrics.interval_ms as i64 * 1_000_000 != step {
                step = settings.metrics.interval_ms as i64 * 1_000_000;
                tick = next_tick(crate::timefmt::now_ns(), step);
            }
        }
        let now = crate::timefmt::now_ns();
        if tick - now > step {
            // The clock went back: start again from the next multiple.
            tick = next_tick(now, step);
        }
        let wait = Duration::from_nanos((tick - now).max(0) as u64);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
        let at = tick;
        let started = Instant::now();
        match core.instances().await {
            Ok(instances) => {
                let ids: HashSet<&str> = instances.iter().map(|i| i.id.as_str()).collect();
                core.metrics.retain_counters(&ids);
                let targets: Vec<Target> = instances.iter().map(|i| target(&core, i)).collect();
                let Some(mut c) = collector.take() else {
                    return;
                };
                let (node, host2) = (core.node_name.clone(), host.clone());
                let joined = tokio::task::spawn_blocking(move || {
                    let s = c.collect(&host2, &node, targets, at);
                    (c, s)
                })
                .await;
                let Ok((c, mut snapshot)) = joined else {
                    tracing::error!("metrics: the collector panicked; metrics stop");
                    return;
                };
                // Telegraf's docker input: the engine's /info, one call per cycle.
                snapshot.engine =
                    tokio::time::timeout(Duration::from_secs(2), core.runtime.engine_info())
                        .await
                        .ok()
                        .and_then(Result::ok);
                collector = Some(c);
                let apps = core.store.apps_shared().unwrap_or_default();
                queue(&core, &apps, &global, &report, &collect::points(&snapshot));
                for ev in alarms.evaluate(&alarm_rules(&core), &snapshot) {
                    let kind = if ev.state == "raised" {
                        crate::model::EventKind::Alarm
                    } else {
                        crate::model::EventKind::AlarmCleared
                    };
                    core.event(kind, &ev.app, &ev.service, &ev.message);
                    notify(&core, &report, &host, &ev);
                }
                for n in core.take_notices() {
                    let mut doc = serde_json::to_value(&n).unwrap_or_default();
                    doc["host"] = host.as_str().into();
                    let to = core.settings().metrics.notify.to.clone();
                    let series = format!("{}-event", n.kind);
                    send_notice(
                        &core,
                        &report,
                        &host,
                        &to,
                        &doc,
                        (&n.app, &n.service, &series),
                        &n.message,
                    );
                }
                super::autoscale::after_cycle(&core, &apps, &snapshot);
                core.metrics.set_latest(snapshot, started.elapsed());
                if let Some(h) = custom.take_if(|h| h.is_finished()) {
                    reported = Some(h.await.unwrap_or_default());
                }
                match reported.take() {
                    Some(mut r) => {
                        let (core, global, report) = (core.clone(), global.clone(), report.clone());
                        let http = http.clone();
                        custom = Some(tokio::spawn(async move {
                            let points =
                                super::custom::collect(&core, &apps, &instances, at, &http, &mut r)
                                    .await;
                            core.metrics.set_custom(points.clone());
                            if !points.is_empty() {
                                queue(&core, &apps, &global, &report, &points);
                            }
                            r
                        }));
                    }
                    None => tracing::warn!(
                        "metrics: custom metrics of the last cycle still running; none this cycle"
                    ),
                }
            }
            Err(e) => tracing::warn!(error = %e, "metrics: cannot list containers"),
        }
        // The next tick; ticks a slow cycle ran over are skipped and counted.
        let now = crate::timefmt::now_ns();
        tick += step;
        if now >= tick {
            let missed = (now - tick) / step + 1;
            tick += missed * step;
            core.metrics.note_skipped_cycles(missed as u64);
            tracing::warn!(missed, "metrics: a collection cycle ran over the interval");
        }
    }
}

type Reported = std::collections::HashMap<String, String>;

/// The first multiple of `step` after `now`.
fn next_tick(now: i64, step: i64) -> i64 {
    now - now.rem_euclid(step) + step
}

/// Rules from berth.toml, then those added with `berth alarm add`.
pub fn alarm_rules(core: &Core) -> Vec<crate::metrics::history::AlarmRule> {
    let mut rules = core.settings().metrics.alarms.clone();
    for json in core.store.alarms().unwrap_or_default() {
        match serde_json::from_str(&json) {
            Ok(r) => rules.push(r),
            Err(e) => tracing::warn!(error = %e, "an unreadable stored alarm rule is skipped"),
        }
    }
    rules
}

/// The webhook sinks the alarm rules notify.
fn notify_sinks(rules: &[crate::metrics::history::AlarmRule], events: &[String]) -> Vec<Sink> {
    let mut urls: Vec<String> = rules
        .iter()
        .flat_map(|r| &r.notify)
        .chain(events)
        .filter_map(|n| crate::metrics::history::notify_webhook(n).ok())
        .map(str::to_string)
        .collect();
    urls.sort();
    urls.dedup();
    urls.into_iter().map(Sink::Webhook).collect()
}

/// Queues an alarm's raise or clear for each webhook its rule names, in the durable outbox:
/// a receiver that is down gets it once it is back.
fn notify(core: &Arc<Core>, report: &Report, host: &str, ev: &crate::metrics::history::AlarmEvent) {
    if ev.notify.is_empty() {
        return;
    }
    let mut doc = serde_json::to_value(ev).unwrap_or_default();
    doc["host"] = host.into();
    doc["time_ms"] = crate::clock::now_ms().into();
    send_notice(
        core,
        report,
        host,
        &ev.notify,
        &doc,
        (&ev.app, &ev.service, &ev.series),
        &ev.message,
    );
}

/// Queues one notice (`doc` as JSON for each webhook of `to`, `message` as a syslog line
/// when `to` names syslog) in the durable outbox: a receiver that is down gets it once it is
/// back. `what` is (app, service, series).
fn send_notice(
    core: &Arc<Core>,
    report: &Report,
    host: &str,
    to: &[String],
    doc: &serde_json::Value,
    what: (&str, &str, &str),
    message: &str,
) {
    let body = doc.to_string().into_bytes();
    let max = core.settings().metrics.outbox_max_bytes;
    if to.iter().any(|n| n == "syslog") {
        let line = crate::store::LogLine {
            time_ns: crate::timefmt::now_ns(),
            app: what.0.to_string(),
            service: what.1.to_string(),
            node: host.to_string(),
            container: what.2.to_string(),
            stream: "alarm".into(),
            message: message.to_string(),
            ..Default::default()
        };
        for s in &core.settings().logs.syslog {
            let mut body = crate::logs::export::syslog(&line, s.facility());
            body.push('\n');
            if let Err(e) = core
                .store
                .outbox_push(&s.key(), &[(1, body.into_bytes())], max)
            {
                tracing::warn!(sink = %s.key(), error = %e, "cannot queue an alarm notice");
            }
        }
    }
    for n in to {
        let Ok(url) = crate::metrics::history::notify_webhook(n) else {
            continue;
        };
        let sink = Sink::Webhook(url.to_string());
        core.metrics
            .ensure_senders(&core.store, std::slice::from_ref(&sink), report);
        if let Err(e) = core
            .store
            .outbox_push(&sink.key(), &[(1, body.clone())], max)
        {
            tracing::warn!(sink = %sink.key(), error = %e, "cannot queue an alarm notice");
        }
    }
}

/// Queues the cycle's points: all of them for every configured sink, each service's own
/// series for its add-on sink.
fn queue(
    core: &Arc<Core>,
    apps: &[std::sync::Arc<StoredApp>],
    global: &[Sink],
    report: &Report,
    points: &[Point],
) {
    let max = core.settings().metrics.outbox_max_bytes;
    if !global.is_empty() {
        let rows = encode_batches(points, MAX_BATCH_LINES);
        for s in global {
            if let Err(e) = core.store.outbox_push(&s.key(), &rows, max) {
                tracing::warn!(sink = %s.key(), error = %e, "cannot queue metrics");
            }
        }
    }
    let mut by_sink: BTreeMap<String, (Sink, Vec<&Point>)> = BTreeMap::new();
    for (app, service, sink) in addon_sinks(apps) {
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
        let rows = encode_batches(pts, MAX_BATCH_LINES);
        if let Err(e) = core.store.outbox_push(&key, &rows, max) {
            tracing::warn!(sink = %key, error = %e, "cannot queue metrics");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ticks_are_the_next_multiple_of_the_interval() {
        assert_eq!(super::next_tick(0, 10), 10);
        assert_eq!(super::next_tick(9, 10), 10);
        assert_eq!(super::next_tick(10, 10), 20);
        assert_eq!(super::next_tick(-1, 10), 0);
    }
}
