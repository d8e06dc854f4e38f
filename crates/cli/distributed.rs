//! `mpirun -np N nmflow fit ...` (built with `--features mpi`): one
//! factorization over N processes (and `nmflow transform`, each process
//! projecting its own rows).
//!
//! Every process opens the input read-only and reads only its contiguous
//! range of the rows ([`Shard::rows_of`]), planned within its own
//! `--memory`, and keeps its rows of W. The engine sums each pass's
//! products over the processes (one all-reduce per pass). Process 0 prints
//! the plan and the progress, then gathers W's rows from every process, in
//! rank order and one block at a time, into a temporary memory-mapped W
//! (no process ever holds all of X, and only process 0 all of W, on disk),
//! and writes the result as a single-process fit does: one writer, no
//! parallel HDF5 needed.
//!
//! Every step that can fail on one process is agreed between all of them
//! (opening, planning, each pass, writing), so a failure anywhere fails
//! every process with a non-zero exit and leaves no output; an unexpected
//! failure between agreed steps aborts the job (MPI_Abort).

use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use nmflow_core::collective::{Collective, Shard};
use nmflow_core::{Normalize, RowBlock, RowSource, SourceError};
use nmflow_io::factor_file::MappedFactor;
use nmflow_mpi::World;

use crate::args::FitArgs;
use crate::fit::{Destination, Fitted, Planned};
use crate::session::{self, Input, SharedRows};

/// Joins the MPI job this process was started in, if it was started by an
/// MPI launcher with more than one process.
pub fn world() -> Result<Option<World>> {
    if !nmflow_mpi::launched() {
        return Ok(None);
    }
    let world = World::init()?;
    Ok(Some(world))
}

/// `result`, agreed between the processes: when any failed, every one
/// fails, with its own error or, where it did not fail, a message saying
/// that another one did.
fn agreed<T>(world: &World, result: Result<T>) -> Result<T> {
    let failed = world.first_failed(result.is_ok());
    match (result, failed) {
        (Err(e), _) => Err(e),
        (Ok(_), Some(rank)) => bail!("process {rank} of this job failed; its error says why"),
        (Ok(value), None) => Ok(value),
    }
}

/// An error a process has printed already (see [`reported`]).
#[derive(Debug)]
pub struct Reported {
    /// The error was a usage error (exit code 2).
    pub usage: bool,
}

impl std::fmt::Display for Reported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("reported by every process")
    }
}

impl std::error::Error for Reported {}

/// `result` of every process, each printing its own error before any
/// leaves: the launcher stops the job when the first process exits with an
/// error, which must not cut short the message of the process that failed.
fn reported(world: &World, result: Result<()>) -> Result<()> {
    if let Err(e) = &result {
        eprintln!("nmflow: error: {e:#}");
    }
    world.all_gather(&[0.0]);
    result.map_err(|e| {
        Reported {
            usage: crate::usage::is_usage(&e),
        }
        .into()
    })
}

/// Runs `nmflow fit` as process `world.rank()` of `world.size()`.
pub fn fit(args: FitArgs, world: World) -> Result<()> {
    let world = Arc::new(world);
    let result = fit_here(args, &world);
    reported(&world, result)
}

