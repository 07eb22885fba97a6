//! What a dashboard asks for: the series and labels its PromQL uses, the measurements,
//! fields and tags its InfluxQL uses (panel queries and template variables alike). Pure;
//! `dashboards.rs` checks the answers against a real Prometheus and InfluxDB.

use std::collections::{BTreeMap, BTreeSet};

/// metric (or measurement) -> the labels (or tags) queries name on it.
pub type Labels = BTreeMap<String, BTreeSet<String>>;

/// Every string under one of `keys` anywhere in a dashboard's JSON.
pub fn strings_under(v: &serde_json::Value, keys: &[&str], out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            // Template variables that are not queries: a data source, an interval, a list.
            let kind = m.get("type").and_then(|t| t.as_str()).unwrap_or("");
            if m.contains_key("query")
                && matches!(
                    kind,
                    "datasource" | "interval" | "custom" | "constant" | "textbox" | "adhoc"
                )
            {
                return;
            }
            for (k, x) in m {
                if keys.contains(&k.as_str())
                    && let Some(s) = x.as_str()
                {
                    out.push(s.to_string());
                }
                strings_under(x, keys, out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| strings_under(x, keys, out)),
        _ => {}
    }
}

/// Grafana's queries and template variables of a Prometheus dashboard.
pub fn prometheus_refs(dashboard: &serde_json::Value) -> Labels {
    let mut exprs = Vec::new();
    strings_under(dashboard, &["expr", "query", "definition"], &mut exprs);
    let mut out = Labels::new();
    for e in exprs {
        let e = e.trim();
        // Template variables: label_values(expr, label), query_result(expr), label_values(label).
        if let Some(inner) = e
            .strip_prefix("label_values(")
            .and_then(|r| r.strip_suffix(')'))
        {
            // Without a comma it is a label across all series: nothing metric-specific.
            if let Some((expr, label)) = inner.rsplit_once(',') {
                let mut refs = promql_refs(expr);
                for labels in refs.values_mut() {
                    labels.insert(label.trim().to_string());
                }
                merge(&mut out, refs);
            }
        } else if let Some(inner) = e
            .strip_prefix("query_result(")
            .and_then(|r| r.strip_suffix(')'))
        {
            merge(&mut out, promql_refs(inner));
        } else if !e.starts_with("metrics(") && !e.starts_with("label_names(") {
            merge(&mut out, promql_refs(e));
        }
    }
    out
}

fn merge(into: &mut Labels, from: Labels) {
    for (k, v) in from {
        into.entry(k).or_default().extend(v);
    }
}

const PROMQL_WORDS: [&str; 13] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
];

/// Metric names of one PromQL expression, each with the labels its matchers name and the
/// labels the expression aggregates `by`.
pub fn promql_refs(expr: &str) -> Labels {
    let s = strip_promql(expr);
    let b = s.as_bytes();
    // (position, metric, labels of its matchers); (span, labels) of each `by`/`without`.
    let mut metrics: Vec<(usize, String, BTreeSet<String>)> = Vec::new();
    let mut groups: Vec<(std::ops::Range<usize>, Vec<String>)> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.' || b[i] == b'_') {
                i += 1;
            }
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' || c == b':' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
                i += 1;
            }
            let word = &s[start..i];
            let mut j = i;
            while j < b.len() && b[j].is_ascii_whitespace() {
                j += 1;
            }
            let next = b.get(j).copied();
            let lower = word.to_ascii_lowercase();
            if PROMQL_WORDS.contains(&lower.as_str()) {
                if next == Some(b'(') {
                    let (list, end) = paren(&s, j);
                    if lower == "by" || lower == "without" {
                        // `sum(x) by (l)` groups what is before; `sum by (l) (x)` what follows.
                        let before = s[..start].trim_end();
                        let span = if before.ends_with(')') {
                            matching_open(&s, before.len() - 1)..before.len()
                        } else {
                            let k = end + (s[end..].len() - s[end..].trim_start().len());
                            k..matching_close(&s, k)
                        };
                        groups.push((span, list));
                    }
                    i = end;
                }
                continue;
            }
            let next_word = s[j..]
                .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .next()
                .unwrap_or("");
            if next == Some(b'(') || matches!(next_word, "by" | "without") {
                continue; // a function or an aggregation
            }
            let mut labels = BTreeSet::new();
            if next == Some(b'{') {
                let end = s[j..].find('}').map(|k| j + k + 1).unwrap_or(s.len());
                for m in s[j + 1..end.saturating_sub(1)].split(',') {
                    let name: String = m
                        .trim()
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        labels.insert(name);
                    }
                }
                i = end;
            }
            metrics.push((start, word.to_string(), labels));
            continue;
        }
        i += 1;
    }
    let mut out = Labels::new();
    for (at, name, mut labels) in metrics {
        for (span, list) in &groups {
            if span.contains(&at) {
                labels.extend(list.iter().cloned());
            }
        }
        out.entry(name).or_default().extend(labels);
    }
    out
}

