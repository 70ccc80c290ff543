//! Top-k selection under the ranking of [`crate::score::Ranked`], and the
//! filter-and-refine rule that keeps fast approximate paths exact.
//!
//! # Filter and refine
//! A fast path reports, per row, an approximate priority `a` and a bound `b`
//! with |a − canonical| ≤ b. Let `w` be the worst of the k best *canonical*
//! rows kept so far. A row can only enter if its canonical priority could
//! reach `w`, i.e. if `a + b ≥ w.priority` (≥, not >: an equal priority with
//! a lower index wins the tie). Such rows are re-scored canonically from the
//! stored values and offered; all others are skipped. Since every row that
//! could belong to the exact top k is offered with its canonical priority,
//! the result equals the exact top k whatever the bounds, as long as they
//! hold. Rows with `b = 0` carry their canonical priority already.

#[cfg(feature = "learner")]
mod blocks;

use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::query::Query;
use crate::score::Ranked;
#[cfg(feature = "learner")]
pub(crate) use blocks::Blocks;

/// The k best rows seen so far: a max-heap whose top is the worst kept row
/// (rows ranked by [`Ranked`], or by a stochastic batch's [`Keyed`] key).
#[derive(Clone, Debug)]
pub struct TopK<R = Ranked> {
    k: usize,
    heap: BinaryHeap<R>,
}

impl<R: Ord> TopK<R> {
    /// Keeps the best `k` rows offered.
    pub fn new(k: usize) -> Self {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k.min(1 << 16)),
        }
    }

    /// The number of rows kept at most.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Rows kept so far.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no row is kept yet.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// The worst kept row once k rows are kept.
    #[inline]
    pub fn worst(&self) -> Option<&R> {
        if self.heap.len() >= self.k {
            self.heap.peek()
        } else {
            None
        }
    }

    /// Offers a row with its canonical priority (or key).
    #[inline]
    pub fn offer(&mut self, r: R) {
        if self.heap.len() < self.k {
            self.heap.push(r);
        } else if let Some(mut top) = self.heap.peek_mut()
            && r < *top
        {
            *top = r;
        }
    }

    /// Folds another partial top-k into this one.
    pub fn merge(&mut self, other: TopK<R>) {
        let (mut a, b) = if other.heap.len() > self.heap.len() {
            (other, std::mem::replace(self, TopK::new(0)))
        } else {
            (std::mem::replace(self, TopK::new(0)), other)
        };
        for r in b.heap.into_vec() {
            a.offer(r);
        }
        *self = a;
    }

    /// The kept rows, best first.
    pub fn into_sorted(self) -> Vec<R> {
        self.heap.into_sorted_vec()
    }
}

impl TopK<Ranked> {
    /// Whether a row with approximate priority `approx` (|error| ≤ `bound`)
    /// could enter; if so it must be refined and [`TopK::offer`]ed.
    #[inline]
    pub fn wants(&self, approx: f64, bound: f64) -> bool {
        if self.k == 0 {
            return false;
        }
        match self.worst() {
            None => true,
            Some(w) => w.may_be_beaten_by(approx, bound),
        }
    }
}

/// A row of a stochastic batch: ranked by its key (higher first, then the
/// lower global row), carrying its canonical priority for the report.
#[derive(Clone, Copy, Debug)]
pub struct Keyed {
    /// The key the row is ranked by.
    pub key: f64,
    /// The global row.
    pub index: u64,
    /// The row's canonical priority.
    pub priority: f64,
}

/// A row a [`TopK`] keeps: ordered best first, and reported by its global
/// row and canonical priority.
pub trait Kept: Ord {
    /// (global row, canonical priority).
    fn entry(&self) -> (u64, f64);
}

impl Kept for Ranked {
    fn entry(&self) -> (u64, f64) {
        (self.index, self.priority)
    }
}

impl Kept for Keyed {
    fn entry(&self) -> (u64, f64) {
        (self.index, self.priority)
    }
}

impl Keyed {
    fn ranked(&self) -> Ranked {
        Ranked {
            priority: self.key,
            index: self.index,
        }
    }
}

impl Ord for Keyed {
    #[inline]
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.ranked().cmp(&other.ranked())
    }
}

impl PartialOrd for Keyed {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Keyed {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}

impl Eq for Keyed {}

/// The best k-th priority any worker has proven so far, shared without a
/// lock: each worker's full heap's worst is a lower bound on the global
/// k-th priority, so a row whose priority (plus its bound) is below the
/// floor cannot enter the top k. Not at or below: a tie can still win on
/// a lower row index.
pub(crate) struct SharedFloor(AtomicU64);

impl SharedFloor {
    /// No floor yet.
    pub(crate) fn new() -> Self {
        SharedFloor(AtomicU64::new(ordered_bits(f64::NEG_INFINITY)))
    }

    /// The floor now.
    pub(crate) fn get(&self) -> f64 {
        from_ordered_bits(self.0.load(Ordering::Relaxed))
    }

    /// Raises the floor to the worst row of `top`, if it is full.
    pub(crate) fn raise(&self, top: &TopK) {
        if let Some(worst) = top.worst() {
            self.raise_to(worst.priority);
        }
    }

    /// Raises the floor to `x`, a proven lower bound on the k-th priority
    /// (or key).
    pub(crate) fn raise_to(&self, x: f64) {
        self.0.fetch_max(ordered_bits(x), Ordering::Relaxed);
    }

