//! The regression learner: the MLP with one linear output
//! ([`super::Output::Linear`]: MSE on standardized targets, fused f32
//! kernels, the classifier's seeded initialization and shuffling), and a
//! bootstrap ensemble of them whose T predictions give a row's spread
//! (`std`). [`Regressor`] is that [`Mlp`] with the regression loop's
//! calls; a workspace saves and loads the model itself.

use super::committee::bootstrap_members;
use super::fused;
use super::{Mlp, MlpConfig, Scaler};
use crate::error::{Error, Result};

/// A trained regression MLP.
pub struct Regressor {
    model: Mlp,
}

impl Regressor {
    /// Trains on rows `x` (n x `dim`, row-major) with targets `y`
    /// ([`Mlp::fit_regression`]). `scaler` maps the rows first (fitted on
    /// the pool).
    pub fn fit(
        dim: usize,
        config: &MlpConfig,
        scaler: Option<Scaler>,
        (x, y): (&[f32], &[f32]),
    ) -> Result<Regressor> {
        if dim == 0 || y.is_empty() || x.len() != y.len() * dim || config.hidden.contains(&0) {
            return Err(Error::Config(format!(
                "a regressor needs at least 1 input, 1 labeled row and no empty hidden layer, got {dim} inputs, {} rows, hidden {:?}",
                y.len(),
                config.hidden
            )));
        }
        let mut model = Mlp::new_regressor(dim, config.clone())?.with_scaler(scaler)?;
        model.fit_regression(x, y)?;
        Ok(Regressor { model })
    }

    /// The model.
    pub fn model(&self) -> &Mlp {
        &self.model
    }

    /// Features per input row.
    pub fn inputs(&self) -> usize {
        self.model.inputs
    }

    /// The predictions of the rows of `x` (row-major), or of the rows
    /// listed in `rows`, in the targets' units.
    pub fn predict(&self, x: &[f32], rows: Option<&[usize]>) -> Vec<f32> {
        let m = &self.model;
        let n = rows.map_or(x.len() / self.inputs(), <[usize]>::len);
        let mut out = vec![0f32; n];
        fused::forward_into(&m.layers, x, rows, m.scaler.as_ref(), &mut out, m.head());
        m.finish(&mut out);
        out
    }

    /// T MC-dropout passes' predictions of the rows of `x` (or those
    /// listed in `rows`), sample-major (T x n), in the targets' units:
    /// dropout kept on with [`super::McPass`]'s masks, seeded by `seed`
    /// (the same for every row). An error unless
    /// the model was trained with dropout.
    pub fn mc_samples(
        &self,
        x: &[f32],
        rows: Option<&[usize]>,
        (passes, seed): (usize, u64),
    ) -> Result<Vec<f32>> {
        let m = &self.model;
        let rate = m.config.dropout;
        if !(rate > 0.0 && rate < 1.0) || passes < 2 {
            return Err(Error::Config(format!(
                "MC dropout needs a regressor trained with dropout in (0, 1) (got {rate}) and at least 2 passes (got {passes})"
            )));
        }
        let n = rows.map_or(x.len() / self.inputs(), <[usize]>::len);
        let mut out = vec![0f32; passes * n];
        let mc = super::McPass {
            pass: 0,
            seed,
            rate,
            softmax: false,
        };
        fused::forward_mc_into(
            &m.layers,
            (x, rows),
            m.scaler.as_ref(),
            (&mut out, passes),
            mc,
        );
        m.finish(&mut out);
        Ok(out)
    }
}

/// T regressors, each trained on its own bootstrap resample of the
/// labeled rows with its own seed, as the classifier's committee
/// ([`super::Committee`]); their predictions of a row are its T samples.
pub struct Ensemble {
    members: Vec<Regressor>,
}

impl Ensemble {
    /// Trains `t` members on `x` (n x `dim`) and `y`; member m resamples
    /// the rows as [`super::Committee::fit`]'s member m does and starts
    /// from `config.seed ^ s_m`.
    pub fn fit(
        t: usize,
        dim: usize,
        config: &MlpConfig,
        scaler: Option<Scaler>,
        (x, y): (&[f32], &[f32]),
        seed: u64,
    ) -> Result<Ensemble> {
        let members = bootstrap_members(
            (t, "an ensemble"),
            dim,
            config,
            (x, y),
            seed,
            |cfg, xb, yb| Regressor::fit(dim, &cfg, scaler.clone(), (xb, yb)),
        )?;
        Ok(Ensemble { members })
    }

    /// The members' models, in member order (a committee of regressors).
    pub fn into_models(self) -> Vec<Mlp> {
        self.members.into_iter().map(|r| r.model).collect()
    }

    /// The members' predictions of the same rows, sample-major (T x n).
    pub fn samples(&self, x: &[f32], rows: Option<&[usize]>) -> Vec<f32> {
        self.members
            .iter()
            .flat_map(|m| m.predict(x, rows))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn it_learns_a_smooth_function_and_is_deterministic() {
        let mut rng = Rng::new(3);
        let n = 400;
        let x: Vec<f32> = (0..n * 2)
            .map(|_| (rng.uniform() * 4.0 - 2.0) as f32)
            .collect();
        let f = |a: f32, b: f32| 100.0 + 30.0 * a - 20.0 * b * b;
        let y: Vec<f32> = x.chunks(2).map(|r| f(r[0], r[1])).collect();
        let cfg = MlpConfig {
            hidden: vec![64],
            min_steps: 2000,
            ..MlpConfig::default()
        };
        let model = Regressor::fit(2, &cfg, None, (&x, &y)).unwrap();
        let pred = model.predict(&x, None);
        let mse = pred
            .iter()
            .zip(&y)
            .map(|(p, t)| (p - t).powi(2))
            .sum::<f32>()
            / n as f32;
        let var = {
            let m = y.iter().sum::<f32>() / n as f32;
            y.iter().map(|t| (t - m).powi(2)).sum::<f32>() / n as f32
        };
        // R² well above what a constant gives (0).
        assert!(1.0 - mse / var > 0.95, "R² {}", 1.0 - mse / var);
        let again = Regressor::fit(2, &cfg, None, (&x, &y)).unwrap();
        assert_eq!(again.predict(&x, None), pred);
        let listed = model.predict(&x, Some(&[5, 1]));
        assert_eq!(listed, vec![pred[5], pred[1]]);
        // MC dropout: refused without dropout; with it, passes differ and
        // the same seed repeats them.
        assert!(model.mc_samples(&x, None, (4, 1)).is_err());
        let drop = MlpConfig {
            dropout: 0.2,
            ..cfg.clone()
        };
        let dm = Regressor::fit(2, &drop, None, (&x, &y)).unwrap();
        let s = dm.mc_samples(&x, Some(&[3, 4, 5]), (4, 1)).unwrap();
        assert_eq!(s.len(), 12);
        assert_ne!(s[..3], s[3..6]);
        assert_eq!(s, dm.mc_samples(&x, Some(&[3, 4, 5]), (4, 1)).unwrap());
        let bad = Regressor::fit(2, &cfg, None, (&x[..4], &[1.0, f32::NAN]));
        assert!(
            bad.err()
                .unwrap()
                .to_string()
                .contains("row 1 has target NaN")
        );
    }
}
