//! Custom app metrics: `monitoring.script` (run inside the container; stdout is line
//! protocol) and `monitoring.http` (a JSON object, line protocol or Prometheus text), each
//! with the berth tags added. Bad lines are counted and reported as events, never forwarded.

use super::Core;
use crate::metrics::line::{Point, Value, parse_line};
use crate::model::Instance;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// Largest output read from a script or URL.
const MAX_OUTPUT: usize = 1 << 20;

/// Parses what a custom source printed: line protocol, else (for HTTP) a JSON object or
/// Prometheus text. Returns the points and the bad lines.
pub fn parse_output(
    text: &str,
    measurement: &str,
    tag_keys: &[String],
    now_ns: i64,
) -> (Vec<Point>, Vec<String>) {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        return match serde_json::from_str::<serde_json::Value>(trimmed) {
            Ok(serde_json::Value::Object(map)) => {
                let mut p = Point::new(measurement, now_ns);
                flatten(&mut p, "", &serde_json::Value::Object(map), tag_keys);
                if p.fields.is_empty() {
                    (
                        Vec::new(),
                        vec!["the JSON object has no numeric or boolean value".into()],
                    )
                } else {
                    (vec![p], Vec::new())
                }
            }
            Ok(_) | Err(_) => (Vec::new(), vec!["not a JSON object".into()]),
        };
    }
    let mut points = Vec::new();
    let mut bad = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.starts_with('#') {
            continue;
        }
        match parse_line(line, now_ns) {
            Ok(p) => points.push(p),
            Err(e) => match parse_prometheus(line, now_ns) {
                Some(p) => points.push(p),
                None => bad.push(format!(
                    "{}: {e}",
                    line.chars().take(120).collect::<String>()
                )),
            },
        }
    }
    (points, bad)
}

/// Telegraf's httpjson: nested keys joined with `_`; strings named in `tags` become tags.
fn flatten(p: &mut Point, prefix: &str, v: &serde_json::Value, tag_keys: &[String]) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}_{k}")
                };
                flatten(p, &key, v, tag_keys);
            }
        }
        serde_json::Value::Number(n) => {
            if let Some(f) = n.as_f64() {
                p.fields.push((prefix.to_string(), Value::Float(f)));
            }
        }
        serde_json::Value::Bool(b) => p.fields.push((prefix.to_string(), Value::Bool(*b))),
        serde_json::Value::String(s) if tag_keys.iter().any(|t| t == prefix) => {
            p.tags.push((prefix.to_string(), s.clone()));
        }
        _ => {}
    }
}

/// One Prometheus sample (`name{a="b"} 1.5 [ts_ms]`) as Telegraf's prometheus input (v2)
/// writes it: measurement `prometheus`, the metric name as the field.
fn parse_prometheus(line: &str, now_ns: i64) -> Option<Point> {
    let (head, rest) = match line.find('{') {
        Some(_) => {
            let close = line.rfind('}')?;
            (&line[..close + 1], &line[close + 1..])
        }
        None => line.split_at(line.find(' ')?),
    };
    let name = head.split('{').next()?.trim();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        return None;
    }
    let mut parts = rest.split_whitespace();
    let value: f64 = parts.next()?.parse().ok()?;
    let time_ns = match parts.next() {
        Some(ms) => ms.parse::<i64>().ok()?.checked_mul(1_000_000)?,
        None => now_ns,
    };
    let mut p = Point::new("prometheus", time_ns);
    if let Some(i) = head.find('{') {
        for pair in split_labels(&head[i + 1..head.len() - 1]) {
            let (k, v) = pair.split_once('=')?;
            let v = v.trim().strip_prefix('"')?.strip_suffix('"')?;
            p.tags.push((
                k.trim().to_string(),
                v.replace("\\\"", "\"").replace("\\\\", "\\"),
            ));
        }
    }
    p.fields.push((name.to_string(), Value::Float(value)));
    Some(p)
}

/// Splits `a="x,y",b="z"` at the commas outside quotes.
fn split_labels(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut esc) = (0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if esc => esc = false,
            '\\' => esc = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

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
    apps: &[crate::store::StoredApp],
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
                    "metrics",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_json_line_protocol_and_prometheus() {
        let (p, bad) = parse_output(
            r#"{"requests": 5, "up": true, "region": "eu", "db": {"conns": 3}, "note": "x"}"#,
            "httpjson_web_1",
            &["region".into()],
            7,
        );
        assert!(bad.is_empty());
        assert_eq!(p[0].measurement, "httpjson_web_1");
        assert_eq!(p[0].tag_value("region"), Some("eu"));
        assert_eq!(p[0].field_value("db_conns"), Some(&Value::Float(3.0)));
        assert_eq!(p[0].field_value("up"), Some(&Value::Bool(true)));
        assert!(p[0].field_value("note").is_none());
        let (p, bad) = parse_output(
            "queue,q=a depth=3i\nnot line protocol at all\n# comment\nhttp_requests_total{code=\"200\",path=\"/a,b\"} 1027 1700000000000\n",
            "",
            &[],
            7,
        );
        assert_eq!(p.len(), 2);
        assert_eq!(bad.len(), 1);
        assert_eq!(p[1].measurement, "prometheus");
        assert_eq!(p[1].tag_value("path"), Some("/a,b"));
        assert_eq!(p[1].time_ns, 1_700_000_000_000_000_000);
        let (_, bad) = parse_output("[1,2]", "m", &[], 0);
        assert_eq!(bad.len(), 1);
    }
}
