//! Naming and opening inputs: `FILE`, `FILE:/dataset/path`, `.npy` files.

use std::path::{Path, PathBuf};

use ndarray::Array2;
use nmflow_core::RowSource;

use crate::error::IoError;
use crate::hdf5_source::Hdf5Source;
pub use crate::kind::{InputKind, sniff};
use crate::names;
use crate::npy::NpySource;
use crate::singlecell::{Layout, OpenOptions, open_matrix};

/// An input as the user names it: a file and, for HDF5, a dataset path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputSpec {
    /// The file.
    pub path: PathBuf,
    /// The dataset inside an HDF5 file, if named.
    pub dataset: Option<String>,
}

impl InputSpec {
    /// Parses `FILE` or `FILE:/path/in/file`. A name that exists as a file
    /// is taken whole even if it contains `:/`.
    pub fn parse(text: &str) -> Self {
        if !Path::new(text).exists()
            && let Some((file, dataset)) = text.split_once(":/")
        {
            return Self {
                path: PathBuf::from(file),
                dataset: Some(format!("/{dataset}")),
            };
        }
        Self {
            path: PathBuf::from(text),
            dataset: None,
        }
    }
}

impl std::fmt::Display for InputSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.dataset {
            Some(ds) => write!(f, "{}:{ds}", self.path.display()),
            None => write!(f, "{}", self.path.display()),
        }
    }
}

/// An opened input and what it is.
pub struct OpenedSource {
    /// The rows of X.
    pub source: Box<dyn RowSource + Send>,
    /// The file's kind.
    pub kind: InputKind,
    /// The single-cell layout (HDF5 only).
    pub layout: Option<Layout>,
    /// The element read (for HDF5), as a path in the file.
    pub dataset: Option<String>,
    /// How it is stored.
    pub storage: crate::singlecell::Storage,
    /// The stored element type.
    pub dtype: crate::dtype::Dtype,
}

impl std::fmt::Debug for OpenedSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedSource")
            .field("kind", &self.kind)
            .field("dataset", &self.dataset)
            .field("dtype", &self.dtype)
            .finish_non_exhaustive()
    }
}

/// Opens the input named by `spec` as a row source of cells × genes.
pub fn open_source(spec: &InputSpec, opts: &OpenOptions) -> Result<OpenedSource, IoError> {
    match sniff(&spec.path)? {
        InputKind::Npy => {
            if let Some(dataset) = &spec.dataset {
                return Err(IoError::Npy {
                    path: spec.path.clone(),
                    reason: format!("a .npy file holds one array; there is no dataset '{dataset}'"),
                });
            }
            if opts.layer.is_some() || opts.raw || opts.transpose || opts.genome.is_some() {
                return Err(IoError::Npy {
                    path: spec.path.clone(),
                    reason:
                        "--layer, --raw, --transpose and --genome apply to HDF5 single-cell files"
                            .into(),
                });
            }
            let source = NpySource::open(&spec.path)?;
            let dtype = crate::dtype::Dtype::Numeric(source.header().dtype);
            Ok(OpenedSource {
                source: Box::new(source),
                kind: InputKind::Npy,
                layout: None,
                dataset: None,
                storage: crate::singlecell::Storage::DenseMapped,
                dtype,
            })
        }
        InputKind::Hdf5 => {
            let m = open_matrix(&spec.path, spec.dataset.as_deref(), opts)?;
            let element = if m.element.starts_with('/') {
                m.element
            } else {
                format!("/{}", m.element)
            };
            Ok(OpenedSource {
                source: m.source,
                kind: InputKind::Hdf5,
                layout: Some(m.layout),
                dataset: Some(element),
                storage: m.storage,
                dtype: m.dtype,
            })
        }
    }
}

/// Which factor a start file gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFactor {
    /// W, `n_rows × k`.
    W,
    /// H, `k × n_cols`.
    H,
}

impl StartFactor {
    /// Where the factor lies in each kind of result nmflow writes, in the
    /// order they are tried: the plain HDF5 result (`/W`; `/H_scaled`, or
    /// `/H` of a result written before `H_scaled` existed), then the
    /// AnnData result (`obsm/X_nmf`; `varm/NMF_H_scaled` or `varm/NMF_H`,
    /// stored genes × k). H is the one in the units the updates run in.
    fn locations(self) -> &'static [&'static str] {
        match self {
            StartFactor::W => &[names::W, names::OBSM_X_NMF],
            StartFactor::H => &[
                names::H_SCALED,
                names::H,
                names::VARM_NMF_H_SCALED,
                names::VARM_NMF_H,
            ],
        }
    }
}

/// An opened start file: its rows, what to call it, and whether it is
/// stored transposed (H as genes × k, as anndata's `varm` holds it).
struct StartFile {
    source: Box<dyn RowSource>,
    name: String,
    transposed: bool,
}

