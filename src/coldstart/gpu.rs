//! The cold-start strategies' float32 distances on the GPU (WGSL in
//! `shaders/distances.wgsl`): Lloyd's assignments for TypiClust and the
//! `kmeans` baseline, and ProbCover's δ-ball pairs and nearest rows of
//! another cluster.
//!
//! The embeddings are uploaded once, in slabs that fit the adapter's
//! storage bindings, and stay on the device. Each request runs one kernel
//! per slab (per pair of slabs for ProbCover) and reads back float32
//! values; [`super::kmeans`] and [`super::probcover`] decide from them with
//! the float32 bound, exactly as from the CPU's, and re-check the rest in
//! f64. The seeding, the means, the graph and the strategies' own picks
//! stay on the host.

use std::time::{Duration, Instant};

use super::kmeans::{Distances32, Near};
use crate::backend::Phases;
use crate::backend::gpu::{Gpu, bind_buffers, chunk_rows, program};
use crate::batch::EMBED_LIMIT;
use crate::batch::gpu::upload_rows;
use crate::error::{Error, Result};
use crate::pool::Pool;

/// A slab of rows resident on the device.
struct Slab {
    /// Global index of its first row, and its rows.
    first: u32,
    rows: u32,
    emb: wgpu::Buffer,
    params: wgpu::Buffer,
}

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    dim: u32,
    others: u32,
    stride: u32,
    a0: u32,
    b0: u32,
    cap: u32,
    _pad: u32,
    skip: f32,
    surely: f32,
    _pad2: u32,
    _pad3: u32,
}

/// Pair slots per row of the first `edges` dispatch (at least 4,096 in
/// all): grown when a slab pair finds more, which then runs again.
const FIRST_CAP_PER_ROW: u64 = 16;

/// Whose output a dispatch binds, besides the slab and the others.
struct Outputs<'b> {
    ids: &'b wgpu::Buffer,
    near: &'b wgpu::Buffer,
    found: &'b wgpu::Buffer,
    far: &'b wgpu::Buffer,
}

/// The embeddings on the device.
pub(crate) struct Resident<'g> {
    gpu: &'g Gpu,
    dim: usize,
    rows: u64,
    slabs: Vec<Slab>,
    layout: wgpu::BindGroupLayout,
    kernels: [wgpu::ComputePipeline; 3],
    /// Bound to the bindings a kernel does not use, one each (a buffer
    /// may not be bound both read-only and writable in one dispatch).
    spare: [wgpu::Buffer; 4],
    /// The pair list, grown as needed.
    found: std::sync::Mutex<(wgpu::Buffer, u64)>,
    /// Time spent uploading, in the kernels, and reading back.
    clock: std::sync::Mutex<(Duration, Duration, Duration)>,
}

const ASSIGN: usize = 0;
const EDGES: usize = 1;
const NEAREST_OTHER: usize = 2;

