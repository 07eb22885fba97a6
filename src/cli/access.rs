//! `berth access create|ls|rm`: API tokens with roles (viewer, operator, admin).

use super::client::Client;
use super::output::{table, time_ms};
use crate::wire::{AccessCreate, AccessCreated, AccessView};
use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum AccessCommand {
    /// Make a token: prints it, this once (the agent keeps only its digest).
    Create {
        name: String,
        #[arg(long, value_parser = ["viewer", "operator", "admin"])]
        role: String,
    },
    /// The tokens: name, role, since (never the tokens).
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Remove a token: it stops working at once.
    Rm { name: String },
}

pub fn access(client: &Client, cmd: AccessCommand) -> Result<()> {
    match cmd {
        AccessCommand::Create { name, role } => {
            let r: AccessCreated = client.post("/v1/access", &AccessCreate { name, role })?;
            println!("{}", r.token);
            eprintln!(
                "access {} ({}): the token above is shown this once; use it with --token or BERTH_TOKEN, or to sign in to the console",
                r.name, r.role
            );
            Ok(())
        }
        AccessCommand::Ls { json } => {
            let list: Vec<AccessView> = client.get("/v1/access")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            let mut rows = vec![vec![
                "api.token".to_string(),
                "admin".to_string(),
                "(the agent's own)".to_string(),
            ]];
            rows.extend(
                list.iter()
                    .map(|a| vec![a.name.clone(), a.role.clone(), time_ms(a.created_ms)]),
            );
            table(&["NAME", "ROLE", "SINCE"], &rows);
            Ok(())
        }
        AccessCommand::Rm { name } => {
            let _: serde_json::Value = client.delete(&format!("/v1/access/{name}"))?;
            println!("removed access {name}");
            Ok(())
        }
    }
}
