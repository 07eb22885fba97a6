//! Read-side operations on metrics and logs for the API: top, history, alarms, outbox
//! figures, Prometheus text, log queries.

use super::{CoreError, Ops};
use crate::metrics::history::AlarmRule;
use crate::store::{LogLine, LogQuery};
use crate::wire::{Top, TopRow};

/// Largest number of lines one logs query returns.
pub const MAX_LOG_LINES: usize = 100_000;
/// Lines in one answer to `after=ID` (a follow polling another member), well under the peer
/// channel's answer bound.
pub const AFTER_PAGE: usize = 2_000;
/// And at most about this many bytes of messages (the answer bound is 8 MiB, and JSON may
/// escape a message to several times its length).
pub const AFTER_PAGE_BYTES: usize = 1 << 20;

impl Ops {
    pub fn top(&self, app: Option<&str>) -> Top {
        let Some(s) = self.core.metrics.latest() else {
            return Top {
                interval_ms: self.core.settings().metrics.interval_ms,
                ..Default::default()
            };
        };
        let host_total = s.sample.mem("MemTotal");
        let containers = s
            .containers
            .iter()
            .filter(|c| app.is_none_or(|a| c.target.app == a))
            .map(|c| {
                let st = c.stats.as_ref();
                TopRow {
                    node: String::new(),
                    name: c.target.name.clone(),
                    app: c.target.app.clone(),
                    service: c.target.service.clone(),
                    version: c.target.version.clone(),
                    slot: c.target.slot,
                    status: c.target.status.clone(),
                    cpu_percent: c.cpu_percent,
                    mem_bytes: st.map(|s| s.working_set()).unwrap_or(0),
                    mem_limit: c.mem_limit(host_total),
                    mem_percent: c.mem_percent(host_total).unwrap_or(0.0),
                    net_rx: c.net.iter().map(|n| n.rx_bytes).sum(),
                    net_tx: c.net.iter().map(|n| n.tx_bytes).sum(),
                    block_read: st
                        .map(|s| s.blkio.iter().map(|d| d.read_bytes).sum())
                        .unwrap_or(0),
                    block_write: st
                        .map(|s| s.blkio.iter().map(|d| d.write_bytes).sum())
                        .unwrap_or(0),
                }
            })
            .collect();
        Top {
            time_ns: s.time_ns,
            interval_ms: self.core.settings().metrics.interval_ms,
            containers,
            missing: Vec::new(),
        }
    }

    /// `berth top` in a cluster: this host's figures and every alive member's (asked over
    /// the peer channel, all at once), each row with its node; members that are not alive or
    /// did not answer are listed in `missing` with why. Outside a cluster: [`Ops::top`].
    pub async fn cluster_top(&self, app: Option<&str>) -> Top {
        let mut top = self.top(app);
        if !self.cluster().active() {
            return top;
        }
        for r in &mut top.containers {
            r.node = self.core.node_name.clone();
        }
        let Ok(members) = self.cluster().nodes().await else {
            return top;
        };
        let url = format!(
            "/v1/top?local=1{}",
            app.map(|a| format!("&app={a}")).unwrap_or_default()
        );
        let now = crate::clock::now_ms();
        let mut asks = Vec::new();
        for m in members.into_iter().filter(|m| !m.me) {
            let protocol = self.member_protocol(&m.node_id);
            if m.state == "alive" && protocol < 2 {
                top.missing.push(format!(
                    "{}: it speaks cluster protocol {}, which cannot send its figures to other members; run `berth top` there or upgrade it",
                    m.name,
                    protocol.max(1)
                ));
                continue;
            }
            if m.state != "alive" {
                top.missing.push(format!(
                    "{}: {}, last heard {} s ago",
                    m.name,
                    m.state,
                    (now - m.seen_ms).max(0) / 1000
                ));
                continue;
            }
            let (hub, url) = (self.cluster(), url.clone());
            asks.push(async move {
                let answer = hub.forward(&m.node_id, "GET", &url, b"").await;
                (m.name, answer)
            });
        }
        for (name, answer) in futures_util::future::join_all(asks).await {
            match answer.map(|r| (r.status, serde_json::from_str::<Top>(&r.body))) {
                Ok((200, Ok(theirs))) => {
                    top.containers
                        .extend(theirs.containers.into_iter().map(|r| TopRow {
                            node: name.clone(),
                            ..r
                        }))
                }
                Ok((status, _)) => top
                    .missing
                    .push(format!("{name}: answered {status} to the figures request")),
                Err(e) => top.missing.push(format!("{name}: {e}")),
            }
        }
        top.containers
            .sort_by(|a, b| (&a.node, &a.name).cmp(&(&b.node, &b.name)));
        top
    }

