//! Criterion micro-benchmarks of the dense kernels of one iteration, on a
//! block of the seed data. Each benchmark returns a checksum of its output
//! so that no work can be optimised away.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
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
        let hst = h.t().to_owned();
        let hht = h.dot(&h.t());
        let mut group = c.benchmark_group(format!("dense {ROWS}x{COLS} k={k}"));
        group.bench_function("xht", |b| {
            let mut xht = Array2::<f32>::zeros((ROWS, k));
            b.iter(|| {
                kernels::xht_dense(x.view(), hst.view(), xht.view_mut());
                black_box(xht.sum())
            })
        });
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
        group.finish();
    }
}

criterion_group!(benches, dense_kernels);
criterion_main!(benches);