fn fit_here(mut args: FitArgs, world: &Arc<World>) -> Result<()> {
    let started = Instant::now();
    let world = world.clone();
    let (rank, size) = (world.rank(), world.size());
    let lead = rank == 0;
    if !lead {
        args.run.quiet = true;
        args.run.json = false;
    }
    // Each process checkpoints its own rows of W (and the state every
    // process shares) to CHECKPOINT.RANK-of-SIZE; all resume from the same
    // iteration or none does.
    if let Some(path) = &args.checkpoint {
        let mut name = path.clone().into_os_string();
        name.push(format!(".{rank}-of-{size}"));
        args.checkpoint = Some(name.into());
    }
    let loaded = load_agreed(&world, &mut args)?;
    let opened = (|| -> Result<_> {
        let input = Input::open(&args.input)?;
        let destination = Destination::of(&args.output, &args.write_into, args.force, &input)?;
        // The names the result carries, read by the writer alone, before
        // the input is cut to this process's rows.
        let names = if lead {
            Some(destination.names(&input, args.copy_x)?)
        } else {
            None
        };
        Ok((input, destination, names))
    })();
    let (mut input, destination, names) = agreed(&world, opened)?;
    let n_rows = input.n_rows();
    let shared = agreed(&world, share_rows(&world, &mut input))?;
    let planned = Planned::of(&args, &mut input, &destination);
    let mut planned = agreed(&world, planned)?;
    planned.prepared.shard = Some(shared);
    if lead {
        session::print_plan(&planned.prepared, &input, &args.run);
        if !args.run.quiet && !args.run.json {
            eprintln!(
                "processes  {size}, each reading its own {}–{} rows (plan and memory per process)",
                n_rows / size,
                n_rows.div_ceil(size)
            );
        }
    }
    let fitted = match planned.run(&args, &mut input, loaded) {
        Ok(fitted) => fitted,
        Err(e) => return stop(&world, e),
    };
    finish(
        &args,
        &world,
        &input,
        &destination,
        names,
        fitted,
        n_rows,
        started,
    )
}

/// Cuts `input` to this process's rows ([`Shard::rows_of`]); what the
/// engine needs to share them.
fn share_rows(world: &Arc<World>, input: &mut Input) -> Result<SharedRows> {
    let (rank, size) = (world.rank(), world.size());
    let n_rows = input.n_rows();
    if n_rows < size {
        bail!(
            "{}: {n_rows} rows for {size} processes: run fewer processes than rows",
            input.name
        );
    }
    let rows = Shard::rows_of(rank, size, n_rows);
    let whole = session::take_source(&mut input.opened.source);
    input.opened.source = Box::new(RowRange::new(whole, rows.clone()));
    Ok(SharedRows {
        collective: world.clone() as Arc<dyn Collective + Send + Sync>,
        first_row: rows.start,
        n_rows,
    })
}

/// Runs `nmflow sweep` as process `world.rank()` of `world.size()`: every
/// run of the sweep spread over the processes by rows, as a fit is (each
/// process reads its own rows once per pass for every run of a batch);
/// process 0 gathers each finished run's W, keeps the tally (scores,
/// consensus, stability) and writes every file, as a single process does.
pub fn sweep(mut args: crate::args::SweepArgs, world: World) -> Result<()> {
    let world = Arc::new(world);
    if world.rank() != 0 {
        args.run.quiet = true;
        args.run.json = false;
    }
    let peers = SweepPeers {
        world: world.clone(),
    };
    let result = crate::sweep::run_over(args, &peers);
    reported(&world, result)
}

/// The processes of a distributed sweep.
struct SweepPeers {
    world: Arc<World>,
}

impl crate::sweep::Peers for SweepPeers {
    fn lead(&self) -> bool {
        self.world.rank() == 0
    }

    fn size(&self) -> usize {
        self.world.size()
    }

    fn peaks(&self, mine: u64) -> Vec<u64> {
        let all = self.world.all_gather(&[mine as f64]);
        all.iter().map(|&p| p as u64).collect()
    }

    fn agreed<T>(&self, result: Result<T>) -> Result<T> {
        agreed(&self.world, result)
    }

    fn stop<T>(&self, e: anyhow::Error) -> Result<T> {
        stop(&self.world, e)
    }

    fn told_by_lead(&self, values: Vec<f64>) -> Vec<f64> {
        let mine = if self.lead() { values } else { Vec::new() };
        self.world.all_gather_varying(&mine).swap_remove(0)
    }

    fn share_rows(&self, input: &mut Input) -> Result<Option<SharedRows>> {
        share_rows(&self.world, input).map(Some)
    }

