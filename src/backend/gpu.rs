//! The GPU backend (wgpu, WGSL in `shaders/select.wgsl`).
//!
//! Per chunk of rows (sized to the adapter's buffer limits): upload the rows,
//! score them in f32, radix-select the chunk's k-th key with 8-bit histogram
//! passes (stopping once the boundary bucket is small), compact the rows
//! whose key is within twice the f32 error bound of it, and read back only
//! those (row, key) pairs. The host re-scores each returned row canonically
//! from the mapped pool and keeps the exact top k, as the CPU backend does,
//! so both return the same selection (see `select` for the rule).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytemuck::{Pod, Zeroable};
use wgpu::util::DeviceExt;

use super::{Job, Progress, canonical_ranked};
use crate::error::{Error, Result};
use crate::pool::Pool;
use crate::score::fast::gpu_bound;
use crate::score::{InputForm, Ranked, Strategy};
use crate::select::{Selection, TopK};

pub(crate) const WG: u32 = 256;

/// One adapter as `alpool devices` lists it.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    /// The adapter's name.
    pub name: String,
    /// Vulkan, Metal, DX12 or GL.
    pub backend: String,
    /// Discrete, integrated, virtual or CPU.
    pub device_type: String,
    /// The driver and its version.
    pub driver: String,
    /// The largest storage buffer one binding may hold.
    pub max_storage_buffer_binding_size: u64,
    /// The largest buffer.
    pub max_buffer_size: u64,
    /// Workgroups per dispatch dimension.
    pub max_compute_workgroups_per_dimension: u32,
    /// Whether the adapter is itself a CPU (lavapipe, llvmpipe).
    pub is_cpu: bool,
}

fn summarize(a: &wgpu::Adapter) -> AdapterSummary {
    let info = a.get_info();
    let limits = a.limits();
    AdapterSummary {
        name: info.name.clone(),
        backend: format!("{:?}", info.backend),
        device_type: format!("{:?}", info.device_type),
        driver: format!("{} {}", info.driver, info.driver_info)
            .trim()
            .to_string(),
        max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
        max_buffer_size: limits.max_buffer_size,
        max_compute_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
        is_cpu: info.device_type == wgpu::DeviceType::Cpu,
    }
}

fn adapters() -> Vec<wgpu::Adapter> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: wgpu::Backends::all(),
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
}

/// Every adapter wgpu finds.
pub fn list_adapters() -> Vec<AdapterSummary> {
    adapters().iter().map(summarize).collect()
}

/// Error-scope results and device loss, collected instead of panicking.
#[derive(Default)]
struct Faults(Mutex<Option<String>>);

impl Faults {
    fn set(&self, msg: String) {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        g.get_or_insert(msg);
    }
    fn check(&self) -> Result<()> {
        match self.0.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(m) => Err(Error::Gpu(m)),
            None => Ok(()),
        }
    }
}

/// A device with alpool's pipelines, built once and reused across chunks.
pub struct Gpu {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    layout: wgpu::BindGroupLayout,
    score: wgpu::ComputePipeline,
    histogram: wgpu::ComputePipeline,
    compact: wgpu::ComputePipeline,
    /// The adapter opened.
    pub adapter: AdapterSummary,
    pub(crate) limits: wgpu::Limits,
    faults: Arc<Faults>,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
struct Params {
    rows: u32,
    classes: u32,
    strategy: u32,
    input: u32,
    tol: f32,
    slack: f32,
    inv_temp: f32,
    inv_ln_b: f32,
    seed_lo: u32,
    seed_hi: u32,
    g0_lo: u32,
    g0_hi: u32,
    stride: u32,
    shift: u32,
    prefix: u32,
    prefix_mask: u32,
    floor_key: u32,
    cut_key: u32,
    cap: u32,
    _pad: u32,
}

impl Gpu {
    /// Opens the first adapter whose name contains `name` (case-insensitive),
    /// or the first non-CPU adapter, or any adapter.
    pub fn new(name: Option<&str>) -> Result<Gpu> {
        let all = adapters();
        if all.is_empty() {
            return Err(Error::Gpu(
                "no GPU adapter found; install a Vulkan driver (e.g. Debian's mesa-vulkan-drivers for the software one) or use --device cpu".into(),
            ));
        }
        let adapter = match name {
            Some(n) => {
                let n = n.to_lowercase();
                all.iter()
                    .find(|a| a.get_info().name.to_lowercase().contains(&n))
                    .ok_or_else(|| {
                        let names: Vec<String> = all
                            .iter()
                            .map(|a| {
                                format!("{:?} ({:?})", a.get_info().name, a.get_info().backend)
                            })
                            .collect();
                        Error::Gpu(format!(
                            "no adapter matches {n:?}; found: {}",
                            names.join(", ")
                        ))
                    })?
            }
            None => all
                .iter()
                .find(|a| a.get_info().device_type != wgpu::DeviceType::Cpu)
                .unwrap_or(&all[0]),
        };
        let summary = summarize(adapter);
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("alpool"),
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| Error::Gpu(format!("cannot open {}: {e}", summary.name)))?;

