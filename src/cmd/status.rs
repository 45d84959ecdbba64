//! `weir status [--json]`: the broker's `/state`, as tables or raw JSON.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use comfy_table::{presets, Table};
use weir_broker::core::state::{ResourcesDoc, StateDoc};
use weir_conf::Daemon;

use crate::settings::{self, Options};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Broker address, or zk://HOST:PORT,.../PATH to find the leader
    /// (default: broker.listen, where a local broker listens).
    #[arg(long, value_name = "HOST:PORT|zk://...")]
    broker: Option<String>,
    /// Print the broker's /state document as it is.
    #[arg(long)]
    json: bool,
}

/// The brokers in the election behind a `zk://` address (leader first),
/// or none for a plain address.
pub async fn brokers_of(broker: &str) -> Result<Vec<weir_ha::Contender>> {
    if !weir_ha::ZkAddress::is_zk(broker) {
        return Ok(Vec::new());
    }
    let zk = weir_ha::ZkAddress::parse(broker)?;
    let contenders = weir_ha::zk::contenders(&zk, Duration::from_secs(5))
        .await
        .with_context(|| format!("cannot read the broker election at {zk}"))?;
    Ok(contenders)
}

/// Where the broker is: the address itself, or the leader ZooKeeper names.
pub async fn leader_address(broker: &str) -> Result<String> {
    if !weir_ha::ZkAddress::is_zk(broker) {
        return Ok(broker.to_owned());
    }
    let brokers = brokers_of(broker).await?;
    match brokers.iter().find(|b| b.leading) {
        Some(leader) => Ok(leader.info.address.clone()),
        None => anyhow::bail!("no broker leads at {broker} ({} standing by)", brokers.len()),
    }
}

/// Where the broker is, for the operator commands (`weir agent`, `weir role`).
#[derive(clap::Args, Debug)]
pub struct BrokerArg {
    /// Broker address, or zk://HOST:PORT,.../PATH to find the leader.
    #[arg(long, value_name = "HOST:PORT|zk://...")]
    pub broker: Option<String>,
}

/// An Operator API client that sends this process's token.
pub type OperatorClient =
    weir_proto::v1::operator_client::OperatorClient<tonic::service::interceptor::InterceptedService<tonic::transport::Channel, weir_sdk::BearerToken>>;

/// The leading broker's Operator API.
pub async fn operator(options: &Options, broker: BrokerArg) -> Result<OperatorClient> {
    let config = settings::load(options, &[Daemon::Broker], "warn")?;
    let broker = settings::broker_address(&config, broker.broker)?;
    let address = leader_address(&broker).await?;
    operator_at(&address).await
}

/// The Operator API of the broker at `address`.
pub async fn operator_at(address: &str) -> Result<OperatorClient> {
    let channel = weir_sdk::grpc_endpoint_as(address, settings::tls_ca().as_deref(), settings::tls_identity().as_ref())
        .map_err(|e| anyhow::anyhow!("{address}: {e}"))?
        .connect()
        .await
        .with_context(|| format!("cannot reach the broker at {address} (is `weir standalone` or `weir broker` running?)"))?;
    Ok(weir_proto::v1::operator_client::OperatorClient::with_interceptor(channel, weir_sdk::BearerToken::new(settings::token())))
}

/// An Operator API refusal, as the commands print it.
pub fn refused(status: tonic::Status) -> anyhow::Error {
    // A plain-text client on a TLS port sees only its connection closed.
    let hint = if status.code() == tonic::Code::Unknown && status.message().contains("transport error") && settings::tls_ca().is_none() {
        " (if the broker serves TLS, give its CA with --ca-file or WEIR_CA_FILE)"
    } else {
        ""
    };
    anyhow::anyhow!("the broker refused: {}{hint}", status.message())
}

