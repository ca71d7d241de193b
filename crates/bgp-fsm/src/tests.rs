use super::*;

fn id(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn cfg(local: u32, remote: RemoteAs) -> SessionCfg {
    SessionCfg::new(local, remote, id("192.0.2.1"))
}

fn peer_open(asn: u32, hold: u16, rid: &str) -> Message {
    let mut c = cfg(asn, RemoteAs::External);
    c.router_id = id(rid);
    c.hold_time = hold;
    Message::Open(c.open())
}

fn sent_notification(out: &[Output]) -> Option<(u8, u8)> {
    out.iter().find_map(|o| match o {
        Output::Send(Message::Notification(n)) => Some((n.code, n.subcode)),
        _ => None,
    })
}

/// A connection Established at `t0` with a 30 s hold time that heard from
/// its peer at `t0` + 20 s: still up at + 35 s (the hold timer restarted
/// then), Hold Timer Expired at + 51 s, in Idle.
fn hold_restarted_at_20s(c: &mut Connection, t0: Instant) {
    assert!(c
        .on_timer(t0 + Duration::from_secs(35))
        .iter()
        .all(|o| !matches!(o, Output::Close(_))));
    let out = c.on_timer(t0 + Duration::from_secs(51));
    assert_eq!(sent_notification(&out), Some((4, 0)));
    assert_eq!(c.state(), State::Idle);
}

/// Walk a connection from TCP up to Established.
fn establish(c: SessionCfg, now: Instant) -> Connection {
    let (mut conn, out) = Connection::start(c, now);
    assert!(matches!(out[0], Output::Send(Message::Open(_))));
    let out = conn.on_message(peer_open(65002, 30, "192.0.2.2"), now);
    assert_eq!(out[0], Output::Send(Message::Keepalive));
    assert_eq!(conn.state(), State::OpenConfirm);
    let out = conn.on_message(Message::Keepalive, now);
    assert!(matches!(out[0], Output::Established(_)));
    assert_eq!(conn.state(), State::Established);
    conn
}

#[test]
fn open_sent_to_established_and_hold_negotiation() {
    let now = Instant::now();
    let conn = establish(cfg(65001, RemoteAs::Number(65002)), now);
    let n = conn.negotiated().unwrap();
    assert_eq!((n.hold_time, n.keepalive), (30, 10));
    assert!(n.four_octet_as && n.route_refresh && n.enhanced_route_refresh && n.extended_messages);
    assert_eq!(n.families, vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST]);
}

#[test]
fn bad_peer_as_is_refused() {
    let now = Instant::now();
    let (mut conn, _) = Connection::start(cfg(65001, RemoteAs::Number(65003)), now);
    let out = conn.on_message(peer_open(65002, 90, "192.0.2.2"), now);
    assert_eq!(sent_notification(&out), Some((2, 2)));
    assert!(matches!(
        out.last(),
        Some(Output::Close(CloseReason::Sent(_)))
    ));
    assert_eq!(conn.state(), State::Idle);
}

#[test]
fn remote_as_external_and_internal() {
    let now = Instant::now();
    let (mut c, _) = Connection::start(cfg(65001, RemoteAs::External), now);
    assert_eq!(
        sent_notification(&c.on_message(peer_open(65001, 90, "192.0.2.2"), now)),
        Some((2, 2))
    );
    let (mut c, _) = Connection::start(cfg(65001, RemoteAs::External), now);
    assert_eq!(
        sent_notification(&c.on_message(peer_open(4_200_000_000, 90, "192.0.2.2"), now)),
        None
    );
    let (mut c, _) = Connection::start(cfg(65001, RemoteAs::Internal), now);
    assert_eq!(
        sent_notification(&c.on_message(peer_open(65002, 90, "192.0.2.2"), now)),
        Some((2, 2))
    );
    // iBGP peer with our own router id.
    let (mut c, _) = Connection::start(cfg(65001, RemoteAs::Internal), now);
    assert_eq!(
        sent_notification(&c.on_message(peer_open(65001, 90, "192.0.2.1"), now)),
        Some((2, 3))
    );
}

#[test]
fn unacceptable_hold_time_and_required_capability() {
    let now = Instant::now();
    let (mut c, _) = Connection::start(cfg(65001, RemoteAs::External), now);
    assert_eq!(
        sent_notification(&c.on_message(peer_open(65002, 2, "192.0.2.2"), now)),
        Some((2, 6))
    );
    let mut k = cfg(65001, RemoteAs::External);
    k.extended_next_hop = true;
    k.required_capabilities = vec![bgp_wire::open::CAP_EXTENDED_NEXT_HOP];
    let (mut c, _) = Connection::start(k, now);
    assert_eq!(
        sent_notification(&c.on_message(peer_open(65002, 90, "192.0.2.2"), now)),
        Some((2, 7))
    );
}

