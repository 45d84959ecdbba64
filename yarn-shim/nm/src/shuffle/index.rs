//! A map task's `file.out.index` (Hadoop's SpillRecord): for each reduce
//! partition three big-endian longs — start offset in `file.out`, raw
//! (uncompressed) length, part (on-disk) length — then one big-endian long,
//! the CRC32 of all the records. Invariant: a record is returned only if the
//! checksum matches and its segment lies inside `file.out`.

use std::io::Read;
use std::path::Path;

use crate::error::NmError;

/// Bytes per partition (Hadoop's MAP_OUTPUT_INDEX_RECORD_LENGTH).
pub const RECORD_BYTES: u64 = 24;
/// Most partitions an index may describe (a job's reduces; Hadoop allows
/// far fewer in practice): bounds what one index read allocates.
pub const MAX_PARTITIONS: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexRecord {
    pub start_offset: u64,
    pub raw_length: i64,
    pub part_length: u64,
}

fn malformed(path: &Path, why: String) -> NmError {
    NmError::Malformed { what: "map output index", why: format!("{}: {why}", path.display()) }
}

fn long(b: &[u8]) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    i64::from_be_bytes(a)
}

/// Reads partition `reduce` of the index at `index`, checking it against
/// `data_len`, the length of `file.out`.
pub fn read_record(index: &Path, reduce: i32, data_len: u64) -> Result<IndexRecord, NmError> {
    let file = std::fs::File::open(index).map_err(|e| NmError::io("open", index, e))?;
    read_record_from(file, index, reduce, data_len)
}

/// [`read_record`] from the index already open as `file` (named `index`).
pub fn read_record_from(mut file: std::fs::File, index: &Path, reduce: i32, data_len: u64) -> Result<IndexRecord, NmError> {
    let len = file.metadata().map_err(|e| NmError::io("read the size of", index, e))?.len();
    let partitions = len / RECORD_BYTES;
    if partitions > MAX_PARTITIONS {
        return Err(malformed(index, format!("{partitions} partitions, more than {MAX_PARTITIONS}")));
    }
    let records = partitions * RECORD_BYTES;
    if len != records + 8 {
        return Err(malformed(index, format!("{len} bytes is not a whole number of records and a checksum")));
    }
    let mut buf = vec![0u8; len as usize];
    file.read_exact(&mut buf).map_err(|e| NmError::io("read", index, e))?;
    let (body, sum) = buf.split_at(records as usize);
    if crc32fast::hash(body) as i64 != long(sum) {
        return Err(malformed(index, "checksum error".into()));
    }
    let r = u64::try_from(reduce).ok().filter(|&r| r < partitions).ok_or_else(|| {
        malformed(index, format!("reduce {reduce} is not one of its {partitions} partitions"))
    })?;
    let at = (r * RECORD_BYTES) as usize;
    let (start, raw, part) = (long(&body[at..]), long(&body[at + 8..]), long(&body[at + 16..]));
    let (Ok(start_offset), Ok(part_length)) = (u64::try_from(start), u64::try_from(part)) else {
        return Err(malformed(index, format!("partition {reduce} has a negative offset or length")));
    };
    if start_offset.checked_add(part_length).is_none_or(|end| end > data_len) {
        return Err(malformed(index, format!("partition {reduce} ({start_offset}+{part_length}) runs past file.out ({data_len} bytes)")));
    }
    Ok(IndexRecord { start_offset, raw_length: raw, part_length })
}

/// Writes an index as MapReduce's SpillRecord.writeToFile does (for
/// tests and benchmarks that play a map task).
pub fn write_index(path: &Path, records: &[IndexRecord]) -> std::io::Result<()> {
    let mut body = Vec::with_capacity(records.len() * RECORD_BYTES as usize + 8);
    for r in records {
        body.extend_from_slice(&(r.start_offset as i64).to_be_bytes());
        body.extend_from_slice(&r.raw_length.to_be_bytes());
        body.extend_from_slice(&(r.part_length as i64).to_be_bytes());
    }
    let sum = crc32fast::hash(&body) as i64;
    body.extend_from_slice(&sum.to_be_bytes());
    std::fs::write(path, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_back_and_damaged_indexes_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("file.out.index");
        let records = [
            IndexRecord { start_offset: 0, raw_length: 12, part_length: 10 },
            IndexRecord { start_offset: 10, raw_length: 40, part_length: 30 },
        ];
        write_index(&path, &records).unwrap();
        assert_eq!(read_record(&path, 1, 40).unwrap(), records[1]);
        assert!(read_record(&path, 2, 40).is_err());
        assert!(read_record(&path, -1, 40).is_err());
        // The segment must lie inside file.out.
        assert!(read_record(&path, 1, 39).is_err());
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[5] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(read_record(&path, 0, 40).unwrap_err().to_string().contains("checksum"));
        std::fs::write(&path, &bytes[..30]).unwrap();
        assert!(read_record(&path, 0, 40).is_err());
    }
}
