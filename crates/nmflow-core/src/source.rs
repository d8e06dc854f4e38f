//! The row-block source: the seam between the engine and the inputs.
//!
//! A source hands out the rows `a..b` of X as a [`RowBlock`], borrowed from
//! the source itself (a memory map, or a buffer the source owns). The engine
//! asks for blocks in increasing row order, once per pass.

use std::ops::Range;

use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;

use crate::normalize::Normalize;

/// Error raised by a source; the engine wraps it with the rows it asked for.
pub type SourceError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The rows `a..b` of X. Exhaustive on purpose: a new kind of block must
/// be handled by every reader, cache and kernel.
#[derive(Debug, Clone, Copy)]
pub enum RowBlock<'a> {
    /// A dense `(b - a) × n_cols` view, any strides.
    Dense(ArrayView2<'a, f32>),
    /// A compressed-sparse-row slice.
    Csr(CsrBlock<'a>),
}

/// Rows of a sparse matrix in CSR form, with block-local offsets: row `r`
/// of the block holds `indices[indptr[r]..indptr[r + 1]]` (column indices,
/// in any order, no duplicates) and the same range of `data`. Explicit zeros
/// are allowed.
#[derive(Debug, Clone, Copy)]
pub struct CsrBlock<'a> {
    /// `n_rows + 1` offsets, starting at 0, non-decreasing, ending at `nnz`.
    pub indptr: &'a [usize],
    /// Column index of each stored entry.
    pub indices: &'a [u32],
    /// Value of each stored entry.
    pub data: &'a [f32],
    /// Columns of the matrix.
    pub n_cols: usize,
    /// The same entries column by column, when the source keeps them (the
    /// block cache does): `XᵀW` then gathers rows of W per column instead
    /// of scattering into every column's sums. `None` for a range of a
    /// block's rows and for any block whose values are not these entries'.
    pub columns: Option<CscBlock<'a>>,
}

/// The entries of a CSR block column by column (CSC, block-local rows):
/// column `j` holds `rows[col_ptr[j]..col_ptr[j + 1]]`, in increasing
/// order, and the same range of `data`, the values of the CSR block's
/// entries.
#[derive(Debug, Clone, Copy)]
pub struct CscBlock<'a> {
    /// `n_cols + 1` offsets, starting at 0, non-decreasing, ending at `nnz`.
    pub col_ptr: &'a [usize],
    /// Block row of each stored entry.
    pub rows: &'a [u32],
    /// Value of each stored entry.
    pub data: &'a [f32],
}

impl CscBlock<'_> {
    /// Checks the structure against its CSR block's `n_rows`, `n_cols` and
    /// `nnz`: offsets from 0 to `nnz`, non-decreasing, rows in range (that
    /// rows increase within a column is what the source promises; the
    /// kernels never index out of range either way).
    pub(crate) fn validate(
        &self,
        n_rows: usize,
        n_cols: usize,
        nnz: usize,
    ) -> Result<(), CsrShapeError> {
        if self.col_ptr.len() != n_cols + 1 {
            return Err(CsrShapeError::ColumnPointers {
                expected: n_cols + 1,
                found: self.col_ptr.len(),
            });
        }
        if self.rows.len() != nnz || self.data.len() != nnz {
            return Err(CsrShapeError::Columns { nnz });
        }
        let monotone = self.col_ptr.first() == Some(&0)
            && self.col_ptr.last() == Some(&nnz)
            && self.col_ptr.windows(2).all(|w| w[0] <= w[1]);
        let max_row = self.rows.iter().fold(0u32, |m, &r| m.max(r));
        if !monotone || (nnz > 0 && max_row as usize >= n_rows) {
            return Err(CsrShapeError::Columns { nnz });
        }
        Ok(())
    }
}

/// Column ranges a block's entries are sorted into in parallel.
const COLUMN_ORDER_PARTS: usize = 4;

/// The column order of a CSR block's entries: the structure of its
/// [`CscBlock`] (`col_ptr`, `rows`, rows increasing within a column) and,
/// for each entry of that order, its position in the CSR block (`order`),
/// so that the values follow once known ([`ColumnOrder::values`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColumnOrder {
    /// `n_cols + 1` offsets.
    pub col_ptr: Vec<usize>,
    /// Block row of each entry, column by column.
    pub rows: Vec<u32>,
    /// CSR position of each entry, column by column.
    pub order: Vec<u32>,
}

