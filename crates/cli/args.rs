//! Command-line arguments (raw stage; `fit.rs` validates and converts them).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Out-of-core non-negative matrix factorization (X ≈ W·H) by Lee & Seung
/// multiplicative updates, streaming X from HDF5 or .npy files in row blocks.
#[derive(Debug, Parser)]
#[command(name = "nmflow", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Factorize a matrix and write W, H, the error trace and the clusters.
    Fit(Box<FitArgs>),
    /// Factorize for a range of k with random restarts: errors, stability, agreement with labels.
    Sweep(Box<SweepArgs>),
    /// Project new rows (cells) onto the programs of an earlier fit: H fixed, W solved row by row.
    Transform(Box<TransformArgs>),
    /// Figures (PNG, SVG) and one self-contained HTML page for a fit or a sweep.
    Report(ReportArgs),
    /// List the matrices of a file that can be factorized, and the memory a run needs.
    Inspect(InspectArgs),
    /// Each program's top genes of a fit's result, by loading and specificity, as TSV.
    TopGenes(TopGenesArgs),
    /// Print a shell completion script: `nmflow completions bash > ~/.local/share/bash-completion/completions/nmflow`.
    Completions(CompletionsArgs),
    /// Print the manual page (roff) of nmflow and its commands (`cargo xtask man` writes it).
    #[command(hide = true)]
    Man,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// What the programs' genes are ranked by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RankByArg {
    /// The loading in the data's units (what the program adds to the gene; genes high
    /// everywhere, such as ribosomal ones, rank high in many programs).
    Loading,
    /// The z-score of the loading across programs (the program's marker genes).
    Specificity,
}

impl RankByArg {
    pub fn rank_by(self) -> nmflow_report::RankBy {
        match self {
            RankByArg::Loading => nmflow_report::RankBy::Loading,
            RankByArg::Specificity => nmflow_report::RankBy::Specificity,
        }
    }
}

#[derive(Debug, Args)]
pub struct TopGenesArgs {
    /// A result of `nmflow fit` (.h5 or .h5ad), or one of `nmflow sweep` (kK.h5).
    pub result: PathBuf,

    /// Genes per program.
    #[arg(short = 'n', long = "n-genes", value_name = "N", default_value_t = 50,
          value_parser = crate::usage::positive)]
    pub n: usize,

    /// Rank each program's genes by this score (both are in the table).
    #[arg(long, value_enum, default_value_t = RankByArg::Loading)]
    pub by: RankByArg,

    /// Write the table to this file (replaced if it exists) instead of printing it.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InitArg {
    /// W and H uniform on [0, 1) from --seed (the seed algorithm's start).
    Random,
    /// scikit-learn's init="random": W and H half-normal from --seed, times sqrt(mean(X) / k).
    RandomScaled,
    /// W from --w0 and H from --h0.
    Custom,
    /// Boutsidis & Gallopoulos's NNDSVD from a streamed randomized SVD; zeros stay.
    Nndsvd,
    /// NNDSVD with its zeros filled with the mean of X (scikit-learn's default start).
    Nndsvda,
    /// NNDSVD with its zeros filled with small random values.
    Nndsvdar,
}

impl InitArg {
    /// The NNDSVD variant, if this is one.
    pub fn nndsvd(self) -> Option<nmflow_core::NndsvdFill> {
        match self {
            InitArg::Nndsvd => Some(nmflow_core::NndsvdFill::Zeros),
            InitArg::Nndsvda => Some(nmflow_core::NndsvdFill::Mean),
            InitArg::Nndsvdar => Some(nmflow_core::NndsvdFill::Random),
            InitArg::Random | InitArg::RandomScaled | InitArg::Custom => None,
        }
    }

