//! The `weir.v1` protocol. [`v1`] is generated from `proto/weir/v1/weir.proto`;
//! [`convert`] holds the hand-written, validating conversions between the
//! wire types and `weir-model`.

#[allow(clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("weir.v1");
}

pub mod convert;

/// A secret's value never reaches a log or a panic message: every
/// `Debug` of a message holding one (a TaskInfo, a RUN_TASK) shows
/// `<redacted>` in its place.
impl std::fmt::Debug for v1::Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret").field("name", &self.name).field("value", &format_args!("<redacted>")).finish()
    }
}

pub use convert::ProtoError;
