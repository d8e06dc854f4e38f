//! `cargo xtask synth sc`: single-cell-like sparse counts (see
//! `nmflow_testkit::sc`) written cell block by cell block in h5ad (CSR),
//! 10x (Cell Ranger 3 layout), loom or .npy, with the truth beside them.
//!
//! Truth: h5ad `obs['program']`, `obsm['true_usage']`, `varm['true_spectra']`;
//! 10x `/truth/program`, `/truth/usage`, `/truth/spectra`; loom
//! `col_attrs/program`, `col_attrs/true_usage`, `row_attrs/true_spectra`;
//! npy `FILE.program.npy` and `FILE.spectra.npy`.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use hdf5::types::{FixedAscii, VarLenUnicode};
use ndarray::{Array2, s};
use nmflow_io::elements::{
    array_1d, array_2d, dataframe, dict, set_encoding, set_str_array_attr, string_array,
};
use nmflow_testkit::{Cell, ScGenerator};
use rayon::prelude::*;

use nmflow_io::npy;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    H5ad,
    #[value(name = "10x")]
    Tenx,
    Loom,
    Npy,
}

#[derive(Debug, Args)]
pub struct ScArgs {
    /// Output file.
    #[arg(long)]
    pub out: PathBuf,
    /// Cells (rows).
    #[arg(long, default_value_t = 10_000)]
    pub cells: usize,
    /// Genes (columns).
    #[arg(long, default_value_t = 2_000)]
    pub genes: usize,
    /// Gene programs.
    #[arg(long, default_value_t = 8)]
    pub programs: usize,
    /// Fraction of non-zero entries to aim for.
    #[arg(long, default_value_t = 0.06)]
    pub density: f64,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// File format (default: from the extension: .h5ad, .h5 = 10x, .loom, .npy).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Replace the output if it exists.
    #[arg(long)]
    pub force: bool,
}

/// `DIR/sc-{cells}x{genes}.h5ad` (6 % non-zero, seed 0), generated unless
/// it is already there: the benchmarks' cached single-cell data.
pub fn cached(dir: &Path, cells: usize, genes: usize, programs: usize) -> Result<PathBuf> {
    let out = dir.join(format!("sc-{cells}x{genes}.h5ad"));
    if !out.exists() {
        run(&ScArgs {
            out: out.clone(),
            cells,
            genes,
            programs,
            density: 0.06,
            seed: 0,
            format: None,
            force: false,
        })?;
    }
    Ok(out)
}

/// Cells generated and written at a time.
const SLAB_CELLS: usize = 8192;

pub fn run(args: &ScArgs) -> Result<()> {
    if args.cells == 0 || args.genes == 0 || args.programs == 0 {
        bail!("--cells, --genes and --programs must be at least 1");
    }
    if !(args.density > 0.0 && args.density < 1.0) {
        bail!("--density must be between 0 and 1");
    }
    if args.out.exists() && !args.force {
        bail!("{} exists (use --force to replace it)", args.out.display());
    }
    let format = match args.format {
        Some(f) => f,
        None => match args.out.extension().and_then(|e| e.to_str()) {
            Some("h5ad") => Format::H5ad,
            Some("h5") => Format::Tenx,
            Some("loom") => Format::Loom,
            Some("npy") => Format::Npy,
            _ => bail!(
                "say --format h5ad|10x|loom|npy (the extension of {} does not tell)",
                args.out.display()
            ),
        },
    };
    let generator = ScGenerator::new(args.seed, args.genes, args.programs, args.density);
    let tmp = crate::synth::temp_beside(&args.out)?;
    let nnz = match format {
        Format::H5ad => write_h5ad(tmp.path(), args, &generator)?,
        Format::Tenx => write_tenx(tmp.path(), args, &generator)?,
        Format::Loom => write_loom(tmp.path(), args, &generator)?,
        Format::Npy => write_npy(tmp.path(), &args.out, args, &generator)?,
    };
    tmp.persist(&args.out)
        .with_context(|| format!("renaming the output to {}", args.out.display()))?;
    eprintln!(
        "wrote {} ({} cells × {} genes, {} programs, {} non-zeros = {:.2} % dense, median library {:.0}, seed {})",
        args.out.display(),
        args.cells,
        args.genes,
        args.programs,
        nnz,
        100.0 * nnz as f64 / (args.cells as f64 * args.genes as f64),
        generator.library_size(),
        args.seed
    );
    Ok(())
}

