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
use crate::query::{ColdStart, Disagreement, InputForm, MultiLabel, Query, Strategy};
use crate::workspace::InitSpec;
use crate::workspace::ingest::{Expect, read_label_file, seed_labels};
use crate::workspace::serve::Unplugged;
use crate::{Device, Exclusions, Inputs, Job, Pool, Run};

// The cold-start strategies' references, one copy for the fuzz target
// and the test suite.
#[path = "../tests/reference/coldstart.rs"]
#[allow(dead_code)]
mod reference;

/// This process's scratch folder, once made.
static SCRATCH: OnceLock<PathBuf> = OnceLock::new();

/// A folder of this process's own, for the files the targets write. A
/// `static` is never dropped, so the folder is removed by an `atexit`
/// callback instead: libFuzzer and the test harness both end through
/// `exit`, and one folder left per run piled up in `/tmp` (114 after a
/// few CI runs). A finding aborts and leaves it, beside its artifact.
fn scratch() -> &'static Path {
    extern "C" fn remove() {
        if let Some(dir) = SCRATCH.get() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    SCRATCH.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("alpool-fuzz-")
            .tempdir()
            .expect("a temporary folder for the fuzz targets")
            .keep();
        // SAFETY: `remove` is a plain function that only reads a set
        // `OnceLock`; registering it has no other effect.
        unsafe { libc::atexit(remove) };
        dir
    })
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

/// The values a byte of [`exact`]'s input stands for: the edges of the
/// definitions (0, ½ and 1, their f32 neighbours, a subnormal, the
/// quarter points) for the first codes, else an even spread over [0, 1].
fn value_of(b: u8) -> f32 {
    const EDGES: [f32; 10] = [
        0.0,
        0.5,
        1.0,
        0.49999997,
        0.50000006,
        1e-40,
        0.99999994,
        0.25,
        0.75,
        5.960_464_5e-8,
    ];
    match EDGES.get(b as usize) {
        Some(&e) => e,
        None => b as f32 / 255.0,
    }
}

/// One input of [`exact`], decoded: the query, the request and the
/// values as stored (float16 ones after their rounding, as f32).
struct ExactCase {
    query: crate::query::Query,
    job: Job,
    width: usize,
    /// T for a disagreement strategy (the samples of a row are its T rows
    /// of `width` values, stored N x T x C), else 1.
    samples: usize,
    stored: Vec<f32>,
    f16: bool,
}

impl ExactCase {
    /// The header bytes and the values (see [`exact`]); `None` for an
    /// input too short to hold a row.
    fn decode(data: &[u8]) -> Option<ExactCase> {
        use crate::query::{LogBase, Query};
        let [pick, width, k, flags, chunk, values @ ..] = data else {
            return None;
        };
        let (n_s, n_m) = (Strategy::ALL.len(), MultiLabel::ALL.len());
        let query = match *pick as usize % (n_s + n_m + Disagreement::ALL.len()) {
            i if i < n_s => Query::Score(Strategy::ALL[i]),
            i if i < n_s + n_m => Query::Multi(MultiLabel::ALL[i - n_s]),
            i => Query::Disagree(Disagreement::ALL[i - n_s - n_m]),
        };
        let multi = matches!(query, Query::Multi(_));
        // Samples are probabilities (no logits), T from the flags' high bits.
        let (samples, logits) = match query {
            Query::Disagree(_) => (2 + (*flags >> 4) as usize % 6, false),
            _ => (1, flags & 1 != 0),
        };
        // Margin and ratio need two classes; one label is a multi-label pool.
        let w = if multi {
            1 + *width as usize % 40
        } else {
            2 + *width as usize % 24
        };
        let rows = values.len() / (w * samples);
        if rows == 0 {
            return None;
        }
        let f16 = flags & 2 != 0;
        let mut stored = exact_values(&values[..rows * samples * w], w, logits, multi);
        if f16 {
            for x in &mut stored {
                *x = half::f16::from_f32(*x).to_f32();
            }
        }
        let input = match (multi, logits) {
            (true, _) => InputForm::MultiLabel { logits },
            (false, true) => InputForm::logits(1.0),
            // float16 values sum to 1 only within their rounding.
            (false, false) if f16 => InputForm::Probs {
                renormalize: true,
                sum_tol: 1e-3,
            },
            (false, false) => InputForm::probs(),
        };
        let excluded: Vec<u64> = (0..rows as u64)
            .filter(|&r| flags & 8 != 0 && values[r as usize * samples * w] % 3 == 0)
            .collect();
        let selectable = rows - excluded.len();
        let mut job = match query {
            Query::Score(s) => Job::new(s, input, 0),
            Query::Multi(m) => Job::new(m, input, 0),
            Query::Disagree(d) => Job::new(d, input, 0),
            _ => unreachable!("only row-wise queries are drawn"),
        };
        // A k byte of 128 or more asks for a stochastic batch (its kind
        // from bits 5 and 6, β from the chunk byte) of k & 31 rows.
        let stochastic = (*k >= 128).then(|| {
            use crate::query::{Stochastic, StochasticKind as K};
            let kind = [K::Softmax, K::Power, K::Softrank][(*k as usize >> 5) % 3];
            Stochastic::new(kind, 0.25 + *chunk as f64 / 8.0)
        });
        let k = if stochastic.is_some() { *k & 31 } else { *k };
        job.k = k as usize % 20 % (selectable + 1);
        job.stochastic = stochastic;
        job.exclusions = Exclusions::new(excluded);
        job.log_base = if flags & 4 != 0 {
            LogBase::Two
        } else {
            LogBase::E
        };
        job.seed = *chunk as u64;
        job.chunk_rows = 1 + *chunk as u64 % 64;
        job.label_cardinality = Some(w as f64 * (*width as f64 / 255.0));
        Some(ExactCase {
            query,
            job,
            width: w,
            samples,
            stored,
            f16,
        })
    }

