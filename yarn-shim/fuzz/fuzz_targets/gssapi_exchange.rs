//! The Kerberos (SASL GSSAPI) path of the connection state machine driven
//! by a fuzzer-chosen script, with a scripted GSS-API acceptor in place of
//! MIT's (its token "ok" establishes the context as alice@EXAMPLE.COM;
//! wrapping prefixes "W"). Each input byte picks the next client move:
//! NEGOTIATE, INITIATE naming KERBEROS (the good token or fuzz bytes), a
//! RESPONSE (empty, a wrapped layer choice of fuzz bytes, raw bytes), an
//! INITIATE naming SIMPLE or TOKEN, a connection context (alice's
//! principal, another user, none), a call, raw bytes.
//!
//! Checked besides "no panic": no call is dispatched unless the exchange
//! ended with the "no security layer" choice and the context named alice's
//! principal or nobody, and then the call's user is "alice".
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use weir_yarn_ipc::connection::{AuthPolicy, Authentication, Connection, Step};
use weir_yarn_ipc::frame::{encode_frame, RawMessage};
use weir_yarn_ipc::header::{call_frame, request_header, CONNECTION_CONTEXT_CALL_ID, SASL_CALL_ID};
use weir_yarn_ipc::proto::rpc_sasl_proto::{SaslAuth, SaslState};
use weir_yarn_ipc::proto::{IpcConnectionContextProto, RpcSaslProto, UserInformationProto};
use weir_yarn_ipc::security::auth_to_local::AuthToLocal;
use weir_yarn_ipc::security::gssapi::{ContextStep, GssError};
use weir_yarn_ipc::security::sasl_gssapi::{GssAcceptor, KerberosAcceptor};

const PRINCIPAL: &str = "alice@EXAMPLE.COM";

struct Scripted {
    done: bool,
}

impl GssAcceptor for Scripted {
    fn step(&mut self, token: &[u8]) -> Result<ContextStep, GssError> {
        if token != b"ok" {
            return Err(GssError("GSS accept failed: bad token".into()));
        }
        self.done = true;
        Ok(ContextStep { token: b"ap-rep".to_vec(), complete: true })
    }
    fn peer(&self) -> Option<&str> {
        self.done.then_some(PRINCIPAL)
    }
    fn wrap(&mut self, data: &[u8]) -> Result<Vec<u8>, GssError> {
        Ok([b"W", data].concat())
    }
    fn unwrap(&mut self, data: &[u8]) -> Result<Vec<u8>, GssError> {
        data.strip_prefix(b"W").map(<[u8]>::to_vec).ok_or_else(|| GssError("GSS unwrap failed".into()))
    }
}

fn sasl_body(msg: &RpcSaslProto) -> Vec<u8> {
    encode_frame(&[&request_header(SASL_CALL_ID, b"", -1), msg])[4..].to_vec()
}

fn auth(method: &str, mechanism: &str, protocol: Option<&str>, server_id: Option<&str>) -> SaslAuth {
    SaslAuth { method: method.into(), mechanism: mechanism.into(), protocol: protocol.map(Into::into), server_id: server_id.map(Into::into), challenge: None }
}

fuzz_target!(|data: &[u8]| {
    let rules = AuthToLocal::parse("DEFAULT", "EXAMPLE.COM").expect("DEFAULT parses");
    let kerberos = KerberosAcceptor::new("rm/localhost@EXAMPLE.COM", rules, Arc::new(|| Ok(Box::new(Scripted { done: false }) as Box<dyn GssAcceptor>)));
    let methods = AuthPolicy::SimpleAllowed.methods(true);
    let Ok(mut conn) = Connection::start_with(b"hrpc\x09\x00\xdf", methods, Some(kerberos), "fuzz-nonce".into()) else {
        panic!("a SASL preamble is refused")
    };
    let no_tokens = |_: &[u8]| None;
    let mut input = data.iter().copied();
    let mut next = move || input.next();
    // Up to `n % 24` further input bytes.
    fn take(next: &mut impl FnMut() -> Option<u8>, n: u8) -> Vec<u8> {
        (0..n % 24).map_while(|_| next()).collect()
    }
    // What the script did that may let a call in.
    let (mut chose_no_layer, mut context_ok) = (false, false);
    while let Some(op) = next() {
        let arg = next().unwrap_or(0);
        let body = match op % 10 {
            0 => sasl_body(&RpcSaslProto { state: SaslState::Negotiate as i32, ..Default::default() }),
            1 => {
                let token = if arg % 2 == 0 { b"ok".to_vec() } else { take(&mut next, arg) };
                let a = if arg % 3 == 0 { auth("KERBEROS", "GSSAPI", Some("rm"), Some("other")) } else { auth("KERBEROS", "GSSAPI", Some("rm"), Some("localhost")) };
                sasl_body(&RpcSaslProto { state: SaslState::Initiate as i32, token: Some(token), auths: vec![a], version: None })
            }
            2 => sasl_body(&RpcSaslProto { state: SaslState::Response as i32, token: Some(Vec::new()), ..Default::default() }),
            3 => {
                let mut choice = vec![b'W', arg, 0, 0, 0];
                choice.extend({ let n = next().unwrap_or(0); take(&mut next, n) });
                // The only acceptable choice: no layer, and no authorization
                // id or alice's own.
                if arg == 1 && (choice.len() == 5 || &choice[5..] == PRINCIPAL.as_bytes()) {
                    chose_no_layer = true;
                }
                sasl_body(&RpcSaslProto { state: SaslState::Response as i32, token: Some(choice), ..Default::default() })
            }
            4 => {
                let state = i32::from(arg % 6);
                sasl_body(&RpcSaslProto { state, token: Some(take(&mut next, arg)), ..Default::default() })
            }
            5 => {
                let a = if arg % 2 == 0 { auth("SIMPLE", "", None, None) } else { auth("TOKEN", "DIGEST-MD5", Some(""), Some("default")) };
                sasl_body(&RpcSaslProto { state: SaslState::Initiate as i32, token: Some(take(&mut next, arg)), auths: vec![a], version: None })
            }
            6 => {
                let user = match arg % 3 {
                    0 => Some(PRINCIPAL.to_owned()),
                    1 => Some("bob".to_owned()),
                    _ => None,
                };
                context_ok = user.as_deref().map_or(true, |u| u == PRINCIPAL);
                let ctx = IpcConnectionContextProto {
                    user_info: Some(UserInformationProto { effective_user: user, real_user: None }),
                    protocol: Some("p".into()),
                };
                encode_frame(&[&request_header(CONNECTION_CONTEXT_CALL_ID, &[1; 16], -1), &ctx])[4..].to_vec()
            }
            7 => call_frame(&request_header(i32::from(arg), &[1; 16], -1), "p", "m", b"x")[4..].to_vec(),
            8 => encode_frame(&[&request_header(SASL_CALL_ID, b"", -1), &RawMessage(&take(&mut next, arg))])[4..].to_vec(),
            _ => take(&mut next, arg),
        };
        match conn.on_frame(&body, &no_tokens) {
            Step::Dispatch(_) => {
                assert!(chose_no_layer && context_ok, "a call was dispatched without a finished Kerberos login");
                assert_eq!(conn.authentication(), &Authentication::Kerberos { principal: PRINCIPAL.into() });
                assert_eq!(conn.call_user().as_deref(), Some("alice"));
            }
            Step::Close(_) => {
                assert!(conn.is_closed());
                break;
            }
            Step::Nothing | Step::Reply(_) => {}
        }
    }
});
