// Float32 squared distances from each row of a slab of embeddings to a set
// of other rows (src/coldstart/gpu.rs), for three uses:
// - `assign` (Lloyd's assignment): each row's first centre at the smallest
//   distance, that distance, and the smallest to any other centre;
// - `edges` (ProbCover's δ-ball graph): every pair i < j whose distance is
//   below `skip`, flagged when it is not below `surely`;
// - `nearest_other` (ProbCover's δ by purity): each row's smallest distance
//   to a row of another cluster.
// The host turns each distance into the bound of src/batch/dist.rs (which
// holds for a float32 sum in any order, with or without fused multiply-add,
// and for a GPU that flushes subnormals) and re-checks in f64 every row or
// pair the bound cannot decide, so every result is the canonical one of
// src/coldstart/kmeans.rs and src/coldstart/probcover.rs.

struct Params {
    rows: u32,
    dim: u32,
    // Rows of `others`: the centres, or a slab of the embeddings.
    others: u32,
    // Rows per y step of the 2-D grid.
    stride: u32,
    // Global index of the slab's first row, and of the others' first row.
    a0: u32,
    b0: u32,
    // Pair slots in `found`.
    cap: u32,
    _pad: u32,
    // Pairs at float32 distance below `skip` may be edges; below `surely`
    // they are.
    skip: f32,
    surely: f32,
    _pad2: u32,
    _pad3: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> emb: array<f32>;
@group(0) @binding(2) var<storage, read> others: array<f32>;
// Each row's cluster, indexed globally (`nearest_other`).
@group(0) @binding(3) var<storage, read> ids: array<u32>;
// Per row: the nearest centre, then the bits of the two distances.
@group(0) @binding(4) var<storage, read_write> near: array<u32>;
// [0] pairs found, [1] set when some did not fit, [2 ..] pairs (i, j),
// j's top bit set when f64 must decide.
@group(0) @binding(5) var<storage, read_write> found: array<atomic<u32>>;
// Per row of the slab: the smallest distance to another cluster so far.
@group(0) @binding(6) var<storage, read_write> far: array<f32>;

// A tile of TC others x TD dimensions, stored dimension-major, is read
// once into workgroup memory and serves the workgroup's 256 rows; each row
// keeps its TC partial sums in four vec4 registers. Each sum still runs
// over the dimensions in order (each lane is one other row's sum).
const TC: u32 = 16u;
const TD: u32 = 32u;
const F32_MAX: f32 = 3.40282347e38;
// Embeddings are within 1e15 and the host keeps dim·(2e15)² below F32_MAX,
// so no distance overflows and F32_MAX can mean "none".

var<workgroup> tile: array<f32, 512>;

fn quad(d: u32, q: u32) -> vec4<f32> {
    let b = d * TC + 4u * q;
    return vec4<f32>(tile[b], tile[b + 1u], tile[b + 2u], tile[b + 3u]);
}

// The distances from the row whose values start at emb[a] to others
// c0 .. c0 + 15: lane l of element q is other c0 + 4q + l (zero past the
// end). Every invocation of the workgroup calls it with the same c0 (it
// holds barriers); `li` is the invocation's index in the workgroup.
fn sums(a: u32, c0: u32, li: u32) -> array<vec4<f32>, 4> {
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
            if (c < p.others && d < p.dim) {
                v = others[c * p.dim + d];
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
    return array<vec4<f32>, 4>(s0, s1, s2, s3);
}

struct Nearest {
    best: u32,
    least: f32,
    second: f32,
}

// Centre j at distance s; ties keep the lower centre nearest and make the
// other the runner-up (the host then decides in f64).
fn consider(n: ptr<function, Nearest>, j: u32, s: f32) {
    if (j >= p.others) {
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

// The slab row of this invocation, whether it exists, and where its values
// start (rows past the end read row 0: they still take part in barriers).
fn row_of(gid: vec3<u32>) -> vec3<u32> {
    let i = gid.x + gid.y * p.stride;
    let live = i < p.rows;
    return vec3<u32>(i, u32(live), select(0u, i, live) * p.dim);
}

@compute @workgroup_size(256)
fn assign(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let r = row_of(gid);
    var n = Nearest(0u, F32_MAX, F32_MAX);
    for (var c0 = 0u; c0 < p.others; c0 = c0 + TC) {
        let s = sums(r.z, c0, li);
        for (var q = 0u; q < 4u; q = q + 1u) {
            for (var l = 0u; l < 4u; l = l + 1u) {
                consider(&n, c0 + 4u * q + l, s[q][l]);
            }
        }
    }
    if (r.y == 1u) {
        near[3u * r.x] = n.best;
        near[3u * r.x + 1u] = bitcast<u32>(n.least);
        near[3u * r.x + 2u] = bitcast<u32>(n.second);
    }
}

@compute @workgroup_size(256)
fn edges(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let r = row_of(gid);
    let i = p.a0 + r.x;
    // Pairs i < j only: the workgroup starts at the tile of others holding
    // its first row (the same for all its invocations).
    let first = p.a0 + wid.x * 256u + wid.y * p.stride;
    var start = 0u;
    if (first > p.b0) {
        start = (first - p.b0) / TC * TC;
    }
    for (var c0 = start; c0 < p.others; c0 = c0 + TC) {
        let s = sums(r.z, c0, li);
        for (var q = 0u; q < 4u; q = q + 1u) {
            for (var l = 0u; l < 4u; l = l + 1u) {
                let c = c0 + 4u * q + l;
                let j = p.b0 + c;
                let v = s[q][l];
                if (r.y == 1u && c < p.others && j > i && v < p.skip) {
                    let slot = atomicAdd(&found[0], 1u);
                    if (slot < p.cap) {
                        atomicStore(&found[2u + 2u * slot], i);
                        atomicStore(&found[3u + 2u * slot], j | select(0u, 0x80000000u, v >= p.surely));
                    } else {
                        atomicStore(&found[1], 1u);
                    }
                }
            }
        }
    }
}

@compute @workgroup_size(256)
fn nearest_other(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let r = row_of(gid);
    let me = ids[p.a0 + select(0u, r.x, r.y == 1u)];
    var m = F32_MAX;
    for (var c0 = 0u; c0 < p.others; c0 = c0 + TC) {
        let s = sums(r.z, c0, li);
        for (var q = 0u; q < 4u; q = q + 1u) {
            for (var l = 0u; l < 4u; l = l + 1u) {
                let c = c0 + 4u * q + l;
                if (c < p.others && ids[p.b0 + c] != me) {
                    m = min(m, s[q][l]);
                }
            }
        }
    }
    if (r.y == 1u) {
        far[r.x] = min(far[r.x], m);
    }
}
