//! `(method, path?query)` -> [`Route`], then a route and its body -> [`Command`]: pure,
//! tested without a server. A route is known (and the token checked) before any byte of the
//! body is read; a command carries its body parsed as its own type.

use crate::spec::valid_name;

#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    Health,
    /// The web console's page (`/`) or one of its files (`/ui/...`): public, answered by
    /// the server (`api::ui`).
    Ui(String),
    /// `POST /v1/session`: sign in with a token (public), answered by the server.
    SignIn,
    /// `DELETE /v1/session`: sign out.
    SignOut,
    /// `GET /v1/session`: whether this browser is signed in (public).
    SessionState,
    /// `POST /v1/config`: check a template as a deploy would, changing nothing.
    CheckTemplate,
    ListApps,
    Deploy,
    /// `POST /v1/run`: deploy a one-service app from an image (`berth run`).
    Run,
    /// `POST /v1/apps/NAME/triggers`, `GET /v1/triggers[?app=A]`, `DELETE /v1/triggers/ID`.
    CreateTrigger(String),
    ListTriggers(Option<String>),
    RemoveTrigger(String),
    /// `POST /hooks/ID?secret=S`: a trigger's webhook, without an API token (the secret is
    /// the credential; checked by `agent/triggers.rs`).
    Hook {
        id: String,
        secret: String,
    },
    /// `GET|POST /v1/access`, `DELETE /v1/access/NAME`: access tokens with roles.
    ListAccess,
    CreateAccess,
    RemoveAccess(String),
    /// `GET|POST /v1/registries`, `DELETE /v1/registries?host=H`: private registry logins.
    ListConfigSets,
    CreateConfigSet,
    ConfigSet(String),
    SetConfigItems(String),
    UnsetConfigItems(String),
    RemoveConfigSet(String),
    ConfigDiff(String),
    ApplyConfigSet(String),
    ListRegistries,
    RegistryLogin,
    RegistryLogout(String),
    AppStatus(String),
    Inspect(String),
    /// `GET /v1/apps/NAME/images`: a tarball of the app's images.
    SaveImages(String),
    RemoveApp {
        name: String,
        volumes: bool,
    },
    Scale(String),
    Stop(String),
    Start(String),
    Redeploy(String),
    Ps {
        app: Option<String>,
    },
    Events {
        app: Option<String>,
        after: i64,
        limit: i64,
        wait_s: u64,
    },
    ListImages,
    LoadImages,
    PruneImages,
    Versions {
        app: String,
        service: String,
    },
    /// `GET /v1/apps/NAME/autoscale` (or `.../services/SVC/autoscale`).
    Autoscale {
        app: String,
        service: Option<String>,
    },
    /// `POST /v1/apps/NAME/services/SVC/wake`: a request waits for a service at zero (a
    /// member's router holds it): start one instance.
    Wake {
        app: String,
        service: String,
    },
    /// `GET /v1/jobs[?local=1]`: the jobs of the cluster (of this host only with `local`).
    ListJobs {
        local: bool,
    },
    /// `GET /v1/apps/NAME/runs[?task=T]`: a job's run history.
    Runs {
        app: String,
        task: Option<String>,
    },
    /// `POST /v1/apps/NAME/job/{run,cancel,suspend,resume}`.
    JobAction {
        app: String,
        action: String,
    },
    /// `POST /v1/apps/NAME/job/here/{attempt,remove,stop}`: the job's owner asks this
    /// member to act on an attempt placed here (run here, never handed to the owner).
    JobHere {
        app: String,
        action: String,
    },
    /// `POST /v1/apps/NAME/restart`, `POST /v1/apps/NAME/services/SVC[/slots/N]/{stop,
    /// start,restart}`: one service, or one slot of it.
    ServiceAction {
        app: String,
        service: Option<String>,
        slot: Option<u32>,
        action: ServiceVerb,
    },
    /// `GET /v1/apps/NAME/services/SVC/exec?cmd=..&cmd=..[&slot=N][&tty=1][&cols=C&rows=R]`
    /// upgraded to a WebSocket: a command in one of the service's containers.
    Exec(ExecParams),
    /// `DELETE /v1/apps/NAME/services/SVC`: drops a service from the app.
    RemoveService {
        app: String,
        service: String,
    },
    /// `POST /v1/apps/NAME/here/restart`: the app's owner asks this member to restart one
    /// of the app's containers it runs.
    RestartHere {
        app: String,
    },
    DeleteVersion {
        app: String,
        service: String,
        number: u32,
    },
    Traffic {
        app: String,
        service: String,
    },
    Rollback {
        app: String,
        service: String,
    },
    Rebalance {
        app: String,
        service: String,
    },
    Release {
        app: String,
        service: String,
        confirm: bool,
    },
    /// `GET /v1/apps/NAME/routes`: the routes its services share, with their split.
    Routes(String),
    /// `POST /v1/apps/NAME/routes/traffic`: one shared route's split between services.
    SplitTraffic(String),
    /// `POST /v1/apps/NAME/release/{confirm,abort}`: the app's blue/green release (between
    /// services, and its services' own).
    ReleaseApp {
        app: String,
        confirm: bool,
    },
    /// Prometheus exposition (`GET /metrics`).
    Prometheus,
    /// One service's own exposition (`GET /metrics/APP/SERVICE`), for a service labelled
    /// `monitoring.addon.prometheus`: its containers' series and its custom metrics.
    PrometheusService {
        app: String,
        service: String,
    },
    Top {
        app: Option<String>,
        /// This host's containers only (what a member asks another for).
        local: bool,
    },
    /// The last hour of an app's series (None: the host's).
    MetricsHistory {
        app: Option<String>,
    },
    ListAlarms,
    AddAlarm,
    RemoveAlarm(String),
    Outbox,
    Logs(LogsParams),
    /// `local`: only this host's (a member asked by another).
    ListVolumes {
        local: bool,
    },
    CreateVolume,
    InspectVolume(String),
    RemoveVolume(String),
    SystemPrune,
    /// `GET /v1/nodes`: the cluster's members.
    Nodes,
    /// `DELETE /v1/nodes/NAME`: forget a lost or left member.
    RemoveNode(String),
    ClusterInit,
    CreateToken,
    ClusterJoin,
    ClusterLeave,
    ClusterRotateKey,
    /// `POST /v1/cluster/keys`: a rotation step, from the member rotating (forwarded).
    ClusterKeys,
    /// `POST /v1/nodes/NAME/{label,drain,undrain}`: run by that node (forwarded there).
    NodeChange {
        name: String,
        action: NodeAction,
    },
}

/// What `berth exec` runs, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecParams {
    pub app: String,
    pub service: String,
    /// None: the service's first running container.
    pub slot: Option<u32>,
    pub cmd: Vec<String>,
    pub tty: bool,
    pub cols: u16,
    pub rows: u16,
}

/// The most arguments and bytes of one argument an exec's command has.
pub const EXEC_MAX_ARGS: usize = 256;
pub const EXEC_MAX_ARG: usize = 4096;

/// What `NodeChange` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeAction {
    Label,
    Drain,
    Undrain,
}

pub use crate::wire::LogsParams;

