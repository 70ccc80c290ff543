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

pub use super::{AdapterSummary, Phases};
use super::{Job, Progress, canonical_ranked};
use crate::error::{Error, Result};
use crate::pool::Pool;
use crate::score::fast::gpu_bound;
use crate::score::{InputForm, Ranked};
use crate::select::{Selection, TopK};

pub(crate) const WG: u32 = 256;

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

        // The shared codes first, then the kernels that use them by name.
        let source = format!(
            "{}\n{}",
            codes::wgsl(),
            include_str!("../../shaders/select.wgsl")
        );
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("select.wgsl"),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
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

/// The codes `shaders/select.wgsl` shares with this file, defined here once
/// and prepended to the shader as WGSL constants (a name the shader uses
/// and this list lacks fails shader creation).
mod codes {
    use crate::score::{InputForm, Strategy};

    /// The strategy's code (`Params::strategy`).
    pub fn strategy(s: Strategy) -> u32 {
        match s {
            Strategy::LeastConfidence => 0,
            Strategy::Margin => 1,
            Strategy::Entropy => 2,
            Strategy::Ratio => 3,
            Strategy::Random => 4,
        }
    }

    pub const INPUT_PROBS: u32 = 0;
    pub const INPUT_LOGITS: u32 = 1;
    pub const INPUT_RENORMALIZE: u32 = 2;

    /// The input form's code (`Params::input`).
    pub fn input(form: &InputForm) -> u32 {
        match *form {
            InputForm::Probs {
                renormalize: false, ..
            } => INPUT_PROBS,
            InputForm::Probs {
                renormalize: true, ..
            } => INPUT_RENORMALIZE,
            InputForm::Logits { .. } => INPUT_LOGITS,
        }
    }

    /// Slots of the `counters` buffer.
    pub const COUNT_CANDIDATES: usize = 0;
    pub const FIRST_INVALID: usize = 1;
    pub const COUNT_UNDECIDED: usize = 2;

    /// A row's `status`.
    const STATUS: [(&str, u32); 4] = [
        ("STATUS_SCORED", 0),
        ("STATUS_UNDECIDED", 1),
        ("STATUS_INVALID", 2),
        ("STATUS_EXCLUDED", 3),
    ];

    /// Every shared code as WGSL constants.
    pub fn wgsl() -> String {
        let mut out = String::from("// Generated by src/backend/gpu.rs (codes).\n");
        for s in Strategy::ALL {
            let name = s.name().replace('-', "_").to_uppercase();
            out += &format!("const STRATEGY_{name}: u32 = {}u;\n", strategy(s));
        }
        let u32s = [
            ("INPUT_PROBS", INPUT_PROBS),
            ("INPUT_LOGITS", INPUT_LOGITS),
            ("INPUT_RENORMALIZE", INPUT_RENORMALIZE),
            ("COUNT_CANDIDATES", COUNT_CANDIDATES as u32),
            ("FIRST_INVALID", FIRST_INVALID as u32),
            ("COUNT_UNDECIDED", COUNT_UNDECIDED as u32),
        ];
        for (name, v) in u32s.iter().chain(STATUS.iter()) {
            out += &format!("const {name}: u32 = {v}u;\n");
        }
        out
    }
}

/// Selects the top k rows of the pool on the GPU: per chunk, upload, score,
/// check, radix cut, compact, refine (one private method each).
pub fn select(
    gpu: &Gpu,
    pool: &Pool,
    job: &Job,
    progress: &dyn Progress,
) -> Result<(Selection, Phases)> {
    job.check(pool)?;
    refuse_f64(pool)?;
    let k = job.k.min(pool.rows() as usize);
    let mut run = Chunked::new(gpu, pool, job, k)?;
    if k > 0 && pool.rows() > 0 {
        let chunks: Vec<_> = pool.chunks(run.max_rows).collect();
        let t = Instant::now();
        run.upload(0, chunks[0])?;
        run.phases.upload += t.elapsed();
        for (i, &chunk) in chunks.iter().enumerate() {
            if progress.cancelled() {
                return Err(Error::Cancelled);
            }
            run.parameters(chunk)?;
            run.score(i, chunks.get(i + 1).copied())?;
            run.check_rows(chunk)?;
            let cut = run.radix_cut(i, k)?;
            run.compact(i, cut)?;
            run.refine(chunk)?;
            let (shard, start, end) = chunk;
            progress.advance((end - start) * (pool.classes() * shard.dtype().size()) as u64);
        }
    }
    let sel = Selection::from_topk(
        job.spec.strategy,
        run.top,
        pool.rows(),
        job.exclusions.len() as u64,
        run.refined,
    );
    Ok((sel, run.phases))
}

