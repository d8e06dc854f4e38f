//! A reproducible sample of rows of X, kept sparse and bounded in size, and
//! its principal components.
//!
//! The solver collects the sampled rows during the first iteration's pass
//! (after the per-row normalisation), divides them by the column scale, so
//! the sample holds rows of X_s, the matrix being factorized, and, when
//! they are first needed (the first checkpoint, or the end of the run),
//! computes their principal components and frees them. Figures and consensus
//! clustering use the sample instead of all rows.

use std::ops::Range;

use ndarray::{Array2, ArrayView2, Axis};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use rayon::prelude::*;

use crate::collective::Collective;
use crate::source::RowBlock;

/// Values a process sends at a time when the processes gather a sample
/// (8 MiB).
const GATHERED_VALUES: usize = 1 << 20;

/// Row ranges of the sample's transposed product, summed in order.
const PCA_PARTS: usize = 4;

/// Rows of the sample's product computed side by side.
const ROWS_TOGETHER: usize = 4;

/// Columns of the subspace of the usual two components (plus three), whose
/// product has a copy with the sums in registers.
const PCA_WIDTH: usize = 5;

/// Whether the sample's products run their AVX-512F copies.
#[cfg(target_arch = "x86_64")]
fn wide_registers() -> bool {
    std::is_x86_feature_detected!("avx512f")
}

/// Rows of X_s, stored as CSR.
#[derive(Debug, Clone)]
pub struct RowSample {
    rows: Vec<usize>,
    n_cols: usize,
    indptr: Vec<usize>,
    indices: Vec<u32>,
    data: Vec<f32>,
    /// Index into `rows` of the next row to collect.
    next: usize,
    /// The principal components, once computed by [`RowSample::finish`].
    components: Option<Pca>,
    /// The seed of the components' start ([`RowSample::with_seed`]).
    seed: Option<u64>,
}

/// Up to `n_sample` distinct row indices out of `n_rows`, drawn from `seed`,
/// sorted. All rows when `n_rows <= n_sample`.
pub fn sample_row_indices(n_rows: usize, n_sample: usize, seed: u64) -> Vec<usize> {
    if n_rows <= n_sample {
        return (0..n_rows).collect();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5A4D_504C_4552_4F57);
    let mut rows = rand::seq::index::sample(&mut rng, n_rows, n_sample).into_vec();
    rows.sort_unstable();
    rows
}

impl RowSample {
    /// An empty sample that will hold `rows` (sorted, distinct) of a matrix
    /// with `n_cols` columns.
    ///
    /// # Panics
    /// If `rows` is not strictly increasing.
    pub fn new(rows: Vec<usize>, n_cols: usize) -> Self {
        assert!(
            rows.windows(2).all(|w| w[0] < w[1]),
            "sample rows must be strictly increasing"
        );
        Self {
            rows,
            n_cols,
            indptr: vec![0],
            indices: Vec::new(),
            data: Vec::new(),
            next: 0,
            components: None,
            seed: None,
        }
    }

    /// The sample whose components start from `seed` (the seed its rows
    /// were drawn with), whatever the runs that collect it: without it the
    /// fit uses its first run's seed.
    pub fn with_seed(self, seed: u64) -> Self {
        Self {
            seed: Some(seed),
            ..self
        }
    }

    /// The seed given by [`RowSample::with_seed`].
    pub fn seed(&self) -> Option<u64> {
        self.seed
    }

    /// The sampled row indices (of X), in order.
    pub fn rows(&self) -> &[usize] {
        &self.rows
    }

    /// Rows collected so far.
    pub fn n_collected(&self) -> usize {
        self.indptr.len() - 1
    }

    /// Columns of X.
    pub fn n_cols(&self) -> usize {
        self.n_cols
    }

    /// Stored entries of collected row `i` (the `i`-th sampled row).
    pub fn row(&self, i: usize) -> (&[u32], &[f32]) {
        let range = self.indptr[i]..self.indptr[i + 1];
        (&self.indices[range.clone()], &self.data[range])
    }

