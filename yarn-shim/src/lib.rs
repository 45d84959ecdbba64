//! Weir's YARN shim (under construction).
