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
use super::{Progress, RowJob, canonical_ranked};
use crate::error::{Error, Result};
use crate::job::Job;
use crate::pool::{Exclusions, Pool};
use crate::query::{ColdStart, InputForm, LogBase, Query, RowProblem, Stochastic};
use crate::score::Ranked;
use crate::score::fast::{LN_ABS_ERR, LN_REL_ERR, gpu_bound};
use crate::score::multilabel::{MultiSpec, gpu_bounds as multilabel_bounds, multilabel_score};
use crate::score::stochastic::RowKeys;
use crate::select::{Keyed, Selection, TopK};

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

/// The adapters of the native APIs (Vulkan, Metal, DX12); OpenGL's only
/// where none exists. Asking GL as well listed every Mesa adapter twice,
/// and its EGL probe printed "XDG_RUNTIME_DIR is invalid or not set" on
/// headless servers.
fn adapters() -> Vec<wgpu::Adapter> {
    let found = |backends: wgpu::Backends| {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends,
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        });
        pollster::block_on(instance.enumerate_adapters(backends))
    };
    let native = found(wgpu::Backends::PRIMARY);
    if native.is_empty() {
        found(wgpu::Backends::GL)
    } else {
        native
    }
}

/// Every adapter wgpu finds (see `adapters` for which APIs are asked).
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
    lenient: u32,
    width: u32,
    hi_at: u32,
    g: f32,
    kc: f32,
    kc_m1: f32,
    ln_c: f32,
    // A multi-label pool: the labeled set's mean label count as an f32
    // pair (hi + lo), adaptive's β, and the interval each priority gets:
    // half + rel · |priority| (`multilabel_bounds`).
    card_hi: f32,
    card_lo: f32,
    beta: f32,
    half: f32,
    rel: f32,
    // Samples: T planes of rows x classes values (`samples::select`).
    samples: u32,
    // A stochastic batch's noise (`Chunked::draw`).
    noise: u32,
    v_shift: f32,
    inv_beta: f32,
    nseed_lo: u32,
    nseed_hi: u32,
    ln_abs: f32,
    ln_rel: f32,
    // Density: the row of the row buffers that holds the mean direction.
    m_at: u32,
    // Density weighting a row-wise strategy (`select_weighted`).
    weighted: u32,
    w_at: u32,
    phi_shift: f32,
    mc: u32,
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
        Gpu::build(adapter)
    }

    /// Opens the adapter `summary` describes (as [`list_adapters`] gave it).
    pub fn open(summary: &AdapterSummary) -> Result<Gpu> {
        let all = adapters();
        let same = all
            .iter()
            .find(|a| summarize(a) == *summary)
            .or_else(|| all.iter().find(|a| a.get_info().name == summary.name));
        match same {
            Some(a) => Gpu::build(a),
            None => Err(Error::Gpu(format!(
                "the adapter {} ({}) is gone",
                summary.name, summary.backend
            ))),
        }
    }

    /// Opens `adapter` and builds alpool's pipelines on it.
    fn build(adapter: &wgpu::Adapter) -> Result<Gpu> {
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
        let codes = codes::wgsl();
        let module = module(
            &device,
            "select.wgsl",
            &[
                &codes,
                include_str!("../../shaders/ln.wgsl"),
                include_str!("../../shaders/rng.wgsl"),
                include_str!("../../shaders/select.wgsl"),
            ],
        );
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

/// The adapter a unit test runs on: with `ALPOOL_REQUIRE_GPU=1` (CI) a
/// missing one fails the test, elsewhere the test skips loudly.
#[cfg(test)]
pub(crate) fn test_gpu() -> Option<Gpu> {
    match Gpu::new(None) {
        Ok(g) => Some(g),
        Err(e) if std::env::var("ALPOOL_REQUIRE_GPU").is_ok_and(|v| v == "1") => {
            panic!("ALPOOL_REQUIRE_GPU=1 but no usable GPU adapter: {e}")
        }
        Err(e) => {
            eprintln!("\n!!!!!! SKIPPING GPU TEST: {e} !!!!!!\n");
            None
        }
    }
}

/// A bind group of `layout` whose binding i is the whole of `buffers[i]`.
pub(crate) fn bind_buffers(
    device: &wgpu::Device,
    layout: &wgpu::BindGroupLayout,
    label: &str,
    buffers: &[&wgpu::Buffer],
) -> wgpu::BindGroup {
    let entries: Vec<_> = buffers
        .iter()
        .enumerate()
        .map(|(i, b)| wgpu::BindGroupEntry {
            binding: i as u32,
            resource: b.as_entire_binding(),
        })
        .collect();
    device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(label),
        layout,
        entries: &entries,
    })
}

