//! The locality benchmark's driver, small: with frameworks stating their
//! data, nearly every task runs on an agent holding its block, at about
//! the wait and shares of placement with no locality (the full-size
//! figures are in docs/BENCHMARKS.md: `weir-locality`).

use std::time::Duration;

use weir_sim::locality::{run, LocalityConfig};

#[test]
fn stating_the_data_brings_tasks_to_it_without_changing_shares() {
    let small = |locality| LocalityConfig {
        agents: 100,
        blocks: 5_000,
        duration: Duration::from_secs(90),
        warmup: Duration::from_secs(30),
        job_tasks: 16,
        ..LocalityConfig::standard(7, locality)
    };
    let plain = run(&small(false));
    let local = run(&small(true));
    eprintln!(
        "no locality: {:.1}% local, p50 wait {:?}, shares {:?}; locality: {:.1}% local, p50 wait {:?}, shares {:?}",
        100.0 * plain.local_fraction(),
        plain.delay_quantile(0.5),
        plain.mean_shares,
        100.0 * local.local_fraction(),
        local.delay_quantile(0.5),
        local.mean_shares
    );
    assert!(plain.launched > 1000 && local.launched > 1000, "{} {}", plain.launched, local.launched);
    assert!(local.local_fraction() >= 0.9, "{:.3}", local.local_fraction());
    assert!(plain.local_fraction() < 0.3, "{:.3}", plain.local_fraction());
    assert!(local.delay_quantile(0.5) <= plain.delay_quantile(0.5) + Duration::from_secs(1));
    for (a, b) in plain.mean_shares.iter().zip(&local.mean_shares) {
        assert!((a - b).abs() < 0.05, "{:?} vs {:?}", plain.mean_shares, local.mean_shares);
    }
}