    /// Copies the sampled rows that fall in `rows` out of the block `x`
    /// (whose first row is X's row `rows.start`). Blocks must come in row
    /// order.
    pub fn collect(&mut self, rows: Range<usize>, x: &RowBlock<'_>) {
        if let RowBlock::Dense(x) = x
            && self.data.capacity() == 0
        {
            // Dense rows store every column: room for all of them at once
            // (growing by doubling would copy, and first touch, twice the
            // memory).
            let values = (self.rows.len() - self.next).saturating_mul(x.ncols());
            self.data.reserve_exact(values);
            self.indices.reserve_exact(values);
        }
        while let Some(&row) = self.rows.get(self.next) {
            if row >= rows.end {
                break;
            }
            if row >= rows.start {
                let r = row - rows.start;
                match x {
                    RowBlock::Dense(x) => {
                        // Every value written, the length advanced past the
                        // non-zero ones only: no branch per value.
                        let start = self.data.len();
                        let n_cols = x.ncols();
                        self.data.resize(start + n_cols, 0.0);
                        self.indices.resize(start + n_cols, 0);
                        let mut len = start;
                        for (col, &v) in x.row(r).iter().enumerate() {
                            self.data[len] = v;
                            self.indices[len] = col as u32;
                            len += usize::from(v != 0.0);
                        }
                        self.data.truncate(len);
                        self.indices.truncate(len);
                    }
                    RowBlock::Csr(x) => {
                        let (cols, vals) = x.row(r);
                        for (&c, &v) in cols.iter().zip(vals) {
                            if v != 0.0 {
                                self.indices.push(c);
                                self.data.push(v);
                            }
                        }
                    }
                }
                self.indptr.push(self.indices.len());
            }
            self.next += 1;
        }
    }

    /// The part of this sample that one process collects: its sampled
    /// rows among `rows` (the process's rows of the whole), numbered from
    /// `rows.start`.
    pub(crate) fn within(&self, rows: &Range<usize>) -> RowSample {
        let local = self
            .rows
            .iter()
            .filter(|r| rows.contains(r))
            .map(|r| r - rows.start)
            .collect();
        RowSample::new(local, self.n_cols)
    }

    /// Fills this (empty) sample with every process's collected `part`
    /// ([`RowSample::within`]), in rank order, which is row order: each
    /// process in turn sends its rows to all, at most [`GATHERED_VALUES`]
    /// values at a time, so every process ends with the whole sample (and
    /// computes the same components).
    pub(crate) fn gather(&mut self, part: &RowSample, collective: &dyn Collective) {
        debug_assert_eq!(self.n_collected(), 0);
        for from in 0..collective.size() {
            let mut next = 0;
            loop {
                let mine = if from == collective.rank() {
                    part.pack(&mut next, GATHERED_VALUES)
                } else {
                    Vec::new()
                };
                let parts = collective.all_gather_varying(&mine);
                if parts[from].is_empty() {
                    break;
                }
                self.unpack(&parts[from]);
            }
        }
        self.next = self.n_collected();
    }

    /// Collected rows from `next` on, each as its length, column indices
    /// and values (all exact in f64), up to `most` values but at least one
    /// row; advances `next`.
    fn pack(&self, next: &mut usize, most: usize) -> Vec<f64> {
        let mut packed = Vec::new();
        while *next < self.n_collected() && (packed.is_empty() || packed.len() < most) {
            let (cols, vals) = self.row(*next);
            packed.push(cols.len() as f64);
            packed.extend(cols.iter().map(|&c| f64::from(c)));
            packed.extend(vals.iter().map(|&v| f64::from(v)));
            *next += 1;
        }
        packed
    }

    /// Appends the rows [`RowSample::pack`] packed.
    fn unpack(&mut self, mut packed: &[f64]) {
        while let Some((&len, rest)) = packed.split_first() {
            let len = len as usize;
            let (cols, rest) = rest.split_at(len);
            let (vals, rest) = rest.split_at(len);
            self.indices.extend(cols.iter().map(|&c| c as u32));
            self.data.extend(vals.iter().map(|&v| v as f32));
            self.indptr.push(self.indices.len());
            packed = rest;
        }
    }

