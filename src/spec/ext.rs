//! berth extension labels (`berth.*`, alias `aliyun.*`): parsed and validated here, acted on
//! by the subsystems that own them. An unknown `berth.` label is kept and reported.

use super::values::{parse_bool, port_number};
use super::{SpecError, invalid};
use crate::model::*;
use std::collections::BTreeMap;

pub const MAX_REPLICAS: u32 = 100;
const ALIAS_PREFIX: &str = "aliyun.";

/// Rewrites `aliyun.x` keys to `berth.x` (an exact alias); other keys are unchanged.
pub fn normalise_label_keys(labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    labels
        .iter()
        .map(|(k, v)| match k.strip_prefix(ALIAS_PREFIX) {
            Some(rest) => (format!("berth.{rest}"), v.clone()),
            None => (k.clone(), v.clone()),
        })
        .collect()
}

/// App-level labels (top-level `labels:`) that apply to every service: the job labels.
#[derive(Debug, Default)]
pub struct AppLabels {
    pub(crate) job: JobParts,
}

impl AppLabels {
    pub fn parse(
        labels: &BTreeMap<String, String>,
        warnings: &mut Vec<String>,
    ) -> Result<Self, SpecError> {
        let mut a = AppLabels::default();
        for (k, v) in labels {
            let Some(key) = k.strip_prefix("berth.") else {
                continue;
            };
            let loc = format!("app label `{k}`");
            if !a.job.label(key, v, &loc)? {
                warnings.push(format!(
                    "app label `{k}` is not known to berth: kept, but it has no effect"
                ));
            }
        }
        Ok(a)
    }
}

fn parse_project_type(v: &str, loc: &str) -> Result<bool, SpecError> {
    match v {
        "batch" => Ok(true),
        "service" | "" => Ok(false),
        _ => Err(invalid(loc, format!("{v:?}: use batch (a job) or service"))),
    }
}

fn parse_u32(v: &str, loc: &str, min: u32, max: u32) -> Result<u32, SpecError> {
    v.trim()
        .parse::<u32>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| {
            invalid(
                loc,
                format!("{v:?} is not a whole number between {min} and {max}"),
            )
        })
}

fn parse_flag(v: &str, loc: &str) -> Result<bool, SpecError> {
    parse_bool(v).ok_or_else(|| invalid(loc, format!("{v:?}: use \"true\" or \"false\"")))
}

fn parse_remove(v: &str, loc: &str) -> Result<String, SpecError> {
    match v {
        "remove-finished" | "remove-failed" | "remove-all" | "remove-none" => Ok(v.to_string()),
        _ => Err(invalid(
            loc,
            format!("{v:?}: use remove-finished, remove-failed, remove-all or remove-none"),
        )),
    }
}

/// `scheme://host:port/path` with host `container` (the instance's own address).
fn parse_container_url(
    v: &str,
    loc: &str,
    schemes: &[&str],
) -> Result<(String, u16, String), SpecError> {
    let bad = |why: &str| {
        invalid(
            loc,
            format!(
                "{v:?} {why}; write it like http://container:8080/ping or tcp://container:3306"
            ),
        )
    };
    let (scheme, rest) = v.split_once("://").ok_or_else(|| bad("has no scheme"))?;
    if !schemes.contains(&scheme) {
        return Err(bad(&format!(
            "uses scheme {scheme:?}; use {}",
            schemes.join(" or ")
        )));
    }
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, port_number(p).ok_or_else(|| bad("has an invalid port"))?),
        None if scheme == "http" => (hostport, 80),
        None if scheme == "https" => (hostport, 443),
        None => return Err(bad("needs a port")),
    };
    if host != "container" {
        return Err(bad(
            "must use the host name `container` (the instance's own address)",
        ));
    }
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("has spaces in its path"));
    }
    Ok((scheme.to_string(), port, path))
}

fn valid_domain_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'*')
        })
}

