//! The Linux backend: rtnetlink. Routes carry kbgp's protocol id and go to
//! kbgp's table; ECMP routes are one multipath route.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures_util::TryStreamExt;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteType, RouteVia,
};
use rtnetlink::{Handle, RouteMessageBuilder, RouteNextHopBuilder};

use crate::{Action, Backend, Gateway, KernelRoute, Op, Route};

pub struct Netlink {
    handle: Handle,
    table: u32,
    protocol: u8,
}

impl Netlink {
    /// Open a netlink socket (needs CAP_NET_ADMIN to change routes).
    pub fn new(table: u32, protocol: u8) -> Result<Self, String> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| format!("netlink: {e}"))?;
        tokio::spawn(conn);
        Ok(Netlink {
            handle,
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

    fn delete_message(&self, p: IpNet) -> RouteMessage {
        let proto = RouteProtocol::from(self.protocol);
        match p {
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
        }
    }

    async fn dump(&self) -> Result<Vec<RouteMessage>, String> {
        let mut out = Vec::new();
        for req in [
            RouteMessageBuilder::<Ipv4Addr>::new().build(),
            RouteMessageBuilder::<Ipv6Addr>::new().build(),
        ] {
            let mut s = self.handle.route().get(req).execute();
            while let Some(m) = s
                .try_next()
                .await
                .map_err(|e| format!("netlink dump: {e}"))?
            {
                out.push(m);
            }
        }
        Ok(out)
    }
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
/// op on that prefix. Requests are pipelined, so two ops on one prefix could
/// reach the kernel in either order; only the last is sent, and the earlier
/// ones report its result.
pub(crate) fn winners(ops: &[Op]) -> Vec<usize> {
    let prefix = |op: &Op| match op {
        Op::Replace(r) => r.prefix,
        Op::Delete(p) => *p,
    };
    let mut last: std::collections::HashMap<IpNet, usize> = std::collections::HashMap::new();
    for (i, op) in ops.iter().enumerate() {
        last.insert(prefix(op), i);
    }
    ops.iter().map(|op| last[&prefix(op)]).collect()
}

/// Route requests in flight at once: the kernel acks each one, and waiting
/// for every ack before sending the next would cost a full table a million
/// round trips.
const IN_FLIGHT: usize = 256;

impl Backend for Netlink {
    async fn apply(&mut self, ops: Vec<Op>) -> Vec<Result<(), String>> {
        use futures_util::stream::{self, StreamExt};
        let winner = winners(&ops);
        let this = &*self;
        let sent: Vec<Option<Result<(), String>>> = stream::iter(ops.into_iter().enumerate())
            .map(|(i, op)| {
                let send = winner[i] == i;
                async move {
                    if !send {
                        return None;
                    }
                    Some(match op {
                        Op::Replace(r) => match this.message(&r) {
                            Ok(m) => this
                                .handle
                                .route()
                                .add(m)
                                .replace()
                                .execute()
                                .await
                                .map_err(|e| format!("{}: {e}", r.prefix)),
                            Err(e) => Err(e),
                        },
                        Op::Delete(p) => this
                            .handle
                            .route()
                            .del(this.delete_message(p))
                            .execute()
                            .await
                            .map_err(|e| format!("{p}: {e}")),
                    })
                }
            })
            .buffered(IN_FLIGHT)
            .collect()
            .await;
        winner
            .iter()
            .map(|w| sent[*w].clone().unwrap_or(Ok(())))
            .collect()
    }

    async fn ours(&mut self) -> Result<Vec<Route>, String> {
        let proto = RouteProtocol::from(self.protocol);
        Ok(self
            .dump()
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
        let msgs = self.dump().await?;
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
}
