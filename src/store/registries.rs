//! Private registry credentials (`berth registry login`): the password sealed by
//! `volumes::secret` (bound to `registry:HOST`), never stored in clear.

use super::{Store, StoreError, sql};
use rusqlite::{OptionalExtension, params};

/// One registry login. `sealed` is the password, encrypted.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistryRow {
    pub host: String,
    pub username: String,
    pub sealed: Vec<u8>,
    pub created_ms: i64,
}

impl Store {
    /// Adds or replaces the login for a registry host.
    pub fn put_registry(&self, r: &RegistryRow) -> Result<(), StoreError> {
        self.write_acked_unlisted(|c| {
            c.execute(
                "INSERT INTO registries(host, username, sealed, created_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(host) DO UPDATE SET username = excluded.username,
                    sealed = excluded.sealed, created_ms = excluded.created_ms",
                params![r.host, r.username, r.sealed, r.created_ms],
            )
            .map_err(sql("saving a registry login"))?;
            Ok(())
        })
    }

    pub fn registry(&self, host: &str) -> Result<Option<RegistryRow>, StoreError> {
        self.read(|c| {
            c.query_row(
                "SELECT host, username, sealed, created_ms FROM registries WHERE host = ?1",
                params![host],
                |r| {
                    Ok(RegistryRow {
                        host: r.get(0)?,
                        username: r.get(1)?,
                        sealed: r.get(2)?,
                        created_ms: r.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(sql("reading a registry login"))
        })
    }

    /// Every login: host, user name and when it was made (no secrets).
    pub fn registries(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        self.read(|c| {
            let mut q = c
                .prepare("SELECT host, username, created_ms FROM registries ORDER BY host")
                .map_err(sql("listing registry logins"))?;
            q.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .map_err(sql("listing registry logins"))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(sql("listing registry logins"))
        })
    }

    /// Forgets a login; false when there was none for that host.
    pub fn remove_registry(&self, host: &str) -> Result<bool, StoreError> {
        self.write_acked_unlisted(|c| {
            Ok(
                c.execute("DELETE FROM registries WHERE host = ?1", params![host])
                    .map_err(sql("removing a registry login"))?
                    > 0,
            )
        })
    }
}
