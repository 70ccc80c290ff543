//! Batch jobs on a persistent workspace: a full labeling cycle on real data
//! (labels revealed through files, as a person would send them), crash
//! safety under kill -9 at several points, concurrent commands, conflicts,
//! and bad label files.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use alpool::workspace::Workspace;

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_alpool"));
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run alpool")
}

fn ok(args: &[&str]) -> String {
    let o = run(args, &[]);
    assert!(o.status.success(), "{args:?}: {}", common::stderr(&o));
    common::stdout(&o)
}

/// Digits features and labels from ../shared (see `common::shared_data`).
fn shared_digits() -> Option<(PathBuf, Vec<usize>)> {
    let dir = common::shared_data("digits")?;
    let d = alpool::al::Dataset::from_npy(&dir.join("X.npy"), &dir.join("y.npy")).unwrap();
    Some((dir.join("X.npy"), d.y))
}

fn embedded() -> (PathBuf, Vec<usize>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let d = alpool::al::Dataset::digits();
    let p = dir.path().join("X.npy");
    alpool::pool::npy::save(&p, &[d.rows(), d.dim], &d.features()).unwrap();
    (p, d.y, dir)
}

const CLASSES: &str = "zero,one,two,three,four,five,six,seven,eight,nine";
fn name(c: usize) -> &'static str {
    CLASSES.split(',').nth(c).unwrap()
}

/// The ids of a CSV batch.
fn batch_ids(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().to_string())
        .collect()
}

/// A person's answer file: the true labels of `ids`.
fn answer(path: &Path, ids: &[String], y: &[usize]) {
    let mut s = String::from("id,label\n");
    for id in ids {
        s += &format!("{id},{}\n", name(y[id.parse::<usize>().unwrap()]));
    }
    std::fs::write(path, s).unwrap();
}

fn init(dir: &Path, features: &Path, y: &[usize], seed: usize) -> PathBuf {
    let ws = dir.join("ws");
    let seed_file = dir.join("seed.csv");
    let ids: Vec<String> = (0..seed).map(|i| i.to_string()).collect();
    answer(&seed_file, &ids, y);
    ok(&[
        "init",
        ws.to_str().unwrap(),
        "--features",
        features.to_str().unwrap(),
        "--classes",
        CLASSES,
        "--labels",
        seed_file.to_str().unwrap(),
    ]);
    ws
}

fn state(ws: &Path) -> (usize, Option<(i64, i64)>, Vec<alpool::workspace::Conflict>) {
    let w = Workspace::open(ws, Duration::from_secs(5)).unwrap();
    (
        w.labels().unwrap().len(),
        w.last_round().unwrap(),
        w.conflicts().unwrap(),
    )
}

#[test]
fn a_full_labeling_cycle_never_reselects_labeled_items() {
    let Some((features, y)) = shared_digits() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let ws = init(tmp.path(), &features, &y, 20);
    let w = ws.to_str().unwrap();
    let mut labeled: std::collections::HashSet<String> = (0..20).map(|i| i.to_string()).collect();
    for round in 0..4 {
        let batch = tmp.path().join(format!("batch{round}.csv"));
        ok(&["next", w, "-k", "25", "--out", batch.to_str().unwrap()]);
        let ids = batch_ids(&batch);
        assert_eq!(ids.len(), 25);
        assert!(
            ids.iter().all(|id| !labeled.contains(id)),
            "round {round} re-selected a labeled item"
        );
        let answers = tmp.path().join(format!("answers{round}.csv"));
        answer(&answers, &ids, &y);
        let out = ok(&["ingest", w, answers.to_str().unwrap()]);
        assert!(out.contains("25 new labels"), "{out}");
        labeled.extend(ids);
    }
    assert_eq!(state(&ws).0, 120);
    // Label Studio: export tasks, answer them as Label Studio exports, ingest.
    let tasks = tmp.path().join("tasks.json");
    ok(&["next", w, "-k", "5", "--out", tasks.to_str().unwrap()]);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&tasks).unwrap()).unwrap();
    let exported: Vec<serde_json::Value> = v
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(t, task)| {
            let id: usize = task["data"]["alpool_id"].as_str().unwrap().parse().unwrap();
            assert!(task["predictions"][0]["score"].is_number());
            serde_json::json!({"id": t + 1, "data": task["data"], "annotations": [{"id": 100 + t, "result": [
                {"from_name": "label", "to_name": "item", "type": "choices", "value": {"choices": [name(y[id])]}}]}]})
        })
        .collect();
    let export = tmp.path().join("ls-export.json");
    std::fs::write(&export, serde_json::to_string(&exported).unwrap()).unwrap();
    let out = ok(&["ingest", w, export.to_str().unwrap()]);
    assert!(out.contains("5 new labels"), "{out}");
    let status = ok(&["status", w]);
    assert!(
        status.contains("125 labeled") && status.contains("rounds: 5"),
        "{status}"
    );
    // The ML backend orders every task by its own score: a strategy that
    // picks batches is refused before it listens.
    let err = common::serve_refused(w, &["-s", "badge"]);
    assert!(err.contains("picks batches"), "{err}");
}

