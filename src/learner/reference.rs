//! The MLP in candle's ops with candle's autograd and candle-nn's AdamW:
//! the definition the fused kernels in `super::fused` are tested against
//! (same initialization, same minibatches, same dropout draws, so the two
//! agree up to f32 rounding), and the engine behind `--engine candle`.

use candle_core::{Device, Module, Tensor, Var};
use candle_nn::{Optimizer, ParamsAdamW};

use super::Layer;
use crate::error::{Error, Result};
use crate::rng::Rng;

pub(crate) fn ce(e: candle_core::Error) -> Error {
    Error::Learner(e.to_string())
}

fn vars(layers: &[Layer]) -> Result<Vec<(Var, Var)>> {
    layers
        .iter()
        .map(|l| {
            Ok((
                Var::from_slice(&l.w, (l.out, l.inp), &Device::Cpu).map_err(ce)?,
                Var::from_slice(&l.b, l.out, &Device::Cpu).map_err(ce)?,
            ))
        })
        .collect()
}

/// Logits through candle ops, with dropout masks drawn from `dropout`'s
/// generator (layer by layer, row-major) when it is given.
fn forward(
    vars: &[(Var, Var)],
    x: &Tensor,
    dropout: Option<(f32, &mut Rng)>,
) -> candle_core::Result<Tensor> {
    let mut h = x.clone();
    let last = vars.len() - 1;
    let mut dropout = dropout;
    for (i, (w, b)) in vars.iter().enumerate() {
        h = candle_nn::Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone()))
            .forward(&h)?;
        if i < last {
            h = h.relu()?;
            if let Some((p, r)) = dropout.as_mut()
                && *p > 0.0
            {
                let keep: Vec<f32> = (0..h.elem_count())
                    .map(|_| {
                        if (r.uniform() as f32) < *p {
                            0.0
                        } else {
                            1.0 / (1.0 - *p)
                        }
                    })
                    .collect();
                let mask = Tensor::from_vec(keep, h.shape(), &Device::Cpu)?;
                h = (h * mask)?;
            }
        }
    }
    Ok(h)
}

fn rows_tensor(x: &[f32], inputs: usize) -> Result<Tensor> {
    Tensor::from_slice(x, (x.len() / inputs, inputs), &Device::Cpu).map_err(ce)
}

/// Class probabilities of the rows of `x` through candle's ops.
pub fn predict_proba(layers: &[Layer], x: &[f32]) -> Result<Vec<f32>> {
    let v = vars(layers)?;
    let mut out = Vec::with_capacity(x.len() / layers[0].inp * layers[layers.len() - 1].out);
    for chunk in x.chunks(8192 * layers[0].inp) {
        let logits = forward(&v, &rows_tensor(chunk, layers[0].inp)?, None).map_err(ce)?;
        let p = candle_nn::ops::softmax(&logits, 1).map_err(ce)?;
        out.extend(p.flatten_all().map_err(ce)?.to_vec1::<f32>().map_err(ce)?);
    }
    Ok(out)
}

/// Training state: the parameters as candle variables and candle-nn's AdamW.
pub(crate) struct Trainer {
    vars: Vec<(Var, Var)>,
    opt: candle_nn::AdamW,
    dropout: f32,
    inputs: usize,
    classes: usize,
}

impl Trainer {
    /// A candle model holding `layers`, with AdamW and dropout.
    pub fn new(layers: &[Layer], lr: f64, weight_decay: f64, dropout: f32) -> Result<Self> {
        let vars = vars(layers)?;
        let opt = candle_nn::AdamW::new(
            vars.iter()
                .flat_map(|(w, b)| [w.clone(), b.clone()])
                .collect(),
            ParamsAdamW {
                lr,
                weight_decay,
                ..Default::default()
            },
        )
        .map_err(ce)?;
        Ok(Trainer {
            vars,
            opt,
            dropout,
            inputs: layers[0].inp,
            classes: layers[layers.len() - 1].out,
        })
    }

    /// One AdamW step on the minibatch; the same loss as the fused trainer.
    pub fn step(
        &mut self,
        x: &[f32],
        y: &[usize],
        class_weight: &[f32],
        rng: &mut Rng,
    ) -> Result<()> {
        let n = y.len();
        let mut target = vec![0f32; n * self.classes];
        for (r, &c) in y.iter().enumerate() {
            target[r * self.classes + c] = class_weight[c];
        }
        let tt = Tensor::from_vec(target, (n, self.classes), &Device::Cpu).map_err(ce)?;
        let logits = forward(
            &self.vars,
            &rows_tensor(x, self.inputs)?,
            Some((self.dropout, rng)),
        )
        .map_err(ce)?;
        let logp = candle_nn::ops::log_softmax(&logits, 1).map_err(ce)?;
        let loss =
            ((logp * tt).map_err(ce)?.sum_all().map_err(ce)? * (-1.0 / n as f64)).map_err(ce)?;
        self.opt.backward_step(&loss).map_err(ce)
    }

    /// The current parameters.
    pub fn layers(&self) -> Result<Vec<Layer>> {
        self.vars
            .iter()
            .map(|(w, b)| {
                let (out, inp) = w.as_tensor().dims2().map_err(ce)?;
                Ok(Layer {
                    w: w.as_tensor()
                        .flatten_all()
                        .and_then(|t| t.to_vec1::<f32>())
                        .map_err(ce)?,
                    b: b.as_tensor().to_vec1::<f32>().map_err(ce)?,
                    inp,
                    out,
                })
            })
            .collect()
    }
}