        let faults = Arc::new(Faults::default());
        {
            let f = faults.clone();
            device.on_uncaptured_error(Arc::new(move |e| f.set(format!("{e}"))));
            let f = faults.clone();
            device.set_device_lost_callback(move |reason, msg| {
                f.set(format!("device lost ({reason:?}): {msg}"))
            });
        }

        let module = device.create_shader_module(wgpu::include_wgsl!("../../shaders/select.wgsl"));
        let (layout, [score, histogram, compact]) = program(
            &device,
            &module,
            "alpool select",
            &[true, false, false, true, false, false, false, false],
            ["score", "histogram", "compact"],
        );
        let gpu = Gpu {
            score,
            histogram,
            compact,
            device,
            queue,
            layout,
            adapter: summary,
            limits,
            faults,
        };
        gpu.faults.check()?;
        Ok(gpu)
    }

    /// Rows per chunk: what one storage binding holds, and what 65,535 x
    /// 65,535 workgroups can index.
    pub fn max_chunk_rows(&self, classes: usize) -> u64 {
        let bytes = self
            .limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size);
        (bytes / (classes as u64 * 4).max(1)).clamp(1, 1 << 24)
    }

    pub(crate) fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: None,
                timeout: Some(Duration::from_secs(600)),
            })
            .map_err(|e| Error::Gpu(format!("waiting for the device: {e}")))?;
        self.faults.check()
    }

    pub(crate) fn buffer(&self, label: &str, size: u64, usage: wgpu::BufferUsages) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: size.max(16).div_ceil(4) * 4,
            usage,
            mapped_at_creation: false,
        })
    }

    /// Copies `len` u32s from `src` and reads them on the host.
    pub(crate) fn read_u32(
        &self,
        src: &wgpu::Buffer,
        len: usize,
        staging: &wgpu::Buffer,
    ) -> Result<Vec<u32>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let bytes = (len * 4) as u64;
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(src, 0, staging, 0, bytes);
        self.queue.submit([enc.finish()]);
        let slice = staging.slice(..bytes);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        rx.recv()
            .map_err(|_| Error::Gpu("readback was dropped".into()))?
            .map_err(|e| Error::Gpu(format!("readback failed: {e}")))?;
        let out = {
            let view = slice
                .get_mapped_range()
                .map_err(|e| Error::Gpu(format!("readback failed: {e:?}")))?;
            bytemuck::cast_slice::<u8, u32>(&view).to_vec()
        };
        staging.unmap();
        Ok(out)
    }

    /// Workgroups in x and y for `rows` rows, and the rows per y step.
    pub(crate) fn grid(&self, rows: u32) -> (u32, u32, u32) {
        let groups = rows.div_ceil(WG).max(1);
        let x = groups.min(self.limits.max_compute_workgroups_per_dimension.max(1));
        (x, groups.div_ceil(x), x * WG)
    }

    fn dispatch(&self, pipeline: &wgpu::ComputePipeline, bind: &wgpu::BindGroup, rows: u32) {
        let (x, y, _) = self.grid(rows);
        self.dispatch_groups(pipeline, bind, (x, y));
    }

    /// One submission of `pipeline` over `groups` (x, y) workgroups.
    pub(crate) fn dispatch_groups(
        &self,
        pipeline: &wgpu::ComputePipeline,
        bind: &wgpu::BindGroup,
        (x, y): (u32, u32),
    ) {
        let mut enc = self.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("alpool"),
                timestamp_writes: None,
            });
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, bind, &[]);
            pass.dispatch_workgroups(x, y, 1);
        }
        self.queue.submit([enc.finish()]);
    }
}

