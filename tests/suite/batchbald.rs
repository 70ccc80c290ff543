//! BatchBALD against references written from the documented definitions
//! (not the library's code): the joint entropy by brute-force enumeration
//! of every configuration while exact, and batchbald_redux's importance-
//! sampled estimator (its `q_mc / q_m` form, with plain products) over the
//! documented draws beyond the budget; the same picks on every thread
//! count, chunk size and layout; bad requests named.

use crate::common;
use crate::rng::Rng;
use alpool::pool::npy;
use alpool::{
    BatchStrategy, Disagreement, Error, Exclusions, InputForm, Inputs, Job, LogBase, Pool,
    SampleLayout, Samples, Stochastic, StochasticKind,
};

const ONE: f64 = (1u64 << 20) as f64;

/// T x N x C samples (sample-major): rows of a shared mean with noise per
/// sample, some rows exact copies of earlier ones (exact ties).
fn pool(t: usize, n: usize, c: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let centre: Vec<Vec<f64>> = (0..n)
        .map(|_| (0..c).map(|_| rng.normal() * 1.5).collect())
        .collect();
    let copy_of: Vec<usize> = (0..n)
        .map(|i| {
            if i > 2 && rng.below(4) == 0 {
                rng.below(i as u64) as usize
            } else {
                i
            }
        })
        .collect();
    let mut rows = vec![vec![0f32; c]; t * n];
    for s in 0..t {
        for i in 0..n {
            let z: Vec<f64> = centre[i].iter().map(|&m| m + rng.normal()).collect();
            let e: Vec<f64> = z.iter().map(|v| v.exp()).collect();
            let sum: f64 = e.iter().sum();
            // Multiples of 2^-20 summing to exactly 1, so the documented
            // forms agree to rounding (the chain rule assumes each row
            // sums to 1; a float32 softmax misses by up to 1e-7).
            let mut w: Vec<i64> = e.iter().map(|v| (v / sum * ONE).round() as i64).collect();
            let top = (0..c).max_by(|&a, &b| w[a].cmp(&w[b])).unwrap();
            w[top] += ONE as i64 - w.iter().sum::<i64>();
            rows[s * n + i] = w.iter().map(|&v| (v as f64 / ONE) as f32).collect();
        }
    }
    for s in 0..t {
        for i in 0..n {
            rows[s * n + i] = rows[s * n + copy_of[i]].clone();
        }
    }
    rows.concat()
}

/// `q[n][t]`: row n's canonical probabilities under sample t.
fn rows_of(x: &[f32], t: usize, n: usize, c: usize) -> Vec<Vec<Vec<f64>>> {
    (0..n)
        .map(|i| {
            (0..t)
                .map(|s| {
                    let at = (s * n + i) * c;
                    x[at..at + c].iter().map(|&v| v as f64).collect()
                })
                .collect()
        })
        .collect()
}

