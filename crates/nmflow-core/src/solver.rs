//! The orchestration of a fit: the pre-pass, one fused pass over X per
//! iteration, the stopping rule.
//!
//! Iteration t (W, H from iteration t − 1; XᵀW and WᵀW accumulated by the
//! previous pass):
//! 1. H ← H ∘ (WᵀX_s) ⊘ (WᵀW H)        — on `k × n_cols` data only;
//! 2. one pass over the row blocks of X: X_b Hᵀ, then
//!    W_b ← W_b ∘ (X_b Hᵀ) ⊘ (W_b HHᵀ), then X_bᵀW_b and W_bᵀW_b are
//!    accumulated for the next H update, with Σ⟨W_b, X_b Hᵀ⟩;
//! 3. ‖X_s − WH‖² = ‖X_s‖² − 2 tr(WᵀX_sHᵀ) + ⟨WᵀW, HHᵀ⟩, all accumulated.
//!
//! Blocks have a fixed height; within a block, the work is split into
//! chunks whose boundaries do not depend on the number of threads, and
//! partial sums are combined in chunk order, so results do not depend on
//! the thread count:
//! - the W update: chunks of `ROW_CHUNK` rows;
//! - dense XᵀW: chunks of `COL_CHUNK` columns, each owned by one task;
//! - sparse XᵀW: `SPARSE_PARTS` row ranges with their own `n_cols × k`
//!   partials, summed in order by column chunk.

use std::ops::Range;
use std::time::Instant;

use ndarray::{
    Array1, Array2, Array3, ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2, ArrayViewMut3,
    Axis, s,
};
use rayon::prelude::*;

use crate::DENOMINATOR_EPSILON;
use crate::collective::{Alone, Shard};
use crate::error::{FitError, NonFinite};
use crate::factor::FactorStore;
use crate::init::{RandomW, random_h};
use crate::kernels;
use crate::kernels::Penalty;
use crate::normalize::{Normalize, Normalizer};
use crate::params::{Init, ValidParams};
use crate::rules::{Loss, UpdateRule};
use crate::sample::RowSample;
use crate::source::{CsrBlock, RowBlock, RowSource};
use crate::stats::ColumnStats;

/// Rows per parallel task of the W update.
pub(crate) const ROW_CHUNK: usize = 64;
/// Columns per parallel task of the XᵀW accumulation and the H update.
pub(crate) const COL_CHUNK: usize = 256;
/// Row ranges (with their own partial XᵀW) of a sparse block.
pub(crate) const SPARSE_PARTS: usize = 8;
/// The stopping rule looks at the error every this many iterations
/// (scikit-learn's rule for its multiplicative updates).
pub const CHECK_EVERY: usize = 10;
/// Iterations of the error trace reserved up front (it grows beyond; a
/// `max_iter` of 10¹² must not reserve terabytes).
const TRACE_PREALLOC: usize = 1024;

/// What the runs of a batch share after the pre-pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Shared {
    /// The divisor of every column.
    pub col_scale: Vec<f32>,
    /// ‖X_s‖²_F.
    pub x_norm_sq: f64,
    /// Σ X_s (the Kullback–Leibler divergence needs it).
    pub x_sum: f64,
    /// Whether every raw value is a whole number.
    pub integer_valued: bool,
    /// Stored entries of one pass.
    pub n_stored: u64,
    /// Seconds of the pre-pass.
    pub prepare_seconds: f64,
}

/// The state of one run after an iteration, W apart (it stays in the run's
/// store): what the next iteration reads, and the stopping rule's state.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSnapshot {
    /// H, `k × n_cols`.
    pub h: Array2<f32>,
    /// XᵀW of the last pass (unscaled), `n_cols × k`.
    pub xtw: Array2<f64>,
    /// WᵀW of the last pass, `k × k`.
    pub wtw: Array2<f64>,
    /// Kullback–Leibler: the column sums of W of the last pass (`k`);
    /// empty for the Frobenius loss.
    pub w_sum: Vec<f64>,
    /// Relative error of the start.
    pub init_rel_error: f64,
    /// Relative error at the stopping rule's last check.
    pub checked_rel_error: f64,
    /// Relative error after every iteration so far.
    pub rel_error: Vec<f64>,
    /// Seconds of every iteration so far.
    pub iteration_seconds: Vec<f64>,
    /// Whether the stopping rule ended this run.
    pub converged: bool,
    /// Whether this run has stopped.
    pub done: bool,
}

/// Where a fit resumes: after iteration `iteration`, with the shared state
/// and one snapshot per run.
#[derive(Debug, Clone)]
pub struct Resume {
    /// The last iteration completed.
    pub iteration: usize,
    /// What the runs share.
    pub shared: Shared,
    /// One per run, in the order of the runs.
    pub runs: Vec<RunSnapshot>,
}

/// The state handed to [`Checkpointing::save`] after an iteration; the
/// runs' W are in the stores of the runs passed beside it.
#[derive(Debug)]
pub struct Checkpoint<'a> {
    /// The iteration just completed.
    pub iteration: usize,
    /// What the runs share.
    pub shared: &'a Shared,
    /// One per run, in the order of the runs.
    pub runs: &'a [RunSnapshot],
    /// The row sample given to the fit (its components are computed after
    /// the first iteration).
    pub sample: Option<&'a RowSample>,
}

/// The error a checkpoint writer returns (kept as the cause).
pub type SaveError = Box<dyn std::error::Error + Send + Sync>;

/// Writes a checkpoint; the runs' W are in the stores of the runs.
pub type SaveFn<'a> = dyn FnMut(&Checkpoint<'_>, &mut [Run<'_>]) -> Result<(), SaveError> + 'a;

/// A writer of checkpoints, called every `every` iterations while a run
/// goes on.
pub struct Checkpointing<'a> {
    /// Iterations between checkpoints.
    pub every: usize,
    /// Writes the checkpoint (W from the runs' stores).
    pub save: &'a mut SaveFn<'a>,
}

/// Which pass over X is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassKind {
    /// The pre-pass: validation, column statistics, XᵀW for the first H.
    Prepare,
    /// The pass of an iteration.
    Iterate,
}

/// Progress of a fit, reported to the caller's callback.
#[derive(Debug, Clone, Copy)]
pub enum Event {
    /// A block of a pass is done.
    Block {
        /// The pass.
        kind: PassKind,
        /// Rows of X processed in this pass so far.
        rows_done: usize,
        /// Rows of X.
        n_rows: usize,
    },
    /// An iteration is done.
    Iteration {
        /// 1-based iteration number.
        iteration: usize,
        /// Relative error after it.
        rel_error: f64,
        /// Wall time of the iteration in seconds.
        seconds: f64,
    },
}

/// The outcome of a fit with W held in memory: W and the [`FitOutcome`]
/// (whose fields it dereferences to).
#[derive(Debug, Clone)]
pub struct FitReport {
    /// W, `n_rows × k`.
    pub w: Array2<f32>,
    /// Everything else.
    pub outcome: FitOutcome,
}

impl std::ops::Deref for FitReport {
    type Target = FitOutcome;

    fn deref(&self) -> &FitOutcome {
        &self.outcome
    }
}

impl FitReport {
    /// The cluster of every row: the index of the largest entry of its W row.
    pub fn clusters(&self) -> Vec<u32> {
        kernels::argmax_rows(self.w.view())
    }
}

/// The outcome of a fit, W apart (it stays where the caller keeps it).
#[derive(Debug, Clone)]
pub struct FitOutcome {
    /// H, `k × n_cols`, the factor of the scaled matrix X_s.
    pub h: Array2<f32>,
    /// ‖X_s − W₀H₀‖_F / ‖X_s‖_F of the start (the stopping rule's
    /// reference).
    pub init_rel_error: f64,
    /// ‖X_s − WH‖_F / ‖X_s‖_F after every iteration run.
    pub rel_error: Vec<f64>,
    /// Whether the stopping rule ended the fit before `max_iter`.
    pub converged: bool,
    /// The divisor of every column (1 where not scaled).
    pub col_scale: Vec<f32>,
    /// ‖X_s‖²_F.
    pub x_norm_sq: f64,
    /// Whether every value of the input (before normalisation) is a whole
    /// number, as raw counts are.
    pub integer_valued: bool,
    /// Stored entries seen in one pass (every entry for dense input).
    pub n_stored: u64,
    /// Rows per block used.
    pub block_rows: usize,
    /// Seconds of the pre-pass.
    pub prepare_seconds: f64,
    /// Seconds spent on the row sample's principal components (after the
    /// first iteration; not in `iteration_seconds`).
    pub sample_seconds: f64,
    /// Seconds of every iteration.
    pub iteration_seconds: Vec<f64>,
}

impl FitOutcome {
    /// Iterations run.
    pub fn n_iter(&self) -> usize {
        self.rel_error.len()
    }

    /// Relative error after the last iteration.
    pub fn final_rel_error(&self) -> f64 {
        self.rel_error.last().copied().unwrap_or(f64::NAN)
    }
}

