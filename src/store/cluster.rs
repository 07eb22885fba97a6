//! What the cluster keeps on this member: how often each join token was used here, and the
//! members last known (whom to rejoin through after a restart), and where this node's apps'
//! instances run (placement's assignments).

use super::{Store, StoreError, sql};
use rusqlite::{OptionalExtension, params};

/// A member as last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRow {
    pub node: String,
    pub name: String,
    pub addr: String,
    pub state: String,
    pub seen_ms: i64,
}

impl Store {
    /// How many joins token `id` has let in through this member.
    pub fn token_uses(&self, id: &str) -> Result<u32, StoreError> {
        self.read(|c| {
            c.query_row(
                "SELECT used FROM cluster_tokens WHERE id = ?1",
                params![id],
                |r| r.get::<_, u32>(0),
            )
            .optional()
            .map(|n| n.unwrap_or(0))
            .map_err(sql("reading a join token's uses"))
        })
    }

    /// The tokens that let hosts in through this member, with their counts (the latest 100),
    /// for its node record: the other members add them up.
    pub fn token_counts(&self) -> Result<std::collections::BTreeMap<String, u32>, StoreError> {
        self.read(|c| {
            let mut st = c
                .prepare("SELECT id, used FROM cluster_tokens ORDER BY rowid DESC LIMIT 100")
                .map_err(sql("reading join token uses"))?;
            let rows = st
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?)))
                .map_err(sql("reading join token uses"))?;
            rows.collect::<Result<_, _>>()
                .map_err(sql("reading join token uses"))
        })
    }

    /// Counts one use of token `id` if it has fewer than `max`; false when used up. One
    /// statement, so two joins at once cannot both take the last use.
    pub fn use_token(&self, id: &str, max: u32) -> Result<bool, StoreError> {
        self.write_acked(|c| {
            c.execute(
                "INSERT INTO cluster_tokens(id, used) VALUES (?1, 1)
                 ON CONFLICT(id) DO UPDATE SET used = used + 1 WHERE used < ?2",
                params![id, max],
            )
            .map(|changed| changed == 1 && max > 0)
            .map_err(sql("counting a join token's use"))
        })
    }

    pub fn cluster_members(&self) -> Result<Vec<MemberRow>, StoreError> {
        self.read(|c| {
            let mut st = c
                .prepare(
                    "SELECT node, name, addr, state, seen_ms FROM cluster_members ORDER BY name",
                )
                .map_err(sql("reading cluster members"))?;
            let rows = st
                .query_map([], |r| {
                    Ok(MemberRow {
                        node: r.get(0)?,
                        name: r.get(1)?,
                        addr: r.get(2)?,
                        state: r.get(3)?,
                        seen_ms: r.get(4)?,
                    })
                })
                .map_err(sql("reading cluster members"))?;
            rows.collect::<Result<_, _>>()
                .map_err(sql("reading cluster members"))
        })
    }

    /// Replaces the members known with `rows`.
    pub fn set_cluster_members(&self, rows: &[MemberRow]) -> Result<(), StoreError> {
        self.write_unlisted(|c| {
            let tx = c.transaction().map_err(sql("saving cluster members"))?;
            tx.execute("DELETE FROM cluster_members", [])
                .map_err(sql("saving cluster members"))?;
            for m in rows {
                tx.execute(
                    "INSERT INTO cluster_members(node, name, addr, state, seen_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![m.node, m.name, m.addr, m.state, m.seen_ms],
                )
                .map_err(sql("saving cluster members"))?;
            }
            tx.commit().map_err(sql("saving cluster members"))
        })
    }

    /// Drops one member from the members known (`berth node rm`).
    pub fn forget_member(&self, node: &str) -> Result<(), StoreError> {
        self.write_acked(|c| {
            c.execute("DELETE FROM cluster_members WHERE node = ?1", params![node])
                .map(|_| ())
                .map_err(sql("forgetting a cluster member"))
        })
    }

    /// The other members' records as last saved: (node, epoch, version, records as JSON).
    pub fn cluster_replicas(&self) -> Result<Vec<(String, u64, u64, String)>, StoreError> {
        self.read(|c| {
            let mut st = c
                .prepare("SELECT node, epoch, version, records FROM cluster_replicas")
                .map_err(sql("reading the members' records"))?;
            let rows = st
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)? as u64,
                        r.get::<_, i64>(2)? as u64,
                        r.get::<_, String>(3)?,
                    ))
                })
                .map_err(sql("reading the members' records"))?;
            rows.collect::<Result<_, _>>()
                .map_err(sql("reading the members' records"))
        })
    }

    /// Saves one member's records as this host holds them.
    pub fn put_cluster_replica(
        &self,
        node: &str,
        epoch: u64,
        version: u64,
        records: &str,
    ) -> Result<(), StoreError> {
        self.write_unlisted(|c| {
            c.execute(
                "INSERT INTO cluster_replicas(node, epoch, version, records) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(node) DO UPDATE SET epoch = excluded.epoch,
                    version = excluded.version, records = excluded.records",
                params![node, epoch as i64, version as i64, records],
            )
            .map(|_| ())
            .map_err(sql("saving a member's records"))
        })
    }

    /// This node's labels and drain flag (empty and undrained until set).
    pub fn node_settings(&self) -> Result<crate::model::NodeSettings, StoreError> {
        let text: Option<String> = self.read(|c| {
            c.query_row(
                "SELECT value FROM meta WHERE key = 'node_settings'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql("reading the node's settings"))
        })?;
        Ok(text
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default())
    }

    pub fn set_node_settings(&self, s: &crate::model::NodeSettings) -> Result<(), StoreError> {
        let text = serde_json::to_string(s).unwrap_or_default();
        self.write_acked(|c| {
            c.execute(
                "INSERT INTO meta(key, value) VALUES ('node_settings', ?1)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![text],
            )
            .map(|_| ())
            .map_err(sql("saving the node's settings"))
        })
    }

    /// Forgets the cluster's records (after `berth cluster leave`).
    pub fn clear_cluster(&self) -> Result<(), StoreError> {
        self.write_acked(|c| {
            // Alone again, this host runs every instance of its apps.
            c.execute_batch(
                "DELETE FROM cluster_members; DELETE FROM cluster_tokens; DELETE FROM assignments;
                 DELETE FROM cluster_replicas;",
            )
            .map_err(sql("forgetting the cluster"))
        })
    }
}

