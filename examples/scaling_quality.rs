//! Feature scaling and active-learning quality, side by side in one run:
//! margin sampling on the tabular sets of `../shared/data` with the features
//! as they came, z-scored beforehand, and with columns on scales 1 to 1,000
//! (as counts or money would be), each with the learner's default scaling
//! and with `--scale none`.
//!
//! `cargo run --release --example scaling_quality [DATA_DIR] [REPEATS]`

use std::path::PathBuf;
use std::time::Instant;

use alpool::al::Dataset;
use alpool::al::pool_loop::LoopConfig;
use alpool::al::simulate::{self, SimConfig, TestSet, summarize_names};
use alpool::al::stopping::StopConfig;
use alpool::learner::{MlpConfig, Scale, ScaleKind, Scaler};
use alpool::{LogBase, Strategy};

fn aulc(data: &Dataset, scale: Scale, repeats: usize) -> alpool::Result<(f64, f64)> {
    let cfg = SimConfig {
        strategies: vec![Strategy::Margin.into()],
        repeats,
        test: TestSet::Fraction(0.2),
        base: LoopConfig {
            strategy: Strategy::Margin.into(),
            log_base: LogBase::E,
            seed_size: data.classes.max(20),
            seed_stratified: false,
            batch_size: 20,
            stop: StopConfig {
                budget: Some(500),
                ..StopConfig::default()
            },
            mlp: MlpConfig {
                scale,
                ..MlpConfig::default()
            },
            warm_start: false,
            seed: 0,
            embedding: Default::default(),
            committee: 0,
            mc_samples: 0,
            stochastic: None,
        },
    };
    let runs = simulate::run(data, &cfg, None)?;
    let s = &summarize_names(&runs, &["margin".to_string()])[0];
    Ok((s.aulc_mean, s.aulc_std))
}

fn main() -> alpool::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "../shared/data".into()));
    let repeats: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(3);
    println!("margin, {repeats} seeds, 80/20 split, batches of 20, 500 labels; AULC mean ± std");
    println!(
        "| dataset | z-scored, none | as they came, none | as they came, default | scales 1..1000, none | scales 1..1000, default |"
    );
    println!("|---|---|---|---|---|---|");
    for name in ["letter", "satellite", "spambase"] {
        let d = dir.join(name);
        if !d.exists() {
            eprintln!("skipping {name}: {} not found", d.display());
            continue;
        }
        let t = Instant::now();
        let raw = Dataset::from_npy(&d.join("X.npy"), &d.join("y.npy"))?;
        let mut zx = raw.features().into_owned();
        Scaler::fit(ScaleKind::Standard, &zx, raw.dim, None)?.apply_in_place(&mut zx);
        let z = raw.with_features(zx)?;
        let mut wx = raw.features().into_owned();
        for row in wx.chunks_exact_mut(raw.dim) {
            for (j, v) in row.iter_mut().enumerate() {
                *v *= [1.0, 10.0, 100.0, 1000.0][j % 4];
            }
        }
        let wide = raw.with_features(wx)?;
        let cells = [
            aulc(&z, Scale::None, repeats)?,
            aulc(&raw, Scale::None, repeats)?,
            aulc(&raw, Scale::Auto, repeats)?,
            aulc(&wide, Scale::None, repeats)?,
            aulc(&wide, Scale::Auto, repeats)?,
        ];
        let cells: Vec<String> = cells
            .iter()
            .map(|(m, s)| format!("{m:.3} ± {s:.3}"))
            .collect();
        println!("| {name} | {} |", cells.join(" | "));
        eprintln!("{name}: {:.1} s", t.elapsed().as_secs_f64());
    }
    Ok(())
}
