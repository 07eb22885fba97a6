//! JSON shapes of the HTTP API, shared by the agent (server) and the CLI (client).

use crate::model::{AppSpec, PublishedPort};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    pub name: String,
    pub template: String,
    /// Variables for substitution, merged by the client (--env over --env-file over its env).
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// Files the template names (`env_file`), by the name it uses.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    /// The absolute directory relative bind sources are resolved against (the template's
    /// directory, or `--project-directory`); empty: relative sources are refused.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub project_dir: String,
    /// The home directory `~` in a bind source stands for (the CLI user's).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub home: String,
    /// Active compose profiles (`--profile`, `COMPOSE_PROFILES`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    /// Pull images even when present.
    #[serde(default)]
    pub pull: bool,
    /// Description of the versions this deploy creates (at most 50 characters).
    #[serde(default)]
    pub message: String,
    /// `all` (default: the new version takes all traffic once healthy) or `none` (it runs one
    /// instance at 0% until `berth traffic` gives it some).
    #[serde(default)]
    pub traffic: crate::model::NewTraffic,
    /// Start new versions at 0% with all their instances; `berth release confirm` switches.
    #[serde(default)]
    pub blue_green: bool,
    /// The config set whose items fill the template's variables (`--config-set`): over
    /// `vars`, under `overrides`. The app stays bound to it until a deploy without it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub config_set: String,
    /// The variables given on the command line (`--env`), which win over the config set
    /// (they are in `vars` too).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub overrides: BTreeMap<String, String>,
}

impl DeployRequest {
    /// What the template parser may draw on besides the template's text.
    pub fn inputs(&self) -> crate::spec::Inputs {
        let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_string());
        crate::spec::Inputs {
            vars: self.vars.clone(),
            files: self.files.clone(),
            project_dir: nonempty(&self.project_dir),
            home: nonempty(&self.home),
            profiles: self.profiles.clone(),
        }
    }
}

/// A template checked as a deploy would check it (`POST /v1/config`): nothing is stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TemplateCheck {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Where the error is, 1-based, when it can be told.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    #[serde(default)]
    pub services: Vec<String>,
    #[serde(default)]
    pub warnings: Vec<String>,
    /// With a config set: each template variable against it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config: Vec<ConfigDiffRow>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeployResponse {
    pub app: String,
    /// New or changed services (their instances are replaced).
    pub changed: Vec<String>,
    pub unchanged: Vec<String>,
    pub removed: Vec<String>,
    pub warnings: Vec<String>,
    /// Versions created by this deploy (`web-003`).
    #[serde(default)]
    pub versions: Vec<String>,
    /// A job: the run this deploy queued (a job without a schedule runs when deployed or
    /// changed), or 0 for a cron job (its schedule runs it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_run: Option<u64>,
    /// A blue/green release between services this deploy began: what runs and what next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
}

/// `berth routes APP`: a route two or more of the app's services share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteView {
    /// Its domain as written in the labels, and its path.
    pub route: String,
    pub services: Vec<RouteShare>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteShare {
    pub service: String,
    /// Percent of the route's requests.
    pub weight: u32,
    /// Its ready instances.
    pub ready: u32,
    /// In a blue/green release between services: `old` or `new`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub role: String,
}

/// `berth traffic APP --route ROUTE SERVICE=PERCENT...`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RouteTrafficRequest {
    pub route: String,
    pub weights: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppStatus {
    pub name: String,
    pub services: Vec<ServiceStatus>,
    pub desired: u32,
    pub running: u32,
    pub state: crate::model::AppState,
    pub updated_ms: i64,
    /// The host that owns it (set when this host is in a cluster).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    /// For a row of a host that is not alive: its state and when it was last heard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale: Option<String>,
    /// For a job: its state (`run 3 running`, `run 3 finished`, `idle`, `suspended`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// The config set it is bound to, and whether the set changed since its deploy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<BoundSet>,
    /// A blue/green release between services under way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoundSet {
    pub name: String,
    pub out_of_date: bool,
}

/// `berth jobs`: one job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobView {
    pub app: String,
    /// `running`, `queued`, `finished`, `failed`, `idle` (no run yet) or `suspended`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    pub suspended: bool,
    /// The newest run, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<crate::store::RunRow>,
    /// When the schedule is next due (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run_ms: Option<i64>,
    /// Runs waiting behind the running one.
    pub queued: usize,
    /// The host that owns it (set when this host is in a cluster).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
}

