//! The regression strategies (std, gsx, gsy, igs, emcm) against naive references
//! written here from the documented definitions, never with the library's
//! helpers: picks and scores equal, ties included, for every chunk size and
//! thread count, on the CPU and the GPU; bad input named.

use std::path::Path;

use crate::common;
use crate::rng::Rng;
use alpool::query::{Regression, RegressionInput};
use alpool::{Exclusions, InputForm, Inputs, Job, Pool, SampleLayout, Samples};

// ---------------------------------------------------------------------
// The references.

/// The canonical squared distance: f64 terms, column j into lane j mod 8,
/// lanes combined pairwise.
fn sq(a: &[f32], b: &[f32]) -> f64 {
    let mut s = [0f64; 8];
    for (j, (&x, &y)) in a.iter().zip(b).enumerate() {
        let d = x as f64 - y as f64;
        s[j % 8] += d * d;
    }
    ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]))
}

/// The squared distance to an f64 point, in the same lanes.
fn sq_to(a: &[f32], m: &[f64]) -> f64 {
    let mut s = [0f64; 8];
    for (j, (&x, &y)) in a.iter().zip(m).enumerate() {
        let d = x as f64 - y;
        s[j % 8] += d * d;
    }
    ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]))
}

/// The population standard deviation, two passes, in sample order.
fn std_ref(v: &[f64]) -> f64 {
    let t = v.len() as f64;
    let mut m = 0.0;
    for &x in v {
        m += x;
    }
    m /= t;
    let mut s = 0.0;
    for &x in v {
        s += (x - m) * (x - m);
    }
    (s / t).sqrt()
}