/// Generates cells `start..end` in parallel, in order.
fn slab(generator: &ScGenerator, start: usize, end: usize) -> Vec<Cell> {
    (start..end)
        .into_par_iter()
        .map(|i| generator.cell(i))
        .collect()
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// Appends CSR rows to resizable `data` / `indices` datasets.
struct CsrAppender {
    data: hdf5::Dataset,
    indices: hdf5::Dataset,
    indptr: Vec<i64>,
}

impl CsrAppender {
    fn new<I: hdf5::H5Type, D: hdf5::H5Type>(group: &hdf5::Group) -> Result<Self> {
        let data = group
            .new_dataset::<D>()
            .chunk(1 << 16)
            .shape(0..)
            .create("data")?;
        let indices = group
            .new_dataset::<I>()
            .chunk(1 << 16)
            .shape(0..)
            .create("indices")?;
        Ok(Self {
            data,
            indices,
            indptr: vec![0],
        })
    }

    fn append<I: hdf5::H5Type + TryFrom<u32>, D: hdf5::H5Type + From<u16>>(
        &mut self,
        cells: &[Cell],
    ) -> Result<()> {
        let mut data: Vec<D> = Vec::new();
        let mut indices: Vec<I> = Vec::new();
        let mut last = *self.indptr.last().unwrap_or(&0);
        for cell in cells {
            for &(gene, count) in &cell.counts {
                indices.push(
                    I::try_from(gene)
                        .map_err(|_| anyhow::anyhow!("gene index {gene} does not fit"))?,
                );
                data.push(D::from(count as u16));
            }
            last += cell.counts.len() as i64;
            self.indptr.push(last);
        }
        let start = self.data.size();
        let end = start + data.len();
        self.data.resize(end)?;
        self.indices.resize(end)?;
        if end > start {
            self.data.write_slice(&data, s![start..end])?;
            self.indices.write_slice(&indices, s![start..end])?;
        }
        Ok(())
    }
}

fn truth(generator: &ScGenerator, cells: usize, programs: usize) -> (Vec<i64>, Array2<f32>) {
    let mut program = vec![0i64; cells];
    let mut usage = Array2::<f32>::zeros((cells, programs));
    for start in (0..cells).step_by(SLAB_CELLS) {
        let end = (start + SLAB_CELLS).min(cells);
        for (offset, cell) in slab(generator, start, end).into_iter().enumerate() {
            program[start + offset] = i64::from(cell.program);
            for (u, &v) in usage.row_mut(start + offset).iter_mut().zip(&cell.usage) {
                *u = v;
            }
        }
    }
    (program, usage)
}

fn write_h5ad(path: &Path, args: &ScArgs, generator: &ScGenerator) -> Result<u64> {
    let file = hdf5::File::create(path)?;
    set_encoding(&file, "anndata", "0.1.0")?;
    let x = file.create_group("X")?;
    set_encoding(&x, "csr_matrix", "0.1.0")?;
    x.new_attr::<i64>()
        .shape(2)
        .create("shape")?
        .write(&[args.cells as i64, args.genes as i64])?;
    let mut csr = CsrAppender::new::<i32, f32>(&x)?;
    let mut programs = Vec::with_capacity(args.cells);
    let mut usage = Array2::<f32>::zeros((args.cells, args.programs));
    for start in (0..args.cells).step_by(SLAB_CELLS) {
        let end = (start + SLAB_CELLS).min(args.cells);
        let cells = slab(generator, start, end);
        csr.append::<i32, f32>(&cells)?;
        for (offset, cell) in cells.iter().enumerate() {
            programs.push(i64::from(cell.program));
            for (u, &v) in usage.row_mut(start + offset).iter_mut().zip(&cell.usage) {
                *u = v;
            }
        }
    }
    let nnz = *csr.indptr.last().unwrap_or(&0) as u64;
    x.new_dataset_builder()
        .with_data(&csr.indptr)
        .create("indptr")?;
    let obs = dataframe(&file, "obs", &names("cell", args.cells))?;
    set_str_array_attr(&obs, "column-order", &["program".to_owned()])?;
    array_1d(&obs, "program", &programs)?;
    let var = dataframe(&file, "var", &names("gene", args.genes))?;
    set_str_array_attr(&var, "column-order", &[])?;
    array_2d(&dict(&file, "obsm")?, "true_usage", usage.view())?;
    let spectra_t = generator.spectra().t().as_standard_layout().into_owned();
    array_2d(&dict(&file, "varm")?, "true_spectra", spectra_t.view())?;
    for empty in ["layers", "obsp", "varp", "uns"] {
        dict(&file, empty)?;
    }
    file.close()?;
    Ok(nnz)
}

/// Writes fixed-length (null-padded) ASCII strings, as Cell Ranger does.
fn fixed_strings(group: &hdf5::Group, name: &str, values: &[String]) -> Result<()> {
    let fixed: Vec<FixedAscii<32>> = values
        .iter()
        .map(|v| {
            FixedAscii::<32>::from_ascii(v.as_bytes()).map_err(|e| anyhow::anyhow!("{v:?}: {e}"))
        })
        .collect::<Result<_>>()?;
    group.new_dataset_builder().with_data(&fixed).create(name)?;
    Ok(())
}

fn write_tenx(path: &Path, args: &ScArgs, generator: &ScGenerator) -> Result<u64> {
    let file = hdf5::File::create(path)?;
    let matrix = file.create_group("matrix")?;
    let mut csr = CsrAppender::new::<i64, i32>(&matrix)?;
    for start in (0..args.cells).step_by(SLAB_CELLS) {
        let end = (start + SLAB_CELLS).min(args.cells);
        csr.append::<i64, i32>(&slab(generator, start, end))?;
    }
    let nnz = *csr.indptr.last().unwrap_or(&0) as u64;
    matrix
        .new_dataset_builder()
        .with_data(&csr.indptr)
        .create("indptr")?;
    matrix
        .new_dataset_builder()
        .with_data(&[args.genes as i32, args.cells as i32])
        .create("shape")?;
    let barcodes: Vec<String> = (0..args.cells).map(|i| format!("BC{i:09}-1")).collect();
    fixed_strings(&matrix, "barcodes", &barcodes)?;
    let features = matrix.create_group("features")?;
    fixed_strings(&features, "id", &names("ENSSYN", args.genes))?;
    fixed_strings(&features, "name", &names("gene", args.genes))?;
    fixed_strings(
        &features,
        "feature_type",
        &vec!["Gene Expression".to_owned(); args.genes],
    )?;
    fixed_strings(
        &features,
        "genome",
        &vec!["synthetic".to_owned(); args.genes],
    )?;
    let (program, usage) = truth(generator, args.cells, args.programs);
    let truth_group = file.create_group("truth")?;
    truth_group
        .new_dataset_builder()
        .with_data(&program)
        .create("program")?;
    truth_group
        .new_dataset_builder()
        .with_data(&usage)
        .create("usage")?;
    truth_group
        .new_dataset_builder()
        .with_data(generator.spectra())
        .create("spectra")?;
    file.close()?;
    Ok(nnz)
}

fn write_loom(path: &Path, args: &ScArgs, generator: &ScGenerator) -> Result<u64> {
    let file = hdf5::File::create(path)?;
    let chunk = (64.min(args.genes), 64.min(args.cells));
    let matrix = file
        .new_dataset::<f32>()
        .chunk(chunk)
        .deflate(2)
        .shape((args.genes, args.cells))
        .create("matrix")?;
    let slab_cells = (SLAB_CELLS / 64).max(1) * 64;
    let mut nnz = 0u64;
    for start in (0..args.cells).step_by(slab_cells) {
        let end = (start + slab_cells).min(args.cells);
        let cells = slab(generator, start, end);
        let mut block = Array2::<f32>::zeros((args.genes, end - start));
        for (c, cell) in cells.iter().enumerate() {
            for &(gene, count) in &cell.counts {
                block[(gene as usize, c)] = count;
            }
            nnz += cell.counts.len() as u64;
        }
        matrix.write_slice(&block, s![.., start..end])?;
    }
    for group in ["layers", "row_graphs", "col_graphs"] {
        file.create_group(group)?;
    }
    let (program, usage) = truth(generator, args.cells, args.programs);
    let row_attrs = file.create_group("row_attrs")?;
    string_array(&row_attrs, "Gene", &names("gene", args.genes))?;
    row_attrs
        .new_dataset_builder()
        .with_data(&generator.spectra().t().as_standard_layout().into_owned())
        .create("true_spectra")?;
    let col_attrs = file.create_group("col_attrs")?;
    string_array(&col_attrs, "CellID", &names("cell", args.cells))?;
    col_attrs
        .new_dataset_builder()
        .with_data(&program)
        .create("program")?;
    col_attrs
        .new_dataset_builder()
        .with_data(&usage)
        .create("true_usage")?;
    let attrs = file.create_group("attrs")?;
    let version: VarLenUnicode = "3.0.0".parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    attrs
        .new_dataset::<VarLenUnicode>()
        .shape(())
        .create("LOOM_SPEC_VERSION")?
        .write_scalar(&version)?;
    file.close()?;
    Ok(nnz)
}

fn write_npy(path: &Path, out: &Path, args: &ScArgs, generator: &ScGenerator) -> Result<u64> {
    let mut file = BufWriter::new(std::fs::File::create(path)?);
    file.write_all(&npy::header_bytes("<f4", &[args.cells, args.genes]))?;
    let mut program = Vec::with_capacity(args.cells);
    let mut nnz = 0u64;
    let mut row = vec![0f32; args.genes];
    for start in (0..args.cells).step_by(SLAB_CELLS) {
        let end = (start + SLAB_CELLS).min(args.cells);
        for cell in slab(generator, start, end) {
            row.fill(0.0);
            for &(gene, count) in &cell.counts {
                row[gene as usize] = count;
            }
            nnz += cell.counts.len() as u64;
            program.push(cell.program);
            npy::write_values(&mut file, &row)?;
        }
    }
    file.flush()?;
    crate::synth::write_npy_u32(&out.with_extension("program.npy"), &program)?;
    let spectra = generator.spectra().as_standard_layout().into_owned();
    let values = spectra.as_slice().context("standard layout")?;
    npy::write_npy(
        &out.with_extension("spectra.npy"),
        &[spectra.nrows(), spectra.ncols()],
        values,
    )?;
    Ok(nnz)
}