fn entropy(p: &[f64]) -> f64 {
    let mut s = 0.0;
    for &x in p {
        if x > 0.0 {
            s += x * x.ln();
        }
    }
    -s
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The documented draw of position j of configuration m at `step`.
fn draw(p: &[f64], seed: u64, step: u64, m: u64, j: u64) -> usize {
    let h = mix(mix(mix(mix(seed ^ 0xBB67_AE85_84CA_A73B) ^ step) ^ m) ^ j);
    let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    let total: f64 = p.iter().sum();
    let mut run = 0.0;
    for (c, &v) in p.iter().enumerate() {
        run += v;
        if v > 0.0 && run > u * total {
            return c;
        }
    }
    p.iter().rposition(|&v| v > 0.0).unwrap()
}

/// H(y_S) by enumerating every configuration of the rows `set`.
// The references index as the formulas do.
#[allow(clippy::needless_range_loop)]
fn joint_entropy(q: &[Vec<Vec<f64>>], set: &[usize]) -> f64 {
    let (t, c) = (q[0].len(), q[0][0].len());
    let mut h = 0.0;
    for y in 0..c.pow(set.len() as u32) {
        let mut digits = Vec::new();
        let mut rest = y;
        for _ in set {
            digits.push(rest % c);
            rest /= c;
        }
        let mut prob = 0.0;
        for s in 0..t {
            prob += set
                .iter()
                .zip(&digits)
                .map(|(&r, &d)| q[r][s][d])
                .product::<f64>();
        }
        prob /= t as f64;
        if prob > 0.0 {
            h -= prob * prob.ln();
        }
    }
    h
}

/// batchbald_redux's estimate of H(y_B, y_n) over the documented draws.
#[allow(clippy::needless_range_loop)]
fn sampled_entropy(q: &[Vec<Vec<f64>>], batch: &[usize], n: usize, m: usize, seed: u64) -> f64 {
    let (t, c) = (q[0].len(), q[0][0].len());
    let per = (m / t).max(1);
    let drawn = per * t;
    let mut h = 0.0;
    for cfg in 0..drawn {
        let from = cfg / per;
        let y: Vec<usize> = batch
            .iter()
            .enumerate()
            .map(|(j, &r)| draw(&q[r][from], seed, batch.len() as u64, cfg as u64, j as u64))
            .collect();
        let p_t: Vec<f64> = (0..t)
            .map(|s| batch.iter().zip(&y).map(|(&r, &d)| q[r][s][d]).product())
            .collect();
        let q_m: f64 = p_t.iter().sum::<f64>() / t as f64;
        for k in 0..c {
            let q_mc: f64 = (0..t).map(|s| p_t[s] * q[n][s][k]).sum::<f64>() / t as f64;
            if q_mc > 0.0 {
                h -= q_mc / q_m * q_mc.ln();
            }
        }
    }
    h / drawn as f64
}

/// The greedy batch from the definitions: (row, the batch's information).
fn reference(
    q: &[Vec<Vec<f64>>],
    k: usize,
    budget: usize,
    seed: u64,
    excl: &[usize],
) -> Vec<(u64, f64)> {
    let c = q[0][0].len();
    let cond: Vec<f64> = q
        .iter()
        .map(|r| r.iter().map(|p| entropy(p)).sum::<f64>() / r.len() as f64)
        .collect();
    let mut batch: Vec<usize> = Vec::new();
    let mut out = Vec::new();
    for _ in 0..k {
        let exact = c
            .checked_pow(batch.len() as u32)
            .is_some_and(|m| m <= budget);
        let mut best: Option<(f64, usize)> = None;
        for n in 0..q.len() {
            if batch.contains(&n) || excl.contains(&n) {
                continue;
            }
            let h = if exact {
                let mut set = batch.clone();
                set.push(n);
                joint_entropy(q, &set)
            } else {
                sampled_entropy(q, &batch, n, budget, seed)
            };
            let score = h - cond[n] - batch.iter().map(|&b| cond[b]).sum::<f64>();
            if best.is_none_or(|(b, _)| score > b) {
                best = Some((score, n));
            }
        }
        let (score, n) = best.unwrap();
        batch.push(n);
        out.push((n as u64, score));
    }
    out
}

fn picks(sel: &alpool::Selection) -> Vec<(u64, f64)> {
    sel.entries.iter().map(|e| (e.index, e.score)).collect()
}

fn assert_same(got: &[(u64, f64)], want: &[(u64, f64)], what: &str) {
    let rows = |v: &[(u64, f64)]| v.iter().map(|p| p.0).collect::<Vec<_>>();
    assert_eq!(rows(got), rows(want), "{what}");
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g.1 - w.1).abs() < 1e-9 * (1.0 + w.1.abs()),
            "{what}: {g:?} vs {w:?}"
        );
    }
}

fn job(k: usize, budget: usize, seed: u64) -> Job {
    let mut job = Job::new(BatchStrategy::BatchBald, InputForm::probs(), k).seed(seed);
    job.configurations = budget;
    job
}

