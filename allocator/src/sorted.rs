//! `Ordered`: an ordered set for the allocator's orders (a role's clients,
//! a role's children, the top-level roles), re-filed after every grant.
//!
//! Small sets (the usual: tens of clients in a role, a handful of
//! siblings, a hundred roles) are a sorted ring buffer (`VecDeque`). After
//! a grant the entry re-filed is usually the first (the one just served)
//! and goes to the back (its share is now the largest): a pop and a push.
//! Other moves are binary searches and a shift of the shorter side, within
//! a few cache lines. A B-tree's remove and insert, with their node walks
//! and rebalancing, were 40 % of a 10,000-agent cycle's instructions. A set
//! grown past `LARGE_FROM` entries becomes a B-tree, where a shift across
//! the set would copy kilobytes per grant, and goes back to a ring buffer
//! once under `SMALL_BELOW`.
//!
//! Invariant: iteration order, `first` and membership are always those of
//! a `BTreeSet` given the same operations (the proptest below).

use std::collections::{BTreeSet, VecDeque};

/// A vector at most this long stays one; one more entry makes a B-tree.
const LARGE_FROM: usize = 256;
/// A B-tree that shrinks below this goes back to a vector (a gap, so a
/// set near the bound does not switch at every grant).
const SMALL_BELOW: usize = 128;

#[derive(Clone, Debug)]
pub(crate) enum Ordered<K> {
    Small(VecDeque<K>),
    Large(BTreeSet<K>),
}

impl<K> Default for Ordered<K> {
    fn default() -> Self {
        Ordered::Small(VecDeque::new())
    }
}

/// Iterates an [`Ordered`] in order.
pub(crate) enum Iter<'a, K> {
    Small(std::collections::vec_deque::Iter<'a, K>),
    Large(std::collections::btree_set::Iter<'a, K>),
}

impl<'a, K> Iterator for Iter<'a, K> {
    type Item = &'a K;

    #[inline]
    fn next(&mut self) -> Option<&'a K> {
        match self {
            Iter::Small(i) => i.next(),
            Iter::Large(i) => i.next(),
        }
    }
}

impl<K: Ord + Copy> Ordered<K> {
    /// Adds `k`; false if it was there already.
    pub(crate) fn insert(&mut self, k: K) -> bool {
        let added = match self {
            Ordered::Small(v) => match v.binary_search(&k) {
                Ok(_) => false,
                Err(at) => {
                    v.insert(at, k);
                    true
                }
            },
            Ordered::Large(b) => b.insert(k),
        };
        self.rebalance();
        added
    }

    /// Removes `k`; false if it was not there.
    pub(crate) fn remove(&mut self, k: &K) -> bool {
        let removed = match self {
            Ordered::Small(v) => match v.binary_search(k) {
                Ok(at) => {
                    v.remove(at);
                    true
                }
                Err(_) => false,
            },
            Ordered::Large(b) => b.remove(k),
        };
        self.rebalance();
        removed
    }

    /// Replaces `old` with `new`: the same as removing `old` (if there)
    /// and inserting `new`, in one move of the entries between the two
    /// places for a vector.
    pub(crate) fn replace(&mut self, old: &K, new: K) {
        let Ordered::Small(v) = self else {
            self.remove(old);
            self.insert(new);
            return;
        };
        // After a grant the entry re-filed is usually the first (the one
        // served) and goes to the end (its share is now the largest): a
        // ring buffer turns that into taking it off the front and putting
        // it on the back. Otherwise the shorter side of each place moves.
        if v.front() == Some(old) && v.back().is_some_and(|last| *last < new) {
            v.pop_front();
            v.push_back(new);
            return;
        }
        let Ok(i) = v.binary_search(old) else {
            self.insert(new);
            return;
        };
        v.remove(i);
        match v.binary_search(&new) {
            Ok(_) => {}
            Err(at) => v.insert(at, new),
        }
    }

