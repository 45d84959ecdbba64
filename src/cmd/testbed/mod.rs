//! `weir testbed`: a real multi-machine Weir cluster on one host, in
//! Docker containers (docker/compose.yml), with faults injected.
//!
//! - `build`: the images (docker/build.sh: debootstrap, `docker import`,
//!   cached by content hash);
//! - `up [--agents N]`: start the cluster and wait until it is healthy (a
//!   leader elected, every agent registered, every YARN node RUNNING);
//! - `down`: remove its containers, network and volumes, nothing else;
//! - `status`: who leads, which nodes run;
//! - `fault …`: kill -9, restart, pause, partition, delay, loss, fill a
//!   disk, heal — each logged with a timestamp;
//! - `scenario`: the workload under a seeded fault schedule, then the
//!   checker (`weir-testbed`'s `check`);
//! - `check DIR`: the checker again over a saved run.
//!
//! Run on the host (as root or a member of the docker group). The
//! workload itself (`weir testbed workload`, hidden) runs in the client
//! container.

mod docker;
mod faults;
mod measure;
mod scenario;
mod workload;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use weir_broker::core::state::StateDoc;

use crate::settings::Options;
use docker::Compose;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: TestbedCommand,
}

#[derive(clap::Subcommand, Debug)]
enum TestbedCommand {
    /// Build the images (docker/build.sh), reusing what is built.
    Build,
    /// Build if needed, start the cluster, wait until it is healthy.
    Up(UpArgs),
    /// Remove the cluster: its containers, network and volumes.
    Down,
    /// Who leads, and each node's state.
    Status,
    /// Inject a fault (logged with a timestamp).
    Fault(faults::FaultArgs),
    /// Run the workload under a seeded fault schedule, then check it.
    Scenario(scenario::ScenarioArgs),
    /// Time failover, partition detection and recovery (for docs/BENCHMARKS.md).
    Measure(measure::MeasureArgs),
    /// Check a saved scenario run again.
    Check {
        /// The run's folder (as `scenario` printed it).
        dir: std::path::PathBuf,
    },
    /// The scenario's framework (runs inside the client container).
    #[command(hide = true)]
    Workload(workload::WorkloadArgs),
    /// The books of the leader and the agents, as JSON (inside the client).
    #[command(hide = true)]
    Books,
}

#[derive(clap::Args, Debug, Clone)]
pub struct UpArgs {
    /// How many agents (compose.yml has four; more are generated).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=32))]
    agents: u16,
    /// Use the images as they are (do not run docker/build.sh).
    #[arg(long)]
    no_build: bool,
    /// How long to wait for the cluster to become healthy.
    #[arg(long, default_value = "180s", value_parser = weir_conf::parse_duration)]
    timeout: Duration,
}

impl Args {
    /// The workload is a framework that runs for the whole scenario; the
    /// rest are tools.
    pub fn is_daemon(&self) -> bool {
        matches!(self.command, TestbedCommand::Workload(_))
    }
}

pub async fn main(options: &Options, args: Args) -> Result<ExitCode> {
    let _ = options;
    match args.command {
        TestbedCommand::Workload(a) => return workload::main(a).await,
        TestbedCommand::Books => return workload::books_main().await,
        TestbedCommand::Check { dir } => return scenario::check_main(&dir),
        _ => {}
    }
    if let Err(why) = docker::daemon_available() {
        bail!("the testbed needs Docker: {why}");
    }
    match args.command {
        TestbedCommand::Build => {
            build()?;
            Ok(ExitCode::SUCCESS)
        }
        TestbedCommand::Up(a) => {
            up(&a).await?;
            Ok(ExitCode::SUCCESS)
        }
        TestbedCommand::Down => {
            down()?;
            Ok(ExitCode::SUCCESS)
        }
        TestbedCommand::Status => status().await,
        TestbedCommand::Fault(a) => faults::main(a).await,
        TestbedCommand::Scenario(a) => scenario::main(a).await,
        TestbedCommand::Measure(a) => measure::main(a).await,
        TestbedCommand::Workload(_) | TestbedCommand::Books | TestbedCommand::Check { .. } => unreachable!(),
    }
}

