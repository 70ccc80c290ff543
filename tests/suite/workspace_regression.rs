//! A regression workspace (`init --regression NAME`) through whole rounds:
//! numbers as labels, the regressor each round, greedy sampling's picks
//! against a naive f64 reference written here, the ensemble and MC-dropout
//! spreads, conflicts between annotators' numbers, and bad numbers refused
//! by file and line with nothing written. And the regressor on its own:
//! `train --regression`, `predict`, and `select --model` streaming a
//! committee's spread.

use crate::common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use alpool::learner::{Mlp, Output as Head};
use alpool::workspace::Workspace;
use alpool::workspace::vocab::Vocab;

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_alpool"))
        .args(args)
        .output()
        .expect("run alpool")
}

fn ok(args: &[&str]) -> String {
    let o = run(args);
    assert!(o.status.success(), "{args:?}: {}", common::stderr(&o));
    common::stdout(&o) + &common::stderr(&o)
}

fn fails(args: &[&str], says: &[&str]) {
    let o = run(args);
    let err = common::stderr(&o);
    assert!(!o.status.success(), "{args:?} succeeded");
    for s in says {
        assert!(err.contains(s), "{args:?}: {err:?} lacks {s:?}");
    }
}

/// 300 items of 3 features and a smooth target with a few repeated
/// values (ties for the greedy picks).
fn pool(dir: &Path) -> (Vec<f32>, Vec<f64>) {
    let mut r = crate::rng::Rng::new(21);
    let mut x: Vec<f32> = (0..900).map(|_| (r.uniform() * 4.0 - 2.0) as f32).collect();
    // Two exact copies of row 7: the same distances to everything.
    let row7: Vec<f32> = x[21..24].to_vec();
    x[3 * 250..3 * 251].copy_from_slice(&row7);
    x[3 * 251..3 * 252].copy_from_slice(&row7);
    alpool::pool::npy::save(&dir.join("x.npy"), &[300, 3], &x).unwrap();
    let y: Vec<f64> = x
        .chunks(3)
        .map(|p| {
            let (a, b, c) = (p[0] as f64, p[1] as f64, p[2] as f64);
            ((10.0 + 3.0 * a - 2.0 * b * b + c) * 1000.0).round() / 1000.0
        })
        .collect();
    alpool::pool::npy::save(&dir.join("y.npy"), &[300], &y).unwrap();
    (x, y)
}

/// `init --regression yield` of workspace `name` in `dir` over `dir`'s
/// x.npy, the first rows labeled with `seed`'s numbers; its output.
fn init(dir: &Path, seed: &[f64], name: &str) -> String {
    let lines: String = seed
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{i},{v}\n"))
        .collect();
    let seed_file = dir.join(format!("{name}-seed.csv"));
    std::fs::write(&seed_file, format!("id,label\n{lines}")).unwrap();
    let p = |f: &Path| f.to_str().unwrap().to_string();
    ok(&[
        "init",
        &p(&dir.join(name)),
        "--features",
        &p(&dir.join("x.npy")),
        "--regression",
        "yield",
        "--labels",
        &p(&seed_file),
    ])
}

/// The batch file's (row, score, predicted) lines.
fn batch(path: &Path) -> Vec<(usize, f64, f64)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("id,index,score,predicted"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
            )
        })
        .collect()
}

/// Greedy sampling's `igs` (Wu, Lin and Huang 2019), naively in f64: each
/// pick maximises, over the rows not yet labeled or picked, the minimum
/// over the labeled and picked rows of ‖x_n − x_m‖² (ŷ_n − y_m)²; a picked
/// row's target is its prediction; ties go to the lower row.
fn naive_igs(xs: &[f32], preds: &[f32], labeled: &[(usize, f64)], k: usize) -> Vec<usize> {
    let d = 3;
    let mut centres: Vec<(usize, f64)> = labeled.to_vec();
    let mut picks = Vec::new();
    for _ in 0..k {
        let mut best: Option<(f64, usize)> = None;
        for n in 0..preds.len() {
            if centres.iter().any(|c| c.0 == n) {
                continue;
            }
            let key = centres
                .iter()
                .map(|&(m, y)| {
                    let dist: f64 = (0..d)
                        .map(|j| (xs[n * d + j] as f64 - xs[m * d + j] as f64).powi(2))
                        .sum();
                    dist * (preds[n] as f64 - y).powi(2)
                })
                .fold(f64::INFINITY, f64::min);
            if best.is_none_or(|(b, _)| key > b) {
                best = Some((key, n));
            }
        }
        let (_, n) = best.unwrap();
        picks.push(n);
        centres.push((n, preds[n] as f64));
    }
    picks
}

