//! Pools: one or more shards of N x C float32, float16 or float64 rows,
//! either .npy files or borrowed from memory (a slice, an ndarray view, a
//! NumPy array), never copied whole. Nothing is read until a backend walks
//! the rows in chunks; files are read through a map or positioned reads
//! ([`ReadPath`]), and a pool larger than RAM is streamed with drop-behind,
//! so the page cache is left as it was.

pub mod exclude;
pub mod npy;
pub(crate) mod samples;

use std::borrow::Cow;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::{Advice, Mmap};

use crate::error::{Error, Result};
use npy::DType;

pub use exclude::Exclusions;
pub use samples::{SampleLayout, Samples};

const POOL_DTYPES: &str = "a pool must be float32 ('<f4'), float16 ('<f2') or float64 ('<f8')";

/// How a file-backed pool's rows are read.
///
/// Measured side by side (README, "Read paths"): for a page-cached pool a
/// memory map is faster as a whole process (its page faults cost less than
/// the copy positioned reads make, which is all `dd` does); for a pool
/// larger than RAM, positioned reads with drop-behind read at the disk's
/// speed and leave the page cache as they found it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadPath {
    /// `Map` for pools up to half the machine's memory, `Stream` beyond.
    #[default]
    Auto,
    /// Positioned reads (`pread`) into per-worker buffers; what was read
    /// stays in the page cache, so the next run reads from memory.
    Read,
    /// Positioned reads with drop-behind: each range leaves the page cache
    /// once read, so scanning a pool larger than RAM neither thrashes other
    /// processes' cache nor leaves more than the chunks in flight behind.
    Stream,
    /// A read-only memory map, advised sequential.
    Map,
}

/// A shard's bytes: a file read with positioned reads, a file's map, or
/// memory the caller lends.
enum Bytes<'a> {
    File(Source),
    /// With the file, to notice it shrinking before a read of the map
    /// would fault (SIGBUS).
    Mapped(Mmap, Option<File>),
    Borrowed(&'a [u8]),
}

/// A file read with positioned reads.
struct Source {
    file: File,
    /// Drop each range from the page cache once read: set for pools too
    /// large to stay cached, so a scan leaves the cache as it found it.
    drop_behind: bool,
}

impl Source {
    /// Fills `out` from byte `offset`; a short read means the file shrank
    /// after it was opened.
    fn read_at(&self, path: &Path, offset: u64, out: &mut [u8]) -> Result<()> {
        read_exact_at(&self.file, path, offset, out)?;
        if self.drop_behind {
            advise(
                &self.file,
                offset,
                out.len() as u64,
                libc::POSIX_FADV_DONTNEED,
            );
        }
        Ok(())
    }
}

