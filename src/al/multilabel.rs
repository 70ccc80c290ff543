//! Simulated active learning for multi-label pools: the loop of `simulate
//! --task multilabel`. A seeded split holds out test rows; each round
//! trains the multi-label MLP (sigmoid outputs, binary cross-entropy) on
//! the labeled rows, measures micro- and macro-F1 on the test rows
//! (a label is predicted when σ > 0.5), and asks the door for the next
//! batch by `random` or a multi-label strategy over the pool's sigmoid
//! outputs (`cardinality` and `adaptive` read the labeled rows' mean label
//! count). Every strategy of a repeat starts from the same split and the
//! same first labels, so the curves pair up.
//!
//! [`MultiLabelData::mnist_pairs`] builds the benchmark set: two
//! MNIST digits side by side, labeled with the set of digits shown.

use std::path::Path;
use std::time::Instant;

use crate::al::dataset::Dataset;
use crate::al::measured::{self, Round, Run, split};
use crate::api::{Inputs, Run as DoorRun};
use crate::backend::Progress;
use crate::error::{Error, Result};
use crate::features::FeaturePool;
use crate::job::Job;
use crate::learner::{Mlp, MlpConfig, Scaler};
use crate::pool::npy::{self, DType};
use crate::pool::{Exclusions, Pool};
use crate::query::{InputForm, Method, MultiLabel, Query, Strategy};
use crate::rng::splitmix64;

/// A multi-label dataset: N x D features and N x L 0/1 labels.
pub struct MultiLabelData {
    x: Vec<f32>,
    /// N x L, row-major, each 0 or 1.
    y: Vec<f32>,
    dim: usize,
    labels: usize,
    /// uint8 pixels mapped to [0, 1]: `auto` scaling leaves them so.
    unit_images: bool,
    /// For reports.
    pub name: String,
}

impl MultiLabelData {
    /// Rows `x` (N x `dim`) with 0/1 labels `y` (N x `labels`); a value
    /// that is not 0 or 1, or a feature that is not finite, is an error
    /// naming its row.
    pub fn new(
        x: Vec<f32>,
        y: Vec<f32>,
        (dim, labels): (usize, usize),
        name: impl Into<String>,
    ) -> Result<Self> {
        let n = y.len() / labels.max(1);
        if dim == 0 || labels == 0 || n == 0 || x.len() != n * dim || y.len() != n * labels {
            return Err(Error::Config(format!(
                "{} feature values and {} label values do not make rows of {dim} features and {labels} labels",
                x.len(),
                y.len()
            )));
        }
        if let Some(at) = y.iter().position(|&v| v != 0.0 && v != 1.0) {
            return Err(Error::Config(format!(
                "row {}, label {}: {} is not 0 or 1; multi-label ground truth is an N x L 0/1 matrix",
                at / labels,
                at % labels,
                y[at]
            )));
        }
        if let Some(at) = x.iter().position(|v| !v.is_finite()) {
            return Err(Error::Config(format!(
                "row {}: feature {} is {}; features must be finite",
                at / dim,
                at % dim,
                x[at]
            )));
        }
        Ok(MultiLabelData {
            x,
            y,
            dim,
            labels,
            unit_images: false,
            name: name.into(),
        })
    }

    /// Features from `features` (N x D .npy: float32, float16, float64 or
    /// uint8 images read as [0, 1]) and N x L ground truth from `labels`
    /// (.npy of any integer or float dtype, each value 0 or 1).
    pub fn from_npy(features: &Path, labels: &Path) -> Result<Self> {
        let pool = FeaturePool::open(&[features])?;
        let (n, dim) = (pool.rows() as usize, pool.dim());
        pool.check_all_finite()?;
        let x = pool.gather(&(0..n).collect::<Vec<_>>())?;
        let (y, width) = truth_from_npy(labels, n, features)?;
        let name = measured::dataset_name(features);
        Ok(MultiLabelData {
            unit_images: pool.unit_images(),
            ..MultiLabelData::new(x, y, (dim, width), name)?
        })
    }

