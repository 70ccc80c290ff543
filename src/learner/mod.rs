//! The learner: an MLP classifier trained with AdamW on minibatches, with
//! optional early stopping on a validation slice of the labeled set.
//! Everything random (initial weights, shuffling, dropout masks, the
//! validation slice) comes from the seed, so training is deterministic.
//!
//! Two engines run the same model: `fused.rs` (the default: f32 kernels over
//! `gemm`, nothing allocated per step) and [`mod@reference`] (candle's ops and
//! autograd, candle-nn's AdamW), which the fused one is tested against.
//! Models are stored as safetensors through candle either way.

pub mod committee;
pub(crate) mod fused;
pub mod reference;
pub mod regressor;
pub mod scale;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::error::{Error, Result};
use crate::rng::Rng;
pub use committee::Committee;
pub use fused::McPass;
use reference::ce;
pub use scale::{ColumnStats, Scale, ScaleKind, Scaler};

/// Inference runs rows in tiles of this many, and a row's probabilities
/// are the same bits in any full tile; a short tile (the tail of a matrix)
/// may differ in the last bit, since the matrix products pick another
/// kernel. Callers that split a pool into blocks and must reproduce
/// `predict_proba` over the whole of it use blocks of a multiple of this.
pub const TILE_ROWS: usize = fused::BLOCK_ROWS;

/// Which implementation trains and runs the model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Engine {
    /// Fused f32 kernels: the fast path.
    #[default]
    Fused,
    /// candle's ops, autograd and AdamW: the reference.
    Candle,
}

impl Engine {
    /// The engine's name, as `--engine` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Fused => "fused",
            Engine::Candle => "candle",
        }
    }
}

/// How to build and train the MLP.
#[derive(Clone, Debug, PartialEq)]
pub struct MlpConfig {
    /// Hidden layer widths, input side first (empty: a linear model).
    pub hidden: Vec<usize>,
    /// Dropout probability after each hidden layer (0 = none).
    pub dropout: f32,
    /// AdamW's learning rate.
    pub lr: f64,
    /// AdamW's decoupled weight decay.
    pub weight_decay: f64,
    /// Rows per minibatch.
    pub batch_size: usize,
    /// Epochs to train, raised so that at least `min_steps` gradient steps
    /// are taken: a handful of labels needs more passes, not fewer steps.
    pub epochs: usize,
    /// Epochs are raised until training takes at least this many steps.
    pub min_steps: usize,
    /// Early stopping: the fraction of the labeled set held out for
    /// validation (used once there are at least 50 labels; 0 = never, the
    /// default, since a slice of a few hundred labels is too noisy to stop
    /// on), and how many evaluations without improvement to tolerate.
    pub val_fraction: f64,
    /// Evaluations without a validation gain before stopping early.
    pub patience: usize,
    /// Weight the loss by inverse class frequency.
    pub class_weights: bool,
    /// Seeds the initial weights, shuffling and dropout.
    pub seed: u64,
    /// The fused f32 kernels (default) or candle's autograd.
    pub engine: Engine,
    /// How inputs are scaled; the statistics themselves are fitted on the
    /// pool by whoever builds the model ([`Mlp::with_scaler`]).
    pub scale: Scale,
}

impl Default for MlpConfig {
    fn default() -> Self {
        MlpConfig {
            hidden: vec![256],
            dropout: 0.0,
            lr: 2e-3,
            weight_decay: 1e-4,
            batch_size: 32,
            epochs: 20,
            min_steps: 300,
            val_fraction: 0.0,
            patience: 5,
            class_weights: false,
            seed: 0,
            engine: Engine::Fused,
            scale: Scale::Auto,
        }
    }
}

/// The model's JSON config file beside its weights (`MODEL.json`).
/// Fields added after the first release default to what older models did.
#[derive(serde::Serialize, serde::Deserialize)]
struct ConfigFile {
    inputs: usize,
    classes: usize,
    hidden: Vec<usize>,
    dropout: f32,
    lr: f64,
    weight_decay: f64,
    batch_size: usize,
    epochs: usize,
    min_steps: usize,
    val_fraction: f64,
    patience: usize,
    #[serde(default)]
    class_weights: bool,
    #[serde(default)]
    seed: u64,
    /// Models saved before engines existed ran the candle ops; the fused
    /// engine computes the same function.
    #[serde(default = "fused_name")]
    engine: String,
    /// Models saved before scaling existed took their inputs as given.
    #[serde(default = "none_name")]
    scale: String,
    #[serde(default)]
    scaler: Option<ScalerMeta>,
    /// Models saved before multi-label models existed were softmax
    /// classifiers.
    #[serde(default = "softmax_name")]
    output: String,
    /// A regressor's targets' mean and standard deviation, which map its
    /// output back to the targets' units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target: Option<[f64; 2]>,
}