pub(crate) fn parse_routes(v: &str, loc: &str) -> Result<Vec<Route>, SpecError> {
    let mut out = Vec::new();
    for entry in v.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        use crate::model::Scheme;
        let (scheme, rest) = match entry.split_once("://") {
            Some(("http", r)) => (Scheme::Http, r),
            Some(("https", r)) => (Scheme::Https, r),
            Some((s, _)) => {
                return Err(invalid(
                    loc,
                    format!("route {entry:?} uses scheme {s:?}: use http:// or https://"),
                ));
            }
            None => (Scheme::Http, entry),
        };
        let (domain, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/').to_string()),
            None => (rest, String::new()),
        };
        let domain = domain.to_ascii_lowercase();
        // A wildcard is a whole first label over a domain with a dot: `*.example.com`.
        let wild_ok = match domain.strip_prefix("*.") {
            Some(rest) => !rest.contains('*') && rest.contains('.'),
            None => !domain.contains('*'),
        };
        if !wild_ok {
            return Err(invalid(
                loc,
                format!(
                    "route {entry:?}: a wildcard is the whole first label of a domain, like *.example.com"
                ),
            ));
        }
        if !valid_domain_part(&domain) {
            return Err(invalid(
                loc,
                format!("route {entry:?}: {domain:?} is not a domain name"),
            ));
        }
        out.push(Route {
            scheme,
            prefix: !domain.contains('.'),
            domain,
            path,
            port: 0,
            weight: 0,
        });
    }
    if out.is_empty() {
        return Err(invalid(loc, "no route given: write domain[/path];domain2"));
    }
    Ok(out)
}

