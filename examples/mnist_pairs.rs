//! The multi-label benchmark set of issue 27: pairs of MNIST digits side
//! by side (28 x 56 pixels), each labeled with the set of digits shown,
//! drawn from a fixed seed ([`MultiLabelData::mnist_pairs`]). Writes
//! `X.npy` (N x 1568 uint8 pixels) and `Y.npy` (N x 10 uint8, 0/1) for
//! `alpool simulate --task multilabel`.
//!
//! `cargo run --release --example mnist_pairs -- [MNIST_DIR] [PAIRS] [OUT_DIR] [SEED]`
//! (defaults: ../shared/data/mnist, 12000, mnist-pairs, 0)

use std::path::PathBuf;

use alpool::al::Dataset;
use alpool::al::multilabel::MultiLabelData;
use alpool::pool::npy;

fn main() -> alpool::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.into());
    let mnist = PathBuf::from(arg(0, "../shared/data/mnist"));
    let pairs: usize = arg(1, "12000").parse().expect("PAIRS is a count");
    let out = PathBuf::from(arg(2, "mnist-pairs"));
    let seed: u64 = arg(3, "0").parse().expect("SEED is an integer");
    let digits = Dataset::from_npy(&mnist.join("X.npy"), &mnist.join("y.npy"))?;
    let data = MultiLabelData::mnist_pairs(&digits, pairs, seed)?;
    let (x, y) = data.arrays();
    // The pixels were uint8 / 255: scaling back is exact.
    let x: Vec<u8> = x.iter().map(|&v| (v * 255.0).round() as u8).collect();
    let y: Vec<u8> = y.iter().map(|&v| v as u8).collect();
    std::fs::create_dir_all(&out).map_err(|e| alpool::Error::io(&out, e))?;
    npy::save(&out.join("X.npy"), &[data.rows(), data.dim()], &x)?;
    npy::save(&out.join("Y.npy"), &[data.rows(), data.labels()], &y)?;
    let shown: f32 = data.arrays().1.iter().sum();
    println!(
        "{} pairs of {} pixels, {:.3} labels a pair on average, in {}",
        data.rows(),
        data.dim(),
        shown / data.rows() as f32,
        out.display()
    );
    Ok(())
}
