//! The disagreement strategies' engine: a row's T samples are read
//! together (chunks of rows in parallel, each sample's rows from its own
//! place in the files), checked as probabilities, and scored canonically
//! ([`crate::score::disagree`]); the exact top k is merged across workers.
//! Memory is a chunk of rows per worker and k, whatever N and T are.
//!
//! Every score that is kept is the canonical f64 definition's, so the
//! selection is exact. BALD, kl-mean and kl-max need a logarithm per value;
//! a row first gets their logarithm-free upper bound
//! ([`crate::score::disagree::upper_bound`]), and only a row whose bound
//! reaches the k-th best so far (shared across workers) pays for the
//! logarithms. BALD and kl-mean over float32 or float16 probabilities
//! first take an f32 fast path with a proven bound, sixteen rows at a time
//! ([`crate::score::lanes`]), straight from the map of a T x N x C float32
//! file. On the GPU, BALD and kl-mean take the same rule with the kernel's
//! f32 BALD and its own proven interval ([`crate::backend::gpu`]'s samples
//! module); the other strategies run here only.

#[cfg(feature = "gpu")]
pub(crate) mod gpu;

use crate::backend::{Progress, chunked};
use crate::error::{BadSample, Error, Result};
use crate::job::Job;
use crate::pool::Samples;
use crate::pool::samples::ReadBufs;
use crate::query::InputForm;
use crate::query::{Disagreement, Query, Regression, RegressionInput};
use crate::score::Ranked;
use crate::score::disagree::{disagreement, mean_of, upper_bound};
use crate::score::fast::{bald_approx, sample_sums};
use crate::score::input::{canonical_probs, prob_ok, sum_ok};
use crate::score::lanes::{Kernel, LANES, bald_lanes};
use crate::score::regression::spread;
use crate::select::{Selection, SharedFloor, TopK};

/// Sample bytes per unit of parallel work, as the row-wise engine's: each
/// worker holds a chunk's worth of buffers.
const CHUNK_BYTES: u64 = 256 << 10;

/// The same for samples scored straight from memory, which need no
/// buffer: a chunk reads T places of a T x N x C file at once, and 4 MiB
/// a chunk (against 256 KiB) took BALD over 20 x 1M x 10 from 0.245 to
/// 0.21 s, each worker's T streams running longer between chunks.
const MAPPED_CHUNK_BYTES: u64 = 4 << 20;

/// How a row's samples are scored: a disagreement strategy over
/// probabilities, or a regression model's spread.
#[derive(Clone, Copy)]
enum Rule {
    Disagree(Disagreement),
    Spread,
}

impl Rule {
    /// The canonical score of one row's samples (`mean`: scratch).
    fn score(self, job: &Job, p: &[f64], classes: usize, mean: &mut Vec<f64>) -> f64 {
        match self {
            Rule::Disagree(d) => disagreement(d, job.log_base, p, classes, mean),
            Rule::Spread => spread(p, classes),
        }
    }

    /// A logarithm-free upper bound where the score needs logarithms.
    fn upper_bound(self, p: &[f64], classes: usize, mean: &mut Vec<f64>) -> Option<f64> {
        match self {
            Rule::Disagree(d) => {
                mean_of(p, classes, mean);
                upper_bound(d, p, mean)
            }
            Rule::Spread => None,
        }
    }
}

/// The job's strategy, checked against the samples.
fn check(samples: &Samples, job: &Job) -> Result<Rule> {
    job.input.check().map_err(Error::Config)?;
    match job.query {
        Query::Disagree(d) if samples.samples() < d.min_samples() => Err(Error::Config(format!(
            "{d} needs at least {} samples to measure disagreement, got T = {}",
            d.min_samples(),
            samples.samples()
        ))),
        Query::Disagree(d) => Ok(Rule::Disagree(d)),
        Query::Regress(Regression::Std) => check_spread(samples, job).map(|()| Rule::Spread),
        q => Err(Error::Config(format!("{q} does not read samples"))),
    }
}

