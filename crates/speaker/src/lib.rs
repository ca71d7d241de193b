//! kbgp's speaker: the one event loop that owns the RIB and the peers.
//!
//! ```text
//!  datastore ──Desired──▶ SpeakerHandle::apply ─┐
//!  API (gRPC) ─queries──▶ SpeakerHandle ────────┤ Command
//!                                               ▼
//!   listener task ──Incoming──▶  main loop (RIB, peers map, reconciler)
//!                                  │ ▲
//!                         PeerCmd  │ │ PeerEvent (Up/Down/Update/Refresh)
//!                                  ▼ │
//!                              peer tasks (one per peer, see [`peer`])
//! ```
//! Everything is a client of [`SpeakerHandle`]: the file watcher, the
//! Kubernetes watcher, the gRPC API and tests call the same methods.

pub mod export;
mod peer;
pub mod status;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::SystemTime;

use bgp_fsm::{Negotiated, SessionCfg};
use bgp_rib::{AdjRibIn, AdjRibOut, Interner};
use bgp_wire::notification::{self, Notification};
use bgp_wire::update::{pack_announce, pack_withdraw};
use bgp_wire::{Family, Message, Nlri, PathAttrs, Repair, RouteRefresh, Update};
use bytes::BytesMut;
use datastore::{Desired, GlobalCfg, Origination, PeerCfg, PeerTarget};
use ipnet::IpNet;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use peer::{Peer, PeerCmd, PeerEvent};
pub use status::{PeerStatus, SharedStatus};

/// A route as the API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RibEntry {
    pub prefix: IpNet,
    pub path_id: u32,
    /// `received` from a peer, or `advertised` to it.
    pub direction: &'static str,
    pub peer: String,
    pub next_hop: String,
    pub attrs: PathAttrs,
    /// Unix seconds.
    pub since: u64,
}

/// A RIB query.
#[derive(Debug, Clone, Default)]
pub struct RibQuery {
    pub family: Option<Family>,
    pub prefix: Option<IpNet>,
    pub peer: Option<String>,
}

/// Outcome of applying a configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ApplySummary {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    pub originate_changed: bool,
    pub restarted: bool,
}

enum Command {
    Apply(Box<Desired>, oneshot::Sender<ApplySummary>),
    Status(oneshot::Sender<Vec<PeerStatus>>),
    Rib(RibQuery, oneshot::Sender<Vec<RibEntry>>),
    Global(oneshot::Sender<Option<GlobalCfg>>),
    Shutdown(oneshot::Sender<()>),
}

/// The handle every client uses.
#[derive(Clone)]
pub struct SpeakerHandle {
    tx: mpsc::Sender<Command>,
}

/// The speaker stopped.
#[derive(Debug, thiserror::Error)]
#[error("the speaker is not running")]
pub struct Stopped;

impl SpeakerHandle {
    async fn ask<T>(&self, f: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, Stopped> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(f(tx)).await.map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }
    /// Move to a new configuration: only what changed is touched.
    pub async fn apply(&self, d: Desired) -> Result<ApplySummary, Stopped> {
        self.ask(|tx| Command::Apply(Box::new(d), tx)).await
    }
    pub async fn status(&self) -> Result<Vec<PeerStatus>, Stopped> {
        self.ask(Command::Status).await
    }
    pub async fn rib(&self, q: RibQuery) -> Result<Vec<RibEntry>, Stopped> {
        self.ask(|tx| Command::Rib(q, tx)).await
    }
    pub async fn global(&self) -> Result<Option<GlobalCfg>, Stopped> {
        self.ask(Command::Global).await
    }
    /// Send Cease/Administrative Shutdown to every peer and stop.
    pub async fn shutdown(&self) -> Result<(), Stopped> {
        self.ask(Command::Shutdown).await
    }
}

struct Session {
    gen: u64,
    neg: Negotiated,
    local: SocketAddr,
}

struct PeerEntry {
    cfg: PeerCfg,
    cmd: mpsc::Sender<PeerCmd>,
    status: SharedStatus,
    task: JoinHandle<()>,
    session: Option<Session>,
    rib_in: AdjRibIn,
    rib_out: AdjRibOut,
}

struct Main {
    global: Option<GlobalCfg>,
    originate: BTreeMap<IpNet, Origination>,
    peers: BTreeMap<String, PeerEntry>,
    interner: Interner,
    listener: Option<(SocketAddr, JoinHandle<()>)>,
    events_tx: mpsc::UnboundedSender<PeerEvent>,
    incoming_tx: mpsc::UnboundedSender<(TcpStream, SocketAddr)>,
}

