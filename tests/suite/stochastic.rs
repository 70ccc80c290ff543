//! Stochastic batches against a reference written from the documented
//! keys (the noise's hash included, not the library's code): exact picks
//! for every kind, strategy, β, k and exclusion list; the same picks on
//! any thread count, chunking, listed-row order and shard split; the plain
//! top k at β = ∞; draws that follow the stated distribution; bad requests
//! named.

use std::path::Path;

use crate::common;
use crate::rng::Rng;
use alpool::part::{self, PartHeader};
use alpool::pool::npy;
use alpool::{
    BatchStrategy, Device, Disagreement, Exclusions, InputForm, Inputs, Job, Pool, Run,
    SampleLayout, Samples, Stochastic, StochasticKind, Strategy,
};

const KINDS: [StochasticKind; 3] = [
    StochasticKind::Softmax,
    StochasticKind::Power,
    StochasticKind::Softrank,
];

/// splitmix64, as the docs define it.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The documented noise: −ln(−ln u), u = (top 52 bits + ½) / 2⁵² of
/// splitmix64(splitmix64(seed ^ 0x6A09E667F3BCC909) ^ splitmix64(row)).
fn noise(seed: u64, row: u64) -> f64 {
    let h = mix(mix(seed ^ 0x6A09_E667_F3BC_C909) ^ mix(row));
    let u = ((h >> 12) as f64 + 0.5) / (1u64 << 52) as f64;
    -(-u.ln()).ln()
}

/// Rows from a coarse grid: many exact ties.
fn grid_rows(n: usize, c: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(n * c);
    for _ in 0..n {
        let mut w: Vec<u64> = (0..c).map(|_| rng.below(3)).collect();
        w[rng.below(c as u64) as usize] += 1;
        let s: u64 = w.iter().sum();
        out.extend(w.iter().map(|&x| (x as f64 / s as f64) as f32));
    }
    out
}

/// The reference draw: every row's canonical score (tested against its
/// own references elsewhere), its key from the documented formula, the k
/// largest keys with ties to the lower row. (global row, score) pairs.
fn reference(scores: &[f64], first: u64, job: &Job) -> Vec<(u64, f64)> {
    let lower = job.query.lower_is_better();
    let mut rows: Vec<(f64, u64)> = scores
        .iter()
        .enumerate()
        .map(|(i, &s)| (s, first + i as u64))
        .filter(|&(_, r)| !job.exclusions.contains(r))
        .collect();
    let st = job.stochastic.unwrap();
    let priority = |s: f64| if lower { -s } else { s };
    // Ranks for softrank: the plain ranking.
    let mut plain = rows.clone();
    plain.sort_by(|a, b| {
        priority(b.0)
            .partial_cmp(&priority(a.0))
            .unwrap()
            .then(a.1.cmp(&b.1))
    });
    let rank = |r: u64| plain.iter().position(|x| x.1 == r).unwrap() as f64 + 1.0;
    let mut keyed: Vec<(f64, u64, f64)> = rows
        .drain(..)
        .map(|(s, r)| {
            let base = match st.kind {
                StochasticKind::Softmax => priority(s),
                StochasticKind::Power => {
                    let v = if lower { 1.0 - s } else { s };
                    if v > 0.0 { v.ln() } else { f64::NEG_INFINITY }
                }
                _ => -rank(r).ln(),
            };
            (base + noise(job.seed, r) / st.beta, r, s)
        })
        .collect();
    keyed.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap().then(a.1.cmp(&b.1)));
    keyed.truncate(job.k);
    keyed.into_iter().map(|(_, r, s)| (r, s)).collect()
}

fn picks(sel: &alpool::Selection) -> Vec<(u64, f64)> {
    sel.entries.iter().map(|e| (e.index, e.score)).collect()
}

fn plain_scores(pool: &Pool, job: &Job) -> Vec<f64> {
    let mut plain = job.clone();
    plain.stochastic = None;
    alpool::score(pool, &plain).unwrap()
}

