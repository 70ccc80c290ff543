//! The active-learning loop on real data (digits): the learner fits, the
//! loop's bookkeeping holds, stopping criteria fire when their condition
//! holds, models save and load, and margin and entropy sampling beat random.

use crate::common;

use std::collections::HashSet;
use std::path::PathBuf;

use alpool::al::pool_loop::{self, LoopConfig};
use alpool::al::simulate::{self, SimConfig, TestSet};
use alpool::al::stopping::{Plateau, StopConfig};
use alpool::al::{Dataset, GroundTruth, Oracle, Split};
use alpool::learner::{Committee, Mlp, MlpConfig};
use alpool::{BatchStrategy, ColdStart, Disagreement, LogBase, Query, Strategy};

/// The shared digits set (see `common::shared_data`).
fn shared_digits() -> Option<Dataset> {
    let dir = common::shared_data("digits")?;
    Some(Dataset::from_npy(&dir.join("X.npy"), &dir.join("y.npy")).expect("shared digits load"))
}

fn config(strategy: impl Into<Query>, budget: usize) -> LoopConfig {
    LoopConfig {
        strategy: strategy.into(),
        log_base: LogBase::E,
        seed_size: 20,
        seed_stratified: false,
        batch_size: 10,
        stop: StopConfig {
            budget: Some(budget),
            ..Default::default()
        },
        mlp: MlpConfig::default(),
        warm_start: false,
        seed: 1,
        embedding: Default::default(),
        committee: 0,
        mc_samples: 0,
        stochastic: None,
    }
}

#[test]
fn the_embedded_digits_equal_the_shared_ones() {
    let Some(shared) = shared_digits() else {
        return;
    };
    let embedded = Dataset::digits();
    assert_eq!(
        (embedded.rows(), embedded.dim, embedded.classes),
        (1797, 64, 10)
    );
    assert_eq!(embedded.features(), shared.features());
    assert_eq!(embedded.y, shared.y);
}

#[test]
fn the_learner_fits_and_saves() {
    let data = Dataset::digits();
    let rows: Vec<usize> = (0..400).collect();
    let mut m = Mlp::new(64, 10, MlpConfig::default()).unwrap();
    let r = m.fit(&data.gather(&rows), &data.labels(&rows)).unwrap();
    assert!(r.train_accuracy_before < 0.3, "{r:?}");
    assert!(r.train_accuracy > 0.95, "{r:?}");
    assert!(r.steps >= 300, "at least min_steps: {r:?}");
    // Held-out rows: well above chance.
    let test: Vec<usize> = (1400..1797).collect();
    let acc = m
        .accuracy(&data.gather(&test), &data.labels(&test))
        .unwrap();
    assert!(acc > 0.85, "held-out accuracy {acc}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    m.save(&path).unwrap();
    let loaded = Mlp::load(&path).unwrap();
    let x = data.gather(&test);
    assert_eq!(
        m.predict_proba(&x).unwrap(),
        loaded.predict_proba(&x).unwrap()
    );
    // Training is deterministic: same seed, same weights.
    let mut again = Mlp::new(64, 10, MlpConfig::default()).unwrap();
    again.fit(&data.gather(&rows), &data.labels(&rows)).unwrap();
    assert_eq!(
        again.predict_proba(&x).unwrap(),
        m.predict_proba(&x).unwrap()
    );
}

/// An oracle that records every row it is asked about.
struct Recording<'a> {
    inner: GroundTruth<'a>,
    asked: Vec<usize>,
}

impl Oracle for Recording<'_> {
    fn label(&mut self, rows: &[usize]) -> alpool::Result<Vec<usize>> {
        self.asked.extend_from_slice(rows);
        self.inner.label(rows)
    }
}

