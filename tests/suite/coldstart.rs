//! The representative strategies (typiclust, kmeans, probcover,
//! maxherding, density) against naive references written from the
//! documented definitions, never with the library's helpers
//! (`tests/reference/coldstart.rs`, which the `coldstart` fuzz target
//! shares): picks equal, ties included, for every chunk size and thread
//! count; bad input named.

use crate::common;
use crate::rng::Rng;
use alpool::{ColdStart, Error, Exclusions, InputForm, Inputs, Job, Pool, Strategy};

#[path = "../reference/coldstart.rs"]
mod reference;
use reference::*;

// ---------------------------------------------------------------------
// Data: blobs on a coarse grid, so distances tie, with duplicated rows.

fn blobs(n: usize, d: usize, centres: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut r = Rng::new(seed);
    let c: Vec<Vec<f32>> = (0..centres)
        .map(|_| (0..d).map(|_| (r.below(9) as f32) * 2.0).collect())
        .collect();
    let mut x: Vec<Vec<f32>> = (0..n)
        .map(|_| {
            let k = &c[r.below(centres as u64) as usize];
            k.iter()
                .map(|&v| v + (r.below(5) as f32 - 2.0) * 0.5)
                .collect()
        })
        .collect();
    // Exact duplicates.
    for i in (0..n).step_by(17).skip(1) {
        x[i] = x[i - 1].clone();
    }
    x
}

fn flat(x: &[Vec<f32>]) -> Vec<f32> {
    x.iter().flatten().copied().collect()
}

fn job(s: ColdStart, k: usize, labeled: &[usize], seed: u64) -> Job {
    let mut j = Job::new(s, InputForm::probs(), k).seed(seed);
    j.exclusions = Exclusions::new(labeled.iter().map(|&r| r as u64).collect());
    j
}

fn picks(x: &[Vec<f32>], j: &Job) -> Vec<usize> {
    let v = flat(x);
    let emb = Pool::from_f32(&v, x[0].len()).unwrap();
    let sel = common::select_cpu(Inputs::embeddings(&emb), j).unwrap();
    sel.indices().into_iter().map(|i| i as usize).collect()
}

/// Runs `j` with several chunk sizes and thread counts: one answer.
fn stable_picks(x: &[Vec<f32>], j: &Job) -> Vec<usize> {
    let first = picks(x, j);
    for (chunk, threads) in [(7, 1), (64, 2), (1000, 3)] {
        let mut j = j.clone();
        j.chunk_rows = chunk;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        assert_eq!(
            pool.install(|| picks(x, &j)),
            first,
            "chunk {chunk}, {threads} threads"
        );
    }
    first
}

// ---------------------------------------------------------------------

#[test]
fn typiclust_and_kmeans_equal_their_references() {
    for (n, d, seed) in [(120, 3, 1u64), (300, 9, 2), (257, 17, 3)] {
        let x = blobs(n, d, 6, seed);
        for labeled in [vec![], vec![0, 5, 77]] {
            for b in [1, 4, 9] {
                let got = stable_picks(&x, &job(ColdStart::Typiclust, b, &labeled, seed));
                let want = clusters_ref(&x, &labeled, b, seed, true);
                assert_eq!(got, want, "typiclust n {n} d {d} labeled {labeled:?} b {b}");
                let got = stable_picks(&x, &job(ColdStart::Kmeans, b, &labeled, seed));
                let want = clusters_ref(&x, &labeled, b, seed, false);
                assert_eq!(got, want, "kmeans n {n} d {d} labeled {labeled:?} b {b}");
            }
        }
    }
}

