//! Routing information bases.
//!
//! - [`Interner`]: identical attribute sets are stored once and shared by
//!   `Arc` (a table has far fewer distinct sets than prefixes).
//! - [`AdjRibIn`]: what one peer announced, after RFC 7606 repair.
//! - [`AdjRibOut`]: what we announced to one peer; [`AdjRibOut::diff`]
//!   turns a new wanted set into the minimal announcements and withdrawals,
//!   grouped by attribute set so one UPDATE carries many prefixes.
//!
//! - [`locrib::LocRib`]: every path per prefix in a prefix trie, with the best
//!   path and ECMP set chosen by [`best`].

pub mod best;
pub mod locrib;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::SystemTime;

use bgp_wire::update::NextHop;
use bgp_wire::{Family, Nlri, PathAttrs, Update};
use ipnet::IpNet;

/// Shares identical attribute sets.
/// (hashbrown's default hasher: fast, and randomly seeded so that attribute
/// sets crafted by a peer cannot be made to collide.)
#[derive(Debug, Default)]
pub struct Interner {
    set: hashbrown::HashSet<Arc<PathAttrs>>,
}

impl Interner {
    pub fn intern(&mut self, a: PathAttrs) -> Arc<PathAttrs> {
        if let Some(x) = self.set.get(&a) {
            return x.clone();
        }
        let x = Arc::new(a);
        self.set.insert(x.clone());
        x
    }

    /// Drop sets no route uses any more.
    pub fn collect(&mut self) {
        self.set.retain(|a| Arc::strong_count(a) > 1);
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

/// A route as held in a RIB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub attrs: Arc<PathAttrs>,
    pub next_hop: NextHop,
    /// Unix seconds (a u32 lasts until 2106; four bytes, not sixteen, per route).
    pub since: u32,
}

/// Key of a route in an Adj-RIB: prefix and add-path identifier.
pub type RouteKey = (IpNet, u32);

/// Counts of what one UPDATE changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    pub announced: usize,
    pub withdrawn: usize,
    /// The announcements' attribute set, interned (no next hop: that is per route).
    pub attrs: Option<Arc<PathAttrs>>,
}

/// One peer's Adj-RIB-In. A hash map: every access is by exact key, and
/// nothing needs it ordered (listings are sorted where they are shown).
#[derive(Debug, Default)]
pub struct AdjRibIn {
    routes: hashbrown::HashMap<RouteKey, Route>,
}

impl AdjRibIn {
    /// Apply an UPDATE: withdrawals (including RFC 7606 treat-as-withdraw),
    /// then announcements (implicitly replacing earlier ones).
    pub fn apply(&mut self, u: &Update, interner: &mut Interner, now: SystemTime) -> Applied {
        let mut out = Applied::default();
        for n in u.withdrawals() {
            if self
                .routes
                .remove(&(n.prefix, n.path_id.unwrap_or(0)))
                .is_some()
            {
                out.withdrawn += 1;
            }
        }
        let now = now
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(0);
        let mut attrs: Option<Arc<PathAttrs>> = None;
        for (n, nh) in u.announcements() {
            let a = attrs
                .get_or_insert_with(|| {
                    let mut a = u.attrs.clone();
                    // The next hop lives in the route; MP next hops are not attributes.
                    a.next_hop = None;
                    interner.intern(a)
                })
                .clone();
            self.routes.insert(
                (n.prefix, n.path_id.unwrap_or(0)),
                Route {
                    attrs: a,
                    next_hop: nh,
                    since: now,
                },
            );
            out.announced += 1;
        }
        out.attrs = attrs;
        out
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    pub fn count(&self, family: Family) -> usize {
        self.routes
            .keys()
            .filter(|(p, _)| Nlri::new(*p).family() == family)
            .count()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&RouteKey, &Route)> {
        self.routes.iter()
    }

    /// Every path of one prefix (a scan: for tests and diagnostics).
    pub fn get(&self, prefix: &IpNet) -> Vec<&Route> {
        let mut v: Vec<(&RouteKey, &Route)> = self
            .routes
            .iter()
            .filter(|((p, _), _)| p == prefix)
            .collect();
        v.sort_by_key(|(k, _)| **k);
        v.into_iter().map(|(_, r)| r).collect()
    }
}

/// A route we want a peer to have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutRoute {
    pub attrs: Arc<PathAttrs>,
    pub next_hop: NextHop,
}

