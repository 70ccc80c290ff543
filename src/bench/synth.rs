//! Synthetic pools from a fixed seed: the embedded demo, benchmarks and
//! tests use them so nothing has to be downloaded.

use std::io::Write;
use std::path::Path;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::pool::npy;
use crate::rng::{Rng, splitmix64};

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

/// A synthetic multi-label row: independent sigmoid outputs of logits
/// drawn N(0, 3²), so labels run from sure to undecided.
pub fn sigmoid_row(seed: u64, index: u64, out: &mut [f32]) {
    let mut rng = Rng::new(seed ^ splitmix64(index));
    for o in out.iter_mut() {
        *o = (1.0 / (1.0 + (-3.0 * rng.normal()).exp())) as f32;
    }
}

/// Writes a synthetic float32 pool of softmax rows to `path` in blocks,
/// so a pool larger than memory can be made.
pub fn write_softmax_pool(path: &Path, rows: u64, classes: usize, seed: u64) -> Result<()> {
    write_pool(path, rows, classes, seed, softmax_row)
}

/// Writes a synthetic float32 multi-label pool ([`sigmoid_row`]) to
/// `path` in blocks.
pub fn write_sigmoid_pool(path: &Path, rows: u64, labels: usize, seed: u64) -> Result<()> {
    write_pool(path, rows, labels, seed, sigmoid_row)
}

/// Writes `rows` rows made by `row(seed, index, out)`, block by block.
fn write_pool(
    path: &Path,
    rows: u64,
    classes: usize,
    seed: u64,
    row: fn(u64, u64, &mut [f32]),
) -> Result<()> {
    const BLOCK: u64 = 1 << 18;
    crate::atomic::write(path, |w: &mut dyn Write| {
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
                .for_each(|(i, r)| row(seed, start + i as u64, r));
            w.write_all(bytemuck::cast_slice(&buf[..n * classes]))
                .map_err(|e| Error::io(path, e))?;
            start += n as u64;
        }
        Ok(())
    })
}

/// `len` values uniform in [0, 1) from `seed`: inputs for benchmarks and
/// examples (the same on every platform).
pub fn uniform(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..len).map(|_| rng.uniform() as f32).collect()
}

/// `len` integers uniform in `0..n` from `seed`: labels for benchmarks.
pub fn below(len: usize, n: u64, seed: u64) -> Vec<usize> {
    let mut rng = Rng::new(seed);
    (0..len).map(|_| rng.below(n) as usize).collect()
}
