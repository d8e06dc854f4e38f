//! `nmflow report`: figures and an HTML page for a fit result or a sweep
//! directory.

use std::path::Path;

use crate::sweep_file::{KSummary, SweepSummary};
use anyhow::{Context, Result, bail};
use nmflow_io::{FitResult, Labels, read_labels, read_result};
use nmflow_report::{
    ConsensusHeatmap, ErrorCurves, Figure, PcaPanels, RankBy, SampleLabels, Section,
    StabilityCurves, SweepErrors, TopColumns, WHeatmap, html_page, render, write_atomically,
};

use crate::args::ReportArgs;
use crate::outdir::OutputDir;

/// Rows of W drawn when a result stores no sample.
const MAX_SAMPLE: usize = 2000;

pub fn run(args: ReportArgs) -> Result<()> {
    let started = std::time::Instant::now();
    let out = &args.output;
    let index = out.join("index.html");
    if index.exists() && !args.force {
        bail!(
            "{}: the output exists (use --force to replace it)",
            index.display()
        );
    }
    if !args.result.exists() {
        bail!("{}: no such file or directory", args.result.display());
    }
    // A single result is read (and checked) before the directory is made;
    // a sweep's results are checked as they are read, and the directory,
    // when this run made it, is removed again on failure.
    let single = if args.result.is_dir() {
        None
    } else {
        crate::session::probe(&args.result)?;
        Some(read_result(&args.result, MAX_SAMPLE)?)
    };
    let out_dir = OutputDir::create(out)?;
    let (title, sections) = match &single {
        None => sweep_sections(&args.result, out, args.top, args.labels.as_deref())?,
        Some(result) => {
            let labels = match &args.labels {
                Some(spec) => Some(read_labels(&result.path, spec, result.n_rows, false)?),
                None => None,
            };
            let title = format!("nmflow fit: {}", args.result.display());
            (
                title,
                vec![fit_section(result, out, "", args.top, labels.as_ref())?],
            )
        }
    };
    let page = html_page(&title, &sections)?;
    write_atomically(&index, page.as_bytes())?;
    out_dir.keep();
    let n: usize = sections.iter().map(|s| s.figures.len()).sum();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "index": index.display().to_string(),
                "figures": n,
                "seconds": started.elapsed().as_secs_f64(),
                "peak_rss_bytes": crate::system::peak_rss_bytes(),
            })
        );
    } else if !args.quiet {
        println!(
            "written    {} ({n} figures as PNG and SVG)",
            index.display()
        );
    }
    Ok(())
}

fn fit_section(
    result: &FitResult,
    out: &Path,
    prefix: &str,
    top: usize,
    labels: Option<&Labels>,
) -> Result<Section> {
    let k = result.k;
    let mut figures: Vec<Figure> = Vec::new();
    figures.push(render(
        &ErrorCurves {
            title: format!("Relative error by iteration (k = {k})"),
            curves: vec![(format!("k = {k}"), result.rel_error.clone())],
        },
        out,
        &format!("{prefix}error_curve"),
    )?);
    figures.push(render(
        &WHeatmap {
            title: format!(
                "Program usage (W) of {} sampled cells (k = {k})",
                result.sample_rows.len()
            ),
            w: result.sample_w.view(),
        },
        out,
        &format!("{prefix}w_heatmap"),
    )?);
    for (by, what, stem) in [
        (RankBy::Loading, "by loading", "top_columns"),
        (RankBy::Specificity, "by specificity", "top_specific"),
    ] {
        figures.push(render(
            &TopColumns {
                title: format!("Top {top} genes of each program, {what} (k = {k})"),
                h: result.h.view(),
                names: result.col_names.as_deref(),
                top,
                by,
            },
            out,
            &format!("{prefix}{stem}"),
        )?);
    }
    figures.extend(pca_figure(result, labels, out, prefix)?);
    let mut table: Vec<(String, String)> = vec![
        ("result".into(), result.path.display().to_string()),
        ("cells (rows)".into(), result.n_rows.to_string()),
        ("genes (columns)".into(), result.h.ncols().to_string()),
        ("k".into(), k.to_string()),
        ("iterations".into(), result.rel_error.len().to_string()),
        (
            "final relative error".into(),
            result
                .rel_error
                .last()
                .map_or(String::new(), |e| format!("{e:.6}")),
        ),
    ];
    table.extend(parameters(&result.params));
    if result.pca.is_none() {
        table.push((
            "principal components".into(),
            "not stored in this result (written by nmflow fit ≥ 0.1 with a row sample)".into(),
        ));
    }
    Ok(Section {
        heading: format!("k = {k}"),
        table,
        grid: None,
        figures,
    })
}

