//! Feature pools, and selection straight from them: N x D feature shards
//! (.npy, float32, float16, float64, or uint8 images read as [0, 1]) are
//! walked in blocks of rows; each tile of a block is read (a positioned
//! read into that thread's buffer), converted and checked by the thread
//! that then runs it through the model, and the block's probabilities are
//! scored and offered to one exact top k. (The files are also mapped, for
//! a dataset's scattered rows.) No N x C matrix exists anywhere: memory is
//! one block's probabilities, a tile buffer per thread, and k, whatever N
//! is. On the GPU (`gpu.rs`) the layers run there too.
//!
//! Why the result is exactly `alpool predict` followed by `alpool select`:
//! the model's float32 probabilities of a row do not depend on which rows
//! share its block (`tests/suite/learner.rs` checks it), so each block's
//! probabilities are the bits `predict` writes; each block's k best are
//! taken under the global ranking (the block is a pool at its global row
//! offset), and the global k best rows are each among their own block's k
//! best — the argument of [`crate::part`].

#[cfg(feature = "gpu")]
mod gpu;
mod views;

use std::path::{Path, PathBuf};

use memmap2::Mmap;
use rayon::prelude::*;

use crate::backend::{self, Backend, Progress, RowJob};
use crate::error::{Error, Result};
use crate::job::Job;
use crate::learner::fused::FillRows;
use crate::learner::{ColumnStats, McPass, Mlp, TILE_ROWS};
use crate::pool::npy::{self, DType};
use crate::pool::{Pool, SampleLayout, Samples, map_matrices};
use crate::query::RowProblem;
use crate::select::{Blocks, Selection};
pub(crate) use views::{ModelViews, SampleView, Space};

/// The dtypes a feature file may have.
pub const FEATURE_DTYPES: &[DType] = &[DType::F32, DType::F16, DType::F64, DType::U8];

/// Feature bytes per block when the caller does not choose: large enough to
/// keep both cores busy in the model's products, small enough that the
/// buffers stay a few tens of MiB at any width.
const BLOCK_BYTES: usize = 64 << 20;

/// `rows` rounded up to whole inference tiles: blocks then cut the rows of
/// a file exactly where `predict_proba` over the whole file cuts its tiles,
/// so each row comes out the same bits (see [`crate::learner::TILE_ROWS`]).
fn tiles(rows: usize) -> usize {
    rows.max(1).div_ceil(TILE_ROWS) * TILE_ROWS
}

