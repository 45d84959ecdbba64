//! `Held`: what one (framework, role) holds on one agent, the record that
//! `recover` is checked against.
//!
//! It stores exactly what a `ResourceSet` would, but the unreserved ports
//! (almost always one or two ranges) sit inline, so recording a grant in the
//! cycle costs no heap allocation and no read of the offered bundle's port
//! list beyond the copy itself. Anything unusual (more ranges, merging,
//! subtracting) goes through `ResourceSet`, off the hot path.

use std::collections::BTreeMap;

use weir_model::{Milli, Ranges, ResourceSet, ResourceError, Resources, Role};

use crate::scalars::Scalars;

const INLINE_RANGES: usize = 2;

/// A port list, inline when it has at most two ranges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Ports {
    Inline { len: u8, items: [(u64, u64); INLINE_RANGES] },
    Heap(Ranges),
}

impl Ports {
    pub(crate) const EMPTY: Ports = Ports::Inline { len: 0, items: [(0, 0); INLINE_RANGES] };

    pub(crate) fn of(r: &Ranges) -> Ports {
        let mut items = [(0, 0); INLINE_RANGES];
        let mut len = 0usize;
        for range in r.iter() {
            if len == INLINE_RANGES {
                return Ports::Heap(r.clone());
            }
            items[len] = range;
            len += 1;
        }
        Ports::Inline { len: len as u8, items }
    }

    fn to_ranges(&self) -> Ranges {
        match self {
            Ports::Inline { len, items } => Ranges::new(items[..*len as usize].iter().copied()),
            Ports::Heap(r) => r.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Held {
    unreserved: Scalars,
    ports: Ports,
    reserved: BTreeMap<Role, Resources>,
}

impl Held {
    pub(crate) fn of(set: &ResourceSet) -> Held {
        Held {
            unreserved: Scalars::of(&set.unreserved),
            ports: Ports::of(&set.unreserved.ports),
            reserved: set.reserved.clone(),
        }
    }

    /// A record of `set` whose unreserved ports are already at hand as
    /// `ports` (the agent's inline copy), so `set`'s own port list, a heap
    /// block elsewhere, is not read.
    pub(crate) fn of_with_ports(set: &ResourceSet, ports: Ports) -> Held {
        debug_assert_eq!(ports, Ports::of(&set.unreserved.ports));
        Held { unreserved: Scalars::of(&set.unreserved), ports, reserved: set.reserved.clone() }
    }

    pub(crate) fn to_set(&self) -> ResourceSet {
        let s = self.unreserved.0;
        ResourceSet {
            unreserved: Resources {
                cpus: Milli(s[0]),
                mem: Milli(s[1]),
                disk: Milli(s[2]),
                gpus: Milli(s[3]),
                ports: self.ports.to_ranges(),
            },
            reserved: self.reserved.clone(),
        }
    }

    pub(crate) fn add(&mut self, other: &ResourceSet) {
        let mut set = self.to_set();
        set.add_assign(other);
        *self = Held::of(&set);
    }

    /// `self - other`, or an error (and no change) if `other` is not held.
    pub(crate) fn checked_sub(&self, other: &ResourceSet) -> Result<Held, ResourceError> {
        Ok(Held::of(&self.to_set().checked_sub(other)?))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.unreserved.0.iter().all(|v| *v == 0)
            && matches!(&self.ports, Ports::Inline { len: 0, .. })
            && self.reserved.is_empty()
    }

    /// The unreserved scalars (what revocable resources are lent from).
    pub(crate) fn unreserved_scalars(&self) -> Scalars {
        self.unreserved
    }

    pub(crate) fn scalars(&self) -> Scalars {
        let mut s = self.unreserved;
        for r in self.reserved.values() {
            s.add(&Scalars::of(r));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_set() -> impl Strategy<Value = ResourceSet> {
        (0u64..100, 0u64..100, prop::collection::vec((0u64..200, 0u64..5), 0..5), any::<bool>()).prop_map(
            |(c, m, ports, reserved)| {
                let mut set = ResourceSet::unreserved(Resources {
                    cpus: Milli(c),
                    mem: Milli(m),
                    ports: Ranges::new(ports.into_iter().map(|(b, l)| (b, b + l))),
                    ..Resources::default()
                });
                if reserved {
                    set.reserved.insert(Role::new("r"), Resources { cpus: Milli(1), ..Resources::default() });
                }
                set
            },
        )
    }

    proptest! {
        #[test]
        fn round_trips_and_agrees_with_resource_set(a in arb_set(), b in arb_set()) {
            let held = Held::of(&a);
            prop_assert_eq!(held.to_set(), a.clone());
            prop_assert_eq!(held.is_empty(), a.is_empty());
            prop_assert_eq!(held.scalars(), Scalars::of_set(&a));
            let mut sum = held.clone();
            sum.add(&b);
            prop_assert_eq!(sum.to_set(), a.add(&b));
            prop_assert_eq!(held.checked_sub(&b).map(|h| h.to_set()), a.checked_sub(&b));
        }
    }
}
