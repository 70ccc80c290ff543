//! Exact selection across machines: the merge of the parts of any split of
//! a pool equals selecting from the whole pool, ties across shard
//! boundaries included; and `alpool merge` refuses parts that do not belong
//! together, each with a clear message.

use crate::common;

use std::path::{Path, PathBuf};

use crate::rng::Rng;
use alpool::part::{self, PartHeader};
use alpool::pool::Exclusions;
use alpool::{Device, InputForm, Job, Pool, Stochastic, StochasticKind, Strategy};
use proptest::prelude::*;

/// Rows from a handful of distinct ones: many exact ties.
fn tied_rows(n: usize, classes: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let base: Vec<Vec<f32>> = (0..4)
        .map(|_| {
            let r: Vec<f64> = (0..classes).map(|_| rng.below(5) as f64 + 1.0).collect();
            let s: f64 = r.iter().sum();
            r.iter().map(|x| (x / s) as f32).collect()
        })
        .collect();
    (0..n)
        .flat_map(|_| base[rng.below(4) as usize].clone())
        .collect()
}

/// Selects each shard as its own machine would and writes its part.
fn parts_of(
    dir: &Path,
    x: &[f32],
    classes: usize,
    cuts: &[usize],
    job: &Job,
    exclude: &Exclusions,
    part_k: usize,
) -> Vec<PathBuf> {
    let n = x.len() / classes;
    let mut bounds = vec![0];
    bounds.extend(cuts.iter().map(|&c| c.min(n)));
    bounds.push(n);
    bounds.sort();
    let mut paths = Vec::new();
    for (i, w) in bounds.windows(2).enumerate() {
        let (a, b) = (w[0], w[1]);
        let pool = Pool::from_f32(&x[a * classes..b * classes], classes)
            .unwrap()
            .with_row_offset(a as u64);
        let mut shard_job = job.clone();
        shard_job.k = part_k;
        shard_job.exclusions = exclude.restrict(a as u64, (b - a) as u64);
        let sel = alpool::select(&pool, &shard_job, &alpool::Run::on(Device::Cpu))
            .map(|o| o.selection)
            .unwrap();
        let header = PartHeader::of(&shard_job, a as u64, &sel, part_k).unwrap();
        let path = dir.join(format!("part-{i}.alpart"));
        alpool::report::save_part(&sel, &header, &path).unwrap();
        paths.push(path);
    }
    paths
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

    #[test]
    fn the_merge_of_any_split_equals_the_whole(
        n in 0usize..120,
        classes in 2usize..6,
        seed in any::<u64>(),
        st in 0usize..5,
        k_pick in 0usize..6,
        cuts in prop::collection::vec(0usize..120, 0..6),
        excl in prop::collection::vec(0u64..120, 0..12),
        logits in any::<bool>(),
        drawn in 0usize..4,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let x = tied_rows(n, classes, seed);
        let k = [0, 1, 7, n / 2, n, n + 3][k_pick];
        let exclude = Exclusions::new(excl.into_iter().filter(|&e| (e as usize) < n).collect());
        let input = if logits {
            InputForm::Logits { temperature: 0.7 }
        } else {
            InputForm::probs()
        };
        let mut job = Job::new(Strategy::ALL[st], input, k).seed(seed);
        job.exclusions = exclude.clone();
        // The plain top k, or a stochastic batch whose keys are each row's
        // own (softrank ranks the whole pool and writes no parts).
        job.stochastic = [
            None,
            Some(Stochastic::new(StochasticKind::Softmax, 1.0)),
            Some(Stochastic::new(StochasticKind::Power, 2.5)),
            Some(Stochastic::new(StochasticKind::Softmax, f64::INFINITY)),
        ][drawn];
        let whole = alpool::select(&Pool::from_f32(&x, classes).unwrap(), &job, &alpool::Run::on(Device::Cpu)).map(|o| o.selection).unwrap();
        let paths = parts_of(dir.path(), &x, classes, &cuts, &job, &exclude, k);
        let merged = part::merge(&paths, k).unwrap();
        prop_assert_eq!(&merged.entries, &whole.entries);
        prop_assert_eq!(merged.rows, n as u64);
        // The parts' order on the command line does not matter.
        let mut rev = paths.clone();
        rev.reverse();
        prop_assert_eq!(&part::merge(&rev, k).unwrap().entries, &whole.entries);
    }
}

fn setup(dir: &Path) -> (Vec<f32>, Job) {
    let x = tied_rows(200, 3, 5);
    let job = Job::new(Strategy::Margin, InputForm::probs(), 20);
    let _ = dir;
    (x, job)
}

