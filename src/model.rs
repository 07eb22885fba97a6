//! Domain types: what an app, a service and an observed instance are.
//!
//! Invariants: no SQL, HTTP or bollard types here. Everything is `Serialize`/`Deserialize`
//! because the normalised spec is stored as JSON and returned by the API unchanged.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A validated, normalised app: what `berth config` prints and what the store keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppSpec {
    pub name: String,
    /// App-level labels (top-level `labels:`), prefix normalised to `berth.`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    pub services: BTreeMap<String, std::sync::Arc<ServiceSpec>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub volumes: BTreeMap<String, VolumeSpec>,
    /// Services that are an address outside (the seed's `external:`): no container; the
    /// other services reach each by its name (and link aliases) on the app network.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub externals: BTreeMap<String, ExternalService>,
    /// The host ports an acs/proxy service of the template published (it is not run): the
    /// router serves its Host-routed HTTP on them too (443 over TLS).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proxy_ports: Vec<u16>,
    /// Things berth kept but did not understand (unknown labels); shown to the user.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The bytes of `environment:`/`content:` secrets and configs (`secrets/NAME`,
    /// `configs/NAME`), which a deploy writes into the data directory: never stored or shown.
    #[serde(skip)]
    pub file_values: BTreeMap<String, String>,
}

/// A blue/green release between services under way (the seed's: the new template renames
/// a service and both name the same route): `old` are the services the new template
/// dropped, kept running until `berth release confirm APP`; `new` the services it added,
/// dropped again by `berth release abort APP`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ServiceRelease {
    pub old: Vec<String>,
    pub new: Vec<String>,
    pub since_ms: i64,
}

/// An address outside the app that a name on its network stands for (`external: host:
/// ports:`): connections to the name's ports are forwarded to `host` (resolved at each
/// connection, so a changed DNS answer is followed).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ExternalService {
    pub host: String,
    pub ports: Vec<u16>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct VolumeSpec {
    #[serde(default = "default_volume_driver")]
    pub driver: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub driver_opts: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub external: bool,
    /// The volume's own name (`name:`), used as is instead of `{app}_{key}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl VolumeSpec {
    /// The name of the volume object a template's volume `key` stands for: its `name:`, the
    /// key itself when external, else `{app}_{key}` (as compose prefixes with the project).
    pub fn object_name(&self, app: &str, key: &str) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None if self.external => key.to_string(),
            None => format!("{app}_{key}"),
        }
    }
}

/// Where a container's named volume comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VolumeSource {
    /// An engine volume of this name.
    Engine(String),
    /// A directory on the host where berth mounted the volume (oss, nas).
    Host(String),
}

fn default_volume_driver() -> String {
    "local".to_string()
}

/// Compose keys that are engine settings, passed to the engine as they are.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EngineExtras {
    /// `cpu_period`, `cpu_quota` (µs), `cpu_rt_period`, `cpu_rt_runtime` (µs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_period: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_quota: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_rt_period: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_rt_runtime: Option<i64>,
    /// `mem_reservation` (bytes), `mem_swappiness` (0-100), `oom_score_adj` (-1000-1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_reservation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_swappiness: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oom_score_adj: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_add: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domainname: Option<String>,
    /// The OCI runtime (`runc`, `nvidia`, `runsc`): one the engine knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub storage_opt: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_cgroup_rules: Vec<String>,
    /// OCI annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl EngineExtras {
    pub fn is_empty(&self) -> bool {
        *self == EngineExtras::default()
    }
}

/// A certificate a template gives the router (`proxy.SSL_CERT`): the chain is public and
/// kept in the spec; the private key is a value the deploy writes under the data directory
/// (0400, as a secret's) and is never stored in the spec or the template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelCert {
    /// PEM certificates, the server's first.
    pub chain: String,
    /// The private key's file (`tls/SERVICE` in `AppSpec::file_values` until written).
    pub key: FileSource,
    /// `DEFAULT_SSL_CERT`: also served to clients whose name no certificate covers.
    #[serde(default, skip_serializing_if = "is_false")]
    pub default: bool,
    /// The PEM key between the label's parse and the app's `file_values`.
    #[serde(skip)]
    pub key_pem: String,
}

