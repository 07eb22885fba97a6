//! Access tokens (`berth access create NAME --role R`): a name, a role and the token's
//! SHA-256 (the token itself is shown once and never stored).

use super::{Store, StoreError, sql};
use rusqlite::{OptionalExtension, params};

#[derive(Debug, Clone, PartialEq)]
pub struct AccessRow {
    pub name: String,
    /// `viewer`, `operator` or `admin`.
    pub role: String,
    pub digest: Vec<u8>,
    pub created_ms: i64,
}

impl Store {
    /// Adds a token; false when the name is taken.
    pub fn put_access(&self, a: &AccessRow) -> Result<bool, StoreError> {
        self.write_acked_unlisted(|c| {
            Ok(c
                .execute(
                    "INSERT OR IGNORE INTO access_tokens(name, role, digest, created_ms) VALUES (?1, ?2, ?3, ?4)",
                    params![a.name, a.role, a.digest, a.created_ms],
                )
                .map_err(sql("saving an access token"))?
                > 0)
        })
    }

    /// The token whose SHA-256 is `digest`: (name, role).
    pub fn access_by_digest(&self, digest: &[u8]) -> Result<Option<(String, String)>, StoreError> {
        self.read(|c| {
            c.query_row(
                "SELECT name, role FROM access_tokens WHERE digest = ?1",
                params![digest],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(sql("reading an access token"))
        })
    }

    /// Every token: name, role, created (never the digest).
    pub fn access_list(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        self.read(|c| {
            let mut q = c
                .prepare("SELECT name, role, created_ms FROM access_tokens ORDER BY name")
                .map_err(sql("listing access tokens"))?;
            q.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .map_err(sql("listing access tokens"))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(sql("listing access tokens"))
        })
    }

    pub fn remove_access(&self, name: &str) -> Result<bool, StoreError> {
        self.write_acked_unlisted(|c| {
            Ok(
                c.execute("DELETE FROM access_tokens WHERE name = ?1", params![name])
                    .map_err(sql("removing an access token"))?
                    > 0,
            )
        })
    }
}
