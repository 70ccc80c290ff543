//! The MLP's hot paths as fused f32 kernels: batched inference, one
//! training step (forward, hand-derived backward, AdamW) over buffers
//! allocated once per training run.
//!
//! Why not candle's ops: candle runs each op as its own pass with a fresh
//! output tensor and builds an autograd graph per step, and its AdamW is ten
//! unfused tensor ops per parameter. On a 32-row minibatch of a 784-256-10
//! network a candle step took 2.3 ms, a fused one takes 0.28 ms. Here the
//! matrix products go straight to `gemm` (the same kernels candle calls),
//! everything else is one pass over memory, and nothing is allocated per
//! step. [`super::reference`] is the candle
//! autograd path these kernels are tested against.

use rayon::prelude::*;

use super::{Layer, MlpConfig, Scaler};
use crate::rng::Rng;

/// A row-major operand of a matrix product: data, row stride, column stride
/// (elements). Transposes are strides, never copies.
#[derive(Clone, Copy)]
struct Mat<'a> {
    data: &'a [f32],
    rs: usize,
    cs: usize,
}

impl<'a> Mat<'a> {
    fn rows(data: &'a [f32], cols: usize) -> Self {
        Mat {
            data,
            rs: cols,
            cs: 1,
        }
    }
    fn t(self) -> Self {
        Mat {
            data: self.data,
            rs: self.cs,
            cs: self.rs,
        }
    }
    /// The largest index an `r x c` view touches, plus one.
    fn extent(&self, r: usize, c: usize) -> usize {
        if r == 0 || c == 0 {
            0
        } else {
            (r - 1) * self.rs + (c - 1) * self.cs + 1
        }
    }
}

/// `dst[m, n] (+)= a[m, k] · b[k, n]`, with `dst` row-major.
fn matmul(dst: &mut [f32], m: usize, n: usize, k: usize, a: Mat, b: Mat, accumulate: bool) {
    // The bounds the unsafe call relies on, checked once per product.
    assert!(dst.len() >= m * n && a.data.len() >= a.extent(m, k) && b.data.len() >= b.extent(k, n));
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(0.0);
        }
        return;
    }
    // SAFETY: every index gemm reads or writes lies within the extents
    // asserted above; `dst` does not alias `a` or `b` (it is `&mut`).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            // Callers split the work themselves, in a fixed partition.
            gemm::Parallelism::None,
        )
    }
}

/// The largest m and n of gemm's small-product path.
const SMALL_PRODUCT: usize = 64;
/// The largest m·n of gemm's small-output path.
const SMALL_OUTPUT: usize = 256;

/// The fewest rows a product with `n` outputs needs to run on gemm's
/// blocked path (m·n > 256, not m ≤ 64 with n ≤ 64, m ≥ 2), where a row's
/// sums do not depend on the rows beside it
/// (`tests/suite/learner.rs` checks every count from 1 up).
fn blocked_rows(n: usize) -> usize {
    let least = SMALL_OUTPUT / n + 1;
    match n <= SMALL_PRODUCT {
        true => least.max(SMALL_PRODUCT + 1),
        false => least.max(2),
    }
}

/// `out[r, o] = bias[o] + Σ_i x[r, i] · w[o, i]`: one layer's affine map,
/// the same bits for a row whatever rows are computed with it. gemm picks
/// its kernels by the product's shape, and a row's sums come out
/// differently on its small paths (m·n ≤ 256; m ≤ 64 and n ≤ 64, which
/// blocks a long inner dimension otherwise) and its matrix-vector paths
/// (m = 1, n = 1, or an inner dimension k ≤ 2) than on the blocked one:
/// so a few rows are padded with zero rows onto the blocked path, and a
/// one-output layer (a regressor's) or a one- or two-input one is summed
/// here, in input order.
fn affine(out: &mut [f32], x: &[f32], rows: usize, l: &Layer) {
    if l.out == 1 || l.inp <= 2 {
        let rows_out = out[..rows * l.out].chunks_exact_mut(l.out);
        for (o, xr) in rows_out.zip(x.chunks_exact(l.inp)) {
            for ((v, w), b) in o.iter_mut().zip(l.w.chunks_exact(l.inp)).zip(&l.b) {
                *v = b + xr.iter().zip(w).fold(0f32, |s, (a, w)| s + a * w);
            }
        }
        return;
    }
    let padded = match rows {
        0 => 0,
        r => r.max(blocked_rows(l.out)),
    };
    if padded > rows {
        let mut xp = vec![0f32; padded * l.inp];
        xp[..rows * l.inp].copy_from_slice(&x[..rows * l.inp]);
        let mut op = vec![0f32; padded * l.out];
        affine_blocked(&mut op, &xp, padded, l);
        out[..rows * l.out].copy_from_slice(&op[..rows * l.out]);
        return;
    }
    affine_blocked(out, x, rows, l);
}

