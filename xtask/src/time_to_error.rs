//! `cargo xtask bench --time-to-error`: the seconds each solver needs to
//! come within 1 %, 0.3 % and 0.1 % of the best relative error any of them
//! reaches, side by side in one run: nmflow `mu` and `hals`, scikit-learn
//! `cd` and `mu` (`benches/peers_trace.py`), RcppML
//! (`benches/rcppml_trace.R`). Writes a markdown section and one figure per
//! data set (`docs/time-to-error-*.svg` and `.png`).
//!
//! Every clock starts with the matrix in a file (in the page cache, as the
//! runs before left it). nmflow's is its own report: the start (NNDSVD's
//! passes), the pre-pass (reading and checking X, writing the block cache)
//! and every iteration; the row sample's principal components come after
//! the last iteration and are not on the way. The peers' clocks add the
//! seconds their script took to read the matrix (and normalise it, in
//! Python) to their initialisation and iterations. Every solver factorizes
//! the same matrix (`--scale none`; cp10k-log1p where a case asks for it)
//! with the same k.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::bench::{bench_python, environment};

/// One data set of the benchmark.
struct Case {
    /// Short name (the figure's file name).
    name: &'static str,
    title: &'static str,
    data: PathBuf,
    k: usize,
    normalize: Option<&'static str>,
    /// Iterations of nmflow's `mu` and `hals` runs.
    nmflow_iters: (usize, usize),
    /// Iterations and seconds the scikit-learn runs stop at.
    peer_iters: usize,
    peer_seconds: f64,
    /// The `maxit` of every RcppML run.
    rcppml_maxits: &'static str,
}

/// Relative error after each iteration, and the seconds to reach it.
struct Trace {
    label: String,
    seconds: Vec<f64>,
    rel_error: Vec<f64>,
    /// The iteration of each point (1, 2, ... unless given).
    iterations: Vec<usize>,
    peak_rss: f64,
    /// Seconds of the clock spent reading X (nmflow: its whole pre-pass).
    read_seconds: f64,
}

impl Trace {
    /// Seconds and iterations to come within `threshold` of `best`.
    fn time_to(&self, best: f64, threshold: f64) -> Option<(f64, usize)> {
        let idx = self
            .rel_error
            .iter()
            .position(|&e| e <= best * (1.0 + threshold))?;
        Some((self.seconds[idx], self.iterations[idx]))
    }
}

const THRESHOLDS: [f64; 3] = [1e-2, 3e-3, 1e-3];

pub fn run(binary: &Path, data_dir: &Path, quick: bool) -> Result<String> {
    let mut cases = vec![Case {
        name: "seed",
        title: "(a) seed data, dense 5,000 × 1,000, k = 20",
        data: data_dir.join("seed-5000x1000.h5"),
        k: 20,
        normalize: None,
        nmflow_iters: (400, 200),
        peer_iters: 400,
        peer_seconds: 20.0,
        rcppml_maxits: "1,2,3,4,5,6,8,10,12,15,20,30,50",
    }];
    crate::synth::cached_seed(&cases[0].data, 5_000, 1_000, 5)?;
    let real = Path::new("../shared/data/real/derived/mouse_neurons_10k_subset.csr.gzip.h5ad");
    if real.exists() {
        cases.push(Case {
            name: "real",
            title: "(c) mouse neurons, 10,000 cells × 1,000 genes, cp10k-log1p, k = 12",
            data: real.to_path_buf(),
            k: 12,
            normalize: Some("cp10k-log1p"),
            nmflow_iters: (400, 200),
            peer_iters: 400,
            peer_seconds: 30.0,
            rcppml_maxits: "1,2,3,4,5,6,8,10,12,15,20,30,50",
        });
    } else {
        eprintln!(
            "time to error: skipping the real matrix: {} is absent",
            real.display()
        );
    }
    if !quick {
        cases.insert(
            1,
            Case {
                name: "cells",
                title: "(b) simulated cells, 50,000 × 20,000 at 6 %, k = 20",
                data: crate::synth_sc::cached(data_dir, 50_000, 20_000, 20)?,
                k: 20,
                normalize: None,
                nmflow_iters: (200, 60),
                peer_iters: 200,
                peer_seconds: 150.0,
                rcppml_maxits: "1,2,3,4,6,8,12,20",
            },
        );
    }
    let python = bench_python();
    let rscript = rcppml_available();
    let mut out = format!(
        "{}\n\nEvery solver factorizes the same matrix with the same k; the best error is the lowest \
         any of them reached in this run, and each cell gives the seconds (and iterations) to come \
         within 1 %, 0.3 % and 0.1 % of it. Every clock starts with the matrix in a file (in the \
         page cache): nmflow's seconds include its start (the passes of NNDSVD's randomized SVD) \
         and its pre-pass (reading and checking X, writing the block cache; the row sample's \
         principal components come after the last iteration); the peers' include reading the \
         matrix into memory (scikit-learn: h5py, and the normalisation where there is one; RcppML: \
         R reading the binary arrays exported for it, normalised beforehand) and their \
         initialisation (scikit-learn's default nndsvda, RcppML's random start). The column \
         \"reading s\" gives that part of each clock. RcppML has no per-iteration callback: each \
         of its points is a separate call with that `maxit`.\n",
        environment()
    );
    for case in &cases {
        let traces = run_case(binary, case, python.as_deref(), rscript)?;
        out.push_str(&section(case, &traces)?);
    }
    if python.is_none() {
        out.push_str(
            "\nscikit-learn skipped: no Python with scikit-learn. Create one with \
             `python3 -m venv target/bench-venv && target/bench-venv/bin/pip install -r benches/requirements.txt`.\n",
        );
    }
    if !rscript {
        out.push_str(
            "\nRcppML skipped: `Rscript -e 'library(RcppML)'` failed. Install it with \
             `apt-get install r-cran-rcppml`.\n",
        );
    }
    Ok(out)
}

