//! The update rules other than the seed's (HALS, inner repeats, penalties)
//! against the in-memory reference, under every block size and thread
//! count.

use ndarray::Array2;
use nmflow_core::init::{random_h, random_w};
use nmflow_core::{
    FitReport, InMemoryCsrSource, InMemorySource, Inner, NmfParams, Regularization, RowSource,
    Scale, Solver, fit,
};
use nmflow_testkit::{
    ReferenceRule, ReferenceSettings, SeedGenerator, assert_matches_reference, reference_rules,
};

const SEED: u64 = 20_261_202;

fn seed_matrix(n_rows: usize, n_cols: usize, components: usize) -> Array2<f32> {
    SeedGenerator::new(SEED, components, n_cols)
        .matrix(n_rows)
        .0
}

/// Count-like sparse data: the seed data rounded, two entries in three zero.
fn sparse_counts(n_rows: usize, n_cols: usize) -> Array2<f32> {
    let x = seed_matrix(n_rows, n_cols, 3);
    Array2::from_shape_fn((n_rows, n_cols), |(i, j)| {
        if (i * 7 + j * 13) % 3 == 0 {
            (x[(i, j)] * 6.0).round()
        } else {
            0.0
        }
    })
}

fn run_source(source: &mut (dyn RowSource + Send), params: NmfParams, threads: usize) -> FitReport {
    let valid = params
        .check(source.n_rows(), source.n_cols(), None)
        .expect("valid parameters");
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool");
    pool.install(|| fit(source, &valid, &mut |_| {}))
        .expect("fit")
}

fn run(x: &Array2<f32>, params: NmfParams, threads: usize, sparse: bool) -> FitReport {
    if sparse {
        run_source(
            &mut InMemoryCsrSource::from_dense(x.view()),
            params,
            threads,
        )
    } else {
        run_source(&mut InMemorySource::new(x.clone()), params, threads)
    }
}

fn params(solver: Solver, inner: Inner, k: usize, n_iter: usize, block_rows: usize) -> NmfParams {
    NmfParams {
        k,
        max_iter: n_iter,
        tol: 0.0,
        seed: SEED,
        block_rows: Some(block_rows),
        solver,
        inner,
        ..NmfParams::default()
    }
}

/// The engine's fit with `p` against the reference with the same rule,
/// repeats and penalties, from the engine's own random start.
fn assert_follows_reference(x: &Array2<f32>, p: NmfParams, threads: usize, sparse: bool) {
    let (n_rows, n_cols) = x.dim();
    let repeats = match p.inner {
        Inner::Fixed(n) => n,
        Inner::Auto => panic!("the reference repeats a fixed number of times"),
    };
    let settings = ReferenceSettings {
        rule: match p.solver {
            Solver::Mu => ReferenceRule::Mu,
            Solver::Hals => ReferenceRule::Hals,
        },
        repeats,
        alpha_w: p.regularization.alpha_w,
        alpha_h: p.regularization.alpha_h,
        l1_ratio: p.regularization.l1_ratio,
        scale_columns: p.scale == Scale::ColStd,
    };
    let w0 = random_w(SEED, n_rows, p.k);
    let h0 = random_h(SEED, p.k, n_cols);
    let reference = reference_rules(x, &w0, &h0, settings, p.max_iter);
    let label = format!(
        "{:?} {:?} threads {threads} sparse {sparse}",
        p.solver, p.inner
    );
    let report = run(x, p, threads, sparse);
    assert_matches_reference(&reference, &report.w, &report.h, &report.rel_error, &label);
}

#[test]
fn hals_matches_the_reference_for_every_block_size_thread_count_and_repeat_count() {
    let x = seed_matrix(131, 29, 4);
    for block_rows in [1, 7, 97, 131] {
        for threads in [1, 3] {
            for repeats in [1, 3] {
                let p = params(Solver::Hals, Inner::Fixed(repeats), 4, 12, block_rows);
                assert_follows_reference(&x, p, threads, false);
            }
        }
    }
    let counts = sparse_counts(150, 40);
    for block_rows in [13, 150] {
        let p = params(Solver::Hals, Inner::Fixed(2), 3, 10, block_rows);
        assert_follows_reference(&counts, p, 2, true);
    }
}

