//! SWIM membership (`foca`) over UDP, every packet in the sealed envelope (`seal`).
//!
//! One task owns the `Foca` instance and takes its inputs from a channel: packets that
//! opened, timers, announces, a leave. What arrives on the socket is opened first; what does
//! not open, or was seen before, is counted by reason and dropped unparsed. The members'
//! states are published in a [`View`] the API reads.
//!
//! Besides foca's own messages, a body can be a `Bye` (the sender leaves the cluster: it is
//! `left`, not `lost`). The first byte of a body says which.

use super::keys::{Keyring, Purpose};
use super::seal::{self, Dropped, Replay};
use foca::{Config, Foca, OwnedNotification, PostcardCodec, Timer};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// The largest datagram read or sent, the envelope included.
pub const MAX_PACKET: usize = 1400;

const BODY_FOCA: u8 = 0;
const BODY_BYE: u8 = 1;
const BODY_DIGEST: u8 = 2;

/// An owner's state version, gossiped so members pull what they lack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    pub node: String,
    pub epoch: u64,
    pub version: u64,
}

/// A member as SWIM knows it, by its gossip address. Two identities at one address are told
/// apart by `bump`: a restarted agent starts with a larger one, so its old self cannot come
/// back (and a host reinstalled with a new node id replaces the old one).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Id {
    pub node: String,
    pub name: String,
    pub addr: SocketAddr,
    pub bump: u64,
}

impl foca::Identity for Id {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(Id {
            bump: self.bump.wrapping_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.bump > adversary.bump
    }
}

/// A member's state as berth shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    Alive,
    Suspect,
    /// Declared down by the failure detector.
    Lost,
    /// Said goodbye (`berth cluster leave`).
    Left,
}

impl MemberState {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Alive => "alive",
            MemberState::Suspect => "suspect",
            MemberState::Lost => "lost",
            MemberState::Left => "left",
        }
    }
}

/// One member in the view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: Id,
    pub state: MemberState,
    /// When this host last heard it alive (or, for this host, now), ms since the epoch.
    pub seen_ms: i64,
    /// When its state last changed.
    pub since_ms: i64,
}

/// Packet and byte counters (Prometheus `berth_gossip_*`).
#[derive(Default)]
pub struct Counters {
    pub packets_in: AtomicU64,
    pub packets_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    dropped: [AtomicU64; Dropped::ALL.len()],
}

