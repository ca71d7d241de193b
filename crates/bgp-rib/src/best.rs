//! Best-path selection (RFC 4271 §9.1.2.2 and the usual extensions), one
//! function per step so that each tie-break can be tested on its own.
//!
//! Order: next hop reachable → LOCAL_PREF → locally originated →
//! AS_PATH length → ORIGIN → MED (same neighbour AS, or always-compare) →
//! eBGP over iBGP → IGP cost to the next hop → oldest eBGP path →
//! router id (ORIGINATOR_ID when reflected) → CLUSTER_LIST length → peer address.

use std::cmp::Ordering;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use crate::SharedAttrs;
use bgp_wire::update::NextHop;
use bgp_wire::{Origin, PathAttrs};

/// What the RIB knows of the peer a path came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerInfo {
    pub key: Arc<str>,
    pub addr: IpAddr,
    pub asn: u32,
    pub router_id: Ipv4Addr,
    pub ibgp: bool,
    /// A route reflector client of ours (RFC 4456).
    pub rr_client: bool,
    /// The interface of a session over link-local addresses (for gateways).
    pub ifindex: Option<u32>,
    /// A pod on this node (a network function): its routes go upstream, not to other pods.
    pub pod: bool,
    /// Its routes may be passed on to other eBGP peers.
    pub transit: bool,
}

/// Where a path came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Originated by this speaker (pod CIDRs, services, configured prefixes).
    Local,
    Peer(Arc<PeerInfo>),
}

impl Source {
    pub fn key(&self) -> &str {
        match self {
            Source::Local => "local",
            Source::Peer(p) => &p.key,
        }
    }
    /// The source by identity (0 for local paths): equal for paths from the
    /// same session, whatever its key.
    pub fn identity(&self) -> usize {
        match self {
            Source::Local => 0,
            Source::Peer(p) => Arc::as_ptr(p) as usize,
        }
    }
    pub fn peer(&self) -> Option<&PeerInfo> {
        match self {
            Source::Local => None,
            Source::Peer(p) => Some(p),
        }
    }
}

/// One path to a prefix, as the Loc-RIB holds it: 16 bytes. What routes
/// share lives in the interned set: their next hop ([`Path::next_hop`]) and
/// ADD-PATH path id ([`Path::path_id`]); where the path came from and what
/// its next hop costs, in the Loc-RIB's [`Contexts`] (one entry per session
/// and IGP cost, named by [`Path::ctx`]: read with
/// [`crate::locrib::LocRib::context`]); when it arrived is found from its
/// arrival number ([`crate::locrib::LocRib::since`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    /// Interned; with the path's next hop as its `route_next_hop` (see
    /// [`Path::next_hop`]) and its path id as its `route_path_id`.
    pub attrs: SharedAttrs,
    /// Arrival order: lower is older (the Loc-RIB numbers its paths again,
    /// in the same order, before this wraps).
    pub seq: u32,
    /// Its source and IGP cost (and whether it is local or unresolvable,
    /// which the id itself tells).
    pub ctx: CtxId,
}

/// A path as given to the Loc-RIB ([`crate::locrib::LocRib::upsert`]),
/// which keeps its source and IGP cost in its [`Contexts`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPath {
    pub source: Source,
    /// As [`Path::attrs`].
    pub attrs: SharedAttrs,
    /// IGP cost to the next hop; unresolved: the path is not eligible.
    pub igp_cost: IgpCost,
}

/// What a path's [`Contexts`] entry holds: where it came from and what its
/// next hop costs. A table of a million paths from ten sessions has a
/// handful (one per session and IGP cost).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathCtx {
    pub source: Source,
    pub igp_cost: IgpCost,
}

impl PathCtx {
    pub fn is_ebgp(&self) -> bool {
        self.source.peer().is_some_and(|p| !p.ibgp)
    }
}

/// Names a [`PathCtx`] in a [`Contexts`]: its index, with the top bit set
/// when the IGP cost is unresolved, so that whether a path is eligible
/// needs no lookup; 0 is every locally originated path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CtxId(u32);

impl CtxId {
    /// Locally originated paths (whatever their cost: they are eligible).
    pub const LOCAL: CtxId = CtxId(0);
    const UNRESOLVED: u32 = 1 << 31;