    /// The name results and checkpoints record.
    pub fn as_str(self) -> &'static str {
        match self {
            InitArg::Random => "random",
            InitArg::RandomScaled => "random-scaled",
            InitArg::Custom => "custom",
            InitArg::Nndsvd => "nndsvd",
            InitArg::Nndsvda => "nndsvda",
            InitArg::Nndsvdar => "nndsvdar",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SweepInit {
    /// W and H uniform on [0, 1) from each restart's seed.
    Random,
    /// scikit-learn's init="random": half-normal draws times sqrt(mean(X) / k).
    RandomScaled,
}

impl SweepInit {
    /// The core's start.
    pub fn core(self) -> nmflow_core::Init {
        match self {
            SweepInit::Random => nmflow_core::Init::Random,
            SweepInit::RandomScaled => nmflow_core::Init::RandomScaled,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SolverArg {
    /// Lee & Seung multiplicative updates (the seed's algorithm).
    Mu,
    /// Hierarchical alternating least squares (scikit-learn's `cd`): exact coordinate descent,
    /// usually far fewer iterations to a given error.
    Hals,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LossArg {
    /// ‖X − WH‖²_F.
    Frobenius,
    /// The generalized Kullback-Leibler divergence (for counts; with --solver mu).
    KullbackLeibler,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScaleArg {
    /// Divide each column by its population standard deviation.
    ColStd,
    /// No scaling.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NormalizeArg {
    /// Values as they are.
    None,
    /// Scale each row (cell) to 10,000 counts, then log(1 + x).
    #[value(name = "cp10k-log1p")]
    Cp10kLog1p,
    /// log(1 + x).
    Log1p,
}

/// Where the matrix comes from.
#[derive(Debug, Args)]
pub struct InputArgs {
    /// Input: an h5ad, 10x .h5, loom or other HDF5 file (FILE:/path picks a dataset or sparse group), or a .npy file.
    pub input: String,

    /// h5ad or loom: factorize layers/NAME instead of X (loom: /matrix).
    #[arg(long, value_name = "NAME")]
    pub layer: Option<String>,

    /// h5ad: factorize raw/X.
    #[arg(long)]
    pub raw: bool,

    /// loom: make genes the rows of the factorization (the stored orientation).
    #[arg(long)]
    pub transpose: bool,

    /// Cell Ranger 1.x/2.x files with several genomes: the genome to read.
    #[arg(long, value_name = "NAME")]
    pub genome: Option<String>,

    /// 10x: keep every feature type (default: "Gene Expression" only, as scanpy does).
    #[arg(long)]
    pub all_features: bool,

    /// Where temporary copies (CSC and loom inputs transposed to cells × genes) are written.
    #[arg(long, value_name = "DIR")]
    pub tmp_dir: Option<PathBuf>,
}

/// Threads, blocks and memory: what a command may use.
#[derive(Debug, Clone, Args)]
pub struct Resources {
    /// Worker threads (default: all cores). Results do not depend on it.
    #[arg(long, value_name = "N", value_parser = crate::usage::positive)]
    pub threads: Option<usize>,

    /// Rows per block read from X (default: about 16 MiB of rows, a multiple of the chunk height).
    #[arg(long, value_name = "N", value_parser = crate::usage::positive)]
    pub block_rows: Option<usize>,

    /// Memory budget of the whole process, e.g. 2GiB or 512MiB (default: half of the available
    /// memory). Blocks are sized to fit; a budget too small for the fixed part is refused.
    #[arg(long, value_name = "SIZE", value_parser = crate::budget::parse_size)]
    pub memory: Option<u64>,
}

/// Rows sampled by default (`--sample`).
pub const DEFAULT_SAMPLE: usize = 2000;

/// How every factorization runs.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Maximum number of iterations.
    #[arg(long, default_value_t = 200, value_parser = crate::usage::positive)]
    pub max_iter: usize,

    /// The update rule.
    #[arg(long, value_enum, default_value_t = SolverArg::Mu)]
    pub solver: SolverArg,

    /// The loss (scikit-learn's beta_loss): frobenius, or kullback-leibler (multiplicative
    /// updates only).
    #[arg(long, value_enum, default_value_t = LossArg::Frobenius)]
    pub beta_loss: LossArg,

    /// Updates of each factor per pass over X: a number (1 = plain alternating updates), or auto
    /// (Gillis & Glineur's rule: repeat a row's update while it still changes, up to a cap set by
    /// the cost of a pass). Default: 1 for mu, auto for hals.
    #[arg(long, value_name = "auto|N", value_parser = crate::usage::inner)]
    pub inner: Option<nmflow_core::Inner>,

    /// Penalty on W (scikit-learn's alpha_W: L1 n_cols·α·ρ, L2 n_cols·α·(1 − ρ), ρ = --l1-ratio).
    #[arg(long, value_name = "ALPHA", default_value_t = 0.0, value_parser = crate::usage::penalty)]
    pub alpha_w: f64,

    /// Penalty on H (scikit-learn's alpha_H, scaled by the number of rows; default: --alpha-w).
    #[arg(long, value_name = "ALPHA", value_parser = crate::usage::penalty)]
    pub alpha_h: Option<f64>,

    /// The share of L1 in the penalties, in [0, 1].
    #[arg(long, value_name = "RHO", default_value_t = 0.0, value_parser = crate::usage::ratio)]
    pub l1_ratio: f64,

    /// Stopping tolerance, scikit-learn's rule: every 10 iterations, stop when the error fell by less
    /// than TOL times the error of the start since the previous check (0: run all iterations).
    #[arg(long, default_value_t = 1e-4, value_parser = crate::usage::tolerance)]
    pub tol: f64,

    /// Seed of the random initialisation (restart r uses seed + r).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Per-row (cell) normalisation, applied before the column scaling.
    #[arg(long, value_enum, default_value_t = NormalizeArg::None)]
    pub normalize: NormalizeArg,

    /// Column scaling applied to X before factorizing.
    #[arg(long, value_enum, default_value_t = ScaleArg::ColStd)]
    pub scale: ScaleArg,

    #[command(flatten)]
    pub resources: Resources,

    /// Directory for the block cache: an uncompressed copy of the input written during the first
    /// pass and memory-mapped by later ones (default: the system's temporary directory, when it
    /// has room).
    #[arg(long, value_name = "DIR", conflicts_with = "no_cache")]
    pub cache: Option<PathBuf>,

    /// Read the input anew in every pass.
    #[arg(long)]
    pub no_cache: bool,

    /// Rows sampled (reproducibly) for the principal components and the heatmap of `nmflow report`
    /// and for consensus clustering.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_SAMPLE)]
    pub sample: usize,

    /// No progress bar and no summary on the terminal.
    #[arg(short, long)]
    pub quiet: bool,

    /// Print the summary as one JSON object on standard output.
    #[arg(long)]
    pub json: bool,
}

impl RunArgs {
    /// The core's solver of `--solver`.
    pub fn solver(&self) -> nmflow_core::Solver {
        self.solver.core()
    }

    /// The core's loss of `--beta-loss`.
    pub fn loss(&self) -> nmflow_core::Loss {
        match self.beta_loss {
            LossArg::Frobenius => nmflow_core::Loss::Frobenius,
            LossArg::KullbackLeibler => nmflow_core::Loss::KullbackLeibler,
        }
    }
}

impl SolverArg {
    /// The core's solver.
    pub fn core(self) -> nmflow_core::Solver {
        match self {
            SolverArg::Mu => nmflow_core::Solver::Mu,
            SolverArg::Hals => nmflow_core::Solver::Hals,
        }
    }
}

#[derive(Debug, Args)]
#[command(group(
    clap::ArgGroup::new("destination")
        .required(true)
        .args(["output", "write_into"])
))]
pub struct FitArgs {
    #[command(flatten)]
    pub input: InputArgs,

    /// Number of components.
    #[arg(short = 'k', long = "n-components", value_name = "K", value_parser = crate::usage::one_k)]
    pub k: usize,

    /// Output: FILE.h5ad (an AnnData file with obsm['X_nmf'], varm['NMF_H'], obs['nmf_cluster'], uns['nmf']),
    /// or any other name for plain HDF5 (/W, /H, /rel_error, /cluster, /col_scale, /sample).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Add the result to the input h5ad file itself (obsm, varm, obs, uns), safely: the file is
    /// edited as a copy that replaces it when complete.
    #[arg(long, value_name = "INPUT.h5ad")]
    pub write_into: Option<PathBuf>,

    /// With -o OUT.h5ad of an h5ad input: also copy the input's X into the result (as stored,
    /// streamed by the HDF5 library chunk by chunk), so that the result stands alone.
    #[arg(long)]
    pub copy_x: bool,

    /// Random starts (seeds --seed, --seed + 1, ...), run together; the one with the lowest final
    /// error is kept.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = crate::usage::positive)]
    pub restarts: usize,

    /// Initialisation.
    #[arg(long, value_enum, default_value_t = InitArg::Random)]
    pub init: InitArg,

    /// Initial W (rows × k) for --init custom: .npy, or HDF5 (dataset /W unless FILE:/path is given).
    #[arg(long, value_name = "FILE")]
    pub w0: Option<String>,

    /// Initial H (k × columns) for --init custom: .npy, or HDF5 (dataset /H unless FILE:/path is given).
    #[arg(long, value_name = "FILE")]
    pub h0: Option<String>,

    /// Write the state of the fit to this file every --checkpoint-every iterations (atomically), so
    /// that a killed run can continue with --resume; removed once the result is written.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,

    /// Iterations between checkpoints.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = crate::usage::positive, requires = "checkpoint")]
    pub checkpoint_every: usize,

    /// Continue from the --checkpoint file when it exists (the same command otherwise starts from
    /// the beginning). The result is bit-identical to an uninterrupted run's. A checkpoint of
    /// another input or other parameters is refused, saying what differs.
    #[arg(long, requires = "checkpoint")]
    pub resume: bool,

    #[command(flatten)]
    pub run: RunArgs,

    /// Replace the output file if it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct SweepArgs {
    #[command(flatten)]
    pub input: InputArgs,

    /// The values of k: a range 2..12 (inclusive), a list 3,5,8, or one value.
    #[arg(short = 'k', long = "n-components", value_name = "KS", value_parser = crate::usage::parse_ks)]
    pub ks: crate::usage::KList,

    /// Random starts per k (seeds --seed, --seed + 1, ...; the same seeds for every k).
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = crate::usage::positive)]
    pub restarts: usize,

    /// How every restart starts: random (uniform, the seed's) or random-scaled (scikit-learn's
    /// init="random"). Starts that do not depend on the seed make no sense for restarts.
    #[arg(long, value_enum, default_value_t = SweepInit::Random)]
    pub init: SweepInit,

    /// Output directory: sweep.tsv, sweep.json and the best factorization of each k (kK.h5 or
    /// kK.h5ad, see --format).
    #[arg(short, long, value_name = "DIR")]
    pub output: PathBuf,

    /// Known groups of the rows: an obs column (h5ad), a column attribute (loom), /path of a dataset
    /// in the input, or FILE:/path. ARI and NMI of the clusters against them are reported.
    #[arg(long, value_name = "LABELS")]
    pub labels: Option<String>,

    #[command(flatten)]
    pub run: RunArgs,

    /// Replace the sweep's files if the directory holds an earlier sweep.
    #[arg(long)]
    pub force: bool,

    /// Continue a sweep cut short: runs whose records (DIR/runs/kK-rR.h5) read back whole, and
    /// whose command and input match, are not run again; the result equals an uninterrupted sweep's.
    #[arg(long)]
    pub resume: bool,

    /// The format of each k's result: h5ad (kK.h5ad, the layout of `fit -o x.h5ad`, with the
    /// input's annotations) or h5 (kK.h5, plain HDF5). Default: h5ad for an h5ad input, else h5.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<SweepFormat>,
}

/// The format of a sweep's results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SweepFormat {
    /// Plain HDF5: kK.h5.
    H5,
    /// AnnData: kK.h5ad.
    H5ad,
}

