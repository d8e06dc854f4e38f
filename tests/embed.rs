//! `nmflow::embed`, the library entry of the Python package: a fit of
//! arrays held in memory equals the command's fit of the same matrix in a
//! file, bit for bit; errors keep their kind; a stopped fit stops.

use std::sync::atomic::Ordering;

use nmflow::embed::rows::{CsrRows, Dense, DenseRows, Indices, Values};
use nmflow::embed::{self, Control, Error, Matrix};
use nmflow_testkit::SeedGenerator;

use crate::util::{path_str, read1, read2, run, stderr, tempdir, write_npy};

fn options(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

fn rows_of(source: Box<dyn nmflow_core::RowSource + Send + '_>) -> Matrix {
    Matrix::Rows {
        // SAFETY: the arrays outlive every fit of these tests.
        source: unsafe { embed::borrowed_rows(source) },
        name: "the array".into(),
    }
}

#[test]
fn arrays_in_memory_fit_as_the_command_fits_their_file() {
    let dir = tempdir();
    let (x, _) = SeedGenerator::new(4, 3, 40).matrix(600);
    let npy = dir.path().join("x.npy");
    write_npy(&npy, &x);
    let result = dir.path().join("r.h5");
    let words = [
        "-k",
        "3",
        "--seed",
        "7",
        "--max-iter",
        "40",
        "--block-rows",
        "128",
    ];
    let mut argv = vec!["fit", path_str(&npy)];
    argv.extend(words);
    argv.extend(["-o", path_str(&result), "-q"]);
    let out = run(&argv);
    assert!(out.status.success(), "{}", stderr(&out));
    let w_cli = read2(&result, "W");
    let h_cli = read2(&result, "H");
    let trace_cli = read1::<f64>(&result, "rel_error");

    let control = Control::default();
    let dense = embed::fit(
        &options(&words),
        rows_of(Box::new(DenseRows::new(Dense::F32(x.view())))),
        &control,
    )
    .expect("dense fit");
    assert_eq!(dense.w, w_cli);
    assert_eq!(dense.h, h_cli);
    assert_eq!(dense.rel_error, trace_cli);
    let from_file = embed::fit(
        &options(&words),
        Matrix::File(path_str(&npy).to_owned()),
        &control,
    )
    .expect("file fit");
    assert_eq!(from_file.w, w_cli);

    // The same matrix as CSR (f64 values, i64 indices) gives the same
    // factorization: the engine's sparse and dense kernels agree to
    // rounding, not bits, so within 1e-4.
    let (mut data, mut indices, mut indptr) = (Vec::new(), Vec::new(), vec![0i64]);
    for row in x.outer_iter() {
        for (j, &v) in row.iter().enumerate() {
            if v != 0.0 {
                data.push(f64::from(v));
                indices.push(j as i64);
            }
        }
        indptr.push(data.len() as i64);
    }
    let csr = CsrRows::new(
        Values::F64(&data),
        Indices::I64(&indices),
        Indices::I64(&indptr),
        x.dim(),
    )
    .expect("csr");
    let sparse = embed::fit(&options(&words), rows_of(Box::new(csr)), &control).expect("csr fit");
    let last = |t: &[f64]| *t.last().expect("trace");
    assert!((last(&sparse.rel_error) - last(&trace_cli)).abs() < 1e-4);
}

#[test]
fn errors_keep_their_kind_and_a_stopped_fit_stops() {
    let (x, _) = SeedGenerator::new(4, 3, 20).matrix(100);
    let control = Control::default();
    let fit = |words: &[&str], x: &ndarray::Array2<f32>, control: &Control| {
        embed::fit(
            &options(words),
            rows_of(Box::new(DenseRows::new(Dense::F32(x.view())))),
            control,
        )
    };
    match fit(&["-k", "0"], &x, &control) {
        Err(Error::Usage(m)) => assert!(m.contains("k must be at least 1"), "{m}"),
        other => panic!("{:?}", other.map(|f| f.rel_error)),
    }
    let mut negative = x.clone();
    negative[(5, 2)] = -1.0;
    match fit(&["-k", "2"], &negative, &control) {
        Err(Error::Data(m)) => assert!(m.contains("row 5") && m.contains("the array"), "{m}"),
        other => panic!("{:?}", other.map(|f| f.rel_error)),
    }
    match embed::fit(
        &options(&["-k", "2"]),
        Matrix::File("/no/such.h5".into()),
        &control,
    ) {
        Err(Error::NotFound(m)) => assert!(m.contains("/no/such.h5"), "{m}"),
        other => panic!("{:?}", other.map(|f| f.rel_error)),
    }
    match fit(&["-k", "2", "--memory", "1KiB"], &x, &control) {
        Err(Error::Memory(m)) => assert!(m.contains("budget"), "{m}"),
        other => panic!("{:?}", other.map(|f| f.rel_error)),
    }
    let stopped = Control::default();
    stopped.stop.store(true, Ordering::Relaxed);
    let r = fit(&["-k", "2"], &x, &stopped);
    assert!(
        matches!(r, Err(Error::Stopped)),
        "{:?}",
        r.map(|f| f.rel_error)
    );
}
