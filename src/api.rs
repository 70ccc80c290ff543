//! The front door: [`select`] and [`score`] over any [`Pool`] — memory-mapped
//! `.npy` shards, or a slice or `ndarray` view borrowed without a copy —
//! on the device the library picks ([`Device::Auto`]) or the one asked for.
//! The CLI, the active-learning loop, the workspace and the Python package
//! all come through here, so the device policy and the backend match are
//! written once.

use crate::backend::gpu::{self, Gpu, Phases};
use crate::backend::{self, Device, Job, Progress, Silent};
use crate::error::Result;
use crate::pool::Pool;
use crate::select::Selection;

/// Pools smaller than this gain nothing from a GPU: the upload costs more
/// than the CPU's whole scan.
pub const AUTO_GPU_BYTES: u64 = 256 << 20;

/// How a selection runs: device, adapter, progress.
pub struct Run<'p> {
    /// CPU, GPU, or the library's choice ([`Device::Auto`]).
    pub device: Device,
    /// With a GPU: the adapter whose name contains this (case-insensitive).
    pub adapter: Option<String>,
    /// Told of the bytes scored; may ask the work to stop.
    pub progress: &'p dyn Progress,
}

impl Default for Run<'static> {
    fn default() -> Self {
        Run {
            device: Device::Auto,
            adapter: None,
            progress: &Silent,
        }
    }
}

/// A device already opened: the CPU, or a GPU kept across many selections
/// (the loop's rounds), so it is opened once.
#[derive(Clone, Copy)]
pub enum Backend<'g> {
    /// The rayon CPU path.
    Cpu,
    /// An opened wgpu device.
    Gpu(&'g Gpu),
}

/// A selection and where it ran.
pub struct Outcome {
    /// The k rows, best first.
    pub selection: Selection,
    /// The GPU adapter's name, or `None` for the CPU.
    pub adapter: Option<String>,
    /// Why this device: the auto policy's reason, or the request.
    pub reason: String,
    /// The GPU's phase timings, when it ran there.
    pub gpu_phases: Option<Phases>,
}

/// The k most informative rows of `pool` under `job`, exactly (see
/// [`mod@crate::select`]), on `device`. Every device returns the same
/// selection.
///
/// ```
/// use alpool::{Device, InputForm, Job, Pool, ScoreSpec, Strategy};
/// # fn main() -> alpool::Result<()> {
/// // d1 = (0.9, 0.09, 0.01), d2 = (0.2, 0.5, 0.3): every strategy prefers d2.
/// let probs = [0.9f32, 0.09, 0.01, 0.2, 0.5, 0.3];
/// let pool = Pool::from_f32(&probs, 3)?; // borrowed, not copied
/// let job = Job::new(ScoreSpec::new(Strategy::Margin), InputForm::probs(), 1);
/// let sel = alpool::select(&pool, &job, Device::Auto)?;
/// assert_eq!(sel.indices(), [1]);
/// assert!((sel.entries[0].score - 0.2).abs() < 1e-7);
/// # Ok(()) }
/// ```
pub fn select(pool: &Pool, job: &Job, device: Device) -> Result<Selection> {
    let run = Run {
        device,
        ..Run::default()
    };
    Ok(select_with(pool, job, &run)?.selection)
}

/// [`select`] with an adapter, progress, and the detail of where it ran.
pub fn select_with(pool: &Pool, job: &Job, run: &Run) -> Result<Outcome> {
    // float64 pools have no GPU path; `auto` keeps them on the CPU.
    let device = match run.device {
        Device::Auto if pool.has_f64() => Device::Cpu,
        d => d,
    };
    let (gpu, reason) = choose_device(device, run.adapter.as_deref(), pool.data_bytes())?;
    let backend = gpu.as_ref().map_or(Backend::Cpu, Backend::Gpu);
    let (selection, gpu_phases) = select_on(backend, pool, job, run.progress)?;
    Ok(Outcome {
        selection,
        adapter: gpu.map(|g| g.adapter.name.clone()),
        reason,
        gpu_phases,
    })
}

