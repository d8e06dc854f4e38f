//! Bad input: a clear message naming what is at fault, exit code 1, no panic,
//! and no output file (nor a temporary one) left behind.

use std::path::Path;

use crate::util::*;

/// Runs `fit` on `input` writing into `dir`, and checks the failure.
fn fit_fails(dir: &Path, input: &str, extra: &[&str], needles: &[&str]) {
    let before = files_in(dir);
    let result = dir.join("result.h5");
    let args = [
        &[
            "fit",
            input,
            "-o",
            path_str(&result),
            "--max-iter",
            "3",
            "-q",
        ][..],
        extra,
    ]
    .concat();
    let out = run(&args);
    assert_fails(&out, needles);
    assert!(!result.exists(), "an output was written for {input}");
    assert_eq!(
        files_in(dir),
        before,
        "files appeared or vanished for {input}"
    );
}

#[test]
fn negative_value_is_refused_with_its_row_and_column() {
    let dir = tempdir();
    let data = join(&dir, "neg.h5");
    let mut x = seed_matrix(60, 9, 2);
    x[(41, 5)] = -2.0;
    write_h5(&data, "X", &x);
    fit_fails(
        dir.path(),
        path_str(&data),
        &["-k", "2"],
        &["neg.h5:/X", "negative value -2", "row 41, column 5"],
    );
}

#[test]
fn nan_and_infinity_are_refused_with_their_position() {
    let dir = tempdir();
    for (name, value) in [("nan.npy", f32::NAN), ("inf.npy", f32::INFINITY)] {
        let data = join(&dir, name);
        let mut x = seed_matrix(30, 7, 2);
        x[(12, 3)] = value;
        write_npy(&data, &x);
        fit_fails(
            dir.path(),
            path_str(&data),
            &["-k", "2"],
            &[name, "non-finite value", "row 12, column 3"],
        );
    }
}

#[test]
fn k_zero_and_k_too_large_are_refused() {
    let dir = tempdir();
    let data = join(&dir, "x.h5");
    write_h5(&data, "X", &seed_matrix(20, 6, 2));
    let out = run(&["fit", path_str(&data), "-k", "0", "-o", "r.h5"]);
    assert_usage_error(&out, &["k must be at least 1"]);
    fit_fails(
        dir.path(),
        path_str(&data),
        &["-k", "7"],
        &["k = 7", "min(rows, columns) = 6", "20 × 6"],
    );
}

#[test]
fn missing_file_is_named() {
    let dir = tempdir();
    let missing = join(&dir, "nope.h5");
    fit_fails(
        dir.path(),
        path_str(&missing),
        &["-k", "2"],
        &["nope.h5", "no such file"],
    );
}

#[test]
fn a_file_that_is_not_hdf5_is_refused() {
    let dir = tempdir();
    let text = join(&dir, "table.csv");
    std::fs::write(&text, "a,b\n1,2\n").expect("write");
    fit_fails(
        dir.path(),
        path_str(&text),
        &["-k", "1"],
        &["table.csv", "not an HDF5 file or a .npy file"],
    );
}

#[test]
fn a_missing_dataset_lists_the_ones_that_exist() {
    let dir = tempdir();
    let data = join(&dir, "d.h5");
    write_h5(&data, "counts", &seed_matrix(20, 6, 2));
    write_h5(&data, "group/other", &seed_matrix(10, 6, 2));
    let spec = format!("{}:/absent", path_str(&data));
    fit_fails(
        dir.path(),
        &spec,
        &["-k", "2"],
        &["d.h5", "no dataset '/absent'", "/counts", "/group/other"],
    );
    // No dataset named and no /X: ambiguous, listed as well.
    fit_fails(
        dir.path(),
        path_str(&data),
        &["-k", "2"],
        &["name the dataset", "/counts, /group/other"],
    );
}

#[test]
fn non_numeric_and_one_dimensional_datasets_are_refused() {
    let dir = tempdir();
    let data = join(&dir, "d.h5");
    let names: Vec<hdf5::types::VarLenUnicode> = ["a", "b"]
        .iter()
        .map(|s| s.parse().expect("string"))
        .collect();
    write_h5_1d(&data, "names", &names);
    write_h5_1d(&data, "vector", &[1.0f32, 2.0, 3.0]);
    let spec = format!("{}:/names", path_str(&data));
    fit_fails(
        dir.path(),
        &spec,
        &["-k", "1"],
        &["d.h5", "'/names'", "not a numeric type"],
    );
    let spec = format!("{}:/vector", path_str(&data));
    fit_fails(
        dir.path(),
        &spec,
        &["-k", "1"],
        &["d.h5", "'/vector'", "shape [3]", "2-D"],
    );
}