#[test]
fn killed_commands_leave_the_workspace_as_before_and_reruns_are_safe() {
    let (features, y, _keep) = embedded();
    let tmp = tempfile::tempdir().unwrap();
    let ws = init(tmp.path(), &features, &y, 20);
    let w = ws.to_str().unwrap();
    let reference = tmp.path().join("ref.csv");
    // What an uninterrupted `next` exports, computed on a copy.
    let copy = tmp.path().join("copy");
    copy_dir(&ws, &copy);
    ok(&[
        "next",
        copy.to_str().unwrap(),
        "-k",
        "10",
        "--out",
        reference.to_str().unwrap(),
    ]);

    let before = state(&ws);
    for point in [
        "next-after-train",
        "next-after-export",
        "next-before-commit",
    ] {
        let out = tmp.path().join(format!("{point}.csv"));
        let o = run(
            &["next", w, "-k", "10", "--out", out.to_str().unwrap()],
            &[("ALPOOL_CRASH_AT", point)],
        );
        assert!(!o.status.success(), "{point}: the command should have died");
        assert_eq!(state(&ws), before, "{point}: the workspace changed");
    }
    // A real kill -9 while it trains.
    let out = tmp.path().join("killed.csv");
    let mut child = Command::new(env!("CARGO_BIN_EXE_alpool"))
        .args(["next", w, "-k", "10", "--out", out.to_str().unwrap()])
        .env("ALPOOL_PAUSE_AT", "next-after-train")
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(state(&ws), before);
    // The rerun gives exactly the uninterrupted batch, once.
    let out = tmp.path().join("rerun.csv");
    ok(&["next", w, "-k", "10", "--out", out.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        std::fs::read_to_string(&reference).unwrap()
    );
    ok(&["next", w, "-k", "10", "--out", out.to_str().unwrap()]);
    assert_eq!(
        state(&ws).1.unwrap().0,
        0,
        "a rerun without new labels adds no round"
    );

    // ingest killed mid-transaction: nothing applied; the rerun applies all.
    let answers = tmp.path().join("answers.csv");
    answer(&answers, &batch_ids(&out), &y);
    let o = run(
        &["ingest", w, answers.to_str().unwrap()],
        &[("ALPOOL_CRASH_AT", "ingest-mid-transaction")],
    );
    assert!(!o.status.success());
    assert_eq!(state(&ws).0, 20);
    ok(&["ingest", w, answers.to_str().unwrap()]);
    ok(&["ingest", w, answers.to_str().unwrap()]);
    assert_eq!(state(&ws).0, 30);

    // init killed before its rename: no workspace, and init works after.
    let ws2 = tmp.path().join("ws2");
    let o = run(
        &[
            "init",
            ws2.to_str().unwrap(),
            "--features",
            features.to_str().unwrap(),
            "--classes",
            CLASSES,
        ],
        &[("ALPOOL_CRASH_AT", "init-before-rename")],
    );
    assert!(!o.status.success());
    assert!(!ws2.exists());
    ok(&[
        "init",
        ws2.to_str().unwrap(),
        "--features",
        features.to_str().unwrap(),
        "--classes",
        CLASSES,
    ]);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn a_second_command_waits_or_fails_clearly() {
    let (features, y, _keep) = embedded();
    let tmp = tempfile::tempdir().unwrap();
    let ws = init(tmp.path(), &features, &y, 20);
    let w = ws.to_str().unwrap().to_string();
    let a = tmp.path().join("a.csv");
    let b = tmp.path().join("b.csv");
    answer(&a, &["100".into(), "101".into()], &y);
    answer(&b, &["200".into()], &y);
    // The first holds the write transaction for 3 s.
    let first = Command::new(env!("CARGO_BIN_EXE_alpool"))
        .args(["ingest", &w, a.to_str().unwrap()])
        .env("ALPOOL_PAUSE_AT", "ingest-mid-transaction")
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let o = run(&["ingest", &w, b.to_str().unwrap(), "--wait", "0"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        common::stderr(&o).contains("another alpool command"),
        "{}",
        common::stderr(&o)
    );
    let o = run(&["ingest", &w, b.to_str().unwrap(), "--wait", "20"], &[]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert!(first.wait_with_output().unwrap().status.success());
    assert_eq!(state(&ws).0, 23);
}

#[test]
fn conflicts_are_kept_apart_or_overwritten_and_bad_files_change_nothing() {
    let (features, y, _keep) = embedded();
    let tmp = tempfile::tempdir().unwrap();
    let ws = init(tmp.path(), &features, &y, 20);
    let w = ws.to_str().unwrap();
    let f = |n: &str, s: &str| {
        let p = tmp.path().join(n);
        std::fs::write(&p, s).unwrap();
        p.to_str().unwrap().to_string()
    };
    let wrong = name((y[3] + 1) % 10);
    let conflict = f("conflict.csv", &format!("id,label\n3,{wrong}\n"));
    let out = ok(&["ingest", w, &conflict]);
    assert!(out.contains("1 conflicts"), "{out}");
    let (n, _, conflicts) = state(&ws);
    assert_eq!((n, conflicts.len()), (20, 1));
    let status = ok(&["status", w]);
    assert!(
        status.contains("open conflicts, kept apart (1;"),
        "{status}"
    );
    let stored = Workspace::open(&ws, Duration::from_secs(1))
        .unwrap()
        .labels()
        .unwrap()[3]
        .class;
    assert_eq!(stored, y[3], "the original label stays");
    let out = ok(&["ingest", w, &conflict, "--overwrite"]);
    assert!(out.contains("1 overwritten"), "{out}");
    let stored = Workspace::open(&ws, Duration::from_secs(1))
        .unwrap()
        .labels()
        .unwrap()[3]
        .class;
    assert_eq!(name(stored), wrong);
    let (_, _, open) = state(&ws);
    assert!(open.is_empty(), "the overwrite resolved the conflict");
    let status = ok(&["status", w]);
    assert!(
        status.contains("no open conflicts (1 resolved in the history)"),
        "{status}"
    );

    for (file, content, needles) in [
        (
            "unknown_id.csv",
            "id,label\n50,one\nnope,two\n".to_string(),
            vec!["line 3", "unknown item id \"nope\""],
        ),
        (
            "unknown_class.csv",
            "id,label\n50,one\n51,eleven\n".to_string(),
            vec!["line 3", "unknown class \"eleven\""],
        ),
        ("empty.csv", String::new(), vec!["empty"]),
        (
            "header.csv",
            "item,class\n50,one\n".to_string(),
            vec!["line 1", "id,label"],
        ),
    ] {
        let p = f(file, &content);
        let o = run(&["ingest", w, &p], &[]);
        assert_eq!(o.status.code(), Some(1), "{file}");
        for n in needles {
            assert!(
                common::stderr(&o).contains(n),
                "{file}: {}",
                common::stderr(&o)
            );
        }
    }
    let latin1 = tmp.path().join("latin1.csv");
    std::fs::write(&latin1, b"id,label\n50,one\n51,caf\xe9\n").unwrap();
    let o = run(&["ingest", w, latin1.to_str().unwrap()], &[]);
    assert!(
        common::stderr(&o).contains("line 3") && common::stderr(&o).contains("UTF-8"),
        "{}",
        common::stderr(&o)
    );
    assert_eq!(state(&ws).0, 20, "a rejected file applies nothing");
}

/// Label Studio tasks: alpool's keys, the item data, one model_version for
/// every round, and scores Label Studio's ascending order serves in
/// alpool's rank order, for every strategy.
#[test]
fn label_studio_tasks_carry_data_and_sort_in_alpools_order() {
    let (features, y, _keep) = embedded();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("items.jsonl");
    let lines: String = (0..y.len())
        .map(|r| format!("{{\"id\": \"{r}\", \"image\": \"https://img.example/{r}.png\"}}\n"))
        .collect();
    std::fs::write(&data, lines).unwrap();
    let ws = tmp.path().join("ws");
    let w = ws.to_str().unwrap();
    let seed = tmp.path().join("seed.csv");
    answer(
        &seed,
        &(0..20).map(|i| i.to_string()).collect::<Vec<_>>(),
        &y,
    );
    ok(&[
        "init",
        w,
        "--features",
        features.to_str().unwrap(),
        "--classes",
        CLASSES,
        "--labels",
        seed.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]);
    let config = ok(&["labeling-config", w]);
    assert!(
        config.contains(r#"<Image name="item" value="$image"/>"#)
            && config.contains(r#"<Choices name="label" toName="item""#)
            && config.contains(r#"<Choice value="nine"/>"#),
        "{config}"
    );
    // Every item as a task, for a person to import (the live queue's tasks).
    let all = tmp.path().join("all.json");
    assert!(
        ok(&["tasks", w, "--out", all.to_str().unwrap()])
            .contains(&format!("wrote {} tasks", y.len()))
    );
    let tasks: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&all).unwrap()).unwrap();
    assert_eq!(tasks.len(), y.len());
    let token = tasks[0]["data"]["alpool_workspace"]
        .as_str()
        .unwrap()
        .to_string();
    for (r, t) in tasks.iter().enumerate() {
        assert_eq!(t["data"]["alpool_index"], r);
        assert_eq!(t["data"]["alpool_id"], r.to_string());
        assert_eq!(t["data"]["alpool_workspace"], token.as_str());
        assert_eq!(t["data"]["image"], format!("https://img.example/{r}.png"));
        assert!(t.get("predictions").is_none());
    }
    let mut versions = std::collections::HashSet::new();
    for (i, strategy) in ["margin", "entropy", "least-confidence", "ratio", "random"]
        .iter()
        .enumerate()
    {
        let out = tmp.path().join(format!("t{i}.json"));
        ok(&[
            "next",
            w,
            "-k",
            "30",
            "--strategy",
            strategy,
            "--out",
            out.to_str().unwrap(),
        ]);
        let tasks: Vec<serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        let ls: Vec<f64> = tasks
            .iter()
            .map(|t| t["predictions"][0]["score"].as_f64().unwrap())
            .collect();
        assert!(
            ls.windows(2).all(|w| w[0] <= w[1]),
            "{strategy}: Label Studio's scores must ascend with alpool's rank: {ls:?}"
        );
        for (rank, t) in tasks.iter().enumerate() {
            let d = &t["data"];
            assert_eq!(d["alpool_rank"], rank + 1);
            let row = d["alpool_index"].as_u64().unwrap();
            assert_eq!(d["alpool_id"], row.to_string());
            assert_eq!(d["image"], format!("https://img.example/{row}.png"));
            versions.insert(t["predictions"][0]["model_version"].to_string());
        }
        // A round per strategy needs new labels: answer two of the batch.
        let answers = tmp.path().join(format!("a{i}.csv"));
        let ids: Vec<String> = tasks[..2]
            .iter()
            .map(|t| t["data"]["alpool_id"].as_str().unwrap().to_string())
            .collect();
        answer(&answers, &ids, &y);
        ok(&["ingest", w, answers.to_str().unwrap()]);
    }
    assert_eq!(versions.len(), 1, "one model_version per workspace");

    // Item data that would overwrite alpool's keys, or names unknown ids,
    // is refused by line.
    for (content, needle) in [
        ("{\"id\": \"1\", \"alpool_id\": \"x\"}\n", "reserved"),
        ("{\"id\": \"1\", \"label\": \"cat\"}\n", "collides"),
        ("{\"id\": \"1\"}\n{\"id\": \"nope\"}\n", "line 2"),
        ("[1, 2]\n", "JSON object"),
        ("{\"id\": \"1\"}\n\n{\"id\": 1}\n", "line 3: id \"1\" again"),
    ] {
        std::fs::write(&data, content).unwrap();
        let o = run(
            &[
                "init",
                tmp.path().join("ws2").to_str().unwrap(),
                "--features",
                features.to_str().unwrap(),
                "--classes",
                CLASSES,
                "--data",
                data.to_str().unwrap(),
            ],
            &[],
        );
        assert!(
            !o.status.success() && common::stderr(&o).contains(needle),
            "{}",
            common::stderr(&o)
        );
        assert!(!tmp.path().join("ws2").exists(), "nothing half-made");
    }
}

/// Batches exported before the workspace token carried `data.id`, which
/// collides with Label Studio's own ids: refused, with what to do.
#[test]
fn exports_without_alpools_keys_are_refused_by_task() {
    let (features, y, _keep) = embedded();
    let tmp = tempfile::tempdir().unwrap();
    let ws = init(tmp.path(), &features, &y, 20);
    let w = ws.to_str().unwrap();
    let export = tmp.path().join("old.json");
    std::fs::write(
        &export,
        r#"[{"id": 41, "data": {"id": "3", "index": 3}, "annotations": [{"id": 1, "result": [
            {"from_name": "label", "to_name": "item", "type": "choices", "value": {"choices": ["one"]}}]}]}]"#,
    )
    .unwrap();
    let o = run(&["ingest", w, export.to_str().unwrap()], &[]);
    let err = common::stderr(&o);
    assert!(
        !o.status.success() && err.contains("Label Studio task 41") && err.contains("alpool_id"),
        "{err}"
    );
    assert_eq!(state(&ws).0, 20);
}

