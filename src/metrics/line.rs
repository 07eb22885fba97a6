//! InfluxDB line protocol: a point type, a fast encoder and a strict parser (pure).
//!
//! Escaping follows the protocol's rules: measurement `,` and space; tag keys, tag values and
//! field keys `,` `=` and space; string field values `"` and `\`. The protocol cannot carry a
//! newline in a name or tag, so `\n`/`\r` there become spaces; tags with an empty key or value
//! are left out (InfluxDB rejects them), and so are non-finite floats.

use std::fmt;

/// One field value, typed as InfluxDB types it: floats bare, integers with `i`, unsigned
/// with `u`, booleans `true`/`false`, strings quoted.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Float(f64),
    Int(i64),
    UInt(u64),
    Bool(bool),
    Str(String),
}

/// One point: measurement, tags (kept in the order given; encoders sort nothing), fields and
/// a timestamp in nanoseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub measurement: String,
    pub tags: Vec<(String, String)>,
    pub fields: Vec<(String, Value)>,
    pub time_ns: i64,
}

impl Point {
    pub fn new(measurement: impl Into<String>, time_ns: i64) -> Point {
        Point {
            measurement: measurement.into(),
            tags: Vec::new(),
            fields: Vec::new(),
            time_ns,
        }
    }

    pub fn tag(mut self, k: impl Into<String>, v: impl Into<String>) -> Point {
        self.tags.push((k.into(), v.into()));
        self
    }

    pub fn field(mut self, k: impl Into<String>, v: Value) -> Point {
        self.fields.push((k.into(), v));
        self
    }

    pub fn int(self, k: impl Into<String>, v: i64) -> Point {
        self.field(k, Value::Int(v))
    }

    pub fn float(self, k: impl Into<String>, v: f64) -> Point {
        self.field(k, Value::Float(v))
    }

    pub fn field_value(&self, key: &str) -> Option<&Value> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn tag_value(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Appends this point as one line (with its `\n`) to `out`. A point with no encodable
    /// field writes nothing and returns false.
    pub fn encode(&self, out: &mut Vec<u8>) -> bool {
        let start = out.len();
        escape(out, &self.measurement, MEASUREMENT);
        if out.len() == start {
            return false;
        }
        for (k, v) in &self.tags {
            if writable(k).is_empty() || writable(v).is_empty() {
                continue;
            }
            out.push(b',');
            escape(out, k, KEY);
            out.push(b'=');
            escape(out, v, KEY);
        }
        let mut sep = b' ';
        for (k, v) in &self.fields {
            if writable(k).is_empty() || matches!(v, Value::Float(f) if !f.is_finite()) {
                continue;
            }
            out.push(sep);
            sep = b',';
            escape(out, k, KEY);
            out.push(b'=');
            match v {
                Value::Float(f) => write_float(out, *f),
                Value::Int(i) => {
                    out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes());
                    out.push(b'i');
                }
                Value::UInt(u) => {
                    out.extend_from_slice(itoa::Buffer::new().format(*u).as_bytes());
                    out.push(b'u');
                }
                Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
                Value::Str(s) => {
                    out.push(b'"');
                    for &c in s.as_bytes() {
                        if c == b'"' || c == b'\\' {
                            out.push(b'\\');
                        }
                        out.push(c);
                    }
                    out.push(b'"');
                }
            }
        }
        if sep == b' ' {
            out.truncate(start);
            return false;
        }
        out.push(b' ');
        out.extend_from_slice(itoa::Buffer::new().format(self.time_ns).as_bytes());
        out.push(b'\n');
        true
    }

