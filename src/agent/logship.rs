//! The log loop: every second, hand this node's containers to the log shipper (followers
//! for new ones, file polls for running ones). Retention runs beside it on its own timer
//! (every minute, after 50,000 lines, or at once after a reload) and forgets the checkpoints
//! of containers that are gone: it never waits on the log writer or on collection, so when
//! the disk is full the space-freeing prune still runs.

use super::Core;
use crate::logs::{Export, LogTarget, Shipper};
use crate::metrics::cgroup::Cgroups;
use crate::model::InstanceState;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Lines stored between retention passes at most (besides the minute).
const PRUNE_AFTER_LINES: u64 = 50_000;

pub async fn log_loop(core: Arc<Core>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    // Senders are started by telemetry::sync_sinks; Export picks the sinks that take logs.
    let export = |s: &super::Settings| {
        Export::new(
            &super::telemetry::configured_sinks(s),
            s.metrics.outbox_max_bytes,
        )
    };
    let mut settings = core.settings();
    let shipper = Shipper::start(
        core.store.clone(),
        core.runtime.clone(),
        &core.node_name,
        export(&settings),
        core.metrics.log_lines.clone(),
        core.metrics.log_lines_dropped.clone(),
    );
    let _ = core.log_shipper.set(shipper.clone());
    tokio::spawn(retention_loop(core.clone(), shutdown.clone()));
    let cgroups = Cgroups::detect();
    // Log files per running container, as its version's spec names them: looked up (a read
    // of every app) only when a container shows up that was not running before.
    let mut files: HashMap<String, BTreeMap<String, String>> = HashMap::new();
    // The container list is asked of the engine again only after an engine event for this
    // node (a start, a die, ...) or every RELIST: a list of 100 containers costs dockerd
    // ~18 ms, and listing every second was most of what an idle agent cost the engine.
    let mut changes = core.engine_changes.subscribe();
    let mut instances = Vec::new();
    let mut listed_at: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => {
                // Lines read so far are stored with their checkpoints before the agent exits.
                shipper.close(Duration::from_secs(5)).await;
                return;
            }
        }
        let now_settings = core.settings();
        let reloaded = !Arc::ptr_eq(&now_settings, &settings);
        if reloaded {
            settings = now_settings;
            shipper.set_export(export(&settings));
        }
        if changes.has_changed().unwrap_or(true) || listed_at.is_none_or(|t| t.elapsed() >= RELIST)
        {
            // Marked seen before listing: an event during the list makes the next tick list.
            changes.borrow_and_update();
            let Ok(now) = core.instances().await else {
                continue;
            };
            instances = now;
            listed_at = Some(Instant::now());
        }
        let running = |i: &&crate::model::Instance| i.state == InstanceState::Running;
        if instances
            .iter()
            .filter(running)
            .any(|i| !files.contains_key(&i.id))
        {
            let apps = core.store.apps_shared().unwrap_or_default();
            files.clear();
            core.each_running_spec(&apps, &instances, |i, spec| {
                let f = spec
                    .ext
                    .logs
                    .iter()
                    .filter(|(_, p)| p.as_str() != "stdout")
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                files.insert(i.id.clone(), f);
            });
        }
        let targets: Vec<LogTarget> = instances
            .iter()
            .filter_map(|i| follows(i.state).map(|live| (i, live)))
            .map(|(i, live)| {
                let running = live;
                let files = if i.state == InstanceState::Running {
                    files.get(&i.id).cloned().unwrap_or_default()
                } else {
                    BTreeMap::new()
                };
                LogTarget {
                    id: i.id.clone(),
                    name: i.name.clone(),
                    app: i.app.clone(),
                    service: i.service.clone(),
                    version: i.version.clone(),
                    slot: i.slot,
                    running,
                    pid: (!files.is_empty()).then(|| cgroups.pid(&i.id)).flatten(),
                    files,
                }
            })
            .collect();
        shipper.sync(&targets).await;
    }
}

/// How a container in `state` is collected: `None` not yet (created, never started: it has
/// written nothing, and reading it now would mark it read to its end before it ran, so a job
/// container that then starts and exits within one listing would be removed with its lines
/// unread); `Some(true)` followed as it writes (running, and between restarts or paused:
/// more lines come); `Some(false)` read to its end once (exited, dead, being removed).
fn follows(state: InstanceState) -> Option<bool> {
    match state {
        InstanceState::Created => None,
        InstanceState::Running | InstanceState::Restarting | InstanceState::Paused => Some(true),
        InstanceState::Exited | InstanceState::Dead | InstanceState::Removing => Some(false),
    }
}

/// The longest the log shipper goes without asking the engine for the container list (in
/// case an engine event was lost).
const RELIST: Duration = Duration::from_secs(30);

