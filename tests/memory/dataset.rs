//! Simulating over a .npy dataset holds no float32 copy of its features
//! (nor a byte copy of a uint8 file): the loop's peak heap, loading
//! included, stays below the file's own size.

use crate::rng::Rng;
use alpool::al::pool_loop::{self, LoopConfig};
use alpool::al::stopping::StopConfig;
use alpool::al::{Dataset, GroundTruth, Split};
use alpool::bench::peak_extra_memory;
use alpool::learner::{MlpConfig, Scale};
use alpool::pool::npy;
use alpool::{BatchStrategy, LogBase, Query, Strategy};

#[test]
fn the_loop_over_a_mapped_dataset_holds_no_copy_of_it() {
    let _alone = crate::alone();
    let dir = tempfile::tempdir().unwrap();
    let (rows, dim, classes) = (60_000, 256, 4);
    let (xp, yp) = (dir.path().join("x.npy"), dir.path().join("y.npy"));
    let mut rng = Rng::new(7);
    // Four blobs of pixels: learnable, so the rounds do real work.
    let y: Vec<i64> = (0..rows).map(|i| (i % classes) as i64).collect();
    let x: Vec<u8> = (0..rows * dim)
        .map(|i| {
            let c = (i / dim) % classes;
            let hot = (i % dim) / (dim / classes) == c;
            (rng.below(96) + if hot { 128 } else { 0 }) as u8
        })
        .collect();
    npy::save(&xp, &[rows, dim], &x).unwrap();
    npy::save(&yp, &[rows], &y).unwrap();
    drop(x);
    let file_bytes = (rows * dim) as u64;
    for query in [
        Query::from(Strategy::Margin),
        Query::Batch(BatchStrategy::ClusterMargin),
    ] {
        let cfg = LoopConfig {
            strategy: query,
            log_base: LogBase::E,
            seed_size: 40,
            seed_stratified: false,
            batch_size: 40,
            stop: StopConfig {
                budget: Some(120),
                ..Default::default()
            },
            mlp: MlpConfig {
                hidden: vec![16],
                min_steps: 20,
                epochs: 2,
                // Standardized on the pool's statistics: a pass of its own.
                scale: Scale::Standard,
                ..MlpConfig::default()
            },
            warm_start: false,
            seed: 1,
            embedding: Default::default(),
            committee: 0,
            mc_samples: 0,
            stochastic: None,
        };
        // Two threads, as on the machines CI runs on: each thread holds one
        // block of rows in float32 while the column statistics are taken.
        let threads = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let (run, peak) = threads.install(|| {
            peak_extra_memory(|| {
                let data = Dataset::from_npy(&xp, &yp).unwrap();
                let split = Split::fixed(rows, 0..rows / 5);
                pool_loop::run(&data, &split, &cfg, &mut GroundTruth::new(&data.y), None).unwrap()
            })
        });
        let peak = peak.expect("the counting allocator is installed");
        assert_eq!(run.labeled.len(), 120, "{query:?}");
        assert!(run.rounds.last().unwrap().test_accuracy > 0.9, "{query:?}");
        // A float32 copy would be 4x the file; the loop's own per-row
        // bookkeeping (indices, flags, uncertainties) is under 40 bytes a row.
        assert!(
            peak < file_bytes,
            "{query:?}: peak heap {peak} bytes over a {file_bytes}-byte uint8 file"
        );
        eprintln!("{query:?}: peak heap {peak} bytes; file {file_bytes} bytes");
    }
}
