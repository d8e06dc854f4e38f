//! Criterion micro-benchmarks of the kernels of one iteration, on a block
//! of the seed data, one thread. Each benchmark returns a checksum of its
//! output so that no work can be optimised away, and declares its
//! floating-point operations as its throughput: criterion's "elem/s" are
//! flop/s (docs/benchmarks.md sets them against the core's peak).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ndarray::Array2;
use nmflow_core::init::{random_h, random_w};
use nmflow_core::kernels;
use nmflow_testkit::SeedGenerator;

const ROWS: usize = 1024;
const COLS: usize = 1000;

fn dense_kernels(c: &mut Criterion) {
    let x = SeedGenerator::new(1, 5, COLS).matrix(ROWS).0;
    for k in [4usize, 20] {
        let w = random_w(2, ROWS, k);
        let h = random_h(3, k, COLS);
        let hst = h.t().as_standard_layout().into_owned();
        let hht = h.dot(&h.t());
        let mut group = c.benchmark_group(format!("dense {ROWS}x{COLS} k={k}"));
        group.throughput(flops(2 * ROWS * COLS * k));
        group.bench_function("xht", |b| {
            let mut xht = Array2::<f32>::zeros((ROWS, k));
            b.iter(|| {
                kernels::xht_dense(x.view(), hst.view(), xht.view_mut());
                black_box(xht.sum())
            })
        });
        // W·HHᵀ and WᵀW: 2·k² each per row.
        group.throughput(flops(4 * ROWS * k * k));
        group.bench_function("update_w_rows", |b| {
            let xht = x.dot(&hst);
            let mut wtw = Array2::<f64>::zeros((k, k));
            let mut den = Array2::<f32>::zeros((ROWS, k));
            let mut gram = Array2::<f32>::zeros((k, k));
            b.iter(|| {
                let mut w = w.clone();
                black_box(kernels::update_w_rows(
                    w.view_mut(),
                    xht.view(),
                    hht.view(),
                    wtw.view_mut(),
                    den.view_mut(),
                    gram.view_mut(),
                ))
            })
        });
        group.throughput(flops(2 * ROWS * COLS * k));
        group.bench_function("accumulate_xtw", |b| {
            let mut scratch = Array2::<f32>::zeros((COLS, k));
            let mut acc = Array2::<f64>::zeros((COLS, k));
            b.iter(|| {
                kernels::accumulate_xtw_dense(
                    w.view(),
                    x.view(),
                    scratch.view_mut(),
                    acc.view_mut(),
                );
                black_box(acc[(0, 0)])
            })
        });
        let csr = nmflow_core::InMemoryCsrSource::from_dense(
            x.mapv(|v| if v > 0.9 { v } else { 0.0 }).view(),
        );
        let mut csr = csr;
        let block = nmflow_core::RowSource::block(&mut csr, 0..ROWS).expect("block");
        let nmflow_core::RowBlock::Csr(block) = block else {
            unreachable!("a CSR source gives CSR blocks")
        };
        group.throughput(flops(2 * block.nnz() * k));
        group.bench_function("xht_csr", |b| {
            let mut xht = Array2::<f32>::zeros((ROWS, k));
            b.iter(|| {
                kernels::xht_csr(&block, hst.view(), xht.view_mut());
                black_box(xht.sum())
            })
        });
        group.bench_function("accumulate_xtw_csr", |b| {
            let mut part = Array2::<f32>::zeros((COLS, k));
            b.iter(|| {
                kernels::accumulate_xtw_csr(&block, w.view(), part.view_mut());
                black_box(part[(0, 0)])
            })
        });
        // The same product from the block's column copy, as the engine
        // runs it on cached blocks (eight row parts, into the f64 sums).
        let order = nmflow_core::ColumnOrder::of(&block).expect("a valid block");
        let values = order.values(block.data);
        let columns = nmflow_core::CscBlock {
            col_ptr: &order.col_ptr,
            rows: &order.rows,
            data: &values,
        };
        let part_ends: Vec<usize> = (1..=8).map(|p| p * ROWS / 8).collect();
        group.bench_function("accumulate_xtw_csc", |b| {
            let mut acc = Array2::<f64>::zeros((COLS, k));
            b.iter(|| {
                kernels::accumulate_xtw_csc(
                    &columns,
                    w.view(),
                    &part_ends,
                    0..COLS,
                    acc.view_mut(),
                );
                black_box(acc[(0, 0)])
            })
        });
        group.finish();
    }
}