/// Refuses a spread that is not one: T = 1 prediction, or samples that
/// are not a regression model's.
fn check_spread(samples: &Samples, job: &Job) -> Result<()> {
    let path = samples.path().display();
    match (job.input.regression(), samples.classes()) {
        (Some(RegressionInput::MeanStd), 2) if samples.samples() == 1 => Ok(()),
        (Some(RegressionInput::Samples), 1) if samples.samples() >= 2 => Ok(()),
        (Some(RegressionInput::Samples), 1) => Err(Error::Config(format!(
            "{path}: std needs T ≥ 2 predictions a row to measure their spread, got T = {}; give an ensemble's or MC-dropout passes' predictions (T x N), or (mean, std) rows with --input regression-mean-std",
            samples.samples()
        ))),
        (Some(RegressionInput::MeanStd), c) => Err(Error::Config(format!(
            "{path}: (mean, std) rows are N x 2, got {} sample(s) of {c} values",
            samples.samples()
        ))),
        _ => Err(Error::Config(format!(
            "{path}: std reads a regression model's predictions: give --input regression-samples (T x N predictions) or regression-mean-std (N x 2 rows of mean and std); input=\"regression-samples\" in Python"
        ))),
    }
}

/// Rows a chunk holds; `fast`: whether the chunks go through the f32 fast
/// path, which scores mapped samples with no buffer.
fn rows_per_chunk(samples: &Samples, job: &Job, fast: bool) -> u64 {
    if job.chunk_rows > 0 {
        return job.chunk_rows;
    }
    let row = (samples.samples() * samples.classes() * 4).max(1) as u64;
    let mapped = || samples.rows() > 0 && matches!(samples.mapped_planes((0, 1)), Ok(Some(_)));
    let bytes = if fast && mapped() {
        MAPPED_CHUNK_BYTES
    } else {
        CHUNK_BYTES
    };
    (bytes / row).clamp(16, 1 << 16)
}

/// A worker's buffers, and how many rows it scored in full.
#[derive(Default)]
struct Scratch {
    bufs: ReadBufs,
    stored: Vec<f64>,
    narrow: Vec<f32>,
    lanes: Vec<f32>,
    row: Vec<f32>,
    terms: Vec<f32>,
    mean32: Vec<f32>,
    sums: Vec<f64>,
    probs: Vec<f64>,
    mean: Vec<f64>,
    held: Held,
    scored: u64,
}

/// The fast path's candidates, held back and scored canonically in a
/// batch (when they fill a chunk's worth, and when the worker is done): a
/// row whose bound reaches the threshold is kept here (its samples, its
/// global row and its upper bound) rather than scored at once, and the
/// threshold also rises with the k-th best *lower* bound seen (`lows`,
/// and all workers' [`SharedLows`]). Scored at once, every row that enters the running top k
/// paid for a canonical score (22,653 of 1M rows for BALD at k = 1000,
/// which cost a third of the time); held back, most are ruled out by
/// lower bounds seen after them before any is scored.
#[derive(Default)]
struct Held {
    /// The k best lower bounds so far (as priorities; rows not excluded).
    lows: Option<TopK>,
    /// Each candidate's samples as stored, T·C values one after another.
    values: Vec<f32>,
    /// Each candidate's global row and upper bound.
    rows: Vec<(u64, f64)>,
    /// The lower bounds offered to `lows` since the last [`SharedLows::offer`].
    fresh: Vec<Ranked>,
}

/// The k best lower bounds all workers have seen. Each worker's own k-th
/// is a weak floor where the pool is split among many workers (each
/// holds the k-th best of its own rows, not of the pool); pooled, the k-th
/// is a proven lower bound on the pool's k-th canonical priority, as rows
/// are distinct across workers.
struct SharedLows(std::sync::Mutex<TopK>);

