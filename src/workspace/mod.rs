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

pub mod export;
pub mod first;
pub mod ingest;
mod init;
pub mod items;
pub mod live;
mod regression;
pub mod report;
pub mod round;
pub mod serve;
pub mod status;
pub mod studio;
pub mod vocab;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::error::{Error, Result};
pub use ingest::{IngestOptions, IngestReport};
pub use init::InitSpec;
#[cfg(feature = "fuzz")]
pub(crate) use init::build_in_memory;

const DB: &str = "alpool.db";
/// The database format this build writes; older workspaces are upgraded
/// when opened (see [`migrate`]).
const VERSION: &str = "2";

/// Tables added in format 2: each annotation's vote, skipped items,
/// conflicts with their resolution, and the item data tasks carry.
const SCHEMA_V2: &str = "
    CREATE TABLE IF NOT EXISTS votes(idx INTEGER NOT NULL, key TEXT NOT NULL, kind TEXT NOT NULL,
                       class INTEGER, classes TEXT, source TEXT NOT NULL, time TEXT NOT NULL,
                       PRIMARY KEY(idx, key));
    CREATE TABLE IF NOT EXISTS skips(idx INTEGER PRIMARY KEY, skipped INTEGER NOT NULL, empty INTEGER NOT NULL,
                       source TEXT NOT NULL, time TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS conflicts(seq INTEGER PRIMARY KEY AUTOINCREMENT, idx INTEGER NOT NULL,
                       stored INTEGER, proposed INTEGER, reason TEXT NOT NULL, source TEXT NOT NULL,
                       time TEXT NOT NULL, resolved TEXT);
    CREATE TABLE IF NOT EXISTS item_data(idx INTEGER PRIMARY KEY, data TEXT NOT NULL);";

/// A fresh workspace token: 64 bits from the OS's randomness (through
/// `RandomState`, which std seeds from it), so two workspaces never share
/// one.
fn new_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("{:016x}", h.finish())
}

/// Upgrades a format-1 workspace in place, in one transaction: the new
/// tables, a token, and its conflicts moved from the label events into the
/// conflicts table.
fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let version: String = conn
        .query_row("SELECT value FROM meta WHERE key = 'version'", [], |r| {
            r.get(0)
        })
        .map_err(db_err(path))?;
    if version == VERSION {
        return Ok(());
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err(path))?;
    tx.execute_batch(SCHEMA_V2).map_err(db_err(path))?;
    tx.execute_batch("ALTER TABLE rounds ADD COLUMN skips INTEGER NOT NULL DEFAULT 0;")
        .map_err(db_err(path))?;
    tx.execute_batch(
        "INSERT INTO conflicts(idx, stored, proposed, reason, source, time)
             SELECT idx, old_class, new_class, 'differs from the stored label', source, time
             FROM label_events WHERE kind = 'conflict' ORDER BY seq;
         DELETE FROM label_events WHERE kind = 'conflict';",
    )
    .map_err(db_err(path))?;
    tx.execute(
        "INSERT OR IGNORE INTO meta VALUES ('token', ?1)",
        [new_token()],
    )
    .map_err(db_err(path))?;
    tx.execute(
        "UPDATE meta SET value = ?1 WHERE key = 'version'",
        [VERSION],
    )
    .map_err(db_err(path))?;
    tx.commit().map_err(db_err(path))
}

pub(crate) fn db_err(path: &Path) -> impl Fn(rusqlite::Error) -> Error + '_ {
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

/// An open workspace.
pub struct Workspace {
    /// The workspace folder.
    pub dir: PathBuf,
    conn: Connection,
}

/// Votes that did not make a label, kept apart for review: a label that
/// contradicts the stored one, annotators who disagree, several choices
/// ticked in one annotation.
#[derive(Clone, Debug, PartialEq)]
pub struct Conflict {
    /// The item.
    pub index: usize,
    /// Its stored label, if any.
    pub stored: Option<usize>,
    /// The class the votes chose, when they chose one.
    pub proposed: Option<usize>,
    /// Why the votes did not make a label.
    pub reason: String,
    /// The file (or webhook) it came from.
    pub source: String,
    /// What resolved it (`None`: still open).
    pub resolved: Option<String>,
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
    /// The item.
    pub index: usize,
    /// Its class.
    pub class: usize,
}

