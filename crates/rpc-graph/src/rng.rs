//! Counter-based randomness: tiny generators derived from a hash of a key.
//!
//! Sampling never shares one sequential generator between nodes: the draws
//! for a node come from a [`WyRand`] seeded by `mix64(hop_key ^ mix64(id))`,
//! so they depend only on the key and the node, not on which other nodes
//! were sampled before it, nor in which process.

/// The splitmix64 finalizer: a bijective, well-mixing hash of a `u64`.
#[inline]
#[must_use]
pub fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Hashes a string to a `u64` (FNV-1a, then mixed); used to key edge types.
#[must_use]
pub fn hash_str(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix64(h)
}

/// wyrand: a 64-bit generator with one add and one 128-bit multiply per
/// draw. Not cryptographic; statistically good enough for sampling.
#[derive(Clone, Copy, Debug)]
pub struct WyRand {
    state: u64,
}

impl WyRand {
    /// A generator starting from `seed`.
    #[inline]
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The generator for `id` under `key`: the only way sampling derives
    /// randomness, so that results do not depend on order or process.
    #[inline]
    #[must_use]
    pub fn for_key(key: u64, id: u64) -> Self {
        Self::new(mix64(key ^ mix64(id)))
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.state) * u128::from(self.state ^ 0xe703_7ed1_a0b4_28db);
        // Truncations are the algorithm: fold the 128-bit product.
        ((t >> 64) as u64) ^ (t as u64)
    }

    /// A number in `0..n` (Lemire's multiply-shift; the bias is below
    /// `n / 2^64`, negligible for graph degrees). `n` must be nonzero.
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A float uniform in `[0, 1)` with 53 bits of precision.
    #[inline]
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut rng = WyRand::new(7);
        let mut seen = [false; 5];
        for _ in 0..1000 {
            let x = rng.below(5);
            assert!(x < 5);
            seen[x as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn keyed_generators_differ_by_id_and_key() {
        let a = WyRand::for_key(1, 2).next_u64();
        assert_eq!(a, WyRand::for_key(1, 2).next_u64());
        assert_ne!(a, WyRand::for_key(1, 3).next_u64());
        assert_ne!(a, WyRand::for_key(2, 2).next_u64());
    }
}
