//! Private registries (`berth registry login|logout|ls`): a login per registry host, its
//! password sealed at rest (bound to `registry:HOST`), used for every pull from that host
//! (deploy, redeploy, `--pull`, `berth run`), never shown.

use super::{Core, CoreError, Ops};
use crate::runtime::{RegistryAuth, normalize_registry, registry_host};
use crate::store::RegistryRow;
use crate::wire::{RegistryLogin, RegistryView};

const MAX_USER: usize = 255;
const MAX_PASSWORD: usize = 4096;

fn aad(host: &str) -> String {
    format!("registry:{host}")
}

/// A registry host as docker takes it: `name[.name...][:port]` or `[v6]:port`.
fn check_host(host: &str) -> Result<(), CoreError> {
    let ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        && !host.starts_with(['-', '.', ':']);
    if ok {
        Ok(())
    } else {
        Err(CoreError::BadRequest(format!(
            "registry {host:?} is not a registry host: write it as in the image name, like registry.example.com or 10.0.0.5:5000 (docker.io for Docker Hub)"
        )))
    }
}

impl Core {
    /// The login for the registry `image` pulls from, unsealed; None without one.
    pub(super) fn registry_auth(&self, image: &str) -> Result<Option<RegistryAuth>, CoreError> {
        let host = registry_host(image);
        let Some(row) = self.store.registry(&host)? else {
            return Ok(None);
        };
        let plain = self
            .volumes
            .sealer()?
            .unseal(&aad(&host), &row.sealed)
            .map_err(|_| {
                CoreError::Conflict(format!(
                    "the login for registry {host} does not open with this data dir's key (was volume-secrets.key replaced?): `berth registry login {host}` again"
                ))
            })?;
        let password = String::from_utf8(plain).map_err(|_| {
            CoreError::Conflict(format!(
                "the login for registry {host} is damaged: `berth registry login {host}` again"
            ))
        })?;
        Ok(Some(RegistryAuth {
            server: host,
            username: row.username,
            password,
        }))
    }
}

impl Ops {
    pub fn registry_login(&self, req: RegistryLogin) -> Result<RegistryView, CoreError> {
        let host = normalize_registry(&req.host);
        check_host(&host)?;
        if req.username.is_empty()
            || req.username.len() > MAX_USER
            || req.username.chars().any(char::is_control)
        {
            return Err(CoreError::BadRequest(format!(
                "user name: 1 to {MAX_USER} characters without control characters"
            )));
        }
        // A password read from a pipe ends with the newline `echo` put there.
        let password = req.password.trim_end_matches(['\n', '\r']);
        if password.is_empty() || password.len() > MAX_PASSWORD {
            return Err(CoreError::BadRequest(format!(
                "the password is empty or longer than {MAX_PASSWORD} bytes: pass it on stdin with --password-stdin"
            )));
        }
        let sealed = self
            .core
            .volumes
            .sealer()?
            .seal(&aad(&host), password.as_bytes())?;
        let row = RegistryRow {
            host: host.clone(),
            username: req.username.clone(),
            sealed,
            created_ms: crate::clock::now_ms(),
        };
        self.core.store.put_registry(&row)?;
        self.core.event(
            crate::model::EventKind::Agent,
            "",
            "",
            &format!("registry login for {host} as {}", req.username),
        );
        Ok(RegistryView {
            host,
            username: row.username,
            created_ms: row.created_ms,
        })
    }

    pub fn registry_logout(&self, host: &str) -> Result<(), CoreError> {
        let host = normalize_registry(host);
        if !self.core.store.remove_registry(&host)? {
            return Err(CoreError::NotFound(format!(
                "no login for registry {host}: `berth registry ls` lists them"
            )));
        }
        self.core.event(
            crate::model::EventKind::Agent,
            "",
            "",
            &format!("registry logout from {host}"),
        );
        Ok(())
    }

    pub fn registries(&self) -> Result<Vec<RegistryView>, CoreError> {
        Ok(self
            .core
            .store
            .registries()?
            .into_iter()
            .map(|(host, username, created_ms)| RegistryView {
                host,
                username,
                created_ms,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_checked_and_images_name_their_registry() {
        for ok in [
            "registry.example.com",
            "10.0.0.5:5000",
            "localhost:5000",
            "[::1]:5000",
        ] {
            assert!(check_host(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "-x", "evil/../x", "x\n", "https://x"] {
            assert!(check_host(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            registry_host("127.0.0.1:5000/team/app:v1"),
            "127.0.0.1:5000"
        );
        assert_eq!(registry_host("localhost/app"), "localhost");
        assert_eq!(registry_host("nginx:1.27"), "docker.io");
        assert_eq!(registry_host("library/nginx"), "docker.io");
        assert_eq!(
            registry_host("Registry.Example.com/a"),
            "registry.example.com"
        );
        assert_eq!(normalize_registry("https://index.docker.io/"), "docker.io");
    }
}
