//! The seed's `acs/proxy` (HAProxy) labels, served by berth's own router: a service labelled
//! `proxy.VIRTUAL_HOST` is routed by Host (and path), `VIRTUAL_HOST_WEIGHT` orders the
//! rules, `BALANCE` picks the instance, `COOKIE` keeps a client on its instance,
//! `FORCE_SSL` redirects plain HTTP to HTTPS, `HEALTH_CHECK` becomes a TCP probe,
//! `required` makes the service the default backend, `EXCLUDE_PORTS` leaves ports out.
//! The `acs/proxy` service itself is not run (`is_proxy_service`): the router takes its
//! role, and the ports it publishes become router listeners.
//!
//! Invariants: pure; what cannot mean anything here is accepted with a warning saying what
//! berth does instead.

use super::{SpecError, invalid};
use crate::model::{
    Balance, FileSource, LabelCert, Probe, ProbeKind, Protocol, Route, Scheme, ServiceSpec,
};

/// The `proxy.*` labels of one service, gathered before they are joined.
#[derive(Debug, Default)]
pub(crate) struct ProxyParts {
    hosts: Option<(String, String)>,
    weight: u32,
    force_ssl: bool,
    exclude: Vec<u16>,
    health_check: Option<String>,
    required: bool,
    cert: Option<(String, LabelCert)>,
}

impl ProxyParts {
    /// Takes `key` (after `proxy.`) when it is one of the acs/proxy labels.
    pub fn label(
        &mut self,
        svc: &str,
        key: &str,
        k: &str,
        v: &str,
        s: &mut ServiceSpec,
        warnings: &mut Vec<String>,
    ) -> Result<(), SpecError> {
        let loc = format!("service {svc:?}, label `{k}`");
        match key.to_ascii_uppercase().as_str() {
            "VIRTUAL_HOST" => self.hosts = Some((k.to_string(), v.to_string())),
            "VIRTUAL_HOST_WEIGHT" => {
                self.weight = v.trim().parse::<u32>().map_err(|_| {
                    invalid(&loc, format!("{v:?} is not a whole number (the rule order, higher first)"))
                })?
            }
            "BALANCE" => {
                s.ext.balance = match v.trim() {
                    "roundrobin" | "static-rr" => Balance::Roundrobin,
                    "source" => Balance::Source,
                    "leastconn" => Balance::Leastconn,
                    other => {
                        return Err(invalid(
                            &loc,
                            format!(
                                "{other:?} is not a balance berth's router knows: use roundrobin, static-rr, source or leastconn"
                            ),
                        ));
                    }
                }
            }
            "COOKIE" => {
                s.ext.session_sticky = true;
                warnings.push(format!(
                    "service {svc:?}: `{k}` makes clients sticky with the router's own cookie (berth_sticky), not {:?}",
                    v.split_whitespace().next().unwrap_or_default()
                ));
            }
            "FORCE_SSL" => self.force_ssl = !matches!(v.trim(), "" | "false" | "no" | "0"),
            "EXCLUDE_PORTS" => {
                for p in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    self.exclude.push(p.parse().map_err(|_| {
                        invalid(&loc, format!("{p:?} is not a port number"))
                    })?);
                }
            }
            "HEALTH_CHECK" => self.health_check = Some(v.to_string()),
            "REQUIRED" => {
                self.required = super::values::parse_bool(v.trim()).ok_or_else(|| {
                    invalid(&loc, format!("{v:?}: write \"true\" or \"false\""))
                })?
            }
            upper @ ("SSL_CERT" | "DEFAULT_SSL_CERT") => {
                if let Some((other, _)) = &self.cert {
                    return Err(invalid(
                        &loc,
                        format!("the service gives `{other}` too: give one certificate (DEFAULT_SSL_CERT is also the router's default)"),
                    ));
                }
                let cert = parse_label_cert(v, &loc, upper == "DEFAULT_SSL_CERT")?;
                self.cert = Some((k.to_string(), cert));
            }
            _ => warnings.push(format!(
                "service {svc:?}: `{k}` is an HAProxy setting of acs/proxy that berth's router does not have: kept, but it has no effect"
            )),
        }
        Ok(())
    }

    /// Joins the labels into the service's routes (on its first exposed TCP port not
    /// excluded), its default-backend flag and its probe.
    pub fn finish(
        mut self,
        svc: &str,
        s: &mut ServiceSpec,
        warnings: &mut Vec<String>,
    ) -> Result<(), SpecError> {
        if let Some((k, cert)) = self.cert.take() {
            if self.hosts.is_none() && s.ext.routing.is_empty() {
                warnings.push(format!(
                    "service {svc:?}: `{k}` is a certificate for the service's routes, and it has none: give it proxy.VIRTUAL_HOST or a routing label"
                ));
            }
            s.ext.ssl_cert = Some(cert);
        }
        if self.hosts.is_none() && !self.required {
            if self.force_ssl || self.weight > 0 {
                warnings.push(format!(
                    "service {svc:?}: proxy.FORCE_SSL and proxy.VIRTUAL_HOST_WEIGHT act on proxy.VIRTUAL_HOST, which it has not"
                ));
            }
            return Ok(());
        }
        let port = s
            .ports
            .iter()
            .filter(|p| p.protocol == Protocol::Tcp)
            .map(|p| p.container_port)
            .chain(s.expose.iter().copied())
            .find(|p| !self.exclude.contains(p))
            .ok_or_else(|| {
                invalid(
                    format!("service {svc:?}, label proxy.VIRTUAL_HOST"),
                    "the service exposes no port for the router to reach: list it in `expose:` or `ports:` (acs/proxy needs the same)",
                )
            })?;
        s.ext.default_backend = self.required.then_some(port);
        if let Some((k, v)) = &self.hosts {
            let loc = format!("service {svc:?}, label `{k}`");
            let mut routes = parse_virtual_hosts(v, &loc)?;
            for r in &mut routes {
                r.weight = self.weight;
                if self.force_ssl {
                    r.scheme = Scheme::Https;
                }
            }
            let list = s.ext.routing.entry(port).or_default();
            for r in routes {
                if !list.contains(&r) {
                    list.push(r);
                }
            }
        }
        if let Some(hc) = self.health_check {
            if s.ext.probe.is_none() {
                let timeout = hc
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .windows(2)
                    .find(|w| w[0] == "inter")
                    .and_then(|w| w[1].trim_end_matches("ms").parse::<u32>().ok())
                    .map(|ms| (ms / 1000).clamp(1, 60))
                    .unwrap_or(2);
                s.ext.probe = Some(Probe {
                    kind: ProbeKind::Tcp { port },
                    timeout_seconds: timeout,
                    initial_delay_seconds: 0,
                });
                warnings.push(format!(
                    "service {svc:?}: proxy.HEALTH_CHECK {hc:?} is a TCP probe of port {port} here (berth's probes decide which instances the router uses)"
                ));
            } else {
                warnings.push(format!(
                    "service {svc:?}: proxy.HEALTH_CHECK is left aside: the service's probe label decides which instances the router uses"
                ));
            }
        }
        Ok(())
    }
}

