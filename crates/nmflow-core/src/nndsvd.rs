//! NNDSVD starts (Boutsidis & Gallopoulos 2008; scikit-learn's
//! `nndsvd`, `nndsvda`, `nndsvdar`) from a streamed randomized SVD (Halko,
//! Martinsson & Tropp 2011), reading X in row blocks:
//!
//! 1. a pass for the column statistics (the divisors of X_s) and the checks;
//! 2. Y = X_s Ω (Ω `n_cols × l` uniform on [−½, ½) from the seed, l = k +
//!    oversampling), one pass; Y's rows go to the caller's `basis` store
//!    (memory-mapped for large inputs) and YᵀY is accumulated;
//! 3. `power_iterations` times: Z = X_sᵀ Q (one pass), orthonormalised in
//!    memory (`n_cols × l`), then Y = X_s Z (one pass);
//! 4. Bᵀ = X_sᵀ Q (one pass), the SVD of the small B through its Gram
//!    matrix: U = Q U_B, V = Bᵀ U_B Σ⁻¹;
//! 5. NNDSVD: each singular pair split into its positive and negative
//!    parts, the larger kept; W₀ written into the caller's store from the
//!    basis (no read of X), H₀ returned.
//!
//! Q = Y T is never formed: T (`l × l`) orthonormalises Y by the
//! eigen-decomposition of its Gram matrix (SVQB, Stathopoulos & Wu 2002),
//! twice, dropping directions of negligible weight (a matrix of rank < l).
//! Everything small is in f64; Y and W₀ in f32. Results do not depend on
//! the thread count (the same kernels and fixed partitions as the fit).

use std::ops::Range;

use ndarray::{Array1, Array2, ArrayView2, Axis, s};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::collective::{Alone, Shard};
use crate::error::FitError;
use crate::factor::FactorStore;
use crate::kernels;
use crate::normalize::{Normalize, Normalizer};
use crate::params::Scale;
use crate::sample::symmetric_eigen;
use crate::solver::{Event, PassKind, begin_pass, block_ranges, read_block};
use crate::source::{RowBlock, RowSource};
use crate::stats::ColumnStats;

/// What replaces the zeros of an NNDSVD start (scikit-learn's variants).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NndsvdFill {
    /// `nndsvd`: zeros stay (multiplicative updates cannot move them).
    Zeros,
    /// `nndsvda`: the mean of X_s.
    Mean,
    /// `nndsvdar`: small random values, |mean · u| / 100 with u uniform on
    /// [−√3, √3) (unit variance) from the seed.
    Random,
}

impl NndsvdFill {
    /// scikit-learn's name of the variant.
    pub fn as_str(self) -> &'static str {
        match self {
            NndsvdFill::Zeros => "nndsvd",
            NndsvdFill::Mean => "nndsvda",
            NndsvdFill::Random => "nndsvdar",
        }
    }
}

/// Columns of the range basis beyond k (Halko et al.'s oversampling).
pub const OVERSAMPLING: usize = 10;
/// Power iterations of the range finder (each costs two passes over X).
/// One gave the same start as two on 50,000 simulated cells and a far
/// better one than none (docs/benchmarks.md); scikit-learn's dense
/// randomized SVD uses 4 to 7.
pub const POWER_ITERATIONS: usize = 1;
/// scikit-learn's `eps` of `_initialize_nmf`: entries below it become 0.
const NNDSVD_EPS: f64 = 1e-6;
/// ChaCha8 stream of Ω (H and W of random starts use streams 0 and 1).
const OMEGA_STREAM: u64 = 2;
/// ChaCha8 stream of `nndsvdar`'s fill values.
const FILL_STREAM: u64 = 3;

/// An NNDSVD start of a `k`-component fit.
#[derive(Debug, Clone)]
pub struct NndsvdRequest {
    /// Components.
    pub k: usize,
    /// Seed of Ω (and of `nndsvdar`'s fill).
    pub seed: u64,
    /// Per-row normalisation, as the fit applies it.
    pub normalize: Normalize,
    /// Column scaling, as the fit applies it.
    pub scale: Scale,
    /// Rows per block.
    pub block_rows: usize,
    /// The variant.
    pub fill: NndsvdFill,
    /// Power iterations of the range finder.
    pub power_iterations: usize,
}

