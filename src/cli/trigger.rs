//! `berth trigger create|ls|rm`: webhooks that redeploy an app or scale a service.

use super::client::Client;
use super::output::{table, time_ms};
use crate::wire::{TriggerCreate, TriggerCreated, TriggerView};
use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum TriggerCommand {
    /// Make a trigger: prints its URL with the secret, shown this once.
    Create {
        app: String,
        /// redeploy (pulling the images again) or scale.
        #[arg(long, value_parser = ["redeploy", "scale"])]
        action: String,
        #[arg(long)]
        service: Option<String>,
        #[arg(long)]
        replicas: Option<u32>,
    },
    /// The triggers (of one app), without their secrets.
    Ls {
        app: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Remove a trigger: its URL stops working.
    Rm { id: String },
}

pub fn trigger(client: &Client, api: &str, cmd: TriggerCommand) -> Result<()> {
    match cmd {
        TriggerCommand::Create {
            app,
            action,
            service,
            replicas,
        } => {
            let r: TriggerCreated = client.post(
                &format!("/v1/apps/{app}/triggers"),
                &TriggerCreate {
                    action,
                    service,
                    replicas,
                },
            )?;
            println!(
                "trigger {} ({} {})",
                r.trigger.id, r.trigger.action, r.trigger.app
            );
            println!("POST {}{}", api.trim_end_matches('/'), r.url_path);
            eprintln!(
                "the secret is shown this once; on another address, keep the path: {}",
                r.url_path
            );
            Ok(())
        }
        TriggerCommand::Ls { app, json } => {
            let path = match &app {
                Some(a) => format!("/v1/triggers?app={}", crate::wire::percent(a)),
                None => "/v1/triggers".into(),
            };
            let list: Vec<TriggerView> = client.get(&path)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|t| {
                    let action = if t.action == "scale" {
                        format!("scale {}={}", t.service, t.replicas)
                    } else {
                        t.action.clone()
                    };
                    vec![
                        t.id.clone(),
                        t.app.clone(),
                        action,
                        t.calls.to_string(),
                        if t.last_ms > 0 {
                            time_ms(t.last_ms)
                        } else {
                            "-".into()
                        },
                        t.path.clone(),
                    ]
                })
                .collect();
            table(
                &["ID", "APP", "ACTION", "CALLS", "LAST CALL", "PATH"],
                &rows,
            );
            Ok(())
        }
        TriggerCommand::Rm { id } => {
            let _: serde_json::Value = client.delete(&format!("/v1/triggers/{id}"))?;
            println!("removed trigger {id}");
            Ok(())
        }
    }
}
