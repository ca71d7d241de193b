use std::cmp::Ordering;
use std::sync::Arc;

use bgp_wire::{AsPath, Origin, PathAttrs};
use ipnet::Ipv4Net;

use super::*;
use crate::best::{compare, Contexts, IgpCost, NewPath, PeerInfo, Source, Step};
use crate::SharedAttrs;

fn peer(key: &str, asn: u32, rid: &str, ibgp: bool) -> Source {
    Source::Peer(Arc::new(PeerInfo {
        key: key.into(),
        addr: key.parse().unwrap(),
        asn,
        router_id: rid.parse().unwrap(),
        ibgp,
        rr_client: false,
        ifindex: None,
        pod: false,
        transit: false,
    }))
}

fn attrs(path: &[u32]) -> PathAttrs {
    PathAttrs {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath::from_sequence(path.to_vec())),
        ..Default::default()
    }
}

fn path(src: Source, a: PathAttrs, nh: &str) -> NewPath {
    NewPath {
        source: src,
        attrs: SharedAttrs::new(PathAttrs {
            route_hop: Some(nh.parse().unwrap()),
            ..a
        }),
        igp_cost: Some(0).into(),
    }
}

fn ebgp(key: &str, asn: u32) -> NewPath {
    path(peer(key, asn, key, false), attrs(&[asn]), key)
}

/// [`compare`] of `a` and `b` as a Loc-RIB holds them, with arrival
/// numbers `sa` and `sb`.
fn compare_new(a: &NewPath, sa: u32, b: &NewPath, sb: u32, cfg: &BestCfg) -> (Ordering, Step) {
    let mut cx = Contexts::default();
    let mut held = |p: &NewPath, seq: u32| Path {
        attrs: p.attrs.clone(),
        seq,
        ctx: cx.id(&p.source, p.igp_cost),
    };
    let (a, b) = (held(a, sa), held(b, sb));
    compare(&a, &b, &cx, cfg)
}

/// Each row: a base path and a variant that must lose at exactly one step.
#[test]
fn every_tie_break_step_in_order() {
    let cfg = BestCfg::default();
    let base = || ebgp("192.0.2.1", 65001);
    let mut cases: Vec<(Step, NewPath, NewPath)> = Vec::new();

    let mut unreach = ebgp("192.0.2.2", 65001);
    unreach.igp_cost = IgpCost::UNRESOLVED;
    unreach.attrs = SharedAttrs::new(PathAttrs {
        local_pref: Some(500), // reachability comes before everything
        ..PathAttrs::clone(&unreach.attrs)
    });
    cases.push((Step::Reachability, base(), unreach));

    let mut lp = base();
    lp.attrs = SharedAttrs::new(PathAttrs {
        local_pref: Some(200),
        ..attrs(&[65001, 65009])
    });
    cases.push((Step::LocalPref, lp, ebgp("192.0.2.2", 65001)));

    let local = path(Source::Local, attrs(&[]), "192.0.2.9");
    let mut remote = ebgp("192.0.2.2", 65001);
    remote.attrs = SharedAttrs::new(attrs(&[]));
    cases.push((Step::LocallyOriginated, local, remote));

    cases.push((
        Step::AsPathLength,
        base(),
        path(
            peer("192.0.2.2", 65002, "192.0.2.2", false),
            attrs(&[65002, 65003]),
            "192.0.2.2",
        ),
    ));

    let mut egp = ebgp("192.0.2.2", 65001);
    egp.attrs = SharedAttrs::new(PathAttrs {
        origin: Some(Origin::Egp),
        ..attrs(&[65001])
    });
    cases.push((Step::Origin, base(), egp));

    let mut med = ebgp("192.0.2.2", 65001);
    med.attrs = SharedAttrs::new(PathAttrs {
        med: Some(50),
        ..attrs(&[65001])
    });
    cases.push((Step::Med, base(), med));

    let ibgp = path(
        peer("192.0.2.2", 65000, "192.0.2.2", true),
        attrs(&[65001]),
        "192.0.2.2",
    );
    cases.push((Step::EbgpOverIbgp, base(), ibgp));

    let mut far = ebgp("192.0.2.2", 65001);
    far.igp_cost = Some(20).into();
    assert_eq!(far.igp_cost.get(), Some(20));
    assert_eq!(
        IgpCost::from(Some(u32::MAX)).get(),
        Some(u32::MAX - 1),
        "clamped, still resolved"
    );
    assert_eq!(IgpCost::UNRESOLVED.get(), None);
    cases.push((Step::IgpCost, base(), far));

    // (Arrived later: see the arrival numbers below.)
    let newer = ebgp("192.0.2.2", 65001);
    cases.push((Step::OldestEbgp, base(), newer));

    let i1 = path(
        peer("192.0.2.1", 65000, "192.0.2.1", true),
        attrs(&[]),
        "192.0.2.1",
    );
    let i2 = path(
        peer("192.0.2.2", 65000, "192.0.2.2", true),
        attrs(&[]),
        "192.0.2.2",
    );
    cases.push((Step::RouterId, i1.clone(), i2.clone()));

    let mut c1 = i1.clone();
    c1.attrs = SharedAttrs::new(PathAttrs {
        rare: Some(Box::new(bgp_wire::RareAttrs {
            originator_id: Some("198.18.0.1".parse().unwrap()),
            cluster_list: bgp_wire::thin_vec!["198.18.9.9".parse().unwrap()],
            ..Default::default()
        })),
        ..attrs(&[])
    });
    let mut c2 = i2.clone();
    c2.attrs = SharedAttrs::new(PathAttrs {
        rare: Some(Box::new(bgp_wire::RareAttrs {
            originator_id: Some("198.18.0.1".parse().unwrap()),
            cluster_list: bgp_wire::thin_vec![
                "198.18.9.9".parse().unwrap(),
                "198.18.9.8".parse().unwrap()
            ],
            ..Default::default()
        })),
        ..attrs(&[])
    });
    cases.push((Step::ClusterListLength, c1, c2));

    let p1 = path(
        peer("192.0.2.1", 65000, "198.18.0.1", true),
        attrs(&[]),
        "192.0.2.1",
    );
    let p2 = path(
        peer("192.0.2.2", 65000, "198.18.0.1", true),
        attrs(&[]),
        "192.0.2.2",
    );
    cases.push((Step::PeerAddress, p1, p2));

    for (step, winner, loser) in cases {
        // The loser arrived later (which only the age step reads).
        assert_eq!(
            compare_new(&winner, 1, &loser, 5, &cfg),
            (Ordering::Less, step),
            "{step:?}"
        );
        assert_eq!(
            compare_new(&loser, 5, &winner, 1, &cfg),
            (Ordering::Greater, step),
            "{step:?} reversed"
        );
    }
    // Arrived at the same time: no age step.
    assert_eq!(
        compare_new(&base(), 1, &ebgp("192.0.2.2", 65001), 1, &cfg),
        (Ordering::Less, Step::RouterId)
    );
}

