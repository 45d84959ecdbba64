//! Hand-written helpers around the generated IPC header types: the special
//! call ids, the Java exception class names clients rebuild by reflection,
//! and builders for request and response frames.

use crate::frame::{encode_frame, RawMessage};
use crate::proto::rpc_response_header_proto::{RpcErrorCodeProto, RpcStatusProto};
use crate::proto::{
    RequestHeaderProto, RpcKindProto, RpcRequestHeaderProto, RpcResponseHeaderProto,
};

/// Call id of the connection context (no reply).
pub const CONNECTION_CONTEXT_CALL_ID: i32 = -3;
/// Call id of a ping (no reply).
pub const PING_CALL_ID: i32 = -4;
/// Call id of every SASL message, both ways.
pub const SASL_CALL_ID: i32 = -33;
/// Call id of a FATAL reply to a failed authentication.
pub const AUTHORIZATION_FAILED_CALL_ID: i32 = -1;
/// `clientProtocolVersion` every YARN protocol uses.
pub const CLIENT_PROTOCOL_VERSION: u64 = 1;

pub const NO_SUCH_PROTOCOL_CLASS: &str = "org.apache.hadoop.ipc.RpcNoSuchProtocolException";
pub const NO_SUCH_METHOD_CLASS: &str = "org.apache.hadoop.ipc.RpcNoSuchMethodException";
pub const RPC_SERVER_EXCEPTION_CLASS: &str = "org.apache.hadoop.ipc.RpcServerException";
pub const VERSION_MISMATCH_CLASS: &str = "org.apache.hadoop.ipc.RPC$VersionMismatch";
pub const ACCESS_CONTROL_EXCEPTION_CLASS: &str = "org.apache.hadoop.security.AccessControlException";
pub const SASL_EXCEPTION_CLASS: &str = "javax.security.sasl.SaslException";

/// The header of one client→server message.
pub fn request_header(call_id: i32, client_id: &[u8], retry_count: i32) -> RpcRequestHeaderProto {
    RpcRequestHeaderProto {
        rpc_kind: Some(RpcKindProto::RpcProtocolBuffer as i32),
        rpc_op: Some(0),
        call_id,
        client_id: client_id.to_vec(),
        retry_count: Some(retry_count),
        ..Default::default()
    }
}

/// A complete call frame: RPC header, method header, request payload.
pub fn call_frame(header: &RpcRequestHeaderProto, protocol: &str, method: &str, request: &[u8]) -> Vec<u8> {
    let method_header = RequestHeaderProto {
        method_name: method.to_string(),
        declaring_class_protocol_name: protocol.to_string(),
        client_protocol_version: CLIENT_PROTOCOL_VERSION,
    };
    encode_frame(&[header, &method_header, &RawMessage(request)])
}

/// Response header skeleton; the call id travels as uint32 on the wire, so
/// negative ids (-33, -1) are sent as their two's complement.
pub fn response_header(call_id: i32, client_id: &[u8], status: RpcStatusProto) -> RpcResponseHeaderProto {
    RpcResponseHeaderProto {
        call_id: call_id as u32,
        status: status as i32,
        server_ipc_version_num: Some(crate::frame::IPC_VERSION as u32),
        client_id: Some(client_id.to_vec()),
        retry_count: Some(-1),
        ..Default::default()
    }
}

/// A SUCCESS frame carrying `payload`.
pub fn success_frame(call_id: i32, client_id: &[u8], payload: &[u8]) -> Vec<u8> {
    let h = response_header(call_id, client_id, RpcStatusProto::Success);
    encode_frame(&[&h, &RawMessage(payload)])
}

/// An ERROR or FATAL frame carrying a Java exception.
pub fn error_frame(
    call_id: i32,
    client_id: &[u8],
    status: RpcStatusProto,
    detail: RpcErrorCodeProto,
    class: &str,
    message: &str,
) -> Vec<u8> {
    let mut h = response_header(call_id, client_id, status);
    h.exception_class_name = Some(class.to_string());
    h.error_msg = Some(message.to_string());
    h.error_detail = Some(detail as i32);
    encode_frame(&[&h])
}

/// The call id a response header names, as the client's signed id.
pub fn response_call_id(h: &RpcResponseHeaderProto) -> i32 {
    h.call_id as i32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FrameCursor;

    #[test]
    fn negative_call_ids_survive_the_uint32_field() {
        let f = success_frame(SASL_CALL_ID, b"", b"");
        let h: RpcResponseHeaderProto = FrameCursor::new(&f[4..]).decode("h").unwrap();
        assert_eq!(h.call_id, 4294967263);
        assert_eq!(response_call_id(&h), -33);
        assert_eq!(h.server_ipc_version_num, Some(9));
    }

    #[test]
    fn request_call_id_is_zigzag_sint32() {
        use prost::Message;
        let h = request_header(-3, &[7; 16], -1);
        let bytes = h.encode_to_vec();
        // field 3, varint, zigzag(-3) = 5
        assert!(bytes.windows(2).any(|w| w == [0x18, 0x05]), "{bytes:?}");
        assert_eq!(RpcRequestHeaderProto::decode(&bytes[..]).unwrap().call_id, -3);
    }

    #[test]
    fn error_frames_carry_class_message_and_detail() {
        let f = error_frame(5, b"cid", RpcStatusProto::Error, RpcErrorCodeProto::ErrorApplication, "a.B", "boom");
        let h: RpcResponseHeaderProto = FrameCursor::new(&f[4..]).decode("h").unwrap();
        assert_eq!(h.status(), RpcStatusProto::Error);
        assert_eq!(h.error_detail(), RpcErrorCodeProto::ErrorApplication);
        assert_eq!(h.exception_class_name.as_deref(), Some("a.B"));
        assert_eq!(h.error_msg.as_deref(), Some("boom"));
        assert_eq!(h.client_id.as_deref(), Some(&b"cid"[..]));
    }
}
