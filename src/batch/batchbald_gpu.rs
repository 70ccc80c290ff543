//! BatchBALD on the GPU (WGSL in `shaders/batchbald.wgsl`), with the CPU's
//! picks and scores bit for bit.
//!
//! The samples are read once, canonically (so every input form and dtype
//! the CPU takes), each row's conditional entropy is taken in f64 on the
//! way, and the rows go to the device as f32, where they stay. Each step
//! uploads the batch's configurations (the same [`Joint`] the CPU builds,
//! its weights rounded to f32) and computes every row's
//! `H(y_n | y_B)` in f32 in one submission: M' configurations times T·C
//! multiply-adds and C logarithms a row, the work the CPU's lazy bounds
//! avoid and a GPU does at once. [`Joint::gpu_interval`] bounds that
//! value's error, the same for every row; the host keeps every row whose
//! interval reaches the best lower end (and the canonical gain's own
//! rounding, [`Joint::slack`]), computes their canonical f64 gains, and
//! picks the largest, ties to the lower row: the CPU's argmax.
//!
//! Memory: the f32 samples on the device (4·T·C bytes a row, in spans of
//! one storage binding each), and on the host 13 bytes a row (the
//! conditional entropy, the f32 values read back, whether a row may be
//! picked) and the configurations.

use bytemuck::{Pod, Zeroable};
use rayon::prelude::*;

use super::Clock;
use super::batchbald::{Engine, Scratch, better, check};
use crate::backend::Progress;
use crate::backend::gpu::{Gpu, bind_buffers, module, program};
use crate::disagree::read_canonical;
use crate::error::{Error, Result};
use crate::job::Job;
use crate::pool::Samples;
use crate::pool::samples::ReadBufs;
use crate::score::batchbald::{Joint, conditional_entropy};
use crate::select::Selection;

/// Threads a row (`THREADS` in the shader).
const THREADS: usize = 64;

/// Rows read and uploaded at once.
const UPLOAD_BYTES: u64 = 8 << 20;

#[repr(C)]
#[derive(Clone, Copy, Default, Pod, Zeroable)]
struct Params {
    rows: u32,
    samples: u32,
    classes: u32,
    configs: u32,
    nx: u32,
    first: u32,
    _pad: [u32; 2],
}

/// A span of rows on the device, with its own parameters.
struct Span {
    first: u64,
    rows: u64,
    params: wgpu::Buffer,
    bind: wgpu::BindGroup,
}

/// The samples resident on the device, and the buffers a step reads.
struct Resident<'g> {
    gpu: &'g Gpu,
    samples: usize,
    classes: usize,
    spans: Vec<Span>,
    weights: wgpu::Buffer,
    omega: wgpu::Buffer,
    out: wgpu::Buffer,
    staging: wgpu::Buffer,
    kernel: wgpu::ComputePipeline,
    rows: u64,
    /// The largest sum of a sample's C probabilities over the rows.
    s_max: f64,
}

