//! `alpool bench`: alpool's select against the memory-bandwidth floor of the
//! same page-cached file, in one run.

use std::path::PathBuf;

use clap::Args;

use alpool::backend::Silent;
use alpool::backend::gpu::Gpu;
use alpool::bench::synth;
use alpool::bench::{Timing, chunk_rows, peak_extra_memory, read_pass, sequential_read};
use alpool::features::FeaturePool;
use alpool::learner::Mlp;
use alpool::pool::ReadPath;
use alpool::{
    Device, Disagreement, InputForm, Inputs, Job, MultiLabel, Pool, Query, Run, SampleLayout,
    Samples, Strategy,
};

use super::select::StrategyArg;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum BenchDevice {
    Cpu,
    Gpu,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Pool to measure (float32/float16 probabilities). Default: generate a
    /// synthetic pool of --rows x --classes in a temporary folder.
    #[arg(value_name = "POOL")]
    pool: Option<PathBuf>,
    /// Rows of the generated pool.
    #[arg(long, default_value_t = 10_000_000)]
    rows: u64,
    /// Classes of the generated pool.
    #[arg(long, default_value_t = 10)]
    classes: usize,
    /// Strategies to time.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "least-confidence,margin,entropy,ratio,random"
    )]
    strategies: Vec<StrategyArg>,
    /// Rows to select.
    #[arg(short, default_value_t = 1000)]
    k: usize,
    /// Timed runs per measurement (after one untimed warm-up run).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Backends to time, e.g. cpu,gpu (the GPU also reports its phases and
    /// the ratio GPU / CPU).
    #[arg(long, value_delimiter = ',', default_value = "cpu")]
    device: Vec<BenchDevice>,
    /// GPU adapter name (substring), as for `select --adapter`.
    #[arg(long, value_name = "NAME")]
    adapter: Option<String>,
    /// Keep the generated pool at this path instead of a temporary folder.
    #[arg(long, value_name = "FILE")]
    keep: Option<PathBuf>,
    /// Also time `alpool select` as a whole process (start, read, score,
    /// exit) next to `dd bs=8M` of the same file, alternated run by run,
    /// medians; for each read path (--read-paths).
    #[arg(long)]
    whole_process: bool,
    /// Read paths for --whole-process and --cold.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "read,map")]
    read_paths: Vec<super::select::ReadArg>,
    /// Time `alpool select` and `dd` from a cold cache: the file is dropped
    /// from the page cache before every run. Reports the select's peak RSS
    /// and how much fuller the page cache was after it. For a pool larger
    /// than RAM, generate it with --keep on a disk with room.
    #[arg(long)]
    cold: bool,
    /// Skip the in-process table (for --whole-process or --cold alone).
    #[arg(long)]
    no_in_process: bool,
    /// Model mode: time the fused path (features → model → score → top k,
    /// `select --model`) next to `predict` into an N x C matrix followed by
    /// `select`, in the same run, as rows/s. Needs --features.
    #[arg(long, value_name = "MODEL.safetensors", requires = "features")]
    model: Option<PathBuf>,
    /// Feature files for --model.
    #[arg(long, value_name = "X.npy", num_args = 1.., requires = "model")]
    features: Vec<PathBuf>,
    /// Time the multi-label strategies (all of them) on a multi-label pool
    /// instead: N x L sigmoid outputs (generated: --rows x --labels), read
    /// as `--input multilabel`, with a label cardinality of L / 2.
    #[arg(long)]
    multilabel: bool,
    /// Labels of the generated multi-label pool.
    #[arg(long, default_value_t = 20)]
    labels: usize,
    /// Time the disagreement strategies (all of them) over T samples
    /// instead: T generated files of --rows x --classes softmax rows (one
    /// a sample, a T x N x C set), the read floors over the same files.
    #[arg(
        long,
        value_name = "T",
        conflicts_with_all = ["pool", "multilabel", "model", "whole_process", "cold"]
    )]
    samples: Option<usize>,
}

