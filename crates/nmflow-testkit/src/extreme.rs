//! Data at the edges of single precision: the seed data with some columns
//! rescaled into the subnormal range (as FPKM tables with values near
//! 1e-43 hold) and others spanning a huge dynamic range, or a whole matrix
//! multiplied by one factor (all subnormal, or near f32's largest value).

use ndarray::Array2;

use crate::seed::SeedGenerator;

/// What a column of an [`extreme_matrix`] holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ColumnKind {
    /// The seed data as it is.
    Plain,
    /// The seed data times 1e-43: subnormal in f32, standard deviation
    /// near 1e-44.
    Subnormal,
    /// Mostly the seed data times 1e-40, with every seventh row times 1e25:
    /// about sixty-five orders of magnitude in one column.
    WideRange,
}

/// The kind of column `col` in an [`extreme_matrix`]: every third column
/// subnormal, every fifth (that is not) wide-range, the rest plain.
pub fn column_kind(col: usize) -> ColumnKind {
    if col % 3 == 1 {
        ColumnKind::Subnormal
    } else if col % 5 == 2 {
        ColumnKind::WideRange
    } else {
        ColumnKind::Plain
    }
}

/// An `n_rows × n_cols` matrix of seed data (`components` clusters, seed
/// `seed`) with columns of every [`ColumnKind`] (see [`column_kind`]).
pub fn extreme_matrix(seed: u64, n_rows: usize, n_cols: usize, components: usize) -> Array2<f32> {
    let (mut x, _) = SeedGenerator::new(seed, components, n_cols).matrix(n_rows);
    for ((row, col), v) in x.indexed_iter_mut() {
        *v = match column_kind(col) {
            ColumnKind::Plain => *v,
            ColumnKind::Subnormal => *v * 1e-43,
            ColumnKind::WideRange if row % 7 == 0 => *v * 1e25,
            ColumnKind::WideRange => *v * 1e-40,
        };
    }
    x
}

/// The seed data times `factor` (e.g. 1e-43: every value subnormal, or
/// 3e37: values near f32's largest).
pub fn scaled_matrix(
    seed: u64,
    n_rows: usize,
    n_cols: usize,
    components: usize,
    factor: f32,
) -> Array2<f32> {
    let (x, _) = SeedGenerator::new(seed, components, n_cols).matrix(n_rows);
    x.mapv(|v| v * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_hold_what_they_claim() {
        let x = extreme_matrix(3, 40, 12, 2);
        let col = |c: usize| x.column(c).iter().copied().collect::<Vec<f32>>();
        assert!(col(1).iter().any(|v| *v > 0.0 && v.is_subnormal()));
        let wide = col(2);
        let max = wide.iter().copied().fold(0.0f32, f32::max);
        let min = wide
            .iter()
            .copied()
            .filter(|v| *v > 0.0)
            .fold(f32::MAX, f32::min);
        assert!(f64::from(max) / f64::from(min) > 1e55, "{max} / {min}");
        assert!(col(0).iter().all(|v| v.is_finite() && !v.is_subnormal()));
    }
}
