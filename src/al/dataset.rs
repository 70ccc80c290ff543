//! Labeled datasets for simulation: features and integer labels from .npy
//! (float32, float16, float64, or uint8 images scaled to [0, 1]) or from a
//! CSV with a label column, plus the embedded digits set.
//!
//! A .npy feature file is memory-mapped, not loaded: rows are converted to
//! float32 a tile at a time as the learner reads them, so a uint8 image set
//! never exists as a float32 copy four times its size, and the page cache
//! holds the one copy of the file every process shares. Only the rows a
//! round needs at once (the labeled set, the test set, one tile per thread)
//! are float32 in memory.

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::features::FeaturePool;
use crate::learner::fused::FillRows;
use crate::learner::{ColumnStats, Mlp, Scale, Scaler};
use crate::pool::npy::{self, DType};

/// N rows of D features with labels 0..classes.
#[derive(Clone)]
pub struct Dataset {
    features: Features,
    /// Labels, 0..classes.
    pub y: Vec<usize>,
    /// Features per row.
    pub dim: usize,
    /// Classes.
    pub classes: usize,
    /// What reports call it.
    pub name: String,
    /// The features were uint8 pixels, already mapped to [0, 1]: `auto`
    /// feature scaling leaves them so.
    pub unit_images: bool,
}

/// Where the features live: parsed into memory (a CSV, the embedded set,
/// a caller's matrix) or mapped from a checked .npy file.
#[derive(Clone)]
enum Features {
    Owned(Arc<Vec<f32>>),
    Mapped(Arc<FeaturePool>),
}

impl std::fmt::Debug for Dataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataset")
            .field("name", &self.name)
            .field("rows", &self.rows())
            .field("dim", &self.dim)
            .field("classes", &self.classes)
            .field("mapped", &self.is_mapped())
            .finish()
    }
}

