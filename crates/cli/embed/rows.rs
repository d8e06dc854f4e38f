//! Row sources over a caller's arrays, read in place: dense (any strides)
//! and compressed sparse rows, of f32 or f64 values and i32 or i64
//! indices. Values already in the engine's types (f32 values, i32 column
//! indices, dense f32) are handed out without a copy; others are
//! converted one block at a time, so memory never holds a second X.

use std::ops::Range;

use ndarray::{Array2, ArrayView2};
use nmflow_core::{CsrBlock, RowBlock, RowSource, SourceError};

/// Dense values, cells × genes.
pub enum Dense<'a> {
    /// Single precision: blocks are views of it.
    F32(ArrayView2<'a, f32>),
    /// Double precision: each block converted to single precision.
    F64(ArrayView2<'a, f64>),
}

/// The values of a CSR matrix.
pub enum Values<'a> {
    /// Single precision: used in place.
    F32(&'a [f32]),
    /// Double precision: converted per block.
    F64(&'a [f64]),
}

/// The column indices or row offsets of a CSR matrix.
pub enum Indices<'a> {
    /// 32-bit (scipy's default below 2³¹ stored values).
    I32(&'a [i32]),
    /// 64-bit.
    I64(&'a [i64]),
}

impl Indices<'_> {
    fn len(&self) -> usize {
        match self {
            Indices::I32(v) => v.len(),
            Indices::I64(v) => v.len(),
        }
    }

    fn get(&self, i: usize) -> i64 {
        match self {
            Indices::I32(v) => i64::from(v[i]),
            Indices::I64(v) => v[i],
        }
    }
}

/// Why an array cannot be read as a matrix.
#[derive(Debug, thiserror::Error)]
pub enum RowsError {
    /// The parts of a CSR matrix do not fit together.
    #[error("not a CSR matrix of {n_rows} × {n_cols}: {reason}")]
    Csr {
        /// Rows declared.
        n_rows: usize,
        /// Columns declared.
        n_cols: usize,
        /// What is wrong.
        reason: String,
    },
    /// A stored entry's column is outside the matrix.
    #[error("row {row}: column index {index} is outside the {n_cols} columns")]
    Column {
        /// Row (0-based).
        row: usize,
        /// The index found.
        index: i64,
        /// Columns declared.
        n_cols: usize,
    },
}

/// A dense matrix the caller holds.
pub struct DenseRows<'a> {
    values: Dense<'a>,
    buffer: Array2<f32>,
}

impl<'a> DenseRows<'a> {
    /// Reads `values` (cells × genes) in place.
    pub fn new(values: Dense<'a>) -> Self {
        Self {
            values,
            buffer: Array2::zeros((0, 0)),
        }
    }

    fn dim(&self) -> (usize, usize) {
        match &self.values {
            Dense::F32(v) => v.dim(),
            Dense::F64(v) => v.dim(),
        }
    }
}

impl RowSource for DenseRows<'_> {
    fn n_rows(&self) -> usize {
        self.dim().0
    }

    fn n_cols(&self) -> usize {
        self.dim().1
    }

    fn block(&mut self, rows: Range<usize>) -> Result<RowBlock<'_>, SourceError> {
        match &self.values {
            Dense::F32(v) => Ok(RowBlock::Dense(v.slice(ndarray::s![rows, ..]))),
            Dense::F64(v) => {
                let part = v.slice(ndarray::s![rows, ..]);
                // One buffer for every block of every pass (reallocated
                // only when a block's shape changes).
                if self.buffer.dim() != part.dim() {
                    self.buffer = Array2::zeros(part.dim());
                }
                ndarray::Zip::from(&mut self.buffer)
                    .and(&part)
                    .for_each(|out, &x| *out = x as f32);
                Ok(RowBlock::Dense(self.buffer.view()))
            }
        }
    }
}

