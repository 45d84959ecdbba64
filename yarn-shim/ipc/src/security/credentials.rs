//! The Hadoop credentials file (`HADOOP_TOKEN_FILE_LOCATION`), format
//! version 0 (Writable): `HDTS`, version byte 0, then WritableUtils vints —
//! token count, each token as alias Text + identifier + password + kind Text
//! + service Text, then secret count and each secret as alias Text + bytes.
//!
//! Reading is bounded: counts and lengths are checked against the bytes
//! actually left before anything is allocated, so a hostile file cannot make
//! us reserve gigabytes. Entries keep their order and later duplicates of an
//! alias replace earlier ones, as Hadoop's map does.

use crate::error::{Error, Result};
use crate::proto::TokenProto;

pub const MAGIC: &[u8; 4] = b"HDTS";
pub const WRITABLE_VERSION: u8 = 0;
/// Caps on what one file may hold; far above anything real.
const MAX_ENTRIES: usize = 1 << 16;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// (alias, token). The alias is usually the token's service.
    pub tokens: Vec<(String, TokenProto)>,
    /// (alias, secret bytes).
    pub secrets: Vec<(String, Vec<u8>)>,
}

fn bad(m: String) -> Error {
    Error::Credentials(m)
}

/// WritableUtils.writeVLong.
pub fn write_vlong(out: &mut Vec<u8>, v: i64) {
    if (-112..=127).contains(&v) {
        out.push(v as u8);
        return;
    }
    let (mut len, mag) = if v < 0 { (-120i32, !v) } else { (-112i32, v) };
    let mut tmp = mag;
    while tmp != 0 {
        tmp >>= 8;
        len -= 1;
    }
    out.push(len as u8);
    let n = if len < -120 { -(len + 120) } else { -(len + 112) };
    for idx in (0..n).rev() {
        out.push((mag >> (idx * 8)) as u8);
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn left(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn byte(&mut self, what: &str) -> Result<u8> {
        let b = *self.buf.get(self.pos).ok_or_else(|| bad(format!("truncated in {what} at byte {}", self.pos)))?;
        self.pos += 1;
        Ok(b)
    }

    /// WritableUtils.readVLong.
    fn vlong(&mut self, what: &str) -> Result<i64> {
        let first = self.byte(what)? as i8;
        if first >= -112 {
            return Ok(first as i64);
        }
        let n = if first < -120 { -119 - first as i32 } else { -111 - first as i32 } - 1;
        let mut v: i64 = 0;
        for _ in 0..n {
            v = (v << 8) | self.byte(what)? as i64;
        }
        Ok(if first < -120 { !v } else { v })
    }

    /// A non-negative vint that must fit in `limit`.
    fn length(&mut self, what: &str, limit: usize) -> Result<usize> {
        let at = self.pos;
        let v = self.vlong(what)?;
        if v < 0 || v > i32::MAX as i64 {
            return Err(bad(format!("{what} at byte {at} is {v}, not a length")));
        }
        let v = v as usize;
        if v > limit {
            return Err(bad(format!("{what} at byte {at} is {v}, more than the {limit} possible here")));
        }
        Ok(v)
    }

    fn bytes(&mut self, what: &str) -> Result<Vec<u8>> {
        let at = self.pos;
        let n = self.length(&format!("length of {what}"), usize::MAX)?;
        // Checked after the length's own bytes were consumed.
        if n > self.left() {
            return Err(bad(format!("length of {what} at byte {at} is {n}, more than the {} bytes left", self.left())));
        }
        let out = self.buf[self.pos..self.pos + n].to_vec();
        self.pos += n;
        Ok(out)
    }

    fn text(&mut self, what: &str) -> Result<String> {
        let at = self.pos;
        String::from_utf8(self.bytes(what)?).map_err(|_| bad(format!("{what} at byte {at} is not UTF-8")))
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    write_vlong(out, b.len() as i64);
    out.extend_from_slice(b);
}

impl Credentials {
    pub fn add_token(&mut self, alias: &str, token: TokenProto) {
        self.tokens.retain(|(a, _)| a != alias);
        self.tokens.push((alias.to_string(), token));
    }

    pub fn token(&self, alias: &str) -> Option<&TokenProto> {
        self.tokens.iter().find(|(a, _)| a == alias).map(|(_, t)| t)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.push(WRITABLE_VERSION);
        write_vlong(&mut out, self.tokens.len() as i64);
        for (alias, t) in &self.tokens {
            put_bytes(&mut out, alias.as_bytes());
            put_bytes(&mut out, &t.identifier);
            put_bytes(&mut out, &t.password);
            put_bytes(&mut out, t.kind.as_bytes());
            put_bytes(&mut out, t.service.as_bytes());
        }
        write_vlong(&mut out, self.secrets.len() as i64);
        for (alias, s) in &self.secrets {
            put_bytes(&mut out, alias.as_bytes());
            put_bytes(&mut out, s);
        }
        out
    }

    pub fn from_bytes(buf: &[u8]) -> Result<Credentials> {
        if buf.len() < 5 {
            return Err(bad(format!("{} bytes is too short for a header (HDTS + version)", buf.len())));
        }
        if &buf[..4] != MAGIC {
            return Err(bad(format!("expected magic \"HDTS\", got {:?}", String::from_utf8_lossy(&buf[..4]))));
        }
        if buf[4] != WRITABLE_VERSION {
            return Err(bad(format!("format version {} is not supported (only 0, Writable)", buf[4])));
        }
        let mut r = Reader { buf, pos: 5 };
        let mut creds = Credentials::default();
        // Each token takes at least 5 bytes, each secret at least 2.
        let n = r.length("token count", (r.left() / 5).min(MAX_ENTRIES))?;
        for _ in 0..n {
            let alias = r.text("token alias")?;
            let identifier = r.bytes("token identifier")?;
            let password = r.bytes("token password")?;
            let kind = r.text("token kind")?;
            let service = r.text("token service")?;
            creds.add_token(&alias, TokenProto { identifier, password, kind, service });
        }
        let n = r.length("secret count", (r.left() / 2).min(MAX_ENTRIES))?;
        for _ in 0..n {
            let alias = r.text("secret alias")?;
            let value = r.bytes("secret value")?;
            creds.secrets.retain(|(a, _)| *a != alias);
            creds.secrets.push((alias, value));
        }
        if r.left() != 0 {
            return Err(bad(format!("{} unexpected bytes after the secrets", r.left())));
        }
        Ok(creds)
    }

    pub fn read_file(path: &std::path::Path) -> Result<Credentials> {
        let bytes = std::fs::read(path)?;
        Credentials::from_bytes(&bytes).map_err(|e| bad(format!("{}: {e}", path.display())))
    }

    pub fn write_file(&self, path: &std::path::Path) -> Result<()> {
        std::fs::write(path, self.to_bytes())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(n: u8) -> TokenProto {
        TokenProto {
            identifier: vec![n; 200],
            password: vec![n ^ 0xff; 20],
            kind: "YARN_AM_RM_TOKEN".into(),
            service: format!("127.0.0.1:{}", 8030 + n as u32),
        }
    }

    #[test]
    fn empty_set_is_hdts_0_0_0() {
        assert_eq!(Credentials::default().to_bytes(), b"HDTS\x00\x00\x00");
        assert_eq!(Credentials::from_bytes(b"HDTS\x00\x00\x00").unwrap(), Credentials::default());
    }

    #[test]
    fn round_trips_tokens_and_secrets() {
        let mut c = Credentials::default();
        c.add_token("", token(1));
        c.add_token("10.0.0.1:8030", token(2));
        c.secrets.push(("spark.secret".into(), vec![0; 300]));
        let bytes = c.to_bytes();
        let back = Credentials::from_bytes(&bytes).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.token("10.0.0.1:8030"), Some(&token(2)));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("container_tokens");
        c.write_file(&p).unwrap();
        assert_eq!(Credentials::read_file(&p).unwrap(), c);
    }

    #[test]
    fn known_bytes_for_one_small_token() {
        let mut c = Credentials::default();
        c.add_token("a", TokenProto { identifier: vec![1, 2], password: vec![3], kind: "K".into(), service: "s".into() });
        assert_eq!(c.to_bytes(), b"HDTS\x00\x01\x01a\x02\x01\x02\x01\x03\x01K\x01s\x00");
    }

    #[test]
    fn vlongs_match_writable_utils() {
        let cases: &[(i64, &[u8])] = &[
            (0, b"\x00"),
            (127, b"\x7f"),
            (-112, b"\x90"),
            (128, b"\x8f\x80"),
            (200, b"\x8f\xc8"),
            (300, b"\x8e\x01\x2c"),
            (-113, b"\x87\x70"),
            (-1000, b"\x86\x03\xe7"),
            (i64::MAX, b"\x88\x7f\xff\xff\xff\xff\xff\xff\xff"),
            (i64::MIN, b"\x80\x7f\xff\xff\xff\xff\xff\xff\xff"),
        ];
        for (v, want) in cases {
            let mut out = Vec::new();
            write_vlong(&mut out, *v);
            assert_eq!(out, *want, "encoding {v}");
            let mut r = Reader { buf: want, pos: 0 };
            assert_eq!(r.vlong("x").unwrap(), *v);
        }
    }

    #[test]
    fn malformed_files_are_errors() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "too short"),
            (b"HDTX\x00\x00\x00", "expected magic"),
            (b"HDTS\x01\x00\x00", "format version 1"),
            (b"HDTS\x00", "truncated in token count"),
            (b"HDTS\x00\x00", "truncated in secret count"),
            (b"HDTS\x00\x8c\x7f\xff\xff\xff", "token count"),
            (b"HDTS\x00\x01\x09ab\x00\x00\x00", "length of token alias"),
            (b"HDTS\x00\x01\x05ab", "token count at byte 5 is 1, more than the 0 possible"),
            (b"HDTS\x00\xff", "not a length"),
            (b"HDTS\x00\x01\x01\xff\x00\x00\x00\x00", "token alias at byte 6 is not UTF-8"),
            (b"HDTS\x00\x00\x00\x00", "1 unexpected bytes"),
            (b"HDTS\x00\x00\x8f", "truncated in secret count"),
        ];
        for (input, want) in cases {
            let e = Credentials::from_bytes(input).unwrap_err().to_string();
            assert!(e.contains(want), "{input:?}: {e}");
        }
        // Any truncation of a valid file is an error, never a panic.
        let mut c = Credentials::default();
        c.add_token("x", token(3));
        c.secrets.push(("k".into(), b"v".to_vec()));
        let bytes = c.to_bytes();
        for cut in 0..bytes.len() {
            assert!(Credentials::from_bytes(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
}
