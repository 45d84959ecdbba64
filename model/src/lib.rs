//! Weir's domain vocabulary, shared by every crate: typed identifiers,
//! resources with exact arithmetic, task and agent states, and the clock
//! every core takes its time from.
//!
//! Invariants kept here so no other crate has to re-check them:
//! - scalar quantities are fixed-point thousandths ([`Milli`]), so adding and
//!   subtracting never drifts the way `f64` would (Mesos does the same);
//! - a [`Ranges`] set is always sorted, non-overlapping and coalesced;
//! - subtracting resources that are not contained is an error, never a
//!   silent saturation.

pub mod acl;
pub mod agent;
pub mod clock;
pub mod ids;
pub mod offer;
pub mod quota;
pub mod reservation;
pub mod resources;
pub mod task;

pub use agent::{AgentState, AgentSummary, DrainState, Unavailability};
pub use clock::{Clock, ManualClock, SystemClock};
pub use ids::{AgentId, ExecutorId, FrameworkId, OfferId, ReservationId, Role, TaskId, VolumeId};
pub use reservation::{Reservation, Volume, VolumeMount};
pub use offer::Offer;
pub use quota::{Limits, Quota};
pub use resources::{Milli, Ranges, ResourceError, Resources, ResourceSet};
pub use task::TaskState;
