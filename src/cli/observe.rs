//! `berth top`, `berth metrics`, `berth alarm`, `berth logs`.

use super::client::Client;
use super::output::table;
use crate::wire::{AlarmRule, LogLine, Series, Top};
use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use std::io::BufRead;
use std::time::Duration;

pub fn bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0}{}", UNITS[u])
    } else {
        format!("{v:.1}{}", UNITS[u])
    }
}

fn pct(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.2}%")).unwrap_or_else(|| "--".into())
}

/// Query-string escaping for values the user typed.
pub fn q(v: &str) -> String {
    crate::wire::percent(v)
}

fn print_top(t: &Top) {
    // In a cluster each row says where it runs.
    let nodes = t.containers.iter().any(|c| !c.node.is_empty()) || !t.missing.is_empty();
    let rows: Vec<Vec<String>> = t
        .containers
        .iter()
        .map(|c| {
            let mut row = vec![
                c.name.clone(),
                c.status.clone(),
                pct(c.cpu_percent),
                format!(
                    "{} / {}",
                    bytes(c.mem_bytes as f64),
                    bytes(c.mem_limit as f64)
                ),
                format!("{:.2}%", c.mem_percent),
                format!("{} / {}", bytes(c.net_rx as f64), bytes(c.net_tx as f64)),
                format!(
                    "{} / {}",
                    bytes(c.block_read as f64),
                    bytes(c.block_write as f64)
                ),
            ];
            if nodes {
                row.insert(0, c.node.clone());
            }
            row
        })
        .collect();
    let mut head = vec![
        "NAME",
        "STATUS",
        "CPU %",
        "MEM USAGE / LIMIT",
        "MEM %",
        "NET I/O",
        "BLOCK I/O",
    ];
    if nodes {
        head.insert(0, "NODE");
    }
    table(&head, &rows);
    for m in &t.missing {
        println!("(no figures from {m})");
    }
}

/// Like `docker stats`: refreshes every interval until interrupted, or once with --no-stream.
pub fn top(client: &Client, app: Option<&str>, no_stream: bool, json: bool) -> Result<()> {
    let path = format!(
        "/v1/top{}",
        app.map(|a| format!("?app={}", q(a))).unwrap_or_default()
    );
    loop {
        let t: Top = client.get(&path)?;
        if json {
            println!("{}", serde_json::to_string(&t)?);
        } else {
            if !no_stream {
                // Clear the screen and go home, as `docker stats` does.
                print!("\x1b[2J\x1b[H");
            }
            if t.time_ns == 0 {
                println!(
                    "(no figures yet: the first collection runs within {} s)",
                    t.interval_ms / 1000
                );
            }
            print_top(&t);
        }
        if no_stream {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(t.interval_ms.clamp(1000, 60_000)));
    }
}

