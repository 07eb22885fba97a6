//! The last hour of samples (per container and for the host, in one-minute buckets) and alarm
//! rules evaluated on every snapshot. Pure state machines: the caller feeds snapshots.

use super::collect::Snapshot;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// Buckets kept: one hour of minutes.
const BUCKETS: usize = 60;
const BUCKET_NS: i64 = 60 * 1_000_000_000;

/// One minute of one series: averages of the gauges, last value of the counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    /// Start of the minute, ns since the epoch.
    pub time_ns: i64,
    pub cpu_percent: f64,
    pub mem_bytes: f64,
    pub mem_percent: f64,
    /// Bytes received / sent per second over the minute.
    pub net_rx_rate: f64,
    pub net_tx_rate: f64,
    /// Bytes read / written on block devices per second over the minute.
    #[serde(default)]
    pub blk_read_rate: f64,
    #[serde(default)]
    pub blk_write_rate: f64,
    #[serde(skip)]
    samples: u32,
    #[serde(skip)]
    net_first: Option<(i64, u64, u64)>,
    #[serde(skip)]
    blk_first: Option<(i64, u64, u64)>,
}

/// Figures of one series at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Figures {
    pub cpu_percent: Option<f64>,
    pub mem_bytes: f64,
    pub mem_percent: f64,
    pub net_rx: u64,
    pub net_tx: u64,
    /// Block device bytes read and written (counters).
    pub blk_read: u64,
    pub blk_write: u64,
}

/// Series key: `host` or a container name; app and service kept for filtering.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Series {
    pub name: String,
    pub app: String,
    pub service: String,
    pub buckets: VecDeque<Bucket>,
}

#[derive(Debug, Default)]
pub struct History {
    series: BTreeMap<String, Series>,
}

/// A snapshot's figures per series: the host first, then each running container.
pub fn figures(s: &Snapshot) -> Vec<(String, String, String, Figures)> {
    let total = s.sample.mem("MemTotal");
    let avail = s.sample.mem("MemAvailable");
    let host_cpu = s.cpu_percent.first().map(|(_, modes)| {
        100.0
            - modes
                .iter()
                .find(|(m, _)| *m == "idle")
                .map(|(_, v)| *v)
                .unwrap_or(0.0)
    });
    let mut out = vec![(
        "host".to_string(),
        String::new(),
        String::new(),
        Figures {
            cpu_percent: host_cpu,
            mem_bytes: total.saturating_sub(avail) as f64,
            mem_percent: if total > 0 {
                total.saturating_sub(avail) as f64 * 100.0 / total as f64
            } else {
                0.0
            },
            net_rx: s.sample.net.iter().map(|n| n.rx_bytes).sum(),
            net_tx: s.sample.net.iter().map(|n| n.tx_bytes).sum(),
            blk_read: whole_disks(&s.sample.disks).map(|d| d.read_bytes).sum(),
            blk_write: whole_disks(&s.sample.disks).map(|d| d.write_bytes).sum(),
        },
    )];
    for c in &s.containers {
        let Some(st) = &c.stats else { continue };
        out.push((
            c.target.name.clone(),
            c.target.app.clone(),
            c.target.service.clone(),
            Figures {
                cpu_percent: c.cpu_percent,
                mem_bytes: st.working_set() as f64,
                mem_percent: c.mem_percent(total).unwrap_or(0.0),
                net_rx: c.net.iter().map(|n| n.rx_bytes).sum(),
                net_tx: c.net.iter().map(|n| n.tx_bytes).sum(),
                blk_read: st.blkio.iter().map(|d| d.read_bytes).sum(),
                blk_write: st.blkio.iter().map(|d| d.write_bytes).sum(),
            },
        ));
    }
    out
}

/// The devices that are not a partition of another listed one (`sda`, not `sda1`), so
/// bytes are counted once.
fn whole_disks(disks: &[super::host::DiskIo]) -> impl Iterator<Item = &super::host::DiskIo> + '_ {
    disks.iter().filter(move |d| {
        !disks
            .iter()
            .any(|e| e.name != d.name && d.name.starts_with(&e.name))
    })
}