/// Fills `out` from byte `offset` of `file` (at `path`) with positioned
/// reads; a short read means the file shrank after it was opened
/// ([`Error::Shrank`], naming the first byte that is gone).
pub(crate) fn read_exact_at(file: &File, path: &Path, offset: u64, out: &mut [u8]) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let mut done = 0;
    while done < out.len() {
        match file.read_at(&mut out[done..], offset + done as u64) {
            Ok(0) => {
                return Err(Error::Shrank {
                    path: path.into(),
                    offset: offset + done as u64,
                });
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    Ok(())
}

impl Drop for Source {
    /// Ranges dropped while read-ahead still had them under I/O stay
    /// cached; one last sweep takes them too.
    fn drop(&mut self) {
        if self.drop_behind {
            advise(&self.file, 0, 0, libc::POSIX_FADV_DONTNEED);
        }
    }
}

/// `posix_fadvise`, best effort: advice the kernel may ignore.
fn advise(file: &File, offset: u64, len: u64, advice: libc::c_int) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on a descriptor this process owns; it reads
    // no memory of ours.
    unsafe {
        libc::posix_fadvise(
            file.as_raw_fd(),
            offset as libc::off_t,
            len as libc::off_t,
            advice,
        );
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

/// Reads `count` values of `T` at byte `offset` of `src` into `buf`.
fn read_values<'b, T: bytemuck::Pod + Default>(
    src: &Source,
    path: &Path,
    offset: u64,
    count: usize,
    buf: &'b mut Vec<T>,
) -> Result<&'b [T]> {
    buf.clear();
    buf.resize(count, T::default());
    src.read_at(path, offset, bytemuck::cast_slice_mut(&mut buf[..]))?;
    Ok(&buf[..])
}

impl Shard<'_> {
    /// The file, or `<memory>` for a borrowed matrix.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Rows in this shard.
    pub fn rows(&self) -> u64 {
        self.rows
    }
    /// The global index of this shard's first row.
    pub fn first_row(&self) -> u64 {
        self.first_row
    }
    /// The stored element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The byte range of rows `start..end` (local indices).
    fn span(&self, start: u64, end: u64, classes: usize) -> (u64, usize) {
        let w = (classes * self.dtype.size()) as u64;
        (
            self.data_offset as u64 + start * w,
            ((end - start) * w) as usize,
        )
    }

    /// The bytes of rows `start..end` when they are in memory (mapped or
    /// borrowed); `None` for a file read with positioned reads.
    pub fn mapped_bytes(&self, start: u64, end: u64, classes: usize) -> Option<&[u8]> {
        let (a, n) = self.span(start, end, classes);
        let (a, b) = (a as usize, a as usize + n);
        match &self.map {
            Bytes::Mapped(m, _) => Some(&m[a..b]),
            Bytes::Borrowed(m) => Some(&m[a..b]),
            Bytes::File(_) => None,
        }
    }

    /// For a mapped file: fails if the file no longer holds rows up to
    /// `end`. Touching a page past a truncated file's end would kill the
    /// process (SIGBUS); checking the size first turns a truncation that
    /// happened before the check into an error, leaving only the instant
    /// between check and read (positioned reads have no such window).
    fn guard(&self, end: u64, classes: usize) -> Result<()> {
        if let Bytes::Mapped(_, Some(file)) = &self.map {
            let (offset, n) = self.span(end, end, classes);
            let need = offset + n as u64;
            let have = file.metadata().map_err(|e| Error::io(&self.path, e))?.len();
            if have < need {
                return Err(Error::Shrank {
                    path: self.path.clone(),
                    offset: have,
                });
            }
        }
        Ok(())
    }

    /// The bytes of rows `start..end`: borrowed from memory, or read from
    /// the file into `buf`.
    pub fn bytes<'s>(
        &'s self,
        start: u64,
        end: u64,
        classes: usize,
        buf: &'s mut Vec<u8>,
    ) -> Result<&'s [u8]> {
        match &self.map {
            Bytes::File(src) => {
                let (offset, n) = self.span(start, end, classes);
                buf.clear();
                buf.resize(n, 0);
                src.read_at(&self.path, offset, buf)?;
                Ok(&buf[..])
            }
            _ => {
                self.guard(end, classes)?;
                Ok(self.mapped_bytes(start, end, classes).unwrap_or_default())
            }
        }
    }

    /// Rows `start..end` borrowed as f32 straight from memory, when they
    /// are float32 there (mapped, checked against truncation where
    /// `guard` — a caller that reads several spans of one file checks the
    /// furthest only — or a borrowed array) and aligned; `None` otherwise.
    pub(crate) fn mapped_f32(
        &self,
        (start, end): (u64, u64),
        classes: usize,
        guard: bool,
    ) -> Result<Option<&[f32]>> {
        if self.dtype != DType::F32 || end > self.rows || cfg!(target_endian = "big") {
            return Ok(None);
        }
        if guard {
            self.guard(end, classes)?;
        }
        let bytes = self.mapped_bytes(start, end, classes);
        Ok(bytes.and_then(|b| bytemuck::try_cast_slice(b).ok()))
    }

    /// Rows `start..end` as f32 into `out` (exactly their values): a
    /// positioned read straight into it from a float32 file, with no
    /// buffer between; otherwise [`Shard::rows_f32`] copied.
    pub(crate) fn read_f32_into(
        &self,
        (start, end): (u64, u64),
        classes: usize,
        out: &mut [f32],
        (scratch, raw): (&mut Vec<f32>, &mut Vec<u8>),
    ) -> Result<()> {
        if let (Bytes::File(src), DType::F32) = (&self.map, self.dtype) {
            let (offset, _) = self.span(start, end, classes);
            return src.read_at(&self.path, offset, bytemuck::cast_slice_mut(out));
        }
        out.copy_from_slice(&self.rows_f32(start, end, classes, scratch, raw)?);
        Ok(())
    }

    /// Rows `start..end` (local) as f32: borrowed straight from memory for
    /// aligned float32 data, otherwise read or widened into `scratch`
    /// (`raw` holds float16 and float64 bytes read from a file).
    pub fn rows_f32<'s>(
        &'s self,
        start: u64,
        end: u64,
        classes: usize,
        scratch: &'s mut Vec<f32>,
        raw: &'s mut Vec<u8>,
    ) -> Result<Cow<'s, [f32]>> {
        if let (Bytes::File(src), DType::F32) = (&self.map, self.dtype) {
            // Straight into the f32 buffer: no second copy.
            let (offset, _) = self.span(start, end, classes);
            let count = ((end - start) as usize) * classes;
            return Ok(Cow::Borrowed(read_values(
                src, &self.path, offset, count, scratch,
            )?));
        }
        let bytes = self.bytes(start, end, classes, raw)?;
        Ok(match self.dtype {
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
            // float64 rows are scored from their own values (`rows_f64`);
            // here they narrow, for callers that only look (the GPU
            // refuses float64 pools).
            DType::F64 => {
                scratch.clear();
                scratch.extend(bytes.chunks_exact(8).map(|b| {
                    f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
                }));
                Cow::Borrowed(&scratch[..])
            }
            _ => unreachable!("Pool::open accepts only f32, f16 and f64"),
        })
    }

    /// Rows `start..end` (local) of a float64 shard, as stored: borrowed
    /// from memory when aligned, otherwise read or copied into `scratch`.
    pub fn rows_f64<'s>(
        &'s self,
        start: u64,
        end: u64,
        classes: usize,
        scratch: &'s mut Vec<f64>,
    ) -> Result<Cow<'s, [f64]>> {
        debug_assert_eq!(self.dtype, DType::F64);
        let count = ((end - start) as usize) * classes;
        let bytes = match &self.map {
            Bytes::File(src) => {
                let (offset, _) = self.span(start, end, classes);
                return Ok(Cow::Borrowed(read_values(
                    src, &self.path, offset, count, scratch,
                )?));
            }
            _ => self.mapped_bytes(start, end, classes).unwrap_or_default(),
        };
        Ok(match bytemuck::try_cast_slice::<u8, f64>(bytes) {
            Ok(s) => Cow::Borrowed(s),
            Err(_) => {
                scratch.clear();
                scratch.extend(
                    bytes.chunks_exact(8).map(|b| {
                        f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
                    }),
                );
                Cow::Borrowed(&scratch[..])
            }
        })
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
    /// Opens and checks every shard's header and size; reads no data. Rows
    /// are read with the default [`ReadPath`].
    pub fn open<P: AsRef<Path>>(paths: &[P]) -> Result<Pool<'static>> {
        Pool::open_with(paths, ReadPath::default())
    }

    /// [`Pool::open`] with a chosen read path.
    pub fn open_with<P: AsRef<Path>>(paths: &[P], read: ReadPath) -> Result<Pool<'static>> {
        Pool::open_as(paths, read, &as_matrix)
    }

    /// Opens files whose shape `reshape` views as N x C (a 3-D array of
    /// samples, say; C order makes every such view valid).
    pub(crate) fn open_as<P: AsRef<Path>>(
        paths: &[P],
        read: ReadPath,
        reshape: &Reshape,
    ) -> Result<Pool<'static>> {
        let dtypes = [DType::F32, DType::F16, DType::F64];
        let (files, classes) = map_matrices(paths, &dtypes, POOL_DTYPES, reshape)?;
        if classes == 0 {
            return Err(Error::WrongRank {
                path: files[0].path.clone(),
                shape: vec![files[0].rows as usize, 0],
                expected: 2,
            });
        }
        let rows = files.iter().map(|f| f.rows).sum();
        let bytes: u64 = files.iter().map(|f| f.map.len() as u64).sum();
        let read = match read {
            ReadPath::Auto if memory_bytes().is_some_and(|m| bytes > m / 2) => ReadPath::Stream,
            ReadPath::Auto => ReadPath::Map,
            r => r,
        };
        let shards = files
            .into_iter()
            .map(|f| {
                let map = match read {
                    ReadPath::Map => {
                        let file = File::open(&f.path).map_err(|e| Error::io(&f.path, e))?;
                        Bytes::Mapped(f.map, Some(file))
                    }
                    _ => {
                        let file = File::open(&f.path).map_err(|e| Error::io(&f.path, e))?;
                        advise(&file, 0, 0, libc::POSIX_FADV_SEQUENTIAL);
                        let drop_behind = read == ReadPath::Stream;
                        Bytes::File(Source { file, drop_behind })
                    }
                };
                Ok(Shard {
                    path: f.path,
                    map,
                    dtype: f.header.dtype,
                    data_offset: f.header.data_offset,
                    rows: f.rows,
                    first_row: f.first_row,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Pool {
            shards,
            classes,
            rows,
        })
    }
}

/// The machine's memory (MemTotal), if /proc/meminfo says.
fn memory_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib << 10)
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