/// A 6-field cron expression, seconds first (`0 */5 * * * *`); returned normalised
/// (`spec::cron` parses it, the scheduler reads it the same way).
pub fn parse_cron(v: &str, loc: &str) -> Result<String, SpecError> {
    super::cron::Schedule::parse(v).map_err(|e| invalid(loc, e))?;
    Ok(v.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Adds (or removes) the `reschedule:on-node-failure` placement entry.
fn set_reschedule(s: &mut ServiceSpec, on: bool) {
    const ENTRY: &str = "reschedule:on-node-failure";
    s.placement.retain(|p| p != ENTRY);
    if on {
        s.placement.push(ENTRY.to_string());
    }
}

/// Swarm classic's `com.docker.swarm.reschedule-policies` container label: a JSON list
/// (`["on-node-failure"]`), or the bare policy. The label stays on the container, as there.
pub fn swarm_reschedule_label(
    svc_name: &str,
    labels: &BTreeMap<String, String>,
    s: &mut ServiceSpec,
) -> Result<(), SpecError> {
    const KEY: &str = "com.docker.swarm.reschedule-policies";
    let Some(v) = labels.get(KEY) else {
        return Ok(());
    };
    let loc = format!("service {svc_name:?}, label `{KEY}`");
    let list: Vec<String> = if v.trim_start().starts_with('[') {
        serde_json::from_str(v).map_err(|e| {
            invalid(
                &loc,
                format!("{v:?} is not a JSON list of policies ({e}): write [\"on-node-failure\"]"),
            )
        })?
    } else {
        vec![v.trim().to_string()]
    };
    let mut on = false;
    for p in &list {
        match p.as_str() {
            "on-node-failure" => on = true,
            "off" | "" => {}
            other => {
                return Err(invalid(
                    &loc,
                    format!("policy {other:?} is unknown: the only one is \"on-node-failure\""),
                ));
            }
        }
    }
    if on {
        set_reschedule(s, true);
    }
    Ok(())
}

/// A Swarm-classic placement entry: `constraint:`, `affinity:`, `availability:`, `reschedule:`.
pub fn parse_placement(e: &str, loc: &str) -> Result<String, SpecError> {
    let bad = |why: &str| invalid(loc, format!("placement entry {e:?} {why}"));
    let (kind, rest) = e.split_once(':').ok_or_else(|| bad("has no kind"))?;
    match kind {
        "reschedule" => {
            if rest != "on-node-failure" {
                return Err(bad(
                    "is unknown: the only rescheduling policy is reschedule:on-node-failure",
                ));
            }
        }
        "availability" => {
            let n = rest
                .strip_prefix("az==")
                .or_else(|| rest.strip_prefix("az=~"))
                .ok_or_else(|| bad("must be availability:az==N or availability:az=~N"))?;
            parse_u32(n, loc, 1, 64)?;
        }
        "constraint" | "affinity" => {
            // `==`, `!=`, and for constraints the seed's single `=` (`constraint:group=1`).
            let (op_at, op_len) = match (rest.find("=="), rest.find("!="), rest.find('=')) {
                (Some(i), _, _) => (i, 2),
                (None, Some(i), _) => (i, 2),
                (None, None, Some(i)) if kind == "constraint" => (i, 1),
                _ => return Err(bad("needs == or !=")),
            };
            let key = &rest[..op_at];
            let value = rest[op_at + op_len..].trim_start_matches('~');
            if key.is_empty() || value.is_empty() {
                return Err(bad("needs a key and a value, like constraint:node==host1"));
            }
            // Swarm classic: affinity to a service, image or container, or to a label of the
            // containers already there (`affinity:role!=zookeeper`).
            if kind == "affinity"
                && !key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
            {
                return Err(bad(
                    "must be about service, image, container or a container label (letters, digits, `.`, `_`, `-`, `/`)",
                ));
            }
            if value.starts_with('(') && !value.ends_with(')') {
                return Err(bad("has an unclosed list: write ==(a b c)"));
            }
        }
        _ => {
            return Err(bad(
                "has an unknown kind: use constraint, affinity, availability or reschedule",
            ));
        }
    }
    Ok(e.to_string())
}

/// An `affinity:` placement entry: to a service, image or container name, or to a label of
/// the containers on a host; `soft` for `==~`/`!=~` (a preference).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Affinity {
    pub key: String,
    pub equal: bool,
    pub soft: bool,
    /// A Swarm-classic pattern: `*` matches any run of characters.
    pub value: String,
}

impl Affinity {
    /// The rule in a placement entry, None for other kinds.
    pub fn of(entry: &str) -> Option<Affinity> {
        let rest = entry.strip_prefix("affinity:")?;
        let (op_at, equal) = match (rest.find("=="), rest.find("!=")) {
            (Some(a), Some(b)) if b < a => (b, false),
            (Some(a), _) => (a, true),
            (None, Some(b)) => (b, false),
            (None, None) => return None,
        };
        let value = &rest[op_at + 2..];
        Some(Affinity {
            key: rest[..op_at].to_string(),
            equal,
            soft: value.starts_with('~'),
            value: value.trim_start_matches('~').to_string(),
        })
    }

    /// Whether a host holding these containers satisfies the rule (each container: its
    /// service, image, name and labels).
    pub fn met<'a>(&self, here: impl IntoIterator<Item = HostContainer<'a>>) -> bool {
        let any = here.into_iter().any(|c| {
            let v = match self.key.as_str() {
                "service" => Some(c.service),
                "image" => Some(c.image),
                "container" => Some(c.name),
                label => c.labels.get(label).map(String::as_str),
            };
            v.is_some_and(|v| glob(&self.value, v))
        });
        any == self.equal
    }
}

/// What an affinity rule looks at in a container on a host.
#[derive(Debug, Clone, Copy)]
pub struct HostContainer<'a> {
    pub service: &'a str,
    pub image: &'a str,
    pub name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
}

/// `*` matches any run of characters, everything else itself.
fn glob(pattern: &str, s: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == s,
        Some((head, tail)) => {
            s.starts_with(head)
                && (0..=s.len() - head.len())
                    .any(|i| s.is_char_boundary(head.len() + i) && glob(tail, &s[head.len() + i..]))
        }
    }
}

/// A Swarm-mode constraint (`node.labels.az==1`, `node.hostname==x`) as a placement entry.
pub fn parse_swarm_constraint(c: &str, loc: &str) -> Result<String, SpecError> {
    let c = c.replace(' ', "");
    let op_at = c
        .find("==")
        .or_else(|| c.find("!="))
        .ok_or_else(|| invalid(loc, format!("constraint {c:?} needs == or !=")))?;
    let (key, rest) = c.split_at(op_at);
    let key = if let Some(l) = key.strip_prefix("node.labels.") {
        l
    } else if matches!(key, "node.hostname" | "node.id") {
        "node"
    } else if let Some(l) = key.strip_prefix("engine.labels.") {
        l
    } else if key == "node.role" || key == "node.platform.os" || key == "node.platform.arch" {
        return Ok(format!(
            "constraint:{}{rest}",
            key.trim_start_matches("node.")
        ));
    } else {
        return Err(invalid(
            loc,
            format!("constraint {c:?}: use node.hostname, node.labels.NAME or node.role"),
        ));
    };
    parse_placement(&format!("constraint:{key}{rest}"), loc)
}

