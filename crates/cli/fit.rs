//! `nmflow fit`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use nmflow_core::{FitOutcome, Init};
use nmflow_io::output::check_output_path;
use nmflow_io::{
    AttrValue, FitOutput, InputKind, InputSpec, Layout, Names, SampleOutput, StartFactor,
    read_names, read_start, write_h5ad, write_into_h5ad, write_result,
};
use serde::Serialize;

use crate::args::{FitArgs, InitArg, NormalizeArg};
use crate::budget;
use crate::session::{self, Finished, Input, Prepared, RunSpec};
use crate::usage::usage;

/// The summary of a run, printed as text or as JSON.
#[derive(Debug, Serialize)]
struct Summary {
    input: String,
    dataset: Option<String>,
    storage: String,
    dtype: String,
    n_rows: usize,
    n_cols: usize,
    k: usize,
    nnz: u64,
    integer_valued: bool,
    budget_bytes: u64,
    predicted_peak_bytes: u64,
    cache: String,
    w_storage: String,
    n_iter: usize,
    converged: bool,
    rel_error: f64,
    seconds: f64,
    prepare_seconds: f64,
    sample_seconds: f64,
    seconds_per_iter: f64,
    block_rows: usize,
    threads: usize,
    cluster_sizes: Vec<usize>,
    /// Seed of the run kept.
    seed: u64,
    /// Final relative error of every restart, in seed order.
    restart_rel_errors: Vec<f64>,
    /// The plan's estimates, from timing block 0.
    estimated_prepare_seconds: Option<f64>,
    estimated_seconds_per_iter: Option<f64>,
    output: String,
    peak_rss_bytes: Option<u64>,
}

/// Where the result goes.
enum Destination {
    Hdf5(PathBuf),
    H5ad(PathBuf),
    Into(PathBuf),
}

impl Destination {
    fn path(&self) -> &Path {
        match self {
            Destination::Hdf5(p) | Destination::H5ad(p) | Destination::Into(p) => p,
        }
    }
}

/// What a checkpoint records of this command: the input's fingerprint and
/// every parameter that shapes the iterates.
fn checkpoint_meta(
    args: &FitArgs,
    input: &Input,
    valid: &nmflow_core::ValidParams,
) -> Result<nmflow_io::checkpoint::CheckpointMeta> {
    let p = valid.params();
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    session::command_meta(
        input,
        &args.input,
        vec![
            ("k", p.k.to_string()),
            ("restarts", args.restarts.to_string()),
            ("seed", args.run.seed.to_string()),
            ("max_iter", p.max_iter.to_string()),
            ("tol", p.tol.to_string()),
            ("normalize", p.normalize.as_str().to_owned()),
            ("scale", p.scale.as_str().to_owned()),
            ("init", p.init.as_str().to_owned()),
            ("w0", text(&args.w0)),
            ("h0", text(&args.h0)),
            ("sample", args.run.sample.to_string()),
            ("block_rows", valid.block_rows().to_string()),
        ],
    )
}

/// The kinds of result file nmflow writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultFormat {
    /// Plain HDF5 (`.h5`, `.hdf5`).
    Hdf5,
    /// AnnData (`.h5ad`).
    H5ad,
}

/// The format of a result named `path`, from its extension; `None` for a
/// name nmflow does not write (`.npy`, no extension, ...).
pub fn result_format(path: &Path) -> Option<ResultFormat> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "h5ad" => Some(ResultFormat::H5ad),
        "h5" | "hdf5" => Some(ResultFormat::Hdf5),
        _ => None,
    }
}

