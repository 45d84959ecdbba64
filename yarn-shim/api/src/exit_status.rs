//! YARN's container exit statuses (`ContainerExitStatus`): the process's
//! own code when it ran, or one of these negative values when it did not
//! end by itself.

pub const SUCCESS: i32 = 0;
pub const INVALID: i32 = -1000;
pub const ABORTED: i32 = -100;
/// Taken back by the scheduler for another queue: not the application's
/// fault (Spark and MapReduce do not count it as a failure).
pub const PREEMPTED: i32 = -102;
pub const KILLED_EXCEEDED_PMEM: i32 = -104;
pub const KILLED_BY_APPMASTER: i32 = -105;
pub const KILLED_BY_RESOURCEMANAGER: i32 = -106;
pub const KILLED_AFTER_APP_COMPLETION: i32 = -107;

