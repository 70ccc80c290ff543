//! Batch-aware strategies against naive references: picks equal, ties
//! included, for every chunk size, thread count, shard layout and read
//! path; bad input named.

use crate::common;

use crate::rng::Rng;
use alpool::pool::ReadPath;
use alpool::pool::npy;
use alpool::{BatchStrategy, Error, Exclusions, InputForm, Inputs, Job, Pool};

/// The batch strategies over embeddings (BatchBALD reads samples: its
/// tests are in `batchbald.rs`).
const EMBEDDING_STRATEGIES: [BatchStrategy; 3] = [
    BatchStrategy::Badge,
    BatchStrategy::Coreset,
    BatchStrategy::ClusterMargin,
];

// The references below are written from the documented definitions, not
// with the library's functions, so that an error in those cannot hide.

/// The canonical squared distance (`batch::dist`): f64 terms summed in
/// eight lanes by column (column j into lane j mod 8), the lanes combined
/// pairwise.
fn sq_dist_f64(a: &[f32], b: &[f32]) -> f64 {
    let mut s = [0f64; 8];
    for (j, (&x, &y)) in a.iter().zip(b).enumerate() {
        let d = x as f64 - y as f64;
        s[j % 8] += d * d;
    }
    ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]))
}

/// Canonical probabilities of a stored float32 row (`score::input`), from
/// the suite's one reference.
fn canonical_probs(form: &InputForm, row: &[f32], out: &mut [f64]) {
    out.copy_from_slice(&common::reference_probs(row, *form));
}

/// BADGE's random bits for pick `t`, row `row` (`batch::rng`): lowbias32
/// (Wellons) chained over the seed's halves, t and the row's halves, top
/// 23 bits.
fn bits(seed: u64, t: u32, row: u64) -> u32 {
    let mix = |mut x: u32| {
        x ^= x >> 16;
        x = x.wrapping_mul(0x7feb_352d);
        x ^= x >> 15;
        x = x.wrapping_mul(0x846c_a68b);
        x ^ (x >> 16)
    };
    let mut h = mix(seed as u32 ^ 0x9e37_79b9);
    for v in [(seed >> 32) as u32, t, row as u32, (row >> 32) as u32] {
        h = mix(h ^ v);
    }
    h >> 9
}

/// The canonical exponential variate of `r` (`batch::rng`): −ln u for
/// u = (r + ½)·2⁻²³, with u = m·2^e, m in [√½, √2) (1.4142135, √2 rounded
/// rounded to float32, and above halve), and ln m = 2·atanh(s), s =
/// (m − 1)/(m + 1), summed to s²¹ by Horner's rule.
fn exp_canonical(r: u32) -> f64 {
    let u = (r as f64 + 0.5) / 8_388_608.0;
    let (mut m, mut e) = (u, 0i32);
    while m >= 2.0 {
        m /= 2.0;
        e += 1;
    }
    while m < 1.0 {
        m *= 2.0;
        e -= 1;
    }
    if m >= std::f32::consts::SQRT_2 as f64 {
        m /= 2.0;
        e += 1;
    }
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut series = 0.0;
    for n in (0..=10).rev() {
        series = series * s2 + 1.0 / (2 * n + 1) as f64;
    }
    -(e as f64 * std::f64::consts::LN_2 + 2.0 * s * series)
}

struct Data {
    probs: Vec<f32>,
    emb: Vec<f32>,
    c: usize,
    d: usize,
}

impl Data {
    fn n(&self) -> usize {
        self.probs.len() / self.c
    }

    /// Random softmax rows; embeddings on an integer grid (many exact ties
    /// and exact arithmetic) or continuous.
    fn new(n: usize, c: usize, d: usize, grid: bool, seed: u64) -> Data {
        let mut r = Rng::new(seed);
        let mut probs = Vec::with_capacity(n * c);
        for _ in 0..n {
            // A few distinct probability rows, repeated, to make ties.
            let z: Vec<f64> = (0..c).map(|_| (r.below(4) as f64) * 0.7).collect();
            let s: f64 = z.iter().map(|v| v.exp()).sum();
            probs.extend(z.iter().map(|v| (v.exp() / s) as f32));
        }
        let emb = (0..n * d)
            .map(|_| {
                if grid {
                    r.below(3) as f32 - 1.0
                } else {
                    r.normal() as f32
                }
            })
            .collect();
        Data { probs, emb, c, d }
    }

