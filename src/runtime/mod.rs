//! The container engine, in berth's own terms.
//!
//! Role: [`ContainerRuntime`] speaks [`Instance`] and [`CreateRequest`], never bollard types;
//! `docker` implements it against a real engine, `fake` records calls and injects failures for
//! agent tests.
//!
//! Invariants: every call is scoped to one node id: `list` and `networks` only return objects
//! labelled with that node, so an agent never sees (and so never touches) containers another
//! agent or a person created. Not to be called from pure code (`spec`, `plan`).

pub mod docker;
pub mod fake;
pub mod hold;

use crate::model::{AppNetwork, Instance, ServiceSpec};
use async_trait::async_trait;
use futures_util::stream::BoxStream;

/// A tarball as it arrives (the body of `POST /v1/images/load`).
pub type TarStream = BoxStream<'static, Result<bytes::Bytes, std::io::Error>>;
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "cannot reach the Docker engine at {endpoint}: {detail} (is dockerd running? check --docker-host)"
    )]
    Unreachable { endpoint: String, detail: String },
    #[error(
        "image {image} is not on this host and could not be pulled ({detail}): on an offline host, load it with `berth image load FILE.tar`"
    )]
    ImageUnavailable { image: String, detail: String },
    #[error("{op} {object}: {detail}")]
    Engine {
        op: &'static str,
        object: String,
        detail: String,
    },
    #[error("container name {0} is already taken")]
    NameTaken(String),
    #[error("{0} not found")]
    NotFound(String),
}

/// Everything the engine needs to create one instance.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    pub node: String,
    pub app: String,
    pub service: String,
    pub slot: u32,
    /// `berth.spec` label: the desired spec hash.
    pub spec_hash: String,
    /// The version it runs: `berth.version` label `web-003`.
    pub version: u32,
    pub spec: ServiceSpec,
    /// The app network to join (bridge mode), with the DNS aliases of this instance.
    pub network: Option<String>,
    pub aliases: Vec<String>,
    /// Where each named volume of the spec comes from (by its key in the template).
    pub volumes: BTreeMap<String, crate::model::VolumeSource>,
    /// The node that owns the app, when it is not this one (`berth.owner`).
    pub owner: String,
    /// A job's run and attempt (`berth.run`, `berth.attempt`; see `agent::jobs`).
    pub job: Option<crate::model::JobRef>,
    /// Named as compose does (`{app}_{service}_{slot}`): its version is the service's only
    /// live one. Otherwise (a version beside the one that serves) the name carries the
    /// version, so the two never collide.
    pub compose: bool,
}

/// A container's mount of a volume or host directory (any container on the engine).
#[derive(Debug, Clone, PartialEq)]
pub struct MountUse {
    pub container: String,
    pub id: String,
    pub running: bool,
    /// The engine volume's name, for a volume mount.
    pub volume: Option<String>,
    /// The host path (a bind's source, a volume's mount point).
    pub source: String,
    pub target: String,
}

impl CreateRequest {
    pub fn container_name(&self) -> String {
        match self.job {
            Some(j) => job_container_name(&self.app, &self.service, j.run, self.slot, j.attempt),
            None if self.compose => compose_name(&self.app, &self.service, self.slot),
            None => container_name(&self.app, &self.service, self.version, self.slot),
        }
    }
}

/// `{app}_{service}_{slot}`: compose's and the seed consoles' name (`wp_web_1`), which the
/// instances of a service's only live version carry (its version is in the `berth.version`
/// label and `berth ps`), so `docker logs wp_web_1` means what it means under compose.
pub fn compose_name(app: &str, service: &str, slot: u32) -> String {
    format!("{app}_{service}_{slot}")
}

/// `{app}_{service}-{NNN}_{slot}`: the name of an instance of a version running beside
/// another (a release under way), which cannot collide with the compose names of the
/// version that serves; it takes its compose name once it is the only live version
/// (`plan::compose_renames`). Also the key its slot's start errors are kept under.
pub fn container_name(app: &str, service: &str, version: u32, slot: u32) -> String {
    format!(
        "{app}_{}_{slot}",
        crate::model::version_name(service, version)
    )
}

