//! `alpool init`: a new workspace, built whole in a temporary folder and
//! renamed into place, so a failed or killed `init` leaves nothing behind.
//! The ids, seed labels and item data are streamed from their files into
//! one transaction, a line at a time, and checked against the stored ids.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, Transaction, params};

use super::vocab::LabelKind;
use super::{
    DB, SCHEMA_V2, VERSION, Workspace, checkpoint, db_err, export, ingest, items, new_token,
};
use crate::backend::Progress;
use crate::error::{Error, Result};

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
    /// What a label is: one class, a set of them (`a|b` in CSV files,
    /// several ticked choices in Label Studio), or a number (the one
    /// class name is the target's).
    pub kind: LabelKind,
    /// Per-item data that travels in every Label Studio task: JSON lines,
    /// one object per item with its `id` and the fields its task shows
    /// (`{"id": "a17", "image": "https://…/a17.jpg"}`).
    pub data: Option<PathBuf>,
}

/// The tables of format 1 (format 2's are [`SCHEMA_V2`]).
const SCHEMA_V1: &str = "
    PRAGMA journal_mode=WAL;
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
                        score REAL NOT NULL, predicted INTEGER NOT NULL, PRIMARY KEY(round, rank));";

impl Workspace {
    /// Creates a workspace in `dir`, atomically: it is built in a temporary
    /// folder beside `dir` and renamed into place when complete.
    /// `progress` advances by items stored, and may cancel.
    pub fn init(dir: &Path, spec: &InitSpec, progress: &dyn Progress) -> Result<Workspace> {
        check(dir, spec)?;
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
        let tmp = tempfile::Builder::new()
            .prefix(".alpool-init-")
            .tempdir_in(&parent)
            .map_err(|e| Error::io(&parent, e))?;
        build(&tmp.path().join(DB), spec, progress)?;
        checkpoint("init-before-rename");
        let staged = tmp.keep();
        std::fs::rename(&staged, dir).map_err(|e| {
            let _ = std::fs::remove_dir_all(&staged);
            Error::io(dir, e)
        })?;
        Workspace::open(dir, Duration::from_secs(0))
    }
}

/// What can be refused before anything is written: an existing workspace,
/// too few classes, a seed-label file that cannot be read.
fn check(dir: &Path, spec: &InitSpec) -> Result<()> {
    if dir.join(DB).exists() {
        return Err(Error::Workspace {
            path: dir.into(),
            reason: "a workspace already exists here".into(),
        });
    }
    match spec.kind {
        LabelKind::Number if spec.classes.len() != 1 || spec.classes[0].trim().is_empty() => {
            return Err(Error::Config(
                "a regression workspace has one target, named by --regression NAME".into(),
            ));
        }
        LabelKind::Class | LabelKind::Set if spec.classes.len() < 2 => {
            return Err(Error::Config(
                "a workspace needs at least 2 classes (--classes a,b,...)".into(),
            ));
        }
        _ => {}
    }
    let most = super::vocab::MAX_MULTILABEL_CLASSES;
    if spec.kind == LabelKind::Set && spec.classes.len() > most {
        return Err(Error::Config(format!(
            "a multi-label workspace holds at most {most} classes, got {}",
            spec.classes.len()
        )));
    }
    if let Some(p) = &spec.labels {
        ingest::check_seed_file(p, &spec.vocab())?;
    }
    Ok(())
}

impl InitSpec {
    /// The classes, and what a label is.
    pub(crate) fn vocab(&self) -> super::vocab::Vocab {
        super::vocab::Vocab {
            names: self.classes.clone(),
            kind: self.kind,
        }
    }
}

/// Creates the database at `path` and fills it in one transaction.
fn build(path: &Path, spec: &InitSpec, progress: &dyn Progress) -> Result<()> {
    let mut conn = Connection::open(path).map_err(db_err(path))?;
    conn.execute_batch(SCHEMA_V1).map_err(db_err(path))?;
    conn.execute_batch(SCHEMA_V2).map_err(db_err(path))?;
    // The database is a temporary file until `init`'s rename: a crash
    // discards it, so the inserts need not be synced one commit at a time;
    // the checkpoint below syncs it before the rename.
    conn.execute_batch("PRAGMA synchronous=OFF; PRAGMA cache_size=-65536;")
        .map_err(db_err(path))?;
    let tx = conn.transaction().map_err(db_err(path))?;
    fill(&tx, path, spec, progress)?;
    tx.commit().map_err(db_err(path))?;
    conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA wal_checkpoint(TRUNCATE);")
        .map_err(db_err(path))
}

/// Classes, items (with their ids and data), meta, then the seed labels.
fn fill(tx: &Transaction, path: &Path, spec: &InitSpec, progress: &dyn Progress) -> Result<()> {
    let mut cls = tx
        .prepare("INSERT INTO classes VALUES (?1, ?2)")
        .map_err(db_err(path))?;
    for (i, c) in spec.classes.iter().enumerate() {
        cls.execute(params![i as i64, c])
            .map_err(|_| Error::Config(format!("class {c:?} is given twice in --classes")))?;
    }
    let items = items::ItemTable { conn: tx, db: path };
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
    let features =
        std::fs::canonicalize(&spec.features).map_err(|e| Error::io(&spec.features, e))?;
    let mut meta = tx
        .prepare("INSERT INTO meta VALUES (?1, ?2)")
        .map_err(db_err(path))?;
    for (k, v) in [
        ("features", features.to_string_lossy().into_owned()),
        ("rows", spec.rows.to_string()),
        ("dim", spec.dim.to_string()),
        ("version", VERSION.into()),
        ("label_kind", spec.kind.name().into()),
        ("token", new_token()),
        (
            "data_keys",
            serde_json::to_string(&data_keys).unwrap_or_default(),
        ),
    ] {
        meta.execute(params![k, v]).map_err(db_err(path))?;
    }
    if let Some(p) = &spec.labels {
        let source = p.display().to_string();
        for (row, class) in ingest::seed_labels(p, &items, &spec.vocab())? {
            ingest::apply_one(tx, path, row, class, -1, &source, false)?;
        }
    }
    Ok(())
}

/// `init`'s checks and inserts, into an in-memory database: the same
/// statements as a workspace on disk, without a file per call (for
/// `crate::fuzz::init`).
#[cfg(feature = "fuzz")]
pub(crate) fn build_in_memory(spec: &InitSpec) -> Result<()> {
    if let Some(p) = &spec.labels {
        ingest::check_seed_file(p, &spec.vocab())?;
    }
    build(Path::new(":memory:"), spec, &crate::Silent)
}
