//! Block-wise Lee & Seung multiplicative updates for non-negative matrix
//! factorization, streamed over a source of row blocks.
//!
//! # Notation
//! X is `n_rows × n_cols` and non-negative; X ≈ W·H with W `n_rows × k` and
//! H `k × n_cols`. Products are named by formula: `wtx` = WᵀX (`k × n_cols`),
//! `wtw` = WᵀW (`k × k`), `hht` = HHᵀ (`k × k`), `xht` = XHᵀ (`n_rows × k`).
//! Column scaling divides column j of X by `col_scale[j]`; the scaled matrix
//! is called X_s and is never formed: the scale is applied on the `k × n_cols`
//! side of every product (X_s Hᵀ = X (H D⁻¹)ᵀ, W ᵀX_s = (WᵀX) D⁻¹).
//!
//! # Layout of the crate
//! - `source`: the [`RowSource`] trait every input implements (with its
//!   pass contract, [`RowSource::begin_pass`]), and in-memory sources.
//! - `params`: user parameters ([`NmfParams`]) and their validation.
//! - [`kernels`]: the hot loops, pure functions on views.
//! - [`gemm`]: products of a block with a thin panel, rounded as
//!   ndarray's product rounds them.
//! - `stats`: the streaming column statistics of the pre-pass.
//! - [`solver`]: the engine: the orchestration of passes, blocks and
//!   stopping; several runs can share each pass ([`fit_many`]).
//! - `nndsvd`: NNDSVD starts from a streamed randomized SVD ([`nndsvd`]).
//! - `project`: rows projected onto fixed components ([`project`]).
//! - `rules`: the update rules ([`Solver`]) the engine applies to the
//!   products of a pass.
//! - [`plan`]: the memory plan of a command ([`plan_runs`]).
//! - `sample`: a bounded sample of rows ([`RowSample`]) and its principal
//!   components.
//! - [`metrics`], [`stability`]: ARI and NMI; consensus clustering and
//!   spectra stability across restarts.
//!
//! This crate does no file I/O and depends on no file format.
#![deny(missing_docs)]
#![warn(unreachable_pub)]

pub mod collective;
mod error;
pub mod factor;
pub mod gemm;
pub mod init;
pub mod kernels;
pub mod metrics;
mod nndsvd;
mod normalize;
mod params;
pub mod plan;
mod project;
mod rules;
mod sample;
pub mod solver;
mod source;
pub mod stability;
mod stats;

pub use error::FitError;
pub use factor::FactorStore;
pub use nndsvd::{
    NndsvdFill, NndsvdRequest, NndsvdStart, OVERSAMPLING, POWER_ITERATIONS, nndsvd, nndsvd_sharded,
};
pub use normalize::Normalize;
pub use params::{Init, NmfParams, Scale, ValidParams, default_block_rows};
pub use plan::{
    Budget, BudgetSource, BudgetTooSmall, Held, MemoryEstimate, Plan, PlanError, Request, plan_runs,
};
pub use project::{Projection, ProjectionOutcome, project, project_sharded};
pub use rules::{INNER_ALPHA, INNER_DELTA, Inner, Loss, Regularization, Solver};
pub use sample::{Pca, RowSample, sample_row_indices};
pub use solver::{
    Checkpoint, Checkpointing, Event, FitOutcome, FitReport, PassKind, Resume, Run, RunSnapshot,
    SaveError, Shared, fit, fit_in, fit_many, fit_many_sharded, fit_many_with, time_block,
};
pub use source::{
    ColumnOrder, CscBlock, CsrBlock, CsrShapeError, InMemoryCsrSource, InMemorySource,
    NormalizedCopy, RowBlock, RowSource, SourceError,
};

/// Added to a denominator of an update only where that denominator is exactly
/// zero (as scikit-learn does): `f32::EPSILON`.
pub const DENOMINATOR_EPSILON: f32 = f32::EPSILON;
