//! The broker core's steady tick against the allocator's cycle, for a
//! profiler (`weir bench all --only tick` prints the same figure):
//!
//! ```sh
//! cargo run --release -p weir-broker --example tick_times -- [AGENTS] [FRAMEWORKS] [TICKS]
//! perf record -g target/release/examples/tick_times 10000 1000 50
//! ```

fn main() {
    let arg = |i: usize, default: u64| {
        std::env::args()
            .nth(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or(default)
    };
    let (agents, frameworks, ticks) = (arg(1, 10_000), arg(2, 1_000), arg(3, 20));
    match weir_broker::bench::tick_ratio(agents, frameworks, ticks as usize) {
        Ok(r) => println!(
            "{agents} agents x {frameworks} frameworks, {ticks} ticks: tick median {:?} (min {:?}), cycle median {:?} (min {:?}), ratio {:.2}",
            r.tick.median(),
            r.tick.min(),
            r.cycle.median(),
            r.cycle.min(),
            r.ratio()
        ),
        Err(e) => {
            eprintln!("tick_times: {e}");
            std::process::exit(1);
        }
    }
}
