//! Projecting rows onto fixed components: the fitted W back from the
//! training rows, the exact non-negative least-squares solution on new
//! rows, and independence from block heights and thread counts.

use ndarray::Array2;
use nmflow_core::{
    FitReport, InMemoryCsrSource, InMemorySource, Inner, NmfParams, Normalize, Projection,
    RowSource, Solver, fit, project,
};
use nmflow_testkit::SeedGenerator;

const SEED: u64 = 20_261_203;

fn seed_matrix(n_rows: usize, n_cols: usize, seed: u64) -> Array2<f32> {
    SeedGenerator::new(seed, 4, n_cols).matrix(n_rows).0
}

fn fitted(x: &Array2<f32>, k: usize) -> FitReport {
    let params = NmfParams {
        k,
        max_iter: 400,
        tol: 0.0,
        seed: SEED,
        solver: Solver::Hals,
        inner: Inner::Auto,
        ..NmfParams::default()
    };
    let valid = params.check(x.nrows(), x.ncols(), None).expect("valid");
    fit(&mut InMemorySource::new(x.clone()), &valid, &mut |_| {}).expect("fit")
}

fn projection(report: &FitReport, solver: Solver, block_rows: usize) -> Projection {
    Projection {
        h: report.h.clone(),
        absent: Array2::zeros((report.h.nrows(), 0)),
        col_scale: report.col_scale.clone(),
        normalize: Normalize::None,
        solver,
        max_sweeps: 2000,
        tol: 1e-6,
        block_rows,
    }
}

fn run(source: &mut (dyn RowSource + Send), p: &Projection, threads: usize) -> (Array2<f32>, f64) {
    let mut w = Array2::zeros((source.n_rows(), p.h.nrows()));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("pool");
    let outcome = pool
        .install(|| project(source, p, &mut w, &mut |_| {}))
        .expect("project");
    (w, outcome.rel_error)
}

fn rel_diff(a: &Array2<f32>, b: &Array2<f32>) -> f32 {
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / scale)
        .fold(0.0, f32::max)
}

#[test]
fn the_training_rows_give_back_the_fitted_w() {
    let x = seed_matrix(300, 40, SEED);
    let report = fitted(&x, 4);
    let (w, rel) = run(
        &mut InMemorySource::new(x.clone()),
        &projection(&report, Solver::Hals, 64),
        2,
    );
    assert!(
        rel_diff(&w, &report.w) < 1e-3,
        "{}",
        rel_diff(&w, &report.w)
    );
    assert!((rel - report.final_rel_error()).abs() < 1e-4);
}

#[test]
fn new_rows_get_the_least_squares_solution_from_either_solver() {
    let x = seed_matrix(300, 40, SEED);
    let report = fitted(&x, 4);
    let new = seed_matrix(120, 40, SEED + 1);
    let (hals, _) = run(
        &mut InMemorySource::new(new.clone()),
        &projection(&report, Solver::Hals, 50),
        2,
    );
    // The KKT conditions of min ‖x_s − w H‖ over w ≥ 0, row by row: the
    // gradient g = w HHᵀ − x_s Hᵀ is ≥ 0, and 0 where w > 0.
    let xs = Array2::from_shape_fn(new.dim(), |(i, j)| new[(i, j)] / report.col_scale[j]);
    let h = &report.h;
    let grad = hals.dot(&h.dot(&h.t())) - xs.dot(&h.t());
    let scale = xs.dot(&h.t()).iter().fold(0.0f32, |m, v| m.max(v.abs()));
    for ((i, a), &g) in grad.indexed_iter() {
        let w = hals[(i, a)];
        assert!(g >= -1e-4 * scale, "row {i}: gradient {g} < 0");
        assert!(
            w == 0.0 || g.abs() <= 1e-4 * scale,
            "row {i}: w {w}, gradient {g}"
        );
    }
    let mut mu_projection = projection(&report, Solver::Mu, 50);
    mu_projection.max_sweeps = 20_000;
    mu_projection.tol = 1e-9;
    let (mu, _) = run(&mut InMemorySource::new(new), &mu_projection, 2);
    assert!(rel_diff(&mu, &hals) < 1e-2, "{}", rel_diff(&mu, &hals));
}

#[test]
fn results_do_not_depend_on_blocks_threads_or_storage() {
    let x = seed_matrix(200, 30, SEED);
    let report = fitted(&x, 3);
    let new = seed_matrix(157, 30, SEED + 2).mapv(|v| if v > 1.0 { v.round() } else { 0.0 });
    let (one, rel) = run(
        &mut InMemorySource::new(new.clone()),
        &projection(&report, Solver::Hals, 157),
        1,
    );
    for (block_rows, threads) in [(1, 2), (13, 3), (64, 2)] {
        let p = projection(&report, Solver::Hals, block_rows);
        let (w, r) = run(&mut InMemorySource::new(new.clone()), &p, threads);
        assert_eq!(w, one, "blocks of {block_rows}, {threads} threads");
        assert!((r - rel).abs() < 1e-6);
        let (w, _) = run(&mut InMemoryCsrSource::from_dense(new.view()), &p, threads);
        assert!(rel_diff(&w, &one) < 1e-5, "sparse, blocks of {block_rows}");
    }
}

#[test]
fn negative_values_are_refused_naming_the_entry() {
    let x = seed_matrix(50, 10, SEED);
    let report = fitted(&x, 2);
    let mut bad = x;
    bad[(17, 3)] = -1.0;
    let p = projection(&report, Solver::Hals, 8);
    let mut w = Array2::zeros((50, 2));
    let err = project(&mut InMemorySource::new(bad), &p, &mut w, &mut |_| {}).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("17") && text.contains('3'), "{text}");
}