/// docker/build.sh, its output shown as it goes.
pub fn build() -> Result<()> {
    let dir = docker::docker_dir()?;
    let script = dir.join("build.sh");
    let status = std::process::Command::new("bash")
        .arg(&script)
        .status()
        .with_context(|| format!("cannot run {}", script.display()))?;
    if !status.success() {
        bail!("{} failed ({status})", script.display());
    }
    Ok(())
}

/// The services to start for `agents` agents.
fn services_for(agents: u16) -> Vec<String> {
    let mut s: Vec<String> = ["zk1", "zk2", "zk3", "broker1", "broker2", "broker3"].iter().map(|s| (*s).to_owned()).collect();
    s.extend((1..=agents).map(|i| format!("agent{i}")));
    s.extend(["yarn".to_owned(), "client".to_owned()]);
    s
}

pub async fn up(args: &UpArgs) -> Result<Health> {
    if !args.no_build {
        build()?;
    }
    let dir = docker::docker_dir()?;
    let extra = docker::extra_agents_file();
    if args.agents > 4 {
        std::fs::create_dir_all(docker::cache_dir())?;
        std::fs::write(&extra, docker::extra_agents_yaml(&dir.join("compose.yml"), args.agents.into()))?;
    } else if extra.exists() {
        // Leftover agents of an earlier, bigger cluster go with --remove-orphans.
        let _ = std::fs::remove_file(&extra);
    }
    let compose = Compose::new(dir);
    let services = services_for(args.agents);
    println!("weir testbed: starting {} nodes ({} agents) as compose project {}", services.len(), args.agents, docker::PROJECT);
    docker::run(compose.command().args(["up", "-d", "--remove-orphans"]).args(&services))?;
    let started = Instant::now();
    let health = wait_healthy(args.agents.into(), args.timeout).await?;
    println!("weir testbed: healthy after {:.0} s: {}", started.elapsed().as_secs_f64(), health.summary());
    print_urls(&health);
    Ok(health)
}

pub fn down() -> Result<()> {
    let dir = docker::docker_dir()?;
    let compose = Compose::new(dir);
    println!("weir testbed: removing the containers, network and volumes of compose project {}", docker::PROJECT);
    // A paused container cannot be stopped: unpause first.
    for s in docker::services()? {
        if docker::state(&s).is_ok_and(|st| st == "paused") {
            let _ = docker::container_verb(&["unpause"], &s);
        }
    }
    docker::run(compose.command().args(["down", "--volumes", "--remove-orphans", "--timeout", "5"]))?;
    let _ = std::fs::remove_file(docker::extra_agents_file());
    println!("weir testbed: down (images kept; `docker image ls 'weir-testbed*'`)");
    Ok(())
}

/// What `up` waits for.
#[derive(Debug, Clone, Default)]
pub struct Health {
    /// Brokers that serve as leader (by node), with their epochs.
    pub leaders: Vec<(String, u64)>,
    pub agents_registered: usize,
    pub agents_reachable: usize,
    pub yarn_nodes_running: usize,
    pub state: Option<StateDoc>,
}

impl Health {
    pub fn leader(&self) -> Option<&str> {
        match self.leaders.as_slice() {
            [(node, _)] => Some(node),
            _ => None,
        }
    }

    pub fn ok(&self, agents: usize) -> bool {
        self.leader().is_some() && self.agents_reachable == agents && self.agents_registered == agents && self.yarn_nodes_running == agents
    }

