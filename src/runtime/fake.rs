//! An in-memory engine for in-process agent tests (`tests/inproc.rs`): records every call,
//! can be told to fail, pulls what its registry holds.

use super::*;
use crate::model::{AppNetwork, InstanceState, labels};
use std::collections::BTreeSet;
use std::sync::Mutex;

#[derive(Default)]
pub struct FakeRuntime {
    pub state: Mutex<FakeState>,
}

#[derive(Default)]
pub struct FakeState {
    pub containers: Vec<(Instance, String)>, // (instance, node)
    /// (node, network).
    pub networks: Vec<(String, AppNetwork)>,
    pub images: BTreeSet<String>,
    /// What a pull finds ([`FakeRuntime::publish`]); other images cannot be pulled.
    pub registry: BTreeSet<String>,
    /// How long each create takes (a slow engine), in ms.
    pub create_delay_ms: u64,
    pub calls: Vec<String>,
    /// Holders by node.
    pub holders: Vec<(String, super::Holder)>,
    /// Calls whose name starts with one of these fail.
    pub fail: Vec<String>,
    next_id: u64,
}

impl FakeRuntime {
    pub fn new() -> Self {
        Self::default()
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn call(&self, c: String) -> Result<(), RuntimeError> {
        let mut s = self.lock();
        let failing = s.fail.iter().any(|f| c.starts_with(f.as_str()));
        s.calls.push(c.clone());
        if failing {
            return Err(RuntimeError::Engine {
                op: "fake",
                object: c,
                detail: "injected failure".into(),
            });
        }
        Ok(())
    }
    /// Puts images in the registry a pull reads.
    pub fn publish(&self, images: &[&str]) {
        self.lock()
            .registry
            .extend(images.iter().map(|i| i.to_string()));
    }
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }
    /// Simulates a container dying (from outside).
    pub fn kill(&self, name: &str) {
        for (i, _) in self
            .lock()
            .containers
            .iter_mut()
            .filter(|(i, _)| i.name == name)
        {
            i.state = InstanceState::Exited;
            i.exit_code = Some(137);
        }
    }
    /// Simulates a container's process ending by itself with `code` (a job's task).
    pub fn exit(&self, name: &str, code: i64) {
        for (i, _) in self
            .lock()
            .containers
            .iter_mut()
            .filter(|(i, _)| i.name == name)
        {
            i.state = InstanceState::Exited;
            i.exit_code = Some(code);
        }
    }
    pub fn instances(&self) -> Vec<Instance> {
        self.lock()
            .containers
            .iter()
            .map(|(i, _)| i.clone())
            .collect()
    }
}