/// How a file's shape is viewed as N x C: `Err` with the rank wanted when
/// it cannot be.
pub(crate) type Reshape = dyn Fn(&[usize]) -> std::result::Result<[usize; 2], usize>;

/// A 2-D shape as it is.
pub(crate) fn as_matrix(shape: &[usize]) -> std::result::Result<[usize; 2], usize> {
    match *shape {
        [n, c] => Ok([n, c]),
        _ => Err(2),
    }
}

/// Maps the shards of one matrix, checking each header and size, that
/// `reshape` views each as N x C, and that all have the same column count
/// (returned).
pub(crate) fn map_matrices<P: AsRef<Path>>(
    paths: &[P],
    accept: &[DType],
    expected: &'static str,
    reshape: &Reshape,
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
        let [n, c] = reshape(&header.shape).map_err(|rank| Error::WrongRank {
            path: path.into(),
            shape: header.shape.clone(),
            expected: rank,
        })?;
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

impl Pool<'static> {
    /// Opens a regression model's predictions, or a pool's targets: N
    /// values (a 1-D `.npy`), N x 1, or N x C rows (N x 2 for (mean, std)).
    /// Checks headers and sizes only; reads no data.
    pub fn open_column<P: AsRef<Path>>(paths: &[P], read: ReadPath) -> Result<Pool<'static>> {
        let reshape = |s: &[usize]| match *s {
            [n] => Ok([n, 1]),
            [n, c] if c > 0 => Ok([n, c]),
            _ => Err(2),
        };
        Pool::open_as(paths, read, &reshape)
    }
}

