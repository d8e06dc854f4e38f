//! `nmflow sweep`: every (k, restart) of a range of k, run in batches that
//! share each pass over X; per k the error spread, consensus cophenetic
//! correlation, spectra stability and, with labels, ARI and NMI; the best
//! factorization of each k as a result file.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use ndarray::Array2;
use nmflow_core::metrics::{adjusted_rand_index, normalized_mutual_info};
use nmflow_core::plan::{consensus_bytes, names_bytes, spectra_bytes};
use nmflow_core::stability::{Consensus, spectra_stability};
use nmflow_core::{FactorStore, Held, ValidParams};
use nmflow_io::checkpoint::{CheckpointMeta, Fingerprint};
use nmflow_io::consensus_file::{KConsensus, write_consensus};
use nmflow_io::run_record::{Recorded, RunRecord, read_record, record_path};
use nmflow_io::{Labels, read_labels, read_result, write_result};
use serde::Serialize;

use crate::sweep_file::{KSummary, RunSummary, SweepSummary};

use crate::args::{RunArgs, SweepArgs, SweepFormat};
use crate::fit::ResultNames;
use crate::outdir::OutputDir;
use crate::session::{self, Finished, Input, InputRecord, Prepared, RunSpec, SampleInfo};
use crate::usage::usage;

/// What this invocation did (not in sweep.json, which is the same for the
/// same sweep whatever the machine, the timing or an interruption).
#[derive(Debug, Serialize)]
struct RunFacts {
    /// Runs finished by an earlier invocation (`--resume`).
    resumed_runs: usize,
    batches: Vec<(usize, usize)>,
    budget_bytes: Option<u64>,
    predicted_peak_bytes: Option<u64>,
    /// Of the predicted peak: the memory-mapped input, copy or cache kept
    /// resident from pass to pass.
    resident_bytes: Option<u64>,
    /// The plan's estimate of one iteration of all runs, from block 0.
    estimated_seconds_per_iter: Option<f64>,
    seconds: f64,
    peak_rss_bytes: Option<u64>,
    /// Every process's peak RSS, by rank (under MPI).
    #[serde(skip_serializing_if = "Option::is_none")]
    process_peak_rss_bytes: Option<Vec<u64>>,
}

/// The `--json` summary: sweep.json's content and this run's facts.
#[derive(Debug, Serialize)]
struct Printed<'a> {
    #[serde(flatten)]
    summary: &'a SweepSummary,
    run: RunFacts,
}

/// What is kept per k while its restarts finish.
struct KState {
    k: usize,
    consensus: Consensus,
    spectra: Vec<(usize, Array2<f32>)>,
    best: Option<(usize, f64)>,
    best_trace: Vec<f64>,
}

pub fn run(args: SweepArgs) -> Result<()> {
    #[cfg(feature = "mpi")]
    if let Some(world) = crate::distributed::world()?
        && nmflow_core::collective::Collective::size(&world) > 1
    {
        return crate::distributed::sweep(args, world);
    }
    run_over(args, &Alone)
}

/// The processes a sweep runs over: this one alone, or (feature `mpi`)
/// every process of an MPI job, each fitting its own rows of every run
/// while process 0 (the lead) keeps the tally and writes every file.
pub(crate) trait Peers: Sync {
    /// Whether this process keeps the tally and writes.
    fn lead(&self) -> bool;

    /// Processes.
    fn size(&self) -> usize;

    /// Every process's peak RSS, by rank, on every process.
    fn peaks(&self, mine: u64) -> Vec<u64>;

    /// `result`, agreed between the processes: when any failed, every one
    /// fails.
    fn agreed<T>(&self, result: Result<T>) -> Result<T>;

    /// Fails with `e`, an error of this process alone: where other
    /// processes wait for this one, the whole job stops.
    fn stop<T>(&self, e: anyhow::Error) -> Result<T>;

    /// The lead's `values`, on every process (others give none).
    fn told_by_lead(&self, values: Vec<f64>) -> Vec<f64>;

    /// Cuts `input` to this process's rows; what the engine needs to share
    /// them (`None` alone).
    fn share_rows(&self, input: &mut Input) -> Result<Option<session::SharedRows>>;

    /// A finished run's W whole, on the lead (`None` elsewhere), gathered
    /// from every process's rows.
    fn gather_w(
        &self,
        w: Box<dyn FactorStore>,
        n_rows: usize,
        block_rows: usize,
        tmp_dir: &Path,
    ) -> Option<Box<dyn FactorStore>>;
}

/// One process alone: every call is the value itself.
struct Alone;

impl Peers for Alone {
    fn lead(&self) -> bool {
        true
    }

    fn size(&self) -> usize {
        1
    }

    fn peaks(&self, mine: u64) -> Vec<u64> {
        vec![mine]
    }

    fn agreed<T>(&self, result: Result<T>) -> Result<T> {
        result
    }