impl Dataset {
    /// A dataset of the row-major matrix `x` (`dim` wide) and its labels;
    /// classes are 0..=max(y).
    pub fn new(x: Vec<f32>, y: Vec<usize>, dim: usize, name: impl Into<String>) -> Result<Dataset> {
        if dim == 0 || x.len() != y.len() * dim {
            return Err(Error::Config(format!(
                "{} feature values for {} labels of {dim} features each",
                x.len(),
                y.len()
            )));
        }
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            return Err(Error::Config(format!(
                "row {}, column {}: the feature is {}",
                i / dim,
                i % dim,
                x[i]
            )));
        }
        Ok(Dataset {
            classes: y.iter().max().map_or(0, |m| m + 1),
            features: Features::Owned(Arc::new(x)),
            y,
            dim,
            name: name.into(),
            unit_images: false,
        })
    }

    /// This dataset's labels with other features (a transformed copy of
    /// them, say): the same shape is required.
    pub fn with_features(&self, x: Vec<f32>) -> Result<Dataset> {
        Ok(Dataset {
            unit_images: self.unit_images,
            ..Dataset::new(x, self.y.clone(), self.dim, self.name.clone())?
        })
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.y.len()
    }

    /// Whether the features are read from a mapped file, not held.
    pub fn is_mapped(&self) -> bool {
        matches!(self.features, Features::Mapped(_))
    }

    /// Row `i`'s features (in place where the stored values are float32).
    pub fn row(&self, i: usize) -> Cow<'_, [f32]> {
        match &self.features {
            Features::Owned(x) => Cow::Borrowed(&x[i * self.dim..(i + 1) * self.dim]),
            Features::Mapped(p) => p.row(i),
        }
    }

    /// Every row's features as one row-major matrix: borrowed when they
    /// are held, a float32 copy of a mapped file otherwise (training on
    /// every row needs them all at once; nothing else in the loop does).
    pub fn features(&self) -> Cow<'_, [f32]> {
        match &self.features {
            Features::Owned(x) => Cow::Borrowed(x),
            Features::Mapped(_) => {
                let all: Vec<usize> = (0..self.rows()).collect();
                Cow::Owned(self.gather(&all))
            }
        }
    }

    /// The features of `idx`, gathered row-major.
    pub fn gather(&self, idx: &[usize]) -> Vec<f32> {
        let mut out = Vec::with_capacity(idx.len() * self.dim);
        self.gather_into(idx, &mut out);
        out
    }

    /// Appends the features of `idx` to `out`.
    fn gather_into(&self, idx: &[usize], out: &mut Vec<f32>) {
        match &self.features {
            Features::Owned(x) => {
                for &i in idx {
                    out.extend_from_slice(&x[i * self.dim..(i + 1) * self.dim]);
                }
            }
            Features::Mapped(p) => p.gather_into(idx, out),
        }
    }

    /// The labels of rows `idx`, in order.
    pub fn labels(&self, idx: &[usize]) -> Vec<usize> {
        idx.iter().map(|&i| self.y[i]).collect()
    }

    /// An error unless every listed row exists.
    fn check_rows(&self, rows: &[usize]) -> Result<()> {
        match rows.iter().find(|&&r| r >= self.rows()) {
            Some(&bad) => Err(Error::Config(format!(
                "row {bad} is past the end of {} ({} rows)",
                self.name,
                self.rows()
            ))),
            None => Ok(()),
        }
    }

    /// `model`'s class probabilities of the listed rows, in order: each
    /// tile of rows is gathered (and converted) by the thread that runs it
    /// through the model, so no copy of the rows exists; the same bits as
    /// [`Mlp::predict_proba_rows`] over a matrix of the features.
    pub fn predict_proba_rows(&self, model: &Mlp, rows: &[usize]) -> Result<Vec<f32>> {
        self.filled_rows(
            rows,
            model.classes(),
            |out: &mut [f32], fill: &FillRows<'_, Error>| model.predict_proba_filled(out, fill),
        )
    }

    /// `model`'s most probable class of each listed row (ties to the lower
    /// class), as [`Mlp::predict`] over their features.
    pub fn predict(&self, model: &Mlp, rows: &[usize]) -> Result<Vec<usize>> {
        let p = self.predict_proba_rows(model, rows)?;
        Ok(p.chunks_exact(model.classes())
            .map(crate::learner::argmax)
            .collect())
    }

    /// `model`'s embeddings of the listed rows ([`Mlp::embed_rows`]),
    /// gathered a tile at a time like [`Dataset::predict_proba_rows`].
    pub fn embed_rows(&self, model: &Mlp, rows: &[usize]) -> Result<Vec<f32>> {
        self.filled_rows(
            rows,
            model.embed_width(),
            |out: &mut [f32], fill: &FillRows<'_, Error>| model.embed_filled(out, fill),
        )
    }

    /// `width` outputs for each listed row from `run`, which is handed the
    /// output and a fill that gathers each tile's rows.
    pub(crate) fn filled_rows<F>(&self, rows: &[usize], width: usize, run: F) -> Result<Vec<f32>>
    where
        F: Fn(&mut [f32], &FillRows<'_, Error>) -> Result<()>,
    {
        self.check_rows(rows)?;
        let mut out = vec![0f32; rows.len() * width];
        run(&mut out, &|first, count, buf| {
            self.gather_into(&rows[first..first + count], buf);
            Ok(None)
        })?;
        Ok(out)
    }

    /// Per-column statistics of every row, or of the listed rows, in
    /// blocks: the same numbers as [`ColumnStats::of_matrix`] of the
    /// features, without them all in memory.
    pub fn column_stats(&self, rows: Option<&[usize]>) -> ColumnStats {
        let n = rows.map_or(self.rows(), <[usize]>::len);
        ColumnStats::of_blocks(n, self.dim, &|a, e, buf| {
            match (rows, &self.features) {
                (None, Features::Owned(x)) => return Some(&x[a * self.dim..e * self.dim]),
                (Some(rows), _) => self.gather_into(&rows[a..e], buf),
                (None, Features::Mapped(_)) => {
                    let list: Vec<usize> = (a..e).collect();
                    self.gather_into(&list, buf)
                }
            }
            None
        })
    }

    /// The learner's input transform for `scale`, fitted on `rows` (the
    /// pool the model will score), or `None` when no scaling applies.
    pub fn scaler(&self, scale: Scale, rows: Option<&[usize]>) -> Result<Option<Scaler>> {
        scale
            .resolve(self.unit_images)
            .map(|kind| Scaler::from_stats(kind, &self.column_stats(rows)))
            .transpose()
    }

    /// The 8x8 digits set (scikit-learn's `load_digits`, BSD-3-Clause; see
    /// data/digits/LICENSE.md), embedded in the binary.
    pub fn digits() -> Dataset {
        const X: &[u8] = include_bytes!("../../data/digits/X.npy");
        const Y: &[u8] = include_bytes!("../../data/digits/y.npy");
        from_npy_bytes(Path::new("<embedded digits>"), X, Y, "digits")
            .expect("the embedded digits set is valid")
    }

    /// Features and labels from two .npy files. The features are mapped
    /// and checked (every value finite), not loaded.
    pub fn from_npy(features: &Path, labels: &Path) -> Result<Dataset> {
        let pool = FeaturePool::open(&[features])?;
        pool.check_all_finite()?;
        let y = std::fs::read(labels).map_err(|e| Error::io(labels, e))?;
        let y = labels_from_npy(labels, &y, pool.rows() as usize, features)?;
        let name = crate::al::measured::dataset_name(features);
        Ok(Dataset {
            classes: y.iter().max().map_or(0, |m| m + 1),
            y,
            dim: pool.dim(),
            name,
            unit_images: pool.unit_images(),
            features: Features::Mapped(Arc::new(pool.for_random_access())),
        })
    }

    /// A CSV with a header line; `label` names the label column (default:
    /// a column named "label", else the last). Labels may be integers or
    /// names (sorted names become 0..K).
    pub fn from_csv(path: &Path, label: Option<&str>) -> Result<Dataset> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let (_, header) = lines.next().ok_or_else(|| Error::BadLine {
            path: path.into(),
            line: 1,
            reason: "the file is empty".into(),
        })?;
        let names: Vec<&str> = header.split(',').map(str::trim).collect();
        let col = match label {
            Some(l) => names
                .iter()
                .position(|n| *n == l)
                .ok_or_else(|| Error::BadLine {
                    path: path.into(),
                    line: 1,
                    reason: format!("no column named {l:?} in the header"),
                })?,
            None => names
                .iter()
                .position(|n| *n == "label")
                .unwrap_or(names.len() - 1),
        };
        let dim = names.len() - 1;
        let mut x = Vec::new();
        let mut raw_labels = Vec::new();
        for (i, line) in lines {
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let bad = |reason: String| Error::BadLine {
                path: path.into(),
                line: i as u64 + 1,
                reason,
            };
            if fields.len() != names.len() {
                return Err(bad(format!(
                    "{} fields, the header has {}",
                    fields.len(),
                    names.len()
                )));
            }
            for (j, f) in fields.iter().enumerate() {
                if j == col {
                    raw_labels.push(f.to_string());
                } else {
                    let v: f32 = f.parse().map_err(|_| {
                        bad(format!("column {:?}: {f:?} is not a number", names[j]))
                    })?;
                    if !v.is_finite() {
                        return Err(bad(format!("column {:?} is {v}", names[j])));
                    }
                    x.push(v);
                }
            }
        }
        let y = if raw_labels.iter().all(|l| l.parse::<usize>().is_ok()) {
            raw_labels.iter().map(|l| l.parse().unwrap_or(0)).collect()
        } else {
            let mut names: Vec<&String> = raw_labels.iter().collect();
            names.sort();
            names.dedup();
            raw_labels
                .iter()
                .map(|l| names.binary_search(&l).unwrap_or(0))
                .collect::<Vec<usize>>()
        };
        let classes = y.iter().max().map_or(0, |m| m + 1);
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Dataset {
            features: Features::Owned(Arc::new(x)),
            y,
            dim,
            classes,
            name,
            unit_images: false,
        })
    }
}

