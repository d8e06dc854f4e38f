//! The streaming engine against the in-memory reference solver, under every
//! block size and thread count.

use ndarray::Array2;
use nmflow_core::init::{random_h, random_w};
use nmflow_core::{
    FitError, FitReport, InMemoryCsrSource, InMemorySource, Init, NmfParams, Normalize, RowSource,
    Scale, fit,
};
use nmflow_testkit::{SeedGenerator, max_rel_diff, reference_fit};

const SEED: u64 = 20_261_124;

fn seed_matrix(n_rows: usize, n_cols: usize, components: usize) -> Array2<f32> {
    SeedGenerator::new(SEED, components, n_cols)
        .matrix(n_rows)
        .0
}

fn run(x: &Array2<f32>, params: NmfParams, threads: usize) -> Result<FitReport, FitError> {
    run_source(&mut InMemorySource::new(x.clone()), params, threads)
}

fn run_sparse(x: &Array2<f32>, params: NmfParams, threads: usize) -> Result<FitReport, FitError> {
    run_source(
        &mut InMemoryCsrSource::from_dense(x.view()),
        params,
        threads,
    )
}

/// Count-like sparse data: the seed data, rounded, with most entries zero.
fn sparse_counts(n_rows: usize, n_cols: usize) -> Array2<f32> {
    let x = seed_matrix(n_rows, n_cols, 3);
    Array2::from_shape_fn((n_rows, n_cols), |(i, j)| {
        if (i * 7 + j * 13) % 5 == 0 {
            (x[(i, j)] * 6.0).round()
        } else {
            0.0
        }
    })
}

fn run_source(
    source: &mut (dyn RowSource + Send),
    params: NmfParams,
    threads: usize,
) -> Result<FitReport, FitError> {
    let valid = params.check(source.n_rows(), source.n_cols(), None)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool");
    pool.install(|| fit(source, &valid, &mut |_| {}))
}

fn params(k: usize, max_iter: usize, block_rows: Option<usize>) -> NmfParams {
    NmfParams {
        k,
        max_iter,
        tol: 0.0,
        seed: SEED,
        normalize: Normalize::None,
        scale: Scale::ColStd,
        block_rows,
        init: Init::Random,
        ..NmfParams::default()
    }
}

#[test]
fn chunked_engine_matches_reference_for_every_block_size_and_thread_count() {
    let (n_rows, n_cols, k, n_iter) = (131, 29, 4, 12);
    let x = seed_matrix(n_rows, n_cols, 4);
    let w0 = random_w(SEED, n_rows, k);
    let h0 = random_h(SEED, k, n_cols);
    let reference = reference_fit(&x, &w0, &h0, true, n_iter);
    // 1 row, a prime, more than one row chunk, exactly all rows, more than all rows.
    for block_rows in [1, 7, 97, 131, 500] {
        for threads in [1, 2, 3] {
            let report = run(&x, params(k, n_iter, Some(block_rows)), threads).expect("fit");
            let dw = max_rel_diff(&report.w, &reference.w);
            let dh = max_rel_diff(&report.h, &reference.h);
            assert!(
                dw < 1e-3 && dh < 1e-3,
                "block_rows {block_rows}, threads {threads}: dW {dw:e} dH {dh:e}"
            );
            assert_eq!(report.n_iter(), n_iter);
            for (it, (got, want)) in report
                .rel_error
                .iter()
                .zip(&reference.rel_error)
                .enumerate()
            {
                assert!(
                    (got - want).abs() < 1e-4,
                    "block_rows {block_rows}, threads {threads}, iteration {}: {got} vs {want}",
                    it + 1
                );
            }
        }
    }
}

#[test]
fn unscaled_fit_matches_reference() {
    let (n_rows, n_cols, k, n_iter) = (64, 20, 3, 10);
    let x = seed_matrix(n_rows, n_cols, 3);
    let w0 = random_w(SEED, n_rows, k);
    let h0 = random_h(SEED, k, n_cols);
    let reference = reference_fit(&x, &w0, &h0, false, n_iter);
    let p = NmfParams {
        scale: Scale::None,
        ..params(k, n_iter, Some(10))
    };
    let report = run(&x, p, 2).expect("fit");
    assert!(max_rel_diff(&report.w, &reference.w) < 1e-3);
    assert!(max_rel_diff(&report.h, &reference.h) < 1e-3);
    assert!(report.col_scale.iter().all(|&d| d == 1.0));
}

