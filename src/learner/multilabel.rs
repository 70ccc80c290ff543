//! The multi-label learner: the MLP with one independent sigmoid output per
//! label, trained on the binary cross-entropy summed over the labels
//! (fused f32 kernels, AdamW, minibatches, the same seeded initialization
//! and shuffling as the classifier). Its outputs are the N x L
//! probabilities the multi-label strategies read (`--input multilabel`).

use super::fused::{self, Head, Loss};
use super::{Layer, MlpConfig, Scaler};
use crate::error::{Error, Result};

/// A trained multi-label MLP.
pub struct MultiLabelMlp {
    layers: Vec<Layer>,
    scaler: Option<Scaler>,
}

impl MultiLabelMlp {
    /// Trains on rows `x` (n x `dim`, row-major) with 0/1 targets `y` (n x
    /// `labels`, row-major), as [`super::regressor::Regressor::fit`] trains
    /// (`scaler` maps the rows first).
    pub fn fit(
        (dim, labels): (usize, usize),
        config: &MlpConfig,
        scaler: Option<Scaler>,
        (x, y): (&[f32], &[f32]),
    ) -> Result<MultiLabelMlp> {
        let n = y.len() / labels.max(1);
        if dim == 0 || labels == 0 || n == 0 || x.len() != n * dim || y.len() != n * labels {
            return Err(Error::Config(format!(
                "a multi-label learner needs at least 1 input, 1 label and 1 labeled row, with {labels} targets a row: got {dim} inputs, {} feature values and {} targets",
                x.len(),
                y.len()
            )));
        }
        if config.hidden.contains(&0) || !(0.0..1.0).contains(&config.dropout) {
            return Err(Error::Config(format!(
                "hidden layers must not be empty (got {:?}) and dropout must be in [0, 1) (got {})",
                config.hidden, config.dropout
            )));
        }
        if let Some(at) = y.iter().position(|&v| v != 0.0 && v != 1.0) {
            return Err(Error::Config(format!(
                "labeled row {}, label {}: the target is {}; multi-label targets are 0 or 1",
                at / labels,
                at % labels,
                y[at]
            )));
        }
        let layers = fused::train_targets(dim, config, scaler.as_ref(), x, (y, Loss::Bce));
        Ok(MultiLabelMlp { layers, scaler })
    }

    /// Features per input row.
    pub fn inputs(&self) -> usize {
        self.layers[0].inp
    }

    /// Labels per output row.
    pub fn labels(&self) -> usize {
        self.layers[self.layers.len() - 1].out
    }

    /// σ(z) of every label of the rows of `x` (row-major), or of the rows
    /// listed in `rows`: n x L, row-major.
    pub fn predict_proba(&self, x: &[f32], rows: Option<&[usize]>) -> Vec<f32> {
        let n = rows.map_or(x.len() / self.inputs(), <[usize]>::len);
        let mut out = vec![0f32; n * self.labels()];
        fused::forward_into(
            &self.layers,
            x,
            rows,
            self.scaler.as_ref(),
            &mut out,
            Head::Logits,
        );
        out.iter_mut().for_each(|v| *v = fused::sigmoid(*v));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two labels that are functions of two inputs: label 0 is x0 > 0,
    /// label 1 is x1 > 0. The learner must get nearly all of both right.
    #[test]
    fn it_learns_two_independent_labels() {
        let mut rng = crate::rng::Rng::new(3);
        let n = 400;
        let x: Vec<f32> = (0..2 * n)
            .map(|_| (rng.uniform() * 2.0 - 1.0) as f32)
            .collect();
        let y: Vec<f32> = x.iter().map(|&v| f32::from(v > 0.0)).collect();
        let cfg = MlpConfig {
            hidden: vec![16],
            ..Default::default()
        };
        let m = MultiLabelMlp::fit((2, 2), &cfg, None, (&x, &y)).unwrap();
        let p = m.predict_proba(&x, None);
        let right = p
            .iter()
            .zip(&y)
            .filter(|(p, y)| (**p > 0.5) == (**y == 1.0))
            .count();
        assert!(
            right as f64 > 0.95 * y.len() as f64,
            "{right} of {}",
            y.len()
        );
        assert!(p.iter().all(|v| (0.0..=1.0).contains(v)));
        // The same seed, the same model.
        let again = MultiLabelMlp::fit((2, 2), &cfg, None, (&x, &y)).unwrap();
        assert_eq!(again.predict_proba(&x, None), p);
        let bad = MultiLabelMlp::fit((2, 2), &cfg, None, (&x[..4], &[1.0, 0.5, 0.0, 1.0]));
        let e = bad.err().unwrap().to_string();
        assert!(
            e.contains("labeled row 0, label 1: the target is 0.5"),
            "{e}"
        );
    }
}
