//! Weir's allocator: hierarchical weighted Dominant Resource Fairness (or
//! another [`Policy`]: strict priority, FIFO), with quotas, as a
//! deterministic, synchronous state machine with no I/O and no clock.
//!
//! The broker core feeds it agents, frameworks, weights, filters and
//! returned resources, and calls [`Allocator::allocate`] to get the offers
//! of one cycle. Time only comes in as a `now: Duration` the caller picks,
//! so the same sequence of calls always yields the same offers.
//!
//! Every operation is incremental (O(log n) per changed share) except the
//! cycle, which costs O(agents offered × log n); see `README.md` next to
//! this crate for the algorithm, the data structures and their costs.

mod candidates;
mod drf;
mod error;
mod held;
pub mod policy;
mod quota;
mod scalars;
mod sorted;

#[cfg(test)]
mod quota_tests;
#[cfg(test)]
mod tests;

pub use drf::{Allocation, Allocator, AllocatorConfig, RoleShare, DEFAULT_LOCALITY_DELAY, DEFAULT_WEIGHT};
pub use error::AllocatorError;
pub use policy::Policy;
pub use weir_model::{Limits, Quota};