    fn index(self) -> usize {
        (self.0 & !Self::UNRESOLVED) as usize
    }
    pub fn is_local(self) -> bool {
        self == Self::LOCAL
    }
    /// The next hop's IGP cost is known (or the path is local).
    pub fn resolved(self) -> bool {
        self.0 & Self::UNRESOLVED == 0
    }
}

static LOCAL_CTX: PathCtx = PathCtx {
    source: Source::Local,
    igp_cost: IgpCost(0),
};

/// The (source, IGP cost) pairs of a Loc-RIB's paths, each held once and
/// named by a [`CtxId`] (a path keeps four bytes instead of a source
/// pointer and a cost). Entries no path names go in
/// [`Contexts::compact`], which the Loc-RIB runs once they have doubled.
#[derive(Debug)]
pub struct Contexts {
    /// By index; 0 (local) is never used here, a freed slot is `None`.
    entries: Vec<Option<PathCtx>>,
    /// (source identity, cost) -> index.
    index: hashbrown::HashMap<(usize, IgpCost), u32>,
    /// Each entry's source number ([`Contexts::same_source`]), by index.
    nos: Vec<u32>,
    /// Source key -> its number (0: local, which no peer key gets).
    numbers: hashbrown::HashMap<Arc<str>, u32>,
    /// The number the next new key gets.
    next_no: u32,
    free: Vec<u32>,
    /// The last pair looked up: the routes of one UPDATE share one.
    last: Option<((usize, IgpCost), CtxId)>,
    /// Entries after the last compaction.
    kept: usize,
}

impl Default for Contexts {
    fn default() -> Self {
        Contexts {
            entries: vec![None],
            index: Default::default(),
            nos: vec![0],
            numbers: Default::default(),
            next_no: 1,
            free: Vec::new(),
            last: None,
            kept: 0,
        }
    }
}

impl Contexts {
    /// The entry `id` names (local, for an id not given by this table).
    pub fn get(&self, id: CtxId) -> &PathCtx {
        if id.is_local() {
            return &LOCAL_CTX;
        }
        let e = self.entries.get(id.index()).and_then(Option::as_ref);
        debug_assert!(e.is_some(), "context {id:?} not in the table");
        e.unwrap_or(&LOCAL_CTX)
    }

    /// A small number naming the source of `id`'s paths by key, the same
    /// for every session and IGP cost of that key (0: local): paths are
    /// told apart by source with an integer compare, not a string one.
    pub fn source_no(&self, id: CtxId) -> u32 {
        self.nos.get(id.index()).copied().unwrap_or(0)
    }

    /// Whether paths of `a` and `b` come from the same source (key).
    pub fn same_source(&self, a: CtxId, b: CtxId) -> bool {
        a == b || self.source_no(a) == self.source_no(b)
    }

    /// The number of source `key` ([`Contexts::source_no`]), if a context
    /// has it ("local", locally originated paths, unless a peer has that
    /// key).
    pub fn key_no(&self, key: &str) -> Option<u32> {
        match self.numbers.get(key) {
            Some(&no) => Some(no),
            None => (key == Source::Local.key()).then_some(0),
        }
    }

    /// The id of (`source`, `igp_cost`), added if new.
    pub fn id(&mut self, source: &Source, igp_cost: IgpCost) -> CtxId {
        if matches!(source, Source::Local) {
            return CtxId::LOCAL;
        }
        let key = (source.identity(), igp_cost);
        if let Some((k, id)) = self.last {
            if k == key {
                return id;
            }
        }
        let i = match self.index.get(&key) {
            Some(&i) => i,
            None => {
                let no = match source {
                    Source::Local => 0,
                    Source::Peer(p) => match self.numbers.get(&*p.key) {
                        Some(&no) => no,
                        None => {
                            let no = self.next_no;
                            // (Past four billion keys: wraps, skipping 0;
                            // numbers of keys still in use are not given
                            // again before that.)
                            self.next_no = self.next_no.checked_add(1).unwrap_or(1);
                            self.numbers.insert(p.key.clone(), no);
                            no
                        }
                    },
                };
                let e = Some(PathCtx {
                    source: source.clone(),
                    igp_cost,
                });
                let i = match self.free.pop() {
                    Some(i) => {
                        self.entries[i as usize] = e;
                        self.nos[i as usize] = no;
                        i
                    }
                    None => {
                        self.entries.push(e);
                        self.nos.push(no);
                        (self.entries.len() - 1) as u32
                    }
                };
                debug_assert!(i < CtxId::UNRESOLVED);
                self.index.insert(key, i);
                i
            }
        };
        let id = CtxId(if igp_cost.is_some() {
            i
        } else {
            i | CtxId::UNRESOLVED
        });
        self.last = Some((key, id));
        id
    }

