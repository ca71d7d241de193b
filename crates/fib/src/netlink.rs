//! The Linux backend: rtnetlink. Routes carry kbgp's protocol id and go to
//! kbgp's table; ECMP routes are one multipath route.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::time::Duration;

use futures_util::TryStreamExt;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use netlink_packet_core::{
    ErrorBuffer, NetlinkBuffer, NetlinkMessage, NetlinkPayload, NLMSG_DONE, NLMSG_ERROR, NLM_F_ACK,
    NLM_F_CREATE, NLM_F_DUMP, NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteType, RouteVia,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, AsyncSocket, AsyncSocketExt, SocketAddr, TokioSocket};
use rtnetlink::{Handle, RouteMessageBuilder, RouteNextHopBuilder};
use tokio::sync::mpsc;
use tracing::warn;

use crate::sockopt::{
    attach_filter, force_rcvbuf, own_route_change, own_route_filter, RTM_NEWROUTE,
    RTM_PROTOCOL_OFFSET,
};
use crate::{Action, Backend, Gateway, KernelRoute, Op, Route};

pub struct Netlink {
    /// For the address dump (small, rare).
    handle: Handle,
    /// Route requests and route dumps, without rtnetlink's per-request
    /// machinery: requests go many to a datagram and only errors (and the
    /// last request of each datagram) are acked.
    sock: TokioSocket,
    seq: u32,
    rx: Vec<u8>,
    table: u32,
    protocol: u8,
}

/// Route requests per datagram (about 64 bytes each). The kernel handles a
/// datagram's requests in the `sendmsg` call, one after another.
const PER_DATAGRAM: usize = 256;
/// Receive buffer: every request of a datagram may fail, each error its own
/// datagram of about a kilobyte of accounting.
const RCVBUF: usize = 4 << 20;

