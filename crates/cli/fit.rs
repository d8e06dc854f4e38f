//! `nmflow fit`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use nmflow_core::plan::names_bytes;
use nmflow_core::{Held, Init};
use nmflow_io::checkpoint::LoadedCheckpoint;
use nmflow_io::output::check_output_path;
use nmflow_io::{
    AttrValue, InputKind, InputSpec, Layout, Names, StartFactor, check_start, read_names,
    read_start, write_h5ad, write_into_h5ad, write_result,
};
use serde::Serialize;

use crate::args::{FitArgs, InitArg, NormalizeArg};
use crate::session::{self, Finished, Input, Prepared, RunSpec, SampleInfo};
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
    /// The update rule and its inner repeats.
    solver: String,
    inner: String,
    beta_loss: String,
    nnz: u64,
    integer_valued: bool,
    budget_bytes: u64,
    predicted_peak_bytes: u64,
    /// Of the predicted peak: the memory-mapped input, copy or cache kept
    /// resident from pass to pass.
    resident_bytes: u64,
    cache: String,
    w_storage: String,
    n_iter: usize,
    converged: bool,
    rel_error: f64,
    seconds: f64,
    prepare_seconds: f64,
    /// Seconds computing the start (NNDSVD); 0 for random and given starts.
    start_seconds: f64,
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
    /// The programs' top genes, beside the result.
    programs: String,
    peak_rss_bytes: Option<u64>,
    /// A distributed fit: the peak memory of every process, by rank.
    #[serde(skip_serializing_if = "Option::is_none")]
    process_peak_rss_bytes: Option<Vec<u64>>,
}

/// Where the result goes.
pub(crate) enum Destination {
    Hdf5(PathBuf),
    H5ad(PathBuf),
    Into(PathBuf),
}

impl Destination {
    pub(crate) fn path(&self) -> &Path {
        match self {
            Destination::Hdf5(p) | Destination::H5ad(p) | Destination::Into(p) => p,
        }
    }
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
    #[cfg(feature = "mpi")]
    if let Some(world) = crate::distributed::world()?
        && nmflow_core::collective::Collective::size(&world) > 1
    {
        return crate::distributed::fit(args, world);
    }
    let started = Instant::now();
    let loaded = load_checkpoint(&mut args)?;
    let args = args;
    let run = &args.run;
    let mut input = Input::open(&args.input)?;
    let destination = Destination::of(&args.output, &args.write_into, args.force, &input)?;
    let planned = Planned::of(&args, &mut input, &destination)?;
    // Names after the plan: the plan refuses a shape too large for the
    // budget before anything of its size is allocated.
    let names = destination.names(&input, args.copy_x)?;
    session::print_plan(&planned.prepared, &input, run);
    let Fitted {
        prepared,
        mut best,
        restart_errors,
        clusters,
        start_seconds,
    } = planned.run(&args, &mut input, loaded)?;
    write_result_of(
        &args,
        &input,
        &prepared,
        &destination,
        &names,
        &mut best,
        &clusters,
    )?;
    // The result is in place: the checkpoint has served.
    if let Some(path) = &args.checkpoint
        && let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        return Err(e).with_context(|| format!("{}: removing the checkpoint", path.display()));
    }
    let fitted = Fitted {
        prepared,
        best,
        restart_errors,
        clusters,
        start_seconds,
    };
    report(&args, &input, &fitted, &destination, started, None)
}

/// What a distributed fit adds to its summary: the whole matrix's rows
/// (the input holds only this process's) and every process's peak memory.
pub(crate) struct Processes {
    pub(crate) n_rows: usize,
    pub(crate) peak_rss_bytes: Vec<u64>,
}

