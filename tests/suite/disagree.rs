//! The disagreement strategies against naive references written from the
//! documented formulas (not the library's code): exact picks and scores,
//! ties included, for every layout, shard split, chunk size, k, exclusion
//! list, input form and log base; bad samples named.

use std::path::{Path, PathBuf};

use crate::common;
use crate::rng::Rng;
use alpool::pool::{ReadPath, npy};
use alpool::{
    Device, Disagreement, Error, Exclusions, InputForm, Inputs, Job, LogBase, Pool, Run,
    SampleLayout, Samples,
};

/// T x N x C samples on a coarse grid (many exact ties), as f32.
fn grid_samples(t: usize, n: usize, c: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(t * n * c);
    for _ in 0..t * n {
        let mut w: Vec<u64> = (0..c).map(|_| rng.below(3)).collect();
        w[rng.below(c as u64) as usize] += 1;
        let s: u64 = w.iter().sum();
        out.extend(w.iter().map(|&x| (x as f64 / s as f64) as f32));
    }
    out
}

/// −Σ x ln x in f64, column order, 0 ln 0 = 0: the documented entropy.
fn entropy(p: &[f64]) -> f64 {
    let mut s = 0.0;
    for &x in p {
        if x > 0.0 {
            s += x * x.ln();
        }
    }
    0.0 - s
}

/// The documented score of one row from its samples `q[t]` (canonical
/// probabilities): p̄ summed in sample order over T, then each formula.
fn reference_score(d: Disagreement, base: LogBase, q: &[Vec<f64>]) -> f64 {
    let (t, c) = (q.len() as f64, q[0].len());
    let mut mean = vec![0.0; c];
    for s in q {
        for (m, &v) in mean.iter_mut().zip(s) {
            *m += v;
        }
    }
    mean.iter_mut().for_each(|m| *m /= t);
    let kl = |s: &[f64]| -> f64 {
        let mut sum = 0.0;
        for (&a, &b) in s.iter().zip(&mean) {
            if a > 0.0 {
                sum += a * (a.ln() - b.ln());
            }
        }
        sum
    };
    let votes = || {
        let mut v = vec![0u32; c];
        for s in q {
            let mut best = 0;
            for j in 0..c {
                if s[j] > s[best] {
                    best = j;
                }
            }
            v[best] += 1;
        }
        v
    };
    let ln_b = base.ln();
    match d {
        Disagreement::Bald => {
            let h: f64 = q.iter().map(|s| entropy(s)).sum();
            (entropy(&mean) - h / t) / ln_b
        }
        Disagreement::ConsensusEntropy => entropy(&mean) / ln_b,
        Disagreement::KlMean => q.iter().map(|s| kl(s)).sum::<f64>() / t / ln_b,
        Disagreement::KlMax => q.iter().map(|s| kl(s)).fold(f64::NEG_INFINITY, f64::max) / ln_b,
        Disagreement::MeanStd => {
            let mut sum = 0.0;
            for j in 0..c {
                let var: f64 = q
                    .iter()
                    .map(|s| (s[j] - mean[j]) * (s[j] - mean[j]))
                    .sum::<f64>()
                    / t;
                sum += var.sqrt();
            }
            sum / c as f64
        }
        Disagreement::VariationRatio => 1.0 - *votes().iter().max().unwrap() as f64 / t,
        Disagreement::VoteEntropy => {
            let f: Vec<f64> = votes().iter().map(|&v| v as f64 / t).collect();
            entropy(&f) / ln_b
        }
        other => panic!("no reference for {other}"),
    }
}

/// The naive selection: every row's score, sorted by (score desc, row).
fn reference(
    tnc: &[f32],
    (t, n, c): (usize, usize, usize),
    job: &Job,
    d: Disagreement,
) -> Vec<(u64, f64)> {
    let mut all: Vec<(f64, u64)> = (0..n)
        .filter(|&i| !job.exclusions.contains(i as u64))
        .map(|i| {
            let q: Vec<Vec<f64>> = (0..t)
                .map(|s| {
                    common::reference_probs(&tnc[(s * n + i) * c..(s * n + i + 1) * c], job.input)
                })
                .collect();
            (reference_score(d, job.log_base, &q), i as u64)
        })
        .collect();
    all.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap().then(a.1.cmp(&b.1)));
    all.truncate(job.k);
    all.into_iter().map(|(s, i)| (i, s)).collect()
}

/// The same samples in every form the library reads: a T x N x C file,
/// an N x T x C file, T files of N x C, and the borrowed array.
fn layouts(
    dir: &Path,
    tnc: &[f32],
    (t, n, c): (usize, usize, usize),
) -> Vec<(Vec<PathBuf>, SampleLayout)> {
    let one = dir.join("tnc.npy");
    npy::save(&one, &[t, n, c], tnc).unwrap();
    let mut ntc = vec![0f32; tnc.len()];
    for s in 0..t {
        for i in 0..n {
            let from = (s * n + i) * c;
            let to = (i * t + s) * c;
            ntc[to..to + c].copy_from_slice(&tnc[from..from + c]);
        }
    }
    let rowwise = dir.join("ntc.npy");
    npy::save(&rowwise, &[n, t, c], &ntc).unwrap();
    let each: Vec<PathBuf> = (0..t)
        .map(|s| {
            let p = dir.join(format!("s{s}.npy"));
            npy::save(&p, &[n, c], &tnc[s * n * c..(s + 1) * n * c]).unwrap();
            p
        })
        .collect();
    vec![
        (vec![one], SampleLayout::Tnc),
        (vec![rowwise], SampleLayout::Ntc),
        (each, SampleLayout::Tnc),
    ]
}

