//! Routing information bases.
//!
//! - [`Interner`]: identical attribute sets are stored once and shared by
//!   `Arc` (a table has far fewer distinct sets than prefixes).
//! - [`AdjRibIn`]: what one peer announced (after RFC 7606 repair) that the
//!   Loc-RIB does not hold as received: routes import policy rejected or changed.
//! - [`AdjRibOut`]: what we announced to one peer, as a handle per Loc-RIB
//!   destination id into the [`OutTable`] all peers share (each entry the
//!   best path's attribute set and a [`rewrite::Rewrite`] applied at send time);
//!   [`AdjRibOut::update`] turns wanted routes into the minimal announcements
//!   and withdrawals, grouped by attribute set so one UPDATE carries many
//!   prefixes.
//!
//! - [`locrib::LocRib`]: every path per prefix in a prefix trie, with the best
//!   path and ECMP set chosen by [`best`].

pub mod best;
pub mod locrib;
pub mod rewrite;

use std::collections::BTreeMap;
use std::sync::Arc;

use bgp_wire::update::NextHop;
use bgp_wire::{Family, Nlri, PathAttrs};
use ipnet::IpNet;
pub use rewrite::Rewrite;

/// Shares identical attribute sets.
/// (hashbrown's default hasher: fast, and randomly seeded so that attribute
/// sets crafted by a peer cannot be made to collide. Each set's hash is kept
/// beside it: a new set is hashed once, not again for its insert nor every
/// time the table grows, which re-hashed every set held.)
#[derive(Default)]
pub struct Interner {
    set: hashbrown::HashTable<(u64, Arc<PathAttrs>)>,
    hasher: hashbrown::DefaultHashBuilder,
}

impl std::fmt::Debug for Interner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interner")
            .field("sets", &self.set.len())
            .finish()
    }
}

impl Interner {
    pub fn intern(&mut self, a: PathAttrs) -> Arc<PathAttrs> {
        use std::hash::BuildHasher;
        let h = self.hasher.hash_one(&a);
        if let Some((_, x)) = self.set.find(h, |(xh, x)| *xh == h && **x == a) {
            return x.clone();
        }
        let x = Arc::new(a);
        self.set.insert_unique(h, (h, x.clone()), |(h, _)| *h);
        x
    }

    /// Drop sets no route uses any more.
    pub fn collect(&mut self) {
        self.set.retain(|(_, a)| Arc::strong_count(a) > 1);
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
    /// Interned with the route's next hop (see [`Route::next_hop`]).
    pub attrs: Arc<PathAttrs>,
    /// Unix seconds (a u32 lasts until 2106; four bytes, not sixteen, per route).
    pub since: u32,
}

impl Route {
    pub fn next_hop(&self) -> NextHop {
        best::next_hop_of(&self.attrs)
    }
}

/// Key of a route in an Adj-RIB: prefix and add-path identifier.
pub type RouteKey = (IpNet, u32);

/// What the Loc-RIB does not already hold of one peer's Adj-RIB-In.
///
/// A route that import policy accepted unchanged *is* its Loc-RIB path (same
/// shared attribute set, next hop and arrival time), so it is not stored a
/// second time: this keeps only the routes that policy rejected or changed,
/// as received (BIRD's "import keep filtered"), and the count of every
/// route received and not withdrawn. Together with the peer's Loc-RIB paths
/// that is the whole Adj-RIB-In: policy can be re-run on it without a route
/// refresh, and it can be listed (see `Main::received` in the speaker).
#[derive(Debug, Default)]
pub struct AdjRibIn {
    held: hashbrown::HashMap<RouteKey, Route>,
    count: usize,
}

impl AdjRibIn {
    /// Keep a route that the Loc-RIB does not hold as received.
    pub fn hold(&mut self, key: RouteKey, route: Route) {
        self.held.insert(key, route);
    }

    /// Stop holding `key` (withdrawn, or now accepted unchanged); whether it was held.
    pub fn release(&mut self, key: &RouteKey) -> bool {
        // (Most peers have every route accepted unchanged: no probe then.)
        !self.held.is_empty() && self.held.remove(key).is_some()
    }

    pub fn held(&self, key: &RouteKey) -> Option<&Route> {
        self.held.get(key)
    }

    /// The held routes, in no particular order.
    pub fn iter_held(&self) -> impl Iterator<Item = (&RouteKey, &Route)> {
        self.held.iter()
    }

    /// Count a route received (`true`) or withdrawn (`false`).
    pub fn count(&mut self, received: bool) {
        if received {
            self.count += 1;
        } else {
            self.count = self.count.saturating_sub(1);
        }
    }

