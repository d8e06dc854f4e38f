//! `cargo xtask synth`: synthetic matrices written block by block, so that
//! data sets far larger than memory can be made. Output is written to a
//! temporary file beside the target and renamed into place.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use ndarray::{Array2, Axis, s};
use nmflow_io::npy;
use nmflow_testkit::SeedGenerator;
use rayon::prelude::*;

#[derive(Debug, Subcommand)]
pub enum SynthCommand {
    /// The clustered "seed" data: centres μ_c ~ U(0,1)^cols, each row μ_c + N(0, μ_c) clipped at 0.
    Seed(SeedArgs),
    /// Single-cell-like sparse counts: gene programs, usages, library sizes, Poisson counts.
    Sc(crate::synth_sc::ScArgs),
}

#[derive(Debug, Args)]
pub struct SeedArgs {
    /// Output: FILE.h5 (datasets /X, /labels, /centers) or FILE.npy (labels in FILE.labels.npy).
    #[arg(long)]
    pub out: PathBuf,
    /// Rows (samples).
    #[arg(long, default_value_t = 5000)]
    pub rows: usize,
    /// Columns (features).
    #[arg(long, default_value_t = 1000)]
    pub cols: usize,
    /// Clusters.
    #[arg(long, default_value_t = 5)]
    pub components: usize,
    /// Seed; the data is a function of the seed and the shape only.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Rows per HDF5 chunk (default: about 1 MiB per chunk).
    #[arg(long)]
    pub chunk_rows: Option<usize>,
    /// HDF5 compression: none, gzip, gzip:LEVEL or lzf.
    #[arg(long, default_value = "none")]
    pub compression: String,
    /// Replace the output if it exists.
    #[arg(long)]
    pub force: bool,
}

/// Rows generated and written at a time.
const WRITE_ROWS_BYTES: usize = 64 << 20;
/// Rows per parallel generation task.
const GEN_ROWS: usize = 64;

/// Writes the seed data set (`components` clusters, seed 0, uncompressed)
/// to `out` unless it exists: the benchmarks' cached inputs.
pub fn cached_seed(out: &Path, rows: usize, cols: usize, components: usize) -> Result<()> {
    if out.exists() {
        return Ok(());
    }
    run(SynthCommand::Seed(SeedArgs {
        out: out.to_path_buf(),
        rows,
        cols,
        components,
        seed: 0,
        chunk_rows: None,
        compression: "none".into(),
        force: false,
    }))
}

pub fn run(cmd: SynthCommand) -> Result<()> {
    match cmd {
        SynthCommand::Seed(args) => seed(&args),
        SynthCommand::Sc(args) => crate::synth_sc::run(&args),
    }
}

#[derive(Debug, Clone, Copy)]
enum Compression {
    None,
    Gzip(u8),
    Lzf,
}

fn parse_compression(text: &str) -> Result<Compression> {
    Ok(match text {
        "none" => Compression::None,
        "gzip" => Compression::Gzip(4),
        "lzf" => Compression::Lzf,
        other => match other.strip_prefix("gzip:").map(str::parse::<u8>) {
            Some(Ok(level)) if level <= 9 => Compression::Gzip(level),
            _ => bail!("--compression must be none, gzip, gzip:0..9 or lzf, not '{other}'"),
        },
    })
}

fn seed(args: &SeedArgs) -> Result<()> {
    if args.rows == 0 || args.cols == 0 || args.components == 0 {
        bail!("--rows, --cols and --components must be at least 1");
    }
    if args.out.exists() && !args.force {
        bail!("{} exists (use --force to replace it)", args.out.display());
    }
    let compression = parse_compression(&args.compression)?;
    let generator = SeedGenerator::new(args.seed, args.components, args.cols);
    let chunk_rows = args
        .chunk_rows
        .unwrap_or_else(|| ((1 << 20) / (4 * args.cols)).max(1))
        .clamp(1, args.rows);
    let slab_rows = (WRITE_ROWS_BYTES / (4 * args.cols))
        .max(1)
        .div_ceil(chunk_rows)
        * chunk_rows;
    let is_npy = args.out.extension().is_some_and(|e| e == "npy");
    let tmp = temp_beside(&args.out)?;
    if is_npy {
        let labels_path = args.out.with_extension("labels.npy");
        let mut labels = Vec::with_capacity(args.rows);
        write_npy_f32(
            tmp.path(),
            args.rows,
            args.cols,
            |start, block| {
                let mut l = vec![0u32; block.nrows()];
                fill(&generator, start, block, &mut l);
                labels.extend(l);
            },
            slab_rows,
        )?;
        write_npy_u32(&labels_path, &labels)?;
    } else {
        write_hdf5(
            tmp.path(),
            args,
            &generator,
            chunk_rows,
            slab_rows,
            compression,
        )
        .with_context(|| format!("writing {}", args.out.display()))?;
    }
    tmp.persist(&args.out)
        .with_context(|| format!("renaming the output to {}", args.out.display()))?;
    eprintln!(
        "wrote {} ({} × {}, {} clusters, seed {})",
        args.out.display(),
        args.rows,
        args.cols,
        args.components,
        args.seed
    );
    Ok(())
}

