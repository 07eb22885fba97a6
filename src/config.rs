//! `berth.toml`, merged with flags: validated at load, passed down as a value (no globals).

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub const DEFAULT_CONFIG: &str = "/etc/berth/berth.toml";
pub const DEFAULT_DATA_DIR: &str = "/var/lib/berth";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is invalid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("router TLS: {0}")]
    Tls(String),
    #[error("{0}")]
    Metrics(String),
    #[error("invalid {what} {value:?}: {hint}")]
    Value {
        what: &'static str,
        value: String,
        hint: &'static str,
    },
}

/// The file's shape. Every field is optional; flags override it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub agent: AgentSection,
    #[serde(default)]
    pub router: RouterSection,
    #[serde(default)]
    pub metrics: MetricsSection,
    #[serde(default)]
    pub logs: LogsSection,
    #[serde(default)]
    pub cluster: ClusterSection,
}

/// `[cluster]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// Gossip (UDP) and the peer channel (TCP) on one address and port (default 0.0.0.0:7946).
    pub bind: Option<String>,
    /// The address the other members reach this one at (default: the bind address, or this
    /// host's address toward its default route when bound to every address).
    pub advertise: Option<String>,
    /// Members to rejoin through after a restart (those known at stop are tried first).
    #[serde(default)]
    pub seeds: Vec<String>,
    /// How long a member is lost before the instances of services that ask for
    /// `reschedule:on-node-failure` move off it (and its apps' ownership moves). Default "60s".
    pub reschedule_after: Option<String>,
}

/// The cluster settings, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    pub bind: SocketAddr,
    pub advertise: Option<SocketAddr>,
    pub seeds: Vec<SocketAddr>,
    pub reschedule_after_ms: u64,
}

pub const DEFAULT_CLUSTER_BIND: &str = "0.0.0.0:7946";

