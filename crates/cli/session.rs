//! What `fit` and `sweep` share: opening the input, the block cache, the
//! thread pool, the core parameters, and running factorizations in batches
//! that share each pass over X within the memory budget.

use std::ops::Range;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use nmflow_core::{
    Checkpoint, Checkpointing, FactorStore, FitOutcome, Held, Init, Inner, Loss, NmfParams,
    Normalize, Pca, Plan, Regularization, Request, RowSample, RowSource, Run, Scale, Solver,
    ValidParams, plan_runs,
};
use nmflow_io::cache::{CachedSource, free_space};
use nmflow_io::checkpoint::SampleState;
use nmflow_io::factor_file::MappedFactor;
use nmflow_io::prefetch::PrefetchSource;
use nmflow_io::{
    AttrValue, FitOutput, InputKind, InputSpec, OpenOptions, OpenedSource, SampleOutput,
    open_source,
};

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

    /// Rows another program hands over (see [`crate::embed`]), named
    /// `name` in messages.
    pub fn from_rows(source: Box<dyn RowSource + Send>, name: &str) -> Self {
        Self {
            spec: InputSpec {
                path: PathBuf::from(name),
                dataset: None,
            },
            opts: OpenOptions::default(),
            opened: OpenedSource {
                source,
                kind: InputKind::Npy,
                layout: None,
                dataset: None,
                storage: nmflow_io::Storage::InMemory,
                dtype: nmflow_io::Dtype::Numeric(nmflow_io::Numeric::Float(4)),
            },
            name: name.to_owned(),
        }
    }

    pub fn n_rows(&self) -> usize {
        self.opened.source.n_rows()
    }

    pub fn n_cols(&self) -> usize {
        self.opened.source.n_cols()
    }

    /// Puts the block cache (or, with --no-cache, the read-ahead thread) in
    /// front of the source; returns what was done.
    pub fn attach_cache(&mut self, run: &RunArgs) -> Result<Attached> {
        let (pass_bytes, with_columns_bytes) = nmflow_core::plan::cache_bytes(
            self.n_rows(),
            self.n_cols(),
            self.opened.source.nnz_hint(),
        );
        let mapped_bytes = self.mapped_bytes(pass_bytes);
        let mapped = mapped_bytes.is_some();
        let opened = &mut self.opened;
        let cache_dir = run
            .cache
            .clone()
            .or_else(|| self.opts.tmp_dir.clone())
            .unwrap_or_else(std::env::temp_dir);
        if let Some(dir) = &run.cache
            && !dir.is_dir()
        {
            bail!(
                "{}: --cache names no directory (it does not exist or is a file)",
                dir.display()
            );
        }
        let attached = |note: String, map_bytes: Option<u64>| Attached {
            note,
            reads_cheap: map_bytes.is_some(),
            map_bytes,
        };
        Ok(if run.no_cache {
            if !mapped {
                let inner = take_source(&mut opened.source);
                opened.source = Box::new(PrefetchSource::new(inner, 1));
            }
            attached("off (--no-cache)".to_owned(), mapped_bytes)
        } else if mapped {
            attached(
                "not needed (the input is memory-mapped)".to_owned(),
                mapped_bytes,
            )
        } else if let Some(free) = free_space(&cache_dir)
            && free >= with_margin(pass_bytes)
        {
            // Read ahead during the first pass; later passes map the cache.
            // Sparse blocks also column by column (X_bᵀW_b then gathers
            // instead of scattering) when the disk has room and the copy
            // stays in the page cache: a pass that reads its copy from the
            // disk would read twice the bytes for a faster product.
            let in_page_cache = crate::system::available_memory()
                .is_some_and(|available| with_columns_bytes <= available / 2);
            let with_columns = in_page_cache && free >= with_margin(with_columns_bytes);
            let inner = take_source(&mut opened.source);
            let ahead = PrefetchSource::new(inner, 1);
            opened.source = Box::new(CachedSource::new(
                Box::new(ahead),
                &cache_dir,
                with_columns,
            )?);
            let bytes = if with_columns {
                with_columns_bytes
            } else {
                pass_bytes
            };
            let columns = if with_columns && with_columns_bytes > pass_bytes {
                ", rows and columns"
            } else {
                ""
            };
            attached(
                format!(
                    "{}{columns} in {}",
                    budget::human(bytes),
                    cache_dir.display()
                ),
                Some(bytes),
            )
        } else {
            attached(
                format!(
                    "off: {} has less than {} free",
                    cache_dir.display(),
                    budget::human(with_margin(pass_bytes))
                ),
                None,
            )
        })
    }

    /// The bytes later passes read from a memory map of the input itself
    /// (the file's) or of a temporary copy (`pass_bytes`, as the plan
    /// counts a pass); `None` when the input is not mapped.
    fn mapped_bytes(&self, pass_bytes: u64) -> Option<u64> {
        let storage = self.opened.storage;
        storage.is_mapped().then(|| {
            if storage == nmflow_io::Storage::DenseMapped {
                std::fs::metadata(&self.spec.path).map_or(pass_bytes, |m| m.len())
            } else {
                pass_bytes
            }
        })
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.opts.tmp_dir.clone().unwrap_or_else(std::env::temp_dir)
    }
}