/// Greedy sampling as Wu et al. define it: the row whose min over the
/// centres of the pair distance is largest (ties to the lower row); a
/// picked row's target is its prediction. With no labeled row the first
/// pick is the row nearest the mean embedding. Returns (row, distance).
fn greedy_ref(
    strategy: Regression,
    x: Option<&[Vec<f32>]>,
    preds: &[f64],
    labeled: &[(usize, f64)],
    k: usize,
) -> Vec<(usize, f64)> {
    let n = preds.len();
    let mut taken = vec![false; n];
    let mut centres: Vec<(usize, f64)> = Vec::new();
    let mut out = Vec::new();
    for &(r, y) in labeled {
        taken[r] = true;
        centres.push((r, y));
    }
    if labeled.is_empty() && k > 0 {
        let x = x.expect("the first pick reads embeddings");
        let d = x[0].len();
        let mut mean = vec![0f64; d];
        for row in x {
            for (m, &v) in mean.iter_mut().zip(row) {
                *m += v as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let mut best = 0;
        for r in 1..n {
            if sq_to(&x[r], &mean) < sq_to(&x[best], &mean) {
                best = r;
            }
        }
        out.push((best, sq_to(&x[best], &mean).sqrt()));
        taken[best] = true;
        centres.push((best, preds[best]));
    }
    while out.len() < k {
        let mut best: Option<(usize, f64)> = None;
        for r in (0..n).filter(|&r| !taken[r]) {
            let key = centres
                .iter()
                .map(|&(c, y)| {
                    let dy = (preds[r] - y) * (preds[r] - y);
                    match strategy {
                        Regression::Gsx => sq(&x.unwrap()[r], &x.unwrap()[c]),
                        Regression::Gsy => dy,
                        _ => sq(&x.unwrap()[r], &x.unwrap()[c]) * dy,
                    }
                })
                .fold(f64::INFINITY, f64::min);
            if best.is_none_or(|(_, b)| key > b) {
                best = Some((r, key));
            }
        }
        let (r, key) = best.unwrap();
        out.push((r, key.sqrt()));
        taken[r] = true;
        centres.push((r, preds[r]));
    }
    out
}

// ---------------------------------------------------------------------
// Data with ties: clustered points with exact duplicates, predictions
// from a few values.

fn data(n: usize, d: usize, seed: u64) -> (Vec<Vec<f32>>, Vec<f64>) {
    let mut r = Rng::new(seed);
    let centres: Vec<Vec<f32>> = (0..4)
        .map(|_| (0..d).map(|_| r.below(9) as f32).collect())
        .collect();
    let mut x: Vec<Vec<f32>> = (0..n)
        .map(|_| {
            let c = &centres[r.below(4) as usize];
            c.iter().map(|&v| v + r.below(5) as f32 * 0.25).collect()
        })
        .collect();
    for i in (0..n).step_by(13).skip(1) {
        x[i] = x[i - 1].clone();
    }
    let preds = (0..n).map(|_| r.below(7) as f64 * 0.5 - 1.0).collect();
    (x, preds)
}

fn flat(x: &[Vec<f32>]) -> Vec<f32> {
    x.iter().flatten().copied().collect()
}

fn job(s: Regression, k: usize, labeled: &[(usize, f64)], preds: &[f64]) -> Job {
    let mut column = vec![f64::NAN; preds.len()];
    for &(r, y) in labeled {
        column[r] = y;
    }
    let form = InputForm::Regression(RegressionInput::Predictions);
    Job::new(s, form, k).with_targets(&column).unwrap()
}

fn picks(x: &[Vec<f32>], preds: &[f64], j: &Job) -> Vec<(usize, f64)> {
    let (v, p) = (flat(x), preds.to_vec());
    let emb = Pool::from_f32(&v, x[0].len()).unwrap();
    let pool = Pool::from_f64(&p, 1).unwrap();
    let inputs = match j.query {
        alpool::Query::Regress(Regression::Gsx) => Inputs::embeddings(&emb),
        _ => Inputs::probs(&pool).with_embeddings(&emb),
    };
    let sel = common::select_cpu(inputs, j).unwrap();
    let e = sel.entries.iter();
    e.map(|e| (e.index as usize, e.score)).collect()
}

/// Runs `j` with several chunk sizes and thread counts: one answer.
fn stable_picks(x: &[Vec<f32>], preds: &[f64], j: &Job) -> Vec<(usize, f64)> {
    let first = picks(x, preds, j);
    for (chunk, threads) in [(7, 1), (64, 2), (1000, 3)] {
        let mut j = j.clone();
        j.chunk_rows = chunk;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let again = pool.install(|| picks(x, preds, &j));
        assert_eq!(again, first, "chunk {chunk}, {threads} threads");
    }
    first
}

// ---------------------------------------------------------------------

#[test]
fn greedy_sampling_equals_its_reference() {
    for (n, d, seed) in [(150, 3, 1u64), (300, 9, 2), (257, 17, 3)] {
        let (x, preds) = data(n, d, seed);
        let mut r = Rng::new(seed + 10);
        let labeled: Vec<(usize, f64)> = (0..6)
            .map(|i| (i * n / 6 + 1, r.below(5) as f64 - 2.0))
            .collect();
        for s in [Regression::Gsx, Regression::Gsy, Regression::Igs] {
            for lab in [&labeled[..], &labeled[..1], &[]] {
                let k = 12;
                let got = stable_picks(&x, &preds, &job(s, k, lab, &preds));
                let want = greedy_ref(s, Some(&x), &preds, lab, k);
                assert_eq!(
                    got.iter().map(|p| p.0).collect::<Vec<_>>(),
                    want.iter().map(|p| p.0).collect::<Vec<_>>(),
                    "{s} n {n} labeled {}",
                    lab.len()
                );
                for (g, w) in got.iter().zip(&want) {
                    assert_eq!(g.1, w.1, "{s}: the score of row {}", g.0);
                }
            }
        }
    }
}

#[test]
fn gsy_reads_no_embeddings_once_rows_are_labeled() {
    let (x, preds) = data(200, 4, 7);
    let labeled = [(3, 0.25), (50, -1.0)];
    let j = job(Regression::Gsy, 10, &labeled, &preds);
    let pool = Pool::from_f64(&preds, 1).unwrap();
    let sel = common::select_cpu(Inputs::probs(&pool), &j).unwrap();
    let got: Vec<usize> = sel.indices().into_iter().map(|i| i as usize).collect();
    let want: Vec<usize> = greedy_ref(Regression::Gsy, Some(&x), &preds, &labeled, 10)
        .into_iter()
        .map(|p| p.0)
        .collect();
    assert_eq!(got, want);
}

#[test]
fn the_gpu_picks_what_the_cpu_picks_for_greedy_sampling() {
    let Some(g) = common::gpu() else { return };
    let (x, preds) = data(400, 11, 5);
    // Predictions near 1e6, whose float32 values differ from the f64 ones
    // by more than many output terms do: the kernel's interval, not its
    // float32 key, must decide.
    let mut r = Rng::new(12);
    let far: Vec<f64> = (0..400).map(|_| 1e6 + r.below(9) as f64 * 0.01).collect();
    let v = flat(&x);
    let emb = Pool::from_f32(&v, 11).unwrap();
    let many: Vec<(usize, f64)> = (0..70)
        .map(|i| (i * 5 + 3, preds[i * 5 + 3] + 0.25))
        .collect();
    for lab in [&[][..], &[(2, 0.0), (90, 1.0)][..], &many[..]] {
        let j = job(Regression::Gsx, 20, lab, &preds);
        let cpu = common::select_cpu(Inputs::embeddings(&emb), &j).unwrap();
        let gpu = common::select_gpu(&g, Inputs::embeddings(&emb), &j)
            .unwrap()
            .0;
        assert_eq!(gpu.indices(), cpu.indices(), "labeled {}", lab.len());
        let want = greedy_ref(Regression::Gsx, Some(&x), &preds, lab, 20);
        let want: Vec<u64> = want.iter().map(|p| p.0 as u64).collect();
        assert_eq!(cpu.indices(), want);
        for (p, s) in [&preds, &far]
            .into_iter()
            .flat_map(|p| [Regression::Igs, Regression::Gsy].map(|s| (p, s)))
        {
            let lab: Vec<(usize, f64)> = lab.iter().map(|&(r, y)| (r, p[r] + y * 0.01)).collect();
            let j = job(s, 20, &lab, p);
            let pool = Pool::from_f64(p, 1).unwrap();
            // gsy reads the embeddings only for its first pick with no
            // labeled row.
            let inputs = Inputs::probs(&pool).with_embeddings(&emb);
            let gpu = common::select_gpu(&g, inputs, &j).unwrap().0;
            let cpu = common::select_cpu(inputs, &j).unwrap();
            assert_eq!(gpu.indices(), cpu.indices(), "{s} labeled {}", lab.len());
            let want = greedy_ref(s, Some(&x), p, &lab, 20);
            let got: Vec<(usize, f64)> = gpu
                .entries
                .iter()
                .map(|e| (e.index as usize, e.score))
                .collect();
            assert_eq!(got, want, "{s} labeled {}", lab.len());
        }
    }
    // A target float32 cannot hold (1e6 + 0.01 rounds to 1e6): in float32
    // row 1 (1e6 + 0.04, rounded to 1e6 + 0.0625) lies farther from it
    // than row 2 (1e6 − 0.025, rounded to 1e6), in f64 the other way round.
    let p = [1e6 + 0.02, 1e6 + 0.04, 1e6 - 0.025, 1e6];
    let j = job(Regression::Gsy, 2, &[(0, 1e6 + 0.01)], &p);
    let pool = Pool::from_f64(&p, 1).unwrap();
    let gpu = common::select_gpu(&g, Inputs::probs(&pool), &j).unwrap().0;
    assert_eq!(gpu.indices(), [2, 1]);
    let want = greedy_ref(Regression::Gsy, None, &p, &[(0, 1e6 + 0.01)], 2);
    let got: Vec<(usize, f64)> = gpu
        .entries
        .iter()
        .map(|e| (e.index as usize, e.score))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn the_gpu_picks_what_the_cpu_picks_for_std() {
    let Some(g) = common::gpu() else { return };
    let n = 1500;
    let mut r = Rng::new(17);
    for t in [2usize, 5, 20] {
        // Rows of every kind: spreads on a grid (ties, and duplicated
        // rows), smooth ones, large offsets with small spreads (the f32
        // mean cancels), negative values, no spread, all zeros, tiny
        // magnitudes (the host's), and values near the ±1e15 limit.
        let row = |i: usize, r: &mut Rng| -> Vec<f64> {
            let base = match i % 7 {
                0 => 0.0,
                1 => 1e6,
                2 => -3.5,
                3 => 1e14,
                _ => 0.0,
            };
            (0..t)
                .map(|_| match i % 13 {
                    0 => 2.0,
                    1 => 0.0,
                    2 => r.uniform() * 1e-9,
                    3 => -9e14 + r.below(4) as f64 * 1e13,
                    _ if i.is_multiple_of(2) => base + r.below(9) as f64 * 0.5,
                    _ => base + r.uniform() * 3.0,
                })
                .collect()
        };
        let mut rows: Vec<Vec<f64>> = (0..n).map(|i| row(i, &mut r)).collect();
        for i in (5..n).step_by(19) {
            rows[i] = rows[i - 4].clone();
        }
        // The reference reads what the GPU and CPU read: float32 values.
        let rows: Vec<Vec<f32>> = rows
            .iter()
            .map(|v| v.iter().map(|&x| x as f32).collect())
            .collect();
        let spread: Vec<f64> = rows
            .iter()
            .map(|v| std_ref(&v.iter().map(|&x| x as f64).collect::<Vec<_>>()))
            .collect();
        let tnc: Vec<f32> = (0..t)
            .flat_map(|s| rows.iter().map(move |v| v[s]))
            .collect();
        let ntc: Vec<f32> = rows.iter().flatten().copied().collect();
        let excluded = [3u64, 700, n as u64 - 1];
        for (values, layout, width, shape) in [
            (&tnc, SampleLayout::Tnc, 1, [t, n, 1]),
            (&ntc, SampleLayout::Ntc, t, [n, t, 1]),
        ] {
            let pool = Pool::from_f32(values, width).unwrap();
            let samples = Samples::from_pool(pool, shape, layout).unwrap();
            for (k, chunk) in [(1, 0), (40, 97), (n - 10, 0)] {
                let form = InputForm::Regression(RegressionInput::Samples);
                let mut j = Job::new(Regression::Std, form, k);
                j.chunk_rows = chunk;
                j.exclusions = Exclusions::new(excluded.to_vec());
                let (gpu, phases) = common::select_gpu(&g, Inputs::samples(&samples), &j).unwrap();
                assert!(phases.chunks > 0, "T {t} k {k}: did not run on the GPU");
                let cpu = common::select_cpu(Inputs::samples(&samples), &j).unwrap();
                assert_eq!(gpu.indices(), cpu.indices(), "T {t} k {k} chunk {chunk}");
                let mut want: Vec<usize> = (0..n)
                    .filter(|&i| !excluded.contains(&(i as u64)))
                    .collect();
                want.sort_by(|&a, &b| spread[b].total_cmp(&spread[a]).then(a.cmp(&b)));
                let got: Vec<usize> = gpu.indices().into_iter().map(|i| i as usize).collect();
                assert_eq!(got, want[..k], "T {t} k {k} chunk {chunk} {layout:?}");
                for e in &gpu.entries {
                    assert_eq!(e.score.to_bits(), spread[e.index as usize].to_bits());
                }
            }
        }
    }
    // Large offsets whose f32 mean rounds by more than the spreads differ:
    // rows of three equal values 1e9 + 128 (exact in float32 and f64: no
    // spread) whose float32 sum rounds, so that their f32 deviation is 64,
    // beside rows (x, x, x + 64), x = 1e9 + 64 j, whose spread is 30.2
    // (37 or 52 in f32). The top k are exactly the second kind: the
    // kernel's interval, not its f32 order, must decide the cut.
    let m = 6000;
    let mut tnc = vec![0f32; 3 * m];
    for i in 0..m {
        let j = if i % 2 == 0 { 2 } else { r.below(5) };
        let x = 1e9 + j as f64 * 64.0;
        for s in 0..3 {
            let up = i % 2 == 1 && s == 2;
            tnc[s * m + i] = (x + if up { 64.0 } else { 0.0 }) as f32;
        }
    }
    let pool = Pool::from_f32(&tnc, 1).unwrap();
    let samples = Samples::from_pool(pool, [3, m, 1], SampleLayout::Tnc).unwrap();
    let form = InputForm::Regression(RegressionInput::Samples);
    let (gpu, _) = common::select_gpu(
        &g,
        Inputs::samples(&samples),
        &Job::new(Regression::Std, form, m / 2),
    )
    .unwrap();
    let odd: Vec<u64> = (0..m as u64).filter(|i| i % 2 == 1).collect();
    assert_eq!(gpu.indices(), odd);
    // (mean, std) rows: the std column as stored, ties included.
    let ms: Vec<f32> = (0..n)
        .flat_map(|i| [i as f32 - 700.0, (i % 11) as f32 * 0.25])
        .collect();
    let pool = Pool::from_f32(&ms, 2).unwrap();
    let samples = Samples::from_pool(pool, [1, n, 2], SampleLayout::Tnc).unwrap();
    let form = InputForm::Regression(RegressionInput::MeanStd);
    let j = Job::new(Regression::Std, form, 100);
    let (gpu, _) = common::select_gpu(&g, Inputs::samples(&samples), &j).unwrap();
    let mut want: Vec<usize> = (0..n).collect();
    want.sort_by(|&a, &b| ms[2 * b + 1].total_cmp(&ms[2 * a + 1]).then(a.cmp(&b)));
    let got: Vec<usize> = gpu.indices().into_iter().map(|i| i as usize).collect();
    assert_eq!(got, want[..100]);
    // Bad values are named as on the CPU: NaN, beyond the limit, a
    // negative std.
    for (at, v, form) in [
        (3 * 2 + 1, f32::NAN, RegressionInput::MeanStd),
        (900 * 2, 2e15, RegressionInput::MeanStd),
        (1201 * 2 + 1, -1.0, RegressionInput::MeanStd),
    ] {
        let mut bad = ms.clone();
        bad[at] = v;
        let pool = Pool::from_f32(&bad, 2).unwrap();
        let samples = Samples::from_pool(pool, [1, n, 2], SampleLayout::Tnc).unwrap();
        let j = Job::new(Regression::Std, InputForm::Regression(form), 5);
        let e = common::select_gpu(&g, Inputs::samples(&samples), &j).unwrap_err();
        let cpu = common::select_cpu(Inputs::samples(&samples), &j).unwrap_err();
        assert_eq!(e.to_string(), cpu.to_string());
        assert!(e.to_string().contains(&(at / 2).to_string()), "{e}");
    }
}

#[test]
fn std_ranks_the_spread_of_t_predictions_and_of_mean_std_rows() {
    let (t, n) = (5, 300);
    let mut r = Rng::new(9);
    // Sample-major T x N, with tied spreads (rows 2k and 2k+1 equal).
    let mut values = vec![0f32; t * n];
    for i in (0..n).step_by(2) {
        for s in 0..t {
            let v = r.below(9) as f32 * 0.5;
            values[s * n + i] = v;
            if i + 1 < n {
                values[s * n + i + 1] = v;
            }
        }
    }
    let pool = Pool::from_f32(&values, 1).unwrap();
    let samples = Samples::from_pool(pool, [t, n, 1], SampleLayout::Tnc).unwrap();
    let form = InputForm::Regression(RegressionInput::Samples);
    let j = Job::new(Regression::Std, form, 40);
    let sel = common::select_cpu(Inputs::samples(&samples), &j).unwrap();
    let spread: Vec<f64> = (0..n)
        .map(|i| std_ref(&(0..t).map(|s| values[s * n + i] as f64).collect::<Vec<_>>()))
        .collect();
    let mut want: Vec<usize> = (0..n).collect();
    want.sort_by(|&a, &b| spread[b].total_cmp(&spread[a]).then(a.cmp(&b)));
    let got: Vec<usize> = sel.indices().into_iter().map(|i| i as usize).collect();
    assert_eq!(got, want[..40]);
    for e in &sel.entries {
        assert_eq!(e.score, spread[e.index as usize]);
    }
    let scores = alpool::score(Inputs::samples(&samples), &j).unwrap();
    assert_eq!(scores, spread);

    // (mean, std) rows: the std column, as stored.
    let rows: Vec<f32> = (0..n).flat_map(|i| [i as f32, spread[i] as f32]).collect();
    let pool = Pool::from_f32(&rows, 2).unwrap();
    let ms = Samples::from_pool(pool, [1, n, 2], SampleLayout::Tnc).unwrap();
    let form = InputForm::Regression(RegressionInput::MeanStd);
    let sel =
        common::select_cpu(Inputs::samples(&ms), &Job::new(Regression::Std, form, 40)).unwrap();
    let mut want: Vec<usize> = (0..n).collect();
    let col = |i: usize| spread[i] as f32;
    want.sort_by(|&a, &b| col(b).total_cmp(&col(a)).then(a.cmp(&b)));
    let got: Vec<usize> = sel.indices().into_iter().map(|i| i as usize).collect();
    assert_eq!(got, want[..40]);
}

/// EMCM from its definition: each row's mean over the T ensemble
/// predictions `ens` (sample-major) of |s_t − ŷ|, times the norm of its
/// features `x`; `pred` gives ŷ.
fn emcm_reference(ens: &[f32], pred: impl Fn(usize) -> f64, x: &[Vec<f32>], t: usize) -> Vec<f64> {
    let n = x.len();
    let zeros = vec![0f32; x.first().map_or(0, Vec::len)];
    (0..n)
        .map(|i| {
            let mut a = 0.0;
            for s in 0..t {
                a += (ens[s * n + i] as f64 - pred(i)).abs();
            }
            a / t as f64 * sq(&x[i], &zeros).sqrt()
        })
        .collect()
}

/// T x N ensemble predictions, sample-major.
fn ensemble(preds: &[f32], [t, n]: [usize; 2]) -> Samples<'_> {
    Samples::from_pool(
        Pool::from_f32(preds, 1).unwrap(),
        [t, n, 1],
        SampleLayout::Tnc,
    )
    .unwrap()
}

#[test]
fn the_gpu_picks_what_the_cpu_picks_for_emcm() {
    let Some(g) = common::gpu() else { return };
    use alpool::{Stochastic, StochasticKind};
    // More rows than the radix select keeps whole (1,024), so a loose
    // interval would show.
    let (t, n, d) = (5, 3000, 7);
    let mut r = Rng::new(31);
    // Rows of every kind: ensemble predictions on a grid (ties) and smooth
    // ones, large offsets over small spreads, features on a grid, zero
    // rows (score 0), duplicated rows, and features so small that their
    // squares reach the floats a GPU may flush (the host's).
    let base = |i: usize| match i % 5 {
        0 => 1e6,
        1 => -3.0,
        _ => 0.0,
    };
    let preds: Vec<f32> = (0..n)
        .map(|i| (base(i) + r.below(4) as f64 * 0.25) as f32)
        .collect();
    let mut ens = vec![0f32; t * n];
    for i in 0..n {
        for s in 0..t {
            let v = match i % 3 {
                0 => base(i) + r.below(5) as f64 * 0.5,
                _ => base(i) + r.uniform() * 2.0,
            };
            ens[s * n + i] = v as f32;
        }
    }
    let mut x: Vec<Vec<f32>> = (0..n)
        .map(|i| {
            (0..d)
                .map(|_| match i % 4 {
                    0 => r.below(3) as f32,
                    1 => 0.0,
                    _ => (r.uniform() * 4.0 - 2.0) as f32,
                })
                .collect()
        })
        .collect();
    for i in (7..n).step_by(23) {
        x[i] = x[i - 6].clone();
        for s in 0..t {
            ens[s * n + i] = ens[s * n + i - 6];
        }
    }
    for i in (11..n).step_by(101) {
        x[i][0] = 1e-30;
    }
    let zeros = vec![0f32; d];
    let want = emcm_reference(&ens, |i| preds[i] as f64, &x, t);
    let v = flat(&x);
    let emb = Pool::from_f32(&v, d).unwrap();
    let pool = Pool::from_f32(&preds, 1).unwrap();
    let tnc = ensemble(&ens, [t, n]);
    let nt: Vec<f32> = (0..n)
        .flat_map(|i| (0..t).map(move |s| (i, s)))
        .map(|(i, s)| ens[s * n + i])
        .collect();
    let ntc = Samples::from_pool(
        Pool::from_f32(&nt, t).unwrap(),
        [n, t, 1],
        SampleLayout::Ntc,
    )
    .unwrap();
    let form = InputForm::Regression(RegressionInput::Samples);
    let excluded = [3u64, 1500, n as u64 - 1];
    // The cut among the rows whose features are tiny (scores near 1e-30).
    let positive = (0..n)
        .filter(|&i| want[i] > 0.0 && !excluded.contains(&(i as u64)))
        .count();
    let cases = [
        (&tnc, 0, 1),
        (&tnc, 0, 60),
        (&ntc, 777, 60),
        (&tnc, 1000, n - 10),
        (&tnc, 0, positive - 2),
    ];
    for (samples, chunk, k) in cases {
        let inputs = Inputs::samples(samples)
            .with_probs(&pool)
            .with_embeddings(&emb);
        let mut j = Job::new(Regression::Emcm, form, k).exclude(Exclusions::new(excluded.to_vec()));
        j.chunk_rows = chunk;
        let gpu = common::select_gpu(&g, inputs, &j).unwrap().0;
        let cpu = common::select_cpu(inputs, &j).unwrap();
        let mut order: Vec<usize> = (0..n)
            .filter(|&i| !excluded.contains(&(i as u64)))
            .collect();
        order.sort_by(|&a, &b| want[b].total_cmp(&want[a]).then(a.cmp(&b)));
        let got: Vec<usize> = gpu.indices().into_iter().map(|i| i as usize).collect();
        assert_eq!(got, order[..k], "chunk {chunk}, k {k}");
        assert_eq!(gpu.indices(), cpu.indices());
        for (a, b) in gpu.entries.iter().zip(&cpu.entries) {
            assert_eq!(a.score.to_bits(), b.score.to_bits());
            assert_eq!(a.score, want[a.index as usize]);
        }
        // A stochastic batch draws the same rows on both devices.
        j.stochastic = Some(Stochastic::new(StochasticKind::Power, 2.0));
        let gpu = common::select_gpu(&g, inputs, &j).unwrap().0;
        let cpu = common::select_cpu(inputs, &j).unwrap();
        assert_eq!(gpu.indices(), cpu.indices(), "power, chunk {chunk}, k {k}");
    }
    // A dense cluster: the same features for every row, and ensemble
    // predictions spread over a hundred ulps or so of the last sample and an
    // ulp or two of the others, so that neighbouring scores differ by less
    // than float32's rounding of their sums and the cut falls among them.
    let m = 2048;
    let mut r = Rng::new(32);
    let row = [0.3f32, 0.7, 1.9, -0.4, 2.2];
    let dense: Vec<f32> = (0..t * m)
        .map(|i| {
            let ulps = if i / m == 4 {
                r.below(201) as u32
            } else {
                r.below(5) as u32
            };
            let centre = if i / m == 4 { 100 } else { 2 };
            f32::from_bits(row[i / m].to_bits() + ulps - centre)
        })
        .collect();
    let feats: Vec<f32> = (0..d).map(|j| 1.1 + j as f32 * 0.37).collect();
    let norm = sq(&feats, &zeros).sqrt();
    let close: Vec<f64> = (0..m)
        .map(|i| {
            let a: f64 = (0..t).map(|s| (dense[s * m + i] as f64 - 0.5).abs()).sum();
            a / t as f64 * norm
        })
        .collect();
    let v: Vec<f32> = (0..m).flat_map(|_| feats.iter().copied()).collect();
    let emb_d = Pool::from_f32(&v, d).unwrap();
    let half = vec![0.5f32; m];
    let pool_d = Pool::from_f32(&half, 1).unwrap();
    let samples = ensemble(&dense, [t, m]);
    let inputs = Inputs::samples(&samples)
        .with_probs(&pool_d)
        .with_embeddings(&emb_d);
    let (gpu, phases) =
        common::select_gpu(&g, inputs, &Job::new(Regression::Emcm, form, 1024)).unwrap();
    assert!(phases.candidates >= 1024);
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| close[b].total_cmp(&close[a]).then(a.cmp(&b)));
    let got: Vec<usize> = gpu.indices().into_iter().map(|i| i as usize).collect();
    assert_eq!(got, order[..1024], "the dense cluster");

    // Rows whose features square below float32's range (1e-25: scores near
    // 5e-26) above rows of scores near 1e-28 that float32 computes well,
    // both above the interval's absolute term (1e-30): the first go to the
    // host, or the cut between them would drop them.
    let (m, mut r) = (1200, Rng::new(33));
    let kind = |i: usize| (i >= 1000) as usize + (i >= 1100) as usize;
    let ens_t: Vec<f32> = (0..t * m)
        .map(|i| match kind(i % m) {
            2 => (r.uniform() * 2e-14) as f32,
            _ => (r.uniform() * 2.0 - 1.0) as f32,
        })
        .collect();
    let feats: Vec<Vec<f32>> = (0..m)
        .map(|i| {
            (0..d)
                .map(|j| match (kind(i), j) {
                    (0, _) => r.uniform() as f32 + 0.1,
                    (1, 0) => 1e-25,
                    (2, 0) => 1e-14,
                    _ => 0.0,
                })
                .collect()
        })
        .collect();
    let zero = vec![0f32; m];
    let want = emcm_reference(&ens_t, |_| 0.0, &feats, t);
    let v = flat(&feats);
    let (emb_t, pool_t) = (
        Pool::from_f32(&v, d).unwrap(),
        Pool::from_f32(&zero, 1).unwrap(),
    );
    let samples = ensemble(&ens_t, [t, m]);
    let inputs = Inputs::samples(&samples)
        .with_probs(&pool_t)
        .with_embeddings(&emb_t);
    let gpu = common::select_gpu(&g, inputs, &Job::new(Regression::Emcm, form, 1100))
        .unwrap()
        .0;
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| want[b].total_cmp(&want[a]).then(a.cmp(&b)));
    let got: Vec<usize> = gpu.indices().into_iter().map(|i| i as usize).collect();
    assert_eq!(got, order[..1100], "tiny features");

    // A bad row is named as on the CPU.
    let mut bad = ens.clone();
    bad[2 * n + 2345] = f32::NAN;
    let bad = ensemble(&bad, [t, n]);
    let inputs = Inputs::samples(&bad)
        .with_probs(&pool)
        .with_embeddings(&emb);
    let j = Job::new(Regression::Emcm, form, 10);
    let on_gpu = common::select_gpu(&g, inputs, &j).unwrap_err().to_string();
    let on_cpu = common::select_cpu(inputs, &j).unwrap_err().to_string();
    assert_eq!(on_gpu, on_cpu);
    assert!(on_cpu.contains("2345"), "{on_cpu}");
    // float64 values stay on the CPU.
    let wide: Vec<f64> = preds.iter().map(|&p| p as f64).collect();
    let wide = Pool::from_f64(&wide, 1).unwrap();
    let inputs = Inputs::samples(&tnc)
        .with_probs(&wide)
        .with_embeddings(&emb);
    let e = common::select_gpu(&g, inputs, &j).unwrap_err().to_string();
    assert!(e.contains("float64"), "{e}");
}

