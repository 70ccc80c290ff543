//! Core-set selection: k-center greedy (Sener & Savarese, ICLR 2018).
//!
//! The centres start as the labeled rows (the job's exclusions). Each pick
//! is the row farthest from its nearest centre, ties to the lower index,
//! and becomes a centre. With no labeled rows, the first pick is the row
//! farthest from the pool's mean embedding.
//!
//! On the CPU the picks run on the engine of `src/batch/lazy.rs`: one float32 pass
//! folds the first centres into an upper bound per row, and each pick
//! re-computes canonically only the rows whose bound could still win (a
//! row's distance to its nearest centre never grows), with a full pass
//! when bounds go stale. On the GPU every pick updates the whole N-vector
//! of float32 distances in one pass.
//!
//! Exact: the float32 distances carry the bound of [`super::dist`]; the
//! pick is the canonical f64 arg-max either way.

use super::dist::{GROUP, Simd, gamma32, sq_dist_f64, transpose_groups, underflow32};
use super::dist::{x1_kernel, x16_kernel};
use super::gpu::{Resident, Side};
use super::lazy::{self, Key, Lazy, Space, round_up};
use super::{Bufs, Clock, Nearest, arg_max, check_embedding_rows, mark, par_pass};
use super::{EMBED_LIMIT, read_rows};
use super::{Terms, Update};
use crate::backend::Progress;
use crate::backend::gpu::Gpu;
use crate::error::{Error, Result};
use crate::job::Job;
use crate::pool::Pool;

/// Where k-center greedy starts when no row is labeled.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum First {
    /// The row farthest from the mean embedding (core-set).
    Farthest,
    /// The row nearest the mean embedding (GSx: Wu et al. 2019 start from
    /// the sample closest to the centroid).
    Nearest,
}

/// The picks (row, distance to the nearest centre when picked) and the
/// rows re-checked canonically.
pub(crate) fn pick(
    emb: &Pool,
    job: &Job,
    (gpu, first): (Option<&Gpu>, First),
    progress: &dyn Progress,
    clock: &mut Clock,
) -> Result<(Vec<(u64, f64)>, u64)> {
    let mut run = Euclid::new(emb, super::rows_per_chunk(job, emb), progress);
    let mut picks = Vec::with_capacity(job.k);
    if job.k == 0 {
        return Ok((picks, 0));
    }
    let mut refined = 0;
    let mut centres = job.exclusions.as_slice().to_vec();
    if centres.is_empty() {
        let (row, dist) = from_mean(emb, run.chunk, progress, first)?;
        refined += emb.rows();
        clock.lap("mean and first pick");
        picks.push((row, dist.sqrt()));
        centres.push(row);
        // The mean's pass validated every row.
        run.validated = true;
    }
    if picks.len() == job.k {
        return Ok((picks, refined));
    }
    for &r in &centres {
        run.add_centre(r)?;
    }
    if let Some(g) = gpu {
        let more = on_gpu(g, &run, &centres, job.k - picks.len(), clock)?;
        picks.extend(more.0);
        return Ok((picks, refined + more.1));
    }
    let mut lazy = Lazy::new(emb.rows(), &centres);
    lazy.sync(&mut run)?;
    clock.lap("first centres");
    while picks.len() < job.k {
        let (row, w) = lazy
            .pick(&mut run, Key::Weight, progress)?
            .ok_or_else(|| Error::Config("no row left to pick".into()))?;
        // A pick stands for the pass over the pool it replaces.
        progress.advance(emb.data_bytes());
        picks.push((row, w.sqrt()));
        run.add_centre(row)?;
        lazy.take(row);
    }
    clock.lap("picks");
    Ok((picks, refined + lazy.refined))
}

/// The picks after the first centres on the GPU: one pass over the
/// resident embeddings per pick, the contenders re-checked canonically.
fn on_gpu(
    g: &Gpu,
    run: &Euclid,
    centres: &[u64],
    k: usize,
    clock: &mut Clock,
) -> Result<(Vec<(u64, f64)>, u64)> {
    let mut mind = vec![f32::INFINITY; run.emb.rows() as usize];
    mark(&mut mind, centres, -1.0);
    let resident = Resident::new(g, Some(run.emb), Side::Nothing, &mind, centres.len() + k)?;
    clock.lap("upload");
    for (i, &r) in centres.iter().enumerate() {
        resident.add_centre(i, r);
    }
    let terms = Terms {
        eps: run.eps,
        abs: run.abs,
        ..Terms::default()
    };
    let mut contenders = resident.update_all(Update::Coreset, centres.len(), &terms)?;
    clock.lap("distance updates");
    let (mut nearest, mut refined) = (Nearest::default(), 0);
    let mut own = run.centres.clone();
    let mut picks = Vec::with_capacity(k);
    loop {
        let (row, dist) = resolve(run, &own, &mut nearest, &contenders)?;
        refined += contenders.len() as u64;
        clock.lap("canonical re-check");
        picks.push((row, dist.sqrt()));
        if picks.len() == k {
            return Ok((picks, refined));
        }
        let at = own.len() / run.d;
        resident.add_centre(at, row);
        own.extend(run.row(row)?);
        contenders = resident.update(Update::Coreset, at, 1, &terms)?;
        clock.lap("distance updates");
    }
}

