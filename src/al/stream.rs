//! Stream-based selective sampling: instances arrive one at a time; the
//! learner scores each and a decision rule queries its label or discards it
//! for good, under a label budget. Memory stays constant: instances are
//! never stored, only the labeled ones, and at most `max_labeled` of those
//! (the most recent).

use std::collections::VecDeque;
use std::io::BufRead;

use super::Oracle;
use crate::error::{Error, Result};
use crate::learner::{ColumnStats, Mlp, MlpConfig, ScaleKind, Scaler};
use crate::query::Strategy;
use crate::rng::Rng;
use crate::score::{self, ScoreSpec};

/// When to query.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rule {
    /// Query when the uncertainty is at least this.
    Threshold(f64),
    /// Variable uncertainty (Žliobaitė et al. 2014): query when the
    /// uncertainty is at least τ; τ rises by the factor (1 + step) after a
    /// query and falls by (1 − step) after a discard, so the rule spends the
    /// budget on the most uncertain instances it sees lately.
    VariableUncertainty {
        /// The factor's step.
        step: f64,
    },
    /// Query at random with probability `budget` (the baseline).
    Random,
}

impl Rule {
    /// Whether the rule asks for an instance of uncertainty `score`, with
    /// the variable threshold at `tau` and `draw` uniform in [0, 1) (the
    /// budget manager still has the last word).
    pub fn wants(&self, score: f64, tau: f64, draw: f64, budget: f64) -> bool {
        match *self {
            Rule::Threshold(t) => score >= t,
            Rule::VariableUncertainty { .. } => score >= tau,
            Rule::Random => draw < budget,
        }
    }

    /// The rule's name, as `--rules` spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Rule::Threshold(_) => "threshold",
            Rule::VariableUncertainty { .. } => "variable-uncertainty",
            Rule::Random => "random",
        }
    }
}

/// Keeps the fraction of queried instances at most `budget` over every
/// window of `window` consecutive instances: a query is allowed only while
/// the last `window` decisions hold fewer than ⌊budget · window⌋ queries.
/// Over n instances that is at most ⌈n / window⌉ · ⌊budget · window⌋ queries.
#[derive(Clone, Debug)]
pub struct BudgetManager {
    budget: f64,
    window: usize,
    recent: VecDeque<bool>,
    in_window: usize,
}

impl BudgetManager {
    /// A tracker allowing `budget` of the instances, over a window of `window`.
    pub fn new(budget: f64, window: usize) -> Self {
        BudgetManager {
            budget,
            window: window.max(1),
            recent: VecDeque::with_capacity(window.max(1)),
            in_window: 0,
        }
    }

    fn cap(&self) -> usize {
        (self.budget * self.window as f64).floor() as usize
    }

    /// Whether one more query fits.
    pub fn allows(&self) -> bool {
        // The oldest decision leaves the window when this one enters.
        let leaving = self.recent.len() == self.window && self.recent.front() == Some(&true);
        self.in_window - (leaving as usize) < self.cap()
    }

    /// Records one instance, queried or not.
    pub fn record(&mut self, queried: bool) {
        if self.recent.len() == self.window && self.recent.pop_front() == Some(true) {
            self.in_window -= 1;
        }
        self.recent.push_back(queried);
        self.in_window += queried as usize;
    }
}

/// The uncertainty a stream rule thresholds, in [0, 1], higher = more
/// informative: least confidence 1 − p(1); margin 1 − (p(1) − p(2));
/// entropy H / ln C; ratio p(2) / p(1); random: uniform from the seed.
pub fn uncertainty(strategy: Strategy, p: &[f32], index: u64, seed: u64) -> f64 {
    let probs: Vec<f64> = p.iter().map(|&x| x as f64).collect();
    let spec = ScoreSpec {
        strategy,
        log_base: crate::query::LogBase::E,
        seed,
    };
    let s = score::canonical_score(&spec, &probs, index);
    match strategy {
        Strategy::Margin => 1.0 - s,
        Strategy::Entropy => s / (p.len().max(2) as f64).ln(),
        _ => s,
    }
}