/// A secret or config a service mounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMount {
    /// Its name in the template's top-level `secrets:`/`configs:`.
    pub name: String,
    /// Where it appears in the container.
    pub target: String,
    pub source: FileSource,
}

/// Where a secret's or config's bytes are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileSource {
    /// A file on the host (a template's `file:`, or what a deploy wrote for a value).
    File(String),
    /// A value (`environment:`, `content:`) the deploy has not written yet; the digest
    /// names the written file, so a new value makes a new version.
    Value { digest: String },
}

/// When a deploy pulls a service's image (compose's `pull_policy`; `berth deploy --pull`
/// pulls whatever this says).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PullPolicy {
    /// Pulled when it is not on the host (`missing`, `if_not_present`).
    #[default]
    Missing,
    /// Pulled at every deploy and redeploy (the local copy serves when the registry is out
    /// of reach).
    Always,
    /// Never pulled: the image must be on the host (`berth image load`).
    Never,
}

impl PullPolicy {
    pub fn is_default(&self) -> bool {
        *self == PullPolicy::Missing
    }
}

pub(crate) fn is_false(b: &bool) -> bool {
    !*b
}

/// One service of an app. Field names follow compose; values are normalised
/// (durations in milliseconds, sizes in bytes, ports parsed).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose: Vec<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<MountSpec>,
    pub restart: RestartPolicy,
    /// User labels put on the container (berth's own labels are in `ext`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Services to start first: `depends_on` and the `depends` label, merged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// `links:` as (service, alias).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_links: Vec<Link>,
    /// `external_links` entries naming a `.local` route (`restserver.local[:alias]`): the
    /// name resolves on the app network to the router's internal side (the seed's routing
    /// container), which routes it by Host; never an engine link.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub local_routes: Vec<Link>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub privileged: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    /// `security_opt`: `no-new-privileges[:true|false]`, `seccomp=unconfined`,
    /// `apparmor=PROFILE`, `label=...`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_opt: Vec<String>,
    /// `pids_limit` (-1: unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<i64>,
    /// `platform` (`linux/arm64`): the image variant pulled and run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// Engine settings compose passes through unchanged (`cpu_period`, `mem_reservation`,
    /// `group_add`, `runtime`, ...).
    #[serde(default, skip_serializing_if = "EngineExtras::is_empty")]
    pub engine: EngineExtras,
    /// `secrets:`: files bind-mounted read-only (at `/run/secrets/NAME` by default).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<FileMount>,
    /// `configs:`: files bind-mounted read-only (at `/NAME` by default).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<FileMount>,
    /// `pull_policy`: when a deploy pulls the image.
    #[serde(default, skip_serializing_if = "PullPolicy::is_default")]
    pub pull_policy: PullPolicy,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_opt: Vec<String>,
    /// `host:ip` entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memswap_limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_shares: Option<i64>,
    /// CPUs in nano-CPUs (1.5 cpus = 1_500_000_000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nano_cpus: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpuset: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub oom_kill_disable: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ulimits: Vec<Ulimit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_grace_period_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,
    pub network_mode: NetworkMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_only: bool,
    /// `path[:options]` entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tmpfs: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<i64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub tty: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub stdin_open: bool,
    /// Desired replicas from the template (`scale` label or `deploy.replicas`).
    pub replicas: u32,
    /// One instance on every node.
    #[serde(default, skip_serializing_if = "is_false")]
    pub global: bool,
    /// Placement hints (constraints, affinities, availability, reschedule), normalised.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub placement: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_config: Option<UpdateConfig>,
    /// `deploy.placement.max_replicas_per_node`: at most this many instances on one host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_node: Option<u32>,
    /// `deploy.placement.preferences`: node labels to spread instances over, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spread: Vec<String>,
    /// `deploy.resources.reservations.cpus` (billionths of a CPU): room a host must have
    /// for the instance (the memory reservation is `engine.mem_reservation`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved_nano_cpus: Option<i64>,
    /// `deploy.resources.reservations.devices`: device requests passed to the engine (GPUs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_requests: Vec<DeviceRequestSpec>,
    /// berth extension labels, parsed and validated.
    #[serde(default)]
    pub ext: Extensions,
}

