//! A seeded, Internet-shaped table: prefix lengths in the usual mix (about
//! 60 % /24), AS paths of length 2–10 ending in one of a few thousand origin
//! ASes, some communities; prefixes sharing an attribute set are grouped so
//! that one UPDATE carries many of them, as real feeds do.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use bgp_wire::{AsPath, Nlri, Origin, PathAttrs};
use ipnet::{IpNet, Ipv4Net};

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn prefix_len(r: &mut Rng) -> u8 {
    match r.below(100) {
        0..=59 => 24,
        60..=69 => 22,
        70..=77 => 23,
        78..=83 => 20,
        84..=88 => 21,
        89..=92 => 19,
        93..=95 => 16,
        96..=97 => 18,
        _ => 17,
    }
}

/// `n` distinct prefixes grouped by attribute set.
pub fn generate(n: usize, seed: u64, next_hop: Ipv4Addr) -> Vec<(PathAttrs, Vec<Nlri>)> {
    let mut r = Rng::new(seed);
    let origins = 3000u64;
    let transits = 400u64;
    let mut seen = HashSet::with_capacity(n);
    let mut groups: HashMap<PathAttrs, Vec<Nlri>> = HashMap::new();
    // Attribute sets are reused: about one set per four prefixes.
    let sets = (n / 4).max(1);
    let mut set_cache: Vec<PathAttrs> = Vec::with_capacity(sets.min(1 << 20));
    while seen.len() < n {
        let len = prefix_len(&mut r);
        // Unicast space only: first octet 1..=223 without 127; 198.18.0.0/15 (the
        // benchmark's own addresses) kept out.
        let mut top = 1 + r.below(222) as u32;
        if top >= 127 {
            top += 1;
        }
        let a = ((top << 24) | (r.next() as u32 & 0x00ff_ffff)) & (u32::MAX << (32 - len));
        if (a >> 17) == (0xC612_0000u32 >> 17) {
            continue;
        }
        let p = IpNet::V4(Ipv4Net::new(Ipv4Addr::from(a), len).expect("valid length"));
        if !seen.insert(p) {
            continue;
        }
        let idx = r.below(sets as u64) as usize;
        let attrs = if idx < set_cache.len() {
            set_cache[idx].clone()
        } else {
            let plen = 2 + r.below(9) as usize;
            let mut path: Vec<u32> = (0..plen - 1)
                .map(|_| 64500 + r.below(transits) as u32)
                .collect();
            path[0] = 65001;
            path.push(4_200_000_000 + r.below(origins) as u32);
            let communities = if r.below(3) == 0 {
                vec![(65001u32 << 16) | r.below(100) as u32]
            } else {
                vec![]
            };
            let a = PathAttrs {
                origin: Some(if r.below(10) == 0 {
                    Origin::Incomplete
                } else {
                    Origin::Igp
                }),
                as_path: Some(AsPath::from_sequence(path)),
                next_hop: Some(next_hop),
                med: if r.below(4) == 0 {
                    Some(r.below(1000) as u32)
                } else {
                    None
                },
                communities: communities.into(),
                ..Default::default()
            };
            set_cache.push(a.clone());
            a
        };
        groups.entry(attrs).or_default().push(Nlri::new(p));
    }
    groups.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_unicast_prefixes_with_the_usual_mix() {
        let g = generate(20_000, 7, Ipv4Addr::new(198, 18, 0, 100));
        let all: Vec<IpNet> = g
            .iter()
            .flat_map(|(_, v)| v.iter().map(|n| n.prefix))
            .collect();
        assert_eq!(all.len(), 20_000);
        assert_eq!(all.iter().collect::<HashSet<_>>().len(), 20_000);
        for p in &all {
            let IpNet::V4(v4) = p else { panic!() };
            let top = v4.addr().octets()[0];
            assert!((1..=223).contains(&top) && top != 127, "{p}");
            assert!(
                !"198.18.0.0/15".parse::<Ipv4Net>().unwrap().contains(v4),
                "{p}"
            );
        }
        let s24 = all.iter().filter(|p| p.prefix_len() == 24).count();
        assert!((0.55..0.65).contains(&(s24 as f64 / 20_000.0)), "{s24}");
        // Far fewer attribute sets than prefixes.
        assert!(g.len() < 20_000 / 2, "{}", g.len());
        // Same seed, same table.
        let again = generate(20_000, 7, Ipv4Addr::new(198, 18, 0, 100));
        let mut a: Vec<_> = all.clone();
        let mut b: Vec<IpNet> = again
            .iter()
            .flat_map(|(_, v)| v.iter().map(|n| n.prefix))
            .collect();
        a.sort();
        b.sort();
        assert_eq!(a, b);
    }
}