    /// `n` pairs of the images of `digits` (square, one class each) side
    /// by side, left then right in every pixel row (28 x 56 for MNIST),
    /// each labeled with the set of the two classes (one label when they
    /// agree). Pair i takes images `splitmix64(seed ^ 2i) mod N` and
    /// `splitmix64(seed ^ (2i + 1)) mod N`: the same seed, the same set.
    pub fn mnist_pairs(digits: &Dataset, n: usize, seed: u64) -> Result<Self> {
        let side = (digits.dim as f64).sqrt().round() as usize;
        let rows = digits.rows() as u64;
        if side * side != digits.dim || rows == 0 || n == 0 {
            return Err(Error::Config(format!(
                "pairs need square images and at least one pair: got {} rows of {} pixels, {n} pairs",
                rows, digits.dim
            )));
        }
        let pick = |j: u64| (splitmix64(seed ^ j) % rows) as usize;
        let (mut x, mut y) = (
            Vec::with_capacity(n * 2 * digits.dim),
            vec![0f32; n * digits.classes],
        );
        for i in 0..n {
            let (a, b) = (pick(2 * i as u64), pick(2 * i as u64 + 1));
            let (ra, rb) = (digits.row(a), digits.row(b));
            for line in 0..side {
                x.extend_from_slice(&ra[line * side..(line + 1) * side]);
                x.extend_from_slice(&rb[line * side..(line + 1) * side]);
            }
            for c in [digits.y[a], digits.y[b]] {
                y[i * digits.classes + c] = 1.0;
            }
        }
        let name = format!("{} pairs", digits.name);
        Ok(MultiLabelData {
            unit_images: digits.unit_images,
            ..MultiLabelData::new(x, y, (2 * digits.dim, digits.classes), name)?
        })
    }

    /// Rows N.
    pub fn rows(&self) -> usize {
        self.y.len() / self.labels
    }

    /// Features per row.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Labels per row.
    pub fn labels(&self) -> usize {
        self.labels
    }

    /// The features (N x D) and the ground truth (N x L), row-major.
    pub fn arrays(&self) -> (&[f32], &[f32]) {
        (&self.x, &self.y)
    }

    /// A multi-label model trained on every row ([`Mlp::fit_multilabel`]),
    /// with `config.scale`'s scaler fitted on the rows.
    pub fn train(&self, config: MlpConfig) -> Result<(Mlp, crate::learner::TrainReport)> {
        let scaler = match config.scale.resolve(self.unit_images) {
            Some(kind) => Some(Scaler::fit(kind, &self.x, self.dim, None)?),
            None => None,
        };
        let mut m = Mlp::new_multilabel(self.dim, self.labels, config)?.with_scaler(scaler)?;
        let report = m.fit_multilabel(&self.x, &self.y)?;
        Ok((m, report))
    }

    /// The features and labels of `rows`.
    fn gather(&self, rows: &[usize]) -> (Vec<f32>, Vec<f32>) {
        gather(&self.x, &self.y, (self.dim, self.labels), rows)
    }
}

/// The N x L 0/1 ground truth in `path`, one row per row of `features`.
fn truth_from_npy(path: &Path, n: usize, features: &Path) -> Result<(Vec<f32>, usize)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let h = npy::parse_header(
        path,
        &bytes,
        &[
            DType::U8,
            DType::I32,
            DType::I64,
            DType::U32,
            DType::U64,
            DType::F32,
            DType::F64,
        ],
        "multi-label ground truth must be an N x L array of integers or floats, each 0 or 1",
    )?;
    let [rows, width] = h.shape[..] else {
        return Err(Error::WrongRank {
            path: path.into(),
            shape: h.shape,
            expected: 2,
        });
    };
    if rows != n || width == 0 {
        return Err(Error::Config(format!(
            "{}: {rows} x {width} labels for the {n} rows of {}",
            path.display(),
            features.display()
        )));
    }
    let size = h.dtype.size();
    let data = &bytes[h.data_offset..];
    if data.len() < n * width * size {
        return Err(Error::Truncated {
            path: path.into(),
            expected: (n * width * size) as u64,
            actual: data.len() as u64,
        });
    }
    let mut y = Vec::with_capacity(n * width);
    for (i, b) in data[..n * width * size].chunks_exact(size).enumerate() {
        let v = match h.dtype {
            DType::F32 | DType::F64 => npy::features_f32(h.dtype, b)[0] as f64,
            t => npy::int_at(t, b) as f64,
        };
        if v != 0.0 && v != 1.0 {
            return Err(Error::Config(format!(
                "{}: row {}, label {}: {v} is not 0 or 1",
                path.display(),
                i / width,
                i % width
            )));
        }
        y.push(v as f32);
    }
    Ok((y, width))
}