#[test]
fn exact_picks_equal_brute_force_enumeration() {
    for case in 0..12u64 {
        let (t, n, c) = (2 + case as usize % 4, 160, 2 + case as usize % 3);
        let x = pool(t, n, c, case);
        let q = rows_of(&x, t, n, c);
        let samples = tnc(&x, [t, n, c]);
        let excl = [3usize, 11];
        let k = 5;
        let job = job(k, 1 << 20, case)
            .exclude(Exclusions::new(excl.iter().map(|&r| r as u64).collect()));
        let sel = common::select_cpu(Inputs::samples(&samples), &job).unwrap();
        assert_same(
            &picks(&sel),
            &reference(&q, k, 1 << 20, case, &excl),
            &format!("case {case}"),
        );
        assert_eq!(sel.excluded, 2);
        // The first pick is BALD's best, with BALD's score.
        let bald = common::select_cpu(
            Inputs::samples(&samples),
            &Job::new(Disagreement::Bald, InputForm::probs(), 1).exclude(job.exclusions.clone()),
        )
        .unwrap();
        assert_eq!(bald.entries[0].index, sel.entries[0].index, "case {case}");
        assert!((bald.entries[0].score - sel.entries[0].score).abs() < 1e-12);
    }
}

#[test]
fn sampled_picks_equal_the_documented_estimator() {
    // (N, budget, k): 3^2 = 9 configurations fit a budget of 10, 27 do
    // not; a budget of 200 takes four exact steps, then draws 200
    // configurations, enough for the engine's grouped bounds.
    for (case, (n, budget, k)) in [
        (20, 10, 6),
        (20, 13, 6),
        (20, 15, 6),
        (300, 200, 9),
        (300, 230, 9),
    ]
    .into_iter()
    .enumerate()
    {
        let case = case as u64;
        let (t, c) = (3 + case as usize % 3, 3);
        let x = pool(t, n, c, 100 + case);
        same_as_reference(&x, [t, n, c], (k, budget, case), "");
    }
}

/// The engine's picks on T x N x C samples `x` against [`reference`]'s,
/// for `k` picks, configuration `budget` and `seed`.
fn same_as_reference(
    x: &[f32],
    [t, n, c]: [usize; 3],
    (k, budget, seed): (usize, usize, u64),
    what: &str,
) {
    let q = rows_of(x, t, n, c);
    let samples = tnc(x, [t, n, c]);
    let sel = common::select_cpu(Inputs::samples(&samples), &job(k, budget, seed)).unwrap();
    assert_same(
        &picks(&sel),
        &reference(&q, k, budget, seed, &[]),
        &format!("{what}case {seed}"),
    );
}

/// `pool`, with its second half near-copies of its first: each a copy
/// with 2^-20 to 3·2^-20 of one sample's mass moved between two classes,
/// so that the copies' gains part by far less than the fast path's
/// interval (about 1e-5 nats) and only the canonical gains order them.
fn near_copies(t: usize, n: usize, c: usize, seed: u64) -> Vec<f32> {
    let mut x = pool(t, n, c, seed);
    for i in n / 2..n {
        let (from, s) = (i - n / 2, i % t);
        for u in 0..t {
            let (dst, src) = ((u * n + i) * c, (u * n + from) * c);
            let row: Vec<f32> = x[src..src + c].to_vec();
            x[dst..dst + c].copy_from_slice(&row);
        }
        let at = (s * n + i) * c;
        let row = &mut x[at..at + c];
        let hi = (0..c).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
        let lo = (0..c).min_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
        let d = (1 + i % 3) as f32 / ONE as f32;
        if hi != lo && row[hi] >= d {
            row[hi] -= d;
            row[lo] += d;
        }
    }
    x
}

#[test]
fn near_ties_are_ordered_by_the_canonical_gain() {
    // Exact steps (budget 2^20) and sampled ones (budget 200), at two
    // class counts; each case's picks against the references.
    for (case, (t, n, c, budget, k)) in [
        (4, 160, 3, 1 << 20, 5),
        (5, 160, 2, 1 << 20, 6),
        (4, 300, 3, 200, 9),
        (6, 240, 4, 300, 8),
    ]
    .into_iter()
    .enumerate()
    {
        let case = case as u64;
        let x = near_copies(t, n, c, 40 + case);
        same_as_reference(&x, [t, n, c], (k, budget, case), "near copies, ");
    }
}

/// The k-th permutation of 0..c (factorial number system).
fn permutation(mut k: usize, c: usize) -> Vec<usize> {
    let mut left: Vec<usize> = (0..c).collect();
    let mut out = Vec::with_capacity(c);
    for i in (1..=c).rev() {
        let f: usize = (1..i).product();
        out.push(left.remove(k / f % i));
        k %= f;
    }
    out
}

