//! Greedy sampling for regression (Wu, Lin and Huang, *Active learning for
//! regression using greedy sampling*, Information Sciences 474, 2019):
//! each pick is the row whose nearest labeled (or already picked) row is
//! farthest away, in one of three spaces.
//!
//! - `gsx`: Euclidean distance between embeddings. This is k-center greedy,
//!   so it runs on core-set's engine ([`super::coreset`], CPU or GPU); with
//!   no labeled row the first pick is the row nearest the mean embedding
//!   (the paper's "closest to the centroid"; scikit-activeml takes the
//!   medoid, which needs all N² distances).
//! - `gsy`: `|ŷ_n − y_m|`, a row's prediction against a labeled row's
//!   target.
//! - `igs`: `‖x_n − x_m‖ · |ŷ_n − y_m|`, the product for each pair, then
//!   the minimum over the labeled rows (not the product of the two
//!   minima), as the paper and scikit-activeml define it.
//!
//! A row picked earlier in the same batch has no label yet: its target is
//! its prediction, as in scikit-activeml. With no labeled row at all, the
//! first pick is GSx's (the paper initialises every variant so), which is
//! why `gsy` then needs embeddings.
//!
//! # Exactness
//! Keys are compared squared (`sq_dist · (ŷ − y)²`), which ranks the same
//! and takes no square root. `gsy`'s key is canonical as computed (one
//! subtraction and one square in f64 per pair; a minimum has no order). For
//! `igs` the float32 squared distance carries [`super::dist`]'s bound
//! (`|d32 − d| ≤ ε·d + a`), so a row's float32 key `min_m d32_m · w_m`
//! lies within `[(key − a·w_max) / (1 + ε), (key + a·w_max) / (1 − ε)]` of
//! the canonical one, `w_max` the largest output term any pair can have.
//! A key only falls as centres are added, so the picks run on the engine
//! of `src/batch/lazy.rs`, as core-set's do: the upper bounds rank the
//! rows, and the best is decided by canonical keys (every centre, f64);
//! ties go to the lower row. Picks are the same for every thread count and
//! chunk size. On the GPU, `igs` and `gsy` run on core-set's resident
//! engine (`shaders/batch.wgsl`, `igs_row`; `gsy` with no embeddings
//! resident and no distance term): one pass per pick keeps each row's
//! interval around its key, the float32 prediction and target's rounding
//! included, and the rows whose upper end reaches the best lower end are
//! decided canonically, so the picks are the CPU's.

use super::coreset::{self, First};
use super::dist::{Simd, gamma32, sq_dist_f32, sq_dist_f64, underflow32};
use super::gpu::{Resident, Side};
use super::lazy::{self, Key, Lazy, Space, round_up};
use super::{Bufs, Clock, Nearest, arg_max, check_embedding_rows, mark, par_pass};
use super::{Terms, Update};
use super::{canonical_prob_rows, read_rows, rows_per_chunk};
use crate::backend::Progress;
use crate::backend::gpu::Gpu;
use crate::error::{Error, Result};
use crate::job::Job;
use crate::pool::Pool;
use crate::query::{Query, Regression, RegressionInput};
use crate::score::regression::sq_diff;
use crate::select::Selection;

/// The k rows `job`'s greedy strategy picks, in pick order, with the
/// distance that decided each (the feature distance for `gsx`, the output
/// distance for `gsy`, their product for `igs`; the first pick with no
/// labeled row: its distance to the mean embedding).
pub(crate) fn select(
    preds: Option<&Pool>,
    emb: Option<&Pool>,
    job: &Job,
    gpu: Option<&Gpu>,
    progress: &dyn Progress,
) -> Result<Selection> {
    let Query::Regress(strategy) = job.query else {
        return Err(Error::Config(format!(
            "{} is not a greedy-sampling strategy",
            job.query
        )));
    };
    let (rows, path) = check(strategy, preds, emb, job)?;
    job.check_picks((rows, "the pool's", &path), strategy.name())?;
    let mut clock = Clock::default();
    let (picks, refined) = match (strategy, emb) {
        (Regression::Gsx, Some(emb)) => {
            coreset::pick(emb, job, (gpu, First::Nearest), progress, &mut clock)?
        }
        (Regression::Gsy | Regression::Igs, _) => {
            let preds = preds.ok_or_else(|| no_predictions(strategy))?;
            Greedy::new(strategy, preds, emb, job, progress)?.pick(job, gpu)?
        }
        _ => return Err(Error::Config(format!("{strategy} needs embeddings"))),
    };
    let excluded = job.exclusions.len() as u64;
    let mut sel = Selection::of_picks(job.query, picks, rows, excluded, refined);
    sel.phases = clock.phases;
    Ok(sel)
}

