// Batch-aware selection on the GPU (src/batch/gpu.rs): one `update` pass per pick
// folds the newest centre into each row's float32 nearest-centre distance,
// writes each row's bounds on its key (lo, hi), and reduces the largest lo;
// `collect` then lists the rows whose hi reaches it. The host re-checks
// those canonically (src/batch/mod.rs), so the picks equal the CPU's.
// The bounds follow src/batch/dist.rs and src/batch/badge.rs, with a few
// more float32 roundings covered (see the constants below).

struct Params {
    rows: u32,
    dim: u32,
    classes: u32,
    // Centres to fold in: centres[first .. first + count].
    first: u32,
    count: u32,
    // BADGE's pick number and seed (the race of src/batch/rng.rs).
    t: u32,
    seed_lo: u32,
    seed_hi: u32,
    // Bound terms, rounded up on the host.
    eps: f32,
    abs_err: f32,
    eta_a: f32,
    eta_e: f32,
    under: f32,
    emax: f32,
    gmax: f32,
    exp_rel: f32,
    // Rows per y step of the 2-D grid, and candidate slots in `found`.
    stride: u32,
    cap: u32,
    // 0: core-set, 1: BADGE, 2: igs or gsy (src/batch/gpu.rs, `Update`).
    kind: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> emb: array<f32>;
// BADGE: each row's probabilities; igs and gsy: each row's prediction
// (float32).
@group(0) @binding(2) var<storage, read> probs: array<f32>;
// BADGE per row: canonical ‖g‖², ‖e‖² (float32), ŷ (bits), unused; igs and
// gsy per centre: its target (float32), unused x3.
@group(0) @binding(3) var<storage, read> info: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> centres: array<u32>;
@group(0) @binding(5) var<storage, read_write> mind: array<f32>;
@group(0) @binding(6) var<storage, read_write> bounds: array<vec2<f32>>;
@group(0) @binding(7) var<storage, read_write> wgmax: array<f32>;
// [0] candidate count, [1] bits of the largest lo, [2 ..] candidate rows.
@group(0) @binding(8) var<storage, read_write> found: array<atomic<u32>>;

const TAKEN: f32 = -1.0;
const F32_MAX: f32 = 3.40282347e38;
const MIN_NORMAL: f32 = 1.17549435e-38;
// Four float32 roundings of the bound arithmetic itself.
const ROUND: f32 = 2.384185791015625e-7; // 4·2⁻²⁴
// The float32 combination ‖g_i‖² − 2(a·a')(e·e') + ‖g_c‖²: 32·2⁻²⁴ of its terms.
const COMBINE: f32 = 1.9073486328125e-6;

var<workgroup> scratch: array<f32, 256>;

fn row_index(gid: vec3<u32>) -> u32 {
    return gid.x + gid.y * p.stride;
}

// The largest of the workgroup's values `v` (every invocation gets it).
fn workgroup_max(v: f32, li: u32) -> f32 {
    scratch[li] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s = s >> 1u) {
        if (li < s) {
            scratch[li] = max(scratch[li], scratch[li + s]);
        }
        workgroupBarrier();
    }
    return scratch[0];
}

// The largest `lo` of the workgroup into wgmax[group].
fn reduce_lo(lo: f32, li: u32, group: u32) {
    let best = workgroup_max(lo, li);
    if (li == 0u) {
        wgmax[group] = best;
    }
}

// The float32 squared distance of rows i and c, summed in column order
// (the order core-set's bound covers).
fn sq_dist(i: u32, c: u32) -> f32 {
    let a = i * p.dim;
    let b = c * p.dim;
    var s = 0.0;
    for (var j = 0u; j < p.dim; j = j + 1u) {
        let t = emb[a + j] - emb[b + j];
        s = s + t * t;
    }
    return s;
}