fn affine_blocked(out: &mut [f32], x: &[f32], rows: usize, l: &Layer) {
    for row in out[..rows * l.out].chunks_exact_mut(l.out) {
        row.copy_from_slice(&l.b);
    }
    matmul(
        out,
        rows,
        l.out,
        l.inp,
        Mat::rows(x, l.inp),
        Mat::rows(&l.w, l.inp).t(),
        true,
    );
}

/// Softmax of each `classes`-wide row in place (max-shifted, f32).
pub(crate) fn softmax_rows(z: &mut [f32], classes: usize) {
    for row in z.chunks_exact_mut(classes) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0f32;
        for v in row.iter_mut() {
            *v = (*v - max).exp();
            sum += *v;
        }
        let inv = 1.0 / sum;
        row.iter_mut().for_each(|v| *v *= inv);
    }
}

/// Logits of `rows` rows through all layers (ReLU between), using `hidden`
/// as scratch for the hidden activations; with an MC-dropout pass, its
/// masks after each hidden ReLU.
fn logits_into(
    layers: &[Layer],
    x: &[f32],
    rows: usize,
    (hidden, out): (&mut [Vec<f32>], &mut [f32]),
    mc: Option<&McPass>,
) {
    logits_from(layers, 0, x, rows, (hidden, out), mc);
}

/// [`logits_into`] of the network's layers `from..`, given as `layers`,
/// with `x` the input of layer `from` (its masks are layer `from + i`'s).
fn logits_from(
    layers: &[Layer],
    from: usize,
    x: &[f32],
    rows: usize,
    (hidden, out): (&mut [Vec<f32>], &mut [f32]),
    mc: Option<&McPass>,
) {
    let last = layers.len() - 1;
    let mut dropped = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let (before, after) = hidden.split_at_mut(i);
        let input: &[f32] = if i == 0 { x } else { &before[i - 1] };
        let dst: &mut [f32] = if i == last { out } else { &mut after[0] };
        affine(dst, input, rows, l);
        if i == last {
            continue;
        }
        let Some(mc) = mc else {
            dst[..rows * l.out].iter_mut().for_each(|v| *v = v.max(0.0));
            continue;
        };
        relu_dropout(
            &mut dst[..rows * l.out],
            l.out,
            (mc, from + i),
            &mut dropped,
        );
    }
}

/// ReLU and pass `mc`'s dropout of hidden layer `layer` over rows of
/// `width` units, in place: a dropped unit is 0, a kept one scaled by
/// `1 / (1 − rate)`. One mask for every row of the pass: hashed once a
/// call, into `dropped`.
fn relu_dropout(
    v: &mut [f32],
    width: usize,
    (mc, layer): (&McPass, usize),
    dropped: &mut Vec<bool>,
) {
    dropped.clear();
    dropped.extend((0..width).map(|u| mc.drops(layer, u)));
    let keep = 1.0 / (1.0 - mc.rate);
    for row in v.chunks_exact_mut(width) {
        for (v, &drop) in row.iter_mut().zip(dropped.iter()) {
            *v = if drop { 0.0 } else { v.max(0.0) * keep };
        }
    }
}

/// T MC-dropout passes of a tile of `rows` rows `x` into `planes` (pass t's
/// outputs in `planes[t]`), each pass the bits `logits_into` with
/// [`McPass`] `pass: t` (and the softmax, when `mc.softmax`) gives it. The
/// masks act after the first layer's product, so that product (nearly all
/// the work of a wide first layer, 99% of a 784-256-10 network's) is made
/// once for all T passes: only the masks and the later layers run per pass.
fn mc_passes_into(
    layers: &[Layer],
    x: &[f32],
    rows: usize,
    (hidden, masked): (&mut [Vec<f32>], &mut Vec<f32>),
    planes: &mut [&mut [f32]],
    mc: McPass,
) {
    let width = layers[layers.len() - 1].out;
    let finish = |o: &mut [f32]| {
        if mc.softmax {
            softmax_rows(o, width);
        }
    };
    let Some((first, rest)) = hidden.split_first_mut() else {
        // No hidden layer, no mask: every pass is the model's output.
        let (one, others) = planes.split_first_mut().expect("at least one pass");
        affine(one, x, rows, &layers[0]);
        finish(one);
        others.iter_mut().for_each(|o| o.copy_from_slice(one));
        return;
    };
    let l0 = &layers[0];
    affine(first, x, rows, l0);
    let z0 = &first[..rows * l0.out];
    let mut dropped = Vec::new();
    for (t, o) in planes.iter_mut().enumerate() {
        let pass = McPass {
            pass: t as u64,
            ..mc
        };
        masked.clear();
        masked.extend_from_slice(z0);
        relu_dropout(masked, l0.out, (&pass, 0), &mut dropped);
        logits_from(&layers[1..], 1, masked, rows, (rest, o), Some(&pass));
        finish(o);
    }
}