fn no_predictions(strategy: Regression) -> Error {
    Error::Config(format!(
        "{strategy} reads the model's predictions: a pool of N (or N x 1) predictions with --input regression, or N x 2 (mean, std) rows with --input regression-mean-std"
    ))
}

/// Checks shapes, the input form and the targets before any row is read;
/// returns the pool's rows and a file to name.
fn check(
    strategy: Regression,
    preds: Option<&Pool>,
    emb: Option<&Pool>,
    job: &Job,
) -> Result<(u64, std::path::PathBuf)> {
    let first = |p: &Pool| p.shards()[0].path().to_path_buf();
    if let (Some(p), Some(e)) = (preds, emb)
        && p.rows() != e.rows()
    {
        return Err(Error::EmbeddingRows {
            path: first(e),
            pool: first(p),
            expected: p.rows(),
            found: e.rows(),
        });
    }
    if let Some(p) = preds {
        let width = match job.input.regression() {
            Some(RegressionInput::Predictions) => 1,
            Some(RegressionInput::MeanStd) => 2,
            _ => return Err(no_predictions(strategy)),
        };
        if p.classes() != width {
            return Err(Error::Config(format!(
                "{}: {} columns, but --input {} rows hold {width}",
                p.path().display(),
                p.classes(),
                job.input.regression().map_or("", RegressionInput::name)
            )));
        }
    }
    if strategy.needs_targets() {
        if let Some(&row) = job
            .exclusions
            .as_slice()
            .iter()
            .find(|&&r| job.targets.get(r).is_none())
        {
            return Err(Error::Config(format!(
                "{strategy} compares predictions with the labeled rows' targets, and labeled row {row} has none: give --targets y.npy (targets= in Python), the pool's N targets with NaN for unlabeled rows"
            )));
        }
        if job.exclusions.is_empty() && emb.is_none() && job.k > 0 {
            return Err(Error::Config(format!(
                "{strategy} with no labeled row starts from GSx's first pick, the row nearest the mean embedding: give --embeddings (embeddings=), or labeled rows with their targets"
            )));
        }
    }
    let pool = preds.or(emb).ok_or_else(|| no_predictions(strategy))?;
    Ok((pool.rows(), first(pool)))
}

/// The state of `gsy` or `igs`: the predictions, the centres and their
/// targets; the picks run on [`Lazy`], whose weight is the
/// key (a row's key only falls as centres are added).
struct Greedy<'a> {
    strategy: Regression,
    /// The embeddings: `igs` reads them, and every strategy's first pick
    /// with no labeled row.
    emb: Option<&'a Pool<'a>>,
    d: usize,
    chunk: u64,
    simd: Simd,
    /// Relative and absolute bound of a float32 squared distance.
    eps: f64,
    abs: f64,
    /// The largest output term any (row, centre) pair can have.
    w_max: f64,
    preds: Vec<f64>,
    /// Centre embeddings (`igs`), row-major, in the order they became
    /// centres, and every centre's target.
    centres: Vec<f32>,
    targets: Vec<f64>,
    progress: &'a dyn Progress,
    /// Whether every embedding row was checked already.
    validated: bool,
}

