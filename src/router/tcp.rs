//! TCP proxy for `lb.port_N: tcp://:P`: one listener per router port; each connection goes to
//! one backend, chosen by version weight and round robin.

use super::{InflightGuard, Shared};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};

pub(super) async fn serve(port: u16, listener: TcpListener, shared: Arc<Shared>) {
    let slots = Arc::new(crate::listen::Slots::default());
    loop {
        let (mut client, _) = crate::listen::accept_paced(&listener, "tcp router").await;
        // Over the cap: closed at once.
        let Some(slot) = slots.take(shared.limits.max_connections) else {
            continue;
        };
        // Picked under the table's read lock, with the in-flight guard taken before it is
        // released (see `Router::drain`).
        let picked = {
            let table = shared.table.read().unwrap_or_else(|p| p.into_inner());
            table
                .tcp
                .get(&port)
                .and_then(|b| b.pick(shared.roll(), shared.next_turn(), None))
                .map(|ep| (ep.addr, InflightGuard::new(&ep.inflight)))
        };
        // No ready instance: close the connection at once rather than hang it.
        let Some((addr, guard)) = picked else {
            continue;
        };
        tokio::spawn(async move {
            let (_guard, _slot) = (guard, slot);
            match TcpStream::connect(addr).await {
                Ok(mut upstream) => {
                    let _ = client.set_nodelay(true);
                    let _ = upstream.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
                Err(e) => {
                    tracing::debug!(port, backend = %addr, error = %e, "tcp backend unreachable")
                }
            }
        });
    }
}
