//! The multi-label strategies' engine: a pool of N x L sigmoid outputs,
//! read chunk by chunk (chunks in parallel, each worker's own buffers),
//! each row checked and scored canonically ([`crate::score::multilabel`]);
//! the exact top k is merged across workers. Memory is a chunk of rows per
//! worker and k, whatever N is.
//!
//! Every score kept is the canonical f64 definition's, so the selection is
//! exact. Probabilities stored as float32 or float16 take a fast path: the
//! chunk is checked in one vectorized pass, each row gets an f32 upper
//! bound on its priority (`score::multilabel::FastBound`, from a per-row
//! reduction compiled for this CPU's vector unit; on AVX-512, sixteen rows
//! reduced at once by `score::multilabel_lanes`, on AVX2 eight for some
//! strategies), and only a row whose
//! bound reaches the k-th best so far (shared across workers) is scored
//! canonically. Other pools
//! (float64, logits, or a chunk holding a bad value, which the canonical
//! path then names) are scored canonically, the entropies behind their
//! logarithm-free bound. On the GPU, the row-wise engine's chunked select
//! runs with the score kernel's multi-label branch (probabilities or
//! logits), and the host re-scores its candidates canonically: both
//! devices return the same rows.

use crate::backend::cpu::Isa;
use crate::backend::{Backend, Phases, Progress, chunked, gpu};
use crate::error::{Error, Result};
use crate::job::Job;
use crate::pool::npy::DType;
use crate::pool::{Pool, Shard};
use crate::query::{MultiLabel, Query};
use crate::score::Ranked;
use crate::score::input::{Stored, canonical_probs};
use crate::score::multilabel::{
    AdaptiveCuts, FastBound, MultiSpec, adaptive_from, adaptive_parts, binary_plogp_sum,
    entropy_terms, entropy_upper_bound, mean_entropy_upper, multilabel_score, reduce_f32,
};
#[cfg(target_arch = "x86_64")]
use crate::score::multilabel_lanes::{self, LANES};
use crate::select::{Selection, SharedFloor, TopK};

/// Pool bytes per unit of parallel work, as the row-wise engine's.
const CHUNK_BYTES: u64 = 256 << 10;

/// The job's strategy and options, checked against the pool.
pub(crate) fn check(pool: &Pool, job: &Job) -> Result<MultiSpec> {
    let Query::Multi(strategy) = job.query else {
        return Err(Error::Config(format!(
            "{} does not score a multi-label pool",
            job.query
        )));
    };
    if !job.input.is_multilabel() {
        return Err(Error::Config(format!(
            "{strategy} scores a multi-label pool: give --input multilabel or multilabel-logits (input=\"multilabel\" in Python)"
        )));
    }
    let labels = pool.classes() as f64;
    let cardinality = match (strategy.needs_cardinality(), job.label_cardinality) {
        (false, _) => 0.0,
        (true, None) => {
            return Err(Error::Config(format!(
                "{strategy} compares each row's predicted label count with the labeled set's mean: give --label-cardinality C (label_cardinality= in Python), the mean number of labels a labeled item carries"
            )));
        }
        (true, Some(c)) if !(c.is_finite() && (0.0..=labels).contains(&c)) => {
            return Err(Error::Config(format!(
                "the label cardinality must be a number from 0 to the pool's {labels} labels, got {c}"
            )));
        }
        (true, Some(c)) => c,
    };
    let beta = job.uncertainty_weight;
    if !(0.0..=1.0).contains(&beta) {
        return Err(Error::Config(format!(
            "the uncertainty weight β must lie in [0, 1], got {beta}"
        )));
    }
    Ok(MultiSpec {
        strategy,
        log_base: job.log_base,
        cardinality,
        beta,
    })
}

/// A worker's buffers, and how many rows it scored in full.
#[derive(Default)]
struct Scratch {
    narrow: Vec<f32>,
    wide: Vec<f64>,
    raw: Vec<u8>,
    probs: Vec<f64>,
    terms: Vec<f32>,
    scored: u64,
}