impl NndsvdRequest {
    /// Columns of the basis store [`nndsvd`] needs: k + oversampling, at
    /// most the smaller dimension.
    pub fn basis_cols(&self, n_rows: usize, n_cols: usize) -> usize {
        (self.k + OVERSAMPLING).min(n_rows).min(n_cols)
    }
}

/// The start: H₀ (W₀ is in the caller's store) and the singular values.
#[derive(Debug, Clone)]
pub struct NndsvdStart {
    /// H₀, `k × n_cols`, in the units of X_s.
    pub h0: Array2<f32>,
    /// The k largest singular values of X_s found.
    pub singular_values: Vec<f64>,
    /// Passes over X it took.
    pub passes: usize,
}

/// Computes an NNDSVD start of `source`: W₀ into `w0` (`n_rows × k`), H₀
/// returned; `basis` (`n_rows × l`, l = [`NndsvdRequest::basis_cols`])
/// holds the range basis meanwhile.
///
/// # Panics
/// If the stores do not have those shapes.
pub fn nndsvd(
    source: &mut dyn RowSource,
    request: &NndsvdRequest,
    basis: &mut dyn FactorStore,
    w0: &mut dyn FactorStore,
    on_event: &mut dyn FnMut(Event),
) -> Result<NndsvdStart, FitError> {
    let shard = Shard {
        collective: &Alone,
        first_row: 0,
        n_rows: source.n_rows(),
    };
    nndsvd_sharded(shard, source, request, basis, w0, on_event)
}

/// [`nndsvd`] over processes that share the rows ([`Shard`]): `source`,
/// `basis` and `w0` hold this process's rows; every pass's small products
/// (the statistics, the Gram matrices, X_sᵀQ, the norms of the singular
/// vectors' parts) are combined, so every process computes the same H₀
/// and its rows of the same W₀ (`nndsvdar`'s fill values drawn as one
/// process draws them).
///
/// # Panics
/// As [`nndsvd`].
pub fn nndsvd_sharded(
    shard: Shard<'_>,
    source: &mut dyn RowSource,
    request: &NndsvdRequest,
    basis: &mut dyn FactorStore,
    w0: &mut dyn FactorStore,
    on_event: &mut dyn FnMut(Event),
) -> Result<NndsvdStart, FitError> {
    let (n_rows, n_cols) = (source.n_rows(), source.n_cols());
    let k = request.k;
    let l = request.basis_cols(shard.n_rows, n_cols);
    assert_eq!(basis.shape(), (n_rows, l), "the basis store's shape");
    assert_eq!(w0.shape(), (n_rows, k), "W₀'s shape");
    let blocks = block_ranges(n_rows, request.block_rows.max(1));
    let mut streamer = Streamer {
        shard,
        source,
        normalizer: Normalizer::new(request.normalize),
        blocks: &blocks,
        on_event,
        passes: 0,
    };
    let (inv_scale, mean) = streamer.statistics(request.scale)?;
    // Y = X_s Ω, orthonormalised.
    let mut rng = ChaCha8Rng::seed_from_u64(request.seed);
    rng.set_stream(OMEGA_STREAM);
    let omega = Array2::from_shape_simple_fn((n_cols, l), || rng.random::<f64>() - 0.5);
    let mut t = streamer.range(omega, &inv_scale, basis)?;
    for _ in 0..request.power_iterations {
        let z = streamer.project(&t, &inv_scale, basis)?;
        let z = orthonormal_columns(z);
        t = streamer.range(z, &inv_scale, basis)?;
    }
    // Bᵀ = X_sᵀ Q, and the SVD of B from its Gram matrix.
    let bt = streamer.project(&t, &inv_scale, basis)?;
    let (values, vectors) = symmetric_eigen(bt.t().dot(&bt));
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    let mut sigma = vec![0.0f64; k];
    let mut u_b = Array2::<f64>::zeros((t.ncols(), k));
    let mut v = Array2::<f64>::zeros((n_cols, k));
    for (j, &idx) in order.iter().take(k).enumerate() {
        let s = values[idx].max(0.0).sqrt();
        if s <= 0.0 {
            continue;
        }
        sigma[j] = s;
        u_b.column_mut(j).assign(&vectors.column(idx));
        v.column_mut(j).assign(&(bt.dot(&vectors.column(idx)) / s));
    }
    // U = Y (T U_B): the rows of the left singular vectors, from the basis.
    let to_u = t.dot(&u_b);
    let parts = split_norms(shard, basis, &to_u, &blocks);
    let plan = nndsvd_plan(&sigma, &parts, v.view());
    write_w0(shard, basis, w0, &to_u, &plan, &blocks, request, mean);
    let mut h0 = plan.h0;
    fill_zeros(h0.view_mut(), request, mean, FillSide::H);
    Ok(NndsvdStart {
        h0: h0.mapv(|v| v as f32),
        singular_values: sigma,
        passes: streamer.passes,
    })
}

