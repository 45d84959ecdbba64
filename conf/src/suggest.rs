//! "Did you mean" suggestions for misspelt keys, by edit distance
//! (Levenshtein, counted in chars, from `strsim`).

/// The candidate closest to `key`, if it is close enough to be a likely
/// typo (at most a third of the key's length, and at least 3 edits
/// allowed so short keys still get suggestions).
pub(crate) fn closest<'a>(key: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let limit = (key.chars().count() / 3).max(3);
    candidates
        .into_iter()
        .map(|c| (strsim::levenshtein(key, c), c))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, c)| c.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use strsim::levenshtein as edit_distance;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("broker.listen", "broker.lisen"), 1);
        assert_eq!(edit_distance("ab", "ba"), 2);
    }

    #[test]
    fn suggests_only_close_keys() {
        let keys = ["broker.listen", "agent.listen", "broker.offer.timeout"];
        assert_eq!(closest("broker.lisen", keys), Some("broker.listen".into()));
        assert_eq!(closest("broker.offer.timout", keys), Some("broker.offer.timeout".into()));
        assert_eq!(closest("completely.different.thing", keys), None);
    }
}
