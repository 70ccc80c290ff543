//! The disagreement strategies' engine: a row's T samples are read
//! together (chunks of rows in parallel, each sample's rows from its own
//! place in the files), checked as probabilities, and scored canonically
//! ([`crate::score::disagree`]); the exact top k is merged across workers.
//! Memory is a chunk of rows per worker and k, whatever N and T are.
//!
//! Every row is scored by the canonical f64 definition, so the selection is
//! exact by construction: there is no fast path to bound yet, and no GPU
//! path (the device policy keeps these strategies on the CPU).

use rayon::prelude::*;

use crate::backend::Progress;
use crate::error::{BadSample, Error, Result};
use crate::job::Job;
use crate::pool::Samples;
use crate::pool::samples::ReadBufs;
use crate::query::{Disagreement, Query};
use crate::score::Ranked;
use crate::score::disagree::disagreement;
use crate::score::input::canonical_probs;
use crate::select::{Selection, TopK};

/// Sample bytes per unit of parallel work, as the row-wise engine's.
const CHUNK_BYTES: u64 = 256 << 10;

/// The job's strategy, checked against the samples.
fn check(samples: &Samples, job: &Job) -> Result<Disagreement> {
    let Query::Disagree(d) = job.query else {
        return Err(Error::Config(format!(
            "{} does not read samples",
            job.query
        )));
    };
    job.input.check().map_err(Error::Config)?;
    if samples.samples() < d.min_samples() {
        return Err(Error::Config(format!(
            "{d} needs at least {} samples to measure disagreement, got T = {}",
            d.min_samples(),
            samples.samples()
        )));
    }
    Ok(d)
}

fn rows_per_chunk(samples: &Samples, job: &Job) -> u64 {
    if job.chunk_rows > 0 {
        return job.chunk_rows;
    }
    let row = (samples.samples() * samples.classes() * 4).max(1) as u64;
    (CHUNK_BYTES / row).clamp(16, 1 << 16)
}

/// A worker's buffers.
#[derive(Default)]
struct Scratch {
    bufs: ReadBufs,
    stored: Vec<f64>,
    probs: Vec<f64>,
    mean: Vec<f64>,
}

/// The canonical scores of local rows `start..end`, in row order, to
/// `each(local row, score)`.
fn score_chunk(
    samples: &Samples,
    job: &Job,
    d: Disagreement,
    (start, end): (u64, u64),
    s: &mut Scratch,
    each: &mut dyn FnMut(u64, f64),
) -> Result<()> {
    let (t_all, c) = (samples.samples(), samples.classes());
    samples.read(start, end, &mut s.bufs, &mut s.stored)?;
    s.probs.resize(t_all * c, 0.0);
    for (i, row) in s.stored.chunks_exact(t_all * c).enumerate() {
        let r = start + i as u64;
        for (t, (stored, p)) in row
            .chunks_exact(c)
            .zip(s.probs.chunks_exact_mut(c))
            .enumerate()
        {
            canonical_probs(&job.input, stored, p).map_err(|problem| {
                let (path, at) = samples.locate(t, r);
                Error::BadSample(Box::new(BadSample {
                    path,
                    at,
                    sample: t,
                    global: samples.first_row() + r,
                    problem,
                }))
            })?;
        }
        each(r, disagreement(d, job.log_base, &s.probs, c, &mut s.mean));
    }
    Ok(())
}

/// The chunks: (local start, local end).
fn chunks(samples: &Samples, job: &Job) -> Vec<(u64, u64)> {
    let step = rows_per_chunk(samples, job);
    (0..samples.rows().div_ceil(step))
        .map(|i| (i * step, ((i + 1) * step).min(samples.rows())))
        .collect()
}

/// The k rows of most disagreement, exactly (ties to the lower row).
pub(crate) fn select(samples: &Samples, job: &Job, progress: &dyn Progress) -> Result<Selection> {
    let d = check(samples, job)?;
    let k = job.k.min(samples.rows() as usize);
    let g0 = samples.first_row();
    let row_bytes = samples.data_bytes() / samples.rows().max(1);
    let found: Result<TopK> = chunks(samples, job)
        .into_par_iter()
        .map_init(Scratch::default, |s, span| {
            if progress.cancelled() {
                return Err(Error::Cancelled);
            }
            let mut top = TopK::new(k);
            score_chunk(samples, job, d, span, s, &mut |r, score| {
                let index = g0 + r;
                if !job.exclusions.contains(index) {
                    top.offer(Ranked {
                        priority: score,
                        index,
                    });
                }
            })?;
            progress.advance((span.1 - span.0) * row_bytes);
            Ok(top)
        })
        // The first error in row order wins, so a bad file names the same
        // row on every run.
        .try_reduce(
            || TopK::new(k),
            |mut a, b| {
                a.merge(b);
                Ok(a)
            },
        );
    let top = match found {
        Ok(top) => top,
        Err(Error::Cancelled) => return Err(Error::Cancelled),
        Err(_) => return Err(first_error(samples, job, d)),
    };
    let excluded = job.exclusions.within(g0, g0 + samples.rows()).len() as u64;
    Ok(Selection::from_topk(
        job.query,
        top,
        samples.rows(),
        excluded,
        0,
    ))
}

/// The first failure in row order (a second, sequential pass, taken only
/// when the parallel one failed somewhere).
fn first_error(samples: &Samples, job: &Job, d: Disagreement) -> Error {
    let mut s = Scratch::default();
    for span in chunks(samples, job) {
        if let Err(e) = score_chunk(samples, job, d, span, &mut s, &mut |_, _| {}) {
            return e;
        }
    }
    Error::Cancelled
}

/// Every row's canonical score, in row order, chunk by chunk to `sink`.
pub(crate) fn score_each(
    samples: &Samples,
    job: &Job,
    progress: &dyn Progress,
    sink: &mut dyn FnMut(&[f64]) -> Result<()>,
) -> Result<()> {
    let d = check(samples, job)?;
    let all = chunks(samples, job);
    // A few chunks per core at a time: parallel, in order, bounded memory.
    for group in all.chunks(rayon::current_num_threads() * 4) {
        let scores: Vec<Result<Vec<f64>>> = group
            .par_iter()
            .map_init(Scratch::default, |s, &span| {
                if progress.cancelled() {
                    return Err(Error::Cancelled);
                }
                let mut out = Vec::with_capacity((span.1 - span.0) as usize);
                score_chunk(samples, job, d, span, s, &mut |_, v| out.push(v))?;
                Ok(out)
            })
            .collect();
        for chunk in scores {
            sink(&chunk?)?;
        }
    }
    Ok(())
}
