//! `cargo xtask bench --budgets`: fits under several `--memory` budgets,
//! dense (1,000,000 × 1,000) and sparse (50,000 cells × 20,000 genes), with
//! the whole-process peak RSS against each budget.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

/// Runs the fits and returns the markdown section.
pub fn run(binary: &Path, data_dir: &Path) -> Result<String> {
    let dense = data_dir.join("seed-1000000x1000.h5");
    crate::synth::cached_seed(&dense, 1_000_000, 1000, 5)?;
    let sparse = crate::synth_sc::cached(data_dir, 50_000, 20_000, 20)?;
    let out = data_dir.join("budget-result.h5");
    let cases: [(&Path, &[&str]); 2] = [
        (&dense, &["120MiB", "150MiB", "200MiB", "300MiB", "1GiB"]),
        (&sparse, &["100MiB", "150MiB", "250MiB", "1GiB"]),
    ];
    let mib = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN) / f64::from(1u32 << 20);
    let mut rows = String::new();
    let mut worst = 0.0f64;
    for (data, budgets) in cases {
        for budget in budgets {
            let summary = crate::bench::json_of(
                binary,
                &[
                    "fit",
                    data.to_str().context("utf-8 path")?,
                    "-k",
                    "20",
                    "--max-iter",
                    "3",
                    "--tol",
                    "0",
                    "--memory",
                    budget,
                    "--force",
                    "--json",
                    "--quiet",
                    "-o",
                    out.to_str().context("utf-8 path")?,
                ],
            )?;
            let ratio = summary["peak_rss_bytes"].as_f64().unwrap_or(f64::NAN)
                / summary["budget_bytes"].as_f64().unwrap_or(f64::NAN);
            worst = worst.max(ratio);
            eprintln!(
                "{} {budget}: peak {:.0} MiB",
                data.display(),
                mib(&summary["peak_rss_bytes"])
            );
            writeln!(
                rows,
                "| {} | {budget} | {} | {} | {:.0} | {:.0} | {:.2} | {:.3} |",
                data.file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default(),
                summary["block_rows"],
                summary["w_storage"].as_str().unwrap_or("?"),
                mib(&summary["predicted_peak_bytes"]),
                mib(&summary["peak_rss_bytes"]),
                ratio,
                summary["seconds_per_iter"].as_f64().unwrap_or(f64::NAN),
            )?;
        }
    }
    let _ = std::fs::remove_file(&out);
    Ok(format!(
        "{}, with `cargo xtask bench --budgets` (release build, all cores, k = 20, 3 iterations, `--tol 0`; \
         block cache on).\n\n| input | `--memory` | block rows | W | predicted peak MiB | peak RSS MiB | peak / budget | s / iteration |\n\
         |---|---|---|---|---|---|---|---|\n{rows}\nLargest peak / budget: **{worst:.2}** (target: within 1.10).",
        crate::bench::machine()
    ))
}
