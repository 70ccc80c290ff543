//! criterion: select at N = 1M, C = 10, k = 1000, for each strategy, from a
//! page-cached float32 file (the pool is generated once from a fixed seed),
//! through the door as every caller runs it.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use alpool::bench::synth;
use alpool::{Device, InputForm, Job, Pool, Run, Strategy};

fn select(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("pool.npy");
    synth::write_softmax_pool(&path, 1_000_000, 10, 7).expect("write pool");
    let pool = Pool::open(&[&path]).expect("open pool");

    let mut group = c.benchmark_group("select_1M_x10_k1000");
    group.throughput(Throughput::Bytes(pool.data_bytes()));
    group.sample_size(20);
    for strategy in Strategy::ALL {
        let job = Job::new(strategy, InputForm::probs(), 1000).seed(1);
        let cpu = Run::on(Device::Cpu);
        group.bench_function(strategy.name(), |b| {
            b.iter(|| alpool::select(&pool, &job, &cpu).expect("select"))
        });
    }
    group.finish();
}

criterion_group!(benches, select);
criterion_main!(benches);
