//! The cluster: hosts joined by a token into one membership with no central server.
//!
//! - `keys`: the cluster id and its keyring (data dir `cluster.key`), HKDF-derived keys per use.
//! - `seal`: the envelope of every gossip packet and peer frame, with replay protection.
//! - `token`: join tokens and the join handshake's cryptography.
//!
//! Invariant: nothing that arrives from the network is parsed before it opened under a
//! cluster key (or, during a join, under the token's key); the pieces here are pure.

/// The cluster protocol this build speaks. Joins, node records and forwarded requests carry
/// it; members one apart work together, so a cluster upgrades one host at a time.
/// - 1: membership, replicated state, forwarded writes and one-app reads.
/// - 2: figures from other members (`top`), log follows over the peer channel (`after`),
///   node records with capacity and use, records of kinds a build does not know ignored.
/// - 3: apps placed over the members: owners replicate their apps with the assignments
///   (`Spec` records) and each member runs the slots placed on it; only members speaking 3
///   take slots.
pub const PROTOCOL: u32 = 3;

/// The first protocol whose members run slots of other members' apps.
pub const PLACEMENT_PROTOCOL: u32 = 3;

/// Whether a member speaking `p` works with this build (one protocol apart at most).
pub fn compatible(p: u32, mine: u32) -> bool {
    p.abs_diff(mine) <= 1
}

/// The protocol this process speaks: [`PROTOCOL`], unless the test switch
/// `BERTH_CLUSTER_PROTOCOL` names an older one it can still speak (a mixed-version cluster
/// in tests, without a build of the previous release).
pub fn spoken() -> u32 {
    static SPOKEN: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *SPOKEN.get_or_init(|| {
        std::env::var("BERTH_CLUSTER_PROTOCOL")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|p| (1..=PROTOCOL).contains(p))
            .unwrap_or(PROTOCOL)
    })
}

pub mod gossip;
pub mod hub;
pub mod join;
pub mod keys;
pub mod seal;
pub mod state;
pub mod token;
pub mod tunnel;
