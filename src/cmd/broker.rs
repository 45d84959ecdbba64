//! `weir broker`: the broker daemon in the foreground.
//!
//! Alone (no `--zk`), it serves at once. With `--zk` (or `broker.zk`) it
//! campaigns in ZooKeeper: while another broker leads it stands by (its
//! port redirects HTTP requests to the leader); when
//! elected it recovers from the registry and serves; when it loses the
//! leadership (session expired, lease not renewed, registry write failed)
//! it stops serving at once, closes every stream, and campaigns again as a
//! new instance.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use weir_conf::Daemon;
use weir_ha::zk::{ZkElection, ZkRegistry, ZkSession};
use weir_ha::{LeaderElection, LeaderInfo, Registry};

use crate::settings::{self, BrokerHa, Options};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address for gRPC and HTTP (broker.listen).
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
    /// State directory (broker.work.dir).
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// Elect a leader among brokers through ZooKeeper (broker.zk).
    #[arg(long, value_name = "zk://HOST:PORT,.../PATH")]
    zk: Option<String>,
}

pub async fn main(options: &Options, args: Args) -> Result<ExitCode> {
    let mut config = settings::load(options, &[Daemon::Broker, Daemon::Agent], "")?;
    settings::apply_flag(&mut config, "broker.listen", args.listen)?;
    settings::apply_flag(&mut config, "broker.work.dir", args.work_dir.map(|p| p.display().to_string()))?;
    settings::apply_flag(&mut config, "broker.zk", args.zk)?;
    let (core, shell) = settings::broker(&config)?;
    let ha = settings::broker_ha(&config)?;
    let work_dir = config.get_path("broker.work.dir").map_err(|e| settings::ConfigProblem(e.to_string()))?;
    std::fs::create_dir_all(&work_dir)
        .map_err(|e| anyhow::anyhow!("cannot create broker.work.dir {}: {e}", work_dir.display()))?;
    if let Some(ha) = ha {
        return elected(core, shell, ha).await;
    }
    let broker = weir_broker::run(core, shell).await?;
    println!("weir broker listening on {} (gRPC and HTTP: http://{}/state)", broker.local_addr(), broker.local_addr());
    let mut broker = broker;
    let ended_by_itself = tokio::select! {
        result = broker.finished() => Some(result),
        _ = super::shutdown_signal() => None,
    };
    match ended_by_itself {
        Some(result) => result?,
        None => broker.stop().await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The address others should use: configured, or the listen address with
/// an unspecified IP replaced by this host's name.
fn advertised(listen: SocketAddr, configured: Option<String>) -> String {
    configured.unwrap_or_else(|| weir_agent::detect::advertised(listen, &weir_agent::detect::hostname()))
}

/// Campaign, lead, lose, campaign again: until a signal.
async fn elected(core: weir_broker::BrokerSettings, mut shell: weir_broker::ShellSettings, ha: BrokerHa) -> Result<ExitCode> {
    // The address is published before this broker leads, so it must be
    // fixed: port 0 becomes a concrete free port now.
    if shell.listen.port() == 0 {
        let probe = std::net::TcpListener::bind(shell.listen)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", shell.listen))?;
        shell.listen = probe.local_addr()?;
    }
    let address = advertised(shell.listen, ha.advertise.clone());
    let signal = super::shutdown_signal();
    tokio::pin!(signal);
    let mut backoff = weir_ha::Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    // Who leads, for the redirects this broker serves while it stands by.
    let leader = weir_ha::detect(&ha.zk);
    loop {
        let instance = weir_broker::new_instance_id();
        let session = tokio::select! {
            s = ZkSession::connect(&ha.zk, ha.session_timeout) => s,
            _ = &mut signal => return Ok(ExitCode::SUCCESS),
        };
        let session = match session {
            Ok(s) => s,
            Err(err) => {
                tracing::warn!(zk = %ha.zk, error = %err, "cannot reach ZooKeeper; retrying");
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
        };
        backoff.reset();
        let me = LeaderInfo { id: instance.clone(), address: address.clone(), epoch: 0 };
        let election = ZkElection::new(session.clone(), me);
        println!("weir broker {instance} standing by at {address} (election at {})", ha.zk);
        // Meanwhile its port sends browsers and scripts to the leader.
        let standby = match weir_broker::serve_standby(shell.listen, address.clone(), leader.clone(), shell.http, shell.tls.clone()).await {
            Ok(s) => Some(s),
            Err(err) => {
                tracing::warn!(error = %err, "cannot redirect to the leader while standing by");
                None
            }
        };
        let leadership = tokio::select! {
            l = election.campaign() => l,
            _ = &mut signal => return Ok(ExitCode::SUCCESS),
        };
        if let Some(standby) = standby {
            standby.stop().await;
        }
        let leadership = match leadership {
            Ok(l) => l,
            Err(err) => {
                tracing::warn!(broker_id = %instance, error = %err, "campaign failed; starting over");
                continue;
            }
        };
        let epoch = leadership.epoch();
        let registry: Arc<dyn Registry> = Arc::new(ZkRegistry::new(session.clone()));
        let records = match registry.load().await {
            Ok(r) => r,
            Err(err) => {
                tracing::error!(broker_id = %instance, epoch, error = %err, "cannot read the registry; resigning");
                leadership.resign();
                continue;
            }
        };
        let leading = weir_broker::Leading { epoch, records, registry, guard: leadership.guard() };
        let mut broker = weir_broker::run_leader(core.clone(), shell.clone(), instance.clone(), leading).await?;
        println!(
            "weir broker {instance} leading epoch {epoch}, listening on {} (gRPC and HTTP: http://{}/state)",
            broker.local_addr(),
            broker.local_addr()
        );
        enum End {
            Lost(String),
            Finished(Result<(), weir_broker::BrokerError>),
            Signal,
        }
        let shell_lost = broker.lost();
        let end = tokio::select! {
            reason = leadership.lost() => End::Lost(reason),
            reason = shell_lost => End::Lost(reason),
            result = broker.finished() => End::Finished(result),
            _ = &mut signal => End::Signal,
        };
        match end {
            End::Lost(reason) => {
                tracing::error!(broker_id = %instance, epoch, %reason, "lost the leadership; stopping at once");
                println!("weir broker {instance} lost the leadership of epoch {epoch}: {reason}");
                broker.stop().await?;
                leadership.resign();
            }
            End::Finished(result) => {
                leadership.resign();
                result?;
                return Ok(ExitCode::FAILURE);
            }
            End::Signal => {
                broker.stop().await?;
                leadership.resign();
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
}
