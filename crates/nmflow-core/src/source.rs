//! The row-block source: the seam between the engine and the inputs.
//!
//! A source hands out the rows `a..b` of X as a [`RowBlock`], borrowed from
//! the source itself (a memory map, or a buffer the source owns). The engine
//! asks for blocks in increasing row order, once per pass.

use std::ops::Range;

use ndarray::{Array2, ArrayView2};

/// Error raised by a source; the engine wraps it with the rows it asked for.
pub type SourceError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The rows `a..b` of X.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum RowBlock<'a> {
    /// A dense `(b - a) × n_cols` view, any strides.
    Dense(ArrayView2<'a, f32>),
}

impl RowBlock<'_> {
    /// Number of rows in the block.
    pub fn n_rows(&self) -> usize {
        match self {
            RowBlock::Dense(view) => view.nrows(),
        }
    }

    /// Number of columns in the block.
    pub fn n_cols(&self) -> usize {
        match self {
            RowBlock::Dense(view) => view.ncols(),
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

    /// The rows `rows` of X. `rows` is non-empty and within `0..n_rows()`.
    fn block(&mut self, rows: Range<usize>) -> Result<RowBlock<'_>, SourceError>;
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

    /// The whole matrix.
    pub fn matrix(&self) -> ArrayView2<'_, f32> {
        self.x.view()
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