/// A job's container: `{app}_{task}_{slot}.{run}.{attempt}` (the seed's
/// `{app}_{service}_{n}`, with the run and the attempt, so no two ever share a name).
pub fn job_container_name(app: &str, task: &str, run: u64, slot: u32, attempt: u32) -> String {
    format!("{app}_{task}_{slot}.{run}.{attempt}")
}

/// The network of an app on a node. The node id is part of the name because network names
/// are not unique in the engine: two agents sharing one engine (or a person) could otherwise
/// make the name ambiguous, which breaks every container start on it.
pub fn network_name(node: &str, app: &str) -> String {
    let short: String = node.chars().take(6).collect();
    format!("berth_{app}_{short}")
}

/// A container holding a service's name on an app network (see `hold`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub id: String,
    pub app: String,
    pub service: String,
    /// Its process (0 when it does not run): the agent binds listeners in its network
    /// namespace.
    pub pid: u32,
    /// The names it answers to on the app network.
    pub aliases: Vec<String>,
}

/// The name of the holder of (app, service) on node `node`.
pub fn holder_name(node: &str, app: &str, service: &str) -> String {
    let short: String = node.chars().take(6).collect();
    format!("berth-names_{app}_{service}_{short}")
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ImageInfo {
    pub id: String,
    pub tags: Vec<String>,
    pub size: i64,
    pub created: i64,
    /// Containers using it (any, not only berth's).
    pub containers: i64,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct PruneReport {
    pub deleted: Vec<String>,
    pub space_reclaimed: i64,
}

/// What the engine said happened to a container (the actions the agent acts on; the rest
/// are `Other`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineAction {
    Start,
    Die,
    Oom,
    Kill,
    Stop,
    Destroy,
    Restart,
    Other,
}

impl EngineAction {
    /// The engine's action text (`exec_start: sh -c ...` and `health_status: healthy` carry
    /// details after a colon, which are ignored).
    pub fn parse(action: &str) -> EngineAction {
        match action.split(':').next().unwrap_or_default().trim() {
            "start" => EngineAction::Start,
            "die" => EngineAction::Die,
            "oom" => EngineAction::Oom,
            "kill" => EngineAction::Kill,
            "stop" => EngineAction::Stop,
            "destroy" => EngineAction::Destroy,
            "restart" => EngineAction::Restart,
            _ => EngineAction::Other,
        }
    }
}

/// A change the engine reported about one of this node's containers.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeEvent {
    pub id: String,
    pub action: EngineAction,
    pub app: String,
    pub service: String,
    pub name: String,
    pub exit_code: Option<i64>,
}

/// The engine's `/info` figures Telegraf's docker input reports (the `docker` measurement
/// and its `engine_host` / `server_version` tags).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EngineInfo {
    /// The engine host's name (`Name`).
    pub name: String,
    pub server_version: String,
    pub n_cpus: i64,
    pub n_used_file_descriptors: i64,
    pub n_containers: i64,
    pub n_containers_running: i64,
    pub n_containers_stopped: i64,
    pub n_containers_paused: i64,
    pub n_images: i64,
    pub n_goroutines: i64,
    pub n_listener_events: i64,
    pub memory_total: i64,
}

