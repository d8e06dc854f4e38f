//! The memory plan: what every command holds, and how its runs are split
//! into batches within the budget. One pure function, [`plan_runs`], decides
//! the block height, where W lives, the batches and the predicted peak from
//! a [`Request`] that lists everything held beside the runs; `fit`, `sweep`
//! and `inspect` all print the [`Plan`] it returns.

use std::fmt;
use std::ops::Range;

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
pub(crate) const DENSE_BLOCK_COPIES: u64 = 8;

/// Bytes per stored entry of a sparse block in flight, over all its copies
/// (the reader's raw and converted buffers, the read-ahead queue, the block
/// computed on, the cache's mapped pages): measured as peak RSS against
/// block size on 50,000 cells × 20,000 genes, 40 to 50 bytes.
pub(crate) const SPARSE_BYTES_PER_STORED: u64 = 52;

/// The memory a fit of an `n_rows × n_cols` matrix at `k` components with
/// blocks of `block_rows` rows holds (heap; the program itself, the HDF5
/// chunk cache and the mapped pages of inputs come on top).
pub(crate) fn estimate_memory(
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

/// Bytes of the block cache's copy of X on disk, without and with the
/// column copy of sparse blocks (the same entries column by column: rows
/// as u32 and values again, 8 bytes per stored value, and `n_cols + 1`
/// offsets per block, counted here for blocks of 1,024 rows
/// rows, fewer than any plan makes for matrices this wide). Dense inputs
/// have no column copy. Saturating.
pub fn cache_bytes(n_rows: usize, n_cols: usize, nnz: Option<u64>) -> (u64, u64) {
    let rows_only = pass_bytes(n_rows, n_cols, nnz);
    let with_columns = match nnz {
        Some(nnz) => {
            let blocks = n_rows.div_ceil(COLUMN_COPY_BLOCK_ROWS).max(1) as u64;
            sum(&[
                rows_only,
                prod(&[8, nnz]),
                prod(&[blocks, 8, n_cols as u64 + 1]),
            ])
        }
        None => rows_only,
    };
    (rows_only, with_columns)
}

/// The block height [`cache_bytes`] counts the column copy's offsets for.
const COLUMN_COPY_BLOCK_ROWS: usize = 1024;

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
pub(crate) fn estimate_memory_sparse(
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
    // The block cache's first pass also sorts each block's entries by
    // column (rows and CSR positions, 8 bytes per stored value; two column
    // offset arrays) and writes their values in that order (4 bytes).
    let block_bytes = sum(&[
        prod(&[SPARSE_BYTES_PER_STORED, block_nnz]),
        prod(&[12, block_nnz]),
        prod(&[16, n_cols]),
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
pub(crate) const BASELINE_BYTES: u64 = 40 << 20;

/// Share of a budget plans leave unused: the resident memory of a run
/// varies by about ±10 MiB around the model from run to run (allocator
/// arenas of the worker threads, page-cache folios of mapped files), which
/// at small budgets is several percent.
pub const HEADROOM_PERCENT: u64 = 8;

/// The part of `budget` plans may use (all but [`HEADROOM_PERCENT`]).
pub(crate) fn usable_budget(budget: u64) -> u64 {
    budget / 100 * (100 - HEADROOM_PERCENT)
}

/// What the block height of one run is chosen for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BlockRequest {
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

/// The block height that keeps one run within its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BlockPlan {
    /// Rows per block.
    block_rows: usize,
    /// The smallest budget that would work.
    min_budget: u64,
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
fn block_plan(input: BlockRequest) -> Result<BlockPlan, BudgetTooSmall> {
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
    Ok(BlockPlan {
        block_rows: rows,
        min_budget,
    })
}

/// Something a command holds beside its runs, for its whole length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// The row sample and its principal components.
    Sample,
    /// Given starting factors (H₀ and its copy in the run; W₀ is streamed
    /// into W's store and costs nothing beside it).
    Starts,
    /// Row and column names written into results.
    Names,
    /// Known labels of the rows (text read, then codes).
    Labels,
    /// The cluster of every row of one run.
    Clusters,
    /// Consensus matrices over the sampled rows, one per k.
    Consensus,
    /// H of every finished run, kept for spectra stability.
    Spectra,
}

impl Held {
    /// The name printed in plans.
    pub fn as_str(self) -> &'static str {
        match self {
            Held::Sample => "sample",
            Held::Starts => "starts",
            Held::Names => "names",
            Held::Labels => "labels",
            Held::Clusters => "clusters",
            Held::Consensus => "consensus",
            Held::Spectra => "spectra",
        }
    }
}

/// Bytes counted per row or column name: the `String` (24 bytes) and its
/// text, rounded up by the allocator (cell barcodes and gene names are
/// under 40 characters).
pub(crate) const NAME_BYTES: u64 = 64;

/// Bytes of `n` names.
pub fn names_bytes(n: usize) -> u64 {
    prod(&[NAME_BYTES, n as u64])
}

/// Bytes of a row sample of `n_sample` rows of an `n_rows × n_cols` matrix
/// (`nnz` stored entries when sparse): its stored entries (value and
/// index), and the subspace iteration of its PCA (a few f64 blocks of
/// `n_cols × 6` and `n_sample × 6`).
pub fn sample_bytes(n_rows: usize, n_cols: usize, nnz: Option<u64>, n_sample: usize) -> u64 {
    let n_rows = n_rows.max(1) as u64;
    let n_sample = (n_sample as u64).min(n_rows);
    let per_row = match nnz {
        Some(nnz) => nnz.div_ceil(n_rows),
        None => n_cols as u64,
    };
    sum(&[
        prod(&[n_sample, sum(&[prod(&[per_row, 8]), 8])]),
        prod(&[sum(&[n_cols as u64, n_sample]), 8 * 6 * 3]),
    ])
}

/// Bytes of `n_ks` consensus matrices over `n_sample` rows (a u32 per
/// pair of rows), and of the dense f32 matrices of their shown rows
/// written at the end.
pub fn consensus_bytes(n_ks: usize, n_sample: usize) -> u64 {
    let n = n_sample as u64;
    let shown = n_sample.min(crate::stability::SHOWN_ROWS) as u64;
    sum(&[
        prod(&[n_ks as u64, 2, n, n.saturating_sub(1)]),
        prod(&[n_ks as u64, 4, shown, shown]),
    ])
}

/// Bytes of H (`k × n_cols` f32) for every k of `ks`.
pub fn spectra_bytes(ks: &[usize], n_cols: usize) -> u64 {
    sum(&ks
        .iter()
        .map(|&k| prod(&[4, k as u64, n_cols as u64]))
        .collect::<Vec<_>>())
}

/// What a single factorization (`fit`) holds beside its runs: the row
/// sample of `n_sample` rows, `starts` bytes of given start factors, `names`
/// bytes of names written into the result, and the cluster of every row.
pub fn fit_held(
    shape: (usize, usize),
    nnz: Option<u64>,
    n_sample: usize,
    starts: u64,
    names: u64,
) -> Vec<(Held, u64)> {
    vec![
        (Held::Sample, sample_bytes(shape.0, shape.1, nnz, n_sample)),
        (Held::Starts, starts),
        (Held::Names, names),
        (Held::Clusters, prod(&[4, shape.0 as u64])),
    ]
}

/// Where a budget comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetSource {
    /// `--memory`.
    Given,
    /// Half of the memory the system reported available.
    HalfOfAvailable {
        /// The available memory.
        available: u64,
    },
}

/// The memory budget of the whole process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Bytes.
    pub bytes: u64,
    /// Where it comes from.
    pub source: BudgetSource,
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.source {
            BudgetSource::Given => write!(f, "{} (--memory)", Bytes(self.bytes)),
            BudgetSource::HalfOfAvailable { available } => write!(
                f,
                "{} (default: half of the {} available)",
                Bytes(self.bytes),
                Bytes(available)
            ),
        }
    }
}