impl Counters {
    pub fn drop(&self, why: Dropped) {
        if let Some(i) = Dropped::ALL.iter().position(|d| *d == why) {
            self.dropped[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn dropped(&self) -> Vec<(Dropped, u64)> {
        Dropped::ALL
            .iter()
            .zip(&self.dropped)
            .map(|(d, n)| (*d, n.load(Ordering::Relaxed)))
            .collect()
    }
}

/// The members as this host sees them (itself included), for the API.
pub struct View {
    members: Mutex<BTreeMap<String, Member>>,
    /// Members removed with `berth node rm`, by the identity (bump) removed: foca may still
    /// list them as down; they come back only as a newer identity (the host started again).
    forgotten: Mutex<BTreeMap<String, u64>>,
    pub counters: Counters,
}

impl View {
    pub fn members(&self) -> Vec<Member> {
        self.members
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// The membership's Prometheus families: members by state, packets and bytes each way,
    /// packets dropped by reason.
    pub fn prometheus(&self) -> String {
        use std::fmt::Write;
        let mut by_state = [0usize; 4];
        for m in self.members() {
            by_state[m.state as usize] += 1;
        }
        let c = &self.counters;
        let mut t = String::new();
        let _ = writeln!(
            t,
            "# HELP berth_cluster_members Members of this host's cluster by state, as this host sees them (itself included)."
        );
        let _ = writeln!(t, "# TYPE berth_cluster_members gauge");
        for s in [
            MemberState::Alive,
            MemberState::Suspect,
            MemberState::Lost,
            MemberState::Left,
        ] {
            let _ = writeln!(
                t,
                "berth_cluster_members{{state=\"{}\"}} {}",
                s.as_str(),
                by_state[s as usize]
            );
        }
        for (name, help, inn, out) in [
            (
                "berth_gossip_packets_total",
                "Gossip datagrams received and sent.",
                &c.packets_in,
                &c.packets_out,
            ),
            (
                "berth_gossip_bytes_total",
                "Gossip bytes received and sent, envelope included.",
                &c.bytes_in,
                &c.bytes_out,
            ),
        ] {
            let _ = writeln!(t, "# HELP {name} {help}");
            let _ = writeln!(t, "# TYPE {name} counter");
            let _ = writeln!(
                t,
                "{name}{{direction=\"in\"}} {}",
                inn.load(Ordering::Relaxed)
            );
            let _ = writeln!(
                t,
                "{name}{{direction=\"out\"}} {}",
                out.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            t,
            "# HELP berth_gossip_packets_dropped_total Gossip datagrams dropped unparsed, by reason."
        );
        let _ = writeln!(t, "# TYPE berth_gossip_packets_dropped_total counter");
        for (d, n) in c.dropped() {
            let _ = writeln!(
                t,
                "berth_gossip_packets_dropped_total{{reason=\"{}\"}} {n}",
                d.as_str()
            );
        }
        t
    }

    /// Puts the members this host knew before it stopped (its store's list) into the view
    /// as `lost` (or `left`) until they are heard: a host started while a member is away
    /// still counts it, so it cannot take itself for a majority, and still shows its rows.
    /// Members already in the view, and `me`, are left alone.
    pub fn seed(&self, me: &str, known: &[crate::store::MemberRow]) {
        let now = crate::clock::now_ms();
        let mut members = self.members.lock().unwrap_or_else(|p| p.into_inner());
        for row in known {
            let Ok(addr) = row.addr.parse() else {
                continue;
            };
            if row.node == me || row.node.is_empty() || members.contains_key(&row.node) {
                continue;
            }
            let state = if row.state == MemberState::Left.as_str() {
                MemberState::Left
            } else {
                MemberState::Lost
            };
            members.insert(
                row.node.clone(),
                Member {
                    id: Id {
                        node: row.node.clone(),
                        name: row.name.clone(),
                        addr,
                        // Any identity foca reports for it is at least as new.
                        bump: 0,
                    },
                    state,
                    seen_ms: row.seen_ms,
                    since_ms: now,
                },
            );
        }
    }

    /// Forgets a member that is not alive; false when it is unknown or alive.
    pub fn forget(&self, node: &str) -> Result<(), MemberState> {
        let mut m = self.members.lock().unwrap_or_else(|p| p.into_inner());
        match m.get(node).map(|x| (x.state, x.id.bump)) {
            Some((s @ (MemberState::Alive | MemberState::Suspect), _)) => Err(s),
            Some((_, bump)) => {
                m.remove(node);
                self.forgotten
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(node.to_string(), bump);
                Ok(())
            }
            None => Ok(()),
        }
    }
}

/// A state change to report (the caller turns these into events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub name: String,
    pub node: String,
    pub addr: SocketAddr,
    pub from: Option<MemberState>,
    pub to: MemberState,
}

enum Input {
    Data(Vec<u8>),
    /// A foca timer, and when it was due (how late it is read measures this host's health).
    Timer(Timer<Id>, tokio::time::Instant),
    Announce(SocketAddr),
    Leave(tokio::sync::oneshot::Sender<()>),
    Tick,
    /// This host's digest, to every active member.
    Digest(Digest),
}

/// The running membership: its socket task and the foca task.
pub struct Gossip {
    inbox: mpsc::Sender<Input>,
    pub view: Arc<View>,
    pub me: Id,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// What foca is configured with for `n` members: its LAN settings with a 400 ms probe period
/// (a LAN answers in well under the 200 ms allowed), so suspicion — still memberlist's and
/// foca's rule, 4 x log10(n) probe periods, and at least 2 s — runs 2 s up to 17 members and
/// 2.7 s at 50, and a lost member is known to all within 5 s at 50 (BENCHMARKS, "Cluster").
/// A down member is announced to every 10 s (so a healed partition rejoins quickly; foca's
/// LAN default is 65 s).
pub fn config(n: usize) -> Config {
    let n = std::num::NonZeroU32::new(n.clamp(2, 1000) as u32).unwrap_or(std::num::NonZeroU32::MIN);
    let mut c = Config::new_lan(n);
    // memberlist's LAN suspicion (4 x log10(n) probe periods) over a 400 ms period: a lost
    // member known to all within 5 s at 50 (the wait for some member to probe it, plus
    // 2.7 s of suspicion, plus the spread); never under 2 s, where few members can confirm.
    let period = Duration::from_millis(400);
    c.probe_period = period;
    c.probe_rtt = Duration::from_millis(200);
    c.suspect_to_down_after = period
        .mul_f64(4.0 * f64::from(n.get()).log10())
        .max(Duration::from_secs(2));
    // memberlist's retransmit limit, 4 x ceil(log10(n + 1)): each update rides at least four
    // messages (foca's floor(4 x log10(n + 1)) is two at three members, where a suspicion
    // lost on its two messages, or a refutation lost on its two, makes a false `lost`).
    let tx = 4.0 * f64::from(n.get().saturating_add(1)).log10().ceil();
    c.max_transmissions =
        std::num::NonZeroU8::new(tx.clamp(4.0, 255.0) as u8).unwrap_or(std::num::NonZeroU8::MIN);
    c.max_packet_size = std::num::NonZeroUsize::new(MAX_PACKET - seal::OVERHEAD - 1)
        .unwrap_or(std::num::NonZeroUsize::MIN);
    c.periodic_announce_to_down_members = Some(foca::PeriodicParams {
        frequency: Duration::from_secs(10),
        num_members: std::num::NonZeroUsize::MIN.saturating_add(1),
    });
    c
}

/// The sender id in the envelope: the first 8 bytes of the node id's hex (or a hash of it).
pub fn sender_id(node: &str) -> u64 {
    match hex::decode(node) {
        Ok(b) if b.len() >= 8 => u64::from_be_bytes(b[..8].try_into().unwrap_or_default()),
        _ => {
            let d = ring::digest::digest(&ring::digest::SHA256, node.as_bytes());
            u64::from_be_bytes(d.as_ref()[..8].try_into().unwrap_or_default())
        }
    }
}

struct Sealer {
    ring: Arc<RwLock<Keyring>>,
    sender: u64,
    seq: AtomicU64,
}

impl Sealer {
    fn seal(&self, body: &[u8]) -> Vec<u8> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let mut nonce = [0u8; 12];
        if let Ok(r) = super::keys::random_32() {
            nonce.copy_from_slice(&r[..12]);
        } else {
            return Vec::new();
        }
        let ring = self.ring.read().unwrap_or_else(|p| p.into_inner());
        seal::seal(&ring, Purpose::Gossip, self.sender, seq, nonce, body)
    }
}

impl Gossip {
    /// Binds `bind` and starts the membership as `me`, told of `changes` and of the
    /// members' `digests`.
    pub async fn start(
        bind: SocketAddr,
        me: Id,
        ring: Arc<RwLock<Keyring>>,
        changes: mpsc::UnboundedSender<Change>,
        digests: mpsc::UnboundedSender<Digest>,
    ) -> std::io::Result<Gossip> {
        let socket = UdpSocket::bind(bind).await?;
        // A burst (a member's state change, many members probing) must not overflow the
        // kernel's default receive buffer while the foca task is busy: 1 MiB (the kernel
        // caps it at net.core.rmem_max).
        let _ =
            nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::RcvBuf, &(1 << 20));
        let socket = Arc::new(socket);
        let (tx, rx) = mpsc::channel::<Input>(1024);
        let view = Arc::new(View {
            members: Mutex::new(BTreeMap::new()),
            forgotten: Mutex::new(BTreeMap::new()),
            counters: Counters::default(),
        });
        let sealer = Arc::new(Sealer {
            ring: ring.clone(),
            sender: sender_id(&me.node),
            // Larger than anything this node sent before a restart (the clock permitting).
            seq: AtomicU64::new((crate::clock::now_ms().max(0) as u64) << 10),
        });
        let recv = tokio::spawn(receive(socket.clone(), ring, view.clone(), tx.clone()));
        let run = tokio::spawn(run(
            me.clone(),
            rx,
            tx.clone(),
            socket,
            sealer,
            view.clone(),
            changes,
            digests,
        ));
        let ticker = {
            let tx = tx.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if tx.send(Input::Tick).await.is_err() {
                        return;
                    }
                }
            })
        };
        Ok(Gossip {
            inbox: tx,
            view,
            me,
            tasks: vec![recv, run, ticker],
        })
    }

