//! `alpool demo`: the README's first command. Needs no data: active
//! learning on the embedded digits set (margin against random); with
//! `--pool`, the textbook example and selection from a generated pool.

use std::time::Instant;

use clap::Args;

use alpool::al::Dataset;
use alpool::al::pool_loop::LoopConfig;
use alpool::al::simulate::{SimConfig, TestSet};
use alpool::al::stopping::StopConfig;
use alpool::bench::synth;
use alpool::learner::MlpConfig;
use alpool::{Device, InputForm, Job, LogBase, Pool, Run, Strategy};

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Instead of active learning, select from a generated pool of --rows x
    /// --classes with every strategy (the scoring engine on its own).
    #[arg(long)]
    pool: bool,
    /// Runs per strategy in the active-learning demo.
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Output folder of the active-learning demo.
    #[arg(long, default_value = "alpool-demo")]
    out: std::path::PathBuf,
    /// Rows of the generated pool.
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    /// Classes of the generated pool.
    #[arg(long, default_value_t = 10)]
    classes: usize,
    /// Rows to select.
    #[arg(short, default_value_t = 5)]
    k: usize,
    /// Seed of the runs (active learning) or of the generated pool.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run(a: DemoArgs) -> anyhow::Result<()> {
    if a.pool {
        return pool_demo(a);
    }
    // The protocol of the README: digits, 80/20 stratified split, 20 seed
    // labels, batches of 10, up to 300 labels; margin against random.
    let data = Dataset::digits();
    let cfg = SimConfig {
        strategies: vec![Strategy::Random.into(), Strategy::Margin.into()],
        repeats: a.repeats.max(1),
        test: TestSet::Fraction(0.2),
        base: LoopConfig {
            strategy: Strategy::Random.into(),
            log_base: LogBase::E,
            seed_size: 20,
            seed_stratified: false,
            batch_size: 10,
            stop: StopConfig {
                budget: Some(300),
                ..Default::default()
            },
            mlp: MlpConfig::default(),
            warm_start: false,
            seed: a.seed,
            embedding: Default::default(),
            committee: 0,
            mc_samples: 0,
            stochastic: None,
        },
    };
    super::simulate::run_and_report(&data, &cfg, None, &a.out)
}

fn pool_demo(a: DemoArgs) -> anyhow::Result<()> {
    textbook_example()?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("demo_pool.npy");
    let t = Instant::now();
    synth::write_softmax_pool(&path, a.rows, a.classes, a.seed)?;
    println!(
        "\nGenerated a pool of {} rows x {} classes (float32, seed {}) in {:.2} s.",
        a.rows,
        a.classes,
        a.seed,
        t.elapsed().as_secs_f64()
    );
    let pool = Pool::open(&[&path])?;
    println!("Top {} rows per strategy (rank: row index, score):\n", a.k);
    let cpu = Run::on(Device::Cpu);
    for strategy in Strategy::ALL {
        let job = Job::new(strategy, InputForm::probs(), a.k).seed(a.seed);
        let t = Instant::now();
        let sel = alpool::select(&pool, &job, &cpu)?.selection;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        let top: Vec<String> = sel
            .entries
            .iter()
            .map(|e| format!("{}: {} ({:.4})", e.rank, e.index, e.score))
            .collect();
        println!("{:<17} {:>7.1} ms  {}", strategy.name(), ms, top.join("  "));
    }
    let job = Job::new(Strategy::Margin, InputForm::probs(), 1);
    if let Some(e) = alpool::select(&pool, &job, &cpu)?.selection.entries.first() {
        let mut row = vec![0f32; a.classes];
        pool.row_f32(e.index, &mut row)?;
        println!(
            "\nThe most ambiguous row by margin, {}: {:.3?}",
            e.index, row
        );
    }
    println!("\nNext: alpool select YOUR_POOL.npy --strategy margin -k 1000 --out batch.csv");
    Ok(())
}

/// d1 = (0.9, 0.09, 0.01), d2 = (0.2, 0.5, 0.3): every strategy prefers d2.
fn textbook_example() -> anyhow::Result<()> {
    println!("The textbook example: d1 = (0.9, 0.09, 0.01), d2 = (0.2, 0.5, 0.3)\n");
    println!("{:<18} {:>10} {:>10}  prefers", "strategy", "d1", "d2");
    let rows = [0.9f64, 0.09, 0.01, 0.2, 0.5, 0.3];
    let pool = Pool::from_f64(&rows, 3)?;
    for (strategy, base, label) in [
        (Strategy::LeastConfidence, LogBase::E, "least-confidence"),
        (Strategy::Margin, LogBase::E, "margin"),
        (Strategy::Entropy, LogBase::Ten, "entropy (log10)"),
        (Strategy::Ratio, LogBase::E, "ratio"),
    ] {
        let job = Job::new(strategy, InputForm::probs(), 2).log_base(base);
        let s = alpool::score(&pool, &job)?;
        let pr: Vec<f64> = s.iter().map(|&x| strategy.priority(x)).collect();
        let best = if pr[1] > pr[0] { "d2" } else { "d1" };
        println!("{label:<18} {:>10.4} {:>10.4}  {best}", s[0], s[1]);
    }
    Ok(())
}