#[test]
fn med_only_compared_within_one_neighbour_as_unless_always() {
    let mut a = ebgp("192.0.2.1", 65001);
    a.attrs = SharedAttrs::new(PathAttrs {
        med: Some(100),
        ..attrs(&[65001])
    });
    let mut b = ebgp("192.0.2.2", 65002);
    b.attrs = SharedAttrs::new(PathAttrs {
        med: Some(5),
        ..attrs(&[65002])
    });
    // Different neighbour AS: MED ignored, the older path (a) wins.
    assert_eq!(
        compare_new(&a, 0, &b, 1, &BestCfg::default()).1,
        Step::OldestEbgp
    );
    let always = BestCfg {
        always_compare_med: true,
        ..Default::default()
    };
    assert_eq!(
        compare_new(&a, 0, &b, 1, &always),
        (Ordering::Greater, Step::Med)
    );
}

#[test]
fn locrib_multipath_withdraw_and_changes() {
    let mut rib = LocRib::new(BestCfg::default());
    let p: IpNet = "10.244.1.0/24".parse().unwrap();
    assert_eq!(rib.upsert(p, ebgp("192.0.2.1", 65001)), Changed::Yes);
    // A second equal eBGP path (another AS, same length): ECMP.
    assert_eq!(rib.upsert(p, ebgp("192.0.2.2", 65002)), Changed::Yes);
    let d = rib.get(&p).unwrap();
    assert_eq!(d.multipath().count(), 2);
    // A worse path does not change the selection.
    let worse = path(
        peer("192.0.2.3", 65003, "192.0.2.3", false),
        attrs(&[65003, 65004]),
        "192.0.2.3",
    );
    assert_eq!(rib.upsert(p, worse), Changed::No);
    assert_eq!(rib.get(&p).unwrap().paths().len(), 3);
    // Same attributes again: no change, age kept.
    assert_eq!(rib.upsert(p, ebgp("192.0.2.1", 65001)), Changed::No);
    assert_eq!(rib.remove(&p, "192.0.2.1", 0), Changed::Yes);
    assert_eq!(rib.get(&p).unwrap().multipath().count(), 1);
    assert_eq!(rib.remove(&p, "192.0.2.9", 0), Changed::No);
    rib.remove(&p, "192.0.2.2", 0);
    rib.remove(&p, "192.0.2.3", 0);
    assert!(rib.get(&p).is_none());
    assert!(rib.is_empty());
}

#[test]
fn ecmp_limited_by_max_paths_and_needs_distinct_next_hops() {
    let mut rib = LocRib::new(BestCfg {
        max_paths_ebgp: 2,
        ..Default::default()
    });
    let p: IpNet = "198.18.0.0/24".parse().unwrap();
    for i in 1..=4 {
        rib.upsert(p, ebgp(&format!("192.0.2.{i}"), 65000 + i));
    }
    assert_eq!(rib.get(&p).unwrap().multipath().count(), 2);
    let mut one = LocRib::new(BestCfg {
        max_paths_ebgp: 1,
        ..Default::default()
    });
    one.upsert(p, ebgp("192.0.2.1", 65001));
    one.upsert(p, ebgp("192.0.2.2", 65002));
    assert_eq!(one.get(&p).unwrap().multipath().count(), 1);
}

#[test]
fn unreachable_next_hop_makes_prefix_unusable_until_resolved() {
    let mut rib = LocRib::new(BestCfg::default());
    let p: IpNet = "198.18.0.0/24".parse().unwrap();
    let mut x = ebgp("192.0.2.1", 65001);
    x.igp_cost = IgpCost::UNRESOLVED;
    rib.upsert(p, x);
    assert!(rib.get(&p).unwrap().best().is_none());
    assert_eq!(rib.refresh(&p, |_| Some(1).into()), Changed::Yes);
    assert!(rib.get(&p).unwrap().best().is_some());
}

#[test]
fn new_attributes_on_the_best_path_are_a_change() {
    let mut rib = LocRib::new(BestCfg::default());
    let p: IpNet = "10.0.0.0/24".parse().unwrap();
    rib.upsert(p, ebgp("192.0.2.1", 65001));
    let mut again = ebgp("192.0.2.1", 65001);
    again.attrs = SharedAttrs::new(PathAttrs {
        med: Some(7),
        ..attrs(&[65001])
    });
    assert_eq!(
        rib.upsert(p, again),
        Changed::Yes,
        "same source and next hop, new attributes"
    );
}