impl<'a> Greedy<'a> {
    fn new(
        strategy: Regression,
        preds: &Pool,
        emb: Option<&'a Pool<'a>>,
        job: &Job,
        progress: &'a dyn Progress,
    ) -> Result<Self> {
        let preds_v = read_predictions(preds, job, progress)?;
        let labeled = job.exclusions.as_slice();
        let targets = labeled.iter().filter_map(|&r| job.targets.get(r));
        let (lo, hi) = preds_v
            .iter()
            .copied()
            .chain(targets)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            });
        let d = emb.map_or(1, Pool::classes);
        let chunk = match (emb, job.chunk_rows) {
            (_, c) if c > 0 => c,
            (Some(e), _) => rows_per_chunk(job, e),
            (None, _) => 1 << 14,
        };
        Ok(Greedy {
            strategy,
            emb,
            d,
            chunk,
            simd: Simd::detect(),
            eps: gamma32(d + 2),
            abs: underflow32(d),
            w_max: if hi >= lo { sq_diff(hi, lo) } else { 0.0 },
            preds: preds_v,
            centres: Vec::new(),
            targets: Vec::new(),
            progress,
            validated: false,
        })
    }

    /// The embeddings `igs` reads; `None` for `gsy`.
    fn igs(&self) -> Option<&'a Pool<'a>> {
        self.emb.filter(|_| self.strategy == Regression::Igs)
    }

    /// The picks (row, output or product distance) and the rows re-checked
    /// canonically; on `gpu` when given.
    fn pick(mut self, job: &Job, gpu: Option<&Gpu>) -> Result<(Vec<(u64, f64)>, u64)> {
        let mut picks = Vec::with_capacity(job.k);
        if job.k == 0 {
            return Ok((picks, 0));
        }
        let mut refined = 0;
        let mut taken = job.exclusions.as_slice().to_vec();
        if taken.is_empty() {
            let emb = self.emb.ok_or_else(|| no_predictions(self.strategy))?;
            let (row, dist) = coreset::from_mean(emb, self.chunk, self.progress, First::Nearest)?;
            refined += emb.rows();
            self.validated = true;
            picks.push((row, dist.sqrt()));
            let y = self.preds[row as usize];
            self.add_centre(row, y)?;
            taken.push(row);
        } else {
            for &r in &taken {
                let y = job.targets.get(r).unwrap_or(f64::NAN);
                self.add_centre(r, y)?;
            }
        }
        let bytes = self
            .igs()
            .map_or(self.preds.len() as u64 * 8, Pool::data_bytes);
        if let Some(g) = gpu
            && picks.len() < job.k
        {
            let more = self.on_gpu(g, &taken, job.k - picks.len(), bytes)?;
            picks.extend(more.0);
            return Ok((picks, refined + more.1));
        }
        let mut lazy = Lazy::new(self.preds.len() as u64, &taken);
        let progress = self.progress;
        while picks.len() < job.k {
            let (row, key) = lazy
                .pick(&mut self, Key::Weight, progress)?
                .ok_or_else(|| Error::Config("no row left to pick".into()))?;
            // A pick stands for the pass over the pool it replaces.
            progress.advance(bytes);
            picks.push((row, key.sqrt()));
            let y = self.preds[row as usize];
            self.add_centre(row, y)?;
            lazy.take(row);
        }
        Ok((picks, refined + lazy.refined))
    }

    /// The next `k` picks on the GPU after the centres `taken`: the
    /// predictions, the centres' targets and (`igs`) the embeddings
    /// resident, one pass per pick folding the newest centre into every
    /// row's bounds (the kernel's `igs_row`), and the contenders decided
    /// by their canonical keys, ties to the lower row, as on the CPU.
    fn on_gpu(
        &mut self,
        g: &Gpu,
        taken: &[u64],
        k: usize,
        bytes: u64,
    ) -> Result<(Vec<(u64, f64)>, u64)> {
        let mut mind = vec![0f32; self.preds.len()];
        mark(&mut mind, taken, -1.0);
        let preds: Vec<f32> = self.preds.iter().map(|&p| p as f32).collect();
        let resident = Resident::new(g, self.igs(), Side::Igs(&preds), &mind, taken.len() + k)?;
        self.validated |= self.igs().is_some();
        for (i, (&r, &y)) in taken.iter().zip(&self.targets).enumerate() {
            resident.add_centre(i, r);
            resident.set_target(i, y);
        }
        let terms = Terms {
            eps: self.eps,
            abs: self.abs,
            ..Terms::default()
        };
        let mut contenders = resident.update_all(Update::Igs, taken.len(), &terms)?;
        let (mut nearest, mut refined) = (Nearest::default(), 0);
        let mut picks = Vec::with_capacity(k);
        loop {
            if self.progress.cancelled() {
                return Err(Error::Cancelled);
            }
            let mut keys = Vec::with_capacity(contenders.len());
            for &r in &contenders {
                let key = nearest.get(r, self.centres(), |from| self.canonical(r, from))?;
                keys.push((r, key));
            }
            refined += keys.len() as u64;
            let (row, key) =
                arg_max(keys).ok_or_else(|| Error::Config("no row left to pick".into()))?;
            // A pick stands for the pass over the pool it replaces.
            self.progress.advance(bytes);
            picks.push((row, key.sqrt()));
            if picks.len() == k {
                return Ok((picks, refined));
            }
            let (at, y) = (self.centres(), self.preds[row as usize]);
            self.add_centre(row, y)?;
            resident.add_centre(at, row);
            resident.set_target(at, y);
            contenders = resident.update(Update::Igs, at, 1, &terms)?;
        }
    }

    fn add_centre(&mut self, row: u64, target: f64) -> Result<()> {
        if let Some(emb) = self.igs() {
            let at = self.centres.len();
            self.centres.resize(at + self.d, 0.0);
            emb.row_f32(row, &mut self.centres[at..])?;
            check_embedding_rows(emb, row, &self.centres[at..])?;
        }
        self.targets.push(target);
        Ok(())
    }
}

