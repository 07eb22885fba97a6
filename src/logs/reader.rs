//! Turning the engine's log stream into lines, exactly once (pure).
//!
//! Each entry is `<RFC 3339 time> <text>`; text without a final newline is a piece of a long
//! line the engine split (16 KiB pieces), joined here again. The position is (time of the last
//! entry read, how many entries with exactly that time were read): the engine can only be
//! asked for entries since a whole second, so on resume the entries up to the position are
//! skipped. A position is only offered at a line boundary (no piece pending).
//!
//! Bounds (the container is untrusted): a joined line is cut at [`MAX_LINE`]; complete lines
//! of one stream held while the other has a piece pending are bounded by [`MAX_HELD`] bytes,
//! [`MAX_HELD_LINES`] lines and [`MAX_HOLD_NS`]: past any, the pending piece is emitted as a
//! line of its own, so the held lines are released with a position (and a checkpoint) instead
//! of piling up.

/// Longest joined line kept; the rest of a longer one is dropped (with a marker).
pub const MAX_LINE: usize = 1 << 20;
/// Most bytes of complete lines held back while a piece of the other stream is pending.
pub const MAX_HELD: usize = 2 << 20;
/// Most complete lines held back so (each becomes a stored line of several strings: a bound
/// on bytes alone let 170,000 short lines pile up, and the agent's memory with them).
pub const MAX_HELD_LINES: usize = 2000;
/// Longest a pending piece holds back the other stream's lines (engine time).
pub const MAX_HOLD_NS: i64 = 2_000_000_000;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub ts_ns: i64,
    pub at_ts: u32,
}

impl Position {
    pub fn parse(s: &str) -> Option<Position> {
        let (a, b) = s.split_once(':')?;
        Some(Position {
            ts_ns: a.parse().ok()?,
            at_ts: b.parse().ok()?,
        })
    }

    pub fn encode(&self) -> String {
        format!("{}:{}", self.ts_ns, self.at_ts)
    }

    /// Whole seconds to ask the engine for (`since`).
    pub fn since_s(&self) -> i64 {
        self.ts_ns.div_euclid(1_000_000_000)
    }

    fn advance(&mut self, ts: i64) {
        if ts == self.ts_ns {
            self.at_ts += 1;
        } else {
            *self = Position {
                ts_ns: ts,
                at_ts: 1,
            };
        }
    }
}

/// One complete line.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub time_ns: i64,
    pub stderr: bool,
    pub text: String,
}

#[derive(Debug, Default)]
pub struct Reader {
    /// The last entry read (skipped ones included).
    pos: Position,
    resume: Option<Position>,
    /// Pending pieces per stream (0 stdout, 1 stderr): time of the first piece, bytes.
    partial: [Option<(i64, Vec<u8>)>; 2],
    /// Complete lines read while the other stream had a piece pending: released with the
    /// next position that covers them.
    held: Vec<Line>,
    /// Bytes of text in `held`.
    held_bytes: usize,
}

fn push_capped(buf: &mut Vec<u8>, more: &[u8]) {
    let room = MAX_LINE.saturating_sub(buf.len());
    buf.extend_from_slice(&more[..more.len().min(room)]);
}

impl Reader {
    /// A reader that skips everything up to and including `resume`.
    pub fn new(resume: Option<Position>) -> Reader {
        Reader {
            pos: Position::default(),
            resume,
            partial: [None, None],
            held: Vec::new(),
            held_bytes: 0,
        }
    }