/// Hands each row of a chunk, as canonical probabilities, to
/// `each(global row, probabilities)`; a bad value is named by the file,
/// the row and the column.
fn each_row(
    (shard, start, end): (&Shard, u64, u64),
    job: &Job,
    labels: usize,
    s: &mut Scratch,
    each: &mut dyn FnMut(u64, &[f64]),
) -> Result<()> {
    let at = (shard, start);
    s.probs.resize(labels, 0.0);
    // Rows as stored: the canonical probabilities widen them exactly.
    if shard.dtype() == DType::F64 {
        let rows = shard.rows_f64(start, end, labels, &mut s.wide)?;
        canonical_rows(at, job, &rows, labels, &mut s.probs, each)
    } else {
        let rows = shard.rows_f32(start, end, labels, &mut s.narrow, &mut s.raw)?;
        canonical_rows(at, job, &rows, labels, &mut s.probs, each)
    }
}

/// [`each_row`] over the stored values of local rows from `start`.
fn canonical_rows<T: Stored>(
    (shard, start): (&Shard, u64),
    job: &Job,
    rows: &[T],
    labels: usize,
    probs: &mut [f64],
    each: &mut dyn FnMut(u64, &[f64]),
) -> Result<()> {
    let g0 = shard.first_row() + start;
    for (i, row) in rows.chunks_exact(labels.max(1)).enumerate() {
        canonical_probs(&job.input, row, probs).map_err(|problem| Error::BadRow {
            path: shard.path().into(),
            row: start + i as u64,
            global: g0 + i as u64,
            problem,
        })?;
        each(g0 + i as u64, probs);
    }
    Ok(())
}

/// A worker's state in a selection: its buffers, its top k, the floor.
type Work<'w> = chunked::Work<'w, Scratch>;