/// Prints what a fit did (its summary, or the JSON object).
pub(crate) fn report(
    args: &FitArgs,
    input: &Input,
    fitted: &Fitted,
    destination: &Destination,
    started: Instant,
    processes: Option<Processes>,
) -> Result<()> {
    let run = &args.run;
    let mut summary = Summary::new(
        input,
        &fitted.prepared,
        &fitted.best,
        &fitted.clusters,
        fitted.restart_errors.clone(),
        destination.path(),
        started.elapsed().as_secs_f64(),
    );
    summary.start_seconds = fitted.start_seconds;
    if let Some(processes) = processes {
        summary.n_rows = processes.n_rows;
        summary.process_peak_rss_bytes = Some(processes.peak_rss_bytes);
    }
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

/// A checkpoint to continue from: read first, so that the plan takes its
/// block height (results depend on it in the last bits).
pub(crate) fn load_checkpoint(args: &mut FitArgs) -> Result<Option<LoadedCheckpoint>> {
    Ok(match &args.checkpoint {
        Some(path) if path.exists() && args.resume => {
            let loaded = nmflow_io::checkpoint::read_checkpoint(path)?;
            if args.run.resources.block_rows.is_none() {
                args.run.resources.block_rows =
                    loaded.meta.param("block_rows").and_then(|v| v.parse().ok());
            }
            Some(loaded)
        }
        Some(path) if path.exists() => usage!(
            "{}: a checkpoint exists; continue from it with --resume, or delete it to start anew",
            path.display()
        ),
        _ => None,
    })
}

/// A fit planned: its start, its runs (one per restart) and the plan.
pub(crate) struct Planned {
    start: Start,
    specs: Vec<RunSpec>,
    pub(crate) prepared: Prepared,
}

/// What a fit's runs leave: the plan, the run kept (the lowest final
/// error) with the sample, every restart's final error, the clusters of
/// the run kept, and the seconds its start took.
pub(crate) struct Fitted {
    pub(crate) prepared: Prepared,
    pub(crate) best: Best,
    pub(crate) restart_errors: Vec<f64>,
    pub(crate) clusters: Vec<u32>,
    pub(crate) start_seconds: f64,
}

impl Planned {
    /// Checks the start, plans the restarts over `input` with what a
    /// result at `destination` holds beside them, and prepares them.
    pub(crate) fn of(args: &FitArgs, input: &mut Input, destination: &Destination) -> Result<Self> {
        let start = Start::of(args, input)?;
        let specs: Vec<RunSpec> = (0..args.restarts)
            .map(|restart| RunSpec {
                k: args.k,
                restart,
                seed: args.run.seed + restart as u64,
            })
            .collect();
        let held = held_beside(args, input, destination, &start);
        let prepared = session::prepare(input, &specs, &args.run, held, |spec| {
            start.init_of(spec.restart)
        })?;
        Ok(Self {
            start,
            specs,
            prepared,
        })
    }

    /// Computes an NNDSVD start if asked for, runs every restart (from the
    /// checkpoint `loaded`, if any) and keeps the best.
    pub(crate) fn run(
        self,
        args: &FitArgs,
        input: &mut Input,
        loaded: Option<LoadedCheckpoint>,
    ) -> Result<Fitted> {
        let Planned {
            mut start,
            specs,
            mut prepared,
        } = self;
        if let Some(fill) = start.nndsvd {
            // After the plan: the start's passes use its blocks, through the
            // cache the fit then reads.
            let began = Instant::now();
            let files = crate::start::nndsvd_start(args, input, fill, &mut prepared)?;
            start.seconds = began.elapsed().as_secs_f64();
            start.w0 = Some(InputSpec::parse(&files.w0.to_string_lossy()));
            start.nndsvd_w0 = Some(files.w0);
        }
        prepared.w0 = start.w0.clone();
        let mut persist = persist(args, input, &prepared, loaded)?;
        let (mut best, restart_errors) =
            best_of_restarts(input, &specs, &prepared, persist.as_mut())?;
        let clusters =
            nmflow_core::factor::clusters(best.finished.w.as_mut(), prepared.plan.block_rows);
        Ok(Fitted {
            prepared,
            best,
            restart_errors,
            clusters,
            start_seconds: start.seconds,
        })
    }
}

impl Destination {
    /// Where `-o output` or `--write-into` send the result, checked before
    /// any work (`force`: an existing output may be replaced).
    pub(crate) fn of(
        output: &Option<PathBuf>,
        write_into: &Option<PathBuf>,
        force: bool,
        input: &Input,
    ) -> Result<Self> {
        let destination = match (output, write_into) {
            (Some(out), None) => match result_format(out) {
                Some(ResultFormat::H5ad) => Destination::H5ad(out.clone()),
                Some(ResultFormat::Hdf5) => Destination::Hdf5(out.clone()),
                None => usage!(
                    "{}: nmflow writes results as .h5 or .hdf5 (plain HDF5: /W, /H, ...) or \
                     .h5ad (AnnData); give -o with one of these extensions",
                    out.display()
                ),
            },
            (None, Some(target)) => {
                let same = std::fs::canonicalize(target).ok()
                    == std::fs::canonicalize(&input.spec.path).ok();
                if !same {
                    usage!(
                        "--write-into must name the input file ({}), not {}",
                        input.spec.path.display(),
                        target.display()
                    );
                }
                Destination::Into(target.clone())
            }
            (None, None) => usage!(
                "no output named: give -o FILE (.h5 for plain HDF5, .h5ad for AnnData) for a new \
                 result, or --write-into INPUT.h5ad to add the result to the input itself"
            ),
            (Some(out), Some(target)) => usage!(
                "-o {} and --write-into {} both given: a fit writes one result; keep one of them",
                out.display(),
                target.display()
            ),
        };
        match &destination {
            Destination::Hdf5(out) | Destination::H5ad(out) => {
                nmflow_io::atomic::check_not_input(out, &input.spec.path)?;
                check_output_path(out, force)?;
            }
            Destination::Into(target) => {
                nmflow_io::atomic::check_writable(target)?;
                nmflow_io::h5ad::check_editable(target)?;
                if input.opened.layout != Some(Layout::H5ad) {
                    usage!(
                        "--write-into needs an h5ad input; {} is not one",
                        input.spec.path.display()
                    );
                }
            }
        }
        Ok(destination)
    }

    /// Names of rows and columns the result carries, as the plan counts
    /// them ([`held_beside`]).
    /// With `copy_x`, an h5ad result also copies the h5ad input's X.
    pub(crate) fn names(&self, input: &Input, copy_x: bool) -> Result<ResultNames> {
        let mut names = self.read_names(input)?;
        if copy_x {
            match &mut names {
                ResultNames::Both(Names {
                    annotations: Some(annotations),
                    ..
                }) => annotations.x = Some("X".into()),
                _ => crate::usage::usage!(
                    "--copy-x copies an h5ad input's X into an h5ad result: give -o OUT.h5ad and \
                     an h5ad input"
                ),
            }
        }
        Ok(names)
    }

    fn read_names(&self, input: &Input) -> Result<ResultNames> {
        Ok(match self {
            Destination::H5ad(_) => ResultNames::anndata(input)?,
            Destination::Hdf5(_) => ResultNames::columns(input)?,
            Destination::Into(_) => ResultNames::Columns(None),
        })
    }

    /// Bytes of the names [`Destination::names`] reads.
    fn names_bytes(&self, input: &Input) -> u64 {
        match self {
            Destination::H5ad(_) => ResultNames::bytes(input, true),
            Destination::Hdf5(_) => ResultNames::bytes(input, false),
            Destination::Into(_) => 0,
        }
    }
}

/// Names a result carries.
pub(crate) enum ResultNames {
    /// Rows and columns (h5ad).
    Both(Names),
    /// Columns, when the input names them (plain HDF5).
    Columns(Option<Vec<String>>),
}

impl ResultNames {
    /// The names of an h5ad result: the input's cells and genes (and an h5ad
    /// input's annotations), numbered for `.npy`.
    pub(crate) fn anndata(input: &Input) -> Result<Self> {
        let shape = (input.n_rows(), input.n_cols());
        Ok(ResultNames::Both(if input.opened.kind == InputKind::Npy {
            Names::numbered(shape)
        } else {
            read_names(
                &input.spec.path,
                input.spec.dataset.as_deref(),
                &input.opts,
                shape,
            )?
        }))
    }

    /// Bytes of the names an h5ad result (`anndata`) or a plain one holds, as
    /// the plan counts them.
    pub(crate) fn bytes(input: &Input, anndata: bool) -> u64 {
        match anndata {
            true => names_bytes(input.n_rows() + input.n_cols()),
            false if input.opened.kind == InputKind::Npy => 0,
            false => names_bytes(input.n_cols()),
        }
    }

    /// The names of a plain HDF5 result: the input's genes, if it names them.
    pub(crate) fn columns(input: &Input) -> Result<Self> {
        Ok(ResultNames::Columns(session::column_names(input)?))
    }

    /// The column names a plain result stores (`/col_names`).
    pub(crate) fn plain_columns(&self) -> Option<&[String]> {
        match self {
            ResultNames::Columns(names) => names.as_deref(),
            ResultNames::Both(_) => None,
        }
    }

    /// The genes, whichever the result.
    pub(crate) fn genes(&self) -> Option<&[String]> {
        match self {
            ResultNames::Both(names) => Some(names.var.as_slice()),
            ResultNames::Columns(names) => names.as_deref(),
        }
    }
}

/// Where the runs start: the initialisation, and W₀'s file for a custom
/// start (streamed into W's store by the session).
struct Start {
    init: Init,
    w0: Option<InputSpec>,
    /// An NNDSVD start, computed once the plan is made.
    nndsvd: Option<nmflow_core::NndsvdFill>,
    /// An NNDSVD start's temporary W₀ file (removed when dropped).
    nndsvd_w0: Option<tempfile::TempPath>,
    /// Seconds spent computing the start (NNDSVD's passes).
    seconds: f64,
}

impl Start {
    fn of(args: &FitArgs, input: &Input) -> Result<Self> {
        if args.init != InitArg::Custom && (args.w0.is_some() || args.h0.is_some()) {
            usage!("--w0 and --h0 need --init custom");
        }
        if let Some(fill) = args.init.nndsvd() {
            if args.restarts > 1 {
                usage!(
                    "--restarts needs --init random: {} starts are all the same",
                    args.init.as_str()
                );
            }
            if fill == nmflow_core::NndsvdFill::Zeros
                && args.run.solver() == nmflow_core::Solver::Mu
                && !(args.run.quiet || args.run.json)
            {
                eprintln!(
                    "note: multiplicative updates cannot move the exact zeros of an nndsvd \
                     start; nndsvda or nndsvdar fill them (as scikit-learn warns)"
                );
            }
            return Ok(Self {
                init: Init::Random,
                w0: None,
                nndsvd: Some(fill),
                nndsvd_w0: None,
                seconds: 0.0,
            });
        }
        match args.init {
            InitArg::RandomScaled => Ok(Self {
                init: Init::RandomScaled,
                w0: None,
                nndsvd: None,
                nndsvd_w0: None,
                seconds: 0.0,
            }),
            InitArg::Random | InitArg::Nndsvd | InitArg::Nndsvda | InitArg::Nndsvdar => Ok(Self {
                init: Init::Random,
                w0: None,
                nndsvd: None,
                nndsvd_w0: None,
                seconds: 0.0,
            }),
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
                // W₀ is streamed into W's store when the run starts; its
                // file and shape are checked now, before any work.
                check_start(&w0_spec, StartFactor::W, (input.n_rows(), args.k))
                    .with_context(|| format!("reading --w0 {w0_spec}"))?;
                let h0 = read_start(&h0_spec, StartFactor::H, (args.k, input.n_cols()))
                    .with_context(|| format!("reading --h0 {h0_spec}"))?;
                Ok(Self {
                    init: Init::Custom { h0 },
                    w0: Some(w0_spec),
                    nndsvd: None,
                    nndsvd_w0: None,
                    seconds: 0.0,
                })
            }
        }
    }

    /// The start of restart `restart` (later restarts start at random,
    /// drawn as the first one is when it is).
    fn init_of(&self, restart: usize) -> Init {
        match &self.init {
            Init::RandomScaled => Init::RandomScaled,
            _ if restart == 0 => self.init.clone(),
            _ => Init::Random,
        }
    }
}