thread_local! {
    /// Each thread's buffer for the stored bytes of rows it converts.
    static READ_BYTES: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

struct FeatureShard {
    path: PathBuf,
    /// For positioned reads of blocks and tiles.
    file: std::fs::File,
    /// For a dataset's scattered rows (`row`, `gather_into`).
    map: Mmap,
    dtype: DType,
    offset: usize,
    rows: u64,
    first_row: u64,
}

/// One or more memory-mapped N x D feature files: shards of one pool.
pub struct FeaturePool {
    shards: Vec<FeatureShard>,
    dim: usize,
    rows: u64,
    block_rows: usize,
}

impl FeaturePool {
    /// Opens and checks every file's header and size; reads no data.
    pub fn open<P: AsRef<Path>>(paths: &[P]) -> Result<FeaturePool> {
        let (files, dim) = map_matrices(
            paths,
            FEATURE_DTYPES,
            "features must be float32, float16, float64 or uint8",
            &crate::pool::as_matrix,
        )?;
        let rows = files.iter().map(|f| f.rows).sum();
        let shards = files
            .into_iter()
            .map(|f| {
                Ok(FeatureShard {
                    file: std::fs::File::open(&f.path).map_err(|e| Error::io(&f.path, e))?,
                    path: f.path,
                    map: f.map,
                    dtype: f.header.dtype,
                    offset: f.header.data_offset,
                    rows: f.rows,
                    first_row: f.first_row,
                })
            })
            .collect::<Result<_>>()?;
        Ok(FeaturePool {
            shards,
            dim,
            rows,
            block_rows: tiles(BLOCK_BYTES / (dim.max(1) * 4)),
        })
    }

    /// Rows per block, rounded up to whole inference tiles (results never
    /// depend on it).
    pub fn with_block_rows(mut self, rows: usize) -> FeaturePool {
        self.block_rows = tiles(rows);
        self
    }

    /// Makes these files rows `offset..` of a bigger pool (one machine's
    /// shard): indices, exclusions and the random strategy's hash are then
    /// global.
    pub fn with_row_offset(mut self, offset: u64) -> FeaturePool {
        for s in &mut self.shards {
            s.first_row += offset;
        }
        self
    }

    /// Rows across all feature shards.
    pub fn rows(&self) -> u64 {
        self.rows
    }
    /// The global index of the first row (0 unless
    /// [`FeaturePool::with_row_offset`]).
    pub fn first_row(&self) -> u64 {
        self.shards.first().map_or(0, |s| s.first_row)
    }
    /// Features per row.
    pub fn dim(&self) -> usize {
        self.dim
    }
    /// The first file, for messages.
    pub fn path(&self) -> &Path {
        &self.shards[0].path
    }
    /// Bytes of feature data across all files.
    pub fn data_bytes(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.rows * (self.dim * s.dtype.size()) as u64)
            .sum()
    }

    /// The blocks: (shard, local start, local end), never straddling files.
    fn blocks(&self) -> impl Iterator<Item = (usize, u64, u64)> + '_ {
        let step = self.block_rows as u64;
        self.shards.iter().enumerate().flat_map(move |(i, s)| {
            (0..s.rows.div_ceil(step)).map(move |b| (i, b * step, ((b + 1) * step).min(s.rows)))
        })
    }

    /// Rows `start..end` of shard `i` as f32 in `out`, read and converted
    /// in parallel; a NaN or infinite value is an error naming the file,
    /// row and column.
    fn read_block(&self, i: usize, start: u64, end: u64, out: &mut Vec<f32>) -> Result<()> {
        let d = self.dim.max(1);
        out.resize((end - start) as usize * self.dim, 0.0);
        const ROWS: u64 = 1024;
        let first_bad = out
            .par_chunks_mut(ROWS as usize * d)
            .enumerate()
            .map(|(c, o)| {
                let a = start + c as u64 * ROWS;
                self.read_rows(i, a, o)
            })
            .find_first(|r| r.is_err());
        first_bad.unwrap_or(Ok(()))
    }

    /// Rows `start..` of shard `i` converted into `out` (as many rows as
    /// it holds) and checked: the first NaN or infinite value is an
    /// error naming the file, row and column. Positioned reads, not the
    /// map: the kernel's copy leaves the rows in this core's cache for the
    /// check and the model, with no page faults and nothing left resident
    /// (measured 5% faster over a 3.1 GB float32 pool, 20 MB RSS instead
    /// of 85 MB).
    fn read_rows(&self, i: usize, start: u64, out: &mut [f32]) -> Result<()> {
        let s = &self.shards[i];
        let at = (s.offset + start as usize * self.dim * s.dtype.size()) as u64;
        if s.dtype == DType::F32 && cfg!(target_endian = "little") {
            self.read_at(i, at, bytemuck::cast_slice_mut(out))?;
        } else {
            READ_BYTES.with_borrow_mut(|bytes| {
                bytes.resize(out.len() * s.dtype.size(), 0);
                self.read_at(i, at, bytes)?;
                npy::features_into(s.dtype, bytes, out);
                Ok::<(), Error>(())
            })?;
        }
        // uint8 pixels are always finite.
        if s.dtype == DType::U8 {
            return Ok(());
        }
        self.check_finite(i, start, out)
    }

    /// Fills `buf` from byte `at` of shard `i`'s file; a file cut short
    /// since it was opened is [`Error::Shrank`].
    fn read_at(&self, i: usize, at: u64, buf: &mut [u8]) -> Result<()> {
        let s = &self.shards[i];
        crate::pool::read_exact_at(&s.file, &s.path, at, buf)
    }

    /// An error naming the first NaN or infinite value of `x` (rows
    /// `start..` of shard `i`). The scan is branch-free over blocks of 64
    /// values, so it runs at memory speed; only a bad block is searched.
    fn check_finite(&self, i: usize, start: u64, x: &[f32]) -> Result<()> {
        let bad_block = x.chunks(64).position(|c| {
            c.iter().fold(0u32, |acc, v| {
                acc | ((v.to_bits() & 0x7f80_0000 == 0x7f80_0000) as u32)
            }) != 0
        });
        let Some(b) = bad_block else {
            return Ok(());
        };
        let s = &self.shards[i];
        let d = self.dim;
        match x
            .iter()
            .skip(b * 64)
            .position(|v| !v.is_finite())
            .map(|p| p + b * 64)
        {
            None => Ok(()),
            Some(at) => {
                let row = start + (at / d.max(1)) as u64;
                Err(Error::BadRow {
                    path: s.path.clone(),
                    row,
                    global: s.first_row + row,
                    problem: RowProblem::NotFinite {
                        col: at % d.max(1),
                        value: x[at].into(),
                    },
                })
            }
        }
    }

    /// Whether every file holds uint8 images (read as [0, 1]): `auto`
    /// feature scaling leaves those as they are.
    pub fn unit_images(&self) -> bool {
        self.shards.iter().all(|s| s.dtype == DType::U8)
    }

    /// The features of the listed global rows, gathered row-major as f32.
    pub fn gather(&self, rows: &[usize]) -> Result<Vec<f32>> {
        let mut out = vec![0f32; rows.len() * self.dim];
        let base = self.shards.first().map_or(0, |s| s.first_row);
        // Positioned reads, not the map: scattered faults on a sequentially
        // advised map pull in far more than the rows (1.5 GB of resident
        // pages for 1,000 rows of a 7.8 GB pool, measured).
        for (&r, o) in rows.iter().zip(out.chunks_exact_mut(self.dim.max(1))) {
            let r = r as u64;
            if r < base || r >= base + self.rows {
                return Err(Error::Config(format!(
                    "row {r} is outside the feature pool's rows {base}..{}",
                    base + self.rows
                )));
            }
            let (i, local) = self.locate(r);
            self.read_rows(i, local, o)?;
        }
        Ok(out)
    }

    /// Advises the maps for scattered reads of rows (a dataset's gathers,
    /// round after round), not one sequential pass: the pages stay mapped
    /// once read.
    pub(crate) fn for_random_access(self) -> FeaturePool {
        for s in &self.shards {
            let _ = s.map.advise(memmap2::Advice::Normal);
        }
        self
    }

    /// An error naming the first NaN or infinite value, read block by block
    /// (uint8 needs no check).
    pub(crate) fn check_all_finite(&self) -> Result<()> {
        let mut x = Vec::new();
        for (i, start, end) in self.blocks() {
            if self.shards[i].dtype != DType::U8 {
                self.read_block(i, start, end, &mut x)?;
            }
        }
        Ok(())
    }

    /// Global row `r` as f32: in place for aligned float32, else converted.
    /// Unchecked: for pools checked once by [`FeaturePool::check_all_finite`]
    /// and rows known to exist (it panics on a row past the end).
    pub(crate) fn row(&self, r: usize) -> std::borrow::Cow<'_, [f32]> {
        let (dtype, bytes) = self.row_bytes(r);
        match (dtype, bytemuck::try_cast_slice(bytes)) {
            (DType::F32, Ok(x)) if cfg!(target_endian = "little") => std::borrow::Cow::Borrowed(x),
            _ => std::borrow::Cow::Owned(npy::features_f32(dtype, bytes)),
        }
    }

    /// Appends the listed global rows to `out` as f32, from the maps, like
    /// [`FeaturePool::row`] (unchecked, for checked pools).
    pub(crate) fn gather_into(&self, rows: &[usize], out: &mut Vec<f32>) {
        for &r in rows {
            let (dtype, bytes) = self.row_bytes(r);
            let at = out.len();
            out.resize(at + self.dim, 0.0);
            npy::features_into(dtype, bytes, &mut out[at..]);
        }
    }

    /// The stored bytes of global row `r`, and their dtype.
    fn row_bytes(&self, r: usize) -> (DType, &[u8]) {
        let (i, local) = self.locate(r as u64);
        let s = &self.shards[i];
        let size = self.dim * s.dtype.size();
        let a = s.offset + local as usize * size;
        (s.dtype, &s.map[a..a + size])
    }

    /// The shard holding global row `r`, and the row's index in it.
    fn locate(&self, r: u64) -> (usize, u64) {
        let i = self.shards.partition_point(|s| s.first_row + s.rows <= r);
        (i, r - self.shards[i].first_row)
    }

    /// Per-column statistics of every row, one block at a time (memory is
    /// one block, whatever the pool's size).
    pub fn column_stats(&self) -> Result<ColumnStats> {
        let mut stats = ColumnStats::new(self.dim);
        let mut x = Vec::new();
        for (i, start, end) in self.blocks() {
            self.read_block(i, start, end, &mut x)?;
            stats.merge(&ColumnStats::of_matrix(&x, self.dim, None));
        }
        Ok(stats)
    }

    /// An error unless `model` takes rows of this pool's width.
    fn check_model(&self, model: &Mlp) -> Result<()> {
        if model.inputs() != self.dim {
            return Err(Error::Config(format!(
                "{}: {} features per row, but the model takes {}",
                self.path().display(),
                self.dim,
                model.inputs()
            )));
        }
        Ok(())
    }

    /// Pieces of at most `rows` rows: (shard, local start, local end).
    #[cfg(feature = "gpu")]
    fn chunks(&self, rows: u64) -> impl Iterator<Item = (usize, u64, u64)> + '_ {
        self.shards.iter().enumerate().flat_map(move |(i, s)| {
            (0..s.rows.div_ceil(rows)).map(move |b| (i, b * rows, ((b + 1) * rows).min(s.rows)))
        })
    }

    /// The model's float32 probabilities of the listed global rows, in
    /// order, with the bits `predict` gives them: a row in a full inference
    /// tile comes out the same in any full tile, so those rows run packed
    /// into full tiles; a row of a file's short last tile runs with that
    /// whole tile, as `predict` runs it.
    pub fn probabilities_of(&self, model: &Mlp, rows: &[u64]) -> Result<Vec<f32>> {
        let c = model.classes();
        let mut out = vec![0f32; rows.len() * c];
        let mut full: Vec<(usize, usize)> = Vec::new();
        let mut tails: Vec<(usize, u64, usize)> = Vec::new();
        let base = self.shards.first().map_or(0, |s| s.first_row);
        for (at, &r) in rows.iter().enumerate() {
            if r < base || r >= base + self.rows {
                return Err(Error::Config(format!(
                    "row {r} is outside the feature pool's rows {base}..{}",
                    base + self.rows
                )));
            }
            let (i, local) = self.locate(r);
            let tile = local / TILE_ROWS as u64 * TILE_ROWS as u64;
            if tile + TILE_ROWS as u64 <= self.shards[i].rows {
                full.push((at, r as usize));
            } else {
                tails.push((i, local, at));
            }
        }
        if !full.is_empty() {
            // Padded to whole tiles with copies of the first row.
            let mut list: Vec<usize> = full.iter().map(|&(_, r)| r).collect();
            list.resize(tiles(list.len()), list[0]);
            let p = model.predict_proba(&self.gather(&list)?)?;
            for (j, &(at, _)) in full.iter().enumerate() {
                out[at * c..(at + 1) * c].copy_from_slice(&p[j * c..(j + 1) * c]);
            }
        }
        tails.sort_unstable();
        for group in tails.chunk_by(|a, b| a.0 == b.0) {
            let s = &self.shards[group[0].0];
            let tile = s.rows / TILE_ROWS as u64 * TILE_ROWS as u64;
            let mut x = Vec::new();
            self.read_block(group[0].0, tile, s.rows, &mut x)?;
            let p = model.predict_proba(&x)?;
            for &(_, local, at) in group {
                let j = (local - tile) as usize;
                out[at * c..(at + 1) * c].copy_from_slice(&p[j * c..(j + 1) * c]);
            }
        }
        Ok(out)
    }

    /// Runs `model` over every block in order, handing each block's global
    /// first row and float32 probabilities to `each`.
    pub fn predict_blocks(
        &self,
        model: &Mlp,
        progress: &dyn Progress,
        each: &mut dyn FnMut(u64, &[f32]) -> Result<()>,
    ) -> Result<()> {
        self.check_model(model)?;
        let mut probs = Vec::new();
        for (i, start, end) in self.blocks() {
            if progress.cancelled() {
                return Err(Error::Cancelled);
            }
            // Each tile of rows is converted and checked by the thread that
            // then runs it through the model.
            probs.resize((end - start) as usize * model.classes(), 0.0);
            let d = self.dim;
            model.predict_proba_filled(&mut probs, &|first, count, x| {
                let a = start + first as u64;
                x.resize(count * d, 0.0);
                self.read_rows(i, a, x)?;
                Ok(None)
            })?;
            each(self.shards[i].first_row + start, &probs)?;
            progress.advance((end - start) * (self.dim * self.shards[i].dtype.size()) as u64);
        }
        Ok(())
    }
}

