//! The `alpool` command end to end: outputs, edge cases of k and N, and
//! every kind of bad input (message, exit code, and no file left behind).

use std::path::Path;

use crate::common::{alpool, f32_bytes, files_in, save_f32, save_raw, stderr, stdout};

fn textbook(dir: &Path) -> String {
    let p = dir.join("textbook.npy");
    save_f32(&p, &[vec![0.9, 0.09, 0.01], vec![0.2, 0.5, 0.3]], 3);
    p.to_str().unwrap().to_string()
}

#[test]
fn textbook_example_every_strategy_selects_d2_first() {
    let dir = tempfile::tempdir().unwrap();
    let pool = textbook(dir.path());
    for (strategy, want) in [
        ("least-confidence", [0.5, 0.1]),
        ("margin", [0.2, 0.81]),
        ("ratio", [0.6, 0.1]),
    ] {
        let o = alpool(&["select", &pool, "-s", strategy, "-k", "2"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let lines: Vec<String> = stdout(&o).lines().map(String::from).collect();
        assert_eq!(lines[0], "rank,index,score");
        let row = |l: &str| -> (u64, f64) {
            let f: Vec<&str> = l.split(',').collect();
            (f[1].parse().unwrap(), f[2].parse().unwrap())
        };
        let (i1, s1) = row(&lines[1]);
        let (i2, s2) = row(&lines[2]);
        assert_eq!((i1, i2), (1, 0), "{strategy}");
        // Stored as float32, so compare to 1e-6.
        assert!(
            (s1 - want[0]).abs() < 1e-6 && (s2 - want[1]).abs() < 1e-6,
            "{strategy}: {s1} {s2}"
        );
    }
    let o = alpool(&[
        "select",
        &pool,
        "-s",
        "entropy",
        "--log-base",
        "10",
        "-k",
        "2",
    ]);
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[1].starts_with("1,1,0.447"), "{out}");
    assert!(lines[2].starts_with("2,0,0.155"), "{out}");
}

#[test]
fn output_formats_and_edge_cases_of_k_and_n() {
    let dir = tempfile::tempdir().unwrap();
    let pool = dir.path().join("p.npy");
    let rows: Vec<Vec<f32>> = (0..50)
        .map(|i| {
            let mut r = vec![0f32; 4];
            alpool::bench::synth::softmax_row(1, i, &mut r);
            r
        })
        .collect();
    save_f32(&pool, &rows, 4);
    let pool = pool.to_str().unwrap();
    let out = |name: &str| dir.path().join(name).to_str().unwrap().to_string();

    // CSV, JSON lines and .npy agree.
    assert!(
        alpool(&["select", pool, "-k", "7", "--out", &out("a.csv")])
            .status
            .success()
    );
    assert!(
        alpool(&["select", pool, "-k", "7", "--out", &out("a.jsonl")])
            .status
            .success()
    );
    assert!(
        alpool(&["select", pool, "-k", "7", "--out", &out("a.npy")])
            .status
            .success()
    );
    let csv = std::fs::read_to_string(out("a.csv")).unwrap();
    let csv_idx: Vec<i64> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    let jsonl = std::fs::read_to_string(out("a.jsonl")).unwrap();
    let json_idx: Vec<i64> = jsonl
        .lines()
        .map(|l| {
            let s = l.split("\"index\":").nth(1).unwrap();
            s.split(',').next().unwrap().parse().unwrap()
        })
        .collect();
    let npy = std::fs::read(out("a.npy")).unwrap();
    let npy_idx: Vec<i64> = npy[npy.len() - 56..]
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(csv_idx.len(), 7);
    assert_eq!(csv_idx, json_idx);
    assert_eq!(csv_idx, npy_idx);

    // k = 0: the header only. k ≥ N: every row, ranked.
    let o = alpool(&["select", pool, "-k", "0"]);
    assert_eq!(stdout(&o), "rank,index,score\n");
    let o = alpool(&["select", pool, "-k", "1000"]);
    let mut idx: Vec<u64> = stdout(&o)
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(idx.len(), 50);
    idx.sort();
    assert_eq!(idx, (0..50).collect::<Vec<_>>());
    let all = alpool(&["select", pool, "--all"]);
    assert_eq!(stdout(&all), stdout(&o));

    // N = 0: a valid, empty pool.
    let empty = dir.path().join("empty.npy");
    save_f32(&empty, &[], 4);
    let o = alpool(&["select", empty.to_str().unwrap(), "-k", "5"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "rank,index,score\n");

    // Exclusions are never selected; text and .npy lists agree.
    std::fs::write(
        out("ex.txt"),
        format!("# labeled\n{}\n\n{}\n", csv_idx[0], csv_idx[3]),
    )
    .unwrap();
    alpool::pool::npy::save(Path::new(&out("ex.npy")), &[2], &[csv_idx[0], csv_idx[3]]).unwrap();
    let a = alpool(&["select", pool, "-k", "7", "--exclude", &out("ex.txt")]);
    let b = alpool(&["select", pool, "-k", "7", "--exclude", &out("ex.npy")]);
    assert!(a.status.success(), "{}", stderr(&a));
    assert_eq!(stdout(&a), stdout(&b));
    let ex_idx: Vec<i64> = stdout(&a)
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    assert!(!ex_idx.contains(&csv_idx[0]) && !ex_idx.contains(&csv_idx[3]));
    assert_eq!(ex_idx[..2], [csv_idx[1], csv_idx[2]]);
}

#[test]
fn score_writes_every_rows_score() {
    let dir = tempfile::tempdir().unwrap();
    let pool = textbook(dir.path());
    let out = dir.path().join("s.npy");
    let o = alpool(&[
        "score",
        &pool,
        "-s",
        "entropy",
        "--log-base",
        "10",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let bytes = std::fs::read(&out).unwrap();
    let h = alpool::pool::npy::parse_header(&out, &bytes, &[alpool::pool::npy::DType::F64], "")
        .unwrap();
    assert_eq!(h.shape, [2]);
    let v: Vec<f64> = bytes[h.data_offset..]
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert!(
        (v[0] - 0.1553).abs() < 1e-3 && (v[1] - 0.4472).abs() < 1e-3,
        "{v:?}"
    );
}

/// Runs a command that must fail: exit code 1, a message containing every
/// `needle`, and no file written to the output folder.
fn fails(args: &[&str], needles: &[&str]) {
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("batch.csv");
    let mut all: Vec<&str> = args.to_vec();
    let out_s = out.to_str().unwrap().to_string();
    all.extend(["--out", &out_s]);
    let o = alpool(&all);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: {err:?} lacks {n:?}");
    }
    assert!(
        files_in(out_dir.path()).is_empty(),
        "{args:?} left {:?}",
        files_in(out_dir.path())
    );
}

#[test]
fn bad_inputs_fail_clearly_and_leave_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let path = |n: &str| d.join(n).to_str().unwrap().to_string();
    let good = vec![vec![0.5f32, 0.5], vec![0.25, 0.75], vec![1.0, 0.0]];

    // Truncated.
    let p = path("trunc.npy");
    save_f32(Path::new(&p), &good, 2);
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 3]).unwrap();
    fails(
        &["select", &p],
        &["trunc.npy", "truncated", "24 data bytes"],
    );

    // Wrong dtype, Fortran order, not 2-D.
    save_raw(
        Path::new(&path("i8.npy")),
        "{'descr': '<i8', 'fortran_order': False, 'shape': (1, 2), }",
        &[0u8; 16],
    );
    fails(
        &["select", &path("i8.npy")],
        &["i8.npy", "unsupported dtype", "<i8", "float64"],
    );
    save_raw(
        Path::new(&path("fort.npy")),
        "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }",
        &f32_bytes(&[0.5; 4]),
    );
    fails(&["select", &path("fort.npy")], &["fort.npy", "Fortran"]);
    save_raw(
        Path::new(&path("one.npy")),
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }",
        &f32_bytes(&[0.5; 2]),
    );
    fails(&["select", &path("one.npy")], &["one.npy", "2-D", "[2]"]);
    save_raw(
        Path::new(&path("three.npy")),
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 2), }",
        &f32_bytes(&[0.5; 2]),
    );
    fails(&["select", &path("three.npy")], &["three.npy", "2-D"]);
    std::fs::write(path("text.npy"), "rank,index\n").unwrap();
    fails(
        &["select", &path("text.npy")],
        &["text.npy", "not a valid .npy"],
    );
    fails(&["select", &path("missing.npy")], &["missing.npy"]);

    // Shards with different class counts; too few classes for margin.
    save_f32(Path::new(&path("c2.npy")), &good, 2);
    save_f32(Path::new(&path("c3.npy")), &[vec![0.2, 0.3, 0.5]], 3);
    fails(
        &["select", &path("c2.npy"), &path("c3.npy")],
        &["c3.npy", "3 columns", "c2.npy", "has 2"],
    );
    save_f32(Path::new(&path("c1.npy")), &[vec![1.0]], 1);
    fails(
        &["select", &path("c1.npy"), "-s", "margin"],
        &["margin", "at least 2 classes"],
    );
    fails(
        &["select", &path("c1.npy"), "-s", "ratio"],
        &["ratio", "at least 2 classes"],
    );

    // Bad values: the file, the row (local and global) and the reason.
    let mut rows = good.clone();
    rows.push(vec![f32::NAN, 1.0]);
    save_f32(Path::new(&path("nan.npy")), &rows, 2);
    for s in ["margin", "entropy", "random", "least-confidence", "ratio"] {
        fails(
            &["select", &path("c2.npy"), &path("nan.npy"), "-s", s],
            &["nan.npy", "row 3 (global row 6)", "NaN"],
        );
    }
    fails(
        &["select", &path("nan.npy"), "--input", "logits"],
        &["nan.npy", "row 3", "NaN"],
    );
    rows[3] = vec![f32::INFINITY, 0.0];
    save_f32(Path::new(&path("inf.npy")), &rows, 2);
    fails(&["select", &path("inf.npy")], &["inf.npy", "row 3", "inf"]);
    rows[3] = vec![1.5, -0.5];
    save_f32(Path::new(&path("neg.npy")), &rows, 2);
    fails(
        &["select", &path("neg.npy")],
        &["neg.npy", "row 3", "negative"],
    );
    rows[3] = vec![0.5, 0.6];
    save_f32(Path::new(&path("sum.npy")), &rows, 2);
    fails(
        &["select", &path("sum.npy")],
        &["sum.npy", "row 3", "sum to 1.1", "--renormalize"],
    );
    let o = alpool(&["select", &path("sum.npy"), "--renormalize", "-k", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    rows[3] = vec![0.0, 0.0];
    save_f32(Path::new(&path("zero.npy")), &rows, 2);
    fails(
        &["select", &path("zero.npy"), "--renormalize"],
        &["zero.npy", "row 3", "all probabilities are 0"],
    );

    // Bad exclusion lists, options and output names.
    std::fs::write(path("ex_bad.txt"), "1\nseven\n").unwrap();
    fails(
        &["select", &path("c2.npy"), "--exclude", &path("ex_bad.txt")],
        &["ex_bad.txt", "line 2", "seven"],
    );
    std::fs::write(path("ex_far.txt"), "1\n3\n").unwrap();
    fails(
        &["select", &path("c2.npy"), "--exclude", &path("ex_far.txt")],
        &["ex_far.txt", "line 2", "outside the pool"],
    );
    fails(
        &[
            "select",
            &path("c2.npy"),
            "--input",
            "logits",
            "--temperature",
            "0",
        ],
        &["temperature"],
    );
    let o = alpool(&["select", &path("c2.npy"), "--out", &path("batch.parquet")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("unknown output format"),
        "{}",
        stderr(&o)
    );
    assert!(!Path::new(&path("batch.parquet")).exists());
}

#[test]
fn help_explains_the_commands() {
    let o = alpool(&["select", "--help"]);
    let h = stdout(&o);
    for word in [
        "--strategy",
        "least-confidence",
        "--exclude",
        "--input",
        "--renormalize",
        "--log-base",
        ".jsonl",
    ] {
        assert!(h.contains(word), "select --help lacks {word}");
    }
}

/// Outputs are written under a temporary name and renamed, but end up with
/// the mode any new file gets (0666 less the umask), not a private 0600.
#[cfg(unix)]
#[test]
fn outputs_get_the_usual_file_mode() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let pool = textbook(dir.path());
    let out = dir.path().join("batch.csv");
    let o = alpool(&["select", &pool, "-k", "1", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let reference = dir.path().join("reference.txt");
    std::fs::write(&reference, "x").unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&out), mode(&reference));
}
