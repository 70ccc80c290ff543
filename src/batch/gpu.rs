//! The GPU half of core-set, BADGE and igs (WGSL in `shaders/batch.wgsl`).
//!
//! The embeddings (and BADGE's float32 probabilities and per-row norms)
//! are uploaded once and stay on the device; each pick is one submission:
//! fold the newest centre into every row's float32 distance and write the
//! row's key bounds (`update`, core-set's or BADGE's), reduce the largest
//! lower bound (`reduce`), list the rows whose upper bound reaches it
//! (`collect`). Only that list comes back; the host re-checks it
//! canonically, exactly as for the CPU's contenders, so the picks are the
//! CPU's. If more rows qualify than the list holds (near-duplicates), the
//! bounds of every row come back instead.

use bytemuck::{Pod, Zeroable};

use super::{Bufs, Terms, Update, check_embedding_rows, read_rows};
use crate::backend::gpu::{Gpu, bind_buffers, program};
use crate::error::{Error, Result};
use crate::pool::Pool;

/// Candidate slots read back per pick.
const CAP: u32 = 4096;

/// Labeled centres folded in per pass over the pool.
const CENTRE_BLOCK: usize = 64;

#[repr(C)]
#[derive(Clone, Copy, Default, Pod, Zeroable)]
struct Params {
    rows: u32,
    dim: u32,
    classes: u32,
    first: u32,
    count: u32,
    t: u32,
    seed_lo: u32,
    seed_hi: u32,
    eps: f32,
    abs_err: f32,
    eta_a: f32,
    eta_e: f32,
    under: f32,
    emax: f32,
    gmax: f32,
    exp_rel: f32,
    stride: u32,
    cap: u32,
    kind: u32,
    _pad: u32,
}

/// The smallest f32 not below `x`.
fn up(x: f64) -> f32 {
    let f = x as f32;
    if (f as f64) < x { f.next_up() } else { f }
}

/// A pool resident on the device, with the state of one batch selection.
pub(crate) struct Resident<'g> {
    gpu: &'g Gpu,
    rows: u32,
    dim: u32,
    classes: u32,
    params: wgpu::Buffer,
    centres: wgpu::Buffer,
    info: wgpu::Buffer,
    mind: wgpu::Buffer,
    bounds: wgpu::Buffer,
    found: wgpu::Buffer,
    staging: wgpu::Buffer,
    bind: wgpu::BindGroup,
    update: wgpu::ComputePipeline,
    reduce: wgpu::ComputePipeline,
    collect: wgpu::ComputePipeline,
}

/// Rows `range` of `pool` as float32 in a new storage buffer, 8 MiB at a
/// time; embeddings (`pool` is `emb`) are validated on the way.
pub(crate) fn upload_rows(
    gpu: &Gpu,
    label: &str,
    pool: &Pool,
    emb: &Pool,
    range: std::ops::Range<u64>,
) -> Result<wgpu::Buffer> {
    use wgpu::BufferUsages as U;
    let width = pool.classes() as u64 * 4;
    let b = gpu.buffer(
        label,
        (range.end - range.start) * width,
        U::STORAGE | U::COPY_DST,
    );
    let mut bufs = Bufs::default();
    let step = ((8u64 << 20) / width).max(1);
    let mut start = range.start;
    while start < range.end {
        let end = (start + step).min(range.end);
        let vals = read_rows(pool, start, end, &mut bufs)?;
        if std::ptr::eq(pool, emb) {
            check_embedding_rows(emb, start, &vals)?;
        }
        let at = (start - range.start) * width;
        gpu.queue.write_buffer(&b, at, bytemuck::cast_slice(&vals));
        start = end;
    }
    Ok(b)
}

/// batch.wgsl's three kernels, and their bind group over `buffers`.
fn pipelines(
    gpu: &Gpu,
    buffers: &[&wgpu::Buffer; 9],
) -> (wgpu::BindGroup, [wgpu::ComputePipeline; 3]) {
    let module = gpu
        .device
        .create_shader_module(wgpu::include_wgsl!("../../shaders/batch.wgsl"));
    let (layout, kernels) = program(
        &gpu.device,
        &module,
        "alpool batch",
        &[true, true, true, true, false, false, false, false],
        ["update", "reduce", "collect"],
    );
    let bind = bind_buffers(&gpu.device, &layout, "alpool batch", buffers);
    (bind, kernels)
}

