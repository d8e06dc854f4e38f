//! The engine over processes that share the rows ([`Shard`]), simulated by
//! threads of this process: each "process" reads its own contiguous rows
//! and keeps its rows of W; the passes' sums are combined by a
//! [`Collective`]. One process is the single-process engine bit for bit;
//! several give its factorization within rounding, the same between two
//! runs with as many processes; a bad value in one process's rows fails
//! every process, naming the row of the whole matrix.

use std::sync::{Barrier, Mutex};

use ndarray::{Array2, s};
use nmflow_core::collective::{Alone, Collective, Shard};
use nmflow_core::{
    FitError, FitOutcome, InMemoryCsrSource, InMemorySource, Loss, NmfParams, RowSource, Run,
    Scale, Solver, fit_many_sharded, fit_many_with,
};
use nmflow_testkit::SeedGenerator;

/// Processes simulated by threads: a gather through shared slots between
/// two barriers.
struct Threads {
    size: usize,
    barrier: Barrier,
    slots: Mutex<Vec<Vec<f64>>>,
}

struct Rank<'a> {
    rank: usize,
    group: &'a Threads,
}

impl Collective for Rank<'_> {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.group.size
    }

    fn all_gather(&self, values: &[f64]) -> Vec<f64> {
        self.group.slots.lock().expect("slots")[self.rank] = values.to_vec();
        self.group.barrier.wait();
        let all = self.group.slots.lock().expect("slots").concat();
        self.group.barrier.wait();
        all
    }
}

