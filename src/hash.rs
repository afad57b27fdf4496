//! The hasher of the maps whose keys come off the network: MAC addresses,
//! socket addresses, session ids.
//!
//! std's default, SipHash-1-3, cost about 600 instructions of each frame's
//! 3000 (two or three lookups a frame, callgrind on a daemon under `ping`);
//! foldhash takes a few dozen. Its own random state is seeded from the stack
//! address and a counter, which a stranger choosing keys might learn
//! something about; here both of its seeds come from the operating system's
//! random source instead (through std's `RandomState`, whose keys are read
//! from `getrandom`), so which keys collide cannot be known from outside.
//! The tables they key are bounded besides (port security, the admission
//! caps), so even a lucky guess buys no more than slower lookups in a table
//! of bounded size.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::OnceLock;

use foldhash::fast::{FoldHasher, SeedableRandomState};
use foldhash::SharedSeed;

/// A hash map keyed by what arrives from the network.
pub type Map<K, V> = HashMap<K, V, Seeded>;

/// A hash set of what arrives from the network.
pub type Set<K> = HashSet<K, Seeded>;

/// foldhash with seeds from the operating system's random source: one
/// shared seed for the process, one per map.
#[derive(Clone, Debug)]
pub struct Seeded(SeedableRandomState);

/// 64 bits the operating system's random source chose (`tag` only keeps
/// two draws apart).
fn os_random(tag: u64) -> u64 {
    RandomState::new().hash_one(tag)
}

impl Default for Seeded {
    fn default() -> Self {
        static SHARED: OnceLock<SharedSeed> = OnceLock::new();
        let shared = SHARED.get_or_init(|| SharedSeed::from_u64(os_random(0)));
        Seeded(SeedableRandomState::with_seed(os_random(1), shared))
    }
}

impl BuildHasher for Seeded {
    type Hasher = FoldHasher<'static>;

    fn build_hasher(&self) -> Self::Hasher {
        self.0.build_hasher()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_are_seeded_apart_and_still_find_their_keys() {
        let (a, b) = (Seeded::default(), Seeded::default());
        let keys: Vec<[u8; 6]> = (0..64u8).map(|i| [2, 0, 0, 0, 0, i]).collect();
        // Two maps hash the same keys differently (64 keys alike by chance:
        // 2^-4096).
        assert!(keys.iter().any(|k| a.hash_one(k) != b.hash_one(k)));
        let mut m: Map<[u8; 6], usize> = Map::default();
        for (i, k) in keys.iter().enumerate() {
            m.insert(*k, i);
        }
        assert!(keys.iter().enumerate().all(|(i, k)| m.get(k) == Some(&i)));
    }
}
