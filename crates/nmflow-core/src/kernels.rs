//! The hot loops of one iteration, as pure functions on views with
//! caller-provided outputs. None of them spawns work, and none allocates
//! more than one k-vector per call (the row kernels' inverse Hessians, the
//! column gather's sum for a k without its own copy); the solver decides
//! how they are split across threads.
//!
//! All products run in f32; sums that feed the relative error or that are
//! accumulated across blocks are kept in f64.

use std::ops::Range;

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2};

use crate::DENOMINATOR_EPSILON;
use crate::gemm::product;
use crate::source::{CscBlock, CsrBlock};

/// `xht = x · hst`, the rows of X Hᵀ for a block.
///
/// # Shapes
/// `x` is `b × n`, `hst` is `n × k` (Hᵀ with the column scaling folded in),
/// `xht` is `b × k`.
///
/// # Panics
/// If the shapes do not agree.
pub fn xht_dense(x: ArrayView2<'_, f32>, hst: ArrayView2<'_, f32>, xht: ArrayViewMut2<'_, f32>) {
    product(x, hst, xht);
}

/// Multiplicative update of the rows of W in a block:
/// `W_b ← W_b ∘ xht ⊘ (W_b · hht)`, a zero denominator replaced by
/// [`DENOMINATOR_EPSILON`]. Adds the new `W_bᵀ W_b` into `wtw` and returns
/// `Σ ⟨W_b (new), xht⟩`, the block's share of tr(Wᵀ X Hᵀ). The two small
/// products run as matrix products in f32 into the scratch arrays.
///
/// # Shapes
/// `w`, `xht` and `den` are `b × k`, `hht`, `wtw` and `gram` are `k × k`.
///
/// # Panics
/// If the shapes do not agree.
pub fn update_w_rows(
    mut w: ArrayViewMut2<'_, f32>,
    xht: ArrayView2<'_, f32>,
    hht: ArrayView2<'_, f32>,
    mut wtw: ArrayViewMut2<'_, f64>,
    mut den: ArrayViewMut2<'_, f32>,
    mut gram: ArrayViewMut2<'_, f32>,
) -> f64 {
    assert_eq!(w.dim(), xht.dim());
    product(w.view(), hht, den.view_mut());
    let mut cross = 0.0f64;
    ndarray::Zip::from(&mut w)
        .and(&xht)
        .and(&den)
        .for_each(|w, &num, &d| {
            let d = if d == 0.0 { DENOMINATOR_EPSILON } else { d };
            *w *= num / d;
            cross += f64::from(*w) * f64::from(num);
        });
    product(w.t(), w.view(), gram.view_mut());
    wtw.zip_mut_with(&gram, |acc, &g| *acc += f64::from(g));
    cross
}

/// Adds `W_bᵀ W_b` into `wtw`, for rows that are not updated (the pre-pass).
///
/// # Shapes
/// `w` is `b × k`, `wtw` is `k × k`.
pub(crate) fn accumulate_wtw(w: ArrayView2<'_, f32>, mut wtw: ArrayViewMut2<'_, f64>) {
    for w_row in w.rows() {
        for (a, &w_a) in w_row.iter().enumerate() {
            let w_a = f64::from(w_a);
            for (acc, &w_b) in wtw.row_mut(a).iter_mut().zip(w_row.iter()) {
                *acc += w_a * f64::from(w_b);
            }
        }
    }
}

/// `acc += X_bᵀ W_b` for a range of columns (rows of the accumulator),
/// computed in f32 into `scratch` and added to the f64 accumulator.
///
/// # Shapes
/// `w` is `b × k`, `x` is `b × c`, `scratch` and `acc` are `c × k`.
///
/// # Panics
/// If the shapes do not agree.
pub fn accumulate_xtw_dense(
    w: ArrayView2<'_, f32>,
    x: ArrayView2<'_, f32>,
    mut scratch: ArrayViewMut2<'_, f32>,
    mut acc: ArrayViewMut2<'_, f64>,
) {
    product(x.t(), w, scratch.view_mut());
    acc.zip_mut_with(&scratch, |a, &s| *a += f64::from(s));
}

/// `xht = X_b · hst` for CSR rows: every stored entry adds a contiguous
/// k-vector of `hst`.
///
/// Runs a copy compiled for AVX2 and FMA when the CPU has them (results may
/// then differ in the last bits from other CPUs, never between runs or
/// thread counts on one machine).
///
/// # Shapes
/// `x` has `b` rows, `hst` is `n_cols × k` in standard layout, `xht` is
/// `b × k` in standard layout.
///
/// # Panics
/// If the shapes do not agree or a column index is out of range (blocks are
/// validated before they reach the kernels).
pub fn xht_csr(x: &CsrBlock<'_>, hst: ArrayView2<'_, f32>, mut xht: ArrayViewMut2<'_, f32>) {
    let k = hst.ncols();
    let hst = hst.as_slice().expect("hst is in standard layout");
    let out = xht.as_slice_mut().expect("xht is in standard layout");
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports the features the copy is compiled for.
        unsafe { xht_csr_avx2(x, hst, out, k) };
        return;
    }
    by_k!(k, xht_csr_body, false, x, hst, out);
}

/// `part += X_bᵀ W_b` for CSR rows: every stored entry adds a contiguous
/// k-vector of W to row `col` of `part`. Dispatches like [`xht_csr`].
///
/// # Shapes
/// `x` has `b` rows, `w` is `b × k`, `part` is `n_cols × k`; both in
/// standard layout.
///
/// # Panics
/// If the shapes do not agree or a column index is out of range.
pub fn accumulate_xtw_csr(
    x: &CsrBlock<'_>,
    w: ArrayView2<'_, f32>,
    mut part: ArrayViewMut2<'_, f32>,
) {
    let k = w.ncols();
    let w = w.as_slice().expect("W is in standard layout");
    let part = part
        .as_slice_mut()
        .expect("the partial is in standard layout");
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports the features the copy is compiled for.
        unsafe { xtw_csr_avx2(x, w, part, k) };
        return;
    }
    by_k!(k, xtw_csr_body, false, x, w, part);
}

/// `acc += X_bᵀ W_b` for the columns `cols` of a block, from its column
/// copy: each column's k-vector is summed over the rows of each part (the
/// row ranges ending at `part_ends`, the ranges [`accumulate_xtw_csr`]
/// runs on), in increasing row order from zero, and each part's f32 sum is
/// added to the f64 accumulator in part order. That is exactly what the
/// scatter into one partial per part followed by the in-order addition of
/// the partials computes, entry for entry (with the same FMA choice), so
/// the two give the same bits; the gather reads W's rows instead of
/// writing every column's sums, and needs no partials.
///
/// # Shapes
/// `w` is `b × k` in standard layout (the block's rows), `acc` is
/// `cols.len() × k` in standard layout, `part_ends` is increasing and ends
/// at `b` at the latest.
///
/// # Panics
/// If the shapes do not agree or a row is out of range (column copies are
/// validated before they reach the kernels).
pub fn accumulate_xtw_csc(
    x: &CscBlock<'_>,
    w: ArrayView2<'_, f32>,
    part_ends: &[usize],
    cols: Range<usize>,
    mut acc: ArrayViewMut2<'_, f64>,
) {
    let k = w.ncols();
    assert_eq!(acc.dim(), (cols.len(), k), "accumulator shape");
    let w = w.as_slice().expect("W is in standard layout");
    let acc = acc
        .as_slice_mut()
        .expect("the accumulator is in standard layout");
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports the features the copy is compiled for.
        unsafe { xtw_csc_avx2(x, w, part_ends, cols, acc, k) };
        return;
    }
    by_k!(k, xtw_csc_body, false, x, w, part_ends, cols, acc);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn xtw_csc_avx2(
    x: &CscBlock<'_>,
    w: &[f32],
    part_ends: &[usize],
    cols: Range<usize>,
    acc: &mut [f64],
    k: usize,
) {
    by_k!(k, xtw_csc_body, true, x, w, part_ends, cols, acc);
}

