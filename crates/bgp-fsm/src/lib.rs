//! The BGP session state machine (RFC 4271 §8), sans-IO.
//!
//! A [`Connection`] is the part of the FSM that lives on one TCP connection:
//! OpenSent → OpenConfirm → Established. It takes decoded messages and the
//! current time, and answers with [`Output`]s (send this, the session is up,
//! here is an UPDATE, close). It owns the hold and keepalive timers as
//! deadlines; the driver sleeps until [`Connection::next_deadline`] and calls
//! [`Connection::on_timer`]. No sockets, no clocks: tests drive it directly.
//!
//! Idle / Connect / Active (ConnectRetry, reconnect back-off, passive mode)
//! belong to the peer driver, which owns the sockets; [`State`] names all six
//! states so both report in RFC terms. Connection collisions (§6.8) are
//! settled by [`collision_keeps_local`].

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use bgp_wire::notification::{self, Notification};
use bgp_wire::open::{self as wopen, AddPathMode, Capability, Open};
use bgp_wire::{Ctx, Family, Message, RouteRefresh, Update};

/// RFC 4271 §8.2.2 states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum State {
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Idle => "Idle",
            State::Connect => "Connect",
            State::Active => "Active",
            State::OpenSent => "OpenSent",
            State::OpenConfirm => "OpenConfirm",
            State::Established => "Established",
        }
    }
}

/// The AS a peer must have: a number, or FRR-style `external` / `internal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum RemoteAs {
    Number(u32),
    /// Any AS but ours (eBGP).
    External,
    /// Our own AS (iBGP).
    Internal,
}

impl RemoteAs {
    pub fn accepts(self, local_as: u32, peer_as: u32) -> bool {
        match self {
            RemoteAs::Number(n) => n == peer_as,
            RemoteAs::External => peer_as != local_as,
            RemoteAs::Internal => peer_as == local_as,
        }
    }
}

impl std::fmt::Display for RemoteAs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RemoteAs::Number(n) => write!(f, "{n}"),
            RemoteAs::External => f.write_str("external"),
            RemoteAs::Internal => f.write_str("internal"),
        }
    }
}

/// What this side offers and accepts on a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCfg {
    pub local_as: u32,
    pub remote_as: RemoteAs,
    pub router_id: Ipv4Addr,
    /// Proposed hold time in seconds (0 = no keepalives, RFC allows).
    pub hold_time: u16,
    pub families: Vec<Family>,
    /// Offer RFC 8950 IPv4-over-IPv6 next hops.
    pub extended_next_hop: bool,
    /// Offer add-path for these families.
    pub add_path: Vec<(Family, AddPathMode)>,
    pub extended_messages: bool,
    /// Graceful restart time to advertise (RFC 4724); `None` = do not advertise.
    pub graceful_restart: Option<u16>,
    /// Capability codes the peer must advertise, or the OPEN is refused with
    /// Unsupported Capability (RFC 5492 §3).
    pub required_capabilities: Vec<u8>,
}

impl SessionCfg {
    pub fn new(local_as: u32, remote_as: RemoteAs, router_id: Ipv4Addr) -> Self {
        SessionCfg {
            local_as,
            remote_as,
            router_id,
            hold_time: 90,
            families: vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST],
            extended_next_hop: false,
            add_path: vec![],
            extended_messages: true,
            graceful_restart: None,
            required_capabilities: vec![],
        }
    }

    /// The OPEN this side sends.
    pub fn open(&self) -> Open {
        let mut caps: Vec<Capability> = self
            .families
            .iter()
            .map(|f| Capability::Multiprotocol(*f))
            .collect();
        caps.push(Capability::RouteRefresh);
        caps.push(Capability::EnhancedRouteRefresh);
        caps.push(Capability::FourOctetAs(self.local_as));
        if self.extended_next_hop {
            caps.push(Capability::ExtendedNextHop(vec![(
                Family::IPV4_UNICAST,
                bgp_wire::AFI_IPV6,
            )]));
        }
        if !self.add_path.is_empty() {
            caps.push(Capability::AddPath(self.add_path.clone()));
        }
        if self.extended_messages {
            caps.push(Capability::ExtendedMessage);
        }
        if let Some(time) = self.graceful_restart {
            caps.push(Capability::GracefulRestart {
                restarting: false,
                notification: false,
                time,
                families: vec![],
            });
        }
        Open::new(self.local_as, self.hold_time, self.router_id, caps)
    }
}