#[test]
fn emcm_equals_its_reference() {
    let (t, n, d) = (4, 257, 5);
    let (x, preds) = data(n, d, 11);
    let mut r = Rng::new(12);
    // Ensemble predictions from a few values: tied scores.
    let ens: Vec<f32> = (0..t * n).map(|_| r.below(5) as f32 * 0.5 - 1.0).collect();
    let want = emcm_reference(&ens, |i| preds[i], &x, t);
    let v = flat(&x);
    let emb = Pool::from_f32(&v, d).unwrap();
    let pool = Pool::from_f64(&preds, 1).unwrap();
    let samples = ensemble(&ens, [t, n]);
    let form = InputForm::Regression(RegressionInput::Samples);
    let inputs = || {
        Inputs::samples(&samples)
            .with_probs(&pool)
            .with_embeddings(&emb)
    };
    let excluded = Exclusions::new(vec![0, 9, 100]);
    for chunk in [0, 7, 64] {
        let mut j = Job::new(Regression::Emcm, form, 30).exclude(excluded.clone());
        j.chunk_rows = chunk;
        let sel = common::select_cpu(inputs(), &j).unwrap();
        let mut order: Vec<usize> = (0..n).filter(|i| ![0, 9, 100].contains(i)).collect();
        order.sort_by(|&a, &b| want[b].total_cmp(&want[a]).then(a.cmp(&b)));
        let got: Vec<usize> = sel.indices().into_iter().map(|i| i as usize).collect();
        assert_eq!(got, order[..30], "chunk {chunk}");
        for e in &sel.entries {
            assert_eq!(e.score, want[e.index as usize]);
        }
        assert_eq!(alpool::score(inputs(), &j).unwrap(), want);
    }
    // One ensemble prediction measures nothing; rows must agree.
    let one = ensemble(&ens[..n], [1, n]);
    let j = Job::new(Regression::Emcm, form, 3);
    let e = common::select_cpu(
        Inputs::samples(&one)
            .with_probs(&pool)
            .with_embeddings(&emb),
        &j,
    );
    assert!(e.err().unwrap().to_string().contains("T ≥ 2"));
    let short = Pool::from_f64(&preds[..10], 1).unwrap();
    let e = common::select_cpu(
        Inputs::samples(&samples)
            .with_probs(&short)
            .with_embeddings(&emb),
        &j,
    );
    assert!(
        e.err()
            .unwrap()
            .to_string()
            .contains("10 rows of predictions")
    );
}