    /// The pool (N x C, or N x T x C samples), written as float32 or
    /// float16.
    fn save(&self, path: &Path) {
        let rows = self.stored.len() / (self.width * self.samples);
        let shape: &[usize] = match self.samples {
            1 => &[rows, self.width],
            t => &[rows, t, self.width],
        };
        let saved = if self.f16 {
            let half: Vec<half::f16> = self
                .stored
                .iter()
                .map(|&x| half::f16::from_f32(x))
                .collect();
            crate::pool::npy::save(path, shape, &half)
        } else {
            crate::pool::npy::save(path, shape, &self.stored)
        };
        saved.expect("a scratch pool written");
    }

    /// The k rows of highest canonical priority, ties to the lower row, by
    /// a full sort: (row, the score's bits).
    fn canonical_top(&self, spec: Option<&crate::score::multilabel::MultiSpec>) -> Vec<(u64, u64)> {
        use crate::query::Query;
        use crate::score::disagree::disagreement;
        use crate::score::input::canonical_probs;
        use crate::score::{ScoreSpec, canonical_score, multilabel::multilabel_score};
        let (job, c) = (&self.job, self.width);
        let mut probs = vec![0.0; c * self.samples];
        let mut mean = Vec::new();
        let mut ranked: Vec<(f64, u64, f64)> = Vec::new();
        for (r, row) in self.stored.chunks_exact(c * self.samples).enumerate() {
            let index = r as u64;
            if job.exclusions.contains(index) {
                continue;
            }
            for (sample, p) in row.chunks_exact(c).zip(probs.chunks_exact_mut(c)) {
                canonical_probs(&job.input, sample, p).expect("rows valid by construction");
            }
            let score = match (self.query, spec) {
                (Query::Disagree(d), _) => disagreement(d, job.log_base, &probs, c, &mut mean),
                (Query::Score(strategy), _) => {
                    let spec = ScoreSpec {
                        strategy,
                        log_base: job.log_base,
                        seed: job.seed,
                    };
                    canonical_score(&spec, &probs, index)
                }
                (Query::Multi(_), Some(spec)) => multilabel_score(spec, &probs),
                _ => unreachable!("a multi-label query comes with its spec"),
            };
            ranked.push((self.query.priority(score), index, score));
        }
        // The engine's order (`score::Ranked`): -0.0 and +0.0 tie, and the
        // lower row wins; `total_cmp` would put +0.0 first.
        let order = |a: &(f64, u64, f64), b: &(f64, u64, f64)| {
            b.0.partial_cmp(&a.0)
                .expect("no NaN priority")
                .then(a.1.cmp(&b.1))
        };
        ranked.sort_by(order);
        if let Some(st) = job.stochastic {
            // A stochastic batch: each row's key from its priority (or its
            // rank in the plain order, softrank) and its draw.
            use crate::score::stochastic::{RowKeys, rank_key};
            let keys = RowKeys::new(self.query, Some(st), job.seed);
            for (rank, r) in ranked.iter_mut().enumerate() {
                r.0 = match keys {
                    Some(keys) => keys.key(r.0, r.1),
                    None => rank_key(st.beta, job.seed, rank as u64 + 1, r.1),
                };
            }
            ranked.sort_by(order);
        }
        ranked.truncate(job.k);
        ranked.iter().map(|r| (r.1, r.2.to_bits())).collect()
    }
}