    fn stop<T>(&self, e: anyhow::Error) -> Result<T> {
        Err(e)
    }

    fn told_by_lead(&self, values: Vec<f64>) -> Vec<f64> {
        values
    }

    fn share_rows(&self, _input: &mut Input) -> Result<Option<session::SharedRows>> {
        Ok(None)
    }

    fn gather_w(
        &self,
        w: Box<dyn FactorStore>,
        _n_rows: usize,
        _block_rows: usize,
        _tmp_dir: &Path,
    ) -> Option<Box<dyn FactorStore>> {
        Some(w)
    }
}

/// What the lead alone reads and checks before the runs: the labels, the
/// names the results carry, the runs an earlier invocation finished, the
/// sweep's record of its command (its block height added once planned).
struct LeadOpened {
    labels: Option<Labels>,
    names: ResultNames,
    found: Vec<Done>,
    meta: CheckpointMeta,
}

impl LeadOpened {
    fn open(args: &SweepArgs, input: &Input, specs: &[RunSpec]) -> Result<Self> {
        check_output_dir(args)?;
        let labels: Option<Labels> = match &args.labels {
            Some(spec) => Some(read_labels(
                &input.spec.path,
                spec,
                input.n_rows(),
                args.input.transpose,
            )?),
            None => None,
        };
        let format = result_format(args, input);
        let names = match format {
            SweepFormat::H5ad => ResultNames::anndata(input)?,
            SweepFormat::H5 => ResultNames::columns(input)?,
        };
        let run = &args.run;
        // Runs a sweep cut short has finished: their records, checked, and
        // the best of each k against its result file.
        let found = if args.resume && args.output.is_dir() {
            finished_runs(
                &args.output,
                specs,
                input.n_cols(),
                format,
                run.quiet || run.json,
            )?
        } else {
            Vec::new()
        };
        for k in &args.ks.0 {
            nmflow_io::atomic::check_not_input(
                &args.output.join(result_name(*k, format)),
                &input.spec.path,
            )?;
        }
        let meta = sweep_meta(args, input)?;
        Ok(Self {
            labels,
            names,
            found,
            meta,
        })
    }
}

/// Runs the sweep over `peers`.
pub(crate) fn run_over<P: Peers>(args: SweepArgs, peers: &P) -> Result<()> {
    if args.resume && args.force {
        usage!("--resume continues a sweep and --force replaces it: give one of them");
    }
    let started = Instant::now();
    let dir = args.output.clone();
    let specs = sweep_specs(&args);
    let opened = (|| -> Result<_> {
        let input = Input::open(&args.input)?;
        let lead = match peers.lead() {
            true => Some(LeadOpened::open(&args, &input, &specs)?),
            false => None,
        };
        Ok((input, lead))
    })();
    let (mut input, lead) = peers.agreed(opened)?;
    let n_rows = input.n_rows();
    let format = result_format(&args, &input);
    let held = held_beside(&args, &specs, &input, format);
    // What is left to run, and at which block height, as the lead found.
    let pending = {
        let found = lead.as_ref().map_or(&[][..], |l| &l.found[..]);
        let told = peers.told_by_lead(Pending::of(&specs, found).told());
        Pending::from_told(&told, &specs)
    };
    let shared = peers.agreed(peers.share_rows(&mut input))?;
    let prepared = pending.prepare(&args, &mut input, held);
    let mut prepared = peers.agreed(prepared)?;
    if let Some(p) = prepared.as_mut() {
        p.shard = shared;
    }
    let block_rows = match &prepared {
        Some(p) => p.valid[0].block_rows(),
        None => pending.block_rows.unwrap_or(0),
    };
    // Everything is validated: the directory is made now, and removed again
    // if the sweep fails and it did not exist before.
    let ready = lead
        .map(|lead| {
            let processes = (peers.size(), n_rows);
            Ready::of(
                lead,
                &args,
                &input,
                prepared.as_ref(),
                block_rows,
                processes,
            )
        })
        .transpose();
    let mut ready = peers.agreed(ready)?;
    if let Some(prepared) = &prepared {
        let context = ready.as_mut().map(|ready| {
            (
                SweepContext {
                    dir: &dir,
                    record: input.record(),
                    meta: &ready.lead.meta,
                    labels: ready.lead.labels.as_ref(),
                    names: &ready.lead.names,
                    format,
                    pending: &pending,
                    prepared,
                },
                &mut ready.tally,
            )
        });
        run_pending(peers, &mut input, &pending, prepared, context)?;
    }
    let peaks = peers.peaks(crate::system::peak_rss_bytes().unwrap_or(0));
    let written = ready
        .map(|ready| {
            let mut facts = RunFacts::new(ready.lead.found.len(), prepared.as_ref(), started);
            if peers.size() > 1 {
                facts.process_peak_rss_bytes = Some(peaks);
            }
            ready.finish(&args, &input, n_rows, facts)
        })
        .transpose();
    peers.agreed(written).map(|_| ())
}

