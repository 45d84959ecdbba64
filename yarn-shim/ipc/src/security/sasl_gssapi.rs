//! The SASL GSSAPI mechanism's server side (RFC 4752), as Java's
//! `GssKrb5Server` runs it under Hadoop's `SaslRpcServer` with
//! `hadoop.rpc.protection=authentication`:
//!
//! 1. accept the client's Kerberos tokens until the context is established
//!    (answering each with the acceptor's token, the last being the
//!    mutual-authentication reply);
//! 2. after the client's empty response, send the wrapped security-layer
//!    offer: "no security layer" only (qop=auth), maximum size 0;
//! 3. unwrap the client's choice: it must be "no security layer", and an
//!    authorization id, if any, must be the authenticated principal.
//!
//! No wrap/unwrap of calls afterwards: auth-int and auth-conf are refused
//! with a message that says so. The context itself is behind
//! [`GssAcceptor`], so the exchange is tested here without a KDC.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::auth_to_local::AuthToLocal;
use super::gssapi::{ContextStep, Credential, GssError, SecurityContext};

/// The SASL mechanism name, and Hadoop's method name for it.
pub const MECHANISM: &str = "GSSAPI";
pub const METHOD: &str = "KERBEROS";

/// RFC 4752's security-layer bits.
const LAYER_NONE: u8 = 1;
const LAYER_INTEGRITY: u8 = 2;
const LAYER_CONFIDENTIALITY: u8 = 4;

/// What a GSS-API acceptor context does for the mechanism.
pub trait GssAcceptor: Send {
    fn step(&mut self, token: &[u8]) -> Result<ContextStep, GssError>;
    /// The authenticated principal, once established.
    fn peer(&self) -> Option<&str>;
    fn wrap(&mut self, data: &[u8]) -> Result<Vec<u8>, GssError>;
    fn unwrap(&mut self, data: &[u8]) -> Result<Vec<u8>, GssError>;
}

impl GssAcceptor for SecurityContext {
    fn step(&mut self, token: &[u8]) -> Result<ContextStep, GssError> {
        SecurityContext::step(self, token)
    }
    fn peer(&self) -> Option<&str> {
        SecurityContext::peer(self)
    }
    fn wrap(&mut self, data: &[u8]) -> Result<Vec<u8>, GssError> {
        SecurityContext::wrap(self, data)
    }
    fn unwrap(&mut self, data: &[u8]) -> Result<Vec<u8>, GssError> {
        SecurityContext::unwrap(self, data)
    }
}

type ContextFactory = dyn Fn() -> Result<Box<dyn GssAcceptor>, GssError> + Send + Sync;

/// A port's Kerberos identity: its service principal (Hadoop splits it
/// into the protocol and server id it offers in NEGOTIATE), how contexts
/// are made, and the rules that turn principals into users.
#[derive(Clone)]
pub struct KerberosAcceptor {
    principal: String,
    protocol: String,
    server_id: String,
    rules: Arc<AuthToLocal>,
    contexts: Arc<ContextFactory>,
}

impl std::fmt::Debug for KerberosAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KerberosAcceptor").field("principal", &self.principal).finish()
    }
}

impl KerberosAcceptor {
    /// With contexts from `contexts` (tests use scripted ones).
    pub fn new(principal: &str, rules: AuthToLocal, contexts: Arc<ContextFactory>) -> KerberosAcceptor {
        // Hadoop's SaslRpcServer: "protocol/serverId@REALM" split at / and @.
        let mut parts = principal.splitn(3, ['/', '@']);
        let protocol = parts.next().unwrap_or_default().to_owned();
        let server_id = if principal.contains('/') { parts.next().unwrap_or_default().to_owned() } else { String::new() };
        KerberosAcceptor { principal: principal.to_owned(), protocol, server_id, rules: Arc::new(rules), contexts }
    }

