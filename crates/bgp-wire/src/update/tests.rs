use super::*;
use crate::attr::{AsPath, LargeCommunity, Origin, RareAttrs, RawAttr};
use crate::{Message, Repair};

fn v4(s: &str) -> Nlri {
    Nlri::new(s.parse().unwrap())
}

fn full_attrs() -> PathAttrs {
    PathAttrs {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath::from_sequence(vec![65001, 4_200_000_001])),
        next_hop: Some("192.0.2.1".parse().unwrap()),
        med: Some(10),
        local_pref: Some(200),
        communities: thin_vec::thin_vec![(65535 << 16) | 120],
        rare: Some(Box::new(RareAttrs {
            atomic_aggregate: true,
            aggregator: Some((4_200_000_001, "192.0.2.9".parse().unwrap())),
            originator_id: Some("192.0.2.7".parse().unwrap()),
            cluster_list: thin_vec::thin_vec!["192.0.2.8".parse().unwrap()],
            ext_communities: thin_vec::thin_vec![[0, 2, 0xfd, 0xe9, 0, 0, 0, 1]],
            large_communities: thin_vec::thin_vec![LargeCommunity {
                global: 65535,
                local1: 300,
                local2: 100,
            }],
            unknown: thin_vec::thin_vec![RawAttr {
                flags: 0xe0,
                code: 99,
                value: vec![1, 2, 3],
            }],
            route_link_local: None,
            route_path_id: 0,
        })),
        route_hop: None,
        as_path_len_hint: 0,
    }
}

fn round_trip(u: &Update, ctx: &Ctx) -> Update {
    let b = Message::Update(u.clone()).to_bytes(ctx);
    match Message::decode(&b, ctx).unwrap() {
        Message::Update(d) => d,
        m => panic!("{m:?}"),
    }
}

#[test]
fn ipv4_update_round_trip_every_attribute() {
    let u = Update {
        withdrawn: vec![v4("198.18.1.0/24")],
        attrs: full_attrs(),
        nlri: vec![v4("10.240.26.192/26"), v4("0.0.0.0/0"), v4("192.0.2.2/32")],
        ..Default::default()
    };
    assert_eq!(round_trip(&u, &Ctx::modern()), u);
    // A RIB's own next hop in the set is never on the wire.
    let mut with_hop = u.clone();
    with_hop
        .attrs
        .set_route_next_hop(Some(NextHop::V4("198.18.0.9".parse().unwrap())));
    assert_eq!(
        Message::Update(with_hop).to_bytes(&Ctx::modern()),
        Message::Update(u).to_bytes(&Ctx::modern())
    );
}

#[test]
fn two_octet_session_uses_as_trans_and_as4_path() {
    let ctx = Ctx::default();
    let u = Update {
        attrs: full_attrs(),
        nlri: vec![v4("10.0.0.0/8")],
        ..Default::default()
    };
    let b = Message::Update(u.clone()).to_bytes(&ctx);
    // AS_TRANS is on the wire...
    assert!(b.windows(2).any(|w| w == 23456u16.to_be_bytes()));
    // ...and the real path comes back through AS4_PATH / AS4_AGGREGATOR.
    assert_eq!(round_trip(&u, &ctx), u);
}

#[test]
fn ipv6_mp_reach_with_link_local_next_hop() {
    let mut attrs = full_attrs();
    attrs.next_hop = None;
    let u = Update {
        attrs,
        mp_reach: Some(MpReach {
            family: Family::IPV6_UNICAST,
            next_hop: NextHop::V6 {
                global: "2001:db8::1".parse().unwrap(),
                link_local: Some("fe80::1".parse().unwrap()),
            },
            nlri: vec![
                Nlri::new("2001:db8:1::/48".parse().unwrap()),
                Nlri::new("::/0".parse().unwrap()),
            ],
        }),
        ..Default::default()
    };
    assert_eq!(round_trip(&u, &Ctx::modern()), u);
    let ann: Vec<_> = u.announcements().collect();
    assert_eq!(ann.len(), 2);
    assert_eq!(
        ann[0].1.addr(),
        "2001:db8::1".parse::<std::net::IpAddr>().unwrap()
    );
}

#[test]
fn extended_next_hop_ipv4_nlri_via_ipv6() {
    let mut attrs = full_attrs();
    attrs.next_hop = None;
    let u = Update {
        attrs,
        mp_reach: Some(MpReach {
            family: Family::IPV4_UNICAST,
            next_hop: NextHop::V6 {
                global: "::".parse().unwrap(),
                link_local: Some("fe80::2".parse().unwrap()),
            },
            nlri: vec![v4("192.0.2.2/32")],
        }),
        ..Default::default()
    };
    let d = round_trip(&u, &Ctx::modern());
    assert_eq!(d, u);
    assert_eq!(
        d.announcements().next().unwrap().1.addr(),
        "fe80::2".parse::<std::net::IpAddr>().unwrap()
    );
}

