//! Synthetic pools from a fixed seed: the embedded demo, benchmarks and
//! tests use them so nothing has to be downloaded.

use std::io::Write;
use std::path::Path;

use rayon::prelude::*;

use super::npy;
use crate::error::{Error, Result};
use crate::score::splitmix64;

/// A small deterministic generator (splitmix64 stream).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A stream seeded by `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(splitmix64(seed ^ 0xA1B0_0C0F_FEE0_0D1E))
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        splitmix64(self.0)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
    /// Uniform integer in 0..n.
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}

/// Row `index` of the synthetic pool with `seed`: the softmax of random
/// logits with a random sharpness, so rows range from confident to flat,
/// as a real model's outputs do. Depends only on (seed, index).
pub fn softmax_row(seed: u64, index: u64, out: &mut [f32]) {
    let mut rng = Rng::new(seed ^ splitmix64(index));
    let sharp = 0.5 + 4.0 * rng.uniform();
    let mut z = [0f64; 64];
    let mut logits = Vec::new();
    let zs: &mut [f64] = if out.len() <= 64 {
        &mut z[..out.len()]
    } else {
        logits.resize(out.len(), 0.0);
        &mut logits
    };
    let mut max = f64::NEG_INFINITY;
    for v in zs.iter_mut() {
        *v = sharp * rng.normal();
        max = max.max(*v);
    }
    let mut sum = 0.0;
    for v in zs.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for (o, v) in out.iter_mut().zip(zs.iter()) {
        *o = (v / sum) as f32;
    }
}

/// A whole synthetic pool in memory, row-major.
pub fn softmax_pool(rows: usize, classes: usize, seed: u64) -> Vec<f32> {
    let mut v = vec![0f32; rows * classes];
    v.par_chunks_mut(classes.max(1))
        .enumerate()
        .for_each(|(i, r)| softmax_row(seed, i as u64, r));
    v
}

/// Writes a synthetic float32 pool to `path` in blocks, so a pool larger
/// than memory can be made.
pub fn write_softmax_pool(path: &Path, rows: u64, classes: usize, seed: u64) -> Result<()> {
    const BLOCK: u64 = 1 << 18;
    crate::report::atomic_write(path, |w: &mut dyn Write| {
        w.write_all(&npy::encode_header(
            npy::DType::F32,
            &[rows as usize, classes],
        ))
        .map_err(|e| Error::io(path, e))?;
        let mut buf = vec![0f32; BLOCK as usize * classes];
        let mut start = 0;
        while start < rows {
            let n = (rows - start).min(BLOCK) as usize;
            buf[..n * classes]
                .par_chunks_mut(classes)
                .enumerate()
                .for_each(|(i, r)| softmax_row(seed, start + i as u64, r));
            w.write_all(bytemuck::cast_slice(&buf[..n * classes]))
                .map_err(|e| Error::io(path, e))?;
            start += n as u64;
        }
        Ok(())
    })
}
