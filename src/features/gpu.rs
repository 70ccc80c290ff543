//! Selecting straight from features on the GPU: chunks of feature rows are
//! uploaded (uint8 as bytes, widened on the device through a table of the
//! CPU's own values), go through the model's layers in WGSL
//! (`shaders/forward.wgsl`: tiled matrix products, bias, ReLU), and their
//! logits through the same softmax, score and radix select as a logit pool
//! (`shaders/select.wgsl`). Weights are uploaded once; the next chunk is
//! read and staged while the current one runs. With the samples a model
//! makes ([`select_members`]: MC dropout, a committee) each chunk runs T
//! passes (MC dropout's with the CPU's masks), each a sample plane of the
//! disagreement kernel.
//!
//! # Why the GPU's selection is exactly the CPU's
//!
//! The GPU's logits differ from the CPU's: another summation order, and
//! WGSL may fuse multiply-adds or flush subnormals. The GPU therefore only
//! filters: every row it returns is re-scored on the CPU, by the CPU model
//! in the tile it runs in during `alpool predict` ([`ModelRows`]), so the
//! canonical priority is the one the CPU path computes. What must be shown
//! is that no row of the true top k is filtered out, which holds if
//! |GPU priority − canonical priority| ≤ B for every row (the radix cut
//! keeps every row within 2B of the k-th key, as for any pool). B is:
//!
//! 1. *Logits.* Both backends start from the same f32 features (the host
//!    converts and scales them, or the table holds the CPU's bits). For a
//!    layer with n inputs, any order of the n products and n + 1 sums,
//!    fused or not, is within γ(n+1)·(|W||a| + |b|) + (2n + 2)·2⁻¹²⁶ of the
//!    exact affine map of its own input a (Higham, Thm 3.5; the last term is
//!    flushed subnormals), with γ(m) = m·u/(1 − m·u), u = 2⁻²⁴. With
//!    Δ the difference of the two backends' activations (ReLU is
//!    1-Lipschitz, so it never grows), and the CPU's input within Δ of the
//!    GPU's: Δ' ≤ (1 + γ)|W|Δ + 2γ(|W||a| + |b|) + 2τ, a the GPU's input.
//!    In 2-norms, with F ≥ ‖|W|‖₂ (the smaller of the Frobenius norm and
//!    √(‖|W|‖₁‖|W|‖∞)) and s = ‖a‖₂: E' ≤ (1 + γ)F·E + 2γ(F·s + ‖b‖) + 2τ√out,
//!    E₀ = 0; for the logits, per class: ε ≤ (1 + γ)·max‖w_o‖·E +
//!    2γ(max‖w_o‖·s + max|b|) + 2τ. The GPU measures the largest s of every
//!    layer's input rows in the chunk (`norm`), rounded up on the host.
//! 2. *Probabilities.* Logits within ε move an exact softmax by a factor in
//!    [e^−2ε, e^2ε]. The CPU's f32 softmax (max shift, libm's `expf` within
//!    one ulp, an f32 sum, one reciprocal, one product) is within a factor
//!    e^(2u·R)(1 + 2u)²(1 + u)²(1 + γ(C))/(1 − γ(C)) of its own exact
//!    softmax, R ≤ 2(‖z‖₂ + ε) the logits' spread. So each CPU probability
//!    is the exact softmax of the GPU's logits times 1 + η, |η| ≤ δ.
//! 3. *Scores.* A relative change of at most δ in every probability moves
//!    least confidence by δ, margin by 2δ, ratio by 2δ/(1 − δ), entropy by
//!    (δ·ln C + (1 + δ)·δ/(1 − δ))/ln b, and random not at all. The GPU's
//!    own f32 softmax and score of its logits are within
//!    [`gpu_bound`] of the exact ones (as for any logit pool).
//!
//! B is that bound plus twice the score term. An overflow anywhere (a norm
//! that is not finite, ε above 1) leaves no bound: every row of the chunk
//! is re-scored. `tests/suite/gpu.rs` checks the logits against ε and the
//! selections against the CPU's.

use std::time::Instant;

use bytemuck::{Pod, Zeroable};
use rayon::prelude::*;
use wgpu::util::DeviceExt;

use super::{FeaturePool, Members};
use crate::backend::gpu::{Chunked, Gpu, Phases, Rescore, bind_buffers, module, program};
use crate::backend::{Progress, RowJob, canonical_ranked};
use crate::error::{Error, Result};
use crate::job::Job;
use crate::learner::{Mlp, TILE_ROWS};
use crate::pool::npy::DType;
use crate::query::{Disagreement, InputForm, Query, Strategy};
use crate::score::Ranked;
use crate::score::disagree::disagreement;
use crate::score::fast::{gpu_bound, gpu_samples_bound, samples_moved_bound};
use crate::select::Selection;

const U: f64 = 1.0 / 16_777_216.0;
/// 2⁻¹²⁶: the most a flushed subnormal loses.
const TINY: f64 = 1.1754943508222875e-38;

fn gamma(m: f64) -> f64 {
    let x = m * U;
    if x < 0.5 {
        x / (1.0 - x)
    } else {
        f64::INFINITY
    }
}

/// The smallest f32 not below `x`.
fn f32_up(x: f64) -> f32 {
    let f = x as f32;
    if (f as f64) < x { f.next_up() } else { f }
}

/// A layer's bound factors (module docs, step 1), each raised to cover
/// the f32 evaluation of the bound itself: its two sums of n non-negative
/// terms and the four operations that combine them.
fn layer_factors(inp: usize) -> (f32, f32, f32) {
    let n = inp as f64;
    let g = gamma(n + 1.0);
    let own = (1.0 + 2.0 * gamma(n + 4.0)) * (1.0 + 1e-6);
    (
        f32_up((1.0 + g) * own),
        f32_up(2.0 * g * own),
        f32_up(8.0 * (n + 1.0) * TINY),
    )
}

/// The bound's factors for a kept unit's scaling by `keep` (MC dropout):
/// each side rounds its own product once, so for values a (the CPU's) and
/// b (the GPU's) within d, |fl(a·keep) − fl(b·keep)| ≤ keep·(1 + u)·d +
/// 2u·keep·|b|; raised to cover the bound's own f32 evaluation.
fn keep_factors(keep: f32) -> (f32, f32) {
    let k = keep as f64 * (1.0 + 4.0 * U) * (1.0 + 1e-6);
    (f32_up(k * (1.0 + U)), f32_up(2.0 * U * k))
}

/// The largest relative error a plane the GPU makes may carry: a pass
/// beyond it leaves its row to the host.
const MC_RHO_MAX: f64 = 0.25;

/// The constants of the score kernel's per-row bound (module docs, steps 2
/// and 3): the GPU's own softmax-and-score bound, the CPU softmax's
/// relative error factor and that factor − 1, ln C.
fn score_constants(strategy: Strategy, ln_b: f64, classes: usize) -> [f64; 4] {
    let c = classes as f64;
    let gc = gamma(c);
    let kc = (1.0 + 2.0 * U).powi(2) * (1.0 + U).powi(2) * (1.0 + gc) / (1.0 - gc);
    [
        gpu_bound(
            strategy,
            &InputForm::Logits { temperature: 1.0 },
            ln_b,
            classes,
        ),
        kc * (1.0 + 1e-12),
        (kc - 1.0) * (1.0 + 1e-6),
        c.ln(),
    ]
}