/// [`exact`]'s values, `w` a row: logits as given, multi-label values
/// as [`value_of`] reads them, softmax rows normalized in f64 (an all-zero
/// row gets a 1) and rounded to f32.
fn exact_values(values: &[u8], w: usize, logits: bool, multi: bool) -> Vec<f32> {
    let mut stored = Vec::with_capacity(values.len());
    for row in values.chunks_exact(w) {
        if logits {
            stored.extend(row.iter().map(|&b| (b as f32 - 128.0) / 16.0));
        } else if multi {
            stored.extend(row.iter().map(|&b| value_of(b)));
        } else {
            let mut p: Vec<f64> = row.iter().map(|&b| value_of(b) as f64).collect();
            if p.iter().all(|&x| x == 0.0) {
                p[0] = 1.0;
            }
            let sum: f64 = p.iter().sum();
            stored.extend(p.iter().map(|&x| (x / sum) as f32));
        }
    }
    stored
}

/// A selection as [`ExactCase::canonical_top`] gives it.
fn picks(sel: &crate::Selection) -> Vec<(u64, u64)> {
    sel.entries
        .iter()
        .map(|e| (e.index, e.score.to_bits()))
        .collect()
}

/// The fast paths pick exactly what the canonical definitions rank first.
///
/// The input is a small pool: byte 0 picks the strategy (softmax,
/// multi-label, or disagreement over T samples a row), byte 1 the width,
/// byte 2 k (128 and above: a stochastic batch), byte 3 the input form
/// (logits for bit 0, float16 for bit 1), the log base (2 for bit 2),
/// whether rows are excluded (bit 3) and T (bits 4–7), byte 4 the rows per
/// chunk, the seed and a stochastic batch's β; each further byte is one
/// value (`value_of`: the edges of the definitions come often). Softmax
/// rows and samples are the values normalized in f64 and stored (an
/// all-zero row gets a 1), or taken as logits.
///
/// The selection (on this CPU's widest vector copies; the multi-label
/// engine also on each narrower copy this CPU runs) must equal a full sort
/// by each row's canonical priority (`score::input::canonical_probs`, then
/// `canonical_score`, `multilabel_score` or `disagreement`; for a
/// stochastic batch, the key `score::stochastic` makes of it and the row's
/// draw), the tie to the lower row: the same rows, in the same order, with
/// the same scores to the bit.
pub fn exact(data: &[u8]) {
    use crate::backend::Silent;
    use crate::backend::cpu::Isa;
    let Some(case) = ExactCase::decode(data) else {
        return;
    };
    let path = scratch().join("exact.npy");
    case.save(&path);
    let query = case.query;
    if case.samples > 1 {
        let layout = SampleLayout::Ntc;
        let samples = Samples::open(&[&path], layout, ReadPath::Read).expect("the samples open");
        let want = case.canonical_top(None);
        let got = crate::select(Inputs::samples(&samples), &case.job, &Run::on(Device::Cpu))
            .expect("valid samples select");
        assert_eq!(
            picks(&got.selection),
            want,
            "{query}: the engine against the canonical sort"
        );
        return;
    }
    let pool = Pool::open_with(&[&path], ReadPath::Read).expect("the scratch pool opens");
    let spec = match case.query {
        crate::query::Query::Multi(_) => {
            Some(crate::multilabel::check(&pool, &case.job).expect("a valid request"))
        }
        _ => None,
    };
    let want = case.canonical_top(spec.as_ref());
    let got = crate::select(&pool, &case.job, &Run::on(Device::Cpu)).expect("a valid pool selects");
    assert_eq!(
        picks(&got.selection),
        want,
        "{query}: the engine against the canonical sort"
    );
    // The engine's copies for each instruction set (a plain ranking).
    if let (Some(spec), None) = (spec, case.job.stochastic) {
        for isa in [Isa::Scalar, Isa::Avx2, Isa::Avx512] {
            if isa > Isa::detect() {
                continue;
            }
            let sel = crate::multilabel::select_isa(&pool, &case.job, &spec, isa, &Silent)
                .expect("a valid pool selects");
            assert_eq!(picks(&sel), want, "{query} on the {} copy", isa.name());
        }
    }
}