/// Where a block's T samples come from: the members of a committee, or T
/// MC-dropout passes of one model.
#[derive(Clone, Copy)]
pub enum Members<'a> {
    /// Each model's probabilities are one sample.
    Committee(&'a [Mlp]),
    /// T passes of one model with dropout kept on ([`McPass`]), the masks
    /// seeded by `seed`.
    Dropout {
        /// The model, trained with dropout.
        model: &'a Mlp,
        /// T.
        passes: usize,
        /// The masks' seed.
        seed: u64,
    },
}

impl Members<'_> {
    /// T.
    pub fn len(&self) -> usize {
        match self {
            Members::Committee(m) => m.len(),
            Members::Dropout { passes, .. } => *passes,
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first model (the only one, for dropout).
    pub fn first(&self) -> Option<&Mlp> {
        match self {
            Members::Committee(m) => m.first(),
            Members::Dropout { model, .. } => Some(model),
        }
    }

    /// The classes every sample holds, checked.
    fn classes(&self) -> Result<usize> {
        match self {
            Members::Committee(models) => committee_classes(models),
            Members::Dropout { model, passes, .. } => {
                if *passes < 2 {
                    return Err(Error::Config(format!(
                        "MC dropout needs at least 2 passes to disagree, got {passes} (--mc-samples)"
                    )));
                }
                let rate = model.config().dropout;
                if !(rate > 0.0 && rate < 1.0) {
                    return Err(Error::Config(format!(
                        "MC dropout keeps the model's dropout on at inference, but this model was trained with dropout {rate}: train it with --dropout P (0 < P < 1)"
                    )));
                }
                Ok(model.classes())
            }
        }
    }

    /// Every sample's probabilities of the rows `fill` writes,
    /// sample-major (T x rows x C).
    fn predict<'f>(&self, out: &mut [f32], fill: &FillRows<'f, Error>) -> Result<()> {
        match self {
            Members::Committee(models) => {
                let plane = out.len() / models.len().max(1);
                for (m, o) in models.iter().zip(out.chunks_exact_mut(plane.max(1))) {
                    m.predict_proba_filled(o, fill)?;
                }
                Ok(())
            }
            Members::Dropout {
                model,
                seed,
                passes,
            } => {
                let mc = McPass {
                    pass: 0,
                    seed: *seed,
                    rate: model.config().dropout,
                    softmax: true,
                };
                model.predict_mc_passes_filled((out, *passes), fill, mc)
            }
        }
    }
}

