//! `weir standalone`: a broker, one agent and the YARN shim in one
//! foreground process, on embedded defaults, for trying Weir on one
//! machine. It writes `WORK_DIR/hadoop-conf/` for YARN clients. Ctrl-C or
//! SIGTERM stops the shim, the agent (killing its tasks), then the broker.
//!
//! A YARN shim that cannot start (its port is taken, say) is reported and
//! left out: the pool itself still works.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use weir_conf::Daemon;

use crate::settings::{self, Options};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Base directory for broker and agent state (weir.work.dir).
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// Resources to offer instead of detecting them (agent.resources).
    #[arg(long, value_name = "SPEC")]
    resources: Option<String>,
    /// Broker address (broker.listen).
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
}

pub async fn main(options: &Options, args: Args) -> Result<ExitCode> {
    let mut config = settings::load(options, &[Daemon::Broker, Daemon::Agent, Daemon::YarnShim], "")?;
    settings::apply_flag(&mut config, "weir.work.dir", args.work_dir.map(|p| p.display().to_string()))?;
    settings::apply_flag(&mut config, "agent.resources", args.resources)?;
    settings::apply_flag(&mut config, "broker.listen", args.listen)?;
    let (core, shell) = settings::broker(&config)?;
    let broker = weir_broker::run(core, shell).await?;
    let broker_addr = broker.local_addr();
    // The agent follows the broker wherever it actually bound.
    settings::apply_flag(&mut config, "agent.broker", Some(broker_addr))?;
    let agent = settings::agent(&config, true)?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut agent_task = tokio::spawn(weir_agent::run(agent, async move {
        let _ = stop_rx.await;
    }));
    // Print the endpoints once the agent has registered, with the address
    // it really bound (the configured one may say port 0).
    let mut agent_line = format!("agent on {} (not registered yet)", config.get_str("agent.listen").unwrap_or_default());
    for _ in 0..50 {
        if let Some(a) = broker.state().agents.first() {
            agent_line = format!("agent {} on {}", a.id, a.http_address);
            break;
        }
        if agent_task.is_finished() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let yarn = start_yarn(&config, &broker_addr.to_string()).await;
    println!("weir standalone: broker {broker_addr} (gRPC + HTTP), {agent_line}");
    println!("  status:   weir status            state: http://{broker_addr}/state");
    println!("  run:      weir run -- echo hello");
    match &yarn {
        Ok((shim, conf_dir, default_fs)) => {
            println!("  yarn:     ResourceManager client protocol on {}, scheduler on {}", shim.client_address(), shim.scheduler_address());
            if let Some(web) = shim.web_address() {
                println!("  yarn:     ResourceManager REST API: http://{web}/ws/v1/cluster/info");
            }
            println!("  export HADOOP_CONF_DIR={}   (fs.defaultFS {default_fs})", conf_dir.display());
        }
        Err(err) => println!("  yarn:     not started: {err:#}"),
    }
    let agent_result = tokio::select! {
        // The agent ended on its own: something is wrong (port taken, …).
        result = &mut agent_task => result,
        _ = super::shutdown_signal() => {
            let _ = stop_tx.send(());
            agent_task.await
        }
    };
    if let Ok((shim, _, _)) = yarn {
        shim.stop();
    }
    broker.stop().await?;
    match agent_result {
        Ok(Ok(())) => Ok(ExitCode::SUCCESS),
        Ok(Err(err)) => Err(anyhow::Error::new(err).context("the agent stopped")),
        Err(join) => Err(anyhow::anyhow!("the agent crashed: {join}")),
    }
}

/// Starts the YARN shim on the broker and writes the Hadoop client
/// configuration naming it; returns the shim, that directory and the
/// default file system it names.
async fn start_yarn(config: &weir_conf::Config, broker: &str) -> Result<(weir_yarn_rm::shim::Shim, PathBuf, String)> {
    use anyhow::Context;
    let mut shim_settings = settings::yarn_shim(config, broker.to_owned())?;
    let conf_dir = config.get_path("weir.work.dir").map_err(|e| settings::ConfigProblem(e.to_string()))?.join("hadoop-conf");
    // Containers get the same configuration (one machine: same path).
    shim_settings.nm_hadoop_conf_dir = Some(conf_dir.clone());
    // Read before the shim starts: a bad key stops nothing half-started.
    let mut client_conf = settings::client_conf(config)?;
    let shim = weir_yarn_rm::shim::Shim::start(shim_settings).await.context("starting the YARN shim")?;
    let named = |a: std::net::SocketAddr| a.to_string();
    client_conf.name_shim(named(shim.client_address()), named(shim.scheduler_address()), shim.web_address().map(named));
    client_conf.name_admin(shim.admin_address().map(named));
    let written = client_conf.write(&conf_dir).map(|()| client_conf.effective_default_fs()).map_err(anyhow::Error::new);
    match written {
        Ok(default_fs) => Ok((shim, conf_dir, default_fs)),
        Err(err) => {
            shim.stop();
            Err(err.context(format!("writing the Hadoop configuration to {}", conf_dir.display())))
        }
    }
}