#[test]
fn picks_equal_every_row_scored_canonically() {
    // Hundreds of rows tied with the best, more than the engine works on
    // at once: (a) copies of a few rows with the classes permuted alike in
    // every sample, the same gain in exact arithmetic and apart only by
    // the rounding of the canonical sums, which the f64 interval must
    // leave to the canonical gain; (b) copies with 2^-20 of one sample's
    // mass moved, apart by far less than the f32 interval. The greedy here
    // scores every row canonically (the library's own `Joint::gain`).
    use alpool::score::batchbald::{Joint, conditional_entropy};
    for (case, (t, c, budget, k, shift)) in [
        (4, 5, 30, 5, false),
        (3, 5, 1 << 20, 3, false),
        (4, 4, 100, 5, true),
        (5, 3, 1 << 20, 4, true),
    ]
    .into_iter()
    .enumerate()
    {
        let case = case as u64;
        let (bases, copies) = (4, 90);
        let n = bases * (copies + 1);
        let base = pool(t, bases, c, 70 + case);
        let mut x = vec![0f32; t * n * c];
        for i in 0..n {
            let (b, j) = (i % bases, i / bases);
            let perm = permutation(if shift { 0 } else { j }, c);
            for s in 0..t {
                let src = (s * bases + b) * c;
                let dst = (s * n + i) * c;
                for (cls, &from) in perm.iter().enumerate() {
                    x[dst + cls] = base[src + from];
                }
            }
            if shift && j > 0 {
                let at = ((j % t) * n + i) * c;
                let row = &mut x[at..at + c];
                let hi = (0..c).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
                let lo = (0..c).min_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
                let d = (j % 5) as f32 / ONE as f32;
                row[hi] -= d;
                row[lo] += d;
            }
        }
        let q: Vec<Vec<f64>> = rows_of(&x, t, n, c)
            .into_iter()
            .map(|r| r.concat())
            .collect();
        let cond: Vec<f64> = q.iter().map(|p| conditional_entropy(p, c)).collect();
        let (mut picked, mut rows, mut r) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..k {
            let joint = Joint::new(&picked, t, c, budget, case);
            let mut best: Option<(f64, usize)> = None;
            for i in (0..n).filter(|i| !rows.contains(i)) {
                let g = joint.gain(&q[i], cond[i], &mut r);
                if best.is_none_or(|(b, _)| g > b) {
                    best = Some((g, i));
                }
            }
            let (_, i) = best.unwrap();
            rows.push(i);
            picked.push(q[i].clone());
        }
        let samples = tnc(&x, [t, n, c]);
        for threads in [1, 2] {
            let job = job(k, budget, case);
            let sel = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| common::select_cpu(Inputs::samples(&samples), &job).unwrap());
            let got: Vec<usize> = sel.entries.iter().map(|e| e.index as usize).collect();
            assert_eq!(got, rows, "case {case}, {threads} threads");
        }
    }
}

/// T x N x C samples.
fn tnc(x: &[f32], [t, n, c]: [usize; 3]) -> Samples<'_> {
    Samples::from_pool(Pool::from_f32(x, c).unwrap(), [t, n, c], SampleLayout::Tnc).unwrap()
}

/// Row-major samples (`x` is N x T x C).
fn ntc_samples(x: &[f32], [t, n, c]: [usize; 3]) -> Samples<'_> {
    Samples::from_pool(
        Pool::from_f32(x, t * c).unwrap(),
        [n, t, c],
        SampleLayout::Ntc,
    )
    .unwrap()
}

/// T x N x C samples `x` row-major, N x T x C.
fn row_major(x: &[f32], [t, n, c]: [usize; 3]) -> Vec<f32> {
    let mut ntc = vec![0f32; x.len()];
    for s in 0..t {
        for i in 0..n {
            let from = (s * n + i) * c;
            let to = (i * t + s) * c;
            ntc[to..to + c].copy_from_slice(&x[from..from + c]);
        }
    }
    ntc
}

