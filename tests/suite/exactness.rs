//! The selection must equal a naive full sort under the documented
//! canonical scores, whatever the data (many exact ties), k, class count,
//! input form, dtype, sharding, chunking and exclusions.

use crate::common;

use alpool::pool::Exclusions;
use alpool::score::ScoreSpec;
use alpool::{InputForm, Job, LogBase, Pool, Strategy};
use proptest::prelude::*;

/// The random strategy's documented priority: splitmix64 of the seed xor
/// splitmix64 of (index + the golden gamma), its top 53 bits over 2⁵³.
fn random_priority(seed: u64, index: u64) -> f64 {
    let mix = |mut z: u64| {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let h = mix(seed ^ mix(index.wrapping_add(0x9E37_79B9_7F4A_7C15)));
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// One row's documented score: probabilities in f64 from the stored f32
/// values, the score in f64 summing in column order.
fn reference_score(row: &[f32], form: InputForm, spec: ScoreSpec, index: u64) -> f64 {
    let p = common::reference_probs(row, form);
    let mut sorted = p.clone();
    sorted.sort_by(|a, b| b.partial_cmp(a).unwrap());
    let second = sorted.get(1).copied().unwrap_or(0.0);
    match spec.strategy {
        Strategy::LeastConfidence => 1.0 - sorted[0],
        Strategy::Margin => sorted[0] - second,
        Strategy::Ratio => second / sorted[0],
        Strategy::Entropy => {
            let mut s = 0.0;
            for &x in &p {
                if x > 0.0 {
                    s += x * x.ln();
                }
            }
            (0.0 - s) / spec.log_base.ln()
        }
        Strategy::Random => random_priority(spec.seed, index),
        other => panic!("the naive reference has no {other}"),
    }
}

/// The documented formulas, written out independently of `alpool::score`:
/// probabilities in f64 from the stored f32 values, scores in f64 summing
/// in column order, priority = score (margin: −score), ties to the lower
/// index, then a full sort.
fn reference(
    rows: &[Vec<f32>],
    form: InputForm,
    spec: ScoreSpec,
    k: usize,
    excluded: &[u64],
) -> Vec<(u64, f64)> {
    let mut all: Vec<(f64, u64, f64)> = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        if excluded.contains(&(i as u64)) {
            continue;
        }
        let score = reference_score(row, form, spec, i as u64);
        let priority = if spec.strategy == Strategy::Margin {
            0.0 - score
        } else {
            score
        };
        all.push((priority, i as u64, score));
    }
    all.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap().then(a.1.cmp(&b.1)));
    all.truncate(k);
    all.into_iter().map(|(_, i, s)| (i, s)).collect()
}

/// Probability rows on a coarse grid (w_i / Σw with small integer w), drawn
/// from a few templates so that exact ties are common.
fn grid_rows(classes: usize, n: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = crate::rng::Rng::new(seed);
    let templates: Vec<Vec<f32>> = (0..4 + rng.below(6) as usize)
        .map(|_| {
            let mut w: Vec<u64> = (0..classes).map(|_| rng.below(4)).collect();
            if w.iter().all(|&x| x == 0) {
                w[rng.below(classes as u64) as usize] = 1;
            }
            let total: u64 = w.iter().sum();
            w.iter()
                .map(|&x| (x as f64 / total as f64) as f32)
                .collect()
        })
        .collect();
    (0..n)
        .map(|_| {
            if rng.below(4) == 0 {
                // A continuous row now and then.
                let mut r: Vec<f64> = (0..classes).map(|_| rng.uniform().powi(3) + 1e-9).collect();
                let s: f64 = r.iter().sum();
                r.iter_mut().for_each(|x| *x /= s);
                r.iter().map(|&x| x as f32).collect()
            } else {
                templates[rng.below(templates.len() as u64) as usize].clone()
            }
        })
        .collect()
}

/// Writes `rows` as 1 to 3 shards and returns their paths.
fn write_shards(
    dir: &std::path::Path,
    rows: &[Vec<f32>],
    classes: usize,
    cuts: &[usize],
    f16: bool,
) -> Vec<std::path::PathBuf> {
    let mut bounds = vec![0];
    bounds.extend(cuts.iter().map(|&c| c.min(rows.len())));
    bounds.push(rows.len());
    bounds.sort();
    bounds
        .windows(2)
        .enumerate()
        .map(|(i, w)| {
            let p = dir.join(format!("shard{i}.npy"));
            if f16 {
                common::save_f16(&p, &rows[w[0]..w[1]], classes);
            } else {
                common::save_f32(&p, &rows[w[0]..w[1]], classes);
            }
            p
        })
        .collect()
}

