//! GPU parity: every strategy and input form must give the CPU's selection,
//! bit for bit, on pools with exact ties, several chunks, awkward sizes,
//! k = 0 and k ≥ N. In CI (ALPOOL_REQUIRE_GPU=1) a missing adapter fails;
//! elsewhere these tests skip loudly.

use crate::common;

use alpool::backend::gpu::Gpu;
use alpool::pool::Exclusions;
use alpool::score::ScoreSpec;
use alpool::{InputForm, Inputs, Job, LogBase, Pool, Stochastic, StochasticKind, Strategy};

use crate::common::gpu;

/// Rows on a coarse grid (many exact ties) mixed with continuous rows.
fn pool_rows(n: usize, classes: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = crate::rng::Rng::new(seed);
    (0..n)
        .map(|i| {
            if i % 3 == 0 {
                let mut r = vec![0f32; classes];
                alpool::bench::synth::softmax_row(seed, i as u64, &mut r);
                r
            } else {
                let mut w: Vec<u64> = (0..classes).map(|_| rng.below(3)).collect();
                w[0] += 1;
                let t: u64 = w.iter().sum();
                w.iter().map(|&x| (x as f64 / t as f64) as f32).collect()
            }
        })
        .collect()
}

fn parity(g: &Gpu, pool: &Pool, job: &Job, what: &str) {
    let want = crate::common::select_cpu(pool, job).unwrap();
    let (got, phases) = crate::common::select_gpu(g, pool, job).unwrap();
    assert_eq!(got.entries.len(), want.entries.len(), "{what}");
    for (a, b) in got.entries.iter().zip(&want.entries) {
        assert_eq!(
            (a.rank, a.index),
            (b.rank, b.index),
            "{what}: GPU and CPU differ at rank {}",
            b.rank
        );
        assert_eq!(
            a.score.to_bits(),
            b.score.to_bits(),
            "{what}: score at rank {}",
            b.rank
        );
    }
    let _ = phases;
}

#[test]
fn only_about_k_rows_come_back_from_the_gpu() {
    let Some(g) = gpu() else { return };
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.npy");
    alpool::bench::synth::write_softmax_pool(&p, 200_000, 10, 5).unwrap();
    let pool = Pool::open(&[&p]).unwrap();
    for strategy in Strategy::ALL {
        for k in [1usize, 100, 1000] {
            let mut job = Job::new(strategy, InputForm::probs(), k);
            job.chunk_rows = 65_536;
            let (sel, phases) = crate::common::select_gpu(&g, &pool, &job).unwrap();
            assert_eq!(
                sel.indices(),
                crate::common::select_cpu(&pool, &job).unwrap().indices()
            );
            assert_eq!(phases.chunks, 4);
            // Continuous scores, so no ties: k plus the boundary bucket per chunk.
            assert!(
                phases.candidates <= 4 * (k as u64 + 1100),
                "{strategy} k={k}: {} candidates",
                phases.candidates
            );
        }
    }
}