#[async_trait]
pub trait ContainerRuntime: Send + Sync + 'static {
    /// A short description of the engine (version), which also proves it answers.
    async fn ping(&self) -> Result<String, RuntimeError>;
    /// The engine's system-wide figures (one `/info` call).
    async fn engine_info(&self) -> Result<EngineInfo, RuntimeError>;
    /// This node's containers, any state.
    async fn list(&self, node: &str) -> Result<Vec<Instance>, RuntimeError>;
    /// This node's app networks (duplicates included: the engine allows two of one name).
    async fn networks(&self, node: &str) -> Result<Vec<AppNetwork>, RuntimeError>;
    async fn create_network(&self, node: &str, app: &str) -> Result<(), RuntimeError>;
    /// Removes a network by id.
    async fn remove_network(&self, id: &str) -> Result<(), RuntimeError>;
    /// Creates (not starts) a container; returns its id.
    async fn create(&self, req: &CreateRequest) -> Result<String, RuntimeError>;
    async fn start(&self, id: &str) -> Result<(), RuntimeError>;
    async fn stop(&self, id: &str, grace_seconds: u32) -> Result<(), RuntimeError>;
    /// Removes a container (force), with its anonymous volumes when `volumes`.
    async fn remove(&self, id: &str, volumes: bool) -> Result<(), RuntimeError>;
    /// Renames a container (running or not); `NameTaken` when another has the name.
    async fn rename(&self, id: &str, name: &str) -> Result<(), RuntimeError>;
    async fn image_present(&self, image: &str) -> Result<bool, RuntimeError>;
    /// The engine's id of the image a reference names here (`sha256:...`); None when absent.
    async fn image_id(&self, image: &str) -> Result<Option<String>, RuntimeError>;
    /// The ports an image's config exposes (`EXPOSE`), as the engine writes them (`80/tcp`).
    async fn image_exposed(&self, image: &str) -> Result<Vec<String>, RuntimeError>;
    /// Pulls `image`, the variant for `platform` (`linux/arm64`) when given, with `auth`
    /// for a private registry.
    async fn pull(
        &self,
        image: &str,
        platform: Option<&str>,
        auth: Option<&RegistryAuth>,
    ) -> Result<(), RuntimeError>;
    /// Loads a `docker save` tarball; returns the engine's messages (loaded image names).
    /// Loads a `docker save` tarball, streamed (never held whole in memory).
    async fn load_images(&self, tar: TarStream) -> Result<Vec<String>, RuntimeError>;
    async fn images(&self) -> Result<Vec<ImageInfo>, RuntimeError>;
    /// Ids of the images any container on the engine uses (any state, anyone's).
    async fn images_in_use(&self) -> Result<std::collections::BTreeSet<String>, RuntimeError>;
    /// Removes one image reference (a tag, or an id for an untagged image); the image itself
    /// goes with its last reference.
    async fn remove_image(&self, reference: &str) -> Result<(), RuntimeError>;
    /// Runs a command inside a running container; returns its exit code and the first
    /// `limit` bytes of its output. Gives up after `timeout`.
    async fn exec(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout: std::time::Duration,
        limit: usize,
    ) -> Result<(i64, String), RuntimeError>;
    /// Starts a command in a running container with its standard streams attached (`berth
    /// exec`, the console's terminal): its output as it comes, its input, and the exec's id
    /// (to resize its terminal and read its exit code).
    async fn exec_attached(&self, id: &str, spec: ExecSpec) -> Result<ExecSession, RuntimeError>;
    /// Resizes an exec's terminal.
    async fn exec_resize(&self, exec: &str, cols: u16, rows: u16) -> Result<(), RuntimeError>;
    /// An exec's exit code once it ended (None while it runs).
    async fn exec_exit(&self, exec: &str) -> Result<Option<i64>, RuntimeError>;
    /// Removes engine volumes (absent ones are no error).
    async fn remove_volumes(&self, names: &[String]) -> Result<(), RuntimeError>;
    /// Creates an engine volume with the `local` driver (its options `type`, `device`, `o`);
    /// an existing one of that name is kept. Returns its mount point.
    async fn create_volume(
        &self,
        name: &str,
        opts: &BTreeMap<String, String>,
        labels: &BTreeMap<String, String>,
    ) -> Result<String, RuntimeError>;
    /// An engine volume's mount point, `None` when there is no such volume.
    async fn volume_mountpoint(&self, name: &str) -> Result<Option<String>, RuntimeError>;
    /// Every container's mounts of volumes and host directories (anyone's, any state).
    async fn mount_uses(&self) -> Result<Vec<MountUse>, RuntimeError>;
    /// This node's holders (see `hold`): containers holding a service's name on its app
    /// network for the service's instances on other members.
    async fn holders(&self, node: &str) -> Result<Vec<Holder>, RuntimeError>;
    /// Creates and starts a holder of (app, service) on `network`, answering to `aliases`,
    /// loading the holder image first when the engine lacks it.
    async fn create_holder(
        &self,
        node: &str,
        app: &str,
        service: &str,
        network: &str,
        aliases: &[String],
    ) -> Result<Holder, RuntimeError>;
    /// The engine's event stream for this node's containers. Ends when the engine goes away.
    fn events(&self, node: &str) -> BoxStream<'static, Result<RuntimeEvent, RuntimeError>>;
    /// A `docker save` tarball of these images (tags kept), as the engine streams it.
    fn save_images(
        &self,
        refs: &[String],
    ) -> BoxStream<'static, Result<bytes::Bytes, RuntimeError>>;
    /// The container's stdout/stderr from `since_s` (Unix seconds) on, each entry prefixed
    /// with the engine's RFC 3339 timestamp; with `follow` it stays open until the container
    /// stops.
    fn logs(
        &self,
        id: &str,
        since_s: i64,
        follow: bool,
    ) -> BoxStream<'static, Result<LogFrame, RuntimeError>>;
}

