//! Kernel routes. The speaker says *what* should be in the kernel
//! ([`Op`]s of [`Route`]s); a [`Backend`] does it: [`netlink::Netlink`] for
//! Linux, [`Memory`] for tests. Only routes with kbgp's protocol id in kbgp's
//! table are ever changed or removed; other protocols' routes are read (for
//! next-hop resolution, [`Resolver`]) and never touched.

pub mod netlink;
mod sockopt;

use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;

/// `proto bgp` in `ip route` (RTPROT_BGP, /etc/iproute2/rt_protos).
pub const RTPROT_BGP: u8 = 186;
/// The main table.
pub const MAIN_TABLE: u32 = 254;

/// One gateway of a route; `ifindex` is needed for IPv6 link-local gateways.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct Gateway {
    pub addr: IpAddr,
    pub ifindex: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Action {
    /// Forward via these gateways (more than one: ECMP).
    Unicast(Vec<Gateway>),
    /// Drop (this node's own pod blocks, as BIRD does under Calico).
    Blackhole,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Route {
    pub prefix: IpNet,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Replace(Route),
    Delete(IpNet),
}

/// A route of any protocol in the kernel, for next-hop resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelRoute {
    pub prefix: IpNet,
    pub gateway: Option<IpAddr>,
    pub ifindex: Option<u32>,
    pub metric: u32,
    pub protocol: u8,
}

/// Where routes go.
pub trait Backend: Send + 'static {
    /// Apply a batch; one result per op, in order.
    fn apply(&mut self, ops: Vec<Op>) -> impl Future<Output = Vec<Result<(), String>>> + Send;
    /// kbgp's own routes now in the kernel (protocol and table match).
    fn ours(&mut self) -> impl Future<Output = Result<Vec<Route>, String>> + Send;
    /// The routes of other protocols (connected, static, IGP...) in the main
    /// table and kbgp's table, for next-hop resolution. kbgp's own routes are
    /// left out, so installing them does not look like a change of the table.
    fn table(&mut self) -> impl Future<Output = Result<Vec<KernelRoute>, String>> + Send;
    /// Every interface address: (interface index, address).
    fn addresses(&mut self) -> impl Future<Output = Result<Vec<(u32, IpAddr)>, String>> + Send;
    /// A signal whenever routes, addresses or links change other than by
    /// kbgp, if the backend can tell; without it the caller polls.
    fn changes(&mut self) -> Option<tokio::sync::mpsc::Receiver<()>> {
        None
    }
}

/// An in-memory kernel, for tests: `installed` is what kbgp put there,
/// `kernel` the other routes (connected, static...).
#[derive(Debug, Clone, Default)]
pub struct Memory {
    pub installed: Arc<Mutex<std::collections::BTreeMap<IpNet, Action>>>,
    pub kernel: Arc<Mutex<Vec<KernelRoute>>>,
    pub addresses: Arc<Mutex<Vec<(u32, IpAddr)>>>,
}

impl Backend for Memory {
    async fn apply(&mut self, ops: Vec<Op>) -> Vec<Result<(), String>> {
        let mut m = self.installed.lock().unwrap_or_else(|e| e.into_inner());
        ops.into_iter()
            .map(|op| match op {
                Op::Replace(r) => {
                    m.insert(r.prefix, r.action);
                    Ok(())
                }
                Op::Delete(p) => m
                    .remove(&p)
                    .map(|_| ())
                    .ok_or_else(|| format!("{p}: no such route")),
            })
            .collect()
    }
    async fn ours(&mut self) -> Result<Vec<Route>, String> {
        let m = self.installed.lock().unwrap_or_else(|e| e.into_inner());
        Ok(m.iter()
            .map(|(p, a)| Route {
                prefix: *p,
                action: a.clone(),
            })
            .collect())
    }
    async fn table(&mut self) -> Result<Vec<KernelRoute>, String> {
        Ok(self
            .kernel
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone())
    }
    async fn addresses(&mut self) -> Result<Vec<(u32, IpAddr)>, String> {
        Ok(self
            .addresses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone())
    }
}

