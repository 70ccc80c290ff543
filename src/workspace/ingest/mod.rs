//! Labels coming back from annotators, in one place: [`read`] reads every
//! shape they arrive in (a plain `id,label` CSV, Label Studio's JSON,
//! JSON_MIN, CSV and TSV exports, its annotation webhooks) and validates a
//! file whole before anything is applied; [`votes`] holds the rule that
//! turns an item's votes into a label, a conflict or a skip, so several
//! annotators, two ticked choices, skips and empty submits are never stored
//! as a label by accident; [`Workspace::ingest`] applies a file in one
//! transaction.

pub mod read;
pub mod votes;

use std::path::Path;

use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};

use super::vocab::Vocab;
use super::{Workspace, checkpoint, db_err, now};
use crate::error::Result;
pub(crate) use read::check_seed_file;
pub use read::{
    Annotation, Expect, ItemLabels, LabelFile, Shape, full_task, read_label_file, read_webhook,
    seed_labels,
};
pub use votes::{Decision, Vote, decide};

/// How `ingest` (and the ML backend's webhooks) turn votes into labels.
#[derive(Clone, Copy, Debug)]
pub struct IngestOptions {
    /// Replace a stored label that a new decision contradicts (recorded),
    /// instead of keeping the new one apart as a conflict.
    pub overwrite: bool,
    /// The share of an item's class votes the winning class needs (it also
    /// needs a strict plurality).
    pub agreement: f64,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            overwrite: false,
            agreement: 0.5,
        }
    }
}

/// What an ingest did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IngestReport {
    /// Tasks (or lines) read, items they named, annotations among them.
    pub tasks: usize,
    /// Items they named.
    pub items: usize,
    /// Annotations among them.
    pub annotations: usize,
    /// Items that got a new label.
    pub labeled: usize,
    /// Items whose label was already the same.
    pub unchanged: usize,
    /// Items whose label was replaced (`--overwrite`).
    pub overwritten: usize,
    /// Items whose votes are a conflict now (new or already recorded).
    pub conflicts: usize,
    /// Items with nothing but skips, and nothing but empty submits.
    pub skipped: usize,
    /// Items with nothing but empty submits.
    pub empty: usize,
    /// Results of other controls, ignored.
    pub ignored_results: usize,
    /// (round, items of its batch that are unlabeled and absent from the
    /// file, batch size), for each round the file's tasks came from.
    pub missing: Vec<(i64, usize, usize)>,
}

/// One item's annotations as this ingest sees them, with where it runs.
struct Ctx<'t> {
    tx: &'t Transaction<'t>,
    p: &'t Path,
    vocab: &'t Vocab,
    round: i64,
    source: &'t str,
    time: String,
    opts: IngestOptions,
}

impl Workspace {
    /// Applies a validated label file (or webhook) in one transaction. Each
    /// item's votes — those stored from earlier files and webhooks, replaced
    /// where an annotation id repeats, plus this file's — are decided by
    /// [`decide`]: a label is stored (an equal one is a no-op; a different
    /// one is a conflict, or replaces it with `overwrite`), a conflict is
    /// kept apart, or the item is recorded as skipped. A clean decision
    /// resolves the item's open conflicts.
    pub fn ingest(
        &mut self,
        file: &LabelFile,
        source: &str,
        opts: IngestOptions,
    ) -> Result<IngestReport> {
        let vocab = self.vocab()?;
        let p = self.path();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err(&p))?;
        let round: i64 = tx
            .query_row("SELECT COALESCE(MAX(round), -1) FROM rounds", [], |r| {
                r.get(0)
            })
            .map_err(db_err(&p))?;
        let mut rep = IngestReport {
            tasks: file.tasks,
            items: file.items.len(),
            ignored_results: file.ignored_results,
            ..IngestReport::default()
        };
        let ctx = Ctx {
            tx: &tx,
            p: &p,
            vocab: &vocab,
            round,
            source,
            time: now(),
            opts,
        };
        for (n, item) in file.items.iter().enumerate() {
            rep.annotations += item.annotations.iter().filter(|a| a.key.is_some()).count();
            ctx.apply_item(item, &mut rep)?;
            if n == file.items.len() / 2 {
                checkpoint("ingest-mid-transaction");
            }
        }
        rep.missing = missing_from_batches(&tx, &p, file)?;
        tx.commit().map_err(db_err(&p))?;
        Ok(rep)
    }
}

