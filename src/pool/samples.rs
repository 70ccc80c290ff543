//! T samples of the class probabilities of N rows (MC-dropout passes, or
//! the members of a committee), for the disagreement strategies: one 3-D
//! `.npy` (T x N x C, or N x T x C), T files of N x C, or a borrowed 3-D
//! array. Viewed as a pool (T·N x C, or N x T·C), so the files are read in
//! chunks like any pool, never whole.

use std::path::{Path, PathBuf};

use super::npy::DType;
use super::{Pool, ReadPath, Shard};
use crate::error::{Error, Result};
use crate::query::RegressionInput;

/// How the samples are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SampleLayout {
    /// Sample-major, T x N x C: each sample's N x C matrix in turn (what
    /// stacking T predictions gives).
    #[default]
    Tnc,
    /// Row-major, N x T x C: each row's T samples together.
    Ntc,
}

impl SampleLayout {
    /// As the CLI and the Python package spell it.
    pub fn name(self) -> &'static str {
        match self {
            SampleLayout::Tnc => "tnc",
            SampleLayout::Ntc => "ntc",
        }
    }
}

impl std::str::FromStr for SampleLayout {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "tnc" => Ok(SampleLayout::Tnc),
            "ntc" => Ok(SampleLayout::Ntc),
            _ => Err(format!(
                "unknown layout {s:?}; choose \"tnc\" (T x N x C) or \"ntc\" (N x T x C)"
            )),
        }
    }
}

/// T samples of N x C probabilities.
pub struct Samples<'a> {
    /// T·N x C (sample-major: sample t is rows t·N..) or N x T·C.
    pool: Pool<'a>,
    layout: SampleLayout,
    samples: usize,
    classes: usize,
    rows: u64,
    first_row: u64,
}