/// Offers the rows of a chunk that can reach the top k, by the fast path
/// where it applies.
fn select_chunk(
    chunk: (&Shard, u64, u64),
    (job, spec, isa): (&Job, &MultiSpec, Isa),
    labels: usize,
    work: Work,
) -> Result<()> {
    let plain = job.input == (crate::query::InputForm::MultiLabel { logits: false });
    if !plain || chunk.0.dtype() == DType::F64 {
        return select_chunk_exact(chunk, job, spec, labels, work);
    }
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512dq,avx2,fma,popcnt")]
        fn avx512(c: (&Shard, u64, u64), j: &Job, s: &MultiSpec, l: usize, w: Work) -> Result<()> {
            select_chunk_fast::<16>(c, j, s, l, w)
        }
        #[target_feature(enable = "avx2,fma,popcnt")]
        fn avx2(c: (&Shard, u64, u64), j: &Job, s: &MultiSpec, l: usize, w: Work) -> Result<()> {
            select_chunk_fast::<8>(c, j, s, l, w)
        }
        match isa {
            // SAFETY: the CPU has the features the copy is compiled for
            // (`Isa::detect`, or a caller's narrower choice).
            Isa::Avx512 => return unsafe { avx512(chunk, job, spec, labels, work) },
            // (Eight rows at a time for the strategies where that pays off
            // on AVX2, `multilabel_lanes::EIGHT`; row by row for the rest.)
            // SAFETY: as above.
            Isa::Avx2 => return unsafe { avx2(chunk, job, spec, labels, work) },
            Isa::Scalar => {}
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = isa;
    select_chunk_fast::<0>(chunk, job, spec, labels, work)
}

/// [`select_chunk`] on stored f32 values: one vectorized check of the
/// chunk (a bad value sends it to the canonical path, which names it),
/// then each row's f32 bound against the threshold. `WIDTH` 16: this copy
/// runs on an AVX-512 CPU and reduces sixteen rows at a time
/// ([`multilabel_lanes::reduce`]); 8: on AVX2 (with POPCNT), eight, for
/// the strategies [`multilabel_lanes::reduce8`] serves; then the rest row
/// by row (all of it for 0).
#[inline(always)]
fn select_chunk_fast<const WIDTH: usize>(
    (shard, start, end): (&Shard, u64, u64),
    job: &Job,
    spec: &MultiSpec,
    labels: usize,
    (s, top, floor): Work,
) -> Result<()> {
    let g0 = shard.first_row() + start;
    let rows = shard.rows_f32(start, end, labels, &mut s.narrow, &mut s.raw)?;
    #[allow(clippy::manual_range_contains)]
    let valid = rows
        .iter()
        .fold(true, |ok, &x| ok & (x >= 0.0) & (x <= 1.0));
    if !valid {
        drop(rows);
        return select_chunk_exact((shard, start, end), job, spec, labels, (s, top, floor));
    }
    let l = labels.max(1);
    let n = rows.len() / l;
    let bound = FastBound::new(spec, labels);
    let mut thresh = floor.threshold(top);
    let mut cuts = AdaptiveCuts::new();
    let (probs, scored) = (&mut s.probs, &mut s.scored);
    // Not a closure: it would be compiled once, without this copy's
    // instruction set.
    macro_rules! offer {
        ($i:expr) => {{
            let i = $i;
            let row = (&rows[i * l..(i + 1) * l], g0 + i as u64);
            offer_row::<WIDTH>(spec, job, row, (probs, scored), (top, floor), &mut thresh);
        }};
    }
    let mut i = 0;
    #[cfg(target_arch = "x86_64")]
    if WIDTH > 0
        && labels > 0
        && (WIDTH == LANES || multilabel_lanes::EIGHT.contains(&spec.strategy))
    {
        while i + WIDTH <= n {
            let block = &rows[i * l..(i + WIDTH) * l];
            // SAFETY: `WIDTH` 16 copies run only on `Isa::Avx512` CPUs
            // (AVX-512F, DQ, POPCNT), `WIDTH` 8 ones on `Isa::Avx2` ones
            // (AVX2, FMA, POPCNT): `select_chunk`'s dispatch.
            let r = unsafe {
                if WIDTH == LANES {
                    multilabel_lanes::reduce(spec.strategy, block, labels)
                } else {
                    multilabel_lanes::reduce8(spec.strategy, block, labels)
                }
            };
            for lane in 0..WIDTH {
                let may = match spec.strategy {
                    MultiLabel::Adaptive => {
                        let parts = adaptive_from(r.value[lane] as usize, r.lo[lane], r.hi[lane]);
                        cuts.may_reach(spec, labels, thresh, parts)
                    }
                    _ => bound.upper(r.value[lane]) >= thresh,
                };
                if may {
                    offer!(i + lane);
                }
            }
            i += WIDTH;
        }
    }
    // Row by row: mean-entropy's terms for the whole remainder at once.
    let terms = if spec.strategy == MultiLabel::MeanEntropy {
        entropy_terms(&rows[i * l..], &mut s.terms);
        &s.terms[..]
    } else {
        &rows[i * l..]
    };
    for (j, of) in terms.chunks_exact(l).enumerate() {
        let row = &rows[(i + j) * l..(i + j + 1) * l];
        let may = match spec.strategy {
            MultiLabel::Adaptive => cuts.may_reach(spec, labels, thresh, adaptive_parts(row)),
            _ => bound.upper(reduce_f32(spec.strategy, of)) >= thresh,
        };
        if may {
            offer!(i + j);
        }
    }
    Ok(())
}

/// Offers a row that may reach the threshold: mean-entropy's second
/// bound (on 16 lanes in the AVX-512 copy, `WIDTH` 16, on 8 in the AVX2
/// one, `WIDTH` 8), then the canonical score.
#[inline(always)]
fn offer_row<const WIDTH: usize>(
    spec: &MultiSpec,
    job: &Job,
    (row, index): (&[f32], u64),
    (probs, scored): (&mut Vec<f64>, &mut u64),
    (top, floor): (&mut TopK, &SharedFloor),
    thresh: &mut f64,
) {
    if spec.strategy == MultiLabel::MeanEntropy {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as `select_chunk_fast`'s.
        let sum = unsafe {
            match WIDTH {
                LANES => multilabel_lanes::binary_plogp_sum(row),
                8 => multilabel_lanes::binary_plogp_sum8(row),
                _ => binary_plogp_sum(row),
            }
        };
        #[cfg(not(target_arch = "x86_64"))]
        let sum = binary_plogp_sum(row);
        if mean_entropy_upper(spec.log_base, row.len(), sum) < *thresh {
            return;
        }
    }
    if job.exclusions.contains(index) {
        return;
    }
    probs.clear();
    probs.extend(row.iter().map(|&x| x as f64));
    let priority = job.query.priority(multilabel_score(spec, probs));
    *scored += 1;
    top.offer(Ranked { priority, index });
    *thresh = floor.threshold(top);
}

/// Offers the rows of a chunk that can reach the top k from their
/// canonical probabilities: a row whose entropy bound stays below the
/// threshold (the worker's k-th best, or the floor all workers share) is
/// not scored.
fn select_chunk_exact(
    chunk: (&Shard, u64, u64),
    job: &Job,
    spec: &MultiSpec,
    labels: usize,
    (s, top, floor): Work,
) -> Result<()> {
    let mut thresh = floor.threshold(top);
    let mut scored = 0;
    let query = job.query;
    let r = each_row(chunk, job, labels, s, &mut |index, p| {
        if job.exclusions.contains(index) {
            return;
        }
        if let Some(ub) = entropy_upper_bound(spec, p) {
            // Far above the f64 rounding of the score and of the bound.
            if ub + 1e-9 * (1.0 + ub.abs()) < thresh {
                return;
            }
        }
        let priority = query.priority(multilabel_score(spec, p));
        scored += 1;
        top.offer(Ranked { priority, index });
        thresh = floor.threshold(top);
    });
    s.scored += scored;
    r
}

/// The chunks: (shard, local start, local end).
fn chunks<'p>(pool: &'p Pool, job: &Job) -> Vec<(&'p Shard<'p>, u64, u64)> {
    let step = match job.chunk_rows {
        0 => {
            let row = (pool.classes() * 4).max(1) as u64;
            (CHUNK_BYTES / row).clamp(16, 1 << 16)
        }
        n => n,
    };
    pool.chunks(step).collect()
}