#[inline(always)]
fn xtw_csc_body<const FMA: bool, const K: usize>(
    x: &CscBlock<'_>,
    w: &[f32],
    part_ends: &[usize],
    cols: Range<usize>,
    acc: &mut [f64],
    k: usize,
) {
    let k = if K == 0 { k } else { K };
    let mut sum_dyn = vec![0.0f32; if K == 0 { k } else { 0 }];
    let all_rows = &x.rows[..x.col_ptr[cols.end]];
    for (out, j) in acc.chunks_exact_mut(k).zip(cols) {
        let range = x.col_ptr[j]..x.col_ptr[j + 1];
        let (rows, vals) = (&x.rows[range.clone()], &x.data[range.clone()]);
        let mut t = 0;
        for &end in part_ends {
            if t == rows.len() {
                break;
            }
            let start = t;
            let mut sum = [0.0f32; K];
            let sum: &mut [f32] = if K > 0 { &mut sum } else { &mut sum_dyn };
            sum.fill(0.0);
            while t < rows.len() && (rows[t] as usize) < end {
                if FMA {
                    prefetch_row(w, all_rows, range.start + t + PREFETCH_AHEAD, k);
                }
                let r = rows[t] as usize * k;
                axpy::<FMA>(sum, vals[t], &w[r..r + k]);
                t += 1;
            }
            if t > start {
                for (o, &s) in out.iter_mut().zip(sum.iter()) {
                    *o += f64::from(s);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn has_avx2_fma() -> bool {
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn xht_csr_avx2(x: &CsrBlock<'_>, hst: &[f32], out: &mut [f32], k: usize) {
    by_k!(k, xht_csr_body, true, x, hst, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn xtw_csr_avx2(x: &CsrBlock<'_>, w: &[f32], part: &mut [f32], k: usize) {
    by_k!(k, xtw_csr_body, true, x, w, part);
}

/// `acc += v · src`, fused when `FMA` (only in copies compiled with FMA).
#[inline(always)]
fn axpy<const FMA: bool>(acc: &mut [f32], v: f32, src: &[f32]) {
    for (a, &s) in acc.iter_mut().zip(src) {
        *a = if FMA { v.mul_add(s, *a) } else { *a + v * s };
    }
}

/// Calls `$body::<$fma, K>` with K = `$k` for common numbers of components
/// (so that the k-vector loops are unrolled for them), else K = 0 (k read at
/// run time).
macro_rules! by_k {
    ($k:expr, $body:ident, $fma:expr, $($arg:expr),*) => {
        match $k {
            2 => $body::<$fma, 2>($($arg,)* 2),
            3 => $body::<$fma, 3>($($arg,)* 3),
            4 => $body::<$fma, 4>($($arg,)* 4),
            5 => $body::<$fma, 5>($($arg,)* 5),
            6 => $body::<$fma, 6>($($arg,)* 6),
            8 => $body::<$fma, 8>($($arg,)* 8),
            10 => $body::<$fma, 10>($($arg,)* 10),
            12 => $body::<$fma, 12>($($arg,)* 12),
            15 => $body::<$fma, 15>($($arg,)* 15),
            16 => $body::<$fma, 16>($($arg,)* 16),
            20 => $body::<$fma, 20>($($arg,)* 20),
            24 => $body::<$fma, 24>($($arg,)* 24),
            25 => $body::<$fma, 25>($($arg,)* 25),
            30 => $body::<$fma, 30>($($arg,)* 30),
            32 => $body::<$fma, 32>($($arg,)* 32),
            40 => $body::<$fma, 40>($($arg,)* 40),
            50 => $body::<$fma, 50>($($arg,)* 50),
            64 => $body::<$fma, 64>($($arg,)* 64),
            k => $body::<$fma, 0>($($arg,)* k),
        }
    };
}
use by_k;

#[inline(always)]
fn xht_csr_body<const FMA: bool, const K: usize>(
    x: &CsrBlock<'_>,
    hst: &[f32],
    out: &mut [f32],
    k: usize,
) {
    let k = if K == 0 { k } else { K };
    out.fill(0.0);
    let all_cols = &x.indices[..x.indptr[x.n_rows()]];
    for (row, out_row) in out.chunks_exact_mut(k).enumerate().take(x.n_rows()) {
        let range = x.indptr[row]..x.indptr[row + 1];
        let (cols, vals) = (&x.indices[range.clone()], &x.data[range.clone()]);
        if K > 0 {
            // A fixed-size accumulator the compiler keeps in registers: no
            // store-to-load chain through `out_row` between entries.
            let mut acc = [0.0f32; K];
            for (i, (&col, &v)) in cols.iter().zip(vals).enumerate() {
                if FMA {
                    prefetch_row(hst, all_cols, range.start + i + PREFETCH_AHEAD, k);
                }
                let start = col as usize * K;
                axpy::<FMA>(&mut acc, v, &hst[start..start + K]);
            }
            out_row.copy_from_slice(&acc);
            continue;
        }
        for (i, (&col, &v)) in cols.iter().zip(vals).enumerate() {
            if FMA {
                prefetch_row(hst, all_cols, range.start + i + PREFETCH_AHEAD, k);
            }
            let start = col as usize * k;
            axpy::<FMA>(out_row, v, &hst[start..start + k]);
        }
    }
}

/// Stored entries ahead whose k-vector is prefetched (the gathers of the
/// CSR kernels miss L2 when `n_cols × k` floats do not fit it).
const PREFETCH_AHEAD: usize = 16;

/// Asks the CPU to bring the k-vector of the entry at `pos` (if any) into
/// cache. A hint: it never faults and changes no result.
#[inline(always)]
fn prefetch_row(table: &[f32], cols: &[u32], pos: usize, k: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(&col) = cols.get(pos) {
        let start = col as usize * k;
        if start < table.len() {
            let ptr = table[start..].as_ptr();
            // SAFETY: `ptr` points into `table`; a prefetch reads nothing
            // architecturally and cannot fault.
            #[allow(unused_unsafe)]
            unsafe {
                use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
                _mm_prefetch::<_MM_HINT_T0>(ptr.cast());
                if k > 8 {
                    _mm_prefetch::<_MM_HINT_T0>(ptr.wrapping_add(k - 1).cast());
                }
            }
        }
    }
}

#[inline(always)]
fn xtw_csr_body<const FMA: bool, const K: usize>(
    x: &CsrBlock<'_>,
    w: &[f32],
    part: &mut [f32],
    k: usize,
) {
    let k = if K == 0 { k } else { K };
    let all_cols = &x.indices[..x.indptr[x.n_rows()]];
    for (row, w_row) in w.chunks_exact(k).enumerate().take(x.n_rows()) {
        let range = x.indptr[row]..x.indptr[row + 1];
        let (cols, vals) = (&x.indices[range.clone()], &x.data[range.clone()]);
        for (i, (&col, &v)) in cols.iter().zip(vals).enumerate() {
            if FMA {
                prefetch_row(part, all_cols, range.start + i + PREFETCH_AHEAD, k);
            }
            let start = col as usize * k;
            axpy::<FMA>(&mut part[start..start + k], v, w_row);
        }
    }
}

/// Multiplicative update of a range of columns of H:
/// `H ← H ∘ wtx ⊘ (wtw · H)`, a zero denominator replaced by
/// [`DENOMINATOR_EPSILON`].
///
/// # Shapes
/// `h` and `wtx` are `k × c` (`wtx` already divided by the column scale),
/// `wtw` is `k × k`, `den` is `k × c` (scratch).
///
/// # Panics
/// If the shapes do not agree.
pub(crate) fn update_h_cols(
    mut h: ArrayViewMut2<'_, f32>,
    wtx: ArrayView2<'_, f32>,
    wtw: ArrayView2<'_, f32>,
    mut den: ArrayViewMut2<'_, f32>,
) {
    general_mat_mul(1.0, &wtw, &h, 0.0, &mut den);
    ndarray::Zip::from(&mut h)
        .and(&wtx)
        .and(&den)
        .for_each(|h, &num, &d| {
            let d = if d == 0.0 { DENOMINATOR_EPSILON } else { d };
            *h *= num / d;
        });
}

/// How many sweeps a row (of W, or a column of H held as a row) gets from
/// one formation of its products.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sweeps {
    /// Exactly this many (at least 1).
    Fixed(usize),
    /// Gillis & Glineur's rule: stop after the sweep whose squared change
    /// is at most `rel_change_sq` times the first sweep's, or after `cap`.
    UntilSettled {
        /// At most this many sweeps.
        cap: usize,
        /// (δ)² of the rule: the change of a later sweep relative to the first's.
        rel_change_sq: f32,
    },
}

impl Sweeps {
    /// Whether another sweep follows sweep `done` (counted from 1), whose
    /// squared change was `change_sq` and the first's `first_sq`.
    #[inline]
    fn again(self, done: usize, change_sq: f32, first_sq: f32) -> bool {
        match self {
            Sweeps::Fixed(n) => done < n,
            Sweeps::UntilSettled { cap, rel_change_sq } => {
                done < cap && change_sq > rel_change_sq * first_sq && change_sq > 0.0
            }
        }
    }
}

/// The penalty terms a row update adds (scikit-learn's scaled `l1_reg`
/// and `l2_reg` of the factor being updated).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Penalty {
    /// Added to every gradient entry (L1).
    pub l1: f32,
    /// Added to the diagonal of the Gram matrix (L2).
    pub l2: f32,
}

/// How [`update_rows`] updates a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowUpdate {
    /// HALS (coordinate descent), component by component in order:
    /// `v_t ← max(0, v_t − g_t / (gram_tt + l2))` with the gradient
    /// `g = (gram + l2 I)·v − b + l1`, kept up to date after every change
    /// (scikit-learn's `_update_cdnmf_fast`, with its rule of skipping a
    /// component whose Hessian `gram_tt + l2` is 0).
    Hals,
    /// Multiplicative: `v ← v ∘ b ⊘ (gram·v + l1 + l2·v)`, a zero
    /// denominator replaced by [`DENOMINATOR_EPSILON`] (scikit-learn's
    /// regularized update).
    Mu,
}

/// Updates independent rows, `sweeps` times each: every row `v` of `rows`
/// from its row `b` of `num` (the products with the data, X Hᵀ or Wᵀ X
/// transposed) and the Gram matrix `gram` (HHᵀ or WᵀW), by `update`.
/// `scratch` holds `k` values.
///
/// Every row is solved on its own, so the result does not depend on how
/// rows are grouped into blocks or chunks. Dispatches like [`xht_csr`].
///
/// # Shapes
/// `rows` and `num` are `r × k`, `gram` is `k × k`, all in standard layout.
///
/// # Panics
/// If the shapes or layouts do not agree.
#[allow(clippy::too_many_arguments)]
pub fn update_rows(
    update: RowUpdate,
    mut rows: ArrayViewMut2<'_, f32>,
    num: ArrayView2<'_, f32>,
    gram: ArrayView2<'_, f32>,
    penalty: Penalty,
    sweeps: Sweeps,
    scratch: &mut [f32],
) {
    let k = gram.nrows();
    assert_eq!(rows.dim(), num.dim());
    assert_eq!((gram.ncols(), scratch.len()), (k, k));
    let rows = RowKernelArgs {
        v: rows.as_slice_mut().expect("rows in standard layout"),
        b: num.as_slice().expect("products in standard layout"),
        gram: gram.as_slice().expect("the Gram matrix in standard layout"),
        penalty,
        sweeps,
        scratch,
    };
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports the features the copy is compiled for.
        unsafe { update_rows_avx2(update, rows, k) };
        return;
    }
    match update {
        RowUpdate::Hals => by_k!(k, hals_rows_body, false, rows),
        RowUpdate::Mu => by_k!(k, mu_rows_body, false, rows),
    }
}

/// The operands of a row kernel, as slices.
struct RowKernelArgs<'a> {
    v: &'a mut [f32],
    b: &'a [f32],
    gram: &'a [f32],
    penalty: Penalty,
    sweeps: Sweeps,
    scratch: &'a mut [f32],
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn update_rows_avx2(update: RowUpdate, rows: RowKernelArgs<'_>, k: usize) {
    match update {
        RowUpdate::Hals => by_k!(k, hals_rows_avx2, true, rows),
        RowUpdate::Mu => by_k!(k, mu_rows_avx2, true, rows),
    }
}

/// Rows a HALS row kernel updates side by side, one per SIMD lane.
const HALS_LANES: usize = 8;

/// HALS on groups of [`HALS_LANES`] rows at once, row `i` of a group in
/// lane `i`: the update of a component is a chain of dependent steps, and
/// running eight independent chains side by side hides their latency (no
/// horizontal sums: the gradient of each row stays in its lane). Each lane
/// does exactly the arithmetic of one row alone, in the same order, so a
/// row's result depends neither on its group nor on the other rows; a lane
/// whose row stopped (its own `sweeps` rule) or that holds no row (the
/// last group's padding) changes nothing.
#[inline(always)]
fn hals_rows_body<const FMA: bool, const K: usize>(args: RowKernelArgs<'_>, k: usize) {
    let k = if K == 0 { k } else { K };
    let RowKernelArgs {
        v: all_v,
        b: all_b,
        gram,
        penalty,
        sweeps,
        scratch: _,
    } = args;
    if k == 0 {
        return;
    }
    let inv_hess = inverse_hessians(gram, k, penalty.l2);
    let n_rows = all_v.len() / k;
    // Component-major copies of a group: v_t[t][lane], g_t[t][lane].
    let mut v_t = vec![[0.0f32; HALS_LANES]; k];
    let mut g_t = vec![[0.0f32; HALS_LANES]; k];
    for first in (0..n_rows).step_by(HALS_LANES) {
        let n = HALS_LANES.min(n_rows - first);
        let mut active = [false; HALS_LANES];
        active[..n].fill(true);
        for t in 0..k {
            let (v, b) = (
                group_lanes(all_v, first, n, k, t),
                group_lanes(all_b, first, n, k, t),
            );
            v_t[t] = v;
            for lane in 0..HALS_LANES {
                // g = (G + l2 I) v − b + l1.
                g_t[t][lane] = penalty.l1 - b[lane] + penalty.l2 * v[lane];
            }
        }
        for r in 0..k {
            let v_r = v_t[r];
            let row = &gram[r * k..(r + 1) * k];
            for (g, &s) in g_t.iter_mut().zip(row) {
                for lane in 0..HALS_LANES {
                    // A zero v_r adds an exact zero (the scalar form skips it).
                    g[lane] = if FMA {
                        v_r[lane].mul_add(s, g[lane])
                    } else {
                        g[lane] + v_r[lane] * s
                    };
                }
            }
        }
        let mut first_sq = [0.0f32; HALS_LANES];
        let mut done = 0;
        loop {
            let mut change_sq = [0.0f32; HALS_LANES];
            for t in 0..k {
                let inv = inv_hess[t];
                if inv == 0.0 {
                    continue;
                }
                let mut delta = [0.0f32; HALS_LANES];
                for lane in 0..HALS_LANES {
                    // Selects, not branches: the lanes stay one vector.
                    let v = v_t[t][lane];
                    let new = (v - g_t[t][lane] * inv).max(0.0);
                    let on = active[lane];
                    delta[lane] = if on { new - v } else { 0.0 };
                    v_t[t][lane] = if on { new } else { v };
                }
                let row = &gram[t * k..(t + 1) * k];
                for (g, &s) in g_t.iter_mut().zip(row) {
                    for lane in 0..HALS_LANES {
                        g[lane] = if FMA {
                            delta[lane].mul_add(s, g[lane])
                        } else {
                            g[lane] + delta[lane] * s
                        };
                    }
                }
                for lane in 0..HALS_LANES {
                    g_t[t][lane] += penalty.l2 * delta[lane];
                    change_sq[lane] += delta[lane] * delta[lane];
                }
            }
            done += 1;
            if done == 1 {
                first_sq = change_sq;
            }
            for lane in 0..HALS_LANES {
                active[lane] = active[lane] && sweeps.again(done, change_sq[lane], first_sq[lane]);
            }
            if !active.contains(&true) {
                break;
            }
        }
        for (t, v) in v_t.iter().enumerate() {
            set_group_lanes(all_v, first, n, k, t, v);
        }
    }
}

/// 1 / Hessian of every component (`gram_tt + l2`), 0 where the Hessian is
/// 0 (the component is skipped): no division on the chain of dependent
/// updates.
fn inverse_hessians(gram: &[f32], k: usize, l2: f32) -> Vec<f32> {
    (0..k)
        .map(|t| {
            let hess = gram[t * k + t] + l2;
            if hess == 0.0 { 0.0 } else { 1.0 / hess }
        })
        .collect()
}

/// Component `t` of the rows `first..first + n` of a row-major `_ × k`
/// slice, one row per lane, zeros in the lanes past `n`.
#[inline(always)]
fn group_lanes(all: &[f32], first: usize, n: usize, k: usize, t: usize) -> [f32; HALS_LANES] {
    let mut out = [0.0f32; HALS_LANES];
    for (lane, o) in out.iter_mut().enumerate().take(n) {
        *o = all[(first + lane) * k + t];
    }
    out
}

/// Writes the first `n` lanes of `values` back as component `t` of the
/// rows `first..first + n` ([`group_lanes`]'s inverse).
#[inline(always)]
fn set_group_lanes(
    all: &mut [f32],
    first: usize,
    n: usize,
    k: usize,
    t: usize,
    values: &[f32; HALS_LANES],
) {
    for (lane, &v) in values.iter().enumerate().take(n) {
        all[(first + lane) * k + t] = v;
    }
}

/// The lanes of an AVX2 vector.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn lanes(v: std::arch::x86_64::__m256) -> [f32; HALS_LANES] {
    let mut out = [0.0f32; HALS_LANES];
    // SAFETY: `out` holds the vector's 8 f32 (unaligned store).
    unsafe { std::arch::x86_64::_mm256_storeu_ps(out.as_mut_ptr(), v) };
    out
}

/// An AVX2 vector of 8 f32.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn vector(values: &[f32; HALS_LANES]) -> std::arch::x86_64::__m256 {
    // SAFETY: `values` holds 8 f32 (unaligned load).
    unsafe { std::arch::x86_64::_mm256_loadu_ps(values.as_ptr()) }
}

/// A lane mask: all ones in the first `n` lanes, zeros after.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn first_lanes(n: usize) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::{
        _mm256_castsi256_ps, _mm256_cmpgt_epi32, _mm256_set1_epi32, _mm256_setr_epi32,
    };
    let index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), index))
}

