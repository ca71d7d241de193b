//! The Loc-RIB: every path to every prefix, with the best path and the
//! multipath set kept current.
//!
//! Destinations live in a slab indexed by their id (the same small number
//! that names them in every peer's Adj-RIB-Out); a hash index per family maps
//! a prefix to its id. Every Loc-RIB operation is an exact-prefix one (the
//! kernel does longest-prefix matching, `fib::Resolver` next-hop lookups), so
//! one hash probe and one array index per operation, instead of a trie walk
//! over nodes that hold the destinations themselves.

use ipnet::{IpNet, Ipv6Net};

use bgp_wire::ThinVec;

use crate::v4index::{V4Index, ID_BITS};

use crate::best::{
    select, BestCfg, Contexts, CtxId, IgpCost, NewPath, Path, PathCtx, Selected, Source,
};

/// All paths to one prefix, ordered best first (see [`crate::best::select`]),
/// and which of them are selected (the best path and its multipath set).
///
/// 24 bytes, the size of a path: one path is held inline (almost every
/// prefix has one, and its selection is whether it is eligible); more live
/// in one allocation (a `ThinVec`: its length and capacity in front of the
/// paths), their selection beside its pointer.
#[derive(Debug, Clone, Default)]
pub struct Dest {
    paths: Paths,
}

/// (Two variants, not three: a path's attribute set pointer has one
/// invalid value, which tells them apart, and `Many`'s two words fit
/// beside it, so this is no wider than a path.)
#[derive(Debug, Clone)]
enum Paths {
    One(Path),
    /// No path (empty: a destination emptied, not pruned yet, or a free
    /// slot; allocates nothing), or two and more.
    Many(Selected, ThinVec<Path>),
}

impl Default for Paths {
    fn default() -> Self {
        Paths::Many(Selected::new(), ThinVec::new())
    }
}

impl Dest {
    /// The paths, best first.
    pub fn paths(&self) -> &[Path] {
        match &self.paths {
            Paths::One(p) => std::slice::from_ref(p),
            Paths::Many(_, paths) => paths,
        }
    }
    fn paths_mut(&mut self) -> &mut [Path] {
        match &mut self.paths {
            Paths::One(p) => std::slice::from_mut(p),
            Paths::Many(_, paths) => paths,
        }
    }
    /// Indexes into [`Dest::paths`] of the best path and its multipath set.
    pub fn selected(&self) -> Selected {
        match &self.paths {
            Paths::One(p) => Selected::single(p.eligible()),
            Paths::Many(selected, _) => *selected,
        }
    }
    pub fn is_empty(&self) -> bool {
        matches!(&self.paths, Paths::Many(_, paths) if paths.is_empty())
    }
    /// (Paths held, slots allocated and not used.)
    fn room(&self) -> (usize, usize) {
        match &self.paths {
            Paths::One(_) => (1, 0),
            Paths::Many(_, paths) => (paths.len(), paths.capacity() - paths.len()),
        }
    }
    pub fn best(&self) -> Option<&Path> {
        self.selected().first().map(|i| &self.paths()[i])
    }
    pub fn multipath(&self) -> impl Iterator<Item = &Path> {
        let paths = self.paths();
        self.selected().iter().map(move |i| &paths[i])
    }
    /// Choose the selection again (after the paths changed).
    fn select(&mut self, cx: &Contexts, cfg: &BestCfg) {
        if let Paths::Many(selected, paths) = &mut self.paths {
            *selected = crate::best::multipath_set(paths, cx, cfg);
        }
    }
    /// Order all paths again and select.
    fn sort(&mut self, cx: &Contexts, cfg: &BestCfg) {
        if let Paths::Many(selected, paths) = &mut self.paths {
            *selected = select(paths, cx, cfg);
        }
    }
    /// Put `path` at index `at` (then [`Dest::select`]); a list made or
    /// grown has room for `wide` paths (see [`Room::wide`]), or two more.
    fn insert(&mut self, at: usize, path: Path, wide: usize) {
        self.paths = match std::mem::take(&mut self.paths) {
            Paths::One(p) => {
                let mut paths = ThinVec::with_capacity(wide.max(2));
                paths.push(p);
                paths.insert(at, path);
                Paths::Many(Selected::new(), paths)
            }
            Paths::Many(_, paths) if paths.is_empty() => Paths::One(path),
            Paths::Many(selected, mut paths) => {
                // Grown to `wide`, or by two, not doubled: ten paths take
                // ten slots, not sixteen (scenario (b): 100k prefixes from
                // ten peers each).
                if paths.len() == paths.capacity() {
                    paths.reserve_exact(wide.saturating_sub(paths.len()).max(2));
                }
                paths.insert(at, path);
                Paths::Many(selected, paths)
            }
        };
    }
    /// Take out the path at `j`, to put it (or its replacement) back with
    /// [`Dest::insert`] (the storage is kept).
    fn take(&mut self, j: usize) -> Option<Path> {
        if let Paths::Many(_, paths) = &mut self.paths {
            return (j < paths.len()).then(|| paths.remove(j));
        }
        match std::mem::take(&mut self.paths) {
            Paths::One(p) => Some(p),
            Paths::Many(..) => None,
        }
    }
    /// Remove the path at `first` and, unless `one`, the later ones `gone`
    /// picks (then [`Dest::select`]).
    fn remove_where(&mut self, first: usize, one: bool, mut gone: impl FnMut(&Path) -> bool) {
        self.paths = match std::mem::take(&mut self.paths) {
            Paths::One(_) => Paths::default(),
            Paths::Many(selected, mut paths) => {
                if first < paths.len() {
                    paths.remove(first);
                }
                if !one {
                    paths.retain(|p| !gone(p));
                }
                match paths.len() {
                    0 => Paths::default(),
                    // (Back inline when one is left.)
                    1 => Paths::One(paths.pop().expect("one path")),
                    n => {
                        if n <= paths.capacity() / 2 {
                            paths.shrink_to_fit();
                        }
                        Paths::Many(selected, paths)
                    }
                }
            }
        };
    }
}