/// `FParams` in `shaders/forward.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
struct FParams {
    rows: u32,
    inp: u32,
    out: u32,
    relu: u32,
    lut_cols: u32,
    stride: u32,
    words: u32,
    first: u32,
    dst_width: u32,
    c_d: f32,
    c_p: f32,
    tau: f32,
    drop: u32,
    layer: u32,
    key_lo: u32,
    key_hi: u32,
    rate: f32,
    keep: f32,
    c_keep: f32,
    c_keep_a: f32,
    sample: u32,
    samples: u32,
    flags: u32,
    kc: f32,
    kc_m1: f32,
    rho_max: f32,
}

/// One dispatch of the forward pass: its pipeline, parameters and
/// bindings (one per input slot).
struct Stage {
    kind: Kind,
    /// Whether every MC-dropout pass of a chunk shares it (it runs once a
    /// chunk, in [`Forward::launch_passes`]).
    shared: bool,
    params: FParams,
    uniform: wgpu::Buffer,
    binds: Vec<wgpu::BindGroup>,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Widen,
    Layer,
    Finish,
    /// A pass's logits as a sample plane (`select_members`).
    Plane,
    /// An MC-dropout pass's ReLU and mask of the first layer's shared
    /// product.
    Mask,
}

/// Where a forward pass's probabilities go as sample planes (the samples
/// kernel's row buffer, `select_members`), and the constants of their bound.
pub(crate) struct Planes<'b> {
    planes: &'b wgpu::Buffer,
    /// T.
    samples: usize,
    /// Whether the strategy counts votes (each pass's argmax must be the
    /// CPU's).
    votes: bool,
    /// Whether the canonical values are the CPU's divided by their sum.
    renormalized: bool,
    /// The CPU softmax's relative error factor, and it − 1.
    kc: f64,
    kc_m1: f64,
}

/// The model on the device and the buffers of the forward pass.
pub(crate) struct Forward<'g> {
    gpu: &'g Gpu,
    pipelines: [wgpu::ComputePipeline; 5],
    /// The features of each slot as uploaded: f32 rows, or packed bytes.
    inputs: [wgpu::Buffer; 2],
    stages: Vec<Stage>,
}

/// The device buffers of a forward pass.
struct Buffers {
    /// The features of each slot as uploaded.
    inputs: [wgpu::Buffer; 2],
    /// uint8 features widened to f32 (f32 features are the first layer's
    /// input as uploaded).
    widened: Option<wgpu::Buffer>,
    /// The byte → value table of uint8 features.
    lut: wgpu::Buffer,
    /// Placeholders for unused bindings.
    none: wgpu::Buffer,
    none_rw: wgpu::Buffer,
    /// Each layer's weights and biases.
    weights: Vec<(wgpu::Buffer, wgpu::Buffer)>,
    /// Each hidden layer's activations, and each layer's error bounds.
    hidden: Vec<wgpu::Buffer>,
    bounds: Vec<wgpu::Buffer>,
    /// With MC dropout and a hidden layer, the first layer's affine map
    /// before the ReLU and its bound, which every pass of a chunk shares.
    shared: Option<(wgpu::Buffer, wgpu::Buffer)>,
}

impl Buffers {
    fn new(gpu: &Gpu, model: &Mlp, (bytes_input, r_max): (bool, usize), dropout: bool) -> Buffers {
        use wgpu::BufferUsages as U;
        let d = model.inputs();
        let init = |label: &str, data: &[f32]| {
            let data: &[f32] = if data.is_empty() { &[0.0; 4] } else { data };
            gpu.device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(label),
                    contents: bytemuck::cast_slice(data),
                    usage: U::STORAGE,
                })
        };
        let input_bytes = if bytes_input {
            r_max * d
        } else {
            r_max * d * 4
        } as u64;
        let layers = model.layers();
        let per_row =
            |label: &str, width: usize| gpu.buffer(label, (r_max * width * 4) as u64, U::STORAGE);
        Buffers {
            inputs: [
                gpu.buffer("features A", input_bytes, U::STORAGE | U::COPY_DST),
                gpu.buffer("features B", input_bytes, U::STORAGE | U::COPY_DST),
            ],
            widened: bytes_input.then(|| per_row("widened", d)),
            lut: init("table", &byte_table(model)),
            none: init("unused", &[]),
            none_rw: gpu.buffer("unused rw", 16, U::STORAGE),
            weights: layers
                .iter()
                .map(|l| (init("weights", &l.w), init("biases", &l.b)))
                .collect(),
            hidden: layers[..layers.len() - 1]
                .iter()
                .map(|l| per_row("activations", l.out))
                .collect(),
            bounds: layers.iter().map(|l| per_row("bounds", l.out)).collect(),
            shared: (dropout && layers.len() > 1).then(|| {
                let w = layers[0].out;
                (per_row("first layer", w), per_row("first bounds", w))
            }),
        }
    }

    /// The input of layer `l` in slot `s`.
    fn act(&self, l: usize, s: usize) -> &wgpu::Buffer {
        match l {
            0 => self.widened.as_ref().unwrap_or(&self.inputs[s]),
            _ => &self.hidden[l - 1],
        }
    }
}

/// One stage: its parameters in a uniform, and a bind group per slot.
fn make_stage(
    gpu: &Gpu,
    layout: &wgpu::BindGroupLayout,
    (kind, shared): (Kind, bool),
    params: FParams,
    slots: [[&wgpu::Buffer; 8]; 2],
) -> Stage {
    let uniform = gpu
        .device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("forward params"),
            contents: bytemuck::bytes_of(&params),
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        });
    let binds = slots
        .iter()
        .map(|all| {
            let mut buffers = vec![&uniform];
            buffers.extend(all.iter().copied());
            bind_buffers(&gpu.device, layout, "alpool forward", &buffers)
        })
        .collect();
    Stage {
        kind,
        shared,
        params,
        uniform,
        binds,
    }
}

