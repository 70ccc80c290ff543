//! Stream-based selective sampling and membership query synthesis.

use crate::common;

use std::io::Write;
use std::process::{Command, Stdio};

use crate::rng::Rng;
use alpool::al::stream::{self, Rule, StreamConfig};
use alpool::al::synthesis::{self, Generator, Shape, SynthesisConfig};
use alpool::al::{Dataset, FileOracle, GroundTruth, NearestNeighbour, Oracle, Split};
use alpool::learner::{Mlp, MlpConfig, argmax};
use alpool::query::Strategy;

/// Three Gaussian blobs in 4 dimensions; the label is the blob.
fn blobs(n: usize, seed: u64) -> (Vec<Vec<f32>>, Vec<usize>) {
    let mut rng = Rng::new(seed);
    let centers = [
        [0.0, 0.0, 1.0, 0.0],
        [1.5, 0.0, 0.0, 1.0],
        [0.0, 1.5, 0.5, 0.5],
    ];
    let mut xs = Vec::with_capacity(n);
    let mut ys = Vec::with_capacity(n);
    for _ in 0..n {
        let c = rng.below(3) as usize;
        xs.push(
            centers[c]
                .iter()
                .map(|&m| (m + 0.6 * rng.normal()) as f32)
                .collect(),
        );
        ys.push(c);
    }
    (xs, ys)
}

fn small_mlp() -> MlpConfig {
    MlpConfig {
        hidden: vec![16],
        min_steps: 60,
        epochs: 5,
        ..MlpConfig::default()
    }
}

fn config(rule: Rule, budget: f64) -> StreamConfig {
    StreamConfig {
        strategy: Strategy::Margin,
        rule,
        budget,
        window: 1000,
        seed_size: 10,
        update_every: 50,
        warm_start: false,
        mlp: small_mlp(),
        max_labeled: 10_000,
        checkpoint_every: 2_000,
        seed: 3,
        scaling: Default::default(),
    }
}

#[test]
fn the_budget_holds_on_ten_thousand_instances_for_every_rule() {
    let (xs, ys) = blobs(10_000, 1);
    let (tx, ty) = blobs(600, 2);
    let test_x: Vec<f32> = tx.into_iter().flatten().collect();
    for rule in [
        Rule::VariableUncertainty { step: 0.01 },
        Rule::Threshold(0.3),
        Rule::Random,
    ] {
        let mut source = xs
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, x)| Ok((i as u64, x)));
        let mut oracle = GroundTruth::new(&ys);
        let mut decisions = Vec::new();
        let s = stream::run(
            &mut source,
            4,
            3,
            &config(rule, 0.1),
            &mut oracle,
            Some(stream::TestSet { x: &test_x, y: &ty }),
            &mut |d| {
                decisions.push(d.clone());
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(s.seen, 10_000);
        assert!(s.queries <= 1_000, "{}: {} queries", rule.name(), s.queries);
        assert!(
            s.queries >= 300,
            "{}: only {} queries",
            rule.name(),
            s.queries
        );
        // Exactly the queried instances went to the oracle, each once.
        let queried: Vec<usize> = decisions
            .iter()
            .filter(|d| d.queried)
            .map(|d| d.index as usize)
            .collect();
        assert_eq!(queried, oracle.queried);
        assert_eq!(decisions.len(), 10_000);
        // The model learns the blobs.
        assert!(
            s.final_accuracy.unwrap() > 0.85,
            "{}: {:?}",
            rule.name(),
            s.final_accuracy
        );
        assert!(!s.checkpoints.is_empty());
    }
}

#[test]
fn bisection_lands_on_the_decision_boundary() {
    let data = Dataset::digits();
    let rows: Vec<usize> = (0..200).collect();
    let mut m = Mlp::new(64, 10, small_mlp()).unwrap();
    m.fit(&data.gather(&rows), &data.labels(&rows)).unwrap();
    let pred = m.predict(&data.gather(&rows)).unwrap();
    let mut done = 0;
    for i in 0..50 {
        let j = (i + 7) % 200;
        if pred[i] == pred[j] {
            continue;
        }
        let (x, margin) = synthesis::bisect(&m, &data.row(i), &data.row(j), 0.01, 40).unwrap();
        let p = m.predict_proba(&x).unwrap();
        let (a, b) = alpool::score::top2(&p);
        assert!(
            margin < 0.01 && ((a - b) as f64 - margin).abs() < 1e-9,
            "rows {i}, {j}: margin {margin}"
        );
        // The point lies on the segment.
        assert_eq!(x.len(), 64);
        done += 1;
    }
    assert!(done >= 10, "only {done} pairs had different predictions");
}