    /// Divides every stored value by its column's divisor.
    pub(crate) fn scale_columns(&mut self, col_scale: &[f32]) {
        for (v, &c) in self.data.iter_mut().zip(&self.indices) {
            *v /= col_scale[c as usize];
        }
    }

    /// X_sample · m for `m` `n_cols × q`: `n × q`; parallel over rows.
    /// Each output entry is summed over its row's stored values in order;
    /// rows go [`ROWS_TOGETHER`] at a time, their sums interleaved, so that
    /// the chains of dependent additions of different rows overlap (one
    /// row alone waits for every addition).
    fn times(&self, m: ArrayView2<'_, f64>) -> Array2<f64> {
        let q = m.ncols().max(1);
        let m = m.as_standard_layout();
        let m = m.as_slice().unwrap_or_default();
        let mut out = Array2::zeros((self.n_collected(), q));
        if let Some(out_slice) = out.as_slice_mut() {
            out_slice
                .par_chunks_mut(q * ROWS_TOGETHER)
                .enumerate()
                .for_each(|(g, out_rows)| {
                    let first = g * ROWS_TOGETHER;
                    if q == PCA_WIDTH && out_rows.len() == q * ROWS_TOGETHER {
                        self.times_rows::<PCA_WIDTH>(first, m, out_rows);
                    } else {
                        for (r, out_row) in out_rows.chunks_mut(q).enumerate() {
                            let (cols, vals) = self.row(first + r);
                            for (&c, &v) in cols.iter().zip(vals) {
                                let v = f64::from(v);
                                let src = &m[c as usize * q..(c as usize + 1) * q];
                                for (o, &s) in out_row.iter_mut().zip(src) {
                                    *o += v * s;
                                }
                            }
                        }
                    }
                });
        }
        out
    }

    /// [`RowSample::times`] for the [`ROWS_TOGETHER`] rows from `first`,
    /// `Q` columns: the same additions in the same order per entry, the
    /// rows' sums held in registers and advanced side by side.
    fn times_rows<const Q: usize>(&self, first: usize, m: &[f64], out_rows: &mut [f64]) {
        #[cfg(target_arch = "x86_64")]
        if wide_registers() {
            // SAFETY: the CPU has AVX-512F (checked just above).
            unsafe { self.times_rows_avx512::<Q>(first, m, out_rows) };
            return;
        }
        self.times_rows_body::<Q>(first, m, out_rows);
    }

