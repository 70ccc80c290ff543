//! The regression strategies' canonical quantities: a row's spread (the
//! `std` strategy) and the greedy-sampling distances (`gsx`, `gsy`, `igs`,
//! whose engine is `batch::greedy`). Each is defined once, in f64, on the
//! values as stored (float16 and float32 widen exactly).

/// The canonical spread of one row, `values` as read: T predictions (one
/// value a sample, `classes` = 1) give their population standard
/// deviation `sqrt(Σ (x_t − m)² / T)` with `m = Σ x_t / T`, each sum in
/// sample order; a (mean, std) row (`classes` = 2, one sample) gives its
/// std as stored.
pub fn spread(values: &[f64], classes: usize) -> f64 {
    if classes == 2 {
        return values[1];
    }
    let t = values.len() as f64;
    let mean = values.iter().sum::<f64>() / t;
    let var = values.iter().map(|&x| (x - mean) * (x - mean)).sum::<f64>() / t;
    var.sqrt()
}

/// The canonical output-space term of greedy sampling: the squared
/// difference of a row's prediction and a labeled (or picked) row's
/// target. `gsy` ranks by its min over the labeled rows; `igs` multiplies
/// it by the canonical squared feature distance first. Squares rather
/// than distances: the ranking is the same (both are monotone in the
/// distance), and no square root rounds.
#[inline]
pub fn sq_diff(prediction: f64, target: f64) -> f64 {
    let d = prediction - target;
    d * d
}

/// EMCM's canonical score (Cai, Zhang and Zhou 2013, as scikit-activeml's
/// `ExpectedModelChangeMaximization`): the mean over the T ensemble
/// predictions `s_t` of `|s_t − f|`, `f` the model's prediction (summed in
/// sample order, over T), times the Euclidean norm of the row's features
/// (`sq_norm`: the canonical f64 sum of squares). The expected change of a
/// linear model's gradient `(f(x) − y)·x` when the label is drawn from the
/// ensemble.
pub fn emcm(samples: &[f64], prediction: f64, sq_norm: f64) -> f64 {
    let t = samples.len() as f64;
    let spread = samples.iter().map(|&s| (s - prediction).abs()).sum::<f64>() / t;
    spread * sq_norm.sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_is_the_population_std() {
        // Population form: divided by T, not T − 1.
        assert_eq!(spread(&[1.0, 3.0], 1), 1.0);
        assert_eq!(spread(&[2.0, 2.0, 2.0], 1), 0.0);
        assert_eq!(spread(&[5.0, 0.25], 2), 0.25);
        let v = [1.0, 2.0, 4.0, 8.0];
        let m = 15.0 / 4.0;
        let want = (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / 4.0).sqrt();
        assert_eq!(spread(&v, 1), want);
    }
}