    /// Feeds one entry; returns the lines it completes. Lines are only returned when no piece
    /// of a line is pending, so [`Reader::checkpoint`] right after covers exactly them (a
    /// position in the middle of a split line cannot be resumed from).
    pub fn feed(&mut self, stderr: bool, entry: &[u8]) -> Vec<Line> {
        let (ts, text) = match entry.iter().position(|b| *b == b' ') {
            Some(i) => match std::str::from_utf8(&entry[..i])
                .ok()
                .and_then(crate::timefmt::parse_rfc3339)
            {
                Some(ts) => (ts, &entry[i + 1..]),
                None => (self.pos.ts_ns, entry),
            },
            None => (self.pos.ts_ns, entry),
        };
        self.pos.advance(ts);
        if let Some(r) = self.resume {
            if self.pos <= r {
                return Vec::new();
            }
            self.resume = None;
        }
        let slot = &mut self.partial[usize::from(stderr)];
        let out = &mut self.held;
        let held_bytes = &mut self.held_bytes;
        let mut rest = text;
        while let Some(nl) = rest.iter().position(|b| *b == b'\n') {
            let (start_ts, mut buf) = slot.take().unwrap_or((ts, Vec::new()));
            push_capped(&mut buf, &rest[..nl]);
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            *held_bytes += buf.len();
            out.push(Line {
                time_ns: start_ts,
                stderr,
                text: String::from_utf8_lossy(&buf).into_owned(),
            });
            rest = &rest[nl + 1..];
        }
        if !rest.is_empty() {
            let e = slot.get_or_insert_with(|| (ts, Vec::new()));
            push_capped(&mut e.1, rest);
            // A line that never ends is cut at MAX_LINE, so positions keep coming.
            if let Some((t, buf)) = slot.take_if(|e| e.1.len() >= MAX_LINE) {
                *held_bytes += buf.len();
                out.push(Line {
                    time_ns: t,
                    stderr,
                    text: String::from_utf8_lossy(&buf).into_owned(),
                });
            }
        }
        // A piece that holds the other stream's lines too long or too many ends here.
        if self.held_bytes > MAX_HELD || self.held.len() > MAX_HELD_LINES {
            self.cut_pending(i64::MAX);
        } else if !self.held.is_empty() {
            self.cut_pending(ts.saturating_sub(MAX_HOLD_NS));
        }
        self.release()
    }

    /// Lines held behind a piece that started before `now_ns - MAX_HOLD_NS` (the follower
    /// calls this when the stream is quiet, so a piece never ended holds nothing for long).
    pub fn flush_stale(&mut self, now_ns: i64) -> Vec<Line> {
        if self.held.is_empty() {
            return Vec::new();
        }
        self.cut_pending(now_ns.saturating_sub(MAX_HOLD_NS));
        self.release()
    }

    /// Bytes of complete lines waiting behind a pending piece.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// Whether complete lines wait behind a pending piece.
    pub fn holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// Emits every pending piece that started at or before `before` as a line of its own.
    fn cut_pending(&mut self, before: i64) {
        for (i, slot) in self.partial.iter_mut().enumerate() {
            if let Some((t, buf)) = slot.take_if(|e| e.0 <= before) {
                // In time order: the piece usually began before the lines it held.
                let at = self.held.partition_point(|l| l.time_ns <= t);
                self.held.insert(
                    at,
                    Line {
                        time_ns: t,
                        stderr: i == 1,
                        text: String::from_utf8_lossy(&buf).into_owned(),
                    },
                );
            }
        }
    }

    /// The held lines, when no piece is pending (a position covers them).
    fn release(&mut self) -> Vec<Line> {
        if self.partial.iter().all(Option::is_none) {
            self.held_bytes = 0;
            std::mem::take(&mut self.held)
        } else {
            Vec::new()
        }
    }