// Core-set: fold centres[first .. first + count] into row i; its bounds.
fn coreset_row(i: u32) -> f32 {
    var m = mind[i];
    if (m == TAKEN) {
        bounds[i] = vec2<f32>(-1.0, -1.0);
        return -1.0;
    }
    for (var c = 0u; c < p.count; c = c + 1u) {
        m = min(m, sq_dist(i, centres[p.first + c]));
    }
    mind[i] = m;
    let lo = max(0.0, (m - p.abs_err) / (1.0 + p.eps)) * (1.0 - ROUND);
    let hi = (m + p.abs_err) / (1.0 - p.eps) * (1.0 + ROUND);
    bounds[i] = vec2<f32>(lo, hi);
    return lo;
}

// igs and gsy (src/batch/greedy.rs): fold centres[first .. first + count]
// into row i's bounds on its key min_c d(x_i, x_c) · (y_i − y_c)² (gsy,
// with no embeddings, dim 0: min_c (y_i − y_c)²), kept in bounds[i] from
// pick to pick (the host starts them at F32_MAX). Each centre's squared
// distance gets core-set's bound; the output term's difference of the
// float32 prediction and target is within e = 2.2·2⁻²⁴ (|y_i| + |y_c| + |d|)
// of the f64 one (each value's rounding to float32, the subtraction's; a
// tiny term for the subnormals a GPU may flush); the products get 2 ROUND
// (eight roundings, the host's f64 product among them), the output term
// squared first, and an upper end below the smallest normal float is
// raised to it, since a GPU may flush a subnormal product to 0. An end
// past F32_MAX is clamped to it: a row whose upper end is F32_MAX is a
// contender for every pick.
fn igs_row(i: u32) -> f32 {
    if (mind[i] == TAKEN) {
        bounds[i] = vec2<f32>(-1.0, -1.0);
        return -1.0;
    }
    var b = bounds[i];
    let yi = probs[i];
    for (var c = 0u; c < p.count; c = c + 1u) {
        let s = sq_dist(i, centres[p.first + c]);
        let yc = info[p.first + c].x;
        let d = abs(yi - yc);
        let e = (abs(yi) + abs(yc) + d) * 1.3e-7 + 2.4e-38;
        let dl = max(0.0, d - e);
        let dh = d + e;
        var sl = 1.0;
        var sh = 1.0;
        if (p.dim > 0u) {
            sl = max(0.0, (s - p.abs_err) / (1.0 + p.eps));
            sh = (s + p.abs_err) / (1.0 - p.eps);
        }
        let lo = sl * (dl * dl) * (1.0 - 2.0 * ROUND);
        let hi = max(sh * (dh * dh) * (1.0 + 2.0 * ROUND), MIN_NORMAL);
        b = vec2<f32>(min(b.x, min(lo, F32_MAX)), min(b.y, min(hi, F32_MAX)));
    }
    bounds[i] = b;
    return b.x;
}

fn mix32(x0: u32) -> u32 {
    var x = x0;
    x = x ^ (x >> 16u);
    x = x * 0x7feb352du;
    x = x ^ (x >> 15u);
    x = x * 0x846ca68bu;
    x = x ^ (x >> 16u);
    return x;
}

// src/batch/rng.rs: the 23 random bits of pick t, row (hi, lo).
fn race_bits(t: u32, row_lo: u32, row_hi: u32) -> u32 {
    var h = mix32(p.seed_lo ^ 0x9e3779b9u);
    h = mix32(h ^ p.seed_hi);
    h = mix32(h ^ t);
    h = mix32(h ^ row_lo);
    return mix32(h ^ row_hi) >> 9u;
}

