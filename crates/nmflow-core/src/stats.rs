//! Streaming column statistics and input validation (the pre-pass).
//!
//! Per column: mean and sum of squared deviations (merged block by block with
//! Chan's formula, in f64, in block order), the sum of squares and the
//! largest value. The first negative or non-finite entry in row-major order
//! is reported.
//!
//! The column divisors ([`ColumnStats::col_scale`]) are computed in f64 and
//! chosen so that every quantity the engine forms from them in f32 is
//! finite: a column whose standard deviation is below [`STD_FLOOR`] counts as
//! constant and is left unscaled, and when the largest scaled value lies
//! outside [2⁻³², 2³²] every divisor is multiplied by one power of two
//! (exact in floating point, and the multiplicative updates are equivariant
//! under it, so only H's units change).

use ndarray::{ArrayView2, Axis};
use rayon::prelude::*;

use crate::error::FitError;
use crate::params::Scale;
use crate::source::CsrBlock;

/// Columns per parallel task of the statistics kernel.
const COL_CHUNK: usize = 256;

/// A column whose population standard deviation is below this counts as
/// constant under [`Scale::ColStd`] and is left unscaled: dividing by a
/// smaller value would overflow single precision (1/σ and H/σ are formed in
/// f32, whose largest value is 3.4e38).
pub(crate) const STD_FLOOR: f64 = 1e-30;

/// The largest raw value nmflow factorizes: a block's sums of products of
/// X with factors of order 1 stay far below f32's largest value (3.4e38).
pub(crate) const VALUE_LIMIT: f32 = 1e30;

/// Largest scaled value is brought into [1/`RANGE_LIMIT`, `RANGE_LIMIT`] by
/// a power-of-two factor when it lies outside (2³²).
const RANGE_LIMIT: f64 = 4_294_967_296.0;

/// Whether a raw value of X may be factorized: finite and not negative.
pub(crate) fn admissible(value: f32) -> bool {
    value >= 0.0 && value.is_finite()
}

/// The error for the inadmissible `value` at (`row`, `col`) of X.
pub(crate) fn inadmissible(row: usize, col: usize, value: f32) -> FitError {
    if value.is_finite() {
        FitError::NegativeValue { row, col, value }
    } else {
        FitError::NonFiniteValue { row, col, value }
    }
}

/// The one validation of raw values: fails on the first inadmissible entry
/// in row-major order of `values` (block row, column, value), the block's
/// row 0 being row `first_row` of X.
pub(crate) fn check_values(
    values: impl Iterator<Item = (usize, usize, f32)>,
    first_row: usize,
) -> Result<(), FitError> {
    match values
        .filter(|&(_, _, v)| !admissible(v))
        .min_by_key(|&(r, c, _)| (r, c))
    {
        None => Ok(()),
        Some((r, col, value)) => Err(inadmissible(r + first_row, col, value)),
    }
}

/// Column statistics of the rows seen so far.
#[derive(Debug, Clone)]
pub(crate) struct ColumnStats {
    n_rows: u64,
    mean: Vec<f64>,
    m2: Vec<f64>,
    sum_sq: Vec<f64>,
    max: Vec<f32>,
    all_integer: bool,
    block: BlockMoments,
    /// The last row (+1) in which each column was stored (sparse input), to
    /// find a column stored twice in a row.
    seen: Vec<u64>,
}

/// Per-block scratch of [`ColumnStats::add_block`].
#[derive(Debug, Clone)]
struct BlockMoments {
    mean: Vec<f64>,
    m2: Vec<f64>,
    sum_sq: Vec<f64>,
}

/// A rejected entry found by the pre-pass.
#[derive(Debug, Clone, Copy, PartialEq)]
struct BadEntry {
    row: usize,
    col: usize,
    value: f32,
}

impl ColumnStats {
    /// Empty statistics for `n_cols` columns.
    pub(crate) fn new(n_cols: usize) -> Self {
        let zeros = vec![0.0; n_cols];
        Self {
            n_rows: 0,
            mean: zeros.clone(),
            m2: zeros.clone(),
            sum_sq: zeros.clone(),
            max: vec![0.0; n_cols],
            all_integer: true,
            seen: Vec::new(),
            block: BlockMoments {
                mean: zeros.clone(),
                m2: zeros.clone(),
                sum_sq: zeros,
            },
        }
    }

