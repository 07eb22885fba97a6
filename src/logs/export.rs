//! Log lines for the sinks (pure): line protocol (`berth_log`) and RFC 5424 syslog messages.

use crate::metrics::line::{Point, Value};
use crate::store::LogLine;

/// A private enterprise number for berth's structured data (RFC 5612's documentation number).
const SD_ID: &str = "berth@32473";

pub fn point(l: &LogLine) -> Point {
    Point::new("berth_log", l.time_ns)
        .tag("app", l.app.clone())
        .tag("service", l.service.clone())
        .tag("version", l.version.clone())
        .tag("slot", l.slot.to_string())
        .tag("node", l.node.clone())
        .tag("container_name", l.container.clone())
        .tag("stream", l.stream.clone())
        .field("message", Value::Str(l.message.clone()))
}

/// RFC 5424 header fields are printable US-ASCII without spaces, of bounded length.
fn header_field(s: &str, max: usize) -> String {
    let v: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if v.is_empty() { "-".into() } else { v }
}

fn sd_value(out: &mut String, v: &str) {
    for c in v.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
}

/// One RFC 5424 message: severity err for stderr, info otherwise.
pub fn syslog(l: &LogLine, facility: u8) -> String {
    let severity = if l.stream == "stderr" { 3 } else { 6 };
    let pri = facility as u32 * 8 + severity;
    let mut out = format!(
        "<{pri}>1 {} {} {} {} {} [{SD_ID}",
        crate::timefmt::rfc3339_micros(l.time_ns),
        header_field(&l.node, 255),
        header_field(&format!("{}.{}", l.app, l.service), 48),
        header_field(&l.container, 128),
        header_field(&l.stream, 32),
    );
    for (k, v) in [
        ("app", l.app.as_str()),
        ("service", &l.service),
        ("version", &l.version),
        ("slot", &l.slot.to_string()),
    ] {
        out.push_str(&format!(" {k}=\""));
        sd_value(&mut out, v);
        out.push('"');
    }
    out.push_str("] ");
    // One message per line of the outbox body: a line never holds a newline, but be sure.
    out.push_str(&l.message.replace('\n', " "));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_both() {
        let l = LogLine {
            time_ns: 1_000_000_123_000,
            app: "shop".into(),
            service: "web".into(),
            version: "web-001".into(),
            slot: 2,
            node: "n1".into(),
            container: "shop_web-001_2".into(),
            stream: "stderr".into(),
            message: "boom \"x\" ]".into(),
            id: 0,
        };
        assert_eq!(
            syslog(&l, 1),
            "<11>1 1970-01-01T00:16:40.000123Z n1 shop.web shop_web-001_2 stderr [berth@32473 app=\"shop\" service=\"web\" version=\"web-001\" slot=\"2\"] boom \"x\" ]"
        );
        let p = point(&l).to_line();
        assert!(p.starts_with("berth_log,app=shop,service=web,version=web-001,slot=2,node=n1,container_name=shop_web-001_2,stream=stderr message=\"boom \\\"x\\\" ]\" 1000000123000"));
    }
}