/// `berth runs`: one run with its containers' attempts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunView {
    #[serde(flatten)]
    pub run: crate::store::RunRow,
    pub attempts: Vec<crate::store::AttemptRow>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub name: String,
    pub image: String,
    pub desired: u32,
    pub running: u32,
    /// Its autoscaling bounds (`auto 1..10`), when it autoscales.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct InstanceView {
    pub app: String,
    pub service: String,
    pub slot: u32,
    pub name: String,
    /// The version it runs (`web-003`).
    #[serde(default)]
    pub version: String,
    pub container_id: String,
    pub image: String,
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    pub ports: Vec<PublishedPort>,
    /// TCP ports it exposes, published or not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exposed: Vec<u16>,
    /// Its service's count and autoscaling bounds (`3 (auto 1..10)`), when it autoscales.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscale: Option<String>,
    pub node: String,
    /// Unix seconds.
    pub created: i64,
    /// Since when it runs (or how it ended), as the engine says: "Up 5 minutes".
    pub status: String,
    /// `starting`, `healthy`, `unhealthy`, `failed`; empty without a probe.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub health: String,
    /// The last probe error while not healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_error: Option<String>,
    /// Created from the current spec.
    pub up_to_date: bool,
    /// For a row of a host that is not alive: its state and when it was last heard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale: Option<String>,
    /// Where its service is reached from outside: URLs of its routes (its labels', or its
    /// default `<service>.<app>.<domain>`), `tcp://ADDRESS:PORT` of its `lb.port_N`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionView {
    /// `web-003`.
    pub name: String,
    pub number: u32,
    pub image: String,
    pub created_ms: i64,
    pub replicas: u32,
    /// Its share of the traffic now: what the router routes by.
    pub weight: u32,
    /// The share set for it (by a deploy, `traffic`, `rollback` or a release step).
    #[serde(default)]
    pub set_weight: u32,
    /// Its instances that are ready (running and healthy), as the router last saw them.
    #[serde(default)]
    pub ready: u32,
    pub state: String,
    /// The release step under way: `promote`, `rolling`, `standby`, `blue-green`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub release: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Errors of its containers that are failing now (start failures, unhealthy ones).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InspectResponse {
    pub spec: AppSpec,
    /// The template as deployed (credentials redacted); `berth run` writes one too.
    #[serde(default)]
    pub template: String,
    pub stopped: bool,
    pub scale: BTreeMap<String, u32>,
    /// Services (an empty list) and slots stopped by `berth stop APP/SERVICE[/SLOT]`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub stopped_services: BTreeMap<String, std::collections::BTreeSet<u32>>,
    pub redeploy_gen: i64,
    pub created_ms: i64,
    pub updated_ms: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleRequest {
    pub services: BTreeMap<String, u32>,
}

/// `POST /v1/run` (defined beside the template it stands for).
pub use crate::spec::run::RunRequest;

/// `POST /v1/access`: `berth access create NAME --role R`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessCreate {
    pub name: String,
    pub role: String,
}

/// A new access token: the only time it is shown.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct AccessCreated {
    pub name: String,
    pub role: String,
    pub token: String,
}

/// An access token as listed (never the token).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AccessView {
    pub name: String,
    pub role: String,
    pub created_ms: i64,
}

/// `POST /v1/configsets` (create: `name` set) and `POST /v1/configsets/NAME/items`
/// (`berth configset set`): items to add or change; keys in `secret` are sealed at rest and
/// masked in every view (setting one needs admin).
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigSetWrite {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub items: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret: Vec<String>,
}

impl std::fmt::Debug for ConfigSetWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigSetWrite")
            .field("name", &self.name)
            .field("keys", &self.items.keys().collect::<Vec<_>>())
            .field("secret", &self.secret)
            .finish()
    }
}

/// `POST /v1/configsets/NAME/unset`: keys to remove.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigUnset {
    pub keys: Vec<String>,
}

/// A config set as `berth configset ls|show` shows it (secret values masked).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConfigSetView {
    pub name: String,
    pub description: String,
    pub revision: i64,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub items: Vec<ConfigItemView>,
    /// Apps deployed with it, and whether each saw its last change.
    pub bound: Vec<BoundApp>,
    /// The member that holds it, when another one does (its changes are made there).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConfigItemView {
    pub key: String,
    /// The value, or `********` for a secret item.
    pub value: String,
    pub secret: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BoundApp {
    pub app: String,
    pub out_of_date: bool,
}

