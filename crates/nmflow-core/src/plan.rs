//! What a fit will hold in memory, for planning and for `nmflow inspect`.

use crate::solver::{ROW_CHUNK, SPARSE_PARTS};

/// Bytes a fit holds, by part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// W (`n_rows × k` f32).
    pub w_bytes: u64,
    /// H and the `k × n_cols` products and scratch of the updates.
    pub factor_bytes: u64,
    /// Row blocks of X in flight (the one computed on, the one read ahead,
    /// the one queued) and the per-block scratch.
    pub block_bytes: u64,
}

impl MemoryEstimate {
    /// Sum of the parts.
    pub fn total_bytes(&self) -> u64 {
        self.w_bytes
            .saturating_add(self.factor_bytes)
            .saturating_add(self.block_bytes)
    }
}

/// Copies of a dense block held at once (see [`estimate_memory`]).
pub const DENSE_BLOCK_COPIES: u64 = 8;

/// Bytes per stored entry of a sparse block in flight, over all its copies
/// (the reader's raw and converted buffers, the read-ahead queue, the block
/// computed on, the cache's mapped pages): measured as peak RSS against
/// block size on 50,000 cells × 20,000 genes, 40 to 50 bytes.
pub const SPARSE_BYTES_PER_STORED: u64 = 52;

/// The memory a fit of an `n_rows × n_cols` matrix at `k` components with
/// blocks of `block_rows` rows holds (heap; the program itself, the HDF5
/// chunk cache and the mapped pages of inputs come on top).
pub fn estimate_memory(
    n_rows: usize,
    n_cols: usize,
    k: usize,
    block_rows: usize,
) -> MemoryEstimate {
    let (n_rows, n_cols, k, block_rows) =
        (n_rows as u64, n_cols as u64, k as u64, block_rows as u64);
    // H, its denominator, WᵀX_s (f32), one block's WᵀX (f32), (H D⁻¹)ᵀ (f32),
    // the WᵀX accumulator (f64): 7 × 4 bytes per k × n_cols entry.
    // Saturating: a damaged file may announce any shape, and an estimate
    // of u64::MAX is simply refused by every budget.
    let factor_bytes = sum(&[prod(&[28, k, n_cols]), prod(&[48, n_cols])]);
    let n_chunks = block_rows.div_ceil(ROW_CHUNK as u64);
    // Copies of a dense block of X alive at once, measured (peak RSS against
    // block height on 1,000,000 × 1,000): the block computed on, the one
    // queued and the one being read by the read-ahead thread (with the
    // reader's own buffer), the packed copy of the XᵀW product, and the
    // mapped cache pages of the current and next blocks.
    let block_bytes = sum(&[
        prod(&[DENSE_BLOCK_COPIES, 4, block_rows, n_cols]),
        prod(&[4, block_rows, k]),
        prod(&[n_chunks, chunk_bytes(k)]),
    ]);
    MemoryEstimate {
        w_bytes: prod(&[4, n_rows, k]),
        factor_bytes,
        block_bytes,
    }
}

/// Bytes one pass over X reads: 4 per value of a dense matrix; 8 per stored
/// value (value and index) and 8 per row (its offset) of a sparse one.
/// Saturating.
pub fn pass_bytes(n_rows: usize, n_cols: usize, nnz: Option<u64>) -> u64 {
    match nnz {
        Some(nnz) => sum(&[prod(&[8, nnz]), prod(&[8, n_rows as u64])]),
        None => prod(&[4, n_rows as u64, n_cols as u64]),
    }
}

/// Per row chunk scratch: W_cᵀW_c (f64 and f32 partials), the cross term.
fn chunk_bytes(k: u64) -> u64 {
    sum(&[prod(&[8, k, k]), prod(&[4, k]), 8])
}

/// Saturating product.
fn prod(factors: &[u64]) -> u64 {
    factors.iter().fold(1u64, |p, &f| p.saturating_mul(f))
}

