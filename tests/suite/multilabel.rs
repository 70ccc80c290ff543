//! The multi-label strategies against naive references written from the
//! documented formulas (not the library's code): exact picks and scores,
//! ties included, for every dtype, shard split, chunk size, k, exclusion
//! list and log base; logits; parts merged; bad pools named.

use std::path::Path;

use crate::common;
use crate::rng::Rng;
use alpool::pool::npy;
use alpool::{Error, Exclusions, InputForm, Inputs, Job, LogBase, MultiLabel, Pool, Run};

/// N x L outputs on a coarse grid that holds 0, ½ and 1 (many exact
/// ties, every edge of the definitions), as f32.
fn grid(n: usize, l: usize, seed: u64) -> Vec<f32> {
    const GRID: [f32; 9] = [0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0];
    let mut rng = Rng::new(seed);
    (0..n * l)
        .map(|_| GRID[rng.below(GRID.len() as u64) as usize])
        .collect()
}

/// −p ln p − (1−p) ln(1−p) with 0 ln 0 = 0, as documented.
fn h(p: f64) -> f64 {
    let term = |x: f64| if x > 0.0 { x * x.ln() } else { 0.0 };
    0.0 - term(p) - term(1.0 - p)
}

/// The documented score of one row of probabilities.
fn reference_score(m: MultiLabel, job: &Job, p: &[f64]) -> f64 {
    let l = p.len() as f64;
    let ln_b = job.log_base.ln();
    let c = job.label_cardinality.unwrap_or(0.0);
    let positive = p.iter().filter(|&&x| x > 0.5).count() as f64;
    let lci = (positive - c).abs();
    let modal = |x: f64| x * (if x > 0.5 { 1.0 } else { 0.0 } - 0.5);
    match m {
        MultiLabel::MeanEntropy => p.iter().map(|&x| h(x)).sum::<f64>() / l / ln_b,
        MultiLabel::MaxEntropy => p.iter().map(|&x| h(x)).fold(f64::MIN, f64::max) / ln_b,
        MultiLabel::MinMargin => p.iter().map(|&x| (x - 0.5).abs()).fold(f64::MAX, f64::min),
        MultiLabel::Cardinality => lci,
        MultiLabel::Adaptive => {
            let pos: Vec<f64> = p.iter().copied().filter(|&x| x > 0.5).collect();
            let neg: Vec<f64> = p.iter().copied().filter(|&x| x <= 0.5).collect();
            let lo = pos.iter().copied().fold(f64::MAX, f64::min);
            let hi = neg.iter().copied().fold(f64::MIN, f64::max);
            let lo = if pos.is_empty() { 0.5 } else { lo };
            let hi = if neg.is_empty() { 0.5 } else { hi };
            let u = 1.0 / (lo - hi).max(0.01);
            u.powf(job.uncertainty_weight) * lci.powf(1.0 - job.uncertainty_weight)
        }
        MultiLabel::AvgScore => p.iter().map(|&x| modal(x)).sum::<f64>() / l,
        MultiLabel::MaxScore => p.iter().map(|&x| modal(x)).fold(f64::MIN, f64::max),
        _ => unreachable!("a strategy this test does not know"),
    }
}

/// The naive selection: every row's score, sorted by (priority desc, row).
fn reference(values: &[f32], l: usize, job: &Job, m: MultiLabel) -> Vec<(u64, f64)> {
    let lower = m == MultiLabel::MinMargin;
    let mut all: Vec<(f64, u64, f64)> = values
        .chunks_exact(l)
        .enumerate()
        .filter(|&(i, _)| !job.exclusions.contains(i as u64))
        .map(|(i, row)| {
            let s = reference_score(m, job, &common::reference_probs(row, job.input));
            (if lower { 0.0 - s } else { s }, i as u64, s)
        })
        .collect();
    all.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap().then(a.1.cmp(&b.1)));
    all.truncate(job.k);
    all.into_iter().map(|(_, i, s)| (i, s)).collect()
}

fn job(m: MultiLabel, k: usize) -> Job {
    let mut job = Job::new(m, InputForm::MultiLabel { logits: false }, k);
    job.label_cardinality = Some(1.5);
    job.uncertainty_weight = 0.3;
    job
}

fn picks(sel: &alpool::Selection) -> Vec<(u64, f64)> {
    sel.entries.iter().map(|e| (e.index, e.score)).collect()
}