    /// Sends this host's state version to every active member.
    pub async fn digest(&self, d: Digest) {
        let _ = self.inbox.send(Input::Digest(d)).await;
    }

    /// Asks the member at `addr` to take this host in.
    pub async fn announce(&self, addr: SocketAddr) {
        let _ = self.inbox.send(Input::Announce(addr)).await;
    }

    /// Says goodbye to every member, then stops.
    pub async fn leave(self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.inbox.send(Input::Leave(tx)).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), rx).await;
        }
        self.stop();
    }

    pub fn stop(self) {
        for t in self.tasks {
            t.abort();
        }
    }
}

async fn receive(
    socket: Arc<UdpSocket>,
    ring: Arc<RwLock<Keyring>>,
    view: Arc<View>,
    tx: mpsc::Sender<Input>,
) {
    let mut buf = vec![0u8; MAX_PACKET + 1];
    let mut replay = Replay::new(4096);
    loop {
        let Ok((n, _from)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let c = &view.counters;
        c.packets_in.fetch_add(1, Ordering::Relaxed);
        c.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
        let opened = {
            let ring = ring.read().unwrap_or_else(|p| p.into_inner());
            seal::open(&ring, Purpose::Gossip, &buf[..n], MAX_PACKET)
        };
        let o = match opened {
            Ok(o) => o,
            Err(why) => {
                c.drop(why);
                continue;
            }
        };
        if !replay.accept(o.sender, o.seq) {
            c.drop(Dropped::Replay);
            continue;
        }
        // A full inbox drops the packet, as the network would.
        let _ = tx.try_send(Input::Data(o.body));
    }
}

fn state_of(s: foca::State) -> MemberState {
    match s {
        foca::State::Alive => MemberState::Alive,
        foca::State::Suspect => MemberState::Suspect,
        foca::State::Down => MemberState::Lost,
    }
}

#[allow(clippy::too_many_arguments)]
async fn run(
    me: Id,
    mut rx: mpsc::Receiver<Input>,
    tx: mpsc::Sender<Input>,
    socket: Arc<UdpSocket>,
    sealer: Arc<Sealer>,
    view: Arc<View>,
    changes: mpsc::UnboundedSender<Change>,
    digests: mpsc::UnboundedSender<Digest>,
) {
    let seed = super::keys::random_32().unwrap_or_default();
    let rng = rand::rngs::StdRng::from_seed(seed);
    let mut foca = Foca::new(me.clone(), config(2), rng, PostcardCodec);
    let mut rt = foca::AccumulatingRuntime::new();
    let mut size = 2usize;
    let mut left: BTreeMap<String, u64> = BTreeMap::new();
    let mut health = Health::default();
    {
        let now = crate::clock::now_ms();
        view.members
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                me.node.clone(),
                Member {
                    id: me.clone(),
                    state: MemberState::Alive,
                    seen_ms: now,
                    since_ms: now,
                },
            );
    }
    while let Some(input) = rx.recv().await {
        let mut leaving = None;
        let result = match input {
            Input::Data(body) => match body.split_first() {
                Some((&BODY_FOCA, rest)) => foca.handle_data(rest, &mut rt),
                Some((&BODY_DIGEST, rest)) => {
                    if let Ok(d) = serde_json::from_slice::<Digest>(rest)
                        && d.node != me.node
                    {
                        let _ = digests.send(d);
                    }
                    Ok(())
                }
                Some((&BODY_BYE, rest)) => {
                    if let Ok(id) = serde_json::from_slice::<Id>(rest) {
                        left.insert(id.node, id.bump);
                    }
                    Ok(())
                }
                _ => Ok(()),
            },
            Input::Timer(t, due) => {
                let late = tokio::time::Instant::now().saturating_duration_since(due);
                let was = health.score;
                health.timer_fired(late, matches!(t, Timer::ProbeRandomMember(_)));
                if (was == 0) != (health.score == 0) {
                    tracing::info!(
                        score = health.score,
                        late_ms = late.as_millis() as u64,
                        "local health: gossip timers {}",
                        if was == 0 {
                            "late, probing slower"
                        } else {
                            "on time again"
                        }
                    );
                }
                foca.handle_timer(t, &mut rt)
            }
            Input::Announce(addr) => foca.announce(
                Id {
                    node: String::new(),
                    name: String::new(),
                    addr,
                    bump: 0,
                },
                &mut rt,
            ),
            Input::Leave(done) => {
                leaving = Some(done);
                Ok(())
            }
            Input::Tick => Ok(()),
            Input::Digest(d) => {
                let mut body = vec![BODY_DIGEST];
                body.extend_from_slice(&serde_json::to_vec(&d).unwrap_or_default());
                for m in foca.iter_members() {
                    let packet = sealer.seal(&body);
                    if socket.send_to(&packet, m.id().addr).await.is_ok() {
                        view.counters.packets_out.fetch_add(1, Ordering::Relaxed);
                        view.counters
                            .bytes_out
                            .fetch_add(packet.len() as u64, Ordering::Relaxed);
                    }
                }
                Ok(())
            }
        };
        if let Err(e) = result {
            tracing::debug!(error = ?e, "gossip input ignored");
        }
        if let Some(done) = leaving {
            let bye = serde_json::to_vec(&me).unwrap_or_default();
            let mut body = vec![BODY_BYE];
            body.extend_from_slice(&bye);
            let packet = sealer.seal(&body);
            for m in foca.iter_members() {
                let _ = socket.send_to(&packet, m.id().addr).await;
            }
            let _ = foca.leave_cluster(&mut rt);
            flush(&mut rt, &socket, &sealer, &view, &tx, &health).await;
            let _ = done.send(());
            return;
        }
        flush(&mut rt, &socket, &sealer, &view, &tx, &health).await;
        while let Some(n) = rt.to_notify() {
            if let OwnedNotification::Rename(old, new) = &n {
                tracing::debug!(?old, ?new, "member renamed");
            }
        }
        // Size the timeouts to the cluster (foca's LAN settings grow them slowly with n).
        let n = foca.num_members() + 1;
        if n.next_power_of_two() != size.next_power_of_two() {
            size = n;
            let _ = foca.set_config(config(n));
        }
        publish(&foca, &me, &view, &mut left, &changes);
    }
}