#[test]
fn an_existing_output_is_kept_without_force() {
    let dir = tempdir();
    let data = join(&dir, "x.h5");
    write_h5(&data, "X", &seed_matrix(20, 6, 2));
    let result = join(&dir, "result.h5");
    std::fs::write(&result, b"precious").expect("write");
    let out = run(&[
        "fit",
        path_str(&data),
        "-k",
        "2",
        "-o",
        path_str(&result),
        "-q",
    ]);
    assert_fails(&out, &["result.h5", "exists", "--force"]);
    assert_eq!(std::fs::read(&result).expect("read"), b"precious");
    assert_eq!(files_in(dir.path()), vec!["result.h5", "x.h5"]);
}

#[test]
fn truncated_files_are_refused() {
    let dir = tempdir();
    let h5 = join(&dir, "cut.h5");
    write_h5(&h5, "X", &seed_matrix(500, 40, 2));
    let npy = join(&dir, "cut.npy");
    write_npy(&npy, &seed_matrix(500, 40, 2));
    for path in [&h5, &npy] {
        let len = std::fs::metadata(path).expect("metadata").len();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .expect("open");
        file.set_len(len / 2).expect("truncate");
    }
    fit_fails(dir.path(), path_str(&h5), &["-k", "2"], &["cut.h5"]);
    fit_fails(
        dir.path(),
        path_str(&npy),
        &["-k", "2"],
        &["cut.npy", "truncated"],
    );
}

#[test]
fn custom_init_of_the_wrong_shape_is_refused() {
    let dir = tempdir();
    let data = join(&dir, "x.h5");
    write_h5(&data, "X", &seed_matrix(20, 6, 2));
    let w0 = join(&dir, "w0.npy");
    let h0 = join(&dir, "h0.npy");
    write_npy(&w0, &ndarray::Array2::ones((19, 2)));
    write_npy(&h0, &ndarray::Array2::ones((2, 6)));
    fit_fails(
        dir.path(),
        path_str(&data),
        &[
            "-k",
            "2",
            "--init",
            "custom",
            "--w0",
            path_str(&w0),
            "--h0",
            path_str(&h0),
        ],
        &["W0 has shape (19, 2), expected (20, 2)"],
    );
    let out = run(&[
        "fit",
        path_str(&data),
        "-k",
        "2",
        "--init",
        "custom",
        "-o",
        "r.h5",
    ]);
    assert_usage_error(&out, &["--w0 FILE and --h0 FILE"]);
}

#[test]
fn an_all_zero_matrix_is_refused() {
    let dir = tempdir();
    let data = join(&dir, "zeros.h5");
    write_h5(&data, "X", &ndarray::Array2::<f32>::zeros((10, 4)));
    fit_fails(
        dir.path(),
        path_str(&data),
        &["-k", "2"],
        &["zeros.h5", "every entry of the matrix is zero"],
    );
}

#[test]
fn subnormal_and_wide_range_columns_fit_to_finite_factors() {
    // FPKM tables hold values near 1e-43 (subnormal in f32); dividing by
    // their standard deviation once overflowed to an all-NaN "result" with
    // exit code 0 and a printed error of 0.
    let dir = tempdir();
    let data = join(&dir, "fpkm.h5");
    write_h5(
        &data,
        "X",
        &nmflow_testkit::extreme_matrix(SEED, 200, 40, 4),
    );
    let result = join(&dir, "out.h5");
    let out = run(&[
        "fit",
        path_str(&data),
        "-k",
        "4",
        "-o",
        path_str(&result),
        "--json",
        "-q",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let summary: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    let rel = summary["rel_error"].as_f64().expect("rel_error");
    assert!(rel > 0.01 && rel < 1.0, "{rel}");
    for name in ["W", "H"] {
        assert!(read2(&result, name).iter().all(|v| v.is_finite()), "{name}");
    }
}

#[test]
fn values_out_of_single_precision_range_are_refused() {
    let dir = tempdir();
    let tiny = join(&dir, "tiny.h5");
    write_h5(
        &tiny,
        "X",
        &nmflow_testkit::scaled_matrix(SEED, 50, 8, 2, 1e-43),
    );
    fit_fails(
        dir.path(),
        path_str(&tiny),
        &["-k", "2"],
        &["tiny.h5", "too small", "multiply the data"],
    );
    let huge = join(&dir, "huge.h5");
    write_h5(
        &huge,
        "X",
        &nmflow_testkit::scaled_matrix(SEED, 50, 8, 2, 1e37),
    );
    for scale in ["col-std", "none"] {
        fit_fails(
            dir.path(),
            path_str(&huge),
            &["-k", "2", "--scale", scale],
            &["huge.h5", "column ", "divide the data"],
        );
    }
}