/// The passes over X (this process's rows of it).
struct Streamer<'a> {
    shard: Shard<'a>,
    source: &'a mut dyn RowSource,
    normalizer: Normalizer,
    blocks: &'a [Range<usize>],
    on_event: &'a mut dyn FnMut(Event),
    passes: usize,
}

impl Streamer<'_> {
    fn begin(&mut self) -> Result<(), FitError> {
        self.passes += 1;
        begin_pass(self.source, &mut self.normalizer, self.blocks)
    }

    fn block_done(&mut self, rows: &Range<usize>) {
        (self.on_event)(Event::Block {
            kind: PassKind::Prepare,
            rows_done: rows.end,
            n_rows: self.source.n_rows(),
        });
    }

    /// The checks and column statistics of X: 1 / the divisors, and the
    /// mean of X_s.
    fn statistics(&mut self, scale: Scale) -> Result<(Array1<f32>, f64), FitError> {
        let (n_rows, n_cols) = (self.shard.n_rows, self.source.n_cols());
        let mut stats = ColumnStats::new(n_cols);
        let read = self.begin().and_then(|()| {
            for rows in self.blocks {
                let x = read_block(self.source, &mut self.normalizer, rows.clone(), n_cols)?;
                let first = self.shard.first_row + rows.start;
                match &x {
                    RowBlock::Dense(x) => stats.add_block(*x, first)?,
                    RowBlock::Csr(x) => stats.add_csr_block(x, first)?,
                }
                self.block_done(rows);
            }
            Ok(())
        });
        self.shard.agree(read)?;
        let stats = stats.combined(self.shard.collective);
        let col_scale = stats.col_scale(scale)?;
        if stats.scaled_norm_sq(&col_scale) <= 0.0 {
            return Err(FitError::ZeroMatrix);
        }
        let mean = stats.scaled_sum(&col_scale) / (n_rows as f64 * n_cols as f64);
        Ok((col_scale.iter().map(|&d| 1.0 / d).collect(), mean))
    }

    /// Y = X_s M into `basis` (M `n_cols × l'`, padded with zero columns to
    /// the store's width); returns T with Y T orthonormal.
    fn range(
        &mut self,
        m: Array2<f64>,
        inv_scale: &Array1<f32>,
        basis: &mut dyn FactorStore,
    ) -> Result<Array2<f64>, FitError> {
        let n_cols = self.source.n_cols();
        let l = basis.shape().1;
        let mut scaled = Array2::<f32>::zeros((n_cols, l));
        for (j, (mut row, &inv)) in scaled.axis_iter_mut(Axis(0)).zip(inv_scale).enumerate() {
            for (dst, &src) in row.iter_mut().zip(m.row(j)) {
                *dst = src as f32 * inv;
            }
        }
        let mut gram = Array2::<f64>::zeros((l, l));
        let read = self.begin().and_then(|()| {
            for rows in self.blocks {
                let x = read_block(self.source, &mut self.normalizer, rows.clone(), n_cols)?;
                let mut y = basis.rows_mut(rows.clone());
                match &x {
                    RowBlock::Dense(x) => kernels::xht_dense(*x, scaled.view(), y.view_mut()),
                    RowBlock::Csr(x) => kernels::xht_csr(x, scaled.view(), y.view_mut()),
                }
                kernels::accumulate_wtw(y.view(), gram.view_mut());
                basis.release(rows.clone());
                self.block_done(rows);
            }
            Ok(())
        });
        self.shard.agree(read)?;
        sum(self.shard, &mut gram);
        let t = svqb(&gram);
        // Once more, on the Gram matrix of Y T itself (read from the store).
        let mut gram = basis_gram(basis, &t, self.blocks);
        sum(self.shard, &mut gram);
        Ok(t.dot(&svqb(&gram)))
    }

    /// X_sᵀ (Y T) (`n_cols × l'`): one pass, accumulated as the fit
    /// accumulates XᵀW.
    fn project(
        &mut self,
        t: &Array2<f64>,
        inv_scale: &Array1<f32>,
        basis: &mut dyn FactorStore,
    ) -> Result<Array2<f64>, FitError> {
        let n_cols = self.source.n_cols();
        let width = t.ncols();
        let mut acc = Array2::<f64>::zeros((n_cols, width));
        let mut scratch = Array2::<f32>::zeros((n_cols, width));
        let read = self.begin().and_then(|()| {
            for rows in self.blocks {
                let x = read_block(self.source, &mut self.normalizer, rows.clone(), n_cols)?;
                let q = basis.rows_mut(rows.clone()).mapv(f64::from).dot(t);
                let q = q.mapv(|v| v as f32);
                match &x {
                    RowBlock::Dense(x) => kernels::accumulate_xtw_dense(
                        q.view(),
                        *x,
                        scratch.view_mut(),
                        acc.view_mut(),
                    ),
                    RowBlock::Csr(x) => {
                        scratch.fill(0.0);
                        kernels::accumulate_xtw_csr(x, q.view(), scratch.view_mut());
                        acc.zip_mut_with(&scratch, |a, &s| *a += f64::from(s));
                    }
                }
                basis.release(rows.clone());
                self.block_done(rows);
            }
            Ok(())
        });
        self.shard.agree(read)?;
        sum(self.shard, &mut acc);
        for (mut row, &inv) in acc.rows_mut().into_iter().zip(inv_scale) {
            row.mapv_inplace(|v| v * f64::from(inv));
        }
        Ok(acc)
    }
}

