//! Feature scaling is part of the model: its statistics round-trip through
//! save and load, a model trained on raw features predicts what one trained
//! on pre-standardized features predicts, old models load unchanged, and
//! the CLI applies the same transform (memory: `tests/memory/scaling.rs`).

use crate::common;

use alpool::al::Dataset;
use alpool::learner::{Mlp, MlpConfig, Scale, ScaleKind, Scaler};
use alpool::pool::npy;

/// Digits with columns on scales 1 to 1,000 and shifted, as raw tabular
/// columns (counts, money) would be.
fn wide_digits() -> Dataset {
    let d = Dataset::digits();
    let mut x = d.features().into_owned();
    for row in x.chunks_exact_mut(d.dim) {
        for (j, v) in row.iter_mut().enumerate() {
            *v = *v * [1.0, 10.0, 100.0, 1000.0][j % 4] + j as f32;
        }
    }
    d.with_features(x).unwrap()
}

fn small() -> MlpConfig {
    MlpConfig {
        hidden: vec![32],
        min_steps: 60,
        epochs: 3,
        seed: 4,
        ..MlpConfig::default()
    }
}

#[test]
fn scaled_model_equals_model_trained_on_prestandardized_features() {
    let d = wide_digits();
    let rows: Vec<usize> = (0..400).collect();
    let scaler = Scaler::fit(ScaleKind::Standard, &d.features(), d.dim, None).unwrap();
    let mut raw = Mlp::new(d.dim, d.classes, small())
        .unwrap()
        .with_scaler(Some(scaler.clone()))
        .unwrap();
    raw.fit(&d.gather(&rows), &d.labels(&rows)).unwrap();

    let mut z = d.features().into_owned();
    scaler.apply_in_place(&mut z);
    let zd = d.with_features(z).unwrap();
    let mut pre = Mlp::new(
        d.dim,
        d.classes,
        MlpConfig {
            scale: Scale::None,
            ..small()
        },
    )
    .unwrap();
    pre.fit(&zd.gather(&rows), &zd.labels(&rows)).unwrap();

    let a = raw.predict_proba(&d.features()).unwrap();
    let b = pre.predict_proba(&zd.features()).unwrap();
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-6, "max |raw − prestandardized| = {worst}");
    // The listed-rows path scales the same way.
    let listed: Vec<usize> = vec![1700, 3, 999];
    let p = raw.predict_proba_rows(&d.features(), &listed).unwrap();
    assert_eq!(p, raw.predict_proba(&d.gather(&listed)).unwrap());
    // And it matters: without the scaler the same weights predict
    // something else entirely on raw columns.
    let acc_scaled = raw.accuracy(&d.features(), &d.y).unwrap();
    assert!(acc_scaled > 0.8, "accuracy {acc_scaled}");
}

#[test]
fn statistics_round_trip_through_save_and_load() {
    let dir = tempfile::tempdir().unwrap();
    let d = wide_digits();
    for kind in [ScaleKind::Standard, ScaleKind::MinMax] {
        let scaler = Scaler::fit(kind, &d.features(), d.dim, None).unwrap();
        assert_eq!(scaler.constant, vec![0, 32, 39], "digits' blank pixels");
        let mut m = Mlp::new(d.dim, d.classes, small())
            .unwrap()
            .with_scaler(Some(scaler.clone()))
            .unwrap();
        let rows: Vec<usize> = (0..200).collect();
        m.fit(&d.gather(&rows), &d.labels(&rows)).unwrap();
        let path = dir.path().join(format!("{}.safetensors", kind.name()));
        m.save(&path).unwrap();
        let back = Mlp::load(&path).unwrap();
        assert_eq!(back.scaler(), Some(&scaler));
        assert_eq!(
            back.predict_proba(&d.features()).unwrap(),
            m.predict_proba(&d.features()).unwrap()
        );
    }
}

#[test]
fn a_model_saved_before_scaling_existed_loads_and_predicts_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let d = Dataset::digits();
    let m = Mlp::new(d.dim, d.classes, small()).unwrap();
    let path = dir.path().join("old.safetensors");
    m.save(&path).unwrap();
    // Strip what the old format did not have.
    let json = path.with_extension("json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let obj = v.as_object_mut().unwrap();
    assert!(obj.remove("scale").is_some() && obj.remove("scaler").is_some());
    std::fs::write(&json, v.to_string()).unwrap();
    let back = Mlp::load(&path).unwrap();
    assert!(back.scaler().is_none());
    assert_eq!(back.config().scale, Scale::None);
    assert_eq!(
        back.predict_proba(&d.features()).unwrap(),
        m.predict_proba(&d.features()).unwrap()
    );
}