/// The logistic function in f32, without overflow for large |z|.
#[inline]
pub(crate) fn sigmoid(z: f32) -> f32 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// The loss of [`Trainer::step_targets`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// Mean squared error (the regressor).
    Mse,
    /// Binary cross-entropy of sigmoid outputs (the multi-label learner).
    Bce,
}

/// Fresh layers `dim → config.hidden… → outputs` trained on rows `x` (n x
/// `dim`, row-major; `scaler` maps them first) with targets `t` (n x
/// outputs) under `loss`: at least `config.epochs` epochs and
/// `config.min_steps` steps of minibatches of `config.batch_size` rows,
/// reshuffled every epoch, initialization, order and dropout all drawn
/// from `config.seed`, as the classifier's. Returns the layers, the epochs
/// and the steps taken.
pub(crate) fn train_targets(
    dim: usize,
    config: &MlpConfig,
    scaler: Option<&Scaler>,
    x: &[f32],
    (t, loss): (&[f32], Loss),
) -> (Vec<Layer>, usize, usize) {
    let n = x.len() / dim;
    let outs = t.len() / n;
    let mut xs = x.to_vec();
    if let Some(s) = scaler {
        s.apply_in_place(&mut xs);
    }
    let mut layers = super::init_layers(dim, outs, &config.hidden, config.seed);
    let bs = config.batch_size.clamp(1, n);
    let opt = AdamW::new(config.lr, config.weight_decay);
    let mut trainer = Trainer::new(&layers, bs, opt, config.dropout);
    let batches = n.div_ceil(bs);
    let epochs = config.epochs.max(config.min_steps.div_ceil(batches)).max(1);
    let mut rng = Rng::new(config.seed ^ 0x0074_7261_696e);
    let mut order: Vec<usize> = (0..n).collect();
    let (mut bx, mut bt) = (Vec::with_capacity(bs * dim), Vec::with_capacity(bs * outs));
    // The fused steps split each product over the cores: run on a rayon
    // worker, as the classifier does.
    rayon::scope(|_| {
        for _ in 0..epochs {
            super::shuffle(&mut order, &mut rng);
            for chunk in order.chunks(bs) {
                bx.clear();
                bt.clear();
                for &r in chunk {
                    bx.extend_from_slice(&xs[r * dim..(r + 1) * dim]);
                    bt.extend_from_slice(&t[r * outs..(r + 1) * outs]);
                }
                trainer.step_targets(&mut layers, &bx, &bt, loss, &mut rng);
            }
        }
    });
    (layers, epochs, epochs * batches)
}

/// Rows per inference block: big enough for gemm to run near its peak, small
/// enough that a block's activations stay in cache and both cores get work.
pub(crate) const BLOCK_ROWS: usize = 512;

/// What a forward pass writes: the softmax, or the last hidden layer's
/// activations (the embedding batch-aware strategies measure distances in).
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Head {
    Probs,
    Embed,
    /// One MC-dropout pass: the softmax (or the output itself) with
    /// dropout kept on at inference.
    Mc(McPass),
    /// The output layer before the softmax.
    Logits,
    /// An independent sigmoid of each output (a multi-label model).
    Sigmoid,
}

/// One MC-dropout pass (Gal and Ghahramani 2016) with consistent masks
/// (Kirsch et al. 2019): after each hidden layer's ReLU, unit `u` of layer
/// `l` is dropped in every row when `h = splitmix64(substream(seed, pass)
/// ^ (l << 32 | u))` (`substream(seed, pass) = splitmix64(splitmix64(seed)
/// ^ pass)`) gives `(h >> 40) · 2⁻²⁴ < rate`, and kept units are scaled by
/// `1 / (1 − rate)`, as in training. So pass t is one thinned network,
/// the same for every row: sample t of two rows comes from the same
/// model, which BatchBALD's joint entropy needs (a mask per row made the
/// rows' samples independent draws, and it could not see that two rows
/// were copies), and rows are compared under the same T models. The mask
/// is a function of (seed, pass, layer, unit) alone, so a row's pass is
/// the same bits in any block, tile, thread or shard.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct McPass {
    /// The pass, 0..T.
    pub pass: u64,
    /// The masks' seed.
    pub seed: u64,
    /// The dropout probability.
    pub rate: f32,
    /// Softmax the output (a classifier) or keep it (a regressor).
    pub softmax: bool,
}

impl McPass {
    /// Whether unit `u` of hidden layer `l` is dropped (in every row).
    #[inline]
    pub fn drops(&self, l: usize, u: usize) -> bool {
        use crate::rng::{splitmix64, substream};
        let h = splitmix64(substream(self.seed, self.pass) ^ ((l as u64) << 32 | u as u64));
        ((h >> 40) as f32) * (1.0 / 16_777_216.0) < self.rate
    }
}