#[test]
fn every_kind_equals_the_documented_keys() {
    let n = 90;
    for c in [2, 4] {
        let x = grid_rows(n, c, c as u64);
        let pool = Pool::from_f32(&x, c).unwrap().with_row_offset(1000);
        for (case, strategy) in Strategy::ALL.into_iter().enumerate() {
            for kind in KINDS {
                for beta in [0.5, 1.0, 4.0, f64::INFINITY] {
                    for k in [0, 1, 7, n, n + 3] {
                        let excl = Exclusions::new(vec![1000, 1003 + case as u64, 1089]);
                        let job = Job::new(strategy, InputForm::probs(), k)
                            .seed(case as u64 * 31 + k as u64)
                            .exclude(excl)
                            .stochastic(Stochastic::new(kind, beta));
                        let sel = common::select_cpu(&pool, &job).unwrap();
                        let want = reference(&plain_scores(&pool, &job), 1000, &job);
                        assert_eq!(picks(&sel), want, "{strategy} {kind} beta {beta} k {k}");
                        assert_eq!(sel.excluded, 3);
                    }
                }
            }
        }
    }
}

#[test]
fn a_draw_does_not_depend_on_threads_chunks_or_row_order() {
    let (n, c) = (5000, 3);
    let x = grid_rows(n, c, 11);
    let pool = Pool::from_f32(&x, c).unwrap();
    for kind in KINDS {
        let job = Job::new(Strategy::Entropy, InputForm::probs(), 40)
            .seed(5)
            .exclude(Exclusions::new(vec![3, 4, 4000]))
            .stochastic(Stochastic::new(kind, 2.0));
        let want = picks(&common::select_cpu(&pool, &job).unwrap());
        for threads in [1, 3] {
            for chunk_rows in [1, 7, 1000] {
                let mut j = job.clone();
                j.chunk_rows = chunk_rows;
                let got = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap()
                    .install(|| common::select_cpu(&pool, &j).unwrap());
                assert_eq!(
                    picks(&got),
                    want,
                    "{kind}, {threads} threads, chunks of {chunk_rows}"
                );
            }
        }
        // The rows listed by global index, in a shuffled order.
        let mut order: Vec<usize> = (0..n).collect();
        let mut rng = Rng::new(9);
        for i in (1..n).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let shuffled: Vec<f32> = order
            .iter()
            .flat_map(|&i| x[i * c..(i + 1) * c].to_vec())
            .collect();
        let rows: Vec<u64> = order.iter().map(|&i| i as u64).collect();
        let listed = Pool::from_f32(&shuffled, c).unwrap();
        let got = common::select_cpu(Inputs::probs(&listed).at_rows(&rows), &job).unwrap();
        assert_eq!(picks(&got), want, "{kind}, listed rows");
    }
}

#[test]
fn infinite_beta_is_the_plain_top_k_and_large_beta_nears_it() {
    let x = grid_rows(400, 4, 3);
    let pool = Pool::from_f32(&x, 4).unwrap();
    for strategy in Strategy::ALL {
        let plain = Job::new(strategy, InputForm::probs(), 25)
            .seed(2)
            .exclude(Exclusions::new(vec![0, 7]));
        let want = picks(&common::select_cpu(&pool, &plain).unwrap());
        for kind in KINDS {
            let job = plain
                .clone()
                .stochastic(Stochastic::new(kind, f64::INFINITY));
            let got = picks(&common::select_cpu(&pool, &job).unwrap());
            assert_eq!(got, want, "{strategy} {kind} at beta = inf");
        }
    }
    // Distinct scores: a large finite β gives the same rows, and a small
    // one does not.
    let mut rng = Rng::new(4);
    let distinct: Vec<f32> = (0..300)
        .flat_map(|_| {
            let w: Vec<f64> = (0..5).map(|_| rng.uniform() + 0.01).collect();
            let s: f64 = w.iter().sum();
            w.into_iter().map(move |v| (v / s) as f32)
        })
        .collect();
    let pool = Pool::from_f32(&distinct, 5).unwrap();
    let plain = Job::new(Strategy::Entropy, InputForm::probs(), 20);
    let want = picks(&common::select_cpu(&pool, &plain).unwrap());
    for kind in KINDS {
        let sharp = plain.clone().stochastic(Stochastic::new(kind, 1e12));
        assert_eq!(
            picks(&common::select_cpu(&pool, &sharp).unwrap()),
            want,
            "{kind}"
        );
        let soft = plain.clone().stochastic(Stochastic::new(kind, 1.0));
        assert_ne!(
            picks(&common::select_cpu(&pool, &soft).unwrap()),
            want,
            "{kind}"
        );
    }
}

