//! Message header, framing and dispatch (RFC 4271 §4.1), KEEPALIVE (§4.4),
//! ROUTE-REFRESH (RFC 2918, RFC 7313).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                           Marker (16 x 0xff)                  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          Length               |      Type     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use bytes::{BufMut, BytesMut};

use crate::notification::{self, Notification};
use crate::open::Open;
use crate::update::Update;
use crate::{Ctx, Family, Reader};

pub const HEADER_LEN: usize = 19;
/// Largest message without RFC 8654.
pub const MAX_LEN: usize = 4096;
/// Largest message with RFC 8654 extended messages.
pub const MAX_LEN_EXTENDED: usize = 65535;

pub const TYPE_OPEN: u8 = 1;
pub const TYPE_UPDATE: u8 = 2;
pub const TYPE_NOTIFICATION: u8 = 3;
pub const TYPE_KEEPALIVE: u8 = 4;
pub const TYPE_ROUTE_REFRESH: u8 = 5;

/// One BGP message. UPDATE dominates traffic, so it is held inline rather than boxed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)]
pub enum Message {
    Open(Open),
    Update(Update),
    Notification(Notification),
    Keepalive,
    RouteRefresh(RouteRefresh),
}

/// ROUTE-REFRESH (RFC 2918); `subtype` is RFC 7313's demarcation
/// (0 normal request, 1 BoRR, 2 EoRR).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteRefresh {
    pub family: Family,
    pub subtype: u8,
}

/// Length of the message at the front of `buf`, once its header is there.
///
/// `Ok(None)`: not enough bytes for a header yet. `Err`: the header is bad
/// (connection-not-synchronized marker or bad length), reset the session.
pub fn frame_len(buf: &[u8], max_len: usize) -> Result<Option<usize>, Notification> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    if buf[..16].iter().any(|b| *b != 0xff) {
        return Err(Notification::new(
            notification::MESSAGE_HEADER_ERROR,
            1,
            vec![],
        ));
    }
    let len = u16::from_be_bytes([buf[16], buf[17]]) as usize;
    if !(HEADER_LEN..=max_len).contains(&len) {
        return Err(Notification::new(
            notification::MESSAGE_HEADER_ERROR,
            2,
            (len as u16).to_be_bytes().to_vec(),
        ));
    }
    Ok(Some(len))
}