impl ConfigFile {
    /// The learner's configuration as saved.
    fn config(&self) -> MlpConfig {
        MlpConfig {
            hidden: self.hidden.clone(),
            dropout: self.dropout,
            lr: self.lr,
            weight_decay: self.weight_decay,
            batch_size: self.batch_size,
            epochs: self.epochs,
            min_steps: self.min_steps,
            val_fraction: self.val_fraction,
            patience: self.patience,
            class_weights: self.class_weights,
            seed: self.seed,
            engine: match self.engine.as_str() {
                "candle" => Engine::Candle,
                _ => Engine::Fused,
            },
            scale: match self.scale.as_str() {
                "standard" => Scale::Standard,
                "minmax" => Scale::MinMax,
                "auto" => Scale::Auto,
                _ => Scale::None,
            },
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ScalerMeta {
    kind: String,
    #[serde(default)]
    constant_columns: Vec<usize>,
}

fn fused_name() -> String {
    Engine::Fused.name().into()
}

fn softmax_name() -> String {
    Output::Softmax.name().into()
}

fn none_name() -> String {
    Scale::None.name().into()
}

/// What a training run did.
#[derive(Clone, Debug, Default)]
pub struct TrainReport {
    /// Epochs run.
    pub epochs: usize,
    /// Gradient steps taken.
    pub steps: usize,
    /// Accuracy on the training rows before and after training.
    pub train_accuracy_before: f64,
    /// Accuracy on the training rows at the end.
    pub train_accuracy: f64,
    /// Whether early stopping ended training.
    pub stopped_early: bool,
}

/// One affine layer, stored as PyTorch and candle store `nn.Linear`.
#[derive(Clone, Debug, PartialEq)]
pub struct Layer {
    /// `[out, inp]`, row-major.
    pub w: Vec<f32>,
    /// Biases, one per output.
    pub b: Vec<f32>,
    /// Inputs of the layer.
    pub inp: usize,
    /// Outputs of the layer.
    pub out: usize,
}

/// What the output layer's values mean.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Output {
    /// One class of C: a softmax row, trained on cross-entropy.
    #[default]
    Softmax,
    /// Any of L labels: an independent sigmoid per label, trained on the
    /// binary cross-entropy summed over the labels (a multi-label model,
    /// whose rows are a `--input multilabel` pool).
    Sigmoid,
    /// A number: one linear output trained on the mean squared error of
    /// standardized targets (the labeled set's mean and population
    /// standard deviation; a constant target's is taken as 1), and mapped
    /// back to the targets' units when it predicts (a regressor).
    Linear,
}

impl Output {
    /// As the model's config file spells it.
    pub fn name(self) -> &'static str {
        match self {
            Output::Softmax => "softmax",
            Output::Sigmoid => "sigmoid",
            Output::Linear => "linear",
        }
    }
}

/// A multilayer perceptron with ReLU hidden layers.
pub struct Mlp {
    config: MlpConfig,
    inputs: usize,
    classes: usize,
    layers: Vec<Layer>,
    scaler: Option<Scaler>,
    output: Output,
    /// A regressor's targets' (mean, standard deviation); (0, 1) otherwise.
    target: (f64, f64),
}

/// A training run's state in whichever engine runs it.
enum Run {
    Fused(fused::Trainer),
    Candle(reference::Trainer),
}

/// Labeled rows (scaled) and their labels.
struct Labeled<'a> {
    x: &'a [f32],
    y: &'a [usize],
    inputs: usize,
}

impl Labeled<'_> {
    /// The rows `idx`, gathered, with their labels.
    fn gather(&self, idx: &[usize]) -> (Vec<f32>, Vec<usize>) {
        let mut xs = Vec::with_capacity(idx.len() * self.inputs);
        for &i in idx {
            xs.extend_from_slice(&self.x[i * self.inputs..(i + 1) * self.inputs]);
        }
        (xs, idx.iter().map(|&i| self.y[i]).collect())
    }
}

/// What the epochs train on.
struct Fit<'a> {
    data: &'a Labeled<'a>,
    /// The validation rows and labels (empty: no validation).
    val: (&'a [f32], &'a [usize]),
    /// Each class's loss weight.
    weights: &'a [f32],
}

/// A seeded validation slice once there are enough labels: (validation,
/// training) positions.
fn split_validation(n: usize, fraction: f64, rng: &mut Rng) -> (Vec<usize>, Vec<usize>) {
    let mut order: Vec<usize> = (0..n).collect();
    shuffle(&mut order, rng);
    let n_val = if fraction > 0.0 && n >= 50 {
        ((n as f64 * fraction).round() as usize).clamp(1, n / 2)
    } else {
        0
    };
    let train = order.split_off(n_val);
    (order, train)
}

/// Inverse-frequency class weights over the training rows, or ones.
fn class_weights(cfg: &MlpConfig, train: &[usize], y: &[usize], classes: usize) -> Vec<f32> {
    let mut weights = vec![1f32; classes];
    if cfg.class_weights {
        let mut counts = vec![0usize; classes];
        train.iter().for_each(|&i| counts[y[i]] += 1);
        let seen = counts.iter().filter(|&&c| c > 0).count().max(1) as f32;
        for (w, &c) in weights.iter_mut().zip(&counts) {
            *w = if c > 0 {
                train.len() as f32 / (seen * c as f32)
            } else {
                0.0
            };
        }
    }
    weights
}

/// Fresh layers `inputs → hidden… → outputs` with PyTorch's default
/// initialization (U(−1/√fan_in, 1/√fan_in) for weights and biases), from
/// the seed.
pub(crate) fn init_layers(
    inputs: usize,
    outputs: usize,
    hidden: &[usize],
    seed: u64,
) -> Vec<Layer> {
    let mut rng = Rng::new(seed ^ 0x006d_6c70);
    let mut dims = vec![inputs];
    dims.extend(hidden);
    dims.push(outputs);
    dims.windows(2)
        .map(|d| {
            let (inp, out) = (d[0], d[1]);
            let bound = 1.0 / (inp as f64).sqrt();
            let mut uni = |n: usize| -> Vec<f32> {
                (0..n)
                    .map(|_| ((rng.uniform() * 2.0 - 1.0) * bound) as f32)
                    .collect()
            };
            let w = uni(out * inp);
            Layer {
                w,
                b: uni(out),
                inp,
                out,
            }
        })
        .collect()
}

