// BatchBALD's step on the GPU (src/batch/batchbald_gpu.rs): for every row
// of a span, H(y_n | y_B) = sum_y omega_y H(r_y) over the batch's
// configurations y, with r_y = sum_t w_{y,t} p_{n,t} (src/score/batchbald.rs
// defines it in f64). One workgroup a row; its threads take the
// configurations in turn, each summing its share in order, then a tree
// sums the threads' partial sums. The host bounds the f32 value's error
// (`Joint::gpu_interval`, which counts exactly these steps: T
// multiply-adds and C logarithms a configuration, ω's product, the
// per-thread sums, the tree) and re-checks every row whose interval
// reaches the best canonically. ln_approx comes from ln.wgsl.

struct Params {
    rows: u32,
    samples: u32,
    classes: u32,
    // Configurations, padded with zero weight to a multiple of 64: the
    // stride of w's sample-major rows.
    configs: u32,
    // Workgroups along x; a row is x + y * nx.
    nx: u32,
    // The span's first row in the output.
    first: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
// The span's rows, T x C f32 probabilities each (canonical, rounded).
@group(0) @binding(1) var<storage, read> probs: array<f32>;
// w[t * configs + m]: configuration m's posterior weight of sample t.
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> omega: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

const THREADS: u32 = 64u;
// Classes summed at once, in registers.
const BLOCK: u32 = 8u;

var<workgroup> part: array<f32, 64>;

@compute @workgroup_size(64)
fn gain(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + wid.y * P.nx;
    let live = row < P.rows;
    let t_n = P.samples;
    let c_n = P.classes;
    let base = select(0u, row * t_n * c_n, live);
    let configs = select(0u, P.configs, live);
    var acc = 0.0;
    for (var m = lid; m < configs; m = m + THREADS) {
        var h = 0.0;
        for (var c0 = 0u; c0 < c_n; c0 = c0 + BLOCK) {
            var r: array<f32, 8>;
            let width = min(BLOCK, c_n - c0);
            for (var t = 0u; t < t_n; t = t + 1u) {
                let wt = w[t * P.configs + m];
                let at = base + t * c_n + c0;
                for (var j = 0u; j < width; j = j + 1u) {
                    r[j] = fma(wt, probs[at + j], r[j]);
                }
            }
            for (var j = 0u; j < width; j = j + 1u) {
                h = h - plogp(r[j]);
            }
        }
        acc = acc + omega[m] * h;
    }
    part[lid] = acc;
    workgroupBarrier();
    for (var s = THREADS / 2u; s > 0u; s = s >> 1u) {
        if lid < s {
            part[lid] = part[lid] + part[lid + s];
        }
        workgroupBarrier();
    }
    if lid == 0u && live {
        out[P.first + row] = part[0];
    }
}
