//! Volume definitions: driver, options (credentials only sealed), who declared them.

use super::{Store, StoreError, sql};
use rusqlite::{OptionalExtension, Row, params};

/// One stored volume. `opts` is the JSON of the options that are not credentials; `sealed`
/// holds the credentials, encrypted by `volumes::secret` (empty when there are none).
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeRow {
    pub name: String,
    pub driver: String,
    pub opts: String,
    pub sealed: Vec<u8>,
    /// The app whose template declared it (empty when made with `berth volume create`).
    pub app: String,
    pub created_ms: i64,
}

fn row(r: &Row<'_>) -> rusqlite::Result<VolumeRow> {
    Ok(VolumeRow {
        name: r.get(0)?,
        driver: r.get(1)?,
        opts: r.get(2)?,
        sealed: r.get(3)?,
        app: r.get(4)?,
        created_ms: r.get(5)?,
    })
}

const COLUMNS: &str = "name, driver, opts, sealed, app, created_ms";

impl Store {
    /// Adds a volume or replaces its driver and options (its creation time stays).
    pub fn put_volume(&self, v: &VolumeRow) -> Result<(), StoreError> {
        self.write_acked(|c| {
            c.execute(
                "INSERT INTO volumes(name, driver, opts, sealed, app, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(name) DO UPDATE SET driver = excluded.driver,
                    opts = excluded.opts, sealed = excluded.sealed",
                params![v.name, v.driver, v.opts, v.sealed, v.app, v.created_ms],
            )
            .map_err(sql("saving a volume"))?;
            Ok(())
        })
    }

    pub fn volume(&self, name: &str) -> Result<Option<VolumeRow>, StoreError> {
        self.read(|c| {
            c.query_row(
                &format!("SELECT {COLUMNS} FROM volumes WHERE name = ?1"),
                params![name],
                row,
            )
            .optional()
            .map_err(sql("reading a volume"))
        })
    }

    pub fn volumes(&self) -> Result<Vec<VolumeRow>, StoreError> {
        self.read(|c| {
            let mut q = c
                .prepare(&format!("SELECT {COLUMNS} FROM volumes ORDER BY name"))
                .map_err(sql("listing volumes"))?;
            q.query_map([], row)
                .map_err(sql("listing volumes"))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(sql("listing volumes"))
        })
    }

    /// Forgets a volume; false when there was none of that name.
    pub fn remove_volume(&self, name: &str) -> Result<bool, StoreError> {
        self.write_acked(|c| {
            Ok(
                c.execute("DELETE FROM volumes WHERE name = ?1", params![name])
                    .map_err(sql("removing a volume"))?
                    > 0,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_are_kept_replaced_and_removed() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = Store::open(&dir.path().join("s.db")).expect("open");
        let mut v = VolumeRow {
            name: "data".into(),
            driver: "oss".into(),
            opts: "{\"bucket\":\"b\"}".into(),
            sealed: vec![1, 2, 3],
            app: "shop".into(),
            created_ms: 5,
        };
        s.put_volume(&v).expect("put");
        v.opts = "{}".into();
        v.created_ms = 9;
        s.put_volume(&v).expect("replace");
        let got = s.volume("data").expect("read").expect("there");
        assert_eq!(got.opts, "{}");
        assert_eq!(got.created_ms, 5, "creation time stays");
        assert_eq!(s.volumes().expect("list").len(), 1);
        assert!(s.remove_volume("data").expect("rm"));
        assert!(!s.remove_volume("data").expect("rm again"));
        assert!(s.volume("data").expect("read").is_none());
    }
}
