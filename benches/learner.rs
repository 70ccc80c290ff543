//! criterion: the learner's two hot paths with each engine — predict_proba
//! of a 784-256-10 MLP over 16,384 rows, and a training run of 64 steps of
//! 32 rows (784 inputs). `cargo run --release --example learner_speed`
//! times the whole MNIST round.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use alpool::bench::synth;
use alpool::learner::{Engine, Mlp, MlpConfig};

fn config(engine: Engine) -> MlpConfig {
    MlpConfig {
        engine,
        epochs: 8,
        min_steps: 0,
        ..MlpConfig::default()
    }
}

fn learner(c: &mut Criterion) {
    let x = synth::uniform(16_384 * 784, 3);
    let y = synth::below(256, 10, 4);

    let mut group = c.benchmark_group("predict_proba_784x256x10_16384_rows");
    group.throughput(Throughput::Elements(16_384));
    group.sample_size(10);
    for engine in [Engine::Fused, Engine::Candle] {
        let m = Mlp::new(784, 10, config(engine)).expect("model");
        group.bench_function(engine.name(), |b| {
            b.iter(|| m.predict_proba(&x).expect("predict"))
        });
    }
    group.finish();

    // 256 rows, batches of 32, 8 epochs: 64 steps.
    let mut group = c.benchmark_group("train_784x256x10_64_steps_of_32");
    group.throughput(Throughput::Elements(64));
    group.sample_size(10);
    for engine in [Engine::Fused, Engine::Candle] {
        group.bench_function(engine.name(), |b| {
            b.iter(|| {
                let mut m = Mlp::new(784, 10, config(engine)).expect("model");
                m.fit(&x[..256 * 784], &y).expect("fit")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, learner);
criterion_main!(benches);
