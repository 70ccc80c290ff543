// The natural logarithm every kernel computes entropies with, shared by
// select.wgsl and batchbald.wgsl (the host puts it before each).

// Cephes logf, as ln_approx in src/score/fast.rs.
fn ln_approx(v: f32) -> f32 {
    let bits = bitcast<u32>(v);
    var e = i32((bits >> 23u) & 0xffu) - 126;
    let m = bitcast<f32>((bits & 0x007fffffu) | 0x3f000000u);
    var x: f32;
    if m < 0.70710677 {
        e = e - 1;
        x = m + m - 1.0;
    } else {
        x = m - 1.0;
    }
    let z = x * x;
    var y = 7.0376836e-2;
    y = y * x - 1.1514611e-1;
    y = y * x + 1.1676999e-1;
    y = y * x - 1.2420141e-1;
    y = y * x + 1.4249323e-1;
    y = y * x - 1.6668058e-1;
    y = y * x + 2.0000715e-1;
    y = y * x - 2.4999994e-1;
    y = y * x + 3.3333331e-1;
    y = y * x * z;
    let fe = f32(e);
    y = y + fe * -2.1219444e-4;
    y = y + -0.5 * z;
    return fe * 0.6933594 + (x + y);
}

fn plogp(p: f32) -> f32 {
    if p >= 1.17549435e-38 {
        return p * ln_approx(p);
    }
    return 0.0;
}