impl<'g> Resident<'g> {
    /// Uploads every row of `emb` (validating it), `chunk` rows a slab at
    /// most (0: what one binding holds).
    pub fn new(gpu: &'g Gpu, emb: &Pool, chunk: u64) -> Result<Resident<'g>> {
        let dim = emb.classes();
        // No float32 distance may overflow (the shader's F32_MAX means
        // "none").
        if dim as f64 * (2.0 * EMBED_LIMIT).powi(2) >= f32::MAX as f64 {
            return Err(Error::Gpu(format!(
                "{dim}-dimensional embeddings are too wide for the GPU's float32 distances; use --device cpu"
            )));
        }
        // Pairs carry a flag in the top bit of the later row.
        if emb.rows() >= 1 << 31 {
            return Err(Error::Gpu(format!(
                "the GPU's distances index rows in 31 bits: {} rows is too many; use --device cpu",
                emb.rows()
            )));
        }
        let t0 = Instant::now();
        let per_slab = chunk_rows(gpu, dim, chunk).min(u32::MAX as u64 / 3);
        use wgpu::BufferUsages as U;
        let mut slabs = Vec::new();
        let mut start = 0;
        while start < emb.rows() {
            let end = (start + per_slab).min(emb.rows());
            slabs.push(Slab {
                first: start as u32,
                rows: (end - start) as u32,
                emb: upload_rows(gpu, "alpool embeddings", emb, emb, start..end)?,
                params: gpu.buffer("alpool distance params", 48, U::UNIFORM | U::COPY_DST),
            });
            start = end;
        }
        let module = gpu
            .device
            .create_shader_module(wgpu::include_wgsl!("../../shaders/distances.wgsl"));
        let (layout, kernels) = program(
            &gpu.device,
            &module,
            "alpool distances",
            &[true, true, true, false, false, false],
            ["assign", "edges", "nearest_other"],
        );
        let cap = (FIRST_CAP_PER_ROW * emb.rows()).clamp(4096, 1 << 24);
        let found = gpu.buffer(
            "alpool pairs",
            (2 + 2 * cap) * 4,
            U::STORAGE | U::COPY_SRC | U::COPY_DST,
        );
        gpu.wait()?;
        Ok(Resident {
            gpu,
            dim,
            rows: emb.rows(),
            slabs,
            layout,
            kernels,
            spare: std::array::from_fn(|_| gpu.buffer("alpool unused", 16, U::STORAGE)),
            found: std::sync::Mutex::new((found, cap)),
            clock: std::sync::Mutex::new((t0.elapsed(), Duration::ZERO, Duration::ZERO)),
        })
    }

    /// What the device did, as a selection's GPU phases; `refined` rows
    /// or pairs were re-checked in f64 by the host.
    pub fn phases(&self, refined: u64) -> Phases {
        let (upload, score, readback) = *self.clock.lock().unwrap_or_else(|e| e.into_inner());
        Phases {
            upload,
            score,
            readback,
            chunks: self.slabs.len() as u64,
            candidates: refined,
            ..Phases::default()
        }
    }

    /// Runs `kernel` over slab `a` against `others` (`b0` its first global
    /// row, `count` its rows), and waits.
    fn run(
        &self,
        kernel: usize,
        a: &Slab,
        others: (&wgpu::Buffer, u32, u32),
        out: &Outputs,
        extra: Params,
    ) -> Result<()> {
        let gpu = self.gpu;
        let t0 = Instant::now();
        let (gx, gy, stride) = gpu.grid(a.rows);
        let params = Params {
            rows: a.rows,
            dim: self.dim as u32,
            others: others.2,
            stride,
            a0: a.first,
            b0: others.1,
            ..extra
        };
        gpu.queue
            .write_buffer(&a.params, 0, bytemuck::bytes_of(&params));
        let all = [
            &a.params, &a.emb, others.0, out.ids, out.near, out.found, out.far,
        ];
        let bind = bind_buffers(&gpu.device, &self.layout, "alpool distances", &all);
        gpu.dispatch_groups(&self.kernels[kernel], &bind, (gx, gy));
        gpu.wait()?;
        self.clock.lock().unwrap_or_else(|e| e.into_inner()).1 += t0.elapsed();
        Ok(())
    }

    /// `len` u32s of `buf`, timed as readback.
    fn read(&self, buf: &wgpu::Buffer, len: usize) -> Result<Vec<u32>> {
        let t0 = Instant::now();
        let staging = self.gpu.buffer(
            "alpool readback",
            len as u64 * 4,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        );
        let out = self.gpu.read_u32(buf, len, &staging)?;
        self.clock.lock().unwrap_or_else(|e| e.into_inner()).2 += t0.elapsed();
        Ok(out)
    }

    /// A storage buffer of `bytes`, refused beyond one binding (`what`
    /// names its contents).
    fn storage_of(&self, label: &str, bytes: u64, what: &str) -> Result<wgpu::Buffer> {
        let gpu = self.gpu;
        let limit = gpu
            .limits
            .max_storage_buffer_binding_size
            .min(gpu.limits.max_buffer_size);
        if bytes > limit {
            return Err(Error::Gpu(format!(
                "{what} need a {} MiB buffer, above this GPU's largest ({} MiB); use --device cpu",
                bytes >> 20,
                limit >> 20
            )));
        }
        use wgpu::BufferUsages as U;
        Ok(gpu.buffer(label, bytes, U::STORAGE | U::COPY_DST | U::COPY_SRC))
    }

    /// A storage buffer holding `data`.
    fn storage(&self, label: &str, data: &[u8], what: &str) -> Result<wgpu::Buffer> {
        let b = self.storage_of(label, data.len() as u64, what)?;
        self.gpu.queue.write_buffer(&b, 0, data);
        Ok(b)
    }

    /// The pairs of slab `a` against slab `b` (b not before a).
    fn slab_pairs(
        &self,
        a: &Slab,
        b: &Slab,
        skip: f32,
        surely: f32,
        out: &mut Vec<(u32, u32, bool)>,
    ) -> Result<()> {
        let mut found = self.found.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let (buf, cap) = &*found;
            self.gpu
                .queue
                .write_buffer(buf, 0, bytemuck::cast_slice(&[0u32, 0]));
            let outs = Outputs {
                ids: &self.spare[0],
                near: &self.spare[1],
                found: buf,
                far: &self.spare[3],
            };
            let extra = Params {
                cap: *cap as u32,
                skip,
                surely,
                ..Params::default()
            };
            self.run(EDGES, a, (&b.emb, b.first, b.rows), &outs, extra)?;
            let head = self.read(buf, 2)?;
            let (count, spilled) = (head[0] as u64, head[1] != 0);
            if spilled && count <= *cap {
                return Err(Error::Gpu(
                    "δ joins over 4 billion pairs of rows in one slab pair: give a smaller --delta"
                        .into(),
                ));
            }
            if count > *cap {
                let what = format!("{count} pairs within δ");
                let grown = self.storage_of("alpool pairs", (2 + 2 * count) * 4, &what)?;
                *found = (grown, count);
                continue;
            }
            let raw = self.read(buf, 2 + 2 * count as usize)?;
            for p in raw[2..].chunks_exact(2) {
                let (i, j) = (p[0], p[1] & 0x7fff_ffff);
                // A pair the kernel cannot have written means a faulty
                // device: refuse it rather than index past the pool.
                if i >= j || j as u64 >= self.rows {
                    return Err(Error::Gpu(format!(
                        "the device listed the pair ({i}, {j}) of a pool of {} rows",
                        self.rows
                    )));
                }
                out.push((i, j, p[1] >> 31 == 1));
            }
            return Ok(());
        }
    }
}

