//! Selections that rank every row's canonical score: a stochastic batch
//! (each row's key made from its score and a seeded Gumbel draw, see
//! [`crate::score::stochastic`]), and rows given by their global indices
//! (a Ray batch, the tasks Label Studio asks about). Every row is scored
//! canonically on the CPU by [`score_each`], so the picks never depend on
//! the device, the threads or the chunking.
//!
//! Softrank needs each row's rank in the whole pool: it holds every
//! selectable row's (priority, global row), 16 bytes a row, and sorts
//! them. The other keys need only the k best so far.

use rayon::prelude::*;

use super::{Inputs, score_each};
use crate::backend::{Progress, RowJob};
use crate::error::{Error, Result};
use crate::job::Job;
use crate::query::Query;
use crate::score::Ranked;
use crate::score::stochastic::{RowKeys, rank_key};
use crate::select::{Keyed, Selection, SharedFloor, TopK};

/// Rows keyed per parallel task: large enough to amortize a task, small
/// enough that a block of scores splits over every thread.
const TASK_ROWS: usize = 1 << 14;

/// The k rows of largest key under `job` (its stochastic batch, or the
/// plain ranking), from every row's canonical score.
pub(super) fn select(inputs: &Inputs, job: &Job, progress: &dyn Progress) -> Result<Selection> {
    let query = job.query;
    if query.picks_batch() {
        return Err(Error::Config(format!(
            "{query} picks a batch of a whole pool; it cannot rank listed rows or draw a stochastic batch"
        )));
    }
    let keys = RowKeys::new(query, job.stochastic, job.seed);
    // A pool of softmax rows takes the CPU kernels' fast path with the
    // keys' own bounds; every other input scores each row canonically.
    if let (Query::Score(_), Some(keys), Some(pool), None, false) =
        (query, keys, inputs.probs, inputs.rows, inputs.has_model())
    {
        return crate::backend::cpu::select_drawn(pool, &RowJob::of(job)?, keys, progress);
    }
    let rows = RowIndex {
        listed: inputs.rows,
        first: inputs.first_row(),
    };
    let (top, scored, excluded) = match keys {
        Some(keys) => by_row_keys(inputs, job, &rows, keys, progress)?,
        None => by_rank(inputs, job, &rows, progress)?,
    };
    Ok(Selection::from_topk(query, top, scored, excluded, scored))
}

/// The global row of the n-th row scored.
struct RowIndex<'a> {
    listed: Option<&'a [u64]>,
    first: u64,
}

impl RowIndex<'_> {
    #[inline]
    fn at(&self, n: u64) -> u64 {
        match self.listed {
            Some(rows) => rows[n as usize],
            None => self.first + n,
        }
    }
}

/// The selectable rows of one block of scores starting at the `start`-th
/// row, as (global row, canonical priority); and how many were excluded.
fn each_selectable<'s>(
    job: &'s Job,
    rows: &'s RowIndex,
    start: u64,
    scores: &'s [f64],
) -> impl Iterator<Item = (u64, f64)> + 's {
    scores.iter().enumerate().filter_map(move |(j, &s)| {
        let index = rows.at(start + j as u64);
        (!job.exclusions.contains(index)).then(|| (index, job.query.priority(s)))
    })
}

/// Keys that need only the row: the k best so far, a block at a time,
/// each block split over the threads.
fn by_row_keys(
    inputs: &Inputs,
    job: &Job,
    rows: &RowIndex,
    keys: RowKeys,
    progress: &dyn Progress,
) -> Result<(TopK<Keyed>, u64, u64)> {
    let k = job.k;
    let mut top = TopK::new(k);
    let (mut at, mut kept) = (0u64, 0u64);
    // The k-th key of any task's full heap bounds the global k-th key from
    // below: rows under it are dropped before they reach a heap.
    let floor = SharedFloor::new();
    score_each(*inputs, job, progress, &mut |scores| {
        let (part, n) = scores
            .par_chunks(TASK_ROWS)
            .enumerate()
            .map(|(c, block)| {
                let start = at + (c * TASK_ROWS) as u64;
                let mut t = TopK::new(k);
                let mut n = 0u64;
                let below = floor.get();
                for (index, priority) in each_selectable(job, rows, start, block) {
                    n += 1;
                    let key = keys.key(priority, index);
                    // Not at the floor: a tie may still win on its row.
                    if k > 0 && key >= below {
                        t.offer(Keyed {
                            key,
                            index,
                            priority,
                        });
                    }
                }
                if let Some(w) = t.worst() {
                    floor.raise_to(w.key);
                }
                (t, n)
            })
            .reduce(
                || (TopK::new(k), 0),
                |(mut a, x), (b, y)| {
                    a.merge(b);
                    (a, x + y)
                },
            );
        top.merge(part);
        at += scores.len() as u64;
        kept += n;
        Ok(())
    })?;
    Ok((top, at, at - kept))
}

/// Softrank: every selectable row's rank under the plain ranking, then
/// its key from the rank.
fn by_rank(
    inputs: &Inputs,
    job: &Job,
    rows: &RowIndex,
    progress: &dyn Progress,
) -> Result<(TopK<Keyed>, u64, u64)> {
    let beta = job.stochastic.map_or(f64::INFINITY, |s| s.beta);
    let mut all: Vec<Ranked> = Vec::new();
    let mut at = 0u64;
    score_each(*inputs, job, progress, &mut |scores| {
        let block = each_selectable(job, rows, at, scores);
        all.extend(block.map(|(index, priority)| Ranked { priority, index }));
        at += scores.len() as u64;
        Ok(())
    })?;
    // `Ranked`'s order is the ranking: best first.
    all.par_sort_unstable();
    let k = job.k;
    let top = all
        .par_iter()
        .enumerate()
        .fold(
            || TopK::new(k),
            |mut t, (r, x)| {
                t.offer(Keyed {
                    key: rank_key(beta, job.seed, r as u64 + 1, x.index),
                    index: x.index,
                    priority: x.priority,
                });
                t
            },
        )
        .reduce(
            || TopK::new(k),
            |mut a, b| {
                a.merge(b);
                a
            },
        );
    Ok((top, at, at - all.len() as u64))
}
