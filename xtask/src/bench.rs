//! `cargo xtask bench`: end-to-end runs of the release `nmflow` binary on
//! generated data (cached in `bench-data/`), written as a table between
//! markers in `docs/benchmarks.md` with the machine and git revision.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::synth;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Only the small cases (skip the 1,000,000-row file).
    #[arg(long)]
    pub quick: bool,
    /// Where generated data is cached between runs.
    #[arg(long, default_value = "bench-data")]
    pub data_dir: PathBuf,
    /// The report to update (the section between the bench markers).
    #[arg(long, default_value = "docs/benchmarks.md")]
    pub report: PathBuf,
    /// Also run the scaling sizes (12,500 to 200,000 cells) and draw docs/scaling.svg.
    #[arg(long)]
    pub scaling: bool,
    /// Only fits under several --memory budgets, with peak RSS against each.
    #[arg(long)]
    pub budgets: bool,
    /// Only the larger-than-memory case (2,000,000 cells under --memory 2GiB) and its references.
    #[arg(long)]
    pub out_of_core: bool,
    /// Only `nmflow sweep` and `nmflow report` (seed data; 1,000,000 rows unless --quick).
    #[arg(long)]
    pub sweep: bool,
    /// Only the time to 1 %, 0.3 % and 0.1 % of the best error, nmflow's solvers against
    /// scikit-learn and RcppML (the 50,000-cell case unless --quick), with figures in docs/.
    #[arg(long)]
    pub time_to_error: bool,
    /// Only the block products X_b·Hᵀ and X_bᵀ·W_b at nmflow's shapes: ndarray, nmflow,
    /// faer and the system's OpenBLAS (benches/gemm), with all cores.
    #[arg(long)]
    pub gemm: bool,
    /// Only a whole 5-iteration fit of the seed data against the time of its iterations.
    #[arg(long)]
    pub startup: bool,
    /// Only `mpirun -np 1, 2, 4 nmflow fit` of the 50,000-cell case (the binary built with
    /// `--features mpi`).
    #[arg(long)]
    pub mpi: bool,
}

struct Case {
    name: &'static str,
    /// `--solver`.
    solver: &'static str,
    rows: usize,
    cols: usize,
    components: usize,
    k: usize,
    iterations: usize,
    large: bool,
}

const fn case(
    name: &'static str,
    solver: &'static str,
    (rows, cols): (usize, usize),
    components: usize,
    k: usize,
    iterations: usize,
    large: bool,
) -> Case {
    Case {
        name,
        solver,
        rows,
        cols,
        components,
        k,
        iterations,
        large,
    }
}

/// `seed`/`dense`: `synth seed` (dense HDF5, `components` clusters); `sc`:
/// `synth sc` (CSR h5ad, 6 % non-zero, `components` programs). `large`
/// cases are skipped with `--quick`.
#[rustfmt::skip]
const CASES: &[Case] = &[
    case("seed", "mu", (5_000, 1_000), 5, 4, 100, false),
    case("seed", "mu", (5_000, 1_000), 5, 20, 100, false),
    case("seed", "hals", (5_000, 1_000), 5, 20, 100, false),
    case("sc", "mu", (20_000, 5_000), 10, 20, 20, false),
    case("sc", "hals", (20_000, 5_000), 10, 20, 20, false),
    case("dense", "mu", (1_000_000, 1_000), 5, 4, 10, true),
    case("dense", "mu", (1_000_000, 1_000), 5, 20, 10, true),
    case("sc", "mu", (200_000, 20_000), 20, 20, 10, true),
    case("sc", "hals", (200_000, 20_000), 20, 20, 10, true),
];

const START: &str = "<!-- bench:fit:start -->";
const END: &str = "<!-- bench:fit:end -->";

/// Builds the release `nmflow` binary and returns its path: the one build
/// every task that runs nmflow starts with.
pub fn release_binary() -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args(["build", "--release", "--bin", "nmflow"])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build --release failed");
    }
    Ok(PathBuf::from("target/release/nmflow"))
}