#[test]
fn typiclust_and_kmeans_on_the_gpu_equal_their_references() {
    let Some(g) = common::gpu() else { return };
    // Ties and duplicates; 40 dimensions cross the kernel's tile of 32,
    // and 1, 12 and 24 clusters its tile of 16 centres.
    for (n, d, seed) in [(300, 9, 2u64), (257, 40, 3)] {
        let x = blobs(n, d, 6, seed);
        let v = flat(&x);
        let emb = Pool::from_f32(&v, d).unwrap();
        let labeled = [0, 5, 77];
        for (b, chunk) in [(1, 0), (9, 97), (21, 256)] {
            for (s, typical) in [(ColdStart::Typiclust, true), (ColdStart::Kmeans, false)] {
                let mut j = job(s, b, &labeled, seed);
                j.chunk_rows = chunk;
                let (sel, phases) = common::select_gpu(&g, Inputs::embeddings(&emb), &j).unwrap();
                let slabs = match chunk {
                    0 => 1,
                    c => (n as u64).div_ceil(c),
                };
                assert_eq!(phases.chunks, slabs, "{s:?} b {b}: not on the GPU");
                let rows: Vec<usize> = sel.indices().iter().map(|&r| r as usize).collect();
                let want = clusters_ref(&x, &labeled, b, seed, typical);
                assert_eq!(rows, want, "{s:?} n {n} d {d} b {b} chunk {chunk}");
                let cpu = common::select_cpu(Inputs::embeddings(&emb), &j).unwrap();
                for (e, c) in sel.entries.iter().zip(&cpu.entries) {
                    assert_eq!(
                        e.score.to_bits(),
                        c.score.to_bits(),
                        "{s:?} row {}",
                        e.index
                    );
                }
            }
        }
    }
    // A bad row is named as on the CPU, before any assignment.
    let mut x = blobs(100, 4, 2, 1);
    x[63][2] = f32::NAN;
    let v = flat(&x);
    let emb = Pool::from_f32(&v, 4).unwrap();
    let j = job(ColdStart::Typiclust, 3, &[], 0);
    let e = common::select_gpu(&g, Inputs::embeddings(&emb), &j).unwrap_err();
    let cpu = common::select_cpu(Inputs::embeddings(&emb), &j).unwrap_err();
    assert_eq!(e.to_string(), cpu.to_string());
    assert!(e.to_string().contains("63"), "{e}");
}

#[test]
fn probcover_equals_its_reference_with_delta_given_and_chosen() {
    for (n, d, seed) in [(150, 4, 5u64), (233, 11, 6)] {
        let x = blobs(n, d, 5, seed);
        for labeled in [vec![], vec![3, 40]] {
            for delta in [1.0f64, 2.5] {
                let mut j = job(ColdStart::Probcover, 12, &labeled, seed);
                j.delta = Some(delta);
                let want = probcover_ref(&x, &labeled, 12, delta * delta, seed);
                assert_eq!(stable_picks(&x, &j), want, "n {n} δ {delta} {labeled:?}");
            }
            let mut j = job(ColdStart::Probcover, 12, &labeled, seed);
            j.purity_classes = 5;
            let d2 = delta2_ref(&x, 5, 0.95, seed);
            let want = probcover_ref(&x, &labeled, 12, d2, seed);
            assert_eq!(stable_picks(&x, &j), want, "n {n} chosen δ {labeled:?}");
        }
    }
}