/// The batch BatchBALD picks from `samples` on `gpu`: the CPU's picks and
/// scores ([`super::batchbald::select`]).
pub(super) fn select(
    gpu: &Gpu,
    samples: &Samples,
    job: &Job,
    progress: &dyn Progress,
) -> Result<Selection> {
    let n = samples.rows();
    let g0 = samples.first_row();
    let mut blocked = vec![false; n as usize];
    for &g in job.exclusions.within(g0, g0 + n) {
        blocked[(g - g0) as usize] = true;
    }
    let excluded = job.exclusions.within(g0, g0 + n).len() as u64;
    check(samples, job, excluded)?;
    let engine = Engine::new(samples, job, progress);
    let mut clock = Clock::default();
    let mut cond = vec![0.0; n as usize];
    let resident = Resident::new(gpu, samples, job, engine.budget, &mut cond)?;
    clock.lap("upload");
    let mut picks: Vec<(u64, f64)> = Vec::with_capacity(job.k);
    let mut picked: Vec<Vec<f64>> = Vec::with_capacity(job.k);
    let mut cond_b = 0.0;
    let mut rescored = 0u64;
    for _ in 0..job.k {
        if progress.cancelled() {
            return Err(Error::Cancelled);
        }
        let joint = engine.joint(&picked);
        let values = resident.step(&joint)?;
        let e = joint.gpu_interval(resident.s_max, THREADS);
        clock.lap("gpu steps");
        let gain = |i: usize| values[i] as f64 - cond[i];
        let lowest = (0..n as usize)
            .filter(|&i| !blocked[i])
            .map(|i| gain(i) - e)
            .fold(f64::NEG_INFINITY, f64::max);
        // A row out of reach: its exact gain is below the best lower end,
        // and its canonical gain (within the slack of its exact one) below
        // that row's canonical gain.
        let reach = lowest - 2.0 * joint.slack();
        let contenders: Vec<u64> = (0..n as usize)
            // A value that is not a number (never from a sound kernel)
            // leaves the row to the canonical gain too.
            .filter(|&i| !blocked[i] && (gain(i).is_nan() || gain(i) + e >= reach))
            .map(|i| i as u64)
            .collect();
        rescored += contenders.len() as u64;
        let scored: Vec<Result<Option<(f64, u64)>>> = contenders
            .par_iter()
            .map_init(Scratch::default, |s, &r| {
                read_canonical(
                    samples,
                    job,
                    (r, r + 1),
                    (&mut s.bufs, &mut s.stored),
                    &mut s.probs,
                )?;
                Ok(Some((joint.gain(&s.probs, cond[r as usize], &mut s.r), r)))
            })
            .collect();
        let mut best = None;
        for s in scored {
            best = better(best, s?);
        }
        clock.lap("re-check");
        progress.advance(engine.pass_bytes);
        let Some((gain, row)) = best else { break };
        blocked[row as usize] = true;
        picks.push((g0 + row, joint.entropy() - cond_b + gain));
        cond_b += cond[row as usize];
        picked.push(engine.row(row)?);
    }
    let mut sel = Selection::picked(job, picks, n, excluded, rescored);
    sel.phases = clock.phases;
    Ok(sel)
}