/// Scratch of the passes, allocated once per fit.
struct Workspace {
    /// Σ X_bᵀ W_b (unscaled), `n_cols × k`.
    xtw: Array2<f64>,
    /// Σ W_bᵀ W_b, `k × k`.
    wtw: Array2<f64>,
    /// X_b Hᵀ of one block, `block_rows × k`.
    xht: Array2<f32>,
    /// X_bᵀ W_b of one dense block, `n_cols × k`.
    xtw_block: Array2<f32>,
    /// Partial X_bᵀ W_b of the row ranges of a sparse block,
    /// `SPARSE_PARTS × n_cols × k`; allocated at the first sparse block.
    xtw_parts: Array3<f32>,
    /// Per row chunk partial W_bᵀ W_b, `chunks × k × k`.
    wtw_parts: Array3<f64>,
    /// Per row chunk partial tr(W_bᵀ X_b Hᵀ).
    cross_parts: Array1<f64>,
    /// Per row chunk denominators W_c HHᵀ, `chunks × ROW_CHUNK × k`.
    den_rows: Array3<f32>,
    /// Per row chunk W_cᵀW_c in f32, `chunks × k × k`.
    gram_parts: Array3<f32>,
    /// Kullback–Leibler: Σ of W's columns over the pass (`k`).
    w_sum: Array1<f64>,
    /// Kullback–Leibler: X_s ⊘ WH at the stored entries of a sparse block.
    ratio: Vec<f32>,
    /// Kullback–Leibler: X_s ⊘ WH of a dense block, `block_rows × n_cols`;
    /// allocated at the first dense block.
    ratio_dense: Array2<f32>,
}

impl Workspace {
    fn new(k: usize, n_cols: usize, block_rows: usize) -> Self {
        let n_chunks = block_rows.div_ceil(ROW_CHUNK);
        Self {
            xtw: Array2::zeros((n_cols, k)),
            wtw: Array2::zeros((k, k)),
            xht: Array2::zeros((block_rows, k)),
            xtw_block: Array2::zeros((0, k)),
            xtw_parts: Array3::zeros((0, n_cols, k)),
            wtw_parts: Array3::zeros((n_chunks, k, k)),
            cross_parts: Array1::zeros(n_chunks),
            den_rows: Array3::zeros((n_chunks, ROW_CHUNK, k)),
            gram_parts: Array3::zeros((n_chunks, k, k)),
            w_sum: Array1::zeros(k),
            ratio: Vec::new(),
            ratio_dense: Array2::zeros((0, n_cols)),
        }
    }

    fn reset_accumulators(&mut self) {
        self.xtw.fill(0.0);
        self.wtw.fill(0.0);
        self.w_sum.fill(0.0);
    }
}

/// Factorizes the matrix of `source` with the validated `params`, calling
/// `on_event` as blocks and iterations finish.
///
/// Must be called with the parameters checked against this source's shape.
/// W starts at zero: with [`Init::Custom`] call [`fit_in`] with W₀ in the
/// store.
pub fn fit(
    source: &mut dyn RowSource,
    params: &ValidParams,
    on_event: &mut dyn FnMut(Event),
) -> Result<FitReport, FitError> {
    let mut w = Array2::zeros((source.n_rows(), params.params().k));
    let outcome = fit_in(source, params, &mut w, on_event)?;
    Ok(FitReport { w, outcome })
}

/// [`fit`] with W kept in `w` (`n_rows × k`), touched one block of rows at
/// a time and released after each.
///
/// # Panics
/// If `w` does not have the shape `n_rows × k`.
pub fn fit_in(
    source: &mut dyn RowSource,
    params: &ValidParams,
    w: &mut dyn FactorStore,
    on_event: &mut dyn FnMut(Event),
) -> Result<FitOutcome, FitError> {
    let mut runs = [Run { params, w }];
    let mut outcomes = fit_many(source, &mut runs, None, &mut |_, event| on_event(event))?;
    Ok(outcomes.remove(0))
}

/// One factorization of a [`fit_many`] batch: its parameters and where its
/// W lives.
pub struct Run<'a> {
    /// The validated parameters (k, seed, stopping rule, ...).
    pub params: &'a ValidParams,
    /// W of this run, `n_rows × k`.
    pub w: &'a mut dyn FactorStore,
}

