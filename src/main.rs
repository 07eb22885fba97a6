//! `berth`: parse the command line, set up logging, call into the library.

use berth::cli::{Cli, Command};
use clap::Parser;

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Agent(a) => run_agent(a),
        _ => berth::cli::run(cli),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run_agent(a: berth::cli::AgentArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let flags = berth::config::AgentFlags {
        config: a.config,
        data_dir: a.data_dir,
        listen: a.listen,
        node_name: a.node_name,
        docker_host: a.docker_host,
        router_http: a.router_http,
        router_domain: a.router_domain,
    };
    let cfg = berth::config::load_agent(&flags)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(berth::agent::run(cfg))?;
    Ok(())
}
