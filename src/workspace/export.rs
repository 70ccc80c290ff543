//! Batches handed to annotators: CSV, JSON lines, or Label Studio's task
//! import JSON, and the Label Studio labeling config that fits those tasks.
//! (Labels coming back are read by [`super::ingest`].)
//!
//! # Label Studio tasks
//! Every task's `data` carries alpool's keys, which cannot collide with
//! Label Studio's own `id` nor with the item data given at `init`:
//! `alpool_id` (the item id), `alpool_workspace` (the workspace token, so an
//! export of another workspace is refused by name), `alpool_index`,
//! `alpool_round`, `alpool_rank` and `alpool_score` (the strategy's score);
//! then the item's data. The prediction's `model_version` is the same for
//! every round of a workspace (`alpool-<token>`), so Label Studio keeps
//! showing pre-annotations after round 0, and its `score` is oriented so that
//! Label Studio's ascending order serves the most informative item first:
//! `0 − priority` (the margin itself; minus the score for the others), an
//! exact negation, so no two scores merge.

use std::io::Write;
use std::path::Path;

use super::items::{ItemTable, RowOfId, is_duplicate};
use super::vocab::Vocab;
use crate::error::{Error, Result, quoted};
use crate::lines::each_line;
use crate::query::Query;

/// The `Choices` control the tasks' predictions and the labels use.
pub const CONTROL: &str = "label";
/// The object tag the control labels.
pub const OBJECT: &str = "item";
/// Keys alpool writes into a task's data; item data may not use them.
pub const RESERVED_KEYS: [&str; 6] = [
    "alpool_id",
    "alpool_workspace",
    "alpool_index",
    "alpool_round",
    "alpool_rank",
    "alpool_score",
];

/// One exported row of a batch.
pub struct BatchRow<'a> {
    /// 1 = picked first.
    pub rank: i64,
    /// The item's row.
    pub index: usize,
    /// The item's id.
    pub id: &'a str,
    /// The strategy's score.
    pub score: f64,
    /// The model's label (a [`Vocab`] code: a class, or a set).
    pub predicted: usize,
    /// The model's probabilities.
    pub probabilities: &'a [f32],
    /// The item's data from `init --data` (a JSON object), if any.
    pub data: Option<&'a serde_json::Map<String, serde_json::Value>>,
}

/// What every task of a batch shares.
pub struct BatchInfo<'a> {
    /// The classes, and whether a label is a set of them.
    pub vocab: &'a Vocab,
    /// The round's number.
    pub round: i64,
    /// The strategy that picked the batch.
    pub strategy: Query,
    /// The workspace token.
    pub token: &'a str,
    /// Whether a model made predictions: a cold-start batch, chosen before
    /// any model exists, carries none (no `predicted` and `p_` columns, no
    /// Label Studio prediction, no round).
    pub model: bool,
}

/// The one `model_version` of a workspace's predictions.
pub fn model_version(token: &str) -> String {
    format!("alpool-{token}")
}

/// The prediction score Label Studio sorts ascending: lower is more
/// informative, for every strategy. A batch-aware strategy's scores are
/// only meaningful in pick order, so its tasks carry their `rank`.
pub fn label_studio_score(strategy: Query, score: f64, rank: i64) -> f64 {
    match strategy {
        Query::Batch(_) => rank as f64,
        q => 0.0 - q.priority(score),
    }
}

/// Columns Label Studio's flat exports add next to the task data.
const STUDIO_COLUMNS: [&str; 7] = [
    CONTROL,
    "id",
    "annotator",
    "annotation_id",
    "created_at",
    "updated_at",
    "lead_time",
];

/// A Label Studio prediction of `class` with alpool's oriented score.
pub fn prediction(info: &BatchInfo, class: usize, score: f64, rank: i64) -> serde_json::Value {
    serde_json::json!({
        "model_version": model_version(info.token),
        "score": label_studio_score(info.strategy, score, rank),
        "result": choice_result(info.vocab, class),
    })
}

/// The `result` of a prediction (or annotation) choosing the label
/// `code`: its class, its set's classes, or its number (the `Number`
/// control's).
pub fn choice_result(vocab: &Vocab, code: usize) -> serde_json::Value {
    if vocab.numeric() {
        return serde_json::json!([{"from_name": CONTROL, "to_name": OBJECT, "type": "number",
                                   "value": {"number": Vocab::number(code)}}]);
    }
    let names: Vec<&str> = vocab
        .classes_of(code)
        .into_iter()
        .map(|c| vocab.names[c].as_str())
        .collect();
    serde_json::json!([{"from_name": CONTROL, "to_name": OBJECT, "type": "choices",
                        "value": {"choices": names}}])
}

/// The control tag a workspace's labels come through: `Choices` (one class,
/// or several in a multi-label workspace), or a regression's `Number`.
pub fn control_tag(vocab: &Vocab) -> String {
    let tag = if vocab.numeric() { "Number" } else { "Choices" };
    format!("<{tag} name=\"{CONTROL}\" toName=\"{OBJECT}\">")
}