pub fn run(args: BenchArgs) -> Result<()> {
    let binary = release_binary()?;
    std::fs::create_dir_all(&args.data_dir)?;
    // The separate suites: each rewrites its own section of the report.
    let suite = if args.budgets {
        Some(("budget", crate::budget_bench::run(&binary, &args.data_dir)?))
    } else if args.out_of_core {
        Some(("ooc", crate::ooc_bench::run(&binary, &args.data_dir)?))
    } else if args.time_to_error {
        Some((
            "time-to-error",
            crate::time_to_error::run(&binary, &args.data_dir, args.quick)?,
        ))
    } else if args.startup {
        Some((
            "startup",
            crate::startup_bench::run(&binary, &args.data_dir)?,
        ))
    } else if args.gemm {
        Some(("gemm", gemm_backends()?))
    } else if args.mpi {
        Some(("mpi", crate::mpi_bench::run(&args.data_dir)?))
    } else if args.sweep {
        Some((
            "sweep",
            crate::sweep_bench::run(&binary, &args.data_dir, args.quick)?,
        ))
    } else {
        None
    };
    if let Some((name, section)) = suite {
        let (start, end) = (
            format!("<!-- bench:{name}:start -->"),
            format!("<!-- bench:{name}:end -->"),
        );
        update_report(&args.report, &start, &end, &section)?;
        eprintln!("updated {}", args.report.display());
        return Ok(());
    }
    let mut rows = String::new();
    for case in CASES.iter().filter(|c| !(args.quick && c.large)) {
        let ext = if case.name == "sc" { "h5ad" } else { "h5" };
        let data = args
            .data_dir
            .join(format!("{}-{}x{}.{ext}", case.name, case.rows, case.cols));
        if case.name == "sc" {
            crate::synth_sc::cached(&args.data_dir, case.rows, case.cols, case.components)?;
        } else {
            synth::cached_seed(&data, case.rows, case.cols, case.components)?;
        }
        let result = fit(&binary, &data, case, &args.data_dir)?;
        let get = |key: &str| {
            result
                .get(key)
                .and_then(serde_json::Value::as_f64)
                .unwrap_or(f64::NAN)
        };
        eprintln!(
            "{} {} {}×{} k={}: {:.4} s/iteration",
            case.name,
            case.solver,
            case.rows,
            case.cols,
            case.k,
            get("seconds_per_iter")
        );
        let storage = result["storage"].as_str().unwrap_or("?");
        writeln!(
            rows,
            "| {} ({storage}) | {} | {} × {} | {:.1} M | {} | {} | {:.4} | {:.2} | {:.4} | {:.0} |",
            case.name,
            case.solver,
            case.rows,
            case.cols,
            get("nnz") / 1e6,
            case.k,
            case.iterations,
            get("seconds_per_iter"),
            get("prepare_seconds"),
            get("rel_error"),
            get("peak_rss_bytes") / f64::from(1u32 << 20),
        )?;
    }
    if args.scaling {
        let section = crate::scaling::run(&binary, &args.data_dir, Path::new("docs/scaling.svg"))?;
        update_report(
            &args.report,
            "<!-- bench:scaling:start -->",
            "<!-- bench:scaling:end -->",
            &section,
        )?;
    }
    let comparison = compare_with_sklearn(&binary, &args)?;
    update_report(&args.report, SK_START, SK_END, &comparison)?;
    let section = format!(
        "{}\n\n| data | solver | rows × cols | stored values | k | iterations | s / iteration | pre-pass s | final rel. error | peak RSS MiB |\n|---|---|---|---|---|---|---|---|---|---|\n{rows}",
        environment()
    );
    update_report(&args.report, START, END, &section)?;
    eprintln!("updated {}", args.report.display());
    Ok(())
}