/// A workspace made before format 2 is upgraded when opened: a token, the
/// new tables, and its conflicts carried over.
#[test]
fn format_1_workspaces_are_upgraded_in_place() {
    let (features, y, _keep) = embedded();
    let tmp = tempfile::tempdir().unwrap();
    let ws = init(tmp.path(), &features, &y, 20);
    {
        let db = rusqlite::Connection::open(ws.join("alpool.db")).unwrap();
        db.execute_batch(
            "DROP TABLE votes; DROP TABLE skips; DROP TABLE conflicts; DROP TABLE item_data;
             ALTER TABLE rounds DROP COLUMN skips;
             DELETE FROM meta WHERE key IN ('token', 'data_keys');
             UPDATE meta SET value = '1' WHERE key = 'version';
             INSERT INTO label_events(idx, old_class, new_class, kind, source, time)
                 VALUES (3, 3, 4, 'conflict', 'old.csv', '0');",
        )
        .unwrap();
    }
    let w = Workspace::open(&ws, Duration::from_secs(1)).unwrap();
    assert_eq!(w.token().unwrap().len(), 16);
    let c = w.conflicts().unwrap();
    assert_eq!(
        (c.len(), c[0].index, c[0].proposed, c[0].source.as_str()),
        (1, 3, Some(4), "old.csv")
    );
    assert_eq!(w.label_seq().unwrap(), 20, "conflicts are not label events");
    drop(w);
    let out = tmp.path().join("b.json");
    ok(&[
        "next",
        ws.to_str().unwrap(),
        "-k",
        "5",
        "--out",
        out.to_str().unwrap(),
    ]);
}