/// Applies a service's `berth.*` labels (normalised) on top of the app-level ones.
pub fn apply_service_labels(
    svc_name: &str,
    labels: &BTreeMap<String, String>,
    app: &AppLabels,
    s: &mut ServiceSpec,
    warnings: &mut Vec<String>,
) -> Result<(), SpecError> {
    s.ext.log_timestamp = true;
    let mut g = LabelParts {
        job: app.job.clone(),
        probe: ProbeParts {
            kind: None,
            timeout: 2,
            delay: 0,
        },
        rolling: false,
        parallelism: 1,
        asc: BTreeMap::new(),
        mon: Monitoring::default(),
    };
    let mut proxy = super::proxy::ProxyParts::default();
    for (k, v) in labels {
        let key = k.strip_prefix("berth.").unwrap_or(k);
        let loc = format!("service {svc_name:?}, label `{k}`");
        let x = &mut s.ext;
        match key {
            "node" | "app" | "service" | "version" | "slot" | "spec" => {
                return Err(invalid(
                    &loc,
                    "is set by berth itself on every container: remove it",
                ));
            }
            "scale" => s.replicas = parse_u32(v, &loc, 0, MAX_REPLICAS)?,
            "global" => s.global = parse_flag(v, &loc)?,
            // The seed's spelling of `reschedule:on-node-failure`.
            "reschedule" => {
                let on = match v.trim() {
                    "on-node-failure" => true,
                    "off" | "" => false,
                    other => parse_bool(other).ok_or_else(|| {
                        invalid(
                            &loc,
                            format!("{v:?}: use \"on-node-failure\" (or \"true\") or \"off\""),
                        )
                    })?,
                };
                set_reschedule(s, on);
            }
            k2 if k2.starts_with("probe.") && g.probe.label(k2, v, &loc)? => {}
            "rolling_updates" => g.rolling = parse_flag(v, &loc)?,
            // As the seed platform did: an invalid parallelism means 1.
            "rolling_updates.parallelism" => {
                g.parallelism = v
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=MAX_REPLICAS).contains(n))
                    .unwrap_or(1)
            }
            "depends" => {
                for d in v.split(',').map(str::trim).filter(|d| !d.is_empty()) {
                    if !s.depends_on.iter().any(|x| x == d) {
                        s.depends_on.push(d.to_string());
                    }
                }
            }
            "routing.session_sticky" => x.session_sticky = parse_flag(v, &loc)?,
            "log.timestamp" => x.log_timestamp = parse_flag(v, &loc)?,
            "logs" => parse_log_paths(v, &loc, &mut x.logs)?,
            "gpu" => x.gpu = parse_u32(v, &loc, 0, 16)?,
            k2 if g.job.label(k2, v, &loc)? => {}
            k2 if k2.starts_with("monitoring.") && monitoring_label(k2, v, &loc, &mut g.mon)? => {}
            k2 if port_or_store_label(k2, v, &loc, x)? => {
                // The seed's `tcp://SLB_NAME:PORT`: there is no cloud load balancer here.
                if let Some(slb) = k2
                    .strip_prefix("lb.port_")
                    .and(v.split_once("://"))
                    .and_then(|(_, r)| r.rsplit_once(':'))
                    .map(|(name, _)| name)
                    .filter(|n| !n.is_empty())
                {
                    warnings.push(format!(
                        "service {svc_name:?}: label `{k}` names load balancer {slb:?}: berth has no cloud load balancer, so its router listens on the port itself (the name stays in the template, unused)"
                    ));
                }
            }
            k2 if k2.starts_with("auto_scaling.")
                && matches!(
                    &k2["auto_scaling.".len()..],
                    "min_instances"
                        | "max_instances"
                        | "max_cpu"
                        | "min_cpu"
                        | "max_memory"
                        | "min_memory"
                        | "step"
                        | "idle_seconds"
                        | "period_seconds"
                        | "periods"
                        | "cooldown_seconds"
                        | "cold_start_timeout"
                ) =>
            {
                g.asc
                    .insert(&k2["auto_scaling.".len()..], (k.as_str(), v.clone()));
            }
            k2 if k2.starts_with("proxy.") => {
                proxy.label(svc_name, &k2["proxy.".len()..], k, v, s, warnings)?
            }
            _ => {
                warnings.push(format!("service {svc_name:?}: label `{k}` is not known to berth: kept, but it has no effect"));
                x.unknown.insert(k.clone(), v.clone());
            }
        }
    }
    proxy.finish(svc_name, s, warnings)?;
    publish_routed_ports(s);
    g.finish(svc_name, &mut s.ext, warnings)
}