/// What [`Input::attach_cache`] put in front of the source.
pub struct Attached {
    /// What was done, for the plan line.
    pub note: String,
    /// Later passes read cheaply (cache or memory map).
    pub reads_cheap: bool,
    /// Bytes of the memory map later passes read (the cache, a mapped
    /// input or a mapped copy), if they read one.
    pub map_bytes: Option<u64>,
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
        block_rows: run.resources.block_rows,
        init,
        solver: run.solver(),
        loss: run.loss(),
        inner: run.inner.unwrap_or(run.solver().default_inner()),
        regularization: Regularization {
            alpha_w: run.alpha_w,
            alpha_h: run.alpha_h.unwrap_or(run.alpha_w),
            l1_ratio: run.l1_ratio,
        },
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

/// The memory plan of `specs` over `input` with `held` beside the runs
/// (see [`nmflow_core::plan`]).
pub fn plan(
    input: &Input,
    specs: &[RunSpec],
    run: &RunArgs,
    held: Vec<(Held, u64)>,
) -> Result<Plan> {
    let source = &input.opened.source;
    let request = Request {
        shape: (input.n_rows(), input.n_cols()),
        nnz: source.nnz_hint(),
        preferred_rows: source.preferred_block_rows(),
        block_rows: run.resources.block_rows,
        ks: specs.iter().map(|s| s.k).collect(),
        held,
        budget: budget::budget(run.resources.memory)?,
        ratio_block: run.loss() == Loss::KullbackLeibler,
    };
    plan_runs(&request).with_context(|| format!("{}: planning for the memory budget", input.name))
}

/// Prints the plan (the text `nmflow inspect` prints for the same
/// request), the cache and the time estimate, unless quiet.
pub fn print_plan(prepared: &Prepared, input: &Input, run: &RunArgs) {
    if run.quiet || run.json {
        return;
    }
    eprintln!("plan: {}", prepared.plan);
    eprintln!(
        "cache: {}; W {}",
        prepared.cache_note,
        w_note(input, &prepared.plan)
    );
    if let Some(estimate) = &prepared.estimate {
        eprintln!("{}", estimate.describe(prepared.reads_cheap));
    }
}

/// Where W lives, for messages and summaries.
pub fn w_note(input: &Input, plan: &Plan) -> String {
    let bytes = nmflow_core::plan::Bytes(plan.w_bytes);
    if plan.w_on_disk {
        format!("on disk in {} ({bytes})", input.tmp_dir().display())
    } else {
        format!("in memory ({bytes})")
    }
}

/// The row sample of `run` over `input`, as the plan counts it.
pub fn held_sample(input: &Input, run: &RunArgs) -> (Held, u64) {
    let bytes = nmflow_core::plan::sample_bytes(
        input.n_rows(),
        input.n_cols(),
        input.opened.source.nnz_hint(),
        run.sample,
    );
    (Held::Sample, bytes)
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
    /// Keep the previous checkpoint as PATH.prev while the next is written
    /// (a distributed fit: its processes write theirs at slightly different
    /// moments, so a kill can leave them one checkpoint apart).
    pub keep_previous: bool,
}

/// Where the checkpoint before `path`'s is kept ([`Persist::keep_previous`]).
pub fn previous_checkpoint(path: &std::path::Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".prev");
    PathBuf::from(name)
}

