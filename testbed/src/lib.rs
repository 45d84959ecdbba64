//! What the docker-compose testbed (`docker/`, `weir testbed`) knows that
//! needs no Docker, so it is tested without one:
//!
//! - [`fault`]: the faults `weir testbed fault` injects, their timestamped
//!   log, and the seeded schedules a scenario runs;
//! - [`history`]: what the scenario's workload records — every launch and
//!   every status update its framework received, the tasks' own run
//!   records, and the books of the leader and the agents at the end;
//! - [`check`]: the Jepsen-style checker over one run.
//!
//! The simulation (`weir-sim`) checks the same promises inside one
//! process with a simulated network; the testbed checks them on real
//! processes on separate machines, where it cannot see what an agent
//! generated, only what its framework heard and what its tasks did.

pub mod check;
pub mod fault;
pub mod history;

/// The simulation's seeded generator, shared so a seed means the same in both.
pub use weir_sim::rng::SimRng;

/// `2026-12-07T06:41:25.123Z` for a Unix time in milliseconds.
pub fn rfc3339_ms(unix_ms: u64) -> String {
    let secs = (unix_ms / 1000) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem % 3600 / 60, rem % 60, unix_ms % 1000)
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_are_utc_rfc3339_with_milliseconds() {
        assert_eq!(super::rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::rfc3339_ms(951_782_400_007), "2000-02-29T00:00:00.007Z");
        assert_eq!(super::rfc3339_ms(1_796_625_685_123), "2026-12-07T06:41:25.123Z");
    }
}