impl Mlp {
    /// A fresh network with PyTorch's default initialization
    /// (U(−1/√fan_in, 1/√fan_in) for weights and biases), from the seed.
    pub fn new(inputs: usize, classes: usize, config: MlpConfig) -> Result<Mlp> {
        if inputs == 0 || classes < 2 || config.hidden.contains(&0) {
            return Err(Error::Config(format!(
                "an MLP needs at least 1 input, 2 classes and no empty hidden layer, got {inputs} inputs, {classes} classes, hidden {:?}",
                config.hidden
            )));
        }
        if !(0.0..1.0).contains(&config.dropout) {
            return Err(Error::Config(format!(
                "dropout must be in [0, 1), got {}",
                config.dropout
            )));
        }
        let layers = init_layers(inputs, classes, &config.hidden, config.seed);
        Ok(Mlp {
            config,
            inputs,
            classes,
            layers,
            scaler: None,
            output: Output::Softmax,
            target: (0.0, 1.0),
        })
    }

    /// A fresh multi-label network ([`Output::Sigmoid`]) with `labels`
    /// outputs, initialized as [`Mlp::new`] initializes. It trains with
    /// [`Mlp::fit_multilabel`] on the fused kernels.
    pub fn new_multilabel(inputs: usize, labels: usize, config: MlpConfig) -> Result<Mlp> {
        if labels == 0 || config.engine != Engine::Fused {
            return Err(Error::Config(format!(
                "a multi-label MLP needs at least 1 label (got {labels}) and the fused engine (got {})",
                config.engine.name()
            )));
        }
        // `new` checks the rest (2 outputs stand in for its class count).
        let mut m = Mlp::new(inputs, labels.max(2), config)?;
        m.layers = init_layers(inputs, labels, &m.config.hidden, m.config.seed);
        m.classes = labels;
        m.output = Output::Sigmoid;
        Ok(m)
    }

    /// A fresh regressor ([`Output::Linear`]): one output, initialized as
    /// [`Mlp::new`] initializes. It trains with [`Mlp::fit_regression`] on
    /// the fused kernels.
    pub fn new_regressor(inputs: usize, config: MlpConfig) -> Result<Mlp> {
        if config.engine != Engine::Fused {
            return Err(Error::Config(format!(
                "a regression MLP needs the fused engine (got {})",
                config.engine.name()
            )));
        }
        let mut m = Mlp::new(inputs, 2, config)?;
        m.layers = init_layers(inputs, 1, &m.config.hidden, m.config.seed);
        m.classes = 1;
        m.output = Output::Linear;
        Ok(m)
    }

