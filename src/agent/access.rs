//! Access tokens with roles (`berth access create|ls|rm`): viewer reads everything but
//! secrets; operator also deploys, scales, releases, reads logs; admin also manages access,
//! registries, volumes (their credentials), the cluster and prune. The agent's own
//! `api.token` is admin. A token is 32 random bytes shown once; the store keeps its SHA-256.

use super::{CoreError, Ops};
use crate::store::AccessRow;
use crate::wire::{AccessCreate, AccessCreated, AccessView};
use ring::rand::SecureRandom;

pub const ROLES: &[&str] = &["viewer", "operator", "admin"];
/// Tokens besides `api.token`.
const MAX_TOKENS: usize = 100;

/// A role's rank: viewer < operator < admin.
pub fn rank(role: &str) -> u8 {
    match role {
        "admin" => 2,
        "operator" => 1,
        _ => 0,
    }
}

/// SHA-256 of a secret (access tokens, trigger secrets): what the store keeps of it.
pub fn digest(secret: &str) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, secret.as_bytes())
        .as_ref()
        .to_vec()
}

/// Equal bytes, compared in time that does not depend on where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Ops {
    pub fn create_access(&self, req: AccessCreate) -> Result<AccessCreated, CoreError> {
        let ok_name = !req.name.is_empty()
            && req.name.len() <= 64
            && req
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
            && req.name != "api.token";
        if !ok_name {
            return Err(CoreError::BadRequest(format!(
                "access name {:?}: 1-64 letters, digits, '-', '_', '.' or '@' (and not api.token)",
                req.name
            )));
        }
        if !ROLES.contains(&req.role.as_str()) {
            return Err(CoreError::BadRequest(format!(
                "role {:?}: use viewer, operator or admin",
                req.role
            )));
        }
        if self.core.store.access_list()?.len() >= MAX_TOKENS {
            return Err(CoreError::Conflict(format!(
                "there are {MAX_TOKENS} access tokens, the most berth keeps: remove one with `berth access rm NAME`"
            )));
        }
        let mut b = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut b)
            .map_err(|_| CoreError::Host("the system gave no random bytes".into()))?;
        let token = format!("bt_{}", hex::encode(b));
        let row = AccessRow {
            name: req.name.clone(),
            role: req.role.clone(),
            digest: digest(&token),
            created_ms: crate::clock::now_ms(),
        };
        if !self.core.store.put_access(&row)? {
            return Err(CoreError::Conflict(format!(
                "access {:?} exists: remove it first (`berth access rm {}`) or choose another name",
                req.name, req.name
            )));
        }
        self.core.event(
            crate::model::EventKind::Agent,
            "",
            "",
            &format!("access {} created (role {})", row.name, row.role),
        );
        Ok(AccessCreated {
            name: row.name,
            role: row.role,
            token,
        })
    }

    pub fn access_list(&self) -> Result<Vec<AccessView>, CoreError> {
        Ok(self
            .core
            .store
            .access_list()?
            .into_iter()
            .map(|(name, role, created_ms)| AccessView {
                name,
                role,
                created_ms,
            })
            .collect())
    }

    pub fn remove_access(&self, name: &str) -> Result<(), CoreError> {
        if !self.core.store.remove_access(name)? {
            return Err(CoreError::NotFound(format!(
                "no access {name:?}: `berth access ls` lists them"
            )));
        }
        self.core.event(
            crate::model::EventKind::Agent,
            "",
            "",
            &format!("access {name} removed: its token no longer works"),
        );
        Ok(())
    }

    /// The (name, role) of a named token; None for any other string.
    pub fn identify(&self, token: &str) -> Option<(String, String)> {
        if !token.starts_with("bt_") {
            return None;
        }
        self.core
            .store
            .access_by_digest(&digest(token))
            .ok()
            .flatten()
    }

    /// Names the token behind a change in the event log.
    pub fn audit(&self, name: &str, role: &str, method: &str, path: &str) {
        self.core.event(
            crate::model::EventKind::Agent,
            "",
            "",
            &format!("{method} {path} by access {name} ({role})"),
        );
    }
}