    fn run(&self, job: &Job) -> alpool::Result<Vec<u64>> {
        let p = Pool::from_f32(&self.probs, self.c)?;
        let e = Pool::from_f32(&self.emb, self.d)?;
        Ok(
            crate::common::select_cpu(alpool::Inputs::probs(&p).with_embeddings(&e), job)?
                .indices(),
        )
    }

    fn row(&self, i: usize) -> &[f32] {
        &self.emb[i * self.d..(i + 1) * self.d]
    }

    fn canonical_probs(&self, input: &InputForm, i: usize) -> Vec<f64> {
        let mut out = vec![0.0; self.c];
        canonical_probs(input, &self.probs[i * self.c..(i + 1) * self.c], &mut out);
        out
    }
}

fn job(s: BatchStrategy, k: usize, excluded: &[u64]) -> Job {
    let mut j = Job::new(s, InputForm::probs(), k);
    j.exclusions = Exclusions::new(excluded.to_vec());
    j.seed = 11;
    j
}

/// Arg-max with ties to the lower index.
fn best(v: impl Iterator<Item = (usize, f64)>) -> usize {
    let mut b: Option<(usize, f64)> = None;
    for (i, x) in v {
        if b.is_none_or(|(_, bx)| x > bx) {
            b = Some((i, x));
        }
    }
    b.unwrap().0
}

fn naive_coreset(data: &Data, excluded: &[u64], k: usize) -> Vec<u64> {
    let n = data.n();
    let mut centres: Vec<usize> = excluded.iter().map(|&r| r as usize).collect();
    let mut taken = vec![false; n];
    centres.iter().for_each(|&c| taken[c] = true);
    let mut picks = Vec::new();
    if centres.is_empty() {
        let mut mean = vec![0f64; data.d];
        for i in 0..n {
            for (m, &v) in mean.iter_mut().zip(data.row(i)) {
                *m += v as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let dist = |i: usize| -> f64 {
            data.row(i)
                .iter()
                .zip(&mean)
                .map(|(&v, m)| (v as f64 - m).powi(2))
                .sum()
        };
        let first = best((0..n).map(|i| (i, dist(i))));
        picks.push(first as u64);
        centres.push(first);
        taken[first] = true;
    }
    while picks.len() < k {
        let key = |i: usize| {
            centres
                .iter()
                .map(|&c| sq_dist_f64(data.row(i), data.row(c)))
                .fold(f64::INFINITY, f64::min)
        };
        let p = best((0..n).filter(|&i| !taken[i]).map(|i| (i, key(i))));
        picks.push(p as u64);
        centres.push(p);
        taken[p] = true;
    }
    picks
}

fn naive_badge(data: &Data, input: &InputForm, excluded: &[u64], k: usize, seed: u64) -> Vec<u64> {
    let n = data.n();
    // The gradient embeddings, formed explicitly.
    let grads: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            let p = data.canonical_probs(input, i);
            let y = best(p.iter().copied().enumerate());
            let mut g = Vec::with_capacity(data.c * data.d);
            for (j, &pj) in p.iter().enumerate() {
                let a = if j == y { 1.0 - pj } else { -pj };
                g.extend(data.row(i).iter().map(|&e| a * e as f64));
            }
            g
        })
        .collect();
    let norm = |i: usize| {
        let p = data.canonical_probs(input, i);
        let y = best(p.iter().copied().enumerate());
        let a2: f64 = p
            .iter()
            .enumerate()
            .map(|(j, &pj)| if j == y { (1.0 - pj).powi(2) } else { pj * pj })
            .sum();
        a2 * data.row(i).iter().map(|&e| (e as f64).powi(2)).sum::<f64>()
    };
    let mut taken = vec![false; n];
    excluded.iter().for_each(|&r| taken[r as usize] = true);
    let first = best((0..n).filter(|&i| !taken[i]).map(|i| (i, norm(i))));
    let mut picks = vec![first as u64];
    taken[first] = true;
    while picks.len() < k {
        let t = picks.len() as u32;
        let key = |i: usize| {
            let w = picks
                .iter()
                .map(|&c| {
                    grads[i]
                        .iter()
                        .zip(&grads[c as usize])
                        .map(|(a, b)| (a - b).powi(2))
                        .sum::<f64>()
                })
                .fold(f64::INFINITY, f64::min);
            w / exp_canonical(bits(seed, t, i as u64))
        };
        let p = best((0..n).filter(|&i| !taken[i]).map(|i| (i, key(i))));
        picks.push(p as u64);
        taken[p] = true;
    }
    picks
}

