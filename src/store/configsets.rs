//! Config sets (`berth configset`): named sets of variables a deploy draws on, their secret
//! items sealed by `volumes::secret` (bound to `configset:SET/KEY`); and what each app was
//! deployed with (its inputs, sealed, and the set revision it saw), so a redeploy can parse
//! its template again with a set's new values.

use super::{Store, StoreError, sql};
use rusqlite::{OptionalExtension, params};

/// One item of a set. `value` is the plain value, or the sealed one when `secret`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigItemRow {
    pub key: String,
    pub value: Vec<u8>,
    pub secret: bool,
}

/// A set with its items (by key).
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigSetRow {
    pub name: String,
    pub description: String,
    /// Bumped by every change of an item.
    pub rev: i64,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub items: Vec<ConfigItemRow>,
}

/// What an app's last deploy drew on: its bound set (empty: none), the set's revision then,
/// and its inputs (a sealed JSON `DeployRequest` without the set's values).
#[derive(Debug, Clone, PartialEq)]
pub struct AppInputsRow {
    pub app: String,
    pub config_set: String,
    pub set_rev: i64,
    pub sealed: Vec<u8>,
}

impl Store {
    /// Writes a whole set (a new one, or its new items after a change); `rev` is bumped when
    /// it existed. Fails with `Refused` when `create` and the name is taken.
    pub fn put_config_set(&self, s: &ConfigSetRow, create: bool) -> Result<i64, StoreError> {
        self.write_acked_unlisted(|c| {
            let tx = c.transaction().map_err(sql("saving a config set"))?;
            let rev: Option<i64> = tx
                .query_row(
                    "SELECT rev FROM config_sets WHERE name = ?1",
                    params![s.name],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql("reading a config set"))?;
            if create && rev.is_some() {
                return Err(StoreError::Conflict(format!(
                    "config set {} exists: change it with `berth configset set {} K=V`, or choose another name",
                    s.name, s.name
                )));
            }
            let rev = rev.map_or(1, |r| r + 1);
            tx.execute(
                "INSERT INTO config_sets(name, description, rev, created_ms, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(name) DO UPDATE SET description = excluded.description,
                    rev = excluded.rev, updated_ms = excluded.updated_ms",
                params![s.name, s.description, rev, s.created_ms, s.updated_ms],
            )
            .map_err(sql("saving a config set"))?;
            tx.execute(
                "DELETE FROM config_items WHERE set_name = ?1",
                params![s.name],
            )
            .map_err(sql("saving a config set's items"))?;
            for i in &s.items {
                tx.execute(
                    "INSERT INTO config_items(set_name, key, value, secret) VALUES (?1, ?2, ?3, ?4)",
                    params![s.name, i.key, i.value, i.secret],
                )
                .map_err(sql("saving a config set's items"))?;
            }
            tx.commit().map_err(sql("saving a config set"))?;
            Ok(rev)
        })
    }

    pub fn config_set(&self, name: &str) -> Result<Option<ConfigSetRow>, StoreError> {
        self.read(|c| {
            let head = c
                .query_row(
                    "SELECT name, description, rev, created_ms, updated_ms FROM config_sets WHERE name = ?1",
                    params![name],
                    |r| {
                        Ok(ConfigSetRow {
                            name: r.get(0)?,
                            description: r.get(1)?,
                            rev: r.get(2)?,
                            created_ms: r.get(3)?,
                            updated_ms: r.get(4)?,
                            items: Vec::new(),
                        })
                    },
                )
                .optional()
                .map_err(sql("reading a config set"))?;
            let Some(mut s) = head else { return Ok(None) };
            let mut q = c
                .prepare("SELECT key, value, secret FROM config_items WHERE set_name = ?1 ORDER BY key")
                .map_err(sql("reading a config set's items"))?;
            s.items = q
                .query_map(params![name], |r| {
                    Ok(ConfigItemRow {
                        key: r.get(0)?,
                        value: r.get(1)?,
                        secret: r.get(2)?,
                    })
                })
                .map_err(sql("reading a config set's items"))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(sql("reading a config set's items"))?;
            Ok(Some(s))
        })
    }

    /// Every set's name.
    pub fn config_set_names(&self) -> Result<Vec<String>, StoreError> {
        self.read(|c| {
            let mut q = c
                .prepare("SELECT name FROM config_sets ORDER BY name")
                .map_err(sql("listing config sets"))?;
            q.query_map([], |r| r.get(0))
                .map_err(sql("listing config sets"))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(sql("listing config sets"))
        })
    }

