//! The GPU backend's names when alpool is built without the `gpu` feature
//! (no wgpu): [`Gpu::new`] fails with a clear error, and a [`Gpu`] can never
//! exist, so every GPU branch elsewhere is statically unreachable.

use std::convert::Infallible;

pub use super::{AdapterSummary, Phases};
use super::{Progress, RowJob};
use crate::error::{Error, Result};
use crate::pool::Pool;
use crate::select::Selection;

/// A GPU that cannot be opened in this build.
pub struct Gpu {
    /// Never read: there is no adapter.
    pub adapter: AdapterSummary,
    never: Infallible,
}

impl Gpu {
    /// Always an error: this build has no GPU backend.
    pub fn new(_name: Option<&str>) -> Result<Gpu> {
        Err(Error::Gpu(
            "this alpool was built without the `gpu` feature (cargo build --features gpu); use --device cpu".into(),
        ))
    }

    /// Always an error: this build has no GPU backend.
    pub fn open(_summary: &AdapterSummary) -> Result<Gpu> {
        Gpu::new(None)
    }

    /// Unreachable: no `Gpu` exists.
    pub fn never(&self) -> ! {
        match self.never {}
    }
}

/// No adapters in this build.
pub fn list_adapters() -> Vec<AdapterSummary> {
    Vec::new()
}

/// Unreachable: no `Gpu` exists.
pub(crate) fn select(
    gpu: &Gpu,
    _pool: &Pool,
    _job: &RowJob,
    _progress: &dyn Progress,
) -> Result<(Selection, Phases)> {
    gpu.never()
}

/// Unreachable: no `Gpu` exists.
pub(crate) fn select_multilabel(
    gpu: &Gpu,
    _pool: &Pool,
    _job: &crate::job::Job,
    _spec: &crate::score::multilabel::MultiSpec,
    _progress: &dyn Progress,
) -> Result<(Selection, Phases)> {
    gpu.never()
}
