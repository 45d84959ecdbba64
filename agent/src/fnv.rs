//! FNV-1a 64, kept only where its value must never change between
//! releases: it names each agent's cgroup scope (tasks that outlive an
//! upgrade must be found under the same name) and checks `WEIRCKP1`
//! checkpoints written by older agents. New checkpoints use CRC-32.

/// FNV-1a 64 of `bytes`: catches torn and damaged data, not an adversary.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, b| (h ^ *b as u64).wrapping_mul(0x100000001b3))
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_the_published_test_vectors() {
        // From the FNV reference: a changed constant would rename every
        // cgroup scope and reject every old checkpoint.
        assert_eq!(super::fnv1a(b""), 0xcbf29ce484222325);
        assert_eq!(super::fnv1a(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(super::fnv1a(b"foobar"), 0x85944171f73967e8);
    }
}
