//! Parsers of custom app metrics (pure): what a `monitoring.script` printed (line
//! protocol) and what a `monitoring.http` URL answered (a JSON object, line protocol or
//! Prometheus text). The agent runs the sources and adds berth's tags (`agent/custom.rs`).

use crate::metrics::line::{Point, Value, parse_line};

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