impl<'g> Forward<'g> {
    /// The model's weights on the device, and buffers for `r_max` rows
    /// whose logits (and their bound, one more column) go to `logits`.
    pub(crate) fn new(
        gpu: &'g Gpu,
        model: &Mlp,
        bytes_input: bool,
        r_max: usize,
        logits: &wgpu::Buffer,
    ) -> Forward<'g> {
        Forward::build(
            gpu,
            model,
            (bytes_input, r_max),
            logits,
            (None, false, false),
        )
    }

    /// [`Forward::new`], and with `planes` each pass ([`Forward::launch_pass`])
    /// writes its probabilities as one sample plane; with `dropout` it masks
    /// the hidden layers as [`McPass`](crate::learner::McPass) does, and
    /// with `share` too the passes of a chunk share the features and the
    /// first layer's product ([`Forward::launch_passes`]; without it, the
    /// first layer masks its own output in every pass: the same bits, the
    /// tests' reference).
    fn build(
        gpu: &'g Gpu,
        model: &Mlp,
        (bytes_input, r_max): (bool, usize),
        logits: &wgpu::Buffer,
        (planes, dropout, share): (Option<Planes>, bool, bool),
    ) -> Forward<'g> {
        let (layout, pipelines) = forward_program(gpu);
        let (d, c) = (model.inputs(), model.classes());
        let b = Buffers::new(gpu, model, (bytes_input, r_max), dropout && share);
        let mut stages = Vec::new();
        // With MC dropout the masks act after the first layer's product:
        // the features and that product are the same in every pass of a
        // chunk, and made once ([`Forward::launch_passes`]).
        let mut stage = |kind, params, slots| {
            stages.push(make_stage(gpu, &layout, kind, params, slots));
        };
        let none = &b.none;
        if let Some(wide) = &b.widened {
            let cols = if model.scaler().is_some() { d } else { 1 };
            let params = FParams {
                inp: d as u32,
                lut_cols: cols as u32,
                ..FParams::default()
            };
            let slot = |s: usize| {
                [
                    none,
                    none,
                    none,
                    wide,
                    &b.inputs[s],
                    &b.lut,
                    none,
                    &b.none_rw,
                ]
            };
            stage((Kind::Widen, dropout && share), params, [slot(0), slot(1)]);
        }
        let layers = model.layers();
        for l in 0..layers.len() {
            let last = l + 1 == layers.len();
            let params = layer_params(model, l, dropout);
            let dst = if last { logits } else { &b.hidden[l] };
            let din = if l == 0 { none } else { &b.bounds[l - 1] };
            let (w, bias) = &b.weights[l];
            if let (0, Some((pre, pre_bound))) = (l, &b.shared) {
                // Once a chunk: the affine map alone; then each pass's ReLU
                // and mask.
                let once = FParams {
                    relu: 0,
                    drop: 0,
                    ..params
                };
                let slot = |s: usize| [b.act(0, s), w, bias, pre, none, none, none, pre_bound];
                stage((Kind::Layer, true), once, [slot(0), slot(1)]);
                let slot = [pre, none, none, dst, none, none, pre_bound, &b.bounds[0]];
                stage((Kind::Mask, false), params, [slot, slot]);
                continue;
            }
            let slot = |s: usize| [b.act(l, s), w, bias, dst, none, none, din, &b.bounds[l]];
            stage((Kind::Layer, false), params, [slot(0), slot(1)]);
        }
        let params = FParams {
            inp: c as u32,
            dst_width: c as u32 + 1,
            ..FParams::default()
        };
        let last = &b.bounds[layers.len() - 1];
        let slot = [none, none, none, logits, none, none, last, &b.none_rw];
        stage((Kind::Finish, false), params, [slot, slot]);
        if let Some(mc) = planes {
            let params = FParams {
                inp: c as u32,
                samples: mc.samples as u32,
                flags: mc.votes as u32 | (mc.renormalized as u32) << 1,
                kc: f32_up(mc.kc),
                kc_m1: f32_up(mc.kc_m1),
                rho_max: MC_RHO_MAX as f32,
                ..FParams::default()
            };
            let slot = [logits, none, none, mc.planes, none, none, none, &b.none_rw];
            stage((Kind::Plane, false), params, [slot, slot]);
        }
        Forward {
            gpu,
            pipelines,
            inputs: b.inputs,
            stages,
        }
    }

    /// Queues the whole forward pass of `rows` rows in `slot`.
    pub(crate) fn launch(&mut self, slot: usize, rows: u32) {
        self.launch_pass(slot, rows, None);
    }

    /// [`Forward::launch`], and with an MC-dropout pass (`pass`, its
    /// masks' key `substream(seed, pass)`) its masks and its sample plane.
    pub(crate) fn launch_pass(&mut self, slot: usize, rows: u32, mc: Option<(u32, u64)>) {
        self.launch_stages(slot, rows, mc, true);
    }

    /// T MC-dropout passes (masks seeded by `seed`) of `rows` rows in
    /// `slot`, each [`Forward::launch_pass`]'s bits, with the stages every
    /// pass shares (the features and the first layer's product) run once.
    pub(crate) fn launch_passes(&mut self, slot: usize, rows: u32, (t, seed): (usize, u64)) {
        for pass in 0..t {
            let key = crate::rng::substream(seed, pass as u64);
            self.launch_stages(slot, rows, Some((pass as u32, key)), pass == 0);
        }
    }

    /// One submission of the stages (the shared ones too, with `shared`):
    /// each stage's uniform is written before it, so the next pass's
    /// writes wait for this submission.
    fn launch_stages(&mut self, slot: usize, rows: u32, mc: Option<(u32, u64)>, shared: bool) {
        let gpu = self.gpu;
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        for st in self.stages.iter_mut().filter(|st| shared || !st.shared) {
            st.params.rows = rows;
            if let Some((pass, key)) = mc {
                st.params.sample = pass;
                (st.params.key_lo, st.params.key_hi) = (key as u32, (key >> 32) as u32);
            }
            let groups = match st.kind {
                Kind::Widen => {
                    st.params.words = (rows as usize * st.params.inp as usize).div_ceil(4) as u32;
                    gpu.grid(st.params.words)
                }
                Kind::Finish | Kind::Plane => gpu.grid(rows),
                Kind::Mask => gpu.grid(rows * st.params.out),
                Kind::Layer => (rows.div_ceil(64), st.params.out.div_ceil(64), 0),
            };
            st.params.stride = groups.2;
            gpu.queue
                .write_buffer(&st.uniform, 0, bytemuck::bytes_of(&st.params));
            let pipeline = &self.pipelines[match st.kind {
                Kind::Widen => 0,
                Kind::Layer => 1,
                Kind::Finish => 2,
                Kind::Plane => 3,
                Kind::Mask => 4,
            }];
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("alpool forward"),
                timestamp_writes: None,
            });
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, &st.binds[slot], &[]);
            pass.dispatch_workgroups(groups.0, groups.1, 1);
        }
        gpu.queue.submit([enc.finish()]);
    }
}

/// `shaders/forward.wgsl` (after `shaders/rng.wgsl`): its bind group
/// layout and its five entry points.
fn forward_program(gpu: &Gpu) -> (wgpu::BindGroupLayout, [wgpu::ComputePipeline; 5]) {
    let module = module(
        &gpu.device,
        "forward.wgsl",
        &[
            include_str!("../../shaders/rng.wgsl"),
            include_str!("../../shaders/forward.wgsl"),
        ],
    );
    program(
        &gpu.device,
        &module,
        "alpool forward",
        &[true, true, true, false, true, true, true, false],
        ["widen", "layer", "finish", "plane", "mask"],
    )
}

/// Layer `l`'s parameters: its shape, its bound's factors and, with
/// `dropout`, the masks after a hidden layer's ReLU.
fn layer_params(model: &Mlp, l: usize, dropout: bool) -> FParams {
    let layers = model.layers();
    let (layer, last) = (&layers[l], l + 1 == layers.len());
    let (c_d, c_p, tau) = layer_factors(layer.inp);
    let rate = model.config().dropout;
    // As the CPU rounds it (`logits_into`).
    let keep = 1.0 / (1.0 - rate);
    let (c_keep, c_keep_a) = keep_factors(keep);
    FParams {
        inp: layer.inp as u32,
        out: layer.out as u32,
        relu: !last as u32,
        first: (l == 0) as u32,
        dst_width: if last {
            model.classes() as u32 + 1
        } else {
            layer.out as u32
        },
        c_d,
        c_p,
        tau,
        drop: (dropout && !last) as u32,
        layer: l as u32,
        rate,
        keep,
        c_keep,
        c_keep_a,
        ..FParams::default()
    }
}