#[test]
fn add_path_round_trip() {
    let mut ctx = Ctx::modern();
    ctx.add_path_rx.insert(Family::IPV4_UNICAST, true);
    ctx.add_path_tx.insert(Family::IPV4_UNICAST, true);
    let u = Update {
        attrs: full_attrs(),
        nlri: vec![Nlri {
            prefix: "10.0.0.0/8".parse().unwrap(),
            path_id: Some(7),
        }],
        withdrawn: vec![Nlri {
            prefix: "10.1.0.0/16".parse().unwrap(),
            path_id: Some(3),
        }],
        ..Default::default()
    };
    assert_eq!(round_trip(&u, &ctx), u);
}

#[test]
fn mp_unreach_and_end_of_rib() {
    let u = Update::end_of_rib(Family::IPV6_UNICAST);
    let d = round_trip(&u, &Ctx::modern());
    assert_eq!(d.is_end_of_rib(), Some(Family::IPV6_UNICAST));
    assert_eq!(
        round_trip(&Update::end_of_rib(Family::IPV4_UNICAST), &Ctx::modern()).is_end_of_rib(),
        Some(Family::IPV4_UNICAST)
    );
    let w = Update {
        mp_unreach: Some(MpUnreach {
            family: Family::IPV6_UNICAST,
            nlri: vec![Nlri::new("2001:db8::/32".parse().unwrap())],
        }),
        ..Default::default()
    };
    let d = round_trip(&w, &Ctx::modern());
    assert_eq!(d.withdrawals().count(), 1);
    assert_eq!(d.is_end_of_rib(), None);
}

// ---- RFC 7606 -------------------------------------------------------------

/// Build a raw UPDATE from an attribute section and NLRI bytes.
fn raw_update(attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
    let mut b = vec![0xff; 16];
    let len = 19 + 2 + 2 + attrs.len() + nlri.len();
    b.extend_from_slice(&(len as u16).to_be_bytes());
    b.push(2);
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    b.extend_from_slice(attrs);
    b.extend_from_slice(nlri);
    b
}

const ORIGIN_IGP: [u8; 4] = [0x40, 1, 1, 0];
const AS_PATH_65001: [u8; 9] = [0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xe9];
const NH: [u8; 7] = [0x40, 3, 4, 192, 0, 2, 1];
const NLRI_10_8: [u8; 2] = [8, 10];

fn decode_update(b: &[u8]) -> Result<Update, Notification> {
    Message::decode(b, &Ctx::modern()).map(|m| match m {
        Message::Update(u) => u,
        m => panic!("{m:?}"),
    })
}