pub async fn fetch_state(broker: &str) -> Result<(String, StateDoc)> {
    let broker = &leader_address(broker).await?;
    let (client, scheme) = settings::http_client(Duration::from_secs(10))?;
    let url = match scheme {
        "https" => format!("https://{}/state", broker.trim_start_matches("http://").trim_start_matches("https://")),
        _ => format!("{}/state", weir_sdk::endpoint(broker)),
    };
    let request = settings::with_token(client.get(&url));
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach the broker at {broker} (is `weir standalone` or `weir broker` running?)"))?;
    if !response.status().is_success() {
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let text: String = text.trim().chars().take(300).collect();
        let hint = match status {
            reqwest::StatusCode::UNAUTHORIZED | reqwest::StatusCode::FORBIDDEN => " (give a token with --token-file or WEIR_TOKEN)",
            _ if text.contains("speaks TLS") => " (give the broker's CA with --ca-file or WEIR_CA_FILE)",
            _ => "",
        };
        anyhow::bail!("the broker at {broker} refused to show its state ({status}): {text}{hint}");
    }
    let body = response
        .error_for_status()
        .with_context(|| format!("cannot reach the broker at {broker} (is `weir standalone` or `weir broker` running?)"))?
        .text()
        .await
        .with_context(|| format!("reading {url}"))?;
    let doc: StateDoc = serde_json::from_str(&body).with_context(|| format!("{url} did not return a Weir state document"))?;
    Ok((body, doc))
}

pub async fn main(options: &Options, args: Args) -> Result<ExitCode> {
    let config = settings::load(options, &[Daemon::Broker], "warn")?;
    let broker = settings::broker_address(&config, args.broker)?;
    let brokers = brokers_of(&broker).await?;
    let (raw, doc) = fetch_state(&broker).await?;
    if args.json {
        println!("{raw}");
        return Ok(ExitCode::SUCCESS);
    }
    if !brokers.is_empty() {
        print!("{}", render_brokers(&brokers));
    }
    let leader = brokers.iter().find(|b| b.leading).map(|b| b.info.address.clone()).unwrap_or(broker);
    print!("{}", render(&leader, &doc));
    Ok(ExitCode::SUCCESS)
}

/// Who leads and who stands by.
pub fn render_brokers(brokers: &[weir_ha::Contender]) -> String {
    let mut t = table(&["BROKER", "ADDRESS", "ROLE", "EPOCH"]);
    for b in brokers {
        let role = if b.leading { "leader" } else { "standby" };
        t.add_row(vec![p(&b.info.id), p(&b.info.address), role.to_owned(), b.info.epoch.to_string()]);
    }
    format!("{t}\n\n")
}

/// A cell from the state document, control characters escaped.
pub(crate) fn p(s: &str) -> String {
    super::printable(s).into_owned()
}

pub(crate) fn used_of(used: f64, total: f64) -> String {
    format!("{}/{}", trim(used), trim(total))
}

fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

pub(crate) fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING);
    t.set_header(header.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    t
}

