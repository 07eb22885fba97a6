//! The cluster: hosts joined by a token into one membership with no central server.
//!
//! - `keys`: the cluster id and its keyring (data dir `cluster.key`), HKDF-derived keys per use.
//! - `seal`: the envelope of every gossip packet and peer frame, with replay protection.
//! - `token`: join tokens and the join handshake's cryptography.
//!
//! Invariant: nothing that arrives from the network is parsed before it opened under a
//! cluster key (or, during a join, under the token's key); the pieces here are pure.

pub mod gossip;
pub mod hub;
pub mod join;
pub mod keys;
pub mod seal;
pub mod state;
pub mod token;