#[test]
fn maxherding_equals_its_reference_with_sigma_given_and_chosen() {
    let scored = |x: &[Vec<f32>], j: &Job| {
        let v = flat(x);
        let emb = Pool::from_f32(&v, x[0].len()).unwrap();
        let sel = common::select_cpu(Inputs::embeddings(&emb), j).unwrap();
        sel.entries
            .iter()
            .map(|e| (e.index as usize, e.score))
            .collect::<Vec<_>>()
    };
    // Grids with exact duplicates and ties; one pool spans two blocks of
    // the gain's sum.
    for (n, d, seed, b) in [(150, 4, 5u64, 12), (233, 11, 6, 12), (5000, 3, 7, 4)] {
        let x = blobs(n, d, 5, seed);
        let many = if n > 1000 {
            vec![vec![9, 4100]]
        } else {
            vec![vec![], vec![3, 40]]
        };
        for labeled in many {
            for sigma in [0.5f64, 2.5] {
                let mut j = job(ColdStart::Maxherding, b, &labeled, seed);
                j.delta = Some(sigma);
                let want = maxherding_ref(&x, &labeled, b, sigma * sigma, seed);
                let rows: Vec<usize> = want.iter().map(|w| w.0).collect();
                assert_eq!(stable_picks(&x, &j), rows, "n {n} σ {sigma} {labeled:?}");
                for (g, w) in scored(&x, &j).iter().zip(&want) {
                    assert_eq!(g.1.to_bits(), w.1.to_bits(), "n {n} σ {sigma} row {}", w.0);
                }
            }
        }
        if n < 1000 {
            // σ chosen as ProbCover's δ by purity.
            let mut j = job(ColdStart::Maxherding, b, &[], seed);
            j.purity_classes = 5;
            let d2 = delta2_ref(&x, 5, 0.95, seed);
            let want: Vec<usize> = maxherding_ref(&x, &[], b, d2, seed)
                .iter()
                .map(|w| w.0)
                .collect();
            assert_eq!(stable_picks(&x, &j), want, "n {n} chosen σ");
        }
    }
    // Three rows, each twice: after the three, every gain is exactly 0 and
    // the seeded draw orders the rest.
    let base = [vec![0f32, 0.0], vec![3.0, 1.0], vec![-2.0, 5.0]];
    let x: Vec<Vec<f32>> = base.iter().flat_map(|r| [r.clone(), r.clone()]).collect();
    for seed in [1u64, 2, 3] {
        let mut j = job(ColdStart::Maxherding, 6, &[], seed);
        j.delta = Some(1.0);
        let want = maxherding_ref(&x, &[], 6, 1.0, seed);
        assert!(want[3..].iter().all(|w| w.1 == 0.0), "{want:?}");
        let got = scored(&x, &j);
        assert_eq!(
            got.iter().map(|g| g.0).collect::<Vec<_>>(),
            want.iter().map(|w| w.0).collect::<Vec<_>>(),
            "seed {seed}"
        );
    }
    // No GPU path: --device gpu is refused by name, auto takes the CPU.
    let v = flat(&x);
    let emb = Pool::from_f32(&v, 2).unwrap();
    let mut j = job(ColdStart::Maxherding, 2, &[], 0);
    j.delta = Some(1.0);
    let run = alpool::Run {
        device: alpool::Device::Gpu,
        ..alpool::Run::default()
    };
    let Err(e) = alpool::select(Inputs::embeddings(&emb), &j, &run) else {
        panic!("maxherding ran with --device gpu");
    };
    assert!(e.to_string().contains("maxherding has no GPU path"), "{e}");
    // A σ whose 2σ² is 0, subnormal (its inverse overflows) or infinite:
    // named, for a duplicated row as much as any.
    for sigma in [1e-160, 1e-155, 1e155] {
        let mut j = job(ColdStart::Maxherding, 2, &[], 0);
        j.delta = Some(sigma);
        let e = common::select_cpu(Inputs::embeddings(&emb), &j).unwrap_err();
        assert!(
            e.to_string().contains("give a --delta between"),
            "σ {sigma}: {e}"
        );
    }
    // Neither σ nor classes: named.
    let j = job(ColdStart::Maxherding, 2, &[], 0);
    let e = common::select_cpu(Inputs::embeddings(&emb), &j).unwrap_err();
    assert!(e.to_string().contains("maxherding needs --delta"), "{e}");
}