impl Samples<'static> {
    /// Opens sample files: one 3-D `.npy` laid out as `layout`, or T 2-D
    /// files of N x C (one per sample, in order). Checks headers and sizes
    /// only; reads no data.
    pub fn open<P: AsRef<Path>>(
        paths: &[P],
        layout: SampleLayout,
        read: ReadPath,
    ) -> Result<Samples<'static>> {
        let first = paths
            .first()
            .ok_or_else(|| Error::Config("no sample files given".into()))?
            .as_ref();
        let (_, header) = super::map_npy(first, &[DType::F32, DType::F16, DType::F64], POOL)?;
        if header.shape.len() == 3 {
            return Samples::open_3d(paths, layout, read, &header.shape);
        }
        let pool = Pool::open_with(paths, read)?;
        let n = pool.shards()[0].rows();
        if let Some(s) = pool.shards().iter().find(|s| s.rows() != n) {
            return Err(Error::Config(format!(
                "{}: {} rows, but {} has {n}; every sample file holds the same rows",
                s.path().display(),
                s.rows(),
                first.display()
            )));
        }
        let classes = pool.classes();
        Ok(Samples {
            samples: paths.len(),
            classes,
            rows: n,
            layout: SampleLayout::Tnc,
            pool,
            first_row: 0,
        })
    }

    /// Opens a regression model's spread: T predictions a row
    /// ([`RegressionInput::Samples`]: one T x N file, sample-major, or T
    /// files of N or N x 1), or (mean, std) rows
    /// ([`RegressionInput::MeanStd`]: one N x 2 file, read as one sample
    /// of two values). Checks headers and sizes only; reads no data.
    pub fn open_regression<P: AsRef<Path>>(
        paths: &[P],
        kind: RegressionInput,
        read: ReadPath,
    ) -> Result<Samples<'static>> {
        let first = paths
            .first()
            .ok_or_else(|| Error::Config("no prediction files given".into()))?
            .as_ref();
        let (_, header) = super::map_npy(first, &[DType::F32, DType::F16, DType::F64], POOL)?;
        let one_file = paths.len() == 1;
        let (pool, samples, classes) = match (kind, header.shape.as_slice()) {
            (RegressionInput::MeanStd, _) => {
                let pool = Pool::open_with(paths, read)?;
                if pool.classes() != 2 {
                    return Err(Error::Config(format!(
                        "{}: {} columns; (mean, std) rows (--input regression-mean-std) are N x 2",
                        first.display(),
                        pool.classes()
                    )));
                }
                (pool, 1, 2)
            }
            (RegressionInput::Samples, &[t, _]) if one_file => {
                let reshape = |s: &[usize]| match *s {
                    [t, n] => Ok([t * n, 1]),
                    _ => Err(2),
                };
                (Pool::open_as(paths, read, &reshape)?, t, 1)
            }
            (RegressionInput::Samples | RegressionInput::Predictions, _) => {
                let reshape = |s: &[usize]| match *s {
                    [n] | [n, 1] => Ok([n, 1]),
                    _ => Err(1),
                };
                (Pool::open_as(paths, read, &reshape)?, paths.len(), 1)
            }
        };
        let n = pool.rows() / samples.max(1) as u64;
        if samples == 0 || n * samples as u64 != pool.rows() {
            return Err(Error::Config(format!(
                "{}: {} values do not make T = {samples} predictions of equal length",
                first.display(),
                pool.rows()
            )));
        }
        if let Some(s) = pool.shards().iter().find(|s| !one_file && s.rows() != n) {
            return Err(Error::Config(format!(
                "{}: {} rows, but {} has {n}; every prediction file holds the same rows",
                s.path().display(),
                s.rows(),
                first.display()
            )));
        }
        Ok(Samples {
            pool,
            layout: SampleLayout::Tnc,
            samples,
            classes,
            rows: n,
            first_row: 0,
        })
    }

    fn open_3d<P: AsRef<Path>>(
        paths: &[P],
        layout: SampleLayout,
        read: ReadPath,
        shape: &[usize],
    ) -> Result<Samples<'static>> {
        let path = paths[0].as_ref();
        if paths.len() > 1 {
            return Err(Error::Config(format!(
                "{}: a 3-D sample file holds every sample; give it alone (or T files of N x C)",
                path.display()
            )));
        }
        let (t, n, c) = match layout {
            SampleLayout::Tnc => (shape[0], shape[1], shape[2]),
            SampleLayout::Ntc => (shape[1], shape[0], shape[2]),
        };
        if t == 0 || c == 0 {
            return Err(Error::Config(format!(
                "{}: shape {shape:?} read as {} gives T = {t} samples of C = {c} classes; both must be at least 1",
                path.display(),
                layout_words(layout)
            )));
        }
        let reshape = move |s: &[usize]| match (layout, s) {
            (SampleLayout::Tnc, [t, n, c]) => Ok([t * n, *c]),
            (SampleLayout::Ntc, [n, t, c]) => Ok([*n, t * c]),
            _ => Err(3),
        };
        let pool = Pool::open_as(&[path], read, &reshape)?;
        Ok(Samples {
            pool,
            layout,
            samples: t,
            classes: c,
            rows: n as u64,
            first_row: 0,
        })
    }
}

/// A layout in words, for messages.
fn layout_words(layout: SampleLayout) -> &'static str {
    match layout {
        SampleLayout::Tnc => "T x N x C (--layout tnc)",
        SampleLayout::Ntc => "N x T x C (--layout ntc)",
    }
}

const POOL: &str = "samples must be float32 ('<f4'), float16 ('<f2') or float64 ('<f8')";

impl<'a> Samples<'a> {
    /// A 3-D array in memory, `shape` in `layout`'s order, borrowed: no
    /// copy, whatever its size.
    pub fn from_pool(pool: Pool<'a>, shape: [usize; 3], layout: SampleLayout) -> Result<Self> {
        let (t, n, c) = match layout {
            SampleLayout::Tnc => (shape[0], shape[1], shape[2]),
            SampleLayout::Ntc => (shape[1], shape[0], shape[2]),
        };
        let (rows, width) = match layout {
            SampleLayout::Tnc => (t * n, c),
            SampleLayout::Ntc => (n, t * c),
        };
        if t == 0 || c == 0 || pool.classes() != width || pool.rows() != rows as u64 {
            return Err(Error::Config(format!(
                "samples of shape {shape:?} read as {} do not fit the array ({} rows x {} values); T and C must be at least 1",
                layout_words(layout),
                pool.rows(),
                pool.classes()
            )));
        }
        Ok(Samples {
            pool,
            layout,
            samples: t,
            classes: c,
            rows: n as u64,
            first_row: 0,
        })
    }

