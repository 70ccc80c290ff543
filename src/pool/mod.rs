//! Pools: one or more shards of N x C float32 or float16 rows, either
//! memory-mapped .npy files or borrowed from memory (a slice, an ndarray
//! view, a NumPy array), never copied. Nothing is read until a backend walks
//! the rows in chunks, so a file-backed pool may be far larger than RAM; the
//! page cache holds what the OS can afford.

pub mod exclude;
pub mod npy;
pub mod synth;

use std::borrow::Cow;
use std::fs::File;
use std::ops::Deref;
use std::path::{Path, PathBuf};

use memmap2::{Advice, Mmap};

use crate::error::{Error, Result};
use npy::DType;

pub use exclude::Exclusions;

const POOL_DTYPES: &str = "a pool must be float32 ('<f4') or float16 ('<f2')";

/// A shard's bytes: a file's map, or memory the caller lends.
enum Bytes<'a> {
    Mapped(Mmap),
    Borrowed(&'a [u8]),
}

impl Deref for Bytes<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Borrowed(b) => b,
        }
    }
}

/// One part of a pool: a .npy file, or a borrowed matrix.
pub struct Shard<'a> {
    path: PathBuf,
    map: Bytes<'a>,
    dtype: DType,
    data_offset: usize,
    rows: u64,
    /// Global index of this shard's first row.
    first_row: u64,
}

impl Shard<'_> {
    /// The file, or `<memory>` for a borrowed matrix.
    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn rows(&self) -> u64 {
        self.rows
    }
    pub fn first_row(&self) -> u64 {
        self.first_row
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The raw bytes of rows `start..end` (local indices).
    pub fn row_bytes(&self, start: u64, end: u64, classes: usize) -> &[u8] {
        let w = (classes * self.dtype.size()) as u64;
        let a = self.data_offset + (start * w) as usize;
        let b = self.data_offset + (end * w) as usize;
        &self.map[a..b]
    }

    /// Rows `start..end` (local) as f32: borrowed straight from the map for
    /// aligned float32 data, otherwise widened into `scratch`.
    pub fn rows_f32<'s>(
        &'s self,
        start: u64,
        end: u64,
        classes: usize,
        scratch: &'s mut Vec<f32>,
    ) -> Cow<'s, [f32]> {
        let bytes = self.row_bytes(start, end, classes);
        match self.dtype {
            DType::F32 => match bytemuck::try_cast_slice::<u8, f32>(bytes) {
                Ok(s) => Cow::Borrowed(s),
                Err(_) => {
                    scratch.clear();
                    scratch.extend(
                        bytes
                            .chunks_exact(4)
                            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                    );
                    Cow::Borrowed(&scratch[..])
                }
            },
            DType::F16 => {
                use half::slice::HalfFloatSliceExt;
                scratch.clear();
                scratch.resize(bytes.len() / 2, 0.0);
                match bytemuck::try_cast_slice::<u8, half::f16>(bytes) {
                    Ok(h) => h.convert_to_f32_slice(scratch),
                    Err(_) => {
                        for (o, b) in scratch.iter_mut().zip(bytes.chunks_exact(2)) {
                            *o = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
                        }
                    }
                }
                Cow::Borrowed(&scratch[..])
            }
            _ => unreachable!("Pool::open accepts only f32 and f16"),
        }
    }
}

/// A pool: shards in the order given, global row index = position across
/// them. `'a` is the lifetime of borrowed data (`'static` for files).
pub struct Pool<'a> {
    shards: Vec<Shard<'a>>,
    classes: usize,
    rows: u64,
}

