//! A persistent workspace for batch selection with people in the loop:
//! items, labels with provenance, rounds, selections and model checkpoints
//! in an embedded SQLite database (`alpool.db`).
//!
//! Every command is one SQLite transaction, so a command killed at any
//! moment leaves the workspace as before it or as after it. Files a command
//! writes (model checkpoints, batch exports) are written to a temporary name
//! and renamed before the transaction commits; a rerun overwrites them with
//! the same content. A second command on the same workspace waits for the
//! first (up to `--wait` seconds) and then fails clearly.

pub mod exchange;
pub mod round;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::error::{Error, Result};

const DB: &str = "alpool.db";

fn db_err(path: &Path) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| match e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DatabaseBusy => {
            Error::Workspace {
                path: path.into(),
                reason:
                    "another alpool command is working on this workspace; try again when it is done"
                        .into(),
            }
        }
        e => Error::Workspace {
            path: path.into(),
            reason: e.to_string(),
        },
    }
}

/// Test hook: `ALPOOL_CRASH_AT=<point>` aborts the process at that point
/// (like kill -9: no unwinding, no cleanup), `ALPOOL_PAUSE_AT=<point>`
/// sleeps there for 3 s; both let the crash-safety tests stop a command
/// exactly mid-way.
pub fn checkpoint(point: &str) {
    if std::env::var("ALPOOL_CRASH_AT").is_ok_and(|p| p == point) {
        std::process::abort();
    }
    if std::env::var("ALPOOL_PAUSE_AT").is_ok_and(|p| p == point) {
        std::thread::sleep(Duration::from_secs(3));
    }
}

/// What `init` records.
#[derive(Clone, Debug)]
pub struct InitSpec {
    pub features: PathBuf,
    pub rows: usize,
    pub dim: usize,
    pub classes: Vec<String>,
    /// Item ids, one per row (default: the row numbers).
    pub ids: Vec<String>,
    /// Seed labels (row, class), applied in the same transaction.
    pub seed_labels: Vec<(usize, usize)>,
    pub seed_source: String,
}

/// An open workspace.
pub struct Workspace {
    pub dir: PathBuf,
    conn: Connection,
}

/// A label that disagreed with the stored one, kept apart for review.
#[derive(Clone, Debug, PartialEq)]
pub struct Conflict {
    pub index: usize,
    pub stored: Option<usize>,
    pub proposed: usize,
    /// The file it came from.
    pub source: String,
}

/// One selected item of a round, in rank order.
#[derive(Clone, Debug, PartialEq)]
pub struct Pick {
    /// The item's row.
    pub index: usize,
    /// The strategy's score.
    pub score: f64,
    /// The model's most probable class for it.
    pub predicted: usize,
}

/// One label as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelRow {
    pub index: usize,
    pub class: usize,
}

