//! YARN allocation rate: emulated ApplicationMasters over real Hadoop IPC
//! against the shim's RM core and scheduler, with emulated agents offering
//! resources in place of a broker (see `weir_yarn_rm::alloc_rate`, which
//! `weir bench all` runs too). Measures containers allocated per second and
//! the allocate round trip (p50, p99), with one and with many applications.
//!
//!   cargo run --release -p weir-yarn-rm --example alloc_rate -- APPS CONTAINERS_PER_APP [AGENTS] [PER_OFFER]
//!
//! Prints one summary line. Loopback only; every loop is bounded.

use std::process::ExitCode;

use weir_yarn_rm::alloc_rate::{run, AllocRateConfig};

fn arg(i: usize, default: u64) -> u64 {
    std::env::args().nth(i).and_then(|a| a.parse().ok()).unwrap_or(default)
}

#[tokio::main]
async fn main() -> ExitCode {
    let config = AllocRateConfig { apps: arg(1, 1), containers_per_app: arg(2, 10_000), agents: arg(3, 1000), per_offer: arg(4, 64) as usize };
    match run(config).await {
        Ok(rate) => {
            println!("{rate}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("alloc_rate: {e}");
            ExitCode::FAILURE
        }
    }
}