/// The pool as f32, f16 and f64 files, in two shards, and borrowed.
fn files(dir: &Path, values: &[f32], l: usize) -> Vec<Pool<'static>> {
    let n = values.len() / l;
    let cut = n / 3;
    let f32s = dir.join("p32.npy");
    npy::save(&f32s, &[n, l], values).unwrap();
    let wide: Vec<f64> = values.iter().map(|&x| x as f64).collect();
    let f64s = dir.join("p64.npy");
    npy::save(&f64s, &[n, l], &wide).unwrap();
    // Every grid value is exact in float16.
    let rows: Vec<Vec<f32>> = values.chunks_exact(l).map(<[f32]>::to_vec).collect();
    let f16s = dir.join("p16.npy");
    common::save_f16(&f16s, &rows, l);
    let (a, b) = (dir.join("a.npy"), dir.join("b.npy"));
    npy::save(&a, &[cut, l], &values[..cut * l]).unwrap();
    npy::save(&b, &[n - cut, l], &values[cut * l..]).unwrap();
    vec![
        Pool::open(&[f32s]).unwrap(),
        Pool::open(&[f64s]).unwrap(),
        Pool::open(&[f16s]).unwrap(),
        Pool::open(&[a, b]).unwrap(),
    ]
}

#[test]
fn every_strategy_equals_its_naive_reference_in_every_dtype_and_split() {
    let dir = tempfile::tempdir().unwrap();
    // Up to 16 labels a row fills one vector of the AVX-512 lanes; 20 and
    // 37 take whole vectors and a masked tail.
    let cases = [(300, 3), (257, 6), (90, 1), (131, 20), (75, 37)];
    for (case, (n, l)) in cases.into_iter().enumerate() {
        let values = grid(n, l, case as u64);
        let pools = files(dir.path(), &values, l);
        let borrowed = Pool::from_f32(&values, l).unwrap();
        for m in MultiLabel::ALL {
            for (k, chunk, base) in [
                (0, 0, LogBase::E),
                (1, 7, LogBase::Two),
                (17, 0, LogBase::E),
                (n, 13, LogBase::Ten),
                (n + 3, 1, LogBase::E),
            ] {
                let mut job = job(m, k).log_base(base);
                job.label_cardinality = Some(0.6 * l as f64);
                job.chunk_rows = chunk;
                job.exclusions = Exclusions::new(vec![0, 5, (n - 1) as u64]);
                let want = reference(&values, l, &job, m);
                for (i, pool) in pools.iter().chain([&borrowed]).enumerate() {
                    let sel = common::select_cpu(pool, &job).unwrap();
                    assert_eq!(picks(&sel), want, "{m} pool {i}, k {k}, chunk {chunk}");
                }
            }
        }
    }
}

#[test]
fn logits_and_every_score_in_row_order() {
    let (n, l) = (400, 7);
    let mut rng = Rng::new(3);
    let logits: Vec<f32> = (0..n * l).map(|_| (3.0 * rng.normal()) as f32).collect();
    let pool = Pool::from_f32(&logits, l).unwrap();
    for m in MultiLabel::ALL {
        let mut job = job(m, 25);
        job.input = InputForm::MultiLabel { logits: true };
        let want = reference(&logits, l, &job, m);
        let got = picks(&common::select_cpu(&pool, &job).unwrap());
        // σ is computed in the overflow-free form; the reference in the
        // textbook one: the same picks, scores within rounding.
        assert_eq!(got.len(), want.len());
        for ((gi, gs), (wi, ws)) in got.iter().zip(&want) {
            assert_eq!(gi, wi, "{m}");
            assert!(
                (gs - ws).abs() <= 1e-12 * (1.0 + ws.abs()),
                "{m}: {gs} vs {ws}"
            );
        }
        let every = alpool::score(&pool, &job).unwrap();
        assert_eq!(every.len(), n);
        let plain = job.clone();
        for (i, (&v, row)) in every.iter().zip(logits.chunks_exact(l)).enumerate() {
            let r = reference_score(m, &plain, &common::reference_probs(row, job.input));
            assert!((v - r).abs() <= 1e-12 * (1.0 + r.abs()), "{m} row {i}");
        }
    }
}

