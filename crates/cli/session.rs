//! What `fit` and `sweep` share: opening the input, the block cache, the
//! thread pool, the core parameters, and running factorizations in batches
//! that share each pass over X within the memory budget.

use std::ops::Range;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use nmflow_core::{
    Checkpoint, Checkpointing, FactorStore, FitOutcome, Init, NmfParams, Normalize, Pca, PlanInput,
    RowSample, RowSource, Run, Scale, ValidParams, estimate_memory, estimate_memory_sparse,
    fit_many_with,
};
use nmflow_io::cache::{CachedSource, free_space};
use nmflow_io::factor_file::MappedFactor;
use nmflow_io::prefetch::PrefetchSource;
use nmflow_io::{AttrValue, InputKind, InputSpec, OpenOptions, OpenedSource, open_source};

use crate::args::{InputArgs, NormalizeArg, RunArgs, ScaleArg};
use crate::budget;
use crate::progress::Progress;

/// An opened input.
pub struct Input {
    pub spec: InputSpec,
    pub opts: OpenOptions,
    pub opened: OpenedSource,
    /// FILE or FILE:dataset, for messages.
    pub name: String,
}

impl Input {
    pub fn open(args: &InputArgs) -> Result<Self> {
        let spec = InputSpec::parse(&args.input);
        let opts = OpenOptions {
            layer: args.layer.clone(),
            raw: args.raw,
            transpose: args.transpose,
            genome: args.genome.clone(),
            all_features: args.all_features,
            tmp_dir: args.tmp_dir.clone(),
        };
        probe(&spec.path)?;
        let opened = open_source(&spec, &opts)?;
        let name = match &opened.dataset {
            Some(ds) => format!("{}:{ds}", spec.path.display()),
            None => spec.path.display().to_string(),
        };
        Ok(Self {
            spec,
            opts,
            opened,
            name,
        })
    }

    pub fn n_rows(&self) -> usize {
        self.opened.source.n_rows()
    }

    pub fn n_cols(&self) -> usize {
        self.opened.source.n_cols()
    }

    /// Bytes read in one pass over X.
    pub fn pass_bytes(&self) -> u64 {
        nmflow_core::plan::pass_bytes(self.n_rows(), self.n_cols(), self.opened.source.nnz_hint())
    }

    /// Puts the block cache (or, with --no-cache, the read-ahead thread) in
    /// front of the source; returns what was done, for the plan line.
    /// The flag is whether later passes read cheaply (cache or memory map).
    pub fn attach_cache(&mut self, run: &RunArgs, block_rows: usize) -> Result<(String, bool)> {
        let pass_bytes = self.pass_bytes();
        let opened = &mut self.opened;
        let mapped = opened.kind == InputKind::Npy || opened.storage.contains("transposed");
        let cache_dir = run
            .cache
            .clone()
            .or_else(|| self.opts.tmp_dir.clone())
            .unwrap_or_else(std::env::temp_dir);
        if let Some(dir) = &run.cache {
            if !dir.is_dir() {
                bail!(
                    "{}: --cache names no directory (it does not exist or is a file)",
                    dir.display()
                );
            }
        }
        Ok(if run.no_cache {
            if !mapped {
                let inner = take_source(&mut opened.source);
                opened.source = Box::new(PrefetchSource::new(inner, block_rows, None, 1));
            }
            ("off (--no-cache)".to_owned(), mapped)
        } else if mapped {
            ("not needed (the input is memory-mapped)".to_owned(), true)
        } else if free_space(&cache_dir).is_some_and(|free| free >= pass_bytes + pass_bytes / 5) {
            // Read ahead during the first pass; later passes map the cache.
            let inner = take_source(&mut opened.source);
            let ahead = PrefetchSource::new(inner, block_rows, Some(1), 1);
            opened.source = Box::new(CachedSource::new(Box::new(ahead), &cache_dir)?);
            (
                format!("{} in {}", budget::human(pass_bytes), cache_dir.display()),
                true,
            )
        } else {
            (
                format!(
                    "off: {} has less than {} free",
                    cache_dir.display(),
                    budget::human(pass_bytes + pass_bytes / 5)
                ),
                false,
            )
        })
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.opts.tmp_dir.clone().unwrap_or_else(std::env::temp_dir)
    }
}