/// What a change did to a prefix's selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Changed {
    /// Best path and multipath set unchanged.
    No,
    /// The selection changed (or the prefix has no usable path any more).
    Yes,
}

/// What [`LocRib::upsert_id`] or [`LocRib::remove_id`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub changed: Changed,
    /// The destination's id (none: the prefix has no destination).
    pub id: Option<u32>,
    /// A path from that (source, path id) was there before.
    pub had: bool,
}

/// How many paths the Loc-RIB holds and how many slots its path lists
/// have allocated and not used: the budget of [`Room::wide`].
#[derive(Default, Debug, Clone, Copy)]
struct Room {
    paths: usize,
    spare: usize,
}

impl Room {
    /// A destination's path list used to grow two slots at a time (ten
    /// paths take ten slots, not sixteen), which took a `realloc` every
    /// other path: 14 % of the main loop's time with ten peers sending one
    /// table. A prefix with a second path is mostly one that every peer
    /// announces (a service address from every node, a prefix from every
    /// upstream), so its list is made, once, with room for a path from
    /// every peer the Loc-RIB has paths from (at most 16), as long as the
    /// slots allocated and not used stay under a quarter of the paths held
    /// (with many peers and few paths a prefix, the lists grow two at a
    /// time again). 0: by two.
    fn wide(&self, sources: usize) -> usize {
        if self.spare < self.paths / 4 {
            sources.min(16)
        } else {
            0
        }
    }
    /// Account for a destination's change from `before` to `after` (its
    /// [`Dest::room`]s).
    fn change(&mut self, before: (usize, usize), after: (usize, usize)) {
        self.paths = self.paths + after.0 - before.0;
        self.spare = self.spare + after.1 - before.1;
    }
}

/// A destination whose last path goes stays (with no paths) until
/// [`LocRib::prune`], so that its id still names it while its withdrawal is
/// sent; lookups and listings do not show it.
#[derive(Default)]
pub struct LocRib {
    v4: V4Index,
    v6: hashbrown::HashMap<Ipv6Net, u32>,
    /// By id; the slot of a pruned id is empty until the id is reused.
    dests: Slab,
    pub cfg: BestCfg,
    /// The last arrival number given (see [`LocRib::next_seq`]).
    seq: u32,
    /// When paths arrived, by arrival number (see [`LocRib::since`]).
    arrivals: Arrivals,
    /// Ids of pruned destinations, for reuse; then `dests.len()` onwards.
    free_ids: Vec<u32>,
    /// Destinations with no path, not yet pruned.
    empty: usize,
    /// The paths' sources and IGP costs (see [`Path::ctx`]).
    ctxs: Contexts,
    /// Paths held and slots unused (see [`Room::wide`]).
    room: Room,
}

