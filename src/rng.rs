//! The seeded randomness every other layer draws on: the splitmix64 mixer
//! and a small generator built on it. A leaf: the same seed gives the same
//! stream on every platform, thread count and backend.

/// The splitmix64 mixer: a 64-bit hash with good avalanche.
#[inline]
pub fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The seed of stream `i` of `seed`: `splitmix64(splitmix64(seed) ^ i)`.
/// The seed is mixed before the index, so two seeds never share streams
/// (`seed ^ i` would give seeds 4 and 5 the same set {4, 5, 6, 7} for
/// i < 4, only permuted).
#[inline]
#[cfg_attr(not(feature = "learner"), allow(dead_code))]
pub fn substream(seed: u64, i: u64) -> u64 {
    splitmix64(splitmix64(seed) ^ i)
}

/// A small deterministic generator (splitmix64 stream).
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A stream seeded by `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Rng(splitmix64(seed ^ 0xA1B0_0C0F_FEE0_0D1E))
    }
    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        splitmix64(self.0)
    }
    /// Uniform in [0, 1).
    pub(crate) fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    /// Standard normal (Box–Muller).
    pub(crate) fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
    /// Uniform integer in 0..n.
    #[cfg_attr(not(feature = "learner"), allow(dead_code))]
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}