impl<'g> Resident<'g> {
    /// Reads every row canonically (naming a bad row as the CPU does),
    /// writes its conditional entropy into `cond`, and uploads it as f32;
    /// the step buffers are sized for `budget` configurations.
    fn new(
        gpu: &'g Gpu,
        samples: &Samples,
        job: &Job,
        budget: usize,
        cond: &mut [f64],
    ) -> Result<Resident<'g>> {
        use wgpu::BufferUsages as U;
        let (t, c, n) = (samples.samples(), samples.classes(), samples.rows());
        let row_bytes = (t * c * 4) as u64;
        let binding = gpu
            .limits
            .max_storage_buffer_binding_size
            .min(gpu.limits.max_buffer_size);
        if row_bytes > binding {
            return Err(Error::Gpu(format!(
                "{}: a row's {t} x {c} samples ({row_bytes} bytes) exceed the adapter's storage binding ({binding} bytes); use --device cpu",
                samples.path().display()
            )));
        }
        let span_rows = (binding / row_bytes).max(1);
        // Every configuration set fits: at most M while exact, ⌊M/T⌋·T
        // (at least T) when sampled, padded to 64.
        let configs = budget.max(t).div_ceil(64) * 64;
        let storage = U::STORAGE | U::COPY_DST;
        let weights = gpu.buffer("batchbald weights", (configs * t * 4) as u64, storage);
        let omega = gpu.buffer("batchbald omega", (configs * 4) as u64, storage);
        let out = gpu.buffer("batchbald out", n * 4, U::STORAGE | U::COPY_SRC);
        let staging = gpu.buffer("batchbald staging", n * 4, U::MAP_READ | U::COPY_DST);
        let (layout, kernel) = kernel(gpu);
        let mut spans = Vec::new();
        let mut s_max = 0.0f64;
        let mut first = 0;
        while first < n {
            let rows = span_rows.min(n - first);
            let buf = gpu.buffer("batchbald samples", rows * row_bytes, storage);
            let span = (first, first + rows);
            s_max = s_max.max(upload_span(gpu, samples, job, span, &buf, cond)?);
            let params = gpu.buffer(
                "batchbald params",
                std::mem::size_of::<Params>() as u64,
                U::UNIFORM | U::COPY_DST,
            );
            let bind = bind_buffers(
                &gpu.device,
                &layout,
                "alpool batchbald",
                &[&params, &buf, &weights, &omega, &out],
            );
            spans.push(Span {
                first,
                rows,
                params,
                bind,
            });
            first += rows;
        }
        gpu.wait()?;
        Ok(Resident {
            gpu,
            samples: t,
            classes: c,
            spans,
            weights,
            omega,
            out,
            staging,
            kernel,
            rows: n,
            s_max: s_max * (1.0 + 1e-12),
        })
    }

    /// Every row's `H(y_n | y_B)` in f32 under `joint`'s configurations.
    fn step(&self, joint: &Joint) -> Result<Vec<f32>> {
        let gpu = self.gpu;
        let (w, omega) = joint.gpu_lanes();
        let configs = omega.len();
        gpu.queue
            .write_buffer(&self.weights, 0, bytemuck::cast_slice(w));
        gpu.queue
            .write_buffer(&self.omega, 0, bytemuck::cast_slice(&omega));
        let max_x = gpu.limits.max_compute_workgroups_per_dimension.max(1) as u64;
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        for span in &self.spans {
            let nx = span.rows.min(max_x);
            let params = Params {
                rows: span.rows as u32,
                samples: self.samples as u32,
                classes: self.classes as u32,
                configs: configs as u32,
                nx: nx as u32,
                first: span.first as u32,
                _pad: [0; 2],
            };
            gpu.queue
                .write_buffer(&span.params, 0, bytemuck::bytes_of(&params));
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("alpool batchbald"),
                timestamp_writes: None,
            });
            pass.set_pipeline(&self.kernel);
            pass.set_bind_group(0, &span.bind, &[]);
            pass.dispatch_workgroups(nx as u32, span.rows.div_ceil(nx) as u32, 1);
        }
        gpu.queue.submit([enc.finish()]);
        let bits = gpu.read_u32(&self.out, self.rows as usize, &self.staging)?;
        Ok(bits.into_iter().map(f32::from_bits).collect())
    }
}

/// The kernel, after the shared logarithm, and its bind group layout.
fn kernel(gpu: &Gpu) -> (wgpu::BindGroupLayout, wgpu::ComputePipeline) {
    let module = module(
        &gpu.device,
        "batchbald.wgsl",
        &[
            include_str!("../../shaders/ln.wgsl"),
            include_str!("../../shaders/batchbald.wgsl"),
        ],
    );
    let (layout, [kernel]) = program(
        &gpu.device,
        &module,
        "alpool batchbald",
        &[true, true, true, false],
        ["gain"],
    );
    (layout, kernel)
}

