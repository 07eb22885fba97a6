//! Jobs (issue 21): an app whose services are tasks (`project_type: batch`, or a
//! `schedule`) runs to completion as numbered runs. This module is the runner: it turns due
//! schedules into queued runs, starts one run of a job at a time, starts each task's
//! containers when every task it depends on finished (`plan::jobs`), retries a failed
//! container slot with a backoff, applies `remove_containers`, and keeps the history.
//!
//! Invariants: a run is recorded before anything of it starts and an attempt before its
//! container is made; the container carries both in its name and labels. The runner reads
//! what it does next from the store and the engine alone, so a `kill -9` at any moment
//! loses no result and starts nothing twice: an attempt recorded whose container does not
//! exist yet is made now; one that was started and whose container is gone counts as
//! failed. Reconcile passes leave job apps and job containers alone (`Core::reconcile`).
//! Cron: the owner of the app runs its schedule (in a cluster, once for the cluster).
//! In a cluster a task's slots are placed as a service's are (the owner's assignments); the
//! owner asks the member a slot is placed on to make and start its attempt (a sealed
//! forwarded request, `POST /v1/apps/A/job/here/...`), sees its exit in that member's
//! instance records, and asks it to remove or stop it.

use super::Core;
use crate::model::{DEFAULT_REMOVE_CONTAINERS, EventKind, InstanceState, JobRef};
use crate::plan::jobs::{self as plan, Attempt, State, Step, Task};
use crate::store::{AttemptRow, RunRow, StoredApp};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// At most this many runs of one job wait behind the running one; further due runs are
/// dropped (and said as events).
pub const QUEUE: usize = 3;
/// Runs kept in a job's history unless `schedule.history` says otherwise.
pub const HISTORY: u32 = 10;
/// A run due while the agent was down starts at startup when at most this late, unless
/// `schedule.starting_deadline_seconds` says otherwise.
pub const DEADLINE_S: u32 = 60;
/// How long the runner sleeps at most while runs are active (an exit is seen within it).
const ACTIVE_TICK: Duration = Duration::from_millis(250);
/// ... and while none is (a deploy or a command wakes it at once).
const IDLE_TICK: Duration = Duration::from_secs(5);
/// A removal waits for the container's logs to be read to their end, this long at most.
const LOGS_WAIT_MS: i64 = 30_000;
/// An attempt started on another member shows in its records within this long, or it is
/// counted as gone.
const REMOTE_SHOW_MS: i64 = 30_000;

/// The runner's state in the agent.
#[derive(Default)]
pub(crate) struct Jobs {
    bell: tokio::sync::Notify,
    /// Held by a runner pass and by `job cancel` (which must not meet a pass half-way).
    pass: tokio::sync::Mutex<()>,
    /// The job definitions must be read again (a deploy, a removal, a command).
    stale: AtomicBool,
    defs: std::sync::Mutex<Vec<Def>>,
    /// Containers waiting for their logs before `remove_containers` removes them, by id.
    removals: std::sync::Mutex<BTreeMap<String, Removal>>,
    /// The cluster, once the API attached it (attempts placed on other members).
    hub: std::sync::OnceLock<std::sync::Weak<crate::cluster::hub::Hub>>,
    /// Attempts placed on a member that did not know the app yet (its records arrive a
    /// moment after the deploy), by container name: since when they wait.
    waiting: std::sync::Mutex<BTreeMap<String, i64>>,
}

#[derive(Debug, Clone)]
struct Removal {
    name: String,
    app: String,
    /// The member it runs on (empty: here).
    node: String,
    since_ms: i64,
}

/// A job container as the runner sees it, here or on another member.
#[derive(Debug, Clone)]
struct Seen {
    /// The engine's id (here only).
    id: String,
    state: InstanceState,
    exit_code: Option<i64>,
    finished_ms: Option<i64>,
    /// Empty: here; else the member, and whether it is alive.
    node: String,
    alive: bool,
}

/// What the owner asks a member to do with one attempt (`/v1/apps/A/job/here/ACTION`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct HereRequest {
    pub run: u64,
    pub task: String,
    pub slot: u32,
    pub attempt: u32,
}

/// One job as the runner needs it.
#[derive(Debug, Clone)]
struct Def {
    app: String,
    tasks: Vec<Task>,
    /// `remove_containers` of the tasks whose policy is not the default (`remove-finished`):
    /// a thousand jobs keep no map each.
    remove: Vec<(String, String)>,
    history: u32,
    cron: Option<Cron>,
}

#[derive(Debug, Clone)]
struct Cron {
    text: String,
    schedule: crate::spec::cron::Schedule,
    tz: jiff::tz::TimeZone,
    deadline_ms: i64,
    suspended: bool,
    /// The last due time handled (0: none yet; counting starts when the job is first seen).
    last_due_ms: i64,
    /// The next due time after it (None until the job was first seen).
    next_ms: Option<i64>,
}

impl Cron {
    fn next_after(&self, ms: i64) -> Option<i64> {
        let t = jiff::Timestamp::from_millisecond(ms).ok()?;
        self.schedule
            .next_after(t, &self.tz)
            .map(|t| t.as_millisecond())
    }
}

/// Whether `app` is a job (its services are tasks).
pub fn is_job(app: &StoredApp) -> bool {
    app.spec.services.values().any(|s| s.ext.job.is_some())
}

fn job_spec(app: &StoredApp) -> Option<&crate::model::JobSpec> {
    app.spec.services.values().find_map(|s| s.ext.job.as_ref())
}

