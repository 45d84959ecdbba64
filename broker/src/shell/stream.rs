//! The outbound half of a gRPC stream (agent or framework) with flow
//! control and a bound.
//!
//! The core answers a call with all its outputs at once: a RECONCILE of
//! 20,000 tasks is 20,000 updates in one go, more than any fixed channel
//! should hold. So outputs queue without blocking the core, and the
//! response stream takes them out only as fast as HTTP/2 flow control lets
//! tonic send them; a reader that never reads is cut off once `max` items
//! wait (RESOURCE_EXHAUSTED), so memory stays bounded.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::Status;

pub(super) type OutStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

pub(super) struct StreamSender<T> {
    tx: mpsc::UnboundedSender<Result<T, Status>>,
    queued: Arc<AtomicUsize>,
    max: usize,
}

/// Why an item was not queued.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refused {
    /// `max` items already wait for the reader.
    Full,
    /// The reader is gone.
    Gone,
}

impl<T: Send + 'static> StreamSender<T> {
    /// A sender and the response stream it feeds; at most `max` (≥ 1)
    /// items wait at a time.
    pub(super) fn new(max: usize) -> (StreamSender<T>, OutStream<T>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let taken = queued.clone();
        let stream = UnboundedReceiverStream::new(rx).map(move |item| {
            taken.fetch_sub(1, Ordering::Relaxed);
            item
        });
        (StreamSender { tx, queued, max: max.max(1) }, Box::pin(stream))
    }

    pub(super) fn try_send(&self, item: T) -> Result<(), Refused> {
        if self.queued.load(Ordering::Relaxed) >= self.max {
            return Err(Refused::Full);
        }
        self.queued.fetch_add(1, Ordering::Relaxed);
        self.tx.send(Ok(item)).map_err(|_| Refused::Gone)
    }

    /// Ends the stream with `status` after what is queued, whatever the bound.
    pub(super) fn close_with(&self, status: Status) {
        self.queued.fetch_add(1, Ordering::Relaxed);
        let _ = self.tx.send(Err(status));
    }

    /// Items waiting for the reader.
    #[cfg(test)]
    pub(super) fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn items_wait_up_to_the_bound_and_reading_makes_room() {
        let (tx, mut rx) = StreamSender::<u32>::new(3);
        for i in 0..3 {
            tx.try_send(i).unwrap();
        }
        assert_eq!(tx.try_send(3), Err(Refused::Full));
        assert_eq!(rx.next().await.unwrap().unwrap(), 0);
        tx.try_send(3).unwrap();
        tx.close_with(Status::resource_exhausted("done"));
        let rest: Vec<_> = rx.take(4).collect().await;
        assert_eq!(rest.iter().filter_map(|r| r.as_ref().ok().copied()).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(rest[3].as_ref().unwrap_err().code(), tonic::Code::ResourceExhausted);
        assert_eq!(tx.queued(), 0);
    }

    #[tokio::test]
    async fn a_gone_reader_refuses() {
        let (tx, rx) = StreamSender::<u32>::new(3);
        drop(rx);
        assert_eq!(tx.try_send(1), Err(Refused::Gone));
    }
}