    /// [`RowSample::times_rows`] compiled for AVX-512F: 32 vector registers
    /// hold every row's sums (the same operations, so the same results).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn times_rows_avx512<const Q: usize>(
        &self,
        first: usize,
        m: &[f64],
        out_rows: &mut [f64],
    ) {
        self.times_rows_body::<Q>(first, m, out_rows);
    }

    #[inline(always)]
    fn times_rows_body<const Q: usize>(&self, first: usize, m: &[f64], out_rows: &mut [f64]) {
        let rows: [(&[u32], &[f32]); ROWS_TOGETHER] = std::array::from_fn(|r| self.row(first + r));
        let mut acc = [[0.0f64; Q]; ROWS_TOGETHER];
        let common = rows.iter().map(|(cols, _)| cols.len()).min().unwrap_or(0);
        let step = |acc: &mut [f64; Q], c: u32, v: f32| {
            let v = f64::from(v);
            let src: &[f64; Q] = m[c as usize * Q..(c as usize + 1) * Q]
                .try_into()
                .expect("Q columns");
            for (o, &s) in acc.iter_mut().zip(src) {
                *o += v * s;
            }
        };
        for t in 0..common {
            for ((cols, vals), acc_r) in rows.iter().zip(acc.iter_mut()) {
                step(acc_r, cols[t], vals[t]);
            }
        }
        for ((cols, vals), acc_r) in rows.iter().zip(acc.iter_mut()) {
            for (&c, &v) in cols[common..].iter().zip(&vals[common..]) {
                step(acc_r, c, v);
            }
        }
        for (out_row, acc_r) in out_rows.chunks_mut(Q).zip(&acc) {
            out_row.copy_from_slice(acc_r);
        }
    }

    /// X_sampleᵀ · u for `u` `n × q`: `n_cols × q`; up to [`PCA_PARTS`]
    /// fixed row ranges in parallel, their partial sums added in order (the
    /// result does not depend on the thread count). Each range holds a
    /// whole `n_cols × q` partial, so there are only as many ranges as the
    /// stored values pay for (one for a few rows of a very wide matrix).
    fn t_times(&self, u: ArrayView2<'_, f64>) -> Array2<f64> {
        let q = u.ncols().max(1);
        let u = u.as_standard_layout();
        let u = u.as_slice().unwrap_or_default();
        let n = self.n_collected();
        let n_parts = PCA_PARTS
            .min(self.data.len() / self.n_cols.max(1))
            .clamp(1, n.max(1));
        let parts: Vec<Vec<f64>> = (0..n_parts)
            .into_par_iter()
            .map(|p| {
                let mut part = vec![0.0f64; self.n_cols * q];
                let rows = p * n / n_parts..(p + 1) * n / n_parts;
                if q == PCA_WIDTH {
                    self.t_times_rows::<PCA_WIDTH>(rows, u, &mut part);
                } else {
                    for i in rows {
                        let (cols, vals) = self.row(i);
                        let src = &u[i * q..(i + 1) * q];
                        for (&c, &v) in cols.iter().zip(vals) {
                            let v = f64::from(v);
                            let dst = &mut part[c as usize * q..(c as usize + 1) * q];
                            for (o, &s) in dst.iter_mut().zip(src) {
                                *o += v * s;
                            }
                        }
                    }
                }
                part
            })
            .collect();
        let mut out = Array2::zeros((self.n_cols, q));
        if let Some(out_slice) = out.as_slice_mut() {
            for part in &parts {
                for (o, &v) in out_slice.iter_mut().zip(part) {
                    *o += v;
                }
            }
        }
        out
    }

    /// The part of [`RowSample::t_times`] of the sample rows `rows`, `Q`
    /// columns, added into `part` (`n_cols × Q`): every row's stored values
    /// in order, as the general loop adds them.
    fn t_times_rows<const Q: usize>(&self, rows: Range<usize>, u: &[f64], part: &mut [f64]) {
        #[cfg(target_arch = "x86_64")]
        if wide_registers() {
            // SAFETY: the CPU has AVX-512F (checked just above).
            unsafe { self.t_times_rows_avx512::<Q>(rows, u, part) };
            return;
        }
        self.t_times_rows_body::<Q>(rows, u, part);
    }

    /// [`RowSample::t_times_rows`] compiled for AVX-512F.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn t_times_rows_avx512<const Q: usize>(
        &self,
        rows: Range<usize>,
        u: &[f64],
        part: &mut [f64],
    ) {
        self.t_times_rows_body::<Q>(rows, u, part);
    }

    #[inline(always)]
    fn t_times_rows_body<const Q: usize>(&self, rows: Range<usize>, u: &[f64], part: &mut [f64]) {
        for i in rows {
            let (cols, vals) = self.row(i);
            let src: &[f64; Q] = u[i * Q..(i + 1) * Q].try_into().expect("Q columns");
            for (&c, &v) in cols.iter().zip(vals) {
                let v = f64::from(v);
                let dst: &mut [f64; Q] = (&mut part[c as usize * Q..(c as usize + 1) * Q])
                    .try_into()
                    .expect("Q columns");
                for (o, &s) in dst.iter_mut().zip(src) {
                    *o += v * s;
                }
            }
        }
    }

    /// The first `n_components` principal components of the collected
    /// rows (centred, as scikit-learn's `PCA` does).
    pub fn pca(&self, n_components: usize, seed: u64) -> Pca {
        pca(self, n_components, seed)
    }

    /// Computes the first two principal components, keeps them, and frees
    /// the collected rows (the solver calls it once the components are
    /// needed: before the first checkpoint, else after the last
    /// iteration).
    pub fn finish(&mut self, seed: u64) {
        self.components = Some(pca(self, 2, seed));
        self.indptr = vec![0];
        self.indices = Vec::new();
        self.data = Vec::new();
    }

    /// The components kept by [`RowSample::finish`].
    pub fn components(&self) -> Option<&Pca> {
        self.components.as_ref()
    }
}