#[test]
fn every_strategy_equals_its_naive_reference_in_every_layout() {
    let dir = tempfile::tempdir().unwrap();
    for (case, (t, n, c)) in [(2, 300, 3), (5, 257, 4), (7, 90, 2)]
        .into_iter()
        .enumerate()
    {
        let tnc = grid_samples(t, n, c, case as u64);
        let files = layouts(dir.path(), &tnc, (t, n, c));
        for d in Disagreement::ALL {
            for (k, chunk, base) in [
                (0, 0, LogBase::E),
                (1, 7, LogBase::Two),
                (17, 0, LogBase::E),
                (n, 13, LogBase::Ten),
                (n + 3, 1, LogBase::E),
            ] {
                let mut job = Job::new(d, InputForm::probs(), k).log_base(base);
                job.chunk_rows = chunk;
                job.exclusions = Exclusions::new(vec![0, 5, (n - 1) as u64]);
                let want = reference(&tnc, (t, n, c), &job, d);
                let got = |s: &Samples| -> Vec<(u64, f64)> {
                    let sel = common::select_cpu(Inputs::samples(s), &job).unwrap();
                    sel.entries.iter().map(|e| (e.index, e.score)).collect()
                };
                // Mapped files are scored straight from the map, read ones
                // from buffers: both paths.
                for (paths, layout) in &files {
                    for read in [ReadPath::Map, ReadPath::Read] {
                        let s = Samples::open(paths, *layout, read).unwrap();
                        assert_eq!(
                            got(&s),
                            want,
                            "{d} {layout:?} {read:?} {} files, k {k}, chunk {chunk}",
                            paths.len()
                        );
                    }
                }
                let pool = Pool::from_f32(&tnc, c).unwrap();
                let borrowed = Samples::from_pool(pool, [t, n, c], SampleLayout::Tnc).unwrap();
                assert_eq!(got(&borrowed), want, "{d} borrowed, k {k}");
            }
        }
    }
}

#[test]
fn logits_and_every_score_in_row_order() {
    let (t, n, c) = (4, 200, 5);
    let mut rng = Rng::new(9);
    let logits: Vec<f32> = (0..t * n * c)
        .map(|_| (2.0 * rng.normal()) as f32)
        .collect();
    let pool = Pool::from_f32(&logits, c).unwrap();
    let s = Samples::from_pool(pool, [t, n, c], SampleLayout::Tnc).unwrap();
    for d in Disagreement::ALL {
        let job = Job::new(d, InputForm::logits(1.5), 10);
        let sel = common::select_cpu(Inputs::samples(&s), &job).unwrap();
        let want = reference(&logits, (t, n, c), &job, d);
        let got: Vec<(u64, f64)> = sel.entries.iter().map(|e| (e.index, e.score)).collect();
        assert_eq!(got, want, "{d}");
        let every = alpool::score(Inputs::samples(&s), &job).unwrap();
        assert_eq!(every.len(), n);
        for (i, &v) in every.iter().enumerate() {
            let q: Vec<Vec<f64>> = (0..t)
                .map(|k| {
                    common::reference_probs(
                        &logits[(k * n + i) * c..(k * n + i + 1) * c],
                        job.input,
                    )
                })
                .collect();
            assert_eq!(
                v.to_bits(),
                reference_score(d, LogBase::E, &q).to_bits(),
                "{d} row {i}"
            );
        }
    }
}

/// Samples of continuous values: rows 10..20 repeat rows 0..10 (exact
/// ties), and each row of the second half is its twin in the first half
/// with one value one f32 step away, so their BALD differ by far less than
/// the f32 error: only the canonical scores order them.
fn smooth_samples(t: usize, n: usize, c: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let mut out = vec![0f32; t * n * c];
    let half = n / 2;
    for s in 0..t {
        for i in 0..half {
            let w: Vec<f64> = (0..c).map(|_| rng.uniform().powi(3) + 1e-4).collect();
            let sum: f64 = w.iter().sum();
            for (j, x) in w.iter().enumerate() {
                out[(s * n + i) * c + j] = (x / sum) as f32;
            }
        }
        for i in 10..20.min(half) {
            let (from, to) = ((s * n + i - 10) * c, (s * n + i) * c);
            out.copy_within(from..from + c, to);
        }
        for i in half..n {
            let (from, to) = ((s * n + i - half) * c, (s * n + i) * c);
            out.copy_within(from..from + c, to);
        }
    }
    for i in half..n {
        let at = ((rng.below(t as u64) as usize) * n + i) * c + rng.below(c as u64) as usize;
        out[at] = match rng.below(2) {
            0 => out[at].next_up(),
            _ => out[at].next_down(),
        };
    }
    out
}

/// N copies of one row's samples, each with its samples in its own order
/// (the f32 sums round differently, the exact ones barely differ) and
/// most with a value or two some f32 steps away: their f32 scores fall
/// within a few steps of each other, in an order of their own, so the
/// GPU's radix cut narrows to single keys and only the proven interval
/// keeps the canonical best among the candidates.
fn near_copies(t: usize, n: usize, c: usize, seed: u64) -> Vec<f32> {
    let base = smooth_samples(t, 2, c, seed);
    let mut rng = Rng::new(seed ^ 0x5eed);
    let mut out = vec![0f32; t * n * c];
    for i in 0..n {
        let mut order: Vec<usize> = (0..t).collect();
        for j in (1..t).rev() {
            order.swap(j, rng.below(j as u64 + 1) as usize);
        }
        for (s, &from) in order.iter().enumerate() {
            let (from, to) = (from * 2 * c, (s * n + i) * c);
            out[to..to + c].copy_from_slice(&base[from..from + c]);
        }
    }
    for i in 0..n {
        for _ in 0..rng.below(3) {
            let at = ((rng.below(t as u64) as usize) * n + i) * c + rng.below(c as u64) as usize;
            for _ in 0..1 + rng.below(3) {
                out[at] = match rng.below(2) {
                    0 => out[at].next_up(),
                    _ => out[at].next_down(),
                };
            }
        }
    }
    out
}

/// Samples a hair from uniform: every entropy sits on the flat top of
/// its curve, where rows' scores differ by less than the f32 error.
fn near_uniform(t: usize, n: usize, c: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(t * n * c);
    for _ in 0..t * n {
        let w: Vec<f64> = (0..c).map(|_| 1.0 + 1e-3 * rng.uniform()).collect();
        let sum: f64 = w.iter().sum();
        out.extend(w.iter().map(|x| (x / sum) as f32));
    }
    out
}