impl Pool<'static> {
    /// Opens and checks every shard's header and size; reads no data.
    pub fn open<P: AsRef<Path>>(paths: &[P]) -> Result<Pool<'static>> {
        let (files, classes) = map_matrices(paths, &[DType::F32, DType::F16], POOL_DTYPES)?;
        if classes == 0 {
            return Err(Error::WrongRank {
                path: files[0].path.clone(),
                shape: vec![files[0].rows as usize, 0],
                expected: 2,
            });
        }
        let rows = files.iter().map(|f| f.rows).sum();
        let shards = files
            .into_iter()
            .map(|f| Shard {
                path: f.path,
                map: Bytes::Mapped(f.map),
                dtype: f.header.dtype,
                data_offset: f.header.data_offset,
                rows: f.rows,
                first_row: f.first_row,
            })
            .collect();
        Ok(Pool {
            shards,
            classes,
            rows,
        })
    }
}

/// One mapped N x C .npy file of a sharded matrix.
pub(crate) struct MappedMatrix {
    pub path: PathBuf,
    pub map: Mmap,
    pub header: npy::Header,
    pub rows: u64,
    /// Global index of its first row across the shards.
    pub first_row: u64,
}

/// Maps the shards of one matrix, checking each header and size, that each
/// is 2-D and that all have the same column count (returned).
pub(crate) fn map_matrices<P: AsRef<Path>>(
    paths: &[P],
    accept: &[DType],
    expected: &'static str,
) -> Result<(Vec<MappedMatrix>, usize)> {
    if paths.is_empty() {
        return Err(Error::Config("no files given".into()));
    }
    let mut files: Vec<MappedMatrix> = Vec::with_capacity(paths.len());
    let mut cols = None;
    let mut first_row = 0u64;
    for path in paths {
        let path = path.as_ref();
        let (map, header) = map_npy(path, accept, expected)?;
        let [n, c] = header.shape[..] else {
            return Err(Error::WrongRank {
                path: path.into(),
                shape: header.shape,
                expected: 2,
            });
        };
        match cols {
            None => cols = Some(c),
            Some(want) if want != c => {
                return Err(Error::ShardColumns {
                    path: path.into(),
                    first: files[0].path.clone(),
                    expected: want,
                    found: c,
                });
            }
            _ => {}
        }
        files.push(MappedMatrix {
            path: path.into(),
            map,
            header,
            rows: n as u64,
            first_row,
        });
        first_row += n as u64;
    }
    Ok((files, cols.unwrap_or(0)))
}