impl<'a> Pool<'a> {
    /// Every row's first value, widened exactly to f64, in row order: a
    /// column of N values (targets, predictions), read whole.
    pub fn column_f64(&self) -> Result<Vec<f64>> {
        let c = self.classes;
        let mut out = Vec::with_capacity(self.rows as usize);
        let (mut narrow, mut wide, mut raw) = (Vec::new(), Vec::new(), Vec::new());
        for shard in &self.shards {
            let step = 1u64 << 16;
            let mut at = 0;
            while at < shard.rows() {
                let end = (at + step).min(shard.rows());
                if shard.dtype() == DType::F64 {
                    let rows = shard.rows_f64(at, end, c, &mut wide)?;
                    out.extend(rows.chunks_exact(c).map(|r| r[0]));
                } else {
                    let rows = shard.rows_f32(at, end, c, &mut narrow, &mut raw)?;
                    out.extend(rows.chunks_exact(c).map(|r| r[0] as f64));
                }
                at = end;
            }
        }
        Ok(out)
    }

    /// Opens embedding files as a pool (N x D), naming D = 0 plainly.
    pub fn open_embeddings<P: AsRef<Path>>(paths: &[P]) -> Result<Pool<'static>> {
        Pool::open(paths).map_err(|e| match e {
            Error::WrongRank { path, shape, .. } if shape.len() == 2 && shape[1] == 0 => {
                Error::Config(format!(
                    "{}: the embeddings have D = 0 columns; each row needs at least one value",
                    path.display()
                ))
            }
            e => e,
        })
    }

    /// A row-major N x `classes` float32 matrix in memory, borrowed: no
    /// copy, whatever its size.
    pub fn from_f32(values: &'a [f32], classes: usize) -> Result<Pool<'a>> {
        Pool::borrowed(bytemuck::cast_slice(values), DType::F32, classes)
    }

    /// A row-major N x `classes` float16 matrix in memory, borrowed.
    pub fn from_f16(values: &'a [half::f16], classes: usize) -> Result<Pool<'a>> {
        Pool::borrowed(bytemuck::cast_slice(values), DType::F16, classes)
    }

    /// A row-major N x `classes` float64 matrix in memory, borrowed; its
    /// scores come from the float64 values (on the CPU).
    pub fn from_f64(values: &'a [f64], classes: usize) -> Result<Pool<'a>> {
        Pool::borrowed(bytemuck::cast_slice(values), DType::F64, classes)
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

    /// Rows across all shards.
    pub fn rows(&self) -> u64 {
        self.rows
    }
    /// Columns (classes, or embedding width) of every row.
    pub fn classes(&self) -> usize {
        self.classes
    }
    /// The shards, in global row order.
    pub fn shards(&self) -> &[Shard<'a>] {
        &self.shards
    }
    /// The first shard's file (or name), for messages.
    pub fn path(&self) -> &Path {
        self.shards
            .first()
            .map_or(Path::new("<memory>"), |s| s.path())
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
    /// Whether any shard is float64 (scored on the CPU only).
    pub fn has_f64(&self) -> bool {
        self.shards.iter().any(|s| s.dtype == DType::F64)
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
    pub fn row_f32(&self, index: u64, out: &mut [f32]) -> Result<()> {
        let (shard, local) = self.locate(index);
        let (mut scratch, mut raw) = (Vec::new(), Vec::new());
        let row = shard.rows_f32(local, local + 1, self.classes, &mut scratch, &mut raw)?;
        out.copy_from_slice(&row);
        Ok(())
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
    // SAFETY: the map is read-only. A file truncated by another process
    // while mapped would fault on access; pools read through a map check the
    // file's size before each chunk (`Shard::guard`), and the default for
    // pools is positioned reads or a guarded map.
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
