//! What a standby broker serves on its port while another leads: every
//! HTTP request is redirected (307, method kept) to the same path on the
//! leader, so a bookmarked `/ui/…` address of any broker leads to the
//! leader's page; with no leader known yet, a 503 that says so. gRPC
//! clients find the leader through ZooKeeper and never rely on this.
//!
//! The standby gives the port back (`Standby::stop`) before it starts
//! leading and binds it for real.

use std::net::SocketAddr;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use weir_ha::LeaderInfo;

use super::BrokerError;

/// A standby's redirecting server.
pub struct Standby {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Standby {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving and frees the port.
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

#[derive(Clone)]
struct Redirect {
    /// This broker's own published address: never redirected to.
    own: String,
    leader: watch::Receiver<Option<LeaderInfo>>,
    /// "https" when the brokers serve TLS, else "http".
    scheme: &'static str,
}

/// Serves redirects to whichever broker `leader` names, on `listen`, over
/// TLS when `tls` is given (the port never speaks plain text when the
/// broker is configured for TLS, standing by or not). Redirects carry no
/// secret, so they need no token.
pub async fn serve_standby(
    listen: SocketAddr,
    own: String,
    leader: watch::Receiver<Option<LeaderInfo>>,
    limits: weir_net::http::HttpLimits,
    tls: Option<weir_net::http::Tls>,
) -> Result<Standby, BrokerError> {
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|source| BrokerError::Bind { addr: listen, source })?;
    let addr = listener.local_addr().map_err(|source| BrokerError::Bind { addr: listen, source })?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let router = axum::Router::new().fallback(redirect).with_state(Redirect { own, leader, scheme });
    let listener = weir_net::AdmittingListener::new(listener, limits.connections, "standby broker");
    let task = tokio::spawn(async move {
        if let Err(e) = weir_net::http::serve_tls(listener, router, limits, tls, std::future::pending()).await {
            tracing::warn!(error = %e, "the standby's redirecting server stopped");
        }
    });
    Ok(Standby { addr, task })
}

async fn redirect(State(r): State<Redirect>, request: Request) -> Response {
    let leader = r.leader.borrow().clone();
    let target = request.uri().path_and_query().map_or("/", |p| p.as_str());
    match leader {
        Some(l) if l.address != r.own => {
            (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, format!("{}://{}{target}", r.scheme, l.address))], format!("this broker stands by; broker {} at {} leads\n", l.id, l.address))
                .into_response()
        }
        _ => (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "1")], "this broker stands by and no leader is known yet\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn a_standby_sends_every_page_to_the_leader() {
        let (tx, rx) = watch::channel(None);
        let standby = serve_standby("127.0.0.1:0".parse().unwrap(), "127.0.0.1:1".into(), rx, Default::default(), None).await.unwrap();
        let addr = standby.local_addr();
        let none = get(addr, "/ui/").await;
        assert!(none.starts_with("HTTP/1.1 503") && none.contains("no leader is known"), "{none}");
        tx.send_replace(Some(LeaderInfo { id: "b2".into(), address: "127.0.0.1:5999".into(), epoch: 3 }));
        let moved = get(addr, "/ui/tasks?q=a%20b&page=2").await;
        assert!(moved.starts_with("HTTP/1.1 307"), "{moved}");
        assert!(moved.to_ascii_lowercase().contains("location: http://127.0.0.1:5999/ui/tasks?q=a%20b&page=2\r\n"), "{moved}");
        // Itself named as leader (the moment before it starts leading): no loop.
        tx.send_replace(Some(LeaderInfo { id: "me".into(), address: "127.0.0.1:1".into(), epoch: 4 }));
        assert!(get(addr, "/ui/").await.starts_with("HTTP/1.1 503"));
        standby.stop().await;
        // The port is free again for the leader's server.
        tokio::net::TcpListener::bind(addr).await.expect("the standby gave its port back");
    }
}