impl Space for Greedy<'_> {
    fn centres(&self) -> usize {
        self.targets.len()
    }

    /// One pass folding the centres into every row's key: `gsy`'s exact as
    /// computed, `igs`'s from float32 distances with the module's bound;
    /// the embeddings are validated on the first.
    fn sync(&mut self, from: usize, hi: &mut [f32]) -> Result<()> {
        let (d, simd, eps, validate) = (self.d, self.simd, self.eps, !self.validated);
        let slack = self.abs * self.w_max;
        let targets = &self.targets[from..];
        let (preds, progress) = (&self.preds, self.progress);
        let emb = self.igs();
        let centres = &self.centres[from * d.min(self.centres.len())..];
        par_pass(hi, self.chunk, Bufs::default, |bufs, start, hi| {
            if progress.cancelled() {
                return Err(Error::Cancelled);
            }
            let preds = &preds[start as usize..start as usize + hi.len()];
            let Some(emb) = emb else {
                for (h, &p) in hi.iter_mut().zip(preds) {
                    if *h != lazy::TAKEN {
                        let k = targets
                            .iter()
                            .map(|&y| sq_diff(p, y))
                            .fold(f64::INFINITY, f64::min);
                        *h = h.min(round_up(k));
                    }
                }
                return Ok(());
            };
            let rows = read_rows(emb, start, start + hi.len() as u64, bufs)?;
            if validate {
                check_embedding_rows(emb, start, &rows)?;
            }
            simd.run(|| {
                for ((x, h), &p) in rows.chunks_exact(d).zip(hi.iter_mut()).zip(preds) {
                    if *h != lazy::TAKEN {
                        let mut k = f64::INFINITY;
                        for (c, &y) in centres.chunks_exact(d).zip(targets) {
                            k = k.min(sq_dist_f32(x, c) as f64 * sq_diff(p, y));
                        }
                        *h = h.min(round_up((k + slack) / (1.0 - eps)));
                    }
                }
            });
            progress.advance((rows.len() * 4) as u64);
            Ok(())
        })?;
        self.validated |= emb.is_some();
        Ok(())
    }

    fn canonical(&self, row: u64, from: usize) -> Result<f64> {
        let (d, p) = (self.d, self.preds[row as usize]);
        let targets = &self.targets[from..];
        let Some(emb) = self.igs() else {
            return Ok(targets
                .iter()
                .map(|&y| sq_diff(p, y))
                .fold(f64::INFINITY, f64::min));
        };
        let mut x = vec![0f32; d];
        emb.row_f32(row, &mut x)?;
        Ok(self.centres[from * d..]
            .chunks_exact(d)
            .zip(targets)
            .map(|(c, &y)| sq_dist_f64(&x, c) * sq_diff(p, y))
            .fold(f64::INFINITY, f64::min))
    }
}

/// Every row's prediction (column 0), checked: finite, within the limit,
/// and a (mean, std) row's std ≥ 0. A bad value is named by its file and
/// row.
fn read_predictions(preds: &Pool, job: &Job, progress: &dyn Progress) -> Result<Vec<f64>> {
    let (n, c) = (preds.rows(), preds.classes());
    let mut out = Vec::with_capacity(n as usize);
    let (mut bufs, mut rows) = (Bufs::default(), Vec::new());
    let step = (1u64 << 20) / (c as u64 * 8);
    let mut start = 0;
    while start < n {
        if progress.cancelled() {
            return Err(Error::Cancelled);
        }
        let end = (start + step).min(n);
        canonical_prob_rows(preds, &job.input, start, end, &mut bufs, &mut rows)?;
        out.extend(rows.chunks_exact(c).map(|r| r[0]));
        progress.advance((end - start) * c as u64 * 4);
        start = end;
    }
    Ok(out)
}
