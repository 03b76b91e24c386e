//! Bounded tables: every cache the tracer keeps in userspace is filled from
//! what other users do (their processes, namespaces, interfaces, netlink
//! requests), so each has a fixed number of entries, and the entry written
//! longest ago makes room for a new one. Also the kernel's name limits,
//! which names from requests are cut to before they are remembered.

use std::{
    collections::{HashMap, VecDeque},
    hash::Hash,
};

/// IFNAMSIZ (16) less the NUL: the longest interface name the kernel takes.
pub const IFNAME_MAX: usize = 15;

/// `s` cut to at most `max` bytes, on a character boundary.
pub fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A map of at most `cap` entries. Inserting into a full map evicts the
/// entry inserted (or last replaced) longest ago, and counts it.
#[derive(Debug)]
pub struct BoundedMap<K, V> {
    cap: usize,
    map: HashMap<K, (V, u64)>,
    /// Keys in insertion order with the generation they were inserted at;
    /// an entry whose generation no longer matches the map's is stale.
    order: VecDeque<(K, u64)>,
    next_gen: u64,
    /// Entries evicted to make room, so far.
    pub evicted: u64,
}

impl<K: Eq + Hash + Clone, V> BoundedMap<K, V> {
    pub fn new(cap: usize) -> Self {
        Self { cap: cap.max(1), map: HashMap::new(), order: VecDeque::new(), next_gen: 0, evicted: 0 }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn get(&self, k: &K) -> Option<&V> {
        self.map.get(k).map(|(v, _)| v)
    }

    pub fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        self.map.get_mut(k).map(|(v, _)| v)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.map.iter().map(|(k, (v, _))| (k, v))
    }

    pub fn contains_key(&self, k: &K) -> bool {
        self.map.contains_key(k)
    }

    /// Inserts or replaces; a replaced entry counts as new for eviction.
    pub fn insert(&mut self, k: K, v: V) -> Option<V> {
        let generation = self.next_gen;
        self.next_gen += 1;
        let old = self.map.insert(k.clone(), (v, generation)).map(|(v, _)| v);
        self.order.push_back((k, generation));
        while self.map.len() > self.cap {
            let Some((k, g)) = self.order.pop_front() else { break };
            if self.map.get(&k).is_some_and(|(_, cur)| *cur == g) {
                self.map.remove(&k);
                self.evicted += 1;
            }
        }
        // Replaced and removed keys leave stale entries behind: drop them
        // before they outnumber the live ones.
        if self.order.len() > 2 * self.cap + 16 {
            let map = &self.map;
            self.order.retain(|(k, g)| map.get(k).is_some_and(|(_, cur)| cur == g));
        }
        old
    }

    pub fn remove(&mut self, k: &K) -> Option<V> {
        self.map.remove(k).map(|(v, _)| v)
    }

    pub fn retain(&mut self, mut f: impl FnMut(&K, &mut V) -> bool) {
        self.map.retain(|k, (v, _)| f(k, v));
    }

    #[cfg(test)]
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.map.keys()
    }
}

impl<K: Eq + Hash + Clone, V> Extend<(K, V)> for BoundedMap<K, V> {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cut_on_character_boundaries() {
        assert_eq!(cut("eth0", IFNAME_MAX), "eth0");
        assert_eq!(cut(&"x".repeat(4096), IFNAME_MAX).len(), 15);
        // 'é' is two bytes: the cut falls inside the eighth one.
        assert_eq!(cut(&"é".repeat(10), IFNAME_MAX), "é".repeat(7));
        assert_eq!(cut("", 0), "");
    }

    #[test]
    fn the_oldest_entry_makes_room() {
        let mut m = BoundedMap::new(3);
        for i in 0..3 {
            m.insert(i, i * 10);
        }
        // Replacing 0 makes it the newest: 1 is the oldest now.
        m.insert(0, 1);
        m.insert(3, 30);
        assert_eq!(m.len(), 3);
        assert_eq!(m.get(&1), None);
        assert_eq!((m.get(&0), m.get(&2), m.get(&3)), (Some(&1), Some(&20), Some(&30)));
        assert_eq!(m.evicted, 1);
    }

    #[test]
    fn a_flood_of_keys_stays_within_the_cap() {
        let mut m = BoundedMap::new(100);
        for i in 0..100_000u32 {
            m.insert(i, ());
            if i % 3 == 0 {
                m.remove(&i);
            }
            if i % 5 == 0 {
                m.insert(i, ());
            }
        }
        assert!(m.len() <= 100);
        assert!(m.order.len() <= 2 * 100 + 16, "stale order entries are dropped: {}", m.order.len());
        // The newest survive.
        assert!(m.contains_key(&99_998));
        m.retain(|k, _| k % 2 == 0);
        assert!(m.keys().all(|k| k % 2 == 0));
        m.extend([(1, ()), (2, ())]);
        assert!(m.contains_key(&1) && m.len() <= 100);
    }
}
