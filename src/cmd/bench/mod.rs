//! `weir bench …`: the scale harness (issue 8). Each benchmark starts the
//! real `weir` daemons it needs (this very binary) on loopback, drives
//! them for a bounded time, prints one summary line on stdout (progress on
//! stderr), and stops every process it started.
//!
//! - `weir bench agents --count N`: N emulated agents over the real agent
//!   protocol against one `weir broker`, plus a probe framework; see
//!   [`agents`].
//! - `weir bench launch`: real `true` tasks through one real `weir agent`,
//!   end to end; see [`launch`].
//! - `weir bench all`: every row of issue 22's table that runs here, in
//!   a few minutes, as one table with the targets; see [`all`].
//! - `weir bench flood`: hostile connections against `weir standalone`
//!   (memory under declared frames, the broker under a held flood); see
//!   [`flood`].
//!
//! docs/BENCHMARKS.md holds the measured figures and how to read them.

mod agents;
mod all;
mod cycles;
mod daemons;
mod flood;
mod launch;

use std::process::ExitCode;

use anyhow::Result;

use crate::settings::Options;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(clap::Subcommand, Debug)]
enum Bench {
    /// Emulated agents against a real broker, with a probe framework.
    Agents(agents::Args),
    /// Real `true` tasks through one real agent, end to end.
    Launch(launch::Args),
    /// Hostile connections against a standalone (issue 24).
    Flood(flood::Args),
    /// Every speed figure of issue 22 that runs here, as one table with its target.
    All(all::Args),
}

pub async fn main(_options: &Options, args: Args) -> Result<ExitCode> {
    match args.bench {
        Bench::Agents(args) => agents::main(args).await,
        Bench::Launch(args) => launch::main(args).await,
        Bench::Flood(args) => flood::main(args).await,
        Bench::All(args) => all::main(args).await,
    }
}
