//! What a fit will hold in memory, for planning and for `nmflow inspect`.

use crate::solver::{ROW_CHUNK, SPARSE_PARTS};

/// Bytes a fit holds, by part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// W (`n_rows × k` f32).
    pub w_bytes: u64,
    /// H and the `k × n_cols` products and scratch of the updates.
    pub factor_bytes: u64,
    /// Row blocks of X in flight (the source's buffer and the one being
    /// replaced) and the per-block scratch.
    pub block_bytes: u64,
}

impl MemoryEstimate {
    /// Sum of the parts.
    pub fn total_bytes(&self) -> u64 {
        self.w_bytes + self.factor_bytes + self.block_bytes
    }
}

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
    let factor_bytes = 28 * k * n_cols + 48 * n_cols;
    let n_chunks = block_rows.div_ceil(ROW_CHUNK as u64);
    let block_bytes =
        2 * 4 * block_rows * n_cols + 4 * block_rows * k + n_chunks * (8 * k * k + 4 * k + 8);
    MemoryEstimate {
        w_bytes: 4 * n_rows * k,
        factor_bytes,
        block_bytes,
    }
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
    let block_bytes = 24 * block_nnz
        + 16 * block_rows
        + 4 * block_rows * k
        + n_chunks * (8 * k * k + 4 * k + 8)
        + SPARSE_PARTS as u64 * 4 * n_cols * k;
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
