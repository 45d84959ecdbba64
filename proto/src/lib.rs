//! The `weir.v1` protocol. [`v1`] is generated from `proto/weir/v1/weir.proto`;
//! [`convert`] holds the hand-written, validating conversions between the
//! wire types and `weir-model`.

#[allow(clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("weir.v1");
}

pub mod convert;

pub use convert::ProtoError;