/// Saturating sum.
fn sum(terms: &[u64]) -> u64 {
    terms.iter().fold(0u64, |s, &t| s.saturating_add(t))
}

/// [`estimate_memory`] for a sparse (CSR) input with `nnz` stored entries:
/// blocks hold their stored entries (value and index, read and converted)
/// instead of dense rows, and the sparse XᵀW partials are added.
pub fn estimate_memory_sparse(
    n_rows: usize,
    n_cols: usize,
    k: usize,
    block_rows: usize,
    nnz: u64,
) -> MemoryEstimate {
    let dense = estimate_memory(n_rows, n_cols, k, block_rows);
    let block_nnz = nnz.saturating_mul(block_rows as u64) / (n_rows.max(1) as u64);
    let (n_cols, k, block_rows) = (n_cols as u64, k as u64, block_rows as u64);
    let n_chunks = block_rows.div_ceil(ROW_CHUNK as u64);
    let block_bytes = sum(&[
        prod(&[SPARSE_BYTES_PER_STORED, block_nnz]),
        prod(&[16, block_rows]),
        prod(&[4, block_rows, k]),
        prod(&[n_chunks, chunk_bytes(k)]),
        prod(&[SPARSE_PARTS as u64, 4, n_cols, k]),
    ]);
    MemoryEstimate {
        block_bytes,
        ..dense
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimate_grows_with_each_dimension() {
        let base = estimate_memory(1000, 100, 5, 64);
        assert_eq!(base.w_bytes, 4 * 1000 * 5);
        assert!(estimate_memory(2000, 100, 5, 64).total_bytes() > base.total_bytes());
        assert!(estimate_memory(1000, 200, 5, 64).factor_bytes > base.factor_bytes);
        assert!(estimate_memory(1000, 100, 5, 128).block_bytes > base.block_bytes);
        assert_eq!(
            base.total_bytes(),
            base.w_bytes + base.factor_bytes + base.block_bytes
        );
    }
}

/// Memory of the program itself (code, libraries, the HDF5 library's
/// caches, thread stacks), measured as the peak RSS of small runs.
pub const BASELINE_BYTES: u64 = 40 << 20;

/// Share of a budget plans leave unused: the resident memory of a run
/// varies by about ±10 MiB around the model from run to run (allocator
/// arenas of the worker threads, page-cache folios of mapped files), which
/// at small budgets is several percent.
pub const HEADROOM_PERCENT: u64 = 8;

/// The part of `budget` plans may use (all but [`HEADROOM_PERCENT`]).
pub fn usable_budget(budget: u64) -> u64 {
    budget / 100 * (100 - HEADROOM_PERCENT)
}

/// What a memory plan is made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanInput {
    /// Rows of X.
    pub n_rows: usize,
    /// Columns of X.
    pub n_cols: usize,
    /// Components.
    pub k: usize,
    /// Stored entries when X is sparse.
    pub nnz: Option<u64>,
    /// The source's preferred block height.
    pub preferred_rows: Option<usize>,
    /// The budget in bytes (whole process).
    pub budget: u64,
    /// W lives in a memory-mapped file: only about one block of it counts.
    pub w_on_disk: bool,
}

/// A plan that keeps a fit within its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Rows per block.
    pub block_rows: usize,
    /// What the fit holds with these blocks.
    pub estimate: MemoryEstimate,
    /// The smallest budget that would work.
    pub min_budget: u64,
}

impl Plan {
    /// Predicted peak of the whole process.
    pub fn peak_bytes(&self) -> u64 {
        BASELINE_BYTES.saturating_add(self.estimate.total_bytes())
    }
}

/// A number of bytes, displayed in MiB or GiB (`512.0 MiB`, `2.00 GiB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bytes(pub u64);

impl std::fmt::Display for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.0 as f64;
        if b >= (1u64 << 30) as f64 {
            write!(f, "{:.2} GiB", b / (1u64 << 30) as f64)
        } else {
            write!(f, "{:.1} MiB", b / (1u64 << 20) as f64)
        }
    }
}

