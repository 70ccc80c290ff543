//! Without the `gpu` feature: a resident pool that can never be built (its
//! constructor takes a [`Gpu`], which cannot exist in this build).

use super::{Terms, Update};
use crate::backend::gpu::Gpu;
use crate::error::Result;
use crate::pool::Pool;

/// What a selection reads beside the embeddings (as in the GPU build;
/// never read in this one).
#[allow(dead_code)]
pub(crate) enum Side<'a> {
    Nothing,
    Badge(&'a Pool<'a>, &'a [[f32; 4]]),
    Igs(&'a [f32]),
}

/// Never constructed in this build.
pub(crate) struct Resident<'g> {
    never: std::convert::Infallible,
    _gpu: std::marker::PhantomData<&'g Gpu>,
}

impl<'g> Resident<'g> {
    pub fn new(
        gpu: &'g Gpu,
        _emb: Option<&Pool>,
        _side: Side,
        _mind: &[f32],
        _max_centres: usize,
    ) -> Result<Resident<'g>> {
        gpu.never()
    }

    pub fn add_centre(&self, _at: usize, _row: u64) {
        match self.never {}
    }

    pub fn set_target(&self, _at: usize, _target: f64) {
        match self.never {}
    }

    pub fn update_all(&self, _kind: Update, _count: usize, _t: &Terms) -> Result<Vec<u64>> {
        match self.never {}
    }

    pub fn update(
        &self,
        _kind: Update,
        _first: usize,
        _count: usize,
        _t: &Terms,
    ) -> Result<Vec<u64>> {
        match self.never {}
    }
}
