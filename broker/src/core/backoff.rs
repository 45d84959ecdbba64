//! Decline backoff (issue 19): a framework that declines everything it is
//! offered in a role is offered less and less often. Each (framework,
//! role) counts its declined offers in a row; from the
//! `broker.offer.decline-backoff.after`-th on, a decline's filter is at
//! least `broker.filter.refuse.default` doubled for every further decline,
//! up to `broker.offer.decline-backoff.max` (0 s: no backoff). An ACCEPT
//! with operations, or a REVIVE, ends the run. Without it a framework that
//! declines with short filters has every agent offered to it again every
//! few cycles, keeping the others waiting on offers it will not use (the
//! Mesos pain point).
//!
//! The count lives in the broker's framework books (not the registry): a
//! new leader starts everyone afresh.

use std::time::Duration;

use weir_model::{FrameworkId, Role};

use super::BrokerCore;

/// The least filter the `streak`-th declined offer in a row gets: none
/// before `after`, then `base` doubled per decline past it, up to `max`.
pub(super) fn decline_backoff(streak: u32, after: u32, base: Duration, max: Duration) -> Duration {
    if max.is_zero() || after == 0 || streak < after {
        return Duration::ZERO;
    }
    let doublings = (streak - after).min(31);
    base.max(Duration::from_millis(1)).saturating_mul(1u32 << doublings).min(max)
}

impl BrokerCore {
    /// A declined offer of `framework` in `role` whose filter would be
    /// `refuse`: counts it and returns the filter to apply.
    pub(super) fn backed_off_refuse(&mut self, framework: &FrameworkId, role: &Role, refuse: Duration) -> Duration {
        let (after, base, max) = (self.settings.decline_backoff_after, self.settings.refuse_default, self.settings.decline_backoff_max);
        let Some(f) = self.frameworks.get_mut(framework) else { return refuse };
        let streak = f.declines.entry(role.clone()).or_default();
        *streak = streak.saturating_add(1);
        let backoff = decline_backoff(*streak, after, base, max);
        if backoff > refuse {
            if *streak == after {
                tracing::info!(framework_id = %framework, role = %role, declines = *streak, refuse_seconds = backoff.as_secs_f64(), "framework declines everything it is offered; backing off its offers");
            } else {
                tracing::debug!(framework_id = %framework, role = %role, declines = *streak, refuse_seconds = backoff.as_secs_f64(), "decline backoff");
            }
        }
        refuse.max(backoff)
    }

    /// Ends `framework`'s runs of declines in `roles` (all when `None`):
    /// it accepted an offer, or revived.
    pub(super) fn reset_declines(&mut self, framework: &FrameworkId, roles: Option<&[Role]>) {
        let after = self.settings.decline_backoff_after;
        let Some(f) = self.frameworks.get_mut(framework) else { return };
        let before = f.declines.values().copied().max().unwrap_or(0);
        match roles {
            None => f.declines.clear(),
            Some(roles) => f.declines.retain(|r, _| !roles.contains(r)),
        }
        if after > 0 && before >= after && f.declines.values().all(|s| *s < after) {
            tracing::info!(framework_id = %framework, "decline backoff ended");
        }
    }

    /// The filter `framework`'s next decline in its most-declining role
    /// would get at least, for `/state`.
    pub(super) fn next_decline_backoff(&self, declines: u32) -> Duration {
        decline_backoff(declines.saturating_add(1), self.settings.decline_backoff_after, self.settings.refuse_default, self.settings.decline_backoff_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_doubles_from_the_threshold_up_to_the_cap() {
        let s = Duration::from_secs;
        let got: Vec<Duration> = (1..=12).map(|n| decline_backoff(n, 8, s(5), s(60))).collect();
        let zero = Duration::ZERO;
        assert_eq!(got, [zero, zero, zero, zero, zero, zero, zero, s(5), s(10), s(20), s(40), s(60)]);
        assert_eq!(decline_backoff(u32::MAX, 8, s(5), s(60)), s(60), "no overflow on long runs");
        assert_eq!(decline_backoff(100, 8, s(5), Duration::ZERO), zero, "max 0 turns it off");
        assert_eq!(decline_backoff(9, 8, Duration::ZERO, s(60)), Duration::from_millis(2), "a zero default still grows");
    }

    use crate::core::tests::{accept, ms, task, Harness, AGENT_A, FW_1};
    use weir_proto::v1;

    /// Declines every offer on `FW_1` (asking for no filter) over `ticks`
    /// steps of 100 ms; returns at which steps it was offered.
    fn decline_all(h: &mut Harness, ticks: u32) -> Vec<u32> {
        let mut offered = Vec::new();
        for i in 0..ticks {
            let out = h.advance(ms(100));
            for o in Harness::offers_in(&out, FW_1) {
                offered.push(i);
                let decline = v1::call::Decline { offer_ids: vec![o.id.clone()], filters: Some(v1::Filters { refuse_seconds: Some(0.0) }) };
                h.call(FW_1, v1::call::Kind::Decline(decline));
            }
        }
        offered
    }

    #[test]
    fn a_framework_that_declines_everything_is_offered_less_and_less_until_it_accepts_or_revives() {
        let mut h = Harness::new();
        h.core.settings.decline_backoff_after = 8;
        h.live_agents.push(AGENT_A);
        h.register_agent(AGENT_A, "", "cpus:4;mem:4096", vec![]);
        h.subscribe(FW_1, "picky", &["batch"], 0.0);
        // Seven declines are taken at their word (offered again next
        // cycle); the eighth gets the default filter (5 s), the ninth 10 s.
        let offered = decline_all(&mut h, 60);
        assert_eq!(offered, [0, 1, 2, 3, 4, 5, 6, 7, 57], "{offered:?}");
        let state = h.core.state(h.now);
        let fw = &state.frameworks[0];
        assert_eq!(fw.declines_in_a_row.get("batch"), Some(&9));
        assert_eq!(fw.decline_backoff_seconds, 20.0);
        // REVIVE ends the run: offered at once, and declines start over.
        h.call(FW_1, v1::call::Kind::Revive(v1::call::Revive::default()));
        assert!(h.core.state(h.now).frameworks[0].declines_in_a_row.is_empty());
        let offered = decline_all(&mut h, 3);
        assert_eq!(offered, [0, 1, 2]);
        // So does an accept that launches something.
        let more = decline_all(&mut h, 5);
        assert_eq!(more, [0, 1, 2, 3, 4], "declines 4 to 8 of the new run: the eighth is filtered only after it");
        let out = h.advance(ms(5_100));
        let offers = Harness::offers_in(&out, FW_1);
        assert_eq!(offers.len(), 1);
        h.call(FW_1, accept(&[&offers[0]], vec![task("t1", "cpus:1;mem:128")]));
        assert!(h.core.state(h.now).frameworks[0].declines_in_a_row.is_empty());
        assert_eq!(h.core.state(h.now).frameworks[0].decline_backoff_seconds, 0.0);
    }

    #[test]
    fn no_backoff_when_turned_off() {
        let mut h = Harness::new();
        h.core.settings.decline_backoff_max = Duration::ZERO;
        h.live_agents.push(AGENT_A);
        h.register_agent(AGENT_A, "", "cpus:4;mem:4096", vec![]);
        h.subscribe(FW_1, "picky", &["batch"], 0.0);
        assert_eq!(decline_all(&mut h, 20).len(), 20);
    }
}
