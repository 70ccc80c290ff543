// The MLP's forward pass on the GPU, for selecting straight from features
// (src/features/gpu.rs, which also has the argument these kernels' bounds
// carry out): widen uint8 features through the host's table, one tiled
// matrix product per layer (bias, ReLU between layers) that also carries a
// per-element bound on how far the result can be from the CPU's, and the
// logits with their largest bound in one more column. They then go through
// `score` in select.wgsl (softmax, score, interval keys, radix select).

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
                dst[r * F.dst_width + o] = v;
                let q = i * 4u + j;
                dout[r * F.out + o] = F.c_d * d_acc[q] + F.c_p * (abs_acc[q] + abs(bias[o])) + F.tau;
            }
        }
    }
}