/// What both sides agreed on, known once the peer's OPEN is accepted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Negotiated {
    pub peer_as: u32,
    pub peer_id: Ipv4Addr,
    pub hold_time: u16,
    pub keepalive: u16,
    pub families: Vec<Family>,
    pub four_octet_as: bool,
    pub route_refresh: bool,
    pub enhanced_route_refresh: bool,
    pub extended_next_hop: bool,
    pub extended_messages: bool,
    pub add_path_rx: Vec<Family>,
    pub add_path_tx: Vec<Family>,
    /// The peer's graceful restart time, when it advertised the capability.
    pub peer_graceful_restart: Option<u16>,
    /// Names of every capability the peer advertised.
    pub peer_capabilities: Vec<String>,
}

impl Negotiated {
    /// The codec context for this session.
    pub fn ctx(&self) -> Ctx {
        Ctx {
            four_octet_as: self.four_octet_as,
            add_path_rx: self.add_path_rx.iter().map(|f| (*f, true)).collect(),
            add_path_tx: self.add_path_tx.iter().map(|f| (*f, true)).collect(),
            extended_messages: self.extended_messages,
        }
    }

    pub fn is_ibgp(&self, local_as: u32) -> bool {
        self.peer_as == local_as
    }
}

/// Check the peer's OPEN against our configuration and work out what was
/// negotiated, or the NOTIFICATION to refuse it with.
pub fn negotiate(cfg: &SessionCfg, peer: &Open) -> Result<Negotiated, Notification> {
    let open_err =
        |sub: u8, data: Vec<u8>| Notification::new(notification::OPEN_MESSAGE_ERROR, sub, data);
    let peer_as = peer.asn();
    if !cfg.remote_as.accepts(cfg.local_as, peer_as) {
        let data = if peer_as > 0xffff {
            peer_as.to_be_bytes().to_vec()
        } else {
            (peer_as as u16).to_be_bytes().to_vec()
        };
        return Err(open_err(notification::open::BAD_PEER_AS, data));
    }
    if peer.hold_time == 1 || peer.hold_time == 2 {
        return Err(open_err(notification::open::UNACCEPTABLE_HOLD_TIME, vec![]));
    }
    let ibgp = peer_as == cfg.local_as;
    if peer.bgp_id.is_unspecified() || (ibgp && peer.bgp_id == cfg.router_id) {
        return Err(open_err(
            notification::open::BAD_BGP_IDENTIFIER,
            peer.bgp_id.octets().to_vec(),
        ));
    }
    for code in &cfg.required_capabilities {
        if !peer.has(*code) {
            return Err(open_err(
                notification::open::UNSUPPORTED_CAPABILITY,
                vec![*code, 0],
            ));
        }
    }
    let hold_time = cfg.hold_time.min(peer.hold_time);
    let peer_families = peer.families();
    let families: Vec<Family> = cfg
        .families
        .iter()
        .copied()
        .filter(|f| peer_families.contains(f))
        .collect();
    let mut add_path_rx = vec![];
    let mut add_path_tx = vec![];
    if let Some(Capability::AddPath(theirs)) = peer
        .capabilities
        .iter()
        .find(|c| c.code() == wopen::CAP_ADD_PATH)
    {
        for (f, ours) in &cfg.add_path {
            if let Some((_, m)) = theirs.iter().find(|(tf, _)| tf == f) {
                if ours.can_receive() && m.can_send() {
                    add_path_rx.push(*f);
                }
                if ours.can_send() && m.can_receive() {
                    add_path_tx.push(*f);
                }
            }
        }
    }
    let extended_next_hop = cfg.extended_next_hop
        && peer.capabilities.iter().any(|c| match c {
            Capability::ExtendedNextHop(v) => v
                .iter()
                .any(|(f, nh)| *f == Family::IPV4_UNICAST && *nh == bgp_wire::AFI_IPV6),
            _ => false,
        });
    Ok(Negotiated {
        peer_as,
        peer_id: peer.bgp_id,
        hold_time,
        keepalive: hold_time / 3,
        families,
        four_octet_as: peer.four_octet_as().is_some(),
        route_refresh: peer.has(wopen::CAP_ROUTE_REFRESH),
        enhanced_route_refresh: peer.has(wopen::CAP_ENHANCED_ROUTE_REFRESH),
        extended_next_hop,
        extended_messages: cfg.extended_messages && peer.has(wopen::CAP_EXTENDED_MESSAGE),
        add_path_rx,
        add_path_tx,
        peer_graceful_restart: peer.capabilities.iter().find_map(|c| match c {
            Capability::GracefulRestart { time, .. } => Some(*time),
            _ => None,
        }),
        peer_capabilities: peer.capabilities.iter().map(|c| c.name()).collect(),
    })
}

