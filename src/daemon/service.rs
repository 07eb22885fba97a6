//! The daemon as a system service: readiness and reload notices to systemd (`Type=notify`),
//! signals (SIGHUP reloads, SIGTERM/SIGINT stop), and applying a reloaded config.
//!
//! Invariants: a reload either takes effect whole or not at all (an invalid file leaves the
//! running settings as they were, with an event saying why); only `[metrics]` and `[logs]`
//! change at run time, every other change is reported as needing a restart.

use crate::agent::{Core, Settings};
use crate::config::{AgentConfig, ConfigError};
use std::sync::Arc;

/// Reads the config again (the same file and flags as at start).
pub type Reloader = Box<dyn Fn() -> Result<AgentConfig, ConfigError> + Send + Sync>;

/// Sends `state` (`READY=1`, `RELOADING=1`, `STOPPING=1`, `STATUS=...`) to systemd when it
/// started us with `Type=notify`; does nothing otherwise.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|a| sock.send_to_addr(state.as_bytes(), &a))
    } else {
        sock.send_to(state.as_bytes(), &path)
    };
    if let Err(e) = sent {
        tracing::warn!(error = %e, state, "cannot notify systemd");
    }
}

pub enum Signal {
    Reload,
    Stop,
}

/// Waits for SIGHUP (reload) or SIGTERM/SIGINT (stop).
pub struct Signals {
    hup: Option<tokio::signal::unix::Signal>,
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
}

impl Default for Signals {
    fn default() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        Signals {
            hup: signal(SignalKind::hangup()).ok(),
            term: signal(SignalKind::terminate()).ok(),
            int: signal(SignalKind::interrupt()).ok(),
        }
    }
}

impl Signals {
    pub async fn next(&mut self) -> Signal {
        async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                // Without a handler, this one never comes.
                None => std::future::pending::<()>().await,
            }
        }
        tokio::select! {
            _ = recv(&mut self.hup) => Signal::Reload,
            _ = recv(&mut self.term) => Signal::Stop,
            _ = recv(&mut self.int) => Signal::Stop,
        }
    }
}

/// The settings that only a restart changes, named, for comparing two configs.
fn restart_only(c: &AgentConfig) -> Vec<(&'static str, String)> {
    vec![
        ("[agent] data_dir", c.data_dir.display().to_string()),
        ("[agent] listen", c.listen.to_string()),
        ("[agent] node_name", c.node_name.clone()),
        ("[agent] docker_host", c.docker_host.clone()),
        (
            "[agent] reconcile_interval",
            c.reconcile_interval_ms.to_string(),
        ),
        (
            "[agent] version_deadline",
            c.version_deadline_ms.to_string(),
        ),
        ("[router] http", format!("{:?}", c.router_http)),
        ("[router] https", format!("{:?}", c.router_https)),
        ("[router] domain", c.router_domain.clone()),
        ("[router] tcp_address", c.router_tcp_ip.to_string()),
        ("[[router.tls]]", c.router_tls_domains.join(",")),
        (
            "[router] limits and trusted_proxies",
            format!("{:?}", c.router_limits),
        ),
    ]
}

/// The restart-only settings that differ between `old` and `new`.
pub fn needs_restart(old: &AgentConfig, new: &AgentConfig) -> Vec<&'static str> {
    restart_only(old)
        .into_iter()
        .zip(restart_only(new))
        .filter(|(a, b)| a.1 != b.1)
        .map(|(a, _)| a.0)
        .collect()
}

/// Applies a reloaded config: replaces `[metrics]` and `[logs]`, brings the senders in line
/// (`telemetry::sync_sinks`), and records what happened as an event. Returns the config now
/// in force for the next comparison.
pub fn apply_reload(core: &Arc<Core>, running: &AgentConfig, new: AgentConfig) -> AgentConfig {
    let sinks = core.apply_settings(Settings {
        metrics: new.metrics.clone(),
        logs: new.logs.clone(),
    });
    let mut msg = format!(
        "configuration reloaded: {} sink(s), {} alarm rule(s) from the file, logs kept {} days / {} MiB, metrics every {} s",
        sinks,
        new.metrics.alarms.len(),
        new.logs.retain_days,
        new.logs.max_bytes >> 20,
        new.metrics.interval_ms / 1000,
    );
    let restart = needs_restart(running, &new);
    if !restart.is_empty() {
        msg.push_str(&format!(
            "; changed but applied only on restart (systemctl restart berth): {}",
            restart.join(", ")
        ));
    }
    core.event(crate::model::EventKind::Agent, "", "", &msg);
    // Restart-only settings keep their running values until then.
    AgentConfig {
        metrics: new.metrics,
        logs: new.logs,
        ..running.clone()
    }
}