#[async_trait]
impl ContainerRuntime for FakeRuntime {
    async fn ping(&self) -> Result<String, RuntimeError> {
        Ok("fake".into())
    }
    async fn engine_info(&self) -> Result<super::EngineInfo, RuntimeError> {
        self.call("info".into())?;
        let s = self.lock();
        let running = s
            .containers
            .iter()
            .filter(|(i, _)| i.state == InstanceState::Running)
            .count() as i64;
        Ok(super::EngineInfo {
            name: "fake-host".into(),
            server_version: "0.0-fake".into(),
            n_cpus: 1,
            n_containers: s.containers.len() as i64,
            n_containers_running: running,
            n_containers_stopped: s.containers.len() as i64 - running,
            ..Default::default()
        })
    }
    async fn list(&self, node: &str) -> Result<Vec<Instance>, RuntimeError> {
        Ok(self
            .lock()
            .containers
            .iter()
            .filter(|(_, n)| n == node)
            .map(|(i, _)| i.clone())
            .collect())
    }
    async fn networks(&self, node: &str) -> Result<Vec<AppNetwork>, RuntimeError> {
        Ok(self
            .lock()
            .networks
            .iter()
            .filter(|(n, _)| n == node)
            .map(|(_, a)| a.clone())
            .collect())
    }
    async fn create_network(&self, node: &str, app: &str) -> Result<(), RuntimeError> {
        self.call(format!("create_network {app}"))?;
        let mut s = self.lock();
        s.next_id += 1;
        let id = format!("n{}", s.next_id);
        let created = format!("{:08}", s.next_id);
        s.networks.push((
            node.into(),
            AppNetwork {
                id,
                app: app.into(),
                created,
            },
        ));
        Ok(())
    }
    async fn holders(&self, node: &str) -> Result<Vec<super::Holder>, RuntimeError> {
        Ok(self
            .lock()
            .holders
            .iter()
            .filter(|(n, _)| n == node)
            .map(|(_, h)| h.clone())
            .collect())
    }
    async fn create_holder(
        &self,
        node: &str,
        app: &str,
        service: &str,
        _network: &str,
        aliases: &[String],
    ) -> Result<super::Holder, RuntimeError> {
        self.call(format!("create_holder {app}/{service}"))?;
        let mut s = self.lock();
        s.next_id += 1;
        let h = super::Holder {
            id: format!("h{}", s.next_id),
            app: app.into(),
            service: service.into(),
            pid: 0,
            aliases: aliases.to_vec(),
        };
        s.holders.push((node.into(), h.clone()));
        Ok(h)
    }
    async fn remove_network(&self, id: &str) -> Result<(), RuntimeError> {
        self.call(format!("remove_network {id}"))?;
        self.lock().networks.retain(|(_, n)| n.id != id);
        Ok(())
    }
    async fn create(&self, req: &CreateRequest) -> Result<String, RuntimeError> {
        let name = req.container_name();
        self.call(format!("create {name}"))?;
        let delay = self.lock().create_delay_ms;
        if delay > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        }
        let mut s = self.lock();
        if s.containers.iter().any(|(i, _)| i.name == name) {
            return Err(RuntimeError::NameTaken(name));
        }
        s.next_id += 1;
        let id = format!("c{}", s.next_id);
        let l = berth_labels(req);
        let created = s.next_id as i64;
        s.containers.push((
            Instance {
                id: id.clone(),
                name,
                app: l[labels::APP].clone(),
                service: l[labels::SERVICE].clone(),
                slot: req.slot,
                spec_hash: req.spec_hash.clone(),
                version: crate::model::version_name(&req.service, req.version),
                image: req.spec.image.clone(),
                exposed: req
                    .spec
                    .expose
                    .iter()
                    .copied()
                    .chain(req.spec.ports.iter().map(|p| p.container_port))
                    .collect(),
                state: InstanceState::Created,
                exit_code: None,
                finished_ms: None,
                ports: Vec::new(),
                created,
                status: String::new(),
                ip: String::new(),
                health: Default::default(),
                labels: req
                    .spec
                    .labels
                    .iter()
                    .filter(|(k, _)| !k.starts_with("berth."))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                owner: req.owner.clone(),
                job: req.job,
            },
            req.node.clone(),
        ));
        Ok(id)
    }
    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.call(format!("start {id}"))?;
        for (i, _) in self
            .lock()
            .containers
            .iter_mut()
            .filter(|(i, _)| i.id == id)
        {
            i.state = InstanceState::Running;
        }
        Ok(())
    }
    async fn stop(&self, id: &str, _grace: u32) -> Result<(), RuntimeError> {
        self.call(format!("stop {id}"))?;
        for (i, _) in self
            .lock()
            .containers
            .iter_mut()
            .filter(|(i, _)| i.id == id)
        {
            i.state = InstanceState::Exited;
            i.exit_code = Some(0);
        }
        Ok(())
    }
    async fn remove(&self, id: &str, _volumes: bool) -> Result<(), RuntimeError> {
        self.call(format!("remove {id}"))?;
        self.lock().containers.retain(|(i, _)| i.id != id);
        Ok(())
    }
    async fn rename(&self, id: &str, name: &str) -> Result<(), RuntimeError> {
        self.call(format!("rename {id} {name}"))?;
        let mut s = self.lock();
        if s.containers.iter().any(|(i, _)| i.name == name) {
            return Err(RuntimeError::NameTaken(name.to_string()));
        }
        match s.containers.iter_mut().find(|(i, _)| i.id == id) {
            Some((i, _)) => {
                i.name = name.to_string();
                Ok(())
            }
            None => Err(RuntimeError::NotFound(id.to_string())),
        }
    }
    async fn image_present(&self, image: &str) -> Result<bool, RuntimeError> {
        Ok(self.lock().images.contains(image))
    }
    async fn image_id(&self, image: &str) -> Result<Option<String>, RuntimeError> {
        Ok(self
            .lock()
            .images
            .contains(image)
            .then(|| format!("sha256:fake-{image}")))
    }
    async fn image_exposed(&self, image: &str) -> Result<Vec<String>, RuntimeError> {
        // The fake's images expose nothing; a test names its ports with `-p`.
        if self.lock().images.contains(image) {
            Ok(Vec::new())
        } else {
            Err(RuntimeError::ImageUnavailable {
                image: image.into(),
                detail: "not on the fake host".into(),
            })
        }
    }
    async fn pull(
        &self,
        image: &str,
        _platform: Option<&str>,
        _auth: Option<&super::RegistryAuth>,
    ) -> Result<(), RuntimeError> {
        self.call(format!("pull {image}"))?;
        let mut s = self.lock();
        if s.registry.contains(image) {
            s.images.insert(image.into());
            return Ok(());
        }
        Err(RuntimeError::ImageUnavailable {
            image: image.into(),
            detail: "not in the fake registry".into(),
        })
    }
    async fn load_images(&self, _tar: super::TarStream) -> Result<Vec<String>, RuntimeError> {
        self.call("load_images".into())?;
        Ok(Vec::new())
    }
    async fn images(&self) -> Result<Vec<ImageInfo>, RuntimeError> {
        Ok(Vec::new())
    }
    async fn images_in_use(&self) -> Result<BTreeSet<String>, RuntimeError> {
        Ok(BTreeSet::new())
    }
    async fn remove_image(&self, reference: &str) -> Result<(), RuntimeError> {
        self.call(format!("remove_image {reference}"))
    }
    async fn exec(
        &self,
        id: &str,
        cmd: Vec<String>,
        _timeout: std::time::Duration,
        _limit: usize,
    ) -> Result<(i64, String), RuntimeError> {
        self.call(format!("exec {id} {}", cmd.join(" ")))?;
        Ok((0, String::new()))
    }
    async fn exec_attached(
        &self,
        id: &str,
        spec: super::ExecSpec,
    ) -> Result<super::ExecSession, RuntimeError> {
        self.call(format!("exec_attached {id} {}", spec.cmd.join(" ")))?;
        // The command "echoes" its input back on stdout, then ends (exit 0) with it.
        let (theirs, mut ours) = tokio::io::duplex(64 * 1024);
        let (reader, writer) = tokio::io::split(theirs);
        drop(reader);
        let _ = &mut ours;
        let output = futures_util::stream::unfold(ours, |mut o| async move {
            use tokio::io::AsyncReadExt;
            let mut buf = vec![0u8; 4096];
            match o.read(&mut buf).await {
                Ok(0) | Err(_) => None,
                Ok(n) => Some((
                    Ok(super::LogFrame {
                        stderr: false,
                        bytes: bytes::Bytes::copy_from_slice(&buf[..n]),
                    }),
                    o,
                )),
            }
        });
        Ok(super::ExecSession {
            exec_id: format!("fake-exec-{id}"),
            output: Box::pin(output),
            input: Box::pin(writer),
        })
    }
    async fn exec_resize(&self, exec: &str, cols: u16, rows: u16) -> Result<(), RuntimeError> {
        self.call(format!("exec_resize {exec} {cols}x{rows}"))
    }
    async fn exec_exit(&self, exec: &str) -> Result<Option<i64>, RuntimeError> {
        self.call(format!("exec_exit {exec}"))?;
        Ok(Some(0))
    }
    async fn remove_volumes(&self, names: &[String]) -> Result<(), RuntimeError> {
        self.call(format!("remove_volumes {}", names.join(",")))
    }
    async fn create_volume(
        &self,
        name: &str,
        _opts: &BTreeMap<String, String>,
        _labels: &BTreeMap<String, String>,
    ) -> Result<String, RuntimeError> {
        self.call(format!("create_volume {name}"))?;
        Ok(format!("/fake/volumes/{name}"))
    }
    async fn volume_mountpoint(&self, name: &str) -> Result<Option<String>, RuntimeError> {
        Ok(Some(format!("/fake/volumes/{name}")))
    }
    async fn mount_uses(&self) -> Result<Vec<super::MountUse>, RuntimeError> {
        Ok(Vec::new())
    }
    fn events(&self, _node: &str) -> BoxStream<'static, Result<RuntimeEvent, RuntimeError>> {
        Box::pin(futures_util::stream::pending())
    }
    fn save_images(
        &self,
        _refs: &[String],
    ) -> BoxStream<'static, Result<bytes::Bytes, RuntimeError>> {
        Box::pin(futures_util::stream::empty())
    }

    fn logs(
        &self,
        _id: &str,
        _since_s: i64,
        _follow: bool,
    ) -> BoxStream<'static, Result<super::LogFrame, RuntimeError>> {
        Box::pin(futures_util::stream::empty())
    }
}
