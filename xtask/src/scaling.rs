//! How cost grows: seconds per iteration against stored entries over
//! sizes spanning 16×, and peak RSS against rows under one budget, as a
//! table, a least-squares fit and an SVG plot (`docs/scaling.svg`).

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Cells of the four sizes (20,000 genes, 6 % non-zero): 16× from first to last.
const CELLS: [usize; 4] = [12_500, 50_000, 100_000, 200_000];
const GENES: usize = 20_000;
const BUDGET: &str = "1GiB";
const BUDGET_BYTES: f64 = (1u64 << 30) as f64;

pub struct Point {
    pub cells: usize,
    pub nnz: f64,
    pub seconds: f64,
    pub rss: f64,
}

/// Runs the sizes and returns the markdown section; writes `svg_path`.
pub fn run(binary: &Path, data_dir: &Path, svg_path: &Path) -> Result<String> {
    let mut points = Vec::new();
    for cells in CELLS {
        let data = crate::synth_sc::cached(data_dir, cells, GENES, 20)?;
        let out = data_dir.join("scaling-result.h5");
        let run = Command::new(binary)
            .arg("fit")
            .arg(&data)
            .args([
                "-k",
                "20",
                "--max-iter",
                "5",
                "--tol",
                "0",
                "--memory",
                BUDGET,
                "--quiet",
                "--json",
                "--force",
                "-o",
            ])
            .arg(&out)
            .output()
            .context("running nmflow")?;
        if !run.status.success() {
            bail!(
                "nmflow failed on {}: {}",
                data.display(),
                String::from_utf8_lossy(&run.stderr)
            );
        }
        let _ = std::fs::remove_file(&out);
        let r: serde_json::Value = serde_json::from_slice(&run.stdout)?;
        let get = |key: &str| r[key].as_f64().unwrap_or(f64::NAN);
        eprintln!(
            "scaling {cells} cells: {:.3} s/iteration",
            get("seconds_per_iter")
        );
        points.push(Point {
            cells,
            nnz: get("nnz"),
            seconds: get("seconds_per_iter"),
            rss: get("peak_rss_bytes"),
        });
    }
    let (intercept, slope, r2) = least_squares(&points);
    std::fs::write(svg_path, svg(&points, intercept, slope))
        .with_context(|| format!("writing {}", svg_path.display()))?;
    let mut table = String::new();
    for p in &points {
        writeln!(
            table,
            "| {} | {:.1} M | {:.3} | {:.3} | {:.0} |",
            p.cells,
            p.nnz / 1e6,
            p.seconds,
            intercept + slope * p.nnz,
            p.rss / f64::from(1u32 << 20)
        )?;
    }
    Ok(format!(
        "{}\n\nEach size runs `nmflow fit -k 20 --max-iter 5 --tol 0 --memory {BUDGET}` on \
         `synth sc` data with {GENES} genes at 6 % density. Least-squares fit of seconds per \
         iteration against stored entries: t = {intercept:.4} s + {:.3} ns × nnz (R² = {r2:.4}).\n\n\
         ![seconds per iteration against stored entries, and peak RSS against rows](scaling.svg)\n\n\
         | cells | stored values | s / iteration | fitted | peak RSS MiB |\n|---|---|---|---|---|\n{table}",
        crate::bench::environment(),
        slope * 1e9,
    ))
}

fn least_squares(points: &[Point]) -> (f64, f64, f64) {
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.nnz).sum::<f64>() / n;
    let my = points.iter().map(|p| p.seconds).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.nnz - mx) * (p.seconds - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.nnz - mx).powi(2)).sum();
    let slope = sxy / sxx;
    let intercept = my - slope * mx;
    let ss_res: f64 = points
        .iter()
        .map(|p| (p.seconds - intercept - slope * p.nnz).powi(2))
        .sum();
    let ss_tot: f64 = points.iter().map(|p| (p.seconds - my).powi(2)).sum();
    (intercept, slope, 1.0 - ss_res / ss_tot)
}

