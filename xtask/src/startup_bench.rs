//! `cargo xtask bench --startup`: a whole 5-iteration fit of the seed data,
//! process start to result written, against the time of its iterations.
//! The fit runs [`RUNS`] times; the section gives the medians of the
//! process's wall time (measured here, around the child) and of the
//! phases nmflow reports (`--json`).

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};

/// Fits timed (medians reported).
const RUNS: usize = 15;

/// Iterations of the fit.
const ITERATIONS: usize = 5;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Runs the fits and returns the markdown section.
pub fn run(binary: &Path, data_dir: &Path) -> Result<String> {
    let data = data_dir.join("seed-5000x1000.h5");
    crate::synth::cached_seed(&data, 5_000, 1_000, 5)?;
    let out = data_dir.join("startup-result.h5");
    let (data_s, out_s) = (
        data.to_str().context("utf-8 path")?,
        out.to_str().context("utf-8 path")?,
    );
    let iterations = ITERATIONS.to_string();
    let args = [
        "fit",
        data_s,
        "-k",
        "5",
        "--max-iter",
        &iterations,
        "--tol",
        "0",
        "--seed",
        "0",
        "--json",
        "--quiet",
        "--force",
        "-o",
        out_s,
    ];
    let (mut wall, mut iters, mut prepare, mut sample, mut inside) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let started = Instant::now();
        let r = crate::bench::json_of(binary, &args)?;
        wall.push(started.elapsed().as_secs_f64());
        let f = |key: &str| r[key].as_f64().unwrap_or(f64::NAN);
        iters.push(f("seconds_per_iter") * ITERATIONS as f64);
        prepare.push(f("prepare_seconds"));
        sample.push(f("sample_seconds"));
        inside.push(f("seconds"));
    }
    let _ = std::fs::remove_file(&out);
    let (wall, iters) = (median(wall), median(iters));
    let (prepare, sample, inside) = (median(prepare), median(sample), median(inside));
    let ratio = wall / iters;
    eprintln!("5-iteration fit: {wall:.3} s whole, {iters:.4} s of iterations ({ratio:.1}×)");
    let ms = |s: f64| s * 1e3;
    let mut s = String::new();
    writeln!(
        s,
        "{}, with `cargo xtask bench --startup` (release build, all cores; `nmflow fit` of the seed data, 5,000 × 1,000 dense, k = 5, {ITERATIONS} iterations, `--tol 0`; medians of {RUNS} runs).\n",
        crate::bench::machine()
    )?;
    writeln!(s, "| measure | ms |\n|---|---|")?;
    writeln!(
        s,
        "| whole process, start to result written (wall) | {:.1} |",
        ms(wall)
    )?;
    writeln!(
        s,
        "| the {ITERATIONS} iterations (the first also copies the row sample) | {:.1} |",
        ms(iters)
    )?;
    writeln!(
        s,
        "| pre-pass (reads X, checks it, column statistics, W₀ᵀX) | {:.1} |",
        ms(prepare)
    )?;
    writeln!(
        s,
        "| the row sample's principal components | {:.1} |",
        ms(sample)
    )?;
    writeln!(
        s,
        "| the rest (process start, opening the file, planning, writing the result) | {:.1} |",
        ms(wall - prepare - sample - iters)
    )?;
    writeln!(
        s,
        "| in the engine (pre-pass, iterations, components) | {:.1} |",
        ms(inside)
    )?;
    writeln!(
        s,
        "| whole / iterations | **{ratio:.1}** (target ≤ 3: {}) |",
        if ratio <= 3.0 { "met" } else { "missed" }
    )?;
    Ok(s)
}
