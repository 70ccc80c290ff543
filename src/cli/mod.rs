//! Command-line definitions and their translation into library
//! configurations, one file per command. The library never sees clap types.

mod bench;
mod compare;
mod demo;
mod progress;
mod select;
mod simulate;
mod stream;
mod workspace;

use clap::{Parser, Subcommand};

/// alpool: exact, streaming active learning for very large unlabeled pools.
///
/// A pool is an N x C .npy matrix (float32, float16 or float64) of class
/// probabilities or logits, one row per unlabeled instance, possibly split
/// over several files. `select` scores every row with a query strategy and
/// returns the k most informative, exactly (ties go to the lower row index),
/// reading the pool memory-mapped in chunks, so it may be larger than RAM;
/// on the CPU or a GPU. `simulate`, `stream` and `synthesize` run the three
/// active-learning scenarios with an MLP learner (fused f32 kernels; candle
/// as the reference), and batch-aware strategies pick diverse batches.
#[derive(Parser, Debug)]
#[command(name = "alpool", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Select the k most informative rows of a pool.
    ///
    /// Example: alpool select pool_probs.npy --strategy margin -k 1000 --out batch.csv
    Select(select::SelectArgs),
    /// Write the score of every row of a pool as an N-length float64 .npy.
    ///
    /// Example: alpool score pool_probs.npy --strategy least-confidence --out scores.npy
    Score(select::ScoreArgs),
    /// Merge the parts of a pool selected on many machines into the exact
    /// global top k (each part from `select SHARD --row-offset R --out P.alpart`).
    ///
    /// Example: alpool merge parts/*.alpart -k 1000 --out batch.csv
    Merge(select::MergeArgs),
    /// Active learning on the embedded digits set, margin against random
    /// (nothing to fetch); --pool for the scoring engine alone.
    Demo(demo::DemoArgs),
    /// Simulate pool-based active learning with a ground-truth oracle:
    /// several strategies and seeds, learning curves, stopping criteria.
    ///
    /// Example: alpool simulate --features X.npy --labels y.npy --strategies random,margin,entropy --repeats 5 --out runs/
    Simulate(simulate::SimulateArgs),
    /// Which strategy for this dataset: restarts under a named protocol,
    /// paired Wilcoxon tests against random and the best (Holm-corrected),
    /// mean ranks, labels saved, and a self-contained HTML report.
    ///
    /// Example: alpool compare --features X.npy --labels y.npy --strategies random,margin,entropy,badge --restarts 20 --out cmp/
    Compare(compare::CompareArgs),
    /// Stream-based selective sampling: query or discard each arriving
    /// instance under a label budget.
    ///
    /// Example: alpool stream --features X.npy --labels y.npy --test-rows 0..300 --rules variable-uncertainty,random --budget 0.1 --out s/
    Stream(stream::StreamArgs),
    /// Membership query synthesis: construct instances near the decision
    /// boundary or perturb uncertain images, and compare with pool-based
    /// sampling at the same budget.
    Synthesize(stream::SynthesizeArgs),
    /// Create a workspace for batch jobs with people labeling.
    ///
    /// Example: alpool init ./ws --features pool.npy --classes cat,dog,bird [--labels seed.csv] [--ids ids.txt]
    Init(workspace::InitArgs),
    /// Train on all labels so far, score the pool and export the next batch.
    ///
    /// Example: alpool next ./ws -k 500 --strategy margin --out batch.csv
    Next(workspace::NextArgs),
    /// Take labels back: CSV id,label or a Label Studio export (JSON,
    /// JSON_MIN, CSV, TSV); votes of several annotators are decided, never
    /// guessed.
    ///
    /// Example: alpool ingest ./ws project-1-export.json
    Ingest(workspace::IngestArgs),
    /// Labels per class, rounds, last scores, skipped items, open conflicts.
    Status(workspace::StatusArgs),
    /// A workspace on one self-contained HTML page: labels per class, a
    /// held-out learning curve, annotator agreement, the rounds.
    ///
    /// Example: alpool report ./ws --out ws-report.html
    Report(workspace::ReportArgs),
    /// Print a Label Studio labeling config that fits the workspace's tasks.
    ///
    /// Example: alpool labeling-config ./ws > config.xml
    LabelingConfig(workspace::LabelingConfigArgs),
    /// Serve the workspace as a Label Studio ML backend: predictions with
    /// scores, annotations ingested from webhooks, retraining as labels come.
    ///
    /// Example: alpool serve ./ws --port 9090
    Serve(workspace::ServeArgs),
    /// Write every item of a workspace as a Label Studio task (the file
    /// `serve --project` imports itself).
    Tasks(workspace::TasksArgs),
    /// Train the MLP learner on labeled data and save it (safetensors + JSON).
    Train(simulate::TrainArgs),
    /// Predict class probabilities with a saved model: a pool for `select`.
    Predict(simulate::PredictArgs),
    /// Time selection against the memory-bandwidth floor of the same file.
    ///
    /// The CPU kernels are the widest copies this CPU runs (AVX-512, AVX2 or
    /// scalar, printed as "CPU kernels"); ALPOOL_ISA=avx2 or scalar in the
    /// environment caps them, to measure what a CPU without AVX-512 or AVX2
    /// gets, on this one.
    Bench(bench::BenchArgs),
    /// List the GPU adapters wgpu finds, with their key limits.
    Devices,
}

fn devices() -> anyhow::Result<()> {
    let all = alpool::backend::gpu::list_adapters();
    if all.is_empty() {
        println!(
            "no GPU adapters found (a Vulkan driver is needed; Debian: mesa-vulkan-drivers libvulkan1)"
        );
        return Ok(());
    }
    // One line per adapter: what `--adapter` matches, then its facts.
    for a in all {
        println!(
            "{} [{}, {}; driver {}; max storage binding {} MiB, max buffer {} MiB, max workgroups per dimension {}]",
            a.name,
            a.backend,
            a.device_type,
            a.driver,
            a.max_storage_buffer_binding_size >> 20,
            a.max_buffer_size >> 20,
            a.max_compute_workgroups_per_dimension
        );
    }
    Ok(())
}

pub fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Select(a) => select::select(a),
        Command::Score(a) => select::score(a),
        Command::Merge(a) => select::merge(a),
        Command::Demo(a) => demo::run(a),
        Command::Simulate(a) => simulate::simulate(a),
        Command::Compare(a) => compare::compare(a),
        Command::Report(a) => workspace::report(a),
        Command::Stream(a) => stream::stream(a),
        Command::Synthesize(a) => stream::synthesize(a),
        Command::Init(a) => workspace::init(a),
        Command::Next(a) => workspace::next(a),
        Command::Ingest(a) => workspace::ingest(a),
        Command::Status(a) => workspace::status(a),
        Command::LabelingConfig(a) => workspace::labeling_config(a),
        Command::Serve(a) => workspace::serve_cmd(a),
        Command::Tasks(a) => workspace::tasks(a),
        Command::Train(a) => simulate::train(a),
        Command::Predict(a) => simulate::predict(a),
        Command::Bench(a) => bench::run(a),
        Command::Devices => devices(),
    }
}