fn naive_cluster_margin(data: &Data, excluded: &[u64], k: usize, km: usize, nc: usize) -> Vec<u64> {
    let input = InputForm::probs();
    let mut rows: Vec<(f64, usize)> = (0..data.n())
        .filter(|i| !excluded.contains(&(*i as u64)))
        .map(|i| {
            let mut p = data.canonical_probs(&input, i);
            p.sort_by(|a, b| b.total_cmp(a));
            (p[0] - p[1], i)
        })
        .collect();
    rows.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    rows.truncate(km);
    let m = rows.len();
    let mut dist = vec![vec![0f32; m]; m];
    for a in 0..m {
        for b in 0..m {
            dist[a][b] = sq_dist_f64(data.row(rows[a].1), data.row(rows[b].1)).sqrt() as f32;
        }
    }
    let (mut size, mut label, mut active) =
        (vec![1f64; m], (0..m).collect::<Vec<_>>(), vec![true; m]);
    let mut clusters = m;
    while clusters > nc {
        let mut b = (f32::INFINITY, 0, 0);
        for i in 0..m {
            for j in i + 1..m {
                if active[i] && active[j] && dist[i][j] < b.0 {
                    b = (dist[i][j], i, j);
                }
            }
        }
        let (_, i, j) = b;
        for x in 0..m {
            if active[x] && x != i && x != j {
                let v = ((size[i] * dist[i][x] as f64 + size[j] * dist[j][x] as f64)
                    / (size[i] + size[j])) as f32;
                dist[i][x] = v;
                dist[x][i] = v;
            }
        }
        size[i] += size[j];
        active[j] = false;
        label.iter_mut().filter(|l| **l == j).for_each(|l| *l = i);
        clusters -= 1;
    }
    let mut groups: Vec<Vec<usize>> = (0..m)
        .map(|c| (0..m).filter(|&p| label[p] == c).collect())
        .filter(|g: &Vec<usize>| !g.is_empty())
        .collect();
    groups.sort_by_key(|g| (g.len(), g[0]));
    let mut picks = Vec::new();
    for round in 0..m {
        for g in &groups {
            if let Some(&p) = g.get(round)
                && picks.len() < k
            {
                picks.push(rows[p].1 as u64);
            }
        }
    }
    picks
}

#[test]
fn coreset_matches_the_naive_reference() {
    for (grid, seed) in [(true, 1), (false, 2)] {
        let data = Data::new(300, 4, 5, grid, seed);
        for excluded in [vec![], vec![3, 17, 250]] {
            for k in [1, 7, 40] {
                let got = data
                    .run(&job(BatchStrategy::Coreset, k, &excluded))
                    .unwrap();
                assert_eq!(
                    got,
                    naive_coreset(&data, &excluded, k),
                    "grid {grid} excl {excluded:?} k {k}"
                );
            }
        }
    }
}

#[test]
fn badge_matches_the_naive_reference() {
    for (grid, seed) in [(true, 3), (false, 4)] {
        let data = Data::new(250, 3, 4, grid, seed);
        for excluded in [vec![], vec![0, 5, 99]] {
            let got = data.run(&job(BatchStrategy::Badge, 30, &excluded)).unwrap();
            let want = naive_badge(&data, &InputForm::probs(), &excluded, 30, 11);
            assert_eq!(got, want, "grid {grid} excl {excluded:?}");
        }
    }
}

/// Tight clusters far apart, in more rows than one block of bounds: the
/// distances from the first centres go stale at once, so the engine's
/// bounds stop ranking and it must fall back to passes, and with 80
/// centres each re-computation filters the centres in float32 first.
#[test]
fn coreset_and_badge_match_the_references_when_bounds_go_stale() {
    let mut data = Data::new(2600, 3, 5, false, 8);
    let mut r = Rng::new(9);
    let spots: Vec<f32> = (0..40 * 5).map(|_| (r.normal() * 100.0) as f32).collect();
    for (i, x) in data.emb.chunks_exact_mut(5).enumerate() {
        let spot = &spots[(i % 40) * 5..(i % 40 + 1) * 5];
        for (v, &c) in x.iter_mut().zip(spot) {
            *v = c + *v * 0.01;
        }
    }
    // Exact duplicates for ties.
    for i in (0..2600).step_by(97) {
        let row = data.row(i).to_vec();
        data.emb[(i + 40) % 2600 * 5..((i + 40) % 2600 + 1) * 5].copy_from_slice(&row);
    }
    let excluded: Vec<u64> = (0..10).map(|i| i * 131).collect();
    for excl in [&excluded[..], &[]] {
        let got = data.run(&job(BatchStrategy::Coreset, 70, excl)).unwrap();
        assert_eq!(
            got,
            naive_coreset(&data, excl, 70),
            "coreset, {} labeled",
            excl.len()
        );
        let got = data.run(&job(BatchStrategy::Badge, 70, excl)).unwrap();
        let want = naive_badge(&data, &InputForm::probs(), excl, 70, 11);
        assert_eq!(got, want, "badge, {} labeled", excl.len());
    }
}

