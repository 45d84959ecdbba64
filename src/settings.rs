//! From configuration to each component's settings: the one place where
//! configuration keys are read, so a bad value stops a daemon at start-up
//! with the key, the value and where it came from.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use anyhow::{Context, Result};
use weir_conf::{Config, Daemon, LoadOptions};
use weir_model::Role;

/// The global flags every subcommand shares.
#[derive(Debug, Clone)]
pub struct Options {
    pub conf_dir: Option<PathBuf>,
    pub defines: Vec<String>,
}

static TOKEN: std::sync::OnceLock<Option<weir_sdk::Token>> = std::sync::OnceLock::new();
static CA: std::sync::OnceLock<Option<Vec<u8>>> = std::sync::OnceLock::new();
static IDENTITY: std::sync::OnceLock<Option<weir_sdk::TlsIdentity>> = std::sync::OnceLock::new();

/// Reads the caller's bearer token (`--token-file`, `WEIR_TOKEN_FILE`,
/// `WEIR_TOKEN`), the broker's CA (`--ca-file`, `WEIR_CA_FILE`) and a
/// client certificate (`--cert-file`, `--key-file`) once, at start.
pub fn set_credentials(
    token_file: Option<&std::path::Path>,
    ca_file: Option<&std::path::Path>,
    identity: Option<(&std::path::Path, &std::path::Path)>,
) -> Result<()> {
    let token = weir_sdk::Token::from_file_or_env(token_file).map_err(|e| problem(format!("--token-file: {e}")))?;
    let ca = match ca_file {
        None => None,
        Some(path) => Some(read_ca(path).map_err(|e| problem(format!("--ca-file: {e}")))?),
    };
    let identity = match identity {
        None => None,
        Some((cert, key)) => {
            weir_net::tls::certificates(cert).map_err(|e| problem(format!("--cert-file: {e}")))?;
            let cert_pem = std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
            let key_pem = weir_net::secret::read_secret_file(key).map_err(|e| problem(format!("--key-file: {e}")))?.into_bytes();
            Some(weir_sdk::TlsIdentity { cert_pem, key_pem })
        }
    };
    let _ = TOKEN.set(token);
    let _ = CA.set(ca);
    let _ = IDENTITY.set(identity);
    Ok(())
}

/// A CA certificate file's PEM, checked to hold a certificate.
pub fn read_ca(path: &std::path::Path) -> Result<Vec<u8>> {
    weir_net::tls::certificates(path)?;
    Ok(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
}

/// The token every client of this process sends, if any.
pub fn token() -> Option<weir_sdk::Token> {
    TOKEN.get().cloned().flatten()
}

/// The CA the tools trust for the broker's TLS, if any.
pub fn tls_ca() -> Option<Vec<u8>> {
    CA.get().cloned().flatten()
}

/// An HTTP client for the broker's and the agents' ports, with the
/// credentials of this process: it trusts only `--ca-file`'s CA when one
/// is given (then the URL scheme is `https`: one CA for the cluster).
/// With `--cert-file` it shows that client certificate. Requests still
/// need [`with_token`].
pub fn http_client(timeout: std::time::Duration) -> Result<(reqwest::Client, &'static str)> {
    let mut client = reqwest::Client::builder().timeout(timeout);
    let scheme = match tls_ca() {
        None => "http",
        Some(ca) => {
            let cert = reqwest::Certificate::from_pem(&ca).map_err(|e| problem(format!("--ca-file: {e}")))?;
            client = client.tls_built_in_root_certs(false).add_root_certificate(cert);
            if let Some(id) = tls_identity() {
                let pem = [id.cert_pem.as_slice(), b"\n", id.key_pem.as_slice()].concat();
                client = client.identity(reqwest::Identity::from_pem(&pem).map_err(|e| problem(format!("--cert-file/--key-file: {e}")))?);
            }
            "https"
        }
    };
    Ok((client.build().context("building an HTTP client")?, scheme))
}

/// The client certificate the tools show (`--cert-file`, `--key-file`).
pub fn tls_identity() -> Option<weir_sdk::TlsIdentity> {
    IDENTITY.get().cloned().flatten()
}

/// The request with this process's bearer token, if it has one.
pub fn with_token(request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    match token() {
        Some(token) => request.bearer_auth(token.expose()),
        None => request,
    }
}

/// Marks errors that come from configuration or flags (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigProblem(pub String);

fn problem(err: impl std::fmt::Display) -> anyhow::Error {
    anyhow::Error::new(ConfigProblem(err.to_string()))
}

/// Loads the layered configuration for the given daemons and starts
/// logging (the filter itself comes from configuration, so logging starts
/// after loading and replays the loader's warnings).
pub fn load(options: &Options, daemons: &[Daemon], default_filter: &str) -> Result<Config> {
    let config = Config::load(&LoadOptions {
        conf_dir: options.conf_dir.clone(),
        daemons: daemons.to_vec(),
        overrides: options.defines.clone(),
    })
    .map_err(problem)?;
    let filter = match std::env::var("RUST_LOG") {
        Ok(f) if !f.is_empty() => f,
        _ if default_filter.is_empty() => config.get_str("weir.log.filter").map_err(problem)?,
        _ => default_filter.to_owned(),
    };
    init_logging(&filter);
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    Ok(config)
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|err| {
        eprintln!("weir: log filter {filter:?} is not valid ({err}); using \"info\"");
        tracing_subscriber::EnvFilter::new("info")
    });
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Sets a key from a dedicated flag (`--listen`, `--work-dir`…), which
/// counts as a command-line override like `-D`.
pub fn apply_flag(config: &mut Config, key: &str, value: Option<impl ToString>) -> Result<()> {
    if let Some(value) = value {
        config.set(key, &value.to_string()).map_err(problem)?;
    }
    Ok(())
}

pub fn socket_addr(config: &Config, key: &str) -> Result<SocketAddr> {
    let (host, port) = config.get_host_port(key).map_err(problem)?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| problem(format!("{key}: cannot resolve {host}:{port}: {e}")))?
        .next()
        .ok_or_else(|| problem(format!("{key}: {host}:{port} resolves to no address")))
}