impl ColumnOrder {
    /// The column order of `x` (a counting sort: one pass to count each
    /// column's entries, one to place them), or `None` when its rows or
    /// entries do not fit the u32 the copy stores them in, or when it is
    /// malformed.
    pub fn of(x: &CsrBlock<'_>) -> Option<Self> {
        let (n_rows, nnz) = (x.n_rows(), x.nnz());
        if u32::try_from(n_rows).is_err() || u32::try_from(nnz).is_err() {
            return None;
        }
        x.validate(n_rows).ok()?;
        let mut col_ptr = vec![0usize; x.n_cols + 1];
        for &c in x.indices {
            col_ptr[c as usize + 1] += 1;
        }
        for j in 0..x.n_cols {
            col_ptr[j + 1] += col_ptr[j];
        }
        let (mut rows, mut order) = (vec![0u32; nnz], vec![0u32; nnz]);
        // Fixed column ranges of about equal entries, placed in parallel,
        // each range into its own part of the output (the placement does
        // not depend on the ranges or the threads).
        let mut cuts = vec![0usize];
        for part in 1..COLUMN_ORDER_PARTS {
            let target = nnz * part / COLUMN_ORDER_PARTS;
            let col = col_ptr.partition_point(|&p| p < target).min(x.n_cols);
            cuts.push(col.max(*cuts.last().unwrap_or(&0)));
        }
        cuts.push(x.n_cols);
        let mut pieces = Vec::with_capacity(COLUMN_ORDER_PARTS);
        let (mut rows_left, mut order_left) = (&mut rows[..], &mut order[..]);
        for range in cuts.windows(2) {
            let len = col_ptr[range[1]] - col_ptr[range[0]];
            let (r, rest_r) = std::mem::take(&mut rows_left).split_at_mut(len);
            let (o, rest_o) = std::mem::take(&mut order_left).split_at_mut(len);
            (rows_left, order_left) = (rest_r, rest_o);
            pieces.push((range[0]..range[1], r, o));
        }
        pieces.into_par_iter().for_each(|(cols, rows, order)| {
            let base = col_ptr[cols.start];
            let mut next: Vec<usize> = col_ptr[cols.clone()].iter().map(|&p| p - base).collect();
            let (lo, hi) = (cols.start as u32, cols.end as u32);
            for row in 0..n_rows {
                for t in x.indptr[row]..x.indptr[row + 1] {
                    let c = x.indices[t];
                    if c < lo || c >= hi {
                        continue;
                    }
                    let slot = &mut next[(c - lo) as usize];
                    // Both fit u32: checked above.
                    rows[*slot] = row as u32;
                    order[*slot] = t as u32;
                    *slot += 1;
                }
            }
        });
        Some(Self {
            col_ptr,
            rows,
            order,
        })
    }

    /// The CSR block's values `data` in column order.
    pub fn values(&self, data: &[f32]) -> Vec<f32> {
        self.order.par_iter().map(|&t| data[t as usize]).collect()
    }
}

/// Why a CSR block is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrShapeError {
    /// `indptr` does not have one entry more than there are rows.
    #[error("indptr has {found} entries, expected {expected}")]
    IndptrLength {
        /// `n_rows + 1`.
        expected: usize,
        /// Entries given.
        found: usize,
    },
    /// `indptr` decreases, does not start at 0, or does not end at `nnz`.
    #[error("indptr is not monotone from 0 to nnz = {nnz} at block row {row}")]
    Indptr {
        /// Block row where it fails.
        row: usize,
        /// Stored entries.
        nnz: usize,
    },
    /// `indices` and `data` differ in length.
    #[error("{indices} indices but {data} values")]
    Lengths {
        /// Length of `indices`.
        indices: usize,
        /// Length of `data`.
        data: usize,
    },
    /// The column copy's offsets do not number the columns.
    #[error("the column copy has {found} offsets, expected {expected}")]
    ColumnPointers {
        /// `n_cols + 1`.
        expected: usize,
        /// Offsets given.
        found: usize,
    },
    /// The column copy's offsets are not monotone from 0 to `nnz`, or one
    /// of its rows is out of range.
    #[error("the column copy is not a copy of the block's {nnz} entries")]
    Columns {
        /// Stored entries.
        nnz: usize,
    },
    /// A column index is out of range.
    #[error("column index {col} out of range (the matrix has {n_cols} columns) in block row {row}")]
    Index {
        /// Block row.
        row: usize,
        /// The index.
        col: u32,
        /// Columns of the matrix.
        n_cols: usize,
    },
}

