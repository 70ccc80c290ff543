// Lloyd's assignment on the GPU (src/coldstart/gpu.rs): for each row, the
// first centre at the smallest float32 squared distance, that distance,
// and the smallest distance to any other centre. The host turns the two
// distances into the bound of src/batch/dist.rs (which holds for a float32
// sum in any order, with or without fused multiply-add, and for a GPU that
// flushes subnormals) and re-checks in f64 every row the bound cannot
// decide, so the assignment is the canonical one of src/coldstart/kmeans.rs.

struct Params {
    rows: u32,
    dim: u32,
    centres: u32,
    // Rows per y step of the 2-D grid.
    stride: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> emb: array<f32>;
@group(0) @binding(2) var<storage, read> means: array<f32>;
// Per row: the nearest centre, then the bits of the two distances.
@group(0) @binding(3) var<storage, read_write> near: array<u32>;

// A tile of TC centres x TD dimensions, stored dimension-major, is read
// once into workgroup memory and serves the workgroup's 256 rows; each row
// keeps its TC partial sums in four vec4 registers. A centre's sum still
// runs over the dimensions in order (each lane is one centre's sum).
const TC: u32 = 16u;
const TD: u32 = 32u;
const F32_MAX: f32 = 3.40282347e38;

var<workgroup> tile: array<f32, 512>;

struct Nearest {
    best: u32,
    least: f32,
    // Embeddings are within 1e15 and the host keeps dim·(2e15)² below
    // F32_MAX, so no distance overflows and F32_MAX means "no other
    // centre".
    second: f32,
}

// Centre j at float32 distance s; ties keep the lower centre nearest and
// make the other the runner-up (the host then decides in f64).
fn consider(n: ptr<function, Nearest>, j: u32, s: f32) {
    if (j >= p.centres) {
        return;
    }
    if (j == 0u || s < (*n).least) {
        if (j != 0u) {
            (*n).second = (*n).least;
        }
        (*n).least = s;
        (*n).best = j;
    } else if (s < (*n).second) {
        (*n).second = s;
    }
}

fn quad(d: u32, q: u32) -> vec4<f32> {
    let b = d * TC + 4u * q;
    return vec4<f32>(tile[b], tile[b + 1u], tile[b + 2u], tile[b + 3u]);
}

@compute @workgroup_size(256)
fn assign(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let i = gid.x + gid.y * p.stride;
    // Rows past the end still take part in the barriers; they read row 0
    // and write nothing.
    let live = i < p.rows;
    let a = select(0u, i, live) * p.dim;
    var n = Nearest(0u, F32_MAX, F32_MAX);
    for (var c0 = 0u; c0 < p.centres; c0 = c0 + TC) {
        var s0 = vec4<f32>(0.0);
        var s1 = vec4<f32>(0.0);
        var s2 = vec4<f32>(0.0);
        var s3 = vec4<f32>(0.0);
        for (var d0 = 0u; d0 < p.dim; d0 = d0 + TD) {
            workgroupBarrier();
            for (var t = li; t < TC * TD; t = t + 256u) {
                let c = c0 + t % TC;
                let d = d0 + t / TC;
                var v = 0.0;
                if (c < p.centres && d < p.dim) {
                    v = means[c * p.dim + d];
                }
                tile[t] = v;
            }
            workgroupBarrier();
            let dn = min(TD, p.dim - d0);
            for (var d = 0u; d < dn; d = d + 1u) {
                let x = vec4<f32>(emb[a + d0 + d]);
                let t0 = x - quad(d, 0u);
                let t1 = x - quad(d, 1u);
                let t2 = x - quad(d, 2u);
                let t3 = x - quad(d, 3u);
                s0 = s0 + t0 * t0;
                s1 = s1 + t1 * t1;
                s2 = s2 + t2 * t2;
                s3 = s3 + t3 * t3;
            }
        }
        for (var l = 0u; l < 4u; l = l + 1u) {
            consider(&n, c0 + l, s0[l]);
        }
        for (var l = 0u; l < 4u; l = l + 1u) {
            consider(&n, c0 + 4u + l, s1[l]);
        }
        for (var l = 0u; l < 4u; l = l + 1u) {
            consider(&n, c0 + 8u + l, s2[l]);
        }
        for (var l = 0u; l < 4u; l = l + 1u) {
            consider(&n, c0 + 12u + l, s3[l]);
        }
    }
    if (live) {
        near[3u * i] = n.best;
        near[3u * i + 1u] = bitcast<u32>(n.least);
        near[3u * i + 2u] = bitcast<u32>(n.second);
    }
}