/// What `fit` holds beside its runs (see [`nmflow_core::plan`]).
fn held_beside(
    args: &FitArgs,
    input: &Input,
    destination: &Destination,
    start: &Start,
) -> Vec<(Held, u64)> {
    let starts = match (&start.init, start.nndsvd) {
        // H₀, and its copy in the run.
        (Init::Custom { h0 }, _) => 2 * 4 * h0.len() as u64,
        (Init::Random, Some(_)) => 2 * 4 * (args.k * input.n_cols()) as u64,
        (Init::Random | Init::RandomScaled, _) => 0,
    };
    nmflow_core::plan::fit_held(
        (input.n_rows(), input.n_cols()),
        input.opened.source.nnz_hint(),
        args.run.sample,
        starts,
        destination.names_bytes(input),
    )
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
            ("init", args.init.as_str().to_owned()),
            ("w0", text(&args.w0)),
            ("h0", text(&args.h0)),
            ("sample", args.run.sample.to_string()),
            ("block_rows", valid.block_rows().to_string()),
        ]
        .into_iter()
        .chain(session::solver_settings(p))
        .collect(),
    )
}

/// The checkpointing of `--checkpoint`, with the checkpoint `loaded` to
/// resume from checked against this command.
fn persist(
    args: &FitArgs,
    input: &Input,
    prepared: &Prepared,
    loaded: Option<LoadedCheckpoint>,
) -> Result<Option<session::Persist>> {
    let Some(path) = &args.checkpoint else {
        return Ok(None);
    };
    let talk = !args.run.quiet && !args.run.json;
    nmflow_io::atomic::check_not_input(path, &input.spec.path)?;
    check_output_path(path, true)?;
    let meta = checkpoint_meta(args, input, &prepared.valid[0])?;
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
        if talk {
            eprintln!(
                "resuming from {} after iteration {}",
                path.display(),
                loaded.resume.iteration
            );
        }
    } else if args.resume && talk {
        eprintln!(
            "no checkpoint at {} yet: starting from the beginning",
            path.display()
        );
    }
    Ok(Some(session::Persist {
        path: path.clone(),
        every: args.checkpoint_every,
        meta,
        resume: loaded,
        keep_previous: prepared.shard.is_some(),
    }))
}