fn def_of(app: &StoredApp, schedule_state: (bool, i64)) -> Option<Def> {
    let j = job_spec(app)?;
    let names = crate::spec::start_order(&app.spec);
    let tasks = names
        .iter()
        .filter_map(|n| {
            let s = app.spec.services.get(n)?;
            Some(Task {
                name: n.clone(),
                slots: app.replicas(n),
                depends: s
                    .depends_on
                    .iter()
                    .filter(|d| app.spec.services.contains_key(*d))
                    .cloned()
                    .collect(),
                retry_count: s.ext.job.as_ref().map_or(3, |j| j.retry_count),
            })
        })
        .collect();
    let remove = app
        .spec
        .services
        .iter()
        .filter_map(|(n, s)| {
            let j = s.ext.job.as_ref()?;
            (j.remove_containers != DEFAULT_REMOVE_CONTAINERS)
                .then(|| (n.clone(), j.remove_containers.clone()))
        })
        .collect();
    let cron = j.schedule.as_ref().and_then(|text| {
        let schedule = crate::spec::cron::Schedule::parse(text).ok()?;
        let tz = match &j.timezone {
            Some(name) => jiff::tz::TimeZone::get(name).ok()?,
            None => jiff::tz::TimeZone::system(),
        };
        let mut c = Cron {
            text: text.clone(),
            schedule,
            tz,
            deadline_ms: i64::from(j.starting_deadline_seconds.unwrap_or(DEADLINE_S)) * 1000,
            suspended: schedule_state.0,
            last_due_ms: schedule_state.1,
            next_ms: None,
        };
        if c.last_due_ms > 0 {
            c.next_ms = c.next_after(c.last_due_ms);
        }
        Some(c)
    });
    Some(Def {
        app: app.spec.name.clone(),
        tasks,
        remove,
        history: j.history.unwrap_or(HISTORY),
        cron,
    })
}

/// The run's attempts as `plan::jobs` reads them: per task, per slot, the exit codes.
fn history(tasks: &[Task], attempts: &[AttemptRow]) -> BTreeMap<String, Vec<Vec<Attempt>>> {
    let mut h: BTreeMap<String, Vec<Vec<Attempt>>> = BTreeMap::new();
    for t in tasks {
        h.insert(t.name.clone(), vec![Vec::new(); t.slots as usize]);
    }
    for a in attempts {
        let Some(slots) = h.get_mut(&a.task) else {
            continue;
        };
        let i = a.slot.saturating_sub(1) as usize;
        if i >= slots.len() {
            slots.resize(i + 1, Vec::new());
        }
        slots[i].push(a.exit_code);
    }
    h
}

/// The wait before attempt `attempt` (2 = the first retry): 1 s, 2 s, 4 s ... 30 s.
pub fn backoff_ms(attempt: u32) -> i64 {
    let n = attempt.saturating_sub(2).min(5);
    (1000i64 << n).min(30_000)
}

fn state_str(s: State) -> &'static str {
    match s {
        State::Waiting => "waiting",
        State::Running => "running",
        State::Finished => "finished",
        State::Failed => "failed",
        State::Skipped => "skipped",
    }
}

/// (task, slot, run, attempt) from a job container's name `{app}_{task}_{slot}.{run}.{attempt}`.
pub fn parse_job_name(app: &str, name: &str) -> Option<(String, u32, u64, u32)> {
    let rest = name.strip_prefix(app)?.strip_prefix('_')?;
    let (task, nums) = rest.rsplit_once('_')?;
    let mut it = nums.split('.');
    let slot = it.next()?.parse().ok()?;
    let run = it.next()?.parse().ok()?;
    let attempt = it.next()?.parse().ok()?;
    if it.next().is_some() || task.is_empty() {
        return None;
    }
    Some((task.to_string(), slot, run, attempt))
}

/// Whether `policy` removes a container that exited with `code`.
fn removes(policy: &str, code: i64) -> bool {
    match policy {
        "remove-all" => true,
        "remove-failed" => code != 0,
        "remove-none" => false,
        _ => code == 0,
    }
}

fn secs(ms: i64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

impl Jobs {
    /// Something changed the jobs (a deploy, a removal, a command): read them again now.
    pub(crate) fn touch(&self) {
        self.stale.store(true, Ordering::Release);
        self.bell.notify_one();
    }

    /// Holds the runner between passes (while an app is removed, so no pass records a
    /// run or an attempt of it meanwhile); the definitions are read again after.
    pub(crate) async fn hold(&self) -> tokio::sync::MutexGuard<'_, ()> {
        let g = self.pass.lock().await;
        self.stale.store(true, Ordering::Release);
        g
    }

    pub fn attach_cluster(&self, hub: &Arc<crate::cluster::hub::Hub>) {
        let _ = self.hub.set(Arc::downgrade(hub));
    }

    fn hub(&self) -> Option<Arc<crate::cluster::hub::Hub>> {
        self.hub.get()?.upgrade().filter(|h| h.active())
    }
}

pub(super) async fn job_loop(core: Arc<Core>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    core.jobs.stale.store(true, Ordering::Release);
    loop {
        let wait = match core.jobs_tick().await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "job runner pass failed; trying again");
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = core.jobs.bell.notified() => {}
            _ = shutdown.changed() => return,
        }
    }
}