/// What a selection reads beside the embeddings.
#[derive(Clone, Copy)]
pub(crate) enum Side<'a> {
    /// Core-set: nothing.
    Nothing,
    /// BADGE: the float32 probabilities and per-row `[‖g‖², ‖e‖², ŷ bits, 0]`.
    Badge(&'a Pool<'a>, &'a [[f32; 4]]),
    /// igs, or gsy with no embeddings: each row's prediction as float32;
    /// each centre's target follows with [`Resident::set_target`].
    Igs(&'a [f32]),
}

/// The two buffers `side` reads: BADGE's probabilities and row info, or
/// igs's predictions and room for the centres' targets; stand-ins of 16
/// bytes for core-set.
fn side_buffers(
    gpu: &Gpu,
    emb: Option<&Pool>,
    rows: u64,
    side: Side,
    max_centres: usize,
) -> Result<(wgpu::Buffer, wgpu::Buffer)> {
    let store = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST;
    Ok(match (side, emb) {
        (Side::Badge(p, info), Some(emb)) => {
            let pb = upload_rows(gpu, "alpool probabilities", p, emb, 0..p.rows())?;
            let ib = gpu.buffer("alpool row info", rows * 16, store);
            gpu.queue.write_buffer(&ib, 0, bytemuck::cast_slice(info));
            (pb, ib)
        }
        (Side::Igs(preds), _) => {
            let pb = gpu.buffer("alpool predictions", rows * 4, store);
            gpu.queue.write_buffer(&pb, 0, bytemuck::cast_slice(preds));
            let tb = gpu.buffer("alpool targets", max_centres as u64 * 16, store);
            (pb, tb)
        }
        (Side::Nothing, _) => (
            gpu.buffer("alpool probabilities", 16, store),
            gpu.buffer("alpool row info", 16, store),
        ),
        (Side::Badge(..), None) => {
            return Err(Error::Gpu("BADGE reads embeddings".into()));
        }
    })
}

impl<'g> Resident<'g> {
    /// Uploads `emb` (validating every row on the way; none for gsy, whose
    /// rows have no distance term), what `side` adds, and the initial
    /// nearest-centre vector, one value a row (igs and gsy: the taken
    /// rows, and every row's bounds start at `F32_MAX`); room for
    /// `max_centres` centres.
    pub fn new(
        gpu: &'g Gpu,
        emb: Option<&Pool>,
        side: Side,
        mind: &[f32],
        max_centres: usize,
    ) -> Result<Resident<'g>> {
        let rows = mind.len() as u64;
        let dim = emb.map_or(0, |e| e.classes() as u64);
        let limit = gpu
            .limits
            .max_storage_buffer_binding_size
            .min(gpu.limits.max_buffer_size);
        let classes = match side {
            Side::Badge(p, _) => p.classes() as u64,
            _ => 1,
        };
        let widest = (rows * dim.max(classes).max(4) * 4).max(rows * 8);
        if widest > limit || rows >= u32::MAX as u64 {
            return Err(Error::Gpu(format!(
                "{} rows x {dim} embeddings need a {} MiB buffer, above this GPU's largest ({} MiB); use --device cpu",
                rows,
                widest >> 20,
                limit >> 20
            )));
        }
        use wgpu::BufferUsages as U;
        let store = U::STORAGE | U::COPY_DST;
        let emb_buf = match emb {
            Some(e) => upload_rows(gpu, "alpool embeddings", e, e, 0..rows)?,
            None => gpu.buffer("alpool embeddings", 16, store),
        };
        let (probs_buf, info_buf) = side_buffers(gpu, emb, rows, side, max_centres)?;
        let centres = gpu.buffer("alpool centres", max_centres as u64 * 4, store);
        let mind_buf = gpu.buffer("alpool nearest", rows * 4, store);
        gpu.queue
            .write_buffer(&mind_buf, 0, bytemuck::cast_slice(mind));
        let bounds = gpu.buffer(
            "alpool bounds",
            rows * 8,
            U::STORAGE | U::COPY_SRC | U::COPY_DST,
        );
        if let Side::Igs(_) = side {
            let start = vec![f32::MAX; rows as usize * 2];
            gpu.queue
                .write_buffer(&bounds, 0, bytemuck::cast_slice(&start));
        }
        let groups = gpu.grid(rows as u32).0 as u64 * gpu.grid(rows as u32).1 as u64;
        let wgmax = gpu.buffer("alpool group maxima", groups * 4, U::STORAGE);
        let found_len = (2 + CAP as u64) * 4;
        let found = gpu.buffer("alpool contenders", found_len, U::STORAGE | U::COPY_SRC);
        let staging = gpu.buffer(
            "alpool readback",
            found_len.max(rows * 8),
            U::MAP_READ | U::COPY_DST,
        );
        let params = gpu.buffer("alpool params", 80, U::UNIFORM | U::COPY_DST);

        let buffers = [
            &params, &emb_buf, &probs_buf, &info_buf, &centres, &mind_buf, &bounds, &wgmax, &found,
        ];
        let (bind, [update, reduce, collect]) = pipelines(gpu, &buffers);
        let r = Resident {
            gpu,
            rows: rows as u32,
            dim: dim as u32,
            classes: classes as u32,
            update,
            reduce,
            collect,
            params,
            centres,
            info: info_buf,
            mind: mind_buf,
            bounds,
            found,
            staging,
            bind,
        };
        gpu.wait()?;
        Ok(r)
    }

    /// Records that centre number `at` is row `row`, which can no longer be
    /// picked.
    pub fn add_centre(&self, at: usize, row: u64) {
        let q = &self.gpu.queue;
        q.write_buffer(
            &self.centres,
            at as u64 * 4,
            bytemuck::bytes_of(&(row as u32)),
        );
        q.write_buffer(&self.mind, row * 4, bytemuck::bytes_of(&-1f32));
    }

    /// igs: centre number `at`'s target, as float32 (the kernel bounds
    /// its rounding).
    pub fn set_target(&self, at: usize, target: f64) {
        let v = [target as f32, 0.0, 0.0, 0.0];
        self.gpu
            .queue
            .write_buffer(&self.info, at as u64 * 16, bytemuck::cast_slice(&v));
    }

    /// Folds the first `count` centres (the labeled rows) into every row,
    /// [`CENTRE_BLOCK`] a pass; the contenders after the last pass.
    pub fn update_all(&self, kind: Update, count: usize, terms: &Terms) -> Result<Vec<u64>> {
        let mut contenders = Vec::new();
        for first in (0..count).step_by(CENTRE_BLOCK) {
            let block = CENTRE_BLOCK.min(count - first);
            contenders = self.update(kind, first, block, terms)?;
        }
        Ok(contenders)
    }

    /// Folds centres `first .. first + count` into every row and returns
    /// the rows whose key could be the largest, ascending.
    pub fn update(
        &self,
        kind: Update,
        first: usize,
        count: usize,
        terms: &Terms,
    ) -> Result<Vec<u64>> {
        let (gx, gy, stride) = self.gpu.grid(self.rows);
        let params = Params {
            rows: self.rows,
            dim: self.dim,
            classes: self.classes,
            first: first as u32,
            count: count as u32,
            t: terms.t,
            seed_lo: terms.seed as u32,
            seed_hi: (terms.seed >> 32) as u32,
            eps: up(terms.eps),
            abs_err: up(terms.abs),
            eta_a: up(terms.eta_a),
            eta_e: up(terms.eta_e),
            under: up(terms.under),
            emax: up(terms.emax),
            gmax: up(terms.gmax),
            exp_rel: up(terms.exp_rel),
            stride,
            cap: CAP,
            kind: kind as u32,
            ..Default::default()
        };
        let reduce_params = Params {
            count: gx * gy,
            ..params
        };
        let gpu = self.gpu;
        // The steps read different parameters from one uniform, rewritten
        // before each submission (writes land in submission order).
        for (pipeline, p, groups) in [
            (&self.update, params, (gx, gy)),
            (&self.reduce, reduce_params, (1, 1)),
            (&self.collect, params, (gx, gy)),
        ] {
            gpu.queue
                .write_buffer(&self.params, 0, bytemuck::bytes_of(&p));
            gpu.dispatch_groups(pipeline, &self.bind, groups);
        }
        let head = gpu.read_u32(&self.found, 2 + CAP as usize, &self.staging)?;
        let n = head[0] as usize;
        if n <= CAP as usize {
            let mut rows: Vec<u64> = head[2..2 + n].iter().map(|&r| r as u64).collect();
            rows.sort_unstable();
            return Ok(rows);
        }
        // Too many to list: every row's bounds.
        let raw = gpu.read_u32(&self.bounds, self.rows as usize * 2, &self.staging)?;
        let bounds: Vec<(f64, f64)> = raw
            .chunks_exact(2)
            .map(|b| (f32::from_bits(b[0]) as f64, f32::from_bits(b[1]) as f64))
            .collect();
        Ok(Contenders::merge(vec![Contenders::of_chunk(0, &bounds)]))
    }
}