/// How a pool is stored and read, apart from its rows.
struct Layout<'a> {
    chunk_rows: u64,
    cuts: &'a [usize],
    excluded: &'a [u64],
    f16: bool,
}

fn check(
    rows: &[Vec<f32>],
    classes: usize,
    form: InputForm,
    spec: ScoreSpec,
    k: usize,
    layout: Layout,
) -> Result<(), TestCaseError> {
    let Layout {
        chunk_rows,
        cuts,
        excluded,
        f16,
    } = layout;
    let dir = tempfile::tempdir().unwrap();
    let paths = write_shards(dir.path(), rows, classes, cuts, f16);
    // The reference sees exactly the stored values.
    let stored: Vec<Vec<f32>> = if f16 {
        rows.iter()
            .map(|r| r.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect())
            .collect()
    } else {
        rows.to_vec()
    };
    let pool = Pool::open(&paths).unwrap();
    let mut job = Job::new(spec.strategy, form, k)
        .log_base(spec.log_base)
        .seed(spec.seed);
    job.chunk_rows = chunk_rows;
    job.exclusions = Exclusions::new(excluded.to_vec());
    let sel = crate::common::select_cpu(&pool, &job).unwrap();
    let got: Vec<(u64, f64)> = sel.entries.iter().map(|e| (e.index, e.score)).collect();
    let want = reference(&stored, form, spec, k, excluded);
    prop_assert_eq!(got.len(), want.len());
    for (r, (g, w)) in got.iter().zip(&want).enumerate() {
        prop_assert_eq!(
            g.0,
            w.0,
            "rank {}: got row {}, want row {}",
            r + 1,
            g.0,
            w.0
        );
        prop_assert_eq!(g.1.to_bits(), w.1.to_bits(), "rank {} score", r + 1);
    }
    Ok(())
}

fn strategy_of(i: u8) -> Strategy {
    Strategy::ALL[i as usize % 5]
}

fn base_of(i: u8) -> LogBase {
    [LogBase::E, LogBase::Two, LogBase::Ten][i as usize % 3]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    #[test]
    fn select_equals_full_sort(
        classes in prop::sample::select(vec![1usize, 2, 3, 4, 10, 17, 100]),
        n in 0usize..80,
        seed in any::<u64>(),
        st in 0u8..5,
        base in 0u8..3,
        k_pick in 0usize..7,
        chunk_rows in 1u64..40,
        cuts in prop::collection::vec(0usize..80, 0..3),
        excl in prop::collection::vec(0u64..80, 0..10),
        form_pick in 0u8..4,
    ) {
        let strategy = strategy_of(st);
        prop_assume!(classes >= strategy.min_classes());
        let rows = grid_rows(classes, n, seed);
        let k = [0, 1, 3, n / 2, n, n + 5, usize::MAX][k_pick];
        let excluded: Vec<u64> = excl.into_iter().filter(|&e| (e as usize) < n).collect();
        let spec = ScoreSpec { strategy, log_base: base_of(base), seed };
        let (form, f16) = match form_pick {
            0 => (InputForm::Probs { renormalize: false, sum_tol: 1e-3 }, false),
            1 => (InputForm::Probs { renormalize: true, sum_tol: 1e-3 }, false),
            // float16 rounding moves row sums; renormalize makes them exact.
            2 => (InputForm::Probs { renormalize: true, sum_tol: 1e-3 }, true),
            _ => (InputForm::Logits { temperature: 0.5 + (seed % 4) as f64 }, false),
        };
        check(&rows, classes, form, spec, k, Layout { chunk_rows, cuts: &cuts, excluded: &excluded, f16 })?;
    }
}

#[test]
fn large_pool_with_ties_matches_reference_for_every_strategy() {
    // Big enough that the parallel workers and the shared threshold matter.
    let rows = grid_rows(10, 20_000, 99);
    for strategy in Strategy::ALL {
        for k in [1, 100, 5_000] {
            let spec = ScoreSpec {
                strategy,
                log_base: LogBase::E,
                seed: 5,
            };
            let layout = Layout {
                chunk_rows: 512,
                cuts: &[7_000],
                excluded: &[3, 4, 5, 19_999],
                f16: false,
            };
            check(&rows, 10, InputForm::probs(), spec, k, layout).unwrap();
        }
    }
}