/// The index of the `(` that the `)` at `close` closes.
fn matching_open(s: &str, close: usize) -> usize {
    let mut depth = 0;
    for (k, c) in s[..=close].char_indices().rev() {
        match c {
            ')' => depth += 1,
            '(' => {
                depth -= 1;
                if depth == 0 {
                    return k;
                }
            }
            _ => {}
        }
    }
    0
}

/// The index after the `)` that closes the `(` at `open` (the end when there is none).
fn matching_close(s: &str, open: usize) -> usize {
    let mut depth = 0;
    for (k, c) in s[open..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return open + k + 1;
                }
            }
            _ => {}
        }
    }
    s.len()
}

/// The names in a parenthesised list starting at `open`, and the index after it.
fn paren(s: &str, open: usize) -> (Vec<String>, usize) {
    let end = s[open..].find(')').map(|k| open + k + 1).unwrap_or(s.len());
    let names = s[open + 1..end.saturating_sub(1)]
        .split(',')
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .collect();
    (names, end)
}

/// The expression without string literals (label values), range selectors and Grafana
/// variables.
fn strip_promql(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut chars = expr.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' | '`' => {
                let mut escaped = false;
                for d in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if d == '\\' {
                        escaped = true;
                    } else if d == c {
                        break;
                    }
                }
                out.push_str("\"\"");
            }
            '[' => {
                for d in chars.by_ref() {
                    if d == ']' {
                        break;
                    }
                }
            }
            '$' => {
                if chars.peek() == Some(&'{') {
                    for d in chars.by_ref() {
                        if d == '}' {
                            break;
                        }
                    }
                } else {
                    while chars
                        .peek()
                        .is_some_and(|d| d.is_ascii_alphanumeric() || *d == '_')
                    {
                        chars.next();
                    }
                }
                out.push('1');
            }
            _ => out.push(c),
        }
    }
    out
}

/// Measurements of the InfluxQL queries of a dashboard (Chronograf's `query` and template
/// `influxql`, Grafana's raw `query`), each with the fields and the tags they name.
#[derive(Debug, Default, PartialEq)]
pub struct InfluxRefs {
    pub fields: Labels,
    pub tags: Labels,
}

pub fn influx_refs(dashboard: &serde_json::Value) -> InfluxRefs {
    let mut qs = Vec::new();
    strings_under(dashboard, &["query", "influxql"], &mut qs);
    let mut out = InfluxRefs::default();
    for q in qs {
        influxql_refs(&q, &mut out);
    }
    out
}

/// One InfluxQL statement's references, added to `out`.
pub fn influxql_refs(q: &str, out: &mut InfluxRefs) {
    let upper = q.to_ascii_uppercase();
    let Some(from) = upper.find(" FROM ") else {
        return;
    };
    let after = &q[from + 6..];
    let target = after.split_whitespace().next().unwrap_or("");
    let measurement = split_dotted(target).pop().unwrap_or_default();
    if measurement.is_empty() {
        return;
    }
    let tags = out.tags.entry(measurement.clone()).or_default();
    if upper.trim_start().starts_with("SHOW TAG VALUES") {
        if let Some(k) = upper.find("WITH KEY") {
            let key = q[k + 8..]
                .trim_start()
                .trim_start_matches('=')
                .split_whitespace()
                .next()
                .unwrap_or("");
            tags.insert(key.trim_matches('"').to_string());
        }
    } else if upper.trim_start().starts_with("SELECT") {
        let select = &q[upper.find("SELECT").unwrap_or(0) + 6..from];
        let fields = out.fields.entry(measurement.clone()).or_default();
        let mut rest = select;
        while let Some(open) = rest.find('"') {
            let Some(len) = rest[open + 1..].find('"') else {
                break;
            };
            let name = &rest[open + 1..open + 1 + len];
            let before = rest[..open].trim_end().to_ascii_uppercase();
            if !before.ends_with(" AS") && !before.ends_with(")AS") {
                fields.insert(name.to_string());
            }
            rest = &rest[open + len + 2..];
        }
    }
    // WHERE "tag" = / =~ / != ...; GROUP BY tag, ...
    let tail = &q[from + 6..];
    let tail_upper = tail.to_ascii_uppercase();
    if let Some(w) = tail_upper.find(" WHERE ") {
        let end = tail_upper.find(" GROUP BY ").unwrap_or(tail.len());
        let mut rest = &tail[w + 7..end.max(w + 7)];
        while let Some(open) = rest.find('"') {
            let Some(len) = rest[open + 1..].find('"') else {
                break;
            };
            let name = &rest[open + 1..open + 1 + len];
            let after = rest[open + len + 2..].trim_start();
            if name != "time" && (after.starts_with('=') || after.starts_with('!')) {
                tags.insert(name.to_string());
            }
            rest = &rest[open + len + 2..];
        }
    }
    if let Some(g) = tail_upper.find(" GROUP BY ") {
        let group = &tail[g + 10..];
        let group = &group[..group
            .to_ascii_uppercase()
            .find(" FILL")
            .unwrap_or(group.len())];
        let mut depth = 0;
        let mut item = String::new();
        for c in group.chars().chain(std::iter::once(',')) {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    let name = item.trim().trim_matches('"').to_string();
                    if !name.is_empty() && !name.contains('(') && name != "*" {
                        tags.insert(name);
                    }
                    item.clear();
                    continue;
                }
                _ => {}
            }
            item.push(c);
        }
    }
}

/// `"telegraf"."autogen"."cpu"` / `"telegraf".."cpu"` / `cpu` -> its parts, unquoted.
fn split_dotted(s: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => quoted = !quoted,
            '.' if !quoted => parts.push(String::new()),
            _ => parts.last_mut().expect("one part").push(c),
        }
    }
    parts
}

#[test]
fn promql_references_are_metric_names_with_their_labels() {
    let r = promql_refs(
        r#"sum by (name) (rate(container_cpu_usage_seconds_total{image!="",job=~"$job"}[$__rate_interval])) / ignoring(cpu) group_left machine_cpu_cores * 100 offset 5m"#,
    );
    assert_eq!(
        r.keys().collect::<Vec<_>>(),
        ["container_cpu_usage_seconds_total", "machine_cpu_cores"]
    );
    assert_eq!(
        r["container_cpu_usage_seconds_total"],
        ["image", "job", "name"].map(String::from).into()
    );
    let r = promql_refs(
        r#"node_memory_MemTotal_bytes{instance="$node",job="$job"} - node_memory_MemFree_bytes{instance="$node"} > 1e9 and on() vector(1)"#,
    );
    assert_eq!(r.len(), 2);
    assert!(r["node_memory_MemFree_bytes"].contains("instance"));
    // A grouping applies to the aggregation it belongs to, not to the whole expression.
    let r = promql_refs(
        r#"node_load1{job="$job"} / count(count(node_cpu_seconds_total{job="$job"}) by (cpu))"#,
    );
    assert_eq!(r["node_load1"], ["job"].map(String::from).into());
    assert_eq!(
        r["node_cpu_seconds_total"],
        ["cpu", "job"].map(String::from).into()
    );
    let d = serde_json::json!({"templating": {"list": [
        {"query": {"query": "label_values(node_uname_info{job=\"$job\"}, nodename)", "refId": "A"},
         "definition": "label_values(node_uname_info{job=\"$job\"}, nodename)"},
        {"query": "label_values(job)"}
    ]}});
    let r = prometheus_refs(&d);
    assert_eq!(
        r["node_uname_info"],
        ["job", "nodename"].map(String::from).into()
    );
}

#[test]
fn influxql_references_are_measurements_fields_and_tags() {
    let mut r = InfluxRefs::default();
    influxql_refs(
        r#"SELECT non_negative_derivative(last("io_serviced_recursive_read"),1s) AS "Read IOPs", last("x") / 2 FROM "telegraf".."docker_container_blkio" WHERE time > :dashboardTime: AND "engine_host"=':host:' AND "container_name"=~/:c:/ GROUP BY time(:interval:),device FILL(null)"#,
        &mut r,
    );
    influxql_refs(
        r#"SHOW TAG VALUES ON "telegraf" FROM "docker" WITH KEY="engine_host""#,
        &mut r,
    );
    influxql_refs(
        r#"SELECT last("n_users") FROM "telegraf"."autogen"."system" WHERE "host"=':host:'"#,
        &mut r,
    );
    assert_eq!(
        r.fields["docker_container_blkio"],
        ["io_serviced_recursive_read", "x"].map(String::from).into()
    );
    assert_eq!(
        r.tags["docker_container_blkio"],
        ["container_name", "device", "engine_host"]
            .map(String::from)
            .into()
    );
    assert_eq!(r.tags["docker"], ["engine_host"].map(String::from).into());
    assert_eq!(r.fields["system"], ["n_users"].map(String::from).into());
}