/// One WGSL module from `sources` joined in order (the shared helpers
/// before the kernels that call them by name).
pub(crate) fn module(device: &wgpu::Device, label: &str, sources: &[&str]) -> wgpu::ShaderModule {
    device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(label),
        source: wgpu::ShaderSource::Wgsl(sources.join("\n").into()),
    })
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

/// The smallest f32 not below `x`.
fn f32_at_least(x: f64) -> f32 {
    let f = x as f32;
    if (f as f64) < x { f.next_up() } else { f }
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
    use crate::query::{
        ColdStart, Disagreement, InputForm, MultiLabel, Query, Regression, Strategy,
    };

    /// The strategy's code (`Params::strategy`): the row-wise ones, then
    /// the multi-label ones; no other query reaches the kernels.
    pub fn strategy(q: Query) -> u32 {
        match q {
            Query::Score(Strategy::LeastConfidence) => 0,
            Query::Score(Strategy::Margin) => 1,
            Query::Score(Strategy::Entropy) => 2,
            Query::Score(Strategy::Ratio) => 3,
            Query::Score(Strategy::Random) => 4,
            Query::Multi(MultiLabel::MeanEntropy) => 5,
            Query::Multi(MultiLabel::MaxEntropy) => 6,
            Query::Multi(MultiLabel::MinMargin) => 7,
            Query::Multi(MultiLabel::Cardinality) => 8,
            Query::Multi(MultiLabel::Adaptive) => 9,
            Query::Multi(MultiLabel::AvgScore) => 10,
            Query::Multi(MultiLabel::MaxScore) => 11,
            Query::Disagree(Disagreement::Bald) => 12,
            Query::Disagree(Disagreement::KlMean) => 13,
            Query::Disagree(Disagreement::ConsensusEntropy) => 14,
            Query::Disagree(Disagreement::VariationRatio) => 15,
            Query::Disagree(Disagreement::VoteEntropy) => 16,
            Query::Disagree(Disagreement::KlMax) => 17,
            Query::Disagree(Disagreement::MeanStd) => 18,
            Query::Cold(ColdStart::Density) => 19,
            Query::Regress(Regression::Std) => 20,
            Query::Regress(Regression::Emcm) => 21,
            other => unreachable!("{other} has no GPU kernel"),
        }
    }

    pub const INPUT_PROBS: u32 = 0;
    pub const INPUT_LOGITS: u32 = 1;
    pub const INPUT_RENORMALIZE: u32 = 2;
    pub const INPUT_MULTILABEL: u32 = 3;
    pub const INPUT_MULTILABEL_LOGITS: u32 = 4;
    pub const INPUT_SAMPLES: u32 = 5;
    pub const INPUT_EMBEDDINGS: u32 = 6;

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
            InputForm::MultiLabel { logits: false } => INPUT_MULTILABEL,
            InputForm::MultiLabel { logits: true } => INPUT_MULTILABEL_LOGITS,
            // The device policy keeps the regression strategies off the
            // row-wise kernels (gsx runs on core-set's; std on the samples
            // branch, which sets its own input).
            InputForm::Regression(_) => INPUT_PROBS,
        }
    }

    /// A stochastic batch's noise (`Params::noise`).
    pub const NOISE_NONE: u32 = 0;
    pub const NOISE_SOFTMAX: u32 = 1;
    pub const NOISE_POWER: u32 = 2;

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
        let rows = Strategy::ALL.into_iter().map(Query::Score);
        let samples = Disagreement::ALL.map(Query::Disagree);
        for q in rows
            .chain(MultiLabel::ALL.into_iter().map(Query::Multi))
            .chain(samples)
            .chain([
                Query::Cold(ColdStart::Density),
                Query::Regress(Regression::Std),
                Query::Regress(Regression::Emcm),
            ])
        {
            let name = q.name().replace('-', "_").to_uppercase();
            out += &format!("const STRATEGY_{name}: u32 = {}u;\n", strategy(q));
        }
        let u32s = [
            ("INPUT_PROBS", INPUT_PROBS),
            ("INPUT_LOGITS", INPUT_LOGITS),
            ("INPUT_RENORMALIZE", INPUT_RENORMALIZE),
            ("INPUT_MULTILABEL", INPUT_MULTILABEL),
            ("INPUT_MULTILABEL_LOGITS", INPUT_MULTILABEL_LOGITS),
            ("INPUT_SAMPLES", INPUT_SAMPLES),
            ("INPUT_EMBEDDINGS", INPUT_EMBEDDINGS),
            ("NOISE_NONE", NOISE_NONE),
            ("NOISE_SOFTMAX", NOISE_SOFTMAX),
            ("NOISE_POWER", NOISE_POWER),
            ("COUNT_CANDIDATES", COUNT_CANDIDATES as u32),
            ("FIRST_INVALID", FIRST_INVALID as u32),
            ("COUNT_UNDECIDED", COUNT_UNDECIDED as u32),
        ];
        for (name, v) in u32s.iter().chain(STATUS.iter()) {
            out += &format!("const {name}: u32 = {v}u;\n");
        }
        // The logarithm's bound holds up to here (`ln_err`).
        out += &format!(
            "const LN_MAX_X: f32 = {:?};\n",
            crate::score::fast::LN_MAX_X
        );
        out
    }
}

