//! The two block products of an iteration, `X_b · Hᵀ` (`b × k`) and
//! `X_bᵀ · W_b` (`n × k`), timed on this machine with every backend built
//! in, at the shapes nmflow runs (block heights 256–8192, 1,000–30,000
//! columns, k 4–64), with all cores. Prints a markdown table for
//! docs/benchmarks.md (`cargo xtask bench --gemm` puts it there).
//!
//! - ndarray: `general_mat_mul` (matrixmultiply), split over rows and
//!   column ranges with rayon as the engine splits them;
//! - nmflow: `nmflow_core::gemm::product` as the engine runs it: X·Hᵀ
//!   split the same way, XᵀW by groups of 1,024 rows, each over the column
//!   ranges (the fused dense step);
//! - faer (feature `faer`): `faer::linalg::matmul::matmul`, its own rayon
//!   parallelism;
//! - OpenBLAS (feature `openblas`): `cblas_sgemm` of the system library,
//!   its own threads.
//!
//! Besides speed, every backend's result is compared bit for bit with
//! ndarray's (the rounding of every earlier nmflow release) and with its own
//! result on one thread.

use std::time::Instant;

use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayView2, ArrayViewMut2, Axis};
use rayon::prelude::*;

/// The engine's rows per task of X·Hᵀ and columns per task of XᵀW
/// (`nmflow_core::solver`'s `ROW_CHUNK` and `COL_CHUNK`).
const ROW_CHUNK: usize = 64;
const COL_CHUNK: usize = 256;

/// Block heights × columns measured, each at every k of [`KS`].
const SHAPES: [(usize, usize); 6] = [
    (256, 1_000),
    (8_192, 1_000),
    (1_024, 10_000),
    (4_096, 10_000),
    (256, 30_000),
    (2_048, 30_000),
];
const KS: [usize; 3] = [4, 20, 64];

#[derive(Clone, Copy, PartialEq)]
enum Product {
    /// `X_b · Hᵀ`, `b × k`.
    Xht,
    /// `X_bᵀ · W_b`, `n × k`.
    Xtw,
}

#[derive(Clone, Copy)]
enum Backend {
    Ndarray,
    Nmflow,
    #[cfg(feature = "faer")]
    Faer,
    #[cfg(feature = "openblas")]
    OpenBlas,
}

impl Backend {
    fn all() -> Vec<Self> {
        vec![
            Self::Ndarray,
            Self::Nmflow,
            #[cfg(feature = "faer")]
            Self::Faer,
            #[cfg(feature = "openblas")]
            Self::OpenBlas,
        ]
    }

    fn name(self) -> &'static str {
        match self {
            Self::Ndarray => "ndarray (matrixmultiply)",
            Self::Nmflow => "nmflow",
            #[cfg(feature = "faer")]
            Self::Faer => "faer 0.24",
            #[cfg(feature = "openblas")]
            Self::OpenBlas => "OpenBLAS",
        }
    }

    /// `out = x · panel` (Xht) or `out = xᵀ · panel` (Xtw), on `threads`
    /// threads (0: all).
    fn run(
        self,
        product: Product,
        x: ArrayView2<'_, f32>,
        panel: ArrayView2<'_, f32>,
        out: ArrayViewMut2<'_, f32>,
        threads: usize,
    ) {
        match self {
            Self::Ndarray => split(product, x, panel, out, |a, b, mut c| {
                general_mat_mul(1.0, &a, &b, 0.0, &mut c);
            }),
            Self::Nmflow if product == Product::Xtw => fused_xtw(x, panel, out),
            Self::Nmflow => split(product, x, panel, out, nmflow_core::gemm::product),
            #[cfg(feature = "faer")]
            Self::Faer => faer_product(product, x, panel, out, threads),
            #[cfg(feature = "openblas")]
            Self::OpenBlas => openblas::product(product, x, panel, out, threads),
        }
        let _ = threads;
    }
}

