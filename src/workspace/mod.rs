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
pub mod ingest;
pub mod items;
pub mod round;
pub mod serve;
pub mod status;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::backend::Progress;
use crate::error::{Error, Result};
use ingest::{Decision, LabelFile, Vote};

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

/// What `init` records. The ids, seed labels and item data are read from
/// their files inside `init`'s transaction, a line at a time, and checked
/// against the stored ids; none is held in memory whole.
#[derive(Clone, Debug)]
pub struct InitSpec {
    /// The feature file.
    pub features: PathBuf,
    /// Items in the pool.
    pub rows: usize,
    /// Features per item.
    pub dim: usize,
    /// Class names, in label order.
    pub classes: Vec<String>,
    /// Item ids, one per line, one per row (`None`: the row numbers).
    pub ids: Option<PathBuf>,
    /// Seed labels: a CSV `id,label` file.
    pub labels: Option<PathBuf>,
    /// Per-item data that travels in every Label Studio task: JSON lines,
    /// one object per item with its `id` and the fields its task shows
    /// (`{"id": "a17", "image": "https://…/a17.jpg"}`).
    pub data: Option<PathBuf>,
}

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
    /// Creates a workspace in `dir`, atomically: it is built in a temporary
    /// folder beside `dir` and renamed into place when complete.
    /// `progress` advances by items stored, and may cancel.
    pub fn init(dir: &Path, spec: &InitSpec, progress: &dyn Progress) -> Result<Workspace> {
        if dir.join(DB).exists() {
            return Err(Error::Workspace {
                path: dir.into(),
                reason: "a workspace already exists here".into(),
            });
        }
        if spec.classes.len() < 2 {
            return Err(Error::Config(
                "a workspace needs at least 2 classes (--classes a,b,...)".into(),
            ));
        }
        if let Some(p) = &spec.labels {
            ingest::check_seed_file(p, &spec.classes)?;
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
                                     time TEXT NOT NULL, skips INTEGER NOT NULL DEFAULT 0);
                 CREATE TABLE selections(round INTEGER NOT NULL, rank INTEGER NOT NULL, idx INTEGER NOT NULL,
                                     score REAL NOT NULL, predicted INTEGER NOT NULL, PRIMARY KEY(round, rank));",
            )
            .map_err(db_err(&path))?;
            conn.execute_batch(SCHEMA_V2).map_err(db_err(&path))?;
            // The database is a temporary file until the rename below: a
            // crash discards it, so the inserts need not be synced one
            // commit at a time; the checkpoint before the rename syncs it.
            conn.execute_batch("PRAGMA synchronous=OFF; PRAGMA cache_size=-65536;")
                .map_err(db_err(&path))?;
            let tx = conn.transaction().map_err(db_err(&path))?;
            {
                let mut cls = tx
                    .prepare("INSERT INTO classes VALUES (?1, ?2)")
                    .map_err(db_err(&path))?;
                for (i, c) in spec.classes.iter().enumerate() {
                    cls.execute(params![i as i64, c]).map_err(|_| {
                        Error::Config(format!("class {c:?} is given twice in --classes"))
                    })?;
                }
                let items = items::ItemTable {
                    conn: &tx,
                    db: &path,
                };
                items::insert_ids(
                    &items,
                    spec.ids.as_deref(),
                    spec.rows,
                    &spec.features,
                    progress,
                )?;
                let data_keys = match &spec.data {
                    Some(p) => export::insert_item_data(&items, p)?,
                    None => Vec::new(),
                };
                let features = std::fs::canonicalize(&spec.features)
                    .map_err(|e| Error::io(&spec.features, e))?;
                let mut meta = tx
                    .prepare("INSERT INTO meta VALUES (?1, ?2)")
                    .map_err(db_err(&path))?;
                for (k, v) in [
                    ("features", features.to_string_lossy().into_owned()),
                    ("rows", spec.rows.to_string()),
                    ("dim", spec.dim.to_string()),
                    ("version", VERSION.into()),
                    ("token", new_token()),
                    (
                        "data_keys",
                        serde_json::to_string(&data_keys).unwrap_or_default(),
                    ),
                ] {
                    meta.execute(params![k, v]).map_err(db_err(&path))?;
                }
                if let Some(p) = &spec.labels {
                    let source = p.display().to_string();
                    for (row, class) in ingest::seed_labels(p, &items, &spec.classes)? {
                        apply_one(&tx, &path, row, class, -1, &source, false)?;
                    }
                }
            }
            tx.commit().map_err(db_err(&path))?;
            conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA wal_checkpoint(TRUNCATE);")
                .map_err(db_err(&path))?;
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

    /// Applies a validated label file (or webhook) in one transaction. Each
    /// item's votes — those stored from earlier files and webhooks, replaced
    /// where an annotation id repeats, plus this file's — are decided by
    /// [`ingest::decide`]: a label is stored (an equal one is a no-op; a
    /// different one is a conflict, or replaces it with `overwrite`), a
    /// conflict is kept apart, or the item is recorded as skipped. A clean
    /// decision resolves the item's open conflicts.
    pub fn ingest(
        &mut self,
        file: &LabelFile,
        source: &str,
        opts: IngestOptions,
    ) -> Result<IngestReport> {
        let classes = self.classes()?;
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
        let t = now();
        let mut rep = IngestReport {
            tasks: file.tasks,
            items: file.items.len(),
            ignored_results: file.ignored_results,
            ..IngestReport::default()
        };
        for (n, item) in file.items.iter().enumerate() {
            let idx = item.row as i64;
            rep.annotations += item.annotations.iter().filter(|a| a.key.is_some()).count();
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
                    params![idx, key, a.vote.kind(), class, several, source, t],
                )
                .map_err(db_err(&p))?;
            }
            votes.extend(stored_votes(&tx, &p, idx)?);
            match ingest::decide(&votes, &classes, opts.agreement) {
                Decision::Label(c) => {
                    let outcome = apply_one(&tx, &p, item.row, c, round, source, opts.overwrite)?;
                    match outcome {
                        Applied::New => rep.labeled += 1,
                        Applied::Same => rep.unchanged += 1,
                        Applied::Overwritten => rep.overwritten += 1,
                        Applied::Conflict => rep.conflicts += 1,
                    }
                    if outcome != Applied::Conflict {
                        tx.execute(
                            "UPDATE conflicts SET resolved = ?2 WHERE idx = ?1 AND resolved IS NULL",
                            params![idx, format!("labeled {} by {source}", classes[c])],
                        )
                        .map_err(db_err(&p))?;
                        tx.execute("DELETE FROM skips WHERE idx = ?1", [idx])
                            .map_err(db_err(&p))?;
                    }
                }
                Decision::Conflict(reason) => {
                    let stored = stored_label(&tx, &p, idx)?;
                    record_conflict(&tx, &p, idx, stored, None, &reason, source)?;
                    rep.conflicts += 1;
                }
                Decision::Skipped(skips, empty) => {
                    if skips > 0 {
                        rep.skipped += 1;
                    } else {
                        rep.empty += 1;
                    }
                    if stored_label(&tx, &p, idx)?.is_none() {
                        tx.execute(
                            "INSERT OR REPLACE INTO skips VALUES (?1, ?2, ?3, ?4, ?5)",
                            params![idx, skips as i64, empty as i64, source, t],
                        )
                        .map_err(db_err(&p))?;
                    }
                }
            }
            if n == file.items.len() / 2 {
                checkpoint("ingest-mid-transaction");
            }
        }
        // Items of the batches this file answers that it does not mention.
        let seen: std::collections::HashSet<usize> = file.items.iter().map(|i| i.row).collect();
        let mut rounds: Vec<i64> = file.items.iter().flat_map(|i| i.rounds.clone()).collect();
        rounds.sort_unstable();
        rounds.dedup();
        for r in rounds {
            let mut st = tx
                .prepare(
                    "SELECT s.idx FROM selections s LEFT JOIN labels l ON l.idx = s.idx
                     WHERE s.round = ?1 AND l.idx IS NULL",
                )
                .map_err(db_err(&p))?;
            let open: Vec<i64> = st
                .query_map([r], |row| row.get(0))
                .map_err(db_err(&p))?
                .collect::<rusqlite::Result<_>>()
                .map_err(db_err(&p))?;
            let size: i64 = tx
                .query_row(
                    "SELECT COUNT(*) FROM selections WHERE round = ?1",
                    [r],
                    |row| row.get(0),
                )
                .map_err(db_err(&p))?;
            let missing = open
                .iter()
                .filter(|&&i| !seen.contains(&(i as usize)))
                .count();
            rep.missing.push((r, missing, size as usize));
        }
        tx.commit().map_err(db_err(&p))?;
        Ok(rep)
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

/// What [`apply_one`] did with a label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Applied {
    New,
    Same,
    Overwritten,
    Conflict,
}

fn stored_label(tx: &rusqlite::Transaction, p: &Path, idx: i64) -> Result<Option<i64>> {
    tx.query_row("SELECT class FROM labels WHERE idx = ?1", [idx], |r| {
        r.get(0)
    })
    .optional()
    .map_err(db_err(p))
}

/// The votes stored for an item (from every file and webhook so far).
fn stored_votes(tx: &rusqlite::Transaction, p: &Path, idx: i64) -> Result<Vec<Vote>> {
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
    tx: &rusqlite::Transaction,
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
fn apply_one(
    tx: &rusqlite::Transaction,
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

fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{secs}")
}