#[test]
fn a_regression_workspace_picks_what_greedy_sampling_defines_and_learns_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let (x, y) = pool(tmp.path());
    let path = |f: &str| tmp.path().join(f).to_str().unwrap().to_string();
    let w = &path("ws");
    let out = init(tmp.path(), &y[..20], "ws");
    assert!(
        out.contains("regression target yield, 20 seed labels"),
        "{out}"
    );
    let ws = Workspace::open(Path::new(w), Duration::from_secs(1)).unwrap();
    let vocab = ws.vocab().unwrap();
    assert!(vocab.numeric());
    let stored: Vec<f64> = ws
        .labels()
        .unwrap()
        .iter()
        .map(|l| Vocab::number(l.class))
        .collect();
    assert_eq!(stored, y[..20], "the seed's numbers, bit for bit");
    drop(ws);
    let status = ok(&["status", w]);
    assert!(status.contains("regression: labels from"), "{status}");

    // Round 0: igs by default, over the round's regressor.
    let out = ok(&[
        "next",
        w,
        "-k",
        "12",
        "--hidden",
        "16",
        "--out",
        &path("b0.csv"),
    ]);
    assert!(out.contains("12 items selected by igs"), "{out}");
    let b0 = batch(&tmp.path().join("b0.csv"));
    let ws = Workspace::open(Path::new(w), Duration::from_secs(1)).unwrap();
    let model = Mlp::load(&tmp.path().join("ws").join(&ws.models().unwrap()[0])).unwrap();
    drop(ws);
    assert_eq!(model.output(), Head::Linear);
    let preds = model.predict_proba(&x).unwrap();
    let mut xs = x.clone();
    if let Some(s) = model.scaler() {
        s.apply_in_place(&mut xs);
    }
    let labeled: Vec<(usize, f64)> = (0..20).map(|i| (i, y[i])).collect();
    let want = naive_igs(&xs, &preds, &labeled, 12);
    let got: Vec<usize> = b0.iter().map(|b| b.0).collect();
    assert_eq!(got, want, "igs against the naive reference");
    for &(row, _, predicted) in &b0 {
        assert_eq!(predicted, preds[row] as f64, "row {row}'s prediction");
    }
    // The model learned something: its predictions track the target.
    let err = |p: &[f32]| -> f64 {
        (p.iter()
            .zip(&y)
            .map(|(a, b)| (*a as f64 - b).powi(2))
            .sum::<f64>()
            / y.len() as f64)
            .sqrt()
    };
    let mean = y.iter().sum::<f64>() / y.len() as f64;
    let spread = err(&vec![mean as f32; y.len()]);
    assert!(err(&preds) < spread, "{} vs {spread}", err(&preds));

    // The answers: true numbers, one item given two different numbers (a
    // conflict, no label), and Label Studio tasks carrying the number.
    let mut answers = String::from("id,label\n");
    for &(row, _, _) in &b0[1..] {
        answers += &format!("{row},{}\n", y[row]);
    }
    let r0 = b0[0].0;
    answers += &format!("{r0},{}\n{r0},{}\n", y[r0], y[r0] + 1.0);
    std::fs::write(path("a0.csv"), &answers).unwrap();
    ok(&["ingest", w, &path("a0.csv")]);
    let ws = Workspace::open(Path::new(w), Duration::from_secs(1)).unwrap();
    assert_eq!(ws.labels().unwrap().len(), 31);
    let conflicts = ws.conflicts().unwrap();
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].index, r0);
    drop(ws);
    let status = ok(&["status", w]);
    assert!(status.contains("annotators disagree"), "{status}");

    ok(&[
        "next",
        w,
        "-k",
        "5",
        "--hidden",
        "16",
        "--out",
        &path("b1.json"),
    ]);
    let tasks: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path("b1.json")).unwrap()).unwrap();
    for t in tasks.as_array().unwrap() {
        let result = &t["predictions"][0]["result"][0];
        assert_eq!(result["type"], "number", "{t}");
        assert!(result["value"]["number"].as_f64().unwrap().is_finite());
        let row = t["data"]["alpool_index"].as_u64().unwrap() as usize;
        assert!(
            row >= 20 && b0.iter().all(|b| b.0 != row),
            "{row} was labeled"
        );
    }
    let config = ok(&["labeling-config", w]);
    assert!(
        config.contains("<Number name=\"label\" toName=\"item\"") && config.contains("yield"),
        "{config}"
    );
}

