//! Selecting from features holds neither the pool nor its probabilities:
//! the peak heap is the same for a pool 10 times larger.

use crate::rng::Rng;
use alpool::bench::peak_extra_memory;
use alpool::features::FeaturePool;
use alpool::learner::{Mlp, MlpConfig};
use alpool::pool::npy;
use alpool::{Device, InputForm, Inputs, Job, Run, Strategy};

#[test]
fn memory_does_not_grow_with_the_pool() {
    let _alone = crate::alone();
    let dir = tempfile::tempdir().unwrap();
    let (dim, classes) = (32, 10);
    let m = Mlp::new(
        dim,
        classes,
        MlpConfig {
            hidden: vec![16],
            ..MlpConfig::default()
        },
    )
    .unwrap();
    let mut rng = Rng::new(1);
    let mut peak = |rows: usize| {
        let path = dir.path().join(format!("x{rows}.npy"));
        let x: Vec<f32> = (0..rows * dim).map(|_| rng.uniform() as f32).collect();
        npy::save(&path, &[rows, dim], &x).unwrap();
        drop(x);
        let fp = FeaturePool::open(&[&path]).unwrap().with_block_rows(4096);
        let job = Job::new(Strategy::Entropy, InputForm::probs(), 100);
        let (sel, peak) = peak_extra_memory(|| {
            alpool::select(Inputs::model(&m, &fp), &job, &Run::on(Device::Cpu))
                .unwrap()
                .selection
        });
        assert_eq!(sel.entries.len(), 100);
        peak.expect("the counting allocator is installed")
    };
    let small = peak(40_000);
    let large = peak(400_000);
    // The probabilities of the large pool alone would be 16 MB.
    assert!(
        large <= small + (512 << 10),
        "peak heap grew with the pool: {small} bytes for 40k rows, {large} for 400k"
    );
}
