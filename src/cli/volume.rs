//! `berth volume ...` and `berth system prune`.

use super::client::Client;
use super::output::{table, time_ms};
use crate::wire::{SystemPruneReport, VolumeCreateRequest, VolumeView};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a volume: local (an engine volume), oss (an S3-compatible bucket over FUSE) or
    /// nas (an NFS export).
    Create(CreateArgs),
    /// List volumes: driver, options (credentials masked), mount point, state, users.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Show one volume (credentials masked).
    Inspect { name: String },
    /// Remove a volume (refused while a container uses it).
    Rm { name: String },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    pub name: String,
    /// local, oss or nas.
    #[arg(long, default_value = "local")]
    pub driver: String,
    /// A driver option, KEY=VALUE (repeat it). oss: endpoint, bucket, path, access_key,
    /// secret_key, cache, other_opts. nas: server, path, subdir, vers, mode, options.
    #[arg(long = "opt", short = 'o', value_name = "KEY=VALUE")]
    pub opts: Vec<String>,
    /// Options from a file, one KEY=VALUE per line (keeps credentials off the command line).
    #[arg(long = "opt-file", value_name = "FILE")]
    pub opt_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Remove unused images and the volumes no app names and no container uses.
    Prune {
        /// Do not ask.
        #[arg(long, short = 'f')]
        force: bool,
    },
}

fn parse_opt(s: &str, opts: &mut BTreeMap<String, String>) -> Result<()> {
    let Some((k, v)) = s.split_once('=') else {
        bail!("option {s:?}: write KEY=VALUE (for example --opt bucket=data)");
    };
    let k = k.trim();
    if k.is_empty() {
        bail!("option {s:?} has no key: write KEY=VALUE");
    }
    opts.insert(k.to_string(), v.to_string());
    Ok(())
}

fn print_view(v: &VolumeView) {
    println!("name:       {}", v.name);
    println!("driver:     {}", v.driver);
    println!("node:       {}", v.node);
    println!("state:      {}", v.state);
    if !v.error.is_empty() {
        println!("error:      {}", v.error);
    }
    println!("mountpoint: {}", v.mountpoint);
    if !v.request_style.is_empty() {
        println!("requests:   {}", v.request_style);
    }
    println!("created:    {}", time_ms(v.created_ms));
    println!("options:");
    for (k, val) in &v.opts {
        println!("  {k}: {val}");
    }
    if !v.apps.is_empty() {
        println!("apps:       {}", v.apps.join(", "));
    }
    println!("used by:");
    for u in &v.used_by {
        let state = if u.running { "running" } else { "stopped" };
        println!("  {} ({state}) at {}", u.container, u.target);
    }
}

pub fn volume(client: &Client, cmd: VolumeCommand) -> Result<()> {
    match cmd {
        VolumeCommand::Create(a) => {
            let mut opts = BTreeMap::new();
            if let Some(f) = &a.opt_file {
                let text = std::fs::read_to_string(f)
                    .with_context(|| format!("cannot read --opt-file {}", f.display()))?;
                for line in text.lines().map(str::trim) {
                    if !line.is_empty() && !line.starts_with('#') {
                        parse_opt(line, &mut opts)?;
                    }
                }
            }
            for o in &a.opts {
                parse_opt(o, &mut opts)?;
            }
            let v: VolumeView = client.post(
                "/v1/volumes",
                &VolumeCreateRequest {
                    name: a.name,
                    driver: a.driver,
                    opts,
                },
            )?;
            println!("{}", v.name);
            Ok(())
        }
        VolumeCommand::Ls { json } => {
            let list: Vec<VolumeView> = client.get("/v1/volumes")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|v| {
                    let name = v.name.clone();
                    let opts: Vec<String> =
                        v.opts.iter().map(|(k, val)| format!("{k}={val}")).collect();
                    let users: Vec<&str> = v.used_by.iter().map(|u| u.container.as_str()).collect();
                    vec![
                        name,
                        v.node.clone(),
                        v.driver.clone(),
                        opts.join(","),
                        v.mountpoint.clone(),
                        v.state.clone(),
                        users.join(","),
                    ]
                })
                .collect();
            table(
                &[
                    "NAME",
                    "NODE",
                    "DRIVER",
                    "OPTIONS",
                    "MOUNTPOINT",
                    "STATE",
                    "USED BY",
                ],
                &rows,
            );
            Ok(())
        }
        VolumeCommand::Inspect { name } => {
            let v: VolumeView = client.get(&format!("/v1/volumes/{name}"))?;
            print_view(&v);
            Ok(())
        }
        VolumeCommand::Rm { name } => {
            let _: serde_json::Value = client.delete(&format!("/v1/volumes/{name}"))?;
            println!("removed {name}");
            Ok(())
        }
    }
}

pub fn system(client: &Client, cmd: SystemCommand) -> Result<()> {
    match cmd {
        SystemCommand::Prune { force } => {
            if !force {
                let stdin = std::io::stdin();
                if !stdin.is_terminal() {
                    bail!(
                        "berth system prune removes unused images and every volume no app names (their data too): run it in a terminal to confirm, or pass --force"
                    );
                }
                print!(
                    "This removes unused images and every volume no app names and no container uses, with its data. Continue? [y/N] "
                );
                std::io::stdout().flush()?;
                let mut answer = String::new();
                stdin.lock().read_line(&mut answer)?;
                if !matches!(answer.trim(), "y" | "Y" | "yes") {
                    println!("nothing removed");
                    return Ok(());
                }
            }
            let r: SystemPruneReport = client.post("/v1/system/prune", &serde_json::json!({}))?;
            println!(
                "deleted {} images ({} bytes reclaimed), {} volumes{}",
                r.images.len(),
                r.space_reclaimed,
                r.volumes.len(),
                if r.volumes.is_empty() {
                    String::new()
                } else {
                    format!(": {}", r.volumes.join(", "))
                }
            );
            Ok(())
        }
    }
}
