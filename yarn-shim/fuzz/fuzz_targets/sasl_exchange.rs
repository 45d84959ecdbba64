//! The SASL exchange driven by a fuzzer-chosen script: each input byte
//! picks the next client move (NEGOTIATE, an INITIATE with a correct
//! DIGEST-MD5 response, one with the wrong password, a correct one with a
//! byte flipped, an arbitrary SASL message, a connection context, a call,
//! raw bytes) and the bytes after it feed that move. Real responses are
//! computed from the server's own challenge, so the fuzzer reaches every
//! state past NEGOTIATE instead of stopping at the first decode error.
//!
//! Checked besides "no panic": the move that authenticates a connection is
//! always an INITIATE built with the right password (the wrong one never
//! gets in), the connection then carries exactly that token's identifier,
//! and no call is dispatched before authentication.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_yarn_ipc::connection::{AuthPolicy, Connection, Step};
use weir_yarn_ipc::frame::{encode_frame, FrameCursor, RawMessage};
use weir_yarn_ipc::header::{call_frame, request_header, CONNECTION_CONTEXT_CALL_ID, SASL_CALL_ID};
use weir_yarn_ipc::proto::rpc_sasl_proto::{SaslAuth, SaslState};
use weir_yarn_ipc::proto::{IpcConnectionContextProto, RpcResponseHeaderProto, RpcSaslProto};
use weir_yarn_ipc::security::digest_md5::DigestMd5Client;

const IDENTIFIER: &[u8] = b"\x0a\x04fuzz\x10\x07";
const PASSWORD: &[u8] = b"right password";

fn lookup(id: &[u8]) -> Option<Vec<u8>> {
    (id == IDENTIFIER).then(|| PASSWORD.to_vec())
}

/// The frame body (no length prefix) of one SASL message.
fn sasl_body(call_id: i32, msg: &RpcSaslProto) -> Vec<u8> {
    encode_frame(&[&request_header(call_id, b"", -1), msg])[4..].to_vec()
}

fn initiate(token: Vec<u8>, method: &str) -> RpcSaslProto {
    RpcSaslProto {
        version: None,
        state: SaslState::Initiate as i32,
        token: Some(token),
        auths: vec![SaslAuth {
            method: method.into(),
            mechanism: "DIGEST-MD5".into(),
            protocol: Some(String::new()),
            server_id: Some("default".into()),
            challenge: None,
        }],
    }
}

/// The challenge in a server's NEGOTIATE reply frame, if it is one.
fn challenge_in(frame: &[u8]) -> Option<Vec<u8>> {
    let mut c = FrameCursor::new(frame.get(4..)?);
    let _: RpcResponseHeaderProto = c.decode("header").ok()?;
    let sasl: RpcSaslProto = c.decode("sasl").ok()?;
    sasl.auths.first()?.challenge.clone()
}

fuzz_target!(|data: &[u8]| {
    let Ok(mut conn) = Connection::start(b"hrpc\x09\x00\xdf", AuthPolicy::TokenRequired, "fuzz-nonce".into()) else {
        panic!("a SASL preamble is refused")
    };
    let mut challenge: Option<Vec<u8>> = None;
    let mut input = data.iter().copied();
    let mut next = move || input.next();
    while let Some(op) = next() {
        let arg = next().unwrap_or(0);
        let body = match op % 8 {
            0 => {
                let call_id = if arg % 4 == 0 { 0 } else { SASL_CALL_ID };
                sasl_body(call_id, &RpcSaslProto { version: None, state: SaslState::Negotiate as i32, token: None, auths: vec![] })
            }
            1 | 2 | 3 => {
                let Some(ch) = challenge.clone() else { continue };
                let password: &[u8] = if op % 8 == 2 { b"wrong password" } else { PASSWORD };
                let mut client = DigestMd5Client::new(IDENTIFIER, password, format!("cnonce{arg}"));
                let Ok(mut response) = client.respond(&ch) else { continue };
                if op % 8 == 3 && !response.is_empty() {
                    let at = usize::from(next().unwrap_or(0)) % response.len();
                    response[at] ^= arg | 1;
                }
                sasl_body(SASL_CALL_ID, &initiate(response, if arg % 8 == 0 { "SIMPLE" } else { "TOKEN" }))
            }
            4 => {
                let len = usize::from(arg % 64);
                let token: Vec<u8> = (0..len).map(|_| next().unwrap_or(0)).collect();
                let msg = RpcSaslProto { version: None, state: i32::from(next().unwrap_or(0) % 7), token: Some(token), auths: vec![] };
                sasl_body(SASL_CALL_ID, &msg)
            }
            5 => {
                let ctx = IpcConnectionContextProto { user_info: None, protocol: Some("p".into()) };
                encode_frame(&[&request_header(CONNECTION_CONTEXT_CALL_ID, &[1; 16], -1), &ctx])[4..].to_vec()
            }
            6 => call_frame(&request_header(i32::from(arg), &[1; 16], 0), "p", "m", &[arg])[4..].to_vec(),
            _ => {
                let raw: Vec<u8> = (0..usize::from(arg % 64)).map(|_| next().unwrap_or(0)).collect();
                encode_frame(&[&RawMessage(&raw)])[4..].to_vec()
            }
        };
        let authenticated_before = conn.token_identifier().is_some();
        let step = conn.on_frame(&body, &lookup);
        if !authenticated_before && conn.token_identifier().is_some() {
            assert!(matches!(op % 8, 1 | 3), "authenticated by a move that did not use the right password (op {op})");
            assert_eq!(conn.token_identifier(), Some(IDENTIFIER));
        }
        match step {
            Step::Reply(frame) => {
                if let Some(ch) = challenge_in(&frame) {
                    challenge = Some(ch);
                }
            }
            Step::Dispatch(_) => assert!(conn.token_identifier().is_some(), "a call was dispatched before authentication"),
            Step::Close(_) => break,
            Step::Nothing => {}
        }
    }
});
