//! The log loop: every second, hand this node's containers to the log shipper (followers
//! for new ones, file polls for running ones); every minute, apply retention and forget the
//! checkpoints of containers that are gone.

use super::Core;
use crate::logs::{Export, LogTarget, Shipper};
use crate::metrics::cgroup::Cgroups;
use crate::metrics::sink::Sink;
use crate::model::InstanceState;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The sinks logs are exported to: InfluxDB sinks with `logs = true`, and syslog.
pub fn export_sinks(core: &Core) -> Vec<Sink> {
    let mut out: Vec<Sink> = core
        .metrics_cfg
        .influxdb
        .iter()
        .filter(|s| s.logs)
        .cloned()
        .map(Sink::Influx)
        .collect();
    out.extend(core.logs_cfg.syslog.iter().cloned().map(Sink::Syslog));
    out
}

/// Lines stored between retention passes at most (besides the minute).
const PRUNE_AFTER_LINES: u64 = 50_000;

pub async fn log_loop(core: Arc<Core>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let sinks = export_sinks(&core);
    let report: crate::metrics::sink::Report = {
        let core = core.clone();
        Arc::new(move |kind: &str, msg: &str| core.event(kind, "", "", msg))
    };
    core.metrics.ensure_senders(&core.store, &sinks, &report);
    let shipper = Shipper::start(
        core.store.clone(),
        core.runtime.clone(),
        &core.node_name,
        Export::new(&sinks, core.metrics_cfg.outbox_max_bytes),
    );
    core.metrics.set_log_counter(shipper.lines_total.clone());
    let cgroups = Cgroups::detect();
    let mut last_prune = Instant::now();
    let mut pruned_at = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return,
        }
        let Ok(instances) = core.instances().await else {
            continue;
        };
        let apps = core.store.list_apps().unwrap_or_default();
        let mut files: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        core.each_running_spec(&apps, &instances, |i, spec| {
            let f: BTreeMap<String, String> = spec
                .ext
                .logs
                .iter()
                .filter(|(_, p)| p.as_str() != "stdout")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if !f.is_empty() {
                files.insert(i.id.clone(), f);
            }
        });
        let targets: Vec<LogTarget> = instances
            .iter()
            .map(|i| {
                let running = i.state == InstanceState::Running;
                LogTarget {
                    id: i.id.clone(),
                    name: i.name.clone(),
                    app: i.app.clone(),
                    service: i.service.clone(),
                    version: i.version.clone(),
                    slot: i.slot,
                    running,
                    pid: if running { cgroups.pid(&i.id) } else { None },
                    files: files.remove(&i.id).unwrap_or_default(),
                }
            })
            .collect();
        shipper.sync(&targets).await;
        // Retention every minute, or sooner when many lines came in.
        let stored = shipper
            .lines_total
            .load(std::sync::atomic::Ordering::Relaxed);
        if last_prune.elapsed() >= Duration::from_secs(60)
            || stored >= pruned_at + PRUNE_AFTER_LINES
        {
            last_prune = Instant::now();
            pruned_at = stored;
            let (store, days, max) = (
                core.store.clone(),
                core.logs_cfg.retain_days,
                core.logs_cfg.max_bytes,
            );
            let ids: Vec<String> = instances.iter().map(|i| i.id.clone()).collect();
            let _ = tokio::task::spawn_blocking(move || {
                let n = crate::logs::prune(&store, days, max);
                if n > 0 {
                    tracing::info!(lines = n, "log retention pruned lines");
                }
                let _ = store.forget_log_checkpoints_except(&ids);
            })
            .await;
        }
    }
}