/// Seconds a container gets to stop before it is killed.
pub trait StopGrace {
    fn grace_seconds(&self) -> u32;
}

impl StopGrace for ServiceSpec {
    fn grace_seconds(&self) -> u32 {
        self.stop_grace_period_ms
            .map(|ms| (ms / 1000).min(3600) as u32)
            .unwrap_or(10)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub target: String,
    pub alias: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// A published port. `host_port: None` means "any free host port" (compose `"80"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    pub container_port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    /// A host path.
    Bind,
    /// A named volume (top-level `volumes:` or an engine volume).
    Volume,
    /// An anonymous volume (`- /data`).
    Anonymous,
    Tmpfs,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    pub kind: MountKind,
    /// Host path or volume name; empty for anonymous and tmpfs.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    pub target: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_only: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub nocopy: bool,
    /// Bind: the engine's mode flags after the target (propagation such as `rslave`, SELinux
    /// `z`/`Z`); tmpfs: mount options (`size=BYTES`, `mode=OCTAL`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "mode")]
pub enum RestartPolicy {
    No,
    Always,
    OnFailure {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_retries: Option<u32>,
    },
    /// Compose's `unless-stopped` (and `deploy.restart_policy.condition: any`): always
    /// brought back, whatever the exit code, until `berth stop`.
    UnlessStopped,
    /// berth's default for a service without `restart`: a container that exits 0 on its own
    /// (a one-shot init or config step) is done, neither restarted nor replaced; one that
    /// crashed (exit code not 0) is restarted; after a reboot, what the agent saw done stays
    /// done and every other container comes back; an agent crash changes nothing; a deploy, `berth start`, `redeploy` or `scale` runs a done one again,
    /// as `docker compose up` starts it again.
    #[default]
    UnlessCompleted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// The app's own bridge network (compose's default network).
    #[default]
    Bridge,
    Host,
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Healthcheck {
    /// `["CMD", ...]`, `["CMD-SHELL", "..."]` or `["NONE"]`.
    pub test: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Logging {
    pub driver: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// One `deploy.resources.reservations.devices` entry, as the engine's `DeviceRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRequestSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// How many devices; `None` with no `device_ids` is `all`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_ids: Vec<String>,
    pub capabilities: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateConfig {
    pub parallelism: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_action: Option<FailureAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<UpdateOrder>,
}

/// `update_config.order`: stop the old instance first, or start the new one first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateOrder {
    StopFirst,
    StartFirst,
}

/// What traffic a deploy's new versions take (`berth deploy --traffic`).
///
/// On the wire it is `"all"` or `"none"`; an empty string (what older clients send when the
/// flag is not given) means `all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum NewTraffic {
    /// The new version takes all the traffic once healthy (start-first, or rolling with
    /// `rolling_updates`).
    #[default]
    All,
    /// It runs one instance at 0% until `berth traffic` gives it some.
    None,
}

impl NewTraffic {
    pub fn as_str(self) -> &'static str {
        match self {
            NewTraffic::All => "all",
            NewTraffic::None => "none",
        }
    }
}

impl std::str::FromStr for NewTraffic {
    type Err = String;
    fn from_str(s: &str) -> Result<NewTraffic, String> {
        match s {
            "" | "all" => Ok(NewTraffic::All),
            "none" => Ok(NewTraffic::None),
            other => Err(format!(
                "--traffic {other:?}: use `all` (the new version takes the traffic once healthy) or `none` (it runs at 0% until `berth traffic`)"
            )),
        }
    }
}

impl TryFrom<String> for NewTraffic {
    type Error = String;
    fn try_from(s: String) -> Result<NewTraffic, String> {
        s.parse()
    }
}

impl From<NewTraffic> for &'static str {
    fn from(t: NewTraffic) -> &'static str {
        t.as_str()
    }
}