impl FeaturePool {
    /// Runs every member over every block in order, handing each block's
    /// global first row, its rows and the members' probabilities of it,
    /// sample-major (T x rows x C), to `each`. The block is read once for
    /// all members; each member's probabilities are the bits `predict`
    /// (or one MC pass of the whole pool) gives them.
    pub fn committee_blocks(
        &self,
        members: Members,
        progress: &dyn Progress,
        each: &mut SamplesSink,
    ) -> Result<()> {
        let c = self.check_members(members)?;
        let (mut x, mut samples) = (Vec::new(), Vec::new());
        let d = self.dim;
        let t = members.len();
        for (i, start, end) in self.blocks() {
            if progress.cancelled() {
                return Err(Error::Cancelled);
            }
            self.read_block(i, start, end, &mut x)?;
            let rows = (end - start) as usize;
            let g0 = self.shards[i].first_row + start;
            samples.resize(t * rows * c, 0.0);
            let x = &x;
            members.predict(&mut samples, &|first, count, _| {
                Ok(Some(&x[first * d..(first + count) * d]))
            })?;
            each(g0, rows, &samples)?;
            progress.advance((end - start) * (d * self.shards[i].dtype.size()) as u64);
        }
        Ok(())
    }
}

impl FeaturePool {
    /// The classes every member predicts, each member checked against the
    /// features.
    fn check_members(&self, members: Members) -> Result<usize> {
        let c = members.classes()?;
        if let Members::Committee(models) = members {
            for m in models {
                self.check_model(m)?;
            }
        }
        if let Some(m) = members.first() {
            self.check_model(m)?;
        }
        Ok(c)
    }

