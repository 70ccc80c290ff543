//! Stream memory stays constant whatever the stream's length: the peak heap
//! of a 20,000-instance stream and of a 100,000-instance one are the same
//! within a small slack.

use crate::rng::Rng;
use alpool::al::GroundTruth;
use alpool::al::stream::{self, Rule, StreamConfig};
use alpool::bench::peak_extra_memory;
use alpool::learner::MlpConfig;
use alpool::query::Strategy;

fn peak_for(n: usize, labels: &[usize]) -> (u64, u64) {
    let cfg = StreamConfig {
        strategy: Strategy::Entropy,
        rule: Rule::VariableUncertainty { step: 0.01 },
        budget: 0.05,
        window: 1000,
        seed_size: 10,
        update_every: 200,
        warm_start: true,
        mlp: MlpConfig {
            hidden: vec![8],
            min_steps: 20,
            epochs: 2,
            ..MlpConfig::default()
        },
        max_labeled: 300,
        checkpoint_every: 0,
        seed: 1,
        scaling: Default::default(),
    };
    let (s, peak) = peak_extra_memory(|| {
        // Instances are generated on the fly: nothing stores the stream.
        let mut rng = Rng::new(9);
        let mut source = (0..n as u64).map(move |i| {
            let c = labels[i as usize % labels.len()] as f64;
            Ok((
                i % labels.len() as u64,
                (0..32).map(|_| (c + 0.5 * rng.normal()) as f32).collect(),
            ))
        });
        let mut oracle = GroundTruth::new(labels);
        stream::run(&mut source, 32, 3, &cfg, &mut oracle, None, &mut |_| Ok(())).unwrap()
    });
    (
        peak.expect("the counting allocator is installed"),
        s.queries,
    )
}

#[test]
fn stream_memory_is_constant_in_the_stream_length() {
    let _alone = crate::alone();
    let labels: Vec<usize> = (0..1000).map(|i| (i * 7 % 3) as usize).collect();
    let (short, q1) = peak_for(20_000, &labels);
    let (long, q2) = peak_for(100_000, &labels);
    assert!(
        q2 > 4 * q1 / 2,
        "the long stream queried more: {q1} vs {q2}"
    );
    assert!(
        long <= short + (256 << 10),
        "peak heap grew with the stream: {short} bytes for 20k instances, {long} for 100k"
    );
}