impl Core {
    /// One pass of the runner; how long to sleep before the next.
    async fn jobs_tick(&self) -> Result<Duration, super::CoreError> {
        let _pass = self.jobs.pass.lock().await;
        if self.jobs.stale.swap(false, Ordering::AcqRel) {
            let apps = self.store.apps_shared()?;
            let states = self.store.job_schedules()?;
            let mut defs = Vec::new();
            for a in apps.iter().filter(|a| is_job(a) && !a.stopped) {
                let st = states.get(&a.spec.name).copied().unwrap_or((false, 0));
                defs.extend(def_of(a, st));
            }
            *self.jobs.defs.lock().unwrap_or_else(|p| p.into_inner()) = defs;
        }
        let now = crate::clock::now_ms();
        // Only the cron jobs due now are looked at (a thousand idle ones cost a comparison
        // each); each keeps its next due time.
        let due: Vec<Def> = self
            .jobs
            .defs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|d| {
                d.cron
                    .as_ref()
                    .is_some_and(|c| !c.suspended && c.next_ms.is_none_or(|n| n <= now))
            })
            .cloned()
            .collect();
        for d in &due {
            let (next, last) = self.schedule(d, now)?;
            let mut defs = self.jobs.defs.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(c) = defs
                .iter_mut()
                .find(|x| x.app == d.app)
                .and_then(|x| x.cron.as_mut())
            {
                c.last_due_ms = last;
                // No fire time left (a schedule that never matches again): never due.
                c.next_ms = Some(next.unwrap_or(i64::MAX));
            }
        }
        let next_due = self
            .jobs
            .defs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(|d| d.cron.as_ref().filter(|c| !c.suspended)?.next_ms)
            .min();
        let active = self.store.active_runs()?;
        let removals = !self
            .jobs
            .removals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty();
        if !active.is_empty() || removals {
            let instances = self.job_containers().await?;
            let mut by_app: BTreeMap<&str, Vec<&RunRow>> = BTreeMap::new();
            for r in &active {
                by_app.entry(r.app.as_str()).or_default().push(r);
            }
            for (app, runs) in by_app {
                let def = self
                    .jobs
                    .defs
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                    .find(|d| d.app == app)
                    .cloned();
                let Some(d) = def.as_ref() else {
                    // `berth stop` of a job: its running run is cancelled (the queued ones
                    // wait for `berth start`).
                    if let Some(stored) = self.store.get_app(app)?.filter(|a| a.stopped)
                        && let Some(r) = runs.iter().find(|r| r.state == "running")
                    {
                        let mut r = (*r).clone();
                        self.cancel_run(&stored, &mut r, "the job was stopped")
                            .await?;
                    }
                    continue;
                };
                let run = match runs.iter().find(|r| r.state == "running") {
                    Some(r) => (*r).clone(),
                    None => {
                        let mut r = (*runs[0]).clone();
                        self.start_run(&mut r, now)?;
                        r
                    }
                };
                self.advance(d, run, &instances).await?;
            }
            self.remove_drained(&instances).await;
        }
        let active_now = !self.store.active_runs()?.is_empty();
        let tick = if active_now || removals {
            ACTIVE_TICK
        } else {
            IDLE_TICK
        };
        let until_due = next_due
            .map(|t| Duration::from_millis((t - crate::clock::now_ms()).max(0) as u64))
            .unwrap_or(tick);
        Ok(until_due.min(tick))
    }

    /// Turns `d`'s due schedule times into runs (or drops, or misses): its next due time
    /// and the last due time now handled.
    fn schedule(&self, d: &Def, now: i64) -> Result<(Option<i64>, i64), super::CoreError> {
        let Some(c) = &d.cron else {
            return Ok((None, 0));
        };
        if c.suspended {
            return Ok((None, c.last_due_ms));
        }
        if c.last_due_ms == 0 {
            // First seen (just deployed): the schedule counts from now.
            self.store.set_job_schedule(&d.app, false, now)?;
            return Ok((c.next_after(now), now));
        }
        // Every due time since the last one handled (bounded: a long outage of a
        // per-second schedule is counted, not walked).
        let mut dues = Vec::new();
        let mut t = c.last_due_ms;
        let mut skipped = 0u64;
        while let Some(n) = c.next_after(t) {
            if n > now {
                break;
            }
            if dues.len() == 1000 {
                dues.remove(0);
                skipped += 1;
            }
            dues.push(n);
            t = n;
        }
        let Some(&latest) = dues.last() else {
            return Ok((c.next_after(c.last_due_ms), c.last_due_ms));
        };
        let missed = dues.len() as u64 - 1 + skipped;
        let late = now - latest;
        if missed > 0 {
            self.event(
                EventKind::Job,
                &d.app,
                "",
                &format!(
                    "{missed} run(s) of schedule {:?} were due while the agent was not running; only the latest can start",
                    c.text
                ),
            );
        }
        if late <= c.deadline_ms.max(1000) {
            let trigger = if late > 1000 { "missed" } else { "schedule" };
            self.enqueue(&d.app, trigger, latest)?;
        } else {
            let why = format!(
                "due {} ago, later than the starting deadline of {} (schedule.starting_deadline_seconds)",
                secs(late),
                secs(c.deadline_ms)
            );
            let run = self
                .store
                .add_run(&d.app, "schedule", latest, "missed", &why)?;
            self.event(
                EventKind::Job,
                &d.app,
                "",
                &format!("run {run} missed: {why}"),
            );
        }
        self.store.set_job_schedule(&d.app, false, latest)?;
        Ok((c.next_after(latest), latest))
    }

    /// Queues a run of `app` (its number), or drops it when [`QUEUE`] runs already wait.
    pub(super) fn enqueue(
        &self,
        app: &str,
        trigger: &str,
        due_ms: i64,
    ) -> Result<Option<u64>, super::CoreError> {
        let active = self.store.active_runs()?;
        let queued = active
            .iter()
            .filter(|r| r.app == app && r.state == "queued")
            .count();
        if queued >= QUEUE {
            self.event(
                EventKind::Job,
                app,
                "",
                &format!(
                    "a run due at {} was dropped: {queued} runs already wait behind the running one (at most {QUEUE})",
                    crate::timefmt::rfc3339_secs(due_ms.div_euclid(1000))
                ),
            );
            return Ok(None);
        }
        let run = self.store.add_run(app, trigger, due_ms, "queued", "")?;
        self.jobs.bell.notify_one();
        Ok(Some(run))
    }

    fn start_run(&self, r: &mut RunRow, now: i64) -> Result<(), super::CoreError> {
        r.state = "running".into();
        r.started_ms = now;
        self.store.set_run(r)?;
        let late = if r.trigger == "schedule" || r.trigger == "missed" {
            format!(", {} ms after its due time", (now - r.due_ms).max(0))
        } else {
            String::new()
        };
        self.event(
            EventKind::Job,
            &r.app,
            "",
            &format!("run {} started ({}{late})", r.run, r.trigger),
        );
        Ok(())
    }

    /// Every job container by name: this host's (from the engine) and, in a cluster, the
    /// other members' (from their instance records).
    async fn job_containers(&self) -> Result<BTreeMap<String, Seen>, super::CoreError> {
        let mut out: BTreeMap<String, Seen> = self
            .runtime
            .list(&self.node_id)
            .await?
            .into_iter()
            .filter(|i| i.job.is_some())
            .map(|i| {
                (
                    i.name.clone(),
                    Seen {
                        id: i.id,
                        state: i.state,
                        exit_code: i.exit_code,
                        finished_ms: i.finished_ms,
                        node: String::new(),
                        alive: true,
                    },
                )
            })
            .collect();
        if let Some(hub) = self.jobs.hub() {
            for r in hub.remote(crate::cluster::state::Kind::Instance) {
                let Ok(v) = serde_json::from_value::<crate::wire::InstanceView>(r.body) else {
                    continue;
                };
                out.entry(v.name).or_insert(Seen {
                    id: String::new(),
                    state: InstanceState::parse(&v.state),
                    exit_code: v.exit_code,
                    finished_ms: None,
                    node: r.node_id,
                    alive: r.state == crate::cluster::gossip::MemberState::Alive,
                });
            }
        }
        Ok(out)
    }

    /// How long member `node` has not been alive (None: alive or unknown).
    fn lost_for(&self, node: &str) -> Option<i64> {
        let m = self.jobs.hub()?.member(node)?;
        (m.state != crate::cluster::gossip::MemberState::Alive)
            .then(|| (crate::clock::now_ms() - m.since_ms).max(0))
    }

    /// The member `task`'s `slot` of the live version is placed on (empty: here, or in no
    /// cluster).
    fn job_node(&self, app: &str, task: &str, slot: u32) -> String {
        if self.jobs.hub().is_none() {
            return String::new();
        }
        let version = self
            .store
            .get_app(app)
            .ok()
            .flatten()
            .and_then(|a| a.live(task).last().map(|l| l.version.number));
        let node = self
            .store
            .assignments()
            .unwrap_or_default()
            .into_iter()
            .find(|x| {
                x.app == app && x.service == task && Some(x.version) == version && x.slot == slot
            })
            .map(|x| x.node)
            .unwrap_or_default();
        if node == self.node_id {
            String::new()
        } else {
            node
        }
    }

    /// Moves one running run on: sees exits, starts what is due, settles the states.
    async fn advance(
        &self,
        d: &Def,
        mut run: RunRow,
        instances: &BTreeMap<String, Seen>,
    ) -> Result<(), super::CoreError> {
        let now = crate::clock::now_ms();
        let mut attempts = self.store.attempts(&d.app, run.run)?;
        for a in attempts.iter_mut().filter(|a| a.exit_code.is_none()) {
            let found = instances.get(&a.container);
            match found {
                Some(i) if matches!(i.state, InstanceState::Exited | InstanceState::Dead) => {
                    let code = i.exit_code.unwrap_or(-1);
                    a.exit_code = Some(code);
                    a.ended_ms = i.finished_ms.unwrap_or(now).max(a.started_ms);
                    self.store.set_attempt(a)?;
                    self.attempt_ended(d, a, &i.id);
                }
                Some(i) if !i.alive => {
                    // Its member is away: it may come back; lost past the grace, the
                    // attempt failed (the slot's retries take over).
                    if let Some(lost) = self.lost_for(&i.node)
                        && lost >= self.jobs.hub().map_or(60_000, |h| h.reschedule_after_ms())
                    {
                        let why = format!("ran on a member lost for {} s", lost / 1000);
                        self.lose_attempt(a, &why)?;
                    }
                }
                Some(i)
                    if i.state == InstanceState::Created
                        && a.started_ms == 0
                        && i.node.is_empty() =>
                {
                    // Made, not started (the agent stopped between the two).
                    self.start_attempt(a, &i.id).await?;
                }
                Some(_) => {}
                None if a.started_ms == 0 => {
                    // Recorded, never made: make it now (it never ran).
                    self.make_attempt(a).await?;
                }
                // On another member: its records show it a moment after it started.
                None if !a.node.is_empty() && now - a.started_ms < REMOTE_SHOW_MS => {}
                None => self.lose_attempt(a, "is gone (removed by hand?)")?,
            }
        }
        let (steps, states) = plan::next_steps(&d.tasks, &history(&d.tasks, &attempts));
        for step in steps {
            match step {
                Step::Start {
                    task,
                    slot,
                    attempt,
                } => {
                    let before = attempts
                        .iter()
                        .find(|a| a.task == task && a.slot == slot && a.attempt + 1 == attempt);
                    if let Some(b) = before {
                        if now < b.ended_ms + backoff_ms(attempt) {
                            continue;
                        }
                        let retries = d
                            .tasks
                            .iter()
                            .find(|t| t.name == task)
                            .map_or(0, |t| t.retry_count);
                        self.event(
                            EventKind::Job,
                            &d.app,
                            &task,
                            &format!(
                                "run {}: retrying {task} slot {slot} (retry {} of {retries}) after exit code {}",
                                run.run,
                                attempt - 1,
                                b.exit_code.unwrap_or(-1)
                            ),
                        );
                    }
                    let mut a = AttemptRow {
                        app: d.app.clone(),
                        run: run.run,
                        container: crate::runtime::job_container_name(
                            &d.app, &task, run.run, slot, attempt,
                        ),
                        node: self.job_node(&d.app, &task, slot),
                        task,
                        slot,
                        attempt,
                        started_ms: 0,
                        ended_ms: 0,
                        exit_code: None,
                        removed: false,
                    };
                    self.store.add_attempt(&a)?;
                    self.make_attempt(&mut a).await?;
                    attempts.push(a);
                }
                Step::Skip { task, because } => {
                    if run.tasks.get(&task).map(String::as_str) != Some("skipped") {
                        self.event(
                            EventKind::Job,
                            &d.app,
                            &task,
                            &format!(
                                "run {}: task {task} skipped: task {because} did not finish",
                                run.run
                            ),
                        );
                    }
                }
            }
        }
        let tasks: BTreeMap<String, String> = states
            .iter()
            .map(|(k, v)| (k.clone(), state_str(*v).to_string()))
            .collect();
        let job = plan::job_state(&states);
        let ended = matches!(job, State::Finished | State::Failed);
        if tasks != run.tasks || ended {
            run.tasks = tasks;
            if ended {
                self.end_run(d, &mut run, job, &attempts)?;
            } else {
                self.store.set_run(&run)?;
            }
        }
        Ok(())
    }

    fn end_run(
        &self,
        d: &Def,
        run: &mut RunRow,
        job: State,
        attempts: &[AttemptRow],
    ) -> Result<(), super::CoreError> {
        let now = crate::clock::now_ms();
        run.state = state_str(job).into();
        run.ended_ms = now;
        if job == State::Failed && run.reason.is_empty() {
            let failed = run
                .tasks
                .iter()
                .find(|(_, s)| s.as_str() == "failed")
                .map(|(t, _)| t.clone())
                .unwrap_or_default();
            let last = attempts
                .iter()
                .filter(|a| a.task == failed && a.exit_code.is_some_and(|c| c != 0))
                .max_by_key(|a| a.ended_ms);
            run.reason = match last {
                Some(a) => format!(
                    "task {failed} failed: slot {} exited {} on attempt {}",
                    a.slot,
                    a.exit_code.unwrap_or(-1),
                    a.attempt
                ),
                None => format!("task {failed} failed"),
            };
        }
        self.store.set_run(run)?;
        let took = secs(now - run.started_ms);
        let msg = match job {
            State::Finished => format!("run {} finished in {took}", run.run),
            _ => format!("run {} failed after {took}: {}", run.run, run.reason),
        };
        self.event(EventKind::Job, &d.app, "", &msg);
        // History: the newest runs kept; the containers of those dropped go too.
        for a in self.store.prune_runs(&d.app, d.history)? {
            if !a.removed {
                self.queue_removal(&a, now, None);
            }
        }
        self.jobs.bell.notify_one();
        Ok(())
    }

    /// An attempt's container exited: an event for a failure, and its removal when the
    /// task's `remove_containers` says so (after its logs are read).
    fn attempt_ended(&self, d: &Def, a: &AttemptRow, id: &str) {
        let code = a.exit_code.unwrap_or(-1);
        if code != 0 {
            self.event(
                EventKind::Job,
                &d.app,
                &a.task,
                &format!(
                    "run {}: {} exited {code} (attempt {})",
                    a.run, a.container, a.attempt
                ),
            );
        }
        let policy = d
            .remove
            .iter()
            .find(|(task, _)| *task == a.task)
            .map_or(DEFAULT_REMOVE_CONTAINERS, |(_, p)| p.as_str());
        if removes(policy, code) {
            self.queue_removal(a, crate::clock::now_ms(), Some(id));
        }
    }

    fn queue_removal(&self, a: &AttemptRow, now: i64, id: Option<&str>) {
        // The log collector lists the containers again and reads this one to its end.
        self.engine_changes.send_modify(|n| *n += 1);
        let key = id
            .filter(|i| !i.is_empty())
            .map_or_else(|| format!("name:{}", a.container), str::to_string);
        self.jobs
            .removals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                key,
                Removal {
                    name: a.container.clone(),
                    app: a.app.clone(),
                    node: a.node.clone(),
                    since_ms: now,
                },
            );
    }

    /// Removes the containers queued for removal whose logs were read to their end (or
    /// that waited [`LOGS_WAIT_MS`]).
    async fn remove_drained(&self, instances: &BTreeMap<String, Seen>) {
        let now = crate::clock::now_ms();
        let queued: Vec<(String, Removal)> = self
            .jobs
            .removals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (key, r) in queued {
            if !r.node.is_empty() {
                // Its member removes it once its logs are read there.
                match self.ask_member(&r.node, &r.app, "remove", &r.name).await {
                    Ok(()) => self.forget_removal(&key, &r),
                    Err((_, e)) if now - r.since_ms > 10 * LOGS_WAIT_MS => {
                        tracing::warn!(container = %r.name, error = %e, "gave up removing a job container on another member");
                        self.jobs
                            .removals
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&key);
                    }
                    Err(_) => {}
                }
                continue;
            }
            let Some(i) = instances.get(&r.name) else {
                self.forget_removal(&key, &r);
                continue;
            };
            if i.state == InstanceState::Running {
                continue;
            }
            let read = self.log_shipper.get().is_none_or(|s| s.drained(&i.id));
            if !read && now - r.since_ms < LOGS_WAIT_MS {
                continue;
            }
            match self.runtime.remove(&i.id, false).await {
                Ok(()) => self.forget_removal(&key, &r),
                Err(e) => {
                    tracing::warn!(container = %r.name, error = %e, "cannot remove a job container yet")
                }
            }
        }
    }

    fn forget_removal(&self, key: &str, r: &Removal) {
        self.jobs
            .removals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        let Some(run) = r
            .name
            .rsplit('.')
            .nth(1)
            .and_then(|n| n.parse::<u64>().ok())
        else {
            return;
        };
        if let Ok(list) = self.store.attempts(&r.app, run) {
            for mut a in list.into_iter().filter(|a| a.container == r.name) {
                a.removed = true;
                let _ = self.store.set_attempt(&a);
            }
        }
    }

    /// Asks member `node` to make and start (`attempt`), `remove` or `stop` job container
    /// `name` of `app`.
    async fn ask_member(
        &self,
        node: &str,
        app: &str,
        action: &str,
        name: &str,
    ) -> Result<(), (u16, String)> {
        let hub = self
            .jobs
            .hub()
            .ok_or((503, "this host is in no cluster any more".to_string()))?;
        let (task, slot, run, attempt) = parse_job_name(app, name)
            .ok_or_else(|| (400, format!("{name} is not a job container name")))?;
        let body = serde_json::to_vec(&HereRequest {
            run,
            task,
            slot,
            attempt,
        })
        .map_err(|e| (400, e.to_string()))?;
        let reply = hub
            .forward(
                node,
                "POST",
                &format!("/v1/apps/{app}/job/here/{action}"),
                &body,
            )
            .await
            .map_err(|e| (503, e.to_string()))?;
        if (200..300).contains(&reply.status) {
            Ok(())
        } else {
            Err((reply.status, reply.body.trim().to_string()))
        }
    }

    /// Makes and starts an attempt's container (the attempt is already recorded).
    async fn make_attempt(&self, a: &mut AttemptRow) -> Result<(), super::CoreError> {
        if !a.node.is_empty() {
            let node = a.node.clone();
            let now = crate::clock::now_ms();
            return match self
                .ask_member(&node, &a.app, "attempt", &a.container)
                .await
            {
                // The member has not got the owner's record of the app yet: ask again on
                // the next pass, for a while.
                Err((404, _))
                    if now
                        - *self
                            .jobs
                            .waiting
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .entry(a.container.clone())
                            .or_insert(now)
                        < REMOTE_SHOW_MS =>
                {
                    Ok(())
                }
                Ok(()) => {
                    self.jobs
                        .waiting
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&a.container);
                    a.started_ms = crate::clock::now_ms();
                    self.store.set_attempt(a)?;
                    self.event(
                        EventKind::Start,
                        &a.app,
                        &a.task,
                        &format!("run {}: started {} on {node}", a.run, a.container),
                    );
                    Ok(())
                }
                Err((status, e)) => {
                    self.jobs
                        .waiting
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&a.container);
                    self.fail_attempt(
                        a,
                        &format!(
                            "cannot start {} on member {node}: {e} ({status})",
                            a.container
                        ),
                    )
                }
            };
        }
        let Some(app) = self.store.get_app(&a.app)? else {
            return Ok(());
        };
        let Some(version) = app.live(&a.task).last().map(|l| l.version.number) else {
            return self.fail_attempt(a, "the task has no version to run");
        };
        self.ensure_job_network(&a.app).await;
        let job = JobRef {
            run: a.run,
            attempt: a.attempt,
        };
        match self
            .make_container(&app, &a.task, version, a.slot, Some(job))
            .await
        {
            Ok(Some((id, _))) => self.start_attempt(a, &id).await,
            Ok(None) => self.fail_attempt(a, "the task has no version to run"),
            Err(e) => self.fail_attempt(a, &e),
        }
    }

    async fn start_attempt(&self, a: &mut AttemptRow, id: &str) -> Result<(), super::CoreError> {
        self.note_our_start(id);
        match self.runtime.start(id).await {
            Ok(()) => {
                a.started_ms = crate::clock::now_ms();
                self.store.set_attempt(a)?;
                self.event(
                    EventKind::Start,
                    &a.app,
                    &a.task,
                    &format!("run {}: started {}", a.run, a.container),
                );
                Ok(())
            }
            Err(e) => self.fail_attempt(a, &format!("cannot start {}: {e}", a.container)),
        }
    }

    /// An attempt whose container can no longer be seen ends failed (exit code -1): the
    /// slot's retries take over.
    fn lose_attempt(&self, a: &mut AttemptRow, why: &str) -> Result<(), super::CoreError> {
        a.exit_code = Some(-1);
        a.ended_ms = crate::clock::now_ms();
        self.store.set_attempt(a)?;
        self.event(
            EventKind::Job,
            &a.app,
            &a.task,
            &format!("run {}: {} {why}: counted as failed", a.run, a.container),
        );
        Ok(())
    }

    /// An attempt that could not be made or started fails (exit code -1): the slot's
    /// retries take over.
    fn fail_attempt(&self, a: &mut AttemptRow, why: &str) -> Result<(), super::CoreError> {
        let now = crate::clock::now_ms();
        a.started_ms = a.started_ms.max(now);
        a.ended_ms = now;
        a.exit_code = Some(-1);
        self.store.set_attempt(a)?;
        self.event(
            EventKind::Error,
            &a.app,
            &a.task,
            &format!("run {}: {why}", a.run),
        );
        Ok(())
    }

    /// The app network a job's bridge containers join (reconcile passes make none for jobs).
    async fn ensure_job_network(&self, app: &str) {
        let exists = self
            .runtime
            .networks(&self.node_id)
            .await
            .map(|n| n.iter().any(|n| n.app == app))
            .unwrap_or(false);
        if !exists && let Err(e) = self.runtime.create_network(&self.node_id, app).await {
            tracing::warn!(app, error = %e, "cannot create a job's network");
        }
    }
}