/// The engine's split: X·Hᵀ over fixed row chunks, XᵀW over fixed column
/// ranges, each task one product.
fn split(
    product: Product,
    x: ArrayView2<'_, f32>,
    panel: ArrayView2<'_, f32>,
    mut out: ArrayViewMut2<'_, f32>,
    gemm: impl Fn(ArrayView2<'_, f32>, ArrayView2<'_, f32>, ArrayViewMut2<'_, f32>) + Sync,
) {
    match product {
        Product::Xht => x
            .axis_chunks_iter(Axis(0), ROW_CHUNK)
            .into_par_iter()
            .zip(out.axis_chunks_iter_mut(Axis(0), ROW_CHUNK))
            .for_each(|(x_c, out_c)| gemm(x_c, panel, out_c)),
        Product::Xtw => x
            .axis_chunks_iter(Axis(1), COL_CHUNK)
            .into_par_iter()
            .zip(out.axis_chunks_iter_mut(Axis(0), COL_CHUNK))
            .for_each(|(x_c, out_c)| gemm(x_c.t(), panel, out_c)),
    }
}

/// XᵀW as the engine's fused dense step computes it: groups of 1,024 rows
/// in order (the engine updates a group's W rows just before, while they
/// are in cache), each group's product over fixed 256-column ranges in
/// parallel, stored by the first group and added to by the next ones.
fn fused_xtw(x: ArrayView2<'_, f32>, w: ArrayView2<'_, f32>, mut out: ArrayViewMut2<'_, f32>) {
    const GROUP_ROWS: usize = 1024;
    let b = x.nrows();
    for start in (0..b).step_by(GROUP_ROWS) {
        let rows = start..(start + GROUP_ROWS).min(b);
        let (x_g, w_g) = (
            x.slice(ndarray::s![rows.clone(), ..]),
            w.slice(ndarray::s![rows, ..]),
        );
        x_g.axis_chunks_iter(Axis(1), COL_CHUNK)
            .into_par_iter()
            .zip(out.axis_chunks_iter_mut(Axis(0), COL_CHUNK))
            .for_each(|(x_c, acc)| {
                if start > 0 {
                    nmflow_core::gemm::product_add(x_c.t(), w_g, acc);
                } else {
                    nmflow_core::gemm::product(x_c.t(), w_g, acc);
                }
            });
    }
}

#[cfg(feature = "faer")]
fn faer_product(
    product: Product,
    x: ArrayView2<'_, f32>,
    panel: ArrayView2<'_, f32>,
    mut out: ArrayViewMut2<'_, f32>,
    threads: usize,
) {
    use faer::linalg::matmul::matmul;
    use faer::{Accum, MatMut, MatRef, Par};
    let (rows, cols) = x.dim();
    let x = MatRef::from_row_major_slice(x.as_slice().expect("standard layout"), rows, cols);
    let x = if product == Product::Xht {
        x
    } else {
        x.transpose()
    };
    let (p_rows, p_cols) = panel.dim();
    let panel =
        MatRef::from_row_major_slice(panel.as_slice().expect("standard layout"), p_rows, p_cols);
    let (o_rows, o_cols) = out.dim();
    let out = MatMut::from_row_major_slice_mut(
        out.as_slice_mut().expect("standard layout"),
        o_rows,
        o_cols,
    );
    let par = if threads == 1 {
        Par::Seq
    } else {
        Par::rayon(threads)
    };
    matmul(out, Accum::Replace, x, panel, 1.0f32, par);
}

#[cfg(feature = "openblas")]
mod openblas {
    use super::Product;
    use ndarray::{ArrayView2, ArrayViewMut2};
    use std::os::raw::c_int;

    const ROW_MAJOR: c_int = 101;
    const NO_TRANS: c_int = 111;
    const TRANS: c_int = 112;

    #[link(name = "openblas")]
    unsafe extern "C" {
        fn cblas_sgemm(
            order: c_int,
            trans_a: c_int,
            trans_b: c_int,
            m: c_int,
            n: c_int,
            k: c_int,
            alpha: f32,
            a: *const f32,
            lda: c_int,
            b: *const f32,
            ldb: c_int,
            beta: f32,
            c: *mut f32,
            ldc: c_int,
        );
        fn openblas_set_num_threads(n: c_int);
        fn openblas_get_num_procs() -> c_int;
    }

    fn int(v: usize) -> c_int {
        c_int::try_from(v).expect("dimension fits a C int")
    }

    pub(crate) fn product(
        product: Product,
        x: ArrayView2<'_, f32>,
        panel: ArrayView2<'_, f32>,
        mut out: ArrayViewMut2<'_, f32>,
        threads: usize,
    ) {
        let (rows, cols) = x.dim();
        let k = panel.ncols();
        let (x, panel) = (
            x.as_slice().expect("standard layout"),
            panel.as_slice().expect("standard layout"),
        );
        let out = out.as_slice_mut().expect("standard layout");
        // SAFETY: the slices hold the row-major matrices the dimensions and
        // leading dimensions describe.
        unsafe {
            openblas_set_num_threads(if threads == 0 {
                openblas_get_num_procs()
            } else {
                int(threads)
            });
            match product {
                Product::Xht => cblas_sgemm(
                    ROW_MAJOR,
                    NO_TRANS,
                    NO_TRANS,
                    int(rows),
                    int(k),
                    int(cols),
                    1.0,
                    x.as_ptr(),
                    int(cols),
                    panel.as_ptr(),
                    int(k),
                    0.0,
                    out.as_mut_ptr(),
                    int(k),
                ),
                Product::Xtw => cblas_sgemm(
                    ROW_MAJOR,
                    TRANS,
                    NO_TRANS,
                    int(cols),
                    int(k),
                    int(rows),
                    1.0,
                    x.as_ptr(),
                    int(cols),
                    panel.as_ptr(),
                    int(k),
                    0.0,
                    out.as_mut_ptr(),
                    int(k),
                ),
            }
        }
    }
}

/// Uniform values in [0, 1) from a fixed integer hash (fast, and the same
/// on every run).
fn filled(rows: usize, cols: usize, salt: u64) -> Array2<f32> {
    let mut a = Array2::zeros((rows, cols));
    a.as_slice_mut()
        .expect("standard layout")
        .par_iter_mut()
        .enumerate()
        .for_each(|(i, v)| {
            let mut z = (i as u64)
                .wrapping_add(salt)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            *v = ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32;
        });
    a
}

/// Median seconds of one call, over repeats filling about half a second
/// (at least 3, after one warm-up call).
fn time(mut call: impl FnMut()) -> f64 {
    call();
    let mut seconds = Vec::new();
    let began = Instant::now();
    while seconds.len() < 3 || (began.elapsed().as_secs_f64() < 0.5 && seconds.len() < 50) {
        let t = Instant::now();
        call();
        seconds.push(t.elapsed().as_secs_f64());
    }
    seconds.sort_by(f64::total_cmp);
    seconds[seconds.len() / 2]
}

/// Single-precision peak of one core in GFLOP/s (best of three runs):
/// independent FMA chains on the widest vectors the CPU has (AVX-512, else
/// AVX2). Measured on one core because two threads on this kind of virtual
/// machine sometimes share a physical core for a while; the peak of all
/// cores is this times their number.
fn peak_gflops_per_core() -> f64 {
    const ROUNDS: usize = 20_000_000;
    (0..3)
        .map(|t| {
            let began = Instant::now();
            let (flops, check) = fma_chains(ROUNDS, t as f32);
            std::hint::black_box(check);
            flops / began.elapsed().as_secs_f64() / 1e9
        })
        .fold(0.0, f64::max)
}

/// Runs independent FMA chains for `rounds` rounds; returns the flops
/// done and a value that depends on every chain (so none is optimized out).
fn fma_chains(rounds: usize, seed: f32) -> (f64, f32) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F.
        return unsafe { fma_chains_avx512(rounds, seed) };
    }
    let mut acc = [seed; 12 * 8];
    for _ in 0..rounds {
        for a in &mut acc {
            *a = a.mul_add(0.999_999, 1e-7);
        }
    }
    ((rounds * acc.len() * 2) as f64, acc.iter().sum())
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn fma_chains_avx512(rounds: usize, seed: f32) -> (f64, f32) {
    use std::arch::x86_64::{_mm512_fmadd_ps, _mm512_reduce_add_ps, _mm512_set1_ps};
    const CHAINS: usize = 12;
    let mul = _mm512_set1_ps(0.999_999);
    let add = _mm512_set1_ps(1e-7);
    let mut acc = [_mm512_set1_ps(seed); CHAINS];
    for _ in 0..rounds {
        for a in acc.iter_mut() {
            *a = _mm512_fmadd_ps(*a, mul, add);
        }
    }
    let sum: f32 = acc.iter().map(|&a| _mm512_reduce_add_ps(a)).sum();
    ((rounds * CHAINS * 16 * 2) as f64, sum)
}

