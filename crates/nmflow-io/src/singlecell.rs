//! Single-cell HDF5 layouts: h5ad (anndata), 10x Genomics feature-barcode
//! matrices (Cell Ranger ≥ 3 and the per-genome layout of 1.x–2.x), loom,
//! and plain HDF5 datasets. Every layout is opened as a matrix of
//! cells × genes (rows = cells), with the cell and gene names it stores.
//!
//! Sniffing (in this order): `/matrix` dataset and `/row_attrs` → loom;
//! `/matrix` group → 10x; `obs` → h5ad; groups holding `indptr` with
//! `genes` or `gene_names` → legacy 10x; otherwise plain HDF5.

use std::path::{Path, PathBuf};

use hdf5::{File, Group};
use nmflow_core::RowSource;

use crate::csr_source::Hdf5CsrSource;
use crate::error::IoError;
use crate::hdf5_source::open_dense;
use crate::strings::{read_string_dataset, string_attr};
use crate::transpose::{transpose_csc, transpose_dense};

/// How to pick and orient the matrix of a single-cell file.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// h5ad: `layers/NAME` instead of `X`; loom: `layers/NAME` instead of `/matrix`.
    pub layer: Option<String>,
    /// h5ad: `raw/X` instead of `X`.
    pub raw: bool,
    /// loom: rows of the factorization are genes (the stored rows).
    pub transpose: bool,
    /// Legacy 10x: the genome group to read.
    pub genome: Option<String>,
    /// 10x: keep every feature type (default: "Gene Expression" only, as
    /// scanpy's `read_10x_h5` does).
    pub all_features: bool,
    /// Where temporary transposed copies go (default: the system's).
    pub tmp_dir: Option<PathBuf>,
}

/// The layout of an HDF5 file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// anndata.
    H5ad,
    /// Cell Ranger ≥ 3 / Space Ranger (`/matrix` group).
    Tenx,
    /// Cell Ranger 1.x–2.x: one group per genome.
    TenxLegacy,
    /// loom.
    Loom,
    /// Any other HDF5 file.
    Plain,
}

impl Layout {
    /// A short name for messages and result attributes.
    pub fn as_str(&self) -> &'static str {
        match self {
            Layout::H5ad => "h5ad",
            Layout::Tenx => "10x",
            Layout::TenxLegacy => "10x (legacy)",
            Layout::Loom => "loom",
            Layout::Plain => "hdf5",
        }
    }
}

/// Tells the layout of an open file.
pub(crate) fn detect(file: &File) -> Layout {
    if file.dataset("matrix").is_ok() && file.group("row_attrs").is_ok() {
        return Layout::Loom;
    }
    if file.group("matrix").is_ok() {
        return Layout::Tenx;
    }
    if file.link_exists("obs") {
        return Layout::H5ad;
    }
    if !legacy_genomes(file).is_empty() {
        return Layout::TenxLegacy;
    }
    Layout::Plain
}

/// Tells the layout of the HDF5 file at `path`.
pub fn detect_path(path: &Path) -> Result<Layout, IoError> {
    Ok(detect(&open_file(path)?))
}

fn legacy_genomes(file: &File) -> Vec<String> {
    let Ok(groups) = file.groups() else {
        return Vec::new();
    };
    groups
        .iter()
        .filter(|g| {
            g.link_exists("indptr") && (g.link_exists("genes") || g.link_exists("gene_names"))
        })
        .map(|g| g.name().trim_start_matches('/').to_owned())
        .collect()
}

/// How an input matrix is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// A dense cells × genes array, read in row blocks.
    Dense,
    /// A dense cells × genes array used in place from a memory map (a
    /// `.npy` file, or a contiguous, unfiltered HDF5 dataset).
    DenseMapped,
    /// Compressed sparse rows, read in row blocks.
    Csr,
    /// Compressed sparse columns, transposed to a temporary CSR file.
    Csc,
    /// A dense genes × cells array (loom), transposed to a temporary CSR
    /// file.
    DenseTransposed,
    /// 10x Genomics' CSC genes × barcodes, read as CSR cells × genes.
    TenX,
    /// Rows another program holds in memory (the Python package's arrays),
    /// read in place.
    InMemory,
}