/// The cold-start strategies' fast paths pick what the references of
/// `tests/reference/coldstart.rs` pick (written from the definitions with
/// `std` alone, every distance in f64): MaxHerding's lazy greedy over
/// float32 bounds and ProbCover's graph from float32 distances with f64
/// re-checks, pick for pick and score for score to the bit; TypiClust and
/// the k-means baseline (the race seeding on lazy bounds, Hamerly's skips,
/// the kNN prefilter), pick for pick; density's picks and scores to the
/// bit. Or, for values the embeddings refuse (a NaN; an all-zero row
/// under density), an error that names the file.
///
/// Byte 0 is the width D (1 to 6), byte 1 k (1 to 12), byte 2 the width:
/// MaxHerding's σ = 2^((b − 128) / 8) (from about 10⁻⁵ to 10⁵, so every
/// term is 0, 1 or anything between), ProbCover's δ = √(b / 49), whose
/// square is a squared distance of the sevenths' grid, give or take the
/// roundings, so pairs sit right at the ball's edge (b = 0: δ = 0, a
/// refusal), or (byte 3's bit 3) δ² within 127 ulps of the first two
/// rows' squared distance; with byte 3's bit 7, either is chosen by
/// purity over 2 to 5 k-means clusters instead (ProbCover's δ, and σ =
/// δ). Byte 3: which rows are labeled (bit 0: those
/// whose first byte is a multiple of 5), and the strategy (bit 4:
/// TypiClust, else bit 5: k-means, else bit 6: density, else bit 2:
/// ProbCover, else MaxHerding). Each further byte is one value, a multiple of 1/7 (so
/// float32 distances round): duplicates, mirror images and exact zeros
/// come often, and so do values far apart, tiny ones, and the odd NaN
/// (byte 255).
pub fn coldstart(data: &[u8]) {
    let [d, k, width, flags, values @ ..] = data else {
        return;
    };
    let d = 1 + *d as usize % 6;
    let n = (values.len() / d).min(300);
    if n == 0 {
        return;
    }
    let x: Vec<f32> = values[..n * d]
        .iter()
        .map(|&b| match b {
            255 => f32::NAN,
            250..=254 => (b as f32 - 252.0) * 1e6,
            240..=249 => (b as f32 - 244.0) * 1e-20,
            // Sevenths: float32 distances round, and mirror images tie.
            _ => (b % 32) as f32 / 7.0 - 2.0,
        })
        .collect();
    let path = scratch().join("coldstart.npy");
    write_npy_f32(&path, &x, d);
    let pool = Pool::open_with(&[&path], ReadPath::Read).expect("the scratch pool opens");
    let labeled: Vec<usize> = (0..n)
        .filter(|&r| flags & 1 != 0 && values[r * d] % 5 == 0)
        .collect();
    let rows: Vec<Vec<f32>> = x.chunks(d).map(<[f32]>::to_vec).collect();
    let (strategy, width) = cold_case(&rows, *width, *flags);
    let mut job = Job::new(strategy, InputForm::probs(), 1 + *k as usize % 12);
    job.delta = width;
    if flags & 128 != 0 && width.is_some() {
        // δ (σ) by purity over 2 to 5 k-means clusters instead.
        job.delta = None;
        job.purity_classes = 2 + (data[2] as usize % 4);
    }
    job.exclusions = Exclusions::new(labeled.iter().map(|&r| r as u64).collect());
    let got = crate::select(Inputs::embeddings(&pool), &job, &Run::on(Device::Cpu));
    if x.iter().any(|v| v.is_nan()) {
        assert!(got.is_err(), "a NaN embedding was taken");
        check_error(&got, &[&path]);
        return;
    }
    if job.k > n - labeled.len() {
        assert!(
            matches!(got, Err(Error::TooFewRows { .. })),
            "k beyond the unlabeled rows: {:?}",
            got.err()
        );
        return;
    }
    match cold_want(&rows, &labeled, &job) {
        Want::Named => {
            assert!(got.is_err(), "{strategy} took what it must refuse");
            check_error(&got, &[&path]);
        }
        Want::Refused => assert!(
            matches!(&got, Err(Error::Config(m)) if m.contains("--delta")),
            "{strategy} took a δ of {:?} (None: by purity) that joins no two rows or none: {:?}",
            job.delta,
            got.as_ref().err()
        ),
        Want::Scored(want) => assert_eq!(
            picks(&got.expect("a valid pool selects").selection),
            want,
            "{strategy} against the plain greedy"
        ),
        Want::Rows(want) => assert_eq!(
            got.expect("a valid pool selects").selection.indices(),
            want,
            "{strategy} against the naive k-means"
        ),
    }
}

