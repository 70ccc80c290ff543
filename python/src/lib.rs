//! The Python face of alpool: the native module behind the `alpool`
//! package, on the library's one door (`alpool::select`). The package's
//! Python layer (`alpool/__init__.py`) turns what users hold (NumPy
//! arrays, anything with DLPack or `__array__`, paths) into two
//! dictionaries, the inputs and the options; this module reads them once
//! ([`request`]), borrows the arrays in place ([`arrays`]), and runs the
//! door with the GIL released ([`release`]).

mod api;
mod arrays;
mod compare;
mod convert;
mod release;
mod request;

use pyo3::prelude::*;

#[pymodule]
fn _alpool(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(api::select, m)?)?;
    m.add_function(wrap_pyfunction!(compare::protocol, m)?)?;
    m.add_function(wrap_pyfunction!(compare::restart_rows, m)?)?;
    m.add_function(wrap_pyfunction!(compare::compare_mlp, m)?)?;
    m.add_function(wrap_pyfunction!(compare::method, m)?)?;
    m.add_function(wrap_pyfunction!(compare::summarize, m)?)?;
    m.add_function(wrap_pyfunction!(api::select_part, m)?)?;
    m.add_function(wrap_pyfunction!(api::score, m)?)?;
    m.add_function(wrap_pyfunction!(api::merge, m)?)?;
    m.add("AlpoolError", m.py().get_type::<release::AlpoolError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    let names = |q: &[alpool::Query]| q.iter().map(|q| q.name()).collect::<Vec<_>>();
    let of = |keep: fn(&alpool::Query) -> bool| {
        let all: Vec<alpool::Query> = alpool::Query::all().into_iter().filter(keep).collect();
        names(&all)
    };
    m.add(
        "ROW_STRATEGIES",
        of(|q| matches!(q, alpool::Query::Score(_))),
    )?;
    m.add(
        "BATCH_STRATEGIES",
        // Keyed on what each reads: BatchBALD, a batch strategy over
        // samples, is listed with the disagreement strategies.
        of(|q| {
            matches!(q, alpool::Query::Batch(_))
                && q.needs().embeddings == alpool::query::Use::Required
        }),
    )?;
    m.add(
        "COLD_START_STRATEGIES",
        of(|q| matches!(q, alpool::Query::Cold(_))),
    )?;
    m.add(
        "MULTILABEL_STRATEGIES",
        of(|q| matches!(q, alpool::Query::Multi(_))),
    )?;
    m.add(
        "DISAGREEMENT_STRATEGIES",
        of(|q| q.needs().samples == alpool::query::Use::Required && !q.is_regression()),
    )?;
    m.add(
        "REGRESSION_STRATEGIES",
        of(|q| matches!(q, alpool::Query::Regress(_))),
    )?;
    Ok(())
}