#[test]
fn a_stochastic_batch_draws_from_multilabel_scores_reproducibly() {
    let values = grid(500, 4, 11);
    let pool = Pool::from_f32(&values, 4).unwrap();
    let kind = alpool::StochasticKind::Power;
    let job = job(MultiLabel::MeanEntropy, 20).stochastic(alpool::Stochastic::new(kind, 1.0));
    let a = common::select_cpu(&pool, &job).unwrap();
    let b = common::select_cpu(&pool, &job).unwrap();
    assert_eq!(a.indices(), b.indices());
    let other = common::select_cpu(&pool, &job.clone().seed(1)).unwrap();
    assert_ne!(a.indices(), other.indices());
    // The draw favours entropy but is not the top 20.
    let top = common::select_cpu(&pool, &self::job(MultiLabel::MeanEntropy, 20)).unwrap();
    assert_ne!(a.indices(), top.indices());
}

#[test]
fn bad_pools_and_requests_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let (n, l) = (60, 4);
    let mut values = grid(n, l, 5);
    values[37 * l + 2] = 1.25;
    let p = dir.path().join("bad.npy");
    npy::save(&p, &[n, l], &values).unwrap();
    let pool = Pool::open(&[&p]).unwrap();
    let e = common::select_cpu(&pool, &job(MultiLabel::MeanEntropy, 5)).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::BadRow { global: 37, .. }), "{msg}");
    assert!(
        msg.contains("bad.npy") && msg.contains("column 2") && msg.contains("[0, 1]"),
        "{msg}"
    );
    for (bad, says) in [(f32::NAN, "NaN"), (-0.5, "negative")] {
        values[37 * l + 2] = bad;
        npy::save(&p, &[n, l], &values).unwrap();
        let pool = Pool::open(&[&p]).unwrap();
        let msg = alpool::score(&pool, &job(MultiLabel::MinMargin, 5))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("row 37") && msg.contains(says), "{msg}");
    }
    let good = grid(n, l, 6);
    let pool = Pool::from_f32(&good, l).unwrap();
    let refuse = |job: &Job, says: &str| {
        let msg = common::select_cpu(&pool, job).unwrap_err().to_string();
        assert!(msg.contains(says), "{says}: {msg}");
    };
    // A multi-label strategy on softmax rows, and the reverse.
    let mut softmax = job(MultiLabel::MeanEntropy, 5);
    softmax.input = InputForm::probs();
    refuse(&softmax, "--input multilabel");
    let margin = Job::new(
        alpool::Strategy::Margin,
        InputForm::MultiLabel { logits: false },
        5,
    );
    refuse(&margin, "multi-label; its strategies are mean-entropy");
    let mut unknown = job(MultiLabel::Cardinality, 5);
    unknown.label_cardinality = None;
    refuse(&unknown, "--label-cardinality");
    let mut too_many = job(MultiLabel::Adaptive, 5);
    too_many.label_cardinality = Some(4.5);
    refuse(&too_many, "from 0 to the pool's 4 labels");
    let mut beta = job(MultiLabel::Adaptive, 5);
    beta.uncertainty_weight = 1.5;
    refuse(&beta, "β must lie in [0, 1]");
    // A small pool stays on the CPU under auto.
    let auto = alpool::select(&pool, &job(MultiLabel::MeanEntropy, 5), &Run::default()).unwrap();
    assert!(auto.reason.starts_with("using the CPU"), "{}", auto.reason);
    assert_eq!(auto.selection.entries.len(), 5);
}

/// Rows in families of 50 that differ from their base row by a few f32
/// ulps in one label: their canonical scores differ by less than f32
/// resolves, so a GPU that trusted its own f32 priorities (or a bound too
/// tight) would order them wrongly.
fn near_ties(n: usize, l: usize) -> Vec<f32> {
    let mut rng = Rng::new(5);
    let mut out = Vec::with_capacity(n * l);
    let mut base: Vec<f32> = Vec::new();
    for i in 0..n {
        if i % 50 == 0 {
            base = (0..l)
                .map(|_| (0.05 + 0.9 * rng.uniform()) as f32)
                .collect();
        }
        let mut row = base.clone();
        let j = rng.below(l as u64) as usize;
        let ulps = rng.below(7) as i32 - 3;
        row[j] = f32::from_bits((row[j].to_bits() as i32 + ulps) as u32);
        out.extend(row);
    }
    out
}

