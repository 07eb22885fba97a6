//! The envelope every gossip packet and peer frame travels in: ChaCha20-Poly1305 (ring) under
//! a key derived from the cluster keyring, the key named by id (no trial decryption), the
//! header and the cluster id authenticated as associated data.
//!
//! ```text
//! "BG" | version (1) | key id (4, BE) | nonce (12) | sealed: sender (8) seq (8) body | tag (16)
//! ```
//!
//! What does not open is dropped before any parsing and counted by [`Dropped`] reason. The
//! sender id and a sequence number inside the seal make every packet unique: a [`Replay`]
//! window per sender drops one seen before, so a captured packet sent again changes nothing.
//! Pure (no I/O); randomness comes from the caller's nonce source.

use super::keys::{Keyring, Purpose};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use std::collections::HashMap;

pub const MAGIC: &[u8; 2] = b"BG";
/// The envelope's version; a different one is dropped (`version`) before opening.
pub const VERSION: u8 = 1;
pub const HEADER_LEN: usize = 2 + 1 + 4 + NONCE_LEN;
/// Sender id and sequence number, inside the seal.
pub const INNER_LEN: usize = 16;
pub const TAG_LEN: usize = 16;
/// What the envelope adds to a body.
pub const OVERHEAD: usize = HEADER_LEN + INNER_LEN + TAG_LEN;

/// Why a packet was dropped unparsed (the `reason` label of
/// `berth_gossip_packets_dropped_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dropped {
    /// Shorter than an empty envelope.
    Short,
    /// Not a berth envelope at all.
    Magic,
    /// An envelope version this build does not speak.
    Version,
    /// Sealed under a key this host does not hold (another cluster, or a retired key).
    UnknownKey,
    /// Did not authenticate: tampered, truncated, or another cluster's.
    Auth,
    /// Opened, but seen before (a replay) or too old for the window.
    Replay,
    /// Larger than the bound for its channel.
    TooLarge,
}

impl Dropped {
    pub const ALL: [Dropped; 7] = [
        Dropped::Short,
        Dropped::Magic,
        Dropped::Version,
        Dropped::UnknownKey,
        Dropped::Auth,
        Dropped::Replay,
        Dropped::TooLarge,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Dropped::Short => "short",
            Dropped::Magic => "magic",
            Dropped::Version => "version",
            Dropped::UnknownKey => "unknown_key",
            Dropped::Auth => "auth",
            Dropped::Replay => "replay",
            Dropped::TooLarge => "too_large",
        }
    }
}

/// An opened envelope.
#[derive(Debug, PartialEq, Eq)]
pub struct Opened {
    pub key_id: u32,
    pub sender: u64,
    pub seq: u64,
    pub body: Vec<u8>,
}

fn aad(header: &[u8], cluster: &[u8]) -> Vec<u8> {
    let mut a = Vec::with_capacity(header.len() + cluster.len());
    a.extend_from_slice(header);
    a.extend_from_slice(cluster);
    a
}

fn aead_key(ring: &Keyring, id: u32, purpose: Purpose) -> Option<LessSafeKey> {
    let k = ring.derive(id, purpose)?;
    UnboundKey::new(&CHACHA20_POLY1305, &k)
        .ok()
        .map(LessSafeKey::new)
}

/// Seals `body` from `sender` with sequence `seq` under the keyring's sealing key.
pub fn seal(
    ring: &Keyring,
    purpose: Purpose,
    sender: u64,
    seq: u64,
    nonce: [u8; NONCE_LEN],
    body: &[u8],
) -> Vec<u8> {
    let id = ring.sealing_id();
    let mut out = Vec::with_capacity(OVERHEAD + body.len());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&nonce);
    let mut inner = Vec::with_capacity(INNER_LEN + body.len() + TAG_LEN);
    inner.extend_from_slice(&sender.to_be_bytes());
    inner.extend_from_slice(&seq.to_be_bytes());
    inner.extend_from_slice(body);
    let Some(key) = aead_key(ring, id, purpose) else {
        return Vec::new();
    };
    let ad = aad(&out, ring.cluster_bytes());
    // Fails only when the input is larger than the AEAD allows (~256 GiB).
    if key
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&ad),
            &mut inner,
        )
        .is_err()
    {
        return Vec::new();
    }
    out.extend_from_slice(&inner);
    out
}

/// Opens a packet, or says why it is dropped; nothing of an unopened packet is parsed.
pub fn open(
    ring: &Keyring,
    purpose: Purpose,
    packet: &[u8],
    max: usize,
) -> Result<Opened, Dropped> {
    if packet.len() > max {
        return Err(Dropped::TooLarge);
    }
    if packet.len() < OVERHEAD {
        return Err(Dropped::Short);
    }
    let (header, sealed) = packet.split_at(HEADER_LEN);
    if &header[..2] != MAGIC {
        return Err(Dropped::Magic);
    }
    if header[2] != VERSION {
        return Err(Dropped::Version);
    }
    let key_id = u32::from_be_bytes([header[3], header[4], header[5], header[6]]);
    let key = aead_key(ring, key_id, purpose).ok_or(Dropped::UnknownKey)?;
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&header[7..7 + NONCE_LEN]);
    let ad = aad(header, ring.cluster_bytes());
    let mut buf = sealed.to_vec();
    let plain = key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&ad),
            &mut buf,
        )
        .map_err(|_| Dropped::Auth)?;
    if plain.len() < INNER_LEN {
        return Err(Dropped::Auth);
    }
    let sender = u64::from_be_bytes(plain[..8].try_into().map_err(|_| Dropped::Auth)?);
    let seq = u64::from_be_bytes(plain[8..16].try_into().map_err(|_| Dropped::Auth)?);
    Ok(Opened {
        key_id,
        sender,
        seq,
        body: plain[INNER_LEN..].to_vec(),
    })
}

