//! `mpirun -np N nmflow fit` (the binary built with `--features mpi`), on
//! this machine's loopback: 1, 2 and 4 processes give the single-process
//! factorization (1 bit for bit, more within 1e-5 after 100 iterations),
//! bit for bit again on a rerun; each process keeps within its budget; a
//! bad value in one process's rows fails the whole job with its row named
//! and no output; what is not distributed is refused. `sweep`, `transform`
//! and `--checkpoint`/`--resume` likewise.

use std::path::Path;
use std::process::{Command, Output};

use ndarray::Array2;

use crate::util::{
    compressed, join, path_str, read1, read2, run_ok, seed_matrix, sparse_h5ad, stderr, stdout,
    tempdir, write_h5, write_h5_1d,
};

/// `mpirun -np n nmflow ARGS` (as root and with more processes than
/// cores, as CI runs it).
fn mpirun(n: usize, args: &[&str]) -> Output {
    let mut cmd = Command::new("mpirun");
    if nix_root() {
        cmd.arg("--allow-run-as-root");
    }
    cmd.args(["--oversubscribe", "-np", &n.to_string()])
        .arg(env!("CARGO_BIN_EXE_nmflow"))
        .args(args)
        .env("HDF5_USE_FILE_LOCKING", "FALSE");
    cmd.output()
        .expect("running mpirun (scripts/install-deps installs openmpi-bin)")
}

fn nix_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn rel_diff(a: &Array2<f32>, b: &Array2<f32>) -> f32 {
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    (a - b).iter().fold(0.0f32, |m, v| m.max(v.abs())) / scale
}

fn fit_args<'a>(input: &'a Path, out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    iterations(input, out, "100", extra)
}

fn iterations<'a>(input: &'a Path, out: &'a Path, n: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "fit",
        path_str(input),
        "-k",
        "4",
        "--max-iter",
        n,
        "--tol",
        "0",
        "--seed",
        "3",
        "-o",
        path_str(out),
        "--force",
    ];
    args.extend(extra);
    args
}

#[test]
fn processes_give_the_single_process_factorization() {
    let dir = tempdir();
    let x = seed_matrix(2003, 60, 4).mapv(|v| (v * 8.0).round());
    let dense = join(&dir, "x.h5");
    write_h5(&dense, "X", &x);
    let sparse = join(&dir, "x.h5ad");
    let (data, indices, indptr) = compressed(&x, false);
    sparse_h5ad(
        &sparse,
        "X",
        "csr_matrix",
        Some(&[2003, 60]),
        &data,
        &indices,
        &indptr,
    );
    for (input, extra) in [
        (&dense, vec![]),
        (
            &sparse,
            vec!["--solver", "hals", "--normalize", "cp10k-log1p"],
        ),
        (
            &sparse,
            vec!["--beta-loss", "kullback-leibler", "--restarts", "2"],
        ),
    ] {
        let single = join(&dir, "single.h5");
        run_ok("single", &[&fit_args(input, &single, &extra), &["-q"]]);
        let (w1, h1) = (read2(&single, "W"), read2(&single, "H"));
        for n in [1, 2, 4] {
            let out = join(&dir, &format!("np{n}.h5"));
            let done = mpirun(
                n,
                &[&fit_args(input, &out, &extra)[..], &["--json"]].concat(),
            );
            assert!(
                done.status.success(),
                "-np {n} {extra:?}: {}",
                stderr(&done)
            );
            let summary: serde_json::Value =
                serde_json::from_str(stdout(&done).trim()).expect("one JSON summary, from rank 0");
            assert_eq!(summary["n_rows"], 2003);
            let (w, h) = (read2(&out, "W"), read2(&out, "H"));
            if n == 1 {
                assert_eq!(w, w1, "-np 1 is the single process");
                assert_eq!(h, h1);
            } else {
                let what = format!("-np {n} {extra:?}");
                assert!(rel_diff(&w, &w1) <= 1e-5, "{what}: W {}", rel_diff(&w, &w1));
                assert!(rel_diff(&h, &h1) <= 1e-5, "{what}: H {}", rel_diff(&h, &h1));
                let peaks = summary["process_peak_rss_bytes"].as_array().expect("peaks");
                assert_eq!(peaks.len(), n);
                let processes: i64 = hdf5::File::open(&out)
                    .and_then(|f| f.attr("processes")?.read_scalar())
                    .expect("the result says how many processes shared the rows");
                assert_eq!(processes, n as i64);
            }
            assert_eq!(read1::<u32>(&out, "cluster").len(), 2003);
        }
    }
    // The processes gather the row sample: its rows and components are the
    // single process's, bit for bit, and the report draws them.
    let (single, out) = (join(&dir, "single.h5"), join(&dir, "np2.h5"));
    run_ok("single", &[&fit_args(&dense, &single, &[]), &["-q"]]);
    let done = mpirun(2, &fit_args(&dense, &out, &[]));
    assert!(done.status.success(), "{}", stderr(&done));
    assert_eq!(
        read1::<u64>(&out, "sample/rows"),
        read1::<u64>(&single, "sample/rows")
    );
    assert_eq!(read2(&out, "sample/pca"), read2(&single, "sample/pca"));
    let report = join(&dir, "report");
    run_ok(
        "report",
        &[&["report", path_str(&out), "-o", path_str(&report), "-q"]],
    );
    assert!(report.join("pca.png").exists());
    // Two runs with as many processes: the same bits.
    let (a, b) = (join(&dir, "a.h5"), join(&dir, "b.h5"));
    for out in [&a, &b] {
        let done = mpirun(4, &fit_args(&sparse, out, &[]));
        assert!(done.status.success(), "{}", stderr(&done));
    }
    assert_eq!(read2(&a, "W"), read2(&b, "W"));
    assert_eq!(read2(&a, "H"), read2(&b, "H"));
}

