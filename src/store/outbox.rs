//! The durable outbox: batches of lines waiting for a sink (InfluxDB, syslog), kept until the
//! sink accepts them. Bounded by total size; when full the oldest rows go first and their
//! lines are counted per sink.

use super::{Store, StoreError, sql};
use rusqlite::{Transaction, params};

/// One stored batch.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    pub id: i64,
    pub lines: i64,
    pub body: Vec<u8>,
}

/// What waits for one sink, and what was lost.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OutboxStats {
    pub sink: String,
    pub rows: i64,
    pub lines: i64,
    pub bytes: i64,
    /// Lines dropped for this sink (outbox full, or refused by the sink as bad data).
    pub dropped: i64,
    /// Why the last drop happened.
    pub reason: String,
}

/// Adds rows (sink, lines, body) inside an open transaction, then trims the whole outbox to
/// `max_bytes` once, oldest first.
pub(super) fn push_tx<'a>(
    tx: &Transaction,
    rows: impl IntoIterator<Item = (&'a str, i64, &'a [u8])>,
    max_bytes: i64,
) -> Result<(), StoreError> {
    let mut ins = tx
        .prepare_cached("INSERT INTO outbox(sink, lines, body) VALUES (?1, ?2, ?3)")
        .map_err(sql("queueing lines"))?;
    for (sink, lines, body) in rows {
        ins.execute(params![sink, lines, body])
            .map_err(sql("queueing lines"))?;
    }
    trim_tx(tx, max_bytes)
}

fn trim_tx(tx: &Transaction, max_bytes: i64) -> Result<(), StoreError> {
    let total: i64 = tx
        .query_row(
            "SELECT COALESCE(SUM(length(body)), 0) FROM outbox",
            [],
            |r| r.get(0),
        )
        .map_err(sql("sizing the outbox"))?;
    if total <= max_bytes {
        return Ok(());
    }
    let mut excess = total - max_bytes;
    let mut victims = Vec::new();
    {
        let mut q = tx
            .prepare("SELECT id, sink, lines, length(body) FROM outbox ORDER BY id")
            .map_err(sql("trimming the outbox"))?;
        let mut rows = q.query([]).map_err(sql("trimming the outbox"))?;
        while excess > 0 {
            let Some(r) = rows.next().map_err(sql("trimming the outbox"))? else {
                break;
            };
            let (id, sink, lines, len): (i64, String, i64, i64) = (
                r.get(0).map_err(sql("trimming the outbox"))?,
                r.get(1).map_err(sql("trimming the outbox"))?,
                r.get(2).map_err(sql("trimming the outbox"))?,
                r.get(3).map_err(sql("trimming the outbox"))?,
            );
            excess -= len;
            victims.push((id, sink, lines));
        }
    }
    for (id, sink, lines) in victims {
        tx.execute("DELETE FROM outbox WHERE id = ?1", params![id])
            .map_err(sql("trimming the outbox"))?;
        count_drop(tx, &sink, lines, "outbox full: oldest lines dropped")?;
    }
    Ok(())
}

fn count_drop(tx: &Transaction, sink: &str, lines: i64, reason: &str) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO outbox_dropped(sink, lines, reason) VALUES (?1, ?2, ?3)
         ON CONFLICT(sink) DO UPDATE SET lines = lines + excluded.lines, reason = excluded.reason",
        params![sink, lines, reason],
    )
    .map_err(sql("counting dropped lines"))?;
    Ok(())
}

impl Store {
    /// Queues batches of lines for a sink (see [`push_tx`]).
    pub fn outbox_push(
        &self,
        sink: &str,
        batches: &[(i64, Vec<u8>)],
        max_bytes: i64,
    ) -> Result<(), StoreError> {
        if batches.is_empty() {
            return Ok(());
        }
        self.write_unlisted(|c| {
            let tx = c.transaction().map_err(sql("queueing lines"))?;
            push_tx(
                &tx,
                batches.iter().map(|(n, b)| (sink, *n, b.as_slice())),
                max_bytes,
            )?;
            tx.commit().map_err(sql("queueing lines"))
        })
    }

    /// The oldest rows for a sink, together at most `max_lines` lines (always at least one
    /// row when any waits).
    pub fn outbox_peek(&self, sink: &str, max_lines: i64) -> Result<Vec<OutboxRow>, StoreError> {
        self.read(|c| {
            let mut q = c
                .prepare_cached(
                    "SELECT id, lines, body FROM outbox WHERE sink = ?1 ORDER BY id LIMIT 200",
                )
                .map_err(sql("reading the outbox"))?;
            let rows = q
                .query_map(params![sink], |r| {
                    Ok(OutboxRow {
                        id: r.get(0)?,
                        lines: r.get(1)?,
                        body: r.get(2)?,
                    })
                })
                .map_err(sql("reading the outbox"))?;
            let mut out = Vec::new();
            let mut n = 0;
            for r in rows {
                let r = r.map_err(sql("reading the outbox"))?;
                if !out.is_empty() && n + r.lines > max_lines {
                    break;
                }
                n += r.lines;
                out.push(r);
            }
            Ok(out)
        })
    }