/// Runs `work(shard, rows)` on `size` simulated processes sharing
/// `n_rows` rows, each on a thread with its own rows; returns every
/// process's result, by rank.
fn over_threads<T: Send>(
    size: usize,
    n_rows: usize,
    work: impl Fn(Shard<'_>, std::ops::Range<usize>) -> T + Sync,
) -> Vec<T> {
    let group = Threads {
        size,
        barrier: Barrier::new(size),
        slots: Mutex::new(vec![Vec::new(); size]),
    };
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..size)
            .map(|rank| {
                let (group, work) = (&group, &work);
                scope.spawn(move || {
                    let rows = Shard::rows_of(rank, size, n_rows);
                    let collective = Rank { rank, group };
                    let shard = Shard {
                        collective: &collective,
                        first_row: rows.start,
                        n_rows,
                    };
                    work(shard, rows)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("rank"))
            .collect()
    })
}

fn params(k: usize, solver: Solver, loss: Loss) -> NmfParams {
    NmfParams {
        k,
        max_iter: 100,
        tol: 0.0,
        seed: 11,
        scale: Scale::ColStd,
        block_rows: Some(64),
        solver,
        loss,
        ..NmfParams::default()
    }
}

/// The matrix: the seed data, every third entry zeroed (sparse enough for
/// the CSR kernels, whole numbers for the KL loss).
fn matrix(n_rows: usize) -> Array2<f32> {
    let x = SeedGenerator::new(5, 4, 30).matrix(n_rows).0;
    Array2::from_shape_fn(x.dim(), |(i, j)| {
        if (i + 2 * j) % 3 == 0 {
            0.0
        } else {
            (x[(i, j)] * 4.0).round()
        }
    })
}

fn source(x: Array2<f32>, sparse: bool) -> Box<dyn RowSource + Send> {
    if sparse {
        Box::new(InMemoryCsrSource::from_dense(x.view()))
    } else {
        Box::new(InMemorySource::new(x))
    }
}

/// One simulated process's part of a fit of `x`: its rows, and W's rows;
/// `sample` collects the row sample.
fn fit_part(
    x: &Array2<f32>,
    p: &NmfParams,
    sparse: bool,
    shard: Shard<'_>,
    rows: std::ops::Range<usize>,
    sample: Option<&mut nmflow_core::RowSample>,
) -> Result<(FitOutcome, Array2<f32>), FitError> {
    let (n_rows, n_cols) = x.dim();
    let mut src = source(x.slice(s![rows.clone(), ..]).to_owned(), sparse);
    let valid = p.clone().check(n_rows, n_cols, None).expect("valid");
    let mut w = Array2::<f32>::zeros((rows.len(), p.k));
    let mut runs = [Run {
        params: &valid,
        w: &mut w,
    }];
    let mut outcomes = fit_many_sharded(
        shard,
        src.as_mut(),
        &mut runs,
        sample,
        None,
        None,
        &mut |_, _| {},
    )?;
    Ok((outcomes.remove(0), w))
}

/// Fits `x` over `size` simulated processes; returns every process's
/// outcome and the whole W.
fn fit_over(
    x: &Array2<f32>,
    p: &NmfParams,
    size: usize,
    sparse: bool,
) -> Result<(Vec<FitOutcome>, Array2<f32>), FitError> {
    let results = over_threads(size, x.nrows(), |shard, rows| {
        fit_part(x, p, sparse, shard, rows, None)
    });
    let mut outcomes = Vec::new();
    let mut ws = Vec::new();
    for r in results {
        let (o, w) = r?;
        outcomes.push(o);
        ws.push(w);
    }
    let views: Vec<_> = ws.iter().map(|w| w.view()).collect();
    Ok((
        outcomes,
        ndarray::concatenate(ndarray::Axis(0), &views).expect("W"),
    ))
}

fn alone(x: &Array2<f32>, p: &NmfParams, sparse: bool) -> (FitOutcome, Array2<f32>) {
    let (n_rows, n_cols) = x.dim();
    let valid = p.clone().check(n_rows, n_cols, None).expect("valid");
    let mut w = Array2::<f32>::zeros((n_rows, p.k));
    let mut src = source(x.clone(), sparse);
    let mut runs = [Run {
        params: &valid,
        w: &mut w,
    }];
    let mut outcomes =
        fit_many_with(src.as_mut(), &mut runs, None, None, None, &mut |_, _| {}).expect("fit");
    (outcomes.remove(0), w)
}

fn rel_diff(a: &Array2<f32>, b: &Array2<f32>) -> f32 {
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    (a - b).iter().fold(0.0f32, |m, v| m.max(v.abs())) / scale
}

#[test]
fn one_shard_is_the_single_process_engine_bit_for_bit() {
    let x = matrix(301);
    for sparse in [false, true] {
        let p = params(4, Solver::Mu, Loss::Frobenius);
        let (single, w_single) = alone(&x, &p, sparse);
        let (outcomes, w) = fit_over(&x, &p, 1, sparse).expect("fit");
        assert_eq!(w, w_single);
        assert_eq!(outcomes[0].h, single.h);
        assert_eq!(outcomes[0].rel_error, single.rel_error);
        let _ = Alone;
    }
}

#[test]
fn shards_give_the_single_process_factorization_within_rounding() {
    let x = matrix(301);
    for (solver, loss) in [
        (Solver::Mu, Loss::Frobenius),
        (Solver::Hals, Loss::Frobenius),
        (Solver::Mu, Loss::KullbackLeibler),
    ] {
        let p = params(4, solver, loss);
        for sparse in [false, true] {
            let (single, w_single) = alone(&x, &p, sparse);
            for size in [2, 3, 4] {
                let (outcomes, w) = fit_over(&x, &p, size, sparse).expect("fit");
                // Every process holds the same H and error trace.
                for o in &outcomes[1..] {
                    assert_eq!(o.h, outcomes[0].h);
                    assert_eq!(o.rel_error, outcomes[0].rel_error);
                    assert_eq!(o.col_scale, outcomes[0].col_scale);
                }
                let what = format!("{solver:?} {loss:?} sparse {sparse}, {size} processes");
                assert!(rel_diff(&outcomes[0].h, &single.h) <= 1e-5, "{what}: H");
                assert!(rel_diff(&w, &w_single) <= 1e-5, "{what}: W");
                let (a, b) = (outcomes[0].rel_error[99], single.rel_error[99]);
                assert!((a - b).abs() <= 1e-6 * b, "{what}: error {a} vs {b}");
                // Bit-identical between two runs with as many processes.
                let (again, w_again) = fit_over(&x, &p, size, sparse).expect("fit");
                assert_eq!(again[0].h, outcomes[0].h, "{what}: rerun");
                assert_eq!(w_again, w, "{what}: rerun");
            }
        }
    }
}

#[test]
fn a_bad_value_in_one_shard_fails_every_shard_naming_the_whole_matrixs_row() {
    let mut x = matrix(120);
    x[(95, 7)] = -1.0;
    let p = params(3, Solver::Mu, Loss::Frobenius);
    let errors: Vec<FitError> = over_threads(3, x.nrows(), |shard, rows| {
        fit_part(&x, &p, false, shard, rows, None).expect_err("a negative value")
    });
    // Row 95 lies in process 2's rows (80..120).
    assert!(
        matches!(errors[0], FitError::PeerFailed { rank: 2 }),
        "{:?}",
        errors[0]
    );
    assert!(
        matches!(errors[1], FitError::PeerFailed { rank: 2 }),
        "{:?}",
        errors[1]
    );
    let own = errors[2].to_string();
    assert!(own.contains("row 95") && own.contains("column 7"), "{own}");
}

#[test]
fn a_projection_over_shards_solves_every_row_as_alone() {
    use nmflow_core::{Normalize, Projection, project, project_sharded};
    let x = matrix(211);
    let (n_rows, n_cols) = x.dim();
    let h = nmflow_core::init::random_h(4, 3, n_cols);
    let projection = Projection {
        h,
        absent: Array2::zeros((3, 0)),
        col_scale: vec![1.0; n_cols],
        normalize: Normalize::None,
        solver: Solver::Hals,
        max_sweeps: 200,
        tol: 1e-4,
        block_rows: 32,
    };
    let mut w_alone = Array2::<f32>::zeros((n_rows, 3));
    let mut src = source(x.clone(), true);
    let alone = project(src.as_mut(), &projection, &mut w_alone, &mut |_| {}).expect("alone");
    let parts: Vec<(Array2<f32>, f64)> = over_threads(3, n_rows, |shard, rows| {
        let mut src = source(x.slice(s![rows.clone(), ..]).to_owned(), true);
        let mut w = Array2::<f32>::zeros((rows.len(), 3));
        let outcome =
            project_sharded(shard, src.as_mut(), &projection, &mut w, &mut |_| {}).expect("shard");
        (w, outcome.rel_error)
    });
    let views: Vec<_> = parts.iter().map(|(w, _)| w.view()).collect();
    let w = ndarray::concatenate(ndarray::Axis(0), &views).expect("W");
    assert_eq!(w, w_alone, "rows are solved independently");
    // The error sums chunk partials that start at each process's first
    // row: equal within rounding.
    for (_, err) in &parts {
        assert!(
            (err - alone.rel_error).abs() <= 1e-7 * alone.rel_error,
            "{err} vs {}",
            alone.rel_error
        );
    }
}

#[test]
fn every_shard_gathers_the_single_process_row_sample_and_its_components() {
    use nmflow_core::{RowSample, sample_row_indices};
    let x = matrix(301);
    let (n_rows, n_cols) = x.dim();
    let p = params(3, Solver::Mu, Loss::Frobenius);
    let drawn = sample_row_indices(n_rows, 57, 9);
    for sparse in [false, true] {
        let sampled = |shard: Shard<'_>, rows: std::ops::Range<usize>| {
            let mut sample = RowSample::new(drawn.clone(), n_cols).with_seed(9);
            fit_part(&x, &p, sparse, shard, rows, Some(&mut sample)).expect("fit");
            sample.components().cloned().expect("components")
        };
        let single = over_threads(1, n_rows, sampled).remove(0);
        assert_eq!(single.scores.nrows(), drawn.len());
        for size in [2, 3, 4] {
            // The same rows, the same values: the same components on every
            // process, bit for bit.
            for pca in over_threads(size, n_rows, sampled) {
                assert_eq!(
                    pca.scores, single.scores,
                    "{size} processes, sparse {sparse}"
                );
                assert_eq!(
                    pca.explained_variance_ratio,
                    single.explained_variance_ratio
                );
            }
        }
    }
}

