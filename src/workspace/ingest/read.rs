//! Labels coming back from annotators, in every shape they arrive: a plain
//! `id,label` CSV, Label Studio's JSON, JSON_MIN, CSV and TSV exports, and
//! Label Studio's annotation webhooks (`alpool serve`).
//!
//! A file is read whole and validated before anything is applied: an
//! unknown item, an unknown class, a task of another workspace (its
//! `alpool_workspace` token differs) or a task alpool did not export (no
//! `alpool_id`) rejects the file, naming the Label Studio task or the line.
//! What is read is not yet a label: each annotation is a *vote*
//! ([`Vote`]), which [`super::votes::decide`] turns into a label, a conflict
//! or a skip.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use serde_json::Value;

use super::votes::{Decision, Vote, decide};
use crate::error::{Error, Result, quoted};
use crate::workspace::export::CONTROL;
use crate::workspace::items::RowOfId;
use crate::workspace::vocab::Vocab;

/// One annotation: its Label Studio annotation id (votes with an id replace
/// the earlier vote of the same annotation, so re-importing an export or
/// receiving an update never counts a vote twice) and its vote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Annotation {
    /// Label Studio's annotation id, when the file has one.
    pub key: Option<String>,
    /// What the annotation says.
    pub vote: Vote,
}

/// Everything a file says about one item.
#[derive(Clone, Debug, PartialEq)]
pub struct ItemLabels {
    /// The item's row.
    pub row: usize,
    /// The rounds whose batches carried it (from `alpool_round`).
    pub rounds: Vec<i64>,
    /// Its annotations in the file.
    pub annotations: Vec<Annotation>,
}

/// The shapes a label file comes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// `id,label` with a header line.
    Csv,
    /// Label Studio's JSON export.
    LabelStudioJson,
    /// Label Studio's JSON_MIN export.
    LabelStudioJsonMin,
    /// Label Studio's CSV export.
    LabelStudioCsv,
    /// Label Studio's TSV export.
    LabelStudioTsv,
    /// One annotation from a Label Studio webhook.
    Webhook,
}

impl Shape {
    /// How messages name the shape.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Csv => "CSV id,label",
            Shape::LabelStudioJson => "Label Studio JSON export",
            Shape::LabelStudioJsonMin => "Label Studio JSON_MIN export",
            Shape::LabelStudioCsv => "Label Studio CSV export",
            Shape::LabelStudioTsv => "Label Studio TSV export",
            Shape::Webhook => "Label Studio webhook",
        }
    }
}

/// A label file, read and validated.
#[derive(Clone, Debug)]
pub struct LabelFile {
    /// Which export shape it was.
    pub shape: Shape,
    /// One entry per item, in the order items first appear.
    pub items: Vec<ItemLabels>,
    /// Label Studio tasks (or CSV lines) read.
    pub tasks: usize,
    /// Results from other controls (a TextArea comment, another `Choices`),
    /// which are not labels and are ignored.
    pub ignored_results: usize,
}

/// What a file is checked against.
pub struct Expect<'a> {
    /// Item id → row: the workspace itself, or a map.
    pub ids: &'a dyn RowOfId,
    /// The classes, and whether a label is a set of them.
    pub vocab: &'a Vocab,
    /// The workspace token every task must carry.
    pub token: &'a str,
}