    /// The members' samples of the listed global rows, in order,
    /// sample-major (T x rows x C): the bits [`FeaturePool::committee_blocks`]
    /// gives them (a row's outputs do not depend on its neighbours, and an
    /// MC-dropout pass masks every row alike). The rows are read once and
    /// go through each member in one call.
    pub fn samples_of(&self, members: Members, rows: &[u64]) -> Result<Vec<f32>> {
        let c = self.check_members(members)?;
        let (t, n, d) = (members.len(), rows.len(), self.dim);
        let mut out = vec![0f32; t * n * c];
        if n == 0 {
            return Ok(out);
        }
        let listed: Vec<usize> = rows.iter().map(|&r| r as usize).collect();
        let x = self.gather(&listed)?;
        members.predict(&mut out, &|first, count, _| {
            Ok(Some(&x[first * d..(first + count) * d]))
        })?;
        Ok(out)
    }
}

/// Takes a committee's block: its global first row, its rows, and the
/// members' probabilities of it (T x rows x C).
pub type SamplesSink<'a> = dyn FnMut(u64, usize, &[f32]) -> Result<()> + 'a;

/// The classes every member of a committee predicts.
fn committee_classes(models: &[Mlp]) -> Result<usize> {
    let first = models
        .first()
        .ok_or_else(|| Error::Config("a committee needs at least 2 models".into()))?;
    if models.len() < 2 {
        return Err(Error::Config(
            "a committee of 1 model cannot disagree; give at least 2 (--model a b ...)".into(),
        ));
    }
    if let Some((i, m)) = models
        .iter()
        .enumerate()
        .find(|(_, m)| m.classes() != first.classes())
    {
        return Err(Error::Config(format!(
            "committee member {} predicts {} classes, member 1 {}; every member predicts the same classes",
            i + 1,
            m.classes(),
            first.classes()
        )));
    }
    Ok(first.classes())
}

