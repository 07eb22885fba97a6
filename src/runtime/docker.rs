//! [`ContainerRuntime`] on a real Docker engine, through bollard. The API version is
//! negotiated (Debian's engine speaks 1.41 while bollard defaults to a newer one).

use super::*;
use crate::model::{
    InstanceState, MountKind, NetworkMode, Protocol, PublishedPort, RestartPolicy, VolumeSource,
    labels,
};
use bollard::Docker;
use bollard::errors::Error as BErr;
use bollard::models::{
    ContainerCreateBody, DeviceMapping, DeviceRequest, EndpointSettings, HealthConfig, HostConfig,
    HostConfigLogConfig, Mount, MountType, MountVolumeOptions, NetworkCreateRequest,
    NetworkingConfig, PortBinding, ResourcesUlimits, RestartPolicy as BRestart,
    RestartPolicyNameEnum,
};
use bollard::query_parameters as qp;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::time::Duration;

pub struct DockerRuntime {
    docker: Docker,
    endpoint: String,
    /// `State.FinishedAt` of containers that exited with code 0 (id -> (finished ms, when
    /// read)): read once, dropped on the container's next start or exit event, read again
    /// after [`FINISHED_TTL`] in case an event was missed.
    finished: std::sync::Arc<std::sync::Mutex<HashMap<String, (i64, std::time::Instant)>>>,
}

/// How long a cached `FinishedAt` is trusted without an event.
const FINISHED_TTL: Duration = Duration::from_secs(30);

/// A bind in the engine's own syntax: `SOURCE:TARGET[:ro,rslave,z]`.
fn bind<'a>(source: &str, target: &str, mode: impl IntoIterator<Item = &'a str>) -> String {
    let mode: Vec<&str> = mode.into_iter().collect();
    match mode.is_empty() {
        true => format!("{source}:{target}"),
        false => format!("{source}:{target}:{}", mode.join(",")),
    }
}

fn engine_err(op: &'static str, object: impl Into<String>) -> impl FnOnce(BErr) -> RuntimeError {
    let object = object.into();
    move |e| match e {
        BErr::DockerResponseServerError {
            status_code: 404,
            message,
        } => RuntimeError::NotFound(format!("{object} ({message})")),
        BErr::DockerResponseServerError {
            status_code: 409, ..
        } if op == "create container" => RuntimeError::NameTaken(object),
        BErr::DockerResponseServerError { message, .. } => RuntimeError::Engine {
            op,
            object,
            detail: message,
        },
        other => RuntimeError::Engine {
            op,
            object,
            detail: other.to_string(),
        },
    }
}

impl DockerRuntime {
    /// A container's process id (0 when it does not run).
    async fn pid_of(&self, id: &str) -> Result<u32, RuntimeError> {
        Ok(self
            .docker
            .inspect_container(id, None::<qp::InspectContainerOptions>)
            .await
            .map_err(engine_err("inspect container", id))?
            .state
            .and_then(|s| s.pid)
            .and_then(|p| u32::try_from(p).ok())
            .unwrap_or(0))
    }
}

/// On a holder: the names it answers to, comma-separated.
const HOLD_ALIASES: &str = "berth.holds.aliases";

fn label_filter(node: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_string(),
        vec![format!("{}={node}", labels::NODE)],
    )])
}

/// Splits `repo[:tag]` (a registry port is not a tag) into repo and tag, defaulting to latest.
fn split_image(image: &str) -> (String, String) {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    if let Some(d) = digest {
        return (name.to_string(), d.to_string());
    }
    match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo.to_string(), tag.to_string()),
        _ => (name.to_string(), "latest".to_string()),
    }
}

/// `Up 5 seconds (healthy)` -> Healthy; no healthcheck -> None.
fn engine_health(status: &str) -> crate::model::Health {
    use crate::model::Health;
    if status.ends_with("(healthy)") {
        Health::Healthy
    } else if status.ends_with("(unhealthy)") {
        Health::Unhealthy
    } else if status.ends_with("(health: starting)") {
        Health::Starting
    } else {
        Health::None
    }
}

/// `Exited (137) 3 seconds ago` -> 137.
fn exit_code_from_status(status: &str) -> Option<i64> {
    let rest = status.strip_prefix("Exited (")?;
    rest.split(')').next()?.parse().ok()
}

impl DockerRuntime {
    /// When an exited container finished (cached; see [`DockerRuntime::finished`]).
    async fn finished_ms(&self, id: &str) -> Option<i64> {
        let cached = self.finished.lock().ok().and_then(|f| f.get(id).copied());
        if let Some((ms, at)) = cached
            && at.elapsed() < FINISHED_TTL
        {
            return Some(ms);
        }
        let c = self
            .docker
            .inspect_container(id, None::<qp::InspectContainerOptions>)
            .await
            .ok()?;
        let ms = c
            .state
            .and_then(|s| s.finished_at)
            .and_then(|t| crate::timefmt::parse_rfc3339(&t))
            .map(|ns| ns / 1_000_000)?;
        if let Ok(mut f) = self.finished.lock() {
            f.insert(id.to_string(), (ms, std::time::Instant::now()));
        }
        Some(ms)
    }

    /// Every container on the engine, anyone's, any state.
    async fn all_containers(&self) -> Result<Vec<bollard::models::ContainerSummary>, RuntimeError> {
        let opts = qp::ListContainersOptions {
            all: true,
            ..Default::default()
        };
        self.docker
            .list_containers(Some(opts))
            .await
            .map_err(engine_err("list containers", "on this host"))
    }

    /// Connects to `endpoint` (`unix:///var/run/docker.sock`, `tcp://host:2375`) and negotiates
    /// the API version.
    pub async fn connect(endpoint: &str) -> Result<DockerRuntime, RuntimeError> {
        let unreachable = |e: BErr| RuntimeError::Unreachable {
            endpoint: endpoint.to_string(),
            detail: e.to_string(),
        };
        let docker = if let Some(path) = endpoint.strip_prefix("unix://") {
            Docker::connect_with_unix(path, 120, bollard::API_DEFAULT_VERSION)
                .map_err(unreachable)?
        } else {
            let http = endpoint.replacen("tcp://", "http://", 1);
            Docker::connect_with_http(&http, 120, bollard::API_DEFAULT_VERSION)
                .map_err(unreachable)?
        };
        let docker = docker.negotiate_version().await.map_err(unreachable)?;
        Ok(DockerRuntime {
            docker,
            endpoint: endpoint.to_string(),
            finished: Default::default(),
        })
    }