/// The principal components of the sampled cells, by cluster, by label
/// (when there are labels) and by program usage; `None` for a result that
/// stores no components.
fn pca_figure(
    result: &FitResult,
    labels: Option<&Labels>,
    out: &Path,
    prefix: &str,
) -> Result<Option<Figure>> {
    let k = result.k;
    let Some((scores, ratio)) = &result.pca else {
        return Ok(None);
    };
    let sample_codes: Option<Vec<u32>> = labels.map(|l| {
        result
            .sample_rows
            .iter()
            .map(|&r| l.codes.get(r as usize).copied().unwrap_or(0))
            .collect()
    });
    let what = labels.map(|l| l.source.rsplit('/').next().unwrap_or_default());
    let figure = render(
        &PcaPanels {
            title: format!(
                "First two principal components of {} sampled cells, by cluster{} and by program usage (k = {k})",
                scores.nrows(),
                if labels.is_some() { ", by label" } else { "" }
            ),
            scores: scores.view(),
            variance_ratio: ratio,
            w: result.sample_w.view(),
            labels: labels
                .zip(sample_codes.as_deref())
                .map(|(l, codes)| SampleLabels {
                    what: what.unwrap_or_default(),
                    codes,
                    names: &l.names,
                }),
        },
        out,
        &format!("{prefix}pca"),
    )?;
    Ok(Some(figure))
}

fn sweep_sections(
    dir: &Path,
    out: &Path,
    top: usize,
    labels: Option<&str>,
) -> Result<(String, Vec<Section>)> {
    let sweep = read_sweep(dir)?;
    let labels = sweep_labels(dir, &sweep, labels)?;
    let mut per_k = sweep.per_k.clone();
    per_k.sort_by_key(|r| r.k);
    let mut sections = vec![Section {
        heading: "Sweep".into(),
        table: sweep_table(&sweep),
        grid: Some(sweep_grid(&per_k)),
        figures: sweep_figures(dir, &per_k, sweep.labels.is_some(), out)?,
    }];
    for r in &per_k {
        let (k, name) = (r.k, r.result.clone());
        crate::session::probe(&dir.join(&name))?;
        let result = read_result(&dir.join(&name), MAX_SAMPLE)?;
        sections.push(fit_section(
            &result,
            out,
            &format!("k{k}_"),
            top,
            labels.as_ref(),
        )?);
    }
    Ok((format!("nmflow sweep: {}", dir.display()), sections))
}

/// The labels of a sweep's report: `--labels` read against the first k's
/// result (an h5ad result carries the input's obs), else the sweep's own
/// (`FILE:/path`) while that file is there; none when the sweep had none.
fn sweep_labels(dir: &Path, sweep: &SweepSummary, spec: Option<&str>) -> Result<Option<Labels>> {
    let first = sweep.per_k.iter().min_by_key(|r| r.k);
    match (spec, first) {
        (Some(spec), Some(r)) => Ok(Some(read_labels(
            &dir.join(&r.result),
            spec,
            sweep.n_rows,
            false,
        )?)),
        (None, Some(r)) => match &sweep.labels {
            Some(source) => {
                let file = source.split_once(":/").map(|(f, _)| f).unwrap_or_default();
                if Path::new(file).exists() {
                    Ok(Some(read_labels(
                        &dir.join(&r.result),
                        source,
                        sweep.n_rows,
                        false,
                    )?))
                } else {
                    Ok(None)
                }
            }
            None => Ok(None),
        },
        (_, None) => Ok(None),
    }
}

