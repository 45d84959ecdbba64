//! Log lines a client can cause, throttled: a flood of refused requests
//! (wrong tokens, failed handshakes) must not fill the disk or drown the
//! lines that matter. Each [`LogThrottle`] lets `burst` lines through per
//! `window`; the first line after some were held back says how many, so
//! the count of refusals is never lost, only their repetition.
//!
//! Invariant: over any window at most `burst` events are admitted, and
//! every event is either admitted or counted in the next admitted one's
//! `suppressed`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A budget of log lines per window, shared by all the places that log
/// one kind of event (a `static`, usually).
#[derive(Debug)]
pub struct LogThrottle {
    window: Duration,
    burst: u32,
    state: Mutex<Window>,
}

#[derive(Debug, Default)]
struct Window {
    started: Option<Instant>,
    admitted: u32,
    suppressed: u64,
}

impl LogThrottle {
    pub const fn new(window: Duration, burst: u32) -> LogThrottle {
        LogThrottle { window, burst, state: Mutex::new(Window { started: None, admitted: 0, suppressed: 0 }) }
    }

    /// Whether an event at `now` may be logged: `Some(n)` with the number
    /// of events held back since the last admitted one, or `None` to stay
    /// quiet (the event is counted).
    pub fn admit(&self, now: Instant) -> Option<u64> {
        let mut w = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let fresh = w.started.is_none_or(|start| now.saturating_duration_since(start) >= self.window);
        if fresh {
            w.started = Some(now);
            w.admitted = 0;
        }
        if w.admitted >= self.burst {
            w.suppressed += 1;
            return None;
        }
        w.admitted += 1;
        Some(std::mem::take(&mut w.suppressed))
    }

    /// [`admit`](Self::admit) at the present instant.
    pub fn admit_now(&self) -> Option<u64> {
        self.admit(Instant::now())
    }
}

/// The throttle for refused authentication (tokens, secrets, certificates,
/// SASL): 20 lines per 10 s per process.
pub static AUTH_FAILURES: LogThrottle = LogThrottle::new(Duration::from_secs(10), 20);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rest_are_counted_into_the_next_window() {
        let t = LogThrottle::new(Duration::from_secs(10), 3);
        let t0 = Instant::now();
        let got: Vec<Option<u64>> = (0..5).map(|i| t.admit(t0 + Duration::from_millis(i))).collect();
        assert_eq!(got, vec![Some(0), Some(0), Some(0), None, None]);
        // Still inside the window: held back.
        assert_eq!(t.admit(t0 + Duration::from_secs(9)), None);
        // The next window's first line carries the three held back.
        assert_eq!(t.admit(t0 + Duration::from_secs(10)), Some(3));
        assert_eq!(t.admit(t0 + Duration::from_secs(10)), Some(0));
    }

    #[test]
    fn nothing_is_lost_under_a_flood() {
        let t = LogThrottle::new(Duration::from_secs(1), 20);
        let t0 = Instant::now();
        let mut admitted = 0u64;
        let mut reported = 0u64;
        // 100,000 events over 10 s: at most 20 lines a second.
        for i in 0..100_000u64 {
            if let Some(n) = t.admit(t0 + Duration::from_micros(i * 100)) {
                admitted += 1;
                reported += n;
            }
        }
        assert!(admitted <= 20 * 10, "{admitted} lines in 10 s");
        // What is still held back shows with the next line.
        let last = t.admit(t0 + Duration::from_secs(60)).expect("a new window admits");
        assert_eq!(admitted + reported + last, 100_000);
    }

    #[test]
    fn a_clock_that_goes_backwards_does_not_panic_or_open_the_gate() {
        let t = LogThrottle::new(Duration::from_secs(10), 1);
        let t0 = Instant::now() + Duration::from_secs(100);
        assert_eq!(t.admit(t0), Some(0));
        assert_eq!(t.admit(t0 - Duration::from_secs(50)), None);
    }
}
