//! Offers on their way out, and the offer books' expiry queue.
//!
//! The core holds the broker's lock while it books a cycle's offers, so it
//! does there only what the books need. Turning an offer into protobuf (five
//! strings, the resources as named wire resources, the attributes) costs
//! more than booking it, and nothing in the core depends on it: an
//! [`OfferBatch`] carries what the core decided, and the shell builds the
//! OFFERS event from it when it sends it, after the lock is released (see
//! [`OfferBatch::into_event`]).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use weir_model::{AgentId, FrameworkId, Offer, OfferId, ResourceSet, Role, Unavailability};
use weir_proto::convert::offer_to_proto;
use weir_proto::v1;

use super::OfferKey;

/// An offer's id as frameworks see it: `{prefix}-O{n}`, the number at
/// least four digits wide.
pub(super) fn offer_id_text(prefix: &str, key: OfferKey) -> String {
    format!("{prefix}-O{key:04}")
}

/// The key in `raw` if it is an offer id exactly as [`offer_id_text`]
/// renders it with `prefix` (not another rendering of the same number,
/// nor another broker's prefix).
pub(super) fn offer_key_of(prefix: &str, raw: &str) -> Option<OfferKey> {
    let number = raw.strip_prefix(prefix)?.strip_prefix("-O")?;
    let canonical = number.len() == 4 || (number.len() > 4 && !number.starts_with('0'));
    if !canonical || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    number.parse().ok()
}

/// An agent's hostname and attributes, shared (one reference count per
/// offer rather than copies of its strings while the lock is held).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct AgentHost {
    pub hostname: String,
    pub attributes: Vec<(String, String)>,
}

impl AgentHost {
    pub fn new(hostname: String, attributes: Vec<(String, String)>) -> Arc<AgentHost> {
        Arc::new(AgentHost { hostname, attributes })
    }
}

/// One offer as the core booked it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct OutgoingOffer {
    pub key: OfferKey,
    pub framework: FrameworkId,
    pub agent: AgentId,
    pub role: Role,
    pub resources: ResourceSet,
    pub revocable: bool,
    pub host: Arc<AgentHost>,
    pub data_bytes: u64,
    pub unavailability: Option<Unavailability>,
    pub reservations: Vec<v1::ReservationInfo>,
    pub volumes: Vec<v1::VolumeInfo>,
}

/// One framework's OFFERS event from one allocation call, not yet built.
#[derive(Debug, Clone, PartialEq)]
pub struct OfferBatch {
    pub(super) prefix: Arc<str>,
    pub(super) offers: Vec<OutgoingOffer>,
}

impl OfferBatch {
    pub fn len(&self) -> usize {
        self.offers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offers.is_empty()
    }

    /// The OFFERS event as the framework receives it.
    pub fn into_event(self) -> v1::Event {
        let offers = self
            .offers
            .into_iter()
            .map(|o| o.into_proto(&self.prefix))
            .collect();
        v1::Event {
            kind: Some(v1::event::Kind::Offers(v1::event::Offers { offers })),
        }
    }

    /// The offers as the framework receives them.
    pub fn to_proto(&self) -> Vec<v1::Offer> {
        self.offers
            .iter()
            .cloned()
            .map(|o| o.into_proto(&self.prefix))
            .collect()
    }
}

impl OutgoingOffer {
    /// The wire offer through `convert::offer_to_proto` (whose round trip
    /// the proto crate tests), plus what only the books know: revocable
    /// marks and the reservations and volumes it may use.
    fn into_proto(self, prefix: &str) -> v1::Offer {
        let offer = Offer {
            id: OfferId::new(offer_id_text(prefix, self.key)),
            framework: self.framework,
            agent: self.agent,
            hostname: self.host.hostname.clone(),
            role: self.role,
            resources: self.resources,
            attributes: self.host.attributes.clone(),
            data_bytes: self.data_bytes,
            unavailability: self.unavailability,
        };
        let mut wire = offer_to_proto(&offer);
        if self.revocable {
            for r in &mut wire.resources {
                r.revocable = true;
            }
        }
        wire.reservations = self.reservations;
        wire.volumes = self.volumes;
        wire
    }
}