impl Ctx<'_> {
    /// Stores the item's keyed votes, then decides over all of its votes.
    fn apply_item(&self, item: &ItemLabels, rep: &mut IngestReport) -> Result<()> {
        let (tx, p) = (self.tx, self.p);
        let idx = item.row as i64;
        let mut votes = Vec::new();
        for a in &item.annotations {
            let Some(key) = &a.key else {
                votes.push(a.vote.clone());
                continue;
            };
            let (class, several) = match &a.vote {
                Vote::Class(c) => (Some(*c as i64), None),
                Vote::Several(cs) => (None, Some(serde_json::json!(cs).to_string())),
                _ => (None, None),
            };
            tx.execute(
                "INSERT OR REPLACE INTO votes VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    idx,
                    key,
                    a.vote.kind(),
                    class,
                    several,
                    self.source,
                    self.time
                ],
            )
            .map_err(db_err(p))?;
        }
        votes.extend(stored_votes(tx, p, idx)?);
        match decide(&votes, self.vocab, self.opts.agreement) {
            Decision::Label(c) => self.label(item.row, c, rep),
            Decision::Conflict(reason) => {
                let stored = stored_label(tx, p, idx)?;
                record_conflict(tx, p, idx, stored, None, &reason, self.source)?;
                rep.conflicts += 1;
                Ok(())
            }
            Decision::Skipped(skips, empty) => self.skipped(idx, skips, empty, rep),
        }
    }

    /// A decided label: stored, and the item's open conflicts and skip
    /// resolved, unless it conflicts with the stored label.
    fn label(&self, row: usize, c: usize, rep: &mut IngestReport) -> Result<()> {
        let (tx, p, idx) = (self.tx, self.p, row as i64);
        let outcome = apply_one(tx, p, row, c, self.round, self.source, self.opts.overwrite)?;
        match outcome {
            Applied::New => rep.labeled += 1,
            Applied::Same => rep.unchanged += 1,
            Applied::Overwritten => rep.overwritten += 1,
            Applied::Conflict => rep.conflicts += 1,
        }
        if outcome != Applied::Conflict {
            tx.execute(
                "UPDATE conflicts SET resolved = ?2 WHERE idx = ?1 AND resolved IS NULL",
                params![
                    idx,
                    format!("labeled {} by {}", self.vocab.name(c), self.source)
                ],
            )
            .map_err(db_err(p))?;
            tx.execute("DELETE FROM skips WHERE idx = ?1", [idx])
                .map_err(db_err(p))?;
        }
        Ok(())
    }

    /// Only skips and empty submits: recorded, unless the item is labeled.
    fn skipped(&self, idx: i64, skips: usize, empty: usize, rep: &mut IngestReport) -> Result<()> {
        if skips > 0 {
            rep.skipped += 1;
        } else {
            rep.empty += 1;
        }
        if stored_label(self.tx, self.p, idx)?.is_none() {
            self.tx
                .execute(
                    "INSERT OR REPLACE INTO skips VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![idx, skips as i64, empty as i64, self.source, self.time],
                )
                .map_err(db_err(self.p))?;
        }
        Ok(())
    }
}

/// For each round whose batch the file's tasks came from: (round, items of
/// the batch that are unlabeled and absent from the file, batch size).
fn missing_from_batches(
    tx: &Transaction,
    p: &Path,
    file: &LabelFile,
) -> Result<Vec<(i64, usize, usize)>> {
    let seen: std::collections::HashSet<usize> = file.items.iter().map(|i| i.row).collect();
    let mut rounds: Vec<i64> = file.items.iter().flat_map(|i| i.rounds.clone()).collect();
    rounds.sort_unstable();
    rounds.dedup();
    let mut out = Vec::new();
    for r in rounds {
        let mut st = tx
            .prepare(
                "SELECT s.idx FROM selections s LEFT JOIN labels l ON l.idx = s.idx
                 WHERE s.round = ?1 AND l.idx IS NULL",
            )
            .map_err(db_err(p))?;
        let open: Vec<i64> = st
            .query_map([r], |row| row.get(0))
            .map_err(db_err(p))?
            .collect::<rusqlite::Result<_>>()
            .map_err(db_err(p))?;
        let size: i64 = tx
            .query_row(
                "SELECT COUNT(*) FROM selections WHERE round = ?1",
                [r],
                |row| row.get(0),
            )
            .map_err(db_err(p))?;
        let missing = open
            .iter()
            .filter(|&&i| !seen.contains(&(i as usize)))
            .count();
        out.push((r, missing, size as usize));
    }
    Ok(out)
}