    /// Moves between the two forms at their bounds.
    #[inline]
    fn rebalance(&mut self) {
        match self {
            Ordered::Small(v) if v.len() > LARGE_FROM => {
                let b: BTreeSet<K> = v.drain(..).collect();
                *self = Ordered::Large(b);
            }
            Ordered::Large(b) if b.len() < SMALL_BELOW => {
                let v: VecDeque<K> = std::mem::take(b).into_iter().collect();
                *self = Ordered::Small(v);
            }
            _ => {}
        }
    }

    #[cfg(test)]
    pub(crate) fn contains(&self, k: &K) -> bool {
        match self {
            Ordered::Small(v) => v.binary_search(k).is_ok(),
            Ordered::Large(b) => b.contains(k),
        }
    }

    pub(crate) fn first(&self) -> Option<&K> {
        match self {
            Ordered::Small(v) => v.front(),
            Ordered::Large(b) => b.first(),
        }
    }

    pub(crate) fn iter(&self) -> Iter<'_, K> {
        match self {
            Ordered::Small(v) => Iter::Small(v.iter()),
            Ordered::Large(b) => Iter::Large(b.iter()),
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Ordered::Small(v) => v.len(),
            Ordered::Large(b) => b.len(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn clear(&mut self) {
        *self = Ordered::Small(VecDeque::new());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn op() -> impl Strategy<Value = (u8, u16, u16)> {
        (0u8..4, 0u16..700, 0u16..700)
    }

    proptest! {
        // Keys from a range wide enough, and runs long enough, to cross
        // both bounds in both directions.
        #[test]
        fn behaves_like_a_btree_set(ops in prop::collection::vec(op(), 0..1500)) {
            let (mut o, mut b) = (Ordered::default(), BTreeSet::new());
            for (kind, k, n) in ops {
                match kind {
                    0 | 1 => prop_assert_eq!(o.insert(k), b.insert(k)),
                    2 => prop_assert_eq!(o.remove(&k), b.remove(&k)),
                    _ => {
                        // Replace an entry that is there (the allocator's
                        // use), or one that is not.
                        let old = if k % 2 == 0 { b.iter().nth(usize::from(k) % b.len().max(1)).copied().unwrap_or(k) } else { k };
                        o.replace(&old, n);
                        b.remove(&old);
                        b.insert(n);
                    }
                }
                prop_assert_eq!(o.len(), b.len());
                prop_assert_eq!(o.first(), b.first());
                prop_assert_eq!(o.contains(&k), b.contains(&k));
                prop_assert_eq!(o.is_empty(), b.is_empty());
            }
            prop_assert_eq!(o.iter().copied().collect::<Vec<_>>(), b.iter().copied().collect::<Vec<_>>());
        }

        #[test]
        fn replace_in_a_small_set_keeps_it_sorted(mut keys in prop::collection::btree_set(0u32..100, 1..50), pick in 0usize..50, new in 0u32..100) {
            let mut o = Ordered::default();
            for &k in &keys {
                o.insert(k);
            }
            let old = *keys.iter().nth(pick % keys.len()).unwrap();
            o.replace(&old, new);
            keys.remove(&old);
            keys.insert(new);
            prop_assert!(matches!(o, Ordered::Small(_)));
            prop_assert_eq!(o.iter().copied().collect::<Vec<_>>(), keys.into_iter().collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_set_switches_form_at_its_bounds_and_back() {
        let mut o = Ordered::default();
        for k in 0..=LARGE_FROM as u32 {
            o.insert(k);
        }
        assert!(matches!(o, Ordered::Large(_)));
        // 257 entries; down to 128 it stays a tree, at 127 a vector again.
        for k in 0..(LARGE_FROM - SMALL_BELOW + 1) as u32 {
            o.remove(&k);
        }
        assert!(matches!(o, Ordered::Large(_)));
        o.remove(&((LARGE_FROM - SMALL_BELOW + 1) as u32));
        assert!(matches!(o, Ordered::Small(_)));
        assert_eq!(o.len(), SMALL_BELOW - 1);
        assert_eq!(o.first(), Some(&((LARGE_FROM - SMALL_BELOW + 2) as u32)));
    }
}