    /// How many peers paths come from, at most: every key with a context
    /// (until the next compaction; locally originated paths not counted).
    pub fn sources(&self) -> usize {
        self.numbers.len()
    }

    /// Entries held (local not counted).
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Whether entries have doubled since the last [`Contexts::compact`].
    pub fn due(&self) -> bool {
        self.len() > 2 * self.kept + 64
    }

    /// Drop the entries no id in `used` names (their slots are reused).
    pub fn compact(&mut self, used: impl Iterator<Item = CtxId>) {
        let mut keep = vec![false; self.entries.len()];
        for id in used {
            if let Some(k) = keep.get_mut(id.index()) {
                *k = true;
            }
        }
        for (i, k) in keep.into_iter().enumerate().skip(1) {
            if k {
                continue;
            }
            if let Some(e) = self.entries[i].take() {
                self.index.remove(&(e.source.identity(), e.igp_cost));
                self.free.push(i as u32);
            }
        }
        // Keys no entry has any more go (their numbers are not reused).
        let live: hashbrown::HashSet<&str> = self
            .entries
            .iter()
            .flatten()
            .map(|e| e.source.key())
            .collect();
        self.numbers.retain(|key, _| live.contains(&**key));
        self.last = None;
        self.kept = self.len();
    }
}

/// An IGP cost to a next hop, or none (unresolvable): an `Option<u32>` in
/// four bytes (a cost of `u32::MAX` is taken as `u32::MAX - 1`), so that a
/// path is 32 bytes, not 40.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IgpCost(u32);

impl IgpCost {
    pub const UNRESOLVED: IgpCost = IgpCost(u32::MAX);

    pub fn get(self) -> Option<u32> {
        (self.0 != u32::MAX).then_some(self.0)
    }

    pub fn is_some(self) -> bool {
        self.0 != u32::MAX
    }
}

impl From<Option<u32>> for IgpCost {
    fn from(c: Option<u32>) -> Self {
        IgpCost(c.map_or(u32::MAX, |c| c.min(u32::MAX - 1)))
    }
}

/// What a path without a next hop has (locally originated ones).
pub const NO_NEXT_HOP: NextHop = NextHop::V4(Ipv4Addr::UNSPECIFIED);

/// The next hop a RIB keeps in an interned set (`route_next_hop`; see
/// [`Path::next_hop`]): unspecified when unset.
pub fn next_hop_of(attrs: &PathAttrs) -> NextHop {
    attrs.route_next_hop().unwrap_or(NO_NEXT_HOP)
}

impl Path {
    /// The next hop, kept in the interned attribute set (paths from one
    /// peer mostly share it; 34 bytes less per path): unspecified when unset.
    pub fn next_hop(&self) -> NextHop {
        next_hop_of(&self.attrs)
    }
    /// The ADD-PATH path identifier the path was received with (0: none),
    /// kept in the interned set (see `PathAttrs::route_path_id`).
    pub fn path_id(&self) -> u32 {
        self.attrs.route_path_id()
    }
    pub fn is_local(&self) -> bool {
        self.ctx.is_local()
    }
    pub fn eligible(&self) -> bool {
        self.ctx.resolved()
    }
    pub fn local_pref(&self) -> u32 {
        self.attrs.local_pref.unwrap_or(100)
    }
    pub fn as_path_len(&self) -> usize {
        self.attrs.as_path_len()
    }
    pub fn origin(&self) -> Origin {
        self.attrs.origin.unwrap_or(Origin::Incomplete)
    }
    pub fn med(&self) -> u32 {
        self.attrs.med.unwrap_or(0)
    }
    /// The AS a path was learned from, for MED comparison.
    pub fn neighbour_as(&self) -> Option<u32> {
        self.attrs.as_path.as_ref().and_then(|p| p.first())
    }
    /// Router id for the tie-break: ORIGINATOR_ID when reflected (RFC 4456
    /// §9); `ctx` is the path's context.
    pub fn router_id(&self, ctx: &PathCtx) -> u32 {
        match (&self.attrs.originator_id(), &ctx.source) {
            (Some(o), _) => u32::from(*o),
            (None, Source::Peer(p)) => u32::from(p.router_id),
            (None, Source::Local) => 0,
        }
    }
}

