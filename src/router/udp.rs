//! UDP forward for `lb.port_N: udp://:P`: one socket per router port. Each client address
//! is a flow to one instance, picked as a TCP connection is (version weight, then round
//! robin), with a socket of its own towards it, so the instance's answers come back to that
//! client; a flow ends after `[router] udp_idle_timeout` without a datagram either way, or
//! when the instance refuses (ICMP port unreachable).
//!
//! Bounds: at most `max_connections` flows per port (a datagram from a new client beyond
//! that is dropped), datagrams up to 64 KiB (one buffer per worker thread, none per flow),
//! and a datagram that cannot be sent within 100 ms is dropped, as UDP may.

use super::{InflightGuard, Shared};
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::UdpSocket;

/// The largest datagram carried.
const MAX_DATAGRAM: usize = 65_535;

thread_local! {
    static BUF: RefCell<Vec<u8>> = RefCell::new(vec![0u8; MAX_DATAGRAM]);
}

struct Flow {
    up: Arc<UdpSocket>,
    /// When a datagram last went either way (ms since the epoch).
    last_ms: Arc<AtomicU64>,
}

type Flows = Arc<Mutex<HashMap<SocketAddr, Flow>>>;

pub(super) async fn serve(port: u16, socket: UdpSocket, shared: Arc<Shared>) {
    let socket = Arc::new(socket);
    let flows: Flows = Arc::default();
    loop {
        if socket.readable().await.is_err() {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        }
        // Read without an await in between: the buffer is this thread's.
        let got = BUF.with(|b| {
            let mut b = b.borrow_mut();
            match socket.try_recv_from(&mut b) {
                Ok((n, client)) => Some((b[..n].to_vec(), client)),
                Err(_) => None,
            }
        });
        let Some((datagram, client)) = got else {
            continue;
        };
        let up = {
            let f = flows.lock().unwrap_or_else(|p| p.into_inner());
            f.get(&client).map(|f| {
                f.last_ms.store(super::now_ms(), Ordering::Relaxed);
                f.up.clone()
            })
        };
        let up = match up {
            Some(up) => up,
            None => match open(port, client, &socket, &shared, &flows).await {
                Some(up) => up,
                None => continue,
            },
        };
        // Sent now or dropped: a UDP socket is writable but for the first moments after it
        // is opened, when the runtime has not been told so yet.
        let _ =
            tokio::time::timeout(std::time::Duration::from_millis(100), up.send(&datagram)).await;
    }
}

/// A new client: picks an instance and starts the flow's answer loop.
async fn open(
    port: u16,
    client: SocketAddr,
    socket: &Arc<UdpSocket>,
    shared: &Arc<Shared>,
    flows: &Flows,
) -> Option<Arc<UdpSocket>> {
    if flows.lock().unwrap_or_else(|p| p.into_inner()).len() >= shared.limits.max_connections {
        return None;
    }
    let (ep, guard) = pick(shared, port, client.ip())?;
    let local: SocketAddr = if ep.addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .ok()?;
    let up = UdpSocket::bind(local).await.ok()?;
    if let Err(e) = up.connect(ep.addr).await {
        tracing::debug!(port, backend = %ep.addr, error = %e, "udp backend unreachable");
        ep.mark_down(super::now_ms());
        return None;
    }
    ep.stats.connected();
    let up = Arc::new(up);
    let last_ms = Arc::new(AtomicU64::new(super::now_ms()));
    flows.lock().unwrap_or_else(|p| p.into_inner()).insert(
        client,
        Flow {
            up: up.clone(),
            last_ms: last_ms.clone(),
        },
    );
    tokio::spawn(answers(
        up.clone(),
        socket.clone(),
        client,
        flows.clone(),
        (guard, last_ms),
        shared.limits.udp_idle_timeout,
    ));
    Some(up)
}

/// Carries the instance's datagrams back to the client until the flow idles out.
async fn answers(
    up: Arc<UdpSocket>,
    socket: Arc<UdpSocket>,
    client: SocketAddr,
    flows: Flows,
    (guard, last_ms): (InflightGuard, Arc<AtomicU64>),
    idle: std::time::Duration,
) {
    let idle_ms = idle.as_millis() as u64;
    loop {
        let since = super::now_ms().saturating_sub(last_ms.load(Ordering::Relaxed));
        if since >= idle_ms {
            break;
        }
        let wait = std::time::Duration::from_millis(idle_ms - since);
        match tokio::time::timeout(wait, up.readable()).await {
            Err(_) => continue, // idle for `wait`: checked again above
            Ok(Err(_)) => break,
            Ok(Ok(())) => {}
        }
        let got = BUF.with(|b| {
            let mut b = b.borrow_mut();
            match up.try_recv(&mut b) {
                Ok(n) => Ok(Some(b[..n].to_vec())),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
                // The instance refused (ICMP): the flow ends; the next datagram picks again.
                Err(e) => Err(e),
            }
        });
        match got {
            Ok(Some(d)) => {
                last_ms.store(super::now_ms(), Ordering::Relaxed);
                let _ = tokio::time::timeout(
                    std::time::Duration::from_millis(100),
                    socket.send_to(&d, client),
                )
                .await;
            }
            Ok(None) => {}
            Err(_) => break,
        }
    }
    flows
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&client);
    drop(guard);
}

