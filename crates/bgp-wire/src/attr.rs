//! Path attributes (RFC 4271 §4.3, §5) and their RFC 7606 error handling.
//!
//! ```text
//! 0                   1
//! 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5
//! +---------------+---------------+
//! |  Attr. Flags  |Attr. Type Code|   then 1 or 2 octets of length (Extended Length bit)
//! +---------------+---------------+
//! ```
//!
//! Per-attribute verdicts when an attribute is malformed (RFC 7606 §7):
//! ORIGIN, AS_PATH, NEXT_HOP, MED, LOCAL_PREF, COMMUNITIES, ORIGINATOR_ID,
//! CLUSTER_LIST, EXTENDED_COMMUNITIES, LARGE_COMMUNITY → treat-as-withdraw;
//! ATOMIC_AGGREGATE, AGGREGATOR, AS4_PATH, AS4_AGGREGATOR → attribute discard;
//! MP_REACH_NLRI / MP_UNREACH_NLRI → session reset (handled in [`crate::update`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use thin_vec::ThinVec;

use crate::notification::{self, Notification};
use crate::update::Repair;
use crate::{Ctx, Reader, AS_TRANS};

pub const FLAG_OPTIONAL: u8 = 0x80;
pub const FLAG_TRANSITIVE: u8 = 0x40;
pub const FLAG_PARTIAL: u8 = 0x20;
pub const FLAG_EXTENDED: u8 = 0x10;

pub const ORIGIN: u8 = 1;
pub const AS_PATH: u8 = 2;
pub const NEXT_HOP: u8 = 3;
pub const MED: u8 = 4;
pub const LOCAL_PREF: u8 = 5;
pub const ATOMIC_AGGREGATE: u8 = 6;
pub const AGGREGATOR: u8 = 7;
pub const COMMUNITIES: u8 = 8;
pub const ORIGINATOR_ID: u8 = 9;
pub const CLUSTER_LIST: u8 = 10;
pub const MP_REACH_NLRI: u8 = 14;
pub const MP_UNREACH_NLRI: u8 = 15;
pub const EXTENDED_COMMUNITIES: u8 = 16;
pub const AS4_PATH: u8 = 17;
pub const AS4_AGGREGATOR: u8 = 18;
pub const LARGE_COMMUNITY: u8 = 32;

/// ORIGIN values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Origin {
    Igp = 0,
    Egp = 1,
    Incomplete = 2,
}

impl Origin {
    pub fn code(self) -> &'static str {
        match self {
            Origin::Igp => "i",
            Origin::Egp => "e",
            Origin::Incomplete => "?",
        }
    }
}

/// AS_PATH segment kinds (RFC 4271, RFC 5065).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum SegmentKind {
    Set = 1,
    Sequence = 2,
    ConfedSequence = 3,
    ConfedSet = 4,
}

impl SegmentKind {
    fn from_code(c: u8) -> Option<SegmentKind> {
        Some(match c {
            1 => SegmentKind::Set,
            2 => SegmentKind::Sequence,
            3 => SegmentKind::ConfedSequence,
            4 => SegmentKind::ConfedSet,
            _ => return None,
        })
    }
}

/// An AS_PATH, always held with 4-octet AS numbers. Its segments live in one
/// allocation (a received table has hundreds of thousands of paths): each is
/// a header word, `kind << 24 | count`, followed by its AS numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct AsPath {
    words: ThinVec<u32>,
}

/// The segments of an [`AsPath`]: (kind, AS numbers).
pub struct Segments<'a> {
    words: &'a [u32],
}

impl<'a> Iterator for Segments<'a> {
    type Item = (SegmentKind, &'a [u32]);

    fn next(&mut self) -> Option<Self::Item> {
        let (&h, rest) = self.words.split_first()?;
        let n = ((h & 0xff_ffff) as usize).min(rest.len());
        let kind = SegmentKind::from_code((h >> 24) as u8).unwrap_or(SegmentKind::Sequence);
        let (asns, rest) = rest.split_at(n);
        self.words = rest;
        Some((kind, asns))
    }
}

fn header(kind: SegmentKind, n: usize) -> u32 {
    ((kind as u32) << 24) | (n as u32 & 0xff_ffff)
}

impl AsPath {
    pub fn from_sequence(asns: Vec<u32>) -> Self {
        Self::from_segments([(SegmentKind::Sequence, asns)])
    }

    /// A path of these segments (empty ones are left out).
    pub fn from_segments<A: AsRef<[u32]>>(
        segs: impl IntoIterator<Item = (SegmentKind, A)>,
    ) -> Self {
        let mut words = ThinVec::new();
        for (kind, asns) in segs {
            let asns = asns.as_ref();
            if !asns.is_empty() {
                words.push(header(kind, asns.len()));
                words.extend_from_slice(asns);
            }
        }
        AsPath { words }
    }

    pub fn segments(&self) -> Segments<'_> {
        Segments { words: &self.words }
    }