/// The GPU returns the CPU's selection, entry for entry, for every
/// strategy, tie and chunk size, float32 and float16; a bad value is named
/// as the CPU names it.
#[test]
fn the_gpu_equals_the_cpu() {
    let Some(gpu) = common::gpu() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (n, l) = (3000, 7);
    let values = grid(n, l, 21);
    let pools = files(dir.path(), &values, l);
    let ties = near_ties(n, l);
    let smooth_pool = Pool::from_f32(&ties, l).unwrap();
    for m in MultiLabel::ALL {
        for (k, chunk, base, beta) in [
            (1, 0, LogBase::E, 0.5),
            (40, 500, LogBase::Two, 0.0),
            (n, 0, LogBase::Ten, 1.0),
            (300, 1234, LogBase::E, 0.3),
            (25, 97, LogBase::E, 0.7),
            (75, 331, LogBase::Two, 0.5),
        ] {
            let mut job = job(m, k).log_base(base);
            job.uncertainty_weight = beta;
            job.label_cardinality = Some(2.6);
            job.chunk_rows = chunk;
            job.exclusions = Exclusions::new(vec![3, 77, (n - 1) as u64]);
            // float32 and float16 files, two shards, a smooth pool.
            for (i, pool) in [&pools[0], &pools[2], &pools[3], &smooth_pool]
                .into_iter()
                .enumerate()
            {
                let cpu = common::select_cpu(pool, &job).unwrap();
                let (on_gpu, phases) = common::select_gpu(&gpu, pool, &job).unwrap();
                assert_eq!(
                    picks(&on_gpu),
                    picks(&cpu),
                    "{m} pool {i}, k {k}, chunk {chunk}"
                );
                assert!(phases.chunks >= 1, "{m}: ran on the GPU");
            }
        }
    }
    // Logits, from 0 and values too near it for f32 to tell the sign of
    // σ(z) − ½ as f64 does (one label in a hundred: those rows go to the
    // host), to values where e^z overflows.
    const TINY: [f32; 4] = [0.0, 1e-9, -1e-7, 5e-7];
    const Z: [f32; 10] = [2e-6, 0.5, -0.5, 3.0, -3.0, 20.0, -20.0, 100.0, -100.0, 0.01];
    let mut rng = Rng::new(8);
    let z: Vec<f32> = (0..n * l)
        .map(|_| match rng.below(100) {
            0 => TINY[rng.below(4) as usize],
            _ => Z[rng.below(Z.len() as u64) as usize] * (1.0 + 0.01 * rng.below(3) as f32),
        })
        .collect();
    let z_pool = Pool::from_f32(&z, l).unwrap();
    for m in MultiLabel::ALL {
        for k in [1, 60, n] {
            let mut job = job(m, k);
            job.input = InputForm::MultiLabel { logits: true };
            job.label_cardinality = Some(3.0);
            let cpu = common::select_cpu(&z_pool, &job).unwrap();
            let (on_gpu, _) = common::select_gpu(&gpu, &z_pool, &job).unwrap();
            assert_eq!(picks(&on_gpu), picks(&cpu), "{m} logits, k {k}");
        }
    }
    let mut bad = values.clone();
    bad[1234 * l + 3] = 1.5;
    let p = dir.path().join("bad.npy");
    npy::save(&p, &[n, l], &bad).unwrap();
    let pool = Pool::open(&[&p]).unwrap();
    let job = job(MultiLabel::MinMargin, 10);
    let cpu = common::select_cpu(&pool, &job).unwrap_err().to_string();
    let on_gpu = common::select_gpu(&gpu, &pool, &job)
        .err()
        .unwrap()
        .to_string();
    assert_eq!(on_gpu, cpu);
    assert!(cpu.contains("row 1234"), "{cpu}");
}