    /// Adds the rows of `x`, the rows starting at `first_row` of the matrix.
    /// Fails on the first negative or non-finite entry (row-major order).
    pub(crate) fn add_block(
        &mut self,
        x: ArrayView2<'_, f32>,
        first_row: usize,
    ) -> Result<(), FitError> {
        let n_b = x.nrows();
        if n_b == 0 {
            return Ok(());
        }
        let BlockMoments { mean, m2, sum_sq } = &mut self.block;
        let bad = x
            .axis_chunks_iter(Axis(1), COL_CHUNK)
            .into_par_iter()
            .zip(mean.par_chunks_mut(COL_CHUNK))
            .zip(m2.par_chunks_mut(COL_CHUNK))
            .zip(sum_sq.par_chunks_mut(COL_CHUNK))
            .zip(self.max.par_chunks_mut(COL_CHUNK))
            .enumerate()
            .map(|(chunk_idx, ((((xc, mean), m2), sum_sq), max))| {
                block_moments(xc, mean, m2, sum_sq, max).map_err(|(row, col, value)| BadEntry {
                    row: row + first_row,
                    col: col + chunk_idx * COL_CHUNK,
                    value,
                })
            })
            .collect::<Vec<_>>();
        let first_bad = bad
            .iter()
            .filter_map(|chunk| chunk.as_ref().err())
            .min_by_key(|bad| (bad.row, bad.col));
        if let Some(&BadEntry { row, col, value }) = first_bad {
            return Err(inadmissible(row, col, value));
        }
        self.all_integer &= bad.iter().all(|chunk| chunk == &Ok(true));
        self.merge_block(n_b);
        Ok(())
    }

    /// Adds the rows of a CSR block, the rows starting at `first_row`.
    /// Fails on the first negative or non-finite stored value (row-major
    /// order). The block's structure must be valid.
    pub(crate) fn add_csr_block(
        &mut self,
        x: &CsrBlock<'_>,
        first_row: usize,
    ) -> Result<(), FitError> {
        let n_b = x.n_rows();
        if n_b == 0 {
            return Ok(());
        }
        if self.seen.len() != self.mean.len() {
            self.seen = vec![0; self.mean.len()];
        }
        for row in 0..n_b {
            let (cols, vals) = x.row(row);
            // A column stored twice in a row: scipy and anndata read the sum,
            // nmflow's kernels would not; refused rather than misread.
            let stamp = (first_row + row) as u64 + 1;
            for &col in cols {
                let seen = &mut self.seen[col as usize];
                if *seen == stamp {
                    return Err(FitError::DuplicateEntry {
                        row: first_row + row,
                        col: col as usize,
                    });
                }
                *seen = stamp;
            }
            check_values(
                cols.iter().zip(vals).map(|(&c, &v)| (row, c as usize, v)),
                first_row,
            )?;
        }
        let BlockMoments { mean, m2, sum_sq } = &mut self.block;
        mean.fill(0.0);
        sum_sq.fill(0.0);
        let start = x.indptr[0];
        let end = x.indptr[n_b];
        for (&col, &value) in x.indices[start..end].iter().zip(&x.data[start..end]) {
            let v = f64::from(value);
            mean[col as usize] += v;
            sum_sq[col as usize] += v * v;
            let max = &mut self.max[col as usize];
            *max = max.max(value);
        }
        let n = n_b as f64;
        for ((mean, m2), &sum_sq) in mean.iter_mut().zip(m2.iter_mut()).zip(sum_sq.iter()) {
            let sum = *mean;
            *mean = sum / n;
            *m2 = (sum_sq - sum * sum / n).max(0.0);
        }
        if self.all_integer {
            self.all_integer = x.data.iter().all(|v| v.fract() == 0.0);
        }
        self.merge_block(n_b);
        Ok(())
    }

