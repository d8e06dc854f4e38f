//! Projecting rows onto fixed components (`nmflow transform`): H is held
//! fixed and every row of W is solved, while its block is in memory, as the
//! non-negative least-squares problem min ‖x_s − w H‖ over w ≥ 0. X is read
//! once.
//!
//! The rows are independent, so the result does not depend on the block
//! height or the number of threads (chunks of `ROW_CHUNK` rows, partial
//! sums added in chunk order).

use std::ops::Range;
use std::time::Instant;

use ndarray::{Array1, Array2, Array3, ArrayView2, ArrayViewMut2, Axis, s};
use rayon::prelude::*;

use crate::collective::{Alone, Shard};
use crate::error::FitError;
use crate::factor::FactorStore;
use crate::kernels::{self, Penalty, RowUpdate, Sweeps};
use crate::normalize::{Normalize, Normalizer};
use crate::rules::Solver;
use crate::solver::{Event, PassKind, ROW_CHUNK, begin_pass, block_ranges, read_block};
use crate::source::{RowBlock, RowSource};
use crate::stats::ColumnStats;

/// The fixed components and how each row is solved.
#[derive(Debug, Clone)]
pub struct Projection {
    /// H in the scaled units of the fit that made it, `k × n_cols` (columns
    /// in the order of the source's columns; a column the fit did not see is
    /// zero).
    pub h: Array2<f32>,
    /// The columns of H (`k × m`) of genes the source lacks: they count as
    /// zeros of X (they weigh in HHᵀ and in the error).
    pub absent: Array2<f32>,
    /// The divisor of every column (the fit's); ∞ for a column the fit did
    /// not see, which is then ignored (it is scaled to zero).
    pub col_scale: Vec<f32>,
    /// The per-row normalisation the fit applied.
    pub normalize: Normalize,
    /// How a row is solved: HALS (exact coordinate descent, from W = 0, as
    /// scikit-learn's `cd` transform) or multiplicative updates (from
    /// sqrt(mean(x_s)/k), the row's share of scikit-learn's start).
    pub solver: Solver,
    /// Sweeps per row at most.
    pub max_sweeps: usize,
    /// A row stops once a sweep changes it by at most `tol` times the first
    /// sweep's change.
    pub tol: f64,
    /// Rows per block.
    pub block_rows: usize,
}

/// What a projection reports besides W.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectionOutcome {
    /// ‖X_s − W H‖_F / ‖X_s‖_F over the whole input.
    pub rel_error: f64,
    /// Stored entries read.
    pub n_stored: u64,
    /// Seconds of the pass.
    pub seconds: f64,
}

/// Solves W (`n_rows × k`, in `w`) for the rows of `source` with H fixed.
/// Every value is checked as for a fit (negative and non-finite values are
/// refused, naming the row and column).
///
/// # Panics
/// If `w` is not `n_rows × k` or the projection's H and scales do not have
/// the source's columns.
pub fn project(
    source: &mut dyn RowSource,
    projection: &Projection,
    w: &mut dyn FactorStore,
    on_event: &mut dyn FnMut(Event),
) -> Result<ProjectionOutcome, FitError> {
    let shard = Shard {
        collective: &Alone,
        first_row: 0,
        n_rows: source.n_rows(),
    };
    project_sharded(shard, source, projection, w, on_event)
}