/// Each machine writes its shard's part (`--row-offset`), and `alpool
/// merge` gives the whole pool's selection; parts scored with another
/// label cardinality are refused.
#[test]
fn cli_parts_of_shards_merge_into_the_whole_selection() {
    let dir = tempfile::tempdir().unwrap();
    let (n, l, k) = (150, 5, 17);
    let values = grid(n, l, 9);
    let whole = dir.path().join("whole.npy");
    npy::save(&whole, &[n, l], &values).unwrap();
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let ks = k.to_string();
    let select = |file: &Path, extra: &[&str]| {
        let file = path(file);
        let mut args = vec![
            "select",
            &file,
            "-s",
            "adaptive",
            "--input",
            "multilabel",
            "-k",
            &ks,
            "-q",
        ];
        args.extend_from_slice(extra);
        let o = common::alpool(&args);
        assert!(o.status.success(), "{}", common::stderr(&o));
        common::stdout(&o)
    };
    let card = ["--label-cardinality", "2.2"];
    let want = select(&whole, &card);
    assert_eq!(want.lines().count(), k + 1, "{want}");
    let mut parts = Vec::new();
    for (i, (a, b)) in [(0, 41), (41, 99), (99, n)].into_iter().enumerate() {
        let file = dir.path().join(format!("shard-{i}.npy"));
        npy::save(&file, &[b - a, l], &values[a * l..b * l]).unwrap();
        let part = path(&dir.path().join(format!("shard-{i}.alpart")));
        let offset = a.to_string();
        select(
            &file,
            &[card[0], card[1], "--row-offset", &offset, "--out", &part],
        );
        parts.push(part);
    }
    let mut args = vec!["merge", "-k", &ks];
    args.extend(parts.iter().map(String::as_str));
    let o = common::alpool(&args);
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert_eq!(common::stdout(&o), want);
    let other = path(&dir.path().join("other.alpart"));
    select(&whole, &["--label-cardinality", "1", "--out", &other]);
    let o = common::alpool(&["merge", "-k", &ks, &parts[0], &other]);
    assert!(!o.status.success());
    let err = common::stderr(&o);
    assert!(err.contains("label cardinality"), "{err}");
    // The CLI names a pool of the wrong kind.
    let o = common::alpool(&["select", &path(&whole), "-s", "mean-entropy", "-k", "3"]);
    assert!(
        common::stderr(&o).contains("--input multilabel"),
        "{}",
        common::stderr(&o)
    );
}

/// Two-feature rows whose three labels are functions of them: x0 > 0,
/// x0·x1 > 0 (an XOR) and x0² + x1² < 1.5 (a disc).
fn separable(n: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut r = Rng::new(seed);
    let x: Vec<f32> = (0..n * 2)
        .map(|_| (r.uniform() * 4.0 - 2.0) as f32)
        .collect();
    let y = x
        .chunks(2)
        .flat_map(|p| {
            [
                p[0] > 0.0,
                p[0] * p[1] > 0.0,
                p[0] * p[0] + p[1] * p[1] < 1.5,
            ]
            .map(f32::from)
        })
        .collect();
    (x, y)
}