/// What [`apply_one`] did with a label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Applied {
    New,
    Same,
    Overwritten,
    Conflict,
}

fn stored_label(tx: &Transaction, p: &Path, idx: i64) -> Result<Option<i64>> {
    tx.query_row("SELECT class FROM labels WHERE idx = ?1", [idx], |r| {
        r.get(0)
    })
    .optional()
    .map_err(db_err(p))
}

/// The votes stored for an item (from every file and webhook so far).
fn stored_votes(tx: &Transaction, p: &Path, idx: i64) -> Result<Vec<Vote>> {
    let mut st = tx
        .prepare_cached("SELECT kind, class, classes FROM votes WHERE idx = ?1")
        .map_err(db_err(p))?;
    let rows = st
        .query_map([idx], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<i64>>(1)?,
                r.get::<_, Option<String>>(2)?,
            ))
        })
        .map_err(db_err(p))?;
    let mut out = Vec::new();
    for row in rows {
        let (kind, class, classes) = row.map_err(db_err(p))?;
        out.push(match (kind.as_str(), class) {
            ("class", Some(c)) => Vote::Class(c as usize),
            ("several", _) => Vote::Several(
                classes
                    .and_then(|c| serde_json::from_str(&c).ok())
                    .unwrap_or_default(),
            ),
            ("skipped", _) => Vote::Skipped,
            _ => Vote::Empty,
        });
    }
    Ok(out)
}

/// Keeps a conflict apart, unless the same one is open already (a rerun of
/// the same ingest, or another webhook for the same votes).
fn record_conflict(
    tx: &Transaction,
    p: &Path,
    idx: i64,
    stored: Option<i64>,
    proposed: Option<i64>,
    reason: &str,
    source: &str,
) -> Result<()> {
    let open: i64 = tx
        .query_row(
            "SELECT COUNT(*) FROM conflicts WHERE idx = ?1 AND proposed IS ?2 AND reason = ?3 AND resolved IS NULL",
            params![idx, proposed, reason],
            |r| r.get(0),
        )
        .map_err(db_err(p))?;
    if open == 0 {
        tx.execute(
            "INSERT INTO conflicts(idx, stored, proposed, reason, source, time) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![idx, stored, proposed, reason, source, now()],
        )
        .map_err(db_err(p))?;
    }
    Ok(())
}

/// The label rule, inside the caller's transaction: a new label is stored,
/// an equal one is a no-op, a different one is kept apart as a conflict or,
/// with `overwrite`, replaces the stored one; every change is a label
/// event.
pub(crate) fn apply_one(
    tx: &Transaction,
    p: &Path,
    row: usize,
    class: usize,
    round: i64,
    source: &str,
    overwrite: bool,
) -> Result<Applied> {
    let t = now();
    let idx = row as i64;
    let old = stored_label(tx, p, idx)?;
    let event = |kind: &str| {
        tx.execute(
            "INSERT INTO label_events(idx, old_class, new_class, kind, source, time) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![idx, old, class as i64, kind, source, t],
        )
        .map_err(db_err(p))
    };
    match old {
        None => {
            tx.execute(
                "INSERT INTO labels VALUES (?1, ?2, ?3, ?4, ?5)",
                params![idx, class as i64, round, source, t],
            )
            .map_err(db_err(p))?;
            event("label")?;
            Ok(Applied::New)
        }
        Some(o) if o as usize == class => Ok(Applied::Same),
        Some(_) if overwrite => {
            tx.execute(
                "UPDATE labels SET class = ?2, round = ?3, source = ?4, time = ?5 WHERE idx = ?1",
                params![idx, class as i64, round, source, t],
            )
            .map_err(db_err(p))?;
            event("overwrite")?;
            Ok(Applied::Overwritten)
        }
        Some(o) => {
            record_conflict(
                tx,
                p,
                idx,
                Some(o),
                Some(class as i64),
                "differs from the stored label",
                source,
            )?;
            Ok(Applied::Conflict)
        }
    }
}