/// After sweep `done` of a group: the lanes whose rows go on (`sweeps`'
/// rule on each lane's own squared changes), or `None` when none does.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn still_active(
    sweeps: Sweeps,
    done: usize,
    change_sq: std::arch::x86_64::__m256,
    first_sq: std::arch::x86_64::__m256,
    active: std::arch::x86_64::__m256,
) -> Option<std::arch::x86_64::__m256> {
    let (change, first_change, on) = (lanes(change_sq), lanes(first_sq), lanes(active));
    let mut still = [0.0f32; HALS_LANES];
    for lane in 0..HALS_LANES {
        if on[lane].to_bits() != 0 && sweeps.again(done, change[lane], first_change[lane]) {
            still[lane] = f32::from_bits(u32::MAX);
        }
    }
    still
        .iter()
        .any(|v| v.to_bits() != 0)
        .then(|| vector(&still))
}

/// [`hals_rows_body`] with its lanes written as AVX2 vectors: the same
/// arithmetic per lane, in the same order (fused multiply–adds where the
/// scalar copy compiled with FMA fuses), kept in registers instead of being
/// left to the auto-vectoriser, which transposed the loops.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn hals_rows_avx2<const FMA: bool, const K: usize>(args: RowKernelArgs<'_>, k: usize) {
    use std::arch::x86_64::{
        _mm256_add_ps, _mm256_and_ps, _mm256_blendv_ps, _mm256_fmadd_ps, _mm256_max_ps,
        _mm256_mul_ps, _mm256_set1_ps, _mm256_setzero_ps, _mm256_sub_ps,
    };
    debug_assert!(FMA, "the AVX2 copy fuses");
    let k = if K == 0 { k } else { K };
    let RowKernelArgs {
        v: all_v,
        b: all_b,
        gram,
        penalty,
        sweeps,
        scratch: _,
    } = args;
    if k == 0 {
        return;
    }
    let inv_hess = inverse_hessians(gram, k, penalty.l2);
    let n_rows = all_v.len() / k;
    let zero = _mm256_setzero_ps();
    let l1 = _mm256_set1_ps(penalty.l1);
    let l2 = _mm256_set1_ps(penalty.l2);
    let mut v_t = vec![zero; k];
    let mut g_t = vec![zero; k];
    for first in (0..n_rows).step_by(HALS_LANES) {
        let n = HALS_LANES.min(n_rows - first);
        // All ones in the lanes that hold a row still being updated.
        let mut active = first_lanes(n);
        for t in 0..k {
            let v = vector(&group_lanes(all_v, first, n, k, t));
            let b = group_lanes(all_b, first, n, k, t);
            v_t[t] = v;
            // g = (G + l2 I) v − b + l1.
            g_t[t] = _mm256_add_ps(_mm256_sub_ps(l1, vector(&b)), _mm256_mul_ps(l2, v));
        }
        for r in 0..k {
            let v_r = v_t[r];
            for (g, &s) in g_t.iter_mut().zip(&gram[r * k..(r + 1) * k]) {
                *g = _mm256_fmadd_ps(v_r, _mm256_set1_ps(s), *g);
            }
        }
        let mut first_sq = zero;
        let mut done = 0;
        loop {
            let mut change_sq = zero;
            for t in 0..k {
                let inv = inv_hess[t];
                if inv == 0.0 {
                    continue;
                }
                let v = v_t[t];
                let new = _mm256_max_ps(
                    _mm256_sub_ps(v, _mm256_mul_ps(g_t[t], _mm256_set1_ps(inv))),
                    zero,
                );
                let delta = _mm256_and_ps(_mm256_sub_ps(new, v), active);
                v_t[t] = _mm256_blendv_ps(v, new, active);
                for (g, &s) in g_t.iter_mut().zip(&gram[t * k..(t + 1) * k]) {
                    *g = _mm256_fmadd_ps(delta, _mm256_set1_ps(s), *g);
                }
                g_t[t] = _mm256_add_ps(g_t[t], _mm256_mul_ps(l2, delta));
                change_sq = _mm256_add_ps(change_sq, _mm256_mul_ps(delta, delta));
            }
            done += 1;
            if done == 1 {
                first_sq = change_sq;
            }
            match still_active(sweeps, done, change_sq, first_sq, active) {
                Some(still) => active = still,
                None => break,
            }
        }
        for (t, v) in v_t.iter().enumerate() {
            set_group_lanes(all_v, first, n, k, t, &lanes(*v));
        }
    }
}