/// Labels berth puts on a container it creates.
/// One entry of a container's log stream: `<timestamp> <text>`, text ending in `\n` unless
/// An attached command: what it runs and how.
#[derive(Debug, Clone, Default)]
pub struct ExecSpec {
    pub cmd: Vec<String>,
    pub tty: bool,
    /// Attach its standard input.
    pub stdin: bool,
    /// The terminal's first size (with `tty`).
    pub cols: u16,
    pub rows: u16,
}

/// A running attached command ([`Runtime::exec_attached`]).
pub struct ExecSession {
    pub exec_id: String,
    /// Its output: (stderr?, bytes); with a TTY everything is stdout.
    pub output: BoxStream<'static, Result<LogFrame, RuntimeError>>,
    pub input: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
}

/// the engine split a long line (the rest follows in the next entries).
#[derive(Debug, Clone, PartialEq)]
pub struct LogFrame {
    pub stderr: bool,
    pub bytes: bytes::Bytes,
}

/// A job container's run and attempt, from its labels.
pub fn job_ref(l: &std::collections::HashMap<String, String>) -> Option<crate::model::JobRef> {
    use crate::model::labels::{ATTEMPT, RUN};
    Some(crate::model::JobRef {
        run: l.get(RUN)?.parse().ok()?,
        attempt: l.get(ATTEMPT)?.parse().ok()?,
    })
}

pub fn berth_labels(req: &CreateRequest) -> BTreeMap<String, String> {
    use crate::model::labels::*;
    let mut l: BTreeMap<String, String> = req.spec.labels.clone();
    l.insert(NODE.into(), req.node.clone());
    l.insert(APP.into(), req.app.clone());
    l.insert(SERVICE.into(), req.service.clone());
    l.insert(SLOT.into(), req.slot.to_string());
    l.insert(SPEC.into(), req.spec_hash.clone());
    if !req.owner.is_empty() {
        l.insert(OWNER.into(), req.owner.clone());
    }
    if let Some(j) = req.job {
        l.insert(RUN.into(), j.run.to_string());
        l.insert(ATTEMPT.into(), j.attempt.to_string());
    }
    l.insert(
        VERSION.into(),
        crate::model::version_name(&req.service, req.version),
    );
    l
}

#[cfg(test)]
mod tests {
    use super::EngineAction;

    #[test]
    fn engine_actions_parse_without_their_details() {
        assert_eq!(EngineAction::parse("die"), EngineAction::Die);
        assert_eq!(EngineAction::parse("start"), EngineAction::Start);
        assert_eq!(EngineAction::parse("oom"), EngineAction::Oom);
        assert_eq!(
            EngineAction::parse("exec_start: sh -c true"),
            EngineAction::Other
        );
        assert_eq!(
            EngineAction::parse("health_status: healthy"),
            EngineAction::Other
        );
        assert_eq!(EngineAction::parse("kill"), EngineAction::Kill);
        assert_eq!(EngineAction::parse(""), EngineAction::Other);
    }
}

/// Credentials for pulls from one private registry (`berth registry login`).
#[derive(Clone, PartialEq)]
pub struct RegistryAuth {
    pub server: String,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("server", &self.server)
            .field("username", &self.username)
            .field("password", &"********")
            .finish()
    }
}

/// The registry an image reference pulls from, as docker reads it: the first path
/// component when it has a `.` or `:` or is `localhost`, else Docker Hub (`docker.io`).
pub fn registry_host(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => {
            normalize_registry(first)
        }
        _ => "docker.io".to_string(),
    }
}

/// A registry host as the user may write it: Docker Hub's several names are one.
pub fn normalize_registry(host: &str) -> String {
    let h = host
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_ascii_lowercase();
    match h.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_string()
        }
        _ => h,
    }
}