#[test]
fn the_gpu_strategies_equal_the_cpu() {
    let Some(g) = common::gpu() else { return };
    let dir = tempfile::tempdir().unwrap();
    // (T, N, C, samples, whether the kernel must leave most rows out at
    // small k: not where ties or near-copies crowd the top, nor under the
    // 1,024 rows the radix select leaves in its last bucket).
    let cases = [
        (2, 300, 3, grid_samples(2, 300, 3, 1), false),
        (5, 257, 4, grid_samples(5, 257, 4, 2), false),
        (20, 2000, 10, smooth_samples(20, 2000, 10, 3), true),
        (3, 500, 2, smooth_samples(3, 500, 2, 4), false),
        (6, 3000, 5, near_copies(6, 3000, 5, 6), false),
        (4, 3000, 3, near_uniform(4, 3000, 3, 7), false),
        // Sixty samples summed in each row's own order: the f32 scores
        // wander by several steps, the exact ones barely differ.
        (60, 3000, 4, near_copies(60, 3000, 4, 9), false),
        // More samples than the vote kernel holds: those rows go to the
        // host.
        (70, 200, 3, grid_samples(70, 200, 3, 8), false),
    ];
    for (t, n, c, tnc, filters) in cases {
        let files = layouts(dir.path(), &tnc, (t, n, c));
        // The near-tie pools are large: one layout, mapped, and no chunks
        // of a few rows (the small pools cover those).
        let big = n >= 3000;
        let files = if big { &files[..1] } else { &files[..] };
        let reads: &[ReadPath] = match big {
            true => &[ReadPath::Map],
            false => &[ReadPath::Map, ReadPath::Read],
        };
        for d in Disagreement::ALL {
            for (k, chunk, base) in [
                (1, 0, LogBase::E),
                (17, 7, LogBase::Two),
                (100, 64, LogBase::E),
                (n + 3, 0, LogBase::Ten),
            ] {
                let mut job = Job::new(d, InputForm::probs(), k).log_base(base);
                job.chunk_rows = if big { chunk * 16 } else { chunk };
                job.exclusions = Exclusions::new(vec![0, 5, (n - 1) as u64]);
                for (paths, layout) in files {
                    for &read in reads {
                        let s = Samples::open(paths, *layout, read).unwrap();
                        let want = common::select_cpu(Inputs::samples(&s), &job).unwrap();
                        let (got, phases) =
                            common::select_gpu(&g, Inputs::samples(&s), &job).unwrap();
                        let what = format!("{d} T={t} C={c} {layout:?} {read:?} k {k}");
                        assert_eq!(got.entries, want.entries, "{what}");
                        // The kernel filtered: far fewer than n rows came
                        // back where k is small.
                        if filters && k <= 17 && chunk == 0 {
                            assert!(phases.candidates < n as u64 / 2, "{what}: {phases:?}");
                        }
                    }
                }
            }
        }
    }
    // float16 samples (widened exactly), and a bad value named as the CPU
    // names it.
    let (t, n, c) = (4, 400, 5);
    let tnc = smooth_samples(t, n, c, 5);
    let half: Vec<half::f16> = tnc.iter().map(|&x| half::f16::from_f32(x)).collect();
    let p = dir.path().join("half.npy");
    npy::save(&p, &[t, n, c], &half).unwrap();
    let s = Samples::open(&[&p], SampleLayout::Tnc, ReadPath::Auto).unwrap();
    let job = Job::new(Disagreement::Bald, InputForm::probs_f16(), 9);
    let want = common::select_cpu(Inputs::samples(&s), &job).unwrap();
    let got = common::select_gpu(&g, Inputs::samples(&s), &job).unwrap().0;
    assert_eq!(got.entries, want.entries, "float16");
    for (at, v) in [((2 * n + 123) * c + 1, f32::NAN), ((n + 300) * c, 0.5)] {
        let mut bad = tnc.clone();
        bad[at] += v;
        let p = dir.path().join("bad.npy");
        npy::save(&p, &[t, n, c], &bad).unwrap();
        fails_alike(&g, &p, Disagreement::Bald);
    }
    // One sample is no disagreement: refused alike.
    let one = Samples::from_pool(
        Pool::from_f32(&tnc[..n * c], c).unwrap(),
        [1, n, c],
        SampleLayout::Tnc,
    )
    .unwrap();
    let job = Job::new(Disagreement::Bald, InputForm::probs(), 9);
    let cpu = common::select_cpu(Inputs::samples(&one), &job).unwrap_err();
    let gpu = common::select_gpu(&g, Inputs::samples(&one), &job).unwrap_err();
    assert_eq!(gpu.to_string(), cpu.to_string());
    assert!(cpu.to_string().contains("T = 1"), "{cpu}");
}

/// The canonical values of `tnc` (T x N x C) moved so that float32 cannot
/// hold them: each value times 1 + 1e-10·(a row's own factor), so that
/// some rows' largest two values differ by less than float32 resolves,
/// the larger one later; as float64.
fn off_float32(tnc: &[f32], c: usize, seed: u64) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    let mut out: Vec<f64> = tnc.iter().map(|&x| x as f64).collect();
    for s in out.chunks_exact_mut(c) {
        match rng.below(3) {
            // The largest two a hair apart, the larger later.
            0 if c > 1 => {
                let j = 1 + rng.below(c as u64 - 1) as usize;
                let top = s.iter().cloned().fold(0.0, f64::max);
                s[j - 1] = top;
                s[j] = top * (1.0 + 1e-12);
                let sum: f64 = s.iter().sum();
                s.iter_mut().for_each(|x| *x /= sum);
            }
            _ => s.iter_mut().for_each(|x| *x *= 1.0 + 1e-10 * rng.uniform()),
        }
    }
    out
}