/// `m` (made here, in standard layout) summed over the processes (as is,
/// alone).
fn sum(shard: Shard<'_>, m: &mut Array2<f64>) {
    let values = m.as_slice_mut().expect("a standard-layout matrix");
    shard.collective.sum(values);
}

/// T with Tᵀ G T = I for the Gram matrix G, dropping directions whose
/// eigenvalue is below 1e-10 of the largest (SVQB).
fn svqb(gram: &Array2<f64>) -> Array2<f64> {
    let (values, vectors) = symmetric_eigen(gram.clone());
    let largest = values.iter().copied().fold(0.0f64, f64::max);
    let kept: Vec<usize> = (0..values.len())
        .filter(|&i| values[i] > largest * 1e-10 && values[i] > 0.0)
        .collect();
    let mut t = Array2::<f64>::zeros((gram.nrows(), kept.len()));
    for (c, &i) in kept.iter().enumerate() {
        t.column_mut(c)
            .assign(&(&vectors.column(i) / values[i].sqrt()));
    }
    t
}

/// The Gram matrix of Y T, Y read from the basis store.
fn basis_gram(
    basis: &mut dyn FactorStore,
    t: &Array2<f64>,
    blocks: &[Range<usize>],
) -> Array2<f64> {
    let mut gram = Array2::<f64>::zeros((t.ncols(), t.ncols()));
    for rows in blocks {
        let q = basis.rows_mut(rows.clone()).mapv(f64::from).dot(t);
        gram += &q.t().dot(&q);
        basis.release(rows.clone());
    }
    gram
}

/// Orthonormal columns spanning those of `z` (SVQB twice), padded with zero
/// columns to `z`'s width.
fn orthonormal_columns(z: Array2<f64>) -> Array2<f64> {
    let mut q = z.dot(&svqb(&z.t().dot(&z)));
    q = q.dot(&svqb(&q.t().dot(&q)));
    let mut out = Array2::<f64>::zeros(z.dim());
    out.slice_mut(s![.., ..q.ncols()]).assign(&q);
    out
}

