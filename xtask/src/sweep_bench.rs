//! `cargo xtask bench --sweep`: `nmflow sweep` and `nmflow report` on the
//! seed data (5,000 × 1,000, the README example) and, unless `--quick`, on
//! 1,000,000 × 1,000 rows under `--memory 1GiB`, with time and peak memory.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

struct SweepCase {
    rows: usize,
    ks: &'static str,
    restarts: usize,
    extra: &'static [&'static str],
    large: bool,
}

const CASES: &[SweepCase] = &[
    SweepCase {
        rows: 5_000,
        ks: "2..8",
        restarts: 10,
        extra: &[],
        large: false,
    },
    SweepCase {
        rows: 1_000_000,
        ks: "2..6",
        restarts: 3,
        extra: &["--max-iter", "5", "--tol", "0", "--memory", "1GiB"],
        large: true,
    },
];

/// Runs the cases and returns the markdown section.
pub fn run(binary: &Path, data_dir: &Path, quick: bool) -> Result<String> {
    let mib = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN) / f64::from(1u32 << 20);
    let mut table = String::new();
    let mut per_k = String::new();
    for case in CASES.iter().filter(|c| !(quick && c.large)) {
        let data = data_dir.join(format!("seed-{}x1000.h5", case.rows));
        crate::synth::cached_seed(&data, case.rows, 1000, 5)?;
        let out = data_dir.join(format!("sweep-{}", case.rows));
        let report = data_dir.join(format!("report-{}", case.rows));
        let restarts = case.restarts.to_string();
        let mut args = vec![
            "sweep",
            data.to_str().context("utf-8 path")?,
            "-k",
            case.ks,
            "--restarts",
            &restarts,
            "--labels",
            "/labels",
            "-o",
            out.to_str().context("utf-8 path")?,
            "--force",
            "--json",
            "--quiet",
        ];
        args.extend_from_slice(case.extra);
        let sweep = crate::bench::json_of(binary, &args)?;
        let rep = crate::bench::json_of(
            binary,
            &[
                "report",
                out.to_str().context("utf-8 path")?,
                "-o",
                report.to_str().context("utf-8 path")?,
                "--force",
                "--json",
            ],
        )?;
        let n_runs = sweep["runs"].as_array().map_or(0, Vec::len);
        eprintln!(
            "sweep {} rows: {:.1} s, peak {:.0} MiB",
            case.rows,
            sweep["run"]["seconds"].as_f64().unwrap_or(f64::NAN),
            mib(&sweep["run"]["peak_rss_bytes"])
        );
        writeln!(
            table,
            "| {} × 1000 | {} | {} | {n_runs} | {} | {:.1} | {:.0} | {:.0} | {} | {:.2} | {:.0} |",
            case.rows,
            case.ks,
            case.restarts,
            if case.extra.is_empty() {
                "`--tol 1e-4`, max 200 iterations".to_owned()
            } else {
                format!("`{}`", case.extra.join(" "))
            },
            sweep["run"]["seconds"].as_f64().unwrap_or(f64::NAN),
            mib(&sweep["run"]["peak_rss_bytes"]),
            mib(&sweep["run"]["predicted_peak_bytes"]),
            rep["figures"],
            rep["seconds"].as_f64().unwrap_or(f64::NAN),
            mib(&rep["peak_rss_bytes"]),
        )?;
        if !case.large {
            for k in sweep["per_k"].as_array().into_iter().flatten() {
                let f = |key: &str| k[key].as_f64().unwrap_or(f64::NAN);
                writeln!(
                    per_k,
                    "| {} | {:.4} | {:.4} | {:.5} | {:.4} | {:.4} | {:.4} | {:.4} |",
                    k["k"],
                    f("best_rel_error"),
                    f("mean_rel_error"),
                    f("sd_rel_error"),
                    f("cophenetic"),
                    f("spectra_stability"),
                    f("ari"),
                    f("nmi"),
                )?;
            }
        }
    }
    Ok(format!(
        "{}, with `cargo xtask bench --sweep` (release build, all cores, random init seeds 0, 1, ...; \
         data from `cargo xtask synth seed`, dense uncompressed HDF5, with its `/labels`).\n\n| rows × cols | k | restarts | runs | stopping | sweep s | sweep peak RSS MiB | predicted peak MiB | report figures | report s | report peak RSS MiB |\n|---|---|---|---|---|---|---|---|---|---|---|\n{table}\n\
         Seed data (5,000 × 1,000, five clusters), `--restarts 10`, against `/labels`:\n\n\
         | k | best rel. error | mean | sd | cophenetic | spectra stability | ARI | NMI |\n|---|---|---|---|---|---|---|---|\n{per_k}",
        crate::bench::machine()
    ))
}
