//! TCP proxy for `lb.port_N: tcp://:P`: one listener per router port; each connection goes to
//! one backend, chosen by version weight and round robin.

use super::{InflightGuard, Shared};
use std::sync::Arc;
use tokio::net::TcpListener;

pub(super) async fn serve(port: u16, listener: TcpListener, shared: Arc<Shared>) {
    let slots = Arc::new(crate::listen::Slots::default());
    loop {
        let (mut client, peer) = crate::listen::accept_paced(&listener, "tcp router").await;
        let ip = peer.ip();
        // Over the cap: closed at once.
        let Some(slot) = slots.take(shared.limits.max_connections) else {
            continue;
        };
        let first = match pick(&shared, port, ip) {
            Ok(p) => Some(p),
            // A service at zero: the connection waits (below) while an instance starts.
            Err(Some(_)) => None,
            // No ready instance: close the connection at once rather than hang it.
            Err(None) => continue,
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let mut picked = match first {
                Some(p) => Some(p),
                None => {
                    let Err(Some(c)) = pick(&shared, port, ip) else {
                        return;
                    };
                    match shared
                        .cold
                        .hold(&c, || match pick(&shared, port, ip) {
                            Err(Some(_)) => None,
                            Ok(p) => Some(Some(p)),
                            Err(None) => Some(None),
                        })
                        .await
                    {
                        Ok(p) => p,
                        Err(_) => return,
                    }
                }
            };
            // An instance on another member that cannot be reached is taken out of rotation
            // and the connection goes to another one (nothing was sent yet).
            for _ in 0..super::CONNECT_TRIES {
                let Some((ep, guard)) = picked.take() else {
                    return;
                };
                match super::connect_upstream(ep.addr).await {
                    Ok(mut upstream) => {
                        let _guard = guard;
                        ep.stats.connected();
                        let _ = client.set_nodelay(true);
                        let _ = upstream.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                        return;
                    }
                    Err(e) => {
                        tracing::debug!(port, backend = %ep.addr, error = %e, "tcp backend unreachable");
                        ep.mark_down(super::now_ms());
                        drop(guard);
                        picked = pick(&shared, port, ip).ok();
                    }
                }
            }
        });
    }
}

/// Picks a backend for router port `port` under the table's read lock, with the in-flight
/// guard taken before it is released (see `Router::drain`). None ready: the service to
/// wait for when it starts from zero.
fn pick(
    shared: &Shared,
    port: u16,
    client: std::net::IpAddr,
) -> Result<(super::table::Endpoint, InflightGuard), Option<super::cold::ColdTarget>> {
    let table = shared.table.read().unwrap_or_else(|p| p.into_inner());
    let b = table.tcp.get(&port).ok_or(None)?;
    b.used.touch();
    let (roll, turn) = b.choice(client, || (shared.roll(), shared.next_turn()));
    b.pick(roll, turn, None, super::now_ms())
        .map(|ep| (ep.clone(), InflightGuard::new(&ep.inflight)))
        .ok_or_else(|| super::cold::ColdTarget::of(b))
}