#[test]
fn badge_on_logits_reads_the_canonical_softmax() {
    // Logits take the materialized float32 path.
    let data = Data::new(200, 4, 6, false, 9);
    let logits = InputForm::Logits { temperature: 1.5 };
    let mut j = job(BatchStrategy::Badge, 25, &[]);
    j.input = logits;
    assert_eq!(
        data.run(&j).unwrap(),
        naive_badge(&data, &logits, &[], 25, 11)
    );
}

#[test]
fn cluster_margin_matches_the_naive_reference() {
    let data = Data::new(400, 5, 3, true, 6);
    for (k, km, nc) in [(10, 60, 10), (10, 60, 4), (25, 80, 80), (5, 5, 5)] {
        let mut j = job(BatchStrategy::ClusterMargin, k, &[1, 2]);
        j.candidates = km;
        j.clusters = nc;
        let got = data.run(&j).unwrap();
        assert_eq!(
            got,
            naive_cluster_margin(&data, &[1, 2], k, km, nc),
            "k {k} km {km} nc {nc}"
        );
    }
}

#[test]
fn picks_do_not_depend_on_chunks_threads_shards_or_read_paths() {
    let data = Data::new(700, 4, 9, false, 8);
    let dir = tempfile::tempdir().unwrap();
    let save = |name: &str, v: &[f32], w: usize, split: &[usize]| -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        let mut bounds = vec![0];
        bounds.extend_from_slice(split);
        bounds.push(v.len() / w);
        for (i, ab) in bounds.windows(2).enumerate() {
            let p = dir.path().join(format!("{name}{i}.npy"));
            npy::save(&p, &[ab[1] - ab[0], w], &v[ab[0] * w..ab[1] * w]).unwrap();
            out.push(p);
        }
        out
    };
    let probs = save("p", &data.probs, 4, &[100, 333]);
    let emb = save("e", &data.emb, 9, &[512]);
    for s in EMBEDDING_STRATEGIES {
        let mut j = job(s, 20, &[4, 600]);
        let want = data.run(&j).unwrap();
        for chunk in [1, 7, 64, 0] {
            j.chunk_rows = chunk;
            for threads in [1, 3] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                assert_eq!(
                    pool.install(|| data.run(&j)).unwrap(),
                    want,
                    "{s} chunk {chunk} threads {threads}"
                );
            }
            for read in [ReadPath::Read, ReadPath::Map, ReadPath::Stream] {
                let p = Pool::open_with(&probs, read).unwrap();
                let e = Pool::open_with(&emb, read).unwrap();
                let got =
                    crate::common::select_cpu(alpool::Inputs::probs(&p).with_embeddings(&e), &j)
                        .unwrap();
                assert_eq!(got.indices(), want, "{s} chunk {chunk} {read:?}");
            }
        }
    }
}

