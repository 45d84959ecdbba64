//! `weir reserve`, `weir unreserve` and `weir volume create|destroy|grow|
//! shrink|list`: an operator's dynamic reservations and persistent volumes,
//! on resources nobody holds in an offer (the broker's `ApplyOperations`).
//!
//! Each operation is answered with its status; the command prints one line
//! per operation and exits 1 if any failed (the reason on stderr). Ids are
//! the operator's: running the same command twice does it once. An
//! operation the agent carries out (SYNC, CREATE with a backing) is
//! answered OPERATION_PENDING first: the command then waits, reading the
//! broker's `/state`, for its final status.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use weir_conf::Daemon;
use weir_model::ResourceSet;
use weir_proto::convert::resources_to_proto;
use weir_proto::v1;

use crate::cmd::status::{fetch_state, leader_address};
use crate::settings::{self, Options};

/// Where and in which role an operation acts.
#[derive(clap::Args, Debug)]
pub struct Target {
    /// Broker address, or zk://HOST:PORT,.../PATH to find the leader.
    #[arg(long, value_name = "HOST:PORT|zk://...")]
    broker: Option<String>,
    /// The agent (its id, as `weir status` shows it).
    #[arg(long)]
    agent: String,
    /// The role the reservation or volume is for.
    #[arg(long)]
    role: String,
}

#[derive(clap::Args, Debug)]
pub struct ReserveArgs {
    #[command(flatten)]
    target: Target,
    /// The reservation's id (default: the broker picks one). The same id
    /// twice is one reservation.
    #[arg(long)]
    id: Option<String>,
    /// Recorded on the reservation.
    #[arg(long, default_value = "operator")]
    principal: String,
    /// KEY=VALUE labels (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// Unreserved resources to set aside, e.g. `cpus:1;mem:512;disk:2048`.
    resources: String,
}

#[derive(clap::Args, Debug)]
pub struct UnreserveArgs {
    #[command(flatten)]
    target: Target,
    /// The reservation's id.
    id: String,
}

#[derive(clap::Args, Debug)]
pub struct VolumeArgs {
    #[command(subcommand)]
    command: VolumeCommand,
}

#[derive(clap::Subcommand, Debug)]
enum VolumeCommand {
    /// Create a persistent volume on a reservation's disk.
    Create {
        #[command(flatten)]
        target: Target,
        /// The reservation whose disk it lives on.
        #[arg(long)]
        reservation: String,
        /// Size in MiB.
        #[arg(long)]
        size: f64,
        /// Where tasks see it, relative to their sandbox.
        #[arg(long)]
        path: String,
        /// Offer it to every framework of the role.
        #[arg(long)]
        shared: bool,
        /// Keep a durable copy there (hdfs://NAMENODE/PATH, or file:///PATH);
        /// a volume id that already has a copy there is restored from it.
        #[arg(long, value_name = "URI")]
        backing: Option<String>,
        /// The volume's id (unique per agent and role).
        id: String,
    },
    /// Copy a backed volume to its backing now.
    Sync {
        #[command(flatten)]
        target: Target,
        id: String,
    },
    /// Destroy a volume; its data is deleted.
    Destroy {
        #[command(flatten)]
        target: Target,
        id: String,
    },
    /// Add MiB to a volume.
    Grow {
        #[command(flatten)]
        target: Target,
        #[arg(long, value_name = "MIB")]
        by: f64,
        id: String,
    },
    /// Take MiB from a volume.
    Shrink {
        #[command(flatten)]
        target: Target,
        #[arg(long, value_name = "MIB")]
        by: f64,
        id: String,
    },
    /// List every volume (and reservation) per agent.
    List {
        #[arg(long, value_name = "HOST:PORT|zk://...")]
        broker: Option<String>,
    },
}

pub async fn reserve_main(options: &Options, args: ReserveArgs) -> Result<ExitCode> {
    let resources = ResourceSet::parse(&args.resources).map_err(|e| settings::ConfigProblem(e.to_string()))?;
    let mut labels = std::collections::HashMap::new();
    for l in &args.labels {
        let (k, v) = l.split_once('=').ok_or_else(|| settings::ConfigProblem(format!("--label {l:?} is not KEY=VALUE")))?;
        labels.insert(k.to_owned(), v.to_owned());
    }
    let kind = v1::operation::Kind::Reserve(v1::operation::Reserve {
        reservation_id: args.id.clone().unwrap_or_default(),
        role: args.target.role.clone(),
        principal: args.principal.clone(),
        labels,
        resources: resources_to_proto(&resources),
    });
    apply(options, &args.target, kind).await
}