#[test]
fn float64_renormalized_and_logit_samples_on_the_gpu_equal_the_cpu() {
    // Each goes up as its canonical values rounded to float32 (the
    // largest of a sample raised one ulp where rounding ties it with an
    // earlier one): the votes are exact, the other scores within the
    // rounding's bound, and the host decides the candidates canonically.
    let Some(g) = common::gpu() else { return };
    let dir = tempfile::tempdir().unwrap();
    for (t, n, c, seed) in [(5, 700, 4, 21), (20, 1500, 10, 22), (3, 400, 2, 23)] {
        let tnc = near_copies(t, n, c, seed);
        let f64s = off_float32(&tnc, c, seed);
        let p64 = dir.path().join("f64.npy");
        npy::save(&p64, &[t, n, c], &f64s).unwrap();
        // Renormalized: each row scaled by its own factor; logits: ln p
        // plus a per-row shift.
        let mut rng = Rng::new(seed ^ 9);
        let (mut scaled, mut logits) = (tnc.clone(), tnc.clone());
        for (a, b) in scaled.chunks_exact_mut(c).zip(logits.chunks_exact_mut(c)) {
            let (f, shift) = (0.5 + rng.uniform() as f32, 3.0 * rng.uniform() as f32);
            a.iter_mut().for_each(|x| *x *= f);
            b.iter_mut().for_each(|x| *x = x.max(1e-30).ln() + shift);
        }
        let (p_scaled, p_logits) = (dir.path().join("scaled.npy"), dir.path().join("logits.npy"));
        npy::save(&p_scaled, &[t, n, c], &scaled).unwrap();
        npy::save(&p_logits, &[t, n, c], &logits).unwrap();
        let forms = [
            (&p64, InputForm::probs(), "float64"),
            (&p_scaled, InputForm::model_output(), "renormalized"),
            (&p_logits, InputForm::logits(0.7), "logits"),
        ];
        for (path, form, what) in forms {
            let s = Samples::open(&[path], SampleLayout::Tnc, ReadPath::Auto).unwrap();
            for d in Disagreement::ALL {
                for (k, chunk) in [(1, 0), (17, 7), (n + 3, 0)] {
                    let mut job = Job::new(d, form, k);
                    job.chunk_rows = chunk;
                    job.exclusions = Exclusions::new(vec![0, 5, (n - 1) as u64]);
                    let want = common::select_cpu(Inputs::samples(&s), &job).unwrap();
                    let got = common::select_gpu(&g, Inputs::samples(&s), &job).unwrap().0;
                    assert_eq!(got.entries, want.entries, "{what} {d} T={t} C={c} k {k}");
                }
            }
        }
    }
    // The kernel filters rounded rows too: at small k most rows stay on
    // the device (a tolerance that left them undecided sent all to the host).
    let (t, n, c) = (20, 2000, 10);
    let tnc = smooth_samples(t, n, c, 3);
    let f64s: Vec<f64> = tnc.iter().map(|&x| x as f64).collect();
    let p64 = dir.path().join("smooth64.npy");
    npy::save(&p64, &[t, n, c], &f64s).unwrap();
    let p32 = dir.path().join("smooth32.npy");
    npy::save(&p32, &[t, n, c], &tnc).unwrap();
    for (path, form) in [
        (&p64, InputForm::probs()),
        (&p32, InputForm::model_output()),
    ] {
        let s = Samples::open(&[path], SampleLayout::Tnc, ReadPath::Auto).unwrap();
        for d in [
            Disagreement::Bald,
            Disagreement::KlMax,
            Disagreement::MeanStd,
        ] {
            let job = Job::new(d, form, 17);
            let want = common::select_cpu(Inputs::samples(&s), &job).unwrap();
            let (got, phases) = common::select_gpu(&g, Inputs::samples(&s), &job).unwrap();
            assert_eq!(got.entries, want.entries, "{d} {form:?}");
            assert!(phases.candidates < n as u64 / 2, "{d} {form:?}: {phases:?}");
        }
    }
    // A bad float64 value is named as the CPU names it.
    let (t, n, c) = (4, 300, 3);
    let mut f64s = off_float32(&smooth_samples(t, n, c, 5), c, 5);
    f64s[(2 * n + 123) * c + 1] = f64::NAN;
    let p = dir.path().join("bad64.npy");
    npy::save(&p, &[t, n, c], &f64s).unwrap();
    fails_alike(&g, &p, Disagreement::VoteEntropy);
}

/// `d` over the samples at `path` fails on the GPU with the CPU's message.
fn fails_alike(g: &alpool::backend::gpu::Gpu, path: &Path, d: Disagreement) {
    let s = Samples::open(&[path], SampleLayout::Tnc, ReadPath::Auto).unwrap();
    let mut job = Job::new(d, InputForm::probs(), 9);
    job.chunk_rows = 128;
    let cpu = common::select_cpu(Inputs::samples(&s), &job).unwrap_err();
    let gpu = common::select_gpu(g, Inputs::samples(&s), &job).unwrap_err();
    assert_eq!(gpu.to_string(), cpu.to_string());
}

#[test]
fn bad_samples_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let (t, n, c) = (3, 40, 3);
    let mut tnc = grid_samples(t, n, c, 4);
    tnc[(2 * n + 17) * c + 1] = f32::NAN;
    let p = dir.path().join("bad.npy");
    npy::save(&p, &[t, n, c], &tnc).unwrap();
    let s = Samples::open(&[&p], SampleLayout::Tnc, ReadPath::Auto).unwrap();
    let job = Job::new(Disagreement::Bald, InputForm::probs(), 5);
    let e = common::select_cpu(Inputs::samples(&s), &job).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(&e, Error::BadSample(b) if b.sample == 2 && b.global == 17),
        "{msg}"
    );
    assert!(
        msg.contains("bad.npy") && msg.contains("[2, 17]") && msg.contains("NaN"),
        "{msg}"
    );
    // A row that is not probabilities, in a file of its own sample.
    let files = layouts(dir.path(), &grid_samples(t, n, c, 5), (t, n, c));
    let (each, _) = &files[2];
    let mut second = grid_samples(1, n, c, 6);
    second[9 * c] += 0.5;
    npy::save(&each[1], &[n, c], &second).unwrap();
    let s = Samples::open(each, SampleLayout::Tnc, ReadPath::Auto).unwrap();
    let msg = common::select_cpu(Inputs::samples(&s), &job)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("s1.npy") && msg.contains("row 9") && msg.contains("sum to"),
        "{msg}"
    );
    // Sample files of different rows, a 3-D file with another, 4-D, T = 1.
    let short = dir.path().join("short.npy");
    npy::save(&short, &[n - 1, c], &grid_samples(1, n - 1, c, 7)).unwrap();
    let msg = Samples::open(&[&each[0], &short], SampleLayout::Tnc, ReadPath::Auto)
        .err()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("short.npy") && msg.contains("same rows"),
        "{msg}"
    );
    let msg = Samples::open(&[&p, &each[0]], SampleLayout::Tnc, ReadPath::Auto)
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("give it alone"), "{msg}");
    let four = dir.path().join("four.npy");
    npy::save(&four, &[1, t, n, c], &tnc).unwrap();
    let msg = Samples::open(&[&four], SampleLayout::Tnc, ReadPath::Auto)
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("four.npy") && msg.contains("2-D"), "{msg}");
    let s = Samples::open(&each[..1], SampleLayout::Tnc, ReadPath::Auto).unwrap();
    let msg = common::select_cpu(Inputs::samples(&s), &job)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("at least 2 samples") && msg.contains("T = 1"),
        "{msg}"
    );
    let consensus = Job::new(Disagreement::ConsensusEntropy, InputForm::probs(), 5);
    assert_eq!(
        common::select_cpu(Inputs::samples(&s), &consensus)
            .unwrap()
            .entries
            .len(),
        5
    );
    // Renormalized samples run on the GPU too, with the CPU's picks.
    if common::gpu().is_some() {
        let renormalized = Job::new(Disagreement::ConsensusEntropy, InputForm::model_output(), 5);
        let on = |device| alpool::select(Inputs::samples(&s), &renormalized, &Run::on(device));
        let (cpu, gpu) = (on(Device::Cpu).unwrap(), on(Device::Gpu).unwrap());
        assert_eq!(gpu.selection.entries, cpu.selection.entries);
    }
}

