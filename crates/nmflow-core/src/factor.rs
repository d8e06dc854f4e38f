//! Where W (`n_rows × k`) lives during a fit: in memory, or wherever the
//! caller keeps it (e.g. a memory-mapped temporary file when it does not
//! fit the memory budget). The solver touches W one block of rows at a
//! time, in row order, once per pass.

use std::ops::Range;

use ndarray::{Array2, ArrayViewMut2, s};

/// Storage of W, read and written by row blocks.
pub trait FactorStore: Send {
    /// (rows, k).
    fn shape(&self) -> (usize, usize);

    /// Rows `rows` of W.
    fn rows_mut(&mut self, rows: Range<usize>) -> ArrayViewMut2<'_, f32>;

    /// Rows `rows` are not needed again until the next pass: the store may
    /// let them leave memory. Advice only.
    fn release(&mut self, _rows: Range<usize>) {}
}

impl FactorStore for Array2<f32> {
    fn shape(&self) -> (usize, usize) {
        self.dim()
    }

    fn rows_mut(&mut self, rows: Range<usize>) -> ArrayViewMut2<'_, f32> {
        self.slice_mut(s![rows, ..])
    }
}

/// The index of the largest entry of every row of W (the first on ties),
/// read block by block.
pub fn clusters(w: &mut dyn FactorStore, block_rows: usize) -> Vec<u32> {
    let (n_rows, _) = w.shape();
    let mut out = Vec::with_capacity(n_rows);
    for start in (0..n_rows).step_by(block_rows.max(1)) {
        let rows = start..(start + block_rows.max(1)).min(n_rows);
        out.extend(crate::kernels::argmax_rows(w.rows_mut(rows.clone()).view()));
        w.release(rows);
    }
    out
}