/// The run's parameters for the page: each once (k, the iterations and the
/// final error are in the rows above), flags as words.
fn parameters(params: &[(String, String)]) -> Vec<(String, String)> {
    const SHOWN_ABOVE: [&str; 3] = ["k", "n_iter", "rel_error"];
    const FLAGS: [&str; 1] = ["converged"];
    let mut seen: Vec<&str> = Vec::new();
    params
        .iter()
        .filter(|(name, _)| !SHOWN_ABOVE.contains(&name.as_str()))
        .filter(|(name, _)| {
            let first = !seen.contains(&name.as_str());
            seen.push(name);
            first
        })
        .map(|(name, value)| {
            let value = match value.as_str() {
                "1" | "true" if FLAGS.contains(&name.as_str()) || value == "true" => "yes".into(),
                "0" | "false" if FLAGS.contains(&name.as_str()) || value == "false" => "no".into(),
                _ => value.clone(),
            };
            (name.clone(), value)
        })
        .collect()
}

/// The sweep.json of the sweep in `dir`, through the types it is written
/// with.
fn read_sweep(dir: &Path) -> Result<SweepSummary> {
    let json_path = dir.join("sweep.json");
    let text = std::fs::read_to_string(&json_path).with_context(|| {
        format!(
            "{}: reading the sweep (is this an nmflow sweep directory?)",
            json_path.display()
        )
    })?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: not the sweep.json of nmflow sweep",
            json_path.display()
        )
    })
}

/// The sweep's figures: errors, stability and agreement with the labels
/// against k, and the error traces of each k's best restart.
fn sweep_figures(
    dir: &Path,
    per_k: &[KSummary],
    has_labels: bool,
    out: &Path,
) -> Result<Vec<Figure>> {
    let ks: Vec<usize> = per_k.iter().map(|r| r.k).collect();
    let numbers = |field: fn(&KSummary) -> f64| -> Vec<f64> { per_k.iter().map(field).collect() };
    let mut figures = Vec::new();
    let (best, mean, sd) = (
        numbers(|r| r.best_rel_error),
        numbers(|r| r.mean_rel_error),
        numbers(|r| r.sd_rel_error),
    );
    figures.push(render(
        &SweepErrors {
            title: "Final relative error against k".into(),
            ks: &ks,
            best: &best,
            mean: &mean,
            sd: &sd,
        },
        out,
        "sweep_error",
    )?);
    let suggested = nmflow_report::suggest_k(&ks, &best, &numbers(|r| r.spectra_stability));
    let suggested_k = suggested.as_ref().map(|(k, _)| *k);
    figures.push(render(
        &StabilityCurves {
            title: "Stability across restarts against k".into(),
            y_desc: "score".into(),
            marker: suggested,
            ks: &ks,
            curves: vec![
                (
                    "cophenetic correlation (consensus)".into(),
                    numbers(|r| r.cophenetic),
                ),
                (
                    "spectra stability (matched H correlation)".into(),
                    numbers(|r| r.spectra_stability),
                ),
            ],
        },
        out,
        "sweep_stability",
    )?);
    if has_labels {
        figures.push(render(
            &StabilityCurves {
                title: "Agreement of the clusters with the labels against k".into(),
                y_desc: "score (best restart)".into(),
                marker: None,
                ks: &ks,
                curves: vec![
                    (
                        "adjusted Rand index".into(),
                        numbers(|r| r.ari.unwrap_or(f64::NAN)),
                    ),
                    (
                        "normalised mutual information".into(),
                        numbers(|r| r.nmi.unwrap_or(f64::NAN)),
                    ),
                ],
            },
            out,
            "sweep_ari",
        )?);
    }
    if let Some(figure) = consensus_figure(dir, per_k, suggested_k, out)? {
        figures.push(figure);
    }
    let traces: Vec<(String, Vec<f64>)> = per_k
        .iter()
        .map(|r| (format!("k = {}", r.k), r.best_rel_error_trace.clone()))
        .collect();
    figures.push(render(
        &ErrorCurves {
            title: "Relative error by iteration (best restart of each k)".into(),
            curves: traces,
        },
        out,
        "sweep_error_curves",
    )?);
    Ok(figures)
}

