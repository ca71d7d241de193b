//! Wire vectors captured from independent implementations (see
//! `vectors/capture.sh`): GoBGP 3.10 and BIRD 2.0.12 sending to a plain
//! listener. Each message must decode to what the sender was configured to
//! send, and re-encode to a message that decodes the same.

use bgp_wire::open::{Capability, CAP_FOUR_OCTET_AS};
use bgp_wire::update::NextHop;
use bgp_wire::{Ctx, Family, Message, Update};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn messages(file: &str) -> Vec<(Vec<u8>, Message)> {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/vectors")
            .join(file),
    )
    .unwrap();
    let ctx = Ctx::modern();
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let b = hex(l);
            let m = Message::decode(&b, &ctx).unwrap_or_else(|e| panic!("{file}: {l}: {e}"));
            // Re-encoding gives a message that decodes to the same thing.
            let again = Message::decode(&m.to_bytes(&ctx), &ctx).unwrap();
            assert_eq!(again, m, "{file}: re-encoding changed {l}");
            (b, m)
        })
        .collect()
}

fn update(m: &Message) -> &Update {
    match m {
        Message::Update(u) => u,
        other => panic!("not an UPDATE: {other:?}"),
    }
}

#[test]
fn gobgp_open_and_updates() {
    let v = messages("gobgp.hex");
    let Message::Open(o) = &v[0].1 else { panic!() };
    assert_eq!(o.asn(), 65003);
    assert_eq!(o.bgp_id.to_string(), "192.0.2.1");
    assert!(o.has(CAP_FOUR_OCTET_AS));
    assert!(o.families().contains(&Family::IPV6_UNICAST));
    assert_eq!(v[1].1, Message::Keepalive);

    let u4 = update(&v[2].1);
    assert_eq!(
        u4.nlri
            .iter()
            .map(|n| n.prefix.to_string())
            .collect::<Vec<_>>(),
        vec!["198.18.8.0/24"]
    );
    assert_eq!(u4.attrs.as_path.as_ref().unwrap().to_string(), "65003");
    assert_eq!(u4.attrs.next_hop.unwrap().to_string(), "192.0.2.1");
    assert_eq!(u4.attrs.med, Some(10));
    assert_eq!(
        u4.attrs.aggregator(),
        Some((4_200_000_001, "192.0.2.9".parse().unwrap()))
    );
    assert_eq!(u4.attrs.communities, vec![(65003 << 16) | 8, 0xFFFF_FF01]);
    assert_eq!(u4.attrs.large_communities()[0].to_string(), "65003:8:8");

    let u6 = update(&v[3].1);
    let mp = u6.mp_reach.as_ref().unwrap();
    assert_eq!(mp.family, Family::IPV6_UNICAST);
    assert_eq!(mp.nlri[0].prefix.to_string(), "2001:db8:8::/48");
    assert_eq!(u6.attrs.communities, vec![(65003 << 16) | 6]);
}

#[test]
fn bird_open_updates_and_end_of_rib() {
    let v = messages("bird.hex");
    let Message::Open(o) = &v[0].1 else { panic!() };
    assert_eq!(o.asn(), 65002);
    assert!(o
        .capabilities
        .iter()
        .any(|c| matches!(c, Capability::GracefulRestart { .. })));
    assert!(o
        .capabilities
        .iter()
        .any(|c| matches!(c, Capability::EnhancedRouteRefresh)));

    let u4 = update(&v[2].1);
    assert_eq!(u4.nlri[0].prefix.to_string(), "198.18.5.0/24");
    // BIRD prepended a 4-octet AS: it travels as such on a 4-octet session.
    assert_eq!(
        u4.attrs.as_path.as_ref().unwrap().to_string(),
        "65002 4200000002"
    );
    assert_eq!(u4.attrs.communities, vec![(65002 << 16) | 5]);
    assert_eq!(u4.attrs.large_communities()[0].to_string(), "65002:5:5");

    let eor: Vec<Family> = v
        .iter()
        .filter_map(|(_, m)| match m {
            Message::Update(u) => u.is_end_of_rib(),
            _ => None,
        })
        .collect();
    assert_eq!(eor, vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST]);

    let u6 = v.iter().map(|(_, m)| m).find_map(|m| match m {
        Message::Update(u) if u.mp_reach.is_some() => Some(u),
        _ => None,
    });
    let mp = u6.unwrap().mp_reach.as_ref().unwrap();
    assert_eq!(mp.nlri[0].prefix.to_string(), "2001:db8:5::/48");
    match mp.next_hop {
        NextHop::V6 {
            global,
            link_local: Some(ll),
        } => {
            assert_eq!(global.to_string(), "2001:db8::1");
            assert!(ll.is_unicast_link_local());
        }
        other => panic!("want global + link-local, got {other:?}"),
    }
}

#[test]
fn keepalive_and_end_of_rib_reencode_byte_for_byte() {
    let ctx = Ctx::modern();
    for (raw, m) in messages("bird.hex")
        .into_iter()
        .chain(messages("gobgp.hex"))
    {
        let exact = matches!(&m, Message::Keepalive)
            || matches!(&m, Message::Update(u) if u.is_end_of_rib().is_some());
        if exact {
            assert_eq!(m.to_bytes(&ctx).to_vec(), raw);
        }
    }
}