impl History {
    pub fn record(&mut self, s: &Snapshot) {
        let start = s.time_ns - s.time_ns.rem_euclid(BUCKET_NS);
        let mut seen = std::collections::HashSet::new();
        for (name, app, service, f) in figures(s) {
            seen.insert(name.clone());
            let series = self.series.entry(name.clone()).or_insert_with(|| Series {
                name,
                app,
                service,
                buckets: VecDeque::new(),
            });
            if series.buckets.back().map(|b| b.time_ns) != Some(start) {
                series.buckets.push_back(Bucket {
                    time_ns: start,
                    ..Default::default()
                });
                while series.buckets.len() > BUCKETS {
                    series.buckets.pop_front();
                }
            }
            if let Some(b) = series.buckets.back_mut() {
                let n = b.samples as f64;
                let avg = |old: f64, new: f64| (old * n + new) / (n + 1.0);
                b.cpu_percent = avg(b.cpu_percent, f.cpu_percent.unwrap_or(b.cpu_percent));
                b.mem_bytes = avg(b.mem_bytes, f.mem_bytes);
                b.mem_percent = avg(b.mem_percent, f.mem_percent);
                let (t0, rx0, tx0) = *b.net_first.get_or_insert((s.time_ns, f.net_rx, f.net_tx));
                let dt = (s.time_ns - t0) as f64 / 1e9;
                if dt > 0.0 {
                    b.net_rx_rate = f.net_rx.saturating_sub(rx0) as f64 / dt;
                    b.net_tx_rate = f.net_tx.saturating_sub(tx0) as f64 / dt;
                }
                let (t0, r0, w0) = *b
                    .blk_first
                    .get_or_insert((s.time_ns, f.blk_read, f.blk_write));
                let dt = (s.time_ns - t0) as f64 / 1e9;
                if dt > 0.0 {
                    b.blk_read_rate = f.blk_read.saturating_sub(r0) as f64 / dt;
                    b.blk_write_rate = f.blk_write.saturating_sub(w0) as f64 / dt;
                }
                b.samples += 1;
            }
        }
        // A container that is gone keeps its hour, then ages out.
        let horizon = start - BUCKETS as i64 * BUCKET_NS;
        self.series.retain(|k, v| {
            seen.contains(k) || v.buckets.back().is_some_and(|b| b.time_ns > horizon)
        });
    }

    /// The series of an app (or the host with app "").
    pub fn of_app(&self, app: &str) -> Vec<Series> {
        self.series
            .values()
            .filter(|s| {
                if app.is_empty() {
                    s.name == "host"
                } else {
                    s.app == app
                }
            })
            .cloned()
            .collect()
    }
}

/// An alarm rule: `metric` of each container (of `app`/`service` when given) or of the host,
/// compared with `threshold`, raised after `periods` collection cycles in a row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmRule {
    pub name: String,
    /// cpu_percent, mem_percent or mem_bytes.
    pub metric: String,
    /// ">" (default) or "<".
    #[serde(default = "above")]
    pub comparison: String,
    pub threshold: f64,
    #[serde(default = "one")]
    pub periods: u32,
    /// Limit to one app (and service); "host" for the host's own figures.
    #[serde(default)]
    pub app: String,
    #[serde(default)]
    pub service: String,
    /// Where each raise and clear is also sent: `webhook:http(s)://...` (a JSON POST,
    /// through the outbox, so an outage of the receiver loses none), or `syslog` (a message
    /// to each `[[logs.syslog]]` server, through the outbox too).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<String>,
}