/// The consensus heatmap of the chosen k: the suggested one, else the one
/// of highest cophenetic correlation (`None` for a sweep without a
/// consensus file, written before there was one).
fn consensus_figure(
    dir: &Path,
    per_k: &[KSummary],
    suggested: Option<usize>,
    out: &Path,
) -> Result<Option<Figure>> {
    let (chosen, why) = match suggested {
        Some(k) => (k, "the suggested k"),
        None => match per_k
            .iter()
            .filter(|r| r.cophenetic.is_finite())
            .max_by(|a, b| a.cophenetic.total_cmp(&b.cophenetic))
        {
            Some(r) => (r.k, "the k of highest cophenetic correlation"),
            None => return Ok(None),
        },
    };
    let Some((_, c)) = nmflow_io::consensus_file::read_consensus(dir, chosen)? else {
        return Ok(None);
    };
    let order = nmflow_core::stability::dendrogram_order(c.matrix.view());
    let figure = render(
        &ConsensusHeatmap {
            title: format!(
                "Consensus of {} restarts for k = {chosen} ({why})",
                c.n_runs
            ),
            consensus: c.matrix.view(),
            order: &order,
        },
        out,
        "sweep_consensus",
    )?;
    Ok(Some(figure))
}

/// The sweep's parameters, as a table of names and values.
fn sweep_table(sweep: &SweepSummary) -> Vec<(String, String)> {
    [
        ("input", sweep.input.clone()),
        ("n_rows", sweep.n_rows.to_string()),
        ("n_cols", sweep.n_cols.to_string()),
        ("restarts", sweep.restarts.to_string()),
        ("seed", sweep.seed.to_string()),
        ("max_iter", sweep.max_iter.to_string()),
        ("tol", sweep.tol.to_string()),
        ("normalize", sweep.normalize.clone()),
        ("scale", sweep.scale.clone()),
        ("labels", sweep.labels.clone().unwrap_or_default()),
        ("n_sample_rows", sweep.n_sample_rows.to_string()),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(n, v)| (n.to_owned(), v))
    .collect()
}

/// The per-k scores, as a header and rows.
fn sweep_grid(per_k: &[KSummary]) -> (Vec<String>, Vec<Vec<String>>) {
    let header: Vec<String> = [
        "k",
        "best_rel_error",
        "mean_rel_error",
        "sd_rel_error",
        "cophenetic",
        "spectra_stability",
        "ari",
        "nmi",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let cell = |v: Option<f64>| {
        v.filter(|v| v.is_finite())
            .map_or(String::new(), |v| format!("{v:.4}"))
    };
    let rows: Vec<Vec<String>> = per_k
        .iter()
        .map(|r| {
            vec![
                r.k.to_string(),
                cell(Some(r.best_rel_error)),
                cell(Some(r.mean_rel_error)),
                cell(Some(r.sd_rel_error)),
                cell(Some(r.cophenetic)),
                cell(Some(r.spectra_stability)),
                cell(r.ari),
                cell(r.nmi),
            ]
        })
        .collect();
    (header, rows)
}

#[cfg(test)]
mod tests {
    use super::parameters;

    #[test]
    fn parameters_appear_once_with_flags_as_words() {
        let params: Vec<(String, String)> = [
            ("k", "5"),
            ("seed", "0"),
            ("converged", "1"),
            ("seed", "0"),
            ("raw", "false"),
            ("n_iter", "200"),
        ]
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect();
        let shown = parameters(&params);
        let pairs: Vec<(&str, &str)> = shown
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        assert_eq!(
            pairs,
            vec![("seed", "0"), ("converged", "yes"), ("raw", "no")]
        );
    }
}
