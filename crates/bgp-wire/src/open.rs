//! OPEN message (RFC 4271 §4.2) and capabilities (RFC 5492).
//!
//! ```text
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |    Version    |     My Autonomous System      |   Hold Time   :
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! :               |                BGP Identifier                 :
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! :               | Opt Parm Len  |  Optional Parameters (var)    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//! RFC 9072 extended optional parameters length (0xff marker) is accepted.

use std::net::Ipv4Addr;

use bytes::{BufMut, BytesMut};

use crate::notification::{self, Notification};
use crate::{Family, Reader, AS_TRANS};

pub const CAP_MULTIPROTOCOL: u8 = 1;
pub const CAP_ROUTE_REFRESH: u8 = 2;
pub const CAP_EXTENDED_NEXT_HOP: u8 = 5;
pub const CAP_EXTENDED_MESSAGE: u8 = 6;
pub const CAP_GRACEFUL_RESTART: u8 = 64;
pub const CAP_FOUR_OCTET_AS: u8 = 65;
pub const CAP_ADD_PATH: u8 = 69;
pub const CAP_ENHANCED_ROUTE_REFRESH: u8 = 70;

/// RFC 7911 send/receive mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum AddPathMode {
    Receive,
    Send,
    Both,
}

impl AddPathMode {
    fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(AddPathMode::Receive),
            2 => Some(AddPathMode::Send),
            3 => Some(AddPathMode::Both),
            _ => None,
        }
    }
    fn to_u8(self) -> u8 {
        match self {
            AddPathMode::Receive => 1,
            AddPathMode::Send => 2,
            AddPathMode::Both => 3,
        }
    }
    pub fn can_send(self) -> bool {
        matches!(self, AddPathMode::Send | AddPathMode::Both)
    }
    pub fn can_receive(self) -> bool {
        matches!(self, AddPathMode::Receive | AddPathMode::Both)
    }
}

/// Graceful restart per-family entry (RFC 4724 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct GrFamily {
    pub family: Family,
    pub forwarding_preserved: bool,
}

/// One capability of an OPEN.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Capability {
    /// RFC 4760.
    Multiprotocol(Family),
    /// RFC 2918.
    RouteRefresh,
    /// RFC 7313.
    EnhancedRouteRefresh,
    /// RFC 6793.
    FourOctetAs(u32),
    /// RFC 4724: restart flag (R), notification flag (N, RFC 8538), restart time, families.
    GracefulRestart {
        restarting: bool,
        notification: bool,
        time: u16,
        families: Vec<GrFamily>,
    },
    /// RFC 8950: (NLRI family, next hop AFI).
    ExtendedNextHop(Vec<(Family, u16)>),
    /// RFC 7911.
    AddPath(Vec<(Family, AddPathMode)>),
    /// RFC 8654.
    ExtendedMessage,
    /// Anything else, kept as bytes (FQDN, software version, ...).
    Unknown { code: u8, data: Vec<u8> },
}

impl Capability {
    pub fn code(&self) -> u8 {
        match self {
            Capability::Multiprotocol(_) => CAP_MULTIPROTOCOL,
            Capability::RouteRefresh => CAP_ROUTE_REFRESH,
            Capability::EnhancedRouteRefresh => CAP_ENHANCED_ROUTE_REFRESH,
            Capability::FourOctetAs(_) => CAP_FOUR_OCTET_AS,
            Capability::GracefulRestart { .. } => CAP_GRACEFUL_RESTART,
            Capability::ExtendedNextHop(_) => CAP_EXTENDED_NEXT_HOP,
            Capability::AddPath(_) => CAP_ADD_PATH,
            Capability::ExtendedMessage => CAP_EXTENDED_MESSAGE,
            Capability::Unknown { code, .. } => *code,
        }
    }

