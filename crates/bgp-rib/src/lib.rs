//! Routing information bases.
//!
//! - [`Interner`]: identical attribute sets are stored once and shared by
//!   `Arc` (a table has far fewer distinct sets than prefixes).
//! - [`AdjRibIn`]: what one peer announced (after RFC 7606 repair) that the
//!   Loc-RIB does not hold as received: routes import policy rejected or changed.
//! - [`AdjRibOut`]: which Loc-RIB destinations one peer holds a route for,
//!   a bit each; [`AdjRibOut::update`] turns wanted routes ([`OutRoute`]: the
//!   best path's attribute set and a [`rewrite::Rewrite`] applied at send
//!   time) into announcements and withdrawals, grouped by attribute set so one
//!   UPDATE carries many prefixes.
//!
//! - [`locrib::LocRib`]: every path per prefix (a hash index per family
//!   over a slab of destinations), with the best path and ECMP set chosen
//!   by [`best`].

pub mod best;
pub mod locrib;
pub mod prefetch;
pub mod rewrite;
mod v4index;

use std::collections::BTreeMap;

use bgp_wire::update::NextHop;
use bgp_wire::{Family, Nlri, PathAttrs};
use ipnet::IpNet;
pub use rewrite::Rewrite;

/// An interned attribute set, shared by every route that has it.
///
/// A `triomphe::Arc`: one reference count and no weak count, so a set and
/// its count take 72 bytes, one 80-byte malloc chunk (with `std`'s `Arc`,
/// 80 bytes and a 96-byte chunk); a table holds hundreds of thousands.
pub type SharedAttrs = triomphe::Arc<PathAttrs>;

/// Shares identical attribute sets; shared itself by the threads that
/// receive them (the peer tasks intern what they decode, so the main loop
/// does not: [`Interner::intern`] takes `&self`).
///
/// (hashbrown's default hasher: fast, and randomly seeded so that attribute
/// sets crafted by a peer cannot be made to collide. Each set's hash is kept
/// beside it: a new set is hashed once, not again for its insert nor every
/// time the table grows, which re-hashed every set held: without it, 8
/// bytes less per slot, but (a) took 0.1-0.3 s longer, each rehash reading
/// every set and its AS path from cold memory. The table is split in
/// [`SHARDS`] by hash, each behind its own lock: peer tasks seldom wait for
/// each other, and each part grows on its own, a sixteenth of the table at
/// a time. Each shard has a cache line of its own, with its count beside
/// its lock, so that counting the sets locks nothing and no shard's lock
/// shares a line with another's: perf had the peer tasks spending 8 % of
/// their time releasing these locks, with two shards to a line and the
/// main loop locking all sixteen to count.)
pub struct Interner {
    shards: [Slot; SHARDS],
    hasher: hashbrown::DefaultHashBuilder,
    /// Sets held after the last collection.
    live: std::sync::atomic::AtomicUsize,
}

type Shard = hashbrown::HashTable<(u64, SharedAttrs)>;

/// One shard, its set count (written under its lock, read without) and
/// its own cache line.
#[derive(Default)]
#[repr(align(64))]
struct Slot {
    table: std::sync::Mutex<Shard>,
    len: std::sync::atomic::AtomicUsize,
}

/// Parts of an [`Interner`]'s table.
pub const SHARDS: usize = 16;

impl Default for Interner {
    fn default() -> Self {
        Interner {
            shards: std::array::from_fn(|_| Default::default()),
            hasher: Default::default(),
            live: Default::default(),
        }
    }
}

impl std::fmt::Debug for Interner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interner")
            .field("sets", &self.len())
            .finish()
    }
}

impl Interner {
    fn shard(&self, i: usize) -> std::sync::MutexGuard<'_, Shard> {
        // (A shard is consistent after any panic in it: a set is in or not.)
        self.shards[i]
            .table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn intern(&self, mut a: PathAttrs) -> SharedAttrs {
        use std::hash::BuildHasher;
        // Equal sets in one form (rare attributes all absent = none).
        a.normalize();
        let h = self.hasher.hash_one(&a);
        // (The top bits pick the shard; hashbrown uses the low ones and
        // the top seven, which stay spread within a shard.)
        let i = (h >> 32) as usize % SHARDS;
        let mut t = self.shard(i);
        if let Some((_, x)) = t.find(h, |(xh, x)| *xh == h && **x == a) {
            return x.clone();
        }
        let x = SharedAttrs::new(a);
        t.insert_unique(h, (h, x.clone()), |(h, _)| *h);
        self.shards[i]
            .len
            .store(t.len(), std::sync::atomic::Ordering::Relaxed);
        x
    }