/// [`select`] on a device already opened.
pub fn select_on(
    backend: Backend,
    pool: &Pool,
    job: &Job,
    progress: &dyn Progress,
) -> Result<(Selection, Option<Phases>)> {
    match backend {
        Backend::Cpu => Ok((backend::cpu::select(pool, job, progress)?, None)),
        Backend::Gpu(g) => gpu::select(g, pool, job, progress).map(|(s, p)| (s, Some(p))),
    }
}

/// The canonical score of every row, in row order (excluded rows included).
/// For pools too large to hold N f64 in memory, stream them with
/// [`backend::cpu::score_all`].
pub fn score(pool: &Pool, job: &Job) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(pool.rows() as usize);
    backend::cpu::score_all(pool, job, &Silent, &mut |s| {
        out.extend_from_slice(s);
        Ok(())
    })?;
    Ok(out)
}

/// Whether a hardware GPU could be present: on Linux every GPU driver
/// exposes a render node (`/dev/dri/renderD*`) or NVIDIA's `/dev/nvidia*`.
/// Elsewhere, assume it could.
fn gpu_device_nodes() -> bool {
    if !cfg!(target_os = "linux") {
        return true;
    }
    let has = |dir: &str, prefix: &str| {
        std::fs::read_dir(dir).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with(prefix))
        })
    };
    has("/dev/dri", "renderD") || has("/dev", "nvidia")
}

/// Opens the GPU that `device` asks for, or says why the CPU runs: the auto
/// policy takes a hardware GPU for pools of [`AUTO_GPU_BYTES`] and more,
/// never a CPU-emulated adapter unless named, and falls back to the CPU
/// when no adapter opens. An explicit `Device::Gpu` fails instead.
pub fn choose_device(
    device: Device,
    adapter: Option<&str>,
    pool_bytes: u64,
) -> Result<(Option<Gpu>, String)> {
    match device {
        Device::Cpu => Ok((None, "using the CPU (--device cpu)".into())),
        Device::Gpu => {
            let g = Gpu::new(adapter)?;
            let why = format!(
                "using the GPU {} ({}, {})",
                g.adapter.name, g.adapter.backend, g.adapter.device_type
            );
            Ok((Some(g), why))
        }
        Device::Auto => {
            if pool_bytes < AUTO_GPU_BYTES && adapter.is_none() {
                return Ok((
                    None,
                    format!(
                        "using the CPU: the pool ({} MiB) is below the {} MiB where a GPU gains",
                        pool_bytes >> 20,
                        AUTO_GPU_BYTES >> 20
                    ),
                ));
            }
            // Probing builds a wgpu instance (tens of milliseconds with a
            // software Vulkan driver installed, and megabytes): skipped
            // where no GPU device node exists, and done once per process.
            if adapter.is_none() && !gpu_device_nodes() {
                return Ok((
                    None,
                    "using the CPU: this machine has no GPU device (/dev/dri/renderD*, /dev/nvidia*)"
                        .into(),
                ));
            }
            static HARDWARE: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
            let hardware = HARDWARE.get_or_init(|| {
                gpu::list_adapters()
                    .into_iter()
                    .find(|a| !a.is_cpu)
                    .map(|a| a.name)
            });
            if adapter.is_none() && hardware.is_none() {
                return Ok((
                    None,
                    "using the CPU: no hardware GPU adapter was found".into(),
                ));
            }
            match Gpu::new(adapter) {
                Ok(g) if g.adapter.is_cpu && adapter.is_none() => Ok((
                    None,
                    format!(
                        "using the CPU: the only adapter, {}, is itself a CPU",
                        g.adapter.name
                    ),
                )),
                Ok(g) => {
                    let why = format!("using the GPU {} ({})", g.adapter.name, g.adapter.backend);
                    Ok((Some(g), why))
                }
                Err(e) => Ok((None, format!("using the CPU: {e}"))),
            }
        }
    }
}