/// When paths arrived: the first arrival number given in each second that
/// gave one, and that second (Unix time), in order. A path's time is the
/// entry at or before its arrival number, so that a path needs no time of
/// its own (four bytes a path; a table of a million paths that arrived
/// within a minute has sixty entries here). Entries no path needs any more
/// are dropped once they have doubled ([`LocRib::compact_arrivals`]).
#[derive(Default)]
struct Arrivals {
    /// (first arrival number, Unix seconds), both increasing.
    log: Vec<(u32, u32)>,
    /// The clock: the time given to the next arrivals ([`LocRib::set_now`]).
    now: u32,
    /// Entries after the last compaction.
    kept: usize,
}

impl Arrivals {
    /// Note that arrival number `seq` is given now.
    fn note(&mut self, seq: u32) {
        if self.log.last().is_none_or(|&(_, t)| t != self.now) {
            self.log.push((seq, self.now));
        }
    }
    /// The entry of arrival number `seq`.
    fn entry(&self, seq: u32) -> Option<usize> {
        self.log.partition_point(|&(s, _)| s <= seq).checked_sub(1)
    }
    fn time(&self, seq: u32) -> u32 {
        self.entry(seq).map_or(0, |i| self.log[i].1)
    }
}

/// The most destinations a Loc-RIB holds (ids fit in 26 bits, so that an
/// IPv4 index entry is one `u64`); past it, new prefixes are not taken.
pub const MAX_DESTS: usize = 1 << ID_BITS;

/// The destinations by id, in chunks of a fixed size: growing never moves
/// (nor copies) the ones there, so the table never exists twice while it
/// grows (a `Vec` of 1M destinations is 32 MiB, and an allocator that
/// copies to grow it holds 48 MiB for a moment; glibc's realloc moves
/// large blocks by remapping, so with it this changes no measured figure).
#[derive(Default)]
struct Slab {
    chunks: Vec<Box<[Dest]>>,
    len: usize,
}

const CHUNK_BITS: u32 = 10;
const CHUNK: usize = 1 << CHUNK_BITS;

impl Slab {
    fn len(&self) -> usize {
        self.len
    }
    /// Add a default destination, returning its index.
    fn push_default(&mut self) -> usize {
        if self.len == self.chunks.len() * CHUNK {
            self.chunks
                .push((0..CHUNK).map(|_| Dest::default()).collect());
        }
        self.len += 1;
        self.len - 1
    }
}

impl std::ops::Index<usize> for Slab {
    type Output = Dest;
    fn index(&self, i: usize) -> &Dest {
        &self.chunks[i >> CHUNK_BITS][i & (CHUNK - 1)]
    }
}

impl std::ops::IndexMut<usize> for Slab {
    fn index_mut(&mut self, i: usize) -> &mut Dest {
        &mut self.chunks[i >> CHUNK_BITS][i & (CHUNK - 1)]
    }
}

/// One multipath entry as compared: source and attribute set, both by
/// identity (the set holds the path's next hop and path id).
type SelEntry = (usize, usize);

/// What the prefix forwards and advertises, compared before and after a
/// change; inline (no allocation) for up to two paths.
type Selection = smallvec::SmallVec<[SelEntry; 2]>;

fn selection(d: &Dest, cx: &Contexts) -> Selection {
    d.multipath()
        .map(|p| {
            (
                cx.get(p.ctx).source.identity(),
                crate::SharedAttrs::as_ptr(&p.attrs) as usize,
            )
        })
        .collect()
}

/// Remove `k` from the index if it names destination `id`.
fn remove_if<K: std::hash::Hash + Eq + Copy>(
    m: &mut hashbrown::HashMap<K, u32>,
    k: &K,
    id: u32,
) -> bool {
    match m.remove(k) {
        Some(v) if v == id => true,
        Some(v) => {
            m.insert(*k, v);
            false
        }
        None => false,
    }
}

impl LocRib {
    pub fn new(cfg: BestCfg) -> Self {
        LocRib {
            cfg,
            ..Default::default()
        }
    }

    fn id_any(&self, prefix: &IpNet) -> Option<u32> {
        match prefix {
            IpNet::V4(p) => self.v4.get(p),
            IpNet::V6(p) => self.v6.get(p).copied(),
        }
    }

