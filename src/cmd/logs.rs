//! `weir logs TASK_ID [--follow] [--stderr]`: a task's output, read from
//! its agent's sandbox through the agent's HTTP endpoint.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};
use tokio::sync::watch;
use weir_conf::Daemon;

use super::sandbox::{copy_output, Stream};
use crate::settings::{self, Options};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The task (running, or among the broker's recently completed tasks).
    task_id: String,
    /// The task's framework, when several frameworks used the same task id.
    #[arg(long)]
    framework: Option<String>,
    /// Keep printing new output until the task ends.
    #[arg(long, short = 'f')]
    follow: bool,
    /// Show stderr instead of stdout.
    #[arg(long)]
    stderr: bool,
    /// Broker address (default: broker.listen).
    #[arg(long, value_name = "HOST:PORT")]
    broker: Option<String>,
}

pub async fn main(options: &Options, args: Args) -> Result<ExitCode> {
    let config = settings::load(options, &[Daemon::Broker], "warn")?;
    // Ids never hold path separators; refuse anything that tries.
    weir_model::ids::validate_id("task id", &args.task_id).map_err(settings::ConfigProblem)?;
    if let Some(f) = &args.framework {
        weir_model::ids::validate_id("framework id", f).map_err(settings::ConfigProblem)?;
    }
    let broker = settings::broker_address(&config, args.broker.clone())?;
    let (_, state) = super::status::fetch_state(&broker).await?;
    let matches: Vec<_> = state
        .tasks
        .iter()
        .map(|t| (t, true))
        .chain(state.completed_tasks.iter().map(|t| (t, false)))
        .filter(|(t, _)| t.id == args.task_id && args.framework.as_ref().is_none_or(|f| &t.framework_id == f))
        .collect();
    let (task, live) = match matches.as_slice() {
        [] => bail!("no task {:?} is known to the broker at {broker} (running or recently completed)", args.task_id),
        [one] => *one,
        many => {
            let frameworks: Vec<_> = many.iter().map(|(t, _)| t.framework_id.as_str()).collect();
            bail!("task id {:?} is used by several frameworks ({}); pick one with --framework", args.task_id, super::printable(&frameworks.join(", ")))
        }
    };
    let Some(agent) = state.agents.iter().find(|a| a.id == task.agent_id) else {
        bail!("the agent {} of task {} is no longer known to the broker", super::printable(&task.agent_id), super::printable(&task.id))
    };
    let stream = if args.stderr { Stream::Stderr } else { Stream::Stdout };
    let (done_tx, done_rx) = watch::channel(!(args.follow && live));
    let (framework, task_id) = (task.framework_id.clone(), task.id.clone());
    if args.follow && live {
        // Watch the broker's books; stop following once the task has ended.
        let broker = broker.clone();
        let (framework, task_id) = (framework.clone(), task_id.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let ended = match super::status::fetch_state(&broker).await {
                    Ok((_, s)) => !s.tasks.iter().any(|t| t.id == task_id && t.framework_id == framework),
                    Err(_) => true,
                };
                if ended {
                    let _ = done_tx.send(true);
                    return;
                }
            }
        });
    }
    copy_output(&agent.http_address, &framework, &task_id, &[stream], done_rx)
        .await
        .map_err(|e| anyhow::anyhow!("reading the output of {task_id}: {}", super::printable(&e.to_string())))?;
    Ok(ExitCode::SUCCESS)
}
