//! Types generated from `proto/yarn/*.proto` (package hadoop.yarn, Hadoop's
//! field numbers, proto2). Conversions to the shim's own types live in
//! `convert`, not here.

#![allow(clippy::doc_lazy_continuation, clippy::large_enum_variant, clippy::enum_variant_names)]

include!(concat!(env!("OUT_DIR"), "/hadoop.yarn.rs"));
