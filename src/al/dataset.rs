//! Labeled datasets for simulation: features and integer labels from .npy
//! (float32, float16, float64, or uint8 images scaled to [0, 1]) or from a
//! CSV with a label column, plus the embedded digits set.

use std::path::Path;

use crate::error::{Error, Result};
use crate::learner::{Scale, Scaler};
use crate::pool::npy::{self, DType};

/// N rows of D features (row-major f32) with labels 0..classes.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Features, row-major.
    pub x: Vec<f32>,
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

impl Dataset {
    /// Rows.
    pub fn rows(&self) -> usize {
        self.y.len()
    }

    /// Row `i`'s features.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.x[i * self.dim..(i + 1) * self.dim]
    }

    /// The features of `idx`, gathered row-major.
    pub fn gather(&self, idx: &[usize]) -> Vec<f32> {
        let mut out = Vec::with_capacity(idx.len() * self.dim);
        for &i in idx {
            out.extend_from_slice(self.row(i));
        }
        out
    }

    /// The labels of rows `idx`, in order.
    pub fn labels(&self, idx: &[usize]) -> Vec<usize> {
        idx.iter().map(|&i| self.y[i]).collect()
    }

    /// The learner's input transform for `scale`, fitted on `rows` (the
    /// pool the model will score), or `None` when no scaling applies.
    pub fn scaler(&self, scale: Scale, rows: Option<&[usize]>) -> Result<Option<Scaler>> {
        scale
            .resolve(self.unit_images)
            .map(|kind| Scaler::fit(kind, &self.x, self.dim, rows))
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

    /// Features and labels from two .npy files.
    pub fn from_npy(features: &Path, labels: &Path) -> Result<Dataset> {
        let x = std::fs::read(features).map_err(|e| Error::io(features, e))?;
        let y = std::fs::read(labels).map_err(|e| Error::io(labels, e))?;
        let name = features
            .parent()
            .and_then(|p| p.file_name())
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "dataset".into());
        from_npy_bytes_paths(features, &x, labels, &y, &name)
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
            x,
            y,
            dim,
            classes,
            name,
            unit_images: false,
        })
    }
}

fn from_npy_bytes(path: &Path, x: &[u8], y: &[u8], name: &str) -> Result<Dataset> {
    from_npy_bytes_paths(path, x, path, y, name)
}

fn from_npy_bytes_paths(xp: &Path, xb: &[u8], yp: &Path, yb: &[u8], name: &str) -> Result<Dataset> {
    let hx = npy::parse_header(
        xp,
        xb,
        &[DType::F32, DType::F16, DType::F64, DType::U8],
        "features must be float32, float16, float64 or uint8",
    )?;
    let [n, dim] = hx.shape[..] else {
        return Err(Error::WrongRank {
            path: xp.into(),
            shape: hx.shape,
            expected: 2,
        });
    };
    let data = &xb[hx.data_offset..];
    let want = hx.data_bytes().unwrap_or(u64::MAX);
    if (data.len() as u64) < want {
        return Err(Error::Truncated {
            path: xp.into(),
            expected: want,
            actual: data.len() as u64,
        });
    }
    let x = npy::features_f32(hx.dtype, &data[..n * dim * hx.dtype.size()]);
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(Error::BadRow {
            path: xp.into(),
            row: (i / dim.max(1)) as u64,
            global: (i / dim.max(1)) as u64,
            problem: crate::score::RowProblem::NotFinite {
                col: i % dim.max(1),
                value: x[i].into(),
            },
        });
    }
    let hy = npy::parse_header(
        yp,
        yb,
        &[DType::I64, DType::I32, DType::U8, DType::U32, DType::U64],
        "labels must be a 1-D integer array",
    )?;
    if hy.shape.len() != 1 || hy.shape[0] != n {
        return Err(Error::Config(format!(
            "{}: {} labels for {} feature rows in {}",
            yp.display(),
            hy.shape.iter().product::<usize>(),
            n,
            xp.display()
        )));
    }
    let size = hy.dtype.size();
    let ydata = &yb[hy.data_offset..];
    if ydata.len() < n * size {
        return Err(Error::Truncated {
            path: yp.into(),
            expected: (n * size) as u64,
            actual: ydata.len() as u64,
        });
    }
    let mut y = Vec::with_capacity(n);
    for (i, b) in ydata[..n * size].chunks_exact(size).enumerate() {
        let v = npy::int_at(hy.dtype, b);
        if !(0..1 << 20).contains(&v) {
            return Err(Error::BadElement {
                path: yp.into(),
                element: i as u64,
                reason: format!("label {v} is not in 0..2^20"),
            });
        }
        y.push(v as usize);
    }
    let classes = y.iter().max().map_or(0, |m| m + 1);
    Ok(Dataset {
        x,
        y,
        dim,
        classes,
        name: name.into(),
        unit_images: hx.dtype == DType::U8,
    })
}