/// Several strategies, several seeds each, on one multi-label dataset.
#[derive(Clone, Debug)]
pub struct MultiLabelSim {
    /// `random` and multi-label strategies, which may draw stochastic
    /// batches (`power-mean-entropy`).
    pub strategies: Vec<Method>,
    /// Runs per strategy, with seeds `seed`, `seed + 1`, ...
    pub repeats: usize,
    /// The first repeat's seed.
    pub seed: u64,
    /// The fraction of rows held out for testing (seeded).
    pub test_fraction: f64,
    /// Labels drawn at random before the first round.
    pub seed_size: usize,
    /// Rows labeled per round.
    pub batch_size: usize,
    /// Stop at this many labels.
    pub budget: usize,
    /// The learner (hidden layers, AdamW, epochs, scaling).
    pub mlp: MlpConfig,
}

/// Refuses a strategy the loop cannot run, or an impossible setting.
fn check(cfg: &MultiLabelSim, data: &MultiLabelData) -> Result<()> {
    for m in &cfg.strategies {
        let q = m.query;
        if !matches!(q, Query::Multi(_) | Query::Score(Strategy::Random)) {
            let names: Vec<&str> = MultiLabel::ALL.map(|m| m.name()).to_vec();
            return Err(Error::Config(format!(
                "{q} is not a multi-label strategy; simulate --task multilabel runs random, {}",
                names.join(", ")
            )));
        }
        m.check().map_err(Error::Config)?;
    }
    measured::check_sizes(
        data.rows(),
        cfg.test_fraction,
        cfg.seed_size,
        cfg.batch_size,
    )
}

/// Every (strategy, repeat) run, in parallel; results in a fixed order,
/// `progress` advanced by one as each finishes. A round's metrics are the
/// test micro- and macro-F1 ([`measured::MULTILABEL`]).
pub fn simulate(
    data: &MultiLabelData,
    cfg: &MultiLabelSim,
    progress: &dyn Progress,
) -> Result<Vec<Run>> {
    check(cfg, data)?;
    measured::run_all(&cfg.strategies, cfg.repeats, progress, &|m, repeat| {
        one_run(data, cfg, m, repeat)
    })
}

fn one_run(data: &MultiLabelData, cfg: &MultiLabelSim, m: Method, repeat: usize) -> Result<Run> {
    let seed = cfg.seed + repeat as u64;
    let (pool_rows, test) = split(data.rows(), cfg.test_fraction, seed);
    let (x, y) = data.gather(&pool_rows);
    let scaler = match cfg.mlp.scale.resolve(data.unit_images) {
        Some(kind) => Some(Scaler::fit(kind, &x, data.dim, None)?),
        None => None,
    };
    let (test_x, test_y) = data.gather(&test);
    let mut labeled = measured::seed_rows(pool_rows.len(), cfg.seed_size, seed);
    let mlp = MlpConfig {
        seed,
        ..cfg.mlp.clone()
    };
    let (d, l) = (data.dim, data.labels);
    let mut rounds = Vec::new();
    loop {
        let (lx, ly) = gather(&x, &y, (d, l), &labeled);
        let mut model = Mlp::new_multilabel(d, l, mlp.clone())?.with_scaler(scaler.clone())?;
        model.fit_multilabel(&lx, &ly)?;
        let f1 = f1_scores(&model.predict_proba(&test_x)?, &test_y, l);
        let left = pool_rows.len() - labeled.len();
        let k = cfg
            .batch_size
            .min(cfg.budget.saturating_sub(labeled.len()))
            .min(left);
        let t0 = Instant::now();
        let taken = Exclusions::new(labeled.iter().map(|&r| r as u64).collect());
        let round_seed = seed ^ rounds.len() as u64;
        let picks = match (k, m.query) {
            (0, _) => Vec::new(),
            (_, Query::Multi(q)) => {
                let cardinality = ly.iter().sum::<f32>() as f64 / labeled.len() as f64;
                let probs = model.predict_proba(&x)?;
                let mut job = Job::new(q, InputForm::MultiLabel { logits: false }, k)
                    .seed(round_seed)
                    .exclude(taken);
                job.stochastic = m.drawn();
                select(job, (&probs, l), cardinality)?
            }
            _ => measured::random_picks(pool_rows.len(), &taken, k, round_seed),
        };
        rounds.push(Round {
            labels: labeled.len(),
            metrics: f1,
            select_s: t0.elapsed().as_secs_f64(),
        });
        if picks.is_empty() {
            break;
        }
        labeled.extend(picks);
    }
    Ok(Run {
        name: m.name(),
        repeat,
        rounds,
    })
}