/// One stream-based run.
#[derive(Clone, Debug)]
pub struct StreamConfig {
    /// The uncertainty the rules compare.
    pub strategy: Strategy,
    /// When to query.
    pub rule: Rule,
    /// Fraction of instances that may be queried.
    pub budget: f64,
    /// Instances the budget is tracked over.
    pub window: usize,
    /// Labels gathered (budget permitting) before the first model exists.
    pub seed_size: usize,
    /// Retrain after this many new labels.
    pub update_every: usize,
    /// Continue training the last model instead of starting afresh.
    pub warm_start: bool,
    /// The learner.
    pub mlp: MlpConfig,
    /// The most recent labeled instances kept for training.
    pub max_labeled: usize,
    /// Evaluate on the test set every this many instances.
    pub checkpoint_every: usize,
    /// Seeds the learner and the random rule.
    pub seed: u64,
    /// Feature scaling: `Fixed` statistics (taken from a saved model), or
    /// estimated from every instance seen before the first model is
    /// trained (the warm-up window), then frozen, so warm-started models
    /// and checkpoints all see the same transform.
    pub scaling: StreamScaling,
}

/// Where a stream's feature scaling comes from.
#[derive(Clone, Debug, Default)]
pub enum StreamScaling {
    /// No scaling.
    #[default]
    None,
    /// These statistics, fixed.
    Fixed(Scaler),
    /// Estimated on the warm-up window.
    WarmUp(ScaleKind),
}

/// One instance's fate.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The instance's position in the stream.
    pub index: u64,
    /// Its uncertainty when it arrived.
    pub score: f64,
    /// Whether it was queried.
    pub queried: bool,
}

/// The prequential picture: labels spent against test accuracy.
#[derive(Clone, Debug, Default)]
pub struct StreamSummary {
    /// Instances seen.
    pub seen: u64,
    /// Instances queried.
    pub queries: u64,
    /// (instances seen, labels spent, test accuracy)
    pub checkpoints: Vec<(u64, u64, f64)>,
    /// Test accuracy at the end, when there is a test set.
    pub final_accuracy: Option<f64>,
}

/// A held-out test set for the checkpoints.
#[derive(Clone, Copy)]
pub struct TestSet<'a> {
    /// Row-major features.
    pub x: &'a [f32],
    /// Their labels.
    pub y: &'a [usize],
}

/// The stream's learner as it goes: the budget and threshold, the labeled
/// window, the model, the scaling, the running summary.
struct Learner<'c> {
    cfg: &'c StreamConfig,
    dim: usize,
    classes: usize,
    rng: Rng,
    budget: BudgetManager,
    tau: f64,
    labeled_x: VecDeque<Vec<f32>>,
    labeled_y: VecDeque<usize>,
    model: Option<Mlp>,
    since_update: usize,
    warmup: Option<ColumnStats>,
    scaler: Option<Scaler>,
    summary: StreamSummary,
}

impl<'c> Learner<'c> {
    fn new(cfg: &'c StreamConfig, dim: usize, classes: usize) -> Self {
        Learner {
            cfg,
            dim,
            classes,
            rng: Rng::new(cfg.seed ^ 0x0057_7265_616d),
            budget: BudgetManager::new(cfg.budget, cfg.window),
            // The variable threshold starts at the top; it falls until
            // instances get queried, then settles where the budget is spent.
            tau: 1.0,
            labeled_x: VecDeque::new(),
            labeled_y: VecDeque::new(),
            model: None,
            since_update: 0,
            warmup: match cfg.scaling {
                StreamScaling::WarmUp(_) => Some(ColumnStats::new(dim)),
                _ => None,
            },
            scaler: match &cfg.scaling {
                StreamScaling::Fixed(s) => Some(s.clone()),
                _ => None,
            },
            summary: StreamSummary::default(),
        }
    }

    /// Whether instance `id` is queried: its uncertainty under the current
    /// model, the rule's draw, and the budget.
    fn decide(&mut self, id: u64, x: &[f32]) -> Result<Decision> {
        if self.model.is_none()
            && let Some(w) = &mut self.warmup
        {
            w.push(x);
        }
        let cfg = self.cfg;
        let score = match &self.model {
            Some(m) => uncertainty(cfg.strategy, &m.predict_proba(x)?, id, cfg.seed),
            None => 1.0,
        };
        let draw = self.rng.uniform();
        let wants = if self.model.is_none() {
            self.labeled_y.len() < cfg.seed_size.max(1)
        } else {
            cfg.rule.wants(score, self.tau, draw, cfg.budget)
        };
        let queried = wants && self.budget.allows();
        self.budget.record(queried);
        if self.model.is_some()
            && let Rule::VariableUncertainty { step } = cfg.rule
        {
            self.tau *= if queried { 1.0 + step } else { 1.0 - step };
        }
        Ok(Decision {
            index: id,
            score,
            queried,
        })
    }

