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
            let mut den = vec![0.0f32; k];
            b.iter(|| {
                let mut w = w.clone();
                black_box(kernels::update_w_rows(
                    w.view_mut(),
                    xht.view(),
                    hht.view(),
                    wtw.view_mut(),
                    &mut den,
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
        group.finish();
    }
}

criterion_group!(benches, dense_kernels);
criterion_main!(benches);
