//! Connection caps: how many connections one listener holds open, in all
//! and per peer address. Counting only; the listener decides what to do
//! with a refusal (it closes the connection at once).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Caps for one listener. Both must be at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open connections the listener holds at most.
    pub max_connections: usize,
    /// Open connections one peer address holds at most.
    pub max_per_peer: usize,
}

impl ConnectionLimits {
    /// Defaults for a port that clients of many kinds share: far below a
    /// typical open-file limit, so a flood on one port leaves descriptors
    /// for the others.
    pub const DEFAULT: ConnectionLimits = ConnectionLimits { max_connections: 4096, max_per_peer: 512 };
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits::DEFAULT
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("listener holds its limit of {max} connections")]
    ListenerFull { max: usize },
    #[error("peer {peer} holds its limit of {max} connections")]
    PeerFull { peer: IpAddr, max: usize },
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_peer: HashMap<IpAddr, usize>,
}

/// The open-connection counts of one listener, shared by its connections.
#[derive(Debug, Clone)]
pub struct Admission {
    limits: ConnectionLimits,
    counts: Arc<Mutex<Counts>>,
}

impl Admission {
    pub fn new(limits: ConnectionLimits) -> Admission {
        let limits = ConnectionLimits {
            max_connections: limits.max_connections.max(1),
            max_per_peer: limits.max_per_peer.max(1),
        };
        Admission { limits, counts: Arc::new(Mutex::new(Counts::default())) }
    }

    pub fn limits(&self) -> ConnectionLimits {
        self.limits
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a new connection from `peer`, or says which cap it hit.
    pub fn try_admit(&self, peer: IpAddr) -> Result<Permit, Refusal> {
        let mut counts = self.counts();
        if counts.total >= self.limits.max_connections {
            return Err(Refusal::ListenerFull { max: self.limits.max_connections });
        }
        let of_peer = counts.per_peer.entry(peer).or_insert(0);
        if *of_peer >= self.limits.max_per_peer {
            return Err(Refusal::PeerFull { peer, max: self.limits.max_per_peer });
        }
        *of_peer += 1;
        counts.total += 1;
        Ok(Permit { admission: self.clone(), peer })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.counts().total
    }

    /// Connections open now from `peer`.
    pub fn open_from(&self, peer: IpAddr) -> usize {
        self.counts().per_peer.get(&peer).copied().unwrap_or(0)
    }
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct Permit {
    admission: Admission,
    peer: IpAddr,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut counts = self.admission.counts();
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.per_peer.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                // An empty entry per address ever seen would be a pile of its own.
                counts.per_peer.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn a_peer_is_capped_before_the_listener_and_permits_give_places_back() {
        let a = Admission::new(ConnectionLimits { max_connections: 3, max_per_peer: 2 });
        let p1 = a.try_admit(ip(1)).unwrap();
        let _p2 = a.try_admit(ip(1)).unwrap();
        assert_eq!(a.try_admit(ip(1)).unwrap_err(), Refusal::PeerFull { peer: ip(1), max: 2 });
        let _p3 = a.try_admit(ip(2)).unwrap();
        assert_eq!(a.try_admit(ip(3)).unwrap_err(), Refusal::ListenerFull { max: 3 });
        assert_eq!(
            a.try_admit(ip(3)).unwrap_err().to_string(),
            "listener holds its limit of 3 connections"
        );
        drop(p1);
        assert_eq!(a.open(), 2);
        assert_eq!(a.open_from(ip(1)), 1);
        let _p4 = a.try_admit(ip(3)).unwrap();
        assert_eq!(a.open(), 3);
    }

    #[test]
    fn peers_that_left_leave_no_entry_behind() {
        let a = Admission::new(ConnectionLimits { max_connections: 10_000, max_per_peer: 1 });
        for last in 0..=255u8 {
            drop(a.try_admit(ip(last)).unwrap());
        }
        assert_eq!(a.open(), 0);
        assert!(a.counts().per_peer.is_empty());
    }

    #[test]
    fn zero_limits_read_as_one() {
        let a = Admission::new(ConnectionLimits { max_connections: 0, max_per_peer: 0 });
        let _p = a.try_admit(ip(1)).unwrap();
        assert!(a.try_admit(ip(2)).is_err());
    }
}
