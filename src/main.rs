//! `berth`: parse the command line, set up logging, call into the library.

use berth::cli::{Cli, Command};
use clap::Parser;

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Agent(a) => run_agent(a),
        _ => {
            // A client command piped into `head` or `grep -q` ends quietly when the reader
            // goes, as Unix tools do (Rust ignores SIGPIPE, which turns it into a panic in
            // println!). The agent keeps ignoring it: a closed socket is an error there.
            // SAFETY: restoring the default disposition before any thread is started.
            let _ = unsafe {
                nix::sys::signal::signal(
                    nix::sys::signal::Signal::SIGPIPE,
                    nix::sys::signal::SigHandler::SigDfl,
                )
            };
            berth::cli::run(cli)
        }
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run_agent(flags: berth::config::AgentFlags) -> anyhow::Result<()> {
    limit_malloc_arenas();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cfg = berth::config::load_agent(&flags)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // SIGHUP reads the same file with the same flags again.
    let reload = Box::new(move || berth::config::load_agent(&flags));
    rt.block_on(berth::daemon::run(cfg, reload))?;
    Ok(())
}

/// glibc gives each thread that allocates its own arena, up to 8 per CPU; the agent's
/// threads (tokio's workers, blocking reads, log followers) then each keep free memory of
/// their own. One arena per CPU (at least 2) costs nothing measurable and keeps ~1 MiB
/// (BENCHMARKS, "Restructure"). An explicit `MALLOC_ARENA_MAX` wins.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        // SAFETY: mallopt only sets an allocator parameter; called before any thread starts.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, cpus.max(2) as libc::c_int);
        }
    }
}
