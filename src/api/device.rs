//! Where a selection runs: one pure policy over (what was asked, how many
//! bytes the query reads, whether its probabilities are float64, which
//! adapters exist), then the opening of the device it chose.

use std::fmt;

use crate::backend::gpu::{self, Gpu};
use crate::backend::{AdapterSummary, Backend};
use crate::error::{Error, Result};
use crate::query::{Query, Stochastic};

/// Inputs smaller than this gain nothing from a GPU: the upload costs more
/// than the CPU's whole scan.
pub const AUTO_GPU_BYTES: u64 = 256 << 20;

/// Where the scoring runs, as asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Device {
    /// A hardware GPU when one exists and the input is large enough to
    /// gain (≥ [`AUTO_GPU_BYTES`]), otherwise the CPU.
    #[default]
    Auto,
    /// The rayon CPU path.
    Cpu,
    /// The wgpu path; an error if no adapter opens.
    Gpu,
}

impl Device {
    /// As the CLI and the Python package spell it.
    pub fn name(self) -> &'static str {
        match self {
            Device::Auto => "auto",
            Device::Cpu => "cpu",
            Device::Gpu => "gpu",
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Device {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Device::Auto),
            "cpu" => Ok(Device::Cpu),
            "gpu" => Ok(Device::Gpu),
            _ => Err(format!(
                "unknown device {s:?}; choose \"auto\", \"cpu\" or \"gpu\""
            )),
        }
    }
}

/// What the policy is told about one selection.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The device asked for.
    pub device: Device,
    /// An adapter named by the user (a case-insensitive part of its name).
    pub adapter: Option<&'a str>,
    /// Bytes of input the query reads.
    pub bytes: u64,
    /// Whether the probabilities are float64, which WGSL cannot hold.
    pub float64: bool,
    /// The query: some have no GPU engine yet.
    pub query: Query,
    /// The stochastic batch it draws, if any.
    pub stochastic: Option<Stochastic>,
    /// Whether the probabilities come from a model in the run (features
    /// and a model, a committee, MC dropout) rather than from files.
    pub model_made: bool,
}

/// The policy's decision.
#[derive(Clone, Debug, PartialEq)]
pub enum Choice {
    /// Run on the CPU, for this reason.
    Cpu(String),
    /// Open this adapter (as listed) and run there, for this reason.
    Gpu(AdapterSummary, String),
}

/// Why a query has no GPU engine, or `None` where it has one. The
/// disagreement strategies run there over given samples (float64,
/// renormalized and logit ones as their canonical values rounded to
/// float32) and over the samples a model makes of features (MC-dropout
/// passes, a committee's members, run there too), the representative strategies over embeddings (density
/// alone, or weighting a row-wise strategy's given probabilities), `std`
/// and EMCM over given predictions (the samples' kernel), `gsx`, `gsy` and
/// `igs` (core-set's engine), BatchBALD over any samples (it uploads
/// their canonical values). Power and softmax batches run wherever their strategy's ranking
/// does in one pass (given rows, or a model's outputs of features for a
/// row-wise or disagreement strategy); softrank, which ranks the whole pool first, and a
/// batch from a multi-label model's outputs, selected block by block, run
/// on the CPU.
fn no_gpu_engine(req: &Request, what: &str) -> Option<String> {
    let yet = || Some(format!("{what} has no GPU path yet"));
    let blockwise = req.model_made && !matches!(req.query, Query::Score(_) | Query::Disagree(_));
    match (req.query, req.stochastic) {
        (_, Some(st)) if !st.per_row() || blockwise => yet(),
        // Beyond it 1/β overflows the kernel's f32 arithmetic.
        (_, Some(st)) if st.beta < MIN_GPU_BETA => {
            Some(format!("{what} has no GPU path below beta {MIN_GPU_BETA}"))
        }
        _ => match_query(req, what),
    }
}

/// The smallest β a stochastic batch takes on the GPU.
pub const MIN_GPU_BETA: f64 = 1e-30;

/// [`no_gpu_engine`] by the query alone.
fn match_query(req: &Request, what: &str) -> Option<String> {
    use crate::query::{ColdStart, Regression};
    match req.query {
        Query::Cold(ColdStart::Maxherding) => Some(format!("{what} has no GPU path yet")),
        Query::Regress(Regression::Std | Regression::Emcm) if req.model_made => Some(format!(
            "{what} runs on the GPU over given predictions only (not ones a model makes in the run)"
        )),
        _ => None,
    }
}