/// The contender farthest from its nearest centre, canonically.
fn resolve(
    run: &Euclid,
    centres: &[f32],
    nearest: &mut Nearest,
    contenders: &[u64],
) -> Result<(u64, f64)> {
    let d = run.d;
    let count = centres.len() / d;
    let mut keys = Vec::with_capacity(contenders.len());
    for &r in contenders {
        let row = run.row(r)?;
        let dist = nearest.get(r, count, |from| {
            Ok(min_sq_dist(&row, &centres[from * d..], d))
        })?;
        keys.push((r, dist));
    }
    arg_max(keys).ok_or_else(|| Error::Config("no row left to pick".into()))
}

/// The canonical minimum squared distance from `row` to `centres`.
fn min_sq_dist(row: &[f32], centres: &[f32], d: usize) -> f64 {
    centres
        .chunks_exact(d)
        .map(|c| sq_dist_f64(row, c))
        .fold(f64::INFINITY, f64::min)
}

/// Centres among the rows of an embedding pool, under the Euclidean
/// distance: core-set's and k-means++'s [`Space`].
pub(crate) struct Euclid<'a> {
    emb: &'a Pool<'a>,
    d: usize,
    chunk: u64,
    simd: Simd,
    /// Relative and absolute bound of a float32 squared distance.
    eps: f64,
    abs: f64,
    /// Centre embeddings, row-major, in the order they became centres.
    centres: Vec<f32>,
    /// The same, in transposed groups of sixteen ([`transpose_groups`]).
    grouped: Vec<f32>,
    progress: &'a dyn Progress,
    /// Whether every row was checked already.
    validated: bool,
}

impl<'a> Euclid<'a> {
    pub fn new(emb: &'a Pool<'a>, chunk: u64, progress: &'a dyn Progress) -> Euclid<'a> {
        let d = emb.classes();
        Euclid {
            emb,
            d,
            chunk,
            simd: Simd::detect(),
            eps: gamma32(d + 2),
            abs: underflow32(d),
            centres: Vec::new(),
            grouped: Vec::new(),
            progress,
            validated: false,
        }
    }

    /// The centres, row-major.
    pub fn into_centres(self) -> Vec<f32> {
        self.centres
    }

    /// Notes that every row was checked already.
    pub fn validated(mut self) -> Self {
        self.validated = true;
        self
    }

    pub fn add_centre(&mut self, row: u64) -> Result<()> {
        let (d, at) = (self.d, self.centres());
        let x = self.row(row)?;
        if at % GROUP == 0 {
            self.grouped.resize((at + GROUP) * d, 0.0);
        }
        let base = at / GROUP * GROUP * d;
        for (l, &v) in x.iter().enumerate() {
            self.grouped[base + l * GROUP + at % GROUP] = v;
        }
        self.centres.extend(x);
        Ok(())
    }

    /// Row `r`, checked unless a pass checked every row.
    fn row(&self, r: u64) -> Result<Vec<f32>> {
        let mut x = vec![0f32; self.d];
        self.emb.row_f32(r, &mut x)?;
        if !self.validated {
            check_embedding_rows(self.emb, r, &x)?;
        }
        Ok(x)
    }
}

impl Space for Euclid<'_> {
    fn centres(&self) -> usize {
        self.centres.len() / self.d
    }

    /// Folds the centres in one pass, sixteen at a time (one vector lane
    /// each), validating every row if no pass has yet.
    fn sync(&mut self, from: usize, hi: &mut [f32]) -> Result<()> {
        let (d, eps, abs) = (self.d, self.eps, self.abs);
        let (emb, progress) = (self.emb, self.progress);
        let count = self.centres() - from;
        let grouped = match count < GROUP / 2 {
            true => Vec::new(),
            false => transpose_groups(&self.centres[from * d..], d),
        };
        let (x16, x1, validate) = (x16_kernel(self.simd), x1_kernel(self.simd), !self.validated);
        let centres = &self.centres[from * d..];
        par_pass(hi, self.chunk, Bufs::default, |bufs, start, hi| {
            if progress.cancelled() {
                return Err(Error::Cancelled);
            }
            let rows = read_rows(emb, start, start + hi.len() as u64, bufs)?;
            if validate {
                check_embedding_rows(emb, start, &rows)?;
            }
            for (x, h) in rows.chunks_exact(d).zip(hi.iter_mut()) {
                if *h == lazy::TAKEN {
                    continue;
                }
                let mut m = f32::INFINITY;
                if count < GROUP / 2 {
                    // Too few to fill the lanes.
                    for c in centres.chunks_exact(d) {
                        m = m.min(x1(x, c));
                    }
                }
                for (g, group) in grouped.chunks_exact(GROUP * d).enumerate() {
                    let lanes = (count - g * GROUP).min(GROUP);
                    for &v in &x16(x, group)[..lanes] {
                        m = m.min(v);
                    }
                }
                *h = h.min(round_up((m as f64 + abs) / (1.0 - eps)));
            }
            progress.advance((rows.len() * 4) as u64);
            Ok(())
        })?;
        self.validated = true;
        Ok(())
    }