fn same_bits(a: &Array2<f32>, b: &Array2<f32>) -> bool {
    a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

fn main() {
    let cores = rayon::current_num_threads();
    let per_core = peak_gflops_per_core();
    let peak = per_core * cores as f64;
    let one_thread = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a one-thread pool");
    let backends = Backend::all();
    println!(
        "Single-precision FMA peak, measured on one core: {per_core:.0} GFLOP/s; \
         of the {cores} cores: {peak:.0} GFLOP/s.\n"
    );
    print!("| product | b × n × k |");
    for backend in &backends {
        print!(" {} GFLOP/s |", backend.name());
    }
    println!(
        " nmflow % of peak | fastest | same bits as ndarray | same bits on 1 and all threads |"
    );
    println!("|---|---|{}---|---|---|---|", "---|".repeat(backends.len()));
    for &(b, n) in &SHAPES {
        let x = filled(b, n, 1);
        for &k in &KS {
            for product in [Product::Xht, Product::Xtw] {
                let panel = match product {
                    Product::Xht => filled(n, k, 2),
                    Product::Xtw => filled(b, k, 3),
                };
                let out_rows = if product == Product::Xht { b } else { n };
                let flops = 2.0 * (b * n * k) as f64;
                let mut want = Array2::zeros((out_rows, k));
                Backend::Ndarray.run(product, x.view(), panel.view(), want.view_mut(), 0);
                let mut row = format!(
                    "| {} | {b} × {n} × {k} |",
                    if product == Product::Xht {
                        "X_b·Hᵀ"
                    } else {
                        "X_bᵀ·W_b"
                    }
                );
                let (mut best, mut best_name, mut nmflow_rate) = (0.0, "", 0.0);
                let (mut same_as_ndarray, mut same_across) = (Vec::new(), Vec::new());
                for &backend in &backends {
                    let mut out = Array2::zeros((out_rows, k));
                    let seconds =
                        time(|| backend.run(product, x.view(), panel.view(), out.view_mut(), 0));
                    let mut single = Array2::zeros((out_rows, k));
                    one_thread.install(|| {
                        backend.run(product, x.view(), panel.view(), single.view_mut(), 1)
                    });
                    let rate = flops / seconds / 1e9;
                    row.push_str(&format!(" {rate:.1} |"));
                    if rate > best {
                        (best, best_name) = (rate, backend.name());
                    }
                    if matches!(backend, Backend::Nmflow) {
                        nmflow_rate = rate;
                    }
                    if same_bits(&out, &want) {
                        same_as_ndarray.push(backend.name());
                    }
                    if same_bits(&out, &single) {
                        same_across.push(backend.name());
                    }
                }
                println!(
                    "{row} {:.0} % | {best_name} | {} | {} |",
                    100.0 * nmflow_rate / peak,
                    same_as_ndarray.join(", "),
                    same_across.join(", ")
                );
            }
        }
    }
}