#[test]
fn nndsvd_starts_over_shards_are_the_single_process_start() {
    use nmflow_core::{NndsvdFill, NndsvdRequest, Normalize, nndsvd_sharded};
    let x = matrix(301);
    let (n_rows, n_cols) = x.dim();
    for fill in [NndsvdFill::Zeros, NndsvdFill::Mean, NndsvdFill::Random] {
        let request = NndsvdRequest {
            k: 4,
            seed: 5,
            normalize: Normalize::Cp10kLog1p,
            scale: Scale::ColStd,
            block_rows: 40,
            fill,
            power_iterations: 1,
        };
        let start = |shard: Shard<'_>, rows: std::ops::Range<usize>| {
            let mut src = source(x.slice(s![rows.clone(), ..]).to_owned(), true);
            let l = request.basis_cols(n_rows, n_cols);
            let mut basis = Array2::<f32>::zeros((rows.len(), l));
            let mut w0 = Array2::<f32>::zeros((rows.len(), request.k));
            let start = nndsvd_sharded(
                shard,
                src.as_mut(),
                &request,
                &mut basis,
                &mut w0,
                &mut |_| {},
            )
            .expect("nndsvd");
            (w0, start.h0)
        };
        let mut single = over_threads(1, n_rows, start);
        let (w_single, h_single) = single.remove(0);
        let zeros = |w: &Array2<f32>| w.iter().filter(|&&v| v == 0.0).count();
        for size in [2, 3, 4] {
            let parts = over_threads(size, n_rows, start);
            for (_, h) in &parts[1..] {
                assert_eq!(h, &parts[0].1, "every process has the same H₀");
            }
            let views: Vec<_> = parts.iter().map(|(w, _)| w.view()).collect();
            let w = ndarray::concatenate(ndarray::Axis(0), &views).expect("W₀");
            let what = format!("{} over {size}", fill.as_str());
            assert!(
                rel_diff(&parts[0].1, &h_single) <= 1e-4,
                "{what}: H₀ {}",
                rel_diff(&parts[0].1, &h_single)
            );
            assert!(
                rel_diff(&w, &w_single) <= 1e-4,
                "{what}: W₀ {}",
                rel_diff(&w, &w_single)
            );
            if fill == NndsvdFill::Zeros {
                assert_eq!(zeros(&w), zeros(&w_single), "{what}: the same zeros");
            }
            // Entry by entry, the small fill values of nndsvdar too (drawn
            // in the single process's order).
            let worst = w
                .iter()
                .zip(&w_single)
                .map(|(a, b)| (a - b).abs() / b.abs().max(1e-30))
                .fold(0.0f32, f32::max);
            assert!(worst <= 1e-3, "{what}: an entry of W₀ differs by {worst}");
        }
    }
}