/// The run kept: the restart with the lowest final error, with the sample.
pub(crate) struct Best {
    pub(crate) finished: Finished,
    pub(crate) sample: SampleInfo,
}

/// Runs every restart; returns the best and every restart's final error.
fn best_of_restarts(
    input: &mut Input,
    specs: &[RunSpec],
    prepared: &Prepared,
    persist: Option<&mut session::Persist>,
) -> Result<(Best, Vec<f64>)> {
    let mut best: Option<Best> = None;
    let mut errors = vec![f64::NAN; specs.len()];
    prepared.pool.install(|| {
        session::run_batches(input, specs, prepared, persist, |finished, info| {
            for f in finished {
                let err = f.outcome.final_rel_error();
                errors[f.spec_idx] = err;
                let better = best
                    .as_ref()
                    .is_none_or(|b| err < b.finished.outcome.final_rel_error());
                if better {
                    best = Some(Best {
                        finished: f,
                        sample: info.clone(),
                    });
                }
            }
            Ok(())
        })
    })?;
    Ok((best.context("no run finished")?, errors))
}

/// The attributes of the kept run's result: its parameters, the restarts,
/// the start.
pub(crate) fn result_attributes(
    args: &FitArgs,
    input: &Input,
    prepared: &Prepared,
    best: &Best,
) -> Vec<(String, AttrValue)> {
    let f = &best.finished;
    let params = &prepared.valid[f.spec_idx];
    let mut attrs = session::result_attrs(&input.record(), params, &f.outcome, prepared);
    attrs.push(("restarts".into(), AttrValue::Int(args.restarts as i64)));
    if args.init.nndsvd().is_some() {
        for (name, value) in &mut attrs {
            if name == "init" {
                *value = AttrValue::Str(args.init.as_str().into());
            }
        }
    }
    if let (Some(w0), Some(h0)) = (&args.w0, &args.h0) {
        attrs.push(("w0".into(), AttrValue::Str(w0.clone())));
        attrs.push(("h0".into(), AttrValue::Str(h0.clone())));
    }
    attrs
}