/// Whether a Label Studio labeling config has the control alpool's
/// predictions and labels use, over alpool's object tag; the reason if
/// not.
pub fn config_fits(vocab: &Vocab, config: &str) -> std::result::Result<(), String> {
    let tag = if vocab.numeric() {
        "<Number"
    } else {
        "<Choices"
    };
    let control = format!("name=\"{CONTROL}\"");
    let object = format!("name=\"{OBJECT}\"");
    if config.contains(tag) && config.contains(&control) && config.contains(&object) {
        return Ok(());
    }
    Err(format!(
        "the project's labeling config needs {} over an object tag named \"{OBJECT}\"; `alpool labeling-config` prints one",
        control_tag(vocab)
    ))
}

/// The keys alpool puts in every task's data: the item's id and row, and
/// the workspace token.
pub fn task_data(
    id: &str,
    token: &str,
    index: usize,
) -> serde_json::Map<String, serde_json::Value> {
    let mut data = serde_json::Map::new();
    data.insert("alpool_id".into(), id.into());
    data.insert("alpool_workspace".into(), token.into());
    data.insert("alpool_index".into(), index.into());
    data
}

/// Batch formats, by the extension of `--out`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchFormat {
    /// `id,index,score,predicted,p_CLASS...`.
    Csv,
    /// One JSON object per item.
    Jsonl,
    /// Label Studio's task import JSON, with the prediction and the
    /// uncertainty score attached.
    LabelStudio,
}

impl BatchFormat {
    /// The format `p`'s extension names.
    pub fn from_path(p: &Path) -> Result<BatchFormat> {
        match p
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .as_deref()
        {
            Some("csv") => Ok(BatchFormat::Csv),
            Some("jsonl") => Ok(BatchFormat::Jsonl),
            Some("json") => Ok(BatchFormat::LabelStudio),
            _ => Err(Error::Config(format!(
                "{}: unknown batch format; use .csv, .jsonl or .json (Label Studio tasks)",
                p.display()
            ))),
        }
    }
}

/// Writes the batch `rows` in `format`.
pub fn write_batch(
    w: &mut dyn Write,
    format: BatchFormat,
    info: &BatchInfo,
    rows: &[BatchRow],
) -> std::io::Result<()> {
    if !info.model && !matches!(format, BatchFormat::LabelStudio) {
        return write_unpredicted(w, format, rows);
    }
    // A regressor's one output is its prediction: no probability columns.
    let classes: &[String] = match info.vocab.numeric() {
        true => &[],
        false => &info.vocab.names,
    };
    match format {
        BatchFormat::Csv => {
            write!(w, "id,index,score,predicted")?;
            for c in classes {
                write!(w, ",p_{c}")?;
            }
            writeln!(w)?;
            for r in rows {
                write!(
                    w,
                    "{},{},{},{}",
                    csv_field(r.id),
                    r.index,
                    r.score,
                    csv_field(&info.vocab.name(r.predicted))
                )?;
                for p in &r.probabilities[..classes.len()] {
                    write!(w, ",{p}")?;
                }
                writeln!(w)?;
            }
        }
        BatchFormat::Jsonl => {
            for r in rows {
                let probs: serde_json::Map<String, serde_json::Value> = classes
                    .iter()
                    .zip(r.probabilities)
                    .map(|(c, &p)| (c.clone(), serde_json::json!(p)))
                    .collect();
                let mut row = serde_json::json!({"id": r.id, "index": r.index, "rank": r.rank, "score": r.score,
                                                 "predicted": info.vocab.name(r.predicted)});
                if info.vocab.numeric() {
                    row["predicted"] = serde_json::json!(Vocab::number(r.predicted));
                } else {
                    row["probabilities"] = serde_json::Value::Object(probs);
                }
                writeln!(w, "{row}")?;
            }
        }
        BatchFormat::LabelStudio => {
            let tasks: Vec<serde_json::Value> = rows
                .iter()
                .map(|r| {
                    let mut data = task_data(r.id, info.token, r.index);
                    if info.model {
                        data.insert("alpool_round".into(), info.round.into());
                    }
                    data.insert("alpool_rank".into(), r.rank.into());
                    data.insert("alpool_score".into(), r.score.into());
                    if let Some(d) = r.data {
                        data.extend(d.iter().map(|(k, v)| (k.clone(), v.clone())));
                    }
                    if !info.model {
                        return serde_json::json!({ "data": data });
                    }
                    serde_json::json!({
                        "data": data,
                        "predictions": [prediction(info, r.predicted, r.score, r.rank)],
                    })
                })
                .collect();
            let text = serde_json::to_string_pretty(&tasks).map_err(std::io::Error::other)?;
            w.write_all(text.as_bytes())?;
            writeln!(w)?;
        }
    }
    Ok(())
}