#[test]
fn emptied_destinations_keep_their_id_until_pruned_then_it_is_reused() {
    let mut rib = LocRib::default();
    let p: IpNet = "10.0.0.0/24".parse().unwrap();
    let q: IpNet = "10.0.1.0/24".parse().unwrap();
    rib.upsert(p, ebgp("192.0.2.1", 65001));
    rib.upsert(q, ebgp("192.0.2.1", 65001));
    let (ip, iq) = (rib.id(&p).unwrap(), rib.id(&q).unwrap());
    assert_ne!(ip, iq);
    assert_eq!(rib.remove(&p, "192.0.2.1", 0), Changed::Yes);
    // Gone for lookups and counts, still named by its id.
    assert!(rib.get(&p).is_none());
    assert_eq!(rib.len(), 1);
    assert_eq!(rib.prefixes(), vec![q]);
    assert_eq!(rib.id(&p), Some(ip));
    assert_eq!(rib.iter_all().count(), 2);
    // Filled again before pruning: same destination, same id.
    rib.upsert(p, ebgp("192.0.2.2", 65002));
    assert_eq!((rib.len(), rib.id(&p)), (2, Some(ip)));
    assert!(rib.prune(&[p, q]).is_empty(), "neither is empty");
    rib.remove(&p, "192.0.2.2", 0);
    assert_eq!(rib.prune(&[p, q]), vec![ip]);
    assert_eq!(rib.id(&p), None);
    assert_eq!(rib.iter_all().count(), 1);
    // The id is reused for the next new destination.
    let r: IpNet = "10.0.2.0/24".parse().unwrap();
    rib.upsert(r, ebgp("192.0.2.1", 65001));
    assert_eq!(rib.id(&r), Some(ip));
    assert_eq!(rib.len(), 2);
}

#[test]
fn removing_an_unselected_last_path_still_reports_a_change() {
    let mut rib = LocRib::default();
    let p: IpNet = "10.0.0.0/24".parse().unwrap();
    let mut x = ebgp("192.0.2.1", 65001);
    x.igp_cost = IgpCost::UNRESOLVED; // unresolvable: never selected
    assert_eq!(rib.upsert(p, x), Changed::No);
    assert_eq!(rib.remove(&p, "192.0.2.1", 0), Changed::Yes);
    assert_eq!(rib.prune(&[p]).len(), 1);
    assert!(rib.is_empty());
}

#[test]
fn ids_returned_by_changes_name_the_destination_and_prune_frees_each_once() {
    let mut rib = LocRib::default();
    let p: IpNet = "10.0.0.0/24".parse().unwrap();
    let q: IpNet = "2001:db8::/48".parse().unwrap();
    let o = rib.upsert_id(p, ebgp("192.0.2.1", 65001));
    let ip = o.id.unwrap();
    assert_eq!(
        (o.changed, o.had, rib.id(&p)),
        (Changed::Yes, false, Some(ip))
    );
    assert!(
        rib.upsert_id(p, ebgp("192.0.2.1", 65001)).had,
        "a replacement"
    );
    let iq = rib.upsert_id(q, ebgp("192.0.2.1", 65001)).id.unwrap();
    assert_eq!(rib.source(rib.by_id(iq).best().unwrap()).key(), "192.0.2.1");
    let o = rib.remove_id(&p, "192.0.2.9", 0);
    assert_eq!((o.changed, o.id, o.had), (Changed::No, Some(ip), false));
    let o = rib.remove_id(&p, "192.0.2.1", 0);
    assert_eq!((o.changed, o.id, o.had), (Changed::Yes, Some(ip), true));
    assert!(rib.by_id(ip).best().is_none());
    // A repeated entry, a live destination and a wrong id free nothing more.
    assert_eq!(
        rib.prune_ids(&[(p, ip), (p, ip), (q, iq), (q, ip)]),
        vec![ip]
    );
    assert_eq!((rib.id(&p), rib.id(&q), rib.len()), (None, Some(iq), 1));
    // The freed id is reused once, by the next new destination only.
    let r: IpNet = "10.0.1.0/24".parse().unwrap();
    let s: IpNet = "10.0.2.0/24".parse().unwrap();
    let ir = rib.upsert_id(r, ebgp("192.0.2.1", 65001)).id.unwrap();
    let is = rib.upsert_id(s, ebgp("192.0.2.1", 65001)).id.unwrap();
    assert_eq!(ir, ip);
    assert!(is != ir && is != iq);
    let o = rib.remove_id(&"10.9.0.0/16".parse().unwrap(), "x", 0);
    assert_eq!((o.changed, o.id), (Changed::No, None));
}

#[test]
fn remove_source_takes_every_path_of_one_peer_in_one_walk() {
    let mut rib = LocRib::default();
    let p: IpNet = "10.0.0.0/24".parse().unwrap();
    let q: IpNet = "10.0.1.0/24".parse().unwrap();
    let v6: IpNet = "2001:db8::/48".parse().unwrap();
    rib.upsert(p, ebgp("192.0.2.1", 65001));
    rib.upsert(p, ebgp("192.0.2.2", 65002)); // younger: not the best path
    rib.upsert(q, ebgp("192.0.2.2", 65002));
    rib.upsert(v6, ebgp("192.0.2.1", 65001));
    let mut changed = rib.remove_source("192.0.2.1");
    changed.sort();
    let ids = |x: &[IpNet]| {
        x.iter()
            .map(|p| (*p, rib.id(p).unwrap()))
            .collect::<Vec<_>>()
    };
    assert_eq!(changed, ids(&[p, v6]), "q had no path from it");
    assert_eq!(
        rib.source(rib.get(&p).unwrap().best().unwrap()).key(),
        "192.0.2.2"
    );
    assert!(rib.get(&v6).is_none());
    assert_eq!(rib.len(), 2);
    assert!(rib.remove_source("192.0.2.1").is_empty());
}