/// `VIRTUAL_HOST`: comma-separated `[scheme://]host[:port][/path]`; schemes http, https,
/// ws, wss (WebSockets pass through the router's HTTP routes); a wildcard is a whole first
/// label (`*.example.com`); the port is the router port it is served on.
pub fn parse_virtual_hosts(v: &str, loc: &str) -> Result<Vec<Route>, SpecError> {
    let mut out = Vec::new();
    for entry in v.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (scheme, rest) = match entry.split_once("://") {
            Some((s, r)) => match s.to_ascii_lowercase().as_str() {
                "http" | "ws" => (Scheme::Http, r),
                "https" | "wss" => (Scheme::Https, r),
                other => {
                    return Err(invalid(
                        loc,
                        format!("{entry:?} uses scheme {other:?}: use http, https, ws or wss"),
                    ));
                }
            },
            None => (Scheme::Http, entry),
        };
        let (hostport, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                    invalid(loc, format!("{entry:?}: {p:?} is not a port number"))
                })?,
            ),
            None => (hostport, 0),
        };
        // The router's own ports: the scheme's default means its HTTP or HTTPS listener.
        let port = match (scheme, port) {
            (Scheme::Http, 80) | (Scheme::Https, 443) => 0,
            (_, p) => p,
        };
        let mut r = super::ext::parse_routes(&format!("{host}{path}"), loc)?
            .pop()
            .ok_or_else(|| invalid(loc, format!("{entry:?}: no host")))?;
        if r.prefix {
            return Err(invalid(
                loc,
                format!("{entry:?}: write a full domain name (appone.example.com)"),
            ));
        }
        r.scheme = scheme;
        r.port = port;
        out.push(r);
    }
    if out.is_empty() {
        return Err(invalid(
            loc,
            "no virtual host given: write http://appone.example.com[,https://...]",
        ));
    }
    Ok(out)
}