pub fn run(mut args: FitArgs) -> Result<()> {
    let started = Instant::now();
    // A checkpoint to continue from: read first, so that the plan takes its
    // block height (results depend on it in the last bits).
    let loaded = match &args.checkpoint {
        Some(path) if path.exists() && args.resume => {
            let loaded = nmflow_io::checkpoint::read_checkpoint(path)?;
            if args.run.block_rows.is_none() {
                args.run.block_rows = loaded.meta.param("block_rows").and_then(|v| v.parse().ok());
            }
            Some(loaded)
        }
        Some(path) if path.exists() => usage!(
            "{}: a checkpoint exists; continue from it with --resume, or delete it to start anew",
            path.display()
        ),
        _ => None,
    };
    let args = args;
    let run = &args.run;
    let mut input = Input::open(&args.input)?;
    let destination = match (&args.output, &args.write_into) {
        (Some(out), None) => match result_format(out) {
            Some(ResultFormat::H5ad) => Destination::H5ad(out.clone()),
            Some(ResultFormat::Hdf5) => Destination::Hdf5(out.clone()),
            None => usage!(
                "{}: nmflow writes results as .h5 or .hdf5 (plain HDF5: /W, /H, ...) or .h5ad \
                 (AnnData); give -o with one of these extensions",
                out.display()
            ),
        },
        (None, Some(target)) => {
            let same =
                std::fs::canonicalize(target).ok() == std::fs::canonicalize(&input.spec.path).ok();
            if !same {
                usage!(
                    "--write-into must name the input file ({}), not {}",
                    input.spec.path.display(),
                    target.display()
                );
            }
            Destination::Into(target.clone())
        }
        _ => usage!("give one of -o FILE and --write-into INPUT.h5ad"),
    };
    if let Destination::Hdf5(out) | Destination::H5ad(out) = &destination {
        nmflow_io::atomic::check_not_input(out, &input.spec.path)?;
        check_output_path(out, args.force)?;
    }
    if let Destination::Into(target) = &destination {
        nmflow_io::atomic::check_writable(target)?;
        nmflow_io::h5ad::check_editable(target)?;
    }
    if matches!(destination, Destination::Into(_)) && input.opened.layout != Some(Layout::H5ad) {
        usage!(
            "--write-into needs an h5ad input; {} is not one",
            input.spec.path.display()
        );
    }
    let n_rows = input.n_rows();
    let n_cols = input.n_cols();
    let init = match args.init {
        InitArg::Random => {
            if args.w0.is_some() || args.h0.is_some() {
                usage!("--w0 and --h0 need --init custom");
            }
            Init::Random
        }
        InitArg::Custom => {
            let (Some(w0), Some(h0)) = (&args.w0, &args.h0) else {
                usage!("--init custom needs both --w0 FILE and --h0 FILE");
            };
            if args.restarts > 1 {
                usage!("--restarts needs --init random: custom starts are all the same");
            }
            let w0_spec = InputSpec::parse(w0);
            let h0_spec = InputSpec::parse(h0);
            session::probe(&w0_spec.path)?;
            session::probe(&h0_spec.path)?;
            Init::Custom {
                w0: read_start(&w0_spec, StartFactor::W, (n_rows, args.k))
                    .with_context(|| format!("reading --w0 {w0_spec}"))?,
                h0: read_start(&h0_spec, StartFactor::H, (args.k, n_cols))
                    .with_context(|| format!("reading --h0 {h0_spec}"))?,
            }
        }
    };
    let specs: Vec<RunSpec> = (0..args.restarts)
        .map(|restart| RunSpec {
            k: args.k,
            restart,
            seed: run.seed + restart as u64,
        })
        .collect();
    // The memory plan: block height, W's place and the batches.
    let extra = session::sample_bytes(&input, run.sample);
    let Prepared {
        valid,
        plan,
        pool,
        threads,
        estimate,
        cache_note,
        reads_cheap,
        pass_bytes,
    } = session::prepare(&mut input, &specs, run, extra, |spec| {
        if spec.restart == 0 {
            init.clone()
        } else {
            Init::Random
        }
    })?;
    // Names after the plan: the plan refuses a shape too large for the
    // budget before anything of its size is allocated.
    let names = match destination {
        Destination::H5ad(_) if input.opened.kind == InputKind::Npy => {
            Some(Names::numbered((n_rows, n_cols)))
        }
        Destination::H5ad(_) => Some(read_names(
            &input.spec.path,
            input.spec.dataset.as_deref(),
            &input.opts,
            (n_rows, n_cols),
        )?),
        _ => None,
    };
    let col_names = match destination {
        Destination::Hdf5(_) => session::column_names(&input)?,
        _ => None,
    };

    let w_bytes = (4 * n_rows as u64).saturating_mul(args.k as u64);
    let w_note = if plan.w_on_disk {
        format!(
            "on disk in {} ({})",
            input.tmp_dir().display(),
            budget::human(w_bytes)
        )
    } else {
        format!("in memory ({})", budget::human(w_bytes))
    };
    if !run.quiet && !run.json {
        eprintln!(
            "plan: budget {} ({}); blocks of {} rows; predicted peak {} (W {w_note}); \
             {} read per pass; {} run(s) in {} batch(es); cache {cache_note}",
            budget::human(plan.budget),
            plan.budget_from,
            plan.block_rows,
            budget::human(plan.predicted_peak),
            budget::human(pass_bytes),
            specs.len(),
            plan.batches.len(),
        );
        if let Some(estimate) = &estimate {
            eprintln!("{}", estimate.describe(reads_cheap));
        }
    }

    let mut persist = match &args.checkpoint {
        Some(path) => {
            nmflow_io::atomic::check_not_input(path, &input.spec.path)?;
            nmflow_io::output::check_output_path(path, true)?;
            let meta = checkpoint_meta(&args, &input, &valid[0])?;
            if let Some(loaded) = &loaded {
                let differences = loaded.meta.differences(&meta);
                if !differences.is_empty() {
                    bail!(
                        "{}: this checkpoint was written by another command or for another input; \
                         it differs in:\n  {}\n(delete it to start anew)",
                        path.display(),
                        differences.join("\n  ")
                    );
                }
                if !run.quiet && !run.json {
                    eprintln!(
                        "resuming from {} after iteration {}",
                        path.display(),
                        loaded.resume.iteration
                    );
                }
            } else if args.resume && !run.quiet && !run.json {
                eprintln!(
                    "no checkpoint at {} yet: starting from the beginning",
                    path.display()
                );
            }
            Some(session::Persist {
                path: path.clone(),
                every: args.checkpoint_every,
                meta,
                resume: loaded,
            })
        }
        None => None,
    };
    let mut best: Option<(Finished, Vec<u64>, nmflow_core::Pca)> = None;
    let mut restart_errors = vec![f64::NAN; specs.len()];
    pool.install(|| {
        session::run_batches(
            &mut input,
            &specs,
            &valid,
            &plan,
            run.sample,
            run.quiet,
            persist.as_mut(),
            |finished, info| {
                for f in finished {
                    let err = f.outcome.final_rel_error();
                    restart_errors[f.spec_idx] = err;
                    let better = best
                        .as_ref()
                        .is_none_or(|(b, _, _)| err < b.outcome.final_rel_error());
                    if better {
                        best = Some((f, info.rows.clone(), info.pca.clone()));
                    }
                }
                Ok(())
            },
        )
    })?;
    let (mut best, sample_rows, pca) = best.context("no run finished")?;
    let spec = specs[best.spec_idx];
    let report = best.outcome;
    let clusters = nmflow_core::factor::clusters(best.w.as_mut(), plan.block_rows);
    let mut attrs = session::result_attrs(&input.record(), &valid[best.spec_idx], &report, threads);
    attrs.push(("restarts".into(), AttrValue::Int(args.restarts as i64)));
    if let (Some(w0), Some(h0)) = (&args.w0, &args.h0) {
        attrs.push(("w0".into(), AttrValue::Str(w0.clone())));
        attrs.push(("h0".into(), AttrValue::Str(h0.clone())));
    }
    let mut output = FitOutput {
        w: best.w.as_mut(),
        h: report.h.view(),
        rel_error: &report.rel_error,
        cluster: &clusters,
        col_scale: &report.col_scale,
        attrs,
        sample: Some(SampleOutput {
            rows: &sample_rows,
            pca: pca.scores.view(),
            variance_ratio: &pca.explained_variance_ratio,
        }),
        col_names: col_names.as_deref(),
    };
    match &destination {
        Destination::Hdf5(path) => write_result(path, &mut output, args.force)?,
        Destination::H5ad(path) => {
            let names = names
                .as_ref()
                .context("names were read for the h5ad output")?;
            write_h5ad(path, &mut output, names, args.force)?;
        }
        Destination::Into(path) => write_into_h5ad(path, &mut output, args.input.raw)?,
    }
    // The result is in place: the checkpoint has served.
    if let Some(path) = &args.checkpoint {
        if let Err(e) = std::fs::remove_file(path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(e)
                    .with_context(|| format!("{}: removing the checkpoint", path.display()));
            }
        }
    }

    let summary = summarize(&report, &clusters, args.k, started.elapsed().as_secs_f64());
    let summary = Summary {
        input: input.name.clone(),
        dataset: input.opened.dataset.take(),
        dtype: input.opened.dtype.clone(),
        storage: input.opened.storage.clone(),
        n_rows,
        n_cols,
        threads,
        output: destination.path().display().to_string(),
        budget_bytes: plan.budget,
        predicted_peak_bytes: plan.predicted_peak,
        cache: cache_note.clone(),
        w_storage: w_note.clone(),
        seed: spec.seed,
        restart_rel_errors: restart_errors,
        estimated_prepare_seconds: estimate.map(|e| e.prepare_s()),
        estimated_seconds_per_iter: estimate.map(|e| e.iteration_s(reads_cheap)),
        ..summary
    };
    if summary.integer_valued && run.normalize == NormalizeArg::None && !run.quiet && !run.json {
        eprintln!(
            "note: every value of the input is a whole number (raw counts?); \
             consider --normalize cp10k-log1p"
        );
    }
    if run.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else if !run.quiet {
        print_summary(&summary, run.tol);
    }
    Ok(())
}