    pub fn to_line(&self) -> String {
        let mut out = Vec::with_capacity(128);
        self.encode(&mut out);
        if out.last() == Some(&b'\n') {
            out.pop();
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// Writes a finite float. Values with at most six decimals (most gauges and percentages) are
/// written from integers, which is several times faster than the shortest-representation
/// algorithm and reads back as the same float: `scaled / 1e6` is correctly rounded, so `f` is
/// the double nearest to the decimal written. Others go through ryu.
fn write_float(out: &mut Vec<u8>, f: f64) {
    if f.abs() < 1e9 {
        let scaled = (f * 1e6).round();
        if scaled / 1e6 == f {
            let n = scaled as i64;
            if n < 0 {
                out.push(b'-');
            }
            let (int, frac) = (n.unsigned_abs() / 1_000_000, n.unsigned_abs() % 1_000_000);
            out.extend_from_slice(itoa::Buffer::new().format(int).as_bytes());
            if frac != 0 {
                let mut digits = [b'0'; 6];
                let mut v = frac;
                for d in digits.iter_mut().rev() {
                    *d = b'0' + (v % 10) as u8;
                    v /= 10;
                }
                let len = 6 - digits.iter().rev().take_while(|d| **d == b'0').count();
                out.push(b'.');
                out.extend_from_slice(&digits[..len]);
            }
            return;
        }
    }
    out.extend_from_slice(ryu::Buffer::new().format_finite(f).as_bytes());
}

/// Encodes points into outbox rows (line count, body) of at most `max_lines` lines each.
pub fn encode_batches<'a>(
    points: impl IntoIterator<Item = &'a Point>,
    max_lines: i64,
) -> Vec<(i64, Vec<u8>)> {
    let mut rows = Vec::new();
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut n = 0;
    for p in points {
        n += i64::from(p.encode(&mut buf));
        if n == max_lines {
            rows.push((n, std::mem::take(&mut buf)));
            n = 0;
        }
    }
    if n > 0 {
        rows.push((n, buf));
    }
    rows
}

/// Which bytes a context escapes: bit 0 = measurement (`,` space), bit 1 = keys/tag values
/// (`,` `=` space).
const MEASUREMENT: u8 = 1;
const KEY: u8 = 2;

static ESCAPES: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b',' as usize] = MEASUREMENT | KEY;
    t[b' ' as usize] = MEASUREMENT | KEY;
    t[b'=' as usize] = KEY;
    t[b'\n' as usize] = 0x80;
    t[b'\r' as usize] = 0x80;
    t
};

/// The name as it can be written: newlines become spaces (by `escape`), trailing backslashes
/// are dropped (they would escape the separator after them).
fn writable(s: &str) -> &str {
    s.trim_end_matches('\\')
}

fn escape(out: &mut Vec<u8>, s: &str, ctx: u8) {
    let b = writable(s).as_bytes();
    if !b.iter().any(|&c| ESCAPES[c as usize] & (ctx | 0x80) != 0) {
        out.extend_from_slice(b);
        return;
    }
    for &c in b {
        let e = ESCAPES[c as usize];
        if e & 0x80 != 0 {
            // A line break becomes a space, escaped where a space must be (found by fuzzing:
            // a bare one ended the tag set early).
            if ESCAPES[b' ' as usize] & ctx != 0 {
                out.push(b'\\');
            }
            out.push(b' ');
            continue;
        }
        if e & ctx != 0 {
            out.push(b'\\');
        }
        out.push(c);
    }
}

/// Why a line is not valid line protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LineError(pub String);

impl LineError {
    fn new(what: impl fmt::Display) -> LineError {
        LineError(what.to_string())
    }
}

/// Parses one line (without its newline). A missing timestamp takes `default_ns`.
pub fn parse_line(line: &str, default_ns: i64) -> Result<Point, LineError> {
    let b = line.as_bytes();
    let mut i = 0;
    let measurement = read_ident(b, &mut i, b", ")?;
    if measurement.is_empty() {
        return Err(LineError::new("missing measurement name"));
    }
    let mut p = Point::new(measurement, default_ns);
    while i < b.len() && b[i] == b',' {
        i += 1;
        let k = read_ident(b, &mut i, KEY_ESC)?;
        if i >= b.len() || b[i] != b'=' {
            return Err(LineError::new(format!("tag {k:?} has no `=value`")));
        }
        i += 1;
        let v = read_ident(b, &mut i, KEY_ESC)?;
        if k.is_empty() || v.is_empty() {
            return Err(LineError::new("empty tag key or value"));
        }
        p.tags.push((k, v));
    }
    if i >= b.len() || b[i] != b' ' {
        return Err(LineError::new(
            "missing fields (expected a space after the tags)",
        ));
    }
    i += 1;
    loop {
        let k = read_ident(b, &mut i, KEY_ESC)?;
        if k.is_empty() || i >= b.len() || b[i] != b'=' {
            return Err(LineError::new(format!("field {k:?} has no `=value`")));
        }
        i += 1;
        let v = read_value(b, &mut i)?;
        p.fields.push((k, v));
        if i < b.len() && b[i] == b',' {
            i += 1;
            continue;
        }
        break;
    }
    if i < b.len() {
        if b[i] != b' ' {
            return Err(LineError::new(format!(
                "unexpected {:?} after the fields",
                b[i] as char
            )));
        }
        let ts = line[i + 1..].trim();
        if !ts.is_empty() {
            p.time_ns = ts.parse().map_err(|_| {
                LineError::new(format!("bad timestamp {ts:?} (integer nanoseconds)"))
            })?;
        }
    }
    Ok(p)
}

