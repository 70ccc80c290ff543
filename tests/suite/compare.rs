//! `alpool compare`: the protocol's settings as documented, the report
//! page in a real headless browser against the JSON beside it, and bad
//! input refused before anything is written.

use std::path::{Path, PathBuf};
use std::process::Command;

use alpool::al::Dataset;
use alpool::compare::{self, Initial, Overrides, Protocol};
use alpool::learner::MlpConfig;
use alpool::{Method, Query, Strategy};

use crate::common::{Served, alpool, shared_data, stderr};

fn digits_args(dir: &Path) -> Vec<String> {
    vec![
        "--features".into(),
        dir.join("X.npy").display().to_string(),
        "--labels".into(),
        dir.join("y.npy").display().to_string(),
    ]
}

#[test]
fn runs_follow_the_protocol_and_pair_by_restart() {
    let data = Dataset::digits();
    let o = Overrides {
        restarts: Some(2),
        initial: Some(Initial::PerClass(2)),
        batch_size: Some(7),
        budget: Some(48),
        ..Overrides::default()
    };
    let p = Protocol::resolve("alpool", &o).unwrap();
    assert_eq!(p.name, "custom");
    let strategies: Vec<Method> = vec![Strategy::Random.into(), Strategy::Margin.into()];
    let mlp = MlpConfig {
        epochs: 3,
        min_steps: 20,
        ..MlpConfig::default()
    };
    // MC dropout instead of a committee: refused without dropout before any
    // run; with it, a samples strategy runs, the same on a second call.
    let bald: Vec<Method> = vec![Query::from(alpool::Disagreement::Bald).into()];
    let mc = |mlp: MlpConfig| compare::run(&data, &p, &bald, (5, mlp, (0, 4)), &alpool::Silent);
    let e = mc(mlp.clone()).err().unwrap().to_string();
    assert!(e.contains("--dropout P"), "{e}");
    let drop = MlpConfig {
        dropout: 0.3,
        ..mlp.clone()
    };
    let (a, b) = (mc(drop.clone()).unwrap(), mc(drop).unwrap());
    let picks = |r: &[alpool::al::simulate::Run]| -> Vec<Vec<usize>> {
        r.iter().map(|x| x.result.labeled.clone()).collect()
    };
    assert_eq!(picks(&a), picks(&b));
    let runs = compare::run(&data, &p, &strategies, (5, mlp, (0, 0)), &alpool::Silent).unwrap();
    assert_eq!(runs.len(), 4);
    for r in &runs {
        let seed = 5 + r.repeat as u64;
        let (split, initial) = compare::restart_rows(&data.y, &p, seed);
        // The documented split: round(n_c * 0.2) of each class held out.
        let mut per_class = [0usize; 10];
        data.y.iter().for_each(|&c| per_class[c] += 1);
        let want: usize = per_class
            .iter()
            .map(|&n| (n as f64 * 0.2).round() as usize)
            .sum();
        assert_eq!(split.test.len(), want);
        assert!(
            r.result
                .labeled
                .iter()
                .all(|i| split.pool.binary_search(i).is_ok())
        );
        // Two labels of each class first, the same rows for every strategy.
        assert_eq!(&r.result.labeled[..20], &initial[..]);
        let mut seen = vec![0usize; 10];
        initial.iter().for_each(|&i| seen[data.y[i]] += 1);
        assert_eq!(seen, vec![2; 10]);
        // Batches of 7 up to the budget of 48; the last batch is cut to fit.
        let labels: Vec<usize> = r.result.rounds.iter().map(|x| x.labels).collect();
        assert_eq!(labels, vec![20, 27, 34, 41, 48]);
        assert_eq!(r.result.labeled.len(), 48);
    }
}

/// Chromium from the Debian packages (ALPOOL_CHROMIUM names another); in
/// CI (ALPOOL_REQUIRE_BROWSER=1) its absence fails the test.
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("ALPOOL_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if path.exists() {
        return Some(path);
    }
    if std::env::var("ALPOOL_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
        panic!("ALPOOL_REQUIRE_BROWSER=1 but {} is missing", path.display());
    }
    eprintln!(
        "\n!!!!!! SKIPPING the browser test: no {} !!!!!!\n",
        path.display()
    );
    None
}

/// The page after its scripts ran, and Chromium's log.
fn render(browser: &Path, page: &Path) -> (String, String) {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium");
    assert!(out.status.success(), "chromium failed: {}", stderr(&out));
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr(&out),
    )
}

/// The `data-value`s of a table row's cells, in order.
fn row_values(row: &str) -> Vec<String> {
    row.split("data-value=\"")
        .skip(1)
        .map(|s| s[..s.find('"').unwrap()].to_string())
        .collect()
}