    /// Trains a regressor ([`Mlp::new_regressor`]) from its initial
    /// weights on rows `x` with finite targets `y`, standardized by their
    /// mean and population standard deviation: at least `epochs` epochs
    /// and `min_steps` steps of shuffled minibatches, as
    /// [`Mlp::fit_multilabel`]. Its accuracies are R² on the rows.
    pub fn fit_regression(&mut self, x: &[f32], y: &[f32]) -> Result<TrainReport> {
        let (n, d) = (y.len(), self.inputs);
        if self.output != Output::Linear || n == 0 || x.len() != n * d {
            return Err(Error::Config(format!(
                "fit_regression trains a regressor on {d} features and 1 target a row: got a {} model, {} feature values and {n} targets",
                self.output.name(),
                x.len(),
            )));
        }
        if let Some((i, v)) = y.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(Error::Config(format!(
                "labeled row {i} has target {v}; regression targets must be finite"
            )));
        }
        let mean = y.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        let var = y.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
        let std = if var > 0.0 { var.sqrt() } else { 1.0 };
        let yt: Vec<f32> = y
            .iter()
            .map(|&v| ((v as f64 - mean) / std) as f32)
            .collect();
        let r2 = |m: &Mlp| -> Result<f64> {
            let p = m.predict_proba(x)?;
            let sse: f64 = p
                .iter()
                .zip(y)
                .map(|(p, t)| (*p as f64 - *t as f64).powi(2))
                .sum();
            Ok(1.0 - sse / (var * n as f64).max(f64::MIN_POSITIVE))
        };
        self.target = (mean, std);
        let before = r2(self)?;
        let (layers, epochs, steps) = fused::train_targets(
            d,
            &self.config,
            self.scaler.as_ref(),
            x,
            (&yt, fused::Loss::Mse),
        );
        self.layers = layers;
        Ok(TrainReport {
            epochs,
            steps,
            train_accuracy_before: before,
            train_accuracy: r2(self)?,
            stopped_early: false,
        })
    }

    /// A regressor's outputs, standardized, mapped back to the targets'
    /// units (in f64, then rounded once); other models' are as computed.
    fn finish(&self, out: &mut [f32]) {
        if self.output == Output::Linear {
            let (m, s) = self.target;
            out.iter_mut().for_each(|v| *v = (*v as f64 * s + m) as f32);
        }
    }

    /// Softmax classes, sigmoid labels or a regressor's number.
    pub fn output(&self) -> Output {
        self.output
    }

    /// Trains a multi-label model ([`Mlp::new_multilabel`]) from its
    /// initial weights on rows `x` with 0/1 targets `y` (n x labels,
    /// row-major): at least `epochs` epochs and `min_steps` steps of
    /// shuffled minibatches, as [`Mlp::fit`] without early stopping or
    /// class weights. Its accuracies are the fraction of (row, label)
    /// pairs predicted right (σ > 0.5).
    pub fn fit_multilabel(&mut self, x: &[f32], y: &[f32]) -> Result<TrainReport> {
        let (l, d) = (self.classes, self.inputs);
        let n = y.len() / l;
        if self.output != Output::Sigmoid || n == 0 || y.len() != n * l || x.len() != n * d {
            return Err(Error::Config(format!(
                "fit_multilabel trains a multi-label model on {d} features and {l} 0/1 targets a row: got a {} model, {} feature values and {} targets",
                self.output.name(),
                x.len(),
                y.len()
            )));
        }
        if let Some(at) = y.iter().position(|&v| v != 0.0 && v != 1.0) {
            return Err(Error::Config(format!(
                "labeled row {}, label {}: the target is {}; multi-label targets are 0 or 1",
                at / l,
                at % l,
                y[at]
            )));
        }
        let hamming = |m: &Mlp| -> Result<f64> {
            let p = m.predict_proba(x)?;
            let right = p.iter().zip(y).filter(|(p, t)| (**p > 0.5) == (**t == 1.0));
            Ok(right.count() as f64 / y.len() as f64)
        };
        let before = hamming(self)?;
        let (layers, epochs, steps) = fused::train_targets(
            d,
            &self.config,
            self.scaler.as_ref(),
            x,
            (y, fused::Loss::Bce),
        );
        self.layers = layers;
        Ok(TrainReport {
            epochs,
            steps,
            train_accuracy_before: before,
            train_accuracy: hamming(self)?,
            stopped_early: false,
        })
    }

    /// Features per input row.
    pub fn inputs(&self) -> usize {
        self.inputs
    }
    /// Classes the model predicts.
    pub fn classes(&self) -> usize {
        self.classes
    }
    /// The configuration it was built with.
    pub fn config(&self) -> &MlpConfig {
        &self.config
    }
    /// The input transform, applied before the first layer in training and
    /// in every prediction, and saved with the weights.
    pub fn scaler(&self) -> Option<&Scaler> {
        self.scaler.as_ref()
    }

    /// Sets the input transform (fitted on the pool, see [`scale`]).
    pub fn with_scaler(mut self, scaler: Option<Scaler>) -> Result<Mlp> {
        if let Some(s) = &scaler
            && s.dim() != self.inputs
        {
            return Err(Error::Config(format!(
                "the scaler has {} columns, the model {} inputs",
                s.dim(),
                self.inputs
            )));
        }
        self.scaler = scaler;
        Ok(self)
    }

    /// The parameters, input layer first.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// The parameters to edit, for tests that need particular weights.
    #[cfg(test)]
    pub(crate) fn layers_mut(&mut self) -> &mut [Layer] {
        &mut self.layers
    }

    /// Trains on rows `x` (row-major, `inputs` wide) with labels `y`.
    pub fn fit(&mut self, x: &[f32], y: &[usize]) -> Result<TrainReport> {
        // The fused steps split each product over the cores hundreds of
        // times a second: run the loop on a rayon worker, so a split is a
        // push onto its own queue rather than a hand-off from outside the
        // pool that parks this thread each time (30% slower here).
        rayon::scope(|_| self.fit_in_pool(x, y))
    }

    fn fit_in_pool(&mut self, x: &[f32], y: &[usize]) -> Result<TrainReport> {
        self.check_fit(x, y)?;
        let cfg = self.config.clone();
        let mut rng = Rng::new(cfg.seed ^ 0x0074_7261_696e);
        let mut report = TrainReport {
            train_accuracy_before: self.accuracy(x, y)?,
            ..Default::default()
        };
        // The labeled rows are few next to the pool: scale one copy of them
        // rather than every minibatch of every epoch.
        let scaled = self.scaler.as_ref().map(|s| {
            let mut c = x.to_vec();
            s.apply_in_place(&mut c);
            c
        });
        let data = Labeled {
            x: scaled.as_deref().unwrap_or(x),
            y,
            inputs: self.inputs,
        };
        let (val, mut train) = split_validation(y.len(), cfg.val_fraction, &mut rng);
        let val = data.gather(&val);
        let weights = class_weights(&cfg, &train, y, self.classes);
        let mut run = self.trainer(&cfg, train.len())?;
        let fit = Fit {
            data: &data,
            val: (&val.0, &val.1),
            weights: &weights,
        };
        self.epochs(&cfg, &fit, &mut train, &mut run, &mut rng, &mut report)?;
        report.train_accuracy = self.accuracy(x, y)?;
        Ok(report)
    }

    /// An error unless `x` holds `inputs` features per label and every
    /// label is a class.
    fn check_fit(&self, x: &[f32], y: &[usize]) -> Result<()> {
        match self.output {
            Output::Softmax => {}
            Output::Sigmoid => {
                return Err(Error::Config(
                    "a multi-label model trains on 0/1 label rows (fit_multilabel), not class indices"
                        .into(),
                ));
            }
            Output::Linear => {
                return Err(Error::Config(
                    "a regressor trains on numbers (fit_regression), not class indices".into(),
                ));
            }
        }
        let n = y.len();
        if n == 0 || x.len() != n * self.inputs {
            return Err(Error::Config(format!(
                "fit needs {} features per label, got {} values for {} labels",
                self.inputs,
                x.len(),
                n
            )));
        }
        if let Some(&bad) = y.iter().find(|&&c| c >= self.classes) {
            return Err(Error::Config(format!(
                "label {bad} is outside 0..{}",
                self.classes
            )));
        }
        Ok(())
    }

    /// The engine that runs the steps, batches of at most `rows`.
    fn trainer(&self, cfg: &MlpConfig, rows: usize) -> Result<Run> {
        Ok(match cfg.engine {
            Engine::Fused => Run::Fused(fused::Trainer::new(
                &self.layers,
                cfg.batch_size.max(1).min(rows),
                fused::AdamW::new(cfg.lr, cfg.weight_decay),
                cfg.dropout,
            )),
            Engine::Candle => Run::Candle(reference::Trainer::new(
                &self.layers,
                cfg.lr,
                cfg.weight_decay,
                cfg.dropout,
            )?),
        })
    }

    /// The epochs: shuffled minibatches, validation about 20 times over the
    /// run, early stopping after `patience` checks without a gain, and the
    /// best layers kept.
    fn epochs(
        &mut self,
        cfg: &MlpConfig,
        fit: &Fit,
        train: &mut [usize],
        run: &mut Run,
        rng: &mut Rng,
        report: &mut TrainReport,
    ) -> Result<()> {
        let bs = cfg.batch_size.max(1);
        let batches = train.len().div_ceil(bs);
        let epochs = cfg
            .epochs
            .max(cfg.min_steps.div_ceil(batches.max(1)))
            .max(1);
        let validate = !fit.val.1.is_empty();
        let mut best: (f64, Option<Vec<Layer>>) = (f64::NEG_INFINITY, None);
        let mut since_best = 0;
        let every = (epochs / 20).max(1);
        for epoch in 0..epochs {
            shuffle(train, rng);
            for chunk in train.chunks(bs) {
                let (bx, by) = fit.data.gather(chunk);
                match run {
                    Run::Fused(t) => t.step(&mut self.layers, &bx, &by, fit.weights, rng),
                    Run::Candle(t) => t.step(&bx, &by, fit.weights, rng)?,
                }
                report.steps += 1;
            }
            report.epochs = epoch + 1;
            if validate && ((epoch + 1) % every == 0 || epoch + 1 == epochs) {
                if let Run::Candle(t) = &run {
                    self.layers = t.layers()?;
                }
                // The validation rows are already scaled.
                let acc = self.accuracy_with(fit.val.0, fit.val.1, None)?;
                if acc > best.0 {
                    best = (acc, Some(self.layers.clone()));
                    since_best = 0;
                } else {
                    since_best += 1;
                    if since_best >= cfg.patience {
                        report.stopped_early = true;
                        break;
                    }
                }
            }
        }
        if let Run::Candle(t) = &run {
            self.layers = t.layers()?;
        }
        if let (_, Some(layers)) = best {
            self.layers = layers;
        }
        Ok(())
    }

    /// Class probabilities of the rows of `x`, `progress` getting rows done.
    /// Rows run in blocks of a few hundred, so the only memory that grows
    /// with the row count is the output itself.
    pub fn predict_proba_with(
        &self,
        x: &[f32],
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<f32>> {
        if !x.len().is_multiple_of(self.inputs) {
            return Err(Error::Config(format!(
                "predict needs rows of {} features, got {} values",
                self.inputs,
                x.len()
            )));
        }
        self.predict_impl(x, None, progress, self.scaler.as_ref())
    }

    /// Class probabilities of the listed rows of `x` (a row-major matrix
    /// `inputs` wide), in the order listed, without copying them out first.
    pub fn predict_proba_rows(&self, x: &[f32], rows: &[usize]) -> Result<Vec<f32>> {
        let have = x.len() / self.inputs;
        if let Some(&bad) = rows.iter().find(|&&r| r >= have) {
            return Err(Error::Config(format!(
                "row {bad} is past the end of a {have}-row matrix"
            )));
        }
        self.predict_impl(x, Some(rows), &mut |_| {}, self.scaler.as_ref())
    }

    fn predict_impl(
        &self,
        x: &[f32],
        rows: Option<&[usize]>,
        progress: &mut dyn FnMut(usize),
        scaler: Option<&Scaler>,
    ) -> Result<Vec<f32>> {
        let n = rows.map_or(x.len() / self.inputs, |r| r.len());
        // Progress granularity; also bounds the candle engine's tensors.
        const PART: usize = 1 << 15;
        let mut out = vec![0f32; n * self.classes];
        for (i, oc) in out.chunks_mut(PART * self.classes).enumerate() {
            let (start, count) = (i * PART, oc.len() / self.classes);
            let part_rows = rows.map(|r| &r[start..start + count]);
            let part_x = match rows {
                Some(_) => x,
                None => &x[start * self.inputs..(start + count) * self.inputs],
            };
            match self.config.engine {
                Engine::Fused => {
                    fused::forward_into(&self.layers, part_x, part_rows, scaler, oc, self.head())
                }
                Engine::Candle => {
                    let mut xs: Vec<f32> = match part_rows {
                        Some(r) => r
                            .iter()
                            .flat_map(|&i| &x[i * self.inputs..(i + 1) * self.inputs])
                            .copied()
                            .collect(),
                        None => part_x.to_vec(),
                    };
                    if let Some(s) = scaler {
                        s.apply_in_place(&mut xs);
                    }
                    oc.copy_from_slice(&reference::predict_proba(&self.layers, &xs)?)
                }
            }
            self.finish(oc);
            progress(start + count);
        }
        Ok(out)
    }

    /// The head that makes the outputs' probabilities.
    fn head(&self) -> fused::Head {
        match self.output {
            Output::Softmax => fused::Head::Probs,
            Output::Sigmoid => fused::Head::Sigmoid,
            Output::Linear => fused::Head::Logits,
        }
    }

    /// The last hidden layer's activations (after ReLU) for the listed
    /// rows of `x`, [`Mlp::embed_width`] wide: the embedding batch-aware
    /// strategies measure distances in. A network without hidden layers
    /// embeds a row as its scaled features.
    pub fn embed_rows(&self, x: &[f32], rows: &[usize]) -> Result<Vec<f32>> {
        let have = x.len() / self.inputs;
        if let Some(&bad) = rows.iter().find(|&&r| r >= have) {
            return Err(Error::Config(format!(
                "row {bad} is past the end of a {have}-row matrix"
            )));
        }
        let mut out = vec![0f32; rows.len() * self.embed_width()];
        fused::forward_into(
            &self.layers,
            x,
            Some(rows),
            self.scaler.as_ref(),
            &mut out,
            fused::Head::Embed,
        );
        Ok(out)
    }

    /// [`Mlp::embed_rows`] for every row of `x`.
    pub fn embed(&self, x: &[f32]) -> Result<Vec<f32>> {
        if !x.len().is_multiple_of(self.inputs) {
            return Err(Error::Config(format!(
                "embed needs rows of {} features, got {} values",
                self.inputs,
                x.len()
            )));
        }
        let rows: Vec<usize> = (0..x.len() / self.inputs).collect();
        self.embed_rows(x, &rows)
    }

    /// The width of [`Mlp::embed_rows`]' rows.
    pub fn embed_width(&self) -> usize {
        fused::embed_width(&self.layers)
    }

    /// Class probabilities of every row of `x`, row-major.
    pub fn predict_proba(&self, x: &[f32]) -> Result<Vec<f32>> {
        self.predict_proba_with(x, &mut |_| {})
    }

    /// Class probabilities of `out.len() / classes` rows that `fill`
    /// converts itself, a tile of rows at a time, in parallel with the
    /// matrix products of other tiles: `fill(first, count, buf)` appends the
    /// unscaled f32 rows `first..first + count` to `buf`, or returns them
    /// in place (the model's scaler is applied here). The same bits as [`Mlp::predict_proba`] of
    /// those rows; the first error in row order is returned.
    pub fn predict_proba_filled<'a>(
        &self,
        out: &mut [f32],
        fill: &fused::FillRows<'a, Error>,
    ) -> Result<()> {
        let n = out.len() / self.classes;
        match self.config.engine {
            Engine::Fused => {
                fused::forward_filled(&self.layers, self.scaler.as_ref(), out, fill, self.head())?;
                self.finish(out);
                Ok(())
            }
            Engine::Candle => {
                let mut x = Vec::with_capacity(n * self.inputs);
                if let Some(rows) = fill(0, n, &mut x)? {
                    x = rows.to_vec();
                }
                out.copy_from_slice(&self.predict_proba(&x)?);
                Ok(())
            }
        }
    }

    /// One MC-dropout pass ([`McPass`]) over the rows `fill` writes, as
    /// [`Mlp::predict_proba_filled`] does: dropout stays on at inference,
    /// with the pass's masks. Runs on the fused kernels whatever the
    /// engine (the layers are the same).
    pub fn predict_mc_filled<'a>(
        &self,
        out: &mut [f32],
        fill: &fused::FillRows<'a, Error>,
        pass: McPass,
    ) -> Result<()> {
        let head = fused::Head::Mc(self.mc_pass(pass)?);
        fused::forward_filled(&self.layers, self.scaler.as_ref(), out, fill, head)?;
        self.finish(out);
        Ok(())
    }

    /// T MC-dropout passes over the rows `fill` writes, sample-major (T x
    /// rows x outputs, T = `out.len() / (rows · outputs)`): pass t's plane
    /// is the bits [`Mlp::predict_mc_filled`] with `McPass { pass: t, ..mc }`
    /// gives it (`mc.pass` is ignored), but each tile of rows is read and
    /// run through the first layer once for all T passes.
    pub fn predict_mc_passes_filled<'a>(
        &self,
        (out, passes): (&mut [f32], usize),
        fill: &fused::FillRows<'a, Error>,
        mc: McPass,
    ) -> Result<()> {
        let mc = self.mc_pass(mc)?;
        fused::forward_mc_filled(&self.layers, self.scaler.as_ref(), (out, passes), fill, mc)?;
        self.finish(out);
        Ok(())
    }

    /// `pass` as this model runs it: a regressor's pass is its number, not
    /// a softmax of one output; a multi-label model has none.
    fn mc_pass(&self, pass: McPass) -> Result<McPass> {
        if self.output == Output::Sigmoid {
            return Err(Error::Config(
                "MC dropout over a multi-label model's sigmoid outputs is not built".into(),
            ));
        }
        Ok(McPass {
            softmax: pass.softmax && self.output == Output::Softmax,
            ..pass
        })
    }

    /// [`Mlp::embed_rows`] of `out.len() / embed_width()` rows that `fill`
    /// writes itself, a tile at a time (as in [`Mlp::predict_proba_filled`]):
    /// the same bits as embedding those rows from one matrix.
    pub fn embed_filled<'a>(
        &self,
        out: &mut [f32],
        fill: &fused::FillRows<'a, Error>,
    ) -> Result<()> {
        fused::forward_filled(
            &self.layers,
            self.scaler.as_ref(),
            out,
            fill,
            fused::Head::Embed,
        )
    }

    /// The most probable class of each row.
    pub fn predict(&self, x: &[f32]) -> Result<Vec<usize>> {
        let p = self.predict_proba(x)?;
        Ok(p.chunks_exact(self.classes).map(argmax).collect())
    }

    /// The fraction of rows of `x` whose predicted class is `y`'s.
    pub fn accuracy(&self, x: &[f32], y: &[usize]) -> Result<f64> {
        self.accuracy_with(x, y, self.scaler.as_ref())
    }

    fn accuracy_with(&self, x: &[f32], y: &[usize], scaler: Option<&Scaler>) -> Result<f64> {
        if y.is_empty() {
            return Ok(0.0);
        }
        if !x.len().is_multiple_of(self.inputs) {
            return Err(Error::Config(format!(
                "accuracy needs rows of {} features, got {} values",
                self.inputs,
                x.len()
            )));
        }
        let p = self.predict_impl(x, None, &mut |_| {}, scaler)?;
        let hits = p
            .chunks_exact(self.classes)
            .map(argmax)
            .zip(y)
            .filter(|(a, b)| a == *b)
            .count();
        Ok(hits as f64 / y.len() as f64)
    }

    /// Saves the weights as `path` (safetensors, tensors `layer{i}.weight`
    /// `[out, in]` and `layer{i}.bias`) and the config as JSON beside it
    /// (`path` with extension `.json`).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut map = HashMap::new();
        for (i, l) in self.layers.iter().enumerate() {
            let w = Tensor::from_slice(&l.w, (l.out, l.inp), &Device::Cpu).map_err(ce)?;
            let b = Tensor::from_slice(&l.b, l.out, &Device::Cpu).map_err(ce)?;
            map.insert(format!("layer{i}.weight"), w);
            map.insert(format!("layer{i}.bias"), b);
        }
        if let Some(s) = &self.scaler {
            for (name, v) in [(SCALER_SHIFT, &s.shift), (SCALER_SCALE, &s.scale)] {
                let t = Tensor::from_slice(v, v.len(), &Device::Cpu).map_err(ce)?;
                map.insert(name.to_string(), t);
            }
        }
        candle_core::safetensors::save(&map, path).map_err(ce)?;
        let c = &self.config;
        let file = ConfigFile {
            inputs: self.inputs,
            classes: self.classes,
            hidden: c.hidden.clone(),
            dropout: c.dropout,
            lr: c.lr,
            weight_decay: c.weight_decay,
            batch_size: c.batch_size,
            epochs: c.epochs,
            min_steps: c.min_steps,
            val_fraction: c.val_fraction,
            patience: c.patience,
            class_weights: c.class_weights,
            seed: c.seed,
            engine: c.engine.name().into(),
            scale: c.scale.name().into(),
            scaler: self.scaler.as_ref().map(|s| ScalerMeta {
                kind: s.kind.name().into(),
                constant_columns: s.constant.clone(),
            }),
            output: self.output.name().into(),
            target: (self.output == Output::Linear).then_some([self.target.0, self.target.1]),
        };
        let json = serde_json::to_string(&file).map_err(|e| Error::model(path, e.to_string()))?;
        std::fs::write(path.with_extension("json"), json)
            .map_err(|e| Error::io(path.with_extension("json"), e))
    }

    /// Loads a model written by [`Mlp::save`].
    pub fn load(path: &Path) -> Result<Mlp> {
        let cfg_path = path.with_extension("json");
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| Error::io(&cfg_path, e))?;
        let v: ConfigFile = serde_json::from_str(&text)
            .map_err(|e| Error::model(&cfg_path, format!("bad model config: {e}")))?;
        check_size(&v, &cfg_path, path)?;
        let mut mlp = match v.output.as_str() {
            "softmax" => Mlp::new(v.inputs, v.classes, v.config())?,
            "sigmoid" => Mlp::new_multilabel(v.inputs, v.classes, v.config())?,
            "linear" => {
                let bad = |what: &str| Error::model(&cfg_path, what.to_string());
                let [mean, std] = v.target.ok_or_else(|| {
                    bad("a linear model without its target's mean and standard deviation")
                })?;
                if !(mean.is_finite() && std.is_finite() && std > 0.0) || v.classes != 1 {
                    return Err(bad(
                        "a linear model needs 1 output, a finite target mean and a positive standard deviation",
                    ));
                }
                let mut m = Mlp::new_regressor(v.inputs, v.config())?;
                m.target = (mean, std);
                m
            }
            o => return Err(Error::model(&cfg_path, format!("unknown output {o:?}"))),
        };
        let tensors = Tensors {
            path,
            all: candle_core::safetensors::load(path, &Device::Cpu)
                .map_err(|e| Error::model(path, format!("not a readable safetensors file: {e}")))?,
        };
        for (i, l) in mlp.layers.iter_mut().enumerate() {
            l.w = tensors.f32s(
                &format!("layer{i}.weight"),
                &[l.out, l.inp],
                "the config says",
            )?;
            l.b = tensors.f32s(&format!("layer{i}.bias"), &[l.out], "the config says")?;
        }
        if let Some(meta) = v.scaler {
            let kind = ScaleKind::parse(&meta.kind).ok_or_else(|| {
                Error::model(&cfg_path, format!("unknown scaler kind {:?}", meta.kind))
            })?;
            let width = [mlp.inputs];
            let shift = tensors.f32s(SCALER_SHIFT, &width, "the model's inputs are")?;
            let scale = tensors.f32s(SCALER_SCALE, &width, "the model's inputs are")?;
            if let Some(j) = scale.iter().position(|d| !d.is_normal()) {
                return Err(Error::model(
                    path,
                    format!("{SCALER_SCALE}[{j}] is {}, not a usable scale", scale[j]),
                ));
            }
            mlp.scaler = Some(Scaler {
                kind,
                shift,
                scale,
                constant: meta.constant_columns,
            });
        }
        Ok(mlp)
    }
}