#[test]
fn custom_init_matches_reference() {
    let (n_rows, n_cols, k, n_iter) = (50, 15, 2, 8);
    let x = seed_matrix(n_rows, n_cols, 2);
    let w0 = Array2::from_shape_fn((n_rows, k), |(i, j)| 0.1 + ((i * 3 + j) % 7) as f32 / 7.0);
    let h0 = Array2::from_shape_fn((k, n_cols), |(i, j)| 0.2 + ((i + 5 * j) % 5) as f32 / 5.0);
    let reference = reference_fit(&x, &w0, &h0, true, n_iter);
    let p = NmfParams {
        init: Init::Custom { h0 },
        ..params(k, n_iter, Some(9))
    };
    let report = run_from(&x, p, w0.clone()).expect("fit");
    assert!(max_rel_diff(&report.w, &reference.w) < 1e-3);
    assert!(max_rel_diff(&report.h, &reference.h) < 1e-3);
    // W₀ is checked as the pre-pass reads it, naming the entry.
    let mut bad = w0;
    bad[(37, 1)] = f32::NAN;
    let p = NmfParams {
        init: Init::Custom {
            h0: Array2::ones((k, n_cols)),
        },
        ..params(k, n_iter, Some(9))
    };
    let err = run_from(&x, p, bad).unwrap_err();
    assert!(
        matches!(
            err,
            FitError::InitValue {
                which: "W0",
                row: 37,
                col: 1,
                ..
            }
        ),
        "{err}"
    );
}

/// A fit from W₀ (written into W's store, as the caller of a custom start
/// does).
fn run_from(x: &Array2<f32>, params: NmfParams, w0: Array2<f32>) -> Result<FitReport, FitError> {
    let mut source = InMemorySource::new(x.clone());
    let valid = params.check(x.nrows(), x.ncols(), None)?;
    let mut w = w0;
    let outcome = nmflow_core::fit_in(&mut source, &valid, &mut w, &mut |_| {})?;
    Ok(FitReport { w, outcome })
}

#[test]
fn results_are_bit_identical_across_thread_counts() {
    let x = seed_matrix(700, 600, 5);
    let one = run(&x, params(5, 6, Some(300)), 1).expect("fit");
    for threads in [2, 4] {
        let many = run(&x, params(5, 6, Some(300)), threads).expect("fit");
        assert_eq!(one.w, many.w, "W differs with {threads} threads");
        assert_eq!(one.h, many.h, "H differs with {threads} threads");
        assert_eq!(one.rel_error, many.rel_error);
    }
}

#[test]
fn factors_stay_non_negative_and_error_does_not_increase() {
    let x = seed_matrix(400, 60, 5);
    let report = run(&x, params(5, 80, Some(37)), 2).expect("fit");
    assert!(report.w.iter().all(|&v| v >= 0.0 && v.is_finite()));
    assert!(report.h.iter().all(|&v| v >= 0.0 && v.is_finite()));
    for pair in report.rel_error.windows(2) {
        assert!(pair[1] <= pair[0] * (1.0 + 1e-6), "error rose: {pair:?}");
    }
    assert!(report.final_rel_error() < report.rel_error[0]);
}

#[test]
fn column_scaling_matches_direct_computation() {
    let mut x = seed_matrix(90, 12, 3);
    x.column_mut(4).fill(2.5); // zero variance: stays as it is
    let report = run(&x, params(2, 1, Some(11)), 1).expect("fit");
    let divisors = nmflow_testkit::reference::column_divisors(&x.mapv(f64::from));
    for (got, want) in report.col_scale.iter().zip(&divisors) {
        assert!(
            (f64::from(*got) - want).abs() <= 1e-6 * want,
            "{got} vs {want}"
        );
    }
    assert_eq!(report.col_scale[4], 1.0);
    let direct: f64 = x
        .indexed_iter()
        .map(|((_, j), &v)| (f64::from(v) / divisors[j]).powi(2))
        .sum();
    assert!((report.x_norm_sq - direct).abs() < 1e-6 * direct);
}