/// `[metrics.notify]`: cluster and job events sent to notifiers, as alarms are (a webhook
/// gets one JSON notice per POST through the durable outbox; `syslog` goes to the
/// `[[logs.syslog]]` servers).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventNotify {
    /// `node` (a member is lost, or alive again) and/or `job` (a run failed). Default both.
    #[serde(default = "EventNotify::all")]
    pub on: Vec<String>,
    /// `webhook:URL` and/or `syslog`.
    #[serde(default)]
    pub to: Vec<String>,
}

impl Default for EventNotify {
    fn default() -> Self {
        EventNotify {
            on: EventNotify::all(),
            to: Vec::new(),
        }
    }
}

impl EventNotify {
    fn all() -> Vec<String> {
        vec!["node".into(), "job".into()]
    }

    pub fn validate(&self) -> Result<(), String> {
        if let Some(o) = self
            .on
            .iter()
            .find(|o| !matches!(o.as_str(), "node" | "job"))
        {
            return Err(format!(
                "[metrics.notify] on {o:?}: write \"node\" (a member lost or alive again) or \"job\" (a run failed)"
            ));
        }
        if self.to.len() > 8 {
            return Err("[metrics.notify]: at most 8 notify targets".into());
        }
        for n in self.to.iter().filter(|n| n.as_str() != "syslog") {
            notify_webhook(n).map_err(|e| format!("[metrics.notify] {e}"))?;
        }
        Ok(())
    }

    /// Does an event of `kind` saying `message` go to the notifiers? Which events those are
    /// is told by their kind and the words the agent writes for them.
    pub fn wants(&self, kind: &str, message: &str) -> bool {
        let on = |k: &str| self.on.iter().any(|o| o == k);
        !self.to.is_empty()
            && match kind {
                "node" => {
                    on("node")
                        && (message.contains(" is lost ") || message.contains(" is alive again"))
                }
                "job" => on("job") && message.contains(" failed after "),
                _ => false,
            }
    }
}

/// The webhook URL of a `notify` entry, checked.
pub fn notify_webhook(n: &str) -> Result<&str, String> {
    match n.strip_prefix("webhook:") {
        Some(url)
            if (url.starts_with("http://") || url.starts_with("https://"))
                && url.len() > "https://".len()
                && url.len() <= 2048
                && !url.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            Ok(url)
        }
        _ => Err(format!(
            "notify {n:?}: write webhook:http://HOST[:PORT]/PATH (or https://), or syslog"
        )),
    }
}

fn above() -> String {
    ">".into()
}

fn one() -> u32 {
    1
}

pub const ALARM_METRICS: &[&str] = &["cpu_percent", "mem_percent", "mem_bytes"];

impl AlarmRule {
    pub fn validate(&self) -> Result<(), String> {
        let ok_name = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok_name {
            return Err(format!(
                "alarm name {:?}: use 1-64 letters, digits, `-` or `_`",
                self.name
            ));
        }
        if !ALARM_METRICS.contains(&self.metric.as_str()) {
            return Err(format!(
                "alarm {}: metric {:?} is unknown: use one of {}",
                self.name,
                self.metric,
                ALARM_METRICS.join(", ")
            ));
        }
        if !matches!(self.comparison.as_str(), ">" | "<") {
            return Err(format!(
                "alarm {}: comparison {:?}: use > or <",
                self.name, self.comparison
            ));
        }
        if !self.threshold.is_finite() {
            return Err(format!(
                "alarm {}: the threshold must be a number",
                self.name
            ));
        }
        if self.periods == 0 || self.periods > 1000 {
            return Err(format!("alarm {}: periods must be 1-1000", self.name));
        }
        if self.notify.len() > 8 {
            return Err(format!("alarm {}: at most 8 notify targets", self.name));
        }
        for n in self.notify.iter().filter(|n| n.as_str() != "syslog") {
            notify_webhook(n).map_err(|e| format!("alarm {}: {e}", self.name))?;
        }
        Ok(())
    }

    fn applies(&self, name: &str, app: &str, service: &str) -> bool {
        match self.app.as_str() {
            "" => name != "host",
            "host" => name == "host",
            a => a == app && (self.service.is_empty() || self.service == service),
        }
    }

