//! Selection over rows that arrive block by block.

use super::{Keyed, Selection, TopK};
use crate::error::{Error, Result};
use crate::job::Job;
use crate::query::Query;
use crate::score::stochastic::RowKeys;

/// One exact top k over a pool whose rows arrive block by block (a
/// model's outputs): each block is selected on its own at its global row
/// offset, under [`Blocks::job_for`]'s job, and its k best are merged; the
/// global k best are each among their own block's k best ([`crate::part`]'s
/// argument). Memory is one block, whatever the pool's size. A stochastic
/// batch merges the same way, by each row's key: a key depends only on the
/// row's own score, its global row and the seed.
pub(crate) struct Blocks<'a> {
    job: &'a Job,
    query: Query,
    keys: RowKeys,
    rows: u64,
    top: TopK<Keyed>,
    refined: u64,
}

impl<'a> Blocks<'a> {
    /// A selection of `job.k` of `rows` rows; `job` must score each row
    /// on its own ([`Query::scores_rows`]), and a stochastic batch must
    /// key each row on its own (not softrank, whose key is a rank in the
    /// whole pool).
    pub(crate) fn new(job: &'a Job, rows: u64) -> Result<Self> {
        if !job.query.scores_rows() {
            return Err(Error::Config(format!(
                "{} picks a batch; it cannot be merged block by block",
                job.query
            )));
        }
        let keys = RowKeys::new(job.query, job.stochastic, job.seed).ok_or_else(|| {
            Error::Config(format!(
                "{} with a softrank batch ranks the whole pool; it cannot be merged block by block",
                job.query
            ))
        })?;
        Ok(Blocks {
            job,
            query: job.query,
            keys,
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
            let priority = self.query.priority(e.score);
            self.top.offer(Keyed {
                key: self.keys.key(priority, e.index),
                index: e.index,
                priority,
            });
        }
    }

    /// The selection of every block added.
    pub(crate) fn finish(self) -> Selection {
        Selection::from_topk(
            self.query,
            self.top,
            self.rows,
            self.job.exclusions.len() as u64,
            self.refined,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Blocks;
    use crate::backend::Silent;
    use crate::job::Job;
    use crate::pool::{Exclusions, Pool, SampleLayout, Samples};
    use crate::query::{Disagreement, InputForm};
    use crate::rng::splitmix64;

    /// A committee's samples arriving block by block (the loop's path)
    /// select what the whole array selects, ties and exclusions included.
    #[test]
    fn disagreement_blocks_merge_to_the_whole_selection() {
        let (t, n, c) = (4usize, 1000usize, 5usize);
        // Rows drawn from a few distinct ones, so scores tie often.
        let base: Vec<Vec<f32>> = (0..7u64)
            .map(|r| {
                let w: Vec<f32> = (0..c as u64)
                    .map(|j| 1.0 + (splitmix64(r * 31 + j) % 97) as f32)
                    .collect();
                let s: f32 = w.iter().sum();
                w.into_iter().map(|v| v / s).collect()
            })
            .collect();
        let pick = |m: usize, i: usize| (splitmix64((m * n + i) as u64) % 7) as usize;
        let mut x = Vec::with_capacity(t * n * c);
        for m in 0..t {
            for i in 0..n {
                x.extend_from_slice(&base[pick(m, i)]);
            }
        }
        let excluded: Vec<u64> = (0..n as u64).filter(|i| i % 9 == 4).collect();
        for d in Disagreement::ALL {
            let job =
                Job::new(d, InputForm::probs(), 50).exclude(Exclusions::new(excluded.clone()));
            let whole =
                Samples::from_pool(Pool::from_f32(&x, c).unwrap(), [t, n, c], SampleLayout::Tnc)
                    .unwrap();
            let want = crate::disagree::select(&whole, &job, &Silent).unwrap();
            let mut blocks = Blocks::new(&job, n as u64).unwrap();
            for g0 in (0..n).step_by(128) {
                let rows = 128.min(n - g0);
                let mut part = Vec::with_capacity(t * rows * c);
                for m in 0..t {
                    part.extend_from_slice(&x[(m * n + g0) * c..(m * n + g0 + rows) * c]);
                }
                let pool = Pool::from_f32(&part, c).unwrap();
                let s = Samples::from_pool(pool, [t, rows, c], SampleLayout::Tnc)
                    .unwrap()
                    .with_row_offset(g0 as u64);
                let block_job = blocks.job_for(g0 as u64, rows as u64);
                blocks.add(crate::disagree::select(&s, &block_job, &Silent).unwrap());
            }
            let got = blocks.finish();
            let key = |s: &crate::select::Selection| -> Vec<(u64, u64)> {
                s.entries
                    .iter()
                    .map(|e| (e.index, e.score.to_bits()))
                    .collect()
            };
            assert_eq!(key(&got), key(&want), "{d:?}");
            assert!(
                got.entries.iter().all(|e| e.index % 9 != 4),
                "{d:?}: an excluded row"
            );
        }
    }

    /// A power or softmax batch drawn block by block (the loop's
    /// `--stochastic`) is the batch drawn from the whole pool at once, and
    /// not the plain top k; softrank, a rank in the whole pool, is refused.
    #[test]
    fn stochastic_blocks_merge_to_the_whole_draw() {
        use crate::api::{Device, Run, select};
        use crate::query::{Stochastic, StochasticKind, Strategy};
        let (n, c) = (1000usize, 4usize);
        let x: Vec<f32> = (0..n as u64)
            .flat_map(|i| {
                // A few distinct rows, so priorities tie often.
                let w: Vec<f32> = (0..c as u64)
                    .map(|j| 1.0 + (splitmix64((i % 13) * 7 + j) % 50) as f32)
                    .collect();
                let s: f32 = w.iter().sum();
                w.into_iter().map(move |v| v / s)
            })
            .collect();
        let excluded: Vec<u64> = (0..n as u64).filter(|i| i % 11 == 3).collect();
        let run = Run::on(Device::Cpu);
        let rows = |s: &crate::select::Selection| -> Vec<(u64, u64)> {
            s.entries
                .iter()
                .map(|e| (e.index, e.score.to_bits()))
                .collect()
        };
        for kind in [StochasticKind::Power, StochasticKind::Softmax] {
            for strategy in [Strategy::Margin, Strategy::Entropy] {
                let job = Job::new(strategy, InputForm::probs(), 40)
                    .seed(17)
                    .exclude(Exclusions::new(excluded.clone()))
                    .stochastic(Stochastic::new(kind, 2.0));
                let whole = Pool::from_f32(&x, c).unwrap();
                let want = select(&whole, &job, &run).unwrap().selection;
                let mut blocks = Blocks::new(&job, n as u64).unwrap();
                for g0 in (0..n).step_by(96) {
                    let r = 96.min(n - g0);
                    let pool = Pool::from_f32(&x[g0 * c..(g0 + r) * c], c)
                        .unwrap()
                        .with_row_offset(g0 as u64);
                    let block_job = blocks.job_for(g0 as u64, r as u64);
                    blocks.add(select(&pool, &block_job, &run).unwrap().selection);
                }
                let got = blocks.finish();
                assert_eq!(rows(&got), rows(&want), "{kind} {strategy:?}");
                let mut plain = job.clone();
                plain.stochastic = None;
                let top = select(&whole, &plain, &run).unwrap().selection;
                assert_ne!(rows(&got), rows(&top), "{kind} {strategy:?}: no draw");
            }
        }
        let job = Job::new(Strategy::Margin, InputForm::probs(), 5)
            .stochastic(Stochastic::new(StochasticKind::Softrank, 1.0));
        let err = Blocks::new(&job, n as u64).err().unwrap().to_string();
        assert!(err.contains("softrank"), "{err}");
    }
}
