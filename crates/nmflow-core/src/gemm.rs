//! Products `C = A · B` of a block with a thin panel (`B` has at most
//! 64 columns: H, W or a `k × k` Gram matrix), computed without
//! packing and rounded exactly as `ndarray`'s product (matrixmultiply's
//! `sgemm`) rounds them.
//!
//! # The rounding rule, and why results stay bit-for-bit
//! On a CPU with AVX2 and FMA, matrixmultiply computes every entry of
//! `C = A · B` (β = 0, α = 1) the same way, whatever the shapes or strides:
//! the reduction index runs in chunks of 256 from 0; within a chunk the
//! products are accumulated in order by fused multiply-adds starting from
//! zero; the first chunk's sum is stored, each later chunk's sum is added to
//! the stored value. Which lane or register holds an entry changes nothing.
//! The kernels here follow that rule entry by entry, so the results every
//! earlier release wrote (the seed algorithm's W and H) are reproduced bit
//! for bit; `products_equal_ndarray_bit_for_bit` checks it on every shape
//! class. What they drop is matrixmultiply's packing of A (a full copy of
//! the block per product, a quarter of an iteration on dense data): A is
//! read in place, and the panel row of B for one reduction index is loaded
//! once for all rows of a tile.
//!
//! Other CPUs, other strides of B or C, and wider panels use
//! `general_mat_mul` itself.

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2};

/// Reduction chunk of matrixmultiply's `sgemm` (its `S_KC`).
pub(crate) const KC: usize = 256;

/// Widest panel the kernels take (four vectors of 16 lanes).
pub(crate) const MAX_PANEL: usize = 64;

/// `c = a · b`, equal bit for bit to `general_mat_mul(1.0, a, b, 0.0, c)`.
///
/// # Shapes
/// `a` is `m × p`, `b` is `p × k`, `c` is `m × k`.
///
/// # Panics
/// If the shapes do not agree.
pub fn product(a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>, c: ArrayViewMut2<'_, f32>) {
    product_into(a, b, c, false);
}

/// `c += a · b`, equal bit for bit to `general_mat_mul(1.0, a, b, 1.0, c)`:
/// every reduction chunk's sum is added to `c`. A product over rows
/// `0..p` split at a multiple of 256 into [`product`] then
/// `product_add` rounds exactly as the whole product.
///
/// # Shapes
/// As [`product`].
///
/// # Panics
/// If the shapes do not agree.
pub fn product_add(a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>, c: ArrayViewMut2<'_, f32>) {
    product_into(a, b, c, true);
}

fn product_into(
    a: ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
    mut c: ArrayViewMut2<'_, f32>,
    add: bool,
) {
    let (m, p) = a.dim();
    let k = b.ncols();
    assert_eq!((b.nrows(), c.dim()), (p, (m, k)), "product shapes");
    #[cfg(target_arch = "x86_64")]
    if let Some(operands) = Operands::new(&a, &b, &mut c, add)
        && fast_path_available()
    {
        // SAFETY: the CPU has AVX-512F (checked), and `Operands::new`
        // checked that every offset the kernel forms stays inside the
        // three arrays.
        unsafe { product_avx512(operands) };
        return;
    }
    general_mat_mul(1.0, &a, &b, if add { 1.0 } else { 0.0 }, &mut c);
}

/// Whether this CPU runs the packed-free kernels: AVX-512F for the code,
/// and AVX2 with FMA, so that matrixmultiply (whose rounding they follow)
/// runs its FMA kernel too.
#[cfg(target_arch = "x86_64")]
fn fast_path_available() -> bool {
    std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx2")
        && std::is_x86_feature_detected!("fma")
}

/// Raw pointers and strides of a product whose extents were checked.
#[cfg(target_arch = "x86_64")]
struct Operands {
    m: usize,
    p: usize,
    k: usize,
    a: *const f32,
    rsa: isize,
    csa: isize,
    b: *const f32,
    rsb: isize,
    c: *mut f32,
    rsc: isize,
    /// Whether the first chunk's sums are added to C (else stored).
    add: bool,
}