    /// Drop sets no route uses any more (one shard locked at a time).
    pub fn collect(&self) {
        let mut live = 0;
        for i in 0..SHARDS {
            let mut t = self.shard(i);
            t.retain(|(_, a)| SharedAttrs::count(a) > 1);
            live += t.len();
            self.shards[i]
                .len
                .store(t.len(), std::sync::atomic::Ordering::Relaxed);
        }
        self.live.store(live, std::sync::atomic::Ordering::Relaxed);
    }

    /// [`Interner::collect`] once the sets have doubled (and grown by a few
    /// thousand) since the last collection: routes whose attributes keep
    /// changing leave sets no route uses, and these go at an amortized
    /// constant cost per set interned. Whether it collected.
    pub fn maybe_collect(&self) -> bool {
        let live = self.live.load(std::sync::atomic::Ordering::Relaxed);
        if self.len() <= 2 * live + 4096 {
            return false;
        }
        self.collect();
        true
    }

    /// Sets held (a moment's count while other threads intern; no lock
    /// taken).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.len.load(std::sync::atomic::Ordering::Relaxed))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A route as held in a RIB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Interned with the route's next hop (see [`Route::next_hop`]).
    pub attrs: SharedAttrs,
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
    pub attrs: SharedAttrs,
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
            SharedAttrs::as_ptr(&self.attrs) as usize,
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

/// What we have announced to one peer: one bit per Loc-RIB destination id
/// ([`locrib::LocRib::iter_ids`]), set while the peer holds a route for it
/// (BIRD keeps a bit per route and channel the same way). What was sent is
/// not kept: it is the export of the destination's best path, computed
/// again when needed ([`AdjRibOut::update`] announces every wanted route it
/// is given; the caller gives only destinations that changed). 1M
/// destinations cost 128 KiB per peer.
#[derive(Debug, Default)]
pub struct AdjRibOut {
    sent: IdSet,
}

/// A set of Loc-RIB destination ids, one bit each (1M ids: 128 KiB).
#[derive(Debug, Default, Clone)]
pub struct IdSet {
    words: Vec<u64>,
    count: usize,
}

impl IdSet {
    pub fn contains(&self, id: u32) -> bool {
        self.words
            .get(id as usize / 64)
            .is_some_and(|w| w & (1 << (id % 64)) != 0)
    }

    /// Add `id`; whether it was absent.
    pub fn insert(&mut self, id: u32) -> bool {
        !self.put(id, true)
    }

    /// Remove `id`; whether it was present.
    pub fn remove(&mut self, id: u32) -> bool {
        self.put(id, false)
    }