/// Plackett–Luce: the chance that row i is among the first two draws
/// without replacement with weights w.
fn in_first_two(w: &[f64], i: usize) -> f64 {
    let total: f64 = w.iter().sum();
    let p: Vec<f64> = w.iter().map(|x| x / total).collect();
    p[i] + (0..w.len())
        .filter(|&j| j != i)
        .map(|j| p[j] * p[i] / (1.0 - p[j]))
        .sum::<f64>()
}

#[test]
fn draws_follow_the_stated_distribution() {
    // Five rows whose least-confidence scores are 0.1, 0.3, 0.5, 0.2, 0.4.
    let scores = [0.1, 0.3, 0.5, 0.2, 0.4];
    let x: Vec<f32> = scores
        .iter()
        .flat_map(|&s: &f64| [(1.0 - s) as f32, s as f32])
        .collect();
    let pool = Pool::from_f32(&x, 2).unwrap();
    let exact = plain_scores(
        &pool,
        &Job::new(Strategy::LeastConfidence, InputForm::probs(), 1),
    );
    let beta = 3.0;
    let mut order: Vec<usize> = (0..5).collect();
    order.sort_by(|&a, &b| exact[b].partial_cmp(&exact[a]).unwrap());
    for kind in KINDS {
        let w: Vec<f64> = (0..5)
            .map(|i| match kind {
                StochasticKind::Softmax => (beta * exact[i]).exp(),
                StochasticKind::Power => exact[i].powf(beta),
                _ => {
                    let r = order.iter().position(|&j| j == i).unwrap() as f64 + 1.0;
                    r.powf(-beta)
                }
            })
            .collect();
        let total: f64 = w.iter().sum();
        let draws = 20_000;
        let (mut first, mut two) = ([0u32; 5], [0u32; 5]);
        for seed in 0..draws {
            let job = Job::new(Strategy::LeastConfidence, InputForm::probs(), 2)
                .seed(seed)
                .stochastic(Stochastic::new(kind, beta));
            let sel = common::select_cpu(&pool, &job).unwrap();
            first[sel.entries[0].index as usize] += 1;
            for e in &sel.entries {
                two[e.index as usize] += 1;
            }
        }
        // Within 5 standard errors (at most 0.0035 for 20,000 draws).
        for i in 0..5 {
            let f = first[i] as f64 / draws as f64;
            assert!(
                (f - w[i] / total).abs() < 0.018,
                "{kind} row {i}: first {f} vs {}",
                w[i] / total
            );
            let t = two[i] as f64 / draws as f64;
            let want = in_first_two(&w, i);
            assert!(
                (t - want).abs() < 0.018,
                "{kind} row {i}: in two {t} vs {want}"
            );
        }
    }
}

