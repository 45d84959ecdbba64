//! How long a volume's first sync, a no-op sync, a one-file change and a
//! restore take against a backing (a documented command, not a test):
//!
//! ```sh
//! cargo run --release -p weir-hdfs-volumes --example sync_throughput -- hdfs://127.0.0.1:9000/weir-bench 64 16
//! ```
//!
//! Arguments: a backing base URI (a fresh directory under it is used and
//! deleted), MiB per file, number of files. Prints one line per step.

use std::time::Instant;

use weir_hdfs_volumes::backing::{Backing, LocalState};
use weir_hdfs_volumes::{open, StoreSettings};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(base), Some(mib), Some(files)) = (args.get(1), args.get(2), args.get(3)) else {
        eprintln!("usage: sync_throughput BACKING_BASE_URI MIB_PER_FILE FILES");
        std::process::exit(2);
    };
    let (mib, files): (usize, usize) = (mib.parse()?, files.parse()?);
    let settings = StoreSettings { hadoop_conf_dir: std::env::var("HADOOP_CONF_DIR").ok(), ..StoreSettings::default() };
    let uri = format!("{}/sync-{}", base.trim_end_matches('/'), uuid::Uuid::new_v4());
    let store = open(&uri, &settings)?;
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("volume");
    std::fs::create_dir_all(&dir)?;
    for i in 0..files {
        let bytes: Vec<u8> = (0..mib << 20).map(|b| (b as u32).wrapping_mul(2_654_435_761).wrapping_add(i as u32) as u8).collect();
        std::fs::write(dir.join(format!("f{i}")), bytes)?;
    }
    let backing = Backing::attach(store.clone(), "bench").await?;
    let total = (mib * files) as f64;
    let started = Instant::now();
    let (report, state) = backing.sync(&dir, &LocalState::default(), "bench").await?;
    let secs = started.elapsed().as_secs_f64();
    println!("first sync: {files} files, {total} MiB in {secs:.2} s ({:.1} MiB/s), generation {}", total / secs, report.generation);
    let started = Instant::now();
    let (report, state) = backing.sync(&dir, &state, "bench").await?;
    println!("no-op sync: {} files copied in {:.2} s", report.files_copied, started.elapsed().as_secs_f64());
    std::fs::write(dir.join("f0"), b"changed")?;
    let started = Instant::now();
    let (report, _) = backing.sync(&dir, &state, "bench").await?;
    println!("one file changed: {} copied ({} bytes) in {:.2} s", report.files_copied, report.bytes_copied, started.elapsed().as_secs_f64());
    let started = Instant::now();
    let (report, _) = backing.restore(&tmp.path().join("restored"), "bench-2").await?;
    let secs = started.elapsed().as_secs_f64();
    println!("restore: {} files, {:.1} MiB in {secs:.2} s ({:.1} MiB/s)", report.files_total, report.bytes_total as f64 / (1 << 20) as f64, report.bytes_total as f64 / (1 << 20) as f64 / secs);
    for entry in store.list("").await? {
        store.delete(&entry.name).await?;
    }
    Ok(())
}
