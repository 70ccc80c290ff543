//! The learner: an MLP classifier in candle (CPU), trained with AdamW on
//! minibatches, with early stopping on a validation slice of the labeled
//! set. Everything random (initial weights, shuffling, dropout masks, the
//! validation slice) comes from the seed, so training is deterministic.

use std::path::Path;

use candle_core::{Device, Module, Tensor, Var};
use candle_nn::{Optimizer, ParamsAdamW, VarMap};

use crate::error::{Error, Result};
use crate::pool::synth::Rng;

fn ce(e: candle_core::Error) -> Error {
    Error::Learner(e.to_string())
}

/// How to build and train the MLP.
#[derive(Clone, Debug, PartialEq)]
pub struct MlpConfig {
    pub hidden: Vec<usize>,
    /// Dropout probability after each hidden layer (0 = none).
    pub dropout: f32,
    pub lr: f64,
    pub weight_decay: f64,
    pub batch_size: usize,
    /// Epochs to train, raised so that at least `min_steps` gradient steps
    /// are taken: a handful of labels needs more passes, not fewer steps.
    pub epochs: usize,
    pub min_steps: usize,
    /// Early stopping: the fraction of the labeled set held out for
    /// validation (used once there are at least 50 labels; 0 = never, the
    /// default, since a slice of a few hundred labels is too noisy to stop
    /// on), and how many evaluations without improvement to tolerate.
    pub val_fraction: f64,
    pub patience: usize,
    /// Weight the loss by inverse class frequency.
    pub class_weights: bool,
    pub seed: u64,
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
        }
    }
}

impl MlpConfig {
    fn to_json(&self, inputs: usize, classes: usize) -> serde_json::Value {
        serde_json::json!({
            "inputs": inputs, "classes": classes, "hidden": self.hidden, "dropout": self.dropout,
            "lr": self.lr, "weight_decay": self.weight_decay, "batch_size": self.batch_size,
            "epochs": self.epochs, "min_steps": self.min_steps, "val_fraction": self.val_fraction,
            "patience": self.patience, "class_weights": self.class_weights, "seed": self.seed,
        })
    }
}

/// What a training run did.
#[derive(Clone, Debug, Default)]
pub struct TrainReport {
    pub epochs: usize,
    pub steps: usize,
    /// Accuracy on the training rows before and after training.
    pub train_accuracy_before: f64,
    pub train_accuracy: f64,
    pub stopped_early: bool,
}

/// A multilayer perceptron with ReLU hidden layers.
pub struct Mlp {
    config: MlpConfig,
    inputs: usize,
    classes: usize,
    /// (weight [out, in], bias [out]) per layer.
    layers: Vec<(Var, Var)>,
    device: Device,
}

impl Mlp {
    /// A fresh network with PyTorch's default initialization
    /// (U(−1/√fan_in, 1/√fan_in) for weights and biases), from the seed.
    pub fn new(inputs: usize, classes: usize, config: MlpConfig) -> Result<Mlp> {
        if inputs == 0 || classes < 2 {
            return Err(Error::Config(format!(
                "an MLP needs at least 1 input and 2 classes, got {inputs} and {classes}"
            )));
        }
        let device = Device::Cpu;
        let mut rng = Rng::new(config.seed ^ 0x006d_6c70);
        let mut dims = vec![inputs];
        dims.extend(&config.hidden);
        dims.push(classes);
        let mut layers = Vec::new();
        for w in dims.windows(2) {
            let (fan_in, out) = (w[0], w[1]);
            let b = 1.0 / (fan_in as f64).sqrt();
            let mut uni = |n: usize| -> Vec<f32> {
                (0..n)
                    .map(|_| ((rng.uniform() * 2.0 - 1.0) * b) as f32)
                    .collect()
            };
            let weight = Var::from_slice(&uni(out * fan_in), (out, fan_in), &device).map_err(ce)?;
            let bias = Var::from_slice(&uni(out), out, &device).map_err(ce)?;
            layers.push((weight, bias));
        }
        Ok(Mlp {
            config,
            inputs,
            classes,
            layers,
            device,
        })
    }

    pub fn inputs(&self) -> usize {
        self.inputs
    }
    pub fn classes(&self) -> usize {
        self.classes
    }
    pub fn config(&self) -> &MlpConfig {
        &self.config
    }

