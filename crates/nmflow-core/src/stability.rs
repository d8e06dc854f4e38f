//! How stable factorizations are across random restarts:
//! - consensus clustering (Brunet et al. 2004): for a sample of rows, the
//!   fraction of restarts that put each pair in the same cluster, and the
//!   cophenetic correlation of its average-linkage dendrogram;
//! - agreement of the spectra (rows of H): components matched one to one
//!   across restarts by the Hungarian method on their correlations.

use ndarray::{Array2, ArrayView2};

/// Counts, for every pair of sampled rows, the restarts that cluster them
/// together. Memory: one `u32` per pair.
#[derive(Debug, Clone)]
pub struct Consensus {
    n: usize,
    /// Condensed upper triangle, row-major: pair (i, j), i < j.
    together: Vec<u32>,
    n_runs: u32,
}

/// Index of pair (i, j), i < j, in a condensed `n × n` matrix.
fn condensed_index(n: usize, i: usize, j: usize) -> usize {
    n * i - i * (i + 1) / 2 + (j - i - 1)
}

impl Consensus {
    /// An empty consensus over `n` sampled rows.
    pub fn new(n: usize) -> Self {
        Self {
            n,
            together: vec![0; n * n.saturating_sub(1) / 2],
            n_runs: 0,
        }
    }

    /// Adds one restart's cluster of every sampled row.
    ///
    /// # Panics
    /// If `labels` does not have one entry per sampled row.
    pub fn add(&mut self, labels: &[u32]) {
        assert_eq!(labels.len(), self.n, "one label per sampled row");
        let mut idx = 0;
        for i in 0..self.n {
            for j in i + 1..self.n {
                self.together[idx] += u32::from(labels[i] == labels[j]);
                idx += 1;
            }
        }
        self.n_runs += 1;
    }

    /// Restarts added.
    pub fn n_runs(&self) -> u32 {
        self.n_runs
    }

    /// The consensus value of rows i and j (1 on the diagonal).
    pub fn value(&self, i: usize, j: usize) -> f64 {
        if i == j {
            return 1.0;
        }
        let (a, b) = if i < j { (i, j) } else { (j, i) };
        f64::from(self.together[condensed_index(self.n, a, b)]) / f64::from(self.n_runs.max(1))
    }

    /// The cophenetic correlation coefficient: the Pearson correlation
    /// between the distances 1 − C and the cophenetic distances of their
    /// average-linkage hierarchical clustering. NaN when it is undefined
    /// (fewer than three rows, no restart, or distances all equal).
    pub fn cophenetic_correlation(&self) -> f64 {
        let n = self.n;
        if n < 3 || self.n_runs == 0 {
            return f64::NAN;
        }
        let runs = f64::from(self.n_runs);
        let distances: Vec<f64> = self
            .together
            .iter()
            .map(|&t| 1.0 - f64::from(t) / runs)
            .collect();
        let mut work = distances.clone();
        let dendrogram = kodama::linkage(&mut work, n, kodama::Method::Average);
        let cophenetic = cophenetic_distances(n, dendrogram.steps());
        pearson(&distances, &cophenetic)
    }
}

/// Rows of a sweep's sample whose consensus is kept for the figure:
/// evenly spaced through the sample, at most this many.
pub const SHOWN_ROWS: usize = 250;

impl Consensus {
    /// Positions in the sample of the rows kept for the figure: all of
    /// them up to [`SHOWN_ROWS`], else [`SHOWN_ROWS`] evenly spaced ones.
    pub fn shown_rows(&self) -> Vec<usize> {
        let m = self.n.min(SHOWN_ROWS);
        (0..m).map(|i| i * self.n / m).collect()
    }

    /// The consensus of the sampled rows at `positions`, as a dense
    /// symmetric matrix with ones on its diagonal.
    pub fn matrix(&self, positions: &[usize]) -> Array2<f32> {
        let m = positions.len();
        Array2::from_shape_fn((m, m), |(a, b)| {
            self.value(positions[a], positions[b]) as f32
        })
    }
}

/// The leaf order of the average-linkage dendrogram of the distances
/// 1 − C of a consensus matrix `c` (square): rows clustered together by
/// most restarts end up next to each other, as consensus heatmaps are
/// drawn (Monti et al. 2003; Brunet et al. 2004).
pub fn dendrogram_order(c: ArrayView2<'_, f32>) -> Vec<usize> {
    let n = c.nrows().min(c.ncols());
    if n < 2 {
        return (0..n).collect();
    }
    let mut distances = Vec::with_capacity(n * (n - 1) / 2);
    for i in 0..n {
        for j in i + 1..n {
            distances.push(1.0 - f64::from(c[(i, j)]));
        }
    }
    let dendrogram = kodama::linkage(&mut distances, n, kodama::Method::Average);
    // Cluster n + s is made by step s; the root is the last step. Leaves
    // are listed depth first, each step's first cluster before its second.
    let steps = dendrogram.steps();
    let mut order = Vec::with_capacity(n);
    let mut stack = vec![n + steps.len() - 1];
    while let Some(cluster) = stack.pop() {
        if cluster < n {
            order.push(cluster);
        } else {
            let step = &steps[cluster - n];
            stack.push(step.cluster2);
            stack.push(step.cluster1);
        }
    }
    order
}