#[test]
fn tolerance_stops_early_and_reports_convergence() {
    let x = seed_matrix(200, 30, 3);
    let p = NmfParams {
        tol: 1e-3,
        ..params(3, 500, None)
    };
    let report = run(&x, p, 2).expect("fit");
    assert!(report.converged);
    assert!(report.n_iter() < 500);
    let n = report.n_iter();
    let last = report.rel_error[n - 1];
    let before = report.rel_error[n - 2];
    assert!((before - last) / before < 1e-3);
}

#[test]
fn seed_clusters_are_recovered() {
    let generator = SeedGenerator::new(SEED, 4, 50);
    let (x, labels) = generator.matrix(300);
    let report = run(&x, params(4, 200, None), 2).expect("fit");
    let clusters = report.clusters();
    // Each true cluster maps to one component and each component to one cluster.
    let mut table = [[0usize; 4]; 4];
    for (&truth, &found) in labels.iter().zip(&clusters) {
        table[truth as usize][found as usize] += 1;
    }
    let agreeing: usize = table
        .iter()
        .map(|row| row.iter().max().copied().unwrap_or(0))
        .sum();
    assert!(agreeing as f64 >= 0.95 * 300.0, "confusion {table:?}");
}

#[test]
fn bad_values_are_refused_with_their_position() {
    for (value, negative) in [(-0.5f32, true), (f32::NAN, false), (f32::INFINITY, false)] {
        let mut x = seed_matrix(30, 8, 2);
        x[(17, 6)] = value;
        let err = run(&x, params(2, 3, Some(4)), 1).unwrap_err();
        match err {
            FitError::NegativeValue {
                row: 17, col: 6, ..
            } if negative => {}
            FitError::NonFiniteValue {
                row: 17, col: 6, ..
            } if !negative => {}
            other => panic!("unexpected error for {value}: {other}"),
        }
    }
}

#[test]
fn all_zero_matrix_is_refused() {
    let x = Array2::<f32>::zeros((5, 4));
    assert!(matches!(
        run(&x, params(2, 3, None), 1),
        Err(FitError::ZeroMatrix)
    ));
}

#[test]
fn zero_rows_and_columns_stay_finite() {
    let mut x = seed_matrix(40, 10, 2);
    x.row_mut(3).fill(0.0);
    x.column_mut(7).fill(0.0);
    let report = run(&x, params(2, 20, Some(6)), 2).expect("fit");
    assert!(report.w.iter().all(|v| v.is_finite()));
    assert!(report.h.iter().all(|v| v.is_finite()));
    assert!(report.rel_error.iter().all(|v| v.is_finite()));
}

#[test]
fn generated_data_shares_no_random_numbers_with_the_initialisation() {
    let generator = SeedGenerator::new(SEED, 3, 40);
    let h0 = random_h(SEED, 3, 40);
    let w0 = random_w(SEED, 3, 40);
    assert_ne!(generator.centers(), &h0);
    assert_ne!(generator.centers(), &w0);
}

#[test]
fn sparse_and_dense_inputs_give_the_same_factors() {
    let x = sparse_counts(150, 70);
    for block_rows in [1, 13, 150] {
        let dense = run(&x, params(3, 15, Some(block_rows)), 2).expect("dense fit");
        let sparse = run_sparse(&x, params(3, 15, Some(block_rows)), 2).expect("sparse fit");
        let scale = dense.w.iter().fold(0.0f32, |m, &v| m.max(v));
        let dw = dense
            .w
            .iter()
            .zip(&sparse.w)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max)
            / scale;
        assert!(dw < 1e-4, "block_rows {block_rows}: W differs by {dw:e}");
        for (a, b) in dense.rel_error.iter().zip(&sparse.rel_error) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        assert_eq!(dense.col_scale.len(), sparse.col_scale.len());
        assert!(sparse.integer_valued);
        assert_eq!(
            sparse.n_stored as usize,
            x.iter().filter(|&&v| v != 0.0).count()
        );
    }
}

#[test]
fn sparse_fit_matches_reference_and_is_bit_identical_across_threads() {
    let (n_rows, n_cols, k, n_iter) = (97, 41, 3, 10);
    let x = sparse_counts(n_rows, n_cols);
    let reference = reference_fit(
        &x,
        &random_w(SEED, n_rows, k),
        &random_h(SEED, k, n_cols),
        true,
        n_iter,
    );
    let one = run_sparse(&x, params(k, n_iter, Some(20)), 1).expect("fit");
    assert!(max_rel_diff(&one.w, &reference.w) < 1e-3);
    assert!(max_rel_diff(&one.h, &reference.h) < 1e-3);
    for threads in [2, 3] {
        let many = run_sparse(&x, params(k, n_iter, Some(20)), threads).expect("fit");
        assert_eq!(one.w, many.w);
        assert_eq!(one.h, many.h);
    }
}