/// Principal components of a row sample.
#[derive(Debug, Clone)]
pub struct Pca {
    /// Coordinates of each sampled row, `n × n_components`.
    pub scores: Array2<f32>,
    /// Fraction of the total variance along each component.
    pub explained_variance_ratio: Vec<f64>,
}

/// Subspace iteration on the centred sample with a few extra vectors, then
/// Rayleigh–Ritz; the centring is applied implicitly so the sample stays
/// sparse. Signs are fixed so that each component's largest-magnitude score
/// is positive.
fn pca(sample: &RowSample, n_components: usize, seed: u64) -> Pca {
    const ITERATIONS: usize = 40;
    /// Relative change of the leading variances between two iterations
    /// below which the subspace iteration stops.
    const PCA_SETTLED: f64 = 1e-10;
    let n = sample.n_collected();
    let n_cols = sample.n_cols;
    let q = (n_components + 3).min(n_cols).min(n.max(1));
    let n_components = n_components.min(q);
    if n < 2 || n_components == 0 {
        return Pca {
            scores: Array2::zeros((n, n_components)),
            explained_variance_ratio: vec![0.0; n_components],
        };
    }
    // Column means and the total variance ‖X_c‖²_F.
    let mut mean = vec![0.0f64; n_cols];
    let mut sum_sq = 0.0f64;
    for i in 0..n {
        let (cols, vals) = sample.row(i);
        for (&c, &v) in cols.iter().zip(vals) {
            mean[c as usize] += f64::from(v);
            sum_sq += f64::from(v) * f64::from(v);
        }
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let total = sum_sq - n as f64 * mean.iter().map(|m| m * m).sum::<f64>();
    let mean = ndarray::Array1::from(mean);

    // X_c m = X m − 1 (μᵀ m);  X_cᵀ u = Xᵀ u − μ (1ᵀ u).
    let centred_times = |m: ArrayView2<'_, f64>| {
        let mut out = sample.times(m);
        let shift = mean.dot(&m);
        out -= &shift.insert_axis(Axis(0));
        out
    };
    let centred_t_times = |u: ArrayView2<'_, f64>| {
        let mut out = sample.t_times(u);
        let col_sums = u.sum_axis(Axis(0));
        for (mut row, &m) in out.outer_iter_mut().zip(&mean) {
            row.scaled_add(-m, &col_sums);
        }
        out
    };

    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut basis =
        Array2::from_shape_fn((n_cols, q), |_| rand::RngExt::random::<f64>(&mut rng) - 0.5);
    orthonormalize(&mut basis);
    // Stops once the leading Ritz values (eigenvalues of (X_c B)ᵀ(X_c B)
    // for the orthonormal basis B) settle: they converge as the square of
    // the subspace.
    let mut settled: Option<Vec<f64>> = None;
    // X_c B of the last basis: computed by the step that finds the values
    // settled (the same product the components are read from), else after
    // the last step.
    let mut settled_product = None;
    for _ in 0..ITERATIONS {
        let u = centred_times(basis.view());
        let (mut variances, _) = symmetric_eigen(u.t().dot(&u));
        variances.sort_by(|a, c| c.total_cmp(a));
        variances.truncate(n_components);
        let converged = settled.as_ref().is_some_and(|before| {
            before
                .iter()
                .zip(&variances)
                .all(|(a, b)| (a - b).abs() <= PCA_SETTLED * b.abs().max(f64::MIN_POSITIVE))
        });
        if converged {
            settled_product = Some(u);
            break;
        }
        settled = Some(variances);
        basis = centred_t_times(u.view());
        orthonormalize(&mut basis);
    }
    let b = settled_product.unwrap_or_else(|| centred_times(basis.view()));
    let small = b.t().dot(&b);
    let (values, vectors) = symmetric_eigen(small);
    let mut order: Vec<usize> = (0..q).collect();
    order.sort_by(|&a, &c| values[c].total_cmp(&values[a]));
    let mut scores = Array2::<f32>::zeros((n, n_components));
    let mut ratio = Vec::with_capacity(n_components);
    for (out_col, &j) in order.iter().take(n_components).enumerate() {
        let column = b.dot(&vectors.column(j));
        let flip = column
            .iter()
            .copied()
            .max_by(|a, c| a.abs().total_cmp(&c.abs()))
            .is_some_and(|v| v < 0.0);
        for (dst, &v) in scores.column_mut(out_col).iter_mut().zip(&column) {
            *dst = if flip { -v } else { v } as f32;
        }
        ratio.push(if total > 0.0 { values[j] / total } else { 0.0 });
    }
    Pca {
        scores,
        explained_variance_ratio: ratio,
    }
}