impl<'a> Pool<'a> {
    /// A row-major N x `classes` float32 matrix in memory, borrowed: no
    /// copy, whatever its size.
    pub fn from_f32(values: &'a [f32], classes: usize) -> Result<Pool<'a>> {
        Pool::borrowed(bytemuck::cast_slice(values), DType::F32, classes)
    }

    /// A row-major N x `classes` float16 matrix in memory, borrowed.
    pub fn from_f16(values: &'a [half::f16], classes: usize) -> Result<Pool<'a>> {
        Pool::borrowed(bytemuck::cast_slice(values), DType::F16, classes)
    }

    /// A float32 `ndarray` view, borrowed when it is in standard (C)
    /// layout; any other layout is refused rather than silently copied.
    pub fn from_array(view: ndarray::ArrayView2<'a, f32>) -> Result<Pool<'a>> {
        let (rows, classes) = view.dim();
        let strides = view.strides().to_vec();
        let Some(values) = view.to_slice() else {
            return Err(Error::Config(format!(
                "a pool view must be in standard (C, row-major) layout; this {rows} x {classes} view has strides {strides:?} (use .as_standard_layout())"
            )));
        };
        Pool::from_f32(values, classes)
    }

    /// Names a borrowed pool in error messages (`<memory>` by default),
    /// e.g. after the caller's variable.
    pub fn named(mut self, name: &str) -> Pool<'a> {
        for s in &mut self.shards {
            if matches!(s.map, Bytes::Borrowed(_)) {
                s.path = name.into();
            }
        }
        self
    }

    /// Makes this pool rows `offset..offset + rows()` of a bigger one (one
    /// machine's shard): every index it reports, takes (exclusions) and
    /// scores (the random strategy hashes the global row) is global.
    pub fn with_row_offset(mut self, offset: u64) -> Pool<'a> {
        for s in &mut self.shards {
            s.first_row += offset;
        }
        self
    }

    /// The global index of the first row (0 unless [`Pool::with_row_offset`]).
    pub fn first_row(&self) -> u64 {
        self.shards.first().map_or(0, |s| s.first_row)
    }

    /// The earlier name of [`Pool::from_f32`] (which now borrows).
    pub fn from_memory(values: &'a [f32], classes: usize) -> Result<Pool<'a>> {
        Pool::from_f32(values, classes)
    }

    fn borrowed(bytes: &'a [u8], dtype: DType, classes: usize) -> Result<Pool<'a>> {
        if classes == 0 {
            return Err(Error::Config(
                "a pool needs at least one class (column)".into(),
            ));
        }
        let width = classes * dtype.size();
        if !bytes.len().is_multiple_of(width) {
            return Err(Error::Config(format!(
                "{} values do not make rows of {classes} classes",
                bytes.len() / dtype.size()
            )));
        }
        let rows = (bytes.len() / width) as u64;
        Ok(Pool {
            shards: vec![Shard {
                path: "<memory>".into(),
                map: Bytes::Borrowed(bytes),
                dtype,
                data_offset: 0,
                rows,
                first_row: 0,
            }],
            classes,
            rows,
        })
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }
    pub fn classes(&self) -> usize {
        self.classes
    }
    pub fn shards(&self) -> &[Shard<'a>] {
        &self.shards
    }
    /// Bytes of row data across all shards.
    pub fn data_bytes(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.rows * (self.classes * s.dtype.size()) as u64)
            .sum()
    }
    /// Whether any shard is float16 (its default sum tolerance is looser).
    pub fn has_f16(&self) -> bool {
        self.shards.iter().any(|s| s.dtype == DType::F16)
    }

    /// The shard holding global row `index`, and the local row.
    pub fn locate(&self, index: u64) -> (&Shard<'a>, u64) {
        let i = self
            .shards
            .partition_point(|s| s.first_row + s.rows <= index);
        let s = &self.shards[i];
        (s, index - s.first_row)
    }

    /// One row as f32, into `out` (length = classes).
    pub fn row_f32(&self, index: u64, out: &mut [f32]) {
        let (shard, local) = self.locate(index);
        let bytes = shard.row_bytes(local, local + 1, self.classes);
        match shard.dtype {
            DType::F32 => {
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                    *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
            _ => {
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *o = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
                }
            }
        }
    }

    /// Splits the pool into chunks of at most `chunk_rows` rows that never
    /// straddle a shard: (shard, local start, local end).
    pub fn chunks(&self, chunk_rows: u64) -> impl Iterator<Item = (&Shard<'a>, u64, u64)> + '_ {
        let step = chunk_rows.max(1);
        self.shards.iter().flat_map(move |s| {
            (0..s.rows.div_ceil(step)).map(move |i| (s, i * step, ((i + 1) * step).min(s.rows)))
        })
    }
}

/// Maps a .npy file and checks that its size matches its header exactly.
pub fn map_npy(
    path: &Path,
    accept: &[DType],
    expected: &'static str,
) -> Result<(Mmap, npy::Header)> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if len == 0 {
        return Err(Error::npy(path, "the file is empty"));
    }
    // SAFETY: the map is read-only; a file truncated by another process
    // while mapped is outside what alpool can defend against (as for any
    // mmap-based reader) and is documented in the README.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    let header = npy::parse_header(path, &map, accept, expected)?;
    let want = header
        .data_bytes()
        .ok_or_else(|| Error::npy(path, format!("shape {:?} is too large", header.shape)))?;
    let have = len - header.data_offset as u64;
    if have < want {
        return Err(Error::Truncated {
            path: path.into(),
            expected: want,
            actual: have,
        });
    }
    if have > want {
        return Err(Error::TrailingData {
            path: path.into(),
            expected: want,
            actual: have - want,
        });
    }
    let _ = map.advise(Advice::Sequential);
    Ok((map, header))
}