impl SharedLows {
    fn new(k: usize) -> Self {
        SharedLows(std::sync::Mutex::new(TopK::new(k)))
    }

    /// Offers a worker's new lower bounds (emptying `fresh`), once a
    /// chunk; returns the k-th best so far, or −∞.
    fn offer(&self, fresh: &mut Vec<Ranked>) -> f64 {
        // A worker that panicked while holding the lock left a heap of
        // valid bounds: use it.
        let mut lows = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for r in fresh.drain(..) {
            lows.offer(r);
        }
        held_floor(&lows)
    }
}

/// Whether a row whose priority is at most `hi` can still enter above
/// `thresh` (ties too: a tie can win on a lower row); the slack covers the
/// rounding of the bound's division by `ln b`.
fn may_reach(hi: f64, thresh: f64) -> bool {
    hi + 1e-9 * (1.0 + hi.abs()) >= thresh
}

/// Scores the held candidates canonically, best upper bound first, and
/// offers those that can still enter (`job`, `rule`, C).
fn score_held(
    (job, rule, c): (&Job, Rule, usize),
    (s, top, floor): (&mut Scratch, &mut TopK, &SharedFloor),
) {
    let held = &mut s.held;
    let lows = held.lows.as_ref().map_or(f64::NEG_INFINITY, held_floor);
    floor.raise_to(lows);
    let per_row = held.values.len() / held.rows.len().max(1);
    let mut order: Vec<usize> = (0..held.rows.len()).collect();
    order.sort_unstable_by(|&a, &b| held.rows[b].1.total_cmp(&held.rows[a].1));
    let mut thresh = floor.threshold(top).max(lows);
    for at in order {
        let (index, hi) = held.rows[at];
        if !may_reach(hi, thresh) {
            // Sorted: none after it can either.
            break;
        }
        s.probs.clear();
        let row = &held.values[at * per_row..(at + 1) * per_row];
        s.probs.extend(row.iter().map(|&x| x as f64));
        let priority = rule.score(job, &s.probs, c, &mut s.mean);
        s.scored += 1;
        top.offer(Ranked { priority, index });
        thresh = thresh.max(floor.threshold(top));
    }
    held.values.clear();
    held.rows.clear();
}

/// The k-th best lower bound of a full `lows`, or −∞: a proven lower
/// bound on the k-th canonical priority (k distinct rows reach it).
fn held_floor(lows: &TopK) -> f64 {
    lows.worst().map_or(f64::NEG_INFINITY, |w| w.priority)
}

/// Receives a row (its local index), its samples' canonical
/// probabilities, and scratch for their mean.
type EachRow<'a> = dyn FnMut(u64, &[f64], &mut Vec<f64>) + 'a;