/// What the device widens a byte `v` of column j into: `v / 255` as the
/// CPU computes it, scaled as the CPU scales it (one table per column with
/// a scaler, one for all without).
fn byte_table(model: &Mlp) -> Vec<f32> {
    let unit: Vec<f32> = (0..256).map(|v| v as f32 / 255.0).collect();
    match model.scaler() {
        None => unit,
        Some(s) => {
            let d = model.inputs();
            // Row v of a 256 x D matrix holds byte v in every column.
            let mut t: Vec<f32> = unit
                .iter()
                .flat_map(|&v| std::iter::repeat_n(v, d))
                .collect();
            s.apply_in_place(&mut t);
            // Transposed: column j's 256 values together.
            (0..d)
                .flat_map(|j| (0..256).map(move |v| (j, v)))
                .map(|(j, v)| t[v * d + j])
                .collect()
        }
    }
}

/// Candidate rows scored canonically: the CPU model's probabilities for
/// the row in the tile `predict` runs it in, scored as any pool row.
struct ModelRows<'r> {
    model: &'r Mlp,
    features: &'r FeaturePool,
    job: &'r RowJob,
    probs: Vec<f64>,
}

impl Rescore for ModelRows<'_> {
    fn ranked(&mut self, rows: &[u64]) -> Result<Vec<Ranked>> {
        let c = self.model.classes();
        let p = self.features.probabilities_of(self.model, rows)?;
        rows.iter()
            .zip(p.chunks_exact(c))
            .map(|(&index, row)| {
                canonical_ranked(self.job, row, index, &mut self.probs).map_err(|problem| {
                    Error::BadRow {
                        path: "<model output>".into(),
                        row: index,
                        global: index,
                        problem,
                    }
                })
            })
            .collect()
    }
}

/// Rows per chunk: what the host block, every binding and the layer
/// kernel's grid (65,535 tiles of 64 rows) allow.
fn forward_chunk_rows(gpu: &Gpu, model: &Mlp, features: &FeaturePool, asked: u64) -> u64 {
    let widest = model
        .layers()
        .iter()
        .map(|l| l.inp.max(l.out + 1))
        .max()
        .unwrap_or(1) as u64;
    let binding = gpu
        .limits
        .max_storage_buffer_binding_size
        .min(gpu.limits.max_buffer_size);
    rows_per_chunk(binding, widest, features.block_rows as u64, asked)
}

/// [`forward_chunk_rows`] from the numbers: the widest row of any buffer (f32
/// values) must fit `binding` bytes.
fn rows_per_chunk(binding: u64, widest: u64, block_rows: u64, asked: u64) -> u64 {
    let mut rows = (binding / (widest * 4)).min(65_535 * 64).min(block_rows);
    if asked > 0 {
        rows = rows.min(asked);
    }
    rows.max(1)
}

/// [`super::select_on`] on the GPU (module docs).
pub(crate) fn select(
    gpu: &Gpu,
    model: &Mlp,
    features: &FeaturePool,
    job: &RowJob,
    progress: &dyn Progress,
) -> Result<(Selection, Phases)> {
    features.check_model(model)?;
    let c = model.classes();
    let n = features.rows();
    let k = job.k.min(n as usize);
    if n > 0 {
        job.check(&crate::pool::Pool::from_f32(&[], c)?)?;
    }
    let max_rows = forward_chunk_rows(gpu, model, features, job.chunk_rows).min(n.max(1));
    let consts = score_constants(job.spec.strategy, job.spec.log_base.ln(), c);
    let mut run = Chunked::from_forward(gpu, job, k, c, max_rows, consts)?;
    if k == 0 || n == 0 {
        return Ok(run.finish(n));
    }
    let bytes_input = features.unit_images();
    let mut fwd = Forward::new(
        gpu,
        model,
        bytes_input,
        max_rows as usize,
        &run.bufs.rows[0],
    );
    let mut rescore = ModelRows {
        model,
        features,
        job,
        probs: vec![0f64; c],
    };
    let passes = (std::slice::from_mut(&mut fwd), &[model][..]);
    let launch = |fwds: &mut [Forward], slot, rows| fwds[0].launch(slot, rows);
    drive_chunks(
        &mut run,
        passes,
        features,
        (max_rows, k),
        &mut rescore,
        progress,
        launch,
    )?;
    Ok(run.finish(n))
}

/// The chunks of `features` through `run`, each model's forward pass
/// `fwds[i]` running `models[i]`: the next chunk's features upload (once a
/// model, each with its own scaling) while `launch(fwds, slot, rows)`
/// queues the current one's passes; then each is scored,
/// checked, cut, compacted and refined.
fn drive_chunks(
    run: &mut Chunked,
    (fwds, models): (&mut [Forward], &[&Mlp]),
    features: &FeaturePool,
    (max_rows, k): (u64, usize),
    rescore: &mut dyn Rescore,
    progress: &dyn Progress,
    mut launch: impl FnMut(&mut [Forward], usize, u32),
) -> Result<()> {
    let gpu = run.gpu;
    let chunks: Vec<_> = features.chunks(max_rows).collect();
    let mut staging = Upload::default();
    let stage = |staging: &mut Upload, fwds: &[Forward], slot, chunk| -> Result<()> {
        for (fwd, model) in fwds.iter().zip(models) {
            staging.stage(features, model, fwd, slot, chunk)?;
        }
        Ok(())
    };
    let t = Instant::now();
    stage(&mut staging, fwds, 0, chunks[0])?;
    run.phases.upload += t.elapsed();
    for (i, &(shard, start, end)) in chunks.iter().enumerate() {
        if progress.cancelled() {
            return Err(Error::Cancelled);
        }
        let g0 = features.shards[shard].first_row + start;
        run.parameters(g0, end - start)?;
        let t = Instant::now();
        launch(fwds, i % 2, (end - start) as u32);
        if let Some(&next) = chunks.get(i + 1) {
            let u = Instant::now();
            stage(&mut staging, fwds, (i + 1) % 2, next)?;
            run.phases.upload += u.elapsed();
        }
        gpu.wait()?;
        run.phases.forward += t.elapsed();
        let t = Instant::now();
        run.launch_score(0);
        gpu.wait()?;
        run.phases.score += t.elapsed();
        run.check_rows(rescore)?;
        let cut = run.radix_cut(0, k)?;
        run.compact(0, cut)?;
        run.refine(rescore)?;
        progress
            .advance((end - start) * (features.dim * features.shards[shard].dtype.size()) as u64);
    }
    Ok(())
}

