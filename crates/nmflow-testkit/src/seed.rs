//! The classic clustered "seed" generator.
//!
//! `components` cluster centres μ_c ~ uniform(0, 1)^cols; each row picks a
//! cluster uniformly at random and draws obs = μ_c + normal(0, sd = μ_c)
//! elementwise, clipped at 0. Row r is drawn from its own ChaCha8 stream
//! (r + 1) of the seed (mixed with a domain constant, so that the data shares
//! no random numbers with nmflow's initialisation), the centres from stream 0, so any range of rows can
//! be generated independently and the data does not depend on chunking.

use std::ops::Range;

use ndarray::{Array2, ArrayViewMut2};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

/// Generates rows of the seed data set for one seed.
#[derive(Debug, Clone)]
pub struct SeedGenerator {
    seed: u64,
    centers: Array2<f32>,
}

impl SeedGenerator {
    /// Draws the `components × cols` centres of `seed`.
    ///
    /// # Panics
    /// If `components` is 0.
    pub fn new(seed: u64, components: usize, cols: usize) -> Self {
        assert!(
            components > 0,
            "the seed generator needs at least one component"
        );
        let mut rng = stream(seed, 0);
        let centers = Array2::from_shape_simple_fn((components, cols), || rng.random::<f32>());
        Self { seed, centers }
    }

    /// The cluster centres, `components × cols`.
    pub fn centers(&self) -> &Array2<f32> {
        &self.centers
    }

    /// Writes rows `rows` into `out` (`rows.len() × cols`) and their cluster
    /// labels into `labels`.
    ///
    /// # Panics
    /// If the shapes do not agree.
    pub fn fill_rows(
        &self,
        rows: Range<usize>,
        mut out: ArrayViewMut2<'_, f32>,
        labels: &mut [u32],
    ) {
        assert_eq!(out.nrows(), rows.len());
        assert_eq!(labels.len(), rows.len());
        assert_eq!(out.ncols(), self.centers.ncols());
        let n_components = self.centers.nrows();
        for ((row_idx, mut row), label) in rows.zip(out.rows_mut()).zip(labels.iter_mut()) {
            let mut rng = stream(self.seed, row_idx as u64 + 1);
            let cluster = rng.random_range(0..n_components);
            *label = cluster as u32;
            for (value, &mu) in row.iter_mut().zip(self.centers.row(cluster)) {
                let noise: f32 = rng.sample(StandardNormal);
                *value = (mu + noise * mu).max(0.0);
            }
        }
    }

    /// The whole `n_rows × cols` matrix and its labels, for small tests.
    pub fn matrix(&self, n_rows: usize) -> (Array2<f32>, Vec<u32>) {
        let mut x = Array2::zeros((n_rows, self.centers.ncols()));
        let mut labels = vec![0; n_rows];
        self.fill_rows(0..n_rows, x.view_mut(), &mut labels);
        (x, labels)
    }
}

/// Mixed into the seed so that the generator's streams share nothing with
/// nmflow's random initialisation for the same seed.
const DOMAIN: u64 = 0x5EED_0DA7_A5E7_0001;

fn stream(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ DOMAIN);
    rng.set_stream(stream);
    rng
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::s;

    #[test]
    fn rows_do_not_depend_on_chunking() {
        let generator = SeedGenerator::new(3, 4, 7);
        let (whole, labels) = generator.matrix(20);
        let mut parts = Array2::zeros((20, 7));
        let mut part_labels = vec![0; 20];
        generator.fill_rows(0..9, parts.slice_mut(s![0..9, ..]), &mut part_labels[0..9]);
        generator.fill_rows(
            9..20,
            parts.slice_mut(s![9..20, ..]),
            &mut part_labels[9..20],
        );
        assert_eq!(whole, parts);
        assert_eq!(labels, part_labels);
        assert!(whole.iter().all(|&v| v >= 0.0));
        assert!(labels.iter().all(|&l| l < 4));
    }
}