/// Runs the pending runs in the plan's batches over `peers`; on the lead
/// (`context` given) adds each finished run to the tally.
fn run_pending<P: Peers>(
    peers: &P,
    input: &mut Input,
    pending: &Pending,
    prepared: &Prepared,
    mut context: Option<(SweepContext<'_>, &mut Tally)>,
) -> Result<()> {
    let n_rows = prepared.share(input.n_rows()).n_rows;
    let tmp_dir = input.tmp_dir();
    // Whether the runs failed where every process agreed they did.
    let mut agreed_failure = false;
    let ran = prepared.pool.install(|| {
        session::run_batches(input, &pending.specs, prepared, None, |finished, info| {
            // Each run's W whole on the lead.
            let whole: Vec<Finished> = finished
                .into_iter()
                .filter_map(|f| {
                    let w = peers.gather_w(f.w, n_rows, prepared.plan.block_rows, &tmp_dir)?;
                    Some(Finished { w, ..f })
                })
                .collect();
            let added = match context.as_mut() {
                Some((context, tally)) => context.add_batch(tally, whole, info),
                None => Ok(()),
            };
            let added = peers.agreed(added);
            agreed_failure = added.is_err();
            added
        })
    });
    match ran {
        Ok(()) => Ok(()),
        Err(e) if agreed_failure => Err(e),
        Err(e) => peers.stop(e),
    }
}

/// The lead's sweep once everything is checked: its output directory
/// (removed again on failure unless it existed), the tally, what it read.
struct Ready {
    out_dir: OutputDir,
    tally: Tally,
    lead: LeadOpened,
}

impl Ready {
    /// Checks the finished runs against this command (`block_rows` now
    /// known), prints the plan, makes the directory.
    fn of(
        mut lead: LeadOpened,
        args: &SweepArgs,
        input: &Input,
        prepared: Option<&Prepared>,
        block_rows: usize,
        (processes, n_rows): (usize, usize),
    ) -> Result<Self> {
        let (run, dir) = (&args.run, &args.output);
        lead.meta
            .params
            .push(("block_rows".into(), block_rows.to_string()));
        check_found(dir, &lead.found, &lead.meta)?;
        if let Some(p) = prepared {
            if !lead.found.is_empty() && !run.quiet && !run.json {
                eprintln!("{} run(s) finished before", lead.found.len());
            }
            session::print_plan(p, input, run);
            if processes > 1 && !run.quiet && !run.json {
                eprintln!(
                    "processes  {processes}, each reading its own {}–{} rows of every run \
                     (plan and memory per process)",
                    n_rows / processes,
                    n_rows.div_ceil(processes)
                );
            }
        }
        let out_dir = OutputDir::create(dir)?;
        if args.force {
            remove_records(dir)?;
        }
        let mut tally = Tally::new(sweep_specs(args).len());
        tally.add_found(&lead.found);
        Ok(Self {
            out_dir,
            tally,
            lead,
        })
    }

    /// Writes the consensus, sweep.tsv and sweep.json, keeps the
    /// directory, prints the table.
    fn finish(self, args: &SweepArgs, input: &Input, n_rows: usize, facts: RunFacts) -> Result<()> {
        let dir = &args.output;
        self.tally.write_consensus(dir)?;
        let labels = self.lead.labels.as_ref();
        let summary = self.tally.summary(args, input, n_rows, labels);
        write_text(&dir.join("sweep.tsv"), &tsv(&summary.per_k))?;
        write_text(
            &dir.join("sweep.json"),
            &serde_json::to_string_pretty(&summary)?,
        )?;
        self.out_dir.keep();
        print_sweep(&args.run, dir, &summary, facts)
    }
}

/// What the plan holds beside a sweep's runs, for the whole input (also
/// where processes share the rows: the lead holds the whole sweep's).
fn held_beside(
    args: &SweepArgs,
    specs: &[RunSpec],
    input: &Input,
    format: SweepFormat,
) -> Vec<(Held, u64)> {
    let n_rows = input.n_rows();
    let n_sample = args.run.sample.min(n_rows);
    let ks: Vec<usize> = specs.iter().map(|s| s.k).collect();
    vec![
        session::held_sample(input, &args.run),
        (Held::Consensus, consensus_bytes(args.ks.0.len(), n_sample)),
        (Held::Clusters, 4 * n_rows as u64),
        (
            Held::Labels,
            if args.labels.is_some() {
                names_bytes(n_rows) + 4 * n_rows as u64
            } else {
                0
            },
        ),
        (
            Held::Names,
            ResultNames::bytes(input, format == SweepFormat::H5ad),
        ),
        (Held::Spectra, spectra_bytes(&ks, input.n_cols())),
    ]
}

/// Every run of the sweep: each k, each restart.
fn sweep_specs(args: &SweepArgs) -> Vec<RunSpec> {
    let seed = args.run.seed;
    args.ks
        .0
        .iter()
        .flat_map(|&k| {
            (0..args.restarts).map(move |restart| RunSpec {
                k,
                restart,
                seed: seed + restart as u64,
            })
        })
        .collect()
}

impl RunFacts {
    fn new(resumed_runs: usize, prepared: Option<&Prepared>, started: Instant) -> Self {
        RunFacts {
            resumed_runs,
            batches: prepared.map_or(Vec::new(), |p| {
                p.plan.batches.iter().map(|b| (b.start, b.end)).collect()
            }),
            budget_bytes: prepared.map(|p| p.plan.budget.bytes),
            predicted_peak_bytes: prepared.map(|p| p.plan.predicted_peak),
            resident_bytes: prepared.map(|p| p.plan.resident_bytes),
            estimated_seconds_per_iter: prepared
                .and_then(|p| p.estimate.map(|e| e.iteration_s(p.reads_cheap))),
            seconds: started.elapsed().as_secs_f64(),
            peak_rss_bytes: crate::system::peak_rss_bytes(),
            process_peak_rss_bytes: None,
        }
    }
}

/// The name of k's result file in the sweep's directory.
fn result_name(k: usize, format: SweepFormat) -> String {
    match format {
        SweepFormat::H5 => format!("k{k}.h5"),
        SweepFormat::H5ad => format!("k{k}.h5ad"),
    }
}

/// The format of the sweep's results: `--format`, else h5ad for an h5ad
/// input (so that anndata opens them), else plain HDF5.
fn result_format(args: &SweepArgs, input: &Input) -> SweepFormat {
    args.format
        .unwrap_or(if input.opened.layout == Some(nmflow_io::Layout::H5ad) {
            SweepFormat::H5ad
        } else {
            SweepFormat::H5
        })
}

/// Refuses an output that is a file, or (without --force or --resume) a
/// directory that holds an earlier sweep.
fn check_output_dir(args: &SweepArgs) -> Result<()> {
    let dir = &args.output;
    if dir.exists() && !dir.is_dir() {
        usage!(
            "{}: the output of a sweep is a directory; this is a file",
            dir.display()
        );
    }
    if args.force || args.resume {
        return Ok(());
    }
    for name in ["sweep.tsv", "sweep.json", "consensus.h5", "runs"]
        .into_iter()
        .map(str::to_owned)
        .chain(args.ks.0.iter().flat_map(|&k| {
            [SweepFormat::H5, SweepFormat::H5ad].map(|format| result_name(k, format))
        }))
    {
        if dir.join(&name).exists() {
            bail!(
                "{}: the output exists (use --force to replace it)",
                dir.join(name).display()
            );
        }
    }
    Ok(())
}

/// The block height of the finished runs (results depend on it in the
/// last bits); every record is checked against this command.
fn recorded_block_rows(found: &[Done]) -> Option<usize> {
    found
        .first()
        .and_then(|d| d.meta.param("block_rows"))
        .and_then(|v| v.parse::<usize>().ok())
}

/// Refuses finished runs of another command or input.
fn check_found(dir: &Path, found: &[Done], meta: &CheckpointMeta) -> Result<()> {
    for done in found {
        let differences = done.meta.differences(meta);
        if !differences.is_empty() {
            bail!(
                "{}: this sweep was run by another command or on another input; it differs in:\n  \
                 {}\n(use --force instead of --resume to start anew)",
                record_path(dir, done.record.k, done.record.restart).display(),
                differences.join("\n  ")
            );
        }
    }
    Ok(())
}

/// The runs still to run: their indices into the sweep's runs, and their
/// specs; the block height of the finished ones.
struct Pending {
    idx: Vec<usize>,
    specs: Vec<RunSpec>,
    block_rows: Option<usize>,
}

impl Pending {
    fn of(specs: &[RunSpec], found: &[Done]) -> Self {
        let idx: Vec<usize> = (0..specs.len())
            .filter(|i| !found.iter().any(|d| d.spec_idx == *i))
            .collect();
        let specs = idx.iter().map(|&i| specs[i]).collect();
        Self {
            idx,
            specs,
            block_rows: recorded_block_rows(found),
        }
    }

    /// As the lead tells the other processes: the block height (or -1),
    /// then the indices.
    fn told(&self) -> Vec<f64> {
        let block_rows = self.block_rows.map_or(-1.0, |b| b as f64);
        std::iter::once(block_rows)
            .chain(self.idx.iter().map(|&i| i as f64))
            .collect()
    }

    /// What [`Pending::told`] tells.
    fn from_told(told: &[f64], specs: &[RunSpec]) -> Self {
        let idx: Vec<usize> = told.iter().skip(1).map(|&i| i as usize).collect();
        Self {
            specs: idx.iter().map(|&i| specs[i]).collect(),
            idx,
            block_rows: told.first().filter(|&&b| b >= 0.0).map(|&b| b as usize),
        }
    }

    /// Plans and prepares the pending runs (`None` when every run is
    /// finished), at the block height of the finished ones, with `held`
    /// beside them.
    fn prepare(
        &self,
        args: &SweepArgs,
        input: &mut Input,
        held: Vec<(Held, u64)>,
    ) -> Result<Option<Prepared>> {
        if self.specs.is_empty() {
            return Ok(None);
        }
        let mut run_args = args.run.clone();
        if run_args.resources.block_rows.is_none() {
            run_args.resources.block_rows = self.block_rows;
        }
        session::prepare(input, &self.specs, &run_args, held, |_| args.init.core()).map(Some)
    }
}

/// What the runs of a sweep add up to, as they finish.
struct Tally {
    states: Vec<KState>,
    runs: Vec<Option<RunSummary>>,
    n_sample_rows: usize,
    sample_rows: Option<Vec<u64>>,
}

impl Tally {
    fn new(n_runs: usize) -> Self {
        Self {
            states: Vec::new(),
            runs: vec![None; n_runs],
            n_sample_rows: 0,
            sample_rows: None,
        }
    }

    /// Adds the runs an earlier invocation finished.
    fn add_found(&mut self, found: &[Done]) {
        for Done {
            spec_idx,
            record: rec,
            ..
        } in found
        {
            let state = k_state(&mut self.states, rec.k, rec.sample_rows.len());
            add_finished(
                state,
                &mut self.runs[*spec_idx],
                rec.restart,
                rec.seed,
                rec.h.clone(),
                &rec.trace,
                rec.converged,
                &rec.sample_clusters,
                (rec.ari, rec.nmi),
            );
            self.n_sample_rows = rec.sample_rows.len();
            self.sample_rows
                .get_or_insert_with(|| rec.sample_rows.clone());
        }
    }

    /// Writes each k's consensus over the shown rows of the sample
    /// (`consensus.h5`, for `report`'s heatmap).
    fn write_consensus(&self, dir: &Path) -> Result<()> {
        let (Some(rows), Some(first)) = (&self.sample_rows, self.states.first()) else {
            return Ok(());
        };
        let positions = first.consensus.shown_rows();
        let shown: Vec<u64> = positions.iter().map(|&p| rows[p]).collect();
        let mut states: Vec<&KState> = self.states.iter().collect();
        states.sort_by_key(|s| s.k);
        let per_k: Vec<KConsensus> = states
            .iter()
            .map(|s| KConsensus {
                k: s.k,
                n_runs: s.consensus.n_runs(),
                matrix: s.consensus.matrix(&positions),
            })
            .collect();
        write_consensus(dir, &shown, &per_k)?;
        Ok(())
    }

    /// sweep.json's content.
    fn summary(
        self,
        args: &SweepArgs,
        input: &Input,
        n_rows: usize,
        labels: Option<&Labels>,
    ) -> SweepSummary {
        let run = &args.run;
        let runs: Vec<RunSummary> = self.runs.into_iter().flatten().collect();
        let core = session::core_params(run, 1, run.seed, args.init.core());
        let mut states = self.states;
        states.sort_by_key(|s| s.k);
        let per_k: Vec<KSummary> = states
            .iter()
            .map(|state| {
                summarize_k(
                    state,
                    &runs,
                    &result_name(state.k, result_format(args, input)),
                )
            })
            .collect();
        SweepSummary {
            input: input.name.clone(),
            n_rows,
            n_cols: input.n_cols(),
            ks: args.ks.0.clone(),
            restarts: args.restarts,
            seed: run.seed,
            max_iter: run.max_iter,
            tol: run.tol,
            solver: core.solver.as_str().into(),
            inner: core.inner.to_string(),
            beta_loss: core.loss.as_str().into(),
            init: core.init.as_str().into(),
            normalize: core.normalize.as_str().into(),
            scale: core.scale.as_str().into(),
            labels: labels.map(|l| l.source.clone()),
            n_sample_rows: self.n_sample_rows,
            per_k,
            runs,
        }
    }
}

/// What every finished run of a sweep is written with.
struct SweepContext<'a> {
    dir: &'a Path,
    record: InputRecord,
    meta: &'a CheckpointMeta,
    labels: Option<&'a Labels>,
    names: &'a ResultNames,
    format: SweepFormat,
    pending: &'a Pending,
    prepared: &'a Prepared,
}

