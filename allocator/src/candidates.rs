//! The set of agents worth visiting in the next cycle: active agents whose
//! free resources could make an offer. A bitset over dense agent slots, so
//! marking and unmarking are O(1) and a cycle after a single `recover`
//! finds its one agent by scanning n/64 words instead of n agents.

#[derive(Clone, Debug, Default)]
pub(crate) struct AgentBitset {
    words: Vec<u64>,
}

impl AgentBitset {
    pub(crate) fn set(&mut self, ix: u32, on: bool) {
        let (w, b) = (ix as usize / 64, ix % 64);
        if w >= self.words.len() {
            if !on {
                return;
            }
            self.words.resize(w + 1, 0);
        }
        if on {
            self.words[w] |= 1 << b;
        } else {
            self.words[w] &= !(1 << b);
        }
    }

    #[cfg(test)]
    pub(crate) fn get(&self, ix: u32) -> bool {
        self.words.get(ix as usize / 64).is_some_and(|w| w & (1 << (ix % 64)) != 0)
    }

    /// Every member, starting at `start` and wrapping around to it.
    pub(crate) fn collect_from(&self, start: u32, out: &mut Vec<u32>) {
        out.clear();
        let limit = (self.words.len() * 64) as u32;
        let start = if limit == 0 { 0 } else { start % limit };
        self.collect_range(start, limit, out);
        self.collect_range(0, start, out);
    }

    fn collect_range(&self, lo: u32, hi: u32, out: &mut Vec<u32>) {
        if lo >= hi {
            return;
        }
        let (first, last) = (lo as usize / 64, (hi as usize - 1) / 64);
        for w in first..=last {
            let mut word = self.words[w];
            if w == first {
                word &= u64::MAX << (lo % 64);
            }
            if w == last && !hi.is_multiple_of(64) {
                word &= u64::MAX >> (64 - hi % 64);
            }
            while word != 0 {
                let bit = word.trailing_zeros();
                out.push((w * 64) as u32 + bit);
                word &= word - 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn rotation_visits_every_member_once(members in prop::collection::btree_set(0u32..300, 0..50), start in 0u32..400) {
            let mut set = AgentBitset::default();
            for m in &members {
                set.set(*m, true);
            }
            let mut out = Vec::new();
            set.collect_from(start, &mut out);
            let mut sorted = out.clone();
            sorted.sort_unstable();
            prop_assert_eq!(sorted, members.iter().copied().collect::<Vec<_>>());
            // Rotated: members at or after the start come first, in order.
            let limit = (set.words.len() * 64) as u32;
            let s = if limit == 0 { 0 } else { start % limit };
            let split = out.iter().position(|m| *m < s).unwrap_or(out.len());
            prop_assert!(out[..split].iter().all(|m| *m >= s));
            prop_assert!(out[..split].windows(2).all(|w| w[0] < w[1]));
            prop_assert!(out[split..].windows(2).all(|w| w[0] < w[1]));
            for m in &members {
                prop_assert!(set.get(*m));
            }
        }
    }
}