/// Outstanding offers by expiry, earliest first.
///
/// Offers are made with `now + offer timeout`, so entries almost always
/// arrive in order and go to the back; an offer taken back (accepted,
/// declined, rescinded) leaves its entry behind, to be skipped when it
/// comes due (the caller checks the offer still exists) or dropped by
/// [`ExpiryQueue::compact`]. Keys are never reused, so a stale entry can
/// never name a newer offer.
#[derive(Debug, Default)]
pub(super) struct ExpiryQueue {
    entries: VecDeque<(Duration, OfferKey)>,
}

impl ExpiryQueue {
    pub fn push(&mut self, at: Duration, key: OfferKey) {
        if self.entries.back().is_none_or(|&last| last <= (at, key)) {
            self.entries.push_back((at, key));
        } else {
            let i = self.entries.partition_point(|&e| e < (at, key));
            self.entries.insert(i, (at, key));
        }
    }

    /// The earliest entry if it is due at `now`, taken out.
    pub fn pop_due(&mut self, now: Duration) -> Option<OfferKey> {
        let &(at, key) = self.entries.front()?;
        (at <= now).then(|| {
            self.entries.pop_front();
            key
        })
    }

    /// Drops stale entries once they outnumber the live offers (`live`
    /// of them): memory stays within twice the outstanding offers, and the
    /// cost per offer taken back stays constant.
    pub fn compact(&mut self, live: usize, is_live: impl Fn(OfferKey) -> bool) {
        if self.entries.len() > 2 * live + 1024 {
            self.entries.retain(|&(_, key)| is_live(key));
        }
    }

    pub fn contains(&self, at: Duration, key: OfferKey) -> bool {
        let i = self.entries.partition_point(|&e| e < (at, key));
        self.entries.get(i) == Some(&(at, key))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn offer_ids_round_trip_and_only_their_own_rendering_matches() {
        for key in [1, 12, 999, 1000, 12345, u64::MAX] {
            assert_eq!(
                offer_key_of("b1", &offer_id_text("b1", key)),
                Some(key),
                "{key}"
            );
        }
        assert_eq!(offer_id_text("b1", 7), "b1-O0007");
        for other in [
            "b1-O7",
            "b1-O007",
            "b1-O00007",
            "b1-O01000",
            "b2-O0007",
            "b1-O",
            "b1-O00x7",
            "b1-O+007",
            "b1-X0007",
            "b1-O99999999999999999999",
        ] {
            assert_eq!(offer_key_of("b1", other), None, "{other}");
        }
    }

    #[test]
    fn entries_come_due_in_order_even_out_of_order_pushes() {
        let mut q = ExpiryQueue::default();
        q.push(ms(30), 3);
        q.push(ms(10), 1);
        q.push(ms(20), 2);
        q.push(ms(20), 4);
        assert!(q.contains(ms(20), 4) && !q.contains(ms(20), 5));
        assert_eq!(q.pop_due(ms(5)), None);
        assert_eq!(q.pop_due(ms(20)), Some(1));
        assert_eq!(q.pop_due(ms(20)), Some(2));
        assert_eq!(q.pop_due(ms(20)), Some(4));
        assert_eq!(q.pop_due(ms(20)), None);
        assert_eq!(q.pop_due(ms(30)), Some(3));
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn compaction_keeps_live_entries_and_bounds_the_stale_ones() {
        let mut q = ExpiryQueue::default();
        for key in 0..5000 {
            q.push(ms(key), key);
        }
        // 2,000 live: 5,000 entries are not over 2 × 2,000 + 1,024, so
        // nothing is scanned.
        q.compact(2000, |_| panic!("scanned"));
        assert_eq!(q.len(), 5000);
        // 100 live: they are.
        q.compact(100, |k| k % 50 == 0);
        assert_eq!(q.len(), 100);
        assert!((0..5000).step_by(50).all(|k| q.contains(ms(k), k)));
        assert_eq!(q.pop_due(ms(10_000)), Some(0));
    }
}