    /// Accepting with `principal`'s key from `keytab`, through the system's
    /// GSS-API library. Checked once here (key present, file private) so a
    /// wrong keytab stops the shim at start, not its first client.
    pub fn from_keytab(principal: &str, keytab: &Path, rules: AuthToLocal) -> Result<KerberosAcceptor, GssError> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(keytab).map_err(|e| GssError(format!("cannot read keytab {}: {e}", keytab.display())))?;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(GssError(format!(
                "keytab {} may be read or written by group or others (mode {mode:04o}); run `chmod 600 {}`",
                keytab.display(),
                keytab.display()
            )));
        }
        Credential::acceptor(principal, keytab)?;
        let (p, k): (String, PathBuf) = (principal.to_owned(), keytab.to_owned());
        let contexts: Arc<ContextFactory> = Arc::new(move || {
            // A credential per connection: a keytab replaced on disk (a key
            // rotation) is picked up by the next client.
            let cred = Credential::acceptor(&p, &k)?;
            Ok(Box::new(SecurityContext::acceptor(cred)) as Box<dyn GssAcceptor>)
        });
        Ok(KerberosAcceptor::new(principal, rules, contexts))
    }

    pub fn principal(&self) -> &str {
        &self.principal
    }

    /// Hadoop's `SaslAuth.protocol` for this port (`rm` of `rm/host@REALM`).
    pub fn protocol(&self) -> &str {
        &self.protocol
    }

    /// Hadoop's `SaslAuth.serverId` (`host` of `rm/host@REALM`).
    pub fn server_id(&self) -> &str {
        &self.server_id
    }

    pub fn rules(&self) -> &AuthToLocal {
        &self.rules
    }

    /// A fresh server for one connection's exchange.
    pub fn server(&self) -> Result<GssapiServer, GssError> {
        Ok(GssapiServer { ctx: (self.contexts)()?, stage: Stage::Accepting })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Accepting,
    /// Established with a last token sent: the client answers empty.
    AwaitEmpty,
    /// The layer offer was sent: the client answers with its choice.
    AwaitChoice,
    Done,
}

/// What one client message leads to.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Send this token in a CHALLENGE and wait for the next RESPONSE.
    Challenge(Vec<u8>),
    /// Authenticated as this principal: send SUCCESS (no token).
    Success(String),
}

/// One connection's GSSAPI exchange.
pub struct GssapiServer {
    ctx: Box<dyn GssAcceptor>,
    stage: Stage,
}

impl std::fmt::Debug for GssapiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GssapiServer").field("stage", &self.stage).finish()
    }
}

impl GssapiServer {
    /// The offer: no security layer, maximum message size 0 (RFC 4752:
    /// the size is meaningless without a layer).
    fn offer(&mut self) -> Result<Outcome, GssError> {
        self.stage = Stage::AwaitChoice;
        Ok(Outcome::Challenge(self.ctx.wrap(&[LAYER_NONE, 0, 0, 0])?))
    }

