//! [`RangeMap`]: the key ranges of one index that some subscriptions read, each with the
//! subscriptions that read it, answering "which ranges contain this written key?" in
//! O(log n + hits) expected time however many ranges there are.
//!
//! It is an interval tree: a treap ordered by `(start, end)` whose nodes also carry the largest
//! `end` in their subtree, so a lookup skips every subtree that ends at or before the key. No
//! well-kept crate offers a dynamic interval map over byte-string keys that is `Send`, so this is
//! the textbook structure, kept small. Identical ranges (1,000 subscribers of one query) share one
//! node.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::hash::Hash;

/// The end of a range: a key (exclusive), or no end at all.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum End {
    /// Exclusive upper bound. Declared first so every key sorts below `Unbounded`.
    Before(Vec<u8>),
    Unbounded,
}

impl End {
    pub fn from_option(end: Option<Vec<u8>>) -> End {
        end.map_or(End::Unbounded, End::Before)
    }

    /// Whether `key` lies before this end.
    fn is_after(&self, key: &[u8]) -> bool {
        match self {
            End::Before(end) => key < end.as_slice(),
            End::Unbounded => true,
        }
    }
}

/// `[start, end)`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyRange {
    pub start: Vec<u8>,
    pub end: End,
}

struct Node<T> {
    range: KeyRange,
    priority: u64,
    /// The largest `end` in this subtree.
    max_end: End,
    holders: HashSet<T>,
    left: Option<Box<Node<T>>>,
    right: Option<Box<Node<T>>>,
}

impl<T> Node<T> {
    fn update(&mut self) {
        let mut max = self.range.end.clone();
        for child in [&self.left, &self.right].into_iter().flatten() {
            if child.max_end > max {
                max = child.max_end.clone();
            }
        }
        self.max_end = max;
    }
}

type Link<T> = Option<Box<Node<T>>>;

/// Ranges of index keys, each held by a set of `T`s.
pub struct RangeMap<T> {
    root: Link<T>,
    ranges: usize,
    /// Priorities come from a counter through splitmix64: well spread, and not something a
    /// client can steer.
    counter: u64,
}

impl<T> Default for RangeMap<T> {
    fn default() -> Self {
        RangeMap {
            root: None,
            ranges: 0,
            counter: 0,
        }
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Split `link` into the nodes ordered before `range` and the rest.
fn split<T>(link: Link<T>, range: &KeyRange) -> (Link<T>, Link<T>) {
    match link {
        None => (None, None),
        Some(mut node) => {
            if node.range < *range {
                let (lower, upper) = split(node.right.take(), range);
                node.right = lower;
                node.update();
                (Some(node), upper)
            } else {
                let (lower, upper) = split(node.left.take(), range);
                node.left = upper;
                node.update();
                (lower, Some(node))
            }
        }
    }
}

/// Join two treaps where every range of `a` orders before every range of `b`.
fn merge<T>(a: Link<T>, b: Link<T>) -> Link<T> {
    match (a, b) {
        (None, b) => b,
        (a, None) => a,
        (Some(mut a), Some(mut b)) => {
            if a.priority > b.priority {
                a.right = merge(a.right.take(), Some(b));
                a.update();
                Some(a)
            } else {
                b.left = merge(Some(a), b.left.take());
                b.update();
                Some(b)
            }
        }
    }
}

fn find_mut<'a, T>(mut link: &'a mut Link<T>, range: &KeyRange) -> Option<&'a mut Node<T>> {
    while let Some(node) = link {
        match range.cmp(&node.range) {
            Ordering::Less => link = &mut node.left,
            Ordering::Greater => link = &mut node.right,
            Ordering::Equal => return Some(node),
        }
    }
    None
}

/// Remove the node of `range` when `remove_holder` leaves it empty. Returns whether a node went.
fn remove_holder<T: Eq + Hash>(link: &mut Link<T>, range: &KeyRange, holder: &T) -> bool {
    let Some(node) = link else {
        return false;
    };
    let removed = match range.cmp(&node.range) {
        Ordering::Less => remove_holder(&mut node.left, range, holder),
        Ordering::Greater => remove_holder(&mut node.right, range, holder),
        Ordering::Equal => {
            node.holders.remove(holder);
            if node.holders.is_empty() {
                let mut gone = link.take().expect("matched above");
                *link = merge(gone.left.take(), gone.right.take());
                return true;
            }
            false
        }
    };
    if removed {
        if let Some(node) = link {
            node.update();
        }
    }
    removed
}