// src/batch/rng.rs: E = −ln U by the atanh series on the mantissa.
fn exp_fast(r: u32) -> f32 {
    let u = (f32(r) + 0.5) * (1.0 / 8388608.0);
    let bits = bitcast<u32>(u);
    var e = i32((bits >> 23u) & 0xffu) - 127;
    var mb = (bits & 0x007fffffu) | 0x3f800000u;
    if (mb >= 0x3fb504f3u) {
        mb = mb - 0x00800000u;
        e = e + 1;
    }
    let m = bitcast<f32>(mb);
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let ln_m = 2.0 * s * (1.0 + s2 * (1.0 / 3.0 + s2 * (0.2 + s2 * (1.0 / 7.0 + s2 / 9.0))));
    return -(f32(e) * 0.69314718 + ln_m);
}

// BADGE: fold centre centres[first] into row i; the bounds on its race key.
fn badge_row(i: u32) -> f32 {
    var m = mind[i];
    if (m == TAKEN) {
        bounds[i] = vec2<f32>(-1.0, -1.0);
        return -1.0;
    }
    let c = centres[p.first];
    let me = info[i];
    let them = info[c];
    let y = bitcast<u32>(me.z);
    let yc = bitcast<u32>(them.z);
    var pp = 0.0;
    for (var j = 0u; j < p.classes; j = j + 1u) {
        pp = pp + probs[i * p.classes + j] * probs[c * p.classes + j];
    }
    var same = 0.0;
    if (y == yc) {
        same = 1.0;
    }
    let ab = pp - probs[i * p.classes + yc] - probs[c * p.classes + y] + same;
    var ef = 0.0;
    for (var j = 0u; j < p.dim; j = j + 1u) {
        ef = ef + emb[i * p.dim + j] * emb[c * p.dim + j];
    }
    m = min(m, max(0.0, me.x - 2.0 * (ab * ef) + them.x));
    mind[i] = m;
    let r = sqrt(me.y * p.emax) * (1.0 + ROUND);
    let dfe = p.eta_e * r + p.under;
    let b = 2.0 * (p.eta_a * (r + dfe) + 2.0 * dfe)
        + (me.x + p.gmax + 6.0 * (r + dfe)) * COMBINE;
    let x = exp_fast(race_bits(p.t, i, 0u));
    let lo = min(max(0.0, m - b) * (1.0 - p.exp_rel) / x * (1.0 - ROUND), F32_MAX);
    let hi = (m + b) * (1.0 + p.exp_rel) / x * (1.0 + ROUND);
    bounds[i] = vec2<f32>(lo, hi);
    return lo;
}

// One pass of a pick: every row's update and bounds (core-set when kind is
// 0, BADGE when 1, igs or gsy when 2), and each workgroup's largest lower bound.
@compute @workgroup_size(256)
fn update(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nw: vec3<u32>,
) {
    let i = row_index(gid);
    var lo = -1.0;
    if (i < p.rows) {
        if (p.kind == 0u) {
            lo = coreset_row(i);
        } else if (p.kind == 1u) {
            lo = badge_row(i);
        } else {
            lo = igs_row(i);
        }
    }
    reduce_lo(lo, li, wid.x + wid.y * nw.x);
}

// One workgroup: the largest lo over wgmax[0 .. count] into found[1]; resets
// the candidate count.
@compute @workgroup_size(256)
fn reduce(@builtin(local_invocation_index) li: u32) {
    var best = -1.0;
    for (var g = li; g < p.count; g = g + 256u) {
        best = max(best, wgmax[g]);
    }
    let top = workgroup_max(best, li);
    if (li == 0u) {
        atomicStore(&found[0], 0u);
        atomicStore(&found[1], bitcast<u32>(top));
    }
}

// The rows whose hi reaches the largest lo, in any order (the host sorts).
@compute @workgroup_size(256)
fn collect(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = row_index(gid);
    if (i >= p.rows) {
        return;
    }
    let b = bounds[i];
    let best = bitcast<f32>(atomicLoad(&found[1]));
    if (b.y >= 0.0 && b.y >= best) {
        let slot = atomicAdd(&found[0], 1u);
        if (slot < p.cap) {
            atomicStore(&found[2u + slot], i);
        }
    }
}