/// A JSON number or null as the page's cell writes it, parsed.
fn num(v: &serde_json::Value) -> Option<f64> {
    v.as_f64()
}

fn cell(s: &str) -> Option<f64> {
    if s.is_empty() {
        None
    } else {
        Some(s.parse().unwrap())
    }
}

#[test]
fn the_report_renders_in_chromium_and_shows_the_json() {
    let Some(dir) = shared_data("digits") else {
        return;
    };
    let Some(browser) = chromium() else { return };
    let out = tempfile::tempdir().unwrap();
    let mut args = digits_args(&dir);
    args.extend(
        [
            "--strategies",
            "random,margin,entropy",
            "--restarts",
            "3",
            "--budget",
            "60",
            "--batch-size",
            "20",
            "--epochs",
            "3",
            "--out",
        ]
        .map(String::from),
    );
    args.push(out.path().display().to_string());
    let argv: Vec<&str> = std::iter::once("compare")
        .chain(args.iter().map(String::as_str))
        .collect();
    let o = alpool(&argv);
    assert!(o.status.success(), "{}", stderr(&o));
    for f in [
        "compare.json",
        "ranking.csv",
        "pairs.csv",
        "curves.csv",
        "report.html",
    ] {
        assert!(out.path().join(f).exists(), "{f} missing");
    }
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("compare.json")).unwrap())
            .unwrap();
    let (dom, log) = render(&browser, &out.path().join("report.html"));
    assert!(!log.contains(":CONSOLE"), "console output: {log}");
    assert!(
        dom.contains("data-rendered=\"ok\""),
        "the scripts did not finish"
    );
    assert!(!dom.contains("data-errors"), "a script error was caught");
    let strategies = doc["comparison"]["strategies"].as_array().unwrap();
    assert_eq!(dom.matches("class=\"mean\"").count(), strategies.len());
    assert_eq!(dom.matches("class=\"band\"").count(), strategies.len());
    // The ranking table's cells carry the numbers they show.
    let ranking = &dom[dom.find("<table id=\"ranking\"").unwrap()..];
    let ranking = &ranking[..ranking.find("</table>").unwrap()];
    for s in strategies {
        let name = s["strategy"].as_str().unwrap();
        let row = ranking
            .split(&format!("<tr data-strategy=\"{name}\">"))
            .nth(1)
            .unwrap();
        let row = &row[..row.find("</tr>").unwrap()];
        let got: Vec<Option<f64>> = row_values(row).iter().map(|v| cell(v)).collect();
        let want = vec![
            num(&s["area_mean"]),
            num(&s["mean_rank"]),
            num(&s["final_accuracy_mean"]),
            num(&s["labels_to_target"]),
            num(&s["label_savings"]),
            num(&s["vs_random"]["p_holm"]),
            num(&s["vs_best"]["p_holm"]),
        ];
        assert_eq!(got, want, "{name}");
    }
    // Rows sorted by mean rank.
    let order: Vec<&str> = ranking
        .split("<tr data-strategy=\"")
        .skip(1)
        .map(|r| &r[..r.find('"').unwrap()])
        .collect();
    let mut by_rank: Vec<&serde_json::Value> = strategies.iter().collect();
    by_rank.sort_by(|a, b| {
        a["mean_rank"]
            .as_f64()
            .unwrap()
            .total_cmp(&b["mean_rank"].as_f64().unwrap())
    });
    let want: Vec<&str> = by_rank
        .iter()
        .map(|s| s["strategy"].as_str().unwrap())
        .collect();
    assert_eq!(order, want);
    // The paired-test matrix: each ordered pair's cell shows that pair's p.
    let pairs = &dom[dom.find("<table id=\"pairs\"").unwrap()..];
    let pairs = &pairs[..pairs.find("</table>").unwrap()];
    let mut cells = 0;
    for row in pairs.split("<tr data-strategy=\"").skip(1) {
        let a = &row[..row.find('"').unwrap()];
        for td in row
            .split("<td")
            .skip(1)
            .filter(|td| td.contains("data-against"))
        {
            let attr = |name: &str| {
                let at = td.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
                td[at..at + td[at..].find('"').unwrap()].to_string()
            };
            let b = attr("data-against");
            let p = doc["comparison"]["pairs"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| {
                    (p["a"] == a && p["b"] == b.as_str()) || (p["a"] == b.as_str() && p["b"] == a)
                })
                .unwrap();
            assert_eq!(
                cell(&attr("data-value")),
                p["p_holm"].as_f64(),
                "{a} vs {b}"
            );
            cells += 1;
        }
    }
    let n = strategies.len();
    assert_eq!(cells, n * (n - 1));
}

