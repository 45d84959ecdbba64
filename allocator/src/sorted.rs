//! `SortedVec`: an ordered set kept as a sorted vector, for the small sets
//! of a role's children (a handful of siblings per level). Re-filing a
//! child after each grant is then a binary search and a short move in one
//! cache line or two, not a B-tree's node walk and rebalancing; with roles
//! three levels deep that re-filing happens three times per grant.

#[derive(Clone, Debug)]
pub(crate) struct SortedVec<K>(Vec<K>);

impl<K> Default for SortedVec<K> {
    fn default() -> Self {
        SortedVec(Vec::new())
    }
}

impl<K: Ord + Copy> SortedVec<K> {
    /// Adds `k`; false if it was there already.
    pub(crate) fn insert(&mut self, k: K) -> bool {
        match self.0.binary_search(&k) {
            Ok(_) => false,
            Err(at) => {
                self.0.insert(at, k);
                true
            }
        }
    }

    /// Removes `k`; false if it was not there.
    pub(crate) fn remove(&mut self, k: &K) -> bool {
        match self.0.binary_search(k) {
            Ok(at) => {
                self.0.remove(at);
                true
            }
            Err(_) => false,
        }
    }

    /// Replaces `old` (which must be there) with `new`, in place when
    /// `new` sorts between the same neighbours (the common case: a share
    /// moves a little after a grant), else by removing and inserting.
    pub(crate) fn replace(&mut self, old: &K, new: K) {
        if let Ok(at) = self.0.binary_search(old) {
            let after_prev = at == 0 || self.0[at - 1] < new;
            let before_next = at + 1 == self.0.len() || new < self.0[at + 1];
            if after_prev && before_next {
                self.0[at] = new;
                return;
            }
            self.0.remove(at);
        }
        self.insert(new);
    }

    #[cfg(test)]
    pub(crate) fn contains(&self, k: &K) -> bool {
        self.0.binary_search(k).is_ok()
    }

    pub(crate) fn first(&self) -> Option<&K> {
        self.0.first()
    }

    pub(crate) fn iter(&self) -> std::slice::Iter<'_, K> {
        self.0.iter()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    proptest! {
        #[test]
        fn behaves_like_a_btree_set(ops in prop::collection::vec((any::<bool>(), 0u8..20), 0..100)) {
            let (mut v, mut b) = (SortedVec::default(), BTreeSet::new());
            for (add, k) in ops {
                if add && k % 3 == 0 {
                    if let Some(&old) = v.first() {
                        v.replace(&old, k);
                        b.remove(&old);
                        b.insert(k);
                    }
                } else if add {
                    prop_assert_eq!(v.insert(k), b.insert(k));
                } else {
                    prop_assert_eq!(v.remove(&k), b.remove(&k));
                }
                prop_assert_eq!(v.iter().copied().collect::<Vec<_>>(), b.iter().copied().collect::<Vec<_>>());
                prop_assert_eq!(v.first(), b.first());
                prop_assert_eq!(v.contains(&k), b.contains(&k));
                prop_assert_eq!(v.is_empty(), b.is_empty());
            }
        }
    }
}
