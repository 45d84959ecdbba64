//! Scalar totals used for share arithmetic: the four scalar resources as a
//! plain array so that adding an allocation to a role or framework and
//! recomputing its dominant share costs a handful of integer operations and
//! no allocation. Ports are not scalars and take no part in DRF (as in
//! Mesos, where only scalar resources enter the sorters).

use weir_model::{Milli, ResourceSet, Resources};

/// cpus, mem, disk, gpus in thousandths.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Scalars(pub(crate) [u64; 4]);

/// The names of the four kinds, in `Scalars` order.
pub(crate) const KINDS: [&str; 4] = ["cpus", "mem", "disk", "gpus"];

impl Scalars {
    /// No limit on any kind.
    pub(crate) const UNLIMITED: Scalars = Scalars([u64::MAX; 4]);

    /// Per kind, the smaller of the two.
    pub(crate) fn min(&self, other: &Scalars) -> Scalars {
        let mut out = *self;
        for (a, b) in out.0.iter_mut().zip(other.0) {
            *a = (*a).min(b);
        }
        out
    }

    /// Per kind, `self - other`, or 0 where `other` is larger.
    pub(crate) fn saturating_sub(&self, other: &Scalars) -> Scalars {
        let mut out = *self;
        for (a, b) in out.0.iter_mut().zip(other.0) {
            *a = a.saturating_sub(b);
        }
        out
    }

    pub(crate) fn of(r: &Resources) -> Scalars {
        Scalars([r.cpus.0, r.mem.0, r.disk.0, r.gpus.0])
    }

    /// Unreserved and reserved bundles together: a reservation that is
    /// allocated counts towards its holder's share like anything else.
    pub(crate) fn of_set(r: &ResourceSet) -> Scalars {
        let mut s = Scalars::of(&r.unreserved);
        for bundle in r.reserved.values() {
            s.add(&Scalars::of(bundle));
        }
        s
    }

    pub(crate) fn add(&mut self, other: &Scalars) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a = a.saturating_add(b);
        }
    }

    /// Callers only ever subtract what they added before; a shortfall is a
    /// bookkeeping bug, caught in debug builds.
    pub(crate) fn sub(&mut self, other: &Scalars) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            debug_assert!(*a >= b, "scalar bookkeeping went negative");
            *a = a.saturating_sub(b);
        }
    }

    /// The largest fraction of `total` that this holds over the scalars the
    /// cluster has at all (a resource with a zero total is skipped, so an
    /// allocation on an unreachable agent cannot make a share infinite).
    pub(crate) fn dominant_share(&self, total: &Scalars) -> f64 {
        let mut share = 0.0f64;
        for (a, t) in self.0.iter().zip(total.0) {
            if t > 0 {
                share = share.max(*a as f64 / t as f64);
            }
        }
        share
    }

    pub(crate) fn to_resources(self) -> Resources {
        Resources {
            cpus: Milli(self.0[0]),
            mem: Milli(self.0[1]),
            disk: Milli(self.0[2]),
            gpus: Milli(self.0[3]),
            ports: Default::default(),
        }
    }
}