impl Route {
    /// Answered without a token (liveness checks, load balancers).
    /// The least role that may make this request (`agent/access.rs`): admin for access,
    /// registries, volumes (their credentials), the cluster and prune; viewer for reads but
    /// the stored spec (its environment); operator for every other change.
    pub fn required_role(&self, method: &str) -> &'static str {
        match self {
            Route::ListAccess
            | Route::CreateAccess
            | Route::RemoveAccess(_)
            | Route::ListRegistries
            | Route::RegistryLogin
            | Route::RegistryLogout(_)
            | Route::CreateVolume
            | Route::RemoveVolume(_)
            | Route::SystemPrune
            | Route::ClusterInit
            | Route::CreateToken
            | Route::ClusterJoin
            | Route::ClusterLeave
            | Route::ClusterRotateKey
            | Route::ClusterKeys
            | Route::NodeChange { .. } => "admin",
            // The stored spec and template hold the services' environment, where secrets
            // often are: not for viewers. A command in a container can read them too.
            Route::Inspect(_) | Route::Exec(_) => "operator",
            _ if matches!(method, "GET" | "HEAD") => "viewer",
            _ => "operator",
        }
    }

    pub fn public(&self) -> bool {
        matches!(
            self,
            Route::Health | Route::Ui(_) | Route::SignIn | Route::SessionState | Route::Hook { .. }
        )
    }

    /// The config set a change is about: made by the member that holds the set.
    pub fn owned_config_set(&self) -> Option<&str> {
        match self {
            Route::SetConfigItems(n)
            | Route::UnsetConfigItems(n)
            | Route::RemoveConfigSet(n)
            | Route::ApplyConfigSet(n) => Some(n),
            _ => None,
        }
    }

    /// The app a route is about, for the routes a member that does not own the app hands
    /// to its owner (reads of one app and every change to it; `logs -f` streams, so it is
    /// not among them yet).
    pub fn owned_app(&self) -> Option<&str> {
        match self {
            Route::AppStatus(a)
            | Route::Inspect(a)
            | Route::Scale(a)
            | Route::Stop(a)
            | Route::Start(a)
            | Route::Redeploy(a)
            | Route::RemoveApp { name: a, .. }
            | Route::Versions { app: a, .. }
            | Route::Autoscale { app: a, .. }
            | Route::Wake { app: a, .. }
            | Route::Runs { app: a, .. }
            | Route::JobAction { app: a, .. }
            | Route::ServiceAction { app: a, .. }
            | Route::RemoveService { app: a, .. }
            | Route::DeleteVersion { app: a, .. }
            | Route::Traffic { app: a, .. }
            | Route::Rollback { app: a, .. }
            | Route::Rebalance { app: a, .. }
            | Route::Release { app: a, .. }
            | Route::Routes(a)
            | Route::SplitTraffic(a)
            | Route::ReleaseApp { app: a, .. } => Some(a),
            Route::Logs(p) if !p.follow && !p.local => Some(&p.app),
            _ => None,
        }
    }

    pub fn takes_body(&self) -> bool {
        matches!(
            self,
            Route::Deploy
                | Route::Run
                | Route::RegistryLogin
                | Route::CreateConfigSet
                | Route::SetConfigItems(_)
                | Route::UnsetConfigItems(_)
                | Route::ConfigDiff(_)
                | Route::CreateAccess
                | Route::CreateTrigger(_)
                | Route::CheckTemplate
                | Route::SignIn
                | Route::Scale(_)
                | Route::Redeploy(_)
                | Route::Traffic { .. }
                | Route::SplitTraffic(_)
                | Route::Rollback { .. }
                | Route::JobHere { .. }
                | Route::RestartHere { .. }
                | Route::AddAlarm
                | Route::CreateVolume
                | Route::CreateToken
                | Route::ClusterJoin
                | Route::ClusterKeys
                | Route::NodeChange {
                    action: NodeAction::Label,
                    ..
                }
        )
    }
}

/// What the API runs: a [`Route`] with its body parsed as its own type.
#[derive(Debug)]
pub enum Command {
    Health,
    CheckTemplate(crate::wire::DeployRequest),
    ListApps,
    Deploy(crate::wire::DeployRequest),
    Run(crate::wire::RunRequest),
    CreateTrigger(String, crate::wire::TriggerCreate),
    ListTriggers(Option<String>),
    RemoveTrigger(String),
    ListAccess,
    CreateAccess(crate::wire::AccessCreate),
    RemoveAccess(String),
    ListConfigSets,
    CreateConfigSet(crate::wire::ConfigSetWrite),
    ConfigSet(String),
    SetConfigItems(String, crate::wire::ConfigSetWrite),
    UnsetConfigItems(String, crate::wire::ConfigUnset),
    RemoveConfigSet(String),
    ConfigDiff(String, crate::wire::DeployRequest),
    ApplyConfigSet(String),
    ListRegistries,
    RegistryLogin(crate::wire::RegistryLogin),
    RegistryLogout(String),
    AppStatus(String),
    Inspect(String),
    RemoveApp {
        name: String,
        volumes: bool,
    },
    Scale(String, crate::wire::ScaleRequest),
    Stop(String),
    Start(String),
    Redeploy(String, crate::wire::RedeployRequest),
    Ps {
        app: Option<String>,
    },
    Events {
        app: Option<String>,
        after: i64,
        limit: i64,
        wait_s: u64,
    },
    ListImages,
    PruneImages,
    Versions {
        app: String,
        service: String,
    },
    /// `GET /v1/apps/NAME/autoscale` (or `.../services/SVC/autoscale`).
    Autoscale {
        app: String,
        service: Option<String>,
    },
    /// `POST /v1/apps/NAME/services/SVC/wake`: a request waits for a service at zero (a
    /// member's router holds it): start one instance.
    Wake {
        app: String,
        service: String,
    },
    /// `GET /v1/jobs`: this host's jobs.
    ListJobs {
        local: bool,
    },
    /// `GET /v1/apps/NAME/runs[?task=T]`: a job's run history.
    Runs {
        app: String,
        task: Option<String>,
    },
    /// `POST /v1/apps/NAME/job/{run,cancel,suspend,resume}`.
    JobAction {
        app: String,
        action: String,
    },
    JobHere {
        app: String,
        action: String,
        req: crate::agent::jobs::HereRequest,
    },
    ServiceAction {
        app: String,
        service: Option<String>,
        slot: Option<u32>,
        action: ServiceVerb,
    },
    RemoveService {
        app: String,
        service: String,
    },
    RestartHere {
        app: String,
        req: crate::wire::RestartHereRequest,
    },
    DeleteVersion {
        app: String,
        service: String,
        number: u32,
    },
    Traffic {
        app: String,
        service: String,
        req: crate::wire::TrafficRequest,
    },
    Rollback {
        app: String,
        service: String,
        req: crate::wire::RollbackRequest,
    },
    Rebalance {
        app: String,
        service: String,
    },
    Release {
        app: String,
        service: String,
        confirm: bool,
    },
    Routes(String),
    SplitTraffic {
        app: String,
        req: crate::wire::RouteTrafficRequest,
    },
    ReleaseApp {
        app: String,
        confirm: bool,
    },
    Prometheus,
    PrometheusService {
        app: String,
        service: String,
    },
    Top {
        app: Option<String>,
        /// This host's containers only (what a member asks another for).
        local: bool,
    },
    MetricsHistory {
        app: Option<String>,
    },
    ListAlarms,
    AddAlarm(crate::metrics::history::AlarmRule),
    RemoveAlarm(String),
    Outbox,
    Logs(LogsParams),
    ListVolumes {
        local: bool,
    },
    CreateVolume(crate::wire::VolumeCreateRequest),
    InspectVolume(String),
    RemoveVolume(String),
    SystemPrune,
    Nodes,
    RemoveNode(String),
    ClusterInit,
    CreateToken(crate::wire::TokenRequest),
    ClusterJoin(crate::wire::JoinRequest),
    ClusterLeave,
    ClusterRotateKey,
    ClusterKeys(crate::cluster::keys::KeyUpdate),
    /// Labels of this node: set and removed.
    NodeLabel(crate::wire::LabelRequest),
    /// Drain (true) or undrain this node.
    NodeDrain(bool),
}

/// Why a route did not become a command.
#[derive(Debug, PartialEq)]
pub enum CommandError {
    /// The body is not the route's type (a 400, with the message).
    Body(String),
    /// The route streams (image tarballs, `logs -f`): the server answers it without a
    /// command.
    Streamed,
}

