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
    let mut shim_settings = settings::yarn_shim(&config, broker.clone())?;
    let mut client_conf = settings::client_conf(&config)?;
    // Node managers give containers the written configuration: it names
    // this shim's scheduler port, which ApplicationMasters need.
    shim_settings.nm_hadoop_conf_dir = args.hadoop_conf_dir.clone();
    let shim = weir_yarn_rm::shim::Shim::start(shim_settings).await.context("starting the YARN shim")?;
    let client = shim.client_address();
    println!("weir yarn: ResourceManager client protocol on {client}, scheduler on {} (broker {broker})", shim.scheduler_address());
    if let Some(dir) = args.hadoop_conf_dir {
        // Clients and node managers on other machines reach a shim that
        // listens on 0.0.0.0 by this host's name.
        let host = weir_agent::detect::hostname();
        let named = |a: std::net::SocketAddr| weir_agent::detect::advertised(a, &host);
        client_conf.name_shim(named(client), named(shim.scheduler_address()), shim.web_address().map(named));
        client_conf.name_admin(shim.admin_address().map(named));
        client_conf.write(&dir).with_context(|| format!("writing the Hadoop configuration to {}", dir.display()))?;
        println!("  export HADOOP_CONF_DIR={}   (fs.defaultFS {})", dir.display(), client_conf.effective_default_fs());
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
    /// Web port for container logs (yarn-shim.nodemanager.webapp.port).
    #[arg(long)]
    http_port: Option<u16>,
    /// mapreduce_shuffle's port (yarn-shim.nodemanager.shuffle.port).
    #[arg(long)]
    shuffle_port: Option<u16>,
    /// Containers run as their users (LinuxContainerExecutor): the shim
    /// says so when yarn-shim.nodemanager.container-executor.class says it.
    #[arg(long)]
    linux_container_executor: bool,
    /// With --linux-container-executor: every container runs as this user
    /// (nonsecure-mode.local-user), not as its application's.
    #[arg(long, value_name = "USER", requires = "linux_container_executor")]
    nonsecure_local_user: Option<String>,
}

/// `weir yarn-nodemanager`: serves ContainerManagementProtocol until
/// stopped. The NM key comes from the task's secrets, never the command
/// line or the environment.
pub async fn nodemanager_main(options: &Options, args: NodeManagerArgs) -> Result<ExitCode> {
    let mut config = settings::load(options, &[Daemon::YarnShim], "")?;
    settings::apply_flag(&mut config, "yarn-shim.nodemanager.webapp.port", args.http_port)?;
    settings::apply_flag(&mut config, "yarn-shim.nodemanager.shuffle.port", args.shuffle_port)?;
    let key = read_nm_key()?;
    let work_dir = match args.work_dir {
        Some(d) => d,
        None => std::env::current_dir().context("finding the working directory")?,
    };
    let mut settings = weir_yarn_nm::service::NmSettings::new(args.host, args.port, work_dir);
    settings.hadoop_conf_dir = args.hadoop_conf_dir;
    nodemanager_settings(&config, &mut settings)?;
    if args.linux_container_executor {
        settings.linux_executor = Some(weir_yarn_nm::service::LinuxExecutor { local_user: args.nonsecure_local_user });
    }
    let nm = weir_yarn_nm::service::NodeManager::start(key, settings).await.context("starting the node manager")?;
    println!("weir yarn-nodemanager: ContainerManagementProtocol on {}, web (container logs) on {}", nm.address(), nm.http_address());
    if let Some(shuffle) = nm.shuffle_address() {
        println!("  mapreduce_shuffle on {shuffle}");
    }
    super::shutdown_signal().await;
    nm.stop();
    Ok(ExitCode::SUCCESS)
}

/// The NM key, from the secret file the shim had the agent write
/// (`$WEIR_SECRETS_DIR/yarn-nm-key`). The file is deleted once read: the
/// containers run as the node manager's user, and need not find it.
fn read_nm_key() -> Result<weir_yarn_api::tokens::NmKey> {
    use weir_yarn_api::tokens::{NmKey, NM_KEY_SECRET};
    let env = weir_model::task::SECRETS_DIR_ENV;
    let dir = std::env::var_os(env).with_context(|| format!("{env} is not set: the YARN shim gives its node managers the secret {NM_KEY_SECRET}"))?;
    let path = PathBuf::from(dir).join(NM_KEY_SECRET);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading the NM key from {}", path.display()))?;
    let key = NmKey::parse(&text).map_err(|e| anyhow::anyhow!("the NM key in {}: {e}", path.display()))?;
    if let Err(e) = std::fs::remove_file(&path) {
        tracing::warn!(path = %path.display(), error = %e, "cannot delete the NM key file after reading it");
    }
    Ok(key)
}

/// The node manager's keys (yarn-shim.nodemanager.*) into its settings.
fn nodemanager_settings(config: &weir_conf::Config, s: &mut weir_yarn_nm::service::NmSettings) -> Result<()> {
    let problem = |e: weir_conf::ConfError| anyhow::Error::new(settings::ConfigProblem(e.to_string()));
    let list = |key: &str| -> Result<Vec<String>> {
        Ok(config.get_list(key).map_err(problem)?.into_iter().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()).collect())
    };
    s.ipc = settings::ipc_server(config, "yarn-shim.nodemanager.ipc.max.frame.size")?;
    s.http_port = config.get_u16("yarn-shim.nodemanager.webapp.port").map_err(problem)?;
    s.shuffle_port = config.get_u16("yarn-shim.nodemanager.shuffle.port").map_err(problem)?;
    s.aux_services = list("yarn-shim.nodemanager.aux-services")?;
    // Empty (the default) reads as unset: the built-in list stays.
    let whitelist = config.get_list("yarn-shim.nodemanager.env-whitelist").unwrap_or_default();
    let whitelist: Vec<String> = whitelist.into_iter().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()).collect();
    if !whitelist.is_empty() {
        s.env_whitelist = whitelist;
    }
    s.admin_env = config.get_str("yarn-shim.nodemanager.admin-env").map_err(problem)?;
    s.user_home_dir = config.get_str("yarn-shim.nodemanager.user-home-dir").map_err(problem)?;
    // An empty value reads as unset, which is what these two default to.
    let java_home = config.get_str("yarn-shim.nodemanager.java.home").unwrap_or_default();
    if !java_home.trim().is_empty() {
        s.node_env.push(("JAVA_HOME".into(), java_home.trim().to_owned()));
    }
    let hadoop_home = config.get_str("yarn-shim.nodemanager.hadoop.home").unwrap_or_default();
    if !hadoop_home.trim().is_empty() {
        // One installation holds common, hdfs, yarn and mapreduce, as a
        // Hadoop tarball lays them out.
        for name in ["HADOOP_HOME", "HADOOP_COMMON_HOME", "HADOOP_HDFS_HOME", "HADOOP_YARN_HOME", "HADOOP_MAPRED_HOME"] {
            s.node_env.push((name.into(), hadoop_home.trim().to_owned()));
        }
    }
    Ok(())
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
