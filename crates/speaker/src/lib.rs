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
mod kernel;
pub mod ndp;
mod peer;
mod routing;
pub mod sockopt;
pub mod status;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use std::collections::BTreeSet;
use std::sync::Arc;

use bgp_fsm::{Negotiated, SessionCfg};
use bgp_rib::best::{BestCfg, PeerInfo};
use bgp_rib::locrib::LocRib;
use bgp_rib::{AdjRibIn, AdjRibOut, Interner};
use bgp_wire::notification::{self, Notification};
use bgp_wire::{Family, Nlri, PathAttrs};
use datastore::{Desired, GlobalCfg, Origination, PeerCfg, PeerTarget};
use ipnet::IpNet;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

pub use kernel::KernelChoice;
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
    /// For received routes: the Loc-RIB's best path, or part of the ECMP set.
    pub best: bool,
    pub multipath: bool,
    /// Why a route was rejected (`direction` "rejected").
    pub reason: String,
}

/// A RIB query.
#[derive(Debug, Clone, Default)]
pub struct RibQuery {
    pub family: Option<Family>,
    pub prefix: Option<IpNet>,
    pub peer: Option<String>,
    /// Routes refused on import instead of the RIB.
    pub rejected: bool,
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

pub(crate) struct Session {
    pub gen: u64,
    pub neg: Negotiated,
    pub local: SocketAddr,
    pub info: Arc<PeerInfo>,
    /// Families the peer has sent End-of-RIB for.
    pub eor: BTreeSet<Family>,
}

pub(crate) struct PeerEntry {
    pub cfg: PeerCfg,
    pub cmd: mpsc::Sender<PeerCmd>,
    pub status: SharedStatus,
    pub task: JoinHandle<()>,
    pub session: Option<Session>,
    pub rib_in: AdjRibIn,
    pub rib_out: AdjRibOut,
    /// Encoded messages for the peer task to write (see `peer::Outbox`).
    pub outbox: Arc<peer::Outbox>,
    /// While the outbox is past its limit: what is held back.
    pub lag: Option<Lag>,
    pub max_prefix_warned: bool,
}

/// What a peer that reads too slowly has not been sent yet, kept small:
/// which destinations changed (one bit each; what to send for them is their
/// export when the peer catches up), the prefixes of destinations that went
/// from the Loc-RIB while the peer may hold them, and messages that must
/// come after all of that (End-of-RIB, EoRR).
#[derive(Default)]
pub(crate) struct Lag {
    pub dirty: bgp_rib::IdSet,
    pub gone: Vec<IpNet>,
    pub tail: Vec<bytes::BytesMut>,
}

/// The attributes last built for an export filter to see: the set and
/// rewrite they were built from, and the attributes as they would be sent.
pub(crate) type SentMemo = Option<(bgp_rib::SharedAttrs, bgp_rib::Rewrite, bgp_wire::PathAttrs)>;

pub(crate) struct Main {
    /// Originations from the configuration; `originate` adds interface addresses.
    pub cfg_originate: BTreeMap<IpNet, Origination>,
    /// Interface addresses as last read from the kernel.
    pub iface_addrs: Vec<(u32, IpAddr)>,
    /// Routes refused on import, by peer, with the reason.
    pub rejected: BTreeMap<String, BTreeMap<IpNet, String>>,
    pub global: Option<GlobalCfg>,
    pub originate: BTreeMap<IpNet, Origination>,
    pub peers: BTreeMap<String, PeerEntry>,
    pub interner: Arc<Interner>,
    pub loc: LocRib,
    /// The attributes last built for an export filter to see (see `ExportCtx::path`).
    sent_memo: SentMemo,
    listener: Option<Listener>,
    /// TCP MD5 keys set on the listener, by peer address.
    md5_keys: BTreeMap<IpAddr, String>,
    events_tx: mpsc::UnboundedSender<PeerEvent>,
    incoming_tx: mpsc::UnboundedSender<(TcpStream, SocketAddr)>,
    // ---- kernel ----
    kernel_choice: Option<KernelChoice>,
    pub kernel: Option<(u32, kernel::KernelTx)>,
    kernel_events_tx: mpsc::UnboundedSender<kernel::KernelEvent>,
    pub resolver: Option<fib::Resolver>,
    /// What kbgp has put in the kernel.
    pub installed: BTreeMap<IpNet, fib::Action>,
    /// kbgp routes found at start-up, swept once sessions have converged.
    pub stale: BTreeSet<IpNet>,
    pub sweep_at: Option<tokio::time::Instant>,
    /// The runtime peer tasks, the listener and the kernel task run on (the
    /// main loop has a thread of its own).
    pub rt: tokio::runtime::Handle,
}

/// How long stale kernel routes of an earlier run may wait for sessions to re-converge.
pub const STALE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Start a speaker programming the Linux kernel; feed it with [`SpeakerHandle::apply`].
pub fn start() -> SpeakerHandle {
    start_with(Some(KernelChoice::Netlink))
}

/// Start a speaker with a given kernel (`None`: never read nor write kernel routes).
///
/// The main loop runs on a thread of its own (a single-threaded runtime):
/// the RIBs are always worked on, and allocated from, the same thread, and
/// the caller's runtime keeps its workers for the peer tasks (reading,
/// decoding, writing), the listener and the kernel task, which the main loop
/// spawns there.
pub fn start_with(kernel: Option<KernelChoice>) -> SpeakerHandle {
    let (tx, rx) = mpsc::channel(64);
    let rt = tokio::runtime::Handle::current();
    std::thread::Builder::new()
        .name("kbgp-main".into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(main_rt) => main_rt.block_on(main_loop(rx, kernel, rt)),
                // Nothing will answer: the handle's commands fail as after a shutdown.
                Err(e) => tracing::error!("cannot start the speaker's runtime: {e}"),
            }
        })
        .expect("spawn the speaker thread");
    SpeakerHandle { tx }
}