    /// Removes a set; refused (naming them) while apps are bound to it.
    pub fn remove_config_set(&self, name: &str) -> Result<bool, StoreError> {
        self.write_acked_unlisted(|c| {
            let tx = c.transaction().map_err(sql("removing a config set"))?;
            let mut q = tx
                .prepare("SELECT app FROM app_inputs WHERE config_set = ?1 ORDER BY app")
                .map_err(sql("reading the apps bound to a config set"))?;
            let bound = q
                .query_map(params![name], |r| r.get::<_, String>(0))
                .map_err(sql("reading the apps bound to a config set"))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(sql("reading the apps bound to a config set"))?;
            drop(q);
            if !bound.is_empty() {
                return Err(StoreError::Conflict(format!(
                    "config set {name} is bound to {}: deploy them without --config-set {name} (or remove them) first",
                    bound.join(", ")
                )));
            }
            let n = tx
                .execute("DELETE FROM config_sets WHERE name = ?1", params![name])
                .map_err(sql("removing a config set"))?;
            tx.commit().map_err(sql("removing a config set"))?;
            Ok(n > 0)
        })
    }

    /// Records what an app was deployed with (replacing what it had).
    pub fn put_app_inputs(&self, r: &AppInputsRow) -> Result<(), StoreError> {
        self.write_acked_unlisted(|c| {
            c.execute(
                "INSERT INTO app_inputs(app, config_set, set_rev, sealed) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(app) DO UPDATE SET config_set = excluded.config_set,
                    set_rev = excluded.set_rev, sealed = excluded.sealed",
                params![r.app, r.config_set, r.set_rev, r.sealed],
            )
            .map_err(sql("saving an app's deploy inputs"))?;
            Ok(())
        })
    }

    pub fn app_inputs(&self, app: &str) -> Result<Option<AppInputsRow>, StoreError> {
        self.read(|c| {
            c.query_row(
                "SELECT app, config_set, set_rev, sealed FROM app_inputs WHERE app = ?1",
                params![app],
                |r| {
                    Ok(AppInputsRow {
                        app: r.get(0)?,
                        config_set: r.get(1)?,
                        set_rev: r.get(2)?,
                        sealed: r.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(sql("reading an app's deploy inputs"))
        })
    }

    /// Apps bound to a set, with the set revision each was deployed with (every app bound to
    /// any set when `set` is empty): (app, set, rev).
    pub fn bound_apps(&self, set: &str) -> Result<Vec<(String, String, i64)>, StoreError> {
        self.read(|c| {
            let mut q = c
                .prepare(
                    "SELECT app, config_set, set_rev FROM app_inputs
                     WHERE config_set != '' AND (?1 = '' OR config_set = ?1) ORDER BY app",
                )
                .map_err(sql("reading the apps bound to config sets"))?;
            q.query_map(params![set], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .map_err(sql("reading the apps bound to config sets"))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(sql("reading the apps bound to config sets"))
        })
    }

    /// Each set's revision, by name.
    pub fn config_set_revs(&self) -> Result<std::collections::BTreeMap<String, i64>, StoreError> {
        self.read(|c| {
            let mut q = c
                .prepare("SELECT name, rev FROM config_sets")
                .map_err(sql("listing config sets"))?;
            q.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(sql("listing config sets"))?
                .collect::<Result<_, _>>()
                .map_err(sql("listing config sets"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(name: &str, items: &[(&str, &str)]) -> ConfigSetRow {
        ConfigSetRow {
            name: name.into(),
            description: String::new(),
            rev: 0,
            created_ms: 1,
            updated_ms: 1,
            items: items
                .iter()
                .map(|(k, v)| ConfigItemRow {
                    key: k.to_string(),
                    value: v.as_bytes().to_vec(),
                    secret: false,
                })
                .collect(),
        }
    }

    #[test]
    fn sets_bump_their_revision_and_refuse_removal_while_bound() {
        let d = tempfile::tempdir().expect("tmp");
        let s = Store::open(&d.path().join("s.db")).expect("open");
        assert_eq!(
            s.put_config_set(&set("prod", &[("A", "1")]), true).unwrap(),
            1
        );
        assert!(matches!(
            s.put_config_set(&set("prod", &[]), true),
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(
            s.put_config_set(&set("prod", &[("A", "2"), ("B", "x")]), false)
                .unwrap(),
            2
        );
        let got = s.config_set("prod").unwrap().unwrap();
        assert_eq!(got.rev, 2);
        assert_eq!(got.items.len(), 2);
        s.put_app_inputs(&AppInputsRow {
            app: "web".into(),
            config_set: "prod".into(),
            set_rev: 2,
            sealed: vec![1, 2],
        })
        .unwrap();
        assert_eq!(
            s.bound_apps("prod").unwrap(),
            vec![("web".to_string(), "prod".to_string(), 2)]
        );
        let e = s.remove_config_set("prod").unwrap_err().to_string();
        assert!(e.contains("bound to web"), "{e}");
        // Unbound (a deploy without the set): removable.
        s.put_app_inputs(&AppInputsRow {
            app: "web".into(),
            config_set: String::new(),
            set_rev: 0,
            sealed: vec![],
        })
        .unwrap();
        assert!(s.remove_config_set("prod").unwrap());
        assert!(s.config_set("prod").unwrap().is_none());
        assert!(!s.remove_config_set("prod").unwrap());
    }
}
