// alpool's GPU kernels: score every row of a chunk, then a radix select on
// (The codes STRATEGY_*, INPUT_*, STATUS_* and the counter slots are
// defined once in src/backend/gpu.rs, `codes`, and prepended to this file.)
//
// the scores' order-preserving keys (histogram passes over 8-bit digits) and
// a compaction of the rows at or above the cut. Only O(k) row indices leave
// the GPU. The formulas mirror src/score/ (canonical definitions) and
// src/score/fast.rs (the logarithm); the host bounds this file's f32 error
// and re-scores every returned row canonically.

struct Params {
    rows: u32,
    classes: u32,
    strategy: u32,   // STRATEGY_*
    input: u32,      // INPUT_*
    tol: f32,
    slack: f32,
    inv_temp: f32,
    inv_ln_b: f32,
    seed_lo: u32,
    seed_hi: u32,
    g0_lo: u32,
    g0_hi: u32,
    stride: u32,     // rows per dispatch row (x workgroups * 256)
    shift: u32,      // histogram digit position
    prefix: u32,     // key bits above the digit that a row must match
    prefix_mask: u32,
    floor_key: u32,  // rows below this key cannot enter the top k
    cut_key: u32,    // compaction keeps rows at or above this key
    cap: u32,        // candidate buffer capacity
    // Logits the GPU computed from features (src/features/gpu.rs): 1 = a
    // row that cannot be scored goes to the host, and each row carries in
    // column `classes` the bound on its logits' distance from the CPU's;
    // the score kernel turns it into an interval [lo, hi] around the
    // priority: `keys` gets lo, keys[hi_at + r] gets hi.
    lenient: u32,
    width: u32,      // values per row (classes, + 1 with a logit bound)
    hi_at: u32,
    g: f32,          // the f32 softmax and score's own bound (gpu_bound)
    kc: f32,         // the CPU softmax's relative error factor, and it - 1
    kc_m1: f32,
    ln_c: f32,
    // A multi-label pool (INPUT_MULTILABEL): the labeled set's mean label
    // count as hi + lo, adaptive's beta, and each priority's interval
    // half + rel * |priority| (src/score/multilabel.rs, gpu_bounds).
    card_hi: f32,
    card_lo: f32,
    beta: f32,
    half: f32,
    rel: f32,
    // Samples (INPUT_SAMPLES): T, each a plane of rows x classes values.
    samples: u32,
    // A stochastic batch (NOISE_*, src/score/stochastic.rs): the value's
    // shift (1 for power over a lower-is-better score), 1 / beta (0 at
    // beta = inf), the noise's seed (already mixed with its stream), and
    // the logarithm's proven error (ln_err).
    noise: u32,
    v_shift: f32,
    inv_beta: f32,
    nseed_lo: u32,
    nseed_hi: u32,
    ln_abs: f32,
    ln_rel: f32,
    // Density (INPUT_EMBEDDINGS): the row holding the mean direction.
    m_at: u32,
    // A row-wise priority weighted by density (`weigh`): 1 when it is,
    // where each row's weight interval starts in the row buffer, and 1
    // when the strategy's informativeness is 1 + priority (lower-is-better
    // scores: 1 - score), else 0.
    weighted: u32,
    w_at: u32,
    phi_shift: f32,
    // Samples the GPU made itself (MC dropout, a committee): 1, each row's
    // bound from its own values (`mc_moved`).
    mc: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> rows: array<f32>;
@group(0) @binding(2) var<storage, read_write> keys: array<u32>;
// STATUS_SCORED, STATUS_UNDECIDED (row sum too close to the tolerance for
// f32: the host decides), STATUS_INVALID, STATUS_EXCLUDED.
@group(0) @binding(3) var<storage, read_write> status: array<u32>;
@group(0) @binding(4) var<storage, read> excl: array<u32>;
@group(0) @binding(5) var<storage, read_write> hist: array<atomic<u32>, 256>;
// [COUNT_CANDIDATES], [FIRST_INVALID] row, [COUNT_UNDECIDED] rows
@group(0) @binding(6) var<storage, read_write> counters: array<atomic<u32>, 4>;
// (row, key) pairs
@group(0) @binding(7) var<storage, read_write> cand: array<u32>;
@group(0) @binding(8) var<storage, read_write> unc: array<u32>;

const WG: u32 = 256u;
// f32's unit roundoff, 2^-24.
const ROUNDOFF: f32 = 5.9604645e-8;

// Order-preserving map of f32 onto u32.
fn ordered(x: f32) -> u32 {
    let b = bitcast<u32>(x);
    if (b >> 31u) == 1u {
        return ~b;
    }
    return b | 0x80000000u;
}

// Finite and >= 0 (-0.0 passes), judged on the bits: GPUs may assume that
// float comparisons never see NaN.
fn prob_ok(x: f32) -> bool {
    let b = bitcast<u32>(x);
    let finite = (b & 0x7f800000u) != 0x7f800000u;
    let nonneg = (b >> 31u) == 0u || (b & 0x7fffffffu) == 0u;
    return finite && nonneg;
}

fn finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

// ln_approx and plogp: shaders/ln.wgsl, put before this file.

// add64 and splitmix64: shaders/rng.wgsl, put before this file.

fn random_priority(r: u32) -> f32 {
    let index = add64(vec2<u32>(P.g0_lo, P.g0_hi), vec2<u32>(r, 0u));
    let inner = splitmix64(add64(index, vec2<u32>(0x7f4a7c15u, 0x9e3779b9u)));
    let h = splitmix64(vec2<u32>(P.seed_lo, P.seed_hi) ^ inner);
    // The top 24 of the 53 bits the canonical score uses: within 2^-24.
    return f32(h.y >> 8u) * 5.9604645e-8;
}

fn invalid(r: u32) {
    status[r] = STATUS_INVALID;
    keys[r] = 0u;
    atomicMin(&counters[FIRST_INVALID], r);
}

// The host decides this row.
fn undecided(r: u32) {
    status[r] = STATUS_UNDECIDED;
    keys[r] = 0u;
    let i = atomicAdd(&counters[COUNT_UNDECIDED], 1u);
    unc[i] = r;
}

@compute @workgroup_size(WG)
fn score(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.x + gid.y * P.stride;
    if r >= P.rows {
        return;
    }
    if ((excl[r >> 5u] >> (r & 31u)) & 1u) == 1u {
        status[r] = STATUS_EXCLUDED;
        keys[r] = 0u;
        return;
    }
    if P.input == INPUT_MULTILABEL || P.input == INPUT_MULTILABEL_LOGITS {
        score_multi(r);
        return;
    }
    if P.input == INPUT_SAMPLES {
        score_samples(r);
        return;
    }
    if P.input == INPUT_EMBEDDINGS {
        score_density(r);
        return;
    }
    let base = r * P.width;
    var a = 0.0;
    var b = 0.0;
    var h = 0.0;
    if P.input != INPUT_LOGITS {
        var s = 0.0;
        for (var j = 0u; j < P.classes; j = j + 1u) {
            let x = rows[base + j];
            if !prob_ok(x) {
                invalid(r);
                return;
            }
            s = s + x;
        }
        var scale = 1.0;
        if P.input == INPUT_RENORMALIZE {
            if s == 0.0 {
                invalid(r);
                return;
            }
            scale = 1.0 / s;
        } else if !(abs(s - 1.0) + P.slack * (s + 1.0) <= P.tol) {
            undecided(r);
            return;
        }
        for (var j = 0u; j < P.classes; j = j + 1u) {
            let x = rows[base + j] * scale;
            let lo = min(a, x);
            a = max(a, x);
            b = max(b, lo);
            if P.strategy == STRATEGY_ENTROPY {
                h = h + plogp(x);
            }
        }
    } else {
        var m = rows[base];
        for (var j = 0u; j < P.classes; j = j + 1u) {
            let z = rows[base + j];
            if !finite(z) {
                if P.lenient == 1u {
                    undecided(r);
                } else {
                    invalid(r);
                }
                return;
            }
            m = max(m, z);
        }
        var s = 0.0;
        for (var j = 0u; j < P.classes; j = j + 1u) {
            s = s + exp((rows[base + j] - m) * P.inv_temp);
        }
        for (var j = 0u; j < P.classes; j = j + 1u) {
            let x = exp((rows[base + j] - m) * P.inv_temp) / s;
            let lo = min(a, x);
            a = max(a, x);
            b = max(b, lo);
            if P.strategy == STRATEGY_ENTROPY {
                h = h + plogp(x);
            }
        }
    }
    var pri: f32;
    switch P.strategy {
        case STRATEGY_LEAST_CONFIDENCE: { pri = 1.0 - a; }
        case STRATEGY_MARGIN: { pri = -(a - b); }
        case STRATEGY_ENTROPY: { pri = -h * P.inv_ln_b; }
        case STRATEGY_RATIO: { pri = b / a; }
        default: { pri = random_priority(r); }
    }
    status[r] = STATUS_SCORED;
    if P.lenient == 1u {
        let bnd = forward_bound(base, pri);
        store(r, pri - bnd, pri + bnd);
    } else if P.weighted == 1u {
        weigh(r, pri, (P.half + abs(pri) * 2.4e-7) * 1.0001);
    } else if P.noise != NOISE_NONE {
        // The chunk's one bound (P.half) as an interval, widened for the
        // f32 subtraction and addition.
        let bnd = (P.half + abs(pri) * 2.4e-7) * 1.0001;
        store(r, pri - bnd, pri + bnd);
    } else {
        keys[r] = ordered(pri);
    }
}

// A multi-label row: L independent probabilities, each in [0, 1], or
// their logits (INPUT_MULTILABEL_LOGITS: p = 1 / (1 + e^-z) and
// q = 1 - p = 1 / (1 + e^z), each within (6 + 2|z|) * 2^-23 relative, which
// the row's own bound adds; a label is positive when z > 0, and a row with
// a logit too near 0 for that to match the host's f64 sigmoid goes to the
// host). The priority mirrors src/score/multilabel.rs; the host proves
// the interval (gpu_bounds) and re-scores every candidate canonically.
fn score_multi(r: u32) {
    let base = r * P.width;
    let l = P.classes;
    let logits = P.input == INPUT_MULTILABEL_LOGITS;
    var sum_h = 0.0;
    var max_h = -1.0;
    var near = 2.0;
    var n = 0u;
    var lo_pos = 2.0;
    var hi_neg = -1.0;
    var sum_s = 0.0;
    var max_s = -1.0;
    var eps_sum = 0.0;
    var eps_max = 0.0;
    let entropy = P.strategy == STRATEGY_MEAN_ENTROPY || P.strategy == STRATEGY_MAX_ENTROPY;
    for (var j = 0u; j < l; j = j + 1u) {
        let v = rows[base + j];
        var x = v;
        var q = 1.0 - v;
        var positive = v > 0.5;
        if logits {
            if !finite(v) {
                invalid(r);
                return;
            }
            if abs(v) < 1e-6 {
                undecided(r);
                return;
            }
            x = 1.0 / (1.0 + exp(-v));
            q = 1.0 / (1.0 + exp(v));
            positive = v > 0.0;
            let e = (6.0 + 2.0 * abs(v)) * 1.1920929e-7;
            eps_sum = eps_sum + e;
            eps_max = max(eps_max, e);
        } else if !prob_ok(v) || !(v <= 1.0) {
            invalid(r);
            return;
        }
        if entropy {
            let hx = -(plogp(x) + plogp(q));
            sum_h = sum_h + hx;
            max_h = max(max_h, hx);
        }
        near = min(near, abs(x - 0.5));
        var s = -0.5 * x;
        if positive {
            n = n + 1u;
            lo_pos = min(lo_pos, x);
            s = 0.5 * x;
        } else {
            hi_neg = max(hi_neg, x);
        }
        sum_s = sum_s + s;
        max_s = max(max_s, s);
    }
    // |n - mean label count|, rounded once: n - hi is exact.
    let c = abs((f32(n) - P.card_hi) - P.card_lo);
    var pri: f32;
    // What the logits' own error moves the priority by (0 for
    // probabilities).
    var moved = 0.0;
    switch P.strategy {
        case STRATEGY_MEAN_ENTROPY: {
            pri = sum_h / f32(l) * P.inv_ln_b;
            moved = 4.0 * eps_sum / f32(l) * P.inv_ln_b;
        }
        case STRATEGY_MAX_ENTROPY: {
            pri = max_h * P.inv_ln_b;
            moved = 4.0 * eps_max * P.inv_ln_b;
        }
        case STRATEGY_MIN_MARGIN: {
            pri = -near;
            moved = 2.0 * eps_max;
        }
        case STRATEGY_CARDINALITY: { pri = c; }
        case STRATEGY_ADAPTIVE: {
            if lo_pos > 1.5 { lo_pos = 0.5; }
            if hi_neg < -0.5 { hi_neg = 0.5; }
            let u = 1.0 / max(lo_pos - hi_neg, 0.01);
            // pow(0, y) is undefined in WGSL: c = 0 is decided here.
            if P.beta == 1.0 {
                pri = u;
            } else if c == 0.0 {
                pri = 0.0;
            } else {
                pri = pow(u, P.beta) * pow(c, 1.0 - P.beta);
            }
            // The margin moves by 2 eps at most, and is at least 0.01.
            moved = abs(pri) * 400.0 * eps_max;
        }
        case STRATEGY_AVG_SCORE: {
            pri = sum_s / f32(l);
            moved = eps_sum / f32(l);
        }
        default: {
            pri = max_s;
            moved = eps_max;
        }
    }
    let b = (P.half + abs(pri) * P.rel + moved) * 1.0001;
    status[r] = STATUS_SCORED;
    store(r, pri - b, pri + b);
}

// Most samples a row may have for the strategies that keep a value per
// sample (the votes, kl-max); a row of more goes to the host.
const HELD_SAMPLES: u32 = 64u;

// A row's T samples (INPUT_SAMPLES), sample t's C values at
// rows[(t * rows + r) * C ..], one plane a sample. Every value must be a
// probability and every sample's sum within the tolerance (a sum too near
// it goes to the host, as in `score`). The priority, in f32:
// - BALD (and kl-mean, equal in exact arithmetic): H(mean) minus the mean
//   of the samples' entropies, the mean summed in sample order and
//   divided by T; consensus entropy: H(mean) alone;
// - variation ratio, 1 - f/T, and vote entropy, the entropy of the vote
//   fractions v/T, from each sample's argmax (the first of equal values,
//   as on the host: the stored values are the canonical ones, and f32
//   comparisons are exact);
// - kl-max: the largest KL(p_t || mean) over the samples, classes in the
//   outer loop so that each mean and its logarithm are made once (a row
//   whose mean of a positive value falls below the smallest normal f32,
//   where the logarithm would be wrong, goes to the host);
// - mean-std: the mean over classes of the samples' population standard
//   deviation, with its own interval per row, made here from the row's
//   values: each class's (column_spread), plus the f32 sums' rounding;
//   doubled.
// The host proves the interval half + rel * |priority| around it
// (src/score/fast.rs, gpu_samples_bound) and re-scores every candidate
// canonically.
fn score_samples(r: u32) {
    if P.strategy == STRATEGY_STD {
        score_spread(r);
        return;
    }
    if P.strategy == STRATEGY_EMCM {
        score_emcm(r);
        return;
    }
    let c = P.classes;
    let plane = P.rows * c;
    let votes = P.strategy == STRATEGY_VARIATION_RATIO || P.strategy == STRATEGY_VOTE_ENTROPY;
    let kl_max = P.strategy == STRATEGY_KL_MAX;
    let logs = P.strategy == STRATEGY_BALD || P.strategy == STRATEGY_KL_MEAN;
    if (votes || kl_max) && P.samples > HELD_SAMPLES {
        undecided(r);
        return;
    }
    var top: array<u32, HELD_SAMPLES>;
    var kl: array<f32, HELD_SAMPLES>;
    // kl-max over planes the GPU made: each sample's L1 distance to the mean.
    var l1: array<f32, HELD_SAMPLES>;
    // A per-row part of the interval (mean-std's).
    var extra = 0.0;
    var each = 0.0;
    // For the bound of planes the GPU made (`mc_moved`): the samples' largest
    // |sum - 1|, and the entropy of their mean (kl-max: the largest
    // KL + 2 L1 of a sample).
    var sdev = 0.0;
    var mc_first = 0.0;
    for (var t = 0u; t < P.samples; t = t + 1u) {
        let base = t * plane + r * c;
        var s = 0.0;
        var h = 0.0;
        var best = 0u;
        for (var j = 0u; j < c; j = j + 1u) {
            let x = rows[base + j];
            if !prob_ok(x) {
                invalid(r);
                return;
            }
            s = s + x;
            if logs {
                h = h + plogp(x);
            }
            if x > rows[base + best] {
                best = j;
            }
        }
        if !(abs(s - 1.0) + P.slack * (s + 1.0) <= P.tol) {
            undecided(r);
            return;
        }
        sdev = max(sdev, abs(s - 1.0));
        each = each - h;
        if votes {
            top[t] = best;
        }
    }
    let tf = f32(P.samples);
    var pri: f32;
    if votes {
        // Each class voted for, once (at its first vote): its count.
        var modal = 0u;
        var hv = 0.0;
        for (var t = 0u; t < P.samples; t = t + 1u) {
            var first = true;
            var n = 0u;
            for (var u = 0u; u < P.samples; u = u + 1u) {
                if top[u] == top[t] {
                    n = n + 1u;
                    if u < t {
                        first = false;
                    }
                }
            }
            if first {
                modal = max(modal, n);
                hv = hv + plogp(f32(n) / tf);
            }
        }
        if P.strategy == STRATEGY_VARIATION_RATIO {
            pri = 1.0 - f32(modal) / tf;
        } else {
            pri = -hv * P.inv_ln_b;
        }
    } else if P.strategy == STRATEGY_MEAN_STD {
        var sum_sd = 0.0;
        for (var j = 0u; j < c; j = j + 1u) {
            let s = column_spread(r * c + j, plane);
            sum_sd = sum_sd + s.x;
            extra = extra + s.y;
        }
        pri = sum_sd / f32(c);
        extra = 2.0 * (extra / f32(c) + (f32(c) + 2.0) * ROUNDOFF * pri);
    } else if kl_max {
        for (var t = 0u; t < P.samples; t = t + 1u) {
            kl[t] = 0.0;
            l1[t] = 0.0;
        }
        for (var j = 0u; j < c; j = j + 1u) {
            var m = 0.0;
            for (var t = 0u; t < P.samples; t = t + 1u) {
                m = m + rows[t * plane + r * c + j];
            }
            let mean = m / tf;
            if mean < 1.17549435e-38 {
                if m > 0.0 {
                    undecided(r);
                    return;
                }
                continue;
            }
            let ln_mean = ln_approx(mean);
            for (var t = 0u; t < P.samples; t = t + 1u) {
                let x = rows[t * plane + r * c + j];
                if x >= 1.17549435e-38 {
                    kl[t] = kl[t] + x * (ln_approx(x) - ln_mean);
                }
                if P.mc == 1u {
                    l1[t] = l1[t] + abs(x - mean);
                }
            }
        }
        var most = kl[0];
        for (var t = 1u; t < P.samples; t = t + 1u) {
            most = max(most, kl[t]);
        }
        pri = most * P.inv_ln_b;
        for (var t = 0u; t < P.samples; t = t + 1u) {
            // The f32 mean's own error in each |x - mean|.
            mc_first = max(mc_first, kl[t] + 2.0 * (l1[t] * 1.0001 + 2.02 * tf * ROUNDOFF));
        }
    } else {
        var hm = 0.0;
        for (var j = 0u; j < c; j = j + 1u) {
            var m = 0.0;
            for (var t = 0u; t < P.samples; t = t + 1u) {
                m = m + rows[t * plane + r * c + j];
            }
            hm = hm + plogp(m / tf);
        }
        mc_first = -hm;
        pri = -hm * P.inv_ln_b;
        if logs {
            pri = (-hm - each / tf) * P.inv_ln_b;
        }
    }
    if P.mc == 1u {
        let rho = rows[P.samples * plane + r];
        extra = extra + mc_moved(r, rho, vec3<f32>(mc_first, each / tf, sdev));
    }
    let b = (P.half + abs(pri) * P.rel + extra) * 1.0001;
    status[r] = STATUS_SCORED;
    store(r, pri - b, pri + b);
}

// How far a row's score can move between planes the GPU made (MC dropout,
// a committee; forward.wgsl, `plane`) and the CPU's canonical passes, each
// value q of a plane being p (1 + eta) with |eta| <= rho (src/features/gpu.rs,
// `select_members`, has the argument). h holds H(mean) and the mean of
// the samples' entropies (nats, as computed here) and the samples' largest
// |sum - 1|. An entropy moves by at most
// rho1 (H(q) + rho1 S) + |S_q - S_p| + rho^2 S, rho1 = rho / (1 - rho):
// first order in H, which is small for a confident row, so the kernel
// still filters where one bound for all rows (rho_k) would not. mean-std:
// each class's spread moves by at most rho1 times its largest value.
// kl-max: KL(q_t || mean q) - KL(p_t || mean p) is
// sum p eta ln(p / mean p) + sum q ln((1 + eta) / (1 + mean eta)), at most
// rho (KL + |p_t - mean p|_1) and |S_q - S_p| twice, rho |p_t - mean p|_1
// and 4.3 rho^2 S, also first order in the row's own disagreement.
// The votes: 0 (the plane kernel keeps each argmax).
fn mc_moved(r: u32, rho: f32, h: vec3<f32>) -> f32 {
    let c = P.classes;
    let r1 = rho / (1.0 - rho) * 1.001;
    // |S_q - S_p|: the planes' own sums, and the CPU's within (C + 3) u.
    let sd = h.z + 8.0 * (f32(c) + 8.0) * ROUNDOFF;
    let s1 = 1.0 + sd;
    // The kernel's own error in an entropy, in nats.
    let herr = P.half / P.inv_ln_b;
    var moved = 0.0;
    switch P.strategy {
        case STRATEGY_BALD, STRATEGY_KL_MEAN: {
            let e_mean = r1 * (h.x + herr + r1 * s1) + sd + rho * rho * s1;
            let e_each = r1 * (h.y + herr + r1 * s1) + sd + rho * rho * s1;
            moved = (e_mean + e_each) * P.inv_ln_b;
        }
        case STRATEGY_CONSENSUS_ENTROPY: {
            moved = (r1 * (h.x + herr + r1 * s1) + sd + rho * rho * s1) * P.inv_ln_b;
        }
        case STRATEGY_MEAN_STD: {
            let plane = P.rows * c;
            var most = 0.0;
            for (var j = 0u; j < c; j = j + 1u) {
                var m = 0.0;
                for (var t = 0u; t < P.samples; t = t + 1u) {
                    m = max(m, rows[t * plane + r * c + j]);
                }
                most = most + m;
            }
            moved = r1 * most / f32(c) + 1.2e-38;
        }
        case STRATEGY_KL_MAX: {
            // Each KL moves by at most (rho (KL + herr + 2 L1') + 3 |S_q - S_p|
            // + 4.3 rho^2 S) / (1 - rho), L1' = L1 + 2 rho1 S the distance
            // between the CPU's sample and mean.
            let l = h.x + herr + 4.0 * r1 * s1;
            moved = (rho * l + 3.0 * sd + 4.3 * rho * rho * s1) / (1.0 - rho) * P.inv_ln_b;
        }
        default: {
            moved = 0.0;
        }
    }
    return 2.0 * moved;
}

// One column's spread over the samples, for mean-std and regression's
// std: the T values at rows[at + t * stride], their f32 population
// standard deviation (x), its error term 1.01 moved + 8 u sd (y), and the
// mean of |x| (z). Each squared difference from the f32 mean is off by
// at most eps = e (2 dmax + e) + (T + 2) u v, with e = delta m + u dmax the
// error of each difference (delta = 1.01 T u, the f32 mean's relative
// error against m, the mean of |x|, which is the mean itself for
// probabilities; dmax the largest difference; v the variance), which moves
// the root by min(sqrt(eps), eps / sqrt(v)).
fn column_spread(at: u32, stride: u32) -> vec3<f32> {
    let tf = f32(P.samples);
    var m = 0.0;
    var mabs = 0.0;
    for (var t = 0u; t < P.samples; t = t + 1u) {
        let x = rows[at + t * stride];
        m = m + x;
        mabs = mabs + abs(x);
    }
    mabs = mabs / tf;
    let mean = m / tf;
    var v = 0.0;
    var dmax = 0.0;
    for (var t = 0u; t < P.samples; t = t + 1u) {
        let d = rows[at + t * stride] - mean;
        v = v + d * d;
        dmax = max(dmax, abs(d));
    }
    v = v / tf;
    let sd = sqrt(v);
    let e = 1.02 * (1.01 * tf * ROUNDOFF * mabs + ROUNDOFF * dmax) + 1e-37;
    let eps = 2.0 * e * (dmax + e) + (tf + 2.0) * ROUNDOFF * v;
    var moved = sqrt(eps);
    if v > 0.0 {
        moved = min(moved, eps / sqrt(v));
    }
    return vec3<f32>(sd, 1.01 * moved + 8.0 * ROUNDOFF * sd, mabs);
}

// A regression row's spread (src/score/regression.rs, `spread`): the
// population standard deviation of its T predictions, one value a plane,
// or a (mean, std) row's std as stored (T = 1, two values), whose interval
// is only the host's (the canonical score's own rounding). The T
// predictions' f32 deviation gets mean-std's interval for one column
// (column_spread, whose mean's error is taken from the mean of |x|, since
// predictions have either sign). The canonical f64 deviation is
// within the same analysis at 2^-53 of the exact one, under 2^-14 of
// `moved`, which the final 1.0001 covers. A NaN or an infinity makes the
// row invalid; a value the host refuses otherwise (beyond 1e15, a negative
// std) sends the row to the host to be named, and so does a row whose mean
// |x| is below 2^-20 but not 0, where squares could reach the subnormals
// a GPU may flush.
fn score_spread(r: u32) {
    let c = P.classes;
    let plane = P.rows * c;
    for (var t = 0u; t < P.samples; t = t + 1u) {
        for (var j = 0u; j < c; j = j + 1u) {
            let x = rows[t * plane + r * c + j];
            if !finite(x) {
                invalid(r);
                return;
            }
            if !(abs(x) <= 1e15) {
                undecided(r);
                return;
            }
        }
    }
    if c == 2u {
        let s = rows[r * 2u + 1u];
        if !(s >= 0.0) {
            undecided(r);
            return;
        }
        let b = (P.half + s * P.rel) * 1.0001;
        status[r] = STATUS_SCORED;
        store(r, s - b, s + b);
        return;
    }
    let s = column_spread(r, plane);
    if s.z > 0.0 && s.z < 9.5367431640625e-7 {
        undecided(r);
        return;
    }
    // Mean-std's interval for one column (score_samples): (C + 2) u is 3 u.
    let extra = 2.0 * (s.y + 3.0 * ROUNDOFF * s.x);
    let b = (P.half + s.x * P.rel + extra) * 1.0001;
    status[r] = STATUS_SCORED;
    store(r, s.x - b, s.x + b);
}

// EMCM (src/score/regression.rs, `emcm`): the mean over the T ensemble
// predictions of |s_t - f|, f the model's prediction, times the norm of
// the row's D features. A chunk holds the T planes of predictions, then a
// plane of the model's, then the rows' features, D = width - T - 1 values
// each. In f32, with u = 2^-24: each difference and the sum of the T
// non-negative terms are within (T + 1) u of the exact mean's sum, the
// division within 8 u (WGSL allows 2.5 ulp); the D non-negative squares
// and their sum within (D + 1) u, which the root halves, and the root
// within 8 u more; the product within u; 1.02 covers the second-order
// terms. A value or difference below the smallest normal float that a GPU
// flushes moves the mean by at most 3 * 2^-126, times the norm; a feature
// whose square could fall there (0 < |x| < 2^-60), a value the host
// refuses (not finite, beyond 1e15) or a sum that overflows sends the row
// to the host, which names a bad row as the CPU does.
fn score_emcm(r: u32) {
    let n = P.rows;
    let t_n = P.samples;
    let d = P.width - t_n - 1u;
    let f = rows[t_n * n + r];
    if !(abs(f) <= 1e15) {
        undecided(r);
        return;
    }
    var sum = 0.0;
    for (var t = 0u; t < t_n; t = t + 1u) {
        let x = rows[t * n + r];
        if !(abs(x) <= 1e15) {
            undecided(r);
            return;
        }
        sum = sum + abs(x - f);
    }
    let base = (t_n + 1u) * n + r * d;
    var q = 0.0;
    for (var j = 0u; j < d; j = j + 1u) {
        let x = rows[base + j];
        if !(abs(x) <= 1e15) || (x != 0.0 && abs(x) < 8.6736174e-19) {
            undecided(r);
            return;
        }
        q = q + x * x;
    }
    if !finite(q) {
        undecided(r);
        return;
    }
    let tf = f32(t_n);
    let norm = sqrt(q);
    let pri = (sum / tf) * norm;
    let rel = 1.02 * ROUNDOFF * (tf + 1.0 + 8.0 + 0.5 * (f32(d) + 1.0) + 8.0 + 1.0);
    let flushed = 1.2e-37 * max(norm, 1.0);
    let b = (P.half + pri * (P.rel + rel) + flushed) * 1.0001;
    status[r] = STATUS_SCORED;
    store(r, pri - b, pri + b);
}

// An embedding row's density (src/coldstart/density.rs): its cosine
// similarity x . m / |x| to the pool's mean direction m, which the host
// computed (every row checked: finite, not all zero) and stored as f32
// after the chunk's rows, at rows[P.m_at * P.width ..]. With A = sum |x_j m_j|
// and D values a row, the f32 dot is within (gamma_D + eps) A of the
// canonical f64 one (m's rounding to f32 included), |x| within gamma_D / 2
// plus the square root's error, and the division adds its own; the host's
// P.half and P.rel cover them (`density::gpu_bound`), so the interval is
// half * A / |x| + rel * |priority|. A row the host would refuse never
// reaches here; one whose f32 norm could be off goes to the host.
fn score_density(r: u32) {
    let base = r * P.width;
    let at = P.m_at * P.width;
    var nn = 0.0;
    var dm = 0.0;
    var am = 0.0;
    for (var j = 0u; j < P.classes; j = j + 1u) {
        let x = rows[base + j];
        let xm = x * rows[at + j];
        nn = nn + x * x;
        dm = dm + xm;
        am = am + abs(xm);
    }
    // Below 1e-20 a GPU that flushes subnormal squares to 0 could move
    // |x|^2 by more than the bound allows: the host decides.
    if !(nn >= 1e-20 && nn <= 3.0e38) {
        undecided(r);
        return;
    }
    let norm = sqrt(nn);
    let pri = dm / norm;
    // The guard: products (and m's values) below the normal range, each
    // off by at most 1.2e-38 if flushed.
    let guard = f32(P.classes) * (2.4e-38 / norm + 2.4e-38);
    let b = (P.half * (am / norm) + P.rel * abs(pri) + guard) * 1.0001;
    status[r] = STATUS_SCORED;
    store(r, pri - b, pri + b);
}

// The logarithm's proven error at a result l: |ln_approx(x) - ln x| is at
// most ln_abs + ln_rel * |ln x| for normal x up to LN_MAX_X (the host's bound,
// src/score/fast.rs, times 4 for the GPU's own roundings).
fn ln_err(l: f32) -> f32 {
    return (P.ln_abs + P.ln_rel * abs(l)) * 1.0001;
}

// The row's Gumbel noise -ln(-ln u) as an interval holding the host's f64
// value (src/score/stochastic.rs, `uniform`): u = (m + 1/2) / 2^52 for the
// top 52 bits m of splitmix64(seed key ^ splitmix64(global row)). With
// eps = 2^-24 (WGSL: + and * correctly rounded, / within 2.5 ulp, a u32
// within 1 ulp as f32):
// - u <= 1/2: u in f32 within 6 eps relative (the conversion, the + 1/2,
//   the sum; the scaling by 2^-52 is exact), so t = -ln_approx(u) is within
//   6.06 eps + ln_err of -ln u;
// - u > 1/2: w = 1 - u from the complement's bits (2^52 - 1 - m), within 6
//   eps, and -ln(1 - w) = 2 atanh(s), s = w / (2 - w) <= 1/3 (within 14 eps:
//   4/3 of w's, the difference's 1, the division's 5), by its series to
//   s^15 (the rest below 2e-9 relative); t within 40 eps relative;
// - then g = -ln t is within |ln(t') - ln t| <= rel(t) / (1 - rel(t)) plus
//   ln_err of the canonical value, t in [2^-53, 36.8]. The host's f64
//   logarithms are within 1e-15, far inside the factors of 1.01.
fn gumbel_interval(r: u32) -> vec2<f32> {
    let index = add64(vec2<u32>(P.g0_lo, P.g0_hi), vec2<u32>(r, 0u));
    let h = splitmix64(vec2<u32>(P.nseed_lo, P.nseed_hi) ^ splitmix64(index));
    let m_hi = h.y >> 12u;
    let m_lo = (h.y << 20u) | (h.x >> 12u);
    let eps = ROUNDOFF;
    var t: f32;
    var et: f32;
    if m_hi < 0x80000u {
        let u = ldexp(f32(m_hi) * 4294967296.0 + (f32(m_lo) + 0.5), -52);
        let l = ln_approx(u);
        t = -l;
        et = 6.06 * eps + ln_err(l);
    } else {
        let w = ldexp(f32(0xfffffu - m_hi) * 4294967296.0 + (f32(~m_lo) + 0.5), -52);
        let s = w / (2.0 - w);
        let z = s * s;
        var y = 1.0 / 15.0;
        y = y * z + 1.0 / 13.0;
        y = y * z + 1.0 / 11.0;
        y = y * z + 1.0 / 9.0;
        y = y * z + 1.0 / 7.0;
        y = y * z + 1.0 / 5.0;
        y = y * z + 1.0 / 3.0;
        y = y * z + 1.0;
        t = 2.0 * s * y;
        et = 40.0 * eps * t;
    }
    let lt = ln_approx(t);
    let eg = (et / t * 1.01 + ln_err(lt)) * 1.01;
    return vec2<f32>(-lt - eg, -lt + eg);
}

// Stores row r's keys from the interval [lo, hi] around its canonical
// priority. Plain: the interval itself. A stochastic batch: the interval
// of its key base(priority) + g / beta (src/score/stochastic.rs), where
// base is the priority (softmax) or ln max(v, 0), v = priority + shift
// (power), increasing in the priority. Infinite ends are written as keys,
// not computed (GPUs may assume finite floats): a lower end that may be
// -inf is key 0, below every float; an upper end whose canonical key is
// -inf is ordered(-inf); one past the logarithm's proven range is the top
// key.
fn store(r: u32, lo: f32, hi: f32) {
    if P.noise == NOISE_NONE {
        keys[r] = ordered(lo);
        keys[P.hi_at + r] = ordered(hi);
        return;
    }
    var blo = lo;
    var bhi = hi;
    var lo_open = false;
    var hi_neg_inf = false;
    var hi_open = false;
    if P.noise == NOISE_POWER {
        // lo + shift and hi + shift round within eps of the result.
        let vlo = lo + P.v_shift - (abs(lo + P.v_shift) + 1.0) * P.v_shift * 1.2e-7;
        let vhi = hi + P.v_shift + (abs(hi + P.v_shift) + 1.0) * P.v_shift * 1.2e-7;
        let tiny = 1.17549435e-38;
        if vlo >= tiny && vlo <= LN_MAX_X {
            let l = ln_approx(vlo);
            blo = l - ln_err(l);
        } else if vlo > LN_MAX_X {
            // ln 65536 = 11.09.
            blo = 11.0;
        } else {
            lo_open = true;
        }
        if vhi > LN_MAX_X {
            hi_open = true;
        } else if vhi > 0.0 {
            let l = ln_approx(max(vhi, tiny));
            bhi = l + ln_err(l);
        } else {
            hi_neg_inf = true;
        }
    }
    var klo = blo;
    var khi = bhi;
    if P.inv_beta != 0.0 {
        let g = gumbel_interval(r);
        let nlo = g.x * P.inv_beta;
        let nhi = g.y * P.inv_beta;
        // The f32 product, 1 / beta's rounding and the sum: 8 eps.
        klo = (blo + nlo) - (abs(blo) + abs(nlo)) * 4.8e-7;
        khi = (bhi + nhi) + (abs(bhi) + abs(nhi)) * 4.8e-7;
    }
    if lo_open {
        keys[r] = 0u;
    } else {
        keys[r] = ordered(klo);
    }
    if hi_open {
        keys[P.hi_at + r] = 0xffffffffu;
    } else if hi_neg_inf {
        keys[P.hi_at + r] = ordered(bitcast<f32>(0xff800000u));
    } else {
        keys[P.hi_at + r] = ordered(khi);
    }
}

// Row r's priority pri (within bnd of the canonical one) weighted by its
// density^beta (src/coldstart/density.rs, `weighted`): the product of the
// informativeness phi = phi_shift + priority and the weight, whose f32
// neighbours below and above the host's f64 weight are stored after the
// chunk's rows (w_at). Every f32 step is widened by 4 ulps of its result
// and by the smallest normal float (a GPU may flush a subnormal product
// to zero), so the interval holds the host's f64 product.
fn weigh(r: u32, pri: f32, bnd: f32) {
    let tiny = 1.17549435e-38;
    let w_lo = rows[P.w_at + 2u * r];
    let w_hi = rows[P.w_at + 2u * r + 1u];
    var a = (pri - bnd) + P.phi_shift;
    var b = (pri + bnd) + P.phi_shift;
    a = a - abs(a) * 4.8e-7 - tiny;
    b = b + abs(b) * 4.8e-7 + tiny;
    // The weights are at least 0: a negative end meets the other weight.
    var lo = a * w_hi;
    if a >= 0.0 {
        lo = a * w_lo;
    }
    var hi = b * w_lo;
    if b >= 0.0 {
        hi = b * w_hi;
    }
    store(r, lo - abs(lo) * 4.8e-7 - tiny, hi + abs(hi) * 4.8e-7 + tiny);
}

// How far this row's priority can be from the canonical one when its
// logits are within eps (column `classes`) of the CPU's (the argument is in
// src/features/gpu.rs, steps 2 and 3): every f32 step rounds up through the
// final factor and the absolute guard; infinite when there is no bound.
fn forward_bound(base: u32, pri: f32) -> f32 {
    let eps = rows[base + P.classes];
    var lo = rows[base];
    var hi = rows[base];
    for (var j = 0u; j < P.classes; j = j + 1u) {
        lo = min(lo, rows[base + j]);
        hi = max(hi, rows[base + j]);
    }
    let inf = bitcast<f32>(0x7f800000u);
    // e^x - 1 <= x + x^2 for 0 <= x <= 1.
    let x = 2.0 * eps + 2.0 * ROUNDOFF * (hi - lo + 2.0 * eps);
    if !finite(eps) || !(x <= 1.0) {
        return inf;
    }
    let d = ((x + x * x) * P.kc + P.kc_m1) * 1.0001;
    if !(d < 0.5) {
        return inf;
    }
    var moved = 0.0;
    switch P.strategy {
        case STRATEGY_LEAST_CONFIDENCE: { moved = d; }
        case STRATEGY_MARGIN: { moved = 2.0 * d; }
        case STRATEGY_ENTROPY: { moved = (d * P.ln_c + (1.0 + d) * d / (1.0 - d)) * P.inv_ln_b; }
        case STRATEGY_RATIO: { moved = 2.0 * d / (1.0 - d); }
        default: { moved = 0.0; }
    }
    let b = (P.g + 2.0 * moved) * 1.0001;
    return b + (abs(pri) + b) * 2.4e-7;
}

var<workgroup> local_hist: array<atomic<u32>, 256>;

@compute @workgroup_size(WG)
fn histogram(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    atomicStore(&local_hist[li], 0u);
    workgroupBarrier();
    let r = gid.x + gid.y * P.stride;
    if r < P.rows && status[r] == STATUS_SCORED {
        let k = keys[r];
        if k >= P.floor_key && (k & P.prefix_mask) == P.prefix {
            atomicAdd(&local_hist[(k >> P.shift) & 255u], 1u);
        }
    }
    workgroupBarrier();
    let c = atomicLoad(&local_hist[li]);
    if c > 0u {
        atomicAdd(&hist[li], c);
    }
}

@compute @workgroup_size(WG)
fn compact(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.x + gid.y * P.stride;
    if r >= P.rows || status[r] != STATUS_SCORED {
        return;
    }
    var k = keys[r];
    if P.lenient == 1u || P.noise != NOISE_NONE || P.weighted == 1u {
        k = keys[P.hi_at + r];
    }
    if k >= P.cut_key {
        let i = atomicAdd(&counters[COUNT_CANDIDATES], 1u);
        if i < P.cap {
            cand[2u * i] = r;
            cand[2u * i + 1u] = k;
        }
    }
}