pub async fn unreserve_main(options: &Options, args: UnreserveArgs) -> Result<ExitCode> {
    let kind = v1::operation::Kind::Unreserve(v1::operation::Unreserve { reservation_id: args.id.clone() });
    apply(options, &args.target, kind).await
}

pub async fn volume_main(options: &Options, args: VolumeArgs) -> Result<ExitCode> {
    let (target, kind) = match args.command {
        VolumeCommand::Create { target, reservation, size, path, shared, backing, id } => (
            target,
            v1::operation::Kind::Create(v1::operation::Create {
                volume_id: id,
                reservation_id: reservation,
                size,
                container_path: path,
                shared,
                principal: "operator".to_owned(),
                backing: backing.unwrap_or_default(),
            }),
        ),
        VolumeCommand::Sync { target, id } => (target, v1::operation::Kind::Sync(v1::operation::Sync { volume_id: id })),
        VolumeCommand::Destroy { target, id } => (target, v1::operation::Kind::Destroy(v1::operation::Destroy { volume_id: id })),
        VolumeCommand::Grow { target, by, id } => (target, v1::operation::Kind::Grow(v1::operation::Grow { volume_id: id, size: by })),
        VolumeCommand::Shrink { target, by, id } => {
            (target, v1::operation::Kind::Shrink(v1::operation::Shrink { volume_id: id, size: by }))
        }
        VolumeCommand::List { broker } => return list(options, broker).await,
    };
    apply(options, &target, kind).await
}

async fn apply(options: &Options, target: &Target, kind: v1::operation::Kind) -> Result<ExitCode> {
    let config = settings::load(options, &[Daemon::Broker], "warn")?;
    let broker = settings::broker_address(&config, target.broker.clone())?;
    let address = leader_address(&broker).await?;
    let mut client = super::status::operator_at(&address).await?;
    // An id of its own, so the final status of a pending operation can be
    // told from any other in `/state`.
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let id = format!("cli-{}-{nanos}", std::process::id());
    let request = v1::ApplyOperationsRequest {
        agent_id: target.agent.clone(),
        operations: vec![v1::Operation { id: id.clone(), role: target.role.clone(), kind: Some(kind) }],
    };
    let response = client.apply_operations(request).await.map_err(super::status::refused)?;
    let mut code = ExitCode::SUCCESS;
    for s in response.into_inner().statuses {
        let state = v1::OperationState::try_from(s.state).map(|s| s.as_str_name()).unwrap_or("OPERATION_STATE_UNSPECIFIED");
        if s.state == v1::OperationState::OperationPending as i32 {
            println!("{} on {}: {state}: {}", s.kind, s.agent_id, s.message);
            let (kind, state, message) = wait_for_final(&address, &id).await?;
            if state == "OPERATION_FINISHED" {
                println!("{kind} on {}: {state}: {message}", s.agent_id);
            } else {
                eprintln!("{kind} on {}: {state}: {message}", s.agent_id);
                code = ExitCode::FAILURE;
            }
        } else if s.state == v1::OperationState::OperationFinished as i32 {
            println!("{} on {}: {state}: {}", s.kind, s.agent_id, s.message);
        } else {
            eprintln!("{} on {}: {state}: {}", s.kind, s.agent_id, s.message);
            code = ExitCode::FAILURE;
        }
    }
    Ok(code)
}

/// How long the command waits for a pending operation's final status: a
/// restore of a large volume takes as long as its bytes take to copy.
const PENDING_WAIT: Duration = Duration::from_secs(3600);

/// Reads `/state` until the operation `id` has a final status: (kind,
/// state, message).
async fn wait_for_final(broker: &str, id: &str) -> Result<(String, String, String)> {
    let deadline = std::time::Instant::now() + PENDING_WAIT;
    while std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (_, doc) = fetch_state(broker).await?;
        if let Some(op) = doc.operations.iter().find(|o| o.id == id && o.state != "OPERATION_PENDING") {
            return Ok((op.kind.clone(), op.state.clone(), op.message.clone()));
        }
    }
    anyhow::bail!("operation {id} is still pending after {PENDING_WAIT:?}; `weir volume list` shows its last sync")
}

async fn list(options: &Options, broker: Option<String>) -> Result<ExitCode> {
    let config = settings::load(options, &[Daemon::Broker], "warn")?;
    let broker = settings::broker_address(&config, broker)?;
    let (_, doc) = fetch_state(&broker).await?;
    print!("{}", crate::cmd::status::render_reservations(&doc));
    Ok(ExitCode::SUCCESS)
}