/// Rows whose key could be the largest, found chunk by chunk: each chunk
/// keeps its rows whose upper bound reaches the chunk's best lower bound,
/// a superset of those that reach the global one.
#[derive(Default)]
pub(crate) struct Contenders {
    best_lo: f64,
    rows: Vec<(u64, f64)>,
}

impl Contenders {
    /// From one chunk's bounds (`lo`, `hi`) per row; rows that cannot be
    /// picked have `hi < 0`.
    pub fn of_chunk(start: u64, bounds: &[(f64, f64)]) -> Contenders {
        let best_lo = bounds
            .iter()
            .filter(|b| b.1 >= 0.0)
            .map(|b| b.0)
            .fold(f64::NEG_INFINITY, f64::max);
        let rows = bounds
            .iter()
            .enumerate()
            .filter(|(_, b)| b.1 >= 0.0 && b.1 >= best_lo)
            .map(|(i, b)| (start + i as u64, b.1))
            .collect();
        Contenders { best_lo, rows }
    }

    /// The rows of all chunks that could hold the largest key, ascending.
    pub fn merge(parts: Vec<Contenders>) -> Vec<u64> {
        let best = parts
            .iter()
            .map(|p| p.best_lo)
            .fold(f64::NEG_INFINITY, f64::max);
        parts
            .into_iter()
            .flat_map(|p| p.rows)
            .filter(|&(_, hi)| hi >= best)
            .map(|(r, _)| r)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn workgroup_size_matches_the_shader() {
        let src = include_str!("../../shaders/batch.wgsl");
        assert!(src.contains(&format!("@workgroup_size({})", crate::backend::gpu::WG)));
    }
}