#[test]
fn normalisation_matches_reference_on_normalised_data() {
    let (n_rows, n_cols, k, n_iter) = (60, 25, 2, 8);
    let mut x = sparse_counts(n_rows, n_cols);
    x.row_mut(5).fill(0.0); // an empty cell stays empty
    for (kind, transform) in [
        (
            Normalize::Log1p,
            Box::new(|v: f32, _s: f32| v.ln_1p()) as Box<dyn Fn(f32, f32) -> f32>,
        ),
        (
            Normalize::Cp10kLog1p,
            Box::new(|v: f32, s: f32| if s > 0.0 { (v * (1e4 / s)).ln_1p() } else { v }),
        ),
    ] {
        let mut normalised = x.clone();
        for mut row in normalised.rows_mut() {
            let sum: f32 = row.iter().map(|&v| f64::from(v)).sum::<f64>() as f32;
            row.mapv_inplace(|v| transform(v, sum));
        }
        let reference = reference_fit(
            &normalised,
            &random_w(SEED, n_rows, k),
            &random_h(SEED, k, n_cols),
            true,
            n_iter,
        );
        let p = NmfParams {
            normalize: kind,
            ..params(k, n_iter, Some(16))
        };
        for report in [
            run(&x, p.clone(), 2).expect("dense"),
            run_sparse(&x, p, 2).expect("sparse"),
        ] {
            assert!(max_rel_diff(&report.w, &reference.w) < 1e-3, "{kind:?}");
            assert!(max_rel_diff(&report.h, &reference.h) < 1e-3, "{kind:?}");
            assert!(report.integer_valued, "raw counts are whole numbers");
            assert!(report.w.row(5).iter().all(|v| v.is_finite()));
        }
    }
}

#[test]
fn malformed_sparse_input_is_refused() {
    let bad = InMemoryCsrSource::new(2, 3, vec![0, 1, 2], vec![0, 3], vec![1.0, 1.0]);
    let valid = params(1, 2, None).check(2, 3, None).expect("params");
    let err = fit(&mut { bad }, &valid, &mut |_| {}).unwrap_err();
    assert!(matches!(err, FitError::Csr { .. }), "{err}");
    let negative = InMemoryCsrSource::new(2, 3, vec![0, 1, 2], vec![0, 2], vec![1.0, -1.0]);
    let err = fit(&mut { negative }, &valid, &mut |_| {}).unwrap_err();
    assert!(
        matches!(err, FitError::NegativeValue { row: 1, col: 2, .. }),
        "{err}"
    );
}

/// Runs sharing passes follow exactly the iterates they follow alone, each
/// stopping by its own rule; the sample holds the scaled rows.
#[test]
fn runs_sharing_passes_equal_solo_runs() {
    use nmflow_core::{RowSample, Run, fit_many};
    let x = sparse_counts(300, 40);
    let mut specs = [
        params(2, 15, Some(64)),
        params(4, 9, Some(64)),
        params(3, 40, Some(64)),
    ];
    specs[1].seed = 11;
    specs[2].tol = 1e-2;
    for sparse in [false, true] {
        let solo: Vec<FitReport> = specs
            .iter()
            .map(|p| {
                if sparse {
                    run_sparse(&x, p.clone(), 2)
                } else {
                    run(&x, p.clone(), 2)
                }
                .unwrap()
            })
            .collect();
        let valid: Vec<_> = specs
            .iter()
            .map(|p| p.clone().check(300, 40, None).unwrap())
            .collect();
        let mut ws: Vec<Array2<f32>> = specs.iter().map(|p| Array2::zeros((300, p.k))).collect();
        let mut runs: Vec<Run<'_>> = valid
            .iter()
            .zip(ws.iter_mut())
            .map(|(params, w)| Run { params, w })
            .collect();
        let mut sample = RowSample::new(vec![0, 17, 299], 40);
        let mut dense_source = InMemorySource::new(x.clone());
        let mut csr_source = InMemoryCsrSource::from_dense(x.view());
        let source: &mut dyn RowSource = if sparse {
            &mut csr_source
        } else {
            &mut dense_source
        };
        let outcomes = fit_many(source, &mut runs, Some(&mut sample), &mut |_, _| {}).unwrap();
        for ((solo, outcome), w) in solo.iter().zip(&outcomes).zip(&ws) {
            assert_eq!(solo.rel_error, outcome.rel_error);
            assert_eq!(solo.h, outcome.h);
            assert_eq!(&solo.w, w);
        }
        assert!(outcomes[2].converged && outcomes[2].n_iter() < 40);
        // The sample's components: those of the scaled rows 0, 17, 299.
        let scale = &outcomes[0].col_scale;
        let scaled = Array2::from_shape_fn((3, 40), |(i, j)| x[([0, 17, 299][i], j)] / scale[j]);
        let mut direct = RowSample::new(vec![0, 1, 2], 40);
        direct.collect(0..3, &nmflow_core::RowBlock::Dense(scaled.view()));
        let expected = direct.pca(2, specs[0].seed);
        let found = sample.components().expect("components after the pre-pass");
        assert_eq!(found.scores, expected.scores);
        assert_eq!(sample.rows(), &[0, 17, 299]);
        assert_eq!(sample.n_collected(), 0, "rows are freed after the pre-pass");
    }
}

