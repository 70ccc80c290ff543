//! criterion: GPU against CPU select at several N, for each strategy. The
//! GPU half is skipped, with a message, when wgpu finds no adapter. On Mesa
//! lavapipe the "GPU" is the CPU, so expect no speed-up there.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

use alpool::backend::Silent;
use alpool::backend::gpu::Gpu;
use alpool::bench::synth;
use alpool::{Device, InputForm, Job, Pool, Run, Strategy};

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
            let job = Job::new(strategy, InputForm::probs(), 100).seed(1);
            let cpu = Run::on(Device::Cpu);
            group.bench_function(BenchmarkId::new("cpu", strategy.name()), |b| {
                b.iter(|| alpool::select(&pool, &job, &cpu).expect("cpu select"))
            });
            if let Some(g) = &gpu {
                let run = Run {
                    device: Device::Gpu,
                    adapter: None,
                    progress: &Silent,
                    gpu: Some(g),
                };
                group.bench_function(BenchmarkId::new("gpu", strategy.name()), |b| {
                    b.iter(|| alpool::select(&pool, &job, &run).expect("gpu select"))
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, gpu_vs_cpu);
criterion_main!(benches);