/// `SSL_CERT`/`DEFAULT_SSL_CERT`: one PEM with the private key and the certificate chain
/// (acs/proxy's form puts the key first and joins the lines with `\n`, which is read as a
/// line break). Each block's syntax is checked here; whether the key belongs to the
/// certificate, and which names it covers, is the deploy's check (it needs the TLS stack).
pub fn parse_label_cert(v: &str, loc: &str, default: bool) -> Result<LabelCert, SpecError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let text = v.replace("\\r\\n", "\n").replace("\\n", "\n");
    let how = "write the private key's PEM block, then the certificate's (and its chain), lines joined by \\n or real line breaks";
    let (mut certs, mut keys) = (Vec::new(), Vec::new());
    let mut rest = text.as_str();
    while let Some(i) = rest.find("-----BEGIN ") {
        let after = &rest[i + "-----BEGIN ".len()..];
        let label = after
            .find("-----")
            .map(|j| &after[..j])
            .filter(|l| !l.contains('\n'))
            .ok_or_else(|| invalid(loc, format!("a -----BEGIN line is not closed: {how}")))?;
        let end = format!("-----END {label}-----");
        let len = rest[i..]
            .find(&end)
            .ok_or_else(|| invalid(loc, format!("the {label} block has no {end} line: {how}")))?
            + end.len();
        let block = &rest[i..i + len];
        match label {
            "CERTIFICATE" => {
                CertificateDer::from_pem_slice(block.as_bytes()).map_err(|e| {
                    invalid(
                        loc,
                        format!(
                            "certificate {} is not readable PEM ({e}): {how}",
                            certs.len() + 1
                        ),
                    )
                })?;
                certs.push(block);
            }
            l if l.ends_with("PRIVATE KEY") => {
                PrivateKeyDer::from_pem_slice(block.as_bytes()).map_err(|e| {
                    invalid(
                        loc,
                        format!("the private key is not readable PEM ({e}): {how}"),
                    )
                })?;
                keys.push(block);
            }
            other => {
                return Err(invalid(
                    loc,
                    format!("a {other:?} block is neither a certificate nor a private key: {how}"),
                ));
            }
        }
        rest = &rest[i + len..];
    }
    let key_pem = match keys[..] {
        [k] => format!("{k}\n"),
        [] => {
            return Err(invalid(
                loc,
                format!("no private key (-----BEGIN PRIVATE KEY-----) in it: {how}"),
            ));
        }
        _ => {
            return Err(invalid(
                loc,
                format!(
                    "{} private keys in it: give the one of the certificate",
                    keys.len()
                ),
            ));
        }
    };
    if certs.is_empty() {
        return Err(invalid(
            loc,
            format!("no certificate (-----BEGIN CERTIFICATE-----) in it: {how}"),
        ));
    }
    Ok(LabelCert {
        chain: certs.join("\n") + "\n",
        key: FileSource::Value {
            digest: super::files::digest(&key_pem),
        },
        default,
        key_pem,
    })
}