#[test]
fn disagreement_strategies_draw_from_their_scores() {
    let (t, n, c) = (4, 200, 3);
    let mut rng = Rng::new(12);
    let tnc: Vec<f32> = (0..t * n)
        .flat_map(|_| {
            let w: Vec<f64> = (0..c).map(|_| rng.uniform() + 0.05).collect();
            let s: f64 = w.iter().sum();
            w.into_iter().map(move |v| (v / s) as f32)
        })
        .collect();
    let pool = Pool::from_f32(&tnc, c).unwrap();
    let samples = Samples::from_pool(pool, [t, n, c], SampleLayout::Tnc).unwrap();
    for d in [
        Disagreement::Bald,
        Disagreement::VariationRatio,
        Disagreement::KlMax,
    ] {
        for kind in KINDS {
            let plain = Job::new(d, InputForm::probs(), 15).seed(8);
            let job = plain.clone().stochastic(Stochastic::new(kind, 2.0));
            let sel = common::select_cpu(Inputs::samples(&samples), &job).unwrap();
            let scores = alpool::score(Inputs::samples(&samples), &plain).unwrap();
            assert_eq!(picks(&sel), reference(&scores, 0, &job), "{d} {kind}");
        }
    }
}

/// Rows with few ties: each value drawn, then normalized.
fn smooth_rows(n: usize, c: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..n)
        .flat_map(|_| {
            let w: Vec<f64> = (0..c).map(|_| rng.uniform().powi(3) + 1e-4).collect();
            let s: f64 = w.iter().sum();
            w.into_iter().map(move |v| (v / s) as f32)
        })
        .collect()
}

#[test]
fn the_gpu_draws_the_documented_keys() {
    let Some(gpu) = common::gpu() else { return };
    let on_gpu = |inputs: Inputs, job: &Job| {
        let (sel, phases) = common::select_gpu(&gpu, inputs, job).unwrap();
        assert!(phases.chunks > 0, "{job:?} did not run on the GPU");
        (picks(&sel), phases)
    };
    let gpu_kinds = [StochasticKind::Softmax, StochasticKind::Power];
    // Row-wise strategies over pools with many ties (one-hot rows among
    // them: margin's value 1 − margin is 0, a key of −∞) and with few, in
    // chunks small enough that later chunks start above a floor.
    let n = 3000;
    for (c, x) in [(3, grid_rows(n, 3, 7)), (10, smooth_rows(n, 10, 8))] {
        let pool = Pool::from_f32(&x, c).unwrap().with_row_offset(500);
        for (case, strategy) in Strategy::ALL.into_iter().enumerate() {
            for kind in gpu_kinds {
                for (beta, k, chunk) in [
                    (0.05, 7, 0),
                    (1.0, 40, 700),
                    (6.0, 1, 333),
                    (f64::INFINITY, 25, 1000),
                    (1e4, n + 2, 0),
                ] {
                    let mut job = Job::new(strategy, InputForm::probs(), k)
                        .seed(case as u64 + 3)
                        .exclude(Exclusions::new(vec![500, 777, 3499]))
                        .stochastic(Stochastic::new(kind, beta));
                    job.chunk_rows = chunk;
                    let want = reference(&plain_scores(&pool, &job), 500, &job);
                    let (got, _) = on_gpu(Inputs::probs(&pool), &job);
                    assert_eq!(got, want, "{strategy} {kind} beta {beta} k {k} c {c}");
                }
            }
        }
    }
    // Logits, through the softmax the kernel computes.
    let mut rng = Rng::new(3);
    let z: Vec<f32> = (0..n * 4)
        .map(|_| (rng.uniform() * 8.0 - 4.0) as f32)
        .collect();
    let logits = Pool::from_f32(&z, 4).unwrap();
    for kind in gpu_kinds {
        let job = Job::new(Strategy::Margin, InputForm::logits(1.5), 30)
            .seed(4)
            .stochastic(Stochastic::new(kind, 2.0));
        let want = reference(&plain_scores(&logits, &job), 0, &job);
        assert_eq!(
            on_gpu(Inputs::probs(&logits), &job).0,
            want,
            "logits {kind}"
        );
    }
    // Disagreement over samples, each row with its own interval.
    let (t, ns) = (5, 800);
    let tnc = smooth_rows(t * ns, 4, 9);
    let samples = Samples::from_pool(
        Pool::from_f32(&tnc, 4).unwrap(),
        [t, ns, 4],
        SampleLayout::Tnc,
    )
    .unwrap();
    for d in Disagreement::ALL {
        for kind in gpu_kinds {
            let plain = Job::new(d, InputForm::probs(), 20).seed(6);
            let job = plain.clone().stochastic(Stochastic::new(kind, 3.0));
            let scores = alpool::score(Inputs::samples(&samples), &plain).unwrap();
            let got = on_gpu(Inputs::samples(&samples), &job).0;
            assert_eq!(got, reference(&scores, 0, &job), "{d} {kind}");
        }
    }
    // Multi-label pools: the kernel's multi-label branch.
    let l = 6;
    let mut rng = Rng::new(10);
    let ml: Vec<f32> = (0..n * l).map(|_| rng.uniform() as f32).collect();
    let ml_pool = Pool::from_f32(&ml, l).unwrap();
    for m in alpool::MultiLabel::ALL {
        for kind in gpu_kinds {
            let mut plain = Job::new(m, InputForm::MultiLabel { logits: false }, 15).seed(2);
            plain.label_cardinality = Some(2.0);
            plain.uncertainty_weight = 0.4;
            let job = plain.clone().stochastic(Stochastic::new(kind, 1.5));
            let scores = alpool::score(&ml_pool, &plain).unwrap();
            let got = on_gpu(Inputs::probs(&ml_pool), &job).0;
            assert_eq!(got, reference(&scores, 0, &job), "{m} {kind}");
        }
    }
}