#[test]
fn gpu_matches_cpu_for_every_strategy_input_and_chunking() {
    let Some(g) = gpu() else { return };
    let dir = tempfile::tempdir().unwrap();
    for (n, classes) in [(10_007usize, 10usize), (3_001, 2), (777, 37)] {
        let rows = pool_rows(n, classes, n as u64);
        let p = dir.path().join(format!("p{n}.npy"));
        common::save_f32(&p, &rows, classes);
        let h = dir.path().join(format!("h{n}.npy"));
        common::save_f16(&h, &rows, classes);
        // Logits: log of the probabilities, shifted per row.
        let logits: Vec<Vec<f32>> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                r.iter()
                    .map(|&x| (x.max(1e-6)).ln() + (i % 5) as f32)
                    .collect()
            })
            .collect();
        let l = dir.path().join(format!("l{n}.npy"));
        common::save_f32(&l, &logits, classes);
        let probs = Pool::open(&[&p]).unwrap();
        let half = Pool::open(&[&h]).unwrap();
        let logit_pool = Pool::open(&[&l]).unwrap();
        for strategy in Strategy::ALL {
            for (k, chunk) in [
                (0usize, 0u64),
                (1, 0),
                (50, 0),
                (50, 1000),
                (n + 3, 0),
                (200, 333),
            ] {
                let spec = ScoreSpec {
                    strategy,
                    log_base: LogBase::Two,
                    seed: 9,
                };
                let mut job = Job::new(spec.strategy, InputForm::probs(), k)
                    .log_base(spec.log_base)
                    .seed(spec.seed);
                job.chunk_rows = chunk;
                job.exclusions = Exclusions::new(vec![0, 5, 6, (n - 1) as u64]);
                let what = format!("{strategy} n={n} C={classes} k={k} chunk={chunk}");
                parity(&g, &probs, &job, &format!("{what} probs"));
                job.input = InputForm::Probs {
                    renormalize: true,
                    sum_tol: 1e-2,
                };
                parity(&g, &half, &job, &format!("{what} f16 renormalized"));
                job.input = InputForm::Logits { temperature: 1.5 };
                parity(&g, &logit_pool, &job, &format!("{what} logits"));
            }
        }
    }
}

#[test]
fn gpu_reports_bad_rows_like_the_cpu() {
    let Some(g) = gpu() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut rows = pool_rows(5_000, 4, 3);
    rows[4_321][2] = f32::NAN;
    rows[4_500] = vec![0.5, 0.5, 0.5, 0.5];
    let p = dir.path().join("bad.npy");
    common::save_f32(&p, &rows, 4);
    let pool = Pool::open(&[&p]).unwrap();
    for chunk in [0u64, 1000] {
        let mut job = Job::new(Strategy::Entropy, InputForm::probs(), 10);
        job.chunk_rows = chunk;
        let cpu_err = crate::common::select_cpu(&pool, &job)
            .unwrap_err()
            .to_string();
        let gpu_err = crate::common::select_gpu(&g, &pool, &job)
            .unwrap_err()
            .to_string();
        assert_eq!(gpu_err, cpu_err);
        assert!(gpu_err.contains("row 4321"), "{gpu_err}");
    }
    // A sum error alone (no NaN) is caught by the host's exact check.
    rows[4_321][2] = rows[4_320][2];
    rows[4_321] = rows[4_320].clone();
    common::save_f32(&p, &rows, 4);
    let pool = Pool::open(&[&p]).unwrap();
    let job = Job::new(Strategy::Margin, InputForm::probs(), 10);
    let gpu_err = crate::common::select_gpu(&g, &pool, &job)
        .unwrap_err()
        .to_string();
    assert_eq!(
        gpu_err,
        crate::common::select_cpu(&pool, &job)
            .unwrap_err()
            .to_string()
    );
    assert!(
        gpu_err.contains("row 4500") && gpu_err.contains("sum to 2"),
        "{gpu_err}"
    );
}

#[test]
fn adapter_names_that_match_nothing_are_a_clear_error() {
    if gpu().is_none() {
        return;
    }
    let err = Gpu::new(Some("no-such-adapter-xyz"))
        .err()
        .expect("must fail")
        .to_string();
    assert!(
        err.contains("no adapter matches") && err.contains("found:"),
        "{err}"
    );
    assert!(!alpool::backend::gpu::list_adapters().is_empty());
}