pub fn broker(config: &Config) -> Result<(weir_broker::BrokerSettings, weir_broker::ShellSettings)> {
    let get_duration = |key: &str| config.get_duration(key).map_err(problem);
    let mut weights = Vec::new();
    for entry in config.get_list("broker.roles.weights").map_err(problem)? {
        let (role, weight) = entry
            .split_once('=')
            .ok_or_else(|| problem(format!("broker.roles.weights: {entry:?} is not of the form role=weight")))?;
        weir_model::ids::validate_role(role.trim())
            .map_err(|e| problem(format!("broker.roles.weights: {e}")))?;
        let weight: f64 = weight
            .trim()
            .parse()
            .ok()
            .filter(|w: &f64| w.is_finite() && *w > 0.0)
            .ok_or_else(|| problem(format!("broker.roles.weights: weight {weight:?} for role {role} must be a number > 0")))?;
        weights.push((Role::new(role.trim()), weight));
    }
    let settings = weir_broker::BrokerSettings {
        allocation_interval: get_duration("broker.allocation.interval")?,
        offer_timeout: get_duration("broker.offer.timeout")?,
        agent_unreachable_timeout: get_duration("broker.agent.unreachable.timeout")?,
        agent_reregister_timeout: get_duration("broker.agent.reregister.timeout")?,
        agent_heartbeat_interval: config.get_duration("agent.heartbeat.interval").map_err(problem)?,
        framework_heartbeat_interval: get_duration("broker.framework.heartbeat.interval")?,
        refuse_default: get_duration("broker.filter.refuse.default")?,
        weights,
        recovery_timeout: get_duration("broker.recovery.timeout")?,
        max_failover_timeout: get_duration("broker.framework.failover.timeout.max")?,
        max_frameworks: usize::try_from(config.get_u64("broker.frameworks.max").map_err(problem)?.max(1)).unwrap_or(usize::MAX),
        max_roles: usize::try_from(config.get_u64("broker.roles.max").map_err(problem)?.max(1)).unwrap_or(usize::MAX),
        drain_grace_default: get_duration("broker.agent.drain.grace.default")?.min(weir_broker::core::MAX_DRAIN_GRACE),
        locality_delay: get_duration("broker.locality.delay")?,
        allocator_policy: {
            let name = config.get_str("broker.allocator.policy").map_err(problem)?;
            if weir_allocator::policy::by_name(&name).is_none() {
                return Err(problem(format!(
                    "broker.allocator.policy: {name:?} is not a policy; the policies are {}",
                    weir_allocator::policy::names().join(", ")
                )));
            }
            name
        },
        revocation_grace: get_duration("broker.revocation.grace")?,
        revocable_grace: get_duration("broker.revocation.revocable-grace")?,
        decline_backoff_after: u32::try_from(config.get_u64("broker.offer.decline-backoff.after").map_err(problem)?).unwrap_or(u32::MAX),
        decline_backoff_max: get_duration("broker.offer.decline-backoff.max")?,
        fair_share_bound: config.get_bool("broker.offer.fair-share-bound").map_err(problem)?,
        acls: {
            let mut lists = Vec::new();
            for action in weir_broker::acl::Action::ALL {
                lists.push((action, config.get(&action.key()).map_err(problem)?.unwrap_or_default()));
            }
            weir_broker::acl::Acls::from_lists(lists.iter().map(|(a, t)| (*a, t.as_str()))).map_err(problem)?
        },
    };
    let max = config.get_size("broker.max.message.size").map_err(problem)?;
    let mut shell = weir_broker::ShellSettings::new(socket_addr(config, "broker.listen")?, usize::try_from(max).unwrap_or(usize::MAX));
    shell.http = http_limits(config, "broker")?;
    let queue = config.get_u64("broker.stream.queue.max").map_err(problem)?;
    shell.stream_queue_max = usize::try_from(queue.max(1)).unwrap_or(usize::MAX);
    let history_interval = get_duration("broker.ui.history.interval")?;
    if history_interval.is_zero() {
        return Err(problem("broker.ui.history.interval must be longer than zero"));
    }
    let file = |key: &str| -> Result<Option<std::path::PathBuf>> {
        Ok(config.get(key).map_err(problem)?.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()).map(std::path::PathBuf::from))
    };
    shell.auth = weir_broker::shell::auth::AuthSettings {
        tokens_file: file("broker.auth.tokens.file")?,
        agent_secret_file: file("broker.auth.agent.secret.file")?,
        reload_interval: get_duration("broker.auth.tokens.reload.interval")?,
    };
    shell.tls = match (file("broker.tls.cert.file")?, file("broker.tls.key.file")?, file("broker.tls.client.ca.file")?) {
        (None, None, None) => None,
        (Some(cert), Some(key), client_ca) => {
            Some(weir_net::http::Tls::new(weir_net::tls::server_config_with_clients(&cert, &key, client_ca.as_deref()).map_err(problem)?))
        }
        (None, None, Some(_)) => return Err(problem("broker.tls.client.ca.file needs broker.tls.cert.file and broker.tls.key.file (mutual TLS is TLS)")),
        _ => return Err(problem("broker.tls.cert.file and broker.tls.key.file go together: set both or neither")),
    };
    let agents_ca = match file("broker.tls.agents.ca.file")? {
        None => None,
        Some(path) => Some(read_ca(&path).map_err(|e| problem(format!("broker.tls.agents.ca.file: {e:#}")))?),
    };
    shell.ui = weir_broker::UiSettings {
        agents_ca,
        actions_enabled: config.get_bool("broker.ui.actions.enabled").map_err(problem)?,
        history_interval,
        history_samples: usize::try_from(config.get_u64("broker.ui.history.samples").map_err(problem)?.clamp(2, 100_000)).unwrap_or(2),
    };
    Ok((settings, shell))
}