/// Modified Gram–Schmidt on the columns of `m`.
fn orthonormalize(m: &mut Array2<f64>) {
    for j in 0..m.ncols() {
        for i in 0..j {
            let (done, mut rest) = m.view_mut().split_at(Axis(1), j);
            let d = done.column(i).dot(&rest.column(0));
            rest.column_mut(0).scaled_add(-d, &done.column(i));
        }
        let norm = m.column(j).dot(&m.column(j)).sqrt();
        if norm > 0.0 {
            m.column_mut(j).mapv_inplace(|v| v / norm);
        }
    }
}

/// Eigenvalues and eigenvectors (columns) of a small symmetric matrix, by
/// cyclic Jacobi rotations.
pub(crate) fn symmetric_eigen(mut a: Array2<f64>) -> (Vec<f64>, Array2<f64>) {
    let n = a.nrows();
    let mut v = Array2::<f64>::eye(n);
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[(i, j)] * a[(i, j)])
            .sum();
        let scale: f64 = a.iter().map(|x| x * x).sum();
        if off <= 1e-30 * scale.max(f64::MIN_POSITIVE) {
            break;
        }
        for p in 0..n {
            for r in p + 1..n {
                if a[(p, r)] == 0.0 {
                    continue;
                }
                let theta = (a[(r, r)] - a[(p, p)]) / (2.0 * a[(p, r)]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for i in 0..n {
                    let (aip, air) = (a[(i, p)], a[(i, r)]);
                    a[(i, p)] = c * aip - s * air;
                    a[(i, r)] = s * aip + c * air;
                }
                for i in 0..n {
                    let (api, ari) = (a[(p, i)], a[(r, i)]);
                    a[(p, i)] = c * api - s * ari;
                    a[(r, i)] = s * api + c * ari;
                }
                for i in 0..n {
                    let (vip, vir) = (v[(i, p)], v[(i, r)]);
                    v[(i, p)] = c * vip - s * vir;
                    v[(i, r)] = s * vip + c * vir;
                }
            }
        }
    }
    ((0..n).map(|i| a[(i, i)]).collect(), v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn packed_rows_unpack_to_the_same_rows_whatever_the_pieces() {
        let x = array![
            [0.0, 1.5, 0.0],
            [0.0, 0.0, 0.0],
            [2.0, 0.25, 7.0],
            [0.0, 0.0, 3.0]
        ];
        let mut part = RowSample::new(vec![0, 1, 2, 3], 3);
        part.collect(0..4, &RowBlock::Dense(x.view()));
        for most in [1, 3, 4, 100] {
            let mut whole = RowSample::new(vec![0, 1, 2, 3], 3);
            let mut next = 0;
            let mut pieces = 0;
            loop {
                let packed = part.pack(&mut next, most);
                if packed.is_empty() {
                    break;
                }
                whole.unpack(&packed);
                pieces += 1;
            }
            assert_eq!(whole.indptr, part.indptr, "at most {most}");
            assert_eq!(whole.indices, part.indices);
            assert_eq!(whole.data, part.data);
            assert_eq!(pieces > 1, most < 12, "at most {most}: {pieces} pieces");
        }
    }

    #[test]
    fn sample_indices_are_sorted_distinct_and_reproducible() {
        let a = sample_row_indices(1000, 50, 7);
        assert_eq!(a, sample_row_indices(1000, 50, 7));
        assert_eq!(a.len(), 50);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(sample_row_indices(5, 50, 7), vec![0, 1, 2, 3, 4]);
    }

    /// The product with rows side by side adds exactly what one row alone
    /// adds, in the same order: rows of different lengths (sparse and
    /// dense), a last group of fewer rows, the registers' width and another.
    #[test]
    fn sample_product_equals_the_plain_row_by_row_sums() {
        let (n, n_cols) = (11, 40);
        let x = Array2::from_shape_fn((n, n_cols), |(i, j)| {
            if (i * 7 + j * 3) % (i % 4 + 2) == 0 {
                0.0
            } else {
                ((i * 13 + j * 5) % 17) as f32 * 0.31 + 0.01
            }
        });
        let mut sample = RowSample::new((0..n).collect(), n_cols);
        sample.collect(0..n, &RowBlock::Dense(x.view()));
        for q in [PCA_WIDTH, 3] {
            let m = Array2::from_shape_fn((n_cols, q), |(j, a)| {
                ((j * 3 + a * 11) % 23) as f64 / 7.0 - 1.5
            });
            let got = sample.times(m.view());
            for i in 0..n {
                let (cols, vals) = sample.row(i);
                for a in 0..q {
                    let mut want = 0.0f64;
                    for (&c, &v) in cols.iter().zip(vals) {
                        want += f64::from(v) * m[(c as usize, a)];
                    }
                    assert_eq!(
                        got[(i, a)].to_bits(),
                        want.to_bits(),
                        "row {i}, column {a}, q {q}"
                    );
                }
            }
        }
    }

    #[test]
    fn jacobi_finds_known_eigenvalues() {
        let (mut values, _) = symmetric_eigen(array![[2.0, 1.0], [1.0, 2.0]]);
        values.sort_by(f64::total_cmp);
        assert!((values[0] - 1.0).abs() < 1e-12 && (values[1] - 3.0).abs() < 1e-12);
    }

    #[test]
    fn pca_matches_a_dense_eigendecomposition() {
        // Points spread along (1, 1, 0) with a little spread along (0, 0, 1).
        let x = array![
            [0.0, 0.0, 0.1],
            [1.0, 1.1, 0.0],
            [2.0, 2.0, 0.2],
            [3.0, 2.9, 0.0],
            [4.0, 4.0, 0.3],
        ];
        let mut sample = RowSample::new((0..5).collect(), 3);
        let x32 = x.mapv(|v| v as f32);
        sample.collect(0..5, &RowBlock::Dense(x32.view()));
        let pca = sample.pca(2, 1);
        // Reference: eigenvectors of the centred covariance.
        let mean = x.mean_axis(Axis(0)).unwrap();
        let xc = &x - &mean.insert_axis(Axis(0));
        let (values, vectors) = symmetric_eigen(xc.t().dot(&xc));
        let top = (0..3)
            .max_by(|&a, &b| values[a].total_cmp(&values[b]))
            .unwrap();
        let reference = xc.dot(&vectors.column(top));
        let sign = if reference
            .iter()
            .copied()
            .max_by(|a, b| a.abs().total_cmp(&b.abs()))
            .unwrap()
            < 0.0
        {
            -1.0
        } else {
            1.0
        };
        for (a, b) in pca.scores.column(0).iter().zip(reference.iter()) {
            assert!((f64::from(*a) - sign * b).abs() < 1e-4, "{a} vs {b}");
        }
        let total: f64 = values.iter().sum();
        assert!((pca.explained_variance_ratio[0] - values[top] / total).abs() < 1e-6);
    }
}