/// One template variable against a config set (`berth configset diff`, `deploy --dry-run`):
/// `same`, `different` or `missing` (the set has no such item).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigDiffRow {
    pub variable: String,
    pub state: String,
    /// The set's value (masked when secret); empty when missing.
    pub set_value: String,
    /// What the deploy would use without the set (--env, env files, the shell), masked when
    /// the item is secret; None when nothing else gives it.
    pub other: Option<String>,
}

/// `berth configset apply`: each bound app's redeploy.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConfigApplied {
    pub app: String,
    /// The new versions (empty: the app's services did not change).
    pub versions: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `POST /v1/registries`: `berth registry login`.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryLogin {
    pub host: String,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for RegistryLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryLogin")
            .field("host", &self.host)
            .field("username", &self.username)
            .field("password", &"********")
            .finish()
    }
}

/// A registry login as `berth registry ls` shows it (never the password).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RegistryView {
    pub host: String,
    pub username: String,
    pub created_ms: i64,
}

/// `POST /v1/apps/APP/triggers`: `berth trigger create`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerCreate {
    /// `redeploy` or `scale`.
    pub action: String,
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub replicas: Option<u32>,
}

/// A trigger as listed (never its secret).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TriggerView {
    pub id: String,
    pub app: String,
    pub action: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service: String,
    #[serde(default)]
    pub replicas: u32,
    /// `/hooks/<id>`, on the API's address.
    pub path: String,
    pub created_ms: i64,
    pub calls: i64,
    pub last_ms: i64,
}

/// What creating a trigger answers: the only time the secret is shown.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TriggerCreated {
    pub trigger: TriggerView,
    /// `/hooks/<id>?secret=<secret>`.
    pub url_path: String,
}

/// What a hook call answers: the outcome id (`redeploy-<generation>`, `scale-<svc>-<n>`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TriggerFired {
    pub trigger: String,
    pub app: String,
    pub action: String,
    pub outcome: String,
}

/// What `berth restart` did: the containers restarted, and those that could not be (with
/// why).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RestartResponse {
    pub app: String,
    pub restarted: Vec<String>,
    #[serde(default)]
    pub failed: Vec<String>,
}

/// `POST /v1/apps/APP/here/restart`: the app's owner asks the member running `container`
/// to restart it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartHereRequest {
    pub container: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedeployRequest {
    #[serde(default)]
    pub pull: bool,
}

/// `berth traffic`: version (`003` or `web-003`) -> percent; they must add up to 100.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficRequest {
    pub weights: BTreeMap<String, u32>,
}

/// `berth rollback`: to this version, or (empty) the previous one that did not fail.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    #[serde(default)]
    pub version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub node_id: String,
    pub node_name: String,
    pub engine: String,
    pub version: String,
}

/// One row of `berth top`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TopRow {
    /// The member it runs on (empty in a host's own answer to another member).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    pub name: String,
    pub app: String,
    pub service: String,
    pub version: String,
    pub slot: u32,
    pub status: String,
    /// Percent of one CPU (None before the second cycle).
    pub cpu_percent: Option<f64>,
    pub mem_bytes: u64,
    pub mem_limit: u64,
    pub mem_percent: f64,
    pub net_rx: u64,
    pub net_tx: u64,
    pub block_read: u64,
    pub block_write: u64,
}

/// `GET /v1/top`: the latest cycle.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Top {
    /// When the figures were read (ns since the epoch; 0 = no cycle yet).
    pub time_ns: i64,
    pub interval_ms: u64,
    pub containers: Vec<TopRow>,
    /// Members whose figures are missing, each with why (`h3: lost, last heard 40 s ago`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
}

pub use crate::metrics::history::{AlarmRule, Bucket, Series};

// The API's own shapes for what the store and the engine hold: converted explicitly, so the
// store's rows and the runtime's types can change without changing the API.

/// One event (`GET /v1/events`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub id: i64,
    /// Unix milliseconds.
    pub time_ms: i64,
    /// An [`crate::model::EventKind`]'s text.
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub app: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service: String,
    pub message: String,
    /// The host it happened on (set when this host is in a cluster; another host's events
    /// carry id 0, since ids count per host).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
}