/// What `berth jobs`, `runs` and `job ...` do (on the job's owner).
impl super::ops::Ops {
    /// Every job of this host with its state, last run and next due time.
    pub fn jobs(&self) -> Result<Vec<crate::wire::JobView>, super::CoreError> {
        let core = &self.core;
        let mut out = Vec::new();
        for a in core.store.apps_shared()?.iter().filter(|a| is_job(a)) {
            let name = &a.spec.name;
            let (suspended, last_due) = core.store.job_schedule(name)?;
            let runs = core.store.runs(name, QUEUE + 2)?;
            let queued = runs.iter().filter(|r| r.state == "queued").count();
            let last_run = runs.iter().find(|r| r.state != "queued").cloned();
            let def = def_of(a, (suspended, last_due));
            let cron = def.as_ref().and_then(|d| d.cron.as_ref());
            let next_run_ms = cron.filter(|c| !c.suspended && !a.stopped).and_then(|c| {
                c.next_after(if last_due > 0 {
                    last_due
                } else {
                    crate::clock::now_ms()
                })
            });
            let state = if suspended {
                "suspended".to_string()
            } else if let Some(r) = &last_run {
                r.state.clone()
            } else if queued > 0 {
                "queued".to_string()
            } else {
                "idle".to_string()
            };
            let j = job_spec(a);
            out.push(crate::wire::JobView {
                app: name.clone(),
                state,
                schedule: j.and_then(|j| j.schedule.clone()),
                timezone: j.and_then(|j| j.timezone.clone()),
                suspended,
                last_run,
                next_run_ms,
                queued,
                node: if self.cluster().active() {
                    core.node_name.clone()
                } else {
                    String::new()
                },
            });
        }
        Ok(out)
    }

