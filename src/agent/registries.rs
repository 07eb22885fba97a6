//! Private registries (`berth registry login|logout|ls`): a login per registry host, its
//! password sealed at rest (bound to `registry:HOST`), used for every pull from that host
//! (deploy, redeploy, `--pull`, `berth run`), never shown.

use super::{Core, CoreError, Ops};
use crate::runtime::{RegistryAuth, normalize_registry, registry_host};
use crate::store::RegistryRow;
use crate::wire::{RegistryLogin, RegistryView};
use std::collections::BTreeMap;

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

/// A login the owner of an app hands the members that run its instances, in its `Spec`
/// record (sealed in transit and at rest, never shown).
#[derive(Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CarriedLogin {
    pub server: String,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for CarriedLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CarriedLogin")
            .field("server", &self.server)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// What the owner of an app hands the members running its slots, for their pulls.
#[derive(Debug, Clone, Default)]
pub struct Carried {
    pub logins: Vec<CarriedLogin>,
    /// Image reference -> the id the owner's engine has for it.
    pub images: BTreeMap<String, String>,
}

impl Core {
    /// The ids of `app`'s images here (the engine asked once per image, then again after
    /// each pull), for its `Spec` record.
    pub(super) async fn image_ids_of(
        &self,
        app: &crate::store::StoredApp,
    ) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for s in app.spec.services.values() {
            let known = self
                .image_ids
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&s.image)
                .cloned();
            let id = match known {
                Some(id) => Some(id),
                None => self.note_image_id(&s.image).await,
            };
            if let Some(id) = id {
                out.insert(s.image.clone(), id);
            }
        }
        out
    }

    /// Reads (again) the id of `image` here, after a pull.
    pub(super) async fn note_image_id(&self, image: &str) -> Option<String> {
        let id = self.runtime.image_id(image).await.ok().flatten()?;
        self.image_ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(image.to_string(), id.clone());
        Some(id)
    }

    /// The logins this host holds for the registries `app`'s images pull from (for its
    /// `Spec` record).
    pub(super) fn logins_of(&self, app: &crate::store::StoredApp) -> Vec<CarriedLogin> {
        let mut out: Vec<CarriedLogin> = Vec::new();
        for s in app.spec.services.values() {
            match self.registry_auth(&s.image) {
                Ok(Some(a)) if !out.iter().any(|c| c.server == a.server) => {
                    out.push(CarriedLogin {
                        server: a.server,
                        username: a.username,
                        password: a.password,
                    })
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(image = %s.image, error = %e, "cannot hand a registry login to the members")
                }
            }
        }
        out
    }

    /// Keeps what another member's app `app` pulls with here.
    pub(super) fn keep_carried(&self, app: &str, carried: Carried) {
        self.carried
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(app.to_string(), carried);
    }

    /// The id the owner of `app` runs `image` as, when another member owns it.
    pub(super) fn owners_image_id(&self, app: &str, image: &str) -> Option<String> {
        self.carried
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(app)?
            .images
            .get(image)
            .cloned()
    }

    /// Whether `image` was pulled here already to reach the owner's `id` (asked once: a
    /// registry that moved on since does not make every slot pull again).
    pub(super) fn first_pull_for(&self, image: &str, id: &str) -> bool {
        self.pulled_for
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((image.to_string(), id.to_string()))
    }

    /// The login a pull of `image` for `app` uses here: this host's own, else the one its
    /// owner handed over.
    pub(super) fn pull_auth(
        &self,
        app: &str,
        image: &str,
    ) -> Result<Option<RegistryAuth>, CoreError> {
        if let Some(a) = self.registry_auth(image)? {
            return Ok(Some(a));
        }
        let host = registry_host(image);
        Ok(self
            .carried
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(app)
            .and_then(|c| c.logins.iter().find(|c| c.server == host))
            .map(|c| RegistryAuth {
                server: c.server.clone(),
                username: c.username.clone(),
                password: c.password.clone(),
            }))
    }

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
