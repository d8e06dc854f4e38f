//! `cargo xtask bench --mpi`: `mpirun -np P nmflow fit` of the 50,000-cell
//! single-cell case for P = 1, 2 and 4 on this machine's loopback, with
//! the release binary built with `--features mpi`: seconds per iteration,
//! every process's peak memory, and the bytes each iteration sums over the
//! processes; then a sweep spread by rows over 2 processes against the
//! same runs spread whole over 2 independent processes (the alternative
//! its cost model rejects) and one process. Skipped, saying so, without
//! `mpirun`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Processes measured.
const PROCESSES: [usize; 3] = [1, 2, 4];
/// The case: cells, genes, programs, k, iterations.
const CELLS: usize = 50_000;
const GENES: usize = 20_000;
const K: usize = 20;
const ITERATIONS: usize = 10;

/// The sweep measured: k from .. to, restarts, iterations.
const SWEEP_KS: &str = "4..7";
const SWEEP_RESTARTS: usize = 2;

/// Builds the release binary with the `mpi` feature.
fn mpi_binary() -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args(["build", "--release", "--bin", "nmflow", "--features", "mpi"])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build --release --features mpi failed");
    }
    Ok(PathBuf::from("target/release/nmflow"))
}

/// Runs the cases and returns the markdown section.
pub fn run(data_dir: &Path) -> Result<String> {
    if Command::new("mpirun").arg("--version").output().is_err() {
        let note = "skipped: `mpirun` is not installed (scripts/install-deps installs openmpi-bin)";
        eprintln!("bench --mpi {note}");
        return Ok(format!("`cargo xtask bench --mpi` {note}.\n"));
    }
    let binary = mpi_binary()?;
    let data = crate::synth_sc::cached(data_dir, CELLS, GENES, 20)?;
    let out = data_dir.join("mpi-result.h5");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let root = is_root();
    let mut table = String::new();
    let mut single = f64::NAN;
    for &p in &PROCESSES {
        let threads = (cores / p).max(1).to_string();
        let mut cmd = mpirun(root, p, &binary);
        cmd.args(["fit"])
            .arg(&data)
            .args(["-k", &K.to_string(), "--max-iter", &ITERATIONS.to_string()])
            .args(["--tol", "0", "--seed", "0", "--threads", &threads])
            .args(["--json", "-q", "--force", "-o"])
            .arg(&out);
        let output = cmd.output().context("running mpirun")?;
        if !output.status.success() {
            bail!(
                "mpirun -np {p} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let r: serde_json::Value =
            serde_json::from_slice(&output.stdout).context("parsing the JSON summary")?;
        let per_iter = r["seconds_per_iter"].as_f64().unwrap_or(f64::NAN);
        if p == 1 {
            single = per_iter;
        }
        let mib = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN) / f64::from(1u32 << 20);
        let peaks: Vec<String> = match r["process_peak_rss_bytes"].as_array() {
            Some(peaks) => peaks.iter().map(|v| format!("{:.0}", mib(v))).collect(),
            None => vec![format!("{:.0}", mib(&r["peak_rss_bytes"]))],
        };
        let n_cols = r["n_cols"].as_u64().unwrap_or(0) as usize;
        // XᵀW, WᵀW, W's column sums, the cross and data terms, in f64.
        let reduced = 8 * (K * n_cols + K * K + K + 2);
        eprintln!("-np {p}: {per_iter:.4} s/iteration");
        writeln!(
            table,
            "| {p} | {threads} | {:.4} | {:.2} | {} | {:.2} | {:.4} |",
            per_iter,
            single / per_iter,
            peaks.join(", "),
            reduced as f64 / 1e6,
            r["rel_error"].as_f64().unwrap_or(f64::NAN),
        )?;
    }
    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_file(out.with_extension("programs.tsv"));
    let sweep = sweep_table(&binary, &data, data_dir, root, cores)?;
    let mut s = String::new();
    writeln!(
        s,
        "{}, with `cargo xtask bench --mpi` (release build with `--features mpi`, OpenMPI over the loopback, `mpirun --oversubscribe --bind-to none`; `nmflow fit` of the {CELLS} × {GENES} CSR h5ad of `cargo xtask synth sc`, k = {K}, {ITERATIONS} iterations, `--tol 0`; the machine's {cores} cores shared: `--threads` = cores / processes, at least 1).\n",
        crate::bench::machine()
    )?;
    writeln!(
        s,
        "| processes | threads each | s / iteration | speed-up | peak RSS per process, MiB | summed per iteration, MB | final rel. error |\n|---|---|---|---|---|---|---|\n{table}"
    )?;
    writeln!(
        s,
        "`nmflow sweep -k {SWEEP_KS} --restarts {SWEEP_RESTARTS} --max-iter {ITERATIONS} --tol 0` of the same file ({} runs), whole command (plan, passes, gathering W, scores, consensus, every file written):\n",
        SWEEP_RESTARTS * 4
    )?;
    writeln!(
        s,
        "| spread | processes × threads | seconds, median of {SWEEP_ROUNDS} (range) | peak RSS per process, MiB (process 0 for mpirun) | X read per iteration, all processes |\n|---|---|---|---|---|\n{sweep}"
    )?;
    Ok(s)
}

/// `mpirun -np p BINARY` as the benchmark runs it.
fn mpirun(root: bool, p: usize, binary: &Path) -> Command {
    let mut cmd = Command::new("mpirun");
    if root {
        cmd.arg("--allow-run-as-root");
    }
    // No binding: OpenMPI binds each process to one core by default,
    // which would leave a process's second thread without a core.
    cmd.args([
        "--oversubscribe",
        "--bind-to",
        "none",
        "-np",
        &p.to_string(),
    ])
    .arg(binary);
    cmd
}

/// Rounds of the sweep comparison (each runs the three ways in turn; the
/// table gives the median and the range).
const SWEEP_ROUNDS: usize = 3;

/// The sweep three ways: one process; 2 processes sharing every run's rows
/// (`mpirun -np 2 nmflow sweep`); 2 independent processes each running
/// whole runs (half the restarts each: what spreading runs would do, read
/// for read). Wall-clock seconds of the whole command, over
/// [`SWEEP_ROUNDS`] rounds.
fn sweep_table(
    binary: &Path,
    data: &Path,
    data_dir: &Path,
    root: bool,
    cores: usize,
) -> Result<String> {
    let half = (cores / 2).max(1);
    let sweep = |cmd: &mut Command, out: &Path, restarts: usize, seed: usize, threads: usize| {
        cmd.arg("sweep")
            .arg(data)
            .args(["-k", SWEEP_KS, "--restarts", &restarts.to_string()])
            .args(["--max-iter", &ITERATIONS.to_string(), "--tol", "0"])
            .args([
                "--seed",
                &seed.to_string(),
                "--threads",
                &threads.to_string(),
            ])
            .args(["--json", "--force", "-o"])
            .arg(out)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
    };
    let out = |i: usize| data_dir.join(format!("mpi-sweep-{i}"));
    // Starts every command of one way at once; the seconds until all
    // finished and each one's peak RSS (MiB) from its JSON summary.
    let timed = |commands: Vec<Command>| -> Result<(f64, Vec<f64>)> {
        let started = std::time::Instant::now();
        let children: Vec<_> = commands
            .into_iter()
            .map(|mut cmd| cmd.spawn().context("running nmflow sweep"))
            .collect::<Result<_>>()?;
        let mut peaks = Vec::new();
        for child in children {
            let output = child
                .wait_with_output()
                .context("waiting for nmflow sweep")?;
            if !output.status.success() {
                bail!(
                    "nmflow sweep failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            let r: serde_json::Value = serde_json::from_slice(&output.stdout)
                .context("parsing the sweep's JSON summary")?;
            peaks.push(r["run"]["peak_rss_bytes"].as_f64().unwrap_or(f64::NAN) / 1048576.0);
        }
        Ok((started.elapsed().as_secs_f64(), peaks))
    };
    let ways: [(&str, String, &str); 3] = [
        ("none", format!("1 × {cores}"), "X once"),
        ("rows (`mpirun -np 2`)", format!("2 × {half}"), "X once"),
        (
            "runs (2 independent sweeps of half the restarts)",
            format!("2 × {half}"),
            "X twice",
        ),
    ];
    let mut seconds = vec![Vec::new(); ways.len()];
    let mut peaks = vec![Vec::new(); ways.len()];
    for round in 0..SWEEP_ROUNDS {
        for (way, (name, _, _)) in ways.iter().enumerate() {
            let commands = match way {
                0 => {
                    let mut cmd = Command::new(binary);
                    sweep(&mut cmd, &out(0), SWEEP_RESTARTS, 0, cores);
                    vec![cmd]
                }
                1 => {
                    let mut cmd = mpirun(root, 2, binary);
                    sweep(&mut cmd, &out(0), SWEEP_RESTARTS, 0, half);
                    vec![cmd]
                }
                // Runs spread whole: each process reads all of X for its
                // own runs.
                _ => (0..2)
                    .map(|i| {
                        let mut cmd = Command::new(binary);
                        sweep(&mut cmd, &out(i + 1), SWEEP_RESTARTS / 2, i, half);
                        cmd
                    })
                    .collect(),
            };
            let (s, p) = timed(commands)?;
            eprintln!("sweep round {}, {name}: {s:.1} s", round + 1);
            seconds[way].push(s);
            peaks[way] = p;
        }
    }
    let mut table = String::new();
    for (way, (name, layout, read)) in ways.iter().enumerate() {
        let s = &mut seconds[way];
        s.sort_by(f64::total_cmp);
        let peak: Vec<String> = peaks[way].iter().map(|p| format!("{p:.0}")).collect();
        writeln!(
            table,
            "| {name} | {layout} | {:.1} ({:.1}–{:.1}) | {} | {read} |",
            s[s.len() / 2],
            s[0],
            s[s.len() - 1],
            peak.join(", ")
        )?;
    }
    for i in 0..3 {
        let _ = std::fs::remove_dir_all(out(i));
    }
    Ok(table)
}

/// Whether this process runs as root (mpirun then needs
/// `--allow-run-as-root`).
fn is_root() -> bool {
    std::env::var("USER").is_ok_and(|u| u == "root")
        || std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1))
                == Some("0")
        })
}