impl Workspace {
    /// Creates a workspace in `dir`, atomically: it is built in a temporary
    /// folder beside `dir` and renamed into place when complete.
    pub fn init(dir: &Path, spec: &InitSpec) -> Result<Workspace> {
        if dir.join(DB).exists() {
            return Err(Error::Config(format!(
                "{}: a workspace already exists here",
                dir.display()
            )));
        }
        if spec.classes.len() < 2 {
            return Err(Error::Config(
                "a workspace needs at least 2 classes (--classes a,b,...)".into(),
            ));
        }
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
        let tmp = tempfile::Builder::new()
            .prefix(".alpool-init-")
            .tempdir_in(&parent)
            .map_err(|e| Error::io(&parent, e))?;
        {
            let path = tmp.path().join(DB);
            let mut conn = Connection::open(&path).map_err(db_err(&path))?;
            conn.execute_batch(
                "PRAGMA journal_mode=WAL;
                 CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 CREATE TABLE classes(class INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL);
                 CREATE TABLE items(idx INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL);
                 CREATE TABLE labels(idx INTEGER PRIMARY KEY REFERENCES items(idx), class INTEGER NOT NULL,
                                     round INTEGER NOT NULL, source TEXT NOT NULL, time TEXT NOT NULL);
                 CREATE TABLE label_events(seq INTEGER PRIMARY KEY AUTOINCREMENT, idx INTEGER NOT NULL,
                                     old_class INTEGER, new_class INTEGER NOT NULL, kind TEXT NOT NULL,
                                     source TEXT NOT NULL, time TEXT NOT NULL);
                 CREATE TABLE rounds(round INTEGER PRIMARY KEY, strategy TEXT NOT NULL, k INTEGER NOT NULL,
                                     labels INTEGER NOT NULL, label_seq INTEGER NOT NULL, model TEXT NOT NULL,
                                     time TEXT NOT NULL);
                 CREATE TABLE selections(round INTEGER NOT NULL, rank INTEGER NOT NULL, idx INTEGER NOT NULL,
                                     score REAL NOT NULL, predicted INTEGER NOT NULL, PRIMARY KEY(round, rank));",
            )
            .map_err(db_err(&path))?;
            let tx = conn.transaction().map_err(db_err(&path))?;
            {
                let features = std::fs::canonicalize(&spec.features)
                    .map_err(|e| Error::io(&spec.features, e))?;
                let mut meta = tx
                    .prepare("INSERT INTO meta VALUES (?1, ?2)")
                    .map_err(db_err(&path))?;
                for (k, v) in [
                    ("features", features.to_string_lossy().into_owned()),
                    ("rows", spec.rows.to_string()),
                    ("dim", spec.dim.to_string()),
                    ("version", "1".into()),
                ] {
                    meta.execute(params![k, v]).map_err(db_err(&path))?;
                }
                let mut cls = tx
                    .prepare("INSERT INTO classes VALUES (?1, ?2)")
                    .map_err(db_err(&path))?;
                for (i, c) in spec.classes.iter().enumerate() {
                    cls.execute(params![i as i64, c]).map_err(|_| {
                        Error::Config(format!("class {c:?} is given twice in --classes"))
                    })?;
                }
                let mut items = tx
                    .prepare("INSERT INTO items VALUES (?1, ?2)")
                    .map_err(db_err(&path))?;
                for (i, id) in spec.ids.iter().enumerate() {
                    items
                        .execute(params![i as i64, id])
                        .map_err(|_| Error::BadLine {
                            path: "--ids".into(),
                            line: i as u64 + 1,
                            reason: format!("id {id:?} appears twice"),
                        })?;
                }
                apply_in(&tx, &path, &spec.seed_labels, -1, &spec.seed_source, false)?;
            }
            tx.commit().map_err(db_err(&path))?;
            checkpoint("init-before-rename");
        }
        let staged = tmp.keep();
        std::fs::rename(&staged, dir).map_err(|e| {
            let _ = std::fs::remove_dir_all(&staged);
            Error::io(dir, e)
        })?;
        Workspace::open(dir, Duration::from_secs(0))
    }

    /// Opens an existing workspace; commands wait up to `wait` for another
    /// command's lock.
    pub fn open(dir: &Path, wait: Duration) -> Result<Workspace> {
        let path = dir.join(DB);
        if !path.exists() {
            return Err(Error::Config(format!(
                "{}: not an alpool workspace (no {DB}); create one with `alpool init`",
                dir.display()
            )));
        }
        let conn = Connection::open(&path).map_err(db_err(&path))?;
        conn.busy_timeout(wait.max(Duration::from_millis(50)))
            .map_err(db_err(&path))?;
        Ok(Workspace {
            dir: dir.into(),
            conn,
        })
    }

    fn path(&self) -> PathBuf {
        self.dir.join(DB)
    }