#[test]
fn multipath_set_is_at_most_64_paths_best_first_and_the_rest_stay() {
    let mut rib = LocRib::new(BestCfg {
        max_paths_ebgp: 1000,
        ..Default::default()
    });
    let p: IpNet = "198.18.0.0/24".parse().unwrap();
    for i in 1..=70 {
        rib.upsert(p, ebgp(&format!("198.18.1.{i}"), 65000 + i));
    }
    let d = rib.get(&p).unwrap();
    assert_eq!(d.paths().len(), 70);
    assert_eq!(d.selected().len(), crate::best::MAX_MULTIPATH);
    let sel: Vec<usize> = d.selected().iter().collect();
    assert_eq!(sel, (0..64).collect::<Vec<_>>(), "best first, in order");
    assert_eq!(
        (
            d.selected().first(),
            d.selected().get(63),
            d.selected().get(64)
        ),
        (Some(0), Some(63), None)
    );
    // Paths with a next hop already in the set are skipped, not counted.
    let mut rib = LocRib::new(BestCfg {
        max_paths_ebgp: 3,
        ..Default::default()
    });
    for (i, nh) in [
        (1, "192.0.2.1"),
        (2, "192.0.2.1"),
        (3, "192.0.2.3"),
        (4, "192.0.2.4"),
        (5, "192.0.2.5"),
    ] {
        let key = format!("198.18.2.{i}");
        rib.upsert(
            p,
            path(peer(&key, 65000 + i, &key, false), attrs(&[65000 + i]), nh),
        );
    }
    let d = rib.get(&p).unwrap();
    let hops: Vec<String> = d.multipath().map(|x| x.next_hop().to_string()).collect();
    assert_eq!(hops.len(), 3);
    assert_eq!(
        d.selected().get(1),
        Some(2),
        "the second path shares the best's next hop"
    );
    assert_eq!(hops[0], "192.0.2.1");
    assert!(!hops[1..].contains(&hops[0]));
}

#[test]
fn the_ipv4_index_packs_prefix_and_id_in_one_word() {
    let mut ix = V4Index::default();
    let p = |s: &str| -> Ipv4Net { s.parse().unwrap() };
    let top = (MAX_DESTS - 1) as u32;
    let cases = [
        (p("0.0.0.0/0"), 0),
        (p("255.255.255.255/32"), top),
        (p("10.0.0.0/8"), 7),
        (p("10.0.0.0/9"), 8),
        (p("10.0.0.0/24"), top - 1),
    ];
    for (net, id) in cases {
        assert_eq!(ix.get_or_insert_with(&net, || Some(id)), Some(id));
    }
    for (net, id) in cases {
        assert_eq!(ix.get(&net), Some(id), "{net}");
        assert_eq!(
            ix.get_or_insert_with(&net, || panic!("present: not new")),
            Some(id)
        );
    }
    assert_eq!(
        ix.get(&p("10.0.0.0/10")),
        None,
        "same address, other length"
    );
    assert_eq!(
        ix.get_or_insert_with(&p("10.0.0.0/10"), || None),
        None,
        "none given: not added"
    );
    assert_eq!(ix.len(), 5);
    let mut all: Vec<(Ipv4Net, u32)> = ix.iter().collect();
    all.sort();
    let mut want = cases.to_vec();
    want.sort();
    assert_eq!(all, want);
    assert!(!ix.remove_if(&p("10.0.0.0/8"), 8), "another id: kept");
    assert!(ix.remove_if(&p("10.0.0.0/8"), 7));
    assert_eq!(
        (ix.get(&p("10.0.0.0/8")), ix.get(&p("10.0.0.0/9"))),
        (None, Some(8))
    );
    assert_eq!(ix.len(), 4);
}

/// A path from peer `i` (198.18.3.i, AS 65000 + i % 4) with the given
/// LOCAL_PREF, AS path length and MED.
fn varied(i: u32, lp: u32, len: usize, med: u32) -> NewPath {
    let key = format!("198.18.3.{i}");
    let asn = 65000 + i % 4;
    let mut a = attrs(&vec![asn; len]);
    a.local_pref = Some(lp);
    a.med = Some(med);
    path(peer(&key, asn, &key, i.is_multiple_of(3)), a, &key)
}