#[test]
fn probcover_on_the_gpu_equals_its_reference() {
    let Some(g) = common::gpu() else { return };
    // δ = 9 joins most pairs of these 233 rows: more than the first list
    // holds, so it grows and the slab pair runs again.
    for (n, d, seed) in [(150, 4, 5u64), (233, 37, 6)] {
        let x = blobs(n, d, 5, seed);
        let v = flat(&x);
        let emb = Pool::from_f32(&v, d).unwrap();
        for (labeled, chunk) in [(vec![], 0), (vec![3, 40], 61)] {
            let slabs = match chunk {
                0 => 1,
                c => (n as u64).div_ceil(c),
            };
            let on_gpu = |j: &Job| {
                let (sel, phases) = common::select_gpu(&g, Inputs::embeddings(&emb), j).unwrap();
                assert_eq!(phases.chunks, slabs, "not on the GPU");
                sel.indices()
                    .into_iter()
                    .map(|i| i as usize)
                    .collect::<Vec<_>>()
            };
            for delta in [1.0f64, 2.5, 9.0] {
                let mut j = job(ColdStart::Probcover, 12, &labeled, seed);
                j.delta = Some(delta);
                j.chunk_rows = chunk;
                let want = probcover_ref(&x, &labeled, 12, delta * delta, seed);
                assert_eq!(
                    on_gpu(&j),
                    want,
                    "n {n} δ {delta} {labeled:?} chunk {chunk}"
                );
            }
            let mut j = job(ColdStart::Probcover, 12, &labeled, seed);
            j.purity_classes = 5;
            j.chunk_rows = chunk;
            let d2 = delta2_ref(&x, 5, 0.95, seed);
            let want = probcover_ref(&x, &labeled, 12, d2, seed);
            assert_eq!(on_gpu(&j), want, "n {n} chosen δ {labeled:?} chunk {chunk}");
        }
    }
    // A δ that joins no two rows is named as on the CPU.
    let x: Vec<Vec<f32>> = (0..100)
        .map(|i| vec![i as f32 * 2.0, (i % 3) as f32, 0.0, 1.0])
        .collect();
    let v = flat(&x);
    let emb = Pool::from_f32(&v, 4).unwrap();
    let mut j = job(ColdStart::Probcover, 3, &[], 0);
    j.delta = Some(1e-3);
    let e = common::select_gpu(&g, Inputs::embeddings(&emb), &j).unwrap_err();
    let cpu = common::select_cpu(Inputs::embeddings(&emb), &j).unwrap_err();
    assert_eq!(e.to_string(), cpu.to_string());
    assert!(e.to_string().contains("joins no two rows"), "{e}");
}

#[test]
fn density_scores_equal_the_reference_bit_for_bit() {
    let x = blobs(500, 13, 4, 9);
    let want = density_ref(&x);
    let j = job(ColdStart::Density, 20, &[1, 2], 0);
    let v = flat(&x);
    let emb = Pool::from_f32(&v, 13).unwrap();
    let sel = common::select_cpu(Inputs::embeddings(&emb), &j).unwrap();
    let mut order: Vec<usize> = (0..500).filter(|&r| r != 1 && r != 2).collect();
    order.sort_by(|&a, &b| want[b].total_cmp(&want[a]).then(a.cmp(&b)));
    assert_eq!(
        sel.indices(),
        order[..20].iter().map(|&r| r as u64).collect::<Vec<_>>()
    );
    for e in &sel.entries {
        assert_eq!(e.score.to_bits(), want[e.index as usize].to_bits());
    }
    assert_eq!(stable_picks(&x, &j), picks(&x, &j));
}