    /// Path length for best-path selection: a set counts one, confederation segments none.
    pub fn len(&self) -> usize {
        self.segments()
            .map(|(kind, asns)| match kind {
                SegmentKind::Sequence => asns.len(),
                SegmentKind::Set => 1,
                _ => 0,
            })
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The neighbour AS: first AS of the first sequence.
    pub fn first(&self) -> Option<u32> {
        self.segments()
            .next()
            .filter(|(kind, _)| *kind == SegmentKind::Sequence)
            .and_then(|(_, asns)| asns.first().copied())
    }

    pub fn contains(&self, asn: u32) -> bool {
        self.segments().any(|(_, asns)| asns.contains(&asn))
    }

    /// Prepend `asn` (as done when sending to an eBGP peer).
    pub fn prepend(&mut self, asn: u32, times: usize) {
        if times == 0 {
            return;
        }
        match self.segments().next() {
            Some((SegmentKind::Sequence, asns)) if asns.len() + times <= 255 => {
                let n = asns.len() + times;
                self.words[0] = header(SegmentKind::Sequence, n);
                for _ in 0..times {
                    self.words.insert(1, asn);
                }
            }
            _ => {
                let mut words = ThinVec::with_capacity(self.words.len() + 1 + times);
                words.push(header(SegmentKind::Sequence, times));
                words.extend(std::iter::repeat_n(asn, times));
                words.extend_from_slice(&self.words);
                self.words = words;
            }
        }
    }

    fn decode(v: &[u8], four: bool) -> Option<AsPath> {
        let width = if four { 4 } else { 2 };
        // One pass to check the segments and count the words, so that the
        // path is allocated once at its size.
        let (mut at, mut n_words) = (0, 0);
        while at < v.len() {
            SegmentKind::from_code(*v.get(at)?)?;
            let n = *v.get(at + 1)? as usize;
            if n == 0 {
                return None;
            }
            at += 2 + n * width;
            n_words += 1 + n;
        }
        if at != v.len() {
            return None;
        }
        let mut r = Reader::new(v);
        let mut words = ThinVec::with_capacity(n_words);
        while !r.is_empty() {
            let kind = SegmentKind::from_code(r.u8().ok()?)?;
            let n = r.u8().ok()? as usize;
            words.push(header(kind, n));
            for _ in 0..n {
                words.push(if four {
                    r.u32().ok()?
                } else {
                    r.u16().ok()? as u32
                });
            }
        }
        Some(AsPath { words })
    }

    fn encode(&self, four: bool, out: &mut Vec<u8>) {
        for (kind, asns) in self.segments() {
            for chunk in asns.chunks(255) {
                out.push(kind as u8);
                out.push(chunk.len() as u8);
                for a in chunk {
                    if four {
                        out.extend_from_slice(&a.to_be_bytes());
                    } else {
                        out.extend_from_slice(&u16::try_from(*a).unwrap_or(AS_TRANS).to_be_bytes());
                    }
                }
            }
        }
    }

    fn needs_as4(&self) -> bool {
        self.segments()
            .any(|(_, asns)| asns.iter().any(|a| *a > 0xffff))
    }

    /// RFC 6793 §4.2.3: rebuild the real path from AS_PATH and AS4_PATH.
    fn merge_as4(&self, as4: &AsPath) -> AsPath {
        let n = self.len();
        let m = as4.len();
        if n < m {
            return self.clone();
        }
        let mut keep = n - m;
        let mut out: Vec<(SegmentKind, &[u32])> = Vec::new();
        for (kind, asns) in self.segments() {
            if keep == 0 {
                break;
            }
            match kind {
                SegmentKind::Sequence => {
                    let take = keep.min(asns.len());
                    out.push((kind, &asns[..take]));
                    keep -= take;
                }
                SegmentKind::Set => {
                    out.push((kind, asns));
                    keep -= 1;
                }
                _ => out.push((kind, asns)),
            }
        }
        out.extend(
            as4.segments()
                .filter(|(kind, _)| matches!(kind, SegmentKind::Set | SegmentKind::Sequence)),
        );
        AsPath::from_segments(out)
    }
}

/// As `{"segments": [{"kind": "Sequence", "asns": [...]}, ...]}`.
impl serde::Serialize for AsPath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        #[derive(serde::Serialize)]
        struct Segment<'a> {
            kind: SegmentKind,
            asns: &'a [u32],
        }
        let segs: Vec<Segment> = self
            .segments()
            .map(|(kind, asns)| Segment { kind, asns })
            .collect();
        let mut st = s.serialize_struct("AsPath", 1)?;
        st.serialize_field("segments", &segs)?;
        st.end()
    }
}

impl std::fmt::Display for AsPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for (kind, asns) in self.segments() {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            let inner = asns
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(" ");
            match kind {
                SegmentKind::Sequence => f.write_str(&inner)?,
                SegmentKind::Set => write!(f, "{{{inner}}}")?,
                SegmentKind::ConfedSequence => write!(f, "({inner})")?,
                SegmentKind::ConfedSet => write!(f, "[{inner}]")?,
            }
        }
        Ok(())
    }
}

/// RFC 8092 large community.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct LargeCommunity {
    pub global: u32,
    pub local1: u32,
    pub local2: u32,
}

impl std::fmt::Display for LargeCommunity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.global, self.local1, self.local2)
    }
}

/// An attribute kbgp does not interpret, passed on when optional transitive.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct RawAttr {
    pub flags: u8,
    pub code: u8,
    pub value: Vec<u8>,
}