#[test]
fn unexpected_messages_are_fsm_errors() {
    let now = Instant::now();
    let (mut c, _) = Connection::start(cfg(65001, RemoteAs::External), now);
    assert_eq!(
        sent_notification(&c.on_message(Message::Keepalive, now)),
        Some((5, 1))
    );
    let (mut c, _) = Connection::start(cfg(65001, RemoteAs::External), now);
    c.on_message(peer_open(65002, 90, "192.0.2.2"), now);
    assert_eq!(
        sent_notification(&c.on_message(Message::Update(Default::default()), now)),
        Some((5, 2))
    );
    let mut c = establish(cfg(65001, RemoteAs::External), now);
    assert_eq!(
        sent_notification(&c.on_message(peer_open(65002, 90, "192.0.2.2"), now)),
        Some((5, 3))
    );
}

#[test]
fn keepalive_and_hold_timers() {
    let t0 = Instant::now();
    let mut c = establish(cfg(65001, RemoteAs::External), t0);
    assert_eq!(c.next_deadline(), Some(t0 + Duration::from_secs(10)));
    let out = c.on_timer(t0 + Duration::from_secs(10));
    assert_eq!(out, vec![Output::Send(Message::Keepalive)]);
    // Peer keeps talking: hold restarts; then silence for the hold time.
    c.on_message(Message::Keepalive, t0 + Duration::from_secs(20));
    hold_restarted_at_20s(&mut c, t0);
}

#[test]
fn hold_time_zero_means_no_timers() {
    let t0 = Instant::now();
    let mut k = cfg(65001, RemoteAs::External);
    k.hold_time = 0;
    let mut c = establish(k, t0);
    assert_eq!(c.next_deadline(), None);
    assert!(c.on_timer(t0 + Duration::from_secs(10_000)).is_empty());
}

#[test]
fn open_sent_times_out_with_large_hold() {
    let t0 = Instant::now();
    let (mut c, _) = Connection::start(cfg(65001, RemoteAs::External), t0);
    assert!(c.on_timer(t0 + Duration::from_secs(239)).is_empty());
    assert_eq!(
        sent_notification(&c.on_timer(t0 + LARGE_HOLD)),
        Some((4, 0))
    );
}

#[test]
fn notification_received_closes() {
    let t0 = Instant::now();
    let mut c = establish(cfg(65001, RemoteAs::External), t0);
    let n = Notification::cease(notification::cease::ADMIN_SHUTDOWN, "bye");
    let out = c.on_message(Message::Notification(n.clone()), t0);
    assert_eq!(out, vec![Output::Close(CloseReason::Received(n))]);
}

#[test]
fn add_path_and_extended_next_hop_negotiation() {
    let t0 = Instant::now();
    let mut k = cfg(65001, RemoteAs::External);
    k.add_path = vec![(Family::IPV4_UNICAST, AddPathMode::Both)];
    k.extended_next_hop = true;
    let mut p = k.clone();
    p.local_as = 65002;
    p.router_id = id("192.0.2.2");
    p.add_path = vec![(Family::IPV4_UNICAST, AddPathMode::Send)];
    let (mut c, _) = Connection::start(k, t0);
    c.on_message(Message::Open(p.open()), t0);
    let n = c.negotiated().unwrap();
    assert_eq!(n.add_path_rx, vec![Family::IPV4_UNICAST]);
    assert!(n.add_path_tx.is_empty());
    assert!(n.extended_next_hop);
    assert!(n.ctx().add_path_rx(Family::IPV4_UNICAST));
}

#[test]
fn collision_and_backoff() {
    assert!(collision_keeps_local(id("192.0.2.9"), id("192.0.2.1")));
    assert!(!collision_keeps_local(id("192.0.2.1"), id("192.0.2.9")));
    let b = Duration::from_secs(1);
    assert_eq!(backoff(b, Duration::from_secs(30), 0), b);
    assert_eq!(
        backoff(b, Duration::from_secs(30), 3),
        Duration::from_secs(8)
    );
    assert_eq!(
        backoff(b, Duration::from_secs(30), 40),
        Duration::from_secs(30)
    );
}

#[test]
fn an_update_is_taken_as_is_only_when_established() {
    let t0 = Instant::now();
    let u = Update {
        nlri: vec![bgp_wire::update::Nlri::new("192.0.2.0/24".parse().unwrap())],
        ..Default::default()
    };
    // OpenConfirm: an FSM error, as `on_message` gives.
    let (mut c, _) = Connection::start(cfg(65001, RemoteAs::External), t0);
    c.on_message(peer_open(65002, 30, "192.0.2.2"), t0);
    let out = c.on_update(u.clone(), t0).expect_err("not established");
    assert_eq!(sent_notification(&out), Some((5, 2)));
    assert_eq!(c.state(), State::Idle);
    // Established: the same UPDATE back, and the hold timer restarted.
    let mut c = establish(cfg(65001, RemoteAs::External), t0);
    assert_eq!(c.on_update(u.clone(), t0 + Duration::from_secs(20)), Ok(u));
    hold_restarted_at_20s(&mut c, t0);
}