    /// The client's next token (INITIATE's, then each RESPONSE's).
    pub fn respond(&mut self, token: &[u8]) -> Result<Outcome, GssError> {
        match self.stage {
            Stage::Accepting => {
                // A Kerberos token is never empty (the library would take
                // an empty one as "nothing yet" and keep going).
                if token.is_empty() {
                    return Err(GssError("GSS accept failed: the client sent no Kerberos token".into()));
                }
                let step = self.ctx.step(token)?;
                if !step.complete {
                    return Ok(Outcome::Challenge(step.token));
                }
                if self.ctx.peer().is_none() {
                    return Err(GssError("the security context names no peer".into()));
                }
                if step.token.is_empty() {
                    return self.offer();
                }
                self.stage = Stage::AwaitEmpty;
                Ok(Outcome::Challenge(step.token))
            }
            Stage::AwaitEmpty => {
                if !token.is_empty() {
                    return Err(GssError(format!("expected an empty SASL response after the Kerberos exchange, got {} bytes", token.len())));
                }
                self.offer()
            }
            Stage::AwaitChoice => {
                let choice = self.ctx.unwrap(token)?;
                let Some((&[layer, ..], authz)) = choice.split_first_chunk::<4>() else {
                    return Err(GssError(format!("the client's security layer choice is {} bytes; at least 4 are needed", choice.len())));
                };
                if layer & (LAYER_INTEGRITY | LAYER_CONFIDENTIALITY) != 0 {
                    let which = if layer & LAYER_CONFIDENTIALITY != 0 { "auth-conf (privacy)" } else { "auth-int (integrity)" };
                    return Err(GssError(format!(
                        "the client asked for the {which} security layer; this server offers only auth (hadoop.rpc.protection=authentication)"
                    )));
                }
                if layer != LAYER_NONE {
                    return Err(GssError(format!("the client chose security layer 0x{layer:02x}, which was not offered (only 0x01, none)")));
                }
                let peer = self.ctx.peer().unwrap_or_default().to_owned();
                if !authz.is_empty() {
                    let authz = String::from_utf8_lossy(authz);
                    if authz != peer {
                        return Err(GssError(format!("{peer} may not act as authorization id {authz}")));
                    }
                }
                self.stage = Stage::Done;
                Ok(Outcome::Success(peer))
            }
            Stage::Done => Err(GssError("the GSSAPI exchange is already complete".into())),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A scripted acceptor: needs `rounds` tokens of "ok", names `peer`,
    /// and "wraps" by prefixing "W".
    pub(crate) struct Scripted {
        pub rounds: usize,
        pub last_token: Vec<u8>,
        pub peer: String,
        seen: usize,
    }

    impl Scripted {
        pub(crate) fn new(rounds: usize, last_token: &[u8], peer: &str) -> Scripted {
            Scripted { rounds, last_token: last_token.to_vec(), peer: peer.into(), seen: 0 }
        }
    }

    impl GssAcceptor for Scripted {
        fn step(&mut self, token: &[u8]) -> Result<ContextStep, GssError> {
            if token != b"ok" {
                return Err(GssError("GSS accept failed: Invalid token was supplied".into()));
            }
            self.seen += 1;
            let complete = self.seen >= self.rounds;
            Ok(ContextStep { token: if complete { self.last_token.clone() } else { b"more".to_vec() }, complete })
        }
        fn peer(&self) -> Option<&str> {
            (self.seen >= self.rounds).then_some(self.peer.as_str())
        }
        fn wrap(&mut self, data: &[u8]) -> Result<Vec<u8>, GssError> {
            Ok([b"W", data].concat())
        }
        fn unwrap(&mut self, data: &[u8]) -> Result<Vec<u8>, GssError> {
            data.strip_prefix(b"W").map(<[u8]>::to_vec).ok_or_else(|| GssError("GSS unwrap failed: bad token".into()))
        }
    }

    pub(crate) fn acceptor(rounds: usize, last: &[u8], peer: &str) -> KerberosAcceptor {
        let (last, peer) = (last.to_vec(), peer.to_owned());
        KerberosAcceptor::new(
            "rm/localhost@EXAMPLE.COM",
            AuthToLocal::parse("DEFAULT", "EXAMPLE.COM").unwrap(),
            Arc::new(move || Ok(Box::new(Scripted::new(rounds, &last, &peer)) as Box<dyn GssAcceptor>)),
        )
    }

    #[test]
    fn protocol_and_server_id_come_from_the_principal_as_hadoop_splits_it() {
        let a = acceptor(1, b"", "x");
        assert_eq!((a.protocol(), a.server_id()), ("rm", "localhost"));
        let b = KerberosAcceptor::new("yarn@EXAMPLE.COM", AuthToLocal::parse("DEFAULT", "EXAMPLE.COM").unwrap(), a.contexts.clone());
        assert_eq!((b.protocol(), b.server_id()), ("yarn", ""));
    }

    #[test]
    fn a_keytab_others_may_read_or_that_is_missing_stops_the_start() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let keytab = dir.path().join("rm.keytab");
        std::fs::write(&keytab, [0x05, 0x02]).unwrap();
        std::fs::set_permissions(&keytab, std::fs::Permissions::from_mode(0o644)).unwrap();
        let rules = || AuthToLocal::parse("DEFAULT", "EXAMPLE.COM").unwrap();
        let e = KerberosAcceptor::from_keytab("rm/localhost@EXAMPLE.COM", &keytab, rules()).unwrap_err();
        assert!(e.0.contains("mode 0644") && e.0.contains("chmod 600"), "{e}");
        let e = KerberosAcceptor::from_keytab("rm/localhost@EXAMPLE.COM", &dir.path().join("none"), rules()).unwrap_err();
        assert!(e.0.starts_with("cannot read keytab"), "{e}");
    }

    #[test]
    fn full_exchange_with_a_mutual_auth_token() {
        let mut s = acceptor(2, b"ap-rep", "alice@EXAMPLE.COM").server().unwrap();
        assert_eq!(s.respond(b"ok").unwrap(), Outcome::Challenge(b"more".to_vec()));
        assert_eq!(s.respond(b"ok").unwrap(), Outcome::Challenge(b"ap-rep".to_vec()));
        assert_eq!(s.respond(b"").unwrap(), Outcome::Challenge(b"W\x01\x00\x00\x00".to_vec()));
        assert_eq!(s.respond(b"W\x01\x00\x00\x00").unwrap(), Outcome::Success("alice@EXAMPLE.COM".into()));
        assert!(s.respond(b"").is_err());
    }

    #[test]
    fn without_a_last_token_the_offer_comes_at_once() {
        let mut s = acceptor(1, b"", "alice@EXAMPLE.COM").server().unwrap();
        assert_eq!(s.respond(b"ok").unwrap(), Outcome::Challenge(b"W\x01\x00\x00\x00".to_vec()));
        // The authorization id may name the authenticated principal.
        assert_eq!(s.respond(b"W\x01\x00\x00\x00alice@EXAMPLE.COM").unwrap(), Outcome::Success("alice@EXAMPLE.COM".into()));
    }

    #[test]
    fn integrity_privacy_impersonation_and_junk_are_refused() {
        let ready = || {
            let mut s = acceptor(1, b"", "alice@EXAMPLE.COM").server().unwrap();
            s.respond(b"ok").unwrap();
            s
        };
        let e = ready().respond(b"W\x02\x00\x10\x00").unwrap_err();
        assert!(e.0.contains("auth-int (integrity)") && e.0.contains("only auth"), "{e}");
        let e = ready().respond(b"W\x04\x00\x10\x00").unwrap_err();
        assert!(e.0.contains("auth-conf (privacy)"), "{e}");
        let e = ready().respond(b"W\x00\x00\x00\x00").unwrap_err();
        assert!(e.0.contains("not offered"), "{e}");
        let e = ready().respond(b"W\x01\x00\x00\x00bob@EXAMPLE.COM").unwrap_err();
        assert_eq!(e.0, "alice@EXAMPLE.COM may not act as authorization id bob@EXAMPLE.COM");
        let e = ready().respond(b"W\x01").unwrap_err();
        assert!(e.0.contains("at least 4"), "{e}");
        let e = ready().respond(b"unwrapped").unwrap_err();
        assert!(e.0.starts_with("GSS unwrap failed"), "{e}");
        let e = acceptor(1, b"", "x").server().unwrap().respond(b"").unwrap_err();
        assert_eq!(e.0, "GSS accept failed: the client sent no Kerberos token");
        let e = acceptor(1, b"", "x").server().unwrap().respond(b"junk").unwrap_err();
        assert!(e.0.starts_with("GSS accept failed"), "{e}");
        let mut s = acceptor(1, b"last", "alice@EXAMPLE.COM").server().unwrap();
        s.respond(b"ok").unwrap();
        assert!(s.respond(b"not empty").unwrap_err().0.contains("expected an empty SASL response"));
    }
}
