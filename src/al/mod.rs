//! The active-learning loop: datasets and splits, the oracle, stopping
//! criteria, the pool-based loop and multi-strategy simulations.

pub mod curves;
pub mod dataset;
pub mod measured;
pub mod multilabel;
pub mod pool_loop;
pub mod regression;
pub mod simulate;
pub mod stopping;
pub mod stream;
pub mod synthesis;

use crate::error::{Error, Result};
use crate::learner::shuffle;
use crate::rng::Rng;

pub use dataset::Dataset;

/// Whoever supplies labels: ground truth in simulation, people in
/// production. Rows are dataset row indices.
pub trait Oracle {
    /// The classes of dataset rows `rows`, in order.
    fn label(&mut self, rows: &[usize]) -> Result<Vec<usize>>;

    /// Labels instances the caller holds (stream items, synthesized
    /// points): `rows` are their ids, `features` what a person or a proxy
    /// looks at. By default only the ids are used.
    fn label_instances(&mut self, rows: &[usize], features: &[&[f32]]) -> Result<Vec<usize>> {
        let _ = features;
        self.label(rows)
    }
}

/// A person as the oracle: each query is written as a JSON line
/// (`{"id":…,"features":[…]}`) to `queries`, and its label read back as one
/// line (an integer class) from `answers` — a file, a pipe or a terminal.
pub struct FileOracle<W: std::io::Write, R: std::io::BufRead> {
    /// Where queries are written.
    pub queries: W,
    /// Where answers are read.
    pub answers: R,
    /// Classes an answer may name (0..classes).
    pub classes: usize,
    line: u64,
}

impl<W: std::io::Write, R: std::io::BufRead> FileOracle<W, R> {
    /// An oracle writing to `queries` and reading `answers`.
    pub fn new(queries: W, answers: R, classes: usize) -> Self {
        FileOracle {
            queries,
            answers,
            classes,
            line: 0,
        }
    }
}

impl<W: std::io::Write, R: std::io::BufRead> Oracle for FileOracle<W, R> {
    fn label(&mut self, rows: &[usize]) -> Result<Vec<usize>> {
        self.label_instances(rows, &[])
    }

    fn label_instances(&mut self, rows: &[usize], features: &[&[f32]]) -> Result<Vec<usize>> {
        let io = |e| Error::io("<oracle>", e);
        let mut out = Vec::with_capacity(rows.len());
        for (i, &r) in rows.iter().enumerate() {
            let f = features.get(i).copied().unwrap_or(&[]);
            writeln!(
                self.queries,
                "{}",
                serde_json::json!({"id": r, "features": f})
            )
            .map_err(io)?;
            self.queries.flush().map_err(io)?;
            let mut line = String::new();
            self.line += 1;
            if self.answers.read_line(&mut line).map_err(io)? == 0 {
                return Err(Error::BadLine {
                    path: "<oracle answers>".into(),
                    line: self.line,
                    reason: format!("no answer for query {r}: the answers ended"),
                });
            }
            let label: usize = line.trim().parse().map_err(|_| Error::BadLine {
                path: "<oracle answers>".into(),
                line: self.line,
                reason: format!("{:?} is not a class number", line.trim()),
            })?;
            if label >= self.classes {
                return Err(Error::BadLine {
                    path: "<oracle answers>".into(),
                    line: self.line,
                    reason: format!("class {label} is outside 0..{}", self.classes),
                });
            }
            out.push(label);
        }
        Ok(out)
    }
}

/// The documented proxy oracle for synthesized instances, which have no
/// ground truth: the label of the nearest real instance (squared Euclidean
/// distance, ties to the lower row) among `rows` of the dataset.
pub struct NearestNeighbour<'a> {
    /// The real instances.
    pub data: &'a Dataset,
    /// The rows it may answer from (never the test rows).
    pub rows: Vec<usize>,
}

impl NearestNeighbour<'_> {
    /// The dataset row nearest to `x`.
    pub fn nearest(&self, x: &[f32]) -> usize {
        let mut best = (f64::INFINITY, 0usize);
        for &r in &self.rows {
            let d: f64 = self
                .data
                .row(r)
                .iter()
                .zip(x)
                .map(|(&a, &b)| ((a - b) as f64).powi(2))
                .sum();
            if d < best.0 {
                best = (d, r);
            }
        }
        best.1
    }
}

impl Oracle for NearestNeighbour<'_> {
    fn label(&mut self, rows: &[usize]) -> Result<Vec<usize>> {
        Ok(rows.iter().map(|&r| self.data.y[r]).collect())
    }

    fn label_instances(&mut self, _rows: &[usize], features: &[&[f32]]) -> Result<Vec<usize>> {
        Ok(features
            .iter()
            .map(|x| self.data.y[self.nearest(x)])
            .collect())
    }
}

/// The simulated oracle: reveals ground-truth labels, only for the rows
/// asked, and records every query.
pub struct GroundTruth<'a> {
    y: &'a [usize],
    /// Every row asked, in order.
    pub queried: Vec<usize>,
}

impl<'a> GroundTruth<'a> {
    /// The oracle of labels `y`.
    pub fn new(y: &'a [usize]) -> Self {
        GroundTruth {
            y,
            queried: Vec::new(),
        }
    }
}

impl Oracle for GroundTruth<'_> {
    fn label(&mut self, rows: &[usize]) -> Result<Vec<usize>> {
        self.queried.extend_from_slice(rows);
        rows.iter()
            .map(|&r| {
                self.y.get(r).copied().ok_or_else(|| {
                    Error::Config(format!(
                        "the oracle was asked for row {r}, outside the dataset"
                    ))
                })
            })
            .collect()
    }
}

