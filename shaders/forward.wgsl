// The MLP's forward pass on the GPU, for selecting straight from features
// (src/features/gpu.rs, which also has the argument these kernels' bounds
// carry out): widen uint8 features through the host's table, one tiled
// matrix product per layer (bias, ReLU between layers) that also carries a
// per-element bound on how far the result can be from the CPU's, and the
// logits with their largest bound in one more column. They then go through
// `score` in select.wgsl (softmax, score, interval keys, radix select).
// With MC dropout (`drop`), each hidden layer's ReLU output is masked as
// the CPU's McPass masks it (splitmix64: shaders/rng.wgsl, put before this
// file; the first layer's by `mask`, from the product all passes share),
// and `plane` turns each pass's logits (an MC-dropout pass, or a
// committee member's) into one sample plane of `score_samples` in
// select.wgsl.

struct FParams {
    rows: u32,
    inp: u32,       // the layer's input width (widen: features per row)
    out: u32,       // the layer's output width
    relu: u32,      // 1: ReLU after the affine map
    lut_cols: u32,  // widen: 1 (one table) or `inp` (one table per column)
    stride: u32,    // widen, finish: threads per grid row (x workgroups * 256)
    words: u32,     // widen: u32 words of packed bytes
    first: u32,     // 1: the input is the features (no difference yet)
    dst_width: u32, // values per row of dst (the logits have one more)
    c_d: f32,       // (1 + gamma) rounded up, for the carried difference
    c_p: f32,       // 2 gamma rounded up, for |W||a| + |b|
    tau: f32,       // flushed subnormals, both backends
    // MC dropout (layer): 1 = mask this layer's ReLU output; the layer's
    // index, the pass's key
    // (substream(seed, pass)), the rate, 1 / (1 - rate) as the CPU rounds
    // it, and the bound's factors for the scaling (src/features/gpu.rs).
    drop: u32,
    layer: u32,
    key_lo: u32,
    key_hi: u32,
    rate: f32,
    keep: f32,
    c_keep: f32,
    c_keep_a: f32,
    // plane: the pass, T, FLAG_VOTES (each pass's argmax must be the
    // CPU's) and FLAG_RENORMALIZED (the canonical values are the CPU's
    // divided by their sum), the CPU softmax's error factor and it - 1, and
    // the largest relative error a plane may carry.
    sample: u32,
    samples: u32,
    flags: u32,
    kc: f32,
    kc_m1: f32,
    rho_max: f32,
}

@group(0) @binding(0) var<uniform> F: FParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;
@group(0) @binding(5) var<storage, read> raw: array<u32>;
@group(0) @binding(6) var<storage, read> lut: array<f32>;
// The input's bound (rows x inp) and the output's (rows x out).
@group(0) @binding(7) var<storage, read> din: array<f32>;
@group(0) @binding(8) var<storage, read_write> dout: array<f32>;

// Four packed bytes per thread, each looked up in the host's table (the
// CPU's exact `v / 255`, scaled as the CPU scales it): the features reach
// the first layer with the CPU's bits.
@compute @workgroup_size(256)
fn widen(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x + gid.y * F.stride;
    if t >= F.words {
        return;
    }
    let word = raw[t];
    let total = F.rows * F.inp;
    for (var b = 0u; b < 4u; b = b + 1u) {
        let e = 4u * t + b;
        if e < total {
            let v = (word >> (8u * b)) & 255u;
            var col = 0u;
            if F.lut_cols > 1u {
                col = e % F.inp;
            }
            dst[e] = lut[col * 256u + v];
        }
    }
}

// Each logit row's largest bound (din, rows x inp) into dst's last column.
@compute @workgroup_size(256)
fn finish(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.x + gid.y * F.stride;
    if r >= F.rows {
        return;
    }
    var e = 0.0;
    var bad = false;
    for (var j = 0u; j < F.inp; j = j + 1u) {
        let v = din[r * F.inp + j];
        // Judged on the bits: max() need not keep a NaN.
        bad = bad || (bitcast<u32>(v) & 0x7f800000u) == 0x7f800000u;
        e = max(e, v);
    }
    if bad {
        e = bitcast<f32>(0x7f800000u);
    }
    dst[r * F.dst_width + F.inp] = e;
}

