//! Jobs' runs and their containers' attempts (issue 21), and each cron job's schedule
//! state. A run is recorded before anything of it starts, and an attempt before its
//! container is created (the container's name and labels carry both), so an agent killed
//! at any moment finds every run and every container it made, and makes none twice.

use super::{Store, StoreError, sql};
use rusqlite::{OptionalExtension, params};

/// One run of a job.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunRow {
    pub app: String,
    pub run: u64,
    /// `schedule`, `manual`, `deploy` or `missed` (due while the agent was down).
    pub trigger: String,
    /// When it was due (its schedule time) or asked for, ms since the epoch.
    pub due_ms: i64,
    /// `queued`, `running`, `finished`, `failed` or `missed`.
    pub state: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// 0 until it started / ended.
    pub started_ms: i64,
    pub ended_ms: i64,
    /// Each task's state (`plan::jobs::State`), as the runner last settled them.
    #[serde(default)]
    pub tasks: std::collections::BTreeMap<String, String>,
}

impl RunRow {
    pub fn active(&self) -> bool {
        self.state == "queued" || self.state == "running"
    }
}

/// One attempt of one container slot of a task in a run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AttemptRow {
    pub app: String,
    pub run: u64,
    pub task: String,
    pub slot: u32,
    pub attempt: u32,
    /// The container's name (`runtime::job_container_name`).
    pub container: String,
    pub started_ms: i64,
    /// 0 while it runs.
    pub ended_ms: i64,
    /// None while it runs.
    pub exit_code: Option<i64>,
    /// Its container was removed (`remove_containers`); its logs stay in the log store.
    pub removed: bool,
    /// The member it runs on (its node id), when not the job's owner.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
}

const RUN_COLUMNS: &str = "app, run, trigger, due_ms, state, reason, started_ms, ended_ms, tasks";

fn run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
    let tasks: String = r.get(8)?;
    Ok(RunRow {
        app: r.get(0)?,
        run: r.get::<_, i64>(1)? as u64,
        trigger: r.get(2)?,
        due_ms: r.get(3)?,
        state: r.get(4)?,
        reason: r.get(5)?,
        started_ms: r.get(6)?,
        ended_ms: r.get(7)?,
        tasks: serde_json::from_str(&tasks).unwrap_or_default(),
    })
}

impl Store {
    /// Records a new run of `app` (numbers continue over an app removed and deployed
    /// again, so no container name is reused); its number.
    pub fn add_run(
        &self,
        app: &str,
        trigger: &str,
        due_ms: i64,
        state: &str,
        reason: &str,
    ) -> Result<u64, StoreError> {
        self.write_acked_unlisted(|c| {
            let tx = c.transaction().map_err(sql("recording a job run"))?;
            tx.execute(
                "INSERT INTO job_counters(app, last_run) VALUES (?1, 1)
                 ON CONFLICT(app) DO UPDATE SET last_run = last_run + 1",
                params![app],
            )
            .map_err(sql("numbering a job run"))?;
            let run: i64 = tx
                .query_row(
                    "SELECT last_run FROM job_counters WHERE app = ?1",
                    params![app],
                    |r| r.get(0),
                )
                .map_err(sql("numbering a job run"))?;
            let ended = if state == "missed" { due_ms } else { 0 };
            tx.execute(
                "INSERT INTO job_runs(app, run, trigger, due_ms, state, reason, started_ms, ended_ms, tasks)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, '{}')",
                params![app, run, trigger, due_ms, state, reason, ended],
            )
            .map_err(sql("recording a job run"))?;
            tx.commit().map_err(sql("recording a job run"))?;
            Ok(run as u64)
        })
    }

    /// Saves a run's state, reason, times and task states.
    pub fn set_run(&self, r: &RunRow) -> Result<(), StoreError> {
        let tasks = serde_json::to_string(&r.tasks).unwrap_or_else(|_| "{}".into());
        self.write_acked_unlisted(|c| {
            c.execute(
                "UPDATE job_runs SET state = ?3, reason = ?4, started_ms = ?5, ended_ms = ?6, tasks = ?7
                 WHERE app = ?1 AND run = ?2",
                params![r.app, r.run as i64, r.state, r.reason, r.started_ms, r.ended_ms, tasks],
            )
            .map(|_| ())
            .map_err(sql("saving a job run"))
        })
    }

    /// The runs of `app`, newest first (at most `limit`).
    pub fn runs(&self, app: &str, limit: usize) -> Result<Vec<RunRow>, StoreError> {
        self.read(|c| {
            let mut st = c
                .prepare(&format!(
                    "SELECT {RUN_COLUMNS} FROM job_runs WHERE app = ?1 ORDER BY run DESC LIMIT ?2"
                ))
                .map_err(sql("reading job runs"))?;
            let rows = st
                .query_map(params![app, limit as i64], run_row)
                .map_err(sql("reading job runs"))?;
            rows.collect::<Result<_, _>>()
                .map_err(sql("reading job runs"))
        })
    }