fn pick(
    shared: &Shared,
    port: u16,
    client: std::net::IpAddr,
) -> Option<(super::table::Endpoint, InflightGuard)> {
    let table = shared.table.read().unwrap_or_else(|p| p.into_inner());
    let b = table.udp.get(&port)?;
    b.used.touch();
    let (roll, turn) = b.choice(client, || (shared.roll(), shared.next_turn()));
    b.pick(roll, turn, None, super::now_ms())
        .map(|ep| (ep.clone(), InflightGuard::new(&ep.inflight)))
}

#[cfg(test)]
mod tests {
    use super::super::table::{Backend, Endpoint, Pool, Table};
    use std::net::UdpSocket as StdUdp;
    use std::sync::Arc;
    use std::time::Duration;

    /// A UDP service on loopback that answers each datagram with `name: DATAGRAM`.
    fn echo(name: &'static str) -> std::net::SocketAddr {
        let s = StdUdp::bind("127.0.0.1:0").expect("bind");
        let addr = s.local_addr().expect("addr");
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                let mut out = format!("{name}: ").into_bytes();
                out.extend_from_slice(&buf[..n]);
                let _ = s.send_to(&out, from);
            }
        });
        addr
    }

    fn ask(c: &StdUdp, to: std::net::SocketAddr, what: &str) -> String {
        c.send_to(what.as_bytes(), to).expect("send");
        let mut buf = [0u8; 2048];
        let n = c.recv(&mut buf).expect("an answer");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_client_is_a_flow_to_one_instance_that_ends_when_idle() {
        let limits = super::super::Limits {
            udp_idle_timeout: Duration::from_millis(300),
            ..Default::default()
        };
        let router =
            super::super::Router::new("127.0.0.1".parse().expect("ip"), Vec::new(), limits);
        let ep = |id: &str, addr| Endpoint {
            id: id.into(),
            addr,
            inflight: Arc::default(),
            down_until: Arc::default(),
            remote: false,
            reported_ms: 0,
            stats: Arc::default(),
        };
        let port = StdUdp::bind("127.0.0.1:0")
            .expect("free")
            .local_addr()
            .expect("addr")
            .port();
        let mut t = Table::default();
        t.udp.insert(
            port,
            Backend {
                app: "dns".into(),
                service: "ns".into(),
                label: "dns/ns".into(),
                sticky: false,
                cold_start: None,
                used: Default::default(),
                stats: Arc::default(),
                pools: vec![Pool {
                    version: "ns-001".into(),
                    weight: 100,
                    endpoints: vec![ep("a", echo("a")), ep("b", echo("b"))],
                    fallback: false,
                }],
                balance: Default::default(),
            },
        );
        assert!(router.update(t).is_empty());
        let to: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let answers = tokio::task::spawn_blocking(move || {
            let c1 = StdUdp::bind("127.0.0.1:0").expect("client");
            let c2 = StdUdp::bind("127.0.0.1:0").expect("client");
            for c in [&c1, &c2] {
                c.set_read_timeout(Some(Duration::from_secs(5)))
                    .expect("timeout");
            }
            // A client's datagrams all go to the instance its first one went to.
            let first = ask(&c1, to, "1");
            let who = first.split(':').next().unwrap_or_default().to_string();
            for i in 2..6 {
                assert_eq!(ask(&c1, to, &i.to_string()), format!("{who}: {i}"));
            }
            // Another client is another flow: round robin gives it the other instance.
            let other = ask(&c2, to, "x");
            assert!(!other.starts_with(&who), "{other} {who}");
            // After the idle time the flow is gone: the next datagram picks again.
            std::thread::sleep(Duration::from_millis(700));
            let again = ask(&c1, to, "y");
            (first, again)
        })
        .await
        .expect("client");
        assert!(answers.0.ends_with(": 1") && answers.1.ends_with(": y"));
        let f = router.figures();
        let flows: u64 = f.routes.iter().map(|r| r.connections).sum();
        assert_eq!(flows, 3, "{f:?}");
        assert_eq!(
            f.routes
                .iter()
                .find(|r| r.connections > 0)
                .map(|r| r.key.route.as_str()),
            Some(&*format!("udp://:{port}"))
        );
    }
}
