//! The cold-start strategies' references, written from the documented
//! definitions with nothing but `std` (never the library's helpers): the
//! canonical squared distance, the k-means++ race, Lloyd, TypiClust and
//! the k-means baseline, ProbCover's balls and greedy, MaxHerding's plain
//! greedy, δ by purity and density.
//!
//! One copy serves both users: the test suite (`tests/suite/coldstart.rs`)
//! and the `coldstart` fuzz target (`src/fuzz.rs`, built with the `fuzz`
//! feature), which include this file as a module.

/// The canonical squared distance: f64 terms, column j into lane j mod 8,
/// lanes combined pairwise.
pub fn sq(a: &[f32], b: &[f32]) -> f64 {
    let mut s = [0f64; 8];
    for (j, (&x, &y)) in a.iter().zip(b).enumerate() {
        let d = x as f64 - y as f64;
        s[j % 8] += d * d;
    }
    ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]))
}

/// The canonical dot product of two f64 rows (same lanes).
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut s = [0f64; 8];
    for (j, (x, y)) in a.iter().zip(b).enumerate() {
        s[j % 8] += x * y;
    }
    ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]))
}

/// lowbias32, and the 23 random bits of pick `t`, row `row`, as
/// `batch::rng` documents them.
pub fn mix(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}

pub fn bits(seed: u64, t: u32, row: u64) -> u32 {
    let mut h = mix(seed as u32 ^ 0x9e37_79b9);
    h = mix(h ^ (seed >> 32) as u32);
    h = mix(h ^ t);
    h = mix(h ^ row as u32);
    mix(h ^ (row >> 32) as u32) >> 9
}

/// `E = −ln U`, `U = (r + ½)·2⁻²³`, by the documented series: `U = m·2^e`
/// with m in [√½, √2), `ln m = 2·atanh((m − 1)/(m + 1))` to s²¹.
pub fn exponential(r: u32) -> f64 {
    let u = (r as f64 + 0.5) / 8_388_608.0;
    // The split point is √2 rounded to float32 (down), as documented.
    let root2 = std::f32::consts::SQRT_2 as f64;
    let (mut e, mut m) = (0i32, u);
    while m >= root2 {
        m /= 2.0;
        e += 1;
    }
    while m < root2 / 2.0 {
        m *= 2.0;
        e -= 1;
    }
    let s = (m - 1.0) / (m + 1.0);
    let mut series = 0.0;
    for n in (0..=10).rev() {
        series = series * s * s + 1.0 / (2 * n + 1) as f64;
    }
    -(e as f64 * std::f64::consts::LN_2 + 2.0 * s * series)
}