    fn gather_w(
        &self,
        mut w: Box<dyn nmflow_core::FactorStore>,
        n_rows: usize,
        block_rows: usize,
        tmp_dir: &std::path::Path,
    ) -> Option<Box<dyn nmflow_core::FactorStore>> {
        gather_whole(&self.world, w.as_mut(), n_rows, block_rows, tmp_dir)
            .map(|w| Box::new(w) as Box<dyn nmflow_core::FactorStore>)
    }
}

/// Every process's rows of W (`mine`) gathered whole, in rank order, into
/// a temporary memory-mapped W on process 0 (`None` on the others); a
/// failure to make that file stops the job.
fn gather_whole(
    world: &World,
    mine: &mut dyn nmflow_core::FactorStore,
    n_rows: usize,
    block_rows: usize,
    tmp_dir: &std::path::Path,
) -> Option<MappedFactor> {
    let size = world.size();
    let mut whole = if world.rank() == 0 {
        match MappedFactor::new(n_rows, mine.shape().1, tmp_dir) {
            Ok(whole) => Some(whole),
            Err(e) => abort_with(world, e.into()),
        }
    } else {
        None
    };
    world.gather_rows(
        mine,
        whole
            .as_mut()
            .map(|w| w as &mut dyn nmflow_core::FactorStore),
        block_rows,
        |r| Shard::rows_of(r, size, n_rows),
    );
    whole
}

/// The checkpoint every process resumes from: the latest iteration whose
/// checkpoint every process has, its latest or the one before it
/// ([`session::Persist::keep_previous`]); `None` when no process has one.
fn load_agreed(
    world: &World,
    args: &mut FitArgs,
) -> Result<Option<nmflow_io::checkpoint::LoadedCheckpoint>> {
    let Some(path) = args.checkpoint.clone() else {
        return Ok(None);
    };
    // Every process takes part in the same collective calls, whatever it
    // finds on its disk.
    let refused: Result<()> = if path.exists() && !args.resume {
        Err(crate::usage::UsageError(format!(
            "{}: a checkpoint exists; continue from it with --resume, or delete it to start anew",
            path.display()
        ))
        .into())
    } else {
        Ok(())
    };
    agreed(world, refused)?;
    let candidates = [path.clone(), session::previous_checkpoint(&path)];
    let read: Vec<Option<nmflow_io::checkpoint::LoadedCheckpoint>> = candidates
        .iter()
        .map(|p| {
            p.exists()
                .then(|| nmflow_io::checkpoint::read_checkpoint(p).ok())
                .flatten()
        })
        .collect();
    let mine: Vec<f64> = read
        .iter()
        .map(|c| c.as_ref().map_or(-1.0, |c| c.resume.iteration as f64))
        .collect();
    let all = world.all_gather(&mine);
    let size = world.size();
    let common = mine
        .iter()
        .copied()
        .filter(|&i| i >= 0.0)
        .filter(|&i| (0..size).all(|r| all[2 * r] == i || all[2 * r + 1] == i))
        .fold(-1.0f64, f64::max);
    let any = all.iter().any(|&i| i >= 0.0);
    if common < 0.0 {
        // Every process gathered the same iterations: all decide alike.
        if any {
            bail!(
                "{}: the processes' checkpoints share no iteration (a process lost its own); \
                 delete the checkpoints to start anew",
                path.display()
            );
        }
        return Ok(None);
    }
    let chosen = read
        .into_iter()
        .flatten()
        .find(|c| c.resume.iteration as f64 == common);
    if args.run.resources.block_rows.is_none() {
        args.run.resources.block_rows = chosen
            .as_ref()
            .and_then(|c| c.meta.param("block_rows"))
            .and_then(|v| v.parse().ok());
    }
    Ok(chosen)
}