/// A batch chosen before any model: ids, rows and scores alone.
fn write_unpredicted(
    w: &mut dyn Write,
    format: BatchFormat,
    rows: &[BatchRow],
) -> std::io::Result<()> {
    if let BatchFormat::Csv = format {
        writeln!(w, "id,index,score")?;
    }
    for r in rows {
        match format {
            BatchFormat::Csv => writeln!(w, "{},{},{}", csv_field(r.id), r.index, r.score)?,
            _ => writeln!(
                w,
                "{}",
                serde_json::json!({"id": r.id, "index": r.index, "rank": r.rank, "score": r.score})
            )?,
        }
    }
    Ok(())
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// A Label Studio labeling config that fits a workspace's tasks: the
/// `Choices` control alpool reads (`label`: one choice per annotation, or
/// any number of them in a multi-label workspace) over
/// an object tag named `item` that shows the item's data. The tag follows
/// the first data key: `image`/`img`/`url`… → `<Image>`, `audio` → `<Audio>`,
/// anything else → `<Text>`; with no data, the item's id is shown.
pub fn labeling_config(vocab: &Vocab, data_keys: &[String]) -> String {
    let (tag, key) = match data_keys.first() {
        None => ("Text", "alpool_id".to_string()),
        Some(k) => {
            let l = k.to_ascii_lowercase();
            let tag = if ["image", "img", "url", "image_url", "photo", "picture"]
                .iter()
                .any(|n| l == *n || l.ends_with(&format!("_{n}")))
            {
                "Image"
            } else if l.contains("audio") {
                "Audio"
            } else {
                "Text"
            };
            (tag, k.clone())
        }
    };
    let mut out = String::from("<View>\n");
    out += &format!(
        "  <{tag} name=\"{OBJECT}\" value=\"${}\"/>\n",
        xml_escape(&key)
    );
    if vocab.numeric() {
        out += &format!(
            "  <Header value=\"{}\"/>\n  <Number name=\"{CONTROL}\" toName=\"{OBJECT}\" required=\"true\"/>\n</View>\n",
            xml_escape(&vocab.names[0])
        );
        return out;
    }
    // A multi-label answer may be the empty set: no choice is required.
    let choice = match vocab.multilabel() {
        true => "choice=\"multiple\"",
        false => "choice=\"single-radio\" showInline=\"true\" required=\"true\"",
    };
    out += &format!("  <Choices name=\"{CONTROL}\" toName=\"{OBJECT}\" {choice}>\n");
    for c in &vocab.names {
        out += &format!("    <Choice value=\"{}\"/>\n", xml_escape(c));
    }
    out += "  </Choices>\n</View>\n";
    out
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Item data for `init --data`, stored as it is read: JSON lines, one
/// object per item with its `id` and the fields its Label Studio task shows
/// (`{"id": "a17", "image": "https://…/a17.jpg"}`). Returns the field names
/// in first-seen order. An unknown or repeated id, a line that is not an
/// object, or a field alpool reserves is refused by line.
pub(super) fn insert_item_data(items: &ItemTable, path: &Path) -> Result<Vec<String>> {
    let mut insert = items
        .conn
        .prepare("INSERT INTO item_data VALUES (?1, ?2)")
        .map_err(super::db_err(items.db))?;
    let mut keys: Vec<String> = Vec::new();
    each_line(path, |number, line| {
        let bad = |reason: String| Error::BadLine {
            path: path.into(),
            line: number,
            reason,
        };
        if line.trim().is_empty() {
            return Ok(());
        }
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| bad(format!("invalid JSON: {e}")))?;
        let serde_json::Value::Object(mut obj) = v else {
            return Err(bad("expected a JSON object per line".into()));
        };
        let id = match obj.remove("id") {
            Some(serde_json::Value::String(s)) => s,
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => return Err(bad("no \"id\" (the item's id, as in the workspace)".into())),
        };
        let row = items
            .row_of(&id)?
            .ok_or_else(|| bad(format!("unknown item id {}", quoted(&id))))?;
        if let Some(k) = obj.keys().find(|k| RESERVED_KEYS.contains(&k.as_str())) {
            return Err(bad(format!("the field {k:?} is reserved for alpool")));
        }
        // Label Studio's flat exports (JSON_MIN, CSV, TSV) put the data
        // fields and its own columns side by side: a field named like one
        // of them would be overwritten, or read as the label.
        if let Some(k) = obj.keys().find(|k| STUDIO_COLUMNS.contains(&k.as_str())) {
            return Err(bad(format!(
                "the field {k:?} collides with a column of Label Studio's exports; rename it"
            )));
        }
        for k in obj.keys() {
            if !keys.contains(k) {
                keys.push(k.clone());
            }
        }
        let text = serde_json::Value::Object(obj).to_string();
        // The table's key is the row: a second line for an item fails here.
        match insert.execute(rusqlite::params![row as i64, text]) {
            Err(e) if is_duplicate(&e) => {
                return Err(bad(format!(
                    "id {} again (its data was given on an earlier line)",
                    quoted(&id)
                )));
            }
            r => r.map_err(super::db_err(items.db))?,
        };
        Ok(())
    })?;
    Ok(keys)
}
