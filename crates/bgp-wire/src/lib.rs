//! BGP-4 wire codec: every message of RFC 4271 plus the extensions kbgp speaks.
//!
//! No I/O and no async: [`Message::decode`] takes one whole framed message
//! (see [`frame_len`]) and a [`Ctx`] describing what the session negotiated;
//! [`Message::encode`] appends a message to a `BytesMut`.
//!
//! Malformed UPDATEs are classified per RFC 7606 (see [`update`]): the
//! decoder never panics, it returns either a usable [`Update`] carrying a
//! [`update::Repair`] verdict, or a [`Notification`] to send before the
//! session is reset.
//!
//! Where things live:
//! - header, framing, KEEPALIVE, dispatch: [`message`]
//! - OPEN and capabilities: [`open`]
//! - UPDATE, NLRI, MP_REACH/MP_UNREACH: [`update`]
//! - path attributes: [`attr`]
//! - NOTIFICATION codes: [`notification`]
//! - ROUTE-REFRESH: [`message::RouteRefresh`]

pub mod attr;
pub mod message;
pub mod notification;
pub mod open;
pub mod update;

pub use attr::{AsPath, LargeCommunity, Origin, PathAttrs, RareAttrs, SegmentKind, ThinVec};
pub use message::{frame_len, Message, RouteRefresh, HEADER_LEN, MAX_LEN, MAX_LEN_EXTENDED};
pub use notification::Notification;
pub use open::{AddPathMode, Capability, Open};
pub use thin_vec::thin_vec;
pub use update::{MpReach, MpUnreach, Nlri, Repair, Update};

use std::collections::BTreeMap;

/// Address family identifier (RFC 4760).
pub const AFI_IPV4: u16 = 1;
pub const AFI_IPV6: u16 = 2;
/// Subsequent address family identifier for unicast.
pub const SAFI_UNICAST: u8 = 1;

/// AS_TRANS (RFC 6793): the 2-octet stand-in for a 4-octet AS.
pub const AS_TRANS: u16 = 23456;

/// An (AFI, SAFI) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct Family {
    pub afi: u16,
    pub safi: u8,
}

impl Family {
    pub const IPV4_UNICAST: Family = Family {
        afi: AFI_IPV4,
        safi: SAFI_UNICAST,
    };
    pub const IPV6_UNICAST: Family = Family {
        afi: AFI_IPV6,
        safi: SAFI_UNICAST,
    };

    pub fn name(&self) -> String {
        match (self.afi, self.safi) {
            (AFI_IPV4, SAFI_UNICAST) => "ipv4-unicast".into(),
            (AFI_IPV6, SAFI_UNICAST) => "ipv6-unicast".into(),
            (a, s) => format!("afi{a}-safi{s}"),
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// What the session negotiated, needed to decode and encode UPDATEs.
#[derive(Debug, Clone, Default)]
pub struct Ctx {
    /// Both sides advertised the 4-octet AS capability (RFC 6793).
    pub four_octet_as: bool,
    /// Families for which received NLRI carry a path identifier (RFC 7911).
    pub add_path_rx: BTreeMap<Family, bool>,
    /// Families for which sent NLRI carry a path identifier.
    pub add_path_tx: BTreeMap<Family, bool>,
    /// Both sides advertised extended messages (RFC 8654).
    pub extended_messages: bool,
}

impl Ctx {
    /// A context for a session where both sides speak 4-octet AS, the usual case.
    pub fn modern() -> Self {
        Ctx {
            four_octet_as: true,
            ..Default::default()
        }
    }

    pub fn add_path_rx(&self, f: Family) -> bool {
        self.add_path_rx.get(&f).copied().unwrap_or(false)
    }

    pub fn add_path_tx(&self, f: Family) -> bool {
        self.add_path_tx.get(&f).copied().unwrap_or(false)
    }

    pub fn max_len(&self) -> usize {
        if self.extended_messages {
            MAX_LEN_EXTENDED
        } else {
            MAX_LEN
        }
    }
}

/// A bounds-checked reader over a byte slice. Every accessor fails instead of panicking.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Short;

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.buf
    }
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], Short> {
        if self.buf.len() < n {
            return Err(Short);
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, Short> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn u16(&mut self) -> Result<u16, Short> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    pub(crate) fn u32(&mut self) -> Result<u32, Short> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(crate) fn ipv4(&mut self) -> Result<std::net::Ipv4Addr, Short> {
        Ok(std::net::Ipv4Addr::from(self.u32()?))
    }
    pub(crate) fn ipv6(&mut self) -> Result<std::net::Ipv6Addr, Short> {
        let b = self.take(16)?;
        let mut a = [0u8; 16];
        a.copy_from_slice(b);
        Ok(std::net::Ipv6Addr::from(a))
    }
}