fn attrs(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[test]
fn clean_update_decodes() {
    let u = decode_update(&raw_update(
        &attrs(&[&ORIGIN_IGP, &AS_PATH_65001, &NH]),
        &NLRI_10_8,
    ))
    .unwrap();
    assert_eq!(u.repair, Repair::None);
    assert_eq!(u.announcements().count(), 1);
}

#[test]
fn bad_origin_value_is_treat_as_withdraw() {
    let u = decode_update(&raw_update(
        &attrs(&[&[0x40, 1, 1, 7], &AS_PATH_65001, &NH]),
        &NLRI_10_8,
    ))
    .unwrap();
    assert!(u.repair.is_withdraw(), "{:?}", u.repair);
    assert_eq!(u.announcements().count(), 0);
    assert_eq!(u.withdrawals().count(), 1);
}

#[test]
fn attribute_length_overrun_is_treat_as_withdraw() {
    // NEXT_HOP claims 40 octets: runs past the attribute section.
    let u = decode_update(&raw_update(
        &attrs(&[&ORIGIN_IGP, &AS_PATH_65001, &[0x40, 3, 40, 192, 0, 2, 1]]),
        &NLRI_10_8,
    ))
    .unwrap();
    assert!(u.repair.is_withdraw());
    assert_eq!(
        u.withdrawals()
            .map(|n| n.prefix.to_string())
            .collect::<Vec<_>>(),
        vec!["10.0.0.0/8"]
    );
}

#[test]
fn wrong_length_next_hop_and_med_are_treat_as_withdraw() {
    let u = decode_update(&raw_update(
        &attrs(&[&ORIGIN_IGP, &AS_PATH_65001, &[0x40, 3, 3, 192, 0, 2]]),
        &NLRI_10_8,
    ))
    .unwrap();
    assert!(u.repair.is_withdraw());
    let u = decode_update(&raw_update(
        &attrs(&[&ORIGIN_IGP, &AS_PATH_65001, &NH, &[0x80, 4, 2, 0, 1]]),
        &NLRI_10_8,
    ))
    .unwrap();
    assert!(u.repair.is_withdraw());
}

#[test]
fn wrong_flags_are_treat_as_withdraw() {
    // MED sent as well-known transitive.
    let u = decode_update(&raw_update(
        &attrs(&[&ORIGIN_IGP, &AS_PATH_65001, &NH, &[0x40, 4, 4, 0, 0, 0, 1]]),
        &NLRI_10_8,
    ))
    .unwrap();
    assert!(u.repair.is_withdraw());
}

#[test]
fn malformed_aggregator_is_attribute_discard() {
    let u = decode_update(&raw_update(
        &attrs(&[&ORIGIN_IGP, &AS_PATH_65001, &NH, &[0xc0, 7, 3, 1, 2, 3]]),
        &NLRI_10_8,
    ))
    .unwrap();
    assert_eq!(u.repair, Repair::AttributeDiscard(vec![7]));
    assert_eq!(u.attrs.aggregator(), None);
    assert!(u.attrs.rare.is_none(), "nothing rare left: none kept");
    assert_eq!(u.announcements().count(), 1);
}

#[test]
fn malformed_as_path_and_missing_mandatory() {
    // Segment type 9.
    let u = decode_update(&raw_update(
        &attrs(&[&ORIGIN_IGP, &[0x40, 2, 6, 9, 1, 0, 0, 0, 1], &NH]),
        &NLRI_10_8,
    ))
    .unwrap();
    assert!(u.repair.is_withdraw());
    // Missing AS_PATH.
    let u = decode_update(&raw_update(&attrs(&[&ORIGIN_IGP, &NH]), &NLRI_10_8)).unwrap();
    assert_eq!(u.repair, Repair::TreatAsWithdraw("missing AS_PATH".into()));
    // Missing everything but a withdrawal is fine: not an announcement.
    let mut b = raw_update(&[], &[]);
    b[19..21].copy_from_slice(&[0, 2]);
    b.splice(21..21, NLRI_10_8);
    let len = b.len() as u16;
    b[16..18].copy_from_slice(&len.to_be_bytes());
    let u = decode_update(&b).unwrap();
    assert_eq!(u.repair, Repair::None);
    assert_eq!(u.withdrawals().count(), 1);
}

#[test]
fn duplicate_attribute_keeps_first_duplicate_mp_reach_resets() {
    let u = decode_update(&raw_update(
        &attrs(&[&ORIGIN_IGP, &[0x40, 1, 1, 2], &AS_PATH_65001, &NH]),
        &NLRI_10_8,
    ))
    .unwrap();
    assert_eq!(u.attrs.origin, Some(Origin::Igp));
    let mp = [0x80, 14, 5, 0, 2, 1, 0, 0];
    let n = decode_update(&raw_update(
        &attrs(&[&ORIGIN_IGP, &AS_PATH_65001, &mp, &mp]),
        &[],
    ))
    .unwrap_err();
    assert_eq!((n.code, n.subcode), (3, 1));
}

#[test]
fn bad_nlri_length_resets_session() {
    let n = decode_update(&raw_update(
        &attrs(&[&ORIGIN_IGP, &AS_PATH_65001, &NH]),
        &[33, 10, 0, 0, 0, 0],
    ))
    .unwrap_err();
    assert_eq!((n.code, n.subcode), (3, 10));
    let n = decode_update(&raw_update(
        &attrs(&[&ORIGIN_IGP, &AS_PATH_65001, &NH]),
        &[24, 10],
    ))
    .unwrap_err();
    assert_eq!((n.code, n.subcode), (3, 10));
}

#[test]
fn unknown_attributes() {
    // Optional transitive 99: kept, with the partial bit. Optional non-transitive 98: dropped.
    let u = decode_update(&raw_update(
        &attrs(&[
            &ORIGIN_IGP,
            &AS_PATH_65001,
            &NH,
            &[0xc0, 99, 1, 5],
            &[0x80, 98, 1, 5],
        ]),
        &NLRI_10_8,
    ))
    .unwrap();
    assert_eq!(
        u.attrs.unknown(),
        vec![RawAttr {
            flags: 0xe0,
            code: 99,
            value: vec![5]
        }]
    );
    // Unknown well-known: session reset with Unrecognized Well-known Attribute.
    let n = decode_update(&raw_update(
        &attrs(&[&ORIGIN_IGP, &AS_PATH_65001, &NH, &[0x40, 97, 0]]),
        &NLRI_10_8,
    ))
    .unwrap_err();
    assert_eq!((n.code, n.subcode), (3, 2));
}

#[test]
fn inconsistent_lengths_reset_session() {
    let mut b = raw_update(&attrs(&[&ORIGIN_IGP, &AS_PATH_65001, &NH]), &NLRI_10_8);
    b[21..23].copy_from_slice(&500u16.to_be_bytes());
    let n = decode_update(&b).unwrap_err();
    assert_eq!((n.code, n.subcode), (3, 1));
}

#[test]
fn pack_announce_splits_to_fit_and_decodes_back() {
    let ctx = Ctx::modern();
    let nlri: Vec<Nlri> = (0..5000u32)
        .map(|i| Nlri::new(format!("10.{}.{}.0/24", i / 256, i % 256).parse().unwrap()))
        .collect();
    let mut out = BytesMut::new();
    let n = pack_announce(
        &ctx,
        &full_attrs(),
        Family::IPV4_UNICAST,
        NextHop::V4("192.0.2.1".parse().unwrap()),
        &nlri,
        &mut out,
    );
    assert!(n > 1);
    let mut got = Vec::new();
    let mut buf = &out[..];
    while !buf.is_empty() {
        let len = crate::frame_len(buf, crate::MAX_LEN).unwrap().unwrap();
        assert!(len <= crate::MAX_LEN);
        match Message::decode(&buf[..len], &ctx).unwrap() {
            Message::Update(u) => got.extend(u.nlri),
            m => panic!("{m:?}"),
        }
        buf = &buf[len..];
    }
    assert_eq!(got, nlri);
    let mut out = BytesMut::new();
    let v6: Vec<Nlri> = (0..3000u32)
        .map(|i| Nlri::new(format!("2001:db8:{i:x}::/48").parse().unwrap()))
        .collect();
    pack_withdraw(&ctx, Family::IPV6_UNICAST, &v6, &mut out);
    let mut count = 0;
    let mut buf = &out[..];
    while !buf.is_empty() {
        let len = crate::frame_len(buf, crate::MAX_LEN).unwrap().unwrap();
        if let Message::Update(u) = Message::decode(&buf[..len], &ctx).unwrap() {
            count += u.withdrawals().count();
        }
        buf = &buf[len..];
    }
    assert_eq!(count, 3000);
}

/// Deterministic mutation test: thousands of corrupted UPDATEs, none may panic.
#[test]
fn mutated_updates_never_panic() {
    let u = Update {
        attrs: full_attrs(),
        nlri: vec![v4("10.0.0.0/8"), v4("192.0.2.0/24")],
        withdrawn: vec![v4("198.18.0.0/15")],
        ..Default::default()
    };
    let base = Message::Update(u).to_bytes(&Ctx::modern()).to_vec();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for ctx in [Ctx::modern(), Ctx::default()] {
        for _ in 0..20_000 {
            let mut b = base.clone();
            for _ in 0..(next() % 4 + 1) {
                let i = 19 + (next() as usize % (b.len() - 19));
                b[i] = next() as u8;
            }
            let _ = Message::decode(&b, &ctx);
        }
    }
}

/// The capacity `decode_prefixes` takes is the number of prefixes it
/// decodes, with and without ADD-PATH ids; a truncated run is counted
/// without reading past its end and still refused by the decoding.
#[test]
fn prefixes_counted_before_decoding() {
    let v4_family = Family::IPV4_UNICAST;
    // 0.0.0.0/0, 10.0.0.0/8, 192.0.2.0/24, 198.18.0.1/32, 198.18.0.0/15
    let run = [0, 8, 10, 24, 192, 0, 2, 32, 198, 18, 0, 1, 15, 198, 18];
    let got = decode_prefixes(&run, v4_family, false).expect("well formed");
    assert_eq!(count_prefixes(&run, false), 5);
    assert_eq!(got.len(), 5);
    assert_eq!(got.capacity(), 5);
    assert_eq!(got[3], v4("198.18.0.1/32"));
    // ADD-PATH: a path id in front of each.
    let add = [0, 0, 0, 7, 24, 192, 0, 2, 0, 0, 0, 9, 8, 10];
    let got = decode_prefixes(&add, v4_family, true).expect("well formed");
    assert_eq!(count_prefixes(&add, true), 2);
    assert_eq!(
        got.iter().map(|n| n.path_id).collect::<Vec<_>>(),
        [Some(7), Some(9)]
    );
    // Truncated: a /24 with one byte of its three.
    let cut = [8, 10, 24, 192];
    assert_eq!(count_prefixes(&cut, false), 2);
    assert!(decode_prefixes(&cut, v4_family, false).is_none());
    assert_eq!(count_prefixes(&[], false), 0);
}
