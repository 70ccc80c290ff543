//! Membership query synthesis: the learner constructs instances and asks
//! for their labels. Two generators: bisection towards the decision
//! boundary between differently predicted labeled instances, and
//! label-preserving perturbations (shifts, rotations, crops) of the pool
//! images the model is least sure of.

use std::time::Instant;

use super::pool_loop::{Round, RunResult};
use super::stopping::Fired;
use super::{Dataset, Oracle, Split, accuracy_and_macro_f1, seed_set};
use crate::error::{Error, Result};
use crate::learner::{Mlp, MlpConfig, argmax, shuffle};
use crate::rng::Rng;

/// How synthetic instances are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Generator {
    /// Bisect the segment between two labeled instances whose predicted
    /// classes differ until the margin is below the tolerance.
    Boundary,
    /// Shift, rotate or crop the most uncertain pool images.
    Perturb,
}

impl Generator {
    /// The generator's name, as `--generators` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Generator::Boundary => "synthesis-boundary",
            Generator::Perturb => "synthesis-perturb",
        }
    }
}

fn margin(p: &[f32]) -> f64 {
    let (a, b) = crate::score::top2(p);
    (a - b) as f64
}

/// Bisects between `a` and `b` (whose predicted classes must differ) until
/// the model's margin is below `tol` or `max_iter` halvings are done.
/// Returns the point and its margin.
pub fn bisect(
    model: &Mlp,
    a: &[f32],
    b: &[f32],
    tol: f64,
    max_iter: usize,
) -> Result<(Vec<f32>, f64)> {
    let predict = |x: &[f32]| -> Result<Vec<f32>> { model.predict_proba(x) };
    let ca = argmax(&predict(a)?);
    if ca == argmax(&predict(b)?) {
        return Err(Error::Config(
            "bisect needs two instances with different predicted classes".into(),
        ));
    }
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    let mut best = (a.to_vec(), f64::INFINITY);
    for _ in 0..max_iter.max(1) {
        let t = (lo + hi) / 2.0;
        let x: Vec<f32> = a
            .iter()
            .zip(b)
            .map(|(&u, &v)| ((1.0 - t) * u as f64 + t * v as f64) as f32)
            .collect();
        let p = predict(&x)?;
        let m = margin(&p);
        if m < best.1 {
            best = (x, m);
        }
        if best.1 < tol {
            break;
        }
        if argmax(&p) == ca {
            lo = t;
        } else {
            hi = t;
        }
    }
    Ok(best)
}

/// An image of `h` x `w` pixels, row-major.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Height in pixels.
    pub h: usize,
    /// Width in pixels.
    pub w: usize,
}

impl std::str::FromStr for Shape {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Shape, String> {
        let (h, w) = s
            .split_once('x')
            .ok_or_else(|| format!("{s:?}: expected HxW, e.g. 8x8"))?;
        Ok(Shape {
            h: h.trim().parse().map_err(|_| format!("{s:?}: bad height"))?,
            w: w.trim().parse().map_err(|_| format!("{s:?}: bad width"))?,
        })
    }
}

/// Bilinear sample of `img` at (y, x); 0 outside.
fn sample(img: &[f32], s: Shape, y: f64, x: f64) -> f32 {
    let (y0, x0) = (y.floor(), x.floor());
    let (fy, fx) = (y - y0, x - x0);
    let at = |yy: f64, xx: f64| -> f64 {
        if yy < 0.0 || xx < 0.0 || yy >= s.h as f64 || xx >= s.w as f64 {
            0.0
        } else {
            img[yy as usize * s.w + xx as usize] as f64
        }
    };
    let v = at(y0, x0) * (1.0 - fy) * (1.0 - fx)
        + at(y0, x0 + 1.0) * (1.0 - fy) * fx
        + at(y0 + 1.0, x0) * fy * (1.0 - fx)
        + at(y0 + 1.0, x0 + 1.0) * fy * fx;
    v as f32
}

/// Maps every output pixel through `src(y, x) -> (y', x')` and samples.
fn warp(img: &[f32], s: Shape, src: impl Fn(f64, f64) -> (f64, f64)) -> Vec<f32> {
    let (lo, hi) = img
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let mut out = Vec::with_capacity(s.h * s.w);
    for y in 0..s.h {
        for x in 0..s.w {
            let (sy, sx) = src(y as f64, x as f64);
            // Bilinear weights sum to 1, but the zero fill may lie outside
            // the image's range: keep every value within it.
            out.push(sample(img, s, sy, sx).clamp(lo.min(0.0), hi));
        }
    }
    out
}

/// Shift by (dy, dx) pixels.
pub fn shift(img: &[f32], s: Shape, dy: f64, dx: f64) -> Vec<f32> {
    warp(img, s, |y, x| (y - dy, x - dx))
}

