//! What this node announces to a peer: its originated prefixes with the
//! attributes RFC 4271 §5 requires for the session type.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use bgp_fsm::Negotiated;
use bgp_rib::{Interner, OutRoute};
use bgp_wire::update::NextHop;
use bgp_wire::{AsPath, Family, Nlri, Origin, PathAttrs};
use datastore::{GlobalCfg, Origination};
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
    let v6 = |a: std::net::Ipv6Addr| {
        if a.is_unicast_link_local() {
            NextHop::V6 {
                global: std::net::Ipv6Addr::UNSPECIFIED,
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

/// The routes a peer should hold from us.
pub fn local_routes(
    originate: &BTreeMap<IpNet, Origination>,
    global: &GlobalCfg,
    neg: &Negotiated,
    local: SocketAddr,
    interner: &mut Interner,
) -> BTreeMap<IpNet, OutRoute> {
    let ibgp = neg.is_ibgp(global.asn);
    let mut out = BTreeMap::new();
    for (prefix, o) in originate {
        let fam: Family = Nlri::new(*prefix).family();
        if !neg.families.contains(&fam) {
            continue;
        }
        let Some(nh) = next_hop_self(prefix, local, neg, global) else {
            continue;
        };
        let mut communities = o.communities.clone();
        communities.sort_unstable();
        let mut large = o.large_communities.clone();
        large.sort_unstable();
        let attrs = PathAttrs {
            origin: Some(Origin::Igp),
            as_path: Some(if ibgp {
                AsPath::default()
            } else {
                AsPath::from_sequence(vec![global.asn])
            }),
            local_pref: ibgp.then_some(100),
            communities,
            large_communities: large,
            ..Default::default()
        };
        out.insert(
            *prefix,
            OutRoute {
                attrs: interner.intern(attrs),
                next_hop: nh,
            },
        );
    }
    out
}