#[test]
fn the_cli_reads_every_layout_and_names_missing_samples() {
    let dir = tempfile::tempdir().unwrap();
    let (t, n, c) = (5, 120, 4);
    let tnc = grid_samples(t, n, c, 8);
    let files = layouts(dir.path(), &tnc, (t, n, c));
    let run = |extra: &[&str]| {
        let mut args = vec!["select", "-s", "bald", "-k", "12"];
        args.extend_from_slice(extra);
        let o = common::alpool(&args);
        assert!(o.status.success(), "{}", common::stderr(&o));
        common::stdout(&o)
    };
    let p = |i: usize| {
        files[i]
            .0
            .iter()
            .map(|x| x.to_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let (a, b, each) = (p(0), p(1), p(2));
    let want = run(&["--samples", &a[0]]);
    assert_eq!(run(&["--samples", &b[0], "--layout", "ntc"]), want);
    let mut args = vec!["--samples"];
    args.extend(each.iter().map(String::as_str));
    assert_eq!(run(&args), want);
    let job = Job::new(Disagreement::Bald, InputForm::probs(), 12);
    let top: Vec<String> = reference(&tnc, (t, n, c), &job, Disagreement::Bald)
        .iter()
        .map(|(i, _)| i.to_string())
        .collect();
    let rows: Vec<String> = want
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().to_string())
        .collect();
    assert_eq!(rows, top);
    let o = common::alpool(&["select", "-s", "bald", "-k", "3"]);
    assert!(
        common::stderr(&o).contains("bald needs T samples of the probabilities: --samples"),
        "{}",
        common::stderr(&o)
    );
    let o = common::alpool(&["select", &each[0], "-s", "margin", "--samples", &a[0]]);
    assert!(
        common::stderr(&o).contains("margin does not read samples"),
        "{}",
        common::stderr(&o)
    );
}

/// Each machine writes its shard's part from its own rows' samples
/// (`--row-offset`), and `alpool merge` gives the whole pool's selection,
/// ties across the cuts included.
#[test]
fn cli_parts_of_shards_merge_into_the_whole_selection() {
    let dir = tempfile::tempdir().unwrap();
    let (t, n, c, k) = (4, 150, 3, 17);
    let tnc = grid_samples(t, n, c, 9);
    let whole = dir.path().join("whole.npy");
    npy::save(&whole, &[t, n, c], &tnc).unwrap();
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let ks = k.to_string();
    // `alpool select -s STRATEGY -k K --samples FILE EXTRA…`, its stdout.
    let select = |strategy: &str, file: &Path, extra: &[&str]| {
        let file = path(file);
        let mut args = vec!["select", "-s", strategy, "-k", &ks, "--samples", &file];
        args.extend_from_slice(extra);
        let o = common::alpool(&args);
        assert!(o.status.success(), "{}", common::stderr(&o));
        common::stdout(&o)
    };
    let want = select("bald", &whole, &[]);
    let mut parts = Vec::new();
    for (i, (a, b)) in [(0, 41), (41, 99), (99, n)].into_iter().enumerate() {
        let mut shard = Vec::with_capacity(t * (b - a) * c);
        for s in 0..t {
            shard.extend_from_slice(&tnc[(s * n + a) * c..(s * n + b) * c]);
        }
        let file = dir.path().join(format!("shard-{i}.npy"));
        npy::save(&file, &[t, b - a, c], &shard).unwrap();
        let part = path(&dir.path().join(format!("shard-{i}.alpart")));
        select(
            "bald",
            &file,
            &["--row-offset", &a.to_string(), "--out", &part],
        );
        parts.push(part);
    }
    let mut args = vec!["merge", "-k", &ks];
    args.extend(parts.iter().map(String::as_str));
    let o = common::alpool(&args);
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert_eq!(common::stdout(&o), want);
    // A part of another strategy does not belong with these.
    let other = path(&dir.path().join("other.alpart"));
    select("kl-max", &whole, &["--out", &other]);
    let o = common::alpool(&["merge", "-k", &ks, &parts[0], &other]);
    assert!(!o.status.success());
    assert!(
        common::stderr(&o).contains("kl-max"),
        "{}",
        common::stderr(&o)
    );
}

/// N x D features uniform in [−1, 1) saved as `dir/x.npy`, and labels
/// from the first feature (C classes).
fn feature_file(
    dir: &Path,
    (n, d, c): (usize, usize, usize),
    seed: u64,
) -> (Vec<f32>, Vec<usize>, PathBuf) {
    let mut rng = Rng::new(seed);
    let x: Vec<f32> = (0..n * d)
        .map(|_| rng.uniform() as f32 * 2.0 - 1.0)
        .collect();
    let y: Vec<usize> = (0..n)
        .map(|i| ((x[i * d] + 1.0) * c as f32 / 2.0) as usize % c)
        .collect();
    let path = dir.join("x.npy");
    npy::save(&path, &[n, d], &x).unwrap();
    (x, y, path)
}

/// A committee scoring feature files block by block selects and scores
/// what `--samples` of its members' predictions does, exactly: every
/// strategy, blocks far smaller than the pool, exclusions.
#[test]
fn a_committee_over_features_equals_the_samples_of_its_predictions() {
    use alpool::features::FeaturePool;
    use alpool::learner::{Mlp, MlpConfig};
    let (n, d, c) = (3000usize, 8usize, 4usize);
    let dir = tempfile::tempdir().unwrap();
    let (x, y, path) = feature_file(dir.path(), (n, d, c), 11);
    let models: Vec<Mlp> = (0..3u64)
        .map(|s| {
            let cfg = MlpConfig {
                hidden: vec![16],
                epochs: 2,
                min_steps: 20,
                seed: s,
                ..MlpConfig::default()
            };
            let rows: Vec<usize> = (s as usize * 300..s as usize * 300 + 400).collect();
            let xs: Vec<f32> = rows
                .iter()
                .flat_map(|&r| &x[r * d..(r + 1) * d])
                .copied()
                .collect();
            let ys: Vec<usize> = rows.iter().map(|&r| y[r]).collect();
            let mut m = Mlp::new(d, c, cfg).unwrap();
            m.fit(&xs, &ys).unwrap();
            m
        })
        .collect();
    let features = FeaturePool::open(&[&path]).unwrap().with_block_rows(256);
    let mut all = Vec::new();
    for m in &models {
        all.extend(m.predict_proba(&x).unwrap());
    }
    let pool = Pool::from_f32(&all, c).unwrap();
    let samples = Samples::from_pool(pool, [3, n, c], SampleLayout::Tnc).unwrap();
    let excluded: Vec<u64> = (0..n as u64).filter(|r| r % 7 == 3).collect();
    for dis in Disagreement::ALL {
        let job =
            Job::new(dis, InputForm::model_output(), 40).exclude(Exclusions::new(excluded.clone()));
        let run = Run::on(Device::Cpu);
        let want = alpool::select(Inputs::samples(&samples), &job, &run).unwrap();
        let got = alpool::select(Inputs::committee(&models, &features), &job, &run).unwrap();
        let key = |s: &alpool::Selection| -> Vec<(u64, u64)> {
            s.entries
                .iter()
                .map(|e| (e.index, e.score.to_bits()))
                .collect()
        };
        assert_eq!(key(&got.selection), key(&want.selection), "{dis:?}");
        let whole = alpool::score(Inputs::samples(&samples), &job).unwrap();
        let blocks = alpool::score(Inputs::committee(&models, &features), &job).unwrap();
        assert_eq!(whole, blocks, "{dis:?}: scores");
    }
    // One model is no committee.
    let job = Job::new(Disagreement::Bald, InputForm::model_output(), 5);
    let one = alpool::select(
        Inputs::committee(&models[..1], &features),
        &job,
        &Run::on(Device::Cpu),
    );
    let err = one.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("cannot disagree"), "{err}");
}