impl Expect<'_> {
    /// The code of a class name, or in a regression workspace of a
    /// number's text.
    fn class(&self, name: &str) -> std::result::Result<usize, String> {
        if self.vocab.numeric() {
            let v: f64 = name.trim().parse().map_err(|_| {
                format!(
                    "{} is not a number; {} is a regression target",
                    quoted(name),
                    self.vocab.names[0]
                )
            })?;
            return Vocab::number_code(v)
                .ok_or_else(|| format!("{} is not a finite number", quoted(name)));
        }
        let names = &self.vocab.names;
        names.iter().position(|c| c == name).ok_or_else(|| {
            format!(
                "unknown class {}; classes are {}",
                quoted(name),
                names.join(", ")
            )
        })
    }

    fn row(&self, id: &str) -> std::result::Result<usize, String> {
        self.ids
            .row_of(id)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("unknown item id {} (not in this workspace)", quoted(id)))
    }

    /// The vote of a list of chosen class names (or numbers).
    fn vote<S: AsRef<str>>(&self, choices: &[S]) -> std::result::Result<Vote, String> {
        let mut classes: Vec<usize> = choices
            .iter()
            .map(|c| self.class(c.as_ref()))
            .collect::<std::result::Result<_, _>>()?;
        classes.sort_unstable();
        classes.dedup();
        if self.vocab.multilabel() && !classes.is_empty() {
            return Ok(Vote::Class(Vocab::set_code(&classes)));
        }
        Ok(match classes[..] {
            [] => Vote::Empty,
            [c] => Vote::Class(c),
            _ => Vote::Several(classes),
        })
    }

    /// The vote of an `id,label` line's label: a class name, in a
    /// multi-label workspace a set, `a|b` (empty for none), in a
    /// regression one a number.
    fn csv_vote(&self, label: &str) -> std::result::Result<Vote, String> {
        match self.vocab.multilabel() {
            true if label.is_empty() => Ok(Vote::Empty),
            true => self.vote(&label.split('|').map(str::trim).collect::<Vec<_>>()),
            false => self.class(label).map(Vote::Class),
        }
    }

    /// Checks the alpool keys of a task's data; returns (row, round).
    pub fn task_item(
        &self,
        data: &serde_json::Map<String, Value>,
    ) -> std::result::Result<(usize, Option<i64>), String> {
        self.item(&|k| data.get(k).cloned())
    }

    /// Checks a task's alpool keys (from `data`, or the flat record of a
    /// JSON_MIN/CSV export); returns (row, round).
    fn item(
        &self,
        get: &dyn Fn(&str) -> Option<Value>,
    ) -> std::result::Result<(usize, Option<i64>), String> {
        let Some(id) = get("alpool_id").and_then(|v| text(&v)) else {
            return Err(
                "no alpool_id: not a task alpool exported (tasks come from `alpool next --out batch.json`; \
                 batches exported before workspace format 2 carried data.id and must be exported again)"
                    .into(),
            );
        };
        match get("alpool_workspace").and_then(|v| text(&v)) {
            Some(t) if t == self.token => {}
            Some(t) => {
                return Err(format!(
                    "the task belongs to workspace {}, not to this one ({:?}): an export of another workspace or project",
                    quoted(&t),
                    self.token
                ));
            }
            None => {
                return Err("no alpool_workspace token: not a task this workspace exported".into());
            }
        }
        let round = get("alpool_round")
            .and_then(|v| text(&v))
            .and_then(|s| s.parse().ok());
        Ok((self.row(&id)?, round))
    }
}

/// A JSON string or number as text (Label Studio's CSV export and its
/// JSON_MIN keep ids as given; numbers appear where ids were numeric).
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Collects results per item, in first-seen order.
#[derive(Default)]
struct Items {
    order: Vec<ItemLabels>,
    at: HashMap<usize, usize>,
}

impl Items {
    fn add(&mut self, row: usize, round: Option<i64>, annotations: Vec<Annotation>) {
        let i = *self.at.entry(row).or_insert_with(|| {
            self.order.push(ItemLabels {
                row,
                rounds: Vec::new(),
                annotations: Vec::new(),
            });
            self.order.len() - 1
        });
        let item = &mut self.order[i];
        if let Some(r) = round
            && !item.rounds.contains(&r)
        {
            item.rounds.push(r);
        }
        item.annotations.extend(annotations);
    }
}

/// Reads and validates a label file; the shape is told by the extension
/// (`.json`, `.csv`, `.tsv`) and, within it, by the content.
pub fn read_label_file(path: &Path, expect: &Expect) -> Result<LabelFile> {
    let text = read_text(path)?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("json") => read_json(path, &text, expect),
        Some("tsv") => read_table(path, &text, b'\t', expect),
        _ => read_table(path, &text, b',', expect),
    }
}

/// A label file's text: UTF-8 (a BOM is dropped), not empty.
fn read_text(path: &Path) -> Result<String> {
    // Read whole (a JSON export is one value), so only a file whose size is
    // known: a pipe or a device (`/dev/zero`) could fill memory before the
    // first error.
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(Error::Exchange {
            path: path.into(),
            reason: "not a regular file (a pipe or a device): save the labels to a file first"
                .into(),
        });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(path)
        .and_then(|f| f.take(meta.len()).read_to_end(&mut bytes))
        .map_err(|e| Error::io(path, e))?;
    // Converted in place: a file of hundreds of MB is held once, not twice.
    let mut text = String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        Error::BadLine {
            path: path.into(),
            line: valid.iter().filter(|&&b| b == b'\n').count() as u64 + 1,
            reason: "the file is not valid UTF-8 (save it as UTF-8)".into(),
        }
    })?;
    if text.starts_with('\u{feff}') {
        text.drain(..'\u{feff}'.len_utf8());
    }
    if text.trim().is_empty() {
        return Err(Error::BadLine {
            path: path.into(),
            line: 1,
            reason: "the file is empty".into(),
        });
    }
    Ok(text)
}

