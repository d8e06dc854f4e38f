//! Per-row normalisation of count data, applied to each block as it is
//! read, before the column statistics and the updates.

use std::ops::Range;

use ndarray::{Array2, ArrayView2, ArrayViewMut2, Zip};
use rayon::prelude::*;

use crate::error::FitError;
use crate::source::{CsrBlock, RowBlock, RowSource};

/// How each row (cell) is transformed before factorizing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalize {
    /// Values as they are.
    None,
    /// Scale each row to sum to 10,000, then log(1 + x) (scanpy's
    /// `normalize_total(target_sum=1e4)` followed by `log1p`). An all-zero
    /// row stays zero.
    Cp10kLog1p,
    /// log(1 + x).
    Log1p,
}

impl Normalize {
    /// The name used on the command line and in result files.
    pub fn as_str(self) -> &'static str {
        match self {
            Normalize::None => "none",
            Normalize::Cp10kLog1p => "cp10k-log1p",
            Normalize::Log1p => "log1p",
        }
    }

    /// The normalisation named `name` ([`Normalize::as_str`]).
    pub fn from_name(name: &str) -> Option<Self> {
        [Normalize::None, Normalize::Cp10kLog1p, Normalize::Log1p]
            .into_iter()
            .find(|n| n.as_str() == name)
    }
}

/// Target row sum of [`Normalize::Cp10kLog1p`].
pub(crate) const TARGET_SUM: f32 = 1e4;

/// Applies a [`Normalize`] to blocks, into buffers it owns; checks the raw
/// values (non-negative, finite) and whether they are all whole numbers.
#[derive(Debug)]
pub(crate) struct Normalizer {
    kind: Normalize,
    dense: Array2<f32>,
    data: Vec<f32>,
    all_integer: bool,
    /// The blocks of the current pass come normalised already (from a
    /// source's normalised copy, [`RowSource::served_normalized`]).
    pass_through: bool,
    /// The source wants the normalised values of this pass's blocks
    /// ([`RowSource::wants_normalized`]).
    source_wants: bool,
    /// The block normalised last, whose values the source still wants.
    unsent: Option<(Range<usize>, Storage)>,
}

/// Which buffer of a [`Normalizer`] holds a block's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Storage {
    Dense,
    Csr,
}

impl Normalizer {
    pub(crate) fn new(kind: Normalize) -> Self {
        Self {
            kind,
            dense: Array2::zeros((0, 0)),
            data: Vec::new(),
            all_integer: true,
            pass_through: false,
            source_wants: false,
            unsent: None,
        }
    }

    /// Hands the values of the block normalised last to `source`, if it
    /// wants them and has not had them (before the engine asks it for the
    /// next block or begins a pass).
    pub(crate) fn hand_over(&mut self, source: &mut dyn RowSource) {
        match self.unsent.take() {
            Some((rows, Storage::Dense)) => {
                if let Some(values) = self.dense.as_slice() {
                    source.keep_normalized(rows, values, self.all_integer);
                }
            }
            Some((rows, Storage::Csr)) => {
                source.keep_normalized(rows, &self.data, self.all_integer);
            }
            None => {}
        }
    }

    /// After `source` began a pass: whether its blocks still need
    /// normalising (not when they come from a copy it keeps normalised).
    pub(crate) fn follow(&mut self, source: &dyn RowSource) -> Result<(), FitError> {
        self.source_wants = self.kind != Normalize::None && source.wants_normalized();
        self.pass_through = match source.served_normalized() {
            None => false,
            Some(copy) if copy.kind == self.kind => {
                self.all_integer &= copy.raw_integer;
                true
            }
            Some(copy) => {
                return Err(FitError::ServedNormalization {
                    served: copy.kind,
                    kind: self.kind,
                });
            }
        };
        Ok(())
    }

    /// The normalisation applied.
    pub(crate) fn kind(&self) -> Normalize {
        self.kind
    }

    /// Whether every raw value seen is a whole number (only tracked when
    /// normalising; otherwise the column statistics track it).
    pub(crate) fn all_integer(&self) -> bool {
        self.all_integer
    }

    /// The normalised block; `first_row` is the matrix row of block row 0.
    pub(crate) fn apply<'a>(
        &'a mut self,
        block: RowBlock<'a>,
        first_row: usize,
    ) -> Result<RowBlock<'a>, FitError> {
        let kind = self.kind;
        if kind == Normalize::None || self.pass_through {
            return Ok(block);
        }
        match block {
            RowBlock::Dense(x) => {
                crate::stats::check_values(
                    x.indexed_iter().map(|((r, c), &v)| (r, c, v)),
                    first_row,
                )?;
                if self.all_integer {
                    self.all_integer = x.iter().all(|v| v.fract() == 0.0);
                }
                if self.dense.dim() != x.dim() {
                    self.dense = Array2::zeros(x.dim());
                }
                normalize_dense(kind, x, self.dense.view_mut());
                if self.source_wants {
                    self.unsent = Some((first_row..first_row + x.nrows(), Storage::Dense));
                }
                Ok(RowBlock::Dense(self.dense.view()))
            }
            RowBlock::Csr(x) => {
                crate::stats::check_values(
                    (0..x.n_rows()).flat_map(|r| {
                        let (cols, vals) = x.row(r);
                        cols.iter()
                            .zip(vals)
                            .map(move |(&c, &v)| (r, c as usize, v))
                    }),
                    first_row,
                )?;
                if self.all_integer {
                    self.all_integer = x.data.iter().all(|v| v.fract() == 0.0);
                }
                normalize_csr(kind, &x, &mut self.data);
                if self.source_wants {
                    self.unsent = Some((first_row..first_row + x.n_rows(), Storage::Csr));
                }
                Ok(RowBlock::Csr(CsrBlock {
                    data: &self.data,
                    columns: None,
                    ..x
                }))
            }
        }
    }
}

