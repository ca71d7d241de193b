//! Routing information bases.
//!
//! - [`Interner`]: identical attribute sets are stored once and shared by
//!   `Arc` (a table has far fewer distinct sets than prefixes).
//! - [`AdjRibIn`]: what one peer announced, after RFC 7606 repair.
//! - [`AdjRibOut`]: what we announced to one peer, as a handle per Loc-RIB
//!   destination id into the [`OutTable`] all peers share;
//!   [`AdjRibOut::update`] turns wanted routes into the minimal announcements
//!   and withdrawals, grouped by attribute set so one UPDATE carries many
//!   prefixes.
//!
//! - [`locrib::LocRib`]: every path per prefix in a prefix trie, with the best
//!   path and ECMP set chosen by [`best`].

pub mod best;
pub mod locrib;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use bgp_wire::update::NextHop;
use bgp_wire::{Family, Nlri, PathAttrs, Update};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

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

/// One peer's Adj-RIB-In: a hash map per family (every access is by exact
/// key, and nothing needs it ordered: listings are sorted where they are
/// shown). An IPv4 entry is 28 bytes: the prefix and path id, the shared
/// attribute set, and the next hop as an index into the peer's few distinct
/// next hops.
#[derive(Debug, Default)]
pub struct AdjRibIn {
    v4: hashbrown::HashMap<(Ipv4Net, u32), Stored>,
    v6: hashbrown::HashMap<(Ipv6Net, u32), Stored>,
    next_hops: Vec<NextHop>,
    nh_index: hashbrown::HashMap<NextHop, u32>,
}

#[derive(Debug, Clone)]
struct Stored {
    attrs: Arc<PathAttrs>,
    next_hop: u32,
    since: u32,
}

impl AdjRibIn {
    fn next_hop_index(&mut self, nh: NextHop) -> u32 {
        if let Some(i) = self.nh_index.get(&nh) {
            return *i;
        }
        self.next_hops.push(nh);
        let i = self.next_hops.len() as u32 - 1;
        self.nh_index.insert(nh, i);
        i
    }

    fn route(&self, s: &Stored) -> Route {
        Route {
            attrs: s.attrs.clone(),
            next_hop: self.next_hops[s.next_hop as usize],
            since: s.since,
        }
    }

    /// Apply an UPDATE: withdrawals (including RFC 7606 treat-as-withdraw),
    /// then announcements (implicitly replacing earlier ones).
    pub fn apply(&mut self, u: &Update, interner: &mut Interner, now: SystemTime) -> Applied {
        let mut out = Applied::default();
        for n in u.withdrawals() {
            let id = n.path_id.unwrap_or(0);
            let gone = match n.prefix {
                IpNet::V4(p) => self.v4.remove(&(p, id)),
                IpNet::V6(p) => self.v6.remove(&(p, id)),
            };
            if gone.is_some() {
                out.withdrawn += 1;
            }
        }
        let now = now
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(0);
        let mut attrs: Option<Arc<PathAttrs>> = None;
        // The NLRI of one family share a next hop: look it up once per run.
        let mut last_nh: Option<(NextHop, u32)> = None;
        for (n, nh) in u.announcements() {
            let a = attrs
                .get_or_insert_with(|| {
                    let mut a = u.attrs.clone();
                    // The next hop lives in the route; MP next hops are not attributes.
                    a.next_hop = None;
                    interner.intern(a)
                })
                .clone();
            let nh_i = match last_nh {
                Some((x, i)) if x == nh => i,
                _ => {
                    let i = self.next_hop_index(nh);
                    last_nh = Some((nh, i));
                    i
                }
            };
            let stored = Stored {
                attrs: a,
                next_hop: nh_i,
                since: now,
            };
            let id = n.path_id.unwrap_or(0);
            match n.prefix {
                IpNet::V4(p) => self.v4.insert((p, id), stored),
                IpNet::V6(p) => self.v6.insert((p, id), stored),
            };
            out.announced += 1;
        }
        out.attrs = attrs;
        out
    }

    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn count(&self, family: Family) -> usize {
        if family == Family::IPV4_UNICAST {
            self.v4.len()
        } else if family == Family::IPV6_UNICAST {
            self.v6.len()
        } else {
            0
        }
    }

