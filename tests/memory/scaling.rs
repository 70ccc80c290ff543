//! The scaler's statistics are computed in memory that does not grow with
//! the pool.

use crate::rng::Rng;
use alpool::bench::peak_extra_memory;
use alpool::learner::ColumnStats;

#[test]
fn statistics_take_bounded_memory_whatever_the_pool_size() {
    let _alone = crate::alone();
    let dim = 16;
    let mut rng = Rng::new(1);
    let x: Vec<f32> = (0..4_000_000 * dim / 4)
        .map(|_| rng.uniform() as f32)
        .collect();
    let peak = |rows: usize| {
        let (s, peak) = peak_extra_memory(|| ColumnStats::of_matrix(&x[..rows * dim], dim, None));
        assert_eq!(s.rows, rows as u64);
        peak.expect("the counting allocator is installed")
    };
    let (small, large) = (peak(50_000), peak(1_000_000));
    assert!(
        large <= small + (64 << 10) && large < 2 << 20,
        "statistics memory grew with the rows: {small} bytes for 50k rows, {large} for 1M"
    );
    // The listed-rows form gathers one block at a time, not the rows.
    let rows: Vec<usize> = (0..1_000_000).rev().collect();
    let (s, peak) = peak_extra_memory(|| ColumnStats::of_matrix(&x, dim, Some(&rows)));
    assert!(peak.unwrap() < 32 << 20, "{} bytes", peak.unwrap());
    let whole = ColumnStats::of_matrix(&x[..1_000_000 * dim], dim, None);
    for j in 0..dim {
        assert!((s.mean[j] - whole.mean[j]).abs() < 1e-9);
    }
}
