//! A shuffle request as Hadoop 3.2's ShuffleHandler reads it, as a pure
//! function of the request line and headers (so it can be fuzzed):
//!
//! `GET /mapOutput?job=job_<ts>_<id>&reduce=<n>&map=<attempt>[,<attempt>…]`
//! with headers `name: mapreduce`, `version: 1.0.0` and `UrlHash`, the
//! base64 HMAC-SHA1 of `<port><path>?<query>` keyed with the job token's
//! password (`SecureShuffleUtils.buildMsgFrom`). The reply carries
//! `ReplyHash`, the same HMAC of the UrlHash header's text.
//!
//! Refusals carry ShuffleHandler's status and message: 405 for a method
//! other than GET, 400 for a wrong name/version or missing, repeated or
//! unparsable job/reduce parameters, 401 when the job is unknown or the
//! hash is missing or wrong. Invariant: nothing here touches the disk, and
//! every input is bounded (the request line by [`MAX_URI_BYTES`], the maps
//! by [`MAX_MAPS`]).

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use weir_yarn_api::ids::ApplicationId;

pub const HEADER_NAME: &str = "name";
pub const HEADER_VERSION: &str = "version";
pub const DEFAULT_NAME: &str = "mapreduce";
pub const DEFAULT_VERSION: &str = "1.0.0";
pub const HEADER_URL_HASH: &str = "UrlHash";
pub const HEADER_REPLY_HASH: &str = "ReplyHash";

/// Netty's HttpRequestDecoder refuses request lines over 4096 bytes; we
/// allow a little more, since the path and query are what a Fetcher sends.
pub const MAX_URI_BYTES: usize = 8192;
/// Most map outputs one request may name.
pub const MAX_MAPS: usize = 4096;

/// Why a request is turned away: the HTTP status and the message
/// ShuffleHandler puts in the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
}

