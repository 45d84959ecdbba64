pub mod container;
pub mod handoff;
pub mod launch;
pub mod localize;
pub mod service;
