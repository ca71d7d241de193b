//! One task per peer: Idle/Connect/Active with back-off, up to two TCP
//! connections at once while a collision is settled (RFC 4271 §6.8), and the
//! sans-IO [`Connection`] FSM driving each.
//!
//! ```text
//!   main loop ──PeerCmd, Outbox──▶ peer task ──PeerEvent──▶ main loop
//!                                    │  ▲
//!  Bytes (counted, never waited on)  │  │ ConnEvent (frames within a read window,
//!                                    ▼  │ closes, connect results)
//!                          writer task  reader task   (one pair per TCP connection)
//! ```
//! The reader only frames bytes; decoding happens here with the context the
//! session negotiated. The peer task never waits on a write, so it always
//! reads on and two speakers pushing full tables at each other cannot
//! deadlock; while a connection has more than [`WRITE_LIMIT`] bytes not yet
//! written, the peer task leaves the outbox alone, so what a peer that does
//! not read is sent waits there, where the main loop sees it and holds back
//! (as a set of changed destinations) what would come after.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bgp_fsm::{
    backoff, collision_keeps_local, CloseReason, Connection, Negotiated, Output, RemoteAs,
    SessionCfg, State,
};
use bgp_rib::SharedAttrs;
use bgp_wire::notification::{self, Notification};
use bgp_wire::update::NextHop;
use bgp_wire::{frame_len, Message, PathAttrs, RouteRefresh, Update, MAX_LEN_EXTENDED};
use bytes::{Bytes, BytesMut};
use datastore::{PeerCfg, PeerTarget};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn, Instrument};

use crate::status::{lock, unix_now, SharedStatus};

pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Decoded UPDATEs one peer may have queued for the main loop, counted in
/// [`CREDIT_PREFIXES`]: 256 UPDATEs of a few prefixes, or 4 of a thousand
/// withdrawals (each decoded prefix takes memory; with 1,024 ten peers
/// sending a table at once held ~10 MiB more at the peak, no faster). Past that the peer task
/// waits (and TCP flow control slows the sender) instead of a whole table
/// piling up decoded in memory while the main loop works.
pub(crate) const UPDATE_CREDIT: usize = 256;
/// An UPDATE takes one credit per this many prefixes it carries (and at least one).
const CREDIT_PREFIXES: usize = 16;
/// Longest wait for credit: past it the UPDATE is queued anyway, so that a
/// main loop blocked on this peer's command queue can never deadlock with it.
const CREDIT_WAIT: Duration = Duration::from_secs(1);
pub(crate) const RETRY_BASE: Duration = Duration::from_secs(1);
pub(crate) const RETRY_MAX: Duration = Duration::from_secs(30);

/// From the main loop to a peer.
#[derive(Debug)]
pub(crate) enum PeerCmd {
    /// (Boxed: a command in the queue costs a pointer, not a socket.)
    Incoming(Box<(TcpStream, SocketAddr)>),
    Stop(Option<Notification>),
}

/// Encoded messages from the main loop to one peer, for session `gen`.
/// The main loop appends; the peer task takes everything there is as one
/// write. While a peer's writes lag, what the main loop has for it
/// accumulates in one buffer instead of a queue of messages; past
/// [`OUTBOX_LIMIT`] the main loop stops encoding for that peer (it notes
/// which destinations changed instead, see `Main::queue`) and is told by a
/// [`PeerEvent::Drained`] when the peer task has taken the buffer. The main
/// loop never waits for a peer.
#[derive(Default)]
pub(crate) struct Outbox {
    inner: std::sync::Mutex<Pending>,
    /// Something was put.
    ready: tokio::sync::Notify,
}

#[derive(Default)]
struct Pending {
    gen: u64,
    bytes: BytesMut,
    updates: u64,
    /// The main loop wants a [`PeerEvent::Drained`] when this is taken.
    full: bool,
}

/// Bytes a peer may have waiting before the main loop holds back its
/// changes (a full table of 1M IPv4 prefixes, about 20 MB, is put at once
/// all the same).
pub(crate) const OUTBOX_LIMIT: usize = 8 << 20;

impl Outbox {
    /// Append `bytes` (carrying `updates` UPDATEs) for session `gen`;
    /// anything left for an older session is dropped. Returns whether the
    /// buffer is now past [`OUTBOX_LIMIT`]: then a [`PeerEvent::Drained`]
    /// will follow when the peer task takes it.
    pub(crate) fn put(&self, gen: u64, bytes: BytesMut, updates: u64) -> bool {
        let full = {
            let mut p = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            if p.gen != gen {
                *p = Pending {
                    gen,
                    ..Default::default()
                };
            }
            if p.bytes.is_empty() {
                p.bytes = bytes;
            } else {
                p.bytes.extend_from_slice(&bytes);
            }
            p.updates += updates;
            p.full = p.bytes.len() > OUTBOX_LIMIT;
            p.full
        };
        self.ready.notify_one();
        full
    }

    /// Everything waiting: (session, bytes, UPDATEs, whether the main loop
    /// waits to hear it was taken). The buffer is handed over whole, so an
    /// idle peer keeps no capacity.
    fn take(&self) -> (u64, Bytes, u64, bool) {
        let mut p = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let bytes = std::mem::take(&mut p.bytes).freeze();
        (
            p.gen,
            bytes,
            std::mem::take(&mut p.updates),
            std::mem::take(&mut p.full),
        )
    }
}