    /// What `berth doctor` reports of the engine: version, API version, cgroup version and
    /// driver.
    pub async fn engine_info(&self) -> Result<EngineInfo, RuntimeError> {
        let unreachable = |e: BErr| RuntimeError::Unreachable {
            endpoint: self.endpoint.clone(),
            detail: e.to_string(),
        };
        let v = self.docker.version().await.map_err(unreachable)?;
        let i = self.docker.info().await.map_err(unreachable)?;
        Ok(EngineInfo {
            version: v.version.unwrap_or_default(),
            api_version: v.api_version.unwrap_or_default(),
            cgroup_version: i.cgroup_version.map(|c| c.to_string()).unwrap_or_default(),
            cgroup_driver: i.cgroup_driver.map(|c| c.to_string()).unwrap_or_default(),
        })
    }
}

/// The engine as `berth doctor` shows it.
#[derive(Debug, Clone, Default)]
pub struct EngineInfo {
    pub version: String,
    pub api_version: String,
    pub cgroup_version: String,
    pub cgroup_driver: String,
}

/// A container's first name, without the engine's leading `/`.
fn first_name(names: Option<Vec<String>>) -> String {
    names
        .and_then(|n| n.into_iter().next())
        .map(|n| n.trim_start_matches('/').to_string())
        .unwrap_or_default()
}

#[async_trait]
impl ContainerRuntime for DockerRuntime {
    async fn ping(&self) -> Result<String, RuntimeError> {
        let v = self
            .docker
            .version()
            .await
            .map_err(|e| RuntimeError::Unreachable {
                endpoint: self.endpoint.clone(),
                detail: e.to_string(),
            })?;
        Ok(format!(
            "Docker {} (API {})",
            v.version.unwrap_or_default(),
            v.api_version.unwrap_or_default()
        ))
    }

    async fn engine_info(&self) -> Result<super::EngineInfo, RuntimeError> {
        let i = self
            .docker
            .info()
            .await
            .map_err(engine_err("read the engine's info", "(system info)"))?;
        Ok(super::EngineInfo {
            name: i.name.unwrap_or_default(),
            server_version: i.server_version.unwrap_or_default(),
            n_cpus: i.ncpu.unwrap_or_default(),
            n_used_file_descriptors: i.nfd.unwrap_or_default(),
            n_containers: i.containers.unwrap_or_default(),
            n_containers_running: i.containers_running.unwrap_or_default(),
            n_containers_stopped: i.containers_stopped.unwrap_or_default(),
            n_containers_paused: i.containers_paused.unwrap_or_default(),
            n_images: i.images.unwrap_or_default(),
            n_goroutines: i.n_goroutines.unwrap_or_default(),
            n_listener_events: i.n_events_listener.unwrap_or_default(),
            memory_total: i.mem_total.unwrap_or_default(),
        })
    }

    async fn list(&self, node: &str) -> Result<Vec<Instance>, RuntimeError> {
        let opts = qp::ListContainersOptions {
            all: true,
            filters: Some(label_filter(node)),
            ..Default::default()
        };
        let list = self
            .docker
            .list_containers(Some(opts))
            .await
            .map_err(engine_err("list containers", "of this node"))?;
        let mut out = Vec::with_capacity(list.len());
        let mut seen = std::collections::HashSet::new();
        for c in list {
            let l = c.labels.unwrap_or_default();
            // A container without complete berth labels was not made by berth: ignore it.
            let (Some(app), Some(service), Some(slot)) = (
                l.get(labels::APP),
                l.get(labels::SERVICE),
                l.get(labels::SLOT).and_then(|s| s.parse::<u32>().ok()),
            ) else {
                continue;
            };
            let state = c
                .state
                .map(|s| InstanceState::parse(s.as_ref()))
                .unwrap_or(InstanceState::Exited);
            let status = c.status.unwrap_or_default();
            let listed_ports = c.ports.unwrap_or_default();
            let mut exposed: Vec<u16> = listed_ports
                .iter()
                .filter(|p| {
                    !matches!(
                        p.typ.map(|t| t.to_string()).as_deref(),
                        Some("udp" | "sctp")
                    )
                })
                .map(|p| p.private_port)
                .collect();
            exposed.sort_unstable();
            exposed.dedup();
            let mut ports: Vec<PublishedPort> = listed_ports
                .into_iter()
                .filter_map(|p| {
                    Some(PublishedPort {
                        container_port: p.private_port,
                        host_port: p.public_port?,
                        host_ip: p.ip.unwrap_or_default(),
                        protocol: match p.typ.map(|t| t.to_string()).as_deref() {
                            Some("udp") => Protocol::Udp,
                            _ => Protocol::Tcp,
                        },
                    })
                })
                .collect();
            ports.sort_by_key(|p| (p.container_port, p.host_ip.clone()));
            ports.dedup_by_key(|p| (p.container_port, p.host_port, p.protocol));
            // The one-shot rule needs when an exit 0 happened.
            let finished_ms =
                match state == InstanceState::Exited && exit_code_from_status(&status) == Some(0) {
                    true => {
                        let id = c.id.clone().unwrap_or_default();
                        seen.insert(id.clone());
                        self.finished_ms(&id).await
                    }
                    false => None,
                };
            out.push(Instance {
                exposed,
                id: c.id.unwrap_or_default(),
                name: first_name(c.names),
                app: app.clone(),
                service: service.clone(),
                slot,
                spec_hash: l.get(labels::SPEC).cloned().unwrap_or_default(),
                version: l.get(labels::VERSION).cloned().unwrap_or_default(),
                image: c.image.unwrap_or_default(),
                exit_code: if state == InstanceState::Exited {
                    exit_code_from_status(&status)
                } else {
                    None
                },
                finished_ms,
                state,
                ports,
                created: c.created.unwrap_or_default(),
                ip: c
                    .network_settings
                    .and_then(|n| n.networks)
                    .and_then(|nets| {
                        nets.into_values()
                            .find_map(|e| e.ip_address.filter(|ip| !ip.is_empty()))
                    })
                    .unwrap_or_default(),
                // The engine's own healthcheck (compose `healthcheck:`) shows in the status.
                health: engine_health(&status),
                status,
                labels: l
                    .iter()
                    .filter(|(k, _)| !k.starts_with("berth."))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                owner: l.get(labels::OWNER).cloned().unwrap_or_default(),
                job: job_ref(&l),
            });
        }
        // Containers that went away or run again are forgotten.
        if let Ok(mut f) = self.finished.lock() {
            f.retain(|id, _| seen.contains(id));
        }
        Ok(out)
    }