/// A CSR matrix the caller holds: `indptr` (`n_rows + 1` offsets),
/// `indices` (column of each stored value) and `data`.
pub struct CsrRows<'a> {
    data: Values<'a>,
    indices: Indices<'a>,
    indptr: Indices<'a>,
    n_cols: usize,
    /// Rows whose column indices were checked (from 0): each row is
    /// checked on its first read, not on every pass.
    checked_rows: usize,
    local_indptr: Vec<usize>,
    converted_indices: Vec<u32>,
    converted_data: Vec<f32>,
}

impl<'a> CsrRows<'a> {
    /// Checks that the parts fit together (offsets from 0 to the number of
    /// stored values, never decreasing; as many indices as values).
    pub fn new(
        data: Values<'a>,
        indices: Indices<'a>,
        indptr: Indices<'a>,
        (n_rows, n_cols): (usize, usize),
    ) -> Result<Self, RowsError> {
        let nnz = match &data {
            Values::F32(v) => v.len(),
            Values::F64(v) => v.len(),
        };
        let fail = |reason: String| RowsError::Csr {
            n_rows,
            n_cols,
            reason,
        };
        if indptr.len() != n_rows + 1 {
            return Err(fail(format!(
                "indptr has {} entries, not n_rows + 1",
                indptr.len()
            )));
        }
        if indices.len() != nnz {
            return Err(fail(format!("{} indices for {nnz} values", indices.len())));
        }
        if indptr.get(0) != 0 || indptr.get(n_rows) != nnz as i64 {
            return Err(fail(format!(
                "indptr runs from {} to {}, not from 0 to the {nnz} values",
                indptr.get(0),
                indptr.get(n_rows)
            )));
        }
        if let Some(row) = (0..n_rows).find(|&r| indptr.get(r + 1) < indptr.get(r)) {
            return Err(fail(format!("indptr decreases at row {row}")));
        }
        if u32::try_from(n_cols).is_err() {
            return Err(fail("more columns than 32-bit indices hold".into()));
        }
        Ok(Self {
            data,
            indices,
            indptr,
            n_cols,
            checked_rows: 0,
            local_indptr: Vec::new(),
            converted_indices: Vec::new(),
            converted_data: Vec::new(),
        })
    }
}