impl std::fmt::Display for NewTraffic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `update_config.failure_action` as written (berth rolls a failed update back whatever it
/// says; `berth config` warns about the others).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureAction {
    Continue,
    Rollback,
    Pause,
}

/// A route's scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    Http,
    Https,
}

/// What the router serves on an `lb.port_N` router port (`tcp://` when none is given).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LbScheme {
    Tcp,
    /// HTTP for this service alone, whatever the Host.
    Http,
    /// HTTPS terminated by the router with its `[[router.tls]]` certificates.
    Https,
    /// A UDP forward: a flow per client, ended after a while without datagrams.
    Udp,
}

impl LbScheme {
    pub fn as_str(self) -> &'static str {
        match self {
            LbScheme::Tcp => "tcp",
            LbScheme::Http => "http",
            LbScheme::Https => "https",
            LbScheme::Udp => "udp",
        }
    }

    /// The protocol of the container port it reaches.
    pub fn protocol(self) -> Protocol {
        match self {
            LbScheme::Udp => Protocol::Udp,
            _ => Protocol::Tcp,
        }
    }
}

impl Extensions {
    /// The scheme of the `lb.port_N` of container port `port`.
    pub fn lb_scheme(&self, port: u16) -> LbScheme {
        self.lb_schemes.get(&port).copied().unwrap_or(LbScheme::Tcp)
    }
}

/// berth extension labels of a service, parsed and validated. Features that act on them may
/// come later; the values are checked and stored now.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Extensions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<Probe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling_updates: Option<RollingUpdates>,
    /// `routing.port_N`: container port -> routes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub routing: BTreeMap<u16, Vec<Route>>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub session_sticky: bool,
    /// `lb.port_N: tcp://:P`: container port -> router port.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lb: BTreeMap<u16, u16>,
    /// The scheme of an `lb.port_N` that is not `tcp://` (container port -> scheme).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lb_schemes: BTreeMap<u16, LbScheme>,
    /// Log sources: name -> path inside the container (`stdout` for the standard streams).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub logs: BTreeMap<String, String>,
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub log_timestamp: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_scaling: Option<AutoScaling>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitoring: Option<Monitoring>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobSpec>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub gpu: u32,
    /// `proxy.BALANCE`.
    #[serde(default, skip_serializing_if = "is_default_balance")]
    pub balance: Balance,
    /// `proxy.required: "true"`: the router's default backend (on this container port),
    /// for requests no route takes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_backend: Option<u16>,
    /// `proxy.SSL_CERT` / `proxy.DEFAULT_SSL_CERT`: the router's certificate for the
    /// service's route domains it covers (a default one also for names nothing else covers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_cert: Option<LabelCert>,
    /// Unknown `berth.*` labels, kept verbatim (and reported as warnings).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unknown: BTreeMap<String, String>,
}