    /// Merges the block moments of `n_b` rows into the running statistics.
    fn merge_block(&mut self, n_b: usize) {
        let n_a = self.n_rows as f64;
        let n_bf = n_b as f64;
        let n = n_a + n_bf;
        for col in 0..self.mean.len() {
            let delta = self.block.mean[col] - self.mean[col];
            self.mean[col] += delta * n_bf / n;
            self.m2[col] += self.block.m2[col] + delta * delta * n_a * n_bf / n;
            self.sum_sq[col] += self.block.sum_sq[col];
        }
        self.n_rows += n_b as u64;
    }

    /// The statistics of every process's rows, combined in rank order
    /// (each process's as it merged its blocks, then merged as blocks are).
    pub(crate) fn combined(&self, collective: &dyn crate::collective::Collective) -> Self {
        if collective.size() == 1 {
            return self.clone();
        }
        let n_cols = self.mean.len();
        let mut mine = Vec::with_capacity(4 * n_cols + 2);
        mine.push(self.n_rows as f64);
        mine.push(f64::from(u8::from(self.all_integer)));
        mine.extend(&self.mean);
        mine.extend(&self.m2);
        mine.extend(&self.sum_sq);
        mine.extend(self.max.iter().map(|&m| f64::from(m)));
        let all = collective.all_gather(&mine);
        let mut out = Self::new(n_cols);
        for part in all.chunks_exact(mine.len()) {
            let n_b = part[0] as usize;
            out.all_integer &= part[1] > 0.0;
            let (mean, rest) = part[2..].split_at(n_cols);
            let (m2, rest) = rest.split_at(n_cols);
            let (sum_sq, max) = rest.split_at(n_cols);
            out.block.mean.copy_from_slice(mean);
            out.block.m2.copy_from_slice(m2);
            out.block.sum_sq.copy_from_slice(sum_sq);
            for (o, &m) in out.max.iter_mut().zip(max) {
                *o = o.max(m as f32);
            }
            if n_b > 0 {
                out.merge_block(n_b);
            }
        }
        out
    }

    /// Whether every value seen so far is a whole number (raw counts).
    pub(crate) fn all_integer(&self) -> bool {
        self.all_integer
    }

    /// Column means.
    #[cfg(test)]
    fn mean(&self) -> &[f64] {
        &self.mean
    }

    /// Population standard deviation (ddof 0) of every column.
    pub(crate) fn std(&self) -> Vec<f64> {
        let n = self.n_rows.max(1) as f64;
        self.m2.iter().map(|m2| (m2 / n).sqrt()).collect()
    }

    /// The divisor of every column under `scale`: its standard deviation
    /// (1 where that is below [`STD_FLOOR`]) or 1 under [`Scale::None`],
    /// all multiplied by one power of two when the largest scaled value lies
    /// outside [2⁻³², 2³²] (1 otherwise, so ordinary data keep the plain
    /// divisors bit for bit). Fails when no such divisors fit single
    /// precision: a value above [`VALUE_LIMIT`], or values too small to
    /// rescale.
    pub(crate) fn col_scale(&self, scale: Scale) -> Result<Vec<f32>, FitError> {
        if let Some((col, &value)) = self.max.iter().enumerate().find(|(_, v)| **v > VALUE_LIMIT) {
            return Err(FitError::ValueTooLarge {
                col,
                value,
                limit: VALUE_LIMIT,
            });
        }
        let base: Vec<f64> = match scale {
            Scale::None => vec![1.0; self.mean.len()],
            Scale::ColStd => self
                .std()
                .into_iter()
                .map(|std| {
                    if std >= STD_FLOOR && std.is_finite() {
                        std
                    } else {
                        1.0
                    }
                })
                .collect(),
        };
        let (largest_col, largest) = base
            .iter()
            .zip(&self.max)
            .map(|(&d, &max)| f64::from(max) / d)
            .enumerate()
            .fold(
                (0, 0.0f64),
                |best, (col, v)| if v > best.1 { (col, v) } else { best },
            );
        let range = if largest > 0.0 && !(1.0 / RANGE_LIMIT..=RANGE_LIMIT).contains(&largest) {
            2f64.powi(largest.log2().round() as i32)
        } else {
            1.0
        };
        let mut divisors = Vec::with_capacity(base.len());
        for (col, d) in base.into_iter().enumerate() {
            let d = d * range;
            let d32 = d as f32;
            if !(d32.is_normal() && (1.0 / d32).is_normal()) {
                return Err(FitError::ValuesTooSmall {
                    col: largest_col,
                    value: self.max[largest_col],
                    divisor_col: col,
                });
            }
            divisors.push(d32);
        }
        Ok(divisors)
    }