fn json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, CommandError> {
    serde_json::from_slice(body).map_err(|e| CommandError::Body(format!("invalid JSON body: {e}")))
}

/// `body` as the request of a route that allows none (redeploy, rollback): empty or blank
/// is the default request.
fn json_or_default<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
) -> Result<T, CommandError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        json(body)
    }
}

impl Command {
    /// The config set and the keys a write or unset names (whether any is secret is known
    /// only from the set: changing or removing a secret item is for admins).
    pub fn config_keys_named(&self) -> Option<(&str, Vec<&str>)> {
        match self {
            Command::SetConfigItems(n, w) => {
                Some((n, w.items.keys().map(String::as_str).collect()))
            }
            Command::UnsetConfigItems(n, u) => {
                Some((n, u.keys.iter().map(String::as_str).collect()))
            }
            _ => None,
        }
    }

    /// A config set write that marks items secret (admin only).
    pub fn writes_secrets(&self) -> bool {
        matches!(self, Command::CreateConfigSet(w) | Command::SetConfigItems(_, w) if !w.secret.is_empty())
    }

    /// The command `route` names, with `body` parsed as its type (ignored by routes that
    /// take none: see [`Route::takes_body`]).
    pub fn new(route: Route, body: &[u8]) -> Result<Command, CommandError> {
        Ok(match route {
            Route::Health => Command::Health,
            Route::CheckTemplate => Command::CheckTemplate(json(body)?),
            Route::Ui(_) | Route::SignIn | Route::SignOut | Route::SessionState => {
                return Err(CommandError::Streamed);
            }
            Route::ListApps => Command::ListApps,
            Route::Deploy => Command::Deploy(json(body)?),
            Route::Run => Command::Run(json(body)?),
            Route::CreateTrigger(app) => Command::CreateTrigger(app, json(body)?),
            Route::ListTriggers(app) => Command::ListTriggers(app),
            Route::RemoveTrigger(id) => Command::RemoveTrigger(id),
            Route::Hook { .. } => return Err(CommandError::Streamed),
            Route::ListAccess => Command::ListAccess,
            Route::CreateAccess => Command::CreateAccess(json(body)?),
            Route::RemoveAccess(n) => Command::RemoveAccess(n),
            Route::ListConfigSets => Command::ListConfigSets,
            Route::CreateConfigSet => Command::CreateConfigSet(json(body)?),
            Route::ConfigSet(n) => Command::ConfigSet(n),
            Route::SetConfigItems(n) => Command::SetConfigItems(n, json(body)?),
            Route::UnsetConfigItems(n) => Command::UnsetConfigItems(n, json(body)?),
            Route::RemoveConfigSet(n) => Command::RemoveConfigSet(n),
            Route::ConfigDiff(n) => Command::ConfigDiff(n, json(body)?),
            Route::ApplyConfigSet(n) => Command::ApplyConfigSet(n),
            Route::ListRegistries => Command::ListRegistries,
            Route::RegistryLogin => Command::RegistryLogin(json(body)?),
            Route::RegistryLogout(h) => Command::RegistryLogout(h),
            Route::AppStatus(n) => Command::AppStatus(n),
            Route::Inspect(n) => Command::Inspect(n),
            Route::RemoveApp { name, volumes } => Command::RemoveApp { name, volumes },
            Route::Scale(n) => Command::Scale(n, json(body)?),
            Route::Stop(n) => Command::Stop(n),
            Route::Start(n) => Command::Start(n),
            Route::Redeploy(n) => Command::Redeploy(n, json_or_default(body)?),
            Route::Ps { app } => Command::Ps { app },
            Route::Events {
                app,
                after,
                limit,
                wait_s,
            } => Command::Events {
                app,
                after,
                limit,
                wait_s,
            },
            Route::ListImages => Command::ListImages,
            Route::PruneImages => Command::PruneImages,
            Route::Versions { app, service } => Command::Versions { app, service },
            Route::Autoscale { app, service } => Command::Autoscale { app, service },
            Route::Wake { app, service } => Command::Wake { app, service },
            Route::ListJobs { local } => Command::ListJobs { local },
            Route::Runs { app, task } => Command::Runs { app, task },
            Route::JobAction { app, action } => Command::JobAction { app, action },
            Route::JobHere { app, action } => Command::JobHere {
                app,
                action,
                req: json(body)?,
            },
            Route::ServiceAction {
                app,
                service,
                slot,
                action,
            } => Command::ServiceAction {
                app,
                service,
                slot,
                action,
            },
            Route::RemoveService { app, service } => Command::RemoveService { app, service },
            Route::RestartHere { app } => Command::RestartHere {
                app,
                req: json(body)?,
            },
            Route::DeleteVersion {
                app,
                service,
                number,
            } => Command::DeleteVersion {
                app,
                service,
                number,
            },
            Route::Traffic { app, service } => Command::Traffic {
                app,
                service,
                req: json(body)?,
            },
            Route::Rollback { app, service } => Command::Rollback {
                app,
                service,
                req: json_or_default(body)?,
            },
            Route::Rebalance { app, service } => Command::Rebalance { app, service },
            Route::Release {
                app,
                service,
                confirm,
            } => Command::Release {
                app,
                service,
                confirm,
            },
            Route::Routes(app) => Command::Routes(app),
            Route::SplitTraffic(app) => Command::SplitTraffic {
                app,
                req: json(body)?,
            },
            Route::ReleaseApp { app, confirm } => Command::ReleaseApp { app, confirm },
            Route::Prometheus => Command::Prometheus,
            Route::PrometheusService { app, service } => {
                Command::PrometheusService { app, service }
            }
            Route::Top { app, local } => Command::Top { app, local },
            Route::MetricsHistory { app } => Command::MetricsHistory { app },
            Route::ListAlarms => Command::ListAlarms,
            Route::AddAlarm => Command::AddAlarm(json(body)?),
            Route::RemoveAlarm(n) => Command::RemoveAlarm(n),
            Route::Outbox => Command::Outbox,
            Route::Logs(p) if p.follow => return Err(CommandError::Streamed),
            Route::Logs(p) => Command::Logs(p),
            Route::ListVolumes { local } => Command::ListVolumes { local },
            Route::CreateVolume => Command::CreateVolume(json(body)?),
            Route::InspectVolume(n) => Command::InspectVolume(n),
            Route::RemoveVolume(n) => Command::RemoveVolume(n),
            Route::SystemPrune => Command::SystemPrune,
            Route::Nodes => Command::Nodes,
            Route::RemoveNode(n) => Command::RemoveNode(n),
            Route::ClusterInit => Command::ClusterInit,
            Route::CreateToken => Command::CreateToken(json_or_default(body)?),
            Route::ClusterJoin => Command::ClusterJoin(json(body)?),
            Route::ClusterLeave => Command::ClusterLeave,
            Route::ClusterRotateKey => Command::ClusterRotateKey,
            Route::ClusterKeys => Command::ClusterKeys(json(body)?),
            // The node named is this one by the time a command is made (the API forwards
            // the request to the node it names).
            Route::NodeChange { action, .. } => match action {
                NodeAction::Label => Command::NodeLabel(json(body)?),
                NodeAction::Drain => Command::NodeDrain(true),
                NodeAction::Undrain => Command::NodeDrain(false),
            },
            Route::LoadImages | Route::SaveImages(_) | Route::Exec(_) => {
                return Err(CommandError::Streamed);
            }
        })
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RouteError {
    #[error("no such endpoint: {method} {path}")]
    NotFound { method: String, path: String },
    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    #[error("invalid app name {0:?} in the path")]
    BadName(String),
    #[error("invalid query parameter {name}={value:?}: {hint}")]
    BadQuery {
        name: String,
        value: String,
        hint: &'static str,
    },
}

/// What a per-service action does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceVerb {
    Stop,
    Start,
    Restart,
}

impl ServiceVerb {
    fn parse(s: &str) -> ServiceVerb {
        match s {
            "stop" => ServiceVerb::Stop,
            "start" => ServiceVerb::Start,
            _ => ServiceVerb::Restart,
        }
    }
}

impl RouteError {
    pub fn status(&self) -> u16 {
        match self {
            RouteError::NotFound { .. } => 404,
            RouteError::MethodNotAllowed { .. } => 405,
            RouteError::BadName(_) | RouteError::BadQuery { .. } => 400,
        }
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}

fn num<T: std::str::FromStr>(name: &str, v: &str, hint: &'static str) -> Result<T, RouteError> {
    v.parse().map_err(|_| RouteError::BadQuery {
        name: name.into(),
        value: v.into(),
        hint,
    })
}

/// A name from the path, percent-decoded, if `valid` accepts it.
fn checked(s: &str, valid: fn(&str) -> bool) -> Result<String, RouteError> {
    let s = percent_decode(s);
    if valid(&s) {
        Ok(s)
    } else {
        Err(RouteError::BadName(s))
    }
}

fn volume_name(s: &str) -> Result<String, RouteError> {
    checked(s, crate::volumes::valid_name)
}

/// A node's name (1-64 characters without spaces or slashes, as `--node-name` allows) or id.
fn node_name(s: &str) -> Result<String, RouteError> {
    checked(s, |n| {
        !n.is_empty() && n.len() <= 64 && !n.contains(|c: char| c.is_whitespace() || c == '/')
    })
}

fn set_name(s: &str) -> Result<String, RouteError> {
    checked(s, |n| crate::agent::configsets::check_name(n).is_ok())
}

fn app_name(s: &str) -> Result<String, RouteError> {
    checked(s, valid_name)
}

fn service_name(s: &str) -> Result<String, RouteError> {
    checked(s, crate::spec::valid_service_name)
}

pub fn parse_request(method: &str, url: &str) -> Result<Route, RouteError> {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let q = query_pairs(query);
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let not_allowed = || RouteError::MethodNotAllowed {
        method: method.into(),
        path: path.into(),
    };
    if method == "GET" && (path == "/" || path == "/index.html" || path.starts_with("/ui/")) {
        return Ok(Route::Ui(path.to_string()));
    }
    let cmd = match (segs.as_slice(), method) {
        (["v1", "health"], "GET") => Route::Health,
        (["v1", "session"], "POST") => Route::SignIn,
        (["v1", "session"], "DELETE") => Route::SignOut,
        (["v1", "session"], "GET") => Route::SessionState,
        (["v1", "session"], _) => return Err(not_allowed()),
        (["v1", "config"], "POST") => Route::CheckTemplate,
        (["v1", "config"], _) => return Err(not_allowed()),
        (["v1", "health"], _) => return Err(not_allowed()),
        (["v1", "apps"], "GET") => Route::ListApps,
        (["v1", "apps"], "POST") => Route::Deploy,
        (["v1", "run"], "POST") => Route::Run,
        (["v1", "run"], _) => return Err(not_allowed()),
        (["hooks", id], "POST") => Route::Hook {
            id: id.to_string(),
            secret: get("secret").unwrap_or_default().to_string(),
        },
        (["hooks", _], _) => return Err(not_allowed()),
        (["v1", "apps", name, "triggers"], "POST") => Route::CreateTrigger(app_name(name)?),
        (["v1", "apps", _, "triggers"], _) => return Err(not_allowed()),
        (["v1", "triggers"], "GET") => Route::ListTriggers(get("app").map(app_name).transpose()?),
        (["v1", "triggers", id], "DELETE") => Route::RemoveTrigger(id.to_string()),
        (["v1", "triggers"], _) | (["v1", "triggers", _], _) => return Err(not_allowed()),
        (["v1", "access"], "GET") => Route::ListAccess,
        (["v1", "access"], "POST") => Route::CreateAccess,
        (["v1", "access", name], "DELETE") => Route::RemoveAccess(name.to_string()),
        (["v1", "access"], _) | (["v1", "access", _], _) => return Err(not_allowed()),
        (["v1", "configsets"], "GET") => Route::ListConfigSets,
        (["v1", "configsets"], "POST") => Route::CreateConfigSet,
        (["v1", "configsets", n], "GET") => Route::ConfigSet(set_name(n)?),
        (["v1", "configsets", n], "DELETE") => Route::RemoveConfigSet(set_name(n)?),
        (["v1", "configsets", n, "items"], "POST") => Route::SetConfigItems(set_name(n)?),
        (["v1", "configsets", n, "unset"], "POST") => Route::UnsetConfigItems(set_name(n)?),
        (["v1", "configsets", n, "diff"], "POST") => Route::ConfigDiff(set_name(n)?),
        (["v1", "configsets", n, "apply"], "POST") => Route::ApplyConfigSet(set_name(n)?),
        (["v1", "configsets"], _)
        | (["v1", "configsets", _], _)
        | (["v1", "configsets", _, "items" | "unset" | "diff" | "apply"], _) => {
            return Err(not_allowed());
        }
        (["v1", "registries"], "GET") => Route::ListRegistries,
        (["v1", "registries"], "POST") => Route::RegistryLogin,
        (["v1", "registries"], "DELETE") => match get("host") {
            Some(h) if !h.is_empty() => Route::RegistryLogout(h.to_string()),
            _ => {
                return Err(RouteError::BadQuery {
                    name: "host".into(),
                    value: String::new(),
                    hint: "name the registry: DELETE /v1/registries?host=registry.example.com",
                });
            }
        },
        (["v1", "registries"], _) => return Err(not_allowed()),
        (["v1", "apps"], _) => return Err(not_allowed()),
        (["v1", "apps", name], "GET") => Route::AppStatus(app_name(name)?),
        (["v1", "apps", name], "DELETE") => Route::RemoveApp {
            name: app_name(name)?,
            volumes: matches!(get("volumes"), Some("true" | "1")),
        },
        (["v1", "apps", _], _) => return Err(not_allowed()),
        (["v1", "apps", name, "spec"], "GET") => Route::Inspect(app_name(name)?),
        (["v1", "apps", name, "images"], "GET") => Route::SaveImages(app_name(name)?),
        (["v1", "apps", name, "scale"], "POST") => Route::Scale(app_name(name)?),
        (["v1", "apps", name, "stop"], "POST") => Route::Stop(app_name(name)?),
        (["v1", "apps", name, "start"], "POST") => Route::Start(app_name(name)?),
        (["v1", "apps", name, "redeploy"], "POST") => Route::Redeploy(app_name(name)?),
        (["v1", "apps", name, "restart"], "POST") => Route::ServiceAction {
            app: app_name(name)?,
            service: None,
            slot: None,
            action: ServiceVerb::Restart,
        },
        (["v1", "apps", name, "here", "restart"], "POST") => Route::RestartHere {
            app: app_name(name)?,
        },
        (["v1", "apps", _, "restart"] | ["v1", "apps", _, "here", "restart"], _) => {
            return Err(not_allowed());
        }
        (["v1", "apps", name, "services", svc, "exec"], "GET") => {
            let cmd: Vec<String> = q
                .iter()
                .filter(|(k, _)| k == "cmd")
                .map(|(_, v)| v.clone())
                .collect();
            if cmd.is_empty() || cmd.len() > EXEC_MAX_ARGS || cmd[0].is_empty() {
                return Err(RouteError::BadQuery {
                    name: "cmd".into(),
                    value: cmd.len().to_string(),
                    hint: "give the command as 1 to 256 cmd= parameters (berth exec APP/SERVICE -- CMD ARGS...)",
                });
            }
            if let Some(a) = cmd
                .iter()
                .find(|a| a.len() > EXEC_MAX_ARG || a.contains('\0'))
            {
                return Err(RouteError::BadQuery {
                    name: "cmd".into(),
                    value: a.chars().take(40).collect(),
                    hint: "an argument has at most 4096 bytes and no NUL",
                });
            }
            let dim = |k: &str| -> Result<u16, RouteError> {
                get(k)
                    .map_or(Ok(0), |v| num(k, v, "a terminal size is 1..=1000"))
                    .and_then(|n: u16| match n <= 1000 {
                        true => Ok(n),
                        false => Err(RouteError::BadQuery {
                            name: k.into(),
                            value: n.to_string(),
                            hint: "a terminal size is 1..=1000",
                        }),
                    })
            };
            Route::Exec(ExecParams {
                app: app_name(name)?,
                service: service_name(svc)?,
                slot: get("slot")
                    .map(|v| num("slot", v, "slot is a number from 1 (berth ps lists them)"))
                    .transpose()?,
                tty: matches!(get("tty"), Some("1" | "true")),
                cols: dim("cols")?,
                rows: dim("rows")?,
                cmd,
            })
        }
        (["v1", "apps", _, "services", _, "exec"], _) => return Err(not_allowed()),
        (["v1", "apps", name, "services", svc], "DELETE") => Route::RemoveService {
            app: app_name(name)?,
            service: service_name(svc)?,
        },
        (["v1", "apps", _, "services", _], _) => return Err(not_allowed()),
        (
            [
                "v1",
                "apps",
                name,
                "services",
                svc,
                verb @ ("stop" | "start" | "restart"),
            ],
            m,
        ) => {
            if m != "POST" {
                return Err(not_allowed());
            }
            Route::ServiceAction {
                app: app_name(name)?,
                service: Some(service_name(svc)?),
                slot: None,
                action: ServiceVerb::parse(verb),
            }
        }
        (
            [
                "v1",
                "apps",
                name,
                "services",
                svc,
                "slots",
                n,
                verb @ ("stop" | "start" | "restart"),
            ],
            m,
        ) => {
            if m != "POST" {
                return Err(not_allowed());
            }
            let slot =
                n.parse::<u32>()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| RouteError::BadQuery {
                        name: "slot".into(),
                        value: n.to_string(),
                        hint: "a slot is a number from 1, as `berth ps` shows",
                    })?;
            Route::ServiceAction {
                app: app_name(name)?,
                service: Some(service_name(svc)?),
                slot: Some(slot),
                action: ServiceVerb::parse(verb),
            }
        }
        (["v1", "apps", name, "autoscale"], "GET") => Route::Autoscale {
            app: app_name(name)?,
            service: None,
        },
        (
            [
                "v1",
                "apps",
                _,
                "spec" | "scale" | "stop" | "start" | "redeploy" | "autoscale",
            ],
            _,
        ) => return Err(not_allowed()),

        (["v1", "jobs"], "GET") => Route::ListJobs {
            local: matches!(get("local"), Some("true" | "1")),
        },
        (["v1", "jobs"], _) => return Err(not_allowed()),
        (["v1", "apps", name, "runs"], "GET") => Route::Runs {
            app: app_name(name)?,
            task: get("task").map(service_name).transpose()?,
        },
        (["v1", "apps", _, "runs"], _) => return Err(not_allowed()),
        (
            [
                "v1",
                "apps",
                name,
                "job",
                action @ ("run" | "cancel" | "suspend" | "resume"),
            ],
            "POST",
        ) => Route::JobAction {
            app: app_name(name)?,
            action: action.to_string(),
        },
        (
            [
                "v1",
                "apps",
                _,
                "job",
                "run" | "cancel" | "suspend" | "resume",
            ],
            _,
        ) => {
            return Err(not_allowed());
        }
        (
            [
                "v1",
                "apps",
                name,
                "job",
                "here",
                action @ ("attempt" | "remove" | "stop"),
            ],
            "POST",
        ) => Route::JobHere {
            app: app_name(name)?,
            action: action.to_string(),
        },
        (["v1", "apps", name, "services", svc, "wake"], "POST") => Route::Wake {
            app: app_name(name)?,
            service: service_name(svc)?,
        },
        (["v1", "apps", name, "services", svc, "autoscale"], "GET") => Route::Autoscale {
            app: app_name(name)?,
            service: Some(service_name(svc)?),
        },
        (["v1", "apps", name, "services", svc, "versions"], "GET") => Route::Versions {
            app: app_name(name)?,
            service: service_name(svc)?,
        },
        (["v1", "apps", name, "services", svc, "versions", n], "DELETE") => Route::DeleteVersion {
            app: app_name(name)?,
            service: service_name(svc)?,
            number: num("version", n, "a version number")?,
        },
        (["v1", "apps", _, "services", _, "versions", ..], _) => return Err(not_allowed()),
        (["v1", "apps", name, "routes"], "GET") => Route::Routes(app_name(name)?),
        (["v1", "apps", name, "routes", "traffic"], "POST") => Route::SplitTraffic(app_name(name)?),
        (["v1", "apps", name, "release", verb @ ("confirm" | "abort")], "POST") => {
            Route::ReleaseApp {
                app: app_name(name)?,
                confirm: *verb == "confirm",
            }
        }
        (["v1", "apps", _, "routes"], _)
        | (["v1", "apps", _, "routes", "traffic"], _)
        | (["v1", "apps", _, "release", "confirm" | "abort"], _) => return Err(not_allowed()),
        (["v1", "apps", name, "services", svc, "traffic"], "POST") => Route::Traffic {
            app: app_name(name)?,
            service: service_name(svc)?,
        },
        (["v1", "apps", name, "services", svc, "rollback"], "POST") => Route::Rollback {
            app: app_name(name)?,
            service: service_name(svc)?,
        },
        (["v1", "apps", name, "services", svc, "rebalance"], "POST") => Route::Rebalance {
            app: app_name(name)?,
            service: service_name(svc)?,
        },
        (
            [
                "v1",
                "apps",
                name,
                "services",
                svc,
                "release",
                verb @ ("confirm" | "abort"),
            ],
            "POST",
        ) => Route::Release {
            app: app_name(name)?,
            service: service_name(svc)?,
            confirm: *verb == "confirm",
        },
        (["v1", "apps", _, "services", _, "traffic" | "rollback"], _)
        | (
            [
                "v1",
                "apps",
                _,
                "services",
                _,
                "release",
                "confirm" | "abort",
            ],
            _,
        ) => {
            return Err(not_allowed());
        }
        (["v1", "ps"], "GET") => Route::Ps {
            app: get("app")
                .filter(|a| !a.is_empty())
                .map(app_name)
                .transpose()?,
        },
        (["v1", "events"], "GET") => Route::Events {
            app: get("app")
                .filter(|a| !a.is_empty())
                .map(app_name)
                .transpose()?,
            after: get("after")
                .map(|v| num("after", v, "an event id"))
                .transpose()?
                .unwrap_or(0),
            limit: get("limit")
                .map(|v| num::<i64>("limit", v, "a number of events"))
                .transpose()?
                .unwrap_or(100)
                .clamp(1, 10_000),
            wait_s: get("wait")
                .map(|v| num::<u64>("wait", v, "seconds to wait"))
                .transpose()?
                .unwrap_or(0)
                .min(60),
        },
        (["metrics"], "GET") => Route::Prometheus,
        (["metrics", app, svc], "GET") => Route::PrometheusService {
            app: app_name(app)?,
            service: service_name(svc)?,
        },
        (["v1", "top"], "GET") => Route::Top {
            app: get("app")
                .filter(|a| !a.is_empty())
                .map(app_name)
                .transpose()?,
            local: matches!(get("local"), Some("true" | "1")),
        },
        (["v1", "metrics"], "GET") => Route::MetricsHistory {
            app: get("app")
                .filter(|a| !a.is_empty())
                .map(app_name)
                .transpose()?,
        },
        (["v1", "alarms"], "GET") => Route::ListAlarms,
        (["v1", "alarms"], "POST") => Route::AddAlarm,
        (["v1", "alarms", name], "DELETE") => Route::RemoveAlarm(app_name(name)?),
        (["v1", "outbox"], "GET") => Route::Outbox,
        (["v1", "logs"], "GET") => {
            let opt = |k: &str| get(k).filter(|v| !v.is_empty()).map(str::to_string);
            Route::Logs(LogsParams {
                app: match get("app") {
                    Some(crate::logs::ROUTER_APP) => crate::logs::ROUTER_APP.to_string(),
                    a => app_name(a.unwrap_or(""))?,
                },
                service: get("service")
                    .filter(|a| !a.is_empty())
                    .map(app_name)
                    .transpose()?,
                slot: get("slot")
                    .filter(|v| !v.is_empty())
                    .map(|v| num("slot", v, "a slot number"))
                    .transpose()?,
                run: get("run")
                    .filter(|v| !v.is_empty())
                    .map(|v| num("run", v, "a job run number"))
                    .transpose()?,
                since: opt("since"),
                until: opt("until"),
                tail: get("tail")
                    .filter(|v| !v.is_empty())
                    .map(|v| num("tail", v, "a number of lines"))
                    .transpose()?,
                grep: opt("grep"),
                stream: opt("stream"),
                follow: matches!(get("follow"), Some("true" | "1")),
                after: get("after")
                    .filter(|v| !v.is_empty())
                    .map(|v| num("after", v, "a log line id"))
                    .transpose()?,
                local: matches!(get("local"), Some("true" | "1")),
            })
        }
        (["metrics"], _)
        | (["v1", "top" | "metrics" | "alarms" | "outbox" | "logs"], _)
        | (["v1", "alarms", _], _) => return Err(not_allowed()),
        (["v1", "volumes"], "GET") => Route::ListVolumes {
            local: matches!(get("local"), Some("true" | "1")),
        },
        (["v1", "volumes"], "POST") => Route::CreateVolume,
        (["v1", "volumes", name], "GET") => Route::InspectVolume(volume_name(name)?),
        (["v1", "volumes", name], "DELETE") => Route::RemoveVolume(volume_name(name)?),
        (["v1", "system", "prune"], "POST") => Route::SystemPrune,
        (["v1", "volumes"], _) | (["v1", "volumes", _], _) | (["v1", "system", "prune"], _) => {
            return Err(not_allowed());
        }
        (["v1", "nodes"], "GET") => Route::Nodes,
        (["v1", "nodes", name], "DELETE") => Route::RemoveNode(node_name(name)?),
        (["v1", "nodes", name, action], "POST") => Route::NodeChange {
            name: node_name(name)?,
            action: match *action {
                "label" => NodeAction::Label,
                "drain" => NodeAction::Drain,
                "undrain" => NodeAction::Undrain,
                _ => {
                    return Err(RouteError::NotFound {
                        method: method.into(),
                        path: path.into(),
                    });
                }
            },
        },
        (["v1", "cluster", "init"], "POST") => Route::ClusterInit,
        (["v1", "cluster", "tokens"], "POST") => Route::CreateToken,
        (["v1", "cluster", "join"], "POST") => Route::ClusterJoin,
        (["v1", "cluster", "leave"], "POST") => Route::ClusterLeave,
        (["v1", "cluster", "rotate-key"], "POST") => Route::ClusterRotateKey,
        (["v1", "cluster", "keys"], "POST") => Route::ClusterKeys,
        (["v1", "nodes"], _)
        | (["v1", "nodes", _], _)
        | (["v1", "nodes", _, _], _)
        | (
            [
                "v1",
                "cluster",
                "init" | "tokens" | "join" | "leave" | "rotate-key" | "keys",
            ],
            _,
        ) => {
            return Err(not_allowed());
        }
        (["v1", "images"], "GET") => Route::ListImages,
        (["v1", "images", "load"], "POST") => Route::LoadImages,
        (["v1", "images", "prune"], "POST") => Route::PruneImages,
        (["v1", "ps" | "events" | "images"], _) | (["v1", "images", "load" | "prune"], _) => {
            return Err(not_allowed());
        }
        _ => {
            return Err(RouteError::NotFound {
                method: method.into(),
                path: path.into(),
            });
        }
    };
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse_to_commands() {
        assert_eq!(parse_request("GET", "/v1/apps"), Ok(Route::ListApps));
        assert_eq!(
            parse_request("DELETE", "/v1/apps/shop?volumes=true"),
            Ok(Route::RemoveApp {
                name: "shop".into(),
                volumes: true
            })
        );
        assert_eq!(
            parse_request("GET", "/v1/events?app=shop&after=5&wait=3"),
            Ok(Route::Events {
                app: Some("shop".into()),
                after: 5,
                limit: 100,
                wait_s: 3
            })
        );
        assert_eq!(
            parse_request("POST", "/v1/apps/shop/services/web/release/abort"),
            Ok(Route::Release {
                app: "shop".into(),
                service: "web".into(),
                confirm: false
            })
        );
        assert_eq!(
            parse_request("GET", "/v1/apps/shop/services/web/traffic").map_err(|e| e.status()),
            Err(405)
        );
        assert_eq!(
            parse_request("GET", "/v1/ps?app=a%2Db"),
            Ok(Route::Ps {
                app: Some("a-b".into())
            })
        );
    }