#[test]
fn near_ties_below_f32_resolution_still_match() {
    // Thousands of rows that differ from one base row by a few ulps: their
    // canonical scores differ by less than the GPU's f32 error, so only the
    // error bound and the canonical refine keep the selection exact.
    let Some(g) = gpu() else { return };
    let mut base = vec![0f32; 10];
    alpool::bench::synth::softmax_row(1, 1, &mut base);
    let mut rng = crate::rng::Rng::new(8);
    let rows: Vec<Vec<f32>> = (0..20_000)
        .map(|_| {
            let mut r = base.clone();
            for _ in 0..3 {
                let (i, j) = (rng.below(10) as usize, rng.below(10) as usize);
                let d = (rng.below(5) as f32) * f32::EPSILON * r[i].min(r[j]);
                r[i] += d;
                r[j] -= d;
            }
            r
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("near.npy");
    common::save_f32(&p, &rows, 10);
    let pool = Pool::open(&[&p]).unwrap();
    for strategy in [
        Strategy::Entropy,
        Strategy::Margin,
        Strategy::Ratio,
        Strategy::LeastConfidence,
    ] {
        for k in [1usize, 10, 300, 5000] {
            let job = Job::new(strategy, InputForm::probs(), k);
            parity(&g, &pool, &job, &format!("near ties {strategy} k={k}"));
            let job = Job::new(strategy, InputForm::Logits { temperature: 1.0 }, k);
            parity(
                &g,
                &pool,
                &job,
                &format!("near ties, as logits, {strategy} k={k}"),
            );
        }
    }
}

#[test]
fn cli_gpu_select_verifies_against_the_cpu_and_lists_devices() {
    if gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.npy");
    alpool::bench::synth::write_softmax_pool(&p, 5_000, 6, 2).unwrap();
    let p = p.to_str().unwrap();
    let out = dir.path().join("b.csv");
    let o = common::alpool(&[
        "select",
        p,
        "-s",
        "entropy",
        "-k",
        "20",
        "--device",
        "gpu",
        "--verify",
        "-v",
        "--out",
        out.to_str().unwrap(),
    ]);
    let err = common::stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("identical to the CPU path") && err.contains("GPU phases"),
        "{err}"
    );
    let cpu = common::alpool(&["select", p, "-s", "entropy", "-k", "20", "--device", "cpu"]);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), common::stdout(&cpu));
    let o = common::alpool(&[
        "select",
        p,
        "--device",
        "gpu",
        "--adapter",
        "no-such-adapter",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        common::stderr(&o).contains("no adapter matches"),
        "{}",
        common::stderr(&o)
    );
    // On a headless machine: one line per adapter, and nothing on stderr
    // (Mesa's device-select layer used to print "XDG_RUNTIME_DIR is invalid
    // or not set" twice per probe, and GL listed lavapipe a second time).
    let headless = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_alpool"))
            .args(args)
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("NODEVICE_SELECT")
            .output()
            .unwrap()
    };
    let o = headless(&["devices"]);
    let lines: Vec<String> = common::stdout(&o).lines().map(String::from).collect();
    assert!(o.status.success() && !lines.is_empty(), "{lines:?}");
    assert!(
        lines.iter().all(|l| l.contains("max storage binding")),
        "{lines:?}"
    );
    let mut distinct = lines.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        lines.len(),
        "an adapter listed twice: {lines:?}"
    );
    assert_eq!(common::stderr(&o), "", "stray stderr");
    let o = headless(&["select", p, "-k", "5", "--device", "gpu", "-q"]);
    assert!(o.status.success());
    assert_eq!(common::stderr(&o), "", "stray stderr");
}