/// Paths are put in their place one by one (not sorted again on every
/// change): after any sequence of announcements, replacements and
/// withdrawals, the order is the one a full sort gives (with
/// always-compare-med, where the comparison is a total order).
#[test]
fn incremental_order_is_the_full_sort_order() {
    let cfg = BestCfg {
        always_compare_med: true,
        max_paths_ebgp: 4,
        max_paths_ibgp: 4,
    };
    let mut rib = LocRib::new(cfg);
    let p: IpNet = "198.18.4.0/24".parse().unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n) as u32
    };
    let mut changes = 0;
    for step in 0..3000 {
        let i = 1 + rnd(30);
        if rnd(4) == 0 {
            rib.remove(&p, &format!("198.18.3.{i}"), 0);
        } else {
            let c = rib.upsert(p, varied(i, 100 + rnd(3) * 50, 1 + rnd(4) as usize, rnd(3)));
            changes += (c == Changed::Yes) as u32;
        }
        let Some(d) = rib.get(&p) else { continue };
        let mut sorted = d.paths().to_vec();
        let sel = crate::best::select(&mut sorted, rib.contexts(), &cfg);
        let keys = |v: &[Path]| {
            v.iter()
                .map(|p| rib.source(p).key().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(keys(d.paths()), keys(&sorted), "step {step}");
        assert_eq!(d.selected(), sel, "step {step}");
        for w in d.paths().windows(2) {
            assert_ne!(
                compare(&w[0], &w[1], rib.contexts(), &cfg).0,
                Ordering::Greater,
                "step {step}"
            );
        }
    }
    assert!(changes > 100 && changes < 2800, "{changes} changes");
}

/// MED compared only within a neighbour AS is not a total order: three
/// paths can beat each other in a circle. Selecting among 64 such paths,
/// again and again, must neither panic (the standard library's sorts may,
/// given a comparison that is not a total order: the old `sort_by` did
/// here) nor lose a path.
#[test]
fn a_med_cycle_among_many_paths_neither_panics_nor_loses_paths() {
    let mut rib = LocRib::new(BestCfg::default());
    let p: IpNet = "198.18.5.0/24".parse().unwrap();
    for i in 1..=64 {
        // Same length and LOCAL_PREF: MED (within an AS), eBGP over iBGP,
        // age and router id decide, in a circle across ASes.
        rib.upsert(p, varied(i, 100, 2, (i * 7919) % 13));
    }
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..500 {
        // Shuffled costs and ages: every round orders the circle afresh.
        let id = rib.id(&p).unwrap();
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for q in rib.dests[id as usize].paths_mut() {
            q.seq = (rnd() >> 8) as u32 % 64;
        }
        rib.refresh(&p, |_| Some((rnd() % 2) as u32).into());
        let d = rib.get(&p).unwrap();
        assert_eq!(d.paths().len(), 64);
        assert!(d.best().is_some());
    }
}

/// Destinations past the first chunks of the slab (ids above 1024, 2048),
/// pruned and their ids reused, stay where their ids say.
#[test]
fn ids_across_slab_chunks_name_their_destinations() {
    let mut rib = LocRib::new(BestCfg::default());
    let prefix = |i: u32| {
        IpNet::V4(Ipv4Net::new(std::net::Ipv4Addr::from(0xC612_0000 + (i << 8)), 24).unwrap())
    };
    let mut ids = Vec::new();
    for i in 0..3000 {
        let o = rib.upsert_id(prefix(i), ebgp("192.0.2.1", 65000 + i));
        ids.push(o.id.unwrap());
    }
    // Every id is distinct and names its own prefix's path.
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), 3000);
    for (i, id) in ids.iter().enumerate() {
        let asn = rib
            .by_id(*id)
            .best()
            .unwrap()
            .attrs
            .as_path
            .as_ref()
            .unwrap()
            .first();
        assert_eq!(asn, Some(65000 + i as u32));
        assert_eq!(rib.id(&prefix(i as u32)), Some(*id));
    }
    // Free every other one past 1000, then add new prefixes: they reuse
    // those ids, and the others are untouched.
    let gone: Vec<IpNet> = (1000..3000).step_by(2).map(prefix).collect();
    for p in &gone {
        rib.remove(p, "192.0.2.1", 0);
    }
    let freed = rib.prune(&gone);
    assert_eq!(freed.len(), 1000);
    for i in 3000..4000 {
        let o = rib.upsert_id(prefix(i), ebgp("192.0.2.1", 65000 + i));
        assert!(freed.contains(&o.id.unwrap()));
    }
    for i in (0..4000).filter(|i| *i < 1000 || *i >= 3000 || i % 2 == 1) {
        let d = rib.get(&prefix(i)).unwrap();
        assert_eq!(
            d.best().unwrap().attrs.as_path.as_ref().unwrap().first(),
            Some(65000 + i)
        );
    }
    assert_eq!(rib.len(), 3000);
}

/// When the arrival numbers run out, the paths are numbered again in the
/// order they had: the oldest eBGP path still wins, new ones count as newer.
#[test]
fn arrival_numbers_wrap_without_changing_ages() {
    let mut rib = LocRib::new(BestCfg::default());
    let p: IpNet = "198.18.6.0/24".parse().unwrap();
    let q: IpNet = "198.18.7.0/24".parse().unwrap();
    // Equal through the IGP cost: the age decides (oldest eBGP path).
    let same = |key: &str, rid: &str| path(peer(key, 65001, rid, false), attrs(&[65001]), key);
    rib.seq = u32::MAX - 3;
    rib.set_now(1000);
    rib.upsert(p, same("192.0.2.1", "192.0.2.9"));
    rib.upsert(q, same("192.0.2.3", "192.0.2.9"));
    rib.set_now(1001);
    rib.upsert(p, same("192.0.2.2", "192.0.2.8"));
    rib.set_now(1002);
    assert_eq!(rib.seq, u32::MAX);
    let best = |rib: &LocRib, x: &IpNet| {
        rib.source(rib.get(x).unwrap().best().unwrap())
            .key()
            .to_string()
    };
    assert_eq!(best(&rib, &p), "192.0.2.1");
    // This one wraps: the three paths are renumbered 1..=3, it gets 4.
    rib.upsert(q, same("192.0.2.4", "192.0.2.1"));
    assert_eq!(rib.seq, 4);
    rib.upsert(p, same("192.0.2.5", "192.0.2.1"));
    assert_eq!(rib.seq, 5);
    let seqs: Vec<u32> = rib.get(&p).unwrap().paths().iter().map(|x| x.seq).collect();
    assert_eq!(seqs, vec![1, 3, 5]);
    // Each path keeps the time it arrived at.
    let times = |rib: &LocRib, x: &IpNet| -> Vec<u32> {
        let d = rib.get(x).unwrap();
        d.paths().iter().map(|y| rib.since(y)).collect()
    };
    assert_eq!(times(&rib, &p), vec![1000, 1001, 1002]);
    assert_eq!(times(&rib, &q), vec![1000, 1002]);
    // The oldest still wins over a lower router id, in both prefixes.
    assert_eq!(best(&rib, &p), "192.0.2.1");
    assert_eq!(best(&rib, &q), "192.0.2.3");
    rib.upsert(q, same("192.0.2.6", "192.0.2.1"));
    assert_eq!(best(&rib, &q), "192.0.2.3");
    assert_eq!(
        rib.get(&q).unwrap().paths().iter().map(|x| x.seq).max(),
        Some(6)
    );
}