impl RowSource for CsrRows<'_> {
    fn n_rows(&self) -> usize {
        self.indptr.len() - 1
    }

    fn n_cols(&self) -> usize {
        self.n_cols
    }

    fn nnz_hint(&self) -> Option<u64> {
        Some(self.indices.len() as u64)
    }

    fn block(&mut self, rows: Range<usize>) -> Result<RowBlock<'_>, SourceError> {
        // Offsets were checked by `new`: non-negative, non-decreasing,
        // within the values.
        let start = self.indptr.get(rows.start) as usize;
        let end = self.indptr.get(rows.end) as usize;
        self.local_indptr.clear();
        self.local_indptr
            .extend((rows.start..=rows.end).map(|r| self.indptr.get(r) as usize - start));
        let n_cols = self.n_cols;
        if rows.end > self.checked_rows {
            let from = rows.start.max(self.checked_rows);
            let first = self.indptr.get(from) as usize;
            let local = &self.local_indptr;
            let row_of = |at: usize| rows.start + local.partition_point(|&p| p <= at) - 1;
            let outside = |c: i64| c < 0 || c as u64 >= n_cols as u64;
            let bad = match &self.indices {
                Indices::I32(all) => all[first..end]
                    .iter()
                    .position(|&c| outside(i64::from(c)))
                    .map(|at| (at, i64::from(all[first + at]))),
                Indices::I64(all) => all[first..end]
                    .iter()
                    .position(|&c| outside(c))
                    .map(|at| (at, all[first + at])),
            };
            if let Some((at, index)) = bad {
                return Err(Box::new(RowsError::Column {
                    row: row_of(first - start + at),
                    index,
                    n_cols,
                }));
            }
            self.checked_rows = rows.end;
        }
        let indices: &[u32] = match &self.indices {
            Indices::I32(all) => bytemuck::cast_slice(&all[start..end]),
            Indices::I64(all) => {
                self.converted_indices.clear();
                self.converted_indices
                    .extend(all[start..end].iter().map(|&c| c as u32));
                &self.converted_indices
            }
        };
        let data: &[f32] = match &self.data {
            Values::F32(all) => &all[start..end],
            Values::F64(all) => {
                self.converted_data.clear();
                self.converted_data
                    .extend(all[start..end].iter().map(|&v| v as f32));
                &self.converted_data
            }
        };
        Ok(RowBlock::Csr(CsrBlock {
            indptr: &self.local_indptr,
            indices,
            data,
            n_cols,
            columns: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dense_of(block: RowBlock<'_>, n_cols: usize) -> Array2<f32> {
        match block {
            RowBlock::Dense(v) => v.to_owned(),
            RowBlock::Csr(c) => {
                let n = c.indptr.len() - 1;
                let mut out = Array2::zeros((n, n_cols));
                for r in 0..n {
                    for p in c.indptr[r]..c.indptr[r + 1] {
                        out[(r, c.indices[p] as usize)] = c.data[p];
                    }
                }
                out
            }
        }
    }

    #[test]
    fn every_layout_reads_the_same_rows() {
        let x = ndarray::array![[1.0f32, 0.0, 2.0], [0.0, 0.0, 3.0], [4.0, 5.0, 0.0]];
        let x64 = x.mapv(f64::from);
        let fortran = x.t().to_owned();
        let data = [1.0f32, 2.0, 3.0, 4.0, 5.0];
        let data64 = data.map(f64::from);
        let indices = [0i32, 2, 2, 0, 1];
        let indices64 = indices.map(i64::from);
        let indptr = [0i32, 2, 3, 5];
        let indptr64 = indptr.map(i64::from);
        let mut sources: Vec<Box<dyn RowSource + '_>> = vec![
            Box::new(DenseRows::new(Dense::F32(x.view()))),
            Box::new(DenseRows::new(Dense::F32(fortran.t()))),
            Box::new(DenseRows::new(Dense::F64(x64.view()))),
            Box::new(
                CsrRows::new(
                    Values::F32(&data),
                    Indices::I32(&indices),
                    Indices::I32(&indptr),
                    (3, 3),
                )
                .expect("csr"),
            ),
            Box::new(
                CsrRows::new(
                    Values::F64(&data64),
                    Indices::I64(&indices64),
                    Indices::I64(&indptr64),
                    (3, 3),
                )
                .expect("csr"),
            ),
        ];
        for source in &mut sources {
            assert_eq!((source.n_rows(), source.n_cols()), (3, 3));
            let top = dense_of(source.block(0..2).expect("block"), 3);
            assert_eq!(top, x.slice(ndarray::s![0..2, ..]));
            let bottom = dense_of(source.block(2..3).expect("block"), 3);
            assert_eq!(bottom, x.slice(ndarray::s![2..3, ..]));
        }
    }

    #[test]
    fn malformed_csr_parts_are_refused_naming_what_is_wrong() {
        let data = [1.0f32, 2.0];
        let short = CsrRows::new(
            Values::F32(&data),
            Indices::I32(&[0, 1]),
            Indices::I32(&[0, 2]),
            (2, 3),
        );
        assert!(
            short
                .err()
                .expect("refused")
                .to_string()
                .contains("n_rows + 1")
        );
        let decreasing = CsrRows::new(
            Values::F32(&data),
            Indices::I32(&[0, 1]),
            Indices::I32(&[0, 2, 1, 2]),
            (3, 3),
        );
        assert!(
            decreasing
                .err()
                .expect("refused")
                .to_string()
                .contains("decreases at row 1")
        );
        let mut outside = CsrRows::new(
            Values::F32(&data),
            Indices::I32(&[0, 7]),
            Indices::I32(&[0, 1, 2]),
            (2, 3),
        )
        .expect("parts fit");
        let e = outside.block(0..2).expect_err("column 7 refused");
        assert_eq!(
            e.to_string(),
            "row 1: column index 7 is outside the 3 columns"
        );
    }
}