#[test]
fn a_damaged_scaler_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let d = Dataset::digits();
    let scaler = Scaler::fit(ScaleKind::Standard, &d.features(), d.dim, None).unwrap();
    let m = Mlp::new(d.dim, d.classes, small())
        .unwrap()
        .with_scaler(Some(scaler))
        .unwrap();
    let path = dir.path().join("m.safetensors");
    m.save(&path).unwrap();
    let json = path.with_extension("json");
    let text = std::fs::read_to_string(&json).unwrap();
    std::fs::write(
        &json,
        text.replace("\"kind\":\"standard\"", "\"kind\":\"robust\""),
    )
    .unwrap();
    let e = Mlp::load(&path).err().unwrap().to_string();
    assert!(e.contains("robust"), "{e}");
    // A scaler of the wrong width is refused when attached.
    let narrow = Scaler::fit(ScaleKind::Standard, &[1.0, 2.0], 2, None).unwrap();
    let e = Mlp::new(d.dim, d.classes, small())
        .unwrap()
        .with_scaler(Some(narrow))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("2 columns") && e.contains("64 inputs"), "{e}");
}

#[test]
fn cli_train_and_predict_apply_the_saved_scaler() {
    let dir = tempfile::tempdir().unwrap();
    let d = wide_digits();
    let rows: Vec<usize> = (0..500).collect();
    let x = d.gather(&rows);
    let y: Vec<i64> = d.labels(&rows).iter().map(|&c| c as i64).collect();
    let scaler = Scaler::fit(ScaleKind::Standard, &x, d.dim, None).unwrap();
    let mut z = x.clone();
    scaler.apply_in_place(&mut z);
    let p = |n: &str| dir.path().join(n);
    npy::save(&p("x.npy"), &[500, d.dim], &x).unwrap();
    npy::save(&p("z.npy"), &[500, d.dim], &z).unwrap();
    let yb: Vec<u8> = {
        let mut h = npy::encode_header(npy::DType::I64, &[500]);
        h.extend(y.iter().flat_map(|v| v.to_le_bytes()));
        h
    };
    std::fs::write(p("y.npy"), yb).unwrap();
    let run = |args: &[&str]| {
        let out = common::alpool(args);
        assert!(out.status.success(), "{args:?}: {}", common::stderr(&out));
        common::stderr(&out)
    };
    let s = |n: &str| p(n).to_string_lossy().into_owned();
    let common_args = ["--hidden", "32", "--min-steps", "60", "--epochs", "3"];
    let note = run(&[
        &[
            "train",
            "--features",
            &s("x.npy"),
            "--labels",
            &s("y.npy"),
            "--out",
            &s("raw.safetensors"),
        ][..],
        &common_args,
    ]
    .concat());
    assert!(
        note.contains("constant"),
        "the blank pixel columns are named: {note}"
    );
    let warn = run(&[
        &[
            "train",
            "--features",
            &s("z.npy"),
            "--labels",
            &s("y.npy"),
            "--scale",
            "none",
            "--out",
            &s("pre.safetensors"),
        ][..],
        &common_args,
    ]
    .concat());
    assert!(!warn.contains("warning"), "{warn}");
    run(&[
        "predict",
        "--model",
        &s("raw.safetensors"),
        "--features",
        &s("x.npy"),
        "--out",
        &s("p_raw.npy"),
    ]);
    run(&[
        "predict",
        "--model",
        &s("pre.safetensors"),
        "--features",
        &s("z.npy"),
        "--out",
        &s("p_pre.npy"),
    ]);
    let read = |n: &str| {
        let b = std::fs::read(p(n)).unwrap();
        let h = npy::parse_header(&p(n), &b, &[npy::DType::F32], "f32").unwrap();
        bytemuck::pod_collect_to_vec::<u8, f32>(&b[h.data_offset..])
    };
    let (a, b) = (read("p_raw.npy"), read("p_pre.npy"));
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-5, "max |raw − prestandardized| = {worst}");
    // --scale none on raw columns far apart: one warning naming the columns.
    let warn = run(&[
        &[
            "train",
            "--features",
            &s("x.npy"),
            "--labels",
            &s("y.npy"),
            "--scale",
            "none",
            "--out",
            &s("none.safetensors"),
        ][..],
        &common_args,
    ]
    .concat());
    let lines: Vec<&str> = warn.lines().filter(|l| l.starts_with("warning")).collect();
    assert_eq!(lines.len(), 1, "{warn}");
    assert!(lines[0].contains("column"), "{warn}");
}