/// The path attributes of a route, except MP_REACH/MP_UNREACH which carry NLRI.
/// `Hash + Eq` so that a RIB can intern identical sets.
#[derive(Debug, Clone, Default, Eq, serde::Serialize)]
pub struct PathAttrs {
    pub origin: Option<Origin>,
    pub as_path: Option<AsPath>,
    pub next_hop: Option<Ipv4Addr>,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    pub communities: ThinVec<u32>,
    /// The attributes most routes do not have, behind one pointer (a table
    /// has hundreds of thousands of sets): `None` when all are absent. Read
    /// with the accessors ([`PathAttrs::cluster_list`] ...), changed with
    /// [`PathAttrs::rare_mut`].
    #[serde(flatten)]
    pub rare: Option<Box<RareAttrs>>,
    /// Not an attribute: the next hop of the routes that share this set in
    /// a RIB (whatever the family; classic or MP_REACH). A RIB interns a set
    /// together with its routes' next hop, so that a path needs no next hop
    /// of its own. Never encoded, and `None` when decoded. Read and set with
    /// [`PathAttrs::route_next_hop`] and [`PathAttrs::set_route_next_hop`]:
    /// an IPv6 next hop's link-local address, which few routes have, is kept
    /// with the rare attributes ([`RareAttrs::route_link_local`]), so that a
    /// set is 64 bytes, not 80.
    #[serde(skip)]
    pub route_hop: Option<IpAddr>,
    /// Not an attribute: the AS path's length ([`AsPath::len`]) plus one,
    /// as [`PathAttrs::normalize`] found it (a RIB normalizes every set it
    /// interns), so that best-path selection reads the length from the set
    /// and not from the AS path's own allocation (one cache miss less per
    /// path compared). 0: not known; 255: 254 or more. Read with
    /// [`PathAttrs::as_path_len`]; ignored by `==` and `Hash`, never
    /// encoded. (It takes the set's one byte of padding: still 64 bytes.)
    #[serde(skip)]
    pub as_path_len_hint: u8,
}

/// The fields that make a set's identity: all but the hint.
type Identity<'a> = (
    &'a Option<Origin>,
    &'a Option<AsPath>,
    &'a Option<Ipv4Addr>,
    &'a Option<u32>,
    &'a Option<u32>,
    &'a ThinVec<u32>,
    &'a Option<Box<RareAttrs>>,
    &'a Option<IpAddr>,
);

impl PathAttrs {
    /// What `==` and `Hash` look at (destructured: a new field must be named here).
    fn identity(&self) -> Identity<'_> {
        let PathAttrs {
            origin,
            as_path,
            next_hop,
            med,
            local_pref,
            communities,
            rare,
            route_hop,
            as_path_len_hint: _,
        } = self;
        (
            origin,
            as_path,
            next_hop,
            med,
            local_pref,
            communities,
            rare,
            route_hop,
        )
    }
}

impl PartialEq for PathAttrs {
    fn eq(&self, o: &Self) -> bool {
        self.identity() == o.identity()
    }
}

impl std::hash::Hash for PathAttrs {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.identity().hash(h);
    }
}

/// The attributes of a [`PathAttrs`] that most routes do not have.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct RareAttrs {
    pub atomic_aggregate: bool,
    pub aggregator: Option<(u32, Ipv4Addr)>,
    pub originator_id: Option<Ipv4Addr>,
    pub cluster_list: ThinVec<Ipv4Addr>,
    pub ext_communities: ThinVec<[u8; 8]>,
    pub large_communities: ThinVec<LargeCommunity>,
    pub unknown: ThinVec<RawAttr>,
    /// Not an attribute: the link-local address of the set's route next hop
    /// (see [`PathAttrs::route_hop`]); never encoded.
    #[serde(skip)]
    pub route_link_local: Option<Ipv6Addr>,
    /// Not an attribute: the ADD-PATH path identifier (RFC 7911) of the
    /// routes that share this set in a RIB (0: none), kept here like the
    /// route next hop so that a path needs no field for it (few peers send
    /// path identifiers); never encoded.
    #[serde(skip)]
    pub route_path_id: u32,
}

static NO_RARE: RareAttrs = RareAttrs {
    atomic_aggregate: false,
    aggregator: None,
    originator_id: None,
    cluster_list: ThinVec::new(),
    ext_communities: ThinVec::new(),
    large_communities: ThinVec::new(),
    unknown: ThinVec::new(),
    route_link_local: None,
    route_path_id: 0,
};

impl PathAttrs {
    /// The rare attributes (all absent when there are none).
    pub fn rare(&self) -> &RareAttrs {
        self.rare.as_deref().unwrap_or(&NO_RARE)
    }

    /// The rare attributes, to change (allocated if there were none).
    /// [`PathAttrs::normalize`] drops them again if they end up all absent.
    pub fn rare_mut(&mut self) -> &mut RareAttrs {
        self.rare.get_or_insert_default()
    }

    /// Replace the rare attributes (none kept if all are absent); the
    /// route next hop's link-local address and the route path id stay.
    pub fn set_rare(&mut self, mut r: RareAttrs) {
        r.route_link_local = self.rare().route_link_local;
        r.route_path_id = self.rare().route_path_id;
        self.rare = (r != NO_RARE).then(|| Box::new(r));
    }

    /// The next hop of the routes that share this set in a RIB (see
    /// [`PathAttrs::route_hop`]).
    pub fn route_next_hop(&self) -> Option<crate::update::NextHop> {
        use crate::update::NextHop;
        Some(match self.route_hop? {
            IpAddr::V4(a) => NextHop::V4(a),
            IpAddr::V6(global) => NextHop::V6 {
                global,
                link_local: self.rare().route_link_local,
            },
        })
    }