/// Why a connection closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// We sent this NOTIFICATION.
    Sent(Notification),
    /// The peer sent this NOTIFICATION.
    Received(Notification),
    /// Asked to stop by the driver (a NOTIFICATION was sent if given).
    Stopped,
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseReason::Sent(n) => write!(f, "sent {n}"),
            CloseReason::Received(n) => write!(f, "received {n}"),
            CloseReason::Stopped => f.write_str("stopped"),
        }
    }
}

/// What the FSM asks its driver to do or know. Short-lived, so `Send` holds its message inline.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum Output {
    Send(Message),
    /// The peer's OPEN was accepted (OpenConfirm): check for a collision now.
    OpenReceived(Ipv4Addr),
    /// The session is Established.
    Established(Box<Negotiated>),
    Update(Box<Update>),
    RouteRefresh(RouteRefresh),
    /// Close the TCP connection. Any NOTIFICATION was emitted as `Send` first.
    Close(CloseReason),
}

/// One connection's share of the FSM: OpenSent, OpenConfirm, Established.
#[derive(Debug)]
pub struct Connection {
    cfg: SessionCfg,
    state: State,
    negotiated: Option<Negotiated>,
    hold_deadline: Option<Instant>,
    keepalive_deadline: Option<Instant>,
}

/// Hold time used while waiting for the peer's OPEN (RFC 4271 §8.2.2 suggests 4 minutes).
pub const LARGE_HOLD: Duration = Duration::from_secs(240);

