//! Serves an axum router (HTTP/1 and HTTP/2, so gRPC too) from an
//! [`AdmittingListener`], with the timeouts `axum::serve` does not offer:
//! a request head must arrive within `header_read_timeout` (a client
//! trickling one header line a second is cut off), a handler must answer
//! within `request_timeout` (503 otherwise; a streaming response counts
//! as answered once its head is sent), and an HTTP/2 peer that stops
//! answering pings is dropped.
//!
//! Each request carries `axum::extract::ConnectInfo<SocketAddr>`, and over
//! TLS with a verified client certificate a `tls::ClientCertificate`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tracing::debug;

use crate::admission::ConnectionLimits;
use crate::listener::AdmittingListener;

/// How often an HTTP/2 connection is pinged, and how long an answer may take.
const HTTP2_KEEPALIVE: Duration = Duration::from_secs(30);
const HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    pub connections: ConnectionLimits,
    pub header_read_timeout: Duration,
    pub request_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            connections: ConnectionLimits::DEFAULT,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Serves until `shutdown` resolves, then lets open connections finish
/// (HTTP/2 peers get GOAWAY) and returns.
pub async fn serve<F>(listener: AdmittingListener, router: axum::Router, limits: HttpLimits, shutdown: F) -> io::Result<()>
where
    F: Future<Output = ()> + Send,
{
    serve_tls(listener, router, limits, None, shutdown).await
}

/// Like [`serve`], over TLS when `tls` is given (feature `tls`): the
/// handshake must finish within the header-read timeout.
pub async fn serve_tls<F>(
    mut listener: AdmittingListener,
    router: axum::Router,
    limits: HttpLimits,
    tls: Option<Tls>,
    shutdown: F,
) -> io::Result<()>
where
    F: Future<Output = ()> + Send,
{
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(HTTP2_KEEPALIVE)
        .keep_alive_timeout(HTTP2_KEEPALIVE_TIMEOUT);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            (io, peer) = listener.accept() => {
                let router = router.clone();
                let timeout = limits.request_timeout;
                match &tls {
                    None => {
                        let service = hyper::service::service_fn(move |req: Request<Incoming>| answer(router.clone(), peer, None, timeout, req));
                        let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service).into_owned();
                        let conn = graceful.watch(conn);
                        tokio::spawn(async move {
                            if let Err(e) = conn.await {
                                debug!(%peer, error = %e, "HTTP connection ended with an error");
                            }
                        });
                    }
                    #[cfg(feature = "tls")]
                    Some(tls) => {
                        let acceptor = tls.0.clone();
                        let builder = builder.clone();
                        let watcher = graceful.watcher();
                        let handshake_timeout = limits.header_read_timeout;
                        tokio::spawn(async move {
                            let Some(stream) = tls_handshake(io, peer, &acceptor, handshake_timeout).await else { return };
                            // A client certificate the handshake verified
                            // goes with every request of the connection.
                            let client = stream.get_ref().1.peer_certificates().and_then(|chain| chain.first()).map(|leaf| {
                                crate::tls::ClientCertificate { principal: crate::tls::certificate_principal(leaf) }
                            });
                            let service = hyper::service::service_fn(move |req: Request<Incoming>| answer(router.clone(), peer, client.clone(), timeout, req));
                            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
                            if let Err(e) = watcher.watch(conn).await {
                                debug!(%peer, error = %e, "HTTPS connection ended with an error");
                            }
                        });
                    }
                    #[cfg(not(feature = "tls"))]
                    Some(never) => match never.0 {},
                }
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

#[cfg(feature = "tls")]
type ClientCert = crate::tls::ClientCertificate;
#[cfg(not(feature = "tls"))]
type ClientCert = std::convert::Infallible;

/// A TLS acceptor for [`serve_tls`].
#[derive(Clone)]
pub struct Tls(#[cfg(feature = "tls")] tokio_rustls::TlsAcceptor, #[cfg(not(feature = "tls"))] std::convert::Infallible);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls(..)")
    }
}