/// What a plan is made for: the matrix, the runs and what is held beside
/// them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Rows and columns of X.
    pub shape: (usize, usize),
    /// Stored entries when X is sparse.
    pub nnz: Option<u64>,
    /// The source's preferred block height.
    pub preferred_rows: Option<usize>,
    /// A block height fixed by the user or by a checkpoint.
    pub block_rows: Option<usize>,
    /// k of every run, in the order they run.
    pub ks: Vec<usize>,
    /// Everything held beside the runs for the whole command.
    pub held: Vec<(Held, u64)>,
    /// The budget.
    pub budget: Budget,
    /// The runs minimise the Kullback–Leibler divergence: X_s ⊘ WH of one
    /// block (one f32 per value of a dense block, per stored value of a
    /// sparse one) is held beside the blocks.
    pub ratio_block: bool,
}

/// The memory plan of a command: block height, W's place, batches of runs
/// that share passes, and the predicted peak.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Rows per block.
    pub block_rows: usize,
    /// W of every run lives in a memory-mapped file.
    pub w_on_disk: bool,
    /// Consecutive runs (indices into [`Request::ks`]) that share passes.
    pub batches: Vec<Range<usize>>,
    /// The budget.
    pub budget: Budget,
    /// Predicted peak of the whole process, over the batches (with the
    /// resident map).
    pub predicted_peak: u64,
    /// Bytes of a memory-mapped input, copy or cache kept resident from
    /// pass to pass ([`Plan::keep_resident`]); 0 when its pages are
    /// released block by block.
    pub resident_bytes: u64,
    /// What is held beside the runs.
    pub held: Vec<(Held, u64)>,
    /// Bytes one pass over X reads.
    pub pass_bytes: u64,
    /// Bytes of W of the largest run (in memory or in its file).
    pub w_bytes: u64,
    /// What one run of the largest k holds with these blocks.
    pub estimate: MemoryEstimate,
    /// Runs planned.
    pub n_runs: usize,
}

