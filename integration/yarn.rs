//! YARN clients against `weir standalone` (issue 6).