/// Rows `span` of `samples`, canonical (a bad row named as the CPU names
/// it), into `buf` as f32, 8 MiB at a time; their conditional entropies
/// into `cond` (indexed by row). Returns the largest sum of a sample's
/// probabilities.
fn upload_span(
    gpu: &Gpu,
    samples: &Samples,
    job: &Job,
    (first, end): (u64, u64),
    buf: &wgpu::Buffer,
    cond: &mut [f64],
) -> Result<f64> {
    let (t, c) = (samples.samples(), samples.classes());
    let row_bytes = (t * c * 4) as u64;
    let step = (UPLOAD_BYTES / row_bytes).max(1);
    let (mut bufs, mut stored, mut probs) = (ReadBufs::default(), Vec::new(), Vec::new());
    let mut flat: Vec<f32> = Vec::new();
    let mut s_max = 0.0f64;
    let mut at = first;
    while at < end {
        let to = (at + step).min(end);
        read_canonical(samples, job, (at, to), (&mut bufs, &mut stored), &mut probs)?;
        let sums = probs
            .par_chunks_exact(t * c)
            .zip(cond[at as usize..to as usize].par_iter_mut())
            .map(|(p, h)| {
                *h = conditional_entropy(p, c);
                p.chunks_exact(c)
                    .map(|s| s.iter().sum::<f64>())
                    .fold(0.0f64, f64::max)
            })
            .reduce(|| 0.0, f64::max);
        s_max = s_max.max(sums);
        flat.clear();
        flat.extend(probs.iter().map(|&v| v as f32));
        gpu.queue
            .write_buffer(buf, (at - first) * row_bytes, bytemuck::cast_slice(&flat));
        at = to;
    }
    Ok(s_max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::{Pool, SampleLayout};
    use crate::query::{BatchStrategy, InputForm};
    use crate::score::batchbald::tests::{INTERVAL_CASES, row};

    use crate::backend::gpu::test_gpu as gpu;

    /// T x N x C samples (sample-major), each row the CPU fast path's test
    /// row: softmaxes from flat to peaked (down to 1e-26), zeros, values
    /// below float32's normal range (which a GPU may flush), sums 3e-4 off
    /// 1; a row its zeros took far from 1 is scaled back.
    fn samples(t: usize, n: usize, c: usize, seed: u64) -> Vec<f32> {
        let mut rng = seed;
        let mut x = vec![0f32; t * n * c];
        for i in 0..n {
            let scale = [0.1, 2.0, 8.0, 30.0][i % 4];
            let p = row(t, c, scale, (i / 4 % 4) as u64, &mut rng);
            for (s, ps) in p.chunks_exact(c).enumerate() {
                let sum: f64 = ps.iter().sum();
                let fix = if (sum - 1.0).abs() > 1e-3 { sum } else { 1.0 };
                for (j, &v) in ps.iter().enumerate() {
                    // A sample whose every class was zeroed: uniform.
                    let v = if sum > 0.0 { v / fix } else { 1.0 / c as f64 };
                    x[(s * n + i) * c + j] = v as f32;
                }
            }
        }
        x
    }

    /// The kernel's value for every row lies within `Joint::gpu_interval`
    /// of the canonical `H(y_n | y_B)`, exact and sampled, over few and
    /// many classes and samples; and the interval is narrow enough to
    /// leave most rows to the GPU.
    #[test]
    fn the_kernels_values_lie_within_the_proven_interval() {
        let Some(g) = gpu() else { return };
        let mut worst = 0.0f64;
        for (case, (t, c, picks, budget)) in INTERVAL_CASES.into_iter().enumerate() {
            let n = 300;
            let x = samples(t, n, c, case as u64);
            let pool = Pool::from_f32(&x, c).unwrap();
            let s = Samples::from_pool(pool, [t, n, c], SampleLayout::Tnc).unwrap();
            let job = Job::new(BatchStrategy::BatchBald, InputForm::probs(), 1);
            let mut cond = vec![0.0; n];
            let resident = Resident::new(&g, &s, &job, budget, &mut cond).unwrap();
            let (mut bufs, mut stored, mut p) = (ReadBufs::default(), Vec::new(), Vec::new());
            read_canonical(&s, &job, (0, n as u64), (&mut bufs, &mut stored), &mut p).unwrap();
            let rows: Vec<&[f64]> = p.chunks_exact(t * c).collect();
            let batch: Vec<Vec<f64>> = (0..picks).map(|j| rows[5 + 11 * j].to_vec()).collect();
            let joint = Joint::new(&batch, t, c, budget, 9);
            let values = resident.step(&joint).unwrap();
            let e = joint.gpu_interval(resident.s_max, THREADS);
            assert!(e < 2e-4, "case {case}: the interval is {e} wide");
            let mut r = Vec::new();
            for (i, row) in rows.iter().enumerate() {
                let want = joint.gain(row, 0.0, &mut r);
                let off = (values[i] as f64 - want).abs();
                assert!(
                    off <= e + joint.slack(),
                    "case {case}, row {i}: {} against {want} ± {e}",
                    values[i]
                );
                worst = worst.max(off / e);
            }
        }
        // Proven, not fitted: the error seen stays well inside.
        assert!(
            worst < 0.5,
            "the kernel's error reached {worst} of its bound"
        );
    }
}
