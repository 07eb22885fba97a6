//! Membership and state spread, many members in one process over loopback UDP/TCP, with the
//! agent's own configuration (the cluster hub, foca's LAN settings, the sealed envelope).
//!
//! For each cluster size: joins by token through the first member; the time until every
//! member sees all alive; idle gossip and sync bandwidth per member (each member publishing
//! every second, as the agent does after its passes); the time until a record published on
//! one member is on all the others; the time until a stopped member is suspected by one and
//! known lost by all.
//!
//! Also: bandwidth per member with 20 instance changes a second cluster-wide, and 20 s of
//! steady state watched for members wrongly seen lost (`benches/cluster.sh --loss 5` runs the
//! whole bench in a network namespace of its own whose loopback drops 5% of UDP datagrams).
//!
//! `cargo bench --bench cluster` (sizes from `BENCH_SIZES`, default `3,10,30,50`), or
//! `benches/cluster.sh`.

use berth::cluster::gossip::MemberState;
use berth::cluster::hub::Hub;
use berth::cluster::state::Kind;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn free_addr() -> std::net::SocketAddr {
    loop {
        let u = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
        let a = u.local_addr().expect("addr");
        if std::net::TcpListener::bind(a).is_ok() {
            return a;
        }
    }
}

struct Member {
    hub: Arc<Hub>,
    _dir: tempfile::TempDir,
}

async fn member(i: usize) -> Member {
    let dir = tempfile::tempdir().expect("dir");
    let store = Arc::new(berth::store::Store::open(&dir.path().join("s.db")).expect("store"));
    let cfg = berth::config::ClusterConfig {
        bind: free_addr(),
        advertise: None,
        seeds: vec![],
        reschedule_after_ms: 60_000,
    };
    let hub = Hub::new(
        dir.path().to_path_buf(),
        cfg,
        format!("{:016x}", 0xb000 + i),
        format!("m{i}"),
        store,
        Arc::new(|_, _| {}),
        None,
    );
    Member {
        hub: Arc::new(hub),
        _dir: dir,
    }
}

fn states(h: &Hub) -> Vec<(String, MemberState)> {
    h.counters()
        .map(|v| {
            v.members()
                .into_iter()
                .map(|m| (m.id.node, m.state))
                .collect()
        })
        .unwrap_or_default()
}

async fn until(limit: Duration, mut ok: impl FnMut() -> bool) -> Option<Duration> {
    let t = Instant::now();
    while !ok() {
        if t.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Some(t.elapsed())
}

fn secs(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.2} s", d.as_secs_f64()))
        .unwrap_or_else(|| "not within the limit".into())
}

fn bytes(h: &Hub) -> u64 {
    h.counters()
        .map(|v| {
            use std::sync::atomic::Ordering::Relaxed;
            v.counters.bytes_in.load(Relaxed) + v.counters.bytes_out.load(Relaxed)
        })
        .unwrap_or(0)
}