fn summarize(report: &FitOutcome, clusters: &[u32], k: usize, seconds: f64) -> Summary {
    let mut cluster_sizes = vec![0usize; k];
    for &c in clusters {
        cluster_sizes[c as usize] += 1;
    }
    let iter_total: f64 = report.iteration_seconds.iter().sum();
    Summary {
        input: String::new(),
        dataset: None,
        storage: String::new(),
        dtype: String::new(),
        n_rows: 0,
        n_cols: 0,
        k,
        nnz: report.n_stored,
        integer_valued: report.integer_valued,
        budget_bytes: 0,
        predicted_peak_bytes: 0,
        cache: String::new(),
        w_storage: String::new(),
        n_iter: report.n_iter(),
        converged: report.converged,
        rel_error: report.final_rel_error(),
        seconds,
        prepare_seconds: report.prepare_seconds,
        sample_seconds: report.sample_seconds,
        seconds_per_iter: iter_total / report.n_iter().max(1) as f64,
        block_rows: report.block_rows,
        threads: 0,
        cluster_sizes,
        seed: 0,
        restart_rel_errors: Vec::new(),
        estimated_prepare_seconds: None,
        estimated_seconds_per_iter: None,
        output: String::new(),
        peak_rss_bytes: crate::system::peak_rss_bytes(),
    }
}

