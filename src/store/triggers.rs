//! Redeploy triggers (`berth trigger create`): a webhook id per trigger, its secret kept only
//! as a SHA-256 digest.

use super::{Store, StoreError, sql};
use rusqlite::{OptionalExtension, Row, params};

#[derive(Debug, Clone, PartialEq)]
pub struct TriggerRow {
    pub id: String,
    pub app: String,
    /// `redeploy` or `scale`.
    pub action: String,
    /// For `scale`: the service and its replica count.
    pub service: String,
    pub replicas: u32,
    pub secret_digest: Vec<u8>,
    pub created_ms: i64,
    pub calls: i64,
    pub last_ms: i64,
}

const COLUMNS: &str =
    "id, app, action, service, replicas, secret_digest, created_ms, calls, last_ms";

fn row(r: &Row<'_>) -> rusqlite::Result<TriggerRow> {
    Ok(TriggerRow {
        id: r.get(0)?,
        app: r.get(1)?,
        action: r.get(2)?,
        service: r.get(3)?,
        replicas: r.get(4)?,
        secret_digest: r.get(5)?,
        created_ms: r.get(6)?,
        calls: r.get(7)?,
        last_ms: r.get(8)?,
    })
}

impl Store {
    pub fn put_trigger(&self, t: &TriggerRow) -> Result<(), StoreError> {
        self.write_acked_unlisted(|c| {
            c.execute(
                &format!(
                    "INSERT INTO triggers({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                ),
                params![
                    t.id,
                    t.app,
                    t.action,
                    t.service,
                    t.replicas,
                    t.secret_digest,
                    t.created_ms,
                    t.calls,
                    t.last_ms
                ],
            )
            .map_err(sql("saving a trigger"))?;
            Ok(())
        })
    }

    pub fn trigger(&self, id: &str) -> Result<Option<TriggerRow>, StoreError> {
        self.read(|c| {
            c.query_row(
                &format!("SELECT {COLUMNS} FROM triggers WHERE id = ?1"),
                params![id],
                row,
            )
            .optional()
            .map_err(sql("reading a trigger"))
        })
    }

    /// Every trigger, or an app's.
    pub fn triggers(&self, app: Option<&str>) -> Result<Vec<TriggerRow>, StoreError> {
        self.read(|c| {
            let mut q = c
                .prepare(&format!(
                    "SELECT {COLUMNS} FROM triggers WHERE ?1 IS NULL OR app = ?1 ORDER BY app, created_ms"
                ))
                .map_err(sql("listing triggers"))?;
            q.query_map(params![app], row)
                .map_err(sql("listing triggers"))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(sql("listing triggers"))
        })
    }

    pub fn remove_trigger(&self, id: &str) -> Result<bool, StoreError> {
        self.write_acked_unlisted(|c| {
            Ok(c.execute("DELETE FROM triggers WHERE id = ?1", params![id])
                .map_err(sql("removing a trigger"))?
                > 0)
        })
    }

    /// Counts an accepted call.
    pub fn trigger_called(&self, id: &str, now_ms: i64) -> Result<(), StoreError> {
        self.write_unlisted(|c| {
            c.execute(
                "UPDATE triggers SET calls = calls + 1, last_ms = ?2 WHERE id = ?1",
                params![id, now_ms],
            )
            .map_err(sql("counting a trigger call"))?;
            Ok(())
        })
    }
}
