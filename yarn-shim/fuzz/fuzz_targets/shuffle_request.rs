//! Arbitrary bytes as a shuffle request: split into method, request
//! target and the name/version/UrlHash headers, then parsed, map ids
//! checked and the hash verified as the shuffle server does; the same bytes
//! also as service data (a job token) and as a map output index. Nothing
//! may panic, and whatever parses must keep the server's bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_yarn_nm::shuffle::index::{read_record, MAX_PARTITIONS};
use weir_yarn_nm::shuffle::request::{self, MAX_MAPS, MAX_URI_BYTES};
use weir_yarn_nm::shuffle::writable::JobToken;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut fields = text.splitn(5, '\n');
    let method = fields.next().unwrap_or_default();
    let target = fields.next().unwrap_or_default();
    let name = fields.next().map(str::as_bytes);
    let version = fields.next().map(str::as_bytes);
    let url_hash = fields.next().map(str::as_bytes);
    for (n, v) in [(name, version), (Some(&b"mapreduce"[..]), Some(&b"1.0.0"[..]))] {
        match request::parse(method, target, n, v) {
            Ok(req) => {
                assert!(target.len() <= MAX_URI_BYTES);
                assert!(req.maps.len() <= MAX_MAPS);
                for map in &req.maps {
                    if request::is_map_attempt_of(map, req.app) {
                        assert!(!map.contains('/') && !map.contains(".."));
                    }
                }
                let message = request::signed_message(13562, target);
                if let Ok(reply) = request::verify(url_hash, &message, b"key") {
                    assert_eq!(reply, request::hash(url_hash.unwrap_or_default(), b"key"));
                }
            }
            Err(refusal) => assert!([400, 401, 405].contains(&refusal.status)),
        }
    }
    if let Ok(token) = JobToken::from_service_data(data) {
        assert_eq!(JobToken::from_service_data(&token.to_service_data()).ok().map(|t| t.password), Some(token.password));
    }
    if data.len() <= (MAX_PARTITIONS as usize) * 24 + 8 {
        let dir = std::env::temp_dir().join(format!("weir-fuzz-shuffle-{}", std::process::id()));
        if std::fs::create_dir_all(&dir).is_ok() {
            let path = dir.join("file.out.index");
            if std::fs::write(&path, data).is_ok() {
                let reduce = data.first().map_or(0, |b| i32::from(*b) - 8);
                if let Ok(record) = read_record(&path, reduce, 1 << 20) {
                    assert!(record.start_offset + record.part_length <= 1 << 20);
                }
            }
        }
    }
});