#[test]
fn the_loop_queries_each_pool_row_at_most_once_and_never_the_test_set() {
    let data = Dataset::digits();
    let split = Split::stratified(&data.y, 0.2, 4);
    let batch = BatchStrategy::ALL.into_iter().map(Query::Batch);
    let rows = [Strategy::Margin, Strategy::Random, Strategy::Entropy].map(Query::Score);
    let cold = ColdStart::ALL.map(Query::Cold);
    // BatchBALD and these read the samples of a committee of three.
    let disagree = [Disagreement::Bald, Disagreement::VoteEntropy].map(Query::Disagree);
    for strategy in rows.into_iter().chain(batch).chain(cold).chain(disagree) {
        let mut oracle = Recording {
            inner: GroundTruth::new(&data.y),
            asked: Vec::new(),
        };
        let cfg = LoopConfig {
            committee: 3,
            ..config(strategy, 80)
        };
        let r = pool_loop::run(&data, &split, &cfg, &mut oracle, None).unwrap();
        let pool: HashSet<usize> = split.pool.iter().copied().collect();
        let test: HashSet<usize> = split.test.iter().copied().collect();
        let unique: HashSet<usize> = oracle.asked.iter().copied().collect();
        assert_eq!(
            unique.len(),
            oracle.asked.len(),
            "{strategy}: a row was queried twice"
        );
        assert!(
            oracle.asked.iter().all(|r| pool.contains(r)),
            "{strategy}: queried outside the pool"
        );
        assert!(
            oracle.asked.iter().all(|r| !test.contains(r)),
            "{strategy}: the test set leaked"
        );
        assert_eq!(oracle.asked, r.labeled);
        // The budget stops the loop exactly at 80 labels: 20 + 6 batches.
        assert_eq!(r.rounds.last().unwrap().labels, 80);
        assert_eq!(r.rounds.len(), 7);
        assert_eq!(r.stopped_by[0].criterion, "budget");
        assert!(r.rounds[..6].iter().all(|x| x.fired.is_empty()));
    }
}

/// Query by committee in the loop: without a committee a strategy that
/// reads samples is refused before any round; with one, the same seed gives
/// the same committee and picks, and each member its own bootstrap.
#[test]
fn a_committee_gives_the_disagreement_strategies_their_samples() {
    let data = Dataset::digits();
    let split = Split::stratified(&data.y, 0.2, 2);
    let bald = Query::Disagree(Disagreement::Bald);
    let run =
        |cfg: &LoopConfig| pool_loop::run(&data, &split, cfg, &mut GroundTruth::new(&data.y), None);
    let err = run(&config(bald, 60)).expect_err("refused").to_string();
    assert!(err.contains("--committee T"), "{err}");
    let cfg = LoopConfig {
        committee: 3,
        ..config(bald, 60)
    };
    let a = run(&cfg).unwrap();
    assert_eq!(a.labeled, run(&cfg).unwrap().labeled);
    let other = run(&LoopConfig {
        seed: 2,
        ..cfg.clone()
    })
    .unwrap();
    assert_ne!(a.labeled, other.labeled);

    let rows: Vec<usize> = (0..200).collect();
    let (x, y) = (data.gather(&rows), data.labels(&rows));
    let fit = |seed| {
        let mlp = MlpConfig {
            hidden: vec![32],
            ..MlpConfig::default()
        };
        Committee::fit(3, (64, 10), &mlp, None, (&x, &y), seed).unwrap()
    };
    let test = data.gather(&(1500..1797).collect::<Vec<_>>());
    let samples = |c: &Committee| c.samples(&|m| m.predict_proba(&test)).unwrap();
    let (one, again) = (samples(&fit(7)), samples(&fit(7)));
    assert_eq!(one, again, "the same seed, the same committee");
    let per = one.len() / 3;
    assert_ne!(one[..per], one[per..2 * per], "members differ");
    assert_ne!(one, samples(&fit(8)), "another seed, another committee");
    assert!(Committee::fit(1, (64, 10), &MlpConfig::default(), None, (&x, &y), 0).is_err());
}

