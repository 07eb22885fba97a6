//! `berth cluster ...`, `berth nodes` and `berth node ...`.

use super::client::Client;
use super::output::{age, table};
use crate::wire::{InitReport, JoinReport, JoinRequest, NodeView, TokenReply, TokenRequest};
use anyhow::{Result, bail};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Make this host the first member of a new cluster (creates the cluster secret in the
    /// data dir, mode 0600); run again, it only says which cluster this is.
    Init,
    /// Join tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Join the cluster a token names, through any member it lists.
    Join {
        /// The join token (`berth cluster token create` prints it). Its own id: the global
        /// `--token` is the API token.
        #[arg(id = "join_token", value_name = "TOKEN")]
        token: String,
        /// The IP:PORT the other members reach this host at (default: the agent's
        /// `[cluster] advertise`, else its address toward the default route).
        #[arg(long)]
        advertise: Option<std::net::SocketAddr>,
    },
    /// Say goodbye to the cluster and forget it; this host's apps keep running here.
    Leave,
    /// A new cluster key on every member, then sealing with it, then the old one retired.
    RotateKey,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a join token.
    Create {
        /// How long it is valid: 1m to 30d (like 1h, 7d).
        #[arg(long, default_value = "1h")]
        ttl: String,
        /// How many hosts may join with it.
        #[arg(long, default_value_t = 1)]
        uses: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Forget a member that is lost or left (refused while it is alive).
    Rm { name: String },
    /// Set a node's labels (`az=2 disk=ssd`); `KEY-` removes one.
    Label {
        name: String,
        #[arg(required = true, value_name = "KEY=VALUE|KEY-")]
        labels: Vec<String>,
    },
    /// Place no new instances on a node (what runs there keeps running).
    Drain { name: String },
    /// Place instances on a node again.
    Undrain { name: String },
}

/// `az=2` sets, `az-` removes.
fn label_request(args: &[String]) -> Result<crate::wire::LabelRequest> {
    let mut req = crate::wire::LabelRequest::default();
    for a in args {
        if let Some((k, v)) = a.split_once('=') {
            req.set.insert(k.trim().to_string(), v.to_string());
        } else if let Some(k) = a.strip_suffix('-') {
            req.remove.push(k.to_string());
        } else {
            bail!("{a:?}: write KEY=VALUE to set a label, or KEY- to remove one");
        }
    }
    Ok(req)
}

/// `1h`, `30m`, `7d`, `90s`.
fn ttl_seconds(s: &str) -> Result<u64> {
    let s = s.trim();
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = match n.parse() {
        Ok(n) => n,
        Err(_) => bail!("--ttl {s:?}: write a number and a unit, like 1h, 30m or 7d"),
    };
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" | "" => 3600,
        "d" => 86_400,
        _ => bail!("--ttl {s:?}: the unit is s, m, h or d (like 1h)"),
    };
    Ok(n.saturating_mul(mult))
}

pub fn cluster(client: &Client, cmd: ClusterCommand) -> Result<()> {
    match cmd {
        ClusterCommand::Init => {
            let r: InitReport = client.post("/v1/cluster/init", &serde_json::json!({}))?;
            if r.created {
                println!(
                    "cluster {} created; this host is its first member",
                    r.cluster
                );
            } else {
                println!("this host is already in cluster {}", r.cluster);
            }
            println!("members reach it at {}", r.advertise);
            println!(
                "add a host: berth cluster token create, then on it: berth cluster join TOKEN"
            );
        }
        ClusterCommand::Token(TokenCommand::Create { ttl, uses }) => {
            let req = TokenRequest {
                ttl_s: ttl_seconds(&ttl)?,
                uses,
            };
            let r: TokenReply = client.post("/v1/cluster/tokens", &req)?;
            println!("{}", r.token);
        }
        ClusterCommand::Join { token, advertise } => {
            let r: JoinReport = client.post(
                "/v1/cluster/join",
                &JoinRequest {
                    token: token.trim().to_string(),
                    advertise,
                },
            )?;
            println!(
                "joined cluster {} through {} ({} members known)",
                r.cluster, r.through, r.members
            );
        }
        ClusterCommand::RotateKey => {
            let r: crate::wire::RotateReport =
                client.post("/v1/cluster/rotate-key", &serde_json::json!({}))?;
            println!(
                "cluster key rotated: every member ({} besides this host) now seals with key {}",
                r.members.len(),
                r.key
            );
        }
        ClusterCommand::Leave => {
            let _: serde_json::Value = client.post("/v1/cluster/leave", &serde_json::json!({}))?;
            println!("left the cluster; this host's apps keep running here");
        }
    }
    Ok(())
}

