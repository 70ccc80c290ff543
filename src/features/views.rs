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
use crate::pool::npy::{self, DType};
use crate::pool::{Pool, ReadPath, SampleLayout, Samples};

/// Rows predicted at a time.
const BLOCK: usize = 8192;

/// What the second view holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Space {
    /// The model's last hidden layer (the batch strategies' embedding).
    Hidden,
    /// The features as the model reads them, scaled by its scaler (greedy
    /// sampling's feature space, as Wu, Lin and Huang measure it).
    Features,
}

/// The two files, in a temporary folder removed on drop.
pub(crate) struct ModelViews {
    _dir: tempfile::TempDir,
    probs: PathBuf,
    embeddings: PathBuf,
}

impl ModelViews {
    /// Runs `model` over every row of `features`, writing its outputs and
    /// its embeddings in `space` under a new temporary folder in `dir`.
    pub fn write(
        model: &Mlp,
        features: &FeaturePool,
        (dir, space): (&Path, Space),
        progress: &dyn Progress,
    ) -> Result<ModelViews> {
        let tmp = tempfile::Builder::new()
            .prefix(".alpool-views-")
            .tempdir_in(dir)
            .map_err(|e| Error::io(dir, e))?;
        let n = features.rows() as usize;
        let views = [
            (tmp.path().join("probs.npy"), model.classes()),
            (
                tmp.path().join("embeddings.npy"),
                match space {
                    Space::Hidden => model.embed_width(),
                    Space::Features => features.dim(),
                },
            ),
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
            let second = match (space, model.scaler()) {
                (Space::Hidden, _) => model.embed_rows(&x, &all)?,
                (Space::Features, None) => x.clone(),
                (Space::Features, Some(s)) => {
                    let mut scaled = x.clone();
                    s.apply_in_place(&mut scaled);
                    scaled
                }
            };
            let parts = [model.predict_proba(&x)?, second];
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

/// The T samples of every row that a committee (or MC dropout) makes of a
/// feature pool, for BatchBALD, which reads all of them each pick: written
/// block by block, row-major (N x T x C, `--layout ntc`), to a temporary
/// .npy that the engine then reads memory-mapped. Memory stays one block;
/// the file goes when the view is dropped.
pub(crate) struct SampleView {
    _dir: tempfile::TempDir,
    path: PathBuf,
    first_row: u64,
}

impl SampleView {
    /// Runs the members over every row of `features`, writing their
    /// samples under a new temporary folder in `dir`.
    pub fn write(
        members: super::Members,
        features: &FeaturePool,
        dir: &Path,
        progress: &dyn Progress,
    ) -> Result<SampleView> {
        let tmp = tempfile::Builder::new()
            .prefix(".alpool-samples-")
            .tempdir_in(dir)
            .map_err(|e| Error::io(dir, e))?;
        let path = tmp.path().join("samples.npy");
        let io = |e| Error::io(&path, e);
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).map_err(io)?);
        let t = members.len();
        let mut header = None;
        let mut rows_out = Vec::new();
        features.committee_blocks(members, progress, &mut |_, rows, samples| {
            let c = samples.len() / (t * rows).max(1);
            if header.is_none() {
                let shape = [features.rows() as usize, t, c];
                f.write_all(&npy::encode_header(DType::F32, &shape))
                    .map_err(io)?;
                header = Some(c);
            }
            // The block is sample-major (T x rows x C): each row's T
            // samples are gathered next to each other.
            rows_out.clear();
            for r in 0..rows {
                for s in 0..t {
                    let at = (s * rows + r) * c;
                    rows_out.extend_from_slice(&samples[at..at + c]);
                }
            }
            f.write_all(bytemuck::cast_slice(&rows_out)).map_err(io)
        })?;
        f.into_inner().map_err(|e| io(e.into_error()))?;
        Ok(SampleView {
            _dir: tmp,
            path,
            first_row: features.first_row(),
        })
    }

    /// The samples, memory-mapped, at the pool's global rows.
    pub fn open(&self) -> Result<Samples<'static>> {
        let s = Samples::open(&[&self.path], SampleLayout::Ntc, ReadPath::Map)?;
        Ok(s.with_row_offset(self.first_row))
    }
}