#[cfg(target_arch = "x86_64")]
impl Operands {
    /// The operands, when the kernels can take them: non-empty, a panel of
    /// at most [`MAX_PANEL`] columns, B and C with unit column stride and
    /// non-negative strides throughout (views of blocks and their
    /// transposes always are).
    fn new(
        a: &ArrayView2<'_, f32>,
        b: &ArrayView2<'_, f32>,
        c: &mut ArrayViewMut2<'_, f32>,
        add: bool,
    ) -> Option<Self> {
        let (m, p) = a.dim();
        let k = b.ncols();
        let unit_cols = k == 1 || (b.strides()[1] == 1 && c.strides()[1] == 1);
        let strides = [a.strides(), b.strides(), c.strides()];
        let non_negative = strides.iter().all(|s| s.iter().all(|&s| s >= 0));
        if m == 0 || p == 0 || k == 0 || k > MAX_PANEL || !unit_cols || !non_negative {
            return None;
        }
        Some(Self {
            m,
            p,
            k,
            a: a.as_ptr(),
            rsa: a.strides()[0],
            csa: a.strides()[1],
            b: b.as_ptr(),
            rsb: b.strides()[0],
            c: c.as_mut_ptr(),
            rsc: c.strides()[0],
            add,
        })
    }
}

/// Lanes of one AVX-512 vector.
#[cfg(target_arch = "x86_64")]
const LANES: usize = 16;

/// # Safety
/// The CPU has AVX-512F; the operands' offsets stay inside their arrays.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn product_avx512(o: Operands) {
    // Rows per tile: the tile's accumulators (rows × vectors) plus the
    // panel row stay within the 32 vector registers.
    // SAFETY: forwarded from the caller.
    unsafe {
        if o.rsa == 1 && o.k <= MAX_COLUMN_PANEL {
            return by_panel_width!(o.k, column_tiles, &o);
        }
        match o.k.div_ceil(LANES) {
            1 => tiles::<8, 1>(&o),
            2 => tiles::<8, 2>(&o),
            3 => tiles::<8, 3>(&o),
            _ => tiles::<4, 4>(&o),
        }
    }
}

/// Widest panel [`column_tiles`] takes: one accumulator per panel column.
#[cfg(target_arch = "x86_64")]
const MAX_COLUMN_PANEL: usize = 28;

/// Calls `$f::<K>($arg)` with the const `K` equal to `$k` (1 to
/// [`MAX_COLUMN_PANEL`]).
#[cfg(target_arch = "x86_64")]
macro_rules! by_panel_width {
    ($k:expr, $f:ident, $arg:expr) => {
        match $k {
            1 => $f::<1>($arg),
            2 => $f::<2>($arg),
            3 => $f::<3>($arg),
            4 => $f::<4>($arg),
            5 => $f::<5>($arg),
            6 => $f::<6>($arg),
            7 => $f::<7>($arg),
            8 => $f::<8>($arg),
            9 => $f::<9>($arg),
            10 => $f::<10>($arg),
            11 => $f::<11>($arg),
            12 => $f::<12>($arg),
            13 => $f::<13>($arg),
            14 => $f::<14>($arg),
            15 => $f::<15>($arg),
            16 => $f::<16>($arg),
            17 => $f::<17>($arg),
            18 => $f::<18>($arg),
            19 => $f::<19>($arg),
            20 => $f::<20>($arg),
            21 => $f::<21>($arg),
            22 => $f::<22>($arg),
            23 => $f::<23>($arg),
            24 => $f::<24>($arg),
            25 => $f::<25>($arg),
            26 => $f::<26>($arg),
            27 => $f::<27>($arg),
            _ => $f::<28>($arg),
        }
    };
}
#[cfg(target_arch = "x86_64")]
use by_panel_width;

/// When A's rows are adjacent in memory (A = X_bᵀ, the XᵀW product): 16
/// rows of C per vector, one accumulator per panel column, each panel
/// entry broadcast from memory. Every lane is used whatever `k` (the row
/// tiles of [`tiles`] leave a partial last vector idle), and A is read as
/// whole vectors. Narrow panels take several vectors of rows per tile, so
/// that enough independent sums hide the FMA latency. Each entry's
/// rounding is the same as in [`tile`].
///
/// # Safety
/// As [`product_avx512`], with `o.rsa == 1` and `o.k == K`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn column_tiles<const K: usize>(o: &Operands) {
    // SAFETY: forwarded from the caller.
    unsafe {
        if K <= 7 {
            column_tiles_of::<K, 4>(o);
        } else if K <= 14 {
            column_tiles_of::<K, 2>(o);
        } else {
            column_tiles_of::<K, 1>(o);
        }
    }
}