    fn value(&self, f: &Figures) -> Option<f64> {
        match self.metric.as_str() {
            "cpu_percent" => f.cpu_percent,
            "mem_percent" => Some(f.mem_percent),
            "mem_bytes" => Some(f.mem_bytes),
            _ => None,
        }
    }
}

/// Per (rule, series): how many cycles in a row it held, and whether it is raised.
#[derive(Debug, Default)]
pub struct Alarms {
    state: BTreeMap<(String, String), (u32, bool)>,
}

/// An alarm changing state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlarmEvent {
    /// `raised` or `cleared`.
    pub state: &'static str,
    pub alarm: String,
    /// The container (or `host`) whose figures crossed the threshold.
    pub series: String,
    pub app: String,
    pub service: String,
    pub metric: String,
    pub value: f64,
    pub comparison: String,
    pub threshold: f64,
    pub periods: u32,
    pub message: String,
    /// Where the rule sends it (`webhook:URL`).
    #[serde(skip)]
    pub notify: Vec<String>,
}

#[allow(clippy::too_many_arguments)]
fn event(
    r: &AlarmRule,
    state: &'static str,
    series: &str,
    app: &str,
    service: &str,
    value: f64,
    message: String,
) -> AlarmEvent {
    AlarmEvent {
        state,
        alarm: r.name.clone(),
        series: series.to_string(),
        app: app.to_string(),
        service: service.to_string(),
        metric: r.metric.clone(),
        value,
        comparison: r.comparison.clone(),
        threshold: r.threshold,
        periods: r.periods,
        message,
        notify: r.notify.clone(),
    }
}