// Whether unit o of this layer is dropped (in every row of the pass):
// McPass's `drops` (src/learner/fused.rs), bit for bit.
fn dropped(o: u32) -> bool {
    let h = splitmix64(vec2<u32>(F.key_lo, F.key_hi) ^ vec2<u32>(o, F.layer));
    return f32(h.y >> 8u) * (1.0 / 16777216.0) < F.rate;
}

// dst[r, o] = bias[o] + sum_i src[r, i] * w[o, i] (ReLU if F.relu), and
// dout[r, o] = c_d * sum_i din[r, i] |w[o, i]| + c_p * (sum_i |src[r, i]| |w[o, i]| + |bias[o]|) + tau:
// a 64 x 64 tile of outputs per workgroup, 4 x 4 per thread, 16-wide
// slices of the inputs staged in workgroup memory.
const TS: u32 = 64u;
const TK: u32 = 16u;
// Rows of the staged slices are TS + 1 apart: the 16 threads that store one
// row's 16 inputs then hit 16 different memory banks, not one.
const PAD: u32 = 65u;
var<workgroup> xs: array<f32, 1040>;
var<workgroup> ds: array<f32, 1040>;
var<workgroup> ws: array<f32, 1040>;

@compute @workgroup_size(16, 16)
fn layer(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let r0 = wg.x * TS;
    let o0 = wg.y * TS;
    var acc: array<f32, 16>;
    var abs_acc: array<f32, 16>;
    var d_acc: array<f32, 16>;
    for (var i = 0u; i < 16u; i = i + 1u) {
        acc[i] = 0.0;
        abs_acc[i] = 0.0;
        d_acc[i] = 0.0;
    }
    for (var k0 = 0u; k0 < F.inp; k0 = k0 + TK) {
        for (var t = 0u; t < 4u; t = t + 1u) {
            let e = li + 256u * t;
            let row = e / TK;
            let kk = e % TK;
            let k = k0 + kk;
            var xv = 0.0;
            var dv = 0.0;
            if r0 + row < F.rows && k < F.inp {
                xv = src[(r0 + row) * F.inp + k];
                if F.first == 0u {
                    dv = din[(r0 + row) * F.inp + k];
                }
            }
            xs[kk * PAD + row] = xv;
            ds[kk * PAD + row] = dv;
            var wv = 0.0;
            if o0 + row < F.out && k < F.inp {
                wv = w[(o0 + row) * F.inp + k];
            }
            ws[kk * PAD + row] = wv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk = kk + 1u) {
            var xr: array<f32, 4>;
            var dr: array<f32, 4>;
            var wr: array<f32, 4>;
            for (var i = 0u; i < 4u; i = i + 1u) {
                xr[i] = xs[kk * PAD + lid.y * 4u + i];
                dr[i] = ds[kk * PAD + lid.y * 4u + i];
                wr[i] = ws[kk * PAD + lid.x * 4u + i];
            }
            for (var i = 0u; i < 4u; i = i + 1u) {
                for (var j = 0u; j < 4u; j = j + 1u) {
                    acc[i * 4u + j] = acc[i * 4u + j] + xr[i] * wr[j];
                    abs_acc[i * 4u + j] = abs_acc[i * 4u + j] + abs(xr[i]) * abs(wr[j]);
                }
            }
            // The first layer's inputs are the CPU's own: nothing to carry.
            if F.first == 0u {
                for (var i = 0u; i < 4u; i = i + 1u) {
                    for (var j = 0u; j < 4u; j = j + 1u) {
                        d_acc[i * 4u + j] = d_acc[i * 4u + j] + dr[i] * abs(wr[j]);
                    }
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i = i + 1u) {
        let r = r0 + lid.y * 4u + i;
        for (var j = 0u; j < 4u; j = j + 1u) {
            let o = o0 + lid.x * 4u + j;
            if r < F.rows && o < F.out {
                var v = acc[i * 4u + j] + bias[o];
                if F.relu == 1u {
                    v = max(v, 0.0);
                }
                let q = i * 4u + j;
                var d = F.c_d * d_acc[q] + F.c_p * (abs_acc[q] + abs(bias[o])) + F.tau;
                if F.drop == 1u {
                    if dropped(o) {
                        // Both backends hold an exact 0.
                        v = 0.0;
                        d = 0.0;
                    } else {
                        // Each side rounds its own product by keep once.
                        d = F.c_keep * d + F.c_keep_a * v + F.tau;
                        v = v * F.keep;
                    }
                }
                dst[r * F.dst_width + o] = v;
                dout[r * F.out + o] = d;
            }
        }
    }
}

// MC dropout after the first layer, whose product every pass shares (src:
// its affine map before the ReLU, din: that map's bound; rows x out, one
// element a thread): this pass's ReLU and mask into dst and dout, with
// the arithmetic `layer` applies to them, so the activations and their
// bounds are the ones a whole pass of `layer` with `drop` makes.
@compute @workgroup_size(256)
fn mask(@builtin(global_invocation_id) gid: vec3<u32>) {
    let e = gid.x + gid.y * F.stride;
    if e >= F.rows * F.out {
        return;
    }
    var v = max(src[e], 0.0);
    var d = din[e];
    if dropped(e % F.out) {
        v = 0.0;
        d = 0.0;
    } else {
        d = F.c_keep * d + F.c_keep_a * v + F.tau;
        v = v * F.keep;
    }
    dst[e] = v;
    dout[e] = d;
}

const FLAG_VOTES: u32 = 1u;
const FLAG_RENORMALIZED: u32 = 2u;

fn finite32(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

// One pass's logits (an MC-dropout pass, or a committee member's: src,
// rows x (C + 1), the last column their bound eps) as sample plane
// `sample` of the samples kernel's rows (dst), and each row's largest
// relative error over the passes so far in the plane after the T planes
// (src/features/gpu.rs, `select_members`, has the argument): the CPU's
// probability is the exact softmax of these logits within d1 (as
// `forward_bound` in select.wgsl; 2 d1 / (1 - d1) once divided by its
// sum), this f32 softmax within d2 (exp within 3 + 2|x| ulp, the sum, a
// division within 2.5 ulp; doubled), so it is the CPU's within
// rho = (d1 + d2) / (1 - d1). A pass whose rho exceeds rho_max, or (for the
// votes) whose largest logit is not ahead of every other by more than
// 4 rho, writes zeros: the samples kernel's sum check then leaves the row
// to the host.
@compute @workgroup_size(256)
fn plane(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.x + gid.y * F.stride;
    if r >= F.rows {
        return;
    }
    let c = F.inp;
    let base = r * (c + 1u);
    let at = F.sample * F.rows * c + r * c;
    let rho_at = F.samples * F.rows * c + r;
    let eps = src[base + c];
    var ok = finite32(eps);
    var m = src[base];
    var lo = src[base];
    var top = 0u;
    for (var j = 0u; j < c; j = j + 1u) {
        let z = src[base + j];
        ok = ok && finite32(z);
        if z > m {
            m = z;
            top = j;
        }
        lo = min(lo, z);
    }
    var second = lo;
    for (var j = 0u; j < c; j = j + 1u) {
        if j != top {
            second = max(second, src[base + j]);
        }
    }
    let inf = bitcast<f32>(0x7f800000u);
    var rho = inf;
    let spread = m - lo;
    // e^x - 1 <= x + x^2 for 0 <= x <= 1.
    let x = 2.0 * eps + 2.0 * 5.9604645e-8 * (spread + 2.0 * eps);
    if ok && x <= 1.0 {
        var d1 = ((x + x * x) * F.kc + F.kc_m1) * 1.0001;
        if (F.flags & FLAG_RENORMALIZED) != 0u && d1 < 0.5 {
            // Divided by their sum, which is 1 within d1.
            d1 = 2.0 * d1 / (1.0 - d1) * 1.0001;
        }
        let d2 = 2.0 * (f32(c) + 6.0 + 2.0 * spread) * 1.1920929e-7;
        if d1 < 0.5 {
            rho = (d1 + d2) / (1.0 - d1) * 1.0001;
        }
    }
    let tie = (F.flags & FLAG_VOTES) != 0u && c > 1u && !(m - second > 4.0 * rho);
    if !(rho <= F.rho_max) || tie {
        for (var j = 0u; j < c; j = j + 1u) {
            dst[at + j] = 0.0;
        }
    } else {
        var s = 0.0;
        for (var j = 0u; j < c; j = j + 1u) {
            s = s + exp(src[base + j] - m);
        }
        for (var j = 0u; j < c; j = j + 1u) {
            // The true ratio is at most 1; the rounding may not leave it.
            dst[at + j] = min(exp(src[base + j] - m) / s, 1.0);
        }
    }
    if F.sample == 0u {
        dst[rho_at] = rho;
    } else {
        dst[rho_at] = max(dst[rho_at], rho);
    }
}