/// splitmix64, and the `random` strategy's draw built on it.
pub fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub fn random_draw(seed: u64, row: u64) -> f64 {
    let h = splitmix(seed ^ splitmix(row.wrapping_add(0x9E37_79B9_7F4A_7C15)));
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Arg-max, ties to the lower index.
pub fn argmax(keys: impl Iterator<Item = (usize, f64)>) -> usize {
    let mut best: Option<(usize, f64)> = None;
    for (i, k) in keys {
        if best.is_none_or(|(_, b)| k > b) {
            best = Some((i, k));
        }
    }
    best.unwrap().0
}

/// Naive k-means: the race seeding, Lloyd in f64 canonical distances,
/// means summed in row order and rounded to float32 once.
pub fn kmeans(x: &[Vec<f32>], k: usize, seed: u64, cap: usize) -> (Vec<Vec<f32>>, Vec<usize>) {
    let n = x.len();
    let first = argmax((0..n).map(|i| (i, bits(seed, 0, i as u64) as f64)));
    let mut centres = vec![x[first].clone()];
    let mut taken = vec![false; n];
    taken[first] = true;
    for t in 1..k {
        let key = |i: usize| {
            let w = centres
                .iter()
                .map(|c| sq(&x[i], c))
                .fold(f64::INFINITY, f64::min);
            w / exponential(bits(seed, t as u32, i as u64))
        };
        let next = argmax((0..n).filter(|&i| !taken[i]).map(|i| (i, key(i))));
        taken[next] = true;
        centres.push(x[next].clone());
    }
    let mut assign = vec![usize::MAX; n];
    for it in 0..cap {
        let mut changed = false;
        for i in 0..n {
            let a = argmax((0..k).map(|j| (j, -sq(&x[i], &centres[j]))));
            changed |= a != assign[i];
            assign[i] = a;
        }
        if !changed || it + 1 == cap {
            break;
        }
        for (j, c) in centres.iter_mut().enumerate() {
            let rows: Vec<&Vec<f32>> = (0..n).filter(|&i| assign[i] == j).map(|i| &x[i]).collect();
            if rows.is_empty() {
                continue;
            }
            for (l, v) in c.iter_mut().enumerate() {
                let mut s = 0f64;
                for r in &rows {
                    s += r[l] as f64;
                }
                *v = (s / rows.len() as f64) as f32;
            }
        }
    }
    (centres, assign)
}

/// TypiClust (typical = true) or the k-means baseline, from the docs.
pub fn clusters_ref(
    x: &[Vec<f32>],
    labeled: &[usize],
    b: usize,
    seed: u64,
    typical: bool,
) -> Vec<usize> {
    let n = x.len();
    let kc = (labeled.len() + b).min(n);
    let (centres, assign) = kmeans(x, kc, seed, 100);
    let mut order: Vec<(usize, usize, usize)> = (0..kc)
        .map(|c| {
            let size = assign.iter().filter(|&&a| a == c).count();
            let l = labeled.iter().filter(|&&r| assign[r] == c).count();
            (l, size, c)
        })
        .collect();
    order.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
    let mut open: Vec<bool> = (0..n).map(|r| !labeled.contains(&r)).collect();
    let mut picks = Vec::new();
    let mut at = 0;
    while picks.len() < b {
        let c = (0..kc)
            .map(|i| order[(at + i) % kc].2)
            .find(|&c| (0..n).any(|r| open[r] && assign[r] == c))
            .unwrap();
        at = order.iter().position(|o| o.2 == c).unwrap() + 1;
        let rows: Vec<usize> = (0..n).filter(|&r| open[r] && assign[r] == c).collect();
        let pick = if !typical {
            argmax(rows.iter().map(|&r| (r, -sq(&x[r], &centres[c]))))
        } else if rows.len() == 1 {
            rows[0]
        } else {
            let knn = 20.min(rows.len() / 2);
            argmax(rows.iter().map(|&r| {
                let mut d: Vec<f64> = rows
                    .iter()
                    .filter(|&&o| o != r)
                    .map(|&o| sq(&x[r], &x[o]).sqrt())
                    .collect();
                d.sort_by(f64::total_cmp);
                let mean = d[..knn].iter().sum::<f64>() / knn as f64;
                (r, 1.0 / (mean + 1e-5))
            }))
        };
        open[pick] = false;
        picks.push(pick);
    }
    picks
}

/// ProbCover at squared radius `d2`: naive balls, greedy coverage.
pub fn probcover_ref(
    x: &[Vec<f32>],
    labeled: &[usize],
    b: usize,
    d2: f64,
    seed: u64,
) -> Vec<usize> {
    probcover_gains_ref(x, labeled, b, d2, seed)
        .into_iter()
        .map(|p| p.0)
        .collect()
}

/// ProbCover at squared radius `d2`, as [`probcover_ref`]: (row, rows it
/// newly covered) in pick order.
pub fn probcover_gains_ref(
    x: &[Vec<f32>],
    labeled: &[usize],
    b: usize,
    d2: f64,
    seed: u64,
) -> Vec<(usize, f64)> {
    let n = x.len();
    let ball = |i: usize| -> Vec<usize> { (0..n).filter(|&j| sq(&x[i], &x[j]) < d2).collect() };
    let balls: Vec<Vec<usize>> = (0..n).map(ball).collect();
    let mut covered = vec![false; n];
    let mut open = vec![true; n];
    for &l in labeled {
        open[l] = false;
        balls[l].iter().for_each(|&y| covered[y] = true);
    }
    let mut picks = Vec::new();
    while picks.len() < b {
        let gain = |r: usize| balls[r].iter().filter(|&&y| !covered[y]).count() as f64;
        let mut p = argmax((0..n).filter(|&r| open[r]).map(|r| (r, gain(r))));
        let g = gain(p);
        if g == 0.0 {
            // The documented fallback: the random strategy's seeded draw.
            let draw = |r: usize| random_draw(seed, r as u64);
            p = argmax((0..n).filter(|&r| open[r]).map(|r| (r, draw(r))));
        }
        open[p] = false;
        balls[p].iter().for_each(|&y| covered[y] = true);
        picks.push((p, g));
    }
    picks
}

/// MaxHerding as documented, the plain greedy (no lazy bounds): every
/// open row's gain recomputed at every step, `Σ_y max(0, k(x, y) − c(y))`
/// in blocks of 4,096 rows, `k = exp(−d² / (2σ²))`; (row, gain) in pick
/// order, the seeded draw once every gain is 0.
pub fn maxherding_ref(
    x: &[Vec<f32>],
    labeled: &[usize],
    b: usize,
    s2: f64,
    seed: u64,
) -> Vec<(usize, f64)> {
    let n = x.len();
    let two = 2.0 * s2;
    let k = |i: usize, y: usize| (-sq(&x[i], &x[y]) / two).exp();
    let mut c = vec![0f64; n];
    let mut open = vec![true; n];
    let take = |p: usize, c: &mut Vec<f64>, open: &mut Vec<bool>| {
        open[p] = false;
        for (y, cy) in c.iter_mut().enumerate() {
            *cy = cy.max(k(p, y));
        }
    };
    for &l in labeled {
        take(l, &mut c, &mut open);
    }
    let gain = |i: usize, c: &[f64]| {
        let mut total = 0.0;
        for lo in (0..n).step_by(4096) {
            let mut s = 0.0;
            for (y, &cy) in c.iter().enumerate().take((lo + 4096).min(n)).skip(lo) {
                let t = k(i, y) - cy;
                if t > 0.0 {
                    s += t;
                }
            }
            total += s;
        }
        total
    };
    let mut picks = Vec::new();
    while picks.len() < b && open.iter().any(|&o| o) {
        let gains: Vec<(usize, f64)> = (0..n)
            .filter(|&r| open[r])
            .map(|r| (r, gain(r, &c)))
            .collect();
        let mut p = argmax(gains.iter().copied());
        let mut g = gains.iter().find(|e| e.0 == p).unwrap().1;
        if g == 0.0 {
            p = argmax(
                (0..n)
                    .filter(|&r| open[r])
                    .map(|r| (r, random_draw(seed, r as u64))),
            );
            g = 0.0;
        }
        picks.push((p, g));
        take(p, &mut c, &mut open);
    }
    picks
}

/// δ² for `purity` over `classes` naive k-means clusters.
pub fn delta2_ref(x: &[Vec<f32>], classes: usize, purity: f64, seed: u64) -> f64 {
    let (_, a) = kmeans(x, classes, seed, 100);
    let n = x.len();
    let r: Vec<f64> = (0..n)
        .map(|i| {
            (0..n)
                .filter(|&j| a[j] != a[i])
                .map(|j| sq(&x[i], &x[j]))
                .fold(f64::INFINITY, f64::min)
        })
        .collect();
    // Purity at δ: the balls {y : |x − y| < δ} holding one cluster only.
    let pure = |d2: f64| (0..n).filter(|&i| r[i] >= d2).count() as f64 / n as f64;
    let mut r = r.clone();
    r.sort_by(|a, b| b.total_cmp(a));
    let want = (purity * n as f64).ceil() as usize;
    let d2 = r[want - 1];
    // The largest δ: the next larger candidate falls short.
    assert!(pure(d2) >= purity);
    if let Some(&above) = r[..want - 1].iter().rev().find(|&&v| v > d2) {
        assert!(pure(above) < purity);
    }
    d2
}

/// Density: x̂·m, m the mean unit row (one block under 4096 rows).
pub fn density_ref(x: &[Vec<f32>]) -> Vec<f64> {
    let unit: Vec<Vec<f64>> = x
        .iter()
        .map(|r| {
            let w: Vec<f64> = r.iter().map(|&v| v as f64).collect();
            let inv = 1.0 / dot(&w, &w).sqrt();
            w.iter().map(|v| v * inv).collect()
        })
        .collect();
    let d = x[0].len();
    let mut m = vec![0f64; d];
    for u in &unit {
        for (m, v) in m.iter_mut().zip(u) {
            *m += v;
        }
    }
    let m: Vec<f64> = m.iter().map(|v| v / x.len() as f64).collect();
    unit.iter().map(|u| dot(u, &m)).collect()
}