/// The cophenetic distance of every pair (condensed): the height at which
/// the dendrogram first joins them.
fn cophenetic_distances(n: usize, steps: &[kodama::Step<f64>]) -> Vec<f64> {
    let mut out = vec![0.0; n * n.saturating_sub(1) / 2];
    let mut members: Vec<Vec<usize>> = (0..n).map(|i| vec![i]).collect();
    for step in steps {
        let a = std::mem::take(&mut members[step.cluster1]);
        let b = std::mem::take(&mut members[step.cluster2]);
        for &i in &a {
            for &j in &b {
                let (lo, hi) = if i < j { (i, j) } else { (j, i) };
                out[condensed_index(n, lo, hi)] = step.dissimilarity;
            }
        }
        let mut joined = a;
        joined.extend(b);
        members.push(joined);
    }
    out
}

fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let mx = x.iter().sum::<f64>() / n;
    let my = y.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (&a, &b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    if sxx <= 0.0 || syy <= 0.0 {
        return f64::NAN;
    }
    sxy / (sxx * syy).sqrt()
}

/// Pearson correlation of every row of `a` with every row of `b`
/// (`a.nrows() × b.nrows()`).
pub(crate) fn row_correlations(a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>) -> Array2<f64> {
    let centre = |m: ArrayView2<'_, f32>| -> Array2<f64> {
        let mut m = m.mapv(f64::from);
        for mut row in m.outer_iter_mut() {
            let mean = row.mean().unwrap_or(0.0);
            row.mapv_inplace(|v| v - mean);
            let norm = row.dot(&row).sqrt();
            if norm > 0.0 {
                row.mapv_inplace(|v| v / norm);
            }
        }
        m
    };
    centre(a).dot(&centre(b).t())
}

