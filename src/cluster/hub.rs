//! The cluster as the daemon holds it: in no cluster until `init` or `join` (or a keyring
//! found at start, `resume`), then the running membership, the join channel, and the records
//! of members kept in the store.

use super::gossip::{Change, Digest, Gossip, Id, MemberState};
use super::join::{self, JoinError, Serve, Welcome};
use super::keys::{KeyError, Keyring};
use super::state::{Delta, Kind, Own, Replica};
use super::token::{self, Hello, Refusal, ReplyKey, Token};
use crate::config::ClusterConfig;
use crate::model::EventKind;
use crate::store::{MemberRow, Store};
use crate::wire::{InitReport, JoinReport, NodeView};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Join(#[from] JoinError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(
        "cannot use the cluster address {addr}: {detail} (set [cluster] bind, or free the port)"
    )]
    Bind { addr: SocketAddr, detail: String },
    #[error("this host is in no cluster: run `berth cluster init`, or `berth cluster join TOKEN`")]
    NotInCluster,
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    /// The member that must do it cannot now.
    #[error("{0}")]
    Unavailable(String),
}

/// What a URL is about, for a message: `app shop` from `/v1/apps/shop/scale`.
fn url_subject(url: &str) -> String {
    let path = url.split('?').next().unwrap_or(url);
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        ["v1", "apps", name, ..] => format!("app {name}"),
        ["v1", "nodes", name, ..] => format!("node {name}"),
        _ => "this".into(),
    }
}

/// Records an event (the agent's event log).
pub type Events = Arc<dyn Fn(EventKind, String) + Send + Sync>;

