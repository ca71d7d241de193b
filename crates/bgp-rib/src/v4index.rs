//! The Loc-RIB's IPv4 index: prefix -> destination id, each entry one
//! `u64` (address 32 bits, length 6, id 26) in an open-addressing table
//! with linear probing, 8 bytes a slot and nothing beside them: a lookup
//! reads one cache line (the slot's, rarely also the next), where
//! hashbrown's table reads two (its control bytes, then the entry), and
//! where a slot is is known from the prefix alone, so the slot of a prefix
//! about to be imported can be fetched ahead ([`V4Index::prefetch`]).
//! Removal shifts the entries after the removed one back (no tombstones),
//! so the probes never lengthen as prefixes come and go. Hashed with
//! hashbrown's default hasher, randomly seeded: prefixes crafted by a peer
//! cannot be made to pile up in one run of slots.

use std::hash::BuildHasher;

use ipnet::Ipv4Net;

/// Bits of an entry that hold the destination id.
pub(crate) const ID_BITS: u32 = 26;
const ID_MASK: u64 = (1 << ID_BITS) - 1;
/// An empty slot: no key has all of its bits set (a length is at most 32,
/// so its six bits are never all ones).
const EMPTY: u64 = u64::MAX;

#[derive(Default)]
pub(crate) struct V4Index {
    /// A power of two long (or empty).
    slots: Box<[u64]>,
    len: usize,
    hasher: hashbrown::DefaultHashBuilder,
}

impl V4Index {
    fn key(p: &Ipv4Net) -> u64 {
        (u64::from(u32::from(p.addr())) << 6) | u64::from(p.prefix_len())
    }

    /// The slot where the probe for `key` starts.
    fn home(&self, key: u64) -> usize {
        (self.hasher.hash_one(key) as usize) & (self.slots.len() - 1)
    }