type Chunk<'p, 'a> = (&'p crate::pool::Shard<'a>, u64, u64);

/// The buffers of one selection: two row buffers (chunk i + 1 uploads while
/// chunk i is scored), keys, status, exclusions, histogram, counters,
/// candidates, undecided rows, staging; one bind group per row buffer.
struct Buffers {
    rows: [wgpu::Buffer; 2],
    excl: wgpu::Buffer,
    hist: wgpu::Buffer,
    counters: wgpu::Buffer,
    cand: wgpu::Buffer,
    unc: wgpu::Buffer,
    staging: wgpu::Buffer,
    params: wgpu::Buffer,
    binds: [wgpu::BindGroup; 2],
}

impl Buffers {
    fn new(gpu: &Gpu, r_max: usize, c: usize) -> Buffers {
        use wgpu::BufferUsages as U;
        let rows = [
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
        let params = gpu
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("params"),
                contents: bytemuck::bytes_of(&Params::default()),
                usage: U::UNIFORM | U::COPY_DST,
            });
        let bind = |rows_buf: &wgpu::Buffer| {
            let all = [
                &params, rows_buf, &keys, &status, &excl, &hist, &counters, &cand, &unc,
            ];
            let entries: Vec<_> = all
                .iter()
                .enumerate()
                .map(|(i, b)| wgpu::BindGroupEntry {
                    binding: i as u32,
                    resource: b.as_entire_binding(),
                })
                .collect();
            gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("alpool select"),
                layout: &gpu.layout,
                entries: &entries,
            })
        };
        let binds = [bind(&rows[0]), bind(&rows[1])];
        Buffers {
            rows,
            excl,
            hist,
            counters,
            cand,
            unc,
            staging,
            params,
            binds,
        }
    }
}

/// One selection in progress, chunk by chunk.
struct Chunked<'r> {
    gpu: &'r Gpu,
    pool: &'r Pool<'r>,
    job: &'r Job,
    bufs: Buffers,
    base: Params,
    /// Rows per chunk, and the f32 error bound on a priority.
    max_rows: u64,
    bound: f64,
    top: TopK,
    phases: Phases,
    refined: u64,
    scratch: Vec<f32>,
    raw: Vec<u8>,
    row: Vec<f32>,
    probs: Vec<f64>,
}

