//! A TCP listener that admits connections within its caps and backs off on
//! accept errors.
//!
//! A connection over a cap is accepted and closed at once (the peer sees
//! the connection closed before any reply), which keeps the kernel's
//! backlog draining; refusals are logged at most once per
//! [`REFUSAL_LOG_EVERY`] with their count. An accept error (EMFILE, ENFILE,
//! ENOBUFS) waits from [`ACCEPT_BACKOFF_MIN`] doubling to
//! [`ACCEPT_BACKOFF_MAX`]: the first error of a run is a warning, the
//! rest are counted and reported when accepting works again.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn};

use crate::admission::{Admission, ConnectionLimits, Permit};

pub const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
pub const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

pub struct AdmittingListener {
    listener: TcpListener,
    admission: Admission,
    /// Names the port in logs ("broker", "yarn client", …).
    name: &'static str,
    refused_since_log: u64,
    last_refusal_log: Option<Instant>,
}

impl AdmittingListener {
    pub fn new(listener: TcpListener, limits: ConnectionLimits, name: &'static str) -> AdmittingListener {
        AdmittingListener {
            listener,
            admission: Admission::new(limits),
            name,
            refused_since_log: 0,
            last_refusal_log: None,
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn admission(&self) -> &Admission {
        &self.admission
    }

    /// The next connection within the caps. Never fails: errors are waited
    /// out with back-off.
    pub async fn accept(&mut self) -> (Admitted<TcpStream>, SocketAddr) {
        let mut backoff = ACCEPT_BACKOFF_MIN;
        let mut failures: u64 = 0;
        loop {
            match self.listener.accept().await {
                Ok((stream, peer)) => {
                    if failures > 0 {
                        info!(listener = self.name, failures, "accepting again after accept errors");
                        failures = 0;
                        backoff = ACCEPT_BACKOFF_MIN;
                    }
                    match self.admission.try_admit(peer.ip()) {
                        Ok(permit) => return (Admitted { stream, _permit: permit }, peer),
                        Err(refusal) => {
                            // Dropped unread: the peer sees the connection closed.
                            drop(stream);
                            self.refused_since_log += 1;
                            let due = self.last_refusal_log.is_none_or(|t| t.elapsed() >= REFUSAL_LOG_EVERY);
                            if due {
                                warn!(listener = self.name, %peer, reason = %refusal, refused = self.refused_since_log, "closing connections over the limit");
                                self.refused_since_log = 0;
                                self.last_refusal_log = Some(Instant::now());
                            }
                        }
                    }
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 {
                        warn!(listener = self.name, error = %e, "accept failed; backing off until it works again");
                    } else {
                        debug!(listener = self.name, error = %e, failures, "accept failed again");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                }
            }
        }
    }
}

/// An admitted stream: counts against its listener's caps until dropped.
#[derive(Debug)]
pub struct Admitted<S> {
    stream: S,
    _permit: Permit,
}

impl<S> Admitted<S> {
    pub fn get_ref(&self) -> &S {
        &self.stream
    }
}

impl Admitted<TcpStream> {
    /// Splits the stream; the permit travels with the read half, which
    /// lives as long as the connection is served.
    pub fn into_split(self) -> (Admitted<tokio::net::tcp::OwnedReadHalf>, tokio::net::tcp::OwnedWriteHalf) {
        let (rd, wr) = self.stream.into_split();
        (Admitted { stream: rd, _permit: self._permit }, wr)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Admitted<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Admitted<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn connections_over_the_cap_are_closed_and_places_come_back() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let mut l = AdmittingListener::new(l, ConnectionLimits { max_connections: 2, max_per_peer: 2 }, "test");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let server = tokio::spawn(async move {
            loop {
                let (s, _) = l.accept().await;
                if tx.send(s).is_err() {
                    break;
                }
            }
        });
        let wait = Duration::from_secs(5);
        let _c1 = TcpStream::connect(addr).await.unwrap();
        let _c2 = TcpStream::connect(addr).await.unwrap();
        let s1 = tokio::time::timeout(wait, rx.recv()).await.unwrap().unwrap();
        let _s2 = tokio::time::timeout(wait, rx.recv()).await.unwrap().unwrap();
        // The third is over the cap: closed without a byte.
        let mut c3 = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(wait, c3.read(&mut buf)).await.unwrap().unwrap_or(0);
        assert_eq!(n, 0);
        assert!(rx.try_recv().is_err());
        // The server dropping one admitted stream makes room for the next.
        drop(s1);
        let _c4 = TcpStream::connect(addr).await.unwrap();
        assert!(tokio::time::timeout(wait, rx.recv()).await.unwrap().is_some());
        server.abort();
    }
}