/// The canonical probabilities of local rows `start..end`, checked, into
/// `probs`: each row's T samples of C, row after row. A bad value is
/// named by its file, its place there, the sample and the global row.
pub(crate) fn read_canonical(
    samples: &Samples,
    job: &Job,
    (start, end): (u64, u64),
    (bufs, stored): (&mut ReadBufs, &mut Vec<f64>),
    probs: &mut Vec<f64>,
) -> Result<()> {
    let c = samples.classes();
    samples.read(start, end, bufs, stored)?;
    probs.resize(stored.len(), 0.0);
    let per_row = (samples.samples() * c).max(1);
    for (i, (row, out)) in stored
        .chunks_exact(per_row)
        .zip(probs.chunks_exact_mut(per_row))
        .enumerate()
    {
        let r = start + i as u64;
        for (t, (stored, p)) in row.chunks_exact(c).zip(out.chunks_exact_mut(c)).enumerate() {
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
    }
    Ok(())
}

/// The canonical probabilities of local rows `start..end` (checked), each
/// row's T samples handed to `each(local row, probabilities)`.
fn each_row(
    samples: &Samples,
    job: &Job,
    span: (u64, u64),
    s: &mut Scratch,
    each: &mut EachRow,
) -> Result<()> {
    let per_row = (samples.samples() * samples.classes()).max(1);
    read_canonical(
        samples,
        job,
        span,
        (&mut s.bufs, &mut s.stored),
        &mut s.probs,
    )?;
    for (i, p) in s.probs.chunks_exact(per_row).enumerate() {
        each(span.0 + i as u64, p, &mut s.mean);
    }
    Ok(())
}

/// Whether BALD's f32 fast path applies: plain probabilities stored as
/// float32 or float16 (the stored values are then the canonical ones).
fn fast_path(samples: &Samples, job: &Job, rule: Rule) -> bool {
    let Rule::Disagree(d) = rule else {
        return false;
    };
    let plain = matches!(
        job.input,
        InputForm::Probs {
            renormalize: false,
            ..
        }
    );
    plain && !samples.has_f64() && matches!(d, Disagreement::Bald | Disagreement::KlMean)
}

/// [`select_chunk`] by the f32 fast path: a valid row gets BALD
/// approximated in f32 with a proven bound, and only a row whose bound
/// reaches the threshold is scored canonically. A row that fails the
/// checks goes to the canonical path, which names what is wrong. Inlined
/// into a copy compiled for each instruction set ([`select_chunk`]), so
/// the f32 loops run on this CPU's vector unit.
#[inline(always)]
fn select_chunk_fast(
    samples: &Samples,
    (job, rule, kernel, shared): (&Job, Rule, &Kernel, &SharedLows),
    (start, end): (u64, u64),
    (s, top, floor): (&mut Scratch, &mut TopK, &SharedFloor),
) -> Result<()> {
    let (t_all, c) = (samples.samples(), samples.classes());
    let InputForm::Probs { sum_tol, .. } = job.input else {
        unreachable!("the fast path takes plain probabilities")
    };
    let n = (end - start) as usize;
    // Straight from the map where the file allows, else read.
    let mapped = samples.mapped_planes((start, end))?;
    let planes = match mapped {
        Some(p) => p,
        None => {
            samples.read_planes((start, end), &mut s.bufs, &mut s.narrow)?;
            s.narrow.chunks_exact(n * c).collect()
        }
    };
    let per_row = t_all * c;
    s.terms.resize(per_row, 0.0);
    s.mean32.resize(c, 0.0);
    s.sums.resize(t_all, 0.0);
    let (g0, ln_b) = (samples.first_row(), job.log_base.ln());
    let lows = s.held.lows.get_or_insert_with(|| TopK::new(top.k()));
    let mut thresh = floor.threshold(top).max(held_floor(lows));
    let mut i = 0;
    while i < n {
        // A block of rows side by side, one per vector lane, while whole
        // blocks remain; then the rows one at a time.
        let lanes = if i + LANES <= n { LANES } else { 1 };
        let (valid, approx, bound) = if lanes == LANES {
            bald_lanes(&planes, (i, c), sum_tol, (kernel, &mut s.lanes))
        } else {
            gather_row(&planes, i, c, &mut s.row);
            let ok = s.row.iter().fold(true, |ok, &x| ok & prob_ok(x));
            sample_sums(&s.row, c, &mut s.sums);
            let ok = ok && s.sums.iter().all(|&x| sum_ok(x, sum_tol));
            let (a, b) = match ok {
                true => bald_approx(&s.row, c, &s.sums, &mut s.terms, &mut s.mean32),
                false => (0.0, 0.0),
            };
            ([ok; LANES], [a; LANES], [b; LANES])
        };
        for l in 0..lanes {
            let r = start + (i + l) as u64;
            if !valid[l] {
                // The canonical path names the bad value.
                score_held((job, rule, c), (s, top, floor));
                return select_chunk_exact(samples, job, rule, (r, end), (s, top, floor));
            }
            let index = g0 + r;
            let hi = (approx[l] + bound[l]) / ln_b;
            if job.exclusions.contains(index) || !may_reach(hi, thresh) {
                continue;
            }
            let lo = (approx[l] - bound[l]) / ln_b;
            let lo = lo - 1e-9 * (1.0 + lo.abs());
            let lows = s.held.lows.get_or_insert_with(|| TopK::new(top.k()));
            lows.offer(Ranked {
                priority: lo,
                index,
            });
            s.held.fresh.push(Ranked {
                priority: lo,
                index,
            });
            thresh = thresh.max(held_floor(lows));
            gather_row(&planes, i + l, c, &mut s.row);
            s.held.values.extend_from_slice(&s.row);
            s.held.rows.push((index, hi));
        }
        i += lanes;
    }
    floor.raise_to(shared.offer(&mut s.held.fresh));
    // Held back: at most a chunk's worth of values, so a worker's memory
    // stays a chunk's and k's.
    if s.held.values.len() >= n * per_row {
        score_held((job, rule, c), (s, top, floor));
    }
    Ok(())
}

/// Row `i`'s T samples, sample after sample, from its rows' planes (one
/// a sample, `c` values a row), into `row`.
#[inline(always)]
fn gather_row(planes: &[&[f32]], i: usize, c: usize, row: &mut Vec<f32>) {
    row.clear();
    for p in planes {
        row.extend_from_slice(&p[i * c..(i + 1) * c]);
    }
}

/// Offers the rows of a chunk that can reach the top k.
fn select_chunk(
    samples: &Samples,
    job: &Job,
    (rule, lows): (Rule, &SharedLows),
    span: (u64, u64),
    work: (&mut Scratch, &mut TopK, &SharedFloor),
) -> Result<()> {
    if !fast_path(samples, job, rule) {
        return select_chunk_exact(samples, job, rule, span, work);
    }
    // One copy of the fast path per instruction set, picked at run time
    // (the f32 logarithms are most of its work).
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
        fn avx512(s: &Samples, j: Ctx, span: (u64, u64), w: Work) -> Result<()> {
            let k = Kernel::avx512(s.classes());
            select_chunk_fast(s, (j.0, j.1, &k, j.2), span, w)
        }
        #[target_feature(enable = "avx2,fma")]
        fn avx2(s: &Samples, j: Ctx, span: (u64, u64), w: Work) -> Result<()> {
            select_chunk_fast(s, (j.0, j.1, &Kernel::Portable, j.2), span, w)
        }
        use crate::backend::cpu::Isa;
        let ctx = (job, rule, lows);
        match Isa::detect() {
            // SAFETY: the CPU has the features the copy is compiled for.
            Isa::Avx512 => return unsafe { avx512(samples, ctx, span, work) },
            // SAFETY: as above.
            Isa::Avx2 => return unsafe { avx2(samples, ctx, span, work) },
            Isa::Scalar => {}
        }
    }
    select_chunk_fast(samples, (job, rule, &Kernel::Portable, lows), span, work)
}