/// The row sample, its principal components, for the outputs.
#[derive(Clone)]
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

impl Finished {
    /// The result of this run as the writers take it: W, H, the trace,
    /// `clusters`, the divisors, `attrs`, the row sample with its
    /// components, and `col_names`.
    pub fn output<'a>(
        &'a mut self,
        sample: &'a SampleInfo,
        clusters: &'a [u32],
        attrs: Vec<(String, AttrValue)>,
        col_names: Option<&'a [String]>,
    ) -> FitOutput<'a> {
        FitOutput {
            w: self.w.as_mut(),
            h: self.outcome.h.view(),
            rel_error: &self.outcome.rel_error,
            iteration_seconds: &self.outcome.iteration_seconds,
            cluster: clusters,
            col_scale: &self.outcome.col_scale,
            attrs,
            // No rows sampled, none stored (readers then draw rows of W
            // themselves).
            sample: (!sample.rows.is_empty()).then(|| SampleOutput {
                rows: &sample.rows,
                pca: sample.pca.scores.view(),
                variance_ratio: &sample.pca.explained_variance_ratio,
            }),
            col_names,
        }
    }
}

/// Runs every batch of the plan over the input; `on_batch` receives each
/// batch's finished runs (with their W) and the sample, whose rows are
/// collected during the first pass of the first batch.
pub fn run_batches(
    input: &mut Input,
    specs: &[RunSpec],
    prepared: &Prepared,
    mut persist: Option<&mut Persist>,
    mut on_batch: impl FnMut(Vec<Finished>, &SampleInfo) -> Result<()>,
) -> Result<()> {
    let plan = &prepared.plan;
    if persist.is_some() && plan.batches.len() > 1 {
        bail!(
            "{}: --checkpoint needs every restart in one batch, and this memory budget runs them \
             in {} batches: raise --memory or lower --restarts",
            input.name,
            plan.batches.len()
        );
    }
    // Of all rows, also where processes share them.
    let n_rows = prepared.share(input.n_rows()).n_rows;
    let rows = nmflow_core::sample_row_indices(n_rows, prepared.n_sample, prepared.sample_seed);
    let mut sample = Some(RowSample::new(rows, input.n_cols()).with_seed(prepared.sample_seed));
    let mut info: Option<SampleInfo> = None;
    for batch in &plan.batches {
        let mut stores = new_stores(input, &specs[batch.clone()], prepared)?;
        // A resumed fit: W from the checkpoint, its sample's components.
        let resume = match persist.as_deref_mut().and_then(|p| p.resume.take()) {
            Some(loaded) => {
                for (idx, store) in stores.iter_mut().enumerate() {
                    nmflow_io::checkpoint::restore_w(&loaded.path, idx, store.as_mut())?;
                }
                if let Some(state) = loaded.sample {
                    info = Some(SampleInfo::from(state));
                    sample = None;
                }
                Some(loaded.resume)
            }
            None => {
                fill_starts(&mut stores, batch.clone(), prepared)?;
                None
            }
        };
        let context = BatchContext {
            prepared,
            batch: batch.clone(),
            n_runs: specs.len(),
            persist: persist.as_deref(),
            resumed_sample: info.as_ref().map(SampleInfo::state),
        };
        let outcomes = context.run(input, &mut stores, sample.as_mut(), resume)?;
        if let Some(sample) = sample.take() {
            info = Some(SampleInfo::of(&sample)?);
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

/// W's store for each run of a batch: in memory, or a memory-mapped
/// temporary file when the plan puts W on disk.
fn new_stores(
    input: &Input,
    specs: &[RunSpec],
    prepared: &Prepared,
) -> Result<Vec<Box<dyn FactorStore>>> {
    let n_rows = input.n_rows();
    let tmp_dir = input.tmp_dir();
    specs
        .iter()
        .map(|spec| -> Result<Box<dyn FactorStore>> {
            Ok(if prepared.plan.w_on_disk {
                Box::new(MappedFactor::new(n_rows, spec.k, &tmp_dir)?)
            } else {
                Box::new(ndarray::Array2::<f32>::zeros((n_rows, spec.k)))
            })
        })
        .collect()
}

/// Streams W₀ (`--w0`) into the store of every run that starts from it,
/// block by block.
fn fill_starts(
    stores: &mut [Box<dyn FactorStore>],
    batch: Range<usize>,
    prepared: &Prepared,
) -> Result<()> {
    let Some(w0) = &prepared.w0 else {
        return Ok(());
    };
    for (store, idx) in stores.iter_mut().zip(batch) {
        if matches!(prepared.valid[idx].params().init, Init::Custom { .. }) {
            nmflow_io::read_start_into(w0, store.as_mut(), prepared.plan.block_rows)
                .with_context(|| format!("reading --w0 {w0}"))?;
        }
    }
    Ok(())
}

/// What one batch's fit needs beside its stores.
struct BatchContext<'a> {
    prepared: &'a Prepared,
    batch: Range<usize>,
    n_runs: usize,
    persist: Option<&'a Persist>,
    /// The sample of the checkpoint resumed from, written again into the
    /// next checkpoints.
    resumed_sample: Option<SampleState>,
}

impl BatchContext<'_> {
    /// Fits the batch's runs together, with the progress bar and the
    /// checkpoints.
    fn run(
        &self,
        input: &mut Input,
        stores: &mut [Box<dyn FactorStore>],
        sample: Option<&mut RowSample>,
        resume: Option<nmflow_core::Resume>,
    ) -> Result<Vec<FitOutcome>> {
        let valid = &self.prepared.valid[self.batch.clone()];
        let max_iter = valid.iter().map(|v| v.params().max_iter).max().unwrap_or(0);
        let label = if self.prepared.plan.batches.len() > 1 || self.batch.len() > 1 {
            format!(
                "runs {}-{} of {} ",
                self.batch.start + 1,
                self.batch.end,
                self.n_runs
            )
        } else {
            String::new()
        };
        let progress = Progress::new(input.n_rows(), max_iter, self.prepared.quiet, &label);
        let mut runs: Vec<Run<'_>> = valid
            .iter()
            .zip(stores.iter_mut())
            .map(|(params, w)| Run {
                params,
                w: w.as_mut(),
            })
            .collect();
        let mut save =
            |checkpoint: &Checkpoint<'_>, runs: &mut [Run<'_>]| self.save(checkpoint, runs);
        let every = self.persist.map_or(0, |p| p.every);
        let mut checkpointing = Checkpointing {
            every,
            save: &mut save,
        };
        let result = nmflow_core::fit_many_sharded(
            self.prepared.share(input.n_rows()),
            input.opened.source.as_mut(),
            &mut runs,
            sample,
            resume,
            (every > 0).then_some(&mut checkpointing),
            &mut |run, event| {
                if let Some(events) = &self.prepared.events {
                    // A caller that stopped listening does not stop the fit.
                    let _ = events.send((self.batch.start + run, event));
                }
                progress.on_run_event(run, event);
            },
        )
        .map_err(|e| with_count_hint(e, input))
        .with_context(|| input.name.clone());
        progress.finish();
        result
    }

    /// Writes a checkpoint (with the sample's components, once known).
    fn save(
        &self,
        checkpoint: &Checkpoint<'_>,
        runs: &mut [Run<'_>],
    ) -> std::result::Result<(), nmflow_core::SaveError> {
        let Some(persist) = self.persist else {
            return Ok(());
        };
        let sample = checkpoint
            .sample
            .and_then(|s| SampleInfo::of(s).ok())
            .map(|info| info.state())
            .or_else(|| self.resumed_sample.clone());
        if persist.keep_previous && persist.path.exists() {
            std::fs::rename(&persist.path, previous_checkpoint(&persist.path))?;
        }
        nmflow_io::checkpoint::write_checkpoint(
            &persist.path,
            &persist.meta,
            checkpoint,
            runs,
            sample.as_ref(),
        )?;
        Ok(())
    }
}

impl SampleInfo {
    /// The rows of `sample` and their components (computed during the
    /// first pass).
    fn of(sample: &RowSample) -> Result<Self> {
        let pca = sample
            .components()
            .cloned()
            .context("the solver computes the sample's components")?;
        Ok(Self {
            rows: sample.rows().iter().map(|&r| r as u64).collect(),
            pca,
        })
    }

    /// As a checkpoint stores it.
    fn state(&self) -> SampleState {
        SampleState {
            rows: self.rows.clone(),
            pca: self.pca.scores.clone(),
            variance_ratio: self.pca.explained_variance_ratio.clone(),
        }
    }
}

impl From<SampleState> for SampleInfo {
    fn from(state: SampleState) -> Self {
        Self {
            rows: state.rows,
            pca: Pca {
                scores: state.pca,
                explained_variance_ratio: state.variance_ratio,
            },
        }
    }
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
            storage: self.opened.storage.as_str().to_owned(),
        }
    }
}