impl Store {
    /// Every assignment of this node's apps, in order.
    pub fn assignments(&self) -> Result<Vec<crate::model::Assignment>, StoreError> {
        self.read(|c| {
            let mut st = c
                .prepare(
                    "SELECT app, service, version, slot, node, from_node FROM assignments
                     ORDER BY app, service, version, slot",
                )
                .map_err(sql("reading assignments"))?;
            let rows = st
                .query_map([], |r| {
                    Ok(crate::model::Assignment {
                        app: r.get(0)?,
                        service: r.get(1)?,
                        version: r.get(2)?,
                        slot: r.get(3)?,
                        node: r.get(4)?,
                        from: r.get(5)?,
                    })
                })
                .map_err(sql("reading assignments"))?;
            rows.collect::<Result<_, _>>()
                .map_err(sql("reading assignments"))
        })
    }

    /// Replaces the assignments of app `app` with `list`, in one transaction.
    pub fn set_assignments(
        &self,
        app: &str,
        list: &[crate::model::Assignment],
    ) -> Result<(), StoreError> {
        let app = app.to_string();
        let list = list.to_vec();
        self.write_acked(move |c| {
            let tx = c.transaction().map_err(sql("saving assignments"))?;
            tx.execute("DELETE FROM assignments WHERE app = ?1", params![app])
                .map_err(sql("saving assignments"))?;
            insert_assignments(&tx, &app, &list)?;
            tx.commit().map_err(sql("saving assignments"))
        })
    }
}

/// Inserts the assignments of `app` in `list` (the caller cleared the app's first).
pub(super) fn insert_assignments(
    tx: &rusqlite::Transaction<'_>,
    app: &str,
    list: &[crate::model::Assignment],
) -> Result<(), StoreError> {
    for a in list.iter().filter(|a| a.app == app) {
        tx.execute(
            "INSERT OR REPLACE INTO assignments(app, service, version, slot, node, from_node)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![a.app, a.service, a.version, a.slot, a.node, a.from],
        )
        .map_err(sql("saving assignments"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_used_at_most_its_count_and_members_round_trip() {
        let dir = tempfile::tempdir().expect("dir");
        let s = Store::open(&dir.path().join("s.db")).expect("open");
        assert_eq!(s.token_uses("t").unwrap(), 0);
        assert!(s.use_token("t", 2).unwrap());
        assert!(s.use_token("t", 2).unwrap());
        assert!(!s.use_token("t", 2).unwrap(), "used up");
        assert_eq!(s.token_uses("t").unwrap(), 2);
        assert!(!s.use_token("z", 0).unwrap());
        let m = MemberRow {
            node: "n1".into(),
            name: "host1".into(),
            addr: "10.0.0.1:7946".into(),
            state: "alive".into(),
            seen_ms: 5,
        };
        s.set_cluster_members(std::slice::from_ref(&m)).unwrap();
        assert_eq!(s.cluster_members().unwrap(), vec![m.clone()]);
        s.forget_member("n1").unwrap();
        assert!(s.cluster_members().unwrap().is_empty());
        s.set_cluster_members(std::slice::from_ref(&m)).unwrap();
        s.put_cluster_replica("n1", 7, 3, "[]").unwrap();
        s.put_cluster_replica("n1", 7, 4, "[1]").unwrap();
        assert_eq!(
            s.cluster_replicas().unwrap(),
            vec![("n1".to_string(), 7, 4, "[1]".to_string())]
        );
        s.clear_cluster().unwrap();
        assert!(s.cluster_members().unwrap().is_empty());
        assert!(s.cluster_replicas().unwrap().is_empty());
        assert_eq!(s.token_uses("t").unwrap(), 0);
    }

    #[test]
    fn assignments_are_replaced_per_app_and_go_with_the_app() {
        let dir = tempfile::tempdir().expect("dir");
        let s = Store::open(&dir.path().join("s.db")).expect("open");
        let a = |app: &str, slot: u32, node: &str| crate::model::Assignment {
            app: app.into(),
            service: "web".into(),
            version: 1,
            slot,
            node: node.into(),
            from: String::new(),
        };
        s.set_assignments("shop", &[a("shop", 2, "n2"), a("shop", 1, "n1")])
            .unwrap();
        s.set_assignments("blog", &[a("blog", 1, "n3")]).unwrap();
        s.set_assignments("shop", &[a("shop", 1, "n1"), a("shop", 2, "n3")])
            .unwrap();
        assert_eq!(
            s.assignments().unwrap(),
            vec![a("blog", 1, "n3"), a("shop", 1, "n1"), a("shop", 2, "n3")]
        );
        s.delete_app("shop").unwrap();
        assert_eq!(s.assignments().unwrap(), vec![a("blog", 1, "n3")]);
    }
}
