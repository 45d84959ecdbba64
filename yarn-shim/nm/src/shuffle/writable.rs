//! The few Hadoop Writable forms the shuffle reads and writes: WritableUtils
//! vints/vlongs, Text (vint length + UTF-8), a `Token<JobTokenIdentifier>`
//! (the service data MapReduce's AM puts in each launch context) and a
//! `ShuffleHeader` (what precedes each map's segment in a reply).
//!
//! Reading is bounded: every length is checked against the bytes left
//! before anything is copied, so hostile service data cannot allocate.

use weir_yarn_ipc::security::credentials::write_vlong;

use crate::error::NmError;

fn malformed(why: String) -> NmError {
    NmError::Malformed { what: "mapreduce_shuffle service data", why }
}

/// A bounded cursor over Writable bytes.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    pub fn at_end(&self) -> bool {
        self.pos == self.buf.len()
    }

    fn byte(&mut self) -> Result<u8, NmError> {
        let b = *self.buf.get(self.pos).ok_or_else(|| malformed(format!("truncated at byte {}", self.pos)))?;
        self.pos += 1;
        Ok(b)
    }

    /// WritableUtils.readVLong.
    pub fn vlong(&mut self) -> Result<i64, NmError> {
        let first = self.byte()? as i8;
        if first >= -112 {
            return Ok(first as i64);
        }
        let negative = first < -120;
        let n = if negative { -120 - first as i32 } else { -112 - first as i32 };
        let mut v: i64 = 0;
        for _ in 0..n {
            v = (v << 8) | self.byte()? as i64;
        }
        Ok(if negative { !v } else { v })
    }

    /// A vint length followed by that many bytes.
    pub fn bytes(&mut self) -> Result<&'a [u8], NmError> {
        let at = self.pos;
        let n = self.vlong()?;
        let left = self.buf.len() - self.pos;
        if n < 0 || n as u64 > left as u64 {
            return Err(malformed(format!("length {n} at byte {at}, with {left} bytes left")));
        }
        let out = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(out)
    }

    pub fn text(&mut self) -> Result<&'a str, NmError> {
        let at = self.pos;
        std::str::from_utf8(self.bytes()?).map_err(|_| malformed(format!("the text at byte {at} is not UTF-8")))
    }
}

/// Text.writeString: vint length, then the UTF-8 bytes.
pub fn write_text(out: &mut Vec<u8>, s: &str) {
    write_vlong(out, s.len() as i64);
    out.extend_from_slice(s.as_bytes());
}

/// Most bytes of service data accepted for the shuffle; a real job token
/// is well under 200.
pub const MAX_SERVICE_DATA: usize = 64 << 10;

/// A MapReduce job token (`Token<JobTokenIdentifier>` as `Token.write`
/// writes it: identifier, password, kind, service).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobToken {
    /// The JobTokenIdentifier's job id (its only field, a Text).
    pub job_id: String,
    /// The HMAC-SHA1 key of the shuffle's URL and reply hashes.
    pub password: Vec<u8>,
    pub kind: String,
}

impl JobToken {
    pub fn from_service_data(data: &[u8]) -> Result<JobToken, NmError> {
        if data.len() > MAX_SERVICE_DATA {
            return Err(malformed(format!("{} bytes, more than {MAX_SERVICE_DATA}", data.len())));
        }
        let mut r = Reader::new(data);
        let identifier = r.bytes()?;
        let password = r.bytes()?.to_vec();
        let kind = r.text()?.to_owned();
        let _service = r.text()?;
        if !r.at_end() {
            return Err(malformed("bytes after the token's service".into()));
        }
        let job_id = Reader::new(identifier).text()?.to_owned();
        if password.is_empty() {
            return Err(malformed("the job token has no password".into()));
        }
        Ok(JobToken { job_id, password, kind })
    }

    /// Token.write, for tests and benchmarks that play MapReduce's AM.
    pub fn to_service_data(&self) -> Vec<u8> {
        let mut identifier = Vec::new();
        write_text(&mut identifier, &self.job_id);
        let mut out = Vec::new();
        write_vlong(&mut out, identifier.len() as i64);
        out.extend_from_slice(&identifier);
        write_vlong(&mut out, self.password.len() as i64);
        out.extend_from_slice(&self.password);
        write_text(&mut out, &self.kind);
        write_text(&mut out, "");
        out
    }
}

/// ShuffleHeader.write: map id (Text), compressed length, uncompressed
/// length (vlongs), reduce (vint).
pub fn shuffle_header(map_id: &str, compressed: i64, uncompressed: i64, reduce: i32) -> Vec<u8> {
    let mut out = Vec::with_capacity(map_id.len() + 24);
    write_text(&mut out, map_id);
    write_vlong(&mut out, compressed);
    write_vlong(&mut out, uncompressed);
    write_vlong(&mut out, reduce as i64);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vlongs_round_trip_at_every_width() {
        for v in [0i64, 1, -1, 127, -112, 128, -113, 255, 256, 65_535, 1 << 40, i64::MAX, i64::MIN, -(1 << 33)] {
            let mut out = Vec::new();
            write_vlong(&mut out, v);
            let mut r = Reader::new(&out);
            assert_eq!(r.vlong().unwrap(), v);
            assert!(r.at_end());
        }
    }

    #[test]
    fn a_job_token_reads_back_and_bad_ones_are_refused() {
        let t = JobToken { job_id: "job_1700_0001".into(), password: vec![7; 20], kind: "mapreduce.job".into() };
        let data = t.to_service_data();
        assert_eq!(JobToken::from_service_data(&data).unwrap(), t);
        for cut in 0..data.len() {
            assert!(JobToken::from_service_data(&data[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = data.clone();
        long.push(0);
        assert!(JobToken::from_service_data(&long).is_err());
        // A length far beyond the data is refused, not allocated.
        assert!(JobToken::from_service_data(&[0x8c, 0x7f, 0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn the_shuffle_header_is_hadoops() {
        // Text "m" (len 1), vlong 300 (-114 then 0x01 0x2c), vlong 5, vint 2.
        assert_eq!(shuffle_header("m", 300, 5, 2), [1, b'm', 0x8e, 0x01, 0x2c, 5, 2]);
    }
}
