//! nmflow inside another program (the Python package): a fit and a
//! projection through the command's own parameters and code path, on a
//! file or on rows the caller holds, handing back arrays instead of files.
//!
//! A fit is given the words of `nmflow fit`'s options (`-k 12 --seed 0`),
//! parsed by the same definitions, so its defaults, checks and messages are
//! the command's. It plans and runs as `nmflow fit -o RESULT.h5` does
//! (the command's `fit` module), so W and H equal that command's bit for bit on the
//! same input with the same block height. The caller follows it through
//! [`Control::events`] and stops it through [`Control::stop`], both usable
//! from another thread.

pub mod rows;

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;

use clap::Parser;
use ndarray::Array2;
pub use nmflow_core::Event;
use nmflow_core::{Normalize, Projection, RowBlock, RowSource, Solver, SourceError};
pub use nmflow_io::AttrValue;
pub use nmflow_io::names::LOADINGS_NOTE;

use crate::args::{Cli, Command, FitArgs};
use crate::fit::{Destination, Fitted, Planned};
use crate::session::{self, Input};

/// The matrix to factorize.
pub enum Matrix {
    /// A file `nmflow fit` reads (`FILE` or `FILE:/dataset`), streamed.
    File(String),
    /// Rows the caller holds, read in place, named `name` in messages.
    Rows {
        /// The rows.
        source: Box<dyn RowSource + Send>,
        /// A name for messages (`"the array"`).
        name: String,
    },
}

/// How the caller follows and stops a fit or a projection.
#[derive(Clone, Default)]
pub struct Control {
    /// Where every event goes, with the index of its run (restart).
    pub events: Option<Sender<(usize, Event)>>,
    /// Set to stop: the next block read fails with [`Error::Stopped`].
    pub stop: Arc<AtomicBool>,
}

/// Why a fit or projection did not finish, by what the caller should
/// make of it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad options (the command line's usage errors).
    #[error("{0}")]
    Usage(String),
    /// Bad data: negative or non-finite values, an empty or all-zero
    /// matrix, a malformed file or array.
    #[error("{0}")]
    Data(String),
    /// A file that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The memory budget cannot hold the plan.
    #[error("{0}")]
    Memory(String),
    /// [`Control::stop`] was set.
    #[error("stopped")]
    Stopped,
    /// Reading or writing failed otherwise.
    #[error("{0}")]
    Io(String),
}

/// What a fit hands back.
#[derive(Debug, Clone)]
pub struct Factorization {
    /// W, cells × k.
    pub w: Array2<f32>,
    /// H in the data's units (after `--normalize`, before the column
    /// scaling): X ≈ W·H.
    pub h: Array2<f32>,
    /// H in the scaled units the updates ran in.
    pub h_scaled: Array2<f32>,
    /// The divisor of every column.
    pub col_scale: Vec<f32>,
    /// The relative error after every iteration of the run kept.
    pub rel_error: Vec<f64>,
    /// Whether the stopping rule ended the run kept.
    pub converged: bool,
    /// The seed of the run kept.
    pub seed: u64,
    /// The final relative error of every restart.
    pub restart_rel_errors: Vec<f64>,
    /// The cluster of every cell (argmax of its row of W).
    pub clusters: Vec<u32>,
    /// The rows of every block (results depend on it in the last bits).
    pub block_rows: usize,
    /// The per-row normalisation applied.
    pub normalize: Normalize,
    /// Seconds of every iteration.
    pub iteration_seconds: Vec<f64>,
    /// Every parameter, as a result file's attributes (and an h5ad
    /// result's `uns['nmf']['params']`) hold them.
    pub params: Vec<(String, AttrValue)>,
    /// The rows sampled for the principal components.
    pub sample_rows: Vec<u64>,
    /// The sample's first principal components (rows × 2).
    pub sample_pca: Array2<f32>,
    /// The fraction of variance along each of them.
    pub sample_pca_variance_ratio: Vec<f64>,
}

/// Lets rows that borrow the caller's arrays be handed to [`fit`] or
/// [`project`] as [`Matrix::Rows`].
///
/// # Safety
/// Everything `source` borrows must stay alive and unchanged until the
/// [`fit`] or [`project`] it is handed to has returned; the source must
/// not be kept after that.
pub unsafe fn borrowed_rows<'a>(
    source: Box<dyn RowSource + Send + 'a>,
) -> Box<dyn RowSource + Send + 'static> {
    // SAFETY: only the lifetime changes; the caller keeps the borrow valid
    // for as long as the source is used (see above).
    unsafe { std::mem::transmute(source) }
}

/// A marker in the error chain: the caller stopped the fit.
#[derive(Debug, thiserror::Error)]
#[error("stopped by the caller")]
struct StoppedMarker;

