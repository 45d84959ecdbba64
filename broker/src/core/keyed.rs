//! A map for the core's agents and frameworks: looked up by id on every
//! offer, launch and update, iterated in id order only by scans and
//! `/state`.
//!
//! A `BTreeMap` keyed by id text costs a dozen string comparisons per
//! look-up, each reading a key from another cache line: at 10,000 agents
//! those look-ups were a large part of booking an offer. Here look-ups go
//! through a hash map (foldhash, seeded per process: ids come from the
//! network, so not a fixed hash),
//! and a sorted set of the keys keeps iteration in id order, so everything
//! the core produces stays deterministic.

use std::borrow::Borrow;
use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;

/// The books' hasher: foldhash with a per-process random seed.
pub(super) type Hasher = foldhash::fast::RandomState;

#[derive(Debug, Clone)]
pub(super) struct Keyed<K, V> {
    map: HashMap<K, V, Hasher>,
    order: BTreeSet<K>,
}

impl<K, V> Default for Keyed<K, V> {
    fn default() -> Self {
        Keyed {
            map: HashMap::default(),
            order: BTreeSet::new(),
        }
    }
}

impl<K: Ord + Hash + Clone, V> Keyed<K, V> {
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get(key)
    }

    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get_mut(key)
    }

    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.contains_key(key)
    }

    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let old = self.map.insert(key.clone(), value);
        if old.is_none() {
            self.order.insert(key);
        }
        old
    }

    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Ord + Eq + ?Sized,
    {
        let value = self.map.remove(key)?;
        self.order.remove(key);
        Some(value)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Entries in key order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&K, &V)> + '_ {
        self.order.iter().map(|k| (k, &self.map[k]))
    }

    /// Keys in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &K> + '_ {
        self.order.iter()
    }

    /// Values in key order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> + '_ {
        self.order.iter().map(|k| &self.map[k])
    }
}

impl<'a, K: Ord + Hash + Clone, V> IntoIterator for &'a Keyed<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = Box<dyn DoubleEndedIterator<Item = (&'a K, &'a V)> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

impl<K: Ord + Hash + Clone + Borrow<Q>, Q: Hash + Eq + ?Sized, V> std::ops::Index<&Q>
    for Keyed<K, V>
{
    type Output = V;

    fn index(&self, key: &Q) -> &V {
        &self.map[key]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever is inserted and removed, it answers as a BTreeMap does,
        /// iteration order included.
        #[test]
        fn behaves_as_a_btree_map(ops in prop::collection::vec((any::<bool>(), 0u8..40, any::<u16>()), 1..200)) {
            let mut keyed: Keyed<String, u16> = Keyed::default();
            let mut model = std::collections::BTreeMap::new();
            for (insert, k, v) in ops {
                let key = format!("k{k}");
                if insert {
                    prop_assert_eq!(keyed.insert(key.clone(), v), model.insert(key, v));
                } else {
                    prop_assert_eq!(keyed.remove(key.as_str()), model.remove(key.as_str()));
                }
                prop_assert_eq!(keyed.len(), model.len());
            }
            prop_assert!(keyed.iter().eq(model.iter()));
            prop_assert!(keyed.keys().rev().eq(model.keys().rev()));
            for (k, v) in &model {
                prop_assert_eq!(keyed.get(k.as_str()), Some(v));
                prop_assert_eq!(&keyed[k.as_str()], v);
                prop_assert!(keyed.contains_key(k.as_str()));
            }
        }
    }
}