/// A dataset from the bytes of two .npy files held in memory (the embedded
/// set).
fn from_npy_bytes(path: &Path, xb: &[u8], yb: &[u8], name: &str) -> Result<Dataset> {
    let hx = npy::parse_header(
        path,
        xb,
        &[DType::F32, DType::F16, DType::F64, DType::U8],
        "features must be float32, float16, float64 or uint8",
    )?;
    let [n, dim] = hx.shape[..] else {
        return Err(Error::WrongRank {
            path: path.into(),
            shape: hx.shape,
            expected: 2,
        });
    };
    let data = &xb[hx.data_offset..];
    let want = n * dim * hx.dtype.size();
    if data.len() < want {
        return Err(Error::Truncated {
            path: path.into(),
            expected: want as u64,
            actual: data.len() as u64,
        });
    }
    let y = labels_from_npy(path, yb, n, path)?;
    Ok(Dataset {
        unit_images: hx.dtype == DType::U8,
        ..Dataset::new(npy::features_f32(hx.dtype, &data[..want]), y, dim, name)?
    })
}

/// `n` integer labels from the bytes of .npy file `path`, one per row of
/// the feature file `features`, each in 0..2^20.
fn labels_from_npy(path: &Path, bytes: &[u8], n: usize, features: &Path) -> Result<Vec<usize>> {
    let h = npy::parse_header(
        path,
        bytes,
        &[DType::I64, DType::I32, DType::U8, DType::U32, DType::U64],
        "labels must be a 1-D integer array",
    )?;
    if h.shape.len() != 1 || h.shape[0] != n {
        return Err(Error::Config(format!(
            "{}: {} labels for {} feature rows in {}",
            path.display(),
            h.shape.iter().product::<usize>(),
            n,
            features.display()
        )));
    }
    let size = h.dtype.size();
    let data = &bytes[h.data_offset..];
    if data.len() < n * size {
        return Err(Error::Truncated {
            path: path.into(),
            expected: (n * size) as u64,
            actual: data.len() as u64,
        });
    }
    let mut y = Vec::with_capacity(n);
    for (i, b) in data[..n * size].chunks_exact(size).enumerate() {
        let v = npy::int_at(h.dtype, b);
        if !(0..1 << 20).contains(&v) {
            return Err(Error::BadElement {
                path: path.into(),
                element: i as u64,
                reason: format!("label {v} is not in 0..2^20"),
            });
        }
        y.push(v as usize);
    }
    Ok(y)
}