/// Writes the kept run to its destination.
pub(crate) fn write_result_of(
    args: &FitArgs,
    input: &Input,
    prepared: &Prepared,
    destination: &Destination,
    names: &ResultNames,
    best: &mut Best,
    clusters: &[u32],
) -> Result<()> {
    let attrs = result_attributes(args, input, prepared, best);
    let f = &mut best.finished;
    let mut output = f.output(&best.sample, clusters, attrs, names.plain_columns());
    destination.write(names, &mut output, args.force, args.input.raw)?;
    crate::top_genes::write_beside(destination.path(), &output, names.genes())?;
    Ok(())
}

impl Destination {
    /// Writes `output` here, with `names` as [`Destination::names`] read
    /// them (`raw`: an input's `raw/X` was factorized).
    pub(crate) fn write(
        &self,
        names: &ResultNames,
        output: &mut nmflow_io::output::FitOutput<'_>,
        force: bool,
        raw: bool,
    ) -> Result<()> {
        match (self, names) {
            (Destination::Hdf5(path), _) => write_result(path, output, force)?,
            (Destination::H5ad(path), ResultNames::Both(names)) => {
                write_h5ad(path, output, names, force)?
            }
            (Destination::H5ad(_), ResultNames::Columns(_)) => {
                bail!("names are read for an h5ad output")
            }
            (Destination::Into(path), _) => write_into_h5ad(path, output, raw)?,
        }
        Ok(())
    }
}

