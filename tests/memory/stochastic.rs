//! A stochastic batch's extra heap: bounded under softmax and power (the
//! scores of one step of chunks, and k), and 16 bytes a row under softrank,
//! which ranks the whole pool, as documented.

use alpool::bench::peak_extra_memory;
use alpool::pool::{ReadPath, npy};
use alpool::{Device, InputForm, Job, Pool, Run, Stochastic, StochasticKind, Strategy};

use crate::rng::Rng;

#[test]
fn memory_is_bounded_except_softrank_s_ranks() {
    let _alone = crate::alone();
    let dir = tempfile::tempdir().unwrap();
    let c = 10;
    let mut rng = Rng::new(3);
    let mut pools = Vec::new();
    for n in [100_000usize, 1_000_000] {
        let path = dir.path().join(format!("p{n}.npy"));
        let mut v = Vec::with_capacity(n * c);
        for _ in 0..n {
            let w: Vec<f64> = (0..c).map(|_| rng.uniform() + 1e-3).collect();
            let s: f64 = w.iter().sum();
            v.extend(w.iter().map(|x| (x / s) as f32));
        }
        npy::save(&path, &[n, c], &v).unwrap();
        pools.push((n, path));
    }
    let peak = |path: &std::path::Path, kind| {
        let pool = Pool::open_with(&[path], ReadPath::Read).unwrap();
        let job = Job::new(Strategy::Entropy, InputForm::probs(), 100)
            .stochastic(Stochastic::new(kind, 1.0));
        let (out, peak) = peak_extra_memory(|| alpool::select(&pool, &job, &Run::on(Device::Cpu)));
        assert_eq!(out.unwrap().selection.entries.len(), 100);
        peak.expect("the counting allocator is installed")
    };
    for kind in [StochasticKind::Softmax, StochasticKind::Power] {
        let small = peak(&pools[0].1, kind);
        let large = peak(&pools[1].1, kind);
        // The large pool alone is 40 MB; one step of chunks' scores is a
        // few MB whatever the pool's size (about 1 MB here for 100k rows,
        // 2.5 MB for 1M).
        assert!(
            large < 6 << 20,
            "{kind}: peak heap grew: {small} bytes for 100k rows, {large} for 1M"
        );
    }
    let small = peak(&pools[0].1, StochasticKind::Softrank);
    let large = peak(&pools[1].1, StochasticKind::Softrank);
    let per_row = (large - small) as f64 / 900_000.0;
    assert!(
        (16.0..=24.0).contains(&per_row),
        "softrank: {per_row:.1} bytes a row ({small} for 100k rows, {large} for 1M)"
    );
}