/// Refuses a config that describes more weights than its weights file can
/// hold (each takes at least 2 bytes), before any is allocated: a damaged
/// or hostile config could otherwise ask for terabytes.
fn check_size(v: &ConfigFile, cfg_path: &Path, path: &Path) -> Result<()> {
    let bytes = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len();
    let widths: Vec<usize> = std::iter::once(v.inputs)
        .chain(v.hidden.iter().copied())
        .chain(std::iter::once(v.classes))
        .collect();
    let weights = widths.windows(2).try_fold(0u64, |n, w| {
        (w[0] as u64)
            .checked_add(1)?
            .checked_mul(w[1] as u64)?
            .checked_add(n)
    });
    match weights {
        Some(n) if n.saturating_mul(2) <= bytes => Ok(()),
        _ => Err(Error::model(
            cfg_path,
            format!(
                "describes layers {widths:?}, more weights than {} holds ({bytes} bytes)",
                path.display()
            ),
        )),
    }
}

/// The tensors of a safetensors file, read by name with their shape
/// checked.
struct Tensors<'p> {
    path: &'p Path,
    all: HashMap<String, Tensor>,
}

impl Tensors<'_> {
    /// Tensor `name` as f32 values, if its shape is `dims` (`what` says
    /// where the expected shape comes from).
    fn f32s(&self, name: &str, dims: &[usize], what: &str) -> Result<Vec<f32>> {
        let t = self
            .all
            .get(name)
            .ok_or_else(|| Error::model(self.path, format!("lacks tensor {name}")))?;
        if t.dims() != dims {
            return Err(Error::model(
                self.path,
                format!("tensor {name} has shape {:?}, {what} {dims:?}", t.dims()),
            ));
        }
        t.to_dtype(candle_core::DType::F32)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| Error::model(self.path, format!("tensor {name}: {e}")))
    }
}