/// Selects the top k rows of the pool on the GPU: per chunk, upload, score,
/// check, radix cut, compact, refine (one private method each).
pub(crate) fn select(
    gpu: &Gpu,
    pool: &Pool,
    job: &RowJob,
    progress: &dyn Progress,
) -> Result<(Selection, Phases)> {
    job.check(pool)?;
    refuse_f64(pool)?;
    let k = job.k.min(pool.rows() as usize);
    let c = pool.classes();
    let max_rows = chunk_rows(gpu, c, job.chunk_rows);
    let bound = gpu_bound(job.spec.strategy, &job.input, job.spec.log_base.ln(), c);
    let mut run = Chunked::new(gpu, job, k, c, max_rows.min(pool.rows()), &job.input, bound)?;
    let score = |row: &[f32], index, probs: &mut [f64]| canonical_ranked(job, row, index, probs);
    let mut rows = PoolRows::new(pool, max_rows, &score);
    drive(&mut run, k, &mut rows, progress)?;
    Ok(run.finish(pool.rows()))
}

/// A multi-label pool's top k on the GPU: the same chunked select, with
/// each row's priority interval from the score kernel's multi-label branch
/// and every candidate re-scored canonically on the host.
pub(crate) fn select_multilabel(
    gpu: &Gpu,
    pool: &Pool,
    job: &Job,
    spec: &MultiSpec,
    progress: &dyn Progress,
) -> Result<(Selection, Phases)> {
    refuse_f64(pool)?;
    let k = job.k.min(pool.rows() as usize);
    let c = pool.classes();
    let max_rows = chunk_rows(gpu, c, job.chunk_rows);
    let mut run = Chunked::multilabel(gpu, job, spec, k, c, max_rows.min(pool.rows()))?;
    let query = job.query;
    let score = |row: &[f32], index, probs: &mut [f64]| {
        crate::score::input::canonical_probs(&job.input, row, probs)?;
        let priority = query.priority(multilabel_score(spec, probs));
        Ok(Ranked { priority, index })
    };
    let mut rows = PoolRows::new(pool, max_rows, &score);
    drive(&mut run, k, &mut rows, progress)?;
    Ok(run.finish(pool.rows()))
}

/// The k rows of largest density among embeddings `emb` on the GPU (the
/// kernel's `score_density`): the mean direction `m` (made on the host) is
/// stored after each row buffer's rows, each row gets the interval
/// `half · A/|x| + rel · |priority|` around its f32 similarity, and every
/// candidate is re-scored by `score`.
pub(crate) fn select_density(
    gpu: &Gpu,
    emb: &Pool,
    job: &Job,
    m: &[f64],
    bound: (f64, f64),
    score: &RowScore,
    progress: &dyn Progress,
) -> Result<(Selection, Phases)> {
    refuse_f64(emb)?;
    let k = job.k.min(emb.rows() as usize);
    let d = emb.classes();
    // The row buffers hold one row more than a chunk: the mean direction.
    let max_rows = chunk_rows(gpu, d, job.chunk_rows).saturating_sub(1).max(1);
    let r_max = max_rows.min(emb.rows()).max(1);
    let mut run = Chunked::with_interval(gpu, job, k, (d, d), r_max + 1, bound)?;
    run.base.input = codes::INPUT_EMBEDDINGS;
    run.base.m_at = r_max as u32;
    let m32: Vec<f32> = m.iter().map(|&v| v as f32).collect();
    for buf in &run.bufs.rows {
        let at = (r_max as usize * d * 4) as u64;
        gpu.queue.write_buffer(buf, at, bytemuck::cast_slice(&m32));
    }
    let mut rows = PoolRows::new(emb, r_max, score);
    drive(&mut run, k, &mut rows, progress)?;
    Ok(run.finish(emb.rows()))
}