fn read_json(path: &Path, text: &str, expect: &Expect) -> Result<LabelFile> {
    let v: Value = serde_json::from_str(text).map_err(|e| Error::BadLine {
        path: path.into(),
        line: e.line() as u64,
        reason: format!("invalid JSON at column {}: {e}", e.column()),
    })?;
    let Value::Array(tasks) = v else {
        return Err(Error::Exchange {
            path: path.into(),
            reason: "a Label Studio export is a JSON array of tasks".into(),
        });
    };
    let min = tasks.first().is_some_and(|t| t.get("data").is_none());
    let mut items = Items::default();
    let mut ignored = 0;
    for (n, task) in tasks.iter().enumerate() {
        let bad = |reason: String| Error::BadTask {
            path: path.into(),
            task: task_name(task, n),
            reason,
        };
        if min {
            let (row, round, ann) = min_record(&|k| task.get(k).cloned(), expect).map_err(bad)?;
            items.add(row, round, ann.into_iter().collect());
        } else {
            let (row, round, ann, ign) = full_task(task, expect).map_err(bad)?;
            ignored += ign;
            items.add(row, round, ann);
        }
    }
    Ok(LabelFile {
        shape: if min {
            Shape::LabelStudioJsonMin
        } else {
            Shape::LabelStudioJson
        },
        items: items.order,
        tasks: tasks.len(),
        ignored_results: ignored,
    })
}

/// "Label Studio task 12", or the element's place in the file when it has
/// no id.
fn task_name(task: &Value, n: usize) -> String {
    match task.get("id").and_then(text) {
        Some(id) => format!("Label Studio task {id}"),
        None => format!("task #{} of the file", n + 1),
    }
}

/// A task of Label Studio's JSON export (or a webhook's task with its one
/// annotation): (row, round, annotations, ignored results).
pub fn full_task(
    task: &Value,
    expect: &Expect,
) -> std::result::Result<(usize, Option<i64>, Vec<Annotation>, usize), String> {
    let Some(data) = task.get("data").and_then(Value::as_object) else {
        return Err("the task has no data object".into());
    };
    let (row, round) = expect.item(&|k| data.get(k).cloned())?;
    let mut ignored = 0;
    let mut out = Vec::new();
    let anns = match task.get("annotations") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(a)) => &a[..],
        Some(_) => return Err("annotations is not a list".into()),
    };
    for (i, an) in anns.iter().enumerate() {
        let (a, ign) =
            annotation(an).map_err(|r| format!("annotation {}: {r}", ann_name(an, i)))?;
        ignored += ign;
        out.push(Annotation {
            key: a.0,
            vote: expect
                .vote(&a.1)
                .map_err(|r| format!("annotation {}: {r}", ann_name(an, i)))
                .map(|v| if a.2 { Vote::Skipped } else { v })?,
        });
    }
    Ok((row, round, out, ignored))
}

fn ann_name(an: &Value, i: usize) -> String {
    an.get("id")
        .and_then(text)
        .unwrap_or_else(|| format!("#{}", i + 1))
}

/// An annotation's id, its choices from the workspace's control (a
/// `Number` control's number as text), whether it was cancelled (skipped),
/// and how many results of other controls it had.
#[allow(clippy::type_complexity)]
fn annotation(
    an: &Value,
) -> std::result::Result<((Option<String>, Vec<String>, bool), usize), String> {
    let key = an.get("id").and_then(text);
    let cancelled = an
        .get("was_cancelled")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let results = match an.get("result") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(r)) => &r[..],
        Some(_) => return Err("result is not a list".into()),
    };
    let mut choices = Vec::new();
    let mut ignored = 0;
    for r in results {
        if r.get("from_name").and_then(Value::as_str) != Some(CONTROL) {
            ignored += 1;
            continue;
        }
        if let Some(n) = r.pointer("/value/number") {
            match n {
                Value::Number(n) => choices.push(n.to_string()),
                _ => return Err(format!("value.number is {n}, not a number")),
            }
            continue;
        }
        let Some(list) = r.pointer("/value/choices").and_then(Value::as_array) else {
            return Err(format!(
                "a result of the control {CONTROL:?} without value.choices or value.number (type {}); the labeling config must use <Choices name=\"{CONTROL}\"> (or <Number name=\"{CONTROL}\"> in a regression workspace)",
                r.get("type")
                    .map_or("missing".to_string(), |t| t.to_string())
            ));
        };
        for c in list {
            choices.push(c.as_str().ok_or("a choice that is not a string")?.into());
        }
    }
    Ok(((key, choices, cancelled), ignored))
}

