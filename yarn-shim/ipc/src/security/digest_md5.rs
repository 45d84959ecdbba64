//! SASL DIGEST-MD5 (RFC 2831) as Hadoop uses it for token authentication:
//! qop `auth` only (nothing is wrapped), realm `default`, digest-uri
//! `/default`, `algorithm=md5-sess`, `charset=utf-8`.
//!
//! The username is base64(token identifier) and the password base64(token
//! password). The server is a one-shot state machine: it issues one
//! challenge with a nonce it was given (randomness comes from the caller),
//! accepts exactly one response carrying that nonce with `nc=00000001`, and
//! is spent afterwards whatever the outcome, so a nonce is never accepted
//! twice. The client half exists for tests and for our own IPC client.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use md5::{Digest, Md5};

use crate::error::{Error, Result};

pub const MECHANISM: &str = "DIGEST-MD5";
pub const REALM: &str = "default";
/// `protocol "/" serverId` with Hadoop's empty protocol and serverId "default".
pub const DIGEST_URI: &str = "/default";
/// Longest response we parse; real ones are ~300 bytes.
const MAX_RESPONSE_LEN: usize = 4096;

/// Hadoop's username for a token: base64 of the identifier bytes.
pub fn encode_identifier(identifier: &[u8]) -> String {
    BASE64.encode(identifier)
}

/// Hadoop's password for a token: base64 of the password bytes.
pub fn encode_password(password: &[u8]) -> String {
    BASE64.encode(password)
}

