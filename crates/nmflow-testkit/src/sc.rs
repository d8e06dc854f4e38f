//! Single-cell-like counts: gene programs, per-cell program usages,
//! log-normal library sizes and Poisson counts.
//!
//! - Spectra: a shared log-normal gene profile; each program boosts its own
//!   marker genes (a random fifth of all genes, by a log-normal factor).
//!   Each spectrum sums to 1.
//! - Cell i: a true program c_i uniform over programs; usage 0.8 on c_i,
//!   0.2 spread over all programs by normalised exponentials.
//! - Library size L_i = L0 · exp(N(0, 0.4²)); L0 is set so that about the
//!   requested fraction of entries is non-zero (an analytic first guess,
//!   refined by bisection on a sample of cells).
//! - Counts: for every program p, n_ip ~ Poisson(L_i · u_ip) molecules, each
//!   assigned to a gene drawn from spectrum p; so entry (i, j) is
//!   Poisson(L_i Σ_p u_ip s_pj), as independent Poisson splitting gives.
//!
//! Cell i is drawn from its own ChaCha8 stream, so cells can be generated in
//! any order and chunking.

use ndarray::Array2;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::weighted::WeightedAliasIndex;
use rand_distr::{Distribution, Normal, Poisson, StandardNormal};

const DOMAIN: u64 = 0x5C5C_0DA7_A5E7_0002;
const DOMINANT_USAGE: f64 = 0.8;
const LIBRARY_SD: f64 = 0.4;

/// One generated cell.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// The program the cell mostly uses.
    pub program: u32,
    /// Usage of every program (sums to 1).
    pub usage: Vec<f32>,
    /// Non-zero counts as (gene, count), genes increasing.
    pub counts: Vec<(u32, f32)>,
}

/// Generates cells of one data set.
#[derive(Debug)]
pub struct ScGenerator {
    seed: u64,
    spectra: Array2<f32>,
    alias: Vec<WeightedAliasIndex<f64>>,
    library: f64,
}

fn stream(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ DOMAIN);
    rng.set_stream(stream);
    rng
}

impl ScGenerator {
    /// Draws the spectra of `programs` programs over `genes` genes and sets
    /// the library size for non-zero fraction `density` (0 < density < 1).
    ///
    /// # Panics
    /// If `programs` or `genes` is 0 or `density` is not in (0, 1).
    pub fn new(seed: u64, genes: usize, programs: usize, density: f64) -> Self {
        assert!(
            genes > 0 && programs > 0,
            "genes and programs must be positive"
        );
        assert!(density > 0.0 && density < 1.0, "density must be in (0, 1)");
        let mut rng = stream(seed, 0);
        let normal =
            |rng: &mut ChaCha8Rng, sd: f64| -> f64 { sd * rng.sample::<f64, _>(StandardNormal) };
        let base: Vec<f64> = (0..genes).map(|_| normal(&mut rng, 1.0).exp()).collect();
        let mut spectra = Array2::<f32>::zeros((programs, genes));
        let mut alias = Vec::with_capacity(programs);
        for mut row in spectra.rows_mut() {
            let weights: Vec<f64> = base
                .iter()
                .map(|&b| {
                    if rng.random::<f64>() < 0.2 {
                        b * (1.5 * normal(&mut rng, 1.0).abs()).exp() * 4.0
                    } else {
                        b
                    }
                })
                .collect();
            let total: f64 = weights.iter().sum();
            for (out, w) in row.iter_mut().zip(&weights) {
                *out = (w / total) as f32;
            }
            alias.push(WeightedAliasIndex::new(weights).expect("positive finite weights"));
        }
        let mean_profile: Vec<f64> = (0..genes)
            .map(|j| spectra.column(j).iter().map(|&v| f64::from(v)).sum::<f64>() / programs as f64)
            .collect();
        let mut generator = Self {
            seed,
            spectra,
            alias,
            library: calibrate(&mean_profile, density),
        };
        generator.library = generator.calibrate_on_sample(density);
        generator
    }

