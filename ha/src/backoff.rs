//! How long to wait before trying again after a failed connection: one
//! policy for every reconnect loop (ZooKeeper sessions, leader detection,
//! an agent's stream to the broker).
//!
//! Delays start at `initial` and grow by `factor` after each failure, up to
//! `max`; `reset` after a success starts over. With jitter, each delay is
//! shortened by a random part of up to `jitter` of itself, drawn from an
//! rng the caller gives, so many clients cut off together do not all come
//! back at the same instant, and a seeded rng replays the same delays.
//! The type holds no clock and sleeps nowhere: callers wait as they like.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    factor: f64,
    jitter: f64,
    next: Duration,
}

impl Backoff {
    /// Starts at `initial`, doubles after each failure, never exceeds `max`
    /// (a `max` below `initial` is raised to it); no jitter.
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        let max = max.max(initial);
        Backoff { initial, max, factor: 2.0, jitter: 0.0, next: initial }
    }

    /// Growth per failure; values below 1 (or NaN) mean 1, a fixed delay.
    pub fn with_factor(mut self, factor: f64) -> Backoff {
        self.factor = if factor >= 1.0 { factor } else { 1.0 };
        self
    }

    /// The most of each delay that jitter may take off, from 0 (none) to 1
    /// (anything between zero and the full delay); clamped to that range.
    pub fn with_jitter(mut self, fraction: f64) -> Backoff {
        self.jitter = if fraction > 0.0 { fraction.min(1.0) } else { 0.0 };
        self
    }

    /// The delay before the next attempt, without jitter; the one after
    /// grows.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = self.grown(delay);
        delay
    }

    /// Like [`Backoff::next_delay`], shortened by the jitter drawn from
    /// `rng` (which is not used when there is no jitter).
    pub fn next_delay_with(&mut self, rng: &mut impl Rng) -> Duration {
        let delay = self.next_delay();
        if self.jitter == 0.0 {
            return delay;
        }
        let cut = self.jitter * rng.random::<f64>();
        delay.mul_f64(1.0 - cut)
    }

    /// The delay [`Backoff::next_delay`] would return now (before jitter).
    pub fn peek(&self) -> Duration {
        self.next
    }

    /// After a success: the next failure waits `initial` again.
    pub fn reset(&mut self) {
        self.next = self.initial;
    }

    fn grown(&self, delay: Duration) -> Duration {
        // An overflow (or a huge factor) lands on the cap rather than panicking.
        Duration::try_from_secs_f64(delay.as_secs_f64() * self.factor).map_or(self.max, |d| d.min(self.max))
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(ms(200), Duration::from_secs(5));
        let delays: Vec<Duration> = (0..7).map(|_| b.next_delay()).collect();
        assert_eq!(delays, [ms(200), ms(400), ms(800), ms(1600), ms(3200), ms(5000), ms(5000)]);
        assert_eq!(b.peek(), ms(5000));
        b.reset();
        assert_eq!(b.next_delay(), ms(200));
        assert_eq!(b.peek(), ms(400));
    }

    #[test]
    fn factor_and_cap_are_kept_sane() {
        let mut fixed = Backoff::new(ms(100), ms(50)).with_factor(0.5);
        assert_eq!((fixed.next_delay(), fixed.next_delay()), (ms(100), ms(100)), "max below initial; factor below 1");
        let mut nan = Backoff::new(ms(100), ms(1000)).with_factor(f64::NAN);
        assert_eq!((nan.next_delay(), nan.next_delay()), (ms(100), ms(100)));
        let mut huge = Backoff::new(ms(100), Duration::MAX).with_factor(f64::MAX);
        assert_eq!((huge.next_delay(), huge.next_delay()), (ms(100), Duration::MAX), "overflow lands on the cap");
        let mut triple = Backoff::new(ms(10), ms(100)).with_factor(3.0);
        let delays: Vec<Duration> = (0..4).map(|_| triple.next_delay()).collect();
        assert_eq!(delays, [ms(10), ms(30), ms(90), ms(100)]);
    }

    #[test]
    fn jitter_shortens_within_its_fraction_and_replays_with_the_seed() {
        let run = |seed: u64| -> Vec<Duration> {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut b = Backoff::new(ms(1000), ms(1000)).with_jitter(0.25);
            (0..200).map(|_| b.next_delay_with(&mut rng)).collect()
        };
        let delays = run(7);
        assert!(delays.iter().all(|d| *d > ms(750) && *d <= ms(1000)), "{delays:?}");
        assert!(delays.iter().any(|d| *d < ms(800)) && delays.iter().any(|d| *d > ms(950)), "spread over the range");
        assert_eq!(delays, run(7), "same seed, same delays");
        assert_ne!(delays, run(8));
        // Without jitter the rng is not consulted.
        let mut rng = StdRng::seed_from_u64(7);
        let mut plain = Backoff::new(ms(1000), ms(1000)).with_jitter(-3.0);
        assert_eq!(plain.next_delay_with(&mut rng), ms(1000));
    }
}
