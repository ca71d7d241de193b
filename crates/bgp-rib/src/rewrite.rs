//! How a route's attributes change on the way to a peer (RFC 4271 §5.1,
//! RFC 4456 §8), applied when the UPDATE is built.
//!
//! An Adj-RIB-Out entry names the Loc-RIB best path's attribute set and a
//! [`Rewrite`], not a rewritten set: the rewritten set exists only while its
//! UPDATE is encoded (BIRD builds exported attributes at send time the same
//! way). Nothing per exported set is kept, and a rewrite is a few bytes that
//! compare and hash cheaply, so identical exports are still recognised.

use std::net::Ipv4Addr;

use bgp_wire::PathAttrs;

/// What happens to a set of attributes sent to one kind of peer. It holds
/// every value it needs (our AS, cluster id, originator), so a change of
/// configuration yields another `Rewrite` and the route is sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rewrite {
    /// Sent as they are (the result of an export filter, already final).
    AsIs,
    /// To an iBGP peer: LOCAL_PREF made explicit (100 when absent). When
    /// reflected: ORIGINATOR_ID set to `originator` if absent and `cluster`
    /// put first in CLUSTER_LIST.
    Ibgp {
        reflect: Option<(Ipv4Addr, Ipv4Addr)>,
    },
    /// To an eBGP peer: `asn` prepended; LOCAL_PREF, ORIGINATOR_ID and
    /// CLUSTER_LIST removed; MED removed unless `keep_med` (our own route:
    /// a MED learned from one AS is not passed to another).
    Ebgp { asn: u32, keep_med: bool },
}

impl Rewrite {
    /// The attributes as sent (no next hop: the next hop a peer is sent is
    /// per route and encoded with it).
    pub fn apply(&self, attrs: &PathAttrs) -> PathAttrs {
        let mut a = attrs.clone();
        a.next_hop = None;
        a.set_route_next_hop(None);
        match *self {
            Rewrite::AsIs => {}
            Rewrite::Ibgp { reflect } => {
                if let Some((originator, cluster)) = reflect {
                    let r = a.rare_mut();
                    if r.originator_id.is_none() {
                        r.originator_id = Some(originator);
                    }
                    r.cluster_list.insert(0, cluster);
                }
                a.local_pref = Some(a.local_pref.unwrap_or(100));
            }
            Rewrite::Ebgp { asn, keep_med } => {
                a.local_pref = None;
                if a.originator_id().is_some() || !a.cluster_list().is_empty() {
                    let r = a.rare_mut();
                    r.originator_id = None;
                    r.cluster_list.clear();
                    a.normalize();
                }
                if !keep_med {
                    a.med = None;
                }
                a.as_path_mut().prepend(asn, 1);
            }
        }
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bgp_wire::{AsPath, Origin};

    fn received() -> PathAttrs {
        PathAttrs {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::from_sequence(vec![65001, 65002])),
            next_hop: Some("192.0.2.1".parse().unwrap()),
            med: Some(5),
            local_pref: Some(200),
            communities: bgp_wire::thin_vec![0xfde8_0001],
            rare: Some(Box::new(bgp_wire::RareAttrs {
                originator_id: Some("192.0.2.9".parse().unwrap()),
                cluster_list: bgp_wire::thin_vec!["192.0.2.8".parse().unwrap()],
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    #[test]
    fn ebgp_prepends_and_strips_what_stays_in_the_as() {
        let a = received();
        let out = Rewrite::Ebgp {
            asn: 64512,
            keep_med: false,
        }
        .apply(&a);
        assert_eq!(
            out.as_path,
            Some(AsPath::from_sequence(vec![64512, 65001, 65002]))
        );
        assert_eq!(
            (out.local_pref, out.med, out.originator_id(), out.next_hop),
            (None, None, None, None)
        );
        assert!(out.cluster_list().is_empty());
        assert!(out.rare.is_none(), "nothing rare left: none kept");
        assert_eq!(out.communities, a.communities, "communities are kept");
        let ours = Rewrite::Ebgp {
            asn: 64512,
            keep_med: true,
        }
        .apply(&a);
        assert_eq!(ours.med, Some(5));
        let empty = Rewrite::Ebgp {
            asn: 64512,
            keep_med: true,
        }
        .apply(&PathAttrs::default());
        assert_eq!(empty.as_path, Some(AsPath::from_sequence(vec![64512])));
    }

    #[test]
    fn ibgp_makes_local_pref_explicit_and_reflection_adds_rfc4456_attributes() {
        let mut a = received();
        a.local_pref = None;
        let plain = Rewrite::Ibgp { reflect: None }.apply(&a);
        assert_eq!(plain.local_pref, Some(100));
        assert_eq!(plain.as_path, a.as_path, "no prepend inside the AS");
        assert_eq!(plain.cluster_list(), a.cluster_list());
        let (orig, cluster) = ("198.18.0.1".parse().unwrap(), "198.18.0.2".parse().unwrap());
        let r = Rewrite::Ibgp {
            reflect: Some((orig, cluster)),
        };
        let out = r.apply(&a);
        assert_eq!(
            out.originator_id(),
            a.originator_id(),
            "an ORIGINATOR_ID already set is kept"
        );
        assert_eq!(
            out.cluster_list(),
            vec![cluster, "192.0.2.8".parse().unwrap()]
        );
        let out = r.apply(&PathAttrs::default());
        assert_eq!(out.originator_id(), Some(orig));
        assert_eq!(Rewrite::AsIs.apply(&a).next_hop, None);
        let with_hop = PathAttrs {
            route_hop: Some("192.0.2.1".parse().unwrap()),
            ..a.clone()
        };
        assert_eq!(Rewrite::AsIs.apply(&with_hop).route_next_hop(), None);
        assert_eq!(Rewrite::AsIs.apply(&a).med, a.med);
    }
}