/// From a peer to the main loop.
#[derive(Debug)]
pub(crate) enum PeerEvent {
    Up {
        key: String,
        gen: u64,
        neg: Box<Negotiated>,
        local: SocketAddr,
    },
    Down {
        key: String,
        gen: u64,
    },
    /// UPDATEs in arrival order (those of one chunk read from the socket).
    Update {
        key: String,
        gen: u64,
        updates: Vec<Received>,
        /// Prefixes they announce and withdraw (counted once, here).
        prefixes: usize,
        /// Returned when the main loop takes the UPDATEs: a peer has at most
        /// [`UPDATE_CREDIT`] credits of decoded UPDATEs waiting for it.
        _credit: Option<tokio::sync::OwnedSemaphorePermit>,
    },
    Refresh {
        key: String,
        gen: u64,
        rr: RouteRefresh,
    },
    /// The outbox, past its limit, was taken: the main loop may send again.
    Drained {
        key: String,
        gen: u64,
    },
}

/// What a connection's reader (and the connect and neighbour-discovery
/// tasks) tell the peer task.
///
/// 24 bytes: what is larger is boxed, since tokio's channel allocates its
/// slots 32 at a time for every connection (a route reflector has
/// thousands), 768 bytes a channel instead of 2 KiB at 64-byte events.
enum ConnEvent {
    Connected(Box<Result<TcpStream, String>>),
    /// A neighbour's link-local address heard on the peer's interface.
    Neighbor(std::net::Ipv6Addr),
    /// Whole messages, one after another, how many, and their share of the
    /// connection's [`READ_WINDOW`] (one box per chunk of up to [`CHUNK`]).
    Frames(u64, Box<(Bytes, usize, tokio::sync::OwnedSemaphorePermit)>),
    HeaderError(u64, Box<Notification>),
    /// (connection, why)
    Closed(Box<(u64, String)>),
}

/// Bytes handed to a connection's writer and not yet written.
#[derive(Default)]
struct WriteQueue {
    bytes: std::sync::atomic::AtomicUsize,
    /// A write finished.
    wrote: tokio::sync::Notify,
}

impl Conn {
    /// Hand bytes to the writer (never waits), counting them.
    fn send(&self, b: Bytes) {
        self.wq
            .bytes
            .fetch_add(b.len(), std::sync::atomic::Ordering::Relaxed);
        let _ = self.tx.send(b);
    }
}

/// Bytes a connection may have waiting for its writer before the peer task
/// stops taking from the outbox.
const WRITE_LIMIT: usize = 4 << 20;

struct Conn {
    id: u64,
    outbound: bool,
    fsm: Connection,
    tx: mpsc::UnboundedSender<Bytes>,
    wq: Arc<WriteQueue>,
    reader: JoinHandle<()>,
    local: SocketAddr,
    remote: SocketAddr,
}

pub(crate) struct Peer {
    pub key: String,
    pub cfg: PeerCfg,
    pub session: SessionCfg,
    pub status: SharedStatus,
    pub main: mpsc::UnboundedSender<PeerEvent>,
    pub cmds: mpsc::Receiver<PeerCmd>,
    pub outbox: Arc<Outbox>,
    /// The speaker's attribute sets: what this peer sends is interned here,
    /// not in the main loop.
    pub interner: Arc<bgp_rib::Interner>,
}

/// An UPDATE as the main loop takes it: the attribute set of its
/// announcements already interned, one per next hop (and ADD-PATH path id),
/// with that next hop as its route next hop and that path id as its route
/// path id (the RIB keeps both in a path's set).
#[derive(Debug)]
pub(crate) struct Received {
    pub update: Update,
    /// The set of the first next hop and path id (almost every UPDATE has
    /// one) ...
    first: Option<(SetKey, SharedAttrs)>,
    /// ... and those of any others.
    more: Vec<(SetKey, SharedAttrs)>,
    /// The AS the peer task looked for in the UPDATE's AS path (the
    /// session's local AS), and whether it is there: the loop check's
    /// costly part, done where the UPDATE was decoded (the main loop reads
    /// it if the AS is still its own; see `Main::import_check`).
    own_as: (u32, bool),
}

/// What tells apart the sets of one UPDATE: next hop, path id (0: none).
type SetKey = (NextHop, u32);

impl Received {
    /// The UPDATE's own set becomes the first one (not copied); the others
    /// are copies of it with their next hop and path id. The UPDATE keeps
    /// its classic next hop, which `announcements` reads, and nothing else
    /// of its set.
    pub(crate) fn new(mut update: Update, interner: &bgp_rib::Interner, local_as: u32) -> Received {
        let has = update
            .attrs
            .as_path
            .as_ref()
            .is_some_and(|p| p.contains(local_as));
        let own_as = (local_as, has);
        let mut template = Some(std::mem::take(&mut update.attrs));
        update.attrs.next_hop = template.as_ref().and_then(|t| t.next_hop);
        let mut first: Option<(SetKey, SharedAttrs)> = None;
        let mut more = Vec::new();
        let mut last = None;
        for (n, nh) in update.announcements() {
            let k = (nh, n.path_id.unwrap_or(0));
            if last == Some(k) {
                continue;
            }
            last = Some(k);
            if first.as_ref().is_some_and(|(x, _)| *x == k) || more.iter().any(|(x, _)| *x == k) {
                continue;
            }
            let mut a = template.take().unwrap_or_else(|| {
                first
                    .as_ref()
                    .map(|(_, a)| PathAttrs::clone(a))
                    .unwrap_or_default()
            });
            a.next_hop = None;
            a.set_route_next_hop(Some(nh));
            a.set_route_path_id(k.1);
            let a = interner.intern(a);
            if first.is_none() {
                first = Some((k, a));
            } else {
                more.push((k, a));
            }
        }
        Received {
            update,
            first,
            more,
            own_as,
        }
    }

