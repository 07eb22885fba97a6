//! Replicated state, pure. Each host owns versioned records (its node, its apps, its
//! instances); a change gets the owner's next version, a record gone becomes a tombstone.
//! Peers learn an owner's (epoch, version) from the gossip and pull what they lack as a
//! [`Delta`]. A new epoch (the owner restarted, with or without its state file) or a request
//! older than the tombstones still kept is answered with the whole set.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Node,
    App,
    Instance,
    Event,
    /// An app as its owner stores it, with its assignments (protocol 3): what a member that
    /// placement gave slots of it runs them from.
    Spec,
    /// A config set as the member that holds it keeps it (its items, secret ones in clear:
    /// records travel and rest sealed).
    ConfigSet,
    /// A kind a newer member publishes that this build does not know: ignored.
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub kind: Kind,
    pub key: String,
    pub version: u64,
    /// `None`: deleted (a tombstone).
    pub body: Option<serde_json::Value>,
    /// When the owner made this version (ms since the epoch); tombstones are collected by it.
    pub at_ms: i64,
}

/// What a peer sends: its records after `since`, or all of them (`full`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    pub epoch: u64,
    pub version: u64,
    pub full: bool,
    pub records: Vec<Record>,
}

/// How long a tombstone is kept before it is collected.
pub const TOMBSTONE_GRACE_MS: i64 = 10 * 60 * 1000;

/// This host's own records.
#[derive(Debug, Clone)]
pub struct Own {
    pub epoch: u64,
    pub version: u64,
    records: BTreeMap<(Kind, String), Record>,
    /// The newest version of a tombstone collected: a peer behind it gets the whole set.
    collected: u64,
}

impl Own {
    pub fn new(epoch: u64) -> Own {
        Own {
            epoch,
            version: 0,
            records: BTreeMap::new(),
            collected: 0,
        }
    }

    /// Brings the records in line with `now`, the whole current set of `kinds`: new or
    /// changed bodies get the next version, records of those kinds that are gone become
    /// tombstones. True when anything changed.
    pub fn update(
        &mut self,
        kinds: &[Kind],
        now: Vec<(Kind, String, serde_json::Value)>,
        now_ms: i64,
    ) -> bool {
        let mut changed = false;
        let mut present = std::collections::BTreeSet::new();
        for (kind, key, body) in now {
            present.insert((kind, key.clone()));
            let same = self
                .records
                .get(&(kind, key.clone()))
                .is_some_and(|r| r.body.as_ref() == Some(&body));
            if !same {
                self.version += 1;
                self.records.insert(
                    (kind, key.clone()),
                    Record {
                        kind,
                        key,
                        version: self.version,
                        body: Some(body),
                        at_ms: now_ms,
                    },
                );
                changed = true;
            }
        }
        for ((kind, key), r) in self.records.iter_mut() {
            if kinds.contains(kind) && r.body.is_some() && !present.contains(&(*kind, key.clone()))
            {
                self.version += 1;
                r.version = self.version;
                r.body = None;
                r.at_ms = now_ms;
                changed = true;
            }
        }
        // Collect old tombstones.
        let mut collected = self.collected;
        self.records.retain(|_, r| {
            let keep = r.body.is_some() || now_ms - r.at_ms < TOMBSTONE_GRACE_MS;
            if !keep {
                collected = collected.max(r.version);
            }
            keep
        });
        self.collected = collected;
        changed
    }

    /// What a peer that holds (`epoch`, `since`) lacks.
    pub fn delta(&self, epoch: u64, since: u64) -> Delta {
        let full = epoch != self.epoch || since < self.collected || since > self.version;
        Delta {
            epoch: self.epoch,
            version: self.version,
            full,
            records: self
                .records
                .values()
                .filter(|r| {
                    if full {
                        r.body.is_some()
                    } else {
                        r.version > since
                    }
                })
                .cloned()
                .collect(),
        }
    }

    pub fn live(&self) -> impl Iterator<Item = &Record> {
        self.records.values().filter(|r| r.body.is_some())
    }
}

/// Another host's records as this one holds them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Replica {
    pub epoch: u64,
    pub version: u64,
    pub records: BTreeMap<(Kind, String), Record>,
}

impl Replica {
    /// Whether the owner's (`epoch`, `version`) is news: then the (epoch, since) to ask for.
    pub fn wants(&self, epoch: u64, version: u64) -> Option<(u64, u64)> {
        if epoch != self.epoch {
            Some((self.epoch, 0))
        } else if version > self.version {
            Some((self.epoch, self.version))
        } else {
            None
        }
    }

