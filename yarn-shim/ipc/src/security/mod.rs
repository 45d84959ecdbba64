//! Authentication: token secrets, the DIGEST-MD5 SASL server (and a client
//! for tests and for talking to other shims), and credentials files.

pub mod credentials;
pub mod digest_md5;
pub mod secret_manager;
