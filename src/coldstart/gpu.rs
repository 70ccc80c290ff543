//! Lloyd's assignments on the GPU (WGSL in `shaders/kmeans.wgsl`), for
//! TypiClust and the `kmeans` baseline.
//!
//! The embeddings are uploaded once, in slabs that fit the adapter's
//! storage bindings, and stay on the device for every iteration. Each
//! iteration uploads the centres and reads back, per row, its first
//! nearest centre by float32 distance, that distance and the nearest of
//! the others; [`super::kmeans`] decides each row from those two with the
//! float32 bound, exactly as for the CPU's distances, and re-checks the
//! rest in f64. The seeding, the means and the strategies' own picks stay
//! on the host.

use std::time::{Duration, Instant};

use super::kmeans::{Near, Nearest32};
use crate::backend::Phases;
use crate::backend::gpu::{Gpu, chunk_rows, program};
use crate::batch::EMBED_LIMIT;
use crate::batch::gpu::upload_rows;
use crate::error::{Error, Result};
use crate::pool::Pool;

/// A slab of rows resident on the device.
struct Slab {
    rows: u32,
    emb: wgpu::Buffer,
    near: wgpu::Buffer,
    params: wgpu::Buffer,
}

/// The embeddings on the device, ready for assignments.
pub(crate) struct Lloyd<'g> {
    gpu: &'g Gpu,
    dim: usize,
    slabs: Vec<Slab>,
    staging: wgpu::Buffer,
    layout: wgpu::BindGroupLayout,
    assign: wgpu::ComputePipeline,
    /// Time spent uploading, assigning and reading back.
    clock: std::sync::Mutex<(Duration, Duration, Duration)>,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    dim: u32,
    centres: u32,
    stride: u32,
}

impl<'g> Lloyd<'g> {
    /// Uploads every row of `emb` (validating it), `chunk` rows a slab at
    /// most (0: what one binding holds).
    pub fn new(gpu: &'g Gpu, emb: &Pool, chunk: u64) -> Result<Lloyd<'g>> {
        let dim = emb.classes();
        // No float32 distance may overflow (the shader's F32_MAX means "no
        // other centre").
        if dim as f64 * (2.0 * EMBED_LIMIT).powi(2) >= f32::MAX as f64 {
            return Err(Error::Gpu(format!(
                "{dim}-dimensional embeddings are too wide for the GPU's float32 distances; use --device cpu"
            )));
        }
        let t0 = Instant::now();
        let per_slab = chunk_rows(gpu, dim, chunk).min(u32::MAX as u64 / 3);
        use wgpu::BufferUsages as U;
        let mut slabs = Vec::new();
        let mut start = 0;
        while start < emb.rows() {
            let end = (start + per_slab).min(emb.rows());
            let rows = (end - start) as u32;
            slabs.push(Slab {
                rows,
                emb: upload_rows(gpu, "alpool k-means rows", emb, emb, start..end)?,
                near: gpu.buffer(
                    "alpool nearest centres",
                    rows as u64 * 12,
                    U::STORAGE | U::COPY_SRC,
                ),
                params: gpu.buffer("alpool k-means params", 16, U::UNIFORM | U::COPY_DST),
            });
            start = end;
        }
        let widest = slabs.iter().map(|s| s.rows as u64).max().unwrap_or(1);
        let staging = gpu.buffer(
            "alpool k-means readback",
            widest * 12,
            U::MAP_READ | U::COPY_DST,
        );
        let module = gpu
            .device
            .create_shader_module(wgpu::include_wgsl!("../../shaders/kmeans.wgsl"));
        let (layout, [assign]) = program(
            &gpu.device,
            &module,
            "alpool k-means",
            &[true, true, false],
            ["assign"],
        );
        gpu.wait()?;
        Ok(Lloyd {
            gpu,
            dim,
            slabs,
            staging,
            layout,
            assign,
            clock: std::sync::Mutex::new((t0.elapsed(), Duration::ZERO, Duration::ZERO)),
        })
    }

    /// What the device did, as a selection's GPU phases; `refined` rows
    /// were re-checked in f64 by the host.
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
}

impl Nearest32 for Lloyd<'_> {
    fn nearest(&self, centres: &[f32]) -> Result<Vec<Near>> {
        let gpu = self.gpu;
        let k = centres.len() / self.dim;
        let bytes = centres.len() as u64 * 4;
        let limit = gpu
            .limits
            .max_storage_buffer_binding_size
            .min(gpu.limits.max_buffer_size);
        if bytes > limit {
            return Err(Error::Gpu(format!(
                "{k} centres x {} dimensions need a {} MiB buffer, above this GPU's largest ({} MiB); use --device cpu",
                self.dim,
                bytes >> 20,
                limit >> 20
            )));
        }
        let means = gpu.buffer(
            "alpool centres",
            bytes,
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        );
        gpu.queue
            .write_buffer(&means, 0, bytemuck::cast_slice(centres));
        let mut out = Vec::with_capacity(self.slabs.iter().map(|s| s.rows as usize).sum());
        let (mut score, mut readback) = (Duration::ZERO, Duration::ZERO);
        for slab in &self.slabs {
            let t0 = Instant::now();
            let (gx, gy, stride) = gpu.grid(slab.rows);
            let params = Params {
                rows: slab.rows,
                dim: self.dim as u32,
                centres: k as u32,
                stride,
            };
            gpu.queue
                .write_buffer(&slab.params, 0, bytemuck::bytes_of(&params));
            let entries = [&slab.params, &slab.emb, &means, &slab.near];
            let bind = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("alpool k-means"),
                layout: &self.layout,
                entries: &entries
                    .iter()
                    .enumerate()
                    .map(|(i, b)| wgpu::BindGroupEntry {
                        binding: i as u32,
                        resource: b.as_entire_binding(),
                    })
                    .collect::<Vec<_>>(),
            });
            gpu.dispatch_groups(&self.assign, &bind, (gx, gy));
            gpu.wait()?;
            let t1 = Instant::now();
            score += t1 - t0;
            let raw = gpu.read_u32(&slab.near, slab.rows as usize * 3, &self.staging)?;
            out.extend(raw.chunks_exact(3).map(|v| Near {
                best: v[0],
                least: f32::from_bits(v[1]),
                second: f32::from_bits(v[2]),
            }));
            readback += t1.elapsed();
        }
        let mut clock = self.clock.lock().unwrap_or_else(|e| e.into_inner());
        clock.1 += score;
        clock.2 += readback;
        Ok(out)
    }
}
