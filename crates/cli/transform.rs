//! `nmflow transform`: the rows of an input projected onto the components
//! of an earlier fit (H fixed, W solved row by row while its block is in
//! memory; one read of the input). Genes are matched by name; the fit's
//! normalisation and column scales are applied.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::{Context, Result};
use ndarray::Array2;
use nmflow_core::{
    FactorStore, Held, Normalize, Plan, Projection, ProjectionOutcome, Request, plan_runs,
    project_sharded,
};
use nmflow_io::factor_file::MappedFactor;
use nmflow_io::prefetch::PrefetchSource;
use nmflow_io::{AttrValue, Components, FitOutput};
use serde::Serialize;

use crate::args::TransformArgs;
use crate::fit::{Destination, ResultNames};
use crate::progress::Progress;
use crate::session::{self, Input, take_source};
use crate::usage::usage;

/// The summary printed as text or JSON.
#[derive(Debug, Serialize)]
struct Summary {
    input: String,
    components: String,
    n_rows: usize,
    n_cols: usize,
    k: usize,
    solver: String,
    normalize: String,
    /// Genes of the components found in the input.
    matched_genes: usize,
    /// Genes of the components absent from the input (zeros).
    missing_genes: usize,
    /// Genes of the input absent from the components (ignored).
    ignored_genes: usize,
    rel_error: f64,
    seconds: f64,
    block_rows: usize,
    threads: usize,
    cluster_sizes: Vec<usize>,
    output: String,
    peak_rss_bytes: Option<u64>,
}

pub fn run(args: TransformArgs) -> Result<()> {
    #[cfg(feature = "mpi")]
    if let Some(world) = crate::distributed::world()?
        && nmflow_core::collective::Collective::size(&world) > 1
    {
        return crate::distributed::transform(args, world);
    }
    let started = Instant::now();
    let mut input = Input::open(&args.input)?;
    let destination = Destination::of(&args.output, &args.write_into, args.force, &input)?;
    let components = nmflow_io::read_components(&args.components)?;
    let normalize = normalisation(&components, &args)?;
    let matched = Matched::of(&input, &components, &args)?;
    let plan = plan(&input, matched.h.nrows(), &args)?;
    if !(args.quiet || args.json) {
        eprintln!("plan: {plan}");
    }
    let names = destination.names(&input, false)?;
    let pool = session::thread_pool(args.resources.threads)?;
    let (projection, genes) = matched.into_projection(normalize, &args, plan.block_rows);
    let (mut w, outcome) = pool.install(|| solve(&mut input, &projection, &plan, &args, None))?;
    let done = Projected {
        projection: &projection,
        genes: &genes,
        outcome: &outcome,
        block_rows: plan.block_rows,
        threads: pool.current_num_threads(),
        n_rows: input.n_rows(),
    };
    finish(
        &args,
        &input,
        &destination,
        &names,
        w.as_mut(),
        &done,
        started,
    )
}

/// What a projection leaves for its result.
pub(crate) struct Projected<'a> {
    pub(crate) projection: &'a Projection,
    pub(crate) genes: &'a GeneCounts,
    pub(crate) outcome: &'a ProjectionOutcome,
    pub(crate) block_rows: usize,
    pub(crate) threads: usize,
    /// Rows of the whole input.
    pub(crate) n_rows: usize,
}

/// Writes the result of W (`w`, every row) and prints the summary.
pub(crate) fn finish(
    args: &TransformArgs,
    input: &Input,
    destination: &Destination,
    names: &ResultNames,
    w: &mut dyn FactorStore,
    done: &Projected<'_>,
    started: Instant,
) -> Result<()> {
    let (projection, genes, outcome) = (done.projection, done.genes, done.outcome);
    let normalize = projection.normalize;
    let clusters = nmflow_core::factor::clusters(w, done.block_rows);
    let mut attrs = attrs(input, projection, genes, args, done.threads);
    attrs.push(("rel_error".into(), AttrValue::Float(outcome.rel_error)));
    let col_names = match names {
        ResultNames::Columns(names) => names.as_deref(),
        ResultNames::Both(_) => None,
    };
    let rel_error = [outcome.rel_error];
    let seconds = [outcome.seconds];
    let mut output = FitOutput {
        w,
        h: projection.h.view(),
        rel_error: &rel_error,
        iteration_seconds: &seconds,
        cluster: &clusters,
        col_scale: &projection.col_scale,
        attrs,
        sample: None,
        col_names,
    };
    destination.write(names, &mut output, args.force, args.input.raw)?;
    let mut cluster_sizes = vec![0usize; projection.h.nrows()];
    for &c in &clusters {
        cluster_sizes[c as usize] += 1;
    }
    let summary = Summary {
        input: input.name.clone(),
        components: args.components.display().to_string(),
        n_rows: done.n_rows,
        n_cols: input.n_cols(),
        k: projection.h.nrows(),
        solver: projection.solver.as_str().into(),
        normalize: normalize.as_str().into(),
        matched_genes: genes.matched,
        missing_genes: genes.missing,
        ignored_genes: genes.ignored,
        rel_error: outcome.rel_error,
        seconds: started.elapsed().as_secs_f64(),
        block_rows: done.block_rows,
        threads: done.threads,
        cluster_sizes,
        output: destination.path().display().to_string(),
        peak_rss_bytes: crate::system::peak_rss_bytes(),
    };
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else if !args.quiet {
        print_summary(&summary);
    }
    Ok(())
}