/// The width of [`Head::Embed`]'s rows: the last hidden layer, or the
/// (scaled) input for a network without one.
pub(crate) fn embed_width(layers: &[Layer]) -> usize {
    match layers.len() {
        1 => layers[0].inp,
        n => layers[n - 2].out,
    }
}

/// The `head` of the rows of `x` (all of them, or those listed in
/// `rows`, gathered block by block so the pool is never copied whole)
/// written into `out`. Blocks of rows run in parallel, each through
/// single-threaded products, so a row's result depends neither on the
/// thread count nor on where the blocks start (gemm's order of summation
/// for an element does not depend on the row count; `tests/suite/learner.rs`
/// checks both).
pub(crate) fn forward_into(
    layers: &[Layer],
    x: &[f32],
    rows: Option<&[usize]>,
    scaler: Option<&Scaler>,
    out: &mut [f32],
    head: Head,
) {
    let fill = matrix_rows(x, rows, layers[0].inp);
    let done: Result<(), std::convert::Infallible> =
        forward_filled(layers, scaler, out, &fill, head);
    let Ok(()) = done;
}

/// [`forward_mc_filled`] of the rows of `x` (all of them, or those listed
/// in `rows`), as [`forward_into`] reads them.
pub(crate) fn forward_mc_into(
    layers: &[Layer],
    (x, rows): (&[f32], Option<&[usize]>),
    scaler: Option<&Scaler>,
    out: (&mut [f32], usize),
    mc: McPass,
) {
    let fill = matrix_rows(x, rows, layers[0].inp);
    let done: Result<(), std::convert::Infallible> =
        forward_mc_filled(layers, scaler, out, &fill, mc);
    let Ok(()) = done;
}

/// The fill of rows of a row-major matrix `x` of `inputs` columns: lent in
/// place, or the listed `rows` gathered.
fn matrix_rows<'a>(
    x: &'a [f32],
    rows: Option<&'a [usize]>,
    inputs: usize,
) -> impl Fn(usize, usize, &mut Vec<f32>) -> Result<Option<&'a [f32]>, std::convert::Infallible>
+ Sync
+ 'a {
    move |first, count, buf| match rows {
        None => Ok(Some(&x[first * inputs..(first + count) * inputs])),
        Some(rows) => {
            for &r in &rows[first..first + count] {
                buf.extend_from_slice(&x[r * inputs..(r + 1) * inputs]);
            }
            Ok(None)
        }
    }
}

/// Writes (or lends, in place) the input rows `first..first + count` of a
/// tile: see [`forward_filled`].
pub(crate) type FillRows<'a, E> =
    dyn Fn(usize, usize, &mut Vec<f32>) -> Result<Option<&'a [f32]>, E> + Sync + 'a;

/// The `head` of `out.len() / width` rows that `fill` writes itself, tile
/// by tile and in parallel: `fill(first, count, buf)` appends the
/// (unscaled) f32 rows `first..first + count` to `buf`, or returns them in
/// place (a caller's matrix, no copy), so reading, converting and
/// checking a tile runs next to the other tiles' matrix products instead
/// of in a pass before them. Tiles start at multiples of [`BLOCK_ROWS`] and
/// each runs through single-threaded products, so a row's result depends
/// neither on the thread count nor on where its tile's rows came from
/// (gemm's order of summation for an element does not depend on the row
/// count; `tests/suite/learner.rs` checks both). The first error in row order
/// wins.
pub(crate) fn forward_filled<'a, E: Send>(
    layers: &[Layer],
    scaler: Option<&Scaler>,
    out: &mut [f32],
    fill: &FillRows<'a, E>,
    head: Head,
) -> Result<(), E> {
    let width = match head {
        Head::Probs | Head::Logits | Head::Sigmoid | Head::Mc(_) => layers[layers.len() - 1].out,
        Head::Embed => embed_width(layers),
    };
    let tile_rows = BLOCK_ROWS.min(out.len() / width).max(1);
    let run = |(hidden, x): &mut (Vec<Vec<f32>>, Vec<f32>),
               (tile, ob): (usize, &mut [f32])|
     -> Result<(), E> {
        let count = ob.len() / width;
        let xb = tile_input(fill, scaler, (tile * BLOCK_ROWS, count), x)?;
        match head {
            Head::Probs => {
                logits_into(layers, xb, count, (hidden, ob), None);
                softmax_rows(ob, width);
            }
            Head::Logits => logits_into(layers, xb, count, (hidden, ob), None),
            Head::Sigmoid => {
                logits_into(layers, xb, count, (hidden, ob), None);
                ob.iter_mut().for_each(|v| *v = sigmoid(*v));
            }
            Head::Mc(mc) => {
                logits_into(layers, xb, count, (hidden, ob), Some(&mc));
                if mc.softmax {
                    softmax_rows(ob, width);
                }
            }
            Head::Embed if layers.len() == 1 => ob.copy_from_slice(&xb[..ob.len()]),
            Head::Embed => {
                // The hidden layers alone; ReLU after the last of them too.
                let hidden_layers = &layers[..layers.len() - 1];
                logits_into(hidden_layers, xb, count, (hidden, ob), None);
                ob.iter_mut().for_each(|v| *v = v.max(0.0));
            }
        }
        Ok(())
    };
    let scratch = || (hidden_buffers(layers, tile_rows), Vec::new());
    each_tile(out.chunks_mut(BLOCK_ROWS * width).collect(), scratch, run)
}

