//! `berth jobs`, `berth runs APP`, `berth job run|cancel|suspend|resume APP`.

use super::client::Client;
use super::output::{table, time_ms};
use crate::wire::{JobView, RunView};
use anyhow::Result;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Run the job now (through its queue: after the running run, at most 3 waiting).
    Run { app: String },
    /// Stop the running run: it ends failed with reason `cancelled`.
    Cancel { app: String },
    /// Stop starting scheduled runs (a cron job).
    Suspend { app: String },
    /// Start scheduled runs again, counting from now.
    Resume { app: String },
}

pub fn job(client: &Client, cmd: JobCommand) -> Result<()> {
    let (app, action) = match &cmd {
        JobCommand::Run { app } => (app, "run"),
        JobCommand::Cancel { app } => (app, "cancel"),
        JobCommand::Suspend { app } => (app, "suspend"),
        JobCommand::Resume { app } => (app, "resume"),
    };
    let r: serde_json::Value = client.post(&format!("/v1/apps/{app}/job/{action}"), &())?;
    match action {
        "run" => println!(
            "{app}: run {} queued; `berth runs {app}` shows it",
            r["run"]
        ),
        "cancel" => println!("{app}: run {} cancelled", r["run"]),
        _ => println!("{app}: schedule {action}d"),
    }
    Ok(())
}

fn duration(from_ms: i64, to_ms: i64) -> String {
    if from_ms <= 0 {
        return "-".into();
    }
    let end = if to_ms > 0 {
        to_ms
    } else {
        crate::clock::now_ms()
    };
    format!("{:.1}s", (end - from_ms).max(0) as f64 / 1000.0)
}

pub fn jobs(client: &Client, json: bool) -> Result<()> {
    let list: Vec<JobView> = client.get("/v1/jobs")?;
    if json {
        return super::print_json(&list);
    }
    let clustered = list.iter().any(|j| !j.node.is_empty());
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|j| {
            let schedule = match (&j.schedule, &j.timezone) {
                (Some(s), Some(tz)) => format!("{s} ({tz})"),
                (Some(s), None) => s.clone(),
                (None, _) => "-".into(),
            };
            let last = match &j.last_run {
                Some(r) => format!(
                    "{} {} {}",
                    r.run,
                    r.state,
                    if r.started_ms > 0 {
                        time_ms(r.started_ms)
                    } else {
                        time_ms(r.due_ms)
                    }
                ),
                None => "-".into(),
            };
            let state = if j.queued > 0 {
                format!("{} ({} queued)", j.state, j.queued)
            } else {
                j.state.clone()
            };
            let mut row = vec![
                j.app.clone(),
                state,
                schedule,
                last,
                j.next_run_ms.map(time_ms).unwrap_or_else(|| "-".into()),
            ];
            if clustered {
                row.push(j.node.clone());
            }
            row
        })
        .collect();
    let mut header = vec!["JOB", "STATE", "SCHEDULE", "LAST RUN", "NEXT RUN"];
    if clustered {
        header.push("NODE");
    }
    table(&header, &rows);
    Ok(())
}

pub fn runs(client: &Client, app: &str, task: Option<&str>, json: bool) -> Result<()> {
    let path = match task {
        Some(t) => format!("/v1/apps/{app}/runs?task={t}"),
        None => format!("/v1/apps/{app}/runs"),
    };
    let list: Vec<RunView> = client.get(&path)?;
    if json {
        return super::print_json(&list);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|v| {
            let r = &v.run;
            let tasks: Vec<String> = r.tasks.iter().map(|(t, s)| format!("{t}:{s}")).collect();
            let retries = v.attempts.iter().filter(|a| a.attempt > 1).count();
            let failed = v
                .attempts
                .iter()
                .filter(|a| a.exit_code.is_some_and(|c| c != 0))
                .count();
            vec![
                r.run.to_string(),
                r.trigger.clone(),
                r.state.clone(),
                if r.started_ms > 0 {
                    time_ms(r.started_ms)
                } else {
                    time_ms(r.due_ms)
                },
                duration(r.started_ms, r.ended_ms),
                if tasks.is_empty() {
                    "-".into()
                } else {
                    tasks.join(",")
                },
                format!("{} ({failed} failed, {retries} retries)", v.attempts.len()),
                r.reason.clone(),
            ]
        })
        .collect();
    table(
        &[
            "RUN",
            "TRIGGER",
            "STATE",
            "STARTED",
            "TOOK",
            "TASKS",
            "CONTAINERS",
            "REASON",
        ],
        &rows,
    );
    Ok(())
}