/// Start a speaker with no configuration; feed it with [`SpeakerHandle::apply`].
pub fn start() -> SpeakerHandle {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(main_loop(rx));
    SpeakerHandle { tx }
}

async fn main_loop(mut cmds: mpsc::Receiver<Command>) {
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let (incoming_tx, mut incoming) = mpsc::unbounded_channel();
    let mut m = Main {
        global: None,
        originate: BTreeMap::new(),
        peers: BTreeMap::new(),
        interner: Interner::default(),
        listener: None,
        events_tx,
        incoming_tx,
    };
    loop {
        tokio::select! {
            cmd = cmds.recv() => match cmd {
                None => { m.shutdown().await; return; }
                Some(Command::Shutdown(done)) => { m.shutdown().await; let _ = done.send(()); return; }
                Some(Command::Apply(d, done)) => { let s = m.apply(*d).await; let _ = done.send(s); }
                Some(Command::Status(done)) => {
                    let v = m.peers.values().map(|p| status::lock(&p.status).clone()).collect();
                    let _ = done.send(v);
                }
                Some(Command::Rib(q, done)) => { let _ = done.send(m.rib(&q)); }
                Some(Command::Global(done)) => { let _ = done.send(m.global.clone()); }
            },
            Some(ev) = events.recv() => m.event(ev).await,
            Some((stream, remote)) = incoming.recv() => m.incoming(stream, remote).await,
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

async fn listen(bind: SocketAddr, tx: mpsc::UnboundedSender<(TcpStream, SocketAddr)>) {
    let l = match TcpListener::bind(bind).await {
        Ok(l) => l,
        Err(e) if bind.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED) => {
            warn!(%bind, error = %e, "IPv6 listen failed, falling back to IPv4");
            match TcpListener::bind(SocketAddr::new([0, 0, 0, 0].into(), bind.port())).await {
                Ok(l) => l,
                Err(e) => {
                    error!(%bind, error = %e, "cannot listen");
                    return;
                }
            }
        }
        Err(e) => {
            error!(%bind, error = %e, "cannot listen");
            return;
        }
    };
    info!(addr = %bind, "listening for BGP connections");
    loop {
        match l.accept().await {
            Ok((s, remote)) => {
                if tx.send((s, remote)).is_err() {
                    return;
                }
            }
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

impl Main {
    fn session_cfg(&self, g: &GlobalCfg, p: &PeerCfg) -> SessionCfg {
        let mut s = SessionCfg::new(g.asn, p.remote_as, g.router_id);
        s.hold_time = p.hold_time;
        s.graceful_restart = p.max_restart_time.map(|t| t.min(4095) as u16);
        s
    }

    fn spawn_peer(&mut self, g: &GlobalCfg, cfg: PeerCfg) {
        let key = cfg.key();
        let (tx, rx) = mpsc::channel(1024);
        let status = std::sync::Arc::new(std::sync::Mutex::new(PeerStatus::new(&cfg)));
        let peer = Peer {
            key: key.clone(),
            session: self.session_cfg(g, &cfg),
            cfg: cfg.clone(),
            status: status.clone(),
            main: self.events_tx.clone(),
            cmds: rx,
        };
        let task = tokio::spawn(peer.run());
        self.peers.insert(
            key,
            PeerEntry {
                cfg,
                cmd: tx,
                status,
                task,
                session: None,
                rib_in: AdjRibIn::default(),
                rib_out: AdjRibOut::default(),
            },
        );
    }

    async fn stop_peer(&mut self, key: &str, n: Notification) {
        if let Some(p) = self.peers.remove(key) {
            let _ = p.cmd.send(PeerCmd::Stop(Some(n))).await;
            // Give it a moment to flush the NOTIFICATION; never hang on it.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), p.task).await;
        }
        self.interner.collect();
    }

    async fn apply(&mut self, d: Desired) -> ApplySummary {
        let mut sum = ApplySummary::default();
        let restart = self.global.as_ref().is_some_and(|g| {
            g.asn != d.global.asn
                || g.router_id != d.global.router_id
                || g.hold_time != d.global.hold_time
        });
        if restart {
            info!("AS, router id or hold time changed: resetting every session");
            sum.restarted = true;
            let keys: Vec<String> = self.peers.keys().cloned().collect();
            for k in keys {
                self.stop_peer(
                    &k,
                    Notification::new(
                        notification::CEASE,
                        notification::cease::OTHER_CONFIGURATION_CHANGE,
                        vec![],
                    ),
                )
                .await;
            }
        }
        // Listener.
        let bind = SocketAddr::new(
            d.global.bind.unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
            d.global.listen_port,
        );
        if self.listener.as_ref().map(|(a, _)| *a) != Some(bind) {
            if let Some((_, h)) = self.listener.take() {
                h.abort();
            }
            let h = tokio::spawn(listen(bind, self.incoming_tx.clone()));
            self.listener = Some((bind, h));
        }
        // Peers: remove, change, add.
        let gone: Vec<String> = self
            .peers
            .keys()
            .filter(|k| !d.peers.contains_key(*k))
            .cloned()
            .collect();
        for k in gone {
            info!(peer = %k, "peer removed from configuration");
            self.stop_peer(
                &k,
                Notification::new(
                    notification::CEASE,
                    notification::cease::PEER_DECONFIGURED,
                    vec![],
                ),
            )
            .await;
            sum.removed.push(k);
        }
        let changed: Vec<String> = d
            .peers
            .iter()
            .filter(|(k, c)| self.peers.get(*k).is_some_and(|p| &p.cfg != *c))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &changed {
            info!(peer = %k, "peer configuration changed: resetting it");
            self.stop_peer(
                k,
                Notification::new(
                    notification::CEASE,
                    notification::cease::OTHER_CONFIGURATION_CHANGE,
                    vec![],
                ),
            )
            .await;
        }
        sum.changed = changed;
        for (k, c) in &d.peers {
            if !self.peers.contains_key(k) {
                if !sum.changed.contains(k) {
                    info!(peer = %k, source = %c.source, "peer added");
                    sum.added.push(k.clone());
                }
                self.spawn_peer(&d.global, c.clone());
            }
        }
        sum.originate_changed = self.originate != d.originate;
        self.global = Some(d.global);
        self.originate = d.originate;
        if sum.originate_changed {
            let keys: Vec<String> = self.peers.keys().cloned().collect();
            for k in keys {
                self.sync_peer(&k, false).await;
            }
        }
        sum
    }

    /// Bring a peer's Adj-RIB-Out to what it should hold, sending the difference.
    async fn sync_peer(&mut self, key: &str, full: bool) {
        let Some(g) = self.global.clone() else { return };
        let Some(p) = self.peers.get_mut(key) else {
            return;
        };
        let Some(s) = &p.session else { return };
        let wanted = export::local_routes(&self.originate, &g, &s.neg, s.local, &mut self.interner);
        let diff = p.rib_out.diff(wanted, full);
        let ctx = s.neg.ctx();
        let mut buf = BytesMut::new();
        let mut updates = 0;
        for (fam, nlri) in &diff.withdraw {
            updates += pack_withdraw(&ctx, *fam, nlri, &mut buf);
        }
        for (attrs, nh, fam, nlri) in &diff.announce {
            updates += pack_announce(&ctx, attrs, *fam, *nh, nlri, &mut buf);
        }
        if full {
            for fam in &s.neg.families {
                Message::Update(Update::end_of_rib(*fam)).encode(&ctx, &mut buf);
                updates += 1;
            }
        }
        status::lock(&p.status).prefixes_advertised = p.rib_out.len() as u64;
        if updates > 0 {
            let _ = p
                .cmd
                .send(PeerCmd::Send {
                    gen: s.gen,
                    bytes: buf.freeze(),
                    updates: updates as u64,
                })
                .await;
        }
    }

    async fn event(&mut self, ev: PeerEvent) {
        match ev {
            PeerEvent::Up {
                key,
                gen,
                neg,
                local,
            } => {
                if let Some(p) = self.peers.get_mut(&key) {
                    p.session = Some(Session {
                        gen,
                        neg: *neg,
                        local,
                    });
                    p.rib_in = AdjRibIn::default();
                    p.rib_out.clear();
                    self.sync_peer(&key, true).await;
                }
            }
            PeerEvent::Down { key, gen } => {
                if let Some(p) = self.peers.get_mut(&key) {
                    if p.session.as_ref().is_some_and(|s| s.gen == gen) {
                        p.session = None;
                        let n = p.rib_in.len();
                        p.rib_in = AdjRibIn::default();
                        p.rib_out.clear();
                        info!(peer = %key, routes = n, "session down: routes from this peer removed");
                    }
                }
                self.interner.collect();
            }
            PeerEvent::Update { key, gen, update } => {
                let Some(p) = self.peers.get_mut(&key) else {
                    return;
                };
                if p.session.as_ref().is_none_or(|s| s.gen != gen) {
                    return;
                }
                match &update.repair {
                    Repair::None => {}
                    Repair::AttributeDiscard(codes) => {
                        warn!(peer = %key, ?codes, "RFC 7606: malformed attributes discarded")
                    }
                    Repair::TreatAsWithdraw(why) => {
                        warn!(peer = %key, reason = %why, prefixes = update.withdrawals().count(), "RFC 7606: UPDATE treated as withdraw")
                    }
                }
                p.rib_in
                    .apply(&update, &mut self.interner, SystemTime::now());
                status::lock(&p.status).prefixes_received = p.rib_in.len() as u64;
            }
            PeerEvent::Refresh { key, gen, rr } => {
                if self
                    .peers
                    .get(&key)
                    .and_then(|p| p.session.as_ref())
                    .is_some_and(|s| s.gen == gen)
                    && rr.subtype == 0
                {
                    self.refresh(&key, rr).await;
                }
            }
        }
    }

    /// Answer a ROUTE-REFRESH: everything again, framed by BoRR/EoRR when enhanced.
    async fn refresh(&mut self, key: &str, rr: RouteRefresh) {
        let Some(p) = self.peers.get(key) else { return };
        let Some(s) = &p.session else { return };
        let enhanced = s.neg.enhanced_route_refresh;
        let ctx = s.neg.ctx();
        let (gen, cmd) = (s.gen, p.cmd.clone());
        if enhanced {
            let b = Message::RouteRefresh(RouteRefresh {
                family: rr.family,
                subtype: 1,
            })
            .to_bytes(&ctx);
            let _ = cmd
                .send(PeerCmd::Send {
                    gen,
                    bytes: b.freeze(),
                    updates: 0,
                })
                .await;
        }
        self.sync_peer(key, true).await;
        if enhanced {
            let b = Message::RouteRefresh(RouteRefresh {
                family: rr.family,
                subtype: 2,
            })
            .to_bytes(&ctx);
            let _ = cmd
                .send(PeerCmd::Send {
                    gen,
                    bytes: b.freeze(),
                    updates: 0,
                })
                .await;
        }
    }

    async fn incoming(&mut self, stream: TcpStream, remote: SocketAddr) {
        let ip = canonical(remote.ip());
        let found = self
            .peers
            .values()
            .find(|p| matches!(p.cfg.target, PeerTarget::Addr(a) if a == ip));
        match found {
            Some(p) => {
                let _ = p.cmd.send(PeerCmd::Incoming(stream, remote)).await;
            }
            None => {
                info!(%remote, "connection from an address that is not a configured peer: closed");
                drop(stream);
            }
        }
    }

    fn rib(&self, q: &RibQuery) -> Vec<RibEntry> {
        let mut out = Vec::new();
        let to_unix = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        };
        let want = |prefix: &IpNet| {
            q.family.is_none_or(|f| Nlri::new(*prefix).family() == f)
                && q.prefix.is_none_or(|p| p == *prefix || p.contains(prefix))
        };
        for (key, p) in self
            .peers
            .iter()
            .filter(|(k, _)| q.peer.as_ref().is_none_or(|x| x == *k))
        {
            for ((prefix, path_id), r) in p.rib_in.iter().filter(|((pfx, _), _)| want(pfx)) {
                out.push(RibEntry {
                    prefix: *prefix,
                    path_id: *path_id,
                    direction: "received",
                    peer: key.clone(),
                    next_hop: r.next_hop.to_string(),
                    attrs: (*r.attrs).clone(),
                    since: to_unix(r.since),
                });
            }
            for (prefix, r) in p.rib_out.iter().filter(|(pfx, _)| want(pfx)) {
                out.push(RibEntry {
                    prefix: *prefix,
                    path_id: 0,
                    direction: "advertised",
                    peer: key.clone(),
                    next_hop: r.next_hop.to_string(),
                    attrs: (*r.attrs).clone(),
                    since: 0,
                });
            }
        }
        out.sort_by(|a, b| (a.prefix, a.direction, &a.peer).cmp(&(b.prefix, b.direction, &b.peer)));
        out
    }

    async fn shutdown(&mut self) {
        let keys: Vec<String> = self.peers.keys().cloned().collect();
        for k in keys {
            self.stop_peer(
                &k,
                Notification::cease(notification::cease::ADMIN_SHUTDOWN, "kbgp shutting down"),
            )
            .await;
        }
        if let Some((_, h)) = self.listener.take() {
            h.abort();
        }
    }
}