impl Connection {
    /// The TCP connection is up: send our OPEN and enter OpenSent.
    pub fn start(cfg: SessionCfg, now: Instant) -> (Self, Vec<Output>) {
        let open = cfg.open();
        let c = Connection {
            cfg,
            state: State::OpenSent,
            negotiated: None,
            hold_deadline: Some(now + LARGE_HOLD),
            keepalive_deadline: None,
        };
        (c, vec![Output::Send(Message::Open(open))])
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    pub fn cfg(&self) -> &SessionCfg {
        &self.cfg
    }

    /// The codec context to decode the next message with.
    pub fn ctx(&self) -> Ctx {
        self.negotiated
            .as_ref()
            .map(Negotiated::ctx)
            .unwrap_or_else(Ctx::modern)
    }

    /// When [`Connection::on_timer`] must next be called.
    pub fn next_deadline(&self) -> Option<Instant> {
        match (self.hold_deadline, self.keepalive_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn close_with(&mut self, n: Notification) -> Vec<Output> {
        self.state = State::Idle;
        self.hold_deadline = None;
        self.keepalive_deadline = None;
        vec![
            Output::Send(Message::Notification(n.clone())),
            Output::Close(CloseReason::Sent(n)),
        ]
    }

    fn hold(&self) -> Option<Duration> {
        self.negotiated
            .as_ref()
            .filter(|n| n.hold_time > 0)
            .map(|n| Duration::from_secs(n.hold_time as u64))
    }

    fn keepalive(&self) -> Option<Duration> {
        self.negotiated
            .as_ref()
            .filter(|n| n.keepalive > 0)
            .map(|n| Duration::from_secs(n.keepalive as u64))
    }

    /// Any message from the peer restarts the hold timer (in OpenConfirm and Established).
    fn heard(&mut self, now: Instant) {
        self.hold_deadline = self.hold().map(|h| now + h);
    }

    /// The driver sent an UPDATE: it counts as a keepalive (RFC 4271 §4.4).
    pub fn sent_update(&mut self, now: Instant) {
        if self.state == State::Established {
            self.keepalive_deadline = self.keepalive().map(|k| now + k);
        }
    }

    /// A message arrived.
    pub fn on_message(&mut self, msg: Message, now: Instant) -> Vec<Output> {
        let fsm_err = |sub| Notification::new(notification::FSM_ERROR, sub, vec![]);
        match (self.state, msg) {
            (State::Idle, _) => vec![],
            (_, Message::Notification(n)) => {
                self.state = State::Idle;
                self.hold_deadline = None;
                self.keepalive_deadline = None;
                vec![Output::Close(CloseReason::Received(n))]
            }
            (State::OpenSent, Message::Open(open)) => match negotiate(&self.cfg, &open) {
                Err(n) => self.close_with(n),
                Ok(neg) => {
                    let id = neg.peer_id;
                    self.negotiated = Some(neg);
                    self.state = State::OpenConfirm;
                    self.heard(now);
                    self.keepalive_deadline = self.keepalive().map(|k| now + k);
                    vec![Output::Send(Message::Keepalive), Output::OpenReceived(id)]
                }
            },
            (State::OpenSent, _) => self.close_with(fsm_err(1)),
            (State::OpenConfirm, Message::Keepalive) => {
                self.state = State::Established;
                self.heard(now);
                let neg = self.negotiated.clone().expect("negotiated in OpenConfirm");
                vec![Output::Established(Box::new(neg))]
            }
            (State::OpenConfirm, _) => self.close_with(fsm_err(2)),
            (State::Established, Message::Keepalive) => {
                self.heard(now);
                vec![]
            }
            (State::Established, Message::Update(u)) => {
                self.heard(now);
                vec![Output::Update(Box::new(u))]
            }
            (State::Established, Message::RouteRefresh(rr)) => {
                self.heard(now);
                vec![Output::RouteRefresh(rr)]
            }
            (State::Established, Message::Open(_)) => self.close_with(fsm_err(3)),
            (State::Connect | State::Active, _) => vec![],
        }
    }

    /// An UPDATE arrived: in Established it is the driver's to take as it
    /// is (`Ok`, the hold timer restarted, as [`Connection::on_message`]
    /// would, without boxing it into an output list: a table comes in
    /// hundreds of thousands of them); in any other state the outputs of
    /// [`Connection::on_message`] (`Err`).
    pub fn on_update(&mut self, u: Update, now: Instant) -> Result<Update, Vec<Output>> {
        if self.state == State::Established {
            self.heard(now);
            return Ok(u);
        }
        Err(self.on_message(Message::Update(u), now))
    }

    /// The decoder refused a message: send its NOTIFICATION and close.
    pub fn on_decode_error(&mut self, n: Notification) -> Vec<Output> {
        if self.state == State::Idle {
            return vec![];
        }
        self.close_with(n)
    }

    /// Time passed: fire whichever timer is due.
    pub fn on_timer(&mut self, now: Instant) -> Vec<Output> {
        if self.hold_deadline.is_some_and(|d| d <= now) {
            return self.close_with(Notification::new(
                notification::HOLD_TIMER_EXPIRED,
                0,
                vec![],
            ));
        }
        if self.keepalive_deadline.is_some_and(|d| d <= now) {
            self.keepalive_deadline = self.keepalive().map(|k| now + k);
            return vec![Output::Send(Message::Keepalive)];
        }
        vec![]
    }

    /// Stop the session (configuration removed, shutdown, collision loser).
    pub fn stop(&mut self, n: Option<Notification>) -> Vec<Output> {
        if self.state == State::Idle {
            return vec![];
        }
        match n {
            Some(n) => self.close_with(n),
            None => {
                self.state = State::Idle;
                vec![Output::Close(CloseReason::Stopped)]
            }
        }
    }
}

/// RFC 4271 §6.8: on a collision, the connection initiated by the speaker
/// with the higher BGP Identifier survives. Returns true when the connection
/// *we* initiated is the one to keep.
pub fn collision_keeps_local(local_id: Ipv4Addr, remote_id: Ipv4Addr) -> bool {
    u32::from(local_id) > u32::from(remote_id)
}

/// Reconnect back-off: doubles from `base` up to `max`, per consecutive failure.
pub fn backoff(base: Duration, max: Duration, failures: u32) -> Duration {
    base.saturating_mul(1u32 << failures.min(16)).min(max)
}

#[cfg(test)]
mod tests;