fn default_true() -> bool {
    true
}
fn is_default_balance(b: &Balance) -> bool {
    *b == Balance::Roundrobin
}
fn is_true(b: &bool) -> bool {
    *b
}
fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum ProbeKind {
    /// `http://container:PORT/path`: healthy on 2xx/3xx.
    Http { port: u16, path: String },
    /// `tcp://container:PORT`: healthy on connect.
    Tcp { port: u16 },
    /// A command run inside the container: healthy on exit 0.
    Cmd { command: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    #[serde(flatten)]
    pub kind: ProbeKind,
    pub timeout_seconds: u32,
    pub initial_delay_seconds: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollingUpdates {
    pub parallelism: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub scheme: Scheme,
    /// A full domain, or a prefix of the router's domain when `prefix` is set.
    pub domain: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub prefix: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// The router port it is served on when not the router's own listeners (an acs/proxy
    /// `VIRTUAL_HOST` with a port: `http://a.example.com:8080`); 0: the router's listeners.
    #[serde(default, skip_serializing_if = "is_zero_u16")]
    pub port: u16,
    /// Rule order (`proxy.VIRTUAL_HOST_WEIGHT`): of the routes a request matches, a higher
    /// weight wins before the most specific one does.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub weight: u32,
}

fn is_zero_u16(n: &u16) -> bool {
    *n == 0
}

/// How the router picks an instance of a service (`proxy.BALANCE`, HAProxy's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Balance {
    /// Each in turn (`roundrobin`; `static-rr` is the same here).
    #[default]
    Roundrobin,
    /// A client address always reaches the same instance while the instances stay the same.
    Source,
    /// The instance with the fewest requests (connections) in flight.
    Leastconn,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoScaling {
    pub min_instances: u32,
    pub max_instances: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cpu: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_cpu: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_memory: Option<f64>,
    pub step: u32,
    pub idle_seconds: u64,
    /// Length of one averaging period (s).
    #[serde(default = "default_period_seconds")]
    pub period_seconds: u32,
    /// Breaches in a row before a decision.
    #[serde(default = "default_periods")]
    pub periods: u32,
    /// Wait after a decision before the next (s).
    #[serde(default = "default_cooldown_seconds")]
    pub cooldown_seconds: u32,
    /// How long the router holds a request while the service starts from zero (s).
    #[serde(default = "default_cold_start_timeout")]
    pub cold_start_timeout: u32,
}

fn default_period_seconds() -> u32 {
    60
}
fn default_periods() -> u32 {
    3
}
fn default_cooldown_seconds() -> u32 {
    15
}
fn default_cold_start_timeout() -> u32 {
    30
}

impl AutoScaling {
    /// The scale-in threshold on CPU: the label, else 30 points under the scale-out one
    /// (at most 50), so a service that scaled out comes back when the load goes.
    pub fn cpu_low(&self) -> Option<f64> {
        self.min_cpu
            .or_else(|| self.max_cpu.map(|hi| (hi - 30.0).min(50.0)))
    }

    /// The same on memory.
    pub fn memory_low(&self) -> Option<f64> {
        self.min_memory
            .or_else(|| self.max_memory.map(|hi| (hi - 30.0).min(50.0)))
    }

    /// `auto 1..10`, as `berth apps` and `ps` show it.
    pub fn bounds(&self) -> String {
        format!("auto {}..{}", self.min_instances, self.max_instances)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Monitoring {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub influxdb: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// A job task's `remove_containers` unless its labels say: exited containers go unless
/// they failed.
pub const DEFAULT_REMOVE_CONTAINERS: &str = "remove-finished";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    pub retry_count: u32,
    pub remove_containers: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// IANA zone the schedule is read in (`schedule.timezone`); the host's when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// A run missed while the agent was down starts at startup if it is at most this late
    /// (`schedule.starting_deadline_seconds`, default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_deadline_seconds: Option<u32>,
    /// Runs kept in the history (`schedule.history`, default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<u32>,
}

/// What the engine says about one container berth manages (decoded from its labels).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub id: String,
    pub name: String,
    pub app: String,
    pub service: String,
    pub slot: u32,
    /// Hash of the service spec the container was created from (`berth.spec`).
    pub spec_hash: String,
    /// The version it runs (`berth.version`), when known.
    #[serde(default)]
    pub version: String,
    pub image: String,
    pub state: InstanceState,
    /// Exit code when exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// When an exited container with exit code 0 finished (ms since the epoch; the engine's
    /// `State.FinishedAt`): the one-shot rule needs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PublishedPort>,
    /// TCP ports it exposes (its image's `EXPOSE`, `expose:`) whether published or not:
    /// what its service name answers on from other hosts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exposed: Vec<u16>,
    /// Unix seconds the container was created.
    pub created: i64,
    /// The engine's own summary: "Up 5 minutes", "Exited (137) 2 seconds ago".
    #[serde(default)]
    pub status: String,
    /// Address on its app network (empty in host/none network mode or when not running).
    #[serde(default)]
    pub ip: String,
    /// Health as berth's probes (or the engine's healthcheck) see it.
    #[serde(default)]
    pub health: Health,
    /// The container's labels other than berth's own (`berth.*`): what cAdvisor exposes as
    /// `container_label_*`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The node that owns its app (`berth.owner`) when another node does: placement put one
    /// of that app's slots here. Empty: this node's own app.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub owner: String,
    /// A job's container: its run and attempt (`berth.run`, `berth.attempt`). The jobs
    /// runner owns these; reconcile passes leave them alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobRef>,
}

/// The number in version name `version` of `service` (`web-003` -> 3).
pub fn version_number(service: &str, version: &str) -> Option<u32> {
    version
        .strip_prefix(service)?
        .strip_prefix('-')?
        .parse()
        .ok()
}

/// One instance slot of a service version and the node that runs it: what placement decides,
/// the app's owner keeps and replicates, and each node runs its own share of.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Assignment {
    pub app: String,
    pub service: String,
    pub version: u32,
    pub slot: u32,
    /// The node's id.
    pub node: String,
    /// A move under way (drain, rebalance; start-first): the node that keeps running the
    /// slot until the instance on `node` runs ready. Empty: none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub from: String,
}

impl Instance {
    /// The number of the version it runs (`web-003` -> 3); `None` for a container from
    /// before versions, or with a foreign label.
    pub fn version_number(&self) -> Option<u32> {
        version_number(&self.service, &self.version)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedPort {
    pub container_port: u16,
    pub host_ip: String,
    pub host_port: u16,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstanceState {
    Created,
    Running,
    Restarting,
    Paused,
    Exited,
    Dead,
    Removing,
}

impl InstanceState {
    pub fn parse(s: &str) -> InstanceState {
        match s {
            "created" => InstanceState::Created,
            "running" => InstanceState::Running,
            "restarting" => InstanceState::Restarting,
            "paused" => InstanceState::Paused,
            "removing" => InstanceState::Removing,
            "dead" => InstanceState::Dead,
            _ => InstanceState::Exited,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Created => "created",
            InstanceState::Running => "running",
            InstanceState::Restarting => "restarting",
            InstanceState::Paused => "paused",
            InstanceState::Exited => "exited",
            InstanceState::Dead => "dead",
            InstanceState::Removing => "removing",
        }
    }
}

/// Health of an instance. `None`: no probe, so healthy once running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    #[default]
    None,
    /// Probed, not yet healthy (initial delay, or no success yet).
    Starting,
    Healthy,
    Unhealthy,
    /// Unhealthy for long enough: the planner replaces it.
    Failed,
}

impl Health {
    /// Ready for dependants (and, later, traffic).
    pub fn ready(self) -> bool {
        matches!(self, Health::None | Health::Healthy)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Health::None => "",
            Health::Starting => "starting",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
            Health::Failed => "failed",
        }
    }
}

/// An app network berth created on this node (as the engine reports it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppNetwork {
    pub id: String,
    pub app: String,
    /// Creation time as the engine reports it (RFC 3339); orders duplicates.
    pub created: String,
}

/// One version of a service: what one deploy of it was (`<service>-NNN`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Version {
    pub app: String,
    pub service: String,
    pub number: u32,
    pub spec: std::sync::Arc<ServiceSpec>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    pub state: VersionState,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Share of the traffic, percent.
    pub weight: u32,
    pub created_ms: i64,
    /// The release step it is on its way through (none once settled).
    #[serde(default)]
    pub release: Release,
    /// When it last started to run (its deadline to turn normal counts from here).
    #[serde(default)]
    pub since_ms: i64,
}

impl Version {
    pub fn name(&self) -> String {
        version_name(&self.service, self.number)
    }
    /// Runs instances: it has traffic, or a release step is under way.
    pub fn live(&self) -> bool {
        self.weight > 0 || self.release != Release::None
    }
    /// Instances it runs when the service has `replicas`: a version deployed with
    /// `--traffic none` runs one (for checking) until it gets traffic.
    pub fn instances(&self, replicas: u32) -> u32 {
        if !self.live() {
            0
        } else if self.release == Release::Standby && self.weight == 0 {
            replicas.min(1)
        } else {
            replicas
        }
    }
}

/// The release step a version is in. Stored as text; `None` once the version is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Release {
    #[default]
    None,
    /// Start-first: runs beside the version with traffic and takes it all once normal.
    Promote,
    /// Replaces the version with traffic a batch of instances at a time.
    Rolling,
    /// `--traffic none`: one instance at 0% until weights are set.
    Standby,
    /// `--blue-green`: all instances at 0% until `release confirm` (or `abort`).
    BlueGreen,
}

