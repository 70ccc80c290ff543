//! Exchange formats with annotators: batch exports (CSV, JSON lines, Label
//! Studio task import JSON) and label imports (CSV `id,label`, Label Studio
//! JSON export). Imports are validated whole before anything is applied.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// One exported row of a batch.
pub struct BatchRow<'a> {
    pub rank: i64,
    pub index: usize,
    pub id: &'a str,
    pub score: f64,
    pub predicted: usize,
    pub probabilities: &'a [f32],
}

/// Batch formats, by the extension of `--out`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchFormat {
    Csv,
    Jsonl,
    /// Label Studio's task import JSON, with the prediction and the
    /// uncertainty score attached.
    LabelStudio,
}

impl BatchFormat {
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

pub fn write_batch(
    w: &mut dyn Write,
    format: BatchFormat,
    classes: &[String],
    round: i64,
    rows: &[BatchRow],
) -> std::io::Result<()> {
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
                    csv_field(&classes[r.predicted])
                )?;
                for p in r.probabilities {
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
                writeln!(
                    w,
                    "{}",
                    serde_json::json!({"id": r.id, "index": r.index, "rank": r.rank, "score": r.score,
                                       "predicted": classes[r.predicted], "probabilities": probs})
                )?;
            }
        }
        BatchFormat::LabelStudio => {
            let tasks: Vec<serde_json::Value> = rows
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "data": {"id": r.id, "index": r.index, "rank": r.rank},
                        "predictions": [{
                            "model_version": format!("alpool round {round}"),
                            "score": r.score,
                            "result": [{"from_name": "label", "to_name": "item", "type": "choices",
                                        "value": {"choices": [classes[r.predicted]]}}],
                        }],
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

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Parses and validates a label file: CSV (`id,label`, a header line, the
/// label a class name) or, for `.json`, a Label Studio export. Returns
/// (row, class) pairs; any problem rejects the whole file.
pub fn read_labels(
    path: &Path,
    ids: &HashMap<String, usize>,
    classes: &[String],
) -> Result<Vec<(usize, usize)>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let text = std::str::from_utf8(&bytes).map_err(|e| Error::BadLine {
        path: path.into(),
        line: bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count() as u64
            + 1,
        reason: "the file is not valid UTF-8 (save it as UTF-8)".into(),
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Err(Error::BadLine {
            path: path.into(),
            line: 1,
            reason: "the file is empty".into(),
        });
    }
    let class_of = |name: &str| classes.iter().position(|c| c == name);
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let mut out: Vec<(usize, usize)> = Vec::new();
    let mut seen: HashMap<usize, u64> = HashMap::new();
    let known = classes.join(", ");
    if is_json {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| Error::BadLine {
            path: path.into(),
            line: e.line() as u64,
            reason: format!("invalid JSON: {e}"),
        })?;
        let tasks = v.as_array().ok_or_else(|| Error::Exchange {
            path: path.into(),
            reason: "a Label Studio export is a JSON array of tasks".into(),
        })?;
        for (t, task) in tasks.iter().enumerate() {
            let bad = |reason: String| Error::BadElement {
                path: path.into(),
                element: t as u64,
                reason,
            };
            let id = match task.pointer("/data/id") {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Number(n)) => n.to_string(),
                _ => {
                    return Err(bad(
                        "task has no data.id (export the tasks alpool created)".into()
                    ));
                }
            };
            let choice = task
                .get("annotations")
                .and_then(|a| a.as_array())
                .and_then(|a| {
                    a.iter().rev().find(|an| {
                        !an.get("was_cancelled")
                            .and_then(|c| c.as_bool())
                            .unwrap_or(false)
                    })
                })
                .and_then(|an| an.pointer("/result/0/value/choices/0"))
                .and_then(|c| c.as_str());
            let Some(choice) = choice else {
                continue; // not annotated yet
            };
            let row = *ids
                .get(&id)
                .ok_or_else(|| bad(format!("unknown id {id:?}")))?;
            let class = class_of(choice)
                .ok_or_else(|| bad(format!("unknown class {choice:?}; classes are {known}")))?;
            if let Some(prev) = seen.insert(row, t as u64) {
                return Err(bad(format!(
                    "id {id:?} is labeled again (first in task {prev})"
                )));
            }
            out.push((row, class));
        }
    } else {
        let mut lines = text.lines().enumerate();
        let (_, header) = lines.next().unwrap_or((0, ""));
        let h: Vec<&str> = header.split(',').map(str::trim).collect();
        if h != ["id", "label"] {
            return Err(Error::BadLine {
                path: path.into(),
                line: 1,
                reason: format!("expected the header id,label, found {header:?}"),
            });
        }
        for (i, line) in lines {
            let line_no = i as u64 + 1;
            if line.trim().is_empty() {
                continue;
            }
            let bad = |reason: String| Error::BadLine {
                path: path.into(),
                line: line_no,
                reason,
            };
            let Some((id, label)) = line.rsplit_once(',') else {
                return Err(bad("expected two fields, id,label".into()));
            };
            let id = id.trim().trim_matches('"');
            let label = label.trim().trim_matches('"');
            let row = *ids
                .get(id)
                .ok_or_else(|| bad(format!("unknown id {id:?}")))?;
            let class = class_of(label)
                .ok_or_else(|| bad(format!("unknown class {label:?}; classes are {known}")))?;
            if let Some(prev) = seen.insert(row, line_no) {
                return Err(bad(format!(
                    "id {id:?} appears again (first on line {prev})"
                )));
            }
            out.push((row, class));
        }
    }
    if out.is_empty() {
        return Err(Error::BadLine {
            path: path.into(),
            line: 1,
            reason: "no labels in the file".into(),
        });
    }
    Ok(out)
}