    /// Set or clear `id`'s bit, returning whether it was set.
    fn put(&mut self, id: u32, on: bool) -> bool {
        let (w, b) = (id as usize / 64, 1u64 << (id % 64));
        if w >= self.words.len() {
            if !on {
                return false;
            }
            // Grown by doubling, at least to the word needed.
            let n = (w + 1).max(self.words.len() * 2);
            self.words.resize(n, 0);
        }
        let was = self.words[w] & b != 0;
        if on {
            self.words[w] |= b;
        } else {
            self.words[w] &= !b;
        }
        match (was, on) {
            (false, true) => self.count += 1,
            (true, false) => self.count -= 1,
            _ => {}
        }
        was
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn clear(&mut self) {
        *self = Self::default();
    }
}

impl AdjRibOut {
    /// Apply changes for some destinations (`(prefix, id, route)`, `None` =
    /// the peer should not have it), returning what must be sent:
    /// announcements grouped by attribute set, rewrite, next hop and family
    /// (one UPDATE carries many prefixes), withdrawals by family of what the
    /// peer holds. Every wanted route is announced (an UPDATE replaces what
    /// the peer had for the prefix).
    pub fn update(
        &mut self,
        changes: impl IntoIterator<Item = (IpNet, u32, Option<OutRoute>)>,
    ) -> OutDiff {
        // Groups in order of first appearance, found through `index`; runs
        // of prefixes with the same route (the common case: they came in one
        // UPDATE) reuse the last group.
        let mut groups: Vec<Announce> = Vec::new();
        let mut index: hashbrown::HashMap<GroupKey, usize> = hashbrown::HashMap::new();
        let mut last_group: Option<(GroupKey, usize)> = None;
        let mut withdraw: BTreeMap<Family, Vec<Nlri>> = BTreeMap::new();
        for (p, id, want) in changes {
            let n = Nlri::new(p);
            match want {
                Some(r) => {
                    self.sent.insert(id);
                    let k = (r.identity(), n.family());
                    let g = match last_group {
                        Some((lk, g)) if lk == k => g,
                        _ => {
                            let g = *index.entry(k).or_insert_with(|| {
                                groups.push(Announce {
                                    route: r,
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
                }
                None => {
                    if self.sent.remove(id) {
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

    /// Whether the peer holds a route for destination `id`.
    pub fn holds(&self, id: u32) -> bool {
        self.sent.contains(id)
    }

    /// Drop the bit of a pruned destination (its id is about to be reused).
    pub fn forget(&mut self, id: u32) {
        self.sent.remove(id);
    }

    pub fn len(&self) -> usize {
        self.sent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }

    /// Forget everything (session down).
    pub fn clear(&mut self) {
        self.sent.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bgp_wire::{AsPath, Origin};

    #[test]
    fn sets_no_route_uses_go_once_they_have_doubled() {
        let i = Interner::default();
        let kept: Vec<_> = (0..5000).map(|n| i.intern(attrs(n))).collect();
        // Churn: sets interned and dropped at once.
        let mut collected = 0;
        for n in 5000..40_000 {
            drop(i.intern(attrs(n)));
            if i.maybe_collect() {
                collected += 1;
                assert_eq!(i.len(), kept.len(), "only the sets in use are left");
            }
            assert!(i.len() <= 2 * kept.len() + 4097, "{}", i.len());
        }
        assert!(collected >= 2, "{collected}");
        // A set in use is still shared.
        assert!(SharedAttrs::ptr_eq(&i.intern(attrs(7)), &kept[7]));
    }

    fn attrs(asn: u32) -> PathAttrs {
        PathAttrs {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::from_sequence(vec![asn])),
            next_hop: Some("192.0.2.1".parse().unwrap()),
            ..Default::default()
        }
    }

    #[test]
    fn threads_interning_the_same_sets_share_one_of_each() {
        let i = Interner::default();
        let got: Vec<Vec<SharedAttrs>> = std::thread::scope(|s| {
            let i = &i;
            let hs: Vec<_> = (0..4)
                .map(|t| {
                    // Each thread in another order.
                    s.spawn(move || {
                        let mut v: Vec<_> = (0..5000u32)
                            .map(|n| (n + t * 1237) % 5000)
                            .map(|n| (n, i.intern(attrs(n))))
                            .collect();
                        v.sort_by_key(|(n, _)| *n);
                        v.into_iter().map(|(_, a)| a).collect::<Vec<_>>()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(i.len(), 5000);
        for v in &got[1..] {
            for (a, b) in v.iter().zip(&got[0]) {
                assert!(SharedAttrs::ptr_eq(a, b));
            }
        }
        drop(got);
        i.collect();
        assert!(i.is_empty());
    }

    #[test]
    fn interned_sets_carry_their_as_path_length() {
        let i = Interner::default();
        let mut a = attrs(65001);
        a.as_path_mut().prepend(65000, 2);
        assert_eq!(a.as_path_len_hint, 0);
        let x = i.intern(a.clone());
        assert_eq!((x.as_path_len_hint, x.as_path_len()), (4, 3));
        // Found again from a set that does not know it.
        assert!(SharedAttrs::ptr_eq(&x, &i.intern(a)));
    }

    #[test]
    fn interned_sets_are_found_again_after_the_table_grew() {
        let i = Interner::default();
        let first: Vec<_> = (0..20_000).map(|n| i.intern(attrs(n))).collect();
        assert_eq!(i.len(), 20_000);
        for (n, a) in (0..20_000).zip(&first) {
            assert!(SharedAttrs::ptr_eq(a, &i.intern(attrs(n))), "set {n} found");
        }
        assert_eq!(i.len(), 20_000);
        drop(first);
        i.collect();
        assert!(i.is_empty());
    }

    #[test]
    fn interning_finds_sets_equal_whether_rare_attributes_were_touched_or_not() {
        let i = Interner::default();
        let plain = i.intern(attrs(1));
        let mut touched = attrs(1);
        touched
            .rare_mut()
            .cluster_list
            .push("192.0.2.8".parse().unwrap());
        touched.rare_mut().cluster_list.clear();
        assert!(touched.rare.is_some());
        assert!(
            SharedAttrs::ptr_eq(&plain, &i.intern(touched)),
            "one set, not two"
        );
        let mut rr = attrs(1);
        rr.rare_mut().originator_id = Some("192.0.2.9".parse().unwrap());
        let rr = i.intern(rr);
        assert!(!SharedAttrs::ptr_eq(&plain, &rr));
        assert_eq!(rr.originator_id(), Some("192.0.2.9".parse().unwrap()));
        assert_eq!(
            (plain.originator_id(), plain.cluster_list().len()),
            (None, 0)
        );
        assert_eq!(i.len(), 2);
    }

    #[test]
    fn adj_rib_in_holds_only_what_it_is_given_and_counts_every_route() {
        let i = Interner::default();
        let nh = NextHop::V4("192.0.2.1".parse().unwrap());
        let mut a = attrs(65001);
        a.set_route_next_hop(Some(nh));
        let a = i.intern(a);
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
    fn adj_rib_out_groups_announcements_and_withdraws_only_what_was_sent() {
        let i = Interner::default();
        let a1 = i.intern(attrs(1));
        let a2 = i.intern(attrs(2));
        let nh = NextHop::V4("192.0.2.1".parse().unwrap());
        let r = |a: &SharedAttrs| OutRoute {
            attrs: a.clone(),
            rewrite: Rewrite::AsIs,
            next_hop: nh,
        };
        let mut out = AdjRibOut::default();
        let p = |s: &str| -> IpNet { s.parse().unwrap() };
        let want = |a1: &SharedAttrs, a2: &SharedAttrs| {
            vec![
                (p("10.0.0.0/24"), 0, Some(r(a1))),
                (p("10.0.2.0/24"), 2, Some(r(a2))),
                (p("10.0.1.0/24"), 1, Some(r(a1))),
            ]
        };
        let d = out.update(want(&a1, &a2));
        assert_eq!(d.announce.len(), 2, "one group per route");
        assert_eq!(
            d.announce[0].nlri,
            vec![Nlri::new(p("10.0.0.0/24")), Nlri::new(p("10.0.1.0/24"))]
        );
        assert_eq!(d.announce[1].route.attrs, a2);
        assert!(d.withdraw.is_empty());
        assert_eq!(out.len(), 3);
        // Announced again when asked: the peer's copy is replaced, nothing counted twice.
        assert_eq!(out.update(want(&a1, &a2)).announce.len(), 2);
        assert_eq!(out.len(), 3);
        let d = out.update(vec![
            (p("10.0.1.0/24"), 1, None),
            (p("10.0.2.0/24"), 2, Some(r(&a1))),
            (p("10.0.9.0/24"), 9, None),
            (p("10.9.0.0/16"), 1000, None),
        ]);
        assert_eq!(
            d.withdraw,
            vec![(Family::IPV4_UNICAST, vec![Nlri::new(p("10.0.1.0/24"))])],
            "only what the peer holds is withdrawn"
        );
        assert_eq!(d.announce.len(), 1);
        assert_eq!(d.announce[0].nlri, vec![Nlri::new(p("10.0.2.0/24"))]);
        assert_eq!(out.len(), 2);
        assert!(out.holds(0) && out.holds(2) && !out.holds(1) && !out.holds(9));
        assert!(!out.holds(100_000), "beyond the bits: not held");
        // Bits in later words, and forgetting a pruned destination.
        out.update(vec![(p("10.1.0.0/24"), 64, Some(r(&a2)))]);
        out.update(vec![(p("10.2.0.0/24"), 1000, Some(r(&a2)))]);
        assert!(out.holds(64) && out.holds(1000) && !out.holds(63) && !out.holds(65));
        assert_eq!(out.len(), 4);
        out.forget(64);
        out.forget(64);
        out.forget(5000);
        assert_eq!(out.len(), 3);
        // The same set with another rewrite is another route: another group.
        let ebgp = OutRoute {
            rewrite: Rewrite::Ebgp {
                asn: 64512,
                keep_med: false,
            },
            ..r(&a2)
        };
        let d = out.update(vec![
            (p("10.0.3.0/24"), 3, Some(ebgp.clone())),
            (p("10.0.4.0/24"), 4, Some(r(&a2))),
        ]);
        assert_eq!(d.announce.len(), 2);
        assert_eq!(d.announce[0].route, ebgp);
        out.clear();
        assert!(out.is_empty() && !out.holds(0));
        assert!(out.update(vec![(p("10.0.0.0/24"), 0, None)]).is_empty());
    }
}
