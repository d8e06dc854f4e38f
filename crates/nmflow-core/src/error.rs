//! The errors of a fit.

use std::ops::Range;

use crate::normalize::Normalize;
use crate::source::{CsrShapeError, SourceError};

/// A quantity of the fit found not finite by the per-iteration guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonFinite {
    /// H, after its update.
    H,
    /// W, after the pass.
    W,
    /// The relative error.
    Error,
}

impl std::fmt::Display for NonFinite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NonFinite::H => "H",
            NonFinite::W => "W",
            NonFinite::Error => "the reconstruction error",
        })
    }
}

/// Why a fit could not run or finish. Not converging is not an error: see
/// [`crate::FitOutcome::converged`].
#[derive(Debug, thiserror::Error)]
pub enum FitError {
    /// The matrix has no rows or no columns.
    #[error("the matrix is empty ({n_rows} rows × {n_cols} columns)")]
    EmptyMatrix {
        /// Rows of X.
        n_rows: usize,
        /// Columns of X.
        n_cols: usize,
    },
    /// k = 0.
    #[error("k must be at least 1")]
    ZeroK,
    /// k larger than the smaller dimension of X.
    #[error(
        "k = {k} is larger than min(rows, columns) = {} of the {n_rows} × {n_cols} matrix",
        (*n_rows).min(*n_cols)
    )]
    KTooLarge {
        /// Requested components.
        k: usize,
        /// Rows of X.
        n_rows: usize,
        /// Columns of X.
        n_cols: usize,
    },
    /// max_iter = 0.
    #[error("max_iter must be at least 1")]
    ZeroMaxIter,
    /// A negative or non-finite tolerance.
    #[error("tol must be finite and non-negative, got {tol}")]
    BadTol {
        /// The tolerance given.
        tol: f64,
    },
    /// A block height of zero rows.
    #[error("block_rows must be at least 1")]
    ZeroBlockRows,
    /// The Kullback–Leibler loss with another solver than `mu`.
    #[error(
        "the Kullback-Leibler loss is minimised by multiplicative updates only (solver mu); \
         {solver} minimises the Frobenius norm"
    )]
    LossNeedsMu {
        /// The solver asked for.
        solver: &'static str,
    },
    /// The Kullback–Leibler loss with inner repeats.
    #[error(
        "inner repeats need the Frobenius loss: a Kullback-Leibler update needs X ⊘ WH anew \
         (use inner 1)"
    )]
    LossNeedsPlainUpdates,
    /// Zero inner repeats.
    #[error("the number of inner repeats must be at least 1 (or auto)")]
    ZeroInner,
    /// A negative or non-finite penalty, or an L1 ratio outside [0, 1].
    #[error("{name} must be finite and non-negative (l1_ratio in [0, 1]), got {value}")]
    BadPenalty {
        /// "alpha_W", "alpha_H" or "l1_ratio".
        name: &'static str,
        /// The value given.
        value: f64,
    },
    /// A custom initial factor of the wrong shape.
    #[error("{which} has shape {found:?}, expected {expected:?}")]
    InitShape {
        /// "W0" or "H0".
        which: &'static str,
        /// The shape the matrix requires.
        expected: (usize, usize),
        /// The shape given.
        found: (usize, usize),
    },
    /// A custom initial factor with a negative or non-finite entry.
    #[error(
        "{which} has the value {value} at row {row}, column {col}; initial factors must be finite and non-negative"
    )]
    InitValue {
        /// "W0" or "H0".
        which: &'static str,
        /// Row of the entry.
        row: usize,
        /// Column of the entry.
        col: usize,
        /// The entry.
        value: f32,
    },
    /// A negative entry of X.
    #[error("negative value {value} at row {row}, column {col}: NMF needs non-negative input")]
    NegativeValue {
        /// Row of the entry (0-based).
        row: usize,
        /// Column of the entry (0-based).
        col: usize,
        /// The entry.
        value: f32,
    },
    /// A sparse row storing the same column twice.
    #[error(
        "row {row} stores column {col} twice: duplicate sparse entries (scipy and anndata read \
         their sum; fix the file with X.sum_duplicates() in scipy)"
    )]
    DuplicateEntry {
        /// Row (0-based).
        row: usize,
        /// Column (0-based).
        col: usize,
    },
    /// A NaN or infinite entry of X.
    #[error("non-finite value {value} at row {row}, column {col}")]
    NonFiniteValue {
        /// Row of the entry (0-based).
        row: usize,
        /// Column of the entry (0-based).
        col: usize,
        /// The entry.
        value: f32,
    },
    /// A value of X so large that sums of its products over a block would
    /// overflow single precision.
    #[error(
        "column {col} holds the value {value:e}, above the largest nmflow factorizes \
         ({limit:e}: sums of products over a block would overflow single precision); \
         divide the data by a constant"
    )]
    ValueTooLarge {
        /// The column.
        col: usize,
        /// Its largest value.
        value: f32,
        /// The limit.
        limit: f32,
    },
    /// The values of X are too small for single precision even after
    /// rescaling by a power of two.
    #[error(
        "the values of the matrix are too small to factorize in single precision (the largest, \
         {value:e} in column {col}, cannot be rescaled so that the divisor of column \
         {divisor_col} stays a normal f32): multiply the data by a constant"
    )]
    ValuesTooSmall {
        /// Column holding the largest scaled value.
        col: usize,
        /// That column's largest raw value.
        value: f32,
        /// A column whose divisor would not be representable.
        divisor_col: usize,
    },
    /// A factor or the error became NaN or infinite during an iteration.
    #[error(
        "iteration {iteration}: {what} is not finite (NaN or infinite); nothing was written. \
         Likely cause: {cause}"
    )]
    NotFinite {
        /// 1-based iteration at which it was detected (0: the start).
        iteration: usize,
        /// Which quantity ("H", "W", "the error").
        what: NonFinite,
        /// The likely cause, for the user.
        cause: &'static str,
    },
    /// W·H became zero everywhere (its entries underflowed).
    #[error(
        "iteration {iteration}: W·H vanished (every entry underflowed to zero); nothing was written. \
         The values of the matrix are too small for single precision: multiply them by a constant"
    )]
    Vanished {
        /// 1-based iteration.
        iteration: usize,
    },
    /// Writing a checkpoint failed.
    #[error("writing the checkpoint after iteration {iteration}")]
    Checkpoint {
        /// The iteration.
        iteration: usize,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Every entry of X is zero: the relative error is undefined.
    #[error("every entry of the matrix is zero; there is nothing to factorize")]
    ZeroMatrix,
    /// Runs of one batch differ in what must be shared.
    #[error("runs fitted together must share normalisation, scaling and block height ({detail})")]
    MixedRuns {
        /// What differs.
        detail: String,
    },
    /// The source returned a block of the wrong shape.
    #[error("the source returned a {found:?} block for rows {}..{}, expected {expected:?}", rows.start, rows.end)]
    BlockShape {
        /// Rows asked for.
        rows: Range<usize>,
        /// Shape expected.
        expected: (usize, usize),
        /// Shape returned.
        found: (usize, usize),
    },
    /// A source served blocks normalised otherwise than the run asks.
    #[error(
        "the source served blocks normalised with {}, but the run normalises with {}",
        served.as_str(),
        kind.as_str()
    )]
    ServedNormalization {
        /// The source's normalisation.
        served: Normalize,
        /// The run's.
        kind: Normalize,
    },
    /// The source returned a malformed CSR block.
    #[error("malformed sparse rows {}..{}: {error}", rows.start, rows.end)]
    Csr {
        /// Rows asked for.
        rows: Range<usize>,
        /// What is wrong.
        error: CsrShapeError,
    },
    /// Another process sharing the factorization failed (its own error is
    /// reported there).
    #[error("process {rank} of this factorization failed; its error says why")]
    PeerFailed {
        /// The first failed process.
        rank: usize,
    },
    /// The source failed to read rows.
    #[error("reading rows {}..{}", rows.start, rows.end)]
    Source {
        /// Rows asked for.
        rows: Range<usize>,
        /// What the source reported.
        #[source]
        source: SourceError,
    },
}