/// A row-wise job's top k on the GPU with each row's priority weighted:
/// `φ · weights[r]`, φ the strategy's informativeness (`1 − score` for a
/// lower-is-better score, else the score), as
/// `coldstart::density::weighted` ranks on the CPU. The kernel's `weigh`
/// bounds each product from the row's priority interval and the two f32
/// neighbours of its weight, stored after the chunk's rows; `score` re-scores
/// every candidate canonically. `weights` has one entry a pool row, each
/// finite and at least 0.
pub(crate) fn select_weighted(
    gpu: &Gpu,
    pool: &Pool,
    job: &RowJob,
    weights: &[f64],
    score: &RowScore,
    progress: &dyn Progress,
) -> Result<(Selection, Phases)> {
    job.check(pool)?;
    refuse_f64(pool)?;
    let k = job.k.min(pool.rows() as usize);
    let c = pool.classes();
    // Room for 2 weights a row after the rows (one row fewer than the limit
    // leaves room for the last partial row of weights).
    let limit = chunk_rows(gpu, c + 2, 0).saturating_sub(1).max(1);
    let r_max = match job.chunk_rows {
        0 => limit,
        n => n.min(limit),
    }
    .min(pool.rows())
    .max(1);
    let held = r_max + (2 * r_max).div_ceil(c as u64);
    let bound = gpu_bound(job.spec.strategy, &job.input, job.spec.log_base.ln(), c);
    let mut run = Chunked::new(gpu, job, k, c, held, &job.input, bound)?;
    let p = &mut run.base;
    p.weighted = 1;
    p.w_at = (r_max as usize * c) as u32;
    p.phi_shift = if job.spec.strategy.lower_is_better() {
        1.0
    } else {
        0.0
    };
    p.half = f32_at_least(run.bound);
    run.bound = 0.0;
    let mut rows = Weighted {
        rows: PoolRows::new(pool, r_max, score),
        weights,
        at: (r_max as usize * c * 4) as u64,
        pairs: Vec::new(),
    };
    drive(&mut run, k, &mut rows, progress)?;
    Ok(run.finish_as(Query::Cold(ColdStart::Density), pool.rows()))
}

/// A pool's chunks with each row's weight beside them: the two f32 nearest
/// it from below and from above (0 and the smallest normal float stand
/// for subnormals, which a GPU may flush).
struct Weighted<'r> {
    rows: PoolRows<'r>,
    weights: &'r [f64],
    at: u64,
    pairs: Vec<f32>,
}

impl Rescore for Weighted<'_> {
    fn ranked(&mut self, rows: &[u64]) -> Result<Vec<Ranked>> {
        self.rows.ranked(rows)
    }
}

impl Source for Weighted<'_> {
    fn chunks(&self) -> usize {
        self.rows.chunks()
    }

    fn enter(&mut self, i: usize) -> (u64, u64, u64) {
        self.rows.enter(i)
    }

    fn upload(&mut self, run: &Chunked, slot: usize, i: usize) -> Result<()> {
        self.rows.upload(run, slot, i)?;
        let (shard, start, end) = self.rows.chunks[i];
        let first = (shard.first_row() + start - self.rows.pool.first_row()) as usize;
        self.pairs.clear();
        for &w in &self.weights[first..first + (end - start) as usize] {
            let lo = f32_at_most(w);
            let hi = f32_at_least(w);
            self.pairs
                .push(if lo < f32::MIN_POSITIVE { 0.0 } else { lo });
            self.pairs.push(if hi < f32::MIN_POSITIVE && w > 0.0 {
                f32::MIN_POSITIVE
            } else {
                hi
            });
        }
        run.gpu.queue.write_buffer(
            &run.bufs.rows[slot],
            self.at,
            bytemuck::cast_slice(&self.pairs),
        );
        Ok(())
    }
}

/// Rows per chunk: the adapter's limit, or fewer when asked.
pub(crate) fn chunk_rows(gpu: &Gpu, c: usize, asked: u64) -> u64 {
    match asked {
        0 => gpu.max_chunk_rows(c),
        n => n.min(gpu.max_chunk_rows(c)),
    }
}

/// Where a selection's chunks come from: it uploads each into a row
/// buffer, and re-scores rows canonically ([`Rescore`]).
pub(crate) trait Source: Rescore {
    /// How many chunks.
    fn chunks(&self) -> usize;
    /// Makes chunk `i` current (the rows [`Rescore`] names from now on);
    /// returns its first global row, its rows and its bytes.
    fn enter(&mut self, i: usize) -> (u64, u64, u64);
    /// Converts chunk `i`'s rows into row buffer `slot`.
    fn upload(&mut self, run: &Chunked, slot: usize, i: usize) -> Result<()>;
}