    /// Where to resume after what was returned so far: None while a piece of a line is
    /// pending (or nothing new was read).
    pub fn checkpoint(&self) -> Option<Position> {
        (self.partial.iter().all(Option::is_none) && self.resume.is_none() && self.pos.ts_ns != 0)
            .then_some(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(t: &str, text: &str) -> Vec<u8> {
        format!("2026-11-22T10:00:{t}Z {text}").into_bytes()
    }

    #[test]
    fn joins_split_lines_and_offers_positions_at_boundaries() {
        let mut r = Reader::new(None);
        assert_eq!(r.feed(false, &e("01", "hello\n"))[0].text, "hello");
        let cp = r.checkpoint().unwrap();
        assert!(r.feed(false, &e("02", "part one, ")).is_empty());
        assert_eq!(r.checkpoint(), None, "a piece is pending");
        // A line of the other stream waits until a position covers it.
        assert!(r.feed(true, &e("02", "err\n")).is_empty());
        let l = r.feed(false, &e("03", "part two\n"));
        assert_eq!(l[0].text, "err");
        let l = &l[1..];
        assert_eq!(l[0].text, "part one, part two");
        assert_eq!(
            l[0].time_ns,
            crate::timefmt::parse_rfc3339("2026-11-22T10:00:02Z").unwrap()
        );
        assert!(r.checkpoint().unwrap() > cp);
    }

    #[test]
    fn resumes_after_the_position_even_within_one_timestamp() {
        let entries = [
            e("01", "a\n"),
            e("01", "b\n"),
            e("01", "c\n"),
            e("02", "d\n"),
        ];
        let mut first = Reader::new(None);
        let mut seen = Vec::new();
        for x in &entries[..2] {
            seen.extend(first.feed(false, x).into_iter().map(|l| l.text));
        }
        let cp = first.checkpoint().unwrap();
        assert_eq!(Position::parse(&cp.encode()), Some(cp));
        // A restart re-reads from the whole second: the first two entries are skipped.
        let mut again = Reader::new(Some(cp));
        for x in &entries {
            seen.extend(again.feed(false, x).into_iter().map(|l| l.text));
        }
        assert_eq!(seen, vec!["a", "b", "c", "d"]);
    }

    #[test]
    fn a_pending_piece_cannot_hold_the_other_stream_without_bound() {
        // 16 KiB without a newline on stdout, then a flood on stderr (the attack): the held
        // lines are released once they pass MAX_HELD, with a position.
        let mut r = Reader::new(None);
        assert!(r.feed(false, &e("01", &"p".repeat(16 << 10))).is_empty());
        let line = format!("{}\n", "f".repeat(1000));
        let mut out = 0;
        let mut max_held = 0;
        let mut max_lines = 0;
        for _ in 0..10_000 {
            out += r.feed(true, &e("01", &line)).len();
            max_held = max_held.max(r.held_bytes);
            max_lines = max_lines.max(r.held.len());
        }
        // Short lines: the count bound applies first.
        let mut r2 = Reader::new(None);
        assert!(r2.feed(false, &e("01", "piece")).is_empty());
        let mut biggest = 0;
        for i in 0..10_000 {
            biggest = biggest.max(r2.feed(true, &e("01", &format!("f {i}\n"))).len());
        }
        // The held lines, the one that crossed the bound and the piece cut for them.
        assert!(
            biggest <= MAX_HELD_LINES + 2,
            "{biggest} lines released at once"
        );
        assert!(max_held <= MAX_HELD + 1000, "held {max_held} bytes");
        assert!(max_lines <= MAX_HELD_LINES, "held {max_lines} lines");
        assert!(out > 9_000, "only {out} lines came out");
        assert!(r.checkpoint().is_some() || !r.held.is_empty());
        // By time: a piece older than MAX_HOLD_NS releases what it holds at the next entry.
        let mut r = Reader::new(None);
        assert!(r.feed(false, &e("01", "piece")).is_empty());
        assert!(r.feed(true, &e("02", "err\n")).is_empty());
        let l = r.feed(true, &e("04", "later\n"));
        let texts: Vec<_> = l.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["piece", "err", "later"]);
        assert!(r.checkpoint().is_some());
        // And when the stream goes quiet, the follower's flush does it.
        let mut r = Reader::new(None);
        assert!(r.feed(false, &e("01", "piece")).is_empty());
        assert!(r.feed(true, &e("01", "err\n")).is_empty());
        let t = crate::timefmt::parse_rfc3339("2026-11-22T10:00:01Z").unwrap();
        assert!(r.flush_stale(t + 1_000_000_000).is_empty());
        assert_eq!(r.flush_stale(t + MAX_HOLD_NS).len(), 2);
        assert!(r.checkpoint().is_some());
    }

    #[test]
    fn caps_giant_lines() {
        let mut r = Reader::new(None);
        let big = "x".repeat(MAX_LINE + 10);
        // Cut at MAX_LINE (so a position follows); the rest of this entry is dropped.
        assert_eq!(r.feed(false, &e("01", &big))[0].text.len(), MAX_LINE);
        assert!(r.checkpoint().is_some());
    }
}