/// One block of a committee's samples as [`Samples`] at global row `g0`.
pub(crate) fn block_samples(
    samples: &[f32],
    t: usize,
    rows: usize,
    g0: u64,
) -> Result<Samples<'_>> {
    let c = samples.len() / (t * rows).max(1);
    let pool = Pool::from_f32(samples, c)?.named("<the committee's outputs>");
    Ok(Samples::from_pool(pool, [t, rows, c], SampleLayout::Tnc)?.with_row_offset(g0))
}

/// A disagreement strategy's exact top k over the samples a committee
/// makes of `features`, block by block ([`Blocks`] merges them: the whole
/// array's selection, with no T x N x C array held).
pub(crate) fn select_committee(
    models: Members,
    features: &FeaturePool,
    job: &Job,
    progress: &dyn Progress,
) -> Result<Selection> {
    let mut blocks = Blocks::new(job, features.rows())?;
    let t = models.len();
    features.committee_blocks(models, progress, &mut |g0, rows, samples| {
        let s = block_samples(samples, t, rows, g0)?;
        let block_job = blocks.job_for(g0, rows as u64);
        blocks.add(crate::disagree::select(&s, &block_job, &backend::Silent)?);
        Ok(())
    })?;
    Ok(blocks.finish())
}

/// [`select_committee`] on the GPU, for a row-wise disagreement strategy
/// (`gpu.rs`, `select_members`): the same picks.
pub(crate) fn select_members_on_gpu(
    g: &crate::backend::gpu::Gpu,
    members: Members,
    features: &FeaturePool,
    job: &Job,
    progress: &dyn Progress,
) -> Result<(Selection, backend::Phases)> {
    #[cfg(feature = "gpu")]
    return gpu::select_members(g, members, features, job, progress);
    #[cfg(not(feature = "gpu"))]
    {
        let _ = (members, features, job, progress);
        g.never()
    }
}

