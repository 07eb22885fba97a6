//! The cluster's identity and keys: a cluster id and a keyring of 256-bit secrets, kept in the
//! data dir (`cluster.key`, mode 0600, replaced whole and atomically). Every key used on the
//! wire is derived from a secret by HKDF-SHA256 with the cluster id as salt and a label per
//! use, so the secret itself is never used directly and never sent in clear.
//!
//! Pure apart from [`Keyring::load`] and [`Keyring::save`].

use ring::hkdf;
use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// What a derived key is for (the HKDF `info`): one label per use, so a key of one use
/// can never open what another use sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Gossip packets (UDP).
    Gossip,
    /// Frames of the peer channel (TCP).
    Peer,
    /// Join tokens' signatures.
    Token,
    /// The bytes of a connection carried to another member (`tunnel`).
    Tunnel,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Purpose::Gossip => b"berth gossip v1",
            Purpose::Peer => b"berth peer v1",
            Purpose::Token => b"berth token v1",
            Purpose::Tunnel => b"berth tunnel v1",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the OS has no source of randomness for a cluster key")]
    Entropy,
    #[error("cannot read the cluster keys {path}: {detail}")]
    Read { path: String, detail: String },
    #[error("cannot write the cluster keys {path}: {detail}")]
    Write { path: String, detail: String },
}

/// One secret of the keyring.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClusterKey {
    /// Random, so that two clusters' keys are told apart without trying them.
    pub id: u32,
    #[serde(with = "hex_secret")]
    secret: [u8; 32],
    /// Made when (ms since the epoch).
    pub created_ms: i64,
}

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClusterKey({:08x}, <secret>)", self.id)
    }
}

mod hex_secret {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(k: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(k))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let bytes = hex::decode(text.trim()).map_err(serde::de::Error::custom)?;
        bytes
            .try_into()
            .map_err(|_| serde::de::Error::custom("a cluster secret is 32 bytes (64 hex digits)"))
    }
}

/// One step of a key rotation, sent by the rotating member to every other (sealed under the
/// cluster key on the peer channel: the new secret never travels in clear).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyUpdate {
    /// A new key to hold (it opens at once).
    #[serde(default)]
    pub add: Option<ClusterKey>,
    /// Seal with this key from now on (it must be held).
    #[serde(default)]
    pub seal: Option<u32>,
    /// Drop every key but the sealing one.
    #[serde(default)]
    pub retire_others: bool,
}

impl Keyring {
    /// Applies a rotation step; refused (nothing changed) when it names a key not held.
    pub fn apply(&mut self, u: &KeyUpdate) -> Result<(), String> {
        let mut next = self.clone();
        if let Some(k) = &u.add
            && next.key(k.id).is_none()
        {
            next.keys.push(k.clone());
        }
        if let Some(id) = u.seal
            && !next.seal_with(id)
        {
            return Err(format!("key {id:08x} is not held here: send it first"));
        }
        if u.retire_others {
            next.retire_others();
        }
        *self = next;
        Ok(())
    }
}

/// The cluster id and its keys: `sealing` seals what this host sends; every key listed opens.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq, Debug)]
pub struct Keyring {
    /// 32 hex digits, random.
    pub cluster: String,
    pub keys: Vec<ClusterKey>,
    pub sealing: u32,
}

/// 32 random bytes.
pub fn random_32() -> Result<[u8; 32], KeyError> {
    let mut k = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut k)
        .map_err(|_| KeyError::Entropy)?;
    Ok(k)
}

fn new_key(taken: &[ClusterKey], now_ms: i64) -> Result<ClusterKey, KeyError> {
    loop {
        let r = random_32()?;
        let id = u32::from_be_bytes([r[0], r[1], r[2], r[3]]);
        if id != 0 && !taken.iter().any(|k| k.id == id) {
            return Ok(ClusterKey {
                id,
                secret: random_32()?,
                created_ms: now_ms,
            });
        }
    }
}

impl Keyring {
    /// A new cluster: a random id and one key.
    pub fn create(now_ms: i64) -> Result<Keyring, KeyError> {
        let key = new_key(&[], now_ms)?;
        Ok(Keyring {
            cluster: hex::encode(&random_32()?[..16]),
            sealing: key.id,
            keys: vec![key],
        })
    }

    /// The cluster id as bytes (for associated data and salts).
    pub fn cluster_bytes(&self) -> &[u8] {
        self.cluster.as_bytes()
    }

    pub fn key(&self, id: u32) -> Option<&ClusterKey> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// The id of the key this host seals with (0, which no key has, if the ring is empty:
    /// nothing then opens what it seals).
    pub fn sealing_id(&self) -> u32 {
        self.key(self.sealing)
            .or(self.keys.last())
            .map_or(0, |k| k.id)
    }

    /// Whether the ring is usable: its sealing key is held and the cluster id is whole.
    pub fn valid(&self) -> bool {
        self.key(self.sealing).is_some() && self.cluster.len() == 32
    }

    /// The key `purpose` uses, derived from secret `id`.
    pub fn derive(&self, id: u32, purpose: Purpose) -> Option<[u8; 32]> {
        self.key(id)
            .map(|k| derive(&k.secret, self.cluster_bytes(), purpose.label()))
    }