/// `alpool select` with the arguments, in `dir`; (status ok, stdout,
/// stderr).
fn cli(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["select", "-q"];
    all.extend_from_slice(args);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_alpool"))
        .args(&all)
        .current_dir(dir)
        .output()
        .unwrap();
    let (o, e) = (common::stdout(&out), common::stderr(&out));
    (out.status.success(), o, e)
}

fn save_vec(path: &Path, v: &[f64]) {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    let dict = format!(
        "{{'descr': '<f8', 'fortran_order': False, 'shape': ({},), }}",
        v.len()
    );
    common::save_raw(path, &dict, &bytes);
}

#[test]
fn from_the_command_line_with_bad_input_named() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let (x, preds) = data(120, 3, 4);
    common::save_f32(&p.join("x.npy"), &x, 3);
    save_vec(&p.join("p.npy"), &preds);
    let mut y = vec![f64::NAN; 120];
    y[5] = 0.5;
    y[60] = -1.0;
    save_vec(&p.join("y.npy"), &y);
    let labeled = [(5, 0.5), (60, -1.0)];
    let want = greedy_ref(Regression::Igs, Some(&x), &preds, &labeled, 6);
    let (ok, out, err) = cli(
        p,
        &[
            "p.npy",
            "--input",
            "regression",
            "-s",
            "igs",
            "-k",
            "6",
            "--embeddings",
            "x.npy",
            "--targets",
            "y.npy",
        ],
    );
    assert!(ok, "{err}");
    let rows: Vec<usize> = out
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(rows, want.iter().map(|p| p.0).collect::<Vec<_>>());

    // T x N predictions, sample-major, for std.
    let s: Vec<Vec<f32>> = (0..3)
        .map(|t| (0..120).map(|i| (i * (t + 1) % 7) as f32).collect())
        .collect();
    common::save_f32(&p.join("s.npy"), &s, 120);
    let (ok, out, err) = cli(
        p,
        &[
            "s.npy",
            "--input",
            "regression-samples",
            "-s",
            "std",
            "-k",
            "3",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 4, "{out}");

    let mut bad = preds.clone();
    bad[17] = f64::NAN;
    save_vec(&p.join("bad.npy"), &bad);
    let mut yb = y.clone();
    yb[5] = f64::INFINITY;
    save_vec(&p.join("yinf.npy"), &yb);
    save_vec(&p.join("yshort.npy"), &y[..50]);
    let ms: Vec<Vec<f32>> = (0..10)
        .map(|i| vec![1.0, if i == 4 { -0.5 } else { 0.5 }])
        .collect();
    common::save_f32(&p.join("ms.npy"), &ms, 2);
    let one = vec![vec![1f32; 120]];
    common::save_f32(&p.join("one.npy"), &one, 120);
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "bad.npy",
                "--input",
                "regression",
                "-s",
                "gsy",
                "--targets",
                "y.npy",
            ],
            "row 17",
        ),
        (
            &[
                "p.npy",
                "--input",
                "regression",
                "-s",
                "gsy",
                "--targets",
                "yinf.npy",
            ],
            "labeled row 5 has target inf",
        ),
        (
            &[
                "p.npy",
                "--input",
                "regression",
                "-s",
                "gsy",
                "--targets",
                "yshort.npy",
            ],
            "50 targets for a pool of 120 rows",
        ),
        (
            &["p.npy", "--input", "regression", "-s", "gsy"],
            "give --embeddings",
        ),
        (
            &[
                "ms.npy",
                "--input",
                "regression-mean-std",
                "-s",
                "std",
                "-k",
                "2",
            ],
            "std must be ≥ 0",
        ),
        (
            &[
                "one.npy",
                "--input",
                "regression-samples",
                "-s",
                "std",
                "-k",
                "2",
            ],
            "T ≥ 2 predictions",
        ),
        (
            &["p.npy", "--input", "regression", "-s", "margin"],
            "reads class probabilities",
        ),
        (
            &["x.npy", "-s", "std", "-k", "2"],
            "--input regression-samples",
        ),
    ];
    for (args, want) in cases {
        let (ok, _, err) = cli(p, args);
        assert!(!ok && err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn targets_come_from_the_labeled_rows() {
    let column = [f64::NAN, 2.0, f64::NAN, -1.0];
    let form = InputForm::Regression(RegressionInput::Predictions);
    let j = Job::new(Regression::Gsy, form, 1)
        .with_targets(&column)
        .unwrap();
    assert_eq!(j.exclusions.as_slice(), [1, 3]);
    assert_eq!((j.targets.get(1), j.targets.get(0)), (Some(2.0), None));
    // Named labeled rows must all have one.
    let named = Job::new(Regression::Gsy, form, 1).exclude(Exclusions::new(vec![0, 1]));
    let e = named.with_targets(&column).unwrap_err().to_string();
    assert!(e.contains("labeled row 0 has target NaN"), "{e}");
}

// ---------------------------------------------------------------------
// The loop: `simulate --task regression`.

/// y = a smooth function of two features, plus noise.
fn smooth(n: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut r = Rng::new(seed);
    let x: Vec<f32> = (0..n * 2)
        .map(|_| (r.uniform() * 4.0 - 2.0) as f32)
        .collect();
    let y = x
        .chunks(2)
        .map(|p| 3.0 * p[0] - p[1] * p[1] + 0.1 * r.uniform() as f32)
        .collect();
    (x, y)
}

#[test]
fn the_regression_loop_pairs_its_strategies_and_repeats_itself() {
    use alpool::al::measured::summarize;
    use alpool::al::regression::{RegressionData, RegressionSim, simulate};
    let (x, y) = smooth(600, 2);
    let data = RegressionData::new(x, y, 2, "smooth").unwrap();
    use alpool::{Method, Query, Stochastic, StochasticKind};
    let drawn = |r: Regression, kind, beta| Method {
        query: Query::Regress(r),
        stochastic: Some(Stochastic::new(kind, beta)),
    };
    let mut strategies: Vec<Method> = vec![alpool::Strategy::Random.into()];
    strategies.extend(Regression::ALL.map(|r| Method::from(Query::Regress(r))));
    strategies.push(drawn(Regression::Std, StochasticKind::Power, 2.0));
    strategies.push(drawn(Regression::Emcm, StochasticKind::Softmax, 2.0));
    let cfg = RegressionSim {
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
        committee: 3,
        mc_samples: 0,
    };
    let runs = simulate(&data, &cfg, &alpool::Silent).unwrap();
    assert_eq!(runs.len(), 16);
    for r in &runs {
        let labels: Vec<usize> = r.rounds.iter().map(|x| x.labels).collect();
        assert_eq!(labels, [10, 25, 40, 55, 70], "{}", r.name);
        // Every strategy of a repeat starts from the same split and labels.
        let first = runs.iter().find(|o| o.repeat == r.repeat).unwrap();
        assert_eq!(r.rounds[0].metrics, first.rounds[0].metrics);
        // A model of 70 labels beats one of 10 on this smooth function.
        assert!(
            r.rounds[4].metrics[0] < r.rounds[0].metrics[0],
            "{}",
            r.name
        );
        assert!(
            r.rounds
                .iter()
                .all(|x| x.metrics[1].is_finite() && x.metrics[1] <= 1.0)
        );
    }
    let again = simulate(&data, &cfg, &alpool::Silent).unwrap();
    for (a, b) in runs.iter().zip(&again) {
        let (ea, eb): (Vec<f64>, Vec<f64>) = (
            a.rounds.iter().map(|x| x.metrics[0]).collect(),
            b.rounds.iter().map(|x| x.metrics[0]).collect(),
        );
        assert_eq!(ea, eb, "{} repeat {}", a.name, a.repeat);
    }
    // The drawn batches are not the top k; at β = ∞ a softmax batch is.
    let rmse = |runs: &[alpool::al::measured::Run], name: &str, repeat: usize| -> Vec<f64> {
        let r = runs.iter().find(|r| r.name == name && r.repeat == repeat);
        r.unwrap().rounds.iter().map(|x| x.metrics[0]).collect()
    };
    assert_ne!(rmse(&runs, "power-std", 0), rmse(&runs, "std", 0));
    assert_ne!(rmse(&runs, "softmax-emcm", 1), rmse(&runs, "emcm", 1));
    let mut cold = cfg.clone();
    cold.strategies = vec![drawn(
        Regression::Std,
        StochasticKind::Softmax,
        f64::INFINITY,
    )];
    let top = simulate(&data, &cold, &alpool::Silent).unwrap();
    assert_eq!(rmse(&top, "softmax-std", 1), rmse(&runs, "std", 1));
    let names: Vec<String> = strategies.iter().map(Method::name).collect();
    let summary = summarize(&runs, &names);
    assert_eq!(summary.len(), 8);
    let random = &summary[0];
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
    let aulcs: Vec<f64> = runs
        .iter()
        .filter(|r| r.name == "random")
        .map(|r| mean(&r.rounds.iter().map(|x| x.metrics[0]).collect::<Vec<_>>()))
        .collect();
    assert!((random.aulc_mean[0] - mean(&aulcs)).abs() < 1e-12);
    // Bad settings are named.
    let mut bad = cfg.clone();
    bad.strategies = vec![alpool::Strategy::Margin.into()];
    let e = simulate(&data, &bad, &alpool::Silent)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("margin is not a regression strategy"), "{e}");
    bad.strategies = vec![drawn(Regression::Igs, StochasticKind::Power, 1.0)];
    let e = simulate(&data, &bad, &alpool::Silent)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("power-igs: igs picks a batch itself"), "{e}");
    let mut bad = cfg.clone();
    bad.committee = 1;
    let e = simulate(&data, &bad, &alpool::Silent)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("--committee must be at least 2"), "{e}");
    // MC dropout instead of the ensemble: the round model's passes.
    let mut mc = cfg.clone();
    mc.strategies = vec![Query::Regress(Regression::Std).into()];
    mc.mc_samples = 5;
    let e = simulate(&data, &mc, &alpool::Silent)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("--dropout P"), "{e}");
    mc.mlp.dropout = 0.2;
    let a = simulate(&data, &mc, &alpool::Silent).unwrap();
    let b = simulate(&data, &mc, &alpool::Silent).unwrap();
    let curve = |r: &[alpool::al::measured::Run]| -> Vec<f64> {
        r.iter()
            .flat_map(|r| r.rounds.iter().map(|x| x.metrics[0]))
            .collect()
    };
    assert_eq!(curve(&a), curve(&b));
    let nan = RegressionData::new(vec![0.0; 4], vec![1.0, f32::NAN], 2, "x");
    assert!(
        nan.err()
            .unwrap()
            .to_string()
            .contains("row 1: the target is NaN")
    );
}