/// A path is 16 bytes (set, arrival number, context), a destination 24:
/// a path inline, or the selection and a pointer to many.
#[test]
fn a_path_is_sixteen_bytes_a_destination_twenty_four() {
    assert_eq!(std::mem::size_of::<Path>(), 16);
    assert_eq!(std::mem::size_of::<Dest>(), 24);
}

/// A path's time is found from its arrival number: the second it arrived
/// in, kept while its attributes stay the same, the new one when they
/// change; 0 for a locally originated path.
#[test]
fn a_path_knows_when_it_arrived_without_a_field_for_it() {
    let mut rib = LocRib::new(BestCfg::default());
    let p: IpNet = "198.18.8.0/24".parse().unwrap();
    let q: IpNet = "198.18.9.0/24".parse().unwrap();
    let since = |rib: &LocRib, x: &IpNet, key: &str| {
        let d = rib.get(x).unwrap();
        let path = d
            .paths()
            .iter()
            .find(|y| rib.source(y).key() == key)
            .unwrap();
        rib.since(path)
    };
    rib.set_now(500);
    rib.upsert(p, ebgp("192.0.2.1", 65001));
    rib.upsert(q, ebgp("192.0.2.1", 65001));
    rib.set_now(501);
    rib.upsert(p, ebgp("192.0.2.2", 65002));
    rib.set_now(502);
    // The same again: an implicit withdraw that changes nothing keeps its time.
    rib.upsert(p, ebgp("192.0.2.1", 65001));
    assert_eq!(since(&rib, &p, "192.0.2.1"), 500);
    assert_eq!(since(&rib, &p, "192.0.2.2"), 501);
    // New attributes: a new time.
    let mut changed = ebgp("192.0.2.1", 65001);
    changed.attrs = SharedAttrs::new(PathAttrs {
        med: Some(7),
        ..PathAttrs::clone(&changed.attrs)
    });
    rib.upsert(q, changed);
    assert_eq!(since(&rib, &q, "192.0.2.1"), 502);
    rib.upsert(q, path(Source::Local, attrs(&[]), "192.0.2.9"));
    assert_eq!(since(&rib, &q, "local"), 0);
}

/// The log of arrival times keeps what the paths held need, however long
/// the routes keep changing: entries of times no path has any more go.
#[test]
fn arrival_times_no_path_needs_are_dropped() {
    let mut rib = LocRib::new(BestCfg::default());
    let keep: IpNet = "198.18.10.0/24".parse().unwrap();
    let churn: IpNet = "198.18.11.0/24".parse().unwrap();
    rib.set_now(7);
    rib.upsert(keep, ebgp("192.0.2.1", 65001));
    // One change a second for 100k seconds, each replacing the last.
    for t in 0..100_000u32 {
        rib.set_now(100 + t);
        let mut x = ebgp("192.0.2.2", 65002);
        x.attrs = SharedAttrs::new(PathAttrs {
            med: Some(t),
            ..PathAttrs::clone(&x.attrs)
        });
        rib.upsert(churn, x);
    }
    assert!(
        rib.arrivals.log.len() < 2048,
        "{} entries",
        rib.arrivals.log.len()
    );
    let d = rib.get(&keep).unwrap();
    assert_eq!(rib.since(&d.paths()[0]), 7);
    let d = rib.get(&churn).unwrap();
    assert_eq!(rib.since(&d.paths()[0]), 100 + 99_999);
}

/// ADD-PATH: paths from one peer with different path ids are different
/// paths (the id lives in their interned set), each replaced and removed
/// by its own id.
#[test]
fn paths_from_one_peer_are_told_apart_by_path_id() {
    let mut rib = LocRib::new(BestCfg::default());
    let p: IpNet = "198.18.12.0/24".parse().unwrap();
    let with_id = |id: u32, nh: &str, med: u32| {
        let mut a = attrs(&[65001]);
        a.med = Some(med);
        a.set_route_path_id(id);
        path(peer("192.0.2.1", 65001, "192.0.2.1", false), a, nh)
    };
    rib.upsert(p, with_id(1, "192.0.2.10", 0));
    rib.upsert(p, with_id(2, "192.0.2.11", 5));
    assert_eq!(rib.get(&p).unwrap().paths().len(), 2);
    // Path 2 again, better now: replaces path 2 only.
    rib.upsert(p, with_id(2, "192.0.2.11", 0));
    let d = rib.get(&p).unwrap();
    let ids: Vec<u32> = d.paths().iter().map(|x| x.path_id()).collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&1) && ids.contains(&2));
    assert_eq!(rib.remove(&p, "192.0.2.1", 1), Changed::Yes, "path 1 goes");
    let d = rib.get(&p).unwrap();
    assert_eq!(d.paths().len(), 1);
    assert_eq!(d.paths()[0].path_id(), 2);
    assert_eq!(d.paths()[0].med(), 0);
    assert_eq!(rib.remove(&p, "192.0.2.1", 1), Changed::No, "gone already");
}