pub fn metrics(client: &Client, app: Option<&str>, json: bool) -> Result<()> {
    let path = format!(
        "/v1/metrics{}",
        app.map(|a| format!("?app={}", q(a))).unwrap_or_default()
    );
    let list: Vec<Series> = client.get(&path)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    for s in &list {
        println!("{}", s.name);
        let rows: Vec<Vec<String>> = s
            .buckets
            .iter()
            .map(|b| {
                vec![
                    crate::timefmt::rfc3339_micros(b.time_ns)[11..16].to_string(),
                    format!("{:.2}%", b.cpu_percent),
                    bytes(b.mem_bytes),
                    format!("{:.2}%", b.mem_percent),
                    format!("{}/s", bytes(b.net_rx_rate)),
                    format!("{}/s", bytes(b.net_tx_rate)),
                ]
            })
            .collect();
        table(
            &["MINUTE (UTC)", "CPU %", "MEM", "MEM %", "NET IN", "NET OUT"],
            &rows,
        );
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum AlarmCommand {
    /// Add (or replace) a rule: berth alarm add hot --metric cpu_percent --above 80 --periods 3
    Add(AlarmArgs),
    /// List rules (from berth.toml and added here).
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Remove a rule added with `alarm add`.
    Rm { name: String },
}

#[derive(Debug, Args)]
pub struct AlarmArgs {
    pub name: String,
    /// cpu_percent, mem_percent or mem_bytes.
    #[arg(long)]
    pub metric: String,
    /// Raise when the value is above this.
    #[arg(long, conflicts_with = "below", required_unless_present = "below")]
    pub above: Option<f64>,
    /// Raise when the value is below this.
    #[arg(long)]
    pub below: Option<f64>,
    /// Collection cycles in a row before it is raised.
    #[arg(long, default_value_t = 1)]
    pub periods: u32,
    /// Only this app (`host` for the host's own figures); default: every container.
    #[arg(long, default_value = "")]
    pub app: String,
    /// Only this service of the app.
    #[arg(long, default_value = "")]
    pub service: String,
    /// Also send each raise and clear here: webhook:URL (a JSON POST, retried until the
    /// receiver takes it). Repeatable.
    #[arg(long, value_name = "webhook:URL")]
    pub notify: Vec<String>,
}

pub fn alarm(client: &Client, cmd: AlarmCommand) -> Result<()> {
    match cmd {
        AlarmCommand::Add(a) => {
            let (comparison, threshold) = match (a.above, a.below) {
                (Some(v), None) => (">", v),
                (None, Some(v)) => ("<", v),
                _ => bail!("give one of --above or --below"),
            };
            let rule = AlarmRule {
                name: a.name,
                metric: a.metric,
                comparison: comparison.into(),
                threshold,
                periods: a.periods,
                app: a.app,
                service: a.service,
                notify: a.notify,
            };
            rule.validate().map_err(anyhow::Error::msg)?;
            let r: AlarmRule = client.post("/v1/alarms", &rule)?;
            println!("alarm {} added", r.name);
            Ok(())
        }
        AlarmCommand::Ls { json } => {
            let list: Vec<AlarmRule> = client.get("/v1/alarms")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|r| {
                    let scope = match (r.app.as_str(), r.service.as_str()) {
                        ("", _) => "every container".to_string(),
                        (a, "") => a.to_string(),
                        (a, s) => format!("{a}/{s}"),
                    };
                    vec![
                        r.name.clone(),
                        scope,
                        format!("{} {} {}", r.metric, r.comparison, r.threshold),
                        r.periods.to_string(),
                        if r.notify.is_empty() {
                            "-".into()
                        } else {
                            r.notify.join(", ")
                        },
                    ]
                })
                .collect();
            table(&["NAME", "SCOPE", "CONDITION", "PERIODS", "NOTIFY"], &rows);
            Ok(())
        }
        AlarmCommand::Rm { name } => {
            let _: serde_json::Value = client.delete(&format!("/v1/alarms/{}", q(&name)))?;
            println!("alarm {name} removed");
            Ok(())
        }
    }
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// APP, APP/SERVICE or APP/SERVICE/SLOT.
    #[arg(required_unless_present = "router")]
    pub target: Option<String>,
    /// The router's access log instead (`[router] access_log = true`): a line per request,
    /// with the route, version and instance that answered.
    #[arg(long, conflicts_with_all = ["target", "run"])]
    pub router: bool,
    /// Keep printing new lines as they arrive.
    #[arg(short, long)]
    pub follow: bool,
    /// Only lines since: a duration back from now (10m, 2h, 1d), an RFC 3339 time or Unix seconds.
    #[arg(long)]
    pub since: Option<String>,
    /// Only the lines of this run of a job (`berth runs APP` lists them).
    #[arg(long, value_name = "N")]
    pub run: Option<u64>,
    /// Only lines until (same forms as --since).
    #[arg(long)]
    pub until: Option<String>,
    /// Only the last N lines.
    #[arg(short = 'n', long)]
    pub tail: Option<usize>,
    /// Only lines containing TEXT.
    #[arg(long, value_name = "TEXT")]
    pub grep: Option<String>,
    /// Only this stream: stdout, stderr, or a log file's name (`logs`, `log_store_NAME`'s NAME).
    #[arg(long)]
    pub stream: Option<String>,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
    /// Print every line's time (lines of services with `log.timestamp: "false"` are printed
    /// bare otherwise; the others always show it).
    #[arg(short = 't', long)]
    pub timestamps: bool,
}

/// How lines print: with the container name when several may mix, with their time when
/// asked (`-t`) or when the service's `log.timestamp` is true (its default).
struct Shape {
    many: bool,
    /// Services whose `log.timestamp` is false.
    bare: std::collections::BTreeSet<String>,
}

fn print_line(l: &LogLine, a: &LogsArgs, shape: &Shape) -> Result<()> {
    if a.json {
        println!("{}", serde_json::to_string(l)?);
        return Ok(());
    }
    let mut out = String::new();
    if a.timestamps || !shape.bare.contains(&l.service) {
        out.push_str(&crate::timefmt::rfc3339_micros(l.time_ns));
        out.push(' ');
    }
    if shape.many {
        out.push_str(&l.container);
        out.push_str(" | ");
    }
    if l.stream != "stdout" && l.stream != "stderr" {
        out.push_str(&format!("[{}] ", l.stream));
    }
    out.push_str(&l.message);
    if l.stream == "stderr" {
        eprintln!("{out}");
    } else {
        println!("{out}");
    }
    Ok(())
}

pub fn logs(client: &Client, a: LogsArgs) -> Result<()> {
    let target = match (&a.target, a.router) {
        (_, true) => crate::logs::ROUTER_APP,
        (Some(t), false) => t.as_str(),
        (None, false) => {
            bail!("name what to show: APP, APP/SERVICE, APP/SERVICE/SLOT, or --router")
        }
    };
    let parts: Vec<&str> = target.split('/').collect();
    let (app, service, slot) = match parts.as_slice() {
        [app] => (*app, None, None),
        [app, svc] => (*app, Some(*svc), None),
        [app, svc, slot] => {
            let n: u32 = slot.parse().map_err(|_| anyhow::anyhow!("slot {slot:?} in {target:?} is not a number: write APP/SERVICE/SLOT, like shop/web/2"))?;
            (*app, Some(*svc), Some(n))
        }
        _ => bail!("{target:?}: write APP, APP/SERVICE or APP/SERVICE/SLOT"),
    };
    let mut path = format!("/v1/logs?app={}", q(app));
    let mut add = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            path.push_str(&format!("&{k}={}", q(&v)));
        }
    };
    add("service", service.map(str::to_string));
    add("slot", slot.map(|s| s.to_string()));
    add("run", a.run.map(|r| r.to_string()));
    add("since", a.since.clone());
    add("until", a.until.clone());
    add("tail", a.tail.map(|t| t.to_string()));
    add("grep", a.grep.clone());
    add("stream", a.stream.clone());
    // The logs request comes first: it is what checks the app and the filters.
    let shape = |client: &Client| -> Result<Shape> {
        if a.router {
            return Ok(Shape {
                many: false,
                bare: Default::default(),
            });
        }
        let spec: crate::wire::InspectResponse =
            client.get(&format!("/v1/apps/{}/spec", q(app)))?;
        Ok(Shape {
            many: slot.is_none(),
            bare: spec
                .spec
                .services
                .iter()
                .filter(|(_, s)| !s.ext.log_timestamp)
                .map(|(n, _)| n.clone())
                .collect(),
        })
    };
    if !a.follow {
        let lines: Vec<LogLine> = client.get(&path)?;
        let shape = shape(client)?;
        for l in &lines {
            print_line(l, &a, &shape)?;
        }
        return Ok(());
    }
    path.push_str("&follow=1");
    let reader = client.stream(&path)?;
    let shape = shape(client)?;
    for line in reader.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue; // heartbeat
        }
        let l: LogLine = serde_json::from_str(&line)?;
        print_line(&l, &a, &shape)?;
    }
    Ok(())
}