    /// Asks the oracle for `x`'s label, keeps it in the window, and
    /// retrains when the window is ready and the update interval has come.
    fn learn(&mut self, id: u64, x: Vec<f32>, oracle: &mut dyn Oracle) -> Result<()> {
        let label = oracle.label_instances(&[id as usize], &[&x])?[0];
        if label >= self.classes {
            return Err(Error::Config(format!(
                "the oracle gave class {label} for {id}; classes are 0..{}",
                self.classes
            )));
        }
        self.summary.queries += 1;
        self.labeled_x.push_back(x);
        self.labeled_y.push_back(label);
        if self.labeled_y.len() > self.cfg.max_labeled.max(1) {
            self.labeled_x.pop_front();
            self.labeled_y.pop_front();
        }
        self.since_update += 1;
        let ys = &self.labeled_y;
        let ready = ys.len() >= self.cfg.seed_size.max(2) && ys.iter().any(|&l| l != ys[0]);
        if ready && (self.model.is_none() || self.since_update >= self.cfg.update_every.max(1)) {
            self.retrain()?;
        }
        Ok(())
    }

    /// Fits the model (last one continued, or a fresh one) on the window.
    fn retrain(&mut self) -> Result<()> {
        let cfg = self.cfg;
        let flat: Vec<f32> = self.labeled_x.iter().flatten().copied().collect();
        let ys: Vec<usize> = self.labeled_y.iter().copied().collect();
        if let (Some(w), StreamScaling::WarmUp(kind)) = (self.warmup.take(), &cfg.scaling) {
            self.scaler = Some(Scaler::from_stats(*kind, &w)?);
        }
        let mut m = match (cfg.warm_start, self.model.take()) {
            (true, Some(m)) => m,
            _ => Mlp::new(
                self.dim,
                self.classes,
                MlpConfig {
                    seed: cfg.mlp.seed ^ self.summary.queries,
                    ..cfg.mlp.clone()
                },
            )?
            .with_scaler(self.scaler.clone())?,
        };
        m.fit(&flat, &ys)?;
        self.model = Some(m);
        self.since_update = 0;
        Ok(())
    }

    /// Test accuracy of the current model, when there are both.
    fn evaluate(&self, test: &Option<TestSet>) -> Result<Option<f64>> {
        match (&self.model, test) {
            (Some(m), Some(t)) => Ok(Some(m.accuracy(t.x, t.y)?)),
            _ => Ok(None),
        }
    }
}

/// Runs the stream: `source` yields (id, features); labels come from
/// `oracle.label_instances`; each decision goes to `on_decision`.
pub fn run(
    source: &mut dyn Iterator<Item = Result<(u64, Vec<f32>)>>,
    dim: usize,
    classes: usize,
    cfg: &StreamConfig,
    oracle: &mut dyn Oracle,
    test: Option<TestSet>,
    on_decision: &mut dyn FnMut(&Decision) -> Result<()>,
) -> Result<StreamSummary> {
    let mut l = Learner::new(cfg, dim, classes);
    for item in source {
        let (id, x) = item?;
        if x.len() != dim {
            return Err(Error::Config(format!(
                "instance {id} has {} features, expected {dim}",
                x.len()
            )));
        }
        l.summary.seen += 1;
        let d = l.decide(id, &x)?;
        on_decision(&d)?;
        if d.queried {
            l.learn(id, x, oracle)?;
        }
        if cfg.checkpoint_every > 0
            && l.summary.seen.is_multiple_of(cfg.checkpoint_every as u64)
            && let Some(acc) = l.evaluate(&test)?
        {
            let s = &mut l.summary;
            s.checkpoints.push((s.seen, s.queries, acc));
        }
    }
    let final_accuracy = l.evaluate(&test)?;
    let mut summary = l.summary;
    summary.final_accuracy = final_accuracy;
    if let Some(acc) = final_accuracy {
        summary
            .checkpoints
            .push((summary.seen, summary.queries, acc));
    }
    Ok(summary)
}