/// A held-out test set and the pool (dataset row indices, ascending).
#[derive(Clone, Debug)]
pub struct Split {
    /// Rows that can be labeled.
    pub pool: Vec<usize>,
    /// Rows held out to evaluate.
    pub test: Vec<usize>,
}

impl Split {
    /// A stratified split: `fraction` of each class, drawn with `seed`, is
    /// held out for testing.
    pub fn stratified(y: &[usize], fraction: f64, seed: u64) -> Split {
        let mut rng = Rng::new(seed ^ 0x5e_5701);
        let classes = y.iter().max().map_or(0, |m| m + 1);
        let mut test = Vec::new();
        for c in 0..classes {
            let mut rows: Vec<usize> = (0..y.len()).filter(|&i| y[i] == c).collect();
            shuffle(&mut rows, &mut rng);
            let n = (rows.len() as f64 * fraction).round() as usize;
            test.extend_from_slice(&rows[..n.min(rows.len())]);
        }
        test.sort_unstable();
        let mut is_test = vec![false; y.len()];
        test.iter().for_each(|&i| is_test[i] = true);
        let pool = (0..y.len()).filter(|&i| !is_test[i]).collect();
        Split { pool, test }
    }

    /// A fixed split: rows `test` are the test set, all others the pool.
    pub fn fixed(n: usize, test: std::ops::Range<usize>) -> Split {
        Split {
            pool: (0..n).filter(|i| !test.contains(i)).collect(),
            test: test.filter(|&i| i < n).collect(),
        }
    }
}

/// The initial labeled set: `size` pool rows, uniformly at random, or
/// stratified (as even over the classes as the pool allows; needs labels,
/// which a simulation has).
pub fn seed_set(
    pool: &[usize],
    y: &[usize],
    size: usize,
    stratified: bool,
    seed: u64,
) -> Vec<usize> {
    let mut rng = Rng::new(seed ^ 0x5eed);
    let mut rows = pool.to_vec();
    shuffle(&mut rows, &mut rng);
    if !stratified {
        rows.truncate(size);
        return rows;
    }
    let classes = y.iter().max().map_or(0, |m| m + 1);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for &r in &rows {
        by_class[y[r]].push(r);
    }
    let mut out = Vec::with_capacity(size);
    let mut i = 0;
    while out.len() < size.min(rows.len()) {
        for c in &by_class {
            if let Some(&r) = c.get(i)
                && out.len() < size
            {
                out.push(r);
            }
        }
        i += 1;
    }
    out
}

/// Accuracy and macro-F1 (unweighted mean of per-class F1 over the classes
/// present in either labeling, as scikit-learn's `f1_score(average="macro")`).
pub fn accuracy_and_macro_f1(truth: &[usize], pred: &[usize]) -> (f64, f64) {
    if truth.is_empty() {
        return (0.0, 0.0);
    }
    let k = truth.iter().chain(pred).copied().max().unwrap_or(0) + 1;
    let mut tp = vec![0f64; k];
    let mut fp = vec![0f64; k];
    let mut fn_ = vec![0f64; k];
    let mut correct = 0usize;
    for (&t, &p) in truth.iter().zip(pred) {
        if t == p {
            tp[t] += 1.0;
            correct += 1;
        } else {
            fp[p] += 1.0;
            fn_[t] += 1.0;
        }
    }
    let mut f1 = 0.0;
    let mut present = 0;
    for c in 0..k {
        if tp[c] + fp[c] + fn_[c] == 0.0 {
            continue;
        }
        present += 1;
        let d = 2.0 * tp[c] + fp[c] + fn_[c];
        f1 += if d > 0.0 { 2.0 * tp[c] / d } else { 0.0 };
    }
    (
        correct as f64 / truth.len() as f64,
        f1 / present.max(1) as f64,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stratified_split_holds_out_each_class_fraction() {
        let y: Vec<usize> = (0..1000).map(|i| i % 4).collect();
        let s = Split::stratified(&y, 0.2, 1);
        assert_eq!(s.test.len(), 200);
        for c in 0..4 {
            assert_eq!(s.test.iter().filter(|&&i| y[i] == c).count(), 50);
        }
        let mut all: Vec<usize> = s.pool.iter().chain(&s.test).copied().collect();
        all.sort();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        assert_eq!(Split::stratified(&y, 0.2, 1).test, s.test);
        assert_ne!(Split::stratified(&y, 0.2, 2).test, s.test);
    }

    #[test]
    fn stratified_seed_set_covers_classes() {
        let y: Vec<usize> = (0..500).map(|i| i % 10).collect();
        let pool: Vec<usize> = (0..500).collect();
        let s = seed_set(&pool, &y, 20, true, 3);
        assert_eq!(s.len(), 20);
        for c in 0..10 {
            assert_eq!(s.iter().filter(|&&i| y[i] == c).count(), 2);
        }
    }

    #[test]
    fn macro_f1_matches_hand_computation() {
        // sklearn: f1_score([0,0,1,1,2], [0,1,1,1,0], average="macro") = 0.4222…
        let (acc, f1) = accuracy_and_macro_f1(&[0, 0, 1, 1, 2], &[0, 1, 1, 1, 0]);
        assert!((acc - 0.6).abs() < 1e-12);
        assert!((f1 - (0.5 + 0.8 + 0.0) / 3.0).abs() < 1e-12, "{f1}");
    }
}