/// [`mu_rows_body`] on groups of [`HALS_LANES`] rows, one per AVX2 lane:
/// the same arithmetic per row, in the same order (the scalar copy compiled
/// with FMA fuses the same steps), so a row's result depends neither on its
/// group nor on the other rows. A lane whose row stopped, or that holds no
/// row, keeps its values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn mu_rows_avx2<const FMA: bool, const K: usize>(args: RowKernelArgs<'_>, k: usize) {
    use std::arch::x86_64::{
        _CMP_EQ_OQ, _mm256_add_ps, _mm256_blendv_ps, _mm256_cmp_ps, _mm256_div_ps, _mm256_fmadd_ps,
        _mm256_mul_ps, _mm256_set1_ps, _mm256_setzero_ps, _mm256_sub_ps,
    };
    debug_assert!(FMA, "the AVX2 copy fuses");
    let k = if K == 0 { k } else { K };
    let RowKernelArgs {
        v: all_v,
        b: all_b,
        gram,
        penalty,
        sweeps,
        scratch: _,
    } = args;
    if k == 0 {
        return;
    }
    let n_rows = all_v.len() / k;
    let zero = _mm256_setzero_ps();
    let l1 = _mm256_set1_ps(penalty.l1);
    let l2 = _mm256_set1_ps(penalty.l2);
    let epsilon = _mm256_set1_ps(DENOMINATOR_EPSILON);
    let mut v_t = vec![zero; k];
    let mut b_t = vec![zero; k];
    let mut den = vec![zero; k];
    for first in (0..n_rows).step_by(HALS_LANES) {
        let n = HALS_LANES.min(n_rows - first);
        let mut active = first_lanes(n);
        for t in 0..k {
            v_t[t] = vector(&group_lanes(all_v, first, n, k, t));
            b_t[t] = vector(&group_lanes(all_b, first, n, k, t));
        }
        let mut first_sq = zero;
        let mut done = 0;
        loop {
            // den = l1 + l2 v + Gram·v.
            for (d, &v) in den.iter_mut().zip(&v_t) {
                *d = _mm256_add_ps(l1, _mm256_mul_ps(l2, v));
            }
            for r in 0..k {
                let v_r = v_t[r];
                for (d, &s) in den.iter_mut().zip(&gram[r * k..(r + 1) * k]) {
                    *d = _mm256_fmadd_ps(v_r, _mm256_set1_ps(s), *d);
                }
            }
            let mut change_sq = zero;
            for t in 0..k {
                let d = den[t];
                let d = _mm256_blendv_ps(d, epsilon, _mm256_cmp_ps::<_CMP_EQ_OQ>(d, zero));
                let v = v_t[t];
                let new = _mm256_mul_ps(v, _mm256_div_ps(b_t[t], d));
                let diff = _mm256_sub_ps(new, v);
                change_sq = _mm256_add_ps(change_sq, _mm256_mul_ps(diff, diff));
                v_t[t] = _mm256_blendv_ps(v, new, active);
            }
            done += 1;
            if done == 1 {
                first_sq = change_sq;
            }
            match still_active(sweeps, done, change_sq, first_sq, active) {
                Some(still) => active = still,
                None => break,
            }
        }
        for (t, v) in v_t.iter().enumerate() {
            set_group_lanes(all_v, first, n, k, t, &lanes(*v));
        }
    }
}