    /// Refines the library size by bisection on the non-zero fraction of a
    /// sample of cells drawn from streams no data cell uses.
    fn calibrate_on_sample(&self, density: f64) -> f64 {
        const SAMPLE: usize = 256;
        let genes = self.spectra.ncols();
        let measured = |library: f64| -> f64 {
            let nnz: usize = (0..SAMPLE)
                .map(|i| {
                    self.draw(&mut stream(self.seed, (1 << 63) + i as u64), library)
                        .counts
                        .len()
                })
                .sum();
            nnz as f64 / (SAMPLE * genes) as f64
        };
        let (mut lo, mut hi) = (self.library * 0.5, self.library * 8.0);
        for _ in 0..16 {
            let mid = (lo * hi).sqrt();
            if measured(mid) < density {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        (lo * hi).sqrt()
    }

    /// The true spectra, `programs × genes`, rows summing to 1.
    pub fn spectra(&self) -> &Array2<f32> {
        &self.spectra
    }

    /// The median library size L0.
    pub fn library_size(&self) -> f64 {
        self.library
    }

    /// Cell `idx`.
    pub fn cell(&self, idx: usize) -> Cell {
        self.draw(&mut stream(self.seed, idx as u64 + 1), self.library)
    }

    fn draw(&self, rng: &mut ChaCha8Rng, median_library: f64) -> Cell {
        let programs = self.alias.len();
        let program = rng.random_range(0..programs);
        let spread: Vec<f64> = (0..programs)
            .map(|_| -rng.random::<f64>().max(1e-300).ln())
            .collect();
        let spread_total: f64 = spread.iter().sum();
        let usage: Vec<f64> = spread
            .iter()
            .enumerate()
            .map(|(p, s)| {
                let dominant = if p == program { DOMINANT_USAGE } else { 0.0 };
                dominant + (1.0 - DOMINANT_USAGE) * s / spread_total
            })
            .collect();
        let library = median_library
            * Normal::new(0.0, LIBRARY_SD)
                .expect("valid normal")
                .sample(rng)
                .exp();
        let mut genes: Vec<u32> = Vec::new();
        for (p, &u) in usage.iter().enumerate() {
            let lambda = library * u;
            let n = if lambda > 0.0 {
                Poisson::new(lambda).map_or(0.0, |d| d.sample(rng))
            } else {
                0.0
            };
            for _ in 0..n as usize {
                genes.push(self.alias[p].sample(rng) as u32);
            }
        }
        genes.sort_unstable();
        let mut counts: Vec<(u32, f32)> = Vec::new();
        for gene in genes {
            match counts.last_mut() {
                Some((g, c)) if *g == gene => *c += 1.0,
                _ => counts.push((gene, 1.0)),
            }
        }
        Cell {
            program: program as u32,
            usage: usage.into_iter().map(|u| u as f32).collect(),
            counts,
        }
    }
}

/// The library size at which a cell with expression profile `profile`
/// (summing to 1) has the expected non-zero fraction `density`.
fn calibrate(profile: &[f64], density: f64) -> f64 {
    let expected =
        |l: f64| profile.iter().map(|&m| 1.0 - (-l * m).exp()).sum::<f64>() / profile.len() as f64;
    let (mut lo, mut hi) = (1e-3, 1.0);
    while expected(hi) < density && hi < 1e12 {
        hi *= 2.0;
    }
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if expected(mid) < density {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_reproducible_sorted_and_near_the_density() {
        let generator = ScGenerator::new(5, 2000, 4, 0.06);
        let cells: Vec<Cell> = (0..300).map(|i| generator.cell(i)).collect();
        assert_eq!(cells[17], generator.cell(17));
        for cell in &cells {
            assert!(cell.counts.windows(2).all(|w| w[0].0 < w[1].0));
            assert!((cell.usage.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            assert!(cell.usage[cell.program as usize] >= 0.8);
        }
        let nnz: usize = cells.iter().map(|c| c.counts.len()).sum();
        let density = nnz as f64 / (300.0 * 2000.0);
        assert!((0.055..0.065).contains(&density), "density {density}");
        for row in generator.spectra().rows() {
            assert!((row.sum() - 1.0).abs() < 1e-4);
        }
    }
}
