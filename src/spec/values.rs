//! Small parsers for compose values: scalars, lists, maps, durations, sizes, ports.

use super::{SpecError, invalid};
use crate::model::{PortSpec, Protocol};
use std::collections::BTreeMap;
use yaml_rust2::yaml::Hash;
use yaml_rust2::{Event, Yaml, parser::MarkedEventReceiver, parser::Parser, scanner::Marker};

/// A scalar as compose reads it: strings, numbers and booleans all become strings.
pub fn scalar(v: &Yaml, loc: &str) -> Result<String, SpecError> {
    match v {
        Yaml::String(s) | Yaml::Real(s) => Ok(s.clone()),
        Yaml::Integer(i) => Ok(i.to_string()),
        Yaml::Boolean(b) => Ok(b.to_string()),
        Yaml::Null => Ok(String::new()),
        _ => Err(invalid(
            loc,
            "expected a single value (string or number), not a list or map",
        )),
    }
}

pub fn key_str(k: &Yaml, loc: &str) -> Result<String, SpecError> {
    match k {
        Yaml::String(_) | Yaml::Integer(_) | Yaml::Real(_) | Yaml::Boolean(_) => scalar(k, loc),
        _ => Err(invalid(loc, "map keys must be plain strings")),
    }
}

pub fn as_hash<'a>(v: &'a Yaml, loc: &str) -> Result<&'a Hash, SpecError> {
    match v {
        Yaml::Hash(h) => Ok(h),
        _ => Err(invalid(loc, "expected a map (key: value)")),
    }
}

pub fn boolean(v: &Yaml, loc: &str) -> Result<bool, SpecError> {
    match v {
        Yaml::Boolean(b) => Ok(*b),
        other => {
            parse_bool(&scalar(other, loc)?).ok_or_else(|| invalid(loc, "expected true or false"))
        }
    }
}

pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// A string or a list of strings (`command: a b` or `command: [a, b]`).
pub fn string_list(v: &Yaml, loc: &str) -> Result<Vec<String>, SpecError> {
    match v {
        Yaml::Array(a) => a.iter().map(|x| scalar(x, loc)).collect(),
        Yaml::Null => Ok(Vec::new()),
        other => Ok(vec![scalar(other, loc)?]),
    }
}

/// A command: a list, or a string split like a shell would (quotes respected).
pub fn command(v: &Yaml, loc: &str) -> Result<Vec<String>, SpecError> {
    match v {
        Yaml::Array(_) => string_list(v, loc),
        other => shell_split(&scalar(other, loc)?)
            .ok_or_else(|| invalid(loc, "unbalanced quotes in command")),
    }
}

pub fn shell_split(s: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => cur.push(c),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => cur.push(chars.next()?),
                        c => cur.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                cur.push(chars.next()?);
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Some(out)
}

/// A map, or a list of `KEY=VALUE` (`KEY` alone = empty value when `allow_bare`).
pub fn string_map(
    v: &Yaml,
    loc: &str,
    allow_bare: bool,
) -> Result<BTreeMap<String, String>, SpecError> {
    let mut out = BTreeMap::new();
    match v {
        Yaml::Null => {}
        Yaml::Hash(h) => {
            for (k, val) in h {
                out.insert(key_str(k, loc)?, scalar(val, loc)?);
            }
        }
        Yaml::Array(a) => {
            for item in a {
                let s = scalar(item, loc)?;
                match s.split_once('=') {
                    Some((k, val)) => out.insert(k.to_string(), val.to_string()),
                    None if allow_bare => out.insert(s, String::new()),
                    None => return Err(invalid(loc, format!("entry {s:?} is not KEY=VALUE"))),
                };
            }
        }
        _ => return Err(invalid(loc, "expected a map or a list of KEY=VALUE")),
    }
    Ok(out)
}

pub fn check_version(v: &Yaml) -> Result<(), SpecError> {
    let s = scalar(v, "template, key `version`")?;
    let major = s.split('.').next().unwrap_or("");
    if matches!(major, "1" | "2" | "3") {
        Ok(())
    } else {
        Err(invalid(
            "template, key `version`",
            format!("compose file version {s:?} is not supported: use 2.x or 3.x"),
        ))
    }
}