#[test]
fn the_gpu_sends_back_few_rows() {
    // The kernel's intervals are narrow: about the k rows drawn come back
    // to be keyed canonically, not the pool.
    let Some(gpu) = common::gpu() else { return };
    let (n, c) = (200_000, 10);
    let pool_rows = smooth_rows(n, c, 12);
    let pool = Pool::from_f32(&pool_rows, c).unwrap();
    for kind in [StochasticKind::Softmax, StochasticKind::Power] {
        for beta in [0.5, 1.0, 20.0] {
            let job = Job::new(Strategy::Entropy, InputForm::probs(), 500)
                .seed(1)
                .stochastic(Stochastic::new(kind, beta));
            let (sel, phases) = common::select_gpu(&gpu, &pool, &job).unwrap();
            assert!(
                phases.chunks > 0,
                "{kind} beta {beta} did not run on the GPU"
            );
            assert_eq!(
                picks(&sel),
                picks(&common::select_cpu(&pool, &job).unwrap())
            );
            eprintln!("{kind} beta {beta}: {} candidates", phases.candidates);
            assert!(
                phases.candidates < 2_000,
                "{kind} beta {beta}: {} candidates",
                phases.candidates
            );
        }
    }
}

#[test]
fn bad_requests_are_named() {
    let x = grid_rows(50, 3, 1);
    let pool = Pool::from_f32(&x, 3).unwrap();
    let job = |beta| {
        Job::new(Strategy::Margin, InputForm::probs(), 5)
            .stochastic(Stochastic::new(StochasticKind::Softmax, beta))
    };
    for beta in [0.0, -1.0, f64::NAN] {
        let e = common::select_cpu(&pool, &job(beta))
            .unwrap_err()
            .to_string();
        assert!(e.contains("beta must be above 0"), "{e}");
    }
    // Softrank ranks the whole pool first: the CPU only.
    let softrank = Job::new(Strategy::Margin, InputForm::probs(), 5)
        .stochastic(Stochastic::new(StochasticKind::Softrank, 1.0));
    let e = alpool::select(&pool, &softrank, &Run::on(Device::Gpu))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("a stochastic batch (softrank) of margin has no GPU path yet"),
        "{e}"
    );
    let emb = Pool::from_f32(&x, 3).unwrap();
    let mut badge = job(1.0);
    badge.query = BatchStrategy::Badge.into();
    let e = common::select_cpu(Inputs::probs(&pool).with_embeddings(&emb), &badge)
        .unwrap_err()
        .to_string();
    assert!(e.contains("badge picks a batch itself"), "{e}");
    // Softrank ranks the whole pool: no part.
    let rank = Job::new(Strategy::Margin, InputForm::probs(), 5)
        .stochastic(Stochastic::new(StochasticKind::Softrank, 1.0));
    let sel = common::select_cpu(&pool, &rank).unwrap();
    let e = PartHeader::of(&rank, 0, &sel, 5).unwrap_err().to_string();
    assert!(e.contains("softrank"), "{e}");
}