/// The fit's per-row normalisation, from its parameters; a fit of another
/// loss than the Frobenius norm is refused.
pub(crate) fn normalisation(components: &Components, args: &TransformArgs) -> Result<Normalize> {
    if components.param("beta_loss") == Some(nmflow_core::Loss::KullbackLeibler.as_str()) {
        usage!(
            "{}: a Kullback-Leibler fit; transform solves least squares with H fixed, which is \
             the projection of a Frobenius fit only",
            args.components.display()
        );
    }
    Ok(match components.param("normalize") {
        None => Normalize::None,
        Some(name) => Normalize::from_name(name).with_context(|| {
            format!(
                "{}: the fit's normalisation '{name}' is not one nmflow knows",
                args.components.display()
            )
        })?,
    })
}

/// The memory plan: W of `k` columns beside the names and clusters.
pub(crate) fn plan(input: &Input, k: usize, args: &TransformArgs) -> Result<Plan> {
    plan_runs(&Request {
        shape: (input.n_rows(), input.n_cols()),
        nnz: input.opened.source.nnz_hint(),
        preferred_rows: input.opened.source.preferred_block_rows(),
        block_rows: args.resources.block_rows,
        ks: vec![k],
        held: vec![
            (Held::Names, names_bytes(input)),
            (Held::Clusters, input.n_rows() as u64 * 4),
        ],
        budget: crate::budget::budget(args.resources.memory)?,
        ratio_block: false,
    })
    .with_context(|| format!("{}: planning for the memory budget", input.name))
}

/// W's store as the plan places it, filled by one pass over the input.
pub(crate) fn solve(
    input: &mut Input,
    projection: &Projection,
    plan: &Plan,
    args: &TransformArgs,
    shard: Option<nmflow_core::collective::Shard<'_>>,
) -> Result<(Box<dyn FactorStore>, ProjectionOutcome)> {
    let (n_rows, k) = (input.n_rows(), projection.h.nrows());
    let mut w: Box<dyn FactorStore> = if plan.w_on_disk {
        Box::new(MappedFactor::new(n_rows, k, &input.tmp_dir())?)
    } else {
        Box::new(Array2::<f32>::zeros((n_rows, k)))
    };
    if !input.opened.storage.is_mapped() {
        let inner = take_source(&mut input.opened.source);
        input.opened.source = Box::new(PrefetchSource::new(inner, 1));
    }
    let progress = Progress::new(n_rows, 1, args.quiet || args.json, "transform");
    let alone = nmflow_core::collective::Alone;
    let shard = shard.unwrap_or(nmflow_core::collective::Shard {
        collective: &alone,
        first_row: 0,
        n_rows,
    });
    let outcome = project_sharded(
        shard,
        input.opened.source.as_mut(),
        projection,
        w.as_mut(),
        &mut |event| progress.on_event(event),
    )
    .with_context(|| format!("{}: projecting onto the components", input.name))?;
    progress.finish();
    Ok((w, outcome))
}

/// The attributes of a transform's result.
fn attrs(
    input: &Input,
    projection: &Projection,
    genes: &GeneCounts,
    args: &TransformArgs,
    threads: usize,
) -> Vec<(String, AttrValue)> {
    let record = input.record();
    let attrs = [
        (
            "nmflow_version",
            AttrValue::Str(env!("CARGO_PKG_VERSION").into()),
        ),
        ("command", AttrValue::Str("transform".into())),
        ("input", AttrValue::Str(record.path.clone())),
        ("dataset", AttrValue::Str(record.dataset.clone())),
        (
            "components",
            AttrValue::Str(args.components.display().to_string()),
        ),
        ("k", AttrValue::Int(projection.h.nrows() as i64)),
        ("solver", AttrValue::Str(projection.solver.as_str().into())),
        ("max_iter", AttrValue::Int(args.max_iter as i64)),
        ("tol", AttrValue::Float(args.tol)),
        (
            "normalize",
            AttrValue::Str(projection.normalize.as_str().into()),
        ),
        ("scale", AttrValue::Str("the fit's".into())),
        ("matched_genes", AttrValue::Int(genes.matched as i64)),
        ("missing_genes", AttrValue::Int(genes.missing as i64)),
        ("ignored_genes", AttrValue::Int(genes.ignored as i64)),
        ("block_rows", AttrValue::Int(projection.block_rows as i64)),
        ("threads", AttrValue::Int(threads as i64)),
    ];
    attrs.into_iter().map(|(n, v)| (n.to_owned(), v)).collect()
}