#[test]
fn each_process_keeps_within_its_budget() {
    let dir = tempdir();
    let x = seed_matrix(20_000, 200, 5);
    let input = join(&dir, "x.h5");
    write_h5(&input, "X", &x);
    let out = join(&dir, "r.h5");
    let budget = 80u64 << 20;
    let done = mpirun(
        2,
        &iterations(&input, &out, "5", &["--memory", "80MiB", "--json"]),
    );
    assert!(done.status.success(), "{}", stderr(&done));
    let summary: serde_json::Value = serde_json::from_str(stdout(&done).trim()).expect("JSON");
    let within = |peaks: &serde_json::Value| {
        for peak in peaks.as_array().expect("peaks") {
            let peak = peak.as_u64().expect("bytes");
            assert!(
                peak <= budget,
                "a process peaked at {peak} bytes over {budget}"
            );
        }
    };
    within(&summary["process_peak_rss_bytes"]);
    // A sweep too: process 0 also holds the sample, the consensus and each
    // finished run's W (memory-mapped, gathered).
    let sweep = join(&dir, "sweep");
    let done = mpirun(
        2,
        &[
            "sweep",
            path_str(&input),
            "-k",
            "3..5",
            "--restarts",
            "2",
            "--max-iter",
            "5",
            "--memory",
            "80MiB",
            "--json",
            "-o",
            path_str(&sweep),
        ],
    );
    assert!(done.status.success(), "{}", stderr(&done));
    let summary: serde_json::Value = serde_json::from_str(stdout(&done).trim()).expect("JSON");
    within(&summary["run"]["process_peak_rss_bytes"]);
}