#[test]
fn bad_input_is_refused_before_anything_is_written() {
    let Some(dir) = shared_data("digits") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("cmp");
    let cases: [(&[&str], &str); 6] = [
        (&["--budget", "5000"], "beyond the pool"),
        (&["--initial-per-class", "200"], "needs 200 per class"),
        (&["--protocol", "lu2023"], "from Python"),
        (&["--protocol", "cdal"], "unknown protocol"),
        (
            &["--strategies", "random,mean-entropy"],
            "multi-label strategy",
        ),
        (
            &["--strategies", "random,bald", "--committee", "1"],
            "cannot disagree",
        ),
    ];
    for (extra, want) in cases {
        let mut args: Vec<String> = vec!["compare".into()];
        args.extend(digits_args(&dir));
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend(["--out".to_string(), out.display().to_string()]);
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = alpool(&argv);
        assert!(!o.status.success(), "{extra:?} was accepted");
        assert!(stderr(&o).contains(want), "{extra:?}: {}", stderr(&o));
        assert!(!out.exists(), "{extra:?} wrote {}", out.display());
    }
    // Labels that do not match the features.
    let y: Vec<i64> = vec![0, 1, 2];
    let ypath = tmp.path().join("y.npy");
    let mut f = std::fs::File::create(&ypath).unwrap();
    alpool::pool::npy::write_array(&mut f, &[3], &y).unwrap();
    drop(f);
    let x = dir.join("X.npy").display().to_string();
    let o = alpool(&[
        "compare",
        "--features",
        &x,
        "--labels",
        &ypath.display().to_string(),
        "--out",
        &out.display().to_string(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("y.npy"), "{}", stderr(&o));
    assert!(!out.exists());
}

/// A workspace from the embedded digits: `seed` labels, then `rounds`
/// batches of `k` answered with the true labels.
fn labeled_workspace(dir: &Path, seed: usize, rounds: usize, k: usize) -> PathBuf {
    let d = Dataset::digits();
    let x = dir.join("X.npy");
    alpool::pool::npy::save(&x, &[d.rows(), d.dim], &d.features()).unwrap();
    let answer = |path: &Path, ids: &[usize]| {
        let mut s = String::from("id,label\n");
        ids.iter().for_each(|&i| s += &format!("{i},c{}\n", d.y[i]));
        std::fs::write(path, s).unwrap();
    };
    let ws = dir.join("ws");
    let seed_file = dir.join("seed.csv");
    answer(&seed_file, &(0..seed).collect::<Vec<_>>());
    let classes = (0..10)
        .map(|c| format!("c{c}"))
        .collect::<Vec<_>>()
        .join(",");
    let w = ws.display().to_string();
    let run = |args: &[&str]| {
        let o = alpool(args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    };
    run(&[
        "init",
        &w,
        "--features",
        &x.display().to_string(),
        "--classes",
        &classes,
        "--labels",
        &seed_file.display().to_string(),
    ]);
    for r in 0..rounds {
        let batch = dir.join(format!("b{r}.csv"));
        run(&[
            "next",
            &w,
            "-k",
            &k.to_string(),
            "--out",
            &batch.display().to_string(),
        ]);
        let ids: Vec<usize> = std::fs::read_to_string(&batch)
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.split(',').next().unwrap().parse().unwrap())
            .collect();
        let answers = dir.join(format!("a{r}.csv"));
        answer(&answers, &ids);
        run(&["ingest", &w, &answers.display().to_string()]);
    }
    ws
}

/// `alpool report WS --out OUT`, and the JSON it wrote beside the page.
fn report(ws: &Path, out: &Path) -> serde_json::Value {
    let o = alpool(&[
        "report",
        &ws.display().to_string(),
        "--out",
        &out.display().to_string(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_str(&std::fs::read_to_string(out.with_extension("json")).unwrap()).unwrap()
}

#[test]
fn a_workspace_report_shows_its_labels_rounds_and_held_out_curve() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = labeled_workspace(tmp.path(), 80, 2, 40);
    // Three items with several annotators, as Label Studio exports them:
    // two agree; two disagree; two of three agree. 2 of 5 pairs agree.
    let tasks = tmp.path().join("tasks.json");
    let o = alpool(&[
        "next",
        &ws.display().to_string(),
        "-k",
        "3",
        "--out",
        &tasks.display().to_string(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&tasks).unwrap()).unwrap();
    let votes: [&[&str]; 3] = [&["c1", "c1"], &["c1", "c2"], &["c3", "c3", "c4"]];
    let export: Vec<serde_json::Value> = v
        .as_array()
        .unwrap()
        .iter()
        .zip(votes)
        .enumerate()
        .map(|(t, (task, names))| {
            let anns: Vec<serde_json::Value> = names
                .iter()
                .enumerate()
                .map(|(j, c)| serde_json::json!({"id": 1000 + 10 * t + j, "result": [
                    {"from_name": "label", "to_name": "item", "type": "choices", "value": {"choices": [c]}}]}))
                .collect();
            serde_json::json!({"id": t + 1, "data": task["data"], "annotations": anns})
        })
        .collect();
    let export_path = tmp.path().join("export.json");
    std::fs::write(&export_path, serde_json::to_string(&export).unwrap()).unwrap();
    let o = alpool(&[
        "ingest",
        &ws.display().to_string(),
        &export_path.display().to_string(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = tmp.path().join("r.html");
    let rep = report(&ws, &out);
    // The library's figures: every label counted once, per class as stored.
    let w = alpool::workspace::Workspace::open(&ws, std::time::Duration::from_secs(5)).unwrap();
    let labels = w.labels().unwrap();
    assert!(
        (161..=163).contains(&labels.len()),
        "{} labels",
        labels.len()
    );
    let mut per_class = vec![0u64; 10];
    labels.iter().for_each(|l| per_class[l.class] += 1);
    let got: Vec<u64> = rep["per_class"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(got, per_class);
    let rounds = rep["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 3);
    assert_eq!(
        (rounds[0]["labels"].as_u64(), rounds[0]["selected"].as_u64()),
        (Some(80), Some(40))
    );
    assert_eq!(
        (rounds[1]["labels"].as_u64(), rounds[1]["selected"].as_u64()),
        (Some(120), Some(40))
    );
    let held = rep["held_out"].as_u64().unwrap();
    assert!(
        (16..=48).contains(&held),
        "{held} of {} held out",
        labels.len()
    );
    let curve = rep["curve"].as_array().unwrap();
    assert_eq!(curve.len(), 5);
    let last = curve[4].as_array().unwrap();
    assert_eq!(last[0].as_u64().unwrap(), labels.len() as u64 - held);
    assert!(last[1].as_f64().unwrap() > 0.7, "{last:?}");
    let a = &rep["agreement"];
    assert_eq!(
        (
            a["items"].as_u64(),
            a["pairs"].as_u64(),
            a["agreeing"].as_u64()
        ),
        (Some(3), Some(5), Some(2))
    );
    let Some(browser) = chromium() else { return };
    let (dom, log) = render(&browser, &out);
    assert!(!log.contains(":CONSOLE"), "console output: {log}");
    assert!(
        dom.contains("data-rendered=\"ok\""),
        "the scripts did not finish"
    );
    assert_eq!(dom.matches("class=\"bar\"").count(), 10);
    assert_eq!(dom.matches("data-accuracy=").count(), 5);
    let table = &dom[dom.find("<table id=\"classes\"").unwrap()..];
    for (c, n) in per_class.iter().enumerate() {
        let row = table
            .split(&format!("<tr data-class=\"c{c}\">"))
            .nth(1)
            .unwrap();
        assert_eq!(
            row_values(&row[..row.find("</tr>").unwrap()]),
            vec![n.to_string()]
        );
    }
    assert!(
        dom.contains("2 of 5 pairs of votes agree (40.0%)"),
        "the agreement line"
    );
    assert!(rep["live"].is_null());
    assert!(dom.contains("Not served live"), "the live queue's line");
}

#[test]
fn serve_shows_the_workspace_report_to_browsers_and_json_to_label_studio() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = labeled_workspace(tmp.path(), 80, 1, 40);
    let out = tmp.path().join("r.html");
    let rep = report(&ws, &out);
    let server = Served::start(&ws, &[]);
    let browser = "text/html,application/xhtml+xml,*/*;q=0.8";
    for (path, accept) in [("/", browser), ("/report", "*/*")] {
        let (status, kind, page) = server.request(("GET", path, accept), b"", None);
        assert_eq!(status, 200, "{path}: {page}");
        assert!(kind.starts_with("text/html"), "{path}: {kind}");
        // The page carries the report the command wrote: the same state,
        // the same seeded curve.
        let data = &page[page
            .find("<script id=\"data\" type=\"application/json\">")
            .unwrap()..];
        let data = &data[data.find('>').unwrap() + 1..data.find("</script>").unwrap()];
        let doc: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(doc["workspace"], rep, "{path}");
    }
    // Label Studio's health check (no HTML in Accept) still gets JSON.
    let (status, kind, body) = server.request(("GET", "/", "*/*"), b"", None);
    assert_eq!(status, 200);
    assert!(kind.starts_with("application/json"), "{kind}");
    assert!(body.contains("\"status\":\"UP\""), "{body}");
}