    /// Start bringing what importing this UPDATE reads first into the CPU's
    /// cache (its prefixes and its first attribute set, written by a peer
    /// task on another core): called for the UPDATE after next while one is
    /// imported.
    pub(crate) fn prefetch(&self) {
        use bgp_rib::prefetch;
        let u = &self.update;
        prefetch::slice(&u.nlri);
        prefetch::slice(&u.withdrawn);
        if let Some(m) = &u.mp_reach {
            prefetch::slice(&m.nlri);
        }
        if let Some((_, a)) = &self.first {
            prefetch::read(&**a);
        }
    }

    /// Whether the UPDATE's AS path holds `asn`, if that is the AS the
    /// peer task looked for.
    pub(crate) fn as_path_has(&self, asn: u32) -> Option<bool> {
        (self.own_as.0 == asn).then_some(self.own_as.1)
    }

    /// The interned set of the announcements with next hop `nh` and path
    /// id `path_id` (0: none).
    pub(crate) fn set(&self, nh: NextHop, path_id: u32) -> Option<&SharedAttrs> {
        self.first
            .iter()
            .chain(&self.more)
            .find(|(x, _)| *x == (nh, path_id))
            .map(|(_, a)| a)
    }
}

struct Run {
    conns: Vec<Conn>,
    next_id: u64,
    gen: u64,
    established: Option<u64>,
    failures: u32,
    retry_at: Option<Instant>,
    connecting: bool,
    ev_tx: mpsc::UnboundedSender<ConnEvent>,
    /// Unnumbered: the interface (name, index), our link-local address on it,
    /// and the neighbour's once heard.
    iface: Option<(String, u32, std::net::Ipv6Addr)>,
    neighbor: Option<std::net::Ipv6Addr>,
    credit: std::sync::Arc<tokio::sync::Semaphore>,
    /// UPDATEs decoded from the chunk being handled, for the main loop in
    /// one event (see [`Peer::flush_updates`]), the prefixes they carry and
    /// the session generation they belong to.
    pending: Vec<Received>,
    pending_prefixes: usize,
    pending_gen: u64,
}

fn is_ebgp(cfg: &PeerCfg, local_as: u32) -> bool {
    match cfg.remote_as {
        RemoteAs::Number(n) => n != local_as,
        RemoteAs::External => true,
        RemoteAs::Internal => false,
    }
}

/// Bytes of frames a connection may have read and not yet handled (a few
/// chunks: more only moves what waits from the kernel's socket buffers into
/// kbgp's memory; 1 MiB cost ten peers sending a table at once ~10 MiB of
/// peak RSS and was no faster). At least [`CHUNK`] plus the longest
/// message, the most one chunk takes.
const READ_WINDOW: usize = 256 << 10;
const _: () = assert!(READ_WINDOW >= CHUNK + MAX_LEN_EXTENDED);
/// A chunk of whole messages handed from a connection's reader to its peer
/// task stops growing past this many bytes (so it is at most this plus one
/// message, well inside [`READ_WINDOW`]).
const CHUNK: usize = 32 << 10;

async fn reader(id: u64, mut r: OwnedReadHalf, ev: mpsc::UnboundedSender<ConnEvent>) {
    let window = std::sync::Arc::new(tokio::sync::Semaphore::new(READ_WINDOW));
    // Held only while bytes are in it: an idle session (a thousand route
    // reflector clients) keeps no read buffer; one is taken when the socket
    // becomes readable, and it grows while a table streams in.
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        // Every whole message in the buffer (up to about CHUNK bytes) goes
        // to the peer task as one chunk: one channel message and one window
        // share per read, not per BGP message (a table streams in as
        // hundreds of thousands of small UPDATEs).
        loop {
            let (mut total, mut count) = (0, 0);
            let mut bad = None;
            while total < CHUNK {
                match frame_len(&buf[total..], MAX_LEN_EXTENDED) {
                    Ok(Some(len)) if buf.len() - total >= len => {
                        total += len;
                        count += 1;
                    }
                    Ok(_) => break,
                    Err(n) => {
                        bad = Some(n);
                        break;
                    }
                }
            }
            if total > 0 {
                let f = buf.split_to(total).freeze();
                // Frames read but not yet handled are bounded: past the
                // window the socket is left unread and TCP holds the sender
                // back (a full table waits in the kernel's socket buffers,
                // not decoded in ours).
                let Ok(permit) = window.clone().acquire_many_owned(total as u32).await else {
                    return;
                };
                if ev
                    .send(ConnEvent::Frames(id, Box::new((f, count, permit))))
                    .is_err()
                {
                    return;
                }
            }
            if let Some(n) = bad {
                let _ = ev.send(ConnEvent::HeaderError(id, Box::new(n)));
                return;
            }
            if total == 0 {
                break;
            }
        }
        let would_block = |e: &std::io::Error| e.kind() == std::io::ErrorKind::WouldBlock;
        let read = if buf.is_empty() {
            // Nothing pending: read on into what is left of the buffer while
            // bytes keep coming; when none are waiting, let it go.
            match r.try_read_buf(&mut buf) {
                Err(e) if would_block(&e) => {
                    buf = BytesMut::new();
                    match r.readable().await {
                        Ok(()) => {
                            // (with_capacity, not reserve: the capacity it
                            // starts with is what it grows by later.)
                            buf = BytesMut::with_capacity(4096);
                            match r.try_read_buf(&mut buf) {
                                Err(e) if would_block(&e) => continue,
                                res => res,
                            }
                        }
                        Err(e) => Err(e),
                    }
                }
                res => res,
            }
        } else {
            r.read_buf(&mut buf).await
        };
        match read {
            Ok(0) => {
                let _ = ev.send(ConnEvent::Closed(Box::new((
                    id,
                    "connection closed by peer".into(),
                ))));
                return;
            }
            Err(e) => {
                let _ = ev.send(ConnEvent::Closed(Box::new((id, format!("read: {e}")))));
                return;
            }
            Ok(_) => {}
        }
    }
}

