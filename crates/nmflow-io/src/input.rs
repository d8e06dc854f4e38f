//! Naming and opening inputs: `FILE`, `FILE:/dataset/path`, `.npy` files.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use ndarray::Array2;
use nmflow_core::RowSource;

use crate::error::IoError;
use crate::hdf5_source::Hdf5Source;
use crate::names;
use crate::npy::NpySource;
use crate::singlecell::{Layout, OpenOptions, open_matrix};

const HDF5_MAGIC: &[u8] = b"\x89HDF\r\n\x1a\n";
const NPY_MAGIC: &[u8] = b"\x93NUMPY";

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
        if !Path::new(text).exists() {
            if let Some((file, dataset)) = text.split_once(":/") {
                return Self {
                    path: PathBuf::from(file),
                    dataset: Some(format!("/{dataset}")),
                };
            }
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

/// The kind of file an input is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// HDF5 (any userblock size up to 2 KiB).
    Hdf5,
    /// NumPy `.npy`.
    Npy,
}

/// Tells the kind of the file at `path` from its first bytes.
pub fn sniff(path: &Path) -> Result<InputKind, IoError> {
    let mut file = File::open(path).map_err(|e| IoError::os(path, e))?;
    if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
        return Err(IoError::IsDirectory {
            path: path.to_path_buf(),
        });
    }
    let mut head = Vec::with_capacity(2056);
    file.by_ref()
        .take(2056)
        .read_to_end(&mut head)
        .map_err(|e| IoError::os(path, e))?;
    if head.starts_with(NPY_MAGIC) {
        return Ok(InputKind::Npy);
    }
    for offset in [0usize, 512, 1024, 2048] {
        if head.get(offset..offset + HDF5_MAGIC.len()) == Some(HDF5_MAGIC) {
            return Ok(InputKind::Hdf5);
        }
    }
    Err(IoError::UnknownFormat {
        path: path.to_path_buf(),
    })
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
    /// How it is stored (`dense`, `csr`, ...).
    pub storage: String,
    /// The stored element type, e.g. `float32`.
    pub dtype: String,
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
            let dtype = source.header().dtype.name();
            Ok(OpenedSource {
                source: Box::new(source),
                kind: InputKind::Npy,
                layout: None,
                dataset: None,
                storage: "dense".into(),
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

/// Reads a whole `.npy` file into memory (for small matrices: starts).
fn read_npy(path: &Path) -> Result<Array2<f32>, IoError> {
    let mut source = NpySource::open(path)?;
    let n_rows = source.n_rows();
    let n_cols = source.n_cols();
    let mut out = Array2::zeros((n_rows, n_cols));
    if n_rows > 0 {
        let block = source.block(0..n_rows).map_err(|e| IoError::Npy {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        match block {
            nmflow_core::RowBlock::Dense(view) => out.assign(&view),
            _ => {
                return Err(IoError::Npy {
                    path: path.to_path_buf(),
                    reason: "not a dense array".into(),
                });
            }
        }
    }
    Ok(out)
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
    /// order they are tried: the plain HDF5 result (`/W`, `/H`), then the
    /// AnnData result (`obsm/X_nmf`, `varm/NMF_H`, stored genes × k).
    fn locations(self) -> [&'static str; 2] {
        match self {
            StartFactor::W => [names::W, names::OBSM_X_NMF],
            StartFactor::H => [names::H, names::VARM_NMF_H],
        }
    }
}

/// Reads an initial factor: a `.npy` file as it is, or an HDF5 dataset,
/// `FILE:/path` or by default the factor of a result nmflow wrote (plain
/// HDF5 or h5ad, see [`StartFactor::locations`]). H stored genes × k, as
/// anndata's `varm` holds it, is transposed to `k × n_cols`. A file holding
/// none of the default locations is refused, naming them.
/// `expected` is the shape the fit needs (`n_rows × k` for W, `k × n_cols`
/// for H); an HDF5 dataset of another shape is refused before it is read.
pub fn read_start(
    spec: &InputSpec,
    factor: StartFactor,
    expected: (usize, usize),
) -> Result<Array2<f32>, IoError> {
    let dataset = match (sniff(&spec.path)?, &spec.dataset) {
        (InputKind::Npy, _) => return read_npy(&spec.path),
        (InputKind::Hdf5, Some(ds)) => ds.clone(),
        (InputKind::Hdf5, None) => {
            let file = hdf5::File::open(&spec.path)
                .map_err(|e| IoError::hdf5(&spec.path, "opening the HDF5 file", e))?;
            let locations = factor.locations();
            let found = locations
                .iter()
                .find(|l| file.dataset(l.trim_start_matches('/')).is_ok());
            match found {
                Some(l) => format!("/{l}"),
                None => {
                    return Err(IoError::malformed(
                        &spec.path,
                        "/",
                        format!(
                            "holds no {} (the {} of an nmflow result); name the dataset with \
                             FILE:/path",
                            locations.map(|l| format!("/{l}")).join(" nor "),
                            match factor {
                                StartFactor::W => "W",
                                StartFactor::H => "H",
                            }
                        ),
                    ));
                }
            }
        }
    };
    let source = Hdf5Source::open(&spec.path, Some(&dataset))?;
    let genes_by_k = factor == StartFactor::H
        && dataset
            .trim_start_matches('/')
            .starts_with(&format!("{}/", names::VARM));
    let stored = (source.n_rows(), source.n_cols());
    let found = if genes_by_k {
        (stored.1, stored.0)
    } else {
        stored
    };
    if found != expected {
        let which = match factor {
            StartFactor::W => "W0",
            StartFactor::H => "H0",
        };
        return Err(IoError::malformed(
            &spec.path,
            &dataset,
            format!("{which} has shape {found:?}, expected {expected:?}"),
        ));
    }
    let x = source.read_all()?;
    Ok(if genes_by_k {
        x.t().as_standard_layout().into_owned()
    } else {
        x
    })
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