pub fn nodes(client: &Client, json: bool) -> Result<()> {
    let nodes: Vec<NodeView> = client.get("/v1/nodes")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&nodes)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            let labels: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            vec![
                if n.me {
                    format!("{} *", n.name)
                } else {
                    n.name.clone()
                },
                n.address.to_string(),
                if n.drain {
                    format!("{} (drained)", n.state)
                } else {
                    n.state.clone()
                },
                if labels.is_empty() {
                    "-".into()
                } else {
                    labels.join(",")
                },
                match (n.cpus, n.cpu_percent) {
                    (0, _) => "?".into(),
                    (c, Some(p)) => format!("{p:.0}% of {c}"),
                    (c, None) => format!("? of {c}"),
                },
                if n.mem_total == 0 {
                    "?".into()
                } else {
                    format!(
                        "{} / {}",
                        super::observe::bytes(n.mem_used as f64),
                        super::observe::bytes(n.mem_total as f64)
                    )
                },
                n.instances.to_string(),
                match (n.agent.is_empty(), n.protocol) {
                    (true, _) => "?".into(),
                    (false, 0) => n.agent.clone(),
                    // The cluster protocol it speaks beside its version.
                    (false, p) => format!("{} (p{p})", n.agent),
                },
                if n.me {
                    "now".into()
                } else {
                    age(n.seen_ms / 1000)
                },
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "ADDRESS",
            "STATE",
            "LABELS",
            "CPU",
            "MEM",
            "INSTANCES",
            "AGENT",
            "SEEN",
        ],
        &rows,
    );
    let versions: std::collections::BTreeSet<&str> = nodes
        .iter()
        .map(|n| n.agent.as_str())
        .filter(|a| !a.is_empty())
        .collect();
    if versions.len() > 2 {
        eprintln!(
            "warning: the cluster runs {} agent versions ({}): upgrade the oldest hosts; one release apart is what works together",
            versions.len(),
            versions.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    Ok(())
}

pub fn node(client: &Client, cmd: NodeCommand) -> Result<()> {
    match cmd {
        NodeCommand::Rm { name } => {
            let _: serde_json::Value = client.delete(&format!("/v1/nodes/{name}"))?;
            println!("node {name} removed from the member list");
        }
        NodeCommand::Label { name, labels } => {
            let s: crate::wire::NodeSettings =
                client.post(&format!("/v1/nodes/{name}/label"), &label_request(&labels)?)?;
            let shown: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!("node {name} labels: {}", shown.join(" "));
        }
        NodeCommand::Drain { name } => {
            let _: crate::wire::NodeSettings =
                client.post(&format!("/v1/nodes/{name}/drain"), &serde_json::json!({}))?;
            println!("node {name} drained: no new instances are placed there");
        }
        NodeCommand::Undrain { name } => {
            let _: crate::wire::NodeSettings =
                client.post(&format!("/v1/nodes/{name}/undrain"), &serde_json::json!({}))?;
            println!("node {name} undrained");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn ttls_read_like_durations() {
        assert_eq!(super::ttl_seconds("1h").unwrap(), 3600);
        assert_eq!(super::ttl_seconds("7d").unwrap(), 604_800);
        assert_eq!(super::ttl_seconds("90s").unwrap(), 90);
        assert_eq!(super::ttl_seconds("2").unwrap(), 7200);
        assert!(super::ttl_seconds("soon").is_err());
        assert!(
            super::ttl_seconds("1w")
                .unwrap_err()
                .to_string()
                .contains("unit")
        );
    }
}