/// [`project`] for one process of several sharing the rows: `source` and
/// `w` hold this process's rows; the error's sums are combined over the
/// processes, so every one returns the whole matrix's relative error. A
/// failure on any process fails every one.
///
/// # Panics
/// As [`project`].
pub fn project_sharded(
    shard: Shard<'_>,
    source: &mut dyn RowSource,
    projection: &Projection,
    w: &mut dyn FactorStore,
    on_event: &mut dyn FnMut(Event),
) -> Result<ProjectionOutcome, FitError> {
    let started = Instant::now();
    let (n_rows, n_cols) = (source.n_rows(), source.n_cols());
    let k = projection.h.nrows();
    assert_eq!(w.shape(), (n_rows, k), "W has the wrong shape");
    assert_eq!(projection.h.ncols(), n_cols, "H has the wrong columns");
    assert_eq!(projection.col_scale.len(), n_cols, "a scale per column");
    assert_eq!(projection.absent.nrows(), k, "absent columns of H");
    if n_rows == 0 || n_cols == 0 {
        return Err(FitError::EmptyMatrix { n_rows, n_cols });
    }
    let inv_scale: Array1<f32> = projection.col_scale.iter().map(|&d| 1.0 / d).collect();
    let hst = Array2::from_shape_fn((n_cols, k), |(j, a)| projection.h[(a, j)] * inv_scale[j]);
    let hht = projection.h.dot(&projection.h.t()) + projection.absent.dot(&projection.absent.t());
    let sweeps = Sweeps::UntilSettled {
        cap: projection.max_sweeps.max(1),
        rel_change_sq: (projection.tol * projection.tol) as f32,
    };
    let blocks = block_ranges(n_rows, projection.block_rows.max(1));
    let mut normalizer = Normalizer::new(projection.normalize);
    let mut stats = ColumnStats::new(n_cols);
    let mut totals = Totals::new(k);
    let mut read = || -> Result<(), FitError> {
        begin_pass(source, &mut normalizer, &blocks)?;
        for rows in &blocks {
            let x = read_block(source, &mut normalizer, rows.clone(), n_cols)?;
            let first = shard.first_row + rows.start;
            match &x {
                RowBlock::Dense(x) => stats.add_block(*x, first)?,
                RowBlock::Csr(x) => stats.add_csr_block(x, first)?,
            }
            let mut w_b = w.rows_mut(rows.clone());
            let solve = BlockSolve {
                x: &x,
                hst: hst.view(),
                hht: hht.view(),
                inv_scale: inv_scale.view(),
                solver: projection.solver,
                sweeps,
            };
            solve.run(w_b.view_mut(), &mut totals);
            w.release(rows.clone());
            on_event(Event::Block {
                kind: PassKind::Iterate,
                rows_done: rows.end,
                n_rows,
            });
        }
        Ok(())
    };
    let result = read();
    shard.agree(result)?;
    if shard.collective.size() > 1 {
        let mut sums: Vec<f64> = totals.wtw.iter().copied().collect();
        sums.extend([totals.cross, totals.x_norm_sq, totals.n_stored as f64]);
        shard.collective.sum(&mut sums);
        let k2 = totals.wtw.len();
        for (t, &v) in totals.wtw.iter_mut().zip(&sums[..k2]) {
            *t = v;
        }
        totals.cross = sums[k2];
        totals.x_norm_sq = sums[k2 + 1];
        totals.n_stored = sums[k2 + 2] as u64;
    }
    let fit_term: f64 = (&totals.wtw * &hht.mapv(f64::from)).sum();
    let err_sq = totals.x_norm_sq - 2.0 * totals.cross + fit_term;
    if !(err_sq.is_finite() && totals.x_norm_sq.is_finite()) {
        return Err(FitError::NotFinite {
            iteration: 1,
            what: crate::error::NonFinite::W,
            cause: "an overflow in single precision while projecting",
        });
    }
    if totals.x_norm_sq <= 0.0 {
        return Err(FitError::ZeroMatrix);
    }
    Ok(ProjectionOutcome {
        rel_error: (err_sq.max(0.0) / totals.x_norm_sq).sqrt(),
        n_stored: totals.n_stored,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Sums over the pass, added block by block in order.
struct Totals {
    wtw: Array2<f64>,
    cross: f64,
    x_norm_sq: f64,
    n_stored: u64,
}

impl Totals {
    fn new(k: usize) -> Self {
        Self {
            wtw: Array2::zeros((k, k)),
            cross: 0.0,
            x_norm_sq: 0.0,
            n_stored: 0,
        }
    }
}

/// One block's rows, solved chunk by chunk.
struct BlockSolve<'a> {
    x: &'a RowBlock<'a>,
    hst: ArrayView2<'a, f32>,
    hht: ArrayView2<'a, f32>,
    inv_scale: ndarray::ArrayView1<'a, f32>,
    solver: Solver,
    sweeps: Sweeps,
}

impl BlockSolve<'_> {
    fn run(&self, mut w_b: ArrayViewMut2<'_, f32>, totals: &mut Totals) {
        let (n_b, k) = w_b.dim();
        let n_chunks = n_b.div_ceil(ROW_CHUNK);
        let mut wtw_parts = Array3::<f64>::zeros((n_chunks, k, k));
        let mut sums = vec![(0.0f64, 0.0f64); n_chunks];
        w_b.axis_chunks_iter_mut(Axis(0), ROW_CHUNK)
            .into_par_iter()
            .zip(wtw_parts.outer_iter_mut())
            .zip(sums.par_iter_mut())
            .enumerate()
            .for_each(|(c, ((w_c, wtw_c), sum))| {
                let rows = c * ROW_CHUNK..c * ROW_CHUNK + w_c.nrows();
                *sum = self.chunk(rows, w_c, wtw_c);
            });
        for part in wtw_parts.outer_iter() {
            totals.wtw += &part;
        }
        for (cross, x_sq) in sums {
            totals.cross += cross;
            totals.x_norm_sq += x_sq;
        }
        totals.n_stored += match self.x {
            RowBlock::Dense(x) => x.len() as u64,
            RowBlock::Csr(x) => x.nnz() as u64,
        };
    }

    /// Solves the rows `rows` (block-relative) into `w_c`, adds their WᵀW
    /// into `wtw`; returns (⟨W, X_s Hᵀ⟩, ‖X_s‖²) over them.
    fn chunk(
        &self,
        rows: Range<usize>,
        mut w_c: ArrayViewMut2<'_, f32>,
        wtw: ArrayViewMut2<'_, f64>,
    ) -> (f64, f64) {
        let (n_c, k) = w_c.dim();
        let mut xht = Array2::<f32>::zeros((n_c, k));
        let mut x_sq = 0.0f64;
        let mut row_means = vec![0.0f64; n_c];
        let n_cols = self.inv_scale.len() as f64;
        match self.x {
            RowBlock::Dense(x) => {
                let x = x.slice(s![rows, ..]);
                kernels::xht_dense(x, self.hst, xht.view_mut());
                for (row, mean) in x.rows().into_iter().zip(&mut row_means) {
                    for (&v, &inv) in row.iter().zip(self.inv_scale) {
                        let v = f64::from(v * inv);
                        x_sq += v * v;
                        *mean += v;
                    }
                    *mean /= n_cols;
                }
            }
            RowBlock::Csr(x) => {
                let part = crate::solver::csr_rows(x, rows);
                kernels::xht_csr(&part, self.hst, xht.view_mut());
                for (r, mean) in row_means.iter_mut().enumerate() {
                    let (cols, vals) = part.row(r);
                    for (&c, &v) in cols.iter().zip(vals) {
                        let v = f64::from(v * self.inv_scale[c as usize]);
                        x_sq += v * v;
                        *mean += v;
                    }
                    *mean /= n_cols;
                }
            }
        }
        let update = match self.solver {
            // From zero, as scikit-learn's `cd` transform.
            Solver::Hals => {
                w_c.fill(0.0);
                RowUpdate::Hals
            }
            // From the row's share of scikit-learn's sqrt(mean(X)/k).
            Solver::Mu => {
                for (mut row, &mean) in w_c.rows_mut().into_iter().zip(&row_means) {
                    row.fill((mean / k as f64).sqrt() as f32);
                }
                RowUpdate::Mu
            }
        };
        let mut scratch = vec![0.0f32; k];
        kernels::update_rows(
            update,
            w_c.view_mut(),
            xht.view(),
            self.hht,
            Penalty::default(),
            self.sweeps,
            &mut scratch,
        );
        let mut gram = Array2::<f32>::zeros((k, k));
        let cross = kernels::w_rows_products(w_c.view(), xht.view(), wtw, gram.view_mut());
        (cross, x_sq)
    }
}