impl Summary {
    fn new(
        input: &Input,
        prepared: &Prepared,
        best: &Best,
        clusters: &[u32],
        restart_rel_errors: Vec<f64>,
        output: &Path,
        seconds: f64,
    ) -> Self {
        let report = &best.finished.outcome;
        let k = report.h.nrows();
        let mut cluster_sizes = vec![0usize; k];
        for &c in clusters {
            cluster_sizes[c as usize] += 1;
        }
        let iter_total: f64 = report.iteration_seconds.iter().sum();
        let plan = &prepared.plan;
        let estimate = prepared.estimate;
        Summary {
            input: input.name.clone(),
            dataset: input.opened.dataset.clone(),
            dtype: input.opened.dtype.to_string(),
            storage: input.opened.storage.as_str().to_owned(),
            n_rows: input.n_rows(),
            n_cols: input.n_cols(),
            k,
            solver: prepared.valid[0].params().solver.as_str().to_owned(),
            inner: prepared.valid[0].params().inner.to_string(),
            beta_loss: prepared.valid[0].params().loss.as_str().to_owned(),
            nnz: report.n_stored,
            integer_valued: report.integer_valued,
            budget_bytes: plan.budget.bytes,
            predicted_peak_bytes: plan.predicted_peak,
            resident_bytes: plan.resident_bytes,
            cache: prepared.cache_note.clone(),
            w_storage: session::w_note(input, plan),
            n_iter: report.n_iter(),
            converged: report.converged,
            rel_error: report.final_rel_error(),
            seconds,
            prepare_seconds: report.prepare_seconds,
            start_seconds: 0.0,
            sample_seconds: report.sample_seconds,
            seconds_per_iter: iter_total / report.n_iter().max(1) as f64,
            block_rows: report.block_rows,
            threads: prepared.threads,
            cluster_sizes,
            seed: prepared.valid[best.finished.spec_idx].params().seed,
            restart_rel_errors,
            estimated_prepare_seconds: estimate.map(|e| e.prepare_s()),
            estimated_seconds_per_iter: estimate.map(|e| e.iteration_s(prepared.reads_cheap)),
            output: output.display().to_string(),
            programs: crate::top_genes::beside(output).display().to_string(),
            peak_rss_bytes: crate::system::peak_rss_bytes(),
            process_peak_rss_bytes: None,
        }
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
    println!(
        "k          {} (solver {}, inner {}, loss {})",
        s.k, s.solver, s.inner, s.beta_loss
    );
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
    println!(
        "programs   {} (top genes; nmflow top-genes for more)",
        s.programs
    );
}
