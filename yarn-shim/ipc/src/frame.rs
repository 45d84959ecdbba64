//! Hadoop IPC v9 framing: the 7-byte connection preamble, 4-byte big-endian
//! length-prefixed frames, and varint-delimited protobuf messages inside a
//! frame.
//!
//! Invariants: a frame length is checked against the configured maximum
//! before anything is allocated for it, and even an accepted length is
//! never allocated up front: the body grows with the bytes that arrive
//! (doubling from 4 KiB, in steps of at most [`READ_CHUNK`]), so a peer
//! that declares 127 MiB and sends a byte costs 4 KiB, not 127 MiB. Parsing is total (returns an error, never
//! panics) on every input, which `fuzz/` exercises.

use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::error::{Error, Result};

pub const MAGIC: &[u8; 4] = b"hrpc";
/// The only IPC version we speak.
pub const IPC_VERSION: u8 = 9;
pub const PREAMBLE_LEN: usize = 7;
/// Hadoop's default `ipc.maximum.data.length`.
pub const DEFAULT_MAX_FRAME_LEN: usize = 128 * 1024 * 1024;
/// Largest frame legal before a connection has authenticated: the SASL
/// messages and the connection context are a few hundred bytes (a
/// DIGEST-MD5 response with a token is under 1 KiB), so 64 KiB is ample.
pub const DEFAULT_HANDSHAKE_MAX_FRAME_LEN: usize = 64 * 1024;
/// The most of a frame body allocated ahead of the bytes that arrive.
pub const READ_CHUNK: usize = 64 * 1024;
/// What a frame body's first read may fill; each later read at most what
/// has arrived so far, up to [`READ_CHUNK`].
const FIRST_READ: usize = 4096;

/// How the client means to authenticate, from the last preamble byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthProtocol {
    /// SIMPLE: no SASL exchange, the user is whatever the context says.
    None,
    /// A SASL exchange on call id -33 comes before the connection context.
    Sasl,
}

impl AuthProtocol {
    pub fn byte(self) -> u8 {
        match self {
            AuthProtocol::None => 0,
            AuthProtocol::Sasl => 0xDF,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preamble {
    pub service_class: u8,
    pub auth: AuthProtocol,
}

impl Preamble {
    pub fn encode(&self) -> [u8; PREAMBLE_LEN] {
        let mut b = [0u8; PREAMBLE_LEN];
        b[..4].copy_from_slice(MAGIC);
        b[4] = IPC_VERSION;
        b[5] = self.service_class;
        b[6] = self.auth.byte();
        b
    }

    /// Parses the 7 preamble bytes. A version other than 9 is reported as
    /// [`Error::UnsupportedVersion`] so the server can answer
    /// FATAL_VERSION_MISMATCH rather than just hanging up.
    pub fn parse(b: &[u8]) -> Result<Preamble> {
        if b.len() < PREAMBLE_LEN {
            return Err(Error::Truncated { what: "preamble", needed: PREAMBLE_LEN, available: b.len() });
        }
        if &b[..4] != MAGIC {
            return Err(Error::BadMagic(String::from_utf8_lossy(&b[..4]).into_owned()));
        }
        if b[4] != IPC_VERSION {
            return Err(Error::UnsupportedVersion(b[4]));
        }
        let auth = match b[6] {
            0 => AuthProtocol::None,
            0xDF => AuthProtocol::Sasl,
            other => return Err(Error::UnknownAuthProtocol(other)),
        };
        Ok(Preamble { service_class: b[5], auth })
    }
}

/// Validates a frame's 4-byte length prefix against `max`.
pub fn frame_len(prefix: [u8; 4], max: usize) -> Result<usize> {
    let len = u32::from_be_bytes(prefix) as u64;
    if len > max as u64 {
        return Err(Error::FrameTooLarge { len, max });
    }
    Ok(len as usize)
}

/// Reads one frame body. `Ok(None)` means the peer closed cleanly between
/// frames; a close inside a frame is an error.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, max: usize) -> Result<Option<Vec<u8>>> {
    let mut body = Vec::new();
    Ok(read_frame_into(r, max, &mut body).await?.then_some(body))
}

/// [`read_frame`] into the caller's buffer (cleared first); `Ok(false)` is
/// a clean close. The buffer grows with the bytes received (each read asks
/// for at most as much as has arrived, 4 KiB to start; the Vec doubles),
/// so it stays within a small multiple of them plus a few KiB, whatever
/// length was declared; cancelled, it holds the bytes received so far.
pub async fn read_frame_into<R: AsyncRead + Unpin>(r: &mut R, max: usize, body: &mut Vec<u8>) -> Result<bool> {
    body.clear();
    let mut prefix = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut prefix[got..]).await?;
        if n == 0 {
            if got == 0 {
                return Ok(false);
            }
            return Err(Error::Truncated { what: "frame length", needed: 4, available: got });
        }
        got += n;
    }
    let len = frame_len(prefix, max)?;
    // Grow with what arrives, never by what was declared, and write into
    // spare capacity rather than zero-filling it first: a connection that
    // declared much and sent little holds little resident memory.
    while body.len() < len {
        let filled = body.len();
        // At most what has arrived so far (doubling), 4 KiB to start.
        let want = (len - filled).min(READ_CHUNK).min(filled.max(FIRST_READ));
        body.reserve(want);
        let n = r.read_buf(&mut bytes::BufMut::limit(&mut *body, want)).await?;
        if n == 0 {
            return Err(Error::Truncated { what: "frame body", needed: len, available: filled });
        }
    }
    Ok(true)
}