    /// Removes delivered rows; with `dropped = Some(reason)` they count as lost.
    pub fn outbox_done(
        &self,
        sink: &str,
        ids: &[i64],
        dropped: Option<&str>,
    ) -> Result<(), StoreError> {
        self.write_unlisted(|c| {
            let tx = c.transaction().map_err(sql("clearing the outbox"))?;
            let mut lines = 0;
            for id in ids {
                lines += tx
                    .query_row(
                        "DELETE FROM outbox WHERE id = ?1 RETURNING lines",
                        params![id],
                        |r| r.get::<_, i64>(0),
                    )
                    .unwrap_or(0);
            }
            if let Some(reason) = dropped {
                count_drop(&tx, sink, lines, reason)?;
            }
            tx.commit().map_err(sql("clearing the outbox"))
        })
    }

    /// Per sink: what waits and what was dropped.
    pub fn outbox_stats(&self) -> Result<Vec<OutboxStats>, StoreError> {
        self.read(|c| {
            let mut q = c
                .prepare(
                    "SELECT s.sink,
                            (SELECT COUNT(*) FROM outbox o WHERE o.sink = s.sink),
                            (SELECT COALESCE(SUM(lines), 0) FROM outbox o WHERE o.sink = s.sink),
                            (SELECT COALESCE(SUM(length(body)), 0) FROM outbox o WHERE o.sink = s.sink),
                            COALESCE((SELECT lines FROM outbox_dropped d WHERE d.sink = s.sink), 0),
                            COALESCE((SELECT reason FROM outbox_dropped d WHERE d.sink = s.sink), '')
                     FROM (SELECT sink FROM outbox UNION SELECT sink FROM outbox_dropped) s
                     ORDER BY s.sink",
                )
                .map_err(sql("reading outbox figures"))?;
            let rows = q
                .query_map([], |r| {
                    Ok(OutboxStats {
                        sink: r.get(0)?,
                        rows: r.get(1)?,
                        lines: r.get(2)?,
                        bytes: r.get(3)?,
                        dropped: r.get(4)?,
                        reason: r.get(5)?,
                    })
                })
                .map_err(sql("reading outbox figures"))?;
            rows.collect::<Result<_, _>>()
                .map_err(sql("reading outbox figures"))
        })
    }

    /// Drops the queues of sinks no longer configured (they would hold their share of the
    /// bound for ever); returns the rows removed.
    pub fn outbox_forget_except(&self, sinks: &[String]) -> Result<usize, StoreError> {
        let keep = serde_json::to_string(sinks).unwrap_or_else(|_| "[]".into());
        self.write_unlisted(|c| {
            c.execute(
                "DELETE FROM outbox WHERE sink NOT IN (SELECT value FROM json_each(?1))",
                params![keep],
            )
            .map_err(sql("clearing the outbox"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_bounds_size_and_counts_drops() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        let b = |n: usize| (n as i64, vec![b'x'; n * 10]);
        s.outbox_push("a", &[b(3), b(4)], 1000).unwrap();
        s.outbox_push("b", &[b(2)], 1000).unwrap();
        let rows = s.outbox_peek("a", 5).unwrap();
        assert_eq!(rows.len(), 1, "3 + 4 lines exceed 5: one row");
        assert_eq!(s.outbox_peek("a", 7).unwrap().len(), 2);
        assert_eq!(
            s.outbox_peek("a", 1).unwrap().len(),
            1,
            "always at least one row"
        );
        // 90 bytes are queued; 50 more over a 120-byte bound drops the oldest row (a's 3 lines).
        s.outbox_push("b", &[b(5)], 120).unwrap();
        let st = s.outbox_stats().unwrap();
        let a = st.iter().find(|x| x.sink == "a").unwrap();
        assert_eq!((a.lines, a.dropped), (4, 3));
        assert!(a.reason.contains("full"));
        let ids: Vec<i64> = s
            .outbox_peek("a", 100)
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        s.outbox_done("a", &ids, Some("400: bad line")).unwrap();
        let st = s.outbox_stats().unwrap();
        let a = st.iter().find(|x| x.sink == "a").unwrap();
        assert_eq!(
            (a.lines, a.dropped, a.reason.as_str()),
            (0, 7, "400: bad line")
        );
        assert_eq!(s.outbox_forget_except(&["a".into()]).unwrap(), 2);
        assert!(s.outbox_peek("b", 100).unwrap().is_empty());
    }
}
