//! The fused learner kernels against candle's autograd reference: same
//! initialization, minibatches and dropout draws, so the trained weights and
//! the probabilities agree to f32 rounding; and results that do not depend
//! on the thread count.

use crate::common;

use alpool::al::Dataset;
use alpool::learner::{Engine, Layer, Mlp, MlpConfig, reference};
use alpool::pool::npy;

fn digits(rows: std::ops::Range<usize>) -> (Vec<f32>, Vec<usize>) {
    let d = Dataset::digits();
    let idx: Vec<usize> = rows.collect();
    (d.gather(&idx), d.labels(&idx))
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn sum_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum()
}

fn layers_diff(a: &[Layer], b: &[Layer]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(a, b)| max_abs_diff(&a.w, &b.w).max(max_abs_diff(&a.b, &b.b)))
        .fold(0.0, f32::max)
}

#[test]
fn inference_matches_candle() {
    let (x, _) = digits(0..700);
    for hidden in [vec![256], vec![40, 24], vec![]] {
        let m = Mlp::new(
            64,
            10,
            MlpConfig {
                hidden: hidden.clone(),
                seed: 3,
                ..MlpConfig::default()
            },
        )
        .unwrap();
        let fused = m.predict_proba(&x).unwrap();
        let candle = reference::predict_proba(m.layers(), &x).unwrap();
        let d = max_abs_diff(&fused, &candle);
        assert!(d < 1e-6, "hidden {hidden:?}: max |fused - candle| = {d}");
        for row in fused.chunks_exact(10) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
    }
}

#[test]
fn a_rows_probabilities_do_not_depend_on_its_neighbours() {
    // Inference runs in blocks of rows: shifting where the blocks start,
    // or the thread count, must not change any row's result by a bit.
    // Digits (64 inputs), and 784 random inputs (MNIST's width, where
    // the products block their inner dimension).
    // Also a few rows alone (a batch's export, a streamed instance: gemm
    // takes other paths for small products), narrow inputs (its paths for
    // an inner dimension of 2 or 3), narrow hidden layers, and a
    // regressor's one output.
    let (digits_x, _) = digits(0..1797);
    let mut rng = crate::rng::Rng::new(5);
    let wide: Vec<f32> = (0..1100 * 784).map(|_| rng.uniform() as f32).collect();
    let narrow: Vec<f32> = (0..700 * 3)
        .map(|_| rng.uniform() as f32 * 4.0 - 2.0)
        .collect();
    let cases = [
        (&digits_x[..], 64, vec![256], 10),
        (&wide, 784, vec![256], 10),
        (&digits_x, 64, vec![40, 24], 10),
        (&narrow, 3, vec![16], 10),
        (&narrow[..1400], 2, vec![16], 3),
        (&narrow, 3, vec![16], 1),
        (&digits_x, 64, vec![], 10),
    ];
    for (x, inputs, hidden, c) in cases {
        let cfg = MlpConfig {
            hidden: hidden.clone(),
            ..MlpConfig::default()
        };
        let m = match c {
            1 => Mlp::new_regressor(inputs, cfg).unwrap(),
            c => Mlp::new(inputs, c, cfg).unwrap(),
        };
        let all = m.predict_proba(x).unwrap();
        let what = format!("{inputs} inputs, hidden {hidden:?}, {c} outputs");
        for skip in [1, 7, 300] {
            let shifted = m.predict_proba(&x[skip * inputs..]).unwrap();
            assert_eq!(&all[skip * c..], &shifted[..], "{what}, skip {skip}");
        }
        let counts = (1..=140)
            .map(|c| (5, c))
            .chain([(41, 1), (200, 65), (3, 300)]);
        for (from, count) in counts {
            let few = m
                .predict_proba(&x[from * inputs..(from + count) * inputs])
                .unwrap();
            let want = &all[from * c..(from + count) * c];
            assert_eq!(want, &few[..], "{what}, rows {from}..{}", from + count);
        }
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| m.predict_proba(x).unwrap());
        assert_eq!(all, one, "{what}");
    }
}