    /// One run of `app`.
    pub fn run(&self, app: &str, run: u64) -> Result<Option<RunRow>, StoreError> {
        self.read(|c| {
            c.query_row(
                &format!("SELECT {RUN_COLUMNS} FROM job_runs WHERE app = ?1 AND run = ?2"),
                params![app, run as i64],
                run_row,
            )
            .optional()
            .map_err(sql("reading a job run"))
        })
    }

    /// Every queued or running run of every app, oldest first.
    pub fn active_runs(&self) -> Result<Vec<RunRow>, StoreError> {
        self.read(|c| {
            let mut st = c
                .prepare(&format!(
                    "SELECT {RUN_COLUMNS} FROM job_runs WHERE state IN ('queued', 'running')
                     ORDER BY app, run"
                ))
                .map_err(sql("reading job runs"))?;
            let rows = st.query_map([], run_row).map_err(sql("reading job runs"))?;
            rows.collect::<Result<_, _>>()
                .map_err(sql("reading job runs"))
        })
    }

    /// Drops the ended runs of `app` beyond the newest `keep` (with their attempts); the
    /// attempts dropped, whose containers may still exist.
    pub fn prune_runs(&self, app: &str, keep: u32) -> Result<Vec<AttemptRow>, StoreError> {
        let old: Vec<u64> = self.read(|c| {
            let mut st = c
                .prepare(
                    "SELECT run FROM job_runs WHERE app = ?1 AND state NOT IN ('queued', 'running')
                     ORDER BY run DESC LIMIT -1 OFFSET ?2",
                )
                .map_err(sql("reading job runs"))?;
            let rows = st
                .query_map(params![app, keep as i64], |r| {
                    r.get::<_, i64>(0).map(|n| n as u64)
                })
                .map_err(sql("reading job runs"))?;
            rows.collect::<Result<_, _>>()
                .map_err(sql("reading job runs"))
        })?;
        let mut dropped = Vec::new();
        for run in &old {
            dropped.extend(self.attempts(app, *run)?);
        }
        if old.is_empty() {
            return Ok(dropped);
        }
        self.write_unlisted(|c| {
            let tx = c.transaction().map_err(sql("pruning job runs"))?;
            for run in &old {
                tx.execute(
                    "DELETE FROM job_runs WHERE app = ?1 AND run = ?2",
                    params![app, *run as i64],
                )
                .map_err(sql("pruning job runs"))?;
                tx.execute(
                    "DELETE FROM job_attempts WHERE app = ?1 AND run = ?2",
                    params![app, *run as i64],
                )
                .map_err(sql("pruning job runs"))?;
            }
            tx.commit().map_err(sql("pruning job runs"))
        })?;
        Ok(dropped)
    }

