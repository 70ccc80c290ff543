//! The keys of stochastic batch acquisition (Kirsch et al., TMLR 2023),
//! defined once. A stochastic batch is the k rows of largest key
//!
//! | kind | key of row i | draws row i with probability ∝ |
//! |---|---|---|
//! | softmax | `priority_i + g_i / β` | `exp(β · priority_i)` |
//! | power | `ln v_i + g_i / β` | `v_i^β` |
//! | softrank | `−ln r_i + g_i / β` | `r_i^−β` |
//!
//! in f64, ties to the lower global row, where `g_i` is standard Gumbel
//! noise drawn from (seed, global row i) by [`gumbel`]; the priority is
//! the strategy's (the score, negated for margin); `v_i` is the score
//! (`1 − margin` for margin), below 0 counted as 0 (key −∞); `r_i` is the
//! row's rank among the selectable rows under the plain ranking (1 = the
//! most informative). Taking the k largest keys is the Gumbel-top-k trick:
//! it draws k rows without replacement with those probabilities (Kool et
//! al. 2019), and for k = 1 it is exactly one draw from them.
//!
//! Since the noise is a hash of (seed, global row), the picks do not depend
//! on threads, chunking or shard splits. As β grows the noise fades; at
//! β = ∞ the key is the priority (softmax), the log of the value (power)
//! or −ln of the rank (softrank): the plain top k.

use crate::query::{Query, Stochastic, StochasticKind};
use crate::rng::splitmix64;

/// Keeps the noise's stream apart from the random strategy's.
const GUMBEL_STREAM: u64 = 0x6A09_E667_F3BC_C909;

/// Standard Gumbel noise of global row `index` under `seed`:
/// `−ln(−ln u)`, with u = (m + ½) / 2⁵² for the top 52 bits m of a hash
/// of (seed, index), so u lies strictly inside (0, 1) and the noise is
/// finite (between −3.61 and 36.7).
#[inline]
pub fn gumbel(seed: u64, index: u64) -> f64 {
    gumbel_of(uniform(seed, index))
}

/// The uniform draw behind row `index`'s noise, strictly inside (0, 1).
#[inline]
pub fn uniform(seed: u64, index: u64) -> f64 {
    let h = splitmix64(noise_key(seed) ^ splitmix64(index));
    ((h >> 12) as f64 + 0.5) * (1.0 / (1u64 << 52) as f64)
}

/// The noise's key under `seed`: the seed mixed with the noise's stream,
/// once for every row (the GPU kernel takes it as a parameter).
#[inline]
pub(crate) fn noise_key(seed: u64) -> u64 {
    splitmix64(seed ^ GUMBEL_STREAM)
}

/// What a GPU kernel needs to bound a row's key (`shaders/select.wgsl`,
/// `store`): the key is `base + g / β`, base the priority (softmax) or
/// `ln max(priority + shift, 0)` (power).
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(not(feature = "gpu"), allow(dead_code))]
pub(crate) struct Noise {
    /// Power (else softmax).
    pub power: bool,
    /// Added to the priority to make the value (power): 1 for a score
    /// whose lower is better (the priority is its negation), else 0.
    pub shift: f64,
    /// 1/β; 0 at β = ∞.
    pub inv_beta: f64,
    /// [`noise_key`] of the seed.
    pub key: u64,
}

/// The Gumbel noise of a uniform draw `u`: increasing in u.
#[inline]
fn gumbel_of(u: f64) -> f64 {
    -(-u.ln()).ln()
}

/// Slack for the rounding of the bounds below: far above the few ulps
/// by which a computed logarithm or exponential can miss, far below any
/// gap that matters for pruning.
const SLACK: f64 = 1e-9;

/// How each row's key follows from its own priority and index: the plain
/// ranking (the key is the priority), or a stochastic batch whose key
/// needs nothing but the row (softmax, power). Softrank's key needs the
/// row's rank in the whole pool: see [`rank_key`].
#[derive(Clone, Copy, Debug)]
pub struct RowKeys(Keys);

