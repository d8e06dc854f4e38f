//! `cargo xtask fuzz --minutes M`: the property-based corruption tests of
//! `tests/fuzz.rs` (damaged CSR arrays of h5ad and 10x files, `.npy` files,
//! loom matrices, raw HDF5 bytes), run again and again with fresh seeds
//! and many cases for M minutes (a debug build of the binary: arithmetic
//! overflow is caught as a panic). Failing inputs are
//! kept in `target/fuzz-failures/`; the figures (seeds, cases, time,
//! failures) are appended to docs/fuzzing.md.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Args;

/// Options of `cargo xtask fuzz`.
#[derive(Debug, Args)]
pub struct FuzzArgs {
    /// Minutes to run for.
    #[arg(long, default_value_t = 10)]
    minutes: u64,
    /// Cases per property in one round.
    #[arg(long, default_value_t = 200)]
    cases: u32,
    /// Do not append the figures to docs/fuzzing.md.
    #[arg(long)]
    no_record: bool,
}

/// The three properties of tests/fuzz.rs.
const PROPERTIES: u32 = 3;

pub fn run(args: FuzzArgs) -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the workspace root")?
        .to_path_buf();
    let keep = root.join("target/fuzz-failures");
    let status = Command::new("cargo")
        .current_dir(&root)
        .args(["test", "--test", "integration", "--no-run", "-q"])
        .status()?;
    if !status.success() {
        bail!("building the tests failed");
    }
    let started = Instant::now();
    let budget = Duration::from_secs(args.minutes * 60);
    let first_seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_secs());
    let mut seed = first_seed;
    let (mut rounds, mut failures) = (0u64, Vec::new());
    while started.elapsed() < budget {
        let out = Command::new("cargo")
            .current_dir(&root)
            .args(["test", "-q", "--test", "integration", "fuzz::"])
            .env("NMFLOW_FUZZ_SEED", seed.to_string())
            .env("NMFLOW_FUZZ_CASES", args.cases.to_string())
            .env("NMFLOW_FUZZ_KEEP", &keep)
            .output()?;
        rounds += 1;
        if !out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            let summary: Vec<&str> = text
                .lines()
                .filter(|l| l.contains("Test failed") || l.contains("minimal failing"))
                .collect();
            eprintln!("seed {seed}: FAILED\n{}", summary.join("\n"));
            failures.push((seed, summary.join(" / ")));
        } else {
            eprintln!("seed {seed}: {} cases passed", args.cases * PROPERTIES);
        }
        seed += 1;
    }
    let cases = rounds * u64::from(args.cases) * u64::from(PROPERTIES);
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    eprintln!(
        "{rounds} rounds, up to {cases} cases, {minutes:.1} min, {} failing round(s)",
        failures.len()
    );
    if !args.no_record {
        record(&root, first_seed, rounds, cases, minutes, &failures)?;
    }
    if !failures.is_empty() {
        bail!(
            "{} round(s) failed; inputs kept in {}",
            failures.len(),
            keep.display()
        );
    }
    Ok(())
}

fn record(
    root: &Path,
    first_seed: u64,
    rounds: u64,
    cases: u64,
    minutes: f64,
    failures: &[(u64, String)],
) -> Result<()> {
    let path = root.join("docs/fuzzing.md");
    let mut text = std::fs::read_to_string(&path).unwrap_or_default();
    let revision = Command::new("git")
        .current_dir(root)
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_default();
    let failed = if failures.is_empty() {
        "none".to_owned()
    } else {
        failures
            .iter()
            .map(|(s, what)| format!("seed {s}: {what}"))
            .collect::<Vec<_>>()
            .join("; ")
    };
    writeln!(
        text,
        "| {revision} | {cpu} | {first_seed}–{} | {rounds} | {cases} | {minutes:.1} | {failed} |",
        first_seed + rounds.saturating_sub(1)
    )?;
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