/// How a broker takes part in an election, when `broker.zk` is set.
pub struct BrokerHa {
    pub zk: weir_ha::ZkAddress,
    pub session_timeout: std::time::Duration,
    /// Published for others; empty means "work it out from the listen address".
    pub advertise: Option<String>,
}

pub fn broker_ha(config: &Config) -> Result<Option<BrokerHa>> {
    let zk = config.get("broker.zk").map_err(problem)?.unwrap_or_default();
    if zk.trim().is_empty() {
        return Ok(None);
    }
    let mut zk = weir_ha::ZkAddress::parse(zk.trim()).map_err(|e| problem(format!("broker.zk: {e}")))?;
    if let Some(file) = config.get("broker.zk.auth.file").map_err(problem)?.filter(|f| !f.trim().is_empty()) {
        let digest = weir_ha::ZkDigest::read(std::path::Path::new(file.trim())).map_err(|e| problem(format!("broker.zk.auth.file: {e}")))?;
        zk.digest = Some(digest);
    }
    let session_timeout = config.get_duration("broker.zk.session.timeout").map_err(problem)?;
    if session_timeout < std::time::Duration::from_millis(500) || session_timeout > std::time::Duration::from_secs(600) {
        return Err(problem(format!("broker.zk.session.timeout: {session_timeout:?} must be between 500ms and 10m")));
    }
    let advertise = config.get("broker.advertise.address").map_err(problem)?.unwrap_or_default();
    let advertise = if advertise.trim().is_empty() { None } else { Some(advertise.trim().to_owned()) };
    if advertise.is_some() {
        config.get_host_port("broker.advertise.address").map_err(problem)?;
    }
    Ok(Some(BrokerHa { zk, session_timeout, advertise }))
}