/// Encodes `messages` as one frame: length prefix, then each message
/// varint-delimited.
pub fn encode_frame(messages: &[&dyn DynMessage]) -> Vec<u8> {
    let body_len: usize = messages.iter().map(|m| m.delimited_len()).sum();
    let mut out = Vec::with_capacity(4 + body_len);
    out.extend_from_slice(&(body_len as u32).to_be_bytes());
    for m in messages {
        m.encode_delimited_into(&mut out);
    }
    out
}

/// Object-safe view of a prost message, so one frame can mix message types.
pub trait DynMessage {
    fn delimited_len(&self) -> usize;
    fn encode_delimited_into(&self, out: &mut Vec<u8>);
}

impl<M: Message> DynMessage for M {
    fn delimited_len(&self) -> usize {
        let n = self.encoded_len();
        prost::length_delimiter_len(n) + n
    }
    fn encode_delimited_into(&self, out: &mut Vec<u8>) {
        // Writing into a Vec cannot run out of space.
        let _ = self.encode_length_delimited(out);
    }
}

/// Raw pre-encoded bytes, written delimited like a message (the request and
/// response payloads, which this layer never decodes).
pub struct RawMessage<'a>(pub &'a [u8]);

impl DynMessage for RawMessage<'_> {
    fn delimited_len(&self) -> usize {
        prost::length_delimiter_len(self.0.len()) + self.0.len()
    }
    fn encode_delimited_into(&self, out: &mut Vec<u8>) {
        let _ = prost::encode_length_delimiter(self.0.len(), out);
        out.extend_from_slice(self.0);
    }
}

/// Walks the varint-delimited messages of one frame body.
pub struct FrameCursor<'a> {
    buf: &'a [u8],
}