    /// All rows of a query, mapped.
    fn query<T>(
        &self,
        sql: &str,
        args: impl rusqlite::Params,
        map: impl FnMut(&rusqlite::Row) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>> {
        let p = self.path();
        let mut st = self.conn.prepare(sql).map_err(db_err(&p))?;
        let rows = st.query_map(args, map).map_err(db_err(&p))?;
        rows.collect::<rusqlite::Result<Vec<T>>>()
            .map_err(db_err(&p))
    }

    pub fn meta(&self, key: &str) -> Result<String> {
        let p = self.path();
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .map_err(db_err(&p))
    }

    pub fn classes(&self) -> Result<Vec<String>> {
        self.query("SELECT name FROM classes ORDER BY class", [], |r| r.get(0))
    }

    /// Item ids by row.
    pub fn ids(&self) -> Result<Vec<String>> {
        self.query("SELECT id FROM items ORDER BY idx", [], |r| r.get(0))
    }

    /// The ids of the listed rows, in that order.
    pub fn ids_of(&self, rows: &[usize]) -> Result<Vec<String>> {
        let p = self.path();
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id FROM items WHERE idx = ?1")
            .map_err(db_err(&p))?;
        rows.iter()
            .map(|&r| {
                stmt.query_row([r as i64], |row| row.get(0))
                    .map_err(db_err(&p))
            })
            .collect()
    }

    pub fn labels(&self) -> Result<Vec<LabelRow>> {
        self.query("SELECT idx, class FROM labels ORDER BY idx", [], |r| {
            Ok(LabelRow {
                index: r.get::<_, i64>(0)? as usize,
                class: r.get::<_, i64>(1)? as usize,
            })
        })
    }

    /// Each round's model checkpoint, oldest first.
    pub fn models(&self) -> Result<Vec<String>> {
        self.query("SELECT model FROM rounds ORDER BY round", [], |r| r.get(0))
    }

    /// The latest round: (round, labels it was trained on), if any.
    pub fn last_round(&self) -> Result<Option<(i64, i64)>> {
        let p = self.path();
        self.conn
            .query_row(
                "SELECT round, labels FROM rounds ORDER BY round DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(db_err(&p))
    }

    /// A round's selection, best first.
    pub fn selection(&self, round: i64) -> Result<Vec<Pick>> {
        self.query(
            "SELECT idx, score, predicted FROM selections WHERE round = ?1 ORDER BY rank",
            [round],
            |r| {
                Ok(Pick {
                    index: r.get::<_, i64>(0)? as usize,
                    score: r.get(1)?,
                    predicted: r.get::<_, i64>(2)? as usize,
                })
            },
        )
    }

    /// The labels' version: the last label event's number (0 = none). A
    /// round remembers the version it was trained on.
    pub fn label_seq(&self) -> Result<i64> {
        let p = self.path();
        self.conn
            .query_row(
                "SELECT COALESCE(MAX(seq), 0) FROM label_events WHERE kind != 'conflict'",
                [],
                |r| r.get(0),
            )
            .map_err(db_err(&p))
    }

    /// The latest round if it was trained on label version `seq`.
    pub fn round_for(&self, seq: i64) -> Result<Option<i64>> {
        let p = self.path();
        self.conn
            .query_row(
                "SELECT round FROM rounds WHERE label_seq = ?1 ORDER BY round DESC LIMIT 1",
                [seq],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err(&p))
    }

    /// Records a round trained on label version `seq` and its selection, in
    /// one transaction (`BEGIN IMMEDIATE`: a concurrent writer waits or
    /// fails). If a round for the same version exists already (a rerun, or
    /// a concurrent `next`), that round is returned and nothing is added.
    pub fn record_round(
        &mut self,
        strategy: &str,
        model: &str,
        labels: usize,
        seq: i64,
        picks: &[Pick],
    ) -> Result<i64> {
        let p = self.path();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err(&p))?;
        let existing: Option<i64> = tx
            .query_row(
                "SELECT round FROM rounds WHERE label_seq = ?1 ORDER BY round DESC LIMIT 1",
                [seq],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err(&p))?;
        if let Some(r) = existing {
            return Ok(r);
        }
        let round: i64 = tx
            .query_row("SELECT COALESCE(MAX(round), -1) + 1 FROM rounds", [], |r| {
                r.get(0)
            })
            .map_err(db_err(&p))?;
        tx.execute(
            "INSERT INTO rounds VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                round,
                strategy,
                picks.len() as i64,
                labels as i64,
                seq,
                model,
                now()
            ],
        )
        .map_err(db_err(&p))?;
        {
            let mut st = tx
                .prepare("INSERT INTO selections VALUES (?1, ?2, ?3, ?4, ?5)")
                .map_err(db_err(&p))?;
            for (rank, pick) in picks.iter().enumerate() {
                st.execute(params![
                    round,
                    rank as i64 + 1,
                    pick.index as i64,
                    pick.score,
                    pick.predicted as i64
                ])
                .map_err(db_err(&p))?;
            }
        }
        checkpoint("next-before-commit");
        tx.commit().map_err(db_err(&p))?;
        Ok(round)
    }