/// [`column_tiles`] with `V` vectors of rows per tile.
///
/// # Safety
/// As [`column_tiles`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn column_tiles_of<const K: usize, const V: usize>(o: &Operands) {
    use std::arch::x86_64::{
        __m512, _MM_HINT_T0, _mm_prefetch, _mm512_fmadd_ps, _mm512_maskz_loadu_ps, _mm512_set1_ps,
        _mm512_setzero_ps, _mm512_storeu_ps,
    };
    let rows_per_tile = V * LANES;
    for chunk_start in (0..o.p).step_by(KC) {
        let chunk = chunk_start..(chunk_start + KC).min(o.p);
        let first = chunk_start == 0 && !o.add;
        for row in (0..o.m).step_by(rows_per_tile) {
            let n = (o.m - row).min(rows_per_tile);
            let masks: [u16; V] = std::array::from_fn(|v| {
                let lanes = n.saturating_sub(v * LANES).min(LANES);
                ((1u32 << lanes) - 1) as u16
            });
            let mut acc: [[__m512; K]; V] = [[_mm512_setzero_ps(); K]; V];
            // SAFETY (pointer arithmetic and accesses below): rows
            // `row..row + n` and the chunk are inside A and C; the masked
            // loads read only those rows; the panel row has K entries.
            let a_rows = unsafe { o.a.add(row) };
            for q in chunk.clone() {
                let a_ptr = unsafe { a_rows.offset(q as isize * o.csa) };
                // The next tile's rows of A share no cache line with these:
                // fetch them while this tile computes (a hint; never faults).
                _mm_prefetch::<_MM_HINT_T0>(a_ptr.wrapping_add(rows_per_tile).cast());
                let a: [__m512; V] = std::array::from_fn(|v| unsafe {
                    _mm512_maskz_loadu_ps(masks[v], a_ptr.wrapping_add(v * LANES))
                });
                let b_row = unsafe { o.b.offset(q as isize * o.rsb) };
                for c in 0..K {
                    let b = _mm512_set1_ps(unsafe { *b_row.add(c) });
                    for (acc_v, &a_v) in acc.iter_mut().zip(&a) {
                        acc_v[c] = _mm512_fmadd_ps(a_v, b, acc_v[c]);
                    }
                }
            }
            for (v, acc_v) in acc.iter().enumerate() {
                let mut sums = [[0.0f32; LANES]; K];
                for (sum, &acc_c) in sums.iter_mut().zip(acc_v) {
                    unsafe { _mm512_storeu_ps(sum.as_mut_ptr(), acc_c) };
                }
                for r in 0..n.saturating_sub(v * LANES).min(LANES) {
                    let c_row = unsafe { o.c.offset((row + v * LANES + r) as isize * o.rsc) };
                    for (c, sum) in sums.iter().enumerate() {
                        let entry = unsafe { &mut *c_row.add(c) };
                        *entry = if first { sum[r] } else { *entry + sum[r] };
                    }
                }
            }
        }
    }
}

/// All rows of C, in tiles of `R` rows (the last rows one at a time), one
/// reduction chunk after the other, so that a chunk of A is reused from
/// cache by every tile.
///
/// # Safety
/// As [`product_avx512`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tiles<const R: usize, const NV: usize>(o: &Operands) {
    let tail_lanes = o.k - (NV - 1) * LANES;
    let tail: u16 = if tail_lanes == LANES {
        u16::MAX
    } else {
        (1u16 << tail_lanes) - 1
    };
    for chunk_start in (0..o.p).step_by(KC) {
        let chunk = chunk_start..(chunk_start + KC).min(o.p);
        let first = chunk_start == 0 && !o.add;
        let mut row = 0;
        while row + R <= o.m {
            // SAFETY: rows `row..row + R` and the chunk are inside A and C.
            unsafe { tile::<R, NV>(o, row, chunk.clone(), first, tail) };
            row += R;
        }
        while row < o.m {
            // SAFETY: as above, one row.
            unsafe { tile::<1, NV>(o, row, chunk.clone(), first, tail) };
            row += 1;
        }
    }
}

