//! Selecting straight from features (model → softmax → score → top k on
//! the fly) equals predicting every row and then selecting, for every
//! strategy, shard split, block size, exclusion list and k; bad input is
//! named and leaves nothing behind.

use crate::common;

use std::path::Path;

use crate::rng::Rng;
use alpool::features::FeaturePool;
use alpool::learner::{Mlp, MlpConfig, ScaleKind, Scaler};
use alpool::pool::Exclusions;
use alpool::pool::npy::{self, DType};
use alpool::{Device, InputForm, Job, Pool, Strategy};

fn model(dim: usize, classes: usize, seed: u64, x: &[f32]) -> Mlp {
    let m = Mlp::new(
        dim,
        classes,
        MlpConfig {
            hidden: vec![16],
            seed,
            ..MlpConfig::default()
        },
    )
    .unwrap();
    let scaler = Scaler::fit(ScaleKind::Standard, x, dim, None).ok();
    m.with_scaler(scaler).unwrap()
}

fn save_u8(path: &Path, rows: usize, dim: usize, v: &[u8]) {
    let mut b = npy::encode_header(DType::U8, &[rows, dim]);
    b.extend_from_slice(v);
    std::fs::write(path, b).unwrap();
}

#[test]
fn fused_equals_predict_then_select() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(3);
    for case in 0..12u64 {
        let (dim, classes) = (3 + case as usize % 5, 2 + case as usize % 4);
        let n = [0usize, 1, 50, 1333, 2100][case as usize % 5];
        let u8_pixels = case % 3 == 2;
        let raw: Vec<u8> = (0..n * dim).map(|_| rng.below(4) as u8 * 60).collect();
        let x: Vec<f32> = if u8_pixels {
            raw.iter().map(|&v| v as f32 / 255.0).collect()
        } else {
            // Coarse values: many rows repeat, so scores tie.
            raw.iter().map(|&v| v as f32 * 0.1 - 3.0).collect()
        };
        let m = model(dim, classes, case, &x);
        // Two files, split unevenly.
        let cut = n / 3;
        let paths = [
            dir.path().join(format!("a{case}.npy")),
            dir.path().join(format!("b{case}.npy")),
        ];
        if u8_pixels {
            save_u8(&paths[0], cut, dim, &raw[..cut * dim]);
            save_u8(&paths[1], n - cut, dim, &raw[cut * dim..]);
        } else {
            npy::save(&paths[0], &[cut, dim], &x[..cut * dim]).unwrap();
            npy::save(&paths[1], &[n - cut, dim], &x[cut * dim..]).unwrap();
        }
        // `alpool predict` runs file by file: the pool is its shards' outputs.
        let mut probs = m.predict_proba(&x[..cut * dim]).unwrap();
        probs.extend(m.predict_proba(&x[cut * dim..]).unwrap());
        let whole = Pool::from_f32(&probs, classes).unwrap();
        for strategy in Strategy::ALL {
            if classes < strategy.min_classes() {
                continue;
            }
            for k in [0, 1, 17, n, n + 4] {
                let mut job = Job::new(strategy, InputForm::probs(), k).seed(case);
                job.exclusions = Exclusions::new((0..n as u64).filter(|i| i % 7 == 3).collect());
                let want = alpool::select(&whole, &job, &alpool::Run::on(Device::Cpu))
                    .map(|o| o.selection)
                    .unwrap();
                for block in [1, 512, 1024, 100_000] {
                    let fp = FeaturePool::open(&paths).unwrap().with_block_rows(block);
                    let got =
                        crate::common::select_cpu(alpool::Inputs::model(&m, &fp), &job).unwrap();
                    assert_eq!(
                        got.entries, want.entries,
                        "case {case} {strategy} k {k} block {block}"
                    );
                }
            }
        }
    }
}