/// `run` over `tiles` (tile j holds rows from j · [`BLOCK_ROWS`]), in
/// parallel with one scratch per worker. A single tile (a streamed
/// instance, a small batch) runs on the caller: no hand-off to the pool,
/// and its scratch is sized for its rows alone. The first error in row
/// order wins.
fn each_tile<T: Send, S, E: Send>(
    mut tiles: Vec<T>,
    scratch: impl Fn() -> S + Sync + Send,
    run: impl Fn(&mut S, (usize, T)) -> Result<(), E> + Sync + Send,
) -> Result<(), E> {
    if tiles.len() <= 1 {
        return tiles.pop().map_or(Ok(()), |t| run(&mut scratch(), (0, t)));
    }
    let results: Vec<Result<(), E>> = tiles
        .into_par_iter()
        .enumerate()
        .map_init(scratch, &run)
        .collect();
    results.into_iter().collect()
}

/// The scaled input rows `first..first + count` of a tile: `fill`'s own
/// rows when it lends them and no scaler applies, else written to `x`.
fn tile_input<'b, 'a: 'b, E>(
    fill: &FillRows<'a, E>,
    scaler: Option<&Scaler>,
    (first, count): (usize, usize),
    x: &'b mut Vec<f32>,
) -> Result<&'b [f32], E> {
    x.clear();
    Ok(match (fill(first, count, x)?, scaler) {
        (Some(rows), None) => rows,
        (Some(rows), Some(s)) => {
            x.extend_from_slice(rows);
            s.apply_in_place(x);
            x
        }
        (None, Some(s)) => {
            s.apply_in_place(x);
            x
        }
        (None, None) => x,
    })
}

/// T = `out.len() / (n · width)` MC-dropout passes (`mc` with `pass: t`)
/// of the `n` rows `fill` writes, sample-major (T x n x width) into
/// `out`: pass t's plane holds the bits [`forward_filled`] with
/// [`Head::Mc`] gives it, but each tile is read, scaled and run through
/// the first layer once for all T passes. Tiles run in parallel as in
/// [`forward_filled`]; the first error in row order wins.
pub(crate) fn forward_mc_filled<'a, E: Send>(
    layers: &[Layer],
    scaler: Option<&Scaler>,
    (out, passes): (&mut [f32], usize),
    fill: &FillRows<'a, E>,
    mc: McPass,
) -> Result<(), E> {
    let width = layers[layers.len() - 1].out;
    let n = out.len() / (width * passes.max(1));
    if n == 0 {
        return Ok(());
    }
    let tile = BLOCK_ROWS * width;
    // Tile j's slice of every plane, pass-ordered.
    let mut tiles: Vec<Vec<&mut [f32]>> = (0..n.div_ceil(BLOCK_ROWS)).map(|_| Vec::new()).collect();
    for plane in out.chunks_exact_mut(n * width) {
        for (j, o) in plane.chunks_mut(tile).enumerate() {
            tiles[j].push(o);
        }
    }
    let tile_rows = BLOCK_ROWS.min(n);
    let scratch = || (hidden_buffers(layers, tile_rows), Vec::new(), Vec::new());
    let run = |(hidden, x, masked): &mut (Vec<Vec<f32>>, Vec<f32>, Vec<f32>),
               (j, mut planes): (usize, Vec<&mut [f32]>)|
     -> Result<(), E> {
        let count = planes[0].len() / width;
        let xb = tile_input(fill, scaler, (j * BLOCK_ROWS, count), x)?;
        mc_passes_into(layers, xb, count, (hidden, masked), &mut planes, mc);
        Ok(())
    };
    each_tile(tiles, scratch, run)
}

fn hidden_buffers(layers: &[Layer], rows: usize) -> Vec<Vec<f32>> {
    layers[..layers.len() - 1]
        .iter()
        .map(|l| vec![0f32; rows * l.out])
        .collect()
}