#[test]
fn the_proxy_oracle_returns_the_nearest_neighbours_label() {
    let data = Dataset::new(vec![0.0, 0.0, 1.0, 1.0, 5.0, 5.0], vec![2, 0, 1], 2, "toy").unwrap();
    let mut o = NearestNeighbour {
        data: &data,
        rows: vec![0, 1, 2],
    };
    let got = o
        .label_instances(&[100, 101, 102], &[&[0.9, 1.2], &[4.0, 4.5], &[0.1, -0.2]])
        .unwrap();
    assert_eq!(got, [0, 1, 2]);
    // Restricted to some rows (e.g. without the test set), it ignores the rest.
    let mut o = NearestNeighbour {
        data: &data,
        rows: vec![0, 2],
    };
    assert_eq!(o.label_instances(&[1], &[&[0.9, 1.2]]).unwrap(), [2]);
}

#[test]
fn a_person_as_oracle_reads_labels_back() {
    let mut queries = Vec::new();
    let answers = "3\n1\nseven\n";
    let mut o = FileOracle::new(&mut queries, answers.as_bytes(), 5);
    assert_eq!(
        o.label_instances(&[10, 11], &[&[0.5, 1.0], &[2.0, 0.0]])
            .unwrap(),
        [3, 1]
    );
    let e = o
        .label_instances(&[12], &[&[0.0, 0.0]])
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 3") && e.contains("seven"), "{e}");
    let q = String::from_utf8(queries).unwrap();
    assert_eq!(
        q.lines().next().unwrap(),
        r#"{"features":[0.5,1.0],"id":10}"#
    );
    assert_eq!(q.lines().count(), 3);
}

#[test]
fn synthesis_runs_to_the_budget_with_both_generators() {
    let data = Dataset::digits();
    let split = Split::stratified(&data.y, 0.2, 1);
    for generator in [Generator::Boundary, Generator::Perturb] {
        let cfg = SynthesisConfig {
            generator,
            image: Some(Shape { h: 8, w: 8 }),
            seed_size: 20,
            batch_size: 10,
            budget: 50,
            tolerance: 0.05,
            mlp: MlpConfig::default(),
            seed: 1,
        };
        let mut o = NearestNeighbour {
            data: &data,
            rows: split.pool.clone(),
        };
        let r = synthesis::run(&data, &split, &cfg, &mut o).unwrap();
        assert_eq!(r.rounds.last().unwrap().labels, 50, "{generator:?}");
        assert_eq!(r.rounds.len(), 4);
        // Far above chance (0.1), whatever the generator.
        let acc = r.rounds.last().unwrap().test_accuracy;
        assert!(acc > 0.5, "{generator:?}: {acc}");
    }
}

#[test]
fn bad_stream_input_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let y = dir.path().join("y.npy");
    alpool::pool::npy::save(&y, &[4], &[0i64, 1, 0, 1]).unwrap();
    for (input, needle) in [
        ("0.1,0.2\n0.3\n", "line 2"),
        ("0.1,0.2\n0.3,nan\n", "NaN"),
        ("0.1,0.2\n0.5,0.5\n0.3,abc\n", "line 3"),
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_alpool"))
            .args([
                "stream",
                "--stdin",
                "--labels",
                y.to_str().unwrap(),
                "--out",
                dir.path().join("o").to_str().unwrap(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let o = child.wait_with_output().unwrap();
        let err = common::stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{input:?}: {err}");
        assert!(
            err.contains(needle) && err.contains("<stdin>"),
            "{input:?}: {err}"
        );
    }
}

#[test]
fn argmax_helper_is_consistent() {
    assert_eq!(argmax(&[0.1, 0.7, 0.2]), 1);
}

#[test]
fn a_stream_estimates_its_scaling_on_the_warm_up_window() {
    // The blobs with one column blown up 10,000-fold and shifted: unscaled,
    // that column swamps the others.
    let widen = |v: Vec<Vec<f32>>| -> Vec<Vec<f32>> {
        v.into_iter()
            .map(|mut x| {
                x[0] = x[0] * 1e4 + 5e4;
                x
            })
            .collect()
    };
    let (xs, ys) = blobs(4_000, 1);
    let (tx, ty) = blobs(600, 2);
    let (xs, tx) = (widen(xs), widen(tx));
    let test_x: Vec<f32> = tx.into_iter().flatten().collect();
    let run = |scaling: stream::StreamScaling| {
        let mut source = xs
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, x)| Ok((i as u64, x)));
        let cfg = StreamConfig {
            scaling,
            ..config(Rule::Random, 0.2)
        };
        stream::run(
            &mut source,
            4,
            3,
            &cfg,
            &mut GroundTruth::new(&ys),
            Some(stream::TestSet { x: &test_x, y: &ty }),
            &mut |_| Ok(()),
        )
        .unwrap()
        .final_accuracy
        .unwrap()
    };
    let scaled = run(stream::StreamScaling::WarmUp(
        alpool::learner::ScaleKind::Standard,
    ));
    let unscaled = run(stream::StreamScaling::None);
    assert!(
        scaled > 0.8 && scaled > unscaled + 0.1,
        "warm-up scaling {scaled}, none {unscaled}"
    );
}
