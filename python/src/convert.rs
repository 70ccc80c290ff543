//! Python values as the library's types: a strategy, a device, a log base
//! and an input form from their names, k from an int or None, and the
//! exclusions from indices or a file. Each names the argument and the
//! values it accepts when it refuses one.

use std::path::PathBuf;

use alpool::query::RegressionInput;
use alpool::{Device, Exclusions, LogBase, Query, StochasticKind};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyAny, PyList};

use crate::release::to_py;

/// A strategy (row-wise or batch-aware) by its name.
pub struct QueryArg(pub Query);

impl<'a, 'py> FromPyObject<'a, 'py> for QueryArg {
    type Error = PyErr;
    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        let name: String = obj.extract()?;
        Query::from_name(&name).map(QueryArg).ok_or_else(|| {
            let names: Vec<&str> = Query::all().into_iter().map(Query::name).collect();
            PyValueError::new_err(format!(
                "unknown strategy {name:?}; expected one of {}",
                names.join(", ")
            ))
        })
    }
}

/// "auto", "cpu" or "gpu".
pub struct DeviceArg(pub Device);

impl<'a, 'py> FromPyObject<'a, 'py> for DeviceArg {
    type Error = PyErr;
    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        let name: String = obj.extract()?;
        name.parse().map(DeviceArg).map_err(|_| {
            PyValueError::new_err(format!(
                "device must be \"auto\", \"cpu\" or \"gpu\", got {name:?}"
            ))
        })
    }
}

/// "2", "e" or "10".
pub struct LogBaseArg(pub LogBase);

impl<'a, 'py> FromPyObject<'a, 'py> for LogBaseArg {
    type Error = PyErr;
    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        let name: String = obj.extract()?;
        name.parse().map(LogBaseArg).map_err(|_| {
            PyValueError::new_err(format!(
                "log_base must be \"2\", \"e\" or \"10\", got {name:?}"
            ))
        })
    }
}

/// "power", "softmax" or "softrank".
pub struct StochasticArg(pub StochasticKind);

impl<'a, 'py> FromPyObject<'a, 'py> for StochasticArg {
    type Error = PyErr;
    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        let name: String = obj.extract()?;
        name.parse().map(StochasticArg).map_err(|_| {
            PyValueError::new_err(format!(
                "stochastic must be \"power\", \"softmax\", \"softrank\" or None, got {name:?}"
            ))
        })
    }
}

/// What the probability rows hold: "probs" or "logits".
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum InputArg {
    Probs,
    Logits,
    Multilabel,
    MultilabelLogits,
    Regression(RegressionInput),
}

impl<'a, 'py> FromPyObject<'a, 'py> for InputArg {
    type Error = PyErr;
    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        match obj.extract::<String>()?.as_str() {
            "probs" => Ok(InputArg::Probs),
            "logits" => Ok(InputArg::Logits),
            "multilabel" => Ok(InputArg::Multilabel),
            "multilabel-logits" | "multilabel_logits" => Ok(InputArg::MultilabelLogits),
            other => regression_input(other).map(InputArg::Regression).ok_or_else(|| {
                PyValueError::new_err(format!(
                    "input must be \"probs\", \"logits\", \"multilabel\", \"multilabel-logits\", \"regression\", \"regression-mean-std\" or \"regression-samples\", got {other:?}"
                ))
            }),
        }
    }
}

/// The regression input form named `name` (`_` reads as `-`).
pub fn regression_input(name: &str) -> Option<RegressionInput> {
    let name = name.replace('_', "-");
    [
        RegressionInput::Predictions,
        RegressionInput::MeanStd,
        RegressionInput::Samples,
    ]
    .into_iter()
    .find(|r| r.name() == name)
}

/// k as Python gives it: `None` ranks every row.
pub fn k(k: Option<i64>) -> PyResult<usize> {
    match k {
        None => Ok(usize::MAX),
        Some(k) if k < 0 => Err(PyValueError::new_err(format!("k must be >= 0, got {k}"))),
        Some(k) => Ok(k as usize),
    }
}

/// Where the excluded rows may lie.
#[derive(Clone, Copy)]
pub enum Within {
    /// Rows of this pool: 0..rows, each checked.
    Pool(u64),
    /// Global rows of a bigger pool; those outside offset..offset + rows
    /// belong to other shards and are dropped.
    Shard { offset: u64, rows: u64 },
    /// Any global row (rows given by index).
    Anywhere,
}

/// Rows never to select: a sequence of row indices (or a 1-D integer
/// array), or the path of an exclusion file as the CLI reads it.
pub fn exclusions(obj: Option<&Bound<'_, PyAny>>, within: Within) -> PyResult<Exclusions> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(Exclusions::default());
    };
    let bound = match within {
        Within::Pool(rows) => rows,
        Within::Shard { .. } | Within::Anywhere => u64::MAX,
    };
    let all = if let Ok(path) = obj.extract::<PathBuf>()
        && !obj.is_instance_of::<PyList>()
    {
        Exclusions::read(&path, bound).map_err(to_py)?
    } else {
        Exclusions::new(indices(obj, bound)?)
    };
    Ok(match within {
        Within::Shard { offset, rows } => all.restrict(offset, rows),
        _ => all,
    })
}

fn indices(obj: &Bound<'_, PyAny>, rows: u64) -> PyResult<Vec<u64>> {
    let values: Vec<i64> = obj.extract().map_err(|_| {
        PyTypeError::new_err(format!(
            "exclude must be a sequence or 1-D array of integer row indices, or a file path; got {}",
            obj.get_type().name().map(|n| n.to_string()).unwrap_or_default()
        ))
    })?;
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            if v < 0 || v as u64 >= rows {
                let range = if rows == u64::MAX {
                    "a global row index (>= 0)".to_string()
                } else {
                    format!("a row of this pool (0..{rows})")
                };
                Err(PyValueError::new_err(format!(
                    "exclude[{i}] = {v} is not {range}"
                )))
            } else {
                Ok(v as u64)
            }
        })
        .collect()
}