/// Moves the source out of `slot` (leaving an empty placeholder).
pub fn take_source(slot: &mut Box<dyn RowSource + Send>) -> Box<dyn RowSource + Send> {
    std::mem::replace(
        slot,
        Box::new(nmflow_core::InMemorySource::new(Default::default())),
    )
}

/// The core parameters of one run.
pub fn core_params(run: &RunArgs, k: usize, seed: u64, init: Init) -> NmfParams {
    NmfParams {
        k,
        max_iter: run.max_iter,
        tol: run.tol,
        seed,
        normalize: match run.normalize {
            NormalizeArg::None => Normalize::None,
            NormalizeArg::Cp10kLog1p => Normalize::Cp10kLog1p,
            NormalizeArg::Log1p => Normalize::Log1p,
        },
        scale: match run.scale {
            ScaleArg::ColStd => Scale::ColStd,
            ScaleArg::None => Scale::None,
        },
        block_rows: run.block_rows,
        init,
    }
}

pub fn thread_pool(threads: Option<usize>) -> Result<rayon::ThreadPool> {
    let mut builder = rayon::ThreadPoolBuilder::new();
    if let Some(threads) = threads {
        if threads == 0 {
            bail!("--threads must be at least 1");
        }
        builder = builder.num_threads(threads);
    }
    builder.build().context("starting the worker threads")
}

/// One factorization to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunSpec {
    pub k: usize,
    pub restart: usize,
    pub seed: u64,
}

/// How a list of runs is split into batches that share passes.
#[derive(Debug, Clone)]
pub struct BatchPlan {
    pub batches: Vec<Range<usize>>,
    pub block_rows: usize,
    pub w_on_disk: bool,
    pub budget: u64,
    pub budget_from: String,
    /// Predicted peak of the largest batch.
    pub predicted_peak: u64,
}

impl BatchPlan {
    /// Plans `specs` (in order) for `input` within the budget: the block
    /// height and W's place from the largest k, then as many consecutive
    /// runs per batch as the budget holds.
    ///
    /// `extra_bytes` is held beside the runs for the whole command (the row
    /// sample, consensus matrices, labels).
    pub fn new(input: &Input, specs: &[RunSpec], run: &RunArgs, extra_bytes: u64) -> Result<Self> {
        let (budget, budget_from) = budget::budget(run.memory)?;
        let n_rows = input.n_rows();
        let n_cols = input.n_cols();
        let nnz = input.opened.source.nnz_hint();
        let k_max = specs.iter().map(|s| s.k).max().unwrap_or(1);
        let (plan, w_on_disk) = budget::plan_fit(PlanInput {
            n_rows,
            n_cols,
            k: k_max,
            nnz,
            preferred_rows: input.opened.source.preferred_block_rows(),
            // What is held beside the runs is not available to them.
            budget: budget.saturating_sub(extra_bytes),
            w_on_disk: false,
        })
        .map_err(|mut too_small| {
            // Report the budget given, and the minimum with what is held
            // beside the runs.
            too_small.budget = budget;
            too_small.min_budget += extra_bytes;
            too_small
        })
        .with_context(|| format!("{}: planning for the memory budget", input.name))?;
        let block_rows = run.block_rows.unwrap_or(plan.block_rows);
        let estimate = |k: usize| match nnz {
            Some(nnz) => estimate_memory_sparse(n_rows, n_cols, k, block_rows, nnz),
            None => estimate_memory(n_rows, n_cols, k, block_rows),
        };
        // Shared by the runs of a batch: the program and the blocks of X
        // (the k-independent part of the block estimate); each run adds W
        // (or its window), its H-side products and its per-block scratch.
        let x_blocks = estimate(0).block_bytes;
        let shared = nmflow_core::plan::BASELINE_BYTES + x_blocks + extra_bytes;
        let per_run = |k: usize| {
            let e = estimate(k);
            let w = if w_on_disk {
                e.w_bytes
                    .min((8 * block_rows as u64).saturating_mul(k as u64))
            } else {
                e.w_bytes
            };
            w + e.factor_bytes + (e.block_bytes - x_blocks)
        };
        let usable = nmflow_core::plan::usable_budget(budget);
        let mut batches = Vec::new();
        let mut start = 0;
        let mut predicted_peak = 0;
        while start < specs.len() {
            let mut used = shared + per_run(specs[start].k);
            let mut end = start + 1;
            while end < specs.len() && used + per_run(specs[end].k) <= usable {
                used += per_run(specs[end].k);
                end += 1;
            }
            predicted_peak = predicted_peak.max(used);
            batches.push(start..end);
            start = end;
        }
        if predicted_peak > budget {
            bail!(
                "{}: blocks of {block_rows} rows need about {}, more than the budget of {}",
                input.name,
                budget::human(predicted_peak),
                budget::human(budget)
            );
        }
        Ok(Self {
            batches,
            block_rows,
            w_on_disk,
            budget,
            budget_from,
            predicted_peak,
        })
    }
}