/// Trains the same model with both engines and returns (fused, candle).
fn train_both(cfg: MlpConfig, x: &[f32], y: &[usize]) -> (Mlp, Mlp) {
    let mut out = [Engine::Fused, Engine::Candle].map(|engine| {
        let mut m = Mlp::new(
            64,
            10,
            MlpConfig {
                engine,
                ..cfg.clone()
            },
        )
        .unwrap();
        let r = m.fit(x, y).unwrap();
        assert!(
            r.train_accuracy > r.train_accuracy_before,
            "{engine:?}: {r:?}"
        );
        m
    });
    let candle = std::mem::replace(&mut out[1], Mlp::new(64, 10, cfg.clone()).unwrap());
    let [fused, _] = out;
    (fused, candle)
}

#[test]
fn training_matches_candle() {
    // 203 rows in batches of 16: twelve full minibatches and a short one.
    let (x, y) = digits(0..203);
    let (xt, _) = digits(1000..1400);
    let cases = [
        MlpConfig {
            epochs: 4,
            min_steps: 0,
            batch_size: 16,
            ..MlpConfig::default()
        },
        MlpConfig {
            hidden: vec![48, 24],
            dropout: 0.3,
            class_weights: true,
            epochs: 3,
            min_steps: 0,
            batch_size: 16,
            seed: 9,
            ..MlpConfig::default()
        },
        // No hidden layer: multinomial logistic regression.
        MlpConfig {
            hidden: vec![],
            epochs: 3,
            min_steps: 0,
            batch_size: 16,
            ..MlpConfig::default()
        },
    ];
    for cfg in cases {
        let (fused, candle) = train_both(cfg.clone(), &x, &y);
        // Weights move by up to lr = 2e-3 per step over 39-52 steps. Adam
        // divides by the gradient's running norm, so a weight whose gradient
        // is near 0 can amplify f32 rounding up to ~1e-4; a wrong gradient
        // (e.g. no ReLU mask in the backward pass) differs by over 0.1.
        let start = Mlp::new(64, 10, cfg.clone()).unwrap();
        assert!(layers_diff(fused.layers(), start.layers()) > 1e-2);
        let d = layers_diff(fused.layers(), candle.layers());
        assert!(d < 1e-3, "{cfg:?}: max |w_fused - w_candle| = {d}");
        let mean = fused
            .layers()
            .iter()
            .zip(candle.layers())
            .map(|(a, b)| sum_abs_diff(&a.w, &b.w) / a.w.len() as f32)
            .fold(0.0, f32::max);
        assert!(mean < 1e-5, "{cfg:?}: mean |w_fused - w_candle| = {mean}");
        let p = max_abs_diff(
            &fused.predict_proba(&xt).unwrap(),
            &candle.predict_proba(&xt).unwrap(),
        );
        assert!(p < 1e-3, "{cfg:?}: max |p_fused - p_candle| = {p}");
    }
}

#[test]
fn training_does_not_depend_on_the_thread_count() {
    let (x, y) = digits(0..300);
    let cfg = MlpConfig {
        hidden: vec![100, 70],
        epochs: 2,
        min_steps: 0,
        batch_size: 64,
        ..MlpConfig::default()
    };
    let layers: Vec<Vec<Layer>> = [1, 2, 3]
        .iter()
        .map(|&threads| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut m = Mlp::new(64, 10, cfg.clone()).unwrap();
                m.fit(&x, &y).unwrap();
                m.layers().to_vec()
            })
        })
        .collect();
    assert_eq!(layers[0], layers[1]);
    assert_eq!(layers[0], layers[2]);
}