/// Runs several factorizations of the same matrix together: every pass
/// reads each block of X once and updates the W blocks of all runs still
/// iterating. Each run follows exactly the iterates it would follow alone
/// (`fit_in` is `fit_many` with one run), and stops by its own rule.
///
/// The runs must share the per-row normalisation, the column scaling and
/// the block height. When `sample` is given, its rows of X (normalised and
/// scaled as the runs see them) are collected during the first iteration's
/// pass and their principal components computed ([`RowSample::finish`])
/// when first needed: before the first checkpoint, else after the last
/// iteration.
/// `on_event` receives the index of the run an [`Event::Iteration`] belongs
/// to (0 for block events, which are shared).
///
/// # Panics
/// If `runs` is empty, or a W does not have the shape `n_rows × k`.
pub fn fit_many(
    source: &mut dyn RowSource,
    runs: &mut [Run<'_>],
    sample: Option<&mut RowSample>,
    on_event: &mut dyn FnMut(usize, Event),
) -> Result<Vec<FitOutcome>, FitError> {
    fit_many_with(source, runs, sample, None, None, on_event)
}

/// [`fit_many`], resumed from a [`Resume`] (the state after an iteration;
/// every W already holds its rows in its store, and no pre-pass is run)
/// and/or handing a [`Checkpoint`] to `checkpointing` every
/// `checkpointing.every` iterations. A resumed fit follows exactly the
/// iterates of the uninterrupted one: the state handed out is everything
/// the next iteration reads.
///
/// # Panics
/// As [`fit_many`]; also if `resume` holds another number of runs.
pub fn fit_many_with(
    source: &mut dyn RowSource,
    runs: &mut [Run<'_>],
    sample: Option<&mut RowSample>,
    resume: Option<Resume>,
    checkpointing: Option<&mut Checkpointing<'_>>,
    on_event: &mut dyn FnMut(usize, Event),
) -> Result<Vec<FitOutcome>, FitError> {
    let shard = Shard {
        collective: &Alone,
        first_row: 0,
        n_rows: source.n_rows(),
    };
    fit_many_sharded(shard, source, runs, sample, resume, checkpointing, on_event)
}

/// [`fit_many_with`] for one process of several sharing the rows
/// ([`Shard`]): `source` holds this process's rows (`shard.first_row..`),
/// and each run's W its rows of W. After every pass the processes sum
/// what it accumulated, so they all update the same H; every process
/// returns the same outcomes (H, the error trace, the divisors). W's start
/// is drawn as a single process draws it, row for row. A failure on any
/// process fails every one ([`FitError::PeerFailed`] where it did not
/// fail). Each process collects its rows of the sample, and all gather
/// the whole sample after the first pass.
///
/// # Panics
/// As [`fit_many_with`].
pub fn fit_many_sharded(
    shard: Shard<'_>,
    source: &mut dyn RowSource,
    runs: &mut [Run<'_>],
    sample: Option<&mut RowSample>,
    resume: Option<Resume>,
    mut checkpointing: Option<&mut Checkpointing<'_>>,
    on_event: &mut dyn FnMut(usize, Event),
) -> Result<Vec<FitOutcome>, FitError> {
    let n_rows = source.n_rows();
    // Processes that share the rows each collect their sampled rows, then
    // gather the whole sample after the first pass.
    let mut part = sample
        .as_deref()
        .filter(|_| shard.shared())
        .map(|s| s.within(&(shard.first_row..shard.first_row + n_rows)));
    let n_cols = source.n_cols();
    let first = runs
        .first()
        .expect("fit_many needs at least one run")
        .params;
    check_runs(runs, n_rows)?;
    let block_rows = first.block_rows();
    let normalize = first.params().normalize;
    let scale = first.params().scale;
    let blocks = block_ranges(n_rows, block_rows);
    let mut normalizer = Normalizer::new(normalize);
    let (shared, first_iteration, mut states) = start(
        shard,
        source,
        runs,
        resume,
        &blocks,
        &mut normalizer,
        scale,
        on_event,
    )?;
    let inv_scale: Array1<f32> = shared.col_scale.iter().map(|&d| 1.0 / d).collect();
    if first_iteration == 1 && first.params().loss == Loss::KullbackLeibler {
        let first_pass = KlFirstPass {
            shard,
            blocks: &blocks,
            inv_scale: inv_scale.view(),
            shared: &shared,
        };
        first_pass.run(source, &mut normalizer, runs, &mut states, on_event)?;
    }
    let rules: Vec<Box<dyn UpdateRule>> = runs
        .iter()
        .map(|run| crate::rules::rule(run.params.params(), shard.n_rows, n_cols, shared.n_stored))
        .collect();
    let x_norm_sq = shared.x_norm_sq;
    let col_scale = shared.col_scale.clone();

    let max_iter = runs
        .iter()
        .map(|r| r.params.params().max_iter)
        .max()
        .unwrap_or(0);
    // The sample is collected during the first iteration's pass; its
    // principal components are computed when first needed (a checkpoint,
    // or the end), not on the way to the first iterates. The plan holds the
    // sample for the whole command.
    let seed = sample
        .as_deref()
        .and_then(RowSample::seed)
        .unwrap_or(first.params().seed);
    let mut sample_seconds = 0.0;
    let mut collected = if first_iteration == 1 { sample } else { None };
    for iteration in first_iteration..=max_iter {
        let active: Vec<bool> = runs
            .iter()
            .zip(&states)
            .map(|(run, state)| !state.done && iteration <= run.params.params().max_iter)
            .collect();
        if !active.contains(&true) {
            break;
        }
        let started = Instant::now();
        // 1. H ← H ∘ (WᵀX_s) ⊘ (WᵀW H), per run (the error of the start
        // first, from the pre-pass's products).
        for ((state, rule), _) in states
            .iter_mut()
            .zip(&rules)
            .zip(&active)
            .filter(|(_, a)| **a)
        {
            if iteration == 1 {
                state.set_init_error(x_norm_sq, inv_scale.view(), iteration)?;
            }
            state.update_h(rule.as_ref(), inv_scale.view());
            state.check_h(iteration)?;
        }

        // 2. The pass: W rows, then XᵀW and WᵀW for the next H.
        let collect = match (iteration, part.as_mut()) {
            (1, Some(part)) => Some(part),
            (1, None) => collected.as_deref_mut(),
            _ => None,
        };
        let pass = Pass {
            shard,
            blocks: &blocks,
            active: &active,
            rules: &rules,
            inv_scale: inv_scale.view(),
            n_cols,
        };
        pass.run(
            source,
            &mut normalizer,
            runs,
            &mut states,
            collect,
            on_event,
        )?;
        if let (Some(part), Some(whole)) = (part.take(), collected.as_deref_mut()) {
            whole.gather(&part, shard.collective);
        }

        // 3. The error from accumulated products, and the stopping rule.
        let seconds = started.elapsed().as_secs_f64();
        for (run_idx, ((run, state), _)) in runs
            .iter()
            .zip(&mut states)
            .zip(&active)
            .enumerate()
            .filter(|(_, (_, a))| **a)
        {
            let rel =
                state.finish_iteration(&shared, seconds, run.params.params().tol, iteration)?;
            on_event(
                run_idx,
                Event::Iteration {
                    iteration,
                    rel_error: rel,
                    seconds,
                },
            );
        }
        // 4. A checkpoint, when one is due and some run goes on (it holds
        // the sample's components, computed first if need be).
        if let Some(checkpointing) = checkpointing.as_deref_mut()
            && checkpoint_due(checkpointing, iteration, runs, &states)
        {
            sample_seconds += finish_sample(collected.as_deref_mut(), &col_scale, seed);
            let sample = collected.as_deref();
            // Each process saves its own; a failure on any stops all.
            let saved = save_checkpoint(checkpointing, iteration, &shared, sample, runs, &states);
            shard.agree(saved)?;
        }
    }
    sample_seconds += finish_sample(collected, &col_scale, seed);

    Ok(outcomes(states, &shared, block_rows, sample_seconds))
}

/// The state the first iteration starts from: a resumed one (every W
/// already in its store, no pre-pass), or the pre-pass's; with the number
/// of that iteration.
#[allow(clippy::too_many_arguments)]
fn start(
    shard: Shard<'_>,
    source: &mut dyn RowSource,
    runs: &mut [Run<'_>],
    resume: Option<Resume>,
    blocks: &[Range<usize>],
    normalizer: &mut Normalizer,
    scale: crate::params::Scale,
    on_event: &mut dyn FnMut(usize, Event),
) -> Result<(Shared, usize, Vec<RunState>), FitError> {
    // Penalties scale with the whole matrix's rows.
    let (n_rows, n_cols) = (shard.n_rows, source.n_cols());
    if let Some(resume) = resume {
        assert_eq!(resume.runs.len(), runs.len(), "a resume state per run");
        let states = runs
            .iter()
            .zip(resume.runs)
            .map(|(run, snapshot)| RunState::resumed(run.params, n_rows, n_cols, snapshot))
            .collect();
        return Ok((resume.shared, resume.iteration + 1, states));
    }
    let mut states: Vec<RunState> = runs
        .iter()
        .map(|run| RunState::new(run.params, n_rows, n_cols))
        .collect();
    if shard.first_row > 0 {
        for (run, state) in runs.iter().zip(states.iter_mut()) {
            if let Some(draw) = state.draw_w.as_mut() {
                draw.skip_rows(shard.first_row, run.params.params().k);
            }
        }
    }
    let shared = pre_pass(
        shard,
        source,
        runs,
        &mut states,
        blocks,
        normalizer,
        scale,
        on_event,
    )?;
    for (run, state) in runs.iter_mut().zip(states.iter_mut()) {
        if matches!(run.params.params().init, Init::RandomScaled) {
            scale_start(run, state, &shared, blocks, n_rows);
        }
    }
    Ok((shared, 1, states))
}

/// Scales a half-normal start (W, H and the pre-pass's W₀ᵀX, W₀ᵀW₀) by
/// sqrt(mean(X_s) / k), once the pre-pass knows the mean (scikit-learn's
/// `init="random"`).
fn scale_start(
    run: &mut Run<'_>,
    state: &mut RunState,
    shared: &Shared,
    blocks: &[Range<usize>],
    n_rows: usize,
) {
    let (k, n_cols) = state.h.dim();
    let n_values = n_rows as f64 * n_cols as f64;
    let avg = (shared.x_sum / n_values / k as f64).sqrt();
    let avg32 = avg as f32;
    state.h.mapv_inplace(|v| v * avg32);
    for rows in blocks {
        run.w.rows_mut(rows.clone()).mapv_inplace(|v| v * avg32);
        run.w.release(rows.clone());
    }
    state.ws.xtw.mapv_inplace(|v| v * avg);
    state.ws.wtw.mapv_inplace(|v| v * avg * avg);
}

/// What each run hands back.
fn outcomes(
    states: Vec<RunState>,
    shared: &Shared,
    block_rows: usize,
    sample_seconds: f64,
) -> Vec<FitOutcome> {
    states
        .into_iter()
        .map(|state| FitOutcome {
            h: state.h,
            init_rel_error: state.init_rel_error,
            rel_error: state.rel_error,
            converged: state.converged,
            col_scale: shared.col_scale.clone(),
            x_norm_sq: shared.x_norm_sq,
            integer_valued: shared.integer_valued,
            n_stored: shared.n_stored,
            block_rows,
            prepare_seconds: shared.prepare_seconds,
            sample_seconds,
            iteration_seconds: state.iteration_seconds,
        })
        .collect()
}

/// Refuses runs that cannot share passes (another block height,
/// normalisation or scaling than the first run's).
///
/// # Panics
/// If a run's W does not have the shape `n_rows × k`.
fn check_runs(runs: &[Run<'_>], n_rows: usize) -> Result<(), FitError> {
    let Some(first) = runs.first().map(|r| r.params) else {
        return Ok(());
    };
    let block_rows = first.block_rows();
    let normalize = first.params().normalize;
    let scale = first.params().scale;
    let loss = first.params().loss;
    if let Some(other) = runs.iter().find(|r| {
        r.params.block_rows() != block_rows
            || r.params.params().normalize != normalize
            || r.params.params().scale != scale
            || r.params.params().loss != loss
    }) {
        return Err(FitError::MixedRuns {
            detail: format!(
                "block rows {} vs {block_rows}, normalize {} vs {}, scale {} vs {}, loss {} vs {}",
                other.params.block_rows(),
                other.params.params().normalize.as_str(),
                normalize.as_str(),
                other.params.params().scale.as_str(),
                scale.as_str(),
                other.params.params().loss.as_str(),
                loss.as_str()
            ),
        });
    }
    for run in runs {
        assert_eq!(
            run.w.shape(),
            (n_rows, run.params.params().k),
            "W has the wrong shape"
        );
    }
    Ok(())
}

/// The blocks of one iteration's pass and the runs it updates.
struct Pass<'a> {
    shard: Shard<'a>,
    blocks: &'a [Range<usize>],
    active: &'a [bool],
    /// Every run's rule.
    rules: &'a [Box<dyn UpdateRule>],
    /// 1 / the column divisors (the Kullback–Leibler step scales X itself).
    inv_scale: ArrayView1<'a, f32>,
    n_cols: usize,
}

impl Pass<'_> {
    /// Reads every block once and, for every active run, updates its W rows
    /// by its rule and accumulates XᵀW and WᵀW for the next H update;
    /// `sample` collects its rows on the way.
    fn run(
        &self,
        source: &mut dyn RowSource,
        normalizer: &mut Normalizer,
        runs: &mut [Run<'_>],
        states: &mut [RunState],
        mut sample: Option<&mut RowSample>,
        on_event: &mut dyn FnMut(usize, Event),
    ) -> Result<(), FitError> {
        let n_rows = source.n_rows();
        let mut read = || -> Result<(), FitError> {
            begin_pass(source, normalizer, self.blocks)?;
            for rows in self.blocks {
                let x = read_block(source, normalizer, rows.clone(), self.n_cols)?;
                if let Some(sample) = sample.as_deref_mut() {
                    sample.collect(rows.clone(), &x);
                }
                for (((run, state), rule), _) in runs
                    .iter_mut()
                    .zip(states.iter_mut())
                    .zip(self.rules)
                    .zip(self.active)
                    .filter(|(_, a)| **a)
                {
                    if let Some(kl) = state.kl.as_mut() {
                        let w_b = run.w.rows_mut(rows.clone());
                        let term = kl_w_block(&x, w_b, kl, self.inv_scale, &mut state.ws);
                        kl.data_term += term;
                    } else {
                        let w_b = run.w.rows_mut(rows.clone());
                        state.cross += update_w_and_xtw(
                            rule.as_ref(),
                            &x,
                            w_b,
                            state.hst.view(),
                            state.hht32.view(),
                            &mut state.ws,
                        );
                    }
                    run.w.release(rows.clone());
                }
                on_event(
                    0,
                    Event::Block {
                        kind: PassKind::Iterate,
                        rows_done: rows.end,
                        n_rows,
                    },
                );
            }
            Ok(())
        };
        end_pass(self.shard, read(), states)?;
        Ok(())
    }
}

/// The end of a pass over this process's rows: its `result` agreed between
/// the processes, then what it accumulated summed over them.
fn end_pass(
    shard: Shard<'_>,
    result: Result<(), FitError>,
    states: &mut [RunState],
) -> Result<(), FitError> {
    shard.agree(result)?;
    combine_runs(shard, states);
    Ok(())
}

/// Sums what every process's pass accumulated for each run (XᵀW, WᵀW, W's
/// column sums, the cross term, the divergence's data term), in one sum
/// over the processes; nothing with one process.
fn combine_runs(shard: Shard<'_>, states: &mut [RunState]) {
    if !shard.shared() {
        return;
    }
    let mut packed = Vec::new();
    for state in states.iter() {
        packed.extend(state.ws.xtw.iter());
        packed.extend(state.ws.wtw.iter());
        packed.extend(state.ws.w_sum.iter());
        packed.push(state.cross);
        packed.push(state.kl.as_ref().map_or(0.0, |kl| kl.data_term));
    }
    shard.collective.sum(&mut packed);
    let mut values = packed.into_iter();
    for state in states.iter_mut() {
        for v in state.ws.xtw.iter_mut() {
            *v = values.next().unwrap_or(0.0);
        }
        for v in state.ws.wtw.iter_mut() {
            *v = values.next().unwrap_or(0.0);
        }
        for v in state.ws.w_sum.iter_mut() {
            *v = values.next().unwrap_or(0.0);
        }
        state.cross = values.next().unwrap_or(0.0);
        let data_term = values.next().unwrap_or(0.0);
        if let Some(kl) = state.kl.as_mut() {
            kl.data_term = data_term;
        }
    }
}

/// Hands a checkpoint after `iteration` to `checkpointing` when one is due
/// and some run goes on.
/// Whether a checkpoint is due after `iteration`: its period, and some run
/// goes on.
fn checkpoint_due(
    checkpointing: &Checkpointing<'_>,
    iteration: usize,
    runs: &[Run<'_>],
    states: &[RunState],
) -> bool {
    let goes_on = runs
        .iter()
        .zip(states)
        .any(|(run, state)| !state.done && iteration < run.params.params().max_iter);
    goes_on && iteration.is_multiple_of(checkpointing.every.max(1))
}

/// Computes the principal components of a collected sample that has none
/// yet, and frees its rows; the seconds it took.
fn finish_sample(sample: Option<&mut RowSample>, col_scale: &[f32], seed: u64) -> f64 {
    match sample {
        Some(sample) if sample.components().is_none() => {
            let started = Instant::now();
            sample.scale_columns(col_scale);
            sample.finish(seed);
            started.elapsed().as_secs_f64()
        }
        _ => 0.0,
    }
}

fn save_checkpoint(
    checkpointing: &mut Checkpointing<'_>,
    iteration: usize,
    shared: &Shared,
    sample: Option<&RowSample>,
    runs: &mut [Run<'_>],
    states: &[RunState],
) -> Result<(), FitError> {
    let snapshots: Vec<RunSnapshot> = states.iter().map(RunState::snapshot).collect();
    let checkpoint = Checkpoint {
        iteration,
        shared,
        runs: &snapshots,
        sample,
    };
    (checkpointing.save)(&checkpoint, runs)
        .map_err(|source| FitError::Checkpoint { iteration, source })
}

/// The pre-pass: validates every entry, computes the column statistics,
/// draws (or copies) W₀ block by block and accumulates W₀ᵀX and W₀ᵀW₀ for
/// every run, so that the first H update needs no extra pass.
#[allow(clippy::too_many_arguments)]
fn pre_pass(
    shard: Shard<'_>,
    source: &mut dyn RowSource,
    runs: &mut [Run<'_>],
    states: &mut [RunState],
    blocks: &[Range<usize>],
    normalizer: &mut Normalizer,
    scale: crate::params::Scale,
    on_event: &mut dyn FnMut(usize, Event),
) -> Result<Shared, FitError> {
    let n_rows = source.n_rows();
    let n_cols = source.n_cols();
    // Pre-pass: validate, column statistics, XᵀW0 and W0ᵀW0 for every run.
    let started = Instant::now();
    let mut stats = ColumnStats::new(n_cols);
    let mut n_stored = 0u64;
    let mut read = || -> Result<(), FitError> {
        begin_pass(source, normalizer, blocks)?;
        for rows in blocks {
            let x = read_block(source, normalizer, rows.clone(), n_cols)?;
            let first = shard.first_row + rows.start;
            match &x {
                RowBlock::Dense(x) => stats.add_block(*x, first)?,
                RowBlock::Csr(x) => stats.add_csr_block(x, first)?,
            }
            n_stored += stored_entries(&x);
            for (run, state) in runs.iter_mut().zip(states.iter_mut()) {
                let p = run.params.params();
                {
                    let mut w_b = run.w.rows_mut(rows.clone());
                    if let Some(draw) = state.draw_w.as_mut() {
                        draw.fill_next_rows(w_b.view_mut());
                    } else if matches!(p.init, Init::Custom { .. }) {
                        // W₀ was written into the store by the caller.
                        crate::params::check_start("W0", w_b.view(), rows.start)?;
                    }
                    kernels::accumulate_wtw(w_b.view(), state.ws.wtw.view_mut());
                    accumulate_xtw(w_b.view(), &x, &mut state.ws);
                }
                run.w.release(rows.clone());
            }
            on_event(
                0,
                Event::Block {
                    kind: PassKind::Prepare,
                    rows_done: rows.end,
                    n_rows,
                },
            );
        }
        Ok(())
    };
    end_pass(shard, read(), states)?;
    let prepare_seconds = started.elapsed().as_secs_f64();
    let mut integer_valued = match normalizer.kind() {
        Normalize::None => stats.all_integer(),
        _ => normalizer.all_integer(),
    };
    if shard.shared() {
        let mut counts = [n_stored as f64, f64::from(u8::from(!integer_valued))];
        shard.collective.sum(&mut counts);
        n_stored = counts[0] as u64;
        integer_valued = counts[1] == 0.0;
        stats = stats.combined(shard.collective);
    }
    let col_scale = stats.col_scale(scale)?;
    let x_norm_sq = stats.scaled_norm_sq(&col_scale);
    if x_norm_sq <= 0.0 {
        return Err(FitError::ZeroMatrix);
    }
    Ok(Shared {
        x_sum: stats.scaled_sum(&col_scale),
        col_scale,
        x_norm_sq,
        integer_valued,
        n_stored,
        prepare_seconds,
    })
}

/// The state of one run between passes.
struct RunState {
    ws: Workspace,
    h: Array2<f32>,
    /// (H D⁻¹)ᵀ, `n_cols × k`.
    hst: Array2<f32>,
    h_den: Array2<f32>,
    wtx_scaled: Array2<f32>,
    hht64: Array2<f64>,
    hht32: Array2<f32>,
    draw_w: Option<RandomW>,
    /// Σ⟨W_b, X_s,b Hᵀ⟩ of the current pass.
    cross: f64,
    /// The state of a Kullback–Leibler run.
    kl: Option<KlState>,
    /// Relative error of the start.
    init_rel_error: f64,
    /// Relative error at the stopping rule's last check.
    checked_rel_error: f64,
    rel_error: Vec<f64>,
    iteration_seconds: Vec<f64>,
    converged: bool,
    done: bool,
}

impl RunState {
    fn new(params: &ValidParams, n_rows: usize, n_cols: usize) -> Self {
        let p = params.params();
        let k = p.k;
        let kl = (p.loss == Loss::KullbackLeibler).then(|| {
            let (w_penalty, h_penalty) = crate::rules::penalties(p, n_rows, n_cols);
            KlState {
                ht: Array2::zeros((n_cols, k)),
                h_sum: vec![0.0; k],
                data_term: 0.0,
                w_penalty,
                h_penalty,
            }
        });
        let h = match &p.init {
            Init::Random => random_h(p.seed, k, n_cols),
            Init::RandomScaled => crate::init::half_normal_h(p.seed, k, n_cols),
            Init::Custom { h0 } => h0.clone(),
        };
        Self {
            ws: Workspace::new(k, n_cols, params.block_rows()),
            h,
            hst: Array2::zeros((n_cols, k)),
            h_den: Array2::zeros((k, n_cols)),
            wtx_scaled: Array2::zeros((k, n_cols)),
            hht64: Array2::zeros((k, k)),
            hht32: Array2::zeros((k, k)),
            draw_w: match p.init {
                Init::Random => Some(RandomW::new(p.seed)),
                Init::RandomScaled => Some(RandomW::half_normal(p.seed)),
                Init::Custom { .. } => None,
            },
            cross: 0.0,
            kl,
            init_rel_error: f64::NAN,
            checked_rel_error: f64::NAN,
            rel_error: Vec::with_capacity(p.max_iter.min(TRACE_PREALLOC)),
            iteration_seconds: Vec::with_capacity(p.max_iter.min(TRACE_PREALLOC)),
            converged: false,
            done: false,
        }
    }

    /// H updated by `rule` from WᵀX_s and WᵀW; then HHᵀ and (H D⁻¹)ᵀ for
    /// the pass, and the accumulators reset.
    fn update_h(&mut self, rule: &dyn UpdateRule, inv_scale: ArrayView1<'_, f32>) {
        if self.kl.is_some() {
            return self.update_h_kl();
        }
        let wtw32 = self.ws.wtw.mapv(|v| v as f32);
        ndarray::Zip::from(&mut self.wtx_scaled)
            .and(&self.ws.xtw.t())
            .and_broadcast(&inv_scale)
            .for_each(|out, &acc, &inv| *out = acc as f32 * inv);
        self.h
            .axis_chunks_iter_mut(Axis(1), COL_CHUNK)
            .into_par_iter()
            .zip(self.wtx_scaled.axis_chunks_iter(Axis(1), COL_CHUNK))
            .zip(self.h_den.axis_chunks_iter_mut(Axis(1), COL_CHUNK))
            .for_each(|((h, wtx), den)| rule.update_h_cols(h, wtx, wtw32.view(), den));
        self.hht64 = gram_rows(self.h.view());
        self.hht32 = self.hht64.mapv(|v| v as f32);
        ndarray::Zip::from(&mut self.hst)
            .and(&self.h.t())
            .and_broadcast(&inv_scale.insert_axis(Axis(1)))
            .for_each(|out, &hv, &inv| *out = hv * inv);
        self.ws.reset_accumulators();
        self.cross = 0.0;
    }

    /// The state of a run resumed after an iteration.
    fn resumed(params: &ValidParams, n_rows: usize, n_cols: usize, snapshot: RunSnapshot) -> Self {
        let mut state = Self::new(params, n_rows, n_cols);
        state.draw_w = None;
        state.h = snapshot.h;
        state.ws.xtw = snapshot.xtw;
        state.ws.wtw = snapshot.wtw;
        if state.kl.is_some() {
            state.ws.w_sum = Array1::from(snapshot.w_sum);
        }
        state.init_rel_error = snapshot.init_rel_error;
        state.checked_rel_error = snapshot.checked_rel_error;
        state.rel_error = snapshot.rel_error;
        state.iteration_seconds = snapshot.iteration_seconds;
        state.converged = snapshot.converged;
        state.done = snapshot.done;
        state
    }

    /// Everything of this run the next iteration reads (W apart).
    fn snapshot(&self) -> RunSnapshot {
        RunSnapshot {
            h: self.h.clone(),
            xtw: self.ws.xtw.clone(),
            wtw: self.ws.wtw.clone(),
            w_sum: if self.kl.is_some() {
                self.ws.w_sum.to_vec()
            } else {
                Vec::new()
            },
            init_rel_error: self.init_rel_error,
            checked_rel_error: self.checked_rel_error,
            rel_error: self.rel_error.clone(),
            iteration_seconds: self.iteration_seconds.clone(),
            converged: self.converged,
            done: self.done,
        }
    }

    /// The relative error of the start (W₀, H₀), from the pre-pass's
    /// W₀ᵀX and W₀ᵀW₀: ‖X_s‖² − 2⟨W₀ᵀX_s, H₀⟩ + ⟨W₀ᵀW₀, H₀H₀ᵀ⟩. It is the
    /// reference of the stopping rule, and where the rule's last check
    /// starts.
    fn set_init_error(
        &mut self,
        x_norm_sq: f64,
        inv_scale: ArrayView1<'_, f32>,
        iteration: usize,
    ) -> Result<(), FitError> {
        if self.kl.is_some() {
            // Set by the Kullback–Leibler first pass.
            return Ok(());
        }
        let mut cross = 0.0f64;
        for (j, (xtw_row, &inv)) in self.ws.xtw.rows().into_iter().zip(inv_scale).enumerate() {
            let inv = f64::from(inv);
            for (a, &v) in xtw_row.iter().enumerate() {
                cross += v * inv * f64::from(self.h[(a, j)]);
            }
        }
        let fit_term: f64 = (&self.ws.wtw * &gram_rows(self.h.view())).sum();
        let err_sq = x_norm_sq - 2.0 * cross + fit_term;
        if !err_sq.is_finite() {
            return Err(FitError::NotFinite {
                iteration,
                what: NonFinite::Error,
                cause: OVERFLOW_CAUSE,
            });
        }
        self.init_rel_error = (err_sq.max(0.0) / x_norm_sq).sqrt();
        self.checked_rel_error = self.init_rel_error;
        Ok(())
    }

    /// The guard after an H update: H is finite exactly when the diagonal
    /// of HHᵀ (sums of squares of its rows, in f64) is.
    fn check_h(&self, iteration: usize) -> Result<(), FitError> {
        if self.hht64.diag().iter().all(|v| v.is_finite()) {
            return Ok(());
        }
        Err(FitError::NotFinite {
            iteration,
            what: NonFinite::H,
            cause: OVERFLOW_CAUSE,
        })
    }

    /// ‖X_s − WH‖²_F from the accumulated products; records the relative
    /// error and applies the stopping rule. Returns the relative error.
    ///
    /// The guard of every iteration: W is finite exactly when the diagonal
    /// of WᵀW (sums of squares in f64 of its f32 entries) is; the error must
    /// be finite, and W·H (whose squared norm is ⟨WᵀW, HHᵀ⟩) must not have
    /// vanished. A failed check ends the fit with an error, so no non-finite
    /// or collapsed factor reaches a result.
    fn finish_iteration(
        &mut self,
        shared: &Shared,
        seconds: f64,
        tol: f64,
        iteration: usize,
    ) -> Result<f64, FitError> {
        if !self.ws.wtw.diag().iter().all(|v| v.is_finite()) {
            return Err(FitError::NotFinite {
                iteration,
                what: NonFinite::W,
                cause: OVERFLOW_CAUSE,
            });
        }
        let rel = match &self.kl {
            Some(kl) => kl.rel_error(shared, self.ws.w_sum.view(), iteration)?,
            None => self.frobenius_rel_error(shared.x_norm_sq, iteration)?,
        };
        self.rel_error.push(rel);
        self.iteration_seconds.push(seconds);
        // scikit-learn's rule: every CHECK_EVERY iterations, stop when the
        // error fell by less than `tol` times the error of the start since
        // the last check.
        if tol > 0.0 && iteration.is_multiple_of(CHECK_EVERY) {
            if (self.checked_rel_error - rel) / self.init_rel_error < tol {
                self.converged = true;
                self.done = true;
            }
            self.checked_rel_error = rel;
        }
        Ok(rel)
    }
}

impl RunState {
    /// ‖X_s − WH‖_F / ‖X_s‖_F from the accumulated products.
    fn frobenius_rel_error(&self, x_norm_sq: f64, iteration: usize) -> Result<f64, FitError> {
        let fit_term: f64 = (&self.ws.wtw * &self.hht64).sum();
        let err_sq = x_norm_sq - 2.0 * self.cross + fit_term;
        guard_error(&[err_sq, self.cross], fit_term, iteration)?;
        // Rounding can make the difference slightly negative at an exact fit.
        Ok((err_sq.max(0.0) / x_norm_sq).sqrt())
    }

    /// Kullback–Leibler (scikit-learn's update for β = 1):
    /// H ← H ∘ Wᵀ(X_s ⊘ WH) ⊘ (colsum(W) + l1 + l2·H), a column sum of 0
    /// taken as 1 and a zero denominator replaced by ε; then entries below
    /// f64's ε set to 0. Wᵀ(X_s ⊘ WH) was accumulated (scaled) by the last
    /// pass. Then Hᵀ and H's row sums for the pass, and the accumulators
    /// reset.
    fn update_h_kl(&mut self) {
        let Some(kl) = self.kl.as_mut() else { return };
        let pen = kl.h_penalty;
        let w_sum: Vec<f32> = self
            .ws
            .w_sum
            .iter()
            .map(|&s| if s == 0.0 { 1.0 } else { s as f32 })
            .collect();
        let xtw_t = self.ws.xtw.t();
        self.h
            .axis_iter_mut(Axis(0))
            .into_par_iter()
            .zip(xtw_t.axis_iter(Axis(0)))
            .zip(w_sum.par_iter())
            .for_each(|((mut h_row, num_row), &ws)| {
                for (h, &num) in h_row.iter_mut().zip(num_row) {
                    let d = ws + pen.l1 + pen.l2 * *h;
                    let d = if d == 0.0 { DENOMINATOR_EPSILON } else { d };
                    *h *= num as f32 / d;
                    if f64::from(*h) < f64::EPSILON {
                        *h = 0.0;
                    }
                }
            });
        self.hht64 = gram_rows(self.h.view());
        self.hht32 = self.hht64.mapv(|v| v as f32);
        kl.begin_pass(self.h.view());
        self.ws.reset_accumulators();
        self.cross = 0.0;
    }
}

/// The part of a run's state only the Kullback–Leibler loss has.
struct KlState {
    /// Hᵀ, `n_cols × k` (the ratio and the W numerator need H by column).
    ht: Array2<f32>,
    /// Σ_j H_aj of every row of H.
    h_sum: Vec<f32>,
    /// Σ x_s ln(x_s / WH) over the stored entries of the current pass.
    data_term: f64,
    w_penalty: Penalty,
    h_penalty: Penalty,
}

impl KlState {
    /// Hᵀ and H's row sums for a pass with `h`, and the data term reset.
    fn begin_pass(&mut self, h: ArrayView2<'_, f32>) {
        self.ht.assign(&h.t());
        for (sum, row) in self.h_sum.iter_mut().zip(h.rows()) {
            *sum = row.iter().map(|&v| f64::from(v)).sum::<f64>() as f32;
        }
        self.data_term = 0.0;
    }

    /// D(X_s ‖ WH) = Σ x_s ln(x_s / WH) − Σ x_s + colsum(W)·rowsum(H), and
    /// the relative error sqrt(2 D) / ‖X_s‖_F (scikit-learn's
    /// `reconstruction_err_` over ‖X_s‖_F).
    fn rel_error(
        &self,
        shared: &Shared,
        w_sum: ArrayView1<'_, f64>,
        iteration: usize,
    ) -> Result<f64, FitError> {
        let wh_sum: f64 = w_sum
            .iter()
            .zip(&self.h_sum)
            .map(|(&w, &h)| w * f64::from(h))
            .sum();
        let divergence = self.data_term - shared.x_sum + wh_sum;
        guard_error(&[divergence], wh_sum, iteration)?;
        Ok((2.0 * divergence.max(0.0) / shared.x_norm_sq).sqrt())
    }
}

/// The pass after the pre-pass of a Kullback–Leibler fit: X_s ⊘ W₀H₀
/// needs the column divisors, which the pre-pass computes, so the first H
/// update's Wᵀ(X_s ⊘ WH), W's column sums and the error of the start take
/// one more pass (once per fit).
struct KlFirstPass<'a> {
    shard: Shard<'a>,
    blocks: &'a [Range<usize>],
    inv_scale: ArrayView1<'a, f32>,
    shared: &'a Shared,
}

impl KlFirstPass<'_> {
    fn run(
        &self,
        source: &mut dyn RowSource,
        normalizer: &mut Normalizer,
        runs: &mut [Run<'_>],
        states: &mut [RunState],
        on_event: &mut dyn FnMut(usize, Event),
    ) -> Result<(), FitError> {
        let n_rows = source.n_rows();
        let n_cols = source.n_cols();
        for state in states.iter_mut() {
            state.ws.reset_accumulators();
            if let Some(kl) = state.kl.as_mut() {
                kl.begin_pass(state.h.view());
            }
        }
        let mut read = || -> Result<(), FitError> {
            begin_pass(source, normalizer, self.blocks)?;
            for rows in self.blocks {
                let x = read_block(source, normalizer, rows.clone(), n_cols)?;
                for (run, state) in runs.iter_mut().zip(states.iter_mut()) {
                    let Some(kl) = state.kl.as_mut() else {
                        continue;
                    };
                    let w_b = run.w.rows_mut(rows.clone());
                    let term =
                        kl_ratio_block(&x, w_b.view(), kl.ht.view(), self.inv_scale, &mut state.ws);
                    kl.data_term += term;
                    kl_accumulate(&x, w_b.view(), &mut state.ws);
                    run.w.release(rows.clone());
                }
                on_event(
                    0,
                    Event::Block {
                        kind: PassKind::Prepare,
                        rows_done: rows.end,
                        n_rows,
                    },
                );
            }
            Ok(())
        };
        end_pass(self.shard, read(), states)?;
        for state in states.iter_mut() {
            if let Some(kl) = &state.kl {
                let rel = kl.rel_error(self.shared, state.ws.w_sum.view(), 0)?;
                state.init_rel_error = rel;
                state.checked_rel_error = rel;
            }
        }
        Ok(())
    }
}

/// The Kullback–Leibler step of one block for one run: the W update from
/// (X_s ⊘ W_bH) Hᵀ with the rows as they are, then X_s ⊘ W_bH with the new
/// rows, accumulated as W_bᵀ(X_s ⊘ W_bH) for the next H update, with W's
/// column sums, W_bᵀW_b (for the guard) and the divergence's data term
/// (returned). The block is read once; the ratio is formed twice.
fn kl_w_block(
    x: &RowBlock<'_>,
    mut w_b: ArrayViewMut2<'_, f32>,
    kl: &KlState,
    inv_scale: ArrayView1<'_, f32>,
    ws: &mut Workspace,
) -> f64 {
    let n_b = w_b.nrows();
    kl_ratio_block(x, w_b.view(), kl.ht.view(), inv_scale, ws);
    // (X_s ⊘ WH) Hᵀ, as X_s Hᵀ is formed (the ratio in place of X).
    let ratio = std::mem::take(&mut ws.ratio);
    let ratio_dense = std::mem::replace(&mut ws.ratio_dense, Array2::zeros((0, 0)));
    let mut num = ws.xht.slice_mut(s![..n_b, ..]);
    num.axis_chunks_iter_mut(Axis(0), ROW_CHUNK)
        .into_par_iter()
        .zip(w_b.axis_chunks_iter_mut(Axis(0), ROW_CHUNK))
        .enumerate()
        .for_each(|(c, (mut num_c, w_c))| {
            let rows = c * ROW_CHUNK..c * ROW_CHUNK + num_c.nrows();
            match x {
                RowBlock::Dense(_) => kernels::xht_dense(
                    ratio_dense.slice(s![rows, ..]),
                    kl.ht.view(),
                    num_c.view_mut(),
                ),
                RowBlock::Csr(x) => {
                    let r = CsrBlock {
                        data: &ratio,
                        columns: None,
                        ..*x
                    };
                    kernels::xht_csr(&csr_rows(&r, rows), kl.ht.view(), num_c.view_mut())
                }
            }
            kernels::kl_update_w_rows(w_c, num_c.view(), &kl.h_sum, kl.w_penalty);
        });
    ws.ratio = ratio;
    ws.ratio_dense = ratio_dense;
    let data_term = kl_ratio_block(x, w_b.view(), kl.ht.view(), inv_scale, ws);
    kl_accumulate(x, w_b.view(), ws);
    data_term
}

/// X_s ⊘ W_bH of a block into the workspace's ratio buffer (the dense one
/// for a dense block), in fixed row chunks; returns the data term
/// Σ x_s ln(x_s / WH), summed in chunk order.
fn kl_ratio_block(
    x: &RowBlock<'_>,
    w_b: ArrayView2<'_, f32>,
    ht: ArrayView2<'_, f32>,
    inv_scale: ArrayView1<'_, f32>,
    ws: &mut Workspace,
) -> f64 {
    let n_b = w_b.nrows();
    let inv = inv_scale.as_slice().expect("contiguous divisors");
    let parts: Vec<f64> = match x {
        RowBlock::Dense(x) => {
            if ws.ratio_dense.nrows() < n_b || ws.ratio_dense.ncols() != x.ncols() {
                ws.ratio_dense = Array2::zeros((n_b, x.ncols()));
            }
            let h = ht.t();
            ws.ratio_dense
                .slice_mut(s![..n_b, ..])
                .axis_chunks_iter_mut(Axis(0), ROW_CHUNK)
                .into_par_iter()
                .zip(x.axis_chunks_iter(Axis(0), ROW_CHUNK))
                .zip(w_b.axis_chunks_iter(Axis(0), ROW_CHUNK))
                .map(|((r, x_c), w_c)| kernels::kl_ratio_dense(x_c, w_c, h, inv, r))
                .collect()
        }
        RowBlock::Csr(x) => {
            let nnz = x.indptr[n_b];
            if ws.ratio.len() < nnz {
                ws.ratio.resize(nnz, 0.0);
            }
            // Disjoint pieces of the ratio buffer, one per row chunk.
            let mut pieces = Vec::with_capacity(n_b.div_ceil(ROW_CHUNK));
            let mut rest = &mut ws.ratio[..nnz];
            let mut taken = 0;
            for start in (0..n_b).step_by(ROW_CHUNK) {
                let end = (start + ROW_CHUNK).min(n_b);
                let (piece, tail) = rest.split_at_mut(x.indptr[end] - taken);
                taken = x.indptr[end];
                rest = tail;
                pieces.push((start..end, piece));
            }
            pieces
                .into_par_iter()
                .map(|(rows, piece)| {
                    let w_c = w_b.slice(s![rows.clone(), ..]);
                    kernels::kl_ratio_csr(&csr_rows(x, rows), w_c, ht, inv, piece)
                })
                .collect()
        }
    };
    parts.iter().sum()
}

/// W_bᵀ(X_s ⊘ W_bH) into the XᵀW accumulator (as XᵀW is accumulated, the
/// ratio in place of X), W_b's column sums and W_bᵀW_b.
fn kl_accumulate(x: &RowBlock<'_>, w_b: ArrayView2<'_, f32>, ws: &mut Workspace) {
    let n_b = w_b.nrows();
    let ratio = std::mem::take(&mut ws.ratio);
    let ratio_dense = std::mem::replace(&mut ws.ratio_dense, Array2::zeros((0, 0)));
    match x {
        RowBlock::Dense(_) => {
            accumulate_xtw_dense(w_b, ratio_dense.slice(s![..n_b, ..]), ws);
        }
        RowBlock::Csr(x) => {
            let r = CsrBlock {
                data: &ratio,
                columns: None,
                ..*x
            };
            accumulate_xtw_csr(w_b, &r, ws);
        }
    }
    ws.ratio = ratio;
    ws.ratio_dense = ratio_dense;
    for row in w_b.rows() {
        for (sum, &v) in ws.w_sum.iter_mut().zip(row) {
            *sum += f64::from(v);
        }
    }
    kernels::accumulate_wtw(w_b, ws.wtw.view_mut());
}

/// The guard of an iteration's error: every term and `model` (the size of
/// W·H: ⟨WᵀW, HHᵀ⟩, or Σ WH) finite, and `model` positive (W·H has not
/// vanished).
fn guard_error(terms: &[f64], model: f64, iteration: usize) -> Result<(), FitError> {
    if !(model.is_finite() && terms.iter().all(|t| t.is_finite())) {
        return Err(FitError::NotFinite {
            iteration,
            what: NonFinite::Error,
            cause: OVERFLOW_CAUSE,
        });
    }
    if model <= 0.0 {
        return Err(FitError::Vanished { iteration });
    }
    Ok(())
}

/// What the guard tells the user when a factor overflows.
const OVERFLOW_CAUSE: &str = "an overflow in single precision: the input holds values too large \
     (or, after column scaling, too far apart) for f32 products; divide the data by a constant, \
     or try --scale none or --normalize";

/// Seconds one pass spends computing on the block `x` (the W update and
/// the XᵀW, WᵀW accumulation of one run with `params`: its k, solver and
/// inner repeats), measured on
/// the block itself with arbitrary positive factors: the basis of the time
/// estimate printed with a plan. The block is checked first; `None` when
/// it is malformed (the fit will report it).
pub fn time_block(x: &RowBlock<'_>, params: &crate::params::NmfParams) -> Option<f64> {
    let k = params.k;
    let n_b = x.n_rows();
    let n_cols = x.n_cols();
    if let RowBlock::Csr(csr) = x {
        csr.validate(n_b).ok()?;
    }
    if n_b == 0 || k == 0 {
        return Some(0.0);
    }
    let mut ws = Workspace::new(k, n_cols, n_b);
    let hst = Array2::from_shape_fn((n_cols, k), |(i, j)| {
        0.5 + ((i * 7 + j * 3) % 11) as f32 / 22.0
    });
    let hht = hst.t().dot(&hst);
    let mut w_b = Array2::from_shape_fn((n_b, k), |(i, j)| 0.5 + ((i + j) % 5) as f32 / 10.0);
    let started = Instant::now();
    update_w_and_xtw(
        crate::rules::rule(params, n_b, n_cols, stored_entries(x)).as_ref(),
        x,
        w_b.view_mut(),
        hst.view(),
        hht.view(),
        &mut ws,
    );
    Some(started.elapsed().as_secs_f64())
}

/// The row ranges of the blocks of height `block_rows`.
pub fn block_ranges(n_rows: usize, block_rows: usize) -> Vec<Range<usize>> {
    (0..n_rows)
        .step_by(block_rows.max(1))
        .map(|start| start..(start + block_rows).min(n_rows))
        .collect()
}

fn stored_entries(x: &RowBlock<'_>) -> u64 {
    match x {
        RowBlock::Dense(x) => x.len() as u64,
        RowBlock::Csr(x) => x.nnz() as u64,
    }
}

/// Tells `source` the normalisation and the blocks of the pass that begins
/// (the pass contract), and `normalizer` whether the blocks it will serve
/// still need normalising.
pub(crate) fn begin_pass(
    source: &mut dyn RowSource,
    normalizer: &mut Normalizer,
    blocks: &[Range<usize>],
) -> Result<(), FitError> {
    normalizer.hand_over(source);
    source.normalization(normalizer.kind());
    source
        .begin_pass(blocks)
        .map_err(|source| FitError::Source {
            rows: blocks.first().map_or(0, |b| b.start)..blocks.last().map_or(0, |b| b.end),
            source,
        })?;
    normalizer.follow(source)
}

/// Reads, checks and normalises the block of `rows`.
pub(crate) fn read_block<'a>(
    source: &'a mut dyn RowSource,
    normalizer: &'a mut Normalizer,
    rows: Range<usize>,
    n_cols: usize,
) -> Result<RowBlock<'a>, FitError> {
    let n_b = rows.len();
    normalizer.hand_over(source);
    let checked_copy = source.serves_checked_copy();
    let block = source
        .block(rows.clone())
        .map_err(|source| FitError::Source {
            rows: rows.clone(),
            source,
        })?;
    match &block {
        RowBlock::Dense(view) if view.dim() != (n_b, n_cols) => {
            return Err(FitError::BlockShape {
                rows,
                expected: (n_b, n_cols),
                found: view.dim(),
            });
        }
        // A copy the source made of blocks checked in an earlier pass is
        // not checked again (a tenth of a sparse iteration).
        RowBlock::Csr(_) if checked_copy => {}
        RowBlock::Csr(csr) => {
            let csr = CsrBlock { n_cols, ..*csr };
            csr.validate(n_b).map_err(|error| FitError::Csr {
                rows: rows.clone(),
                error,
            })?;
            if let Some(columns) = &csr.columns {
                columns
                    .validate(n_b, n_cols, csr.nnz())
                    .map_err(|error| FitError::Csr {
                        rows: rows.clone(),
                        error,
                    })?;
            }
        }
        RowBlock::Dense(_) => {}
    }
    normalizer.apply(block, rows.start)
}

/// The rows `rows` (block-relative) of a CSR block, as a block whose
/// offsets index the parent's arrays.
pub(crate) fn csr_rows<'a>(x: &CsrBlock<'a>, rows: Range<usize>) -> CsrBlock<'a> {
    CsrBlock {
        indptr: &x.indptr[rows.start..=rows.end],
        columns: None,
        ..*x
    }
}

/// The W update of one block and its `X_bᵀ W_b` (with the updated rows):
/// returns the block's tr(W_bᵀ X_b Hᵀ) and adds W_bᵀW_b and X_bᵀW_b into
/// the workspace. A dense block runs both group of rows by group of rows
/// ([`update_w_dense_fused`]); a sparse one runs them one after the other.
fn update_w_and_xtw(
    rule: &dyn UpdateRule,
    x: &RowBlock<'_>,
    mut w_b: ArrayViewMut2<'_, f32>,
    hst: ArrayView2<'_, f32>,
    hht: ArrayView2<'_, f32>,
    ws: &mut Workspace,
) -> f64 {
    match x {
        RowBlock::Dense(x) => update_w_dense_fused(rule, *x, w_b, hst, hht, ws),
        RowBlock::Csr(_) => {
            let cross = update_w_block(rule, x, w_b.view_mut(), hst, hht, ws);
            accumulate_xtw(w_b.view(), x, ws);
            cross
        }
    }
}

/// Rows of a dense block updated before their `X_gᵀ W_g` is accumulated:
/// a whole number of the products' reduction chunks ([`crate::gemm::KC`])
/// and of [`ROW_CHUNK`]s, a few MiB of X for usual widths, so that the rows
/// read for `X_g Hᵀ` are still in cache when `X_gᵀ W_g` reads them again.
const FUSED_ROWS: usize = 4 * crate::gemm::KC;

/// A dense block's W update and `X_bᵀ W_b`, [`FUSED_ROWS`] rows at a time:
/// the W update of a group of rows in parallel over its [`ROW_CHUNK`]s (as
/// [`update_w_block`] does, into the same per-chunk partials), then its
/// `X_gᵀ W_g` in parallel over column ranges, stored by the first group and
/// added by the next ones. Group boundaries fall on the products'
/// reduction chunks, so `X_bᵀ W_b` rounds as one product over the block
/// ([`crate::gemm::product_add`]): W, WᵀW, XᵀW and the cross term are
/// bit-for-bit those of [`update_w_block`] followed by
/// [`accumulate_xtw_dense`], for any thread count.
fn update_w_dense_fused(
    rule: &dyn UpdateRule,
    x: ArrayView2<'_, f32>,
    mut w_b: ArrayViewMut2<'_, f32>,
    hst: ArrayView2<'_, f32>,
    hht: ArrayView2<'_, f32>,
    ws: &mut Workspace,
) -> f64 {
    let (n_b, k) = w_b.dim();
    let n_cols = x.ncols();
    if ws.xtw_block.nrows() != n_cols {
        ws.xtw_block = Array2::zeros((n_cols, k));
    }
    let n_chunks = n_b.div_ceil(ROW_CHUNK);
    ws.wtw_parts.slice_mut(s![..n_chunks, .., ..]).fill(0.0);
    for group_start in (0..n_b).step_by(FUSED_ROWS) {
        let rows = group_start..(group_start + FUSED_ROWS).min(n_b);
        let chunks = rows.start / ROW_CHUNK..rows.end.div_ceil(ROW_CHUNK);
        let x_g = x.slice(s![rows.clone(), ..]);
        let mut w_g = w_b.slice_mut(s![rows.clone(), ..]);
        update_w_chunks(
            rule,
            &RowBlock::Dense(x_g),
            w_g.view_mut(),
            hst,
            hht,
            ChunkScratch {
                xht: ws.xht.slice_mut(s![rows, ..]),
                wtw: ws.wtw_parts.slice_mut(s![chunks.clone(), .., ..]),
                cross: ws.cross_parts.slice_mut(s![chunks.clone()]),
                den: ws.den_rows.slice_mut(s![chunks.clone(), .., ..]),
                gram: ws.gram_parts.slice_mut(s![chunks, .., ..]),
            },
        );
        let add = group_start > 0;
        x_g.axis_chunks_iter(Axis(1), COL_CHUNK)
            .into_par_iter()
            .zip(ws.xtw_block.axis_chunks_iter_mut(Axis(0), COL_CHUNK))
            .for_each(|(x_c, acc)| {
                if add {
                    crate::gemm::product_add(x_c.t(), w_g.view(), acc);
                } else {
                    crate::gemm::product(x_c.t(), w_g.view(), acc);
                }
            });
    }
    ws.xtw
        .axis_chunks_iter_mut(Axis(0), COL_CHUNK)
        .into_par_iter()
        .zip(ws.xtw_block.axis_chunks_iter(Axis(0), COL_CHUNK))
        .for_each(|(mut acc, block)| acc.zip_mut_with(&block, |a, &b| *a += f64::from(b)));
    fold_chunk_partials(ws, n_chunks)
}

/// Adds the first `n_chunks` chunks' W_cᵀW_c to `wtw`, in chunk order,
/// and returns the sum of their cross terms, in chunk order.
fn fold_chunk_partials(ws: &mut Workspace, n_chunks: usize) -> f64 {
    for part in ws.wtw_parts.slice(s![..n_chunks, .., ..]).outer_iter() {
        ws.wtw += &part;
    }
    ws.cross_parts.slice(s![..n_chunks]).iter().sum()
}

/// The per-[`ROW_CHUNK`] scratch of a range of rows of a block.
struct ChunkScratch<'a> {
    /// X Hᵀ of the rows.
    xht: ArrayViewMut2<'a, f32>,
    /// W_cᵀW_c per chunk (added to: zero it first).
    wtw: ArrayViewMut3<'a, f64>,
    /// tr(W_cᵀ X_c Hᵀ) per chunk.
    cross: ArrayViewMut1<'a, f64>,
    /// Denominators per chunk.
    den: ArrayViewMut3<'a, f32>,
    /// W_cᵀW_c in f32 per chunk.
    gram: ArrayViewMut3<'a, f32>,
}

/// The W update of rows `x` (a block or a range of its rows starting at a
/// multiple of [`ROW_CHUNK`]), parallel over fixed row chunks, each chunk's
/// partials into its own slot of `scratch`.
fn update_w_chunks(
    rule: &dyn UpdateRule,
    x: &RowBlock<'_>,
    mut w: ArrayViewMut2<'_, f32>,
    hst: ArrayView2<'_, f32>,
    hht: ArrayView2<'_, f32>,
    scratch: ChunkScratch<'_>,
) {
    let ChunkScratch {
        mut xht,
        mut wtw,
        mut cross,
        mut den,
        mut gram,
    } = scratch;
    w.axis_chunks_iter_mut(Axis(0), ROW_CHUNK)
        .into_par_iter()
        .zip(xht.axis_chunks_iter_mut(Axis(0), ROW_CHUNK))
        .zip(wtw.axis_chunks_iter_mut(Axis(0), 1))
        .zip(cross.axis_chunks_iter_mut(Axis(0), 1))
        .zip(den.outer_iter_mut())
        .zip(gram.outer_iter_mut())
        .enumerate()
        .for_each(
            |(chunk_idx, (((((w_c, mut xht_c), mut wtw_c), mut cross_c), mut den_c), gram_c))| {
                let n_c = w_c.nrows();
                let rows = chunk_idx * ROW_CHUNK..chunk_idx * ROW_CHUNK + n_c;
                match x {
                    RowBlock::Dense(x) => {
                        kernels::xht_dense(x.slice(s![rows, ..]), hst, xht_c.view_mut())
                    }
                    RowBlock::Csr(x) => kernels::xht_csr(&csr_rows(x, rows), hst, xht_c.view_mut()),
                }
                cross_c[0] = rule.update_w_rows(
                    w_c,
                    xht_c.view(),
                    hht,
                    wtw_c.index_axis_mut(Axis(0), 0),
                    den_c.slice_mut(s![..n_c, ..]),
                    gram_c,
                );
            },
        );
}

/// W update of one block, parallel over fixed row chunks; returns the
/// block's tr(W_bᵀ X_b Hᵀ) and adds W_bᵀW_b into the workspace.
fn update_w_block(
    rule: &dyn UpdateRule,
    x: &RowBlock<'_>,
    w_b: ArrayViewMut2<'_, f32>,
    hst: ArrayView2<'_, f32>,
    hht: ArrayView2<'_, f32>,
    ws: &mut Workspace,
) -> f64 {
    let n_b = w_b.nrows();
    let n_chunks = n_b.div_ceil(ROW_CHUNK);
    ws.wtw_parts.slice_mut(s![..n_chunks, .., ..]).fill(0.0);
    update_w_chunks(
        rule,
        x,
        w_b,
        hst,
        hht,
        ChunkScratch {
            xht: ws.xht.slice_mut(s![..n_b, ..]),
            wtw: ws.wtw_parts.slice_mut(s![..n_chunks, .., ..]),
            cross: ws.cross_parts.slice_mut(s![..n_chunks]),
            den: ws.den_rows.slice_mut(s![..n_chunks, .., ..]),
            gram: ws.gram_parts.slice_mut(s![..n_chunks, .., ..]),
        },
    );
    fold_chunk_partials(ws, n_chunks)
}

/// `xtw += X_bᵀ W_b`.
fn accumulate_xtw(w_b: ArrayView2<'_, f32>, x: &RowBlock<'_>, ws: &mut Workspace) {
    match x {
        RowBlock::Dense(x) => accumulate_xtw_dense(w_b, *x, ws),
        RowBlock::Csr(x) => accumulate_xtw_csr(w_b, x, ws),
    }
}

/// Dense: parallel over fixed column chunks, each owning its rows of `xtw`.
fn accumulate_xtw_dense(w_b: ArrayView2<'_, f32>, x: ArrayView2<'_, f32>, ws: &mut Workspace) {
    if ws.xtw_block.nrows() != ws.xtw.nrows() {
        ws.xtw_block = Array2::zeros(ws.xtw.dim());
    }
    x.axis_chunks_iter(Axis(1), COL_CHUNK)
        .into_par_iter()
        .zip(ws.xtw_block.axis_chunks_iter_mut(Axis(0), COL_CHUNK))
        .zip(ws.xtw.axis_chunks_iter_mut(Axis(0), COL_CHUNK))
        .for_each(|((x_c, scratch), acc)| kernels::accumulate_xtw_dense(w_b, x_c, scratch, acc));
}

/// Sparse: [`SPARSE_PARTS`] fixed row ranges scatter into their own
/// partials in parallel; the partials are then added in order, in parallel
/// over column chunks.
/// With the block's column copy ([`CsrBlock::columns`]), the columns gather
/// their sums instead, part by part, in parallel over column chunks: the
/// same bits, no partials.
fn accumulate_xtw_csr(w_b: ArrayView2<'_, f32>, x: &CsrBlock<'_>, ws: &mut Workspace) {
    let (n_cols, k) = ws.xtw.dim();
    let n_b = x.n_rows();
    let n_parts = SPARSE_PARTS.min(n_b.max(1));
    let part_rows = |p: usize| (p * n_b / n_parts)..((p + 1) * n_b / n_parts);
    if let Some(columns) = &x.columns {
        let part_ends: Vec<usize> = (0..n_parts).map(|p| part_rows(p).end).collect();
        ws.xtw
            .axis_chunks_iter_mut(Axis(0), COL_CHUNK)
            .into_par_iter()
            .enumerate()
            .for_each(|(chunk_idx, acc)| {
                let cols = chunk_idx * COL_CHUNK..chunk_idx * COL_CHUNK + acc.nrows();
                kernels::accumulate_xtw_csc(columns, w_b, &part_ends, cols, acc);
            });
        return;
    }
    if ws.xtw_parts.shape()[0] != SPARSE_PARTS {
        ws.xtw_parts = Array3::zeros((SPARSE_PARTS, n_cols, k));
    }
    let mut parts = ws.xtw_parts.slice_mut(s![..n_parts, .., ..]);
    parts
        .outer_iter_mut()
        .into_par_iter()
        .enumerate()
        .for_each(|(p, mut part)| {
            part.fill(0.0);
            let rows = part_rows(p);
            kernels::accumulate_xtw_csr(&csr_rows(x, rows.clone()), w_b.slice(s![rows, ..]), part);
        });
    let parts = ws.xtw_parts.slice(s![..n_parts, .., ..]);
    ws.xtw
        .axis_chunks_iter_mut(Axis(0), COL_CHUNK)
        .into_par_iter()
        .enumerate()
        .for_each(|(chunk_idx, mut acc)| {
            let cols = chunk_idx * COL_CHUNK..chunk_idx * COL_CHUNK + acc.nrows();
            for part in parts.outer_iter() {
                acc.zip_mut_with(&part.slice(s![cols.clone(), ..]), |a, &v| {
                    *a += f64::from(v)
                });
            }
        });
}

/// `H Hᵀ` in f64.
fn gram_rows(h: ArrayView2<'_, f32>) -> Array2<f64> {
    let k = h.nrows();
    let mut out = Array2::zeros((k, k));
    for a in 0..k {
        for b in a..k {
            let v: f64 = h
                .row(a)
                .iter()
                .zip(h.row(b))
                .map(|(&x, &y)| f64::from(x) * f64::from(y))
                .sum();
            out[(a, b)] = v;
            out[(b, a)] = v;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::NmfParams;

    fn bits(values: impl IntoIterator<Item = f64>) -> Vec<u64> {
        values.into_iter().map(f64::to_bits).collect()
    }

    /// The fused dense step gives the separate steps' W, XᵀW, WᵀW and
    /// cross term bit for bit: three groups, the last one ending inside a
    /// reduction chunk; more than one column range; both solvers.
    #[test]
    fn fused_dense_step_equals_the_separate_steps() {
        use crate::rules::Solver;
        let (n_b, n_cols, k) = (2 * FUSED_ROWS + 300, 600, 7);
        let x = Array2::from_shape_fn((n_b, n_cols), |(i, j)| {
            ((i * 31 + j * 17) % 13) as f32 * 0.37
        });
        let hst = Array2::from_shape_fn((n_cols, k), |(j, a)| {
            0.1 + ((j * 5 + a * 3) % 7) as f32 / 9.0
        });
        let hht = hst.t().dot(&hst);
        let w0 = Array2::from_shape_fn((n_b, k), |(i, a)| 0.2 + ((i * 3 + a) % 11) as f32 / 13.0);
        for solver in [Solver::Mu, Solver::Hals] {
            let params = NmfParams {
                k,
                solver,
                ..NmfParams::default()
            };
            let rule = crate::rules::rule(&params, n_b, n_cols, (n_b * n_cols) as u64);
            let block = RowBlock::Dense(x.view());
            let mut ws_a = Workspace::new(k, n_cols, n_b);
            let mut w_a = w0.clone();
            let cross_a = update_w_block(
                rule.as_ref(),
                &block,
                w_a.view_mut(),
                hst.view(),
                hht.view(),
                &mut ws_a,
            );
            accumulate_xtw(w_a.view(), &block, &mut ws_a);
            let mut ws_b = Workspace::new(k, n_cols, n_b);
            let mut w_b = w0.clone();
            let cross_b = update_w_and_xtw(
                rule.as_ref(),
                &block,
                w_b.view_mut(),
                hst.view(),
                hht.view(),
                &mut ws_b,
            );
            assert_eq!(cross_a.to_bits(), cross_b.to_bits(), "{solver:?}");
            assert_eq!(w_a, w_b, "{solver:?}");
            assert_eq!(
                bits(ws_a.xtw.iter().copied()),
                bits(ws_b.xtw.iter().copied()),
                "{solver:?}"
            );
            assert_eq!(
                bits(ws_a.wtw.iter().copied()),
                bits(ws_b.wtw.iter().copied()),
                "{solver:?}"
            );
        }
    }

    #[test]
    fn block_ranges_cover_rows_once() {
        assert_eq!(block_ranges(10, 4), vec![0..4, 4..8, 8..10]);
        assert_eq!(block_ranges(3, 10), vec![0..3]);
    }
}