/// The device policy, written once for every caller. `adapters` lists
/// what exists; it is called only when the decision depends on it (a
/// small input under `auto` never probes).
///
/// - `cpu` runs on the CPU.
/// - `gpu` runs on the named adapter, else the first hardware one, else
///   any; float64 probabilities and a machine without adapters are errors.
/// - `auto` keeps float64 probabilities and inputs below
///   [`AUTO_GPU_BYTES`] on the CPU (unless an adapter is named, which asks
///   for the GPU at any size), takes the named adapter when it exists,
///   else the first hardware GPU, and never an adapter that is itself a
///   CPU (lavapipe, llvmpipe) unless named.
pub fn decide(req: &Request, adapters: impl FnOnce() -> Vec<AdapterSummary>) -> Result<Choice> {
    let cpu = |why: String| Ok(Choice::Cpu(format!("using the CPU: {why}")));
    let what = if let Some(st) = req.stochastic {
        format!("a stochastic batch ({}) of {}", st.kind, req.query)
    } else {
        req.query.to_string()
    };
    let no_engine = no_gpu_engine(req, &what);
    match (req.device, no_engine) {
        (Device::Cpu, _) => return Ok(Choice::Cpu("using the CPU (--device cpu)".into())),
        (Device::Gpu, Some(why)) => {
            return Err(Error::Config(format!(
                "{why}: use --device cpu or auto (device=\"cpu\" or \"auto\" in Python)"
            )));
        }
        (Device::Auto, Some(why)) => return cpu(why),
        _ => {}
    }
    if req.float64 {
        return float64_stays(req.device, &what);
    }
    match req.device {
        Device::Auto if req.bytes < AUTO_GPU_BYTES && req.adapter.is_none() => {
            return cpu(format!(
                "the input ({} MiB) is below the {} MiB where a GPU gains",
                req.bytes >> 20,
                AUTO_GPU_BYTES >> 20
            ));
        }
        _ => {}
    }
    let all = adapters();
    let found = || {
        let names: Vec<String> = all
            .iter()
            .map(|a| format!("{:?} ({})", a.name, a.backend))
            .collect();
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    };
    let why = |a: &AdapterSummary| {
        format!(
            "using the GPU {} ({}, {})",
            a.name, a.backend, a.device_type
        )
    };
    if let Some(name) = req.adapter {
        let want = name.to_lowercase();
        return match all.iter().find(|a| a.name.to_lowercase().contains(&want)) {
            Some(a) => Ok(Choice::Gpu(a.clone(), why(a))),
            None if req.device == Device::Auto => {
                cpu(format!("no adapter matches {name:?}; found: {}", found()))
            }
            None => Err(Error::Gpu(format!(
                "no adapter matches {name:?}; found: {}",
                found()
            ))),
        };
    }
    let hardware = all.iter().find(|a| !a.is_cpu);
    match (req.device, hardware, all.first()) {
        (_, Some(a), _) => Ok(Choice::Gpu(a.clone(), why(a))),
        (Device::Gpu, None, Some(a)) => Ok(Choice::Gpu(a.clone(), why(a))),
        (Device::Gpu, None, None) => Err(Error::Gpu(
            "no GPU adapter found; install a Vulkan driver (e.g. Debian's mesa-vulkan-drivers for the software one) or use --device cpu".into(),
        )),
        (_, None, None) => cpu("no GPU adapter was found".into()),
        (_, None, Some(a)) => cpu(format!(
            "the only adapter, {}, is itself a CPU (name it with --adapter to use it)",
            a.name
        )),
    }
}

/// Float64 input that a kernel would read as stored: refused under `gpu`,
/// the CPU under `auto`.
fn float64_stays(device: Device, what: &str) -> Result<Choice> {
    let input = format!("float64 input to {what}");
    match device {
        Device::Gpu => Err(Error::Config(format!(
            "{input} is scored on the CPU (WGSL has no float64): use --device cpu or auto (device=\"cpu\" or \"auto\" in Python), or store it as float32"
        ))),
        _ => Ok(Choice::Cpu(format!(
            "using the CPU: {input} has no GPU path (WGSL has no float64)"
        ))),
    }
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

/// The adapters this machine has, probed once per process. Probing builds
/// a wgpu instance (tens of milliseconds with a software Vulkan driver
/// installed, and megabytes), so under `auto` with no adapter named it is
/// skipped where no GPU device node exists: only a CPU adapter could be
/// found, and `auto` would not take it.
fn probe(req: &Request) -> Vec<AdapterSummary> {
    if req.device == Device::Auto && req.adapter.is_none() && !gpu_device_nodes() {
        return Vec::new();
    }
    static FOUND: std::sync::OnceLock<Vec<AdapterSummary>> = std::sync::OnceLock::new();
    FOUND.get_or_init(gpu::list_adapters).clone()
}

/// A device opened for one selection: an owned GPU, a borrowed one (the
/// caller's, kept across rounds), or the CPU.
pub(crate) struct Opened<'g> {
    owned: Option<Gpu>,
    borrowed: Option<&'g Gpu>,
    /// Why this device.
    pub reason: String,
}

