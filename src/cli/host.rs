//! Commands about this host and this binary rather than the agent: `version`, `doctor`,
//! and the hidden `generate` the packages use for completions and the man page.

use anyhow::{Context, Result, bail};
use clap::{Args, CommandFactory, Subcommand};
use std::path::PathBuf;

pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("BERTH_COMMIT"),
    ", built ",
    env!("BERTH_BUILD_DATE"),
    ")"
);

pub fn version(json: bool) -> Result<()> {
    if json {
        println!(
            "{}",
            serde_json::json!({
                "version": env!("CARGO_PKG_VERSION"),
                "commit": env!("BERTH_COMMIT"),
                "build_date": env!("BERTH_BUILD_DATE"),
            })
        );
    } else {
        println!("berth {}", env!("CARGO_PKG_VERSION"));
        println!("commit:     {}", env!("BERTH_COMMIT"));
        println!("build date: {}", env!("BERTH_BUILD_DATE"));
    }
    Ok(())
}

/// `berth doctor` takes the agent's own flags, so it checks what `berth agent` with the same
/// flags would use (config file, data dir, ports, engine).
#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub agent: crate::config::AgentFlags,
    #[arg(long)]
    pub json: bool,
}

/// Prints every check; fails (exit 1) when one failed.
pub fn doctor(a: &DoctorArgs) -> Result<()> {
    let cfg = crate::config::load_agent(&a.agent).context(
        "the agent's config does not load (fix it first: `berth doctor` reads the same file)",
    )?;
    let checks = crate::doctor::run(&cfg);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&checks)?);
    } else {
        for c in &checks {
            let level = match c.level {
                crate::doctor::Level::Ok => "ok",
                crate::doctor::Level::Warn => "warn",
                crate::doctor::Level::Fail => "FAIL",
            };
            println!("{level:<5} {:<9} {}", c.name, c.detail);
            if !c.fix.is_empty() {
                println!("{:<15} fix: {}", "", c.fix);
            }
        }
    }
    let failed = checks
        .iter()
        .filter(|c| c.level == crate::doctor::Level::Fail)
        .count();
    if failed > 0 {
        bail!("{failed} check(s) failed: see the fixes above");
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum GenerateCommand {
    /// Completion scripts for bash, zsh and fish, written into DIR.
    Completions { dir: PathBuf },
    /// The man page berth.1 (and one per subcommand), written into DIR.
    Man { dir: PathBuf },
}

pub fn generate(g: GenerateCommand) -> Result<()> {
    let mut cmd = super::Cli::command();
    match g {
        GenerateCommand::Completions { dir } => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            for shell in [
                clap_complete::Shell::Bash,
                clap_complete::Shell::Zsh,
                clap_complete::Shell::Fish,
            ] {
                let path = clap_complete::generate_to(shell, &mut cmd, "berth", &dir)
                    .with_context(|| {
                        format!("writing {shell} completions into {}", dir.display())
                    })?;
                println!("{}", path.display());
            }
        }
        GenerateCommand::Man { dir } => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(cmd, &dir)
                .with_context(|| format!("writing man pages into {}", dir.display()))?;
            println!("{}", dir.display());
        }
    }
    Ok(())
}