/// One WGSL module's entry points as pipelines sharing one bind group
/// layout: binding 0 a uniform, binding i + 1 a storage buffer, read-only
/// where `read_only[i]` says so.
pub(crate) fn program<const N: usize>(
    device: &wgpu::Device,
    module: &wgpu::ShaderModule,
    label: &str,
    read_only: &[bool],
    entries: [&str; N],
) -> (wgpu::BindGroupLayout, [wgpu::ComputePipeline; N]) {
    let buffer = |binding, ty| wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty,
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    };
    let mut bindings = vec![buffer(0, wgpu::BufferBindingType::Uniform)];
    bindings.extend(read_only.iter().enumerate().map(|(i, &read_only)| {
        buffer(i as u32 + 1, wgpu::BufferBindingType::Storage { read_only })
    }));
    let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some(label),
        entries: &bindings,
    });
    let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(label),
        bind_group_layouts: &[Some(&layout)],
        immediate_size: 0,
    });
    let pipelines = entries.map(|entry| {
        device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: Some(&pl),
            module,
            entry_point: Some(entry),
            compilation_options: Default::default(),
            cache: None,
        })
    });
    (layout, pipelines)
}

/// Where a GPU selection spent its time, and what it sent back.
#[derive(Clone, Debug, Default)]
pub struct Phases {
    /// Converting and copying rows to the device.
    pub upload: Duration,
    /// The scoring kernel.
    pub score: Duration,
    /// The radix select and compaction.
    pub topk: Duration,
    /// Copying the candidates back.
    pub readback: Duration,
    /// Re-scoring the candidates canonically.
    pub refine: Duration,
    /// Chunks the pool was split into.
    pub chunks: u64,
    /// Rows sent back to the host and re-scored canonically.
    pub candidates: u64,
    /// Largest |GPU f32 priority − canonical priority| among them.
    pub max_score_diff: f64,
}

fn ordered(x: f32) -> u32 {
    let b = x.to_bits();
    if b >> 31 == 1 { !b } else { b | 0x8000_0000 }
}

fn unordered(k: u32) -> f32 {
    f32::from_bits(if k >> 31 == 1 { k & 0x7fff_ffff } else { !k })
}

/// The largest f32 not above `x`.
fn f32_at_most(x: f64) -> f32 {
    let f = x as f32;
    if (f as f64) > x { f.next_down() } else { f }
}

/// WGSL has no float64: those pools are scored on the CPU, from their own
/// values.
fn refuse_f64(pool: &Pool) -> Result<()> {
    if pool.has_f64() {
        return Err(Error::Config(
            "float64 pools are scored on the CPU (WGSL has no float64); use --device cpu or auto, \
             or store the pool as float32"
                .into(),
        ));
    }
    Ok(())
}