fn cluster_config(c: ClusterSection, flags: &AgentFlags) -> Result<ClusterConfig, ConfigError> {
    let bind_s = flags
        .cluster_bind
        .clone()
        .or(c.bind)
        .unwrap_or_else(|| DEFAULT_CLUSTER_BIND.into());
    let bind = bind_s.parse().map_err(|_| ConfigError::Value {
        what: "cluster bind address",
        value: bind_s.clone(),
        hint: "write ADDR:PORT, like 0.0.0.0:7946",
    })?;
    let advertise = optional_addr(
        "cluster advertise address",
        flags.cluster_advertise.clone().or(c.advertise),
        "write the IP:PORT other members reach this host at, like 10.0.0.12:7946",
    )?;
    if let Some(a) = advertise
        && (a.ip().is_unspecified() || a.port() == 0)
    {
        return Err(ConfigError::Value {
            what: "cluster advertise address",
            value: a.to_string(),
            hint: "give a concrete address and port the other members can reach",
        });
    }
    let seeds = c
        .seeds
        .iter()
        .map(|s| {
            s.parse().map_err(|_| ConfigError::Value {
                what: "cluster seed",
                value: s.clone(),
                hint: "write IP:PORT of another member, like 10.0.0.11:7946",
            })
        })
        .collect::<Result<_, _>>()?;
    let reschedule_after_ms = duration_setting(
        "cluster reschedule_after",
        c.reschedule_after,
        "60s",
        1000,
        "write a duration from 1s to 24h, like \"60s\" or \"5m\"",
    )?;
    Ok(ClusterConfig {
        bind,
        advertise,
        seeds,
        reschedule_after_ms,
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// How often to collect. Default "10s".
    pub interval: Option<String>,
    /// Serve `GET /metrics` without the API token. Default false.
    #[serde(default)]
    pub prometheus_public: bool,
    /// Bound of the durable outbox in MiB (oldest lines dropped beyond it). Default 256.
    pub outbox_max_mb: Option<u64>,
    #[serde(default)]
    pub influxdb: Vec<crate::metrics::sink::InfluxSink>,
    #[serde(default)]
    pub alarm: Vec<crate::metrics::history::AlarmRule>,
    /// Node and job events sent to the notifiers alarms use.
    #[serde(default)]
    pub notify: crate::metrics::history::EventNotify,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsSection {
    /// Keep lines this many days. Default 7.
    pub retain_days: Option<u64>,
    /// Keep at most this many MiB of lines. Default 1024.
    pub max_size_mb: Option<u64>,
    #[serde(default)]
    pub syslog: Vec<crate::metrics::sink::SyslogSink>,
}

/// `[logs]` after validation.
#[derive(Debug, Clone)]
pub struct LogsConfig {
    pub retain_days: u64,
    pub max_bytes: i64,
    pub syslog: Vec<crate::metrics::sink::SyslogSink>,
}

impl Default for LogsConfig {
    fn default() -> Self {
        LogsConfig {
            retain_days: 7,
            max_bytes: 1 << 30,
            syslog: Vec::new(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterSection {
    /// Address of the HTTP router, like "0.0.0.0:80". Default: no HTTP router.
    pub http: Option<String>,
    /// The domain that route prefixes hang off: `routing.port_80: shop` answers on
    /// `shop.<domain>`. Default: none (prefix routes are not served).
    pub domain: Option<String>,
    /// Address the TCP router ports (`lb.port_N: tcp://:P`) listen on. Default "0.0.0.0".
    pub tcp_address: Option<String>,
    /// Address of the HTTPS router, like "0.0.0.0:443". Default: none.
    pub https: Option<String>,
    /// Certificates for `https://` routes, chosen by SNI.
    #[serde(default)]
    pub tls: Vec<crate::router::tls::TlsCert>,
    /// Connections each router listener (HTTP, HTTPS, each TCP port) serves at once; more
    /// are closed at accept. Default 4096.
    pub max_connections: Option<usize>,
    /// How long a client has to send a whole request head, and how long a kept-alive
    /// connection may sit idle between requests. Default "10s".
    pub header_timeout: Option<String>,
    /// How long a TLS handshake may take. Default "10s".
    pub tls_handshake_timeout: Option<String>,
    /// Most bytes of a request head. Default 65536.
    pub max_header_bytes: Option<usize>,
    /// Proxies (CIDRs, like "10.0.0.0/8") whose `X-Forwarded-*` and `Forwarded` headers are
    /// kept. From anyone else the router sets them itself. Default: none.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// A path the router answers 200 on while it serves, for an outside load balancer's
    /// health check (on requests no route takes). Default "/haproxy-monitor"; "" for none.
    pub health_uri: Option<String>,
    /// An HTML file the router answers a 503 (no healthy instance) with. Default: a line
    /// of text naming the service.
    pub error_page: Option<PathBuf>,
    /// Write a line per request into the log store, as the router's own stream (`berth
    /// logs --router`), exported like any log. Default false.
    pub access_log: Option<bool>,
    /// How long a UDP flow of an `lb.port_N: udp://` port lives without a datagram.
    /// Default "60s".
    pub udp_idle_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSection {
    /// Where the state database, node id and API token live. Default /var/lib/berth.
    pub data_dir: Option<PathBuf>,
    /// Address of the HTTP API. Default 127.0.0.1:7878.
    pub listen: Option<String>,
    /// This node's name. Default: the host name.
    pub node_name: Option<String>,
    /// The Docker engine. Default unix:///var/run/docker.sock.
    pub docker_host: Option<String>,
    /// How often to reconcile even without engine events. Default "5s".
    pub reconcile_interval: Option<String>,
    /// How long a new version may take to get every instance healthy (on top of its probe's
    /// initial delay) before it is marked failed. Default "120s".
    pub version_deadline: Option<String>,
    /// An exec session (`berth exec`, the console's terminal) closes after this long with no
    /// byte either way. Default "15m", as the seed's console.
    pub exec_idle: Option<String>,
    /// Serve the API over TLS with this PEM certificate chain and key (a remote CLI then
    /// sends its token encrypted: `--api https://HOST:PORT`, `--ca-cert` to trust it).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

/// The agent's settings after file + flags, validated.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub node_name: String,
    pub docker_host: String,
    pub reconcile_interval_ms: u64,
    pub version_deadline_ms: u64,
    pub exec_idle_ms: u64,
    /// The API listener's TLS (loaded and checked at startup).
    pub api_tls: Option<std::sync::Arc<tokio_rustls::rustls::ServerConfig>>,
    pub router_http: Option<SocketAddr>,
    pub router_domain: String,
    pub router_tcp_ip: std::net::IpAddr,
    /// The HTTPS listener and its certificates (loaded and checked at startup).
    pub router_https: Option<SocketAddr>,
    pub router_tls: Option<std::sync::Arc<tokio_rustls::rustls::ServerConfig>>,
    /// The domains with a certificate (`*.x` for wildcards).
    pub router_tls_domains: Vec<String>,
    pub router_limits: crate::router::Limits,
    pub metrics: crate::metrics::MetricsConfig,
    pub logs: LogsConfig,
    pub cluster: ClusterConfig,
}

/// `berth agent` flags (None = not given; the file, then the default, applies).
#[derive(Debug, Default, Clone, clap::Args)]
pub struct AgentFlags {
    /// Config file (default /etc/berth/berth.toml, optional there).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// State directory (default /var/lib/berth).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// API address (default 127.0.0.1:7878).
    #[arg(long)]
    pub listen: Option<String>,
    /// This node's name (default: the host name).
    #[arg(long)]
    pub node_name: Option<String>,
    /// Docker engine (default unix:///var/run/docker.sock).
    #[arg(long)]
    pub docker_host: Option<String>,
    /// Serve the HTTP router on ADDR:PORT (like 0.0.0.0:80).
    #[arg(long)]
    pub router_http: Option<String>,
    /// Domain for prefix routes (`routing.port_80: shop` -> shop.DOMAIN).
    #[arg(long)]
    pub router_domain: Option<String>,
    /// Serve `https://` routes on ADDR:PORT (like 0.0.0.0:443), with the [[router.tls]]
    /// certificates of berth.toml.
    #[arg(long)]
    pub router_https: Option<String>,
    /// Gossip and peer address of the cluster (default 0.0.0.0:7946; `[cluster] bind`).
    #[arg(long)]
    pub cluster_bind: Option<String>,
    /// The address other members reach this host at (`[cluster] advertise`).
    #[arg(long)]
    pub cluster_advertise: Option<String>,
}

/// A duration setting: `value` or `default`, from `min_ms` to a day.
fn duration_setting(
    what: &'static str,
    value: Option<String>,
    default: &str,
    min_ms: u64,
    hint: &'static str,
) -> Result<u64, ConfigError> {
    // At most a day: longer is a mistake, and keeps the arithmetic on it far from overflow.
    const MAX_MS: u64 = 86_400_000;
    let v = value.unwrap_or_else(|| default.into());
    crate::spec::parse_duration_ms(&v)
        .filter(|ms| (min_ms..=MAX_MS).contains(ms))
        .ok_or(ConfigError::Value {
            what,
            value: v,
            hint,
        })
}

fn read_file(path: &Path, explicit: bool) -> Result<FileConfig, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        }),
        // The default file is optional; one named with --config is not.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            Ok(FileConfig::default())
        }
        Err(source) => Err(ConfigError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// An optional `ADDR:PORT` setting (empty = not set).
fn optional_addr(
    what: &'static str,
    value: Option<String>,
    hint: &'static str,
) -> Result<Option<SocketAddr>, ConfigError> {
    match value.filter(|s| !s.is_empty()) {
        Some(s) => s.parse().map(Some).map_err(|_| ConfigError::Value {
            what,
            value: s,
            hint,
        }),
        None => Ok(None),
    }
}

fn metrics_config(mut m: MetricsSection) -> Result<crate::metrics::MetricsConfig, ConfigError> {
    let interval_ms = duration_setting(
        "metrics interval",
        m.interval,
        "10s",
        1000,
        "write a duration from 1s to 24h, like \"10s\"",
    )?;
    for s in &mut m.influxdb {
        s.read_secret_files().map_err(ConfigError::Metrics)?;
        s.validate().map_err(ConfigError::Metrics)?;
    }
    let mut names = std::collections::BTreeSet::new();
    for a in &m.alarm {
        a.validate().map_err(ConfigError::Metrics)?;
        if !names.insert(a.name.clone()) {
            return Err(ConfigError::Metrics(format!(
                "alarm {} is defined twice: give each [[metrics.alarm]] its own name",
                a.name
            )));
        }
    }
    m.notify.validate().map_err(ConfigError::Metrics)?;
    let mb = m.outbox_max_mb.unwrap_or(256);
    if mb == 0 || mb > 1 << 20 {
        return Err(ConfigError::Value {
            what: "metrics outbox_max_mb",
            value: mb.to_string(),
            hint: "write a size in MiB between 1 and 1048576",
        });
    }
    Ok(crate::metrics::MetricsConfig {
        interval_ms,
        prometheus_public: m.prometheus_public,
        influxdb: m.influxdb,
        outbox_max_bytes: (mb << 20) as i64,
        alarms: m.alarm,
        notify: m.notify,
    })
}

fn logs_config(l: LogsSection) -> Result<LogsConfig, ConfigError> {
    for s in &l.syslog {
        s.validate().map_err(ConfigError::Metrics)?;
    }
    let days = l.retain_days.unwrap_or(7);
    let mb = l.max_size_mb.unwrap_or(1024);
    if days == 0 || days > 3650 || mb == 0 || mb > 1 << 24 {
        return Err(ConfigError::Value {
            what: "logs retention",
            value: format!("retain_days = {days}, max_size_mb = {mb}"),
            hint: "retain_days 1-3650 and max_size_mb 1-16777216",
        });
    }
    Ok(LogsConfig {
        retain_days: days,
        max_bytes: (mb << 20) as i64,
        syslog: l.syslog,
    })
}

/// The OS host name ("localhost" when it cannot be read): the default node name and
/// Telegraf's `host` tag.
pub fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

pub fn load_agent(flags: &AgentFlags) -> Result<AgentConfig, ConfigError> {
    let (path, explicit) = match &flags.config {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from(DEFAULT_CONFIG), false),
    };
    let whole = read_file(&path, explicit)?;
    let (file, router) = (whole.agent, whole.router);
    let metrics = metrics_config(whole.metrics)?;
    let logs = logs_config(whole.logs)?;
    let cluster = cluster_config(whole.cluster, flags)?;
    let router_limits = router_limits(&router)?;
    let router_http = optional_addr(
        "router http address",
        flags.router_http.clone().or(router.http),
        "write ADDR:PORT, like 0.0.0.0:80",
    )?;
    let router_https = optional_addr(
        "router https address",
        flags.router_https.clone().or(router.https),
        "write ADDR:PORT, like 0.0.0.0:443",
    )?;
    // Without [[router.tls]] the listener serves the templates' certificates
    // (`proxy.SSL_CERT`) only.
    let router_tls = match router_https.is_some() || !router.tls.is_empty() {
        true => Some(crate::router::tls::server_config(&router.tls).map_err(ConfigError::Tls)?),
        false => None,
    };
    let router_tls_domains = router
        .tls
        .iter()
        .map(|t| t.domain.trim().trim_end_matches('.').to_ascii_lowercase())
        .collect();
    let router_domain = flags
        .router_domain
        .clone()
        .or(router.domain)
        .unwrap_or_default()
        .trim_matches('.')
        .to_ascii_lowercase();
    let tcp = router.tcp_address.unwrap_or_else(|| "0.0.0.0".into());
    let router_tcp_ip = tcp.parse().map_err(|_| ConfigError::Value {
        what: "router tcp_address",
        value: tcp.clone(),
        hint: "write an IP address, like 0.0.0.0",
    })?;
    let listen_s = flags
        .listen
        .clone()
        .or(file.listen)
        .unwrap_or_else(|| DEFAULT_LISTEN.into());
    let listen = listen_s.parse().map_err(|_| ConfigError::Value {
        what: "listen address",
        value: listen_s.clone(),
        hint: "write ADDR:PORT, like 127.0.0.1:7878",
    })?;
    let node_name = flags
        .node_name
        .clone()
        .or(file.node_name)
        .unwrap_or_else(host_name);
    if node_name.is_empty() || node_name.len() > 64 || node_name.contains(char::is_whitespace) {
        return Err(ConfigError::Value {
            what: "node name",
            value: node_name,
            hint: "use 1-64 characters without spaces",
        });
    }
    let docker_host = flags
        .docker_host
        .clone()
        .or(file.docker_host)
        .or_else(|| std::env::var("DOCKER_HOST").ok())
        .unwrap_or_else(|| DEFAULT_DOCKER_HOST.into());
    if !(docker_host.starts_with("unix://")
        || docker_host.starts_with("tcp://")
        || docker_host.starts_with("http://"))
    {
        return Err(ConfigError::Value {
            what: "docker host",
            value: docker_host,
            hint: "use unix:///var/run/docker.sock or tcp://HOST:PORT",
        });
    }
    let reconcile_interval_ms = duration_setting(
        "reconcile_interval",
        file.reconcile_interval,
        "5s",
        100,
        "write a duration from 100ms to 24h, like 5s",
    )?;
    let version_deadline_ms = duration_setting(
        "version_deadline",
        file.version_deadline,
        "120s",
        1000,
        "write a duration from 1s to 24h, like 120s",
    )?;
    let exec_idle_ms = duration_setting(
        "exec_idle",
        file.exec_idle,
        "15m",
        1000,
        "write a duration from 1s to 24h, like 15m",
    )?;
    let api_tls = match (&file.tls_cert, &file.tls_key) {
        (None, None) => None,
        (Some(c), Some(k)) => Some(
            crate::router::tls::single_config(c, k)
                .map_err(|e| ConfigError::Tls(format!("[agent] tls_cert/tls_key: {e}")))?,
        ),
        _ => {
            return Err(ConfigError::Tls(
                "[agent] needs both tls_cert and tls_key (PEM files) to serve the API over TLS"
                    .into(),
            ));
        }
    };
    Ok(AgentConfig {
        exec_idle_ms,
        api_tls,
        data_dir: flags
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| DEFAULT_DATA_DIR.into()),
        listen,
        node_name,
        docker_host,
        reconcile_interval_ms,
        version_deadline_ms,
        router_http,
        router_domain,
        router_tcp_ip,
        router_https,
        router_tls,
        router_tls_domains,
        router_limits,
        metrics,
        logs,
        cluster,
    })
}

/// The router's bounds from `[router]`.
fn router_limits(r: &RouterSection) -> Result<crate::router::Limits, ConfigError> {
    let d = crate::router::Limits::default();
    let ms = |what, v: &Option<String>, default: std::time::Duration| {
        duration_setting(
            what,
            v.clone(),
            &format!("{}ms", default.as_millis()),
            100,
            "write a duration from 100ms to 24h, like 10s",
        )
        .map(std::time::Duration::from_millis)
    };
    let trusted = r
        .trusted_proxies
        .iter()
        .map(|c| {
            crate::router::Cidr::parse(c).ok_or(ConfigError::Value {
                what: "[router] trusted_proxies entry",
                value: c.clone(),
                hint: "write an address or a CIDR, like 10.0.0.0/8 or 192.168.1.5",
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let max_connections = r.max_connections.unwrap_or(d.max_connections);
    if !(1..=1_000_000).contains(&max_connections) {
        return Err(ConfigError::Value {
            what: "[router] max_connections",
            value: max_connections.to_string(),
            hint: "write a number from 1 to 1000000",
        });
    }
    let max_header_bytes = r.max_header_bytes.unwrap_or(d.max_header_bytes);
    if !(8192..=1 << 20).contains(&max_header_bytes) {
        return Err(ConfigError::Value {
            what: "[router] max_header_bytes",
            value: max_header_bytes.to_string(),
            hint: "write a number from 8192 to 1048576",
        });
    }
    Ok(crate::router::Limits {
        max_connections,
        header_timeout: ms(
            "[router] header_timeout",
            &r.header_timeout,
            d.header_timeout,
        )?,
        tls_handshake_timeout: ms(
            "[router] tls_handshake_timeout",
            &r.tls_handshake_timeout,
            d.tls_handshake_timeout,
        )?,
        max_header_bytes,
        trusted_proxies: trusted,
        health_uri: match &r.health_uri {
            None => d.health_uri,
            Some(u) if u.is_empty() => String::new(),
            Some(u) if u.starts_with('/') && u.len() <= 256 && !u.contains(['?', '#', ' ']) => {
                u.clone()
            }
            Some(u) => {
                return Err(ConfigError::Value {
                    what: "[router] health_uri",
                    value: u.clone(),
                    hint: "write a path like /haproxy-monitor (or \"\" for none)",
                });
            }
        },
        error_page: match &r.error_page {
            None => None,
            Some(p) => Some(std::sync::Arc::new(read_error_page(p)?)),
        },
        access_log: r.access_log.unwrap_or(d.access_log),
        udp_idle_timeout: ms(
            "[router] udp_idle_timeout",
            &r.udp_idle_timeout,
            d.udp_idle_timeout,
        )?,
    })
}

/// The `[router] error_page` file, read once (at most 256 KiB).
fn read_error_page(p: &std::path::Path) -> Result<bytes::Bytes, ConfigError> {
    use std::io::Read;
    let bad = |why: String| ConfigError::Value {
        what: "[router] error_page",
        value: format!("{} ({why})", p.display()),
        hint: "write the path of a readable HTML file of at most 256 KiB",
    };
    let f = std::fs::File::open(p).map_err(|e| bad(e.to_string()))?;
    let mut buf = Vec::new();
    f.take(crate::router::MAX_ERROR_PAGE + 1)
        .read_to_end(&mut buf)
        .map_err(|e| bad(e.to_string()))?;
    if buf.len() as u64 > crate::router::MAX_ERROR_PAGE {
        return Err(bad("over 256 KiB".into()));
    }
    Ok(bytes::Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The packaged /etc/berth/berth.toml with its commented settings switched on: the lines
    /// of array tables (`[[...]]` samples) only when `samples`, empty values never.
    fn packaged(samples: bool) -> String {
        let text = include_str!("../packaging/berth.toml");
        let mut out = String::new();
        let mut in_sample = false;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("#[[") {
                in_sample = true;
                if samples {
                    out.push_str(&format!("[[{rest}\n"));
                }
            } else if line.starts_with('[') {
                in_sample = false;
                out.push_str(line);
                out.push('\n');
            } else if let Some(setting) = line.strip_prefix('#').filter(|l| {
                (samples || !in_sample)
                    && l.split_once(" = ")
                        .is_some_and(|(k, v)| !k.contains(' ') && v != "\"\"")
            }) {
                out.push_str(setting);
                out.push('\n');
            }
        }
        out
    }

    #[test]
    fn the_packaged_config_names_real_options_with_their_defaults() {
        // As shipped (all commented) it is a valid file.
        toml::from_str::<FileConfig>(include_str!("../packaging/berth.toml")).expect("as shipped");
        // Every option it shows, samples included, is one the agent knows.
        let all = packaged(true);
        let f: FileConfig = toml::from_str(&all).unwrap_or_else(|e| panic!("{e}\n{all}"));
        assert_eq!((f.metrics.influxdb.len(), f.metrics.alarm.len()), (1, 1));
        assert_eq!((f.router.tls.len(), f.logs.syslog.len()), (1, 1));
        // The defaults it states are the defaults.
        let dir = tempfile::tempdir().expect("tmp");
        let (stated, empty) = (
            dir.path().join("stated.toml"),
            dir.path().join("empty.toml"),
        );
        std::fs::write(&stated, packaged(false)).expect("write");
        std::fs::write(&empty, "").expect("write");
        let load = |p: &Path| {
            load_agent(&AgentFlags {
                config: Some(p.to_path_buf()),
                ..Default::default()
            })
            .expect("loads")
        };
        let (a, b) = (load(&stated), load(&empty));
        assert_eq!(
            format!(
                "{:?}",
                (
                    &a.data_dir,
                    a.listen,
                    &a.docker_host,
                    a.reconcile_interval_ms,
                    a.version_deadline_ms,
                    a.router_tcp_ip,
                    &a.router_limits
                )
            ),
            format!(
                "{:?}",
                (
                    &b.data_dir,
                    b.listen,
                    &b.docker_host,
                    b.reconcile_interval_ms,
                    b.version_deadline_ms,
                    b.router_tcp_ip,
                    &b.router_limits
                )
            )
        );
        assert_eq!(
            (
                a.metrics.interval_ms,
                a.metrics.prometheus_public,
                a.metrics.outbox_max_bytes
            ),
            (
                b.metrics.interval_ms,
                b.metrics.prometheus_public,
                b.metrics.outbox_max_bytes
            )
        );
        assert_eq!(
            (a.logs.retain_days, a.logs.max_bytes),
            (b.logs.retain_days, b.logs.max_bytes)
        );
    }

    #[test]
    fn flags_override_file_and_bad_values_are_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("berth.toml");
        std::fs::write(
            &p,
            "[agent]\nlisten = \"127.0.0.1:9000\"\nnode_name = \"n1\"\n",
        )
        .expect("write");
        let mut f = AgentFlags {
            config: Some(p.clone()),
            ..Default::default()
        };
        let c = load_agent(&f).expect("load");
        assert_eq!((c.listen.port(), c.node_name.as_str()), (9000, "n1"));
        f.listen = Some("127.0.0.1:9100".into());
        assert_eq!(load_agent(&f).expect("load").listen.port(), 9100);
        f.listen = Some("nonsense".into());
        assert!(load_agent(&f).is_err());
        std::fs::write(&p, "[agent]\nlisten_typo = 1\n").expect("write");
        f.listen = None;
        assert!(matches!(load_agent(&f), Err(ConfigError::Parse { .. })));
        f.config = Some(dir.path().join("missing.toml"));
        assert!(matches!(load_agent(&f), Err(ConfigError::Read { .. })));
    }

    #[test]
    fn the_cluster_section_is_checked() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("berth.toml");
        let load = |text: &str, flags: AgentFlags| {
            std::fs::write(&p, text).expect("write");
            load_agent(&AgentFlags {
                config: Some(p.clone()),
                ..flags
            })
        };
        let c = load("", AgentFlags::default()).expect("defaults");
        assert_eq!(c.cluster.bind.to_string(), DEFAULT_CLUSTER_BIND);
        assert_eq!((c.cluster.advertise, c.cluster.seeds.len()), (None, 0));
        let c = load(
            "[cluster]\nbind = \"10.0.0.1:8000\"\nadvertise = \"10.0.0.1:8000\"\nseeds = [\"10.0.0.2:7946\"]\n",
            AgentFlags {
                cluster_bind: Some("127.0.0.1:9946".into()),
                ..Default::default()
            },
        )
        .expect("load");
        assert_eq!(c.cluster.bind.port(), 9946, "the flag wins");
        assert_eq!(c.cluster.seeds[0].port(), 7946);
        for (text, says) in [
            ("[cluster]\nbind = \"everywhere\"\n", "cluster bind"),
            (
                "[cluster]\nadvertise = \"0.0.0.0:7946\"\n",
                "concrete address",
            ),
            ("[cluster]\nseeds = [\"host2\"]\n", "cluster seed"),
            ("[cluster]\nport = 1\n", "port"),
        ] {
            let e = load(text, AgentFlags::default())
                .expect_err(text)
                .to_string();
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