    /// Makes these rows `offset..` of a bigger pool: indices, exclusions
    /// and ties are then global.
    pub fn with_row_offset(mut self, offset: u64) -> Self {
        self.first_row = offset;
        self
    }

    /// Rows N.
    pub fn rows(&self) -> u64 {
        self.rows
    }
    /// Samples T.
    pub fn samples(&self) -> usize {
        self.samples
    }
    /// Classes C.
    pub fn classes(&self) -> usize {
        self.classes
    }
    /// The layout.
    pub fn layout(&self) -> SampleLayout {
        self.layout
    }
    /// The global index of the first row.
    pub fn first_row(&self) -> u64 {
        self.first_row
    }

    /// The first sample file, for messages.
    pub fn path(&self) -> &Path {
        self.pool.path()
    }
    /// Bytes of sample data.
    pub fn data_bytes(&self) -> u64 {
        self.pool.data_bytes()
    }
    /// Whether any value is stored as float64.
    pub fn has_f64(&self) -> bool {
        self.pool.has_f64()
    }
    /// Whether any value is stored as float16.
    pub fn has_f16(&self) -> bool {
        self.pool.has_f16()
    }

    /// Where sample `t` of local row `r` is stored: its file, and its row
    /// there (a 3-D file's rows are named in its own layout).
    pub(crate) fn locate(&self, t: usize, r: u64) -> (PathBuf, String) {
        match self.layout {
            SampleLayout::Tnc => {
                let (shard, local) = self.pool.locate(t as u64 * self.rows + r);
                let at = if self.pool.shards().len() > 1 {
                    format!("row {local}")
                } else {
                    format!("[{t}, {r}]")
                };
                (shard.path().to_path_buf(), at)
            }
            SampleLayout::Ntc => {
                let (shard, _) = self.pool.locate(r);
                (shard.path().to_path_buf(), format!("[{r}, {t}]"))
            }
        }
    }

    /// Local rows `start..end` in row-major order (each row's T samples of
    /// C values together) into `out`: as float32 (exact for float32 and
    /// float16 storage), or widened exactly to f64. A sample-major file's
    /// rows are placed straight from each shard's read.
    pub(crate) fn read<T: Value>(
        &self,
        start: u64,
        end: u64,
        bufs: &mut ReadBufs,
        out: &mut Vec<T>,
    ) -> Result<()> {
        let width = self.samples * self.classes;
        out.clear();
        out.resize((end - start) as usize * width, T::default());
        // Pool rows per pass, and the values each pool row holds.
        let (passes, w) = match self.layout {
            SampleLayout::Ntc => (1, width),
            SampleLayout::Tnc => (self.samples, self.classes),
        };
        for t in 0..passes {
            for (shard, span, first) in self.runs(t as u64 * self.rows, (start, end)) {
                T::with_rows(shard, span, w, bufs, &mut |rows| {
                    for (i, v) in rows.chunks_exact(w).enumerate() {
                        let o = (first + i) * width + t * w;
                        out[o..o + w].copy_from_slice(v);
                    }
                })?;
            }
        }
        Ok(())
    }

    /// The pieces of pool rows `base + start..base + end` that lie in one
    /// shard each (`base`: a sample's first pool row in a T x N x C
    /// layout, 0 in N x T x C): the shard, its local rows, and where the
    /// piece starts among `start..end`.
    fn runs(
        &self,
        base: u64,
        (start, end): (u64, u64),
    ) -> impl Iterator<Item = (&Shard<'_>, (u64, u64), usize)> {
        let mut at = base + start;
        std::iter::from_fn(move || {
            (at < base + end).then(|| {
                let (shard, local) = self.pool.locate(at);
                let take = (shard.rows() - local).min(base + end - at);
                let first = (at - base - start) as usize;
                at += take;
                (shard, (local, local + take), first)
            })
        })
    }
}

