//! What a fit hands a scientist beyond W and H: the loadings in the data's
//! units beside the scaled ones, the programs' top genes, and the
//! command-line aids (completions, manual page, the output error).

use ndarray::Array2;

use crate::util::*;

/// A small count matrix whose columns have very different scales, so that
/// the two H differ.
fn counts(n: usize, m: usize) -> Array2<f32> {
    let (x, _) = nmflow_testkit::SeedGenerator::new(4, 3, m).matrix(n);
    Array2::from_shape_fn((n, m), |(i, j)| (x[(i, j)] * (1 + j % 7) as f32).round())
}

#[test]
fn loadings_are_in_the_data_units_and_reconstruct_it() {
    let dir = tempdir();
    let data = join(&dir, "data.h5");
    let x = counts(300, 24);
    write_h5(&data, "X", &x);
    let result = join(&dir, "r.h5");
    run_ok(
        "fit",
        &[&[
            "fit",
            path_str(&data),
            "-k",
            "3",
            "--max-iter",
            "200",
            "-q",
            "-o",
            path_str(&result),
        ]],
    );
    let (w, h, h_scaled) = (
        read2(&result, "W"),
        read2(&result, "H"),
        read2(&result, "H_scaled"),
    );
    let col_scale = read1::<f32>(&result, "col_scale");
    for ((j, c), &v) in h.indexed_iter() {
        assert_eq!(v, h_scaled[(j, c)] * col_scale[c], "H[{j}, {c}]");
    }
    // X ≈ W·H in the data's units within the fit's own error.
    let rel = read1::<f64>(&result, "rel_error");
    let wh = w.dot(&h);
    let scaled_err = |a: &Array2<f32>| -> f64 {
        a.indexed_iter()
            .map(|((i, c), &v)| (f64::from(v - wh[(i, c)]) / f64::from(col_scale[c])).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let x_s_norm = x
        .indexed_iter()
        .map(|((_, c), &v)| (f64::from(v) / f64::from(col_scale[c])).powi(2))
        .sum::<f64>()
        .sqrt();
    let last = *rel.last().expect("trace");
    assert!((scaled_err(&x) / x_s_norm - last).abs() < 1e-3, "{last}");
    let units = hdf5::File::open(&result)
        .and_then(|f| f.dataset("H"))
        .and_then(|d| d.attr("units"))
        .and_then(|a| a.read_scalar::<hdf5::types::VarLenUnicode>())
        .expect("units attribute");
    assert!(
        units.as_str().contains("H_scaled times col_scale"),
        "{units}"
    );

    // The programs' table beside the result, and the same from top-genes.
    let beside = join(&dir, "r.programs.tsv");
    let table = std::fs::read_to_string(&beside).expect("programs table");
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines[0], "program\trank\tgene\tloading\tspecificity");
    assert_eq!(
        lines.len(),
        1 + 3 * 24,
        "every gene of every program (24 < 50)"
    );
    let printed = run(&["top-genes", path_str(&result), "-n", "50"]);
    assert!(printed.status.success(), "{}", stderr(&printed));
    assert_eq!(stdout(&printed), table);
    // The top gene of program 0 by loading is the largest loading of H's row 0.
    let top = lines[1].split('\t').collect::<Vec<_>>();
    let best = (0..24)
        .max_by(|&a, &b| h[(0, a)].total_cmp(&h[(0, b)]))
        .expect("genes");
    assert_eq!(top[2], format!("gene_{best}"));
    let by_spec = run(&[
        "top-genes",
        path_str(&result),
        "-n",
        "2",
        "--by",
        "specificity",
    ]);
    assert_eq!(stdout(&by_spec).lines().count(), 1 + 3 * 2);
}

#[test]
fn transform_and_restarts_read_the_scaled_loadings() {
    let dir = tempdir();
    let data = join(&dir, "data.h5");
    write_h5(&data, "X", &counts(200, 16));
    let result = join(&dir, "r.h5");
    run_ok(
        "fit",
        &[&[
            "fit",
            path_str(&data),
            "-k",
            "3",
            "--max-iter",
            "30",
            "-q",
            "-o",
            path_str(&result),
        ]],
    );
    // --h0 from a result takes H_scaled: the continued fit starts where
    // the first ended (its first error is no larger than the last one).
    let again = join(&dir, "again.h5");
    let w0 = format!("{}:/W", path_str(&result));
    run_ok(
        "fit",
        &[&[
            "fit",
            path_str(&data),
            "-k",
            "3",
            "--max-iter",
            "1",
            "--init",
            "custom",
            "--w0",
            &w0,
            "--h0",
            path_str(&result),
            "-q",
            "-o",
            path_str(&again),
        ]],
    );
    let first = read1::<f64>(&result, "rel_error");
    let next = read1::<f64>(&again, "rel_error");
    assert!(
        next[0] <= first[first.len() - 1] * (1.0 + 1e-6),
        "{next:?} {first:?}"
    );
}

#[test]
fn completions_and_the_manual_page_are_generated_from_the_commands() {
    let bash = run(&["completions", "bash"]);
    assert!(bash.status.success(), "{}", stderr(&bash));
    let script = stdout(&bash);
    assert!(script.contains("top-genes") && script.contains("--max-iter"));
    let dir = tempdir();
    let file = join(&dir, "nmflow.bash");
    std::fs::write(&file, &script).expect("write");
    let parsed = std::process::Command::new("bash")
        .args(["-n", path_str(&file)])
        .output()
        .expect("bash");
    assert!(
        parsed.status.success(),
        "{}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    for (shell, needle) in [("zsh", "#compdef nmflow"), ("fish", "complete -c nmflow")] {
        let out = run(&["completions", shell]);
        assert!(
            out.status.success() && stdout(&out).contains(needle),
            "{shell}"
        );
    }
    let man = run(&["man"]);
    assert!(man.status.success(), "{}", stderr(&man));
    let page = stdout(&man);
    assert!(
        page.starts_with(".ie") || page.contains(".TH nmflow"),
        "{}",
        &page[..80.min(page.len())]
    );
    assert!(page.contains("top\\-genes") || page.contains("top-genes"));
}

#[test]
fn a_fit_without_an_output_names_both_ways_to_give_one() {
    let dir = tempdir();
    let data = join(&dir, "data.h5");
    write_h5(&data, "X", &counts(20, 5));
    let out = run(&["fit", path_str(&data), "-k", "2"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("--output") && err.contains("--write-into"),
        "{err}"
    );
}