#[test]
fn merge_refuses_parts_that_do_not_belong_together() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (x, job) = setup(d);
    let none = Exclusions::default();
    let good = parts_of(d, &x, 3, &[100], &job, &none, 20);
    let cli = |args: &[&str]| {
        let o = common::alpool(args);
        (o.status.code(), common::stderr(&o), common::stdout(&o))
    };
    let p = |p: &PathBuf| p.to_string_lossy().into_owned();
    let (code, _, out) = cli(&["merge", &p(&good[0]), &p(&good[1]), "-k", "20"]);
    assert_eq!(code, Some(0));
    assert_eq!(out.lines().count(), 21);

    // Another strategy.
    let other = d.join("other");
    std::fs::create_dir(&other).unwrap();
    let ent = Job::new(Strategy::Entropy, InputForm::probs(), 20);
    let e = parts_of(&other, &x, 3, &[100], &ent, &none, 20);
    let (code, err, _) = cli(&["merge", &p(&good[0]), &p(&e[1]), "-k", "20"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("strategy entropy") && err.contains("has margin"),
        "{err}"
    );

    // Another seed (random), and another input form.
    let seeds = d.join("seeds");
    std::fs::create_dir(&seeds).unwrap();
    let r1 = Job::new(Strategy::Random, InputForm::probs(), 20).seed(1);
    let r2 = Job::new(Strategy::Random, InputForm::probs(), 20).seed(2);
    let a = parts_of(&seeds, &x, 3, &[100], &r1, &none, 20);
    let b_dir = d.join("seeds2");
    std::fs::create_dir(&b_dir).unwrap();
    let b = parts_of(&b_dir, &x, 3, &[100], &r2, &none, 20);
    let (_, err, _) = cli(&["merge", &p(&a[0]), &p(&b[1]), "-k", "20"]);
    assert!(err.contains("seed 2") && err.contains("has 1"), "{err}");
    let l_dir = d.join("logits");
    std::fs::create_dir(&l_dir).unwrap();
    let lj = Job::new(Strategy::Margin, InputForm::Logits { temperature: 2.0 }, 20);
    let l = parts_of(&l_dir, &x, 3, &[100], &lj, &none, 20);
    let (_, err, _) = cli(&["merge", &p(&good[0]), &p(&l[1]), "-k", "20"]);
    assert!(err.contains("input logits at temperature 2"), "{err}");

    // Overlapping rows: the same shard twice.
    let (_, err, _) = cli(&["merge", &p(&good[0]), &p(&good[0]), "-k", "20"]);
    assert!(err.contains("overlap rows 0..100"), "{err}");

    // A part selected with a smaller k than the merge asks for.
    let (_, err, _) = cli(&["merge", &p(&good[0]), &p(&good[1]), "-k", "30"]);
    assert!(
        err.contains("holds 20 rows") && err.contains("k = 30"),
        "{err}"
    );
    // ...but a shard with fewer selectable rows than k is complete.
    let small = d.join("small");
    std::fs::create_dir(&small).unwrap();
    let s = parts_of(&small, &x, 3, &[195], &job, &none, 1000);
    let (code, _, out) = cli(&["merge", &p(&s[0]), &p(&s[1]), "-k", "1000"]);
    assert_eq!(code, Some(0));
    assert_eq!(out.lines().count(), 201);

    // Damaged: truncated, not a part, empty list.
    let bytes = std::fs::read(&good[1]).unwrap();
    let cut = d.join("cut.alpart");
    std::fs::write(&cut, &bytes[..bytes.len() - 5]).unwrap();
    let (_, err, _) = cli(&["merge", &p(&good[0]), &p(&cut), "-k", "20"]);
    assert!(
        err.contains("cut.alpart") && err.contains("truncated"),
        "{err}"
    );
    let junk = d.join("junk.alpart");
    std::fs::write(&junk, b"rank,index,score\n").unwrap();
    let (_, err, _) = cli(&["merge", &p(&junk), "-k", "20"]);
    assert!(err.contains("not an alpool part file"), "{err}");
    let (code, _, _) = cli(&["merge", "-k", "20"]);
    assert_eq!(code, Some(2));
    // A part as merge's output is refused before any work.
    let (_, err, _) = cli(&[
        "merge",
        &p(&good[0]),
        "-k",
        "2",
        "--out",
        &p(&d.join("x.alpart")),
    ]);
    assert!(err.contains("not a part"), "{err}");
}

#[test]
fn select_with_a_row_offset_writes_global_rows_and_reads_global_exclusions() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let x = tied_rows(300, 4, 8);
    let rows: Vec<Vec<f32>> = x.chunks(4).map(|r| r.to_vec()).collect();
    common::save_f32(&d.join("a.npy"), &rows[..120], 4);
    common::save_f32(&d.join("b.npy"), &rows[120..], 4);
    common::save_f32(&d.join("all.npy"), &rows, 4);
    // Global exclusions, some on each machine.
    std::fs::write(d.join("labeled.txt"), "3\n119\n120\n121\n299\n").unwrap();
    let s = |n: &str| d.join(n).to_string_lossy().into_owned();
    for (file, offset, out) in [("a.npy", "0", "a.alpart"), ("b.npy", "120", "b.alpart")] {
        let o = common::alpool(&[
            "select",
            &s(file),
            "--strategy",
            "entropy",
            "-k",
            "25",
            "--row-offset",
            offset,
            "--exclude",
            &s("labeled.txt"),
            "--out",
            &s(out),
        ]);
        assert!(o.status.success(), "{}", common::stderr(&o));
    }
    let merged = common::alpool(&["merge", &s("a.alpart"), &s("b.alpart"), "-k", "25"]);
    let whole = common::alpool(&[
        "select",
        &s("all.npy"),
        "--strategy",
        "entropy",
        "-k",
        "25",
        "--exclude",
        &s("labeled.txt"),
    ]);
    assert!(merged.status.success(), "{}", common::stderr(&merged));
    assert_eq!(common::stdout(&merged), common::stdout(&whole));
    // CSV output with an offset carries global rows.
    let o = common::alpool(&["select", &s("b.npy"), "-k", "300", "--row-offset", "120"]);
    let idx: Vec<u64> = common::stdout(&o)
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(idx.len(), 180);
    assert!(idx.iter().all(|&i| (120..300).contains(&i)));
}