    /// `berth jobs`: this host's jobs and, in a cluster, every alive member's (asked at once
    /// with `local=1`), by name.
    pub async fn cluster_jobs(&self) -> Result<Vec<crate::wire::JobView>, super::CoreError> {
        let mut out = self.jobs()?;
        if self.cluster().active() {
            for body in self.ask_members("/v1/jobs?local=1").await {
                out.extend(
                    serde_json::from_str::<Vec<crate::wire::JobView>>(&body).unwrap_or_default(),
                );
            }
            out.sort_by(|a, b| (&a.app, &a.node).cmp(&(&b.app, &b.node)));
        }
        Ok(out)
    }

    /// The history of `app` (newest first), each run with its attempts (of `task` only,
    /// when given).
    pub fn runs(
        &self,
        app: &str,
        task: Option<&str>,
    ) -> Result<Vec<crate::wire::RunView>, super::CoreError> {
        let stored = self.job_app(app)?;
        if let Some(t) = task
            && !stored.spec.services.contains_key(t)
        {
            return Err(super::CoreError::NotFound(format!(
                "job {app} has no task {t:?}: its tasks are {}",
                stored
                    .spec
                    .services
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let mut out = Vec::new();
        for mut run in self.core.store.runs(app, 100)? {
            let mut attempts = self.core.store.attempts(app, run.run)?;
            if let Some(t) = task {
                attempts.retain(|a| a.task == t);
                run.tasks.retain(|k, _| k == t);
            }
            out.push(crate::wire::RunView { run, attempts });
        }
        Ok(out)
    }

    /// `berth job run|cancel|suspend|resume APP`.
    pub async fn job_action(
        &self,
        app: &str,
        action: &str,
    ) -> Result<serde_json::Value, super::CoreError> {
        let stored = self.job_app(app)?;
        let core = &self.core;
        let conflict = super::CoreError::Conflict;
        match action {
            "run" => {
                if stored.stopped {
                    return Err(conflict(format!(
                        "{app} is stopped: `berth start {app}` first"
                    )));
                }
                let Some(run) = core.enqueue(app, "manual", crate::clock::now_ms())? else {
                    return Err(conflict(format!(
                        "{app} already has {QUEUE} runs waiting behind the running one: wait, or `berth job cancel {app}`"
                    )));
                };
                Ok(serde_json::json!({ "run": run }))
            }
            "cancel" => {
                let _pass = core.jobs.pass.lock().await;
                let Some(mut run) = core
                    .store
                    .active_runs()?
                    .into_iter()
                    .find(|r| r.app == app && r.state == "running")
                else {
                    return Err(conflict(format!("no run of {app} is running")));
                };
                core.cancel_run(&stored, &mut run, "cancelled").await?;
                Ok(serde_json::json!({ "run": run.run, "state": run.state }))
            }
            "suspend" | "resume" => {
                if job_spec(&stored)
                    .and_then(|j| j.schedule.as_ref())
                    .is_none()
                {
                    return Err(super::CoreError::BadRequest(format!(
                        "{app} has no schedule: only a cron job is suspended or resumed (`berth job run {app}` runs it now)"
                    )));
                }
                let suspend = action == "suspend";
                let (_, last_due) = core.store.job_schedule(app)?;
                // Resumed, the schedule counts from now: runs due while suspended are not
                // made up.
                let last = if suspend {
                    last_due
                } else {
                    crate::clock::now_ms()
                };
                core.store.set_job_schedule(app, suspend, last)?;
                core.event(
                    EventKind::Job,
                    app,
                    "",
                    if suspend {
                        "schedule suspended: no run starts until `berth job resume`"
                    } else {
                        "schedule resumed"
                    },
                );
                core.jobs.touch();
                Ok(serde_json::json!({ "suspended": suspend }))
            }
            other => Err(super::CoreError::BadRequest(format!(
                "unknown job action {other:?}: use run, cancel, suspend or resume"
            ))),
        }
    }

    /// On a member: what the owner of job `app` asks of one of its attempts placed here
    /// (`attempt`: make and start it; `remove`: remove it once exited and its logs read;
    /// `stop`: stop it).
    pub async fn job_here(
        &self,
        app: &str,
        action: &str,
        req: HereRequest,
    ) -> Result<serde_json::Value, super::CoreError> {
        let core = &self.core;
        let bad = super::CoreError::BadRequest;
        // The owner's record of the app, as freshly as this host holds it.
        let stored = self
            .cluster()
            .owner_of(app)
            .and_then(|r| {
                let (mut a, _) = self.replica_of(&r.body)?;
                a.owner = r.node_id;
                Some(a)
            })
            .or_else(|| core.store.get_app(app).ok().flatten())
            .ok_or_else(|| {
                super::CoreError::NotFound(format!("no app named {app} is known here"))
            })?;
        if !is_job(&stored) || !stored.spec.services.contains_key(&req.task) {
            return Err(bad(format!("{app} has no job task {:?}", req.task)));
        }
        let name =
            crate::runtime::job_container_name(app, &req.task, req.run, req.slot, req.attempt);
        let here = core
            .runtime
            .list(&core.node_id)
            .await?
            .into_iter()
            .find(|i| i.name == name && i.app == app && i.job.is_some());
        match action {
            "attempt" => {
                let id = match here {
                    Some(i) if i.state != InstanceState::Created => {
                        return Ok(
                            serde_json::json!({ "container": name, "state": i.state.as_str() }),
                        );
                    }
                    Some(i) => i.id,
                    None => {
                        let version = stored
                            .live(&req.task)
                            .last()
                            .map(|l| l.version.number)
                            .ok_or_else(|| bad(format!("{app}/{} has no version", req.task)))?;
                        core.ensure_job_network(app).await;
                        let job = JobRef {
                            run: req.run,
                            attempt: req.attempt,
                        };
                        core.make_container(&stored, &req.task, version, req.slot, Some(job))
                            .await
                            .map_err(super::CoreError::Conflict)?
                            .ok_or_else(|| bad(format!("{app}/{} has no version", req.task)))?
                            .0
                    }
                };
                core.note_our_start(&id);
                core.runtime.start(&id).await?;
                core.event(
                    EventKind::Start,
                    app,
                    &req.task,
                    &format!(
                        "run {}: started {name} (placed here by the job's owner)",
                        req.run
                    ),
                );
                Ok(serde_json::json!({ "container": name, "state": "running" }))
            }
            "remove" => {
                let Some(i) = here else {
                    return Ok(serde_json::json!({ "removed": name }));
                };
                if i.state == InstanceState::Running {
                    return Err(super::CoreError::Conflict(format!("{name} still runs")));
                }
                if core.log_shipper.get().is_some_and(|s| !s.drained(&i.id)) {
                    // The collector lists the containers again and reads this one.
                    core.engine_changes.send_modify(|n| *n += 1);
                    return Err(super::CoreError::Conflict(format!(
                        "{name}'s logs are not read to their end yet"
                    )));
                }
                core.runtime.remove(&i.id, false).await?;
                Ok(serde_json::json!({ "removed": name }))
            }
            "stop" => {
                if let Some(i) = here {
                    let grace = stored
                        .spec
                        .services
                        .get(&req.task)
                        .map_or(10, |s| crate::model::StopGrace::grace_seconds(&**s));
                    core.runtime.stop(&i.id, grace).await?;
                }
                Ok(serde_json::json!({ "stopped": name }))
            }
            other => Err(bad(format!("unknown job action {other:?}"))),
        }
    }

    fn job_app(&self, app: &str) -> Result<StoredApp, super::CoreError> {
        let stored = self
            .core
            .store
            .get_app(app)?
            .ok_or_else(|| super::CoreError::NotFound(format!("no app named {app}")))?;
        if !is_job(&stored) {
            return Err(super::CoreError::BadRequest(format!(
                "{app} is not a job: give it `aliyun.project_type: batch` (or a schedule) in its template's labels"
            )));
        }
        Ok(stored)
    }

    /// After a deploy: a job without a schedule runs when it is deployed or changed (the
    /// run queued; 0 for a cron job, None for an app that is not a job).
    pub(super) fn job_deployed(
        &self,
        app: &str,
        changed: bool,
    ) -> Result<Option<u64>, super::CoreError> {
        self.core.jobs.touch();
        let Some(stored) = self.core.store.get_app(app)? else {
            return Ok(None);
        };
        let Some(j) = job_spec(&stored) else {
            return Ok(None);
        };
        if changed && !stored.stopped && j.schedule.is_none() {
            return Ok(Some(
                self.core
                    .enqueue(app, "deploy", crate::clock::now_ms())?
                    .unwrap_or(0),
            ));
        }
        Ok(Some(0))
    }
}

impl Core {
    /// Stops a running run's containers; the run fails with reason `cancelled`.
    async fn cancel_run(
        &self,
        app: &StoredApp,
        run: &mut RunRow,
        reason: &str,
    ) -> Result<(), super::CoreError> {
        let attempts = self.store.attempts(&run.app, run.run)?;
        let open: Vec<&AttemptRow> = attempts.iter().filter(|a| a.exit_code.is_none()).collect();
        let listed = self.runtime.list(&self.node_id).await?;
        for a in &open {
            if !a.node.is_empty() {
                if let Err((_, e)) = self.ask_member(&a.node, &a.app, "stop", &a.container).await {
                    tracing::warn!(container = %a.container, error = %e, "cannot stop a cancelled run's container on its member");
                }
                continue;
            }
            if let Some(i) = listed.iter().find(|i| i.name == a.container) {
                let grace = app
                    .spec
                    .services
                    .get(&a.task)
                    .map_or(10, |s| crate::model::StopGrace::grace_seconds(&**s));
                if let Err(e) = self.runtime.stop(&i.id, grace).await {
                    tracing::warn!(container = %a.container, error = %e, "cannot stop a cancelled run's container");
                }
            }
        }
        let after = self.job_containers().await?;
        let now = crate::clock::now_ms();
        let def = def_of(app, self.store.job_schedule(&run.app)?);
        for a in open {
            let mut a = a.clone();
            let i = after.get(&a.container);
            a.exit_code = Some(
                i.filter(|i| i.state != InstanceState::Running)
                    .and_then(|i| i.exit_code)
                    .unwrap_or(-1),
            );
            a.ended_ms = now;
            self.store.set_attempt(&a)?;
            if let (Some(d), Some(i)) = (&def, i) {
                self.attempt_ended(d, &a, &i.id);
            }
        }
        run.reason = reason.into();
        for s in run.tasks.values_mut() {
            if s == "running" || s == "waiting" {
                *s = if s == "running" { "failed" } else { "skipped" }.into();
            }
        }
        if let Some(d) = def {
            self.end_run(&d, run, State::Failed, &attempts)?;
        }
        Ok(())
    }
}

impl crate::wire::AppStatus {
    /// A job's row: its state from its runs, its containers of the running run.
    pub(super) fn with_job(
        mut self,
        core: &Core,
        a: &StoredApp,
        instances: &[crate::model::Instance],
    ) -> Self {
        if !is_job(a) {
            return self;
        }
        let name = &a.spec.name;
        let runs = core.store.runs(name, QUEUE + 2).unwrap_or_default();
        let (suspended, _) = core.store.job_schedule(name).unwrap_or((false, 0));
        let running = |svc: &str| {
            instances
                .iter()
                .filter(|i| {
                    i.app == *name
                        && i.job.is_some()
                        && (svc.is_empty() || i.service == svc)
                        && i.state == InstanceState::Running
                })
                .count() as u32
        };
        for s in &mut self.services {
            s.desired = a.replicas(&s.name);
            s.running = running(&s.name);
        }
        self.desired = self.services.iter().map(|s| s.desired).sum();
        self.running = running("");
        let current = runs.iter().find(|r| r.state != "queued");
        let queued = runs.iter().filter(|r| r.state == "queued").count();
        let mut text = match current {
            Some(r) => format!("run {} {}", r.run, r.state),
            None if queued > 0 => "queued".to_string(),
            None => "idle".to_string(),
        };
        if queued > 0 && current.is_some() {
            text.push_str(&format!(", {queued} queued"));
        }
        if suspended {
            text.push_str(", suspended");
        }
        use crate::model::AppState;
        if !a.stopped {
            self.state = match current.map(|r| r.state.as_str()) {
                Some("failed") => AppState::Failing,
                _ => AppState::Running,
            };
        }
        self.job = Some(text);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_and_policies_pick_what_goes() {
        assert_eq!(
            (2..=8).map(backoff_ms).collect::<Vec<_>>(),
            [1000, 2000, 4000, 8000, 16000, 30000, 30000]
        );
        assert!(removes("remove-finished", 0) && !removes("remove-finished", 1));
        assert!(removes("remove-failed", 2) && !removes("remove-failed", 0));
        assert!(removes("remove-all", 0) && removes("remove-all", 9));
        assert!(!removes("remove-none", 0) && !removes("remove-none", 1));
    }

    #[test]
    fn attempts_read_per_task_and_slot() {
        let tasks = [Task {
            name: "s1".into(),
            slots: 2,
            depends: vec![],
            retry_count: 3,
        }];
        let a = |slot, attempt, code| AttemptRow {
            app: "j".into(),
            run: 1,
            task: "s1".into(),
            slot,
            attempt,
            container: String::new(),
            started_ms: 1,
            ended_ms: 0,
            exit_code: code,
            removed: false,
            node: String::new(),
        };
        let h = history(&tasks, &[a(2, 1, Some(1)), a(2, 2, None), a(1, 1, Some(0))]);
        assert_eq!(h["s1"], vec![vec![Some(0)], vec![Some(1), None]]);
    }
}
