//! The learner's speed, for both engines: `predict_proba` throughput of a
//! 784-256-10 MLP over 1M rows, and one whole active-learning round on MNIST
//! (1,000 labeled, 59,000 pool, 20 epochs, select 100 by margin), timed the
//! way the pool loop runs it.
//!
//!     cargo run --release --example learner_speed [-- path/to/shared/data/mnist]

use std::path::PathBuf;
use std::time::Instant;

use alpool::al::Dataset;
use alpool::bench::synth;
use alpool::bench::{CountingAlloc, peak_extra_memory};
use alpool::learner::{Engine, Mlp, MlpConfig};
use alpool::{Device, InputForm, Job, Pool, Run, Strategy};

// Exact heap accounting, so the round's extra memory can be reported.
#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const MIB: f64 = 1024.0 * 1024.0;

fn main() -> alpool::Result<()> {
    // 1. predict_proba over 1M rows, generated in blocks of 100k so memory
    //    stays bounded; 784 inputs (MNIST's width) and 64 (digits').
    for (inputs, engine) in [
        (784, Engine::Fused),
        (784, Engine::Candle),
        (64, Engine::Fused),
        (64, Engine::Candle),
    ] {
        let block = synth::uniform(100_000 * inputs, 1);
        let m = Mlp::new(
            inputs,
            10,
            MlpConfig {
                engine,
                ..MlpConfig::default()
            },
        )?;
        let t = Instant::now();
        let mut checksum = 0f64;
        for _ in 0..10 {
            let p = m.predict_proba(&block)?;
            checksum += p[0] as f64;
        }
        let s = t.elapsed().as_secs_f64();
        println!(
            "predict_proba [{}], {inputs}-256-10, 1,000,000 rows: {s:.2} s = {:.0} rows/s (checksum {checksum:.4})",
            engine.name(),
            1e6 / s
        );
    }

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
    let test: Vec<usize> = (60_000..70_000).collect();
    for engine in [Engine::Fused, Engine::Candle] {
        let (round, heap) = peak_extra_memory(|| -> alpool::Result<_> {
            let t = Instant::now();
            let mut m = Mlp::new(
                784,
                10,
                MlpConfig {
                    epochs: 20,
                    engine,
                    ..MlpConfig::default()
                },
            )?;
            let r = m.fit(&data.gather(&labeled), &data.labels(&labeled))?;
            let train = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let p = data.predict_proba_rows(&m, &pool)?;
            let predict = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let pool_probs = Pool::from_memory(&p, 10)?;
            let job = Job::new(Strategy::Margin, InputForm::model_output(), 100);
            let sel = alpool::select(&pool_probs, &job, &Run::on(Device::Cpu))?.selection;
            let select = t.elapsed().as_secs_f64();
            Ok((m, r, sel, train, predict, select))
        });
        let (m, r, sel, train, predict, select) = round?;
        let acc = m.accuracy(&data.gather(&test), &data.labels(&test))?;
        println!(
            "MNIST round [{}]: train {train:.3} s ({} epochs, {} steps), predict 59,000 rows {predict:.3} s, select 100 {:.1} ms, round {:.3} s, peak extra heap {:.1} MiB; test accuracy {acc:.4}; first pick row {}",
            engine.name(),
            r.epochs,
            r.steps,
            select * 1e3,
            train + predict + select,
            heap.unwrap_or(0) as f64 / MIB,
            pool[sel.entries[0].index as usize]
        );
    }
    Ok(())
}