impl Plan {
    /// Whether a memory map later passes read (a block cache, a mapped
    /// input or copy) of `map_bytes` may stay resident from pass to pass
    /// instead of being released block by block: when that at most doubles
    /// the predicted peak and stays within the budget. The predicted peak
    /// then counts it.
    pub fn keep_resident(&mut self, map_bytes: u64) -> bool {
        let peak = self.predicted_peak.saturating_add(map_bytes);
        let fits = map_bytes <= self.predicted_peak && peak <= self.budget.bytes;
        if fits {
            self.predicted_peak = peak;
            self.resident_bytes = map_bytes;
        }
        fits
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "budget {}; blocks of {} rows; W {} ({}); predicted peak {}",
            self.budget,
            self.block_rows,
            if self.w_on_disk {
                "on disk, memory-mapped"
            } else {
                "in memory"
            },
            Bytes(self.w_bytes),
            Bytes(self.predicted_peak)
        )?;
        let held: Vec<String> = self
            .held
            .iter()
            .filter(|(_, bytes)| *bytes > 0)
            .map(|(what, bytes)| format!("{} {}", what.as_str(), Bytes(*bytes)))
            .collect();
        if !held.is_empty() {
            write!(f, " with {}", held.join(", "))?;
        }
        write!(
            f,
            "; {} run(s) in {} batch(es); {} read per pass",
            self.n_runs,
            self.batches.len(),
            Bytes(self.pass_bytes)
        )
    }
}