/// The k rows of most disagreement among the T samples a model makes of
/// `features` (MC-dropout passes or a committee's members, [`Members`]), a
/// row-wise disagreement strategy on the GPU: the picks of
/// [`super::select_committee`].
///
/// Each chunk's features go up once (once a member for a committee, each
/// with its own scaling); each member runs its own layers, and each MC
/// pass runs the model's layers with
/// [`McPass`](crate::learner::McPass)'s masks (`shaders/forward.wgsl`: the same splitmix64 bits,
/// and a kept unit scaled by the CPU's f32 `1 / (1 − rate)`, whose rounding
/// the logits' bound ε carries, [`keep_factors`]), and `plane` writes its
/// f32 softmax as one sample plane of the samples kernel
/// (`score_samples`). Why the picks are the CPU's:
///
/// 1. Each CPU probability is the exact softmax of the GPU's logits
///    within δ₁ (module docs, step 2; 2δ₁/(1 − δ₁) once divided by its
///    sum, as `--renormalize`, the default for a model's outputs, reads
///    it), and the plane's f32 softmax (exp within 3 + 2|x| ulp, an f32
///    sum, a division within 2.5 ulp, doubled) within δ₂, so each plane
///    value is the CPU's within ρ = (δ₁ + δ₂)/(1 − δ₁), row by row and
///    pass by pass; a row keeps its largest ρ.
/// 2. With q = p(1 + η), |η| ≤ ρ, an entropy moves by
///    −Σ pη ln p − Σ p(1 + η) ln(1 + η), at most
///    ρ₁(H(q) + ρ₁S) + |S_q − S_p| + ρ²S (ρ₁ = ρ/(1 − ρ); Σ pη = S_q − S_p,
///    and (1 + η) ln(1 + η) − η ∈ [0, η²] for |η| ≤ 1/2). The sums are each
///    backend's own normalization, within (C + 8)·2⁻²³ of 1, and H(q) is the
///    kernel's own entropy plus its error: so a confident row, whose
///    entropies are small, keeps a small interval however large ρ is, and
///    the kernel filters where one bound for all rows (first order in ρ ln C)
///    would not. BALD (and kl-mean) move by the sum of the mean's and the
///    samples' mean entropy's moves, consensus entropy by the first;
///    mean-std by ρ₁ times the mean over classes of each class's largest
///    value. kl-max: KL(q_t‖q̄) − KL(p_t‖p̄) = Σ pη ln(p/p̄) +
///    Σ q ln((1 + η)/(1 + η̄)), at most ρ(KL + ‖p_t − p̄‖₁), twice
///    |S_q − S_p|, ρ‖p_t − p̄‖₁ and 4.3ρ²S: first order in the row's own
///    disagreement too. Values below float32's normal range, which a GPU
///    may flush, add what [`crate::score::fast::samples_moved_bound`] gives
///    them. The kernel (`mc_moved` in `shaders/select.wgsl`) doubles the
///    move and adds it to its own interval ([`gpu_samples_bound`]); ρ is at
///    most ρ_max = 1/4, where every step above holds.
/// 3. For the votes (variation ratio, vote entropy) each pass's argmax
///    must be the CPU's: where the largest logit is not ahead of every
///    other by more than 4ρ (which makes it the strict largest of both the
///    CPU's and the plane's probabilities), and wherever ρ > ρ_max, the
///    plane is written as zeros, which the kernel's sum check leaves to
///    the host.
///
/// Every candidate and every such row is re-scored by the CPU's own T
/// passes ([`FeaturePool::samples_of`]), so the picks are the CPU's.
pub(crate) fn select_members(
    gpu: &Gpu,
    members: Members,
    features: &FeaturePool,
    job: &Job,
    progress: &dyn Progress,
) -> Result<(Selection, Phases)> {
    let (d, renormalize) = members_query(members, features, job)?;
    // One forward pass on the device per model: a committee's members run
    // their own weights, MC dropout T passes of one model.
    let models: Vec<&Mlp> = match members {
        Members::Committee(models) => models.iter().collect(),
        Members::Dropout { model, .. } => vec![model],
    };
    let c = models[0].classes();
    let (t, n) = (members.len(), features.rows());
    let k = job.k.min(n as usize);
    let ln_b = job.log_base.ln();
    let (tol, bound) = planes_bound(d, (c, t), ln_b);
    let kernel_job = Job {
        input: InputForm::Probs {
            renormalize: false,
            sum_tol: tol,
        },
        ..job.clone()
    };
    let max_rows = members_chunk_rows(gpu, &models, features, t * c + 1, job.chunk_rows);
    let max_rows = max_rows.min(n.max(1));
    let mut run = Chunked::samples(gpu, &kernel_job, k, (t, c, 1), max_rows, bound)?;
    run.per_row_rho();
    if k == 0 || n == 0 {
        return Ok(run.finish(n));
    }
    let logits = gpu.buffer(
        "member logits",
        max_rows * (c as u64 + 1) * 4,
        wgpu::BufferUsages::STORAGE,
    );
    let consts = score_constants(Strategy::Entropy, ln_b, c);
    let dropout = matches!(members, Members::Dropout { .. });
    let io = (features.unit_images(), max_rows as usize);
    let mut fwds: Vec<Forward> = models
        .iter()
        .map(|m| {
            let planes = Planes {
                planes: &run.bufs.rows[0],
                samples: t,
                votes: matches!(d, Disagreement::VariationRatio | Disagreement::VoteEntropy),
                renormalized: renormalize,
                kc: consts[1],
                kc_m1: consts[2],
            };
            Forward::build(gpu, m, io, &logits, (Some(planes), dropout, true))
        })
        .collect();
    let mut rescore = PassRows {
        members,
        features,
        job,
        probs: Vec::new(),
        stored: Vec::new(),
        mean: Vec::new(),
        bufs: Default::default(),
    };
    let launch = |fwds: &mut [Forward], slot, rows| match members {
        Members::Dropout { seed, .. } => fwds[0].launch_passes(slot, rows, (t, seed)),
        Members::Committee(_) => {
            for (i, fwd) in fwds.iter_mut().enumerate() {
                fwd.launch_pass(slot, rows, Some((i as u32, 0)));
            }
        }
    };
    let sizes = (max_rows, k);
    let passes = (&mut fwds[..], &models[..]);
    drive_chunks(
        &mut run,
        passes,
        features,
        sizes,
        &mut rescore,
        progress,
        launch,
    )?;
    Ok(run.finish(n))
}

/// The planes' sum tolerance, and the interval `half + rel·|priority|` the
/// samples kernel gives every row before its own move (`mc_moved`).
fn planes_bound(d: Disagreement, (c, t): (usize, usize), ln_b: f64) -> (f64, (f64, f64)) {
    // Each plane is normalized by its own f32 sum (within (C + 8)·2⁻²³ of
    // 1), and the kernel's own f32 sum.
    let tol = 32.0 * (c as f64 + 8.0) * U;
    let (half, rel) = gpu_samples_bound(d, c, t, tol, ln_b);
    // Values below float32's normal range, which a GPU may flush.
    let tiny = samples_moved_bound(d, (c, t), tol, ln_b, 0.0);
    (tol, (half + tiny, rel))
}