impl Storage {
    /// The description printed and recorded in results.
    pub fn as_str(self) -> &'static str {
        match self {
            Storage::Dense => "dense",
            Storage::DenseMapped => "dense (memory-mapped)",
            Storage::Csr => "csr",
            Storage::Csc => "csc (transposed to a temporary CSR file)",
            Storage::DenseTransposed => "dense genes × cells (transposed to a temporary CSR file)",
            Storage::TenX => "csr (10x CSC genes × barcodes)",
            Storage::InMemory => "in memory (the caller's arrays, used in place)",
        }
    }

    /// A dense array, used in place when `mapped`.
    pub(crate) fn dense(mapped: bool) -> Self {
        if mapped {
            Storage::DenseMapped
        } else {
            Storage::Dense
        }
    }

    /// Read from a memory map (the input itself, or a temporary copy):
    /// passes after the first read cheaply without a block cache.
    pub fn is_mapped(self) -> bool {
        matches!(
            self,
            Storage::DenseMapped | Storage::Csc | Storage::DenseTransposed | Storage::InMemory
        )
    }
}

/// An opened single-cell matrix.
pub(crate) struct OpenedMatrix {
    /// Its rows, as cells × genes.
    pub source: Box<dyn RowSource + Send>,
    /// The layout of the file.
    pub layout: Layout,
    /// The element read, e.g. `X`, `layers/counts`, `/matrix`.
    pub element: String,
    /// How the matrix is stored, and whether it is read from a copy.
    pub storage: Storage,
    /// The stored element type.
    pub dtype: crate::dtype::Dtype,
}

impl std::fmt::Debug for OpenedMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedMatrix")
            .field("layout", &self.layout)
            .field("element", &self.element)
            .field("storage", &self.storage)
            .finish_non_exhaustive()
    }
}

fn open_file(path: &Path) -> Result<File, IoError> {
    File::open(path).map_err(|e| IoError::hdf5(path, "opening the HDF5 file", e))
}

fn tmp_dir(opts: &OpenOptions) -> PathBuf {
    opts.tmp_dir.clone().unwrap_or_else(std::env::temp_dir)
}

/// Opens the matrix of the HDF5 file at `path`: the element `dataset` when
/// given (a dense dataset or a sparse group), else the layout's matrix.
pub(crate) fn open_matrix(
    path: &Path,
    dataset: Option<&str>,
    opts: &OpenOptions,
) -> Result<OpenedMatrix, IoError> {
    let file = open_file(path)?;
    let layout = detect(&file);
    if let Some(name) = dataset {
        return open_element(path, &file, name, layout, opts);
    }
    let refuse = |flag: Flag| IoError::Unsupported {
        path: path.to_path_buf(),
        object: "/".into(),
        reason: format!(
            "{} applies to {}, and this is a {} file",
            flag.name(),
            flag.scope(),
            layout.as_str()
        ),
    };
    if opts.raw && layout != Layout::H5ad {
        return Err(refuse(Flag::Raw));
    }
    if opts.layer.is_some() && !matches!(layout, Layout::H5ad | Layout::Loom) {
        return Err(refuse(Flag::Layer));
    }
    if opts.transpose && layout != Layout::Loom {
        return Err(refuse(Flag::Transpose));
    }
    match layout {
        Layout::H5ad => {
            let element = h5ad_element(path, &file, opts)?;
            open_element(path, &file, &element, layout, opts)
        }
        Layout::Loom => {
            let element = match &opts.layer {
                Some(name) => {
                    let layers = member_names(&file, "layers");
                    if !layers.contains(name) {
                        return Err(IoError::Missing {
                            path: path.to_path_buf(),
                            what: format!("no layer '{name}'"),
                            available: layers,
                        });
                    }
                    format!("/layers/{name}")
                }
                None => "/matrix".to_owned(),
            };
            open_element(path, &file, &element, layout, opts)
        }
        Layout::Tenx => open_tenx(
            path,
            &file
                .group("matrix")
                .map_err(|e| IoError::hdf5(path, "opening /matrix", e))?,
            opts,
            layout,
        ),
        Layout::TenxLegacy => {
            let genomes = legacy_genomes(&file);
            let genome = match (&opts.genome, genomes.as_slice()) {
                (Some(g), _) if genomes.contains(g) => g.clone(),
                (None, [only]) => only.clone(),
                (wanted, _) => {
                    return Err(IoError::Missing {
                        path: path.to_path_buf(),
                        what: match wanted {
                            Some(g) => format!("no genome '{g}'"),
                            None => "several genomes: choose one with --genome".into(),
                        },
                        available: genomes,
                    });
                }
            };
            let group = file
                .group(&genome)
                .map_err(|e| IoError::hdf5(path, format!("opening /{genome}"), e))?;
            open_tenx(path, &group, opts, layout)
        }
        Layout::Plain => {
            if opts.genome.is_some() {
                return Err(refuse(Flag::Genome));
            }
            let (source, mapped, info) = open_dense(path, None)?;
            Ok(OpenedMatrix {
                source,
                layout,
                element: info.path,
                storage: Storage::dense(mapped),
                dtype: info.dtype,
            })
        }
    }
}