/// Parses `options` as the options of `nmflow fit INPUT -o RESULT.h5`.
fn fit_args(options: &[String], input: &str) -> Result<FitArgs, Error> {
    let words = ["nmflow", "fit", input]
        .into_iter()
        .map(str::to_owned)
        .chain(options.iter().cloned())
        .chain(["-o".to_owned(), "result.h5".to_owned(), "-q".to_owned()]);
    let cli = Cli::try_parse_from(words).map_err(|e| Error::Usage(e.to_string()))?;
    match cli.command {
        Command::Fit(args) => Ok(*args),
        _ => Err(Error::Usage("not a fit".into())),
    }
}

/// Factorizes `matrix` as `nmflow fit MATRIX OPTIONS -o RESULT.h5` does.
pub fn fit(options: &[String], matrix: Matrix, control: &Control) -> Result<Factorization, Error> {
    let name = match &matrix {
        Matrix::File(spec) => spec.clone(),
        Matrix::Rows { name, .. } => name.clone(),
    };
    let args = fit_args(options, &name)?;
    if args.checkpoint.is_some() {
        return Err(Error::Usage(
            "checkpoints are an option of the command line, not of this fit".into(),
        ));
    }
    fit_parsed(&args, matrix, control).map_err(classify)
}

fn fit_parsed(args: &FitArgs, matrix: Matrix, control: &Control) -> anyhow::Result<Factorization> {
    let mut input = match matrix {
        Matrix::File(_) => Input::open(&args.input)?,
        Matrix::Rows { source, name } => Input::from_rows(source, &name),
    };
    // What a plain HDF5 result holds beside the runs: the plan, and so the
    // block height, of `nmflow fit -o RESULT.h5`.
    let destination = Destination::Hdf5(PathBuf::from("result.h5"));
    let mut planned = Planned::of(args, &mut input, &destination)?;
    let inner = session::take_source(&mut input.opened.source);
    input.opened.source = Box::new(Stoppable {
        inner,
        stop: control.stop.clone(),
    });
    planned.prepared.events = control.events.clone();
    let Fitted {
        prepared,
        mut best,
        restart_errors,
        clusters,
        ..
    } = planned.run(args, &mut input, None)?;
    let params = crate::fit::result_attributes(args, &input, &prepared, &best);
    let sample = best.sample.clone();
    let finished = &mut best.finished;
    let (n_rows, k) = finished.w.shape();
    let mut w = Array2::<f32>::zeros((n_rows, k));
    let block = prepared.plan.block_rows.max(1);
    for start in (0..n_rows).step_by(block) {
        let rows = start..(start + block).min(n_rows);
        w.slice_mut(ndarray::s![rows.clone(), ..])
            .assign(&finished.w.rows_mut(rows.clone()));
        finished.w.release(rows);
    }
    let outcome = &finished.outcome;
    let core = prepared.valid[finished.spec_idx].params();
    Ok(Factorization {
        w,
        h: nmflow_io::output::input_units(outcome.h.view(), &outcome.col_scale),
        h_scaled: outcome.h.clone(),
        col_scale: outcome.col_scale.clone(),
        rel_error: outcome.rel_error.clone(),
        converged: outcome.converged,
        seed: core.seed,
        restart_rel_errors: restart_errors,
        clusters,
        block_rows: prepared.plan.block_rows,
        normalize: core.normalize,
        iteration_seconds: outcome.iteration_seconds.clone(),
        params,
        sample_rows: sample.rows,
        sample_pca: sample.pca.scores,
        sample_pca_variance_ratio: sample.pca.explained_variance_ratio,
    })
}

/// Rows and columns of the matrix `nmflow fit FILE INPUT_OPTIONS` reads,
/// from the file's structure (nothing of X is read).
pub fn shape(spec: &str, input_options: &[String]) -> Result<(usize, usize), Error> {
    let run = || -> anyhow::Result<(usize, usize)> {
        let words: Vec<String> = ["-k", "1"]
            .into_iter()
            .map(str::to_owned)
            .chain(input_options.iter().cloned())
            .collect();
        let input = Input::open(&fit_args(&words, spec)?.input)?;
        Ok((input.n_rows(), input.n_cols()))
    };
    run().map_err(classify)
}

/// How a projection solves each row.
#[derive(Debug, Clone)]
pub struct ProjectOptions {
    /// H in the scaled units of its fit, k × genes.
    pub h_scaled: Array2<f32>,
    /// The fit's divisor of every column.
    pub col_scale: Vec<f32>,
    /// The fit's per-row normalisation.
    pub normalize: Normalize,
    /// HALS (exact coordinate descent from zero) or MU.
    pub solver: Solver,
    /// Sweeps per row at most.
    pub max_sweeps: usize,
    /// A row is solved once a sweep changes it by at most `tol` times the
    /// first sweep's change.
    pub tol: f64,
}

/// Rows per block of a projection (its result does not depend on it).
const PROJECT_ROWS: usize = 4096;