/// Selection settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BestCfg {
    /// Compare MED across different neighbour ASes.
    pub always_compare_med: bool,
    /// Equal-cost paths installed and used, eBGP and iBGP (1 = no ECMP).
    pub max_paths_ebgp: usize,
    pub max_paths_ibgp: usize,
}

impl Default for BestCfg {
    fn default() -> Self {
        BestCfg {
            always_compare_med: false,
            max_paths_ebgp: 8,
            max_paths_ibgp: 8,
        }
    }
}

/// The step that decided between two paths, for `show rib` and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Reachability,
    LocalPref,
    LocallyOriginated,
    AsPathLength,
    Origin,
    Med,
    EbgpOverIbgp,
    IgpCost,
    OldestEbgp,
    RouterId,
    ClusterListLength,
    PeerAddress,
    Equal,
}

/// Compare two paths: `Less` means `a` is better. Returns the deciding step.
/// Each step is computed only when the ones before it tie (most pairs are
/// decided by LOCAL_PREF or the AS path length, before the steps that read
/// the sessions).
///
/// Not a total order: MED is compared only between paths from the same
/// neighbour AS (RFC 4271 §9.1.2.2 c), so three paths can beat each other
/// in a circle. [`select`] and [`insert_position`] never assume it is one.
pub fn compare(a: &Path, b: &Path, cx: &Contexts, cfg: &BestCfg) -> (Ordering, Step) {
    use Ordering::*;
    macro_rules! step {
        ($step:expr, $o:expr) => {
            match $o {
                Equal => {}
                o => return (o, $step),
            }
        };
    }
    step!(Step::Reachability, b.eligible().cmp(&a.eligible()));
    step!(Step::LocalPref, b.local_pref().cmp(&a.local_pref()));
    step!(Step::LocallyOriginated, b.is_local().cmp(&a.is_local()));
    step!(Step::AsPathLength, a.as_path_len().cmp(&b.as_path_len()));
    step!(Step::Origin, a.origin().cmp(&b.origin()));
    if cfg.always_compare_med || a.neighbour_as() == b.neighbour_as() {
        step!(Step::Med, a.med().cmp(&b.med()));
    }
    // (The steps above read the sets only; these read the contexts.)
    let (ac, bc) = (cx.get(a.ctx), cx.get(b.ctx));
    let (ae, be) = (ac.is_ebgp(), bc.is_ebgp());
    step!(Step::EbgpOverIbgp, be.cmp(&ae));
    // (Unresolved sorts last: its sentinel is the largest.)
    step!(Step::IgpCost, ac.igp_cost.0.cmp(&bc.igp_cost.0));
    if ae && be {
        step!(Step::OldestEbgp, a.seq.cmp(&b.seq));
    }
    step!(Step::RouterId, a.router_id(ac).cmp(&b.router_id(bc)));
    step!(
        Step::ClusterListLength,
        a.attrs
            .cluster_list()
            .len()
            .cmp(&b.attrs.cluster_list().len())
    );
    step!(
        Step::PeerAddress,
        ac.source
            .peer()
            .map(|p| p.addr)
            .cmp(&bc.source.peer().map(|p| p.addr))
    );
    (Equal, Step::Equal)
}

/// Can `b` share forwarding with the best path `a` (ECMP)? Equal through the
/// IGP cost step, same session type (AS paths of equal length; relaxed, as
/// FRR's `as-path multipath-relax`).
pub fn multipath_equal(a: &Path, b: &Path, cx: &Contexts) -> bool {
    b.eligible()
        && !a.is_local()
        && !b.is_local()
        && a.local_pref() == b.local_pref()
        && a.as_path_len() == b.as_path_len()
        && a.origin() == b.origin()
        && a.med() == b.med()
        && (a.ctx == b.ctx || {
            let (ac, bc) = (cx.get(a.ctx), cx.get(b.ctx));
            ac.is_ebgp() == bc.is_ebgp() && ac.igp_cost == bc.igp_cost
        })
}

/// The most paths in one multipath set (FRR's default `MULTIPATH_NUM`).
pub const MAX_MULTIPATH: usize = 64;

/// Which of a destination's paths (ordered best first by [`select`]) are
/// selected: the best path (index 0) and the multipath set, as a bit per
/// index. Eight bytes, no allocation; the multipath set is the best path
/// and equal ones, which [`select`]'s order puts first, so 64 bits are
/// [`MAX_MULTIPATH`] paths.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Selected(u64);

