//! `weir conf get KEY` and `weir conf dump [--format table|xml]`.

use std::process::ExitCode;

use anyhow::Result;
use weir_conf::Daemon;

use crate::settings::{self, Options};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Print the effective value of KEY (exit 1 if it is unset).
    Get { key: String },
    /// Print every effective key with its value and where it came from.
    Dump {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Format {
    Table,
    Xml,
}

pub fn main(options: &Options, args: Args) -> Result<ExitCode> {
    let config = settings::load(options, &[Daemon::Broker, Daemon::Agent, Daemon::YarnShim], "warn")?;
    match args.command {
        Command::Get { key } => match weir_conf::cli::conf_get(&config, &key) {
            Ok(value) => {
                println!("{value}");
                Ok(ExitCode::SUCCESS)
            }
            Err(err) => {
                eprintln!("{err}");
                Ok(ExitCode::from(1))
            }
        },
        Command::Dump { format } => {
            let text = match format {
                Format::Table => config.dump_table(),
                Format::Xml => config.dump_xml(),
            };
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
    }
}