    /// Adds a new secret (a rotation's first step); it opens at once, seals once chosen.
    pub fn add_key(&mut self, now_ms: i64) -> Result<u32, KeyError> {
        let k = new_key(&self.keys, now_ms)?;
        let id = k.id;
        self.keys.push(k);
        Ok(id)
    }

    /// Seals with `id` from now on (it must be held).
    pub fn seal_with(&mut self, id: u32) -> bool {
        if self.key(id).is_some() {
            self.sealing = id;
            true
        } else {
            false
        }
    }

    /// Drops every key but the sealing one (a rotation's last step).
    pub fn retire_others(&mut self) {
        let s = self.sealing;
        self.keys.retain(|k| k.id == s);
    }

    /// Reads `path`; `None` when this host is in no cluster.
    pub fn load(path: &Path) -> Result<Option<Keyring>, KeyError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(KeyError::Read {
                    path: path.display().to_string(),
                    detail: e.to_string(),
                });
            }
        };
        let ring: Keyring = serde_json::from_str(&text).map_err(|e| KeyError::Read {
            path: path.display().to_string(),
            detail: format!("{e}: restore it from a backup, or leave the cluster and join again"),
        })?;
        if !ring.valid() {
            return Err(KeyError::Read {
                path: path.display().to_string(),
                detail: "it has no sealing key or no cluster id: leave the cluster and join again"
                    .into(),
            });
        }
        Ok(Some(ring))
    }

    /// Writes the keyring to `path` (0600), replacing what was there in one rename.
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        let werr = |e: std::io::Error| KeyError::Write {
            path: path.display().to_string(),
            detail: e.to_string(),
        };
        let text = serde_json::to_vec_pretty(self).map_err(|e| werr(std::io::Error::other(e)))?;
        crate::atomic_file::replace(path, &text, 0o600).map_err(werr)
    }
}

/// HKDF-SHA256(secret, salt, info) -> 32 bytes.
pub fn derive(secret: &[u8], salt: &[u8], info: &[u8]) -> [u8; 32] {
    struct Len32;
    impl hkdf::KeyType for Len32 {
        fn len(&self) -> usize {
            32
        }
    }
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(secret);
    let mut out = [0u8; 32];
    // `expand` and `fill` fail only for lengths over 255 * 32 bytes.
    if let Ok(okm) = prk.expand(&[info], Len32) {
        let _ = okm.fill(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_keys_differ_by_purpose_key_and_cluster() {
        let mut r = Keyring::create(1).unwrap();
        let a = r.derive(r.sealing, Purpose::Gossip).unwrap();
        assert_ne!(a, r.derive(r.sealing, Purpose::Peer).unwrap());
        assert_ne!(a, r.derive(r.sealing, Purpose::Token).unwrap());
        let old = r.sealing;
        let new = r.add_key(2).unwrap();
        assert_ne!(a, r.derive(new, Purpose::Gossip).unwrap());
        assert_eq!(a, r.derive(old, Purpose::Gossip).unwrap(), "stable");
        let mut other = r.clone();
        other.cluster = "0".repeat(32);
        assert_ne!(a, other.derive(old, Purpose::Gossip).unwrap());
        assert!(r.derive(12345, Purpose::Gossip).is_none() || r.key(12345).is_some());
    }

    #[test]
    fn a_rotation_step_naming_a_key_not_held_changes_nothing() {
        let mut r = Keyring::create(1).unwrap();
        let before = r.clone();
        let e = r
            .apply(&KeyUpdate {
                seal: Some(7),
                retire_others: true,
                ..Default::default()
            })
            .unwrap_err();
        assert!(e.contains("not held"), "{e}");
        assert_eq!(r, before);
        let mut other = Keyring::create(2).unwrap();
        let k = other.keys[0].clone();
        other.sealing = k.id;
        r.apply(&KeyUpdate {
            add: Some(k.clone()),
            ..Default::default()
        })
        .unwrap();
        r.apply(&KeyUpdate {
            seal: Some(k.id),
            retire_others: true,
            ..Default::default()
        })
        .unwrap();
        assert_eq!((r.sealing, r.keys.len()), (k.id, 1));
    }

    #[test]
    fn rotation_steps_and_the_file_round_trip() {
        let dir = std::env::temp_dir().join(format!("berth-keys-{}", crate::ids::random_hex(6)));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cluster.key");
        assert!(Keyring::load(&path).unwrap().is_none());
        let mut r = Keyring::create(1).unwrap();
        let first = r.sealing;
        let second = r.add_key(2).unwrap();
        assert_eq!(r.sealing, first, "a new key does not seal until chosen");
        assert!(r.seal_with(second));
        assert!(!r.seal_with(7));
        r.retire_others();
        assert_eq!(r.keys.len(), 1);
        assert!(r.key(first).is_none());
        r.save(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(Keyring::load(&path).unwrap().unwrap(), r);
        assert!(!format!("{r:?}").contains(&hex::encode(r.keys[0].secret)));
        std::fs::write(&path, "{").unwrap();
        let e = Keyring::load(&path).unwrap_err().to_string();
        assert!(e.contains("join again"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