/// The k most informative rows of a multi-label pool, exactly (ties to
/// the lower row), on `backend`; the GPU's phases when it ran there.
pub(crate) fn select_on(
    backend: Backend,
    pool: &Pool,
    job: &Job,
    progress: &dyn Progress,
) -> Result<(Selection, Option<Phases>)> {
    let spec = check(pool, job)?;
    match backend {
        Backend::Cpu => Ok((select(pool, job, &spec, progress)?, None)),
        Backend::Gpu(gpu) => {
            let (sel, phases) = gpu::select_multilabel(gpu, pool, job, &spec, progress)?;
            Ok((sel, Some(phases)))
        }
    }
}

/// [`select_on`] on the CPU.
fn select(pool: &Pool, job: &Job, spec: &MultiSpec, progress: &dyn Progress) -> Result<Selection> {
    select_isa(pool, job, spec, Isa::detect(), progress)
}

/// [`select`] with the fast path compiled for `isa`, which this CPU must
/// run (`Isa::detect()`'s or a narrower one: the tests and the `exact`
/// fuzz target run every path).
pub(crate) fn select_isa(
    pool: &Pool,
    job: &Job,
    spec: &MultiSpec,
    isa: Isa,
    progress: &dyn Progress,
) -> Result<Selection> {
    let labels = pool.classes();
    let k = job.k.min(pool.rows() as usize);
    let row_bytes = pool.data_bytes() / pool.rows().max(1);
    let (scored, top) = chunked::top_k(
        chunks(pool, job),
        k,
        progress,
        |chunk, work| {
            select_chunk(chunk, (job, spec, isa), labels, work)?;
            Ok((chunk.2 - chunk.1) * row_bytes)
        },
        |(s, _, _): chunked::Work<Scratch>| Ok(s.scored),
        || first_error(pool, job, labels),
    )?;
    let g0 = pool.first_row();
    let excluded = job.exclusions.within(g0, g0 + pool.rows()).len() as u64;
    Ok(Selection::from_topk(
        job.query,
        top,
        pool.rows(),
        excluded,
        scored,
    ))
}