fn refuse(status: u16, message: impl Into<String>) -> Refusal {
    Refusal { status, message: message.into() }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShuffleRequest {
    /// The job id as sent (`job_<ts>_<id>`).
    pub job: String,
    /// The application the job is (MapReduce's job id is its app id).
    pub app: ApplicationId,
    pub reduce: i32,
    /// Map attempt ids, in the order asked; not yet checked against the job.
    pub maps: Vec<String>,
    pub keep_alive: bool,
}

/// `JobID.forName`: `job_<jt identifier>_<id>`, three parts.
pub fn parse_job_id(job: &str) -> Option<ApplicationId> {
    let mut parts = job.split('_');
    let (Some("job"), Some(ts), Some(id), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    let digits = |t: &str| !t.is_empty() && t.len() <= 19 && t.bytes().all(|b| b.is_ascii_digit());
    if !digits(ts) || !digits(id) {
        return None;
    }
    Some(ApplicationId { cluster_timestamp: ts.parse().ok()?, id: id.parse().ok()? })
}

/// Whether `map` names a map attempt of `app`'s job:
/// `attempt_<ts>_<id>_m_<task>_<attempt>`. Anything else (another job's
/// attempt, a reduce, a path) cannot be one of this job's map outputs.
pub fn is_map_attempt_of(map: &str, app: ApplicationId) -> bool {
    let parts: Vec<&str> = map.split('_').collect();
    let digits = |t: &str| !t.is_empty() && t.len() <= 19 && t.bytes().all(|b| b.is_ascii_digit());
    let [attempt, ts, id, kind, task, n] = parts[..] else { return false };
    attempt == "attempt"
        && digits(ts)
        && digits(id)
        && kind == "m"
        && digits(task)
        && digits(n)
        && ts.parse::<i64>().ok() == Some(app.cluster_timestamp)
        && id.parse::<i32>().ok() == Some(app.id)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Netty's QueryStringDecoder component decoding: `+` is a space, `%XX` a
/// byte; a bad escape is a refusal (Netty throws IllegalArgumentException).
fn decode_component(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = hex(*b.get(i + 1)?)?;
                let lo = hex(*b.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The query's parameters, in order; names and values decoded.
fn parameters(query: &str) -> Option<Vec<(String, String)>> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Some((decode_component(k)?, decode_component(v)?))
        })
        .collect()
}

/// Reads a request: the method, the request target (path and query, as
/// sent) and the `name`/`version` headers.
pub fn parse(method: &str, target: &str, name: Option<&[u8]>, version: Option<&[u8]>) -> Result<ShuffleRequest, Refusal> {
    if method != "GET" {
        return Err(refuse(405, ""));
    }
    if name != Some(DEFAULT_NAME.as_bytes()) || version != Some(DEFAULT_VERSION.as_bytes()) {
        return Err(refuse(400, "Incompatible shuffle request version"));
    }
    if target.len() > MAX_URI_BYTES {
        return Err(refuse(400, format!("Request of {} bytes, more than {MAX_URI_BYTES}", target.len())));
    }
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let params = parameters(query).ok_or_else(|| refuse(400, "Bad query string"))?;
    let values = |name: &str| params.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect::<Vec<_>>();
    let (map_q, reduce_q, job_q) = (values("map"), values("reduce"), values("job"));
    if map_q.is_empty() || reduce_q.is_empty() || job_q.is_empty() {
        return Err(refuse(400, "Required param job, map and reduce"));
    }
    if reduce_q.len() != 1 || job_q.len() != 1 {
        return Err(refuse(400, "Too many job/reduce parameters"));
    }
    let reduce: i32 = reduce_q[0].parse().map_err(|_| refuse(400, "Bad reduce parameter"))?;
    let job = job_q[0].to_owned();
    let app = parse_job_id(&job).ok_or_else(|| refuse(400, "Bad job parameter"))?;
    // ShuffleHandler.splitMaps: every map= value, split at commas.
    let maps: Vec<String> = map_q.iter().flat_map(|m| m.split(',')).map(str::to_owned).collect();
    if maps.len() > MAX_MAPS {
        return Err(refuse(400, format!("{} maps asked for, more than {MAX_MAPS}", maps.len())));
    }
    let keep_alive = values("keepAlive").as_slice() == ["true"];
    Ok(ShuffleRequest { job, app, reduce, maps, keep_alive })
}

/// What the Fetcher signs: `SecureShuffleUtils.buildMsgFrom(url)`. Java's
/// `URL.getQuery()` is null without a `?`, which prints as "null".
pub fn signed_message(port: u16, target: &str) -> String {
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, q),
        None => (target, "null"),
    };
    format!("{port}{path}?{query}")
}

fn mac(key: &[u8]) -> Hmac<Sha1> {
    // HMAC takes keys of any length; this cannot fail.
    <Hmac<Sha1> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts every key length"))
}

/// `SecureShuffleUtils.generateHash`: base64 of HMAC-SHA1(key, message).
pub fn hash(message: &[u8], key: &[u8]) -> String {
    let mut m = mac(key);
    m.update(message);
    base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes())
}