    /// Applies a delta; false when it is older than what is held (it changes nothing).
    pub fn apply(&mut self, d: Delta) -> bool {
        if d.full {
            if d.epoch == self.epoch && d.version < self.version {
                return false;
            }
            self.records = d
                .records
                .into_iter()
                .filter(|r| r.body.is_some())
                .map(|r| ((r.kind, r.key.clone()), r))
                .collect();
        } else {
            if d.epoch != self.epoch || d.version < self.version {
                return false;
            }
            for r in d.records {
                let k = (r.kind, r.key.clone());
                if self
                    .records
                    .get(&k)
                    .is_some_and(|cur| cur.version >= r.version)
                {
                    continue;
                }
                if r.body.is_some() {
                    self.records.insert(k, r);
                } else {
                    self.records.remove(&k);
                }
            }
        }
        self.epoch = d.epoch;
        self.version = d.version;
        true
    }

    pub fn of(&self, kind: Kind) -> impl Iterator<Item = &Record> {
        self.records.values().filter(move |r| r.kind == kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(items: &[(&str, i64)]) -> Vec<(Kind, String, serde_json::Value)> {
        items
            .iter()
            .map(|(k, v)| (Kind::App, k.to_string(), json!({ "n": v })))
            .collect()
    }

    #[test]
    fn records_of_a_kind_this_build_does_not_know_are_read_as_unknown() {
        let r: Record = serde_json::from_value(json!({
            "kind": "assignment", "key": "a/web/1", "version": 3, "body": {"node": "x"}, "at_ms": 1
        }))
        .unwrap();
        assert_eq!(r.kind, Kind::Unknown);
        assert!(crate::cluster::compatible(1, 2) && crate::cluster::compatible(3, 2));
        assert!(!crate::cluster::compatible(4, 2));
    }

    #[test]
    fn a_replica_follows_changes_deletes_and_a_restart() {
        let mut own = Own::new(100);
        let mut rep = Replica::default();
        assert!(own.update(&[Kind::App], set(&[("a", 1), ("b", 1)]), 0));
        assert!(
            !own.update(&[Kind::App], set(&[("a", 1), ("b", 1)]), 1),
            "no change, no version"
        );
        let (e, since) = rep.wants(own.epoch, own.version).unwrap();
        assert!(rep.apply(own.delta(e, since)));
        assert_eq!(rep.records.len(), 2);
        assert!(rep.wants(own.epoch, own.version).is_none());
        // a changes, b goes: only those two travel.
        own.update(&[Kind::App], set(&[("a", 2)]), 2);
        let (e, since) = rep.wants(own.epoch, own.version).unwrap();
        let d = own.delta(e, since);
        assert!(!d.full);
        assert_eq!(d.records.len(), 2);
        rep.apply(d.clone());
        assert_eq!(rep.records.len(), 1);
        assert_eq!(
            rep.records[&(Kind::App, "a".into())].body,
            Some(json!({"n": 2}))
        );
        // A stale delta changes nothing.
        let mut older = d;
        older.version -= 1;
        assert!(!rep.apply(older));
        // Another kind's update leaves apps alone.
        own.update(
            &[Kind::Instance],
            vec![(Kind::Instance, "i".into(), json!(1))],
            3,
        );
        assert!(own.live().any(|r| r.key == "a"));
        // The owner restarts: a new epoch, everything again, old keys gone.
        let mut again = Own::new(200);
        again.update(&[Kind::App], set(&[("c", 1)]), 4);
        let (e, since) = rep.wants(again.epoch, again.version).unwrap();
        let d = again.delta(e, since);
        assert!(d.full);
        rep.apply(d);
        assert_eq!(
            rep.records.keys().map(|k| k.1.as_str()).collect::<Vec<_>>(),
            vec!["c"]
        );
    }

    #[test]
    fn a_peer_behind_collected_tombstones_gets_the_whole_set() {
        let mut own = Own::new(1);
        own.update(&[Kind::App], set(&[("a", 1), ("b", 1)]), 0);
        let mut rep = Replica::default();
        rep.apply(own.delta(0, 0));
        own.update(&[Kind::App], set(&[("a", 1)]), 10);
        // Long after: the tombstone of b is collected.
        own.update(&[Kind::App], set(&[("a", 1)]), 10 + TOMBSTONE_GRACE_MS);
        let (e, since) = rep.wants(own.epoch, own.version).unwrap();
        let d = own.delta(e, since);
        assert!(
            d.full,
            "b's tombstone is gone, so only the whole set is right"
        );
        rep.apply(d);
        assert_eq!(rep.records.len(), 1);
    }
}