/// A temporary file in the directory of `out`, to be renamed to `out`
/// when complete.
pub(crate) fn temp_beside(out: &Path) -> Result<tempfile::NamedTempFile> {
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // The mode the user's umask gives, as nmflow's own outputs have.
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .prefix(".synth-")
        .permissions(std::fs::Permissions::from_mode(0o666))
        .tempfile_in(&dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))
}

fn fill(
    generator: &SeedGenerator,
    start: usize,
    mut block: ndarray::ArrayViewMut2<'_, f32>,
    labels: &mut [u32],
) {
    block
        .axis_chunks_iter_mut(Axis(0), GEN_ROWS)
        .into_par_iter()
        .zip(labels.par_chunks_mut(GEN_ROWS))
        .enumerate()
        .for_each(|(i, (rows, labels))| {
            let first = start + i * GEN_ROWS;
            generator.fill_rows(first..first + rows.nrows(), rows, labels);
        });
}

fn write_hdf5(
    path: &Path,
    args: &SeedArgs,
    generator: &SeedGenerator,
    chunk_rows: usize,
    slab_rows: usize,
    compression: Compression,
) -> Result<()> {
    let file = hdf5::File::create(path)?;
    let mut builder = file.new_dataset::<f32>();
    builder = builder.chunk((chunk_rows, args.cols));
    match compression {
        Compression::None => {}
        Compression::Gzip(level) => builder = builder.shuffle().deflate(level),
        Compression::Lzf => builder = builder.lzf(),
    }
    let x = builder.shape((args.rows, args.cols)).create("X")?;
    let labels_ds = file
        .new_dataset::<u32>()
        .chunk(chunk_rows.max(4096).min(args.rows))
        .shape(args.rows)
        .create("labels")?;
    let mut block = Array2::<f32>::zeros((slab_rows.min(args.rows), args.cols));
    let mut labels = vec![0u32; block.nrows()];
    for start in (0..args.rows).step_by(slab_rows) {
        let end = (start + slab_rows).min(args.rows);
        let n = end - start;
        fill(
            generator,
            start,
            block.slice_mut(s![..n, ..]),
            &mut labels[..n],
        );
        x.write_slice(&block.slice(s![..n, ..]), s![start..end, ..])?;
        labels_ds.write_slice(&labels[..n], s![start..end])?;
    }
    file.new_dataset_builder()
        .with_data(generator.centers())
        .create("centers")?;
    let describe = [
        ("generator", "seed".to_owned()),
        ("seed", args.seed.to_string()),
        ("components", args.components.to_string()),
    ];
    for (name, value) in describe {
        let value: hdf5::types::VarLenUnicode =
            value.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
        file.new_attr::<hdf5::types::VarLenUnicode>()
            .create(name)?
            .write_scalar(&value)?;
    }
    file.close()?;
    Ok(())
}

fn write_npy_f32(
    path: &Path,
    rows: usize,
    cols: usize,
    mut make: impl FnMut(usize, ndarray::ArrayViewMut2<'_, f32>),
    slab_rows: usize,
) -> Result<()> {
    let mut out = BufWriter::new(File::create(path)?);
    out.write_all(&npy::header_bytes("<f4", &[rows, cols]))?;
    let mut block = Array2::<f32>::zeros((slab_rows.min(rows), cols));
    for start in (0..rows).step_by(slab_rows) {
        let n = (start + slab_rows).min(rows) - start;
        make(start, block.slice_mut(s![..n, ..]));
        let values = block.as_slice().context("the slab is in standard layout")?;
        npy::write_values(&mut out, &values[..n * cols])?;
    }
    out.flush()?;
    Ok(())
}

pub(crate) fn write_npy_u32(path: &Path, values: &[u32]) -> Result<()> {
    npy::write_npy(path, &[values.len()], values)
        .with_context(|| format!("writing {}", path.display()))
}
