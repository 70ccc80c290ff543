//! The library's error type. Every variant names the offending file, row or
//! value, so the CLI can print it as is.

use std::path::PathBuf;

use crate::score::RowProblem;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{}: not a valid .npy file: {reason}", path.display())]
    NpyFormat { path: PathBuf, reason: String },

    #[error("{}: unsupported dtype {descr:?}; {expected}", path.display())]
    UnsupportedDtype {
        path: PathBuf,
        descr: String,
        expected: &'static str,
    },

    #[error(
        "{}: the array is stored in Fortran (column-major) order; save it in C order (numpy.ascontiguousarray) first",
        path.display()
    )]
    FortranOrder { path: PathBuf },

    #[error("{}: expected a {expected}-D array, got shape {shape:?}", path.display())]
    WrongRank {
        path: PathBuf,
        shape: Vec<usize>,
        expected: usize,
    },

    /// A file that shrank after it was opened (a read came back short).
    #[error(
        "{}: the file was truncated while being read: byte {offset} is gone (another process rewrote or cut it); nothing was selected",
        path.display()
    )]
    Shrank { path: PathBuf, offset: u64 },

    #[error(
        "{}: file is truncated: the header promises {expected} data bytes but only {actual} follow it",
        path.display()
    )]
    Truncated {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },

    #[error(
        "{}: {actual} bytes of unexpected data after the array (the header promises {expected} data bytes)",
        path.display()
    )]
    TrailingData {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },

    #[error(
        "{}: has {found} columns but {} has {expected}; all shards of a pool must have the same number of classes",
        path.display(),
        first.display()
    )]
    ShardColumns {
        path: PathBuf,
        first: PathBuf,
        expected: usize,
        found: usize,
    },

    #[error("strategy {strategy} needs at least 2 classes, but the pool has {classes}")]
    TooFewClasses {
        strategy: &'static str,
        classes: usize,
    },

    #[error("{}: row {row} (global row {global}): {problem}", path.display())]
    BadRow {
        path: PathBuf,
        row: u64,
        global: u64,
        problem: RowProblem,
    },

    /// Embeddings whose row count differs from the pool's.
    #[error(
        "{}: {found} rows of embeddings, but the pool {} has {expected} rows; give one embedding per pool row, in the same order",
        path.display(),
        pool.display()
    )]
    EmbeddingRows {
        path: PathBuf,
        pool: PathBuf,
        expected: u64,
        found: u64,
    },

    /// A batch strategy asked for more rows than can be selected.
    #[error(
        "k = {k} is more than the {selectable} rows that can be selected ({rows} rows, {excluded} excluded); {strategy} picks distinct rows, so lower -k"
    )]
    TooFewRows {
        strategy: &'static str,
        k: usize,
        selectable: u64,
        rows: u64,
        excluded: u64,
    },

    #[error("{}: line {line}: {reason}", path.display())]
    BadLine {
        path: PathBuf,
        line: u64,
        reason: String,
    },

    #[error("{}: element {element}: {reason}", path.display())]
    BadElement {
        path: PathBuf,
        element: u64,
        reason: String,
    },

    /// One task (or row) of a Label Studio export, named as Label Studio
    /// shows it (`Label Studio task 12`) or by its line.
    #[error("{}: {task}: {reason}", path.display())]
    BadTask {
        path: PathBuf,
        task: String,
        reason: String,
    },

    #[error("{0}")]
    Config(String),

    /// A saved model (safetensors weights or its JSON config) that cannot be
    /// used.
    #[error("{}: not a usable model file: {reason}", path.display())]
    Model { path: PathBuf, reason: String },

    /// An exchange file (a Label Studio export, a batch) that cannot be read.
    #[error("{}: {reason}", path.display())]
    Exchange { path: PathBuf, reason: String },

    /// The workspace's database: busy with another command, or failing.
    #[error("{}: {reason}", path.display())]
    Workspace { path: PathBuf, reason: String },

    /// A part file (`alpool select --out X.alpart`) that is damaged or does
    /// not belong with the others of a merge.
    #[error("{}: {reason}", path.display())]
    Part { path: PathBuf, reason: String },

    #[error("GPU: {0}")]
    Gpu(String),

    #[error("learner: {0}")]
    Learner(String),

    /// The caller asked to stop (Ctrl-C in the Python package); nothing was
    /// returned.
    #[error("cancelled")]
    Cancelled,
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn model(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Model {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn npy(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::NpyFormat {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