async fn run(n: usize) {
    let mut ms = Vec::new();
    for i in 0..n {
        ms.push(member(i).await);
    }
    ms[0].hub.init().await.expect("init");
    let token = ms[0].hub.create_token(3600, n as u32).await.expect("token");
    let started = Instant::now();
    for m in &ms[1..] {
        m.hub.join(&token, None).await.expect("join");
    }
    let joined = started.elapsed();
    let all_alive = || {
        ms.iter().all(|m| {
            let s = states(&m.hub);
            s.len() == n && s.iter().all(|(_, st)| *st == MemberState::Alive)
        })
    };
    let converged = until(Duration::from_secs(60), all_alive).await;
    // Every member publishes every second (its node record), as the agent does.
    let publishers: Vec<_> = ms
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let hub = m.hub.clone();
            tokio::spawn(async move {
                loop {
                    hub.publish(
                        &[Kind::Node],
                        vec![(
                            Kind::Node,
                            format!("{i}"),
                            serde_json::json!({ "name": format!("m{i}") }),
                        )],
                    )
                    .await;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let window = Duration::from_secs(10);
    let before: u64 = ms.iter().map(|m| bytes(&m.hub)).sum();
    tokio::time::sleep(window).await;
    let after: u64 = ms.iter().map(|m| bytes(&m.hub)).sum();
    // Bytes are counted in and out on every member: per member, half the total of both.
    let idle = (after - before) as f64 / 2.0 / n as f64 / window.as_secs_f64() / 1024.0;
    // Busy: 20 instance changes a second across the cluster (each member holds 10 instance
    // records; every 50 ms one member, in turn, changes one of its own).
    let changes = {
        let hubs: Vec<Arc<Hub>> = ms.iter().map(|m| m.hub.clone()).collect();
        tokio::spawn(async move {
            let mut k: u64 = 0;
            loop {
                let i = (k as usize) % hubs.len();
                let records = (0..10)
                    .map(|j| {
                        let state = if j == (k / hubs.len() as u64) % 10 { k } else { 0 };
                        (
                            Kind::Instance,
                            format!("m{i}_web_{j}"),
                            serde_json::json!({ "name": format!("m{i}_web_{j}"), "state": "running", "restarts": state }),
                        )
                    })
                    .collect();
                hubs[i].publish(&[Kind::Instance], records).await;
                k += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before: u64 = ms.iter().map(|m| bytes(&m.hub)).sum();
    tokio::time::sleep(window).await;
    let after: u64 = ms.iter().map(|m| bytes(&m.hub)).sum();
    changes.abort();
    let busy = (after - before) as f64 / 2.0 / n as f64 / window.as_secs_f64() / 1024.0;
    // Steady state watched for 20 s: how often a member saw another, alive one, as lost
    // (under packet loss: the false positives).
    let watch = Instant::now();
    let mut false_during = std::collections::BTreeSet::new();
    while watch.elapsed() < Duration::from_secs(20) {
        for (i, m) in ms.iter().enumerate() {
            for (node, st) in states(&m.hub) {
                if st == MemberState::Lost {
                    false_during.insert((i, node));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A record published on m0 reaches every other member.
    ms[0]
        .hub
        .publish(
            &[Kind::App],
            vec![(
                Kind::App,
                "probe".into(),
                serde_json::json!({ "name": "probe" }),
            )],
        )
        .await;
    let spread = until(Duration::from_secs(30), || {
        ms[1..].iter().all(|m| {
            m.hub
                .remote(Kind::App)
                .iter()
                .any(|r| r.body["name"] == "probe")
        })
    })
    .await;
    // The last member stops without a word.
    let gone = format!("{:016x}", 0xb000 + n - 1);
    ms[n - 1].hub.stop().await;
    let t = Instant::now();
    let others = &ms[..n - 1];
    let seen_as = |m: &Member, s: &[MemberState]| {
        states(&m.hub)
            .iter()
            .any(|(node, st)| node == &gone && s.contains(st))
    };
    let suspected = until(Duration::from_secs(60), || {
        others
            .iter()
            .any(|m| seen_as(m, &[MemberState::Suspect, MemberState::Lost]))
    })
    .await;
    let lost = until(Duration::from_secs(60), || {
        others.iter().all(|m| seen_as(m, &[MemberState::Lost]))
    })
    .await
    .map(|_| t.elapsed());
    // Nobody else was declared lost on the way.
    let false_lost = others
        .iter()
        .map(|m| {
            states(&m.hub)
                .iter()
                .filter(|(node, st)| node != &gone && *st != MemberState::Alive)
                .count()
        })
        .sum::<usize>();
    println!(
        "| {n} | {:.2} s | {} | {idle:.2} KiB/s | {busy:.2} KiB/s | {} | {} | {} | {} | {false_lost} |",
        joined.as_secs_f64(),
        secs(converged),
        false_during.len(),
        secs(spread),
        secs(suspected),
        secs(lost),
    );
    for p in publishers {
        p.abort();
    }
    for m in &ms {
        m.hub.stop().await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
        .unwrap_or_else(|_| "3,10,30,50".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .filter(|n| *n >= 2)
        .collect();
    println!(
        "| members | joins (sequential) | all alive everywhere | idle bandwidth per member | with 20 instance changes/s | false lost in 20 s | a record on all | stopped member suspected | lost on all | others not alive |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for n in sizes {
        run(n).await;
    }
}