impl SweepContext<'_> {
    /// Adds a batch's finished runs: scores, consensus, the best of each k
    /// written as its result file, then each run's record.
    fn add_batch(
        &self,
        tally: &mut Tally,
        finished: Vec<Finished>,
        info: &SampleInfo,
    ) -> Result<()> {
        if tally
            .sample_rows
            .as_ref()
            .is_some_and(|rows| *rows != info.rows)
        {
            bail!(
                "{}: the finished runs sampled other rows than this sweep does",
                self.dir.display()
            );
        }
        tally.n_sample_rows = info.rows.len();
        tally.sample_rows.get_or_insert_with(|| info.rows.clone());
        let mut finished = finished;
        // Best of this batch per k first, so each k's file is written at
        // most once per batch.
        finished.sort_by(|a, b| {
            a.outcome
                .final_rel_error()
                .total_cmp(&b.outcome.final_rel_error())
        });
        for f in finished {
            self.add_run(tally, f, info)?;
        }
        Ok(())
    }

    fn add_run(&self, tally: &mut Tally, mut f: Finished, info: &SampleInfo) -> Result<()> {
        let spec = self.pending.specs[f.spec_idx];
        let spec_idx = self.pending.idx[f.spec_idx];
        let state = k_state(&mut tally.states, spec.k, info.rows.len());
        // One block-wise pass over W gives every row's cluster: the
        // consensus, the scores and the result file use it.
        let clusters = nmflow_core::factor::clusters(f.w.as_mut(), self.prepared.plan.block_rows);
        let sampled: Vec<u32> = info.rows.iter().map(|&r| clusters[r as usize]).collect();
        let scores = match self.labels {
            Some(labels) => (
                Some(adjusted_rand_index(&labels.codes, &clusters)),
                Some(normalized_mutual_info(&labels.codes, &clusters)),
            ),
            None => (None, None),
        };
        let best = add_finished(
            state,
            &mut tally.runs[spec_idx],
            spec.restart,
            spec.seed,
            f.outcome.h.clone(),
            &f.outcome.rel_error,
            f.outcome.converged,
            &sampled,
            scores,
        );
        if best {
            write_best(
                &self.dir.join(result_name(spec.k, self.format)),
                &self.record,
                &self.prepared.valid[f.spec_idx],
                &mut f,
                &clusters,
                info,
                self.names,
                self.prepared,
            )?;
        }
        // The record last: a run without one is run again.
        let rec = RunRecord {
            k: spec.k,
            restart: spec.restart,
            seed: spec.seed,
            n_iter: f.outcome.n_iter(),
            converged: f.outcome.converged,
            rel_error: f.outcome.final_rel_error(),
            ari: scores.0,
            nmi: scores.1,
            h: f.outcome.h,
            trace: f.outcome.rel_error,
            sample_rows: info.rows.clone(),
            sample_clusters: sampled,
        };
        nmflow_io::run_record::write_record(self.dir, self.meta, &rec)?;
        Ok(())
    }
}