/// splitmix64, written here from its definition (Steele et al. 2014).
fn splitmix(z: u64) -> u64 {
    let mut z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One MC-dropout pass of a row as documented, in f64: after each hidden
/// ReLU, unit u of layer l drops (in every row) when (h >> 40)·2⁻²⁴ <
/// rate, h the documented hash; kept units scale by 1 / (1 − rate);
/// softmax last.
fn mc_reference(m: &alpool::learner::Mlp, row: &[f32], pass: u64, seed: u64) -> Vec<f64> {
    let rate = m.config().dropout as f64;
    let layers = m.layers();
    let mut h: Vec<f64> = row.iter().map(|&v| v as f64).collect();
    for (l, layer) in layers.iter().enumerate() {
        let mut z: Vec<f64> = (0..layer.out)
            .map(|o| {
                let w = &layer.w[o * layer.inp..(o + 1) * layer.inp];
                layer.b[o] as f64 + w.iter().zip(&h).map(|(&w, &x)| w as f64 * x).sum::<f64>()
            })
            .collect();
        if l + 1 < layers.len() {
            for (u, v) in z.iter_mut().enumerate() {
                let key = splitmix(splitmix(splitmix(seed) ^ pass) ^ ((l as u64) << 32 | u as u64));
                let drop = ((key >> 40) as f32 * (1.0 / 16_777_216.0)) < rate as f32;
                *v = if drop { 0.0 } else { v.max(0.0) / (1.0 - rate) };
            }
        }
        h = z;
    }
    let max = h.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = h.iter().map(|v| (v - max).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

/// MC dropout over feature files: each pass's masks are the documented
/// ones (a naive f64 forward agrees to float32 rounding), a row's pass is
/// the same bits in any block, and the selection equals the one over
/// `--samples` of those passes, exactly.
#[test]
fn mc_dropout_passes_are_the_documented_masks_and_select_exactly() {
    use alpool::features::FeaturePool;
    use alpool::learner::{McPass, Mlp, MlpConfig, Scale};
    let (n, d, c, t, seed) = (1500usize, 6usize, 3usize, 5usize, 9u64);
    let dir = tempfile::tempdir().unwrap();
    let (x, y, path) = feature_file(dir.path(), (n, d, c), 21);
    let cfg = MlpConfig {
        hidden: vec![24, 12],
        dropout: 0.3,
        epochs: 3,
        min_steps: 50,
        scale: Scale::None,
        ..MlpConfig::default()
    };
    let mut model = Mlp::new(d, c, cfg.clone()).unwrap();
    model.fit(&x[..600 * d], &y[..600]).unwrap();
    // Each pass over the whole matrix at once (one mask for every row, so
    // blocks of the pool must give the same bits).
    let mut all = vec![0f32; t * n * c];
    for (pass, out) in all.chunks_mut(n * c).enumerate() {
        let mc = McPass {
            pass: pass as u64,
            seed,
            rate: 0.3,
            softmax: true,
        };
        model
            .predict_mc_filled(
                out,
                &|first, count, _| Ok(Some(&x[first * d..(first + count) * d])),
                mc,
            )
            .unwrap();
        for g in (0..n).step_by(7) {
            let want = mc_reference(&model, &x[g * d..(g + 1) * d], pass as u64, seed);
            for (a, b) in out[g * c..(g + 1) * c].iter().zip(&want) {
                assert!(
                    (*a as f64 - b).abs() < 1e-5,
                    "pass {pass} row {g}: {a} vs {b}"
                );
            }
        }
    }
    // The passes differ: dropout is on.
    assert_ne!(all[..n * c], all[n * c..2 * n * c]);
    // A pass is one thinned network: two copies of a row are the same
    // sample in every pass (BatchBALD's joint entropy sees them as one
    // model's predictions), wherever they stand in the pool.
    let copies: Vec<f32> = [5, 5, 1, 5]
        .iter()
        .flat_map(|&r| x[r * d..(r + 1) * d].to_vec())
        .collect();
    for pass in 0..t {
        let mc = McPass {
            pass: pass as u64,
            seed,
            rate: 0.3,
            softmax: true,
        };
        let mut out = vec![0f32; 4 * c];
        model
            .predict_mc_filled(&mut out, &|_, _, _| Ok(Some(&copies)), mc)
            .unwrap();
        assert_eq!(out[..c], all[pass * n * c + 5 * c..pass * n * c + 6 * c]);
        assert_eq!(out[..c], out[c..2 * c]);
        assert_eq!(out[..c], out[3 * c..]);
    }
    let pool = Pool::from_f32(&all, c).unwrap();
    let samples = Samples::from_pool(pool, [t, n, c], SampleLayout::Tnc).unwrap();
    let features = FeaturePool::open(&[&path]).unwrap().with_block_rows(256);
    let excluded = Exclusions::new((0..n as u64).filter(|r| r % 11 == 2).collect());
    for dis in [
        Disagreement::Bald,
        Disagreement::VariationRatio,
        Disagreement::MeanStd,
    ] {
        let job = Job::new(dis, InputForm::model_output(), 30).exclude(excluded.clone());
        let run = Run::on(Device::Cpu);
        let want = alpool::select(Inputs::samples(&samples), &job, &run).unwrap();
        let got =
            alpool::select(Inputs::mc_dropout(&model, &features, t, seed), &job, &run).unwrap();
        let key = |s: &alpool::Selection| -> Vec<(u64, u64)> {
            s.entries
                .iter()
                .map(|e| (e.index, e.score.to_bits()))
                .collect()
        };
        assert_eq!(key(&got.selection), key(&want.selection), "{dis:?}");
        let scores = alpool::score(Inputs::mc_dropout(&model, &features, t, seed), &job).unwrap();
        assert_eq!(
            scores,
            alpool::score(Inputs::samples(&samples), &job).unwrap()
        );
    }
    // BatchBALD over the passes (written once, beside the features, then
    // read mapped) picks what it picks over the same passes given whole;
    // and over a committee of models, what it picks over their outputs.
    let batchbald = |k| {
        Job::new(
            alpool::BatchStrategy::BatchBald,
            InputForm::model_output(),
            k,
        )
        .seed(3)
        .exclude(excluded.clone())
    };
    let run = Run::on(Device::Cpu);
    let want = alpool::select(Inputs::samples(&samples), &batchbald(8), &run).unwrap();
    let got = alpool::select(
        Inputs::mc_dropout(&model, &features, t, seed),
        &batchbald(8),
        &run,
    );
    assert_eq!(got.unwrap().selection.entries, want.selection.entries);
    let members: Vec<Mlp> = (0..3u64)
        .map(|m| {
            let mut member = Mlp::new(
                d,
                c,
                MlpConfig {
                    seed: 40 + m,
                    ..cfg.clone()
                },
            )
            .unwrap();
            member.fit(&x[..400 * d], &y[..400]).unwrap();
            member
        })
        .collect();
    let outputs: Vec<f32> = members
        .iter()
        .flat_map(|m| m.predict_proba(&x).unwrap())
        .collect();
    let pool = Pool::from_f32(&outputs, c).unwrap();
    let given = Samples::from_pool(pool, [3, n, c], SampleLayout::Tnc).unwrap();
    let want_c = alpool::select(Inputs::samples(&given), &batchbald(6), &run).unwrap();
    let got = alpool::select(Inputs::committee(&members, &features), &batchbald(6), &run);
    assert_eq!(got.unwrap().selection.entries, want_c.selection.entries);
    // On the GPU, over both kinds of samples a model makes: the same.
    if let Some(g) = common::gpu() {
        let mc = Inputs::mc_dropout(&model, &features, t, seed);
        let got = common::select_gpu(&g, mc, &batchbald(8)).unwrap().0;
        assert_eq!(got.entries, want.selection.entries, "MC dropout, GPU");
        let committee = Inputs::committee(&members, &features);
        let got = common::select_gpu(&g, committee, &batchbald(6)).unwrap().0;
        assert_eq!(got.entries, want_c.selection.entries, "committee, GPU");
    }
    // Another seed, other masks; one pass, or no dropout, is refused.
    let job = Job::new(Disagreement::Bald, InputForm::model_output(), 30);
    let run = Run::on(Device::Cpu);
    let a = alpool::select(Inputs::mc_dropout(&model, &features, t, 1), &job, &run).unwrap();
    let b = alpool::select(Inputs::mc_dropout(&model, &features, t, 2), &job, &run).unwrap();
    assert_ne!(a.selection.indices(), b.selection.indices());
    let one = alpool::select(Inputs::mc_dropout(&model, &features, 1, 1), &job, &run);
    assert!(one.err().unwrap().to_string().contains("at least 2 passes"));
    // The command line reads the same passes.
    let saved = dir.path().join("m.safetensors");
    model.save(&saved).unwrap();
    let o = common::alpool(&[
        "select",
        "-q",
        "--model",
        saved.to_str().unwrap(),
        "--features",
        path.to_str().unwrap(),
        "--mc-samples",
        "5",
        "--seed",
        "1",
        "-s",
        "bald",
        "-k",
        "30",
    ]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let rows: Vec<u64> = common::stdout(&o)
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(rows, a.selection.indices());
    let plain = Mlp::new(
        d,
        c,
        MlpConfig {
            dropout: 0.0,
            ..cfg
        },
    )
    .unwrap();
    let none = alpool::select(Inputs::mc_dropout(&plain, &features, t, 1), &job, &run);
    let e = none.err().unwrap().to_string();
    assert!(e.contains("trained with dropout 0"), "{e}");
}

/// The row-wise strategies over a model's MC-dropout passes on the GPU
/// (its layers with the CPU's masks, each pass a sample plane, the host
/// re-scoring candidates with its own passes), and over a committee's
/// members (each its own layers there), pick what the CPU picks:
/// every strategy, float32 features over two uneven files with a scaler,
/// uint8 images, a network without hidden layers (every pass the same,
/// so every score ties), k of 1, 17 and N + 3, chunks of 97 rows,
/// exclusions, a stochastic batch; and the kernel keeps filtering.
#[test]
fn mc_dropout_passes_and_committees_on_the_gpu_equal_the_cpu() {
    use alpool::features::FeaturePool;
    use alpool::learner::{Mlp, MlpConfig, Scale};
    use alpool::{Stochastic, StochasticKind};
    let Some(g) = common::gpu() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cases: [(usize, usize, usize, usize, Vec<usize>, bool); 3] = [
        (1500, 6, 3, 5, vec![24, 12], false),
        (1200, 16, 10, 20, vec![40], true),
        (400, 4, 3, 3, vec![], false),
    ];
    for (case, (n, d, c, t, hidden, bytes)) in cases.into_iter().enumerate() {
        let mut rng = Rng::new(70 + case as u64);
        let raw: Vec<u8> = (0..n * d).map(|_| rng.below(256) as u8).collect();
        let x: Vec<f32> = if bytes {
            raw.iter().map(|&v| v as f32 / 255.0).collect()
        } else {
            raw.iter().map(|&v| v as f32 * 0.05 - 6.0).collect()
        };
        let y: Vec<usize> = (0..n).map(|i| raw[i * d] as usize % c).collect();
        let cfg = MlpConfig {
            hidden,
            dropout: 0.3,
            epochs: 3,
            min_steps: 40,
            scale: if bytes { Scale::None } else { Scale::Standard },
            seed: case as u64,
            ..MlpConfig::default()
        };
        let mut model = Mlp::new(d, c, cfg).unwrap();
        model.fit(&x[..n / 2 * d], &y[..n / 2]).unwrap();
        let cut = n / 3;
        let paths = [
            dir.path().join(format!("a{case}.npy")),
            dir.path().join(format!("b{case}.npy")),
        ];
        if bytes {
            let mut b = npy::encode_header(alpool::pool::npy::DType::U8, &[n, d]);
            b.extend_from_slice(&raw);
            std::fs::write(&paths[0], b).unwrap();
        } else {
            npy::save(&paths[0], &[cut, d], &x[..cut * d]).unwrap();
            npy::save(&paths[1], &[n - cut, d], &x[cut * d..]).unwrap();
        }
        let files: Vec<&Path> = if bytes {
            vec![&paths[0]]
        } else {
            vec![&paths[0], &paths[1]]
        };
        let features = FeaturePool::open(&files).unwrap();
        let seed = 5 + case as u64;
        let passes = || Inputs::mc_dropout(&model, &features, t, seed);
        for dis in Disagreement::ALL {
            for (k, chunk) in [(1, 0), (17, 97), (n + 3, 0)] {
                let mut job = Job::new(dis, InputForm::model_output(), k);
                job.chunk_rows = chunk;
                job.exclusions = Exclusions::new(vec![0, 5, (n - 1) as u64]);
                let want = common::select_cpu(passes(), &job).unwrap();
                let (got, phases) = common::select_gpu(&g, passes(), &job).unwrap();
                assert_eq!(got.entries, want.entries, "case {case} {dis} k {k}");
                // The kernel filters (the network without hidden layers
                // ties every row at 0: all are candidates).
                if k == 17 && case < 2 {
                    assert!(phases.candidates < n as u64 / 3, "{dis}: {phases:?}");
                }
            }
        }
        let job = Job::new(Disagreement::Bald, InputForm::model_output(), 25)
            .stochastic(Stochastic::new(StochasticKind::Power, 1.0))
            .seed(3);
        let want = common::select_cpu(passes(), &job).unwrap();
        let got = common::select_gpu(&g, passes(), &job).unwrap().0;
        assert_eq!(got.entries, want.entries, "case {case}, a power batch");
        // A committee of three models, each its own weights on the device.
        let members: Vec<Mlp> = (0..3u64)
            .map(|m| {
                let mut member = Mlp::new(
                    d,
                    c,
                    MlpConfig {
                        seed: 50 + m,
                        dropout: 0.0,
                        ..model.config().clone()
                    },
                )
                .unwrap();
                member.fit(&x[..n / 2 * d], &y[..n / 2]).unwrap();
                member
            })
            .collect();
        for dis in Disagreement::ALL {
            for (k, chunk) in [(17, 97), (n + 3, 0)] {
                let mut job = Job::new(dis, InputForm::model_output(), k);
                job.chunk_rows = chunk;
                job.exclusions = Exclusions::new(vec![1, (n - 2) as u64]);
                let committee = || Inputs::committee(&members, &features);
                let want = common::select_cpu(committee(), &job).unwrap();
                let got = common::select_gpu(&g, committee(), &job).unwrap().0;
                assert_eq!(
                    got.entries, want.entries,
                    "case {case}, committee, {dis} k {k}"
                );
            }
        }
    }
}

#[test]
fn the_bench_times_every_strategy_over_samples_on_each_device() {
    let dir = tempfile::tempdir().unwrap();
    let keep = dir.path().join("s.npy");
    let keep = keep.to_str().unwrap();
    let gpu = common::gpu().is_some();
    let devices = if gpu { "cpu,gpu" } else { "cpu" };
    let args = [
        "bench",
        "--samples",
        "3",
        "--rows",
        "3000",
        "--classes",
        "4",
        "--runs",
        "1",
        "-k",
        "10",
        "--device",
        devices,
        "--keep",
        keep,
    ];
    let o = common::alpool(&args);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let out = common::stdout(&o);
    assert!(out.contains("3 x 3000 rows x 4 classes"), "{out}");
    for d in Disagreement::ALL {
        assert!(out.lines().any(|l| l.starts_with(d.name())), "{d}: {out}");
        if gpu {
            assert!(out.contains(&format!("  gpu {}", d.name())), "{d}: {out}");
        }
    }
    if gpu {
        assert_eq!(out.matches("GPU / CPU =").count(), Disagreement::ALL.len());
    }
    for t in 0..3 {
        assert!(dir.path().join(format!("s.t{t}.npy")).exists());
    }
    let o = common::alpool(&["bench", "--samples", "1", "--rows", "10"]);
    assert!(
        common::stderr(&o).contains("T ≥ 2"),
        "{}",
        common::stderr(&o)
    );
    let o = common::alpool(&["bench", "--samples", "3", "--multilabel"]);
    assert!(common::stderr(&o).contains("cannot be used with"));
}
