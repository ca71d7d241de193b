//! What the speaker reports: one [`PeerStatus`] per peer, shared between
//! the peer's task (writer) and the API (reader).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bgp_fsm::{Negotiated, State};
use datastore::PeerCfg;

/// Message counters, one direction.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Counters {
    pub open: u64,
    pub update: u64,
    pub notification: u64,
    pub keepalive: u64,
    pub route_refresh: u64,
}

impl Counters {
    pub fn add(&mut self, o: &Counters) {
        self.open += o.open;
        self.update += o.update;
        self.notification += o.notification;
        self.keepalive += o.keepalive;
        self.route_refresh += o.route_refresh;
    }
    pub fn count(&mut self, kind: &str) {
        match kind {
            "OPEN" => self.open += 1,
            "UPDATE" => self.update += 1,
            "NOTIFICATION" => self.notification += 1,
            "KEEPALIVE" => self.keepalive += 1,
            "ROUTE-REFRESH" => self.route_refresh += 1,
            _ => {}
        }
    }
    pub fn total(&self) -> u64 {
        self.open + self.update + self.notification + self.keepalive + self.route_refresh
    }
}

/// One peer's state, as `kbgp status` and `kbgp show neighbors` show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PeerStatus {
    pub key: String,
    pub peer_type: String,
    pub source: String,
    pub remote_as: String,
    pub port: u16,
    pub state: State,
    /// Unix seconds of the last state change.
    pub since: u64,
    /// A short word for the INFO column: `Established`, `Connect`, `Passive`, an error...
    pub info: String,
    pub last_error: Option<String>,
    pub negotiated: Option<Negotiated>,
    pub local_addr: Option<SocketAddr>,
    pub remote_addr: Option<SocketAddr>,
    pub received: Counters,
    pub sent: Counters,
    pub prefixes_received: u64,
    pub prefixes_advertised: u64,
    /// Destinations whose changes wait because the peer reads too slowly
    /// (0 when it keeps up).
    pub held_back: u64,
    /// Times the peer's output filled up during this session.
    pub stalls: u32,
    pub established_count: u32,
    /// Unix seconds when the current session came up.
    pub established_at: Option<u64>,
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl PeerStatus {
    pub fn new(cfg: &PeerCfg) -> Self {
        PeerStatus {
            key: cfg.key(),
            peer_type: cfg.peer_type.label().to_string(),
            source: cfg.source.clone(),
            remote_as: cfg.remote_as.to_string(),
            port: cfg.port,
            state: State::Idle,
            since: unix_now(),
            info: "Idle".into(),
            last_error: None,
            negotiated: None,
            local_addr: None,
            remote_addr: None,
            received: Counters::default(),
            sent: Counters::default(),
            prefixes_received: 0,
            prefixes_advertised: 0,
            held_back: 0,
            stalls: 0,
            established_count: 0,
            established_at: None,
        }
    }
}

pub type SharedStatus = Arc<Mutex<PeerStatus>>;

/// Lock a status; a poisoned lock still holds usable data.
pub fn lock(s: &SharedStatus) -> std::sync::MutexGuard<'_, PeerStatus> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}