#[test]
fn sharded_pool_equals_concatenated_pool_and_chunking_changes_nothing() {
    let rows: Vec<Vec<f32>> = (0..3_000)
        .map(|i| {
            let mut r = vec![0f32; 7];
            alpool::bench::synth::softmax_row(11, i, &mut r);
            r
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let whole = write_shards(dir.path(), &rows, 7, &[], false);
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let shards = write_shards(&sub, &rows, 7, &[1_000, 1_001], false);
    assert_eq!(shards.len(), 3);
    for strategy in Strategy::ALL {
        let mut results = Vec::new();
        for (paths, chunk) in [(&whole, 8192), (&shards, 8192), (&whole, 1), (&shards, 13)] {
            let pool = Pool::open(paths).unwrap();
            let mut job = Job::new(strategy, InputForm::probs(), 250)
                .log_base(LogBase::Two)
                .seed(3);
            job.chunk_rows = chunk;
            let sel = crate::common::select_cpu(&pool, &job).unwrap();
            results.push(sel.entries);
        }
        assert_eq!(results[0].len(), 250);
        for r in &results[1..] {
            assert_eq!(r, &results[0], "{strategy}");
        }
    }
}

#[test]
fn logits_input_equals_softmax_then_probs_input() {
    let mut rng = crate::rng::Rng::new(4);
    let temperature = 1.5;
    let logits: Vec<Vec<f32>> = (0..2_000)
        .map(|_| (0..6).map(|_| (3.0 * rng.normal()) as f32).collect())
        .collect();
    let probs: Vec<Vec<f32>> = logits
        .iter()
        .map(|z| {
            let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let e: Vec<f64> = z
                .iter()
                .map(|&v| ((v as f64 - m) / temperature).exp())
                .collect();
            let s: f64 = e.iter().sum();
            e.iter().map(|x| (x / s) as f32).collect()
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let lp = dir.path().join("logits.npy");
    let pp = dir.path().join("probs.npy");
    common::save_f32(&lp, &logits, 6);
    common::save_f32(&pp, &probs, 6);
    for strategy in [
        Strategy::LeastConfidence,
        Strategy::Margin,
        Strategy::Entropy,
        Strategy::Ratio,
    ] {
        let logits = Job::new(strategy, InputForm::logits(temperature), 100);
        let from_logits = common::select_cpu(&Pool::open(&[&lp]).unwrap(), &logits).unwrap();
        let probs = Job::new(strategy, InputForm::probs(), 100);
        let from_probs = common::select_cpu(&Pool::open(&[&pp]).unwrap(), &probs).unwrap();
        // Continuous scores: the f32 rounding of the stored probabilities
        // (≤ 1e-7) is far below the gaps between neighbouring scores.
        assert_eq!(from_logits.indices(), from_probs.indices(), "{strategy}");
        for (a, b) in from_logits.entries.iter().zip(&from_probs.entries) {
            assert!(
                (a.score - b.score).abs() < 1e-6,
                "{strategy}: {} vs {}",
                a.score,
                b.score
            );
        }
    }
}

#[test]
fn row_sums_at_the_tolerance_edge_are_judged_by_the_exact_f64_sum() {
    // Rows whose f64 sums sit just inside and just outside 1 ± 1e-3. The
    // fast paths pre-check sums in f32 and must defer to the exact rule.
    let tol = 1e-3;
    let row_with_sum = |target: f64| -> Vec<f32> {
        let mut r = vec![0.1f32; 10];
        r[9] = (target - 0.9f32 as f64 * 1.0) as f32;
        let s: f64 = r.iter().map(|&x| x as f64).sum();
        r[9] = (r[9] as f64 + (target - s)) as f32;
        r
    };
    for (target, ok) in [
        (1.0 + tol * 0.9999, true),
        (1.0 - tol * 0.9999, true),
        (1.0 + tol * 1.0001, false),
        (1.0 - tol * 1.0001, false),
    ] {
        for at in [0usize, 5, 8, 13, 39] {
            let mut rows: Vec<Vec<f32>> = (0..40)
                .map(|i| {
                    let mut r = vec![0f32; 10];
                    alpool::bench::synth::softmax_row(2, i, &mut r);
                    r
                })
                .collect();
            rows[at] = row_with_sum(target);
            let s: f64 = rows[at].iter().map(|&x| x as f64).sum();
            assert_eq!((s - 1.0).abs() <= tol, ok, "test row construction: sum {s}");
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("p.npy");
            common::save_f32(&p, &rows, 10);
            for strategy in Strategy::ALL {
                let job = Job::new(
                    strategy,
                    InputForm::Probs {
                        renormalize: false,
                        sum_tol: tol,
                    },
                    5,
                );
                let r = crate::common::select_cpu(&Pool::open(&[&p]).unwrap(), &job);
                match (ok, r) {
                    (true, Ok(_)) => {}
                    (false, Err(alpool::Error::BadRow { global, .. })) => {
                        assert_eq!(global, at as u64, "{strategy}")
                    }
                    (ok, r) => panic!(
                        "{strategy}, row {at}, sum {s}: expected ok={ok}, got {:?}",
                        r.map(|s| s.indices())
                    ),
                }
            }
        }
    }
}

/// Bad values (NaN, infinities, negatives) anywhere in a chunk — inside the
/// 8-row groups, which check what they gather, or in the tail — are
/// reported at their row, the first one when there are several, for every
/// strategy; −0.0 is a valid probability.
#[test]
fn bad_values_are_reported_at_the_first_bad_row() {
    let base: Vec<Vec<f32>> = (0..1003)
        .map(|i| {
            let mut r = vec![0f32; 10];
            alpool::bench::synth::softmax_row(3, i, &mut r);
            r
        })
        .collect();
    for value in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.5, -1e-30] {
        for (at, col) in [
            (0, 0),
            (5, 9),
            (8, 3),
            (13, 7),
            (999, 1),
            (1001, 2),
            (1002, 9),
        ] {
            let mut rows = base.clone();
            rows[at][col] = value;
            // A later bad row must not hide the first.
            if at + 9 < rows.len() {
                rows[at + 9][0] = f32::NAN;
            }
            // −0.0 earlier in the chunk is fine.
            if at > 2 {
                let v = rows[at - 2][4];
                rows[at - 2][4] = -0.0;
                rows[at - 2][5] += v;
            }
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("p.npy");
            common::save_f32(&p, &rows, 10);
            for strategy in Strategy::ALL {
                let job = Job::new(strategy, InputForm::probs(), 5);
                match crate::common::select_cpu(&Pool::open(&[&p]).unwrap(), &job) {
                    Err(alpool::Error::BadRow {
                        global, problem, ..
                    }) => {
                        assert_eq!(global, at as u64, "{strategy} {value} at {at}");
                        let text = problem.to_string();
                        assert!(
                            text.contains(&format!("column {col}")),
                            "{strategy}: {text}"
                        );
                    }
                    r => panic!(
                        "{strategy}: {value} at row {at}: expected an error, got {:?}",
                        r.map(|s| s.indices())
                    ),
                }
            }
        }
    }
}

#[test]
fn score_gives_every_rows_canonical_score_in_row_order() {
    // 1,003 rows of 10 (groups of 8 and a tail), with rows whose sums sit
    // just inside the tolerance, which the 8-row path hands to the scalar
    // path mid-stream: the scores must still come out in row order.
    let tol = 1e-3;
    let mut rows: Vec<Vec<f32>> = (0..1003)
        .map(|i| {
            let mut r = vec![0f32; 10];
            alpool::bench::synth::softmax_row(8, i, &mut r);
            r
        })
        .collect();
    for at in [5usize, 13, 500, 1001] {
        let mut r = vec![0.1f32; 10];
        r[9] = (0.1 + tol * 0.9999 * if at % 2 == 0 { 1.0 } else { -1.0 }) as f32;
        rows[at] = r;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.npy");
    common::save_f32(&p, &rows, 10);
    let pool = Pool::open(&[&p]).unwrap();
    for strategy in Strategy::ALL {
        let spec = ScoreSpec::new(strategy);
        let job = Job::new(
            spec.strategy,
            InputForm::Probs {
                renormalize: false,
                sum_tol: tol,
            },
            5,
        )
        .log_base(spec.log_base)
        .seed(spec.seed);
        let got = alpool::score(&pool, &job).unwrap();
        assert_eq!(got.len(), rows.len());
        for (i, (row, &s)) in rows.iter().zip(&got).enumerate() {
            let want = reference_score(row, job.input, spec, i as u64);
            assert_eq!(s.to_bits(), want.to_bits(), "{strategy}, row {i}");
        }
    }
}