    /// Applies validated labels (row, class) from `source` in one
    /// transaction. A label equal to the stored one is skipped; a different
    /// one is kept apart as a conflict, or replaces it with `overwrite`
    /// (recorded). Returns (applied, unchanged, conflicts, overwritten).
    pub fn apply_labels(
        &mut self,
        labels: &[(usize, usize)],
        source: &str,
        overwrite: bool,
    ) -> Result<(usize, usize, usize, usize)> {
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
        let counts = apply_in(&tx, &p, labels, round, source, overwrite)?;
        tx.commit().map_err(db_err(&p))?;
        Ok(counts)
    }

    /// Conflicting labels kept for review, oldest first.
    pub fn conflicts(&self) -> Result<Vec<Conflict>> {
        self.query(
            "SELECT idx, old_class, new_class, source FROM label_events WHERE kind = 'conflict' ORDER BY seq",
            [],
            |r| {
                Ok(Conflict {
                    index: r.get::<_, i64>(0)? as usize,
                    stored: r.get::<_, Option<i64>>(1)?.map(|x| x as usize),
                    proposed: r.get::<_, i64>(2)? as usize,
                    source: r.get(3)?,
                })
            },
        )
    }
}

/// The label rule of `ingest` (and of `init`'s seed labels), inside the
/// caller's transaction: a new label is stored, an equal one is a no-op, a
/// different one is kept apart as a conflict or, with `overwrite`, replaces
/// the stored one; every change is a label event. Returns (applied,
/// unchanged, conflicts, overwritten).
fn apply_in(
    tx: &rusqlite::Transaction,
    p: &Path,
    labels: &[(usize, usize)],
    round: i64,
    source: &str,
    overwrite: bool,
) -> Result<(usize, usize, usize, usize)> {
    let t = now();
    let (mut applied, mut same, mut conflicts, mut overwritten) = (0, 0, 0, 0);
    for (n, &(idx, class)) in labels.iter().enumerate() {
        let old: Option<i64> = tx
            .query_row(
                "SELECT class FROM labels WHERE idx = ?1",
                [idx as i64],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err(p))?;
        let event = |kind: &str| {
            tx.execute(
                "INSERT INTO label_events(idx, old_class, new_class, kind, source, time) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![idx as i64, old, class as i64, kind, source, t],
            )
        };
        match old {
            None => {
                tx.execute(
                    "INSERT INTO labels VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![idx as i64, class as i64, round, source, t],
                )
                .map_err(db_err(p))?;
                event("label").map_err(db_err(p))?;
                applied += 1;
            }
            Some(o) if o as usize == class => same += 1,
            Some(_) if overwrite => {
                tx.execute(
                    "UPDATE labels SET class = ?2, round = ?3, source = ?4, time = ?5 WHERE idx = ?1",
                    params![idx as i64, class as i64, round, source, t],
                )
                .map_err(db_err(p))?;
                event("overwrite").map_err(db_err(p))?;
                overwritten += 1;
            }
            Some(_) => {
                // Kept apart for review, unless the same conflict is
                // already recorded (a rerun of the same ingest).
                let seen: i64 = tx
                    .query_row(
                        "SELECT COUNT(*) FROM label_events WHERE idx = ?1 AND new_class = ?2 AND kind = 'conflict' AND source = ?3",
                        params![idx as i64, class as i64, source],
                        |r| r.get(0),
                    )
                    .map_err(db_err(p))?;
                if seen == 0 {
                    event("conflict").map_err(db_err(p))?;
                }
                conflicts += 1;
            }
        }
        if n == labels.len() / 2 {
            checkpoint("ingest-mid-transaction");
        }
    }
    Ok((applied, same, conflicts, overwritten))
}

fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{secs}")
}
