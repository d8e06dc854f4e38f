//! `nmflow sweep`, `fit --restarts` and `nmflow report` end to end.

use std::path::Path;

use nmflow_testkit::SeedGenerator;

use crate::util::*;

/// The seed generator's data as `cargo xtask synth seed` writes it:
/// 5000 × 1000, 5 clusters, seed 0, with `/labels`.
fn seed_data(path: &Path) {
    let (x, labels) = SeedGenerator::new(0, 5, 1000).matrix(5000);
    write_h5(path, "X", &x);
    write_h5_1d(path, "labels", &labels);
}

fn tsv_column(table: &str, name: &str) -> Vec<Option<f64>> {
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().expect("header").split('\t').collect();
    let col = header.iter().position(|h| *h == name).expect("column");
    lines
        .map(|l| l.split('\t').nth(col).and_then(|v| v.parse().ok()))
        .collect()
}

#[test]
fn sweep_of_the_seed_data_bends_at_five_and_recovers_the_clusters() {
    let dir = tempdir();
    let data = join(&dir, "seed.h5");
    seed_data(&data);
    let out_dir = join(&dir, "sweep");
    let out = run(&[
        "sweep",
        path_str(&data),
        "-k",
        "2..8",
        "--restarts",
        "3",
        "--labels",
        "/labels",
        "-o",
        path_str(&out_dir),
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = std::fs::read_to_string(out_dir.join("sweep.tsv")).expect("sweep.tsv");
    let header = table.lines().next().unwrap();
    for column in [
        "k",
        "best_rel_error",
        "mean_rel_error",
        "sd_rel_error",
        "cophenetic",
        "spectra_stability",
        "ari",
        "nmi",
    ] {
        assert!(
            header.split('\t').any(|h| h == column),
            "no column {column}: {header}"
        );
    }
    let ks: Vec<f64> = tsv_column(&table, "k").into_iter().flatten().collect();
    assert_eq!(ks, vec![2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
    let err: Vec<f64> = tsv_column(&table, "best_rel_error")
        .into_iter()
        .flatten()
        .collect();
    let ari: Vec<f64> = tsv_column(&table, "ari").into_iter().flatten().collect();
    let coph: Vec<f64> = tsv_column(&table, "cophenetic")
        .into_iter()
        .flatten()
        .collect();
    // The curve bends at k = 5: each step up to 5 gains far more than any after.
    let gain = |k: usize| err[k - 3] - err[k - 2];
    let before = (3..=5).map(gain).fold(f64::INFINITY, f64::min);
    let after = (6..=8).map(gain).fold(0.0f64, f64::max);
    assert!(
        before > 5.0 * after,
        "gains {:?}",
        (3..=8).map(gain).collect::<Vec<_>>()
    );
    assert!(ari[3] >= 0.95, "ARI at k = 5: {}", ari[3]);
    assert!(coph[3] >= 0.99, "cophenetic at k = 5: {}", coph[3]);

    // The best k = 5 run equals a lone fit with its seed: sharing passes
    // changes nothing.
    let sweep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("sweep.json")).unwrap())
            .unwrap();
    let k5 = &sweep["per_k"][3];
    assert_eq!(k5["k"], 5);
    let seed = k5["best_seed"].as_u64().unwrap().to_string();
    let alone = join(&dir, "alone.h5");
    let out = run(&[
        "fit",
        path_str(&data),
        "-k",
        "5",
        "--seed",
        &seed,
        "-o",
        path_str(&alone),
        "-q",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(read2(&alone, "W"), read2(&out_dir.join("k5.h5"), "W"));
    assert_eq!(
        read1::<f64>(&alone, "rel_error"),
        read1::<f64>(&out_dir.join("k5.h5"), "rel_error")
    );
    assert_eq!(sweep["runs"].as_array().unwrap().len(), 21);

    // consensus.h5: k = 5's restarts agree, so its consensus is 1 within
    // the best run's clusters and 0 across them.
    let consensus = out_dir.join("consensus.h5");
    let shown = read1::<u64>(&consensus, "rows");
    let c = read2(&consensus, "k5");
    assert_eq!(c.dim(), (shown.len(), shown.len()));
    assert!(shown.len() >= 100, "{} rows shown", shown.len());
    let cluster = read1::<u32>(&out_dir.join("k5.h5"), "cluster");
    let (mut within, mut across) = (Vec::new(), Vec::new());
    for (a, &ra) in shown.iter().enumerate() {
        for (b, &rb) in shown.iter().enumerate() {
            if cluster[ra as usize] == cluster[rb as usize] {
                within.push(c[(a, b)]);
            } else {
                across.push(c[(a, b)]);
            }
        }
    }
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
    assert!(mean(&within) >= 0.95, "within clusters {}", mean(&within));
    assert!(mean(&across) <= 0.05, "across clusters {}", mean(&across));

    // The report: every figure as PNG and SVG, one page that loads nothing.
    let report = join(&dir, "report");
    let out = run(&["report", path_str(&out_dir), "-o", path_str(&report), "-q"]);
    assert!(out.status.success(), "{}", stderr(&out));
    for stem in [
        "sweep_error",
        "sweep_stability",
        "sweep_ari",
        "sweep_error_curves",
        "sweep_consensus",
        "k5_error_curve",
        "k5_w_heatmap",
        "k5_top_columns",
        "k5_pca",
    ] {
        let png = std::fs::read(report.join(format!("{stem}.png"))).expect(stem);
        assert_eq!(&png[..4], b"\x89PNG", "{stem}");
        let svg = std::fs::read_to_string(report.join(format!("{stem}.svg"))).expect(stem);
        assert!(svg.contains("<svg"), "{stem}");
    }
    // The sweep's labels colour a PCA panel of every k.
    let pca = std::fs::read_to_string(report.join("k5_pca.svg")).expect("k5_pca.svg");
    assert!(pca.contains("label (labels)"), "no label panel");
    let page = std::fs::read_to_string(report.join("index.html")).expect("index.html");
    assert!(page.contains("data:image/png;base64,"));
    for external in ["<script", "http://", "https://", "<link"] {
        assert!(!page.contains(external), "the page loads {external}");
    }
    assert!(
        !files_in(&report).iter().any(|f| f.starts_with('.')),
        "temporary files left"
    );
}

#[test]
fn fit_restarts_keep_the_lowest_error_and_report_a_fit() {
    let dir = tempdir();
    let data = join(&dir, "data.h5");
    let (x, labels) = SeedGenerator::new(3, 3, 40).matrix(400);
    write_h5(&data, "X", &x);
    write_h5_1d(&data, "labels", &labels);
    for output in ["result.h5", "result.h5ad"] {
        let result = join(&dir, output);
        let out = run(&[
            "fit",
            path_str(&data),
            "-k",
            "3",
            "--restarts",
            "4",
            "--seed",
            "10",
            "--max-iter",
            "30",
            "--sample",
            "100",
            "-o",
            path_str(&result),
            "--json",
            "-q",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let summary: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        let errors: Vec<f64> = summary["restart_rel_errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(errors.len(), 4);
        let best = errors.iter().copied().fold(f64::INFINITY, f64::min);
        assert_eq!(summary["rel_error"].as_f64().unwrap(), best);
        let kept = errors.iter().position(|&e| e == best).unwrap() as u64;
        assert_eq!(summary["seed"].as_u64().unwrap(), 10 + kept);
        let report = join(&dir, &format!("report-{output}"));
        let out = run(&["report", path_str(&result), "-o", path_str(&report), "-q"]);
        assert!(out.status.success(), "{}", stderr(&out));
        for stem in ["error_curve", "w_heatmap", "top_columns", "pca"] {
            assert!(
                report.join(format!("{stem}.png")).exists(),
                "{output}: {stem}"
            );
        }
        let pca = std::fs::read_to_string(report.join("pca.svg")).expect("pca.svg");
        assert!(
            !pca.contains("label ("),
            "{output}: a label panel without labels"
        );
        // Labels from another file colour a PCA panel; a missing column is
        // an error naming it, and leaves no report behind.
        let labelled = join(&dir, &format!("labelled-{output}"));
        let spec = format!("{}:/labels", path_str(&data));
        let out = run(&[
            "report",
            path_str(&result),
            "-o",
            path_str(&labelled),
            "--labels",
            &spec,
            "-q",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let pca = std::fs::read_to_string(labelled.join("pca.svg")).expect("pca.svg");
        assert!(pca.contains("label (labels)"), "{output}: no label panel");
        let refused = join(&dir, &format!("refused-{output}"));
        let out = run(&[
            "report",
            path_str(&result),
            "-o",
            path_str(&refused),
            "--labels",
            "nosuch",
        ]);
        assert_fails(&out, &[output, "nosuch"]);
        assert!(!refused.exists(), "a refused report left its directory");
    }
    let rows = read1::<u64>(&join(&dir, "result.h5"), "sample/rows");
    assert_eq!(rows.len(), 100);
    assert_eq!(
        read2(&join(&dir, "result.h5"), "sample/pca").dim(),
        (100, 2)
    );
}

#[test]
fn bad_sweep_and_report_inputs_fail_cleanly() {
    let dir = tempdir();
    let data = join(&dir, "data.h5");
    let (x, labels) = SeedGenerator::new(3, 3, 20).matrix(100);
    write_h5(&data, "X", &x);
    write_h5_1d(&data, "short", &labels[..50]);
    let out_dir = join(&dir, "sweep");
    let sweep = |labels: &str| {
        run(&[
            "sweep",
            path_str(&data),
            "-k",
            "2..3",
            "--restarts",
            "2",
            "--labels",
            labels,
            "-o",
            path_str(&out_dir),
            "-q",
        ])
    };
    assert_fails(&sweep("nosuch"), &["data.h5", "nosuch", "available", "X"]);
    assert_fails(
        &sweep("/short"),
        &["data.h5", "/short", "50 labels", "100 rows"],
    );
    assert!(
        !out_dir.exists(),
        "a refused sweep left its output directory"
    );
    let out = run(&[
        "sweep",
        path_str(&data),
        "-k",
        "5..2",
        "-o",
        path_str(&out_dir),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = run(&["report", path_str(&data), "-o", path_str(&join(&dir, "r"))]);
    assert_fails(&out, &["data.h5", "not a result of nmflow fit"]);
    std::fs::create_dir(&out_dir).expect("mkdir");
    let out = run(&[
        "report",
        path_str(&out_dir),
        "-o",
        path_str(&join(&dir, "r")),
    ]);
    assert_fails(&out, &["sweep.json"]);
    assert!(
        !join(&dir, "r").exists(),
        "a refused report left its output directory"
    );
}

#[test]
fn labels_come_from_another_file_as_strings_and_score_the_written_clusters() {
    let dir = tempdir();
    let data = join(&dir, "data.h5");
    let (x, labels) = SeedGenerator::new(5, 3, 30).matrix(240);
    write_h5(&data, "X", &x);
    let names: Vec<hdf5::types::VarLenUnicode> = labels
        .iter()
        .map(|&l| ["alpha", "beta", "gamma"][l as usize].parse().unwrap())
        .collect();
    let label_file = join(&dir, "labels.h5");
    write_h5_1d(&label_file, "meta/type", &names);
    let out_dir = join(&dir, "sweep");
    let spec = format!("{}:/meta/type", path_str(&label_file));
    let out = run(&[
        "sweep",
        path_str(&data),
        "-k",
        "3,4",
        "--restarts",
        "2",
        "--max-iter",
        "40",
        "--labels",
        &spec,
        "-o",
        path_str(&out_dir),
        "--json",
        "-q",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        summary["labels"],
        format!("{}:/meta/type", path_str(&label_file))
    );
    for row in summary["per_k"].as_array().unwrap() {
        let clusters = read1::<u32>(&out_dir.join(row["result"].as_str().unwrap()), "cluster");
        let ari = nmflow_core::metrics::adjusted_rand_index(&labels, &clusters);
        let nmi = nmflow_core::metrics::normalized_mutual_info(&labels, &clusters);
        assert!((row["ari"].as_f64().unwrap() - ari).abs() < 1e-12);
        assert!((row["nmi"].as_f64().unwrap() - nmi).abs() < 1e-12);
    }
}

#[test]
fn a_budget_that_splits_the_runs_into_batches_changes_no_result() {
    let dir = tempdir();
    let data = join(&dir, "data.h5");
    let (x, _) = SeedGenerator::new(9, 3, 30).matrix(20_000);
    write_h5(&data, "X", &x);
    let sweep = |memory: &str, out: &str| {
        let out_dir = join(&dir, out);
        let out = run(&[
            "sweep",
            path_str(&data),
            "-k",
            "2..4",
            "--restarts",
            "2",
            "--max-iter",
            "15",
            "--block-rows",
            "1000",
            "--memory",
            memory,
            "-o",
            path_str(&out_dir),
            "--json",
            "-q",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let summary: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        (summary, out_dir)
    };
    let (one, one_dir) = sweep("1GiB", "one");
    assert_eq!(one["run"]["batches"].as_array().unwrap().len(), 1);
    // A budget whose usable part (plans leave a headroom) is one byte less
    // than the single batch needs: the last run moves to a second batch (a
    // second series of passes).
    let usable_share = 100 - nmflow_core::plan::HEADROOM_PERCENT;
    // (The input kept resident beside the passes when it fits is not part
    // of the batch plan.)
    let batch_peak = one["run"]["predicted_peak_bytes"].as_u64().unwrap()
        - one["run"]["resident_bytes"].as_u64().unwrap();
    let tight = (batch_peak - 1) * 100 / usable_share;
    let (split, split_dir) = sweep(&tight.to_string(), "split");
    assert!(
        split["run"]["batches"].as_array().unwrap().len() >= 2,
        "{}",
        split["run"]["batches"]
    );
    assert!(split["run"]["predicted_peak_bytes"].as_u64().unwrap() <= tight);
    for (a, b) in one["runs"]
        .as_array()
        .unwrap()
        .iter()
        .zip(split["runs"].as_array().unwrap())
    {
        assert_eq!(a["rel_error"], b["rel_error"]);
    }
    for k in 2..=4 {
        let name = format!("k{k}.h5");
        assert_eq!(
            read2(&one_dir.join(&name), "W"),
            read2(&split_dir.join(&name), "W")
        );
    }
    assert_eq!(one["per_k"], split["per_k"]);
}

/// Runs nmflow under the umask `mask`.
fn run_with_umask(mask: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("umask {mask} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_nmflow"))
        .args(args)
        .output()
        .expect("sh")
}

/// Permission bits of every file under `dir`, recursively.
fn modes_under(dir: &Path) -> Vec<(String, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(modes_under(&path));
        } else {
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
            out.push((path.display().to_string(), mode));
        }
    }
    out
}

#[test]
fn every_output_takes_the_mode_the_umask_gives() {
    let dir = tempdir();
    let data = join(&dir, "data.h5");
    write_h5(&data, "X", &seed_matrix(120, 12, 3));
    for (mask, mode) in [("022", 0o644), ("002", 0o664), ("077", 0o600)] {
        let out_dir = dir.path().join(format!("out{mask}"));
        std::fs::create_dir(&out_dir).expect("mkdir");
        let o = |name: &str| out_dir.join(name).display().to_string();
        let ok = |out: std::process::Output| {
            assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        };
        for result in ["fit.h5", "fit.h5ad"] {
            ok(run_with_umask(
                mask,
                &["fit", path_str(&data), "-k", "3", "-q", "-o", &o(result)],
            ));
        }
        ok(run_with_umask(
            mask,
            &[
                "sweep",
                path_str(&data),
                "-k",
                "2..3",
                "--restarts",
                "2",
                "-q",
                "-o",
                &o("sweep"),
            ],
        ));
        ok(run_with_umask(
            mask,
            &["report", &o("fit.h5"), "-o", &o("report")],
        ));
        let modes = modes_under(&out_dir);
        assert!(modes.len() > 8, "{modes:?}");
        for (path, found) in modes {
            assert_eq!(found, mode, "{path} under umask {mask}: {found:o}");
        }
    }
}

#[test]
fn a_sweep_takes_the_solver_loss_and_start_and_records_them() {
    let dir = tempdir();
    let data = join(&dir, "x.h5");
    write_h5(&data, "X", &seed_matrix(300, 40, 3));
    let sweep = |name: &str, extra: &[&str]| {
        let out = join(&dir, name);
        run_ok(
            name,
            &[
                &[
                    "sweep",
                    path_str(&data),
                    "-k",
                    "2..3",
                    "--restarts",
                    "2",
                    "--max-iter",
                    "20",
                    "-q",
                    "-o",
                    path_str(&out),
                ],
                extra,
            ],
        );
        let json = std::fs::read_to_string(out.join("sweep.json")).expect("sweep.json");
        serde_json::from_str::<serde_json::Value>(&json).expect("json")
    };
    let hals = sweep("hals", &["--solver", "hals", "--init", "random-scaled"]);
    assert_eq!(
        (
            hals["solver"].as_str(),
            hals["inner"].as_str(),
            hals["init"].as_str()
        ),
        (Some("hals"), Some("auto"), Some("random-scaled"))
    );
    let again = sweep(
        "hals-again",
        &["--solver", "hals", "--init", "random-scaled"],
    );
    assert_eq!(hals["per_k"], again["per_k"], "sweeps are deterministic");
    let kl = sweep("kl", &["--beta-loss", "kullback-leibler"]);
    assert_eq!(kl["beta_loss"].as_str(), Some("kullback-leibler"));
    let result = join(&dir, "kl").join("k3.h5");
    let file = hdf5::File::open(&result).expect("k3.h5");
    let loss: hdf5::types::VarLenUnicode = file
        .attr("beta_loss")
        .and_then(|a| a.read_scalar())
        .expect("beta_loss");
    assert_eq!(loss.as_str(), "kullback-leibler");
}
