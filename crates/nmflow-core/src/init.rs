//! Random initial factors.
//!
//! H (`k × n_cols`) is drawn row-major from ChaCha8 stream 0 of the seed, W
//! (`n_rows × k`) row-major from stream 1, every entry uniform on [0, 1).
//! W can therefore be drawn block by block in row order with the same result.
//! The half-normal draws of `random-scaled` (scikit-learn's `init="random"`:
//! |N(0, 1)| times sqrt(mean(X_s) / k), the scale applied once the mean is
//! known) use the same streams, one Box–Muller pair of uniforms per value.

use ndarray::{Array2, ArrayViewMut2};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

const H_STREAM: u64 = 0;
const W_STREAM: u64 = 1;

/// The random initial H for `seed`.
pub fn random_h(seed: u64, k: usize, n_cols: usize) -> Array2<f32> {
    let mut rng = stream(seed, H_STREAM);
    Array2::from_shape_simple_fn((k, n_cols), || rng.random::<f32>())
}

/// |N(0, 1)| from two uniforms of `rng` (Box–Muller, the cosine branch).
fn half_normal(rng: &mut ChaCha8Rng) -> f32 {
    let u1 = 1.0 - rng.random::<f64>();
    let u2 = rng.random::<f64>();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()).abs() as f32
}

/// The half-normal initial H of `random-scaled` for `seed`, before its
/// scale.
pub fn half_normal_h(seed: u64, k: usize, n_cols: usize) -> Array2<f32> {
    let mut rng = stream(seed, H_STREAM);
    Array2::from_shape_simple_fn((k, n_cols), || half_normal(&mut rng))
}

/// The half-normal initial W of `random-scaled` for `seed`, before its
/// scale.
pub fn half_normal_w(seed: u64, n_rows: usize, k: usize) -> Array2<f32> {
    let mut w = Array2::zeros((n_rows, k));
    RandomW::half_normal(seed).fill_next_rows(w.view_mut());
    w
}

/// The random initial W for `seed`, drawn in row order.
#[derive(Debug, Clone)]
pub(crate) struct RandomW {
    rng: ChaCha8Rng,
    /// |N(0, 1)| draws instead of uniform ones.
    half_normal: bool,
}

impl RandomW {
    /// Starts at row 0.
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            rng: stream(seed, W_STREAM),
            half_normal: false,
        }
    }

    /// Half-normal draws from row 0.
    pub(crate) fn half_normal(seed: u64) -> Self {
        Self {
            half_normal: true,
            ..Self::new(seed)
        }
    }

    /// Skips `n_rows` rows of `k` values: the draws of another process's
    /// rows, so that this process's rows get the values they get alone.
    pub(crate) fn skip_rows(&mut self, n_rows: usize, k: usize) {
        let mut scratch = ndarray::Array2::<f32>::zeros((n_rows.min(4096), k));
        let mut left = n_rows;
        while left > 0 {
            let n = left.min(scratch.nrows());
            self.fill_next_rows(scratch.slice_mut(ndarray::s![..n, ..]));
            left -= n;
        }
    }

    /// Fills the next `w.nrows()` rows of W into `w`.
    pub(crate) fn fill_next_rows(&mut self, mut w: ArrayViewMut2<'_, f32>) {
        for row in w.rows_mut() {
            for value in row {
                *value = if self.half_normal {
                    half_normal(&mut self.rng)
                } else {
                    self.rng.random::<f32>()
                };
            }
        }
    }
}

/// The whole random initial W for `seed`.
pub fn random_w(seed: u64, n_rows: usize, k: usize) -> Array2<f32> {
    let mut w = Array2::zeros((n_rows, k));
    RandomW::new(seed).fill_next_rows(w.view_mut());
    w
}

fn stream(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::s;

    #[test]
    fn w_drawn_in_blocks_equals_w_drawn_whole() {
        let whole = random_w(7, 10, 3);
        let mut parts = Array2::zeros((10, 3));
        let mut draw = RandomW::new(7);
        draw.fill_next_rows(parts.slice_mut(s![0..4, ..]));
        draw.fill_next_rows(parts.slice_mut(s![4..10, ..]));
        assert_eq!(whole, parts);
    }

    #[test]
    fn half_normal_draws_have_the_half_normal_mean_and_come_in_blocks() {
        let h = half_normal_h(3, 10, 10_000);
        let mean = h.iter().map(|&v| f64::from(v)).sum::<f64>() / h.len() as f64;
        // E|N(0, 1)| = sqrt(2 / π) ≈ 0.7979.
        assert!(
            (mean - (2.0 / std::f64::consts::PI).sqrt()).abs() < 0.01,
            "{mean}"
        );
        assert!(h.iter().all(|&v| v >= 0.0 && v.is_finite()));
        let whole = half_normal_w(3, 9, 2);
        let mut parts = Array2::zeros((9, 2));
        let mut draw = RandomW::half_normal(3);
        draw.fill_next_rows(parts.slice_mut(s![0..5, ..]));
        draw.fill_next_rows(parts.slice_mut(s![5..9, ..]));
        assert_eq!(whole, parts);
    }

    #[test]
    fn draws_are_in_unit_interval_and_depend_on_seed() {
        let h = random_h(1, 4, 50);
        assert!(h.iter().all(|&v| (0.0..1.0).contains(&v)));
        assert_ne!(h, random_h(2, 4, 50));
        assert_eq!(h, random_h(1, 4, 50));
        assert_ne!(random_w(1, 4, 50).row(0), h.column(0));
    }
}