/// Every factor and error of a finished fit is finite, the error in (0, 1).
fn assert_sound(report: &FitReport) {
    assert!(report.w.iter().all(|v| v.is_finite() && *v >= 0.0), "W");
    assert!(report.h.iter().all(|v| v.is_finite() && *v >= 0.0), "H");
    assert!(
        report
            .rel_error
            .iter()
            .all(|e| e.is_finite() && *e > 0.0 && *e < 1.0),
        "{:?}",
        report.rel_error
    );
    assert!(
        report
            .col_scale
            .iter()
            .all(|d| d.is_normal() && (1.0 / d).is_normal())
    );
}

#[test]
fn subnormal_and_wide_range_columns_give_finite_factors() {
    let x = nmflow_testkit::extreme_matrix(SEED, 120, 30, 3);
    for scale in [Scale::ColStd, Scale::None] {
        let p = NmfParams {
            scale,
            ..params(3, 20, Some(17))
        };
        let dense = run(&x, p.clone(), 2).expect("dense fit");
        assert_sound(&dense);
        let sparse = run_sparse(&x, p, 2).expect("sparse fit");
        assert_sound(&sparse);
    }
}

#[test]
fn subnormal_columns_count_as_constant_and_the_rest_is_scaled_as_before() {
    let x = nmflow_testkit::extreme_matrix(SEED, 90, 15, 3);
    let report = run(&x, params(3, 3, None), 1).expect("fit");
    for (col, &d) in report.col_scale.iter().enumerate() {
        match nmflow_testkit::extreme::column_kind(col) {
            nmflow_testkit::extreme::ColumnKind::Subnormal => assert_eq!(d, 1.0, "column {col}"),
            _ => {
                let column: Vec<f64> = x.column(col).iter().map(|&v| f64::from(v)).collect();
                let mean = column.iter().sum::<f64>() / column.len() as f64;
                let var =
                    column.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / column.len() as f64;
                let rel = (f64::from(d) - var.sqrt()).abs() / var.sqrt();
                assert!(rel < 1e-6, "column {col}: {d} vs {}", var.sqrt());
            }
        }
    }
}

#[test]
fn huge_values_fit_under_both_scalings_with_the_same_w() {
    // Multiplicative updates are equivariant under a power-of-two factor,
    // so X · 2^90 gives exactly X's W under --scale none.
    let x = seed_matrix(80, 20, 3);
    let huge = x.mapv(|v| v * 2f32.powi(90));
    let p = NmfParams {
        scale: Scale::None,
        ..params(3, 15, None)
    };
    let plain = run(&x, p.clone(), 1).expect("plain");
    let scaled = run(&huge, p, 1).expect("huge");
    assert_sound(&scaled);
    assert_eq!(plain.w, scaled.w);
    assert_eq!(plain.rel_error, scaled.rel_error);
    assert_sound(&run(&huge, params(3, 15, None), 2).expect("col-std"));
}

