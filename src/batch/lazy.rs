//! The nearest-centre engine behind core-set, BADGE and k-means++ seeding:
//! each pick is the arg-max of a key built from a row's *weight*, its
//! canonical squared distance to the nearest centre so far, and no pick
//! needs to read the whole pool.
//!
//! # Why stale weights are enough
//! A weight only falls as centres are added: the minimum over more centres
//! is never larger. So every weight ever computed for a row, fast or
//! canonical, stays an upper bound on its current one. The engine keeps
//! one such bound per row (`hi`, float32 rounded up) and finds a pick as
//! lazy greedy algorithms do:
//!
//! 1. take the rows with the largest *upper* keys (the key of `hi`:
//!    the weight itself for core-set, the exponential race `w / E_t` for
//!    BADGE and k-means++, with `E_t`'s fast value and its bound);
//! 2. in that order, compute each one's canonical weight over every centre
//!    (only the centres added since it was last computed) and its exact
//!    key;
//! 3. stop when the best exact key beats the next upper key (ties to the
//!    lower row): no row further down can reach it.
//!
//! The pick is the canonical arg-max, the same row a full pass with a
//! float32 bound and a canonical re-check finds, on every thread count.
//! Each pick reads the bound vector (4 bytes a row) and a few rows, not
//! the pool: core-set's farthest rows and BADGE's race winners rarely move
//! when a centre far away is added.
//!
//! # When bounds go stale
//! Where a new centre lowers many rows' weights (tight clusters seen from
//! far away), the upper keys stop ranking and step 2 would re-compute many
//! rows. The engine then rents no longer and buys: once the canonical
//! work since the last full pass (distance evaluations, weighted by their
//! cost against a fast one) would pay for another, it folds every centre
//! added since into the fast weights in one streaming pass
//! ([`Space::sync`]), which tightens every bound, and carries on. So a
//! run never costs much more than one pass per pick, which is what every
//! pick cost before this engine, and usually costs a few passes in all.
//!
//! For the weight itself the ranking reads only the blocks of rows whose
//! largest bound could still make the top; the race draws every row's
//! exponential, but skips the logarithm where `−ln u ≥ 1 − u` already
//! puts the row below the current floor.

use rayon::prelude::*;

use super::Nearest;
use super::rng::{EXP_REL, bits, exp_canonical, exp_fast};
use crate::backend::Progress;
use crate::error::{Error, Result};

/// A row that can no longer be picked (labeled, or picked already).
pub(crate) const TAKEN: f32 = -1.0;

/// Rows per unit of parallel work when ranking the bounds.
const RANK_CHUNK: usize = 1 << 15;

/// Rows whose random bits are drawn together (one vector of lanes).
const LANES: usize = 16;

/// `upper ≤ hi / ((1 − u)·RACE_FILTER)`: [`Key::upper`]'s factor over the
/// fast exponential's own bound (`E_fast ≥ (1 − EXP_REL)·(−ln u)`), with
/// room for the f64 roundings of the test.
const RACE_FILTER: f64 = (1.0 - EXP_REL) / ((1.0 + EXP_REL) * (1.0 + 1e-15)) * (1.0 - 1e-12);

/// Rows per kept maximum of the bounds: a pick by weight reads only the
/// blocks whose maximum could still make its top.
const BLOCK: usize = 1 << 10;

/// What one canonical distance counts for against one fast distance of a
/// pass, when deciding to pass. A tuned weight, not a measured cost ratio:
/// a pass also tightens the bounds of every later pick (core-set, 1M x 128:
/// 16 and 32 gave 5.3 s, 64 gave 4.0 s, 128 gave 5.1 s). Picks never
/// depend on it.
const CANONICAL_COST: u64 = 64;

/// Rows ranked per pick at first; more only when these do not decide it.
const FIRST_TOP: usize = 16;

/// The space a run picks in: its centres, its fast pass and its canonical
/// weight.
pub(crate) trait Space: Sync {
    /// Centres so far.
    fn centres(&self) -> usize;

    /// Folds centres `from..centres()` into the fast weights over the
    /// whole pool, lowering each row's `hi` to an upper bound (rounded up
    /// to float32) on its canonical weight. Rows marked [`TAKEN`] stay so.
    fn sync(&mut self, from: usize, hi: &mut [f32]) -> Result<()>;

    /// Row `row`'s canonical weight over centres `from..centres()`: the
    /// minimum of the canonical squared distances.
    fn canonical(&self, row: u64, from: usize) -> Result<f64>;
}

/// What a pick maximises.
#[derive(Clone, Copy)]
pub(crate) enum Key {
    /// The weight: farthest-first (core-set).
    Weight,
    /// `w / E_t(row)`: D² sampling as the exponential race of
    /// [`super::rng`], for pick `t` under `seed`.
    Race { seed: u64, t: u32 },
}

