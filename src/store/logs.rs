//! The log store: collected lines, the collectors' checkpoints, retention.
//!
//! Invariant: lines, the checkpoint that says they were read, and their export batches are
//! written in one transaction ([`Store::append_logs`]), so a crash at any point neither loses
//! nor repeats a line.
//!
//! Packed rows: consecutive lines of a batch from one source (same app, service, version,
//! slot, node, container and stream) within [`PACK_SPAN_NS`] of the first are one row, so a
//! busy source (the router's access log at full load) costs one insert and two index entries
//! per batch, not per line. Such a row's `lines` says how many it holds, its `time_ns` is the
//! earliest line's, and its `message` is [`pack`]ed. Every line of a row carries the row's id,
//! and a query returns a row's lines all or none (`logs -f` continues after the last id seen);
//! filters on time and text are applied to each line. Retention removes whole rows.

use super::{Store, StoreError, sql};
use rusqlite::params;

/// One collected line.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LogLine {
    /// Row id (0 before it is stored); `logs -f` continues after the last one seen.
    #[serde(default)]
    pub id: i64,
    pub time_ns: i64,
    pub app: String,
    pub service: String,
    pub version: String,
    pub slot: u32,
    pub node: String,
    /// The container's name.
    pub container: String,
    /// `stdout`, `stderr`, or the name of a log file source (`logs`, `log_store_NAME`).
    pub stream: String,
    pub message: String,
}

/// What one collector hands over at once.
#[derive(Debug, Clone, Default)]
pub struct LogBatch {
    pub lines: Vec<LogLine>,
    /// Lines packed by their writer (the router's access records), stored as they are.
    pub packed: Vec<Packed>,
    /// (container id, source, position): where each source was read up to.
    pub checkpoints: Vec<(String, String, String)>,
    /// Export rows (sink, lines, body) queued with the lines.
    pub export: Vec<(String, i64, Vec<u8>)>,
}

/// A `berth logs` query.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogQuery {
    pub app: String,
    pub service: Option<String>,
    pub slot: Option<u32>,
    /// Only a job run's containers (`{app}_{task}_{slot}.{run}.{attempt}`).
    pub run: Option<u64>,
    pub since_ns: Option<i64>,
    pub until_ns: Option<i64>,
    pub grep: Option<String>,
    pub stream: Option<String>,
    /// Only the last N lines that match.
    pub tail: Option<usize>,
    /// Only lines stored after this row id (for following).
    pub after_id: Option<i64>,
    pub limit: usize,
}

/// The longest a packed row spans: a query's `since` reaches back this far for rows that
/// start before it, and retention by age may take a row's lines up to this much early.
pub const PACK_SPAN_NS: i64 = 1_000_000_000;
/// The most lines, and message bytes, in one packed row.
const PACK_MAX_LINES: usize = 1000;
const PACK_MAX_BYTES: usize = 256 * 1024;
/// Per-line room counted by retention besides the message (the row's other columns).
/// Migration 22 counts the rows stored before it with the same figure.
const LINE_OVERHEAD: i64 = 64;

/// The room a row takes as retention counts it.
fn room(message: &str, lines: usize) -> i64 {
    message.len() as i64 + lines as i64 * LINE_OVERHEAD
}

/// Adds `delta` to the stored lines' room (`log_totals`), in the caller's transaction.
fn add_room(c: &rusqlite::Connection, delta: i64) -> Result<(), StoreError> {
    c.prepare_cached("UPDATE log_totals SET bytes = bytes + ?1 WHERE id = 0")
        .and_then(|mut u| u.execute(params![delta]))
        .map_err(sql("counting the stored log lines"))?;
    Ok(())
}

fn same_source(a: &LogLine, b: &LogLine) -> bool {
    a.app == b.app
        && a.service == b.service
        && a.version == b.version
        && a.slot == b.slot
        && a.node == b.node
        && a.container == b.container
        && a.stream == b.stream
}

