//! What `alpool status` reports: labels per class, the last round, how far
//! successive models still disagree (a stopping signal), skipped items and
//! open conflicts.

use std::path::PathBuf;

use super::vocab::{LabelKind, Vocab};
use super::{Conflict, Workspace};
use crate::error::Result;
use crate::features::FeaturePool;
use crate::learner::Mlp;

/// The last round of a workspace.
#[derive(Clone, Debug, PartialEq)]
pub struct LastRound {
    /// Its number.
    pub round: i64,
    /// Labels it was trained on.
    pub labels: i64,
    /// Items it selected.
    pub selected: usize,
    /// The batch's scores: best, last, mean (none for an empty batch).
    pub scores: Option<(f64, f64, f64)>,
    /// Cohen's kappa of the last two models' predictions on a fixed sample
    /// of items, and the sample's size (Bloodgood & Vijay-Shanker stop once
    /// it stays ≥ 0.99); `None` before the second round.
    pub kappa: Option<(f64, usize)>,
}

/// A workspace's state, as `status` shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Status {
    /// Class names, in label order.
    pub classes: Vec<String>,
    /// What a label is (a set's code is a mask, a number's its bits:
    /// [`super::vocab::Vocab`]).
    pub kind: LabelKind,
    /// A regression workspace's labels: (least, mean, greatest).
    pub numbers: Option<(f64, f64, f64)>,
    /// Items in the pool.
    pub items: usize,
    /// Labels per class, in class order.
    pub per_class: Vec<usize>,
    /// Items with a label.
    pub labeled: usize,
    /// The latest round, if any.
    pub last: Option<LastRound>,
    /// Unlabeled items only skipped so far.
    pub skipped: usize,
    /// Items whose votes disagree, not yet resolved.
    pub open_conflicts: Vec<Conflict>,
    /// The ids of those items, in the same order.
    pub open_conflict_ids: Vec<String>,
    /// Conflicts resolved so far.
    pub resolved_conflicts: usize,
}

/// Items in the kappa sample (every `N / 2000`-th).
const KAPPA_SAMPLE: usize = 2000;

impl Workspace {
    /// The workspace's state for `status`.
    pub fn status(&self) -> Result<Status> {
        let vocab = self.vocab()?;
        let items = self.items()?;
        let labels = self.labels()?;
        // A multi-label item counts once for each class its set holds; a
        // number under the target.
        let mut per_class = vec![0usize; vocab.width()];
        for l in &labels {
            match vocab.numeric() {
                true => per_class[0] += 1,
                false => vocab
                    .classes_of(l.class)
                    .into_iter()
                    .for_each(|c| per_class[c] += 1),
            }
        }
        let values = labels.iter().map(|l| Vocab::number(l.class));
        let numbers = (vocab.numeric() && !labels.is_empty()).then(|| {
            let (lo, hi) = values
                .clone()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                    (a.min(v), b.max(v))
                });
            (lo, values.sum::<f64>() / labels.len() as f64, hi)
        });
        let last = match self.last_round()? {
            None => None,
            Some((round, n)) => {
                let sel = self.selection(round)?;
                let scores = match (sel.first(), sel.last()) {
                    (Some(f), Some(l)) => Some((
                        f.score,
                        l.score,
                        sel.iter().map(|p| p.score).sum::<f64>() / sel.len() as f64,
                    )),
                    _ => None,
                };
                Some(LastRound {
                    round,
                    labels: n,
                    selected: sel.len(),
                    scores,
                    kappa: self.kappa(items)?,
                })
            }
        };
        let open_conflicts = self.conflicts()?;
        let rows: Vec<usize> = open_conflicts.iter().map(|c| c.index).collect();
        let open_conflict_ids = self.ids_of(&rows)?;
        let resolved_conflicts = self.conflict_history()?.len() - open_conflicts.len();
        Ok(Status {
            per_class,
            labeled: labels.len(),
            last,
            skipped: self.skipped()?.len(),
            open_conflicts,
            open_conflict_ids,
            resolved_conflicts,
            kind: vocab.kind,
            numbers,
            classes: vocab.names,
            items,
        })
    }

    /// Kappa of the last two rounds' models on a fixed sample of items
    /// (none for regressors, whose predictions are not classes).
    fn kappa(&self, rows: usize) -> Result<Option<(f64, usize)>> {
        if self.vocab()?.numeric() {
            return Ok(None);
        }
        let models = self.models()?;
        let [.., prev, last] = &models[..] else {
            return Ok(None);
        };
        let features = FeaturePool::open(&[PathBuf::from(self.meta("features")?)])?;
        let step = (rows / KAPPA_SAMPLE).max(1);
        let picked: Vec<usize> = (0..rows).step_by(step).collect();
        let sample = features.gather(&picked)?;
        // A multi-label model's label is the set it predicts.
        let vocab = self.vocab()?;
        let predict = |m: &str| -> Result<Vec<usize>> {
            let p = Mlp::load(&self.dir.join(m))?.predict_proba(&sample)?;
            Ok(p.chunks_exact(vocab.width())
                .map(|r| vocab.predicted(r))
                .collect())
        };
        let (a, b) = (predict(prev)?, predict(last)?);
        Ok(Some((crate::al::stopping::cohen_kappa(&a, &b), a.len())))
    }
}