impl From<crate::model::Event> for Event {
    fn from(e: crate::model::Event) -> Self {
        Event {
            id: e.id,
            time_ms: e.time_ms,
            kind: e.kind,
            app: e.app,
            service: e.service,
            message: e.message,
            node: String::new(),
        }
    }
}

/// One stored log line (`GET /v1/logs`, one a line of `logs -f`'s NDJSON).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// Its id; `logs -f` continues after the last one seen.
    #[serde(default)]
    pub id: i64,
    pub time_ns: i64,
    pub app: String,
    pub service: String,
    pub version: String,
    pub slot: u32,
    pub node: String,
    /// The container's name.
    pub container: String,
    /// `stdout`, `stderr`, or the name of a log file source.
    pub stream: String,
    pub message: String,
}

impl From<crate::store::LogLine> for LogLine {
    fn from(l: crate::store::LogLine) -> Self {
        LogLine {
            id: l.id,
            time_ns: l.time_ns,
            app: l.app,
            service: l.service,
            version: l.version,
            slot: l.slot,
            node: l.node,
            container: l.container,
            stream: l.stream,
            message: l.message,
        }
    }
}

/// What waits in the outbox for one sink, and what was lost (`GET /v1/outbox`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OutboxStats {
    pub sink: String,
    pub rows: i64,
    pub lines: i64,
    pub bytes: i64,
    pub dropped: i64,
    pub reason: String,
}

impl From<crate::store::OutboxStats> for OutboxStats {
    fn from(s: crate::store::OutboxStats) -> Self {
        OutboxStats {
            sink: s.sink,
            rows: s.rows,
            lines: s.lines,
            bytes: s.bytes,
            dropped: s.dropped,
            reason: s.reason,
        }
    }
}

/// An image on this host (`GET /v1/images`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageInfo {
    pub id: String,
    pub tags: Vec<String>,
    pub size: i64,
    pub created: i64,
    /// Containers using it (any, not only berth's).
    pub containers: i64,
}

impl From<crate::runtime::ImageInfo> for ImageInfo {
    fn from(i: crate::runtime::ImageInfo) -> Self {
        ImageInfo {
            id: i.id,
            tags: i.tags,
            size: i.size,
            created: i.created,
            containers: i.containers,
        }
    }
}

/// What `POST /v1/images/prune` removed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PruneReport {
    pub deleted: Vec<String>,
    pub space_reclaimed: i64,
}

impl From<crate::runtime::PruneReport> for PruneReport {
    fn from(r: crate::runtime::PruneReport) -> Self {
        PruneReport {
            deleted: r.deleted,
            space_reclaimed: r.space_reclaimed,
        }
    }
}

/// Converts each element (a list of store rows or runtime values into the API's shapes).
pub fn list<A, B: From<A>>(v: Vec<A>) -> Vec<B> {
    v.into_iter().map(B::from).collect()
}

/// `v` percent-encoded for a URL's query (every byte but the unreserved ones).
pub fn percent(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

impl LogsParams {
    /// The filters as a `/v1/logs` query (`app=..&service=..`), without `follow`, `after`
    /// and `local`, which a poller sets itself.
    pub fn filters(&self) -> String {
        let mut out = format!("app={}", percent(&self.app));
        let mut add = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                out.push_str(&format!("&{k}={}", percent(&v)));
            }
        };
        add("service", self.service.clone());
        add("slot", self.slot.map(|s| s.to_string()));
        add("run", self.run.map(|s| s.to_string()));
        add("since", self.since.clone());
        add("until", self.until.clone());
        add("tail", self.tail.map(|t| t.to_string()));
        add("grep", self.grep.clone());
        add("stream", self.stream.clone());
        out
    }
}

/// `GET /v1/logs` parameters, times still as the user wrote them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogsParams {
    pub app: String,
    pub service: Option<String>,
    pub slot: Option<u32>,
    /// Only a job run's lines.
    pub run: Option<u64>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub tail: Option<usize>,
    pub grep: Option<String>,
    pub stream: Option<String>,
    pub follow: bool,
    /// Only lines stored after this id, oldest first, at most a page (`logs -f` from
    /// another member polls with it); `tail` does not apply.
    pub after: Option<i64>,
    /// Only this host's stored lines, of an app it need not own (a member gathering an
    /// app's lines from every member that runs its instances asks with it).
    pub local: bool,
}