/// Process 0 gathers W and writes the result; every process learns
/// whether it was written.
#[allow(clippy::too_many_arguments)]
fn finish(
    args: &FitArgs,
    world: &World,
    input: &Input,
    destination: &Destination,
    names: Option<crate::fit::ResultNames>,
    mut fitted: Fitted,
    n_rows: usize,
    started: Instant,
) -> Result<()> {
    let rank = world.rank();
    let block_rows = fitted.prepared.plan.block_rows;
    let whole = gather_whole(
        world,
        fitted.best.finished.w.as_mut(),
        n_rows,
        block_rows,
        &input.tmp_dir(),
    );
    let written = match (whole, names) {
        (Some(whole), Some(names)) => {
            fitted.best.finished.w = Box::new(whole);
            fitted.clusters =
                nmflow_core::factor::clusters(fitted.best.finished.w.as_mut(), block_rows);
            crate::fit::write_result_of(
                args,
                input,
                &fitted.prepared,
                destination,
                &names,
                &mut fitted.best,
                &fitted.clusters,
            )
        }
        _ => Ok(()),
    };
    agreed(world, written)?;
    // The result is in place: each process's checkpoints have served.
    if let Some(path) = &args.checkpoint {
        for path in [path.clone(), session::previous_checkpoint(path)] {
            if let Err(e) = std::fs::remove_file(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                return Err(e)
                    .with_context(|| format!("{}: removing the checkpoint", path.display()));
            }
        }
    }
    let peak = crate::system::peak_rss_bytes().unwrap_or(0);
    let peaks = world.all_gather(&[peak as f64]);
    if rank == 0 {
        let processes = crate::fit::Processes {
            n_rows,
            peak_rss_bytes: peaks.iter().map(|&p| p as u64).collect(),
        };
        crate::fit::report(args, input, &fitted, destination, started, Some(processes))?;
    }
    Ok(())
}

/// Runs `nmflow transform` as process `world.rank()` of `world.size()`:
/// each process projects its own rows (rows are independent, so W is the
/// single process's bit for bit); the error's sums are combined; process 0
/// gathers W and writes the result.
pub fn transform(args: crate::args::TransformArgs, world: World) -> Result<()> {
    let world = Arc::new(world);
    let result = transform_here(args, &world);
    reported(&world, result)
}

fn transform_here(mut args: crate::args::TransformArgs, world: &Arc<World>) -> Result<()> {
    use crate::transform::{Projected, plan, solve};
    let started = Instant::now();
    let world = world.clone();
    let (rank, size) = (world.rank(), world.size());
    let lead = rank == 0;
    if !lead {
        args.quiet = true;
        args.json = false;
    }
    let opened = open_transform(&args, lead);
    let (mut input, destination, normalize, matched, names) = agreed(&world, opened)?;
    let n_rows = input.n_rows();
    agreed(&world, share_rows(&world, &mut input))?;
    let plan = agreed(&world, plan(&input, matched.h.nrows(), &args))?;
    if lead && !(args.quiet || args.json) {
        eprintln!("plan: {plan} (each of {size} processes, its own rows)");
    }
    let pool = agreed(&world, session::thread_pool(args.resources.threads))?;
    let (projection, genes) = matched.into_projection(normalize, &args, plan.block_rows);
    let shard = world.shard(n_rows);
    let solved = pool.install(|| solve(&mut input, &projection, &plan, &args, Some(shard)));
    let (mut w, outcome) = match solved {
        Ok(solved) => solved,
        Err(e) => return stop(&world, e),
    };
    let mut whole = gather_whole(
        &world,
        w.as_mut(),
        n_rows,
        plan.block_rows,
        &input.tmp_dir(),
    );
    let written = match (whole.as_mut(), &names) {
        (Some(whole), Some(names)) => {
            let done = Projected {
                projection: &projection,
                genes: &genes,
                outcome: &outcome,
                block_rows: plan.block_rows,
                threads: pool.current_num_threads(),
                n_rows,
            };
            crate::transform::finish(&args, &input, &destination, names, whole, &done, started)
        }
        _ => Ok(()),
    };
    agreed(&world, written)
}