impl Key {
    /// An upper bound on the exact key of a row whose weight is at most
    /// `hi`.
    #[inline(always)]
    fn upper(self, row: u64, hi: f32) -> f64 {
        match self {
            Key::Weight => hi as f64,
            Key::Race { seed, t } => {
                // The fast exponential is within EXP_REL of the canonical
                // one; the two f64 roundings are covered by 1e-15.
                let e = exp_fast(bits(seed, t, row)) as f64;
                hi as f64 * ((1.0 + EXP_REL) * (1.0 + 1e-15)) / e
            }
        }
    }

    /// The race's random bits for `row` (none for the weight).
    #[inline(always)]
    fn draw(self, row: u64) -> u32 {
        match self {
            Key::Weight => 0,
            Key::Race { seed, t } => bits(seed, t, row),
        }
    }

    /// The canonical key of a row of canonical weight `w`.
    fn exact(self, row: u64, w: f64) -> f64 {
        match self {
            Key::Weight => w,
            Key::Race { seed, t } => w / exp_canonical(bits(seed, t, row)),
        }
    }
}

/// One run's bounds and canonical cache.
pub(crate) struct Lazy {
    hi: Vec<f32>,
    /// Centres folded into the fast weights by [`Space::sync`].
    synced: usize,
    nearest: Nearest,
    rows: u64,
    /// Canonical distance evaluations since the last pass.
    spent: u64,
    /// An upper bound on `hi` over each block of [`BLOCK`] rows.
    chunk_max: Vec<f32>,
    /// A fixed threshold in place of a pass's cost (tests run both paths).
    fixed: Option<u64>,
    /// Rows whose weight was computed canonically.
    pub refined: u64,
    /// Full passes run.
    pub passes: u64,
}

impl Lazy {
    /// `n` rows, the `taken` ones never picked.
    pub fn new(n: u64, taken: &[u64]) -> Lazy {
        let mut hi = vec![f32::INFINITY; n as usize];
        super::mark(&mut hi, taken, TAKEN);
        Lazy {
            hi,
            synced: 0,
            nearest: Nearest::default(),
            rows: n,
            spent: 0,
            fixed: None,
            chunk_max: Vec::new(),
            refined: 0,
            passes: 0,
        }
    }

    /// Sets the canonical work one pick may spend before a full pass (tests
    /// set it low to run both paths).
    #[cfg(test)]
    pub fn with_budget(mut self, budget: u64) -> Lazy {
        self.fixed = Some(budget);
        self
    }

    /// Marks a row as no longer pickable (it became a centre).
    pub fn take(&mut self, row: u64) {
        self.hi[row as usize] = TAKEN;
    }

    /// Folds every centre added since the last pass into the bounds.
    pub fn sync(&mut self, space: &mut impl Space) -> Result<()> {
        let count = space.centres();
        if self.synced < count {
            space.sync(self.synced, &mut self.hi)?;
            self.chunk_max = self
                .hi
                .par_chunks(BLOCK)
                .map(|h| h.iter().copied().fold(TAKEN, f32::max))
                .collect();
            self.synced = count;
            self.passes += 1;
            self.spent = 0;
        }
        Ok(())
    }

