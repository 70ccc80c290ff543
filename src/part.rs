//! Pools across many machines: each machine selects its shard's k best rows
//! as a *part* (each row's canonical priority and global row index, with
//! the job that made them), and [`merge`] returns the exact global top k.
//!
//! Why it is exact: the ranking is a total order on (priority, global row)
//! — higher priority first, then the lower global row. The global k best
//! rows of a pool are each among the k best of the shard that holds them
//! (a row beaten by k rows of its own shard is beaten by k rows of the
//! pool), so the k best of the union of the parts are the k best of the
//! pool, ties across shard boundaries included. This needs each part to be
//! complete: its k best, or every selectable row of its shard when it has
//! fewer; [`merge`] refuses a part that holds fewer rows than both k and
//! its shard's selectable rows, and parts of different jobs.
//!
//! # The part file (`.alpart`)
//! Little-endian: the 8 bytes `ALPART01`; a u32 `n`; `n` bytes of UTF-8
//! JSON, the [`PartHeader`]; then `count` records of 16 bytes, an f64
//! priority and a u64 global row index, best first.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::job::Job;
use crate::query::{InputForm, LogBase, MultiLabel, Query, RegressionInput, Stochastic};
use crate::score::Ranked;
use crate::score::stochastic::RowKeys;
use crate::select::{Keyed, Selection, TopK};

const MAGIC: &[u8; 8] = b"ALPART01";

/// What made a part: it must match across the parts of one merge.
#[derive(Clone, Debug, PartialEq)]
pub struct PartHeader {
    /// The strategy the part was selected with: row-wise, or a
    /// disagreement strategy (each row scored on its own, so parts merge).
    pub strategy: Query,
    /// Entropy's log base.
    pub log_base: LogBase,
    /// The random strategy's and the stochastic batch's seed.
    pub seed: u64,
    /// A stochastic batch's kind and β (softmax or power: each row's key
    /// is its own, so parts merge).
    pub stochastic: Option<Stochastic>,
    /// What the shard's rows held.
    pub input: InputForm,
    /// The global index of the shard's first row, and its row count.
    pub row_offset: u64,
    /// Rows in the shard.
    pub rows: u64,
    /// Rows of the shard that were excluded (never selectable).
    pub excluded: u64,
    /// The k the part was selected with, and how many rows it holds.
    pub k: u64,
    /// Rows the part holds.
    pub count: u64,
    /// Multi-label cardinality and adaptive: the labeled set's mean label
    /// count the part was scored with.
    pub label_cardinality: Option<f64>,
    /// Multi-label adaptive: its β.
    pub uncertainty_weight: f64,
}

impl PartHeader {
    /// The header of the part `sel` (a shard's rows at `row_offset`,
    /// indices already global) that `job` selected; an error for a batch
    /// query, whose picks depend on every row and cannot be merged.
    pub fn of(job: &Job, row_offset: u64, sel: &Selection, k: usize) -> Result<Self> {
        if !mergeable(job.query, job.stochastic) {
            return Err(Error::Config(format!(
                "{}: its picks depend on every row of the pool (a batch strategy, or softrank's ranks), so its parts cannot be merged",
                job.query
            )));
        }
        Ok(PartHeader {
            strategy: job.query,
            log_base: job.log_base,
            seed: job.seed,
            stochastic: job.stochastic,
            input: job.input,
            row_offset,
            rows: sel.rows,
            excluded: sel.excluded,
            k: k.min(u64::MAX as usize) as u64,
            count: sel.entries.len() as u64,
            label_cardinality: job.label_cardinality,
            uncertainty_weight: job.uncertainty_weight,
        })
    }

    fn input_json(&self) -> serde_json::Value {
        match self.input {
            InputForm::Probs {
                renormalize,
                sum_tol,
            } => {
                serde_json::json!({"form": "probs", "renormalize": renormalize, "sum_tol": sum_tol})
            }
            InputForm::Logits { temperature } => {
                serde_json::json!({"form": "logits", "temperature": temperature})
            }
            InputForm::MultiLabel { logits } => {
                serde_json::json!({"form": "multilabel", "logits": logits})
            }
            InputForm::Regression(kind) => serde_json::json!({"form": kind.name()}),
        }
    }

