//! Cold start and representativeness: strategies over embeddings alone,
//! which can choose the first batch before any label or model exists.
//!
//! - [`ColdStart::Typiclust`] ([`typiclust`]): the most typical row of
//!   each of the largest clusters holding no labeled row;
//! - [`ColdStart::Probcover`] ([`probcover`]): greedy maximum coverage of
//!   δ-balls;
//! - [`ColdStart::Maxherding`] ([`maxherding`]): greedy maximum of the
//!   coverage under a Gaussian kernel, ProbCover's objective made smooth;
//! - [`ColdStart::Kmeans`]: the unlabeled row nearest each k-means centre;
//! - [`ColdStart::Density`] ([`density`]): the mean cosine similarity to
//!   the pool, alone or weighting a row-wise strategy (`density_beta`).
//!
//! Labeled rows (the job's exclusions) count as covered: their clusters
//! come last, their balls are covered from the start. On the GPU, density's
//! similarities and the distances of Lloyd's assignments (`gpu.rs`) run
//! there; the rest runs on the CPU. Each follows the crate's exactness
//! rule: a float32 fast path with a proven bound, and a canonical f64
//! re-check wherever the bound cannot decide, so the picks are the same on
//! every thread count, chunk size and device.

pub mod density;
#[cfg(feature = "gpu")]
mod gpu;
pub mod kmeans;
pub mod maxherding;
pub mod probcover;
pub mod typiclust;

use crate::backend::{Backend, Phases, Progress};
use crate::error::{Error, Result};
use crate::job::Job;
use crate::pool::Pool;
use crate::query::{ColdStart, Query};
use crate::select::Selection;
use kmeans::Reader;

/// What a strategy picked: (row, score) in pick order, the rows re-checked
/// in f64, and a note on what it built.
pub(crate) struct Picked {
    pub picks: Vec<(u64, f64)>,
    pub refined: u64,
    pub note: String,
}

/// The k rows `job`'s representative strategy picks from embeddings `emb`,
/// in pick (or rank) order, on `backend`, with the GPU's phases when it
/// ran there. On the GPU, density's similarities run there, and so do
/// the float32 distances of Lloyd's assignments (TypiClust, k-means,
/// ProbCover's δ by purity) and of ProbCover's δ-ball graph.
pub(crate) fn select_on(
    backend: Backend,
    emb: &Pool,
    job: &Job,
    progress: &dyn Progress,
) -> Result<(Selection, Option<Phases>)> {
    match backend {
        #[cfg(feature = "gpu")]
        Backend::Gpu(gpu) if job.query == Query::Cold(ColdStart::Density) => {
            job.check_picks((emb.rows(), "the embeddings'", emb.path()), "density")?;
            let rd = Reader::new(emb, job, progress);
            let (sel, phases) = density::densest_on_gpu(gpu, &rd, job)?;
            Ok((sel, Some(phases)))
        }
        #[cfg(feature = "gpu")]
        Backend::Gpu(gpu) => {
            let Query::Cold(strategy) = job.query else {
                return Ok((select(emb, job, progress)?, None));
            };
            job.check_picks((emb.rows(), "the embeddings'", emb.path()), strategy.name())?;
            let t0 = std::time::Instant::now();
            let resident = gpu::Resident::new(gpu, emb, job.chunk_rows)?;
            let upload = t0.elapsed();
            let mut rd = Reader::new(emb, job, progress);
            rd.elsewhere = Some(&resident);
            let mut sel = select_from(&rd, job)?;
            sel.phases.insert(0, ("upload", upload));
            let refined = sel.refined;
            Ok((sel, Some(resident.phases(refined))))
        }
        _ => Ok((select(emb, job, progress)?, None)),
    }
}

/// [`select_on`] on the CPU.
pub(crate) fn select(emb: &Pool, job: &Job, progress: &dyn Progress) -> Result<Selection> {
    select_from(&Reader::new(emb, job, progress), job)
}

