//! Service names across hosts, the agent's side (the decisions are `plan::names`): keeps
//! one holder container per (app, service) that runs on other members and has a caller
//! here, listens on the service's ports inside each holder's network namespace, and
//! carries each connection to a ready instance: on this host directly, on another member
//! through a sealed stream on the peer channel (`cluster::tunnel`).
//!
//! Invariants: a listener lives in its holder's namespace only (bound from a short-lived
//! thread that entered it), so only the app's own network reaches it; at most
//! [`MAX_CONNS`] connections are carried at once, at most [`PER_HOLDER`] for one holder (a
//! hostile container cannot take them all), and one that moves nothing for [`IDLE`] ends;
//! nothing here is decided, only done.

use crate::plan::names::{Target, Want};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

/// Connections carried at once, over all holders.
pub const MAX_CONNS: usize = 4096;
/// Connections carried at once for one holder (all its ports).
pub const PER_HOLDER: usize = 512;
/// A carried connection ends after this long without a byte either way (as a tunnel's).
pub const IDLE: Duration = crate::cluster::tunnel::IDLE;
const CONNECT_TIME: Duration = Duration::from_secs(3);

type Key = (String, String);

/// Listeners bound in one holder's namespace.
struct Bound {
    pid: u32,
    ports: Vec<u16>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Bound {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[derive(Default)]
struct Table {
    targets: BTreeMap<Key, Vec<Target>>,
    /// This host's ready instances by (app, service): where streams from other members go.
    local: BTreeMap<Key, Vec<IpAddr>>,
}

pub struct Names {
    table: Arc<RwLock<Arc<Table>>>,
    bound: Mutex<HashMap<String, Bound>>,
    hub: Arc<std::sync::OnceLock<Weak<crate::cluster::hub::Hub>>>,
    /// The router's internal side, where `.local` names are carried.
    router: Arc<std::sync::OnceLock<SocketAddr>>,
    next: Arc<AtomicUsize>,
    conns: Arc<tokio::sync::Semaphore>,
    /// Connections one holder may have carried at once ([`PER_HOLDER`]).
    per_holder: usize,
    /// Holder errors last reported (each once).
    errors: Mutex<std::collections::BTreeSet<String>>,
}

impl Default for Names {
    fn default() -> Names {
        Names {
            table: Arc::default(),
            bound: Mutex::default(),
            hub: Arc::default(),
            router: Arc::default(),
            next: Arc::default(),
            conns: Arc::new(tokio::sync::Semaphore::new(MAX_CONNS)),
            per_holder: PER_HOLDER,
            errors: Mutex::default(),
        }
    }
}

impl Names {
    /// Where `.local` names are carried: the router's internal side.
    pub fn set_router(&self, addr: SocketAddr) {
        let _ = self.router.set(addr);
    }

    /// Connects the names to the cluster: connections to other members' instances go
    /// through `hub`, and streams other members open here go to this host's instances.
    pub fn attach(&self, hub: &Arc<crate::cluster::hub::Hub>) {
        let _ = self.hub.set(Arc::downgrade(hub));
        let table = self.table.clone();
        let next = self.next.clone();
        hub.set_tunnel_target(Arc::new(move |app: &str, service: &str, port: u16| {
            let t = table.read().unwrap_or_else(|p| p.into_inner()).clone();
            let ips = t.local.get(&(app.to_string(), service.to_string()))?;
            if ips.is_empty() || port == 0 {
                return None;
            }
            let ip = ips[next.fetch_add(1, Ordering::Relaxed) % ips.len()];
            Some(SocketAddr::new(ip, port))
        }));
    }

    /// The last errors, once each: what a pass reports as events.
    pub fn new_errors(&self, now: Vec<String>) -> Vec<String> {
        let mut last = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = now.iter().filter(|e| !last.contains(*e)).cloned().collect();
        *last = now.into_iter().collect();
        fresh
    }

    /// Makes the holders and listeners what `want` says, and the targets this pass's.
    /// Returns what could not be done (an event each, once).
    pub async fn update(
        &self,
        runtime: &dyn crate::runtime::ContainerRuntime,
        node: &str,
        want: BTreeMap<Key, Want>,
        local: BTreeMap<Key, Vec<IpAddr>>,
    ) -> Vec<String> {
        let mut errors = Vec::new();
        *self.table.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(Table {
            targets: want
                .iter()
                .map(|(k, w)| (k.clone(), w.targets.clone()))
                .collect(),
            local,
        });
        let holders = match runtime.holders(node).await {
            Ok(h) => h,
            Err(e) => return vec![format!("cannot list the service-name holders: {e}")],
        };
        let mut have: BTreeMap<Key, crate::runtime::Holder> = BTreeMap::new();
        for h in holders {
            let key = (h.app.clone(), h.service.clone());
            let keep =
                want.get(&key).is_some_and(|w| w.aliases == h.aliases) && !have.contains_key(&key);
            if keep {
                have.insert(key, h);
            } else {
                self.unbind(&h.id);
                if let Err(e) = runtime.remove(&h.id, false).await {
                    errors.push(format!(
                        "cannot remove the holder of {}/{}: {e}",
                        h.app, h.service
                    ));
                }
            }
        }
        for (key, w) in &want {
            let h = match have.remove(key) {
                Some(h) => h,
                None => {
                    let network = crate::runtime::network_name(node, &key.0);
                    match runtime
                        .create_holder(node, &key.0, &key.1, &network, &w.aliases)
                        .await
                    {
                        Ok(h) => h,
                        Err(e) => {
                            errors.push(format!(
                                "{}/{} runs on other hosts but its name cannot be held on this host's app network: {e}",
                                key.0, key.1
                            ));
                            continue;
                        }
                    }
                }
            };
            if h.pid == 0 {
                // Not running (being restarted by the engine): bound when it runs.
                self.unbind(&h.id);
                continue;
            }
            let ports: Vec<u16> = w.ports.iter().copied().collect();
            let current = {
                let b = self.bound.lock().unwrap_or_else(|p| p.into_inner());
                b.get(&h.id)
                    .is_some_and(|b| b.pid == h.pid && b.ports == ports)
            };
            if current {
                continue;
            }
            self.unbind(&h.id);
            match bind_in(h.pid, &ports) {
                Ok(listeners) => {
                    let mut tasks = Vec::new();
                    let slots = Arc::new(crate::listen::Slots::default());
                    for (port, l) in listeners {
                        match tokio::net::TcpListener::from_std(l) {
                            Ok(l) => tasks.push(tokio::spawn(self.serve(
                                key.clone(),
                                port,
                                l,
                                slots.clone(),
                            ))),
                            Err(e) => errors.push(format!(
                                "cannot listen for {}/{} on port {port}: {e}",
                                key.0, key.1
                            )),
                        }
                    }
                    self.bound.lock().unwrap_or_else(|p| p.into_inner()).insert(
                        h.id.clone(),
                        Bound {
                            pid: h.pid,
                            ports,
                            tasks,
                        },
                    );
                }
                Err(e) => errors.push(format!(
                    "cannot listen for {}/{} in its holder's network: {e}",
                    key.0, key.1
                )),
            }
        }
        errors
    }

    fn unbind(&self, holder: &str) {
        self.bound
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(holder);
    }

    /// Accepts on one holder port and carries each connection; `slots` are the holder's.
    fn serve(
        &self,
        key: Key,
        port: u16,
        listener: tokio::net::TcpListener,
        slots: Arc<crate::listen::Slots>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let table = self.table.clone();
        let hub = self.hub.clone();
        let router = self.router.clone();
        let next = self.next.clone();
        let conns = self.conns.clone();
        let per_holder = self.per_holder;
        async move {
            loop {
                let (conn, _) = crate::listen::accept_paced(&listener, "service name").await;
                // Over a bound (the holder's or all of them), a connection is closed at once
                // (its caller retries).
                let Some(slot) = slots.take(per_holder) else {
                    continue;
                };
                let Ok(permit) = conns.clone().try_acquire_owned() else {
                    continue;
                };
                let targets = table
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .targets
                    .get(&key)
                    .cloned()
                    .unwrap_or_default();
                let hub = hub.get().and_then(|h| h.upgrade());
                let start = next.fetch_add(1, Ordering::Relaxed);
                let key = key.clone();
                let router = router.get().copied();
                tokio::spawn(async move {
                    let _held = (permit, slot);
                    carry(conn, &key, port, &targets, start, hub, router).await;
                });
            }
        }
    }
}

/// Carries `conn` to the first target, from `start` round, that takes it.
async fn carry(
    conn: tokio::net::TcpStream,
    (app, service): &Key,
    port: u16,
    targets: &[Target],
    start: usize,
    hub: Option<Arc<crate::cluster::hub::Hub>>,
    router: Option<SocketAddr>,
) {
    let _ = conn.set_nodelay(true);
    for k in 0..targets.len() {
        match &targets[(start + k) % targets.len()] {
            Target::Local(ip) => {
                let to = SocketAddr::new(*ip, port);
                let Ok(Ok(up)) =
                    tokio::time::timeout(CONNECT_TIME, tokio::net::TcpStream::connect(to)).await
                else {
                    continue;
                };
                let _ = up.set_nodelay(true);
                if let Err(e) = crate::listen::splice_idle(conn, up, IDLE).await {
                    tracing::debug!(app, service, error = %e, "a connection ended");
                }
                return;
            }
            Target::Router => {
                let Some(to) = router else { continue };
                let Ok(Ok(up)) =
                    tokio::time::timeout(CONNECT_TIME, tokio::net::TcpStream::connect(to)).await
                else {
                    continue;
                };
                let _ = up.set_nodelay(true);
                if let Err(e) = crate::listen::splice_idle(conn, up, IDLE).await {
                    tracing::debug!(app, service, error = %e, "a connection ended");
                }
                return;
            }
            Target::Outside(host) => {
                // Resolved now, so a changed DNS answer is followed.
                let Ok(Ok(up)) = tokio::time::timeout(
                    CONNECT_TIME,
                    tokio::net::TcpStream::connect((host.as_str(), port)),
                )
                .await
                else {
                    tracing::debug!(
                        app,
                        service,
                        host,
                        port,
                        "an external service did not answer"
                    );
                    continue;
                };
                let _ = up.set_nodelay(true);
                if let Err(e) = crate::listen::splice_idle(conn, up, IDLE).await {
                    tracing::debug!(app, service, error = %e, "a connection ended");
                }
                return;
            }
            Target::Remote(node) => {
                let Some(hub) = &hub else { continue };
                match hub.open_tunnel(node, app, service, port).await {
                    Ok(t) => {
                        if let Err(e) = t.carry(conn).await {
                            tracing::debug!(app, service, node, error = %e, "a stream ended");
                        }
                        return;
                    }
                    Err(e) => {
                        tracing::debug!(app, service, node, error = %e, "a member did not open a stream");
                    }
                }
            }
        }
    }
}

/// Binds `0.0.0.0:port` for each port inside process `pid`'s network namespace, from a
/// thread that enters it and ends (the listeners stay in that namespace).
fn bind_in(pid: u32, ports: &[u16]) -> std::io::Result<Vec<(u16, std::net::TcpListener)>> {
    let ports = ports.to_vec();
    std::thread::spawn(move || {
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
            std::io::Error::other(format!("cannot enter its network namespace: {e}"))
        })?;
        let mut out = Vec::new();
        for port in ports {
            let l = std::net::TcpListener::bind(("0.0.0.0", port))?;
            l.set_nonblocking(true)?;
            out.push((port, l));
        }
        Ok(out)
    })
    .join()
    .map_err(|_| std::io::Error::other("the binding thread panicked"))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The attack: a container on the app network opens connection after connection to a
    /// holder and keeps them. It gets its holder's share; another holder still carries.
    #[tokio::test]
    async fn one_holder_flooded_with_connections_leaves_the_others_carrying() {
        // The instances: hold every connection open, echo what comes.
        let target = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = target.local_addr().expect("addr").port();
        let reached = Arc::new(AtomicUsize::new(0));
        let r = reached.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = target.accept().await else {
                    return;
                };
                r.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let names = Names {
            per_holder: 8,
            ..Names::default()
        };
        let key = |s: &str| ("shop".to_string(), s.to_string());
        *names.table.write().expect("table") = Arc::new(Table {
            targets: BTreeMap::from([
                (
                    key("db"),
                    vec![Target::Local("127.0.0.1".parse().expect("ip"))],
                ),
                (
                    key("cache"),
                    vec![Target::Local("127.0.0.1".parse().expect("ip"))],
                ),
            ]),
            local: BTreeMap::new(),
        });
        // Two holders, each listening on the service's port at its own address.
        let listen = |ip: &str| {
            let l = std::net::TcpListener::bind((ip, port)).expect("bind holder");
            l.set_nonblocking(true).expect("nonblocking");
            tokio::net::TcpListener::from_std(l).expect("listener")
        };
        let slots = || Arc::new(crate::listen::Slots::default());
        tokio::spawn(names.serve(key("db"), port, listen("127.0.0.2"), slots()));
        tokio::spawn(names.serve(key("cache"), port, listen("127.0.0.3"), slots()));
        let mut flood = Vec::new();
        for _ in 0..40 {
            if let Ok(c) = tokio::net::TcpStream::connect(("127.0.0.2", port)).await {
                flood.push(c);
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            reached.load(Ordering::SeqCst),
            8,
            "the flooded holder carried its share only"
        );
        // The rest were closed at once.
        let mut closed = 0;
        for c in &mut flood {
            let mut b = [0u8; 1];
            if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(50), c.read(&mut b)).await
            {
                closed += 1;
            }
        }
        assert_eq!(closed, 32, "connections over the holder's bound are closed");
        // Another holder is not starved.
        let mut c = tokio::net::TcpStream::connect(("127.0.0.3", port))
            .await
            .expect("connect");
        c.write_all(b"hi").await.expect("write");
        let mut b = [0u8; 2];
        tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut b))
            .await
            .expect("answered in time")
            .expect("read");
        assert_eq!(&b, b"hi");
    }
}
