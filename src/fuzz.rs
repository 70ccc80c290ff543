//! The fuzz targets' entry points: each takes arbitrary bytes as one
//! outside file (or request) and runs it through the code that reads such
//! files in production, from parsing to the first use of what was parsed.
//!
//! `fuzz/` drives them with libFuzzer (`scripts/fuzz.sh`), and
//! `tests/suite/fuzz_regressions.rs` replays every input a fuzzer ever
//! made fail. The property is the same everywhere: no panic, no hang, no
//! unbounded allocation, and an error that names the file it is about.
//! A violation panics, which is what a fuzzer reports.
//!
//! Built only with the `fuzz` feature; not part of the stable API.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::features::FeaturePool;
use crate::learner::Mlp;
use crate::pool::{ReadPath, SampleLayout, Samples};
use crate::query::{ColdStart, Disagreement, InputForm, MultiLabel, Strategy};
use crate::workspace::InitSpec;
use crate::workspace::ingest::{Expect, read_label_file, seed_labels};
use crate::workspace::serve::Unplugged;
use crate::{Device, Exclusions, Inputs, Job, Pool, Run};

/// A folder of this process's own, for the files the targets write.
fn scratch() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        tempfile::Builder::new()
            .prefix("alpool-fuzz-")
            .tempdir()
            .expect("a temporary folder for the fuzz targets")
    })
    .path()
}

/// Writes `data` as `name` in the scratch folder.
fn write(name: &str, data: &[u8]) -> PathBuf {
    let path = scratch().join(name);
    let mut f = std::fs::File::create(&path).expect("a scratch file");
    f.write_all(data).expect("a scratch file written");
    path
}

/// Splits `data` at each line `%%` (how corpus files put several files in
/// one input), into at most `n` parts.
fn split(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut parts = Vec::with_capacity(n);
    let mut rest = data;
    while parts.len() + 1 < n {
        match rest.windows(4).position(|w| w == b"\n%%\n") {
            Some(i) => {
                parts.push(&rest[..i + 1]);
                rest = &rest[i + 4..];
            }
            None => break,
        }
    }
    parts.push(rest);
    parts.resize(n, &[]);
    parts
}

/// The property of every error about a file: it names the file. Errors
/// about the request rather than a file (`Config`, `MissingInput`,
/// `UnusedInput`) name none.
fn check_error<T>(r: &Result<T>, files: &[&Path]) {
    let Err(e) = r else { return };
    if matches!(
        e,
        Error::Config(_) | Error::MissingInput { .. } | Error::UnusedInput { .. }
    ) {
        return;
    }
    let msg = e.to_string();
    assert!(
        files.iter().any(|f| msg.contains(&f.display().to_string())),
        "an error that names none of {files:?}: {msg}"
    );
}

/// A `.npy` file as each kind of pool: probabilities, embeddings,
/// features, a 3-D sample file, an exclusion list; then a selection over
/// what opened.
pub fn npy(data: &[u8]) {
    let p = write("f.npy", data);
    let run = Run::on(Device::Cpu);
    let probs = Pool::open_with(&[&p], ReadPath::Read);
    check_error(&probs, &[&p]);
    if let Ok(pool) = probs {
        for s in [Strategy::Margin, Strategy::Entropy] {
            let job = Job::new(s, InputForm::probs(), 2);
            check_error(&crate::select(&pool, &job, &run), &[&p]);
        }
        let logits = Job::new(Strategy::Margin, InputForm::logits(1.0), 2);
        check_error(&crate::select(&pool, &logits, &run), &[&p]);
        // A multi-label pool, by the fast path and by logits.
        for (m, logits) in [
            (MultiLabel::MeanEntropy, false),
            (MultiLabel::Adaptive, true),
        ] {
            let mut job = Job::new(m, InputForm::MultiLabel { logits }, 2);
            job.label_cardinality = Some(0.0);
            check_error(&crate::select(&pool, &job, &run), &[&p]);
        }
    }
    let emb = Pool::open_embeddings(&[&p]);
    check_error(&emb, &[&p]);
    if let Ok(emb) = emb {
        for q in [ColdStart::Density, ColdStart::Kmeans] {
            let mut job = Job::new(q, InputForm::probs(), 2);
            job.iterations = 5;
            check_error(&crate::select(Inputs::embeddings(&emb), &job, &run), &[&p]);
        }
    }
    let features = FeaturePool::open(&[&p]);
    check_error(&features, &[&p]);
    if let Ok(f) = features {
        let rows: Vec<usize> = (0..f.rows().min(3) as usize).collect();
        check_error(&f.gather(&rows), &[&p]);
    }
    for layout in [SampleLayout::Tnc, SampleLayout::Ntc] {
        let samples = Samples::open(&[&p], layout, ReadPath::Read);
        check_error(&samples, &[&p]);
        if let Ok(s) = samples {
            let job = Job::new(Disagreement::Bald, InputForm::probs(), 2);
            check_error(&crate::select(Inputs::samples(&s), &job, &run), &[&p]);
        }
    }
    check_error(&Exclusions::read(&p, 64), &[&p]);
}