/// Stream items from CSV lines (numbers separated by commas) or JSON lines
/// (`[…]` or `{"features": […]}`), one instance per line; the id is the
/// line's position among instances. Blank lines are skipped; a header line
/// of non-numbers is allowed as the first line of CSV.
pub struct TextStream<R: BufRead> {
    reader: R,
    line: u64,
    next_id: u64,
    dim: Option<usize>,
    name: String,
}

impl<R: BufRead> TextStream<R> {
    /// A stream of CSV lines from `reader`, named `name` in errors.
    pub fn new(reader: R, name: &str) -> Self {
        TextStream {
            reader,
            line: 0,
            next_id: 0,
            dim: None,
            name: name.into(),
        }
    }

    fn bad(&self, reason: String) -> Error {
        Error::BadLine {
            path: self.name.clone().into(),
            line: self.line,
            reason,
        }
    }

    fn parse(&mut self, t: &str) -> Result<Option<Vec<f32>>> {
        let values: Vec<f32> = if t.starts_with('[') || t.starts_with('{') {
            let v: serde_json::Value =
                serde_json::from_str(t).map_err(|e| self.bad(format!("invalid JSON: {e}")))?;
            let arr = match &v {
                serde_json::Value::Array(a) => a,
                serde_json::Value::Object(o) => o
                    .get("features")
                    .and_then(|f| f.as_array())
                    .ok_or_else(|| self.bad("a JSON object needs a \"features\" array".into()))?,
                _ => return Err(self.bad("expected a JSON array of numbers".into())),
            };
            arr.iter()
                .enumerate()
                .map(|(j, x)| {
                    x.as_f64()
                        .map(|f| f as f32)
                        .ok_or_else(|| self.bad(format!("value {j} is not a number: {x}")))
                })
                .collect::<Result<_>>()?
        } else {
            let fields: Vec<&str> = t.split(',').map(str::trim).collect();
            let parsed: Vec<std::result::Result<f32, _>> =
                fields.iter().map(|f| f.parse::<f32>()).collect();
            if self.line == 1 && parsed.iter().all(|p| p.is_err()) {
                return Ok(None); // a header
            }
            let mut v = Vec::with_capacity(fields.len());
            for (j, (f, p)) in fields.iter().zip(parsed).enumerate() {
                v.push(p.map_err(|_| self.bad(format!("value {j}: {f:?} is not a number")))?);
            }
            v
        };
        if let Some(j) = values.iter().position(|x| !x.is_finite()) {
            return Err(self.bad(format!("value {j} is {}", values[j])));
        }
        match self.dim {
            None => self.dim = Some(values.len()),
            Some(d) if d != values.len() => {
                return Err(self.bad(format!("{} values, earlier lines have {d}", values.len())));
            }
            _ => {}
        }
        Ok(Some(values))
    }
}

