//! UPDATE message (RFC 4271 §4.3), MP_REACH_NLRI / MP_UNREACH_NLRI
//! (RFC 4760), add-path NLRI (RFC 7911), extended next hop (RFC 8950),
//! and the RFC 7606 verdict for malformed UPDATEs.
//!
//! ```text
//! +-----------------------------------------------------+
//! |   Withdrawn Routes Length (2 octets)                |
//! |   Withdrawn Routes (variable)                       |
//! |   Total Path Attribute Length (2 octets)            |
//! |   Path Attributes (variable)                        |
//! |   Network Layer Reachability Information (variable) |
//! +-----------------------------------------------------+
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::{BufMut, BytesMut};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::attr::{self, PathAttrs};
use crate::message::{HEADER_LEN, TYPE_UPDATE};
use crate::notification::{self, Notification};
use crate::{Ctx, Family, Reader, AFI_IPV4, AFI_IPV6, SAFI_UNICAST};

/// RFC 7606 verdict for an UPDATE that could be parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Repair {
    /// Nothing wrong.
    #[default]
    None,
    /// Malformed optional attributes were dropped (their type codes); the routes stand.
    AttributeDiscard(Vec<u8>),
    /// The routes in this UPDATE are to be treated as withdrawn; the reason is for logs.
    TreatAsWithdraw(String),
}

impl Repair {
    pub(crate) fn withdraw(&mut self, why: impl Into<String>) {
        if !matches!(self, Repair::TreatAsWithdraw(_)) {
            *self = Repair::TreatAsWithdraw(why.into());
        }
    }
    pub(crate) fn discard(&mut self, code: u8) {
        match self {
            Repair::None => *self = Repair::AttributeDiscard(vec![code]),
            Repair::AttributeDiscard(v) => v.push(code),
            Repair::TreatAsWithdraw(_) => {}
        }
    }
    pub fn is_withdraw(&self) -> bool {
        matches!(self, Repair::TreatAsWithdraw(_))
    }
}

/// One NLRI: a prefix and, with add-path, its path identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Nlri {
    pub prefix: IpNet,
    pub path_id: Option<u32>,
}

impl Nlri {
    pub fn new(prefix: IpNet) -> Self {
        Nlri {
            prefix,
            path_id: None,
        }
    }
    pub fn family(&self) -> Family {
        match self.prefix {
            IpNet::V4(_) => Family::IPV4_UNICAST,
            IpNet::V6(_) => Family::IPV6_UNICAST,
        }
    }
}

/// The next hop of an MP_REACH_NLRI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum NextHop {
    V4(Ipv4Addr),
    /// A global address and optionally a link-local one (RFC 2545 / RFC 8950).
    V6 {
        global: Ipv6Addr,
        link_local: Option<Ipv6Addr>,
    },
}

impl NextHop {
    /// The address to use for forwarding: a link-local one when the global is unspecified.
    pub fn addr(&self) -> IpAddr {
        match *self {
            NextHop::V4(a) => IpAddr::V4(a),
            NextHop::V6 { global, link_local } => match link_local {
                Some(ll) if global.is_unspecified() => IpAddr::V6(ll),
                _ => IpAddr::V6(global),
            },
        }
    }
}

