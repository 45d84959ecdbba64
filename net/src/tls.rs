//! TLS for the HTTP/gRPC ports (rustls, ring): the server side reads a
//! certificate chain and a private key from PEM files (the key file
//! refused if group or others may read it) and offers HTTP/2 and
//! HTTP/1.1 by ALPN, as gRPC clients require. A client that speaks plain
//! HTTP/1 to a TLS port is told so in plain HTTP (400) instead of seeing
//! the connection drop; a plain HTTP/2 (gRPC) client sees it closed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    KeyFile(#[from] crate::secret::SecretFileError),
    #[error("certificate file {path}: {reason}")]
    Certificates { path: PathBuf, reason: String },
    #[error("key file {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("certificate {cert} and key {key} do not make a TLS configuration: {reason}")]
    Config { cert: PathBuf, key: PathBuf, reason: String },
}

/// The certificates in a PEM file (a chain: leaf first), at least one.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let fail = |reason: String| TlsError::Certificates { path: path.to_owned(), reason };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| fail(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(e.to_string()))?;
    if certs.is_empty() {
        return Err(fail("holds no PEM certificate".to_owned()));
    }
    Ok(certs)
}

/// A server configuration from a certificate chain and key in PEM files.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = certificates(cert)?;
    let key_text = crate::secret::read_secret_file(key)?;
    let private = PrivateKeyDer::from_pem_slice(key_text.as_bytes())
        .map_err(|e| TlsError::Key { path: key.to_owned(), reason: format!("no PEM private key: {e}") })?;
    // ring, not aws-lc-rs: no C/cmake toolchain beyond cc to build. rustls
    // marks ring's provider deprecated for lacking post-quantum key
    // exchange; classical ECDHE is what every Weir client offers today.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, private))
        .map_err(|e| TlsError::Config { cert: cert.to_owned(), key: key.to_owned(), reason: e.to_string() })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// What the first bytes of a connection say it is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Opening {
    Tls,
    PlainHttp1,
    Other,
}

pub(crate) fn opening(first: &[u8]) -> Opening {
    match first.first() {
        Some(&TLS_HANDSHAKE) => Opening::Tls,
        Some(_) if first.starts_with(b"PRI ") => Opening::Other,
        Some(b) if b.is_ascii_uppercase() => Opening::PlainHttp1,
        _ => Opening::Other,
    }
}

/// The answer a plain HTTP/1 client gets from a TLS port.
pub(crate) const PLAIN_TO_TLS: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: 79\r\n\r\nthis port speaks TLS: use https:// (and the CA certificate, e.g. --ca-file)\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openings_are_told_apart_and_the_plain_answer_is_well_formed() {
        assert_eq!(opening(&[0x16, 3, 1]), Opening::Tls);
        assert_eq!(opening(b"GET / HTTP/1.1"), Opening::PlainHttp1);
        assert_eq!(opening(b"PRI * HTTP/2.0"), Opening::Other);
        assert_eq!(opening(b""), Opening::Other);
        let text = std::str::from_utf8(PLAIN_TO_TLS).unwrap();
        let (_, body) = text.split_once("\r\n\r\n").unwrap();
        assert_eq!(body.len(), 79, "Content-Length must match the body");
    }
}
