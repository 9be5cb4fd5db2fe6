//! Which outbox partition an aggregate's events go to.
//!
//! The mapping must never change for a given `P`, across processes, builds
//! and platforms: per-aggregate ordering relies on every event of one
//! aggregate landing in one partition. So it is FNV-1a over the aggregate
//! id's UTF-8 bytes, not std's randomly seeded hasher.

use std::num::NonZeroU32;

/// Largest partition count accepted.
pub const MAX_PARTITIONS: u32 = 4096;

/// The number of outbox partitions, `1..=4096`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionCount(NonZeroU32);

/// A partition count outside `1..=4096`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("partition count must be 1-{MAX_PARTITIONS}, got {0}")]
pub struct PartitionCountError(pub u32);

impl PartitionCount {
    /// Checks `count` is within `1..=4096`.
    pub fn new(count: u32) -> Result<Self, PartitionCountError> {
        NonZeroU32::new(count)
            .filter(|count| count.get() <= MAX_PARTITIONS)
            .map(Self)
            .ok_or(PartitionCountError(count))
    }

    /// The count as a number.
    pub fn get(self) -> u32 {
        self.0.get()
    }

    /// `fnv1a(aggregate_id) mod P`.
    pub fn partition_of(self, aggregate_id: &str) -> i32 {
        let partition = fnv1a_64(aggregate_id.as_bytes()) % u64::from(self.get());
        // P ≤ 4096, so the remainder always fits.
        i32::try_from(partition).unwrap_or_default()
    }
}

impl Default for PartitionCount {
    fn default() -> Self {
        Self(NonZeroU32::MIN.saturating_add(15))
    }
}

fn fnv1a_64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(PRIME)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_sixteen() {
        assert_eq!(PartitionCount::default().get(), 16);
    }

    #[test]
    fn rejects_zero_and_too_many() {
        assert_eq!(PartitionCount::new(0), Err(PartitionCountError(0)));
        assert_eq!(PartitionCount::new(4097), Err(PartitionCountError(4097)));
        assert!(PartitionCount::new(4096).is_ok());
    }

    #[test]
    fn mapping_is_pinned() {
        // Known FNV-1a 64 vectors: changing the hash would reorder live outboxes.
        assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
        let sixteen = PartitionCount::default();
        assert_eq!(
            sixteen.partition_of("a"),
            (0xaf63_dc4c_8601_ec8c_u64 % 16) as i32
        );
    }

    #[test]
    fn spreads_ids_over_every_partition() {
        let sixteen = PartitionCount::default();
        let mut seen = [0u32; 16];
        for n in 0..1600 {
            let id = format!("0190b6a2-0000-7000-8000-{n:012}");
            seen[sixteen.partition_of(&id) as usize] += 1;
        }
        assert!(
            seen.iter().all(|count| (50..=150).contains(count)),
            "{seen:?}"
        );
    }
}