/// The element `fit FILE` factorizes with no option that chooses one (as
/// the opening of an input chooses it, without opening it): `/X` of an h5ad file,
/// `/matrix` of a loom or 10x file, a legacy 10x file's only genome, a
/// plain file's `/X` or only matrix. `None` when the file leaves the
/// choice to the user (several genomes, several matrices).
pub fn default_element(path: &Path) -> Result<Option<String>, IoError> {
    let file = open_file(path)?;
    Ok(match detect(&file) {
        Layout::H5ad => h5ad_element(path, &file, &OpenOptions::default()).ok(),
        Layout::Loom | Layout::Tenx => Some("/matrix".to_owned()),
        Layout::TenxLegacy => match legacy_genomes(&file).as_slice() {
            [only] => Some(format!("/{only}")),
            _ => None,
        },
        Layout::Plain => crate::hdf5_source::open_matrix_dataset(path, None)
            .ok()
            .map(|ds| crate::catalog::describe(&ds).path),
    })
}

/// Where graphs and other pairwise or unstructured matrices live in an
/// h5ad file (`obsp`, `varp`, `uns`, e.g. `uns/neighbors/connectivities`):
/// square cell × cell or gene × gene matrices, not expression, which
/// `inspect` does not list as factorizable.
pub fn is_graph_element(element: &str) -> bool {
    let element = element.trim_start_matches('/');
    ["obsp/", "varp/", "uns/"]
        .iter()
        .any(|prefix| element.starts_with(prefix))
}

/// An option that chooses the matrix within one layout only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flag {
    Raw,
    Layer,
    Transpose,
    Genome,
}

impl Flag {
    fn name(self) -> &'static str {
        match self {
            Flag::Raw => "--raw",
            Flag::Layer => "--layer",
            Flag::Transpose => "--transpose",
            Flag::Genome => "--genome",
        }
    }

    /// The files it applies to.
    fn scope(self) -> &'static str {
        match self {
            Flag::Raw => "h5ad files",
            Flag::Layer => "h5ad and loom files",
            Flag::Transpose => "loom files",
            Flag::Genome => "legacy 10x files",
        }
    }
}

/// The names of the members of group `name` of `file` (empty if absent).
fn member_names(file: &File, name: &str) -> Vec<String> {
    file.group(name)
        .and_then(|g| g.member_names())
        .unwrap_or_default()
}

/// Other matrices of an h5ad file than `element` that may hold the
/// non-negative counts (`raw/X` or a legacy `raw.X`, and every layer), as
/// the options that select them: for a message when `element` holds
/// negative values (scaled or centred data, as scanpy's `pp.scale` leaves
/// in `X`).
pub fn count_alternatives(path: &Path, element: &str) -> Vec<String> {
    let Ok(file) = File::open(path) else {
        return Vec::new();
    };
    let element = element.trim_start_matches('/');
    let mut out = Vec::new();
    let has_raw = file
        .group("raw")
        .map(|g| g.link_exists("X"))
        .unwrap_or(false)
        || file.link_exists("raw.X");
    if has_raw && element != "raw/X" && element != "raw.X" {
        out.push("raw/X (--raw)".to_owned());
    }
    for layer in member_names(&file, "layers") {
        if element != format!("layers/{layer}") {
            out.push(format!("layers/{layer} (--layer {layer})"));
        }
    }
    out
}