/// `next` with a disagreement strategy: MC-dropout passes of the round's
/// model are the samples; the same inputs give the same batch; without
/// --mc-samples, or without dropout, it is refused before any training.
#[test]
fn next_runs_the_disagreement_strategies_on_mc_dropout() {
    let (features, y, _keep) = embedded();
    let batch = |tmp: &Path, extra: &[&str]| -> Output {
        let ws = init(tmp, &features, &y, 20);
        let out = tmp.join("bald.csv");
        let mut args = vec![
            "next",
            ws.to_str().unwrap(),
            "-k",
            "30",
            "--strategy",
            "bald",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        run(&args, &[])
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mc = ["--mc-samples", "6", "--dropout", "0.3"];
    for t in [&a, &b] {
        let o = batch(t.path(), &mc);
        assert!(o.status.success(), "{}", common::stderr(&o));
    }
    let (ia, ib) = (
        batch_ids(&a.path().join("bald.csv")),
        batch_ids(&b.path().join("bald.csv")),
    );
    assert_eq!(ia, ib);
    let distinct: std::collections::HashSet<&String> = ia.iter().collect();
    assert_eq!(distinct.len(), 30);
    assert!(ia.iter().all(|id| id.parse::<usize>().unwrap() >= 20));
    served_scores_are_the_rounds(&a.path().join("ws"), &a.path().join("bald.csv"), &mc);
    // A committee instead: four bootstrap learners each round, the same
    // batch from the same labels and seed.
    let (c, d) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for t in [&c, &d] {
        let o = batch(t.path(), &["--committee", "4"]);
        assert!(o.status.success(), "{}", common::stderr(&o));
    }
    let (ic, id) = (
        batch_ids(&c.path().join("bald.csv")),
        batch_ids(&d.path().join("bald.csv")),
    );
    assert_eq!(ic, id);
    assert_ne!(ic, ia, "the committee's samples are not the MC passes'");
    assert!(ic.iter().all(|id| id.parse::<usize>().unwrap() >= 20));
    for (extra, want) in [
        (&[][..], "give --mc-samples T"),
        (&["--mc-samples", "6"][..], "train it with --dropout P"),
        (&["--committee", "1"][..], "--committee T (T ≥ 2, got 1)"),
        (
            &["--committee", "3", "--mc-samples", "6", "--dropout", "0.3"][..],
            "without --mc-samples",
        ),
    ] {
        let t = tempfile::tempdir().unwrap();
        let o = batch(t.path(), extra);
        let err = common::stderr(&o);
        assert!(!o.status.success() && err.contains(want), "{err}");
        assert!(
            !ws_has_models(&t.path().join("ws")),
            "trained before refusing"
        );
    }
}

/// `next --stochastic` draws the batch: the same from the same labels and
/// seed, not the top k, the top k again at softmax β = ∞, and recorded as
/// KIND-STRATEGY; for BALD over MC-dropout passes too. A strategy that
/// picks its batch itself, or random, is refused before any training.
#[test]
fn next_draws_stochastic_batches() {
    let (features, y, _keep) = embedded();
    let batch = |strategy: &str, extra: &[&str]| -> (Output, Vec<String>, tempfile::TempDir) {
        let t = tempfile::tempdir().unwrap();
        let ws = init(t.path(), &features, &y, 20);
        let out = t.path().join("b.csv");
        let mut args = vec!["next", ws.to_str().unwrap(), "-k", "30", "-s", strategy];
        args.extend_from_slice(&["--seed", "3", "--out", out.to_str().unwrap()]);
        args.extend_from_slice(extra);
        let o = run(&args, &[]);
        let ids = if o.status.success() {
            batch_ids(&out)
        } else {
            Vec::new()
        };
        (o, ids, t)
    };
    let recorded = |t: &tempfile::TempDir| -> String {
        let db = rusqlite::Connection::open(t.path().join("ws").join("alpool.db")).unwrap();
        db.query_row("SELECT strategy FROM rounds", [], |r| r.get(0))
            .unwrap()
    };
    let mc = ["--mc-samples", "5", "--dropout", "0.3"];
    for (strategy, extra) in [("margin", &[][..]), ("bald", &mc[..])] {
        let (o, top, _t) = batch(strategy, extra);
        assert!(o.status.success(), "{}", common::stderr(&o));
        let power = [extra, &["--stochastic", "power"]].concat();
        let (o, a, ta) = batch(strategy, &power);
        assert!(o.status.success(), "{}", common::stderr(&o));
        assert!(common::stdout(&o).contains(&format!("selected by power-{strategy}")));
        assert_eq!(recorded(&ta), format!("power-{strategy}"));
        assert_eq!(a, batch(strategy, &power).1, "{strategy}: not reproducible");
        assert_ne!(a, top, "{strategy}: the top k, not a draw");
        assert_eq!(a.len(), 30);
        let cold = [extra, &["--stochastic", "softmax", "--beta", "inf"]].concat();
        assert_eq!(batch(strategy, &cold).1, top, "{strategy}: β = ∞");
    }
    for (strategy, want) in [
        ("badge", "badge picks a batch itself"),
        ("random", "random is the uniform baseline"),
    ] {
        let (o, _, t) = batch(strategy, &["--stochastic", "power"]);
        let err = common::stderr(&o);
        assert!(!o.status.success() && err.contains(want), "{err}");
        assert!(
            !ws_has_models(&t.path().join("ws")),
            "trained before refusing"
        );
    }
}

/// A retrain of `serve --stochastic` writes the batch `next --stochastic`
/// draws from the same labels and seed (and not the top k); a strategy
/// that cannot be drawn is refused before the server listens.
#[test]
fn serve_draws_the_batch_next_draws() {
    let (features, y, _keep) = embedded();
    let args = ["-k", "30", "-s", "margin", "--seed", "3"];
    let power = ["--stochastic", "power", "--beta", "2"];
    let next = |extra: &[&str]| -> Vec<String> {
        let t = tempfile::tempdir().unwrap();
        let ws = init(t.path(), &features, &y, 20);
        let out = t.path().join("b.csv");
        let w = ws.to_str().unwrap();
        ok(&[
            &["next", w, "--out", out.to_str().unwrap()][..],
            &args,
            extra,
        ]
        .concat());
        batch_ids(&out)
    };
    let t = tempfile::tempdir().unwrap();
    let ws = init(t.path(), &features, &y, 20);
    let server = common::Served::start(
        &ws,
        &[&args[..], &power, &["--retrain-every", "0"]].concat(),
    );
    let (status, body) = server.post("/train", &serde_json::json!({}));
    assert!(status < 300, "{status}: {body}");
    let file = ws.join("batches").join("next.json");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let served: Vec<String> = loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        if let Ok(tasks) = serde_json::from_str::<Vec<serde_json::Value>>(&text) {
            break tasks
                .iter()
                .map(|t| t["data"]["alpool_id"].as_str().unwrap().to_string())
                .collect();
        }
        assert!(std::time::Instant::now() < deadline, "no batch after 120 s");
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(server);
    assert_eq!(served.len(), 30);
    assert_eq!(served, next(&power), "the retrain's draw is next's");
    assert_ne!(served, next(&[]), "the top k, not a draw");
    let err = common::serve_refused(
        ws.to_str().unwrap(),
        &["-s", "badge", "--stochastic", "power"],
    );
    assert!(err.contains("badge"), "{err}");
}

/// The live queue's order under `serve --stochastic` is the draw's: its
/// first k are the batch `next --stochastic` drew for the round, as the
/// plain queue's first k are the plain batch; the two differ.
#[test]
fn a_drawn_live_queue_starts_with_the_drawn_batch() {
    use alpool::workspace::live::{PlanOptions, ranking};
    let (features, y, _keep) = embedded();
    for draw in [
        None,
        Some(alpool::Stochastic::new(alpool::StochasticKind::Power, 2.0)),
    ] {
        let t = tempfile::tempdir().unwrap();
        let ws = init(t.path(), &features, &y, 20);
        let out = t.path().join("b.csv");
        let w = ws.to_str().unwrap();
        let mut args = vec![
            "next",
            w,
            "-k",
            "30",
            "--seed",
            "3",
            "--out",
            out.to_str().unwrap(),
        ];
        if draw.is_some() {
            args.extend(["--stochastic", "power", "--beta", "2"]);
        }
        ok(&args);
        let batch: Vec<usize> = batch_ids(&out).iter().map(|i| i.parse().unwrap()).collect();
        let db = rusqlite::Connection::open(ws.join("alpool.db")).unwrap();
        let round: i64 = db
            .query_row("SELECT MAX(round) FROM rounds", [], |r| r.get(0))
            .unwrap();
        drop(db);
        let opened = Workspace::open(&ws, Duration::from_secs(5)).unwrap();
        let plan = PlanOptions {
            strategy: alpool::Strategy::Margin.into(),
            seed: 3,
            mc_samples: 0,
            stochastic: draw,
        };
        let queue: Vec<usize> = ranking(&opened, round, plan, false)
            .unwrap()
            .into_iter()
            .map(|(row, _)| row)
            .collect();
        assert_eq!(queue.len(), y.len() - 20, "every unlabeled item, once");
        assert_eq!(queue[..30], batch[..], "{draw:?}");
        if draw.is_some() {
            let plain = PlanOptions {
                stochastic: None,
                ..plan
            };
            let top = ranking(&opened, round, plain, false).unwrap();
            assert_ne!(top[..30].iter().map(|r| r.0).collect::<Vec<_>>(), batch);
        }
    }
}

/// The ML backend serving `ws` with bald over the round's MC-dropout
/// passes gives each task of the round's batch (the CSV `batch`), asked
/// for in reverse, its score in the batch, negated for Label Studio.
fn served_scores_are_the_rounds(ws: &Path, batch: &Path, mc: &[&str]) {
    let text = std::fs::read_to_string(batch).unwrap();
    let mut rows: Vec<(String, f64)> = text
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].to_string(), f[2].parse().unwrap())
        })
        .collect();
    rows.reverse();
    let token = Workspace::open(ws, Duration::from_secs(5))
        .unwrap()
        .token()
        .unwrap();
    let tasks: Vec<serde_json::Value> = rows
        .iter()
        .map(|(id, _)| serde_json::json!({"data": {"alpool_id": id, "alpool_workspace": token}}))
        .collect();
    let extra = [&["-s", "bald", "--retrain-every", "0"][..], mc].concat();
    let server = common::Served::start(ws, &extra);
    let (status, body) = server.post("/predict", &serde_json::json!({ "tasks": tasks }));
    assert_eq!(status, 200, "{body}");
    let got: Vec<f64> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["score"].as_f64().unwrap())
        .collect();
    let want: Vec<f64> = rows.iter().map(|(_, s)| 0.0 - s).collect();
    assert_eq!(got, want);
    let err = common::serve_refused(ws.to_str().unwrap(), &["-s", "bald"]);
    assert!(err.contains("--mc-samples T"), "{err}");
}

