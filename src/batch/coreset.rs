//! Core-set selection: k-center greedy (Sener & Savarese, ICLR 2018).
//!
//! The centres start as the labeled rows (the job's exclusions). Each pick
//! is the row farthest from its nearest centre, ties to the lower index,
//! and becomes a centre. One N-vector holds each row's float32 squared
//! distance to its nearest centre; a pick updates it in one pass over the
//! embeddings, O(N·D). With no labeled rows, the first pick is the row
//! farthest from the pool's mean embedding.
//!
//! Exact: the float32 distances carry the bound of [`super::dist`]; the
//! rows whose bound reaches the best are re-checked with the canonical f64
//! distance to every centre.

use super::dist::{Simd, gamma32, sq_dist_f32, sq_dist_f64, underflow32};
use super::gpu::Resident;
use super::{Bufs, Clock, Contenders, Nearest, arg_max, check_embedding_rows, mark, par_pass};
use super::{EMBED_LIMIT, read_rows};
use super::{Terms, Update};
use crate::backend::Progress;
use crate::backend::gpu::Gpu;
use crate::error::{Error, Result};
use crate::job::Job;
use crate::pool::Pool;

/// A row that can no longer be picked (labeled, or picked already).
const TAKEN: f32 = -1.0;

/// Labeled centres folded in per pass over the pool.
const CENTRE_BLOCK: usize = 64;

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
    let d = emb.classes();
    let mut run = Run {
        resident: None,
        emb,
        d,
        chunk: super::rows_per_chunk(job, emb),
        simd: Simd::detect(),
        eps: gamma32(d + 2),
        abs: underflow32(d),
        mind: vec![f32::INFINITY; emb.rows() as usize],
        centres: Vec::new(),
        nearest: Nearest::default(),
        progress,
        refined: 0,
    };
    let labeled = job.exclusions.as_slice();
    mark(&mut run.mind, labeled, TAKEN);
    let mut picks = Vec::with_capacity(job.k);
    if job.k == 0 {
        return Ok((picks, 0));
    }
    let resident = |run: &Run| match gpu {
        Some(g) => Resident::new(g, emb, None, &run.mind, labeled.len() + job.k).map(Some),
        None => Ok(None),
    };
    let mut contenders = if labeled.is_empty() {
        let (row, dist) = from_mean(emb, run.chunk, progress, first)?;
        run.refined += emb.rows();
        clock.lap("mean and first pick");
        run.resident = resident(&run)?;
        if run.resident.is_some() {
            clock.lap("upload");
        }
        picks.push((row, dist.sqrt()));
        run.add_centre(row)?;
        if job.k == 1 {
            return Ok((picks, run.refined));
        }
        // The mean's pass validated every row.
        let c = run.update(run.count() - 1, false)?;
        clock.lap("distance updates");
        c
    } else {
        let mut last = Vec::new();
        run.resident = resident(&run)?;
        if run.resident.is_some() {
            clock.lap("upload");
        }
        for &r in labeled {
            run.add_centre(r)?;
        }
        for first in (0..labeled.len()).step_by(CENTRE_BLOCK) {
            last = run.update(first, first == 0)?;
        }
        clock.lap("labeled centres");
        last
    };
    loop {
        let (row, dist) = run.resolve(&contenders)?;
        clock.lap("canonical re-check");
        picks.push((row, dist.sqrt()));
        if picks.len() == job.k {
            return Ok((picks, run.refined));
        }
        run.add_centre(row)?;
        contenders = run.update(run.count() - 1, false)?;
        clock.lap("distance updates");
    }
}

struct Run<'a> {
    /// The GPU's copy of the embeddings and state, when it runs there.
    resident: Option<Resident<'a>>,
    emb: &'a Pool<'a>,
    d: usize,
    chunk: u64,
    simd: Simd,
    /// Relative and absolute bound of a float32 squared distance.
    eps: f64,
    abs: f64,
    mind: Vec<f32>,
    /// Centre embeddings, row-major, in the order they became centres.
    centres: Vec<f32>,
    nearest: Nearest,
    progress: &'a dyn Progress,
    refined: u64,
}

impl Run<'_> {
    fn add_centre(&mut self, row: u64) -> Result<()> {
        if let Some(r) = &self.resident {
            r.add_centre(self.count(), row);
        }
        let at = self.centres.len();
        self.centres.resize(at + self.d, 0.0);
        self.emb.row_f32(row, &mut self.centres[at..])?;
        check_embedding_rows(self.emb, row, &self.centres[at..])?;
        self.mind[row as usize] = TAKEN;
        Ok(())
    }

    fn count(&self) -> usize {
        self.centres.len() / self.d
    }

    /// Folds centres `first..` (at most [`CENTRE_BLOCK`] of them) into the
    /// nearest-centre vector, validating every row read on the first pass,
    /// and returns the rows that could be the farthest.
    fn update(&mut self, first: usize, validate: bool) -> Result<Vec<u64>> {
        let (d, simd, eps, abs) = (self.d, self.simd, self.eps, self.abs);
        let last = (first + CENTRE_BLOCK).min(self.count());
        if let Some(r) = &self.resident {
            let terms = Terms {
                eps,
                abs,
                ..Terms::default()
            };
            return r.update(Update::Coreset, first, last - first, &terms);
        }
        let centres = &self.centres[first * d..last * d];
        let (emb, progress) = (self.emb, self.progress);
        let parts = par_pass(
            &mut self.mind,
            self.chunk,
            || (Bufs::default(), Vec::new()),
            |(bufs, bounds): &mut (Bufs, Vec<(f64, f64)>), start, mind| {
                if progress.cancelled() {
                    return Err(Error::Cancelled);
                }
                let rows = read_rows(emb, start, start + mind.len() as u64, bufs)?;
                if validate {
                    check_embedding_rows(emb, start, &rows)?;
                }
                simd.run(|| {
                    for (x, m) in rows.chunks_exact(d).zip(mind.iter_mut()) {
                        if *m != TAKEN {
                            for c in centres.chunks_exact(d) {
                                *m = m.min(sq_dist_f32(x, c));
                            }
                        }
                    }
                });
                progress.advance((rows.len() * 4) as u64);
                bounds.clear();
                bounds.extend(mind.iter().map(|&f| {
                    if f == TAKEN {
                        (-1.0, -1.0)
                    } else {
                        let f = f as f64;
                        (((f - abs) / (1.0 + eps)).max(0.0), (f + abs) / (1.0 - eps))
                    }
                }));
                Ok(Contenders::of_chunk(start, bounds))
            },
        )?;
        Ok(Contenders::merge(parts))
    }

    /// The contender farthest from its nearest centre, canonically.
    fn resolve(&mut self, contenders: &[u64]) -> Result<(u64, f64)> {
        let (d, count) = (self.d, self.count());
        let mut row = vec![0f32; d];
        let mut keys = Vec::with_capacity(contenders.len());
        for &r in contenders {
            self.emb.row_f32(r, &mut row)?;
            let centres = &self.centres;
            let dist = self.nearest.get(r, count, |from| {
                Ok(centres[from * d..]
                    .chunks_exact(d)
                    .map(|c| sq_dist_f64(&row, c))
                    .fold(f64::INFINITY, f64::min))
            })?;
            keys.push((r, dist));
        }
        self.refined += contenders.len() as u64;
        arg_max(keys).ok_or_else(|| Error::Config("no row left to pick".into()))
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
