//! The disagreement strategies' extra heap does not grow with the rows or
//! the samples: a chunk per worker and k.

use alpool::bench::peak_extra_memory;
use alpool::pool::{ReadPath, npy};
use alpool::{Device, Disagreement, InputForm, Inputs, Job, Run, SampleLayout, Samples};

use crate::rng::Rng;

#[test]
fn memory_does_not_grow_with_rows_or_samples() {
    let _alone = crate::alone();
    let dir = tempfile::tempdir().unwrap();
    let c = 10;
    let mut rng = Rng::new(2);
    let mut peak = |t: usize, n: usize| {
        let path = dir.path().join(format!("s{t}x{n}.npy"));
        let mut v = Vec::with_capacity(t * n * c);
        for _ in 0..t * n {
            let w: Vec<f64> = (0..c).map(|_| rng.uniform() + 1e-3).collect();
            let s: f64 = w.iter().sum();
            v.extend(w.iter().map(|x| (x / s) as f32));
        }
        npy::save(&path, &[t, n, c], &v).unwrap();
        drop(v);
        let samples = Samples::open(&[&path], SampleLayout::Tnc, ReadPath::Read).unwrap();
        let job = Job::new(Disagreement::Bald, InputForm::probs(), 100);
        let run = || alpool::select(Inputs::samples(&samples), &job, &Run::on(Device::Cpu));
        let (out, peak) = peak_extra_memory(run);
        assert_eq!(out.unwrap().selection.entries.len(), 100);
        peak.expect("the counting allocator is installed")
    };
    let small = peak(4, 20_000);
    let large = peak(20, 200_000);
    // The large samples alone would be 160 MB; a chunk is 256 KiB of them.
    assert!(
        large <= small + (1 << 20) && large < 8 << 20,
        "peak heap grew: {small} bytes for 4 x 20k, {large} for 20 x 200k"
    );
}