/// Whether a workspace has saved any model.
fn ws_has_models(ws: &Path) -> bool {
    std::fs::read_dir(ws.join("models"))
        .map(|d| {
            d.flatten()
                .any(|e| e.path().extension().is_some_and(|x| x == "safetensors"))
        })
        .unwrap_or(false)
}

#[test]
fn next_runs_the_batch_strategies_on_the_models_embeddings() {
    let (features, y, _keep) = embedded();
    for s in ["coreset", "badge", "cluster-margin"] {
        // A workspace each: a round without new labels re-exports the last.
        let tmp = tempfile::tempdir().unwrap();
        let ws = init(tmp.path(), &features, &y, 20);
        let w = ws.to_str().unwrap();
        let batch = tmp.path().join(format!("{s}.csv"));
        ok(&[
            "next",
            w,
            "-k",
            "30",
            "--strategy",
            s,
            "--out",
            batch.to_str().unwrap(),
        ]);
        let ids = batch_ids(&batch);
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), 30, "{s}");
        assert!(
            ids.iter().all(|id| id.parse::<usize>().unwrap() >= 20),
            "{s} picked a labeled item"
        );
        if s == "coreset" {
            // The same picks as the library's core-set over the saved
            // model's embedding of every item, the labeled items as centres.
            let model_dir = ws.join("models");
            let model = std::fs::read_dir(&model_dir)
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|e| e == "safetensors"))
                .unwrap();
            let m = alpool::learner::Mlp::load(&model).unwrap();
            let d = alpool::al::Dataset::digits();
            let all: Vec<usize> = (0..d.rows()).collect();
            let emb = m.embed_rows(&d.features(), &all).unwrap();
            let probs = m.predict_proba(&d.features()).unwrap();
            let mut job = alpool::Job::new(
                alpool::BatchStrategy::Coreset,
                alpool::InputForm::probs(),
                30,
            );
            job.exclusions = alpool::Exclusions::new((0..20).collect());
            let probs = alpool::Pool::from_f32(&probs, 10).unwrap();
            let emb = alpool::Pool::from_f32(&emb, m.embed_width()).unwrap();
            let inputs = alpool::Inputs::probs(&probs).with_embeddings(&emb);
            let sel = common::select_cpu(inputs, &job).unwrap();
            let want: Vec<String> = sel.indices().iter().map(|i| i.to_string()).collect();
            assert_eq!(ids, want);
        }
        // A round's temporary files are gone.
        let left: Vec<_> = std::fs::read_dir(&ws)
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(".alpool-round-")
            })
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}

