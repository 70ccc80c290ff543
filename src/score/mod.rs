//! The query strategies: the single source of truth for every score's
//! formula, dtype, log base, orientation and tie rule.
//!
//! # Canonical scores
//! A pool row is read as stored (float32, or float16 widened exactly to
//! float32), turned into probabilities `p` in f64 by [`input`], and scored in
//! f64 by [`canonical_score`], summing in column order:
//!
//! | strategy | score | more informative |
//! |---|---|---|
//! | least confidence | `1 − p(1)` | higher |
//! | margin | `p(1) − p(2)` (the two largest) | lower |
//! | entropy | `−Σ p·ln p / ln b`, with `0·ln 0 = 0`, base b ∈ {2, e, 10} | higher |
//! | ratio | `p(2) / p(1)` | higher |
//! | random | `splitmix64(seed, row) / 2⁶⁴` in [0, 1) | higher |
//!
//! A multi-label pool's rows hold L independent sigmoid outputs instead;
//! [`multilabel`] defines its strategies' scores.
//!
//! # Ranking
//! Rows are ranked by *priority* (the score, negated for margin, so higher
//! is always more informative); equal priorities rank the lower global row
//! index first. The selection of size k is the first k rows of that order.
//! Fast paths (the CPU kernels, the GPU) may compute approximate priorities, but
//! only with a proven error bound, and every row whose bound reaches the
//! k-th priority is re-scored canonically (see `select`).

pub mod batchbald;
pub mod disagree;
pub(crate) mod fast;
pub mod input;
pub(crate) mod lanes;
pub mod multilabel;
#[cfg(target_arch = "x86_64")]
pub(crate) mod multilabel_lanes;
pub mod regression;
pub mod stochastic;

use std::cmp::Ordering;

use crate::query::{InputForm, LogBase, Strategy};
use crate::rng::splitmix64;

/// Everything that defines a score, apart from the input form.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScoreSpec {
    /// The strategy.
    pub strategy: Strategy,
    /// Entropy's log base.
    pub log_base: LogBase,
    /// Seed of the random strategy; ignored by the others.
    pub seed: u64,
}

impl ScoreSpec {
    /// `strategy` with natural logarithms and seed 0.
    pub fn new(strategy: Strategy) -> Self {
        ScoreSpec {
            strategy,
            log_base: LogBase::E,
            seed: 0,
        }
    }
}

/// The canonical score of one row of probabilities `p` (f64, as produced by
/// [`input::canonical_probs`]) at global row `index`.
pub fn canonical_score(spec: &ScoreSpec, p: &[f64], index: u64) -> f64 {
    match spec.strategy {
        Strategy::LeastConfidence => 1.0 - top2(p).0,
        Strategy::Margin => {
            let (a, b) = top2(p);
            a - b
        }
        Strategy::Ratio => {
            let (a, b) = top2(p);
            // A row of zeros cannot pass validation, so a > 0.
            b / a
        }
        Strategy::Entropy => entropy_nat(p) / spec.log_base.ln(),
        Strategy::Random => random_priority(spec.seed, index),
    }
}

/// A bound on the canonical priority of any valid row of `classes`
/// values under `spec` and `input`: what lets a stochastic batch skip
/// rows whose noise alone cannot lift them to the floor.
pub(crate) fn max_priority(spec: &ScoreSpec, classes: usize, input: &InputForm) -> f64 {
    match spec.strategy {
        // 1 − p(1), p(2)/p(1) and the random draw stay within [0, 1];
        // a margin's priority is its negation, at most 0.
        Strategy::LeastConfidence | Strategy::Ratio | Strategy::Random => 1.0,
        Strategy::Margin => 0.0,
        Strategy::Entropy => {
            // Values summing to s ≤ 1 + tol: −Σ p ln p ≤ s ln C − s ln s
            // ≤ s ln C + 1/e.
            let tol = match *input {
                InputForm::Probs {
                    renormalize: false,
                    sum_tol,
                } => sum_tol,
                _ => 1e-6,
            };
            ((1.0 + tol) * (classes as f64).ln() + 0.37) / spec.log_base.ln()
        }
    }
}

/// The two largest values (the second is 0 for a single column, which only
/// least confidence and entropy accept).
#[inline]
pub fn top2<T: Copy + PartialOrd + Default>(p: &[T]) -> (T, T) {
    let mut a = T::default();
    let mut b = T::default();
    for &x in p {
        if x > a {
            b = a;
            a = x;
        } else if x > b {
            b = x;
        }
    }
    (a, b)
}

/// `−Σ p ln p` in f64, column order, `0 ln 0 = 0`.
pub fn entropy_nat(p: &[f64]) -> f64 {
    let mut s = 0.0f64;
    for &x in p {
        if x > 0.0 {
            s += x * x.ln();
        }
    }
    // `0.0 - s` keeps a certain row at +0.0.
    0.0 - s
}

