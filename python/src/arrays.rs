//! Arrays as the engine reads them: float32, float16 and float64 borrowed
//! in place when C-contiguous and in native byte order, 2-D (probabilities,
//! embeddings) or 3-D (samples). Anything else is refused with its shape,
//! dtype and order; the Python layer has already turned DLPack and
//! `__array__` objects into NumPy arrays, and made the one stated copy (a
//! column-major frame) there.

use alpool::Pool;
use numpy::{PyArrayDescrMethods, PyReadonlyArrayDyn, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyAny;

use crate::release::to_py;

/// A borrowed array.
pub enum Array<'py> {
    F32(PyReadonlyArrayDyn<'py, f32>),
    F16(PyReadonlyArrayDyn<'py, half::f16>),
    F64(PyReadonlyArrayDyn<'py, f64>),
}

fn describe(a: &Bound<'_, PyUntypedArray>) -> String {
    let order = if a.is_c_contiguous() {
        "C-contiguous"
    } else if a.is_fortran_contiguous() {
        "Fortran-ordered"
    } else {
        "non-contiguous"
    };
    format!(
        "shape {:?}, dtype {}, {order}",
        a.shape(),
        a.dtype().str().map(|s| s.to_string()).unwrap_or_default()
    )
}

impl<'py> Array<'py> {
    /// `obj` (the argument `name`, `what` its axes: "N rows x C classes")
    /// borrowed as a `ndim`-D array, or the reason it cannot be.
    pub fn borrow(obj: &Bound<'py, PyAny>, name: &str, ndim: usize, what: &str) -> PyResult<Self> {
        let Ok(arr) = obj.cast::<PyUntypedArray>() else {
            return Err(PyTypeError::new_err(format!(
                "{name} must be a NumPy array ({what}), or expose DLPack or __array__; got {}",
                obj.get_type().name()?
            )));
        };
        let seen = describe(arr);
        if arr.ndim() != ndim {
            return Err(PyValueError::new_err(format!(
                "{name} must be {ndim}-D ({what}); got {seen}"
            )));
        }
        let dtype = arr.dtype();
        let size = dtype.itemsize();
        if dtype.kind() != b'f' || !matches!(size, 2 | 4 | 8) {
            return Err(PyTypeError::new_err(format!(
                "{name} must be float32, float16 or float64; got {seen}"
            )));
        }
        if !arr.is_c_contiguous() {
            return Err(PyValueError::new_err(format!(
                "{name} must be C-contiguous (row-major) so it can be read in place; got {seen} (use numpy.ascontiguousarray)"
            )));
        }
        if !dtype.is_native_byteorder().unwrap_or(true) {
            return Err(PyTypeError::new_err(format!(
                "{name} must be in native byte order; got {seen}"
            )));
        }
        Ok(match size {
            4 => Array::F32(obj.extract()?),
            2 => Array::F16(obj.extract()?),
            _ => Array::F64(obj.extract()?),
        })
    }

    /// Whether it holds float16 (a looser default row-sum tolerance).
    pub fn is_f16(&self) -> bool {
        matches!(self, Array::F16(_))
    }

    /// Its shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            Array::F32(a) => a.shape(),
            Array::F16(a) => a.shape(),
            Array::F64(a) => a.shape(),
        }
    }

    /// Its rows: the first axis.
    pub fn rows(&self) -> u64 {
        self.shape()[0] as u64
    }

    /// The array's values as a pool of rows `width` values wide (the last
    /// axis, or more), named `name` in messages; borrowed.
    pub fn pool(&self, name: &str, width: usize) -> PyResult<Pool<'_>> {
        let r = match self {
            Array::F32(a) => Pool::from_f32(a.as_slice()?, width),
            Array::F16(a) => Pool::from_f16(a.as_slice()?, width),
            Array::F64(a) => Pool::from_f64(a.as_slice()?, width),
        };
        r.map(|p| p.named(name)).map_err(to_py)
    }
}