/// The safetensors names of the scaler's statistics.
const SCALER_SHIFT: &str = "scaler.shift";
const SCALER_SCALE: &str = "scaler.scale";

/// The index of the largest value, ties to the lower index.
pub fn argmax(p: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in p.iter().enumerate() {
        if x > p[best] {
            best = i;
        }
    }
    best
}

/// Fisher–Yates with the crate's seeded generator.
pub(crate) fn shuffle<T>(v: &mut [T], rng: &mut Rng) {
    for i in (1..v.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        v.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A multi-label model learns two labels that are functions of two
    /// inputs (x0 > 0, x1 > 0), its outputs are independent sigmoids, and
    /// it saves and loads as one.
    #[test]
    fn a_multilabel_model_learns_saves_and_loads() {
        let mut rng = Rng::new(3);
        let n = 400;
        let x: Vec<f32> = (0..2 * n)
            .map(|_| (rng.uniform() * 2.0 - 1.0) as f32)
            .collect();
        let y: Vec<f32> = x.iter().map(|&v| f32::from(v > 0.0)).collect();
        let cfg = MlpConfig {
            hidden: vec![16],
            ..Default::default()
        };
        let mut m = Mlp::new_multilabel(2, 2, cfg.clone()).unwrap();
        let report = m.fit_multilabel(&x, &y).unwrap();
        assert!(report.train_accuracy > 0.95, "{report:?}");
        let p = m.predict_proba(&x).unwrap();
        let right = p
            .iter()
            .zip(&y)
            .filter(|(p, y)| (**p > 0.5) == (**y == 1.0))
            .count();
        assert_eq!(right as f64 / y.len() as f64, report.train_accuracy);
        // Independent sigmoids: rows need not sum to 1.
        assert!(p.chunks(2).any(|r| (r[0] + r[1] - 1.0).abs() > 0.2));
        let mut again = Mlp::new_multilabel(2, 2, cfg.clone()).unwrap();
        again.fit_multilabel(&x, &y).unwrap();
        assert_eq!(again.predict_proba(&x).unwrap(), p);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        m.save(&path).unwrap();
        let loaded = Mlp::load(&path).unwrap();
        assert_eq!(loaded.output(), Output::Sigmoid);
        assert_eq!(loaded.predict_proba(&x).unwrap(), p);
        // Bad targets, class indices, and the candle engine are refused.
        let e = m.fit_multilabel(&x[..4], &[1.0, 0.5, 0.0, 1.0]);
        let e = e.err().unwrap().to_string();
        assert!(
            e.contains("labeled row 0, label 1: the target is 0.5"),
            "{e}"
        );
        let e = m.fit(&x[..4], &[0, 1]).err().unwrap().to_string();
        assert!(e.contains("0/1 label rows"), "{e}");
        let candle = MlpConfig {
            engine: Engine::Candle,
            ..cfg
        };
        assert!(Mlp::new_multilabel(2, 2, candle).is_err());
    }

    /// The embedding is the last hidden layer: the output layer applied to
    /// it, then softmax, gives `predict_proba`.
    #[test]
    fn embed_is_the_input_of_the_output_layer() {
        let data = crate::al::Dataset::digits();
        let config = MlpConfig {
            hidden: vec![32, 16],
            epochs: 2,
            ..MlpConfig::default()
        };
        let mut m = Mlp::new(data.dim, data.classes, config).unwrap();
        m.fit(&data.features()[..200 * data.dim], &data.y[..200])
            .unwrap();
        let rows = [3usize, 150, 7];
        let emb = m.embed_rows(&data.features(), &rows).unwrap();
        assert_eq!(emb.len(), rows.len() * 16);
        assert!(emb.iter().all(|&v| v >= 0.0), "ReLU");
        let probs = m.predict_proba_rows(&data.features(), &rows).unwrap();
        let out = m.layers.last().unwrap();
        for (e, p) in emb.chunks_exact(16).zip(probs.chunks_exact(data.classes)) {
            let z: Vec<f64> = (0..out.out)
                .map(|o| {
                    out.b[o] as f64
                        + (0..16)
                            .map(|i| out.w[o * 16 + i] as f64 * e[i] as f64)
                            .sum::<f64>()
                })
                .collect();
            let max = z.iter().cloned().fold(f64::MIN, f64::max);
            let s: f64 = z.iter().map(|v| (v - max).exp()).sum();
            for (zi, &pi) in z.iter().zip(p) {
                assert!(((zi - max).exp() / s - pi as f64).abs() < 1e-5);
            }
        }
        // All rows at once: the same values up to float32 rounding (gemm
        // picks another kernel for a 3-row block than for 512 rows).
        let all = m.embed(&data.features()).unwrap();
        for (a, b) in all[150 * 16..151 * 16].iter().zip(&emb[16..32]) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()), "{a} vs {b}");
        }
    }
}