/// A compose duration (`10s`, `1m30s`, `500ms`, `1h`; a bare number is seconds) in ms.
pub fn duration_ms(v: &Yaml, loc: &str) -> Result<u64, SpecError> {
    let s = scalar(v, loc)?;
    parse_duration_ms(&s).ok_or_else(|| {
        invalid(
            loc,
            format!("invalid duration {s:?}: write it like 10s, 1m30s or 500ms"),
        )
    })
}

pub fn parse_duration_ms(s: &str) -> Option<u64> {
    duration_f64_ms(s).map(|ms| ms as u64)
}

/// A compose duration in microseconds (`1400us`, `400ms`; a bare number is seconds).
pub fn parse_duration_us(s: &str) -> Option<u64> {
    duration_f64_ms(s).map(|ms| (ms * 1000.0).round() as u64)
}

fn duration_f64_ms(s: &str) -> Option<f64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(n) = s.parse::<u64>() {
        return n.checked_mul(1000).map(|ms| ms as f64);
    }
    let mut total: f64 = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        if num_end == 0 {
            return None;
        }
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "ns" => 1e-6,
            "us" | "µs" => 1e-3,
            "ms" => 1.0,
            "s" => 1000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            _ => return None,
        };
        total += n * mult;
        rest = &rest[unit_end..];
    }
    if !total.is_finite() || total > 1e15 {
        return None;
    }
    Some(total)
}

/// A byte size (`100000000`, `512m`, `1g`, `64mb`) in bytes.
pub fn size_bytes(v: &Yaml, loc: &str) -> Result<i64, SpecError> {
    let s = scalar(v, loc)?;
    parse_size(&s).ok_or_else(|| {
        invalid(
            loc,
            format!("invalid size {s:?}: write it like 512m, 1g or a number of bytes"),
        )
    })
}

pub fn parse_size(s: &str) -> Option<i64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last()? {
        'k' => (&t[..t.len() - 1], 1i64 << 10),
        'm' => (&t[..t.len() - 1], 1 << 20),
        'g' => (&t[..t.len() - 1], 1 << 30),
        't' => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num.trim().parse().ok()?;
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    let v = n * mult as f64;
    if v > i64::MAX as f64 / 2.0 {
        return None;
    }
    Some(v as i64)
}

pub fn port_number(s: &str) -> Option<u16> {
    s.parse::<u16>().ok().filter(|p| *p > 0)
}

/// Short port syntax: `80`, `8080:80`, `127.0.0.1:8080:80`, `127.0.0.1::80`, `/udp` suffix,
/// ranges `8000-8002:8000-8002`.
pub fn parse_port_short(s: &str, loc: &str) -> Result<Vec<PortSpec>, SpecError> {
    let bad = |why: &str| {
        invalid(
            loc,
            format!(
                "invalid port {s:?}: {why}; write \"80\", \"8080:80\" or \"127.0.0.1:8080:80/tcp\""
            ),
        )
    };
    let (body, proto) = match s.rsplit_once('/') {
        Some((b, "tcp")) => (b, Protocol::Tcp),
        Some((b, "udp")) => (b, Protocol::Udp),
        Some(_) => return Err(bad("the protocol must be tcp or udp")),
        None => (s, Protocol::Tcp),
    };
    let parts: Vec<&str> = body.rsplitn(3, ':').collect();
    let (ip, host, container) = match parts.as_slice() {
        [c] => (None, None, *c),
        [c, h] => (None, Some(*h), *c),
        [c, h, ip] => (
            Some(ip.trim_matches(|c| c == '[' || c == ']')),
            Some(*h),
            *c,
        ),
        _ => return Err(bad("too many `:`")),
    };
    if let Some(ip) = ip
        && ip.parse::<std::net::IpAddr>().is_err()
    {
        return Err(bad("the host address is not an IP address"));
    }
    let range = |r: &str| -> Result<(u16, u16), SpecError> {
        match r.split_once('-') {
            Some((a, b)) => {
                let a = port_number(a).ok_or_else(|| bad("ports are numbers 1-65535"))?;
                let b = port_number(b).ok_or_else(|| bad("ports are numbers 1-65535"))?;
                if b < a || b - a > 1000 {
                    return Err(bad(
                        "a port range goes from low to high, at most 1000 ports",
                    ));
                }
                Ok((a, b))
            }
            None => {
                let p = port_number(r).ok_or_else(|| bad("ports are numbers 1-65535"))?;
                Ok((p, p))
            }
        }
    };
    let (c0, c1) = range(container)?;
    let host = host.filter(|h| !h.is_empty()).map(range).transpose()?;
    if let Some((h0, h1)) = host
        && h1 - h0 != c1 - c0
    {
        return Err(bad("host and container ranges differ in length"));
    }
    Ok((0..=(c1 - c0))
        .map(|i| PortSpec {
            container_port: c0 + i,
            host_port: host.map(|(h0, _)| h0 + i),
            host_ip: ip.map(str::to_string),
            protocol: proto,
        })
        .collect())
}