/// Prints the sweep's table or its JSON summary.
fn print_sweep(run: &RunArgs, dir: &Path, summary: &SweepSummary, facts: RunFacts) -> Result<()> {
    if run.json {
        let printed = Printed {
            summary,
            run: facts,
        };
        println!("{}", serde_json::to_string(&printed)?);
    } else if !run.quiet {
        let table = tsv(&summary.per_k);
        if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            print!("{}", aligned(&table));
        } else {
            print!("{table}");
        }
        let ks: Vec<usize> = summary.per_k.iter().map(|s| s.k).collect();
        let best: Vec<f64> = summary.per_k.iter().map(|s| s.best_rel_error).collect();
        let stability: Vec<f64> = summary.per_k.iter().map(|s| s.spectra_stability).collect();
        if let Some((_, rule)) = nmflow_report::suggest_k(&ks, &best, &stability) {
            println!("{rule}");
        }
        println!(
            "written    {} (sweep.tsv, sweep.json, consensus.h5, each k's result with its programs' table) in {:.1} s",
            dir.display(),
            facts.seconds
        );
    }
    Ok(())
}

/// The state of `k`, made on first use with a consensus over `n_sample`
/// rows.
fn k_state(states: &mut Vec<KState>, k: usize, n_sample: usize) -> &mut KState {
    let idx = match states.iter().position(|s| s.k == k) {
        Some(i) => i,
        None => {
            states.push(KState {
                k,
                consensus: Consensus::new(n_sample),
                spectra: Vec::new(),
                best: None,
                best_trace: Vec::new(),
            });
            states.len() - 1
        }
    };
    &mut states[idx]
}