/// Solves W for the rows of `matrix` with H fixed, as `nmflow transform`
/// does; returns W and the relative error. `input_options` are the
/// command's options choosing a file's matrix (`--layer NAME`, `--raw`).
pub fn project(
    matrix: Matrix,
    input_options: &[String],
    options: ProjectOptions,
    control: &Control,
) -> Result<(Array2<f32>, f64), Error> {
    let run = || -> anyhow::Result<(Array2<f32>, f64)> {
        let source = match matrix {
            Matrix::File(spec) => {
                let words: Vec<String> = ["-k", "1"]
                    .into_iter()
                    .map(str::to_owned)
                    .chain(input_options.iter().cloned())
                    .collect();
                let args = fit_args(&words, &spec)?;
                Input::open(&args.input)?.opened.source
            }
            Matrix::Rows { source, .. } => source,
        };
        let mut source = Stoppable {
            inner: source,
            stop: control.stop.clone(),
        };
        let (n_rows, n_cols) = (source.n_rows(), source.n_cols());
        let k = options.h_scaled.nrows();
        if options.h_scaled.ncols() != n_cols || options.col_scale.len() != n_cols {
            return Err(crate::usage::UsageError(format!(
                "the matrix has {n_cols} columns (genes); the components have {}",
                options.h_scaled.ncols()
            ))
            .into());
        }
        let projection = Projection {
            h: options.h_scaled,
            absent: Array2::zeros((k, 0)),
            col_scale: options.col_scale,
            normalize: options.normalize,
            solver: options.solver,
            max_sweeps: options.max_sweeps.max(1),
            tol: options.tol,
            block_rows: source.preferred_block_rows().unwrap_or(PROJECT_ROWS),
        };
        let mut w = Array2::<f32>::zeros((n_rows, k));
        let events = control.events.clone();
        let outcome = nmflow_core::project(&mut source, &projection, &mut w, &mut |event| {
            if let Some(events) = &events {
                let _ = events.send((0, event));
            }
        })?;
        Ok((w, outcome.rel_error))
    };
    run().map_err(classify)
}

/// The kind of a failure, from the errors in its chain; its message is the
/// whole chain, as the command prints it.
fn classify(err: anyhow::Error) -> Error {
    let message = format!("{err:#}");
    if err.chain().any(|cause| cause.is::<StoppedMarker>()) {
        return Error::Stopped;
    }
    for cause in err.chain() {
        if cause.is::<crate::usage::UsageError>()
            || cause.is::<clap::Error>()
            || matches!(cause.downcast_ref::<Error>(), Some(Error::Usage(_)))
        {
            return Error::Usage(message);
        }
        if let Some(io) = cause.downcast_ref::<nmflow_io::IoError>() {
            return match io {
                nmflow_io::IoError::NotFound { .. } => Error::NotFound(message),
                _ => Error::Data(message),
            };
        }
        if cause.is::<nmflow_core::plan::PlanError>() {
            return Error::Memory(message);
        }
        if cause.is::<nmflow_core::FitError>() {
            return Error::Data(message);
        }
    }
    Error::Io(message)
}

/// A source that fails its next read once the caller asks it to stop.
struct Stoppable {
    inner: Box<dyn RowSource + Send>,
    stop: Arc<AtomicBool>,
}

impl Stoppable {
    fn check(&self) -> Result<(), SourceError> {
        if self.stop.load(Ordering::Relaxed) {
            Err(Box::new(StoppedMarker))
        } else {
            Ok(())
        }
    }
}

impl RowSource for Stoppable {
    fn n_rows(&self) -> usize {
        self.inner.n_rows()
    }

    fn n_cols(&self) -> usize {
        self.inner.n_cols()
    }

    fn preferred_block_rows(&self) -> Option<usize> {
        self.inner.preferred_block_rows()
    }

    fn nnz_hint(&self) -> Option<u64> {
        self.inner.nnz_hint()
    }

    fn begin_pass(&mut self, blocks: &[Range<usize>]) -> Result<(), SourceError> {
        self.check()?;
        self.inner.begin_pass(blocks)
    }

    fn block(&mut self, rows: Range<usize>) -> Result<RowBlock<'_>, SourceError> {
        self.check()?;
        self.inner.block(rows)
    }

    fn done_reading(&mut self) {
        self.inner.done_reading();
    }

    fn keep_resident(&mut self) {
        self.inner.keep_resident();
    }

    fn normalization(&mut self, kind: Normalize) {
        self.inner.normalization(kind);
    }

    fn wants_normalized(&self) -> bool {
        self.inner.wants_normalized()
    }

    fn keep_normalized(&mut self, rows: Range<usize>, values: &[f32], raw_integer: bool) {
        self.inner.keep_normalized(rows, values, raw_integer);
    }

    fn serves_checked_copy(&self) -> bool {
        self.inner.serves_checked_copy()
    }

    fn served_normalized(&self) -> Option<nmflow_core::NormalizedCopy> {
        self.inner.served_normalized()
    }
}