/// [`select`] through `rd`, whose distances may run elsewhere.
fn select_from(rd: &Reader, job: &Job) -> Result<Selection> {
    let Query::Cold(strategy) = job.query else {
        return Err(Error::Config(format!(
            "{} is not a representative strategy",
            job.query
        )));
    };
    let emb = rd.emb;
    job.check_picks((emb.rows(), "the embeddings'", emb.path()), strategy.name())?;
    let iterations = match job.iterations {
        0 => kmeans::DEFAULT_ITERATIONS,
        i => i,
    };
    let t0 = std::time::Instant::now();
    let Picked {
        picks,
        refined,
        note,
    } = match strategy {
        ColdStart::Typiclust => typiclust::pick(rd, job, typiclust::Member::Typical, iterations)?,
        ColdStart::Kmeans => {
            typiclust::pick(rd, job, typiclust::Member::NearestCentre, iterations)?
        }
        ColdStart::Probcover => probcover::pick(rd, job, iterations)?,
        ColdStart::Maxherding => maxherding::pick(rd, job, iterations)?,
        ColdStart::Density => {
            let sim = density::similarities(rd)?;
            let top = density::densest(&sim, job);
            let mut sel = Selection::from_topk(job.query, top, emb.rows(), excluded(job), 0);
            sel.phases.push(("density", t0.elapsed()));
            return Ok(sel);
        }
    };
    let mut sel = Selection::of_picks(job.query, picks, emb.rows(), excluded(job), refined);
    sel.phases.push((strategy.name(), t0.elapsed()));
    sel.notes.push(note);
    Ok(sel)
}

/// A row-wise `job` over `probs`, weighted by the density of `emb`'s rows
/// (`job.density_beta`), on `backend`, with the GPU's phases when it ran
/// there. The densities are the host's on either device (the canonical
/// f64 pass over the embeddings); on the GPU the kernel scores the
/// probabilities and bounds each weighted priority, and the host re-scores
/// every candidate, so both devices pick the same rows.
pub(crate) fn select_weighted(
    backend: Backend,
    probs: &Pool,
    emb: &Pool,
    job: &Job,
    beta: f64,
    progress: &dyn Progress,
) -> Result<(Selection, Option<Phases>)> {
    if emb.rows() != probs.rows() {
        return Err(Error::EmbeddingRows {
            path: emb.shards()[0].path().to_path_buf(),
            pool: probs.shards()[0].path().to_path_buf(),
            expected: probs.rows(),
            found: emb.rows(),
        });
    }
    density::check_beta(beta)?;
    let rd = Reader::new(emb, job, progress);
    let sim = density::similarities(&rd)?;
    let note = format!("{} weighted by density^{beta}", job.query);
    #[cfg(feature = "gpu")]
    if let Backend::Gpu(gpu) = backend {
        // In place: at a million rows a second vector is 8 MB more.
        let mut weights = sim;
        for w in &mut weights {
            *w = density::weight(*w, beta);
        }
        let rows = crate::backend::RowJob::of(job)?;
        let lower = job.query.lower_is_better();
        let g0 = probs.first_row();
        let score = |row: &[f32], index: u64, p: &mut [f64]| {
            crate::score::input::canonical_probs(&rows.input, row, p)?;
            let s = crate::score::canonical_score(&rows.spec, p, index);
            let w = weights[(index - g0) as usize];
            Ok(crate::score::Ranked {
                priority: density::weighted_priority(lower, s, w),
                index,
            })
        };
        let (mut sel, phases) =
            crate::backend::gpu::select_weighted(gpu, probs, &rows, &weights, &score, progress)?;
        sel.notes.push(note);
        return Ok((sel, Some(phases)));
    }
    #[cfg(not(feature = "gpu"))]
    let _ = backend;
    let top = density::weighted(probs, &sim, job, beta, progress)?;
    // Scores are the weighted priorities, higher first, whatever the
    // strategy's own direction: the selection says so by its name.
    let mut sel = Selection::from_topk(
        Query::Cold(ColdStart::Density),
        top,
        probs.rows(),
        excluded(job),
        0,
    );
    sel.notes.push(note);
    Ok((sel, None))
}

fn excluded(job: &Job) -> u64 {
    job.exclusions.len() as u64
}