/// MC dropout in the loop: the round model's passes are the samples; a
/// learner without dropout is refused; the same seed gives the same
/// picks, and they are not the committee's.
#[test]
fn mc_dropout_gives_the_loop_its_samples() {
    let data = Dataset::digits();
    let split = Split::stratified(&data.y, 0.2, 3);
    let bald = Query::Disagree(Disagreement::Bald);
    let run =
        |cfg: &LoopConfig| pool_loop::run(&data, &split, cfg, &mut GroundTruth::new(&data.y), None);
    let plain = LoopConfig {
        mc_samples: 6,
        ..config(bald, 60)
    };
    let err = run(&plain).expect_err("refused").to_string();
    assert!(err.contains("--dropout P"), "{err}");
    let mut cfg = plain.clone();
    cfg.mlp.dropout = 0.3;
    let a = run(&cfg).unwrap();
    assert_eq!(a.labeled, run(&cfg).unwrap().labeled);
    let committee = LoopConfig {
        mc_samples: 0,
        committee: 6,
        ..cfg.clone()
    };
    assert_ne!(a.labeled, run(&committee).unwrap().labeled);
    // BatchBALD reads the same passes, and random none.
    let bb = LoopConfig {
        strategy: Query::Batch(alpool::BatchStrategy::BatchBald),
        ..cfg.clone()
    };
    assert_eq!(run(&bb).unwrap().labeled.len(), 60);
    let random = LoopConfig {
        strategy: Strategy::Random.into(),
        ..cfg.clone()
    };
    assert_eq!(run(&random).unwrap().labeled.len(), 60);
}

/// `--stochastic` in the loop: each round draws its batch (the same draw
/// twice, another than the top k), through the blocks for power and
/// softmax and over the whole pool for softrank, for a row-wise strategy
/// and for BALD over MC-dropout passes; at β = ∞ every kind is the plain
/// top k, round after round; random stays the baseline; and a strategy
/// that picks its own batch, or a density weight, is refused.
#[test]
fn stochastic_batches_in_the_loop_are_seeded_draws_that_become_the_top_k() {
    use alpool::{Stochastic, StochasticKind};
    let data = Dataset::digits();
    let split = Split::stratified(&data.y, 0.2, 5);
    let run = |cfg: &LoopConfig| {
        pool_loop::run(&data, &split, cfg, &mut GroundTruth::new(&data.y), None)
            .unwrap()
            .labeled
    };
    let mut bald = config(Disagreement::Bald, 60);
    bald.mc_samples = 5;
    bald.mlp.dropout = 0.3;
    for plain in [config(Strategy::Margin, 60), bald] {
        let top = run(&plain);
        for kind in StochasticKind::ALL {
            let drawn = LoopConfig {
                stochastic: Some(Stochastic::new(kind, 1.0)),
                ..plain.clone()
            };
            let a = run(&drawn);
            assert_eq!(
                a,
                run(&drawn),
                "{kind} {}: not reproducible",
                plain.strategy
            );
            assert_ne!(a, top, "{kind} {}: the top k, not a draw", plain.strategy);
            // The seed set is the same; the first drawn batch is not.
            assert_eq!(a[..20], top[..20]);
            let cold = LoopConfig {
                stochastic: Some(Stochastic::new(kind, f64::INFINITY)),
                ..plain.clone()
            };
            if kind != StochasticKind::Power {
                assert_eq!(run(&cold), top, "{kind} {}: β = ∞", plain.strategy);
            }
            assert_eq!(
                drawn.method().name(),
                format!("{kind}-{}", plain.strategy.name())
            );
        }
    }
    let random = config(Strategy::Random, 40);
    let drawn = LoopConfig {
        stochastic: Some(Stochastic::new(StochasticKind::Power, 1.0)),
        ..random.clone()
    };
    assert_eq!(run(&drawn), run(&random));
    assert_eq!(drawn.method().name(), "random");

    let refused = |cfg: LoopConfig| {
        pool_loop::run(&data, &split, &cfg, &mut GroundTruth::new(&data.y), None)
            .expect_err("refused")
            .to_string()
    };
    let power = Some(Stochastic::new(StochasticKind::Power, 1.0));
    let err = refused(LoopConfig {
        stochastic: power,
        ..config(BatchStrategy::Badge, 40)
    });
    assert!(err.contains("badge picks a batch itself"), "{err}");
    let mut weighted = config(Strategy::Entropy, 40);
    weighted.embedding.density_beta = Some(1.0);
    weighted.stochastic = power;
    assert!(refused(weighted).contains("do not combine"));
    let err = refused(LoopConfig {
        stochastic: Some(Stochastic::new(StochasticKind::Softmax, 0.0)),
        ..config(Strategy::Margin, 40)
    });
    assert!(err.contains("beta must be above 0"), "{err}");
}