#[derive(Clone, Copy, Debug)]
enum Keys {
    Plain,
    Noisy {
        power: bool,
        lower_is_better: bool,
        beta: f64,
        seed: u64,
    },
}

impl RowKeys {
    /// The plain ranking.
    pub fn plain() -> Self {
        RowKeys(Keys::Plain)
    }

    /// The keys of `query` under `stochastic` (plain without it) and
    /// `seed`; `None` under softrank, whose key is not a row's own.
    pub fn new(query: Query, stochastic: Option<Stochastic>, seed: u64) -> Option<Self> {
        let Some(st) = stochastic else {
            return Some(RowKeys::plain());
        };
        let power = match st.kind {
            StochasticKind::Softmax => false,
            StochasticKind::Power => true,
            StochasticKind::Softrank => return None,
        };
        Some(RowKeys(Keys::Noisy {
            power,
            lower_is_better: query.lower_is_better(),
            beta: st.beta,
            seed,
        }))
    }

    /// The key of the row at global `index` with canonical `priority`.
    #[inline]
    pub fn key(&self, priority: f64, index: u64) -> f64 {
        match self.0 {
            Keys::Plain => priority,
            Keys::Noisy { beta, seed, .. } => {
                self.base(priority) + gumbel_of(uniform(seed, index)) / beta
            }
        }
    }

    /// The key of a row with canonical `priority` whose draw is `u`
    /// ([`uniform`] of its seed and row): the same bits as [`RowKeys::key`].
    #[inline]
    pub(crate) fn key_of_draw(&self, priority: f64, u: f64) -> f64 {
        match self.0 {
            Keys::Plain => priority,
            Keys::Noisy { beta, .. } => self.base(priority) + gumbel_of(u) / beta,
        }
    }

    /// The part of the key the score decides: the priority (softmax) or
    /// the log of the value (power); increasing in the priority.
    #[inline]
    fn base(&self, priority: f64) -> f64 {
        match self.0 {
            Keys::Noisy {
                power: true,
                lower_is_better,
                ..
            } => {
                let v = if lower_is_better {
                    1.0 + priority
                } else {
                    priority
                };
                v.max(0.0).ln()
            }
            _ => priority,
        }
    }

    /// The noise as a GPU kernel takes it; `None` for the plain ranking.
    #[cfg_attr(not(feature = "gpu"), allow(dead_code))]
    pub(crate) fn noise(&self) -> Option<Noise> {
        let Keys::Noisy {
            power,
            lower_is_better,
            beta,
            seed,
        } = self.0
        else {
            return None;
        };
        Some(Noise {
            power,
            shift: if power && lower_is_better { 1.0 } else { 0.0 },
            inv_beta: 1.0 / beta,
            key: noise_key(seed),
        })
    }

    /// The seed of the noise (0 for the plain ranking, which has none).
    pub(crate) fn seed(&self) -> u64 {
        match self.0 {
            Keys::Plain => 0,
            Keys::Noisy { seed, .. } => seed,
        }
    }

    /// An upper bound on the key of a row whose canonical priority is at
    /// most `priority` and whose draw is `u`: the base is increasing in
    /// the priority, and the slack covers the rounding of the logarithms.
    #[inline]
    pub(crate) fn key_bound(&self, priority: f64, u: f64) -> f64 {
        let k = self.key_of_draw(priority, u);
        k + SLACK * (1.0 + k.abs())
    }

    /// The gate of a floor: no row whose draw is below it can reach a key
    /// of `floor` if every priority is at most `max_priority`; 0 lets
    /// every row through.
    ///
    /// Proof: a row's key is `base(p) + g(u)/β ≤ base(max) + g(u)/β`, and
    /// that is below the floor when `g(u) < β·(floor − base(max))`, that
    /// is (g increasing) when `u < exp(−exp(−β·(floor − base(max))))`.
    /// The threshold on g is lowered by a slack before it is turned into
    /// one on u, and that one lowered again, so rounding never drops a
    /// row that could enter.
    pub(crate) fn gate(&self, floor: f64, max_priority: f64) -> f64 {
        let Keys::Noisy { beta, .. } = self.0 else {
            return 0.0;
        };
        let g_min = beta * (floor - self.base(max_priority));
        if g_min == f64::INFINITY {
            // β = ∞ and a floor above every key: nothing can enter.
            return 1.0;
        }
        let g_min = g_min - SLACK * (1.0 + g_min.abs());
        let u = (-(-g_min).exp()).exp() - SLACK;
        // NaN (∞ · 0 at β = ∞ on the floor itself): no gate.
        if u > 0.0 { u } else { 0.0 }
    }
}

