//! Custom app metrics: `monitoring.script` (run inside the container; stdout is line
//! protocol) and `monitoring.http` (a JSON object, line protocol or Prometheus text), each
//! with the berth tags added. Bad lines are counted and reported as events, never forwarded.

use super::Core;
use crate::metrics::custom::parse_output;
use crate::metrics::line::Point;
use crate::model::Instance;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// Largest output read from a script or URL.
const MAX_OUTPUT: usize = 1 << 20;

/// Adds the berth tags of the instance (they win over the source's own).
fn tag(points: &mut [Point], i: &Instance, node: &str) {
    let slot = i.slot.to_string();
    let berth = [
        ("container_name", i.name.as_str()),
        ("app", &i.app),
        ("service", &i.service),
        ("version", &i.version),
        ("slot", &slot),
        ("node", node),
    ];
    for p in points {
        p.tags.retain(|(k, _)| !berth.iter().any(|(b, _)| b == k));
        p.tags
            .extend(berth.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    }
}

/// Runs every running instance's custom sources (as its own version says). Bad output is
/// reported as an event when it first appears or changes (`reported` remembers, per
/// container), not every cycle.
pub async fn collect(
    core: &Core,
    apps: &[std::sync::Arc<crate::store::StoredApp>],
    instances: &[Instance],
    now_ns: i64,
    http: &ureq::Agent,
    reported: &mut HashMap<String, String>,
) -> Vec<Point> {
    let mut sources: Vec<(&Instance, crate::model::Monitoring)> = Vec::new();
    core.each_running_spec(apps, instances, |i, spec| {
        if let Some(m) = spec
            .ext
            .monitoring
            .as_ref()
            .filter(|m| m.script.is_some() || m.http.is_some())
        {
            sources.push((i, m.clone()));
        }
    });
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for (i, mon) in sources {
        seen.insert(i.id.clone());
        let mut points = Vec::new();
        let mut bad = Vec::new();
        if let Some(script) = &mon.script {
            match core
                .runtime
                .exec(
                    &i.id,
                    vec!["sh".into(), "-c".into(), script.clone()],
                    Duration::from_secs(10),
                    MAX_OUTPUT,
                )
                .await
            {
                Ok((0, text)) => {
                    let (p, b) = parse_output(&text, "", &[], now_ns);
                    // A script prints line protocol only: JSON/Prometheus parsing is for HTTP.
                    points.extend(p.into_iter().filter(|p| !p.measurement.is_empty()));
                    bad.extend(b);
                }
                Ok((code, text)) => bad.push(format!(
                    "`{script}` exited with {code}: {}",
                    text.trim().chars().take(200).collect::<String>()
                )),
                Err(e) => bad.push(format!("`{script}`: {e}")),
            }
        }
        if let Some(url) = &mon.http {
            let host = if i.ip.is_empty() {
                "127.0.0.1"
            } else {
                i.ip.as_str()
            };
            let url = url.replacen("://container", &format!("://{host}"), 1);
            let agent = http.clone();
            match tokio::task::spawn_blocking(move || fetch(&agent, &url)).await {
                Ok(Ok(text)) => {
                    let (p, b) =
                        parse_output(&text, &format!("httpjson_{}", i.name), &mon.tags, now_ns);
                    points.extend(p);
                    bad.extend(b);
                }
                Ok(Err(e)) => bad.push(e),
                Err(_) => bad.push("the HTTP scrape panicked".into()),
            }
        }
        let summary = match bad.first() {
            Some(first) => format!(
                "{} bad custom metric line(s), not forwarded; first: {first}",
                bad.len()
            ),
            None => String::new(),
        };
        if reported.get(&i.id).map(String::as_str).unwrap_or("") != summary {
            if !summary.is_empty() {
                core.event(
                    crate::model::EventKind::Metrics,
                    &i.app,
                    &i.service,
                    &format!("{}: {summary}", i.name),
                );
            }
            reported.insert(i.id.clone(), summary);
        }
        tag(&mut points, i, &core.node_name);
        out.extend(points);
    }
    reported.retain(|id, _| seen.contains(id));
    out
}

/// The client for `monitoring.http` scrapes (made once; it keeps connections).
///
/// The scrape runs as root in the host's network namespace and the container answers it, so
/// it never follows a redirect (a `302 -> http://127.0.0.1:7878/...` would reach host-only
/// services) and ignores proxy variables: it talks to the instance's own address only.
pub fn http_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into()
}

fn fetch(agent: &ureq::Agent, url: &str) -> Result<String, String> {
    let mut r = agent
        .get(url)
        .call()
        .map_err(|e| format!("GET {url}: {e}"))?;
    if r.status().is_redirection() {
        return Err(format!(
            "GET {url} answered {} (a redirect): berth scrapes the instance's own address only and never follows one; serve the metrics at that URL",
            r.status()
        ));
    }
    if !r.status().is_success() {
        return Err(format!("GET {url} answered {}", r.status()));
    }
    r.body_mut()
        .with_config()
        .limit(MAX_OUTPUT as u64)
        .read_to_string()
        .map_err(|e| format!("GET {url}: {e}"))
}