/// `ShuffleHandler.verifyRequest` after the key is found: checks the
/// UrlHash header (in constant time) and returns the ReplyHash.
pub fn verify(url_hash: Option<&[u8]>, message: &str, key: &[u8]) -> Result<String, Refusal> {
    let url_hash = url_hash.ok_or_else(|| refuse(401, "fetcher cannot be authenticated"))?;
    let failed = || refuse(401, "Verification of the hashReply failed");
    // Commons Codec's decoder skips what is not base64; ours refuses it,
    // which a Fetcher's own (well-formed) hash never hits.
    let given = base64::engine::general_purpose::STANDARD.decode(url_hash).map_err(|_| failed())?;
    let mut m = mac(key);
    m.update(message.as_bytes());
    m.verify_slice(&given).map_err(|_| failed())?;
    Ok(hash(url_hash, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: ApplicationId = ApplicationId { cluster_timestamp: 1700000000000, id: 3 };

    fn ok(target: &str) -> Result<ShuffleRequest, Refusal> {
        parse("GET", target, Some(b"mapreduce"), Some(b"1.0.0"))
    }

    #[test]
    fn a_fetchers_request_parses() {
        let r = ok("/mapOutput?job=job_1700000000000_0003&reduce=1&map=attempt_1700000000000_0003_m_000000_0,attempt_1700000000000_0003_m_000001_0&keepAlive=true").unwrap();
        assert_eq!(r.app, APP);
        assert_eq!(r.reduce, 1);
        assert_eq!(r.maps, ["attempt_1700000000000_0003_m_000000_0", "attempt_1700000000000_0003_m_000001_0"]);
        assert!(r.keep_alive);
        assert!(r.maps.iter().all(|m| is_map_attempt_of(m, APP)));
    }

    #[test]
    fn bad_requests_get_shufflehandlers_statuses() {
        let status = |r: Result<ShuffleRequest, Refusal>| r.unwrap_err().status;
        assert_eq!(status(parse("POST", "/mapOutput", Some(b"mapreduce"), Some(b"1.0.0"))), 405);
        assert_eq!(status(parse("GET", "/mapOutput?job=job_1_1&reduce=0&map=a", None, Some(b"1.0.0"))), 400);
        assert_eq!(status(parse("GET", "/mapOutput?job=job_1_1&reduce=0&map=a", Some(b"mapreduce"), Some(b"2.0"))), 400);
        let message = |t: &str| ok(t).unwrap_err().message;
        assert_eq!(message("/mapOutput?job=job_1_1&reduce=0"), "Required param job, map and reduce");
        assert_eq!(message("/mapOutput?job=job_1_1&reduce=0&reduce=1&map=a"), "Too many job/reduce parameters");
        assert_eq!(message("/mapOutput?job=job_1_1&reduce=x&map=a"), "Bad reduce parameter");
        assert_eq!(message("/mapOutput?job=job_1_1_1&reduce=0&map=a"), "Bad job parameter");
        assert_eq!(message("/mapOutput?job=job_1_1&reduce=0&map=%zz"), "Bad query string");
        assert_eq!(status(ok(&format!("/mapOutput?job=job_1_1&reduce=0&map={}", "a".repeat(MAX_URI_BYTES)))), 400);
    }

    #[test]
    fn only_this_jobs_map_attempts_name_map_outputs() {
        assert!(!is_map_attempt_of("attempt_1700000000000_0004_m_000000_0", APP));
        assert!(!is_map_attempt_of("attempt_1700000000000_0003_r_000000_0", APP));
        assert!(!is_map_attempt_of("../../other/output", APP));
        assert!(!is_map_attempt_of("attempt_1700000000000_0003_m_000000_0/../x", APP));
    }

    #[test]
    fn the_url_hash_is_checked_and_answered() {
        let key = b"job-secret";
        let target = "/mapOutput?job=job_1700000000000_0003&reduce=0&map=attempt_1700000000000_0003_m_000000_0";
        let message = signed_message(13562, target);
        assert_eq!(message, format!("13562{target}"));
        let url_hash = hash(message.as_bytes(), key);
        let reply = verify(Some(url_hash.as_bytes()), &message, key).unwrap();
        assert_eq!(reply, hash(url_hash.as_bytes(), key));
        assert_eq!(verify(None, &message, key).unwrap_err().status, 401);
        let other = hash(message.as_bytes(), b"another job's secret");
        assert_eq!(verify(Some(other.as_bytes()), &message, key).unwrap_err().status, 401);
        // Signed for another port (another node's shuffle) is not signed for us.
        let elsewhere = hash(signed_message(13563, target).as_bytes(), key);
        assert_eq!(verify(Some(elsewhere.as_bytes()), &message, key).unwrap_err().status, 401);
        assert_eq!(verify(Some(b"not base64!"), &message, key).unwrap_err().status, 401);
    }
}