pub fn valid_volume_name(s: &str) -> bool {
    s.len() <= 64 && compose_name(s)
}

/// Compose's rule for the names of volumes, secrets, configs and profiles:
/// `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn compose_name(s: &str) -> bool {
    s.as_bytes().first().is_some_and(u8::is_ascii_alphanumeric)
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The value of `key` in a map node (None when the node is not a map or has no such key).
pub fn key_of<'a>(node: &'a Yaml, key: &str) -> Option<&'a Yaml> {
    node.as_hash()?.get(&Yaml::String(key.into()))
}

/// Resolves YAML merge keys (`<<: *anchor`, `<<: [*a, *b]`): explicit keys win.
pub fn resolve_merge_keys(y: Yaml) -> Yaml {
    match y {
        Yaml::Array(a) => Yaml::Array(a.into_iter().map(resolve_merge_keys).collect()),
        Yaml::Hash(h) => {
            let merge_key = Yaml::String("<<".into());
            let mut out = Hash::new();
            let mut merged: Vec<Yaml> = Vec::new();
            for (k, v) in h {
                if k == merge_key {
                    match v {
                        Yaml::Array(items) => merged.extend(items),
                        other => merged.push(other),
                    }
                } else {
                    out.insert(k, resolve_merge_keys(v));
                }
            }
            for m in merged {
                if let Yaml::Hash(mh) = resolve_merge_keys(m) {
                    for (k, v) in mh {
                        out.entry(k).or_insert(v);
                    }
                }
            }
            Yaml::Hash(out)
        }
        other => other,
    }
}

/// How many repairs [`read_as_libyaml`] makes in all before it gives up.
const MAX_REPAIRS: usize = 32;

/// How many bytes [`read_as_libyaml`]'s repairs may add to a document in all.
const MAX_REPAIR_GROWTH: usize = 64 * 1024;

/// go-yaml and libyaml (docker compose, PyYAML) read some documents that the YAML spec, and
/// yaml-rust2 with it, refuses. Each such family is repaired where the scanner stops, by a
/// change that gives the document the meaning libyaml gives it, and every line keeps its
/// number (so later errors keep their line):
/// - a flow collection's closing `]`/`}` at (or left of) its key's indentation, or its items
///   left of the key ("invalid indentation", yaml-rust2#30, saphyr#55): inside a flow
///   collection, spaces at the start of a line mean nothing, so the line is indented;
/// - a multi-line quoted scalar whose continuation lines sit left of its key ("invalid
///   indentation in quoted scalar"): leading spaces of a continuation line are folded away,
///   so the line is indented;
/// - a tab at the start of a line inside a flow collection or a quoted scalar ("tab cannot
///   be used as indentation"): white space there means nothing, so it becomes a space;
/// - a `#` comment right after a token (`"value"# note`, `[a, b]#note`, `>#note`): libyaml
///   takes it as a comment, so a space is put before it;
/// - a plain `-` alone inside a flow collection (`[-]`, `[-, -]`): libyaml reads the string
///   `-`, so it is quoted.
///
/// At most [`MAX_REPAIRS`] repairs, each only where the scanner says the family applies;
/// scanning only (no alias expansion), so it is safe before the node budget. A document that
/// fails for any other reason is returned as far as it was repaired, and its error is
/// reported by the load.
pub fn read_as_libyaml(text: &str) -> std::borrow::Cow<'_, str> {
    struct Ignore;
    impl MarkedEventReceiver for Ignore {
        fn on_event(&mut self, _: Event, _: Marker) {}
    }
    let mut fixed: Option<String> = None;
    for _ in 0..MAX_REPAIRS {
        let t = fixed.as_deref().unwrap_or(text);
        let Err(e) = Parser::new_from_str(t).load(&mut Ignore, true) else {
            break;
        };
        // The marker's line is 1-based, its column 0-based, in characters.
        let Some(start) = line_start(t, e.marker().line()) else {
            break;
        };
        let Some(next) = repair(t, start, e.marker().col(), e.info()) else {
            break;
        };
        // Repairs add white space; a hostile document does not get to grow without bound.
        if next.len() > text.len() + MAX_REPAIR_GROWTH {
            break;
        }
        fixed = Some(next);
    }
    match fixed {
        Some(f) => std::borrow::Cow::Owned(f),
        None => std::borrow::Cow::Borrowed(text),
    }
}