/// Selects the top k rows of the pool on the GPU.
pub fn select(
    gpu: &Gpu,
    pool: &Pool,
    job: &Job,
    progress: &dyn Progress,
) -> Result<(Selection, Phases)> {
    job.check(pool)?;
    refuse_f64(pool)?;
    let c = pool.classes();
    let k = job.k.min(pool.rows() as usize);
    let mut phases = Phases::default();
    let mut top = TopK::new(k);
    if k == 0 || pool.rows() == 0 {
        return Ok((
            Selection::from_topk(
                job.spec.strategy,
                top,
                pool.rows(),
                job.exclusions.len() as u64,
                0,
            ),
            phases,
        ));
    }
    let max_rows = if job.chunk_rows > 0 {
        job.chunk_rows.min(gpu.max_chunk_rows(c))
    } else {
        gpu.max_chunk_rows(c)
    };
    let r_max = max_rows.min(pool.rows()) as usize;
    let bound = gpu_bound(job.spec.strategy, &job.input, job.spec.log_base.ln(), c);

    use wgpu::BufferUsages as U;
    // Two row buffers: chunk i + 1 is uploaded while chunk i is scored.
    let rows_bufs = [
        gpu.buffer("rows A", (r_max * c * 4) as u64, U::STORAGE | U::COPY_DST),
        gpu.buffer("rows B", (r_max * c * 4) as u64, U::STORAGE | U::COPY_DST),
    ];
    let keys = gpu.buffer("keys", (r_max * 4) as u64, U::STORAGE);
    let status = gpu.buffer("status", (r_max * 4) as u64, U::STORAGE);
    let excl = gpu.buffer(
        "exclusions",
        (r_max.div_ceil(32) * 4) as u64,
        U::STORAGE | U::COPY_DST,
    );
    let hist = gpu.buffer("histogram", 1024, U::STORAGE | U::COPY_SRC | U::COPY_DST);
    let counters = gpu.buffer("counters", 16, U::STORAGE | U::COPY_SRC | U::COPY_DST);
    let cand = gpu.buffer("candidates", (r_max * 8) as u64, U::STORAGE | U::COPY_SRC);
    let unc = gpu.buffer("undecided", (r_max * 4) as u64, U::STORAGE | U::COPY_SRC);
    let staging = gpu.buffer(
        "staging",
        (r_max * 8).max(1024) as u64,
        U::MAP_READ | U::COPY_DST,
    );
    let params_buf = gpu
        .device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("params"),
            contents: bytemuck::bytes_of(&Params::default()),
            usage: U::UNIFORM | U::COPY_DST,
        });
    let binds: Vec<wgpu::BindGroup> = rows_bufs
        .iter()
        .map(|rows_buf| {
            gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("alpool select"),
                layout: &gpu.layout,
                entries: &[
                    &params_buf,
                    rows_buf,
                    &keys,
                    &status,
                    &excl,
                    &hist,
                    &counters,
                    &cand,
                    &unc,
                ]
                .iter()
                .enumerate()
                .map(|(i, b)| wgpu::BindGroupEntry {
                    binding: i as u32,
                    resource: b.as_entire_binding(),
                })
                .collect::<Vec<_>>(),
            })
        })
        .collect();
    gpu.wait()?;

    let (input, tol, slack, inv_temp) = match job.input {
        InputForm::Probs {
            sum_tol,
            renormalize,
        } => (
            if renormalize { 2 } else { 0 },
            sum_tol as f32,
            // Twice the CPU's slack: the GPU's f32 sum may round differently.
            (4.0 * c as f64 / 16_777_216.0) as f32,
            1.0,
        ),
        InputForm::Logits { temperature } => (1, 0.0, 0.0, (1.0 / temperature) as f32),
    };
    let strategy = match job.spec.strategy {
        Strategy::LeastConfidence => 0,
        Strategy::Margin => 1,
        Strategy::Entropy => 2,
        Strategy::Ratio => 3,
        Strategy::Random => 4,
    };
    let mut base = Params {
        classes: c as u32,
        strategy,
        input,
        tol,
        slack,
        inv_temp,
        inv_ln_b: (1.0 / job.spec.log_base.ln()) as f32,
        seed_lo: job.spec.seed as u32,
        seed_hi: (job.spec.seed >> 32) as u32,
        ..Params::default()
    };
    let mut scratch = Vec::new();
    let mut row = vec![0f32; c];
    let mut probs = vec![0f64; c];
    let mut refined = 0u64;

    let chunks: Vec<_> = pool.chunks(max_rows).collect();
    let mut raw = Vec::new();
    let mut upload_rows =
        |slot: usize, (shard, start, end): (&crate::pool::Shard, u64, u64)| -> Result<()> {
            let data = shard.rows_f32(start, end, c, &mut scratch, &mut raw)?;
            gpu.queue
                .write_buffer(&rows_bufs[slot], 0, bytemuck::cast_slice(&data));
            Ok(())
        };
    let t = Instant::now();
    if let Some(&first) = chunks.first() {
        upload_rows(0, first)?;
    }
    phases.upload += t.elapsed();
    for (i, &(shard, start, end)) in chunks.iter().enumerate() {
        if progress.cancelled() {
            return Err(Error::Cancelled);
        }
        let n = (end - start) as usize;
        let g0 = shard.first_row() + start;
        let bind = &binds[i % 2];
        phases.chunks += 1;

        // This chunk's exclusions, cleared counters and parameters.
        let t = Instant::now();
        let mut bits = vec![0u32; n.div_ceil(32).max(1)];
        for &e in job.exclusions.within(g0, g0 + n as u64) {
            let r = (e - g0) as usize;
            bits[r / 32] |= 1 << (r % 32);
        }
        gpu.queue
            .write_buffer(&excl, 0, bytemuck::cast_slice(&bits));
        gpu.queue
            .write_buffer(&counters, 0, bytemuck::cast_slice(&[0u32, u32::MAX, 0, 0]));
        base.rows = n as u32;
        base.stride = gpu.grid(n as u32).2;
        base.g0_lo = g0 as u32;
        base.g0_hi = (g0 >> 32) as u32;
        gpu.queue
            .write_buffer(&params_buf, 0, bytemuck::bytes_of(&base));
        gpu.wait()?;
        phases.upload += t.elapsed();

        let t = Instant::now();
        gpu.dispatch(&gpu.score, bind, n as u32);
        // The next chunk's rows go up while this one is scored: the host
        // converts and stages them now, the copy runs on the queue before
        // the next chunk's dispatch, into the other buffer.
        if let Some(&next) = chunks.get(i + 1) {
            let u = Instant::now();
            upload_rows((i + 1) % 2, next)?;
            phases.upload += u.elapsed();
        }
        gpu.wait()?;
        phases.score += t.elapsed();

        let t = Instant::now();
        let cnt = gpu.read_u32(&counters, 4, &staging)?;
        if cnt[1] != u32::MAX {
            // An invalid value: the CPU path names the first bad row exactly.
            return Err(super::cpu::select(pool, job, &super::Silent)
                .err()
                .unwrap_or_else(|| Error::Gpu("the GPU flagged a row the CPU accepts".into())));
        }
        let mut undecided = gpu.read_u32(&unc, cnt[2] as usize, &staging)?;
        phases.readback += t.elapsed();
        undecided.sort_unstable();
        for r in undecided {
            let index = g0 + r as u64;
            pool.row_f32(index, &mut row)?;
            let ranked = canonical_ranked(job, &row, index, &mut probs).map_err(|problem| {
                Error::BadRow {
                    path: shard.path().into(),
                    row: start + r as u64,
                    global: index,
                    problem,
                }
            })?;
            top.offer(ranked);
        }

        // Radix select of the chunk's k-th key, above the floor the kept
        // rows already prove.
        let t = Instant::now();
        let floor = top
            .worst()
            .map_or(0, |w| ordered(f32_at_most(w.priority - bound)));
        base.floor_key = floor;
        let mut need = k as u64;
        let (mut prefix, mut mask, mut shift) = (0u32, 0u32, 24i32);
        let cut_edge = loop {
            gpu.queue.write_buffer(&hist, 0, &[0u8; 1024]);
            base.prefix = prefix;
            base.prefix_mask = mask;
            base.shift = shift as u32;
            gpu.queue
                .write_buffer(&params_buf, 0, bytemuck::bytes_of(&base));
            gpu.dispatch(&gpu.histogram, bind, n as u32);
            let h = gpu.read_u32(&hist, 256, &staging)?;
            let total: u64 = h.iter().map(|&x| x as u64).sum();
            if shift == 24 && total <= need {
                break floor;
            }
            // The bucket holding the need-th largest key.
            let mut above = 0u64;
            let mut bucket = 0usize;
            for b in (0..256).rev() {
                if above + h[b] as u64 >= need {
                    bucket = b;
                    break;
                }
                above += h[b] as u64;
            }
            need -= above;
            prefix |= (bucket as u32) << shift;
            mask |= 0xffu32 << shift;
            if h[bucket] <= 1024 || shift == 0 {
                break prefix;
            }
            shift -= 8;
        };
        let cut = if cut_edge == floor {
            floor
        } else {
            ordered(f32_at_most(unordered(cut_edge) as f64 - 2.0 * bound)).max(floor)
        };
        base.cut_key = cut;
        base.cap = n as u32;
        gpu.queue
            .write_buffer(&params_buf, 0, bytemuck::bytes_of(&base));
        gpu.queue
            .write_buffer(&counters, 0, bytemuck::cast_slice(&[0u32]));
        gpu.dispatch(&gpu.compact, bind, n as u32);
        gpu.wait()?;
        phases.topk += t.elapsed();

        let t = Instant::now();
        let found = gpu.read_u32(&counters, 1, &staging)?[0] as usize;
        let pairs = gpu.read_u32(&cand, 2 * found.min(n), &staging)?;
        phases.readback += t.elapsed();

        let t = Instant::now();
        for p in pairs.chunks_exact(2) {
            let index = g0 + p[0] as u64;
            pool.row_f32(index, &mut row)?;
            let Ok(r) = canonical_ranked(job, &row, index, &mut probs) else {
                continue;
            };
            let approx = unordered(p[1]) as f64;
            phases.max_score_diff = phases.max_score_diff.max((approx - r.priority).abs());
            top.offer(Ranked {
                priority: r.priority,
                index,
            });
        }
        phases.candidates += (pairs.len() / 2) as u64;
        refined += (pairs.len() / 2) as u64;
        phases.refine += t.elapsed();
        progress.advance(n as u64 * (c * shard.dtype().size()) as u64);
    }
    Ok((
        Selection::from_topk(
            job.spec.strategy,
            top,
            pool.rows(),
            job.exclusions.len() as u64,
            refined,
        ),
        phases,
    ))
}