#[inline(always)]
fn mu_rows_body<const FMA: bool, const K: usize>(args: RowKernelArgs<'_>, k: usize) {
    let k = if K == 0 { k } else { K };
    let RowKernelArgs {
        v: all_v,
        b: all_b,
        gram,
        penalty,
        sweeps,
        scratch: den,
    } = args;
    let den = &mut den[..k];
    for (v, b) in all_v.chunks_exact_mut(k).zip(all_b.chunks_exact(k)) {
        let mut first_sq = 0.0f32;
        let mut done = 0;
        loop {
            for (d, &v) in den.iter_mut().zip(v.iter()) {
                *d = penalty.l1 + penalty.l2 * v;
            }
            for (r, &v_r) in v.iter().enumerate() {
                if v_r != 0.0 {
                    axpy::<FMA>(den, v_r, &gram[r * k..(r + 1) * k]);
                }
            }
            let mut change_sq = 0.0f32;
            for ((v, &b), &d) in v.iter_mut().zip(b).zip(den.iter()) {
                let d = if d == 0.0 { DENOMINATOR_EPSILON } else { d };
                let new = *v * (b / d);
                change_sq += (new - *v) * (new - *v);
                *v = new;
            }
            done += 1;
            if done == 1 {
                first_sq = change_sq;
            }
            if !sweeps.again(done, change_sq, first_sq) {
                break;
            }
        }
    }
}

/// The products the error needs after rows of W were updated: adds
/// `W_bᵀ W_b` into `wtw` (through the f32 scratch `gram`) and returns
/// `Σ ⟨W_b, xht⟩`.
///
/// # Shapes
/// `w` and `xht` are `b × k`, `wtw` and `gram` `k × k`.
pub(crate) fn w_rows_products(
    w: ArrayView2<'_, f32>,
    xht: ArrayView2<'_, f32>,
    mut wtw: ArrayViewMut2<'_, f64>,
    mut gram: ArrayViewMut2<'_, f32>,
) -> f64 {
    let mut cross = 0.0f64;
    ndarray::Zip::from(&w)
        .and(&xht)
        .for_each(|&w, &num| cross += f64::from(w) * f64::from(num));
    product(w.t(), w.view(), gram.view_mut());
    wtw.zip_mut_with(&gram, |acc, &g| *acc += f64::from(g));
    cross
}