fn fit(binary: &Path, data: &Path, case: &Case, dir: &Path) -> Result<serde_json::Value> {
    let out = dir.join("bench-result.h5");
    let output = Command::new(binary)
        .arg("fit")
        .arg(data)
        .args(["-k", &case.k.to_string()])
        .args(["--max-iter", &case.iterations.to_string()])
        .args(["--solver", case.solver])
        .args([
            "--tol", "0", "--seed", "0", "--quiet", "--json", "--force", "-o",
        ])
        .arg(&out)
        .output()
        .with_context(|| format!("running {}", binary.display()))?;
    if !output.status.success() {
        bail!(
            "nmflow fit failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let _ = std::fs::remove_file(&out);
    serde_json::from_slice(&output.stdout).context("parsing the JSON summary of nmflow fit")
}

/// Runs `nmflow ARGS` and parses the JSON it prints.
pub(crate) fn json_of(binary: &Path, args: &[&str]) -> Result<serde_json::Value> {
    let output = Command::new(binary)
        .args(args)
        .output()
        .with_context(|| format!("running {}", binary.display()))?;
    if !output.status.success() {
        bail!(
            "nmflow {} failed: {}",
            args.first().copied().unwrap_or(""),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    serde_json::from_slice(&output.stdout).context("parsing a JSON summary")
}

pub(crate) fn environment() -> String {
    format!(
        "{}, with `cargo xtask bench` (release build, all cores, `--tol 0`, random init seed 0; \
         data from `cargo xtask synth seed` (dense, uncompressed HDF5) and `cargo xtask synth sc` (CSR h5ad, about 6 % non-zero, uncompressed), cached in `bench-data/`).",
        machine()
    )
}

/// Date, git revision and machine of a measurement.
pub(crate) fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or("unknown".into(), |kb| {
            format!("{:.1} GiB", kb / (1u64 << 20) as f64)
        });
    let run = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let rev = run("git", &["rev-parse", "--short", "HEAD"]);
    let dirty = if run("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty() {
        ""
    } else {
        " (with uncommitted changes)"
    };
    let date = run("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    format!("Measured {date} at git revision `{rev}`{dirty} on {cpu}, {cores} cores, {mem} memory")
}

fn update_report(path: &Path, start: &str, end: &str, section: &str) -> Result<()> {
    let current = std::fs::read_to_string(path).unwrap_or_default();
    let section = format!("{start}\n{section}\n{end}");
    let updated = match (current.find(start), current.find(end)) {
        (Some(a), Some(b)) if a < b => {
            format!("{}{section}{}", &current[..a], &current[b + end.len()..])
        }
        _ => format!("{current}\n{section}\n"),
    };
    std::fs::write(path, updated).with_context(|| format!("writing {}", path.display()))
}

/// Builds and runs benches/gemm with faer and, when the system has it,
/// OpenBLAS (`libopenblas-dev`); a markdown section.
fn gemm_backends() -> Result<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let has_openblas = Command::new("ldconfig")
        .arg("-p")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("libopenblas.so"));
    let features = if has_openblas {
        "faer,openblas"
    } else {
        eprintln!(
            "OpenBLAS skipped: no libopenblas.so on this system (scripts/install-deps installs libopenblas-dev)"
        );
        "faer"
    };
    let out = Command::new(&cargo)
        .args([
            "run",
            "--release",
            "-q",
            "-p",
            "nmflow-gemm-bench",
            "--features",
            features,
        ])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running benches/gemm")?;
    if !out.status.success() {
        bail!("benches/gemm failed");
    }
    let skipped = if has_openblas {
        ""
    } else {
        "\n\nOpenBLAS skipped: no libopenblas.so on this system (`scripts/install-deps` installs libopenblas-dev)."
    };
    Ok(format!(
        "{}{skipped}\n\n{}",
        machine_line("cargo xtask bench --gemm"),
        String::from_utf8_lossy(&out.stdout)
    ))
}

/// "Measured … with `command`." for a section.
fn machine_line(command: &str) -> String {
    format!(
        "{}, with `{command}` (release build, all cores).",
        machine()
    )
}

const SK_START: &str = "<!-- bench:sklearn:start -->";
const SK_END: &str = "<!-- bench:sklearn:end -->";

/// The Python that runs scikit-learn: `NMFLOW_BENCH_PYTHON`, else the
/// virtual environment `target/bench-venv`.
pub(crate) fn bench_python() -> Option<PathBuf> {
    let candidate = std::env::var_os("NMFLOW_BENCH_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/bench-venv/bin/python"));
    let ok = Command::new(&candidate)
        .args(["-c", "import sklearn, h5py, scipy"])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some(candidate)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// nmflow against scikit-learn's MU on the same matrix, start and
/// iterations, alternating the two; a markdown section.
fn compare_with_sklearn(binary: &Path, args: &BenchArgs) -> Result<String> {
    let Some(python) = bench_python() else {
        return Ok("Skipped: no Python with scikit-learn. Create one with \
            `python3 -m venv target/bench-venv && target/bench-venv/bin/pip install -r benches/requirements.txt` \
            (or set `NMFLOW_BENCH_PYTHON`) and rerun `cargo xtask bench`."
            .into());
    };
    // (data file, k, iterations, large, scikit-learn's precision)
    #[rustfmt::skip]
    let cases: Vec<(PathBuf, usize, usize, bool, &str)> = vec![
        (args.data_dir.join("seed-5000x1000.h5"), 20, 100, false, "float32"),
        (args.data_dir.join("seed-5000x1000.h5"), 20, 100, false, "float64"),
        (args.data_dir.join("sc-50000x20000.h5ad"), 20, 10, true, "float32"),
        (args.data_dir.join("sc-200000x20000.h5ad"), 20, 5, true, "float32"),
    ];
    if !args.quick {
        crate::synth_sc::cached(&args.data_dir, 50_000, 20_000, 20)?;
    }
    let mut rows = String::new();
    let mut blas = String::new();
    for (data, k, iterations, large, dtype) in cases {
        if (large && args.quick) || !data.exists() {
            continue;
        }
        let work = tempfile::tempdir()?;
        let status = Command::new(&python)
            .arg("benches/sklearn_mu.py")
            .arg("start")
            .arg(&data)
            .args([k.to_string(), "0".into()])
            .arg(work.path())
            .status()?;
        if !status.success() {
            bail!("benches/sklearn_mu.py start failed on {}", data.display());
        }
        let (mut sk, mut nm) = (Vec::new(), Vec::new());
        let (mut sk_err, mut nm_err, mut sk_rss, mut nm_rss) = (0.0, 0.0, 0.0f64, 0.0f64);
        // Alternating rounds (medians): more where a round is short, as a
        // round of the small case lasts under a second and this machine's
        // speed drifts more than that.
        let rounds = if large { 2 } else { 7 };
        for _round in 0..rounds {
            let out = Command::new(&python)
                .arg("benches/sklearn_mu.py")
                .arg("run")
                .arg(&data)
                .args([
                    k.to_string(),
                    "0".into(),
                    iterations.to_string(),
                    dtype.into(),
                ])
                .output()?;
            if !out.status.success() {
                bail!(
                    "scikit-learn failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let r: serde_json::Value = serde_json::from_slice(&out.stdout)?;
            sk.push(r["seconds_per_iter"].as_f64().unwrap_or(f64::NAN));
            sk_err = r["rel_error"].as_f64().unwrap_or(f64::NAN);
            sk_rss = sk_rss.max(r["peak_rss_bytes"].as_f64().unwrap_or(f64::NAN));
            blas = r["blas"].to_string();
            let result = work.path().join("nmflow.h5");
            let out = Command::new(binary)
                .arg("fit")
                .arg(&data)
                .args(["-k", &k.to_string(), "--max-iter", &iterations.to_string()])
                .args([
                    "--tol", "0", "--scale", "none", "--init", "custom", "--quiet", "--json",
                    "--force",
                ])
                .arg("--w0")
                .arg(work.path().join("W1.npy"))
                .arg("--h0")
                .arg(work.path().join("H0.npy"))
                .arg("-o")
                .arg(&result)
                .output()?;
            if !out.status.success() {
                bail!("nmflow failed: {}", String::from_utf8_lossy(&out.stderr));
            }
            let r: serde_json::Value = serde_json::from_slice(&out.stdout)?;
            nm.push(r["seconds_per_iter"].as_f64().unwrap_or(f64::NAN));
            nm_err = r["rel_error"].as_f64().unwrap_or(f64::NAN);
            nm_rss = nm_rss.max(r["peak_rss_bytes"].as_f64().unwrap_or(f64::NAN));
        }
        let (sk_s, nm_s) = (median(sk), median(nm));
        let name = data
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        eprintln!(
            "{name} k={k}: scikit-learn ({dtype}) {sk_s:.4} s, nmflow {nm_s:.4} s per iteration"
        );
        writeln!(
            rows,
            "| {name} | {k} | {iterations} | {dtype} | {sk_s:.4} | {nm_s:.4} | {:.2}× | {sk_err:.6} | {nm_err:.6} | {:.1e} | {:.0} | {:.0} | {:.2} |",
            sk_s / nm_s,
            (sk_err - nm_err).abs() / sk_err,
            sk_rss / f64::from(1u32 << 20),
            nm_rss / f64::from(1u32 << 20),
            nm_rss / sk_rss,
        )?;
    }
    Ok(format!(
        "{}\n\nscikit-learn's BLAS: {blas}.\n\n\
         | data | k | iterations | scikit-learn precision | scikit-learn s / iteration | nmflow s / iteration | speed-up | scikit-learn rel. error | nmflow rel. error | relative difference | scikit-learn peak RSS MiB | nmflow peak RSS MiB | RSS ratio |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|\n{rows}",
        environment()
    ))
}
