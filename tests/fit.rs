//! `nmflow fit` end to end.

use ndarray::Array2;
use nmflow_core::init::{random_h, random_w};

use crate::util::*;

#[test]
fn fit_writes_factors_error_trace_clusters_and_parameters() {
    let dir = tempdir();
    let data = join(&dir, "data.h5");
    let x = seed_matrix(300, 40, 3);
    write_h5(&data, "X", &x);
    let result = join(&dir, "result.h5");
    let out = run(&[
        "fit",
        path_str(&data),
        "-k",
        "3",
        "--max-iter",
        "25",
        "--tol",
        "0",
        "--seed",
        "7",
        "-o",
        path_str(&result),
        "--json",
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("one JSON object");
    assert_eq!(summary["n_iter"], 25);
    assert_eq!(summary["n_rows"], 300);
    assert_eq!(summary["dataset"], "/X");

    let w = read2(&result, "W");
    let h = read2(&result, "H");
    assert_eq!(w.dim(), (300, 3));
    assert_eq!(h.dim(), (3, 40));
    assert!(w.iter().chain(h.iter()).all(|&v| v >= 0.0 && v.is_finite()));
    let rel_error = read1::<f64>(&result, "rel_error");
    assert_eq!(rel_error.len(), 25);
    assert_eq!(summary["rel_error"].as_f64(), rel_error.last().copied());
    let cluster = read1::<u32>(&result, "cluster");
    assert_eq!(cluster, nmflow_core::kernels::argmax_rows(w.view()));
    assert_eq!(read1::<f32>(&result, "col_scale").len(), 40);
    let seconds = read1::<f64>(&result, "iteration_seconds");
    assert_eq!(seconds.len(), 25);
    assert!(seconds.iter().all(|s| s.is_finite() && *s >= 0.0));

    let file = hdf5::File::open(&result).expect("open");
    let k: i64 = file.attr("k").and_then(|a| a.read_scalar()).expect("k");
    let seed: i64 = file
        .attr("seed")
        .and_then(|a| a.read_scalar())
        .expect("seed");
    let scale: hdf5::types::VarLenUnicode = file
        .attr("scale")
        .and_then(|a| a.read_scalar())
        .expect("scale");
    assert_eq!((k, seed, scale.as_str()), (3, 7, "col-std"));
    for name in [
        "max_iter",
        "tol",
        "init",
        "block_rows",
        "threads",
        "epsilon",
        "nmflow_version",
        "input",
        "dataset",
        "prepare_seconds",
        "solver",
        "inner",
        "alpha_W",
        "alpha_H",
        "l1_ratio",
    ] {
        assert!(file.attr(name).is_ok(), "attribute {name} missing");
    }
    assert_eq!(
        files_in(dir.path()),
        vec!["data.h5", "result.h5", "result.programs.tsv"]
    );
}

#[test]
fn same_matrix_from_npy_hdf5_dtypes_and_compression_gives_same_factors() {
    let dir = tempdir();
    let x = seed_matrix(120, 30, 3).mapv(|v| (v * 4.0).round());
    let inputs = [
        ("f32.npy", None),
        ("f32.h5", Some("f32")),
        ("f64.h5", Some("f64")),
        ("i32.h5", Some("i32")),
        ("gzip.h5", Some("gzip")),
    ];
    for (name, kind) in inputs {
        let path = join(&dir, name);
        match kind {
            None => write_npy(&path, &x),
            Some("f32") => write_h5(&path, "X", &x),
            Some("f64") => write_h5(&path, "X", &x.mapv(f64::from)),
            Some("i32") => write_h5(&path, "X", &x.mapv(|v| v as i32)),
            Some(_) => write_h5_gzip(&path, "X", &x, 16),
        }
    }
    let mut results = Vec::new();
    for (name, _) in inputs {
        let result = join(&dir, &format!("{name}.out.h5"));
        let out = run(&[
            "fit",
            path_str(&join(&dir, name)),
            "-k",
            "3",
            "--max-iter",
            "15",
            "--tol",
            "0",
            "--block-rows",
            "32",
            "--quiet",
            "-o",
            path_str(&result),
        ]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        results.push((name, read2(&result, "W"), read2(&result, "H")));
    }
    let (_, w0, h0) = &results[0];
    for (name, w, h) in &results[1..] {
        assert_eq!(w, w0, "W from {name} differs from the .npy run");
        assert_eq!(h, h0, "H from {name} differs from the .npy run");
    }
}

#[test]
fn dataset_path_selects_a_nested_dataset() {
    let dir = tempdir();
    let data = join(&dir, "nested.h5");
    write_h5(&data, "some/group/X", &seed_matrix(50, 10, 2));
    write_h5(&data, "other", &seed_matrix(20, 5, 2));
    let result = join(&dir, "r.h5");
    let spec = format!("{}:/some/group/X", path_str(&data));
    let out = run(&[
        "fit",
        &spec,
        "-k",
        "2",
        "--max-iter",
        "5",
        "-q",
        "-o",
        path_str(&result),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(read2(&result, "W").nrows(), 50);
}

#[test]
fn custom_init_reproduces_the_random_start() {
    let dir = tempdir();
    let data = join(&dir, "data.h5");
    let x = seed_matrix(80, 16, 2);
    write_h5(&data, "X", &x);
    let (k, seed) = (2, 11);
    // The random start written out as files, read back through --w0/--h0.
    let w0: Array2<f32> = random_w(seed, 80, k);
    let h0: Array2<f32> = random_h(seed, k, 16);
    write_npy(&join(&dir, "w0.npy"), &w0);
    write_h5(&join(&dir, "init.h5"), "H0", &h0);
    let random = join(&dir, "random.h5");
    let custom = join(&dir, "custom.h5");
    let common = ["-k", "2", "--max-iter", "10", "--tol", "0", "-q"];
    let out = run(&[
        &[
            "fit",
            path_str(&data),
            "--seed",
            "11",
            "-o",
            path_str(&random),
        ],
        &common[..],
    ]
    .concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let h0_spec = format!("{}:/H0", path_str(&join(&dir, "init.h5")));
    let out = run(&[
        &[
            "fit",
            path_str(&data),
            "--init",
            "custom",
            "--w0",
            path_str(&join(&dir, "w0.npy")),
            "--h0",
            &h0_spec,
            "-o",
            path_str(&custom),
        ],
        &common[..],
    ]
    .concat());
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(read2(&random, "W"), read2(&custom, "W"));
    assert_eq!(read2(&random, "H"), read2(&custom, "H"));
}

#[test]
fn result_thread_count_does_not_change_the_output() {
    let dir = tempdir();
    let data = join(&dir, "data.npy");
    write_npy(&data, &seed_matrix(400, 300, 4));
    let mut ws = Vec::new();
    for threads in ["1", "2"] {
        let result = join(&dir, &format!("t{threads}.h5"));
        let out = run(&[
            "fit",
            path_str(&data),
            "-k",
            "4",
            "--max-iter",
            "8",
            "--threads",
            threads,
            "-q",
            "-o",
            path_str(&result),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        ws.push(read2(&result, "W"));
    }
    assert_eq!(ws[0], ws[1]);
}

#[test]
fn force_replaces_an_existing_output_and_quiet_prints_nothing() {
    let dir = tempdir();
    let data = join(&dir, "data.h5");
    write_h5(&data, "X", &seed_matrix(40, 8, 2));
    let result = join(&dir, "r.h5");
    std::fs::write(&result, b"old").expect("write");
    let out = run(&[
        "fit",
        path_str(&data),
        "-k",
        "2",
        "--max-iter",
        "3",
        "--force",
        "--quiet",
        "-o",
        path_str(&result),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        out.stdout.is_empty() && out.stderr.is_empty(),
        "quiet run printed something"
    );
    assert_eq!(read2(&result, "W").nrows(), 40);
}

#[test]
fn summary_names_input_error_and_output() {
    let dir = tempdir();
    let data = join(&dir, "data.h5");
    write_h5(&data, "X", &seed_matrix(40, 8, 2));
    let result = join(&dir, "r.h5");
    let out = run(&[
        "fit",
        path_str(&data),
        "-k",
        "2",
        "--max-iter",
        "3",
        "-o",
        path_str(&result),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for needle in ["data.h5:/X", "40 × 8", "rel_error", "iterations 3", "r.h5"] {
        assert!(text.contains(needle), "summary lacks {needle:?}: {text}");
    }
}

#[test]
fn the_block_cache_and_a_memory_budget_keep_results_and_stay_within_it() {
    let dir = tempdir();
    let data = join(&dir, "data.h5");
    write_h5_gzip(&data, "X", &seed_matrix(3000, 60, 4), 100);
    let mut ws = Vec::new();
    for (tag, extra) in [
        ("cached", vec!["--cache", path_str(dir.path())]),
        ("uncached", vec!["--no-cache"]),
        ("budget", vec!["--memory", "200MiB"]),
    ] {
        let out = join(&dir, &format!("{tag}.h5"));
        let run = run_ok(
            tag,
            &[
                &[
                    "fit",
                    path_str(&data),
                    "-k",
                    "4",
                    "--max-iter",
                    "6",
                    "--tol",
                    "0",
                    "--block-rows",
                    "500",
                    "--json",
                    "-o",
                    path_str(&out),
                ],
                &extra[..],
            ],
        );
        let summary: serde_json::Value = serde_json::from_str(&stdout(&run)).expect("json");
        if tag == "budget" {
            assert_eq!(summary["budget_bytes"], 200u64 << 20);
            let peak = summary["peak_rss_bytes"].as_u64().expect("peak");
            assert!(peak <= 200 << 20, "peak RSS {peak} above the budget");
        }
        if tag == "cached" {
            assert!(
                summary["cache"].as_str().unwrap_or("").contains("MiB in"),
                "{summary}"
            );
        }
        ws.push(read2(&out, "W"));
    }
    assert_eq!(ws[0], ws[1], "the cache changed the result");
    assert_eq!(ws[0], ws[2]);
    // Only the outputs (each with its programs' table) and the input: the
    // cache file is gone.
    assert_eq!(
        files_in(dir.path()),
        vec![
            "budget.h5",
            "budget.programs.tsv",
            "cached.h5",
            "cached.programs.tsv",
            "data.h5",
            "uncached.h5",
            "uncached.programs.tsv"
        ]
    );
}

#[test]
fn a_normalised_block_cache_gives_the_results_of_normalising_every_pass() {
    // Counts (whole numbers) and the same counts plus a half: the cache
    // keeps the normalised values, so later passes skip the normalisation;
    // W, H and what the summary says of the raw values must not change.
    let dir = tempdir();
    let counts = seed_matrix(400, 30, 3).mapv(|v| (v * 8.0).round());
    for (name, x, whole) in [
        ("counts", counts.clone(), true),
        ("halves", counts.mapv(|v| v + 0.5), false),
    ] {
        let dense = join(&dir, &format!("{name}.h5"));
        write_h5(&dense, "X", &x);
        let sparse = join(&dir, &format!("{name}.h5ad"));
        let (data, indices, indptr) = compressed(&x, false);
        sparse_h5ad(
            &sparse,
            "X",
            "csr_matrix",
            Some(&[400, 30]),
            &data,
            &indices,
            &indptr,
        );
        for (input, init) in [
            (&dense, "random"),
            (&sparse, "random"),
            (&sparse, "nndsvda"),
        ] {
            let mut results = Vec::new();
            for cache in [vec!["--cache", path_str(dir.path())], vec!["--no-cache"]] {
                let out = join(&dir, "r.h5");
                let run = run_ok(
                    name,
                    &[
                        &[
                            "fit",
                            path_str(input),
                            "-k",
                            "3",
                            "--max-iter",
                            "5",
                            "--tol",
                            "0",
                            "--block-rows",
                            "128",
                            "--normalize",
                            "cp10k-log1p",
                            "--solver",
                            "hals",
                            "--init",
                            init,
                            "--json",
                            "--force",
                            "-o",
                            path_str(&out),
                        ],
                        &cache[..],
                    ],
                );
                let summary: serde_json::Value = serde_json::from_str(&stdout(&run)).expect("json");
                assert_eq!(summary["integer_valued"], whole, "{name} {init}: {summary}");
                results.push((read2(&out, "W"), read2(&out, "H")));
            }
            assert_eq!(
                results[0], results[1],
                "{name} {init}: the cache changed the result"
            );
        }
    }
}

#[test]
fn a_budget_below_the_fixed_part_is_refused_with_the_minimum() {
    let dir = tempdir();
    let data = join(&dir, "data.h5");
    write_h5(&data, "X", &seed_matrix(200, 30, 2));
    let out = join(&dir, "r.h5");
    let run = run(&[
        "fit",
        path_str(&data),
        "-k",
        "2",
        "--memory",
        "10MiB",
        "-q",
        "-o",
        path_str(&out),
    ]);
    assert_fails(
        &run,
        &[
            "data.h5",
            "memory budget of 10.0 MiB is too small",
            "give --memory",
            "needs at least",
        ],
    );
    assert!(!out.exists());
    let run = crate::util::run(&[
        "fit",
        path_str(&data),
        "-k",
        "2",
        "--memory",
        "lots",
        "-q",
        "-o",
        path_str(&out),
    ]);
    assert_eq!(run.status.code(), Some(2), "a bad size is a usage error");
}

#[test]
fn w_goes_to_disk_when_it_does_not_fit_and_the_result_is_the_same() {
    let dir = tempdir();
    let data = join(&dir, "tall.npy");
    write_npy(&data, &seed_matrix(600_000, 14, 3));
    let mut ws = Vec::new();
    for (tag, budget) in [("memory", "2GiB"), ("disk", "56MiB")] {
        let out = join(&dir, &format!("{tag}.h5"));
        let run = run(&[
            "fit",
            path_str(&data),
            "-k",
            "12",
            "--max-iter",
            "2",
            "--tol",
            "0",
            "--block-rows",
            "20000",
            "--memory",
            budget,
            "--tmp-dir",
            path_str(dir.path()),
            "--json",
            "-o",
            path_str(&out),
        ]);
        assert!(run.status.success(), "{tag}: {}", stderr(&run));
        let summary: serde_json::Value = serde_json::from_str(&stdout(&run)).expect("json");
        let storage = summary["w_storage"].as_str().unwrap_or("");
        assert!(
            storage.starts_with(if tag == "disk" {
                "on disk"
            } else {
                "in memory"
            }),
            "{storage}"
        );
        ws.push((read2(&out, "W"), read1::<u32>(&out, "cluster")));
    }
    assert_eq!(ws[0], ws[1], "W on disk changed the result");
}

#[test]
fn every_result_nmflow_writes_seeds_a_run_in_the_right_orientation() {
    // 10 + 10 iterations from the random start equal 20 (within rounding:
    // the continuation's pre-pass sums WᵀW in another order than a pass),
    // whether the first ten were written as plain HDF5 or as h5ad (W in
    // obsm/X_nmf, H stored genes × k in varm/NMF_H), named by file or by
    // dataset; and the plain and h5ad starts give the same bits.
    let dir = tempdir();
    let data = join(&dir, "data.h5");
    write_h5(&data, "X", &seed_matrix(90, 14, 3));
    let fit = |out: &std::path::Path, extra: &[&str]| {
        let mut args = vec![
            "fit",
            path_str(&data),
            "-k",
            "3",
            "--tol",
            "0",
            "-q",
            "--seed",
            "5",
            "-o",
            path_str(out),
        ];
        args.extend_from_slice(extra);
        let done = run(&args);
        assert!(done.status.success(), "{}", stderr(&done));
    };
    let twenty = join(&dir, "twenty.h5");
    fit(&twenty, &["--max-iter", "20"]);
    let (plain, anndata) = (join(&dir, "ten.h5"), join(&dir, "ten.h5ad"));
    fit(&plain, &["--max-iter", "10"]);
    fit(&anndata, &["--max-iter", "10"]);
    // Named by dataset, the start is the scaled H the updates run in.
    let h5ad_h = format!("{}:/varm/NMF_H_scaled", path_str(&anndata));
    let h5ad_w = format!("{}:/obsm/X_nmf", path_str(&anndata));
    for (tag, w0, h0) in [
        ("plain", path_str(&plain), path_str(&plain)),
        ("h5ad", path_str(&anndata), path_str(&anndata)),
        ("h5ad by dataset", h5ad_w.as_str(), h5ad_h.as_str()),
    ] {
        let out = join(&dir, &format!("more-{}.h5", tag.replace(' ', "-")));
        fit(
            &out,
            &[
                "--max-iter",
                "10",
                "--init",
                "custom",
                "--w0",
                w0,
                "--h0",
                h0,
            ],
        );
        for name in ["W", "H"] {
            let (a, b) = (read2(&out, name), read2(&twenty, name));
            let scale = b.iter().fold(0.0f32, |m, v| m.max(*v));
            let diff = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f32::max);
            assert!(diff <= 1e-4 * scale, "{tag} {name}: {diff}");
        }
        assert_eq!(
            read2(&out, "W"),
            read2(&join(&dir, "more-plain.h5"), "W"),
            "{tag}"
        );
    }
}

#[test]
fn a_custom_start_larger_than_the_budget_is_streamed_and_the_plan_is_inspects() {
    // W₀ of 2,000,000 × 20 (160 MB as f32) under a budget of 256 MiB: W₀
    // is streamed into W's memory-mapped store, never whole in memory.
    let dir = tempdir();
    let (n_rows, n_cols, k, seed) = (2_000_000, 24, 20, 5);
    let data = join(&dir, "tall.npy");
    write_npy(&data, &random_w(1, n_rows, 4).dot(&random_h(1, 4, n_cols)));
    write_npy(&join(&dir, "w0.npy"), &random_w(seed, n_rows, k));
    write_npy(&join(&dir, "h0.npy"), &random_h(seed, k, n_cols));
    let budget = 256u64 << 20;
    let fit = |tag: &str, extra: &[&str]| {
        let out = join(&dir, &format!("{tag}.h5"));
        let run = run_ok(
            tag,
            &[
                &[
                    "fit",
                    path_str(&data),
                    "-k",
                    "20",
                    "--seed",
                    "5",
                    "--max-iter",
                    "2",
                    "--tol",
                    "0",
                    "--memory",
                    "256MiB",
                    "--tmp-dir",
                    path_str(dir.path()),
                    "-o",
                    path_str(&out),
                ],
                extra,
            ],
        );
        (run, out)
    };
    let w0 = path_str(&join(&dir, "w0.npy")).to_owned();
    let h0 = path_str(&join(&dir, "h0.npy")).to_owned();
    let (custom, custom_out) = fit(
        "custom",
        &["--init", "custom", "--w0", &w0, "--h0", &h0, "--json"],
    );
    let summary: serde_json::Value = serde_json::from_str(&stdout(&custom)).expect("json");
    assert!(
        summary["w_storage"]
            .as_str()
            .unwrap_or("")
            .starts_with("on disk"),
        "{summary}"
    );
    let peak = summary["peak_rss_bytes"].as_u64().expect("peak");
    assert!(
        peak <= budget + budget / 10,
        "peak RSS {} MiB, more than 10 % above the budget of 256 MiB",
        peak >> 20
    );
    // The same start drawn from the seed gives the same factorization.
    let (random, random_out) = fit("random", &[]);
    assert_eq!(read2(&custom_out, "W"), read2(&random_out, "W"));
    // The plan fit prints is the one inspect prints for the same matrix.
    let plan_of = |text: &str| -> String {
        text.lines()
            .find_map(|l| l.trim().strip_prefix("plan: "))
            .unwrap_or_else(|| panic!("no plan in {text}"))
            .to_owned()
    };
    let inspect = run(&["inspect", path_str(&data), "-k", "20", "--memory", "256MiB"]);
    assert!(inspect.status.success(), "{}", stderr(&inspect));
    let planned = plan_of(&stdout(&inspect));
    assert_eq!(plan_of(&stderr(&random)), planned);
    assert!(planned.contains("W on disk"), "{planned}");
}
