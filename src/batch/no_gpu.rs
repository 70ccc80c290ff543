//! Without the `gpu` feature: a resident pool that can never be built (its
//! constructor takes a [`Gpu`], which cannot exist in this build).

use super::{Terms, Update};
use crate::backend::gpu::Gpu;
use crate::error::Result;
use crate::pool::Pool;

/// Never constructed in this build.
pub(crate) struct Resident<'g> {
    never: std::convert::Infallible,
    _gpu: std::marker::PhantomData<&'g Gpu>,
}

impl<'g> Resident<'g> {
    pub fn new(
        gpu: &'g Gpu,
        _emb: &Pool,
        _badge: Option<(&Pool, &[[f32; 4]])>,
        _mind: &[f32],
        _max_centres: usize,
    ) -> Result<Resident<'g>> {
        gpu.never()
    }

    pub fn add_centre(&self, _at: usize, _row: u64) {
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
