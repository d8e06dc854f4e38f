//! NNDSVD starts from the streamed randomized SVD: exact on a rank-one
//! matrix, independent of the thread count, close across block heights.

use ndarray::Array2;
use nmflow_core::{
    InMemoryCsrSource, InMemorySource, NndsvdFill, NndsvdRequest, Normalize, RowSource, Scale,
    nndsvd,
};
use nmflow_testkit::SeedGenerator;

fn request(k: usize, block_rows: usize, fill: NndsvdFill) -> NndsvdRequest {
    NndsvdRequest {
        k,
        seed: 7,
        normalize: Normalize::None,
        scale: Scale::None,
        block_rows,
        fill,
        power_iterations: 2,
    }
}

fn start(
    source: &mut (dyn RowSource + Send),
    request: &NndsvdRequest,
    threads: usize,
) -> (Array2<f32>, Array2<f32>) {
    let (n_rows, n_cols) = (source.n_rows(), source.n_cols());
    let mut basis = Array2::<f32>::zeros((n_rows, request.basis_cols(n_rows, n_cols)));
    let mut w0 = Array2::<f32>::zeros((n_rows, request.k));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("pool");
    let start = pool
        .install(|| nndsvd(source, request, &mut basis, &mut w0, &mut |_| {}))
        .expect("nndsvd");
    assert_eq!(start.passes, 3 + 2 * request.power_iterations);
    (w0, start.h0)
}

#[test]
fn a_rank_one_matrix_is_its_own_start() {
    let a: Vec<f32> = (0..50).map(|i| 0.5 + (i % 7) as f32).collect();
    let b: Vec<f32> = (0..12).map(|j| 1.0 + (j % 5) as f32 * 0.25).collect();
    let x = Array2::from_shape_fn((50, 12), |(i, j)| a[i] * b[j]);
    let (w0, h0) = start(
        &mut InMemorySource::new(x.clone()),
        &request(1, 16, NndsvdFill::Zeros),
        2,
    );
    let product = w0.dot(&h0);
    let err = (&product - &x).iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(err < 1e-4 * 56.0, "max error {err}");
}

#[test]
fn starts_do_not_depend_on_threads_and_barely_on_blocks_or_storage() {
    let x = SeedGenerator::new(3, 4, 60).matrix(300).0;
    for fill in [NndsvdFill::Zeros, NndsvdFill::Mean, NndsvdFill::Random] {
        let (w1, h1) = start(
            &mut InMemorySource::new(x.clone()),
            &request(4, 64, fill),
            1,
        );
        let (w3, h3) = start(
            &mut InMemorySource::new(x.clone()),
            &request(4, 64, fill),
            3,
        );
        assert_eq!((&w1, &h1), (&w3, &h3), "{fill:?}");
        assert!(
            w1.iter()
                .chain(h1.iter())
                .all(|v| v.is_finite() && *v >= 0.0)
        );
        if fill != NndsvdFill::Zeros {
            assert!(
                w1.iter().chain(h1.iter()).all(|&v| v > 0.0),
                "{fill:?} fills zeros"
            );
        }
        let (wb, hb) = start(
            &mut InMemoryCsrSource::from_dense(x.view()),
            &request(4, 37, fill),
            2,
        );
        let scale = w1.iter().fold(0.0f32, |m, &v| m.max(v));
        let dw = w1
            .iter()
            .zip(&wb)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        let hs = h1.iter().fold(0.0f32, |m, &v| m.max(v));
        let dh = h1
            .iter()
            .zip(&hb)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(dw < 1e-3 * scale && dh < 1e-3 * hs, "{fill:?}: {dw} {dh}");
    }
}
