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
    let shim = weir_yarn_rm::shim::Shim::start(shim_settings).await.context("starting the YARN shim")?;
    let client = shim.client_address();
    println!("weir yarn: ResourceManager client protocol on {client}, scheduler on {} (broker {broker})", shim.scheduler_address());
    if let Some(dir) = args.hadoop_conf_dir {
        weir_yarn_rm::hadoop_conf::write(&dir, &client.to_string(), &shim.scheduler_address().to_string())
            .with_context(|| format!("writing the Hadoop configuration to {}", dir.display()))?;
        println!("  export HADOOP_CONF_DIR={}", dir.display());
    }
    super::shutdown_signal().await;
    shim.stop();
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args, Debug)]
pub struct NodeManagerArgs {
    /// The host the node manager is known by (its NodeId).
    #[arg(long)]
    host: String,
    /// ContainerManagementProtocol port (from the shim's offer).
    #[arg(long)]
    port: u16,
    /// Where to keep the resource cache (default: the working directory,
    /// the task's sandbox).
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// Given to containers as HADOOP_CONF_DIR.
    #[arg(long, value_name = "DIR")]
    hadoop_conf_dir: Option<PathBuf>,
}

/// `weir yarn-nodemanager`: serves ContainerManagementProtocol until
/// stopped. The NM key comes from the environment, never the command line.
pub async fn nodemanager_main(args: NodeManagerArgs) -> Result<ExitCode> {
    use weir_yarn_api::tokens::{NmKey, NM_KEY_ENV};
    let key = std::env::var(NM_KEY_ENV).with_context(|| format!("{NM_KEY_ENV} is not set (the YARN shim sets it)"))?;
    let key = NmKey::parse(&key).map_err(|e| anyhow::anyhow!("{NM_KEY_ENV}: {e}"))?;
    let work_dir = match args.work_dir {
        Some(d) => d,
        None => std::env::current_dir().context("finding the working directory")?,
    };
    let settings = weir_yarn_nm::service::NmSettings {
        host: args.host,
        port: args.port,
        work_dir,
        hadoop_conf_dir: args.hadoop_conf_dir,
        ipc: Default::default(),
    };
    let nm = weir_yarn_nm::service::NodeManager::start(key, settings).await.context("starting the node manager")?;
    println!("weir yarn-nodemanager: ContainerManagementProtocol on {}", nm.address());
    super::shutdown_signal().await;
    nm.stop();
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args, Debug)]
pub struct ContainerArgs {
    /// The port of this agent's node manager.
    #[arg(long)]
    nm_port: u16,
    /// The YARN container this task holds.
    #[arg(long)]
    container_id: String,
}

/// `weir yarn-container`: holds a container's resources until the AM
/// starts it, then runs it; exits with the container's exit code.
pub fn container_main(args: ContainerArgs) -> ExitCode {
    weir_yarn_nm::container::main(args.nm_port, &args.container_id)
}