    async fn networks(&self, node: &str) -> Result<Vec<AppNetwork>, RuntimeError> {
        let nets = self
            .docker
            .list_networks(Some(qp::ListNetworksOptions {
                filters: Some(label_filter(node)),
            }))
            .await
            .map_err(engine_err("list networks", "of this node"))?;
        Ok(nets
            .into_iter()
            .filter_map(|n| {
                Some(AppNetwork {
                    app: n.labels.as_ref()?.get(labels::APP)?.clone(),
                    id: n.id?,
                    created: n.created.unwrap_or_default(),
                })
            })
            .collect())
    }

    async fn create_network(&self, node: &str, app: &str) -> Result<(), RuntimeError> {
        let name = network_name(node, app);
        let req = NetworkCreateRequest {
            name: name.clone(),
            driver: Some("bridge".into()),
            labels: Some(HashMap::from([
                (labels::NODE.to_string(), node.to_string()),
                (labels::APP.to_string(), app.to_string()),
            ])),
            ..Default::default()
        };
        match self.docker.create_network(req).await {
            Ok(_) => Ok(()),
            // Already there (an earlier run was killed after creating it): adopt it.
            Err(BErr::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(()),
            Err(e) => Err(engine_err("create network", name)(e)),
        }
    }

    async fn remove_network(&self, id: &str) -> Result<(), RuntimeError> {
        match self.docker.remove_network(id).await {
            Ok(())
            | Err(BErr::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(e) => Err(engine_err("remove network", id)(e)),
        }
    }

    async fn create(&self, req: &CreateRequest) -> Result<String, RuntimeError> {
        let name = req.container_name();
        let opts = qp::CreateContainerOptions {
            name: Some(name.clone()),
            platform: req.spec.platform.clone().unwrap_or_default(),
        };
        let resp = self
            .docker
            .create_container(Some(opts), create_body(req))
            .await
            .map_err(engine_err("create container", name))?;
        Ok(resp.id)
    }

    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        match self
            .docker
            .start_container(id, None::<qp::StartContainerOptions>)
            .await
        {
            Ok(()) => Ok(()),
            Err(BErr::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(engine_err("start container", id)(e)),
        }
    }

    async fn stop(&self, id: &str, grace_seconds: u32) -> Result<(), RuntimeError> {
        let opts = qp::StopContainerOptions {
            t: Some(grace_seconds as i32),
            signal: None,
        };
        match self.docker.stop_container(id, Some(opts)).await {
            Ok(())
            | Err(BErr::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(engine_err("stop container", id)(e)),
        }
    }

    async fn remove(&self, id: &str, volumes: bool) -> Result<(), RuntimeError> {
        let opts = qp::RemoveContainerOptions {
            force: true,
            v: volumes,
            link: false,
        };
        match self.docker.remove_container(id, Some(opts)).await {
            Ok(())
            | Err(BErr::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            // Already being removed by an earlier (interrupted) call.
            Err(BErr::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(()),
            Err(e) => Err(engine_err("remove container", id)(e)),
        }
    }

    async fn rename(&self, id: &str, name: &str) -> Result<(), RuntimeError> {
        let opts = qp::RenameContainerOptions {
            name: name.to_string(),
        };
        match self.docker.rename_container(id, opts).await {
            Ok(()) => Ok(()),
            Err(BErr::DockerResponseServerError {
                status_code: 409, ..
            }) => Err(RuntimeError::NameTaken(name.to_string())),
            Err(e) => Err(engine_err("rename container", id)(e)),
        }
    }

    async fn holders(&self, node: &str) -> Result<Vec<super::Holder>, RuntimeError> {
        let opts = qp::ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([(
                "label".to_string(),
                vec![
                    format!("{}={node}", labels::NODE),
                    labels::HOLDS.to_string(),
                ],
            )])),
            ..Default::default()
        };
        let list = self
            .docker
            .list_containers(Some(opts))
            .await
            .map_err(engine_err("list containers", "holding service names"))?;
        let mut out = Vec::new();
        for c in list {
            let l = c.labels.unwrap_or_default();
            let (Some(id), Some((app, service))) =
                (c.id, l.get(labels::HOLDS).and_then(|h| h.split_once('/')))
            else {
                continue;
            };
            let running = c.state.map(|s| s.as_ref() == "running").unwrap_or(false);
            let aliases: Vec<String> = l
                .get(HOLD_ALIASES)
                .map(|a| a.split(',').map(String::from).collect())
                .unwrap_or_default();
            let pid = if running {
                self.pid_of(&id).await.unwrap_or(0)
            } else {
                0
            };
            out.push(super::Holder {
                id,
                app: app.to_string(),
                service: service.to_string(),
                pid,
                aliases,
            });
        }
        Ok(out)
    }

    async fn create_holder(
        &self,
        node: &str,
        app: &str,
        service: &str,
        network: &str,
        aliases: &[String],
    ) -> Result<super::Holder, RuntimeError> {
        if !self.image_present(super::hold::IMAGE).await? {
            let tar = super::hold::image_tar().map_err(|detail| RuntimeError::Engine {
                op: "load image",
                object: super::hold::IMAGE.into(),
                detail,
            })?;
            let body: super::TarStream = Box::pin(futures_util::stream::once(async move {
                Ok::<_, std::io::Error>(bytes::Bytes::from(tar))
            }));
            self.load_images(body).await?;
        }
        let name = super::holder_name(node, app, service);
        let body = ContainerCreateBody {
            image: Some(super::hold::IMAGE.into()),
            labels: Some(HashMap::from([
                (labels::NODE.to_string(), node.to_string()),
                (labels::HOLDS.to_string(), format!("{app}/{service}")),
                (HOLD_ALIASES.to_string(), aliases.join(",")),
            ])),
            host_config: Some(HostConfig {
                network_mode: Some(network.to_string()),
                restart_policy: Some(BRestart {
                    name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                    maximum_retry_count: None,
                }),
                readonly_rootfs: Some(true),
                cap_drop: Some(vec!["ALL".into()]),
                security_opt: Some(vec!["no-new-privileges".into()]),
                memory: Some(16 << 20),
                // The runtime's own setup runs in the container's cgroup first.
                pids_limit: Some(32),
                ..Default::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    network.to_string(),
                    EndpointSettings {
                        aliases: Some(aliases.to_vec()),
                        ..Default::default()
                    },
                )])),
            }),
            ..Default::default()
        };
        let opts = qp::CreateContainerOptions {
            name: Some(name.clone()),
            ..Default::default()
        };
        let id = match self.docker.create_container(Some(opts), body).await {
            Ok(r) => r.id,
            // Made meanwhile (the next look at the holders finds it).
            Err(BErr::DockerResponseServerError {
                status_code: 409, ..
            }) => return Err(RuntimeError::NameTaken(name)),
            Err(e) => return Err(engine_err("create container", name)(e)),
        };
        self.start(&id).await?;
        let pid = self.pid_of(&id).await?;
        Ok(super::Holder {
            id,
            app: app.to_string(),
            service: service.to_string(),
            pid,
            aliases: aliases.to_vec(),
        })
    }

    async fn image_present(&self, image: &str) -> Result<bool, RuntimeError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(BErr::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(false),
            Err(e) => Err(engine_err("inspect image", image)(e)),
        }
    }

    async fn image_id(&self, image: &str) -> Result<Option<String>, RuntimeError> {
        match self.docker.inspect_image(image).await {
            Ok(i) => Ok(i.id),
            Err(BErr::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(engine_err("inspect image", image)(e)),
        }
    }

    async fn image_exposed(&self, image: &str) -> Result<Vec<String>, RuntimeError> {
        let i = self
            .docker
            .inspect_image(image)
            .await
            .map_err(engine_err("inspect image", image))?;
        Ok(i.config.and_then(|c| c.exposed_ports).unwrap_or_default())
    }

    async fn pull(
        &self,
        image: &str,
        platform: Option<&str>,
        auth: Option<&super::RegistryAuth>,
    ) -> Result<(), RuntimeError> {
        let (repo, tag) = split_image(image);
        let opts = qp::CreateImageOptions {
            from_image: Some(repo),
            tag: Some(tag),
            platform: platform.unwrap_or_default().to_string(),
            ..Default::default()
        };
        let unavailable = |detail: String| RuntimeError::ImageUnavailable {
            image: image.to_string(),
            detail,
        };
        let pull = async {
            let credentials = auth.map(|a| bollard::auth::DockerCredentials {
                username: Some(a.username.clone()),
                password: Some(a.password.clone()),
                serveraddress: Some(a.server.clone()),
                ..Default::default()
            });
            let mut stream = self.docker.create_image(Some(opts), None, credentials);
            while let Some(item) = stream.next().await {
                item.map_err(|e| unavailable(e.to_string()))?;
            }
            Ok::<(), RuntimeError>(())
        };
        tokio::time::timeout(Duration::from_secs(120), pull)
            .await
            .map_err(|_| unavailable("the registry did not answer within 120 s".into()))?
    }

    async fn load_images(&self, tar: super::TarStream) -> Result<Vec<String>, RuntimeError> {
        let mut stream =
            self.docker
                .import_image_stream(qp::ImportImageOptions::default(), tar, None);
        let mut out = Vec::new();
        while let Some(item) = stream.next().await {
            let info = item.map_err(engine_err("load images", "from the tarball"))?;
            if let Some(s) = info.stream {
                let s = s.trim();
                if !s.is_empty() {
                    out.push(s.to_string());
                }
            }
        }
        Ok(out)
    }

    async fn images(&self) -> Result<Vec<ImageInfo>, RuntimeError> {
        let list = self
            .docker
            .list_images(Some(qp::ListImagesOptions::default()))
            .await
            .map_err(engine_err("list images", "on this host"))?;
        Ok(list
            .into_iter()
            .map(|i| ImageInfo {
                id: i.id,
                tags: i.repo_tags,
                size: i.size,
                created: i.created,
                containers: i.containers,
            })
            .collect())
    }

    async fn images_in_use(&self) -> Result<std::collections::BTreeSet<String>, RuntimeError> {
        let list = self.all_containers().await?;
        Ok(list.into_iter().filter_map(|c| c.image_id).collect())
    }

    async fn remove_image(&self, reference: &str) -> Result<(), RuntimeError> {
        let opts = qp::RemoveImageOptions {
            force: false,
            noprune: false,
            platforms: None,
        };
        match self.docker.remove_image(reference, Some(opts), None).await {
            Ok(_)
            | Err(BErr::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(e) => Err(engine_err("remove image", reference)(e)),
        }
    }

    async fn exec(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout: Duration,
        limit: usize,
    ) -> Result<(i64, String), RuntimeError> {
        let run = async {
            let created = self
                .docker
                .create_exec(
                    id,
                    bollard::models::ExecConfig {
                        attach_stdout: Some(true),
                        attach_stderr: Some(true),
                        cmd: Some(cmd),
                        ..Default::default()
                    },
                )
                .await
                .map_err(engine_err("exec in", id))?;
            let mut output = String::new();
            if let bollard::exec::StartExecResults::Attached {
                output: mut stream, ..
            } = self
                .docker
                .start_exec(&created.id, None)
                .await
                .map_err(engine_err("exec in", id))?
            {
                while let Some(chunk) = stream.next().await {
                    let Ok(chunk) = chunk else { break };
                    if output.len() < limit {
                        output.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
                    }
                }
            }
            let info = self
                .docker
                .inspect_exec(&created.id)
                .await
                .map_err(engine_err("exec in", id))?;
            let mut cut = limit.min(output.len());
            while !output.is_char_boundary(cut) {
                cut -= 1;
            }
            output.truncate(cut);
            Ok((info.exit_code.unwrap_or(-1), output))
        };
        tokio::time::timeout(timeout, run)
            .await
            .map_err(|_| RuntimeError::Engine {
                op: "exec in",
                object: id.to_string(),
                detail: format!("the command did not finish within {} s", timeout.as_secs()),
            })?
    }

    async fn exec_attached(
        &self,
        id: &str,
        spec: super::ExecSpec,
    ) -> Result<super::ExecSession, RuntimeError> {
        let created = self
            .docker
            .create_exec(
                id,
                bollard::models::ExecConfig {
                    attach_stdin: Some(spec.stdin),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    tty: Some(spec.tty),
                    console_size: (spec.tty && spec.cols > 0 && spec.rows > 0)
                        .then(|| vec![usize::from(spec.rows), usize::from(spec.cols)]),
                    cmd: Some(spec.cmd),
                    ..Default::default()
                },
            )
            .await
            .map_err(engine_err("exec in", id))?;
        let started = self
            .docker
            .start_exec(
                &created.id,
                Some(bollard::exec::StartExecOptions {
                    detach: false,
                    tty: spec.tty,
                    output_capacity: None,
                }),
            )
            .await
            .map_err(engine_err("exec in", id))?;
        let bollard::exec::StartExecResults::Attached { output, input } = started else {
            return Err(RuntimeError::Engine {
                op: "exec in",
                object: id.to_string(),
                detail: "the engine started the command detached".into(),
            });
        };
        let object = id.to_string();
        let output = output.map(move |r| {
            use bollard::container::LogOutput as L;
            r.map(|o| match o {
                L::StdErr { message } => LogFrame {
                    stderr: true,
                    bytes: message,
                },
                L::StdOut { message } | L::Console { message } | L::StdIn { message } => LogFrame {
                    stderr: false,
                    bytes: message,
                },
            })
            .map_err(|e| RuntimeError::Engine {
                op: "exec in",
                object: object.clone(),
                detail: e.to_string(),
            })
        });
        Ok(super::ExecSession {
            exec_id: created.id,
            output: Box::pin(output),
            input,
        })
    }

    async fn exec_resize(&self, exec: &str, cols: u16, rows: u16) -> Result<(), RuntimeError> {
        self.docker
            .resize_exec(
                exec,
                bollard::exec::ResizeExecOptions {
                    height: rows,
                    width: cols,
                },
            )
            .await
            .map_err(engine_err("resize exec", exec))
    }

    async fn exec_exit(&self, exec: &str) -> Result<Option<i64>, RuntimeError> {
        let info = self
            .docker
            .inspect_exec(exec)
            .await
            .map_err(engine_err("inspect exec", exec))?;
        Ok(match info.running {
            Some(true) => None,
            _ => info.exit_code,
        })
    }

    async fn remove_volumes(&self, names: &[String]) -> Result<(), RuntimeError> {
        for n in names {
            match self
                .docker
                .remove_volume(n, None::<qp::RemoveVolumeOptions>)
                .await
            {
                Ok(())
                | Err(BErr::DockerResponseServerError {
                    status_code: 404, ..
                }) => {}
                Err(e) => return Err(engine_err("remove volume", n.clone())(e)),
            }
        }
        Ok(())
    }

    async fn create_volume(
        &self,
        name: &str,
        opts: &BTreeMap<String, String>,
        labels: &BTreeMap<String, String>,
    ) -> Result<String, RuntimeError> {
        if let Some(mp) = self.volume_mountpoint(name).await? {
            return Ok(mp);
        }
        let req = bollard::models::VolumeCreateRequest {
            name: Some(name.to_string()),
            driver: Some("local".into()),
            driver_opts: Some(opts.clone().into_iter().collect()),
            labels: Some(labels.clone().into_iter().collect()),
            ..Default::default()
        };
        let v = self
            .docker
            .create_volume(req)
            .await
            .map_err(engine_err("create volume", name))?;
        Ok(v.mountpoint)
    }

    async fn volume_mountpoint(&self, name: &str) -> Result<Option<String>, RuntimeError> {
        match self.docker.inspect_volume(name).await {
            Ok(v) => Ok(Some(v.mountpoint)),
            Err(BErr::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(engine_err("inspect volume", name)(e)),
        }
    }

    async fn mount_uses(&self) -> Result<Vec<MountUse>, RuntimeError> {
        let mut out = Vec::new();
        for c in self.all_containers().await? {
            let name = first_name(c.names);
            let running = c
                .state
                .is_some_and(|s| InstanceState::parse(s.as_ref()) == InstanceState::Running);
            let id = c.id.unwrap_or_default();
            for m in c.mounts.unwrap_or_default() {
                let volume = m.typ.filter(|t| t == "volume").and(m.name.clone());
                out.push(MountUse {
                    container: name.clone(),
                    id: id.clone(),
                    running,
                    volume,
                    source: m.source.unwrap_or_default(),
                    target: m.destination.unwrap_or_default(),
                });
            }
        }
        Ok(out)
    }

    fn events(&self, node: &str) -> BoxStream<'static, Result<RuntimeEvent, RuntimeError>> {
        let mut filters = label_filter(node);
        filters.insert("type".into(), vec!["container".into()]);
        let opts = qp::EventsOptions {
            filters: Some(filters),
            ..Default::default()
        };
        let finished = self.finished.clone();
        let stream = self.docker.events(Some(opts)).map(move |r| {
            let m = r.map_err(engine_err("watch events", "of this node"))?;
            let actor = m.actor.unwrap_or_default();
            let attrs = actor.attributes.unwrap_or_default();
            let action = EngineAction::parse(&m.action.unwrap_or_default());
            // A start or an exit makes a cached finish time stale.
            if matches!(
                action,
                EngineAction::Start | EngineAction::Die | EngineAction::Restart
            ) && let (Some(id), Ok(mut f)) = (&actor.id, finished.lock())
            {
                f.remove(id);
            }
            Ok(RuntimeEvent {
                id: actor.id.unwrap_or_default(),
                action,
                app: attrs.get(labels::APP).cloned().unwrap_or_default(),
                service: attrs.get(labels::SERVICE).cloned().unwrap_or_default(),
                name: attrs.get("name").cloned().unwrap_or_default(),
                exit_code: attrs.get("exitCode").and_then(|c| c.parse().ok()),
            })
        });
        Box::pin(stream)
    }

    fn save_images(
        &self,
        refs: &[String],
    ) -> BoxStream<'static, Result<bytes::Bytes, RuntimeError>> {
        let names: Vec<&str> = refs.iter().map(String::as_str).collect();
        let what = refs.join(", ");
        Box::pin(
            self.docker
                .export_images(&names)
                .map(move |r| r.map_err(engine_err("save images", what.clone()))),
        )
    }

    fn logs(
        &self,
        id: &str,
        since_s: i64,
        follow: bool,
    ) -> BoxStream<'static, Result<super::LogFrame, RuntimeError>> {
        let opts = qp::LogsOptions {
            follow,
            stdout: true,
            stderr: true,
            timestamps: true,
            since: since_s.clamp(0, i32::MAX as i64) as i32,
            ..Default::default()
        };
        let id2 = id.to_string();
        let stream = self.docker.logs(id, Some(opts)).filter_map(move |r| {
            let out = match r {
                Ok(bollard::container::LogOutput::StdOut { message }) => {
                    Some(Ok(super::LogFrame {
                        stderr: false,
                        bytes: message,
                    }))
                }
                Ok(bollard::container::LogOutput::StdErr { message }) => {
                    Some(Ok(super::LogFrame {
                        stderr: true,
                        bytes: message,
                    }))
                }
                // A TTY container's output comes as one console stream.
                Ok(bollard::container::LogOutput::Console { message }) => {
                    Some(Ok(super::LogFrame {
                        stderr: false,
                        bytes: message,
                    }))
                }
                Ok(_) => None,
                Err(e) => Some(Err(engine_err("read logs of", id2.clone())(e))),
            };
            std::future::ready(out)
        });
        Box::pin(stream)
    }
}