/// `kill_tasks_on_shutdown`: standalone cleans up after itself; a plain
/// agent leaves its tasks running for the next agent to re-attach to.
pub fn agent(config: &Config, kill_tasks_on_shutdown: bool) -> Result<weir_agent::AgentSettings> {
    let optional = |key: &str| -> Result<Option<String>> {
        Ok(config.get(key).map_err(problem)?.filter(|v| !v.trim().is_empty()))
    };
    let resources = optional("agent.resources")?;
    if let Some(spec) = &resources {
        weir_model::ResourceSet::parse(spec).map_err(|e| problem(format!("agent.resources: {e}")))?;
    }
    let mut attributes = Vec::new();
    if let Some(spec) = optional("agent.attributes")? {
        for item in spec.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, value) = item
                .split_once(':')
                .ok_or_else(|| problem(format!("agent.attributes: {item:?} is not of the form name:value")))?;
            attributes.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    Ok(weir_agent::AgentSettings {
        broker: config.get_str("agent.broker").map_err(problem)?,
        listen: socket_addr(config, "agent.listen")?,
        work_dir: config.get_path("agent.work.dir").map_err(problem)?,
        resources,
        hostname: optional("agent.hostname")?,
        attributes,
        heartbeat_interval: config.get_duration("agent.heartbeat.interval").map_err(problem)?,
        kill_grace_period: config.get_duration("agent.kill.grace.period").map_err(problem)?,
        status_update_retry_interval: config.get_duration("agent.status.update.retry.interval").map_err(problem)?,
        sandbox_gc_age: config.get_duration("agent.sandbox.gc.age").map_err(problem)?,
        volume_usage_interval: match config.get_duration("agent.volume.usage.interval").map_err(problem)? {
            d if d.is_zero() => return Err(problem("agent.volume.usage.interval must be above zero").into()),
            d => d,
        },
        volume_sync_interval: match config.get_duration("agent.volume.sync.interval").map_err(problem)? {
            d if d.is_zero() => return Err(problem("agent.volume.sync.interval must be above zero").into()),
            d => d,
        },
        volume_store: weir_hdfs_volumes::StoreSettings {
            hadoop_conf_dir: optional("agent.volume.hadoop.conf.dir")?,
            op_timeout: match config.get_duration("agent.volume.backing.timeout").map_err(problem)? {
                d if d.is_zero() => return Err(problem("agent.volume.backing.timeout must be above zero").into()),
                d => d,
            },
        },
        isolation: weir_agent::isolation::Mode::parse(&config.get_str("agent.isolation").map_err(problem)?).map_err(problem)?,
        task_users: weir_agent::users::UserPolicy {
            switch: config.get_bool("agent.tasks.switch-user").map_err(problem)?,
            min_uid: config.get_u32("agent.tasks.min-uid").map_err(problem)?,
            banned: config.get_list("agent.tasks.banned-users").map_err(problem)?,
            root_principals: config
                .get_list("agent.tasks.root-principals")
                .map_err(problem)?
                .into_iter()
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty())
                .collect(),
        },
        // This very binary supervises tasks (`weir executor`).
        supervisor: Some(std::env::current_exe().context("finding the weir binary to supervise tasks")?),
        kill_tasks_on_shutdown,
        http: http_limits(config, "agent")?,
        http_tls: match (optional("agent.tls.cert.file")?, optional("agent.tls.key.file")?, optional("agent.tls.client.ca.file")?) {
            (None, None, None) => None,
            (Some(cert), Some(key), client_ca) => Some(weir_net::http::Tls::new(
                weir_net::tls::server_config_with_clients(
                    std::path::Path::new(cert.trim()),
                    std::path::Path::new(key.trim()),
                    client_ca.as_deref().map(|c| std::path::Path::new(c.trim())),
                )
                .map_err(problem)?,
            )),
            (None, None, Some(_)) => return Err(problem("agent.tls.client.ca.file needs agent.tls.cert.file and agent.tls.key.file (mutual TLS is TLS)")),
            _ => return Err(problem("agent.tls.cert.file and agent.tls.key.file go together: set both or neither")),
        },
        broker_identity: match (optional("agent.tls.cert.file")?, optional("agent.tls.key.file")?) {
            (Some(cert), Some(key)) => Some((
                std::fs::read(cert.trim()).with_context(|| format!("agent.tls.cert.file: reading {}", cert.trim()))?,
                weir_net::secret::Secret::new(
                    weir_net::secret::read_secret_file(std::path::Path::new(key.trim())).map_err(|e| problem(format!("agent.tls.key.file: {e}")))?,
                ),
            )),
            _ => None,
        },
        broker_ca: match optional("agent.tls.ca.file")? {
            None => None,
            Some(path) => Some(read_ca(std::path::Path::new(path.trim())).map_err(|e| problem(format!("agent.tls.ca.file: {e:#}")))?),
        },
        http_auth: weir_agent::http_auth::HttpAuth {
            tokens: match optional("agent.auth.tokens.file")? {
                None => None,
                Some(path) => Some(std::sync::Arc::new(
                    weir_net::tokens::TokenFile::load(std::path::Path::new(path.trim())).map_err(|e| problem(format!("agent.auth.tokens.file: {e}")))?,
                )),
            },
            acls: {
                let action = weir_model::acl::Action::ViewFramework;
                let text = config.get(&action.agent_key()).map_err(problem)?.unwrap_or_default();
                weir_model::acl::Acls::scoped_from_lists(weir_model::acl::Scope::Agent, [(action, text.as_str())]).map_err(problem)?
            },
        },
        registration_secret: match optional("agent.auth.secret.file")? {
            None => None,
            Some(path) => Some(weir_net::secret::Secret::new(
                weir_net::secret::read_secret_value(std::path::Path::new(path.trim())).map_err(|e| problem(format!("agent.auth.secret.file: {e}")))?,
            )),
        },
    })
}