impl<R: BufRead> Iterator for TextStream<R> {
    type Item = Result<(u64, Vec<f32>)>;
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let mut s = String::new();
            self.line += 1;
            match self.reader.read_line(&mut s) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => return Some(Err(self.bad(format!("cannot read: {e}")))),
            }
            let t = s.trim();
            if t.is_empty() {
                continue;
            }
            match self.parse(t) {
                Ok(None) => continue,
                Ok(Some(v)) => {
                    let id = self.next_id;
                    self.next_id += 1;
                    return Some(Ok((id, v)));
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// Stream items from the rows of an N x D .npy (float32, float16, float64 or
/// uint8 images scaled to [0, 1]), memory-mapped and read in order; rows in
/// `skip` (a held-out test set) are left out. Ids are the row numbers.
pub struct NpyStream {
    map: memmap2::Mmap,
    dtype: crate::pool::npy::DType,
    offset: usize,
    rows: usize,
    dim: usize,
    next: usize,
    skip: std::ops::Range<usize>,
}

impl NpyStream {
    /// The rows of a .npy file in order, skipping the rows in `skip`.
    pub fn open(path: &std::path::Path, skip: std::ops::Range<usize>) -> Result<NpyStream> {
        use crate::pool::npy::DType;
        let (map, h) = crate::pool::map_npy(
            path,
            &[DType::F32, DType::F16, DType::F64, DType::U8],
            "stream features must be float32, float16, float64 or uint8",
        )?;
        let [rows, dim] = h.shape[..] else {
            return Err(Error::WrongRank {
                path: path.into(),
                shape: h.shape,
                expected: 2,
            });
        };
        Ok(NpyStream {
            map,
            dtype: h.dtype,
            offset: h.data_offset,
            rows,
            dim,
            next: 0,
            skip,
        })
    }

    /// Features per row.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Whether the rows are uint8 pixels (read as [0, 1]).
    pub fn unit_images(&self) -> bool {
        self.dtype == crate::pool::npy::DType::U8
    }

    /// Row `r` as f32.
    pub fn row(&self, r: usize) -> Vec<f32> {
        let size = self.dtype.size();
        let a = self.offset + r * self.dim * size;
        crate::pool::npy::features_f32(self.dtype, &self.map[a..a + self.dim * size])
    }
}

impl Iterator for NpyStream {
    type Item = Result<(u64, Vec<f32>)>;
    fn next(&mut self) -> Option<Self::Item> {
        while self.skip.contains(&self.next) {
            self.next += 1;
        }
        if self.next >= self.rows {
            return None;
        }
        let r = self.next;
        self.next += 1;
        let v = self.row(r);
        if let Some(j) = v.iter().position(|x| !x.is_finite()) {
            return Some(Err(Error::Config(format!(
                "row {r}: value {j} is {}",
                v[j]
            ))));
        }
        Some(Ok((r as u64, v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_manager_caps_every_window() {
        let mut b = BudgetManager::new(0.1, 100);
        let mut decisions = Vec::new();
        for _ in 0..10_000 {
            let q = b.allows();
            b.record(q);
            decisions.push(q);
        }
        // Greedy: it queries whenever allowed, and still never exceeds 10
        // in any 100 consecutive instances.
        for w in decisions.windows(100) {
            assert!(w.iter().filter(|&&q| q).count() <= 10);
        }
        assert_eq!(decisions.iter().filter(|&&q| q).count(), 1000);
    }

    #[test]
    fn rules_decide_on_constructed_scores() {
        let t = Rule::Threshold(0.5);
        let got: Vec<bool> = [0.1, 0.4999, 0.5, 0.9]
            .iter()
            .map(|&s| t.wants(s, 0.0, 0.0, 0.1))
            .collect();
        assert_eq!(got, [false, false, true, true]);
        let v = Rule::VariableUncertainty { step: 0.01 };
        assert!(v.wants(0.3, 0.3, 0.9, 0.1) && !v.wants(0.29, 0.3, 0.0, 0.1));
        let r = Rule::Random;
        assert!(r.wants(0.0, 1.0, 0.05, 0.1) && !r.wants(1.0, 0.0, 0.15, 0.1));
    }

    #[test]
    fn uncertainty_orients_every_strategy() {
        let d1 = [0.9f32, 0.09, 0.01];
        let d2 = [0.2f32, 0.5, 0.3];
        for s in [
            Strategy::LeastConfidence,
            Strategy::Margin,
            Strategy::Entropy,
            Strategy::Ratio,
        ] {
            let (u1, u2) = (uncertainty(s, &d1, 0, 0), uncertainty(s, &d2, 1, 0));
            assert!(
                u2 > u1 && (0.0..=1.0).contains(&u1) && (0.0..=1.0).contains(&u2),
                "{s}"
            );
        }
    }

    #[test]
    fn text_stream_reports_bad_lines() {
        let input = "a,b,c\n0.1,0.2,0.3\n\n0.4,0.5\n";
        let mut s = TextStream::new(input.as_bytes(), "<stdin>");
        assert_eq!(s.next().unwrap().unwrap(), (0, vec![0.1, 0.2, 0.3]));
        let e = s.next().unwrap().unwrap_err().to_string();
        assert!(e.contains("line 4") && e.contains("2 values"), "{e}");
        let mut s = TextStream::new("0.1,nan\n".as_bytes(), "<stdin>");
        let e = s.next().unwrap().unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("NaN"), "{e}");
        let mut s = TextStream::new("[1, 2]\n{\"features\": [3, \"x\"]}\n".as_bytes(), "<stdin>");
        assert_eq!(s.next().unwrap().unwrap(), (0, vec![1.0, 2.0]));
        let e = s.next().unwrap().unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("not a number"), "{e}");
        let mut s = TextStream::new("1,2\n3,abc\n".as_bytes(), "<stdin>");
        s.next();
        let e = s.next().unwrap().unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("\"abc\""), "{e}");
    }
}