/// Most UPDATEs imported before their changes are exported: large enough to
/// make few big UPDATEs out of many small ones, small enough that the main
/// loop still answers commands promptly under a full-table load.
const UPDATE_BATCH: usize = 2048;
/// ... and at most about this many prefixes (announced or withdrawn): the
/// per-turn change lists stay small even when each UPDATE withdraws a
/// thousand prefixes.
const BATCH_PREFIXES: usize = 16_384;

async fn main_loop(
    mut cmds: mpsc::Receiver<Command>,
    kernel_choice: Option<KernelChoice>,
    rt: tokio::runtime::Handle,
) {
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let (incoming_tx, mut incoming) = mpsc::unbounded_channel();
    let (kernel_events_tx, mut kernel_events) = mpsc::unbounded_channel();
    let mut m = Main {
        cfg_originate: BTreeMap::new(),
        iface_addrs: Vec::new(),
        rejected: BTreeMap::new(),
        global: None,
        originate: BTreeMap::new(),
        peers: BTreeMap::new(),
        interner: Arc::new(Interner::default()),
        loc: LocRib::new(BestCfg::default()),
        sent_memo: None,
        listener: None,
        md5_keys: BTreeMap::new(),
        events_tx,
        incoming_tx,
        kernel_choice,
        kernel: None,
        kernel_events_tx,
        resolver: None,
        installed: BTreeMap::new(),
        stale: BTreeSet::new(),
        sweep_at: None,
        rt,
    };
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
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
            Some(ev) = events.recv() => match ev {
                // Take every UPDATE already queued (up to a bound) in one turn.
                // Each event's credit goes back as it is taken, not once its
                // UPDATEs are worked on: its peer decodes the next ones
                // meanwhile, so the main loop finds them ready (at most twice
                // the credit of decoded UPDATEs per peer).
                PeerEvent::Update { key, gen, updates, prefixes, _credit: credit } => {
                    drop(credit);
                    let mut prefixes = prefixes;
                    let mut n = updates.len();
                    let mut batch = vec![(key, gen, updates)];
                    let mut other = None;
                    while n < UPDATE_BATCH && prefixes < BATCH_PREFIXES {
                        match events.try_recv() {
                            Ok(PeerEvent::Update { key, gen, updates, prefixes: k, .. }) => {
                                prefixes += k;
                                n += updates.len();
                                batch.push((key, gen, updates));
                            }
                            Ok(ev) => { other = Some(ev); break; }
                            Err(_) => break,
                        }
                    }
                    m.updates(batch).await;
                    if let Some(ev) = other {
                        m.event(ev).await;
                    }
                }
                ev => m.event(ev).await,
            },
            Some((stream, remote)) = incoming.recv() => m.incoming(stream, remote).await,
            Some(ev) = kernel_events.recv() => m.kernel_event(ev).await,
            _ = tick.tick() => m.maybe_sweep(),
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

/// The listening socket and its accept task.
struct Listener {
    bind: SocketAddr,
    fd: std::os::fd::RawFd,
    _socket: Arc<TcpListener>,
    task: JoinHandle<()>,
}

fn bind_listener(bind: SocketAddr) -> std::io::Result<TcpListener> {
    let std_listener = match std::net::TcpListener::bind(bind) {
        Ok(l) => l,
        Err(e) if bind.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED) => {
            warn!(%bind, error = %e, "IPv6 listen failed, falling back to IPv4");
            std::net::TcpListener::bind(SocketAddr::new([0, 0, 0, 0].into(), bind.port()))?
        }
        Err(e) => return Err(e),
    };
    std_listener.set_nonblocking(true)?;
    TcpListener::from_std(std_listener)
}