impl<'r> Chunked<'r> {
    /// Buffers sized for the largest chunk, and the parameters every chunk
    /// shares.
    fn new(gpu: &'r Gpu, pool: &'r Pool<'r>, job: &'r Job, k: usize) -> Result<Chunked<'r>> {
        let c = pool.classes();
        let max_rows = match job.chunk_rows {
            0 => gpu.max_chunk_rows(c),
            n => n.min(gpu.max_chunk_rows(c)),
        };
        let r_max = max_rows.min(pool.rows()).max(1) as usize;
        let bufs = Buffers::new(gpu, r_max, c);
        gpu.wait()?;
        let (tol, slack, inv_temp) = match job.input {
            // Twice the CPU's slack: the GPU's f32 sum may round differently.
            InputForm::Probs { sum_tol, .. } => {
                (sum_tol as f32, (4.0 * c as f64 / 16_777_216.0) as f32, 1.0)
            }
            InputForm::Logits { temperature } => (0.0, 0.0, (1.0 / temperature) as f32),
        };
        let base = Params {
            classes: c as u32,
            strategy: codes::strategy(job.spec.strategy),
            input: codes::input(&job.input),
            tol,
            slack,
            inv_temp,
            inv_ln_b: (1.0 / job.spec.log_base.ln()) as f32,
            seed_lo: job.spec.seed as u32,
            seed_hi: (job.spec.seed >> 32) as u32,
            ..Params::default()
        };
        Ok(Chunked {
            gpu,
            pool,
            job,
            bufs,
            base,
            max_rows,
            bound: gpu_bound(job.spec.strategy, &job.input, job.spec.log_base.ln(), c),
            top: TopK::new(k),
            phases: Phases::default(),
            refined: 0,
            scratch: Vec::new(),
            raw: Vec::new(),
            row: vec![0f32; c],
            probs: vec![0f64; c],
        })
    }

    /// Converts and stages a chunk's rows into row buffer `slot`.
    fn upload(&mut self, slot: usize, (shard, start, end): Chunk) -> Result<()> {
        let c = self.pool.classes();
        let data = shard.rows_f32(start, end, c, &mut self.scratch, &mut self.raw)?;
        self.gpu
            .queue
            .write_buffer(&self.bufs.rows[slot], 0, bytemuck::cast_slice(&data));
        Ok(())
    }

    /// The chunk's exclusions, cleared counters and parameters.
    fn parameters(&mut self, (shard, start, end): Chunk) -> Result<()> {
        let t = Instant::now();
        let n = (end - start) as usize;
        let g0 = shard.first_row() + start;
        let mut bits = vec![0u32; n.div_ceil(32).max(1)];
        for &e in self.job.exclusions.within(g0, g0 + n as u64) {
            let r = (e - g0) as usize;
            bits[r / 32] |= 1 << (r % 32);
        }
        let q = &self.gpu.queue;
        q.write_buffer(&self.bufs.excl, 0, bytemuck::cast_slice(&bits));
        let mut counters = [0u32; 4];
        counters[codes::FIRST_INVALID] = u32::MAX;
        q.write_buffer(&self.bufs.counters, 0, bytemuck::cast_slice(&counters));
        self.base.rows = n as u32;
        self.base.stride = self.gpu.grid(n as u32).2;
        self.base.g0_lo = g0 as u32;
        self.base.g0_hi = (g0 >> 32) as u32;
        q.write_buffer(&self.bufs.params, 0, bytemuck::bytes_of(&self.base));
        self.gpu.wait()?;
        self.phases.upload += t.elapsed();
        self.phases.chunks += 1;
        Ok(())
    }

    /// Scores chunk `i`; the next chunk's rows go up meanwhile (the host
    /// converts and stages them now, the copy runs on the queue before the
    /// next chunk's dispatch, into the other buffer).
    fn score(&mut self, i: usize, next: Option<Chunk>) -> Result<()> {
        let t = Instant::now();
        let rows = self.base.rows;
        self.gpu
            .dispatch(&self.gpu.score, &self.bufs.binds[i % 2], rows);
        if let Some(next) = next {
            let u = Instant::now();
            self.upload((i + 1) % 2, next)?;
            self.phases.upload += u.elapsed();
        }
        self.gpu.wait()?;
        self.phases.score += t.elapsed();
        Ok(())
    }

    /// Rows the GPU could not decide go through the canonical path; an
    /// invalid row is reported as the CPU reports it: the first bad row of
    /// the chunk, which is the first of the pool (earlier chunks had none).
    fn check_rows(&mut self, (shard, start, _): Chunk) -> Result<()> {
        let t = Instant::now();
        let cnt = self
            .gpu
            .read_u32(&self.bufs.counters, 4, &self.bufs.staging)?;
        let n_unc = cnt[codes::COUNT_UNDECIDED] as usize;
        let mut undecided = self
            .gpu
            .read_u32(&self.bufs.unc, n_unc, &self.bufs.staging)?;
        self.phases.readback += t.elapsed();
        undecided.sort_unstable();
        let first_invalid = cnt[codes::FIRST_INVALID];
        let g0 = shard.first_row() + start;
        // Undecided rows before the first invalid one may be bad too.
        for r in undecided.into_iter().filter(|&r| r < first_invalid) {
            let ranked = self.canonical(shard, g0 + r as u64)?;
            self.top.offer(ranked);
        }
        if first_invalid != u32::MAX {
            self.canonical(shard, g0 + first_invalid as u64)?;
            return Err(Error::Gpu(format!(
                "the GPU flagged global row {} as invalid, but its values are valid",
                g0 + first_invalid as u64
            )));
        }
        Ok(())
    }

    /// Row `index`'s canonical ranking entry, or the error naming it.
    fn canonical(&mut self, shard: &crate::pool::Shard, index: u64) -> Result<Ranked> {
        self.pool.row_f32(index, &mut self.row)?;
        canonical_ranked(self.job, &self.row, index, &mut self.probs).map_err(|problem| {
            Error::BadRow {
                path: shard.path().into(),
                row: index - shard.first_row(),
                global: index,
                problem,
            }
        })
    }

    /// Radix select of the chunk's k-th key, above the floor the kept rows
    /// already prove: 8-bit histogram passes from the top digit down, until
    /// the boundary bucket holds at most 1,024 rows. Returns the key at and
    /// above which rows are compacted.
    fn radix_cut(&mut self, i: usize, k: usize) -> Result<u32> {
        let t = Instant::now();
        let bound = self.bound;
        let floor = self
            .top
            .worst()
            .map_or(0, |w| ordered(f32_at_most(w.priority - bound)));
        self.base.floor_key = floor;
        let (gpu, bufs, rows) = (self.gpu, &self.bufs, self.base.rows);
        let mut need = k as u64;
        let (mut prefix, mut mask, mut shift) = (0u32, 0u32, 24i32);
        let cut_edge = loop {
            gpu.queue.write_buffer(&bufs.hist, 0, &[0u8; 1024]);
            self.base.prefix = prefix;
            self.base.prefix_mask = mask;
            self.base.shift = shift as u32;
            gpu.queue
                .write_buffer(&bufs.params, 0, bytemuck::bytes_of(&self.base));
            gpu.dispatch(&gpu.histogram, &bufs.binds[i % 2], rows);
            let h = gpu.read_u32(&bufs.hist, 256, &bufs.staging)?;
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
        self.phases.topk += t.elapsed();
        Ok(if cut_edge == floor {
            floor
        } else {
            ordered(f32_at_most(unordered(cut_edge) as f64 - 2.0 * bound)).max(floor)
        })
    }

    /// Compacts the rows at or above `cut` into the candidate buffer.
    fn compact(&mut self, i: usize, cut: u32) -> Result<()> {
        let t = Instant::now();
        self.base.cut_key = cut;
        self.base.cap = self.base.rows;
        let q = &self.gpu.queue;
        q.write_buffer(&self.bufs.params, 0, bytemuck::bytes_of(&self.base));
        q.write_buffer(
            &self.bufs.counters,
            (codes::COUNT_CANDIDATES * 4) as u64,
            bytemuck::cast_slice(&[0u32]),
        );
        let rows = self.base.rows;
        self.gpu
            .dispatch(&self.gpu.compact, &self.bufs.binds[i % 2], rows);
        self.gpu.wait()?;
        self.phases.topk += t.elapsed();
        Ok(())
    }

    /// Reads the candidates back and offers each with its canonical
    /// priority.
    fn refine(&mut self, (shard, start, _): Chunk) -> Result<()> {
        let t = Instant::now();
        let (gpu, bufs) = (self.gpu, &self.bufs);
        let found = gpu.read_u32(&bufs.counters, 4, &bufs.staging)?[codes::COUNT_CANDIDATES];
        let n = self.base.rows as usize;
        let pairs = gpu.read_u32(&bufs.cand, 2 * (found as usize).min(n), &bufs.staging)?;
        self.phases.readback += t.elapsed();
        let t = Instant::now();
        let g0 = shard.first_row() + start;
        for p in pairs.chunks_exact(2) {
            let index = g0 + p[0] as u64;
            // Compacted rows were scored, hence valid.
            let r = self.canonical(shard, index)?;
            let approx = unordered(p[1]) as f64;
            self.phases.max_score_diff =
                self.phases.max_score_diff.max((approx - r.priority).abs());
            self.top.offer(r);
        }
        self.phases.candidates += (pairs.len() / 2) as u64;
        self.refined += (pairs.len() / 2) as u64;
        self.phases.refine += t.elapsed();
        Ok(())
    }
}