/// The classes and ids label files are checked against.
fn label_world() -> &'static (HashMap<String, usize>, Vec<String>) {
    static WORLD: OnceLock<(HashMap<String, usize>, Vec<String>)> = OnceLock::new();
    WORLD.get_or_init(|| {
        let ids = (0..16).map(|i| (format!("i{i}"), i)).collect();
        (ids, vec!["cat".into(), "dog".into(), "bird".into()])
    })
}

/// The workspace token the fuzz corpus's Label Studio tasks carry.
pub const TOKEN: &str = "fuzztoken";

/// A label file: the first byte picks the extension (`.json`, `.csv`,
/// `.tsv`, `.txt`), whether it is read as `init`'s seed labels, and
/// whether the workspace is multi-label or regression; the rest is the
/// file.
pub fn labels(data: &[u8]) {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let ext = ["json", "csv", "tsv", "txt"][pick as usize % 4];
    let p = write(&format!("labels.{ext}"), body);
    let (ids, classes) = label_world();
    // Bit 3 reads the file in a multi-label workspace (sets of classes),
    // bit 4 in a regression one (numbers).
    use crate::workspace::vocab::{LabelKind, Vocab};
    let vocab = match (pick & 8 != 0, pick & 16 != 0) {
        (_, true) => Vocab {
            names: vec!["price".into()],
            kind: LabelKind::Number,
        },
        (multi, false) => Vocab {
            names: classes.clone(),
            kind: if multi {
                LabelKind::Set
            } else {
                LabelKind::Class
            },
        },
    };
    if pick & 4 != 0 {
        check_error(&seed_labels(&p, ids, &vocab), &[&p]);
        return;
    }
    let expect = Expect {
        ids,
        vocab: &vocab,
        token: TOKEN,
    };
    let file = read_label_file(&p, &expect);
    check_error(&file, &[&p]);
    if let Ok(file) = file {
        assert!(file.items.iter().all(|i| i.row < ids.len()));
    }
}

/// `init`'s files, in one input split at `%%` lines: the ids (one per
/// line), the seed labels (CSV), the item data (JSON lines). The first
/// byte is the number of rows the pool claims.
pub fn init(data: &[u8]) {
    let Some((&rows, rest)) = data.split_first() else {
        return;
    };
    let parts = split(rest, 3);
    let features = scratch().join("features.npy");
    if !features.exists() {
        crate::pool::npy::save(&features, &[1, 1], &[0f32]).expect("a scratch feature file");
    }
    let spec = InitSpec {
        features,
        rows: rows as usize % 32,
        dim: 1,
        classes: match rows & 0x40 != 0 {
            true => vec!["price".into()],
            false => vec!["cat".into(), "dog".into(), "bird".into()],
        },
        ids: Some(write("ids.txt", parts[0])),
        labels: (!parts[1].is_empty()).then(|| write("seed.csv", parts[1])),
        // Seed labels read as sets (`a|b`) and numbers as well as classes.
        kind: match (rows & 0x80 != 0, rows & 0x40 != 0) {
            (_, true) => crate::workspace::vocab::LabelKind::Number,
            (true, false) => crate::workspace::vocab::LabelKind::Set,
            (false, false) => crate::workspace::vocab::LabelKind::Class,
        },
        data: (!parts[2].is_empty()).then(|| write("items.jsonl", parts[2])),
    };
    let files: Vec<&Path> = [&spec.ids, &spec.labels, &spec.data]
        .into_iter()
        .flatten()
        .map(PathBuf::as_path)
        .collect();
    check_error(&crate::workspace::build_in_memory(&spec), &files);
}