    fn stored(&self) -> impl Iterator<Item = (RouteKey, &Stored)> + '_ {
        self.v4
            .iter()
            .map(|((p, id), s)| ((IpNet::V4(*p), *id), s))
            .chain(self.v6.iter().map(|((p, id), s)| ((IpNet::V6(*p), *id), s)))
    }

    /// Every route, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (RouteKey, Route)> + '_ {
        self.stored().map(|(k, s)| (k, self.route(s)))
    }

    /// Every prefix with a route (once per path).
    pub fn prefixes(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.stored().map(|((p, _), _)| p)
    }

    /// Every path of one prefix (a scan: for tests and diagnostics).
    pub fn get(&self, prefix: &IpNet) -> Vec<Route> {
        let mut v: Vec<(RouteKey, &Stored)> =
            self.stored().filter(|((p, _), _)| p == prefix).collect();
        v.sort_by_key(|(k, _)| *k);
        v.into_iter().map(|(_, s)| self.route(s)).collect()
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

/// The routes sent to peers, each (attribute set, next hop) once for every
/// peer and prefix that has it, named by a small handle and counted.
#[derive(Debug, Default)]
pub struct OutTable {
    /// By handle - 1: the route and how many Adj-RIB-Out entries hold it
    /// (`None`: a free slot).
    entries: Vec<Option<(OutRoute, u32)>>,
    /// Attribute sets are interned, so identity names them.
    index: hashbrown::HashMap<(usize, NextHop), u32>,
    free: Vec<u32>,
}

impl OutTable {
    fn acquire(&mut self, r: OutRoute) -> u32 {
        let key = (Arc::as_ptr(&r.attrs) as usize, r.next_hop);
        if let Some(h) = self.index.get(&key) {
            if let Some((_, n)) = &mut self.entries[*h as usize - 1] {
                *n += 1;
            }
            return *h;
        }
        let h = match self.free.pop() {
            Some(h) => {
                self.entries[h as usize - 1] = Some((r, 1));
                h
            }
            None => {
                self.entries.push(Some((r, 1)));
                self.entries.len() as u32
            }
        };
        self.index.insert(key, h);
        h
    }

    fn release(&mut self, h: u32) {
        let slot = &mut self.entries[h as usize - 1];
        if let Some((r, n)) = slot {
            *n -= 1;
            if *n == 0 {
                self.index
                    .remove(&(Arc::as_ptr(&r.attrs) as usize, r.next_hop));
                *slot = None;
                self.free.push(h);
            }
        }
    }

    /// The route a handle names.
    pub fn get(&self, h: u32) -> Option<&OutRoute> {
        self.entries
            .get((h as usize).checked_sub(1)?)?
            .as_ref()
            .map(|(r, _)| r)
    }

    /// Distinct routes held.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
}

/// What we have announced to one peer: per Loc-RIB destination id
/// ([`locrib::Dest::id`]) a handle into the shared [`OutTable`]. Four bytes
/// per destination, whatever the attributes; a peer sent nothing costs
/// nothing (BIRD keeps one bit per route and channel to the same end).
#[derive(Debug, Default)]
pub struct AdjRibOut {
    /// By destination id: 0 = nothing sent, else an [`OutTable`] handle.
    sent: Vec<u32>,
    count: usize,
}

impl AdjRibOut {
    /// Apply changes for some destinations (`(prefix, id, route)`, `None` =
    /// the peer should not have it), returning what must be sent:
    /// announcements grouped by attribute set, next hop and family (one UPDATE
    /// carries many prefixes), withdrawals by family. With `resend`, wanted
    /// routes are announced even when the peer has them (initial sync, route
    /// refresh).
    pub fn update(
        &mut self,
        table: &mut OutTable,
        changes: impl IntoIterator<Item = (IpNet, u32, Option<OutRoute>)>,
        resend: bool,
    ) -> OutDiff {
        let mut groups: hashbrown::HashMap<GroupKey, (Arc<PathAttrs>, Vec<Nlri>)> =
            hashbrown::HashMap::new();
        let mut order = Vec::new();
        let mut withdraw: BTreeMap<Family, Vec<Nlri>> = BTreeMap::new();
        for (p, id, want) in changes {
            let i = id as usize;
            let cur = self.sent.get(i).copied().unwrap_or(0);
            match want {
                Some(r) => {
                    let same = table.get(cur).is_some_and(|c| {
                        Arc::ptr_eq(&c.attrs, &r.attrs) && c.next_hop == r.next_hop
                    });
                    if same && !resend {
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
                    if same {
                        continue;
                    }
                    let h = table.acquire(r);
                    if i >= self.sent.len() {
                        self.sent.resize(i + 1, 0);
                    }
                    self.sent[i] = h;
                    if cur == 0 {
                        self.count += 1;
                    } else {
                        table.release(cur);
                    }
                }
                None => {
                    if cur != 0 {
                        self.sent[i] = 0;
                        self.count -= 1;
                        table.release(cur);
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

    /// What was sent for destination `id`, as an [`OutTable`] handle.
    pub fn get(&self, id: u32) -> Option<u32> {
        self.sent.get(id as usize).copied().filter(|h| *h != 0)
    }

    /// Drop the entry of a pruned destination (its id is about to be reused).
    pub fn forget(&mut self, table: &mut OutTable, id: u32) {
        if let Some(h) = self.sent.get_mut(id as usize) {
            if *h != 0 {
                table.release(std::mem::take(h));
                self.count -= 1;
            }
        }
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Forget everything (session down), releasing the shared entries.
    pub fn clear(&mut self, table: &mut OutTable) {
        for h in self.sent.drain(..).filter(|h| *h != 0) {
            table.release(h);
        }
        self.sent = Vec::new();
        self.count = 0;
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
    fn adj_rib_out_groups_withdraws_and_shares_the_out_table() {
        let mut i = Interner::default();
        let a1 = i.intern(attrs(1));
        let a2 = i.intern(attrs(2));
        let nh = NextHop::V4("192.0.2.1".parse().unwrap());
        let r = |a: &Arc<PathAttrs>| OutRoute {
            attrs: a.clone(),
            next_hop: nh,
        };
        let mut t = OutTable::default();
        let (mut out, mut other) = (AdjRibOut::default(), AdjRibOut::default());
        let p = |s: &str| -> IpNet { s.parse().unwrap() };
        let want = |a1: &Arc<PathAttrs>, a2: &Arc<PathAttrs>| {
            vec![
                (p("10.0.0.0/24"), 0, Some(r(a1))),
                (p("10.0.1.0/24"), 1, Some(r(a1))),
                (p("10.0.2.0/24"), 2, Some(r(a2))),
            ]
        };
        let d = out.update(&mut t, want(&a1, &a2), false);
        assert_eq!(d.announce.len(), 2);
        assert_eq!(d.announce[0].3.len(), 2);
        assert_eq!((out.len(), t.len()), (3, 2));
        // A second peer with the same routes adds no table entry.
        other.update(&mut t, want(&a1, &a2), false);
        assert_eq!(t.len(), 2);
        assert!(out.update(&mut t, want(&a1, &a2), false).is_empty());
        assert_eq!(out.update(&mut t, want(&a1, &a2), true).announce.len(), 2);
        assert_eq!(out.len(), 3, "a resend changes nothing held");
        let d = out.update(
            &mut t,
            vec![
                (p("10.0.1.0/24"), 1, None),
                (p("10.0.2.0/24"), 2, Some(r(&a1))),
                (p("10.0.9.0/24"), 9, None),
            ],
            false,
        );
        assert_eq!(
            d.withdraw,
            vec![(Family::IPV4_UNICAST, vec![Nlri::new(p("10.0.1.0/24"))])]
        );
        assert_eq!(d.announce.len(), 1);
        assert_eq!(d.announce[0].3, vec![Nlri::new(p("10.0.2.0/24"))]);
        assert_eq!(out.len(), 2);
        assert_eq!(t.get(out.get(2).unwrap()).unwrap().attrs, a1);
        assert_eq!(out.get(1), None);
        // Entries go when no peer holds them.
        other.clear(&mut t);
        assert_eq!(t.len(), 1);
        out.forget(&mut t, 0);
        out.forget(&mut t, 2);
        assert_eq!((out.len(), t.len()), (0, 0));
        // A freed handle is reused.
        out.update(&mut t, vec![(p("10.0.3.0/24"), 3, Some(r(&a2)))], false);
        assert_eq!(t.get(out.get(3).unwrap()).unwrap().attrs, a2);
    }
}