#[test]
fn picks_do_not_depend_on_threads_chunks_or_layout() {
    let (t, n, c) = (5, 300, 4);
    let x = pool(t, n, c, 7);
    let tnc = tnc(&x, [t, n, c]);
    let base = job(8, 64, 3);
    let want = picks(&common::select_cpu(Inputs::samples(&tnc), &base).unwrap());
    for threads in [1, 3] {
        for chunk_rows in [1, 7, 0] {
            let mut j = base.clone();
            j.chunk_rows = chunk_rows;
            let got = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| common::select_cpu(Inputs::samples(&tnc), &j).unwrap());
            assert_eq!(
                picks(&got),
                want,
                "{threads} threads, chunks of {chunk_rows}"
            );
        }
    }
    // The same samples row-major (N x T x C).
    let ntc = row_major(&x, [t, n, c]);
    let ntc = ntc_samples(&ntc, [t, n, c]);
    assert_eq!(
        picks(&common::select_cpu(Inputs::samples(&ntc), &base).unwrap()),
        want
    );
    // Another seed draws other configurations; the exact steps agree.
    let other = picks(&common::select_cpu(Inputs::samples(&tnc), &job(8, 64, 4)).unwrap());
    assert_eq!(other[..4], want[..4]);
    // Bits: log base 2 divides every score by ln 2.
    let bits = picks(
        &common::select_cpu(Inputs::samples(&tnc), &base.clone().log_base(LogBase::Two)).unwrap(),
    );
    for (b, w) in bits.iter().zip(&want) {
        assert_eq!(b.0, w.0);
        assert!((b.1 - w.1 / 2f64.ln()).abs() < 1e-12);
    }
}

#[test]
fn bad_requests_are_named() {
    let (t, n, c) = (3, 10, 2);
    let x = pool(t, n, c, 1);
    let samples = tnc(&x, [t, n, c]);
    let one = tnc(&x[..n * c], [1, n, c]);
    let err = |inputs: Inputs, job: &Job| common::select_cpu(inputs, job).unwrap_err().to_string();
    assert!(err(Inputs::samples(&one), &job(2, 0, 0)).contains("at least 2 samples"));
    let e = err(
        Inputs::samples(&samples),
        &job(9, 0, 0).exclude(Exclusions::new(vec![0, 1])),
    );
    assert!(e.contains("batchbald") && e.contains('8'), "{e}");
    let probs = Pool::from_f32(&x[..n * c], c).unwrap();
    match common::select_cpu(&probs, &job(2, 0, 0)) {
        Err(Error::MissingInput { query, .. }) => assert_eq!(query, "batchbald"),
        other => panic!("{other:?}"),
    }
    let e = err(Inputs::samples(&samples).with_probs(&probs), &job(2, 0, 0));
    assert!(e.contains("does not read"), "{e}");
    let e = err(
        Inputs::samples(&samples),
        &job(2, 0, 0).stochastic(Stochastic::new(StochasticKind::Power, 1.0)),
    );
    assert!(e.contains("batchbald picks a batch itself"), "{e}");
}

#[test]
fn the_cli_picks_as_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let (t, n, c) = (4, 120, 3);
    let x = pool(t, n, c, 9);
    let file = dir.path().join("s.npy");
    npy::save(&file, &[t, n, c], &x).unwrap();
    let f = file.to_str().unwrap();
    let args = vec![
        "select",
        "--samples",
        f,
        "-s",
        "batchbald",
        "-k",
        "6",
        "--configurations",
        "30",
        "--seed",
        "5",
    ];
    let o = common::alpool(&args);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let samples = tnc(&x, [t, n, c]);
    let lib = common::select_cpu(Inputs::samples(&samples), &job(6, 30, 5)).unwrap();
    let want: String = std::iter::once("rank,index,score".to_string())
        .chain(
            lib.entries
                .iter()
                .map(|e| format!("{},{},{}", e.rank, e.index, e.score)),
        )
        .map(|l| l + "\n")
        .collect();
    assert_eq!(common::stdout(&o), want);
    if common::gpu().is_some() {
        let mut on_gpu = args.clone();
        on_gpu.extend(["--device", "gpu"]);
        let o = common::alpool(&on_gpu);
        assert!(o.status.success(), "{}", common::stderr(&o));
        assert_eq!(common::stdout(&o), want, "on the GPU");
    }
    for (args, says) in [
        (vec!["--configurations", "0"], "configurations"),
        (vec!["--out", "p.alpart"], "not a part"),
    ] {
        let mut all = vec!["select", "--samples", f, "-s", "batchbald", "-k", "3"];
        all.extend(args);
        let o = common::alpool(&all);
        assert!(!o.status.success());
        assert!(common::stderr(&o).contains(says), "{}", common::stderr(&o));
    }
}