/// Paths name their source and IGP cost by a context: paths of one session
/// with one cost share one, a new cost is a new one (the others keep
/// theirs).
#[test]
fn paths_share_a_context_per_session_and_igp_cost() {
    let mut rib = LocRib::new(BestCfg::default());
    let (p, q): (IpNet, IpNet) = (
        "198.18.13.0/24".parse().unwrap(),
        "198.18.14.0/24".parse().unwrap(),
    );
    let src = peer("192.0.2.1", 65001, "192.0.2.1", false);
    rib.upsert(p, path(src.clone(), attrs(&[65001]), "192.0.2.1"));
    rib.upsert(q, path(src, attrs(&[65001, 65002]), "192.0.2.1"));
    let ctx = |rib: &LocRib, x: &IpNet| rib.get(x).unwrap().paths()[0].ctx;
    assert_eq!(ctx(&rib, &p), ctx(&rib, &q));
    assert_eq!(rib.contexts().len(), 1);
    assert_eq!(rib.refresh(&p, |_| Some(7).into()), Changed::No);
    assert_ne!(ctx(&rib, &p), ctx(&rib, &q));
    let cost =
        |rib: &LocRib, x: &IpNet| rib.context(&rib.get(x).unwrap().paths()[0]).igp_cost.get();
    assert_eq!((cost(&rib, &p), cost(&rib, &q)), (Some(7), Some(0)));
    // Unresolvable: the id alone says the path is not eligible.
    assert_eq!(rib.refresh(&p, |_| IgpCost::UNRESOLVED), Changed::Yes);
    assert!(!rib.get(&p).unwrap().paths()[0].eligible());
    assert!(rib.get(&p).unwrap().best().is_none());
    // Local paths need no entry.
    rib.upsert(p, path(Source::Local, attrs(&[]), "192.0.2.9"));
    assert!(rib.get(&p).unwrap().best().unwrap().is_local());
    assert_eq!(
        rib.source(rib.get(&p).unwrap().best().unwrap()).key(),
        "local"
    );
}

/// Sessions come and go: the contexts of those gone are dropped once
/// they have doubled, and the ids of the paths still there keep naming
/// their own.
#[test]
fn contexts_of_sessions_gone_are_dropped() {
    let mut rib = LocRib::new(BestCfg::default());
    let keep: IpNet = "198.18.15.0/24".parse().unwrap();
    let flap: IpNet = "198.18.16.0/24".parse().unwrap();
    rib.upsert(keep, ebgp("192.0.2.1", 65001));
    let mut most = 0;
    for i in 0..1000u32 {
        // A new session each time (a new `PeerInfo`), one IGP cost each.
        let mut x = ebgp("192.0.2.2", 65002);
        x.igp_cost = Some(i).into();
        rib.upsert(flap, x);
        rib.remove_source("192.0.2.2");
        rib.maybe_compact_contexts();
        most = most.max(rib.contexts().len());
    }
    // (Twice the one kept, and 64 more, before a compaction.)
    assert!(most <= 67, "{most} contexts at most");
    let d = rib.get(&keep).unwrap();
    assert_eq!(rib.source(&d.paths()[0]).key(), "192.0.2.1");
    assert_eq!(rib.context(&d.paths()[0]).igp_cost.get(), Some(0));
    // A slot freed is used again.
    rib.upsert(flap, ebgp("192.0.2.3", 65003));
    assert_eq!(
        rib.source(rib.get(&flap).unwrap().best().unwrap()).key(),
        "192.0.2.3"
    );
    // Keys gone and back are told apart from the others again (by a new
    // number): their paths are found to replace and remove.
    rib.upsert(flap, ebgp("192.0.2.2", 65002));
    assert_eq!(rib.get(&flap).unwrap().paths().len(), 2);
    rib.upsert(flap, ebgp("192.0.2.2", 65002));
    assert_eq!(rib.get(&flap).unwrap().paths().len(), 2);
    assert_eq!(rib.remove(&flap, "192.0.2.3", 0), Changed::Yes);
    assert_eq!(rib.remove(&flap, "192.0.2.9", 0), Changed::No);
    assert_eq!(rib.remove(&flap, "192.0.2.2", 0), Changed::Yes);
    assert!(rib.get(&flap).is_none());
}