    /// Routes received and not withdrawn.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// A route we want a peer to have: an attribute set (interned: mostly the
/// Loc-RIB best path's own), how it is rewritten when sent, and the next hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutRoute {
    pub attrs: Arc<PathAttrs>,
    pub rewrite: Rewrite,
    pub next_hop: NextHop,
}

impl OutRoute {
    /// The attributes as the peer gets them.
    pub fn sent_attrs(&self) -> PathAttrs {
        self.rewrite.apply(&self.attrs)
    }

    /// What names this route among others: attribute set by identity, rewrite, next hop.
    fn identity(&self) -> (usize, Rewrite, NextHop) {
        (
            Arc::as_ptr(&self.attrs) as usize,
            self.rewrite,
            self.next_hop,
        )
    }
}

/// Prefixes announced with one route, in one family.
#[derive(Debug, PartialEq, Eq)]
pub struct Announce {
    pub route: OutRoute,
    pub family: Family,
    pub nlri: Vec<Nlri>,
}

/// Announcements grouped by route and family, and withdrawals by family.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct OutDiff {
    pub announce: Vec<Announce>,
    pub withdraw: Vec<(Family, Vec<Nlri>)>,
}

impl OutDiff {
    pub fn is_empty(&self) -> bool {
        self.announce.is_empty() && self.withdraw.is_empty()
    }
}

/// Announcements share an UPDATE when route ([`OutRoute::identity`]) and family match.
type GroupKey = ((usize, Rewrite, NextHop), Family);

/// The routes sent to peers, each (attribute set, rewrite, next hop) once
/// for every peer and prefix that has it, named by a small handle and counted.
#[derive(Default)]
pub struct OutTable {
    /// By handle - 1: the route and how many Adj-RIB-Out entries hold it
    /// (`None`: a free slot).
    entries: Vec<Option<(OutRoute, u32)>>,
    /// Handles by [`OutRoute::identity`] (attribute sets are interned, so
    /// identity names them); the keys are the entries themselves.
    index: hashbrown::HashTable<u32>,
    hasher: hashbrown::DefaultHashBuilder,
    free: Vec<u32>,
}

fn route_hash(hasher: &hashbrown::DefaultHashBuilder, r: &OutRoute) -> u64 {
    use std::hash::BuildHasher;
    hasher.hash_one(r.identity())
}

impl std::fmt::Debug for OutTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutTable")
            .field("routes", &self.index.len())
            .finish()
    }
}

impl OutTable {
    fn acquire(&mut self, r: OutRoute) -> u32 {
        let id = r.identity();
        let h = route_hash(&self.hasher, &r);
        let entries = &mut self.entries;
        let found = self.index.find(h, |&x| {
            entries[x as usize - 1]
                .as_ref()
                .is_some_and(|(e, _)| e.identity() == id)
        });
        if let Some(&x) = found {
            if let Some((_, n)) = &mut entries[x as usize - 1] {
                *n += 1;
            }
            return x;
        }
        let x = match self.free.pop() {
            Some(x) => {
                entries[x as usize - 1] = Some((r, 1));
                x
            }
            None => {
                entries.push(Some((r, 1)));
                entries.len() as u32
            }
        };
        let hasher = &self.hasher;
        self.index.insert_unique(h, x, |&x| {
            entries[x as usize - 1]
                .as_ref()
                .map_or(0, |(e, _)| route_hash(hasher, e))
        });
        x
    }

    /// One more holder of a handle just returned by [`OutTable::acquire`].
    fn acquire_again(&mut self, h: u32) -> u32 {
        if let Some((_, n)) = &mut self.entries[h as usize - 1] {
            *n += 1;
        }
        h
    }