/// `PREFIX.connections.max` and `PREFIX.connections.per.peer.max`.
fn connection_limits(config: &Config, prefix: &str) -> Result<weir_net::ConnectionLimits> {
    let count = |key: String| -> Result<usize> {
        let n = config.get_u64(&key).map_err(problem)?;
        if n == 0 {
            return Err(problem(format!("{key}: must be at least 1")));
        }
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    };
    Ok(weir_net::ConnectionLimits {
        max_connections: count(format!("{prefix}.connections.max"))?,
        max_per_peer: count(format!("{prefix}.connections.per.peer.max"))?,
    })
}

/// A component's HTTP port: `PREFIX.connections.*` and `PREFIX.http.*`.
fn http_limits(config: &Config, prefix: &str) -> Result<weir_net::http::HttpLimits> {
    Ok(weir_net::http::HttpLimits {
        connections: connection_limits(config, prefix)?,
        header_read_timeout: config.get_duration(&format!("{prefix}.http.header.read.timeout")).map_err(problem)?,
        request_timeout: config.get_duration(&format!("{prefix}.http.request.timeout")).map_err(problem)?,
    })
}

/// A Hadoop IPC port's limits (`yarn-shim.ipc.*`) with `max_frame_key` as
/// the frame limit after the handshake.
pub fn ipc_server(config: &Config, max_frame_key: &str) -> Result<weir_yarn_ipc::server::ServerConfig> {
    let size = |key: &str| -> Result<usize> { Ok(usize::try_from(config.get_size(key).map_err(problem)?).unwrap_or(usize::MAX)) };
    Ok(weir_yarn_ipc::server::ServerConfig {
        max_frame_len: size(max_frame_key)?,
        handshake_max_frame_len: size("yarn-shim.ipc.handshake.max.frame.size")?,
        handshake_timeout: config.get_duration("yarn-shim.ipc.handshake.timeout").map_err(problem)?,
        idle_timeout: config.get_duration("yarn-shim.ipc.idle.timeout").map_err(problem)?,
        connections: connection_limits(config, "yarn-shim.ipc")?,
        ..Default::default()
    })
}

/// The broker a client command talks to: `--broker`, else `$WEIR_BROKER`
/// (a host:port or zk:// address; the testbed's client sets it), else
/// `broker.listen` (where a local `weir standalone` or `weir broker`
/// listens by default).
pub fn broker_address(config: &Config, flag: Option<String>) -> Result<String> {
    if let Some(addr) = flag {
        return Ok(addr);
    }
    match std::env::var("WEIR_BROKER") {
        Ok(addr) if !addr.trim().is_empty() => Ok(addr.trim().to_owned()),
        _ => config.get_str("broker.listen").map_err(problem).context("finding the broker"),
    }
}

