//! The Loc-RIB's share of bench/ scenario (b), without sockets or threads:
//! ten peers announce the same 100,000 prefixes (peer i prepends its AS
//! i + 1 times), in runs of 200 prefixes that share a set, the peers' runs
//! taking turns (as UPDATEs from ten sessions arrive); then every peer
//! withdraws them. Prints the best of some rounds (five), so that a change to the
//! Loc-RIB can be measured apart from the machine's noise:
//!
//!     cargo run --release -p bgp-rib --example locrib_load [prefixes] [peers] [rounds]

use std::sync::Arc;
use std::time::Instant;

use bgp_rib::best::{BestCfg, PeerInfo, Source};
use bgp_rib::locrib::LocRib;
use bgp_rib::Interner;
use bgp_wire::{AsPath, Origin, PathAttrs};
use ipnet::{IpNet, Ipv4Net};

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let peers: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    const RUN: usize = 200;
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut rnd = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    // Distinct /24s of 10.0.0.0/8 and 198.18.0.0/15's neighbours: random
    // 24-bit numbers, duplicates dropped.
    let mut prefixes: Vec<IpNet> = Vec::with_capacity(n);
    let mut seen = std::collections::HashSet::new();
    while prefixes.len() < n {
        let v = (rnd() as u32) & 0xffff_ff00;
        if seen.insert(v) {
            prefixes.push(IpNet::V4(Ipv4Net::new(v.into(), 24).expect("/24")));
        }
    }
    let origins: Vec<Vec<u32>> = (0..prefixes.len().div_ceil(RUN))
        .map(|_| {
            (0..2 + rnd() % 8)
                .map(|_| 64512 + (rnd() % 3000) as u32)
                .collect()
        })
        .collect();
    let mut times = Vec::new();
    for _ in 0..rounds.max(1) {
        let interner = Interner::default();
        let sources: Vec<Source> = (0..peers)
            .map(|i| {
                let addr = std::net::Ipv4Addr::new(198, 18, 0, 10 + i as u8);
                Source::Peer(Arc::new(PeerInfo {
                    key: addr.to_string().into(),
                    addr: addr.into(),
                    asn: 65001 + i,
                    router_id: addr,
                    ibgp: false,
                    rr_client: false,
                    ifindex: None,
                    pod: false,
                    transit: false,
                }))
            })
            .collect();
        let sets: Vec<Vec<bgp_rib::SharedAttrs>> = (0..peers)
            .map(|i| {
                origins
                    .iter()
                    .map(|o| {
                        let mut path = vec![65001 + i; i as usize + 1];
                        path.extend(o);
                        interner.intern(PathAttrs {
                            origin: Some(Origin::Igp),
                            as_path: Some(AsPath::from_sequence(path)),
                            route_hop: Some(std::net::Ipv4Addr::new(198, 18, 0, 100).into()),
                            ..Default::default()
                        })
                    })
                    .collect()
            })
            .collect();
        let mut rib = LocRib::new(BestCfg::default());
        let t = Instant::now();
        let mut changed = 0usize;
        // The peers' runs in a new order each time (which session's
        // UPDATE is read first varies).
        let mut order: Vec<usize> = (0..sources.len()).collect();
        let mut y: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = || {
            y ^= y << 13;
            y ^= y >> 7;
            y ^= y << 17;
            y
        };
        for (r, run) in prefixes.chunks(RUN).enumerate() {
            for k in (1..order.len()).rev() {
                order.swap(k, (rnd() % (k as u64 + 1)) as usize);
            }
            for &i in &order {
                let s = &sources[i];
                let ctx = rib.context_id(s, Some(0).into());
                for p in run {
                    let o = rib.upsert_ctx(*p, sets[i][r].clone(), ctx);
                    changed += (o.changed == bgp_rib::locrib::Changed::Yes) as usize;
                }
            }
        }
        let import = t.elapsed();
        let t = Instant::now();
        for s in &sources {
            for p in &prefixes {
                rib.remove_id(p, s.key(), 0);
            }
        }
        let withdraw = t.elapsed();
        assert!(rib.is_empty());
        times.push((import, withdraw, changed));
    }
    times.sort();
    let (i, w, c) = times[0];
    println!(
        "{n} prefixes x {peers} peers: import {:.1} ms ({:.0} ns a path, {c} changes), withdraw {:.1} ms (best of {rounds})",
        i.as_secs_f64() * 1e3,
        i.as_secs_f64() * 1e9 / (n as f64 * peers as f64),
        w.as_secs_f64() * 1e3
    );
}
