//! The parsers of custom metrics (`monitoring.script` / `monitoring.http` output: line
//! protocol, Prometheus text, JSON) never panic; what they accept encodes and parses back.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let tags = vec!["region".to_string()];
    let (points, _bad) = berth::metrics::custom::parse_output(&text, "httpjson_fuzz", &tags, 1);
    let (script, _) = berth::metrics::custom::parse_output(&text, "", &[], 1);
    for p in points.iter().chain(script.iter()) {
        let mut out = Vec::new();
        if !p.encode(&mut out) {
            continue;
        }
        let line = String::from_utf8(out).expect("encoded lines are UTF-8");
        let back = berth::metrics::line::parse_line(line.trim_end_matches('\n'), 0);
        assert!(back.is_ok(), "{line:?} does not parse back: {back:?}");
    }
    for l in text.lines() {
        let _ = berth::metrics::line::parse_line(l, 0);
    }
});