/// A worker's state in a selection: its buffers, its top k, the floor.
type Work<'w> = chunked::Work<'w, Scratch>;

/// What a chunk of the fast path is selected by: the job, the rule and the
/// lower bounds all workers share.
type Ctx<'a> = (&'a Job, Rule, &'a SharedLows);

/// [`select_chunk`] on the canonical probabilities: a row whose
/// logarithm-free upper bound stays below the threshold (the worker's
/// k-th best, or the floor all workers share) is not scored.
fn select_chunk_exact(
    samples: &Samples,
    job: &Job,
    rule: Rule,
    span: (u64, u64),
    (s, top, floor): (&mut Scratch, &mut TopK, &SharedFloor),
) -> Result<()> {
    let g0 = samples.first_row();
    let ln_b = job.log_base.ln();
    let c = samples.classes();
    let mut thresh = floor.threshold(top);
    let mut scored = 0;
    let r = each_row(samples, job, span, s, &mut |r, p, mean| {
        let index = g0 + r;
        if job.exclusions.contains(index) {
            return;
        }
        if let Some(ub) = rule.upper_bound(p, c, mean) {
            // Far above the f64 rounding of the score and of the bound.
            let ub = ub / ln_b + 1e-9 * (1.0 + (ub / ln_b).abs());
            if ub < thresh {
                return;
            }
        }
        let priority = rule.score(job, p, c, mean);
        scored += 1;
        top.offer(Ranked { priority, index });
        thresh = floor.threshold(top);
    });
    s.scored += scored;
    r
}

