//! `weir agent`: the agent daemon in the foreground.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use weir_conf::Daemon;

use crate::settings::{self, Options};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The broker's address (agent.broker).
    #[arg(long, value_name = "HOST:PORT")]
    broker: Option<String>,
    /// Address for the agent's HTTP endpoint (agent.listen).
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
    /// Resources to offer instead of detecting them (agent.resources),
    /// e.g. "cpus:4;mem:8192;disk:20000;ports:[31000-32000]".
    #[arg(long, value_name = "SPEC")]
    resources: Option<String>,
    /// Sandboxes and state (agent.work.dir).
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// Hostname reported to the broker (agent.hostname).
    #[arg(long)]
    hostname: Option<String>,
    /// Attributes, e.g. "rack:r1;zone:a" (agent.attributes).
    #[arg(long, value_name = "SPEC")]
    attributes: Option<String>,
}

pub async fn main(options: &Options, args: Args) -> Result<ExitCode> {
    let mut config = settings::load(options, &[Daemon::Agent], "")?;
    settings::apply_flag(&mut config, "agent.broker", args.broker)?;
    settings::apply_flag(&mut config, "agent.listen", args.listen)?;
    settings::apply_flag(&mut config, "agent.resources", args.resources)?;
    settings::apply_flag(&mut config, "agent.work.dir", args.work_dir.map(|p| p.display().to_string()))?;
    settings::apply_flag(&mut config, "agent.hostname", args.hostname)?;
    settings::apply_flag(&mut config, "agent.attributes", args.attributes)?;
    let agent = settings::agent(&config, false)?;
    println!("weir agent starting; broker {}, HTTP on {}", agent.broker, agent.listen);
    weir_agent::run(agent, super::shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}