/// Takes the acs/proxy services out of the template (berth's router does their work) with a
/// warning each, and drops the other services' dependencies and links on them. Returns the
/// host ports they published, which the router serves Host-routed HTTP on.
pub fn take_proxy_services(
    services: &mut std::collections::BTreeMap<String, ServiceSpec>,
    warnings: &mut Vec<String>,
) -> Vec<u16> {
    let names: Vec<String> = services
        .iter()
        .filter(|(_, s)| is_proxy_service(&s.image, &s.ext.unknown))
        .map(|(n, _)| n.clone())
        .collect();
    let mut ports = Vec::new();
    for name in &names {
        let Some(s) = services.remove(name) else {
            continue;
        };
        // What its own labels said is moot: it does not run.
        let prefix = format!("service {name:?}:");
        warnings.retain(|w| !w.starts_with(&prefix));
        let published: Vec<u16> = s
            .ports
            .iter()
            .filter(|p| p.protocol == Protocol::Tcp)
            .filter_map(|p| p.host_port)
            .collect();
        let settings: Vec<&str> = s
            .environment
            .keys()
            .map(String::as_str)
            .filter(|k| {
                k.starts_with("EXTRA_")
                    || k.starts_with("STATS_")
                    || matches!(
                        *k,
                        "ADDITIONAL_SERVICES" | "BALANCE" | "MODE" | "OPTION" | "TIMEOUT"
                    )
            })
            .collect();
        warnings.push(format!(
            "service {name:?} is the acs/proxy load balancer ({}): berth's router takes its role (it routes the services labelled proxy.VIRTUAL_HOST), so it is not run{}{}",
            s.image,
            match published.is_empty() {
                true => String::new(),
                false => format!(
                    "; its ports {} are router listeners",
                    published.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")
                ),
            },
            match settings.is_empty() {
                true => String::new(),
                false => format!(
                    "; its HAProxy settings {} have no effect (berth.toml's [router] sets the router's 503 page, access log and health URI)",
                    settings.join(", ")
                ),
            }
        ));
        if s.environment.contains_key("DEFAULT_SSL_CERT") {
            warnings.push(format!(
                "service {name:?}: its DEFAULT_SSL_CERT is not read (the service is not run): give it as the label aliyun.proxy.DEFAULT_SSL_CERT of a routed service, or put it in berth.toml's [[router.tls]]"
            ));
        }
        ports.extend(published);
    }
    for s in services.values_mut() {
        s.depends_on.retain(|d| !names.contains(d));
        s.links.retain(|l| !names.contains(&l.target));
    }
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// Is this the acs/proxy service (its image, or `custom_addon`/`addon: proxy`)?
pub fn is_proxy_service(image: &str, labels: &std::collections::BTreeMap<String, String>) -> bool {
    let name = image.split(['@']).next().unwrap_or(image);
    let repo = name
        .rsplit_once(':')
        .filter(|(_, t)| !t.contains('/'))
        .map_or(name, |(r, _)| r);
    repo.ends_with("acs/proxy")
        || ["berth.custom_addon", "berth.addon"]
            .iter()
            .any(|k| labels.get(*k).is_some_and(|v| v.trim() == "proxy"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_hosts_take_scheme_port_path_and_wildcards() {
        let r = parse_virtual_hosts(
            "http://appone.example.com, https://*.example.com/api/, ws://chat.example.com:8080, wss://x.example.com:443",
            "l",
        )
        .expect("hosts");
        let got: Vec<(Scheme, &str, &str, u16)> = r
            .iter()
            .map(|r| (r.scheme, r.domain.as_str(), r.path.as_str(), r.port))
            .collect();
        assert_eq!(
            got,
            vec![
                (Scheme::Http, "appone.example.com", "", 0),
                (Scheme::Https, "*.example.com", "/api", 0),
                (Scheme::Http, "chat.example.com", "", 8080),
                (Scheme::Https, "x.example.com", "", 0),
            ]
        );
        for (bad, says) in [
            ("ftp://a.example.com", "scheme"),
            ("http://a.example.com:http", "not a port"),
            ("http://a*.example.com", "wildcard"),
            ("appone", "full domain"),
            (" , ", "no virtual host"),
        ] {
            let e = parse_virtual_hosts(bad, "l").expect_err(bad).to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn a_label_certificate_is_split_into_chain_and_key_in_either_line_form() {
        let ck = rcgen::generate_simple_self_signed(vec!["a.example.com".into()]).expect("ck");
        let (key, cert) = (ck.signing_key.serialize_pem(), ck.cert.pem());
        // acs/proxy's form (key first, `\n` between lines) and real line breaks, cert first.
        for text in [
            format!("{key}{cert}").replace('\n', "\\n"),
            format!("{cert}\n{key}"),
        ] {
            let c = parse_label_cert(&text, "l", true).expect("cert");
            assert_eq!(
                (c.chain.trim(), c.key_pem.trim()),
                (cert.trim(), key.trim())
            );
            assert!(c.default);
            assert!(matches!(c.key, FileSource::Value { .. }));
        }
        for (bad, says) in [
            (cert.clone(), "no private key"),
            (key.clone(), "no certificate"),
            (format!("{key}{key}{cert}"), "2 private keys"),
            (
                format!("{key}-----BEGIN CERTIFICATE-----\nAAA"),
                "has no -----END CERTIFICATE-----",
            ),
            (
                format!("{key}-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----"),
                "not readable PEM",
            ),
            (
                format!("{key}{cert}-----BEGIN X509 CRL-----\nAA==\n-----END X509 CRL-----"),
                "neither a certificate",
            ),
            ("/etc/ssl/cert.pem".to_string(), "no private key"),
        ] {
            let e = parse_label_cert(&bad, "l", false)
                .expect_err(says)
                .to_string();
            assert!(e.contains(says), "{says}: {e}");
        }
    }

    #[test]
    fn the_proxy_service_is_known_by_its_image_or_addon_label() {
        let none = Default::default();
        assert!(is_proxy_service(
            "registry.aliyuncs.com/acs/proxy:0.5",
            &none
        ));
        assert!(is_proxy_service(
            "registry.cn-hangzhou.aliyuncs.com/acs/proxy",
            &none
        ));
        assert!(!is_proxy_service("nginx:latest", &none));
        assert!(!is_proxy_service("example.com/acs/proxy-tools:1", &none));
        let addon = [("berth.custom_addon".to_string(), "proxy".to_string())].into();
        assert!(is_proxy_service("haproxy:2", &addon));
    }
}