    pub fn metrics_history(
        &self,
        app: Option<&str>,
    ) -> Result<Vec<crate::wire::Series>, CoreError> {
        if let Some(a) = app {
            self.core
                .store
                .get_app(a)?
                .ok_or_else(|| CoreError::NotFound(format!("no app named {a:?}")))?;
        }
        Ok(self
            .core
            .metrics
            .history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .of_app(app.unwrap_or("")))
    }

    /// Prometheus text; an empty exposition of berth's own figures before the first cycle.
    pub fn prometheus(&self) -> String {
        let own = self.core.metrics.own(&self.core.store);
        let snap = self.core.metrics.latest().unwrap_or_default();
        let mut text = crate::metrics::prom::encode(&snap, &own);
        text.push_str(&crate::metrics::prom::encode_router(
            &self.core.router.figures(),
        ));
        if let Some(view) = self.cluster().counters() {
            text.push_str(&view.prometheus());
        }
        text
    }

    /// `GET /metrics/APP/SERVICE`: the series of one service labelled
    /// `monitoring.addon.prometheus` on this host (its containers' and its custom metrics),
    /// so a Prometheus scrapes one app without the host's series.
    pub fn prometheus_service(&self, app: &str, service: &str) -> Result<String, CoreError> {
        let spec = match self.core.store.get_app(app)? {
            Some(a) => Some(a.spec),
            None => self
                .cluster()
                .remote(crate::cluster::state::Kind::Spec)
                .into_iter()
                .filter_map(|r| {
                    serde_json::from_value::<crate::store::StoredApp>(r.body["app"].clone()).ok()
                })
                .find(|a| a.spec.name == app)
                .map(|a| a.spec),
        };
        let spec = spec.ok_or_else(|| CoreError::NotFound(format!("no app named {app:?}")))?;
        let svc = spec
            .services
            .get(service)
            .ok_or_else(|| CoreError::NotFound(format!("{app} has no service {service:?}")))?;
        if svc
            .ext
            .monitoring
            .as_ref()
            .and_then(|m| m.prometheus.as_ref())
            .is_none()
        {
            return Err(CoreError::NotFound(format!(
                "{app}/{service} has no `monitoring.addon.prometheus` label: add it to the service to serve its metrics here (the host's are at /metrics)"
            )));
        }
        Ok(self.core.service_exposition(app, service))
    }

    pub fn alarms(&self) -> Vec<AlarmRule> {
        super::telemetry::alarm_rules(&self.core)
    }

    pub fn add_alarm(&self, rule: AlarmRule) -> Result<AlarmRule, CoreError> {
        rule.validate().map_err(CoreError::BadRequest)?;
        if rule.notify.iter().any(|n| n == "syslog") && self.settings().logs.syslog.is_empty() {
            return Err(CoreError::BadRequest(format!(
                "alarm {}: --notify syslog sends to the [[logs.syslog]] servers of berth.toml, and there are none: add one (address = \"udp://HOST:514\") or use --notify webhook:URL",
                rule.name
            )));
        }
        if self
            .settings()
            .metrics
            .alarms
            .iter()
            .any(|a| a.name == rule.name)
        {
            return Err(CoreError::Conflict(format!(
                "alarm {} is defined in berth.toml: change it there, or choose another name",
                rule.name
            )));
        }
        let json = serde_json::to_string(&rule)
            .map_err(|e| CoreError::BadRequest(format!("alarm rule: {e}")))?;
        self.core.store.put_alarm(&rule.name, &json)?;
        self.core.event(
            crate::model::EventKind::AlarmRule,
            &rule.app,
            &rule.service,
            &format!("alarm rule {} added", rule.name),
        );
        Ok(rule)
    }

    pub fn remove_alarm(&self, name: &str) -> Result<(), CoreError> {
        if !self.core.store.remove_alarm(name)? {
            return Err(CoreError::NotFound(format!(
                "no alarm rule named {name:?} was added with `berth alarm add` (rules in berth.toml are changed there)"
            )));
        }
        self.core.event(
            crate::model::EventKind::AlarmRule,
            "",
            "",
            &format!("alarm rule {name} removed"),
        );
        Ok(())
    }