/// ‖max(u_j, 0)‖² and ‖min(u_j, 0)‖² of every left singular vector
/// u_j = (Y T U_B)_j, from the basis.
fn split_norms(
    shard: Shard<'_>,
    basis: &mut dyn FactorStore,
    to_u: &Array2<f64>,
    blocks: &[Range<usize>],
) -> Vec<(f64, f64)> {
    let mut parts = vec![(0.0f64, 0.0f64); to_u.ncols()];
    for rows in blocks {
        let u = basis.rows_mut(rows.clone()).mapv(f64::from).dot(to_u);
        for row in u.rows() {
            for (part, &v) in parts.iter_mut().zip(row) {
                if v > 0.0 {
                    part.0 += v * v;
                } else {
                    part.1 += v * v;
                }
            }
        }
        basis.release(rows.clone());
    }
    let mut flat: Vec<f64> = parts.iter().flat_map(|&(p, n)| [p, n]).collect();
    shard.collective.sum(&mut flat);
    flat.chunks_exact(2).map(|c| (c[0], c[1])).collect()
}

/// Which part of each singular pair is kept, with its weight, and H₀.
struct NndsvdPlan {
    /// Per component: (sign of the part of u kept: +1, −1, or 0 for |u|
    /// (the first component), scale applied to u's entries).
    w_parts: Vec<(f64, f64)>,
    h0: Array2<f64>,
}

/// Boutsidis & Gallopoulos's choice per component, as scikit-learn makes
/// it: the first pair as |u|, |v|; then the positive or the negative parts,
/// whichever has the larger product of norms, scaled by sqrt(σ_j · that
/// product).
fn nndsvd_plan(sigma: &[f64], parts: &[(f64, f64)], v: ArrayView2<'_, f64>) -> NndsvdPlan {
    let k = sigma.len();
    let mut h0 = Array2::<f64>::zeros((k, v.nrows()));
    let mut w_parts = vec![(0.0, 0.0); k];
    for j in 0..k {
        if sigma[j] <= 0.0 {
            continue;
        }
        let vj = v.column(j);
        if j == 0 {
            let u_norm = (parts[0].0 + parts[0].1).sqrt();
            let scale = sigma[0].sqrt();
            w_parts[0] = (0.0, if u_norm > 0.0 { scale } else { 0.0 });
            h0.row_mut(0).assign(&vj.mapv(|y| scale * y.abs()));
            continue;
        }
        let (x_p, x_n) = (parts[j].0.sqrt(), parts[j].1.sqrt());
        let y_p = vj.iter().map(|&y| y.max(0.0).powi(2)).sum::<f64>().sqrt();
        let y_n = vj.iter().map(|&y| y.min(0.0).powi(2)).sum::<f64>().sqrt();
        let (m_p, m_n) = (x_p * y_p, x_n * y_n);
        let (sign, x_norm, y_norm, m) = if m_p > m_n {
            (1.0, x_p, y_p, m_p)
        } else {
            (-1.0, x_n, y_n, m_n)
        };
        if m <= 0.0 {
            continue;
        }
        let lambda = (sigma[j] * m).sqrt();
        w_parts[j] = (sign, lambda / x_norm);
        h0.row_mut(j)
            .assign(&vj.mapv(|y| (sign * y).max(0.0) * lambda / y_norm));
    }
    h0.mapv_inplace(|h| if h < NNDSVD_EPS { 0.0 } else { h });
    NndsvdPlan { w_parts, h0 }
}

/// Writes W₀ block by block from the basis: W₀[:, j] = scale_j · (the kept
/// part of u_j), entries below scikit-learn's eps set to 0, then filled.
/// `nndsvdar` draws a value per zero in row order: a process first skips
/// the draws of the zeros in the rows before its own.
#[allow(clippy::too_many_arguments)]
fn write_w0(
    shard: Shard<'_>,
    basis: &mut dyn FactorStore,
    w0: &mut dyn FactorStore,
    to_u: &Array2<f64>,
    plan: &NndsvdPlan,
    blocks: &[Range<usize>],
    request: &NndsvdRequest,
    mean: f64,
) {
    let mut rng = fill_rng(request.seed, FillSide::W);
    if request.fill == NndsvdFill::Random && shard.shared() {
        let zeros: usize = blocks
            .iter()
            .map(|rows| {
                let w = w0_rows(basis, to_u, plan, rows);
                w.iter().filter(|&&v| v == 0.0).count()
            })
            .sum();
        let all = shard.collective.all_gather(&[zeros as f64]);
        let before: f64 = all[..shard.collective.rank()].iter().sum();
        // Each draw (`random::<f64>`) takes two 32-bit words of the stream.
        rng.set_word_pos(rng.get_word_pos() + 2 * before as u128);
    }
    for rows in blocks {
        let mut w = w0_rows(basis, to_u, plan, rows);
        fill_with(w.view_mut(), request.fill, mean, &mut rng);
        w0.rows_mut(rows.clone()).assign(&w.mapv(|v| v as f32));
        w0.release(rows.clone());
    }
}