#[test]
fn cli_select_with_a_model_equals_predict_then_select_and_names_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = |n: &str| d.join(n).to_string_lossy().into_owned();
    let data = alpool::al::Dataset::digits();
    npy::save(&d.join("x.npy"), &[data.rows(), data.dim], &data.features()).unwrap();
    let mut yb = npy::encode_header(DType::I64, &[data.rows()]);
    yb.extend(data.y.iter().flat_map(|&v| (v as i64).to_le_bytes()));
    std::fs::write(d.join("y.npy"), yb).unwrap();
    let ok = |args: &[&str]| {
        let o = common::alpool(args);
        assert!(o.status.success(), "{args:?}: {}", common::stderr(&o));
        common::stdout(&o)
    };
    ok(&[
        "train",
        "--features",
        &s("x.npy"),
        "--labels",
        &s("y.npy"),
        "--hidden",
        "32",
        "--min-steps",
        "50",
        "--epochs",
        "2",
        "--out",
        &s("m.safetensors"),
    ]);
    ok(&[
        "predict",
        "--model",
        &s("m.safetensors"),
        "--features",
        &s("x.npy"),
        "--out",
        &s("p.npy"),
    ]);
    // The bench's model mode times both paths and checks they agree.
    let bench = ok(&[
        "bench",
        "--model",
        &s("m.safetensors"),
        "--features",
        &s("x.npy"),
        "--runs",
        "1",
        "-k",
        "50",
    ]);
    assert!(
        bench.matches("rows/s").count() >= 2 && bench.contains("random"),
        "{bench}"
    );
    std::fs::write(d.join("labeled.txt"), "0\n5\n1796\n").unwrap();
    for strategy in ["least-confidence", "margin", "entropy", "ratio", "random"] {
        let two = ok(&[
            "select",
            &s("p.npy"),
            "--strategy",
            strategy,
            "-k",
            "40",
            "--exclude",
            &s("labeled.txt"),
        ]);
        let fused = ok(&[
            "select",
            "--model",
            &s("m.safetensors"),
            "--features",
            &s("x.npy"),
            "--strategy",
            strategy,
            "-k",
            "40",
            "--exclude",
            &s("labeled.txt"),
        ]);
        assert_eq!(fused, two, "{strategy}");
    }
    ok(&[
        "score",
        &s("p.npy"),
        "--strategy",
        "entropy",
        "--out",
        &s("s1.npy"),
    ]);
    ok(&[
        "score",
        "--model",
        &s("m.safetensors"),
        "--features",
        &s("x.npy"),
        "--strategy",
        "entropy",
        "--out",
        &s("s2.npy"),
    ]);
    assert_eq!(
        std::fs::read(d.join("s1.npy")).unwrap(),
        std::fs::read(d.join("s2.npy")).unwrap()
    );

    let fail = |args: &[&str], want: &[&str]| {
        let o = common::alpool(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let e = common::stderr(&o);
        for w in want {
            assert!(e.contains(w), "{args:?}: wanted {w:?} in {e}");
        }
        assert!(!d.join("out.csv").exists(), "nothing is written");
    };
    let out = s("out.csv");
    // A NaN feature: file, row and column.
    let mut x = data.features().into_owned();
    x[100 * 64 + 9] = f32::NAN;
    npy::save(&d.join("nan.npy"), &[data.rows(), 64], &x).unwrap();
    fail(
        &[
            "select",
            "--model",
            &s("m.safetensors"),
            "--features",
            &s("nan.npy"),
            "--out",
            &out,
        ],
        &["nan.npy", "row 100", "column 9"],
    );
    // A width the model does not take.
    npy::save(&d.join("narrow.npy"), &[10, 8], &vec![0.5f32; 80]).unwrap();
    fail(
        &[
            "select",
            "--model",
            &s("m.safetensors"),
            "--features",
            &s("narrow.npy"),
            "--out",
            &out,
        ],
        &["narrow.npy", "8 features", "takes 64"],
    );
    // An unsupported dtype.
    common::save_raw(
        &d.join("int.npy"),
        "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 64), }",
        &[0u8; 512],
    );
    fail(
        &[
            "select",
            "--model",
            &s("m.safetensors"),
            "--features",
            &s("int.npy"),
            "--out",
            &out,
        ],
        &["int.npy", "dtype"],
    );
    // A damaged model.
    let bytes = std::fs::read(d.join("m.safetensors")).unwrap();
    std::fs::write(d.join("bad.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    std::fs::copy(d.join("m.json"), d.join("bad.json")).unwrap();
    fail(
        &[
            "select",
            "--model",
            &s("bad.safetensors"),
            "--features",
            &s("x.npy"),
            "--out",
            &out,
        ],
        &["bad.safetensors", "not a usable model file"],
    );
}

#[test]
fn a_feature_file_cut_short_while_open_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (rows, dim) = (5_000, 8);
    let mut rng = Rng::new(3);
    let x: Vec<f32> = (0..rows * dim).map(|_| rng.uniform() as f32).collect();
    let m = model(dim, 3, 1, &x);
    for dtype in ["f32", "u8"] {
        let path = dir.path().join(format!("x_{dtype}.npy"));
        match dtype {
            "f32" => npy::save(&path, &[rows, dim], &x).unwrap(),
            _ => {
                let b: Vec<u8> = x.iter().map(|v| (v * 255.0) as u8).collect();
                save_u8(&path, rows, dim, &b);
            }
        }
        // Opened (header and size checked), then another process cuts it.
        let fp = FeaturePool::open(&[&path]).unwrap().with_block_rows(1024);
        let len = std::fs::metadata(&path).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len / 2)
            .unwrap();
        let job = Job::new(Strategy::Margin, InputForm::probs(), 10);
        let err = crate::common::select_cpu(alpool::Inputs::model(&m, &fp), &job).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("truncated while being read") && msg.contains(&format!("x_{dtype}.npy")),
            "{dtype}: {msg}"
        );
    }
}
