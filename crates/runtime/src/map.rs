//! Associative arrays: keys, a fast hasher, and an insertion-ordered table.
//!
//! stap keeps each map's entries on a list in insertion order; unsorted `foreach` walks
//! that list and sorting is stable over it. [`Table`] reproduces this with a hash map
//! from key to (insertion sequence, value): insert and delete stay O(1) and `foreach`
//! sorts by the sequence.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// One key component.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum KeyPart {
    /// A long.
    L(i64),
    /// A string.
    S(String),
}

/// A whole key; the one-long case, by far the most common (`c[tid()]`), needs no
/// allocation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    /// One long.
    L(i64),
    /// One string.
    S(String),
    /// Several components (or none).
    M(Box<[KeyPart]>),
}

impl Key {
    /// Builds a key from its parts.
    pub(crate) fn from_parts(mut parts: Vec<KeyPart>) -> Key {
        if parts.len() == 1 {
            match parts.pop() {
                Some(KeyPart::L(v)) => return Key::L(v),
                Some(KeyPart::S(s)) => return Key::S(s),
                None => {}
            }
        }
        Key::M(parts.into_boxed_slice())
    }

    /// Component `i` as a part (cloned).
    pub(crate) fn part(&self, i: usize) -> KeyPart {
        match self {
            Key::L(v) => KeyPart::L(*v),
            Key::S(s) => KeyPart::S(s.clone()),
            Key::M(p) => p.get(i).cloned().unwrap_or(KeyPart::L(0)),
        }
    }

    /// Compares component `i` of two keys.
    pub(crate) fn cmp_part(&self, other: &Key, i: usize) -> std::cmp::Ordering {
        match (self, other) {
            (Key::L(a), Key::L(b)) => a.cmp(b),
            (Key::S(a), Key::S(b)) => a.as_bytes().cmp(b.as_bytes()),
            (Key::M(a), Key::M(b)) => match (a.get(i), b.get(i)) {
                (Some(KeyPart::L(x)), Some(KeyPart::L(y))) => x.cmp(y),
                (Some(KeyPart::S(x)), Some(KeyPart::S(y))) => x.as_bytes().cmp(y.as_bytes()),
                _ => std::cmp::Ordering::Equal,
            },
            _ => std::cmp::Ordering::Equal,
        }
    }
}

/// The Fx hash (as used inside rustc): one multiply per word, good enough for keys that
/// are thread ids and short strings, and much faster than SipHash.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.hash = (self.hash.rotate_left(5) ^ w).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_i64(&mut self, i: i64) {
        self.add(i as u64);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

/// A hash map with [`FxHasher`].
pub(crate) type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// An insertion-ordered table of values.
#[derive(Clone, Debug)]
pub(crate) struct Table<V> {
    map: FxMap<Key, (u64, V)>,
    seq: u64,
}

impl<V> Default for Table<V> {
    fn default() -> Self {
        Table {
            map: FxMap::default(),
            seq: 0,
        }
    }
}

impl<V> Table<V> {
    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
    /// The value at `k`.
    #[inline]
    pub(crate) fn get(&self, k: &Key) -> Option<&V> {
        self.map.get(k).map(|e| &e.1)
    }
    /// The value at `k`, mutable.
    #[inline]
    pub(crate) fn get_mut(&mut self, k: &Key) -> Option<&mut V> {
        self.map.get_mut(k).map(|e| &mut e.1)
    }
    /// Whether `k` is present.
    pub(crate) fn contains(&self, k: &Key) -> bool {
        self.map.contains_key(k)
    }
    /// Inserts a new entry at the end of the order (the caller checked it is absent).
    #[inline]
    pub(crate) fn insert_new(&mut self, k: Key, v: V) -> &mut V {
        self.seq += 1;
        &mut self.map.entry(k).or_insert((self.seq, v)).1
    }
    /// Removes `k`.
    pub(crate) fn remove(&mut self, k: &Key) {
        self.map.remove(k);
    }
    /// Removes everything.
    pub(crate) fn clear(&mut self) {
        self.map.clear();
    }
    /// Entries in insertion order.
    pub(crate) fn ordered(&self) -> Vec<(&Key, &V)> {
        let mut v: Vec<(u64, &Key, &V)> = self.map.iter().map(|(k, e)| (e.0, k, &e.1)).collect();
        v.sort_unstable_by_key(|e| e.0);
        v.into_iter().map(|(_, k, v)| (k, v)).collect()
    }
}