/// The h5ad element the options select.
fn h5ad_element(path: &Path, file: &File, opts: &OpenOptions) -> Result<String, IoError> {
    let layers = member_names(file, "layers");
    if let Some(name) = &opts.layer {
        if opts.raw {
            return Err(IoError::Unsupported {
                path: path.to_path_buf(),
                object: "/".into(),
                reason: "--layer and --raw exclude each other".into(),
            });
        }
        if !layers.contains(name) {
            return Err(IoError::Missing {
                path: path.to_path_buf(),
                what: format!("no layer '{name}'"),
                available: layers.iter().map(|l| format!("layers/{l}")).collect(),
            });
        }
        return Ok(format!("/layers/{name}"));
    }
    let has_raw_x = file
        .group("raw")
        .map(|g| g.link_exists("X"))
        .unwrap_or(false);
    // anndata < 0.7 kept raw at the root: `raw.X`, `raw.var`.
    let legacy_raw = !has_raw_x && file.link_exists("raw.X");
    if opts.raw && legacy_raw {
        return Ok("/raw.X".into());
    }
    if opts.raw {
        if !has_raw_x {
            return Err(IoError::Missing {
                path: path.to_path_buf(),
                what: "no raw/X".into(),
                available: ["X"]
                    .iter()
                    .filter(|_| file.link_exists("X"))
                    .map(|s| s.to_string())
                    .collect(),
            });
        }
        return Ok("/raw/X".into());
    }
    if !file.link_exists("X") {
        let mut available: Vec<String> = layers
            .iter()
            .map(|l| format!("layers/{l} (--layer {l})"))
            .collect();
        if has_raw_x || legacy_raw {
            available.push("raw/X (--raw)".into());
        }
        return Err(IoError::Missing {
            path: path.to_path_buf(),
            what: "this h5ad file has no X".into(),
            available,
        });
    }
    Ok("/X".into())
}

/// Opens a dense dataset or a sparse group as a cells × genes matrix.
fn open_element(
    path: &Path,
    file: &File,
    name: &str,
    layout: Layout,
    opts: &OpenOptions,
) -> Result<OpenedMatrix, IoError> {
    let element = name.trim_start_matches('/').to_owned();
    if let Ok(group) = file.group(name) {
        let encoding = string_attr(&group, "encoding-type")
            .or_else(|| string_attr(&group, "h5sparse_format").map(|f| format!("{f}_matrix")));
        let shape = sparse_shape(path, &group)?;
        return match encoding.as_deref() {
            Some("csr_matrix") => {
                let source = Hdf5CsrSource::open(path, &group, shape, None)?;
                let dtype = source.dtype().to_owned();
                Ok(OpenedMatrix {
                    source: Box::new(source),
                    layout,
                    element,
                    storage: Storage::Csr,
                    dtype,
                })
            }
            Some("csc_matrix") => {
                let dtype = crate::dtype::Dtype::of_hdf5(
                    &group
                        .dataset("data")
                        .and_then(|d| d.dtype())
                        .and_then(|t| t.to_descriptor()),
                );
                let source = transpose_csc(path, &group, shape, &tmp_dir(opts))?;
                Ok(OpenedMatrix {
                    source: Box::new(source),
                    layout,
                    element,
                    storage: Storage::Csc,
                    dtype,
                })
            }
            other => Err(IoError::Unsupported {
                path: path.to_path_buf(),
                object: group.name(),
                reason: format!(
                    "a group with encoding-type {}, not a matrix (csr_matrix, csc_matrix or a dense dataset)",
                    other.unwrap_or("(none)")
                ),
            }),
        };
    }
    if layout == Layout::Loom && !opts.transpose {
        let ds = crate::hdf5_source::open_matrix_dataset(path, Some(name))?;
        let dtype = crate::catalog::describe(&ds).dtype;
        let source = transpose_dense(path, &ds, &tmp_dir(opts))?;
        return Ok(OpenedMatrix {
            source: Box::new(source),
            layout,
            element,
            storage: Storage::DenseTransposed,
            dtype,
        });
    }
    let (source, mapped, info) = open_dense(path, Some(name))?;
    Ok(OpenedMatrix {
        source,
        layout,
        element,
        storage: Storage::dense(mapped),
        dtype: info.dtype,
    })
}