/// What a service's labels say, gathered before the rules that join them run.
struct LabelParts<'a> {
    job: JobParts,
    probe: ProbeParts,
    rolling: bool,
    parallelism: u32,
    asc: BTreeMap<&'a str, (&'a str, String)>,
    mon: Monitoring,
}

impl LabelParts<'_> {
    fn finish(
        self,
        svc_name: &str,
        x: &mut Extensions,
        warnings: &mut Vec<String>,
    ) -> Result<(), SpecError> {
        if let Some(kind) = self.probe.kind {
            x.probe = Some(Probe {
                kind,
                timeout_seconds: self.probe.timeout,
                initial_delay_seconds: self.probe.delay,
            });
        }
        if self.rolling {
            x.rolling_updates = Some(RollingUpdates {
                parallelism: self.parallelism,
            });
        }
        if !self.asc.is_empty() {
            x.auto_scaling = Some(parse_auto_scaling(svc_name, &self.asc)?);
        }
        if self.mon != Monitoring::default() {
            x.monitoring = Some(self.mon);
        }
        let j = self.job;
        if j.batch || j.schedule.is_some() {
            x.job = Some(JobSpec {
                retry_count: j.retry.unwrap_or(3),
                remove_containers: j.remove.unwrap_or_else(|| DEFAULT_REMOVE_CONTAINERS.into()),
                schedule: j.schedule,
                timezone: j.timezone,
                starting_deadline_seconds: j.deadline,
                history: j.history,
            });
        } else if j.retry.is_some()
            || j.remove.is_some()
            || j.timezone.is_some()
            || j.deadline.is_some()
            || j.history.is_some()
        {
            warnings.push(format!(
                "service {svc_name:?}: retry_count, remove_containers and schedule.* apply to jobs only (project_type: batch, or a schedule)"
            ));
        }
        Ok(())
    }
}

/// `probe.*` labels.
struct ProbeParts {
    kind: Option<ProbeKind>,
    timeout: u32,
    delay: u32,
}

