//! Inside the client container: the scenario's native framework
//! (`weir testbed workload`) and the books reader (`weir testbed books`).
//!
//! The workload subscribes through ZooKeeper (following every failover),
//! keeps a few short tasks with unique ids running on whatever it is
//! offered, records every launch and every status update it receives in
//! `/testbed/runs/<run>/history.jsonl` (before acknowledging it), and
//! reconciles its open tasks every 15 s and after every re-subscription.
//! Each task's shell notes its own start and end in `exec/<task>` on the
//! shared testbed volume. When the launch phase ends it launches nothing
//! more and waits until every task it launched has ended (or the drain
//! time runs out), then tears down.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use weir_model::{AgentId, OfferId, ResourceSet, TaskId};
use weir_proto::convert::{resources_from_proto, resources_to_proto, task_state_from_proto};
use weir_proto::v1;
use weir_sdk::{Framework, FrameworkConfig};
use weir_testbed::history::{task_command, BookTask, Books, Event};
use weir_testbed::{now_ms, SimRng};

use super::docker::ZK;

/// Where runs are kept on the shared testbed volume.
pub const RUNS: &str = "/testbed/runs";

#[derive(clap::Args, Debug)]
pub struct WorkloadArgs {
    /// The run's id (its folder under /testbed/runs).
    #[arg(long)]
    run: String,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How long to keep launching.
    #[arg(long, value_parser = weir_conf::parse_duration)]
    duration: Duration,
    /// How long to wait afterwards for every task to end.
    #[arg(long, default_value = "240s", value_parser = weir_conf::parse_duration)]
    drain: Duration,
    /// Tasks kept running at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    #[arg(long, default_value = ZK)]
    broker: String,
}

struct Recorder {
    file: std::fs::File,
}

impl Recorder {
    fn note(&mut self, e: &Event) {
        if let Ok(line) = serde_json::to_string(e) {
            // One write per line, flushed: a killed workload loses at most
            // the line it was writing.
            let _ = self.file.write_all(format!("{line}\n").as_bytes());
        }
    }
}

struct Open {
    agent: AgentId,
}

