//! The crate's one error type. Every message names what was wrong with which
//! input, because these errors end up in logs read by people debugging a
//! client that is not ours.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bad preamble: expected \"hrpc\", got {0:?}")]
    BadMagic(String),
    #[error("IPC version {0} is not supported (server speaks 9)")]
    UnsupportedVersion(u8),
    #[error("unknown auth protocol byte 0x{0:02x} in preamble (expected 0x00 none or 0xdf SASL)")]
    UnknownAuthProtocol(u8),
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge { len: u64, max: usize },
    #[error("truncated {what}: needed {needed} bytes, {available} available")]
    Truncated { what: &'static str, needed: usize, available: usize },
    #[error("malformed varint in {what}: {reason}")]
    BadVarint { what: &'static str, reason: &'static str },
    #[error("cannot decode {what}: {source}")]
    Decode { what: &'static str, #[source] source: prost::DecodeError },
    #[error("{0}")]
    Protocol(String),
    #[error("authentication failed: {0}")]
    Auth(String),
    #[error("remote exception {class}: {message}")]
    Remote { class: String, message: String, fatal: bool },
    #[error("bad credentials file: {0}")]
    Credentials(String),
    #[error("connection closed by peer{0}")]
    Closed(&'static str),
    #[error("timed out {0}")]
    Timeout(&'static str),
    #[error("{0}")]
    Broker(String),
    #[error(transparent)]
    Io(#[from] io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