async fn accept_loop(l: Arc<TcpListener>, tx: mpsc::UnboundedSender<(TcpStream, SocketAddr)>) {
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
        // Unnumbered sessions carry IPv4 with IPv6 next hops (RFC 8950).
        s.extended_next_hop = matches!(p.target, PeerTarget::Interface(_));
        s.hold_time = p.hold_time;
        s.graceful_restart = p.max_restart_time.map(|t| t.min(4095) as u16);
        s
    }

    fn spawn_peer(&mut self, g: &GlobalCfg, cfg: PeerCfg) {
        let key = cfg.key();
        let (tx, rx) = mpsc::channel(1024);
        let status = Arc::new(std::sync::Mutex::new(PeerStatus::new(&cfg)));
        let peer = Peer {
            key: key.clone(),
            session: self.session_cfg(g, &cfg),
            cfg: cfg.clone(),
            status: status.clone(),
            main: self.events_tx.clone(),
            cmds: rx,
            outbox: Arc::new(peer::Outbox::default()),
            interner: self.interner.clone(),
        };
        let outbox = peer.outbox.clone();
        let task = self.rt.spawn(peer.run());
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
                outbox,
                lag: None,
                max_prefix_warned: false,
            },
        );
    }

    async fn stop_peer(&mut self, key: &str, n: Notification) {
        if let Some(mut p) = self.peers.remove(key) {
            p.rib_out.clear();
            let _ = p.cmd.send(PeerCmd::Stop(Some(n))).await;
            // Give it a moment to flush the NOTIFICATION; never hang on it.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), p.task).await;
            self.withdraw_all_from(key).await;
        }
        self.interner.collect();
    }

    async fn apply(&mut self, d: Desired) -> ApplySummary {
        let mut sum = ApplySummary::default();
        let restart = self.global.as_ref().is_some_and(|g| {
            g.asn != d.global.asn
                || g.router_id != d.global.router_id
                || g.hold_time != d.global.hold_time
                || g.cluster_id != d.global.cluster_id
        });
        if restart {
            info!("AS, router id, hold time or cluster id changed: resetting every session");
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
        self.loc.cfg = BestCfg {
            always_compare_med: d.global.always_compare_med,
            max_paths_ebgp: d.global.max_paths as usize,
            max_paths_ibgp: d.global.max_paths as usize,
        };
        self.ensure_kernel(&d.global);
        // Listener.
        let bind = SocketAddr::new(
            d.global.bind.unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
            d.global.listen_port,
        );
        if self.listener.as_ref().map(|l| l.bind) != Some(bind) {
            if let Some(l) = self.listener.take() {
                l.task.abort();
            }
            self.md5_keys.clear();
            // Registered with the workers' runtime, where it is polled.
            let bound = {
                let _rt = self.rt.enter();
                bind_listener(bind)
            };
            match bound {
                Ok(l) => {
                    use std::os::fd::AsRawFd;
                    info!(addr = %bind, "listening for BGP connections");
                    let l = Arc::new(l);
                    let task = self
                        .rt
                        .spawn(accept_loop(l.clone(), self.incoming_tx.clone()));
                    self.listener = Some(Listener {
                        bind,
                        fd: l.as_raw_fd(),
                        _socket: l,
                        task,
                    });
                }
                Err(e) => {
                    error!(%bind, error = %e, "cannot listen; only outgoing sessions will work")
                }
            }
        }
        self.sync_md5(&d);
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
        // Policy (filters, max-prefix, pod allow/deny lists) changes apply in
        // place; anything else about a peer resets it.
        let session_part = |c: &PeerCfg| {
            let mut c = c.clone();
            c.filters.clear();
            c.max_prefix = None;
            c.pod = None;
            c
        };
        let changed: Vec<String> = d
            .peers
            .iter()
            .filter(|(k, c)| {
                self.peers
                    .get(*k)
                    .is_some_and(|p| session_part(&p.cfg) != session_part(c))
            })
            .map(|(k, _)| k.clone())
            .collect();
        let policy_changed: Vec<String> = d
            .peers
            .iter()
            .filter(|(k, c)| {
                !changed.contains(k) && self.peers.get(*k).is_some_and(|p| &p.cfg != *c)
            })
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
        let global_changed = self.global.as_ref() != Some(&d.global);
        self.global = Some(d.global.clone());
        for (k, c) in &d.peers {
            if !self.peers.contains_key(k) {
                if !sum.changed.contains(k) {
                    info!(peer = %k, source = %c.source, "peer added");
                    sum.added.push(k.clone());
                }
                self.spawn_peer(&d.global, c.clone());
            }
        }
        for k in &policy_changed {
            // Export filters may have changed too: what the peer is sent
            // under the old policy, to send it what the new one changes.
            let before = self.exports(k);
            if let (Some(p), Some(c)) = (self.peers.get_mut(k), d.peers.get(k)) {
                info!(peer = %k, "peer policy changed: re-evaluating its routes");
                p.cfg = c.clone();
            }
            self.reimport(k).await;
            self.resync(k, before).await;
        }
        sum.originate_changed = self.cfg_originate != d.originate;
        self.cfg_originate = d.originate;
        if sum.originate_changed || global_changed {
            let eff = self.effective_originations();
            let changed = self.set_originations(eff);
            self.propagate(changed).await;
        }
        sum
    }

    /// Keep the listener's TCP MD5 keys equal to the peers' passwords.
    fn sync_md5(&mut self, d: &Desired) {
        let Some(l) = &self.listener else { return };
        let want: BTreeMap<IpAddr, String> = d
            .peers
            .values()
            .filter_map(|p| match (&p.target, &p.password) {
                (PeerTarget::Addr(a), Some(pw)) => Some((*a, pw.clone())),
                _ => None,
            })
            .collect();
        for a in self.md5_keys.keys().filter(|a| !want.contains_key(a)) {
            if let Err(e) = sockopt::set_md5(l.fd, *a, None) {
                warn!(peer = %a, "cannot remove TCP MD5 key: {e}");
            }
        }
        for (a, pw) in &want {
            if self.md5_keys.get(a) != Some(pw) {
                if let Err(e) = sockopt::set_md5(l.fd, *a, Some(pw.as_bytes())) {
                    error!(peer = %a, "cannot set TCP MD5 key: {e}");
                }
            }
        }
        self.md5_keys = want;
    }

    async fn incoming(&mut self, stream: TcpStream, remote: SocketAddr) {
        let ip = canonical(remote.ip());
        let found = match remote {
            // A link-local source: the unnumbered peer on that interface.
            SocketAddr::V6(v6) if v6.ip().is_unicast_link_local() => self.peers.values().find(|p| {
                matches!(&p.cfg.target, PeerTarget::Interface(i) if ndp::ifindex(i).ok() == Some(v6.scope_id()))
            }),
            _ => self.peers.values().find(|p| matches!(p.cfg.target, PeerTarget::Addr(a) if a == ip)),
        };
        match found {
            Some(p) => {
                let _ = p
                    .cmd
                    .send(PeerCmd::Incoming(Box::new((stream, remote))))
                    .await;
            }
            None => {
                info!(%remote, "connection from an address that is not a configured peer: closed");
                drop(stream);
            }
        }
    }

    fn rib(&self, q: &RibQuery) -> Vec<RibEntry> {
        let mut out = Vec::new();
        let want = |prefix: &IpNet| {
            q.family.is_none_or(|f| Nlri::new(*prefix).family() == f)
                && q.prefix.is_none_or(|p| p == *prefix || p.contains(prefix))
        };
        if q.rejected {
            for (key, p) in self
                .peers
                .iter()
                .filter(|(k, _)| q.peer.as_ref().is_none_or(|x| x == *k))
            {
                let Some(rej) = self.rejected.get(key) else {
                    continue;
                };
                // A rejected route is always held in the Adj-RIB-In.
                for (&(prefix, path_id), r) in
                    p.rib_in.iter_held().filter(|((pfx, _), _)| want(pfx))
                {
                    let Some(reason) = rej.get(&prefix) else {
                        continue;
                    };
                    out.push(RibEntry {
                        prefix,
                        path_id,
                        direction: "rejected",
                        peer: key.clone(),
                        next_hop: r.next_hop().to_string(),
                        attrs: (*r.attrs).clone(),
                        since: u64::from(r.since),
                        best: false,
                        multipath: false,
                        reason: reason.clone(),
                    });
                }
            }
            out.sort_by(|a, b| (a.prefix, &a.peer).cmp(&(b.prefix, &b.peer)));
            return out;
        }
        for (key, p) in self
            .peers
            .iter()
            .filter(|(k, _)| q.peer.as_ref().is_none_or(|x| x == *k))
        {
            for ((prefix, path_id), r) in self
                .received(key)
                .into_iter()
                .filter(|((pfx, _), _)| want(pfx))
            {
                let d = self.loc.get(&prefix);
                let is = |i: usize| {
                    d.is_some_and(|d| {
                        d.selected().get(i).is_some_and(|x| {
                            let x = &d.paths()[x];
                            self.loc.source(x).key() == key && x.path_id() == path_id
                        })
                    })
                };
                let multipath = d.is_some_and(|d| {
                    d.multipath()
                        .any(|x| self.loc.source(x).key() == key && x.path_id() == path_id)
                });
                out.push(RibEntry {
                    prefix,
                    path_id,
                    direction: "received",
                    peer: key.clone(),
                    next_hop: r.next_hop().to_string(),
                    attrs: (*r.attrs).clone(),
                    since: u64::from(r.since),
                    best: is(0),
                    multipath,
                    reason: self
                        .rejected
                        .get(key)
                        .and_then(|r| r.get(&prefix))
                        .cloned()
                        .unwrap_or_default(),
                });
            }
            // What the peer holds is its export of the best path, built again.
            let sent = self.loc.iter_ids().filter_map(|(pfx, id, d)| {
                if !want(&pfx) || !p.rib_out.holds(id) {
                    return None;
                }
                Some((pfx, {
                    let b = d.best()?;
                    self.advertised(key, &pfx, b, self.loc.source(b))?
                }))
            });
            for (prefix, (next_hop, attrs)) in sent {
                out.push(RibEntry {
                    prefix,
                    path_id: 0,
                    direction: "advertised",
                    peer: key.clone(),
                    next_hop: next_hop.to_string(),
                    attrs,
                    since: 0,
                    best: false,
                    multipath: false,
                    reason: String::new(),
                });
            }
        }
        if q.peer.is_none() {
            for (prefix, o) in self.originate.iter().filter(|(p, _)| want(p)) {
                let best = self
                    .loc
                    .get(prefix)
                    .and_then(|d| d.best())
                    .is_some_and(|b| b.is_local());
                out.push(RibEntry {
                    prefix: *prefix,
                    path_id: 0,
                    direction: "local",
                    peer: o.reason.clone(),
                    next_hop: String::new(),
                    attrs: self
                        .loc
                        .get(prefix)
                        .and_then(|d| d.paths().iter().find(|p| p.is_local()))
                        .map(|p| (*p.attrs).clone())
                        .unwrap_or_default(),
                    since: 0,
                    best,
                    multipath: false,
                    reason: String::new(),
                });
            }
        }
        out.sort_by(|a, b| (a.prefix, a.direction, &a.peer).cmp(&(b.prefix, b.direction, &b.peer)));
        out
    }

    async fn shutdown(&mut self) {
        let keys: Vec<String> = self.peers.keys().cloned().collect();
        for k in keys {
            if let Some(p) = self.peers.remove(&k) {
                let _ = p
                    .cmd
                    .send(PeerCmd::Stop(Some(Notification::cease(
                        notification::cease::ADMIN_SHUTDOWN,
                        "kbgp shutting down",
                    ))))
                    .await;
                let _ = tokio::time::timeout(std::time::Duration::from_secs(2), p.task).await;
            }
        }
        // By default kernel routes stay: a restart finds them and keeps what is
        // still valid. With keepKernelRoutesOnShutdown: false they go now.
        let keep = self
            .global
            .as_ref()
            .is_none_or(|g| g.keep_kernel_routes_on_shutdown);
        if let (false, Some((_, tx))) = (keep, &self.kernel) {
            let ops: Vec<fib::Op> = self.installed.keys().map(|p| fib::Op::Delete(*p)).collect();
            let n = ops.len();
            let (done_tx, done_rx) = oneshot::channel();
            if tx.send((ops, Some(done_tx))).is_ok() {
                let _ = tokio::time::timeout(std::time::Duration::from_secs(5), done_rx).await;
                info!(routes = n, "kernel routes removed");
            }
        }
        if let Some(l) = self.listener.take() {
            l.task.abort();
        }
    }
}