/// Rows per chunk for the forward passes of `models` and a samples row of
/// `width` values: what every binding allows, and by default each model's
/// share of it (each member's buffers hold a chunk).
fn members_chunk_rows(
    gpu: &Gpu,
    models: &[&Mlp],
    features: &FeaturePool,
    width: usize,
    asked: u64,
) -> u64 {
    let rows = models
        .iter()
        .map(|m| forward_chunk_rows(gpu, m, features, asked))
        .min()
        .unwrap_or(1)
        .min(crate::backend::gpu::chunk_rows(gpu, width, asked));
    match asked {
        0 => (rows / models.len().max(1) as u64)
            .max(TILE_ROWS as u64)
            .min(rows),
        _ => rows,
    }
}

/// The strategy, and whether the canonical values are renormalized, of a
/// row-wise disagreement strategy over the samples `members` make, checked
/// as the CPU path checks them.
fn members_query(
    members: Members,
    features: &FeaturePool,
    job: &Job,
) -> Result<(Disagreement, bool)> {
    let Query::Disagree(d) = job.query else {
        return Err(Error::Config(format!(
            "{} does not run on the GPU over the samples a model makes",
            job.query
        )));
    };
    features.check_members(members)?;
    if let Members::Dropout { model, .. } = members {
        features.check_model(model)?;
    }
    job.input.check().map_err(Error::Config)?;
    let InputForm::Probs { renormalize, .. } = job.input else {
        return Err(Error::Config(format!(
            "{d} over the samples a model makes reads their probabilities: drop --input"
        )));
    };
    Ok((d, renormalize))
}

/// Candidate rows scored canonically: the CPU's own T passes of the rows
/// ([`FeaturePool::samples_of`], the bits `committee_blocks` gives them),
/// scored as the CPU path scores a committee's block.
struct PassRows<'r> {
    members: Members<'r>,
    features: &'r FeaturePool,
    job: &'r Job,
    probs: Vec<f64>,
    stored: Vec<f64>,
    mean: Vec<f64>,
    bufs: crate::pool::samples::ReadBufs,
}

impl Rescore for PassRows<'_> {
    fn ranked(&mut self, rows: &[u64]) -> Result<Vec<Ranked>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let t = self.members.len();
        let out = self.features.samples_of(self.members, rows)?;
        let samples = super::block_samples(&out, t, rows.len(), 0)?;
        let scratch = (&mut self.bufs, &mut self.stored);
        crate::disagree::read_canonical(
            &samples,
            self.job,
            (0, rows.len() as u64),
            scratch,
            &mut self.probs,
        )?;
        let Query::Disagree(d) = self.job.query else {
            return Err(Error::Config(format!(
                "{} does not read samples",
                self.job.query
            )));
        };
        let c = samples.classes();
        Ok(rows
            .iter()
            .zip(self.probs.chunks_exact((t * c).max(1)))
            .map(|(&index, p)| Ranked {
                priority: self.job.query.priority(disagreement(
                    d,
                    self.job.log_base,
                    p,
                    c,
                    &mut self.mean,
                )),
                index,
            })
            .collect())
    }
}

/// The host's side of uploading features: f32 rows converted, checked and
/// scaled as the CPU path does it, or the raw bytes of uint8 images.
#[derive(Default)]
struct Upload {
    x: Vec<f32>,
    bytes: Vec<u8>,
}

