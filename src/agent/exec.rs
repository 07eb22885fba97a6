//! `berth exec` and the console's terminal in the agent: which container a request means
//! (a service's slot, else its first running one), the command started in it with its streams
//! attached, and an event naming who ran what where.

use super::{CoreError, Ops};
use crate::runtime::{ExecSession, ExecSpec};

/// The container an exec runs in.
#[derive(Debug, Clone)]
pub struct ExecTarget {
    pub id: String,
    pub name: String,
}

/// Where an exec runs: in a container here, or on another member (carried there over the
/// cluster's peer channel).
#[derive(Debug, Clone)]
pub enum ExecWhere {
    Here(ExecTarget),
    Member {
        node: String,
        name: String,
        slot: u32,
    },
}

impl Ops {
    /// The engine, for an exec session's resizes and exit code.
    pub fn runtime(&self) -> std::sync::Arc<dyn crate::runtime::ContainerRuntime> {
        self.core.runtime.clone()
    }

    /// The running container of `app/service` (slot `slot`, else the lowest running slot,
    /// this host's first), here or on another member.
    pub async fn exec_target(
        &self,
        app: &str,
        service: &str,
        slot: Option<u32>,
    ) -> Result<ExecWhere, CoreError> {
        let all = self.ps(Some(app)).await?;
        if !all.iter().any(|i| i.service == service) {
            return Err(CoreError::NotFound(format!(
                "{app} has no container of a service {service:?}: `berth ps {app}` lists them"
            )));
        }
        let mut running: Vec<_> = all
            .into_iter()
            .filter(|i| i.service == service && i.state == "running")
            .filter(|i| slot.is_none_or(|n| n == i.slot))
            .collect();
        running.sort_by_key(|i| (i.node != self.core.node_name, i.slot));
        let Some(i) = running.into_iter().next() else {
            return Err(CoreError::Conflict(match slot {
                Some(n) => {
                    format!("{app}/{service}/{n} is not running: `berth ps {app}` shows its state")
                }
                None => format!(
                    "no container of {app}/{service} is running: `berth ps {app}` shows their state"
                ),
            }));
        };
        if i.node != self.core.node_name && !i.node.is_empty() {
            return Ok(ExecWhere::Member {
                node: i.node,
                name: i.name,
                slot: i.slot,
            });
        }
        Ok(ExecWhere::Here(ExecTarget {
            id: i.container_id,
            name: i.name,
        }))
    }

    /// The container another member asks to exec in: it must run here (no second hop).
    pub async fn exec_target_here(
        &self,
        app: &str,
        service: &str,
        slot: Option<u32>,
    ) -> Result<ExecTarget, CoreError> {
        match self.exec_target(app, service, slot).await? {
            ExecWhere::Here(t) => Ok(t),
            ExecWhere::Member { name, node, .. } => Err(CoreError::Conflict(format!(
                "{name} no longer runs on this host (it runs on {node}): run the command again"
            ))),
        }
    }

    /// Opens an exec session on the member that runs the container: the stream carries the
    /// session's WebSocket bytes to it.
    pub async fn exec_on_member(
        &self,
        node: &str,
        app: &str,
        service: &str,
        open: crate::cluster::tunnel::ExecOpen,
    ) -> Result<crate::cluster::tunnel::Stream, CoreError> {
        self.cluster()
            .open_exec(node, app, service, open)
            .await
            .map_err(|e| CoreError::Conflict(format!("exec on member {node}: {e}")))
    }

    /// Starts the command (an event says who ran it, where).
    pub async fn exec_start(
        &self,
        app: &str,
        service: &str,
        target: &ExecTarget,
        spec: ExecSpec,
        who: &str,
    ) -> Result<ExecSession, CoreError> {
        let shown: Vec<String> = spec
            .cmd
            .iter()
            .map(|a| {
                let a: String = a.chars().take(200).collect();
                if a.contains(char::is_whitespace) || a.is_empty() {
                    format!("{a:?}")
                } else {
                    a
                }
            })
            .collect();
        let tty = spec.tty;
        let session = self.core.runtime.exec_attached(&target.id, spec).await?;
        self.core.event(
            crate::model::EventKind::Exec,
            app,
            service,
            &format!(
                "exec in {} by {who}{}: {}",
                target.name,
                if tty { " (tty)" } else { "" },
                shown.join(" ")
            ),
        );
        Ok(session)
    }
}