    #[test]
    fn bad_requests_are_refused_with_a_status() {
        assert_eq!(
            parse_request("GET", "/v2/x").map_err(|e| e.status()),
            Err(404)
        );
        assert_eq!(
            parse_request("PUT", "/v1/apps").map_err(|e| e.status()),
            Err(405)
        );
        assert_eq!(
            parse_request("GET", "/v1/apps/..%2Fetc").map_err(|e| e.status()),
            Err(400)
        );
        assert_eq!(
            parse_request("GET", "/v1/events?after=x").map_err(|e| e.status()),
            Err(400)
        );
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("a%4"), "a%4");
        assert_eq!(percent_decode("%41%zz"), "A%zz");
    }

    /// Every route, one row each: (method, URL, what it parses to as `{:?}`, or the status).
    const ROUTES: &[(&str, &str, Result<&str, u16>)] = &[
        ("GET", "/v1/health", Ok("Health")),
        ("GET", "/v1/nodes", Ok("Nodes")),
        ("DELETE", "/v1/nodes/host3", Ok("RemoveNode(\"host3\")")),
        ("DELETE", "/v1/nodes/a%20b", Err(400)),
        ("POST", "/v1/nodes", Err(405)),
        ("GET", "/v1/apps/shop/routes", Ok("Routes(\"shop\")")),
        ("POST", "/v1/apps/shop/routes", Err(405)),
        (
            "POST",
            "/v1/apps/shop/routes/traffic",
            Ok("SplitTraffic(\"shop\")"),
        ),
        ("GET", "/v1/apps/shop/routes/traffic", Err(405)),
        (
            "POST",
            "/v1/apps/shop/release/confirm",
            Ok("ReleaseApp { app: \"shop\", confirm: true }"),
        ),
        (
            "POST",
            "/v1/apps/shop/release/abort",
            Ok("ReleaseApp { app: \"shop\", confirm: false }"),
        ),
        ("GET", "/v1/apps/shop/release/abort", Err(405)),
        ("POST", "/v1/apps/shop/release/undo", Err(404)),
        ("POST", "/v1/cluster/init", Ok("ClusterInit")),
        ("POST", "/v1/cluster/tokens", Ok("CreateToken")),
        ("POST", "/v1/cluster/join", Ok("ClusterJoin")),
        ("POST", "/v1/cluster/leave", Ok("ClusterLeave")),
        ("POST", "/v1/cluster/rotate-key", Ok("ClusterRotateKey")),
        ("POST", "/v1/cluster/keys", Ok("ClusterKeys")),
        ("GET", "/v1/cluster/keys", Err(405)),
        ("GET", "/v1/cluster/join", Err(405)),
        (
            "POST",
            "/v1/nodes/host3/label",
            Ok("NodeChange { name: \"host3\", action: Label }"),
        ),
        (
            "POST",
            "/v1/nodes/host3/drain",
            Ok("NodeChange { name: \"host3\", action: Drain }"),
        ),
        (
            "POST",
            "/v1/nodes/host3/undrain",
            Ok("NodeChange { name: \"host3\", action: Undrain }"),
        ),
        ("POST", "/v1/nodes/host3/reboot", Err(404)),
        ("GET", "/v1/nodes/host3/drain", Err(405)),
        ("POST", "/v1/health", Err(405)),
        ("GET", "/v1/apps", Ok("ListApps")),
        ("POST", "/v1/apps", Ok("Deploy")),
        ("GET", "/v1/jobs", Ok("ListJobs { local: false }")),
        ("GET", "/v1/jobs?local=1", Ok("ListJobs { local: true }")),
        ("POST", "/v1/jobs", Err(405)),
        (
            "GET",
            "/v1/apps/nightly/runs",
            Ok("Runs { app: \"nightly\", task: None }"),
        ),
        (
            "GET",
            "/v1/apps/nightly/runs?task=s1",
            Ok("Runs { app: \"nightly\", task: Some(\"s1\") }"),
        ),
        ("GET", "/v1/apps/nightly/runs?task=..", Err(400)),
        ("DELETE", "/v1/apps/nightly/runs", Err(405)),
        (
            "POST",
            "/v1/apps/nightly/job/cancel",
            Ok("JobAction { app: \"nightly\", action: \"cancel\" }"),
        ),
        ("GET", "/v1/apps/nightly/job/run", Err(405)),
        ("POST", "/v1/apps/nightly/job/explode", Err(404)),
        (
            "POST",
            "/v1/apps/nightly/job/here/attempt",
            Ok("JobHere { app: \"nightly\", action: \"attempt\" }"),
        ),
        ("POST", "/v1/apps/nightly/job/here/explode", Err(404)),
        (
            "POST",
            "/v1/apps/shop/services/web/stop",
            Ok("ServiceAction { app: \"shop\", service: Some(\"web\"), slot: None, action: Stop }"),
        ),
        (
            "POST",
            "/v1/apps/shop/services/web/slots/2/start",
            Ok(
                "ServiceAction { app: \"shop\", service: Some(\"web\"), slot: Some(2), action: Start }",
            ),
        ),
        (
            "POST",
            "/v1/apps/shop/restart",
            Ok("ServiceAction { app: \"shop\", service: None, slot: None, action: Restart }"),
        ),
        ("POST", "/v1/apps/shop/services/web/slots/0/stop", Err(400)),
        ("POST", "/v1/apps/shop/services/web/slots/x/stop", Err(400)),
        ("GET", "/v1/apps/shop/services/web/restart", Err(405)),
        ("GET", "/v1/apps/shop/restart", Err(405)),
        ("POST", "/v1/apps/shop/services/../stop", Err(400)),
        (
            "DELETE",
            "/v1/apps/shop/services/cache",
            Ok("RemoveService { app: \"shop\", service: \"cache\" }"),
        ),
        ("PUT", "/v1/apps/shop/services/cache", Err(405)),
        ("POST", "/v1/run", Ok("Run")),
        ("POST", "/v1/apps/shop/services/web/exec?cmd=sh", Err(405)),
        ("GET", "/v1/apps/shop/services/web/exec", Err(400)),
        ("GET", "/v1/apps/shop/services/web/exec?cmd=", Err(400)),
        (
            "GET",
            "/v1/apps/shop/services/web/exec?cmd=sh&cols=5000",
            Err(400),
        ),
        (
            "GET",
            "/v1/apps/shop/services/web/exec?cmd=sh&slot=x",
            Err(400),
        ),
        ("GET", "/v1/apps/sh%20op/services/web/exec?cmd=sh", Err(400)),
        ("GET", "/v1/run", Err(405)),
        ("GET", "/v1/registries", Ok("ListRegistries")),
        ("GET", "/v1/configsets", Ok("ListConfigSets")),
        ("POST", "/v1/configsets", Ok("CreateConfigSet")),
        ("GET", "/v1/configsets/prod", Ok("ConfigSet(\"prod\")")),
        (
            "DELETE",
            "/v1/configsets/prod",
            Ok("RemoveConfigSet(\"prod\")"),
        ),
        (
            "POST",
            "/v1/configsets/prod/items",
            Ok("SetConfigItems(\"prod\")"),
        ),
        (
            "POST",
            "/v1/configsets/prod/unset",
            Ok("UnsetConfigItems(\"prod\")"),
        ),
        (
            "POST",
            "/v1/configsets/prod/diff",
            Ok("ConfigDiff(\"prod\")"),
        ),
        (
            "POST",
            "/v1/configsets/prod/apply",
            Ok("ApplyConfigSet(\"prod\")"),
        ),
        ("GET", "/v1/configsets/prod/apply", Err(405)),
        ("PUT", "/v1/configsets/prod", Err(405)),
        ("GET", "/v1/configsets/..", Err(400)),
        ("GET", "/v1/configsets/-x", Err(400)),
        ("GET", "/v1/access", Ok("ListAccess")),
        ("POST", "/v1/access", Ok("CreateAccess")),
        ("DELETE", "/v1/access/ci", Ok("RemoveAccess(\"ci\")")),
        ("PUT", "/v1/access", Err(405)),
        (
            "POST",
            "/hooks/0123abcd0123abcd?secret=s%3D1",
            Ok("Hook { id: \"0123abcd0123abcd\", secret: \"s=1\" }"),
        ),
        ("GET", "/hooks/0123abcd0123abcd", Err(405)),
        (
            "POST",
            "/v1/apps/shop/triggers",
            Ok("CreateTrigger(\"shop\")"),
        ),
        (
            "GET",
            "/v1/triggers?app=shop",
            Ok("ListTriggers(Some(\"shop\"))"),
        ),
        ("GET", "/v1/triggers?app=..", Err(400)),
        ("DELETE", "/v1/triggers/ab12", Ok("RemoveTrigger(\"ab12\")")),
        ("POST", "/v1/registries", Ok("RegistryLogin")),
        (
            "DELETE",
            "/v1/registries?host=10.0.0.5%3A5000",
            Ok("RegistryLogout(\"10.0.0.5:5000\")"),
        ),
        ("DELETE", "/v1/registries", Err(400)),
        ("PUT", "/v1/registries", Err(405)),
        (
            "POST",
            "/v1/apps/shop/here/restart",
            Ok("RestartHere { app: \"shop\" }"),
        ),
        ("GET", "/v1/apps/shop", Ok("AppStatus(\"shop\")")),
        (
            "DELETE",
            "/v1/apps/shop",
            Ok("RemoveApp { name: \"shop\", volumes: false }"),
        ),
        (
            "DELETE",
            "/v1/apps/shop?volumes=1",
            Ok("RemoveApp { name: \"shop\", volumes: true }"),
        ),
        ("GET", "/v1/apps/shop/spec", Ok("Inspect(\"shop\")")),
        ("GET", "/v1/apps/shop/images", Ok("SaveImages(\"shop\")")),
        ("POST", "/v1/apps/shop/scale", Ok("Scale(\"shop\")")),
        ("POST", "/v1/apps/shop/stop", Ok("Stop(\"shop\")")),
        ("POST", "/v1/apps/shop/start", Ok("Start(\"shop\")")),
        ("POST", "/v1/apps/shop/redeploy", Ok("Redeploy(\"shop\")")),
        ("GET", "/v1/apps/shop/redeploy", Err(405)),
        (
            "GET",
            "/v1/apps/shop/autoscale",
            Ok("Autoscale { app: \"shop\", service: None }"),
        ),
        (
            "GET",
            "/v1/apps/shop/services/web/autoscale",
            Ok("Autoscale { app: \"shop\", service: Some(\"web\") }"),
        ),
        ("POST", "/v1/apps/shop/autoscale", Err(405)),
        (
            "POST",
            "/v1/apps/shop/services/web/wake",
            Ok("Wake { app: \"shop\", service: \"web\" }"),
        ),
        (
            "GET",
            "/v1/apps/shop/services/web/versions",
            Ok("Versions { app: \"shop\", service: \"web\" }"),
        ),
        (
            "DELETE",
            "/v1/apps/shop/services/web/versions/3",
            Ok("DeleteVersion { app: \"shop\", service: \"web\", number: 3 }"),
        ),
        ("DELETE", "/v1/apps/shop/services/web/versions/x", Err(400)),
        (
            "POST",
            "/v1/apps/shop/services/web/traffic",
            Ok("Traffic { app: \"shop\", service: \"web\" }"),
        ),
        (
            "POST",
            "/v1/apps/shop/services/web/rollback",
            Ok("Rollback { app: \"shop\", service: \"web\" }"),
        ),
        (
            "POST",
            "/v1/apps/shop/services/web/release/confirm",
            Ok("Release { app: \"shop\", service: \"web\", confirm: true }"),
        ),
        (
            "POST",
            "/v1/apps/shop/services/web/release/abort",
            Ok("Release { app: \"shop\", service: \"web\", confirm: false }"),
        ),
        (
            "GET",
            "/v1/apps/shop/services/web/release/confirm",
            Err(405),
        ),
        ("GET", "/v1/ps", Ok("Ps { app: None }")),
        ("GET", "/v1/ps?app=shop", Ok("Ps { app: Some(\"shop\") }")),
        (
            "GET",
            "/v1/events?app=shop&after=7&limit=99999&wait=600",
            Ok("Events { app: Some(\"shop\"), after: 7, limit: 10000, wait_s: 60 }"),
        ),
        ("GET", "/v1/events?after=-", Err(400)),
        ("GET", "/metrics", Ok("Prometheus")),
        (
            "GET",
            "/metrics/shop/web",
            Ok("PrometheusService { app: \"shop\", service: \"web\" }"),
        ),
        ("POST", "/metrics", Err(405)),
        (
            "GET",
            "/v1/top?app=shop",
            Ok("Top { app: Some(\"shop\"), local: false }"),
        ),
        ("GET", "/v1/metrics", Ok("MetricsHistory { app: None }")),
        ("GET", "/v1/alarms", Ok("ListAlarms")),
        ("POST", "/v1/alarms", Ok("AddAlarm")),
        (
            "DELETE",
            "/v1/alarms/cpu-high",
            Ok("RemoveAlarm(\"cpu-high\")"),
        ),
        ("GET", "/v1/outbox", Ok("Outbox")),
        (
            "GET",
            "/v1/logs?app=shop&service=web&slot=2&tail=5&follow=1",
            Ok(
                "Logs(LogsParams { app: \"shop\", service: Some(\"web\"), slot: Some(2), run: None, since: None, until: None, tail: Some(5), grep: None, stream: None, follow: true, after: None, local: false })",
            ),
        ),
        ("GET", "/v1/logs", Err(400)),
        ("GET", "/v1/volumes", Ok("ListVolumes { local: false }")),
        ("POST", "/v1/volumes", Ok("CreateVolume")),
        ("GET", "/v1/volumes/media", Ok("InspectVolume(\"media\")")),
        ("DELETE", "/v1/volumes/media", Ok("RemoveVolume(\"media\")")),
        ("POST", "/v1/system/prune", Ok("SystemPrune")),
        ("GET", "/v1/images", Ok("ListImages")),
        ("POST", "/v1/images/load", Ok("LoadImages")),
        ("POST", "/v1/images/prune", Ok("PruneImages")),
        ("GET", "/v1/images/prune", Err(405)),
        ("GET", "/v1/apps/..%2F..%2Fetc", Err(400)),
        ("GET", "/v2/apps", Err(404)),
        ("GET", "/", Ok("Ui(\"/\")")),
        ("GET", "/ui/app.js", Ok("Ui(\"/ui/app.js\")")),
        ("POST", "/", Err(404)),
        ("POST", "/v1/session", Ok("SignIn")),
        ("DELETE", "/v1/session", Ok("SignOut")),
        ("GET", "/v1/session", Ok("SessionState")),
        ("PUT", "/v1/session", Err(405)),
        ("POST", "/v1/config", Ok("CheckTemplate")),
        ("GET", "/v1/config", Err(405)),
    ];

