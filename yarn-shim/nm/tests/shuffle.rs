//! The mapreduce_shuffle server over real HTTP, played against as
//! MapReduce's Fetcher plays it: a signed request gets exactly the asked
//! segments behind Hadoop's ShuffleHeaders and a ReplyHash; a wrong or
//! missing hash, another job's key, or another job's map output is refused.

use std::io::{Read, Write};
use std::net::SocketAddr;

use weir_yarn_api::ids::ApplicationId;
use weir_yarn_nm::layout::Layout;
use weir_yarn_nm::shuffle::index::{write_index, IndexRecord};
use weir_yarn_nm::shuffle::request::{hash, signed_message};
use weir_yarn_nm::shuffle::writable::{shuffle_header, JobToken};
use weir_yarn_nm::shuffle::ShuffleService;

const A: ApplicationId = ApplicationId { cluster_timestamp: 1700000000000, id: 1 };
const B: ApplicationId = ApplicationId { cluster_timestamp: 1700000000000, id: 2 };

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A plain HTTP/1.1 GET, as Java's HttpURLConnection sends it.
fn get(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> Reply {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let mut req = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(raw[..end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines.filter_map(|l| l.split_once(": ")).map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
    Reply { status, headers, body: raw[end + 4..].to_vec() }
}

fn job(app: ApplicationId) -> String {
    format!("job_{}_{:04}", app.cluster_timestamp, app.id)
}

fn map(app: ApplicationId, n: u32) -> String {
    format!("attempt_{}_{:04}_m_{n:06}_0", app.cluster_timestamp, app.id)
}

/// Writes a map output with `parts` partitions of distinct bytes; returns
/// each partition's bytes.
fn map_output(layout: &Layout, user: &str, app: ApplicationId, map_id: &str, parts: usize, seed: u8) -> Vec<Vec<u8>> {
    let dir = layout.map_output_dir(user, app, map_id).unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    let partitions: Vec<Vec<u8>> =
        (0..parts).map(|p| (0..(100 + p * 37)).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed).wrapping_add(p as u8)).collect()).collect();
    let mut data = Vec::new();
    let mut records = Vec::new();
    for p in &partitions {
        records.push(IndexRecord { start_offset: data.len() as u64, raw_length: p.len() as i64 * 3, part_length: p.len() as u64 });
        data.extend_from_slice(p);
    }
    std::fs::write(dir.join("file.out"), data).unwrap();
    write_index(&dir.join("file.out.index"), &records).unwrap();
    partitions
}

fn token(app: ApplicationId, secret: &[u8]) -> Vec<u8> {
    JobToken { job_id: job(app), password: secret.to_vec(), kind: "mapreduce.job".into() }.to_service_data()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_requests_get_their_segments_and_the_rest_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = Layout::new(tmp.path().to_path_buf());
    let shuffle = ShuffleService::start("127.0.0.1:0".parse().unwrap(), layout.clone()).await.unwrap();
    let addr = shuffle.address();
    let (secret_a, secret_b) = (b"secret of job A".as_slice(), b"secret of job B".as_slice());
    shuffle.register(A, "alice", &token(A, secret_a)).unwrap();
    shuffle.register(B, "bob", &token(B, secret_b)).unwrap();
    let a0 = map_output(&layout, "alice", A, &map(A, 0), 3, 1);
    let a1 = map_output(&layout, "alice", A, &map(A, 1), 3, 2);
    map_output(&layout, "bob", B, &map(B, 0), 3, 3);

    let version = [("name", "mapreduce"), ("version", "1.0.0")];
    let port = addr.port();
    let signed = |target: &str, secret: &[u8]| hash(signed_message(port, target).as_bytes(), secret);
    let fetch = move |target: String, url_hash: Option<String>| {
        let mut headers: Vec<(&str, &str)> = version.to_vec();
        let h = url_hash.unwrap_or_default();
        if !h.is_empty() {
            headers.push(("UrlHash", &h));
        }
        let h2 = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
        tokio::task::spawn_blocking(move || {
            let hs: Vec<(&str, &str)> = h2.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            get(addr, &target, &hs)
        })
    };

    // A Fetcher's request for reduce 2 of both maps.
    let target = format!("/mapOutput?job={}&reduce=2&map={},{}", job(A), map(A, 0), map(A, 1));
    let url_hash = signed(&target, secret_a);
    let ok = fetch(target.clone(), Some(url_hash.clone())).await.unwrap();
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    assert_eq!(ok.header("ReplyHash"), Some(hash(url_hash.as_bytes(), secret_a).as_str()));
    assert_eq!(ok.header("name"), Some("mapreduce"));
    assert_eq!(ok.header("version"), Some("1.0.0"));
    let mut expected = Vec::new();
    for (id, parts) in [(map(A, 0), &a0), (map(A, 1), &a1)] {
        let part = &parts[2];
        expected.extend(shuffle_header(&id, part.len() as i64, part.len() as i64 * 3, 2));
        expected.extend_from_slice(part);
    }
    assert_eq!(ok.body, expected);

    // A wrong hash, no hash, another job's key: 401, nothing sent.
    let refused = fetch(target.clone(), Some(signed(&target, b"guess"))).await.unwrap();
    assert_eq!((refused.status, refused.body.as_slice()), (401, b"Verification of the hashReply failed".as_slice()));
    let unsigned = fetch(target.clone(), None).await.unwrap();
    assert_eq!((unsigned.status, unsigned.body.as_slice()), (401, b"fetcher cannot be authenticated".as_slice()));
    assert_eq!(fetch(target.clone(), Some(signed(&target, secret_b))).await.unwrap().status, 401);

    // Another job's map output, asked with this job's own valid signature.
    let foreign = format!("/mapOutput?job={}&reduce=0&map={}", job(A), map(B, 0));
    let reply = fetch(foreign.clone(), Some(signed(&foreign, secret_a))).await.unwrap();
    assert_eq!(reply.status, 404);
    assert!(!reply.body.windows(10).any(|w| w == &a0[0][..10]));
    // A path instead of a map id, likewise.
    let escape = format!("/mapOutput?job={}&reduce=0&map=..%2F..%2F..%2Fbob", job(A));
    assert_eq!(fetch(escape.clone(), Some(signed(&escape, secret_a))).await.unwrap().status, 404);

    // Unknown job, missing map output, bad reduce, old protocol.
    let unknown = format!("/mapOutput?job=job_1_0009&reduce=0&map={}", map(A, 0));
    let reply = fetch(unknown.clone(), Some(signed(&unknown, secret_a))).await.unwrap();
    assert_eq!((reply.status, reply.body.as_slice()), (401, b"could not find jobid".as_slice()));
    let missing = format!("/mapOutput?job={}&reduce=0&map={}", job(A), map(A, 7));
    assert_eq!(fetch(missing.clone(), Some(signed(&missing, secret_a))).await.unwrap().status, 500);
    let beyond = format!("/mapOutput?job={}&reduce=3&map={}", job(A), map(A, 0));
    assert_eq!(fetch(beyond.clone(), Some(signed(&beyond, secret_a))).await.unwrap().status, 500);
    let old = tokio::task::spawn_blocking(move || get(addr, "/mapOutput?job=job_1_1&reduce=0&map=x", &[("name", "mapreduce"), ("version", "0.9")]))
        .await
        .unwrap();
    assert_eq!(old.status, 400);

    // After the job is forgotten its key no longer opens anything.
    shuffle.unregister(A);
    assert_eq!(fetch(target.clone(), Some(url_hash)).await.unwrap().status, 401);
}
