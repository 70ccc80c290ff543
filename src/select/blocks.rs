//! Selection over rows that arrive block by block.

use super::{Selection, TopK};
use crate::error::{Error, Result};
use crate::job::Job;
use crate::query::{Query, Strategy};
use crate::score::Ranked;

/// One exact top k over a pool whose rows arrive block by block (a
/// model's outputs): each block is selected on its own at its global row
/// offset, under [`Blocks::job_for`]'s job, and its k best are merged; the
/// global k best are each among their own block's k best ([`crate::part`]'s
/// argument). Memory is one block, whatever the pool's size.
pub(crate) struct Blocks<'a> {
    job: &'a Job,
    strategy: Strategy,
    rows: u64,
    top: TopK,
    refined: u64,
}

impl<'a> Blocks<'a> {
    /// A selection of `job.k` of `rows` rows; `job` must be row-wise.
    pub(crate) fn new(job: &'a Job, rows: u64) -> Result<Self> {
        let Query::Score(strategy) = job.query else {
            return Err(Error::Config(format!(
                "{} picks a batch; it cannot be merged block by block",
                job.query
            )));
        };
        Ok(Blocks {
            job,
            strategy,
            rows,
            top: TopK::new(job.k.min(rows as usize)),
            refined: 0,
        })
    }

    /// The job for the block of `rows` rows at global row `g0`: the
    /// whole selection's k, and the exclusions that fall in the block.
    pub(crate) fn job_for(&self, g0: u64, rows: u64) -> Job {
        let mut job = self.job.clone();
        job.k = self.job.k.min(self.rows as usize);
        job.exclusions = self.job.exclusions.restrict(g0, rows);
        job
    }

    /// Merges a block's selection.
    pub(crate) fn add(&mut self, sel: Selection) {
        self.refined += sel.refined;
        for e in sel.entries {
            self.top.offer(Ranked {
                priority: self.strategy.priority(e.score),
                index: e.index,
            });
        }
    }

    /// The selection of every block added.
    pub(crate) fn finish(self) -> Selection {
        Selection::from_topk(
            self.strategy,
            self.top,
            self.rows,
            self.job.exclusions.len() as u64,
            self.refined,
        )
    }
}
