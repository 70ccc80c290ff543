//! Item ids and rows. The workspace's `items` table, with its unique index
//! on the id, is the one id → row map: label files, webhooks and seed labels
//! look their ids up there, one indexed query per id, so no command holds a
//! pool's ids in memory (10M ids as a `HashMap` are about a gigabyte).

use std::collections::HashMap;
use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use super::{Workspace, db_err};
use crate::backend::Progress;
use crate::error::{Error, Result, quoted};
use crate::lines::each_line;

/// Items stored between progress reports.
const STEP: usize = 1 << 16;

/// Finds the row of an item id.
pub trait RowOfId {
    /// The row of `id`, or `None` when the pool has no such item.
    fn row_of(&self, id: &str) -> Result<Option<usize>>;
}

/// An id map held in memory, for small pools and callers that have one.
impl RowOfId for HashMap<String, usize> {
    fn row_of(&self, id: &str) -> Result<Option<usize>> {
        Ok(self.get(id).copied())
    }
}

impl RowOfId for Workspace {
    fn row_of(&self, id: &str) -> Result<Option<usize>> {
        ItemTable {
            conn: &self.conn,
            db: &self.path(),
        }
        .row_of(id)
    }
}

/// The `items` table of an open connection (a workspace, or one being
/// created inside its transaction).
pub(super) struct ItemTable<'c> {
    pub conn: &'c Connection,
    /// The database file, for errors.
    pub db: &'c Path,
}

impl RowOfId for ItemTable<'_> {
    fn row_of(&self, id: &str) -> Result<Option<usize>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT idx FROM items WHERE id = ?1")
            .map_err(db_err(self.db))?;
        let row: Option<i64> = st
            .query_row([id], |r| r.get(0))
            .optional()
            .map_err(db_err(self.db))?;
        Ok(row.map(|r| r as usize))
    }
}

/// Fills the `items` table of a workspace being created: the ids of `path`,
/// one per line (blank lines skipped, spaces around an id trimmed), exactly
/// one per row of `features`; or the row numbers. Read line by line, so the
/// ids are never all in memory. A repeated id is named with its line and
/// the row that already has it.
pub(super) fn insert_ids(
    table: &ItemTable,
    ids: Option<&Path>,
    rows: usize,
    features: &Path,
    progress: &dyn Progress,
) -> Result<()> {
    let mut insert = table
        .conn
        .prepare("INSERT INTO items VALUES (?1, ?2)")
        .map_err(db_err(table.db))?;
    let step = |row: usize| {
        if row % STEP == STEP - 1 {
            progress.advance(STEP as u64);
            if progress.cancelled() {
                return Err(Error::Cancelled);
            }
        }
        Ok(())
    };
    let Some(path) = ids else {
        for row in 0..rows {
            insert
                .execute(params![row as i64, row.to_string()])
                .map_err(db_err(table.db))?;
            step(row)?;
        }
        return Ok(());
    };
    let mut given = 0usize;
    each_line(path, |number, line| {
        let id = line.trim();
        if id.is_empty() {
            return Ok(());
        }
        if given < rows {
            match insert.execute(params![given as i64, id]) {
                Err(e) if is_duplicate(&e) => {
                    let first = table
                        .row_of(id)?
                        .map_or(String::new(), |r| format!(" (row {r} already has it)"));
                    return Err(Error::BadLine {
                        path: path.into(),
                        line: number,
                        reason: format!("id {} again{first}", quoted(id)),
                    });
                }
                r => r.map_err(db_err(table.db))?,
            };
            step(given)?;
        }
        given += 1;
        Ok(())
    })?;
    if given != rows {
        return Err(Error::Exchange {
            path: path.into(),
            reason: format!(
                "{given} ids for {rows} rows in {} (one id per row, blank lines skipped)",
                features.display()
            ),
        });
    }
    Ok(())
}

/// Whether an insert failed on a unique key (an id or a row given twice).
pub(super) fn is_duplicate(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.code == rusqlite::ErrorCode::ConstraintViolation)
}