/// The loop on the GPU draws the CPU's power and softmax batches, round
/// after round; softrank, which ranks the whole pool on the CPU, is refused
/// before any run.
#[test]
fn the_loops_stochastic_batches_on_the_gpu_are_the_cpus() {
    use alpool::{Method, Stochastic, StochasticKind};
    let Some(gpu) = common::gpu() else { return };
    let data = Dataset::digits();
    let drawn = |q: Query, kind| Method {
        query: q,
        stochastic: Some(Stochastic::new(kind, 2.0)),
    };
    let mut cfg = SimConfig {
        strategies: vec![
            Strategy::Margin.into(),
            drawn(Strategy::Margin.into(), StochasticKind::Power),
            drawn(Strategy::Entropy.into(), StochasticKind::Softmax),
        ],
        repeats: 2,
        test: TestSet::Fraction(0.2),
        base: config(Strategy::Random, 80),
    };
    let picks = |runs: Vec<simulate::Run>| -> Vec<(String, Vec<usize>)> {
        runs.into_iter()
            .map(|r| (r.name, r.result.labeled))
            .collect()
    };
    let cpu = picks(simulate::run(&data, &cfg, None).unwrap());
    assert_eq!(cpu, picks(simulate::run(&data, &cfg, Some(&gpu)).unwrap()));
    assert_ne!(cpu[0].1, cpu[2].1, "power-margin drew margin's batches");
    cfg.strategies
        .push(drawn(Strategy::Entropy.into(), StochasticKind::Softrank));
    let err = simulate::run(&data, &cfg, Some(&gpu))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("softrank-entropy: a softrank batch"), "{err}");
}

#[test]
fn target_accuracy_and_plateau_stop_the_loop_when_they_hold() {
    let data = Dataset::digits();
    let split = Split::stratified(&data.y, 0.2, 4);
    let mut cfg = config(Strategy::Margin, 300);
    cfg.stop.target_accuracy = Some(0.85);
    let r = pool_loop::run(&data, &split, &cfg, &mut GroundTruth::new(&data.y), None).unwrap();
    let first = r
        .rounds
        .iter()
        .position(|x| x.test_accuracy >= 0.85)
        .expect("reaches 0.85");
    assert_eq!(
        r.rounds.len(),
        first + 1,
        "stops at the first round at or above the target"
    );
    assert_eq!(r.stopped_by[0].criterion, "target-accuracy");

    let mut cfg = config(Strategy::Margin, 300);
    cfg.stop.plateau = Some(Plateau {
        min_delta: 0.5,
        patience: 3,
    });
    let r = pool_loop::run(&data, &split, &cfg, &mut GroundTruth::new(&data.y), None).unwrap();
    // No round can gain 0.5 over the first, so it stops after round 3.
    assert_eq!(r.rounds.len(), 4);
    assert_eq!(r.stopped_by[0].criterion, "plateau");
}

#[test]
fn margin_and_entropy_beat_random_on_digits() {
    // The README's protocol: 80/20 stratified split, 20 seed labels,
    // batches of 10, up to 300 labels, 5 seeds, on ../shared's digits.
    let Some(data) = shared_digits() else { return };
    let strategies: Vec<Query> = [Strategy::Random, Strategy::Margin, Strategy::Entropy]
        .map(Query::Score)
        .to_vec();
    let cfg = SimConfig {
        strategies: strategies.iter().map(|&q| q.into()).collect(),
        repeats: 5,
        test: TestSet::Fraction(0.2),
        base: config(Strategy::Random, 300),
    };
    let runs = simulate::run(&data, &cfg, None).unwrap();
    let summary = simulate::summarize(&runs, &cfg.strategies);
    let aulc = |s: Strategy| {
        summary
            .iter()
            .find(|x| x.name == s.name())
            .unwrap()
            .aulc_mean
    };
    eprintln!("{}", alpool::al::curves::table(&summary));
    assert!(
        aulc(Strategy::Margin) > aulc(Strategy::Random),
        "margin {} vs random {}",
        aulc(Strategy::Margin),
        aulc(Strategy::Random)
    );
    assert!(
        aulc(Strategy::Entropy) > aulc(Strategy::Random),
        "entropy {} vs random {}",
        aulc(Strategy::Entropy),
        aulc(Strategy::Random)
    );
}