    /// A short human name, for `show neighbors`.
    pub fn name(&self) -> String {
        match self {
            Capability::Multiprotocol(f) => format!("multiprotocol({f})"),
            Capability::RouteRefresh => "route-refresh".into(),
            Capability::EnhancedRouteRefresh => "enhanced-route-refresh".into(),
            Capability::FourOctetAs(a) => format!("4-octet-as({a})"),
            Capability::GracefulRestart { time, .. } => format!("graceful-restart(time {time}s)"),
            Capability::ExtendedNextHop(v) => format!(
                "extended-nexthop({})",
                v.iter()
                    .map(|(f, nh)| format!("{f} via afi {nh}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Capability::AddPath(v) => format!(
                "add-path({})",
                v.iter()
                    .map(|(f, m)| format!("{f} {m:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Capability::ExtendedMessage => "extended-message".into(),
            Capability::Unknown { code, .. } => format!("unknown({code})"),
        }
    }

    fn decode(code: u8, v: &[u8]) -> Result<Capability, ()> {
        let mut r = Reader::new(v);
        let cap = match code {
            CAP_MULTIPROTOCOL => {
                if v.len() != 4 {
                    return Err(());
                }
                let afi = r.u16().map_err(drop)?;
                let _reserved = r.u8().map_err(drop)?;
                let safi = r.u8().map_err(drop)?;
                Capability::Multiprotocol(Family { afi, safi })
            }
            CAP_ROUTE_REFRESH if v.is_empty() => Capability::RouteRefresh,
            CAP_ENHANCED_ROUTE_REFRESH if v.is_empty() => Capability::EnhancedRouteRefresh,
            CAP_EXTENDED_MESSAGE if v.is_empty() => Capability::ExtendedMessage,
            CAP_FOUR_OCTET_AS if v.len() == 4 => Capability::FourOctetAs(r.u32().map_err(drop)?),
            CAP_GRACEFUL_RESTART => {
                let flags_time = r.u16().map_err(drop)?;
                if !r.remaining().is_multiple_of(4) {
                    return Err(());
                }
                let mut families = Vec::new();
                while !r.is_empty() {
                    let afi = r.u16().map_err(drop)?;
                    let safi = r.u8().map_err(drop)?;
                    let f = r.u8().map_err(drop)?;
                    families.push(GrFamily {
                        family: Family { afi, safi },
                        forwarding_preserved: f & 0x80 != 0,
                    });
                }
                Capability::GracefulRestart {
                    restarting: flags_time & 0x8000 != 0,
                    notification: flags_time & 0x4000 != 0,
                    time: flags_time & 0x0fff,
                    families,
                }
            }
            CAP_EXTENDED_NEXT_HOP => {
                if !v.len().is_multiple_of(6) {
                    return Err(());
                }
                let mut out = Vec::new();
                while !r.is_empty() {
                    let afi = r.u16().map_err(drop)?;
                    let safi = r.u16().map_err(drop)?;
                    let nh = r.u16().map_err(drop)?;
                    out.push((
                        Family {
                            afi,
                            safi: safi as u8,
                        },
                        nh,
                    ));
                }
                Capability::ExtendedNextHop(out)
            }
            CAP_ADD_PATH => {
                if !v.len().is_multiple_of(4) {
                    return Err(());
                }
                let mut out = Vec::new();
                while !r.is_empty() {
                    let afi = r.u16().map_err(drop)?;
                    let safi = r.u8().map_err(drop)?;
                    let mode = AddPathMode::from_u8(r.u8().map_err(drop)?).ok_or(())?;
                    out.push((Family { afi, safi }, mode));
                }
                Capability::AddPath(out)
            }
            _ => Capability::Unknown {
                code,
                data: v.to_vec(),
            },
        };
        Ok(cap)
    }

    fn encode_value(&self, out: &mut Vec<u8>) {
        match self {
            Capability::Multiprotocol(f) => {
                out.extend_from_slice(&f.afi.to_be_bytes());
                out.push(0);
                out.push(f.safi);
            }
            Capability::RouteRefresh
            | Capability::EnhancedRouteRefresh
            | Capability::ExtendedMessage => {}
            Capability::FourOctetAs(a) => out.extend_from_slice(&a.to_be_bytes()),
            Capability::GracefulRestart {
                restarting,
                notification,
                time,
                families,
            } => {
                let mut ft = time & 0x0fff;
                if *restarting {
                    ft |= 0x8000;
                }
                if *notification {
                    ft |= 0x4000;
                }
                out.extend_from_slice(&ft.to_be_bytes());
                for f in families {
                    out.extend_from_slice(&f.family.afi.to_be_bytes());
                    out.push(f.family.safi);
                    out.push(if f.forwarding_preserved { 0x80 } else { 0 });
                }
            }
            Capability::ExtendedNextHop(v) => {
                for (f, nh) in v {
                    out.extend_from_slice(&f.afi.to_be_bytes());
                    out.extend_from_slice(&(f.safi as u16).to_be_bytes());
                    out.extend_from_slice(&nh.to_be_bytes());
                }
            }
            Capability::AddPath(v) => {
                for (f, m) in v {
                    out.extend_from_slice(&f.afi.to_be_bytes());
                    out.push(f.safi);
                    out.push(m.to_u8());
                }
            }
            Capability::Unknown { data, .. } => out.extend_from_slice(data),
        }
    }
}

/// The OPEN message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    pub version: u8,
    /// The AS to put in the 2-octet field; with a 4-octet AS this is AS_TRANS.
    pub my_as: u16,
    pub hold_time: u16,
    pub bgp_id: Ipv4Addr,
    pub capabilities: Vec<Capability>,
}

impl Open {
    /// An OPEN for `asn`, with AS_TRANS in the 2-octet field when it does not fit.
    pub fn new(
        asn: u32,
        hold_time: u16,
        bgp_id: Ipv4Addr,
        mut capabilities: Vec<Capability>,
    ) -> Self {
        if !capabilities
            .iter()
            .any(|c| matches!(c, Capability::FourOctetAs(_)))
        {
            capabilities.push(Capability::FourOctetAs(asn));
        }
        let my_as = u16::try_from(asn).unwrap_or(AS_TRANS);
        Open {
            version: 4,
            my_as,
            hold_time,
            bgp_id,
            capabilities,
        }
    }

    /// The speaker's AS: the 4-octet capability when present, else the 2-octet field.
    pub fn asn(&self) -> u32 {
        self.four_octet_as().unwrap_or(self.my_as as u32)
    }

    pub fn four_octet_as(&self) -> Option<u32> {
        self.capabilities.iter().find_map(|c| match c {
            Capability::FourOctetAs(a) => Some(*a),
            _ => None,
        })
    }

    pub fn has(&self, code: u8) -> bool {
        self.capabilities.iter().any(|c| c.code() == code)
    }

    /// Families announced with the multiprotocol capability; IPv4 unicast
    /// when there is none (RFC 4760 §8 implicit default).
    pub fn families(&self) -> Vec<Family> {
        let v: Vec<Family> = self
            .capabilities
            .iter()
            .filter_map(|c| match c {
                Capability::Multiprotocol(f) => Some(*f),
                _ => None,
            })
            .collect();
        if v.is_empty() && !self.has(CAP_MULTIPROTOCOL) {
            vec![Family::IPV4_UNICAST]
        } else {
            v
        }
    }

    pub(crate) fn decode(body: &[u8]) -> Result<Open, Notification> {
        let hdr_err = || Notification::new(notification::MESSAGE_HEADER_ERROR, 2, vec![]);
        let mut r = Reader::new(body);
        let version = r.u8().map_err(|_| hdr_err())?;
        if version != 4 {
            return Err(Notification::new(
                notification::OPEN_MESSAGE_ERROR,
                notification::open::UNSUPPORTED_VERSION,
                4u16.to_be_bytes().to_vec(),
            ));
        }
        let my_as = r.u16().map_err(|_| hdr_err())?;
        let hold_time = r.u16().map_err(|_| hdr_err())?;
        let bgp_id = r.ipv4().map_err(|_| hdr_err())?;
        let mut opt_len = r.u8().map_err(|_| hdr_err())? as usize;
        let mut extended = false;
        // RFC 9072: non-extended length 255 followed by type 255 marks extended params.
        if opt_len == 255 && r.rest().first() == Some(&255) {
            let _ = r.u8();
            opt_len = r.u16().map_err(|_| hdr_err())? as usize;
            extended = true;
        }
        let malformed = || Notification::new(notification::OPEN_MESSAGE_ERROR, 0, vec![]);
        if r.remaining() != opt_len {
            return Err(malformed());
        }
        let mut capabilities = Vec::new();
        while !r.is_empty() {
            let ptype = r.u8().map_err(|_| malformed())?;
            let plen = if extended {
                r.u16().map_err(|_| malformed())? as usize
            } else {
                r.u8().map_err(|_| malformed())? as usize
            };
            let pval = r.take(plen).map_err(|_| malformed())?;
            if ptype != 2 {
                return Err(Notification::new(
                    notification::OPEN_MESSAGE_ERROR,
                    notification::open::UNSUPPORTED_OPTIONAL_PARAMETER,
                    vec![],
                ));
            }
            let mut c = Reader::new(pval);
            while !c.is_empty() {
                let code = c.u8().map_err(|_| malformed())?;
                let len = c.u8().map_err(|_| malformed())? as usize;
                let val = c.take(len).map_err(|_| malformed())?;
                // A capability we know but cannot parse is kept as unknown bytes:
                // RFC 5492 lets us ignore it rather than refuse the session.
                let cap = Capability::decode(code, val).unwrap_or(Capability::Unknown {
                    code,
                    data: val.to_vec(),
                });
                capabilities.push(cap);
            }
        }
        Ok(Open {
            version,
            my_as,
            hold_time,
            bgp_id,
            capabilities,
        })
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) {
        out.put_u8(self.version);
        out.put_u16(self.my_as);
        out.put_u16(self.hold_time);
        out.put_slice(&self.bgp_id.octets());
        // One optional parameter per capability, the form every implementation accepts.
        let mut params = Vec::new();
        for c in &self.capabilities {
            let mut v = Vec::new();
            c.encode_value(&mut v);
            params.push(2u8);
            params.push((v.len() + 2) as u8);
            params.push(c.code());
            params.push(v.len() as u8);
            params.extend_from_slice(&v);
        }
        out.put_u8(params.len() as u8);
        out.put_slice(&params);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Ctx, Message};

    fn full_open() -> Open {
        Open::new(
            4_200_000_001,
            90,
            Ipv4Addr::new(192, 0, 2, 1),
            vec![
                Capability::Multiprotocol(Family::IPV4_UNICAST),
                Capability::Multiprotocol(Family::IPV6_UNICAST),
                Capability::RouteRefresh,
                Capability::EnhancedRouteRefresh,
                Capability::GracefulRestart {
                    restarting: false,
                    notification: true,
                    time: 120,
                    families: vec![GrFamily {
                        family: Family::IPV4_UNICAST,
                        forwarding_preserved: true,
                    }],
                },
                Capability::ExtendedNextHop(vec![(Family::IPV4_UNICAST, 2)]),
                Capability::AddPath(vec![(Family::IPV4_UNICAST, AddPathMode::Both)]),
                Capability::ExtendedMessage,
                Capability::Unknown {
                    code: 73,
                    data: b"\x04node".to_vec(),
                },
            ],
        )
    }

    #[test]
    fn open_round_trip_with_every_capability() {
        let o = full_open();
        assert_eq!(o.my_as, AS_TRANS);
        assert_eq!(o.asn(), 4_200_000_001);
        let ctx = Ctx::modern();
        let b = Message::Open(o.clone()).to_bytes(&ctx);
        assert_eq!(Message::decode(&b, &ctx).unwrap(), Message::Open(o));
    }

    #[test]
    fn two_octet_as_open_without_capability() {
        let o = Open {
            version: 4,
            my_as: 65001,
            hold_time: 180,
            bgp_id: Ipv4Addr::new(1, 1, 1, 1),
            capabilities: vec![],
        };
        assert_eq!(o.asn(), 65001);
        assert_eq!(o.families(), vec![Family::IPV4_UNICAST]);
    }

    #[test]
    fn bad_version_and_truncation() {
        let ctx = Ctx::modern();
        let mut b = Message::Open(full_open()).to_bytes(&ctx);
        b[19] = 3;
        let n = Message::decode(&b, &ctx).unwrap_err();
        assert_eq!((n.code, n.subcode), (2, 1));
        let b = Message::Open(full_open()).to_bytes(&ctx);
        // Every truncation of the body must fail cleanly, never panic.
        for cut in 29..b.len() {
            let mut t = b[..cut].to_vec();
            t[16..18].copy_from_slice(&(cut as u16).to_be_bytes());
            assert!(Message::decode(&t, &ctx).is_err(), "cut {cut}");
        }
    }
}