    fn stochastic_json(&self) -> serde_json::Value {
        match self.stochastic {
            // JSON has no infinity: β = ∞ is written as the string "inf".
            Some(st) if st.beta.is_finite() => {
                serde_json::json!({"kind": st.kind.name(), "beta": st.beta})
            }
            Some(st) => serde_json::json!({"kind": st.kind.name(), "beta": "inf"}),
            None => serde_json::Value::Null,
        }
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "strategy": self.strategy.name(),
            "log_base": self.log_base.name(),
            "seed": self.seed,
            "stochastic": self.stochastic_json(),
            "input": self.input_json(),
            "row_offset": self.row_offset,
            "rows": self.rows,
            "excluded": self.excluded,
            "k": self.k,
            "count": self.count,
            "label_cardinality": self.label_cardinality,
            "uncertainty_weight": self.uncertainty_weight,
        })
    }

    fn from_json(path: &Path, v: &serde_json::Value) -> Result<Self> {
        let bad = |what: &str| Error::Part {
            path: path.into(),
            reason: format!("header: {what}"),
        };
        let u = |k: &str| {
            v[k].as_u64()
                .ok_or_else(|| bad(&format!("{k} is not an integer")))
        };
        let stochastic = match &v["stochastic"] {
            serde_json::Value::Null => None,
            st => {
                let kind = st["kind"]
                    .as_str()
                    .and_then(|k| k.parse().ok())
                    .ok_or_else(|| bad("unknown stochastic kind"))?;
                let beta = match &st["beta"] {
                    serde_json::Value::String(s) if s == "inf" => f64::INFINITY,
                    b => b
                        .as_f64()
                        .ok_or_else(|| bad("stochastic beta is not a number"))?,
                };
                Some(Stochastic::new(kind, beta))
            }
        };
        let strategy = v["strategy"]
            .as_str()
            .and_then(Query::from_name)
            .filter(|&q| mergeable(q, stochastic))
            .ok_or_else(|| bad("unknown strategy, or one whose parts cannot merge"))?;
        let log_base = v["log_base"]
            .as_str()
            .and_then(|b| b.parse().ok())
            .ok_or_else(|| bad("unknown log_base"))?;
        let input = match v["input"]["form"].as_str() {
            Some("probs") => InputForm::Probs {
                renormalize: v["input"]["renormalize"].as_bool().unwrap_or(false),
                sum_tol: v["input"]["sum_tol"].as_f64().unwrap_or(0.0),
            },
            Some("logits") => InputForm::Logits {
                temperature: v["input"]["temperature"]
                    .as_f64()
                    .ok_or_else(|| bad("logits without a temperature"))?,
            },
            Some("multilabel") => InputForm::MultiLabel {
                logits: v["input"]["logits"]
                    .as_bool()
                    .ok_or_else(|| bad("multilabel without logits"))?,
            },
            Some(form) => {
                let kinds = [
                    RegressionInput::Predictions,
                    RegressionInput::MeanStd,
                    RegressionInput::Samples,
                ];
                match kinds.into_iter().find(|k| k.name() == form) {
                    Some(kind) => InputForm::Regression(kind),
                    None => return Err(bad("unknown input form")),
                }
            }
            None => return Err(bad("unknown input form")),
        };
        Ok(PartHeader {
            strategy,
            log_base,
            seed: u("seed")?,
            stochastic,
            input,
            row_offset: u("row_offset")?,
            rows: u("rows")?,
            excluded: u("excluded")?,
            k: u("k")?,
            count: u("count")?,
            label_cardinality: v["label_cardinality"].as_f64(),
            uncertainty_weight: v["uncertainty_weight"]
                .as_f64()
                .unwrap_or(crate::query::DEFAULT_UNCERTAINTY_WEIGHT),
        })
    }

    /// The input form as far as it decides scores: the row-sum tolerance
    /// only decides which rows are valid, so parts may differ in it.
    fn scoring_input(&self) -> String {
        match self.input {
            InputForm::Probs { renormalize, .. } => {
                if renormalize {
                    "probs, renormalized".into()
                } else {
                    "probs".into()
                }
            }
            InputForm::Logits { temperature } => format!("logits at temperature {temperature}"),
            InputForm::MultiLabel { logits: false } => "multi-label probabilities".into(),
            InputForm::MultiLabel { logits: true } => "multi-label logits".into(),
            InputForm::Regression(kind) => kind.name().into(),
        }
    }
}

/// Writes a part: `sel`'s rows, whose indices are already global.
pub fn write_part(w: &mut dyn Write, header: &PartHeader, sel: &Selection) -> std::io::Result<()> {
    let json = header.to_json().to_string();
    let mut w = BufWriter::new(w);
    w.write_all(MAGIC)?;
    w.write_all(&(json.len() as u32).to_le_bytes())?;
    w.write_all(json.as_bytes())?;
    for e in &sel.entries {
        w.write_all(&header.strategy.priority(e.score).to_le_bytes())?;
        w.write_all(&e.index.to_le_bytes())?;
    }
    w.flush()
}