/// The first failure in row order (a second, sequential pass, taken only
/// when the parallel one failed somewhere).
fn first_error(pool: &Pool, job: &Job, labels: usize) -> Error {
    let mut s = Scratch::default();
    for chunk in chunks(pool, job) {
        if let Err(e) = each_row(chunk, job, labels, &mut s, &mut |_, _| {}) {
            return e;
        }
    }
    Error::Cancelled
}

/// Every row's canonical score, in row order, chunk by chunk to `sink`.
pub(crate) fn score_each(
    pool: &Pool,
    job: &Job,
    progress: &dyn Progress,
    sink: &mut dyn FnMut(&[f64]) -> Result<()>,
) -> Result<()> {
    let spec = check(pool, job)?;
    let labels = pool.classes();
    let score_chunk = |chunk, s: &mut Scratch, out: &mut Vec<f64>| {
        each_row(chunk, job, labels, s, &mut |_, p| {
            out.push(multilabel_score(&spec, p));
        })
    };
    chunked::in_order(&chunks(pool, job), progress, score_chunk, sink)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Silent;
    use crate::query::InputForm;

    /// Rows of a coarse grid (0, ½, 1 and ties) mixed with f32 values a
    /// rounding from ½, so that the fast paths' bounds meet the threshold.
    fn values(n: usize, l: usize) -> Vec<f32> {
        const GRID: [f32; 7] = [0.0, 0.25, 0.49999997, 0.5, 0.50000006, 0.75, 1.0];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        (0..n * l)
            .map(|_| {
                state = crate::rng::splitmix64(state);
                if state.is_multiple_of(2) {
                    GRID[(state >> 8) as usize % GRID.len()]
                } else {
                    (state >> 40) as f32 / (1u64 << 24) as f32
                }
            })
            .collect()
    }

    #[test]
    fn every_instruction_set_selects_the_same_rows() {
        let mut isas = vec![Isa::Scalar];
        // `Isa::Avx512` CPUs run the AVX2 copies too.
        match Isa::detect() {
            Isa::Avx512 => isas.extend([Isa::Avx2, Isa::Avx512]),
            Isa::Avx2 => isas.push(Isa::Avx2),
            Isa::Scalar => {}
        }
        for (n, l) in [(1000, 20), (531, 37), (600, 5), (203, 8)] {
            let values = values(n, l);
            let pool = Pool::from_f32(&values, l).unwrap();
            for strategy in MultiLabel::ALL {
                for (k, chunk) in [(1, 0), (50, 0), (50, 100), (n - 1, 29)] {
                    let mut job = Job::new(strategy, InputForm::MultiLabel { logits: false }, k);
                    job.label_cardinality = Some(0.3 * l as f64);
                    job.chunk_rows = chunk;
                    let spec = check(&pool, &job).unwrap();
                    let picks = |isa| {
                        let sel = select_isa(&pool, &job, &spec, isa, &Silent).unwrap();
                        let e = sel.entries.iter();
                        e.map(|e| (e.index, e.score.to_bits())).collect::<Vec<_>>()
                    };
                    let want = picks(Isa::Scalar);
                    assert_eq!(want.len(), k);
                    for &isa in &isas[1..] {
                        assert_eq!(picks(isa), want, "{strategy}, {isa:?}, L = {l}, k = {k}");
                    }
                }
            }
        }
        eprintln!("compared {isas:?}");
    }
}