/// The `shape` attribute of a sparse group, as (rows, columns).
fn sparse_shape(path: &Path, group: &Group) -> Result<(usize, usize), IoError> {
    let attr = group
        .attr("shape")
        .or_else(|_| group.attr("h5sparse_shape"))
        .map_err(|_| {
            IoError::malformed(
                path,
                group.name(),
                "the sparse matrix has no 'shape' attribute",
            )
        })?;
    let shape: Vec<i64> = attr
        .read_raw::<i64>()
        .map_err(|e| IoError::hdf5(path, format!("reading the shape of '{}'", group.name()), e))?;
    match shape.as_slice() {
        &[r, c] if r >= 0 && c >= 0 => Ok((r as usize, c as usize)),
        other => Err(IoError::malformed(
            path,
            group.name(),
            format!("the 'shape' attribute is {other:?}, not two non-negative numbers"),
        )),
    }
}

/// Opens a 10x matrix group (current or legacy): CSC genes × barcodes,
/// read as CSR barcodes × genes.
fn open_tenx(
    path: &Path,
    group: &Group,
    opts: &OpenOptions,
    layout: Layout,
) -> Result<OpenedMatrix, IoError> {
    let required = ["data", "indices", "indptr", "shape"];
    let missing: Vec<&str> = required
        .iter()
        .copied()
        .filter(|n| !group.link_exists(n))
        .collect();
    if !missing.is_empty() {
        return Err(IoError::Unsupported {
            path: path.to_path_buf(),
            object: group.name(),
            reason: format!(
                "unknown 10x layout: no {} (expected data, indices, indptr, shape, barcodes and features/ or genes)",
                missing.join(", ")
            ),
        });
    }
    let shape: Vec<i64> = group
        .dataset("shape")
        .and_then(|d| {
            if d.size() == 2 {
                d.read_raw::<i64>()
            } else {
                Err(hdf5::Error::from(format!("{} entries, not 2", d.size())))
            }
        })
        .map_err(|e| IoError::hdf5(path, format!("reading '{}/shape'", group.name()), e))?;
    let (n_genes, n_cells) = match shape.as_slice() {
        &[g, c] if g >= 0 && c >= 0 => (g as usize, c as usize),
        other => {
            return Err(IoError::malformed(
                path,
                group.name(),
                format!("shape is {other:?}, not two non-negative numbers"),
            ));
        }
    };
    // The shape must agree with the feature and barcode lists (checked
    // here, so that a wrong shape is named as such).
    let ids = if layout == Layout::Tenx {
        "features/id"
    } else {
        "genes"
    };
    for (list, n, axis) in [
        (ids, n_genes, "features"),
        ("barcodes", n_cells, "barcodes"),
    ] {
        if let Ok(ds) = group.dataset(list)
            && ds.size() != n
        {
            return Err(IoError::malformed(
                path,
                format!("{}/shape", group.name()),
                format!(
                    "says {n} {axis}, but '{}/{list}' lists {}",
                    group.name(),
                    ds.size()
                ),
            ));
        }
    }
    let col_map = if opts.all_features {
        None
    } else {
        gene_expression_map(path, group, n_genes)?
    };
    let source = Hdf5CsrSource::open(path, group, (n_cells, n_genes), col_map)?;
    let dtype = source.dtype().to_owned();
    Ok(OpenedMatrix {
        source: Box::new(source),
        layout,
        element: group.name(),
        storage: Storage::TenX,
        dtype,
    })
}

/// For a file with several feature types, the map keeping "Gene
/// Expression" features only (None when there is nothing to drop).
fn gene_expression_map(
    path: &Path,
    group: &Group,
    n_genes: usize,
) -> Result<Option<(Vec<u32>, usize)>, IoError> {
    let Ok(ds) = group.dataset("features/feature_type") else {
        return Ok(None);
    };
    let types = read_string_dataset(&ds)
        .map_err(|e| IoError::hdf5(path, "reading features/feature_type", e))?;
    if types.len() != n_genes {
        return Err(IoError::malformed(
            path,
            ds.name(),
            format!("{} feature types for {n_genes} features", types.len()),
        ));
    }
    if types.iter().all(|t| t == "Gene Expression") || !types.iter().any(|t| t == "Gene Expression")
    {
        return Ok(None);
    }
    let mut next = 0u32;
    let map = types
        .iter()
        .map(|t| {
            if t == "Gene Expression" {
                next += 1;
                next - 1
            } else {
                u32::MAX
            }
        })
        .collect();
    Ok(Some((map, next as usize)))
}