/// Softrank's key of the row at global `index` whose rank among the
/// selectable rows is `rank` (1 = the most informative).
#[inline]
pub fn rank_key(beta: f64, seed: u64, rank: u64, index: u64) -> f64 {
    -(rank as f64).ln() + gumbel(seed, index) / beta
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::Strategy;

    #[test]
    fn gumbel_is_standard_finite_and_seeded() {
        let n = 200_000u64;
        let g: Vec<f64> = (0..n).map(|i| gumbel(3, i)).collect();
        assert!(g.iter().all(|x| x.is_finite()));
        let mean = g.iter().sum::<f64>() / n as f64;
        // The standard Gumbel's mean is the Euler–Mascheroni constant and
        // its variance π²/6; the standard error of the mean is 0.0029.
        assert!((mean - 0.577_215_664_9).abs() < 0.015, "{mean}");
        let var = g.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(
            (var - std::f64::consts::PI.powi(2) / 6.0).abs() < 0.05,
            "{var}"
        );
        assert_ne!(gumbel(3, 5), gumbel(4, 5));
        // The extreme draws stay finite.
        let lo = -(-(0.5f64 / (1u64 << 52) as f64).ln()).ln();
        let hi = -(-(1.0 - 0.5f64 / (1u64 << 52) as f64).ln()).ln();
        assert!(lo.is_finite() && hi.is_finite() && hi < 37.0, "{lo} {hi}");
    }

    #[test]
    fn the_gate_never_drops_a_row_that_could_reach_the_floor() {
        let q = Query::Score(Strategy::Entropy);
        for kind in [StochasticKind::Softmax, StochasticKind::Power] {
            for beta in [0.3, 1.0, 7.0, f64::INFINITY] {
                let keys = RowKeys::new(q, Some(Stochastic::new(kind, beta)), 5).unwrap();
                let max = 10f64.ln();
                for floor in [-3.0, 0.0, 1.5, 4.0, 9.0, 30.0] {
                    let gate = keys.gate(floor, max);
                    let mut dropped = 0;
                    for i in 0..20_000u64 {
                        let u = uniform(5, i);
                        // The best a row can do: the largest priority.
                        if u < gate {
                            dropped += 1;
                            assert!(keys.key(max, i) < floor, "{kind} {beta} {floor}");
                        }
                    }
                    // And the gate does drop rows when the floor is high.
                    if floor >= 9.0 && beta >= 1.0 {
                        assert!(dropped > 19_000, "{kind} {beta} {floor}: {dropped}");
                    }
                }
            }
        }
    }

    #[test]
    fn infinite_beta_is_the_plain_key() {
        let q = Query::Score(Strategy::Margin);
        let soft = RowKeys::new(
            q,
            Some(Stochastic::new(StochasticKind::Softmax, f64::INFINITY)),
            1,
        )
        .unwrap();
        for p in [-0.3, -0.0, 0.0, -1.0] {
            assert_eq!(soft.key(p, 7), p);
        }
        let pow = RowKeys::new(
            q,
            Some(Stochastic::new(StochasticKind::Power, f64::INFINITY)),
            1,
        )
        .unwrap();
        assert_eq!(pow.key(-0.25, 7), 0.75f64.ln());
        assert_eq!(pow.key(-1.0, 7), f64::NEG_INFINITY);
        assert!(RowKeys::new(q, Some(Stochastic::new(StochasticKind::Softrank, 1.0)), 1).is_none());
    }
}