async fn writer(
    mut w: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
    wq: Arc<WriteQueue>,
) {
    while let Some(b) = rx.recv().await {
        if w.write_all(&b).await.is_err() {
            return;
        }
        wq.bytes
            .fetch_sub(b.len(), std::sync::atomic::Ordering::Relaxed);
        wq.wrote.notify_one();
    }
    let _ = w.shutdown().await;
}

impl Peer {
    /// The peer's task. (Not an `async fn` wrapping `run_inner`, and the
    /// peer boxed: an async fn holds its moved-in `self` twice. The task of
    /// each of a route reflector's thousand clients takes 2 KiB and the
    /// peer 336 bytes, not 3.3 KiB.)
    pub(crate) fn run(self) -> impl std::future::Future<Output = ()> + Send {
        let span = tracing::info_span!("peer", peer = %self.key);
        Box::new(self).run_inner().instrument(span)
    }

    /// A peer kbgp cannot run yet says so in its status instead of failing silently.
    fn unsupported(&self) -> Option<&'static str> {
        None
    }

    fn ttl(&self) -> u32 {
        if self.cfg.ttl_security.is_some() {
            255
        } else if let Some(t) = self.cfg.ttl {
            t as u32
        } else if is_ebgp(&self.cfg, self.session.local_as) {
            1
        } else {
            64
        }
    }

    fn set_state(&self, state: State, info: &str) {
        let mut s = lock(&self.status);
        if s.state != state {
            s.since = unix_now();
        }
        s.state = state;
        s.info = info.to_string();
    }

    fn note_error(&self, e: &str) {
        lock(&self.status).last_error = Some(e.to_string());
    }

    async fn run_inner(mut self: Box<Self>) {
        if let Some(why) = self.unsupported() {
            warn!(reason = why, "peer not started");
            self.set_state(State::Idle, why);
            self.note_error(why);
            while let Some(cmd) = self.cmds.recv().await {
                if matches!(cmd, PeerCmd::Stop(_)) {
                    break;
                }
            }
            return;
        }
        let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
        let mut run = Run {
            conns: Vec::new(),
            next_id: 0,
            gen: 0,
            established: None,
            failures: 0,
            retry_at: (!self.cfg.passive).then(Instant::now),
            connecting: false,
            ev_tx,
            iface: None,
            neighbor: None,
            credit: std::sync::Arc::new(tokio::sync::Semaphore::new(UPDATE_CREDIT)),
            pending: Vec::new(),
            pending_prefixes: 0,
            pending_gen: 0,
        };
        if let PeerTarget::Interface(ifname) = &self.cfg.target {
            // Unnumbered: find the interface, then hear the neighbour by RA.
            loop {
                let found = crate::ndp::ifindex(ifname)
                    .ok()
                    .and_then(|i| crate::ndp::link_local(i).map(|ll| (i, ll)));
                if let Some((idx, ll)) = found {
                    let (ntx, mut nrx) = mpsc::unbounded_channel();
                    if let Err(e) = crate::ndp::spawn(
                        ifname.clone(),
                        Duration::from_secs(self.cfg.ra_interval.into()),
                        ntx,
                    ) {
                        warn!(interface = %ifname, "router advertisements: {e}");
                        self.note_error(&format!("router advertisements on {ifname}: {e}"));
                    }
                    let fwd = run.ev_tx.clone();
                    tokio::spawn(async move {
                        while let Some(a) = nrx.recv().await {
                            if fwd.send(ConnEvent::Neighbor(a)).is_err() {
                                return;
                            }
                        }
                    });
                    info!(interface = %ifname, ifindex = idx, link_local = %ll, "unnumbered peer: sending router advertisements");
                    run.iface = Some((ifname.clone(), idx, ll));
                    break;
                }
                let why =
                    format!("interface {ifname} not found or without an IPv6 link-local address");
                self.set_state(State::Idle, &why);
                self.note_error(&why);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    cmd = self.cmds.recv() => if matches!(cmd, None | Some(PeerCmd::Stop(_))) { return },
                }
            }
        }
        self.set_state(
            State::Active,
            if self.cfg.passive {
                "Passive"
            } else {
                "Active"
            },
        );
        loop {
            let deadline = run
                .conns
                .iter()
                .filter_map(|c| c.fsm.next_deadline().map(Instant::from_std))
                .chain(
                    run.retry_at
                        .filter(|_| run.conns.is_empty() && !run.connecting),
                )
                .min();
            // The session's writer backlog: past WRITE_LIMIT the outbox waits.
            let wq = run
                .established
                .and_then(|id| run.conns.iter().find(|c| c.id == id))
                .map(|c| c.wq.clone());
            let blocked = wq
                .as_ref()
                .is_some_and(|q| q.bytes.load(std::sync::atomic::Ordering::Relaxed) >= WRITE_LIMIT);
            tokio::select! {
                _ = async {
                    match &wq {
                        Some(q) => q.wrote.notified().await,
                        None => std::future::pending().await,
                    }
                }, if blocked => {}
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    let now = Instant::now();
                    if run.conns.is_empty() && !run.connecting && run.retry_at.is_some_and(|t| t <= now) {
                        run.retry_at = None;
                        self.start_connect(&mut run);
                    }
                    let ids: Vec<u64> = run.conns.iter().map(|c| c.id).collect();
                    for id in ids {
                        if let Some(c) = run.conns.iter_mut().find(|c| c.id == id) {
                            let outs = c.fsm.on_timer(now.into_std());
                            self.handle(&mut run, id, outs).await;
                        }
                    }
                }
                cmd = self.cmds.recv() => match cmd {
                    None | Some(PeerCmd::Stop(_)) => {
                        let n = match cmd { Some(PeerCmd::Stop(n)) => n, _ => None };
                        let ids: Vec<u64> = run.conns.iter().map(|c| c.id).collect();
                        for id in ids {
                            if let Some(c) = run.conns.iter_mut().find(|c| c.id == id) {
                                let outs = c.fsm.stop(n.clone());
                                self.handle(&mut run, id, outs).await;
                            }
                        }
                        self.set_state(State::Idle, "Stopped");
                                    return;
                    }
                    Some(PeerCmd::Incoming(c)) => self.incoming(&mut run, c.0, c.1).await,
                },
                _ = self.outbox.ready.notified(), if !blocked => {
                    let (gen, bytes, updates, full) = self.outbox.take();
                    if full {
                        let _ = self.main.send(PeerEvent::Drained { key: self.key.clone(), gen });
                    }
                    if gen != run.gen || bytes.is_empty() {
                        continue;
                    }
                    if let Some(c) = run.established.and_then(|id| run.conns.iter_mut().find(|c| c.id == id)) {
                        c.fsm.sent_update(std::time::Instant::now());
                        c.send(bytes);
                        lock(&self.status).sent.update += updates;
                    }
                },
                Some(ev) = ev_rx.recv() => match ev {
                    ConnEvent::Neighbor(a) => {
                        if run.neighbor != Some(a) {
                            info!(neighbor = %a, "neighbour heard by router advertisement");
                            run.neighbor = Some(a);
                            if run.conns.is_empty() && !run.connecting && !self.cfg.passive {
                                run.retry_at = Some(Instant::now());
                            }
                        }
                    }
                    ConnEvent::Connected(r) => {
                        run.connecting = false;
                        match *r {
                            Ok(stream) => {
                                if run.established.is_some() || run.conns.len() >= 2 {
                                    continue;
                                }
                                if let Ok(remote) = stream.peer_addr() {
                                    self.add_conn(&mut run, stream, remote, true).await;
                                }
                            }
                            Err(e) => {
                                debug!(error = %e, "connect failed");
                                self.note_error(&e);
                                if run.conns.is_empty() {
                                    self.schedule_retry(&mut run);
                                    self.set_state(State::Active, &format!("Active Socket: {e}"));
                                }
                            }
                        }
                    }
                    ConnEvent::Frames(id, frames) => {
                        let (mut chunk, count, _window) = *frames;
                        let now = std::time::Instant::now();
                        let mut counted = crate::status::Counters::default();
                        // Room for every message of the chunk at once (a
                        // table comes in thousands of UPDATEs a chunk, of
                        // 320 bytes each decoded: not grown by doubling).
                        run.pending.reserve(count);
                        while chunk.len() >= bgp_wire::message::HEADER_LEN {
                            let Some(c) = run.conns.iter_mut().find(|c| c.id == id) else { break };
                            // (The reader framed it: the length is checked.)
                            let len = usize::from(u16::from_be_bytes([chunk[16], chunk[17]]));
                            let frame = chunk.split_to(len.min(chunk.len()));
                            let outs = match Message::decode(&frame, &c.fsm.ctx()) {
                                Ok(Message::Update(u)) => {
                                    counted.count("UPDATE");
                                    match c.fsm.on_update(u, now) {
                                        Ok(u) => {
                                            self.take_update(&mut run, u);
                                            continue;
                                        }
                                        Err(outs) => outs,
                                    }
                                }
                                Ok(m) => {
                                    counted.count(m.kind());
                                    c.fsm.on_message(m, now)
                                }
                                Err(n) => {
                                    warn!(error = %n, "malformed message");
                                    c.fsm.on_decode_error(n)
                                }
                            };
                            self.handle(&mut run, id, outs).await;
                        }
                        lock(&self.status).received.add(&counted);
                        self.flush_updates(&mut run).await;
                    }
                    ConnEvent::HeaderError(id, n) => {
                        if let Some(c) = run.conns.iter_mut().find(|c| c.id == id) {
                            let outs = c.fsm.on_decode_error(*n);
                            self.handle(&mut run, id, outs).await;
                        }
                    }
                    ConnEvent::Closed(closed) => {
                        let (id, why) = *closed;
                        if run.conns.iter().any(|c| c.id == id) {
                            self.drop_conn(&mut run, id, &why);
                        }
                    }
                },
            }
        }
    }

    fn schedule_retry(&self, run: &mut Run) {
        if self.cfg.passive {
            return;
        }
        let d = backoff(RETRY_BASE, RETRY_MAX, run.failures);
        run.failures = run.failures.saturating_add(1);
        run.retry_at = Some(Instant::now() + d);
    }

    fn start_connect(&self, run: &mut Run) {
        let (remote, source) = match (&self.cfg.target, &run.iface, run.neighbor) {
            (PeerTarget::Addr(addr), _, _) => (
                SocketAddr::new(*addr, self.cfg.port),
                self.cfg.source_address.map(|a| SocketAddr::new(a, 0)),
            ),
            (PeerTarget::Interface(_), Some((_, idx, own)), Some(n)) => (
                SocketAddr::V6(std::net::SocketAddrV6::new(n, self.cfg.port, 0, *idx)),
                Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                    *own, 0, 0, *idx,
                ))),
            ),
            // Unnumbered and no neighbour heard yet: wait for its RA or its connection.
            _ => {
                self.set_state(
                    State::Active,
                    "Active (waiting for the neighbour's router advertisement)",
                );
                return;
            }
        };
        run.connecting = true;
        self.set_state(State::Connect, "Connect");
        let ttl = self.ttl();
        let password = self.cfg.password.clone();
        let tx = run.ev_tx.clone();
        tokio::spawn(
            async move {
                let r = connect(remote, source, ttl, password.as_deref()).await;
                let _ = tx.send(ConnEvent::Connected(Box::new(r)));
            }
            .in_current_span(),
        );
    }

    async fn incoming(&self, run: &mut Run, stream: TcpStream, remote: SocketAddr) {
        if run.established.is_some() || run.conns.len() >= 2 {
            // RFC 4271 §6.8: an Established session wins over a new connection.
            debug!(%remote, "refusing a second connection");
            let mut s = stream;
            let n = Notification::new(
                notification::CEASE,
                notification::cease::CONNECTION_COLLISION,
                vec![],
            );
            let _ = s
                .write_all(&Message::Notification(n).to_bytes(&Default::default()))
                .await;
            return;
        }
        let _ = stream.set_ttl(self.ttl());
        if let (Some(_), SocketAddr::V6(v6)) = (&run.iface, remote) {
            run.neighbor = Some(*v6.ip());
        }
        self.add_conn(run, stream, remote, false).await;
    }

    async fn add_conn(&self, run: &mut Run, stream: TcpStream, remote: SocketAddr, outbound: bool) {
        let _ = stream.set_nodelay(true);
        let local = match stream.local_addr() {
            Ok(a) => a,
            Err(_) => return,
        };
        let (r, w) = stream.into_split();
        let id = run.next_id;
        run.next_id += 1;
        // Unbounded: the peer task never waits on a write (what the main
        // loop sends is bounded by the outbox), so it always reads on and a
        // peer writing a full table to us while we write one to it cannot
        // deadlock on the read window.
        let (tx, rx) = mpsc::unbounded_channel();
        let wq = Arc::new(WriteQueue::default());
        tokio::spawn(writer(w, rx, wq.clone()));
        let reader = tokio::spawn(reader(id, r, run.ev_tx.clone()));
        let (fsm, outs) = Connection::start(self.session.clone(), std::time::Instant::now());
        info!(%remote, outbound, "TCP connection up, OPEN sent");
        run.conns.push(Conn {
            id,
            outbound,
            fsm,
            tx,
            wq,
            reader,
            local,
            remote,
        });
        self.set_state(State::OpenSent, "OpenSent");
        self.handle(run, id, outs).await;
    }

    /// Forget a connection; if it carried the session, the session is down.
    fn drop_conn(&self, run: &mut Run, id: u64, why: &str) {
        let Some(pos) = run.conns.iter().position(|c| c.id == id) else {
            return;
        };
        let c = run.conns.remove(pos);
        c.reader.abort();
        drop(c.tx); // the writer flushes what is queued, then closes
        if run.established == Some(id) {
            run.established = None;
            warn!(reason = why, "session down");
            let _ = self.main.send(PeerEvent::Down {
                key: self.key.clone(),
                gen: run.gen,
            });
            let mut s = lock(&self.status);
            s.negotiated = None;
            s.established_at = None;
            s.prefixes_received = 0;
            s.prefixes_advertised = 0;
        } else {
            debug!(reason = why, "connection closed");
        }
        self.note_error(why);
        if run.conns.is_empty() {
            self.schedule_retry(run);
            let info = if self.cfg.passive {
                "Passive".to_string()
            } else {
                format!("Active {why}")
            };
            self.set_state(State::Active, &info);
        }
    }

    /// Hand the UPDATEs decoded so far to the main loop, as one event, once
    /// it has credit for them (at most [`CREDIT_WAIT`]).
    async fn flush_updates(&self, run: &mut Run) {
        if run.pending.is_empty() {
            return;
        }
        let updates = std::mem::take(&mut run.pending);
        let prefixes = std::mem::take(&mut run.pending_prefixes);
        // (Each UPDATE takes one credit, and one more per CREDIT_PREFIXES.)
        let n = (updates.len() + prefixes / CREDIT_PREFIXES).min(UPDATE_CREDIT);
        let credit =
            tokio::time::timeout(CREDIT_WAIT, run.credit.clone().acquire_many_owned(n as u32))
                .await
                .ok()
                .and_then(Result::ok);
        let _ = self.main.send(PeerEvent::Update {
            key: self.key.clone(),
            gen: run.pending_gen,
            updates,
            prefixes,
            _credit: credit,
        });
    }

    /// An UPDATE of the Established session: handed on with the others of
    /// its chunk (see `flush_updates`).
    fn take_update(&self, run: &mut Run, u: Update) {
        if run.pending.is_empty() {
            run.pending_gen = run.gen;
        }
        run.pending_prefixes += u.withdrawals().count() + u.announcements().count();
        run.pending
            .push(Received::new(u, &self.interner, self.session.local_as));
    }

    async fn handle(&self, run: &mut Run, id: u64, outs: Vec<Output>) {
        let mut queue: std::collections::VecDeque<(u64, Output)> =
            outs.into_iter().map(|o| (id, o)).collect();
        while let Some((id, out)) = queue.pop_front() {
            // What the main loop hears of this session stays in order.
            if !matches!(out, Output::Update(_) | Output::Send(_)) {
                self.flush_updates(run).await;
            }
            let Some(c) = run.conns.iter_mut().find(|c| c.id == id) else {
                continue;
            };
            match out {
                Output::Send(m) => {
                    lock(&self.status).sent.count(m.kind());
                    let b = m.to_bytes(&c.fsm.ctx()).freeze();
                    c.send(b);
                }
                Output::OpenReceived(remote_id) => {
                    self.set_state(State::OpenConfirm, "OpenConfirm");
                    // A collision: another connection that has seen the peer's OPEN too.
                    let me_outbound = c.outbound;
                    let other = run.conns.iter_mut().find(|o| {
                        o.id != id
                            && matches!(o.fsm.state(), State::OpenConfirm | State::Established)
                    });
                    if let Some(o) = other {
                        let keep_outbound =
                            collision_keeps_local(self.session.router_id, remote_id);
                        let loser =
                            if o.fsm.state() == State::Established || o.outbound == keep_outbound {
                                id
                            } else {
                                o.id
                            };
                        info!(keep_outbound, me_outbound, "connection collision resolved");
                        let cease = Notification::new(
                            notification::CEASE,
                            notification::cease::CONNECTION_COLLISION,
                            vec![],
                        );
                        if let Some(l) = run.conns.iter_mut().find(|c| c.id == loser) {
                            queue.extend(l.fsm.stop(Some(cease)).into_iter().map(|o| (loser, o)));
                        }
                    }
                }
                Output::Established(neg) => {
                    run.gen += 1;
                    run.established = Some(id);
                    run.failures = 0;
                    info!(peer_as = neg.peer_as, peer_id = %neg.peer_id, hold = neg.hold_time, remote = %c.remote, "session Established");
                    {
                        let mut s = lock(&self.status);
                        s.negotiated = Some((*neg).clone());
                        s.local_addr = Some(c.local);
                        s.remote_addr = Some(c.remote);
                        s.established_count += 1;
                        s.established_at = Some(unix_now());
                        s.last_error = None;
                    }
                    self.set_state(State::Established, "Established");
                    let _ = self.main.send(PeerEvent::Up {
                        key: self.key.clone(),
                        gen: run.gen,
                        neg,
                        local: c.local,
                    });
                    // Any other connection loses.
                    let cease = Notification::new(
                        notification::CEASE,
                        notification::cease::CONNECTION_COLLISION,
                        vec![],
                    );
                    for o in run.conns.iter_mut().filter(|o| o.id != id) {
                        queue.extend(
                            o.fsm
                                .stop(Some(cease.clone()))
                                .into_iter()
                                .map(|x| (o.id, x)),
                        );
                    }
                }
                Output::Update(u) => self.take_update(run, *u),
                Output::RouteRefresh(rr) => {
                    let _ = self.main.send(PeerEvent::Refresh {
                        key: self.key.clone(),
                        gen: run.gen,
                        rr,
                    });
                }
                Output::Close(reason) => {
                    match &reason {
                        CloseReason::Sent(n) => warn!(notification = %n, "sent NOTIFICATION"),
                        CloseReason::Received(n) => {
                            warn!(notification = %n, "received NOTIFICATION")
                        }
                        CloseReason::Stopped => {}
                    }
                    let why = reason.to_string();
                    self.drop_conn(run, id, &why);
                }
            }
        }
    }
}