#[test]
fn the_gpu_picks_what_the_cpu_picks() {
    let Some(g) = common::gpu() else { return };
    // The rows and the score bits of the CPU's batch; how many rows the
    // GPU's intervals left to the canonical gain.
    let same = |inputs: Inputs, job: &Job, what: &str| -> u64 {
        let cpu = common::select_cpu(inputs, job).unwrap();
        let (gpu, _) = common::select_gpu(&g, inputs, job).unwrap();
        let bits = |s: &alpool::Selection| -> Vec<(u64, u64)> {
            s.entries
                .iter()
                .map(|e| (e.index, e.score.to_bits()))
                .collect()
        };
        assert_eq!(bits(&gpu), bits(&cpu), "{what}");
        assert_eq!(gpu.excluded, cpu.excluded, "{what}");
        gpu.refined
    };
    // Exact steps (C^k within the budget), sampled ones, batchbald_redux's
    // setting (T 20, C 10, M 10,000: four exact steps, then sampled), and
    // near copies whose gains part by far less than the f32 interval;
    // more rows than a GPU workgroup grid's first row, exclusions at both
    // ends, copies (exact ties, to the lower row).
    for (case, (t, n, c, budget, k, near)) in [
        (4, 1500, 3, 1 << 20, 6, false),
        (5, 1500, 4, 300, 8, false),
        (20, 600, 10, 10_000, 6, false),
        (4, 1600, 3, 1 << 20, 5, true),
        (6, 1200, 4, 300, 8, true),
    ]
    .into_iter()
    .enumerate()
    {
        let seed = 60 + case as u64;
        let x = if near {
            near_copies(t, n, c, seed)
        } else {
            pool(t, n, c, seed)
        };
        let excl = Exclusions::new(vec![0, 3, n as u64 - 1]);
        let job = job(k, budget, seed).exclude(excl);
        let tnc = tnc(&x, [t, n, c]);
        let what = format!("case {case}: T {t}, N {n}, C {c}, M {budget}");
        let refined = same(Inputs::samples(&tnc), &job, &what);
        if !near {
            // The intervals decide most rows: a bound as wide as the gaps
            // would send the pool back at every step.
            assert!(refined < (n * k / 4) as u64, "{what}: {refined} re-checked");
        }
        if case == 1 {
            let ntc = row_major(&x, [t, n, c]);
            let ntc = ntc_samples(&ntc, [t, n, c]);
            same(Inputs::samples(&ntc), &job, &format!("{what}, N x T x C"));
        }
    }
    // Float64 samples off 1 by up to 1e-3, renormalized: the GPU reads the
    // canonical values, rounded to f32 within its bound.
    let (t, n, c) = (5, 1100, 4);
    let x = pool(t, n, c, 77);
    let x64: Vec<f64> = x
        .iter()
        .enumerate()
        .map(|(i, &v)| v as f64 * (1.0 + 2e-4 * ((i / c) % 5) as f64))
        .collect();
    let s64 = Samples::from_pool(
        Pool::from_f64(&x64, c).unwrap(),
        [t, n, c],
        SampleLayout::Tnc,
    )
    .unwrap();
    let mut renorm = job(6, 200, 5);
    renorm.input = InputForm::Probs {
        renormalize: true,
        sum_tol: 1e-3,
    };
    same(Inputs::samples(&s64), &renorm, "float64, renormalized");
    // A bad row is named as the CPU names it.
    let mut bad = x.clone();
    bad[(2 * n + 777) * c + 1] = f32::NAN;
    let bad = tnc(&bad, [t, n, c]);
    let cpu = common::select_cpu(Inputs::samples(&bad), &job(3, 100, 1)).unwrap_err();
    let gpu = common::select_gpu(&g, Inputs::samples(&bad), &job(3, 100, 1)).unwrap_err();
    assert_eq!(gpu.to_string(), cpu.to_string());
    assert!(cpu.to_string().contains("777"), "{cpu}");
}
