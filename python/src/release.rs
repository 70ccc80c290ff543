//! Running the engine with the GIL released: the work runs as a job on the
//! engine's own thread pool (no thread is created per call), while the
//! calling thread wakes every 20 ms to let Python handle signals; Ctrl-C
//! asks the engine to stop at its next chunk, then raises
//! KeyboardInterrupt. Errors become Python exceptions with the library's
//! text.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use alpool::{Error, Progress};
use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;

pyo3::create_exception!(
    _alpool,
    AlpoolError,
    PyValueError,
    "A pool, a request or a file alpool cannot use; the message names it."
);

/// alpool's typed errors as Python exceptions with the same text: a
/// missing or unused input is a wrong call (TypeError), a missing file
/// FileNotFoundError, other I/O OSError, the rest AlpoolError.
pub fn to_py(e: Error) -> PyErr {
    match &e {
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            PyFileNotFoundError::new_err(e.to_string())
        }
        Error::Io { .. } => PyOSError::new_err(e.to_string()),
        Error::MissingInput { .. } | Error::UnusedInput { .. } => {
            PyTypeError::new_err(e.to_string())
        }
        _ => AlpoolError::new_err(e.to_string()),
    }
}

/// Stops the engine between chunks once set.
pub struct Cancel(AtomicBool);

impl Progress for Cancel {
    fn cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Runs `work` with the GIL released (see the module docs).
pub fn run_released<T: Send>(
    py: Python<'_>,
    work: impl FnOnce(&Cancel) -> alpool::Result<T> + Send,
) -> PyResult<T> {
    let cancel = Cancel(AtomicBool::new(false));
    let (tx, mut rx) = mpsc::channel();
    let cancel = &cancel;
    rayon::in_place_scope(|scope| {
        scope.spawn(move |_| {
            // The receiver outlives the scope; a send cannot fail.
            let _ = tx.send(work(cancel));
        });
        let mut interrupted: Option<PyErr> = None;
        loop {
            // The receiver is Send but not Sync: it goes into the released
            // section and comes back.
            let (got, back) = py.detach(move || (rx.recv_timeout(Duration::from_millis(20)), rx));
            rx = back;
            match got {
                Ok(result) => {
                    return match (interrupted, result) {
                        (Some(err), _) => Err(err),
                        (None, r) => r.map_err(to_py),
                    };
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if interrupted.is_none()
                        && let Err(err) = py.check_signals()
                    {
                        cancel.0.store(true, Ordering::Relaxed);
                        interrupted = Some(err);
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(AlpoolError::new_err(
                        "the selection job stopped unexpectedly",
                    ));
                }
            }
        }
    })
}