/// `POST /v1/volumes`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeCreateRequest {
    pub name: String,
    #[serde(default)]
    pub driver: String,
    #[serde(default)]
    pub opts: BTreeMap<String, String>,
}

/// A volume as `berth volume ls/inspect` show it: credentials masked.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VolumeView {
    pub name: String,
    pub driver: String,
    pub opts: BTreeMap<String, String>,
    /// The host path: berth's mount point (oss, nas) or the engine's (local).
    pub mountpoint: String,
    /// oss: how the bucket is addressed and why (`path (the endpoint is an IP address)`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub request_style: String,
    /// mounted / unmounted / broken (oss, nas); ready / absent (local); error.
    pub state: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// The node it lives on (a local volume is per host).
    pub node: String,
    pub used_by: Vec<VolumeUser>,
    /// Apps whose templates name it.
    pub apps: Vec<String>,
    pub created_ms: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VolumeUser {
    pub container: String,
    pub running: bool,
    pub target: String,
}

/// `POST /v1/system/prune`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SystemPruneReport {
    pub images: Vec<String>,
    pub space_reclaimed: i64,
    pub volumes: Vec<String>,
}

/// `berth node label NAME k=v k2-`: labels to set and to remove.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelRequest {
    #[serde(default)]
    pub set: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

pub use crate::model::NodeSettings;

/// What `berth cluster rotate-key` answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RotateReport {
    /// The new key's id (hex).
    pub key: String,
    /// Members that took every step.
    pub members: Vec<String>,
}

/// `berth cluster token create`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// Seconds the token is valid (default one hour).
    #[serde(default = "default_token_ttl")]
    pub ttl_s: u64,
    /// How many hosts may join with it (default 1).
    #[serde(default = "default_token_uses")]
    pub uses: u32,
}

fn default_token_ttl() -> u64 {
    3600
}

fn default_token_uses() -> u32 {
    1
}

impl Default for TokenRequest {
    fn default() -> Self {
        TokenRequest {
            ttl_s: default_token_ttl(),
            uses: default_token_uses(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenReply {
    pub token: String,
}

/// `berth cluster join TOKEN`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    pub token: String,
    /// The address the members reach this host at (default: the agent's own choice).
    #[serde(default)]
    pub advertise: Option<std::net::SocketAddr>,
}

/// What `berth cluster init` answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InitReport {
    pub cluster: String,
    pub created: bool,
    pub advertise: std::net::SocketAddr,
}

/// What `berth cluster join` answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinReport {
    pub cluster: String,
    pub through: std::net::SocketAddr,
    pub members: usize,
}

/// One row of `berth nodes`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeView {
    pub name: String,
    pub node_id: String,
    pub address: std::net::SocketAddr,
    /// alive, suspect, lost or left.
    pub state: String,
    /// This host.
    pub me: bool,
    pub seen_ms: i64,
    pub since_ms: i64,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub drain: bool,
    /// Its agent's version (empty until its node record arrived).
    #[serde(default)]
    pub agent: String,
    #[serde(default)]
    pub instances: u64,
    /// Capacity and use, as its last node record said (0: not known yet).
    #[serde(default)]
    pub cpus: u32,
    /// Host CPU busy, percent of all its CPUs (rounded to 5, so a record is not republished
    /// for every small change).
    #[serde(default)]
    pub cpu_percent: Option<f64>,
    #[serde(default)]
    pub mem_total: u64,
    /// Memory in use (total less available), rounded to 1% of the total.
    #[serde(default)]
    pub mem_used: u64,
    /// The cluster protocol it speaks (0: its node record has not arrived yet).
    #[serde(default)]
    pub protocol: u32,
}

/// What `berth rebalance` did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RebalanceResponse {
    /// Instances moving (each starts on its new member before the old one stops).
    pub moved: usize,
    pub message: String,
}

/// What `berth autoscale` shows of one service.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceAutoscale {
    pub app: String,
    pub service: String,
    pub policy: crate::model::AutoScaling,
    pub instances: u32,
    /// The last complete periods' averages, oldest first.
    pub periods: Vec<PeriodView>,
    /// Why nothing was decided at the last look (or the last decision).
    pub state: String,
    /// The last decisions, newest first: (time in ms, what and why).
    pub decisions: Vec<(i64, String)>,
}

/// One averaging period of an autoscaled service.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeriodView {
    pub start_ms: i64,
    pub cpu_percent: f64,
    pub memory_percent: f64,
    pub samples: u32,
}