/// The engine's create request for one instance: the pieces below, each one concern.
fn create_body(req: &CreateRequest) -> ContainerCreateBody {
    let s = &req.spec;
    let (port_bindings, exposed) = ports(s);
    let (binds, mounts, tmpfs) = storage(req);
    let restart = restart_policy(s.restart);
    let devices = device_mappings(s);
    let network_mode = match s.network_mode {
        NetworkMode::Bridge => req.network.clone(),
        NetworkMode::Host => Some("host".into()),
        NetworkMode::None => Some("none".into()),
    };
    let host_config = HostConfig {
        port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
        binds: (!binds.is_empty()).then_some(binds),
        mounts: (!mounts.is_empty()).then_some(mounts),
        tmpfs: (!tmpfs.is_empty()).then_some(tmpfs),
        restart_policy: Some(BRestart {
            name: Some(restart.0),
            maximum_retry_count: restart.1,
        }),
        network_mode,
        privileged: Some(s.privileged),
        cap_add: (!s.cap_add.is_empty()).then(|| s.cap_add.clone()),
        security_opt: (!s.security_opt.is_empty()).then(|| s.security_opt.clone()),
        pids_limit: s.pids_limit,
        cap_drop: (!s.cap_drop.is_empty()).then(|| s.cap_drop.clone()),
        devices: (!devices.is_empty()).then_some(devices),
        device_requests: device_requests(s),
        dns: (!s.dns.is_empty()).then(|| s.dns.clone()),
        dns_search: (!s.dns_search.is_empty()).then(|| s.dns_search.clone()),
        dns_options: (!s.dns_opt.is_empty()).then(|| s.dns_opt.clone()),
        extra_hosts: (!s.extra_hosts.is_empty()).then(|| s.extra_hosts.clone()),
        memory: s.mem_limit,
        memory_swap: s.memswap_limit,
        cpu_shares: s.cpu_shares,
        nano_cpus: s.nano_cpus,
        cpuset_cpus: s.cpuset.clone(),
        oom_kill_disable: s.oom_kill_disable.then_some(true),
        ulimits: (!s.ulimits.is_empty()).then(|| {
            s.ulimits
                .iter()
                .map(|u| ResourcesUlimits {
                    name: Some(u.name.clone()),
                    soft: Some(u.soft),
                    hard: Some(u.hard),
                })
                .collect()
        }),
        init: s.init,
        cpu_period: s.engine.cpu_period,
        cpu_quota: s.engine.cpu_quota,
        cpu_realtime_period: s.engine.cpu_rt_period,
        cpu_realtime_runtime: s.engine.cpu_rt_runtime,
        memory_reservation: s.engine.mem_reservation,
        memory_swappiness: s.engine.mem_swappiness,
        oom_score_adj: s.engine.oom_score_adj,
        group_add: (!s.engine.group_add.is_empty()).then(|| s.engine.group_add.clone()),
        runtime: s.engine.runtime.clone(),
        storage_opt: (!s.engine.storage_opt.is_empty())
            .then(|| s.engine.storage_opt.clone().into_iter().collect()),
        device_cgroup_rules: (!s.engine.device_cgroup_rules.is_empty())
            .then(|| s.engine.device_cgroup_rules.clone()),
        annotations: (!s.engine.annotations.is_empty())
            .then(|| s.engine.annotations.clone().into_iter().collect()),
        readonly_rootfs: Some(s.read_only),
        shm_size: s.shm_size,
        sysctls: (!s.sysctls.is_empty()).then(|| s.sysctls.clone().into_iter().collect()),
        log_config: s.logging.as_ref().map(|l| HostConfigLogConfig {
            typ: Some(l.driver.clone()),
            config: Some(l.options.clone().into_iter().collect()),
        }),
        ..Default::default()
    };
    let networking_config = match (s.network_mode, &req.network) {
        (NetworkMode::Bridge, Some(net)) => Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                net.clone(),
                EndpointSettings {
                    aliases: Some(req.aliases.clone()),
                    links: (!s.external_links.is_empty()).then(|| {
                        s.external_links
                            .iter()
                            .map(|l| format!("{}:{}", l.target, l.alias))
                            .collect()
                    }),
                    ..Default::default()
                },
            )])),
        }),
        _ => None,
    };
    let ns = |ms: u64| (ms as i64).saturating_mul(1_000_000);
    ContainerCreateBody {
        image: Some(s.image.clone()),
        cmd: s.command.clone(),
        entrypoint: s.entrypoint.clone(),
        env: Some(
            s.environment
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
        ),
        labels: Some(berth_labels(req).into_iter().collect()),
        hostname: s.hostname.clone(),
        domainname: s.engine.domainname.clone(),
        working_dir: s.working_dir.clone(),
        user: s.user.clone(),
        tty: Some(s.tty),
        open_stdin: Some(s.stdin_open),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        stop_signal: s.stop_signal.clone(),
        stop_timeout: s.stop_grace_period_ms.map(|ms| (ms / 1000) as i64),
        healthcheck: s.healthcheck.as_ref().map(|h| HealthConfig {
            test: Some(h.test.clone()),
            interval: h.interval_ms.map(ns),
            timeout: h.timeout_ms.map(ns),
            retries: h.retries.map(i64::from),
            start_period: h.start_period_ms.map(ns),
            start_interval: None,
        }),
        host_config: Some(host_config),
        networking_config,
        ..Default::default()
    }
}