/// Whether a line at `time_ns` of `len` bytes joins the row of its source that began at
/// `first_ns` and holds `lines` lines of `bytes` bytes (see "Packed rows").
fn joins(first_ns: i64, lines: usize, bytes: usize, time_ns: i64, len: usize) -> bool {
    time_ns >= first_ns
        && time_ns - first_ns <= PACK_SPAN_NS
        && lines < PACK_MAX_LINES
        && bytes + len <= PACK_MAX_BYTES
}

/// Splits `lines` into the runs stored as one row each (see "Packed rows").
fn runs(lines: &[LogLine]) -> Vec<&[LogLine]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, l) in lines.iter().enumerate() {
        let first = &lines[start];
        let fits = i > start
            && same_source(first, l)
            && joins(first.time_ns, i - start, bytes, l.time_ns, l.message.len());
        if i > start && !fits {
            out.push(&lines[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += l.message.len();
    }
    if start < lines.len() {
        out.push(&lines[start..]);
    }
    out
}

/// A packed row's message: each line as `<time_ns> <bytes>:<message>` and a newline.
fn pack(run: &[LogLine]) -> String {
    let mut m = String::with_capacity(run.iter().map(|l| l.message.len() + 24).sum());
    for l in run {
        crate::pace::point();
        pack_line(&mut m, l.time_ns, &l.message);
    }
    m
}

/// Appends one line to a packed row's message.
fn pack_line(m: &mut String, time_ns: i64, message: &str) {
    // Thousands a second from the access log: integers by `itoa`, no formatting machinery.
    let mut n = itoa::Buffer::new();
    m.push_str(n.format(time_ns));
    m.push(' ');
    m.push_str(n.format(message.len()));
    m.push(':');
    m.push_str(message);
    m.push('\n');
}

/// Lines of one source packed as they are read, with no [`LogLine`] each: a writer of
/// thousands of lines a second (the router's access log) hands over rows ready to store,
/// cut as [`Store::append_logs`] cuts a batch's lines (see "Packed rows").
#[derive(Debug, Clone, Default)]
pub struct Packed {
    /// Every line's app, service, version, slot, node, container and stream.
    source: LogLine,
    rows: Vec<PackedRow>,
    lines: usize,
}

#[derive(Debug, Clone)]
struct PackedRow {
    time_ns: i64,
    lines: usize,
    /// The lines' bytes (without the packed form's times and lengths).
    bytes: usize,
    /// Where the first line's own text starts in `message`: a row of one line is stored
    /// as that text, as [`pack`] leaves a run of one.
    first_at: usize,
    message: String,
}

impl PackedRow {
    /// The message stored: the packed lines, or a single line's text.
    fn stored(&self) -> &str {
        if self.lines == 1 {
            let end = self.message.len().saturating_sub(1);
            self.message.get(self.first_at..end).unwrap_or_default()
        } else {
            &self.message
        }
    }
}

impl Packed {
    /// Rows of `source`'s lines (its `time_ns`, `id` and `message` are not used).
    pub fn new(source: LogLine) -> Packed {
        Packed {
            source: LogLine {
                id: 0,
                time_ns: 0,
                message: String::new(),
                ..source
            },
            ..Default::default()
        }
    }

    pub fn push(&mut self, time_ns: i64, message: &str) {
        self.lines += 1;
        if let Some(r) = self.rows.last_mut()
            && joins(r.time_ns, r.lines, r.bytes, time_ns, message.len())
        {
            r.lines += 1;
            r.bytes += message.len();
            pack_line(&mut r.message, time_ns, message);
            return;
        }
        let mut m = String::with_capacity(4096);
        pack_line(&mut m, time_ns, message);
        self.rows.push(PackedRow {
            time_ns,
            lines: 1,
            bytes: message.len(),
            first_at: m.len() - message.len() - 1,
            message: m,
        });
    }

    /// How many lines it holds.
    pub fn lines(&self) -> usize {
        self.lines
    }

    /// Its lines one by one (for export, which sends lines).
    pub fn to_lines(&self) -> Vec<LogLine> {
        let mut out = Vec::with_capacity(self.lines);
        for r in &self.rows {
            for (time_ns, message) in unpack(&r.message).unwrap_or_default() {
                crate::pace::point();
                out.push(LogLine {
                    time_ns,
                    message: message.to_string(),
                    ..self.source.clone()
                });
            }
        }
        out
    }
}

/// The (time, message) lines of a packed row's message; `None` when it is not one.
fn unpack(m: &str) -> Option<Vec<(i64, &str)>> {
    let mut out = Vec::new();
    let mut rest = m;
    while !rest.is_empty() {
        let (time, r) = rest.split_once(' ')?;
        let (len, r) = r.split_once(':')?;
        let len: usize = len.parse().ok()?;
        let msg = r.get(..len)?;
        rest = r.get(len..)?.strip_prefix('\n')?;
        out.push((time.parse().ok()?, msg));
    }
    Some(out)
}

impl Store {
    /// Stores a batch: lines, checkpoints and export rows in one transaction.
    pub fn append_logs(&self, b: &LogBatch, outbox_max_bytes: i64) -> Result<(), StoreError> {
        self.write_unlisted(|c| {
            let tx = c.transaction().map_err(sql("storing log lines"))?;
            {
                let mut ins = tx
                    .prepare_cached(
                        "INSERT INTO log_lines(time_ns, app, service, version, slot, node,
                                               container, stream, message, lines)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    )
                    .map_err(sql("storing log lines"))?;
                // A batch of thousands of lines takes a CPU for a millisecond or more: in
                // the writer's background turns (`pace`), a request waiting for this CPU is
                // held up by one turn of it, not all of it.
                let mut added = 0i64;
                let mut insert = |l: &LogLine, time_ns: i64, message: &str, lines: usize| {
                    crate::pace::point();
                    added += room(message, lines);
                    ins.execute(params![
                        time_ns,
                        l.app,
                        l.service,
                        l.version,
                        l.slot,
                        l.node,
                        l.container,
                        l.stream,
                        message,
                        lines as i64
                    ])
                    .map_err(sql("storing log lines"))
                };
                for run in runs(&b.lines) {
                    let l = &run[0];
                    if run.len() == 1 {
                        insert(l, l.time_ns, &l.message, 1)?;
                    } else {
                        insert(l, l.time_ns, &pack(run), run.len())?;
                    }
                }
                for p in &b.packed {
                    for r in &p.rows {
                        insert(&p.source, r.time_ns, r.stored(), r.lines)?;
                    }
                }
                add_room(&tx, added)?;
                let mut cp = tx
                    .prepare_cached(
                        "INSERT INTO log_checkpoints(container, source, position) VALUES (?1, ?2, ?3)
                         ON CONFLICT(container, source) DO UPDATE SET position = excluded.position",
                    )
                    .map_err(sql("writing a log checkpoint"))?;
                for (id, source, pos) in &b.checkpoints {
                    cp.execute(params![id, source, pos])
                        .map_err(sql("writing a log checkpoint"))?;
                }
            }
            if !b.export.is_empty() {
                super::outbox::push_tx(
                    &tx,
                    b.export
                        .iter()
                        .map(|(sink, n, body)| (sink.as_str(), *n, body.as_slice())),
                    outbox_max_bytes,
                )?;
            }
            tx.commit().map_err(sql("storing log lines"))
        })
    }

    /// The id of the newest stored line (0 when none).
    pub fn last_log_id(&self) -> Result<i64, StoreError> {
        self.read(|c| {
            c.query_row("SELECT COALESCE(MAX(id), 0) FROM log_lines", [], |r| {
                r.get(0)
            })
            .map_err(sql("reading logs"))
        })
    }

    /// Every checkpoint of one container: (source, position).
    pub fn log_checkpoints(&self, container: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.read(|c| {
            let mut q = c
                .prepare_cached("SELECT source, position FROM log_checkpoints WHERE container = ?1")
                .map_err(sql("reading log checkpoints"))?;
            let rows = q
                .query_map(params![container], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(sql("reading log checkpoints"))?;
            rows.collect::<Result<_, _>>()
                .map_err(sql("reading log checkpoints"))
        })
    }

    /// Drops checkpoints of containers that no longer exist.
    pub fn forget_log_checkpoints_except(&self, containers: &[String]) -> Result<(), StoreError> {
        let keep = serde_json::to_string(containers).unwrap_or_else(|_| "[]".into());
        self.write_unlisted(|c| {
            c.execute(
                "DELETE FROM log_checkpoints
                 WHERE container NOT IN (SELECT value FROM json_each(?1))",
                params![keep],
            )
            .map_err(sql("clearing log checkpoints"))?;
            Ok(())
        })
    }

    /// Lines matching `q`, oldest first: at most `limit` (or `tail`), except that the lines
    /// of one packed row are returned together.
    pub fn query_logs(&self, q: &LogQuery) -> Result<Vec<LogLine>, StoreError> {
        let mut where_ = vec!["app = ?1".to_string()];
        let mut args: Vec<rusqlite::types::Value> = vec![q.app.clone().into()];
        let mut add = |cond: &str, v: rusqlite::types::Value| {
            args.push(v);
            where_.push(cond.replace('?', &format!("?{}", args.len())));
        };
        if let Some(s) = &q.service {
            add("service = ?", s.clone().into());
        }
        if let Some(s) = q.slot {
            add("slot = ?", (s as i64).into());
        }
        if let Some(r) = q.run {
            add("container GLOB ?", format!("*.{r}.[0-9]*").into());
        }
        // A packed row starts at most PACK_SPAN_NS before its last line; each line is checked
        // below. Text is searched in the row first (a match in a packed row's times is
        // dropped with the line check), so rows without it are never unpacked.
        if let Some(t) = q.since_ns {
            add("time_ns >= ?", t.saturating_sub(PACK_SPAN_NS).into());
        }
        if let Some(t) = q.until_ns {
            add("time_ns <= ?", t.into());
        }
        if let Some(g) = &q.grep {
            add("instr(message, ?) > 0", g.clone().into());
        }
        if let Some(s) = &q.stream {
            add("stream = ?", s.clone().into());
        }
        if let Some(a) = q.after_id {
            add("id > ?", a.into());
        }
        let limit = q.tail.unwrap_or(q.limit).min(q.limit.max(1));
        // The last N (tail) are the newest N, read backwards and turned round.
        let order = if q.tail.is_some() { "DESC" } else { "ASC" };
        let text = format!(
            "SELECT id, time_ns, app, service, version, slot, node, container, stream, message,
                    lines
             FROM log_lines WHERE {} ORDER BY id {order}",
            where_.join(" AND ")
        );
        let wanted = |time_ns: i64, message: &str| {
            q.since_ns.is_none_or(|t| time_ns >= t)
                && q.until_ns.is_none_or(|t| time_ns <= t)
                && q.grep.as_ref().is_none_or(|g| message.contains(g.as_str()))
        };
        let mut out: Vec<LogLine> = self.read(|c| {
            let mut st = c.prepare(&text).map_err(sql("querying logs"))?;
            let mut rows = st
                .query(rusqlite::params_from_iter(args.iter()))
                .map_err(sql("querying logs"))?;
            let row = |r: &rusqlite::Row| -> rusqlite::Result<LogLine> {
                Ok(LogLine {
                    id: r.get(0)?,
                    time_ns: r.get(1)?,
                    app: r.get(2)?,
                    service: r.get(3)?,
                    version: r.get(4)?,
                    slot: r.get(5)?,
                    node: r.get(6)?,
                    container: r.get(7)?,
                    stream: r.get(8)?,
                    message: r.get(9)?,
                })
            };
            let mut out = Vec::new();
            while out.len() < limit {
                let Some(r) = rows.next().map_err(sql("querying logs"))? else {
                    break;
                };
                let first = row(r).map_err(sql("querying logs"))?;
                let packed = r.get::<_, i64>(10).map_err(sql("querying logs"))? > 1;
                let lines = match packed.then(|| unpack(&first.message)).flatten() {
                    Some(lines) => lines
                        .into_iter()
                        .filter(|(t, m)| wanted(*t, m))
                        .map(|(time_ns, m)| LogLine {
                            time_ns,
                            message: m.to_string(),
                            ..first.clone()
                        })
                        .collect(),
                    None if wanted(first.time_ns, &first.message) => vec![first],
                    None => Vec::new(),
                };
                if q.tail.is_some() {
                    // Newest first: the row's last lines, as many as are still wanted.
                    let keep = lines.len().min(limit - out.len());
                    out.extend(lines.into_iter().rev().take(keep));
                } else {
                    out.extend(lines);
                }
            }
            Ok(out)
        })?;
        if q.tail.is_some() {
            out.reverse();
        }
        Ok(out)
    }

    /// Retention: deletes lines older than `before_ns`, then the oldest until the stored
    /// messages take at most `max_bytes`. Returns how many lines went. Reads only the rows
    /// it deletes: the room the others take is kept in `log_totals` by the writes.
    pub fn prune_logs(&self, before_ns: i64, max_bytes: i64) -> Result<usize, StoreError> {
        self.write_unlisted(|c| {
            let tx = c.transaction().map_err(sql("pruning logs"))?;
            let (mut gone, old_room): (i64, i64) = tx
                .query_row(
                    "SELECT COALESCE(SUM(lines), 0),
                            COALESCE(SUM(length(CAST(message AS BLOB)) + lines * ?2), 0)
                     FROM log_lines WHERE time_ns < ?1",
                    params![before_ns, LINE_OVERHEAD],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(sql("pruning logs"))?;
            if gone > 0 {
                tx.execute(
                    "DELETE FROM log_lines WHERE time_ns < ?1",
                    params![before_ns],
                )
                .map_err(sql("pruning logs"))?;
                add_room(&tx, -old_room)?;
            }
            let total: i64 = tx
                .query_row("SELECT bytes FROM log_totals WHERE id = 0", [], |r| {
                    r.get(0)
                })
                .map_err(sql("sizing logs"))?;
            if total > max_bytes {
                // Find the id below which enough bytes go, in one ordered pass.
                let mut excess = total - max_bytes;
                let mut freed = 0;
                let cut: i64 = {
                    let mut q = tx
                        .prepare(
                            "SELECT id, length(CAST(message AS BLOB)) + lines * ?1, lines
                             FROM log_lines ORDER BY id",
                        )
                        .map_err(sql("pruning logs"))?;
                    let mut rows = q
                        .query(params![LINE_OVERHEAD])
                        .map_err(sql("pruning logs"))?;
                    let mut cut = 0;
                    while excess > 0 {
                        let Some(r) = rows.next().map_err(sql("pruning logs"))? else {
                            break;
                        };
                        cut = r.get(0).map_err(sql("pruning logs"))?;
                        let size = r.get::<_, i64>(1).map_err(sql("pruning logs"))?;
                        excess -= size;
                        freed += size;
                        gone += r.get::<_, i64>(2).map_err(sql("pruning logs"))?;
                    }
                    cut
                };
                tx.execute("DELETE FROM log_lines WHERE id <= ?1", params![cut])
                    .map_err(sql("pruning logs"))?;
                add_room(&tx, -freed)?;
            }
            tx.commit().map_err(sql("pruning logs"))?;
            Ok(gone as usize)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(t: i64, svc: &str, stream: &str, msg: &str) -> LogLine {
        LogLine {
            time_ns: t,
            app: "shop".into(),
            service: svc.into(),
            version: format!("{svc}-001"),
            slot: 1,
            node: "n".into(),
            container: format!("shop_{svc}-001_1"),
            stream: stream.into(),
            message: msg.into(),
            id: 0,
        }
    }

    /// App `shop`'s lines for a query `f` shapes.
    fn query(s: &Store, f: &dyn Fn(&mut LogQuery)) -> Vec<LogLine> {
        let mut q = LogQuery {
            app: "shop".into(),
            limit: 1000,
            ..Default::default()
        };
        f(&mut q);
        s.query_logs(&q).unwrap()
    }

    #[test]
    fn retention_counts_bytes_not_characters() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        // 1,000 characters, 2,000 bytes each.
        let msg = "é".repeat(1000);
        let b = LogBatch {
            // Too far apart to share a row.
            lines: (0..10)
                .map(|i| line(i * 2 * PACK_SPAN_NS, "web", "stdout", &msg))
                .collect(),
            ..Default::default()
        };
        s.append_logs(&b, 1 << 20).unwrap();
        // Room for three lines by bytes (six if characters were counted).
        let n = s.prune_logs(0, 3 * (2000 + 64)).unwrap();
        assert_eq!(n, 7);
    }

    /// The room retention counts, as kept by the writes (`log_totals`) and as a scan of every
    /// stored message finds it.
    fn rooms(s: &Store) -> (i64, i64) {
        s.read(|c| {
            c.query_row(
                "SELECT (SELECT bytes FROM log_totals),
                        (SELECT COALESCE(SUM(length(CAST(message AS BLOB)) + lines * ?1), 0)
                         FROM log_lines)",
                params![LINE_OVERHEAD],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(sql("rooms"))
        })
        .unwrap()
    }

    /// Retention reads only what it deletes: the room the stored lines take is kept by each
    /// write (single lines, the store's packed runs, the writer's packed rows, both prunes)
    /// and always equals a scan's; a data dir from before the count gets it at migration.
    #[test]
    fn the_room_retention_counts_is_kept_by_the_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let s = Store::open(&path).unwrap();
        assert_eq!(rooms(&s), (0, 0));
        let mut lines: Vec<LogLine> = (0..300)
            .map(|i| line(i * 1_000, "web", "stdout", &format!("é line {i}")))
            .collect();
        // Too far apart to share a row.
        lines.extend((0..5).map(|i| line((10 + 2 * i) * PACK_SPAN_NS, "db", "stderr", "alone")));
        let mut p = Packed::new(line(0, "access", "access", "ignored"));
        for i in 0..500 {
            p.push(20 * PACK_SPAN_NS + i, &"a".repeat(i as usize % 300));
        }
        s.append_logs(
            &LogBatch {
                lines,
                packed: vec![p],
                ..Default::default()
            },
            1 << 20,
        )
        .unwrap();
        let (kept, scanned) = rooms(&s);
        assert!(scanned > 300 * 64 + 500 * 64, "{scanned}");
        assert_eq!(kept, scanned, "after an append");
        // By age: the web lines and two of db's.
        assert_eq!(s.prune_logs(13 * PACK_SPAN_NS, 1 << 30).unwrap(), 302);
        let (kept, scanned) = rooms(&s);
        assert_eq!(kept, scanned, "after a prune by age");
        // By size: the oldest rows until what is left fits.
        let n = s.prune_logs(0, scanned / 2).unwrap();
        assert!(n > 0);
        let (kept, scanned_now) = rooms(&s);
        assert_eq!(kept, scanned_now, "after a prune by size");
        assert!(kept <= scanned / 2, "{kept} > {}", scanned / 2);
        // Nothing to prune: nothing changes.
        assert_eq!(s.prune_logs(0, 1 << 30).unwrap(), 0);
        assert_eq!(rooms(&s), (kept, scanned_now));

        // A data dir from before the count (schema 21) gets it summed at open.
        s.write_unlisted(|c| {
            c.execute_batch("DROP TABLE log_totals; PRAGMA user_version = 21;")
                .map_err(sql("back to 21"))
        })
        .unwrap();
        drop(s);
        let s = Store::open(&path).unwrap();
        assert_eq!(rooms(&s), (kept, scanned_now), "counted at migration");
    }

    #[test]
    fn a_sources_run_of_lines_is_one_row_and_reads_back_line_by_line() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        // Messages that look like the packed form itself, and multi-byte text.
        let msgs = [
            "GET / 200",
            "12 3:abc",
            "",
            "é 5:\u{0}x",
            "x\ny 1:z",
            "GET /b 404",
        ];
        let mut lines: Vec<LogLine> = msgs
            .iter()
            .enumerate()
            .map(|(i, m)| line(1_000 + i as i64, "access", "access", m))
            .collect();
        // Then another source, then the first again more than a span later: three rows.
        lines.push(line(2_000, "web", "stdout", "from web"));
        lines.push(line(
            1_000 + 2 * PACK_SPAN_NS,
            "access",
            "access",
            "GET /late 200",
        ));
        s.append_logs(
            &LogBatch {
                lines: lines.clone(),
                ..Default::default()
            },
            1 << 20,
        )
        .unwrap();
        let rows: i64 = s
            .read(|c| {
                c.query_row("SELECT COUNT(*) FROM log_lines", [], |r| r.get(0))
                    .map_err(sql("count"))
            })
            .unwrap();
        assert_eq!(rows, 3);
        let q = |f: &dyn Fn(&mut LogQuery)| query(&s, f);
        let msg = |v: Vec<LogLine>| v.into_iter().map(|l| l.message).collect::<Vec<_>>();
        let all = q(&|_| {});
        let back: Vec<LogLine> = all.iter().map(|l| LogLine { id: 0, ..l.clone() }).collect();
        assert_eq!(back, lines, "every field of every line back, in order");
        let ids: Vec<i64> = all.iter().map(|l| l.id).collect();
        assert!(ids[..6].iter().all(|i| *i == ids[0]) && ids[6] > ids[0] && ids[7] > ids[6]);
        // Filters apply to each line of a row.
        assert_eq!(
            msg(q(&|q| q.grep = Some("GET".into()))),
            vec!["GET / 200", "GET /b 404", "GET /late 200"]
        );
        assert!(
            q(&|q| q.grep = Some("1000 ".into())).is_empty(),
            "times are not text"
        );
        assert_eq!(
            msg(q(&|q| {
                q.since_ns = Some(1_002);
                q.until_ns = Some(1_003);
                q.service = Some("access".into())
            })),
            vec!["", "é 5:\u{0}x"]
        );
        // Tail cuts a row; a follow returns a row whole, then continues after it.
        assert_eq!(
            msg(q(&|q| q.tail = Some(3))),
            vec!["GET /b 404", "from web", "GET /late 200"]
        );
        assert_eq!(q(&|q| q.limit = 2).len(), 6, "a row is not split");
        assert_eq!(msg(q(&|q| q.after_id = Some(ids[0]))).len(), 2);
        // Retention takes whole rows and counts their lines.
        assert_eq!(s.prune_logs(1_001, 1 << 20).unwrap(), 6);
        assert_eq!(msg(q(&|_| {})), vec!["from web", "GET /late 200"]);
    }

    /// Lines packed by their writer are stored as the same rows, and read back as the same
    /// lines, as when the store packs them.
    #[test]
    fn lines_packed_by_their_writer_store_as_the_stores_own_rows() {
        let msgs = ["GET / 200", "12 3:abc", "", "é 5:\u{0}x", "x\ny 1:z"];
        let mut lines: Vec<LogLine> = (0..2600)
            .map(|i| line(1_000 + i, "access", "access", msgs[i as usize % msgs.len()]))
            .collect();
        // A line alone (a span later), then a line earlier than its row, and big lines
        // that fill a row by bytes.
        lines.push(line(5 * PACK_SPAN_NS, "access", "access", "alone"));
        lines.push(line(7 * PACK_SPAN_NS, "access", "access", "a"));
        lines.push(line(7 * PACK_SPAN_NS - 1, "access", "access", "earlier"));
        let big = "b".repeat(100 << 10);
        for i in 0..5 {
            lines.push(line(7 * PACK_SPAN_NS + i, "access", "access", &big));
        }
        let stored = |b: LogBatch| {
            let dir = tempfile::tempdir().unwrap();
            let s = Store::open(&dir.path().join("s.db")).unwrap();
            s.append_logs(&b, 1 << 20).unwrap();
            let rows: Vec<(i64, i64, String)> = s
                .read(|c| {
                    let mut q = c
                        .prepare("SELECT time_ns, lines, message FROM log_lines ORDER BY id")
                        .map_err(sql("rows"))?;
                    q.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                        .map_err(sql("rows"))?
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(sql("rows"))
                })
                .unwrap();
            let mut back = Vec::new();
            let mut after = 0;
            loop {
                let got = query(&s, &|q| q.after_id = Some(after));
                let Some(last) = got.last() else { break };
                after = last.id;
                back.extend(got.into_iter().map(|l| LogLine { id: 0, ..l }));
            }
            (rows, back)
        };
        let mut p = Packed::new(line(0, "access", "access", "ignored"));
        for l in &lines {
            p.push(l.time_ns, &l.message);
        }
        assert_eq!(p.lines(), lines.len());
        assert_eq!(p.to_lines(), lines, "every line back for export");
        let by_writer = stored(LogBatch {
            packed: vec![p],
            ..Default::default()
        });
        let by_store = stored(LogBatch {
            lines: lines.clone(),
            ..Default::default()
        });
        assert_eq!(by_writer.0, by_store.0, "the same rows");
        assert!(by_writer.0.len() >= 6, "{} rows", by_writer.0.len());
        assert!(by_writer.0.iter().any(|r| r.2 == "alone" && r.1 == 1));
        assert_eq!(by_writer.1, lines, "every line back, in order");
    }

    #[test]
    fn a_row_that_does_not_unpack_reads_as_it_is() {
        for bad in ["1 9:short\n", "x 1:a\n", "1 1:ab\n", "1 1:a"] {
            assert_eq!(unpack(bad), None, "{bad:?}");
        }
        assert_eq!(unpack(""), Some(vec![]));
        assert_eq!(unpack("5 2:é\n"), Some(vec![(5, "é")]));
        assert_eq!(unpack("5 1:é\n"), None, "a length inside a character");
    }

    #[test]
    fn stores_queries_and_prunes() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        let b = LogBatch {
            lines: (0..10)
                .map(|i| {
                    line(
                        i,
                        if i % 2 == 0 { "web" } else { "db" },
                        if i == 9 { "stderr" } else { "stdout" },
                        &format!("line {i}"),
                    )
                })
                .collect(),
            checkpoints: vec![("c1".into(), "stdout".into(), "9:1".into())],
            export: vec![("syslog".into(), 10, b"x".to_vec())],
            ..Default::default()
        };
        s.append_logs(&b, 1 << 20).unwrap();
        assert_eq!(
            s.log_checkpoints("c1").unwrap(),
            vec![("stdout".into(), "9:1".into())]
        );
        assert_eq!(s.outbox_peek("syslog", 100).unwrap().len(), 1);
        let q = |f: &dyn Fn(&mut LogQuery)| {
            query(&s, f)
                .into_iter()
                .map(|l| l.message)
                .collect::<Vec<_>>()
        };
        assert_eq!(q(&|_| {}).len(), 10);
        assert_eq!(q(&|q| q.service = Some("web".into())).len(), 5);
        assert!(q(&|q| q.run = Some(1)).is_empty(), "no job run's container");
        assert_eq!(q(&|q| q.tail = Some(2)), vec!["line 8", "line 9"]);
        assert_eq!(q(&|q| q.grep = Some("ne 3".into())), vec!["line 3"]);
        assert_eq!(q(&|q| q.stream = Some("stderr".into())), vec!["line 9"]);
        assert_eq!(
            q(&|q| {
                q.since_ns = Some(3);
                q.until_ns = Some(4)
            }),
            vec!["line 3", "line 4"]
        );
        assert_eq!(q(&|q| q.after_id = Some(8)).len(), 2);
        s.forget_log_checkpoints_except(&[]).unwrap();
        assert!(s.log_checkpoints("c1").unwrap().is_empty());
        // Age: lines before t=2 go; size: each line counts ~70 bytes, so 3 lines fit in 220.
        assert_eq!(s.prune_logs(2, 1 << 20).unwrap(), 2);
        assert_eq!(s.prune_logs(0, 220).unwrap(), 5);
        assert_eq!(q(&|_| {}), vec!["line 7", "line 8", "line 9"]);
    }
}
