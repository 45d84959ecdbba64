//! Shuffle throughput against map output size: one map output per size,
//! fetched whole (one partition) by a signed request over loopback, as a
//! reducer's Fetcher would; prints MiB/s per size. Run with
//!
//! ```text
//! cargo run --release -p weir-yarn-nm --example shuffle_throughput
//! ```
//!
//! Figures go to docs/BENCHMARKS.md with the machine they came from.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use weir_yarn_api::ids::ApplicationId;
use weir_yarn_nm::layout::Layout;
use weir_yarn_nm::shuffle::index::{write_index, IndexRecord};
use weir_yarn_nm::shuffle::request::{hash, signed_message};
use weir_yarn_nm::shuffle::writable::JobToken;
use weir_yarn_nm::shuffle::ShuffleService;

const APP: ApplicationId = ApplicationId { cluster_timestamp: 1700000000000, id: 1 };

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let tmp = tempfile::tempdir()?;
    let layout = Layout::new(tmp.path().to_path_buf());
    let shuffle = runtime.block_on(ShuffleService::start("127.0.0.1:0".parse()?, layout.clone()))?;
    let secret = b"benchmark job secret";
    let token = JobToken { job_id: "job_1700000000000_0001".into(), password: secret.to_vec(), kind: "mapreduce.job".into() };
    shuffle.register(APP, "bench", &token.to_service_data())?;
    let addr = shuffle.address();
    println!("{:>12} {:>8} {:>12} {:>10}", "map output", "fetches", "MiB/s", "ms/fetch");
    for (n, size) in [64u64 << 10, 1 << 20, 16 << 20, 128 << 20, 512 << 20].into_iter().enumerate() {
        let map = format!("attempt_1700000000000_0001_m_{n:06}_0");
        let dir = layout.map_output_dir("bench", APP, &map)?;
        std::fs::create_dir_all(&dir)?;
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.join("file.out"), &data)?;
        write_index(&dir.join("file.out.index"), &[IndexRecord { start_offset: 0, raw_length: size as i64, part_length: size }])?;
        let target = format!("/mapOutput?job=job_1700000000000_0001&reduce=0&map={map}");
        let url_hash = hash(signed_message(addr.port(), &target).as_bytes(), secret);
        let request = format!(
            "GET {target} HTTP/1.1\r\nHost: {addr}\r\nname: mapreduce\r\nversion: 1.0.0\r\nUrlHash: {url_hash}\r\nConnection: close\r\n\r\n"
        );
        // Repeat until at least a second and 3 fetches have passed (the page
        // cache is warm after the first, as on a node that just wrote it).
        let (mut fetches, mut bytes, start) = (0u32, 0u64, Instant::now());
        let mut buf = vec![0u8; 1 << 20];
        while fetches < 3 || start.elapsed() < Duration::from_secs(1) {
            let mut s = std::net::TcpStream::connect(addr)?;
            s.write_all(request.as_bytes())?;
            loop {
                let n = s.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                bytes += n as u64;
            }
            fetches += 1;
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{:>9} KiB {fetches:>8} {:>12.0} {:>10.2}",
            size >> 10,
            bytes as f64 / secs / f64::from(1 << 20),
            secs * 1000.0 / f64::from(fetches)
        );
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(())
}
