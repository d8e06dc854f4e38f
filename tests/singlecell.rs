//! Sparse and single-cell inputs made by the tests: CSR, CSC and dense
//! encodings of one matrix agree; malformed sparse data is refused with the
//! file, group and row or column at fault.

use std::path::Path;

use ndarray::Array2;

use crate::util::*;

/// A small count matrix with an empty row, an empty column, and values
/// that are not all whole numbers only when `fractional`.
fn counts() -> Array2<f32> {
    let x = seed_matrix(60, 14, 3);
    let mut x = x.mapv(|v| if v > 0.55 { (v * 5.0).round() } else { 0.0 });
    x.row_mut(7).fill(0.0);
    x.column_mut(3).fill(0.0);
    x
}

fn fit_w(input: &str, extra: &[&str], dir: &tempfile::TempDir, tag: &str) -> Array2<f32> {
    let out = join(dir, &format!("{tag}.h5"));
    run_ok(
        tag,
        &[
            &[
                "fit",
                input,
                "-k",
                "3",
                "--max-iter",
                "12",
                "--tol",
                "0",
                "-q",
                "-o",
                path_str(&out),
            ],
            extra,
        ],
    );
    read2(&out, "W")
}

fn assert_close(a: &Array2<f32>, b: &Array2<f32>, what: &str) {
    let scale = a.iter().fold(0.0f32, |m, &v| m.max(v));
    let diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(
        diff <= 1e-4 * scale,
        "{what}: differs by {diff} (scale {scale})"
    );
}

#[test]
fn csr_csc_dense_and_widths_give_the_same_factors() {
    let dir = tempdir();
    let x = counts();
    let shape = [x.nrows() as i64, x.ncols() as i64];
    let dense_path = join(&dir, "dense.npy");
    write_npy(&dense_path, &x);
    let file = join(&dir, "sc.h5ad");
    let (data, indices, indptr) = compressed(&x, false);
    sparse_h5ad(
        &file,
        "X",
        "csr_matrix",
        Some(&shape),
        &data,
        &indices,
        &indptr,
    );
    let narrow: Vec<u16> = indices.iter().map(|&i| i as u16).collect();
    let ints: Vec<i32> = data.iter().map(|&v| v as i32).collect();
    sparse_h5ad(
        &file,
        "layers/narrow",
        "csr_matrix",
        Some(&shape),
        &ints,
        &narrow,
        &indptr,
    );
    let (cdata, cindices, cindptr) = compressed(&x, true);
    sparse_h5ad(
        &file,
        "layers/csc",
        "csc_matrix",
        Some(&shape),
        &cdata,
        &cindices,
        &cindptr,
    );
    write_h5(&file, "layers/dense", &x.mapv(f64::from));

    let reference = fit_w(path_str(&dense_path), &[], &dir, "npy");
    for (layer, extra) in [
        ("X", vec![]),
        ("narrow", vec!["--layer", "narrow"]),
        ("csc", vec!["--layer", "csc"]),
        ("dense", vec!["--layer", "dense"]),
    ] {
        let w = fit_w(path_str(&file), &extra, &dir, layer);
        assert_close(&reference, &w, layer);
    }
    // Normalised: sparse and dense agree as well.
    let norm = ["--normalize", "cp10k-log1p"];
    let dense_norm = fit_w(path_str(&dense_path), &norm, &dir, "npy-norm");
    let csr_norm = fit_w(path_str(&file), &norm, &dir, "csr-norm");
    assert_close(&dense_norm, &csr_norm, "cp10k-log1p");
    assert!(
        read2(&join(&dir, "csr-norm.h5"), "W")
            .iter()
            .all(|v| v.is_finite())
    );
}

/// Runs fit on `file` (with `extra`) expecting a clean failure naming `needles`.
fn refused(file: &Path, extra: &[&str], needles: &[&str]) {
    let out = file.with_extension("out.h5");
    let args = [
        &["fit", path_str(file), "-k", "2", "-q", "-o", path_str(&out)][..],
        extra,
    ]
    .concat();
    assert_fails(&run(&args), needles);
    assert!(!out.exists());
}

/// (file name, data, indices, indptr, shape attribute, expected message parts)
type Case<'a> = (
    &'a str,
    Vec<f32>,
    Vec<i64>,
    Vec<i64>,
    Option<[i64; 2]>,
    Vec<&'a str>,
);