/// The YARN shim's settings. `broker` is where it subscribes; `user` is the
/// framework user the broker shows.
pub fn yarn_shim(config: &Config, broker: String) -> Result<weir_yarn_rm::shim::ShimSettings> {
    let mut queues = Vec::new();
    for queue in config.get_list("yarn-shim.queues").map_err(problem)? {
        weir_model::ids::validate_id("role", &queue).map_err(|e| problem(format!("yarn-shim.queues: {e}")))?;
        queues.push(queue);
    }
    // A capacity-scheduler.xml or a fair-scheduler.xml names the queues
    // instead: its leaves.
    use weir_yarn_rm::capacity_scheduler::{CapacityScheduler, Source};
    let capacity_path = config.get_str("yarn-shim.capacity-scheduler.path").unwrap_or_default().trim().to_owned();
    let fair_path = config.get_str("yarn-shim.fair-scheduler.path").unwrap_or_default().trim().to_owned();
    let (key, path, source) = match (capacity_path.as_str(), fair_path.as_str()) {
        ("", "") => ("", String::new(), Source::Capacity),
        (c, "") => ("yarn-shim.capacity-scheduler.path", c.to_owned(), Source::Capacity),
        ("", f) => ("yarn-shim.fair-scheduler.path", f.to_owned(), Source::Fair),
        _ => return Err(problem("yarn-shim.capacity-scheduler.path and yarn-shim.fair-scheduler.path are both set: the queues come from one file")),
    };
    let capacity_scheduler = match path.as_str() {
        "" => None,
        path => {
            let path = std::path::PathBuf::from(path);
            let conf = CapacityScheduler::load(&path).map_err(|e| problem(format!("{key}: {e}")))?;
            if conf.source != source {
                let (is, other) = match conf.source {
                    Source::Fair => ("a fair-scheduler allocation file", "yarn-shim.fair-scheduler.path"),
                    Source::Capacity => ("a capacity-scheduler.xml", "yarn-shim.capacity-scheduler.path"),
                };
                return Err(problem(format!("{key}: {} is {is}: name it in {other}", path.display())));
            }
            for unsupported in &conf.unsupported {
                tracing::warn!(%unsupported, file = %path.display(), "a queue-file key Weir does not act on");
            }
            queues = conf.leaves().map(|q| q.name.clone()).collect();
            for role in conf.roles() {
                weir_model::ids::validate_role(&role).map_err(|e| problem(format!("{}: queue role {role}: {e}", path.display())))?;
            }
            Some((path, conf))
        }
    };
    if queues.is_empty() {
        return Err(problem("yarn-shim.queues: at least one queue is needed"));
    }
    let completed = config.get_u64("yarn-shim.completed.apps.max").map_err(problem)?;
    Ok(weir_yarn_rm::shim::ShimSettings {
        broker,
        client_address: socket_addr(config, "yarn-shim.client.address")?,
        queues,
        ipc: ipc_server(config, "yarn-shim.ipc.max.frame.size")?,
        nodes_refresh_interval: config.get_duration("yarn-shim.nodes.refresh.interval").map_err(problem)?,
        offer_refuse: config.get_duration("yarn-shim.offer.refuse").map_err(problem)?,
        max_completed_applications: usize::try_from(completed).unwrap_or(usize::MAX),
        user: std::env::var("USER").unwrap_or_else(|_| "yarn".to_owned()),
        scheduler_address: socket_addr(config, "yarn-shim.scheduler.address")?,
        scheduler: weir_yarn_rm::scheduler::SchedulerConfig {
            nm_cpus: non_negative(config, "yarn-shim.nodemanager.cpus")?,
            nm_mem_mb: non_negative(config, "yarn-shim.nodemanager.memory-mb")?,
            locality_delay_ms: millis(config, "yarn-shim.locality.delay")?,
            am_liveness_ms: millis(config, "yarn-shim.am.liveness.expiry")?,
            nm_idle_ms: millis(config, "yarn-shim.nodemanager.idle.timeout")?,
            default_max_attempts: i32::try_from(config.get_u32("yarn-shim.am.max-attempts").map_err(problem)?.max(1)).unwrap_or(i32::MAX),
            busy_refuse_ms: millis(config, "yarn-shim.offer.refuse.busy")?,
            idle_refuse_ms: millis(config, "yarn-shim.offer.refuse")?,
            max_containers_per_offer: usize::try_from(config.get_u32("yarn-shim.offer.max.containers").map_err(problem)?.max(1)).unwrap_or(usize::MAX),
            ..Default::default()
        },
        // Empty (the default) reads as unset: this very program.
        weir_binary: match config.get_str("yarn-shim.weir.binary") {
            Ok(p) if !p.trim().is_empty() => std::path::PathBuf::from(p.trim()),
            _ => std::env::current_exe().map_err(|e| problem(format!("cannot find this program's path: {e}")))?,
        },
        container_kill_grace: config.get_duration("yarn-shim.container.kill.grace").map_err(problem)?,
        preemption: config.get_bool("yarn-shim.preemption.enabled").map_err(problem)?,
        acls: weir_yarn_rm::acl::AclPolicy {
            enabled: config.get_bool("yarn-shim.acl.enable").map_err(problem)?,
            // Untrimmed: a leading space makes the rest groups. Blank: nobody.
            admin: weir_yarn_rm::acl::Acl::parse(&config.get("yarn-shim.admin.acl").map_err(problem)?.unwrap_or_default()),
        },
        broker_auth: weir_yarn_rm::shim::BrokerAuth {
            token: match config.get_str("yarn-shim.broker.token.file").unwrap_or_default().trim() {
                "" => None,
                path => weir_sdk::Token::from_file_or_env(Some(std::path::Path::new(path)))
                    .map_err(|e| problem(format!("yarn-shim.broker.token.file: {e}")))?,
            },
            tls_ca: match config.get_str("yarn-shim.broker.tls.ca.file").unwrap_or_default().trim() {
                "" => None,
                path => Some(std::fs::read(path).map_err(|e| problem(format!("yarn-shim.broker.tls.ca.file: {path}: {e}")))?),
            },
        },
        nm_hadoop_conf_dir: None,
        failover_timeout: config.get_duration("yarn-shim.framework.failover.timeout").map_err(problem)?,
        web_address: match config.get_str("yarn-shim.webapp.address").unwrap_or_default().trim() {
            "" => None,
            _ => Some(socket_addr(config, "yarn-shim.webapp.address")?),
        },
        admin_address: match config.get_str("yarn-shim.admin.address").unwrap_or_default().trim() {
            "" => None,
            _ => Some(socket_addr(config, "yarn-shim.admin.address")?),
        },
        nodes_exclude_path: match config.get_str("yarn-shim.nodes.exclude.path").unwrap_or_default().trim() {
            "" => None,
            path => Some(std::path::PathBuf::from(path)),
        },
        capacity_scheduler,
        advertised_host: Some(weir_agent::detect::hostname()),
        container_executor: weir_yarn_rm::container_executor::ContainerExecutor::from_conf(
            &config.get_str("yarn-shim.nodemanager.container-executor.class").map_err(problem)?,
            config.get_str("yarn-shim.security.authentication").map_err(problem)?.trim().eq_ignore_ascii_case("kerberos"),
            config.get_bool("yarn-shim.nodemanager.linux-container-executor.nonsecure-mode.limit-users").map_err(problem)?,
            &config.get_str("yarn-shim.nodemanager.linux-container-executor.nonsecure-mode.local-user").map_err(problem)?,
        )
        .map_err(|e| problem(format!("yarn-shim.nodemanager.container-executor.class: {e}")))?,
        kerberos: match kerberos(config)? {
            Some(k) => {
                let rules = weir_yarn_ipc::security::auth_to_local::AuthToLocal::parse(&k.auth_to_local, &k.realm)
                    .map_err(|e| problem(format!("yarn-shim.security.auth_to_local: {e}")))?;
                let acceptor = weir_yarn_ipc::security::sasl_gssapi::KerberosAcceptor::from_keytab(&k.principal, &k.keytab, rules)
                    .map_err(|e| problem(format!("yarn-shim.resourcemanager.keytab: {e}")))?;
                Some(acceptor)
            }
            None => None,
        },
    })
}

