//! Query-by-committee's committee: T learners, each trained on its own
//! bootstrap resample of the labeled rows with its own seed (query by
//! bagging, Abe and Mamitsuka 1998). Their probabilities of a row are the T
//! samples the disagreement strategies and BatchBALD read.

use super::{Mlp, MlpConfig, Scaler};
use crate::error::{Error, Result};
use crate::rng::{splitmix64, substream};

/// Member `m`'s bootstrap resample of `n` rows and its seed `s_m`: row j
/// is `splitmix64(s_m + j) mod n`, `s_m = substream(seed, m)`.
pub(crate) fn bootstrap(seed: u64, m: u64, n: usize) -> (Vec<usize>, u64) {
    let s = substream(seed, m);
    let rows = (0..n as u64)
        .map(|j| (splitmix64(s.wrapping_add(j)) % n as u64) as usize)
        .collect();
    (rows, s)
}

/// `t` learners (a committee's, or `what`'s in messages), member m fitted
/// by `fit` on its bootstrap resample of the labeled rows `x` (n x `dim`)
/// and `y` ([`bootstrap`]) with `config.seed ^ s_m`.
pub(crate) fn bootstrap_members<Y: Copy, M>(
    (t, what): (usize, &str),
    dim: usize,
    config: &MlpConfig,
    (x, y): (&[f32], &[Y]),
    seed: u64,
    fit: impl Fn(MlpConfig, &[f32], &[Y]) -> Result<M>,
) -> Result<Vec<M>> {
    let n = y.len();
    if t < 2 || n == 0 || x.len() != n * dim {
        return Err(Error::Config(format!(
            "{what} needs at least 2 members and some labeled rows (got {t} members, {n} rows)"
        )));
    }
    (0..t as u64)
        .map(|m| {
            let (rows, s) = bootstrap(seed, m, n);
            let xb: Vec<f32> = rows
                .iter()
                .flat_map(|&r| &x[r * dim..(r + 1) * dim])
                .copied()
                .collect();
            let yb: Vec<Y> = rows.iter().map(|&r| y[r]).collect();
            let cfg = MlpConfig {
                seed: config.seed ^ s,
                ..config.clone()
            };
            fit(cfg, &xb, &yb)
        })
        .collect()
}

/// T trained learners.
pub struct Committee {
    members: Vec<Mlp>,
}

impl Committee {
    /// Trains `t` members on the labeled rows `x` (n x `dim`) with labels
    /// `y`. Member m draws n rows with replacement, row j being
    /// `splitmix64(s_m + j) mod n` with `s_m = substream(seed, m)`, and
    /// initializes from `config.seed ^ s_m`: the same seed gives the same
    /// committee on any machine and thread count.
    pub fn fit(
        t: usize,
        (dim, classes): (usize, usize),
        config: &MlpConfig,
        scaler: Option<Scaler>,
        (x, y): (&[f32], &[usize]),
        seed: u64,
    ) -> Result<Committee> {
        let members = bootstrap_members(
            (t, "a committee"),
            dim,
            config,
            (x, y),
            seed,
            |cfg, xb, yb| {
                let mut model = Mlp::new(dim, classes, cfg)?.with_scaler(scaler.clone())?;
                model.fit(xb, yb)?;
                Ok(model)
            },
        )?;
        Ok(Committee { members })
    }

    /// The members, in order.
    pub fn members(&self) -> &[Mlp] {
        &self.members
    }

    /// The members, owned.
    pub fn into_members(self) -> Vec<Mlp> {
        self.members
    }

    /// The members' probabilities of the same rows, sample-major (T x n x
    /// C, `--layout tnc`): `predict` gives one member's n x C.
    pub fn samples(&self, predict: &dyn Fn(&Mlp) -> Result<Vec<f32>>) -> Result<Vec<f32>> {
        let mut out = Vec::new();
        for m in &self.members {
            out.extend(predict(m)?);
        }
        Ok(out)
    }
}