#[test]
fn fused_feature_selection_on_the_gpu_equals_the_cpus() {
    use alpool::features::FeaturePool;
    use alpool::learner::{Mlp, MlpConfig, ScaleKind, Scaler};
    use alpool::pool::npy::{self, DType};
    let Some(g) = gpu() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut rng = crate::rng::Rng::new(12);
    for case in 0..6u64 {
        // Short tail tiles (n not a multiple of 512), two shards, chunks
        // far smaller than a shard (chunk_rows), one or two hidden layers,
        // with and without a scaler, float32 and uint8 features.
        let (n, dim, classes) = [(3000, 5, 4), (1337, 12, 3), (2100, 7, 6)][case as usize % 3];
        let bytes = case >= 3;
        let raw: Vec<u8> = (0..n * dim).map(|_| rng.below(3) as u8 * 100).collect();
        // Coarse values: repeated rows, so scores tie.
        let x: Vec<f32> = raw.iter().map(|&v| v as f32 / 100.0 - 1.0).collect();
        let cut = n / 3;
        let paths = [
            dir.path().join(format!("a{case}.npy")),
            dir.path().join(format!("b{case}.npy")),
        ];
        for (p, (lo, hi)) in paths.iter().zip([(0, cut), (cut, n)]) {
            if bytes {
                let mut b = npy::encode_header(DType::U8, &[hi - lo, dim]);
                b.extend_from_slice(&raw[lo * dim..hi * dim]);
                std::fs::write(p, b).unwrap();
            } else {
                npy::save(p, &[hi - lo, dim], &x[lo * dim..hi * dim]).unwrap();
            }
        }
        let hidden = if case % 2 == 0 { vec![8] } else { vec![16, 7] };
        let mut m = Mlp::new(
            dim,
            classes,
            MlpConfig {
                hidden,
                seed: case,
                ..MlpConfig::default()
            },
        )
        .unwrap();
        if case % 3 != 1 {
            m = m
                .with_scaler(Some(
                    Scaler::fit(ScaleKind::Standard, &x, dim, None).unwrap(),
                ))
                .unwrap();
        }
        let fp = FeaturePool::open(&paths).unwrap().with_block_rows(1024);
        for strategy in Strategy::ALL {
            if classes < strategy.min_classes() {
                continue;
            }
            // The plain top k, and stochastic batches keyed on the
            // model's canonical scores.
            let draws = [
                None,
                Some(Stochastic::new(StochasticKind::Power, 2.0)),
                Some(Stochastic::new(StochasticKind::Softmax, 0.5)),
            ];
            for (k, draw) in [1, 57, n + 4]
                .into_iter()
                .flat_map(|k| draws.map(|d| (k, d)))
            {
                let mut job = Job::new(strategy, InputForm::probs(), k).seed(case);
                job.exclusions = Exclusions::new(vec![0, cut as u64, 1023, n as u64 - 1]);
                job.chunk_rows = [0, 700, 333][case as usize % 3];
                job.stochastic = draw;
                let cpu = common::select_cpu(Inputs::model(&m, &fp), &job).unwrap();
                let (on_gpu, p) = common::select_gpu(&g, Inputs::model(&m, &fp), &job).unwrap();
                assert_eq!(
                    on_gpu.entries, cpu.entries,
                    "case {case} {strategy} k {k} {draw:?}"
                );
                assert!(
                    p.candidates <= n as u64 && p.chunks >= 2,
                    "case {case}: {p:?}"
                );
            }
        }
    }
}

#[test]
fn select_model_on_the_gpu_writes_the_cpus_batch() {
    use alpool::learner::{Mlp, MlpConfig};
    let Some(_g) = gpu() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut rng = crate::rng::Rng::new(4);
    let (n, dim) = (1500, 6);
    let x: Vec<f32> = (0..n * dim).map(|_| rng.normal() as f32).collect();
    let xp = dir.path().join("x.npy");
    alpool::pool::npy::save(&xp, &[n, dim], &x).unwrap();
    let mp = dir.path().join("m.safetensors");
    let config = MlpConfig {
        hidden: vec![12],
        ..MlpConfig::default()
    };
    Mlp::new(dim, 5, config).unwrap().save(&mp).unwrap();
    let (m, f) = (mp.to_str().unwrap(), xp.to_str().unwrap());
    let out = dir.path().join("gpu.csv");
    let o = common::alpool(&[
        "select",
        "--model",
        m,
        "--features",
        f,
        "-k",
        "40",
        "-s",
        "margin",
        "--device",
        "gpu",
        "--verify",
        "-v",
        "-q",
        "--out",
        out.to_str().unwrap(),
    ]);
    let err = common::stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("identical to the CPU path") && err.contains("forward"),
        "{err}"
    );
    let cpu = common::alpool(&[
        "select",
        "--model",
        m,
        "--features",
        f,
        "-k",
        "40",
        "-s",
        "margin",
        "--device",
        "cpu",
    ]);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), common::stdout(&cpu));
}