#[test]
fn density_on_the_gpu_equals_the_reference() {
    let Some(g) = common::gpu() else { return };
    // Blobs on a grid (ties, duplicates), and smooth rows in 64 dimensions
    // whose similarities crowd together; chunks far smaller than the pool
    // (which stays within one block of the mean's sum, as the reference's).
    let mut r = Rng::new(3);
    let smooth: Vec<Vec<f32>> = (0..4000)
        .map(|_| (0..64).map(|_| (r.uniform() * 2.0 - 0.3) as f32).collect())
        .collect();
    for (x, ks, tied) in [
        (blobs(3000, 13, 4, 9), [1, 40, 2990], true),
        (smooth, [1, 300, 3500], false),
    ] {
        let n = x.len();
        let want = density_ref(&x);
        let v = flat(&x);
        let emb = Pool::from_f32(&v, x[0].len()).unwrap();
        for (k, chunk) in ks.into_iter().zip([777, 0, 1000]) {
            let mut j = job(ColdStart::Density, k, &[0, 5, n - 1], 0);
            j.chunk_rows = chunk;
            let (sel, phases) = common::select_gpu(&g, Inputs::embeddings(&emb), &j).unwrap();
            assert!(phases.chunks > 0, "k {k}: did not run on the GPU");
            let mut order: Vec<usize> = (0..n).filter(|&r| ![0, 5, n - 1].contains(&r)).collect();
            order.sort_by(|&a, &b| want[b].total_cmp(&want[a]).then(a.cmp(&b)));
            let rows: Vec<u64> = order[..k].iter().map(|&r| r as u64).collect();
            assert_eq!(sel.indices(), rows, "n {n} k {k}");
            for e in &sel.entries {
                assert_eq!(e.score.to_bits(), want[e.index as usize].to_bits());
            }
            // The intervals are narrow: in one chunk without ties at the
            // cut, few rows beyond the k come back.
            assert!(
                tied || chunk != 0 || phases.candidates <= k as u64 + 100,
                "n {n} k {k}: {} candidates",
                phases.candidates
            );
        }
    }
    // An all-zero row is named by the host's first pass, as on the CPU.
    let mut x = blobs(200, 5, 2, 1);
    x[77] = vec![0.0; 5];
    let v = flat(&x);
    let emb = Pool::from_f32(&v, 5).unwrap();
    let j = job(ColdStart::Density, 3, &[], 0);
    let e = common::select_gpu(&g, Inputs::embeddings(&emb), &j).unwrap_err();
    let cpu = common::select_cpu(Inputs::embeddings(&emb), &j).unwrap_err();
    assert_eq!(e.to_string(), cpu.to_string());
    assert!(e.to_string().contains("77"), "{e}");
}