impl CsrBlock<'_> {
    /// Rows in the block.
    pub fn n_rows(&self) -> usize {
        self.indptr.len().saturating_sub(1)
    }

    /// Stored entries.
    pub fn nnz(&self) -> usize {
        self.data.len()
    }

    /// Checks the structure for `n_rows` rows.
    pub(crate) fn validate(&self, n_rows: usize) -> Result<(), CsrShapeError> {
        if self.indptr.len() != n_rows + 1 {
            return Err(CsrShapeError::IndptrLength {
                expected: n_rows + 1,
                found: self.indptr.len(),
            });
        }
        if self.indices.len() != self.data.len() {
            return Err(CsrShapeError::Lengths {
                indices: self.indices.len(),
                data: self.data.len(),
            });
        }
        let nnz = self.data.len();
        if self.indptr[0] != 0 {
            return Err(CsrShapeError::Indptr { row: 0, nnz });
        }
        // One vectorizable pass finds whether any index is out of range; the
        // row at fault is searched for only then.
        let max_index = self.indices.iter().fold(0u32, |m, &c| m.max(c));
        let indices_ok = self.indices.is_empty() || (max_index as usize) < self.n_cols;
        for row in 0..n_rows {
            let (start, end) = (self.indptr[row], self.indptr[row + 1]);
            if end < start || end > nnz {
                return Err(CsrShapeError::Indptr { row, nnz });
            }
            if indices_ok {
                continue;
            }
            if let Some(&col) = self.indices[start..end]
                .iter()
                .find(|&&c| c as usize >= self.n_cols)
            {
                return Err(CsrShapeError::Index {
                    row,
                    col,
                    n_cols: self.n_cols,
                });
            }
        }
        if self.indptr[n_rows] != nnz {
            return Err(CsrShapeError::Indptr { row: n_rows, nnz });
        }
        Ok(())
    }

    /// The stored entries of block row `row` as (columns, values).
    pub fn row(&self, row: usize) -> (&[u32], &[f32]) {
        let range = self.indptr[row]..self.indptr[row + 1];
        (&self.indices[range.clone()], &self.data[range])
    }
}

impl RowBlock<'_> {
    /// Number of rows in the block.
    pub fn n_rows(&self) -> usize {
        match self {
            RowBlock::Dense(view) => view.nrows(),
            RowBlock::Csr(csr) => csr.n_rows(),
        }
    }

    /// Number of columns in the block.
    pub fn n_cols(&self) -> usize {
        match self {
            RowBlock::Dense(view) => view.ncols(),
            RowBlock::Csr(csr) => csr.n_cols,
        }
    }
}

/// A matrix that can be read in blocks of consecutive rows.
pub trait RowSource {
    /// Number of rows of X.
    fn n_rows(&self) -> usize;

    /// Number of columns of X.
    fn n_cols(&self) -> usize;

    /// A block height the source reads efficiently (e.g. its chunk height);
    /// the engine uses a multiple of it when the user does not choose.
    fn preferred_block_rows(&self) -> Option<usize> {
        None
    }

    /// Stored entries, for sparse sources (used to plan block sizes).
    fn nnz_hint(&self) -> Option<u64> {
        None
    }

    /// A pass begins: `blocks` are the row ranges it will ask for, in this
    /// order (the engine asks for every block of a pass it begins). This
    /// is the pass contract: sources that read ahead or keep a cache follow
    /// it instead of guessing; plain sources ignore it, and serve
    /// [`RowSource::block`] without a pass too.
    fn begin_pass(&mut self, blocks: &[Range<usize>]) -> Result<(), SourceError> {
        let _ = blocks;
        Ok(())
    }

    /// The rows `rows` of X. `rows` is non-empty and within `0..n_rows()`.
    fn block(&mut self, rows: Range<usize>) -> Result<RowBlock<'_>, SourceError>;

    /// The caller will ask for no more blocks from this source until it
    /// begins another pass (a wrapper serves them from elsewhere): buffers
    /// may be freed.
    fn done_reading(&mut self) {}

    /// The pages of a memory-mapped input or copy stay resident from pass
    /// to pass instead of being released block by block (the caller asks
    /// when the whole map fits its memory plan): later passes then fault
    /// no pages in. Sources that hold no map ignore it.
    fn keep_resident(&mut self) {}

    /// The engine normalises every block with `kind` before using it; it
    /// says so before each pass it begins. A source that keeps a copy of X
    /// (a cache) may keep the copy normalised and serve later passes from
    /// it ([`RowSource::served_normalized`]): the engine then skips the
    /// work (and the checks of raw values, made when the copy was
    /// written). The normalised values come from the engine: see
    /// [`RowSource::wants_normalized`].
    fn normalization(&mut self, kind: Normalize) {
        let _ = kind;
    }

