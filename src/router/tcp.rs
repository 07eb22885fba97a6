//! TCP proxy for `lb.port_N: tcp://:P`: one listener per router port; each connection goes to
//! one backend, chosen by version weight and round robin.

use super::Shared;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};

pub(super) async fn serve(port: u16, listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            continue;
        };
        let table = shared.table();
        let Some(backend) = table.tcp.get(&port) else {
            continue;
        };
        let Some(ep) = backend
            .pick(shared.roll(), shared.next_turn(), None)
            .cloned()
        else {
            // No ready instance: close the connection at once rather than hang it.
            continue;
        };
        tokio::spawn(async move {
            match TcpStream::connect(ep.addr).await {
                Ok(mut upstream) => {
                    let _ = client.set_nodelay(true);
                    let _ = upstream.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
                Err(e) => {
                    tracing::debug!(port, backend = %ep.addr, error = %e, "tcp backend unreachable")
                }
            }
        });
    }
}
