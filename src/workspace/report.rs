//! `alpool report WS`: a workspace on one page: labels per class, the
//! rounds, how often annotators agree, and a held-out learning curve of the
//! labels so far. The page is the comparison report's kind: one
//! self-contained HTML file drawn from the JSON it carries.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::Workspace;
use crate::al::accuracy_and_macro_f1;
use crate::error::{Error, Result};
use crate::features::FeaturePool;
use crate::learner::MlpConfig;
use crate::rng::splitmix64;

/// One round of a workspace.
#[derive(Clone, Debug, Serialize)]
pub struct RoundRow {
    /// Its number.
    pub round: i64,
    /// The strategy.
    pub strategy: String,
    /// Labels the round's model was trained on.
    pub labels: i64,
    /// Items it selected.
    pub selected: i64,
    /// The batch's best and mean score.
    pub best_score: Option<f64>,
    /// See `best_score`.
    pub mean_score: Option<f64>,
    /// When it ran.
    pub time: String,
}

/// How often annotators agree, over items with two or more class votes.
#[derive(Clone, Debug, Serialize)]
pub struct Agreement {
    /// Items with two or more class votes.
    pub items: usize,
    /// Pairs of votes on one item.
    pub pairs: usize,
    /// Of those, pairs that chose the same class.
    pub agreeing: usize,
}

/// A workspace's report.
#[derive(Clone, Debug, Serialize)]
pub struct WorkspaceReport {
    /// Class names.
    pub classes: Vec<String>,
    /// Items in the pool.
    pub items: usize,
    /// Labels per class (a multi-label item counts under each class).
    pub per_class: Vec<usize>,
    /// Items with a label.
    pub labeled: usize,
    /// Items skipped and still unlabeled.
    pub skipped: usize,
    /// Every round, oldest first.
    pub rounds: Vec<RoundRow>,
    /// Annotator agreement, when any item has two votes.
    pub agreement: Option<Agreement>,
    /// Labels held out for the curve (one in [`HOLD_OUT`], by a hash of
    /// the item).
    pub held_out: usize,
    /// (labels trained on, accuracy on the held-out labels, or R² in a
    /// regression workspace), for growing prefixes of the other labels in
    /// the order they were given; empty while there are too few labels.
    pub curve: Vec<(usize, f64)>,
    /// What the curve measures: "accuracy" or "R²".
    pub curve_metric: String,
    /// The live queue (`serve --project`), if the workspace was served live.
    pub live: Option<super::live::LiveStatus>,
}

/// One label in this many is held out for the curve.
pub const HOLD_OUT: u64 = 5;
/// Points on the curve.
const POINTS: usize = 5;
/// The fewest held-out labels the curve is drawn with.
const MIN_HELD_OUT: usize = 10;

impl Workspace {
    /// The report of this workspace (`alpool report`).
    pub fn report(&self) -> Result<WorkspaceReport> {
        let status = self.status()?;
        Ok(WorkspaceReport {
            rounds: self.round_rows()?,
            agreement: self.agreement()?,
            live: self.live_status()?,
            ..self.held_out_curve(WorkspaceReport {
                classes: status.classes,
                items: status.items,
                per_class: status.per_class,
                labeled: status.labeled,
                skipped: status.skipped,
                rounds: Vec::new(),
                agreement: None,
                held_out: 0,
                curve: Vec::new(),
                curve_metric: String::new(),
                live: None,
            })?
        })
    }

    /// The report as one page: what `alpool serve` answers at `/report`.
    pub fn report_page(&self) -> Result<String> {
        page(&self.report()?, &self.report_title())
    }

    /// Writes the report's page to `out` and its JSON beside it (`.json`),
    /// each whole or not at all; returns the report.
    pub fn write_report(&self, out: &Path) -> Result<WorkspaceReport> {
        let rep = self.report()?;
        let html = page(&rep, &self.report_title())?;
        let json = out.with_extension("json");
        let text = serde_json::to_string_pretty(&rep).map_err(|e| Error::Config(e.to_string()))?;
        crate::atomic::write(&json, |w| {
            w.write_all(text.as_bytes())
                .map_err(|e| Error::io(&json, e))
        })?;
        crate::atomic::write(out, |w| {
            w.write_all(html.as_bytes()).map_err(|e| Error::io(out, e))
        })?;
        Ok(rep)
    }