#[test]
fn next_on_the_gpu_picks_the_cpus_batch() {
    let Some((features, y)) = shared_digits() else {
        return;
    };
    if common::gpu().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut batches = Vec::new();
    for device in ["cpu", "gpu"] {
        let dir = tmp.path().join(device);
        std::fs::create_dir_all(&dir).unwrap();
        let ws = init(&dir, &features, &y, 30);
        let batch = dir.join("batch.csv");
        let w = ws.to_str().unwrap();
        ok(&[
            "next",
            w,
            "-k",
            "40",
            "--device",
            device,
            "--out",
            batch.to_str().unwrap(),
        ]);
        batches.push(batch_ids(&batch));
    }
    assert_eq!(batches[0].len(), 40);
    assert_eq!(batches[0], batches[1]);
}

/// Item ids of its own: `init` reads them (and the seed labels and item
/// data that name them) a line at a time into the workspace, every command
/// looks them up there, and a bad ids file is named by line with nothing
/// created.
#[test]
fn named_ids_are_stored_looked_up_and_checked() {
    let (features, y, _keep) = embedded();
    let rows = y.len();
    let tmp = tempfile::tempdir().unwrap();
    let id = |row: usize| format!("img-{row:05}");
    let write_ids = |name: &str, ids: &[String]| {
        let p = tmp.path().join(name);
        std::fs::write(&p, ids.join("\n") + "\n").unwrap();
        p
    };
    let mut ids: Vec<String> = (0..rows).map(id).collect();
    // A blank line and spaces around an id are not ids.
    ids[7] = format!("  {}  \n", ids[7]);
    let ids_file = write_ids("ids.txt", &ids);
    let seed = tmp.path().join("seed.csv");
    let mut s = String::from("id,label\n");
    for (row, &class) in y.iter().enumerate().take(20) {
        s += &format!("{},{}\n", id(row), name(class));
    }
    std::fs::write(&seed, s).unwrap();
    let data = tmp.path().join("data.jsonl");
    std::fs::write(
        &data,
        format!("{{\"id\": \"{}\", \"image\": \"a.png\"}}\n", id(1500)),
    )
    .unwrap();
    let init_args = |ws: &Path, ids: &Path, seed: &Path| -> Vec<String> {
        [
            "init",
            ws.to_str().unwrap(),
            "--features",
            features.to_str().unwrap(),
            "--classes",
            CLASSES,
            "--ids",
            ids.to_str().unwrap(),
            "--labels",
            seed.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec()
    };
    let ws = tmp.path().join("ws");
    let w = ws.to_str().unwrap();
    let args = init_args(&ws, &ids_file, &seed);
    let out = ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.contains("20 seed labels"), "{out}");

    let batch = tmp.path().join("batch.csv");
    ok(&["next", w, "-k", "10", "--out", batch.to_str().unwrap()]);
    let text = std::fs::read_to_string(&batch).unwrap();
    let picked: Vec<(String, usize)> = text
        .lines()
        .skip(1)
        .map(|l| {
            let mut f = l.split(',');
            let i = f.next().unwrap().to_string();
            (i, f.next().unwrap().parse().unwrap())
        })
        .collect();
    assert_eq!(picked.len(), 10);
    for (i, row) in &picked {
        assert_eq!(*i, id(*row), "the batch names each row by its own id");
        assert!(*row >= 20, "a seed item was selected");
    }
    let answers = tmp.path().join("answers.csv");
    let mut s = String::from("id,label\n");
    for (i, row) in &picked {
        s += &format!("{i},{}\n", name(y[*row]));
    }
    // A seed item answered differently is a conflict, shown by its id.
    s += &format!("{},{}\n", id(3), name((y[3] + 1) % 10));
    std::fs::write(&answers, s).unwrap();
    let out = ok(&["ingest", w, answers.to_str().unwrap()]);
    assert!(
        out.contains("10 new labels") && out.contains("1 conflicts"),
        "{out}"
    );
    let status = ok(&["status", w]);
    assert!(
        status.contains(&format!("{rows} items, 30 labeled")) && status.contains(&id(3)),
        "{status}"
    );
    let w2 = Workspace::open(&ws, Duration::from_secs(5)).unwrap();
    assert_eq!(w2.items().unwrap(), rows);
    assert_eq!(
        w2.ids_of(&[0, 7, rows - 1]).unwrap(),
        [id(0), id(7), id(rows - 1)]
    );

    // Bad files: refused by file and line, and no workspace is left.
    let fails = |args: Vec<String>, needles: &[&str]| {
        let o = run(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
        let err = common::stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{err}");
        for n in needles {
            assert!(err.contains(n), "{n:?} not in: {err}");
        }
        assert!(!Path::new(&args[1]).exists(), "{err}");
    };
    let bad = tmp.path().join("bad");
    let mut twice: Vec<String> = (0..rows).map(id).collect();
    twice[4] = id(2);
    fails(
        init_args(&bad, &write_ids("twice.txt", &twice), &seed),
        &[
            "twice.txt",
            "line 5",
            "\"img-00002\" again (row 2 already has it)",
        ],
    );
    let short: Vec<String> = (0..rows - 1).map(id).collect();
    fails(
        init_args(&bad, &write_ids("short.txt", &short), &seed),
        &["short.txt", &format!("{} ids for {rows} rows", rows - 1)],
    );
    let long: Vec<String> = (0..rows + 2).map(id).collect();
    fails(
        init_args(&bad, &write_ids("long.txt", &long), &seed),
        &["long.txt", &format!("{} ids for {rows} rows", rows + 2)],
    );
    let latin = tmp.path().join("latin.txt");
    let mut bytes: Vec<u8> = Vec::new();
    for row in 0..rows {
        match row {
            2 => bytes.extend_from_slice(b"caf\xe9"),
            _ => bytes.extend_from_slice(id(row).as_bytes()),
        }
        bytes.push(b'\n');
    }
    std::fs::write(&latin, bytes).unwrap();
    fails(
        init_args(&bad, &latin, &seed),
        &["latin.txt", "line 3", "not UTF-8"],
    );
    // A seed file with a class the workspace lacks is refused before any id
    // is read: here the ids file is bad too, and the seed file is named.
    let wrong_class = tmp.path().join("wrong_class.csv");
    std::fs::write(&wrong_class, "id,label\nimg-00001,one\nimg-00002,ten\n").unwrap();
    fails(
        init_args(&bad, &latin, &wrong_class),
        &["wrong_class.csv", "line 3", "unknown class \"ten\""],
    );
    let stray = tmp.path().join("stray.csv");
    std::fs::write(&stray, "id,label\nimg-00001,one\nimg-99999,two\n").unwrap();
    fails(
        init_args(&bad, &ids_file, &stray),
        &["stray.csv", "line 3", "unknown item id \"img-99999\""],
    );
}

/// 400 two-feature items whose labels a, b, c are x0 > 0, x1 > 0 and
/// x0 + x1 > 1: each item's set, as a `|`-joined CSV label.
fn multilabel_pool(dir: &Path) -> (PathBuf, Vec<String>) {
    let mut r = crate::rng::Rng::new(12);
    let x: Vec<f32> = (0..800).map(|_| (r.uniform() * 4.0 - 2.0) as f32).collect();
    let features = dir.join("x.npy");
    alpool::pool::npy::save(&features, &[400, 2], &x).unwrap();
    let sets = x
        .chunks(2)
        .map(|p| {
            let on = [p[0] > 0.0, p[1] > 0.0, p[0] + p[1] > 1.0];
            let names: Vec<&str> = ["a", "b", "c"]
                .into_iter()
                .zip(on)
                .filter(|t| t.1)
                .map(|t| t.0)
                .collect();
            names.join("|")
        })
        .collect();
    (features, sets)
}

#[test]
fn a_multilabel_workspace_labels_sets_and_keeps_disagreement_apart() {
    let tmp = tempfile::tempdir().unwrap();
    let (features, sets) = multilabel_pool(tmp.path());
    let path = |f: &str| tmp.path().join(f).to_str().unwrap().to_string();
    let seed: String = (0..40).map(|i| format!("{i},{}\n", sets[i])).collect();
    std::fs::write(tmp.path().join("seed.csv"), format!("id,label\n{seed}")).unwrap();
    let w = &path("ws");
    let f = features.to_str().unwrap();
    ok(&[
        "init",
        w,
        "--features",
        f,
        "--classes",
        "a,b,c",
        "--multilabel",
        "--labels",
        &path("seed.csv"),
    ]);
    // The stored labels are the seed's sets, empty ones included.
    let ws = Workspace::open(Path::new(w), Duration::from_secs(1)).unwrap();
    let vocab = ws.vocab().unwrap();
    assert!(vocab.multilabel());
    let stored: Vec<String> = ws
        .labels()
        .unwrap()
        .iter()
        .map(|l| vocab.name(l.class))
        .collect();
    assert_eq!(stored, sets[..40]);
    assert!(sets[..40].iter().any(String::is_empty) && sets[..40].iter().any(|s| s.contains('|')));
    drop(ws);
    // A round: sigmoid outputs per class, adaptive by default, the
    // predicted set where each output exceeds 0.5.
    let out = ok(&[
        "next",
        w,
        "-k",
        "20",
        "--hidden",
        "16",
        "--out",
        &path("b1.csv"),
    ]);
    assert!(out.contains("20 items selected by adaptive"), "{out}");
    let batch = std::fs::read_to_string(tmp.path().join("b1.csv")).unwrap();
    let mut lines = batch.lines();
    assert_eq!(lines.next(), Some("id,index,score,predicted,p_a,p_b,p_c"));
    let mut ids = Vec::new();
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        let p: Vec<f32> = f[4..].iter().map(|v| v.parse().unwrap()).collect();
        let want: Vec<&str> = ["a", "b", "c"]
            .into_iter()
            .zip(&p)
            .filter(|t| *t.1 > 0.5)
            .map(|t| t.0)
            .collect();
        assert_eq!(f[3], want.join("|"), "{line}");
        assert!(
            f[0].parse::<usize>().unwrap() >= 40,
            "a labeled item was selected: {line}"
        );
        ids.push(f[0].to_string());
    }
    assert_eq!(ids.len(), 20);
    // Label Studio: the same batch as tasks, each prediction the set.
    ok(&[
        "next",
        w,
        "-k",
        "20",
        "--hidden",
        "16",
        "--out",
        &path("b1.json"),
    ]);
    let tasks: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("b1.json")).unwrap())
            .unwrap();
    let tasks = tasks.as_array().unwrap();
    for (t, id) in tasks.iter().zip(&ids) {
        assert_eq!(t["data"]["alpool_id"].as_str().unwrap(), id);
        let choices = &t["predictions"][0]["result"][0]["value"]["choices"];
        assert!(choices.is_array(), "{t}");
    }
    let config = ok(&["labeling-config", w]);
    assert!(
        config.contains("choice=\"multiple\"") && !config.contains("required"),
        "{config}"
    );
    // Annotations as Label Studio exports them: the first ten tasks by one
    // annotator with the true set; task 10 by two who tick different sets;
    // task 11 submitted empty (no class applies).
    let choices = |s: &str| -> serde_json::Value {
        let names: Vec<&str> = s.split('|').filter(|n| !n.is_empty()).collect();
        serde_json::json!([{"from_name": "label", "to_name": "item", "type": "choices", "value": {"choices": names}}])
    };
    let exported: Vec<serde_json::Value> = tasks[..12]
        .iter()
        .enumerate()
        .map(|(t, task)| {
            let id: usize = task["data"]["alpool_id"].as_str().unwrap().parse().unwrap();
            let anns = match t {
                10 => vec![
                    serde_json::json!({"id": 500, "result": choices("a|b")}),
                    serde_json::json!({"id": 501, "result": choices("a")}),
                ],
                11 => vec![serde_json::json!({"id": 502, "result": []})],
                _ => vec![serde_json::json!({"id": 400 + t, "result": choices(&sets[id])})],
            };
            serde_json::json!({"id": t + 1, "data": task["data"], "annotations": anns})
        })
        .collect();
    std::fs::write(
        tmp.path().join("ls.json"),
        serde_json::to_string(&exported).unwrap(),
    )
    .unwrap();
    let out = ok(&["ingest", w, &path("ls.json")]);
    assert!(
        out.contains("11 new labels") && out.contains("1 conflict"),
        "{out}"
    );
    let status = ok(&["status", w]);
    assert!(
        status.contains("51 labeled") && status.contains("multi-label"),
        "{status}"
    );
    assert!(
        status.contains("annotators disagree (a 1, a|b 1"),
        "{status}"
    );
    let ws = Workspace::open(Path::new(w), Duration::from_secs(1)).unwrap();
    let empty_id: usize = tasks[11]["data"]["alpool_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let stored = ws.labels().unwrap();
    assert_eq!(
        stored.iter().find(|l| l.index == empty_id).unwrap().class,
        0
    );
    drop(ws);
    // The next round trains on them and leaves every labeled item out.
    ok(&[
        "next",
        w,
        "-k",
        "30",
        "--strategy",
        "mean-entropy",
        "--hidden",
        "16",
        "--out",
        &path("b2.csv"),
    ]);
    let b2 = std::fs::read_to_string(tmp.path().join("b2.csv")).unwrap();
    let labeled: Vec<String> = tasks[..12]
        .iter()
        .map(|t| t["data"]["alpool_id"].as_str().unwrap().to_string())
        .collect();
    for line in b2.lines().skip(1) {
        let id = line.split(',').next().unwrap();
        assert!(
            !labeled[..10].contains(&id.to_string()) && !labeled[11..].contains(&id.to_string()),
            "{line}"
        );
    }
    // A softmax strategy, an unknown class in a set: named.
    let o = run(
        &[
            "next",
            w,
            "-k",
            "5",
            "--strategy",
            "margin",
            "--out",
            &path("b3.csv"),
        ],
        &[],
    );
    assert!(
        common::stderr(&o).contains("the workspace is multi-label"),
        "{}",
        common::stderr(&o)
    );
    assert!(!tmp.path().join("b3.csv").exists());
    std::fs::write(tmp.path().join("bad.csv"), "id,label\n300,a|z\n").unwrap();
    let o = run(&["ingest", w, &path("bad.csv")], &[]);
    assert!(
        common::stderr(&o).contains("line 2") && common::stderr(&o).contains("unknown class \"z\""),
        "{}",
        common::stderr(&o)
    );
    // A CSV answer of sets is ingested as sets.
    std::fs::write(
        tmp.path().join("more.csv"),
        format!("id,label\n300,{}\n301,{}\n", sets[300], sets[301]),
    )
    .unwrap();
    let out = ok(&["ingest", w, &path("more.csv")]);
    assert!(out.contains("2 new labels"), "{out}");
    // The ML backend serves it with a multi-label strategy (adaptive by
    // default; python/tests/test_live.py runs it), and refuses, before
    // listening, a strategy of another kind.
    for (strategy, says) in [
        ("margin", "the workspace is multi-label"),
        ("badge", "the workspace is multi-label"),
    ] {
        let err = common::serve_refused(w, &["-s", strategy]);
        assert!(err.contains(says), "{strategy}: {err}");
    }
}
