//! `weir broker`: the broker daemon in the foreground.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use weir_conf::Daemon;

use crate::settings::{self, Options};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address for gRPC and HTTP (broker.listen).
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
    /// State directory (broker.work.dir).
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
}

pub async fn main(options: &Options, args: Args) -> Result<ExitCode> {
    let mut config = settings::load(options, &[Daemon::Broker, Daemon::Agent], "")?;
    settings::apply_flag(&mut config, "broker.listen", args.listen)?;
    settings::apply_flag(&mut config, "broker.work.dir", args.work_dir.map(|p| p.display().to_string()))?;
    let (core, shell) = settings::broker(&config)?;
    let work_dir = config.get_path("broker.work.dir").map_err(|e| settings::ConfigProblem(e.to_string()))?;
    std::fs::create_dir_all(&work_dir)
        .map_err(|e| anyhow::anyhow!("cannot create broker.work.dir {}: {e}", work_dir.display()))?;
    let broker = weir_broker::run(core, shell).await?;
    println!("weir broker listening on {} (gRPC and HTTP: http://{}/state)", broker.local_addr(), broker.local_addr());
    let mut broker = broker;
    let ended_by_itself = tokio::select! {
        result = broker.finished() => Some(result),
        _ = super::shutdown_signal() => None,
    };
    match ended_by_itself {
        Some(result) => result?,
        None => broker.stop().await?,
    }
    Ok(ExitCode::SUCCESS)
}