/// Sequence numbers seen per sender: the highest and a 128-wide window below it, as IPsec
/// and WireGuard keep them. Bounded: at most `max_senders` are remembered (the least
/// recently heard one is forgotten first).
pub struct Replay {
    senders: HashMap<u64, (u64, u128, u64)>,
    max_senders: usize,
    clock: u64,
}

const WINDOW: u64 = 128;

impl Replay {
    pub fn new(max_senders: usize) -> Replay {
        Replay {
            senders: HashMap::new(),
            max_senders: max_senders.max(1),
            clock: 0,
        }
    }

    /// Records `seq` from `sender`; false when it was seen before or is below the window.
    pub fn accept(&mut self, sender: u64, seq: u64) -> bool {
        self.clock += 1;
        let clock = self.clock;
        if !self.senders.contains_key(&sender)
            && self.senders.len() >= self.max_senders
            && let Some(oldest) = self
                .senders
                .iter()
                .min_by_key(|(_, (_, _, heard))| *heard)
                .map(|(s, _)| *s)
        {
            self.senders.remove(&oldest);
        }
        let (top, bits, heard) = self.senders.entry(sender).or_insert((0, 0, clock));
        *heard = clock;
        if *top == 0 && *bits == 0 {
            *top = seq;
            *bits = 1;
            return true;
        }
        if seq > *top {
            let shift = seq - *top;
            *bits = if shift >= WINDOW { 0 } else { *bits << shift };
            *bits |= 1;
            *top = seq;
            return true;
        }
        let back = *top - seq;
        if back >= WINDOW {
            return false;
        }
        let bit = 1u128 << back;
        if *bits & bit != 0 {
            return false;
        }
        *bits |= bit;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> Keyring {
        Keyring::create(1).unwrap()
    }

    #[test]
    fn a_sealed_packet_opens_and_every_damage_is_dropped_by_reason() {
        let r = ring();
        let p = seal(&r, Purpose::Gossip, 7, 9, [3; 12], b"hello");
        assert_eq!(p.len(), OVERHEAD + 5);
        let o = open(&r, Purpose::Gossip, &p, 1400).unwrap();
        assert_eq!((o.sender, o.seq, o.body.as_slice()), (7, 9, &b"hello"[..]));
        // Every single bit flipped anywhere is refused.
        for i in 0..p.len() * 8 {
            let mut q = p.clone();
            q[i / 8] ^= 1 << (i % 8);
            let e = open(&r, Purpose::Gossip, &q, 1400).unwrap_err();
            assert!(
                matches!(
                    e,
                    Dropped::Magic | Dropped::Version | Dropped::UnknownKey | Dropped::Auth
                ),
                "bit {i}: {e:?}"
            );
        }
        for n in 0..p.len() {
            let e = open(&r, Purpose::Gossip, &p[..n], 1400).unwrap_err();
            assert!(matches!(e, Dropped::Short | Dropped::Auth), "{n}: {e:?}");
        }
        assert_eq!(open(&r, Purpose::Gossip, &p, 10), Err(Dropped::TooLarge));
        // Another purpose's key, another cluster, the same key id in another cluster.
        assert_eq!(open(&r, Purpose::Peer, &p, 1400), Err(Dropped::Auth));
        assert_eq!(
            open(&ring(), Purpose::Gossip, &p, 1400),
            Err(Dropped::UnknownKey)
        );
        let mut same_id = ring();
        same_id.keys[0].id = r.sealing;
        same_id.sealing = r.sealing;
        assert_eq!(
            open(&same_id, Purpose::Gossip, &p, 1400),
            Err(Dropped::Auth)
        );
        let mut renamed = r.clone();
        renamed.cluster = "f".repeat(32);
        assert_eq!(
            open(&renamed, Purpose::Gossip, &p, 1400),
            Err(Dropped::Auth)
        );
        assert_eq!(
            open(
                &r,
                Purpose::Gossip,
                b"GET / HTTP/1.1\r\n\r\n______________________________________",
                1400
            ),
            Err(Dropped::Magic)
        );
    }

    #[test]
    fn a_rotated_ring_opens_both_keys_until_the_old_one_retires() {
        let mut r = ring();
        let old = seal(&r, Purpose::Gossip, 1, 1, [0; 12], b"a");
        let new_id = r.add_key(2).unwrap();
        r.seal_with(new_id);
        let new = seal(&r, Purpose::Gossip, 1, 2, [1; 12], b"b");
        assert_eq!(open(&r, Purpose::Gossip, &old, 1400).unwrap().body, b"a");
        assert_eq!(
            open(&r, Purpose::Gossip, &new, 1400).unwrap().key_id,
            new_id
        );
        r.retire_others();
        assert_eq!(
            open(&r, Purpose::Gossip, &old, 1400),
            Err(Dropped::UnknownKey)
        );
    }

    #[test]
    fn the_replay_window_drops_what_it_saw_and_what_is_too_old() {
        let mut w = Replay::new(2);
        assert!(w.accept(1, 100));
        assert!(!w.accept(1, 100));
        assert!(w.accept(1, 99), "late but new");
        assert!(!w.accept(1, 99));
        assert!(w.accept(1, 300));
        assert!(!w.accept(1, 100), "fell out of the window");
        assert!(w.accept(1, 299));
        assert!(w.accept(2, 5));
        assert!(w.accept(3, 5), "a third sender pushes out the least recent");
        assert_eq!(w.senders.len(), 2);
    }
}