/// Kerberos for the shim's client and admin ports, as configured.
pub struct KerberosSettings {
    /// The service principal, `_HOST` replaced (`rm/host@REALM`).
    pub principal: String,
    pub keytab: std::path::PathBuf,
    /// `hadoop.security.auth_to_local`'s rules, as written.
    pub auth_to_local: String,
    /// The principal's realm: the realm `DEFAULT` accepts.
    pub realm: String,
}

/// `yarn-shim.security.authentication` and, when it is `kerberos`, the
/// principal (Hadoop's `_HOST` becomes the host clients reach the client
/// port by: `localhost` on loopback, else this machine's name), keytab and
/// rules; None when it is `simple`.
pub fn kerberos(config: &Config) -> Result<Option<KerberosSettings>> {
    let mode = config.get_str("yarn-shim.security.authentication").unwrap_or_default();
    match mode.trim() {
        "" | "simple" => return Ok(None),
        "kerberos" => {}
        other => return Err(problem(format!("yarn-shim.security.authentication: {other:?} is neither simple nor kerberos"))),
    }
    let configured = config.get_str("yarn-shim.resourcemanager.principal").unwrap_or_default().trim().to_owned();
    if configured.is_empty() {
        return Err(problem("yarn-shim.resourcemanager.principal: needed when yarn-shim.security.authentication is kerberos (such as rm/_HOST@EXAMPLE.COM)"));
    }
    let host = match socket_addr(config, "yarn-shim.client.address")?.ip() {
        ip if ip.is_loopback() => "localhost".to_owned(),
        _ => weir_agent::detect::hostname().to_lowercase(),
    };
    let principal = configured.replace("_HOST", &host);
    let realm = match principal.rsplit_once('@') {
        Some((name, realm)) if !name.is_empty() && !realm.is_empty() => realm.to_owned(),
        _ => return Err(problem(format!("yarn-shim.resourcemanager.principal: {configured:?} names no realm (service/host@REALM)"))),
    };
    let keytab = config.get_str("yarn-shim.resourcemanager.keytab").unwrap_or_default().trim().to_owned();
    if keytab.is_empty() {
        return Err(problem("yarn-shim.resourcemanager.keytab: needed when yarn-shim.security.authentication is kerberos"));
    }
    let auth_to_local = config.get_str("yarn-shim.security.auth_to_local").unwrap_or_default();
    let auth_to_local = if auth_to_local.trim().is_empty() { "DEFAULT".to_owned() } else { auth_to_local.trim().to_owned() };
    Ok(Some(KerberosSettings { principal, keytab: keytab.into(), auth_to_local, realm }))
}

/// The Hadoop client configuration: the configured default file system
/// and the merged site files of `yarn-shim.client.hadoop.conf.dir`, if
/// any. Read (and so checked) before the shim starts; the shim's addresses
/// are named once it listens (`ClientConf::name_shim`).
pub fn client_conf(config: &Config) -> Result<weir_yarn_rm::hadoop_conf::ClientConf> {
    let default_fs = config.get_str("yarn-shim.client.default.fs").unwrap_or_default();
    let default_fs = Some(default_fs.trim().to_owned()).filter(|fs| !fs.is_empty());
    if let Some(fs) = &default_fs {
        if !fs.contains("://") {
            return Err(problem(format!("yarn-shim.client.default.fs: {fs:?} is not a file system URI (such as hdfs://namenode:9000 or file:///)")));
        }
    }
    let mut merged = std::collections::BTreeMap::new();
    let dir = config.get_str("yarn-shim.client.hadoop.conf.dir").unwrap_or_default();
    let dir = dir.trim();
    if !dir.is_empty() {
        let dir = std::path::Path::new(dir);
        if !dir.is_dir() {
            return Err(problem(format!("yarn-shim.client.hadoop.conf.dir: {} is not a directory", dir.display())));
        }
        for name in weir_yarn_rm::hadoop_conf::SITE_FILES {
            let file = dir.join(name);
            if !file.exists() {
                continue;
            }
            let props = weir_conf::parse_hadoop_file(&file).map_err(|e| problem(format!("yarn-shim.client.hadoop.conf.dir: {e}")))?;
            merged.insert(name.to_owned(), props.into_iter().map(|p| (p.name, p.value)).collect());
        }
    }
    let kerberos = kerberos(config)?.map(|k| weir_yarn_rm::hadoop_conf::ClientKerberos { principal: k.principal, auth_to_local: k.auth_to_local });
    Ok(weir_yarn_rm::hadoop_conf::ClientConf { default_fs, merged, kerberos, ..Default::default() })
}