/// A budget no plan fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// Smaller than the fixed part of a run.
    #[error(transparent)]
    TooSmall(#[from] BudgetTooSmall),
    /// The block height given (`--block-rows` or a checkpoint's) needs more
    /// than the budget.
    #[error(
        "blocks of {block_rows} rows need about {}, more than the budget of {}; give a smaller \
         --block-rows or a larger --memory",
        Bytes(*need), Bytes(*budget)
    )]
    BlocksTooTall {
        /// The block height.
        block_rows: usize,
        /// The peak it needs.
        need: u64,
        /// The budget.
        budget: u64,
    },
}

/// Plans the runs of `request`: the block height and W's place for the
/// largest k (W stays in memory while it takes at most half the budget and
/// the plan fits), then as many consecutive runs per batch as the budget
/// holds. Pure: the same request gives the same plan.
pub fn plan_runs(request: &Request) -> Result<Plan, PlanError> {
    let (n_rows, n_cols) = request.shape;
    let budget = request.budget.bytes;
    let held: u64 = sum(&request.held.iter().map(|(_, b)| *b).collect::<Vec<_>>());
    let k_max = request.ks.iter().copied().max().unwrap_or(1);
    let block = BlockRequest {
        n_rows,
        n_cols,
        k: k_max,
        nnz: request.nnz,
        preferred_rows: request.preferred_rows,
        // What is held beside the runs is not available to them; the ratio
        // of a Kullback–Leibler fit is one more copy of a block.
        budget: if request.ratio_block {
            budget.saturating_sub(held) / (DENSE_BLOCK_COPIES + 1) * DENSE_BLOCK_COPIES
        } else {
            budget.saturating_sub(held)
        },
        w_on_disk: false,
    };
    let w_max = prod(&[4, n_rows as u64, k_max as u64]);
    let (chosen, w_on_disk) = match block_plan(block) {
        Ok(p) if w_max <= block.budget / 2 => (p, false),
        _ => block_plan(BlockRequest {
            w_on_disk: true,
            ..block
        })
        .map(|p| (p, true))
        .map_err(|mut too_small| {
            // The budget given, and the minimum with what is held beside.
            too_small.budget = budget;
            too_small.min_budget = too_small.min_budget.saturating_add(held);
            too_small
        })?,
    };
    let block_rows = request.block_rows.unwrap_or(chosen.block_rows).max(1);
    let estimate = |k: usize| match request.nnz {
        Some(nnz) => estimate_memory_sparse(n_rows, n_cols, k, block_rows, nnz),
        None => estimate_memory(n_rows, n_cols, k, block_rows),
    };
    // Shared by the runs of a batch: the program, the blocks of X (the
    // k-independent part of the block estimate) and what is held beside;
    // each run adds W (or its window), its H-side products and its
    // per-block scratch.
    let x_blocks = estimate(0).block_bytes;
    let ratio = if request.ratio_block {
        let per_row = match request.nnz {
            Some(nnz) => nnz.div_ceil(n_rows.max(1) as u64),
            None => n_cols as u64,
        };
        prod(&[4, block_rows as u64, per_row])
    } else {
        0
    };
    let shared = sum(&[BASELINE_BYTES, x_blocks, ratio, held]);
    let per_run = |k: usize| {
        let e = estimate(k);
        let w = if w_on_disk {
            e.w_bytes.min(prod(&[8, block_rows as u64, k as u64]))
        } else {
            e.w_bytes
        };
        sum(&[w, e.factor_bytes, e.block_bytes.saturating_sub(x_blocks)])
    };
    let usable = usable_budget(budget);
    let ks = &request.ks;
    let mut batches = Vec::new();
    let mut start = 0;
    let mut predicted_peak = 0;
    while start < ks.len() {
        let mut used = shared.saturating_add(per_run(ks[start]));
        let mut end = start + 1;
        while end < ks.len() && used.saturating_add(per_run(ks[end])) <= usable {
            used = used.saturating_add(per_run(ks[end]));
            end += 1;
        }
        predicted_peak = predicted_peak.max(used);
        batches.push(start..end);
        start = end;
    }
    if predicted_peak > budget {
        return Err(PlanError::BlocksTooTall {
            block_rows,
            need: predicted_peak,
            budget,
        });
    }
    Ok(Plan {
        block_rows,
        w_on_disk,
        batches,
        budget: request.budget,
        predicted_peak,
        resident_bytes: 0,
        held: request.held.clone(),
        pass_bytes: pass_bytes(n_rows, n_cols, request.nnz),
        w_bytes: w_max,
        estimate: estimate(k_max),
        n_runs: ks.len(),
    })
}