    /// The canonical arg-max of `key` over the rows not taken (ties to the
    /// lower row), with its canonical weight; `None` when every row is
    /// taken.
    pub fn pick(
        &mut self,
        space: &mut impl Space,
        key: Key,
        progress: &dyn Progress,
    ) -> Result<Option<(u64, f64)>> {
        if self.synced == 0 {
            self.sync(space)?;
        }
        let mut want = FIRST_TOP;
        'rank: loop {
            if progress.cancelled() {
                return Err(Error::Cancelled);
            }
            let top = self.top(key, want);
            // (row, exact key, weight)
            let mut best: Option<(u64, f64, f64)> = None;
            for &(upper, row) in &top {
                if let Some((b, bk, _)) = best
                    && (bk > upper || (bk == upper && b < row))
                {
                    return Ok(best.map(|(r, _, w)| (r, w)));
                }
                let count = space.centres();
                let spent = &mut self.spent;
                let w = self.nearest.get(row, count, |from| {
                    *spent += (count - from) as u64;
                    space.canonical(row, from)
                })?;
                self.refined += 1;
                self.hi[row as usize] = self.hi[row as usize].min(round_up(w));
                let k = key.exact(row, w);
                if best.is_none_or(|(b, bk, _)| k > bk || (k == bk && row < b)) {
                    best = Some((row, k, w));
                }
                // Ski rental: once the canonical work since the last pass
                // costs what a pass would, pass.
                let pass = self
                    .fixed
                    .unwrap_or(self.rows * (count - self.synced) as u64);
                if self.spent * CANONICAL_COST > pass && self.synced < count {
                    self.sync(space)?;
                    continue 'rank;
                }
            }
            if top.len() < want {
                // Every row not taken was ranked and re-computed.
                return Ok(best.map(|(r, _, w)| (r, w)));
            }
            want *= 8;
        }
    }

    /// The `want` rows with the largest upper keys, in the order (key
    /// descending, row ascending), so any row left out comes after the
    /// last one in that order.
    fn top(&mut self, key: Key, want: usize) -> Vec<(f64, u64)> {
        if let Key::Weight = key {
            return self.top_weights(want);
        }
        let parts: Vec<Vec<(f64, u64)>> = self
            .hi
            .par_chunks(RANK_CHUNK)
            .enumerate()
            .map(|(c, hi)| {
                let start = (c * RANK_CHUNK) as u64;
                let mut best = Best::new(want);
                let mut r = [0u32; LANES];
                for (b, hi) in hi.chunks(LANES).enumerate() {
                    let first = start + (b * LANES) as u64;
                    for (i, r) in r.iter_mut().enumerate() {
                        *r = key.draw(first + i as u64);
                    }
                    for (i, (&h, &r)) in hi.iter().zip(&r).enumerate() {
                        // −ln u ≥ 1 − u: a row whose key cannot reach the
                        // floor even so needs no logarithm.
                        let u = (r as f64 + 0.5) * (1.0 / 8_388_608.0);
                        if h < 0.0 || (h as f64) < best.floor * (1.0 - u) * RACE_FILTER {
                            continue;
                        }
                        let row = first + i as u64;
                        best.offer(key.upper(row, h), row);
                    }
                }
                best.top
            })
            .collect();
        let mut best = Best::new(want);
        for (k, row) in parts.into_iter().flatten() {
            best.offer(k, row);
        }
        best.finish()
    }

    /// [`Self::top`] for the weight itself, whose upper key is the bound:
    /// chunks in decreasing order of their largest bound, stopping at the
    /// first that cannot reach the `want`-th entry. The chunk maxima are
    /// bounds too, made exact again when a chunk is read.
    fn top_weights(&mut self, want: usize) -> Vec<(f64, u64)> {
        let mut chunks: Vec<usize> = (0..self.chunk_max.len()).collect();
        chunks.sort_by(|&a, &b| self.chunk_max[b].total_cmp(&self.chunk_max[a]));
        let mut best = Best::new(want);
        for c in chunks {
            if best.full() && (self.chunk_max[c] as f64) < best.floor {
                break;
            }
            let start = c * BLOCK;
            let hi = &self.hi[start..(start + BLOCK).min(self.hi.len())];
            let mut max = TAKEN;
            for (i, &h) in hi.iter().enumerate() {
                if h >= 0.0 {
                    max = max.max(h);
                    best.offer(h as f64, (start + i) as u64);
                }
            }
            self.chunk_max[c] = max;
        }
        best.finish()
    }
}

/// The best `want` (key, row) entries offered, in the order (key
/// descending, row ascending): a buffer of twice that, cut back to the
/// best half with a selection when full.
struct Best {
    want: usize,
    top: Vec<(f64, u64)>,
    /// The key of the `want`-th entry once the buffer was first cut: no
    /// entry below it can make the top.
    floor: f64,
}

impl Best {
    fn new(want: usize) -> Best {
        Best {
            want,
            top: Vec::with_capacity(2 * want),
            floor: f64::NEG_INFINITY,
        }
    }

    fn full(&self) -> bool {
        self.floor > f64::NEG_INFINITY
    }

    #[inline(always)]
    fn offer(&mut self, key: f64, row: u64) {
        // An equal key may still rank first by its row.
        if key < self.floor {
            return;
        }
        self.top.push((key, row));
        if self.top.len() == 2 * self.want {
            self.top.select_nth_unstable_by(self.want - 1, order);
            self.top.truncate(self.want);
            self.floor = self.top[self.want - 1].0;
        }
    }

    fn finish(mut self) -> Vec<(f64, u64)> {
        self.top.sort_unstable_by(order);
        self.top.truncate(self.want);
        self.top
    }
}

/// Key descending, then row ascending.
fn order(a: &(f64, u64), b: &(f64, u64)) -> std::cmp::Ordering {
    b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
}

