//! `nmflow._nmflow`: the extension module of the Python package. It hands
//! a file name or NumPy arrays (read in place) to `nmflow::embed`, runs the
//! fit on a thread of its own with the interpreter released, forwards the
//! fit's events to a Python callback and Ctrl-C to the fit, and raises the
//! fit's errors as the matching Python exceptions. The estimator and the
//! scanpy-style tool are written in Python on top of it (`nmflow/`).

use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use nmflow::embed::rows::{CsrRows, Dense, DenseRows, Indices, Values};
use nmflow::embed::{
    self, AttrValue, Control, Error, Event, Factorization, LOADINGS_NOTE, Matrix, ProjectOptions,
};
use nmflow_core::{Normalize, PassKind, RowSource, Solver};
use numpy::{IntoPyArray, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::exceptions::{
    PyFileNotFoundError, PyKeyboardInterrupt, PyMemoryError, PyOSError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// How often the waiting thread looks for Ctrl-C while a fit runs.
const SIGNAL_POLL: Duration = Duration::from_millis(100);

/// The matrix a call reads: a file, a dense array or the parts of a CSR
/// matrix, as the Python layer hands them over.
#[derive(FromPyObject)]
enum Input<'py> {
    /// `FILE` or `FILE:/dataset`.
    File(String),
    /// A 2-D float32 array (any strides).
    DenseF32(PyReadonlyArray2<'py, f32>),
    /// A 2-D float64 array (any strides).
    DenseF64(PyReadonlyArray2<'py, f64>),
    /// `(data, indices, indptr, (n_rows, n_cols))`.
    Csr(CsrParts<'py>),
}

#[derive(FromPyObject)]
struct CsrParts<'py>(CsrData<'py>, CsrIndex<'py>, CsrIndex<'py>, (usize, usize));

#[derive(FromPyObject)]
enum CsrData<'py> {
    F32(PyReadonlyArray1<'py, f32>),
    F64(PyReadonlyArray1<'py, f64>),
}

#[derive(FromPyObject)]
enum CsrIndex<'py> {
    I32(PyReadonlyArray1<'py, i32>),
    I64(PyReadonlyArray1<'py, i64>),
}

fn index<'a>(i: &'a CsrIndex<'_>) -> PyResult<Indices<'a>> {
    Ok(match i {
        CsrIndex::I32(a) => Indices::I32(slice(a)?),
        CsrIndex::I64(a) => Indices::I64(slice(a)?),
    })
}

fn slice<'a, T: numpy::Element>(a: &'a PyReadonlyArray1<'_, T>) -> PyResult<&'a [T]> {
    a.as_slice()
        .map_err(|_| PyValueError::new_err("the CSR parts must be contiguous 1-D arrays"))
}

impl Input<'_> {
    /// The matrix for `embed`: rows that borrow the arrays this input
    /// holds (valid while `self` lives).
    fn matrix(&self) -> PyResult<Matrix> {
        let source: Box<dyn RowSource + Send + '_> = match self {
            Input::File(spec) => return Ok(Matrix::File(spec.clone())),
            Input::DenseF32(a) => Box::new(DenseRows::new(Dense::F32(a.as_array()))),
            Input::DenseF64(a) => Box::new(DenseRows::new(Dense::F64(a.as_array()))),
            Input::Csr(CsrParts(data, indices, indptr, shape)) => {
                let data = match data {
                    CsrData::F32(a) => Values::F32(slice(a)?),
                    CsrData::F64(a) => Values::F64(slice(a)?),
                };
                let rows = CsrRows::new(data, index(indices)?, index(indptr)?, *shape)
                    .map_err(|e| PyValueError::new_err(e.to_string()))?;
                Box::new(rows)
            }
        };
        Ok(Matrix::Rows {
            // SAFETY: the arrays are borrowed (read-only, so NumPy refuses
            // writes through them) by `self`, which the calling function
            // holds until the fit it hands this matrix to has returned.
            source: unsafe { embed::borrowed_rows(source) },
            name: "the array".into(),
        })
    }
}

fn to_py_err(e: Error) -> PyErr {
    match e {
        Error::Usage(m) | Error::Data(m) => PyValueError::new_err(m),
        Error::NotFound(m) => PyFileNotFoundError::new_err(m),
        Error::Memory(m) => PyMemoryError::new_err(m),
        Error::Stopped => PyKeyboardInterrupt::new_err("the fit was interrupted"),
        Error::Io(m) => PyOSError::new_err(m),
    }
}

/// Runs `work` on a thread of its own with the interpreter released; on
/// this thread, hands its events to `on_event` and watches for Ctrl-C,
/// which stops the work. An exception of `on_event` also stops it, and is
/// raised once the work has stopped.
fn run_released<T: Send>(
    py: Python<'_>,
    on_event: Option<&Bound<'_, PyAny>>,
    work: impl FnOnce(&Control) -> Result<T, Error> + Send,
) -> PyResult<T> {
    let (sender, receiver) = mpsc::channel::<(usize, Event)>();
    let control = Control {
        events: Some(sender),
        ..Control::default()
    };
    let stop = control.stop.clone();
    let callback = on_event.map(|c| c.clone().unbind());
    let (result, raised) = py.detach(move || {
        let mut raised: Option<PyErr> = None;
        let result = std::thread::scope(|scope| {
            let worker = scope.spawn(move || work(&control));
            loop {
                match receiver.recv_timeout(SIGNAL_POLL) {
                    Ok((run, event)) => {
                        if let Some(callback) = &callback
                            && raised.is_none()
                        {
                            Python::attach(|py| {
                                if let Err(e) = forward(py, callback, run, event) {
                                    raised = Some(e);
                                    stop.store(true, Ordering::Relaxed);
                                }
                            });
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
                if raised.is_none() {
                    Python::attach(|py| {
                        if let Err(e) = py.check_signals() {
                            raised = Some(e);
                            stop.store(true, Ordering::Relaxed);
                        }
                    });
                }
            }
            worker.join()
        });
        (result, raised)
    });
    let result = match result {
        Ok(result) => result,
        Err(_) => return Err(PyOSError::new_err("the fit's thread panicked")),
    };
    match (result, raised) {
        (_, Some(e)) => Err(e),
        (Ok(value), None) => Ok(value),
        (Err(e), None) => Err(to_py_err(e)),
    }
}

/// Calls `callback(kind, run, done, total, rel_error)`: kind "block" (rows
/// done of a pass) or "iteration" (iteration number and its error).
fn forward(py: Python<'_>, callback: &Py<PyAny>, run: usize, event: Event) -> PyResult<()> {
    match event {
        Event::Block {
            kind,
            rows_done,
            n_rows,
        } => {
            let kind = match kind {
                PassKind::Prepare => "prepare",
                PassKind::Iterate => "block",
            };
            callback.call1(py, (kind, run, rows_done, n_rows, f64::NAN))?;
        }
        Event::Iteration {
            iteration,
            rel_error,
            ..
        } => {
            callback.call1(py, ("iteration", run, iteration, 0usize, rel_error))?;
        }
    }
    Ok(())
}

fn factorization_dict<'py>(py: Python<'py>, f: Factorization) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("W", f.w.into_pyarray(py))?;
    d.set_item("H", f.h.into_pyarray(py))?;
    d.set_item("H_scaled", f.h_scaled.into_pyarray(py))?;
    d.set_item("col_scale", f.col_scale.into_pyarray(py))?;
    d.set_item("rel_error", f.rel_error.into_pyarray(py))?;
    d.set_item("converged", f.converged)?;
    d.set_item("seed", f.seed)?;
    d.set_item("restart_rel_errors", f.restart_rel_errors.into_pyarray(py))?;
    d.set_item("clusters", f.clusters.into_pyarray(py))?;
    d.set_item("block_rows", f.block_rows)?;
    d.set_item("normalize", f.normalize.as_str())?;
    d.set_item("iteration_seconds", f.iteration_seconds.into_pyarray(py))?;
    let params = PyDict::new(py);
    for (name, value) in f.params {
        match value {
            AttrValue::Int(v) => params.set_item(name, v)?,
            AttrValue::Float(v) => params.set_item(name, v)?,
            AttrValue::Str(v) => params.set_item(name, v)?,
        }
    }
    d.set_item("params", params)?;
    d.set_item("sample_rows", f.sample_rows.into_pyarray(py))?;
    d.set_item("sample_pca", f.sample_pca.into_pyarray(py))?;
    d.set_item(
        "sample_pca_variance_ratio",
        f.sample_pca_variance_ratio.into_pyarray(py),
    )?;
    Ok(d)
}

/// fit(matrix, options, on_event=None) -> dict
///
/// Factorizes `matrix` as `nmflow fit MATRIX OPTIONS -o RESULT.h5` does.
/// `matrix`: a file name (`FILE` or `FILE:/dataset`), a 2-D float32 or
/// float64 array, or `(data, indices, indptr, (n_rows, n_cols))` of a CSR
/// matrix; arrays are read in place. `options`: the command's option words
/// (`["-k", "12", "--seed", "0"]`). Returns W, H (the data's units),
/// H_scaled, col_scale, rel_error, converged, seed, restart_rel_errors,
/// clusters, block_rows and normalize.
#[pyfunction]
#[pyo3(signature = (matrix, options, on_event=None))]
fn fit<'py>(
    py: Python<'py>,
    matrix: Input<'py>,
    options: Vec<String>,
    on_event: Option<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let rows = matrix.matrix()?;
    let f = run_released(py, on_event.as_ref(), move |control| {
        embed::fit(&options, rows, control)
    })?;
    drop(matrix);
    factorization_dict(py, f)
}

/// project(matrix, h_scaled, col_scale, normalize, solver, max_iter, tol,
/// on_event=None, input_options=[]) -> (W, rel_error)
///
/// Solves W for the rows of `matrix` with H fixed, as `nmflow transform`
/// does: `h_scaled` and `col_scale` are a fit's, `normalize` its per-row
/// normalisation ("none", "cp10k-log1p", "log1p"), `solver` "hals" or "mu";
/// `input_options` choose a file's matrix (`["--layer", "counts"]`).
#[pyfunction]
#[pyo3(signature = (matrix, h_scaled, col_scale, normalize, solver, max_iter, tol, on_event=None, input_options=Vec::new()))]
#[allow(clippy::too_many_arguments)]
fn project<'py>(
    py: Python<'py>,
    matrix: Input<'py>,
    h_scaled: PyReadonlyArray2<'py, f32>,
    col_scale: PyReadonlyArray1<'py, f32>,
    normalize: &str,
    solver: &str,
    max_iter: usize,
    tol: f64,
    on_event: Option<Bound<'py, PyAny>>,
    input_options: Vec<String>,
) -> PyResult<(Bound<'py, PyAny>, f64)> {
    let normalize = match normalize {
        "none" => Normalize::None,
        "cp10k-log1p" => Normalize::Cp10kLog1p,
        "log1p" => Normalize::Log1p,
        other => {
            return Err(PyValueError::new_err(format!(
                "normalize must be none, cp10k-log1p or log1p, not {other}"
            )));
        }
    };
    let solver = match solver {
        "hals" => Solver::Hals,
        "mu" => Solver::Mu,
        other => {
            return Err(PyValueError::new_err(format!(
                "the projection's solver must be hals or mu, not {other}"
            )));
        }
    };
    let options = ProjectOptions {
        h_scaled: h_scaled.as_array().to_owned(),
        col_scale: slice(&col_scale)?.to_vec(),
        normalize,
        solver,
        max_sweeps: max_iter,
        tol,
    };
    let rows = matrix.matrix()?;
    let (w, err) = run_released(py, on_event.as_ref(), move |control| {
        embed::project(rows, &input_options, options, control)
    })?;
    drop(matrix);
    Ok((w.into_pyarray(py).into_any(), err))
}

/// shape(path, input_options=[]) -> (n_rows, n_cols)
///
/// The shape of the matrix `nmflow fit PATH` reads, from the file's
/// structure.
#[pyfunction]
#[pyo3(signature = (path, input_options=Vec::new()))]
fn shape(path: &str, input_options: Vec<String>) -> PyResult<(usize, usize)> {
    embed::shape(path, &input_options).map_err(to_py_err)
}

/// main(args) -> int
///
/// Runs the command `nmflow ARGS` in this process (for a child process of
/// the interpreter: the command prints and handles signals as the binary
/// does) and returns its exit code.
#[pyfunction]
fn main(py: Python<'_>, args: Vec<String>) -> u8 {
    py.detach(|| nmflow::run(std::iter::once("nmflow".to_owned()).chain(args)))
}

/// suggest_k(ks, best_rel_error, spectra_stability) -> (k or None, rule or None)
///
/// The k `nmflow sweep` suggests, and its rule in words.
#[pyfunction]
fn suggest_k(
    ks: Vec<usize>,
    best_rel_error: Vec<f64>,
    spectra_stability: Vec<f64>,
) -> (Option<usize>, Option<String>) {
    match nmflow_report::suggest_k(&ks, &best_rel_error, &spectra_stability) {
        Some((k, rule)) => (Some(k), Some(rule)),
        None => (None, None),
    }
}

/// nmflow's engine, for the `nmflow` Python package.
#[pymodule]
fn _nmflow(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(fit, m)?)?;
    m.add_function(wrap_pyfunction!(project, m)?)?;
    m.add_function(wrap_pyfunction!(main, m)?)?;
    m.add_function(wrap_pyfunction!(shape, m)?)?;
    m.add_function(wrap_pyfunction!(suggest_k, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("LOADINGS_NOTE", LOADINGS_NOTE)?;
    Ok(())
}