#[test]
fn the_cli_draws_merges_and_refuses_as_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let (n, c) = (300, 4);
    let x = grid_rows(n, c, 21);
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let whole = dir.path().join("whole.npy");
    npy::save(&whole, &[n, c], &x).unwrap();
    // The same draw at inverse temperature `beta`, from `file` (the shard
    // starting at `offset`), into the part `out` if given.
    let draw = |file: &Path, offset: usize, out: Option<&str>, beta: &str| {
        let mut args: Vec<String> = ["select", &path(file), "--row-offset", &offset.to_string()]
            .map(String::from)
            .to_vec();
        if let Some(out) = out {
            args.extend(["--out".to_string(), out.to_string()]);
        }
        let flags = ["-s", "entropy", "-k", "12", "--stochastic", "power"];
        args.extend(flags.map(String::from));
        args.extend(["--beta", beta, "--seed", "4"].map(String::from));
        common::alpool(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let ok = |o: std::process::Output| {
        assert!(o.status.success(), "{}", common::stderr(&o));
        common::stdout(&o)
    };
    let want = ok(draw(&whole, 0, None, "2"));
    let pool = Pool::from_f32(&x, c).unwrap();
    let job = Job::new(Strategy::Entropy, InputForm::probs(), 12)
        .seed(4)
        .stochastic(Stochastic::new(StochasticKind::Power, 2.0));
    let rows: Vec<String> = want
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().to_string())
        .collect();
    let lib: Vec<String> = picks(&common::select_cpu(&pool, &job).unwrap())
        .iter()
        .map(|(r, _)| r.to_string())
        .collect();
    assert_eq!(rows, lib);
    // Shards, each its own machine, merged.
    let mut parts = Vec::new();
    for (i, (a, b)) in [(0, 120), (120, n)].into_iter().enumerate() {
        let file = dir.path().join(format!("s{i}.npy"));
        npy::save(&file, &[b - a, c], &x[a * c..b * c]).unwrap();
        let part = path(&dir.path().join(format!("s{i}.alpart")));
        ok(draw(&file, a, Some(&part), "2"));
        parts.push(part);
    }
    assert_eq!(
        ok(common::alpool(&["merge", "-k", "12", &parts[0], &parts[1]])),
        want
    );
    assert_eq!(
        part::merge(&[parts[1].clone().into(), parts[0].clone().into()], 12)
            .unwrap()
            .indices(),
        lib.iter()
            .map(|r| r.parse::<u64>().unwrap())
            .collect::<Vec<_>>()
    );
    // A part drawn with another β does not belong with these.
    let other = path(&dir.path().join("other.alpart"));
    let file = dir.path().join("s1.npy");
    ok(draw(&file, 120, Some(&other), "3"));
    let o = common::alpool(&["merge", "-k", "12", &parts[0], &other]);
    assert!(!o.status.success());
    let err = common::stderr(&o);
    assert!(
        err.contains("stochastic batch power (beta 3)") && err.contains("has power (beta 2)"),
        "{err}"
    );
    // Softrank writes no part, and --beta needs --stochastic.
    let o = common::alpool(&[
        "select",
        whole.to_str().unwrap(),
        "--stochastic",
        "softrank",
        "--out",
        &other,
    ]);
    assert!(
        common::stderr(&o).contains("its parts cannot be merged"),
        "{}",
        common::stderr(&o)
    );
    let o = common::alpool(&["select", whole.to_str().unwrap(), "--beta", "2"]);
    assert!(!o.status.success());
    assert!(
        common::stderr(&o).contains("--stochastic"),
        "{}",
        common::stderr(&o)
    );
}