impl Message {
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Open(_) => "OPEN",
            Message::Update(_) => "UPDATE",
            Message::Notification(_) => "NOTIFICATION",
            Message::Keepalive => "KEEPALIVE",
            Message::RouteRefresh(_) => "ROUTE-REFRESH",
        }
    }

    /// Decode one whole message (header included). An error is the
    /// NOTIFICATION to send before resetting the session.
    pub fn decode(buf: &[u8], ctx: &Ctx) -> Result<Message, Notification> {
        let len = match frame_len(buf, ctx.max_len())? {
            Some(l) if l == buf.len() => l,
            _ => {
                return Err(Notification::new(
                    notification::MESSAGE_HEADER_ERROR,
                    2,
                    (buf.len() as u16).to_be_bytes().to_vec(),
                ))
            }
        };
        let ty = buf[18];
        let body = &buf[HEADER_LEN..len];
        let bad_len = || {
            Notification::new(
                notification::MESSAGE_HEADER_ERROR,
                2,
                (len as u16).to_be_bytes().to_vec(),
            )
        };
        match ty {
            TYPE_OPEN => {
                if len < 29 {
                    return Err(bad_len());
                }
                Open::decode(body).map(Message::Open)
            }
            TYPE_UPDATE => {
                if len < 23 {
                    return Err(bad_len());
                }
                Update::decode(body, ctx).map(Message::Update)
            }
            TYPE_NOTIFICATION => {
                if len < 21 {
                    return Err(bad_len());
                }
                Ok(Message::Notification(Notification::new(
                    body[0],
                    body[1],
                    body[2..].to_vec(),
                )))
            }
            TYPE_KEEPALIVE => {
                if len != HEADER_LEN {
                    return Err(bad_len());
                }
                Ok(Message::Keepalive)
            }
            TYPE_ROUTE_REFRESH => {
                if len != 23 {
                    // RFC 7313 §5: ROUTE-REFRESH Message Error, Invalid Message Length.
                    return Err(Notification::new(
                        notification::ROUTE_REFRESH_ERROR,
                        1,
                        body.to_vec(),
                    ));
                }
                let mut r = Reader::new(body);
                let afi = r.u16().map_err(|_| bad_len())?;
                let subtype = r.u8().map_err(|_| bad_len())?;
                let safi = r.u8().map_err(|_| bad_len())?;
                Ok(Message::RouteRefresh(RouteRefresh {
                    family: Family { afi, safi },
                    subtype,
                }))
            }
            other => Err(Notification::new(
                notification::MESSAGE_HEADER_ERROR,
                3,
                vec![other],
            )),
        }
    }

    /// Append the encoded message to `out`.
    ///
    /// An UPDATE that would exceed the negotiated maximum is the caller's
    /// concern: [`Update::encode_split`] packs NLRI into messages that fit.
    pub fn encode(&self, ctx: &Ctx, out: &mut BytesMut) {
        let start = out.len();
        out.put_slice(&[0xff; 16]);
        out.put_u16(0); // patched below
        match self {
            Message::Open(o) => {
                out.put_u8(TYPE_OPEN);
                o.encode(out);
            }
            Message::Update(u) => {
                out.put_u8(TYPE_UPDATE);
                u.encode_body(ctx, out);
            }
            Message::Notification(n) => {
                out.put_u8(TYPE_NOTIFICATION);
                out.put_u8(n.code);
                out.put_u8(n.subcode);
                out.put_slice(&n.data);
            }
            Message::Keepalive => out.put_u8(TYPE_KEEPALIVE),
            Message::RouteRefresh(rr) => {
                out.put_u8(TYPE_ROUTE_REFRESH);
                out.put_u16(rr.family.afi);
                out.put_u8(rr.subtype);
                out.put_u8(rr.family.safi);
            }
        }
        let len = (out.len() - start) as u16;
        out[start + 16..start + 18].copy_from_slice(&len.to_be_bytes());
    }

    /// Encode into a fresh buffer.
    pub fn to_bytes(&self, ctx: &Ctx) -> BytesMut {
        let mut b = BytesMut::with_capacity(64);
        self.encode(ctx, &mut b);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_round_trip() {
        let ctx = Ctx::modern();
        let b = Message::Keepalive.to_bytes(&ctx);
        assert_eq!(b.len(), 19);
        assert_eq!(Message::decode(&b, &ctx).unwrap(), Message::Keepalive);
    }

    #[test]
    fn bad_marker_is_connection_not_synchronized() {
        let ctx = Ctx::modern();
        let mut b = Message::Keepalive.to_bytes(&ctx);
        b[3] = 0;
        let n = frame_len(&b, MAX_LEN).unwrap_err();
        assert_eq!((n.code, n.subcode), (1, 1));
    }

    #[test]
    fn bad_length_and_type() {
        let ctx = Ctx::modern();
        let mut b = Message::Keepalive.to_bytes(&ctx);
        b[17] = 18;
        assert_eq!(frame_len(&b, MAX_LEN).unwrap_err().subcode, 2);
        let mut b = Message::Keepalive.to_bytes(&ctx);
        b[18] = 9;
        let n = Message::decode(&b, &ctx).unwrap_err();
        assert_eq!((n.code, n.subcode, n.data.as_slice()), (1, 3, &[9u8][..]));
    }

    #[test]
    fn route_refresh_round_trip() {
        let ctx = Ctx::modern();
        let m = Message::RouteRefresh(RouteRefresh {
            family: Family::IPV6_UNICAST,
            subtype: 1,
        });
        let b = m.to_bytes(&ctx);
        assert_eq!(Message::decode(&b, &ctx).unwrap(), m);
    }

    #[test]
    fn truncated_input_never_panics() {
        let ctx = Ctx::modern();
        for n in 0..19 {
            let b = vec![0xffu8; n];
            let _ = frame_len(&b, MAX_LEN);
            let _ = Message::decode(&b, &ctx);
        }
    }
}
