//! EMCM's engine (expected model change maximization, Cai, Zhang and Zhou
//! 2013): each row's T ensemble predictions, the model's prediction and
//! the row's features are read together, chunk by chunk (chunks in
//! parallel), scored canonically ([`crate::score::regression::emcm`]), and
//! the exact top k merged across workers. Memory is a chunk of rows per
//! worker and k. On the GPU ([`gpu`]) the kernel scores each row in f32
//! within a proven interval and the candidates are scored here, so both
//! devices pick the same rows. The other regression strategies run on the
//! disagreement engine (`std`) and the greedy one (`batch::greedy`).

#[cfg(feature = "gpu")]
mod gpu;

use crate::backend::{Progress, chunked};
use crate::batch::dist::dot_f64;
use crate::batch::{Bufs, canonical_prob_rows, check_embedding_rows, read_rows};
use crate::disagree::read_canonical;
use crate::error::{Error, Result};
use crate::job::Job;
use crate::pool::samples::ReadBufs;
use crate::pool::{Pool, Samples};
use crate::query::{Query, Regression, RegressionInput};
use crate::score::Ranked;
use crate::score::regression::emcm;
use crate::select::Selection;

/// What EMCM reads: the ensemble's T predictions, the model's, and the
/// features.
pub(crate) struct EmcmInputs<'a> {
    pub samples: &'a Samples<'a>,
    pub preds: &'a Pool<'a>,
    pub emb: &'a Pool<'a>,
}

/// Refuses inputs that do not fit together, before any row is read.
fn check(inp: &EmcmInputs, job: &Job) -> Result<()> {
    if job.query != Query::Regress(Regression::Emcm) {
        return Err(Error::Config(format!("{} is not emcm", job.query)));
    }
    if job.input.regression() != Some(RegressionInput::Samples) || inp.samples.classes() != 1 {
        return Err(Error::Config(
            "emcm reads T x N ensemble predictions: give --samples with --input regression-samples"
                .into(),
        ));
    }
    if inp.samples.samples() < 2 {
        return Err(Error::Config(format!(
            "emcm needs T ≥ 2 ensemble predictions a row, got T = {}",
            inp.samples.samples()
        )));
    }
    let n = inp.samples.rows();
    for (what, pool) in [("predictions", inp.preds), ("embeddings", inp.emb)] {
        if pool.rows() != n {
            return Err(Error::Config(format!(
                "{}: {} rows of {what}, but the ensemble's predictions have {n}",
                pool.path().display(),
                pool.rows()
            )));
        }
    }
    if inp.preds.classes() != 1 {
        return Err(Error::Config(format!(
            "{}: emcm reads one prediction a row (N or N x 1), got {} columns",
            inp.preds.path().display(),
            inp.preds.classes()
        )));
    }
    Ok(())
}

/// A worker's buffers.
#[derive(Default)]
struct Scratch {
    read: ReadBufs,
    stored: Vec<f64>,
    values: Vec<f64>,
    bufs: Bufs,
    preds: Vec<f64>,
}

/// The canonical scores of local rows `span`, to `each(local row, score)`.
fn score_chunk(
    inp: &EmcmInputs,
    job: &Job,
    (start, end): (u64, u64),
    s: &mut Scratch,
    each: &mut dyn FnMut(u64, f64),
) -> Result<()> {
    let t = inp.samples.samples();
    read_canonical(
        inp.samples,
        job,
        (start, end),
        (&mut s.read, &mut s.stored),
        &mut s.values,
    )?;
    canonical_prob_rows(inp.preds, &job.input, start, end, &mut s.bufs, &mut s.preds)?;
    let d = inp.emb.classes();
    let rows = read_rows(inp.emb, start, end, &mut s.bufs)?;
    check_embedding_rows(inp.emb, start, &rows)?;
    for (i, ((v, &p), x)) in s
        .values
        .chunks_exact(t)
        .zip(&s.preds)
        .zip(rows.chunks_exact(d))
        .enumerate()
    {
        each(start + i as u64, emcm(v, p, dot_f64(x, x)));
    }
    Ok(())
}

fn chunks(inp: &EmcmInputs, job: &Job) -> Vec<(u64, u64)> {
    let n = inp.samples.rows();
    let row = ((inp.samples.samples() + 1 + inp.emb.classes()) * 4) as u64;
    let step = match job.chunk_rows {
        0 => ((256u64 << 10) / row).clamp(16, 1 << 16),
        c => c,
    };
    (0..n.div_ceil(step))
        .map(|i| (i * step, ((i + 1) * step).min(n)))
        .collect()
}

/// The k rows of largest EMCM on `gpu`, with the GPU's phases.
pub(crate) fn select_on_gpu(
    g: &crate::backend::gpu::Gpu,
    inp: &EmcmInputs,
    job: &Job,
    progress: &dyn Progress,
) -> Result<(Selection, crate::backend::Phases)> {
    #[cfg(feature = "gpu")]
    return gpu::select(g, inp, job, progress);
    #[cfg(not(feature = "gpu"))]
    {
        let _ = (inp, job, progress);
        g.never()
    }
}

/// The k rows of largest EMCM, exactly (ties to the lower row).
pub(crate) fn select(inp: &EmcmInputs, job: &Job, progress: &dyn Progress) -> Result<Selection> {
    check(inp, job)?;
    let n = inp.samples.rows();
    let g0 = inp.samples.first_row();
    let row_bytes = (inp.samples.data_bytes() + inp.emb.data_bytes()) / n.max(1);
    let (scored, top) = chunked::top_k(
        chunks(inp, job),
        job.k.min(n as usize),
        progress,
        |span, (s, top, _floor): chunked::Work<Scratch>| {
            score_chunk(inp, job, span, s, &mut |r, priority| {
                let index = g0 + r;
                if !job.exclusions.contains(index) {
                    top.offer(Ranked { priority, index });
                }
            })?;
            Ok((span.1 - span.0) * row_bytes)
        },
        |_| Ok(0),
        || first_error(inp, job),
    )?;
    let excluded = job.exclusions.within(g0, g0 + n).len() as u64;
    let _ = scored;
    Ok(Selection::from_topk(
        job.query,
        top,
        n,
        excluded,
        n - excluded,
    ))
}

/// The first failure in row order (a sequential pass, taken only when the
/// parallel one failed).
fn first_error(inp: &EmcmInputs, job: &Job) -> Error {
    let mut s = Scratch::default();
    for span in chunks(inp, job) {
        if let Err(e) = score_chunk(inp, job, span, &mut s, &mut |_, _| {}) {
            return e;
        }
    }
    Error::Cancelled
}

/// Every row's canonical score, in row order, chunk by chunk to `sink`.
pub(crate) fn score_each(
    inp: &EmcmInputs,
    job: &Job,
    progress: &dyn Progress,
    sink: &mut dyn FnMut(&[f64]) -> Result<()>,
) -> Result<()> {
    check(inp, job)?;
    let score = |span, s: &mut Scratch, out: &mut Vec<f64>| {
        score_chunk(inp, job, span, s, &mut |_, v| out.push(v))
    };
    chunked::in_order(&chunks(inp, job), progress, score, sink)
}