/// One row's values normalised with `kind` into `out` (same length): a
/// dense row, or the stored values of a sparse row (zeros change neither
/// the row's sum nor themselves). Values are not checked here.
fn normalize_row(kind: Normalize, row: &[f32], out: &mut [f32]) {
    let factor = row_factor(kind, row.iter().map(|&v| f64::from(v)).sum());
    for (o, &v) in out.iter_mut().zip(row) {
        *o = match kind {
            Normalize::None => v,
            Normalize::Cp10kLog1p | Normalize::Log1p => (v * factor).ln_1p(),
        };
    }
}

fn normalize_dense(kind: Normalize, x: ArrayView2<'_, f32>, mut out: ArrayViewMut2<'_, f32>) {
    Zip::from(out.rows_mut())
        .and(x.rows())
        .par_for_each(|mut out, row| {
            let out = out
                .as_slice_mut()
                .expect("the normaliser's own buffer is row-major");
            match row.as_slice() {
                Some(row) => normalize_row(kind, row, out),
                None => normalize_row(kind, &row.to_vec(), out),
            }
        });
}

/// Rows of a CSR block normalised by one task.
const CSR_ROWS_PER_TASK: usize = 512;

fn normalize_csr(kind: Normalize, x: &CsrBlock<'_>, out: &mut Vec<f32>) {
    out.clear();
    out.resize(x.data.len(), 0.0);
    // Fixed row groups, each with its own slice of `out`, in parallel (a
    // row's values do not depend on the grouping).
    let mut tasks = Vec::with_capacity(x.n_rows().div_ceil(CSR_ROWS_PER_TASK));
    let mut rest = out.as_mut_slice();
    for first in (0..x.n_rows()).step_by(CSR_ROWS_PER_TASK) {
        let rows = first..(first + CSR_ROWS_PER_TASK).min(x.n_rows());
        let len = x.indptr[rows.end] - x.indptr[rows.start];
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(len);
        rest = tail;
        tasks.push((rows, head));
    }
    tasks.into_par_iter().for_each(|(rows, out)| {
        let base = x.indptr[rows.start];
        for row in rows {
            let range = x.indptr[row]..x.indptr[row + 1];
            normalize_row(
                kind,
                &x.data[range.clone()],
                &mut out[range.start - base..range.end - base],
            );
        }
    });
}

fn row_factor(kind: Normalize, row_sum: f64) -> f32 {
    match kind {
        Normalize::Cp10kLog1p if row_sum > 0.0 => (f64::from(TARGET_SUM) / row_sum) as f32,
        _ => 1.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn cp10k_log1p_matches_the_formula_for_dense_and_sparse_rows() {
        let x = array![[1.0f32, 3.0, 0.0], [0.0, 0.0, 0.0]];
        let mut n = Normalizer::new(Normalize::Cp10kLog1p);
        let RowBlock::Dense(out) = n.apply(RowBlock::Dense(x.view()), 0).expect("valid") else {
            panic!("dense in, dense out")
        };
        let want = [(2500.0f32).ln_1p(), (7500.0f32).ln_1p(), 0.0];
        for (got, want) in out.row(0).iter().zip(want) {
            assert!((got - want).abs() < 1e-5);
        }
        assert!(out.row(1).iter().all(|&v| v == 0.0));

        let csr = CsrBlock {
            indptr: &[0, 2, 2],
            indices: &[1, 0],
            data: &[3.0, 1.0],
            n_cols: 3,
            columns: None,
        };
        let mut n = Normalizer::new(Normalize::Cp10kLog1p);
        let RowBlock::Csr(out) = n.apply(RowBlock::Csr(csr), 0).expect("valid") else {
            panic!("csr in, csr out")
        };
        assert!((out.data[0] - want[1]).abs() < 1e-5 && (out.data[1] - want[0]).abs() < 1e-5);
        assert!(n.all_integer());
    }

    #[test]
    fn log1p_and_raw_checks() {
        let x = array![[0.5f32, 0.0]];
        let mut n = Normalizer::new(Normalize::Log1p);
        let RowBlock::Dense(out) = n.apply(RowBlock::Dense(x.view()), 0).expect("valid") else {
            panic!("dense")
        };
        assert!((out[(0, 0)] - 0.5f32.ln_1p()).abs() < 1e-7);
        assert!(!n.all_integer());
        let bad = array![[1.0f32, -2.0]];
        let err = Normalizer::new(Normalize::Log1p)
            .apply(RowBlock::Dense(bad.view()), 7)
            .unwrap_err();
        assert!(
            matches!(err, FitError::NegativeValue { row: 7, col: 1, .. }),
            "{err}"
        );
    }
}
