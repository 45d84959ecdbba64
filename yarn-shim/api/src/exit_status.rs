//! YARN's container exit statuses (`ContainerExitStatus`): the process's
//! own code when it ran, or one of these negative values when it did not
//! end by itself.

pub const SUCCESS: i32 = 0;
pub const INVALID: i32 = -1000;
pub const ABORTED: i32 = -100;
pub const KILLED_EXCEEDED_PMEM: i32 = -104;
pub const KILLED_BY_APPMASTER: i32 = -105;
pub const KILLED_BY_RESOURCEMANAGER: i32 = -106;
pub const KILLED_AFTER_APP_COMPLETION: i32 = -107;