    pub fn summary(&self) -> String {
        let leader = match self.leaders.as_slice() {
            [] => "no leader".to_owned(),
            [(n, e)] => format!("leader {n} (epoch {e})"),
            many => format!("{} brokers lead ({many:?})", many.len()),
        };
        format!(
            "{leader}, {} agents registered ({} reachable), {} YARN nodes RUNNING",
            self.agents_registered, self.agents_reachable, self.yarn_nodes_running
        )
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client")
}

/// The cluster's health, as seen from the host through the published ports.
pub async fn health() -> Health {
    let client = http();
    let mut h = Health::default();
    for (i, port) in docker::BROKER_PORTS.iter().enumerate() {
        let Ok(resp) = client.get(format!("http://127.0.0.1:{port}/state")).send().await else { continue };
        if !resp.status().is_success() {
            continue; // a standby redirects to the leader
        }
        let Ok(doc) = resp.json::<StateDoc>().await else { continue };
        h.leaders.push((format!("broker{}", i + 1), doc.broker.leader_epoch));
        if h.state.as_ref().is_none_or(|s| s.broker.leader_epoch < doc.broker.leader_epoch) {
            h.state = Some(doc);
        }
    }
    if let Some(doc) = &h.state {
        h.agents_registered = doc.agents.len();
        h.agents_reachable = doc.agents.iter().filter(|a| a.reachable && a.connected).count();
    }
    let url = format!("http://127.0.0.1:{}/ws/v1/cluster/nodes", docker::YARN_WEB_PORT);
    if let Ok(resp) = client.get(url).send().await {
        if let Ok(v) = resp.json::<serde_json::Value>().await {
            h.yarn_nodes_running = v["nodes"]["node"].as_array().map_or(0, |n| n.iter().filter(|n| n["state"] == "RUNNING").count());
        }
    }
    h
}

pub async fn wait_healthy(agents: usize, timeout: Duration) -> Result<Health> {
    let deadline = Instant::now() + timeout;
    let mut last_said = String::new();
    loop {
        let h = health().await;
        if h.ok(agents) {
            return Ok(h);
        }
        let now = h.summary();
        if now != last_said {
            println!("weir testbed: waiting: {now}");
            last_said = now;
        }
        // A daemon that exited will not come back by waiting.
        for s in docker::services().unwrap_or_default() {
            if docker::state(&s).is_ok_and(|st| st == "exited") {
                let id = docker::container(&s).ok().flatten().unwrap_or_default();
                let logs = std::process::Command::new("docker").args(["logs", "--tail", "5", &id]).output();
                let tail = logs.map(|o| format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))).unwrap_or_default();
                bail!("node {s} exited while the testbed was starting; its last lines:\n{}", tail.trim_end());
            }
        }
        if Instant::now() > deadline {
            bail!(
                "the testbed is not healthy after {:.0} s: {} (want one leader, {agents} agents, {agents} YARN nodes; `docker-compose -p {} logs` tells more)",
                timeout.as_secs_f64(),
                h.summary(),
                docker::PROJECT
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn print_urls(h: &Health) {
    let client = docker::container("client").ok().flatten().unwrap_or_else(|| format!("{}_client_1", docker::PROJECT));
    for (i, port) in docker::BROKER_PORTS.iter().enumerate() {
        let node = format!("broker{}", i + 1);
        let role = if h.leader() == Some(node.as_str()) { "leader" } else { "standby: redirects to the leader by its name" };
        println!("  {node}:  http://127.0.0.1:{port}/ui/   ({role})");
    }
    println!("  YARN:     http://127.0.0.1:{}/cluster   (REST: /ws/v1/cluster/nodes)", docker::YARN_WEB_PORT);
    println!("  client:   docker exec -it {} bash   (weir status; weir run -- hostname; yarn node -list)", &client[..client.len().min(12)]);
    println!("  faults:   weir testbed fault --help      down: weir testbed down");
}

async fn status() -> Result<ExitCode> {
    let h = health().await;
    println!("{}", h.summary());
    for s in docker::services()? {
        let state = docker::state(&s).unwrap_or_else(|e| e.to_string());
        let ip = if state == "running" || state == "paused" { docker::ip(&s).unwrap_or_default() } else { String::new() };
        println!("  {s:<9} {state:<8} {ip}");
    }
    Ok(if h.leader().is_some() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

#[cfg(test)]
mod tests {
    #[test]
    fn up_starts_the_ensemble_brokers_agents_shim_and_client() {
        let s = super::services_for(2);
        assert_eq!(s, ["zk1", "zk2", "zk3", "broker1", "broker2", "broker3", "agent1", "agent2", "yarn", "client"]);
    }
}