    fn forward(&self, x: &Tensor, dropout: Option<&mut Rng>) -> candle_core::Result<Tensor> {
        let mut h = x.clone();
        let last = self.layers.len() - 1;
        let mut rng = dropout;
        for (i, (w, b)) in self.layers.iter().enumerate() {
            h = candle_nn::Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone()))
                .forward(&h)?;
            if i < last {
                h = h.relu()?;
                if let Some(r) = rng.as_deref_mut()
                    && self.config.dropout > 0.0
                {
                    let p = self.config.dropout;
                    let n = h.elem_count();
                    let keep: Vec<f32> = (0..n)
                        .map(|_| {
                            if (r.uniform() as f32) < p {
                                0.0
                            } else {
                                1.0 / (1.0 - p)
                            }
                        })
                        .collect();
                    let mask = Tensor::from_vec(keep, h.shape(), &self.device)?;
                    h = (h * mask)?;
                }
            }
        }
        Ok(h)
    }

    fn tensor(&self, x: &[f32], rows: usize) -> Result<Tensor> {
        Tensor::from_slice(x, (rows, self.inputs), &self.device).map_err(ce)
    }

    fn snapshot(&self) -> Result<Vec<(Tensor, Tensor)>> {
        self.layers
            .iter()
            .map(|(w, b)| {
                Ok((
                    w.as_tensor().copy().map_err(ce)?,
                    b.as_tensor().copy().map_err(ce)?,
                ))
            })
            .collect()
    }

    fn restore(&self, s: &[(Tensor, Tensor)]) -> Result<()> {
        for ((w, b), (sw, sb)) in self.layers.iter().zip(s) {
            w.set(sw).map_err(ce)?;
            b.set(sb).map_err(ce)?;
        }
        Ok(())
    }

    /// Trains on rows `x` (row-major, `inputs` wide) with labels `y`.
    pub fn fit(&mut self, x: &[f32], y: &[usize]) -> Result<TrainReport> {
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
        let cfg = self.config.clone();
        let mut rng = Rng::new(cfg.seed ^ 0x0074_7261_696e);
        let mut report = TrainReport {
            train_accuracy_before: self.accuracy(x, y)?,
            ..Default::default()
        };

        // A seeded validation slice once there are enough labels.
        let mut order: Vec<usize> = (0..n).collect();
        shuffle(&mut order, &mut rng);
        let n_val = if cfg.val_fraction > 0.0 && n >= 50 {
            ((n as f64 * cfg.val_fraction).round() as usize).clamp(1, n / 2)
        } else {
            0
        };
        let (val, train) = order.split_at(n_val);
        let mut train: Vec<usize> = train.to_vec();
        let gather = |idx: &[usize]| -> (Vec<f32>, Vec<usize>) {
            let mut xs = Vec::with_capacity(idx.len() * self.inputs);
            for &i in idx {
                xs.extend_from_slice(&x[i * self.inputs..(i + 1) * self.inputs]);
            }
            (xs, idx.iter().map(|&i| y[i]).collect())
        };
        let (val_x, val_y) = gather(val);

        // Inverse-frequency class weights, or ones.
        let mut weights = vec![1f32; self.classes];
        if cfg.class_weights {
            let mut counts = vec![0usize; self.classes];
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

        let vars: Vec<Var> = self
            .layers
            .iter()
            .flat_map(|(w, b)| [w.clone(), b.clone()])
            .collect();
        let mut opt = candle_nn::AdamW::new(
            vars,
            ParamsAdamW {
                lr: cfg.lr,
                weight_decay: cfg.weight_decay,
                ..Default::default()
            },
        )
        .map_err(ce)?;
        let bs = cfg.batch_size.max(1);
        let batches = train.len().div_ceil(bs);
        let epochs = cfg
            .epochs
            .max(cfg.min_steps.div_ceil(batches.max(1)))
            .max(1);
        let mut best = (f64::NEG_INFINITY, None);
        let mut since_best = 0;
        // Validate about 20 times over the run, whatever the epoch count.
        let every = (epochs / 20).max(1);
        for epoch in 0..epochs {
            shuffle(&mut train, &mut rng);
            for chunk in train.chunks(bs) {
                let (bx, by) = gather(chunk);
                let xt = self.tensor(&bx, chunk.len())?;
                let mut target = vec![0f32; chunk.len() * self.classes];
                for (r, &c) in by.iter().enumerate() {
                    target[r * self.classes + c] = weights[c];
                }
                let tt = Tensor::from_vec(target, (chunk.len(), self.classes), &self.device)
                    .map_err(ce)?;
                let logits = self.forward(&xt, Some(&mut rng)).map_err(ce)?;
                let logp = candle_nn::ops::log_softmax(&logits, 1).map_err(ce)?;
                let loss = ((logp * tt).map_err(ce)?.sum_all().map_err(ce)?
                    * (-1.0 / chunk.len() as f64))
                    .map_err(ce)?;
                opt.backward_step(&loss).map_err(ce)?;
                report.steps += 1;
            }
            report.epochs = epoch + 1;
            if n_val > 0 && ((epoch + 1) % every == 0 || epoch + 1 == epochs) {
                let acc = self.accuracy(&val_x, &val_y)?;
                if acc > best.0 {
                    best = (acc, Some(self.snapshot()?));
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
        if let (_, Some(s)) = &best {
            self.restore(s)?;
        }
        report.train_accuracy = self.accuracy(x, y)?;
        Ok(report)
    }

    /// Class probabilities for `rows` rows, in batches of 8192 (memory stays
    /// bounded whatever the row count); `progress` gets rows done.
    pub fn predict_proba_with(
        &self,
        x: &[f32],
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<f32>> {
        let rows = x.len() / self.inputs;
        let mut out = Vec::with_capacity(rows * self.classes);
        for (i, chunk) in x.chunks(8192 * self.inputs).enumerate() {
            let n = chunk.len() / self.inputs;
            let logits = self.forward(&self.tensor(chunk, n)?, None).map_err(ce)?;
            let p = candle_nn::ops::softmax(&logits, 1).map_err(ce)?;
            out.extend(p.flatten_all().map_err(ce)?.to_vec1::<f32>().map_err(ce)?);
            progress((i * 8192 + n).min(rows));
        }
        Ok(out)
    }

    pub fn predict_proba(&self, x: &[f32]) -> Result<Vec<f32>> {
        self.predict_proba_with(x, &mut |_| {})
    }

    /// The most probable class of each row.
    pub fn predict(&self, x: &[f32]) -> Result<Vec<usize>> {
        let p = self.predict_proba(x)?;
        Ok(p.chunks_exact(self.classes).map(argmax).collect())
    }

    pub fn accuracy(&self, x: &[f32], y: &[usize]) -> Result<f64> {
        if y.is_empty() {
            return Ok(0.0);
        }
        let pred = self.predict(x)?;
        Ok(pred.iter().zip(y).filter(|(a, b)| a == b).count() as f64 / y.len() as f64)
    }

    /// Saves the weights as `path` (safetensors) and the config as JSON
    /// beside it (`path` with extension `.json`).
    pub fn save(&self, path: &Path) -> Result<()> {
        let map = VarMap::new();
        {
            let mut data = map.data().lock().unwrap_or_else(|e| e.into_inner());
            for (i, (w, b)) in self.layers.iter().enumerate() {
                data.insert(format!("layer{i}.weight"), w.clone());
                data.insert(format!("layer{i}.bias"), b.clone());
            }
        }
        map.save(path).map_err(ce)?;
        let json = self.config.to_json(self.inputs, self.classes).to_string();
        std::fs::write(path.with_extension("json"), json)
            .map_err(|e| Error::io(path.with_extension("json"), e))
    }

    /// Loads a model written by [`Mlp::save`].
    pub fn load(path: &Path) -> Result<Mlp> {
        let cfg_path = path.with_extension("json");
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| Error::io(&cfg_path, e))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::npy(&cfg_path, format!("bad model config: {e}")))?;
        let get = |k: &str| {
            v.get(k)
                .ok_or_else(|| Error::npy(&cfg_path, format!("model config lacks {k:?}")))
        };
        let u = |k: &str| -> Result<usize> {
            get(k)?
                .as_u64()
                .map(|x| x as usize)
                .ok_or_else(|| Error::npy(&cfg_path, format!("{k} is not a number")))
        };
        let f = |k: &str| -> Result<f64> {
            get(k)?
                .as_f64()
                .ok_or_else(|| Error::npy(&cfg_path, format!("{k} is not a number")))
        };
        let config = MlpConfig {
            hidden: get("hidden")?
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_u64().map(|x| x as usize))
                        .collect()
                })
                .unwrap_or_default(),
            dropout: f("dropout")? as f32,
            lr: f("lr")?,
            weight_decay: f("weight_decay")?,
            batch_size: u("batch_size")?,
            epochs: u("epochs")?,
            min_steps: u("min_steps")?,
            val_fraction: f("val_fraction")?,
            patience: u("patience")?,
            class_weights: get("class_weights")?.as_bool().unwrap_or(false),
            seed: get("seed")?.as_u64().unwrap_or(0),
        };
        let mlp = Mlp::new(u("inputs")?, u("classes")?, config)?;
        let mut map = VarMap::new();
        {
            let mut data = map.data().lock().unwrap_or_else(|e| e.into_inner());
            for (i, (w, b)) in mlp.layers.iter().enumerate() {
                data.insert(format!("layer{i}.weight"), w.clone());
                data.insert(format!("layer{i}.bias"), b.clone());
            }
        }
        map.load(path).map_err(ce)?;
        Ok(mlp)
    }
}

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
pub fn shuffle<T>(v: &mut [T], rng: &mut Rng) {
    for i in (1..v.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        v.swap(i, j);
    }
}