/// Bytes of the row sample of `n_sample` rows: its stored entries (value and
/// index), from the input's density.
pub fn sample_bytes(input: &Input, n_sample: usize) -> u64 {
    let n_rows = input.n_rows().max(1) as u64;
    let n_sample = (n_sample as u64).min(n_rows);
    let per_row = match input.opened.source.nnz_hint() {
        Some(nnz) => nnz.div_ceil(n_rows),
        None => input.n_cols() as u64,
    };
    // The PCA's subspace iteration: a few f64 blocks of n_cols × 6 and n × 6.
    n_sample
        .saturating_mul(per_row.saturating_mul(8).saturating_add(8))
        .saturating_add(
            (input.n_cols() as u64)
                .saturating_add(n_sample)
                .saturating_mul(8 * 6 * 3),
        )
}

/// Where and how often a fit writes checkpoints, and the one it resumes.
pub struct Persist {
    /// The checkpoint file.
    pub path: PathBuf,
    /// Iterations between checkpoints.
    pub every: usize,
    /// What the checkpoint records of the command.
    pub meta: nmflow_io::checkpoint::CheckpointMeta,
    /// The checkpoint to resume from (taken by the first batch).
    pub resume: Option<nmflow_io::checkpoint::LoadedCheckpoint>,
}

/// The row sample, its principal components, for the outputs.
pub struct SampleInfo {
    pub rows: Vec<u64>,
    pub pca: Pca,
}

/// A finished run: its place in the spec list, outcome and W.
pub struct Finished {
    pub spec_idx: usize,
    pub outcome: FitOutcome,
    pub w: Box<dyn FactorStore>,
}