    /// The slot holding `key`'s entry, if any.
    fn find(&self, key: u64) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(key);
        loop {
            let e = self.slots[i];
            if e == EMPTY {
                return None;
            }
            if e >> ID_BITS == key {
                return Some(i);
            }
            i = (i + 1) & mask;
        }
    }

    pub(crate) fn get(&self, p: &Ipv4Net) -> Option<u32> {
        self.find(Self::key(p))
            .map(|i| (self.slots[i] & ID_MASK) as u32)
    }

    /// Ask the CPU to bring `p`'s slot into the cache, so that looking it
    /// up a little later does not wait for memory.
    pub(crate) fn prefetch(&self, p: &Ipv4Net) {
        if self.slots.is_empty() {
            return;
        }
        let i = self.home(Self::key(p));
        crate::prefetch::read(&self.slots[i]);
    }

    /// The id of `p`, or a new one from `new` (none: `p` is not added).
    pub(crate) fn get_or_insert_with(
        &mut self,
        p: &Ipv4Net,
        new: impl FnOnce() -> Option<u32>,
    ) -> Option<u32> {
        let key = Self::key(p);
        if let Some(i) = self.find(key) {
            return Some((self.slots[i] & ID_MASK) as u32);
        }
        let id = new()?;
        // At most four slots in five full: the probe for a missing key
        // stays within a cache line or two.
        if (self.len + 1) * 5 > self.slots.len() * 4 {
            self.grow();
        }
        self.put((key << ID_BITS) | u64::from(id));
        self.len += 1;
        Some(id)
    }

    /// Place an entry whose key is not in the table (there is room).
    fn put(&mut self, e: u64) {
        let mask = self.slots.len() - 1;
        let mut i = self.home(e >> ID_BITS);
        while self.slots[i] != EMPTY {
            i = (i + 1) & mask;
        }
        self.slots[i] = e;
    }

    fn grow(&mut self) {
        let n = (self.slots.len() * 2).max(16);
        let old = std::mem::replace(&mut self.slots, vec![EMPTY; n].into_boxed_slice());
        for e in old.iter().copied().filter(|&e| e != EMPTY) {
            self.put(e);
        }
    }

    /// Remove `p` if it names destination `id`.
    pub(crate) fn remove_if(&mut self, p: &Ipv4Net, id: u32) -> bool {
        let key = Self::key(p);
        let Some(mut hole) = self.find(key) else {
            return false;
        };
        if self.slots[hole] & ID_MASK != u64::from(id) {
            return false;
        }
        // Shift back each later entry of the run that the hole would cut
        // off from its home slot.
        let mask = self.slots.len() - 1;
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let e = self.slots[j];
            if e == EMPTY {
                break;
            }
            let home = self.home(e >> ID_BITS);
            // `e` may stay iff its home is cyclically within (hole, j].
            let stays = if hole < j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.slots[hole] = e;
                hole = j;
            }
        }
        self.slots[hole] = EMPTY;
        self.len -= 1;
        true
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (Ipv4Net, u32)> + '_ {
        self.slots.iter().filter(|&&e| e != EMPTY).map(|&e| {
            let k = e >> ID_BITS;
            let addr = std::net::Ipv4Addr::from((k >> 6) as u32);
            let net = Ipv4Net::new(addr, (k & 63) as u8).unwrap_or_default();
            (net, (e & ID_MASK) as u32)
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn net(i: u32) -> Ipv4Net {
        // Spread over the space (an odd multiplier is one to one on the
        // top 24 bits), lengths 24..=32: distinct for each i < 2^24.
        let len = 24 + (i % 9) as u8;
        let addr = (i.wrapping_mul(0x9E37_79B9) & 0xFF_FFFF) << 8;
        Ipv4Net::new(std::net::Ipv4Addr::from(addr), len).unwrap()
    }

    #[test]
    fn agrees_with_a_map_through_inserts_and_removals() {
        let mut ix = V4Index::default();
        let mut model: HashMap<Ipv4Net, u32> = HashMap::new();
        let mut next = 0u32;
        let mut r = 0x2545_F491_4F6C_DD1Du64;
        for step in 0..60_000u32 {
            r ^= r << 13;
            r ^= r >> 7;
            r ^= r << 17;
            let p = net((r % 5_000) as u32);
            if r.is_multiple_of(3) {
                // Remove (by the id it has, or by a wrong id: kept).
                let id = model.get(&p).copied();
                let wrong = id.map(|i| i + 1).unwrap_or(7);
                assert!(!ix.remove_if(&p, wrong));
                if let Some(id) = id {
                    assert!(ix.remove_if(&p, id), "step {step}: {p}");
                    model.remove(&p);
                } else {
                    assert!(!ix.remove_if(&p, 0));
                }
            } else {
                let got = ix.get_or_insert_with(&p, || {
                    next += 1;
                    Some(next)
                });
                let want = *model.entry(p).or_insert(next);
                assert_eq!(got, Some(want), "step {step}: {p}");
            }
            assert_eq!(ix.len(), model.len());
        }
        for (p, id) in &model {
            assert_eq!(ix.get(p), Some(*id), "{p}");
        }
        let mut all: Vec<(Ipv4Net, u32)> = ix.iter().collect();
        let mut want: Vec<(Ipv4Net, u32)> = model.into_iter().collect();
        all.sort();
        want.sort();
        assert_eq!(all, want);
        // Absent prefixes are not found, and prefetching any is harmless.
        for i in 5_000..6_000 {
            assert_eq!(ix.get(&net(i)), None);
            ix.prefetch(&net(i));
        }
    }

    #[test]
    fn a_refused_id_adds_nothing_and_the_table_stays_under_four_fifths() {
        let mut ix = V4Index::default();
        assert_eq!(ix.get_or_insert_with(&net(1), || None), None);
        assert_eq!(ix.len(), 0);
        assert_eq!(ix.get(&net(1)), None);
        ix.prefetch(&net(1));
        for i in 0..10_000 {
            ix.get_or_insert_with(&net(i), || Some(i));
            assert!(ix.len() * 5 <= ix.slots.len() * 4);
        }
        // Every entry reachable from its home slot without an empty slot
        // between (what removal's shifting keeps true).
        for i in (0..10_000).step_by(3) {
            assert!(ix.remove_if(&net(i), i));
        }
        let mask = ix.slots.len() - 1;
        for (s, &e) in ix.slots.iter().enumerate() {
            if e == EMPTY {
                continue;
            }
            let mut h = ix.home(e >> ID_BITS);
            while h != s {
                assert_ne!(ix.slots[h], EMPTY, "slot {s}: a gap before it");
                h = (h + 1) & mask;
            }
        }
        assert_eq!(ix.len(), 10_000 - 3_334);
    }
}
