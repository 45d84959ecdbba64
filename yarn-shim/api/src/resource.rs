//! YARN's resource: memory in MiB and virtual cores, as `ResourceProto`
//! carries them.

/// Memory (MiB) and virtual cores, YARN's two resource types.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capacity {
    pub memory_mb: i64,
    pub vcores: i32,
}

impl Capacity {
    pub fn fits_in(&self, max: &Capacity) -> bool {
        self.memory_mb <= max.memory_mb && self.vcores <= max.vcores
    }
}

impl std::fmt::Display for Capacity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<memory:{}, vCores:{}>", self.memory_mb, self.vcores)
    }
}