/// What a change reports is exactly whether the selection changed (the
/// best path and multipath set, by source and set identity), whichever way
/// it is worked out: adding a path and removing one compare which paths
/// are selected, a replacement compares the sources and sets. Random
/// announcements, replacements (ADD-PATH ids too) and withdrawals, with
/// multipath on and off, next hops shared between peers (the multipath
/// walk skips a next hop it has), MED compared within an AS only.
#[test]
fn a_change_is_reported_exactly_when_the_selection_changes() {
    for (max, seed) in [(1, 7u64), (4, 11), (64, 13)] {
        let cfg = BestCfg {
            always_compare_med: false,
            max_paths_ebgp: max,
            max_paths_ibgp: max,
        };
        let mut rib = LocRib::new(cfg);
        let p: IpNet = "198.18.17.0/24".parse().unwrap();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ seed;
        let mut rnd = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n) as u32
        };
        let sel = |rib: &LocRib| -> Vec<(usize, usize)> {
            rib.get(&p).map_or(Vec::new(), |d| {
                d.multipath()
                    .map(|q| {
                        (
                            rib.source(q).identity(),
                            crate::SharedAttrs::as_ptr(&q.attrs) as usize,
                        )
                    })
                    .collect()
            })
        };
        let (mut yes, mut no) = (0, 0);
        for step in 0..4000 {
            let i = 1 + rnd(12);
            let key = format!("198.18.3.{i}");
            let path_id = rnd(2);
            let before = sel(&rib);
            let had = rib.get(&p).is_some_and(|d| d.paths().len() == 1);
            let c = if rnd(4) == 0 {
                rib.remove(&p, &key, path_id)
            } else {
                let mut n = varied(i, 100 + rnd(2) * 50, 1 + rnd(2) as usize, rnd(2));
                let mut a = PathAttrs::clone(&n.attrs);
                a.set_route_path_id(path_id);
                // Next hops shared by peers i and i + 6.
                a.route_hop = Some(format!("198.18.9.{}", i % 6).parse().unwrap());
                n.attrs = SharedAttrs::new(a);
                rib.upsert(p, n)
            };
            let after = sel(&rib);
            // (The last path going is a change whatever was selected.)
            let emptied = had && rib.get(&p).is_none();
            let want = if before != after || emptied {
                Changed::Yes
            } else {
                Changed::No
            };
            assert_eq!(c, want, "max {max}, step {step}: {before:?} -> {after:?}");
            if c == Changed::Yes {
                yes += 1
            } else {
                no += 1
            }
        }
        assert!(yes > 200 && no > 200, "max {max}: {yes} changes, {no} not");
    }
}

/// A peer whose key is "local" (an unnumbered session on an interface of
/// that name) is told apart from locally originated paths: withdrawing its
/// route leaves the local one.
#[test]
fn a_peer_keyed_local_is_not_the_local_source() {
    let mut rib = LocRib::new(BestCfg::default());
    let p: IpNet = "198.18.18.0/24".parse().unwrap();
    let named_local = Source::Peer(Arc::new(PeerInfo {
        key: "local".into(),
        addr: "fe80::1".parse().unwrap(),
        asn: 65001,
        router_id: "192.0.2.1".parse().unwrap(),
        ibgp: false,
        rr_client: false,
        ifindex: Some(2),
        pod: false,
        transit: false,
    }));
    rib.upsert(p, path(Source::Local, attrs(&[]), "192.0.2.9"));
    rib.upsert(p, path(named_local, attrs(&[65001]), "192.0.2.1"));
    assert_eq!(rib.get(&p).unwrap().paths().len(), 2);
    rib.remove(&p, "local", 0);
    let d = rib.get(&p).unwrap();
    assert_eq!(d.paths().len(), 1);
    assert!(d.paths()[0].is_local(), "the peer's path went, not ours");
}

/// What [`LocRib::room`] should say, counted over every destination.
fn recount(rib: &LocRib) -> (usize, usize) {
    (0..rib.dests.len()).fold((0, 0), |(p, s), i| {
        let (dp, ds) = rib.dests[i].room();
        (p + dp, s + ds)
    })
}

#[test]
fn a_prefix_every_peer_announces_gets_room_for_all_at_once() {
    let mut rib = LocRib::new(BestCfg::default());
    let prefixes: Vec<IpNet> = (0..500u32)
        .map(|i| format!("10.{}.{}.0/24", i / 256, i % 256).parse().unwrap())
        .collect();
    // Nine peers, taking turns (as UPDATEs from nine sessions arrive).
    for p in &prefixes {
        for k in 0..9u32 {
            rib.upsert(*p, ebgp(&format!("192.0.2.{}", k + 1), 65001 + k));
        }
    }
    // Every list but the first was made for nine paths: none spare (grown
    // two at a time, each would have room for ten). The first prefix's
    // was made before the other peers had sent anything: it grew.
    let (paths, spare) = recount(&rib);
    assert_eq!((rib.room.paths, rib.room.spare), (paths, spare));
    assert_eq!(paths, 4500);
    assert!(spare <= 1, "{spare} slots spare");
    for p in &prefixes {
        assert_eq!(rib.get(p).unwrap().paths().len(), 9);
    }
}

#[test]
fn lists_made_wide_leave_at_most_a_quarter_of_the_paths_spare() {
    // Sixteen peers, each prefix from two or three of them (a router with
    // many peers and few paths a prefix): the spare slots stay bounded,
    // and the counts stay those of the destinations through withdrawals.
    let mut rib = LocRib::new(BestCfg::default());
    let keys: Vec<String> = (0..16).map(|k| format!("192.0.2.{}", k + 1)).collect();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let prefixes: Vec<IpNet> = (0..2000u32)
        .map(|i| format!("10.{}.{}.0/24", i / 256, i % 256).parse().unwrap())
        .collect();
    for p in &prefixes {
        let n = 2 + (rnd() % 2) as usize;
        for _ in 0..n {
            let k = (rnd() % 16) as usize;
            rib.upsert(*p, ebgp(&keys[k], 65001 + k as u32));
        }
        let (paths, spare) = recount(&rib);
        assert_eq!((rib.room.paths, rib.room.spare), (paths, spare));
        // (One list made wide past the budget at most.)
        assert!(spare <= paths / 4 + 16, "{spare} spare for {paths} paths");
    }
    for p in prefixes.iter().step_by(3) {
        for k in &keys {
            rib.remove(p, k, 0);
        }
    }
    rib.remove_source(&keys[5]);
    assert_eq!((rib.room.paths, rib.room.spare), recount(&rib));
    assert!(!rib.prune(&prefixes).is_empty());
    assert_eq!((rib.room.paths, rib.room.spare), recount(&rib));
}
