//! `weir`: one binary, every role. Daemons (`broker`, `agent`, `standalone`)
//! and tools (`run`, `status`, `conf`) share the global `--conf-dir` and
//! `-D KEY=VALUE` flags, accepted before or after the subcommand.
//!
//! Exit codes: 0 success; 1 an error (its cause chain is printed); 2 bad
//! usage or configuration; `weir run` exits with its task's code. A tool
//! (not a daemon) whose output pipe closes dies by SIGPIPE, as Unix tools
//! do: `weir status | head` ends quietly (141 in a shell).

mod cmd;
mod settings;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "weir", version, about = "One resource pool for native frameworks and YARN applications")]
struct Cli {
    /// Configuration directory with weir-site.xml and <daemon>-site.xml
    /// (default: $WEIR_CONF_DIR, else embedded defaults only).
    #[arg(long, global = true, value_name = "DIR")]
    conf_dir: Option<PathBuf>,

    /// Override a configuration key (repeatable), e.g. -D broker.offer.timeout=30s.
    #[arg(short = 'D', global = true, value_name = "KEY=VALUE", action = clap::ArgAction::Append)]
    define: Vec<String>,

    /// File holding the bearer token sent to a broker with authentication
    /// on (not readable by group or others); else $WEIR_TOKEN, if set.
    #[arg(long, global = true, value_name = "FILE", env = "WEIR_TOKEN_FILE")]
    token_file: Option<PathBuf>,

    /// PEM file of the CA that signed the broker's certificate: set, the
    /// tools speak TLS to the broker and trust only that CA.
    #[arg(long, global = true, value_name = "FILE", env = "WEIR_CA_FILE")]
    ca_file: Option<PathBuf>,

    /// PEM client certificate shown to a broker or agent with mutual TLS
    /// (with --key-file and --ca-file): its principal stands for a token.
    #[arg(long, global = true, value_name = "FILE", env = "WEIR_CERT_FILE", requires = "key_file")]
    cert_file: Option<PathBuf>,

    /// PEM private key of --cert-file (not readable by group or others).
    #[arg(long, global = true, value_name = "FILE", env = "WEIR_KEY_FILE", requires = "cert_file")]
    key_file: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the broker: offers agents' resources to frameworks.
    Broker(cmd::broker::Args),
    /// Run an agent (reports this machine's resources, runs tasks); or list, drain, reactivate agents.
    Agent(cmd::agent::Args),
    /// Run a broker and one agent in the foreground, on embedded defaults.
    Standalone(cmd::standalone::Args),
    /// Run a command on the cluster and stream its output.
    Run(cmd::run::Args),
    /// Show agents, frameworks, tasks and roles.
    Status(cmd::status::Args),
    /// Print a task's output (stdout, or stderr with --stderr).
    Logs(cmd::logs::Args),
    /// Reserve an agent's free resources for a role (dynamic reservation).
    Reserve(cmd::reserve::ReserveArgs),
    /// Give a dynamic reservation's resources back to every role.
    Unreserve(cmd::reserve::UnreserveArgs),
    /// Persistent volumes: create, destroy, grow, shrink, list.
    Volume(cmd::reserve::VolumeArgs),
    /// Role policies: weight, priority band, guarantee and limit (list, set, reset).
    #[command(alias = "quota")]
    Role(cmd::role::Args),
    /// Show the effective configuration.
    Conf(cmd::conf::Args),
    /// Run the YARN shim: serves YARN clients, subscribed to a broker.
    Yarn(cmd::yarn::Args),
    /// A real multi-machine cluster in Docker containers, with faults injected.
    Testbed(cmd::testbed::Args),
    /// Scale benchmarks: emulated agents, real launch throughput.
    Bench(cmd::bench::Args),
    /// Supervise one task (started by the agent, not by people).
    #[command(hide = true)]
    Executor(cmd::executor::Args),
    /// A YARN node manager (started on agents by the YARN shim).
    #[command(hide = true, name = "yarn-nodemanager")]
    YarnNodemanager(cmd::yarn::NodeManagerArgs),
    /// One YARN container's task (started on agents by the YARN shim).
    #[command(hide = true, name = "yarn-container")]
    YarnContainer(cmd::yarn::ContainerArgs),
}