/// One repair of [`read_as_libyaml`] for the scanner's error `info` at character `col` of
/// the line starting at byte `start`, or `None` when the error is not one libyaml forgives.
fn repair(t: &str, start: usize, col: usize, info: &str) -> Option<String> {
    let line = &t[start..];
    let at = line.char_indices().nth(col).map(|(i, _)| start + i);
    let lead = line.len() - line.trim_start_matches(' ').len();
    let splice = |at: usize, cut: usize, with: &str| {
        let mut s = String::with_capacity(t.len() + with.len());
        s.push_str(&t[..at]);
        s.push_str(with);
        s.push_str(&t[at + cut..]);
        s
    };
    let at_char = |c: char| at.filter(|&i| t[i..].starts_with(c));
    match info {
        "invalid indentation" | "invalid indentation in flow construct"
            if lead == col && inside(&t[..start]) == Some(Open::Flow) =>
        {
            Some(splice(start, 0, " "))
        }
        // The marker is where the quoted scalar starts.
        "invalid indentation in quoted scalar" => indent_quoted(t, at?, col),
        "tab cannot be used as indentation"
        | "tabs disallowed within this context (block indentation)" => {
            let ws = line.len() - line.trim_start_matches([' ', '\t']).len();
            let open = inside(&t[..start]);
            (line[..ws].contains('\t') && matches!(open, Some(Open::Flow | Open::Quoted)))
                .then(|| splice(start, ws, &line[..ws].replace('\t', " ")))
        }
        "comments must be separated from other tokens by whitespace" => {
            Some(splice(at_char('#')?, 0, " "))
        }
        "plain scalar cannot start with '-' followed by ,[]{}" => {
            Some(splice(at_char('-')?, 1, "\"-\""))
        }
        _ => None,
    }
}

/// Indents every continuation line of the quoted scalar that starts at byte `at` (column
/// `col`) to that column, past the indentation of the block that holds it: the spaces at
/// the start of a continuation line are folded away, so the value stays what it was.
fn indent_quoted(t: &str, at: usize, col: usize) -> Option<String> {
    let quote = t[at..].chars().next().filter(|c| matches!(c, '"' | '\''))?;
    // The closing quote: `\x` escapes in double quotes, `''` in single ones.
    let body = &t[at + 1..];
    let mut end = None;
    let mut chars = body.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' if quote == '"' => {
                chars.next();
            }
            '\'' if quote == '\'' && chars.peek().is_some_and(|&(_, n)| n == '\'') => {
                chars.next();
            }
            c if c == quote => {
                end = Some(at + 1 + i);
                break;
            }
            _ => {}
        }
    }
    let end = end?;
    let mut out = String::with_capacity(t.len() + 64);
    out.push_str(&t[..at]);
    let mut changed = false;
    for (n, piece) in t[at..end].split('\n').enumerate() {
        if n > 0 {
            out.push('\n');
            let lead = piece.len() - piece.trim_start_matches(' ').len();
            if lead < col && !piece.trim().is_empty() {
                // Bounded as it is built: a quote far right over many lines would otherwise
                // ask for lines x column bytes before the caller could refuse it.
                if out.len() + (col - lead) > t.len() + MAX_REPAIR_GROWTH {
                    return None;
                }
                out.extend(std::iter::repeat_n(' ', col - lead));
                changed = true;
            }
        }
        out.push_str(piece);
    }
    out.push_str(&t[end..]);
    changed.then_some(out)
}

#[derive(PartialEq)]
enum Open {
    Flow,
    Quoted,
}

