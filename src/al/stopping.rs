//! Stopping criteria for the active-learning loop. Each is checked after a
//! round's model is trained and evaluated; any that holds stops the loop,
//! and the report says which fired and in which round.

/// Which criteria to use (any combination; all off = run to the budget or
/// until the pool is empty).
/// A stopping criterion that fired, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Fired {
    /// Its name, e.g. "budget" or "plateau".
    pub criterion: String,
    /// What held, in words.
    pub why: String,
}

impl Fired {
    /// A criterion `criterion` that fired because `why`.
    pub fn new(criterion: impl Into<String>, why: impl Into<String>) -> Fired {
        Fired {
            criterion: criterion.into(),
            why: why.into(),
        }
    }
}

/// When a run stops; every criterion set is checked after each round.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StopConfig {
    /// Stop once this many labels are used.
    pub budget: Option<usize>,
    /// Stop once test accuracy reaches this.
    pub target_accuracy: Option<f64>,
    /// Stop when test accuracy has not improved by more than `min_delta`
    /// over the best so far for `patience` rounds.
    pub plateau: Option<Plateau>,
    /// Stop when successive models agree on a fixed stop set (Cohen's kappa
    /// ≥ `kappa`) for `rounds` rounds in a row (Bloodgood & Vijay-Shanker 2009).
    pub stabilizing: Option<Stabilizing>,
    /// Stop when the pool's least-confidence uncertainty (its maximum or
    /// mean) falls below `threshold`.
    pub uncertainty: Option<Uncertainty>,
}

/// Stop when test accuracy has not risen by `min_delta` for `patience` rounds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Plateau {
    /// The smallest gain that counts.
    pub min_delta: f64,
    /// Rounds without a gain before stopping.
    pub patience: usize,
}

/// Stop when successive models agree on the stop set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stabilizing {
    /// Cohen's kappa at or above which they agree.
    pub kappa: f64,
    /// Rounds in a row they must agree.
    pub rounds: usize,
    /// Rows of the initial pool kept aside as the stop set.
    pub stop_set: usize,
}

/// Stop when the pool's uncertainty falls below a threshold.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Uncertainty {
    /// The least-confidence level.
    pub threshold: f64,
    /// Mean instead of maximum.
    pub mean: bool,
}

/// The state each criterion carries between rounds.
#[derive(Clone, Debug, Default)]
pub struct Stopper {
    /// The criteria.
    pub config: StopConfig,
    best_accuracy: f64,
    rounds_without_gain: usize,
    previous_predictions: Option<Vec<usize>>,
    stable_rounds: usize,
    /// The latest kappa, for the report.
    pub last_kappa: Option<f64>,
}

/// One round's facts that the criteria look at.
pub struct RoundFacts<'a> {
    /// Labels so far.
    pub labels: usize,
    /// Test accuracy.
    pub accuracy: f64,
    /// The model's predictions on the stop set.
    pub stop_set_predictions: Option<&'a [usize]>,
    /// Least-confidence scores (1 − max p) of the unlabeled pool.
    pub pool_uncertainty: Option<&'a [f64]>,
}

impl Stopper {
    /// A stopper with no history.
    pub fn new(config: StopConfig) -> Self {
        Stopper {
            config,
            best_accuracy: f64::NEG_INFINITY,
            ..Default::default()
        }
    }

    /// Updates the state with a round's facts and returns the criteria that
    /// hold now, each with a short explanation.
    pub fn check(&mut self, f: &RoundFacts) -> Vec<Fired> {
        let mut fired = Vec::new();
        let c = self.config.clone();
        if let Some(b) = c.budget
            && f.labels >= b
        {
            fired.push(Fired::new(
                "budget",
                format!("{} labels used, budget {b}", f.labels),
            ));
        }
        if let Some(t) = c.target_accuracy
            && f.accuracy >= t
        {
            fired.push(Fired::new(
                "target-accuracy",
                format!("accuracy {:.4} ≥ {t}", f.accuracy),
            ));
        }
        if let Some(p) = c.plateau {
            if f.accuracy > self.best_accuracy + p.min_delta {
                self.rounds_without_gain = 0;
            } else {
                self.rounds_without_gain += 1;
            }
            self.best_accuracy = self.best_accuracy.max(f.accuracy);
            if self.rounds_without_gain >= p.patience {
                fired.push(Fired::new(
                    "plateau",
                    format!(
                        "no gain above {} for {} rounds (best {:.4})",
                        p.min_delta, self.rounds_without_gain, self.best_accuracy
                    ),
                ));
            }
        }
        if let (Some(s), Some(pred)) = (c.stabilizing, f.stop_set_predictions) {
            if let Some(prev) = &self.previous_predictions {
                let k = cohen_kappa(prev, pred);
                self.last_kappa = Some(k);
                if k >= s.kappa {
                    self.stable_rounds += 1;
                } else {
                    self.stable_rounds = 0;
                }
                if self.stable_rounds >= s.rounds {
                    fired.push(Fired::new(
                        "stabilizing-predictions",
                        format!(
                            "kappa ≥ {} for {} rounds (last {k:.4})",
                            s.kappa, self.stable_rounds
                        ),
                    ));
                }
            }
            self.previous_predictions = Some(pred.to_vec());
        }
        if let (Some(u), Some(scores)) = (c.uncertainty, f.pool_uncertainty)
            && !scores.is_empty()
        {
            let v = if u.mean {
                scores.iter().sum::<f64>() / scores.len() as f64
            } else {
                scores.iter().copied().fold(f64::NEG_INFINITY, f64::max)
            };
            if v < u.threshold {
                fired.push(Fired::new(
                    "pool-uncertainty",
                    format!(
                        "{} uncertainty {v:.4} < {}",
                        if u.mean { "mean" } else { "max" },
                        u.threshold
                    ),
                ));
            }
        }
        fired
    }
}