/// W₀'s `rows` before the fill, from the basis.
fn w0_rows(
    basis: &mut dyn FactorStore,
    to_u: &Array2<f64>,
    plan: &NndsvdPlan,
    rows: &Range<usize>,
) -> Array2<f64> {
    let mut w = basis.rows_mut(rows.clone()).mapv(f64::from).dot(to_u);
    basis.release(rows.clone());
    for mut row in w.axis_iter_mut(Axis(0)) {
        for (value, &(sign, scale)) in row.iter_mut().zip(&plan.w_parts) {
            let part = if sign == 0.0 {
                value.abs()
            } else {
                (sign * *value).max(0.0)
            };
            let entry = part * scale;
            *value = if entry < NNDSVD_EPS { 0.0 } else { entry };
        }
    }
    w
}

/// Which factor a fill is for (its own random stream).
#[derive(Clone, Copy)]
enum FillSide {
    W,
    H,
}

fn fill_rng(seed: u64, side: FillSide) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(FILL_STREAM + matches!(side, FillSide::H) as u64);
    rng
}

fn fill_zeros(
    h: ndarray::ArrayViewMut2<'_, f64>,
    request: &NndsvdRequest,
    mean: f64,
    side: FillSide,
) {
    let mut rng = fill_rng(request.seed, side);
    fill_with(h, request.fill, mean, &mut rng);
}

/// The zeros of a factor replaced per the variant.
fn fill_with(
    mut factor: ndarray::ArrayViewMut2<'_, f64>,
    fill: NndsvdFill,
    mean: f64,
    rng: &mut ChaCha8Rng,
) {
    match fill {
        NndsvdFill::Zeros => {}
        NndsvdFill::Mean => factor.mapv_inplace(|v| if v == 0.0 { mean } else { v }),
        NndsvdFill::Random => {
            for v in factor.iter_mut().filter(|v| **v == 0.0) {
                let u: f64 = rng.random::<f64>() * 2.0 - 1.0;
                *v = (mean * u * 3f64.sqrt() / 100.0).abs();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svqb_orthonormalises_and_drops_a_dependent_direction() {
        let y = ndarray::array![
            [1.0, 2.0, 3.0],
            [0.0, 1.0, 1.0],
            [2.0, 0.0, 2.0],
            [1.0, 1.0, 2.0]
        ];
        let t = svqb(&y.t().dot(&y));
        assert_eq!(t.ncols(), 2, "the third column is the sum of the others");
        let q = y.dot(&t);
        let gram = q.t().dot(&q);
        for ((i, j), &g) in gram.indexed_iter() {
            let want = if i == j { 1.0 } else { 0.0 };
            assert!((g - want).abs() < 1e-9, "{gram:?}");
        }
    }

    #[test]
    fn the_plan_keeps_the_heavier_part_of_each_pair() {
        // u_1 mostly negative, v_1 mostly negative: the negative parts.
        let v = ndarray::array![[0.6, -0.8], [0.8, -0.1]];
        let parts = [(1.0, 0.0), (0.1, 0.9)];
        let plan = nndsvd_plan(&[4.0, 1.0], &parts, v.view());
        assert_eq!(plan.w_parts[0], (0.0, 2.0));
        assert_eq!(plan.w_parts[1].0, -1.0);
        assert!(plan.h0[(1, 0)] > 0.0 && plan.h0[(1, 1)] > 0.0);
        assert!(plan.h0.iter().all(|&h| h >= 0.0));
    }
}