/// The budget is smaller than the fixed part of a fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "a memory budget of {} is too small: this fit needs at least {} ({} for W, {} for H and the \
     k × columns products, the program and one small block); give --memory {}MiB or more",
    Bytes(*budget), Bytes(*min_budget), Bytes(*w_bytes), Bytes(*factor_bytes),
    min_budget.div_ceil(1 << 20)
)]
pub struct BudgetTooSmall {
    /// The budget given.
    pub budget: u64,
    /// The smallest budget that works.
    pub min_budget: u64,
    /// Bytes of W.
    pub w_bytes: u64,
    /// Bytes of H and products.
    pub factor_bytes: u64,
}

/// The largest block height (at most the default one) whose fit stays
/// within `input.budget`.
pub fn plan(input: PlanInput) -> Result<Plan, BudgetTooSmall> {
    let estimate_for = |rows: usize| {
        let mut e = match input.nnz {
            Some(nnz) => estimate_memory_sparse(input.n_rows, input.n_cols, input.k, rows, nnz),
            None => estimate_memory(input.n_rows, input.n_cols, input.k, rows),
        };
        if input.w_on_disk {
            // The block being updated, and the one just released.
            e.w_bytes = e.w_bytes.min(prod(&[8, rows as u64, input.k as u64]));
        }
        e
    };
    let peak = |rows: usize| BASELINE_BYTES.saturating_add(estimate_for(rows).total_bytes());
    // Plans use all but `HEADROOM_PERCENT` of the budget.
    let usable = usable_budget(input.budget);
    let min_rows = input.n_rows.clamp(1, 64);
    let min_budget = peak(min_rows)
        .div_ceil(100 - HEADROOM_PERCENT)
        .saturating_mul(100);
    if input.budget < min_budget {
        let e = estimate_for(min_rows);
        return Err(BudgetTooSmall {
            budget: input.budget,
            min_budget,
            w_bytes: e.w_bytes,
            factor_bytes: e.factor_bytes,
        });
    }
    let default =
        crate::params::default_block_rows(input.n_rows, input.n_cols, input.preferred_rows);
    let mut rows = default.max(min_rows);
    if peak(rows) > usable {
        // Largest height that fits, by bisection (cost grows with height).
        let (mut lo, mut hi) = (min_rows, rows);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if peak(mid) <= usable {
                lo = mid
            } else {
                hi = mid
            }
        }
        rows = lo;
        if let Some(unit) = input.preferred_rows.filter(|&u| u > 0 && u <= rows) {
            rows = rows / unit * unit;
        }
    }
    Ok(Plan {
        block_rows: rows,
        estimate: estimate_for(rows),
        min_budget,
    })
}

#[cfg(test)]
mod plan_tests {
    use super::*;

    fn input(budget: u64) -> PlanInput {
        PlanInput {
            n_rows: 2_000_000,
            n_cols: 20_000,
            k: 30,
            nnz: Some(2_400_000_000),
            preferred_rows: Some(3_000),
            budget,
            w_on_disk: false,
        }
    }

    #[test]
    fn plans_fit_their_budget_and_refuse_below_the_minimum() {
        for budget in [600u64 << 20, 1 << 30, 2 << 30, 8 << 30] {
            let plan = plan(input(budget)).expect("fits");
            assert!(plan.peak_bytes() <= budget, "{budget}: {plan:?}");
            assert!(plan.block_rows >= 64);
        }
        let small = plan(input(300 << 20)).unwrap_err();
        assert!(small.min_budget > 300 << 20);
        assert_eq!(
            plan(input(small.min_budget))
                .expect("the minimum works")
                .block_rows,
            64
        );
    }

    #[test]
    fn a_large_budget_keeps_the_default_block() {
        let p = plan(PlanInput {
            nnz: None,
            ..input(64 << 30)
        })
        .expect("fits");
        assert_eq!(
            p.block_rows,
            crate::params::default_block_rows(2_000_000, 20_000, Some(3_000))
        );
    }
}