impl Alarms {
    pub fn evaluate(&mut self, rules: &[AlarmRule], s: &Snapshot) -> Vec<AlarmEvent> {
        let mut out = Vec::new();
        let mut live = std::collections::HashSet::new();
        for (name, app, service, f) in figures(s) {
            for r in rules.iter().filter(|r| r.applies(&name, &app, &service)) {
                let Some(v) = r.value(&f) else { continue };
                let key = (r.name.clone(), name.clone());
                live.insert(key.clone());
                let holds = if r.comparison == "<" {
                    v < r.threshold
                } else {
                    v > r.threshold
                };
                let st = self.state.entry(key).or_default();
                if holds {
                    st.0 += 1;
                    if st.0 >= r.periods && !st.1 {
                        st.1 = true;
                        out.push(event(
                            r,
                            "raised",
                            &name,
                            &app,
                            &service,
                            v,
                            format!(
                                "alarm {} raised: {name} {} {v:.1} {} {} for {} periods",
                                r.name, r.metric, r.comparison, r.threshold, r.periods
                            ),
                        ));
                    }
                } else {
                    if st.1 {
                        out.push(event(
                            r,
                            "cleared",
                            &name,
                            &app,
                            &service,
                            v,
                            format!("alarm {} cleared: {name} {} {v:.1}", r.name, r.metric),
                        ));
                    }
                    *st = (0, false);
                }
            }
        }
        self.state.retain(|k, _| live.contains(k));
        out
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn node_and_job_events_go_to_the_notifiers_asked_for() {
        let mut n = super::EventNotify::default();
        let lost = "node h2 (10.0.0.2:7946) is lost (no answer through any member)";
        let back = "node h2 (10.0.0.2:7946) is alive again";
        let failed = "run 3 failed after 2s: task s1 failed";
        assert!(!n.wants("node", lost), "nowhere to send");
        n.to = vec!["syslog".into()];
        assert!(n.validate().is_ok());
        assert!(n.wants("node", lost) && n.wants("node", back) && n.wants("job", failed));
        assert!(!n.wants(
            "node",
            "node h2 (10.0.0.2:7946) is suspected (not answering probes)"
        ));
        assert!(!n.wants("job", "run 3 finished in 2s"));
        assert!(!n.wants("deploy", failed));
        n.on = vec!["job".into()];
        assert!(!n.wants("node", lost) && n.wants("job", failed));
        n.on = vec!["disk".into()];
        assert!(n.validate().unwrap_err().contains("\"node\""));
        n.on = vec!["node".into()];
        n.to = vec!["mailto:x".into()];
        assert!(n.validate().unwrap_err().contains("webhook:http"));
    }

    use super::*;
    use crate::metrics::cgroup::ContainerStats;
    use crate::metrics::collect::{ContainerSample, Target};

    fn snap(t: i64, cpu: f64) -> Snapshot {
        Snapshot {
            time_ns: t,
            containers: vec![ContainerSample {
                target: Target {
                    name: "shop_web-001_1".into(),
                    app: "shop".into(),
                    service: "web".into(),
                    ..Default::default()
                },
                stats: Some(ContainerStats {
                    mem_usage: 100,
                    ..Default::default()
                }),
                cpu_percent: Some(cpu),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn raises_after_n_periods_and_clears() {
        let rule = AlarmRule {
            name: "hot".into(),
            metric: "cpu_percent".into(),
            comparison: ">".into(),
            threshold: 80.0,
            periods: 2,
            app: "shop".into(),
            service: String::new(),
            notify: Vec::new(),
        };
        assert!(rule.validate().is_ok());
        let mut a = Alarms::default();
        let rules = [rule];
        assert!(a.evaluate(&rules, &snap(0, 90.0)).is_empty());
        let ev = a.evaluate(&rules, &snap(1, 95.0));
        assert_eq!(ev.len(), 1);
        assert!(
            ev[0].state == "raised"
                && ev[0]
                    .message
                    .contains("alarm hot raised: shop_web-001_1 cpu_percent 95.0 > 80")
        );
        assert_eq!((ev[0].value, ev[0].app.as_str()), (95.0, "shop"));
        assert!(a.evaluate(&rules, &snap(2, 99.0)).is_empty(), "raised once");
        let ev = a.evaluate(&rules, &snap(3, 10.0));
        assert!(ev[0].state == "cleared" && ev[0].message.contains("cleared"));
        let mut bad = rules[0].clone();
        bad.metric = "disk".into();
        assert!(bad.validate().unwrap_err().contains("cpu_percent"));
        for (n, ok) in [
            ("webhook:http://127.0.0.1:9/x", true),
            ("webhook:https://hooks.example.com/a?b=c", true),
            ("webhook:ftp://x", false),
            ("webhook:http://a b", false),
            ("email:me@example.com", false),
            ("syslog", true),
        ] {
            let mut r = rules[0].clone();
            r.notify = vec![n.to_string()];
            assert_eq!(r.validate().is_ok(), ok, "{n}");
        }
    }

    #[test]
    fn keeps_an_hour_of_minutes() {
        let mut h = History::default();
        for i in 0..200 {
            h.record(&snap(i * 30 * 1_000_000_000, i as f64));
        }
        let s = &h.of_app("shop")[0];
        assert_eq!(s.buckets.len(), 60);
        // Minute 99 averages samples 198 and 199.
        assert_eq!(s.buckets.back().unwrap().cpu_percent, 198.5);
        assert_eq!(h.of_app("").len(), 1, "the host series");
    }
}

#[cfg(test)]
mod disk_tests {
    #[test]
    fn partitions_are_not_counted_twice() {
        let d = |name: &str, r: u64| super::super::host::DiskIo {
            name: name.into(),
            read_bytes: r,
            ..Default::default()
        };
        let disks = [
            d("sda", 100),
            d("sda1", 60),
            d("sda2", 40),
            d("nvme0n1", 7),
            d("nvme0n1p1", 7),
        ];
        let whole: Vec<&str> = super::whole_disks(&disks)
            .map(|d| d.name.as_str())
            .collect();
        assert_eq!(whole, ["sda", "nvme0n1"]);
    }
}