#[test]
fn malformed_sparse_matrices_are_refused_with_what_is_wrong() {
    let dir = tempdir();
    let shape = [3i64, 4];
    let cases: Vec<Case> = vec![
        (
            "not_monotone",
            vec![1.0, 2.0, 3.0],
            vec![0, 1, 2],
            vec![0, 2, 1, 3],
            Some(shape),
            vec!["/X", "not monotone", "row 1"],
        ),
        (
            "short_end",
            vec![1.0, 2.0, 3.0],
            vec![0, 1, 2],
            vec![0, 1, 2, 2],
            Some(shape),
            vec!["indptr ends at 2", "3 entries"],
        ),
        (
            "index_range",
            vec![1.0, 2.0, 3.0],
            vec![0, 9, 2],
            vec![0, 1, 2, 3],
            Some(shape),
            vec!["column index 9 out of range in row 1", "4 columns"],
        ),
        (
            "negative_index",
            vec![1.0, 2.0, 3.0],
            vec![0, -1, 2],
            vec![0, 1, 2, 3],
            Some(shape),
            vec!["column index -1"],
        ),
        (
            "lengths",
            vec![1.0, 2.0, 3.0],
            vec![0, 1],
            vec![0, 1, 2, 3],
            Some(shape),
            vec!["data has 3 entries but indices has 2"],
        ),
        (
            "no_shape",
            vec![1.0],
            vec![0],
            vec![0, 1, 1, 1],
            None,
            vec!["no 'shape' attribute"],
        ),
        (
            "bad_shape",
            vec![1.0],
            vec![0],
            vec![0, 1, 1, 1],
            Some([5, 4]),
            vec!["indptr has 4 entries", "5 rows"],
        ),
        (
            "negative_value",
            vec![1.0, -2.0, 3.0],
            vec![0, 1, 2],
            vec![0, 1, 2, 3],
            Some(shape),
            vec!["negative value -2", "row 1, column 1"],
        ),
    ];
    for (name, data, indices, indptr, shape, needles) in cases {
        let file = join(&dir, &format!("{name}.h5ad"));
        sparse_h5ad(
            &file,
            "X",
            "csr_matrix",
            shape.as_ref().map(|s| &s[..]),
            &data,
            &indices,
            &indptr,
        );
        refused(&file, &[], &needles);
    }
    // CSC: a row index out of range names its column.
    let file = join(&dir, "csc.h5ad");
    sparse_h5ad(
        &file,
        "X",
        "csc_matrix",
        Some(&shape),
        &[1.0f32, 2.0],
        &[0i64, 7],
        &[0, 1, 2, 2, 2],
    );
    refused(&file, &[], &["row index 7 out of range in column 1"]);
}

#[test]
fn unsupported_types_missing_x_layers_and_unknown_10x_layouts_are_refused() {
    let dir = tempdir();
    let strings: Vec<hdf5::types::VarLenUnicode> =
        ["a", "b"].iter().map(|s| s.parse().expect("s")).collect();
    let file = join(&dir, "strings.h5ad");
    sparse_h5ad(
        &file,
        "X",
        "csr_matrix",
        Some(&[2, 2]),
        &strings,
        &[0i64, 1],
        &[0, 1, 2],
    );
    refused(&file, &[], &["/X/data", "unsupported data type"]);

    let file = join(&dir, "nox.h5ad");
    sparse_h5ad(
        &file,
        "layers/counts",
        "csr_matrix",
        Some(&[1, 1]),
        &[1.0f32],
        &[0i64],
        &[0, 1],
    );
    refused(&file, &[], &["has no X", "layers/counts (--layer counts)"]);
    refused(
        &file,
        &["--layer", "spliced"],
        &["no layer 'spliced'", "layers/counts"],
    );
    refused(&file, &["--raw"], &["no raw/X"]);

    let file = join(&dir, "tenx.h5");
    {
        let f = hdf5::File::create(&file).expect("create");
        let m = f.create_group("matrix").expect("matrix");
        m.new_dataset_builder()
            .with_data(&[1i32])
            .create("data")
            .expect("data");
    }
    refused(
        &file,
        &[],
        &["unknown 10x layout", "indices, indptr, shape"],
    );

    let file = join(&dir, "plain.h5");
    write_h5(&file, "X", &counts());
    refused(
        &file,
        &["--layer", "x"],
        &["--layer applies to h5ad and loom files"],
    );
}

#[test]
fn refused_write_into_leaves_the_input_byte_for_byte() {
    let dir = tempdir();
    let file = join(&dir, "old.h5ad");
    let x = counts();
    let (data, indices, indptr) = compressed(&x, false);
    sparse_h5ad(
        &file,
        "X",
        "csr_matrix",
        Some(&[60, 14]),
        &data,
        &indices,
        &indptr,
    );
    // anndata < 0.7 stored obsm as a (compound) dataset, which cannot take children.
    write_h5(&file, "obsm", &ndarray::Array2::<f32>::zeros((60, 2)));
    let before = std::fs::read(&file).expect("read");
    let out = run(&[
        "fit",
        path_str(&file),
        "-k",
        "2",
        "--max-iter",
        "3",
        "-q",
        "--write-into",
        path_str(&file),
    ]);
    assert_fails(
        &out,
        &["old.h5ad", "obsm", "anndata < 0.7", "-o result.h5ad"],
    );
    assert_eq!(
        std::fs::read(&file).expect("read"),
        before,
        "the input changed"
    );
    assert_eq!(
        files_in(dir.path()),
        vec!["old.h5ad"],
        "a temporary file was left"
    );
    // --write-into names the input; another file is refused before any work.
    let other = join(&dir, "other.h5ad");
    std::fs::copy(&file, &other).expect("copy");
    let out = run(&[
        "fit",
        path_str(&file),
        "-k",
        "2",
        "-q",
        "--write-into",
        path_str(&other),
    ]);
    assert_usage_error(&out, &["--write-into must name the input file"]);
}