struct Running {
    ring: Arc<RwLock<Keyring>>,
    gossip: Gossip,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Seals what the hub keeps on disk: the members' records hold secrets (files' values,
/// volumes' credentials, config sets). Installed by the daemon with the data dir's at-rest
/// key (the one volume credentials are sealed under).
pub trait AtRest: Send + Sync {
    fn seal(&self, what: &str, plain: &[u8]) -> Result<Vec<u8>, String>;
    fn unseal(&self, what: &str, sealed: &[u8]) -> Result<Vec<u8>, String>;
}

/// A saved row's text: `sealed:` and the hex of the sealed records, or (before sealing was
/// installed, or in tests without a key) the records' JSON.
const SEALED_PREFIX: &str = "sealed:";

pub struct Hub {
    data_dir: PathBuf,
    at_rest: Option<Arc<dyn AtRest>>,
    cfg: ClusterConfig,
    node_id: String,
    name: String,
    store: Arc<Store>,
    events: Events,
    running: tokio::sync::Mutex<Option<Running>>,
    /// The running membership's view, readable without waiting for `running`.
    view: std::sync::Mutex<Option<Arc<super::gossip::View>>>,
    /// This host's records, and the other members' as pulled from them.
    own: Arc<std::sync::Mutex<Own>>,
    replicas: Arc<std::sync::Mutex<BTreeMap<String, Replica>>>,
    /// Members whose records changed since they were last saved.
    dirty: Dirty,
    /// When the last digest went out (ms).
    last_digest: std::sync::atomic::AtomicI64,
    handler: Arc<RwLock<Option<ForwardHandler>>>,
    /// Where streams other members open to this host's instances go.
    tunnel: Arc<RwLock<Option<super::tunnel::Target>>>,
    /// What runs the exec sessions other members open here.
    exec: Arc<RwLock<Option<super::tunnel::ExecHook>>>,
    /// Sequence numbers of the requests this host forwards.
    forward_seq: std::sync::atomic::AtomicU64,
}

/// Another member's record, with what this host knows of that member.
#[derive(Debug, Clone)]
pub struct Remote {
    pub node_id: String,
    pub node_name: String,
    pub state: MemberState,
    /// When this host last heard the member alive.
    pub seen_ms: i64,
    /// When the member made this version of the record.
    pub at_ms: i64,
    pub body: serde_json::Value,
}

/// Runs a forwarded API request on this host (installed by the API server).
pub type ForwardHandler = Arc<
    dyn Fn(
            join::Forward,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = join::ForwardReply> + Send>>
        + Send
        + Sync,
>;

struct Gate {
    ring: Arc<RwLock<Keyring>>,
    store: Arc<Store>,
    me: Id,
    view: Arc<super::gossip::View>,
    own: Arc<std::sync::Mutex<Own>>,
    replay: std::sync::Mutex<super::seal::Replay>,
    handler: Arc<RwLock<Option<ForwardHandler>>>,
    tunnel: Arc<RwLock<Option<super::tunnel::Target>>>,
    exec: Arc<RwLock<Option<super::tunnel::ExecHook>>>,
    /// The other members' records: their node records say how often each token let a host
    /// in through them.
    replicas: Arc<std::sync::Mutex<BTreeMap<String, Replica>>>,
}

impl Gate {
    /// How many joins token `id` let in through the other members, as their node records
    /// (`tokens`) last said.
    fn uses_elsewhere(&self, id: &str) -> u32 {
        let replicas = self.replicas.lock().unwrap_or_else(|p| p.into_inner());
        replicas
            .iter()
            .filter(|(node, _)| **node != self.me.node)
            .flat_map(|(_, rep)| rep.of(Kind::Node))
            .filter_map(|r| r.body.as_ref()?["tokens"][id].as_u64())
            .map(|n| n.min(u32::MAX as u64) as u32)
            .fold(0u32, |a, n| a.saturating_add(n))
    }
}

impl Serve for Gate {
    fn fresh(&self, sender: u64, seq: u64) -> bool {
        self.replay
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .accept(sender, seq)
    }

    fn forward(
        &self,
        f: join::Forward,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = join::ForwardReply> + Send>> {
        let h = self
            .handler
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match h {
            Some(h) => h(f),
            None => Box::pin(async {
                join::ForwardReply {
                    status: 503,
                    body: r#"{"error":"the owner's API is not ready yet: try again"}"#.into(),
                }
            }),
        }
    }

    fn tunnel_target(&self) -> Option<super::tunnel::Target> {
        self.tunnel
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn exec_hook(&self) -> Option<super::tunnel::ExecHook> {
        self.exec.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn keyring(&self) -> Keyring {
        self.ring.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn sender(&self) -> u64 {
        super::gossip::sender_id(&self.me.node)
    }

    fn delta(&self, epoch: u64, since: u64) -> Delta {
        self.own
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .delta(epoch, since)
    }

    fn admit(&self, hello: &Hello) -> Result<(Welcome, ReplyKey), Refusal> {
        let ring = self.ring.read().unwrap_or_else(|p| p.into_inner()).clone();
        // The uses here and those the other members published: a token naming several
        // members is not good for its count at each of them (two joins through two members
        // within the same second can still both pass: there is no quorum to ask).
        let elsewhere = self.uses_elsewhere(&hello.claims.id);
        let uses = self
            .store
            .token_uses(&hello.claims.id)
            .map_err(|e| Refusal::Member(e.to_string()))?
            .saturating_add(elsewhere);
        let key = token::check_hello(&ring, hello, crate::clock::now_ms() / 1000, uses)?;
        if !self
            .store
            .use_token(
                &hello.claims.id,
                hello.claims.uses.saturating_sub(elsewhere),
            )
            .map_err(|e| Refusal::Member(e.to_string()))?
        {
            return Err(Refusal::UsedUp(hello.claims.uses));
        }
        let mut members = vec![self.me.clone()];
        members.extend(
            self.view
                .members()
                .into_iter()
                .filter(|m| m.state == MemberState::Alive && m.id.node != self.me.node)
                .map(|m| m.id),
        );
        Ok((
            Welcome {
                keyring: ring,
                members,
                proto: super::spoken(),
            },
            key,
        ))
    }
}

impl Hub {
    pub fn new(
        data_dir: PathBuf,
        cfg: ClusterConfig,
        node_id: String,
        name: String,
        store: Arc<Store>,
        events: Events,
        at_rest: Option<Arc<dyn AtRest>>,
    ) -> Hub {
        Hub {
            data_dir,
            at_rest,
            cfg,
            node_id,
            name,
            store,
            events,
            running: tokio::sync::Mutex::new(None),
            view: std::sync::Mutex::new(None),
            own: Arc::new(std::sync::Mutex::new(Own::new(
                crate::clock::now_ms().max(0) as u64,
            ))),
            replicas: Arc::default(),
            dirty: Arc::default(),
            last_digest: std::sync::atomic::AtomicI64::new(0),
            handler: Arc::default(),
            tunnel: Arc::default(),
            exec: Arc::default(),
            forward_seq: std::sync::atomic::AtomicU64::new(
                (crate::clock::now_ms().max(0) as u64) << 10,
            ),
        }
    }

    fn key_path(&self) -> PathBuf {
        self.data_dir.join("cluster.key")
    }

    /// Where the other members reach this host: `advertise`, else the bind address, else
    /// (bound to every address) this host's address toward its default route.
    pub fn advertise(&self) -> SocketAddr {
        if let Some(a) = self.cfg.advertise {
            return a;
        }
        let bind = self.cfg.bind;
        if !bind.ip().is_unspecified() {
            return bind;
        }
        // A connected UDP socket sends nothing; it only asks the kernel for the route.
        let ip = std::net::UdpSocket::bind("0.0.0.0:0")
            .and_then(|s| s.connect("192.0.2.1:9").map(|()| s))
            .and_then(|s| s.local_addr())
            .map(|a| a.ip())
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
        SocketAddr::new(ip, bind.port())
    }

    /// At start: when this host is in a cluster, runs its membership and rejoins through
    /// the members it knew and the configured seeds.
    pub async fn resume(&self) -> Result<bool, ClusterError> {
        let Some(ring) = Keyring::load(&self.key_path())? else {
            return Ok(false);
        };
        let mut run = self.running.lock().await;
        self.start(&mut run, ring).await?;
        let mut through: Vec<SocketAddr> = self
            .store
            .cluster_members()?
            .iter()
            .filter(|m| m.node != self.node_id)
            .filter_map(|m| m.addr.parse().ok())
            .collect();
        through.extend(self.cfg.seeds.iter().copied());
        if let Some(r) = run.as_ref() {
            for a in through {
                r.gossip.announce(a).await;
            }
        }
        Ok(true)
    }

    async fn start(&self, slot: &mut Option<Running>, ring: Keyring) -> Result<(), ClusterError> {
        if slot.is_some() {
            return Ok(());
        }
        let bind = self.cfg.bind;
        let bind_err = |e: std::io::Error| ClusterError::Bind {
            addr: bind,
            detail: e.to_string(),
        };
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .map_err(bind_err)?;
        let ring = Arc::new(RwLock::new(ring));
        let me = Id {
            node: self.node_id.clone(),
            name: self.name.clone(),
            addr: self.advertise(),
            bump: crate::clock::now_ms().max(0) as u64,
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Change>();
        let (dtx, drx) = tokio::sync::mpsc::unbounded_channel::<Digest>();
        let gossip = Gossip::start(bind, me.clone(), ring.clone(), tx, dtx)
            .await
            .map_err(bind_err)?;
        let gate = Arc::new(Gate {
            ring: ring.clone(),
            store: self.store.clone(),
            me: me.clone(),
            view: gossip.view.clone(),
            own: self.own.clone(),
            replay: std::sync::Mutex::new(super::seal::Replay::new(1024)),
            handler: self.handler.clone(),
            tunnel: self.tunnel.clone(),
            exec: self.exec.clone(),
            replicas: self.replicas.clone(),
        });
        // What this host knew before it stopped: the members (lost until heard) and their
        // records.
        match self.store.cluster_members() {
            Ok(rows) => gossip.view.seed(&self.node_id, &rows),
            Err(e) => tracing::warn!(error = %e, "cannot read the members known"),
        }
        load_replicas(&self.replicas, &self.store, self.at_rest.as_deref());
        let serve = tokio::spawn(join::serve(listener, gate));
        let sync = tokio::spawn(sync_loop(
            drx,
            ring.clone(),
            gossip.view.clone(),
            self.replicas.clone(),
            self.dirty.clone(),
            super::gossip::sender_id(&me.node),
        ));
        let save = tokio::spawn(save_loop(
            self.replicas.clone(),
            self.dirty.clone(),
            self.store.clone(),
            self.at_rest.clone(),
        ));
        let (events, store, view, me_node) = (
            self.events.clone(),
            self.store.clone(),
            gossip.view.clone(),
            self.node_id.clone(),
        );
        let watch = tokio::spawn(async move {
            while let Some(ch) = rx.recv().await {
                let what = match (ch.from, ch.to) {
                    (None, MemberState::Alive) => "joined".to_string(),
                    // Back from lost (or left) is news; a suspicion cleared is not.
                    (Some(MemberState::Suspect), MemberState::Alive) => {
                        "answers probes again".to_string()
                    }
                    (Some(_), MemberState::Alive) => "is alive again".to_string(),
                    (_, MemberState::Suspect) => "is suspected (not answering probes)".into(),
                    (_, MemberState::Lost) => "is lost (no answer through any member)".into(),
                    (_, MemberState::Left) => "left the cluster".into(),
                };
                events(
                    EventKind::Node,
                    format!("node {} ({}) {what}", ch.name, ch.addr),
                );
                let rows: Vec<MemberRow> = view
                    .members()
                    .into_iter()
                    .filter(|m| m.id.node != me_node)
                    .map(|m| MemberRow {
                        node: m.id.node,
                        name: m.id.name,
                        addr: m.id.addr.to_string(),
                        state: m.state.as_str().into(),
                        seen_ms: m.seen_ms,
                    })
                    .collect();
                if let Err(e) = store.set_cluster_members(&rows) {
                    tracing::warn!(error = %e, "cannot save the cluster members");
                }
            }
        });
        let stranded = tokio::spawn(watch_stranded(
            gossip.view.clone(),
            self.node_id.clone(),
            self.events.clone(),
            self.data_dir.join(STRANDED_FILE),
        ));
        *self.view.lock().unwrap_or_else(|p| p.into_inner()) = Some(gossip.view.clone());
        *slot = Some(Running {
            ring,
            gossip,
            tasks: vec![serve, watch, sync, stranded, save],
        });
        Ok(())
    }

    /// `berth cluster init`: a new cluster with this host as its first member; idempotent.
    pub async fn init(&self) -> Result<InitReport, ClusterError> {
        let mut run = self.running.lock().await;
        let (ring, created) = match Keyring::load(&self.key_path())? {
            Some(r) => (r, false),
            None => {
                let r = Keyring::create(crate::clock::now_ms())?;
                r.save(&self.key_path())?;
                (r, true)
            }
        };
        let cluster = ring.cluster.clone();
        self.start(&mut run, ring).await?;
        if created {
            (self.events)(
                EventKind::Cluster,
                format!("cluster {cluster} created; this host is its first member"),
            );
        }
        Ok(InitReport {
            cluster,
            created,
            advertise: self.advertise(),
        })
    }

    /// `berth cluster token create`.
    pub async fn create_token(&self, ttl_s: u64, uses: u32) -> Result<String, ClusterError> {
        if !(60..=30 * 86_400).contains(&ttl_s) {
            return Err(ClusterError::Invalid(format!(
                "--ttl {ttl_s}s: a token lives from 1 minute to 30 days (like 1h, 7d)"
            )));
        }
        if !(1..=1000).contains(&uses) {
            return Err(ClusterError::Invalid(format!(
                "--uses {uses}: a token lets in 1 to 1000 hosts"
            )));
        }
        let run = self.running.lock().await;
        let r = run.as_ref().ok_or(ClusterError::NotInCluster)?;
        let ring = r.ring.read().unwrap_or_else(|p| p.into_inner()).clone();
        let mut members = vec![self.advertise()];
        members.extend(
            r.gossip
                .view
                .members()
                .into_iter()
                .filter(|m| m.state == MemberState::Alive && m.id.node != self.node_id)
                .map(|m| m.id.addr)
                .take(3),
        );
        let mut id = [0u8; 16];
        id.copy_from_slice(&super::keys::random_32()?[..16]);
        let expires = crate::clock::now_ms() / 1000 + ttl_s as i64;
        Ok(Token::issue(&ring, members, expires, uses, id).to_text())
    }

    /// `berth cluster join TOKEN`.
    pub async fn join(
        &self,
        text: &str,
        advertise: Option<SocketAddr>,
    ) -> Result<JoinReport, ClusterError> {
        let token = Token::parse(text).map_err(JoinError::from)?;
        let mut run = self.running.lock().await;
        if let Some(have) = Keyring::load(&self.key_path())? {
            return Err(if have.cluster == token.claims.cluster {
                ClusterError::Conflict(format!(
                    "this host is already a member of cluster {}",
                    have.cluster
                ))
            } else {
                ClusterError::Conflict(format!(
                    "this host is in cluster {}: run `berth cluster leave` before joining another",
                    have.cluster
                ))
            });
        }
        let advertise = advertise.unwrap_or_else(|| self.advertise());
        let (welcome, through) =
            join::request(&token, &self.node_id, &self.name, advertise).await?;
        welcome.keyring.save(&self.key_path())?;
        let cluster = welcome.keyring.cluster.clone();
        if let Err(e) = self.start(&mut run, welcome.keyring).await {
            let _ = std::fs::remove_file(self.key_path());
            return Err(e);
        }
        if let Some(r) = run.as_ref() {
            for m in &welcome.members {
                r.gossip.announce(m.addr).await;
            }
        }
        (self.events)(
            EventKind::Cluster,
            format!("joined cluster {cluster} through {through}"),
        );
        Ok(JoinReport {
            cluster,
            through,
            members: welcome.members.len() + 1,
        })
    }

    /// `berth cluster leave`: says goodbye, forgets the cluster, keeps the apps running.
    pub async fn leave(&self) -> Result<(), ClusterError> {
        let mut run = self.running.lock().await;
        let Some(r) = run.take() else {
            return Err(ClusterError::NotInCluster);
        };
        *self.view.lock().unwrap_or_else(|p| p.into_inner()) = None;
        for t in r.tasks {
            t.abort();
        }
        r.gossip.leave().await;
        let _ = std::fs::remove_file(self.key_path());
        let _ = std::fs::remove_file(self.data_dir.join(STRANDED_FILE));
        self.store.clear_cluster()?;
        self.replicas
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.dirty.lock().unwrap_or_else(|p| p.into_inner()).clear();
        (self.events)(
            EventKind::Cluster,
            "left the cluster; this host's apps keep running here".into(),
        );
        Ok(())
    }

    /// `berth nodes`: this host and every member it knows.
    pub async fn nodes(&self) -> Result<Vec<NodeView>, ClusterError> {
        let run = self.running.lock().await;
        let r = run.as_ref().ok_or(ClusterError::NotInCluster)?;
        Ok(r.gossip
            .view
            .members()
            .into_iter()
            .map(|m| NodeView {
                me: m.id.node == self.node_id,
                name: m.id.name,
                node_id: m.id.node,
                address: m.id.addr,
                state: m.state.as_str().to_string(),
                seen_ms: m.seen_ms,
                since_ms: m.since_ms,
                labels: Default::default(),
                drain: false,
                agent: String::new(),
                instances: 0,
                cpus: 0,
                cpu_percent: None,
                mem_total: 0,
                mem_used: 0,
                protocol: 0,
            })
            .collect())
    }

    /// `berth node rm NAME`: forgets a member that is lost or left.
    pub async fn forget(&self, name: &str) -> Result<(), ClusterError> {
        let run = self.running.lock().await;
        let r = run.as_ref().ok_or(ClusterError::NotInCluster)?;
        let m = r
            .gossip
            .view
            .members()
            .into_iter()
            .find(|m| m.id.name == name || m.id.node == name)
            .ok_or_else(|| {
                ClusterError::NotFound(format!("no member is named {name:?}: see `berth nodes`"))
            })?;
        if m.id.node == self.node_id {
            return Err(ClusterError::Conflict(
                "this is this host: use `berth cluster leave`".into(),
            ));
        }
        r.gossip.view.forget(&m.id.node).map_err(|s| {
            ClusterError::Conflict(format!(
                "node {name} is {}: only a lost or left member can be removed",
                s.as_str()
            ))
        })?;
        self.store.forget_member(&m.id.node)?;
        (self.events)(
            EventKind::Node,
            format!("node {name} removed from the member list"),
        );
        Ok(())
    }

    /// Gossip counters for `/metrics`: packets and bytes in and out, drops by reason, and
    /// members by state (None when in no cluster).
    pub fn counters(&self) -> Option<Arc<super::gossip::View>> {
        self.view.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Brings this host's records of `kinds` in line with `records` (the whole current set),
    /// and tells the members when anything changed (and every few seconds anyway, so a
    /// member that missed it catches up).
    pub async fn publish(&self, kinds: &[Kind], records: Vec<(Kind, String, serde_json::Value)>) {
        let (changed, digest) = {
            let mut own = self.own.lock().unwrap_or_else(|p| p.into_inner());
            let changed = own.update(kinds, records, crate::clock::now_ms());
            (
                changed,
                Digest {
                    node: self.node_id.clone(),
                    epoch: own.epoch,
                    version: own.version,
                },
            )
        };
        let run = self.running.lock().await;
        if let Some(r) = run.as_ref() {
            let now = crate::clock::now_ms();
            let last = self.last_digest.load(std::sync::atomic::Ordering::Relaxed);
            if changed || now - last >= DIGEST_EVERY_MS {
                self.last_digest
                    .store(now, std::sync::atomic::Ordering::Relaxed);
                r.gossip.digest(digest).await;
            }
        }
    }

    /// The other members' records of `kind`, with each member's state.
    pub fn remote(&self, kind: Kind) -> Vec<Remote> {
        self.remote_of(kind, false)
    }

    /// The other members' records of `kind`, those of members removed (`node rm`) since
    /// this agent started included (`removed`: their apps are taken over from them).
    pub fn remote_with_removed(&self, kind: Kind) -> Vec<(Remote, bool)> {
        let members = self.members_by_id();
        self.remote_of(kind, true)
            .into_iter()
            .map(|r| {
                let gone = !members.contains_key(&r.node_id);
                (r, gone)
            })
            .collect()
    }

    fn members_by_id(&self) -> BTreeMap<String, super::gossip::Member> {
        self.counters()
            .map(|v| {
                v.members()
                    .into_iter()
                    .map(|m| (m.id.node.clone(), m))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn remote_of(&self, kind: Kind, removed_too: bool) -> Vec<Remote> {
        let members = self.members_by_id();
        let replicas = self.replicas.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        for (node, rep) in replicas.iter() {
            // A member removed (`node rm`) or this host itself is not shown.
            let m = members.get(node);
            if node == &self.node_id || m.is_none() && !removed_too {
                continue;
            }
            for r in rep.of(kind) {
                if let Some(body) = &r.body {
                    out.push(Remote {
                        node_id: node.clone(),
                        node_name: m.map_or_else(|| node.clone(), |m| m.id.name.clone()),
                        state: m.map_or(MemberState::Lost, |m| m.state),
                        seen_ms: m.map_or(0, |m| m.seen_ms),
                        at_ms: r.at_ms,
                        body: body.clone(),
                    });
                }
            }
        }
        out
    }

    /// Installs what runs the API requests other members forward to this host.
    pub fn set_forward_handler(&self, h: ForwardHandler) {
        *self.handler.write().unwrap_or_else(|p| p.into_inner()) = Some(h);
    }

    /// Installs where streams other members open to this host's instances go.
    pub fn set_tunnel_target(&self, t: super::tunnel::Target) {
        *self.tunnel.write().unwrap_or_else(|p| p.into_inner()) = Some(t);
    }

    /// Installs what runs the exec sessions other members open here.
    pub fn set_exec_hook(&self, h: super::tunnel::ExecHook) {
        *self.exec.write().unwrap_or_else(|p| p.into_inner()) = Some(h);
    }

    /// Opens a sealed stream on the peer channel to an instance of (app, service) on
    /// member `node` (by node id), to its `port`.
    pub async fn open_tunnel(
        &self,
        node: &str,
        app: &str,
        service: &str,
        port: u16,
    ) -> std::io::Result<super::tunnel::Stream> {
        self.open_stream(node, app, service, port, None).await
    }

    /// Opens an exec session in a container of (app, service) on member `node`: the
    /// stream carries the session's WebSocket bytes to the member's API code.
    pub async fn open_exec(
        &self,
        node: &str,
        app: &str,
        service: &str,
        exec: super::tunnel::ExecOpen,
    ) -> std::io::Result<super::tunnel::Stream> {
        self.open_stream(node, app, service, 0, Some(exec)).await
    }

    async fn open_stream(
        &self,
        node: &str,
        app: &str,
        service: &str,
        port: u16,
        exec: Option<super::tunnel::ExecOpen>,
    ) -> std::io::Result<super::tunnel::Stream> {
        let m = self
            .member(node)
            .filter(|m| m.state == MemberState::Alive)
            .ok_or_else(|| std::io::Error::other(format!("member {node} is not alive")))?;
        let ring = {
            let run = self.running.lock().await;
            let r = run
                .as_ref()
                .ok_or_else(|| std::io::Error::other("this host is in no cluster"))?;
            r.ring.read().unwrap_or_else(|p| p.into_inner()).clone()
        };
        let open = super::tunnel::Open {
            app: app.into(),
            service: service.into(),
            port,
            stream: super::tunnel::new_stream_id()?,
            at_ms: crate::clock::now_ms(),
            from: self.name.clone(),
            exec,
        };
        let seq = self
            .forward_seq
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        super::tunnel::connect(
            m.id.addr,
            ring,
            (super::gossip::sender_id(&self.node_id), seq),
            open,
        )
        .await
    }

    /// How long a member is lost before what it ran may move (`[cluster] reschedule_after`).
    pub fn reschedule_after_ms(&self) -> i64 {
        i64::try_from(self.cfg.reschedule_after_ms).unwrap_or(i64::MAX)
    }

    /// The member that owns app `app`, when another one does: of the members holding it,
    /// the one at the highest ownership epoch (a member that took it over from a lost owner
    /// wins over that owner's last records), else the one that lists it.
    pub fn owner_of(&self, app: &str) -> Option<Remote> {
        let by_spec = self
            .remote(Kind::Spec)
            .into_iter()
            .filter(|r| r.body["app"]["spec"]["name"] == app)
            .max_by_key(|r| r.body["app"]["epoch"].as_u64().unwrap_or(0));
        by_spec.or_else(|| {
            self.remote(Kind::App)
                .into_iter()
                .find(|r| r.body["name"] == app)
        })
    }

    /// A member by name or node id (this host included).
    pub fn member(&self, name: &str) -> Option<super::gossip::Member> {
        self.counters()?
            .members()
            .into_iter()
            .find(|m| m.id.name == name || m.id.node == name)
    }

    /// Runs an API request on member `node` as if it had been asked there. Refused, naming
    /// the member and its state, when it is not alive.
    pub async fn forward(
        &self,
        node: &str,
        method: &str,
        url: &str,
        body: &[u8],
    ) -> Result<join::ForwardReply, ClusterError> {
        let m = self.member(node).ok_or_else(|| {
            ClusterError::NotFound(format!("no member is named {node:?}: see `berth nodes`"))
        })?;
        if m.state != MemberState::Alive {
            let ago = (crate::clock::now_ms() - m.seen_ms).max(0) / 1000;
            return Err(ClusterError::Unavailable(format!(
                "{} is owned by node {}, which is {} (last heard {ago} s ago): changes to it wait until that host is back",
                url_subject(url),
                m.id.name,
                m.state.as_str()
            )));
        }
        let ring = {
            let run = self.running.lock().await;
            let r = run.as_ref().ok_or(ClusterError::NotInCluster)?;
            r.ring.read().unwrap_or_else(|p| p.into_inner()).clone()
        };
        let f = join::Forward {
            method: method.into(),
            url: url.into(),
            body: String::from_utf8_lossy(body).into_owned(),
            at_ms: crate::clock::now_ms(),
            from: self.name.clone(),
            proto: super::spoken(),
        };
        let seq = self
            .forward_seq
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        join::forward(
            m.id.addr,
            &ring,
            super::gossip::sender_id(&self.node_id),
            seq,
            &f,
            join::FORWARD_TIME,
        )
        .await
        .map_err(|e| {
            ClusterError::Unavailable(format!(
                "{} is owned by node {}, which did not take the request ({e}): try again, or see `berth nodes`",
                url_subject(url),
                m.id.name
            ))
        })
    }

    /// This host's node id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Applies a key rotation step another member sent (or this host's own), in memory and
    /// in `cluster.key`.
    pub async fn apply_keys(&self, u: &super::keys::KeyUpdate) -> Result<(), ClusterError> {
        let run = self.running.lock().await;
        let r = run.as_ref().ok_or(ClusterError::NotInCluster)?;
        let mut next = r.ring.read().unwrap_or_else(|p| p.into_inner()).clone();
        next.apply(u).map_err(ClusterError::Conflict)?;
        next.save(&self.key_path())?;
        let what = match (&u.add, u.seal, u.retire_others) {
            (Some(k), _, _) => format!("cluster key {:08x} received", k.id),
            (_, Some(id), _) => format!("sealing with cluster key {id:08x}"),
            _ => "older cluster keys retired".into(),
        };
        *r.ring.write().unwrap_or_else(|p| p.into_inner()) = next;
        (self.events)(EventKind::Cluster, what);
        Ok(())
    }

    /// `berth cluster rotate-key`: a new key on every alive member, then sealing with it
    /// everywhere, then the old ones retired — each step only once every alive member took
    /// the one before, so no two members ever lack a common key. A member that is down
    /// meanwhile keeps the old key only: it rejoins with a token (its events say so).
    pub async fn rotate_key(&self) -> Result<crate::wire::RotateReport, ClusterError> {
        use super::keys::KeyUpdate;
        let (mine, others) = {
            let run = self.running.lock().await;
            let r = run.as_ref().ok_or(ClusterError::NotInCluster)?;
            let mut ring = r.ring.read().unwrap_or_else(|p| p.into_inner()).clone();
            let id = ring.add_key(crate::clock::now_ms())?;
            let key = ring.key(id).cloned().ok_or(ClusterError::NotInCluster)?;
            let others: Vec<super::gossip::Member> = r
                .gossip
                .view
                .members()
                .into_iter()
                .filter(|m| m.id.node != self.node_id && m.state == MemberState::Alive)
                .collect();
            (key, others)
        };
        let steps = [
            KeyUpdate {
                add: Some(mine.clone()),
                ..Default::default()
            },
            KeyUpdate {
                seal: Some(mine.id),
                ..Default::default()
            },
            KeyUpdate {
                retire_others: true,
                ..Default::default()
            },
        ];
        for (n, step) in steps.iter().enumerate() {
            // Others first for the first step (they must open what this host will seal);
            // this host first for the others (it already holds the key).
            if n > 0 {
                self.apply_keys(step).await?;
            }
            let body =
                serde_json::to_vec(step).map_err(|e| ClusterError::Invalid(e.to_string()))?;
            let mut failed = Vec::new();
            for m in &others {
                match self
                    .forward(&m.id.node, "POST", "/v1/cluster/keys", &body)
                    .await
                {
                    Ok(r) if r.status == 200 => {}
                    Ok(r) => {
                        failed.push(format!("{} ({}: {})", m.id.name, r.status, r.body.trim()))
                    }
                    Err(e) => failed.push(format!("{} ({e})", m.id.name)),
                }
            }
            if n == 0 {
                self.apply_keys(step).await?;
            }
            if !failed.is_empty() {
                return Err(ClusterError::Unavailable(format!(
                    "key rotation stopped at step {} of 3 (nothing is lost: every member still shares a key): {} did not take it; run `berth cluster rotate-key` again once they answer",
                    n + 1,
                    failed.join(", ")
                )));
            }
        }
        (self.events)(
            EventKind::Cluster,
            format!(
                "cluster key rotated: every member seals with key {:08x}; the old keys are retired",
                mine.id
            ),
        );
        Ok(crate::wire::RotateReport {
            key: format!("{:08x}", mine.id),
            members: others.into_iter().map(|m| m.id.name).collect(),
        })
    }

    /// Whether this host is in a cluster now.
    pub fn active(&self) -> bool {
        self.counters().is_some()
    }

    /// At daemon stop: stops the membership without a goodbye (this host comes back).
    pub async fn stop(&self) {
        *self.view.lock().unwrap_or_else(|p| p.into_inner()) = None;
        if let Some(r) = self.running.lock().await.take() {
            for t in r.tasks {
                t.abort();
            }
            r.gossip.stop();
            save_replicas(&self.replicas, &self.dirty, &self.store, &self.at_rest).await;
        }
    }
}

/// How often a host repeats its digest when nothing changed.
const DIGEST_EVERY_MS: i64 = 2000;

/// Pulls from an owner whenever its digest is news, one pull per owner at a time.
async fn sync_loop(
    mut digests: tokio::sync::mpsc::UnboundedReceiver<Digest>,
    ring: Arc<RwLock<Keyring>>,
    view: Arc<super::gossip::View>,
    replicas: Arc<std::sync::Mutex<BTreeMap<String, Replica>>>,
    dirty: Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
    sender: u64,
) {
    let busy: Arc<std::sync::Mutex<std::collections::BTreeSet<String>>> = Arc::default();
    // Members that sent records of kinds this build does not know (said once each).
    let newer: Arc<std::sync::Mutex<std::collections::BTreeSet<String>>> = Arc::default();
    while let Some(d) = digests.recv().await {
        let wants = replicas
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&d.node)
            .map_or_else(
                || Replica::default().wants(d.epoch, d.version),
                |r| r.wants(d.epoch, d.version),
            );
        let Some((epoch, since)) = wants else {
            continue;
        };
        let Some(addr) = view
            .members()
            .into_iter()
            .find(|m| m.id.node == d.node)
            .map(|m| m.id.addr)
        else {
            continue;
        };
        if !busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(d.node.clone())
        {
            continue;
        }
        let (ring, replicas, busy, newer, dirty) = (
            ring.clone(),
            replicas.clone(),
            busy.clone(),
            newer.clone(),
            dirty.clone(),
        );
        tokio::spawn(async move {
            let keys = ring.read().unwrap_or_else(|p| p.into_inner()).clone();
            match join::pull(addr, &keys, sender, join::PullRequest { epoch, since }).await {
                Ok(mut delta) => {
                    let before = delta.records.len();
                    delta.records.retain(|r| r.kind != Kind::Unknown);
                    if delta.records.len() < before
                        && newer
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(d.node.clone())
                    {
                        tracing::warn!(
                            node = %d.node,
                            ignored = before - delta.records.len(),
                            "a member publishes records of a kind this build does not know (it runs a newer release): they are ignored here; upgrade this host"
                        );
                    }
                    let applied = replicas
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry(d.node.clone())
                        .or_default()
                        .apply(delta);
                    if applied {
                        dirty
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(d.node.clone());
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, %addr, "pull failed; the next digest retries")
                }
            }
            busy.lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&d.node);
        });
    }
}

/// How often the members' records pulled since the last save are saved.
const SAVE_REPLICAS_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

type Replicas = Arc<std::sync::Mutex<BTreeMap<String, Replica>>>;
type Dirty = Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>;

/// Saves the records of the members named in `dirty` (pulled since the last save), every
/// [`SAVE_REPLICAS_EVERY`], off the async threads.
async fn save_loop(
    replicas: Replicas,
    dirty: Dirty,
    store: Arc<Store>,
    at_rest: Option<Arc<dyn AtRest>>,
) {
    loop {
        tokio::time::sleep(SAVE_REPLICAS_EVERY).await;
        save_replicas(&replicas, &dirty, &store, &at_rest).await;
    }
}

fn replica_aad(node: &str) -> String {
    format!("cluster-replica:{node}")
}

/// A member's records as saved: sealed when a key is installed.
fn saved_text(
    node: &str,
    records: &[&super::state::Record],
    at_rest: Option<&dyn AtRest>,
) -> Option<String> {
    let json = serde_json::to_vec(records).ok()?;
    match at_rest {
        Some(k) => match k.seal(&replica_aad(node), &json) {
            Ok(sealed) => Some(format!("{SEALED_PREFIX}{}", hex::encode(sealed))),
            Err(e) => {
                // Never on disk in clear: this member's records are pulled again at start.
                tracing::warn!(%node, error = %e, "cannot seal a member's records: not saved");
                None
            }
        },
        None => String::from_utf8(json).ok(),
    }
}

/// The records of a saved row (None: they do not read, or do not open with this key).
fn read_saved(
    node: &str,
    text: &str,
    at_rest: Option<&dyn AtRest>,
) -> Option<Vec<super::state::Record>> {
    match text.strip_prefix(SEALED_PREFIX) {
        Some(h) => {
            let sealed = hex::decode(h).ok()?;
            let plain = at_rest?.unseal(&replica_aad(node), &sealed).ok()?;
            serde_json::from_slice(&plain).ok()
        }
        None => serde_json::from_str(text).ok(),
    }
}

async fn save_replicas(
    replicas: &Replicas,
    dirty: &Dirty,
    store: &Arc<Store>,
    at_rest: &Option<Arc<dyn AtRest>>,
) {
    let nodes = std::mem::take(&mut *dirty.lock().unwrap_or_else(|p| p.into_inner()));
    if nodes.is_empty() {
        return;
    }
    let rows: Vec<(String, u64, u64, String)> = {
        let replicas = replicas.lock().unwrap_or_else(|p| p.into_inner());
        nodes
            .iter()
            .filter_map(|n| {
                let r = replicas.get(n)?;
                let records: Vec<&super::state::Record> = r.records.values().collect();
                let text = saved_text(n, &records, at_rest.as_deref())?;
                Some((n.clone(), r.epoch, r.version, text))
            })
            .collect()
    };
    let store = store.clone();
    let saved = tokio::task::spawn_blocking(move || {
        for (node, epoch, version, text) in rows {
            store.put_cluster_replica(&node, epoch, version, &text)?;
        }
        Ok::<_, crate::store::StoreError>(())
    })
    .await;
    match saved {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot save the members' records"),
        Err(e) => tracing::warn!(error = %e, "saving the members' records stopped"),
    }
}

/// The members' records as saved before this agent stopped (those already pulled since
/// are kept).
fn load_replicas(replicas: &Replicas, store: &Store, at_rest: Option<&dyn AtRest>) {
    let rows = match store.cluster_replicas() {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the members' saved records");
            return;
        }
    };
    let mut map = replicas.lock().unwrap_or_else(|p| p.into_inner());
    for (node, epoch, version, text) in rows {
        let Some(records) = read_saved(&node, &text, at_rest) else {
            tracing::warn!(%node, "a member's saved records do not read (or open); it is pulled again");
            continue;
        };
        map.entry(node).or_insert_with(|| Replica {
            epoch,
            version,
            records: records
                .into_iter()
                .filter(|r| r.body.is_some() && r.kind != Kind::Unknown)
                .map(|r| ((r.kind, r.key.clone()), r))
                .collect(),
        });
    }
}

/// Says once (an event) when this host looks stranded by a key rotation: packets sealed
/// under keys it does not hold keep arriving while no other member answers it.
/// In the data dir while this host looks stranded by a key rotation (what it says, for
/// `berth doctor`, which reads it without the agent).
pub const STRANDED_FILE: &str = "cluster.stranded";

async fn watch_stranded(
    view: Arc<super::gossip::View>,
    me: String,
    events: Events,
    marker: PathBuf,
) {
    let unknown = |v: &super::gossip::View| {
        v.counters
            .dropped()
            .into_iter()
            .find(|(d, _)| *d == super::seal::Dropped::UnknownKey)
            .map(|(_, n)| n)
            .unwrap_or(0)
    };
    let mut last = unknown(&view);
    let mut said = false;
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(10)).await;
        let now = unknown(&view);
        let alone = !view
            .members()
            .iter()
            .any(|m| m.id.node != me && m.state == MemberState::Alive);
        if now > last && alone {
            if !said {
                let says = format!(
                    "no member answers, and {} packets sealed with a key this host does not hold arrived: the cluster key was probably rotated while this host was away and it holds only retired keys; rejoin with a new token (`berth cluster leave`, then `berth cluster join TOKEN`)",
                    now - last
                );
                if let Err(e) = crate::atomic_file::replace(&marker, says.as_bytes(), 0o600) {
                    tracing::warn!(error = %e, "cannot note the stranded state for berth doctor");
                }
                events(EventKind::Cluster, says);
                said = true;
            }
        } else if !alone {
            if said {
                let _ = std::fs::remove_file(&marker);
            }
            said = false;
        }
        last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Key(crate::volumes::secret::Sealer);
    impl AtRest for Key {
        fn seal(&self, what: &str, plain: &[u8]) -> Result<Vec<u8>, String> {
            self.0.seal(what, plain).map_err(|e| e.to_string())
        }
        fn unseal(&self, what: &str, sealed: &[u8]) -> Result<Vec<u8>, String> {
            self.0.unseal(what, sealed).map_err(|e| e.to_string())
        }
    }

    fn key(dir: &std::path::Path, name: &str) -> Key {
        Key(crate::volumes::secret::Sealer::open(&dir.join(name)).expect("key"))
    }

    #[test]
    fn saved_records_are_sealed_bound_to_their_member_and_old_plain_rows_still_read() {
        let dir = tempfile::tempdir().expect("tmp");
        let (k, other) = (key(dir.path(), "a.key"), key(dir.path(), "b.key"));
        let r = super::super::state::Record {
            kind: Kind::Spec,
            key: "vault".into(),
            version: 3,
            body: Some(serde_json::json!({ "files": { "secret/pw": "hunter2-secret" } })),
            at_ms: 1,
        };
        let text = saved_text("h1", &[&r], Some(&k)).expect("sealed");
        assert!(text.starts_with(SEALED_PREFIX) && !text.contains("hunter2"));
        assert_eq!(read_saved("h1", &text, Some(&k)), Some(vec![r.clone()]));
        // Another key, another member's row, no key: it does not open (pulled again).
        assert_eq!(read_saved("h1", &text, Some(&other)), None);
        assert_eq!(read_saved("h2", &text, Some(&k)), None);
        assert_eq!(read_saved("h1", &text, None), None);
        // A row saved before sealing existed reads as it was.
        let plain = saved_text("h1", &[&r], None).expect("json");
        assert_eq!(read_saved("h1", &plain, Some(&k)), Some(vec![r]));
    }
}