/// Kullback–Leibler: the ratio `X_s ⊘ (W H)` at the stored entries of a
/// CSR block, written into `ratio` in the order of the entries (`ratio[0]`
/// for the entry at `x.indptr[0]`; `x` may be a row range of a block),
/// with `(WH)_ij` below [`DENOMINATOR_EPSILON`] raised to it (scikit-learn's
/// clipping). Returns `Σ x_s ln(x_s / (WH))` over the entries with
/// `x_s > ε` (the data term of the divergence, with the clipped `WH`).
///
/// # Shapes
/// `w` is `b × k` (the block's rows), `ht` is `n_cols × k` (Hᵀ),
/// `inv_scale` has `n_cols` entries; `w` and `ht` in standard layout.
pub fn kl_ratio_csr(
    x: &CsrBlock<'_>,
    w: ArrayView2<'_, f32>,
    ht: ArrayView2<'_, f32>,
    inv_scale: &[f32],
    ratio: &mut [f32],
) -> f64 {
    let k = ht.ncols();
    let w = w.as_slice().expect("W in standard layout");
    let ht = ht.as_slice().expect("Hᵀ in standard layout");
    let mut data_term = 0.0f64;
    let base = x.indptr[0];
    for (row, w_row) in w.chunks_exact(k).enumerate().take(x.n_rows()) {
        for p in x.indptr[row]..x.indptr[row + 1] {
            let col = x.indices[p] as usize;
            let xs = x.data[p] * inv_scale[col];
            let h_col = &ht[col * k..(col + 1) * k];
            let wh: f32 = w_row.iter().zip(h_col).map(|(a, b)| a * b).sum();
            let wh = wh.max(DENOMINATOR_EPSILON);
            ratio[p - base] = xs / wh;
            if xs > DENOMINATOR_EPSILON {
                data_term += f64::from(xs) * (f64::from(xs) / f64::from(wh)).ln();
            }
        }
    }
    data_term
}

/// [`kl_ratio_csr`] for dense rows: `ratio = X_s ⊘ (W H)` (0 where X is 0),
/// with `W H` formed by a matrix product into `ratio` first.
///
/// # Shapes
/// `x` and `ratio` are `b × n_cols`, `w` is `b × k`, `h` is `k × n_cols`.
pub(crate) fn kl_ratio_dense(
    x: ArrayView2<'_, f32>,
    w: ArrayView2<'_, f32>,
    h: ArrayView2<'_, f32>,
    inv_scale: &[f32],
    mut ratio: ArrayViewMut2<'_, f32>,
) -> f64 {
    general_mat_mul(1.0, &w, &h, 0.0, &mut ratio);
    let mut data_term = 0.0f64;
    for (mut r_row, x_row) in ratio.rows_mut().into_iter().zip(x.rows()) {
        for ((r, &x), &inv) in r_row.iter_mut().zip(x_row).zip(inv_scale) {
            let xs = x * inv;
            let wh = r.max(DENOMINATOR_EPSILON);
            *r = xs / wh;
            if xs > DENOMINATOR_EPSILON {
                data_term += f64::from(xs) * (f64::from(xs) / f64::from(wh)).ln();
            }
        }
    }
    data_term
}

/// Kullback–Leibler multiplicative update of rows of W:
/// `W ← W ∘ num ⊘ (Σ_j H_aj + l1 + l2·W)`, a zero denominator replaced by
/// [`DENOMINATOR_EPSILON`] (scikit-learn's update for β = 1), where `num`
/// is `(X_s ⊘ W H) Hᵀ` of the rows.
///
/// # Shapes
/// `w` and `num` are `b × k`, `h_sum` has `k` entries.
pub(crate) fn kl_update_w_rows(
    mut w: ArrayViewMut2<'_, f32>,
    num: ArrayView2<'_, f32>,
    h_sum: &[f32],
    penalty: Penalty,
) {
    for (mut w_row, num_row) in w.rows_mut().into_iter().zip(num.rows()) {
        for ((w, &n), &hs) in w_row.iter_mut().zip(num_row).zip(h_sum) {
            let d = hs + penalty.l1 + penalty.l2 * *w;
            let d = if d == 0.0 { DENOMINATOR_EPSILON } else { d };
            *w *= n / d;
        }
    }
}