impl Selected {
    /// Nothing selected (no path is eligible).
    pub const fn new() -> Self {
        Selected(0)
    }
    /// The selection of a destination's only path: it, if eligible
    /// (what [`multipath_set`] gives for one path).
    pub const fn single(eligible: bool) -> Self {
        Selected(eligible as u64)
    }
    fn with(self, i: usize) -> Self {
        Selected(self.0 | 1 << i)
    }
    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }
    pub fn len(&self) -> usize {
        self.0.count_ones() as usize
    }
    /// The best path's index.
    pub fn first(&self) -> Option<usize> {
        (self.0 != 0).then(|| self.0.trailing_zeros() as usize)
    }
    /// The `n`th selected index (0: the best path).
    pub fn get(&self, n: usize) -> Option<usize> {
        self.iter().nth(n)
    }
    /// The same paths after one was put at index `at` (those from `at` on
    /// move up one).
    pub fn inserted(&self, at: usize) -> Self {
        let low = if at >= 64 { u64::MAX } else { (1u64 << at) - 1 };
        Selected((self.0 & low) | ((self.0 & !low) << 1))
    }
    /// The same paths after the one at index `at` went (those after it
    /// move down one); whether it was selected is [`Selected::has`].
    pub fn removed(&self, at: usize) -> Self {
        let low = if at >= 64 { u64::MAX } else { (1u64 << at) - 1 };
        let high = if at >= 63 {
            0
        } else {
            self.0 >> (at + 1) << at
        };
        Selected((self.0 & low) | high)
    }
    /// Whether index `i` is selected.
    pub fn has(&self, i: usize) -> bool {
        i < 64 && self.0 & (1 << i) != 0
    }
    /// The selected indices, best first.
    pub fn iter(&self) -> impl Iterator<Item = usize> + use<> {
        let mut bits = self.0;
        std::iter::from_fn(move || {
            if bits == 0 {
                return None;
            }
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            Some(i)
        })
    }
}

/// Order `paths` best first and return the multipath set: the best path
/// first, then equal paths with other next hops (empty when no path is
/// eligible), at most `max_paths` and [`MAX_MULTIPATH`].
///
/// A stable insertion sort of our own: [`compare`] is not a total order, for
/// which the standard library's sorts may panic (Rust 1.81 on); this one
/// makes at most n² / 2 comparisons whatever the comparison says, and n - 1
/// when the paths are in order already.
pub fn select(paths: &mut [Path], cx: &Contexts, cfg: &BestCfg) -> Selected {
    for i in 1..paths.len() {
        let mut j = i;
        while j > 0 && compare(&paths[j], &paths[j - 1], cx, cfg).0 == Ordering::Less {
            paths.swap(j, j - 1);
            j -= 1;
        }
    }
    multipath_set(paths, cx, cfg)
}

/// Where `path` goes in `paths` (ordered best first by [`select`]): before
/// the first path it is better than, after those it ties with. A new best
/// path takes one comparison (with the best path).
pub fn insert_position(paths: &[Path], path: &Path, cx: &Contexts, cfg: &BestCfg) -> usize {
    paths
        .iter()
        .position(|p| compare(path, p, cx, cfg).0 == Ordering::Less)
        .unwrap_or(paths.len())
}

/// The multipath set of `paths` ordered best first (see [`select`]).
pub fn multipath_set(paths: &[Path], cx: &Contexts, cfg: &BestCfg) -> Selected {
    let Some(best) = paths.first() else {
        return Selected::new();
    };
    if !best.eligible() {
        return Selected::new();
    }
    let max = if cx.get(best.ctx).is_ebgp() {
        cfg.max_paths_ebgp
    } else {
        cfg.max_paths_ibgp
    }
    .clamp(1, MAX_MULTIPATH);
    let mut set = Selected::new().with(0);
    if max == 1 {
        return set;
    }
    let mut hops: smallvec::SmallVec<[std::net::IpAddr; 4]> =
        smallvec::smallvec![best.next_hop().addr()];
    for (i, p) in paths.iter().enumerate().skip(1).take(MAX_MULTIPATH - 1) {
        if set.len() >= max || !multipath_equal(best, p, cx) {
            break;
        }
        if !hops.contains(&p.next_hop().addr()) {
            hops.push(p.next_hop().addr());
            set = set.with(i);
        }
    }
    set
}