/// What a distributed transform opens and checks on every process: the
/// input, the destination, the fit's normalisation and components matched
/// to the input's genes, and (process 0) the names of the result.
type OpenedTransform = (
    Input,
    Destination,
    Normalize,
    crate::transform::Matched,
    Option<crate::fit::ResultNames>,
);

fn open_transform(args: &crate::args::TransformArgs, lead: bool) -> Result<OpenedTransform> {
    let input = Input::open(&args.input)?;
    let destination = Destination::of(&args.output, &args.write_into, args.force, &input)?;
    let components = nmflow_io::read_components(&args.components)?;
    let normalize = crate::transform::normalisation(&components, args)?;
    let matched = crate::transform::Matched::of(&input, &components, args)?;
    let names = if lead {
        Some(destination.names(&input, false)?)
    } else {
        None
    };
    Ok((input, destination, normalize, matched, names))
}

/// Ends a distributed fit that failed on this process: an error the
/// engine agreed between the processes (every one fails with it) is
/// returned; any other stops the whole job, after printing it.
fn stop<T>(world: &World, e: anyhow::Error) -> Result<T> {
    if e.chain().any(|c| c.is::<nmflow_core::FitError>()) {
        return Err(e);
    }
    abort_with(world, e)
}

/// Prints `e`, an error of this process alone, and stops the whole job.
fn abort_with(world: &World, e: anyhow::Error) -> ! {
    eprintln!(
        "nmflow: error: process {} of {}: {e:#}",
        world.rank(),
        world.size()
    );
    world.abort(1)
}

/// The rows `rows` of a source, as a source of their own (row 0 is the
/// whole's row `rows.start`).
struct RowRange {
    inner: Box<dyn RowSource + Send>,
    rows: Range<usize>,
}

impl RowRange {
    fn new(inner: Box<dyn RowSource + Send>, rows: Range<usize>) -> Self {
        Self { inner, rows }
    }

    fn whole(&self, rows: &Range<usize>) -> Range<usize> {
        rows.start + self.rows.start..rows.end + self.rows.start
    }
}

impl RowSource for RowRange {
    fn n_rows(&self) -> usize {
        self.rows.len()
    }

    fn n_cols(&self) -> usize {
        self.inner.n_cols()
    }

    fn preferred_block_rows(&self) -> Option<usize> {
        self.inner.preferred_block_rows()
    }

    fn nnz_hint(&self) -> Option<u64> {
        // This process's share, as the plan sizes its blocks by it.
        let total = self.inner.n_rows().max(1) as u64;
        self.inner
            .nnz_hint()
            .map(|nnz| nnz.saturating_mul(self.rows.len() as u64).div_ceil(total))
    }

    fn begin_pass(&mut self, blocks: &[Range<usize>]) -> Result<(), SourceError> {
        let whole: Vec<Range<usize>> = blocks.iter().map(|b| self.whole(b)).collect();
        self.inner.begin_pass(&whole)
    }

    fn block(&mut self, rows: Range<usize>) -> Result<RowBlock<'_>, SourceError> {
        let whole = self.whole(&rows);
        self.inner.block(whole)
    }

    fn done_reading(&mut self) {
        self.inner.done_reading();
    }

    fn keep_resident(&mut self) {
        self.inner.keep_resident();
    }

    fn normalization(&mut self, kind: Normalize) {
        self.inner.normalization(kind);
    }

    fn wants_normalized(&self) -> bool {
        self.inner.wants_normalized()
    }

    fn keep_normalized(&mut self, rows: Range<usize>, values: &[f32], raw_integer: bool) {
        let whole = self.whole(&rows);
        self.inner.keep_normalized(whole, values, raw_integer);
    }

    fn serves_checked_copy(&self) -> bool {
        self.inner.serves_checked_copy()
    }

    fn served_normalized(&self) -> Option<nmflow_core::NormalizedCopy> {
        self.inner.served_normalized()
    }
}
