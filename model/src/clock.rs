//! Time, as every core and shell sees it.
//!
//! Cores never read a clock: the shell reads a [`Clock`] and passes the
//! values in. Two kinds of time, never mixed:
//! - [`Clock::now`]: monotonic, since the clock started. Every deadline,
//!   timeout and timer is measured in it, so a wall-clock step (NTP, an
//!   operator's `date`) can neither fire nor stall one.
//! - [`Clock::unix_time`]: wall-clock time since the Unix epoch, only for
//!   timestamps that leave the process (status updates, YARN's start and
//!   finish times, token expiry dates a Java client compares with its own
//!   clock).
//!
//! [`SystemClock`] is the real one; [`ManualClock`] is moved by hand, for
//! tests and the simulation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub trait Clock: Send + Sync + 'static {
    /// Monotonic time since this clock started.
    fn now(&self) -> Duration;
    /// Wall-clock time since the Unix epoch.
    fn unix_time(&self) -> Duration;

    /// [`Clock::unix_time`] in whole milliseconds, as YARN's records carry it.
    fn unix_millis(&self) -> i64 {
        i64::try_from(self.unix_time().as_millis()).unwrap_or(i64::MAX)
    }
    /// [`Clock::unix_time`] in fractional seconds, as `TaskStatus.timestamp`
    /// carries it.
    fn unix_seconds(&self) -> f64 {
        self.unix_time().as_secs_f64()
    }
}

/// The machine's clocks: `Instant` for `now`, `SystemTime` for `unix_time`.
#[derive(Debug, Clone)]
pub struct SystemClock {
    started: Instant,
}

impl SystemClock {
    pub fn new() -> SystemClock {
        SystemClock { started: Instant::now() }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.started.elapsed()
    }
    fn unix_time(&self) -> Duration {
        // A clock set before 1970 reads as the epoch rather than failing:
        // timestamps are informative, never deadlines.
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO)
    }
}

/// A clock that moves only when told to. Clones share the same time.
/// `unix_time` is a fixed origin plus `now`.
#[derive(Debug, Clone)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
    unix_origin: Duration,
}

impl ManualClock {
    /// Starts at `now = 0` and `unix_time = unix_origin`.
    pub fn new(unix_origin: Duration) -> ManualClock {
        ManualClock { nanos: Arc::new(AtomicU64::new(0)), unix_origin }
    }

    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| Some(n.saturating_add(by))).ok();
    }

    /// Moves to `to` if that is later than now; time never goes back.
    pub fn advance_to(&self, to: Duration) {
        let to = u64::try_from(to.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_max(to, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }
    fn unix_time(&self) -> Duration {
        self.unix_origin + self.now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_forward_and_clones_share_it() {
        let clock = ManualClock::new(Duration::from_secs(1_700_000_000));
        let other = clock.clone();
        clock.advance(Duration::from_millis(1500));
        assert_eq!(other.now(), Duration::from_millis(1500));
        other.advance_to(Duration::from_secs(1));
        assert_eq!(clock.now(), Duration::from_millis(1500), "advance_to never goes back");
        assert_eq!(clock.unix_millis(), 1_700_000_001_500);
        assert!((clock.unix_seconds() - 1_700_000_001.5).abs() < 1e-6);
    }

    #[test]
    fn system_clock_is_monotonic_and_near_the_wall() {
        let clock = SystemClock::new();
        let a = clock.now();
        let b = clock.now();
        assert!(b >= a);
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        assert!(clock.unix_time().abs_diff(wall) < Duration::from_secs(5));
    }
}
