//! The disagreement strategies' extra heap does not grow with the rows or
//! the samples: a chunk per worker and k.

use alpool::bench::peak_extra_memory;
use alpool::pool::{ReadPath, npy};
use alpool::{Device, Disagreement, InputForm, Inputs, Job, Run, SampleLayout, Samples};

use crate::rng::Rng;

/// T x N x C random probabilities saved as float32 in `dir`.
fn save_samples(dir: &std::path::Path, [t, n, c]: [usize; 3], rng: &mut Rng) -> std::path::PathBuf {
    let path = dir.join(format!("s{t}x{n}.npy"));
    let mut v = Vec::with_capacity(t * n * c);
    for _ in 0..t * n {
        let w: Vec<f64> = (0..c).map(|_| rng.uniform() + 1e-3).collect();
        let s: f64 = w.iter().sum();
        v.extend(w.iter().map(|x| (x / s) as f32));
    }
    npy::save(&path, &[t, n, c], &v).unwrap();
    path
}

#[test]
fn memory_does_not_grow_with_rows_or_samples() {
    let _alone = crate::alone();
    let dir = tempfile::tempdir().unwrap();
    let c = 10;
    let mut rng = Rng::new(2);
    let mut peak = |t: usize, n: usize| {
        let path = save_samples(dir.path(), [t, n, c], &mut rng);
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

/// BatchBALD holds about 41 bytes a row (its conditional entropy, its
/// bound, a flag and its place in the order of bounds) and the M x T
/// configurations, whatever T is: the samples stay in their file.
#[test]
fn batchbald_holds_a_few_bytes_a_row_and_never_the_samples() {
    let _alone = crate::alone();
    let dir = tempfile::tempdir().unwrap();
    let (c, n) = (10, 100_000);
    let mut rng = Rng::new(3);
    let mut peak = |t: usize| {
        let path = save_samples(dir.path(), [t, n, c], &mut rng);
        let samples = Samples::open(&[&path], SampleLayout::Tnc, ReadPath::Read).unwrap();
        // Three picks: an exact step (10 configurations of the first),
        // then a sampled one (100 > 60; 60 drawn).
        let mut job = Job::new(alpool::BatchStrategy::BatchBald, InputForm::probs(), 3);
        job.configurations = 60;
        let run = || alpool::select(Inputs::samples(&samples), &job, &Run::on(Device::Cpu));
        let (out, peak) = peak_extra_memory(run);
        assert_eq!(out.unwrap().selection.entries.len(), 3);
        peak.expect("the counting allocator is installed")
    };
    let few = peak(4);
    let many = peak(16);
    // 16 x 100k x 10 float32 samples are 64 MB; 48 bytes a row are 4.8 MB.
    let limit = 48 * n as u64 + (2 << 20);
    assert!(
        few < limit && many < limit,
        "peak heap: {few} bytes with T = 4, {many} with T = 16, for {n} rows"
    );
}