/// Cell and gene names of a matrix, as the input stores them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Names {
    /// One per row (cell barcodes, obs names).
    pub obs: Vec<String>,
    /// One per column (gene names, var names).
    pub var: Vec<String>,
    /// Gene ids when the file stores them apart from names (10x).
    pub var_ids: Option<Vec<String>>,
    /// Whether the file stores the column names (else `var` is numbered).
    pub var_stored: bool,
    /// Where an h5ad input keeps its rows' and columns' dataframes, which an
    /// h5ad result copies (`None` for other inputs and for anndata < 0.7's
    /// compound dataframes).
    pub annotations: Option<Annotations>,
}

/// The dataframes of an h5ad input's rows and columns, with everything
/// beside them that an h5ad result copies: `obs` and `var` whole (every
/// column, categories and encodings as stored), and the small entries of
/// `obsm` (dense, at most 64 columns: embeddings
/// such as `X_pca` and `X_umap`) and `uns` (at most 1 MiB each: colours,
/// parameters).
#[derive(Debug, Clone, PartialEq)]
pub struct Annotations {
    /// The input file.
    pub file: std::path::PathBuf,
    /// The rows' dataframe: `obs`.
    pub obs: String,
    /// The columns' dataframe: `var`, or `raw/var` with `--raw`.
    pub var: String,
    /// The matrix copied as the result's `X` (`--copy-x`), if any.
    pub x: Option<String>,
}

fn numbered(n: usize) -> Vec<String> {
    (0..n).map(|i| i.to_string()).collect()
}

impl Names {
    /// "0", "1", ... for rows and columns, for inputs that store no names.
    pub fn numbered((n_rows, n_cols): (usize, usize)) -> Self {
        Self {
            obs: numbered(n_rows),
            var: numbered(n_cols),
            var_ids: None,
            var_stored: false,
            annotations: None,
        }
    }
}