/// The features (`d` wide) and labels (`l` wide) of `rows`.
fn gather(x: &[f32], y: &[f32], (d, l): (usize, usize), rows: &[usize]) -> (Vec<f32>, Vec<f32>) {
    let xs = rows.iter().flat_map(|&r| &x[r * d..(r + 1) * d]);
    let ys = rows.iter().flat_map(|&r| &y[r * l..(r + 1) * l]);
    (xs.copied().collect(), ys.copied().collect())
}

/// The next rows under `job`, a multi-label strategy's (its top k or its
/// stochastic batch), through the door, over the pool's sigmoid outputs
/// (`probs`, `l` wide).
fn select(mut job: Job, (probs, l): (&[f32], usize), cardinality: f64) -> Result<Vec<usize>> {
    let pool = Pool::from_f32(probs, l)?;
    if let Query::Multi(m) = job.query
        && m.needs_cardinality()
    {
        job.label_cardinality = Some(cardinality);
    }
    let sel = crate::api::select(Inputs::probs(&pool), &job, &DoorRun::default())?.selection;
    Ok(sel.indices().into_iter().map(|i| i as usize).collect())
}

/// Micro- and macro-F1 of the predictions `p > 0.5` against the 0/1
/// truth `y` (both n x `l`). Micro-F1 is 2TP / (2TP + FP + FN) over every
/// (row, label); macro-F1 is the mean over labels of each label's F1, a
/// label with no positive truth and no positive prediction scoring 0, as
/// scikit-learn's `f1_score(..., zero_division=0)`.
pub fn f1_scores(p: &[f32], y: &[f32], l: usize) -> [f64; 2] {
    let mut counts = vec![[0u64; 3]; l]; // TP, FP, FN per label
    for (i, (&p, &t)) in p.iter().zip(y).enumerate() {
        let c = &mut counts[i % l];
        match (p > 0.5, t == 1.0) {
            (true, true) => c[0] += 1,
            (true, false) => c[1] += 1,
            (false, true) => c[2] += 1,
            (false, false) => {}
        }
    }
    let f1 = |[tp, fp, fn_]: [u64; 3]| match 2 * tp + fp + fn_ {
        0 => 0.0,
        d => 2.0 * tp as f64 / d as f64,
    };
    let total = counts
        .iter()
        .fold([0u64; 3], |a, c| [a[0] + c[0], a[1] + c[1], a[2] + c[2]]);
    let macro_f1 = counts.iter().map(|&c| f1(c)).sum::<f64>() / l.max(1) as f64;
    [f1(total), macro_f1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f1_matches_hand_counts() {
        // Label 0: TP 1, FP 1, FN 0 → 2/3. Label 1: TP 0, FP 0, FN 1 → 0.
        // Micro: TP 1, FP 1, FN 1 → 2/4.
        let p = [0.9, 0.1, 0.6, 0.4];
        let y = [1.0, 1.0, 0.0, 0.0];
        let [micro, macro_f1] = f1_scores(&p, &y, 2);
        assert!((micro - 0.5).abs() < 1e-12);
        assert!((macro_f1 - 1.0 / 3.0).abs() < 1e-12);
    }
}