/// Cohen's kappa of two labelings: (p_o − p_e) / (1 − p_e); 1 when both
/// are identical and constant (p_e = 1).
pub fn cohen_kappa(a: &[usize], b: &[usize]) -> f64 {
    let n = a.len().min(b.len());
    if n == 0 {
        return 1.0;
    }
    let k = a.iter().chain(b).copied().max().unwrap_or(0) + 1;
    let mut ca = vec![0f64; k];
    let mut cb = vec![0f64; k];
    let mut agree = 0f64;
    for (&x, &y) in a.iter().zip(b).take(n) {
        ca[x] += 1.0;
        cb[y] += 1.0;
        if x == y {
            agree += 1.0;
        }
    }
    let po = agree / n as f64;
    let pe: f64 = ca.iter().zip(&cb).map(|(x, y)| x * y).sum::<f64>() / (n * n) as f64;
    if (1.0 - pe).abs() < 1e-12 {
        1.0
    } else {
        (po - pe) / (1.0 - pe)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(labels: usize, accuracy: f64) -> RoundFacts<'static> {
        RoundFacts {
            labels,
            accuracy,
            stop_set_predictions: None,
            pool_uncertainty: None,
        }
    }

    fn names(v: &[Fired]) -> Vec<&str> {
        v.iter().map(|f| f.criterion.as_str()).collect()
    }

    #[test]
    fn budget_and_target_fire_exactly_when_reached() {
        let mut s = Stopper::new(StopConfig {
            budget: Some(100),
            target_accuracy: Some(0.9),
            ..Default::default()
        });
        assert!(s.check(&facts(90, 0.5)).is_empty());
        assert_eq!(names(&s.check(&facts(100, 0.5))), ["budget"]);
        assert_eq!(names(&s.check(&facts(50, 0.9))), ["target-accuracy"]);
        assert!(s.check(&facts(50, 0.8999)).is_empty());
    }

    #[test]
    fn plateau_fires_after_patience_rounds_without_gain() {
        let mut s = Stopper::new(StopConfig {
            plateau: Some(Plateau {
                min_delta: 0.01,
                patience: 2,
            }),
            ..Default::default()
        });
        let accs = [0.5, 0.6, 0.605, 0.609, 0.7, 0.7, 0.705];
        let fired: Vec<bool> = accs
            .iter()
            .map(|&a| !s.check(&facts(0, a)).is_empty())
            .collect();
        // 0.605 and 0.609 gain < 0.01 over 0.6: fires at the second; 0.7
        // resets; 0.7 and 0.705 then fire again at the second.
        assert_eq!(fired, [false, false, false, true, false, false, true]);
    }

    #[test]
    fn stabilizing_predictions_fire_after_consecutive_agreement() {
        let mut s = Stopper::new(StopConfig {
            stabilizing: Some(Stabilizing {
                kappa: 0.99,
                rounds: 2,
                stop_set: 6,
            }),
            ..Default::default()
        });
        let preds: [&[usize]; 5] = [
            &[0, 1, 2, 0, 1, 2],
            &[0, 1, 2, 0, 1, 1],
            &[0, 1, 2, 0, 1, 1],
            &[0, 1, 2, 0, 1, 1],
            &[2, 1, 2, 0, 1, 1],
        ];
        let mut fired = Vec::new();
        for p in preds {
            let f = RoundFacts {
                labels: 0,
                accuracy: 0.0,
                stop_set_predictions: Some(p),
                pool_uncertainty: None,
            };
            fired.push(!s.check(&f).is_empty());
        }
        assert_eq!(fired, [false, false, false, true, false]);
        assert!((cohen_kappa(&[0, 1, 0, 1], &[0, 1, 0, 1]) - 1.0).abs() < 1e-12);
        assert!(cohen_kappa(&[0, 1, 0, 1], &[1, 0, 1, 0]) < 0.0);
    }

    #[test]
    fn pool_uncertainty_fires_below_threshold() {
        for (mean, scores, fires) in [
            (false, [0.1, 0.3], false),
            (false, [0.1, 0.19], true),
            (true, [0.1, 0.3], false),
            (true, [0.1, 0.25], true),
        ] {
            let mut s = Stopper::new(StopConfig {
                uncertainty: Some(Uncertainty {
                    threshold: 0.2,
                    mean,
                }),
                ..Default::default()
            });
            let f = RoundFacts {
                labels: 0,
                accuracy: 0.0,
                stop_set_predictions: None,
                pool_uncertainty: Some(&scores),
            };
            assert_eq!(!s.check(&f).is_empty(), fires, "mean={mean} {scores:?}");
        }
    }
}
