//! The parallel drivers of the engines that score rows canonically on the
//! CPU, chunk by chunk (disagreement over T samples, multi-label pools):
//! the exact top k merged across workers, and every score in row order.
//! Each engine says how to read and score one chunk; these say how the
//! chunks are shared out, cancelled, reported and merged, once.

use rayon::prelude::*;

use super::Progress;
use crate::error::{Error, Result};
use crate::select::{SharedFloor, TopK};

/// A worker's state in a selection: its buffers, its top k, the floor
/// all workers share.
pub(crate) type Work<'w, S> = (&'w mut S, &'w mut TopK, &'w SharedFloor);

/// The top `k` over `chunks`, each offered by `select_chunk` (which
/// returns the bytes it read, for `progress`); and the rows scored in full,
/// as `finish` counts them in each worker's state, after offering what the
/// worker held back (an engine that scores candidates in batches). On
/// any failure the
/// error is `first_error()`'s: a sequential pass naming the first bad row,
/// so a bad file names the same row on every run.
pub(crate) fn top_k<C, S>(
    chunks: Vec<C>,
    k: usize,
    progress: &dyn Progress,
    select_chunk: impl Fn(C, Work<S>) -> Result<u64> + Sync + Send,
    finish: impl Fn(Work<S>) -> Result<u64> + Sync + Send,
    first_error: impl FnOnce() -> Error,
) -> Result<(u64, TopK)>
where
    C: Send,
    S: Default + Send,
{
    let floor = SharedFloor::new();
    let found = chunks
        .into_par_iter()
        .try_fold(
            || (S::default(), TopK::new(k)),
            |(mut s, mut top), chunk| {
                if progress.cancelled() {
                    return Err(Error::Cancelled);
                }
                let bytes = select_chunk(chunk, (&mut s, &mut top, &floor))?;
                floor.raise(&top);
                progress.advance(bytes);
                Ok((s, top))
            },
        )
        .map(|r| r.and_then(|(mut s, mut top)| Ok((finish((&mut s, &mut top, &floor))?, top))))
        .try_reduce(
            || (0, TopK::new(k)),
            |(n, mut a), (m, b)| {
                a.merge(b);
                Ok((n + m, a))
            },
        );
    match found {
        Ok(found) => Ok(found),
        Err(Error::Cancelled) => Err(Error::Cancelled),
        Err(_) => Err(first_error()),
    }
}

/// Every row's score, in row order, chunk by chunk to `sink`: a few chunks
/// per core at a time, so the work is parallel and memory stays bounded.
/// `score_chunk` appends a chunk's scores to its output.
pub(crate) fn in_order<C, S>(
    chunks: &[C],
    progress: &dyn Progress,
    score_chunk: impl Fn(C, &mut S, &mut Vec<f64>) -> Result<()> + Sync + Send,
    sink: &mut dyn FnMut(&[f64]) -> Result<()>,
) -> Result<()>
where
    C: Copy + Send + Sync,
    S: Default + Send,
{
    for group in chunks.chunks(rayon::current_num_threads() * 4) {
        let scores: Vec<Result<Vec<f64>>> = group
            .par_iter()
            .map_init(S::default, |s, &chunk| {
                if progress.cancelled() {
                    return Err(Error::Cancelled);
                }
                let mut out = Vec::new();
                score_chunk(chunk, s, &mut out)?;
                Ok(out)
            })
            .collect();
        for chunk in scores {
            sink(&chunk?)?;
        }
    }
    Ok(())
}