impl Distances32 for Resident<'_> {
    fn nearest(&self, centres: &[f32]) -> Result<Vec<Near>> {
        let k = centres.len() / self.dim;
        let what = format!("{k} centres x {} dimensions", self.dim);
        let means = self.storage("alpool centres", bytemuck::cast_slice(centres), &what)?;
        let mut out = Vec::with_capacity(self.rows as usize);
        for slab in &self.slabs {
            let near = self.gpu.buffer(
                "alpool nearest centres",
                slab.rows as u64 * 12,
                wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            );
            let outs = Outputs {
                ids: &self.spare[0],
                near: &near,
                found: &self.spare[2],
                far: &self.spare[3],
            };
            self.run(
                ASSIGN,
                slab,
                (&means, 0, k as u32),
                &outs,
                Params::default(),
            )?;
            let raw = self.read(&near, slab.rows as usize * 3)?;
            out.extend(raw.chunks_exact(3).map(|v| Near {
                best: v[0],
                least: f32::from_bits(v[1]),
                second: f32::from_bits(v[2]),
            }));
        }
        Ok(out)
    }

    fn pairs_below(&self, skip: f32, surely: f32) -> Result<Vec<(u32, u32, bool)>> {
        let mut out = Vec::new();
        for (i, a) in self.slabs.iter().enumerate() {
            for b in &self.slabs[i..] {
                self.slab_pairs(a, b, skip, surely, &mut out)?;
            }
        }
        Ok(out)
    }

    fn nearest_other(&self, ids: &[u32]) -> Result<Vec<f32>> {
        let what = format!("the cluster ids of {} rows", ids.len());
        let ids = self.storage("alpool cluster ids", bytemuck::cast_slice(ids), &what)?;
        let mut out = Vec::with_capacity(self.rows as usize);
        for a in &self.slabs {
            let start = vec![f32::MAX; a.rows as usize];
            let far = self.storage(
                "alpool nearest other",
                bytemuck::cast_slice(&start),
                "a slab's distances",
            )?;
            let outs = Outputs {
                ids: &ids,
                near: &self.spare[1],
                found: &self.spare[2],
                far: &far,
            };
            for b in &self.slabs {
                self.run(
                    NEAREST_OTHER,
                    a,
                    (&b.emb, b.first, b.rows),
                    &outs,
                    Params::default(),
                )?;
            }
            let raw = self.read(&far, a.rows as usize)?;
            // F32_MAX is the shader's "none": no distance reaches it.
            out.extend(raw.into_iter().map(|v| match f32::from_bits(v) {
                f32::MAX => f32::INFINITY,
                m => m,
            }));
        }
        Ok(out)
    }
}