#[cfg(test)]
mod plan_tests {
    use super::*;

    fn request(budget: u64) -> Request {
        Request {
            shape: (2_000_000, 20_000),
            nnz: Some(2_400_000_000),
            preferred_rows: Some(3_000),
            block_rows: None,
            ks: vec![30],
            held: vec![],
            budget: Budget {
                bytes: budget,
                source: BudgetSource::Given,
            },
            ratio_block: false,
        }
    }

    #[test]
    fn plans_fit_their_budget_and_refuse_below_the_minimum() {
        for budget in [600u64 << 20, 1 << 30, 2 << 30, 8 << 30] {
            let plan = plan_runs(&request(budget)).expect("fits");
            assert!(plan.predicted_peak <= budget, "{budget}: {plan:?}");
            assert!(plan.block_rows >= 64);
        }
        let Err(PlanError::TooSmall(small)) = plan_runs(&request(50 << 20)) else {
            panic!("50 MiB is too small");
        };
        assert!(small.min_budget > 50 << 20);
        let at_minimum = plan_runs(&request(small.min_budget)).expect("the minimum works");
        assert_eq!(at_minimum.block_rows, 64);
        assert!(at_minimum.w_on_disk);
    }

    #[test]
    fn a_large_budget_keeps_the_default_block_and_w_in_memory() {
        let mut r = request(64 << 30);
        r.nnz = None;
        let p = plan_runs(&r).expect("fits");
        assert_eq!(
            p.block_rows,
            crate::params::default_block_rows(2_000_000, 20_000, Some(3_000))
        );
        assert!(!p.w_on_disk);
        assert_eq!(p.batches, vec![0..1]);
    }

    #[test]
    fn what_is_held_beside_is_counted_and_printed() {
        let bare = plan_runs(&request(2 << 30)).expect("fits");
        let mut r = request(2 << 30);
        r.held = vec![(Held::Sample, 100 << 20), (Held::Names, 0)];
        let with = plan_runs(&r).expect("fits");
        assert!(with.predicted_peak <= 2 << 30);
        assert!(with.block_rows <= bare.block_rows);
        let text = with.to_string();
        assert!(text.contains("with sample 100.0 MiB;"), "{text}");
        assert!(!text.contains("names"), "{text}");
        r.held = vec![(Held::Spectra, 3 << 30)];
        assert!(matches!(plan_runs(&r), Err(PlanError::TooSmall(_))));
    }

    #[test]
    fn runs_split_into_batches_that_each_fit() {
        let mut r = request(1 << 30);
        r.shape = (100_000, 2_000);
        r.nnz = None;
        r.preferred_rows = None;
        r.ks = vec![100; 40];
        let p = plan_runs(&r).expect("fits");
        assert!(p.batches.len() > 1, "{p:?}");
        assert_eq!(p.batches.first().map(|b| b.start), Some(0));
        assert_eq!(p.batches.last().map(|b| b.end), Some(40));
        assert!(p.batches.windows(2).all(|w| w[0].end == w[1].start));
        assert!(p.predicted_peak <= usable_budget(1 << 30));
        // A block height given that cannot fit is refused, naming it.
        r.block_rows = Some(100_000);
        r.ks = vec![10];
        r.budget.bytes = 200 << 20;
        let err = plan_runs(&r).expect_err("too tall");
        assert!(err.to_string().contains("blocks of 100000 rows"), "{err}");
    }
}