#[test]
fn values_near_the_largest_f32_are_refused_naming_a_column() {
    let x = nmflow_testkit::scaled_matrix(SEED, 80, 20, 3, 6e37);
    for scale in [Scale::ColStd, Scale::None] {
        let p = NmfParams {
            scale,
            ..params(3, 5, None)
        };
        let err = run(&x, p, 1).unwrap_err();
        assert!(matches!(err, FitError::ValueTooLarge { .. }), "{err}");
        assert!(err.to_string().starts_with("column "), "{err}");
    }
}

#[test]
fn all_subnormal_matrix_is_refused_not_fitted_to_nan() {
    let x = nmflow_testkit::scaled_matrix(SEED, 60, 12, 2, 1e-43);
    for scale in [Scale::ColStd, Scale::None] {
        let p = NmfParams {
            scale,
            ..params(2, 5, None)
        };
        let err = run(&x, p, 1).unwrap_err();
        assert!(matches!(err, FitError::ValuesTooSmall { .. }), "{err}");
        assert!(err.to_string().contains("multiply the data"), "{err}");
    }
}

#[test]
fn the_guard_stops_a_fit_whose_factors_overflow() {
    let x = seed_matrix(40, 10, 2);
    let p = NmfParams {
        init: Init::Custom {
            h0: Array2::from_elem((2, 10), 1e30),
        },
        ..params(2, 5, None)
    };
    let err = run_from(&x, p, Array2::from_elem((40, 2), 1e30)).unwrap_err();
    assert!(
        matches!(
            err,
            FitError::NotFinite { iteration: 1, .. } | FitError::Vanished { iteration: 1 }
        ),
        "{err}"
    );
    assert!(err.to_string().starts_with("iteration 1:"), "{err}");
}

#[test]
fn the_stopping_rule_is_scikit_learns_checked_every_ten_iterations() {
    let x = seed_matrix(150, 25, 3);
    for tol in [1e-2, 1e-3, 1e-4] {
        let report = run(
            &x,
            NmfParams {
                tol,
                ..params(3, 500, None)
            },
            1,
        )
        .expect("fit");
        let n_iter = report.n_iter();
        assert!(report.converged, "tol {tol}: ran all {n_iter} iterations");
        assert_eq!(n_iter % 10, 0, "tol {tol}: stopped at {n_iter}");
        let init = report.init_rel_error;
        let mut previous = init;
        for check in (10..=n_iter).step_by(10) {
            let error = report.rel_error[check - 1];
            let stop = (previous - error) / init < tol;
            assert_eq!(stop, check == n_iter, "tol {tol}, check at {check}");
            previous = error;
        }
        // The start's error, from the pre-pass's products, against a direct
        // computation from the same start.
        let w0 = random_w(SEED, x.nrows(), 3).mapv(f64::from);
        let h0 = random_h(SEED, 3, x.ncols()).mapv(f64::from);
        let xs = Array2::from_shape_fn(x.dim(), |(i, j)| {
            f64::from(x[(i, j)]) / f64::from(report.col_scale[j])
        });
        let diff = &xs - &w0.dot(&h0);
        let direct = (diff.mapv(|v| v * v).sum() / xs.mapv(|v| v * v).sum()).sqrt();
        assert!((init - direct).abs() < 1e-6 * direct, "{init} vs {direct}");
    }
}

/// Runs two fits together, handing out a checkpoint every `every`
/// iterations; returns the outcomes, the W and every checkpoint (with the
/// W of each run at that moment).
type Saved = (nmflow_core::Resume, Vec<Array2<f32>>);