fn millis(config: &Config, key: &str) -> Result<i64> {
    Ok(i64::try_from(config.get_duration(key).map_err(problem)?.as_millis()).unwrap_or(i64::MAX))
}

/// A quantity of a resource (thousandths, as the pool counts them).
fn non_negative(config: &Config, key: &str) -> Result<weir_model::Milli> {
    let v = config.get_f64(key).map_err(problem)?;
    weir_model::Milli::from_f64(v)
        .ok_or_else(|| problem(format!("{key}: {v} must be a finite number of at least 0 and at most {}", weir_model::Milli::MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Config {
        let mut c = Config::defaults(&[Daemon::YarnShim]);
        for (k, v) in pairs {
            c.set(k, v).unwrap();
        }
        c
    }

    #[test]
    fn kerberos_settings_substitute_host_and_refuse_what_is_missing() {
        assert!(kerberos(&config(&[])).unwrap().is_none());
        let err = |pairs: &[(&str, &str)]| kerberos(&config(pairs)).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err(&[("yarn-shim.security.authentication", "ldap")]).contains("neither simple nor kerberos"));
        let on = ("yarn-shim.security.authentication", "kerberos");
        assert!(err(&[on]).starts_with("yarn-shim.resourcemanager.principal: needed"));
        assert!(err(&[on, ("yarn-shim.resourcemanager.principal", "rm/_HOST")]).contains("names no realm"));
        let principal = ("yarn-shim.resourcemanager.principal", "rm/_HOST@EXAMPLE.COM");
        assert!(err(&[on, principal]).starts_with("yarn-shim.resourcemanager.keytab: needed"));
        let k = kerberos(&config(&[on, principal, ("yarn-shim.resourcemanager.keytab", "/k"), ("yarn-shim.client.address", "127.0.0.1:0")]))
            .unwrap()
            .unwrap();
        assert_eq!((k.principal.as_str(), k.realm.as_str(), k.auth_to_local.as_str()), ("rm/localhost@EXAMPLE.COM", "EXAMPLE.COM", "DEFAULT"));
        let k = kerberos(&config(&[on, principal, ("yarn-shim.resourcemanager.keytab", "/k"), ("yarn-shim.client.address", "0.0.0.0:8032")]))
            .unwrap()
            .unwrap();
        assert_eq!(k.principal, format!("rm/{}@EXAMPLE.COM", weir_agent::detect::hostname().to_lowercase()));
        // The shim will not start on a keytab it cannot use.
        let e = yarn_shim(&config(&[on, principal, ("yarn-shim.resourcemanager.keytab", "/nonexistent/rm.keytab")]), "b:1".into())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.starts_with("yarn-shim.resourcemanager.keytab: cannot read keytab /nonexistent/rm.keytab"), "{e}");
    }

    #[test]
    fn the_client_configuration_refuses_a_missing_directory_a_bad_site_file_and_a_bare_file_system_name() {
        let err = client_conf(&config(&[("yarn-shim.client.hadoop.conf.dir", "/nonexistent/hadoop")])).unwrap_err().to_string();
        assert_eq!(err, "yarn-shim.client.hadoop.conf.dir: /nonexistent/hadoop is not a directory");
        let err = client_conf(&config(&[("yarn-shim.client.default.fs", "namenode:9000")])).unwrap_err().to_string();
        assert!(err.starts_with("yarn-shim.client.default.fs: \"namenode:9000\" is not a file system URI"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("core-site.xml"), "<configuration><property><name>fs.defaultFS</name>").unwrap();
        let err = client_conf(&config(&[("yarn-shim.client.hadoop.conf.dir", dir.path().to_str().unwrap())])).unwrap_err().to_string();
        assert!(err.starts_with("yarn-shim.client.hadoop.conf.dir: ") && err.contains("core-site.xml"), "{err}");
        // A good one: merged, its default file system taken.
        std::fs::write(dir.path().join("core-site.xml"), "<configuration><property><name>fs.defaultFS</name><value>hdfs://nn:9000</value></property></configuration>").unwrap();
        let conf = client_conf(&config(&[("yarn-shim.client.hadoop.conf.dir", dir.path().to_str().unwrap())])).unwrap();
        assert_eq!(conf.effective_default_fs(), "hdfs://nn:9000");
    }
}
