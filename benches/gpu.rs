//! criterion: GPU against CPU select at several N, for each strategy. The
//! GPU half is skipped, with a message, when wgpu finds no adapter. On Mesa
//! lavapipe the "GPU" is the CPU, so expect no speed-up there.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

use alpool::backend::gpu::{self, Gpu};
use alpool::backend::{Job, Silent, cpu};
use alpool::pool::synth;
use alpool::{InputForm, LogBase, Pool, ScoreSpec, Strategy};

fn gpu_vs_cpu(c: &mut Criterion) {
    let gpu = match Gpu::new(None) {
        Ok(g) => Some(g),
        Err(e) => {
            eprintln!("no GPU adapter ({e}); timing the CPU only");
            None
        }
    };
    let dir = tempfile::tempdir().expect("temp dir");
    for n in [100_000u64, 1_000_000] {
        let path = dir.path().join(format!("pool{n}.npy"));
        synth::write_softmax_pool(&path, n, 10, 3).expect("write pool");
        let pool = Pool::open(&[&path]).expect("open pool");
        let mut group = c.benchmark_group(format!("gpu_vs_cpu_{n}x10_k100"));
        group.throughput(Throughput::Elements(n));
        group.sample_size(10);
        for strategy in Strategy::ALL {
            let spec = ScoreSpec {
                strategy,
                log_base: LogBase::E,
                seed: 1,
            };
            let job = Job::new(spec, InputForm::probs(), 100);
            group.bench_function(BenchmarkId::new("cpu", strategy.name()), |b| {
                b.iter(|| cpu::select(&pool, &job, &Silent).expect("cpu select"))
            });
            if let Some(g) = &gpu {
                group.bench_function(BenchmarkId::new("gpu", strategy.name()), |b| {
                    b.iter(|| gpu::select(g, &pool, &job, &Silent).expect("gpu select"))
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, gpu_vs_cpu);
criterion_main!(benches);