impl Netlink {
    /// Open netlink sockets (needs CAP_NET_ADMIN to change routes).
    pub fn new(table: u32, protocol: u8) -> Result<Self, String> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| format!("netlink: {e}"))?;
        tokio::spawn(conn);
        let mut sock = TokioSocket::new(NETLINK_ROUTE).map_err(|e| format!("netlink: {e}"))?;
        sock.socket_mut()
            .bind_auto()
            .map_err(|e| format!("netlink bind: {e}"))?;
        sock.socket_ref()
            .connect(&SocketAddr::new(0, 0))
            .map_err(|e| format!("netlink connect: {e}"))?;
        // Errors need not carry the request back; the sequence number names it.
        let _ = sock.socket_ref().set_cap_ack(true);
        if force_rcvbuf(sock.as_raw_fd(), RCVBUF).is_err() {
            let _ = sock.socket_ref().set_rx_buf_sz(RCVBUF);
        }
        Ok(Netlink {
            handle,
            sock,
            seq: 1,
            rx: Vec::with_capacity(64 << 10),
            table,
            protocol,
        })
    }

    fn message(&self, r: &Route) -> Result<RouteMessage, String> {
        let proto = RouteProtocol::from(self.protocol);
        let hops = |gws: &[Gateway], v4: bool| -> Result<Vec<_>, String> {
            gws.iter()
                .map(|g| {
                    let b = if v4 {
                        RouteNextHopBuilder::new_ipv4()
                    } else {
                        RouteNextHopBuilder::new_ipv6()
                    };
                    let mut b = b.via(g.addr).map_err(|e| e.to_string())?;
                    if let Some(i) = g.ifindex {
                        b = b.interface(i);
                    }
                    Ok(b.build())
                })
                .collect()
        };
        let msg = match (r.prefix, &r.action) {
            (IpNet::V4(p), a) => {
                let b = RouteMessageBuilder::<Ipv4Addr>::new()
                    .destination_prefix(p.addr(), p.prefix_len())
                    .table_id(self.table)
                    .protocol(proto);
                match a {
                    Action::Blackhole => b.kind(RouteType::BlackHole).build(),
                    Action::Unicast(g) => b.multipath(hops(g, true)?).build(),
                }
            }
            (IpNet::V6(p), a) => {
                let b = RouteMessageBuilder::<Ipv6Addr>::new()
                    .destination_prefix(p.addr(), p.prefix_len())
                    .table_id(self.table)
                    .protocol(proto);
                match a {
                    Action::Blackhole => b.kind(RouteType::BlackHole).build(),
                    Action::Unicast(g) => b.multipath(hops(g, false)?).build(),
                }
            }
        };
        Ok(msg)
    }

    /// A delete that matches kbgp's route for `p` whatever its type
    /// (unicast or blackhole) and scope, as `ip route del` does.
    fn delete_message(&self, p: IpNet) -> RouteMessage {
        let proto = RouteProtocol::from(self.protocol);
        let mut m = match p {
            IpNet::V4(p) => RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(p.addr(), p.prefix_len())
                .table_id(self.table)
                .protocol(proto)
                .build(),
            IpNet::V6(p) => RouteMessageBuilder::<Ipv6Addr>::new()
                .destination_prefix(p.addr(), p.prefix_len())
                .table_id(self.table)
                .protocol(proto)
                .build(),
        };
        m.header.kind = RouteType::Unspec;
        m.header.scope = netlink_packet_route::route::RouteScope::NoWhere;
        m
    }

    /// One request as a netlink message at the end of `buf`.
    fn encode(&self, op: &Op, seq: u32, buf: &mut Vec<u8>) -> Result<(), String> {
        let (payload, flags) = match op {
            Op::Replace(r) => (
                RouteNetlinkMessage::NewRoute(self.message(r)?),
                NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE,
            ),
            Op::Delete(p) => (
                RouteNetlinkMessage::DelRoute(self.delete_message(*p)),
                NLM_F_REQUEST,
            ),
        };
        put(payload, flags, seq, buf);
        Ok(())
    }

    fn next_seq(&mut self, n: usize) -> u32 {
        let s = self.seq;
        self.seq = self.seq.wrapping_add(n as u32);
        s
    }

    /// The next datagram from the kernel, into `self.rx`. The kernel answers
    /// requests inside `sendmsg` and builds dump parts inside `recvmsg`, so
    /// the answer is there at once; the timeout only guards against a kernel
    /// that never answers.
    async fn recv(&mut self) -> Result<(), String> {
        self.rx.clear();
        match tokio::time::timeout(Duration::from_secs(10), self.sock.recv(&mut self.rx)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("netlink receive: {e}")),
            Err(_) => Err("netlink receive: no answer from the kernel in 10 s".into()),
        }
    }

    /// Routes of the kernel whose protocol `keep` accepts. The protocol is
    /// read from the message header, so routes left out (kbgp's own, a
    /// million at a full table) are never parsed.
    async fn dump(&mut self, keep: impl Fn(u8) -> bool) -> Result<Vec<RouteMessage>, String> {
        let mut out = Vec::new();
        for req in [
            RouteMessageBuilder::<Ipv4Addr>::new().build(),
            RouteMessageBuilder::<Ipv6Addr>::new().build(),
        ] {
            let seq = self.next_seq(1);
            let mut buf = Vec::new();
            put(
                RouteNetlinkMessage::GetRoute(req),
                NLM_F_REQUEST | NLM_F_DUMP,
                seq,
                &mut buf,
            );
            self.sock
                .send(&buf)
                .await
                .map_err(|e| format!("netlink dump: {e}"))?;
            'dump: loop {
                self.recv().await?;
                for (kind, s, m) in messages(&self.rx) {
                    if s != seq {
                        continue;
                    }
                    match kind {
                        NLMSG_DONE => break 'dump,
                        NLMSG_ERROR => {
                            let code = error_code(m);
                            if code != 0 {
                                return Err(format!("netlink dump: {}", errno(code)));
                            }
                        }
                        RTM_NEWROUTE
                            if m.len() > RTM_PROTOCOL_OFFSET && keep(m[RTM_PROTOCOL_OFFSET]) =>
                        {
                            if let Ok(NetlinkMessage {
                                payload:
                                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(r)),
                                ..
                            }) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(m)
                            {
                                out.push(r);
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(out)
    }
}

/// `payload` as a netlink message with these flags and sequence number, at
/// the end of `buf`.
fn put(payload: RouteNetlinkMessage, flags: u16, seq: u32, buf: &mut Vec<u8>) {
    let mut nl = NetlinkMessage::from(payload);
    nl.header.flags = flags;
    nl.header.sequence_number = seq;
    nl.finalize();
    let at = buf.len();
    buf.resize(at + nl.buffer_len(), 0);
    nl.serialize(&mut buf[at..]);
}

/// The messages of one datagram: (type, sequence number, whole message).
fn messages(buf: &[u8]) -> impl Iterator<Item = (u16, u32, &[u8])> {
    let mut off = 0;
    std::iter::from_fn(move || {
        let h = NetlinkBuffer::new_checked(buf.get(off..)?).ok()?;
        let m = &buf[off..off + h.length() as usize];
        off += (m.len() + 3) & !3;
        Some((h.message_type(), h.sequence_number(), m))
    })
}

/// The code of an `NLMSG_ERROR` message: 0 for an ack, else `-errno`.
fn error_code(m: &[u8]) -> i32 {
    NetlinkBuffer::new_checked(m)
        .and_then(|h| ErrorBuffer::new_checked(h.payload()))
        .map(|e| e.code().map_or(0, |c| c.get()))
        .unwrap_or(-libc::EPROTO)
}

fn errno(code: i32) -> std::io::Error {
    std::io::Error::from_raw_os_error(code.saturating_neg())
}

fn op_prefix(op: &Op) -> IpNet {
    match op {
        Op::Replace(r) => r.prefix,
        Op::Delete(p) => *p,
    }
}

/// Changes of the kernel's routes, addresses and links that kbgp did not
/// make: a signal (coalesced) per change, and one when the kernel had to
/// drop notifications (the socket overflowed), since something was missed.
/// kbgp's own route changes are dropped by a socket filter in the kernel.
pub fn watch(protocol: u8) -> Result<mpsc::Receiver<()>, String> {
    let mut sock = TokioSocket::new(NETLINK_ROUTE).map_err(|e| format!("netlink: {e}"))?;
    let groups = (libc::RTMGRP_LINK
        | libc::RTMGRP_IPV4_IFADDR
        | libc::RTMGRP_IPV4_ROUTE
        | libc::RTMGRP_IPV6_IFADDR
        | libc::RTMGRP_IPV6_ROUTE) as u32;
    sock.socket_mut()
        .bind(&SocketAddr::new(0, groups))
        .map_err(|e| format!("netlink bind: {e}"))?;
    if let Err(e) = attach_filter(sock.as_raw_fd(), &mut own_route_filter(protocol)) {
        warn!("netlink: no socket filter for kbgp's own route changes ({e}); they are dropped in userspace");
    }
    let _ = force_rcvbuf(sock.as_raw_fd(), 1 << 20);
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        let mut buf = Vec::with_capacity(64 << 10);
        loop {
            buf.clear();
            let got = tokio::select! {
                r = sock.recv(&mut buf) => r,
                _ = tx.closed() => return,
            };
            let changed = match got {
                Ok(()) => messages(&buf).any(|(_, _, m)| !own_route_change(m, protocol)),
                // Notifications were lost: look at the table again.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => true,
                Err(e) => {
                    warn!("netlink change notifications: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    false
                }
            };
            if changed && matches!(tx.try_send(()), Err(mpsc::error::TrySendError::Closed(_))) {
                return;
            }
        }
    });
    Ok(rx)
}

fn addr(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

fn table_of(m: &RouteMessage) -> u32 {
    m.attributes
        .iter()
        .find_map(|a| {
            if let RouteAttribute::Table(t) = a {
                Some(*t)
            } else {
                None
            }
        })
        .unwrap_or(m.header.table as u32)
}

fn prefix_of(m: &RouteMessage) -> Option<IpNet> {
    let len = m.header.destination_prefix_length;
    let dst = m.attributes.iter().find_map(|a| {
        if let RouteAttribute::Destination(d) = a {
            addr(d)
        } else {
            None
        }
    });
    match (m.header.address_family, dst) {
        (_, Some(IpAddr::V4(a))) => Ipv4Net::new(a, len).ok().map(IpNet::V4),
        (_, Some(IpAddr::V6(a))) => Ipv6Net::new(a, len).ok().map(IpNet::V6),
        (netlink_packet_route::AddressFamily::Inet, None) => Some(IpNet::V4(Ipv4Net::default())),
        (netlink_packet_route::AddressFamily::Inet6, None) => Some(IpNet::V6(Ipv6Net::default())),
        _ => None,
    }
}

fn gateways(m: &RouteMessage) -> Vec<Gateway> {
    let oif = m.attributes.iter().find_map(|a| {
        if let RouteAttribute::Oif(i) = a {
            Some(*i)
        } else {
            None
        }
    });
    let mut v = Vec::new();
    for a in &m.attributes {
        match a {
            RouteAttribute::Gateway(g) => {
                v.extend(addr(g).map(|addr| Gateway { addr, ifindex: oif }))
            }
            RouteAttribute::Via(RouteVia::Inet6(g)) => v.push(Gateway {
                addr: IpAddr::V6(*g),
                ifindex: oif,
            }),
            RouteAttribute::MultiPath(hops) => {
                for h in hops {
                    for ha in &h.attributes {
                        match ha {
                            RouteAttribute::Gateway(g) => v.extend(addr(g).map(|addr| Gateway {
                                addr,
                                ifindex: Some(h.interface_index),
                            })),
                            RouteAttribute::Via(RouteVia::Inet6(g)) => v.push(Gateway {
                                addr: IpAddr::V6(*g),
                                ifindex: Some(h.interface_index),
                            }),
                            _ => {}
                        }
                    }
                }
            }
            _ => {}
        }
    }
    v
}

/// For each op, the op whose request is sent for its prefix: the batch's last
/// op on that prefix. The earlier ones would only be undone by it, so they
/// are not sent and report its result.
pub(crate) fn winners(ops: &[Op]) -> Vec<usize> {
    let mut last: std::collections::HashMap<IpNet, usize> = std::collections::HashMap::new();
    for (i, op) in ops.iter().enumerate() {
        last.insert(op_prefix(op), i);
    }
    ops.iter().map(|op| last[&op_prefix(op)]).collect()
}

impl Backend for Netlink {
    /// Requests go [`PER_DATAGRAM`] to a datagram, only the last of each
    /// asking for an ack; the kernel acks failed ones by themselves, and all
    /// of a datagram's answers are queued once `sendmsg` returns.
    async fn apply(&mut self, ops: Vec<Op>) -> Vec<Result<(), String>> {
        let winner = winners(&ops);
        let mut res: Vec<Option<Result<(), String>>> = vec![None; ops.len()];
        let send: Vec<usize> = (0..ops.len()).filter(|&i| winner[i] == i).collect();
        let mut buf = Vec::with_capacity(PER_DATAGRAM * 80);
        for chunk in send.chunks(PER_DATAGRAM) {
            buf.clear();
            let base = self.next_seq(chunk.len());
            let mut last = None;
            for (k, &i) in chunk.iter().enumerate() {
                let at = buf.len();
                let seq = base.wrapping_add(k as u32);
                res[i] = Some(self.encode(&ops[i], seq, &mut buf));
                if res[i] == Some(Ok(())) {
                    last = Some((at, seq));
                }
            }
            let Some((at, fence)) = last else { continue };
            let flags = u16::from_ne_bytes([buf[at + 6], buf[at + 7]]) | NLM_F_ACK;
            buf[at + 6..at + 8].copy_from_slice(&flags.to_ne_bytes());
            let mut outcome = self
                .sock
                .send(&buf)
                .await
                .map(|_| ())
                .map_err(|e| format!("netlink send: {e}"));
            let mut acked = false;
            while outcome.is_ok() && !acked {
                outcome = self.recv().await;
                if outcome.is_err() {
                    break;
                }
                for (kind, seq, m) in messages(&self.rx) {
                    let k = seq.wrapping_sub(base) as usize;
                    if kind != NLMSG_ERROR || k >= chunk.len() {
                        continue;
                    }
                    let code = error_code(m);
                    if code != 0 {
                        let i = chunk[k];
                        res[i] = Some(Err(format!("{}: {}", op_prefix(&ops[i]), errno(code))));
                    }
                    acked |= seq == fence;
                }
            }
            if let Err(e) = outcome {
                // What became of this datagram's requests is unknown.
                for &i in chunk {
                    if res[i] == Some(Ok(())) {
                        res[i] = Some(Err(format!("{}: {e}", op_prefix(&ops[i]))));
                    }
                }
            }
        }
        winner
            .iter()
            .map(|w| res[*w].clone().unwrap_or(Ok(())))
            .collect()
    }

    fn changes(&mut self) -> Option<mpsc::Receiver<()>> {
        match watch(self.protocol) {
            Ok(rx) => Some(rx),
            Err(e) => {
                warn!("kernel changes are polled for: {e}");
                None
            }
        }
    }

    async fn ours(&mut self) -> Result<Vec<Route>, String> {
        let proto = RouteProtocol::from(self.protocol);
        Ok(self
            .dump(|p| p == u8::from(proto))
            .await?
            .into_iter()
            .filter(|m| m.header.protocol == proto && table_of(m) == self.table)
            .filter_map(|m| {
                let prefix = prefix_of(&m)?;
                let action = if m.header.kind == RouteType::BlackHole {
                    Action::Blackhole
                } else {
                    Action::Unicast(gateways(&m))
                };
                Some(Route { prefix, action })
            })
            .collect())
    }

    async fn table(&mut self) -> Result<Vec<KernelRoute>, String> {
        let own = self.protocol;
        let msgs = self.dump(|p| p != own).await?;
        Ok(msgs
            .into_iter()
            .filter(|m| table_of(m) == crate::MAIN_TABLE || table_of(m) == self.table)
            .filter(|m| m.header.kind == RouteType::Unicast)
            // kbgp's own routes never resolve next hops; leaving them out also
            // keeps our own installs from looking like a change of the table.
            .filter(|m| u8::from(m.header.protocol) != self.protocol)
            .filter_map(|m| {
                let prefix = prefix_of(&m)?;
                let gws = gateways(&m);
                let metric = m
                    .attributes
                    .iter()
                    .find_map(|a| {
                        if let RouteAttribute::Priority(p) = a {
                            Some(*p)
                        } else {
                            None
                        }
                    })
                    .unwrap_or(0);
                let ifindex = m.attributes.iter().find_map(|a| {
                    if let RouteAttribute::Oif(i) = a {
                        Some(*i)
                    } else {
                        None
                    }
                });
                Some(KernelRoute {
                    prefix,
                    gateway: gws.first().map(|g| g.addr),
                    ifindex,
                    metric,
                    protocol: u8::from(m.header.protocol),
                })
            })
            .collect())
    }

    async fn addresses(&mut self) -> Result<Vec<(u32, IpAddr)>, String> {
        use netlink_packet_route::address::AddressAttribute;
        let mut out = Vec::new();
        let mut s = self.handle.address().get().execute();
        while let Some(m) = s
            .try_next()
            .await
            .map_err(|e| format!("netlink address dump: {e}"))?
        {
            for a in &m.attributes {
                if let AddressAttribute::Address(ip) = a {
                    out.push((m.header.index, *ip));
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_op_on_a_prefix_wins() {
        let p = |s: &str| s.parse::<IpNet>().unwrap();
        let add = |s: &str| {
            Op::Replace(Route {
                prefix: p(s),
                action: Action::Blackhole,
            })
        };
        let ops = vec![
            add("10.0.0.0/24"),
            add("10.0.1.0/24"),
            Op::Delete(p("10.0.0.0/24")),
            add("10.0.2.0/24"),
            add("10.0.0.0/24"),
        ];
        assert_eq!(winners(&ops), vec![4, 1, 4, 3, 4]);
        assert!(winners(&[]).is_empty());
    }

    /// The inner test's name, run in a network namespace of its own.
    const INNER: &str = "netlink::tests::in_own_namespace";
    const ENV: &str = "KBGP_FIB_OWN_NETNS";

    /// The Linux backend against the running kernel: the test binary runs
    /// [`in_own_namespace`] again under `unshare --net` (root), so nothing
    /// outside that namespace is touched.
    #[test]
    fn netlink_backend_against_the_kernel() {
        if !std::process::Command::new("unshare")
            .args(["--net", "true"])
            .status()
            .is_ok_and(|s| s.success())
        {
            eprintln!("skipped: needs root (unshare --net) for a namespace of its own");
            return;
        }
        let out = std::process::Command::new("unshare")
            .arg("--net")
            .arg(std::env::current_exe().unwrap())
            .args([INNER, "--exact", "--ignored", "--nocapture"])
            .env(ENV, "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        assert!(
            text.contains("1 passed"),
            "the inner test did not run: {text}"
        );
    }

    fn ip(args: &str) -> String {
        let out = std::process::Command::new("ip")
            .args(args.split_whitespace())
            .output()
            .unwrap();
        assert!(out.status.success(), "ip {args}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    #[ignore = "run by netlink_backend_against_the_kernel in a namespace of its own"]
    fn in_own_namespace() {
        if std::env::var(ENV).is_err() {
            return; // never in the host's namespace
        }
        ip("link add kb0 type veth peer name kb1");
        ip("addr add 198.18.0.1/24 dev kb0");
        ip("link set kb0 up");
        ip("link set kb1 up");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut nl = Netlink::new(crate::MAIN_TABLE, crate::RTPROT_BGP).unwrap();
            let mut changes = nl.changes().expect("change notifications");
            let gw = Gateway {
                addr: "198.18.0.2".parse().unwrap(),
                ifindex: None,
            };
            let route = |i: u32, gw: Gateway| {
                Op::Replace(Route {
                    prefix: IpNet::V4(
                        Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + (i << 8)), 24).unwrap(),
                    ),
                    action: Action::Unicast(vec![gw]),
                })
            };
            // More than a datagram's worth, a delete of a route that is not
            // there and a gateway that is not reachable among them.
            let mut ops: Vec<Op> = (0..1000).map(|i| route(i, gw)).collect();
            ops[300] = Op::Delete("192.0.2.0/24".parse().unwrap());
            let unreachable = Gateway {
                addr: "192.0.2.9".parse().unwrap(),
                ifindex: None,
            };
            ops[700] = route(700, unreachable);
            ops.push(Op::Replace(Route {
                prefix: "198.19.0.0/16".parse().unwrap(),
                action: Action::Blackhole,
            }));
            let res = nl.apply(ops).await;
            assert_eq!(res.len(), 1001);
            let failed: Vec<usize> = (0..res.len()).filter(|&i| res[i].is_err()).collect();
            assert_eq!(failed, vec![300, 700], "{:?}", res[300]);
            assert!(res[300].as_ref().unwrap_err().starts_with("192.0.2.0/24: "));
            let shown = ip("-4 route show proto 186");
            assert_eq!(shown.lines().count(), 999, "{shown}");
            assert!(
                shown.contains("10.0.1.0/24 via 198.18.0.2 dev kb0"),
                "{shown}"
            );
            assert!(shown.contains("blackhole 198.19.0.0/16"), "{shown}");
            assert_eq!(nl.ours().await.unwrap().len(), 999);
            let table = nl.table().await.unwrap();
            assert!(table.iter().all(|k| k.protocol != crate::RTPROT_BGP));
            assert!(table
                .iter()
                .any(|k| k.prefix == "198.18.0.0/24".parse::<IpNet>().unwrap()));
            // kbgp's own changes do not wake the watcher; another's does.
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(changes.try_recv().is_err(), "woken by kbgp's own routes");
            ip("route add 203.0.113.0/24 via 198.18.0.3 proto static");
            tokio::time::timeout(Duration::from_secs(5), changes.recv())
                .await
                .expect("told of a static route")
                .unwrap();
            let table = nl.table().await.unwrap();
            let k = table
                .iter()
                .find(|k| k.prefix == "203.0.113.0/24".parse::<IpNet>().unwrap())
                .expect("the static route in the table");
            assert_eq!(k.gateway, Some("198.18.0.3".parse().unwrap()));
            // Replace twice in one batch: the last one wins; then delete all.
            let again = nl
                .apply(vec![
                    route(5, gw),
                    Op::Delete("10.0.5.0/24".parse().unwrap()),
                ])
                .await;
            assert!(again.iter().all(Result::is_ok), "{again:?}");
            assert!(!ip("-4 route show proto 186").contains("10.0.5.0/24"));
            let all: Vec<Op> = nl
                .ours()
                .await
                .unwrap()
                .into_iter()
                .map(|r| Op::Delete(r.prefix))
                .collect();
            assert_eq!(all.len(), 998);
            let gone = nl.apply(all).await;
            assert!(
                gone.iter().all(Result::is_ok),
                "{:?}",
                gone.iter().filter(|r| r.is_err()).collect::<Vec<_>>()
            );
            assert_eq!(ip("-4 route show proto 186"), "");
        });
    }
}
