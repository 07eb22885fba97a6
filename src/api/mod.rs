//! The agent's HTTP JSON API (`/v1/...`) on tiny_http worker threads.
//!
//! Role: turn each request into a typed [`Command`] (`parse_request`, pure), check the bearer
//! token, run the command against the [`Core`] on the tokio runtime, and answer JSON.
//! Errors are `{ "error": "...", "detail": ... }` with the status chosen in one place
//! (`status_of`).
//!
//! Invariants: knows no SQL and no engine types; never panics on any request (JSON bodies are
//! size-capped and parsed with serde, paths validated before use). Image tarballs stream
//! through in both directions (`bundle.rs`), never held whole in memory.

mod bundle;
mod follow;
mod route;

use crate::agent::{Core, CoreError};
use crate::wire::ErrorBody;
use route::{Command, parse_request};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tiny_http::{Header, Response};

pub use route::{LogsParams, RouteError};

/// Largest JSON body accepted.
pub const MAX_JSON_BODY: u64 = 4 << 20;
const WORKERS: usize = 16;

pub struct Server {
    http: Arc<tiny_http::Server>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Server {
    pub fn start(
        addr: SocketAddr,
        token: String,
        core: Arc<Core>,
        rt: tokio::runtime::Handle,
    ) -> Result<Server, String> {
        let http = Arc::new(tiny_http::Server::http(addr).map_err(|e| e.to_string())?);
        let token = Arc::new(token);
        let threads = (0..WORKERS)
            .map(|_| {
                let (http, core, rt, token) =
                    (http.clone(), core.clone(), rt.clone(), token.clone());
                std::thread::spawn(move || {
                    while let Ok(req) = http.recv() {
                        handle(req, &core, &rt, &token);
                    }
                })
            })
            .collect();
        Ok(Server { http, threads })
    }

    /// Stops accepting requests and waits for the workers to finish what they hold.
    pub fn shutdown(self) {
        for _ in &self.threads {
            self.http.unblock();
        }
        for t in self.threads {
            let _ = t.join();
        }
    }
}

type Reply = (u16, Vec<u8>, &'static str);

fn json<T: serde::Serialize>(status: u16, v: &T) -> Reply {
    match serde_json::to_vec_pretty(v) {
        Ok(mut b) => {
            b.push(b'\n');
            (status, b, "application/json")
        }
        Err(e) => error(500, &format!("cannot encode the answer: {e}")),
    }
}

fn error(status: u16, msg: &str) -> Reply {
    let body = ErrorBody {
        error: msg.to_string(),
        detail: None,
    };
    let mut b =
        serde_json::to_vec(&body).unwrap_or_else(|_| b"{\"error\":\"internal error\"}".to_vec());
    b.push(b'\n');
    (status, b, "application/json")
}

/// The one place that picks a status code for a core error.
fn status_of(e: &CoreError) -> u16 {
    use crate::runtime::RuntimeError as R;
    match e {
        CoreError::Spec(_) | CoreError::BadRequest(_) => 400,
        CoreError::NotFound(_) => 404,
        CoreError::Conflict(_) => 409,
        CoreError::Runtime(R::ImageUnavailable { .. }) => 400,
        CoreError::Runtime(R::NotFound(_)) => 404,
        CoreError::Runtime(R::Unreachable { .. }) => 503,
        CoreError::Volume(crate::volumes::VolumeError::Invalid(_)) => 400,
        CoreError::Volume(crate::volumes::VolumeError::Mount { .. }) => 422,
        CoreError::Runtime(_) | CoreError::Store(_) | CoreError::Volume(_) => 500,
    }
}

fn authorised(req: &tiny_http::Request, token: &str) -> bool {
    let Some(h) = req
        .headers()
        .iter()
        .find(|h| h.field.equiv("Authorization"))
    else {
        return false;
    };
    let v = h.value.as_str();
    let Some(given) = v.strip_prefix("Bearer ").map(str::trim) else {
        return false;
    };
    // Constant-time comparison: the token must not leak through timing.
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn read_body(req: &mut tiny_http::Request, cap: u64) -> Result<Vec<u8>, Reply> {
    if req.body_length().is_some_and(|n| n as u64 > cap) {
        return Err(error(
            413,
            &format!("request body too large (limit {cap} bytes)"),
        ));
    }
    let mut buf = Vec::new();
    let mut limited = req.as_reader().take(cap + 1);
    limited
        .read_to_end(&mut buf)
        .map_err(|e| error(400, &format!("cannot read the request body: {e}")))?;
    if buf.len() as u64 > cap {
        return Err(error(
            413,
            &format!("request body too large (limit {cap} bytes)"),
        ));
    }
    Ok(buf)
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Reply> {
    serde_json::from_slice(body).map_err(|e| error(400, &format!("invalid JSON body: {e}")))
}

fn handle(mut req: tiny_http::Request, core: &Arc<Core>, rt: &tokio::runtime::Handle, token: &str) {
    let method = req.method().as_str().to_string();
    let url = req.url().to_string();
    let reply = match parse_request(&method, &url) {
        Err(e) => error(e.status(), &e.to_string()),
        Ok(cmd)
            if !(cmd.public()
                || (cmd == Command::Prometheus && core.settings().metrics.prometheus_public)
                || authorised(&req, token)) =>
        {
            error(
                401,
                "missing or wrong API token: pass it with --token or BERTH_TOKEN (it is in <data-dir>/api.token)",
            )
        }
        Ok(Command::LoadImages) => match bundle::load(&mut req, core, rt) {
            Ok(out) => json(200, &out),
            Err(e) => error(status_of(&e), &e.to_string()),
        },
        Ok(Command::SaveImages(app)) => match rt.block_on(core.save_app_images(&app)) {
            Ok((images, stream)) => {
                let mut resp = Response::new(
                    200.into(),
                    Vec::new(),
                    bundle::Tarball::start(stream, rt),
                    None,
                    None,
                );
                for (k, v) in [
                    ("Content-Type", "application/x-tar".to_string()),
                    ("X-Berth-Images", images.join(" ")),
                ] {
                    if let Ok(h) = Header::from_bytes(k.as_bytes(), v.as_bytes()) {
                        resp = resp.with_header(h);
                    }
                }
                let _ = req.respond(resp);
                return;
            }
            Err(e) => error(status_of(&e), &e.to_string()),
        },
        Ok(Command::Logs(p)) if p.follow => match follow::start(core.clone(), p) {
            Ok(reader) => {
                let ctype = Header::from_bytes(&b"Content-Type"[..], &b"application/x-ndjson"[..]);
                let mut resp = Response::new(200.into(), Vec::new(), reader, None, None);
                if let Ok(h) = ctype {
                    resp = resp.with_header(h);
                }
                let _ = req.respond(resp);
                return;
            }
            Err(e) => error(status_of(&e), &e.to_string()),
        },
        Ok(cmd) => run(cmd, &mut req, core, rt),
    };
    let (status, body, ctype) = reply;
    let mut resp = Response::from_data(body).with_status_code(status);
    if let Ok(h) = Header::from_bytes(&b"Content-Type"[..], ctype.as_bytes()) {
        resp = resp.with_header(h);
    }
    let _ = req.respond(resp);
}

fn run(
    cmd: Command,
    req: &mut tiny_http::Request,
    core: &Arc<Core>,
    rt: &tokio::runtime::Handle,
) -> Reply {
    let body = match cmd.takes_body() {
        true => match read_body(req, MAX_JSON_BODY) {
            Ok(b) => b,
            Err(r) => return r,
        },
        false => Vec::new(),
    };
    let result: Result<Reply, CoreError> = rt.block_on(async {
        Ok(match cmd {
            Command::Health => json(
                200,
                &crate::wire::Health {
                    status: "ok".into(),
                    node_id: core.node_id.clone(),
                    node_name: core.node_name.clone(),
                    engine: core.engine.clone(),
                    version: env!("CARGO_PKG_VERSION").into(),
                },
            ),
            Command::ListApps => json(200, &core.apps().await?),
            Command::Deploy => match parse_json(&body) {
                Ok(r) => json(201, &core.deploy(r).await?),
                Err(reply) => reply,
            },
            Command::AppStatus(name) => json(200, &core.app_status(&name).await?),
            Command::Inspect(name) => json(200, &core.inspect(&name)?),
            Command::RemoveApp { name, volumes } => {
                core.remove_app(&name, volumes).await?;
                json(200, &serde_json::json!({ "removed": name }))
            }
            Command::Scale(name) => match parse_json(&body) {
                Ok(r) => json(200, &core.scale(&name, r).await?),
                Err(reply) => reply,
            },
            Command::Stop(name) => json(200, &core.set_stopped(&name, true).await?),
            Command::Start(name) => json(200, &core.set_stopped(&name, false).await?),
            Command::Redeploy(name) => {
                let r = if body.iter().all(u8::is_ascii_whitespace) {
                    Ok(Default::default())
                } else {
                    parse_json(&body)
                };
                match r {
                    Ok(r) => json(200, &core.redeploy(&name, r).await?),
                    Err(reply) => reply,
                }
            }
            Command::Ps { app } => json(200, &core.ps(app.as_deref()).await?),
            Command::Events {
                app,
                after,
                limit,
                wait_s,
            } => json(
                200,
                &core
                    .events(app.as_deref(), after, limit, Duration::from_secs(wait_s))
                    .await?,
            ),
            Command::ListImages => json(200, &core.images().await?),
            // Streamed by `handle`.
            Command::LoadImages | Command::SaveImages(_) => error(500, "streamed by handle"),
            Command::PruneImages => json(200, &core.prune_images().await?),
            Command::Versions { app, service } => json(200, &core.versions(&app, &service)?),
            Command::Traffic { app, service } => match parse_json(&body) {
                Ok(r) => json(200, &core.set_traffic(&app, &service, r)?),
                Err(reply) => reply,
            },
            Command::Rollback { app, service } => {
                let r = if body.iter().all(u8::is_ascii_whitespace) {
                    Ok(Default::default())
                } else {
                    parse_json(&body)
                };
                match r {
                    Ok(r) => json(200, &core.rollback(&app, &service, r)?),
                    Err(reply) => reply,
                }
            }
            Command::Release {
                app,
                service,
                confirm,
            } => json(200, &core.release(&app, &service, confirm)?),
            Command::Prometheus => (
                200,
                core.prometheus().into_bytes(),
                "text/plain; version=0.0.4; charset=utf-8",
            ),
            Command::Top { app } => json(200, &core.top(app.as_deref())),
            Command::MetricsHistory { app } => json(200, &core.metrics_history(app.as_deref())?),
            Command::ListAlarms => json(200, &core.alarms()),
            Command::AddAlarm => match parse_json(&body) {
                Ok(r) => json(201, &core.add_alarm(r)?),
                Err(reply) => reply,
            },
            Command::RemoveAlarm(name) => {
                core.remove_alarm(&name)?;
                json(200, &serde_json::json!({ "removed": name }))
            }
            Command::Outbox => json(200, &core.outbox()?),
            Command::ListVolumes => json(200, &core.volume_list().await?),
            Command::CreateVolume => match parse_json(&body) {
                Ok(r) => json(201, &core.volume_create(r).await?),
                Err(reply) => reply,
            },
            Command::InspectVolume(name) => json(200, &core.volume_inspect(&name).await?),
            Command::RemoveVolume(name) => {
                core.volume_rm(&name).await?;
                json(200, &serde_json::json!({ "removed": name }))
            }
            Command::SystemPrune => json(200, &core.system_prune().await?),
            Command::Logs(p) => json(200, &core.logs(&p)?),
            Command::DeleteVersion {
                app,
                service,
                number,
            } => {
                core.delete_version(&app, &service, number)?;
                json(
                    200,
                    &serde_json::json!({ "deleted": crate::model::version_name(&service, number) }),
                )
            }
        })
    });
    result.unwrap_or_else(|e| error(status_of(&e), &e.to_string()))
}