impl Release {
    pub fn as_str(self) -> &'static str {
        match self {
            Release::None => "",
            Release::Promote => "promote",
            Release::Rolling => "rolling",
            Release::Standby => "standby",
            Release::BlueGreen => "blue-green",
        }
    }
    pub fn parse(s: &str) -> Release {
        match s {
            "promote" => Release::Promote,
            "rolling" => Release::Rolling,
            "standby" => Release::Standby,
            "blue-green" => Release::BlueGreen,
            _ => Release::None,
        }
    }
}

pub fn version_name(service: &str, number: u32) -> String {
    format!("{service}-{number:03}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VersionState {
    /// Deployed; its instances are not all healthy yet.
    Creating,
    /// Every instance ran healthy.
    Normal,
    /// Its instances did not turn healthy in time (see the reason).
    Failed,
    /// Superseded: no traffic, no instances.
    Stopped,
    /// A blue/green version whose instances are ready, at 0% until `release confirm`.
    #[serde(rename = "awaiting confirmation")]
    Awaiting,
}

impl VersionState {
    pub fn as_str(self) -> &'static str {
        match self {
            VersionState::Creating => "creating",
            VersionState::Normal => "normal",
            VersionState::Failed => "failed",
            VersionState::Stopped => "stopped",
            VersionState::Awaiting => "awaiting confirmation",
        }
    }
    pub fn parse(s: &str) -> VersionState {
        match s {
            "normal" => VersionState::Normal,
            "failed" => VersionState::Failed,
            "stopped" => VersionState::Stopped,
            "awaiting confirmation" => VersionState::Awaiting,
            _ => VersionState::Creating,
        }
    }
}