fn fit_two(
    source: &mut dyn RowSource,
    params: [&nmflow_core::ValidParams; 2],
    resume: Option<Saved>,
    every: usize,
) -> (Vec<nmflow_core::FitOutcome>, Vec<Array2<f32>>, Vec<Saved>) {
    let n_rows = source.n_rows();
    let mut ws: Vec<Array2<f32>> = params
        .iter()
        .map(|p| Array2::zeros((n_rows, p.params().k)))
        .collect();
    let resume = resume.map(|(state, w)| {
        ws = w;
        state
    });
    let mut saved: Vec<Saved> = Vec::new();
    let mut save = |c: &nmflow_core::Checkpoint<'_>,
                    runs: &mut [nmflow_core::Run<'_>]|
     -> Result<(), nmflow_core::SaveError> {
        let w = runs
            .iter_mut()
            .map(|r| {
                let (n, k) = r.w.shape();
                let w = r.w.rows_mut(0..n).to_owned();
                assert_eq!(w.dim(), (n, k));
                w
            })
            .collect();
        saved.push((
            nmflow_core::Resume {
                iteration: c.iteration,
                shared: c.shared.clone(),
                runs: c.runs.to_vec(),
            },
            w,
        ));
        Ok(())
    };
    let mut checkpointing = nmflow_core::Checkpointing {
        every,
        save: &mut save,
    };
    let outcomes = {
        let (a, b) = ws.split_at_mut(1);
        let mut runs = [
            nmflow_core::Run {
                params: params[0],
                w: &mut a[0],
            },
            nmflow_core::Run {
                params: params[1],
                w: &mut b[0],
            },
        ];
        nmflow_core::fit_many_with(
            source,
            &mut runs,
            None,
            resume,
            Some(&mut checkpointing),
            &mut |_, _| {},
        )
        .expect("fit")
    };
    (outcomes, ws, saved)
}

#[test]
fn a_fit_resumed_from_any_checkpoint_ends_bit_identical_to_the_uninterrupted_one() {
    let dense = seed_matrix(97, 23, 3);
    let sparse = sparse_counts(97, 23);
    for (x, is_sparse) in [(dense, false), (sparse, true)] {
        let make = || -> Box<dyn RowSource> {
            if is_sparse {
                Box::new(InMemoryCsrSource::from_dense(x.view()))
            } else {
                Box::new(InMemorySource::new(x.clone()))
            }
        };
        let check = |k: usize, seed: u64, tol: f64| {
            NmfParams {
                k,
                seed,
                tol,
                ..params(k, 80, Some(13))
            }
            .check(97, 23, None)
            .expect("valid")
        };
        // One run stops early by its rule, the other runs to max_iter.
        let (a, b) = (check(3, 1, 1e-2), check(4, 2, 0.0));
        let (whole, whole_w, saved) = fit_two(make().as_mut(), [&a, &b], None, 4);
        assert!(saved.len() >= 10, "{} checkpoints", saved.len());
        assert!(
            whole[0].converged && whole[0].n_iter() < 80,
            "{}",
            whole[0].n_iter()
        );
        for checkpoint in saved {
            let at = checkpoint.0.iteration;
            let (resumed, resumed_w, _) = fit_two(make().as_mut(), [&a, &b], Some(checkpoint), 4);
            for run in 0..2 {
                assert_eq!(resumed_w[run], whole_w[run], "W of run {run} from {at}");
                assert_eq!(resumed[run].h, whole[run].h, "H of run {run} from {at}");
                assert_eq!(
                    resumed[run].rel_error, whole[run].rel_error,
                    "trace from {at}"
                );
                assert_eq!(resumed[run].converged, whole[run].converged);
            }
        }
    }
}

#[test]
fn random_scaled_starts_from_half_normal_draws_times_the_mean_scale() {
    let (n_rows, n_cols, k, n_iter) = (120, 30, 3, 10);
    let x = seed_matrix(n_rows, n_cols, 3);
    let xs = nmflow_testkit::reference::column_divisors(&x.mapv(f64::from));
    let mean = x
        .indexed_iter()
        .map(|((_, j), &v)| f64::from(v) / xs[j])
        .sum::<f64>()
        / (n_rows * n_cols) as f64;
    let avg = (mean / k as f64).sqrt() as f32;
    let w0 = nmflow_core::init::half_normal_w(SEED, n_rows, k).mapv(|v| v * avg);
    let h0 = nmflow_core::init::half_normal_h(SEED, k, n_cols).mapv(|v| v * avg);
    assert!(w0.iter().chain(h0.iter()).all(|&v| v >= 0.0));
    let reference = reference_fit(&x, &w0, &h0, true, n_iter);
    let p = NmfParams {
        init: Init::RandomScaled,
        ..params(k, n_iter, Some(17))
    };
    let report = run(&x, p, 2).expect("fit");
    assert!(max_rel_diff(&report.w, &reference.w) < 1e-3);
    assert!(max_rel_diff(&report.h, &reference.h) < 1e-3);
    for (got, want) in report.rel_error.iter().zip(&reference.rel_error) {
        assert!((got - want).abs() < 1e-4, "{got} vs {want}");
    }
}