#[test]
fn repeated_multiplicative_updates_match_the_reference() {
    let x = seed_matrix(90, 25, 3);
    let p = params(Solver::Mu, Inner::Fixed(4), 3, 8, 31);
    assert_follows_reference(&x, p, 2, false);
}

#[test]
fn penalties_match_the_reference_for_both_rules_and_every_l1_ratio() {
    let x = seed_matrix(80, 24, 3);
    for solver in [Solver::Mu, Solver::Hals] {
        for l1_ratio in [0.0, 0.5, 1.0] {
            let p = NmfParams {
                regularization: Regularization {
                    alpha_w: 0.002,
                    alpha_h: 0.005,
                    l1_ratio,
                },
                scale: Scale::None,
                ..params(solver, Inner::Fixed(1), 3, 10, 17)
            };
            assert_follows_reference(&x, p, 2, false);
        }
    }
}

#[test]
fn penalties_shrink_the_factors() {
    let x = seed_matrix(120, 30, 3);
    let plain = run(
        &x,
        params(Solver::Hals, Inner::Fixed(1), 3, 30, 40),
        2,
        false,
    );
    let p = NmfParams {
        regularization: Regularization {
            alpha_w: 0.05,
            alpha_h: 0.05,
            l1_ratio: 1.0,
        },
        ..params(Solver::Hals, Inner::Fixed(1), 3, 30, 40)
    };
    let sparse = run(&x, p, 2, false);
    let zeros = |a: &Array2<f32>| a.iter().filter(|&&v| v == 0.0).count();
    assert!(
        zeros(&sparse.h) > zeros(&plain.h),
        "L1 makes H sparser: {} vs {} zeros",
        zeros(&sparse.h),
        zeros(&plain.h)
    );
    assert!(sparse.final_rel_error() > plain.final_rel_error());
}

#[test]
fn automatic_repeats_are_bit_identical_across_thread_counts_and_close_across_block_heights() {
    let x = seed_matrix(400, 70, 5);
    for solver in [Solver::Hals, Solver::Mu] {
        let one = run(&x, params(solver, Inner::Auto, 5, 8, 64), 1, false);
        for threads in [2, 4] {
            let many = run(&x, params(solver, Inner::Auto, 5, 8, 64), threads, false);
            assert_eq!(
                one.w, many.w,
                "{solver:?}: W differs with {threads} threads"
            );
            assert_eq!(
                one.h, many.h,
                "{solver:?}: H differs with {threads} threads"
            );
            assert_eq!(one.rel_error, many.rel_error);
        }
        for block_rows in [1, 33, 400] {
            let other = run(&x, params(solver, Inner::Auto, 5, 8, block_rows), 2, false);
            let scale = one.w.iter().fold(0.0f32, |m, &v| m.max(v));
            let dw = one
                .w
                .iter()
                .zip(&other.w)
                .map(|(a, b)| (a - b).abs() / scale)
                .fold(0.0, f32::max);
            assert!(dw < 1e-3, "{solver:?}, blocks of {block_rows}: dW {dw:e}");
            let de = (one.final_rel_error() - other.final_rel_error()).abs();
            assert!(
                de < 1e-5,
                "{solver:?}, blocks of {block_rows}: error {de:e}"
            );
        }
    }
}

#[test]
fn hals_keeps_factors_non_negative_with_a_non_increasing_error() {
    for sparse in [false, true] {
        let x = if sparse {
            sparse_counts(300, 50)
        } else {
            seed_matrix(300, 50, 5)
        };
        for inner in [Inner::Fixed(1), Inner::Auto] {
            let hals = run(&x, params(Solver::Hals, inner, 5, 60, 64), 2, sparse);
            assert!(hals.w.iter().all(|&v| v >= 0.0 && v.is_finite()));
            assert!(hals.h.iter().all(|&v| v >= 0.0 && v.is_finite()));
            for pair in hals.rel_error.windows(2) {
                assert!(pair[1] <= pair[0] * (1.0 + 1e-6), "error rose: {pair:?}");
            }
            assert!(hals.final_rel_error() < hals.rel_error[0]);
        }
    }
}

#[test]
fn the_default_rule_is_the_seed_rule() {
    let p = NmfParams::default();
    assert_eq!((p.solver, p.inner), (Solver::Mu, Inner::Fixed(1)));
    assert!(p.regularization.is_none());
    assert_eq!(Solver::Mu.default_inner(), Inner::Fixed(1));
}