/// Most versions kept per service.
pub const MAX_VERSIONS: usize = 10;

/// One line of the event log.
/// An app's state as `berth apps` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppState {
    /// Every desired instance runs, and nothing is left to do.
    Running,
    /// Stopped by `berth stop`.
    Stopped,
    /// Something keeps failing (start errors, crashes, failed probes).
    Failing,
    /// Instances are being created or replaced.
    Deploying,
}

impl AppState {
    pub fn as_str(self) -> &'static str {
        match self {
            AppState::Running => "running",
            AppState::Stopped => "stopped",
            AppState::Failing => "failing",
            AppState::Deploying => "deploying",
        }
    }
}

impl std::fmt::Display for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A node's own settings: its labels (placement reads them) and whether it is drained.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSettings {
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub drain: bool,
}

/// What an event is about (`berth events` shows it in the KIND column; stored as its text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// The agent's own life: start, stop, reloads, warnings.
    Agent,
    Deploy,
    Scale,
    Redeploy,
    Stop,
    Start,
    /// An app removed.
    Rm,
    /// A version's state changed (ready, failed, rolled back, traffic).
    Version,
    /// A health transition.
    Health,
    /// An engine action on a container: created, removed, restarted, died, killed by OOM.
    Create,
    Remove,
    Restart,
    Die,
    Oom,
    /// An app network made or removed.
    Network,
    Image,
    Volume,
    /// An alarm rule added or removed.
    AlarmRule,
    /// An alarm raised, and cleared.
    Alarm,
    AlarmCleared,
    /// A release step: traffic split, rollback, blue/green confirm or abort.
    Traffic,
    Release,
    Metrics,
    /// A telemetry sink's queue.
    Sink,
    /// Something failed (an engine call, a start, a mount).
    Error,
    /// A cluster member joined, was suspected, lost, came back, left or was removed.
    Node,
    /// This host's cluster: created, joined, left, key rotated.
    Cluster,
    /// An autoscaling decision, with the figures that caused it.
    Autoscale,
    /// A job's run: started, finished, failed, a container retried, a task skipped, a due
    /// run dropped (queue full) or missed (the agent was down).
    Job,
    /// A config set created, changed or removed.
    Config,
    /// A command run in a container (`berth exec`, the console's terminal).
    Exec,
}