impl<'g> Opened<'g> {
    /// The backend to run on.
    pub fn backend(&self) -> Backend<'_> {
        match (&self.owned, self.borrowed) {
            (Some(g), _) => Backend::Gpu(g),
            (None, Some(g)) => Backend::Gpu(g),
            (None, None) => Backend::Cpu,
        }
    }

    /// The GPU adapter's name, or `None` on the CPU.
    pub fn adapter(&self) -> Option<String> {
        match self.backend() {
            Backend::Gpu(g) => Some(g.adapter.name.clone()),
            Backend::Cpu => None,
        }
    }
}

/// Decides (see [`decide`]) and opens the device. With `opened`, a GPU the
/// caller holds, the policy is asked about that adapter alone and reuses
/// it. Under `auto`, a GPU that fails to open leaves the work on the CPU,
/// with the failure as the reason; under `gpu` it is an error.
pub(crate) fn open<'g>(req: &Request, opened: Option<&'g Gpu>) -> Result<Opened<'g>> {
    let choice = match opened {
        Some(g) => decide(req, || vec![g.adapter.clone()])?,
        None => decide(req, || probe(req))?,
    };
    let (adapter, reason) = match choice {
        Choice::Cpu(reason) => {
            return Ok(Opened {
                owned: None,
                borrowed: None,
                reason,
            });
        }
        Choice::Gpu(adapter, reason) => (adapter, reason),
    };
    if let Some(g) = opened {
        return Ok(Opened {
            owned: None,
            borrowed: Some(g),
            reason,
        });
    }
    match Gpu::open(&adapter) {
        Ok(g) => Ok(Opened {
            owned: Some(g),
            borrowed: None,
            reason,
        }),
        Err(e) if req.device == Device::Auto => Ok(Opened {
            owned: None,
            borrowed: None,
            reason: format!("using the CPU: {e}"),
        }),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::StochasticKind;

    fn adapter(name: &str, backend: &str, is_cpu: bool) -> AdapterSummary {
        AdapterSummary {
            name: name.into(),
            backend: backend.into(),
            device_type: if is_cpu { "Cpu" } else { "DiscreteGpu" }.into(),
            driver: String::new(),
            max_storage_buffer_binding_size: 1 << 27,
            max_buffer_size: 1 << 31,
            max_compute_workgroups_per_dimension: 65535,
            is_cpu,
        }
    }

    fn lavapipe() -> Vec<AdapterSummary> {
        vec![adapter("llvmpipe (LLVM 15.0.6, 256 bits)", "Vulkan", true)]
    }

    fn h100_and_lavapipe() -> Vec<AdapterSummary> {
        let mut v = lavapipe();
        v.push(adapter("NVIDIA H100 80GB HBM3", "Vulkan", false));
        v
    }

    fn req(device: Device, adapter: Option<&str>, bytes: u64, float64: bool) -> Request<'_> {
        Request {
            device,
            adapter,
            bytes,
            float64,
            query: Query::Score(crate::query::Strategy::Margin),
            stochastic: None,
            model_made: false,
        }
    }

    fn on_gpu(c: &Choice) -> Option<&str> {
        match c {
            Choice::Gpu(a, _) => Some(&a.name),
            Choice::Cpu(_) => None,
        }
    }

    const BIG: u64 = AUTO_GPU_BYTES;
    const SMALL: u64 = AUTO_GPU_BYTES - 1;

    #[test]
    fn auto_takes_a_hardware_gpu_for_large_inputs_only() {
        let d = |bytes, list: fn() -> Vec<AdapterSummary>| {
            decide(&req(Device::Auto, None, bytes, false), list).unwrap()
        };
        assert_eq!(
            on_gpu(&d(BIG, h100_and_lavapipe)),
            Some("NVIDIA H100 80GB HBM3")
        );
        assert_eq!(on_gpu(&d(SMALL, h100_and_lavapipe)), None);
        // lavapipe alone is a CPU: auto never takes it unnamed.
        let c = d(BIG, lavapipe);
        assert_eq!(on_gpu(&c), None);
        assert!(
            matches!(&c, Choice::Cpu(r) if r.contains("itself a CPU")),
            "{c:?}"
        );
        assert!(matches!(d(BIG, Vec::new), Choice::Cpu(r) if r.contains("no GPU adapter")));
    }

    #[test]
    fn small_inputs_under_auto_never_probe() {
        let c = decide(&req(Device::Auto, None, 1 << 20, false), || {
            panic!("probed for a 1 MiB input")
        })
        .unwrap();
        assert!(matches!(c, Choice::Cpu(r) if r.contains("below")));
    }

    #[test]
    fn float64_stays_on_the_cpu_under_auto_with_any_adapter() {
        for list in [lavapipe as fn() -> Vec<AdapterSummary>, h100_and_lavapipe] {
            for adapter in [None, Some("llvmpipe"), Some("nvidia")] {
                let c = decide(&req(Device::Auto, adapter, u64::MAX, true), list).unwrap();
                assert!(
                    matches!(&c, Choice::Cpu(r) if r.contains("float64")),
                    "{c:?}"
                );
            }
        }
        let e = decide(&req(Device::Gpu, None, 1, true), h100_and_lavapipe).unwrap_err();
        assert!(e.to_string().contains("--device cpu or auto"), "{e}");
    }

    #[test]
    fn a_named_adapter_is_taken_at_any_size() {
        for device in [Device::Auto, Device::Gpu] {
            let c = decide(&req(device, Some("LLVMPIPE"), 10, false), h100_and_lavapipe).unwrap();
            assert_eq!(on_gpu(&c), Some("llvmpipe (LLVM 15.0.6, 256 bits)"));
        }
        // A name that matches nothing: auto falls back, gpu fails; both list
        // what exists.
        let c = decide(&req(Device::Auto, Some("radeon"), BIG, false), lavapipe).unwrap();
        assert!(matches!(&c, Choice::Cpu(r) if r.contains("\"radeon\"") && r.contains("llvmpipe")));
        let e = decide(&req(Device::Gpu, Some("radeon"), BIG, false), lavapipe).unwrap_err();
        assert!(e.to_string().contains("found: \"llvmpipe"), "{e}");
    }

    #[test]
    fn gpu_prefers_hardware_then_takes_any_then_fails() {
        let d = |list: fn() -> Vec<AdapterSummary>| decide(&req(Device::Gpu, None, 1, false), list);
        assert_eq!(
            on_gpu(&d(h100_and_lavapipe).unwrap()),
            Some("NVIDIA H100 80GB HBM3")
        );
        assert_eq!(
            on_gpu(&d(lavapipe).unwrap()),
            Some("llvmpipe (LLVM 15.0.6, 256 bits)")
        );
        assert!(
            d(Vec::new)
                .unwrap_err()
                .to_string()
                .contains("no GPU adapter found")
        );
    }

    #[test]
    fn regression_spread_runs_there_over_given_predictions_only() {
        // Not over a model's in the run; igs and gsy run there too.
        use crate::query::Regression;
        let regress = |r, model_made| Request {
            query: Query::Regress(r),
            model_made,
            ..req(Device::Auto, Some("nvidia"), BIG, false)
        };
        let c = decide(&regress(Regression::Std, false), h100_and_lavapipe).unwrap();
        assert_eq!(on_gpu(&c), Some("NVIDIA H100 80GB HBM3"));
        let c = decide(&regress(Regression::Std, true), || panic!("probed")).unwrap();
        assert!(
            matches!(&c, Choice::Cpu(r) if r.contains("std runs on the GPU over given predictions only")),
            "{c:?}"
        );
        let c = decide(&regress(Regression::Igs, false), h100_and_lavapipe).unwrap();
        assert_eq!(on_gpu(&c), Some("NVIDIA H100 80GB HBM3"));
        let c = decide(&regress(Regression::Gsy, false), h100_and_lavapipe).unwrap();
        assert_eq!(on_gpu(&c), Some("NVIDIA H100 80GB HBM3"));
        let c = decide(&regress(Regression::Emcm, false), h100_and_lavapipe).unwrap();
        assert_eq!(on_gpu(&c), Some("NVIDIA H100 80GB HBM3"));
        let c = decide(&regress(Regression::Emcm, true), || panic!("probed")).unwrap();
        assert!(
            matches!(&c, Choice::Cpu(r) if r.contains("emcm runs on the GPU over given predictions only")),
            "{c:?}"
        );
    }

    #[test]
    fn queries_without_a_gpu_engine_stay_on_the_cpu() {
        use crate::query::Disagreement::Bald;
        // BatchBALD uploads every row's canonical probabilities, so any
        // form of them (renormalized, float64, made by a model) goes.
        let batchbald = |device, model_made: bool| Request {
            query: Query::Batch(crate::query::BatchStrategy::BatchBald),
            model_made,
            ..req(device, Some("nvidia"), BIG, false)
        };
        for model_made in [false, true] {
            let c = decide(&batchbald(Device::Auto, model_made), h100_and_lavapipe).unwrap();
            assert_eq!(on_gpu(&c), Some("NVIDIA H100 80GB HBM3"), "{c:?}");
        }
        // The disagreement strategies run there over given samples and over
        // the samples a model makes (MC-dropout passes, a committee).
        for model_made in [false, true] {
            let asked = Request {
                query: Query::Disagree(Bald),
                model_made,
                ..req(Device::Auto, Some("nvidia"), BIG, false)
            };
            let c = decide(&asked, h100_and_lavapipe).unwrap();
            assert_eq!(on_gpu(&c), Some("NVIDIA H100 80GB HBM3"), "{c:?}");
        }
        // Power and softmax batches over given rows or a row-wise model's
        // outputs run there; softrank, a batch from a multi-label model's
        // outputs and a β too small for f32 do not.
        let drawn = |device, kind, beta, model_made| Request {
            stochastic: Some(Stochastic::new(kind, beta)),
            model_made,
            ..req(device, Some("nvidia"), BIG, false)
        };
        let multi = |device, kind| Request {
            query: Query::Multi(crate::query::MultiLabel::MeanEntropy),
            ..drawn(device, kind, 1.0, true)
        };
        for kind in [StochasticKind::Power, StochasticKind::Softmax] {
            for model_made in [false, true] {
                let c = decide(
                    &drawn(Device::Gpu, kind, 1.0, model_made),
                    h100_and_lavapipe,
                );
                assert_eq!(on_gpu(&c.unwrap()), Some("NVIDIA H100 80GB HBM3"));
            }
            let c = decide(&multi(Device::Auto, kind), || panic!("probed")).unwrap();
            assert!(
                matches!(&c, Choice::Cpu(r) if r.contains(&format!("a stochastic batch ({kind}) of mean-entropy"))),
                "{c:?}"
            );
            assert!(decide(&drawn(Device::Gpu, kind, 1e-31, false), h100_and_lavapipe).is_err());
        }
        let softrank = drawn(Device::Auto, StochasticKind::Softrank, 1.0, false);
        let c = decide(&softrank, || panic!("probed")).unwrap();
        assert!(
            matches!(&c, Choice::Cpu(r) if r.contains("(softrank) of margin has no GPU path")),
            "{c:?}"
        );
        let softrank = drawn(Device::Gpu, StochasticKind::Softrank, 1.0, false);
        assert!(decide(&softrank, h100_and_lavapipe).is_err());
        // Every representative strategy runs there, density weighting a
        // row-wise strategy too (the request names density's query).
        use crate::query::ColdStart;
        let cold = |s| Request {
            query: Query::Cold(s),
            ..req(Device::Gpu, Some("nvidia"), BIG, false)
        };
        for s in [
            ColdStart::Typiclust,
            ColdStart::Kmeans,
            ColdStart::Probcover,
            ColdStart::Density,
        ] {
            let c = decide(&cold(s), h100_and_lavapipe).unwrap();
            assert_eq!(on_gpu(&c), Some("NVIDIA H100 80GB HBM3"), "{s:?}");
        }
    }

    #[test]
    fn cpu_is_cpu_without_probing() {
        let c = decide(&req(Device::Cpu, Some("nvidia"), BIG, false), || {
            panic!("probed for --device cpu")
        })
        .unwrap();
        assert_eq!(c, Choice::Cpu("using the CPU (--device cpu)".into()));
    }
}