/// Every row's disagreement score over a committee's samples, in row
/// order, block by block to `sink`.
pub(crate) fn score_committee(
    models: Members,
    features: &FeaturePool,
    job: &Job,
    progress: &dyn Progress,
    sink: &mut dyn FnMut(&[f64]) -> Result<()>,
) -> Result<()> {
    let t = models.len();
    features.committee_blocks(models, progress, &mut |g0, rows, samples| {
        let s = block_samples(samples, t, rows, g0)?;
        crate::disagree::score_each(&s, job, &backend::Silent, sink)
    })
}

/// A multi-label strategy's exact top k over the sigmoid outputs a
/// multi-label `model` makes of `features`, block by block on `backend`:
/// the same rows as predicting every row and selecting from the file.
pub(crate) fn select_multilabel(
    backend: Backend,
    model: &Mlp,
    features: &FeaturePool,
    job: &Job,
    progress: &dyn Progress,
) -> Result<Selection> {
    let mut blocks = Blocks::new(job, features.rows())?;
    let l = model.classes();
    features.predict_blocks(model, progress, &mut |g0, probs| {
        let pool = Pool::from_f32(probs, l)?
            .named("<model output>")
            .with_row_offset(g0);
        let block_job = blocks.job_for(g0, pool.rows());
        let sel = crate::multilabel::select_on(backend, &pool, &block_job, &backend::Silent)?;
        blocks.add(sel.0);
        Ok(())
    })?;
    Ok(blocks.finish())
}

/// Every row's multi-label score over a multi-label `model`'s outputs of
/// `features`, in row order, block by block to `sink`.
pub(crate) fn score_multilabel(
    model: &Mlp,
    features: &FeaturePool,
    job: &Job,
    progress: &dyn Progress,
    sink: &mut dyn FnMut(&[f64]) -> Result<()>,
) -> Result<()> {
    let l = model.classes();
    features.predict_blocks(model, progress, &mut |g0, probs| {
        let pool = Pool::from_f32(probs, l)?.with_row_offset(g0);
        crate::multilabel::score_each(&pool, job, &backend::Silent, sink)
    })
}

/// The k most informative rows of the pool `model` makes of `features`,
/// exactly what predicting every row and selecting from the probabilities
/// gives, without holding the probabilities (see the module docs). On the
/// GPU the model's layers, the softmax, the score and the top k all run
/// there (its phases come back too), and the candidates are re-scored on
/// the CPU.
pub(crate) fn select_on(
    backend: Backend,
    model: &Mlp,
    features: &FeaturePool,
    job: &Job,
    progress: &dyn Progress,
) -> Result<(Selection, Option<backend::Phases>)> {
    #[cfg(feature = "gpu")]
    if let Backend::Gpu(gpu) = backend {
        let (sel, phases) = gpu::select(gpu, model, features, &RowJob::of(job)?, progress)?;
        return Ok((sel, Some(phases)));
    }
    #[cfg(not(feature = "gpu"))]
    if let Backend::Gpu(gpu) = backend {
        gpu.never();
    }
    let mut blocks = Blocks::new(job, features.rows())?;
    let c = model.classes();
    features.predict_blocks(model, progress, &mut |g0, probs| {
        let pool = Pool::from_f32(probs, c)?
            .named("<model output>")
            .with_row_offset(g0);
        let block_job = RowJob::of(&blocks.job_for(g0, pool.rows()))?;
        blocks.add(backend::select_on(backend, &pool, &block_job, &backend::Silent)?.0);
        Ok(())
    })?;
    Ok((blocks.finish(), None))
}
