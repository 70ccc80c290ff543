//! Writing results: selections as CSV, JSON lines or .npy indices, score
//! vectors as .npy. Files are written to a temporary name in the target
//! folder and renamed into place only when complete, so a failed run never
//! leaves a partial file behind.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use crate::error::{Error, Result};
use crate::pool::npy;
use crate::select::Selection;

/// Output formats of a selection, chosen by the file extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `rank,index,score` with a header line.
    Csv,
    /// One `{"rank":…,"index":…,"score":…}` object per line.
    Jsonl,
    /// A 1-D int64 array of the selected indices, best first.
    Npy,
    /// A part for `alpool merge` (see [`crate::part`]): priorities and
    /// global rows with the job that made them.
    Part,
}

impl Format {
    /// The format `path`'s extension names.
    pub fn from_path(path: &Path) -> Result<Format> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase());
        match ext.as_deref() {
            Some("csv") => Ok(Format::Csv),
            Some("jsonl") | Some("ndjson") => Ok(Format::Jsonl),
            Some("npy") => Ok(Format::Npy),
            Some("alpart") => Ok(Format::Part),
            _ => Err(Error::Config(format!(
                "{}: unknown output format; use a .csv, .jsonl, .npy or .alpart extension",
                path.display()
            ))),
        }
    }
}

/// Writes a selection in `format`.
pub fn write_selection(w: &mut dyn Write, sel: &Selection, format: Format) -> std::io::Result<()> {
    match format {
        Format::Csv => {
            writeln!(w, "rank,index,score")?;
            for e in &sel.entries {
                // `{}` prints the shortest text that reads back to the same f64.
                writeln!(w, "{},{},{}", e.rank, e.index, e.score)?;
            }
        }
        Format::Jsonl => {
            for e in &sel.entries {
                writeln!(
                    w,
                    "{{\"rank\":{},\"index\":{},\"score\":{}}}",
                    e.rank, e.index, e.score
                )?;
            }
        }
        Format::Npy => {
            let idx: Vec<i64> = sel.entries.iter().map(|e| e.index as i64).collect();
            npy::write_array(w, &[idx.len()], &idx)?;
        }
        Format::Part => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a part file is written by `alpool select` (it needs the job that made it)",
            ));
        }
    }
    Ok(())
}

/// Writes `sel` as a part file (see [`crate::part`]) at `path`, atomically.
pub fn save_part(sel: &Selection, header: &crate::part::PartHeader, path: &Path) -> Result<()> {
    crate::atomic::write(path, |w| {
        crate::part::write_part(w, header, sel).map_err(|e| Error::io(path, e))
    })
}

/// Writes a selection to `path` (format by extension) or, with `None`, as
/// CSV to standard output.
pub fn save_selection(sel: &Selection, path: Option<&Path>) -> Result<()> {
    match path {
        Some(p) => {
            let format = Format::from_path(p)?;
            crate::atomic::write(p, |w| {
                write_selection(w, sel, format).map_err(|e| Error::io(p, e))
            })
        }
        None => {
            let stdout = std::io::stdout();
            let mut w = BufWriter::new(stdout.lock());
            write_selection(&mut w, sel, Format::Csv)
                .and_then(|_| w.flush())
                .map_err(|e| Error::io("<stdout>", e))
        }
    }
}

/// Writes an N-length f64 vector as .npy to `path` atomically, the values
/// arriving in blocks from `produce`.
pub fn save_scores(
    path: &Path,
    rows: u64,
    produce: impl FnOnce(&mut dyn FnMut(&[f64]) -> Result<()>) -> Result<()>,
) -> Result<()> {
    if Format::from_path(path)? != Format::Npy {
        return Err(Error::Config(format!(
            "{}: scores are written as .npy; use a .npy extension",
            path.display()
        )));
    }
    crate::atomic::write(path, |w| {
        w.write_all(&npy::encode_header(npy::DType::F64, &[rows as usize]))
            .map_err(|e| Error::io(path, e))?;
        let mut written = 0u64;
        produce(&mut |block: &[f64]| {
            written += block.len() as u64;
            w.write_all(bytemuck::cast_slice(block))
                .map_err(|e| Error::io(path, e))
        })?;
        debug_assert_eq!(written, rows);
        Ok(())
    })
}

/// Creates a file for writing, with the path in the error.
pub fn create(path: &Path) -> Result<BufWriter<File>> {
    File::create(path)
        .map(BufWriter::new)
        .map_err(|e| Error::io(path, e))
}