/// Two panels: s/iteration vs stored entries (with the fit), peak RSS vs
/// rows (with the budget).
fn svg(points: &[Point], intercept: f64, slope: f64) -> String {
    let (w, h, m) = (900.0, 380.0, 60.0);
    let panel_w = (w - 3.0 * m) / 2.0;
    let panel_h = h - 2.0 * m;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    let max_nnz = points.iter().map(|p| p.nnz).fold(0.0, f64::max) * 1.1;
    let max_s = points.iter().map(|p| p.seconds).fold(0.0, f64::max) * 1.2;
    let max_rows = points.iter().map(|p| p.cells as f64).fold(0.0, f64::max) * 1.1;
    let max_rss = BUDGET_BYTES * 1.2 / f64::from(1u32 << 20);
    let panels = [
        (
            "stored entries (millions)",
            "seconds per iteration",
            max_nnz / 1e6,
            max_s,
            m,
        ),
        (
            "rows (thousands of cells)",
            "peak RSS (MiB)",
            max_rows / 1e3,
            max_rss,
            2.0 * m + panel_w,
        ),
    ];
    for (idx, &(xl, yl, xmax, ymax, x0)) in panels.iter().enumerate() {
        let (x0, y0) = (x0, m + panel_h);
        let title = if idx == 0 {
            "Time grows linearly with stored entries"
        } else {
            "Memory stays under the budget (1 GiB)"
        };
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"14\">{title}</text>",
            x0 + panel_w / 2.0,
            m - 20.0
        );
        let _ = writeln!(
            out,
            "<line x1=\"{x0}\" y1=\"{y0}\" x2=\"{}\" y2=\"{y0}\" stroke=\"black\"/>",
            x0 + panel_w
        );
        let _ = writeln!(
            out,
            "<line x1=\"{x0}\" y1=\"{y0}\" x2=\"{x0}\" y2=\"{m}\" stroke=\"black\"/>"
        );
        for t in 0..=4 {
            let f = t as f64 / 4.0;
            let (tx, ty) = (x0 + f * panel_w, y0 - f * panel_h);
            let _ = writeln!(
                out,
                "<text x=\"{tx}\" y=\"{}\" text-anchor=\"middle\">{:.0}</text>",
                y0 + 16.0,
                f * xmax
            );
            let _ = writeln!(
                out,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
                x0 - 6.0,
                ty + 4.0,
                if idx == 0 {
                    format!("{:.2}", f * ymax)
                } else {
                    format!("{:.0}", f * ymax)
                }
            );
        }
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{xl}</text>",
            x0 + panel_w / 2.0,
            y0 + 36.0
        );
        let _ = writeln!(
            out,
            "<text transform=\"translate({},{}) rotate(-90)\" text-anchor=\"middle\">{yl}</text>",
            x0 - 45.0,
            m + panel_h / 2.0
        );
        let to_px = |x: f64, y: f64| (x0 + x / xmax * panel_w, y0 - y / ymax * panel_h);
        if idx == 0 {
            let (ax, ay) = to_px(0.0, intercept);
            let (bx, by) = to_px(xmax, intercept + slope * xmax * 1e6);
            let _ = writeln!(
                out,
                "<line x1=\"{ax:.1}\" y1=\"{ay:.1}\" x2=\"{bx:.1}\" y2=\"{by:.1}\" stroke=\"#d62728\" stroke-dasharray=\"5,4\"/>"
            );
            let _ = writeln!(
                out,
                "<text x=\"{}\" y=\"{}\" fill=\"#d62728\">least-squares fit</text>",
                x0 + 10.0,
                m + 10.0
            );
        } else {
            let (_, by) = to_px(0.0, BUDGET_BYTES / f64::from(1u32 << 20));
            let _ = writeln!(
                out,
                "<line x1=\"{x0}\" y1=\"{by:.1}\" x2=\"{}\" y2=\"{by:.1}\" stroke=\"#d62728\" stroke-dasharray=\"5,4\"/>",
                x0 + panel_w
            );
            let _ = writeln!(
                out,
                "<text x=\"{}\" y=\"{}\" fill=\"#d62728\">--memory 1GiB</text>",
                x0 + 10.0,
                by - 6.0
            );
        }
        for p in points {
            let (x, y) = if idx == 0 {
                (p.nnz / 1e6, p.seconds)
            } else {
                (p.cells as f64 / 1e3, p.rss / f64::from(1u32 << 20))
            };
            let (px, py) = to_px(x, y);
            let _ = writeln!(
                out,
                "<circle cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"4\" fill=\"#1f77b4\"/>"
            );
        }
    }
    out.push_str("</svg>\n");
    out
}
