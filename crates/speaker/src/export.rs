//! What a peer is sent (RFC 4271 §5, §9.1.3; RFC 4456 §6 and §8):
//!
//! - locally originated routes go to every peer;
//! - routes from an eBGP peer go to iBGP peers, never to another eBGP peer
//!   (no transit between eBGP neighbours unless policy says so), except that
//!   routes from pod peers (network functions) go to every non-pod peer;
//! - routes from an iBGP peer go to eBGP peers; to iBGP peers only when this
//!   speaker is a route reflector: from a client to everyone, from a
//!   non-client to clients only, with ORIGINATOR_ID and CLUSTER_LIST set;
//! - never back to the peer a route came from.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use bgp_fsm::Negotiated;
use bgp_rib::best::{Path, Source};
use bgp_rib::{OutRoute, Rewrite};
use bgp_wire::update::NextHop;
use bgp_wire::{Family, Nlri};
use datastore::{GlobalCfg, PeerCfg};
use ipnet::IpNet;

/// Next hop self for `prefix` on a session whose local end is `local`.
pub fn next_hop_self(
    prefix: &IpNet,
    local: SocketAddr,
    neg: &Negotiated,
    global: &GlobalCfg,
) -> Option<NextHop> {
    let local_ip = match local.ip() {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    let v6 = |a: Ipv6Addr| {
        if a.is_unicast_link_local() {
            NextHop::V6 {
                global: Ipv6Addr::UNSPECIFIED,
                link_local: Some(a),
            }
        } else {
            NextHop::V6 {
                global: a,
                link_local: None,
            }
        }
    };
    match (prefix, local_ip) {
        (IpNet::V4(_), IpAddr::V4(a)) => Some(NextHop::V4(a)),
        (IpNet::V4(_), IpAddr::V6(a)) if neg.extended_next_hop => Some(v6(a)),
        (IpNet::V6(_), IpAddr::V6(a)) => Some(v6(a)),
        // Another family than the transport: the node's own address of that family.
        (IpNet::V4(_), IpAddr::V6(_)) => global.node_addresses.iter().find_map(|a| match a {
            IpAddr::V4(v) => Some(NextHop::V4(*v)),
            _ => None,
        }),
        (IpNet::V6(_), IpAddr::V4(_)) => global.node_addresses.iter().find_map(|a| match a {
            IpAddr::V6(v) => Some(v6(*v)),
            _ => None,
        }),
    }
}

/// The session a route is being exported on.
pub struct Target<'a> {
    pub key: &'a str,
    pub cfg: &'a PeerCfg,
    pub neg: &'a Negotiated,
    pub local: SocketAddr,
}

/// The route `best` becomes when sent to `to`, or `None` when it must not
/// be sent. The attribute set is `best`'s own, with the [`Rewrite`] that
/// sending applies: nothing is built or kept per exported set.
pub fn export(
    prefix: &IpNet,
    best: &Path,
    source: &Source,
    to: &Target,
    global: &GlobalCfg,
) -> Option<OutRoute> {
    let fam: Family = Nlri::new(*prefix).family();
    if !to.neg.families.contains(&fam) {
        return None;
    }
    let to_ibgp = to.neg.peer_as == global.asn;
    let mut reflect = None;
    match source {
        Source::Local => {}
        Source::Peer(src) => {
            if &*src.key == to.key {
                return None;
            }
            // Pod routes go to the node's other peers, never to another pod.
            if src.pod && to.cfg.pod.is_some() {
                return None;
            }
            match (src.ibgp, to_ibgp) {
                (false, false) if !src.pod && !src.transit => return None,
                (true, true) => {
                    let cluster = global.cluster_id?;
                    if !src.rr_client && !to.cfg.rr_client {
                        return None;
                    }
                    // Never reflect a route back to the router that originated it.
                    if best.attrs.originator_id() == Some(to.neg.peer_id) {
                        return None;
                    }
                    reflect = Some((src.router_id, cluster));
                }
                _ => {}
            }
        }
    }
    let next_hop = if reflect.is_some() || (to.cfg.keep_original_next_hop && !best.is_local()) {
        best.next_hop()
    } else {
        next_hop_self(prefix, to.local, to.neg, global)?
    };
    let rewrite = if to_ibgp {
        Rewrite::Ibgp { reflect }
    } else {
        Rewrite::Ebgp {
            asn: global.asn,
            keep_med: best.is_local(),
        }
    };
    Some(OutRoute {
        attrs: best.attrs.clone(),
        rewrite,
        next_hop,
    })
}
