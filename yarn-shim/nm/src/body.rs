//! HTTP bodies made of file ranges, read in chunks as the client takes
//! them, so a large map output or log never sits in memory whole. Used by
//! the shuffle (a header before each map's segment) and the container log
//! pages. A read error ends the body short; hyper then drops the connection
//! rather than send a body shorter than its Content-Length as if complete.

use std::path::PathBuf;

use axum::body::Body;
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// Bytes read per chunk.
const CHUNK: u64 = 256 << 10;

pub enum Source {
    /// Already open (and checked through this very descriptor).
    File(std::fs::File),
    /// Opened when its turn comes, so a reply naming many files holds one
    /// descriptor at a time; refused unless it is a regular file of this
    /// uid ([`crate::identity::open_owned`]).
    Owned(PathBuf, u32),
    /// No file: the segment is its prefix alone (a trailer).
    Nothing,
}

/// `prefix`, then `length` bytes of `source` from `offset`.
pub struct Segment {
    pub prefix: Bytes,
    pub source: Source,
    pub offset: u64,
    pub length: u64,
}

async fn open(source: Source, offset: u64) -> std::io::Result<tokio::fs::File> {
    let mut file = match source {
        Source::File(f) => tokio::fs::File::from_std(f),
        Source::Owned(p, owner) => {
            let opened = tokio::task::spawn_blocking(move || crate::identity::open_owned(&p, owner)).await;
            tokio::fs::File::from_std(opened.map_err(std::io::Error::other)??)
        }
        Source::Nothing => unreachable!("segments() never opens Nothing"),
    };
    file.seek(std::io::SeekFrom::Start(offset)).await?;
    Ok(file)
}

pub fn segments(segments: Vec<Segment>) -> Body {
    type State = (std::vec::IntoIter<Segment>, Option<(tokio::fs::File, u64)>);
    let start: State = (segments.into_iter(), None);
    Body::from_stream(futures::stream::unfold(start, |(mut rest, mut open_file)| async move {
        loop {
            if let Some((file, left)) = open_file.as_mut() {
                if *left == 0 {
                    open_file = None;
                    continue;
                }
                let mut buf = vec![0u8; (*left).min(CHUNK) as usize];
                return match file.read_exact(&mut buf).await {
                    Ok(_) => {
                        *left -= buf.len() as u64;
                        Some((Ok::<_, std::io::Error>(Bytes::from(buf)), (rest, open_file)))
                    }
                    Err(e) => Some((Err(e), (rest, None))),
                };
            }
            let segment = rest.next()?;
            if matches!(segment.source, Source::Nothing) {
                return Some((Ok(segment.prefix), (rest, None)));
            }
            return match open(segment.source, segment.offset).await {
                Ok(f) => Some((Ok(segment.prefix), (rest, Some((f, segment.length))))),
                Err(e) => Some((Err(e), (rest, None))),
            };
        }
    }))
}