/// AdamW's settings and step count, with candle-nn's defaults and update
/// rule (decoupled weight decay, bias-corrected moments).
#[derive(Clone, Copy, Debug)]
pub(crate) struct AdamW {
    pub lr: f64,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl AdamW {
    pub fn new(lr: f64, weight_decay: f64) -> Self {
        AdamW {
            lr,
            weight_decay,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

/// Moments of one parameter tensor.
struct Moments {
    m: Vec<f32>,
    v: Vec<f32>,
}

/// Units per parallel task in training: a fixed partition, so results do
/// not depend on the thread count.
const UNITS: usize = 64;

/// `dst[m, n] = a[m, k] · b[k, n]` with the rows of `dst` (and `a`) split
/// into parallel blocks of [`UNITS`].
fn matmul_blocks(dst: &mut [f32], m: usize, n: usize, k: usize, a: Mat, b: Mat) {
    assert!(dst.len() >= m * n && a.data.len() >= a.extent(m, k));
    dst[..m * n]
        .par_chunks_mut(UNITS * n)
        .enumerate()
        .for_each(|(i, d)| {
            let a = Mat {
                data: &a.data[i * UNITS * a.rs..],
                ..a
            };
            matmul(d, d.len() / n, n, k, a, b, false);
        });
}

/// Training state for one run: gradients, moments and activation buffers
/// for minibatches of up to `max_rows` rows.
///
/// Activations and their gradients are kept transposed (`[units, rows]`),
/// so each layer's forward product, weight gradient and AdamW update split
/// into contiguous blocks of units that run on all cores.
pub(crate) struct Trainer {
    opt: AdamW,
    t: i32,
    dropout: f32,
    max_rows: usize,
    /// Each layer's output, transposed: post-ReLU (and post-dropout) for
    /// hidden layers, logits for the last.
    zt: Vec<Vec<f32>>,
    /// The loss gradient with respect to each layer's pre-activation,
    /// transposed.
    gt: Vec<Vec<f32>>,
    grad_w: Vec<Vec<f32>>,
    grad_b: Vec<Vec<f32>>,
    moments: Vec<(Moments, Moments)>,
    /// One row's logits, for the softmax.
    column: Vec<f32>,
}

fn zeros(n: usize) -> Vec<f32> {
    vec![0f32; n]
}

impl Trainer {
    pub fn new(layers: &[Layer], max_rows: usize, opt: AdamW, dropout: f32) -> Self {
        let mom = |n| Moments {
            m: zeros(n),
            v: zeros(n),
        };
        let units = || layers.iter().map(|l| zeros(max_rows * l.out)).collect();
        Trainer {
            opt,
            t: 0,
            dropout,
            max_rows,
            zt: units(),
            gt: units(),
            grad_w: layers.iter().map(|l| zeros(l.w.len())).collect(),
            grad_b: layers.iter().map(|l| zeros(l.b.len())).collect(),
            moments: layers
                .iter()
                .map(|l| (mom(l.w.len()), mom(l.b.len())))
                .collect(),
            column: zeros(layers[layers.len() - 1].out),
        }
    }

    /// One AdamW step on the minibatch `x` (row-major) with labels `y`,
    /// minimizing `−(1/n) Σ_r weight[y_r] · log softmax(z_r)[y_r]`. Dropout
    /// masks are drawn from `rng` layer by layer, row-major, one uniform per
    /// hidden unit, exactly as the reference does.
    pub fn step(
        &mut self,
        layers: &mut [Layer],
        x: &[f32],
        y: &[usize],
        class_weight: &[f32],
        rng: &mut Rng,
    ) {
        let n = y.len();
        assert!(n > 0 && n <= self.max_rows && x.len() == n * layers[0].inp);
        self.forward(layers, x, n, rng);
        self.loss_gradient(layers, y, class_weight);
        self.backward(layers, x, n);
    }

    /// One AdamW step on the minibatch `x` with real targets `t` (n x
    /// outputs, row-major) under `loss`: the mean squared error
    /// `(1/n) Σ_r (z_r − t_r)²` of a one-output network, or the binary
    /// cross-entropy of independent sigmoid outputs summed over the
    /// outputs, `−(1/n) Σ_r Σ_j t_rj log σ(z_rj) + (1 − t_rj) log(1 −
    /// σ(z_rj))`; dropout as in [`Trainer::step`].
    pub fn step_targets(
        &mut self,
        layers: &mut [Layer],
        x: &[f32],
        t: &[f32],
        loss: Loss,
        rng: &mut Rng,
    ) {
        let last = layers.len() - 1;
        let outs = layers[last].out;
        let n = t.len() / outs;
        assert!(n > 0 && n <= self.max_rows && t.len() == n * outs);
        assert!(loss == Loss::Bce || outs == 1);
        self.forward(layers, x, n, rng);
        let (z, g) = (&self.zt[last], &mut self.gt[last]);
        // z and g are unit-major (z[j * n + r]), t row-major.
        for j in 0..outs {
            for r in 0..n {
                let (z, y) = (z[j * n + r], t[r * outs + j]);
                g[j * n + r] = match loss {
                    Loss::Mse => 2.0 * (z - y) / n as f32,
                    Loss::Bce => (sigmoid(z) - y) / n as f32,
                };
            }
        }
        self.backward(layers, x, n);
    }

    /// Forward: Zᵀ = W · inputᵀ + b, then ReLU (and dropout) on hidden
    /// layers.
    fn forward(&mut self, layers: &[Layer], x: &[f32], n: usize, rng: &mut Rng) {
        let last = layers.len() - 1;
        let keep = 1.0 / (1.0 - self.dropout);
        for (i, l) in layers.iter().enumerate() {
            let (before, after) = self.zt.split_at_mut(i);
            let z = &mut after[0][..l.out * n];
            matmul_blocks(
                z,
                l.out,
                n,
                l.inp,
                Mat::rows(&l.w, l.inp),
                input(x, before, i, l.inp, n).t(),
            );
            let hidden = i < last;
            for (row, &b) in z.chunks_exact_mut(n).zip(&l.b) {
                for v in row {
                    *v += b;
                    if hidden {
                        *v = v.max(0.0);
                    }
                }
            }
            if hidden && self.dropout > 0.0 {
                // Drawn in the reference's order: row by row, unit by unit.
                for r in 0..n {
                    for u in 0..l.out {
                        let v = &mut z[u * n + r];
                        if (rng.uniform() as f32) < self.dropout {
                            *v = 0.0;
                        } else {
                            *v *= keep;
                        }
                    }
                }
            }
        }
    }

    /// dL/dz = weight[y]/n · (softmax(z) − onehot(y)), column by column.
    fn loss_gradient(&mut self, layers: &[Layer], y: &[usize], class_weight: &[f32]) {
        let n = y.len();
        let last = layers.len() - 1;
        let classes = layers[last].out;
        let (z, g) = (&self.zt[last], &mut self.gt[last]);
        let col = &mut self.column[..classes];
        for (r, &c) in y.iter().enumerate() {
            for (k, v) in col.iter_mut().enumerate() {
                *v = z[k * n + r];
            }
            softmax_rows(col, classes);
            col[c] -= 1.0;
            let s = class_weight[c] / n as f32;
            for (k, v) in col.iter().enumerate() {
                g[k * n + r] = v * s;
            }
        }
    }

    /// Backward, last layer first; each layer's parameters are updated
    /// once the gradient for the layer below has used them.
    fn backward(&mut self, layers: &mut [Layer], x: &[f32], n: usize) {
        let last = layers.len() - 1;
        let keep = 1.0 / (1.0 - self.dropout);
        self.t += 1;
        let step = Step::new(&self.opt, self.t);
        for i in (0..=last).rev() {
            let (g_below, g_here) = self.gt.split_at_mut(i);
            let g = &g_here[0][..layers[i].out * n];
            let l = &mut layers[i];
            if i > 0 {
                // dHᵀ = Wᵀ · dZᵀ, then through ReLU and dropout: a unit that
                // output 0 passes no gradient, a kept one scales by `keep`
                // (the forward multiplied by it).
                let gb = &mut g_below[i - 1][..l.inp * n];
                matmul_blocks(
                    gb,
                    l.inp,
                    n,
                    l.out,
                    Mat::rows(&l.w, l.inp).t(),
                    Mat::rows(g, n),
                );
                let scale = if self.dropout > 0.0 { keep } else { 1.0 };
                let h = &self.zt[i - 1][..l.inp * n];
                for (d, &h) in gb.iter_mut().zip(h) {
                    *d = if h > 0.0 { *d * scale } else { 0.0 };
                }
            }
            // dW = dZᵀ · input, db = Σ_rows dZ, then AdamW on each block of
            // units while its gradient is in cache.
            let inp = input(x, &self.zt, i, l.inp, n);
            let (mw, mb) = &mut self.moments[i];
            l.w.par_chunks_mut(UNITS * l.inp)
                .zip(self.grad_w[i].par_chunks_mut(UNITS * l.inp))
                .zip(mw.m.par_chunks_mut(UNITS * l.inp))
                .zip(mw.v.par_chunks_mut(UNITS * l.inp))
                .enumerate()
                .for_each(|(blk, (((w, gw), m), v))| {
                    let units = w.len() / l.inp;
                    let gz = Mat::rows(&g[blk * UNITS * n..], n);
                    matmul(gw, units, l.inp, n, gz, inp, false);
                    step.update_fast(w, gw, m, v);
                });
            let gb = &mut self.grad_b[i];
            for (b, row) in gb.iter_mut().zip(g.chunks_exact(n)) {
                *b = row.iter().sum();
            }
            step.update_fast(&mut l.b, gb, &mut mb.m, &mut mb.v);
        }
    }
}

/// The input of layer `i` as a `[n, inp]` view: the minibatch, or the
/// layer below's activations.
fn input<'a>(x: &'a [f32], zt: &'a [Vec<f32>], i: usize, inp: usize, n: usize) -> Mat<'a> {
    if i == 0 {
        Mat::rows(x, inp)
    } else {
        Mat::rows(&zt[i - 1][..inp * n], n).t()
    }
}

/// One AdamW update's constants, in the order of candle-nn's arithmetic.
#[derive(Clone, Copy)]
struct Step {
    decay: f32,
    lr: f32,
    b1: f32,
    b2: f32,
    scale_m: f32,
    scale_v: f32,
    eps: f32,
}

impl Step {
    fn new(o: &AdamW, t: i32) -> Self {
        Step {
            decay: (1.0 - o.lr * o.weight_decay) as f32,
            lr: o.lr as f32,
            b1: o.beta1 as f32,
            b2: o.beta2 as f32,
            scale_m: (1.0 / (1.0 - o.beta1.powi(t))) as f32,
            scale_v: (1.0 / (1.0 - o.beta2.powi(t))) as f32,
            eps: o.eps as f32,
        }
    }

    fn update_fast(&self, theta: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { self.update_avx2(theta, g, m, v) };
        }
        self.update(theta, g, m, v)
    }

    /// The same arithmetic compiled for 8-wide vectors. Without fast-math
    /// no multiply-add is fused, so both versions round identically.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn update_avx2(&self, theta: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        self.update(theta, g, m, v)
    }

    #[inline(always)]
    fn update(&self, theta: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        let s = *self;
        for (((t, &g), m), v) in theta.iter_mut().zip(g).zip(m).zip(v) {
            *m = *m * s.b1 + g * (1.0 - s.b1);
            *v = *v * s.b2 + g * g * (1.0 - s.b2);
            let m_hat = *m * s.scale_m;
            let v_hat = *v * s.scale_v;
            *t = *t * s.decay - m_hat / (v_hat.sqrt() + s.eps) * s.lr;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// All T passes at once are each pass's own bits ([`Head::Mc`] a pass
    /// at a time): networks with no, one and two hidden layers (the second
    /// layer's masks are keyed on its own index), one row, a short tile,
    /// a full one and a partial third, rows in place and gathered, with
    /// and without a scaler, a classifier's softmax and a regressor's
    /// number.
    #[test]
    fn mc_passes_at_once_are_each_passs_bits() {
        let (d, t) = (7usize, 4usize);
        let mut rng = Rng::new(5);
        let x: Vec<f32> = (0..1300 * d)
            .map(|_| rng.uniform() as f32 * 4.0 - 2.0)
            .collect();
        let scaler = Scaler {
            kind: super::super::ScaleKind::Standard,
            shift: (0..d).map(|j| j as f32 * 0.1).collect(),
            scale: (0..d).map(|j| 0.5 + j as f32 * 0.25).collect(),
            constant: Vec::new(),
        };
        let listed: Vec<usize> = (0..700).map(|i| (i * 37) % 1300).collect();
        for hidden in [vec![], vec![33], vec![40, 9]] {
            for outs in [1usize, 3] {
                let layers = super::super::init_layers(d, outs, &hidden, 3);
                for n in [1usize, 5, 512, 1300] {
                    for (rows, scaler) in [
                        (None, None),
                        (None, Some(&scaler)),
                        (Some(&listed[..n.min(700)]), Some(&scaler)),
                    ] {
                        let m = rows.map_or(n, <[usize]>::len);
                        let x = if rows.is_some() { &x[..] } else { &x[..n * d] };
                        for softmax in [true, false] {
                            let mc = McPass {
                                pass: 0,
                                seed: 11,
                                rate: 0.4,
                                softmax,
                            };
                            let mut want = vec![0f32; t * m * outs];
                            for (pass, o) in want.chunks_exact_mut(m * outs).enumerate() {
                                let mc = McPass {
                                    pass: pass as u64,
                                    ..mc
                                };
                                forward_into(&layers, x, rows, scaler, o, Head::Mc(mc));
                            }
                            let mut got = vec![f32::NAN; t * m * outs];
                            forward_mc_into(&layers, (x, rows), scaler, (&mut got, t), mc);
                            let bits =
                                |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                            let at = format!(
                                "hidden {hidden:?}, {outs} outputs, {m} rows, gathered {}, scaled {}, softmax {softmax}",
                                rows.is_some(),
                                scaler.is_some()
                            );
                            assert_eq!(bits(&got), bits(&want), "{at}");
                            if !(hidden.is_empty() || softmax && outs == 1) {
                                // Dropout is on: passes differ (a softmax of one output is 1).
                                assert_ne!(want[..m * outs], want[m * outs..2 * m * outs], "{at}");
                            }
                        }
                    }
                }
            }
        }
    }
}