#[test]
fn the_spread_strategies_are_seeded_and_bad_numbers_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, y) = pool(tmp.path());
    let path = |f: &str| tmp.path().join(f).to_str().unwrap().to_string();
    let w = &path("ws");
    init(tmp.path(), &y[..30], "ws");
    // std by an ensemble and by MC dropout, emcm, gsx and gsy: each picks
    // unlabeled items, best first, and the same again in a twin workspace.
    let twin = &path("twin");
    init(tmp.path(), &y[..30], "twin");
    let rounds: [&[&str]; 5] = [
        &["-s", "std", "--committee", "3"],
        &["-s", "std", "--mc-samples", "6", "--dropout", "0.2"],
        &["-s", "emcm", "--committee", "3"],
        &["-s", "gsx"],
        &["-s", "gsy"],
    ];
    let mut labeled: Vec<usize> = (0..30).collect();
    for (i, extra) in rounds.iter().enumerate() {
        let mut picks = Vec::new();
        for ws in [w, twin] {
            let out = path(&format!("{i}.csv"));
            let mut args = vec!["next", ws, "-k", "6", "--hidden", "16", "--out", &out];
            args.extend_from_slice(extra);
            ok(&args);
            picks.push(batch(Path::new(&out)));
        }
        assert_eq!(
            picks[0], picks[1],
            "{extra:?}: the same seed, the same batch"
        );
        let b = &picks[0];
        assert_eq!(b.len(), 6);
        assert!(b.windows(2).all(|p| p[0].1 >= p[1].1), "{extra:?}: {b:?}");
        assert!(b.iter().all(|p| !labeled.contains(&p.0)), "{extra:?}");
        let answers: String = b.iter().map(|p| format!("{},{}\n", p.0, y[p.0])).collect();
        std::fs::write(path("a.csv"), format!("id,label\n{answers}")).unwrap();
        ok(&["ingest", w, &path("a.csv")]);
        ok(&["ingest", twin, &path("a.csv")]);
        labeled.extend(b.iter().map(|p| p.0));
    }

    // The report's held-out curve is R² for numbers.
    ok(&["report", w, "--out", &path("report.html")]);
    let rep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path("report.json")).unwrap()).unwrap();
    assert_eq!(rep["curve_metric"], "R²", "{rep}");
    let curve = rep["curve"].as_array().unwrap();
    assert!(curve.len() >= 2, "{rep}");
    for point in curve {
        let r2 = point[1].as_f64().unwrap();
        assert!(r2 <= 1.0 && r2 > -10.0, "{point}");
    }
    // Bad numbers: named by file and line, nothing stored.
    let before = Workspace::open(Path::new(w), Duration::from_secs(1))
        .unwrap()
        .labels()
        .unwrap();
    for (text, says) in [
        ("id,label\n200,3.5\n201,cheap\n", "line 3"),
        ("id,label\n200,3.5\n201,inf\n", "not a finite number"),
        ("id,label\n200,\n", "not a number"),
    ] {
        std::fs::write(path("bad.csv"), text).unwrap();
        fails(&["ingest", w, &path("bad.csv")], &["bad.csv", says]);
    }
    let after = Workspace::open(Path::new(w), Duration::from_secs(1))
        .unwrap()
        .labels()
        .unwrap();
    assert_eq!(before, after);
    // A class strategy is refused by name; so is a class workspace's
    // flag beside --regression.
    fails(
        &[
            "next",
            w,
            "-k",
            "3",
            "-s",
            "margin",
            "--out",
            &path("m.csv"),
        ],
        &["regression", "margin", "igs"],
    );
    fails(
        &["next", w, "-k", "3", "-s", "std", "--out", &path("m.csv")],
        &["--mc-samples", "--committee"],
    );
    fails(
        &[
            "init",
            &path("ws2"),
            "--features",
            &path("x.npy"),
            "--regression",
            "yield",
            "--classes",
            "a,b",
        ],
        &["--classes"],
    );
}

