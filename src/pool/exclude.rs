//! Rows that must never be selected (already labeled): a text file with one
//! global row index per line, or a 1-D integer .npy.

use std::path::Path;

use super::npy::DType;
use crate::error::{Error, Result, quoted};

/// A sorted, deduplicated set of global row indices.
#[derive(Clone, Debug, Default)]
pub struct Exclusions {
    sorted: Vec<u64>,
}

impl Exclusions {
    /// The set of `indices` (any order, duplicates allowed).
    pub fn new(mut indices: Vec<u64>) -> Self {
        indices.sort_unstable();
        indices.dedup();
        Exclusions { sorted: indices }
    }

    /// How many rows are excluded.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }
    /// Whether no row is excluded.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }
    /// Whether global row `index` is excluded.
    pub fn contains(&self, index: u64) -> bool {
        self.sorted.binary_search(&index).is_ok()
    }
    /// The excluded indices in `start..end`, ascending.
    pub fn within(&self, start: u64, end: u64) -> &[u64] {
        let a = self.sorted.partition_point(|&i| i < start);
        let b = self.sorted.partition_point(|&i| i < end);
        &self.sorted[a..b]
    }
    /// The excluded rows, ascending.
    pub fn as_slice(&self) -> &[u64] {
        &self.sorted
    }

    /// For a machine holding global rows `offset..offset + rows` of a
    /// bigger pool: the indices in that range. Others belong to other
    /// machines' shards.
    pub fn restrict(&self, offset: u64, rows: u64) -> Exclusions {
        Exclusions {
            sorted: self.within(offset, offset.saturating_add(rows)).to_vec(),
        }
    }

    /// Reads an exclusion file for a pool of `rows` rows; `.npy` by
    /// extension, otherwise text. Blank lines and `#` comments are skipped.
    pub fn read(path: &Path, rows: u64) -> Result<Exclusions> {
        let is_npy = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
        let indices = if is_npy {
            read_npy(path, rows)?
        } else {
            read_text(path, rows)?
        };
        Ok(Exclusions::new(indices))
    }
}

fn out_of_range(path: &Path, line: u64, value: i128, rows: u64) -> Error {
    Error::BadLine {
        path: path.into(),
        line,
        reason: format!("index {value} is outside the pool (rows 0..{rows})"),
    }
}

fn read_text(path: &Path, rows: u64) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    crate::lines::each_line(path, |line_no, line| {
        let t = line.split('#').next().unwrap_or("").trim();
        if t.is_empty() {
            return Ok(());
        }
        let v: i128 = t.parse().map_err(|_| Error::BadLine {
            path: path.into(),
            line: line_no,
            reason: format!("{} is not a row index (a non-negative integer)", quoted(t)),
        })?;
        if v < 0 || v >= rows as i128 {
            return Err(out_of_range(path, line_no, v, rows));
        }
        out.push(v as u64);
        Ok(())
    })?;
    Ok(out)
}

fn read_npy(path: &Path, rows: u64) -> Result<Vec<u64>> {
    const INTS: &[DType] = &[DType::I64, DType::I32, DType::U64, DType::U32, DType::U8];
    let (map, header) = super::map_npy(path, INTS, "exclusions must be a 1-D integer array")?;
    if header.shape.len() != 1 {
        return Err(Error::WrongRank {
            path: path.into(),
            shape: header.shape,
            expected: 1,
        });
    }
    let data = &map[header.data_offset..];
    let size = header.dtype.size();
    let mut out = Vec::with_capacity(header.shape[0]);
    for (i, b) in data.chunks_exact(size).enumerate() {
        let v = super::npy::int_at(header.dtype, b);
        if v < 0 || v >= rows as i128 {
            return Err(Error::BadElement {
                path: path.into(),
                element: i as u64,
                reason: format!("index {v} is outside the pool (rows 0..{rows})"),
            });
        }
        out.push(v as u64);
    }
    Ok(out)
}