async fn connect(
    remote: SocketAddr,
    source: Option<SocketAddr>,
    ttl: u32,
    password: Option<&str>,
) -> Result<TcpStream, String> {
    let sock = if remote.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| format!("socket: {e}"))?;
    if let Some(pw) = password {
        use std::os::fd::AsRawFd;
        crate::sockopt::set_md5(sock.as_raw_fd(), remote.ip(), Some(pw.as_bytes()))
            .map_err(|e| format!("TCP MD5: {e}"))?;
    }
    if let Some(src) = source {
        sock.bind(src).map_err(|e| format!("bind {src}: {e}"))?;
    }
    let s = tokio::time::timeout(CONNECT_TIMEOUT, sock.connect(remote))
        .await
        .map_err(|_| "Connection timed out".to_string())?
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::ConnectionRefused {
                "Connection refused".to_string()
            } else {
                e.to_string()
            }
        })?;
    let _ = s.set_ttl(ttl);
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(classic: bool, v6: bool) -> Update {
        use bgp_wire::update::MpReach;
        use bgp_wire::{AsPath, Family, Nlri, Origin};
        let mut u = Update {
            attrs: PathAttrs {
                origin: Some(Origin::Igp),
                as_path: Some(AsPath::from_sequence(vec![64512, 64513])),
                next_hop: classic.then(|| "192.0.2.1".parse().unwrap()),
                ..Default::default()
            },
            ..Default::default()
        };
        if classic {
            u.nlri = vec![
                Nlri::new("198.51.100.0/24".parse().unwrap()),
                Nlri::new("203.0.113.0/24".parse().unwrap()),
            ];
        }
        if v6 {
            u.mp_reach = Some(MpReach {
                family: Family::IPV6_UNICAST,
                next_hop: NextHop::V6 {
                    global: "2001:db8::1".parse().unwrap(),
                    link_local: Some("fe80::1".parse().unwrap()),
                },
                nlri: vec![Nlri::new("2001:db8:1::/48".parse().unwrap())],
            });
        }
        u
    }

    /// An UPDATE's announcements get one interned set per next hop, with
    /// it as the route next hop and no classic NEXT_HOP in it; the same
    /// attributes from another UPDATE share those sets.
    #[test]
    fn a_received_update_has_one_interned_set_per_next_hop() {
        let i = bgp_rib::Interner::default();
        let r = Received::new(update(true, true), &i, 65000);
        let v4 = NextHop::V4("192.0.2.1".parse().unwrap());
        let v6 = r.update.mp_reach.as_ref().unwrap().next_hop;
        let (a4, a6) = (r.set(v4, 0).unwrap(), r.set(v6, 0).unwrap());
        assert_eq!(a4.route_next_hop(), Some(v4));
        assert_eq!(a6.route_next_hop(), Some(v6));
        assert_eq!((a4.next_hop, a6.next_hop), (None, None));
        assert_eq!(a4.as_path, a6.as_path);
        assert_eq!(i.len(), 2);
        // The UPDATE still says which prefixes have which next hop.
        let mut hops: Vec<_> = r.update.announcements().map(|(_, nh)| nh).collect();
        hops.dedup();
        assert_eq!(hops, vec![v4, v6]);
        assert!(r
            .set(NextHop::V4("192.0.2.9".parse().unwrap()), 0)
            .is_none());
        assert!(r.set(v4, 1).is_none(), "no path id 1 in it");
        // Another UPDATE with the same attributes: the same sets.
        let again = Received::new(update(true, false), &i, 65000);
        assert!(SharedAttrs::ptr_eq(again.set(v4, 0).unwrap(), a4));
        let only6 = Received::new(update(false, true), &i, 65000);
        assert!(SharedAttrs::ptr_eq(only6.set(v6, 0).unwrap(), a6));
        assert_eq!(i.len(), 2);
        // A withdrawal only: no set.
        let w = Received::new(update(false, false), &i, 65000);
        assert!(w.first.is_none() && w.more.is_empty());
    }

    /// The peer task looks for the session's AS in the UPDATE's AS path;
    /// the answer is given only for that AS (the main loop looks itself
    /// if its AS changed since).
    #[test]
    fn a_received_update_says_whether_its_as_path_holds_the_local_as() {
        let i = bgp_rib::Interner::default();
        let looped = Received::new(update(true, false), &i, 64513);
        assert_eq!(looped.as_path_has(64513), Some(true));
        assert_eq!(looped.as_path_has(65000), None);
        let clean = Received::new(update(true, false), &i, 65000);
        assert_eq!(clean.as_path_has(65000), Some(false));
        assert_eq!(clean.as_path_has(64513), None);
    }

    /// ADD-PATH: announcements with other path ids get sets of their own,
    /// each with its path id as route path id; equal attributes otherwise.
    #[test]
    fn a_received_update_has_one_set_per_next_hop_and_path_id() {
        let i = bgp_rib::Interner::default();
        let mut u = update(true, false);
        for (n, id) in u.nlri.iter_mut().zip([7, 9]) {
            n.path_id = Some(id);
        }
        let r = Received::new(u, &i, 65000);
        let v4 = NextHop::V4("192.0.2.1".parse().unwrap());
        let (a7, a9) = (r.set(v4, 7).unwrap(), r.set(v4, 9).unwrap());
        assert_eq!((a7.route_path_id(), a9.route_path_id()), (7, 9));
        assert!(!SharedAttrs::ptr_eq(a7, a9));
        assert_eq!(
            (a7.as_path.clone(), a7.route_next_hop()),
            (a9.as_path.clone(), Some(v4))
        );
        assert!(r.set(v4, 0).is_none());
    }

    /// The reader hands on whole messages only, many per chunk, in order,
    /// and a bad header after the good messages before it.
    #[tokio::test]
    async fn the_reader_hands_on_whole_messages_in_chunks_then_a_header_error() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut w = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (r, _) = l.accept().await.unwrap();
        let (r, _keep) = r.into_split();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(reader(7, r, tx));
        let ctx = bgp_wire::Ctx::default();
        let one = Message::Keepalive.to_bytes(&ctx);
        // 5,000 KEEPALIVEs (95,000 bytes: more than one chunk), the last
        // one written in two parts.
        let mut all = BytesMut::new();
        for _ in 0..5000 {
            all.extend_from_slice(&one);
        }
        let cut = all.len() - 7;
        w.write_all(&all[..cut]).await.unwrap();
        w.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        w.write_all(&all[cut..]).await.unwrap();
        // Then a message whose marker is wrong.
        let mut bad = one.clone();
        bad[0] = 0;
        w.write_all(&bad).await.unwrap();
        let (mut messages, mut chunks) = (0, 0);
        loop {
            match rx.recv().await.expect("an event") {
                ConnEvent::Frames(id, frames) => {
                    let (mut b, count, permit) = *frames;
                    assert_eq!(id, 7);
                    assert_eq!(permit.num_permits(), b.len());
                    assert!(b.len() <= CHUNK + MAX_LEN_EXTENDED);
                    chunks += 1;
                    let mut here = 0;
                    while !b.is_empty() {
                        let len = frame_len(&b, MAX_LEN_EXTENDED).unwrap().unwrap();
                        let m = b.split_to(len);
                        assert_eq!(Message::decode(&m, &ctx).unwrap(), Message::Keepalive);
                        here += 1;
                    }
                    // (The count the peer task reserves room for.)
                    assert_eq!(count, here, "messages counted in the chunk");
                    messages += here;
                }
                ConnEvent::HeaderError(id, n) => {
                    assert_eq!(id, 7);
                    assert_eq!(n.code, notification::MESSAGE_HEADER_ERROR);
                    break;
                }
                _ => panic!("unexpected event"),
            }
        }
        assert_eq!(messages, 5000);
        assert_eq!(std::mem::size_of::<ConnEvent>(), 24);
        assert!((2..100).contains(&chunks), "{chunks} chunks");
        task.await.unwrap();
    }
}
