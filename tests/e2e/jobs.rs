//! Jobs on the real engine (issue 21): the seed's batch shape runs task by task, each
//! `remove_containers` policy leaves what it should, failures are retried and then skip the
//! dependants, cron schedules run on time with a history of 10, a long run queues at most 3
//! and drops the rest, and a `kill -9` of the agent neither loses a run nor starts one twice.

use super::harness::*;
use berth::wire::{JobView, RunView};
use std::time::{Duration, Instant};

fn runs(a: &Agent, app: &str) -> Vec<RunView> {
    serde_json::from_str(&a.ok(&["runs", app, "--json"])).expect("runs JSON")
}

fn jobs(a: &Agent) -> Vec<JobView> {
    serde_json::from_str(&a.ok(&["jobs", "--json"])).expect("jobs JSON")
}

/// Waits until `f` holds for the run history of `app`; shows it and the events otherwise.
fn wait_runs(a: &Agent, app: &str, what: &str, limit: Duration, f: impl Fn(&[RunView]) -> bool) {
    let end = Instant::now() + limit;
    loop {
        let r = runs(a, app);
        if f(&r) {
            return;
        }
        if Instant::now() > end {
            panic!(
                "{app}: {what} not within {limit:?}\nruns: {}\nengine: {:?}\nevents:\n{}",
                serde_json::to_string_pretty(&r).unwrap_or_default(),
                a.engine_containers(app),
                a.ok(&["events", app, "-n", "60"])
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn job_events(a: &Agent, app: &str) -> Vec<String> {
    a.ok(&["events", app, "-n", "500", "--json"])
        .lines()
        .filter_map(|l| serde_json::from_str::<berth::wire::Event>(l).ok())
        .map(|e| e.message)
        .collect()
}

const BATCH: &str = r#"
version: "2"
labels:
  aliyun.project_type: "batch"
services:
  s1:
    image: berth-test/busybox
    command: ["sh", "-c", "echo extract from $$(hostname); sleep 1"]
    labels:
      aliyun.scale: "3"
  s2:
    image: berth-test/busybox
    command: ["sh", "-c", "echo load; sleep 1"]
    labels:
      aliyun.scale: "2"
      aliyun.depends: "s1"
      aliyun.remove_containers: "remove-none"
  s3:
    image: berth-test/busybox
    command: ["sh", "-c", "echo report"]
    labels:
      aliyun.depends: "s1,s2"
      aliyun.remove_containers: "remove-all"
"#;

#[test]
fn the_seeds_batch_shape_runs_task_by_task_and_keeps_what_its_policies_say() {
    let a = Agent::start();
    let out = a.deploy("etl", BATCH);
    assert!(out.contains("job run 1 queued"), "{out}");
    wait_runs(&a, "etl", "run 1 finished", Duration::from_secs(90), |r| {
        r.first().is_some_and(|r| r.run.state == "finished")
    });
    let r = &runs(&a, "etl")[0];
    assert_eq!(r.run.trigger, "deploy");
    let of = |t: &str| {
        r.attempts
            .iter()
            .filter(|x| x.task == t)
            .collect::<Vec<_>>()
    };
    let (s1, s2, s3) = (of("s1"), of("s2"), of("s3"));
    assert_eq!((s1.len(), s2.len(), s3.len()), (3, 2, 1), "{r:?}");
    assert!(r.attempts.iter().all(|x| x.exit_code == Some(0)), "{r:?}");
    // s2 started only after every s1 container had exited.
    let s1_end = s1.iter().map(|x| x.ended_ms).max().unwrap_or(0);
    let s2_start = s2.iter().map(|x| x.started_ms).min().unwrap_or(0);
    assert!(s2_start >= s1_end, "s2 at {s2_start}, s1 ended {s1_end}");
    // s3 depends on both (a list with a comma): after every s2 container too.
    let s2_end = s2.iter().map(|x| x.ended_ms).max().unwrap_or(0);
    assert!(
        s3[0].started_ms >= s2_end,
        "s3 at {}, s2 ended {s2_end}",
        s3[0].started_ms
    );
    // remove-finished (s1's default) and remove-all (s3) removed their containers;
    // remove-none kept s2's.
    wait_until("s1's containers removed", Duration::from_secs(40), || {
        a.engine_containers("etl")
            .iter()
            .all(|(n, _)| n.starts_with("etl_s2_"))
    });
    let left = a.engine_containers("etl");
    assert_eq!(
        left.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["etl_s2_1.1.1", "etl_s2_2.1.1"],
        "{left:?}"
    );
    // Their logs stay in the log store, removed or not.
    let logs = a.ok(&["logs", "etl/s1"]);
    assert_eq!(logs.matches("extract from").count(), 3, "{logs}");
    assert!(a.ok(&["logs", "etl/s2"]).contains("load"));
    assert!(a.ok(&["logs", "etl/s3"]).contains("report"));
    // A finished job is not a failed version, and `apps` says what the job did.
    let apps = a.ok(&["apps"]);
    assert!(apps.contains("job: run 1 finished"), "{apps}");
    assert!(a.ok(&["versions", "etl/s1"]).contains("normal"));
    let j = jobs(&a);
    assert_eq!(j.len(), 1);
    assert_eq!(
        (j[0].state.as_str(), j[0].schedule.clone()),
        ("finished", None)
    );
    // Run it again by hand: run 2, through the same queue.
    assert!(a.ok(&["job", "run", "etl"]).contains("run 2 queued"));
    wait_runs(&a, "etl", "run 2 finished", Duration::from_secs(90), |r| {
        r.first().is_some_and(|r| {
            r.run.run == 2 && r.run.state == "finished" && r.run.trigger == "manual"
        })
    });
    a.ok(&["rm", "etl"]);
    wait_until(
        "rm takes the kept containers",
        Duration::from_secs(30),
        || a.engine_containers("etl").is_empty(),
    );
}

#[test]
fn a_failing_container_is_retried_then_the_job_fails_and_its_dependant_is_skipped() {
    let a = Agent::start();
    let t = r#"
labels:
  aliyun.project_type: batch
services:
  flaky:
    image: berth-test/busybox
    command: ["sh", "-c", "echo trying; exit 3"]
    labels:
      aliyun.retry_count: "2"
      aliyun.remove_containers: remove-failed
  report:
    image: berth-test/busybox
    command: ["true"]
    labels:
      aliyun.depends: flaky
"#;
    a.deploy("flaky", t);
    wait_runs(&a, "flaky", "run 1 failed", Duration::from_secs(90), |r| {
        r.first().is_some_and(|r| r.run.state == "failed")
    });
    let r = &runs(&a, "flaky")[0];
    // The first attempt and two retries, each a new container, then failed.
    let attempts: Vec<(u32, Option<i64>)> = r
        .attempts
        .iter()
        .map(|x| (x.attempt, x.exit_code))
        .collect();
    assert_eq!(
        attempts,
        [(1, Some(3)), (2, Some(3)), (3, Some(3))],
        "{r:?}"
    );
    // With a backoff between them.
    assert!(
        r.attempts[1].started_ms - r.attempts[0].ended_ms >= 900,
        "{r:?}"
    );
    assert_eq!(r.run.tasks["flaky"], "failed");
    assert_eq!(r.run.tasks["report"], "skipped");
    assert!(r.run.reason.contains("exited 3"), "{}", r.run.reason);
    let events = job_events(&a, "flaky");
    for said in [
        "retrying flaky slot 1 (retry 1 of 2)",
        "retry 2 of 2",
        "task report skipped",
        "run 1 failed",
    ] {
        assert!(
            events.iter().any(|e| e.contains(said)),
            "{said}: {events:?}"
        );
    }
    // remove-failed: all three failed containers go; report never ran.
    wait_until("failed containers removed", Duration::from_secs(40), || {
        a.engine_containers("flaky").is_empty()
    });
    assert_eq!(a.ok(&["logs", "flaky/flaky"]).matches("trying").count(), 3);
    assert!(a.ok(&["apps"]).contains("job: run 1 failed"));
}

#[test]
fn a_cron_job_runs_on_time_keeps_ten_runs_and_obeys_run_suspend_and_resume() {
    let a = Agent::start();
    let t = r#"
labels:
  aliyun.project_type: batch
  aliyun.schedule: "*/2 * * * * *"
  aliyun.schedule.timezone: Asia/Shanghai
services:
  tick:
    image: berth-test/busybox
    command: ["echo", "tick"]
"#;
    let out = a.deploy("tick", t);
    assert!(out.contains("job deployed"), "{out}");
    let j = jobs(&a);
    assert_eq!(j[0].schedule.as_deref(), Some("*/2 * * * * *"));
    assert!(j[0].next_run_ms.is_some());
    // Twelve runs: the history keeps the newest ten, each started within 1 s of its due
    // time, two seconds apart.
    wait_runs(&a, "tick", "12 runs", Duration::from_secs(60), |r| {
        r.first()
            .is_some_and(|r| r.run.run >= 12 && r.run.state == "finished")
    });
    let r = runs(&a, "tick");
    let ended: Vec<&RunView> = r.iter().filter(|r| !r.run.active()).collect();
    assert_eq!(ended.len(), 10, "{r:?}");
    for v in &ended {
        assert_eq!(v.run.state, "finished", "{v:?}");
        assert_eq!(v.run.trigger, "schedule");
        let late = v.run.started_ms - v.run.due_ms;
        assert!(
            (0..1000).contains(&late),
            "run {} started {late} ms late",
            v.run.run
        );
        assert_eq!(v.run.due_ms % 2000, 0, "due on even seconds");
    }
    let mut dues: Vec<i64> = ended.iter().map(|v| v.run.due_ms).collect();
    dues.sort();
    assert!(dues.windows(2).all(|w| w[1] - w[0] == 2000), "{dues:?}");
    // Suspended: nothing new starts; resumed: it runs again; `job run` runs it now.
    a.ok(&["job", "suspend", "tick"]);
    std::thread::sleep(Duration::from_millis(500));
    let before = runs(&a, "tick")[0].run.run;
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        runs(&a, "tick")[0].run.run,
        before,
        "no run while suspended"
    );
    assert_eq!(jobs(&a)[0].state, "suspended");
    a.ok(&["job", "resume", "tick"]);
    wait_runs(
        &a,
        "tick",
        "a run after resume",
        Duration::from_secs(10),
        |r| r[0].run.run > before,
    );
    a.ok(&["job", "suspend", "tick"]);
    a.ok(&["job", "run", "tick"]);
    wait_runs(&a, "tick", "a manual run", Duration::from_secs(20), |r| {
        r[0].run.trigger == "manual" && r[0].run.state == "finished"
    });
    // Each run's lines by run: exactly its container's one line.
    let one = &runs(&a, "tick")[3];
    let lines = a.ok(&["logs", "tick", "--run", &one.run.run.to_string()]);
    assert_eq!(lines.lines().count(), 1, "run {}: {lines}", one.run.run);
    assert!(lines.contains(&format!(".{}.1", one.run.run)), "{lines}");
    // The lines of runs dropped from the history stay in the log store.
    let all = a.ok(&["logs", "tick"]);
    assert!(all.lines().count() >= 12, "{all}");
}

#[test]
fn a_long_run_queues_at_most_three_drops_the_rest_and_cancel_moves_on() {
    let a = Agent::start();
    let t = r#"
labels:
  aliyun.project_type: batch
  aliyun.schedule: "*/2 * * * * *"
services:
  slow:
    image: berth-test/busybox
    command: ["sleep", "30"]
    stop_signal: SIGKILL
"#;
    a.deploy("slow", t);
    // The first run takes 30 s: the next three due runs queue, the rest are dropped.
    wait_runs(&a, "slow", "three queued", Duration::from_secs(30), |r| {
        r.iter().filter(|r| r.run.state == "queued").count() == 3
    });
    wait_until("a dropped run", Duration::from_secs(10), || {
        job_events(&a, "slow")
            .iter()
            .any(|e| e.contains("was dropped"))
    });
    let r = runs(&a, "slow");
    assert_eq!(r.iter().filter(|r| r.run.state == "running").count(), 1);
    assert_eq!(r.iter().filter(|r| r.run.state == "queued").count(), 3);
    assert_eq!(jobs(&a)[0].queued, 3);
    // Cancel: the running run fails with reason cancelled, the oldest queued one starts.
    a.ok(&["job", "cancel", "slow"]);
    let cancelled = r
        .iter()
        .find(|r| r.run.state == "running")
        .map(|r| r.run.run);
    wait_runs(
        &a,
        "slow",
        "the next run running",
        Duration::from_secs(20),
        |r| {
            r.iter()
                .any(|x| Some(x.run.run) == cancelled && x.run.reason == "cancelled")
                && r.iter().any(|x| x.run.state == "running")
        },
    );
    a.ok(&["job", "suspend", "slow"]);
    a.ok(&["rm", "slow"]);
}

#[test]
fn a_kill_9_neither_loses_a_run_nor_starts_one_twice_and_a_missed_run_starts_at_start() {
    let mut a = Agent::start();
    let t = r#"
labels:
  aliyun.project_type: batch
  aliyun.schedule: "*/5 * * * * *"
services:
  work:
    image: berth-test/busybox
    command: ["sh", "-c", "echo working; sleep 2"]
    labels:
      aliyun.scale: "2"
"#;
    a.deploy("crash", t);
    // Killed while a run's containers work.
    wait_runs(&a, "crash", "a running run", Duration::from_secs(30), |r| {
        r.first()
            .is_some_and(|r| r.run.state == "running" && r.attempts.len() == 2)
    });
    a.kill9();
    // Down across a due time (every 5 s): that run is missed, and started once at start
    // (inside the default 60 s deadline).
    std::thread::sleep(Duration::from_secs(6));
    a.restart();
    wait_runs(
        &a,
        "crash",
        "the missed run, and the next ones",
        Duration::from_secs(60),
        |r| {
            r.iter()
                .any(|x| x.run.trigger == "missed" && x.run.state == "finished")
                && r.iter().filter(|x| x.run.state == "finished").count() >= 3
        },
    );
    let r = runs(&a, "crash");
    // Every run recorded once: no two runs for one due time; every ended run finished.
    let mut dues: Vec<i64> = r.iter().map(|x| x.run.due_ms).collect();
    dues.sort();
    let n = dues.len();
    dues.dedup();
    assert_eq!(dues.len(), n, "a due time ran twice: {r:?}");
    for x in r.iter().filter(|x| !x.run.active()) {
        assert_eq!(x.run.state, "finished", "{x:?}");
        assert_eq!(x.attempts.len(), 2, "one attempt per slot: {x:?}");
    }
    // No container was started twice: one start event per container name.
    let events = job_events(&a, "crash");
    let mut starts: Vec<&str> = events
        .iter()
        .filter_map(|e| e.split_once(": started ").map(|(_, n)| n))
        .collect();
    let all = starts.len();
    starts.sort();
    starts.dedup();
    assert_eq!(starts.len(), all, "a container started twice: {events:?}");
    a.ok(&["job", "suspend", "crash"]);
}