/// Announcements grouped by (attribute set, next hop, family), and withdrawals by family.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct OutDiff {
    pub announce: Vec<(Arc<PathAttrs>, NextHop, Family, Vec<Nlri>)>,
    pub withdraw: Vec<(Family, Vec<Nlri>)>,
}

impl OutDiff {
    pub fn is_empty(&self) -> bool {
        self.announce.is_empty() && self.withdraw.is_empty()
    }
}

/// Announcements share an UPDATE when attribute set (by identity), next hop and family match.
type GroupKey = (*const PathAttrs, NextHop, Family);

/// What we have announced to one peer (a hash map, as the Adj-RIB-In).
#[derive(Debug, Default)]
pub struct AdjRibOut {
    routes: hashbrown::HashMap<IpNet, OutRoute>,
}

impl AdjRibOut {
    /// Move to `wanted`, returning what must be sent. With `full`, everything
    /// wanted is announced again (initial sync, route refresh).
    pub fn diff(&mut self, wanted: BTreeMap<IpNet, OutRoute>, full: bool) -> OutDiff {
        let mut gone: Vec<(IpNet, Option<OutRoute>)> = self
            .routes
            .keys()
            .filter(|p| !wanted.contains_key(p))
            .map(|p| (*p, None))
            .collect();
        gone.sort_by_key(|(p, _)| *p);
        self.changes(
            wanted.into_iter().map(|(p, r)| (p, Some(r))).chain(gone),
            full,
        )
    }

    /// Apply changes for some prefixes only (`None` = the peer should not have
    /// it), returning what must be sent.
    pub fn update(
        &mut self,
        changes: impl IntoIterator<Item = (IpNet, Option<OutRoute>)>,
    ) -> OutDiff {
        self.changes(changes, false)
    }