/// A model: its JSON config and its safetensors weights, split at a `%%`
/// line; then a prediction with it.
pub fn model(data: &[u8]) {
    let parts = split(data, 2);
    let weights = write("m.safetensors", parts[1]);
    let config = write("m.json", parts[0]);
    let m = Mlp::load(&weights);
    check_error(&m, &[&weights, &config]);
    if let Ok(m) = m
        && m.inputs() <= 4096
    {
        let x = vec![0.5f32; m.inputs() * 2];
        m.predict_proba(&x).expect("a loaded model predicts");
    }
}

/// A sharded selection's part file (`.alpart`), merged alone and with a
/// second copy of itself.
pub fn part(data: &[u8]) {
    let p = write("p.alpart", data);
    let opened = crate::part::Part::open(&p);
    check_error(&opened, &[&p]);
    for k in [1, 5] {
        check_error(&crate::part::merge(std::slice::from_ref(&p), k), &[&p]);
    }
    if opened.is_ok() {
        let q = write("q.alpart", data);
        // Two copies cover the same rows: refused, naming both.
        let both = crate::part::merge(&[p.clone(), q.clone()], 1);
        assert!(both.is_err(), "two copies of one part merged");
        check_error(&both, &[&p, &q]);
    }
}

/// An exclusion list as text, for a pool of 64 rows.
pub fn exclusions(data: &[u8]) {
    let p = write("exclude.txt", data);
    let r = Exclusions::read(&p, 64);
    check_error(&r, &[&p]);
    if let Ok(x) = r {
        assert!(x.as_slice().iter().all(|&i| i < 64));
    }
}

/// One HTTP request to `alpool serve`, as text: a request line, header
/// lines, a blank line, the body; answered by the server's own handler
/// over a small workspace with a trained model.
pub fn server(data: &[u8]) {
    static SERVER: OnceLock<Unplugged> = OnceLock::new();
    let server = SERVER.get_or_init(|| {
        let dir = scratch().join("serve");
        std::fs::create_dir_all(&dir).expect("a scratch folder");
        Unplugged::new(&dir, TOKEN).expect("the server's workspace")
    });
    let (head, mut body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[][..]),
    };
    let head = String::from_utf8_lossy(head);
    let mut lines = head.lines();
    let mut request_line = lines.next().unwrap_or("").split(' ');
    let (method, url) = (
        request_line.next().unwrap_or(""),
        request_line.next().unwrap_or(""),
    );
    let mut authorization = Vec::new();
    let mut body_length = None;
    for (name, value) in lines.filter_map(|l| l.split_once(':')) {
        match name.trim().to_ascii_lowercase().as_str() {
            "authorization" => authorization.push(value.trim().to_string()),
            "content-length" => body_length = value.trim().parse().ok(),
            _ => {}
        }
    }
    let (status, answer) = server.handle(method, url, &authorization, body_length, &mut body);
    // A request can be refused, never fail the server: no 5xx.
    assert!(
        matches!(status, 200 | 201 | 400 | 401 | 404 | 413 | 422),
        "status {status} for a request: {answer}"
    );
    assert_eq!(
        status >= 400,
        answer.get("error").and_then(Value::as_str).is_some(),
        "status {status} with {answer}"
    );
}