impl Samples<'_> {
    /// Each sample's local rows `start..end` borrowed as float32 straight
    /// from memory (a T x N x C float32 file, mapped, or a borrowed array),
    /// sample after sample; `None` where any of them is not.
    pub(crate) fn mapped_planes(&self, (start, end): (u64, u64)) -> Result<Option<Vec<&[f32]>>> {
        if self.layout != SampleLayout::Tnc {
            return Ok(None);
        }
        let mut planes = Vec::with_capacity(self.samples);
        for t in 0..self.samples as u64 {
            let (shard, local) = self.pool.locate(t * self.rows + start);
            let span = (local, local + (end - start));
            // The truncation check (a `stat`) once a file, on its last
            // plane, which reaches furthest: 20 planes of one file took
            // 3,849 of them for BALD over 1M rows.
            let last_in_file = t + 1 == self.samples as u64
                || !std::ptr::eq(shard, self.pool.locate((t + 1) * self.rows + start).0);
            match shard.mapped_f32(span, self.classes, last_in_file)? {
                Some(p) => planes.push(p),
                None => return Ok(None),
            }
        }
        Ok(Some(planes))
    }

    /// Local rows `start..end` as float32, sample-major into `out`: sample
    /// t's rows from `t · (end − start) · C`, each row's C values together.
    /// From a T x N x C file that is one read a sample (straight into
    /// `out` from a float32 file), where [`Samples::read`]'s row-major
    /// order costs a copy a row and sample.
    pub(crate) fn read_planes(
        &self,
        (start, end): (u64, u64),
        bufs: &mut ReadBufs,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        let (n, c, t_all) = ((end - start) as usize, self.classes, self.samples);
        // Every value is written below: no need to clear.
        out.resize(n * c * t_all, 0.0);
        let scratch = (&mut bufs.narrow, &mut bufs.raw);
        match self.layout {
            SampleLayout::Tnc => {
                for t in 0..t_all {
                    for (shard, span, first) in self.runs(t as u64 * self.rows, (start, end)) {
                        let o = t * n * c + first * c;
                        let dst = &mut out[o..o + (span.1 - span.0) as usize * c];
                        shard.read_f32_into(span, c, dst, (&mut *scratch.0, &mut *scratch.1))?;
                    }
                }
            }
            SampleLayout::Ntc => {
                for (shard, span, first) in self.runs(0, (start, end)) {
                    let rows = shard.rows_f32(span.0, span.1, t_all * c, scratch.0, scratch.1)?;
                    for (i, row) in rows.chunks_exact(t_all * c).enumerate() {
                        for (t, v) in row.chunks_exact(c).enumerate() {
                            let o = t * n * c + (first + i) * c;
                            out[o..o + c].copy_from_slice(v);
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// A value samples are read as.
pub(crate) trait Value: Copy + Default {
    /// Hands `f` local rows `span` of `shard` (`w` values a row) as this
    /// type.
    fn with_rows(
        shard: &Shard,
        span: (u64, u64),
        w: usize,
        bufs: &mut ReadBufs,
        f: &mut dyn FnMut(&[Self]),
    ) -> Result<()>;
}

impl Value for f32 {
    fn with_rows(
        shard: &Shard,
        (a, b): (u64, u64),
        w: usize,
        bufs: &mut ReadBufs,
        f: &mut dyn FnMut(&[f32]),
    ) -> Result<()> {
        f(&shard.rows_f32(a, b, w, &mut bufs.narrow, &mut bufs.raw)?);
        Ok(())
    }
}

impl Value for f64 {
    fn with_rows(
        shard: &Shard,
        (a, b): (u64, u64),
        w: usize,
        bufs: &mut ReadBufs,
        f: &mut dyn FnMut(&[f64]),
    ) -> Result<()> {
        if shard.dtype() == DType::F64 {
            f(&shard.rows_f64(a, b, w, &mut bufs.wide)?);
        } else {
            let rows = shard.rows_f32(a, b, w, &mut bufs.narrow, &mut bufs.raw)?;
            bufs.one.clear();
            bufs.one.extend(rows.iter().map(|&v| v as f64));
            f(&bufs.one);
        }
        Ok(())
    }
}

/// Buffers a reader reuses from chunk to chunk.
#[derive(Default)]
pub(crate) struct ReadBufs {
    narrow: Vec<f32>,
    wide: Vec<f64>,
    raw: Vec<u8>,
    one: Vec<f64>,
}