/// The embedded digits as `X.npy` and `y.npy` in `dir`.
fn digits_npy(dir: &std::path::Path) -> (PathBuf, PathBuf) {
    let (x, y) = (dir.join("X.npy"), dir.join("y.npy"));
    let d = Dataset::digits();
    alpool::pool::npy::save(&x, &[d.rows(), d.dim], &d.features()).unwrap();
    let labels: Vec<i64> = d.y.iter().map(|&v| v as i64).collect();
    alpool::pool::npy::save(&y, &[d.rows()], &labels).unwrap();
    (x, y)
}

/// `alpool simulate` on `x` and `y`, writing to `out`, with `extra` flags.
fn simulate_on(
    (x, y, out): (&std::path::Path, &std::path::Path, &std::path::Path),
    extra: &[&str],
) -> std::process::Output {
    let mut args = vec!["simulate", "--features", x.to_str().unwrap()];
    args.extend([
        "--labels",
        y.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    args.extend_from_slice(extra);
    common::alpool(&args)
}

#[test]
fn simulate_writes_its_reports() {
    let dir = tempfile::tempdir().unwrap();
    let (x, y) = digits_npy(dir.path());
    let out: PathBuf = dir.path().join("out");
    let o = simulate_on(
        (&x, &y, &out),
        &[
            "--budget",
            "50",
            "--strategies",
            "random,least-confidence",
            "--repeats",
            "2",
        ],
    );
    assert!(o.status.success(), "{}", common::stderr(&o));
    let table = common::stdout(&o);
    assert!(
        table.contains("least-confidence") && table.contains("vs random"),
        "{table}"
    );
    let jsonl = std::fs::read_to_string(out.join("rounds.jsonl")).unwrap();
    // 2 strategies x 2 repeats x 4 rounds (20, 30, 40, 50 labels).
    assert_eq!(jsonl.lines().count(), 16);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["strategies"].as_array().unwrap().len(), 2);
    assert!(
        std::fs::read_to_string(out.join("curves.svg"))
            .unwrap()
            .starts_with("<svg")
    );
    assert_eq!(
        std::fs::read_to_string(out.join("rounds.csv"))
            .unwrap()
            .lines()
            .count(),
        17
    );
}

/// `simulate --strategies power-…` names each drawn strategy in the table
/// and the files, and refuses a prefix on a strategy that cannot draw, and
/// `--beta` with nothing to draw.
#[test]
fn simulate_names_its_stochastic_batches() {
    let dir = tempfile::tempdir().unwrap();
    let (x, y) = digits_npy(dir.path());
    let out: PathBuf = dir.path().join("out");
    let args = |strategies: &str| {
        let flags = ["--budget", "40", "--strategies", strategies, "--beta", "4"];
        simulate_on((&x, &y, &out), &[&flags[..], &["--repeats", "1"]].concat())
    };
    let o = args("random,softmax-margin");
    assert!(o.status.success(), "{}", common::stderr(&o));
    let table = common::stdout(&o);
    assert!(table.contains("softmax-margin"), "{table}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let names: Vec<&str> = summary["strategies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["strategy"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["random", "softmax-margin"]);
    let drawn = &summary["meta"]["stochastic"];
    assert_eq!(drawn.as_array().map(Vec::len), Some(1), "{drawn}");
    assert_eq!(drawn[0]["strategy"], "softmax-margin");
    assert_eq!(drawn[0]["beta"], 4.0);
    for (list, says) in [
        ("margin,power-coreset", "coreset picks a batch itself"),
        ("power-random,margin", "random is the uniform baseline"),
        ("margin,power-nonsense", "nonsense"),
        ("random,margin", "none is listed"),
    ] {
        let o = args(list);
        assert!(!o.status.success(), "{list}");
        let err = common::stderr(&o);
        assert!(err.contains(says), "{list}: {err}");
    }
}

#[test]
fn bad_datasets_name_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("d.csv");
    std::fs::write(&csv, "a,b,label\n0.1,0.2,0\n0.3,x,1\n").unwrap();
    let e = Dataset::from_csv(&csv, None).unwrap_err().to_string();
    assert!(
        e.contains("d.csv") && e.contains("line 3") && e.contains("\"x\""),
        "{e}"
    );
    std::fs::write(&csv, "a,b,label\n0.1,0.2,0\n0.3,1\n").unwrap();
    let e = Dataset::from_csv(&csv, None).unwrap_err().to_string();
    assert!(e.contains("line 3") && e.contains("2 fields"), "{e}");
    std::fs::write(&csv, "a,b,label\n0.1,0.2,cat\n0.3,0.4,dog\n").unwrap();
    let d = Dataset::from_csv(&csv, None).unwrap();
    assert_eq!((d.y.clone(), d.classes, d.dim), (vec![0, 1], 2, 2));
}

/// Digits written as a .npy of `dtype` ("u8": the 0..16 pixel values as
/// bytes, read back as v / 255; "f16"), with their labels.
fn digits_file(dir: &std::path::Path, dtype: &str) -> Dataset {
    let d = Dataset::digits();
    let (x, y) = (dir.join(format!("x_{dtype}.npy")), dir.join("y.npy"));
    let shape = [d.rows(), d.dim];
    let values = d.features();
    match dtype {
        "u8" => {
            let b: Vec<u8> = values.iter().map(|&v| v as u8).collect();
            alpool::pool::npy::save(&x, &shape, &b).unwrap();
        }
        _ => {
            let h: Vec<half::f16> = values.iter().map(|&v| half::f16::from_f32(v)).collect();
            alpool::pool::npy::save(&x, &shape, &h).unwrap();
        }
    }
    let labels: Vec<i64> = d.y.iter().map(|&v| v as i64).collect();
    alpool::pool::npy::save(&y, &[d.rows()], &labels).unwrap();
    Dataset::from_npy(&x, &y).unwrap()
}

#[test]
fn a_mapped_dataset_runs_the_loop_its_features_in_memory_run() {
    let dir = tempfile::tempdir().unwrap();
    for dtype in ["u8", "f16"] {
        let mapped = digits_file(dir.path(), dtype);
        let held = mapped
            .with_features(mapped.features().into_owned())
            .unwrap();
        assert!(mapped.is_mapped() && !held.is_mapped());
        assert_eq!(mapped.unit_images, dtype == "u8");
        let split = Split::stratified(&mapped.y, 0.25, 3);
        let queries: [Query; 5] = [
            Strategy::Margin.into(),
            Strategy::Entropy.into(),
            Strategy::Random.into(),
            Query::Batch(BatchStrategy::Badge),
            Query::Batch(BatchStrategy::Coreset),
        ];
        for q in queries {
            let mut cfg = config(q, 60);
            // A threshold no kappa reaches: the stop set's predictions are
            // compared every round, and the run goes on to the budget.
            cfg.stop.stabilizing = Some(alpool::al::stopping::Stabilizing {
                kappa: 2.0,
                rounds: 2,
                stop_set: 300,
            });
            cfg.mlp.hidden = vec![32];
            let run = |d: &Dataset| {
                pool_loop::run(d, &split, &cfg, &mut GroundTruth::new(&d.y), None).unwrap()
            };
            let (a, b) = (run(&mapped), run(&held));
            assert_eq!(a.labeled, b.labeled, "{dtype} {q:?}");
            let acc = |r: &pool_loop::RunResult| -> Vec<(f64, Option<f64>)> {
                r.rounds
                    .iter()
                    .map(|r| (r.test_accuracy, r.kappa))
                    .collect()
            };
            assert_eq!(acc(&a), acc(&b), "{dtype} {q:?}");
            assert!(a.labeled.len() >= 50, "{dtype} {q:?}: {}", a.labeled.len());
        }
    }
}

/// Cold-start strategies in the loop, at a small budget where they matter:
/// over the learner's hidden layer, TypiClust and the k-means baseline beat
/// random on digits (10 seed labels, batches of 10, 60 labels, 3 seeds).
#[test]
fn typiclust_and_kmeans_beat_random_at_a_small_budget() {
    let data = Dataset::digits();
    let strategies: Vec<Query> = vec![
        Strategy::Random.into(),
        ColdStart::Typiclust.into(),
        ColdStart::Kmeans.into(),
    ];
    let mut base = config(Strategy::Random, 60);
    base.seed_size = 10;
    let cfg = SimConfig {
        strategies: strategies.iter().map(|&q| q.into()).collect(),
        repeats: 3,
        test: TestSet::Fraction(0.2),
        base,
    };
    let runs = simulate::run(&data, &cfg, None).unwrap();
    let summary = simulate::summarize(&runs, &cfg.strategies);
    eprintln!("{}", alpool::al::curves::table(&summary));
    let aulc = |q: &Query| {
        summary
            .iter()
            .find(|x| x.name == q.name())
            .unwrap()
            .aulc_mean
    };
    for q in &strategies[1..] {
        assert!(
            aulc(q) > aulc(&strategies[0]) + 0.01,
            "{q} {} vs random {}",
            aulc(q),
            aulc(&strategies[0])
        );
    }
}

/// Given embeddings replace the learner's: the loop's picks follow them,
/// and embeddings scaled by 2 (every distance doubled, exactly) give the
/// same picks, ProbCover's δ by purity included.
#[test]
fn given_embeddings_drive_the_cold_start_picks() {
    let data = Dataset::digits();
    let split = Split::stratified(&data.y, 0.2, 4);
    let dir = tempfile::tempdir().unwrap();
    let x = data.features();
    let save = |name: &str, scale: f32| {
        let p = dir.path().join(name);
        let v: Vec<f32> = x.iter().map(|&v| v * scale).collect();
        alpool::pool::npy::save(&p, &[data.rows(), data.dim], &v).unwrap();
        std::sync::Arc::new(alpool::features::FeaturePool::open(&[&p]).unwrap())
    };
    let (e1, e2) = (save("e1.npy", 1.0), save("e2.npy", 2.0));
    for q in [
        ColdStart::Typiclust,
        ColdStart::Probcover,
        ColdStart::Kmeans,
    ] {
        let picks = |given: Option<std::sync::Arc<alpool::features::FeaturePool>>| {
            let mut cfg = config(q, 50);
            cfg.embedding.given = given;
            let mut oracle = GroundTruth::new(&data.y);
            pool_loop::run(&data, &split, &cfg, &mut oracle, None)
                .unwrap()
                .labeled
        };
        let (learned, given, doubled) = (
            picks(None),
            picks(Some(e1.clone())),
            picks(Some(e2.clone())),
        );
        assert_eq!(given.len(), 50);
        assert_eq!(
            given, doubled,
            "{q}: scaling the embeddings changed the picks"
        );
        assert_ne!(
            given[20..],
            learned[20..],
            "{q}: the given embeddings were not used"
        );
    }
    // One embedding per dataset row, or a clear error.
    let short = dir.path().join("short.npy");
    alpool::pool::npy::save(&short, &[10, 4], &[0f32; 40]).unwrap();
    let mut cfg = config(ColdStart::Typiclust, 50);
    cfg.embedding.given = Some(std::sync::Arc::new(
        alpool::features::FeaturePool::open(&[&short]).unwrap(),
    ));
    let err =
        pool_loop::run(&data, &split, &cfg, &mut GroundTruth::new(&data.y), None).unwrap_err();
    assert!(
        err.to_string().contains("short.npy") && err.to_string().contains("1797"),
        "{err}"
    );
}

#[test]
fn density_weighting_in_the_loop_with_beta_zero_is_the_strategy_itself() {
    // β = 0 weighs every row by 1: the whole-pool density path must pick
    // what the block-by-block margin path picks; β = 1 must change them.
    let data = Dataset::digits();
    let split = Split::stratified(&data.y, 0.2, 2);
    let plain = config(Strategy::Margin, 60);
    let mut zero = config(Strategy::Margin, 60);
    zero.embedding.density_beta = Some(0.0);
    let mut one = config(Strategy::Margin, 60);
    one.embedding.density_beta = Some(1.0);
    let run = |cfg: &LoopConfig| {
        pool_loop::run(&data, &split, cfg, &mut GroundTruth::new(&data.y), None).unwrap()
    };
    let (p, z, o) = (run(&plain), run(&zero), run(&one));
    assert_eq!(z.labeled, p.labeled);
    assert_eq!(p.labeled.len(), 60);
    assert_ne!(o.labeled[20..], p.labeled[20..]);
    assert_eq!(o.labeled[..20], p.labeled[..20], "the same seed set");
    // Random stays the unweighted baseline.
    let mut weighted_random = config(Strategy::Random, 60);
    weighted_random.embedding.density_beta = Some(1.0);
    assert_eq!(
        run(&weighted_random).labeled,
        run(&config(Strategy::Random, 60)).labeled
    );
}