/// The smallest float32 at or above `w`.
pub(crate) fn round_up(w: f64) -> f32 {
    let f = w as f32;
    if (f as f64) < w { f.next_up() } else { f }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::dist::{sq_dist_f32, sq_dist_f64};

    /// Points on a line and in two tight, far-apart clusters: bounds from
    /// the first centre go stale at once.
    struct Points {
        x: Vec<f32>,
        d: usize,
        centres: Vec<usize>,
        fast: Vec<f32>,
    }

    impl Space for Points {
        fn centres(&self) -> usize {
            self.centres.len()
        }
        fn sync(&mut self, from: usize, hi: &mut [f32]) -> Result<()> {
            let d = self.d;
            for &c in &self.centres[from..] {
                let cx = &self.x[c * d..(c + 1) * d];
                for (i, row) in self.x.chunks_exact(d).enumerate() {
                    self.fast[i] = self.fast[i].min(sq_dist_f32(row, cx));
                    if hi[i] != TAKEN {
                        let bound = (self.fast[i] as f64) * (1.0 + 1e-5) + 1e-30;
                        hi[i] = hi[i].min(round_up(bound));
                    }
                }
            }
            Ok(())
        }
        fn canonical(&self, row: u64, from: usize) -> Result<f64> {
            let d = self.d;
            let r = &self.x[row as usize * d..(row as usize + 1) * d];
            Ok(self.centres[from..]
                .iter()
                .map(|&c| sq_dist_f64(r, &self.x[c * d..(c + 1) * d]))
                .fold(f64::INFINITY, f64::min))
        }
    }

    fn points() -> (Vec<f32>, usize) {
        let mut r = crate::rng::Rng::new(5);
        let d = 3;
        let mut x = Vec::new();
        // More rows than one block of bounds, so blocks are skipped.
        for i in 0..2500 {
            let base = match i % 3 {
                0 => 100.0,
                1 => -100.0,
                _ => (i as f32) * 0.01,
            };
            for _ in 0..d {
                x.push(base + (r.normal() as f32) * 0.5);
            }
            if i % 50 == 0 {
                // Exact duplicates make ties.
                let last = x[x.len() - d..].to_vec();
                x.extend(last);
            }
        }
        (x, d)
    }

    /// Naive f64 farthest-first or D² race, written without the engine.
    fn naive(x: &[f32], d: usize, first: usize, k: usize, race: Option<u64>) -> Vec<usize> {
        let n = x.len() / d;
        let mut picks = vec![first];
        let mut w = vec![f64::INFINITY; n];
        while picks.len() < k {
            let c = *picks.last().unwrap();
            let mut best: Option<(usize, f64)> = None;
            for i in 0..n {
                w[i] = w[i].min(sq_dist_f64(&x[i * d..(i + 1) * d], &x[c * d..(c + 1) * d]));
                if picks.contains(&i) {
                    continue;
                }
                let key = match race {
                    None => w[i],
                    Some(seed) => w[i] / exp_canonical(bits(seed, picks.len() as u32, i as u64)),
                };
                if best.is_none_or(|(_, bk)| key > bk) {
                    best = Some((i, key));
                }
            }
            picks.push(best.unwrap().0);
        }
        picks
    }

    #[test]
    fn lazy_picks_equal_full_passes_with_any_budget() {
        let (x, d) = points();
        let n = x.len() / d;
        for race in [None, Some(9u64)] {
            let want = naive(&x, d, 0, 40, race);
            for budget in [1, 50, 1 << 40] {
                let mut space = Points {
                    x: x.clone(),
                    d,
                    centres: vec![0],
                    fast: vec![f32::INFINITY; n],
                };
                let mut lazy = Lazy::new(n as u64, &[0]).with_budget(budget);
                let mut picks = vec![0];
                while picks.len() < 40 {
                    let key = match race {
                        None => Key::Weight,
                        Some(seed) => Key::Race {
                            seed,
                            t: picks.len() as u32,
                        },
                    };
                    let (row, _) = lazy.pick(&mut space, key, &crate::Silent).unwrap().unwrap();
                    picks.push(row as usize);
                    space.centres.push(row as usize);
                    lazy.take(row);
                }
                assert_eq!(picks, want, "race {race:?}, budget {budget}");
                if budget == 1 {
                    assert!(lazy.passes > 1, "a tiny budget falls back to passes");
                } else if budget == 1 << 40 {
                    assert_eq!(lazy.passes, 1, "an ample budget never passes again");
                }
            }
        }
    }

    #[test]
    fn every_row_taken_picks_none() {
        let (x, d) = points();
        let n = x.len() / d;
        let all: Vec<u64> = (0..n as u64).collect();
        let mut space = Points {
            x,
            d,
            centres: vec![0],
            fast: vec![f32::INFINITY; n],
        };
        let mut lazy = Lazy::new(n as u64, &all);
        assert!(
            lazy.pick(&mut space, Key::Weight, &crate::Silent)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn rounding_up_never_lowers() {
        for w in [0.0, 1e-300, 0.1, 1.0 / 3.0, 16.000000000000004, 3e38] {
            assert!(round_up(w) as f64 >= w);
        }
    }
}