#[test]
fn density_weighting_on_the_gpu_equals_the_reference() {
    let Some(g) = common::gpu() else { return };
    // Probabilities on a grid (many equal margins) beside smooth ones;
    // embeddings with duplicates and rows turned against the mean
    // direction, whose weight is 0: ties of every kind at every cut.
    let n = 2500;
    let mut r = Rng::new(21);
    let probs: Vec<f32> = (0..n)
        .flat_map(|i| {
            let a = match i % 3 {
                0 => 0.3 + (i % 5) as f32 * 0.1,
                _ => r.uniform() as f32,
            };
            [a * 0.8, (1.0 - a) * 0.8, 0.2]
        })
        .collect();
    let mut x = blobs(n, 7, 4, 9);
    for i in (3..n).step_by(11) {
        x[i] = x[i - 3].iter().map(|v| -v).collect();
    }
    let sim = density_ref(&x);
    assert!(sim.iter().any(|&s| s < 0.0));
    let v = flat(&x);
    let emb = Pool::from_f32(&v, 7).unwrap();
    let pool = Pool::from_f32(&probs, 3).unwrap();
    let excluded = [0u64, 5, 1234, n as u64 - 1];
    // The reference, from the definitions: φ = 1 − margin, or 1 − max p.
    let phi = |s: Strategy, i: usize| {
        let mut p: Vec<f64> = probs[3 * i..3 * i + 3].iter().map(|&v| v as f64).collect();
        p.sort_by(|a, b| b.total_cmp(a));
        match s {
            Strategy::Margin => 1.0 - (p[0] - p[1]),
            _ => 1.0 - p[0],
        }
    };
    for beta in [0.0, 1.0, 2.5] {
        for (k, chunk) in [(1, 777), (60, 0), (n - 10, 1000)] {
            for s in [
                Strategy::Margin,
                Strategy::LeastConfidence,
                Strategy::Entropy,
                Strategy::Ratio,
            ] {
                let mut j = Job::new(s, InputForm::probs(), k);
                j.density_beta = Some(beta);
                j.chunk_rows = chunk;
                j.exclusions = Exclusions::new(excluded.to_vec());
                let inputs = Inputs::probs(&pool).with_embeddings(&emb);
                let (sel, phases) = common::select_gpu(&g, inputs, &j).unwrap();
                assert!(
                    phases.chunks > 0,
                    "{s} β {beta} k {k}: did not run on the GPU"
                );
                let cpu = common::select_cpu(inputs, &j).unwrap();
                assert_eq!(
                    sel.indices(),
                    cpu.indices(),
                    "{s} β {beta} k {k} chunk {chunk}"
                );
                for (a, b) in sel.entries.iter().zip(&cpu.entries) {
                    assert_eq!(a.score.to_bits(), b.score.to_bits(), "{s} row {}", a.index);
                }
                if matches!(s, Strategy::Margin | Strategy::LeastConfidence) {
                    let key = |i: usize| phi(s, i) * sim[i].max(0.0).powf(beta);
                    let mut order: Vec<usize> = (0..n)
                        .filter(|&i| !excluded.contains(&(i as u64)))
                        .collect();
                    order.sort_by(|&a, &b| key(b).total_cmp(&key(a)).then(a.cmp(&b)));
                    let want: Vec<u64> = order[..k].iter().map(|&i| i as u64).collect();
                    assert_eq!(sel.indices(), want, "{s} β {beta} k {k} chunk {chunk}");
                }
            }
        }
    }
    // A bad row is named as on the CPU, and float64 probabilities are
    // refused by name.
    let mut bad = probs.clone();
    bad[3 * 777] = 1.5;
    let pool = Pool::from_f32(&bad, 3).unwrap();
    let mut j = Job::new(Strategy::Margin, InputForm::probs(), 4);
    j.density_beta = Some(1.0);
    let inputs = Inputs::probs(&pool).with_embeddings(&emb);
    let e = common::select_gpu(&g, inputs, &j).unwrap_err();
    assert_eq!(
        e.to_string(),
        common::select_cpu(inputs, &j).unwrap_err().to_string()
    );
    assert!(e.to_string().contains("777"), "{e}");
}

#[test]
fn density_weights_a_row_wise_strategy() {
    let x = blobs(300, 6, 3, 4);
    let mut r = Rng::new(8);
    let probs: Vec<f32> = (0..300)
        .flat_map(|_| {
            let a = r.uniform() as f32;
            [a, 1.0 - a]
        })
        .collect();
    let sim = density_ref(&x);
    let v = flat(&x);
    let emb = Pool::from_f32(&v, 6).unwrap();
    let pool = Pool::from_f32(&probs, 2).unwrap();
    for beta in [0.0, 1.0, 2.5] {
        let mut j = Job::new(Strategy::Margin, InputForm::probs(), 15);
        j.density_beta = Some(beta);
        let sel = common::select_cpu(Inputs::probs(&pool).with_embeddings(&emb), &j).unwrap();
        let key = |i: usize| {
            let (a, b) = (probs[2 * i] as f64, probs[2 * i + 1] as f64);
            (1.0 - (a.max(b) - a.min(b))) * sim[i].max(0.0).powf(beta)
        };
        let mut order: Vec<usize> = (0..300).collect();
        order.sort_by(|&a, &b| key(b).total_cmp(&key(a)).then(a.cmp(&b)));
        assert_eq!(
            sel.indices(),
            order[..15].iter().map(|&r| r as u64).collect::<Vec<_>>(),
            "β = {beta}"
        );
    }
}