pub fn run(a: BenchArgs) -> anyhow::Result<()> {
    if let Some(model) = &a.model {
        return model_mode(&a, model);
    }
    let dir = tempfile::tempdir()?;
    let paths = match a.samples {
        Some(t) => sample_paths(&a, t, dir.path())?,
        None => vec![bench_pool_path(&a, dir.path())?],
    };
    let path = &paths[0];
    let pool = Pool::open(&paths)?;
    let samples = match a.samples {
        Some(_) => Some(Samples::open(&paths, SampleLayout::Tnc, ReadPath::Auto)?),
        None => None,
    };
    let mb = pool.data_bytes() as f64 / 1e6;
    match &samples {
        Some(s) => println!(
            "samples: {} files like {} ({} x {} rows x {} classes, {:.0} MB); k = {}; {} runs after 1 warm-up",
            s.samples(),
            path.display(),
            s.samples(),
            s.rows(),
            s.classes(),
            mb,
            a.k,
            a.runs
        ),
        None => println!(
            "pool: {} ({} rows x {} classes, {:.0} MB); k = {}; {} runs after 1 warm-up",
            path.display(),
            pool.rows(),
            pool.classes(),
            mb,
            a.k,
            a.runs
        ),
    }
    println!(
        "machine: {}; {} threads; CPU kernels: {}",
        alpool::bench::cpu_model(),
        rayon::current_num_threads(),
        alpool::backend::kernel_variant()
    );
    if a.whole_process || a.cold {
        whole_process(&a, path, mb)?;
    }
    if a.no_in_process {
        return Ok(());
    }
    let floors = read_floors(&a, &pool, &paths, mb);
    let gpu = bench_gpu(&a)?;
    println!(
        "{:<17} {:>36} {:>9} {:>9} {:>10} {:>8}",
        "strategy",
        "alpool select (mean ± σ [min … max])",
        "/ floor",
        "/ dd",
        "extra mem",
        "refined"
    );
    for q in queries(&a) {
        let inputs = match &samples {
            Some(s) => Inputs::samples(s),
            None => Inputs::from(&pool),
        };
        bench_strategy(&a, inputs, &bench_job(&a, &pool, q), floors, gpu.as_ref())?;
    }
    println!(
        "\n/ floor, / dd: alpool's mean time over each floor's mean time, same file, same process.\n\
         extra mem: peak heap bytes above the level before the run (the mapped file is not counted)."
    );
    Ok(())
}

/// The pool to measure: `--pool`, or a synthetic one written to `--keep`
/// or into `dir`.
fn bench_pool_path(a: &BenchArgs, dir: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    if let Some(p) = &a.pool {
        return Ok(p.clone());
    }
    let p = a.keep.clone().unwrap_or_else(|| dir.join("bench_pool.npy"));
    let (columns, what) = match a.multilabel {
        true => (a.labels, "multi-label"),
        false => (a.classes, "softmax"),
    };
    eprintln!(
        "generating a {} x {columns} float32 {what} pool at {} ...",
        a.rows,
        p.display()
    );
    match a.multilabel {
        true => synth::write_sigmoid_pool(&p, a.rows, columns, 7)?,
        false => synth::write_softmax_pool(&p, a.rows, columns, 7)?,
    }
    Ok(p)
}

/// `--samples T`'s files: T generated softmax pools of the same size, one
/// a sample, kept beside `--keep` when given.
fn sample_paths(a: &BenchArgs, t: usize, dir: &std::path::Path) -> anyhow::Result<Vec<PathBuf>> {
    anyhow::ensure!(
        t >= 2,
        "--samples needs T ≥ 2 samples to measure disagreement"
    );
    let base = a
        .keep
        .clone()
        .unwrap_or_else(|| dir.join("bench_samples.npy"));
    eprintln!(
        "generating {t} samples of {} x {} float32 softmax rows beside {} ...",
        a.rows,
        a.classes,
        base.display()
    );
    (0..t)
        .map(|s| {
            let p = base.with_extension(format!("t{s}.npy"));
            synth::write_softmax_pool(&p, a.rows, a.classes, 7 + s as u64)?;
            Ok(p)
        })
        .collect()
}

/// The strategies to time: --strategies, or every multi-label or every
/// disagreement one.
fn queries(a: &BenchArgs) -> Vec<Query> {
    if a.samples.is_some() {
        return Disagreement::ALL.into_iter().map(Query::Disagree).collect();
    }
    match a.multilabel {
        true => MultiLabel::ALL.into_iter().map(Query::Multi).collect(),
        false => a
            .strategies
            .iter()
            .map(|&s| Query::Score(s.into()))
            .collect(),
    }
}