/// Opens an initial factor: a `.npy` file as it is, or an HDF5 dataset,
/// `FILE:/path` or by default the factor of a result nmflow wrote (plain
/// HDF5 or h5ad, see [`StartFactor::locations`]). A file holding none of
/// the default locations is refused, naming them. `expected` is the shape
/// the fit needs (`n_rows × k` for W, `k × n_cols` for H); a start of
/// another shape is refused before it is read.
fn open_start(
    spec: &InputSpec,
    factor: StartFactor,
    expected: (usize, usize),
) -> Result<StartFile, IoError> {
    let which = match factor {
        StartFactor::W => "W0",
        StartFactor::H => "H0",
    };
    let start = match (sniff(&spec.path)?, &spec.dataset) {
        (InputKind::Npy, _) => StartFile {
            source: Box::new(NpySource::open(&spec.path)?),
            name: "(npy array)".into(),
            transposed: false,
        },
        (InputKind::Hdf5, dataset) => {
            let dataset = match dataset {
                Some(ds) => ds.clone(),
                None => default_location(&spec.path, factor)?,
            };
            StartFile {
                source: Box::new(Hdf5Source::open(&spec.path, Some(&dataset))?),
                transposed: factor == StartFactor::H
                    && dataset
                        .trim_start_matches('/')
                        .starts_with(&format!("{}/", names::VARM)),
                name: dataset,
            }
        }
    };
    let stored = (start.source.n_rows(), start.source.n_cols());
    let found = if start.transposed {
        (stored.1, stored.0)
    } else {
        stored
    };
    if found != expected {
        return Err(IoError::malformed(
            &spec.path,
            &start.name,
            format!("{which} has shape {found:?}, expected {expected:?}"),
        ));
    }
    Ok(start)
}

/// The first of `factor`'s default locations the file holds.
fn default_location(path: &Path, factor: StartFactor) -> Result<String, IoError> {
    let file =
        hdf5::File::open(path).map_err(|e| IoError::hdf5(path, "opening the HDF5 file", e))?;
    let locations = factor.locations();
    match locations
        .iter()
        .find(|l| file.dataset(l.trim_start_matches('/')).is_ok())
    {
        Some(l) => Ok(format!("/{l}")),
        None => Err(IoError::malformed(
            path,
            "/",
            format!(
                "holds no {} (the {} of an nmflow result); name the dataset with FILE:/path",
                locations
                    .iter()
                    .map(|l| format!("/{l}"))
                    .collect::<Vec<_>>()
                    .join(" nor "),
                match factor {
                    StartFactor::W => "W",
                    StartFactor::H => "H",
                }
            ),
        )),
    }
}

/// Copies rows `rows` of `start` into `out` (rows of the same height).
fn copy_rows(
    start: &mut StartFile,
    path: &Path,
    rows: std::ops::Range<usize>,
    mut out: ndarray::ArrayViewMut2<'_, f32>,
) -> Result<(), IoError> {
    let read_error = |source| IoError::Read {
        path: path.to_path_buf(),
        what: format!("{}: reading rows {}..{}", start.name, rows.start, rows.end),
        source,
    };
    match start.source.block(rows.clone()).map_err(read_error)? {
        nmflow_core::RowBlock::Dense(view) => out.assign(&view),
        nmflow_core::RowBlock::Csr(_) => {
            return Err(IoError::malformed(
                path,
                &start.name,
                "a start factor must be a dense array",
            ));
        }
    }
    Ok(())
}

/// Reads a whole initial factor (H₀, `k × n_cols`: small) from the file
/// `spec` names: a `.npy` file as it is, or an HDF5 dataset, `FILE:/path`
/// or by default the factor of a result nmflow wrote
/// (`/W` or `obsm/X_nmf`; `/H_scaled`, `varm/NMF_H_scaled`, or `/H`,
/// `varm/NMF_H` of results written before H_scaled existed: H in the
/// column-scaled units the updates run in, stored genes × k in `varm`). A start of another shape than `expected` is refused before
/// it is read.
pub fn read_start(
    spec: &InputSpec,
    factor: StartFactor,
    expected: (usize, usize),
) -> Result<Array2<f32>, IoError> {
    let mut start = open_start(spec, factor, expected)?;
    let stored = (start.source.n_rows(), start.source.n_cols());
    let mut out = Array2::zeros(stored);
    if stored.0 > 0 {
        copy_rows(&mut start, &spec.path, 0..stored.0, out.view_mut())?;
    }
    Ok(if start.transposed {
        out.t().as_standard_layout().into_owned()
    } else {
        out
    })
}

/// Checks that the file `spec` names holds a start factor of the shape
/// `expected` (found as [`read_start`] finds it), reading none of it.
pub fn check_start(
    spec: &InputSpec,
    factor: StartFactor,
    expected: (usize, usize),
) -> Result<(), IoError> {
    open_start(spec, factor, expected).map(|_| ())
}

/// Streams an initial W (`n_rows × k`) from the file `spec` names into
/// `store`, `block_rows` rows at a time: W₀ is never whole in memory (the
/// fit checks its values as its pre-pass reads the store).
pub fn read_start_into(
    spec: &InputSpec,
    store: &mut dyn nmflow_core::FactorStore,
    block_rows: usize,
) -> Result<(), IoError> {
    let (n_rows, k) = store.shape();
    let mut start = open_start(spec, StartFactor::W, (n_rows, k))?;
    for first in (0..n_rows).step_by(block_rows.max(1)) {
        let rows = first..(first + block_rows.max(1)).min(n_rows);
        copy_rows(
            &mut start,
            &spec.path,
            rows.clone(),
            store.rows_mut(rows.clone()),
        )?;
        store.release(rows);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dataset_paths() {
        let spec = InputSpec::parse("no-such-dir/data.h5:/some/group/X");
        assert_eq!(spec.path, PathBuf::from("no-such-dir/data.h5"));
        assert_eq!(spec.dataset.as_deref(), Some("/some/group/X"));
        assert_eq!(spec.to_string(), "no-such-dir/data.h5:/some/group/X");
        let spec = InputSpec::parse("data.npy");
        assert_eq!(spec.dataset, None);
    }
}