impl Upload {
    fn stage(
        &mut self,
        features: &FeaturePool,
        model: &Mlp,
        fwd: &Forward,
        slot: usize,
        (shard, start, end): (usize, u64, u64),
    ) -> Result<()> {
        let q = &fwd.gpu.queue;
        if features.shards[shard].dtype == DType::U8 && fwd.stages[0].kind == Kind::Widen {
            let s = &features.shards[shard];
            let len = (end - start) as usize * features.dim;
            self.bytes.resize(len.div_ceil(4) * 4, 0);
            features.read_at(
                shard,
                (s.offset + start as usize * features.dim) as u64,
                &mut self.bytes[..len],
            )?;
            self.bytes[len..].fill(0);
            q.write_buffer(&fwd.inputs[slot], 0, &self.bytes);
        } else {
            features.read_block(shard, start, end, &mut self.x)?;
            if let Some(s) = model.scaler() {
                let d = model.inputs();
                self.x
                    .par_chunks_mut(d * TILE_ROWS)
                    .for_each(|part| s.apply_in_place(part));
            }
            q.write_buffer(&fwd.inputs[slot], 0, bytemuck::cast_slice(&self.x));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learner::fused::{Head, forward_into};
    use crate::learner::{MlpConfig, ScaleKind, Scaler};
    use crate::query::Disagreement;
    use crate::rng::Rng;

    use crate::backend::gpu::test_gpu as gpu;

    /// The bound of the module docs, step 1, checked where it matters: the
    /// GPU's logits against the CPU's, on features spanning six orders of
    /// magnitude (cancellation in every sum), with and without hidden
    /// layers and scalers.
    #[test]
    fn gpu_logits_are_within_their_bound_of_the_cpus() {
        use wgpu::BufferUsages as U;
        let Some(g) = gpu() else { return };
        let mut rng = Rng::new(5);
        // The bound must also be tight enough to be of use: a loose one
        // would send every row to the CPU's re-check. Over all cases, some
        // error comes within 100x of it, and it stays below 5% of the
        // logits' scale (features spanning 1e-3 to 1e3 cancel in the sums).
        let (mut loosest, mut closest) = (0f64, 0f64);
        for case in 0..6usize {
            let dim = [3, 17, 64, 200, 33, 300][case];
            let hidden = match case % 3 {
                0 => vec![],
                1 => vec![40],
                _ => vec![70, 9],
            };
            let c = 2 + case % 5;
            let rows = 300 + 37 * case;
            let x: Vec<f32> = (0..rows * dim)
                .map(|i| ((rng.uniform() - 0.5) * 10f64.powi((i % 7) as i32 - 3)) as f32)
                .collect();
            let config = MlpConfig {
                hidden,
                seed: case as u64,
                ..MlpConfig::default()
            };
            let mut m = Mlp::new(dim, c, config).unwrap();
            if case % 2 == 1 {
                let s = Scaler::fit(ScaleKind::Standard, &x, dim, None).unwrap();
                m = m.with_scaler(Some(s)).unwrap();
            }
            let mut z = vec![0f32; rows * c];
            forward_into(m.layers(), &x, None, m.scaler(), &mut z, Head::Logits);

            let logits = g.buffer(
                "logits",
                (rows * (c + 1) * 4) as u64,
                U::STORAGE | U::COPY_SRC,
            );
            let staging = g.buffer(
                "staging",
                (rows * (c + 1) * 4) as u64,
                U::MAP_READ | U::COPY_DST,
            );
            let mut fwd = Forward::new(&g, &m, false, rows, &logits);
            let mut xs = x.clone();
            if let Some(s) = m.scaler() {
                s.apply_in_place(&mut xs);
            }
            g.queue
                .write_buffer(&fwd.inputs[0], 0, bytemuck::cast_slice(&xs));
            fwd.launch(0, rows as u32);
            let out = g.read_u32(&logits, rows * (c + 1), &staging).unwrap();
            let mut worst = 0.0f64;
            for r in 0..rows {
                let eps = f32::from_bits(out[r * (c + 1) + c]) as f64;
                assert!(
                    eps.is_finite() && eps > 0.0,
                    "case {case} row {r}: eps {eps}"
                );
                let zr = &z[r * c..(r + 1) * c];
                loosest = loosest.max(eps / zr.iter().fold(1f64, |m, &v| m.max(v.abs() as f64)));
                for j in 0..c {
                    let gz = f32::from_bits(out[r * (c + 1) + j]) as f64;
                    let diff = (gz - z[r * c + j] as f64).abs();
                    assert!(
                        diff <= eps,
                        "case {case} row {r} class {j}: GPU {gz}, CPU {}, bound {eps}",
                        z[r * c + j]
                    );
                    worst = worst.max(diff / eps);
                }
            }
            eprintln!("case {case}: largest |GPU − CPU| / bound = {worst:.2e}");
            closest = closest.max(worst);
        }
        eprintln!("largest bound / max(1, |logit|) = {loosest:.2e}");
        assert!(
            loosest < 0.05,
            "a bound of {loosest:.2e} of the logits' scale"
        );
        assert!(
            closest > 1e-2,
            "every error is below 1% of its bound: {closest:.2e}"
        );
    }

    /// The planes and row bounds T MC-dropout passes of `m` over `x`
    /// (rows of `dim`) make on the device, the passes' masks seeded by
    /// `seed`: launched together (the first layer's product shared), or
    /// each pass whole on its own (the first layer masking its output).
    fn device_planes(
        g: &Gpu,
        m: &Mlp,
        x: &[f32],
        (t, seed): (usize, u64),
        (renormalized, together): (bool, bool),
    ) -> Vec<f64> {
        use wgpu::BufferUsages as U;
        let (c, rows) = (m.classes(), x.len() / m.inputs());
        let bytes = (rows * (t * c + 1) * 4) as u64;
        let planes = g.buffer("planes", bytes, U::STORAGE | U::COPY_SRC);
        let staging = g.buffer("staging", bytes, U::MAP_READ | U::COPY_DST);
        let logits = g.buffer("logits", (rows * (c + 1) * 4) as u64, U::STORAGE);
        let consts = score_constants(Strategy::Entropy, 1.0, c);
        let mc = Planes {
            planes: &planes,
            samples: t,
            votes: true,
            renormalized,
            kc: consts[1],
            kc_m1: consts[2],
        };
        let mut fwd = Forward::build(g, m, (false, rows), &logits, (Some(mc), true, together));
        g.queue
            .write_buffer(&fwd.inputs[0], 0, bytemuck::cast_slice(x));
        if together {
            fwd.launch_passes(0, rows as u32, (t, seed));
        } else {
            for pass in 0..t {
                let key = crate::rng::substream(seed, pass as u64);
                fwd.launch_pass(0, rows as u32, Some((pass as u32, key)));
            }
        }
        let out = g.read_u32(&planes, rows * (t * c + 1), &staging).unwrap();
        out.iter().map(|&b| f32::from_bits(b) as f64).collect()
    }

    /// The MC-dropout planes (`select_members`, step 1): every value of
    /// every pass within its row's ρ of the CPU's canonical one (the
    /// masks' bits, the scaling's bound, the softmax's), with and without
    /// renormalizing; each pass's argmax the CPU's where the votes need it,
    /// and a near tie of the two largest logits left to the host; the
    /// same bits whether the passes share the first layer's product or not.
    #[test]
    fn mc_planes_are_the_cpus_passes_within_their_rho() {
        use crate::learner::McPass;
        let Some(g) = gpu() else { return };
        let mut rng = Rng::new(8);
        let mut worst = 0f64;
        for case in 0..3usize {
            let (dim, c, rows, t) = ([7, 30, 12][case], [3, 10, 4][case], 500, [4, 6, 5][case]);
            let config = MlpConfig {
                hidden: [vec![20], vec![48, 16], vec![33]][case].clone(),
                dropout: 0.4,
                seed: case as u64,
                ..MlpConfig::default()
            };
            let mut m = Mlp::new(dim, c, config).unwrap();
            if case == 2 {
                // Class 1 a hair from class 0 in every row: the two largest
                // logits often nearly tie.
                let last = m.layers_mut().last_mut().unwrap();
                let inp = last.inp;
                for i in 0..inp {
                    last.w[inp + i] = last.w[i] * (1.0 + 2e-2);
                    last.w[2 * inp + i] = last.w[i] * 0.5;
                }
                last.b[1] = last.b[0] + 10.0;
                last.b[0] += 10.0;
            }
            let x: Vec<f32> = (0..rows * dim)
                .map(|_| (rng.uniform() * 4.0 - 2.0) as f32)
                .collect();
            let (seed, renormalized) = (11 + case as u64, case == 1);
            let planes = device_planes(&g, &m, &x, (t, seed), (renormalized, true));
            // The first layer's product made once for all passes: each
            // pass's bits, and its bounds, as a whole pass makes them.
            let alone = device_planes(&g, &m, &x, (t, seed), (renormalized, false));
            let bits = |v: &[f64]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert!(
                bits(&planes) == bits(&alone),
                "case {case}: shared first layer"
            );
            let first_max = |v: &[f64]| (0..c).fold(0, |b, j| if v[j] > v[b] { j } else { b });
            let mut zeroed = 0;
            let mut cpu = vec![0f32; rows * c];
            for pass in 0..t {
                let mc = McPass {
                    pass: pass as u64,
                    seed,
                    rate: 0.4,
                    softmax: true,
                };
                forward_into(m.layers(), &x, None, m.scaler(), &mut cpu, Head::Mc(mc));
                for (r, p) in cpu.chunks_exact(c).enumerate() {
                    let rho = planes[t * rows * c + r];
                    let q = &planes[(pass * rows + r) * c..(pass * rows + r + 1) * c];
                    if q.iter().all(|&v| v == 0.0) {
                        zeroed += 1;
                        continue;
                    }
                    assert!(rho <= MC_RHO_MAX, "case {case} row {r}: rho {rho}");
                    let sum: f64 = p.iter().map(|&v| v as f64).sum();
                    let scale = if renormalized { 1.0 / sum } else { 1.0 };
                    let canon: Vec<f64> = p.iter().map(|&v| v as f64 * scale).collect();
                    let at = format!("case {case} pass {pass} row {r}");
                    assert_eq!(first_max(q), first_max(&canon), "{at}");
                    for (a, b) in q.iter().zip(&canon) {
                        let diff = (a - b).abs();
                        assert!(diff <= rho * b + 1.2e-38, "{at}: {a} vs {b}, rho {rho}");
                        if *b > 1e-30 {
                            worst = worst.max(diff / (rho * b));
                        }
                    }
                }
            }
            eprintln!("case {case}: {zeroed} of {} passes to the host", rows * t);
            // The near ties reach the host, and not every pass does.
            if case == 2 {
                assert!(zeroed > 0 && zeroed < rows * t / 2, "{zeroed}");
            }
        }
        eprintln!("largest |plane − CPU| / (rho · CPU) = {worst:.2e}");
    }

    /// `mc_moved`'s move (`shaders/select.wgsl`), undoubled, in nats,
    /// written again from `select_members`'s step 2 for rows of T samples
    /// of C (q, the plane's values) within `rho` of the CPU's.
    fn mc_move(d: Disagreement, q: &[f64], c: usize, rho: f64) -> f64 {
        let t = q.len() / c;
        let entropy =
            |v: &[f64]| -> f64 { v.iter().filter(|&&x| x > 0.0).map(|&x| -x * x.ln()).sum() };
        let mean: Vec<f64> = (0..c)
            .map(|j| (0..t).map(|s| q[s * c + j]).sum::<f64>() / t as f64)
            .collect();
        let sd = q
            .chunks_exact(c)
            .map(|v| (v.iter().sum::<f64>() - 1.0).abs())
            .fold(0.0, f64::max);
        let (r1, s1) = (rho / (1.0 - rho), 1.0 + sd);
        let e = |h: f64| r1 * (h + r1 * s1) + sd + rho * rho * s1;
        let each = q.chunks_exact(c).map(entropy).sum::<f64>() / t as f64;
        match d {
            Disagreement::Bald | Disagreement::KlMean => e(entropy(&mean)) + e(each),
            Disagreement::ConsensusEntropy => e(entropy(&mean)),
            Disagreement::MeanStd => {
                let most: f64 = (0..c)
                    .map(|j| (0..t).map(|s| q[s * c + j]).fold(0.0, f64::max))
                    .sum();
                r1 * most / c as f64
            }
            Disagreement::KlMax => {
                let first = q
                    .chunks_exact(c)
                    .map(|v| {
                        let kl: f64 = v
                            .iter()
                            .zip(&mean)
                            .filter(|&(&x, _)| x > 0.0)
                            .map(|(&x, &m)| x * (x / m).ln())
                            .sum();
                        let l1: f64 = v.iter().zip(&mean).map(|(x, m)| (x - m).abs()).sum();
                        kl + 2.0 * l1
                    })
                    .fold(0.0, f64::max);
                (rho * (first + 4.0 * r1 * s1) + 3.0 * sd + 4.3 * rho * rho * s1) / (1.0 - rho)
            }
            Disagreement::VariationRatio | Disagreement::VoteEntropy => 0.0,
        }
    }

    /// Step 2 of `select_members`, checked in f64: for canonical rows p and
    /// planes q = p(1 + η), |η| ≤ ρ (every η at ±ρ, signs drawn, the
    /// planes renormalized or not; peaked, flat and disagreeing rows; ρ up
    /// to 1/4), every score moves by at most `mc_move`. And the move is
    /// first order in the row's own disagreement: a confident row's is far
    /// below ρ.
    #[test]
    fn mc_moves_bound_every_score() {
        use crate::query::LogBase;
        use crate::score::disagree::disagreement;
        let mut rng = Rng::new(31);
        let (mut tightest, mut m1, mut m2) = (0f64, Vec::new(), Vec::new());
        for trial in 0..4000u64 {
            let (t, c) = (2 + trial as usize % 7, 2 + (trial as usize / 7) % 9);
            let rho = [1e-4, 1e-2, 0.1, 0.25][trial as usize % 4];
            let mut p = Vec::with_capacity(t * c);
            for _ in 0..t {
                let w: Vec<f64> = (0..c)
                    .map(|j| match trial % 3 {
                        0 => (-8.0 * rng.uniform() * j as f64).exp(),
                        1 => 1.0 + 1e-3 * rng.uniform(),
                        _ => rng.uniform().powi(3),
                    })
                    .collect();
                let sum: f64 = w.iter().sum();
                p.extend(w.iter().map(|x| x / sum));
            }
            let mut q: Vec<f64> = p
                .iter()
                .map(|&x| x * (1.0 + if rng.uniform() < 0.5 { rho } else { -rho }))
                .collect();
            let mut row_rho = rho;
            if trial % 2 == 0 {
                // Each plane normalized by its own sum, as the kernel's are.
                for v in q.chunks_exact_mut(c) {
                    let sum: f64 = v.iter().sum();
                    v.iter_mut().for_each(|x| *x /= sum);
                }
                row_rho = q
                    .iter()
                    .zip(&p)
                    .map(|(a, b)| (a / b - 1.0).abs())
                    .fold(0.0, f64::max);
                if row_rho > MC_RHO_MAX {
                    continue;
                }
            }
            for d in Disagreement::ALL {
                if matches!(d, Disagreement::VariationRatio | Disagreement::VoteEntropy) {
                    continue;
                }
                let exact = disagreement(d, LogBase::E, &p, c, &mut m1);
                let got = disagreement(d, LogBase::E, &q, c, &mut m2);
                let bound = mc_move(d, &q, c, row_rho);
                let diff = (exact - got).abs();
                assert!(
                    diff <= bound * (1.0 + 1e-9) + 1e-12,
                    "{d} T={t} C={c} rho {row_rho}: {diff:e} > {bound:e}"
                );
                tightest = tightest.max(diff / bound.max(1e-300));
            }
        }
        // The bound is reached within a small factor somewhere.
        assert!(tightest > 0.02, "{tightest}");
        // A confident row (one class at 1 − 9e-7 in every sample) moves by
        // far less than one bound for all rows allows.
        let (t, c) = (10, 10);
        let row: Vec<f64> = (0..t * c)
            .map(|i| if i % c == 0 { 1.0 - 9e-7 } else { 1e-7 })
            .collect();
        let ours = 2.0 * mc_move(Disagreement::Bald, &row, c, 0.1);
        let uniform = samples_moved_bound(Disagreement::Bald, (c, t), 0.0, 1.0, 0.1);
        assert!(ours < uniform / 10.0, "{ours} against {uniform}");
    }

    #[test]
    fn chunks_fit_every_binding() {
        // A pool far larger than one binding: chunks of what fits.
        assert_eq!(
            rows_per_chunk(128 << 20, 784, 1 << 30, 0),
            (128 << 20) / (784 * 4)
        );
        assert_eq!(rows_per_chunk(u64::MAX, 784, 21_504, 0), 21_504);
        assert_eq!(rows_per_chunk(u64::MAX, 8, u64::MAX, 0), 65_535 * 64);
        assert_eq!(rows_per_chunk(1 << 30, 10, 1 << 20, 333), 333);
        assert_eq!(rows_per_chunk(16, 1 << 20, 100, 0), 1);
    }

    #[test]
    fn the_byte_table_holds_the_cpus_scaled_pixels() {
        let m = Mlp::new(3, 2, MlpConfig::default()).unwrap();
        assert_eq!(byte_table(&m)[51], 51.0 / 255.0);
        let x: Vec<f32> = vec![0.0, 0.5, 1.0, 0.2, 0.1, 0.9];
        let s = Scaler::fit(ScaleKind::Standard, &x, 3, None).unwrap();
        let m = m.with_scaler(Some(s.clone())).unwrap();
        let t = byte_table(&m);
        for (j, v) in [(0usize, 7usize), (1, 200), (2, 255)] {
            let mut row = vec![0f32; 3];
            row[j] = v as f32 / 255.0;
            s.apply_in_place(&mut row);
            assert_eq!(t[j * 256 + v].to_bits(), row[j].to_bits());
        }
    }
}