    /// Start bringing what looking `prefix` up reads into the CPU's cache
    /// (IPv4: its index slot), so that importing it a little later does not
    /// wait for memory: called for the next UPDATE's prefixes while one is
    /// imported. Changes nothing.
    pub fn prefetch(&self, prefix: &IpNet) {
        if let IpNet::V4(p) = prefix {
            self.v4.prefetch(p);
        }
    }

    /// The destination of `prefix`, if it has a path.
    pub fn get(&self, prefix: &IpNet) -> Option<&Dest> {
        self.get_any(prefix).filter(|d| !d.is_empty())
    }

    fn get_any(&self, prefix: &IpNet) -> Option<&Dest> {
        self.id_any(prefix).map(|id| &self.dests[id as usize])
    }

    /// The id of `prefix`'s destination, also when its last path is gone
    /// but it is not pruned yet.
    pub fn id(&self, prefix: &IpNet) -> Option<u32> {
        self.id_any(prefix)
    }

    /// Remove the destinations of `prefixes` that have no path left,
    /// returning their ids (free for reuse from now on).
    pub fn prune(&mut self, prefixes: &[IpNet]) -> Vec<u32> {
        let named: Vec<(IpNet, u32)> = prefixes
            .iter()
            .filter_map(|p| Some((*p, self.id_any(p)?)))
            .collect();
        self.prune_ids(&named)
    }

    /// [`LocRib::prune`] of destinations named by (prefix, live id).
    pub fn prune_ids(&mut self, dests: &[(IpNet, u32)]) -> Vec<u32> {
        let mut freed = Vec::new();
        for (prefix, id) in dests {
            if !self.dests[*id as usize].is_empty() {
                continue;
            }
            // Only a live destination of that prefix (one probe; a repeated
            // entry finds it gone).
            let live = match prefix {
                IpNet::V4(p) => self.v4.remove_if(p, *id),
                IpNet::V6(p) => remove_if(&mut self.v6, p, *id),
            };
            if !live {
                continue;
            }
            let d = &mut self.dests[*id as usize];
            // Give the slot's memory back (a multipath set may have spilled).
            self.room.change(d.room(), (0, 0));
            *d = Dest::default();
            self.empty -= 1;
            self.free_ids.push(*id);
            freed.push(*id);
        }
        freed
    }

    /// Sort `d`'s paths again and select (after something changed them all).
    fn reselect(cx: &Contexts, cfg: &BestCfg, d: &mut Dest, before: Selection) -> Changed {
        d.sort(cx, cfg);
        Self::changed(d, cx, before)
    }

    fn changed(d: &Dest, cx: &Contexts, before: Selection) -> Changed {
        if selection(d, cx) == before {
            Changed::No
        } else {
            Changed::Yes
        }
    }

    /// The time (Unix seconds) given to paths that arrive from now on, as
    /// their [`LocRib::since`]: the caller reads the clock once per batch,
    /// not per path.
    pub fn set_now(&mut self, now: u32) {
        self.arrivals.now = now;
    }

    /// When `path` (one of this Loc-RIB's) arrived, or last changed
    /// attributes: Unix seconds; 0 for locally originated paths.
    pub fn since(&self, path: &Path) -> u32 {
        if path.is_local() {
            return 0;
        }
        self.arrivals.time(path.seq)
    }

    /// The next arrival number. Four bytes a path, not eight: when they
    /// run out (after four billion changes) every path is numbered again
    /// from 1 in the order it had, so ages compare as before.
    fn next_seq(&mut self) -> u32 {
        if self.seq == u32::MAX {
            self.renumber();
        }
        if self.arrivals.log.len() >= 2 * self.arrivals.kept + 1024 {
            self.compact_arrivals();
        }
        self.seq += 1;
        self.arrivals.note(self.seq);
        self.seq
    }

    /// Drop the arrival entries no path needs (one walk over the paths;
    /// called once they have doubled, so an amortized constant per entry).
    fn compact_arrivals(&mut self) {
        let a = &mut self.arrivals;
        let mut used = vec![false; a.log.len()];
        for i in 0..self.dests.len() {
            for p in self.dests[i].paths() {
                if let Some(e) = a.entry(p.seq) {
                    used[e] = true;
                }
            }
        }
        // (The last one stays: arrivals in this second go on with it.)
        if let Some(u) = used.last_mut() {
            *u = true;
        }
        let mut used = used.into_iter();
        a.log.retain(|_| used.next().unwrap_or(true));
        a.kept = a.log.len();
    }

