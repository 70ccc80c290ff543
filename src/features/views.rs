//! A model's views of a feature pool, for the batch strategies: its
//! probabilities (N x C) and its last hidden layer (N x D), written block
//! by block to two temporary .npy files that the batch engine then reads
//! memory-mapped. Memory stays one block, whatever the pool's size; the
//! files go when the views are dropped.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::FeaturePool;
use crate::backend::Progress;
use crate::error::{Error, Result};
use crate::learner::Mlp;
use crate::pool::Pool;
use crate::pool::npy::{self, DType};

/// Rows predicted at a time.
const BLOCK: usize = 8192;

/// The two files, in a temporary folder removed on drop.
pub(crate) struct ModelViews {
    _dir: tempfile::TempDir,
    probs: PathBuf,
    embeddings: PathBuf,
}

impl ModelViews {
    /// Runs `model` over every row of `features`, writing both views under
    /// a new temporary folder in `dir`.
    pub fn write(
        model: &Mlp,
        features: &FeaturePool,
        dir: &Path,
        progress: &dyn Progress,
    ) -> Result<ModelViews> {
        let tmp = tempfile::Builder::new()
            .prefix(".alpool-views-")
            .tempdir_in(dir)
            .map_err(|e| Error::io(dir, e))?;
        let n = features.rows() as usize;
        let views = [
            (tmp.path().join("probs.npy"), model.classes()),
            (tmp.path().join("embeddings.npy"), model.embed_width()),
        ];
        let mut files = Vec::new();
        for (path, width) in &views {
            let f = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
            let mut f = std::io::BufWriter::new(f);
            f.write_all(&npy::encode_header(DType::F32, &[n, *width]))
                .map_err(|e| Error::io(path, e))?;
            files.push(f);
        }
        for start in (0..n).step_by(BLOCK) {
            if progress.cancelled() {
                return Err(Error::Cancelled);
            }
            let rows: Vec<usize> = (start..(start + BLOCK).min(n)).collect();
            let x = features.gather(&rows)?;
            let all: Vec<usize> = (0..rows.len()).collect();
            let parts = [model.predict_proba(&x)?, model.embed_rows(&x, &all)?];
            for ((f, (path, _)), part) in files.iter_mut().zip(&views).zip(&parts) {
                f.write_all(bytemuck::cast_slice(part))
                    .map_err(|e| Error::io(path, e))?;
            }
        }
        for (f, (path, _)) in files.into_iter().zip(&views) {
            f.into_inner()
                .map_err(|e| Error::io(path, e.into_error()))?;
        }
        let [(probs, _), (embeddings, _)] = views;
        Ok(ModelViews {
            _dir: tmp,
            probs,
            embeddings,
        })
    }

    /// The probabilities and the embeddings, memory-mapped.
    pub fn open(&self) -> Result<(Pool<'static>, Pool<'static>)> {
        Ok((
            Pool::open(&[&self.probs])?,
            Pool::open(&[&self.embeddings])?,
        ))
    }
}
