//! The agent's HTTP JSON API (`/v1/...`), served by hyper within the bounds of `server.rs`.
//!
//! Role: turn each request into a [`Route`] (`parse_request`, pure), check the bearer token,
//! read the body and make the typed [`Command`] (`Command::new`, pure), run the command against the [`Ops`] on the tokio runtime, and answer JSON.
//! Errors are `{ "error": "...", "detail": ... }` with the status chosen in one place
//! (`status_of`).
//!
//! Invariants: knows no SQL and no engine types; never panics on any request (JSON bodies are
//! size-capped and parsed with serde, paths validated before use). Image tarballs stream
//! through in both directions (`bundle.rs`), never held whole in memory.

mod bundle;
mod exec;
mod follow;
mod route;
pub mod server;
pub mod session;
pub mod ui;

use crate::agent::{CoreError, Ops};
use crate::wire::{self, ErrorBody};
use hyper::body::Incoming;
use hyper::{Request, Response};
use route::{Command, CommandError, Route, parse_request};
use server::{Body, BodyError, Limits};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use route::{LogsParams, RouteError};

/// The pure steps a request goes through before it reaches the ops, on untrusted input:
/// headers (those hyper would accept), the declared length, the token check, the route, the
/// body as its command's type. For the fuzz target (`fuzz/fuzz_targets/api.rs`).
pub fn check_untrusted(
    method: &str,
    url: &str,
    headers: &[(&[u8], &[u8])],
    body: &[u8],
    token: &str,
) -> Result<(), String> {
    let mut map = hyper::HeaderMap::new();
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (
            hyper::header::HeaderName::from_bytes(k),
            hyper::header::HeaderValue::from_bytes(v),
        ) {
            map.append(k, v);
        }
    }
    if server::declared_length(&map).is_some_and(|n| n > MAX_JSON_BODY) {
        return Err("too large".into());
    }
    let route = parse_request(method, url).map_err(|e| e.to_string())?;
    if !(route.public() || authorised(&map, token)) {
        return Err("unauthorised".into());
    }
    match Command::new(route, body) {
        Ok(_) | Err(CommandError::Streamed) => Ok(()),
        Err(CommandError::Body(e)) => Err(e),
    }
}

/// Largest JSON body accepted.
pub const MAX_JSON_BODY: u64 = 4 << 20;
/// How long a stopping agent lets requests in flight finish.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

pub struct Server {
    listening: server::Listening,
}

/// What every request needs.
struct Ctx {
    ops: Ops,
    token: String,
    /// Browser sessions of the web console.
    sessions: session::Sessions,
    rt: tokio::runtime::Handle,
    limits: Limits,
}

impl Server {
    pub fn start(
        addr: SocketAddr,
        token: String,
        ops: Ops,
        rt: tokio::runtime::Handle,
        exec_idle: Duration,
        tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    ) -> Result<Server, String> {
        let limits = Limits {
            exec_idle,
            ..Limits::default()
        };
        let ctx = Arc::new(Ctx {
            ops,
            token,
            sessions: session::Sessions::default(),
            rt: rt.clone(),
            limits,
        });
        {
            // Weak: the hub (held by the operations, held by `ctx`) must not keep `ctx`
            // alive, or the store would never close (and its WAL never fold) at exit.
            let for_peers = Arc::downgrade(&ctx);
            ctx.ops.cluster().set_forward_handler(Arc::new(move |f| {
                let ctx = for_peers.upgrade();
                Box::pin(async move {
                    match ctx {
                        Some(ctx) => run_forwarded(ctx, f).await,
                        None => crate::cluster::join::ForwardReply {
                            status: 503,
                            body: r#"{"error":"this agent is stopping"}"#.into(),
                        },
                    }
                })
            }));
        }
        // Exec sessions other members open for this host's containers.
        ctx.ops
            .cluster()
            .set_exec_hook(exec::member_hook(Arc::downgrade(&ctx), exec_idle));
        // Triggers answer on the router's public address too.
        ctx.ops.serve_triggers_on_router();
        let handler: server::Handler = Arc::new(move |req| {
            let ctx = ctx.clone();
            Box::pin(async move { handle(req, ctx).await })
        });
        let listening = server::serve(addr, limits, tls, handler, &rt, || {
            respond(error(
                500,
                "internal error: the agent failed on this request (see its log); nothing else is affected",
            ))
        })
        .map_err(|e| e.to_string())?;
        Ok(Server { listening })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.listening.addr
    }