    pub fn outbox(&self) -> Result<Vec<crate::store::OutboxStats>, CoreError> {
        Ok(self.core.store.outbox_stats()?)
    }

    /// Log lines for a `berth logs` request.
    pub fn logs(&self, p: &crate::wire::LogsParams) -> Result<Vec<LogLine>, CoreError> {
        let mut lines = self.query_logs(&self.log_query(p)?)?;
        if p.after.is_some() {
            // A page another member polls for must fit the peer channel's answer whatever
            // the lines' lengths (up to 1 MiB each): cut at a byte budget, never below one
            // line, and the poller continues after the last line it got.
            let mut bytes = 0usize;
            let keep = lines
                .iter()
                .position(|l| {
                    bytes += l.message.len() + 256;
                    bytes > AFTER_PAGE_BYTES
                })
                .unwrap_or(lines.len())
                .max(1);
            lines.truncate(page_end(&lines, keep));
        } else if p.local {
            // An answer to another member: the newest lines that fit the peer channel.
            let mut bytes = 0usize;
            let from = lines
                .iter()
                .rposition(|l| {
                    bytes += l.message.len() + 256;
                    bytes > AFTER_PAGE_BYTES
                })
                .map_or(0, |i| i + 1)
                .min(lines.len().saturating_sub(1));
            lines.drain(..from);
        }
        Ok(lines)
    }

    /// Is `app` known here: owned by this host, or by a member whose records are here?
    pub fn app_known(&self, app: &str) -> Result<(), CoreError> {
        if self.remote_owner(app).is_some() {
            return Ok(());
        }
        self.app_must_exist(app)
    }

    /// Asks every alive member that speaks the placement protocol for `url` (a `local=1`
    /// read of its own state) at once over the peer channel; returns the answers' bodies. A
    /// member that fails to answer is left out (logged): its state stays with it.
    pub async fn ask_members(&self, url: &str) -> Vec<String> {
        let Ok(members) = self.cluster().nodes().await else {
            return Vec::new();
        };
        let mut asks = Vec::new();
        for m in members.into_iter().filter(|m| !m.me && m.state == "alive") {
            if self.member_protocol(&m.node_id) < crate::cluster::PLACEMENT_PROTOCOL {
                continue;
            }
            let hub = self.cluster();
            asks.push(async move {
                let answer = hub.forward(&m.node_id, "GET", url, b"").await;
                (m.node_id, answer)
            });
        }
        let mut out = Vec::new();
        for (node, answer) in futures_util::future::join_all(asks).await {
            match answer {
                Ok(r) if r.status == 200 => out.push(r.body),
                Ok(r) => tracing::debug!(%node, url, status = r.status, "a member's answer failed"),
                Err(e) => tracing::debug!(%node, url, error = %e, "a member's answer failed"),
            }
        }
        out
    }

    /// `berth logs` (without `-f`): this host's lines of the app, and in a cluster every
    /// alive member's (asked at once over the peer channel with `local=1`), merged by time;
    /// `tail` applies to the merge. A member that does not answer is skipped (its lines
    /// are in its own store, and a later call gets them).
    pub async fn cluster_logs(
        &self,
        p: &crate::wire::LogsParams,
    ) -> Result<Vec<crate::wire::LogLine>, CoreError> {
        let mut lines: Vec<crate::wire::LogLine> = crate::wire::list(self.logs(p)?);
        if p.local || p.after.is_some() || !self.cluster().active() {
            return Ok(lines);
        }
        let url = format!("/v1/logs?{}&local=1", p.filters());
        for body in self.ask_members(&url).await {
            lines.extend(
                serde_json::from_str::<Vec<crate::wire::LogLine>>(&body).unwrap_or_default(),
            );
        }
        lines.sort_by(|a, b| (a.time_ns, &a.node, a.id).cmp(&(b.time_ns, &b.node, b.id)));
        if let Some(t) = p.tail {
            let from = lines.len().saturating_sub(t);
            lines.drain(..from);
        }
        Ok(lines)
    }

    pub fn query_logs(&self, q: &LogQuery) -> Result<Vec<LogLine>, CoreError> {
        Ok(self.core.store.query_logs(q)?)
    }

    /// Lines stored after `after_id` for a resolved query (`logs -f`); NotFound once the app
    /// is gone when `check_app` is set.
    pub fn logs_after(
        &self,
        q: &LogQuery,
        after_id: i64,
        check_app: bool,
    ) -> Result<Vec<LogLine>, CoreError> {
        if check_app {
            self.app_must_exist(&q.app)?;
        }
        self.query_logs(&LogQuery {
            tail: None,
            after_id: Some(after_id),
            ..q.clone()
        })
    }