    /// Announcements grouped by attribute set, next hop and family (one
    /// UPDATE carries many prefixes); withdrawals by family.
    fn changes(
        &mut self,
        changes: impl IntoIterator<Item = (IpNet, Option<OutRoute>)>,
        resend: bool,
    ) -> OutDiff {
        let mut groups: HashMap<GroupKey, (Arc<PathAttrs>, Vec<Nlri>)> = HashMap::new();
        let mut order = Vec::new();
        let mut withdraw: BTreeMap<Family, Vec<Nlri>> = BTreeMap::new();
        for (p, want) in changes {
            match want {
                Some(r) => {
                    if !resend && self.routes.get(&p) == Some(&r) {
                        continue;
                    }
                    let k = (Arc::as_ptr(&r.attrs), r.next_hop, Nlri::new(p).family());
                    groups
                        .entry(k)
                        .or_insert_with(|| {
                            order.push(k);
                            (r.attrs.clone(), Vec::new())
                        })
                        .1
                        .push(Nlri::new(p));
                    self.routes.insert(p, r);
                }
                None => {
                    if self.routes.remove(&p).is_some() {
                        let n = Nlri::new(p);
                        withdraw.entry(n.family()).or_default().push(n);
                    }
                }
            }
        }
        OutDiff {
            announce: order
                .into_iter()
                .filter_map(|k| groups.remove(&k).map(|(a, v)| (a, k.1, k.2, v)))
                .collect(),
            withdraw: withdraw.into_iter().collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&IpNet, &OutRoute)> {
        self.routes.iter()
    }

    pub fn clear(&mut self) {
        self.routes.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bgp_wire::{AsPath, Origin, Repair};

    fn attrs(asn: u32) -> PathAttrs {
        PathAttrs {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::from_sequence(vec![asn])),
            next_hop: Some("192.0.2.1".parse().unwrap()),
            ..Default::default()
        }
    }

    fn upd(asn: u32, nlri: &[&str], withdrawn: &[&str]) -> Update {
        Update {
            attrs: attrs(asn),
            nlri: nlri.iter().map(|s| Nlri::new(s.parse().unwrap())).collect(),
            withdrawn: withdrawn
                .iter()
                .map(|s| Nlri::new(s.parse().unwrap()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn adj_rib_in_shares_attributes_and_withdraws_exactly() {
        let mut i = Interner::default();
        let mut rib = AdjRibIn::default();
        let now = SystemTime::now();
        let a = rib.apply(
            &upd(65001, &["10.0.0.0/24", "10.0.1.0/24"], &[]),
            &mut i,
            now,
        );
        assert_eq!(
            a,
            Applied {
                announced: 2,
                withdrawn: 0,
                attrs: a.attrs.clone(),
            }
        );
        assert!(a.attrs.is_some());
        rib.apply(&upd(65001, &["10.0.2.0/24"], &[]), &mut i, now);
        assert_eq!(i.len(), 1, "one attribute set for three routes");
        // Implicit withdraw: same prefix, new attributes.
        rib.apply(&upd(65002, &["10.0.0.0/24"], &[]), &mut i, now);
        assert_eq!(rib.len(), 3);
        assert_eq!(
            rib.get(&"10.0.0.0/24".parse().unwrap())[0]
                .attrs
                .as_path
                .as_ref()
                .unwrap()
                .first(),
            Some(65002)
        );
        drop(a); // it holds the attribute set it interned
        let a = rib.apply(
            &upd(65001, &[], &["10.0.1.0/24", "10.9.9.0/24"]),
            &mut i,
            now,
        );
        assert_eq!(a.withdrawn, 1);
        // Treat-as-withdraw removes what the UPDATE announced.
        let mut bad = upd(65001, &["10.0.2.0/24"], &[]);
        bad.repair = Repair::TreatAsWithdraw("test".into());
        rib.apply(&bad, &mut i, now);
        assert_eq!(rib.len(), 1);
        i.collect();
        assert_eq!(i.len(), 1);
    }

    #[test]
    fn adj_rib_out_diff_groups_and_withdraws() {
        let mut i = Interner::default();
        let a1 = i.intern(attrs(1));
        let a2 = i.intern(attrs(2));
        let nh = NextHop::V4("192.0.2.1".parse().unwrap());
        let r = |a: &Arc<PathAttrs>| OutRoute {
            attrs: a.clone(),
            next_hop: nh,
        };
        let mut out = AdjRibOut::default();
        let w: BTreeMap<IpNet, OutRoute> = [
            ("10.0.0.0/24", &a1),
            ("10.0.1.0/24", &a1),
            ("10.0.2.0/24", &a2),
        ]
        .iter()
        .map(|(p, a)| (p.parse().unwrap(), r(a)))
        .collect();
        let d = out.diff(w.clone(), false);
        assert_eq!(d.announce.len(), 2);
        assert_eq!(d.announce[0].3.len(), 2);
        assert!(out.diff(w.clone(), false).is_empty());
        assert_eq!(out.diff(w.clone(), true).announce.len(), 2);
        let mut w2 = w.clone();
        w2.remove(&"10.0.1.0/24".parse().unwrap());
        w2.insert("10.0.2.0/24".parse().unwrap(), r(&a1));
        let d = out.diff(w2, false);
        assert_eq!(
            d.withdraw,
            vec![(
                Family::IPV4_UNICAST,
                vec![Nlri::new("10.0.1.0/24".parse().unwrap())]
            )]
        );
        assert_eq!(d.announce.len(), 1);
        assert_eq!(
            d.announce[0].3,
            vec![Nlri::new("10.0.2.0/24".parse().unwrap())]
        );
    }
}