/// Reads the names of the matrix `open_matrix` would open; falls back to
/// "0", "1", ... where the file stores none (or in a form not read).
pub fn read_names(
    path: &Path,
    dataset: Option<&str>,
    opts: &OpenOptions,
    (n_rows, n_cols): (usize, usize),
) -> Result<Names, IoError> {
    let file = open_file(path)?;
    let layout = detect(&file);
    // Names a file stores must be readable and as many as the matrix's rows
    // or columns: a mismatch is refused, never papered over with numbers.
    // Names are read only when the file declares no more of them than the
    // matrix has rows and columns together (a damaged dataspace may claim
    // billions); a wrong count is then reported by `fit` below.
    let most = n_rows.saturating_add(n_cols);
    let strings = |name: &str| -> Result<Option<Vec<String>>, IoError> {
        match file.dataset(name) {
            Ok(d) if d.size() > most => Err(IoError::malformed(
                path,
                name,
                format!(
                    "holds {} names, but the matrix has {n_rows} rows and {n_cols} columns",
                    d.size()
                ),
            )),
            Ok(d) => read_string_dataset(&d)
                .map(Some)
                .map_err(|e| IoError::hdf5(path, format!("reading the names in '{name}'"), e)),
            Err(_) => Ok(None),
        }
    };
    let fit = |v: Option<Vec<String>>,
               n: usize,
               what: &str,
               axis: &str|
     -> Result<Vec<String>, IoError> {
        match v {
            None => Ok(numbered(n)),
            Some(v) if v.len() == n => Ok(v),
            Some(v) => Err(IoError::malformed(
                path,
                what,
                format!("holds {} names, but the matrix has {n} {axis}", v.len()),
            )),
        }
    };
    let var_stored = std::cell::Cell::new(false);
    let note = |v: Option<Vec<String>>| {
        if v.is_some() {
            var_stored.set(true);
        }
        v
    };
    let mut names = match (layout, dataset) {
        (Layout::H5ad, _) => {
            let var_frame = match () {
                _ if !opts.raw => "var",
                _ if file.link_exists("raw.var") && !file.link_exists("raw/var") => "raw.var",
                _ => "raw/var",
            };
            Names {
                obs: fit(
                    dataframe_index(path, &file, "obs", most)?,
                    n_rows,
                    "obs",
                    "rows (cells)",
                )?,
                var: fit(
                    note(dataframe_index(path, &file, var_frame, most)?),
                    n_cols,
                    var_frame,
                    "columns (genes)",
                )?,
                var_ids: None,
                var_stored: false,
                annotations: (file.group("obs").is_ok() && file.group(var_frame).is_ok()).then(
                    || Annotations {
                        file: path.to_path_buf(),
                        obs: "obs".into(),
                        var: var_frame.into(),
                        x: None,
                    },
                ),
            }
        }
        (Layout::Tenx | Layout::TenxLegacy, None) => {
            let group = if layout == Layout::Tenx {
                "matrix".to_owned()
            } else {
                match &opts.genome {
                    Some(g) => g.clone(),
                    None => legacy_genomes(&file).into_iter().next().unwrap_or_default(),
                }
            };
            let (name_ds, id_ds) = if layout == Layout::Tenx {
                ("features/name", "features/id")
            } else {
                ("gene_names", "genes")
            };
            let mut var = strings(&format!("{group}/{name_ds}"))?;
            let mut ids = strings(&format!("{group}/{id_ds}"))?;
            if !opts.all_features
                && let Some(types) = strings(&format!("{group}/features/feature_type"))?
            {
                let keep = |v: Vec<String>| -> Vec<String> {
                    if types.iter().any(|t| t == "Gene Expression") {
                        v.into_iter()
                            .zip(&types)
                            .filter(|(_, t)| *t == "Gene Expression")
                            .map(|(n, _)| n)
                            .collect()
                    } else {
                        v
                    }
                };
                var = var.map(keep);
                ids = ids.map(keep);
            }
            let ids_name = format!("{group}/{id_ds}");
            let var_ids = match ids {
                Some(ids) => Some(fit(Some(ids), n_cols, &ids_name, "columns (genes)")?),
                None => None,
            };
            Names {
                obs: fit(
                    strings(&format!("{group}/barcodes"))?,
                    n_rows,
                    &format!("{group}/barcodes"),
                    "rows (cells)",
                )?,
                var: fit(
                    note(var),
                    n_cols,
                    &format!("{group}/{name_ds}"),
                    "columns (genes)",
                )?,
                var_ids,
                var_stored: false,
                annotations: None,
            }
        }
        (Layout::Loom, None) => {
            let cells = ("col_attrs/CellID", strings("col_attrs/CellID")?);
            let genes = ("row_attrs/Gene", strings("row_attrs/Gene")?);
            let (obs, var) = if opts.transpose {
                (genes, cells)
            } else {
                (cells, genes)
            };
            Names {
                obs: fit(obs.1, n_rows, obs.0, "rows")?,
                var: fit(note(var.1), n_cols, var.0, "columns")?,
                var_ids: None,
                var_stored: false,
                annotations: None,
            }
        }
        _ => Names::numbered((n_rows, n_cols)),
    };
    names.var_stored = var_stored.get();
    if names.obs.len() != n_rows {
        names.obs = numbered(n_rows);
    }
    Ok(names)
}

/// The row labels of an anndata dataframe group (`_index` attribute), or
/// the index field of a legacy compound dataset (anndata < 0.7); `None`
/// when the frame is absent.
fn dataframe_index(
    path: &Path,
    file: &File,
    frame: &str,
    most: usize,
) -> Result<Option<Vec<String>>, IoError> {
    let err = |e| IoError::hdf5(path, format!("reading the names of '{frame}'"), e);
    let too_many = |n: usize| {
        IoError::malformed(
            path,
            frame,
            format!("declares {n} names, more than the matrix's rows and columns together"),
        )
    };
    if let Ok(group) = file.group(frame) {
        let index = string_attr(&group, "_index").unwrap_or_else(|| "_index".into());
        return match group.dataset(&index) {
            Ok(d) if d.size() > most => Err(too_many(d.size())),
            Ok(d) => read_string_dataset(&d).map(Some).map_err(err),
            Err(_) => Ok(None),
        };
    }
    if crate::legacy::is_compound_frame(file, frame) {
        let ds = file.dataset(frame).map_err(err)?;
        if ds.size() > most {
            return Err(too_many(ds.size()));
        }
        return crate::legacy::frame_index(&ds).map(Some).map_err(err);
    }
    Ok(None)
}
