//! Authentication: token secrets, the DIGEST-MD5 SASL server (and a client
//! for tests and for talking to other shims), credentials files, and
//! Kerberos: SASL GSSAPI over the system's GSS-API library with Hadoop's
//! `auth_to_local` rules.

pub mod auth_to_local;
pub mod credentials;
pub mod digest_md5;
pub mod gssapi;
pub mod sasl_gssapi;
pub mod secret_manager;