/// The assignment of rows to columns of a square `cost` matrix with the
/// smallest total cost (Hungarian method, O(n³)): `out[row] = column`.
///
/// # Panics
/// If `cost` is not square.
pub(crate) fn min_cost_assignment(cost: ArrayView2<'_, f64>) -> Vec<usize> {
    let n = cost.nrows();
    assert_eq!(n, cost.ncols(), "the cost matrix must be square");
    // Potentials u (rows), v (columns); p[j] = row matched to column j
    // (1-based, 0 = none); the classic shortest-augmenting-path form.
    let mut u = vec![0.0f64; n + 1];
    let mut v = vec![0.0f64; n + 1];
    let mut p = vec![0usize; n + 1];
    let mut way = vec![0usize; n + 1];
    for i in 1..=n {
        p[0] = i;
        let mut j0 = 0;
        let mut minv = vec![f64::INFINITY; n + 1];
        let mut used = vec![false; n + 1];
        loop {
            used[j0] = true;
            let i0 = p[j0];
            let mut delta = f64::INFINITY;
            let mut j1 = 0;
            for j in 1..=n {
                if !used[j] {
                    let cur = cost[(i0 - 1, j - 1)] - u[i0] - v[j];
                    if cur < minv[j] {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            for j in 0..=n {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut out = vec![0usize; n];
    for j in 1..=n {
        if p[j] > 0 {
            out[p[j] - 1] = j - 1;
        }
    }
    out
}

/// Mean correlation of the components of `other` with those of
/// `reference`, matched one to one to maximise the total correlation.
pub(crate) fn matched_correlation(
    reference: ArrayView2<'_, f32>,
    other: ArrayView2<'_, f32>,
) -> f64 {
    let corr = row_correlations(reference, other);
    let assignment = min_cost_assignment(corr.mapv(|c| -c).view());
    let k = assignment.len();
    assignment
        .iter()
        .enumerate()
        .map(|(i, &j)| corr[(i, j)])
        .sum::<f64>()
        / k.max(1) as f64
}

/// Spectra stability of one k: the mean over restarts other than
/// `reference_idx` of their `matched_correlation` with the reference
/// restart's H. NaN with a single restart.
pub fn spectra_stability(spectra: &[Array2<f32>], reference_idx: usize) -> f64 {
    let reference = spectra[reference_idx].view();
    let scores: Vec<f64> = spectra
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != reference_idx)
        .map(|(_, h)| matched_correlation(reference, h.view()))
        .collect();
    if scores.is_empty() {
        return f64::NAN;
    }
    scores.iter().sum::<f64>() / scores.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    /// Worked by hand: D = 1 − C = [1/3, 1, 1, 2/3, 2/3, 0] for pairs
    /// (01, 02, 03, 12, 13, 23); average linkage joins {2,3} at 0, {0,1} at
    /// 1/3, then both at (1 + 1 + 2/3 + 2/3) / 4 = 5/6. In units of 1/18 the
    /// centred vectors are d = (−5, 7, 7, 1, 1, −11) and
    /// c = (−5, 4, 4, 4, 4, −11): r = 210 / √(246 · 210) = √(210/246).
    #[test]
    fn cophenetic_correlation_of_a_hand_checked_case() {
        let mut consensus = Consensus::new(4);
        consensus.add(&[0, 0, 1, 1]);
        consensus.add(&[0, 0, 1, 1]);
        consensus.add(&[0, 1, 1, 1]);
        assert!((consensus.value(0, 1) - 2.0 / 3.0).abs() < 1e-12);
        assert!((consensus.value(2, 1) - 1.0 / 3.0).abs() < 1e-12);
        let r = consensus.cophenetic_correlation();
        assert!((r - (210.0f64 / 246.0).sqrt()).abs() < 1e-12, "{r}");
    }

    #[test]
    fn the_dendrogram_order_puts_rows_clustered_together_side_by_side() {
        let mut consensus = Consensus::new(6);
        consensus.add(&[0, 1, 0, 1, 2, 2]);
        consensus.add(&[0, 1, 0, 1, 2, 2]);
        consensus.add(&[0, 1, 0, 1, 1, 1]);
        let rows = consensus.shown_rows();
        assert_eq!(rows, (0..6).collect::<Vec<_>>());
        let c = consensus.matrix(&rows);
        assert_eq!(c[(0, 2)], 1.0);
        assert!((c[(1, 4)] - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(c[(3, 3)], 1.0);
        let order = dendrogram_order(c.view());
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..6).collect::<Vec<_>>(), "a permutation");
        let place = |r: usize| order.iter().position(|&o| o == r).expect("listed");
        for (a, b) in [(0, 2), (1, 3), (4, 5)] {
            assert_eq!(place(a).abs_diff(place(b)), 1, "{a} and {b} in {order:?}");
        }
        // {1, 3} and {4, 5} are joined before {0, 2} joins them.
        assert!(place(0).min(place(2)) == 0 || place(0).max(place(2)) == 5);
    }

    #[test]
    fn shown_rows_are_spread_through_a_large_sample() {
        let rows = Consensus::new(1000).shown_rows();
        assert_eq!(rows.len(), SHOWN_ROWS);
        assert_eq!(rows[0], 0);
        assert_eq!(rows[1], 4);
        assert!(*rows.last().expect("rows") < 1000);
    }

    #[test]
    fn perfectly_stable_clusters_have_cophenetic_one() {
        let mut consensus = Consensus::new(6);
        for _ in 0..4 {
            consensus.add(&[0, 0, 1, 1, 2, 2]);
        }
        assert!((consensus.cophenetic_correlation() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn hungarian_matches_brute_force() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for n in 1..=6 {
            let cost = Array2::from_shape_fn((n, n), |_| rng.random::<f64>());
            let found = min_cost_assignment(cost.view());
            let total = |perm: &[usize]| -> f64 {
                perm.iter().enumerate().map(|(i, &j)| cost[(i, j)]).sum()
            };
            let mut best = f64::INFINITY;
            permutations(&mut (0..n).collect::<Vec<_>>(), 0, &mut |p| {
                best = best.min(total(p));
            });
            assert!((total(&found) - best).abs() < 1e-12, "n = {n}");
        }
    }

    fn permutations(items: &mut Vec<usize>, start: usize, visit: &mut dyn FnMut(&[usize])) {
        if start == items.len() {
            visit(items);
            return;
        }
        for i in start..items.len() {
            items.swap(start, i);
            permutations(items, start + 1, visit);
            items.swap(start, i);
        }
    }

    #[test]
    fn permuted_spectra_are_perfectly_stable() {
        let h = array![
            [1.0f32, 0.0, 2.0, 0.5],
            [0.0, 3.0, 0.1, 1.0],
            [2.0, 2.0, 0.0, 0.0]
        ];
        let permuted = array![
            [0.0f32, 3.0, 0.1, 1.0],
            [2.0, 2.0, 0.0, 0.0],
            [1.0, 0.0, 2.0, 0.5]
        ];
        let score = spectra_stability(&[h, permuted.mapv(|v| 2.0 * v)], 0);
        assert!((score - 1.0).abs() < 1e-9, "{score}");
    }
}