fn print_summary(s: &Summary) {
    println!(
        "input      {} ({} × {}), onto {} (k = {})",
        s.input, s.n_rows, s.n_cols, s.components, s.k
    );
    println!(
        "genes      {} matched, {} of the components missing (zeros), {} of the input ignored",
        s.matched_genes, s.missing_genes, s.ignored_genes
    );
    println!(
        "rel_error  {:.6} (solver {}, normalize {})",
        s.rel_error, s.solver, s.normalize
    );
    println!(
        "time       {:.2} s ({} threads, blocks of {} rows)",
        s.seconds, s.threads, s.block_rows
    );
    println!("clusters   {:?}", s.cluster_sizes);
    println!("output     {}", s.output);
}

/// Bytes of the names a result holds (64 per name, as the plan counts them).
fn names_bytes(input: &Input) -> u64 {
    (input.n_rows() + input.n_cols()) as u64 * 64
}

/// The components with their columns in the input's order.
pub(crate) struct Matched {
    /// H, `k × n_cols` of the input (zero for a gene the fit did not see).
    pub(crate) h: Array2<f32>,
    /// The columns of H of the fit's genes the input lacks.
    absent: Array2<f32>,
    /// The fit's divisor of each input column (∞, ignored, where it did not
    /// see it).
    col_scale: Vec<f32>,
    genes: GeneCounts,
}

/// How the genes of the components met those of the input.
pub(crate) struct GeneCounts {
    /// Genes of the components found in the input.
    matched: usize,
    /// Genes of the components absent from the input (zeros).
    missing: usize,
    /// Genes of the input absent from the components (ignored).
    ignored: usize,
}

/// The first `n` of `names`, comma-separated.
fn first<'a>(names: impl Iterator<Item = &'a str>, n: usize) -> String {
    names.take(n).collect::<Vec<_>>().join(", ")
}

impl Matched {
    /// The projection of the input onto these components, and the gene
    /// counts.
    pub(crate) fn into_projection(
        self,
        normalize: Normalize,
        args: &TransformArgs,
        block_rows: usize,
    ) -> (Projection, GeneCounts) {
        let projection = Projection {
            h: self.h,
            absent: self.absent,
            col_scale: self.col_scale,
            normalize,
            solver: args.solver.core(),
            max_sweeps: args.max_iter,
            tol: args.tol,
            block_rows,
        };
        (projection, self.genes)
    }

    /// The components as they are: column j is gene j.
    fn by_position(components: &Components) -> Self {
        Self {
            h: components.h.clone(),
            absent: Array2::zeros((components.h.nrows(), 0)),
            col_scale: components.col_scale.clone(),
            genes: GeneCounts {
                matched: components.h.ncols(),
                missing: 0,
                ignored: 0,
            },
        }
    }

    /// Matches genes by name when both sides have names, by position when
    /// neither does and the counts agree; refuses anything else.
    pub(crate) fn of(input: &Input, components: &Components, args: &TransformArgs) -> Result<Self> {
        let n_cols = input.n_cols();
        let (k, fit_cols) = components.h.dim();
        let path = args.components.display();
        let input_names = session::column_names(input)?;
        let Some((input_names, fit_names)) = input_names.zip(components.col_names.as_ref()) else {
            if fit_cols != n_cols {
                usage!(
                    "{path} has {fit_cols} genes and {} has {n_cols}, and genes can only be \
                     matched by name when both files name them",
                    input.name
                );
            }
            return Ok(Self::by_position(components));
        };
        let position: HashMap<&str, usize> = input_names
            .iter()
            .enumerate()
            .map(|(j, name)| (name.as_str(), j))
            .collect();
        let mut h = Array2::<f32>::zeros((k, n_cols));
        let mut col_scale = vec![f32::INFINITY; n_cols];
        let mut seen = vec![false; n_cols];
        let mut missing = Vec::new();
        let mut absent = Vec::new();
        for (f, name) in fit_names.iter().enumerate() {
            match position.get(name.as_str()) {
                Some(&j) => {
                    h.column_mut(j).assign(&components.h.column(f));
                    col_scale[j] = components.col_scale[f];
                    seen[j] = true;
                }
                None => {
                    missing.push(name.as_str());
                    absent.push(f);
                }
            }
        }
        let matched = seen.iter().filter(|&&s| s).count();
        if matched == 0 {
            usage!(
                "no gene of {path} is among the {n_cols} genes of {} (first of the components: {}; \
                 of the input: {})",
                input.name,
                first(fit_names.iter().map(String::as_str), 3),
                first(input_names.iter().map(String::as_str), 3)
            );
        }
        if !missing.is_empty() && !args.allow_missing_genes {
            usage!(
                "{} of the {fit_cols} genes of {path} are absent from {} (first: {}); \
                 --allow-missing-genes counts them as zeros",
                missing.len(),
                input.name,
                first(missing.iter().copied(), 5)
            );
        }
        Ok(Self {
            h,
            absent: components.h.select(ndarray::Axis(1), &absent),
            col_scale,
            genes: GeneCounts {
                matched,
                missing: missing.len(),
                ignored: n_cols - matched,
            },
        })
    }
}