    /// Records an attempt before its container is made.
    pub fn add_attempt(&self, a: &AttemptRow) -> Result<(), StoreError> {
        self.write_acked_unlisted(|c| {
            c.execute(
                "INSERT OR IGNORE INTO job_attempts(app, run, task, slot, attempt, container, started_ms, ended_ms, exit_code, removed, node)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    a.app,
                    a.run as i64,
                    a.task,
                    a.slot,
                    a.attempt,
                    a.container,
                    a.started_ms,
                    a.ended_ms,
                    a.exit_code,
                    a.removed,
                    a.node
                ],
            )
            .map(|_| ())
            .map_err(sql("recording a job attempt"))
        })
    }

    /// Saves an attempt's start, end (exit code, time) and whether its container was
    /// removed.
    pub fn set_attempt(&self, a: &AttemptRow) -> Result<(), StoreError> {
        self.write_acked_unlisted(|c| {
            c.execute(
                "UPDATE job_attempts SET ended_ms = ?6, exit_code = ?7, removed = ?8, started_ms = ?9
                 WHERE app = ?1 AND run = ?2 AND task = ?3 AND slot = ?4 AND attempt = ?5",
                params![
                    a.app,
                    a.run as i64,
                    a.task,
                    a.slot,
                    a.attempt,
                    a.ended_ms,
                    a.exit_code,
                    a.removed,
                    a.started_ms
                ],
            )
            .map(|_| ())
            .map_err(sql("saving a job attempt"))
        })
    }

    /// The attempts of one run, by task, slot and attempt.
    pub fn attempts(&self, app: &str, run: u64) -> Result<Vec<AttemptRow>, StoreError> {
        self.read(|c| {
            let mut st = c
                .prepare(
                    "SELECT app, run, task, slot, attempt, container, started_ms, ended_ms, exit_code, removed, node
                     FROM job_attempts WHERE app = ?1 AND run = ?2 ORDER BY task, slot, attempt",
                )
                .map_err(sql("reading job attempts"))?;
            let rows = st
                .query_map(params![app, run as i64], |r| {
                    Ok(AttemptRow {
                        app: r.get(0)?,
                        run: r.get::<_, i64>(1)? as u64,
                        task: r.get(2)?,
                        slot: r.get(3)?,
                        attempt: r.get(4)?,
                        container: r.get(5)?,
                        started_ms: r.get(6)?,
                        ended_ms: r.get(7)?,
                        exit_code: r.get(8)?,
                        removed: r.get(9)?,
                        node: r.get(10)?,
                    })
                })
                .map_err(sql("reading job attempts"))?;
            rows.collect::<Result<_, _>>()
                .map_err(sql("reading job attempts"))
        })
    }

    /// A cron job's schedule state: suspended, and the last due time handled (0: none yet).
    pub fn job_schedule(&self, app: &str) -> Result<(bool, i64), StoreError> {
        self.read(|c| {
            c.query_row(
                "SELECT suspended, last_due_ms FROM job_schedules WHERE app = ?1",
                params![app],
                |r| Ok((r.get::<_, bool>(0)?, r.get::<_, i64>(1)?)),
            )
            .optional()
            .map(|o| o.unwrap_or((false, 0)))
            .map_err(sql("reading a job's schedule"))
        })
    }

    /// Every cron job's schedule state, by app.
    pub fn job_schedules(
        &self,
    ) -> Result<std::collections::BTreeMap<String, (bool, i64)>, StoreError> {
        self.read(|c| {
            let mut st = c
                .prepare("SELECT app, suspended, last_due_ms FROM job_schedules")
                .map_err(sql("reading the jobs' schedules"))?;
            let rows = st
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        (r.get::<_, bool>(1)?, r.get::<_, i64>(2)?),
                    ))
                })
                .map_err(sql("reading the jobs' schedules"))?;
            rows.collect::<Result<_, _>>()
                .map_err(sql("reading the jobs' schedules"))
        })
    }

    pub fn set_job_schedule(
        &self,
        app: &str,
        suspended: bool,
        last_due_ms: i64,
    ) -> Result<(), StoreError> {
        self.write_acked_unlisted(|c| {
            c.execute(
                "INSERT INTO job_schedules(app, suspended, last_due_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT(app) DO UPDATE SET suspended = excluded.suspended,
                    last_due_ms = excluded.last_due_ms",
                params![app, suspended, last_due_ms],
            )
            .map(|_| ())
            .map_err(sql("saving a job's schedule"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(run: u64, slot: u32, n: u32) -> AttemptRow {
        AttemptRow {
            app: "j".into(),
            run,
            task: "s1".into(),
            slot,
            attempt: n,
            container: format!("j_s1_{slot}.{run}.{n}"),
            started_ms: 1,
            ended_ms: 0,
            exit_code: None,
            removed: false,
            node: String::new(),
        }
    }

    #[test]
    fn runs_and_attempts_round_trip_are_numbered_for_good_and_pruned() {
        let dir = tempfile::tempdir().expect("dir");
        let s = Store::open(&dir.path().join("s.db")).expect("open");
        assert_eq!(s.add_run("j", "deploy", 5, "queued", "").unwrap(), 1);
        assert_eq!(s.add_run("j", "schedule", 6, "queued", "").unwrap(), 2);
        assert_eq!(s.active_runs().unwrap().len(), 2);
        let mut r = s.run("j", 1).unwrap().unwrap();
        r.state = "running".into();
        r.started_ms = 7;
        r.tasks.insert("s1".into(), "running".into());
        s.set_run(&r).unwrap();
        assert_eq!(s.run("j", 1).unwrap().unwrap(), r);
        let a = attempt(1, 1, 1);
        s.add_attempt(&a).unwrap();
        s.add_attempt(&a).unwrap();
        let mut done = a.clone();
        done.started_ms = 4;
        done.exit_code = Some(3);
        done.ended_ms = 9;
        s.set_attempt(&done).unwrap();
        s.add_attempt(&attempt(1, 1, 2)).unwrap();
        assert_eq!(s.attempts("j", 1).unwrap(), vec![done, attempt(1, 1, 2)]);
        // Ended runs beyond the newest one kept are dropped with their attempts.
        r.state = "failed".into();
        s.set_run(&r).unwrap();
        let mut r2 = s.run("j", 2).unwrap().unwrap();
        r2.state = "finished".into();
        s.set_run(&r2).unwrap();
        let dropped = s.prune_runs("j", 1).unwrap();
        assert_eq!(dropped.len(), 2);
        assert_eq!(
            s.runs("j", 10)
                .unwrap()
                .iter()
                .map(|r| r.run)
                .collect::<Vec<_>>(),
            vec![2]
        );
        assert!(s.attempts("j", 1).unwrap().is_empty());
        // Removing the app forgets its runs, not its numbering.
        s.delete_app("j").unwrap();
        assert!(s.runs("j", 10).unwrap().is_empty());
        assert_eq!(s.add_run("j", "manual", 1, "queued", "").unwrap(), 3);
        assert_eq!(s.job_schedule("j").unwrap(), (false, 0));
        s.set_job_schedule("j", true, 42).unwrap();
        assert_eq!(s.job_schedule("j").unwrap(), (true, 42));
        assert_eq!(s.job_schedules().unwrap()["j"], (true, 42));
    }
}