    /// Number the paths again 1, 2, ... keeping their order of arrival
    /// and their times.
    fn renumber(&mut self) {
        let mut seqs: Vec<u32> = Vec::new();
        for i in 0..self.dests.len() {
            seqs.extend(self.dests[i].paths().iter().map(|p| p.seq));
        }
        seqs.sort_unstable();
        seqs.dedup();
        // Each entry starts at the first arrival number it still covers;
        // entries that cover none give way to the next one.
        let mut log: Vec<(u32, u32)> = Vec::new();
        for &(first, t) in &self.arrivals.log {
            let s = seqs.partition_point(|&x| x < first) as u32 + 1;
            match log.last_mut() {
                Some(last) if last.0 == s => *last = (s, t),
                _ => log.push((s, t)),
            }
        }
        for i in 0..self.dests.len() {
            for p in self.dests[i].paths_mut() {
                // (Every seq is in `seqs`.)
                p.seq = seqs.binary_search(&p.seq).map_or(0, |r| r as u32 + 1);
            }
        }
        self.seq = seqs.len() as u32;
        self.arrivals.kept = log.len();
        self.arrivals.log = log;
    }

    /// Add or replace the path from (source, path id).
    pub fn upsert(&mut self, prefix: IpNet, path: NewPath) -> Changed {
        self.upsert_id(prefix, path).changed
    }

    /// Where `path` (one of this Loc-RIB's) came from and what its next
    /// hop costs.
    pub fn context(&self, path: &Path) -> &PathCtx {
        self.ctxs.get(path.ctx)
    }

    /// Where `path` (one of this Loc-RIB's) came from.
    pub fn source(&self, path: &Path) -> &Source {
        &self.ctxs.get(path.ctx).source
    }

    /// The table of the paths' contexts (for [`crate::best::compare`]).
    pub fn contexts(&self) -> &Contexts {
        &self.ctxs
    }

    /// Drop the contexts no path names any more, once they have doubled
    /// since the last time (sessions that went, IGP costs that changed):
    /// one walk over the paths, an amortized constant per context. Call it
    /// between changes, when no [`Path`] is held outside the Loc-RIB.
    pub fn maybe_compact_contexts(&mut self) {
        if !self.ctxs.due() {
            return;
        }
        let dests = &self.dests;
        let used = (0..dests.len()).flat_map(|i| dests[i].paths().iter().map(|p| p.ctx));
        self.ctxs.compact(used);
    }

    /// [`LocRib::upsert`], also saying which destination and whether the
    /// path replaced one from the same (source, path id).
    pub fn upsert_id(&mut self, prefix: IpNet, new: NewPath) -> Outcome {
        let ctx = self.ctxs.id(&new.source, new.igp_cost);
        self.upsert_ctx(prefix, new.attrs, ctx)
    }

    /// The context id of paths from `source` whose next hop costs
    /// `igp_cost`, for [`LocRib::upsert_ctx`] (valid until the next
    /// [`LocRib::maybe_compact_contexts`]).
    pub fn context_id(&mut self, source: &Source, igp_cost: IgpCost) -> CtxId {
        self.ctxs.id(source, igp_cost)
    }