const KEY_ESC: &[u8] = b",= ";

/// Reads a name up to an unescaped byte of `stop`; `\\x` for x in `stop` is x, any other
/// backslash is itself.
fn read_ident(b: &[u8], i: &mut usize, stop: &[u8]) -> Result<String, LineError> {
    let mut out = Vec::new();
    while *i < b.len() {
        let c = b[*i];
        if c == b'\\' && *i + 1 < b.len() && stop.contains(&b[*i + 1]) {
            out.push(b[*i + 1]);
            *i += 2;
            continue;
        }
        if stop.contains(&c) {
            break;
        }
        if c == b'\n' {
            return Err(LineError::new("newline inside a line"));
        }
        out.push(c);
        *i += 1;
    }
    String::from_utf8(out).map_err(|_| LineError::new("not UTF-8"))
}

fn read_value(b: &[u8], i: &mut usize) -> Result<Value, LineError> {
    if *i < b.len() && b[*i] == b'"' {
        *i += 1;
        let mut out = Vec::new();
        while *i < b.len() {
            match b[*i] {
                b'\\' if *i + 1 < b.len() && matches!(b[*i + 1], b'"' | b'\\') => {
                    out.push(b[*i + 1]);
                    *i += 2;
                }
                b'"' => {
                    *i += 1;
                    return String::from_utf8(out)
                        .map(Value::Str)
                        .map_err(|_| LineError::new("not UTF-8"));
                }
                c => {
                    out.push(c);
                    *i += 1;
                }
            }
        }
        return Err(LineError::new("unterminated string field"));
    }
    let start = *i;
    while *i < b.len() && b[*i] != b',' && b[*i] != b' ' {
        *i += 1;
    }
    let raw = std::str::from_utf8(&b[start..*i]).map_err(|_| LineError::new("not UTF-8"))?;
    let bad = || LineError::new(format!("bad field value {raw:?}"));
    Ok(match raw {
        "t" | "T" | "true" | "True" | "TRUE" => Value::Bool(true),
        "f" | "F" | "false" | "False" | "FALSE" => Value::Bool(false),
        _ if raw.ends_with('i') => Value::Int(raw[..raw.len() - 1].parse().map_err(|_| bad())?),
        _ if raw.ends_with('u') => Value::UInt(raw[..raw.len() - 1].parse().map_err(|_| bad())?),
        _ => {
            let f: f64 = raw.parse().map_err(|_| bad())?;
            if !f.is_finite()
                || raw
                    .chars()
                    .any(|c| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
            {
                return Err(bad());
            }
            Value::Float(f)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn line_breaks_in_names_and_tags_become_escaped_spaces() {
        // Regression (fuzz, custom metrics): a CR in a tag value was written as a bare space,
        // which ended the tag set and made the line unreadable.
        let mut p = Point::new("m\r1", 5);
        p.tags.push(("k\n".into(), "a\rb c".into()));
        p.fields.push(("f\r".into(), Value::Float(1.0)));
        let mut out = Vec::new();
        assert!(p.encode(&mut out));
        let line = String::from_utf8(out).expect("utf-8");
        let back = parse_line(line.trim_end_matches('\n'), 0).expect("parses back");
        assert_eq!(back.measurement, "m 1");
        assert_eq!(back.tags, vec![("k ".to_string(), "a b c".to_string())]);
        assert_eq!(back.fields[0].0, "f ");
    }

    #[test]
    fn encodes_telegraf_style() {
        let p = Point::new("docker_container_cpu", 1_700_000_000_000_000_000)
            .tag("host", "node 1")
            .tag("cpu", "cpu-total")
            .int("usage_total", 42)
            .float("usage_percent", 1.5)
            .field("container_id", Value::Str("ab\"c".into()));
        assert_eq!(
            p.to_line(),
            r#"docker_container_cpu,host=node\ 1,cpu=cpu-total usage_total=42i,usage_percent=1.5,container_id="ab\"c" 1700000000000000000"#
        );
    }

    #[test]
    fn leaves_out_what_the_protocol_cannot_carry() {
        let p = Point::new("m", 1)
            .tag("empty", "")
            .float("nan", f64::NAN)
            .int("ok", 1);
        assert_eq!(p.to_line(), "m ok=1i 1");
        let none = Point::new("m", 1).float("inf", f64::INFINITY);
        let mut out = Vec::new();
        assert!(!none.encode(&mut out));
        assert!(out.is_empty());
        assert_eq!(Point::new("a\nb", 1).int("x", 1).to_line(), "a\\ b x=1i 1");
    }

    #[test]
    fn parses_and_rejects() {
        let p = parse_line("weather,city=a\\ b temp=21.5,ok=t,n=3i,s=\"x y\" 10", 0).unwrap();
        assert_eq!(p.tags, vec![("city".into(), "a b".into())]);
        assert_eq!(p.fields.len(), 4);
        assert_eq!(p.time_ns, 10);
        assert_eq!(parse_line("m v=1", 99).unwrap().time_ns, 99);
        for bad in [
            "",
            "m",
            "m,t v=1",
            "m v=",
            "m v=abc",
            "m v=\"open",
            "m v=1 x",
            "m,=a v=1",
            "m v=nan",
        ] {
            assert!(parse_line(bad, 0).is_err(), "{bad:?} should be rejected");
        }
    }

    fn text() -> impl Strategy<Value = String> {
        // Printable text with every character the protocol treats specially, and unicode.
        proptest::string::string_regex("[a-zA-Z0-9 ,=\"\\\\é✓\\-_.]{1,12}").unwrap()
    }

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<i64>().prop_map(Value::Int),
            any::<u64>().prop_map(Value::UInt),
            any::<bool>().prop_map(Value::Bool),
            (-1e300f64..1e300).prop_map(Value::Float),
            (-1e6f64..1e6).prop_map(Value::Float),
            (-100_000_000i64..100_000_000).prop_map(|v| Value::Float(v as f64 / 1000.0)),
            proptest::string::string_regex("[a-z \"\\\\,=\n✓]{0,16}")
                .unwrap()
                .prop_map(Value::Str),
        ]
    }

    proptest! {
        #[test]
        fn round_trips_through_the_parser(
            m in text(),
            tags in proptest::collection::vec((text(), text()), 0..4),
            fields in proptest::collection::vec((text(), value()), 1..5),
            ts in any::<i64>(),
        ) {
            let p = Point { measurement: m, tags, fields, time_ns: ts };
            let line = p.to_line();
            // What the protocol can carry: names without trailing backslashes, no empty tags.
            let norm = |s: &String| writable(s).to_string();
            let expected = Point {
                measurement: norm(&p.measurement),
                tags: p.tags.iter().map(|(k, v)| (norm(k), norm(v))).filter(|(k, v)| !k.is_empty() && !v.is_empty()).collect(),
                fields: p.fields.iter().map(|(k, v)| (norm(k), v.clone())).filter(|(k, _)| !k.is_empty()).collect(),
                time_ns: ts,
            };
            if expected.measurement.is_empty() || expected.fields.is_empty() {
                prop_assert!(line.is_empty());
                return Ok(());
            }
            let back = parse_line(&line, 0).map_err(|e| TestCaseError::fail(format!("{line:?}: {e}")))?;
            prop_assert_eq!(back, expected);
        }
    }
}
