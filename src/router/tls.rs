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

/// The certificate of `certs` for `host`: an exact name wins over a wildcard.
fn pick(certs: &[(String, Arc<CertifiedKey>)], host: &str) -> Option<Arc<CertifiedKey>> {
    certs
        .iter()
        .find(|(d, _)| !d.starts_with("*.") && covers(d, host))
        .or_else(|| certs.iter().find(|(d, _)| covers(d, host)))
        .map(|(_, k)| k.clone())
}

impl SniResolver {
    fn find(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        pick(&self.certs, host)
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

/// A certificate a template gave (`proxy.SSL_CERT`), ready to serve, with the DNS names
/// its subjectAltName lists (`*.x` for wildcards).
#[derive(Debug, Clone)]
pub struct LabelKey {
    pub key: Arc<CertifiedKey>,
    pub names: Vec<String>,
}

/// Checks a template's certificate as the listener will use it: the chain parses, the key
/// is one rustls can sign with and belongs to the first certificate, which names at least
/// one DNS name. The error says which of these fails.
pub fn label_key(chain_pem: &str, key_pem: &str) -> Result<LabelKey, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("the certificate is not readable PEM: {e}"))?;
    let first = chain
        .first()
        .ok_or("it holds no certificate (-----BEGIN CERTIFICATE-----)")?;
    let names: Vec<String> = webpki::EndEntityCert::try_from(first)
        .map_err(|e| format!("the certificate is not a usable X.509 certificate: {e}"))?
        .valid_dns_names()
        .map(str::to_ascii_lowercase)
        .collect();
    if names.is_empty() {
        return Err(
            "the certificate names no DNS name in its subjectAltName (clients match names there, not in the common name): issue it with the domains it serves".into(),
        );
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| format!("the private key is not readable PEM: {e}"))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("the private key is not one the router can use: {e}"))?;
    let ck = CertifiedKey::new(chain, signer);
    ck.keys_match()
        .map_err(|e| format!("the private key does not belong to the certificate: {e}"))?;
    Ok(LabelKey {
        key: Arc::new(ck),
        names,
    })
}

/// The templates' certificates, served after berth.toml's: by domain (a route's host the
/// certificate covers), and one default for names nothing covers (`DEFAULT_SSL_CERT`).
#[derive(Debug, Default)]
pub struct LabelCerts {
    pub by_domain: Vec<(String, Arc<CertifiedKey>)>,
    pub default: Option<Arc<CertifiedKey>>,
}

impl LabelCerts {
    fn find(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        pick(&self.by_domain, host)
    }

    /// Does a certificate of a template cover `host` (the default aside)?
    pub fn covers(&self, host: &str) -> bool {
        self.by_domain.iter().any(|(d, _)| covers(d, host))
    }
}

/// Shared between the router (which replaces it as templates change) and the listener.
pub type LabelHandle = Arc<std::sync::RwLock<Arc<LabelCerts>>>;

/// berth.toml's certificates first, then the templates' by SNI, then a template's default.
#[derive(Debug)]
struct Layered {
    first: Arc<dyn ResolvesServerCert>,
    labels: LabelHandle,
}

impl ResolvesServerCert for Layered {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name().map(str::to_ascii_lowercase);
        if let Some(k) = self.first.resolve(hello) {
            return Some(k);
        }
        let labels = self
            .labels
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        name.and_then(|n| labels.find(&n))
            .or_else(|| labels.default.clone())
    }
}

/// `cfg` serving the templates' certificates in `labels` after its own.
pub fn with_labels(cfg: &rustls::ServerConfig, labels: LabelHandle) -> Arc<rustls::ServerConfig> {
    let mut c = cfg.clone();
    c.cert_resolver = Arc::new(Layered {
        first: c.cert_resolver.clone(),
        labels,
    });
    Arc::new(c)
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