#[cfg(feature = "tls")]
impl Tls {
    pub fn new(config: std::sync::Arc<rustls::ServerConfig>) -> Tls {
        Tls(tokio_rustls::TlsAcceptor::from(config))
    }
}

/// Looks at the first bytes: a TLS handshake goes on; a plain HTTP/1
/// request is told in plain text that this port speaks TLS; anything else
/// (a plain gRPC client, a scanner) is closed.
#[cfg(feature = "tls")]
async fn tls_handshake(
    io: crate::Admitted<tokio::net::TcpStream>,
    peer: SocketAddr,
    acceptor: &tokio_rustls::TlsAcceptor,
    timeout: Duration,
) -> Option<tokio_rustls::server::TlsStream<crate::Admitted<tokio::net::TcpStream>>> {
    use crate::tls::{opening, Opening, PLAIN_TO_TLS};
    use tokio::io::AsyncWriteExt;
    let mut first = [0u8; 4];
    let peeked = tokio::time::timeout(timeout, io.get_ref().peek(&mut first)).await;
    let n = match peeked {
        Ok(Ok(n)) => n,
        _ => return None,
    };
    match opening(&first[..n]) {
        Opening::Tls => {}
        Opening::PlainHttp1 => {
            debug!(%peer, "plain HTTP on a TLS port; told so");
            let mut io = io;
            let _ = tokio::time::timeout(timeout, io.write_all(PLAIN_TO_TLS)).await;
            let _ = io.shutdown().await;
            return None;
        }
        Opening::Other => {
            debug!(%peer, "neither TLS nor HTTP/1 on a TLS port; closed");
            return None;
        }
    }
    match tokio::time::timeout(timeout, acceptor.accept(io)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            debug!(%peer, "TLS handshake not finished in time");
            None
        }
    }
}

async fn answer(
    mut router: axum::Router,
    peer: SocketAddr,
    client: Option<ClientCert>,
    timeout: Duration,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, std::convert::Infallible> {
    req.extensions_mut().insert(ConnectInfo(peer));
    #[cfg(feature = "tls")]
    if let Some(client) = client {
        req.extensions_mut().insert(client);
    }
    #[cfg(not(feature = "tls"))]
    let _ = client;
    let call = tower_service::Service::call(&mut router, req.map(Body::new));
    match tokio::time::timeout(timeout, call).await {
        Ok(answered) => answered,
        Err(_) => {
            debug!(%peer, timeout_secs = timeout.as_secs_f64(), "request timed out");
            let mut response = Response::new(Body::from(format!("request not answered within {timeout:?}\n")));
            *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            Ok(response)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    async fn start(limits: HttpLimits) -> (SocketAddr, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<io::Result<()>>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let router = axum::Router::new()
            .route("/ok", get(|| async { "ok\n" }))
            .route("/slow", get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late\n"
            }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let listener = AdmittingListener::new(l, limits.connections, "test http");
        let task = tokio::spawn(serve(listener, router, limits, async move {
            let _ = stopped.await;
        }));
        (addr, stop, task)
    }

    async fn read_all(s: &mut TcpStream) -> String {
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn a_trickled_header_is_cut_off_and_a_slow_handler_answers_503() {
        let limits = HttpLimits {
            header_read_timeout: Duration::from_millis(500),
            request_timeout: Duration::from_millis(300),
            ..HttpLimits::default()
        };
        let (addr, stop, task) = start(limits).await;
        // Slowloris: a header line every 200 ms, never the blank line.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /ok HTTP/1.1\r\n").await.unwrap();
        let started = std::time::Instant::now();
        let mut closed = false;
        for i in 0..50 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if s.write_all(format!("X-{i}: y\r\n").as_bytes()).await.is_err() {
                closed = true;
                break;
            }
        }
        assert!(closed, "a header trickled for 10 s was still being read");
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());

        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let answer = read_all(&mut s).await;
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.contains("request not answered within 300ms"), "{answer}");

        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        assert!(read_all(&mut s).await.ends_with("ok\n"));
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap().unwrap();
    }
}