/// The job timed for `query` over `pool`.
fn bench_job(a: &BenchArgs, pool: &Pool, query: Query) -> Job {
    let input = match a.multilabel {
        true => InputForm::MultiLabel { logits: false },
        false => InputForm::probs_for(pool.has_f16()),
    };
    let mut job = Job::new(query, input, a.k).seed(1);
    if a.multilabel {
        job.label_cardinality = Some(pool.classes() as f64 / 2.0);
    }
    job
}

/// The two read floors' mean seconds: a parallel read of the mapped bytes,
/// and a sequential read as dd does it.
fn read_floors(a: &BenchArgs, pool: &Pool, paths: &[PathBuf], mb: f64) -> (f64, f64) {
    let chunk = chunk_rows(pool);
    let (floor, _) = Timing::measure(1, a.runs, || read_pass(pool, chunk));
    let files: Vec<&std::path::Path> = paths.iter().map(|p| p.as_path()).collect();
    let (dd, _) = Timing::measure(1, a.runs, || sequential_read(&files));
    println!(
        "read floor, parallel read of the mapped bytes: {}  = {:5.1} GB/s",
        floor.describe(),
        mb / 1e3 / floor.mean()
    );
    println!(
        "sequential read() in 8 MiB blocks (as dd):     {}  = {:5.1} GB/s\n",
        dd.describe(),
        mb / 1e3 / dd.mean()
    );
    warn_noise(&floor);
    warn_noise(&dd);
    (floor.mean(), dd.mean())
}

/// The GPU `--device` asks for, described.
fn bench_gpu(a: &BenchArgs) -> anyhow::Result<Option<Gpu>> {
    if !a.device.contains(&BenchDevice::Gpu) {
        return Ok(None);
    }
    let g = Gpu::new(a.adapter.as_deref())?;
    println!(
        "GPU: {} ({}, {}, {})\n",
        g.adapter.name, g.adapter.backend, g.adapter.device_type, g.adapter.driver
    );
    Ok(Some(g))
}

/// One strategy's row of the table on each device asked for.
fn bench_strategy(
    a: &BenchArgs,
    inputs: Inputs,
    job: &Job,
    (floor, dd): (f64, f64),
    gpu: Option<&Gpu>,
) -> anyhow::Result<()> {
    let strategy = job.query;
    let row = |name: String, t: &Timing, mem: Option<u64>, refined: u64| {
        println!(
            "{:<17} {:>36} {:>8.2}x {:>8.2}x {:>10} {:>8}",
            name,
            t.describe(),
            t.mean() / floor,
            t.mean() / dd,
            mib(mem),
            refined
        );
        warn_noise(t);
    };
    let mut cpu_mean = None;
    if a.device.contains(&BenchDevice::Cpu) {
        let cpu = Run::on(Device::Cpu);
        let (t, out) = Timing::measure(1, a.runs, || alpool::select(inputs, job, &cpu));
        let sel = out?.selection;
        let (_, mem) = peak_extra_memory(|| alpool::select(inputs, job, &cpu));
        row(strategy.name().into(), &t, mem, sel.refined);
        cpu_mean = Some(t.mean());
    }
    if let Some(g) = gpu.filter(|_| !strategy.is_multilabel()) {
        let run = on_gpu(g);
        let (t, r) = Timing::measure(1, a.runs, || alpool::select(inputs, job, &run));
        let out = r?;
        let (sel, p) = (out.selection, out.gpu_phases.unwrap_or_default());
        let (_, mem) = peak_extra_memory(|| alpool::select(inputs, job, &run));
        row(format!("  gpu {}", strategy.name()), &t, mem, sel.refined);
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        println!(
            "    phases (last run): upload {:.1} ms, score {:.1} ms, top-k {:.1} ms, readback {:.1} ms, refine {:.1} ms; {} chunks{}",
            ms(p.upload),
            ms(p.score),
            ms(p.topk),
            ms(p.readback),
            ms(p.refine),
            p.chunks,
            cpu_mean.map_or(String::new(), |c| format!(
                "; GPU / CPU = {:.2}",
                t.mean() / c
            ))
        );
    }
    Ok(())
}