async fn flush(
    rt: &mut foca::AccumulatingRuntime<Id>,
    socket: &UdpSocket,
    sealer: &Sealer,
    view: &View,
    tx: &mpsc::Sender<Input>,
    health: &Health,
) {
    while let Some((to, data)) = rt.to_send() {
        let mut body = Vec::with_capacity(data.len() + 1);
        body.push(BODY_FOCA);
        body.extend_from_slice(&data);
        let packet = sealer.seal(&body);
        if packet.is_empty() || packet.len() > MAX_PACKET {
            continue;
        }
        if socket.send_to(&packet, to.addr).await.is_ok() {
            view.counters.packets_out.fetch_add(1, Ordering::Relaxed);
            view.counters
                .bytes_out
                .fetch_add(packet.len() as u64, Ordering::Relaxed);
        }
    }
    while let Some((delay, timer)) = rt.to_schedule() {
        let delay = match timer {
            Timer::ProbeRandomMember(_)
            | Timer::SendIndirectProbe { .. }
            | Timer::ChangeSuspectToDown { .. } => health.scale(delay),
            _ => delay,
        };
        let due = tokio::time::Instant::now() + delay;
        let tx = tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(due).await;
            let _ = tx.send(Input::Timer(timer, due)).await;
        });
    }
}

