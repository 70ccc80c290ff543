//! A regression workspace's batch (`init --regression`): the round's
//! regressor ([`crate::learner::Output::Linear`]) scores the unlabeled
//! items through the door, with the regression strategies.
//!
//! - `std` reads T predictions of each item: MC-dropout passes of the
//!   round's model (`--mc-samples`) or a bootstrap ensemble trained beside
//!   it (`--committee`), streamed block by block from the features.
//! - `gsx`, `gsy` and `igs` (greedy sampling) and `emcm` read the model's
//!   predictions and the features as the model scales them, written once
//!   to temporary files in the workspace and memory-mapped (memory stays a
//!   block of rows); `emcm` also reads the ensemble's (or the passes')
//!   predictions, written the same way.
//! - `random` draws from the unlabeled items with the round's seed.
//!
//! Items annotators skipped are not picked again (unless
//! `--reselect-skipped`). Greedy sampling measures each item's distance to
//! the labeled ones; a skipped item counts among them with the model's
//! prediction as its target, as an item picked earlier in the same batch
//! does (Wu, Lin and Huang give no rule for items that cannot be labeled).

use std::path::Path;

use super::LabelRow;
use super::round::NextOptions;
use super::vocab::Vocab;
use crate::api::{Inputs, Run};
use crate::backend::Progress;
use crate::error::{Error, Result};
use crate::features::{FeaturePool, Members, ModelViews, SampleView, Space};
use crate::job::Job;
use crate::learner::regressor::Ensemble;
use crate::learner::{Mlp, Scaler};
use crate::pool::Exclusions;
use crate::query::{InputForm, Query, Regression, RegressionInput, Strategy};

/// What the round has for the strategies: its model, the labels, the
/// items left out, and where temporary files go.
pub(super) struct Round<'a> {
    pub model: &'a Mlp,
    pub features: &'a FeaturePool,
    pub labels: &'a [LabelRow],
    pub skipped: &'a [usize],
    pub dir: &'a Path,
    /// The round's seed (`--seed` and the labels' version).
    pub seed: u64,
}

/// The strategies a regression workspace runs.
pub(super) fn check_strategy(q: Query) -> Result<()> {
    match q {
        Query::Regress(_) | Query::Score(Strategy::Random) => Ok(()),
        q => {
            let names: Vec<&str> = Regression::ALL.map(|r| r.name()).to_vec();
            Err(Error::Config(format!(
                "the workspace is a regression one: its model predicts a number, which {q} does not read; its strategies are random, {}",
                names.join(", ")
            )))
        }
    }
}

/// The k items `opts.strategy` picks, best first, with their scores.
pub(super) fn select(
    r: &Round,
    opts: &NextOptions,
    progress: &dyn Progress,
) -> Result<Vec<(usize, f64)>> {
    let n = r.features.rows() as usize;
    let labeled: Vec<usize> = r.labels.iter().map(|l| l.index).collect();
    let out: Vec<u64> = labeled.iter().chain(r.skipped).map(|&i| i as u64).collect();
    let taken = Exclusions::new(out);
    let k = opts.k.min(n - taken.len());
    let run = Run {
        device: opts.device,
        adapter: None,
        progress,
        gpu: None,
    };
    let door = |inputs: Inputs, job: Job| -> Result<Vec<(usize, f64)>> {
        let sel = crate::select(inputs, &job.seed(r.seed), &run)?.selection;
        Ok(sel
            .entries
            .iter()
            .map(|e| (e.index as usize, e.score))
            .collect())
    };
    let form = |kind| InputForm::Regression(kind);
    let q = opts.strategy;
    match q {
        Query::Regress(Regression::Std) => {
            let mut job = Job::new(q, form(RegressionInput::Samples), k)
                .seed(r.seed)
                .exclude(taken);
            job.stochastic = opts.stochastic;
            let committee = r.committee(opts)?;
            let inputs = match committee.is_empty() {
                true => Inputs::mc_dropout(r.model, r.features, opts.mc_samples, r.seed),
                false => Inputs::committee(&committee, r.features),
            };
            door(inputs, job)
        }
        Query::Regress(strategy) => {
            let views = ModelViews::write(r.model, r.features, (r.dir, Space::Features), progress)?;
            let (preds, emb) = views.open()?;
            let column = r.targets(n)?;
            let input = match strategy {
                Regression::Emcm => RegressionInput::Samples,
                _ => RegressionInput::Predictions,
            };
            let mut job = Job::new(q, form(input), k)
                .seed(r.seed)
                .exclude(taken)
                .with_targets(&column)?;
            // EMCM scores each item: it draws a stochastic batch too.
            job.stochastic = opts.stochastic;
            match strategy {
                Regression::Gsx => door(Inputs::embeddings(&emb), job),
                Regression::Emcm => {
                    let committee = r.committee(opts)?;
                    let members = match committee.is_empty() {
                        true => Members::Dropout {
                            model: r.model,
                            passes: opts.mc_samples,
                            seed: r.seed,
                        },
                        false => Members::Committee(&committee),
                    };
                    let view = SampleView::write(members, r.features, r.dir, progress)?;
                    let samples = view.open()?;
                    let inputs = Inputs::samples(&samples)
                        .with_probs(&preds)
                        .with_embeddings(&emb);
                    door(inputs, job)
                }
                _ => door(Inputs::probs(&preds).with_embeddings(&emb), job),
            }
        }
        _ => {
            let picks = crate::al::measured::random_picks(n, &taken, k, r.seed);
            let scores = picks
                .iter()
                .map(|&p| crate::score::random_priority(r.seed, p as u64));
            Ok(picks.iter().copied().zip(scores).collect())
        }
    }
}

impl Round<'_> {
    /// The ensemble `--committee T` trains beside the model (none without
    /// it): T regressors on bootstrap resamples of the labels, scaled as
    /// the model is.
    fn committee(&self, opts: &NextOptions) -> Result<Vec<Mlp>> {
        if opts.committee == 0 {
            return Ok(Vec::new());
        }
        let rows: Vec<usize> = self.labels.iter().map(|l| l.index).collect();
        let x = self.features.gather(&rows)?;
        let y = numbers(self.labels);
        let scaler: Option<Scaler> = self.model.scaler().cloned();
        let d = self.features.dim();
        let e = Ensemble::fit(
            opts.committee,
            d,
            &opts.learner,
            scaler,
            (&x, &y),
            self.seed,
        )?;
        Ok(e.into_models())
    }

    /// Every item's target: the labeled items' numbers, the skipped items'
    /// predictions, NaN for the rest (greedy sampling's and EMCM's
    /// column).
    fn targets(&self, n: usize) -> Result<Vec<f64>> {
        let mut column = vec![f64::NAN; n];
        for l in self.labels {
            column[l.index] = Vocab::number(l.class);
        }
        if !self.skipped.is_empty() {
            let x = self.features.gather(self.skipped)?;
            let preds = self.model.predict_proba(&x)?;
            for (&row, &p) in self.skipped.iter().zip(&preds) {
                column[row] = p as f64;
            }
        }
        Ok(column)
    }
}

/// The labels' numbers, in label order (the regressor's targets).
pub(super) fn numbers(labels: &[LabelRow]) -> Vec<f32> {
    labels
        .iter()
        .map(|l| Vocab::number(l.class) as f32)
        .collect()
}