#[test]
fn the_multilabel_loop_pairs_its_strategies_and_repeats_itself() {
    use alpool::al::measured::summarize;
    use alpool::al::multilabel::{MultiLabelData, MultiLabelSim, f1_scores, simulate};
    let (x, y) = separable(600, 2);
    let data = MultiLabelData::new(x, y, (2, 3), "separable").unwrap();
    use alpool::{Method, Query, Stochastic, StochasticKind};
    let drawn = |m: MultiLabel, kind, beta| Method {
        query: Query::Multi(m),
        stochastic: Some(Stochastic::new(kind, beta)),
    };
    let mut strategies: Vec<Method> = std::iter::once(alpool::Strategy::Random.into())
        .chain(MultiLabel::ALL.map(|m| Method::from(Query::Multi(m))))
        .collect();
    strategies.push(drawn(MultiLabel::MeanEntropy, StochasticKind::Power, 2.0));
    strategies.push(drawn(MultiLabel::MinMargin, StochasticKind::Softrank, 1.0));
    let cfg = MultiLabelSim {
        strategies: strategies.clone(),
        repeats: 2,
        seed: 4,
        test_fraction: 0.25,
        seed_size: 10,
        batch_size: 15,
        budget: 70,
        mlp: alpool::learner::MlpConfig {
            hidden: vec![32],
            ..Default::default()
        },
    };
    let runs = simulate(&data, &cfg, &alpool::Silent).unwrap();
    assert_eq!(runs.len(), 2 * strategies.len());
    for r in &runs {
        let labels: Vec<usize> = r.rounds.iter().map(|x| x.labels).collect();
        assert_eq!(labels, [10, 25, 40, 55, 70], "{}", r.name);
        // Every strategy of a repeat starts from the same split and labels.
        let first = runs.iter().find(|o| o.repeat == r.repeat).unwrap();
        assert_eq!(r.rounds[0].metrics, first.rounds[0].metrics);
        assert!(
            r.rounds
                .iter()
                .flat_map(|x| x.metrics)
                .all(|f| (0.0..=1.0).contains(&f))
        );
        // 70 labels separate these labels far better than 10 do, for
        // random and the uncertainty strategies (modAL's avg-score and
        // max-score can pick worse batches than random: docs/multilabel.md).
        if ["random", "mean-entropy", "adaptive"].contains(&r.name.as_str()) {
            let [micro, macro_f1] = r.rounds[4].metrics;
            assert!(micro > 0.6 && macro_f1 > 0.55, "{}: {:?}", r.name, r.rounds);
            assert!(micro > r.rounds[0].metrics[0], "{}: {:?}", r.name, r.rounds);
        }
    }
    // The strategies pick differently: not every curve is random's.
    let curve = |name: &str| -> Vec<[f64; 2]> {
        let r = runs
            .iter()
            .find(|r| r.name == name && r.repeat == 0)
            .unwrap();
        r.rounds.iter().map(|x| x.metrics).collect()
    };
    assert_ne!(curve("random"), curve("mean-entropy"));
    // Drawn batches are not the top k.
    assert_ne!(curve("power-mean-entropy"), curve("mean-entropy"));
    assert_ne!(curve("softrank-min-margin"), curve("min-margin"));
    let again = simulate(&data, &cfg, &alpool::Silent).unwrap();
    for (a, b) in runs.iter().zip(&again) {
        let m = |r: &alpool::al::measured::Run| -> Vec<[f64; 2]> {
            r.rounds.iter().map(|x| x.metrics).collect()
        };
        assert_eq!(m(a), m(b), "{} repeat {}", a.name, a.repeat);
    }
    let names: Vec<String> = strategies.iter().map(Method::name).collect();
    let summary = summarize(&runs, &names);
    assert_eq!(summary.len(), strategies.len());
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
    let aulcs: Vec<f64> = runs
        .iter()
        .filter(|r| r.name == "adaptive")
        .map(|r| mean(&r.rounds.iter().map(|x| x.metrics[0]).collect::<Vec<_>>()))
        .collect();
    let adaptive = summary.iter().find(|s| s.strategy == "adaptive").unwrap();
    assert!((adaptive.aulc_mean[0] - mean(&aulcs)).abs() < 1e-12);
    // The F1s are the hand counts: a perfect and an all-wrong prediction.
    assert_eq!(
        f1_scores(&[0.9, 0.1, 0.9], &[1.0, 0.0, 1.0], 3),
        [1.0, 1.0 / 3.0 * 2.0]
    );
    assert_eq!(f1_scores(&[0.1, 0.9], &[1.0, 0.0], 2), [0.0, 0.0]);
    // Bad settings and bad truth are named.
    let mut bad = cfg.clone();
    bad.strategies = vec![alpool::Strategy::Margin.into()];
    let e = simulate(&data, &bad, &alpool::Silent)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("margin is not a multi-label strategy"), "{e}");
    bad.strategies = vec![drawn(MultiLabel::Adaptive, StochasticKind::Power, 0.0)];
    let e = simulate(&data, &bad, &alpool::Silent)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("beta must be above 0"), "{e}");
    let e = MultiLabelData::new(vec![0.0; 4], vec![1.0, 0.0, 0.5, 1.0], (2, 2), "x");
    let e = e.err().unwrap().to_string();
    assert!(e.contains("row 1, label 0: 0.5 is not 0 or 1"), "{e}");
}