#[test]
fn predicting_listed_rows_equals_predicting_their_copy() {
    let d = Dataset::digits();
    let rows: Vec<usize> = (0..1797).rev().step_by(3).collect();
    for engine in [Engine::Fused, Engine::Candle] {
        let m = Mlp::new(
            64,
            10,
            MlpConfig {
                engine,
                ..MlpConfig::default()
            },
        )
        .unwrap();
        assert_eq!(
            m.predict_proba_rows(&d.features(), &rows).unwrap(),
            m.predict_proba(&d.gather(&rows)).unwrap(),
            "{engine:?}"
        );
        let err = m.predict_proba_rows(&d.features(), &[3, 1797]).unwrap_err();
        assert!(err.to_string().contains("row 1797"), "{err}");
    }
}

#[test]
fn train_and_predict_from_the_command_line() {
    let d = Dataset::digits();
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    npy::save(
        dir.path().join("X.npy").as_path(),
        &[d.features().len() / 64, 64],
        &d.features(),
    )
    .unwrap();
    let y: Vec<i64> = d.y.iter().map(|&c| c as i64).collect();
    npy::save(dir.path().join("y.npy").as_path(), &[y.len()], &y).unwrap();
    let o = common::alpool(&[
        "train",
        "--features",
        &path("X.npy"),
        "--labels",
        &path("y.npy"),
        "--hidden",
        "32",
        "--min-steps",
        "60",
        "--epochs",
        "1",
        "--out",
        &path("m.safetensors"),
    ]);
    assert!(o.status.success(), "{}", common::stderr(&o));

    // The streamed CLI output equals the library's in-memory prediction.
    let o = common::alpool(&[
        "predict",
        "--model",
        &path("m.safetensors"),
        "--features",
        &path("X.npy"),
        "--out",
        &path("p.npy"),
    ]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let bytes = std::fs::read(path("p.npy")).unwrap();
    let h = npy::parse_header(
        dir.path().join("p.npy").as_path(),
        &bytes,
        &[npy::DType::F32],
        "f32",
    )
    .unwrap();
    assert_eq!(h.shape, vec![1797, 10]);
    let cli = npy::features_f32(npy::DType::F32, &bytes[h.data_offset..]);
    let m = Mlp::load(dir.path().join("m.safetensors").as_path()).unwrap();
    assert_eq!(cli, m.predict_proba(&d.features()).unwrap());

    // A NaN feature: the file, row and column are named, nothing is written.
    let mut bad = d.features().into_owned();
    bad[5 * 64 + 3] = f32::NAN;
    npy::save(dir.path().join("bad.npy").as_path(), &[1797, 64], &bad).unwrap();
    let o = common::alpool(&[
        "predict",
        "--model",
        &path("m.safetensors"),
        "--features",
        &path("bad.npy"),
        "--out",
        &path("q.npy"),
    ]);
    let err = common::stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("bad.npy") && err.contains("row 5") && err.contains("column 3"),
        "{err}"
    );
    assert!(!dir.path().join("q.npy").exists());
    assert!(
        common::files_in(dir.path())
            .iter()
            .all(|f| !f.to_string_lossy().contains("partial"))
    );
}

#[test]
fn damaged_models_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    Mlp::new(64, 10, MlpConfig::default())
        .unwrap()
        .save(&path)
        .unwrap();
    let json = path.with_extension("json");
    let config = std::fs::read_to_string(&json).unwrap();

    // The config disagrees with the tensors' shapes.
    std::fs::write(&json, config.replace("\"hidden\":[256]", "\"hidden\":[33]")).unwrap();
    let err = Mlp::load(&path).err().expect("shape mismatch").to_string();
    assert!(
        err.contains("layer0.weight") && err.contains("[33, 64]"),
        "{err}"
    );
    // Named as a model file, not as a .npy.
    assert!(
        err.contains("not a usable model file") && !err.contains(".npy"),
        "{err}"
    );

    // A truncated weights file.
    std::fs::write(&json, &config).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = Mlp::load(&path).err().expect("truncated").to_string();
    assert!(
        err.contains("m.safetensors") && err.contains("safetensors"),
        "{err}"
    );

    // No config beside it.
    std::fs::remove_file(&json).unwrap();
    let err = Mlp::load(&path).err().expect("no config").to_string();
    assert!(err.contains("m.json"), "{err}");
}