impl std::fmt::Display for NextHop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NextHop::V4(a) => write!(f, "{a}"),
            NextHop::V6 {
                global,
                link_local: None,
            } => write!(f, "{global}"),
            NextHop::V6 {
                global,
                link_local: Some(ll),
            } => write!(f, "{global} ({ll})"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MpReach {
    pub family: Family,
    pub next_hop: NextHop,
    pub nlri: Vec<Nlri>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MpUnreach {
    pub family: Family,
    pub nlri: Vec<Nlri>,
}

/// An UPDATE. `repair` is the RFC 7606 verdict from decoding (always
/// `Repair::None` for one built locally).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Update {
    pub withdrawn: Vec<Nlri>,
    pub attrs: PathAttrs,
    pub nlri: Vec<Nlri>,
    pub mp_reach: Option<MpReach>,
    pub mp_unreach: Option<MpUnreach>,
    pub repair: Repair,
}

fn update_err(sub: u8) -> Notification {
    Notification::new(notification::UPDATE_MESSAGE_ERROR, sub, vec![])
}

/// How many prefixes a run of them holds, read from their lengths alone
/// (a capacity: whether the run is well formed is for the decoding).
fn count_prefixes(buf: &[u8], add_path: bool) -> usize {
    let skip = if add_path { 4 } else { 0 };
    let (mut at, mut n) = (0, 0);
    while let Some(&bits) = buf.get(at + skip) {
        at += skip + 1 + usize::from(bits).div_ceil(8);
        n += 1;
    }
    n
}

/// Decode a run of prefixes of one family. `None` = malformed. One
/// allocation of the right size (a full UPDATE holds up to ~1,000).
fn decode_prefixes(buf: &[u8], family: Family, add_path: bool) -> Option<Vec<Nlri>> {
    let mut r = Reader::new(buf);
    let mut out = Vec::with_capacity(count_prefixes(buf, add_path));
    let max = if family.afi == AFI_IPV4 { 32 } else { 128 };
    while !r.is_empty() {
        let path_id = if add_path { Some(r.u32().ok()?) } else { None };
        let bits = r.u8().ok()?;
        if bits > max {
            return None;
        }
        let bytes = r.take(bits.div_ceil(8) as usize).ok()?;
        let prefix = if family.afi == AFI_IPV4 {
            let mut a = [0u8; 4];
            a[..bytes.len()].copy_from_slice(bytes);
            IpNet::V4(Ipv4Net::new(Ipv4Addr::from(a), bits).ok()?.trunc())
        } else {
            let mut a = [0u8; 16];
            a[..bytes.len()].copy_from_slice(bytes);
            IpNet::V6(Ipv6Net::new(Ipv6Addr::from(a), bits).ok()?.trunc())
        };
        out.push(Nlri { prefix, path_id });
    }
    Some(out)
}

fn encode_prefix(n: &Nlri, add_path: bool, out: &mut Vec<u8>) {
    if add_path {
        out.extend_from_slice(&n.path_id.unwrap_or(0).to_be_bytes());
    }
    let bits = n.prefix.prefix_len();
    out.push(bits);
    let nbytes = bits.div_ceil(8) as usize;
    match n.prefix {
        IpNet::V4(p) => out.extend_from_slice(&p.network().octets()[..nbytes]),
        IpNet::V6(p) => out.extend_from_slice(&p.network().octets()[..nbytes]),
    }
}

/// Encoded size of one NLRI.
pub fn nlri_len(n: &Nlri, add_path: bool) -> usize {
    1 + n.prefix.prefix_len().div_ceil(8) as usize + if add_path { 4 } else { 0 }
}

fn supported(f: Family) -> bool {
    f.safi == SAFI_UNICAST && (f.afi == AFI_IPV4 || f.afi == AFI_IPV6)
}

fn decode_mp_reach(v: &[u8], ctx: &Ctx) -> Result<Option<MpReach>, Notification> {
    let bad = || update_err(notification::update::OPTIONAL_ATTRIBUTE_ERROR);
    let mut r = Reader::new(v);
    let afi = r.u16().map_err(|_| bad())?;
    let safi = r.u8().map_err(|_| bad())?;
    let family = Family { afi, safi };
    let nh_len = r.u8().map_err(|_| bad())? as usize;
    let nh = r.take(nh_len).map_err(|_| bad())?;
    let _reserved = r.u8().map_err(|_| bad())?;
    if !supported(family) {
        // Not a family we negotiate: ignore the attribute (RFC 4760 §7).
        return Ok(None);
    }
    let mut nr = Reader::new(nh);
    let next_hop = match nh_len {
        4 => NextHop::V4(nr.ipv4().map_err(|_| bad())?),
        16 => NextHop::V6 {
            global: nr.ipv6().map_err(|_| bad())?,
            link_local: None,
        },
        32 => NextHop::V6 {
            global: nr.ipv6().map_err(|_| bad())?,
            link_local: Some(nr.ipv6().map_err(|_| bad())?),
        },
        _ => return Err(bad()),
    };
    let nlri = decode_prefixes(r.rest(), family, ctx.add_path_rx(family))
        .ok_or_else(|| update_err(notification::update::OPTIONAL_ATTRIBUTE_ERROR))?;
    Ok(Some(MpReach {
        family,
        next_hop,
        nlri,
    }))
}

fn decode_mp_unreach(v: &[u8], ctx: &Ctx) -> Result<Option<MpUnreach>, Notification> {
    let bad = || update_err(notification::update::OPTIONAL_ATTRIBUTE_ERROR);
    let mut r = Reader::new(v);
    let afi = r.u16().map_err(|_| bad())?;
    let safi = r.u8().map_err(|_| bad())?;
    let family = Family { afi, safi };
    if !supported(family) {
        return Ok(None);
    }
    let nlri = decode_prefixes(r.rest(), family, ctx.add_path_rx(family)).ok_or_else(bad)?;
    Ok(Some(MpUnreach { family, nlri }))
}

impl Update {
    /// An End-of-RIB marker (RFC 4724 §2) for `family`.
    pub fn end_of_rib(family: Family) -> Update {
        if family == Family::IPV4_UNICAST {
            Update::default()
        } else {
            Update {
                mp_unreach: Some(MpUnreach {
                    family,
                    nlri: vec![],
                }),
                ..Default::default()
            }
        }
    }

    /// The family this UPDATE is an End-of-RIB marker for, if it is one.
    pub fn is_end_of_rib(&self) -> Option<Family> {
        if self.withdrawn.is_empty()
            && self.nlri.is_empty()
            && self.mp_reach.is_none()
            && self.attrs == PathAttrs::default()
        {
            match &self.mp_unreach {
                None => return Some(Family::IPV4_UNICAST),
                Some(u) if u.nlri.is_empty() => return Some(u.family),
                _ => {}
            }
        }
        None
    }

    /// Every prefix this UPDATE withdraws, including announcements turned
    /// into withdrawals by RFC 7606 treat-as-withdraw.
    pub fn withdrawals(&self) -> impl Iterator<Item = &Nlri> {
        let taw = self.repair.is_withdraw();
        self.withdrawn
            .iter()
            .chain(self.mp_unreach.iter().flat_map(|u| u.nlri.iter()))
            .chain(self.nlri.iter().filter(move |_| taw))
            .chain(
                self.mp_reach
                    .iter()
                    .flat_map(|m| m.nlri.iter())
                    .filter(move |_| taw),
            )
    }

    /// Every prefix this UPDATE announces with its next hop (none under treat-as-withdraw).
    pub fn announcements(&self) -> impl Iterator<Item = (&Nlri, NextHop)> {
        let ok = !self.repair.is_withdraw();
        let nh4 = self.attrs.next_hop.map(NextHop::V4);
        self.nlri
            .iter()
            .filter_map(move |n| nh4.map(|nh| (n, nh)))
            .chain(
                self.mp_reach
                    .iter()
                    .flat_map(|m| m.nlri.iter().map(move |n| (n, m.next_hop))),
            )
            .filter(move |_| ok)
    }

    /// Decode an UPDATE body. `Err` is the NOTIFICATION for a session reset.
    pub(crate) fn decode(body: &[u8], ctx: &Ctx) -> Result<Update, Notification> {
        let mut r = Reader::new(body);
        let malformed = || update_err(notification::update::MALFORMED_ATTRIBUTE_LIST);
        let wlen = r.u16().map_err(|_| malformed())? as usize;
        let wbuf = r.take(wlen).map_err(|_| malformed())?;
        let alen = r.u16().map_err(|_| malformed())? as usize;
        let abuf = r.take(alen).map_err(|_| malformed())?;
        let nbuf = r.rest();
        let v4 = Family::IPV4_UNICAST;
        let invalid_net = || update_err(notification::update::INVALID_NETWORK_FIELD);
        let withdrawn = decode_prefixes(wbuf, v4, ctx.add_path_rx(v4)).ok_or_else(invalid_net)?;
        let nlri = decode_prefixes(nbuf, v4, ctx.add_path_rx(v4)).ok_or_else(invalid_net)?;

        let parsed = attr::decode_attrs(abuf, ctx)?;
        let mut repair = parsed.repair;
        let mp_reach = match parsed.mp_reach {
            Some(v) => decode_mp_reach(&v, ctx)?,
            None => None,
        };
        let mp_unreach = match parsed.mp_unreach {
            Some(v) => decode_mp_unreach(&v, ctx)?,
            None => None,
        };
        let a = parsed.attrs;
        let announces = !nlri.is_empty() || mp_reach.as_ref().is_some_and(|m| !m.nlri.is_empty());
        if announces && !repair.is_withdraw() {
            // RFC 7606 §3 (d): a missing well-known mandatory attribute.
            if a.origin.is_none() {
                repair.withdraw("missing ORIGIN");
            } else if a.as_path.is_none() {
                repair.withdraw("missing AS_PATH");
            } else if !nlri.is_empty() && a.next_hop.is_none() {
                repair.withdraw("missing NEXT_HOP");
            }
        }
        if !announces
            && !abuf.is_empty()
            && mp_unreach.is_none()
            && mp_reach.is_none()
            && withdrawn.is_empty()
        {
            // Attributes without any NLRI: nothing to do, harmless (RFC 7606 §5.2).
        }
        Ok(Update {
            withdrawn,
            attrs: a,
            nlri,
            mp_reach,
            mp_unreach,
            repair,
        })
    }

    pub(crate) fn encode_body(&self, ctx: &Ctx, out: &mut BytesMut) {
        let v4 = Family::IPV4_UNICAST;
        let mut w = Vec::new();
        for n in &self.withdrawn {
            encode_prefix(n, ctx.add_path_tx(v4), &mut w);
        }
        out.put_u16(w.len() as u16);
        out.put_slice(&w);
        let mut mp = Vec::new();
        let mp_code = if let Some(m) = &self.mp_reach {
            mp.extend_from_slice(&m.family.afi.to_be_bytes());
            mp.push(m.family.safi);
            match m.next_hop {
                NextHop::V4(a) => {
                    mp.push(4);
                    mp.extend_from_slice(&a.octets());
                }
                NextHop::V6 { global, link_local } => {
                    mp.push(if link_local.is_some() { 32 } else { 16 });
                    mp.extend_from_slice(&global.octets());
                    if let Some(ll) = link_local {
                        mp.extend_from_slice(&ll.octets());
                    }
                }
            }
            mp.push(0);
            for n in &m.nlri {
                encode_prefix(n, ctx.add_path_tx(m.family), &mut mp);
            }
            Some(attr::MP_REACH_NLRI)
        } else if let Some(u) = &self.mp_unreach {
            mp.extend_from_slice(&u.family.afi.to_be_bytes());
            mp.push(u.family.safi);
            for n in &u.nlri {
                encode_prefix(n, ctx.add_path_tx(u.family), &mut mp);
            }
            Some(attr::MP_UNREACH_NLRI)
        } else {
            None
        };
        let mut a = Vec::new();
        attr::encode_attrs(
            &self.attrs,
            ctx,
            mp_code.map(|c| (c, mp.as_slice())),
            &mut a,
        );
        // An UPDATE with both MP_REACH and MP_UNREACH: append the second.
        if self.mp_reach.is_some() {
            if let Some(u) = &self.mp_unreach {
                let mut v = Vec::new();
                v.extend_from_slice(&u.family.afi.to_be_bytes());
                v.push(u.family.safi);
                for n in &u.nlri {
                    encode_prefix(n, ctx.add_path_tx(u.family), &mut v);
                }
                let flags = attr::FLAG_OPTIONAL
                    | if v.len() > 255 {
                        attr::FLAG_EXTENDED
                    } else {
                        0
                    };
                a.push(flags);
                a.push(attr::MP_UNREACH_NLRI);
                if v.len() > 255 {
                    a.extend_from_slice(&(v.len() as u16).to_be_bytes());
                } else {
                    a.push(v.len() as u8);
                }
                a.extend_from_slice(&v);
            }
        }
        out.put_u16(a.len() as u16);
        out.put_slice(&a);
        let mut n = Vec::new();
        for p in &self.nlri {
            encode_prefix(p, ctx.add_path_tx(v4), &mut n);
        }
        out.put_slice(&n);
    }
}

/// Pack announcements of many prefixes sharing one attribute set into as
/// few UPDATEs as fit in the negotiated message size, appending them to `out`.
///
/// IPv4 prefixes with an IPv4 next hop go in the NLRI field; everything else
/// in MP_REACH_NLRI (RFC 4760, RFC 8950). The attributes are encoded once;
/// each message is the header, that block and its share of the NLRI.
pub fn pack_announce(
    ctx: &Ctx,
    attrs: &PathAttrs,
    family: Family,
    next_hop: NextHop,
    nlri: &[Nlri],
    out: &mut BytesMut,
) -> usize {
    if nlri.is_empty() {
        return 0;
    }
    let classic = family == Family::IPV4_UNICAST && matches!(next_hop, NextHop::V4(_));
    let add_path = ctx.add_path_tx(family);
    let budget_for = |fixed: usize| ctx.max_len().saturating_sub(HEADER_LEN + 4 + fixed);
    let mut count = 0;
    if classic {
        let NextHop::V4(nh) = next_hop else {
            unreachable!()
        };
        let mut a = Vec::with_capacity(64);
        let with_nh;
        let base = if attrs.next_hop == Some(nh) {
            attrs
        } else {
            with_nh = PathAttrs {
                next_hop: Some(nh),
                ..attrs.clone()
            };
            &with_nh
        };
        attr::encode_attrs(base, ctx, None, &mut a);
        let budget = budget_for(a.len());
        for chunk in chunk_by_size(nlri, add_path, budget) {
            let start = out.len();
            out.put_slice(&[0xff; 16]);
            out.put_u16(0);
            out.put_u8(TYPE_UPDATE);
            out.put_u16(0); // no withdrawn routes
            out.put_u16(a.len() as u16);
            out.put_slice(&a);
            let mut n = Vec::with_capacity(chunk.len() * 5);
            for p in chunk {
                encode_prefix(p, add_path, &mut n);
            }
            out.put_slice(&n);
            let len = (out.len() - start) as u16;
            out[start + 16..start + 18].copy_from_slice(&len.to_be_bytes());
            count += 1;
        }
        return count;
    }
    // MP_REACH_NLRI: the NLRI live inside the attribute, so each message
    // encodes its own attribute block (rare: IPv6 and RFC 8950 next hops).
    let mut base = attrs.clone();
    base.next_hop = None;
    let empty = Update {
        attrs: base,
        mp_reach: Some(MpReach {
            family,
            next_hop,
            nlri: vec![],
        }),
        ..Default::default()
    };
    let overhead = {
        let mut b = BytesMut::new();
        empty.encode_body(ctx, &mut b);
        b.len()
    } + 2; // room for the MP_REACH length growing to 2 octets
    let budget = ctx.max_len().saturating_sub(HEADER_LEN + overhead);
    let mut u = empty;
    for chunk in chunk_by_size(nlri, add_path, budget) {
        if let Some(m) = &mut u.mp_reach {
            m.nlri = chunk.to_vec();
        }
        encode_update(ctx, &u, out);
        count += 1;
    }
    count
}

/// Pack withdrawals of many prefixes of one family into UPDATEs.
pub fn pack_withdraw(ctx: &Ctx, family: Family, nlri: &[Nlri], out: &mut BytesMut) -> usize {
    let add_path = ctx.add_path_tx(family);
    let budget = ctx.max_len() - HEADER_LEN - 4 - 8;
    let mut count = 0;
    for chunk in chunk_by_size(nlri, add_path, budget) {
        let u = if family == Family::IPV4_UNICAST {
            Update {
                withdrawn: chunk.to_vec(),
                ..Default::default()
            }
        } else {
            Update {
                mp_unreach: Some(MpUnreach {
                    family,
                    nlri: chunk.to_vec(),
                }),
                ..Default::default()
            }
        };
        encode_update(ctx, &u, out);
        count += 1;
    }
    count
}

fn chunk_by_size(nlri: &[Nlri], add_path: bool, budget: usize) -> Vec<&[Nlri]> {
    let mut v = Vec::new();
    let mut start = 0;
    while start < nlri.len() {
        let mut size = 0;
        let mut end = start;
        while end < nlri.len() && size + nlri_len(&nlri[end], add_path) <= budget {
            size += nlri_len(&nlri[end], add_path);
            end += 1;
        }
        end = end.max(start + 1);
        v.push(&nlri[start..end]);
        start = end;
    }
    v
}

fn encode_update(ctx: &Ctx, u: &Update, out: &mut BytesMut) {
    let start = out.len();
    out.put_slice(&[0xff; 16]);
    out.put_u16(0);
    out.put_u8(TYPE_UPDATE);
    u.encode_body(ctx, out);
    let len = (out.len() - start) as u16;
    out[start + 16..start + 18].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests;