impl Workspace {
    /// Opens an existing workspace; commands wait up to `wait` for another
    /// command's lock.
    pub fn open(dir: &Path, wait: Duration) -> Result<Workspace> {
        let path = dir.join(DB);
        if !path.exists() {
            return Err(Error::Workspace {
                path: dir.into(),
                reason: format!("not an alpool workspace (no {DB}); create one with `alpool init`"),
            });
        }
        let mut conn = Connection::open(&path).map_err(db_err(&path))?;
        conn.busy_timeout(wait.max(Duration::from_millis(50)))
            .map_err(db_err(&path))?;
        migrate(&mut conn, &path)?;
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

    /// A value of the workspace's metadata.
    pub fn meta(&self, key: &str) -> Result<String> {
        let p = self.path();
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .map_err(db_err(&p))
    }

    /// Class names, in label order.
    pub fn classes(&self) -> Result<Vec<String>> {
        self.query("SELECT name FROM classes ORDER BY class", [], |r| r.get(0))
    }

    /// The classes and what a stored label code means
    /// (`init --multilabel` makes labels sets, `init --regression`
    /// numbers). Workspaces made before regression ones existed say only
    /// whether they are multi-label.
    pub fn vocab(&self) -> Result<vocab::Vocab> {
        use vocab::LabelKind;
        let kind = match self.meta("label_kind").ok().as_deref() {
            Some("regression") => LabelKind::Number,
            Some("multi-label") => LabelKind::Set,
            Some(_) => LabelKind::Class,
            None if self.meta("multilabel").is_ok_and(|v| v == "1") => LabelKind::Set,
            None => LabelKind::Class,
        };
        Ok(vocab::Vocab {
            names: self.classes()?,
            kind,
        })
    }

    /// Items in the pool (their rows are `0..items`).
    pub fn items(&self) -> Result<usize> {
        let p = self.path();
        self.conn
            .query_row("SELECT COALESCE(MAX(idx) + 1, 0) FROM items", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as usize)
            .map_err(db_err(&p))
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

    /// Every label, in the order they were stored.
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

    /// The latest round if it was trained on label version `seq` with
    /// `skips` skipped items left out (the same labels and skips select the
    /// same batch).
    pub fn round_for(&self, seq: i64, skips: usize) -> Result<Option<i64>> {
        let p = self.path();
        self.conn
            .query_row(
                "SELECT round FROM rounds WHERE label_seq = ?1 AND skips = ?2 ORDER BY round DESC LIMIT 1",
                params![seq, skips as i64],
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
        skips: usize,
        picks: &[Pick],
    ) -> Result<i64> {
        let p = self.path();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err(&p))?;
        let existing: Option<i64> = tx
            .query_row(
                "SELECT round FROM rounds WHERE label_seq = ?1 AND skips = ?2 ORDER BY round DESC LIMIT 1",
                params![seq, skips as i64],
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
            "INSERT INTO rounds(round, strategy, k, labels, label_seq, model, time, skips)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                round,
                strategy,
                picks.len() as i64,
                labels as i64,
                seq,
                model,
                now(),
                skips as i64
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

    /// The token every Label Studio task of this workspace carries.
    pub fn token(&self) -> Result<String> {
        self.meta("token")
    }

    /// The keys of the item data given at `init`, in first-seen order.
    pub fn data_keys(&self) -> Result<Vec<String>> {
        Ok(serde_json::from_str(&self.meta("data_keys").unwrap_or_default()).unwrap_or_default())
    }

    /// The item data of the listed rows (`None` where none was given).
    pub fn item_data(
        &self,
        rows: &[usize],
    ) -> Result<Vec<Option<serde_json::Map<String, serde_json::Value>>>> {
        let p = self.path();
        let mut stmt = self
            .conn
            .prepare_cached("SELECT data FROM item_data WHERE idx = ?1")
            .map_err(db_err(&p))?;
        rows.iter()
            .map(|&r| {
                let text: Option<String> = stmt
                    .query_row([r as i64], |row| row.get(0))
                    .optional()
                    .map_err(db_err(&p))?;
                Ok(text.and_then(|t| match serde_json::from_str(&t) {
                    Ok(serde_json::Value::Object(m)) => Some(m),
                    _ => None,
                }))
            })
            .collect()
    }

    /// Unlabeled items whose annotators only skipped them (or submitted
    /// nothing): `next` does not select them again unless asked.
    pub fn skipped(&self) -> Result<Vec<usize>> {
        self.query(
            "SELECT idx FROM skips WHERE idx NOT IN (SELECT idx FROM labels) ORDER BY idx",
            [],
            |r| Ok(r.get::<_, i64>(0)? as usize),
        )
    }

    /// Conflicts still open, oldest first.
    pub fn conflicts(&self) -> Result<Vec<Conflict>> {
        self.conflicts_where("WHERE resolved IS NULL")
    }

    /// Every conflict ever recorded, resolved or not, oldest first.
    pub fn conflict_history(&self) -> Result<Vec<Conflict>> {
        self.conflicts_where("")
    }

    fn conflicts_where(&self, filter: &str) -> Result<Vec<Conflict>> {
        self.query(
            &format!(
                "SELECT idx, stored, proposed, reason, source, resolved FROM conflicts {filter} ORDER BY seq"
            ),
            [],
            |r| {
                Ok(Conflict {
                    index: r.get::<_, i64>(0)? as usize,
                    stored: r.get::<_, Option<i64>>(1)?.map(|x| x as usize),
                    proposed: r.get::<_, Option<i64>>(2)?.map(|x| x as usize),
                    reason: r.get(3)?,
                    source: r.get(4)?,
                    resolved: r.get(5)?,
                })
            },
        )
    }
}

pub(crate) fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{secs}")
}
