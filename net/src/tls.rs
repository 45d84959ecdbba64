//! TLS for the HTTP/gRPC ports (rustls, ring): the server side reads a
//! certificate chain and a private key from PEM files (the key file
//! refused if group or others may read it) and offers HTTP/2 and
//! HTTP/1.1 by ALPN, as gRPC clients require. With a client CA it asks
//! clients for a certificate (optional: mutual TLS) and names the
//! principal a verified one carries. A client that speaks plain
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
    server_config_with_clients(cert, key, None)
}

/// [`server_config`] that, with `client_ca` (a PEM file of CA
/// certificates), asks each client for a certificate signed by one of
/// them: optional (a client without one goes on, and authenticates by
/// token), but one that is offered must verify, or the handshake fails.
pub fn server_config_with_clients(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = certificates(cert)?;
    let key_text = crate::secret::read_secret_file(key)?;
    let private = PrivateKeyDer::from_pem_slice(key_text.as_bytes())
        .map_err(|e| TlsError::Key { path: key.to_owned(), reason: format!("no PEM private key: {e}") })?;
    // ring, not aws-lc-rs: no C/cmake toolchain beyond cc to build. rustls
    // marks ring's provider deprecated for lacking post-quantum key
    // exchange; classical ECDHE is what every Weir client offers today.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let fail = |reason: String| TlsError::Config { cert: cert.to_owned(), key: key.to_owned(), reason };
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions().map_err(|e| fail(e.to_string()))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certificates(ca)? {
                roots.add(c).map_err(|e| TlsError::Certificates { path: ca.to_owned(), reason: format!("not a CA certificate: {e}") })?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError::Certificates { path: ca.to_owned(), reason: e.to_string() })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, private).map_err(|e| fail(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A verified client certificate, as handlers see it (a request
/// extension set by [`crate::http::serve_tls`]): the TLS handshake proved
/// it was signed by the client CA and that the client holds its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    /// Who it names: the subject's common name, else the first DNS name,
    /// e-mail or URI among its alternative names that is a principal
    /// (letters, digits, `.`, `_`, `@`, `-`); None: it names none such.
    pub principal: Option<String>,
}

/// The principal a certificate (DER) names, see [`ClientCertificate`].
pub fn certificate_principal(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let valid = |name: &str| {
        !name.is_empty() && name.len() <= 256 && name.chars().all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c))
    };
    if let Some(cn) = cert.subject().iter_common_name().filter_map(|a| a.as_str().ok()).find(|n| valid(n)) {
        return Some(cn.to_owned());
    }
    let san = cert.subject_alternative_name().ok().flatten()?;
    san.value.general_names.iter().find_map(|n| match n {
        x509_parser::extensions::GeneralName::DNSName(s)
        | x509_parser::extensions::GeneralName::RFC822Name(s)
        | x509_parser::extensions::GeneralName::URI(s)
            if valid(s) =>
        {
            Some((*s).to_owned())
        }
        _ => None,
    })
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

    /// A CA, and certificates it signed for `names` with common name `cn`.
    struct Ca(rcgen::Issuer<'static, rcgen::KeyPair>, String);

    impl Ca {
        fn new(name: &str) -> Ca {
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params.distinguished_name.push(rcgen::DnType::CommonName, name);
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = params.self_signed(&key).unwrap();
            Ca(rcgen::Issuer::new(params, key), cert.pem())
        }

        fn issue(&self, cn: &str, names: &[&str]) -> (String, String) {
            let mut params = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
            params.distinguished_name.push(rcgen::DnType::CommonName, cn);
            let key = rcgen::KeyPair::generate().unwrap();
            (params.signed_by(&key, &self.0).unwrap().pem(), key.serialize_pem())
        }
    }

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    #[test]
    fn a_certificate_names_its_common_name_else_an_alternative_name() {
        let ca = Ca::new("test CA");
        assert_eq!(certificate_principal(&der(&ca.issue("alice", &[]).0)).as_deref(), Some("alice"));
        // A common name that is no principal (a space): the first SAN that is.
        assert_eq!(certificate_principal(&der(&ca.issue("weir broker", &["localhost"]).0)).as_deref(), Some("localhost"));
        assert_eq!(certificate_principal(&der(&ca.issue("weir broker", &[]).0)), None);
        assert_eq!(certificate_principal(b"not a certificate"), None);
    }

    /// One handshake over memory: the client certificate the server saw
    /// (its principal), or the handshake's failure.
    async fn handshake(server: Arc<rustls::ServerConfig>, ca_pem: &str, client: Option<(String, String)>) -> Result<Option<Option<String>>, String> {
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der(ca_pem)).unwrap();
        let builder = rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions().unwrap().with_root_certificates(roots);
        let config = match client {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => builder.with_client_auth_cert(vec![der(&cert)], PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap()).unwrap(),
        };
        let (a, b) = tokio::io::duplex(1 << 16);
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let acceptor = tokio_rustls::TlsAcceptor::from(server);
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let (client, server) = tokio::join!(connector.connect(name, a), acceptor.accept(b));
        let mut server = server.map_err(|e| e.to_string())?;
        let mut client = client.map_err(|e| e.to_string())?;
        // TLS 1.3: the client learns of a refused certificate on its first read.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (w, r) = tokio::join!(server.write_all(b"x"), client.read_u8());
        w.map_err(|e| e.to_string())?;
        r.map_err(|e| e.to_string())?;
        Ok(server.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|leaf| certificate_principal(leaf)))
    }

    #[tokio::test]
    async fn client_certificates_are_optional_but_must_come_from_the_client_ca() {
        let dir = std::env::temp_dir().join(format!("weir-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (ca, other) = (Ca::new("cluster CA"), Ca::new("someone else's CA"));
        let (cert, key) = ca.issue("weir broker", &["localhost"]);
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
            path
        };
        let (cert, key, ca_file) = (write("cert.pem", &cert), write("key.pem", &key), write("ca.pem", &ca.1));
        let server = server_config_with_clients(&cert, &key, Some(&ca_file)).unwrap();
        assert_eq!(handshake(server.clone(), &ca.1, Some(ca.issue("alice", &[]))).await, Ok(Some(Some("alice".to_owned()))));
        assert_eq!(handshake(server.clone(), &ca.1, None).await, Ok(None), "without a certificate the handshake goes on");
        let refused = handshake(server.clone(), &ca.1, Some(other.issue("alice", &[]))).await.unwrap_err();
        assert!(refused.to_lowercase().contains("certificate"), "{refused}");
        // Without a client CA no certificate is asked for, none is seen.
        assert_eq!(handshake(server_config(&cert, &key).unwrap(), &ca.1, Some(ca.issue("alice", &[]))).await, Ok(None));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
