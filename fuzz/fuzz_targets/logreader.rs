//! The log reader's framing of engine log entries never panics, never holds lines beyond its
//! bound, cuts lines at its limit, and its positions encode and parse back. (Positions follow
//! the engine's timestamps, which go back when the host clock does: not checked here.)
//! Input: entries separated by 0xFF, the first byte of each says the stream (odd: stderr).
#![no_main]

use berth::logs::reader::{MAX_HELD, MAX_HELD_LINES, MAX_LINE, Reader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut r = Reader::new(None);
    for entry in data.split(|b| *b == 0xFF) {
        let Some((&flag, bytes)) = entry.split_first() else {
            continue;
        };
        let released = r.feed(flag & 1 == 1, bytes);
        // What is released at once: the held lines (bounded), this entry's own, two pieces.
        let own = bytes.iter().filter(|b| **b == b'\n').count() + 1;
        assert!(released.len() <= MAX_HELD_LINES + own + 2, "{} at once", released.len());
        for l in released {
            assert!(l.text.len() <= MAX_LINE * 3 + 16, "line of {}", l.text.len());
        }
        if flag & 2 == 2 {
            let _ = r.flush_stale(i64::MAX);
        }
        if let Some(cp) = r.checkpoint() {
            assert_eq!(berth::logs::reader::Position::parse(&cp.encode()), Some(cp));
        }
        assert!(r.held_bytes() <= MAX_HELD + MAX_LINE * 2, "held {}", r.held_bytes());
    }
});