/// Adds a finished run to its k's state and the run table; returns whether
/// it is the best of its k so far (strictly lower error).
#[allow(clippy::too_many_arguments)]
fn add_finished(
    state: &mut KState,
    slot: &mut Option<RunSummary>,
    restart: usize,
    seed: u64,
    h: Array2<f32>,
    trace: &[f64],
    converged: bool,
    sampled: &[u32],
    (ari, nmi): (Option<f64>, Option<f64>),
) -> bool {
    let err = trace.last().copied().unwrap_or(f64::NAN);
    state.consensus.add(sampled);
    *slot = Some(RunSummary {
        k: state.k,
        restart,
        seed,
        n_iter: trace.len(),
        converged,
        rel_error: err,
        ari,
        nmi,
    });
    state.spectra.push((restart, h));
    let best = state.best.is_none_or(|(_, best)| err < best);
    if best {
        state.best = Some((restart, err));
        state.best_trace = trace.to_vec();
    }
    best
}

/// A run an earlier invocation finished: its place in the specs, the
/// command its record names, the record.
struct Done {
    spec_idx: usize,
    meta: CheckpointMeta,
    record: RunRecord,
}

/// The finished runs of the sweep in `dir` (as indices into `specs`, with
/// their records): records that read back whole and consistent; the best
/// of each k must match its result file `kK.h5`, else that run counts as
/// unfinished.
fn finished_runs(
    dir: &Path,
    specs: &[RunSpec],
    n_cols: usize,
    format: SweepFormat,
    quiet: bool,
) -> Result<Vec<Done>> {
    let mut found: Vec<Done> = Vec::new();
    for (idx, spec) in specs.iter().enumerate() {
        match read_record(dir, spec.k, spec.restart, n_cols) {
            Recorded::Absent => {}
            Recorded::Found(_, record) if record.seed != spec.seed => {
                bail!(
                    "{}: run k = {}, restart {} has seed {}, not {}; use --force to start anew",
                    record_path(dir, spec.k, spec.restart).display(),
                    spec.k,
                    spec.restart,
                    record.seed,
                    spec.seed
                );
            }
            Recorded::Found(meta, record) => found.push(Done {
                spec_idx: idx,
                meta,
                record: *record,
            }),
            Recorded::Damaged(e) => {
                if !quiet {
                    eprintln!("run again: {e}");
                }
            }
        }
    }
    // The best finished run of each k must be the one in kK.h5; when it is
    // not (cut short between the two writes, or the file was damaged), that
    // run is run again and rewrites the file.
    let mut ks: Vec<usize> = found.iter().map(|d| d.record.k).collect();
    ks.dedup();
    for k in ks {
        let Some(pos) = found
            .iter()
            .enumerate()
            .filter(|(_, d)| d.record.k == k)
            .min_by(|a, b| a.1.record.rel_error.total_cmp(&b.1.record.rel_error))
            .map(|(pos, _)| pos)
        else {
            continue;
        };
        let best = &found[pos].record;
        let path = dir.join(result_name(k, format));
        let matches = read_result(&path, 1)
            .is_ok_and(|result| result.h_scaled == best.h && result.rel_error == best.trace);
        if !matches {
            if !quiet {
                eprintln!(
                    "run again: k = {k}, restart {}: {} does not hold its result",
                    best.restart,
                    path.display()
                );
            }
            found.remove(pos);
        }
    }
    Ok(found)
}