/// The random strategy's priority of a row: a hash of (seed, index), so it
/// does not depend on chunking, threads or backend.
#[inline]
pub fn random_priority(seed: u64, index: u64) -> f64 {
    let h = splitmix64(seed ^ splitmix64(index.wrapping_add(0x9E37_79B9_7F4A_7C15)));
    (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A row with its canonical priority. Its `Ord` *is* the ranking: `a < b`
/// when `a` ranks before `b` (higher priority, then lower index).
#[derive(Clone, Copy, Debug)]
pub struct Ranked {
    /// Higher ranks first.
    pub priority: f64,
    /// The global row: the lower wins a tie.
    pub index: u64,
}

impl Ranked {
    /// Whether a row with approximate priority `approx` (|error| ≤ `bound`)
    /// at `index` could rank before `self`.
    #[inline]
    pub fn may_be_beaten_by(&self, approx: f64, bound: f64) -> bool {
        approx + bound >= self.priority
    }
}

impl Ord for Ranked {
    #[inline]
    fn cmp(&self, other: &Self) -> Ordering {
        // Priorities are never NaN (validated rows only); `==` treats
        // -0.0 and +0.0 as the tie they are.
        if self.priority > other.priority {
            Ordering::Less
        } else if self.priority < other.priority {
            Ordering::Greater
        } else {
            self.index.cmp(&other.index)
        }
    }
}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Ranked {}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(strategy: Strategy, base: LogBase, p: &[f64]) -> f64 {
        canonical_score(
            &ScoreSpec {
                strategy,
                log_base: base,
                seed: 0,
            },
            p,
            0,
        )
    }

    #[test]
    fn textbook_example() {
        // Settles, "Active Learning Literature Survey", fig. 5 discussion.
        let d1 = [0.9, 0.09, 0.01];
        let d2 = [0.2, 0.5, 0.3];
        let lc = |p: &[f64]| score(Strategy::LeastConfidence, LogBase::E, p);
        let mg = |p: &[f64]| score(Strategy::Margin, LogBase::E, p);
        let en = |p: &[f64]| score(Strategy::Entropy, LogBase::Ten, p);
        assert!((lc(&d1) - 0.1).abs() < 1e-12 && (lc(&d2) - 0.5).abs() < 1e-12);
        assert!((mg(&d1) - 0.81).abs() < 1e-12 && (mg(&d2) - 0.2).abs() < 1e-12);
        // -(0.9 log10 0.9 + 0.09 log10 0.09 + 0.01 log10 0.01) = 0.1551...
        assert!((en(&d1) - 0.155).abs() < 5e-4, "{}", en(&d1));
        assert!((en(&d2) - 0.447).abs() < 5e-4, "{}", en(&d2));
        for s in [
            Strategy::LeastConfidence,
            Strategy::Margin,
            Strategy::Entropy,
            Strategy::Ratio,
        ] {
            let r1 = Ranked {
                priority: s.priority(score(s, LogBase::Two, &d1)),
                index: 0,
            };
            let r2 = Ranked {
                priority: s.priority(score(s, LogBase::Two, &d2)),
                index: 1,
            };
            assert!(r2 < r1, "{s} must prefer d2");
        }
    }

    #[test]
    fn entropy_edge_cases() {
        assert_eq!(entropy_nat(&[1.0, 0.0, 0.0]).to_bits(), 0.0f64.to_bits());
        let h = score(Strategy::Entropy, LogBase::Two, &[0.5, 0.5]);
        assert!((h - 1.0).abs() < 1e-15);
        let h = score(Strategy::Entropy, LogBase::E, &[0.25; 4]);
        assert!((h - 4f64.ln()).abs() < 1e-15);
    }

    #[test]
    fn ties_rank_lower_index_first() {
        let a = Ranked {
            priority: 0.5,
            index: 3,
        };
        let b = Ranked {
            priority: 0.5,
            index: 7,
        };
        let c = Ranked {
            priority: 0.6,
            index: 9,
        };
        let mut v = [b, c, a];
        v.sort();
        assert_eq!(v.iter().map(|r| r.index).collect::<Vec<_>>(), [9, 3, 7]);
        let z = Ranked {
            priority: -0.0,
            index: 1,
        };
        let y = Ranked {
            priority: 0.0,
            index: 2,
        };
        assert!(z < y);
    }

    #[test]
    fn random_is_uniform_and_seeded() {
        let n = 100_000;
        let mean = (0..n).map(|i| random_priority(7, i)).sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
        assert_ne!(random_priority(7, 5), random_priority(8, 5));
        assert_eq!(random_priority(7, 5), random_priority(7, 5));
        assert!((0..1000).all(|i| (0.0..1.0).contains(&random_priority(1, i))));
    }
}