/// Runs every batch of `plan` over the input; `on_batch` receives each
/// batch's finished runs (with their W) and the sample, whose rows are
/// collected during the first pass of the first batch.
#[allow(clippy::too_many_arguments)]
pub fn run_batches(
    input: &mut Input,
    specs: &[RunSpec],
    valid: &[ValidParams],
    plan: &BatchPlan,
    n_sample: usize,
    quiet: bool,
    mut persist: Option<&mut Persist>,
    mut on_batch: impl FnMut(Vec<Finished>, &SampleInfo) -> Result<()>,
) -> Result<()> {
    if persist.is_some() && plan.batches.len() > 1 {
        bail!(
            "{}: --checkpoint needs every restart in one batch, and this memory budget runs them \
             in {} batches: raise --memory or lower --restarts",
            input.name,
            plan.batches.len()
        );
    }
    let n_rows = input.n_rows();
    let n_cols = input.n_cols();
    let tmp_dir = input.tmp_dir();
    let first_seed = specs.first().map_or(0, |s| s.seed);
    let mut sample = Some(RowSample::new(
        nmflow_core::sample_row_indices(n_rows, n_sample, first_seed),
        n_cols,
    ));
    let mut info: Option<SampleInfo> = None;
    let n_batches = plan.batches.len();
    for batch in &plan.batches {
        let mut stores: Vec<Box<dyn FactorStore>> = Vec::with_capacity(batch.len());
        for spec in &specs[batch.clone()] {
            stores.push(if plan.w_on_disk {
                Box::new(MappedFactor::new(n_rows, spec.k, &tmp_dir)?)
            } else {
                Box::new(ndarray::Array2::<f32>::zeros((n_rows, spec.k)))
            });
        }
        let max_iter = valid[batch.clone()]
            .iter()
            .map(|v| v.params().max_iter)
            .max()
            .unwrap_or(0);
        let label = if n_batches > 1 || batch.len() > 1 {
            format!("runs {}-{} of {} ", batch.start + 1, batch.end, specs.len())
        } else {
            String::new()
        };
        // A resumed fit: W from the checkpoint, its sample's components.
        let resume = match persist.as_deref_mut().and_then(|p| p.resume.take()) {
            Some(loaded) => {
                for (idx, store) in stores.iter_mut().enumerate() {
                    nmflow_io::checkpoint::restore_w(&loaded.path, idx, store.as_mut())?;
                }
                if let Some(state) = &loaded.sample {
                    info = Some(SampleInfo {
                        rows: state.rows.clone(),
                        pca: Pca {
                            scores: state.pca.clone(),
                            explained_variance_ratio: state.variance_ratio.clone(),
                        },
                    });
                    sample = None;
                }
                Some(loaded.resume)
            }
            None => None,
        };
        let progress = Progress::new(n_rows, max_iter, quiet, &label);
        let outcomes = {
            let mut runs: Vec<Run<'_>> = valid[batch.clone()]
                .iter()
                .zip(stores.iter_mut())
                .map(|(params, w)| Run {
                    params,
                    w: w.as_mut(),
                })
                .collect();
            let resumed_sample = info.as_ref().map(|i| nmflow_io::checkpoint::SampleState {
                rows: i.rows.clone(),
                pca: i.pca.scores.clone(),
                variance_ratio: i.pca.explained_variance_ratio.clone(),
            });
            let mut save = |checkpoint: &Checkpoint<'_>,
                            runs: &mut [Run<'_>]|
             -> std::result::Result<(), nmflow_core::SaveError> {
                let Some(persist) = persist.as_deref() else {
                    return Ok(());
                };
                let sample = checkpoint
                    .sample
                    .and_then(|s| {
                        s.components()
                            .map(|pca| nmflow_io::checkpoint::SampleState {
                                rows: s.rows().iter().map(|&r| r as u64).collect(),
                                pca: pca.scores.clone(),
                                variance_ratio: pca.explained_variance_ratio.clone(),
                            })
                    })
                    .or_else(|| resumed_sample.clone());
                nmflow_io::checkpoint::write_checkpoint(
                    &persist.path,
                    &persist.meta,
                    checkpoint,
                    runs,
                    sample.as_ref(),
                )?;
                Ok(())
            };
            let every = persist.as_deref().map_or(0, |p| p.every);
            let mut checkpointing = Checkpointing {
                every,
                save: &mut save,
            };
            let result = fit_many_with(
                input.opened.source.as_mut(),
                &mut runs,
                sample.as_mut(),
                resume,
                (every > 0).then_some(&mut checkpointing),
                &mut |_, event| progress.on_event(event),
            )
            .map_err(|e| with_count_hint(e, input))
            .with_context(|| input.name.clone());
            progress.finish();
            result?
        };
        if let Some(sample) = sample.take() {
            let pca = sample
                .components()
                .cloned()
                .context("the solver computes the sample's components")?;
            info = Some(SampleInfo {
                rows: sample.rows().iter().map(|&r| r as u64).collect(),
                pca,
            });
        }
        let finished = outcomes
            .into_iter()
            .zip(stores)
            .zip(batch.clone())
            .map(|((outcome, w), spec_idx)| Finished {
                spec_idx,
                outcome,
                w,
            })
            .collect();
        let info = info
            .as_ref()
            .context("the sample is collected by the first batch")?;
        on_batch(finished, info)?;
    }
    Ok(())
}

/// What result files record of the input.
#[derive(Debug, Clone)]
pub struct InputRecord {
    pub path: String,
    pub dataset: String,
    pub format: String,
    pub storage: String,
}

impl Input {
    pub fn record(&self) -> InputRecord {
        InputRecord {
            path: self.spec.path.display().to_string(),
            dataset: self.opened.dataset.clone().unwrap_or_default(),
            format: self.opened.layout.map_or("npy", |l| l.as_str()).into(),
            storage: self.opened.storage.clone(),
        }
    }
}

/// The attributes every result file carries.
pub fn result_attrs(
    input: &InputRecord,
    params: &ValidParams,
    outcome: &FitOutcome,
    threads: usize,
) -> Vec<(String, AttrValue)> {
    let p = params.params();
    let attrs = vec![
        (
            "nmflow_version",
            AttrValue::Str(env!("CARGO_PKG_VERSION").into()),
        ),
        ("input", AttrValue::Str(input.path.clone())),
        ("dataset", AttrValue::Str(input.dataset.clone())),
        ("k", AttrValue::Int(p.k as i64)),
        ("max_iter", AttrValue::Int(p.max_iter as i64)),
        ("tol", AttrValue::Float(p.tol)),
        ("seed", AttrValue::Int(p.seed as i64)),
        ("init", AttrValue::Str(p.init.as_str().into())),
        ("scale", AttrValue::Str(p.scale.as_str().into())),
        ("normalize", AttrValue::Str(p.normalize.as_str().into())),
        ("format", AttrValue::Str(input.format.clone())),
        ("storage", AttrValue::Str(input.storage.clone())),
        ("block_rows", AttrValue::Int(outcome.block_rows as i64)),
        ("threads", AttrValue::Int(threads as i64)),
        (
            "epsilon",
            AttrValue::Float(f64::from(nmflow_core::DENOMINATOR_EPSILON)),
        ),
        ("n_iter", AttrValue::Int(outcome.n_iter() as i64)),
        ("converged", AttrValue::Int(i64::from(outcome.converged))),
        ("rel_error", AttrValue::Float(outcome.final_rel_error())),
    ];
    attrs.into_iter().map(|(n, v)| (n.to_owned(), v)).collect()
}

/// Column names for a plain result: the input's, when it names them.
pub fn column_names(input: &Input) -> Result<Option<Vec<String>>> {
    if input.opened.kind == InputKind::Npy {
        return Ok(None);
    }
    let names = nmflow_io::read_names(
        &input.spec.path,
        input.spec.dataset.as_deref(),
        &input.opts,
        (input.n_rows(), input.n_cols()),
    )?;
    Ok(names.var_stored.then_some(names.var))
}

/// A time estimate from block 0: read once and computed on once.
#[derive(Debug, Clone, Copy)]
pub struct TimeEstimate {
    pub n_blocks: usize,
    /// Seconds to read (and decode) block 0.
    pub read_s: f64,
    /// Seconds all runs spend computing on block 0 in one pass.
    pub compute_s: f64,
}

impl TimeEstimate {
    /// Reads block 0 of the input (before the cache is attached) and times
    /// every run's kernels on it. `None` when block 0 cannot be read or is
    /// malformed: the fit reports that itself.
    pub fn measure(input: &mut Input, block_rows: usize, ks: &[usize]) -> Option<Self> {
        let n_rows = input.n_rows();
        let rows = 0..block_rows.min(n_rows);
        let started = std::time::Instant::now();
        let block = input.opened.source.block(rows).ok()?;
        let read_s = started.elapsed().as_secs_f64();
        let mut compute_s = 0.0;
        let mut timed: Vec<(usize, f64)> = Vec::new();
        for &k in ks {
            let t = match timed.iter().find(|(tk, _)| *tk == k) {
                Some(&(_, t)) => t,
                None => {
                    let t = nmflow_core::time_block(&block, k)?;
                    timed.push((k, t));
                    t
                }
            };
            compute_s += t;
        }
        Some(Self {
            n_blocks: n_rows.div_ceil(block_rows.max(1)),
            read_s,
            compute_s,
        })
    }

    /// The pre-pass: reading every block, then validating it and
    /// accumulating on it (about one block's compute).
    pub fn prepare_s(&self) -> f64 {
        self.n_blocks as f64 * (self.read_s + self.compute_s)
    }

    /// One iteration: computing every block, or reading it when reads are
    /// slower and not served by the cache or a memory map.
    pub fn iteration_s(&self, reads_cheap: bool) -> f64 {
        let per_block = if reads_cheap {
            self.compute_s
        } else {
            self.compute_s.max(self.read_s)
        };
        self.n_blocks as f64 * per_block
    }

    pub fn describe(&self, reads_cheap: bool) -> String {
        format!(
            "estimated time: pre-pass ≈ {:.2} s, ≈ {:.2} s per iteration (block 0 of {}: read in {:.0} ms, \
             computed on in {:.0} ms)",
            self.prepare_s(),
            self.iteration_s(reads_cheap),
            self.n_blocks,
            self.read_s * 1e3,
            self.compute_s * 1e3
        )
    }
}

/// Runs planned and ready to go: validated parameters at the planned block
/// height, the batch plan, the worker pool, the time estimate, and the
/// cache (or read-ahead) in front of the input.
pub struct Prepared {
    pub valid: Vec<ValidParams>,
    pub plan: BatchPlan,
    pub pool: rayon::ThreadPool,
    pub threads: usize,
    pub estimate: Option<TimeEstimate>,
    pub cache_note: String,
    pub reads_cheap: bool,
    pub pass_bytes: u64,
}

/// Validates every run's parameters (`init_of` gives each run's start),
/// plans the batches with `extra_bytes` held beside them, starts the pool,
/// times block 0 and attaches the cache.
pub fn prepare(
    input: &mut Input,
    specs: &[RunSpec],
    run: &RunArgs,
    extra_bytes: u64,
    init_of: impl Fn(&RunSpec) -> Init,
) -> Result<Prepared> {
    let (n_rows, n_cols) = (input.n_rows(), input.n_cols());
    let preferred = input.opened.source.preferred_block_rows();
    let checked: Vec<ValidParams> = specs
        .iter()
        .map(|spec| {
            core_params(run, spec.k, spec.seed, init_of(spec)).check(n_rows, n_cols, preferred)
        })
        .collect::<Result<_, _>>()
        .with_context(|| input.name.clone())?;
    let plan = BatchPlan::new(input, specs, run, extra_bytes)?;
    let valid = checked
        .into_iter()
        .map(|v| v.with_block_rows(plan.block_rows))
        .collect();
    let pass_bytes = input.pass_bytes();
    let pool = thread_pool(run.threads)?;
    let threads = pool.current_num_threads();
    let ks: Vec<usize> = specs.iter().map(|s| s.k).collect();
    let estimate = pool.install(|| TimeEstimate::measure(input, plan.block_rows, &ks));
    let (cache_note, reads_cheap) = input.attach_cache(run, plan.block_rows)?;
    Ok(Prepared {
        valid,
        plan,
        pool,
        threads,
        estimate,
        cache_note,
        reads_cheap,
        pass_bytes,
    })
}

/// A negative value in an h5ad matrix is often scaled data in `X` beside
/// the counts: the error then names the file's other matrices.
fn with_count_hint(err: nmflow_core::FitError, input: &Input) -> anyhow::Error {
    let element = input.opened.dataset.as_deref().unwrap_or("");
    if !matches!(err, nmflow_core::FitError::NegativeValue { .. })
        || input.opened.layout != Some(nmflow_io::Layout::H5ad)
    {
        return err.into();
    }
    let alternatives = nmflow_io::singlecell::count_alternatives(&input.spec.path, element);
    if alternatives.is_empty() {
        return err.into();
    }
    anyhow::Error::new(err).context(format!(
        "{} holds negative values (scaled or centred data?); this file also holds {}, which may \
         hold the counts",
        element.trim_start_matches('/'),
        alternatives.join(", ")
    ))
}

/// Reads the whole structure of the file at `path` in a child process
/// (see [`crate::watchdog`]); every command does this before it reads a
/// file otherwise.
pub fn probe(path: &std::path::Path) -> Result<()> {
    crate::watchdog::isolated(&path.display().to_string(), || {
        nmflow_io::catalog::probe(path)
    })
}

/// What a checkpoint or a sweep's run record says of the command: the
/// input's fingerprint, the options that choose the matrix, and `params`
/// (the command's own parameters that shape the iterates).
pub fn command_meta(
    input: &Input,
    args: &InputArgs,
    params: Vec<(&'static str, String)>,
) -> Result<nmflow_io::checkpoint::CheckpointMeta> {
    let fingerprint = nmflow_io::checkpoint::Fingerprint::of(
        &input.spec.path,
        (input.n_rows(), input.n_cols()),
        input.opened.source.nnz_hint().unwrap_or(0),
    )?;
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let choice = [
        ("dataset", input.opened.dataset.clone().unwrap_or_default()),
        ("layer", text(&args.layer)),
        ("raw", args.raw.to_string()),
        ("transpose", args.transpose.to_string()),
        ("genome", text(&args.genome)),
        ("all_features", args.all_features.to_string()),
    ];
    Ok(nmflow_io::checkpoint::CheckpointMeta {
        input: fingerprint,
        params: choice
            .into_iter()
            .chain(params)
            .map(|(n, v)| (n.to_owned(), v))
            .collect(),
    })
}