/// The canonical scores of local rows `start..end`, in row order, to
/// `each(local row, score)`.
fn score_chunk(
    samples: &Samples,
    job: &Job,
    rule: Rule,
    span: (u64, u64),
    s: &mut Scratch,
    each: &mut dyn FnMut(u64, f64),
) -> Result<()> {
    let c = samples.classes();
    each_row(samples, job, span, s, &mut |r, p, mean| {
        each(r, rule.score(job, p, c, mean));
    })
}

/// The chunks: (local start, local end).
fn chunks(samples: &Samples, job: &Job, fast: bool) -> Vec<(u64, u64)> {
    let step = rows_per_chunk(samples, job, fast);
    (0..samples.rows().div_ceil(step))
        .map(|i| (i * step, ((i + 1) * step).min(samples.rows())))
        .collect()
}

/// The k rows of most disagreement, exactly (ties to the lower row).
pub(crate) fn select(samples: &Samples, job: &Job, progress: &dyn Progress) -> Result<Selection> {
    let rule = check(samples, job)?;
    let k = job.k.min(samples.rows() as usize);
    let g0 = samples.first_row();
    let row_bytes = samples.data_bytes() / samples.rows().max(1);
    let lows = SharedLows::new(k);
    let (scored, top) = chunked::top_k(
        chunks(samples, job, fast_path(samples, job, rule)),
        k,
        progress,
        |span, work| {
            select_chunk(samples, job, (rule, &lows), span, work)?;
            Ok((span.1 - span.0) * row_bytes)
        },
        |(s, top, floor)| {
            floor.raise_to(lows.offer(&mut s.held.fresh));
            score_held((job, rule, samples.classes()), (s, top, floor));
            Ok(s.scored)
        },
        || first_error(samples, job, rule),
    )?;
    let excluded = job.exclusions.within(g0, g0 + samples.rows()).len() as u64;
    // `refined`: the rows whose bound could not rule them out, which paid
    // for the canonical score (-v reports them).
    Ok(Selection::from_topk(
        job.query,
        top,
        samples.rows(),
        excluded,
        scored,
    ))
}

/// A disagreement strategy or the spread on the GPU ([`gpu`]): the same
/// picks as [`select`].
pub(crate) fn select_on_gpu(
    g: &crate::backend::gpu::Gpu,
    samples: &Samples,
    job: &Job,
    progress: &dyn Progress,
) -> Result<(Selection, crate::backend::Phases)> {
    #[cfg(feature = "gpu")]
    return gpu::select(g, samples, job, progress);
    #[cfg(not(feature = "gpu"))]
    {
        let _ = (samples, job, progress);
        g.never()
    }
}

/// The first failure in row order (a second, sequential pass, taken only
/// when the parallel one failed somewhere).
fn first_error(samples: &Samples, job: &Job, rule: Rule) -> Error {
    let mut s = Scratch::default();
    for span in chunks(samples, job, false) {
        if let Err(e) = score_chunk(samples, job, rule, span, &mut s, &mut |_, _| {}) {
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
    let rule = check(samples, job)?;
    let score = |span, s: &mut Scratch, out: &mut Vec<f64>| {
        score_chunk(samples, job, rule, span, s, &mut |_, v| out.push(v))
    };
    chunked::in_order(&chunks(samples, job, false), progress, score, sink)
}