#[test]
fn mnist_pairs_show_two_digits_and_simulate_writes_f1_curves() {
    use alpool::al::multilabel::MultiLabelData;
    let Some(dir) = common::shared_data("mnist") else {
        return;
    };
    let digits = alpool::al::Dataset::from_npy(&dir.join("X.npy"), &dir.join("y.npy")).unwrap();
    let pairs = MultiLabelData::mnist_pairs(&digits, 400, 9).unwrap();
    assert_eq!((pairs.rows(), pairs.dim(), pairs.labels()), (400, 1568, 10));
    let (x, y) = pairs.arrays();
    // Each pair is two of the digits, pixel row by pixel row; its labels
    // are the set of their classes.
    let again = MultiLabelData::mnist_pairs(&digits, 400, 9).unwrap();
    assert_eq!(again.arrays(), (x, y));
    let mut both = 0;
    for (i, (px, py)) in x.chunks(1568).zip(y.chunks(10)).enumerate() {
        let (left, right): (Vec<f32>, Vec<f32>) = (
            px.chunks(56).flat_map(|l| &l[..28]).copied().collect(),
            px.chunks(56).flat_map(|l| &l[28..]).copied().collect(),
        );
        let find = |img: &[f32]| (0..digits.rows()).find(|&r| *digits.row(r) == *img);
        if i < 20 {
            let (a, b) = (find(&left).unwrap(), find(&right).unwrap());
            let mut want = [0f32; 10];
            want[digits.y[a]] = 1.0;
            want[digits.y[b]] = 1.0;
            assert_eq!(py, want, "pair {i}");
        }
        let shown = py.iter().sum::<f32>();
        assert!(shown == 1.0 || shown == 2.0, "pair {i}");
        both += usize::from(shown == 2.0);
    }
    // Two random digits differ nine times in ten.
    assert!((320..=390).contains(&both), "{both}");
    // The files the example writes, through the CLI loop.
    let t = tempfile::tempdir().unwrap();
    let px: Vec<u8> = x.iter().map(|&v| (v * 255.0).round() as u8).collect();
    let py: Vec<u8> = y.iter().map(|&v| v as u8).collect();
    npy::save(&t.path().join("X.npy"), &[400, 1568], &px).unwrap();
    npy::save(&t.path().join("Y.npy"), &[400, 10], &py).unwrap();
    let path = |f: &str| t.path().join(f).to_str().unwrap().to_string();
    let features = path("X.npy");
    let run = |extra: &[&str]| {
        let mut args = vec!["simulate", "--task", "multilabel", "--features", &features];
        args.push("--labels");
        args.extend(extra);
        common::alpool(&args)
    };
    let o = run(&[
        &path("Y.npy"),
        "--strategies",
        "random,adaptive,cardinality",
        "--budget",
        "60",
        "--batch-size",
        "20",
        "--repeats",
        "1",
        "--hidden",
        "32",
        "--out",
        &path("out"),
    ]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let table = common::stdout(&o);
    assert!(
        table.contains("micro-F1 AULC") && table.contains("adaptive"),
        "{table}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t.path().join("out/summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["task"], "multilabel");
    for s in summary["strategies"].as_array().unwrap() {
        let f1 = s["micro_f1_aulc_mean"].as_f64().unwrap();
        assert!(f1 > 0.2 && f1 < 1.0, "{s}");
        let labels: Vec<u64> = s["curve"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c[0].as_u64().unwrap())
            .collect();
        assert_eq!(labels, [20, 40, 60]);
    }
    assert!(
        std::fs::read_to_string(t.path().join("out/rounds.csv"))
            .unwrap()
            .starts_with("strategy,repeat,round,labels,micro_f1,macro_f1")
    );
    // Ground truth of the wrong shape, or not 0/1, is named with its file.
    npy::save(&t.path().join("short.npy"), &[399, 10], &py[..3990]).unwrap();
    let o = run(&[&path("short.npy"), "--out", &path("bad")]);
    assert!(!o.status.success());
    assert!(
        common::stderr(&o).contains("399 x 10 labels for the 400 rows"),
        "{}",
        common::stderr(&o)
    );
    let mut two = py.clone();
    two[25] = 2;
    npy::save(&t.path().join("two.npy"), &[400, 10], &two).unwrap();
    let o = run(&[&path("two.npy"), "--out", &path("bad")]);
    assert!(
        common::stderr(&o).contains("two.npy: row 2, label 5: 2 is not 0 or 1"),
        "{}",
        common::stderr(&o)
    );
    assert!(!t.path().join("bad").exists());
    // A softmax strategy is refused before any training.
    let o = run(&[
        &path("Y.npy"),
        "--strategies",
        "margin",
        "--out",
        &path("bad"),
    ]);
    assert!(
        common::stderr(&o).contains("not a multi-label strategy"),
        "{}",
        common::stderr(&o)
    );
}

#[test]
fn a_multilabel_model_selects_what_its_predictions_select() {
    use alpool::al::multilabel::MultiLabelData;
    use alpool::features::FeaturePool;
    use alpool::learner::{Mlp, MlpConfig, Output};
    let (x, y) = separable(2000, 8);
    let data = MultiLabelData::new(x.clone(), y, (2, 3), "separable").unwrap();
    let cfg = MlpConfig {
        hidden: vec![16],
        min_steps: 100,
        ..Default::default()
    };
    let (model, report) = data.train(cfg.clone()).unwrap();
    assert_eq!(model.output(), Output::Sigmoid);
    assert!(report.train_accuracy > 0.8, "{report:?}");
    let t = tempfile::tempdir().unwrap();
    let xf = t.path().join("x.npy");
    npy::save(&xf, &[2000, 2], &x).unwrap();
    // Blocks of 512 rows: the selection is merged across four of them.
    let features = FeaturePool::open(&[&xf]).unwrap().with_block_rows(512);
    let probs = model.predict_proba(&x).unwrap();
    let pool = Pool::from_f32(&probs, 3).unwrap();
    let excluded = Exclusions::new((0..2000).step_by(7).collect());
    for m in MultiLabel::ALL {
        let mut by_model = Job::new(m, InputForm::probs(), 40).exclude(excluded.clone());
        by_model.label_cardinality = Some(1.2);
        let mut by_file = by_model.clone();
        by_file.input = InputForm::MultiLabel { logits: false };
        let a = alpool::select(Inputs::model(&model, &features), &by_model, &Run::default());
        let b = alpool::select(&pool, &by_file, &Run::default()).unwrap();
        assert_eq!(picks(&a.unwrap().selection), picks(&b.selection), "{m}");
        let sa = alpool::score(Inputs::model(&model, &features), &by_model).unwrap();
        assert_eq!(sa, alpool::score(&pool, &by_file).unwrap(), "{m}");
    }
    // Each block scored on the GPU: the same rows.
    if let Some(gpu) = common::gpu() {
        for m in MultiLabel::ALL {
            let mut job = Job::new(m, InputForm::probs(), 40).exclude(excluded.clone());
            job.label_cardinality = Some(1.2);
            let on_gpu = common::select_gpu(&gpu, Inputs::model(&model, &features), &job);
            let cpu = alpool::select(Inputs::model(&model, &features), &job, &Run::default());
            assert_eq!(
                picks(&on_gpu.unwrap().0),
                picks(&cpu.unwrap().selection),
                "{m}"
            );
        }
    }
    // The wrong model for the strategy is named.
    let margin = Job::new(alpool::Strategy::Margin, InputForm::probs(), 5);
    let e = alpool::select(Inputs::model(&model, &features), &margin, &Run::default());
    let e = e.err().unwrap().to_string();
    assert!(
        e.contains("the model is multi-label (sigmoid outputs), which margin"),
        "{e}"
    );
    let softmax = Mlp::new(2, 3, cfg).unwrap();
    let job = Job::new(MultiLabel::MeanEntropy, InputForm::probs(), 5);
    let e = alpool::select(Inputs::model(&softmax, &features), &job, &Run::default());
    let e = e.err().unwrap().to_string();
    assert!(e.contains("the model is a softmax classifier"), "{e}");
}

#[test]
fn train_multilabel_predict_and_select_model_agree_on_the_cli() {
    let (x, y) = separable(1500, 5);
    let t = tempfile::tempdir().unwrap();
    let path = |f: &str| t.path().join(f).to_str().unwrap().to_string();
    npy::save(&t.path().join("x.npy"), &[1500, 2], &x).unwrap();
    let y8: Vec<u8> = y.iter().map(|&v| v as u8).collect();
    npy::save(&t.path().join("y.npy"), &[1500, 3], &y8).unwrap();
    let o = common::alpool(&[
        "train",
        "--multilabel",
        "--features",
        &path("x.npy"),
        "--labels",
        &path("y.npy"),
        "--hidden",
        "16",
        "--out",
        &path("m.safetensors"),
    ]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert!(common::stderr(&o).contains("trained 3 sigmoid outputs on 1500 rows"));
    let o = common::alpool(&[
        "predict",
        "--model",
        &path("m.safetensors"),
        "--features",
        &path("x.npy"),
        "--out",
        &path("p.npy"),
    ]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let select = |source: &[&str]| {
        let mut args = vec!["select"];
        args.extend(source);
        args.extend([
            "--strategy",
            "adaptive",
            "--label-cardinality",
            "1.3",
            "-k",
            "30",
        ]);
        let o = common::alpool(&args);
        assert!(o.status.success(), "{}", common::stderr(&o));
        common::stdout(&o)
    };
    let by_model = select(&[
        "--model",
        &path("m.safetensors"),
        "--features",
        &path("x.npy"),
    ]);
    let by_file = select(&[&path("p.npy"), "--input", "multilabel"]);
    assert_eq!(by_model, by_file);
    assert_eq!(by_model.lines().count(), 31);
    // Ground truth that is not 0/1 is named with its file, row and label.
    let mut bad = y8.clone();
    bad[4] = 3;
    npy::save(&t.path().join("bad.npy"), &[1500, 3], &bad).unwrap();
    let o = common::alpool(&[
        "train",
        "--multilabel",
        "--features",
        &path("x.npy"),
        "--labels",
        &path("bad.npy"),
        "--out",
        &path("n.safetensors"),
    ]);
    assert!(!o.status.success());
    assert!(
        common::stderr(&o).contains("bad.npy: row 1, label 1: 3 is not 0 or 1"),
        "{}",
        common::stderr(&o)
    );
    assert!(!t.path().join("n.safetensors").exists());
}