/// `alpool simulate --task regression` on `x` and `y`, writing to `out`,
/// with `extra` flags.
fn simulate_regression((x, y, out): (&Path, &Path, &Path), extra: &[&str]) -> std::process::Output {
    let mut args = vec!["simulate", "--task", "regression"];
    args.extend([
        "--features",
        x.to_str().unwrap(),
        "--labels",
        y.to_str().unwrap(),
    ]);
    args.extend(["--out", out.to_str().unwrap()]);
    args.extend_from_slice(extra);
    common::alpool(&args)
}

#[test]
fn simulate_regression_on_diamonds_writes_its_curves() {
    let Some(dir) = common::shared_data("diamonds") else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let (x, y) = (dir.join("X.npy"), dir.join("y.npy"));
    let run = |folder: &Path| {
        let o = simulate_regression(
            (&x, &y, folder),
            &[
                "--strategies",
                "random,igs,std,power-std",
                "--beta",
                "2",
                "--budget",
                "120",
                "--batch-size",
                "25",
                "--repeats",
                "1",
                "--committee",
                "3",
            ],
        );
        assert!(o.status.success(), "{}", common::stderr(&o));
        common::stdout(&o)
    };
    let table = run(&out.path().join("a"));
    assert!(
        table.contains("RMSE AULC") && table.contains("igs"),
        "{table}"
    );
    run(&out.path().join("b"));
    let read = |f: &str| std::fs::read_to_string(out.path().join(f)).unwrap();
    // The same seed, the same rounds (the timings aside).
    let rounds = |f: &str| -> Vec<String> {
        let text = read(f);
        text.lines()
            .map(|l| l.rsplit_once(',').unwrap().0.to_string())
            .collect()
    };
    assert_eq!(rounds("a/rounds.csv"), rounds("b/rounds.csv"));
    let summary: serde_json::Value = serde_json::from_str(&read("a/summary.json")).unwrap();
    let strategies = summary["strategies"].as_array().unwrap();
    assert_eq!(strategies.len(), 4);
    assert_eq!(strategies[3]["strategy"], "power-std");
    let drawn = &summary["stochastic"][0];
    assert_eq!(
        (&drawn["strategy"], &drawn["beta"]),
        (&"power-std".into(), &2.0.into())
    );
    for s in strategies {
        let curve = s["curve"].as_array().unwrap();
        let labels: Vec<u64> = curve.iter().map(|c| c[0].as_u64().unwrap()).collect();
        assert_eq!(labels, [20, 45, 70, 95, 120]);
        // log10 prices: a model of 120 labels explains most of the variance.
        let r2 = curve.last().unwrap()[3].as_f64().unwrap();
        assert!(r2 > 0.8, "{s}");
    }
    assert!(read("a/curves.svg").contains("<svg"));
    // A NaN target is named.
    let t = tempfile::tempdir().unwrap();
    save_vec(&t.path().join("y.npy"), &[1.0, f64::NAN, 2.0]);
    common::save_f32(
        &t.path().join("x.npy"),
        &[vec![0.0], vec![1.0], vec![2.0]],
        1,
    );
    let refused = |strategies: &str, says: &str| {
        let (x, y, out) = (
            t.path().join("x.npy"),
            t.path().join("y.npy"),
            t.path().join("o"),
        );
        let o = simulate_regression((&x, &y, &out), &["--strategies", strategies]);
        let err = common::stderr(&o);
        assert!(!o.status.success() && err.contains(says), "{err}");
    };
    refused("random,std,gsx,igs", "row 1: the target is NaN");
    // Greedy sampling picks its batch itself: no stochastic prefix.
    refused("random,power-igs", "power-igs: igs picks a batch itself");
}