/// What `prefix` (whole lines) ends inside of: an open flow collection (its tokens, all of
/// them, counted `[`/`{` against `]`/`}`; the end of the stream flushes what the scanner
/// holds back), or a quoted scalar that the end of the prefix cut short. `None` otherwise,
/// and when the prefix does not scan for another reason.
fn inside(prefix: &str) -> Option<Open> {
    use yaml_rust2::scanner::{Scanner, TokenType};
    let mut scanner = Scanner::new(prefix.chars());
    let mut depth: i64 = 0;
    for tok in scanner.by_ref() {
        match tok.1 {
            TokenType::FlowSequenceStart | TokenType::FlowMappingStart => depth += 1,
            TokenType::FlowSequenceEnd | TokenType::FlowMappingEnd => depth -= 1,
            _ => {}
        }
    }
    match scanner.get_error() {
        None if depth > 0 => Some(Open::Flow),
        Some(e) if e.info().contains("quoted scalar") => Some(Open::Quoted),
        _ => None,
    }
}

/// The byte offset where 1-based `line` starts (lines end at `\n`).
fn line_start(text: &str, line: usize) -> Option<usize> {
    if line == 0 {
        return None;
    }
    if line == 1 {
        return Some(0);
    }
    text.match_indices('\n').nth(line - 2).map(|(i, _)| i + 1)
}

/// Counts the nodes a document expands to (aliases included) without building it, so an
/// alias bomb is refused before yaml-rust2 clones it into memory.
pub fn check_node_budget(text: &str) -> Result<(), SpecError> {
    struct Budget {
        stack: Vec<(usize, usize)>, // (anchor id, nodes so far)
        anchors: BTreeMap<usize, usize>,
        total: usize,
        over: bool,
    }
    impl Budget {
        fn add(&mut self, n: usize, aid: usize) {
            if aid > 0 {
                self.anchors.insert(aid, n);
            }
            self.total = self.total.saturating_add(n);
            if let Some(top) = self.stack.last_mut() {
                top.1 = top.1.saturating_add(n);
            }
            if self.total > super::MAX_NODES {
                self.over = true;
            }
        }
    }
    impl MarkedEventReceiver for Budget {
        fn on_event(&mut self, ev: Event, _mark: Marker) {
            if self.over {
                return;
            }
            match ev {
                Event::SequenceStart(aid, _) | Event::MappingStart(aid, _) => {
                    self.stack.push((aid, 1))
                }
                Event::SequenceEnd | Event::MappingEnd => {
                    if let Some((aid, n)) = self.stack.pop() {
                        // Children were already added to the total; record the size for aliases.
                        if aid > 0 {
                            self.anchors.insert(aid, n);
                        }
                        if let Some(top) = self.stack.last_mut() {
                            top.1 = top.1.saturating_add(n);
                        }
                    }
                }
                Event::Scalar(_, _, aid, _) => self.add(1, aid),
                Event::Alias(id) => {
                    let n = self.anchors.get(&id).copied().unwrap_or(1);
                    self.add(n, 0);
                }
                _ => {}
            }
        }
    }
    let mut b = Budget {
        stack: Vec::new(),
        anchors: BTreeMap::new(),
        total: 0,
        over: false,
    };
    let mut parser = Parser::new_from_str(text);
    // Scan errors are reported by the real load, with position.
    let _ = parser.load(&mut b, true);
    if b.over {
        Err(SpecError::TooManyNodes)
    } else {
        Ok(())
    }
}

/// A YAML node as JSON: maps with scalar keys become objects (a key is its text), floats that
/// JSON cannot hold (`.nan`, `.inf`) become strings.
pub fn to_json(y: &Yaml) -> serde_json::Value {
    use serde_json::Value;
    match y {
        Yaml::Null | Yaml::BadValue | Yaml::Alias(_) => Value::Null,
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::Real(r) => match r.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
            Some(n) => Value::Number(n),
            None => Value::String(r.clone()),
        },
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Array(a) => Value::Array(a.iter().map(to_json).collect()),
        Yaml::Hash(h) => Value::Object(
            h.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) | Yaml::Real(s) => s.clone(),
                        Yaml::Integer(i) => i.to_string(),
                        Yaml::Boolean(b) => b.to_string(),
                        Yaml::Null => "null".into(),
                        other => to_json(other).to_string(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
    }
}