pub async fn main(args: WorkloadArgs) -> Result<ExitCode> {
    let dir = PathBuf::from(RUNS).join(&args.run);
    let exec_dir = dir.join("exec");
    std::fs::create_dir_all(&exec_dir).with_context(|| format!("creating {}", exec_dir.display()))?;
    let file = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("history.jsonl"))?;
    let mut rec = Recorder { file };
    let mut config = FrameworkConfig::new(args.broker.clone(), "testbed-workload");
    // Long enough for any fault of a schedule: its tasks are never killed
    // because the workload was away while a broker failed over.
    config.failover_timeout = Duration::from_secs(600);
    config.reconnect = true;
    config.max_reconnect_attempts = u32::MAX;
    config.hostname = "client".into();
    let subscribe_deadline = Instant::now() + Duration::from_secs(120);
    let mut fw = loop {
        match Framework::subscribe(config.clone()).await {
            Ok(f) => break f,
            Err(e) if Instant::now() < subscribe_deadline => {
                eprintln!("workload: cannot subscribe yet: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e).context("subscribing"),
        }
    };
    let framework_id = fw.id().to_string();
    std::fs::write(dir.join("framework_id"), &framework_id)?;
    rec.note(&Event::Subscribed { at_ms: now_ms(), framework_id: framework_id.clone(), epoch: fw.leader_epoch() });
    eprintln!("workload: framework {framework_id} subscribed (epoch {})", fw.leader_epoch());

    let wanted = ResourceSet::parse("cpus:0.1;mem:16").expect("a resource spec");
    let mut rng = SimRng::new(args.seed);
    let mut open: BTreeMap<TaskId, Open> = BTreeMap::new();
    let mut launched = 0u64;
    let started = Instant::now();
    let mut next_reconcile = Instant::now() + Duration::from_secs(15);
    let mut suppressed = false;
    let exec_path = exec_dir.display().to_string();
    loop {
        let launching = started.elapsed() < args.duration;
        if !launching && open.is_empty() {
            break;
        }
        if started.elapsed() > args.duration + args.drain {
            eprintln!("workload: {} task(s) still open when the drain time ran out", open.len());
            break;
        }
        if !launching && !suppressed {
            let _ = fw.suppress().await;
            suppressed = true;
        }
        if Instant::now() >= next_reconcile && !open.is_empty() {
            reconcile(&fw, &open, &mut rec).await;
            next_reconcile = Instant::now() + Duration::from_secs(15);
        }
        let event = tokio::select! {
            e = fw.next_event() => e,
            _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
        };
        let event = match event {
            Ok(Some(e)) => e,
            Ok(None) => anyhow::bail!("the broker closed the stream for good"),
            Err(e) => {
                rec.note(&Event::Disconnected { at_ms: now_ms(), error: e.to_string() });
                return Err(e).context("the framework gave up reconnecting");
            }
        };
        match event.kind {
            Some(v1::event::Kind::Subscribed(s)) => {
                rec.note(&Event::Subscribed { at_ms: now_ms(), framework_id: s.framework_id.clone(), epoch: s.leader_epoch });
                eprintln!("workload: re-subscribed to epoch {}", s.leader_epoch);
                if s.framework_id != framework_id {
                    eprintln!("workload: the broker gave a NEW framework id {} (was {framework_id})", s.framework_id);
                }
                if !launching {
                    let _ = fw.suppress().await;
                }
                reconcile(&fw, &open, &mut rec).await;
            }
            Some(v1::event::Kind::Offers(offers)) => {
                for offer in offers.offers {
                    let offer_id = OfferId::new(offer.id.clone());
                    let mut tasks = Vec::new();
                    if launching {
                        let mut available = resources_from_proto("offer", &offer.resources).unwrap_or_default();
                        while open.len() + tasks.len() < args.concurrency {
                            let Ok(rest) = available.checked_sub(&wanted) else { break };
                            available = rest;
                            launched += 1;
                            let id = format!("tb{}-{launched:05}", args.seed);
                            let run_ms = rng.millis(200, 3000).as_millis() as u64;
                            let code = if rng.chance(0.1) { 3 } else { 0 };
                            tasks.push(v1::TaskInfo {
                                task_id: id.clone(),
                                name: "testbed".into(),
                                agent_id: offer.agent_id.clone(),
                                resources: resources_to_proto(&wanted),
                                command: Some(v1::CommandInfo {
                                    shell: true,
                                    value: task_command(&exec_path, &id, run_ms, code),
                                    ..Default::default()
                                }),
                                ..Default::default()
                            });
                        }
                    }
                    if tasks.is_empty() {
                        let _ = fw.decline(&[offer_id], Some(Duration::from_secs(if launching { 1 } else { 30 }))).await;
                        continue;
                    }
                    for t in &tasks {
                        rec.note(&Event::Launch { at_ms: now_ms(), task: t.task_id.clone(), agent_id: offer.agent_id.clone(), hostname: offer.hostname.clone() });
                        open.insert(TaskId::new(t.task_id.clone()), Open { agent: AgentId::new(offer.agent_id.clone()) });
                    }
                    if let Err(e) = fw.launch(&[offer_id], tasks, Some(Duration::from_millis(500))).await {
                        // The stream broke under the ACCEPT: the tasks may or
                        // may not have reached the broker; reconciliation
                        // tells (DROPPED or UNKNOWN if they did not).
                        eprintln!("workload: launch not sent: {e}");
                    }
                }
            }
            Some(v1::event::Kind::Update(update)) => {
                let Some(status) = update.status else { continue };
                let state = match task_state_from_proto("status.state", status.state) {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("workload: bad update: {e}");
                        continue;
                    }
                };
                rec.note(&Event::Update {
                    at_ms: now_ms(),
                    task: status.task_id.clone(),
                    state: state.name().to_owned(),
                    reason: status.reason.clone(),
                    source: v1::task_status::Source::try_from(status.source).map(|s| s.as_str_name().to_owned()).unwrap_or_default(),
                    uuid: status.uuid.iter().map(|b| format!("{b:02x}")).collect(),
                    agent_id: status.agent_id.clone(),
                    message: status.message.clone(),
                });
                if !status.uuid.is_empty() {
                    let _ = fw.acknowledge(&status).await;
                }
                if state.is_terminal() {
                    open.remove(&TaskId::new(status.task_id.clone()));
                }
            }
            _ => {}
        }
    }
    let left = open.len();
    if left == 0 {
        let _ = fw.teardown().await;
    }
    eprintln!("workload: launched {launched} task(s); {left} without a terminal state");
    Ok(if left == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

async fn reconcile(fw: &Framework, open: &BTreeMap<TaskId, Open>, rec: &mut Recorder) {
    if open.is_empty() {
        return;
    }
    let tasks: Vec<(TaskId, Option<AgentId>)> = open.iter().map(|(t, o)| (t.clone(), Some(o.agent.clone()))).collect();
    rec.note(&Event::Reconcile { at_ms: now_ms(), tasks: tasks.len() });
    let _ = fw.reconcile(tasks).await;
}

/// `weir testbed books`: the books of every broker that says it leads,
/// and of every agent, as JSON on stdout.
pub async fn books_main() -> Result<ExitCode> {
    let books = read_books().await;
    println!("{}", serde_json::to_string(&books)?);
    Ok(ExitCode::SUCCESS)
}

async fn read_books() -> Books {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client");
    let mut books = Books::default();
    let mut leader_doc: Option<weir_broker::core::state::StateDoc> = None;
    for i in 1..=3 {
        let node = format!("broker{i}");
        let Ok(resp) = client.get(format!("http://{node}:5050/state")).send().await else { continue };
        if !resp.status().is_success() {
            continue;
        }
        let Ok(doc) = resp.json::<weir_broker::core::state::StateDoc>().await else { continue };
        books.leaders.push(node.clone());
        if leader_doc.as_ref().is_none_or(|d| d.broker.leader_epoch < doc.broker.leader_epoch) {
            books.leader = node;
            books.epoch = doc.broker.leader_epoch;
            leader_doc = Some(doc);
        }
    }
    let Some(doc) = leader_doc else { return books };
    let live = |state: &str| !weir_testbed::check::is_terminal(state);
    books.broker_tasks = doc
        .tasks
        .iter()
        .filter(|t| live(&t.state))
        .map(|t| BookTask { framework_id: t.framework_id.clone(), task: t.id.clone(), agent_id: t.agent_id.clone(), state: t.state.clone() })
        .collect();
    books.gone_agents = doc.gone_agents.clone();
    let active: std::collections::BTreeSet<&str> = doc.frameworks.iter().filter(|f| f.active).map(|f| f.id.as_str()).collect();
    books.offers_to_inactive = doc.offers.iter().filter(|o| !active.contains(o.framework_id.as_str())).map(|o| format!("{} ({})", o.id, o.framework_id)).collect();
    for a in &doc.agents {
        books.agents.insert(a.id.clone(), (a.hostname.clone(), a.reachable && a.connected));
        let url = format!("http://{}/state", a.http_address);
        let read = async {
            let v: serde_json::Value = client.get(&url).send().await?.error_for_status()?.json().await?;
            Ok::<_, reqwest::Error>(v)
        };
        match read.await {
            Ok(v) => {
                let tasks = v["tasks"].as_array().cloned().unwrap_or_default();
                let mine: Vec<BookTask> = tasks
                    .iter()
                    .filter(|t| t["state"].as_str().is_some_and(live))
                    .map(|t| BookTask {
                        framework_id: t["framework_id"].as_str().unwrap_or_default().to_owned(),
                        task: t["task_id"].as_str().unwrap_or_default().to_owned(),
                        agent_id: a.id.clone(),
                        state: t["state"].as_str().unwrap_or_default().to_owned(),
                    })
                    .collect();
                books.agent_tasks.insert(a.id.clone(), mine);
            }
            Err(e) => {
                books.unreadable_agents.insert(a.id.clone(), format!("{url}: {e}"));
            }
        }
    }
    books
}