/// What a [`coldstart`] case must give.
enum Want {
    /// These picks with these scores' bits.
    Scored(Vec<(u64, u64)>),
    /// These picks (the clusterings' reference gives rows alone, as the
    /// suite compares them).
    Rows(Vec<u64>),
    /// A refusal of δ (0, joining no two rows, or none by purity),
    /// naming `--delta`.
    Refused,
    /// An error naming the file: an all-zero row under density, more
    /// k-means clusters than rows.
    Named,
}

/// The reference's answer to `job` over `rows`.
fn cold_want(rows: &[Vec<f32>], labeled: &[usize], job: &Job) -> Want {
    let (n, k, seed) = (rows.len(), job.k, job.seed);
    let scored = |v: Vec<(usize, f64)>| {
        Want::Scored(
            v.into_iter()
                .map(|(r, g)| (r as u64, g.to_bits()))
                .collect(),
        )
    };
    let width2 = match job.delta {
        Some(w) => w * w,
        None if job.purity_classes > n => return Want::Named,
        None if job.purity_classes > 0 => {
            let d2 = reference::delta2_ref(rows, job.purity_classes, job.purity, seed);
            if !(d2.is_finite() && d2 > 0.0) {
                // Every row in one cluster, or rows of two clusters coincide.
                return Want::Refused;
            }
            d2
        }
        None => f64::NAN,
    };
    match (job.query, width2) {
        (Query::Cold(ColdStart::Probcover), d2) if !d2.is_nan() => {
            let joined = (0..n).any(|i| (0..i).any(|j| reference::sq(&rows[i], &rows[j]) < d2));
            if !joined {
                return Want::Refused;
            }
            scored(reference::probcover_gains_ref(rows, labeled, k, d2, seed))
        }
        (Query::Cold(ColdStart::Maxherding), s2) if !s2.is_nan() => {
            scored(reference::maxherding_ref(rows, labeled, k, s2, seed))
        }
        (Query::Cold(ColdStart::Density), _) => {
            if rows.iter().any(|r| r.iter().all(|&v| v == 0.0)) {
                return Want::Named;
            }
            let sim = reference::density_ref(rows);
            let mut order: Vec<usize> = (0..n).filter(|r| !labeled.contains(r)).collect();
            order.sort_by(|&a, &b| sim[b].partial_cmp(&sim[a]).expect("finite").then(a.cmp(&b)));
            Want::Scored(
                order[..k]
                    .iter()
                    .map(|&r| (r as u64, sim[r].to_bits()))
                    .collect(),
            )
        }
        (q, _) => {
            let typical = q == Query::Cold(ColdStart::Typiclust);
            let want = reference::clusters_ref(rows, labeled, k, seed, typical);
            Want::Rows(want.into_iter().map(|r| r as u64).collect())
        }
    }
}

/// The strategy and width byte 3 and byte 2 ask for ([`coldstart`]).
fn cold_case(rows: &[Vec<f32>], width: u8, flags: u8) -> (ColdStart, Option<f64>) {
    if flags & 16 != 0 {
        (ColdStart::Typiclust, None)
    } else if flags & 32 != 0 {
        (ColdStart::Kmeans, None)
    } else if flags & 64 != 0 {
        (ColdStart::Density, None)
    } else if flags & 4 != 0 && flags & 8 != 0 && rows.len() >= 2 {
        // Within 127 ulps of the first two rows' distance, which many
        // pairs of the grid share.
        let d01 = reference::sq(&rows[0], &rows[1]);
        let nudge = 1.0 + (width as f64 - 128.0) * f64::EPSILON;
        (ColdStart::Probcover, Some((d01 * nudge).sqrt()))
    } else if flags & 4 != 0 {
        (ColdStart::Probcover, Some((width as f64 / 49.0).sqrt()))
    } else {
        let sigma = 2f64.powf((width as f64 - 128.0) / 8.0);
        (ColdStart::Maxherding, Some(sigma))
    }
}

/// A float32 `.npy` of `x` (rows of `d`).
fn write_npy_f32(path: &Path, x: &[f32], d: usize) {
    let header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {d}), }}",
        x.len() / d
    );
    let pad = 64 - (10 + header.len() + 1) % 64;
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend(((header.len() + pad + 1) as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend(std::iter::repeat_n(b' ', pad));
    bytes.push(b'\n');
    bytes.extend(x.iter().flat_map(|v| v.to_le_bytes()));
    std::fs::write(path, bytes).expect("a scratch file written");
}