/// This host's own health, after Lifeguard's local health multiplier (memberlist's
/// "awareness"): a starved host (its own timers firing late, so acks it did receive were read
/// after the probe's deadline) is the likeliest cause of its failed probes. While the score is
/// up, its probe period, probe timeout and suspicion timeout stretch by (1 + score), so a slow
/// host suspects others less and gives them longer to refute; each probe timer that fires on
/// time brings the score down by one.
#[derive(Default)]
struct Health {
    score: u32,
}

impl Health {
    /// Lateness past which a timer counts against this host's health.
    const LATE: Duration = Duration::from_millis(50);
    /// memberlist's awareness maximum (a score of 8: nine times the settings).
    const MAX: u32 = 8;

    fn timer_fired(&mut self, late: Duration, probe: bool) {
        if late > Self::LATE {
            self.score = (self.score + 1).min(Self::MAX);
        } else if probe {
            self.score = self.score.saturating_sub(1);
        }
    }

    fn scale(&self, d: Duration) -> Duration {
        d * (self.score + 1)
    }

    #[cfg(test)]
    fn score(&self) -> u32 {
        self.score
    }
}

/// Moves a member of the view to `to` (it was in another state) and reports the change.
fn mark(m: &mut Member, to: MemberState, now: i64, changes: &mpsc::UnboundedSender<Change>) {
    let from = Some(m.state);
    tracing::info!(member = %m.id.name, from = ?m.state, ?to, "member state");
    m.state = to;
    m.since_ms = now;
    let _ = changes.send(Change {
        name: m.id.name.clone(),
        node: m.id.node.clone(),
        addr: m.id.addr,
        from,
        to,
    });
}

