//! `nmflow fit`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use nmflow_core::FactorStore;
use nmflow_core::{
    FitOutcome, Init, NmfParams, Normalize, PlanInput, Scale, estimate_memory,
    estimate_memory_sparse, fit_in,
};
use nmflow_io::cache::{CachedSource, free_space};
use nmflow_io::factor_file::MappedFactor;
use nmflow_io::output::check_output_path;
use nmflow_io::prefetch::PrefetchSource;
use nmflow_io::{
    AttrValue, FitOutput, InputKind, InputSpec, Layout, Names, OpenOptions, open_source,
    read_matrix, read_names, write_h5ad, write_into_h5ad, write_result,
};
use serde::Serialize;

use crate::args::{FitArgs, InitArg, NormalizeArg, ScaleArg};
use crate::budget;
use crate::progress::Progress;

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
    seconds_per_iter: f64,
    block_rows: usize,
    threads: usize,
    cluster_sizes: Vec<usize>,
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

pub fn run(args: FitArgs) -> Result<()> {
    let started = Instant::now();
    let spec = InputSpec::parse(&args.input);
    let destination = match (&args.output, &args.write_into) {
        (Some(out), None) if out.extension().is_some_and(|e| e == "h5ad") => {
            Destination::H5ad(out.clone())
        }
        (Some(out), None) => Destination::Hdf5(out.clone()),
        (None, Some(target)) => {
            let same = std::fs::canonicalize(target).ok() == std::fs::canonicalize(&spec.path).ok();
            if !same {
                bail!(
                    "--write-into must name the input file ({}), not {}",
                    spec.path.display(),
                    target.display()
                );
            }
            Destination::Into(target.clone())
        }
        _ => bail!("give one of -o FILE and --write-into INPUT.h5ad"),
    };
    if let Destination::Hdf5(out) | Destination::H5ad(out) = &destination {
        check_output_path(out, args.force)?;
    }
    let opts = OpenOptions {
        layer: args.layer.clone(),
        raw: args.raw,
        transpose: args.transpose,
        genome: args.genome.clone(),
        all_features: args.all_features,
        tmp_dir: args.tmp_dir.clone(),
    };
    let mut opened = open_source(&spec, &opts)?;
    if matches!(destination, Destination::Into(_)) && opened.layout != Some(Layout::H5ad) {
        bail!(
            "--write-into needs an h5ad input; {} is not one",
            spec.path.display()
        );
    }
    let input_name = match &opened.dataset {
        Some(ds) => format!("{}:{ds}", spec.path.display()),
        None => spec.path.display().to_string(),
    };
    let n_rows = opened.source.n_rows();
    let n_cols = opened.source.n_cols();
    let names = match destination {
        Destination::H5ad(_) if opened.kind == InputKind::Npy => {
            Some(Names::numbered((n_rows, n_cols)))
        }
        Destination::H5ad(_) => Some(read_names(
            &spec.path,
            spec.dataset.as_deref(),
            &opts,
            (n_rows, n_cols),
        )?),
        _ => None,
    };

    let init = match args.init {
        InitArg::Random => {
            if args.w0.is_some() || args.h0.is_some() {
                bail!("--w0 and --h0 need --init custom");
            }
            Init::Random
        }
        InitArg::Custom => {
            let (Some(w0), Some(h0)) = (&args.w0, &args.h0) else {
                bail!("--init custom needs both --w0 FILE and --h0 FILE");
            };
            let w0_spec = InputSpec::parse(w0);
            let h0_spec = InputSpec::parse(h0);
            Init::Custom {
                w0: read_matrix(&w0_spec, "/W")
                    .with_context(|| format!("reading --w0 {w0_spec}"))?,
                h0: read_matrix(&h0_spec, "/H")
                    .with_context(|| format!("reading --h0 {h0_spec}"))?,
            }
        }
    };
    let params = NmfParams {
        k: args.k,
        max_iter: args.max_iter,
        tol: args.tol,
        seed: args.seed,
        normalize: match args.normalize {
            NormalizeArg::None => Normalize::None,
            NormalizeArg::Cp10kLog1p => Normalize::Cp10kLog1p,
            NormalizeArg::Log1p => Normalize::Log1p,
        },
        scale: match args.scale {
            ScaleArg::ColStd => Scale::ColStd,
            ScaleArg::None => Scale::None,
        },
        block_rows: args.block_rows,
        init,
    };
    let init_name = params.init.as_str();
    let valid = params
        .check(n_rows, n_cols, opened.source.preferred_block_rows())
        .with_context(|| input_name.clone())?;

    // The memory plan: block height within the budget.
    let (budget, budget_from) = budget::budget(args.memory)?;
    let nnz = opened.source.nnz_hint();
    let plan_input = PlanInput {
        n_rows,
        n_cols,
        k: args.k,
        nnz,
        preferred_rows: opened.source.preferred_block_rows(),
        budget,
        w_on_disk: false,
    };
    let w_bytes = 4 * n_rows as u64 * args.k as u64;
    let (plan, w_on_disk) = budget::plan_fit(plan_input)
        .with_context(|| format!("{input_name}: planning for the memory budget"))?;
    let block_rows = args.block_rows.unwrap_or(plan.block_rows);
    let valid = valid.with_block_rows(block_rows);
    let mut estimate = match nnz {
        Some(nnz) => estimate_memory_sparse(n_rows, n_cols, args.k, block_rows, nnz),
        None => estimate_memory(n_rows, n_cols, args.k, block_rows),
    };
    let tmp_dir = args.tmp_dir.clone().unwrap_or_else(std::env::temp_dir);
    let mut w_store: Box<dyn FactorStore> = if w_on_disk {
        estimate.w_bytes = estimate.w_bytes.min(8 * (block_rows * args.k) as u64);
        Box::new(MappedFactor::new(n_rows, args.k, &tmp_dir)?)
    } else {
        Box::new(ndarray::Array2::<f32>::zeros((n_rows, args.k)))
    };
    let w_note = if w_on_disk {
        format!(
            "on disk in {} ({})",
            tmp_dir.display(),
            budget::human(w_bytes)
        )
    } else {
        format!("in memory ({})", budget::human(w_bytes))
    };

    // The block cache, for HDF5 inputs not already memory-mapped.
    let pass_bytes = match nnz {
        Some(nnz) => 8 * nnz + 8 * n_rows as u64,
        None => 4 * n_rows as u64 * n_cols as u64,
    };
    let mapped = opened.kind == InputKind::Npy || opened.storage.contains("transposed");
    let cache_dir = args
        .cache
        .clone()
        .or_else(|| args.tmp_dir.clone())
        .unwrap_or_else(std::env::temp_dir);
    let cache_note = if args.no_cache {
        if !mapped {
            let inner = take_source(&mut opened.source);
            opened.source = Box::new(PrefetchSource::new(inner, block_rows, None, 1));
        }
        "off (--no-cache)".to_owned()
    } else if mapped {
        "not needed (the input is memory-mapped)".to_owned()
    } else if free_space(&cache_dir).is_some_and(|free| free >= pass_bytes + pass_bytes / 5) {
        // Read ahead during the first pass; later passes map the cache.
        let inner = take_source(&mut opened.source);
        let ahead = PrefetchSource::new(inner, block_rows, Some(1), 1);
        opened.source = Box::new(CachedSource::new(Box::new(ahead), &cache_dir)?);
        format!("{} in {}", budget::human(pass_bytes), cache_dir.display())
    } else {
        format!(
            "off: {} has less than {} free",
            cache_dir.display(),
            budget::human(pass_bytes + pass_bytes / 5)
        )
    };
    let predicted_peak = nmflow_core::plan::BASELINE_BYTES + estimate.total_bytes();
    if !args.quiet && !args.json {
        eprintln!(
            "plan: budget {} ({budget_from}); blocks of {block_rows} rows; predicted peak {} \
             (W {w_note}, H and products {}, blocks {}); {} read per pass; cache {cache_note}",
            budget::human(budget),
            budget::human(predicted_peak),
            budget::human(estimate.factor_bytes),
            budget::human(estimate.block_bytes),
            budget::human(pass_bytes),
        );
    }
    if predicted_peak > budget {
        bail!(
            "{input_name}: --block-rows {block_rows} needs about {}, more than the budget of {}",
            budget::human(predicted_peak),
            budget::human(budget)
        );
    }

    let mut builder = rayon::ThreadPoolBuilder::new();
    if let Some(threads) = args.threads {
        if threads == 0 {
            bail!("--threads must be at least 1");
        }
        builder = builder.num_threads(threads);
    }
    let pool = builder.build().context("starting the worker threads")?;
    let threads = pool.current_num_threads();

    let progress = Progress::new(n_rows, args.max_iter, args.quiet);
    let report = pool
        .install(|| {
            fit_in(
                opened.source.as_mut(),
                &valid,
                w_store.as_mut(),
                &mut |event| progress.on_event(event),
            )
        })
        .with_context(|| input_name.clone());
    progress.finish();
    let report = report?;

    let clusters = nmflow_core::factor::clusters(w_store.as_mut(), block_rows);
    let mut attrs = vec![
        (
            "nmflow_version",
            AttrValue::Str(env!("CARGO_PKG_VERSION").into()),
        ),
        ("input", AttrValue::Str(spec.path.display().to_string())),
        (
            "dataset",
            AttrValue::Str(opened.dataset.clone().unwrap_or_default()),
        ),
        ("k", AttrValue::Int(args.k as i64)),
        ("max_iter", AttrValue::Int(args.max_iter as i64)),
        ("tol", AttrValue::Float(args.tol)),
        ("seed", AttrValue::Int(args.seed as i64)),
        ("init", AttrValue::Str(init_name.into())),
        (
            "scale",
            AttrValue::Str(valid.params().scale.as_str().into()),
        ),
        (
            "normalize",
            AttrValue::Str(valid.params().normalize.as_str().into()),
        ),
        (
            "format",
            AttrValue::Str(opened.layout.map_or("npy", |l| l.as_str()).into()),
        ),
        ("storage", AttrValue::Str(opened.storage.clone())),
        ("block_rows", AttrValue::Int(report.block_rows as i64)),
        ("threads", AttrValue::Int(threads as i64)),
        (
            "epsilon",
            AttrValue::Float(f64::from(nmflow_core::DENOMINATOR_EPSILON)),
        ),
        ("n_iter", AttrValue::Int(report.n_iter() as i64)),
        ("converged", AttrValue::Int(i64::from(report.converged))),
        ("rel_error", AttrValue::Float(report.final_rel_error())),
    ];
    if let (Some(w0), Some(h0)) = (&args.w0, &args.h0) {
        attrs.push(("w0", AttrValue::Str(w0.clone())));
        attrs.push(("h0", AttrValue::Str(h0.clone())));
    }
    let mut output = FitOutput {
        w: w_store.as_mut(),
        h: report.h.view(),
        rel_error: &report.rel_error,
        cluster: &clusters,
        col_scale: &report.col_scale,
        attrs: attrs.into_iter().map(|(n, v)| (n.to_owned(), v)).collect(),
    };
    match &destination {
        Destination::Hdf5(path) => write_result(path, &mut output, args.force)?,
        Destination::H5ad(path) => {
            let names = names
                .as_ref()
                .context("names were read for the h5ad output")?;
            write_h5ad(path, &mut output, names, args.force)?;
        }
        Destination::Into(path) => write_into_h5ad(path, &mut output, args.raw)?,
    }

    let summary = summarize(&report, &clusters, args.k, started.elapsed().as_secs_f64());
    let summary = Summary {
        input: input_name,
        dataset: opened.dataset.take(),
        dtype: opened.dtype.clone(),
        storage: opened.storage.clone(),
        n_rows,
        n_cols,
        threads,
        output: destination.path().display().to_string(),
        budget_bytes: budget,
        predicted_peak_bytes: predicted_peak,
        cache: cache_note.clone(),
        w_storage: w_note.clone(),
        ..summary
    };
    if summary.integer_valued && args.normalize == NormalizeArg::None && !args.quiet && !args.json {
        eprintln!(
            "note: every value of the input is a whole number (raw counts?); \
             consider --normalize cp10k-log1p"
        );
    }
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else if !args.quiet {
        print_summary(&summary, args.tol);
    }
    Ok(())
}

/// Moves the source out of `slot` (leaving an empty placeholder).
fn take_source(
    slot: &mut Box<dyn nmflow_core::RowSource + Send>,
) -> Box<dyn nmflow_core::RowSource + Send> {
    std::mem::replace(
        slot,
        Box::new(nmflow_core::InMemorySource::new(Default::default())),
    )
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
        seconds_per_iter: iter_total / report.n_iter().max(1) as f64,
        block_rows: report.block_rows,
        threads: 0,
        cluster_sizes,
        output: String::new(),
        peak_rss_bytes: crate::peak_rss_bytes(),
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