/// The chunks of `src` through `run`: the next chunk uploads while one is
/// scored; each is checked, cut, compacted and refined.
pub(crate) fn drive(
    run: &mut Chunked,
    k: usize,
    src: &mut dyn Source,
    progress: &dyn Progress,
) -> Result<()> {
    let n = src.chunks();
    if k == 0 || n == 0 {
        return Ok(());
    }
    let t = Instant::now();
    src.upload(run, 0, 0)?;
    run.phases.upload += t.elapsed();
    for i in 0..n {
        if progress.cancelled() {
            return Err(Error::Cancelled);
        }
        let (g0, rows, bytes) = src.enter(i);
        run.parameters(g0, rows)?;
        let t = Instant::now();
        run.launch_score(i % 2);
        if i + 1 < n {
            let u = Instant::now();
            src.upload(run, (i + 1) % 2, i + 1)?;
            run.phases.upload += u.elapsed();
        }
        run.gpu.wait()?;
        run.phases.score += t.elapsed();
        run.check_rows(src)?;
        let cut = run.radix_cut(i % 2, k)?;
        run.compact(i % 2, cut)?;
        run.refine(src)?;
        progress.advance(bytes);
    }
    Ok(())
}

type Chunk<'p, 'a> = (&'p crate::pool::Shard<'a>, u64, u64);

/// How the host scores a row canonically: every row the GPU returns (or
/// could not decide) goes through this, so the GPU only ever filters.
pub(crate) trait Rescore {
    /// The canonical ranking entries of these global rows, in order, or
    /// the error naming the first bad one.
    fn ranked(&mut self, rows: &[u64]) -> Result<Vec<Ranked>>;
}

/// A row's canonical ranking entry from its stored values, its global
/// index and scratch for its probabilities.
pub(crate) type RowScore<'r> =
    dyn Fn(&[f32], u64, &mut [f64]) -> std::result::Result<Ranked, RowProblem> + 'r;

/// A pool's chunks, uploaded as float32 and read back from the mapped
/// files to be scored by `score`.
struct PoolRows<'r> {
    pool: &'r Pool<'r>,
    score: &'r RowScore<'r>,
    chunks: Vec<Chunk<'r, 'r>>,
    shard: Option<&'r crate::pool::Shard<'r>>,
    row: Vec<f32>,
    probs: Vec<f64>,
    scratch: Vec<f32>,
    raw: Vec<u8>,
}

impl<'r> PoolRows<'r> {
    fn new(pool: &'r Pool<'r>, max_rows: u64, score: &'r RowScore<'r>) -> Self {
        PoolRows {
            pool,
            score,
            chunks: pool.chunks(max_rows).collect(),
            shard: None,
            row: vec![0f32; pool.classes()],
            probs: vec![0f64; pool.classes()],
            scratch: Vec::new(),
            raw: Vec::new(),
        }
    }
}

impl Rescore for PoolRows<'_> {
    fn ranked(&mut self, rows: &[u64]) -> Result<Vec<Ranked>> {
        let mut out = Vec::with_capacity(rows.len());
        for &index in rows {
            self.pool.row_f32(index, &mut self.row)?;
            let r = (self.score)(&self.row, index, &mut self.probs).map_err(|problem| {
                let shard = self.shard.expect("rows are re-scored within a chunk");
                Error::BadRow {
                    path: shard.path().into(),
                    row: index - shard.first_row(),
                    global: index,
                    problem,
                }
            })?;
            out.push(r);
        }
        Ok(out)
    }
}

impl Source for PoolRows<'_> {
    fn chunks(&self) -> usize {
        self.chunks.len()
    }

    fn enter(&mut self, i: usize) -> (u64, u64, u64) {
        let (shard, start, end) = self.chunks[i];
        self.shard = Some(shard);
        let row_bytes = (self.pool.classes() * shard.dtype().size()) as u64;
        (
            shard.first_row() + start,
            end - start,
            (end - start) * row_bytes,
        )
    }

    fn upload(&mut self, run: &Chunked, slot: usize, i: usize) -> Result<()> {
        let (shard, start, end) = self.chunks[i];
        let data = shard.rows_f32(start, end, run.classes, &mut self.scratch, &mut self.raw)?;
        run.gpu
            .queue
            .write_buffer(&run.bufs.rows[slot], 0, bytemuck::cast_slice(&data));
        Ok(())
    }
}

/// The buffers of one selection: two row buffers (chunk i + 1 uploads while
/// chunk i is scored), keys, status, exclusions, histogram, counters,
/// candidates, undecided rows, staging; one bind group per row buffer.
pub(crate) struct Buffers {
    pub(crate) rows: [wgpu::Buffer; 2],
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
        // Keys, and room for the rows' upper keys (logits from features).
        use wgpu::BufferUsages as U;
        let rows = [
            gpu.buffer("rows A", (r_max * c * 4) as u64, U::STORAGE | U::COPY_DST),
            gpu.buffer("rows B", (r_max * c * 4) as u64, U::STORAGE | U::COPY_DST),
        ];
        let keys = gpu.buffer("keys", (r_max * 8) as u64, U::STORAGE);
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
            bind_buffers(&gpu.device, &gpu.layout, "alpool select", &all)
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

/// What a selection scores, as the kernels and the merge need it.
#[derive(Clone, Copy)]
struct Scoring<'r> {
    query: Query,
    log_base: LogBase,
    seed: u64,
    exclusions: &'r Exclusions,
    stochastic: Option<Stochastic>,
}