    /// [`LocRib::upsert_id`] of a path given by its set and context id
    /// (from [`LocRib::context_id`]): the routes of one UPDATE look their
    /// context up once, not per prefix.
    pub fn upsert_ctx(&mut self, prefix: IpNet, attrs: crate::SharedAttrs, ctx: CtxId) -> Outcome {
        let seq = self.next_seq();
        let mut path = Path { attrs, seq, ctx };
        let cfg = self.cfg;
        let (free_ids, dests) = (&mut self.free_ids, &mut self.dests);
        let mut created = false;
        let mut new_id = || {
            if let Some(id) = free_ids.pop() {
                created = true;
                return Some(id);
            }
            if dests.len() >= MAX_DESTS {
                return None;
            }
            created = true;
            Some(dests.push_default() as u32)
        };
        let id = match prefix {
            IpNet::V4(p) => self.v4.get_or_insert_with(&p, new_id),
            IpNet::V6(p) => match self.v6.entry(p) {
                hashbrown::hash_map::Entry::Occupied(e) => Some(*e.get()),
                hashbrown::hash_map::Entry::Vacant(e) => new_id().map(|id| *e.insert(id)),
            },
        };
        let Some(id) = id else {
            // Full: the prefix is not taken.
            return Outcome {
                changed: Changed::No,
                id: None,
                had: false,
            };
        };
        let wide = self.room.wide(self.ctxs.sources());
        let d = &mut self.dests[id as usize];
        let r0 = d.room();
        if !created && d.is_empty() {
            // Emptied and not pruned yet: in use again.
            self.empty -= 1;
        }
        if d.is_empty() {
            // Its first path (most of a table coming in): nothing to
            // compare it with; the selection changes if it is usable.
            let usable = path.eligible();
            d.insert(0, path, wide);
            self.room.change(r0, d.room());
            return Outcome {
                changed: if usable { Changed::Yes } else { Changed::No },
                id: Some(id),
                had: false,
            };
        }
        let cx = &self.ctxs;
        // The paths stay ordered best first (see `best::select`): the new
        // one is put in its place, not the whole list sorted again.
        let path_id = path.path_id();
        // The source first, by number: the path id is in the set (a cache
        // miss per path), the source's key in the contexts.
        let old = d
            .paths()
            .iter()
            .position(|x| cx.same_source(x.ctx, ctx) && x.path_id() == path_id);
        let Some(j) = old else {
            // A path added (most of what a table from another peer is): the
            // paths there stay, the ones from `at` on one place further; the
            // selection is the same if the same paths are selected.
            let before = d.selected();
            let at = crate::best::insert_position(d.paths(), &path, cx, &cfg);
            d.insert(at, path, wide);
            self.room.change(r0, d.room());
            d.select(cx, &cfg);
            let same = d.selected() == before.inserted(at);
            return Outcome {
                changed: if same { Changed::No } else { Changed::Yes },
                id: Some(id),
                had: false,
            };
        };
        let before = selection(d, cx);
        if let Some(x) = d.take(j) {
            // An implicit withdraw keeps its age only if nothing changed.
            // Same content: keep the shared values (and their identity).
            if x.attrs == path.attrs {
                path.attrs = x.attrs;
                path.seq = x.seq;
            }
            // (The same session again, by value: its context, so that the
            // selection is the same by identity.)
            if x.ctx != ctx && *cx.get(x.ctx) == *cx.get(ctx) {
                path.ctx = x.ctx;
            }
        }
        let at = crate::best::insert_position(d.paths(), &path, cx, &cfg);
        d.insert(at, path, wide);
        self.room.change(r0, d.room());
        d.select(cx, &cfg);
        Outcome {
            changed: Self::changed(d, cx, before),
            id: Some(id),
            had: true,
        }
    }

    /// Remove the path from (source key, path id).
    pub fn remove(&mut self, prefix: &IpNet, source: &str, path_id: u32) -> Changed {
        self.remove_id(prefix, source, path_id).changed
    }

    /// [`LocRib::remove`], also saying which destination (if there is one)
    /// and whether there was such a path.
    pub fn remove_id(&mut self, prefix: &IpNet, source: &str, path_id: u32) -> Outcome {
        let cfg = self.cfg;
        let Some(id) = self.id_any(prefix) else {
            return Outcome {
                changed: Changed::No,
                id: None,
                had: false,
            };
        };
        let d = &mut self.dests[id as usize];
        let cx = &self.ctxs;
        // (No context has that key: no path comes from it.)
        let no = cx.key_no(source);
        let (changed, had) =
            Self::remove_in(cx, &cfg, d, &mut self.empty, &mut self.room, true, |p| {
                Some(cx.source_no(p.ctx)) == no && p.path_id() == path_id
            });
        Outcome {
            changed,
            id: Some(id),
            had,
        }
    }

