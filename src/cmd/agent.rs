//! `weir agent`: the agent daemon in the foreground; and the operator's
//! maintenance commands on agents (`weir agent list|drain|maintain|
//! reactivate|mark-gone`), through the leading broker's Operator API.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use weir_conf::Daemon;
use weir_proto::v1;

use weir_broker::core::state::StateDoc;
use crate::cmd::status::{fetch_state, operator, p, refused, table, used_of, BrokerArg};
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
    /// Schedule a maintenance window ahead: the agent stays offered until
    /// it starts (its offers and frameworks with tasks there are told),
    /// then drains (tasks still there are killed) until it ends.
    Maintain {
        #[command(flatten)]
        broker: BrokerArg,
        /// When the machine goes away: `now`, `+DURATION` (e.g. +10m), an
        /// RFC 3339 time (2026-12-24T06:00:00Z) or Unix seconds.
        #[arg(long, value_name = "WHEN", value_parser = parse_when)]
        start: When,
        /// How long it stays away, e.g. 2h; it is offered again after.
        #[arg(long, value_name = "DURATION", value_parser = weir_conf::parse_duration)]
        duration: Duration,
        /// The agent's id, as `weir agent list` shows it.
        id: String,
    },
    /// Offer a draining or drained agent again, or cancel its maintenance window.
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

impl Args {
    /// `weir agent` runs the agent; `weir agent list|drain|…` are tools.
    pub fn is_daemon(&self) -> bool {
        self.command.is_none()
    }
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
        Some(AgentCommand::Maintain { broker, start, duration, id }) => {
            let unix_now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
            let window = v1::Unavailability { start: start.at(unix_now).as_secs_f64(), duration: duration.as_secs_f64() };
            let mut client = operator(options, broker).await?;
            let response = client.schedule_maintenance(v1::ScheduleMaintenanceRequest { agent_id: id, window: Some(window) }).await.map_err(refused)?;
            println!("{}", p(&response.into_inner().message));
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

/// A window's start as given on the command line.
#[derive(Clone, Copy, Debug, PartialEq)]
enum When {
    /// Since the Unix epoch.
    At(Duration),
    /// From now.
    In(Duration),
}

impl When {
    fn at(self, unix_now: Duration) -> Duration {
        match self {
            When::At(t) => t,
            When::In(d) => unix_now + d,
        }
    }
}

fn parse_when(text: &str) -> Result<When, String> {
    let text = text.trim();
    if text == "now" {
        return Ok(When::In(Duration::ZERO));
    }
    if let Some(rest) = text.strip_prefix('+') {
        return weir_conf::parse_duration(rest).map(When::In).map_err(|e| format!("{text:?}: {e}"));
    }
    if let Ok(seconds) = text.parse::<f64>() {
        if seconds.is_finite() && (0.0..1e11).contains(&seconds) {
            return Ok(When::At(Duration::from_secs_f64(seconds)));
        }
        return Err(format!("{text:?} is not a time in Unix seconds"));
    }
    match chrono::DateTime::parse_from_rfc3339(text) {
        Ok(t) if t.timestamp() >= 0 => Ok(When::At(Duration::from_millis(u64::try_from(t.timestamp_millis()).unwrap_or(0)))),
        _ => Err(format!("{text:?} is not `now`, `+DURATION`, an RFC 3339 time (2026-12-24T06:00:00Z) or Unix seconds")),
    }
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
    let mut t = table(&["AGENT", "HOSTNAME", "STATE", "MAINTENANCE", "KILLS IN", "WINDOW", "TASKS", "CPUS USED", "MEM USED"]);
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
        let window = match a.maintenance {
            Some(w) => {
                let now = unix_now.as_secs_f64();
                let length = seconds(w.end - w.start);
                if w.start > now { format!("in {}, for {length}", seconds(w.start - now)) } else { format!("ends in {}", seconds(w.end - now)) }
            }
            None => "-".to_owned(),
        };
        t.add_row(vec![
            p(&a.id),
            p(&a.hostname),
            state.to_owned(),
            drain.to_uppercase(),
            kills_in,
            window,
            a.tasks.to_string(),
            used_of(a.used.cpus, a.total.cpus),
            used_of(a.used.mem, a.total.mem),
        ]);
    }
    for id in &doc.gone_agents {
        t.add_row(vec![p(id), "-".into(), "-".into(), "GONE".into(), "-".into(), "-".into(), "0".into(), "-".into(), "-".into()]);
    }
    format!("{t}\n")
}

/// A span for a table: whole seconds, minutes or hours, rounded up.
fn seconds(s: f64) -> String {
    let s = s.max(0.0).ceil();
    if s < 120.0 {
        format!("{s}s")
    } else if s < 7200.0 {
        format!("{}m", (s / 60.0).ceil())
    } else {
        format!("{}h", (s / 3600.0).ceil())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_starts_read_as_an_operator_writes_them() {
        assert_eq!(parse_when("now"), Ok(When::In(Duration::ZERO)));
        assert_eq!(parse_when("+10m"), Ok(When::In(Duration::from_secs(600))));
        assert_eq!(parse_when("1800000000.5"), Ok(When::At(Duration::from_millis(1_800_000_000_500))));
        assert_eq!(parse_when("2027-01-01T00:00:00Z"), Ok(When::At(Duration::from_secs(1_798_761_600))));
        assert_eq!(parse_when("2027-01-01T01:00:00+01:00"), Ok(When::At(Duration::from_secs(1_798_761_600))));
        assert!(parse_when("tomorrow").unwrap_err().contains("is not `now`, `+DURATION`"));
        assert!(parse_when("+soon").unwrap_err().starts_with("\"+soon\": "));
        assert!(parse_when("-5").unwrap_err().contains("not a time in Unix seconds"));
        assert!(parse_when("1969-12-31T23:59:59Z").is_err());
        assert_eq!(When::In(Duration::from_secs(5)).at(Duration::from_secs(100)), Duration::from_secs(105));
    }
}