    /// The threshold of a worker whose heap is `top`: nothing enters an
    /// empty selection; otherwise the higher of its own worst and the floor.
    pub(crate) fn threshold(&self, top: &TopK) -> f64 {
        if top.k() == 0 {
            return f64::INFINITY;
        }
        let shared = self.get();
        top.worst().map_or(shared, |w| w.priority.max(shared))
    }
}

/// f64 → u64 preserving order, so a shared threshold can use `fetch_max`.
fn ordered_bits(x: f64) -> u64 {
    let b = x.to_bits();
    if b >> 63 == 1 { !b } else { b | (1 << 63) }
}

fn from_ordered_bits(b: u64) -> f64 {
    f64::from_bits(if b >> 63 == 1 { b & !(1 << 63) } else { !b })
}

/// One selected row.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Selected {
    /// 1 = the most informative row.
    pub rank: u64,
    /// Global row index in the pool.
    pub index: u64,
    /// Canonical score (not priority: margin is reported as the margin).
    pub score: f64,
}

/// The result of a selection, with what it cost.
#[derive(Clone, Debug)]
pub struct Selection {
    /// The strategy that ranked the rows.
    pub strategy: Query,
    /// The selected rows, best (or first picked) first.
    pub entries: Vec<Selected>,
    /// Rows in the pool, and how many of them were excluded.
    pub rows: u64,
    /// Rows excluded by the job.
    pub excluded: u64,
    /// Rows re-scored canonically because a fast path could not decide them.
    pub refined: u64,
    /// Where a batch-aware selection spent its time, phase by phase, in
    /// order (empty for row-wise selections).
    pub phases: Vec<(&'static str, std::time::Duration)>,
    /// What a strategy built on the way, for `-v` (k-means' iterations,
    /// ProbCover's δ and graph).
    pub notes: Vec<String>,
}

impl Selection {
    /// The selection `top` holds, best first (by priority, or by key for
    /// a stochastic batch), scores reported as `query` scores.
    pub fn from_topk<R: Kept>(
        query: impl Into<Query>,
        top: TopK<R>,
        rows: u64,
        excluded: u64,
        refined: u64,
    ) -> Self {
        let best = top.into_sorted().into_iter().map(|r| r.entry());
        Selection::ranked(query.into(), best, rows, excluded, refined)
    }

    /// The selection of `picks` (global row, score), best (or first picked)
    /// first, ranked from 1.
    pub(crate) fn of_picks(
        query: Query,
        picks: impl IntoIterator<Item = (u64, f64)>,
        rows: u64,
        excluded: u64,
        refined: u64,
    ) -> Self {
        let entries = picks
            .into_iter()
            .enumerate()
            .map(|(i, (index, score))| Selected {
                rank: i as u64 + 1,
                index,
                score,
            })
            .collect();
        Selection {
            strategy: query,
            entries,
            rows,
            excluded,
            refined,
            phases: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// The selection of rows `best` (global row, canonical priority), best
    /// first.
    fn ranked(
        query: Query,
        best: impl Iterator<Item = (u64, f64)>,
        rows: u64,
        excluded: u64,
        refined: u64,
    ) -> Self {
        // The priority negated back where lower is better: exact.
        let scored = best.map(|(index, priority)| (index, query.priority(priority)));
        Selection::of_picks(query, scored, rows, excluded, refined)
    }

    /// The selected global row indices, in rank order.
    pub fn indices(&self) -> Vec<u64> {
        self.entries.iter().map(|e| e.index).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_bits_preserve_order() {
        let xs = [
            f64::NEG_INFINITY,
            -1.0,
            -1e-300,
            -0.0,
            0.0,
            1e-300,
            0.5,
            1.0,
            f64::INFINITY,
        ];
        for w in xs.windows(2) {
            assert!(ordered_bits(w[0]) <= ordered_bits(w[1]), "{w:?}");
            assert_eq!(
                from_ordered_bits(ordered_bits(w[0])).to_bits(),
                w[0].to_bits()
            );
        }
    }

    fn naive(rows: &[(f64, u64)], k: usize) -> Vec<u64> {
        let mut v: Vec<Ranked> = rows
            .iter()
            .map(|&(priority, index)| Ranked { priority, index })
            .collect();
        v.sort();
        v.truncate(k);
        v.iter().map(|r| r.index).collect()
    }

    #[test]
    fn topk_matches_sort_with_ties_and_merges() {
        let rows: Vec<(f64, u64)> = (0..500u64).map(|i| (((i * 7919) % 13) as f64, i)).collect();
        for k in [0, 1, 5, 13, 100, 499, 500, 10_000] {
            let mut parts: Vec<TopK> = (0..3).map(|_| TopK::new(k)).collect();
            for (j, &(p, i)) in rows.iter().enumerate() {
                parts[j % 3].offer(Ranked {
                    priority: p,
                    index: i,
                });
            }
            let mut all = TopK::new(k);
            for p in parts {
                all.merge(p);
            }
            let got: Vec<u64> = all.into_sorted().iter().map(|r| r.index).collect();
            assert_eq!(got, naive(&rows, k), "k = {k}");
        }
    }

    #[test]
    fn wants_respects_bound_and_ties() {
        let mut t = TopK::new(1);
        assert!(t.wants(-1e300, 0.0));
        t.offer(Ranked {
            priority: 0.5,
            index: 10,
        });
        assert!(!t.wants(0.4, 0.05));
        assert!(t.wants(0.4, 0.1)); // could tie, and win on a lower index
        assert!(!TopK::new(0).wants(1.0, 1.0));
    }
}