    /// Remove the paths of `d` that `gone` picks (the first only if `one`:
    /// a (source, path id) names one path); (what it did to the selection,
    /// whether any path went).
    fn remove_in(
        cx: &Contexts,
        cfg: &BestCfg,
        d: &mut Dest,
        empty: &mut usize,
        room: &mut Room,
        one: bool,
        mut gone: impl FnMut(&Path) -> bool,
    ) -> (Changed, bool) {
        let Some(first) = d.paths().iter().position(&mut gone) else {
            return (Changed::No, false);
        };
        let r0 = d.room();
        let c = if one {
            // One path went: the selection is the same if it was not
            // selected and the same others are.
            let before = d.selected();
            d.remove_where(first, one, gone);
            d.select(cx, cfg);
            if !before.has(first) && d.selected() == before.removed(first) {
                Changed::No
            } else {
                Changed::Yes
            }
        } else {
            let before = selection(d, cx);
            d.remove_where(first, one, gone);
            // (Still in order: only the multipath set can change.)
            d.select(cx, cfg);
            Self::changed(d, cx, before)
        };
        room.change(r0, d.room());
        if d.is_empty() {
            // Kept until `prune`, so its id still names it; reported as a
            // change even if the path was not selected, so that it is pruned.
            *empty += 1;
            return (Changed::Yes, true);
        }
        (c, true)
    }

    /// Remove every path from `source` (a session went down, a peer was
    /// removed): one walk over the table, returning the destinations whose
    /// selection changed as (prefix, id).
    pub fn remove_source(&mut self, source: &str) -> Vec<(IpNet, u32)> {
        let cfg = self.cfg;
        let mut changed = Vec::new();
        let named = self
            .v4
            .iter()
            .map(|(p, id)| (IpNet::V4(p), id))
            .chain(self.v6.iter().map(|(p, id)| (IpNet::V6(*p), *id)));
        let Some(no) = self.ctxs.key_no(source) else {
            return changed;
        };
        for (prefix, id) in named {
            let d = &mut self.dests[id as usize];
            let cx = &self.ctxs;
            let (c, _) =
                Self::remove_in(cx, &cfg, d, &mut self.empty, &mut self.room, false, |p| {
                    cx.source_no(p.ctx) == no
                });
            if c == Changed::Yes {
                changed.push((prefix, id));
            }
        }
        changed
    }

    /// The destination with id `id` (also one emptied and not pruned yet;
    /// the id must be live: returned by this Loc-RIB and not pruned since).
    pub fn by_id(&self, id: u32) -> &Dest {
        &self.dests[id as usize]
    }

    /// Re-run selection for one prefix after the IGP costs of its paths'
    /// next hops changed: `cost` gives the cost of a (learned) path's next
    /// hop now (`None`: unresolvable).
    pub fn refresh(&mut self, prefix: &IpNet, mut cost: impl FnMut(&Path) -> IgpCost) -> Changed {
        let cfg = self.cfg;
        let Some(id) = self.id_any(prefix) else {
            return Changed::No;
        };
        let (d, cx) = (&mut self.dests[id as usize], &mut self.ctxs);
        let before = selection(d, cx);
        for p in d.paths_mut() {
            if p.is_local() {
                continue;
            }
            let c = cost(p);
            let now = cx.get(p.ctx);
            if now.igp_cost != c {
                let source = now.source.clone();
                p.ctx = cx.id(&source, c);
            }
        }
        Self::reselect(cx, &cfg, d, before)
    }

    /// Every destination with a path (in no particular order).
    pub fn iter(&self) -> impl Iterator<Item = (IpNet, &Dest)> {
        self.iter_all().filter(|(_, d)| !d.is_empty())
    }

    /// Every destination, also those emptied and not pruned yet (in no
    /// particular order).
    pub fn iter_all(&self) -> impl Iterator<Item = (IpNet, &Dest)> {
        self.iter_ids().map(|(p, _, d)| (p, d))
    }

    /// [`LocRib::iter_all`] with each destination's id: a small number
    /// naming the prefix while it is in the Loc-RIB (its slot in the slab),
    /// the index of what each peer was sent for it (see [`crate::AdjRibOut`]).
    pub fn iter_ids(&self) -> impl Iterator<Item = (IpNet, u32, &Dest)> {
        let d = &self.dests;
        self.v4
            .iter()
            .map(|(p, id)| (IpNet::V4(p), id, &d[id as usize]))
            .chain(
                self.v6
                    .iter()
                    .map(|(p, id)| (IpNet::V6(*p), *id, &d[*id as usize])),
            )
    }

    /// Every prefix with a path, sorted.
    pub fn prefixes(&self) -> Vec<IpNet> {
        let mut v: Vec<IpNet> = self.iter().map(|(p, _)| p).collect();
        v.sort_unstable();
        v
    }

    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len() - self.empty
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests;