    /// Set (or clear) the route next hop (see [`PathAttrs::route_hop`]).
    pub fn set_route_next_hop(&mut self, nh: Option<crate::update::NextHop>) {
        use crate::update::NextHop;
        let (hop, ll) = match nh {
            None => (None, None),
            Some(NextHop::V4(a)) => (Some(IpAddr::V4(a)), None),
            Some(NextHop::V6 { global, link_local }) => (Some(IpAddr::V6(global)), link_local),
        };
        self.route_hop = hop;
        // (No rare attributes allocated to clear an absent one.)
        if ll != self.rare().route_link_local {
            self.rare_mut().route_link_local = ll;
            self.normalize();
        }
    }

    /// The ADD-PATH path identifier of the routes that share this set in a
    /// RIB (see [`RareAttrs::route_path_id`]; 0: none).
    pub fn route_path_id(&self) -> u32 {
        self.rare().route_path_id
    }

    /// Set the route path id (see [`RareAttrs::route_path_id`]).
    pub fn set_route_path_id(&mut self, id: u32) {
        // (No rare attributes allocated to clear an absent one.)
        if id != self.rare().route_path_id {
            self.rare_mut().route_path_id = id;
            self.normalize();
        }
    }

    /// One form for equal sets (so that interning finds them equal): rare
    /// attributes all absent are none; and the AS path's length noted (see
    /// [`PathAttrs::as_path_len_hint`]).
    pub fn normalize(&mut self) {
        if self.rare.as_deref() == Some(&NO_RARE) {
            self.rare = None;
        }
        let n = self.as_path.as_ref().map_or(0, AsPath::len);
        self.as_path_len_hint = n.saturating_add(1).min(255) as u8;
    }

    /// The AS path, to change (an empty one if there was none): its length
    /// is not known any more (see [`PathAttrs::as_path_len_hint`]) until
    /// the set is normalized again.
    pub fn as_path_mut(&mut self) -> &mut AsPath {
        self.as_path_len_hint = 0;
        self.as_path.get_or_insert_with(Default::default)
    }

    /// The AS path's length ([`AsPath::len`], 0 without one): from the
    /// hint when a normalized set has it, else counted.
    pub fn as_path_len(&self) -> usize {
        match self.as_path_len_hint {
            0 | 255 => self.as_path.as_ref().map_or(0, AsPath::len),
            h => h as usize - 1,
        }
    }

    pub fn atomic_aggregate(&self) -> bool {
        self.rare().atomic_aggregate
    }
    pub fn aggregator(&self) -> Option<(u32, Ipv4Addr)> {
        self.rare().aggregator
    }
    pub fn originator_id(&self) -> Option<Ipv4Addr> {
        self.rare().originator_id
    }
    pub fn cluster_list(&self) -> &[Ipv4Addr] {
        &self.rare().cluster_list
    }
    pub fn ext_communities(&self) -> &[[u8; 8]] {
        &self.rare().ext_communities
    }
    pub fn large_communities(&self) -> &[LargeCommunity] {
        &self.rare().large_communities
    }
    pub fn unknown(&self) -> &[RawAttr] {
        &self.rare().unknown
    }
}

/// Format a standard community as `ASN:VALUE`, with the RFC 1997 well-known names.
pub fn community_string(c: u32) -> String {
    match c {
        0xFFFF_FF01 => "no-export".into(),
        0xFFFF_FF02 => "no-advertise".into(),
        0xFFFF_FF03 => "no-export-subconfed".into(),
        _ => format!("{}:{}", c >> 16, c & 0xffff),
    }
}

/// Outcome of parsing the attribute section (apart from MP attributes).
pub(crate) struct Parsed {
    pub attrs: PathAttrs,
    pub mp_reach: Option<Vec<u8>>,
    pub mp_unreach: Option<Vec<u8>>,
    pub repair: Repair,
}

fn expected_flags(code: u8) -> Option<u8> {
    Some(match code {
        ORIGIN | AS_PATH | NEXT_HOP | LOCAL_PREF | ATOMIC_AGGREGATE => FLAG_TRANSITIVE,
        MED | ORIGINATOR_ID | CLUSTER_LIST | MP_REACH_NLRI | MP_UNREACH_NLRI => FLAG_OPTIONAL,
        AGGREGATOR | COMMUNITIES | EXTENDED_COMMUNITIES | AS4_PATH | AS4_AGGREGATOR
        | LARGE_COMMUNITY => FLAG_OPTIONAL | FLAG_TRANSITIVE,
        _ => return None,
    })
}