fn rcppml_available() -> bool {
    Command::new("Rscript")
        .args(["-e", "suppressPackageStartupMessages(library(RcppML))"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run_case(
    binary: &Path,
    case: &Case,
    python: Option<&Path>,
    rscript: bool,
) -> Result<Vec<Trace>> {
    let mut traces = Vec::new();
    for (label, args) in [
        ("nmflow mu", vec!["--solver", "mu"]),
        (
            "nmflow hals (inner 1)",
            vec!["--solver", "hals", "--inner", "1"],
        ),
        ("nmflow hals", vec!["--solver", "hals"]),
        (
            "nmflow hals --init nndsvda",
            vec!["--solver", "hals", "--init", "nndsvda"],
        ),
    ] {
        let iters = if label == "nmflow mu" {
            case.nmflow_iters.0
        } else {
            case.nmflow_iters.1
        };
        eprintln!("{}: {label}", case.name);
        traces.push(nmflow_trace(binary, case, label, &args, iters)?);
    }
    if let Some(python) = python {
        for solver in ["sklearn-cd", "sklearn-mu"] {
            eprintln!("{}: {solver}", case.name);
            traces.push(sklearn_trace(python, case, solver)?);
        }
        if rscript {
            eprintln!("{}: RcppML", case.name);
            traces.push(rcppml_trace(python, case)?);
        }
    }
    Ok(traces)
}

fn nmflow_trace(
    binary: &Path,
    case: &Case,
    label: &str,
    args: &[&str],
    iters: usize,
) -> Result<Trace> {
    let work = tempfile::tempdir()?;
    let result = work.path().join("r.h5");
    let mut cmd = Command::new(binary);
    cmd.arg("fit")
        .arg(&case.data)
        .args(["-k", &case.k.to_string(), "--max-iter", &iters.to_string()])
        .args(["--tol", "0", "--scale", "none", "--json", "--quiet"])
        .args(args)
        .arg("-o")
        .arg(&result);
    if let Some(normalize) = case.normalize {
        cmd.args(["--normalize", normalize]);
    }
    let out = cmd.output().context("running nmflow")?;
    if !out.status.success() {
        bail!("nmflow failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let number = |key: &str| summary[key].as_f64().unwrap_or(f64::NAN);
    let file = hdf5::File::open(&result)?;
    let rel_error: Vec<f64> = file.dataset("rel_error")?.read_raw()?;
    let per_iter: Vec<f64> = file.dataset("iteration_seconds")?.read_raw()?;
    let mut clock = number("start_seconds") + number("prepare_seconds");
    let seconds = per_iter
        .iter()
        .map(|s| {
            clock += s;
            clock
        })
        .collect();
    Ok(Trace {
        label: label.to_owned(),
        seconds,
        iterations: (1..=rel_error.len()).collect(),
        rel_error,
        peak_rss: number("peak_rss_bytes"),
        read_seconds: number("prepare_seconds"),
    })
}

fn sklearn_trace(python: &Path, case: &Case, solver: &str) -> Result<Trace> {
    let mut cmd = Command::new(python);
    cmd.arg("benches/peers_trace.py")
        .arg(solver)
        .arg(&case.data)
        .args([
            case.k.to_string(),
            case.peer_iters.to_string(),
            case.peer_seconds.to_string(),
        ]);
    if let Some(normalize) = case.normalize {
        cmd.arg(normalize);
    }
    let out = cmd.output().context("running benches/peers_trace.py")?;
    if !out.status.success() {
        bail!(
            "scikit-learn failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let label = match solver {
        "sklearn-cd" => "scikit-learn cd",
        _ => "scikit-learn mu",
    };
    trace_of(label, &out.stdout)
}

fn rcppml_trace(python: &Path, case: &Case) -> Result<Trace> {
    let work = tempfile::tempdir()?;
    let mut cmd = Command::new(python);
    cmd.arg("benches/peers_trace.py")
        .arg("export")
        .arg(&case.data)
        .arg(work.path());
    if let Some(normalize) = case.normalize {
        cmd.arg(normalize);
    }
    if !cmd.status()?.success() {
        bail!("exporting {} for R failed", case.data.display());
    }
    let out = Command::new("Rscript")
        .arg("benches/rcppml_trace.R")
        .arg(work.path())
        .args([case.k.to_string(), case.rcppml_maxits.to_owned()])
        .output()
        .context("running Rscript")?;
    if !out.status.success() {
        bail!("RcppML failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    trace_of("RcppML", &out.stdout)
}

/// A trace from a peer's JSON (`seconds`, `rel_error`, optional
/// `iterations`, `peak_rss_bytes`).
fn trace_of(label: &str, json: &[u8]) -> Result<Trace> {
    let value: serde_json::Value = serde_json::from_slice(json)?;
    let floats = |key: &str| -> Vec<f64> {
        value[key]
            .as_array()
            .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
            .unwrap_or_default()
    };
    let rel_error = floats("rel_error");
    let load = value["load_seconds"].as_f64().unwrap_or(0.0);
    let iterations = match value["iterations"].as_array() {
        Some(its) => its
            .iter()
            .filter_map(|v| v.as_u64().map(|n| n as usize))
            .collect(),
        None => (1..=rel_error.len()).collect(),
    };
    Ok(Trace {
        label: label.to_owned(),
        seconds: floats("seconds").into_iter().map(|s| s + load).collect(),
        rel_error,
        iterations,
        peak_rss: value["peak_rss_bytes"].as_f64().unwrap_or(f64::NAN),
        read_seconds: load,
    })
}

/// The case's table, target lines and figure.
fn section(case: &Case, traces: &[Trace]) -> Result<String> {
    let best = traces
        .iter()
        .flat_map(|t| t.rel_error.iter().copied())
        .fold(f64::INFINITY, f64::min);
    let mut out = format!(
        "\n### {}\n\nBest relative error reached: {best:.6}.\n\n\
         | solver | iterations run | final rel. error | reading s | to 1 % | to 0.3 % | to 0.1 % | peak RSS MiB |\n\
         |---|---|---|---|---|---|---|---|\n",
        case.title
    );
    for trace in traces {
        let cells: Vec<String> = THRESHOLDS
            .iter()
            .map(|&th| match trace.time_to(best, th) {
                Some((s, it)) => format!("{s:.2} s ({it})"),
                None => "not reached".into(),
            })
            .collect();
        writeln!(
            out,
            "| {} | {} | {:.6} | {:.2} | {} | {:.0} |",
            trace.label,
            trace.iterations.last().copied().unwrap_or(0),
            trace.rel_error.last().copied().unwrap_or(f64::NAN),
            trace.read_seconds,
            cells.join(" | "),
            trace.peak_rss / f64::from(1u32 << 20),
        )?;
    }
    out.push_str(&targets(traces, best));
    let figure = nmflow_report::TimeToError {
        title: case.title.to_owned(),
        best,
        curves: traces
            .iter()
            .map(|t| {
                let points = t.seconds.iter().copied().zip(t.rel_error.iter().copied());
                (t.label.clone(), points.collect())
            })
            .collect(),
    };
    let stem = format!("time-to-error-{}", case.name);
    nmflow_report::render(&figure, Path::new("docs"), &stem)?;
    writeln!(out, "\n![{}]({stem}.svg)", case.title)?;
    Ok(out)
}

/// The targets of nmflow `hals` (every setting measured): at every
/// threshold a third of scikit-learn `cd`'s seconds or less, and less than
/// RcppML's.
fn targets(traces: &[Trace], best: f64) -> String {
    let find = |label: &str| traces.iter().find(|t| t.label == label);
    let mut out = String::from("\n");
    for hals in traces.iter().filter(|t| t.label.starts_with("nmflow hals")) {
        for (peer, factor) in [("scikit-learn cd", 3.0), ("RcppML", 1.0)] {
            let Some(peer) = find(peer) else { continue };
            let cells: Vec<String> = THRESHOLDS
                .iter()
                .map(
                    |&th| match (hals.time_to(best, th), peer.time_to(best, th)) {
                        (Some((ours, _)), Some((theirs, _))) => {
                            let ratio = theirs / ours;
                            let met = if ratio >= factor { "met" } else { "missed" };
                            format!("{:.1} %: {ratio:.2}× ({met})", th * 100.0)
                        }
                        (Some(_), None) => {
                            format!("{:.1} %: {} never reached it (met)", th * 100.0, peer.label)
                        }
                        (None, _) => format!("{:.1} %: not reached (missed)", th * 100.0),
                    },
                )
                .collect();
            writeln!(
                out,
                "- {} against {} (target: at least {factor}× faster): {}; peak RSS {:.2}× of its.",
                hals.label,
                peer.label,
                cells.join(", "),
                hals.peak_rss / peer.peak_rss
            )
            .ok();
        }
    }
    out
}