/// Index of the largest entry of every row (the first one on ties).
pub fn argmax_rows(w: ArrayView2<'_, f32>) -> Vec<u32> {
    w.rows()
        .into_iter()
        .map(|row| {
            let mut best = 0usize;
            for (idx, &value) in row.iter().enumerate() {
                if value > row[best] {
                    best = idx;
                }
            }
            best as u32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, array};

    /// One row of HALS as written out plainly (no fused operations).
    fn hals_row_reference(
        v: &mut [f32],
        b: &[f32],
        gram: &Array2<f32>,
        p: Penalty,
        sweeps: Sweeps,
    ) {
        let k = v.len();
        let mut g: Vec<f32> = (0..k)
            .map(|t| p.l1 - b[t] + p.l2 * v[t] + (0..k).map(|r| v[r] * gram[(r, t)]).sum::<f32>())
            .collect();
        let (mut done, mut first_sq) = (0, 0.0f32);
        loop {
            let mut change_sq = 0.0f32;
            for t in 0..k {
                let hess = gram[(t, t)] + p.l2;
                if hess == 0.0 {
                    continue;
                }
                let new = (v[t] - g[t] / hess).max(0.0);
                let delta = new - v[t];
                v[t] = new;
                for (l, g) in g.iter_mut().enumerate() {
                    *g += delta * gram[(t, l)];
                }
                g[t] += p.l2 * delta;
                change_sq += delta * delta;
            }
            done += 1;
            if done == 1 {
                first_sq = change_sq;
            }
            if !sweeps.again(done, change_sq, first_sq) {
                return;
            }
        }
    }

    /// One row of the multiplicative update as written out plainly.
    fn mu_row_reference(v: &mut [f32], b: &[f32], gram: &Array2<f32>, p: Penalty, sweeps: Sweeps) {
        let k = v.len();
        let (mut done, mut first_sq) = (0, 0.0f32);
        loop {
            let den: Vec<f32> = (0..k)
                .map(|t| p.l1 + p.l2 * v[t] + (0..k).map(|r| v[r] * gram[(r, t)]).sum::<f32>())
                .collect();
            let mut change_sq = 0.0f32;
            for t in 0..k {
                let d = if den[t] == 0.0 {
                    DENOMINATOR_EPSILON
                } else {
                    den[t]
                };
                let new = v[t] * (b[t] / d);
                change_sq += (new - v[t]) * (new - v[t]);
                v[t] = new;
            }
            done += 1;
            if done == 1 {
                first_sq = change_sq;
            }
            if !sweeps.again(done, change_sq, first_sq) {
                return;
            }
        }
    }

    #[test]
    fn row_updates_side_by_side_equal_each_row_alone_and_the_plain_update() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        // 19 rows: two groups of eight lanes and a tail of three.
        for k in [7usize, 12] {
            let a = Array2::from_shape_fn((k, k + 3), |_| rng.random::<f32>());
            let full_gram = a.dot(&a.t());
            // For HALS, a skipped component too (zero Hessian).
            let mut gram_skipping = full_gram.clone();
            for r in 0..k {
                gram_skipping[(r, k - 1)] = 0.0;
                gram_skipping[(k - 1, r)] = 0.0;
            }
            let signed = Array2::from_shape_fn((19, k), |_| rng.random::<f32>() * 4.0 - 0.5);
            let v0 = Array2::from_shape_fn((19, k), |_| rng.random::<f32>());
            let untilsettled = Sweeps::UntilSettled {
                cap: 9,
                rel_change_sq: 0.01,
            };
            for (update, penalty, sweeps) in [
                (RowUpdate::Hals, Penalty::default(), Sweeps::Fixed(1)),
                (RowUpdate::Hals, Penalty::default(), untilsettled),
                (
                    RowUpdate::Hals,
                    Penalty { l1: 0.3, l2: 0.2 },
                    Sweeps::Fixed(4),
                ),
                (RowUpdate::Hals, Penalty { l1: 0.1, l2: 0.0 }, untilsettled),
                (RowUpdate::Mu, Penalty::default(), Sweeps::Fixed(1)),
                (RowUpdate::Mu, Penalty::default(), untilsettled),
                (
                    RowUpdate::Mu,
                    Penalty { l1: 0.3, l2: 0.2 },
                    Sweeps::Fixed(4),
                ),
            ] {
                // MU's numerators are non-negative (products of X and a
                // factor), and its denominators positive.
                let (num, gram) = match update {
                    RowUpdate::Hals => (signed.clone(), &gram_skipping),
                    RowUpdate::Mu => (signed.mapv(f32::abs), &full_gram),
                };
                let mut scratch = vec![0.0f32; k];
                let mut all = v0.clone();
                update_rows(
                    update,
                    all.view_mut(),
                    num.view(),
                    gram.view(),
                    penalty,
                    sweeps,
                    &mut scratch,
                );
                for i in 0..19 {
                    let mut one = v0.slice(ndarray::s![i..=i, ..]).to_owned();
                    let b = num.slice(ndarray::s![i..=i, ..]);
                    update_rows(
                        update,
                        one.view_mut(),
                        b,
                        gram.view(),
                        penalty,
                        sweeps,
                        &mut scratch,
                    );
                    assert_eq!(
                        one.row(0),
                        all.row(i),
                        "k {k}, row {i}: alone and in a group"
                    );
                    let mut plain = v0.row(i).to_vec();
                    let reference = match update {
                        RowUpdate::Hals => hals_row_reference,
                        RowUpdate::Mu => mu_row_reference,
                    };
                    reference(&mut plain, &num.row(i).to_vec(), gram, penalty, sweeps);
                    for (t, (&got, &want)) in all.row(i).iter().zip(&plain).enumerate() {
                        assert!(got >= 0.0);
                        assert!(
                            (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                            "k {k}, row {i}, component {t}: {got} against {want} ({update:?}, {penalty:?}, {sweeps:?})"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn update_w_rows_matches_formula() {
        let mut w = array![[1.0f32, 2.0], [0.5, 0.0]];
        let xht = array![[3.0f32, 1.0], [2.0, 4.0]];
        let hht = array![[2.0f32, 1.0], [1.0, 3.0]];
        let mut wtw = Array2::<f64>::zeros((2, 2));
        let mut den = Array2::zeros((2, 2));
        let mut gram = Array2::zeros((2, 2));
        let w0 = w.clone();
        let cross = update_w_rows(
            w.view_mut(),
            xht.view(),
            hht.view(),
            wtw.view_mut(),
            den.view_mut(),
            gram.view_mut(),
        );
        let d = w0.dot(&hht);
        for i in 0..2 {
            for c in 0..2 {
                let dd = if d[(i, c)] == 0.0 {
                    f32::EPSILON
                } else {
                    d[(i, c)]
                };
                assert!((w[(i, c)] - w0[(i, c)] * xht[(i, c)] / dd).abs() < 1e-6);
            }
        }
        let expected_cross: f32 = (&w * &xht).sum();
        assert!((cross - f64::from(expected_cross)).abs() < 1e-5);
        let expected_wtw = w.t().dot(&w);
        for (a, b) in wtw.iter().zip(expected_wtw.iter()) {
            assert!((a - f64::from(*b)).abs() < 1e-5);
        }
    }

    #[test]
    fn update_h_cols_matches_formula() {
        let mut h = array![[1.0f32, 0.0, 2.0], [0.5, 1.0, 1.0]];
        let wtx = array![[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]];
        let wtw = array![[2.0f32, 1.0], [1.0, 1.0]];
        let mut den = Array2::zeros((2, 3));
        let h0 = h.clone();
        update_h_cols(h.view_mut(), wtx.view(), wtw.view(), den.view_mut());
        let d = wtw.dot(&h0);
        for a in 0..2 {
            for j in 0..3 {
                let dd = if d[(a, j)] == 0.0 {
                    f32::EPSILON
                } else {
                    d[(a, j)]
                };
                assert!((h[(a, j)] - h0[(a, j)] * wtx[(a, j)] / dd).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn csr_kernels_match_dense_kernels() {
        let x = array![
            [0.0f32, 2.0, 0.0, 1.0],
            [0.0, 0.0, 0.0, 0.0],
            [3.0, 0.0, 0.5, 0.0]
        ];
        let csr = crate::InMemoryCsrSource::new(
            3,
            4,
            vec![0, 2, 2, 4],
            vec![3, 1, 2, 0],
            vec![1.0, 2.0, 0.5, 3.0],
        );
        let mut csr = csr;
        let block = crate::RowSource::block(&mut csr, 0..3).expect("block");
        let crate::RowBlock::Csr(block) = block else {
            panic!("not csr")
        };
        block.validate(3).expect("valid");
        let hst = array![[1.0f32, 0.5], [2.0, 0.0], [0.0, 1.0], [4.0, 3.0]];
        let mut dense_xht = Array2::zeros((3, 2));
        let mut sparse_xht = Array2::zeros((3, 2));
        xht_dense(x.view(), hst.view(), dense_xht.view_mut());
        xht_csr(&block, hst.view(), sparse_xht.view_mut());
        assert_eq!(dense_xht, sparse_xht);
        let w = array![[1.0f32, 2.0], [3.0, 4.0], [0.5, 0.25]];
        let mut part = Array2::zeros((4, 2));
        accumulate_xtw_csr(&block, w.view(), part.view_mut());
        let mut acc = Array2::<f64>::zeros((4, 2));
        let mut scratch = Array2::zeros((4, 2));
        accumulate_xtw_dense(w.view(), x.view(), scratch.view_mut(), acc.view_mut());
        assert_eq!(acc.mapv(|v| v as f32), part);
    }

    /// The column gather adds what the scatter into one partial per part,
    /// then the partials in part order, adds: same bits, for specialised
    /// and other k, with empty rows and columns, and parts of one row.
    #[test]
    fn column_gather_equals_the_partitioned_scatter_bit_for_bit() {
        let (n_b, n_cols) = (53, 41);
        let x = Array2::from_shape_fn((n_b, n_cols), |(i, j)| {
            if i % 11 == 3 || j % 13 == 5 {
                0.0
            } else if (i * 7 + j * 3) % 4 == 0 {
                ((i * 31 + j * 17) % 23) as f32 * 0.37 + 0.001
            } else {
                0.0
            }
        });
        let mut source = crate::InMemoryCsrSource::from_dense(x.view());
        let crate::RowBlock::Csr(block) =
            crate::RowSource::block(&mut source, 0..n_b).expect("block")
        else {
            panic!("csr")
        };
        let order = crate::ColumnOrder::of(&block).expect("a valid block");
        let values = order.values(block.data);
        let columns = CscBlock {
            col_ptr: &order.col_ptr,
            rows: &order.rows,
            data: &values,
        };
        for n_parts in [1usize, 8, n_b] {
            let part_rows = |p: usize| (p * n_b / n_parts)..((p + 1) * n_b / n_parts);
            let part_ends: Vec<usize> = (0..n_parts).map(|p| part_rows(p).end).collect();
            for k in [3usize, 20, 21] {
                let w =
                    Array2::from_shape_fn((n_b, k), |(i, j)| ((i * 3 + 2 * j) % 19) as f32 * 0.173);
                let mut want = Array2::<f64>::zeros((n_cols, k));
                for p in 0..n_parts {
                    let rows = part_rows(p);
                    let sub = CsrBlock {
                        indptr: &block.indptr[rows.start..=rows.end],
                        ..block
                    };
                    let mut part = Array2::<f32>::zeros((n_cols, k));
                    accumulate_xtw_csr(&sub, w.slice(ndarray::s![rows, ..]), part.view_mut());
                    want.zip_mut_with(&part, |a, &v| *a += f64::from(v));
                }
                let mut got = Array2::<f64>::zeros((n_cols, k));
                for start in (0..n_cols).step_by(16) {
                    let cols = start..(start + 16).min(n_cols);
                    let acc = got.slice_mut(ndarray::s![cols.clone(), ..]);
                    accumulate_xtw_csc(&columns, w.view(), &part_ends, cols, acc);
                }
                let same = want
                    .iter()
                    .zip(&got)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "k = {k}, {n_parts} parts");
            }
        }
    }

    #[test]
    fn column_copies_are_checked_against_their_block() {
        let block = CsrBlock {
            indptr: &[0, 2, 3],
            indices: &[2, 0, 2],
            data: &[1.0, 2.0, 3.0],
            n_cols: 3,
            columns: None,
        };
        let order = crate::ColumnOrder::of(&block).expect("valid");
        assert_eq!(order.col_ptr, vec![0, 1, 1, 3]);
        assert_eq!(
            (order.rows.clone(), order.order.clone()),
            (vec![0, 0, 1], vec![1, 0, 2])
        );
        let values = order.values(block.data);
        assert_eq!(values, vec![2.0, 1.0, 3.0]);
        let good = CscBlock {
            col_ptr: &order.col_ptr,
            rows: &order.rows,
            data: &values,
        };
        assert_eq!(good.validate(2, 3, 3), Ok(()));
        let short = CscBlock {
            col_ptr: &order.col_ptr[..3],
            ..good
        };
        assert!(matches!(
            short.validate(2, 3, 3),
            Err(crate::CsrShapeError::ColumnPointers {
                expected: 4,
                found: 3
            })
        ));
        let far_row = CscBlock {
            rows: &[0, 0, 2],
            ..good
        };
        assert_eq!(
            far_row.validate(2, 3, 3),
            Err(crate::CsrShapeError::Columns { nnz: 3 })
        );
        let backwards = CscBlock {
            col_ptr: &[0, 2, 1, 3],
            ..good
        };
        assert_eq!(
            backwards.validate(2, 3, 3),
            Err(crate::CsrShapeError::Columns { nnz: 3 })
        );
        let bad = CsrBlock {
            indices: &[2, 0, 3],
            ..block
        };
        assert_eq!(
            crate::ColumnOrder::of(&bad),
            None,
            "a malformed block has no column order"
        );
    }

    #[test]
    fn csr_kernels_agree_with_dense_for_specialised_and_other_k() {
        let x = Array2::from_shape_fn((37, 29), |(i, j)| {
            if (i * 7 + j * 3) % 5 == 0 {
                (1 + (i + j) % 4) as f32
            } else {
                0.0
            }
        });
        let mut source = crate::InMemoryCsrSource::from_dense(x.view());
        let crate::RowBlock::Csr(block) =
            crate::RowSource::block(&mut source, 0..37).expect("block")
        else {
            panic!("csr")
        };
        for k in [2usize, 7, 20, 33] {
            let hst = Array2::from_shape_fn((29, k), |(i, j)| ((i * 5 + j) % 9) as f32 * 0.25);
            let w = Array2::from_shape_fn((37, k), |(i, j)| ((i + 2 * j) % 7) as f32 * 0.5);
            let mut dense = Array2::zeros((37, k));
            let mut sparse = Array2::zeros((37, k));
            xht_dense(x.view(), hst.view(), dense.view_mut());
            xht_csr(&block, hst.view(), sparse.view_mut());
            assert!(
                dense
                    .iter()
                    .zip(&sparse)
                    .all(|(a, b)| (a - b).abs() <= 1e-4 * a.abs().max(1.0)),
                "k = {k}"
            );
            let mut part = Array2::zeros((29, k));
            accumulate_xtw_csr(&block, w.view(), part.view_mut());
            let want = x.t().dot(&w);
            assert!(
                want.iter()
                    .zip(&part)
                    .all(|(a, b)| (a - b).abs() <= 1e-4 * a.abs().max(1.0)),
                "k = {k}"
            );
        }
    }

    #[test]
    fn csr_validation_names_the_fault() {
        let bad_index = CsrBlock {
            indptr: &[0, 1],
            indices: &[4],
            data: &[1.0],
            n_cols: 4,
            columns: None,
        };
        assert!(matches!(
            bad_index.validate(1),
            Err(crate::CsrShapeError::Index { col: 4, .. })
        ));
        let bad_ptr = CsrBlock {
            indptr: &[0, 2, 1],
            indices: &[0, 1],
            data: &[1.0, 1.0],
            n_cols: 4,
            columns: None,
        };
        assert!(matches!(
            bad_ptr.validate(2),
            Err(crate::CsrShapeError::Indptr { row: 1, .. })
        ));
        let bad_len = CsrBlock {
            indptr: &[0, 1],
            indices: &[0, 1],
            data: &[1.0],
            n_cols: 4,
            columns: None,
        };
        assert!(matches!(
            bad_len.validate(1),
            Err(crate::CsrShapeError::Lengths { .. })
        ));
        let short_end = CsrBlock {
            indptr: &[0, 1],
            indices: &[0, 1],
            data: &[1.0, 2.0],
            n_cols: 4,
            columns: None,
        };
        assert!(matches!(
            short_end.validate(1),
            Err(crate::CsrShapeError::Indptr { row: 1, .. })
        ));
    }

    #[test]
    fn argmax_takes_first_of_ties() {
        let w = array![[0.0f32, 1.0, 1.0], [3.0, 2.0, 1.0], [0.0, 0.0, 0.0]];
        assert_eq!(argmax_rows(w.view()), vec![1, 0, 0]);
    }
}