impl EventKind {
    pub const ALL: [EventKind; 31] = [
        EventKind::Agent,
        EventKind::Deploy,
        EventKind::Scale,
        EventKind::Redeploy,
        EventKind::Stop,
        EventKind::Start,
        EventKind::Rm,
        EventKind::Version,
        EventKind::Health,
        EventKind::Create,
        EventKind::Remove,
        EventKind::Restart,
        EventKind::Die,
        EventKind::Oom,
        EventKind::Network,
        EventKind::Image,
        EventKind::Volume,
        EventKind::AlarmRule,
        EventKind::Alarm,
        EventKind::AlarmCleared,
        EventKind::Traffic,
        EventKind::Release,
        EventKind::Metrics,
        EventKind::Sink,
        EventKind::Error,
        EventKind::Node,
        EventKind::Cluster,
        EventKind::Autoscale,
        EventKind::Job,
        EventKind::Config,
        EventKind::Exec,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Agent => "agent",
            EventKind::Deploy => "deploy",
            EventKind::Scale => "scale",
            EventKind::Redeploy => "redeploy",
            EventKind::Stop => "stop",
            EventKind::Start => "start",
            EventKind::Rm => "rm",
            EventKind::Version => "version",
            EventKind::Health => "health",
            EventKind::Create => "create",
            EventKind::Remove => "remove",
            EventKind::Restart => "restart",
            EventKind::Die => "die",
            EventKind::Oom => "oom",
            EventKind::Network => "network",
            EventKind::Image => "image",
            EventKind::Volume => "volume",
            EventKind::AlarmRule => "alarm-rule",
            EventKind::Alarm => "alarm",
            EventKind::AlarmCleared => "alarm-cleared",
            EventKind::Traffic => "traffic",
            EventKind::Release => "release",
            EventKind::Metrics => "metrics",
            EventKind::Sink => "sink",
            EventKind::Error => "error",
            EventKind::Node => "node",
            EventKind::Cluster => "cluster",
            EventKind::Autoscale => "autoscale",
            EventKind::Job => "job",
            EventKind::Config => "config",
            EventKind::Exec => "exec",
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub id: i64,
    /// Unix milliseconds.
    pub time_ms: i64,
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub app: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service: String,
    pub message: String,
}

/// Names of the labels berth puts on every container it creates.
pub mod labels {
    pub const NODE: &str = "berth.node";
    pub const APP: &str = "berth.app";
    pub const SERVICE: &str = "berth.service";
    pub const VERSION: &str = "berth.version";
    pub const SLOT: &str = "berth.slot";
    pub const SPEC: &str = "berth.spec";
    /// The node that owns the app, on a container placed here by another node's app.
    pub const OWNER: &str = "berth.owner";
    /// On a holder (`runtime/hold.rs`): `APP/SERVICE` whose name it holds.
    pub const HOLDS: &str = "berth.holds";
    /// On a job's container: the run (`1`, `2`, ...) and the slot's attempt in it.
    pub const RUN: &str = "berth.run";
    pub const ATTEMPT: &str = "berth.attempt";
}

/// Which run of a job, and which attempt of its slot, a container is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRef {
    pub run: u64,
    pub attempt: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_kinds_and_app_states_are_the_same_text_on_the_wire_and_in_the_store() {
        let mut seen = std::collections::BTreeSet::new();
        for k in EventKind::ALL {
            let json = serde_json::to_string(&k).expect("json");
            assert_eq!(json, format!("\"{}\"", k.as_str()));
            let back: EventKind = serde_json::from_str(&json).expect("back");
            assert_eq!(back, k);
            assert!(seen.insert(k.as_str()), "{k} twice");
        }
        for s in [
            AppState::Running,
            AppState::Stopped,
            AppState::Failing,
            AppState::Deploying,
        ] {
            assert_eq!(serde_json::to_string(&s).expect("json"), format!("\"{s}\""));
        }
    }
}
