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

impl Ops {
    /// The engine, for an exec session's resizes and exit code.
    pub fn runtime(&self) -> std::sync::Arc<dyn crate::runtime::ContainerRuntime> {
        self.core.runtime.clone()
    }

    /// The running container of `app/service` (slot `slot`, else the lowest running slot)
    /// on this host; a container on another member is named with where it runs.
    pub async fn exec_target(
        &self,
        app: &str,
        service: &str,
        slot: Option<u32>,
    ) -> Result<ExecTarget, CoreError> {
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
            return Err(CoreError::Conflict(format!(
                "{} runs on member {}: run `berth exec` against that member's API (--api), this one reaches only its own containers",
                i.name, i.node
            )));
        }
        Ok(ExecTarget {
            id: i.container_id,
            name: i.name,
        })
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