/// `next --stochastic` in a regression workspace: std and EMCM draw their
/// batch (the same in a twin workspace, not the top k); greedy sampling,
/// which picks its batch itself, is refused.
#[test]
fn the_spread_strategies_draw_stochastic_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, y) = pool(tmp.path());
    let path = |f: &str| tmp.path().join(f).to_str().unwrap().to_string();
    for s in ["std", "emcm"] {
        // A workspace per round: a rerun with no new labels would export
        // the last batch again.
        let round = |ws: &str, extra: &[&str]| {
            let name = format!("{ws}-{s}");
            init(tmp.path(), &y[..30], &name);
            let out = path(&format!("{name}.csv"));
            let w = path(&name);
            let mut args = vec!["next", &w, "-k", "8", "--hidden", "16", "--out", &out];
            args.extend_from_slice(&["-s", s, "--committee", "3"]);
            args.extend_from_slice(extra);
            ok(&args);
            batch(Path::new(&out))
        };
        let top = round("top", &[]);
        let power = ["--stochastic", "power", "--beta", "2"];
        let a = round("a", &power);
        assert_eq!(a, round("b", &power), "{s}: not reproducible");
        assert_ne!(a, top, "{s}: the top k, not a draw");
        assert!(a.iter().all(|p| p.0 >= 30), "{s}: a labeled item");
    }
    fails(
        &[
            "next",
            &path("a-std"),
            "-k",
            "3",
            "-s",
            "gsx",
            "--stochastic",
            "power",
            "--out",
            &path("g.csv"),
        ],
        &["gsx picks a batch itself"],
    );
}

#[test]
fn a_trained_regressors_committee_streams_the_spread_its_predictions_give() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, y) = pool(tmp.path());
    let path = |f: &str| tmp.path().join(f).to_str().unwrap().to_string();
    let (x, ys) = (path("x.npy"), path("y.npy"));
    let train: &[&str] = &[
        "train",
        "--regression",
        "--features",
        &x,
        "--labels",
        &ys,
        "--hidden",
        "16",
    ];
    let mut preds = Vec::new();
    for seed in ["1", "2", "3"] {
        let model = path(&format!("m{seed}.safetensors"));
        let out = ok(&[train, &["--seed", seed, "--out", &model]].concat());
        assert!(out.contains("training R²"), "{out}");
        let p = path(&format!("p{seed}.npy"));
        ok(&["predict", "--model", &model, "--features", &x, "--out", &p]);
        let bytes = std::fs::read(&p).unwrap();
        let f32s = [alpool::pool::npy::DType::F32];
        let h = alpool::pool::npy::parse_header(Path::new(&p), &bytes, &f32s, "f32").unwrap();
        assert_eq!(h.shape, [300, 1]);
        let v: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes[h.data_offset..]);
        preds.extend(v);
    }
    // The models learned the target: each RMSE well under its spread.
    let mean = y.iter().sum::<f64>() / 300.0;
    let sd = (y.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 300.0).sqrt();
    for m in preds.chunks(300) {
        let mse = m
            .iter()
            .zip(&y)
            .map(|(p, t)| (*p as f64 - t).powi(2))
            .sum::<f64>()
            / 300.0;
        assert!(mse.sqrt() < sd / 2.0, "RMSE {} against sd {sd}", mse.sqrt());
    }
    alpool::pool::npy::save(Path::new(&path("stack.npy")), &[3, 300], &preds).unwrap();
    let from_files = ok(&[
        "select",
        &path("stack.npy"),
        "--input",
        "regression-samples",
        "-s",
        "std",
        "-k",
        "10",
    ]);
    let models = [
        path("m1.safetensors"),
        path("m2.safetensors"),
        path("m3.safetensors"),
    ];
    let streamed = ok(&[
        "select",
        "--model",
        &models[0],
        &models[1],
        &models[2],
        "--features",
        &x,
        "--input",
        "regression-samples",
        "-s",
        "std",
        "-k",
        "10",
    ]);
    let lines = |s: &str| {
        s.lines()
            .filter(|l| l.contains(','))
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert_eq!(lines(&streamed), lines(&from_files));
    assert_eq!(lines(&streamed).len(), 11);
    // MC dropout over one regressor: seeded, and the spread is a spread.
    let drop = path("drop.safetensors");
    ok(&[train, &["--dropout", "0.2", "--out", &drop]].concat());
    let mc = |seed: &str| {
        ok(&[
            "select",
            "--model",
            &drop,
            "--features",
            &x,
            "--input",
            "regression-samples",
            "-s",
            "std",
            "--mc-samples",
            "6",
            "--seed",
            seed,
            "-k",
            "5",
        ])
    };
    assert_eq!(lines(&mc("4")), lines(&mc("4")));
    assert_ne!(lines(&mc("4")), lines(&mc("5")));
    // Bad targets are named by file and row; a regressor's other strategies
    // say where their predictions come from.
    let mut bad = y.clone();
    bad[17] = f64::NAN;
    alpool::pool::npy::save(Path::new(&path("bad.npy")), &[300], &bad).unwrap();
    fails(
        &[
            "train",
            "--regression",
            "--features",
            &x,
            "--labels",
            &path("bad.npy"),
            "--out",
            &path("b.safetensors"),
        ],
        &["bad.npy", "row 17"],
    );
    fails(
        &[
            "select",
            "--model",
            &drop,
            "--features",
            &x,
            "--input",
            "regression",
            "-s",
            "igs",
            "-k",
            "5",
        ],
        &["regressor", "alpool predict"],
    );
}

