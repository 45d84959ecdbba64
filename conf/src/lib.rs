//! Hadoop-style XML configuration for every Weir daemon.
//!
//! A daemon calls [`Config::load`] once at start-up with the daemons it
//! runs, then reads each setting with a typed getter (`get_duration`,
//! `get_host_port`...) and propagates the error, so a bad value stops it
//! before it does anything, with a message naming the key, the value, its
//! source (`file:line`, `-D` or `default`) and what was expected.
//!
//! - [`hadoop_xml`] reads the file format (shared with Hadoop's own
//!   `*-site.xml`, see [`parse_hadoop_file`]);
//! - [`config`] layers defaults, site files and overrides, and hosts the
//!   getters and dumps;
//! - [`expand`] resolves `${...}` references when a value is read;
//! - [`cli`] is what `weir conf get` and `weir conf dump` call.
//!
//! The defaults live in `conf/defaults/*-default.xml` and are compiled in,
//! so a fresh machine with no configuration directory works.
//! `docs/configuration.md` is the user's guide.

pub mod cli;
pub mod config;
mod error;
pub mod expand;
pub mod hadoop_xml;
mod suggest;
mod values;

pub use config::{declared_keys, is_declared, Config, Daemon, Entry, LoadOptions, Source};
pub use error::ConfError;
pub use expand::{Environment, MapEnvironment, SystemEnvironment};
/// A duration as configuration values write it (`300ms`, `10s`, `5m`…), for flags that take one.
pub use values::parse_duration;
pub use hadoop_xml::{
    parse_hadoop_bytes, parse_hadoop_file, FsIncludes, IncludeReader, NoIncludes, Property, MAX_FILE_BYTES,
    MAX_INCLUDE_DEPTH, MAX_TOTAL_BYTES, MAX_VALUE_BYTES,
};
