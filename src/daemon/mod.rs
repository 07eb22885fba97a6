//! The process: the composition root. Prepares the data dir, opens the store, connects the
//! engine, starts the agent's loops, the API and the routers, and turns signals into a
//! reload or a stop (`service`: systemd's notify protocol, SIGHUP/SIGTERM/SIGINT).
//!
//! Invariants: the only module that starts listeners and loops; dependencies run one way,
//! daemon -> api -> agent -> store/runtime. [`Daemon::start`] takes the runtime, so the same
//! wiring runs over the real engine (`run`) and over `runtime::fake` in in-process tests.

pub mod service;

use crate::agent::{AgentError, Core, Loops};
use crate::config::AgentConfig;
use crate::runtime::{ContainerRuntime, RuntimeError};
use crate::store::{Store, StoreError};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot prepare the data dir {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("cannot listen on {addr}: {detail} (is another agent running? choose --listen)")]
    Listen { addr: String, detail: String },
}

impl From<AgentError> for DaemonError {
    fn from(e: AgentError) -> Self {
        match e {
            AgentError::Store(e) => DaemonError::Store(e),
            AgentError::Runtime(e) => DaemonError::Runtime(e),
        }
    }
}

/// How long a stopping agent keeps delivering the outbox to its sinks.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(10);

/// A running agent: its core, its loops and its API.
pub struct Daemon {
    core: Arc<Core>,
    cluster: Arc<crate::cluster::hub::Hub>,
    /// Publishes this host's records to the cluster after each reconcile pass.
    publisher: tokio::task::JoinHandle<()>,
    trimmer: tokio::task::JoinHandle<()>,
    api: crate::api::Server,
    loops: Loops,
    /// The routers' stop signal.
    routers: tokio::sync::watch::Sender<bool>,
    token: String,
    /// The configuration in force (what a reload is compared with).
    running: AgentConfig,
}

impl Daemon {
    /// Starts everything over `runtime`: the store in `cfg.data_dir`, the loops, the routers
    /// `cfg` asks for and the API on `cfg.listen` (a port of 0 takes a free one:
    /// [`Daemon::api_addr`]).
    pub async fn start(
        cfg: AgentConfig,
        runtime: Arc<dyn ContainerRuntime>,
    ) -> Result<Daemon, DaemonError> {
        let token = prepare_data_dir(&cfg.data_dir)?;
        let store = Arc::new(Store::open(&cfg.data_dir.join("state.db"))?);
        let core = Core::new(store.clone(), runtime, &cfg).await?;
        tracing::info!(node_id = %core.node_id, node = %core.node_name, engine = %core.engine, listen = %cfg.listen, tls = cfg.api_tls.is_some(), "agent starting");
        core.event(
            crate::model::EventKind::Agent,
            "",
            "",
            &format!(
                "agent started on {} (node {}), {}",
                core.node_name, core.node_id, core.engine
            ),
        );
        if let Some(w) = crate::doctor::api_exposure_warning(cfg.listen, cfg.api_tls.is_some()) {
            tracing::warn!("{w}; listen on 127.0.0.1 and use `ssh -L`, or a TLS proxy");
            core.event(
                crate::model::EventKind::Agent,
                "",
                "",
                &format!("warning: {w}"),
            );
        }
        let (routers, stop_rx) = tokio::sync::watch::channel(false);
        // `.local` routes: served to the app networks only, through the holders.
        match core.start_internal_router(stop_rx.clone()) {
            Ok(addr) => tracing::debug!(%addr, "router's internal side listening"),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the router's internal side: .local routes are not served")
            }
        }
        if let Some(addr) = cfg.router_http {
            core.router
                .start_http(addr, stop_rx.clone())
                .map_err(|e| DaemonError::Listen {
                    addr: addr.to_string(),
                    detail: format!("HTTP router: {e}"),
                })?;
            tracing::info!(%addr, domain = %cfg.router_domain, "HTTP router listening");
        }
        if let (Some(addr), Some(tls)) = (cfg.router_https, cfg.router_tls.clone()) {
            core.router
                .start_https(addr, tls, stop_rx)
                .map_err(|e| DaemonError::Listen {
                    addr: addr.to_string(),
                    detail: format!("HTTPS router: {e}"),
                })?;
            tracing::info!(%addr, domains = ?cfg.router_tls_domains, "HTTPS router listening");
        }
        let cluster = Arc::new(crate::cluster::hub::Hub::new(
            cfg.data_dir.clone(),
            cfg.cluster.clone(),
            core.node_id.clone(),
            core.node_name.clone(),
            store,
            {
                let core = core.clone();
                Arc::new(move |kind, msg: String| core.event(kind, "", "", &msg))
            },
            Some(Arc::new(crate::agent::CoreAtRest(core.clone()))),
        ));
        // A cluster problem never stops this host from running its apps.
        match cluster.resume().await {
            Ok(true) => tracing::info!(bind = %cfg.cluster.bind, "cluster membership resumed"),
            Ok(false) => {}
            Err(e) => core.event(
                crate::model::EventKind::Cluster,
                "",
                "",
                &format!("cannot rejoin the cluster: {e}; this host runs its apps alone"),
            ),
        }
        let ops = crate::agent::Ops::new(core.clone(), cluster.clone());
        let publisher = tokio::spawn(publish_loop(ops.clone()));
        let trimmer = tokio::spawn(trim_loop());
        let api = crate::api::Server::start(
            cfg.listen,
            token.clone(),
            ops,
            tokio::runtime::Handle::current(),
            Duration::from_millis(cfg.exec_idle_ms),
            cfg.api_tls.clone(),
        )
        .map_err(|detail| DaemonError::Listen {
            addr: cfg.listen.to_string(),
            detail,
        })?;
        let loops = core.start_loops(Duration::from_millis(cfg.reconcile_interval_ms));
        Ok(Daemon {
            core,
            cluster,
            publisher,
            trimmer,
            api,
            loops,
            routers,
            token,
            running: cfg,
        })
    }

    /// Where the API listens.
    pub fn api_addr(&self) -> SocketAddr {
        self.api.addr()
    }

    /// The API token (also in `DATA_DIR/api.token`).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Applies a reloaded config: `[metrics]` and `[logs]` take effect, every other change is
    /// named in the event as needing a restart.
    pub fn reload(&mut self, new: AgentConfig) {
        self.running = service::apply_reload(&self.core, &self.running, new);
    }

    /// Records that a reload was refused (the running configuration stays).
    pub fn reload_refused(&self, e: &dyn std::fmt::Display) {
        tracing::error!(error = %e, "reload refused");
        self.core.event(
            crate::model::EventKind::Agent,
            "",
            "",
            &format!("reload refused, the running configuration is unchanged: {e}"),
        );
    }

    /// Stops: the API first (requests in flight finish), then the loops and the routers,
    /// then the outbox is delivered for a while. Containers keep running.
    pub async fn stop(self) {
        tracing::info!("shutting down: API closed, loops stopping");
        self.core.begin_stop();
        self.api.shutdown().await;
        self.publisher.abort();
        self.trimmer.abort();
        self.cluster.stop().await;
        let _ = self.routers.send(true);
        self.loops.stop().await;
        let left = self.core.drain(SHUTDOWN_FLUSH).await;
        self.core.event(
            crate::model::EventKind::Agent,
            "",
            "",
            &format!(
                "agent stopped (containers keep running); {left} lines wait in the outbox for the next start"
            ),
        );
    }
}