/// Deletes the run records of an earlier sweep in `dir` (`--force`).
fn remove_records(dir: &Path) -> Result<()> {
    let runs = dir.join("runs");
    let Ok(entries) = std::fs::read_dir(&runs) else {
        return Ok(());
    };
    for entry in entries {
        let path = entry?.path();
        let is_record = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('k') && n.ends_with(".h5"));
        if is_record {
            std::fs::remove_file(&path)
                .with_context(|| format!("{}: removing an earlier run record", path.display()))?;
        }
    }
    Ok(())
}

/// What a run record says of the sweep's command: the input's fingerprint
/// and every parameter that shapes the runs (k, restart and seed are the
/// record's own).
fn sweep_meta(args: &SweepArgs, input: &Input) -> Result<CheckpointMeta> {
    let run = &args.run;
    let core = session::core_params(run, 1, run.seed, args.init.core());
    let labels_file = args
        .labels
        .as_deref()
        .and_then(|l| l.split_once(":/"))
        .map(|(f, _)| Path::new(f))
        .filter(|f| f.exists())
        .map(|f| Fingerprint::of(f, (0, 0), 0).map(|p| format!("{} {:016x}", p.size, p.checksum)))
        .transpose()?
        .unwrap_or_default();
    session::command_meta(
        input,
        &args.input,
        vec![
            ("max_iter", run.max_iter.to_string()),
            ("tol", run.tol.to_string()),
            ("normalize", core.normalize.as_str().to_owned()),
            ("scale", core.scale.as_str().to_owned()),
            ("init", core.init.as_str().to_owned()),
            ("sample", run.sample.to_string()),
            ("labels", args.labels.clone().unwrap_or_default()),
            ("labels_file", labels_file),
        ]
        .into_iter()
        .chain(session::solver_settings(&core))
        .collect(),
    )
}