fn print_summary(s: &Summary, tol: f64) {
    println!(
        "input      {} ({} × {}, {} {}, {} stored values{})",
        s.input,
        s.n_rows,
        s.n_cols,
        s.storage,
        s.dtype,
        s.nnz,
        if s.integer_valued {
            ", whole numbers"
        } else {
            ""
        }
    );
    let stop = if s.converged {
        format!("converged: improvement below tol {tol:e}")
    } else {
        "reached --max-iter".to_owned()
    };
    println!("k          {}", s.k);
    if s.restart_rel_errors.len() > 1 {
        println!(
            "restarts   {} (kept seed {}; final errors {:.6?})",
            s.restart_rel_errors.len(),
            s.seed,
            s.restart_rel_errors
        );
    }
    println!("iterations {} ({stop})", s.n_iter);
    println!("rel_error  {:.6}", s.rel_error);
    println!(
        "time       {:.2} s ({:.4} s/iteration, pre-pass {:.2} s, {} threads, blocks of {} rows)",
        s.seconds, s.seconds_per_iter, s.prepare_seconds, s.threads, s.block_rows
    );
    println!("clusters   {:?}", s.cluster_sizes);
    if let Some(rss) = s.peak_rss_bytes {
        println!("peak RSS   {:.1} MiB", rss as f64 / (1u64 << 20) as f64);
    }
    println!("written    {}", s.output);
}