    /// The float32 distances to the centres first, sixteen at a time;
    /// then the canonical one only to the centres whose bound reaches the
    /// smallest upper bound (the minimum is among them).
    fn canonical(&self, row: u64, from: usize) -> Result<f64> {
        let (d, count) = (self.d, self.centres());
        let x = self.row(row)?;
        if count - from < 2 * GROUP {
            return Ok(min_sq_dist(&x, &self.centres[from * d..], d));
        }
        let x16 = x16_kernel(self.simd);
        let mut fast = Vec::with_capacity(count - from + GROUP);
        for g in from / GROUP..count.div_ceil(GROUP) {
            let v = x16(&x, &self.grouped[g * GROUP * d..(g + 1) * GROUP * d]);
            let lanes = (g * GROUP..(g + 1) * GROUP).zip(v);
            fast.extend(lanes.filter(|(j, _)| (from..count).contains(j)));
        }
        let (eps, abs) = (self.eps, self.abs);
        let best = fast.iter().map(|&(_, v)| v).fold(f32::INFINITY, f32::min);
        let best_hi = (best as f64 + abs) / (1.0 - eps);
        Ok(fast
            .iter()
            .filter(|&&(_, v)| (v as f64 - abs) / (1.0 + eps) <= best_hi)
            .map(|&(j, _)| sq_dist_f64(&x, &self.centres[j * d..(j + 1) * d]))
            .fold(f64::INFINITY, f64::min))
    }
}

/// The first pick without labeled rows: the row farthest from (or
/// nearest) the mean embedding, canonically, ties to the lower row, with
/// its squared distance. The mean is summed in f64 in row order, so it
/// does not depend on chunking; every row is validated.
pub(crate) fn from_mean(
    emb: &Pool,
    chunk: u64,
    progress: &dyn Progress,
    first: First,
) -> Result<(u64, f64)> {
    let (d, n) = (emb.classes(), emb.rows());
    let mut sum = vec![0f64; d];
    let mut bufs = Bufs::default();
    let mut start = 0;
    while start < n {
        if progress.cancelled() {
            return Err(Error::Cancelled);
        }
        let end = (start + chunk).min(n);
        let rows = read_rows(emb, start, end, &mut bufs)?;
        check_embedding_rows(emb, start, &rows)?;
        for x in rows.chunks_exact(d) {
            for (s, &v) in sum.iter_mut().zip(x) {
                *s += v as f64;
            }
        }
        progress.advance((rows.len() * 4) as u64);
        start = end;
    }
    let mean: Vec<f64> = sum.iter().map(|s| s / n as f64).collect();
    debug_assert!(mean.iter().all(|m| m.abs() <= EMBED_LIMIT));
    // Nearest is the arg-max of the negated distance (ties still to the
    // lower row).
    let sign = if first == First::Nearest { -1.0 } else { 1.0 };
    let mut rows = vec![(); n as usize];
    let parts = par_pass(&mut rows, chunk, Bufs::default, |bufs, start, m| {
        let rows = read_rows(emb, start, start + m.len() as u64, bufs)?;
        let dists = rows
            .chunks_exact(d)
            .enumerate()
            .map(|(i, x)| (start + i as u64, sign * sq_dist_mean(x, &mean)));
        Ok(arg_max(dists))
    })?;
    let (row, key) = arg_max(parts.into_iter().flatten())
        .ok_or_else(|| Error::Config("the pool is empty".into()))?;
    Ok((row, sign * key))
}

/// Canonical squared distance to the f64 mean (the order of
/// [`super::dist`]'s canonical sums).
fn sq_dist_mean(x: &[f32], mean: &[f64]) -> f64 {
    let mut s = [0f64; 8];
    for (j, (&v, &m)) in x.iter().zip(mean).enumerate() {
        let t = v as f64 - m;
        s[j % 8] += t * t;
    }
    ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]))
}