fn stab<'a, T>(link: &'a Link<T>, key: &[u8], found: &mut impl FnMut(&'a T)) {
    let Some(node) = link else {
        return;
    };
    if !node.max_end.is_after(key) {
        return;
    }
    stab(&node.left, key, found);
    if node.range.start.as_slice() <= key {
        if node.range.end.is_after(key) {
            node.holders.iter().for_each(&mut *found);
        }
        stab(&node.right, key, found);
    }
}

impl<T: Eq + Hash> RangeMap<T> {
    /// Distinct ranges held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.ranges
    }

    pub fn is_empty(&self) -> bool {
        self.ranges == 0
    }

    pub fn insert(&mut self, range: KeyRange, holder: T) {
        if let Some(node) = find_mut(&mut self.root, &range) {
            node.holders.insert(holder);
            return;
        }
        self.counter += 1;
        let node = Box::new(Node {
            max_end: range.end.clone(),
            priority: splitmix64(self.counter),
            holders: HashSet::from([holder]),
            left: None,
            right: None,
            range,
        });
        let (lower, upper) = split(self.root.take(), &node.range);
        self.root = merge(merge(lower, Some(node)), upper);
        self.ranges += 1;
    }

    /// Drop `holder` from `range`; the range goes when nobody holds it.
    pub fn remove(&mut self, range: &KeyRange, holder: &T) {
        if remove_holder(&mut self.root, range, holder) {
            self.ranges -= 1;
        }
    }

    /// Call `found` with every holder of a range containing `key`.
    pub fn for_each_containing<'a>(&'a self, key: &[u8], mut found: impl FnMut(&'a T)) {
        stab(&self.root, key, &mut found);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn range(start: &[u8], end: Option<&[u8]>) -> KeyRange {
        KeyRange {
            start: start.to_vec(),
            end: End::from_option(end.map(<[u8]>::to_vec)),
        }
    }

    fn holders(map: &RangeMap<u32>, key: &[u8]) -> Vec<u32> {
        let mut found = Vec::new();
        map.for_each_containing(key, |h| found.push(*h));
        found.sort();
        found
    }

    #[test]
    fn finds_containing_ranges_and_forgets_removed_ones() {
        let mut map = RangeMap::default();
        map.insert(range(b"b", Some(b"d")), 1);
        map.insert(range(b"b", Some(b"d")), 2);
        map.insert(range(b"a", None), 3);
        map.insert(range(b"x", Some(b"y")), 4);
        assert_eq!(map.len(), 3);
        assert_eq!(holders(&map, b"c"), vec![1, 2, 3]);
        assert_eq!(holders(&map, b"d"), vec![3]);
        assert_eq!(holders(&map, b"0"), Vec::<u32>::new());
        assert_eq!(holders(&map, b"x"), vec![3, 4]);
        map.remove(&range(b"b", Some(b"d")), &1);
        assert_eq!(holders(&map, b"c"), vec![2, 3]);
        map.remove(&range(b"b", Some(b"d")), &2);
        map.remove(&range(b"a", None), &3);
        assert_eq!(map.len(), 1);
        assert_eq!(holders(&map, b"c"), Vec::<u32>::new());
        assert_eq!(holders(&map, b"x"), vec![4]);
    }

    proptest! {
        /// Against a plain list: the same holders for every key, after inserts and removals.
        #[test]
        fn agrees_with_a_linear_scan(
            ops in prop::collection::vec((any::<bool>(), 0u8..20, 0u8..20, any::<bool>(), 0u32..6), 1..200),
            keys in prop::collection::vec(0u8..22, 1..20),
        ) {
            let mut map = RangeMap::default();
            let mut plain: Vec<(KeyRange, u32)> = Vec::new();
            for (insert, a, b, unbounded, holder) in ops {
                let (lo, hi) = (a.min(b), a.max(b));
                let hi = [hi];
                let r = range(&[lo], if unbounded { None } else { Some(&hi[..]) });
                if insert {
                    map.insert(r.clone(), holder);
                    if !plain.contains(&(r.clone(), holder)) {
                        plain.push((r, holder));
                    }
                } else {
                    map.remove(&r, &holder);
                    plain.retain(|(pr, ph)| !(pr == &r && *ph == holder));
                }
            }
            let distinct: HashSet<&KeyRange> = plain.iter().map(|(r, _)| r).collect();
            prop_assert_eq!(map.len(), distinct.len());
            for key in keys {
                let mut expected: Vec<u32> = plain
                    .iter()
                    .filter(|(r, _)| r.start.as_slice() <= &[key][..] && r.end.is_after(&[key]))
                    .map(|(_, h)| *h)
                    .collect();
                expected.sort();
                prop_assert_eq!(holders(&map, &[key]), expected);
            }
        }
    }
}