/// Parse the path attribute section. `Err` means session reset.
pub(crate) fn decode_attrs(buf: &[u8], ctx: &Ctx) -> Result<Parsed, Notification> {
    let mut r = Reader::new(buf);
    let mut a = PathAttrs::default();
    let mut rare = RareAttrs::default();
    let mut repair = Repair::None;
    let mut seen = [false; 256];
    let (mut mp_reach, mut mp_unreach) = (None, None);
    let mut as4_path: Option<AsPath> = None;
    let mut as4_aggregator: Option<(u32, Ipv4Addr)> = None;
    let malformed_list = || {
        Notification::new(
            notification::UPDATE_MESSAGE_ERROR,
            notification::update::MALFORMED_ATTRIBUTE_LIST,
            vec![],
        )
    };

    while !r.is_empty() {
        let hdr = (r.u8(), r.u8());
        let (Ok(flags), Ok(code)) = hdr else {
            repair.withdraw("attribute header truncated");
            break;
        };
        let len = if flags & FLAG_EXTENDED != 0 {
            r.u16().map(|v| v as usize)
        } else {
            r.u8().map(|v| v as usize)
        };
        let Ok(len) = len else {
            repair.withdraw("attribute length truncated");
            break;
        };
        let Ok(v) = r.take(len) else {
            // RFC 7606 §4: an attribute overrunning the attribute section.
            repair.withdraw(format!(
                "attribute {code} length {len} overruns the path attributes"
            ));
            break;
        };
        if seen[code as usize] {
            if code == MP_REACH_NLRI || code == MP_UNREACH_NLRI {
                return Err(malformed_list());
            }
            // RFC 7606 §3 (g): keep the first, discard the rest.
            repair.discard(code);
            continue;
        }
        seen[code as usize] = true;

        if let Some(exp) = expected_flags(code) {
            if flags & (FLAG_OPTIONAL | FLAG_TRANSITIVE) != exp {
                match code {
                    MP_REACH_NLRI | MP_UNREACH_NLRI => return Err(malformed_list()),
                    ATOMIC_AGGREGATE | AGGREGATOR | AS4_PATH | AS4_AGGREGATOR => {
                        repair.discard(code)
                    }
                    _ => repair.withdraw(format!("attribute {code} has flags {flags:#04x}")),
                }
                continue;
            }
        }
        let mut rv = Reader::new(v);
        match code {
            ORIGIN => match v {
                [0] => a.origin = Some(Origin::Igp),
                [1] => a.origin = Some(Origin::Egp),
                [2] => a.origin = Some(Origin::Incomplete),
                _ => repair.withdraw(format!("invalid ORIGIN {v:?}")),
            },
            AS_PATH => match AsPath::decode(v, ctx.four_octet_as) {
                Some(p) => a.as_path = Some(p),
                None => repair.withdraw("malformed AS_PATH"),
            },
            NEXT_HOP => match rv.ipv4() {
                Ok(nh) if v.len() == 4 => a.next_hop = Some(nh),
                _ => repair.withdraw(format!("NEXT_HOP length {}", v.len())),
            },
            MED => match rv.u32() {
                Ok(m) if v.len() == 4 => a.med = Some(m),
                _ => repair.withdraw(format!("MED length {}", v.len())),
            },
            LOCAL_PREF => match rv.u32() {
                Ok(m) if v.len() == 4 => a.local_pref = Some(m),
                _ => repair.withdraw(format!("LOCAL_PREF length {}", v.len())),
            },
            ATOMIC_AGGREGATE => {
                if v.is_empty() {
                    rare.atomic_aggregate = true
                } else {
                    repair.discard(code)
                }
            }
            AGGREGATOR => {
                let want = if ctx.four_octet_as { 8 } else { 6 };
                if v.len() != want {
                    repair.discard(code);
                } else {
                    let asn = if ctx.four_octet_as {
                        rv.u32().unwrap_or(0)
                    } else {
                        rv.u16().unwrap_or(0) as u32
                    };
                    rare.aggregator = rv.ipv4().ok().map(|id| (asn, id));
                }
            }
            COMMUNITIES => {
                if v.is_empty() || v.len() % 4 != 0 {
                    repair.withdraw(format!("COMMUNITIES length {}", v.len()));
                } else {
                    a.communities = v
                        .chunks_exact(4)
                        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                        .collect();
                }
            }
            ORIGINATOR_ID => match rv.ipv4() {
                Ok(id) if v.len() == 4 => rare.originator_id = Some(id),
                _ => repair.withdraw(format!("ORIGINATOR_ID length {}", v.len())),
            },
            CLUSTER_LIST => {
                if v.is_empty() || v.len() % 4 != 0 {
                    repair.withdraw(format!("CLUSTER_LIST length {}", v.len()));
                } else {
                    rare.cluster_list = v
                        .chunks_exact(4)
                        .map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3]))
                        .collect();
                }
            }
            MP_REACH_NLRI => mp_reach = Some(v.to_vec()),
            MP_UNREACH_NLRI => mp_unreach = Some(v.to_vec()),
            EXTENDED_COMMUNITIES => {
                if v.is_empty() || v.len() % 8 != 0 {
                    repair.withdraw(format!("EXTENDED_COMMUNITIES length {}", v.len()));
                } else {
                    rare.ext_communities = v
                        .chunks_exact(8)
                        .map(|c| c.try_into().unwrap_or([0; 8]))
                        .collect();
                }
            }
            AS4_PATH => {
                if ctx.four_octet_as {
                    // RFC 6793 §4.1: a NEW speaker ignores AS4_PATH from a NEW speaker.
                    repair.discard(code);
                } else {
                    match AsPath::decode(v, true) {
                        Some(p) => as4_path = Some(p),
                        None => repair.discard(code),
                    }
                }
            }
            AS4_AGGREGATOR => {
                if ctx.four_octet_as || v.len() != 8 {
                    repair.discard(code);
                } else {
                    let asn = rv.u32().unwrap_or(0);
                    as4_aggregator = rv.ipv4().ok().map(|id| (asn, id));
                }
            }
            LARGE_COMMUNITY => {
                if v.is_empty() || v.len() % 12 != 0 {
                    repair.withdraw(format!("LARGE_COMMUNITY length {}", v.len()));
                } else {
                    rare.large_communities = v
                        .chunks_exact(12)
                        .map(|c| LargeCommunity {
                            global: u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                            local1: u32::from_be_bytes([c[4], c[5], c[6], c[7]]),
                            local2: u32::from_be_bytes([c[8], c[9], c[10], c[11]]),
                        })
                        .collect();
                }
            }
            _ => {
                if flags & FLAG_OPTIONAL == 0 {
                    // An unrecognized well-known attribute (RFC 4271 §6.3).
                    let mut data = vec![flags, code];
                    data.extend_from_slice(v);
                    return Err(Notification::new(
                        notification::UPDATE_MESSAGE_ERROR,
                        notification::update::UNRECOGNIZED_WELL_KNOWN,
                        data,
                    ));
                }
                if flags & FLAG_TRANSITIVE != 0 {
                    // Passed on with the Partial bit set (RFC 4271 §5).
                    rare.unknown.push(RawAttr {
                        flags: flags | FLAG_PARTIAL,
                        code,
                        value: v.to_vec(),
                    });
                }
            }
        }
    }

    // RFC 6793 §4.2.3: AS4 attributes only count when AGGREGATOR says AS_TRANS (or is absent).
    let aggregator_trans = rare
        .aggregator
        .map(|(asn, _)| asn == AS_TRANS as u32)
        .unwrap_or(true);
    if let Some(agg4) = as4_aggregator {
        if rare.aggregator.is_some() && aggregator_trans {
            rare.aggregator = Some(agg4);
        }
    }
    if let (Some(as4), Some(path)) = (as4_path, a.as_path.as_ref()) {
        if aggregator_trans {
            a.as_path = Some(path.merge_as4(&as4));
        }
    }
    a.set_rare(rare);
    Ok(Parsed {
        attrs: a,
        mp_reach,
        mp_unreach,
        repair,
    })
}