    #[test]
    fn every_route_parses_as_its_row_says() {
        let mut failures = Vec::new();
        for (method, url, want) in ROUTES {
            let got = parse_request(method, url)
                .map(|r| format!("{r:?}"))
                .map_err(|e| e.status());
            let want = want.map(str::to_string);
            if got != want {
                failures.push(format!("{method} {url}: {got:?}, want {want:?}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn a_route_and_its_body_make_a_typed_command() {
        let cmd = |m: &str, u: &str, body: &str| {
            Command::new(parse_request(m, u).expect("route"), body.as_bytes())
        };
        assert!(matches!(
            cmd("POST", "/v1/apps", r#"{"name":"a","template":"x"}"#),
            Ok(Command::Deploy(r)) if r.name == "a"
        ));
        assert!(matches!(
            cmd("POST", "/v1/apps/a/scale", r#"{"services":{"web":3}}"#),
            Ok(Command::Scale(a, r)) if a == "a" && r.services["web"] == 3
        ));
        // Redeploy and rollback take an empty body as the default request.
        assert!(matches!(
            cmd("POST", "/v1/apps/a/redeploy", " \n"),
            Ok(Command::Redeploy(..))
        ));
        assert!(matches!(
            cmd("POST", "/v1/apps/a/services/web/rollback", ""),
            Ok(Command::Rollback { .. })
        ));
        // A body that is not the route's type is a 400 naming the problem.
        match cmd("POST", "/v1/apps/a/scale", r#"{"replicas":3}"#) {
            Err(CommandError::Body(e)) => assert!(e.contains("unknown field"), "{e}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            cmd("POST", "/v1/apps", ""),
            Err(CommandError::Body(_))
        ));
        // The traffic mode: "" (older clients) is `all`, an unknown one says what to use.
        use crate::model::NewTraffic;
        for (given, want) in [
            ("", NewTraffic::All),
            ("all", NewTraffic::All),
            ("none", NewTraffic::None),
        ] {
            let body = format!(r#"{{"name":"a","template":"x","traffic":"{given}"}}"#);
            match cmd("POST", "/v1/apps", &body) {
                Ok(Command::Deploy(r)) => assert_eq!(r.traffic, want, "{given:?}"),
                other => panic!("{given:?}: {other:?}"),
            }
        }
        match cmd(
            "POST",
            "/v1/apps",
            r#"{"name":"a","template":"x","traffic":"half"}"#,
        ) {
            Err(CommandError::Body(e)) => {
                assert!(e.contains("use `all`") && e.contains("none"), "{e}")
            }
            other => panic!("{other:?}"),
        }
        let sent = serde_json::to_value(crate::wire::DeployRequest::default()).unwrap();
        assert_eq!(sent["traffic"], "all");
        // Streams are answered by the server, not as commands.
        assert_eq!(
            cmd("POST", "/v1/images/load", "").err(),
            Some(CommandError::Streamed)
        );
        assert_eq!(
            cmd("GET", "/v1/logs?app=a&follow=true", "").err(),
            Some(CommandError::Streamed)
        );
        assert!(matches!(
            cmd("GET", "/v1/logs?app=a", ""),
            Ok(Command::Logs(_))
        ));
    }
}