impl<'a> FrameCursor<'a> {
    pub fn new(body: &'a [u8]) -> Self {
        FrameCursor { buf: body }
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The next delimited message's bytes.
    pub fn next_delimited(&mut self, what: &'static str) -> Result<&'a [u8]> {
        let (len, used) = read_varint(self.buf, what)?;
        let rest = &self.buf[used..];
        if len > rest.len() as u64 {
            return Err(Error::Truncated { what, needed: len.min(usize::MAX as u64) as usize, available: rest.len() });
        }
        let len = len as usize;
        let (msg, tail) = rest.split_at(len);
        self.buf = tail;
        Ok(msg)
    }

    pub fn decode<M: Message + Default>(&mut self, what: &'static str) -> Result<M> {
        let bytes = self.next_delimited(what)?;
        M::decode(bytes).map_err(|source| Error::Decode { what, source })
    }
}

/// Reads a protobuf base-128 varint (at most 10 bytes, at most 64 bits).
/// Returns the value and the number of bytes used.
pub fn read_varint(buf: &[u8], what: &'static str) -> Result<(u64, usize)> {
    let mut value: u64 = 0;
    for (i, &b) in buf.iter().enumerate() {
        if i == 9 && b > 1 {
            return Err(Error::BadVarint { what, reason: "more than 64 bits" });
        }
        value |= u64::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            return Ok((value, i + 1));
        }
        if i == 9 {
            return Err(Error::BadVarint { what, reason: "longer than 10 bytes" });
        }
    }
    if buf.is_empty() {
        Err(Error::Truncated { what, needed: 1, available: 0 })
    } else {
        Err(Error::BadVarint { what, reason: "ends inside the varint" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::RequestHeaderProto;

    #[test]
    fn preamble_round_trips_and_matches_spark_submit_bytes() {
        let p = Preamble { service_class: 0, auth: AuthProtocol::None };
        assert_eq!(p.encode(), *b"hrpc\x09\x00\x00");
        assert_eq!(Preamble::parse(&p.encode()).unwrap(), p);
        let s = Preamble { service_class: 3, auth: AuthProtocol::Sasl };
        assert_eq!(Preamble::parse(&s.encode()).unwrap(), s);
    }

    #[test]
    fn preamble_errors_say_what_was_wrong() {
        let e = Preamble::parse(b"GET / H").unwrap_err().to_string();
        assert_eq!(e, "bad preamble: expected \"hrpc\", got \"GET \"");
        let e = Preamble::parse(b"hrpc\x07\x00\x00").unwrap_err().to_string();
        assert_eq!(e, "IPC version 7 is not supported (server speaks 9)");
        let e = Preamble::parse(b"hrpc\x09\x00\x51").unwrap_err().to_string();
        assert!(e.contains("0x51"), "{e}");
        let e = Preamble::parse(b"hrp").unwrap_err().to_string();
        assert_eq!(e, "truncated preamble: needed 7 bytes, 3 available");
    }

    #[test]
    fn oversized_frame_is_rejected_before_allocating() {
        let e = frame_len(0x8000_0000u32.to_be_bytes(), DEFAULT_MAX_FRAME_LEN).unwrap_err();
        assert_eq!(e.to_string(), "frame of 2147483648 bytes exceeds the limit of 134217728");
        assert_eq!(frame_len(16u32.to_be_bytes(), 16).unwrap(), 16);
        assert!(frame_len(17u32.to_be_bytes(), 16).is_err());
    }

    #[tokio::test]
    async fn read_frame_handles_clean_close_truncation_and_limit() {
        let mut empty: &[u8] = b"";
        assert!(read_frame(&mut empty, 100).await.unwrap().is_none());
        let mut short: &[u8] = b"\x00\x00";
        let e = read_frame(&mut short, 100).await.unwrap_err().to_string();
        assert_eq!(e, "truncated frame length: needed 4 bytes, 2 available");
        let mut body: &[u8] = b"\x00\x00\x00\x05abc";
        let e = read_frame(&mut body, 100).await.unwrap_err().to_string();
        assert_eq!(e, "truncated frame body: needed 5 bytes, 3 available");
        // A huge length with no body must fail on the length, not on memory.
        let mut huge: &[u8] = b"\xff\xff\xff\xff";
        let e = read_frame(&mut huge, DEFAULT_MAX_FRAME_LEN).await.unwrap_err().to_string();
        assert!(e.contains("exceeds the limit"), "{e}");
        let mut ok: &[u8] = b"\x00\x00\x00\x03abc";
        assert_eq!(read_frame(&mut ok, 3).await.unwrap().unwrap(), b"abc");
    }

    /// A reader that yields `prefix` and then waits forever, like a peer
    /// that declared a length and sent nothing more.
    struct Stalled(Vec<u8>);

    impl AsyncRead for Stalled {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            if self.0.is_empty() {
                return std::task::Poll::Pending;
            }
            let n = self.0.len().min(buf.remaining());
            buf.put_slice(&self.0[..n]);
            self.0.drain(..n);
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_declared_length_is_not_allocated_before_its_bytes_arrive() {
        // 127 MiB declared, 10 bytes sent: the read waits holding one
        // chunk at most (it used to allocate all 127 MiB at once).
        let declared: u32 = 127 << 20;
        let mut input = declared.to_be_bytes().to_vec();
        input.extend_from_slice(b"0123456789");
        let mut r = Stalled(input);
        let mut body = Vec::new();
        let read = read_frame_into(&mut r, DEFAULT_MAX_FRAME_LEN, &mut body);
        let timed = tokio::time::timeout(std::time::Duration::from_millis(20), read).await;
        assert!(timed.is_err(), "a stalled frame must wait, not finish");
        assert_eq!(&body[..], b"0123456789");
        assert!(body.capacity() <= 2 * FIRST_READ, "{} bytes reserved for 10 received", body.capacity());
        // And a body that does arrive in pieces is read whole.
        let mut body = 200_000u32.to_be_bytes().to_vec();
        body.extend(std::iter::repeat_n(7u8, 200_000));
        let mut r: &[u8] = &body;
        assert_eq!(read_frame(&mut r, DEFAULT_MAX_FRAME_LEN).await.unwrap().unwrap().len(), 200_000);
    }

    #[test]
    fn frames_carry_delimited_messages() {
        let h = RequestHeaderProto {
            method_name: "echo".into(),
            declaring_class_protocol_name: "p".into(),
            client_protocol_version: 1,
        };
        let frame = encode_frame(&[&h, &RawMessage(b"xyz")]);
        let len = frame_len(frame[..4].try_into().unwrap(), 1024).unwrap();
        assert_eq!(len, frame.len() - 4);
        let mut c = FrameCursor::new(&frame[4..]);
        let back: RequestHeaderProto = c.decode("request header").unwrap();
        assert_eq!(back, h);
        assert_eq!(c.next_delimited("payload").unwrap(), b"xyz");
        assert!(c.is_empty());
    }

    #[test]
    fn bad_varints_and_truncated_messages_are_errors() {
        let e = FrameCursor::new(b"").next_delimited("rpc header").unwrap_err().to_string();
        assert_eq!(e, "truncated rpc header: needed 1 bytes, 0 available");
        let e = FrameCursor::new(b"\x80\x80").next_delimited("rpc header").unwrap_err().to_string();
        assert_eq!(e, "malformed varint in rpc header: ends inside the varint");
        let e = FrameCursor::new(&[0xff; 11]).next_delimited("rpc header").unwrap_err().to_string();
        assert_eq!(e, "malformed varint in rpc header: more than 64 bits");
        let mut ten = [0x80u8; 10];
        ten[9] = 0x81;
        assert!(FrameCursor::new(&ten).next_delimited("x").is_err());
        let e = FrameCursor::new(b"\x05ab").next_delimited("payload").unwrap_err().to_string();
        assert_eq!(e, "truncated payload: needed 5 bytes, 2 available");
        // u64::MAX as a length must not overflow anything.
        let mut max = vec![0xffu8; 9];
        max.push(0x01);
        assert!(FrameCursor::new(&max).next_delimited("payload").is_err());
        let e = FrameCursor::new(b"\x02\xff\xff").decode::<RequestHeaderProto>("request header").unwrap_err();
        assert!(e.to_string().starts_with("cannot decode request header"), "{e}");
    }
}