#[test]
fn bad_inputs_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut x = blobs(50, 4, 3, 1);
    x[7][2] = f32::NAN;
    let path = dir.path().join("emb.npy");
    common::save_f32(&path, &x, 4);
    let emb = Pool::open_embeddings(&[&path]).unwrap();
    for s in ColdStart::ALL {
        let mut j = job(s, 3, &[], 0);
        j.delta = Some(1.0);
        let e = common::select_cpu(Inputs::embeddings(&emb), &j).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(e, Error::BadRow { row: 7, .. }) && msg.contains("emb.npy"),
            "{s}: {msg}"
        );
    }
    // An all-zero row has no direction.
    let mut x = blobs(50, 4, 3, 1);
    x[9] = vec![0.0; 4];
    common::save_f32(&path, &x, 4);
    let emb = Pool::open_embeddings(&[&path]).unwrap();
    let e = common::select_cpu(
        Inputs::embeddings(&emb),
        &job(ColdStart::Density, 3, &[], 0),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("row 9") && e.contains("cosine"), "{e}");
    // k beyond the unlabeled rows.
    let x = blobs(10, 4, 3, 1);
    let v = flat(&x);
    let emb = Pool::from_f32(&v, 4).unwrap();
    let e = common::select_cpu(
        Inputs::embeddings(&emb),
        &job(ColdStart::Typiclust, 9, &[1, 2], 0),
    )
    .unwrap_err();
    assert!(matches!(e, Error::TooFewRows { selectable: 8, .. }), "{e}");
    // A δ that joins nothing, and no δ at all.
    let mut j = job(ColdStart::Probcover, 2, &[], 0);
    j.delta = Some(1e-6);
    let e = common::select_cpu(Inputs::embeddings(&emb), &j)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("joins no two rows") && e.contains("larger --delta"),
        "{e}"
    );
    j.delta = None;
    let e = common::select_cpu(Inputs::embeddings(&emb), &j)
        .unwrap_err()
        .to_string();
    assert!(e.contains("--delta") && e.contains("--classes"), "{e}");
    // δ by purity over more clusters than rows: the file and the counts.
    common::save_f32(&path, &x, 4);
    let emb3 = Pool::open_embeddings(&[&path]).unwrap();
    for s in [ColdStart::Probcover, ColdStart::Maxherding] {
        let mut j = job(s, 2, &[], 0);
        j.purity_classes = 11;
        let e = common::select_cpu(Inputs::embeddings(&emb3), &j)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("emb.npy") && e.contains("11 clusters") && e.contains("10 rows"),
            "{s}: {e}"
        );
    }
    // Probabilities are not read; a density weight needs one per row.
    let probs = vec![0.5f32; 20];
    let pool = Pool::from_f32(&probs, 2).unwrap();
    let e = common::select_cpu(
        Inputs::probs(&pool).with_embeddings(&emb),
        &job(ColdStart::Kmeans, 2, &[], 0),
    )
    .unwrap_err();
    assert!(matches!(e, Error::UnusedInput { .. }), "{e}");
    let short = vec![0.5f32; 8];
    let pool = Pool::from_f32(&short, 2).unwrap();
    let mut j = Job::new(Strategy::Entropy, InputForm::probs(), 2);
    j.density_beta = Some(1.0);
    let e = common::select_cpu(Inputs::probs(&pool).with_embeddings(&emb), &j).unwrap_err();
    assert!(matches!(e, Error::EmbeddingRows { .. }), "{e}");
    let e = common::select_cpu(Inputs::probs(&pool), &j).unwrap_err();
    assert!(matches!(e, Error::MissingInput { .. }), "{e}");
}