fn share(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

pub fn render(broker: &str, doc: &StateDoc) -> String {
    let broker = p(broker);
    let t = &doc.totals;
    let reachable = doc.agents.iter().filter(|a| a.reachable).count();
    let mut out = format!(
        "broker {} at {broker}{}, up {:.0}s\nagents {reachable}/{} reachable, {} frameworks, {} tasks, {} offers\n\
         cpus {} used, {} offered of {}; mem {} MiB used, {} offered of {}\n",
        p(&doc.broker.id),
        match (doc.broker.leader_epoch, doc.broker.recovering) {
            (0, _) => String::new(),
            (epoch, false) => format!(" (leader, epoch {epoch})"),
            (epoch, true) => format!(" (leader, epoch {epoch}, recovering: no offers until agents re-register)"),
        },
        doc.broker.uptime_seconds,
        doc.agents.len(),
        doc.frameworks.len(),
        doc.tasks.len(),
        t.offers,
        trim(t.used.cpus),
        trim(t.offered.cpus),
        trim(t.total.cpus),
        trim(t.used.mem),
        trim(t.offered.mem),
        trim(t.total.mem),
    );
    let free = |r: &ResourcesDoc| format!("cpus {} mem {}", trim(r.cpus), trim(r.mem));

    let mut agents = table(&["AGENT", "HOSTNAME", "STATE", "CPUS USED", "MEM USED", "FREE", "TASKS"]);
    for a in &doc.agents {
        let state = match (a.reachable, a.connected) {
            (true, true) => "reachable",
            (true, false) => "disconnected",
            _ => "UNREACHABLE",
        };
        agents.add_row(vec![
            p(&a.id),
            p(&a.hostname),
            state.to_owned(),
            used_of(a.used.cpus, a.total.cpus),
            used_of(a.used.mem, a.total.mem),
            free(&a.free),
            a.tasks.to_string(),
        ]);
    }
    out.push_str(&format!("\n{agents}\n"));

    if !doc.frameworks.is_empty() {
        let mut fws = table(&["FRAMEWORK", "NAME", "PRINCIPAL", "ROLES", "ACTIVE", "SHARE", "TASKS", "OFFERS"]);
        for f in &doc.frameworks {
            fws.add_row(vec![
                p(&f.id),
                p(&f.name),
                if f.principal.is_empty() { "-".to_owned() } else { p(&f.principal) },
                p(&f.roles.join(",")),
                if f.active { "yes" } else { "no" }.to_owned(),
                share(f.dominant_share),
                f.tasks.to_string(),
                f.offers.to_string(),
            ]);
        }
        out.push_str(&format!("\n{fws}\n"));
    }
    if !doc.roles.is_empty() {
        let mut roles = table(&["ROLE", "WEIGHT", "SHARE", "WEIGHTED", "CPUS", "MEM", "FRAMEWORKS"]);
        for r in &doc.roles {
            roles.add_row(vec![
                p(&r.role),
                trim(r.weight),
                share(r.dominant_share),
                share(r.weighted_share),
                trim(r.allocated.cpus),
                trim(r.allocated.mem),
                r.frameworks.to_string(),
            ]);
        }
        out.push_str(&format!("\n{roles}\n"));
    }
    if doc.agents.iter().any(|a| !a.reservations.is_empty() || !a.volumes.is_empty()) {
        out.push_str(&render_reservations(doc));
    }
    if !doc.tasks.is_empty() {
        let mut tasks = table(&["TASK", "FRAMEWORK", "AGENT", "STATE", "CPUS", "MEM", "CPU TIME", "MEM USED"]);
        for task in &doc.tasks {
            tasks.add_row(vec![
                p(&task.id),
                p(&task.framework_id),
                p(&task.agent_id),
                p(&task.state),
                trim(task.resources.cpus),
                trim(task.resources.mem),
                task.cpu_seconds.map(|s| format!("{s:.1}s")).unwrap_or_else(|| "-".into()),
                task.mem_used_mib.map(|m| format!("{m:.1} MiB")).unwrap_or_else(|| "-".into()),
            ]);
        }
        out.push_str(&format!("\n{tasks}\n"));
    }
    out
}

/// Dynamic reservations and persistent volumes per agent and role.
pub fn render_reservations(doc: &StateDoc) -> String {
    let mut reservations = table(&["AGENT", "ROLE", "RESERVATION", "RESOURCES", "PRINCIPAL", "BY"]);
    let mut volumes = table(&["AGENT", "ROLE", "VOLUME", "RESERVATION", "SIZE", "PATH", "OWNER", "SHARED", "USED BY", "BACKING", "LAST SYNC"]);
    let (mut nr, mut nv) = (0, 0);
    for a in &doc.agents {
        for r in &a.reservations {
            nr += 1;
            let by = if r.framework_id.is_empty() { "operator".to_owned() } else { r.framework_id.clone() };
            reservations.add_row(vec![a.id.clone(), r.role.clone(), r.id.clone(), r.resources.clone(), r.principal.clone(), by]);
        }
        for v in &a.volumes {
            nv += 1;
            let owner = if v.owner_framework_id.is_empty() { "-".to_owned() } else { v.owner_framework_id.clone() };
            let used = if v.used_by.is_empty() { "-".to_owned() } else { v.used_by.join(",") };
            volumes.add_row(vec![
                a.id.clone(),
                v.role.clone(),
                v.id.clone(),
                v.reservation_id.clone(),
                format!("{} MiB", trim(v.size_mib)),
                v.container_path.clone(),
                owner,
                if v.shared { "yes" } else { "no" }.to_owned(),
                used,
                if v.backing.is_empty() { "-".to_owned() } else { v.backing.clone() },
                match &v.last_sync {
                    None => "-".to_owned(),
                    Some(s) if s.error.is_empty() => format!("{} generation {}, {} B copied", s.trigger, s.generation, s.bytes_copied),
                    Some(s) => format!("{} FAILED", s.trigger),
                },
            ]);
        }
    }
    let mut out = String::new();
    if nr == 0 && nv == 0 {
        return "no reservations or volumes\n".to_owned();
    }
    if nr > 0 {
        out.push_str(&format!("\n{reservations}\n"));
    }
    if nv > 0 {
        out.push_str(&format!("\n{volumes}\n"));
    }
    out
}
