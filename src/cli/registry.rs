//! `berth registry login|logout|ls`: private registry logins, kept by the agent (the
//! password sealed at rest) and used for every pull from that registry.

use super::client::Client;
use super::output::{table, time_ms};
use crate::wire::{RegistryLogin, RegistryView};
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use std::io::{BufRead, IsTerminal, Write};

#[derive(Subcommand, Debug)]
pub enum RegistryCommand {
    /// Log in to a registry: its images are pulled with these credentials from now on.
    Login {
        /// The registry host as image names write it (registry.example.com, 10.0.0.5:5000,
        /// docker.io).
        host: String,
        #[arg(short = 'u', long)]
        username: Option<String>,
        /// Read the password from stdin (e.g. `echo "$TOKEN" | berth registry login ...`).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Forget the login for a registry.
    Logout { host: String },
    /// The registries logged in to (never their passwords).
    Ls {
        #[arg(long)]
        json: bool,
    },
}

/// A line typed at the terminal without echo.
fn read_hidden(prompt: &str) -> Result<String> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    let stdin = std::io::stdin();
    let old = tcgetattr(&stdin).context("reading the terminal's settings")?;
    let mut quiet = old.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet).context("turning echo off")?;
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    let _ = tcsetattr(&stdin, SetArg::TCSANOW, &old);
    eprintln!();
    read.context("reading the password")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

pub fn registry(client: &Client, cmd: RegistryCommand) -> Result<()> {
    match cmd {
        RegistryCommand::Login {
            host,
            username,
            password_stdin,
        } => {
            let stdin = std::io::stdin();
            let username = match username {
                Some(u) => u,
                None if stdin.is_terminal() && !password_stdin => {
                    eprint!("Username: ");
                    let _ = std::io::stderr().flush();
                    let mut u = String::new();
                    stdin.lock().read_line(&mut u)?;
                    u.trim().to_string()
                }
                None => bail!("name the user with -u USER"),
            };
            let password = if password_stdin {
                let mut p = String::new();
                stdin
                    .lock()
                    .read_line(&mut p)
                    .context("reading the password from stdin")?;
                p.trim_end_matches(['\n', '\r']).to_string()
            } else if stdin.is_terminal() {
                read_hidden("Password: ")?
            } else {
                bail!(
                    "no terminal to ask for the password: pass it on stdin with --password-stdin"
                );
            };
            let v: RegistryView = client.post(
                "/v1/registries",
                &RegistryLogin {
                    host,
                    username,
                    password,
                },
            )?;
            println!(
                "logged in to {} as {}: pulls from it use these credentials",
                v.host, v.username
            );
            Ok(())
        }
        RegistryCommand::Logout { host } => {
            let _: serde_json::Value = client.delete(&format!(
                "/v1/registries?host={}",
                crate::wire::percent(&host)
            ))?;
            println!("logged out of {host}");
            Ok(())
        }
        RegistryCommand::Ls { json } => {
            let list: Vec<RegistryView> = client.get("/v1/registries")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|r| vec![r.host.clone(), r.username.clone(), time_ms(r.created_ms)])
                .collect();
            table(&["REGISTRY", "USER", "SINCE"], &rows);
            Ok(())
        }
    }
}