#[test]
fn cold_start_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let x = blobs(200, 5, 4, 2);
    let path = dir.path().join("emb.npy");
    common::save_f32(&path, &x, 5);
    let p = path.to_str().unwrap();
    let out = common::alpool(&[
        "select",
        "--embeddings",
        p,
        "--strategy",
        "probcover",
        "-k",
        "4",
        "--classes",
        "4",
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let err = common::stderr(&out);
    assert!(err.contains("edges") && err.contains("MiB"), "{err}");
    let rows: Vec<usize> = common::stdout(&out)
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    let d2 = delta2_ref(&x, 4, 0.95, 0);
    assert_eq!(rows, probcover_ref(&x, &[], 4, d2, 0));
    // The note says how much of the pool the picks' balls cover.
    let covered = (0..x.len())
        .filter(|&y| rows.iter().any(|&p| sq(&x[y], &x[p]) < d2))
        .count();
    assert!(covered > 4 && covered < x.len(), "{covered}");
    let said = format!("the labeled rows and the picks cover {covered} of 200 rows");
    assert!(err.contains(&said), "{err}");
    // MaxHerding, σ given, with its note.
    let out = common::alpool(&[
        "select",
        "--embeddings",
        p,
        "--strategy",
        "maxherding",
        "-k",
        "5",
        "--delta",
        "1.5",
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let err = common::stderr(&out);
    assert!(err.contains("maxherding: σ = 1.500000 (given)"), "{err}");
    let rows: Vec<usize> = common::stdout(&out)
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    let want: Vec<usize> = maxherding_ref(&x, &[], 5, 2.25, 0)
        .iter()
        .map(|w| w.0)
        .collect();
    assert_eq!(rows, want);
}

#[test]
fn a_workspace_starts_from_a_cold_start_batch() {
    let dir = tempfile::tempdir().unwrap();
    let x = blobs(150, 4, 3, 7);
    let feats = dir.path().join("pool.npy");
    common::save_f32(&feats, &x, 4);
    let seed = dir.path().join("seed.csv");
    std::fs::write(&seed, "id,label\n3,a\n40,b\n").unwrap();
    let (f, s) = (feats.to_str().unwrap(), seed.to_str().unwrap());
    let ws = dir.path().join("ws");
    let out = dir.path().join("first.csv");
    let run = |strategy: &str, ws: &std::path::Path, out: &std::path::Path| {
        common::alpool(&[
            "init",
            ws.to_str().unwrap(),
            "--features",
            f,
            "--classes",
            "a,b",
            "--labels",
            s,
            "--seed-strategy",
            strategy,
            "-k",
            "6",
            "--out",
            out.to_str().unwrap(),
            "--seed",
            "2",
        ])
    };
    let o = run("typiclust", &ws, &out);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let text = std::fs::read_to_string(&out).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("id,index,score"));
    let rows: Vec<usize> = lines
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(rows, clusters_ref(&x, &[3, 40], 6, 2, true));
    // Label Studio tasks carry no prediction and no round before a model.
    let json = dir.path().join("first.json");
    let o = run("kmeans", &dir.path().join("ws2"), &json);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let tasks: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let tasks = tasks.as_array().unwrap();
    assert_eq!(tasks.len(), 6);
    assert!(tasks.iter().all(|t| t.get("predictions").is_none()));
    assert!(
        tasks
            .iter()
            .all(|t| t["data"].get("alpool_round").is_none())
    );
    // A strategy that needs a model is refused before anything is made;
    // a first batch that fails takes the new workspace with it.
    let ws3 = dir.path().join("ws3");
    let o = run("margin", &ws3, &out);
    assert!(!o.status.success() && common::stderr(&o).contains("needs a model"));
    assert!(!ws3.exists());
    let mut bad = x.clone();
    bad[77][1] = f32::NAN;
    common::save_f32(&feats, &bad, 4);
    let o = run("typiclust", &ws3, &dir.path().join("never.csv"));
    let err = common::stderr(&o);
    assert!(
        !o.status.success() && err.contains("row 77") && err.contains("no workspace"),
        "{err}"
    );
    assert!(!ws3.exists() && !dir.path().join("never.csv").exists());
}