    /// Whether the source wants the engine's normalised values of the
    /// blocks of the pass just begun (it writes its normalised copy). The
    /// engine then hands each block's values to
    /// [`RowSource::keep_normalized`] before it asks for the next block or
    /// begins the next pass.
    fn wants_normalized(&self) -> bool {
        false
    }

    /// The normalised values of the block of `rows` served last, in its
    /// storage order (row-major for a dense block, `data`'s order for a
    /// CSR block), and whether every raw value the engine has seen so far
    /// was a whole number.
    fn keep_normalized(&mut self, rows: Range<usize>, values: &[f32], raw_integer: bool) {
        let _ = (rows, values, raw_integer);
    }

    /// Whether the blocks of the pass just begun are copies of blocks the
    /// engine already checked, made by the source itself (the block
    /// cache's copy of the first pass, and its column copies, written
    /// from checked blocks): the engine then does not check their
    /// structure again. `false` for anything read from an input.
    fn serves_checked_copy(&self) -> bool {
        false
    }

    /// What the blocks of the pass just begun carry when they come from a
    /// normalised copy; `None` for values as read.
    fn served_normalized(&self) -> Option<NormalizedCopy> {
        None
    }
}

/// Blocks served from a copy of X that a source keeps normalised
/// ([`RowSource::normalization`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NormalizedCopy {
    /// The normalisation applied.
    pub kind: Normalize,
    /// Whether every raw value copied was a whole number (the engine does
    /// not see the raw values of such blocks).
    pub raw_integer: bool,
}

/// A sparse matrix in CSR form held in memory, for tests and small inputs.
#[derive(Debug, Clone)]
pub struct InMemoryCsrSource {
    n_rows: usize,
    n_cols: usize,
    indptr: Vec<usize>,
    indices: Vec<u32>,
    data: Vec<f32>,
    local_indptr: Vec<usize>,
}

impl InMemoryCsrSource {
    /// The CSR form of the dense `x`, dropping zeros.
    pub fn from_dense(x: ArrayView2<'_, f32>) -> Self {
        let mut indptr = vec![0];
        let mut indices = Vec::new();
        let mut data = Vec::new();
        for row in x.rows() {
            for (col, &v) in row.iter().enumerate() {
                if v != 0.0 {
                    indices.push(col as u32);
                    data.push(v);
                }
            }
            indptr.push(data.len());
        }
        Self::new(x.nrows(), x.ncols(), indptr, indices, data)
    }

    /// Wraps CSR arrays; they are checked block by block when read.
    pub fn new(
        n_rows: usize,
        n_cols: usize,
        indptr: Vec<usize>,
        indices: Vec<u32>,
        data: Vec<f32>,
    ) -> Self {
        Self {
            n_rows,
            n_cols,
            indptr,
            indices,
            data,
            local_indptr: Vec::new(),
        }
    }
}

impl RowSource for InMemoryCsrSource {
    fn n_rows(&self) -> usize {
        self.n_rows
    }

    fn nnz_hint(&self) -> Option<u64> {
        self.indptr.last().map(|&n| n as u64)
    }

    fn n_cols(&self) -> usize {
        self.n_cols
    }

    fn block(&mut self, rows: Range<usize>) -> Result<RowBlock<'_>, SourceError> {
        let ptr = self
            .indptr
            .get(rows.start..=rows.end)
            .ok_or("indptr is too short")?;
        let (start, end) = (ptr[0], ptr[ptr.len() - 1]);
        if start > end || end > self.data.len() || end > self.indices.len() {
            return Err("indptr out of range".into());
        }
        self.local_indptr.clear();
        self.local_indptr
            .extend(ptr.iter().map(|&p| p.wrapping_sub(start)));
        Ok(RowBlock::Csr(CsrBlock {
            indptr: &self.local_indptr,
            indices: &self.indices[start..end],
            data: &self.data[start..end],
            n_cols: self.n_cols,
            columns: None,
        }))
    }
}

/// A source over a matrix held in memory, for tests and small inputs.
#[derive(Debug, Clone)]
pub struct InMemorySource {
    x: Array2<f32>,
}

impl InMemorySource {
    /// Wraps `x` (`n_rows × n_cols`).
    pub fn new(x: Array2<f32>) -> Self {
        Self { x }
    }
}

impl RowSource for InMemorySource {
    fn n_rows(&self) -> usize {
        self.x.nrows()
    }

    fn n_cols(&self) -> usize {
        self.x.ncols()
    }

    fn block(&mut self, rows: Range<usize>) -> Result<RowBlock<'_>, SourceError> {
        Ok(RowBlock::Dense(self.x.slice(ndarray::s![rows, ..])))
    }
}