/// An open part: its header, and its records still to read.
pub struct Part {
    /// The part file.
    pub path: PathBuf,
    /// Its header.
    pub header: PartHeader,
    reader: BufReader<std::fs::File>,
}

impl Part {
    /// Opens a part and reads its header.
    pub fn open(path: &Path) -> Result<Part> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let mut reader = BufReader::with_capacity(1 << 16, file);
        let bad = |reason: String| Error::Part {
            path: path.into(),
            reason,
        };
        let mut magic = [0u8; 8];
        let mut n = [0u8; 4];
        if reader.read_exact(&mut magic).is_err() || &magic != MAGIC {
            return Err(bad("not an alpool part file (no ALPART01 signature)".into()));
        }
        reader
            .read_exact(&mut n)
            .map_err(|_| bad("truncated header".into()))?;
        let n = u32::from_le_bytes(n) as u64;
        if 12 + n > len {
            return Err(bad(format!(
                "the header claims {n} bytes, the file has {len}"
            )));
        }
        let mut json = vec![0u8; n as usize];
        reader
            .read_exact(&mut json)
            .map_err(|_| bad("truncated header".into()))?;
        let v: serde_json::Value =
            serde_json::from_slice(&json).map_err(|e| bad(format!("header is not JSON: {e}")))?;
        let header = PartHeader::from_json(path, &v)?;
        let want = 12 + n + header.count * 16;
        if len != want {
            return Err(bad(format!(
                "{} bytes, but a header of {n} bytes and {} rows make {want}: truncated or damaged",
                len, header.count
            )));
        }
        Ok(Part {
            path: path.into(),
            header,
            reader,
        })
    }

    /// The next record, best first.
    fn next_record(&mut self) -> Result<Ranked> {
        let mut b = [0u8; 16];
        self.reader
            .read_exact(&mut b)
            .map_err(|e| Error::io(&self.path, e))?;
        let (p, i) = b.split_at(8);
        Ok(Ranked {
            priority: f64::from_le_bytes(p.try_into().unwrap_or([0; 8])),
            index: u64::from_le_bytes(i.try_into().unwrap_or([0; 8])),
        })
    }
}

/// The exact global top `k` over `parts`, after checking that they come
/// from one job, cover disjoint row ranges and each hold enough rows.
pub fn merge(paths: &[PathBuf], k: usize) -> Result<Selection> {
    let mut parts = paths
        .iter()
        .map(|p| Part::open(p))
        .collect::<Result<Vec<_>>>()?;
    let Some(first) = parts.first() else {
        return Err(Error::Config("no part files given".into()));
    };
    let h0 = first.header.clone();
    let p0 = first.path.clone();
    for p in &parts {
        check_part(&p0, &h0, p, k)?;
    }
    let mut ranges: Vec<(u64, u64, &Path)> = parts
        .iter()
        .map(|p| {
            (
                p.header.row_offset,
                p.header.row_offset + p.header.rows,
                p.path.as_path(),
            )
        })
        .collect();
    ranges.sort();
    for w in ranges.windows(2) {
        if w[1].0 < w[0].1 {
            return Err(Error::Part {
                path: w[1].2.into(),
                reason: format!(
                    "its rows {}..{} overlap rows {}..{} of {}",
                    w[1].0,
                    w[1].1,
                    w[0].0,
                    w[0].1,
                    w[0].2.display()
                ),
            });
        }
    }
    let keys = RowKeys::new(h0.strategy, h0.stochastic, h0.seed).unwrap_or_else(RowKeys::plain);
    let mut top = TopK::new(k);
    let (mut rows, mut excluded) = (0u64, 0u64);
    for part in &mut parts {
        rows += part.header.rows;
        excluded += part.header.excluded;
        let (lo, hi) = (
            part.header.row_offset,
            part.header.row_offset + part.header.rows,
        );
        for _ in 0..part.header.count {
            let r = part.next_record()?;
            if !(lo..hi).contains(&r.index) || r.priority.is_nan() {
                return Err(Error::Part {
                    path: part.path.clone(),
                    reason: format!(
                        "row {} (priority {}) is outside its rows {lo}..{hi} or not a number",
                        r.index, r.priority
                    ),
                });
            }
            let r = Keyed {
                key: keys.key(r.priority, r.index),
                index: r.index,
                priority: r.priority,
            };
            // Records come best first: once one cannot enter, none after
            // it can.
            if top.worst().is_some_and(|w| r >= *w) {
                break;
            }
            top.offer(r);
        }
    }
    Ok(Selection::from_topk(h0.strategy, top, rows, excluded, 0))
}

