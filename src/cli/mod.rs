//! The `berth` command line: clap definitions and one function per subcommand.
//!
//! Invariants: talks to the agent only through its HTTP API (never SQLite or the engine),
//! except `config`, which validates a template locally with the same pure parser.

mod access;
mod client;
mod cluster;
mod configset;
mod exec;
mod host;
mod jobs;
mod observe;
mod output;
mod registry;
mod trigger;
mod volume;

use crate::model::AppState;
use crate::wire::*;
use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use client::Client;
use output::{age, table, time_ms};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version,
    long_version = host::LONG_VERSION,
    about = "A managed container platform on your own Docker hosts"
)]
pub struct Cli {
    /// The agent's API.
    #[arg(
        long,
        global = true,
        env = "BERTH_API",
        default_value = "http://127.0.0.1:7878"
    )]
    pub api: String,
    /// API token (default: read from <data-dir>/api.token).
    #[arg(long, global = true, env = "BERTH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Trust this PEM certificate (the agent's own, or its CA) for an `https://` API, besides
    /// the public CAs.
    #[arg(long, global = true, env = "BERTH_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent (the daemon on every host).
    Agent(crate::config::AgentFlags),
    /// Deploy an app from a compose template (or update it).
    Deploy(DeployArgs),
    /// List apps: services, desired/running, state.
    Apps(JsonFlag),
    /// List containers.
    Ps {
        app: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Set replica counts: berth scale APP web=3 worker=2.
    Scale {
        app: String,
        #[arg(required = true, value_name = "SERVICE=N")]
        services: Vec<String>,
    },
    /// Stop an app's containers (kept, so `start` is quick), or one service's, or one slot's.
    Stop {
        #[arg(value_name = "APP[/SERVICE[/SLOT]]")]
        app: String,
    },
    /// Start a stopped app, service or slot.
    Start {
        #[arg(value_name = "APP[/SERVICE[/SLOT]]")]
        app: String,
    },
    /// Restart the containers of an app, a service or a slot (the same containers, stopped
    /// with their grace period and started again).
    Restart {
        #[arg(value_name = "APP[/SERVICE[/SLOT]]")]
        app: String,
    },
    /// Remove an app and its containers, or one service of an app (APP/SERVICE).
    Rm {
        #[arg(value_name = "APP[/SERVICE]")]
        app: String,
        /// Remove its named volumes too.
        #[arg(long)]
        volumes: bool,
    },
    /// Deploy a one-service app from an image, without a template (`berth inspect` shows the
    /// template it stands for): berth run web nginx:alpine --route web.example.com.
    Run(RunArgs),
    /// Recreate every container of an app (pulling images that are absent, or all with --pull).
    Redeploy {
        app: String,
        #[arg(long)]
        pull: bool,
    },
    /// Show events (deploys, scale, container start/die/oom, errors).
    Events {
        app: Option<String>,
        /// Keep following new events.
        #[arg(short, long)]
        follow: bool,
        /// How many past events to show.
        #[arg(short = 'n', long, default_value_t = 50)]
        tail: i64,
        #[arg(long)]
        json: bool,
    },
    /// Live per-container cpu, memory, network and block I/O (like `docker stats`).
    Top {
        app: Option<String>,
        /// Print once and exit.
        #[arg(long)]
        no_stream: bool,
        #[arg(long)]
        json: bool,
    },
    /// The last hour of an app's figures, per minute (the host's without APP).
    Metrics {
        app: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Alarm rules: raise an event when a figure crosses a threshold for N cycles.
    #[command(subcommand)]
    Alarm(observe::AlarmCommand),
    /// Show an app's logs: berth logs APP[/SERVICE[/SLOT]] [-f] [--since 10m] [--grep TEXT].
    Logs(observe::LogsArgs),
    /// Show an app's normalised spec as stored.
    Inspect {
        app: String,
        #[arg(long)]
        json: bool,
        /// Print the template as deployed instead of the normalised spec.
        #[arg(long, conflicts_with = "json")]
        template: bool,
    },
    /// Validate a template and print its normalised spec (no agent needed).
    Config(TemplateArgs),
    /// Volumes: local, object storage (oss) and NFS (nas).
    #[command(subcommand)]
    Volume(volume::VolumeCommand),
    /// Run a command in a container: `berth exec [-it] APP/SERVICE[/SLOT] -- CMD...` (exits
    /// with the command's exit code).
    Exec(exec::ExecArgs),
    /// Config sets: variables a deploy binds to with --config-set (create, ls, show, set,
    /// unset, rm, diff, apply).
    #[command(subcommand)]
    Configset(configset::ConfigSetCommand),
    /// Private registries: login, logout, ls.
    #[command(subcommand)]
    Registry(registry::RegistryCommand),
    /// API tokens with roles (viewer, operator, admin): create, ls, rm.
    #[command(subcommand)]
    Access(access::AccessCommand),
    /// Webhooks that redeploy an app or scale a service: create, ls, rm.
    #[command(subcommand)]
    Trigger(trigger::TriggerCommand),
    /// The cluster: init, join tokens, join, leave.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Jobs (batch and cron apps): state, schedule, last and next run.
    Jobs(JsonFlag),
    /// A job's run history: each run's trigger, state, tasks, containers and retries.
    Runs {
        app: String,
        /// Only this task's containers.
        #[arg(long)]
        task: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Run, cancel, suspend or resume a job.
    #[command(subcommand)]
    Job(jobs::JobCommand),
    /// The cluster's members: name, address, state, when last heard.
    Nodes(JsonFlag),
    /// One member of the cluster.
    #[command(subcommand)]
    Node(cluster::NodeCommand),
    /// Host-wide clean-up.
    #[command(subcommand)]
    System(volume::SystemCommand),
    /// Images on this host.
    Images(JsonFlag),
    /// Image operations.
    #[command(subcommand)]
    Image(ImageCommand),
    /// List a service's versions: berth versions APP/SERVICE.
    Versions {
        #[arg(value_name = "APP/SERVICE")]
        target: String,
        #[arg(long)]
        json: bool,
    },
    /// Show autoscaling: bounds, recent averages, the last decisions: berth autoscale APP[/SERVICE].
    Autoscale {
        #[arg(value_name = "APP[/SERVICE]")]
        target: String,
        #[arg(long)]
        json: bool,
    },
    /// Print berth's version, git commit and build date; `version rm` deletes an app's version.
    #[command(args_conflicts_with_subcommands = true)]
    Version(VersionArgs),
    /// Check this host: engine, cgroups, FUSE, NFS, ports, data dir, clock.
    Doctor(host::DoctorArgs),
    /// Write shell completions or the man page (used by the packages).
    #[command(hide = true, subcommand)]
    Generate(host::GenerateCommand),
    /// Split a service's traffic between versions: berth traffic APP/SERVICE 003=90 002=10;
    /// or a route shared by services: berth traffic APP --route nginx nginx-v2=30 nginx-v1=70.
    Traffic {
        #[arg(value_name = "APP/SERVICE")]
        target: String,
        /// VERSION=PERCENT pairs adding up to 100 (SERVICE=PERCENT with --route); those
        /// not named get 0%.
        #[arg(value_name = "NNN=PERCENT", required = true)]
        weights: Vec<String>,
        /// A route two or more of the app's services name (`routing.port_N`): split it
        /// between those services (target: APP).
        #[arg(long, value_name = "ROUTE")]
        route: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The routes an app's services share, with each service's part.
    Routes {
        #[arg(value_name = "APP")]
        app: String,
        #[arg(long)]
        json: bool,
    },
    /// Move all traffic back to the previous version that did not fail (or to NNN).
    Rollback {
        #[arg(value_name = "APP/SERVICE")]
        target: String,
        #[arg(value_name = "NNN")]
        version: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Finish a blue/green release: confirm (all traffic to the new version) or abort.
    #[command(subcommand)]
    Release(ReleaseCommand),
    /// Spread a service's instances over the cluster's members again (start-first: each
    /// moved instance runs on its new member before the old one stops).
    Rebalance {
        #[arg(value_name = "APP/SERVICE")]
        target: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReleaseCommand {
    /// Send all traffic to the version deployed with --blue-green and stop the old one; for
    /// APP, also keep the services a --blue-green deploy added and remove those it dropped.
    Confirm {
        #[arg(value_name = "APP[/SERVICE]")]
        target: String,
    },
    /// Stop the version deployed with --blue-green; traffic stays on (or returns to) the old.
    /// For APP, also remove the services a --blue-green deploy added and restore its template.
    Abort {
        #[arg(value_name = "APP[/SERVICE]")]
        target: String,
    },
}

#[derive(Debug, Args)]
pub struct VersionArgs {
    #[command(subcommand)]
    pub command: Option<VersionCommand>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum VersionCommand {
    /// Delete a version that has no traffic: berth version rm APP/SERVICE 002.
    Rm {
        #[arg(value_name = "APP/SERVICE")]
        target: String,
        #[arg(value_name = "NNN")]
        number: String,
    },
}

/// `APP[/SERVICE[/SLOT]]` -> (app, service, slot).
fn target(t: &str) -> Result<(&str, Option<&str>, Option<u32>)> {
    let parts: Vec<&str> = t.split('/').collect();
    let bad =
        || anyhow::anyhow!("{t:?}: write APP, APP/SERVICE or APP/SERVICE/SLOT, like shop/web/2");
    match parts.as_slice() {
        [a] if !a.is_empty() => Ok((a, None, None)),
        [a, s] if !a.is_empty() && !s.is_empty() => Ok((a, Some(s), None)),
        [a, s, n] if !a.is_empty() && !s.is_empty() => {
            let n = n.parse::<u32>().ok().filter(|&n| n > 0).ok_or_else(bad)?;
            Ok((a, Some(s), Some(n)))
        }
        _ => Err(bad()),
    }
}

/// `berth stop|start APP[/SERVICE[/SLOT]]`.
fn service_action(client: &Client, t: &str, verb: &str) -> Result<()> {
    let url = match target(t)? {
        (a, None, _) => format!("/v1/apps/{a}/{verb}"),
        (a, Some(s), None) => format!("/v1/apps/{a}/services/{s}/{verb}"),
        (a, Some(s), Some(n)) => format!("/v1/apps/{a}/services/{s}/slots/{n}/{verb}"),
    };
    print_status(&client.post(&url, &serde_json::json!({}))?)
}

/// `APP/SERVICE` -> (app, service).
fn app_service(t: &str) -> Result<(&str, &str)> {
    match t.split_once('/') {
        Some((a, s)) if !a.is_empty() && !s.is_empty() => Ok((a, s)),
        _ => bail!("{t:?}: write APP/SERVICE, like shop/web"),
    }
}

#[derive(Debug, Args)]
pub struct JsonFlag {
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Load images from a `docker save` tarball (offline hosts).
    Load { file: PathBuf },
    /// Write the images an app needs (every kept version's) into one tarball, for hosts
    /// without a registry: `berth deploy -f app.yml --images FILE` loads it there.
    Save {
        app: String,
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
    },
    /// List images.
    Ls(JsonFlag),
    /// Remove images no container uses (images deployed apps name are kept).
    Prune,
}

#[derive(Debug, Args)]
pub struct TemplateArgs {
    /// The compose template.
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// App name (default: the template's top-level `name:`, as compose's project name, else
    /// the file name without extension).
    #[arg(long)]
    pub name: Option<String>,
    /// Variables for substitution: KEY=VALUE (repeatable).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Files of KEY=VALUE variables (repeatable; compose's dotenv rules). Without one, the
    /// project directory's `.env` is read when it exists, as compose does.
    #[arg(long = "env-file")]
    pub env_file: Vec<PathBuf>,
    /// The directory relative paths in the template (bind sources, `env_file`, secret files)
    /// are resolved against (default: the template's directory).
    #[arg(long = "project-directory", value_name = "DIR")]
    pub project_directory: Option<PathBuf>,
    /// Activate a compose profile (repeatable; `*` activates all). Services with `profiles:`
    /// are deployed only when one of theirs is active. Default: `COMPOSE_PROFILES`.
    #[arg(long = "profile", value_name = "NAME")]
    pub profile: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    #[command(flatten)]
    pub template: TemplateArgs,
    /// Pull images even when present.
    #[arg(long)]
    pub pull: bool,
    /// Return once the agent accepted the deploy, without waiting for containers.
    #[arg(short, long)]
    pub detach: bool,
    /// Seconds to wait for every container to run.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Describe the versions this deploy creates (at most 50 characters).
    #[arg(short, long, default_value = "")]
    pub message: String,
    /// `all`: a new version takes all the traffic once healthy (start-first, or rolling with
    /// `rolling_updates`); `none`: it runs one instance at 0% until `berth traffic`.
    #[arg(long, value_name = "all|none", default_value = "all")]
    pub traffic: crate::model::NewTraffic,
    /// Start new versions with all their instances at 0% and wait for
    /// `berth release confirm|abort`.
    #[arg(long)]
    pub blue_green: bool,
    /// Load the images in this tarball (`berth image save`, `docker save`) before deploying.
    #[arg(long, value_name = "FILE")]
    pub images: Option<PathBuf>,
    /// Bind the app to this config set: its items fill the template's variables (after
    /// --env, before the shell's environment), and `berth redeploy` picks up its changes.
    #[arg(long = "config-set", value_name = "NAME")]
    pub config_set: Option<String>,
    /// Check the template (and the config set's variables) without deploying.
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs one CLI invocation (everything but `agent`, which `main` runs on a tokio runtime).
pub fn run(cli: Cli) -> Result<()> {
    let client = Client::new(&cli.api, cli.token.clone()).with_ca_cert(cli.ca_cert.as_deref())?;
    match cli.command {
        Command::Agent(_) => bail!("`berth agent` is started by main"),
        Command::Deploy(a) => deploy(&client, a),
        Command::Apps(f) => apps(&client, f.json),
        Command::Ps { app, json } => ps(&client, app.as_deref(), json),
        Command::Scale { app, services } => scale(&client, &app, &services),
        Command::Stop { app } => service_action(&client, &app, "stop"),
        Command::Start { app } => service_action(&client, &app, "start"),
        Command::Restart { app } => {
            let url = match target(&app)? {
                (a, None, _) => format!("/v1/apps/{a}/restart"),
                (a, Some(s), None) => format!("/v1/apps/{a}/services/{s}/restart"),
                (a, Some(s), Some(n)) => format!("/v1/apps/{a}/services/{s}/slots/{n}/restart"),
            };
            let r: crate::wire::RestartResponse = client.post(&url, &serde_json::json!({}))?;
            for c in &r.restarted {
                println!("restarted {c}");
            }
            for f in &r.failed {
                eprintln!("not restarted: {f}");
            }
            if r.restarted.is_empty() && r.failed.is_empty() {
                println!("{app}: no running container to restart");
            }
            if !r.failed.is_empty() {
                bail!("{} container(s) not restarted", r.failed.len());
            }
            Ok(())
        }
        Command::Rm { app, volumes } if app.contains('/') => {
            let (a, s) = match target(&app)? {
                (a, Some(s), None) => (a, s),
                _ => bail!(
                    "{app:?}: `berth rm` takes APP or APP/SERVICE (a slot is scaled away with `berth scale`, or stopped with `berth stop APP/SERVICE/SLOT`)"
                ),
            };
            if volumes {
                bail!(
                    "--volumes goes with removing a whole app: `berth rm {a} --volumes`; a service's named volumes belong to the app"
                );
            }
            let _: AppStatus = client.delete(&format!("/v1/apps/{a}/services/{s}"))?;
            println!("removed {a}/{s}");
            Ok(())
        }
        Command::Rm { app, volumes } => {
            let _: serde_json::Value =
                client.delete(&format!("/v1/apps/{app}?volumes={volumes}"))?;
            println!("removed {app}");
            Ok(())
        }
        Command::Run(a) => run_image(&client, a),
        Command::Redeploy { app, pull } => {
            let _: AppStatus = client.post(
                &format!("/v1/apps/{app}/redeploy"),
                &RedeployRequest { pull },
            )?;
            wait_running(&client, &app, Duration::from_secs(300))
        }
        Command::Events {
            app,
            follow,
            tail,
            json,
        } => events(&client, app.as_deref(), follow, tail, json),
        Command::Inspect {
            app,
            json,
            template,
        } => {
            let r: InspectResponse = client.get(&format!("/v1/apps/{app}/spec"))?;
            if template {
                print!("{}", r.template);
            } else if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!("{}", serde_json::to_string_pretty(&r.spec)?);
                if !r.scale.is_empty() {
                    println!("# scaled: {:?}", r.scale);
                }
                if r.stopped {
                    println!("# stopped");
                }
                for (svc, slots) in &r.stopped_services {
                    if slots.is_empty() {
                        println!("# {svc}: stopped");
                    } else {
                        println!("# {svc}: slots {slots:?} stopped");
                    }
                }
                if r.template.starts_with(crate::spec::run::HEADER) {
                    println!(
                        "# deployed from an image; `berth inspect {app} --template` prints the template it stands for"
                    );
                }
            }
            Ok(())
        }
        Command::Config(t) => config(&t),
        Command::Top {
            app,
            no_stream,
            json,
        } => observe::top(&client, app.as_deref(), no_stream, json),
        Command::Metrics { app, json } => observe::metrics(&client, app.as_deref(), json),
        Command::Alarm(cmd) => observe::alarm(&client, cmd),
        Command::Volume(cmd) => volume::volume(&client, cmd),
        Command::Registry(cmd) => registry::registry(&client, cmd),
        Command::Configset(cmd) => configset::configset(&client, cmd),
        Command::Exec(a) => {
            let code = exec::exec(&client, a)?;
            std::process::exit(code);
        }
        Command::Access(cmd) => access::access(&client, cmd),
        Command::Trigger(cmd) => trigger::trigger(&client, &cli.api, cmd),
        Command::Cluster(cmd) => cluster::cluster(&client, cmd),
        Command::Jobs(f) => jobs::jobs(&client, f.json),
        Command::Runs { app, task, json } => jobs::runs(&client, &app, task.as_deref(), json),
        Command::Job(cmd) => jobs::job(&client, cmd),
        Command::Nodes(f) => cluster::nodes(&client, f.json),
        Command::Node(cmd) => cluster::node(&client, cmd),
        Command::System(cmd) => volume::system(&client, cmd),
        Command::Logs(a) => observe::logs(&client, a),
        Command::Images(f) | Command::Image(ImageCommand::Ls(f)) => images(&client, f.json),
        Command::Image(ImageCommand::Load { file }) => load_images(&client, &file),
        Command::Image(ImageCommand::Save { app, output }) => save_images(&client, &app, &output),
        Command::Versions { target, json } => versions(&client, &target, json),
        Command::Autoscale { target, json } => autoscale(&client, &target, json),
        Command::Traffic {
            target,
            weights,
            route: Some(route),
            json,
        } => {
            if target.contains('/') {
                bail!(
                    "{target:?}: with --route, name the app only (berth traffic APP --route {route} SERVICE=PERCENT ...)"
                );
            }
            let req = crate::wire::RouteTrafficRequest { route, weights };
            let list: Vec<crate::wire::RouteView> =
                client.post(&format!("/v1/apps/{target}/routes/traffic"), &req)?;
            print_routes(&list, json)
        }
        Command::Routes { app, json } => {
            let list: Vec<crate::wire::RouteView> =
                client.get(&format!("/v1/apps/{app}/routes"))?;
            print_routes(&list, json)
        }
        Command::Traffic {
            target,
            weights,
            route: None,
            json,
        } => {
            let (app, svc) = app_service(&target)?;
            // Checked here too, so a typo is reported before anything is sent.
            let parsed = crate::plan::release::parse_weights(svc, &weights)?;
            let req = TrafficRequest {
                weights: parsed
                    .iter()
                    .map(|(n, w)| (format!("{n:03}"), *w))
                    .collect(),
            };
            let list: Vec<VersionView> =
                client.post(&format!("/v1/apps/{app}/services/{svc}/traffic"), &req)?;
            print_versions(&list, json)
        }
        Command::Rebalance { target } => {
            let (app, svc) = app_service(&target)?;
            let r: crate::wire::RebalanceResponse = client.post(
                &format!("/v1/apps/{app}/services/{svc}/rebalance"),
                &serde_json::json!({}),
            )?;
            println!("{}", r.message);
            Ok(())
        }
        Command::Rollback {
            target,
            version,
            json,
        } => {
            let (app, svc) = app_service(&target)?;
            let req = RollbackRequest {
                version: version.unwrap_or_default(),
            };
            let mut list: Vec<VersionView> =
                client.post(&format!("/v1/apps/{app}/services/{svc}/rollback"), &req)?;
            // A version that was stopped comes back start-first: wait until it takes the
            // traffic (or fails, leaving the traffic where it was).
            if let Some(v) = list
                .iter()
                .find(|v| v.state == "creating" && v.release == "promote")
            {
                let name = v.name.clone();
                if !json {
                    println!(
                        "{app}: {name} starts beside the current version and takes all the traffic once ready"
                    );
                }
                wait_versions(
                    &client,
                    app,
                    &[name],
                    Duration::from_secs(300),
                    "rolled back",
                )?;
                list = client.get(&format!("/v1/apps/{app}/services/{svc}/versions"))?;
            }
            print_versions(&list, json)
        }
        Command::Release(cmd) => {
            let (target, verb) = match &cmd {
                ReleaseCommand::Confirm { target } => (target, "confirm"),
                ReleaseCommand::Abort { target } => (target, "abort"),
            };
            if !target.contains('/') {
                let r: serde_json::Value = client.post(
                    &format!("/v1/apps/{target}/release/{verb}"),
                    &serde_json::json!({}),
                )?;
                println!("{}", r["message"].as_str().unwrap_or_default());
                return Ok(());
            }
            let (app, svc) = app_service(target)?;
            let list: Vec<VersionView> = client.post(
                &format!("/v1/apps/{app}/services/{svc}/release/{verb}"),
                &serde_json::json!({}),
            )?;
            print_versions(&list, false)
        }
        Command::Version(VersionArgs {
            command: None,
            json,
        }) => host::version(json),
        Command::Doctor(a) => host::doctor(&a),
        Command::Generate(g) => host::generate(g),
        Command::Version(VersionArgs {
            command: Some(VersionCommand::Rm { target, number }),
            ..
        }) => {
            let (app, svc) = app_service(&target)?;
            let n = crate::plan::release::parse_version(svc, &number)?;
            let _: serde_json::Value =
                client.delete(&format!("/v1/apps/{app}/services/{svc}/versions/{n}"))?;
            println!("deleted {}", crate::model::version_name(svc, n));
            Ok(())
        }
        Command::Image(ImageCommand::Prune) => {
            let r: crate::wire::PruneReport =
                client.post("/v1/images/prune", &serde_json::json!({}))?;
            println!(
                "deleted {} images, reclaimed {} bytes",
                r.deleted.len(),
                r.space_reclaimed
            );
            Ok(())
        }
    }
}

/// Reads a template and everything it draws on into a deploy request.
/// Compose's default project name: the directory's name in lower case without the characters
/// a project name cannot hold (compose-go's `NormalizeProjectName`).
fn compose_project_name(dir: &Path) -> String {
    let raw = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    raw.chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_'))
        .collect::<String>()
        .trim_start_matches(['-', '_'])
        .to_string()
}

fn read_template(t: &TemplateArgs) -> Result<DeployRequest> {
    let text = std::fs::read_to_string(&t.file)
        .with_context(|| format!("cannot read template {}", t.file.display()))?;
    // Relative paths resolve against the project directory, made absolute here: the agent
    // may have another working directory.
    let project = match &t.project_directory {
        Some(d) => d.clone(),
        None => t.file.parent().unwrap_or(Path::new(".")).to_path_buf(),
    };
    let project = std::path::absolute(if project.as_os_str().is_empty() {
        Path::new(".")
    } else {
        project.as_path()
    })
    .with_context(|| format!("cannot resolve the project directory {}", project.display()))?;
    // The app name: --name, the template's `name:`, else the file name; a file with one of
    // compose's default names (`compose.yaml`, `docker-compose.yml`, ...) takes its project
    // directory's name, as compose names the project.
    let needs = crate::spec::client_needs(&text);
    let name = match t.name.clone().or(needs.name) {
        Some(n) => n,
        None => {
            let stem = t
                .file
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("app")
                .to_ascii_lowercase();
            let default_file = stem == "compose"
                || stem == "docker-compose"
                || stem.starts_with("compose.")
                || stem.starts_with("docker-compose.");
            let name = match default_file {
                true => compose_project_name(&project),
                false => stem,
            };
            if !crate::spec::valid_name(&name) {
                bail!(
                    "{name:?} (from the file or directory name) is not a valid app name: pass --name NAME (lower-case letters, digits, - and _)"
                );
            }
            name
        }
    };
    // As compose: without --env-file, the project directory's `.env` when it exists.
    let dot_env = project.join(".env");
    let env_files: Vec<PathBuf> = match t.env_file.is_empty() && dot_env.is_file() {
        true => vec![dot_env],
        false => t.env_file.clone(),
    };
    // Lowest priority first, as compose (compose-go's `WithOsEnv` before `WithDotEnv`): env
    // files (later ones win), then the shell's environment (only what the template uses)
    // over them, then --env.
    let mut vars = BTreeMap::new();
    for f in &env_files {
        let body = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read env file {}", f.display()))?;
        // As compose: a key alone, and `${VAR}` inside a value, come from the shell.
        let shell = |k: &str| std::env::var(k).ok();
        for (k, v) in crate::spec::parse_dotenv(&body, &f.display().to_string(), &shell)? {
            vars.insert(k, v);
        }
    }
    // `$VAR`, `- KEY` in `environment` and `environment:` secrets take their value from
    // here too, as in compose.
    for v in needs.vars {
        if let Ok(val) = std::env::var(&v) {
            vars.insert(v, val);
        }
    }
    let mut overrides = BTreeMap::new();
    for kv in &t.env {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--env {kv:?}: write KEY=VALUE"))?;
        vars.insert(k.to_string(), v.to_string());
        overrides.insert(k.to_string(), v.to_string());
    }
    let mut files = BTreeMap::new();
    for f in needs.env_files {
        let p = project.join(&f);
        if let Ok(body) = std::fs::read_to_string(&p) {
            files.insert(f, body);
        }
    }
    // As compose: --profile, else COMPOSE_PROFILES (from the shell or the env files).
    let profiles: Vec<String> = match t.profile.is_empty() {
        false => t.profile.clone(),
        true => std::env::var("COMPOSE_PROFILES")
            .ok()
            .or_else(|| vars.get("COMPOSE_PROFILES").cloned())
            .unwrap_or_default()
            .split(',')
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect(),
    };
    Ok(DeployRequest {
        name,
        template: text,
        vars,
        files,
        project_dir: project.to_string_lossy().into_owned(),
        home: std::env::var("HOME").unwrap_or_default(),
        profiles,
        pull: false,
        message: String::new(),
        traffic: crate::model::NewTraffic::default(),
        blue_green: false,
        config_set: String::new(),
        overrides,
    })
}

fn config(t: &TemplateArgs) -> Result<()> {
    let req = read_template(t)?;
    let spec = crate::spec::parse(&req.template, &req.name, &req.inputs())
        .with_context(|| format!("{} is not a valid template", t.file.display()))?;
    for w in &spec.warnings {
        eprintln!("warning: {w}");
    }
    println!("{}", serde_json::to_string_pretty(&spec)?);
    Ok(())
}

fn load_images(client: &Client, file: &Path) -> Result<()> {
    let out: Vec<String> = client.post_file("/v1/images/load", file)?;
    for l in out {
        println!("{l}");
    }
    Ok(())
}

/// Streams the app's image tarball into `output` (through a temporary file beside it, so a
/// failed transfer leaves no partial tarball under the name asked for).
fn save_images(client: &Client, app: &str, output: &Path) -> Result<()> {
    let (images, mut body) = client.download(&format!("/v1/apps/{app}/images"))?;
    let dir = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile_in(dir, output)?;
    let copied = std::io::copy(&mut body, &mut tmp.1);
    let n = match copied.and_then(|n| tmp.1.sync_all().map(|_| n)) {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp.0);
            bail!(
                "saving the images of {app} failed: {e} ({} not written)",
                output.display()
            );
        }
    };
    std::fs::rename(&tmp.0, output).with_context(|| format!("writing {}", output.display()))?;
    println!(
        "saved {} ({:.1} MiB): {}",
        output.display(),
        n as f64 / (1 << 20) as f64,
        images
    );
    Ok(())
}

/// A new file `.NAME.partial-PID` beside `target`.
fn tempfile_in(dir: &Path, target: &Path) -> Result<(PathBuf, std::fs::File)> {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "images.tar".into());
    let path = dir.join(format!(".{name}.partial-{}", std::process::id()));
    let f = std::fs::File::create(&path)
        .with_context(|| format!("cannot write into {}", dir.display()))?;
    Ok((path, f))
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The app's name (its one service has the same name).
    name: String,
    /// The image, as docker names it (nginx:1.27, registry.example.com/team/app:v2).
    image: String,
    /// Publish a port: HOST:CONTAINER or CONTAINER (a free host port); default: the image's
    /// first exposed TCP port, unless --route serves it.
    #[arg(short = 'p', long = "publish", value_name = "[HOST:]CONTAINER")]
    ports: Vec<String>,
    /// An environment variable for the container.
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    #[arg(long)]
    replicas: Option<u32>,
    /// Serve the port through the router under this domain.
    #[arg(long, value_name = "DOMAIN")]
    route: Option<String>,
    /// Health probe: a path on the port (/health) or a URL (http://container:8080/x, tcp://container:5432).
    #[arg(long, value_name = "PATH|URL")]
    probe: Option<String>,
    /// Pull the image even when it is on the host.
    #[arg(long)]
    pull: bool,
    /// Return once deployed, without waiting for healthy instances.
    #[arg(short = 'd', long)]
    detach: bool,
    /// Seconds to wait for healthy instances.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// The command and its arguments (after --).
    #[arg(last = true)]
    command: Vec<String>,
}

/// `berth run NAME IMAGE`: `-e K` without a value takes it from this shell, as docker does.
fn run_image(client: &Client, a: RunArgs) -> Result<()> {
    let env = a
        .env
        .iter()
        .map(|e| {
            if e.contains('=') {
                Ok(e.clone())
            } else {
                std::env::var(e).map(|v| format!("{e}={v}")).map_err(|_| {
                    anyhow::anyhow!("-e {e}: it has no value here; write -e {e}=VALUE")
                })
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let req = crate::wire::RunRequest {
        name: a.name,
        image: a.image,
        ports: a.ports,
        env,
        replicas: a.replicas,
        route: a.route,
        probe: a.probe,
        command: a.command,
        pull: a.pull,
    };
    let r: DeployResponse = client.post("/v1/run", &req)?;
    report_deploy(client, r, a.detach, a.timeout)
}

fn deploy(client: &Client, a: DeployArgs) -> Result<()> {
    let mut req = read_template(&a.template)?;
    req.config_set = a.config_set.clone().unwrap_or_default();
    if a.dry_run {
        return dry_run(client, &req);
    }
    if let Some(file) = a.images.as_ref().filter(|_| req.config_set.is_empty()) {
        // The template is read and parsed first: a bad one loads nothing.
        crate::spec::parse(&req.template, &req.name, &req.inputs()).with_context(|| {
            format!(
                "{} is not a valid template (no images loaded)",
                a.template.file.display()
            )
        })?;
        load_images(client, file)?;
    }
    req.pull = a.pull;
    req.message = a.message.clone();
    req.traffic = a.traffic;
    req.blue_green = a.blue_green;
    let r: DeployResponse = client.post("/v1/apps", &req)?;
    report_deploy(client, r, a.detach, a.timeout)
}

/// `deploy --dry-run`: the agent parses the template as a deploy would (with the config
/// set's items) and stores nothing.
fn dry_run(client: &Client, req: &DeployRequest) -> Result<()> {
    let c: crate::wire::TemplateCheck = client.post("/v1/config", req)?;
    for w in &c.warnings {
        eprintln!("warning: {w}");
    }
    if !c.config.is_empty() {
        configset::print_diff(&req.config_set, &c.config);
    }
    match (c.ok, c.error) {
        (true, _) => {
            println!(
                "{}: the template is valid ({}); nothing was deployed",
                req.name,
                c.services.join(", ")
            );
            Ok(())
        }
        (false, e) => match (c.line, c.column) {
            (Some(l), Some(col)) => bail!(
                "the template is not valid (line {l}, column {col}): {}",
                e.unwrap_or_default()
            ),
            _ => bail!("the template is not valid: {}", e.unwrap_or_default()),
        },
    }
}

/// Prints what a deploy changes and, unless `detach`, waits for its versions.
fn report_deploy(client: &Client, r: DeployResponse, detach: bool, timeout: u64) -> Result<()> {
    for w in &r.warnings {
        eprintln!("warning: {w}");
    }
    if !r.changed.is_empty() {
        println!("{}: deploying {}", r.app, r.versions.join(", "));
    }
    if !r.unchanged.is_empty() {
        println!("{}: unchanged {}", r.app, r.unchanged.join(", "));
    }
    if !r.removed.is_empty() {
        println!("{}: removing {}", r.app, r.removed.join(", "));
    }
    if let Some(release) = &r.release {
        println!("{}: {release}", r.app);
    }
    if let Some(run) = r.job_run {
        if run > 0 {
            println!(
                "{}: job run {run} queued; `berth runs {}` follows it",
                r.app, r.app
            );
        } else {
            println!(
                "{}: job deployed; `berth jobs` shows when it runs next",
                r.app
            );
        }
        return Ok(());
    }
    if detach {
        return Ok(());
    }
    if r.versions.is_empty() {
        return wait_running(client, &r.app, Duration::from_secs(timeout));
    }
    wait_versions(
        client,
        &r.app,
        &r.versions,
        Duration::from_secs(timeout),
        "deployed",
    )
}

/// Waits for the versions a deploy created, and only for them: it succeeds when each is
/// healthy and takes the share of the traffic it was meant to take (all of it, none for
/// `--traffic none`, none until confirmed for `--blue-green`), and fails with the reason
/// when one failed or was stopped. Errors of its containers are shown as they come.
fn wait_versions(
    client: &Client,
    app: &str,
    versions: &[String],
    timeout: Duration,
    done_what: &str,
) -> Result<()> {
    let start = Instant::now();
    let mut shown: std::collections::BTreeSet<String> = Default::default();
    loop {
        let mut lists: BTreeMap<String, Vec<VersionView>> = BTreeMap::new();
        let (mut waiting, mut failed, mut done) = (Vec::new(), Vec::new(), Vec::new());
        for name in versions {
            let Some((svc, _)) = name.rsplit_once('-') else {
                continue;
            };
            if !lists.contains_key(svc) {
                let list: Vec<VersionView> =
                    client.get(&format!("/v1/apps/{app}/services/{svc}/versions"))?;
                lists.insert(svc.to_string(), list);
            }
            let list = &lists[svc];
            let Some(v) = list.iter().find(|v| &v.name == name) else {
                failed.push((svc.to_string(), format!("{name} was deleted")));
                continue;
            };
            for e in &v.errors {
                if shown.insert(e.clone()) {
                    eprintln!("{app}: {name}: {e}");
                }
            }
            match v.state.as_str() {
                "failed" => failed.push((svc.to_string(), format!("{name} failed: {}", v.reason))),
                "stopped" => failed.push((svc.to_string(), format!("{name} was stopped: {}", v.reason))),
                "awaiting confirmation" => done.push(format!(
                    "{app}: {name} is ready at 0% of the traffic: `berth release confirm {app}/{svc}` switches to it, `berth release abort {app}/{svc}` drops it"
                )),
                "normal" if v.replicas == 0 => {
                    done.push(format!("{app}: {name} is normal (no instances to run)"))
                }
                "normal" if v.ready < v.replicas => waiting.push(format!(
                    "{name} ({} of {} instances ready)",
                    v.ready, v.replicas
                )),
                "normal" if v.weight == v.set_weight && v.set_weight == 0 => done.push(format!(
                    "{app}: {name} runs at 0% of the traffic: `berth traffic {app}/{svc} {:03}=10 ...` gives it some",
                    v.number
                )),
                "normal" if v.weight == v.set_weight => done.push(format!(
                    "{app}: {name} is normal with {}% of the traffic ({} instances)",
                    v.weight, v.replicas
                )),
                _ => waiting.push(format!("{name} ({}, {}% of the traffic)", v.state, v.weight)),
            }
        }
        if !failed.is_empty() {
            let mut why = Vec::new();
            for (svc, f) in &failed {
                let serving: Vec<String> = lists[svc]
                    .iter()
                    .filter(|v| v.set_weight > 0)
                    .map(|v| v.name.clone())
                    .collect();
                why.push(if serving.is_empty() {
                    f.clone()
                } else {
                    format!("{f}; the traffic stays on {}", serving.join(", "))
                });
            }
            bail!(
                "{app}: {} (`berth versions`, `berth events {app}`)",
                why.join("; ")
            );
        }
        // The split is the last pass's view; the status is now's: a service of this deploy
        // counts as up only when both say all its instances run.
        let s: AppStatus = client.get(&format!("/v1/apps/{app}"))?;
        for svc in s.services.iter().filter(|x| lists.contains_key(&x.name)) {
            if svc.running < svc.desired {
                waiting.push(format!(
                    "{} ({}/{} running)",
                    svc.name, svc.running, svc.desired
                ));
            }
        }
        if waiting.is_empty() {
            for d in done {
                println!("{d}");
            }
            println!(
                "{app}: {done_what}, {}/{} running ({:.1}s)",
                s.running,
                s.desired,
                start.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if start.elapsed() > timeout {
            bail!(
                "{app}: still waiting after {}s for {} (`berth events {app}` says why)",
                timeout.as_secs(),
                waiting.join(", ")
            );
        }
        std::thread::sleep(Duration::from_millis(150));
    }
}

/// Waits until every desired container of `app` runs; fails when it keeps failing.
fn wait_running(client: &Client, app: &str, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    let mut failing_since: Option<Instant> = None;
    loop {
        let s: AppStatus = client.get(&format!("/v1/apps/{app}"))?;
        match s.state {
            AppState::Running | AppState::Stopped => {
                println!(
                    "{app}: {}/{} running ({:.1}s)",
                    s.running,
                    s.desired,
                    start.elapsed().as_secs_f64()
                );
                return Ok(());
            }
            AppState::Failing => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(10) {
                    let ev: Vec<crate::wire::Event> =
                        client.get(&format!("/v1/events?app={app}&limit=20"))?;
                    for e in ev
                        .iter()
                        .filter(|e| e.kind == crate::model::EventKind::Error.as_str())
                    {
                        eprintln!("error: {}", e.message);
                    }
                    bail!(
                        "{app}: {}/{} running and containers keep failing (see above; `berth events {app}`)",
                        s.running,
                        s.desired
                    );
                }
            }
            AppState::Deploying => failing_since = None,
        }
        if start.elapsed() > timeout {
            bail!(
                "{app}: only {}/{} running after {}s (`berth events {app}` says why)",
                s.running,
                s.desired,
                timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(150));
    }
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn print_status(s: &AppStatus) -> Result<()> {
    println!(
        "{}: {} ({}/{} running)",
        s.name, s.state, s.running, s.desired
    );
    Ok(())
}

fn apps(client: &Client, json: bool) -> Result<()> {
    let list: Vec<AppStatus> = client.get("/v1/apps")?;
    if json {
        return print_json(&list);
    }
    // A NODE column once this host is in a cluster (every row then names its owner).
    let clustered = list.iter().any(|a| !a.node.is_empty());
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|a| {
            let mut row = vec![
                a.name.clone(),
                a.services
                    .iter()
                    .map(|s| match &s.auto {
                        Some(auto) => format!("{} {} ({auto})", s.name, s.desired),
                        None => s.name.clone(),
                    })
                    .collect::<Vec<_>>()
                    .join(","),
                format!("{}/{}", a.running, a.desired),
                match (&a.stale, &a.job, &a.config) {
                    (Some(s), _, _) => format!("{} (stale: {s})", a.state),
                    (None, None, _) if a.release.is_some() => {
                        format!("{} ({})", a.state, a.release.as_deref().unwrap_or_default())
                    }
                    (None, Some(job), _) => format!("job: {job}"),
                    (None, None, Some(c)) if c.out_of_date => format!(
                        "{} (config set {} changed: berth redeploy {})",
                        a.state, c.name, a.name
                    ),
                    (None, None, _) => a.state.to_string(),
                },
                time_ms(a.updated_ms),
            ];
            if clustered {
                row.push(a.node.clone());
            }
            row
        })
        .collect();
    let mut header = vec!["NAME", "SERVICES", "RUNNING", "STATE", "UPDATED"];
    if clustered {
        header.push("NODE");
    }
    table(&header, &rows);
    Ok(())
}

fn ps(client: &Client, app: Option<&str>, json: bool) -> Result<()> {
    let path = match app {
        Some(a) => format!("/v1/ps?app={a}"),
        None => "/v1/ps".into(),
    };
    let list: Vec<InstanceView> = client.get(&path)?;
    if json {
        return print_json(&list);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|i| {
            let ports = i
                .ports
                .iter()
                .map(|p| {
                    format!(
                        "{}:{}->{}/{}",
                        if p.host_ip.is_empty() {
                            "0.0.0.0"
                        } else {
                            &p.host_ip
                        },
                        p.host_port,
                        p.container_port,
                        p.protocol.as_str()
                    )
                })
                .collect::<Vec<_>>()
                .join(",");
            let mut state = i.state.clone();
            if let Some(c) = i.exit_code {
                state = format!("{state} ({c})");
            }
            if !i.health.is_empty() {
                state = format!("{state} ({})", i.health);
            }
            if !i.up_to_date {
                state.push_str(" outdated");
            }
            if let Some(s) = &i.stale {
                state = format!("{state} (stale: {s})");
            }
            vec![
                i.app.clone(),
                match &i.autoscale {
                    Some(a) => format!("{} {a}", i.service),
                    None => i.service.clone(),
                },
                i.slot.to_string(),
                i.version.clone(),
                i.container_id.clone(),
                i.image.clone(),
                state,
                ports,
                i.node.clone(),
                if i.status.is_empty() {
                    format!("created {}", age(i.created))
                } else {
                    i.status.clone()
                },
                if i.endpoints.is_empty() {
                    "-".into()
                } else {
                    i.endpoints.join(",")
                },
            ]
        })
        .collect();
    table(
        &[
            "APP",
            "SERVICE",
            "SLOT",
            "VERSION",
            "CONTAINER",
            "IMAGE",
            "STATE",
            "PORTS",
            "NODE",
            "STARTED",
            "ENDPOINTS",
        ],
        &rows,
    );
    Ok(())
}

fn scale(client: &Client, app: &str, args: &[String]) -> Result<()> {
    let mut services = BTreeMap::new();
    for a in args {
        let (s, n) = a
            .split_once('=')
            .with_context(|| format!("{a:?}: write SERVICE=N"))?;
        let n: u32 = n
            .parse()
            .with_context(|| format!("{a:?}: N must be a whole number"))?;
        services.insert(s.to_string(), n);
    }
    let s: AppStatus = client.post(&format!("/v1/apps/{app}/scale"), &ScaleRequest { services })?;
    print_status(&s)
}

fn events(client: &Client, app: Option<&str>, follow: bool, tail: i64, json: bool) -> Result<()> {
    let q = app.map(|a| format!("&app={a}")).unwrap_or_default();
    let mut after = 0;
    let mut first = true;
    loop {
        let path = if first {
            let wait = if follow { "&wait=25" } else { "" };
            format!("/v1/events?limit={tail}{wait}{q}")
        } else {
            format!("/v1/events?after={after}&wait=25{q}")
        };
        let list: Vec<crate::wire::Event> = client.get(&path)?;
        for e in &list {
            if json {
                println!("{}", serde_json::to_string(e)?);
            } else {
                let mut who = match (e.app.as_str(), e.service.as_str()) {
                    ("", _) => String::new(),
                    (a, "") => format!(" {a}"),
                    (a, s) => format!(" {a}/{s}"),
                };
                if !e.node.is_empty() {
                    who = format!(" [{}]{who}", e.node);
                }
                println!("{} {:<8}{} {}", time_ms(e.time_ms), e.kind, who, e.message);
            }
            after = after.max(e.id);
        }
        first = false;
        if !follow {
            return Ok(());
        }
    }
}

fn versions(client: &Client, target: &str, json: bool) -> Result<()> {
    let (app, svc) = app_service(target)?;
    let list: Vec<VersionView> = client.get(&format!("/v1/apps/{app}/services/{svc}/versions"))?;
    print_versions(&list, json)
}

fn autoscale(client: &Client, target: &str, json: bool) -> Result<()> {
    let path = match target.split_once('/') {
        Some(_) => {
            let (app, svc) = app_service(target)?;
            format!("/v1/apps/{app}/services/{svc}/autoscale")
        }
        None => format!("/v1/apps/{target}/autoscale"),
    };
    let list: Vec<crate::wire::ServiceAutoscale> = client.get(&path)?;
    if json {
        return print_json(&list);
    }
    for (i, s) in list.iter().enumerate() {
        if i > 0 {
            println!();
        }
        let p = &s.policy;
        let pct = |x: Option<f64>| x.map(|v| format!("{v}%")).unwrap_or_else(|| "-".into());
        println!(
            "{}/{}: {} instances ({})",
            s.app,
            s.service,
            s.instances,
            p.bounds()
        );
        println!(
            "  cpu: out above {}, in below {}; memory: out above {}, in below {}",
            pct(p.max_cpu),
            pct(p.cpu_low().filter(|_| p.max_cpu.is_some())),
            pct(p.max_memory),
            pct(p.memory_low().filter(|_| p.max_memory.is_some()))
        );
        println!(
            "  step {} out, 1 in; {} periods of {} s in a row; cool-down {} s{}",
            p.step,
            p.periods,
            p.period_seconds,
            p.cooldown_seconds,
            if p.min_instances == 0 {
                format!("; to zero after {} s without a request", p.idle_seconds)
            } else {
                String::new()
            }
        );
        println!("  now: {}", s.state);
        if !s.periods.is_empty() {
            let rows: Vec<Vec<String>> = s
                .periods
                .iter()
                .map(|x| {
                    vec![
                        time_ms(x.start_ms),
                        format!("{:.1}%", x.cpu_percent),
                        format!("{:.1}%", x.memory_percent),
                        x.samples.to_string(),
                    ]
                })
                .collect();
            table(&["PERIOD", "CPU", "MEMORY", "SAMPLES"], &rows);
        }
        for (at, why) in &s.decisions {
            println!("  {}  {why}", time_ms(*at));
        }
    }
    Ok(())
}

fn print_routes(list: &[crate::wire::RouteView], json: bool) -> Result<()> {
    if json {
        return print_json(&list);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .flat_map(|r| {
            r.services.iter().map(|s| {
                vec![
                    r.route.clone(),
                    s.service.clone(),
                    format!("{}%", s.weight),
                    s.ready.to_string(),
                    s.role.clone(),
                ]
            })
        })
        .collect();
    table(&["ROUTE", "SERVICE", "WEIGHT", "READY", "RELEASE"], &rows);
    Ok(())
}

fn print_versions(list: &[VersionView], json: bool) -> Result<()> {
    if json {
        return print_json(&list);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|v| {
            let mut state = v.state.clone();
            if !v.release.is_empty() {
                state.push_str(&format!(" ({})", v.release));
            }
            if !v.reason.is_empty() {
                state.push_str(&format!(": {}", v.reason));
            }
            vec![
                v.name.clone(),
                v.image.clone(),
                time_ms(v.created_ms),
                v.replicas.to_string(),
                if v.weight == v.set_weight {
                    format!("{}%", v.weight)
                } else {
                    format!("{}% (set {}%)", v.weight, v.set_weight)
                },
                state,
                v.message.clone(),
            ]
        })
        .collect();
    table(
        &[
            "VERSION", "IMAGE", "CREATED", "REPLICAS", "TRAFFIC", "STATE", "MESSAGE",
        ],
        &rows,
    );
    Ok(())
}

fn images(client: &Client, json: bool) -> Result<()> {
    let list: Vec<crate::wire::ImageInfo> = client.get("/v1/images")?;
    if json {
        return print_json(&list);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|i| {
            vec![
                if i.tags.is_empty() {
                    "<none>".into()
                } else {
                    i.tags.join(",")
                },
                i.id.trim_start_matches("sha256:")
                    .chars()
                    .take(12)
                    .collect(),
                format!("{:.1} MB", i.size as f64 / 1e6),
                age(i.created),
                i.containers.max(0).to_string(),
            ]
        })
        .collect();
    table(&["IMAGE", "ID", "SIZE", "CREATED", "CONTAINERS"], &rows);
    Ok(())
}

#[cfg(test)]
mod tests {
    /// Every subcommand's arguments are consistent (clap checks names, conflicts and
    /// defaults only when a command is built, so a clash would panic at a user's prompt).
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