fn put_attr(out: &mut Vec<u8>, flags: u8, code: u8, v: &[u8]) {
    if v.len() > 255 {
        out.push(flags | FLAG_EXTENDED);
        out.push(code);
        out.extend_from_slice(&(v.len() as u16).to_be_bytes());
    } else {
        out.push(flags & !FLAG_EXTENDED);
        out.push(code);
        out.push(v.len() as u8);
    }
    out.extend_from_slice(v);
}

/// Encode the attributes in type-code order, with `mp` (MP_REACH or
/// MP_UNREACH value, already encoded) in its place.
pub(crate) fn encode_attrs(a: &PathAttrs, ctx: &Ctx, mp: Option<(u8, &[u8])>, out: &mut Vec<u8>) {
    let mut v = Vec::with_capacity(64);
    let r = a.rare();
    if let Some(o) = a.origin {
        put_attr(out, FLAG_TRANSITIVE, ORIGIN, &[o as u8]);
    }
    if let Some(p) = &a.as_path {
        v.clear();
        p.encode(ctx.four_octet_as, &mut v);
        put_attr(out, FLAG_TRANSITIVE, AS_PATH, &v);
    }
    if let Some(nh) = a.next_hop {
        put_attr(out, FLAG_TRANSITIVE, NEXT_HOP, &nh.octets());
    }
    if let Some(m) = a.med {
        put_attr(out, FLAG_OPTIONAL, MED, &m.to_be_bytes());
    }
    if let Some(lp) = a.local_pref {
        put_attr(out, FLAG_TRANSITIVE, LOCAL_PREF, &lp.to_be_bytes());
    }
    if r.atomic_aggregate {
        put_attr(out, FLAG_TRANSITIVE, ATOMIC_AGGREGATE, &[]);
    }
    if let Some((asn, id)) = r.aggregator {
        v.clear();
        if ctx.four_octet_as {
            v.extend_from_slice(&asn.to_be_bytes());
        } else {
            v.extend_from_slice(&u16::try_from(asn).unwrap_or(AS_TRANS).to_be_bytes());
        }
        v.extend_from_slice(&id.octets());
        put_attr(out, FLAG_OPTIONAL | FLAG_TRANSITIVE, AGGREGATOR, &v);
    }
    if !a.communities.is_empty() {
        v.clear();
        a.communities
            .iter()
            .for_each(|c| v.extend_from_slice(&c.to_be_bytes()));
        put_attr(out, FLAG_OPTIONAL | FLAG_TRANSITIVE, COMMUNITIES, &v);
    }
    if let Some(id) = r.originator_id {
        put_attr(out, FLAG_OPTIONAL, ORIGINATOR_ID, &id.octets());
    }
    if !r.cluster_list.is_empty() {
        v.clear();
        r.cluster_list
            .iter()
            .for_each(|c| v.extend_from_slice(&c.octets()));
        put_attr(out, FLAG_OPTIONAL, CLUSTER_LIST, &v);
    }
    if let Some((code, val)) = mp {
        put_attr(out, FLAG_OPTIONAL, code, val);
    }
    if !r.ext_communities.is_empty() {
        v.clear();
        r.ext_communities
            .iter()
            .for_each(|c| v.extend_from_slice(c));
        put_attr(
            out,
            FLAG_OPTIONAL | FLAG_TRANSITIVE,
            EXTENDED_COMMUNITIES,
            &v,
        );
    }
    if !ctx.four_octet_as {
        if let Some(p) = a.as_path.as_ref().filter(|p| p.needs_as4()) {
            v.clear();
            p.encode(true, &mut v);
            put_attr(out, FLAG_OPTIONAL | FLAG_TRANSITIVE, AS4_PATH, &v);
        }
        if let Some((asn, id)) = r.aggregator.filter(|(asn, _)| *asn > 0xffff) {
            v.clear();
            v.extend_from_slice(&asn.to_be_bytes());
            v.extend_from_slice(&id.octets());
            put_attr(out, FLAG_OPTIONAL | FLAG_TRANSITIVE, AS4_AGGREGATOR, &v);
        }
    }
    if !r.large_communities.is_empty() {
        v.clear();
        for c in &r.large_communities {
            v.extend_from_slice(&c.global.to_be_bytes());
            v.extend_from_slice(&c.local1.to_be_bytes());
            v.extend_from_slice(&c.local2.to_be_bytes());
        }
        put_attr(out, FLAG_OPTIONAL | FLAG_TRANSITIVE, LARGE_COMMUNITY, &v);
    }
    for u in &r.unknown {
        put_attr(out, u.flags, u.code, &u.value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::update::NextHop;

    #[test]
    fn a_route_path_id_is_part_of_the_set_kept_with_the_rare_ones_and_never_encoded() {
        let mut a = PathAttrs {
            med: Some(5),
            ..Default::default()
        };
        let plain = a.clone();
        a.set_route_path_id(3);
        assert_eq!((a.route_path_id(), a.rare.is_some()), (3, true));
        assert_ne!(a, plain, "another path id: another set");
        // Replacing the rare attributes keeps it.
        a.set_rare(RareAttrs {
            originator_id: Some("192.0.2.7".parse().unwrap()),
            ..Default::default()
        });
        assert_eq!(a.route_path_id(), 3);
        // Never encoded.
        let ctx = Ctx::default();
        let (mut with, mut without) = (Vec::new(), Vec::new());
        encode_attrs(&a, &ctx, None, &mut with);
        let mut bare = a.clone();
        bare.set_route_path_id(0);
        encode_attrs(&bare, &ctx, None, &mut without);
        assert_eq!(with, without);
        // Gone with the rare attributes it needed.
        a.set_rare(RareAttrs::default());
        a.set_route_path_id(0);
        assert_eq!(a, plain);
        assert!(a.rare.is_none());
    }

    #[test]
    fn a_set_is_64_bytes_and_keeps_a_link_local_route_next_hop_with_the_rare_ones() {
        // (A RIB holds hundreds of thousands of sets, each in an Arc.)
        assert_eq!(std::mem::size_of::<PathAttrs>(), 64);
        let mut a = PathAttrs {
            med: Some(5),
            ..Default::default()
        };
        let v4 = NextHop::V4("192.0.2.1".parse().unwrap());
        a.set_route_next_hop(Some(v4));
        assert_eq!((a.route_next_hop(), a.rare.is_some()), (Some(v4), false));
        let ll = NextHop::V6 {
            global: "2001:db8::1".parse().unwrap(),
            link_local: Some("fe80::1".parse().unwrap()),
        };
        a.set_route_next_hop(Some(ll));
        assert_eq!(a.route_next_hop(), Some(ll));
        // Replacing the rare attributes keeps it; equal sets with another
        // link-local address are other sets.
        a.set_rare(RareAttrs {
            originator_id: Some("192.0.2.7".parse().unwrap()),
            ..Default::default()
        });
        assert_eq!(a.route_next_hop(), Some(ll));
        assert_eq!(a.originator_id(), Some("192.0.2.7".parse().unwrap()));
        let mut b = a.clone();
        b.set_route_next_hop(Some(NextHop::V6 {
            global: "2001:db8::1".parse().unwrap(),
            link_local: Some("fe80::2".parse().unwrap()),
        }));
        assert_ne!(a, b);
        // Never encoded: the same bytes as without a route next hop.
        let ctx = Ctx::default();
        let (mut with, mut without) = (Vec::new(), Vec::new());
        encode_attrs(&a, &ctx, None, &mut with);
        let mut bare = a.clone();
        bare.set_route_next_hop(None);
        assert_eq!(bare.rare().route_link_local, None);
        encode_attrs(&bare, &ctx, None, &mut without);
        assert_eq!(with, without);
        // Gone again with the rare attributes it needed.
        a.set_rare(RareAttrs::default());
        a.set_route_next_hop(Some(v4));
        assert_eq!((a.route_next_hop(), a.rare.is_none()), (Some(v4), true));
        a.set_route_next_hop(None);
        assert_eq!(
            a,
            PathAttrs {
                med: Some(5),
                ..Default::default()
            }
        );
    }

    #[test]
    fn as_path_display_len_prepend() {
        let mut p = AsPath::from_segments([
            (SegmentKind::Sequence, vec![65001, 65002]),
            (SegmentKind::Set, vec![1, 2, 3]),
        ]);
        assert_eq!(p.len(), 3);
        assert_eq!(p.to_string(), "65001 65002 {1 2 3}");
        p.prepend(65000, 2);
        assert_eq!(p.to_string(), "65000 65000 65001 65002 {1 2 3}");
        assert_eq!(p.first(), Some(65000));
    }

    #[test]
    fn normalized_sets_know_their_as_path_length_and_compare_without_it() {
        use std::hash::BuildHasher;
        let path = AsPath::from_segments([
            (SegmentKind::Sequence, vec![65001, 65002]),
            (SegmentKind::Set, vec![1, 2, 3]),
        ]);
        let raw = PathAttrs {
            as_path: Some(path),
            local_pref: Some(100),
            ..Default::default()
        };
        assert_eq!(raw.as_path_len_hint, 0, "decoded: not known");
        assert_eq!(raw.as_path_len(), 3, "counted");
        let mut n = raw.clone();
        n.normalize();
        assert_eq!(n.as_path_len_hint, 4);
        assert_eq!(n.as_path_len(), 3);
        // The hint is no part of the set's identity.
        let s = std::hash::RandomState::new();
        assert_eq!(n, raw);
        assert_eq!(s.hash_one(&n), s.hash_one(&raw));
        // Changed through `as_path_mut`: counted again, never the stale hint.
        let mut m = n.clone();
        m.as_path_mut().prepend(65000, 3);
        assert_eq!(m.as_path_len(), 6);
        assert_ne!(m, n);
        m.normalize();
        assert_eq!((m.as_path_len_hint, m.as_path_len()), (7, 6));
        // No AS path: length 0 (hint 1); 254 and more: counted.
        let mut none = PathAttrs::default();
        none.normalize();
        assert_eq!((none.as_path_len_hint, none.as_path_len()), (1, 0));
        let mut long = PathAttrs {
            as_path: Some(AsPath::from_sequence(vec![65001; 300])),
            ..Default::default()
        };
        long.normalize();
        assert_eq!((long.as_path_len_hint, long.as_path_len()), (255, 300));
    }

    #[test]
    fn as_path_segments_in_one_allocation_round_trip() {
        // Wire form (4-octet): SEQUENCE 65001 4200000001, SET {7 8}, CONFED_SEQUENCE (9).
        let mut wire = vec![2, 2];
        wire.extend_from_slice(&65001u32.to_be_bytes());
        wire.extend_from_slice(&4_200_000_001u32.to_be_bytes());
        wire.extend_from_slice(&[1, 2, 0, 0, 0, 7, 0, 0, 0, 8, 3, 1, 0, 0, 0, 9]);
        let p = AsPath::decode(&wire, true).unwrap();
        assert_eq!(p.to_string(), "65001 4200000001 {7 8} (9)");
        assert_eq!(p.len(), 3, "sequence 2 + set 1, confederation 0");
        assert_eq!(p.first(), Some(65001));
        assert!(p.contains(8) && p.contains(9) && !p.contains(2));
        assert!(p.needs_as4());
        let mut out = Vec::new();
        p.encode(true, &mut out);
        assert_eq!(out, wire);
        assert_eq!(
            p,
            AsPath::from_segments([
                (SegmentKind::Sequence, vec![65001, 4_200_000_001]),
                (SegmentKind::Set, vec![7, 8]),
                (SegmentKind::ConfedSequence, vec![9]),
            ])
        );
        // Segment header words are not AS numbers.
        let small = AsPath::from_segments([(SegmentKind::Set, vec![1, 2])]);
        assert!(!small.needs_as4() && !small.contains(0x0100_0002));
        // Truncated, zero-length and unknown segments are refused.
        assert!(AsPath::decode(&wire[..wire.len() - 1], true).is_none());
        assert!(AsPath::decode(&[2, 0], true).is_none());
        assert!(AsPath::decode(&[5, 1, 0, 1], false).is_none());
        // Prepending before a set starts a sequence; a full sequence gets another.
        let mut q = small.clone();
        q.prepend(65000, 1);
        assert_eq!(q.to_string(), "65000 {1 2}");
        let mut long = AsPath::from_sequence((1..=255).collect());
        long.prepend(65000, 1);
        assert_eq!(long.segments().count(), 2);
        assert_eq!((long.len(), long.first()), (256, Some(65000)));
        let mut out = Vec::new();
        long.encode(true, &mut out);
        assert_eq!(AsPath::decode(&out, true).unwrap().len(), 256);
        assert_eq!(
            serde_json::to_value(&small).unwrap(),
            serde_json::json!({"segments": [{"kind": "Set", "asns": [1, 2]}]})
        );
    }

    #[test]
    fn as4_merge_rfc6793() {
        // AS_PATH as an OLD speaker sees it: 65001 AS_TRANS AS_TRANS; AS4_PATH: 4200000001 4200000002.
        let old = AsPath::from_sequence(vec![65001, 23456, 23456]);
        let as4 = AsPath::from_sequence(vec![4_200_000_001, 4_200_000_002]);
        assert_eq!(
            old.merge_as4(&as4).to_string(),
            "65001 4200000001 4200000002"
        );
        // AS4_PATH longer than AS_PATH: ignored.
        let short = AsPath::from_sequence(vec![65001]);
        assert_eq!(short.merge_as4(&as4), short);
    }

    #[test]
    fn community_names() {
        assert_eq!(community_string((65535 << 16) | 120), "65535:120");
        assert_eq!(community_string(0xFFFF_FF01), "no-export");
    }
}
