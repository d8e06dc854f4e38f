//! The Kullback–Leibler loss against the in-memory reference, under every
//! block size, thread count and storage, and its guards.

use ndarray::Array2;
use nmflow_core::init::{random_h, random_w};
use nmflow_core::{
    FitError, FitReport, InMemoryCsrSource, InMemorySource, Inner, Loss, NmfParams, RowSource,
    Scale, Solver, fit,
};
use nmflow_testkit::{SeedGenerator, assert_matches_reference, reference_kl};

const SEED: u64 = 20_261_204;

/// Counts: the seed data rounded, most entries zero.
fn counts(n_rows: usize, n_cols: usize) -> Array2<f32> {
    let x = SeedGenerator::new(SEED, 3, n_cols).matrix(n_rows).0;
    Array2::from_shape_fn((n_rows, n_cols), |(i, j)| {
        if (i * 5 + j * 11) % 3 == 0 {
            (x[(i, j)] * 5.0).round()
        } else {
            0.0
        }
    })
}

fn params(k: usize, n_iter: usize, block_rows: usize, scale: Scale) -> NmfParams {
    NmfParams {
        k,
        max_iter: n_iter,
        tol: 0.0,
        seed: SEED,
        scale,
        block_rows: Some(block_rows),
        loss: Loss::KullbackLeibler,
        ..NmfParams::default()
    }
}

fn run(x: &Array2<f32>, p: NmfParams, threads: usize, sparse: bool) -> FitReport {
    let mut dense;
    let mut csr;
    let source: &mut (dyn RowSource + Send) = if sparse {
        csr = InMemoryCsrSource::from_dense(x.view());
        &mut csr
    } else {
        dense = InMemorySource::new(x.clone());
        &mut dense
    };
    let valid = p.check(x.nrows(), x.ncols(), None).expect("valid");
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("pool")
        .install(|| fit(source, &valid, &mut |_| {}))
        .expect("fit")
}

#[test]
fn kl_matches_the_reference_for_every_block_size_thread_count_and_storage() {
    let x = counts(97, 23);
    let (k, n_iter) = (3, 15);
    for scale in [Scale::None, Scale::ColStd] {
        let w0 = random_w(SEED, x.nrows(), k);
        let h0 = random_h(SEED, k, x.ncols());
        let reference = reference_kl(&x, &w0, &h0, scale == Scale::ColStd, n_iter);
        for (block_rows, threads, sparse) in [
            (97, 1, false),
            (7, 2, false),
            (1, 3, true),
            (64, 2, true),
            (33, 1, true),
        ] {
            let label =
                format!("{scale:?}, blocks of {block_rows}, {threads} threads, sparse {sparse}");
            let report = run(&x, params(k, n_iter, block_rows, scale), threads, sparse);
            assert_matches_reference(&reference, &report.w, &report.h, &report.rel_error, &label);
        }
    }
}

#[test]
fn kl_is_bit_identical_across_thread_counts_and_never_rises() {
    let x = counts(300, 40);
    for sparse in [false, true] {
        let one = run(&x, params(4, 40, 64, Scale::None), 1, sparse);
        let many = run(&x, params(4, 40, 64, Scale::None), 3, sparse);
        assert_eq!(one.w, many.w);
        assert_eq!(one.h, many.h);
        assert_eq!(one.rel_error, many.rel_error);
        for pair in one.rel_error.windows(2) {
            assert!(
                pair[1] <= pair[0] * (1.0 + 1e-6),
                "the divergence rose: {pair:?}"
            );
        }
        assert!(one.final_rel_error() < one.init_rel_error);
        assert!(
            one.w
                .iter()
                .chain(one.h.iter())
                .all(|v| v.is_finite() && *v >= 0.0)
        );
    }
}

#[test]
fn kl_needs_plain_multiplicative_updates() {
    let p = NmfParams {
        solver: Solver::Hals,
        ..params(2, 5, 10, Scale::None)
    };
    assert!(matches!(
        p.check(10, 5, None),
        Err(FitError::LossNeedsMu { .. })
    ));
    let p = NmfParams {
        inner: Inner::Auto,
        ..params(2, 5, 10, Scale::None)
    };
    assert!(matches!(
        p.check(10, 5, None),
        Err(FitError::LossNeedsPlainUpdates)
    ));
}