/// Parses `key=value, key="quoted \"value\""` directives. Duplicate keys are
/// rejected (RFC 2831 allows at most one of each that we read).
pub fn parse_directives(input: &[u8]) -> Result<Vec<(String, Vec<u8>)>> {
    let bad = |m: String| Error::Auth(format!("DIGEST-MD5 directive syntax: {m}"));
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let mut i = 0;
    let n = input.len();
    loop {
        while i < n && (input[i].is_ascii_whitespace() || input[i] == b',') {
            i += 1;
        }
        if i >= n {
            break;
        }
        let start = i;
        while i < n && input[i] != b'=' && input[i] != b',' && !input[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = std::str::from_utf8(&input[start..i])
            .map_err(|_| bad(format!("non-UTF-8 directive name at byte {start}")))?
            .to_ascii_lowercase();
        while i < n && input[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= n || input[i] != b'=' {
            return Err(bad(format!("directive {key:?} has no '=' value")));
        }
        i += 1;
        while i < n && input[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = Vec::new();
        if i < n && input[i] == b'"' {
            i += 1;
            let mut closed = false;
            while i < n {
                match input[i] {
                    b'\\' if i + 1 < n => {
                        value.push(input[i + 1]);
                        i += 2;
                    }
                    b'"' => {
                        closed = true;
                        i += 1;
                        break;
                    }
                    c => {
                        value.push(c);
                        i += 1;
                    }
                }
            }
            if !closed {
                return Err(bad(format!("unterminated quoted value of {key:?}")));
            }
        } else {
            while i < n && input[i] != b',' {
                value.push(input[i]);
                i += 1;
            }
            while value.last().is_some_and(|c| c.is_ascii_whitespace()) {
                value.pop();
            }
        }
        if key.is_empty() {
            return Err(bad("empty directive name".into()));
        }
        if out.iter().any(|(k, _)| *k == key) {
            return Err(bad(format!("directive {key:?} appears more than once")));
        }
        out.push((key, value));
        while i < n && input[i].is_ascii_whitespace() {
            i += 1;
        }
        if i < n && input[i] != b',' {
            return Err(bad(format!("expected ',' after directive at byte {i}")));
        }
    }
    Ok(out)
}

fn get<'a>(d: &'a [(String, Vec<u8>)], key: &str) -> Option<&'a [u8]> {
    d.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_slice())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn md5(parts: &[&[u8]]) -> [u8; 16] {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// The inputs of one digest computation (both directions use the same A1).
struct DigestInputs<'a> {
    username: &'a [u8],
    realm: &'a [u8],
    password: &'a [u8],
    nonce: &'a [u8],
    cnonce: &'a [u8],
    nc: &'a [u8],
    qop: &'a [u8],
    digest_uri: &'a [u8],
    authzid: Option<&'a [u8]>,
}

impl DigestInputs<'_> {
    /// `response-value` for `prefix` "AUTHENTICATE" (client→server) or ""
    /// (the server's `rspauth`).
    fn response_value(&self, prefix: &str) -> String {
        let inner = md5(&[self.username, b":", self.realm, b":", self.password]);
        let a1 = match self.authzid {
            Some(z) => md5(&[&inner, b":", self.nonce, b":", self.cnonce, b":", z]),
            None => md5(&[&inner, b":", self.nonce, b":", self.cnonce]),
        };
        let a2 = md5(&[prefix.as_bytes(), b":", self.digest_uri]);
        let kd = md5(&[
            hex(&a1).as_bytes(),
            b":",
            self.nonce,
            b":",
            self.nc,
            b":",
            self.cnonce,
            b":",
            self.qop,
            b":",
            hex(&a2).as_bytes(),
        ]);
        hex(&kd)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A client that proved it knows a token's password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// The raw token identifier (decoded from the username).
    pub identifier: Vec<u8>,
    /// The server's final message, `rspauth=<hex>`.
    pub rspauth: Vec<u8>,
}

/// Server half: one challenge, one response.
#[derive(Debug)]
pub struct DigestMd5Server {
    nonce: String,
    spent: bool,
}

impl DigestMd5Server {
    /// `nonce` must be unpredictable and unique per exchange; the caller
    /// draws it (e.g. 16 random bytes, base64).
    pub fn new(nonce: String) -> Self {
        DigestMd5Server { nonce, spent: false }
    }

    pub fn challenge(&self) -> Vec<u8> {
        format!(
            "realm=\"{REALM}\",nonce=\"{}\",qop=\"auth\",charset=utf-8,algorithm=md5-sess",
            self.nonce
        )
        .into_bytes()
    }

    /// Verifies the client's digest response. `password_for` maps a token
    /// identifier to its password (None: unknown or expired token).
    pub fn respond(
        &mut self,
        response: &[u8],
        password_for: &dyn Fn(&[u8]) -> Option<Vec<u8>>,
    ) -> Result<Authenticated> {
        if self.spent {
            return Err(Error::Auth("DIGEST-MD5: this exchange is already finished; nonce cannot be reused".into()));
        }
        self.spent = true;
        if response.len() > MAX_RESPONSE_LEN {
            return Err(Error::Auth(format!(
                "DIGEST-MD5: response of {} bytes exceeds {MAX_RESPONSE_LEN}",
                response.len()
            )));
        }
        let d = parse_directives(response)?;
        let need = |k: &str| {
            get(&d, k).ok_or_else(|| Error::Auth(format!("DIGEST-MD5: response has no {k} directive")))
        };
        let username = need("username")?;
        let nonce = need("nonce")?;
        let cnonce = need("cnonce")?;
        let nc = need("nc")?;
        let digest_uri = need("digest-uri")?;
        let client_response = need("response")?;
        if nonce != self.nonce.as_bytes() {
            return Err(Error::Auth("DIGEST-MD5: nonce is not the one this server issued (replayed or forged)".into()));
        }
        if nc != b"00000001" {
            return Err(Error::Auth(format!(
                "DIGEST-MD5: nonce count {} is not 00000001",
                String::from_utf8_lossy(nc)
            )));
        }
        let qop = get(&d, "qop").unwrap_or(b"auth");
        if qop != b"auth" {
            return Err(Error::Auth(format!(
                "DIGEST-MD5: qop {} is not supported (only auth)",
                String::from_utf8_lossy(qop)
            )));
        }
        let realm = get(&d, "realm").unwrap_or(b"");
        if !realm.is_empty() && realm != REALM.as_bytes() {
            return Err(Error::Auth(format!("DIGEST-MD5: realm {} is not {REALM}", String::from_utf8_lossy(realm))));
        }
        if digest_uri != DIGEST_URI.as_bytes() {
            return Err(Error::Auth(format!(
                "DIGEST-MD5: digest-uri {} is not {DIGEST_URI}",
                String::from_utf8_lossy(digest_uri)
            )));
        }
        if let Some(cs) = get(&d, "charset") {
            if !cs.eq_ignore_ascii_case(b"utf-8") {
                return Err(Error::Auth(format!("DIGEST-MD5: charset {} is not utf-8", String::from_utf8_lossy(cs))));
            }
        }
        let authzid = get(&d, "authzid");
        if let Some(z) = authzid {
            if z != username {
                return Err(Error::Auth("DIGEST-MD5: authzid differs from username; proxying is not allowed".into()));
            }
        }
        let identifier = BASE64
            .decode(username)
            .map_err(|e| Error::Auth(format!("DIGEST-MD5: username is not base64 of a token identifier: {e}")))?;
        let password = password_for(&identifier)
            .ok_or_else(|| Error::Auth("DIGEST-MD5: token is unknown or expired".into()))?;
        let password = encode_password(&password);
        let inputs = DigestInputs {
            username,
            realm,
            password: password.as_bytes(),
            nonce,
            cnonce,
            nc,
            qop,
            digest_uri,
            authzid,
        };
        let expected = inputs.response_value("AUTHENTICATE");
        if !constant_time_eq(expected.as_bytes(), &client_response.to_ascii_lowercase()) {
            return Err(Error::Auth("DIGEST-MD5: digest response does not match; wrong token password".into()));
        }
        let rspauth = format!("rspauth={}", inputs.response_value(""));
        Ok(Authenticated { identifier, rspauth: rspauth.into_bytes() })
    }
}

/// Client half, enough for our IPC client and tests.
#[derive(Debug)]
pub struct DigestMd5Client {
    username: String,
    password: String,
    cnonce: String,
    expected_rspauth: Option<String>,
}

impl DigestMd5Client {
    /// `cnonce` must be unpredictable; the caller draws it.
    pub fn new(identifier: &[u8], password: &[u8], cnonce: String) -> Self {
        DigestMd5Client {
            username: encode_identifier(identifier),
            password: encode_password(password),
            cnonce,
            expected_rspauth: None,
        }
    }

    /// Answers the server's challenge.
    pub fn respond(&mut self, challenge: &[u8]) -> Result<Vec<u8>> {
        let d = parse_directives(challenge)?;
        let nonce = get(&d, "nonce").ok_or_else(|| Error::Auth("DIGEST-MD5: challenge has no nonce".into()))?;
        let realm = get(&d, "realm").unwrap_or(REALM.as_bytes());
        let qops = get(&d, "qop").unwrap_or(b"auth");
        if !qops.split(|c| *c == b',').any(|q| q.trim_ascii() == b"auth") {
            return Err(Error::Auth(format!("DIGEST-MD5: server offers no qop auth ({})", String::from_utf8_lossy(qops))));
        }
        let inputs = DigestInputs {
            username: self.username.as_bytes(),
            realm,
            password: self.password.as_bytes(),
            nonce,
            cnonce: self.cnonce.as_bytes(),
            nc: b"00000001",
            qop: b"auth",
            digest_uri: DIGEST_URI.as_bytes(),
            authzid: None,
        };
        let response = inputs.response_value("AUTHENTICATE");
        self.expected_rspauth = Some(inputs.response_value(""));
        let realm = String::from_utf8_lossy(realm);
        let nonce = String::from_utf8_lossy(nonce);
        Ok(format!(
            "charset=utf-8,username=\"{}\",realm=\"{realm}\",nonce=\"{nonce}\",nc=00000001,cnonce=\"{}\",digest-uri=\"{DIGEST_URI}\",maxbuf=65536,response={response},qop=auth",
            self.username, self.cnonce
        )
        .into_bytes())
    }

    /// Checks the server's `rspauth`, proving the server knew the password too.
    pub fn verify_server(&self, final_message: &[u8]) -> Result<()> {
        let d = parse_directives(final_message)?;
        let got = get(&d, "rspauth").ok_or_else(|| Error::Auth("DIGEST-MD5: server's final message has no rspauth".into()))?;
        match &self.expected_rspauth {
            Some(want) if constant_time_eq(want.as_bytes(), got) => Ok(()),
            Some(_) => Err(Error::Auth("DIGEST-MD5: server's rspauth is wrong".into())),
            None => Err(Error::Auth("DIGEST-MD5: rspauth before any challenge".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &[u8] = b"\x0a\x04test\x10\x07";
    const PW: &[u8] = b"secret-password";

    fn lookup(id: &[u8]) -> Option<Vec<u8>> {
        (id == ID).then(|| PW.to_vec())
    }

    #[test]
    fn rfc2831_example_digest() {
        // The worked example of RFC 2831 section 4 (IMAP, qop auth, no md5-sess
        // difference: the RFC's algorithm is md5-sess too).
        let inputs = DigestInputs {
            username: b"chris",
            realm: b"elwood.innosoft.com",
            password: b"secret",
            nonce: b"OA6MG9tEQGm2hh",
            cnonce: b"OA6MHXh6VqTrRk",
            nc: b"00000001",
            qop: b"auth",
            digest_uri: b"imap/elwood.innosoft.com",
            authzid: None,
        };
        assert_eq!(inputs.response_value("AUTHENTICATE"), "d388dad90d4bbd760a152321f2143af7");
        assert_eq!(inputs.response_value(""), "ea40f60335c427b5527b84dbabcdfffd");
    }

    #[test]
    fn challenge_has_what_hadoop_clients_need() {
        let s = DigestMd5Server::new("abc".into());
        let c = parse_directives(&s.challenge()).unwrap();
        assert_eq!(get(&c, "realm"), Some(&b"default"[..]));
        assert_eq!(get(&c, "nonce"), Some(&b"abc"[..]));
        assert_eq!(get(&c, "qop"), Some(&b"auth"[..]));
        assert_eq!(get(&c, "charset"), Some(&b"utf-8"[..]));
        assert_eq!(get(&c, "algorithm"), Some(&b"md5-sess"[..]));
    }

    #[test]
    fn client_and_server_agree_and_server_proves_itself() {
        let mut s = DigestMd5Server::new("n0nce".into());
        let mut c = DigestMd5Client::new(ID, PW, "cn".into());
        let resp = c.respond(&s.challenge()).unwrap();
        let ok = s.respond(&resp, &lookup).unwrap();
        assert_eq!(ok.identifier, ID);
        c.verify_server(&ok.rspauth).unwrap();
    }

    #[test]
    fn wrong_password_unknown_token_and_replay_are_rejected() {
        let mut s = DigestMd5Server::new("n1".into());
        let mut c = DigestMd5Client::new(ID, b"wrong", "cn".into());
        let e = s.respond(&c.respond(&s.challenge()).unwrap(), &lookup).unwrap_err();
        assert!(e.to_string().contains("wrong token password"), "{e}");

        let mut s = DigestMd5Server::new("n2".into());
        let mut c = DigestMd5Client::new(b"other", PW, "cn".into());
        let e = s.respond(&c.respond(&s.challenge()).unwrap(), &lookup).unwrap_err();
        assert!(e.to_string().contains("unknown or expired"), "{e}");

        // A response captured from one exchange, replayed to a new server.
        let old = DigestMd5Server::new("first".into());
        let mut c = DigestMd5Client::new(ID, PW, "cn".into());
        let captured = c.respond(&old.challenge()).unwrap();
        let mut fresh = DigestMd5Server::new("second".into());
        let e = fresh.respond(&captured, &lookup).unwrap_err();
        assert!(e.to_string().contains("replayed"), "{e}");

        // The same server never accepts twice.
        let mut s = DigestMd5Server::new("n3".into());
        let mut c = DigestMd5Client::new(ID, PW, "cn".into());
        let r = c.respond(&s.challenge()).unwrap();
        s.respond(&r, &lookup).unwrap();
        let e = s.respond(&r, &lookup).unwrap_err();
        assert!(e.to_string().contains("cannot be reused"), "{e}");
    }

    #[test]
    fn malformed_responses_are_errors() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "no username"),
            (b"username=\"x", "unterminated"),
            (b"username", "no '=' value"),
            (b"username=a,username=b", "more than once"),
            (b"=x", "empty directive"),
            (b"username=\"a\"x", "expected ','"),
        ];
        for (input, want) in cases {
            let mut s = DigestMd5Server::new("n".into());
            let e = s.respond(input, &lookup).unwrap_err().to_string();
            assert!(e.contains(want), "{input:?}: {e}");
        }
        let base = |extra: &str| {
            format!("username=\"{}\",nonce=\"n\",cnonce=\"c\",nc=00000001,digest-uri=\"/default\",response=00{extra}", encode_identifier(ID))
        };
        for (extra, want) in [
            (",qop=auth-conf", "qop auth-conf is not supported"),
            (",realm=\"evil\"", "realm evil"),
            (",charset=latin1", "charset latin1"),
            (",authzid=\"root\"", "authzid differs"),
        ] {
            let mut s = DigestMd5Server::new("n".into());
            let e = s.respond(base(extra).as_bytes(), &lookup).unwrap_err().to_string();
            assert!(e.contains(want), "{extra}: {e}");
        }
        let mut s = DigestMd5Server::new("n".into());
        let r = base("").replace("00000001", "00000002");
        assert!(s.respond(r.as_bytes(), &lookup).unwrap_err().to_string().contains("nonce count"));
        let mut s = DigestMd5Server::new("n".into());
        let r = base("").replace("/default", "hdfs/nn");
        assert!(s.respond(r.as_bytes(), &lookup).unwrap_err().to_string().contains("digest-uri"));
        let mut s = DigestMd5Server::new("n".into());
        let r = "username=\"!!\",nonce=\"n\",cnonce=\"c\",nc=00000001,digest-uri=\"/default\",response=00";
        assert!(s.respond(r.as_bytes(), &lookup).unwrap_err().to_string().contains("not base64"));
        let mut s = DigestMd5Server::new("n".into());
        assert!(s.respond(&vec![b'a'; 5000], &lookup).unwrap_err().to_string().contains("exceeds"));
    }

    #[test]
    fn quoted_values_unescape() {
        let d = parse_directives(br#" a = "x\"y" , b=plain ,c="" "#).unwrap();
        assert_eq!(d, vec![("a".into(), b"x\"y".to_vec()), ("b".into(), b"plain".to_vec()), ("c".into(), vec![])]);
    }
}