impl ProbeParts {
    /// Reads a `probe.*` label; false when the key is not one of them.
    fn label(&mut self, key: &str, v: &str, loc: &str) -> Result<bool, SpecError> {
        match key {
            "probe.url" => {
                let (scheme, port, path) = parse_container_url(v, loc, &["http", "tcp"])?;
                self.kind = Some(if scheme == "tcp" {
                    ProbeKind::Tcp { port }
                } else {
                    ProbeKind::Http { port, path }
                });
            }
            "probe.cmd" => {
                if v.trim().is_empty() {
                    return Err(invalid(
                        loc,
                        "is empty: give the command to run inside the container",
                    ));
                }
                self.kind = Some(ProbeKind::Cmd {
                    command: v.to_string(),
                });
            }
            "probe.timeout_seconds" => self.timeout = parse_u32(v, loc, 1, 300)?,
            "probe.initial_delay_seconds" => self.delay = parse_u32(v, loc, 0, 3600)?,
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// The job labels (`project_type`, `schedule` and its `schedule.*`, `retry_count`,
/// `remove_containers`), the app's as defaults.
#[derive(Debug, Default, Clone)]
pub(crate) struct JobParts {
    batch: bool,
    schedule: Option<String>,
    timezone: Option<String>,
    deadline: Option<u32>,
    history: Option<u32>,
    retry: Option<u32>,
    remove: Option<String>,
}

impl JobParts {
    /// Reads a job label; false when the key is not one of them.
    fn label(&mut self, key: &str, v: &str, loc: &str) -> Result<bool, SpecError> {
        match key {
            "project_type" => self.batch = parse_project_type(v, loc)?,
            "schedule" => self.schedule = Some(parse_cron(v, loc)?),
            "schedule.timezone" => self.timezone = Some(parse_timezone(v, loc)?),
            "schedule.starting_deadline_seconds" => {
                self.deadline = Some(parse_u32(v, loc, 0, 86_400)?)
            }
            "schedule.history" => self.history = Some(parse_u32(v, loc, 1, 100)?),
            "retry_count" => self.retry = Some(parse_u32(v, loc, 0, 100)?),
            "remove_containers" => self.remove = Some(parse_remove(v, loc)?),
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// An IANA time zone name the bundled database knows (`Asia/Shanghai`, `UTC`).
fn parse_timezone(v: &str, loc: &str) -> Result<String, SpecError> {
    let v = v.trim();
    jiff::tz::TimeZone::get(v).map_err(|_| {
        invalid(
            loc,
            format!("{v:?} is not a time zone: use an IANA name such as Asia/Shanghai or UTC"),
        )
    })?;
    Ok(v.to_string())
}

/// `logs`: paths inside the container, comma-separated; the first is the source `logs`,
/// the next `logs_2`, ...
fn parse_log_paths(
    v: &str,
    loc: &str,
    into: &mut BTreeMap<String, String>,
) -> Result<(), SpecError> {
    for (i, p) in v
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .enumerate()
    {
        check_log_path(p, loc)?;
        let name = if i == 0 {
            "logs".to_string()
        } else {
            format!("logs_{}", i + 1)
        };
        into.insert(name, p.to_string());
    }
    Ok(())
}

/// `monitoring.*` labels into `mon`; false for a key that is not one of them.
fn monitoring_label(
    key: &str,
    v: &str,
    loc: &str,
    mon: &mut Monitoring,
) -> Result<bool, SpecError> {
    match key {
        "monitoring.addon.influxdb" => {
            if !(v.starts_with("http://") || v.starts_with("https://")) {
                return Err(invalid(
                    loc,
                    format!("{v:?} is not an http(s):// URL of an InfluxDB"),
                ));
            }
            mon.influxdb = Some(v.to_string());
        }
        "monitoring.addon.prometheus" => mon.prometheus = Some(v.to_string()),
        "monitoring.script" => mon.script = Some(v.to_string()),
        "monitoring.http" => {
            parse_container_url(v, loc, &["http"])?;
            mon.http = Some(v.to_string());
        }
        "monitoring.tags" => {
            mon.tags = v
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(String::from)
                .collect()
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// `routing.port_N`, `lb.port_N` and `log_store_NAME` labels into `x`; false for a key that is
/// not one of them.
fn port_or_store_label(
    k2: &str,
    v: &str,
    loc: &str,
    x: &mut Extensions,
) -> Result<bool, SpecError> {
    match k2 {
        k2 if k2.starts_with("routing.port_") => {
            let port = port_number(&k2["routing.port_".len()..]).ok_or_else(|| {
                invalid(loc, "the label must name a container port: routing.port_80")
            })?;
            x.routing.insert(port, parse_routes(v, loc)?);
        }
        k2 if k2.starts_with("lb.port_") => {
            let port = port_number(&k2["lb.port_".len()..])
                .ok_or_else(|| invalid(loc, "the label must name a container port: lb.port_80"))?;
            let (scheme, rest) = v.split_once("://").unwrap_or(("", v));
            let scheme = match scheme {
                "tcp" => crate::model::LbScheme::Tcp,
                "http" => crate::model::LbScheme::Http,
                "https" => crate::model::LbScheme::Https,
                "udp" => crate::model::LbScheme::Udp,
                _ => {
                    return Err(invalid(
                        loc,
                        format!(
                            "{v:?}: write SCHEME://:ROUTER_PORT, the scheme one of tcp, http, https, udp (tcp://:3306)"
                        ),
                    ));
                }
            };
            let rp = rest
                .rsplit_once(':')
                .and_then(|(_, p)| port_number(p))
                .ok_or_else(|| {
                    invalid(
                        loc,
                        format!("{v:?}: write {}://:ROUTER_PORT", scheme.as_str()),
                    )
                })?;
            let udp = scheme == crate::model::LbScheme::Udp;
            if let Some((other, _)) = x.lb.iter().find(|(c, r)| {
                **r == rp && **c != port && (x.lb_scheme(**c) == crate::model::LbScheme::Udp) == udp
            }) {
                return Err(invalid(
                    loc,
                    format!(
                        "router port {rp} is already lb.port_{other}'s: give each container port its own router port"
                    ),
                ));
            }
            x.lb.insert(port, rp);
            if scheme == crate::model::LbScheme::Tcp {
                x.lb_schemes.remove(&port);
            } else {
                x.lb_schemes.insert(port, scheme);
            }
        }
        k2 if k2.starts_with("log_store_") => {
            let name = &k2["log_store_".len()..];
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(invalid(
                    loc,
                    "the log store name uses letters, digits, `_` and `-`",
                ));
            }
            check_log_path(v, loc)?;
            x.logs.insert(name.to_string(), v.to_string());
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// The router reaches instances at their published host ports: publish every routed
/// container port that the template does not publish itself (on a free host port).
fn publish_routed_ports(s: &mut ServiceSpec) {
    let x = &s.ext;
    let routed: Vec<(u16, Protocol)> = x
        .routing
        .keys()
        .map(|p| (*p, Protocol::Tcp))
        .chain(x.lb.keys().map(|p| (*p, x.lb_scheme(*p).protocol())))
        .chain(x.default_backend.map(|p| (p, Protocol::Tcp)))
        .collect();
    for (port, protocol) in routed {
        if !s
            .ports
            .iter()
            .any(|p| p.container_port == port && p.protocol == protocol)
        {
            s.ports.push(PortSpec {
                container_port: port,
                host_port: None,
                host_ip: None,
                protocol,
            });
        }
    }
}

fn check_log_path(p: &str, loc: &str) -> Result<(), SpecError> {
    if p == "stdout" || p.starts_with('/') {
        Ok(())
    } else {
        Err(invalid(
            loc,
            format!("{p:?}: give an absolute path inside the container, or stdout"),
        ))
    }
}

fn parse_auto_scaling(
    svc: &str,
    m: &BTreeMap<&str, (&str, String)>,
) -> Result<AutoScaling, SpecError> {
    let loc = |f: &str| {
        format!(
            "service {svc:?}, label `{}`",
            m.get(f).map(|x| x.0).unwrap_or(f)
        )
    };
    let get_u32 = |f: &str, lo, hi, d| -> Result<u32, SpecError> {
        match m.get(f) {
            Some((_, v)) => parse_u32(v, &loc(f), lo, hi),
            None => Ok(d),
        }
    };
    // The seed's ranges: a scale-out threshold 50..100, a scale-in one 0..50.
    let get_pct = |f: &str, lo: f64, hi: f64, what: &str| -> Result<Option<f64>, SpecError> {
        m.get(f)
            .map(|(_, v)| {
                v.trim()
                    .trim_end_matches('%')
                    .parse::<f64>()
                    .ok()
                    .filter(|n| (lo..=hi).contains(n))
                    .ok_or_else(|| {
                        invalid(
                            loc(f),
                            format!("{v:?}: a {what} threshold is a percentage from {lo} to {hi}"),
                        )
                    })
            })
            .transpose()
    };
    let max_cpu = get_pct("max_cpu", 50.0, 100.0, "scale-out")?;
    let max_memory = get_pct("max_memory", 50.0, 100.0, "scale-out")?;
    let a = AutoScaling {
        min_instances: get_u32("min_instances", 0, 50, 1)?,
        max_instances: get_u32("max_instances", 1, 50, 10)?,
        // Without any scale-out threshold, CPU at 60% (Tencent's default).
        max_cpu: max_cpu.or(max_memory.is_none().then_some(60.0)),
        min_cpu: get_pct("min_cpu", 0.0, 50.0, "scale-in")?,
        max_memory,
        min_memory: get_pct("min_memory", 0.0, 50.0, "scale-in")?,
        step: get_u32("step", 1, 5, 1)?,
        idle_seconds: match m.get("idle_seconds") {
            Some((_, v)) => v
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| (10..=7 * 86_400).contains(n))
                .ok_or_else(|| {
                    invalid(
                        loc("idle_seconds"),
                        format!("{v:?}: give the seconds without a request before scaling to zero, from 10 to 604800"),
                    )
                })?,
            None => 3600,
        },
        period_seconds: get_u32("period_seconds", 5, 3600, 60)?,
        periods: get_u32("periods", 1, 10, 3)?,
        cooldown_seconds: get_u32("cooldown_seconds", 0, 3600, 15)?,
        cold_start_timeout: get_u32("cold_start_timeout", 1, 300, 30)?,
    };
    if a.min_instances > a.max_instances {
        return Err(invalid(
            loc("min_instances"),
            format!(
                "min_instances {} is above max_instances {}",
                a.min_instances, a.max_instances
            ),
        ));
    }
    if m.contains_key("idle_seconds") && a.min_instances > 0 {
        return Err(invalid(
            loc("idle_seconds"),
            format!(
                "idle_seconds scales the service to zero, which needs min_instances 0 (it is {})",
                a.min_instances
            ),
        ));
    }
    for (lo, hi, low_label, what) in [
        (a.min_cpu, a.max_cpu, "min_cpu", "cpu"),
        (a.min_memory, a.max_memory, "min_memory", "memory"),
    ] {
        if let (Some(lo), Some(hi)) = (lo, hi)
            && hi - lo < 30.0
        {
            return Err(invalid(
                loc(low_label),
                format!(
                    "the {what} thresholds must be at least 30 points apart (scale in below {lo}, out above {hi}), so a decision does not undo the last one"
                ),
            ));
        }
        if lo.is_some() && hi.is_none() {
            return Err(invalid(
                loc(low_label),
                format!(
                    "{low_label} needs max_{what} too: a service scales in on what it scales out on"
                ),
            ));
        }
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_affinity_is_accepted_and_judged_on_a_host() {
        // As in public Alibaba templates.
        for e in [
            "affinity:role!=zookeeper",
            "affinity:aliyun.lb.port_6379!=tcp_6379",
            "affinity:service==db",
            "affinity:image==~redis*",
        ] {
            assert_eq!(parse_placement(e, "t").as_deref(), Ok(e));
        }
        assert!(parse_placement("affinity:ro le!=x", "t").is_err());
        // The seed's single `=` is a constraint's equality; an affinity needs `==`/`!=`.
        assert_eq!(
            parse_placement("constraint:group=1", "t").as_deref(),
            Ok("constraint:group=1")
        );
        assert!(parse_placement("affinity:service=db", "t").is_err());
        assert!(parse_placement("constraint:=1", "t").is_err());
        let zk = BTreeMap::from([("role".to_string(), "zookeeper".to_string())]);
        let none = BTreeMap::new();
        let host = [
            HostContainer {
                service: "zk",
                image: "zookeeper:3.9",
                name: "",
                labels: &zk,
            },
            HostContainer {
                service: "db",
                image: "redis:7",
                name: "",
                labels: &none,
            },
        ];
        let rule = |e: &str| Affinity::of(e).expect("an affinity");
        assert!(!rule("affinity:role!=zookeeper").met(host));
        assert!(rule("affinity:role!=kafka").met(host));
        assert!(rule("affinity:role==zoo*").met(host));
        assert!(rule("affinity:service==db").met(host));
        assert!(!rule("affinity:service!=db").met(host));
        let soft = rule("affinity:image==~redis*");
        assert!(soft.soft && soft.met(host));
        assert!(!rule("affinity:image==mysql*").met(host));
        assert!(
            rule("affinity:role!=zookeeper").met([]),
            "an empty host meets a !="
        );
        assert_eq!(Affinity::of("constraint:node==a"), None);
    }
}