/// Flops as a criterion throughput.
fn flops(count: usize) -> Throughput {
    Throughput::Elements(count as u64)
}

/// The row kernels of HALS and of repeated multiplicative updates (one
/// sweep and ten), and the Kullback–Leibler ratio at the stored entries of
/// a sparse block.
fn row_kernels(c: &mut Criterion) {
    let x = SeedGenerator::new(1, 5, COLS).matrix(ROWS).0;
    let k = 20;
    let h = random_h(3, k, COLS);
    let hst = h.t().as_standard_layout().into_owned();
    let hht = h.dot(&h.t());
    let xht = x.dot(&hst);
    let w0 = random_w(2, ROWS, k);
    let mut group = c.benchmark_group(format!("rows {ROWS} k={k}"));
    for (update, name) in [
        (kernels::RowUpdate::Hals, "hals"),
        (kernels::RowUpdate::Mu, "mu"),
    ] {
        for sweeps in [1usize, 10] {
            // A sweep: per row and component, the k-term gradient or
            // denominator (2·k flops).
            group.throughput(flops(2 * ROWS * k * k * sweeps));
            group.bench_function(format!("{name} x{sweeps}"), |b| {
                let mut scratch = vec![0.0f32; k];
                b.iter(|| {
                    let mut w = w0.clone();
                    kernels::update_rows(
                        update,
                        w.view_mut(),
                        xht.view(),
                        hht.view(),
                        kernels::Penalty::default(),
                        kernels::Sweeps::Fixed(sweeps),
                        &mut scratch,
                    );
                    black_box(w[(0, 0)])
                })
            });
        }
    }
    // A block of counts at about 6 % stored.
    let counts = x.mapv(|v| if v > 2.2 { v.round() } else { 0.0 });
    let mut source = nmflow_core::InMemoryCsrSource::from_dense(counts.view());
    let block = nmflow_core::RowSource::block(&mut source, 0..ROWS).expect("block");
    let nmflow_core::RowBlock::Csr(csr) = block else {
        panic!("a CSR source gives CSR blocks")
    };
    let inv_scale = vec![1.0f32; COLS];
    // The k-term (WH)_ij at every stored entry.
    group.throughput(flops(2 * csr.nnz() * k));
    group.bench_function(format!("kl ratio csr ({} stored)", csr.nnz()), |b| {
        let mut ratio = vec![0.0f32; csr.nnz()];
        b.iter(|| {
            black_box(kernels::kl_ratio_csr(
                &csr,
                w0.view(),
                hst.view(),
                &inv_scale,
                &mut ratio,
            ))
        })
    });
    group.finish();
}

/// The principal components of the row sample `fit` keeps for its figures
/// (the default 2,000 rows, dense, 1,000 columns): the whole subspace
/// iteration until it settles (7 steps on these rows), each step a product
/// with the sample and one with its transpose (5 columns each, 2·5 flops
/// per value each); its throughput counts one step.
fn sample_pca(c: &mut Criterion) {
    const SAMPLE: usize = 2000;
    let x = SeedGenerator::new(1, 5, COLS).matrix(SAMPLE).0;
    let mut sample = nmflow_core::RowSample::new((0..SAMPLE).collect(), COLS);
    sample.collect(0..SAMPLE, &nmflow_core::RowBlock::Dense(x.view()));
    let mut group = c.benchmark_group(format!("sample {SAMPLE}x{COLS}"));
    group.throughput(flops(2 * 2 * SAMPLE * COLS * 5));
    group.bench_function("pca", |b| {
        b.iter(|| black_box(sample.pca(2, 0).explained_variance_ratio[0]))
    });
    group.finish();
}

criterion_group!(benches, dense_kernels, row_kernels, sample_pca);
criterion_main!(benches);