    /// Stops accepting requests and waits for the ones in flight (bounded).
    pub async fn shutdown(self) {
        self.listening.shutdown(SHUTDOWN_WAIT).await;
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

/// The one place that picks a status code for a ops error.
fn status_of(e: &CoreError) -> u16 {
    use crate::runtime::RuntimeError as R;
    match e {
        CoreError::Spec(_) | CoreError::BadRequest(_) => 400,
        CoreError::NotFound(_) => 404,
        CoreError::Conflict(_) | CoreError::Store(crate::store::StoreError::Conflict(_)) => 409,
        CoreError::Runtime(R::ImageUnavailable { .. }) => 400,
        CoreError::Runtime(R::NotFound(_)) => 404,
        CoreError::Runtime(R::Unreachable { .. }) => 503,
        CoreError::Volume(crate::volumes::VolumeError::Invalid(_)) => 400,
        CoreError::Volume(crate::volumes::VolumeError::Mount { .. }) => 422,
        CoreError::Cluster(c) => {
            use crate::cluster::hub::ClusterError as C;
            match c {
                C::Invalid(_) | C::Join(crate::cluster::join::JoinError::Token(_)) => 400,
                C::NotFound(_) => 404,
                C::Unavailable(_) => 503,
                C::Conflict(_) | C::NotInCluster => 409,
                C::Join(crate::cluster::join::JoinError::Refused { .. }) => 403,
                C::Join(_) => 502,
                C::Key(_) | C::Store(_) | C::Bind { .. } => 500,
            }
        }
        CoreError::Runtime(_) | CoreError::Store(_) | CoreError::Volume(_) | CoreError::Host(_) => {
            500
        }
    }
}

/// The bearer token a request carries.
fn bearer_token(headers: &hyper::HeaderMap) -> Option<String> {
    headers
        .get(hyper::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(|t| t.trim().to_string())
}

fn authorised(headers: &hyper::HeaderMap, token: &str) -> bool {
    let Some(v) = headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(given) = v.strip_prefix("Bearer ").map(str::trim) else {
        return false;
    };
    // Constant-time comparison: the token must not leak through timing.
    crate::agent::access::constant_time_eq(given.as_bytes(), token.as_bytes())
}

fn body_error(e: &BodyError) -> Reply {
    let status = match e {
        BodyError::TooLarge(_) => 413,
        BodyError::Timeout(_) => 408,
        BodyError::Read(_) => 400,
    };
    error(status, &e.to_string())
}

fn respond((status, body, ctype): Reply) -> Response<Body> {
    let mut r = Response::new(server::full(body));
    *r.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(ctype),
    );
    r
}

fn streamed(ctype: &'static str, body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(ctype),
    );
    r
}

async fn handle(req: Request<Incoming>, ctx: Arc<Ctx>) -> Response<Body> {
    let method = req.method().as_str().to_string();
    let url = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_string();
    let ops = &ctx.ops;
    let route = match parse_request(&method, &url) {
        Err(e) => return respond(error(e.status(), &e.to_string())),
        Ok(r) => r,
    };
    // Unauthenticated requests are answered before any byte of their body is read. A
    // browser's session stands for the token; a change made with one must come from the
    // console's own page (its Origin), never from another site.
    let admin_token = authorised(req.headers(), &ctx.token);
    // A named access token (`berth access create`): its name and role.
    let named = (!admin_token)
        .then(|| bearer_token(req.headers()))
        .flatten()
        .and_then(|t| ops.identify(&t));
    let bearer = admin_token || named.is_some();
    let now = crate::clock::now_ms();
    let session = (!bearer)
        .then(|| session::cookie(req.headers()))
        .flatten()
        .filter(|id| ctx.sessions.check(id, now));
    if !(route.public()
        || (matches!(route, Route::Prometheus | Route::PrometheusService { .. })
            && ops.settings().metrics.prometheus_public)
        || bearer
        || session.is_some())
    {
        return respond(error(
            401,
            "missing or wrong API token: pass it with --token or BERTH_TOKEN (it is in <data-dir>/api.token)",
        ));
    }
    // Roles: the API token (and a session signed in with it) is admin; a named token has
    // its own role, and each change it makes is an event naming it.
    let who = named.or_else(|| session.as_deref().and_then(|id| ctx.sessions.who(id)));
    if let Some((name, role)) = &who
        && !route.public()
    {
        let needs = route.required_role(&method);
        if crate::agent::access::rank(role) < crate::agent::access::rank(needs) {
            return respond(error(
                403,
                &format!(
                    "access {name} has role {role}; {method} {} needs {needs}",
                    url.split('?').next().unwrap_or("")
                ),
            ));
        }
        if !matches!(method.as_str(), "GET" | "HEAD") {
            ops.audit(name, role, &method, url.split('?').next().unwrap_or(""));
        }
    }
    // A terminal is a change too (and a WebSocket is a GET a browser sends cross-site).
    if session.is_some()
        && (!matches!(method.as_str(), "GET" | "HEAD") || matches!(route, Route::Exec(_)))
        && !session::same_origin(req.headers())
    {
        return respond(error(
            403,
            "a change made with a browser session must come from the berth console's own page (its Origin header): cross-site requests are refused",
        ));
    }
    match &route {
        Route::Ui(path) => {
            return match ui::find(path) {
                Some(a) => ui::serve(a, req.headers()),
                None => respond(error(404, &format!("no such file of the console: {path}"))),
            };
        }
        Route::SessionState => {
            let signed_in = session.is_some() || bearer;
            return respond(json(
                200,
                &serde_json::json!({
                    "signed_in": signed_in,
                    // What the console shows before its first call: nothing to a stranger.
                    "cluster": signed_in && ops.cluster().active(),
                    // Who the console is signed in as: it shows the role and offers only
                    // what the role may do (the API refuses the rest anyway).
                    "who": signed_in.then(|| match &who {
                        Some((name, role)) => serde_json::json!({ "name": name, "role": role }),
                        None => serde_json::json!({ "name": "the API token", "role": "admin" }),
                    }),
                }),
            ));
        }
        Route::SignOut => {
            if let Some(id) = &session {
                ctx.sessions.remove(id);
            }
            let mut r = respond(json(200, &serde_json::json!({ "signed_in": false })));
            if let Ok(v) = hyper::header::HeaderValue::from_str(&session::clear_cookie()) {
                r.headers_mut().insert(hyper::header::SET_COOKIE, v);
            }
            return r;
        }
        Route::SignIn => return sign_in(req, &ctx).await,
        _ => {}
    }
    // A change to another node is made by that node; a request about an app another member
    // owns is answered by its owner, as if asked there.
    let elsewhere = match &route {
        Route::NodeChange { name, .. } if ops.cluster().active() => {
            match ops.cluster().member(name) {
                None => {
                    return respond(error(
                        404,
                        &format!("no member is named {name:?}: see `berth nodes`"),
                    ));
                }
                Some(m) => (m.id.node != ops.cluster().node_id()).then_some(m.id.node),
            }
        }
        r => r
            .owned_app()
            .and_then(|app| ops.remote_owner(app))
            .or_else(|| r.owned_config_set().and_then(|s| ops.config_set_home(s))),
    };
    if let Some(node) = elsewhere {
        let body = match body_of(&route, req, &ctx).await {
            Ok(b) => b,
            Err(r) => return respond(r),
        };
        // The member that holds a config set runs the change as its own: who may touch its
        // secret items is decided here, where the caller is known.
        if route.owned_config_set().is_some()
            && let Some((name, role)) = &who
            && crate::agent::access::rank(role) < crate::agent::access::rank("admin")
            && let Ok(cmd) = Command::new(route.clone(), &body)
        {
            if cmd.writes_secrets() {
                return respond(error(
                    403,
                    &format!("access {name} has role {role}; secret config items need admin"),
                ));
            }
            if let Some(refused) = touches_secret(&cmd, ops, name, role) {
                return respond(refused);
            }
        }
        return respond(forward_to(ops, &node, &method, &url, &body).await);
    }
    match route {
        Route::LoadImages => respond(
            match bundle::load(req, ops.clone(), ctx.limits.stream_idle).await {
                Ok(out) => json(200, &out),
                Err(e) => error(status_of(&e), &e.to_string()),
            },
        ),
        Route::SaveImages(app) => match ops.save_app_images(&app).await {
            Ok((images, stream)) => {
                let mut r = streamed("application/x-tar", bundle::tarball(stream));
                if let Ok(v) = hyper::header::HeaderValue::from_str(&images.join(" ")) {
                    r.headers_mut().insert("x-berth-images", v);
                }
                r
            }
            Err(e) => respond(error(status_of(&e), &e.to_string())),
        },
        Route::Logs(p) if p.follow => {
            if ops.cluster().active() {
                // In a cluster an app's instances run on several members: every member's
                // lines, merged (the app is checked first, where it is owned).
                if let Err(e) = ops.app_known(&p.app) {
                    return respond(error(status_of(&e), &e.to_string()));
                }
                return streamed(
                    "application/x-ndjson",
                    follow::cluster(ops.clone(), &p, &url),
                );
            }
            if let Some(owner) = ops.remote_owner(&p.app) {
                if ops.member_protocol(&owner) < 2 {
                    return respond(error(
                        501,
                        &format!(
                            "{} is owned by a member that speaks cluster protocol 1, which cannot stream logs to other members: run `berth logs -f` on that host, or upgrade it",
                            p.app
                        ),
                    ));
                }
                return streamed(
                    "application/x-ndjson",
                    follow::remote(ops.clone(), owner, &p, &url),
                );
            }
            let ops = ops.clone();
            match tokio::task::spawn_blocking(move || follow::start(ops, p)).await {
                Ok(Ok(f)) => streamed("application/x-ndjson", follow::body(f)),
                Ok(Err(e)) => respond(error(status_of(&e), &e.to_string())),
                Err(_) => respond(error(500, "internal error: the log query failed")),
            }
        }
        Route::Exec(p) => {
            let by = match &who {
                Some((name, role)) => format!("access {name} ({role})"),
                None => "the API token".to_string(),
            };
            match exec::start(req, ops.clone(), p, by, ctx.limits.exec_idle).await {
                Ok(r) => r,
                Err(e) => respond(e),
            }
        }
        Route::Hook { id, secret } => {
            let from = req
                .extensions()
                .get::<server::Peer>()
                .map(|p| p.0.to_string())
                .unwrap_or_else(|| "an unknown address".into());
            let (ops, rt) = (ops.clone(), ctx.rt.clone());
            let fired = tokio::task::spawn_blocking(move || {
                rt.block_on(ops.fire_trigger(&id, &secret, &from))
            })
            .await;
            respond(match fired {
                Ok(Ok(Ok(done))) => json(200, &done),
                Ok(Ok(Err(triggers_refused))) => error(triggers_refused.0, &triggers_refused.1),
                Ok(Err(e)) => error(status_of(&e), &e.to_string()),
                Err(_) => error(
                    500,
                    "internal error: the trigger failed (see the agent's log)",
                ),
            })
        }
        route => {
            let body = match body_of(&route, req, &ctx).await {
                Ok(b) => b,
                Err(r) => return respond(r),
            };
            let cmd = match Command::new(route, &body) {
                Ok(c) => c,
                Err(CommandError::Body(e)) => return respond(error(400, &e)),
                Err(CommandError::Streamed) => {
                    return respond(error(
                        500,
                        "internal error: a streamed route reached the JSON path",
                    ));
                }
            };
            // Secret config items are for admins (the body says whether a write has any).
            if let Some((name, role)) = &who
                && cmd.writes_secrets()
                && crate::agent::access::rank(role) < crate::agent::access::rank("admin")
            {
                return respond(error(
                    403,
                    &format!("access {name} has role {role}; secret config items need admin"),
                ));
            }
            // Handlers mix engine calls with SQLite reads: they run on a blocking thread,
            // never on the runtime's workers; a panic there answers 500.
            let (ops, rt) = (ops.clone(), ctx.rt.clone());
            let below_admin = who.filter(|(_, role)| {
                crate::agent::access::rank(role) < crate::agent::access::rank("admin")
            });
            match tokio::task::spawn_blocking(move || {
                if let Some((name, role)) = &below_admin
                    && let Some(refused) = touches_secret(&cmd, &ops, name, role)
                {
                    return refused;
                }
                run(cmd, &ops, &rt)
            })
            .await
            {
                Ok(r) => respond(r),
                Err(_) => respond(error(
                    500,
                    "internal error: the agent failed on this request (see its log); nothing else is affected",
                )),
            }
        }
    }
}

/// A refusal when `cmd` changes or removes a config set's secret item and the caller is
/// not an admin.
fn touches_secret(cmd: &Command, ops: &Ops, name: &str, role: &str) -> Option<Reply> {
    let (set, keys) = cmd.config_keys_named()?;
    let secret = ops.secret_config_keys(set).ok()?;
    let k = keys.into_iter().find(|k| secret.contains(*k))?;
    Some(error(
        403,
        &format!(
            "access {name} has role {role}; item {k} of config set {set} is secret: changing or removing it needs admin"
        ),
    ))
}

/// The request's body when its route takes one (bounded in size and time), else empty.
async fn body_of(route: &Route, req: Request<Incoming>, ctx: &Ctx) -> Result<Vec<u8>, Reply> {
    if !route.takes_body() {
        return Ok(Vec::new());
    }
    server::read_body(req, MAX_JSON_BODY, ctx.limits.body_timeout)
        .await
        .map_err(|e| body_error(&e))
}

/// `POST /v1/session` `{"token": "..."}`: a new session when the token is right (a cookie
/// the page's scripts cannot read); failures are limited per minute.
async fn sign_in(req: Request<Incoming>, ctx: &Ctx) -> Response<Body> {
    let now = crate::clock::now_ms();
    if ctx.sessions.locked(now) {
        return respond(error(
            429,
            "too many failed sign-ins this minute: wait a minute and try again",
        ));
    }
    let secure = req
        .headers()
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes() == b"https");
    let body = match server::read_body(req, 4096, ctx.limits.body_timeout).await {
        Ok(b) => b,
        Err(e) => return respond(body_error(&e)),
    };
    #[derive(serde::Deserialize)]
    struct SignIn {
        token: String,
    }
    let Ok(given) = serde_json::from_slice::<SignIn>(&body) else {
        return respond(error(400, r#"the body must be {"token": "..."}"#));
    };
    let mut h = hyper::HeaderMap::new();
    if let Ok(v) = hyper::header::HeaderValue::from_str(&format!("Bearer {}", given.token.trim())) {
        h.insert(hyper::header::AUTHORIZATION, v);
    }
    let named = if authorised(&h, &ctx.token) {
        None
    } else {
        match ctx.ops.identify(given.token.trim()) {
            Some(w) => Some(w),
            None => {
                ctx.sessions.failed(now);
                return respond(error(
                    401,
                    "wrong token: use the agent's API token (in <data-dir>/api.token on the host) or an access token (`berth access create`)",
                ));
            }
        }
    };
    let id = match ctx.sessions.create_as(now, named) {
        Ok(id) => id,
        Err(e) => return respond(error(500, &e)),
    };
    let mut r = respond(json(200, &serde_json::json!({ "signed_in": true })));
    if let Ok(v) = hyper::header::HeaderValue::from_str(&session::set_cookie(&id, secure)) {
        r.headers_mut().insert(hyper::header::SET_COOKIE, v);
    }
    r
}

/// Runs a request on member `node` (the owner of what it is about) and answers its reply.
async fn forward_to(ops: &Ops, node: &str, method: &str, url: &str, body: &[u8]) -> Reply {
    match ops.cluster().forward(node, method, url, body).await {
        Ok(r) => (r.status, r.body.into_bytes(), "application/json"),
        Err(e) => {
            let e = CoreError::from(e);
            error(status_of(&e), &e.to_string())
        }
    }
}

/// Runs a request another member forwarded (authenticated by the cluster key, not the
/// token): the same routes and commands as a local request, never forwarded again.
async fn run_forwarded(
    ctx: Arc<Ctx>,
    f: crate::cluster::join::Forward,
) -> crate::cluster::join::ForwardReply {
    let reply = |(status, body, _): Reply| crate::cluster::join::ForwardReply {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let route = match parse_request(&f.method, &f.url) {
        Err(e) => return reply(error(e.status(), &e.to_string())),
        // Protocol 1 (what this build speaks under the test switch) had neither.
        Ok(Route::Top { local: true, .. } | Route::Logs(LogsParams { after: Some(_), .. }))
            if crate::cluster::spoken() < 2 =>
        {
            return reply(error(
                403,
                "this request cannot be forwarded between members",
            ));
        }
        Ok(r)
            if r.owned_app().is_none()
                && !matches!(
                    r,
                    Route::Deploy
                        | Route::NodeChange { .. }
                        | Route::ClusterKeys
                        | Route::Top { local: true, .. }
                        | Route::ListVolumes { local: true }
                        | Route::ListJobs { local: true }
                        | Route::JobHere { .. }
                        | Route::RestartHere { .. }
                        | Route::SetConfigItems(_)
                        | Route::UnsetConfigItems(_)
                        | Route::RemoveConfigSet(_)
                        | Route::ApplyConfigSet(_)
                        | Route::Logs(LogsParams {
                            local: true,
                            follow: false,
                            ..
                        })
                ) =>
        {
            return reply(error(
                403,
                "this request cannot be forwarded between members",
            ));
        }
        Ok(r) => r,
    };
    let cmd = match Command::new(route, f.body.as_bytes()) {
        Ok(c) => c,
        Err(CommandError::Body(e)) => return reply(error(400, &e)),
        Err(CommandError::Streamed) => {
            return reply(error(400, "a streamed request cannot be forwarded"));
        }
    };
    tracing::info!(from = %f.from, method = %f.method, url = %f.url, "running a forwarded request");
    let (ops, rt) = (ctx.ops.clone(), ctx.rt.clone());
    match tokio::task::spawn_blocking(move || run(cmd, &ops, &rt)).await {
        Ok(r) => reply(r),
        Err(_) => reply(error(
            500,
            "internal error: the owner failed on the forwarded request",
        )),
    }
}

/// The one function that maps a command to its reply.
fn run(cmd: Command, ops: &Ops, rt: &tokio::runtime::Handle) -> Reply {
    let result: Result<Reply, CoreError> = rt.block_on(async {
        Ok(match cmd {
            Command::Health => json(200, &ops.health()),
            Command::CheckTemplate(r) => json(200, &ops.check_template(&r)),
            Command::ListApps => json(200, &ops.apps().await?),
            Command::Deploy(r) => json(201, &ops.deploy(r).await?),
            Command::Run(r) => json(201, &ops.run_image(r).await?),
            Command::CreateTrigger(app, r) => json(201, &ops.create_trigger(&app, r)?),
            Command::ListTriggers(app) => json(200, &ops.triggers(app.as_deref())?),
            Command::RemoveTrigger(id) => {
                ops.remove_trigger(&id)?;
                json(200, &serde_json::json!({ "removed": id }))
            }
            Command::ListAccess => json(200, &ops.access_list()?),
            Command::CreateAccess(r) => json(201, &ops.create_access(r)?),
            Command::RemoveAccess(n) => {
                ops.remove_access(&n)?;
                json(200, &serde_json::json!({ "removed": n }))
            }
            Command::ListConfigSets => json(200, &ops.config_sets()?),
            Command::CreateConfigSet(w) => json(200, &ops.create_config_set(w)?),
            Command::ConfigSet(n) => json(200, &ops.config_set_view(&n)?),
            Command::SetConfigItems(n, w) => json(200, &ops.set_config_items(&n, w)?),
            Command::UnsetConfigItems(n, u) => json(200, &ops.unset_config_items(&n, u)?),
            Command::RemoveConfigSet(n) => {
                ops.remove_config_set(&n)?;
                json(200, &serde_json::json!({ "removed": n }))
            }
            Command::ConfigDiff(n, r) => json(200, &ops.config_diff(&n, &r)?),
            Command::ApplyConfigSet(n) => json(200, &ops.apply_config_set(&n).await?),
            Command::ListRegistries => json(200, &ops.registries()?),
            Command::RegistryLogin(r) => json(200, &ops.registry_login(r)?),
            Command::RegistryLogout(h) => {
                ops.registry_logout(&h)?;
                json(200, &serde_json::json!({ "logged_out": h }))
            }
            Command::AppStatus(name) => json(200, &ops.app_status(&name).await?),
            Command::Inspect(name) => json(200, &ops.inspect(&name)?),
            Command::RemoveApp { name, volumes } => {
                ops.remove_app(&name, volumes).await?;
                json(200, &serde_json::json!({ "removed": name }))
            }
            Command::Scale(name, r) => json(200, &ops.scale(&name, r).await?),
            Command::Stop(name) => json(200, &ops.set_stopped(&name, true).await?),
            Command::Start(name) => json(200, &ops.set_stopped(&name, false).await?),
            Command::Redeploy(name, r) => json(200, &ops.redeploy(&name, r).await?),
            Command::Ps { app } => json(200, &ops.ps(app.as_deref()).await?),
            // The first listing shows the whole cluster; a follower then waits for this
            // host's new events (ids count per host).
            Command::Events {
                app,
                after: 0,
                limit,
                ..
            } if ops.cluster().active() => json(200, &ops.cluster_events(app.as_deref(), limit)?),
            Command::Events {
                app,
                after,
                limit,
                wait_s,
            } => json(
                200,
                &wire::list::<_, wire::Event>(
                    ops.events(app.as_deref(), after, limit, Duration::from_secs(wait_s))
                        .await?,
                ),
            ),
            Command::ListImages => {
                json(200, &wire::list::<_, wire::ImageInfo>(ops.images().await?))
            }
            Command::PruneImages => json(200, &wire::PruneReport::from(ops.prune_images().await?)),
            Command::Versions { app, service } => json(200, &ops.versions(&app, &service)?),
            Command::Wake { app, service } => json(202, &ops.wake(&app, &service)?),
            Command::ListJobs { local: true } => json(200, &ops.jobs()?),
            Command::ListJobs { local: false } => json(200, &ops.cluster_jobs().await?),
            Command::Runs { app, task } => json(200, &ops.runs(&app, task.as_deref())?),
            Command::JobAction { app, action } => json(200, &ops.job_action(&app, &action).await?),
            Command::JobHere { app, action, req } => {
                json(200, &ops.job_here(&app, &action, req).await?)
            }
            Command::Autoscale { app, service } => {
                json(200, &ops.autoscale(&app, service.as_deref())?)
            }
            Command::ServiceAction {
                app,
                service: Some(service),
                slot,
                action: action @ (route::ServiceVerb::Stop | route::ServiceVerb::Start),
            } => json(
                200,
                &ops.set_service_stopped(&app, &service, slot, action == route::ServiceVerb::Stop)
                    .await?,
            ),
            Command::ServiceAction {
                app, service, slot, ..
            } => json(200, &ops.restart(&app, service.as_deref(), slot).await?),
            Command::RemoveService { app, service } => {
                json(200, &ops.remove_service(&app, &service).await?)
            }
            Command::RestartHere { app, req } => {
                ops.restart_here(&app, &req.container).await?;
                json(200, &serde_json::json!({ "restarted": req.container }))
            }
            Command::Traffic { app, service, req } => {
                json(200, &ops.set_traffic(&app, &service, req).await?)
            }
            Command::Rollback { app, service, req } => {
                json(200, &ops.rollback(&app, &service, req).await?)
            }
            Command::Rebalance { app, service } => json(200, &ops.rebalance(&app, &service).await?),
            Command::Release {
                app,
                service,
                confirm,
            } => json(200, &ops.release(&app, &service, confirm).await?),
            Command::Routes(app) => json(200, &ops.routes(&app)?),
            Command::SplitTraffic { app, req } => {
                json(200, &ops.set_route_traffic(&app, req).await?)
            }
            Command::ReleaseApp { app, confirm } => json(
                200,
                &serde_json::json!({ "message": ops.release_app(&app, confirm).await? }),
            ),
            Command::Prometheus => (
                200,
                ops.prometheus().into_bytes(),
                "text/plain; version=0.0.4; charset=utf-8",
            ),
            Command::PrometheusService { app, service } => (
                200,
                ops.prometheus_service(&app, &service)?.into_bytes(),
                "text/plain; version=0.0.4; charset=utf-8",
            ),
            Command::Top { app, local: true } => json(200, &ops.top(app.as_deref())),
            Command::Top { app, local: false } => json(200, &ops.cluster_top(app.as_deref()).await),
            Command::MetricsHistory { app } => json(200, &ops.metrics_history(app.as_deref())?),
            Command::ListAlarms => json(200, &ops.alarms()),
            Command::AddAlarm(r) => json(201, &ops.add_alarm(r)?),
            Command::RemoveAlarm(name) => {
                ops.remove_alarm(&name)?;
                json(200, &serde_json::json!({ "removed": name }))
            }
            Command::Outbox => json(200, &wire::list::<_, wire::OutboxStats>(ops.outbox()?)),
            Command::ListVolumes { local: true } => json(200, &ops.volume_list().await?),
            Command::ListVolumes { local: false } => json(200, &ops.cluster_volume_list().await?),
            Command::CreateVolume(r) => json(201, &ops.volume_create(r).await?),
            Command::InspectVolume(name) => json(200, &ops.volume_inspect(&name).await?),
            Command::RemoveVolume(name) => {
                ops.volume_rm(&name).await?;
                json(200, &serde_json::json!({ "removed": name }))
            }
            Command::SystemPrune => json(200, &ops.system_prune().await?),
            Command::Nodes => json(200, &ops.nodes().await?),
            Command::NodeLabel(r) => json(200, &ops.node_label(r)?),
            Command::NodeDrain(d) => json(200, &ops.node_drain(d)?),
            Command::RemoveNode(name) => {
                ops.cluster().forget(&name).await?;
                json(200, &serde_json::json!({ "removed": name }))
            }
            Command::ClusterInit => json(200, &ops.cluster().init().await?),
            Command::CreateToken(r) => json(
                201,
                &wire::TokenReply {
                    token: ops.cluster().create_token(r.ttl_s, r.uses).await?,
                },
            ),
            Command::ClusterJoin(r) => json(200, &ops.cluster().join(&r.token, r.advertise).await?),
            Command::ClusterRotateKey => json(200, &ops.cluster().rotate_key().await?),
            Command::ClusterKeys(u) => {
                ops.cluster().apply_keys(&u).await?;
                json(200, &serde_json::json!({ "applied": true }))
            }
            Command::ClusterLeave => {
                ops.cluster().leave().await?;
                json(200, &serde_json::json!({ "left": true }))
            }
            Command::Logs(p) => json(200, &ops.cluster_logs(&p).await?),
            Command::DeleteVersion {
                app,
                service,
                number,
            } => {
                ops.delete_version(&app, &service, number)?;
                json(
                    200,
                    &serde_json::json!({ "deleted": crate::model::version_name(&service, number) }),
                )
            }
        })
    });
    result.unwrap_or_else(|e| error(status_of(&e), &e.to_string()))
}
