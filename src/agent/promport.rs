//! `monitoring.addon.prometheus` on a port of its own: a value that is a port (`":9464"`,
//! `"9464"`) or an address and port (`"0.0.0.0:9464"`) serves that service's exposition
//! (its containers' series on this host and its custom metrics, as `GET
//! /metrics/APP/SERVICE` on the API) at `http://ADDRESS:PORT/metrics`, without a token, as
//! an exporter is scraped; a port alone listens on the router's `tcp_address`. Any other
//! value (a Prometheus URL) keeps the API path only.
//!
//! Invariants: one listener per address, reconciled with the stored apps every few
//! seconds; a read is bounded (head size and time, connections per listener), only GET and
//! HEAD are answered, and nothing but the one service's series is ever served there.

use super::Core;
use crate::store::StoredApp;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Connections one exposition port holds at once.
const MAX_CONNECTIONS: usize = 64;
/// How long a scraper may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// The address a label value names, when it names one (`:P`, `P`, `IP:P`).
pub fn label_addr(value: &str, default_ip: IpAddr) -> Option<SocketAddr> {
    let v = value.trim();
    if let Ok(port) = v.trim_start_matches(':').parse::<u16>() {
        return (port > 0).then(|| SocketAddr::new(default_ip, port));
    }
    v.parse::<SocketAddr>().ok().filter(|a| a.port() > 0)
}

/// Every exposition port the apps ask for: address -> (app, service). Two services naming
/// one address: the first (by app, then service) has it, the others are reported.
pub fn wanted(
    apps: &[std::sync::Arc<StoredApp>],
    default_ip: IpAddr,
) -> (BTreeMap<SocketAddr, (String, String)>, Vec<String>) {
    let mut out: BTreeMap<SocketAddr, (String, String)> = BTreeMap::new();
    let mut clashes = Vec::new();
    for a in apps {
        for (name, s) in &a.spec.services {
            let Some(v) = s
                .ext
                .monitoring
                .as_ref()
                .and_then(|m| m.prometheus.as_ref())
            else {
                continue;
            };
            let Some(addr) = label_addr(v, default_ip) else {
                continue;
            };
            match out.get(&addr) {
                Some((app, svc)) => clashes.push(format!(
                    "{}/{name}: monitoring.addon.prometheus {addr} is {app}/{svc}'s already: give it another port",
                    a.spec.name
                )),
                None => {
                    out.insert(addr, (a.spec.name.clone(), name.clone()));
                }
            }
        }
    }
    (out, clashes)
}

/// Keeps one listener per wanted address, serving its service's exposition.
pub async fn promport_loop(core: Arc<Core>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut open: BTreeMap<SocketAddr, ((String, String), tokio::task::JoinHandle<()>)> =
        BTreeMap::new();
    let mut reported: std::collections::BTreeSet<String> = Default::default();
    loop {
        let apps = core
            .store
            .apps_shared()
            .map(|a| a.as_ref().clone())
            .unwrap_or_default();
        let (want, clashes) = wanted(&apps, core.router.tcp_ip());
        open.retain(|addr, (who, task)| {
            let keep = want.get(addr) == Some(who) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        let mut problems = clashes;
        for (addr, who) in want {
            if open.contains_key(&addr) {
                continue;
            }
            match bind(addr) {
                Ok(l) => {
                    let task = tokio::spawn(serve(l, core.clone(), who.clone()));
                    open.insert(addr, (who, task));
                }
                Err(e) => problems.push(format!(
                    "{}/{}: cannot serve monitoring.addon.prometheus on {addr}: {e}",
                    who.0, who.1
                )),
            }
        }
        for p in problems {
            if reported.insert(p.clone()) {
                let app = p.split('/').next().unwrap_or_default().to_string();
                core.event(crate::model::EventKind::Agent, &app, "", &p);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3)) => {}
            _ = shutdown.changed() => break,
        }
    }
    for (_, (_, task)) in open {
        task.abort();
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let l = std::net::TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(l)
}

async fn serve(listener: tokio::net::TcpListener, core: Arc<Core>, who: (String, String)) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(16 * 1024)
        .keep_alive(true);
    let builder = Arc::new(builder);
    let slots = Arc::new(crate::listen::Slots::default());
    let who = Arc::new(who);
    loop {
        let (stream, _) = crate::listen::accept_paced(&listener, "prometheus").await;
        let Some(slot) = slots.take(MAX_CONNECTIONS) else {
            continue;
        };
        let (core, builder, who) = (core.clone(), builder.clone(), who.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let (core, who) = (core.clone(), who.clone());
                async move { Ok::<_, std::convert::Infallible>(answer(&core, &who, &req)) }
            });
            let _ = builder
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn answer<B>(
    core: &Core,
    (app, service): &(String, String),
    req: &Request<B>,
) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, ctype: &'static str, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        if let Ok(v) = hyper::header::HeaderValue::from_str(ctype) {
            r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
        }
        r
    };
    if !matches!(*req.method(), hyper::Method::GET | hyper::Method::HEAD) {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "only GET /metrics here\n".into(),
        );
    }
    if !matches!(req.uri().path(), "/metrics" | "/") {
        return reply(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            format!("{app}/{service}'s metrics are at /metrics\n"),
        );
    }
    reply(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        core.service_exposition(app, service),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_or_an_address_is_a_port_of_its_own_and_a_url_is_not() {
        let ip: IpAddr = "127.0.0.1".parse().expect("ip");
        let at = |s: &str| label_addr(s, ip).map(|a| a.to_string());
        assert_eq!(at(":9464").as_deref(), Some("127.0.0.1:9464"));
        assert_eq!(at("9464").as_deref(), Some("127.0.0.1:9464"));
        assert_eq!(at("0.0.0.0:9100").as_deref(), Some("0.0.0.0:9100"));
        assert_eq!(at("[::1]:9100").as_deref(), Some("[::1]:9100"));
        assert_eq!(at("http://prometheus:9090"), None);
        assert_eq!(at("true"), None);
        assert_eq!(at(":0"), None);
        assert_eq!(at(":70000"), None);
    }
}
