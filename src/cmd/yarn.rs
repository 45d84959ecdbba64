//! `weir yarn`: the YARN shim in the foreground. It subscribes to a broker
//! as a framework and serves YARN's ApplicationClientProtocol, so unchanged
//! Hadoop clients (`spark-submit --master yarn`, the `yarn` CLI) can submit
//! to and inspect the pool.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use weir_conf::Daemon;

use crate::settings::{self, Options};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Broker to subscribe to (default: broker.listen).
    #[arg(long, value_name = "HOST:PORT")]
    broker: Option<String>,
    /// Address for YARN clients (yarn-shim.client.address).
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
    /// Also write a Hadoop client configuration (yarn-site.xml,
    /// core-site.xml) naming this shim into DIR.
    #[arg(long, value_name = "DIR")]
    hadoop_conf_dir: Option<PathBuf>,
}

pub async fn main(options: &Options, args: Args) -> Result<ExitCode> {
    let mut config = settings::load(options, &[Daemon::YarnShim, Daemon::Broker], "")?;
    settings::apply_flag(&mut config, "yarn-shim.client.address", args.listen)?;
    let broker = settings::broker_address(&config, args.broker)?;
    let shim_settings = settings::yarn_shim(&config, broker.clone())?;
    let scheduler = config.get_str("yarn-shim.scheduler.address").map_err(|e| settings::ConfigProblem(e.to_string()))?;
    let shim = weir_yarn_shim::shim::Shim::start(shim_settings).await.context("starting the YARN shim")?;
    let client = shim.client_address();
    println!("weir yarn: ResourceManager client protocol on {client} (broker {broker})");
    if let Some(dir) = args.hadoop_conf_dir {
        weir_yarn_shim::hadoop_conf::write(&dir, &client.to_string(), &scheduler)
            .with_context(|| format!("writing the Hadoop configuration to {}", dir.display()))?;
        println!("  export HADOOP_CONF_DIR={}", dir.display());
    }
    super::shutdown_signal().await;
    shim.stop();
    Ok(ExitCode::SUCCESS)
}