#[derive(Debug, Args)]
#[command(group(
    clap::ArgGroup::new("destination")
        .required(true)
        .args(["output", "write_into"])
))]
pub struct TransformArgs {
    #[command(flatten)]
    pub input: InputArgs,

    /// The result of `nmflow fit` (.h5 or .h5ad) whose H is projected onto. Its per-row
    /// normalisation and column scales (the training data's) are applied to the input.
    #[arg(long, value_name = "RESULT")]
    pub components: PathBuf,

    /// Output: FILE.h5ad or FILE.h5, as `nmflow fit` writes them (W of the input's rows, the
    /// components, the clusters).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Add the result to the input h5ad file itself (obsm, varm, obs, uns), safely.
    #[arg(long, value_name = "INPUT.h5ad")]
    pub write_into: Option<PathBuf>,

    /// How each row is solved: hals (exact coordinate descent from zero, as scikit-learn's `cd`)
    /// or mu (multiplicative updates). Both converge to the same non-negative least-squares
    /// solution; hals in far fewer sweeps.
    #[arg(long, value_enum, default_value_t = SolverArg::Hals)]
    pub solver: SolverArg,

    /// Sweeps per row at most.
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = crate::usage::positive)]
    pub max_iter: usize,

    /// A row is solved once a sweep changes it by at most TOL times the first sweep's change.
    #[arg(long, default_value_t = 1e-4, value_parser = crate::usage::tolerance)]
    pub tol: f64,

    /// Genes of the components absent from the input count as zeros (default: refused). Genes of
    /// the input absent from the components are always ignored.
    #[arg(long)]
    pub allow_missing_genes: bool,

    #[command(flatten)]
    pub resources: Resources,

    /// Replace the output file if it exists.
    #[arg(long)]
    pub force: bool,

    /// No progress bar and no summary on the terminal.
    #[arg(short, long)]
    pub quiet: bool,

    /// Print the summary as one JSON object on standard output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A result of `nmflow fit` (.h5 or .h5ad) or the directory of `nmflow sweep`.
    pub result: PathBuf,

    /// Output directory: index.html and every figure as PNG and SVG.
    #[arg(short, long, value_name = "DIR")]
    pub output: PathBuf,

    /// Genes (columns) listed per component.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = crate::usage::positive)]
    pub top: usize,

    /// Known groups of the cells, to colour a PCA panel by: an obs column of the result (an h5ad
    /// result carries the input's obs), /path of a dataset in it, or FILE:/path (e.g. the input's
    /// labels). A sweep's report uses the sweep's --labels when this is not given.
    #[arg(long, value_name = "LABELS")]
    pub labels: Option<String>,

    /// Replace the report's files if the directory holds an earlier report.
    #[arg(long)]
    pub force: bool,

    /// Print nothing but errors.
    #[arg(short, long)]
    pub quiet: bool,

    /// Print a summary (figures, seconds, peak memory) as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// An HDF5 or .npy file.
    pub file: PathBuf,

    /// Components for the memory estimate.
    #[arg(
        short = 'k',
        long = "n-components",
        value_name = "K",
        default_value_t = 20,
        value_parser = crate::usage::one_k
    )]
    pub k: usize,

    /// Rows per block for the memory estimate (default: as `fit` would choose).
    #[arg(long, value_name = "N", value_parser = crate::usage::positive)]
    pub block_rows: Option<usize>,

    /// Plan for this memory budget, e.g. 2GiB: block size and predicted peak.
    #[arg(long, value_name = "SIZE", value_parser = crate::budget::parse_size)]
    pub memory: Option<u64>,

    /// Also time one bare pass over the matrix fit would read (reading and decoding every block,
    /// no computation): the I/O floor of an iteration.
    #[arg(long)]
    pub read_pass: bool,

    /// Print the listing as JSON.
    #[arg(long)]
    pub json: bool,
}