    /// ‖X D⁻¹‖²_F for the column divisors `col_scale`.
    /// Σ X_s: the sum of every value, each column divided by its divisor.
    pub(crate) fn scaled_sum(&self, col_scale: &[f32]) -> f64 {
        self.mean
            .iter()
            .zip(col_scale)
            .map(|(mean, &d)| mean * self.n_rows as f64 / f64::from(d))
            .sum()
    }

    pub(crate) fn scaled_norm_sq(&self, col_scale: &[f32]) -> f64 {
        self.sum_sq
            .iter()
            .zip(col_scale)
            .map(|(sum_sq, &d)| sum_sq / (f64::from(d) * f64::from(d)))
            .sum()
    }
}

/// Mean, sum of squared deviations and sum of squares of each column of `x`
/// into the slices, and the running largest value into `max`; returns the
/// first bad entry (row-major) if any, else whether every value is a whole
/// number. Each column's sums run over the rows in order; the loops over a
/// row's columns carry no dependency and vectorize.
fn block_moments(
    x: ArrayView2<'_, f32>,
    mean: &mut [f64],
    m2: &mut [f64],
    sum_sq: &mut [f64],
    max: &mut [f32],
) -> Result<bool, (usize, usize, f32)> {
    mean.fill(0.0);
    m2.fill(0.0);
    sum_sq.fill(0.0);
    for (row_idx, row) in x.rows().into_iter().enumerate() {
        let mut ok = true;
        let mut add = |(m, s): (&mut f64, &mut f64), value: f32| {
            ok &= admissible(value);
            let v = f64::from(value);
            *m += v;
            *s += v * v;
        };
        let columns = mean.iter_mut().zip(sum_sq.iter_mut());
        match row.as_slice() {
            Some(values) => columns.zip(values).for_each(|(c, &value)| add(c, value)),
            None => columns.zip(row).for_each(|(c, &value)| add(c, value)),
        }
        if !ok {
            let (col, &value) = row
                .iter()
                .enumerate()
                .find(|(_, v)| !admissible(**v))
                .ok_or((row_idx, 0, f32::NAN))?;
            return Err((row_idx, col, value));
        }
    }
    let n = x.nrows() as f64;
    mean.iter_mut().for_each(|m| *m /= n);
    let mut integer = true;
    for row in x.rows() {
        let mut add = |((m2, max), &mean): ((&mut f64, &mut f32), &f64), value: f32| {
            let d = f64::from(value) - mean;
            *m2 += d * d;
            *max = max.max(value);
            integer &= is_whole(value);
        };
        let columns = m2.iter_mut().zip(max.iter_mut()).zip(mean.iter());
        match row.as_slice() {
            Some(values) => columns.zip(values).for_each(|(c, &value)| add(c, value)),
            None => columns.zip(row).for_each(|(c, &value)| add(c, value)),
        }
    }
    Ok(integer)
}

