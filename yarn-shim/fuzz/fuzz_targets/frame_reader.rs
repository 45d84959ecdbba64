//! Arbitrary bytes through the async frame reader (`read_frame_into`):
//! frames are read until the input ends or an error; nothing may panic,
//! a frame read whole has exactly its declared length, and the buffer
//! stays within a small multiple of what arrived plus a few KiB, whatever
//! the declared length (issue 24: memory follows bytes, not declarations).
#![no_main]

use std::future::Future;
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use weir_yarn_ipc::frame::read_frame_into;

fuzz_target!(|data: &[u8]| {
    // An in-memory reader never waits, so each read finishes in one poll.
    let mut reader: &[u8] = data;
    let mut body = Vec::new();
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..64 {
        let before = reader.len();
        let result = {
            let mut read = std::pin::pin!(read_frame_into(&mut reader, 128 << 20, &mut body));
            let Poll::Ready(result) = read.as_mut().poll(&mut cx) else { panic!("an in-memory read waited") };
            result
        };
        let consumed = before - reader.len();
        assert!(body.capacity() <= 4 * consumed + 8192, "{} reserved for {consumed} read", body.capacity());
        match result {
            Ok(true) => assert_eq!(body.len() + 4, consumed),
            Ok(false) | Err(_) => break,
        }
    }
});