/// Published ports (`80/tcp` -> host bindings) and the exposed ones.
#[allow(clippy::type_complexity)]
fn ports(s: &ServiceSpec) -> (HashMap<String, Option<Vec<PortBinding>>>, Vec<String>) {
    let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    let mut exposed: Vec<String> = Vec::new();
    for p in &s.ports {
        let key = format!("{}/{}", p.container_port, p.protocol.as_str());
        port_bindings
            .entry(key.clone())
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: p.host_ip.clone(),
                host_port: Some(p.host_port.map(|h| h.to_string()).unwrap_or_default()),
            });
        exposed.push(key);
    }
    for e in &s.expose {
        exposed.push(format!("{e}/tcp"));
    }
    exposed.sort();
    exposed.dedup();
    (port_bindings, exposed)
}

/// Binds, engine mounts and tmpfs mounts: volumes (berth-mounted ones bound in, engine
/// volumes by their resolved names), secrets and configs as read-only file binds, `tmpfs`.
fn storage(req: &CreateRequest) -> (Vec<String>, Vec<Mount>, HashMap<String, String>) {
    let s = &req.spec;
    let mut binds = Vec::new();
    let mut mounts = Vec::new();
    let mut tmpfs: HashMap<String, String> = HashMap::new();
    for m in &s.volumes {
        match m.kind {
            MountKind::Bind => {
                let ro = m.read_only.then_some("ro");
                let mode = ro.into_iter().chain(m.options.iter().map(String::as_str));
                binds.push(bind(&m.source, &m.target, mode));
            }
            MountKind::Volume
                if let Some(VolumeSource::Host(path)) = req.volumes.get(&m.source) =>
            {
                // Mounted by berth on the host: bound in. A bind never copies the image's
                // files over it, so `:nocopy` holds by itself.
                mounts.push(Mount {
                    target: Some(m.target.clone()),
                    source: Some(path.clone()),
                    typ: Some(MountType::BIND),
                    read_only: Some(m.read_only),
                    ..Default::default()
                })
            }
            MountKind::Volume | MountKind::Anonymous => mounts.push(Mount {
                target: Some(m.target.clone()),
                // Named: the engine volume `volume_sources` resolved (a template
                // declares every named volume it mounts).
                source: (m.kind == MountKind::Volume).then(|| match req.volumes.get(&m.source) {
                    Some(VolumeSource::Engine(n)) => n.clone(),
                    _ => m.source.clone(),
                }),
                typ: Some(MountType::VOLUME),
                read_only: Some(m.read_only),
                volume_options: Some(MountVolumeOptions {
                    no_copy: Some(m.nocopy),
                    labels: Some(HashMap::from([
                        (labels::NODE.to_string(), req.node.clone()),
                        (labels::APP.to_string(), req.app.clone()),
                    ])),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            MountKind::Tmpfs => {
                tmpfs.insert(m.target.clone(), m.options.join(","));
            }
        }
    }
    // Secrets and configs: read-only binds of their files, as compose without a swarm.
    for f in s.secrets.iter().chain(&s.configs) {
        match &f.source {
            crate::model::FileSource::File(p) => binds.push(bind(p, &f.target, ["ro"])),
            // A deploy writes every value and points the spec at the file first.
            crate::model::FileSource::Value { .. } => {
                tracing::error!(name = %f.name, "secret value not written: not mounted")
            }
        }
    }
    for t in &s.tmpfs {
        let (path, opts) = t.split_once(':').unwrap_or((t.as_str(), ""));
        tmpfs.insert(path.to_string(), opts.to_string());
    }
    (binds, mounts, tmpfs)
}

/// The engine's restart policy for a service's `restart` (the one-shot rule is the engine's
/// on-failure: a crash comes back at once, an exit 0 stays; berth starts what a reboot
/// stopped).
fn restart_policy(r: RestartPolicy) -> (RestartPolicyNameEnum, Option<i64>) {
    match r {
        RestartPolicy::No => (RestartPolicyNameEnum::NO, None),
        RestartPolicy::Always => (RestartPolicyNameEnum::ALWAYS, None),
        RestartPolicy::UnlessStopped => (RestartPolicyNameEnum::UNLESS_STOPPED, None),
        // The engine brings a crash back at once; an exit 0 stays (the one-shot rule);
        // berth itself starts what a reboot stopped.
        RestartPolicy::UnlessCompleted => (RestartPolicyNameEnum::ON_FAILURE, None),
        RestartPolicy::OnFailure { max_retries } => (
            RestartPolicyNameEnum::ON_FAILURE,
            max_retries.map(i64::from),
        ),
    }
}

/// `devices:` entries (`HOST[:CONTAINER[:PERMISSIONS]]`).
fn device_mappings(s: &ServiceSpec) -> Vec<DeviceMapping> {
    s.devices
        .iter()
        .map(|d| {
            let mut parts = d.splitn(3, ':');
            let host = parts.next().unwrap_or_default().to_string();
            let cont = parts
                .next()
                .map(str::to_string)
                .unwrap_or_else(|| host.clone());
            DeviceMapping {
                path_on_host: Some(host),
                path_in_container: Some(cont),
                cgroup_permissions: Some(parts.next().unwrap_or("rwm").to_string()),
            }
        })
        .collect()
}

/// The engine's device requests: the `berth.gpu` label's GPUs and compose's
/// `deploy.resources.reservations.devices` (a count, `all` as -1, or device ids).
fn device_requests(s: &ServiceSpec) -> Option<Vec<DeviceRequest>> {
    let mut out: Vec<DeviceRequest> = s
        .device_requests
        .iter()
        .map(|r| DeviceRequest {
            driver: r.driver.clone(),
            count: match (r.count, r.device_ids.is_empty()) {
                (Some(n), _) => Some(i64::from(n)),
                (None, true) => Some(-1),
                (None, false) => None,
            },
            device_ids: (!r.device_ids.is_empty()).then(|| r.device_ids.clone()),
            capabilities: Some(vec![r.capabilities.clone()]),
            options: (!r.options.is_empty()).then(|| r.options.clone().into_iter().collect()),
        })
        .collect();
    if s.ext.gpu > 0 {
        out.push(DeviceRequest {
            driver: Some("nvidia".into()),
            count: Some(i64::from(s.ext.gpu)),
            capabilities: Some(vec![vec!["gpu".into()]]),
            ..Default::default()
        });
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_refs_split_like_the_engine() {
        assert_eq!(split_image("redis"), ("redis".into(), "latest".into()));
        assert_eq!(split_image("mysql:5.6"), ("mysql".into(), "5.6".into()));
        assert_eq!(
            split_image("reg:5000/app"),
            ("reg:5000/app".into(), "latest".into())
        );
        assert_eq!(
            split_image("reg:5000/app:1"),
            ("reg:5000/app".into(), "1".into())
        );
    }

    #[test]
    fn exit_codes_come_from_the_status() {
        assert_eq!(
            exit_code_from_status("Exited (137) 2 seconds ago"),
            Some(137)
        );
        assert_eq!(exit_code_from_status("Up 3 seconds"), None);
    }

    #[test]
    fn device_requests_as_compose_passes_them() {
        let mut s = ServiceSpec::default();
        assert!(device_requests(&s).is_none());
        s.device_requests = vec![
            crate::model::DeviceRequestSpec {
                driver: Some("nvidia".into()),
                count: None,
                device_ids: vec![],
                capabilities: vec!["gpu".into()],
                options: Default::default(),
            },
            crate::model::DeviceRequestSpec {
                driver: None,
                count: None,
                device_ids: vec!["0".into(), "3".into()],
                capabilities: vec!["gpu".into(), "utility".into()],
                options: Default::default(),
            },
        ];
        s.ext.gpu = 2;
        let r = device_requests(&s).expect("requests");
        assert_eq!(r.len(), 3);
        // `count: all` is -1 to the engine; device ids go without a count.
        assert_eq!((r[0].count, r[0].device_ids.clone()), (Some(-1), None));
        assert_eq!(r[1].count, None);
        assert_eq!(
            r[1].device_ids.as_deref(),
            Some(&["0".to_string(), "3".to_string()][..])
        );
        assert_eq!(
            r[1].capabilities,
            Some(vec![vec!["gpu".to_string(), "utility".to_string()]])
        );
        assert_eq!(r[2].count, Some(2));
    }

    /// A template's service as the engine's create request: one instance, a berth-mounted
    /// volume and an engine volume.
    fn body_of(yaml: &str) -> ContainerCreateBody {
        let spec =
            crate::spec::parse(yaml, "shop", &crate::spec::Inputs::default()).expect("template");
        let svc = (*spec.services["web"]).clone();
        let req = CreateRequest {
            node: "n1".into(),
            app: "shop".into(),
            service: "web".into(),
            slot: 2,
            spec_hash: "h".into(),
            version: 3,
            spec: svc,
            network: Some("berth-shop".into()),
            owner: String::new(),
            job: None,
            aliases: vec!["web".into(), "www".into()],
            volumes: BTreeMap::from([
                (
                    "media".into(),
                    crate::model::VolumeSource::Host("/var/lib/berth/volumes/media".into()),
                ),
                (
                    "db".into(),
                    crate::model::VolumeSource::Engine("shop_db".into()),
                ),
            ]),
            compose: false,
        };
        create_body(&req)
    }

    #[test]
    fn a_service_becomes_the_engines_create_request() {
        let b = body_of(
            "services:\n  web:\n    image: nginx:1.27\n    command: [\"nginx\", \"-g\", \"daemon off;\"]\n    environment: {A: \"1\"}\n    ports: [\"8080:80\", \"127.0.0.1::443/udp\"]\n    expose: [9000]\n    volumes: [\"media:/media:ro\", \"db:/db\", \"/etc/x:/x:rslave\", {type: tmpfs, target: /run, tmpfs: {size: 1024}}]\n    tmpfs: [\"/tmp:size=64m\"]\n    restart: on-failure:4\n    devices: [\"/dev/fuse\"]\n    mem_limit: 64m\n    pids_limit: 50\n    healthcheck:\n      test: [\"CMD\", \"true\"]\n      interval: 2s\n    stop_grace_period: 3s\nvolumes:\n  media:\n    driver: oss\n    driver_opts: {bucket: media, endpoint: \"http://127.0.0.1:9000\", access_key: a, secret_key: s}\n  db: {}\n",
        );
        assert_eq!(b.image.as_deref(), Some("nginx:1.27"));
        assert_eq!(b.env, Some(vec!["A=1".to_string()]));
        assert_eq!(
            b.exposed_ports,
            Some(vec!["443/udp".into(), "80/tcp".into(), "9000/tcp".into()])
        );
        assert_eq!(b.stop_timeout, Some(3));
        assert_eq!(
            b.healthcheck.as_ref().and_then(|h| h.interval),
            Some(2_000_000_000)
        );
        let labels = b.labels.as_ref().expect("labels");
        assert_eq!(labels[labels::APP], "shop");
        assert_eq!(labels[labels::SLOT], "2");
        let h = b.host_config.as_ref().expect("host config");
        let pb = h.port_bindings.as_ref().expect("ports");
        assert_eq!(
            pb["80/tcp"].as_ref().expect("80")[0].host_port.as_deref(),
            Some("8080")
        );
        assert_eq!(
            pb["443/udp"].as_ref().expect("443")[0].host_ip.as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(h.binds, Some(vec!["/etc/x:/x:rslave".to_string()]));
        let mounts = h.mounts.as_ref().expect("mounts");
        // The berth-mounted volume is bound in read-only; the engine volume by its name.
        assert_eq!(
            (
                mounts[0].source.as_deref(),
                mounts[0].typ,
                mounts[0].read_only
            ),
            (
                Some("/var/lib/berth/volumes/media"),
                Some(MountType::BIND),
                Some(true)
            )
        );
        assert_eq!(
            (mounts[1].source.as_deref(), mounts[1].typ),
            (Some("shop_db"), Some(MountType::VOLUME))
        );
        let tmpfs = h.tmpfs.as_ref().expect("tmpfs");
        assert_eq!(tmpfs["/tmp"], "size=64m");
        assert!(tmpfs.contains_key("/run"), "{tmpfs:?}");
        let r = h.restart_policy.as_ref().expect("restart");
        assert_eq!(
            (r.name, r.maximum_retry_count),
            (Some(RestartPolicyNameEnum::ON_FAILURE), Some(4))
        );
        assert_eq!(
            h.devices.as_ref().expect("devices")[0]
                .path_in_container
                .as_deref(),
            Some("/dev/fuse")
        );
        assert_eq!((h.memory, h.pids_limit), (Some(64 << 20), Some(50)));
        assert_eq!(h.network_mode.as_deref(), Some("berth-shop"));
        let eps = b
            .networking_config
            .as_ref()
            .and_then(|n| n.endpoints_config.as_ref())
            .expect("endpoints");
        assert_eq!(
            eps["berth-shop"].aliases,
            Some(vec!["web".to_string(), "www".to_string()])
        );
    }

    #[test]
    fn restart_policies_as_the_engine_takes_them() {
        assert_eq!(
            restart_policy(RestartPolicy::UnlessCompleted),
            (RestartPolicyNameEnum::ON_FAILURE, None)
        );
        assert_eq!(
            restart_policy(RestartPolicy::UnlessStopped),
            (RestartPolicyNameEnum::UNLESS_STOPPED, None)
        );
        assert_eq!(
            restart_policy(RestartPolicy::No),
            (RestartPolicyNameEnum::NO, None)
        );
        // Host networking: no network to join, no endpoint settings.
        let b = body_of("services:\n  web:\n    image: a\n    network_mode: host\n");
        let h = b.host_config.as_ref().expect("host config");
        assert_eq!(h.network_mode.as_deref(), Some("host"));
        assert!(b.networking_config.is_none());
        assert_eq!(
            h.restart_policy.as_ref().and_then(|r| r.name),
            Some(RestartPolicyNameEnum::ON_FAILURE)
        );
    }
}
