//! `nmflow transform` end to end: the round trip on the training rows and
//! the refusals before any work.

use crate::util::*;

#[test]
fn transform_of_the_training_rows_gives_back_w_and_refuses_mismatches() {
    let dir = tempdir();
    let x = seed_matrix(200, 25, 3);
    let data = join(&dir, "x.npy");
    write_npy(&data, &x);
    let fit = join(&dir, "fit.h5");
    run_ok(
        "fit",
        &[&[
            "fit",
            path_str(&data),
            "-k",
            "3",
            "--solver",
            "hals",
            "--tol",
            "0",
            "--max-iter",
            "400",
            "-q",
            "-o",
            path_str(&fit),
        ]],
    );
    let out = join(&dir, "w.h5");
    let common = [
        "--components",
        path_str(&fit),
        "--tol",
        "1e-7",
        "-q",
        "-o",
        path_str(&out),
    ];
    run_ok("transform", &[&["transform", path_str(&data)], &common]);
    let (w_fit, w) = (read2(&fit, "W"), read2(&out, "W"));
    let scale = w_fit.iter().fold(0.0f32, |m, &v| m.max(v));
    let diff = w_fit
        .iter()
        .zip(&w)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(diff < 1e-3 * scale, "W differs by {diff} (max {scale})");
    assert_eq!(read1::<u32>(&out, "cluster").len(), 200);

    // Another number of genes, and no names to match them by.
    let narrow = join(&dir, "narrow.npy");
    write_npy(&narrow, &seed_matrix(50, 24, 3));
    let refused = join(&dir, "refused.h5");
    let result = run(&[
        "transform",
        path_str(&narrow),
        "--components",
        path_str(&fit),
        "-o",
        path_str(&refused),
    ]);
    assert_usage_error(&result, &["has 25 genes", "has 24", "by name"]);
    assert!(!refused.exists());
    // A file that is not a result.
    let result = run(&[
        "transform",
        path_str(&data),
        "--components",
        path_str(&data),
        "-o",
        path_str(&refused),
    ]);
    assert_fails(&result, &["x.npy"]);
    // Negative input values are refused, naming the entry, with no output.
    let mut bad = x.clone();
    bad[(123, 7)] = -2.0;
    let bad_path = join(&dir, "bad.npy");
    write_npy(&bad_path, &bad);
    let result = run(&[
        "transform",
        path_str(&bad_path),
        "--components",
        path_str(&fit),
        "-o",
        path_str(&refused),
    ]);
    assert_fails(&result, &["bad.npy", "123", "7"]);
    assert!(!refused.exists());
    let mut names = files_in(dir.path());
    names.sort();
    // The fit's result comes with its programs' table; a projection does
    // not (its H is the fit's).
    assert_eq!(
        names,
        [
            "bad.npy",
            "fit.h5",
            "fit.programs.tsv",
            "narrow.npy",
            "w.h5",
            "x.npy"
        ]
    );
}