/// The settings of the update rule, as checkpoints record them (every one
/// shapes the iterates) and results show them.
pub fn solver_settings(p: &NmfParams) -> [(&'static str, String); 6] {
    let r = p.regularization;
    [
        ("solver", p.solver.as_str().to_owned()),
        ("beta_loss", p.loss.as_str().to_owned()),
        ("inner", p.inner.to_string()),
        ("alpha_W", r.alpha_w.to_string()),
        ("alpha_H", r.alpha_h.to_string()),
        ("l1_ratio", r.l1_ratio.to_string()),
    ]
}

/// The attributes every result file carries.
pub fn result_attrs(
    input: &InputRecord,
    params: &ValidParams,
    outcome: &FitOutcome,
    prepared: &Prepared,
) -> Vec<(String, AttrValue)> {
    let p = params.params();
    let threads = prepared.threads;
    let mut attrs = vec![
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
        ("prepare_seconds", AttrValue::Float(outcome.prepare_seconds)),
    ];
    // Results over processes differ from one process's in the last bits:
    // say how many shared the rows.
    if let Some(shared) = &prepared.shard {
        let processes = shared.collective.size() as i64;
        attrs.push(("processes", AttrValue::Int(processes)));
    }
    let r = p.regularization;
    let solver = [
        ("solver", AttrValue::Str(p.solver.as_str().into())),
        ("beta_loss", AttrValue::Str(p.loss.as_str().into())),
        ("inner", AttrValue::Str(p.inner.to_string())),
        ("alpha_W", AttrValue::Float(r.alpha_w)),
        ("alpha_H", AttrValue::Float(r.alpha_h)),
        ("l1_ratio", AttrValue::Float(r.l1_ratio)),
    ];
    attrs
        .into_iter()
        .chain(solver)
        .map(|(n, v)| (n.to_owned(), v))
        .collect()
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

/// Free disk space the block cache asks for to hold `bytes`: a fifth more.
fn with_margin(bytes: u64) -> u64 {
    bytes.saturating_add(bytes / 5)
}

/// Blocks an input needs for its time to be estimated from block 0.
const ESTIMATE_MIN_BLOCKS: usize = 4;

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
    /// malformed (the fit reports that itself), and when the input has
    /// fewer than [`ESTIMATE_MIN_BLOCKS`] blocks: reading a third or more of
    /// it to predict the pre-pass would cost about what it predicts.
    pub fn measure(input: &mut Input, block_rows: usize, runs: &[ValidParams]) -> Option<Self> {
        let n_rows = input.n_rows();
        if n_rows.div_ceil(block_rows.max(1)) < ESTIMATE_MIN_BLOCKS {
            return None;
        }
        let rows = 0..block_rows.min(n_rows);
        let started = std::time::Instant::now();
        let block = input.opened.source.block(rows).ok()?;
        let read_s = started.elapsed().as_secs_f64();
        let mut compute_s = 0.0;
        let mut timed: Vec<((usize, Solver, Inner), f64)> = Vec::new();
        for run in runs {
            let p = run.params();
            let key = (p.k, p.solver, p.inner);
            let t = match timed.iter().find(|(timed_key, _)| *timed_key == key) {
                Some(&(_, t)) => t,
                None => {
                    let t = nmflow_core::time_block(&block, p)?;
                    timed.push((key, t));
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
    pub plan: Plan,
    /// W₀ of the runs that start from `Init::Custom`, streamed into their
    /// stores before their pre-pass.
    pub w0: Option<InputSpec>,
    /// Rows sampled for the components and the consensus.
    pub n_sample: usize,
    /// The seed the sample's rows are drawn with: the command's `--seed`
    /// (the seed of its first run), whichever runs are left to do, so that a
    /// resumed sweep samples the rows its finished runs sampled.
    pub sample_seed: u64,
    /// No progress bar.
    pub quiet: bool,
    /// Where every event of the runs is also sent, with the run's index in
    /// the specs (for [`crate::embed`]'s caller).
    pub events: Option<std::sync::mpsc::Sender<(usize, nmflow_core::Event)>>,
    /// The processes sharing the rows of a distributed fit, and where this
    /// process's rows lie; `None` alone.
    pub shard: Option<SharedRows>,
    pub pool: rayon::ThreadPool,
    pub threads: usize,
    pub estimate: Option<TimeEstimate>,
    pub cache_note: String,
    pub reads_cheap: bool,
}

/// The processes of a distributed fit and this process's rows among them.
#[derive(Clone)]
pub struct SharedRows {
    pub collective: std::sync::Arc<dyn nmflow_core::collective::Collective + Send + Sync>,
    pub first_row: usize,
    pub n_rows: usize,
}

impl Prepared {
    /// The engine's share of the rows: this process's of a distributed
    /// fit's, else all `n_rows` of them.
    pub fn share(&self, n_rows: usize) -> nmflow_core::collective::Shard<'_> {
        match &self.shard {
            Some(rows) => nmflow_core::collective::Shard {
                collective: rows.collective.as_ref(),
                first_row: rows.first_row,
                n_rows: rows.n_rows,
            },
            None => nmflow_core::collective::Shard {
                collective: &nmflow_core::collective::Alone,
                first_row: 0,
                n_rows,
            },
        }
    }
}

/// Validates every run's parameters (`init_of` gives each run's start),
/// plans the batches with `held` beside them, starts the pool, times
/// block 0 and attaches the cache.
pub fn prepare(
    input: &mut Input,
    specs: &[RunSpec],
    run: &RunArgs,
    held: Vec<(Held, u64)>,
    init_of: impl Fn(&RunSpec) -> Init,
) -> Result<Prepared> {
    if run.loss() == Loss::KullbackLeibler {
        if run.solver() != Solver::Mu {
            crate::usage::usage!(
                "--beta-loss kullback-leibler needs --solver mu: {} minimises the Frobenius norm",
                run.solver().as_str()
            );
        }
        if run.inner.is_some_and(|inner| inner != Inner::Fixed(1)) {
            crate::usage::usage!(
                "--inner needs the Frobenius loss: a Kullback-Leibler update needs X ⊘ WH anew"
            );
        }
    }
    let (n_rows, n_cols) = (input.n_rows(), input.n_cols());
    let preferred = input.opened.source.preferred_block_rows();
    let checked: Vec<ValidParams> = specs
        .iter()
        .map(|spec| {
            core_params(run, spec.k, spec.seed, init_of(spec)).check(n_rows, n_cols, preferred)
        })
        .collect::<Result<_, _>>()
        .with_context(|| input.name.clone())?;
    let plan = plan(input, specs, run, held)?;
    let valid: Vec<ValidParams> = checked
        .into_iter()
        .map(|v| v.with_block_rows(plan.block_rows))
        .collect();
    let pool = thread_pool(run.resources.threads)?;
    let threads = pool.current_num_threads();
    let estimate = pool.install(|| TimeEstimate::measure(input, plan.block_rows, &valid));
    let attached = input.attach_cache(run)?;
    let mut plan = plan;
    let mut cache_note = attached.note;
    if let Some(bytes) = attached.map_bytes
        && plan.keep_resident(bytes)
    {
        input.opened.source.keep_resident();
        cache_note.push_str("; kept resident");
    }
    let reads_cheap = attached.reads_cheap;
    Ok(Prepared {
        valid,
        plan,
        w0: None,
        n_sample: run.sample,
        sample_seed: run.seed,
        quiet: run.quiet,
        events: None,
        shard: None,
        pool,
        threads,
        estimate,
        cache_note,
        reads_cheap,
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