#[allow(clippy::too_many_arguments)]
fn write_best(
    path: &Path,
    input: &InputRecord,
    params: &ValidParams,
    f: &mut Finished,
    clusters: &[u32],
    info: &SampleInfo,
    names: &ResultNames,
    prepared: &Prepared,
) -> Result<()> {
    let attrs = session::result_attrs(input, params, &f.outcome, prepared);
    let mut output = f.output(info, clusters, attrs, names.plain_columns());
    match names {
        ResultNames::Both(names) => nmflow_io::write_h5ad(path, &mut output, names, true)?,
        ResultNames::Columns(_) => write_result(path, &mut output, true)?,
    }
    crate::top_genes::write_beside(path, &output, names.genes())?;
    Ok(())
}

fn summarize_k(state: &KState, runs: &[RunSummary], result: &str) -> KSummary {
    let mine: Vec<&RunSummary> = runs.iter().filter(|r| r.k == state.k).collect();
    let errors: Vec<f64> = mine.iter().map(|r| r.rel_error).collect();
    let n = errors.len() as f64;
    let mean = errors.iter().sum::<f64>() / n;
    let sd = if errors.len() > 1 {
        (errors.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    let (best_restart, best_err) = state.best.unwrap_or((0, f64::NAN));
    let best_run = mine.iter().find(|r| r.restart == best_restart);
    let mut spectra: Vec<&(usize, Array2<f32>)> = state.spectra.iter().collect();
    spectra.sort_by_key(|(restart, _)| *restart);
    let reference = spectra
        .iter()
        .position(|(r, _)| *r == best_restart)
        .unwrap_or(0);
    let h: Vec<Array2<f32>> = spectra.iter().map(|(_, h)| h.clone()).collect();
    let mean_of = |values: Vec<Option<f64>>| -> Option<f64> {
        let values: Option<Vec<f64>> = values.into_iter().collect();
        values.map(|v| v.iter().sum::<f64>() / v.len().max(1) as f64)
    };
    KSummary {
        k: state.k,
        best_rel_error: best_err,
        mean_rel_error: mean,
        sd_rel_error: sd,
        cophenetic: state.consensus.cophenetic_correlation(),
        spectra_stability: spectra_stability(&h, reference),
        ari: best_run.and_then(|r| r.ari),
        nmi: best_run.and_then(|r| r.nmi),
        mean_ari: mean_of(mine.iter().map(|r| r.ari).collect()),
        mean_nmi: mean_of(mine.iter().map(|r| r.nmi).collect()),
        best_restart,
        best_seed: best_run.map_or(0, |r| r.seed),
        result: result.to_owned(),
        best_rel_error_trace: state.best_trace.clone(),
    }
}

fn cell(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.6}"),
        _ => String::new(),
    }
}

fn tsv(per_k: &[KSummary]) -> String {
    let mut out = String::from(
        "k\tbest_rel_error\tmean_rel_error\tsd_rel_error\tcophenetic\tspectra_stability\tari\tnmi\tbest_seed\tresult\n",
    );
    for s in per_k {
        let _ = writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            s.k,
            cell(Some(s.best_rel_error)),
            cell(Some(s.mean_rel_error)),
            cell(Some(s.sd_rel_error)),
            cell(Some(s.cophenetic)),
            cell(Some(s.spectra_stability)),
            cell(s.ari),
            cell(s.nmi),
            s.best_seed,
            s.result
        );
    }
    out
}

/// A tab-separated table with its columns padded to a common width (for a
/// terminal; the TSV stays in `sweep.tsv`, with `--json`, and when piped):
/// columns of text left-aligned, columns of numbers right-aligned.
fn aligned(tsv: &str) -> String {
    let rows: Vec<Vec<&str>> = tsv.lines().map(|l| l.split('\t').collect()).collect();
    let n_cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n_cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    // A column is numeric when every cell under its header is a number (or
    // empty): it is right-aligned, header included.
    let numeric: Vec<bool> = (0..n_cols)
        .map(|c| {
            rows.iter()
                .skip(1)
                .filter_map(|r| r.get(c))
                .all(|cell| cell.is_empty() || cell.parse::<f64>().is_ok())
        })
        .collect();
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(widths.iter().zip(&numeric))
            .map(|(cell, (&w, &right))| {
                if right {
                    format!("{cell:>w$}")
                } else {
                    format!("{cell:<w$}")
                }
            })
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    out
}

/// Writes `text` to `path` by nmflow's write protocol
/// ([`nmflow_io::atomic`]), replacing an existing file.
pub fn write_text(path: &Path, text: &str) -> Result<()> {
    nmflow_io::atomic::write_bytes(path, nmflow_io::atomic::Overwrite::Replace, text.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::aligned;

    #[test]
    fn the_terminal_table_lines_up_its_columns() {
        let table = aligned("k\tbest_rel_error\tresult\n2\t0.5\tk2.h5\n10\t0.25\tk10.h5\n");
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], " k  best_rel_error  result");
        assert_eq!(lines[1], " 2             0.5  k2.h5");
        assert_eq!(lines[2], "10            0.25  k10.h5");
    }
}