impl Command {
    /// Daemons and the processes they start write to sockets and to their
    /// children's pipes, where a reader that went away is an error to log
    /// and survive; they keep Rust's ignored SIGPIPE. Everything else is a
    /// tool whose output people pipe into `head` or `grep -q`.
    fn is_daemon(&self) -> bool {
        match self {
            Command::Broker(_)
            | Command::Standalone(_)
            | Command::Yarn(_)
            | Command::Bench(_)
            | Command::Executor(_)
            | Command::YarnNodemanager(_)
            | Command::YarnContainer(_) => true,
            Command::Agent(args) => args.is_daemon(),
            Command::Testbed(args) => args.is_daemon(),
            Command::Run(_)
            | Command::Status(_)
            | Command::Logs(_)
            | Command::Reserve(_)
            | Command::Unreserve(_)
            | Command::Volume(_)
            | Command::Role(_)
            | Command::Conf(_) => false,
        }
    }
}

/// A tool whose reader went away (`weir status | head`) ends as Unix tools
/// do, killed by SIGPIPE (a shell reports 141) without a word, instead of
/// panicking in println! because Rust ignores SIGPIPE.
fn die_quietly_on_a_closed_pipe() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: called before any thread starts; SIG_DFL installs no handler.
    if let Err(err) = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) } {
        eprintln!("weir: cannot restore the default SIGPIPE action: {err}");
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !cli.command.is_daemon() {
        die_quietly_on_a_closed_pipe();
    }
    // The supervisor needs no runtime (and there is one per task).
    if let Command::Executor(args) = cli.command {
        return cmd::executor::main(args).unwrap_or_else(|err| {
            // Its stderr may be on a full disk: never panic saying so.
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "weir executor: {err:#}");
            ExitCode::from(1)
        });
    }
    // So is a YARN container's task: it waits for its launch and its child.
    if let Command::YarnContainer(args) = cli.command {
        return cmd::yarn::container_main(args);
    }
    // Every connection is a descriptor: a daemon left at a soft limit of
    // 1,024 would run out long before its connection caps matter.
    if let Err(err) = weir_net::rlimit::raise_open_file_limit() {
        eprintln!("weir: cannot raise the open-file limit to its hard limit: {err}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("weir: cannot start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    let identity = cli.cert_file.as_deref().zip(cli.key_file.as_deref());
    if let Err(err) = settings::set_credentials(cli.token_file.as_deref(), cli.ca_file.as_deref(), identity) {
        eprintln!("weir: {err:#}");
        return ExitCode::from(2);
    }
    let options = settings::Options { conf_dir: cli.conf_dir, defines: cli.define };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Broker(args) => cmd::broker::main(&options, args).await,
            Command::Agent(args) => cmd::agent::main(&options, args).await,
            Command::Standalone(args) => cmd::standalone::main(&options, args).await,
            Command::Run(args) => cmd::run::main(&options, args).await,
            Command::Status(args) => cmd::status::main(&options, args).await,
            Command::Logs(args) => cmd::logs::main(&options, args).await,
            Command::Reserve(args) => cmd::reserve::reserve_main(&options, args).await,
            Command::Unreserve(args) => cmd::reserve::unreserve_main(&options, args).await,
            Command::Volume(args) => cmd::reserve::volume_main(&options, args).await,
            Command::Role(args) => cmd::role::main(&options, args).await,
            Command::Conf(args) => cmd::conf::main(&options, args),
            Command::Yarn(args) => cmd::yarn::main(&options, args).await,
            Command::Bench(args) => cmd::bench::main(&options, args).await,
            Command::Testbed(args) => cmd::testbed::main(&options, args).await,
            Command::YarnNodemanager(args) => cmd::yarn::nodemanager_main(&options, args).await,
            Command::Executor(_) | Command::YarnContainer(_) => unreachable!("handled before the runtime starts"),
        }
    });
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("weir: {err:#}");
            ExitCode::from(if err.downcast_ref::<settings::ConfigProblem>().is_some() { 2 } else { 1 })
        }
    }
}
