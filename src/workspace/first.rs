//! The first batch of a workspace, chosen before any label or model exists
//! (`init --seed-strategy`): a cold-start strategy ([`crate::coldstart`])
//! over the items' embeddings, the labeled items counting as covered. The
//! batch file has each item's id, row and score, and no prediction, since
//! there is no model yet; `ingest` takes its answers like any batch's.

use std::path::Path;

use super::Workspace;
use super::export::{self, BatchFormat, BatchInfo, BatchRow};
use crate::backend::Progress;
use crate::error::{Error, Result};
use crate::job::Job;
use crate::pool::{Exclusions, Pool};
use crate::query::Query;
use crate::select::Selection;
use crate::{Device, Inputs, Run};

/// Picks `job.k` items of `ws` by `job`'s cold-start strategy from `emb`
/// (one row per item), never a labeled one, and writes them to `out`
/// (.csv, .jsonl, or .json Label Studio tasks) atomically.
pub fn first_batch(
    ws: &Workspace,
    emb: &Pool,
    job: &Job,
    out: &Path,
    progress: &dyn Progress,
) -> Result<Selection> {
    let format = BatchFormat::from_path(out)?;
    let Query::Cold(_) = job.query else {
        return Err(Error::Config(format!(
            "--seed-strategy takes a strategy that needs no model (typiclust, probcover, maxherding, kmeans, density), not {}",
            job.query
        )));
    };
    let items = ws.items()? as u64;
    if emb.rows() != items {
        return Err(Error::Config(format!(
            "{}: {} rows of embeddings for the workspace's {items} items; give one row per item, in the features' order",
            emb.shards()[0].path().display(),
            emb.rows()
        )));
    }
    let labeled: Vec<u64> = ws.labels()?.iter().map(|l| l.index as u64).collect();
    let job = job.clone().exclude(Exclusions::new(labeled));
    let run = Run {
        device: Device::Cpu,
        adapter: None,
        progress,
        gpu: None,
    };
    let sel = crate::select(Inputs::embeddings(emb), &job, &run)?.selection;
    let rows: Vec<usize> = sel.entries.iter().map(|e| e.index as usize).collect();
    let ids = ws.ids_of(&rows)?;
    let data = ws.item_data(&rows)?;
    let batch: Vec<BatchRow> = sel
        .entries
        .iter()
        .enumerate()
        .map(|(r, e)| BatchRow {
            rank: e.rank as i64,
            index: e.index as usize,
            id: &ids[r],
            score: e.score,
            predicted: 0,
            probabilities: &[],
            data: data[r].as_ref(),
        })
        .collect();
    let vocab = ws.vocab()?;
    crate::atomic::write(out, |w| {
        let token = ws.token()?;
        let info = BatchInfo {
            vocab: &vocab,
            round: 0,
            strategy: job.query,
            token: &token,
            model: false,
        };
        export::write_batch(w, format, &info, &batch).map_err(|e| Error::io(out, e))
    })?;
    Ok(sel)
}