/// One record of a JSON_MIN, CSV or TSV export: one annotation of a task,
/// its choices under the control's name (a class name, `{"choices": [...]}`
/// when several were ticked, or nothing for an empty submit). Skipped
/// annotations do not appear in these exports.
fn min_record(
    get: &dyn Fn(&str) -> Option<Value>,
    expect: &Expect,
) -> std::result::Result<(usize, Option<i64>, Option<Annotation>), String> {
    let (row, round) = expect.item(get)?;
    let key = get("annotation_id")
        .and_then(|v| text(&v))
        .filter(|s| !s.is_empty());
    let vote = match get(CONTROL) {
        None | Some(Value::Null) => Vote::Empty,
        Some(Value::String(s)) if s.is_empty() => Vote::Empty,
        Some(Value::String(s)) if s.trim_start().starts_with(['{', '[']) => {
            let v: Value = serde_json::from_str(&s)
                .map_err(|e| format!("{CONTROL}: {s:?} is not a class name nor valid JSON: {e}"))?;
            min_choices(&v, expect)?
        }
        Some(Value::String(s)) => expect.vote(&[s.as_str()])?,
        Some(Value::Number(n)) => expect.vote(&[n.to_string()])?,
        Some(v) => min_choices(&v, expect)?,
    };
    // A task with no annotation at all appears without an annotation id
    // and without a label: nothing was said about it.
    if key.is_none() && vote == Vote::Empty {
        return Ok((row, round, None));
    }
    Ok((row, round, Some(Annotation { key, vote })))
}

/// The control's value in a flat export: `{"choices": [...]}`, or a
/// `Number` control's `[{"number": x}]` (one per result) or `{"number": x}`.
fn min_choices(v: &Value, expect: &Expect) -> std::result::Result<Vote, String> {
    let number = |n: &Value| match n.get("number") {
        Some(Value::Number(x)) => Some(x.to_string()),
        _ => None,
    };
    let names: Vec<String> = match v {
        Value::Array(list) => list
            .iter()
            .map(|n| number(n).ok_or_else(|| format!("{CONTROL}: {n} is not {{\"number\": x}}")))
            .collect::<std::result::Result<_, _>>()?,
        _ if number(v).is_some() => number(v).into_iter().collect(),
        _ => {
            let Some(list) = v.get("choices").and_then(Value::as_array) else {
                return Err(format!(
                    "{CONTROL}: expected a class name, {{\"choices\": [...]}} or {{\"number\": x}}, found {v}"
                ));
            };
            list.iter()
                .map(|c| {
                    c.as_str()
                        .map(str::to_string)
                        .ok_or("a choice that is not a string")
                })
                .collect::<std::result::Result<_, _>>()?
        }
    };
    expect.vote(&names)
}