/// The ML backend of a regression workspace: `std` over the round's
/// MC-dropout passes. /predict gives each task the number and the score
/// the round's batch gave it, in any order and any company; a typed
/// number comes in by webhook; batch strategies and a spread without
/// passes are refused before it listens.
#[test]
fn a_regression_workspace_is_served_with_its_rounds_spread() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, y) = pool(tmp.path());
    init(tmp.path(), &y[..30], "ws");
    let w = tmp.path().join("ws");
    let w = w.to_str().unwrap();
    let learner = ["--hidden", "16", "--dropout", "0.2", "--seed", "4"];
    let std = [&["-s", "std", "--mc-samples", "6"][..], &learner].concat();
    let out = tmp.path().join("b.json");
    let next = [
        &["next", w, "-k", "12", "--out", out.to_str().unwrap()][..],
        &std,
    ]
    .concat();
    ok(&next);
    let tasks: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    for (strategy, says) in [("igs", "picks batches"), ("margin", "regression")] {
        let err = common::serve_refused(w, &[&["-s", strategy][..], &learner].concat());
        assert!(err.contains(says), "{strategy}: {err}");
    }
    let err = common::serve_refused(w, &learner);
    assert!(err.contains("--mc-samples"), "{err}");
    let err = common::serve_refused(w, &["--mc-samples", "6"]);
    assert!(err.contains("--dropout"), "{err}");

    let extra = [&std[..], &["--retrain-every", "0"]].concat();
    let server = common::Served::start(Path::new(w), &extra);
    let choices = r#"<View><Text name="item" value="$alpool_id"/><Choices name="label" toName="item"><Choice value="a"/></Choices></View>"#;
    let (status, body) = server.post("/setup", &serde_json::json!({ "schema": choices }));
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("<Number name=\"label\""),
        "{body}"
    );
    let config = ok(&["labeling-config", w]);
    let (status, body) = server.post("/setup", &serde_json::json!({ "schema": config }));
    assert_eq!(status, 200, "{body}");
    // The batch's tasks in reverse, a labeled item among them.
    let mut asked: Vec<serde_json::Value> = tasks.iter().rev().cloned().collect();
    let token = tasks[0]["data"]["alpool_workspace"].clone();
    asked.insert(
        3,
        serde_json::json!({"id": 1, "data": {"alpool_id": "2", "alpool_workspace": token}}),
    );
    let (status, body) = server.post("/predict", &serde_json::json!({ "tasks": asked }));
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), asked.len());
    let mut compared = 0;
    for (task, got) in asked.iter().zip(results) {
        let Some(want) = task.get("predictions").map(|p| &p[0]) else {
            continue;
        };
        compared += 1;
        assert_eq!(got["score"], want["score"], "{task}");
        assert_eq!(got["result"], want["result"], "{task}");
        assert!(got["result"][0]["value"]["number"].is_f64(), "{got}");
    }
    assert_eq!(compared, tasks.len());
    // A spread's score is minus the std: Label Studio serves the widest
    // first, in the batch's order.
    let scores: Vec<f64> = tasks
        .iter()
        .map(|t| t["predictions"][0]["score"].as_f64().unwrap())
        .collect();
    assert!(
        scores.windows(2).all(|p| p[0] <= p[1]) && scores[0] < 0.0,
        "{scores:?}"
    );
    // A number typed in Label Studio is a label.
    let row = tasks[0]["data"]["alpool_index"].as_u64().unwrap() as usize;
    let hook = serde_json::json!({
        "action": "ANNOTATION_CREATED",
        "annotation": {"id": 7, "result": [{"from_name": "label", "to_name": "item",
                        "type": "number", "value": {"number": y[row]}}]},
        "task": {"id": 99, "data": tasks[0]["data"]},
    });
    let (status, body) = server.post("/webhook", &hook);
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["labeled"], 1, "{body}");
    drop(server);
    let labels = Workspace::open(Path::new(w), Duration::from_secs(5))
        .unwrap()
        .labels()
        .unwrap();
    let got = labels.iter().find(|l| l.index == row).unwrap();
    assert_eq!(Vocab::number(got.class), y[row]);
}
