//! `berth configset create|ls|show|set|unset|rm|diff|apply`: named sets of variables a
//! deploy binds to with `--config-set` (the seed's config items); secret items are sealed by
//! the agent and never shown.

use super::TemplateArgs;
use super::client::Client;
use super::output::{table, time_ms};
use super::print_json;
use crate::wire::{ConfigApplied, ConfigDiffRow, ConfigSetView, ConfigSetWrite, ConfigUnset};
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum ConfigSetCommand {
    /// Create a set from KEY=VALUE items and/or an env file.
    Create {
        name: String,
        /// Items from a file of KEY=VALUE lines (dotenv rules).
        #[arg(long = "from-env-file", value_name = "FILE")]
        from_env_file: Option<PathBuf>,
        /// An item (repeatable).
        #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// Keep this item's value secret: sealed at rest, masked everywhere (repeatable;
        /// needs the admin role).
        #[arg(long, value_name = "KEY")]
        secret: Vec<String>,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// The sets, their items and the apps bound to each.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// One set's items (secret values masked) and bound apps.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Add or change items; the apps bound to the set are out of date until redeployed.
    Set {
        name: String,
        /// KEY=VALUE items.
        #[arg(required = true, value_name = "KEY=VALUE")]
        items: Vec<String>,
        /// Keep these items secret (repeatable; needs the admin role).
        #[arg(long, value_name = "KEY")]
        secret: Vec<String>,
    },
    /// Remove items.
    Unset {
        name: String,
        #[arg(required = true, value_name = "KEY")]
        keys: Vec<String>,
    },
    /// Remove a set (refused while apps are bound to it).
    Rm { name: String },
    /// Each variable of a template against the set: same, different or missing.
    Diff {
        #[arg(value_name = "NAME")]
        set: String,
        #[command(flatten)]
        template: TemplateArgs,
        #[arg(long)]
        json: bool,
    },
    /// Redeploy every app bound to the set that is out of date, each as a versioned deploy.
    Apply { name: String },
}

fn items(env: &[String]) -> Result<BTreeMap<String, String>> {
    env.iter()
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .with_context(|| format!("{kv:?}: write KEY=VALUE"))?;
            Ok((k.to_string(), v.to_string()))
        })
        .collect()
}

fn show(s: &ConfigSetView) {
    println!("name:        {}", s.name);
    if !s.description.is_empty() {
        println!("description: {}", s.description);
    }
    println!(
        "revision:    {} (changed {})",
        s.revision,
        time_ms(s.updated_ms)
    );
    if !s.node.is_empty() {
        println!("held by:     member {}", s.node);
    }
    let bound: Vec<String> = s
        .bound
        .iter()
        .map(|b| match b.out_of_date {
            true => format!("{} (out of date)", b.app),
            false => b.app.clone(),
        })
        .collect();
    println!(
        "bound:       {}",
        if bound.is_empty() {
            "-".to_string()
        } else {
            bound.join(", ")
        }
    );
    let rows: Vec<Vec<String>> = s
        .items
        .iter()
        .map(|i| {
            vec![
                i.key.clone(),
                i.value.clone(),
                if i.secret { "secret" } else { "" }.into(),
            ]
        })
        .collect();
    table(&["KEY", "VALUE", ""], &rows);
}

/// The rows of a diff as a table.
pub fn print_diff(set: &str, rows: &[ConfigDiffRow]) {
    println!("config set {set} against the template's variables:");
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.variable.clone(),
                r.state.clone(),
                if r.state == "missing" {
                    "-".into()
                } else {
                    r.set_value.clone()
                },
                r.other.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    table(
        &["VARIABLE", "STATE", "IN THE SET", "WITHOUT THE SET"],
        &rows,
    );
}

