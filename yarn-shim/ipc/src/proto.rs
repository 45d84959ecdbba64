//! Types generated from `proto/hadoop/*.proto` (Hadoop's field numbers,
//! proto2). Hand-written helpers live in `ipc::header`, not here.

#![allow(clippy::doc_lazy_continuation, clippy::large_enum_variant)]

include!(concat!(env!("OUT_DIR"), "/hadoop.common.rs"));