/// A CSV or TSV file: `id,label` (a header line, the label a class name),
/// or Label Studio's CSV/TSV export (a header with `alpool_id`).
fn read_table(path: &Path, text: &str, delimiter: u8, expect: &Expect) -> Result<LabelFile> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(false)
        .from_reader(text.as_bytes());
    let bad_line = |line: u64, reason: String| Error::BadLine {
        path: path.into(),
        line,
        reason,
    };
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| bad_line(1, format!("unreadable header: {e}")))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    // An export whose tasks were all skipped has no rows and no data
    // columns, only Label Studio's own.
    let studio = header
        .iter()
        .any(|h| h == "alpool_id" || h == "annotation_id");
    if !studio && header != ["id", "label"] {
        return Err(bad_line(
            1,
            format!(
                "expected the header id,label or a Label Studio export with an alpool_id column, found {:?}",
                header.join(if delimiter == b'\t' { "\t" } else { "," })
            ),
        ));
    }
    let col = |name: &str| header.iter().position(|h| h == name);
    let mut items = Items::default();
    let mut tasks = 0;
    for rec in reader.records() {
        let rec = rec.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            bad_line(
                line,
                format!(
                    "malformed {}: {e}",
                    if delimiter == b'\t' { "TSV" } else { "CSV" }
                ),
            )
        })?;
        let line = rec.position().map_or(0, |p| p.line());
        if rec.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        tasks += 1;
        if studio {
            let get = |k: &str| {
                col(k)
                    .and_then(|i| rec.get(i))
                    .map(|s| Value::String(s.to_string()))
            };
            let task = col("id").and_then(|i| rec.get(i)).unwrap_or("?");
            let (row, round, ann) = min_record(&get, expect).map_err(|reason| Error::BadTask {
                path: path.into(),
                task: format!("line {line} (Label Studio task {task})"),
                reason,
            })?;
            items.add(row, round, ann.into_iter().collect());
        } else {
            let (id, label) = (rec[0].trim(), rec[1].trim());
            let row = expect.row(id).map_err(|r| bad_line(line, r))?;
            let vote = expect.csv_vote(label).map_err(|r| bad_line(line, r))?;
            items.add(row, None, vec![Annotation { key: None, vote }]);
        }
    }
    Ok(LabelFile {
        shape: match (studio, delimiter) {
            (false, _) => Shape::Csv,
            (true, b'\t') => Shape::LabelStudioTsv,
            (true, _) => Shape::LabelStudioCsv,
        },
        items: items.order,
        tasks,
        ignored_results: 0,
    })
}

/// Reads one Label Studio webhook (`ANNOTATION_CREATED` or
/// `ANNOTATION_UPDATED`): the task and its one annotation.
pub fn read_webhook(body: &Value, expect: &Expect) -> std::result::Result<LabelFile, String> {
    let task = body.get("task").ok_or("the webhook has no task")?;
    let ann = body
        .get("annotation")
        .ok_or("the webhook has no annotation")?;
    let mut t = task.clone();
    if let Some(o) = t.as_object_mut() {
        o.insert("annotations".into(), Value::Array(vec![ann.clone()]));
    }
    let (row, round, annotations, ignored) =
        full_task(&t, expect).map_err(|r| format!("{}: {r}", task_name(task, 0)))?;
    Ok(LabelFile {
        shape: Shape::Webhook,
        items: vec![ItemLabels {
            row,
            rounds: round.into_iter().collect(),
            annotations,
        }],
        tasks: 1,
        ignored_results: ignored,
    })
}

/// Seed labels for `init`: a CSV `id,label` file. (A Label Studio export
/// cannot seed a workspace: its tasks carry the token of the workspace that
/// exported them.) An id given twice with different labels is refused.
pub fn seed_labels(path: &Path, ids: &dyn RowOfId, vocab: &Vocab) -> Result<Vec<(usize, usize)>> {
    let file = read_seed_file(path, ids, vocab)?;
    file.items
        .iter()
        .map(|item| {
            let votes: Vec<Vote> = item.annotations.iter().map(|a| a.vote.clone()).collect();
            match decide(&votes, vocab, 1.0) {
                Decision::Label(c) => Ok((item.row, c)),
                _ => Err(Error::Exchange {
                    path: path.into(),
                    reason: format!("item row {} is given different labels", item.row),
                }),
            }
        })
        .collect()
}

/// A seed-label file read and checked as a CSV `id,label` file.
fn read_seed_file(path: &Path, ids: &dyn RowOfId, vocab: &Vocab) -> Result<LabelFile> {
    let expect = Expect {
        ids,
        vocab,
        token: "",
    };
    let file = read_table(path, &read_text(path)?, b',', &expect)?;
    if file.shape != Shape::Csv {
        return Err(Error::Exchange {
            path: path.into(),
            reason: "seed labels are a CSV id,label file".into(),
        });
    }
    Ok(file)
}

/// Checks a seed-label file's shape, header, lines and class names before
/// the pool's ids are stored, so that a bad file fails at once rather than
/// after millions of inserts. Its ids are checked afterwards, against the
/// stored ones ([`seed_labels`]).
pub(crate) fn check_seed_file(path: &Path, vocab: &Vocab) -> Result<()> {
    /// Takes every id, each as a row of its own.
    struct Any(std::cell::RefCell<HashMap<String, usize>>);
    impl RowOfId for Any {
        fn row_of(&self, id: &str) -> Result<Option<usize>> {
            let mut seen = self.0.borrow_mut();
            let next = seen.len();
            Ok(Some(*seen.entry(id.to_string()).or_insert(next)))
        }
    }
    read_seed_file(path, &Any(Default::default()), vocab).map(|_| ())
}