/// Gives the heap's free pages back to the system. glibc keeps what a burst freed (a
/// thousand apps read, a deploy's parse) until then: RSS would count memory no one uses.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator; callable any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

async fn retention_loop(core: Arc<Core>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut settings = core.settings();
    let mut last_prune = Instant::now();
    let mut last_trim = Instant::now();
    let mut pruned_at = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return,
        }
        if last_trim.elapsed() >= Duration::from_secs(30) {
            last_trim = Instant::now();
            trim_heap();
        }
        let now_settings = core.settings();
        // A reload applies new retention at once.
        let reloaded = !Arc::ptr_eq(&now_settings, &settings);
        settings = now_settings;
        let stored = core.metrics.log_lines.load(Ordering::Relaxed);
        if !(reloaded
            || last_prune.elapsed() >= Duration::from_secs(60)
            || stored >= pruned_at + PRUNE_AFTER_LINES)
        {
            continue;
        }
        last_prune = Instant::now();
        pruned_at = stored;
        let (store, days, max) = (
            core.store.clone(),
            settings.logs.retain_days,
            settings.logs.max_bytes,
        );
        // Checkpoints are forgotten only when the engine said which containers exist.
        let ids: Option<Vec<String>> = core
            .instances()
            .await
            .ok()
            .map(|is| is.into_iter().map(|i| i.id).collect());
        let _ = tokio::task::spawn_blocking(move || {
            let _bg = crate::pace::Background::enter();
            let n = crate::logs::prune(&store, days, max);
            if n > 0 {
                tracing::info!(lines = n, "log retention pruned lines");
            }
            if let Some(ids) = ids {
                let _ = store.forget_log_checkpoints_except(&ids);
            }
        })
        .await;
    }
}

/// The router's access log (`[router] access_log`): its records, in batches, into the log
/// store as the router's own stream (`_router/access`), exported like any container's lines.
/// How long access records gather between two writes, unless a worker thread's buffer
/// reaches `stats::ACCESS_FILLED_BYTES` first (nginx's buffered access log flushes each
/// second too). Each round costs the same few wake-ups, a transaction and the pages it
/// rewrites whatever it holds: at one connection on a 2-CPU VM the agent's background CPU per
/// request was about a quarter lower with these rounds than with 100 ms ones (BENCHMARKS.md,
/// issue 23).
const ACCESS_GATHER: Duration = Duration::from_secs(1);

pub async fn access_loop(
    core: Arc<Core>,
    log: Arc<crate::router::stats::AccessLog>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut spare_bufs = Vec::new();
    loop {
        tokio::select! {
            _ = log.ready() => {}
            _ = shutdown.changed() => return,
        }
        // Then a pause: records gather in the buffers meanwhile, and no request wakes the
        // writer but one that fills a buffer half (a wake-up per request at full load cost
        // the router a third of its throughput).
        tokio::select! {
            _ = tokio::time::sleep(ACCESS_GATHER) => {}
            _ = log.filled() => {}
            _ = shutdown.changed() => {}
        }
        // The log writer starts with the log loop, a moment after the router.
        let shipper = loop {
            if let Some(s) = core.log_shipper.get() {
                break s.clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        // Thousands of records a round: background work, in short turns (`pace`), packed
        // straight from the router's buffers into the store's rows (no line each).
        let (log2, node) = (log.clone(), core.node_name.clone());
        let mut spares = std::mem::take(&mut spare_bufs);
        let Ok((packed, spares)) = tokio::task::spawn_blocking(move || {
            let _bg = crate::pace::Background::turns();
            let mut packed = crate::store::Packed::new(access_source(node));
            log2.take(&mut spares, |time_ns, line| {
                packed.push(time_ns, &String::from_utf8_lossy(line));
            });
            (packed, spares)
        })
        .await
        else {
            // A panic while packing records: those records are lost, not the access log.
            tracing::error!("the router's access records could not be packed into rows");
            continue;
        };
        spare_bufs = spares;
        let n = packed.lines() as u64;
        if n > 0 && shipper.store_packed(packed).await {
            core.router.access_logged(n);
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

/// The source of the router's access records in the log store (`_router/access`).
fn access_source(node: String) -> crate::store::LogLine {
    crate::store::LogLine {
        app: crate::logs::ROUTER_APP.to_string(),
        service: "access".to_string(),
        node,
        container: "router".to_string(),
        stream: "access".to_string(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_container_not_yet_started_is_not_read_to_its_end() {
        assert_eq!(follows(InstanceState::Created), None);
        for s in [
            InstanceState::Running,
            InstanceState::Restarting,
            InstanceState::Paused,
        ] {
            assert_eq!(follows(s), Some(true), "{s:?}");
        }
        for s in [
            InstanceState::Exited,
            InstanceState::Dead,
            InstanceState::Removing,
        ] {
            assert_eq!(follows(s), Some(false), "{s:?}");
        }
    }
}