/// Rotate by `degrees` about the centre.
pub fn rotate(img: &[f32], s: Shape, degrees: f64) -> Vec<f32> {
    let (cy, cx) = ((s.h as f64 - 1.0) / 2.0, (s.w as f64 - 1.0) / 2.0);
    let (sin, cos) = degrees.to_radians().sin_cos();
    warp(img, s, |y, x| {
        let (ry, rx) = (y - cy, x - cx);
        (cy + cos * ry - sin * rx, cx + sin * ry + cos * rx)
    })
}

/// Crop `border` pixels off each side and scale back to the full size.
pub fn crop(img: &[f32], s: Shape, border: f64) -> Vec<f32> {
    let fy = (s.h as f64 - 1.0 - 2.0 * border) / (s.h as f64 - 1.0).max(1.0);
    let fx = (s.w as f64 - 1.0 - 2.0 * border) / (s.w as f64 - 1.0).max(1.0);
    warp(img, s, |y, x| (border + y * fy, border + x * fx))
}

/// A random small, label-preserving transform: a shift of one pixel, a
/// rotation within ±15°, or a one-pixel crop.
pub(crate) fn perturb(img: &[f32], s: Shape, rng: &mut Rng) -> Vec<f32> {
    match rng.below(3) {
        0 => {
            let d = [(-1.0, 0.0), (1.0, 0.0), (0.0, -1.0), (0.0, 1.0)][rng.below(4) as usize];
            shift(img, s, d.0, d.1)
        }
        1 => rotate(img, s, rng.uniform() * 30.0 - 15.0),
        _ => crop(img, s, 1.0),
    }
}

/// One membership-query-synthesis run.
#[derive(Clone, Debug)]
pub struct SynthesisConfig {
    /// How queries are made.
    pub generator: Generator,
    /// The image shape, for image generators.
    pub image: Option<Shape>,
    /// Real labels before the first round.
    pub seed_size: usize,
    /// Queries per round.
    pub batch_size: usize,
    /// Labels in all.
    pub budget: usize,
    /// Bisection stops once the margin is below this.
    pub tolerance: f64,
    /// The learner.
    pub mlp: MlpConfig,
    /// Seeds the generator and the learner.
    pub seed: u64,
}

/// The perturb generator's image shape, checked against the features.
fn image_shape(cfg: &SynthesisConfig, dim: usize) -> Result<Option<Shape>> {
    if cfg.generator != Generator::Perturb {
        return Ok(None);
    }
    let s = cfg.image.ok_or_else(|| {
        Error::Config("the perturb generator needs --image-shape, e.g. 8x8".into())
    })?;
    if s.h * s.w != dim {
        return Err(Error::Config(format!(
            "--image-shape {}x{} has {} pixels, the features {dim}",
            s.h,
            s.w,
            s.h * s.w,
        )));
    }
    Ok(Some(s))
}

/// Up to `k` points on the decision boundary: bisections between labeled
/// pairs the model tells apart (20·k pairs tried at most).
fn boundary_batch(
    m: &Mlp,
    (xs, n, dim): (&[f32], usize, usize),
    k: usize,
    tolerance: f64,
    rng: &mut Rng,
) -> Result<Vec<Vec<f32>>> {
    let pred: Vec<usize> = m.predict(xs)?;
    let mut out = Vec::new();
    for _ in 0..k * 20 {
        if out.len() == k {
            break;
        }
        let (i, j) = (rng.below(n as u64) as usize, rng.below(n as u64) as usize);
        if pred[i] == pred[j] {
            continue;
        }
        let a = &xs[i * dim..(i + 1) * dim];
        let b = &xs[j * dim..(j + 1) * dim];
        out.push(bisect(m, a, b, tolerance, 30)?.0);
    }
    Ok(out)
}

/// `k` perturbed copies of pool images drawn from the 3·k of smallest
/// margin.
fn perturb_batch(
    data: &Dataset,
    pool: &[usize],
    m: &Mlp,
    s: Shape,
    k: usize,
    rng: &mut Rng,
) -> Result<Vec<Vec<f32>>> {
    let probs = data.predict_proba_rows(m, pool)?;
    let mut order: Vec<(f64, usize)> = probs
        .chunks_exact(data.classes)
        .enumerate()
        .map(|(i, p)| (margin(p), pool[i]))
        .collect();
    order.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut picks: Vec<usize> = order.iter().take(k * 3).map(|x| x.1).collect();
    shuffle(&mut picks, rng);
    Ok(picks
        .iter()
        .take(k)
        .map(|&r| perturb(&data.row(r), s, rng))
        .collect())
}

