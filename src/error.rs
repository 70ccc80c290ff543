//! The library's error type. Every variant names the offending file, row or
//! value, so the CLI can print it as is.

use std::path::PathBuf;

use crate::query::{Input, RowProblem};

/// A result with alpool's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, naming the file, row or value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be opened, read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// Not a valid .npy file.
    #[error("{}: not a valid .npy file: {reason}", path.display())]
    NpyFormat {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A .npy dtype this file cannot have.
    #[error("{}: unsupported dtype {descr:?}; {expected}", path.display())]
    UnsupportedDtype {
        /// The file.
        path: PathBuf,
        /// The dtype as the header spells it.
        descr: String,
        /// The dtypes accepted.
        expected: &'static str,
    },

    /// A .npy array stored column-major.
    #[error(
        "{}: the array is stored in Fortran (column-major) order; save it in C order (numpy.ascontiguousarray) first",
        path.display()
    )]
    FortranOrder {
        /// The file.
        path: PathBuf,
    },

    /// An array with the wrong number of dimensions (or an empty axis).
    #[error("{}: expected a {expected}-D array, got shape {shape:?}", path.display())]
    WrongRank {
        /// The file.
        path: PathBuf,
        /// The shape found.
        shape: Vec<usize>,
        /// Dimensions wanted.
        expected: usize,
    },

    /// A file that shrank after it was opened (a read came back short).
    #[error(
        "{}: the file was truncated while being read: byte {offset} is gone (another process rewrote or cut it); nothing was selected",
        path.display()
    )]
    Shrank {
        /// The file.
        path: PathBuf,
        /// The first byte that is gone.
        offset: u64,
    },

    /// A file shorter than its header promises.
    #[error(
        "{}: file is truncated: the header promises {expected} data bytes but only {actual} follow it",
        path.display()
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Data bytes the header promises.
        expected: u64,
        /// Data bytes present.
        actual: u64,
    },

    /// A file longer than its header promises.
    #[error(
        "{}: {actual} bytes of unexpected data after the array (the header promises {expected} data bytes)",
        path.display()
    )]
    TrailingData {
        /// The file.
        path: PathBuf,
        /// Data bytes the header promises.
        expected: u64,
        /// Extra bytes after the data.
        actual: u64,
    },

    /// Shards of one pool with different column counts.
    #[error(
        "{}: has {found} columns but {} has {expected}; all shards of a pool must have the same number of classes",
        path.display(),
        first.display()
    )]
    ShardColumns {
        /// The file.
        path: PathBuf,
        /// The first shard, which set the column count.
        first: PathBuf,
        /// The first shard's column count.
        expected: usize,
        /// This shard's column count.
        found: usize,
    },

    /// A strategy that needs more classes than the pool has.
    #[error(
        "{}: strategy {strategy} needs at least 2 classes, but the pool has {classes}",
        path.display()
    )]
    TooFewClasses {
        /// The pool (its first file).
        path: PathBuf,
        /// The strategy.
        strategy: &'static str,
        /// Classes the pool has.
        classes: usize,
    },

    /// A row whose values break the input form's rules.
    #[error("{}: row {row} (global row {global}): {problem}", path.display())]
    BadRow {
        /// The file.
        path: PathBuf,
        /// The row within its file.
        row: u64,
        /// The row across all shards.
        global: u64,
        /// What is wrong with it.
        problem: RowProblem,
    },

    /// One sample of a row whose values break the input form's rules.
    #[error("{0}")]
    BadSample(Box<BadSample>),

    /// Embeddings whose row count differs from the pool's.
    #[error(
        "{}: {found} rows of embeddings, but the pool {} has {expected} rows; give one embedding per pool row, in the same order",
        path.display(),
        pool.display()
    )]
    EmbeddingRows {
        /// The embeddings' first file.
        path: PathBuf,
        /// The pool's first file.
        pool: PathBuf,
        /// The pool's row count.
        expected: u64,
        /// The embeddings' row count.
        found: u64,
    },

    /// A batch strategy asked for more rows than can be selected.
    #[error(
        "{}: k = {k} is more than the {selectable} rows that can be selected ({rows} rows, {excluded} excluded); {strategy} picks distinct rows, so lower -k",
        path.display()
    )]
    TooFewRows {
        /// The pool (its first file).
        path: PathBuf,
        /// The strategy.
        strategy: &'static str,
        /// Rows asked for.
        k: usize,
        /// Rows that can be picked.
        selectable: u64,
        /// Rows in the pool.
        rows: u64,
        /// Rows excluded.
        excluded: u64,
    },

    /// A bad line of a text file.
    #[error("{}: line {line}: {reason}", path.display())]
    BadLine {
        /// The file.
        path: PathBuf,
        /// The line, from 1.
        line: u64,
        /// What is wrong.
        reason: String,
    },

    /// A bad element of a 1-D array file.
    #[error("{}: element {element}: {reason}", path.display())]
    BadElement {
        /// The file.
        path: PathBuf,
        /// The element, from 0.
        element: u64,
        /// What is wrong.
        reason: String,
    },

    /// One task (or row) of a Label Studio export, named as Label Studio
    /// shows it (`Label Studio task 12`) or by its line.
    #[error("{}: {task}: {reason}", path.display())]
    BadTask {
        /// The file.
        path: PathBuf,
        /// The task, as Label Studio shows it, or the line.
        task: String,
        /// What is wrong.
        reason: String,
    },

    /// A query run without an input it needs.
    #[error("{query} needs {}", input.how_to_give())]
    MissingInput {
        /// The query.
        query: &'static str,
        /// The input it lacks.
        input: Input,
    },

    /// A query given an input it never reads (a likely mistake: the wrong
    /// strategy, or a stray flag).
    #[error("{query} does not read {input}: remove {}, or choose a strategy that reads them", input.flag())]
    UnusedInput {
        /// The query.
        query: &'static str,
        /// The input it does not read.
        input: Input,
    },

    /// A request that cannot be carried out as given.
    #[error("{0}")]
    Config(String),

    /// A saved model (safetensors weights or its JSON config) that cannot be
    /// used.
    #[error("{}: not a usable model file: {reason}", path.display())]
    Model {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// An exchange file (a Label Studio export, a batch) that cannot be read.
    #[error("{}: {reason}", path.display())]
    Exchange {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// The workspace's database: busy with another command, or failing.
    #[error("{}: {reason}", path.display())]
    Workspace {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A part file (`alpool select --out X.alpart`) that is damaged or does
    /// not belong with the others of a merge.
    #[error("{}: {reason}", path.display())]
    Part {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A Label Studio server refused a request, or could not be reached.
    #[error("Label Studio {url}: {reason}")]
    LabelStudio {
        /// The address asked.
        url: String,
        /// What went wrong.
        reason: String,
    },

    /// The GPU failed, or none could be opened.
    #[error("GPU: {0}")]
    Gpu(String),

    /// The learner failed.
    #[error("learner: {0}")]
    Learner(String),

    /// The caller asked to stop (Ctrl-C in the Python package); nothing was
    /// returned.
    #[error("cancelled")]
    Cancelled,
}

/// Where a bad sample is, and what is wrong with it.
#[derive(Debug)]
pub struct BadSample {
    /// The file.
    pub path: PathBuf,
    /// Where in the file, in its own terms (`[t, n]` of a 3-D file).
    pub at: String,
    /// The sample, from 0.
    pub sample: usize,
    /// The row across all shards.
    pub global: u64,
    /// What is wrong with it.
    pub problem: RowProblem,
}

impl std::fmt::Display for BadSample {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} (sample {}, global row {}): {}",
            self.path.display(),
            self.at,
            self.sample,
            self.global,
            self.problem
        )
    }
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    #[cfg(feature = "learner")]
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

/// A value from an outside file, quoted for a message: in full when short,
/// else its start and its length, so that a 300 MB "id" on one line makes a
/// one-line error rather than a 300 MB one.
pub(crate) fn quoted(value: &str) -> String {
    const SHOWN: usize = 60;
    match value.char_indices().nth(SHOWN) {
        None => format!("{value:?}"),
        Some((end, _)) => format!("{:?}… ({} bytes in all)", &value[..end], value.len()),
    }
}