    fn report_title(&self) -> String {
        format!("alpool workspace: {}", self.dir.display())
    }

    fn round_rows(&self) -> Result<Vec<RoundRow>> {
        self.query(
            "SELECT r.round, r.strategy, r.labels, r.time, COUNT(s.idx), MAX(s.score), AVG(s.score)
             FROM rounds r LEFT JOIN selections s ON s.round = r.round
             GROUP BY r.round ORDER BY r.round",
            [],
            |r| {
                Ok(RoundRow {
                    round: r.get(0)?,
                    strategy: r.get(1)?,
                    labels: r.get(2)?,
                    time: r.get(3)?,
                    selected: r.get(4)?,
                    best_score: r.get(5)?,
                    mean_score: r.get(6)?,
                })
            },
        )
    }

    fn agreement(&self) -> Result<Option<Agreement>> {
        let votes: Vec<(i64, i64)> = self.query(
            "SELECT idx, class FROM votes WHERE class IS NOT NULL ORDER BY idx",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let mut by_item: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for (idx, class) in votes {
            by_item.entry(idx).or_default().push(class);
        }
        let mut a = Agreement {
            items: 0,
            pairs: 0,
            agreeing: 0,
        };
        for classes in by_item.values().filter(|v| v.len() > 1) {
            a.items += 1;
            for i in 0..classes.len() {
                for j in i + 1..classes.len() {
                    a.pairs += 1;
                    a.agreeing += usize::from(classes[i] == classes[j]);
                }
            }
        }
        Ok((a.items > 0).then_some(a))
    }

    /// The labels in the order they were given (round, then item), split by
    /// a hash of the item into held-out and training labels; a model of
    /// alpool's default settings trained on growing prefixes of the latter.
    fn held_out_curve(&self, mut rep: WorkspaceReport) -> Result<WorkspaceReport> {
        let labels: Vec<(usize, usize)> = self.query(
            "SELECT idx, class FROM labels ORDER BY round, idx",
            [],
            |r| Ok((r.get::<_, i64>(0)? as usize, r.get::<_, i64>(1)? as usize)),
        )?;
        let (held, train): (Vec<_>, Vec<_>) = labels
            .into_iter()
            .partition(|&(i, _)| splitmix64(i as u64).is_multiple_of(HOLD_OUT));
        rep.held_out = held.len();
        if held.len() < MIN_HELD_OUT || train.len() < POINTS * 2 {
            return Ok(rep);
        }
        let features = FeaturePool::open(&[PathBuf::from(self.meta("features")?)])?;
        let held_rows: Vec<usize> = held.iter().map(|h| h.0).collect();
        let held_y: Vec<usize> = held.iter().map(|h| h.1).collect();
        let x_held = features.gather(&held_rows)?;
        let vocab = self.vocab()?;
        rep.curve_metric = match vocab.numeric() {
            true => "R²".into(),
            false => "accuracy".into(),
        };
        for p in 1..=POINTS {
            let n = train.len() * p / POINTS;
            let rows: Vec<usize> = train[..n].iter().map(|t| t.0).collect();
            let ys: Vec<usize> = train[..n].iter().map(|t| t.1).collect();
            if ys.iter().all(|&c| c == ys[0]) {
                continue;
            }
            let (model, _) =
                super::round::train(&features, &rows, &ys, &vocab, &MlpConfig::default())?;
            let probs = model.predict_proba(&x_held)?;
            if vocab.numeric() {
                let truth: Vec<f32> = held_y.iter().flat_map(|&c| vocab.targets(c)).collect();
                let r2 = crate::al::regression::errors(&probs, &truth).1;
                if r2.is_finite() {
                    rep.curve.push((n, r2));
                }
                continue;
            }
            // A multi-label item is right when its whole set is.
            let pred: Vec<usize> = probs
                .chunks_exact(vocab.width())
                .map(|p| vocab.predicted(p))
                .collect();
            rep.curve.push((n, accuracy_and_macro_f1(&held_y, &pred).0));
        }
        Ok(rep)
    }
}

/// The report page for `rep`.
pub fn page(rep: &WorkspaceReport, title: &str) -> Result<String> {
    let doc = serde_json::json!({ "meta": { "title": title }, "workspace": rep });
    crate::compare::html::page_from(WORKSPACE_TEMPLATE, &doc)
}

const WORKSPACE_TEMPLATE: &str = include_str!("report.html");