#[test]
fn bad_input_is_named() {
    let data = Data::new(50, 3, 4, false, 1);
    let dir = tempfile::tempdir().unwrap();
    let pp = dir.path().join("probs.npy");
    npy::save(&pp, &[50, 3], &data.probs).unwrap();
    let short = dir.path().join("short.npy");
    npy::save(&short, &[49, 4], &data.emb[..49 * 4]).unwrap();
    let probs = Pool::open(&[&pp]).unwrap();
    let e = Pool::open(&[&short]).unwrap();
    let j = job(BatchStrategy::Coreset, 3, &[]);
    let err = crate::common::select_cpu(alpool::Inputs::probs(&probs).with_embeddings(&e), &j)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::EmbeddingRows {
                expected: 50,
                found: 49,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("short.npy") && err.to_string().contains("probs.npy"));

    // NaN; the f32 just past the limit of 1e15 (1e15 itself rounds below
    // it in f32); and an infinity.
    let past = f32::from_bits(1e15f32.to_bits() + 1);
    for (row, col, value) in [(37, 2, f32::NAN), (12, 1, past), (44, 3, f32::NEG_INFINITY)] {
        let mut emb = data.emb.clone();
        emb[row * 4 + col] = value;
        let path = dir.path().join("bad.npy");
        npy::save(&path, &[50, 4], &emb).unwrap();
        let e = Pool::open(&[&path]).unwrap();
        for s in EMBEDDING_STRATEGIES {
            let mut j = job(s, 3, &[]);
            j.candidates = 50;
            let err =
                crate::common::select_cpu(alpool::Inputs::probs(&probs).with_embeddings(&e), &j)
                    .unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.contains("bad.npy")
                    && msg.contains(&format!("row {row}"))
                    && msg.contains(&format!("column {col}")),
                "{s}: {msg}"
            );
        }
    }

    let zero = dir.path().join("zero.npy");
    npy::save::<f32>(&zero, &[50, 0], &[]).unwrap();
    let msg = Pool::open_embeddings(&[&zero]).err().unwrap().to_string();
    assert!(msg.contains("D = 0"), "{msg}");

    let e = Pool::from_f32(&data.emb, 4).unwrap();
    let err = common::select_cpu(
        Inputs::probs(&probs).with_embeddings(&e),
        &job(BatchStrategy::Badge, 49, &[1, 2]),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::TooFewRows {
                k: 49,
                selectable: 48,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn cli_selects_a_batch_and_names_missing_embeddings() {
    let data = Data::new(120, 3, 4, false, 2);
    let dir = tempfile::tempdir().unwrap();
    let (pp, ep) = (dir.path().join("p.npy"), dir.path().join("e.npy"));
    npy::save(&pp, &[120, 3], &data.probs).unwrap();
    npy::save(&ep, &[120, 4], &data.emb).unwrap();
    let (p, e) = (pp.to_str().unwrap(), ep.to_str().unwrap());
    let o = common::alpool(&[
        "select",
        p,
        "--embeddings",
        e,
        "--strategy",
        "coreset",
        "-k",
        "5",
    ]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let rows: Vec<u64> = common::stdout(&o)
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(rows, naive_coreset(&data, &[], 5));
    let o = common::alpool(&["select", p, "--strategy", "badge", "-k", "5"]);
    assert!(!o.status.success() && common::stderr(&o).contains("--embeddings"));
    let o = common::alpool(&["select", p, "--embeddings", e, "--strategy", "margin"]);
    let err = common::stderr(&o);
    assert!(
        !o.status.success() && err.contains("margin does not read embeddings"),
        "{err}"
    );
}

#[test]
fn the_gpu_picks_what_the_cpu_picks() {
    let Some(g) = common::gpu() else { return };
    let run = |data: &Data, j: &Job, on_gpu: bool| {
        let p = Pool::from_f32(&data.probs, data.c).unwrap();
        let e = Pool::from_f32(&data.emb, data.d).unwrap();
        let inputs = Inputs::probs(&p).with_embeddings(&e);
        let sel = match on_gpu {
            true => common::select_gpu(&g, inputs, j).unwrap().0,
            false => common::select_cpu(inputs, j).unwrap(),
        };
        sel.entries
    };
    for (grid, seed) in [(true, 1), (false, 2)] {
        let data = Data::new(900, 6, 17, grid, seed);
        for s in EMBEDDING_STRATEGIES {
            for excluded in [vec![], vec![2, 40, 899]] {
                let mut j = job(s, 60, &excluded);
                j.input = InputForm::Logits { temperature: 1.0 };
                let cpu = run(&data, &j, false);
                let gpu = run(&data, &j, true);
                assert_eq!(gpu, cpu, "{s} grid {grid} excluded {excluded:?}");
            }
        }
    }
    // Every row a contender (all embeddings equal): more than the GPU's
    // list holds, so every row's bounds come back instead.
    let mut data = Data::new(5000, 3, 4, true, 3);
    data.emb.iter_mut().for_each(|v| *v = 0.5);
    let j = job(BatchStrategy::Coreset, 3, &[7]);
    assert_eq!(run(&data, &j, true), run(&data, &j, false));
    assert_eq!(data.run(&j).unwrap(), vec![0, 1, 2]);
}