    fn app_must_exist(&self, app: &str) -> Result<(), CoreError> {
        // The router's access log is every host's own stream.
        if app == crate::logs::ROUTER_APP {
            return Ok(());
        }
        self.core
            .store
            .get_app(app)?
            .map(|_| ())
            .ok_or_else(|| CoreError::NotFound(format!("no app named {app:?}")))
    }

    /// Validates a logs request into a store query; times as the user wrote them (`10m`,
    /// RFC 3339, Unix seconds) are resolved against now.
    pub fn log_query(&self, p: &crate::wire::LogsParams) -> Result<LogQuery, CoreError> {
        if !p.local {
            self.app_must_exist(&p.app)?;
        }
        let now = crate::timefmt::now_ns();
        let time = |what: &str, v: &Option<String>| -> Result<Option<i64>, CoreError> {
            v.as_deref()
                .map(|t| {
                    crate::timefmt::parse_since(t, now).ok_or_else(|| {
                        CoreError::BadRequest(format!(
                            "--{what} {t:?}: write a duration back from now (10m, 2h, 1d), an RFC 3339 time or Unix seconds"
                        ))
                    })
                })
                .transpose()
        };
        if p.stream
            .as_ref()
            .is_some_and(|s| s.is_empty() || s.len() > 64)
        {
            return Err(CoreError::BadRequest(
                "--stream: stdout, stderr or a log file name".into(),
            ));
        }
        Ok(LogQuery {
            app: p.app.clone(),
            service: p.service.clone(),
            slot: p.slot,
            run: p.run,
            since_ns: time("since", &p.since)?,
            until_ns: time("until", &p.until)?,
            grep: p.grep.clone(),
            stream: p.stream.clone(),
            tail: if p.after.is_some() { None } else { p.tail },
            after_id: p.after,
            limit: if p.after.is_some() {
                AFTER_PAGE
            } else {
                MAX_LOG_LINES
            },
        })
    }

    /// The id of the newest stored line (where a follow with nothing to show yet starts).
    pub fn last_log_id(&self) -> Result<i64, CoreError> {
        Ok(self.core.store.last_log_id()?)
    }
}

/// Where a page cut at `keep` lines ends so that it holds the lines of a packed row (one id)
/// all or none (the poller continues after the last id it got): back to the row's start, or
/// on to its end when the row is all the page holds.
fn page_end(lines: &[LogLine], keep: usize) -> usize {
    let Some(id) = lines.get(keep).map(|l| l.id) else {
        return lines.len();
    };
    match lines[..keep].iter().rposition(|l| l.id != id) {
        Some(i) => i + 1,
        None => lines.iter().position(|l| l.id != id).unwrap_or(lines.len()),
    }
}

impl super::Core {
    /// One service's own exposition: its containers' series on this host and its custom
    /// metrics (`GET /metrics/APP/SERVICE`, and its own port: `agent::promport`).
    pub(super) fn service_exposition(&self, app: &str, service: &str) -> String {
        let snap = self.metrics.latest().unwrap_or_default();
        let mut text = crate::metrics::prom::encode_service(&snap, app, service);
        let custom = self.metrics.custom();
        let mine: Vec<&crate::metrics::line::Point> = custom
            .iter()
            .filter(|p| {
                p.tags.iter().any(|(k, v)| k == "app" && v == app)
                    && p.tags.iter().any(|(k, v)| k == "service" && v == service)
            })
            .collect();
        text.push_str(&crate::metrics::prom::encode_points(&mine));
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_holds_a_packed_rows_lines_all_or_none() {
        let ids = |v: &[i64]| -> Vec<LogLine> {
            v.iter()
                .map(|id| LogLine {
                    id: *id,
                    ..Default::default()
                })
                .collect()
        };
        let l = ids(&[1, 2, 2, 2, 3]);
        assert_eq!(page_end(&l, 5), 5, "no cut");
        assert_eq!(page_end(&l, 4), 4, "a cut between rows stays");
        assert_eq!(page_end(&l, 2), 1, "inside row 2: back to its start");
        assert_eq!(
            page_end(&ids(&[2, 2, 2, 3]), 1),
            3,
            "the row alone: on to its end"
        );
        assert_eq!(page_end(&ids(&[2, 2]), 1), 2);
    }
}
