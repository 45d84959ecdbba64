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
    /// Turn security on for a one-machine trial: make a local CA, the
    /// broker's certificate, an operator token and the agent registration
    /// secret in WORK_DIR/secure/, and serve TLS with authentication.
    #[arg(long)]
    secure: bool,
}

pub async fn main(options: &Options, args: Args) -> Result<ExitCode> {
    let mut config = settings::load(options, &[Daemon::Broker, Daemon::Agent, Daemon::YarnShim], "")?;
    settings::apply_flag(&mut config, "weir.work.dir", args.work_dir.map(|p| p.display().to_string()))?;
    settings::apply_flag(&mut config, "agent.resources", args.resources)?;
    settings::apply_flag(&mut config, "broker.listen", args.listen)?;
    let secure = if args.secure {
        let dir = config.get_path("weir.work.dir").map_err(|e| settings::ConfigProblem(e.to_string()))?.join("secure");
        let listen_host = config.get_host_port("broker.listen").map(|(h, _)| h).unwrap_or_default();
        let files = secure::make(&dir, &listen_host)?;
        for (key, path) in [
            ("broker.tls.cert.file", &files.cert),
            ("broker.tls.key.file", &files.key),
            ("broker.auth.tokens.file", &files.tokens),
            ("broker.auth.agent.secret.file", &files.agent_secret),
            ("agent.auth.secret.file", &files.agent_secret),
            ("agent.tls.ca.file", &files.ca),
            // One machine: the agent serves with the broker's certificate
            // (same names), and the broker's UI trusts the same CA.
            ("agent.tls.cert.file", &files.cert),
            ("agent.tls.key.file", &files.key),
            ("broker.tls.agents.ca.file", &files.ca),
            // The agent's HTTP port asks for the same tokens (the UI and
            // the tools send theirs).
            ("agent.auth.tokens.file", &files.tokens),
            // Mutual TLS, optional: a certificate of the CA (admin's, the
            // agent's own) stands for a token or the agent secret.
            ("broker.tls.client.ca.file", &files.ca),
            ("agent.tls.client.ca.file", &files.ca),
            // The YARN shim subscribes as admin, over TLS.
            ("yarn-shim.broker.token.file", &files.admin_token),
            ("yarn-shim.broker.tls.ca.file", &files.ca),
        ] {
            settings::apply_flag(&mut config, key, Some(path.display()))?;
        }
        Some(files)
    } else {
        None
    };
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
    // With --secure the YARN shim speaks TLS with the admin token to the
    // broker (its own ports stay Hadoop's SIMPLE).
    let yarn = start_yarn(&config, &broker_addr.to_string()).await;
    match &secure {
        None => {
            println!("weir standalone: broker {broker_addr} (gRPC + HTTP), {agent_line}");
            println!("  status:   weir status            state: http://{broker_addr}/state");
        }
        Some(files) => {
            println!("weir standalone: broker {broker_addr} (gRPC + HTTP over TLS, tokens required), {agent_line}");
            println!("  connect:  export WEIR_CA_FILE={} WEIR_TOKEN_FILE={}", files.ca.display(), files.admin_token.display());
            println!("  status:   weir status            state: curl --cacert $WEIR_CA_FILE -H \"Authorization: Bearer $(cat $WEIR_TOKEN_FILE)\" https://{broker_addr}/state");
            println!("  tokens:   {} (principal admin; add lines \"PRINCIPAL TOKEN\" for more)", files.tokens.display());
            println!("  or a client certificate (mutual TLS): export WEIR_CERT_FILE={} WEIR_KEY_FILE={}", files.admin_cert.display(), files.admin_key.display());
        }
    }
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

/// The files `--secure` makes (see [`secure::make`]).
mod secure {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    use std::path::{Path, PathBuf};

    use anyhow::{Context, Result};

    pub struct Files {
        pub ca: PathBuf,
        pub cert: PathBuf,
        pub key: PathBuf,
        pub tokens: PathBuf,
        pub admin_token: PathBuf,
        pub agent_secret: PathBuf,
        /// A client certificate for principal `admin`, and its key.
        pub admin_cert: PathBuf,
        pub admin_key: PathBuf,
    }

    /// A fresh random secret, hex (256 bits from the kernel).
    fn random_hex() -> Result<String> {
        let mut bytes = [0u8; 32];
        std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes)).context("reading /dev/urandom")?;
        Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Writes `text` to a file only its owner may read (0600 from the start).
    fn write_private(path: &Path, text: &str) -> Result<()> {
        let _ = std::fs::remove_file(path);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("creating {}", path.display()))?;
        f.write_all(text.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// Makes, in `dir` (kept from one run to the next): a CA (`ca.pem`), a
    /// broker certificate it signed for localhost, 127.0.0.1 and
    /// `listen_host` (`broker.pem`, `broker-key.pem`), a token file with
    /// one principal `admin` (`tokens`, and the token alone in
    /// `admin.token`), the agent registration secret (`agent-secret`) and
    /// a client certificate for `admin` (`admin.pem`, `admin-key.pem`).
    /// The CA's key is not kept: a directory without the admin
    /// certificate (made before there was one) gets a new CA.
    /// Files that exist are kept, so clients set up once keep working.
    pub fn make(dir: &Path, listen_host: &str) -> Result<Files> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).with_context(|| format!("restricting {}", dir.display()))?;
        let files = Files {
            ca: dir.join("ca.pem"),
            cert: dir.join("broker.pem"),
            key: dir.join("broker-key.pem"),
            tokens: dir.join("tokens"),
            admin_token: dir.join("admin.token"),
            agent_secret: dir.join("agent-secret"),
            admin_cert: dir.join("admin.pem"),
            admin_key: dir.join("admin-key.pem"),
        };
        if ![&files.ca, &files.cert, &files.key, &files.admin_cert, &files.admin_key].iter().all(|f| f.exists()) {
            let ca_key = rcgen::KeyPair::generate().context("making the CA key")?;
            let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).context("CA parameters")?;
            ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            ca_params.distinguished_name.push(rcgen::DnType::CommonName, "weir standalone CA");
            ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
            let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).context("making the CA certificate")?;
            let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
            let host = listen_host.trim_start_matches('[').trim_end_matches(']');
            if !host.is_empty() && !names.iter().any(|n| n == host) && host != "0.0.0.0" && host != "::" {
                names.push(host.to_owned());
            }
            let key = rcgen::KeyPair::generate().context("making the broker key")?;
            let mut params = rcgen::CertificateParams::new(names).context("broker certificate parameters")?;
            params.distinguished_name.push(rcgen::DnType::CommonName, "weir broker");
            let cert = params.signed_by(&key, &ca).context("signing the broker certificate")?;
            write_private(&files.key, &key.serialize_pem())?;
            std::fs::write(&files.cert, cert.pem()).with_context(|| format!("writing {}", files.cert.display()))?;
            std::fs::write(&files.ca, ca.pem()).with_context(|| format!("writing {}", files.ca.display()))?;
            let admin_key = rcgen::KeyPair::generate().context("making the admin key")?;
            let mut admin = rcgen::CertificateParams::new(Vec::<String>::new()).context("admin certificate parameters")?;
            admin.distinguished_name.push(rcgen::DnType::CommonName, "admin");
            admin.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
            let admin_cert = admin.signed_by(&admin_key, &ca).context("signing the admin certificate")?;
            write_private(&files.admin_key, &admin_key.serialize_pem())?;
            std::fs::write(&files.admin_cert, admin_cert.pem()).with_context(|| format!("writing {}", files.admin_cert.display()))?;
        }
        if !(files.tokens.exists() && files.admin_token.exists()) {
            let token = random_hex()?;
            write_private(&files.tokens, &format!("# PRINCIPAL TOKEN, one per line (re-read when it changes)\nadmin {token}\n"))?;
            write_private(&files.admin_token, &format!("{token}\n"))?;
        }
        if !files.agent_secret.exists() {
            write_private(&files.agent_secret, &format!("{}\n", random_hex()?))?;
        }
        Ok(files)
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