/// After each reconcile pass (at least every 2 s), this host's records go to the cluster
/// (nothing is done while the host is in no cluster).
async fn publish_loop(ops: crate::agent::Ops) {
    loop {
        ops.next_pass(Duration::from_secs(2)).await;
        if let Err(e) = ops.publish_to_cluster().await {
            tracing::warn!(error = %e, "cannot publish to the cluster; next pass retries");
        }
        // Passes in a burst publish once.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every 10 s, hands the memory glibc holds free at the ends of its heaps back to the system:
/// the passes, publishes and collections allocate and free the same amounts over and over,
/// and without it the freed pages stay resident (about 2 MiB with 50 containers in a cluster;
/// BENCHMARKS, "Cluster I"). `malloc_trim` takes well under a millisecond here.
async fn trim_loop() {
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only releases free memory; it is safe to call at any time.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

/// Runs the agent over the Docker engine until SIGINT/SIGTERM; SIGHUP calls `reload` and
/// applies what may change at run time.
pub async fn run(cfg: AgentConfig, reload: service::Reloader) -> Result<(), DaemonError> {
    let mut signals = service::Signals::default();
    // Kept-open metric files and many connections: the hard limit, as Go programs get.
    let fd_limit = crate::metrics::procfile::raise_fd_limit();
    tracing::debug!(fd_limit, "open-file limit");
    let runtime: Arc<dyn ContainerRuntime> =
        Arc::new(crate::runtime::docker::DockerRuntime::connect(&cfg.docker_host).await?);
    let mut daemon = Daemon::start(cfg, runtime).await?;
    service::notify("READY=1");
    while let service::Signal::Reload = signals.next().await {
        service::notify("RELOADING=1");
        match reload() {
            Ok(new) => daemon.reload(new),
            Err(e) => daemon.reload_refused(&e),
        }
        service::notify("READY=1");
    }
    service::notify("STOPPING=1");
    daemon.stop().await;
    Ok(())
}

/// Creates the data dir (mode 0700) and the API token file (mode 0600) if missing.
pub fn prepare_data_dir(dir: &Path) -> Result<String, DaemonError> {
    use std::os::unix::fs::PermissionsExt;
    let err = |source| DaemonError::DataDir {
        path: dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    let token_path = dir.join("api.token");
    match std::fs::read_to_string(&token_path) {
        Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_string()),
        _ => {
            // Written whole or not at all (an empty file left by a crash is replaced).
            let token = crate::ids::secret_hex(32).map_err(err)?;
            let _ = std::fs::remove_file(&token_path);
            let made =
                crate::atomic_file::create(&token_path, format!("{token}\n").as_bytes(), 0o600)
                    .map_err(err)?;
            if made {
                Ok(token)
            } else {
                // Another agent on this data dir made one meanwhile.
                Ok(std::fs::read_to_string(&token_path)
                    .map_err(err)?
                    .trim()
                    .to_string())
            }
        }
    }
}