impl<'r> From<&'r RowJob> for Scoring<'r> {
    fn from(job: &'r RowJob) -> Self {
        Scoring {
            query: Query::Score(job.spec.strategy),
            log_base: job.spec.log_base,
            seed: job.spec.seed,
            exclusions: &job.exclusions,
            stochastic: job.stochastic,
        }
    }
}

/// One selection in progress, chunk by chunk: the steps after the rows
/// (or the logits the GPU computed for them) are in a row buffer.
pub(crate) struct Chunked<'r> {
    pub(crate) gpu: &'r Gpu,
    scoring: Scoring<'r>,
    pub(crate) bufs: Buffers,
    base: Params,
    classes: usize,
    /// The first global row of the current chunk.
    g0: u64,
    /// The bound on |GPU f32 priority − canonical priority| for the
    /// current chunk (0 where each row carries its own interval).
    pub(crate) bound: f64,
    /// What the rows are ranked by: their priorities, or a stochastic
    /// batch's keys.
    keys: RowKeys,
    top: TopK<Keyed>,
    pub(crate) phases: Phases,
    refined: u64,
}

impl<'r> Chunked<'r> {
    /// Buffers for chunks of up to `max_rows` rows of `c` values, scored as
    /// `input` says, and the parameters every chunk shares.
    pub(crate) fn new(
        gpu: &'r Gpu,
        job: &'r RowJob,
        k: usize,
        c: usize,
        max_rows: u64,
        input: &InputForm,
        bound: f64,
    ) -> Result<Chunked<'r>> {
        Chunked::with_width(gpu, job.into(), k, c, c, max_rows, input, bound)
    }

    /// A selection over a multi-label pool of probabilities: each row gets
    /// the interval `multilabel_bounds` proves around its f32 priority
    /// (the kernel's `score_multi`), like the forward path's logits.
    pub(crate) fn multilabel(
        gpu: &'r Gpu,
        job: &'r Job,
        spec: &MultiSpec,
        k: usize,
        c: usize,
        max_rows: u64,
    ) -> Result<Chunked<'r>> {
        let bound = multilabel_bounds(spec, c);
        let mut run = Chunked::with_interval(gpu, job, k, (c, c), max_rows, bound)?;
        let card_hi = spec.cardinality as f32;
        run.base.card_hi = card_hi;
        run.base.card_lo = (spec.cardinality - card_hi as f64) as f32;
        run.base.beta = spec.beta as f32;
        Ok(run)
    }

    /// A selection over T samples of C values a row, each sample a plane
    /// of the chunk's rows (the kernel's `score_samples`), and `extra`
    /// values a row after the planes (EMCM's: the model's plane, then the
    /// rows' D features, `src/regression/gpu.rs`): each row gets the
    /// interval `half + rel · |priority|` around its f32 score, as the
    /// multi-label rows do.
    pub(crate) fn samples(
        gpu: &'r Gpu,
        job: &'r Job,
        k: usize,
        (t, c, extra): (usize, usize, usize),
        max_rows: u64,
        bound: (f64, f64),
    ) -> Result<Chunked<'r>> {
        let mut run = Chunked::with_interval(gpu, job, k, (c, t * c + extra), max_rows, bound)?;
        run.base.input = codes::INPUT_SAMPLES;
        run.base.samples = t as u32;
        Ok(run)
    }

    /// Samples whose T planes the GPU made itself (MC dropout,
    /// `crate::features`), with each row's relative error ρ in the plane
    /// after them: its interval widens by what ρ moves its score, from the
    /// row's own values (`mc_moved` in `shaders/select.wgsl`).
    pub(crate) fn per_row_rho(&mut self) {
        self.base.mc = 1;
    }

    /// A selection whose kernel gives each row the interval
    /// `half + rel · |priority|` around its f32 priority: the radix select
    /// cuts on the lower ends and keeps every row whose upper end reaches
    /// the cut, so the cut itself needs no slack. Rows of `c` classes,
    /// `width` values apart.
    fn with_interval(
        gpu: &'r Gpu,
        job: &'r Job,
        k: usize,
        (c, width): (usize, usize),
        max_rows: u64,
        (half, rel): (f64, f64),
    ) -> Result<Chunked<'r>> {
        let scoring = Scoring {
            query: job.query,
            log_base: job.log_base,
            seed: job.seed,
            exclusions: &job.exclusions,
            stochastic: job.stochastic,
        };
        let mut run = Chunked::with_width(gpu, scoring, k, c, width, max_rows, &job.input, 0.0)?;
        run.base.lenient = 1;
        run.base.half = f32_at_least(half);
        run.base.rel = f32_at_least(rel);
        Ok(run)
    }

    /// [`Chunked::new`] with rows `width` values apart in the row buffers.
    #[allow(clippy::too_many_arguments)]
    fn with_width(
        gpu: &'r Gpu,
        scoring: Scoring<'r>,
        k: usize,
        c: usize,
        width: usize,
        max_rows: u64,
        input: &InputForm,
        bound: f64,
    ) -> Result<Chunked<'r>> {
        let r_max = max_rows.max(1) as usize;
        let bufs = Buffers::new(gpu, r_max, width);
        gpu.wait()?;
        let (tol, slack, inv_temp) = match *input {
            // Twice the CPU's slack: the GPU's f32 sum may round differently.
            InputForm::Probs { sum_tol, .. } => {
                (sum_tol as f32, (4.0 * c as f64 / 16_777_216.0) as f32, 1.0)
            }
            InputForm::Logits { temperature } => (0.0, 0.0, (1.0 / temperature) as f32),
            InputForm::MultiLabel { .. } | InputForm::Regression(_) => (0.0, 0.0, 1.0),
        };
        let base = Params {
            classes: c as u32,
            strategy: codes::strategy(scoring.query),
            input: codes::input(input),
            tol,
            slack,
            inv_temp,
            inv_ln_b: (1.0 / scoring.log_base.ln()) as f32,
            seed_lo: scoring.seed as u32,
            seed_hi: (scoring.seed >> 32) as u32,
            width: width as u32,
            hi_at: r_max as u32,
            ..Params::default()
        };
        let keys = RowKeys::new(scoring.query, scoring.stochastic, scoring.seed)
            .ok_or_else(super::softrank_needs_the_pool)?;
        let mut run = Chunked {
            gpu,
            scoring,
            bufs,
            base,
            classes: c,
            g0: 0,
            bound,
            keys,
            top: TopK::new(k),
            phases: Phases::default(),
            refined: 0,
        };
        run.draw();
        Ok(run)
    }

    /// A stochastic batch's parameters: the kernel bounds each row's key
    /// (`store` in `shaders/select.wgsl`), so a chunk's one bound becomes
    /// each row's interval and the cut needs no slack.
    fn draw(&mut self) {
        let Some(noise) = self.keys.noise() else {
            return;
        };
        let p = &mut self.base;
        p.noise = if noise.power {
            codes::NOISE_POWER
        } else {
            codes::NOISE_SOFTMAX
        };
        p.v_shift = noise.shift as f32;
        p.inv_beta = noise.inv_beta as f32;
        p.nseed_lo = noise.key as u32;
        p.nseed_hi = (noise.key >> 32) as u32;
        p.ln_abs = f32_at_least(4.0 * LN_ABS_ERR);
        p.ln_rel = f32_at_least(4.0 * LN_REL_ERR);
        p.half = f32_at_least(self.bound);
        self.bound = 0.0;
    }

    /// A selection over logits the GPU computes itself from features: each
    /// row holds `c` logits and then the bound on their distance from the
    /// CPU's, which the score kernel turns into an interval per row
    /// (`shaders/select.wgsl`, `forward_bound`; the constants are those of
    /// `crate::features`' GPU module). Rows it cannot score go to the host
    /// instead of being reported invalid.
    pub(crate) fn from_forward(
        gpu: &'r Gpu,
        job: &'r RowJob,
        k: usize,
        c: usize,
        max_rows: u64,
        [g, kc, kc_m1, ln_c]: [f64; 4],
    ) -> Result<Chunked<'r>> {
        let input = InputForm::Logits { temperature: 1.0 };
        // The intervals carry the bound: the cut itself needs no slack.
        let mut run = Chunked::with_width(gpu, job.into(), k, c, c + 1, max_rows, &input, 0.0)?;
        run.base.lenient = 1;
        run.base.g = f32_at_least(g);
        run.base.kc = f32_at_least(kc);
        run.base.kc_m1 = f32_at_least(kc_m1);
        run.base.ln_c = f32_at_least(ln_c);
        Ok(run)
    }

    /// The chunk's exclusions, cleared counters and parameters.
    pub(crate) fn parameters(&mut self, g0: u64, rows: u64) -> Result<()> {
        let t = Instant::now();
        let n = rows as usize;
        self.g0 = g0;
        let mut bits = vec![0u32; n.div_ceil(32).max(1)];
        for &e in self.scoring.exclusions.within(g0, g0 + n as u64) {
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

    /// Queues the scoring of row buffer `slot` (the caller waits, after
    /// staging the next chunk's rows into the other buffer meanwhile).
    pub(crate) fn launch_score(&self, slot: usize) {
        let rows = self.base.rows;
        self.gpu
            .dispatch(&self.gpu.score, &self.bufs.binds[slot], rows);
    }

    /// Rows the GPU could not decide go through the canonical path; an
    /// invalid row is reported as the CPU reports it: the first bad row of
    /// the chunk, which is the first of the pool (earlier chunks had none).
    pub(crate) fn check_rows(&mut self, rescore: &mut dyn Rescore) -> Result<()> {
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
        // Undecided rows before the first invalid one may be bad too.
        let rows: Vec<u64> = undecided
            .into_iter()
            .filter(|&r| r < first_invalid)
            .map(|r| self.g0 + r as u64)
            .collect();
        for r in rescore.ranked(&rows)? {
            self.top.offer(self.keyed(r));
        }
        self.phases.candidates += rows.len() as u64;
        self.refined += rows.len() as u64;
        if first_invalid != u32::MAX {
            let index = self.g0 + first_invalid as u64;
            rescore.ranked(&[index])?;
            return Err(Error::Gpu(format!(
                "the GPU flagged global row {index} as invalid, but its values are valid"
            )));
        }
        Ok(())
    }

    /// Radix select of the chunk's k-th key, above the floor the kept rows
    /// already prove: 8-bit histogram passes from the top digit down, until
    /// the boundary bucket holds at most 1,024 rows. Returns the key at and
    /// above which rows are compacted.
    pub(crate) fn radix_cut(&mut self, slot: usize, k: usize) -> Result<u32> {
        let t = Instant::now();
        let bound = self.bound;
        if !bound.is_finite() {
            // No bound (the forward pass overflowed): every row is a
            // candidate.
            self.phases.topk += t.elapsed();
            return Ok(0);
        }
        let floor = self
            .top
            .worst()
            .map_or(0, |w| ordered(f32_at_most(w.key - bound)));
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
            gpu.dispatch(&gpu.histogram, &bufs.binds[slot], rows);
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
    pub(crate) fn compact(&mut self, slot: usize, cut: u32) -> Result<()> {
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
            .dispatch(&self.gpu.compact, &self.bufs.binds[slot], rows);
        self.gpu.wait()?;
        self.phases.topk += t.elapsed();
        Ok(())
    }

    /// Reads the candidates back and offers each with its canonical
    /// priority.
    pub(crate) fn refine(&mut self, rescore: &mut dyn Rescore) -> Result<()> {
        let t = Instant::now();
        let (gpu, bufs) = (self.gpu, &self.bufs);
        let found = gpu.read_u32(&bufs.counters, 4, &bufs.staging)?[codes::COUNT_CANDIDATES];
        let n = self.base.rows as usize;
        let pairs = gpu.read_u32(&bufs.cand, 2 * (found as usize).min(n), &bufs.staging)?;
        self.phases.readback += t.elapsed();
        let t = Instant::now();
        // Compacted rows were scored, hence valid.
        let rows: Vec<u64> = pairs
            .chunks_exact(2)
            .map(|p| self.g0 + p[0] as u64)
            .collect();
        for (r, p) in rescore
            .ranked(&rows)?
            .into_iter()
            .zip(pairs.chunks_exact(2))
        {
            let approx = unordered(p[1]) as f64;
            let r = self.keyed(r);
            self.phases.max_score_diff = self.phases.max_score_diff.max((approx - r.key).abs());
            self.top.offer(r);
        }
        self.phases.candidates += rows.len() as u64;
        self.refined += rows.len() as u64;
        self.phases.refine += t.elapsed();
        Ok(())
    }

    /// A canonically scored row with its key.
    fn keyed(&self, r: Ranked) -> Keyed {
        Keyed {
            key: self.keys.key(r.priority, r.index),
            index: r.index,
            priority: r.priority,
        }
    }

    /// The selection of all the chunks seen, and where the time went.
    pub(crate) fn finish(self, pool_rows: u64) -> (Selection, Phases) {
        let query = self.scoring.query;
        self.finish_as(query, pool_rows)
    }

    /// [`Chunked::finish`], the priorities read as `query`'s scores.
    fn finish_as(self, query: Query, pool_rows: u64) -> (Selection, Phases) {
        let sel = Selection::from_topk(
            query,
            self.top,
            pool_rows,
            self.scoring.exclusions.len() as u64,
            self.refined,
        );
        (sel, self.phases)
    }
}
