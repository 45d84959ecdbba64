//! Arbitrary bytes as a client's byte stream: preamble, then length-prefixed
//! frames fed to the connection state machine (both auth policies, with a
//! password lookup that accepts one token), plus the same bytes as a
//! DIGEST-MD5 response and as a credentials file. Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_yarn_ipc::connection::{AuthPolicy, Connection, Step};
use weir_yarn_ipc::frame::{frame_len, PREAMBLE_LEN};
use weir_yarn_ipc::security::credentials::Credentials;
use weir_yarn_ipc::security::digest_md5::DigestMd5Server;

fn lookup(id: &[u8]) -> Option<Vec<u8>> {
    (id == b"ident").then(|| b"pw".to_vec())
}

fuzz_target!(|data: &[u8]| {
    for policy in [AuthPolicy::SimpleAllowed, AuthPolicy::TokenRequired] {
        let Ok(mut conn) = Connection::start(data, policy, "nonce".into()) else { continue };
        let mut rest = data.get(PREAMBLE_LEN..).unwrap_or_default();
        while rest.len() >= 4 {
            let Ok(len) = frame_len([rest[0], rest[1], rest[2], rest[3]], 1 << 16) else { break };
            let Some(body) = rest.get(4..4 + len) else { break };
            rest = &rest[4 + len..];
            if let Step::Close(_) = conn.on_frame(body, &lookup) {
                break;
            }
        }
    }
    let mut server = DigestMd5Server::new("nonce".into());
    let _ = server.respond(data, &lookup);
    if let Ok(c) = Credentials::from_bytes(data) {
        assert_eq!(Credentials::from_bytes(&c.to_bytes()).ok(), Some(c));
    }
});
