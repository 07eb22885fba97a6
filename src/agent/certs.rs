//! The templates' certificates (`proxy.SSL_CERT`, `proxy.DEFAULT_SSL_CERT`) for the router's
//! HTTPS listener: a service's certificate serves the hosts of its routes that it names; a
//! default one also serves names no certificate covers (of several, the app first by name).
//!
//! Invariants: a key is read only from under this host's files directory, where the deploy
//! (or a member's `Spec` record) wrote it 0400; it is read and checked once per file and
//! chain; a certificate that cannot be used is left out and reported once as an event.

use super::Core;
use crate::model::{FileSource, ServiceSpec};
use crate::router::tls::{LabelCerts, LabelKey, covers};
use crate::store::StoredApp;
use std::collections::HashMap;

/// Loaded certificates by (key file, chain).
pub(super) type KeyCache = HashMap<(String, String), Result<LabelKey, String>>;

/// The hosts of `svc`'s routes a certificate naming `names` covers, and those it does not
/// (a wildcard route needs the same wildcard name).
pub(super) fn covered_hosts(
    app: &str,
    service: &str,
    svc: &ServiceSpec,
    names: &[String],
    router_domain: &str,
) -> (Vec<String>, Vec<String>) {
    let (mut yes, mut no) = (Vec::new(), Vec::new());
    for (_, r) in crate::router::table::service_routes(app, service, svc, router_domain) {
        let Some(host) = crate::router::table::route_host(&r, router_domain) else {
            continue;
        };
        let host = host.to_ascii_lowercase();
        let covered = names.iter().any(|n| match host.starts_with("*.") {
            true => *n == host,
            false => covers(n, &host),
        });
        let list = if covered { &mut yes } else { &mut no };
        if !list.contains(&host) {
            list.push(host);
        }
    }
    (yes, no)
}

impl Core {
    /// The certificates `apps`' templates give, as the router serves them.
    pub(super) fn label_certs(&self, apps: &[std::sync::Arc<StoredApp>]) -> LabelCerts {
        let mut cache = self.label_keys.lock().unwrap_or_else(|p| p.into_inner());
        let mut used = std::collections::HashSet::new();
        let mut out = LabelCerts::default();
        let mut sorted: Vec<&StoredApp> = apps.iter().map(|a| &**a).collect();
        sorted.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        for app in sorted {
            for (name, svc) in &app.spec.services {
                let Some(c) = &svc.ext.ssl_cert else {
                    continue;
                };
                let FileSource::File(path) = &c.key else {
                    continue;
                };
                let k = (path.clone(), c.chain.clone());
                let fresh = !cache.contains_key(&k);
                let loaded = cache
                    .entry(k.clone())
                    .or_insert_with(|| self.load_label_key(path, &c.chain));
                used.insert(k);
                let lk = match loaded {
                    Ok(lk) => lk,
                    Err(e) => {
                        if fresh {
                            self.event(
                                crate::model::EventKind::Error,
                                &app.spec.name,
                                name,
                                &format!("the router does not serve the certificate of proxy.SSL_CERT: {e}"),
                            );
                        }
                        continue;
                    }
                };
                let (hosts, _) =
                    covered_hosts(&app.spec.name, name, svc, &lk.names, &self.router_domain);
                for h in hosts {
                    if !out.by_domain.iter().any(|(d, _)| *d == h) {
                        out.by_domain.push((h, lk.key.clone()));
                    }
                }
                if c.default && out.default.is_none() {
                    out.default = Some(lk.key.clone());
                }
            }
        }
        cache.retain(|k, _| used.contains(k));
        out
    }

    fn load_label_key(&self, path: &str, chain: &str) -> Result<LabelKey, String> {
        let p = std::path::Path::new(path);
        if !p.starts_with(&self.files_dir) || p.components().any(|c| c.as_os_str() == "..") {
            return Err(format!(
                "its key file {path} is not under {}",
                self.files_dir.display()
            ));
        }
        let key = std::fs::read_to_string(p)
            .map_err(|e| format!("cannot read its key file {path}: {e}"))?;
        crate::router::tls::label_key(chain, &key)
    }
}