fn check_part(p0: &Path, h0: &PartHeader, p: &Part, k: usize) -> Result<()> {
    let h = &p.header;
    let refuse = |what: &str, a: String, b: String| Error::Part {
        path: p.path.clone(),
        reason: format!(
            "{what} {b}, but {} has {a}: parts of different jobs",
            p0.display()
        ),
    };
    if h.strategy != h0.strategy {
        return Err(refuse(
            "strategy",
            h0.strategy.name().into(),
            h.strategy.name().into(),
        ));
    }
    if h.seed != h0.seed {
        return Err(refuse("seed", h0.seed.to_string(), h.seed.to_string()));
    }
    let drawn = |h: &PartHeader| {
        h.stochastic
            .map_or("the plain top k".into(), |s| s.to_string())
    };
    if h.stochastic != h0.stochastic {
        return Err(refuse("stochastic batch", drawn(h0), drawn(h)));
    }
    if h.log_base != h0.log_base {
        return Err(refuse(
            "log base",
            h0.log_base.name().into(),
            h.log_base.name().into(),
        ));
    }
    if h.scoring_input() != h0.scoring_input() {
        return Err(refuse("input", h0.scoring_input(), h.scoring_input()));
    }
    if let Query::Multi(m) = h.strategy {
        // What the part's scores depend on besides the rows.
        let opts = |h: &PartHeader| {
            let c = h.label_cardinality.map_or("none".into(), |c| c.to_string());
            match m {
                MultiLabel::Cardinality => format!("label cardinality {c}"),
                MultiLabel::Adaptive => format!(
                    "label cardinality {c}, uncertainty weight {}",
                    h.uncertainty_weight
                ),
                _ => String::new(),
            }
        };
        if opts(h) != opts(h0) {
            return Err(refuse("multi-label options", opts(h0), opts(h)));
        }
    }
    let selectable = h.rows - h.excluded.min(h.rows);
    if h.count < (k as u64).min(selectable) {
        return Err(Error::Part {
            path: p.path.clone(),
            reason: format!(
                "holds {} rows (selected with k = {}) of a shard with {selectable} selectable rows, but the merge asks for k = {k}: rerun that shard's select with -k {k} or more",
                h.count, h.k
            ),
        });
    }
    Ok(())
}

/// Whether a query's parts merge exactly: every row ranked on its own
/// (not a batch strategy, nor softrank's ranks in the whole pool).
pub fn mergeable(query: Query, stochastic: Option<Stochastic>) -> bool {
    !query.picks_batch() && stochastic.is_none_or(|s| s.per_row())
}

/// Merges in-memory parts (each one shard's rows with their canonical
/// priorities, in any order) into the exact global top `k` under `keys`
/// (the plain ranking, or a stochastic batch's): the Ray driver's merge.
pub fn merge_ranked(
    strategy: impl Into<Query>,
    keys: RowKeys,
    parts: &[Vec<Ranked>],
    k: usize,
) -> Selection {
    let mut top = TopK::new(k);
    for r in parts.iter().flatten() {
        top.offer(Keyed {
            key: keys.key(r.priority, r.index),
            index: r.index,
            priority: r.priority,
        });
    }
    let rows = parts.iter().map(|p| p.len() as u64).sum();
    Selection::from_topk(strategy, top, rows, 0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::Strategy;

    #[test]
    fn headers_round_trip() {
        let h = PartHeader {
            strategy: Query::Score(Strategy::Entropy),
            log_base: LogBase::Two,
            seed: 9,
            stochastic: Some(Stochastic::new(
                crate::query::StochasticKind::Power,
                f64::INFINITY,
            )),
            input: InputForm::Logits { temperature: 1.5 },
            row_offset: 100,
            rows: 50,
            excluded: 2,
            k: 10,
            count: 10,
            label_cardinality: None,
            uncertainty_weight: 0.5,
        };
        let back = PartHeader::from_json(Path::new("x"), &h.to_json()).unwrap();
        assert_eq!(back, h);
        let multi = PartHeader {
            strategy: Query::Multi(crate::query::MultiLabel::Adaptive),
            input: InputForm::MultiLabel { logits: true },
            label_cardinality: Some(1.75),
            uncertainty_weight: 0.25,
            ..h
        };
        let back = PartHeader::from_json(Path::new("x"), &multi.to_json()).unwrap();
        assert_eq!(back, multi);
    }
}