#[test]
fn a_bad_value_in_one_process_fails_the_whole_job_cleanly() {
    let dir = tempdir();
    let mut x = seed_matrix(400, 30, 3);
    x[(350, 7)] = -2.0;
    let input = join(&dir, "x.h5");
    write_h5(&input, "X", &x);
    let out = join(&dir, "r.h5");
    let done = mpirun(4, &fit_args(&input, &out, &[]));
    assert!(!done.status.success());
    let err = stderr(&done);
    assert!(err.contains("row 350") && err.contains("column 7"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!out.exists(), "a failed job left its output");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn what_is_not_distributed_is_refused_on_every_process() {
    let dir = tempdir();
    let input = join(&dir, "x.h5");
    write_h5(&input, "X", &seed_matrix(100, 20, 2));
    let done = mpirun(2, &["inspect", path_str(&input)]);
    assert_eq!(done.status.code(), Some(2), "{}", stderr(&done));
    assert!(stderr(&done).contains("only `nmflow fit`, `sweep` and `transform` run over MPI"));
}

#[test]
fn write_into_over_processes_adds_the_single_process_result() {
    let dir = tempdir();
    let x = seed_matrix(1001, 40, 3);
    let (data, indices, indptr) = compressed(&x, false);
    let h5ad = |name: &str| {
        let path = join(&dir, name);
        sparse_h5ad(
            &path,
            "X",
            "csr_matrix",
            Some(&[1001, 40]),
            &data,
            &indices,
            &indptr,
        );
        path
    };
    let (single, shared) = (h5ad("single.h5ad"), h5ad("shared.h5ad"));
    let fit = |path: &Path| -> Vec<String> {
        [
            "fit",
            path_str(path),
            "-k",
            "3",
            "--max-iter",
            "60",
            "--tol",
            "0",
            "--write-into",
        ]
        .into_iter()
        .map(str::to_owned)
        .chain([path_str(path).to_owned(), "-q".to_owned()])
        .collect()
    };
    let args = fit(&single);
    run_ok(
        "single",
        &[&args.iter().map(String::as_str).collect::<Vec<_>>()],
    );
    let args = fit(&shared);
    let done = mpirun(3, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(done.status.success(), "{}", stderr(&done));
    let w = |path: &Path| read2(path, "obsm/X_nmf");
    let d = rel_diff(&w(&shared), &w(&single));
    assert!(d <= 1e-5, "W {d}");
    // The input's own X is untouched.
    assert_eq!(read1::<f32>(&shared, "X/data"), data);
    // transform likewise, W bit for bit (rows are solved independently).
    let components = join(&dir, "components.h5");
    run_ok(
        "components",
        &[&fit_args(&single, &components, &[]), &["-q"]],
    );
    let (t1, t2) = (h5ad("t1.h5ad"), h5ad("t2.h5ad"));
    for (path, n) in [(&t1, 1), (&t2, 2)] {
        let args = [
            "transform",
            path_str(path),
            "--components",
            path_str(&components),
            "--write-into",
            path_str(path),
            "-q",
        ];
        let done = if n == 1 {
            run_ok("t1", &[&args])
        } else {
            mpirun(n, &args)
        };
        assert!(done.status.success(), "{}", stderr(&done));
    }
    assert_eq!(w(&t1), w(&t2));
}

#[test]
fn transform_over_processes_gives_the_single_process_projection() {
    let dir = tempdir();
    let x = seed_matrix(1001, 40, 3).mapv(|v| (v * 8.0).round());
    let input = join(&dir, "x.h5");
    write_h5(&input, "X", &x);
    let fit = join(&dir, "fit.h5");
    run_ok("fit", &[&fit_args(&input, &fit, &["-q"])]);
    let single = join(&dir, "t1.h5");
    let transform = |out: &Path| {
        vec![
            "transform".to_owned(),
            path_str(&input).to_owned(),
            "--components".to_owned(),
            path_str(&fit).to_owned(),
            "-o".to_owned(),
            path_str(out).to_owned(),
            "--json".to_owned(),
            "-q".to_owned(),
        ]
    };
    let words = transform(&single);
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    run_ok("transform", &[&words]);
    for n in [2, 3] {
        let out = join(&dir, &format!("t{n}.h5"));
        let words = transform(&out);
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        let done = mpirun(n, &words);
        assert!(done.status.success(), "-np {n}: {}", stderr(&done));
        // Rows are solved independently: W is the single process's bit for
        // bit; the error's sums differ in order only.
        assert_eq!(read2(&out, "W"), read2(&single, "W"), "-np {n}");
        let (a, b) = (
            read1::<f64>(&out, "rel_error")[0],
            read1::<f64>(&single, "rel_error")[0],
        );
        assert!((a - b).abs() <= 1e-7 * b, "-np {n}: {a} vs {b}");
    }
}

#[test]
fn a_killed_job_resumes_from_every_process_checkpoint_to_the_same_result() {
    use std::os::unix::process::CommandExt;

    let dir = tempdir();
    let x = seed_matrix(6000, 200, 4);
    let input = join(&dir, "x.h5");
    write_h5(&input, "X", &x);
    let ckpt = join(&dir, "ck.h5");
    let args = |out: &Path, ckpt: Option<&Path>| -> Vec<String> {
        let mut a: Vec<String> = iterations(&input, out, "300", &[])
            .into_iter()
            .map(str::to_owned)
            .collect();
        if let Some(ckpt) = ckpt {
            a.extend(
                [
                    "--checkpoint",
                    path_str(ckpt),
                    "--checkpoint-every",
                    "2",
                    "--resume",
                ]
                .map(str::to_owned),
            );
        }
        a.push("-q".into());
        a
    };
    let whole = join(&dir, "whole.h5");
    let done = mpirun(
        2,
        &args(&whole, None)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(done.status.success(), "{}", stderr(&done));
    // Killed (every process, SIGKILL) once both processes have written a
    // checkpoint, then run again: the same result as the uninterrupted run.
    let out = join(&dir, "resumed.h5");
    let words = args(&out, Some(&ckpt));
    let mut cmd = Command::new("mpirun");
    if nix_root() {
        cmd.arg("--allow-run-as-root");
    }
    cmd.args(["--oversubscribe", "-np", "2"])
        .arg(env!("CARGO_BIN_EXE_nmflow"))
        .args(&words)
        .env("HDF5_USE_FILE_LOCKING", "FALSE")
        .process_group(0);
    let child = cmd.spawn().expect("mpirun");
    let parts = [0, 1].map(|r| dir.path().join(format!("ck.h5.{r}-of-2")));
    let started = std::time::Instant::now();
    while !parts.iter().all(|p| p.exists()) {
        assert!(started.elapsed().as_secs() < 120, "no checkpoints written");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(150));
    // SAFETY: kill has no memory-safety preconditions; the group is the
    // job's (mpirun and its processes).
    unsafe {
        libc::kill(-(child.id() as i32), libc::SIGKILL);
    }
    // The processes mpirun started may sit in groups of their own.
    let _ = Command::new("pkill")
        .args(["-9", "-f", path_str(&out)])
        .status();
    let _ = child.wait_with_output();
    assert!(!out.exists(), "the killed job wrote its result");
    let done = mpirun(2, &words.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(done.status.success(), "{}", stderr(&done));
    assert_eq!(read2(&out, "W"), read2(&whole, "W"));
    assert_eq!(read2(&out, "H"), read2(&whole, "H"));
    assert!(
        !parts.iter().any(|p| p.exists()),
        "checkpoints left after the result"
    );
}

#[test]
fn a_corrupt_block_in_one_process_rows_fails_the_whole_job_cleanly() {
    // An h5ad CSR matrix whose stored column index is out of range in row
    // 350: only the last of 4 processes (rows 300..400) reads it.
    let dir = tempdir();
    let x = seed_matrix(400, 30, 3).mapv(|v| (v * 8.0).round());
    let (data, mut indices, indptr) = compressed(&x, false);
    let at = indptr[350] as usize;
    indices[at] = 99;
    let input = join(&dir, "x.h5ad");
    sparse_h5ad(
        &input,
        "X",
        "csr_matrix",
        Some(&[400, 30]),
        &data,
        &indices,
        &indptr,
    );
    let out = join(&dir, "r.h5ad");
    let done = mpirun(4, &fit_args(&input, &out, &[]));
    assert!(!done.status.success());
    let err = stderr(&done);
    assert!(err.contains("x.h5ad") && err.contains("350"), "{err}");
    assert!(
        err.contains("process 3 of this"),
        "the others name the failed process: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(!out.exists(), "a failed job left its output");
}

fn sweep_args<'a>(input: &'a Path, out: &'a Path, ks: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "sweep",
        path_str(input),
        "-k",
        ks,
        "--restarts",
        "2",
        "--max-iter",
        "80",
        "--tol",
        "0",
        "--labels",
        "/labels",
        "-o",
        path_str(out),
    ];
    args.extend(extra);
    args
}

/// Each k's summary in sweep.json, by k.
fn per_k(dir: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("sweep.json")).expect("sweep.json");
    let summary: serde_json::Value = serde_json::from_str(&text).expect("json");
    summary["per_k"].as_array().expect("per_k").clone()
}

#[test]
fn a_sweep_over_processes_gives_the_single_process_sweep() {
    let dir = tempdir();
    let (x, labels) = nmflow_testkit::SeedGenerator::new(3, 4, 60).matrix(1203);
    let input = join(&dir, "x.h5");
    write_h5(&input, "X", &x);
    write_h5_1d(&input, "labels", &labels);
    let single = join(&dir, "single");
    run_ok("single", &[&sweep_args(&input, &single, "3..5", &["-q"])]);
    let expected = per_k(&single);
    for n in [2, 4] {
        let out = join(&dir, &format!("np{n}"));
        let done = mpirun(
            n,
            &[&sweep_args(&input, &out, "3..5", &[])[..], &["--json"]].concat(),
        );
        assert!(done.status.success(), "-np {n}: {}", stderr(&done));
        let printed: serde_json::Value =
            serde_json::from_str(stdout(&done).trim()).expect("one JSON summary, from rank 0");
        assert_eq!(printed["n_rows"], 1203);
        let peaks = printed["run"]["process_peak_rss_bytes"]
            .as_array()
            .expect("every process's peak");
        assert_eq!(peaks.len(), n);
        for (got, want) in per_k(&out).iter().zip(&expected) {
            let what = format!("-np {n}, k {}", want["k"]);
            let close = |name: &str, tol: f64| {
                let (a, b) = (
                    got[name].as_f64().expect(name),
                    want[name].as_f64().expect(name),
                );
                assert!(
                    (a - b).abs() <= tol * b.abs().max(1.0),
                    "{what}: {name} {a} vs {b}"
                );
            };
            close("best_rel_error", 1e-5);
            close("mean_rel_error", 1e-5);
            for score in ["cophenetic", "spectra_stability", "ari", "nmi"] {
                close(score, 1e-3);
            }
            assert_eq!(got["best_restart"], want["best_restart"], "{what}");
        }
        for k in 3..=5 {
            let (a, b) = (
                out.join(format!("k{k}.h5")),
                single.join(format!("k{k}.h5")),
            );
            let d = rel_diff(&read2(&a, "W"), &read2(&b, "W"));
            assert!(d <= 1e-5, "-np {n}, k {k}: W {d}");
            let processes: i64 = hdf5::File::open(&a)
                .and_then(|f| f.attr("processes")?.read_scalar())
                .expect("processes");
            assert_eq!(processes, n as i64);
            assert_eq!(
                read1::<u64>(&a, "sample/rows"),
                read1::<u64>(&b, "sample/rows")
            );
        }
        assert!(out.join("consensus.h5").exists());
    }
    // A sweep cut short resumes under MPI: the finished runs are read by
    // process 0 and told to the others; the result is the whole sweep's.
    let (whole, resumed) = (join(&dir, "whole"), join(&dir, "resumed"));
    let done = mpirun(2, &sweep_args(&input, &whole, "3..5", &["-q"]));
    assert!(done.status.success(), "{}", stderr(&done));
    let done = mpirun(2, &sweep_args(&input, &resumed, "3..4", &["-q"]));
    assert!(done.status.success(), "{}", stderr(&done));
    let done = mpirun(2, &sweep_args(&input, &resumed, "3..5", &["--resume"]));
    assert!(done.status.success(), "{}", stderr(&done));
    assert!(
        stderr(&done).contains("4 run(s) finished before"),
        "{}",
        stderr(&done)
    );
    let read = |d: &Path| std::fs::read_to_string(d.join("sweep.json")).expect("sweep.json");
    assert_eq!(read(&resumed), read(&whole));
}

#[test]
fn a_bad_value_fails_a_sweep_over_processes_and_leaves_no_directory() {
    let dir = tempdir();
    let (mut x, labels) = nmflow_testkit::SeedGenerator::new(3, 4, 60).matrix(400);
    x[(390, 5)] = -1.0;
    let input = join(&dir, "x.h5");
    write_h5(&input, "X", &x);
    write_h5_1d(&input, "labels", &labels);
    let out = join(&dir, "sweep");
    let done = mpirun(2, &sweep_args(&input, &out, "2..3", &[]));
    assert!(!done.status.success());
    let err = stderr(&done);
    assert!(err.contains("row 390") && err.contains("column 5"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!out.exists(), "a failed sweep left its directory");
}

#[test]
fn an_nndsvd_start_over_processes_is_the_single_process_start() {
    let dir = tempdir();
    let x = seed_matrix(1001, 50, 4).mapv(|v| (v * 8.0).round());
    let input = join(&dir, "x.h5ad");
    let (data, indices, indptr) = compressed(&x, false);
    sparse_h5ad(
        &input,
        "X",
        "csr_matrix",
        Some(&[1001, 50]),
        &data,
        &indices,
        &indptr,
    );
    for init in ["nndsvd", "nndsvda", "nndsvdar"] {
        let extra = [
            "--init",
            init,
            "--solver",
            "hals",
            "--normalize",
            "cp10k-log1p",
        ];
        let single = join(&dir, "single.h5");
        run_ok(
            "single",
            &[&iterations(&input, &single, "20", &extra), &["-q"]],
        );
        let (w1, h1) = (read2(&single, "W"), read2(&single, "H"));
        for n in [2, 4] {
            let out = join(&dir, &format!("np{n}.h5"));
            let done = mpirun(n, &iterations(&input, &out, "20", &extra));
            assert!(done.status.success(), "-np {n} {init}: {}", stderr(&done));
            let what = format!("-np {n} --init {init}");
            let (w, h) = (read2(&out, "W"), read2(&out, "H"));
            // The start is a randomized SVD whose products sum f32 blocks:
            // rows cut at other places change it as another block height
            // does in one process (1e-5 here; tests/nndsvd.rs).
            assert!(rel_diff(&w, &w1) <= 5e-4, "{what}: W {}", rel_diff(&w, &w1));
            assert!(rel_diff(&h, &h1) <= 5e-4, "{what}: H {}", rel_diff(&h, &h1));
        }
    }
}