/// A fresh model trained on (`xs`, `ys`), measured on the test rows.
fn train_round(
    data: &Dataset,
    split: &Split,
    cfg: &SynthesisConfig,
    scaler: &Option<crate::learner::Scaler>,
    (xs, ys): (&[f32], &[usize]),
    round: usize,
) -> Result<(Mlp, Round)> {
    let t = Instant::now();
    let mut m = Mlp::new(
        data.dim,
        data.classes,
        MlpConfig {
            seed: cfg.mlp.seed ^ cfg.seed.wrapping_mul(0x9E37_79B9) ^ round as u64,
            ..cfg.mlp.clone()
        },
    )?
    .with_scaler(scaler.clone())?;
    let fit = m.fit(xs, ys)?;
    let train_s = t.elapsed().as_secs_f64();
    let test_y = data.labels(&split.test);
    let (test_accuracy, macro_f1) = accuracy_and_macro_f1(&test_y, &data.predict(&m, &split.test)?);
    let record = Round {
        round,
        labels: ys.len(),
        test_accuracy,
        macro_f1,
        train_accuracy: fit.train_accuracy,
        train_s,
        predict_s: 0.0,
        select_s: 0.0,
        max_uncertainty: 0.0,
        kappa: None,
        fired: Vec::new(),
    };
    Ok((m, record))
}

/// Runs synthesis rounds: train, evaluate, synthesize a batch, label it with
/// `oracle.label_instances`, add it to the training set, until `budget`
/// labels (seed labels included) are used.
pub fn run(
    data: &Dataset,
    split: &Split,
    cfg: &SynthesisConfig,
    oracle: &mut dyn Oracle,
) -> Result<RunResult> {
    let image = image_shape(cfg, data.dim)?;
    let mut rng = Rng::new(cfg.seed ^ 0x0053_796e);
    let seed_rows = seed_set(&split.pool, &data.y, cfg.seed_size.max(2), false, cfg.seed);
    let mut xs = data.gather(&seed_rows);
    let mut ys = oracle.label(&seed_rows)?;
    let scaler = data.scaler(cfg.mlp.scale, Some(&split.pool))?;
    let mut rounds = Vec::new();
    let mut next_id = data.rows();
    let stop = |rounds, fired: Fired| RunResult {
        rounds,
        labeled: seed_rows.clone(),
        stopped_by: vec![fired],
    };
    for round in 0.. {
        let (m, mut record) = train_round(data, split, cfg, &scaler, (&xs, &ys), round)?;
        let labels = ys.len();
        if labels >= cfg.budget {
            let fired = Fired::new(
                "budget",
                format!("{labels} labels used, budget {}", cfg.budget),
            );
            record.fired.push(fired.clone());
            rounds.push(record);
            return Ok(stop(rounds, fired));
        }
        let k = cfg.batch_size.max(1).min(cfg.budget - labels);
        let t = Instant::now();
        let batch = match image {
            None => boundary_batch(&m, (&xs, labels, data.dim), k, cfg.tolerance, &mut rng)?,
            Some(s) => perturb_batch(data, &split.pool, &m, s, k, &mut rng)?,
        };
        record.select_s = t.elapsed().as_secs_f64();
        rounds.push(record);
        if batch.is_empty() {
            // Every labeled instance is predicted the same class: nothing
            // to bisect. Report and stop rather than loop.
            let why = "all labeled instances share a predicted class".to_string();
            return Ok(stop(rounds, Fired::new("no-boundary", why)));
        }
        let ids: Vec<usize> = (next_id..next_id + batch.len()).collect();
        next_id += batch.len();
        let refs: Vec<&[f32]> = batch.iter().map(|v| v.as_slice()).collect();
        let labels_new = oracle.label_instances(&ids, &refs)?;
        for (x, l) in batch.iter().zip(labels_new) {
            xs.extend_from_slice(x);
            ys.push(l);
        }
    }
    unreachable!("returns at the budget")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perturbations_keep_shape_and_range() {
        let s = Shape { h: 8, w: 8 };
        let img: Vec<f32> = (0..64).map(|i| (i % 17) as f32 / 16.0).collect();
        let mut rng = Rng::new(1);
        for _ in 0..50 {
            let p = perturb(&img, s, &mut rng);
            assert_eq!(p.len(), 64);
            assert!(p.iter().all(|&v| (0.0..=1.0).contains(&v)), "{p:?}");
        }
        // A shift by one pixel moves the content exactly.
        let sh = shift(&img, s, 0.0, 1.0);
        assert_eq!(sh[1], img[0]);
        assert_eq!(sh[0], 0.0);
        // A rotation by 0 is the identity; by 360 too, up to rounding.
        assert_eq!(rotate(&img, s, 0.0), img);
        let r = rotate(&img, s, 360.0);
        assert!(r.iter().zip(&img).all(|(a, b)| (a - b).abs() < 1e-4));
    }
}
