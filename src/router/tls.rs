//! TLS termination for `https://` routes: certificates from `[[router.tls]]`, chosen by SNI
//! (exact domain first, then a `*.example.com` wildcard for one label).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_rustls::rustls;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;

/// One `[[router.tls]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsCert {
    /// `shop.example.com` or `*.example.com`.
    pub domain: String,
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Does a certificate for `domain` (possibly `*.x`) cover `host`?
pub fn covers(domain: &str, host: &str) -> bool {
    let (d, h) = (domain.to_ascii_lowercase(), host.to_ascii_lowercase());
    match d.strip_prefix("*.") {
        Some(suffix) => h
            .strip_suffix(suffix)
            .and_then(|rest| rest.strip_suffix('.'))
            .is_some_and(|label| !label.is_empty() && !label.contains('.')),
        None => d == h,
    }
}

#[derive(Debug)]
struct SniResolver {
    certs: Vec<(String, Arc<CertifiedKey>)>,
}

impl SniResolver {
    fn find(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        // Exact names win over wildcards.
        self.certs
            .iter()
            .find(|(d, _)| !d.starts_with("*.") && covers(d, host))
            .or_else(|| self.certs.iter().find(|(d, _)| covers(d, host)))
            .map(|(_, k)| k.clone())
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.find(hello.server_name()?)
    }
}

fn load(c: &TlsCert) -> Result<Arc<CertifiedKey>, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&c.cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| format!("cannot read certificate {}: {e}", c.cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            c.cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&c.key)
        .map_err(|e| format!("cannot read private key {}: {e}", c.key.display()))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("unusable private key {}: {e}", c.key.display()))?;
    let ck = CertifiedKey::new(chain, signer);
    ck.keys_match().map_err(|e| {
        format!(
            "{} does not belong to {}: {e}",
            c.key.display(),
            c.cert.display()
        )
    })?;
    Ok(Arc::new(ck))
}

/// The server side of the HTTPS listener: every configured certificate, chosen by SNI.
/// Fails with a message naming the file when a certificate or key cannot be used.
pub fn server_config(certs: &[TlsCert]) -> Result<Arc<rustls::ServerConfig>, String> {
    let mut loaded = Vec::new();
    let mut seen: HashMap<String, ()> = HashMap::new();
    for c in certs {
        let domain = c.domain.trim().trim_end_matches('.').to_ascii_lowercase();
        if domain.is_empty() || domain.contains(char::is_whitespace) {
            return Err(format!(
                "[[router.tls]] domain {:?} is not a domain name",
                c.domain
            ));
        }
        if seen.insert(domain.clone(), ()).is_some() {
            return Err(format!("[[router.tls]] names {domain} twice"));
        }
        loaded.push((domain, load(c)?));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver { certs: loaded }));
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// One certificate for every name (the API's listener, `[agent] tls_cert`/`tls_key`).
pub fn single_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let ck = load(&TlsCert {
        domain: String::new(),
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(ck)));
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::covers;

    #[test]
    fn exact_and_one_label_wildcards() {
        assert!(covers("shop.example.com", "SHOP.example.com"));
        assert!(!covers("shop.example.com", "x.shop.example.com"));
        assert!(covers("*.example.com", "shop.example.com"));
        assert!(!covers("*.example.com", "a.b.example.com"));
        assert!(!covers("*.example.com", "example.com"));
        assert!(!covers("*.example.com", "badexample.com"));
    }
}