/// Rows `row..row + R` of C over one reduction chunk: the chunk's sums
/// start from zero and accumulate in order by FMA; the first chunk stores
/// them, a later chunk adds them to C.
///
/// # Safety
/// As [`product_avx512`], with `row + R <= m` and `chunk` inside `0..p`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn tile<const R: usize, const NV: usize>(
    o: &Operands,
    row: usize,
    chunk: std::ops::Range<usize>,
    first: bool,
    tail: u16,
) {
    use std::arch::x86_64::{
        __m512, _mm512_add_ps, _mm512_fmadd_ps, _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps,
        _mm512_set1_ps, _mm512_setzero_ps,
    };
    let mask = |v: usize| if v + 1 == NV { tail } else { u16::MAX };
    let mut acc: [[__m512; NV]; R] = [[_mm512_setzero_ps(); NV]; R];
    // SAFETY (pointer arithmetic below): every offset is row·stride +
    // column·stride of an entry inside its array, as `Operands::new` and the
    // caller established; masked loads and stores touch only the lanes of
    // the panel's `k` columns.
    let a_tile = unsafe { o.a.offset(row as isize * o.rsa) };
    for q in chunk {
        let b_row = unsafe { o.b.offset(q as isize * o.rsb) };
        let mut panel: [__m512; NV] = [_mm512_setzero_ps(); NV];
        for (v, lane) in panel.iter_mut().enumerate() {
            *lane = unsafe { _mm512_maskz_loadu_ps(mask(v), b_row.add(v * LANES)) };
        }
        let a_col = unsafe { a_tile.offset(q as isize * o.csa) };
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let a = _mm512_set1_ps(unsafe { *a_col.offset(r as isize * o.rsa) });
            for (acc_rv, &b) in acc_r.iter_mut().zip(&panel) {
                *acc_rv = _mm512_fmadd_ps(a, b, *acc_rv);
            }
        }
    }
    for (r, acc_r) in acc.iter().enumerate() {
        let c_row = unsafe { o.c.offset((row + r) as isize * o.rsc) };
        for (v, &sum) in acc_r.iter().enumerate() {
            let ptr = unsafe { c_row.add(v * LANES) };
            let value = if first {
                sum
            } else {
                _mm512_add_ps(unsafe { _mm512_maskz_loadu_ps(mask(v), ptr) }, sum)
            };
            unsafe { _mm512_mask_storeu_ps(ptr, mask(v), value) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, ShapeBuilder, s};

    fn same_bits(a: &Array2<f32>, b: &Array2<f32>) -> bool {
        a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
    }
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random(rows: usize, cols: usize, rng: &mut ChaCha8Rng) -> Array2<f32> {
        Array2::from_shape_fn((rows, cols), |_| {
            // Counts, zeros and wide magnitudes: rounding differences show.
            match rng.random_range(0..4) {
                0 => 0.0,
                1 => rng.random_range(0..50) as f32,
                _ => rng.random::<f32>() * 10f32.powi(rng.random_range(-3..4)),
            }
        })
    }

    #[test]
    fn products_equal_ndarray_bit_for_bit() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        // Reduction lengths below, at and across chunk boundaries; panels of
        // one to four vectors with and without a partial last vector; rows
        // that fill tiles and leave a remainder.
        for &p in &[1, 7, 255, 256, 257, 600, 1100] {
            for &k in &[1, 4, 15, 16, 17, 20, 33, 48, 64] {
                for &m in &[1, 5, 8, 13, 64, 100] {
                    let a = random(m, p, &mut rng);
                    let at = random(p, m, &mut rng); // used transposed
                    let b = random(p, k, &mut rng);
                    for a in [a.view(), at.t()] {
                        let mut want = Array2::from_elem((m, k), f32::NAN);
                        general_mat_mul(1.0, &a, &b, 0.0, &mut want);
                        let mut got = Array2::from_elem((m, k), f32::NAN);
                        product(a, b.view(), got.view_mut());
                        let same = want
                            .iter()
                            .zip(&got)
                            .all(|(w, g)| w.to_bits() == g.to_bits());
                        assert!(same, "m {m}, p {p}, k {k}, strides {:?}", a.strides());
                        // Split at a chunk boundary: stored, then added.
                        if p > KC {
                            let mut split = Array2::from_elem((m, k), f32::NAN);
                            product(
                                a.slice(s![.., ..KC]),
                                b.slice(s![..KC, ..]),
                                split.view_mut(),
                            );
                            product_add(
                                a.slice(s![.., KC..]),
                                b.slice(s![KC.., ..]),
                                split.view_mut(),
                            );
                            assert!(same_bits(&want, &split), "split: m {m}, p {p}, k {k}");
                        }
                        // Added to values already there, as with β = 1.
                        let mut want_add = random(m, k, &mut rng);
                        let mut got_add = want_add.clone();
                        general_mat_mul(1.0, &a, &b, 1.0, &mut want_add);
                        product_add(a, b.view(), got_add.view_mut());
                        assert!(same_bits(&want_add, &got_add), "add: m {m}, p {p}, k {k}");
                    }
                }
            }
        }
    }

    #[test]
    fn other_layouts_take_the_general_product() {
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let a = random(9, 300, &mut rng);
        let b = random(300, 70, &mut rng); // wider than a panel
        let b_f = random(300, 6, &mut rng).t().to_owned().reversed_axes(); // column-major
        let mut want = Array2::zeros((9, 70));
        general_mat_mul(1.0, &a, &b, 0.0, &mut want);
        let mut got = Array2::zeros((9, 70));
        product(a.view(), b.view(), got.view_mut());
        assert_eq!(want, got);
        let mut want = Array2::zeros((9, 6));
        general_mat_mul(1.0, &a, &b_f, 0.0, &mut want);
        let mut got = Array2::zeros((9, 6).f());
        product(a.view(), b_f.view(), got.view_mut());
        assert_eq!(want, got);
    }
}
