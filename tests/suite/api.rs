//! The front door: `alpool::select` over files, borrowed slices and ndarray
//! views gives one answer, and borrowed pools are not copied.

use crate::rng::Rng;
use alpool::{Device, InputForm, Job, Pool, Run, Strategy};

fn probs(rows: usize, classes: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let mut v = Vec::with_capacity(rows * classes);
    for _ in 0..rows {
        let row: Vec<f64> = (0..classes).map(|_| rng.uniform() + 1e-3).collect();
        let s: f64 = row.iter().sum();
        v.extend(row.iter().map(|x| (x / s) as f32));
    }
    v
}

#[test]
fn files_slices_and_views_select_the_same_rows() {
    let (n, c) = (5_000, 7);
    let p = probs(n, c, 11);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pool.npy");
    alpool::pool::npy::save(&path, &[n, c], &p).unwrap();
    let file = Pool::open(&[&path]).unwrap();
    let slice = Pool::from_f32(&p, c).unwrap();
    let array = ndarray::Array2::from_shape_vec((n, c), p.clone()).unwrap();
    let view = Pool::from_array(array.view()).unwrap();
    let halfs: Vec<half::f16> = p.iter().map(|&x| half::f16::from_f32(x)).collect();
    let f16 = Pool::from_f16(&halfs, c).unwrap();
    for strategy in [
        Strategy::LeastConfidence,
        Strategy::Margin,
        Strategy::Entropy,
        Strategy::Ratio,
        Strategy::Random,
    ] {
        let job = Job::new(strategy, InputForm::probs(), 100);
        let want = alpool::select(&file, &job, &alpool::Run::on(Device::Cpu))
            .map(|o| o.selection)
            .unwrap();
        assert_eq!(want.entries.len(), 100);
        for pool in [&slice, &view] {
            assert_eq!(
                alpool::select(pool, &job, &alpool::Run::on(Device::Auto))
                    .map(|o| o.selection)
                    .unwrap()
                    .entries,
                want.entries
            );
        }
        let scores = alpool::score(&slice, &job).unwrap();
        assert_eq!(scores.len(), n);
        assert_eq!(
            scores[want.entries[0].index as usize],
            want.entries[0].score
        );
        // float16 rounds the values: its own selection, but a valid one.
        let job16 = Job::new(strategy, InputForm::probs_f16(), 100);
        assert_eq!(
            alpool::select(&f16, &job16, &alpool::Run::on(Device::Cpu))
                .map(|o| o.selection)
                .unwrap()
                .entries
                .len(),
            100
        );
    }
}

#[test]
fn a_borrowed_pool_points_at_the_callers_memory() {
    let p = probs(1000, 4, 3);
    let pool = Pool::from_f32(&p, 4).unwrap();
    let shard = &pool.shards()[0];
    let bytes = shard.mapped_bytes(0, 1000, 4).unwrap();
    assert_eq!(bytes.as_ptr(), p.as_ptr() as *const u8, "no copy");
    assert_eq!(pool.rows(), 1000);
}

#[test]
fn non_standard_views_and_ragged_slices_are_refused() {
    let a = ndarray::Array2::<f32>::zeros((4, 3));
    let t = a.t();
    let e = Pool::from_array(t).err().unwrap().to_string();
    assert!(
        e.contains("standard (C, row-major) layout") && e.contains("3 x 4"),
        "{e}"
    );
    let e = Pool::from_f32(&[0.5; 7], 3).err().unwrap().to_string();
    assert!(e.contains("7 values") && e.contains("3 classes"), "{e}");
    let e = Pool::from_f32(&[], 0).err().unwrap().to_string();
    assert!(e.contains("at least one class"), "{e}");
    // An empty pool with classes is valid and selects nothing.
    let empty = Pool::from_f32(&[], 3).unwrap();
    let job = Job::new(Strategy::Margin, InputForm::probs(), 5);
    assert!(
        alpool::select(&empty, &job, &alpool::Run::on(Device::Auto))
            .map(|o| o.selection)
            .unwrap()
            .entries
            .is_empty()
    );
}

#[test]
fn auto_takes_the_cpu_for_small_pools_and_says_why() {
    let p = probs(1000, 4, 3);
    let pool = Pool::from_f32(&p, 4).unwrap();
    let job = Job::new(Strategy::Margin, InputForm::probs(), 5);
    let out = alpool::select(&pool, &job, &Run::default()).unwrap();
    assert!(out.adapter.is_none());
    assert!(out.reason.contains("below the 256 MiB"), "{}", out.reason);
    let out = alpool::select(&pool, &job, &Run::on(Device::Cpu)).unwrap();
    assert!(out.adapter.is_none() && out.reason.contains("--device cpu"));
}