/// `alpool select` as a whole process against `dd bs=8M`, page-cached
/// (--whole-process) and cold (--cold).
fn whole_process(a: &BenchArgs, path: &std::path::Path, mb: f64) -> anyhow::Result<()> {
    let modes: Vec<bool> = [a.whole_process.then_some(false), a.cold.then_some(true)]
        .into_iter()
        .flatten()
        .collect();
    for cold in modes {
        println!(
            "\nwhole process, {}: `alpool select -k {}` vs `dd bs=8M` of the same {mb:.0} MB file, alternated, median of {}{}",
            if cold {
                "cold (the file dropped from the page cache before every run)"
            } else {
                "page-cached"
            },
            a.k,
            a.runs,
            if cold { "" } else { " after 1 warm-up each" }
        );
        println!(
            "{:<17} {:>6} {:>12} {:>12} {:>8} {:>12} {:>14}",
            "strategy", "read", "select", "dd", "/ dd", "peak RSS", "cache growth"
        );
        for q in queries(a) {
            for &read in &a.read_paths {
                whole_process_row(a, path, q, read, cold)?;
            }
        }
    }
    println!(
        "peak RSS: the largest of any child so far (select or dd); cache growth: the most the page cache\n\
         grew above its size before the runs, sampled between runs. float64 pools read twice the bytes of float32."
    );
    Ok(())
}

/// One strategy and read path as a whole process, alternated with dd.
fn whole_process_row(
    a: &BenchArgs,
    path: &std::path::Path,
    strategy: Query,
    read: super::select::ReadArg,
    cold: bool,
) -> anyhow::Result<()> {
    use alpool::bench::{alternate, children_max_rss, evict, page_cache_bytes};
    use std::process::Command;
    let file = path.to_str().unwrap_or_default();
    let mut d = Command::new("dd");
    d.args([&format!("if={file}"), "of=/dev/null", "bs=8M"]);
    let read_name = format!("{read:?}").to_lowercase();
    let mut sel = Command::new(std::env::current_exe()?);
    sel.args(["select", file, "--quiet", "--device", "cpu", "-k"])
        .arg(a.k.to_string())
        .args(["--strategy", strategy.name(), "--read", &read_name]);
    if a.multilabel {
        let pool = Pool::open(&[path])?;
        sel.args(["--input", "multilabel", "--label-cardinality"])
            .arg((pool.classes() as f64 / 2.0).to_string());
    }
    if cold {
        let _ = evict(path);
    } else {
        alternate(&mut sel, &mut d, 1, || {})?;
    }
    let cache_before = page_cache_bytes().unwrap_or(0);
    let mut growth = 0i64;
    let (ts, td) = alternate(&mut sel, &mut d, a.runs, || {
        if cold {
            let _ = evict(path);
        }
        let now = page_cache_bytes().unwrap_or(0) as i64;
        growth = growth.max(now - cache_before as i64);
    })?;
    println!(
        "{:<17} {:>6} {:>9.1} ms {:>9.1} ms {:>7.2}x {:>8.0} MiB {:>10.0} MiB",
        strategy.name(),
        read_name,
        ts.median() * 1e3,
        td.median() * 1e3,
        ts.median() / td.median(),
        children_max_rss() as f64 / (1 << 20) as f64,
        growth as f64 / (1 << 20) as f64
    );
    Ok(())
}

/// The fused path against predict-then-select, same model, same features,
/// same run: rows/s and the exact extra heap of each.
fn model_mode(a: &BenchArgs, model: &std::path::Path) -> anyhow::Result<()> {
    use alpool::features::FeaturePool;
    let m = alpool::learner::Mlp::load(model)?;
    let features = FeaturePool::open(&a.features)?;
    let rows = features.rows();
    println!(
        "model {} ({} → {} classes); features: {} rows x {}; k = {}; {} runs after 1 warm-up",
        model.display(),
        m.inputs(),
        m.classes(),
        rows,
        features.dim(),
        a.k,
        a.runs
    );
    println!(
        "machine: {}; {} threads",
        alpool::bench::cpu_model(),
        rayon::current_num_threads()
    );
    println!(
        "{:<17} {:>36} {:>12} {:>36} {:>12} {:>8} {:>10}",
        "strategy",
        "fused (mean ± σ [min … max])",
        "rows/s",
        "predict + select",
        "rows/s",
        "speedup",
        "fused mem"
    );
    let gpu = bench_gpu(a)?;
    for s in &a.strategies {
        model_row(a, &m, &features, (*s).into())?;
        if let Some(g) = &gpu {
            gpu_model_row(a, g, &m, &features, (*s).into())?;
        }
    }
    println!(
        "\nBoth paths give the same selection (checked on every strategy above). fused mem: peak heap above\n\
         the level before the run (no N x C matrix; the mapped features are not counted)."
    );
    Ok(())
}

