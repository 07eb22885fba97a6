//! A small blocking client for the agent's API.

use crate::wire::ErrorBody;
use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::PathBuf;
use std::time::Duration;

/// A byte stream both ways (a TCP or TLS connection).
pub trait ReadWrite: std::io::Read + std::io::Write + Send {}
impl<T: std::io::Read + std::io::Write + Send> ReadWrite for T {}

pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
    /// Certificates trusted for an `https://` API besides the public CAs (`--ca-cert`).
    extra_roots: Vec<rustls_pki_types::CertificateDer<'static>>,
}

fn agent_config(roots: &[rustls_pki_types::CertificateDer<'static>]) -> ureq::Agent {
    let mut tls = ureq::tls::TlsConfig::builder();
    if !roots.is_empty() {
        let certs: Vec<ureq::tls::Certificate<'static>> = roots
            .iter()
            .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
            .collect();
        tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
    }
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(600)))
        .tls_config(tls.build())
        .build();
    ureq::Agent::new_with_config(config)
}

/// Where the token comes from: flag/env, BERTH_TOKEN_FILE, ./.berth/api.token, the default
/// data dir.
fn find_token(explicit: Option<String>) -> Option<String> {
    if let Some(t) = explicit.filter(|t| !t.is_empty()) {
        return Some(t);
    }
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Ok(f) = std::env::var("BERTH_TOKEN_FILE") {
        candidates.push(f.into());
    }
    candidates.push(PathBuf::from(".berth/api.token"));
    candidates.push(PathBuf::from(crate::config::DEFAULT_DATA_DIR).join("api.token"));
    candidates
        .into_iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

impl Client {
    pub fn new(api: &str, token: Option<String>) -> Client {
        Client {
            base: api.trim_end_matches('/').to_string(),
            token: find_token(token),
            agent: agent_config(&[]),
            extra_roots: Vec::new(),
        }
    }

    /// Trusts the certificates of a PEM file (the agent's own, or the CA that signed it).
    pub fn with_ca_cert(mut self, file: Option<&std::path::Path>) -> Result<Client> {
        use rustls_pki_types::pem::PemObject;
        let Some(file) = file else { return Ok(self) };
        let certs: Vec<rustls_pki_types::CertificateDer<'static>> =
            rustls_pki_types::CertificateDer::pem_file_iter(file)
                .and_then(|it| it.collect::<Result<_, _>>())
                .map_err(|e| anyhow!("cannot read --ca-cert {}: {e}", file.display()))?;
        if certs.is_empty() {
            bail!(
                "--ca-cert {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                file.display()
            );
        }
        self.agent = agent_config(&certs);
        self.extra_roots = certs;
        Ok(self)
    }

    /// A WebSocket to `path` (`berth exec`), its reads timing out every 50 ms so the caller
    /// can interleave its writes. An answer other than the upgrade is the agent's error.
    pub fn websocket(&self, path: &str) -> Result<tungstenite::WebSocket<Box<dyn ReadWrite>>> {
        use tungstenite::client::IntoClientRequest;
        let (scheme, rest) = self
            .base
            .split_once("://")
            .with_context(|| format!("the API address {} has no scheme", self.base))?;
        let hostport = rest.split('/').next().unwrap_or(rest);
        let ws_scheme = match scheme {
            "http" => "ws",
            "https" => "wss",
            s => bail!(
                "the API address {} has scheme {s}: use http:// or https://",
                self.base
            ),
        };
        let url = format!("{ws_scheme}://{hostport}{path}");
        let mut req = url
            .as_str()
            .into_client_request()
            .with_context(|| format!("{url} is not a valid address"))?;
        if let Ok(v) = self.auth().parse() {
            req.headers_mut().insert("Authorization", v);
        }
        let stream = self.connect_stream(scheme, hostport)?;
        // Reads time out every 50 ms: the handshake goes on through those, for 30 s at most.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut attempt = tungstenite::client::client(req, stream);
        while let Err(tungstenite::HandshakeError::Interrupted(mid)) = attempt {
            if std::time::Instant::now() > deadline {
                bail!(
                    "the agent at {} did not open the session within 30 s",
                    self.base
                );
            }
            attempt = mid.handshake();
        }
        let (ws, _) = match attempt {
            Ok(x) => x,
            Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(r))) => {
                let body = r.body().as_deref().unwrap_or_default();
                let msg = serde_json::from_slice::<ErrorBody>(body)
                    .map(|e| e.error)
                    .unwrap_or_else(|_| String::from_utf8_lossy(body).into_owned());
                bail!("{msg}")
            }
            Err(e) => bail!("the agent at {} did not open the session: {e}", self.base),
        };
        Ok(ws)
    }

    /// A connection to the agent for a WebSocket (reads time out every 50 ms).
    fn connect_stream(&self, scheme: &str, hostport: &str) -> Result<Box<dyn ReadWrite>> {
        let addr = std::net::ToSocketAddrs::to_socket_addrs(hostport)
            .with_context(|| format!("cannot resolve {hostport}"))?
            .next()
            .with_context(|| format!("{hostport} resolves to no address"))?;
        let tcp = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .map_err(|e| anyhow!("cannot reach the berth agent at {} ({e}): is `berth agent` running? set --api or BERTH_API", self.base))?;
        tcp.set_read_timeout(Some(Duration::from_millis(50)))?;
        tcp.set_nodelay(true)?;
        if scheme == "http" {
            return Ok(Box::new(tcp));
        }
        use rustls_pki_types::pem::PemObject;
        use tokio_rustls::rustls;
        let mut roots = rustls::RootCertStore::empty();
        for c in &self.extra_roots {
            roots
                .add(c.clone())
                .map_err(|e| anyhow!("--ca-cert: {e}"))?;
        }
        // The public CAs too, as the other commands trust (the system's bundle).
        if let Ok(it) =
            rustls_pki_types::CertificateDer::pem_file_iter("/etc/ssl/certs/ca-certificates.crt")
        {
            for c in it.flatten() {
                let _ = roots.add(c);
            }
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| anyhow!("TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let host = hostport
            .rsplit_once(':')
            .map_or(hostport, |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let name = rustls_pki_types::ServerName::try_from(host.to_string())
            .map_err(|e| anyhow!("{host} is not a TLS server name: {e}"))?;
        let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name)
            .map_err(|e| anyhow!("TLS: {e}"))?;
        Ok(Box::new(rustls::StreamOwned::new(conn, NoSigPipe(tcp))))
    }

    fn auth(&self) -> String {
        format!("Bearer {}", self.token.clone().unwrap_or_default())
    }

    fn finish<T: DeserializeOwned>(
        &self,
        what: &str,
        r: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T> {
        let mut resp = r.map_err(|e| anyhow!("cannot reach the berth agent at {} ({e}): is `berth agent` running? set --api or BERTH_API", self.base))?;
        let status = resp.status().as_u16();
        // Log queries can be large (up to 100,000 lines).
        let text = resp
            .body_mut()
            .with_config()
            .limit(512 << 20)
            .read_to_string()
            .with_context(|| format!("reading the answer to {what}"))?;
        if (200..300).contains(&status) {
            return serde_json::from_str(&text).with_context(|| {
                format!("the agent's answer to {what} is not what this CLI expects")
            });
        }
        let msg = serde_json::from_str::<ErrorBody>(&text)
            .map(|e| e.error)
            .unwrap_or(text);
        if status == 401 && self.token.is_none() {
            bail!(
                "{msg}\n(no token found: run as a user who can read /var/lib/berth/api.token, or pass --token)"
            );
        }
        bail!("{msg}")
    }

    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let r = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("Authorization", self.auth())
            .call();
        self.finish(path, r)
    }

    pub fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        let r = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Authorization", self.auth())
            .send_json(body);
        self.finish(path, r)
    }

    /// GET a long-lived streaming answer (no overall timeout); returns its body as a reader.
    pub fn stream(&self, path: &str) -> Result<impl std::io::BufRead> {
        let resp = self.get_unbounded(path)?;
        Ok(std::io::BufReader::new(resp.into_body().into_reader()))
    }

    /// GET a file-sized answer: the `X-Berth-Images` header and the body as a reader.
    pub fn download(&self, path: &str) -> Result<(String, impl std::io::Read + use<>)> {
        let resp = self.get_unbounded(path)?;
        let images = resp
            .headers()
            .get("X-Berth-Images")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        Ok((images, resp.into_body().into_reader()))
    }

    /// GET without an overall timeout (the body may take long); a non-2xx answer becomes
    /// the agent's error message.
    fn get_unbounded(&self, path: &str) -> Result<ureq::http::Response<ureq::Body>> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .build()
            .into();
        let resp = agent
            .get(format!("{}{path}", self.base))
            .header("Authorization", self.auth())
            .call()
            .map_err(|e| anyhow!("cannot reach the berth agent at {} ({e}): is `berth agent` running? set --api or BERTH_API", self.base))?;
        if !resp.status().is_success() {
            // Read the error the usual way.
            let _: serde_json::Value = self.finish(path, Ok(resp))?;
            bail!("unexpected answer to {path}");
        }
        Ok(resp)
    }

    pub fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let r = self
            .agent
            .delete(format!("{}{path}", self.base))
            .header("Authorization", self.auth())
            .call();
        self.finish(path, r)
    }

    pub fn post_file<T: DeserializeOwned>(&self, path: &str, file: &std::path::Path) -> Result<T> {
        let mut f =
            std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
        let r = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Authorization", self.auth())
            .header("Content-Type", "application/x-tar")
            .send(ureq::SendBody::from_reader(&mut f));
        self.finish(path, r)
    }
}

/// A TCP stream whose writes never raise SIGPIPE. rustls writes with `write_vectored`,
/// which std does with `writev`, and `writev` to a connection the agent already closed
/// (after an exec's exit code) kills the CLI, which restores SIGPIPE's default for pipes
/// (`berth logs | head`); `write` is `send` with `MSG_NOSIGNAL`, an error instead.
struct NoSigPipe(std::net::TcpStream);

impl std::io::Read for NoSigPipe {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        std::io::Read::read(&mut self.0, buf)
    }
}

impl std::io::Write for NoSigPipe {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::Write::write(&mut self.0, buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::Write::flush(&mut self.0)
    }
}
