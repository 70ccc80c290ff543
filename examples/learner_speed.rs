//! The learner's speed: `predict_proba` throughput of a 784-256-10 MLP over
//! 1M rows, and one whole active-learning round on MNIST (1,000 labeled,
//! 59,000 pool, 20 epochs, select 100 by margin).
//!
//!     cargo run --release --example learner_speed [-- path/to/shared/data/mnist]

use std::path::PathBuf;
use std::time::Instant;

use alpool::al::Dataset;
use alpool::backend::{Job, Silent, cpu};
use alpool::learner::{Mlp, MlpConfig};
use alpool::pool::synth::Rng;
use alpool::{InputForm, Pool, ScoreSpec, Strategy};

fn main() -> alpool::Result<()> {
    // 1. predict_proba over 1M rows, generated in blocks of 100k so memory
    //    stays bounded (the model batches internally by 8192 rows).
    let m = Mlp::new(784, 10, MlpConfig::default())?;
    let mut rng = Rng::new(1);
    let block: Vec<f32> = (0..100_000 * 784).map(|_| rng.uniform() as f32).collect();
    let t = Instant::now();
    let mut checksum = 0f64;
    for _ in 0..10 {
        let p = m.predict_proba(&block)?;
        checksum += p[0] as f64;
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "predict_proba, 784-256-10, 1,000,000 rows: {:.2} s = {:.0} rows/s (checksum {checksum:.3})",
        s,
        1e6 / s
    );

    // 2. One round on MNIST.
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/mnist"));
    if !dir.join("X.npy").exists() {
        println!("{} not found: skipping the MNIST round", dir.display());
        return Ok(());
    }
    let data = Dataset::from_npy(&dir.join("X.npy"), &dir.join("y.npy"))?;
    let labeled: Vec<usize> = (0..1000).collect();
    let pool: Vec<usize> = (1000..60_000).collect();
    let x_pool = data.gather(&pool);
    let t0 = Instant::now();
    let mut m = Mlp::new(
        784,
        10,
        MlpConfig {
            epochs: 20,
            ..MlpConfig::default()
        },
    )?;
    let r = m.fit(&data.gather(&labeled), &data.labels(&labeled))?;
    let train = t0.elapsed().as_secs_f64();
    let t = Instant::now();
    let p = m.predict_proba(&x_pool)?;
    let predict = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let pool_probs = Pool::from_memory(&p, 10)?;
    let job = Job::new(
        ScoreSpec::new(Strategy::Margin),
        InputForm::Probs {
            renormalize: true,
            sum_tol: 1e-3,
        },
        100,
    );
    let sel = cpu::select(&pool_probs, &job, &Silent)?;
    let select = t.elapsed().as_secs_f64();
    let test: Vec<usize> = (60_000..70_000).collect();
    let acc = m.accuracy(&data.gather(&test), &data.labels(&test))?;
    println!(
        "MNIST round: train {train:.2} s ({} epochs, {} steps), predict 59,000 rows {predict:.3} s, select 100 {:.1} ms, total {:.2} s; test accuracy {acc:.4}; first pick row {}",
        r.epochs,
        r.steps,
        select * 1e3,
        t0.elapsed().as_secs_f64(),
        pool[sel.entries[0].index as usize]
    );
    Ok(())
}