/// The GPU `g`, held open across runs.
fn on_gpu(g: &Gpu) -> Run<'_> {
    Run {
        device: Device::Gpu,
        adapter: None,
        progress: &Silent,
        gpu: Some(g),
    }
}

/// One strategy: the fused path and predict + select, checked equal.
fn model_row(
    a: &BenchArgs,
    m: &Mlp,
    features: &FeaturePool,
    strategy: Strategy,
) -> anyhow::Result<()> {
    let rows = features.rows();
    let job = Job::new(strategy, InputForm::model_output(), a.k).seed(1);
    let cpu = Run::on(Device::Cpu);
    let fused = || alpool::select(Inputs::model(m, features), &job, &cpu);
    let (t_fused, out) = Timing::measure(1, a.runs, fused);
    let sel = out?.selection;
    let (_, mem) = peak_extra_memory(fused);
    let two_step = || -> alpool::Result<alpool::Selection> {
        let mut probs = Vec::with_capacity(rows as usize * m.classes());
        features.predict_blocks(m, &Silent, &mut |_, p| {
            probs.extend_from_slice(p);
            Ok(())
        })?;
        let pool = Pool::from_f32(&probs, m.classes())?;
        Ok(alpool::select(&pool, &job, &cpu)?.selection)
    };
    let (two, other) = Timing::measure(1, a.runs, two_step);
    if other?.entries != sel.entries {
        anyhow::bail!("the fused selection differs from predict + select: a bug, please report it");
    }
    let per_s = |t: &Timing| rows as f64 / t.mean();
    println!(
        "{:<17} {:>36} {:>12.0} {:>36} {:>12.0} {:>7.2}x {:>10}",
        strategy.name(),
        t_fused.describe(),
        per_s(&t_fused),
        two.describe(),
        per_s(&two),
        two.mean() / t_fused.mean(),
        mib(mem)
    );
    Ok(())
}

/// The fused path on the GPU (layers, softmax, score and top k in WGSL;
/// candidates re-scored on the CPU), checked against the CPU's selection,
/// with its phases.
fn gpu_model_row(
    a: &BenchArgs,
    g: &Gpu,
    m: &Mlp,
    features: &FeaturePool,
    strategy: Strategy,
) -> anyhow::Result<()> {
    let job = Job::new(strategy, InputForm::probs(), a.k).seed(1);
    let inputs = Inputs::model(m, features);
    let run = on_gpu(g);
    let (t, out) = Timing::measure(1, a.runs, || alpool::select(inputs, &job, &run));
    let out = out?;
    let cpu = alpool::select(inputs, &job, &Run::on(Device::Cpu))?.selection;
    if cpu.entries != out.selection.entries {
        anyhow::bail!("the GPU's fused selection differs from the CPU's: a bug, please report it");
    }
    let p = out.gpu_phases.unwrap_or_default();
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    println!(
        "{:<17} {:>36} {:>12.0}  last run: upload {:.1} ms, forward {:.1} ms, score {:.1} ms, top-k {:.1} ms, refine {:.1} ms; {} of {} rows re-scored on the CPU",
        "  on the GPU",
        t.describe(),
        features.rows() as f64 / t.mean(),
        ms(p.upload),
        ms(p.forward),
        ms(p.score),
        ms(p.topk),
        ms(p.refine),
        p.candidates,
        features.rows()
    );
    Ok(())
}

fn mib(m: Option<u64>) -> String {
    m.map_or("n/a".to_string(), |m| {
        format!("{:.1} MiB", m as f64 / (1 << 20) as f64)
    })
}

/// Prints a timing's noise warning, if it has one.
fn warn_noise(t: &Timing) {
    if let Some(w) = t.noise_warning() {
        println!("                  {w}");
    }
}
