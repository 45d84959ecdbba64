//! `weir agent`: the agent daemon in the foreground; and the operator's
//! maintenance commands on agents (`weir agent list|drain|reactivate|
//! mark-gone`), through the leading broker's Operator API.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use weir_conf::Daemon;
use weir_proto::v1;
use weir_proto::v1::operator_client::OperatorClient;

use weir_broker::core::state::StateDoc;
use crate::cmd::status::{fetch_state, leader_address, p, table, used_of};
use crate::settings::{self, Options};

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<AgentCommand>,
    #[command(flatten)]
    daemon: DaemonArgs,
}

#[derive(clap::Args, Debug)]
struct DaemonArgs {
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

/// Where the broker is, for the maintenance commands.
#[derive(clap::Args, Debug)]
struct BrokerArg {
    /// Broker address, or zk://HOST:PORT,.../PATH to find the leader.
    #[arg(long, value_name = "HOST:PORT|zk://...")]
    broker: Option<String>,
}

#[derive(clap::Subcommand, Debug)]
enum AgentCommand {
    /// List agents with their state and maintenance (active, draining, drained, gone).
    List {
        #[command(flatten)]
        broker: BrokerArg,
    },
    /// Drain an agent: no new offers; its tasks are killed when the grace
    /// period ends; DRAINED once none is left.
    Drain {
        #[command(flatten)]
        broker: BrokerArg,
        /// How long its tasks may run on, e.g. 30s, 5m (default:
        /// broker.agent.drain.grace.default).
        #[arg(long, value_name = "DURATION", value_parser = weir_conf::parse_duration)]
        grace: Option<Duration>,
        /// Mark the agent gone once it is drained (it may not come back under its id).
        #[arg(long)]
        mark_gone: bool,
        /// The agent's id, as `weir agent list` shows it.
        id: String,
    },
    /// Offer a draining or drained agent again.
    Reactivate {
        #[command(flatten)]
        broker: BrokerArg,
        id: String,
    },
    /// Remove a drained agent for good.
    MarkGone {
        #[command(flatten)]
        broker: BrokerArg,
        id: String,
    },
}

pub async fn main(options: &Options, args: Args) -> Result<ExitCode> {
    match args.command {
        None => run_daemon(options, args.daemon).await,
        Some(AgentCommand::List { broker }) => list(options, broker).await,
        Some(AgentCommand::Drain { broker, grace, mark_gone, id }) => {
            let request = v1::DrainAgentRequest { agent_id: id, grace_seconds: grace.map(|g| g.as_secs_f64()), mark_gone };
            let mut client = operator(options, broker).await?;
            let response = client.drain_agent(request).await.map_err(refused)?.into_inner();
            println!("{}", p(&response.message));
            Ok(ExitCode::SUCCESS)
        }
        Some(AgentCommand::Reactivate { broker, id }) => {
            let mut client = operator(options, broker).await?;
            let response = client.reactivate_agent(v1::ReactivateAgentRequest { agent_id: id }).await.map_err(refused)?;
            println!("{}", p(&response.into_inner().message));
            Ok(ExitCode::SUCCESS)
        }
        Some(AgentCommand::MarkGone { broker, id }) => {
            let mut client = operator(options, broker).await?;
            let response = client.mark_agent_gone(v1::MarkAgentGoneRequest { agent_id: id }).await.map_err(refused)?;
            println!("{}", p(&response.into_inner().message));
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn run_daemon(options: &Options, args: DaemonArgs) -> Result<ExitCode> {
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

fn refused(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("the broker refused: {}", status.message())
}

async fn operator(options: &Options, broker: BrokerArg) -> Result<OperatorClient<tonic::transport::Channel>> {
    let config = settings::load(options, &[Daemon::Broker], "warn")?;
    let broker = settings::broker_address(&config, broker.broker)?;
    let address = leader_address(&broker).await?;
    OperatorClient::connect(weir_sdk::endpoint(&address))
        .await
        .with_context(|| format!("cannot reach the broker at {address} (is `weir standalone` or `weir broker` running?)"))
}

async fn list(options: &Options, broker: BrokerArg) -> Result<ExitCode> {
    let config = settings::load(options, &[Daemon::Broker], "warn")?;
    let broker = settings::broker_address(&config, broker.broker)?;
    let (_, doc) = fetch_state(&broker).await?;
    let unix_now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    print!("{}", render_list(&doc, unix_now));
    Ok(ExitCode::SUCCESS)
}

/// The agents as a table: connection state, maintenance, and for a
/// draining agent how long until its tasks are killed.
pub fn render_list(doc: &StateDoc, unix_now: Duration) -> String {
    let mut t = table(&["AGENT", "HOSTNAME", "STATE", "MAINTENANCE", "KILLS IN", "TASKS", "CPUS USED", "MEM USED"]);
    for a in &doc.agents {
        let state = match (a.reachable, a.connected) {
            (true, true) => "reachable",
            (true, false) => "disconnected",
            _ => "UNREACHABLE",
        };
        let kills_in = match a.drain_deadline {
            Some(deadline) => {
                let left = deadline - unix_now.as_secs_f64();
                if left > 0.0 { format!("{}s", left.ceil()) } else { "due".to_owned() }
            }
            None => "-".to_owned(),
        };
        let drain = if a.drain.is_empty() { "active" } else { a.drain.as_str() };
        t.add_row(vec![
            p(&a.id),
            p(&a.hostname),
            state.to_owned(),
            drain.to_uppercase(),
            kills_in,
            a.tasks.to_string(),
            used_of(a.used.cpus, a.total.cpus),
            used_of(a.used.mem, a.total.mem),
        ]);
    }
    for id in &doc.gone_agents {
        t.add_row(vec![p(id), "-".into(), "-".into(), "GONE".into(), "-".into(), "0".into(), "-".into(), "-".into()]);
    }
    format!("{t}\n")
}