    fn release(&mut self, x: u32) {
        let i = x as usize - 1;
        let Some((r, n)) = &mut self.entries[i] else {
            return;
        };
        *n -= 1;
        if *n > 0 {
            return;
        }
        let h = route_hash(&self.hasher, r);
        if let Ok(e) = self.index.find_entry(h, |&y| y == x) {
            e.remove();
        }
        self.entries[i] = None;
        self.free.push(x);
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
/// ([`locrib::LocRib::iter_ids`]) a handle into the shared [`OutTable`]. Four bytes
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
        // Groups in order of first appearance, found through `index`; runs
        // of prefixes with the same route (the common case: they came in one
        // UPDATE) reuse the last group and the last shared-table handle.
        let mut groups: Vec<Announce> = Vec::new();
        let mut index: hashbrown::HashMap<GroupKey, usize> = hashbrown::HashMap::new();
        let mut last_group: Option<(GroupKey, usize)> = None;
        let mut last_handle: Option<((usize, Rewrite, NextHop), u32)> = None;
        let mut withdraw: BTreeMap<Family, Vec<Nlri>> = BTreeMap::new();
        for (p, id, want) in changes {
            let i = id as usize;
            let cur = self.sent.get(i).copied().unwrap_or(0);
            match want {
                Some(r) => {
                    let hk = r.identity();
                    let same = table.get(cur).is_some_and(|c| c.identity() == hk);
                    if same && !resend {
                        continue;
                    }
                    let n = Nlri::new(p);
                    let k = (hk, n.family());
                    let g = match last_group {
                        Some((lk, g)) if lk == k => g,
                        _ => {
                            let g = *index.entry(k).or_insert_with(|| {
                                groups.push(Announce {
                                    route: r.clone(),
                                    family: k.1,
                                    nlri: Vec::new(),
                                });
                                groups.len() - 1
                            });
                            last_group = Some((k, g));
                            g
                        }
                    };
                    groups[g].nlri.push(n);
                    if same {
                        continue;
                    }
                    let h = match last_handle {
                        Some((lk, h)) if lk == hk => table.acquire_again(h),
                        _ => {
                            let h = table.acquire(r);
                            last_handle = Some((hk, h));
                            h
                        }
                    };
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
            announce: groups,
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
    use bgp_wire::{AsPath, Origin};

    fn attrs(asn: u32) -> PathAttrs {
        PathAttrs {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::from_sequence(vec![asn])),
            next_hop: Some("192.0.2.1".parse().unwrap()),
            ..Default::default()
        }
    }

    #[test]
    fn adj_rib_in_holds_only_what_it_is_given_and_counts_every_route() {
        let mut i = Interner::default();
        let nh = NextHop::V4("192.0.2.1".parse().unwrap());
        let a = i.intern(PathAttrs {
            route_next_hop: Some(nh),
            ..attrs(65001)
        });
        let p: IpNet = "10.0.0.0/24".parse().unwrap();
        let mut rib = AdjRibIn::default();
        assert!(
            !rib.release(&(p, 0)),
            "nothing held: no probe, nothing released"
        );
        rib.count(true);
        rib.count(true);
        rib.hold(
            (p, 0),
            Route {
                attrs: a.clone(),
                since: 7,
            },
        );
        assert_eq!(rib.held(&(p, 0)).unwrap().since, 7);
        assert_eq!(rib.held(&(p, 0)).unwrap().next_hop(), nh);
        assert!(rib.held(&(p, 1)).is_none(), "path ids are kept apart");
        assert_eq!((rib.len(), rib.iter_held().count()), (2, 1));
        assert!(rib.release(&(p, 0)));
        assert!(!rib.release(&(p, 0)));
        rib.count(false);
        rib.count(false);
        rib.count(false);
        assert!(rib.is_empty(), "never below zero");
    }

    #[test]
    fn adj_rib_out_groups_withdraws_and_shares_the_out_table() {
        let mut i = Interner::default();
        let a1 = i.intern(attrs(1));
        let a2 = i.intern(attrs(2));
        let nh = NextHop::V4("192.0.2.1".parse().unwrap());
        let r = |a: &Arc<PathAttrs>| OutRoute {
            attrs: a.clone(),
            rewrite: Rewrite::AsIs,
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
        assert_eq!(d.announce[0].nlri.len(), 2);
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
        assert_eq!(d.announce[0].nlri, vec![Nlri::new(p("10.0.2.0/24"))]);
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
        // The same set with another rewrite is another route: sent again, its own entry.
        let ebgp = OutRoute {
            rewrite: Rewrite::Ebgp {
                asn: 64512,
                keep_med: false,
            },
            ..r(&a2)
        };
        let d = out.update(
            &mut t,
            vec![(p("10.0.3.0/24"), 3, Some(ebgp.clone()))],
            false,
        );
        assert_eq!(d.announce.len(), 1);
        assert_eq!(d.announce[0].route, ebgp);
        assert_eq!(t.len(), 1, "the as-is entry went with its last holder");
        other.update(&mut t, vec![(p("10.0.4.0/24"), 4, Some(r(&a2)))], false);
        assert_eq!(t.len(), 2);
        assert_eq!(t.get(other.get(4).unwrap()).unwrap().rewrite, Rewrite::AsIs);
    }
}