pub fn configset(client: &Client, cmd: ConfigSetCommand) -> Result<()> {
    match cmd {
        ConfigSetCommand::Create {
            name,
            from_env_file,
            env,
            secret,
            description,
        } => {
            let mut all = BTreeMap::new();
            if let Some(f) = &from_env_file {
                let body = std::fs::read_to_string(f)
                    .with_context(|| format!("cannot read env file {}", f.display()))?;
                let shell = |k: &str| std::env::var(k).ok();
                for (k, v) in crate::spec::parse_dotenv(&body, &f.display().to_string(), &shell)? {
                    all.insert(k, v);
                }
            }
            all.extend(items(&env)?);
            let v: ConfigSetView = client.post(
                "/v1/configsets",
                &ConfigSetWrite {
                    name,
                    description: Some(description),
                    items: all,
                    secret,
                },
            )?;
            println!(
                "created config set {} with {} item(s)",
                v.name,
                v.items.len()
            );
        }
        ConfigSetCommand::Ls { json } => {
            let list: Vec<ConfigSetView> = client.get("/v1/configsets")?;
            if json {
                return print_json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|s| {
                    let stale = s.bound.iter().filter(|b| b.out_of_date).count();
                    vec![
                        s.name.clone(),
                        s.items.len().to_string(),
                        match (s.bound.len(), stale) {
                            (0, _) => "-".into(),
                            (n, 0) => n.to_string(),
                            (n, k) => format!("{n} ({k} out of date)"),
                        },
                        time_ms(s.updated_ms),
                        if s.node.is_empty() {
                            "here".into()
                        } else {
                            s.node.clone()
                        },
                        s.description.clone(),
                    ]
                })
                .collect();
            table(
                &["NAME", "ITEMS", "APPS", "UPDATED", "HELD BY", "DESCRIPTION"],
                &rows,
            );
        }
        ConfigSetCommand::Show { name, json } => {
            let v: ConfigSetView = client.get(&format!("/v1/configsets/{name}"))?;
            if json {
                return print_json(&v);
            }
            show(&v);
        }
        ConfigSetCommand::Set {
            name,
            items: kv,
            secret,
        } => {
            let v: ConfigSetView = client.post(
                &format!("/v1/configsets/{name}/items"),
                &ConfigSetWrite {
                    items: items(&kv)?,
                    secret,
                    ..Default::default()
                },
            )?;
            report_change(&v);
        }
        ConfigSetCommand::Unset { name, keys } => {
            let v: ConfigSetView = client.post(
                &format!("/v1/configsets/{name}/unset"),
                &ConfigUnset { keys },
            )?;
            report_change(&v);
        }
        ConfigSetCommand::Rm { name } => {
            let _: serde_json::Value = client.delete(&format!("/v1/configsets/{name}"))?;
            println!("removed config set {name}");
        }
        ConfigSetCommand::Diff {
            set: name,
            template,
            json,
        } => {
            let mut req = super::read_template(&template)?;
            req.config_set = name.clone();
            let rows: Vec<ConfigDiffRow> =
                client.post(&format!("/v1/configsets/{name}/diff"), &req)?;
            if json {
                return print_json(&rows);
            }
            print_diff(&name, &rows);
        }
        ConfigSetCommand::Apply { name } => {
            let done: Vec<ConfigApplied> =
                client.post(&format!("/v1/configsets/{name}/apply"), &())?;
            if done.is_empty() {
                println!("no app is bound to config set {name}");
            }
            let mut failed = 0;
            for d in &done {
                match (&d.error, d.versions.is_empty()) {
                    (Some(e), _) => {
                        failed += 1;
                        eprintln!("{}: not redeployed: {e}", d.app);
                    }
                    (None, true) => println!("{}: up to date", d.app),
                    (None, false) => println!("{}: deploying {}", d.app, d.versions.join(", ")),
                }
            }
            if failed > 0 {
                bail!("{failed} app(s) could not be redeployed with config set {name}");
            }
        }
    }
    Ok(())
}

fn report_change(v: &ConfigSetView) {
    println!("config set {} is at revision {}", v.name, v.revision);
    let stale: Vec<&str> = v
        .bound
        .iter()
        .filter(|b| b.out_of_date)
        .map(|b| b.app.as_str())
        .collect();
    if !stale.is_empty() {
        println!(
            "out of date: {} (`berth configset apply {}` or `berth redeploy APP`)",
            stale.join(", "),
            v.name
        );
    }
}
