//! Membership over real UDP on loopback: three members find each other, one stopped is
//! suspected then lost, one that leaves is `left`, and hostile packets are dropped by reason
//! without touching the membership.

use berth::cluster::gossip::{Change, Gossip, Id, MemberState};
use berth::cluster::keys::{Keyring, Purpose};
use berth::cluster::seal::{self, Dropped};
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

fn free_port() -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap()
}

async fn member(
    n: u32,
    ring: &Arc<RwLock<Keyring>>,
) -> (Gossip, tokio::sync::mpsc::UnboundedReceiver<Change>) {
    let addr = free_port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (dtx, _drx) = tokio::sync::mpsc::unbounded_channel();
    let me = Id {
        node: format!("{n:016x}"),
        name: format!("host{n}"),
        addr,
        bump: 1,
    };
    (
        Gossip::start(addr, me, ring.clone(), tx, dtx)
            .await
            .unwrap(),
        rx,
    )
}

fn states(g: &Gossip) -> Vec<(String, MemberState)> {
    g.view
        .members()
        .into_iter()
        .map(|m| (m.id.name, m.state))
        .collect()
}

async fn until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_meet_and_one_stopped_is_suspected_then_lost() {
    let ring = Arc::new(RwLock::new(Keyring::create(1).unwrap()));
    let (a, mut a_changes) = member(1, &ring).await;
    let (b, _) = member(2, &ring).await;
    let (c, _) = member(3, &ring).await;
    b.announce(a.me.addr).await;
    c.announce(a.me.addr).await;
    let all_alive = |g: &Gossip| {
        let s = states(g);
        s.len() == 3 && s.iter().all(|(_, st)| *st == MemberState::Alive)
    };
    let took = until("three alive everywhere", Duration::from_secs(10), || {
        all_alive(&a) && all_alive(&b) && all_alive(&c)
    })
    .await;
    eprintln!("three members alive everywhere after {took:?}");
    // c stops without a word: suspect, then lost, on a and b.
    let c_node = c.me.node.clone();
    c.stop();
    let state_of = |g: &Gossip| {
        g.view
            .members()
            .into_iter()
            .find(|m| m.id.node == c_node)
            .map(|m| m.state)
    };
    until("c suspected on a", Duration::from_secs(10), || {
        state_of(&a) != Some(MemberState::Alive)
    })
    .await;
    let took = until("c lost on a and b", Duration::from_secs(15), || {
        state_of(&a) == Some(MemberState::Lost) && state_of(&b) == Some(MemberState::Lost)
    })
    .await;
    eprintln!("c lost on both after {took:?} more");
    let mut seen = Vec::new();
    while let Ok(ch) = a_changes.try_recv() {
        if ch.node == c_node {
            seen.push(ch.to);
        }
    }
    assert_eq!(
        seen,
        vec![MemberState::Alive, MemberState::Suspect, MemberState::Lost],
        "a reported each change of c once"
    );
    // b leaves: `left`, not lost.
    let b_node = b.me.node.clone();
    b.leave().await;
    until("b left on a", Duration::from_secs(5), || {
        a.view
            .members()
            .iter()
            .any(|m| m.id.node == b_node && m.state == MemberState::Left)
    })
    .await;
    a.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_packets_are_dropped_by_reason_and_change_nothing() {
    let ring = Arc::new(RwLock::new(Keyring::create(1).unwrap()));
    let (a, _) = member(1, &ring).await;
    let (b, _) = member(2, &ring).await;
    b.announce(a.me.addr).await;
    until("a and b meet", Duration::from_secs(10), || {
        states(&a).len() == 2 && states(&b).len() == 2
    })
    .await;
    let before = states(&a);
    let attacker = UdpSocket::bind("127.0.0.1:0").unwrap();
    let send = |p: &[u8]| attacker.send_to(p, a.me.addr).unwrap();
    // Random bytes, a berth header of another version, one naming a key no one holds, an
    // oversize datagram.
    send(&[0x5a; 64]);
    let mut junk = b"BG\x09".to_vec();
    junk.extend_from_slice(&[7u8; 80]);
    send(&junk);
    junk[2] = 1;
    send(&junk);
    send(&vec![b'B'; 1401]);
    // Sealed under another cluster's key; sealed right but one bit flipped.
    let other = Keyring::create(1).unwrap();
    send(&seal::seal(
        &other,
        Purpose::Gossip,
        9,
        1,
        [1; 12],
        &[0, 1, 2],
    ));
    let ours = {
        let r = ring.read().unwrap();
        seal::seal(&r, Purpose::Gossip, 9, 5, [2; 12], &[0, 1, 2])
    };
    let mut flipped = ours.clone();
    flipped[40] ^= 0x10;
    send(&flipped);
    // A packet sent twice (a replay): the first is let through (its body is no valid
    // message and is ignored), the second is dropped before any parsing.
    send(&ours);
    send(&ours);
    let dropped = |why: Dropped| {
        a.view
            .counters
            .dropped()
            .into_iter()
            .find(|(d, _)| *d == why)
            .map(|(_, n)| n)
            .unwrap_or(0)
    };
    until(
        "every hostile packet counted",
        Duration::from_secs(5),
        || {
            dropped(Dropped::Magic) >= 1
                && dropped(Dropped::Version) >= 1
                && dropped(Dropped::Auth) >= 1
                && dropped(Dropped::UnknownKey) >= 2
                && dropped(Dropped::TooLarge) >= 1
                && dropped(Dropped::Replay) >= 1
        },
    )
    .await;
    eprintln!("dropped: {:?}", a.view.counters.dropped());
    let text = a.view.prometheus();
    assert!(
        text.contains("berth_gossip_packets_dropped_total{reason=\"replay\"} "),
        "{text}"
    );
    assert!(
        text.contains("berth_cluster_members{state=\"alive\"} 2"),
        "{text}"
    );
    assert!(
        !text.contains("berth_gossip_packets_total{direction=\"in\"} 0"),
        "{text}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(states(&a), before, "membership unchanged");
    a.stop();
    b.stop();
}