/// Brings the view in line with foca's membership; reports each change once.
fn publish(
    foca: &Foca<Id, PostcardCodec, rand::rngs::StdRng, foca::NoCustomBroadcast>,
    me: &Id,
    view: &View,
    left: &mut BTreeMap<String, u64>,
    changes: &mpsc::UnboundedSender<Change>,
) {
    let now = crate::clock::now_ms();
    let mut members = view.members.lock().unwrap_or_else(|p| p.into_inner());
    let mut forgotten = view.forgotten.lock().unwrap_or_else(|p| p.into_inner());
    let mut seen = std::collections::BTreeSet::new();
    for m in foca.iter_membership_state() {
        let id = m.id();
        if id.node == me.node || id.node.is_empty() {
            continue;
        }
        if let Some(&bump) = forgotten.get(&id.node) {
            if id.bump <= bump {
                continue;
            }
            forgotten.remove(&id.node);
        }
        // Two identities of one node: the newer one speaks for it.
        if let Some(cur) = members.get(&id.node)
            && cur.id.bump > id.bump
            && seen.contains(&id.node)
        {
            continue;
        }
        seen.insert(id.node.clone());
        let mut state = state_of(m.state());
        match left.get(&id.node) {
            // Back with a new identity (restarted, or joined again): alive as any other.
            Some(&bump) if id.bump > bump => {
                left.remove(&id.node);
            }
            // The identity that said goodbye, whatever the others still believe of it.
            Some(_) => state = MemberState::Left,
            None => {}
        }
        let entry = members.entry(id.node.clone());
        let from = match &entry {
            std::collections::btree_map::Entry::Occupied(o) => Some(o.get().state),
            _ => None,
        };
        let cur = entry.or_insert_with(|| Member {
            id: id.clone(),
            state,
            seen_ms: now,
            since_ms: now,
        });
        if id.bump >= cur.id.bump {
            cur.id = id.clone();
        }
        if state == MemberState::Alive {
            cur.seen_ms = now;
        }
        if from != Some(state) {
            cur.state = state;
            cur.since_ms = now;
            let _ = changes.send(Change {
                name: id.name.clone(),
                node: id.node.clone(),
                addr: id.addr,
                from,
                to: state,
            });
        }
    }
    // A member foca no longer lists (replaced by another node at its address, or removed
    // long after it went down) stays in the view until `berth node rm`, as lost at best.
    for (node, m) in members.iter_mut() {
        if node != &me.node
            && !seen.contains(node)
            && matches!(m.state, MemberState::Alive | MemberState::Suspect)
        {
            mark(m, MemberState::Lost, now, changes);
        }
    }
    if let Some(mine) = members.get_mut(&me.node) {
        mine.seen_ms = now;
    }
    // A bye from a member foca no longer lists still makes it `left`.
    for node in left.keys() {
        if let Some(m) = members.get_mut(node)
            && m.state != MemberState::Left
            && !seen.contains(node)
        {
            mark(m, MemberState::Left, now, changes);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn suspicion_grows_slowly_with_the_cluster() {
        let at = |n| super::config(n).suspect_to_down_after.as_secs_f64();
        assert_eq!(at(2), 2.0);
        assert_eq!(at(3), 2.0);
        assert_eq!(at(10), 2.0);
        assert!((at(30) - 2.36).abs() < 0.01, "{}", at(30));
        assert!((at(50) - 2.72).abs() < 0.01, "{}", at(50));
        assert!(super::config(50).probe_rtt < super::config(50).probe_period);
    }

    #[test]
    fn updates_ride_as_many_messages_as_in_memberlist() {
        let tx = |n| super::config(n).max_transmissions.get();
        assert_eq!(tx(2), 4);
        assert_eq!(tx(3), 4);
        assert_eq!(tx(9), 4);
        assert_eq!(tx(10), 8);
        assert_eq!(tx(50), 8);
        assert_eq!(tx(1000), 16);
    }

    #[test]
    fn local_health_slows_probes_while_our_own_timers_run_late() {
        use std::time::Duration;
        let mut h = super::Health::default();
        let probe = Duration::from_millis(400);
        assert_eq!(h.scale(probe), probe);
        // Three timers more than 50 ms late: the score climbs, so does the delay.
        for _ in 0..3 {
            h.timer_fired(Duration::from_millis(120), false);
        }
        assert_eq!(h.score(), 3);
        assert_eq!(h.scale(probe), probe * 4);
        // Capped at 8 (memberlist's awareness maximum).
        for _ in 0..20 {
            h.timer_fired(Duration::from_millis(500), false);
        }
        assert_eq!(h.score(), 8);
        assert_eq!(h.scale(probe), probe * 9);
        // On-time probe timers bring it back down, one per probe.
        for _ in 0..7 {
            h.timer_fired(Duration::from_millis(3), true);
        }
        assert_eq!(h.score(), 1);
        // An on-time timer of another kind does not.
        h.timer_fired(Duration::ZERO, false);
        assert_eq!(h.score(), 1);
        h.timer_fired(Duration::ZERO, true);
        assert_eq!(h.scale(probe), probe);
    }
}