/// How a next hop is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    /// The route's metric: the IGP cost for best-path selection.
    pub cost: u32,
    /// The on-link gateway to use (the next hop itself when directly connected).
    pub via: IpAddr,
    pub ifindex: Option<u32>,
}

/// Longest-prefix match of next hops against the kernel table, ignoring
/// kbgp's own routes (no recursion through BGP).
#[derive(Default)]
pub struct Resolver {
    v4: PrefixMap<Ipv4Net, KernelRoute>,
    v6: PrefixMap<Ipv6Net, KernelRoute>,
}

impl Resolver {
    pub fn new(routes: &[KernelRoute], own_protocol: u8) -> Self {
        let mut r = Resolver::default();
        for k in routes.iter().filter(|k| k.protocol != own_protocol) {
            match k.prefix {
                IpNet::V4(p) => {
                    if r.v4.get(&p).is_none_or(|o| o.metric > k.metric) {
                        r.v4.insert(p, k.clone());
                    }
                }
                IpNet::V6(p) => {
                    if r.v6.get(&p).is_none_or(|o| o.metric > k.metric) {
                        r.v6.insert(p, k.clone());
                    }
                }
            }
        }
        r
    }

    pub fn resolve(&self, addr: IpAddr) -> Option<Resolved> {
        let k = match addr {
            IpAddr::V4(a) => self.v4.get_lpm(&Ipv4Net::from(a)).map(|(_, k)| k),
            IpAddr::V6(a) => {
                if a.is_unicast_link_local() {
                    // On-link by definition; the interface is the session's.
                    return Some(Resolved {
                        cost: 0,
                        via: addr,
                        ifindex: None,
                    });
                }
                self.v6.get_lpm(&Ipv6Net::from(a)).map(|(_, k)| k)
            }
        }?;
        match k.gateway {
            Some(gw) => Some(Resolved {
                cost: k.metric.max(1),
                via: gw,
                ifindex: k.ifindex,
            }),
            None if k.prefix.prefix_len() == 0 => None,
            None => Some(Resolved {
                cost: 0,
                via: addr,
                ifindex: k.ifindex,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kr(p: &str, gw: Option<&str>, metric: u32, proto: u8) -> KernelRoute {
        KernelRoute {
            prefix: p.parse().unwrap(),
            gateway: gw.map(|g| g.parse().unwrap()),
            ifindex: Some(2),
            metric,
            protocol: proto,
        }
    }

    #[test]
    fn resolver_connected_recursive_and_ignores_own_routes() {
        let r = Resolver::new(
            &[
                kr("192.0.2.0/24", None, 0, 2),
                kr("198.18.0.0/16", Some("192.0.2.254"), 20, 4),
                kr("203.0.113.0/24", Some("192.0.2.7"), 0, RTPROT_BGP),
                kr("2001:db8::/64", None, 256, 2),
            ],
            RTPROT_BGP,
        );
        let c = r.resolve("192.0.2.5".parse().unwrap()).unwrap();
        assert_eq!((c.cost, c.via), (0, "192.0.2.5".parse().unwrap()));
        let g = r.resolve("198.18.3.3".parse().unwrap()).unwrap();
        assert_eq!((g.cost, g.via), (20, "192.0.2.254".parse().unwrap()));
        assert!(
            r.resolve("203.0.113.9".parse().unwrap()).is_none(),
            "BGP routes do not resolve next hops"
        );
        assert!(r.resolve("2001:db8::9".parse().unwrap()).is_some());
        assert!(r.resolve("fe80::1".parse().unwrap()).is_some());
        assert!(r.resolve("10.0.0.1".parse().unwrap()).is_none());
    }

    #[tokio::test]
    async fn memory_backend() {
        let mut m = Memory::default();
        let r = Route {
            prefix: "10.0.0.0/24".parse().unwrap(),
            action: Action::Blackhole,
        };
        assert_eq!(
            m.apply(vec![
                Op::Replace(r.clone()),
                Op::Delete("10.9.0.0/24".parse().unwrap())
            ])
            .await
            .len(),
            2
        );
        assert_eq!(m.ours().await.unwrap(), vec![r]);
    }
}