/// Whether a non-negative finite `value` is a whole number, without a
/// call to `trunc` (so the loops calling it vectorize on any x86-64): below
/// 2²³, adding and subtracting 2²³ rounds to the nearest whole number, and
/// every f32 from 2²³ up is whole.
fn is_whole(value: f32) -> bool {
    const TWO_23: f32 = 8_388_608.0;
    value >= TWO_23 || (value + TWO_23) - TWO_23 == value
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, array, s};

    #[test]
    fn merged_blocks_match_direct_statistics() {
        let x = Array2::from_shape_fn((37, 5), |(i, j)| ((i * 7 + j * 3) % 11) as f32 * 0.5);
        let mut stats = ColumnStats::new(5);
        for start in (0..37).step_by(6) {
            let end = (start + 6).min(37);
            stats
                .add_block(x.slice(s![start..end, ..]), start)
                .expect("valid");
        }
        for col in 0..5 {
            let column: Vec<f64> = x.column(col).iter().map(|&v| f64::from(v)).collect();
            let mean = column.iter().sum::<f64>() / 37.0;
            let var = column.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 37.0;
            assert!((stats.mean()[col] - mean).abs() < 1e-12);
            assert!((stats.std()[col] - var.sqrt()).abs() < 1e-12);
        }
    }

    #[test]
    fn sparse_blocks_match_dense_blocks() {
        let x = Array2::from_shape_fn((23, 6), |(i, j)| {
            if (i + 2 * j) % 3 == 0 {
                (i + j) as f32
            } else {
                0.0
            }
        });
        let mut dense = ColumnStats::new(6);
        let mut sparse = ColumnStats::new(6);
        let mut source = crate::InMemoryCsrSource::from_dense(x.view());
        for start in (0..23).step_by(5) {
            let end = (start + 5).min(23);
            dense
                .add_block(x.slice(s![start..end, ..]), start)
                .expect("valid");
            let block = crate::RowSource::block(&mut source, start..end).expect("block");
            let crate::RowBlock::Csr(csr) = block else {
                panic!("not csr")
            };
            sparse.add_csr_block(&csr, start).expect("valid");
        }
        for col in 0..6 {
            assert!((dense.mean()[col] - sparse.mean()[col]).abs() < 1e-12);
            assert!((dense.std()[col] - sparse.std()[col]).abs() < 1e-9);
        }
        assert!(dense.all_integer() && sparse.all_integer());
    }

    #[test]
    fn whole_numbers_are_told_as_fract_tells_them() {
        let mut values = vec![0.0f32, 0.5, 1.0, 2.5, 3.0, 1e-30, 0.999_999_94, 1.000_000_1];
        values.extend([
            8_388_607.5,
            8_388_607.0,
            8_388_608.0,
            8_388_609.0,
            1e30,
            f32::MAX,
        ]);
        values.extend((0..10_000).map(|i| i as f32 * 0.37));
        for v in values {
            assert_eq!(is_whole(v), v.fract() == 0.0, "{v}");
        }
        let mut stats = ColumnStats::new(300);
        let counts = Array2::from_shape_fn((7, 300), |(i, j)| ((i * j) % 5) as f32);
        stats.add_block(counts.view(), 0).expect("valid");
        assert!(stats.all_integer());
        let mut halves = counts.clone();
        halves[(6, 299)] = 0.5;
        stats.add_block(halves.view(), 7).expect("valid");
        assert!(!stats.all_integer());
    }

    #[test]
    fn constant_column_keeps_unit_scale() {
        let x = array![[1.0f32, 0.0], [1.0, 2.0]];
        let mut stats = ColumnStats::new(2);
        stats.add_block(x.view(), 0).expect("valid");
        assert_eq!(
            stats.col_scale(Scale::ColStd).expect("in range"),
            vec![1.0, 1.0]
        );
        assert_eq!(
            stats.col_scale(Scale::None).expect("in range"),
            vec![1.0, 1.0]
        );
        assert!((stats.scaled_norm_sq(&[1.0, 1.0]) - 6.0).abs() < 1e-12);
    }

    #[test]
    fn first_bad_entry_in_row_major_order_is_reported() {
        let mut x = Array2::<f32>::ones((4, 600));
        x[(2, 500)] = -1.0;
        x[(3, 3)] = f32::NAN;
        let err = ColumnStats::new(600).add_block(x.view(), 10).unwrap_err();
        assert!(
            matches!(
                err,
                FitError::NegativeValue {
                    row: 12,
                    col: 500,
                    ..
                }
            ),
            "{err}"
        );
        x[(1, 700 - 200)] = f32::INFINITY;
        let err = ColumnStats::new(600).add_block(x.view(), 0).unwrap_err();
        assert!(
            matches!(
                err,
                FitError::NonFiniteValue {
                    row: 1,
                    col: 500,
                    ..
                }
            ),
            "{err}"
        );
    }
}
