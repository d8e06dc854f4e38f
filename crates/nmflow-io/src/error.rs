//! The errors of reading inputs and writing results.

use std::path::PathBuf;

/// Why an input could not be read or a result not written.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// The input path does not exist.
    #[error("{}: no such file", path.display())]
    NotFound {
        /// The path given.
        path: PathBuf,
    },
    /// An operating-system error on a file.
    #[error("{}", path.display())]
    Os {
        /// The file.
        path: PathBuf,
        /// What the system reported.
        #[source]
        source: std::io::Error,
    },
    /// The file is neither HDF5 nor `.npy`.
    #[error("{}: not an HDF5 file or a .npy file", path.display())]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// A directory where a file is expected.
    #[error("{}: is a directory, not a file (give an h5ad, 10x .h5, loom, HDF5 or .npy file)", path.display())]
    IsDirectory {
        /// The directory.
        path: PathBuf,
    },
    /// The HDF5 library reported an error.
    #[error("{}: {what}", path.display())]
    Hdf5 {
        /// The file.
        path: PathBuf,
        /// What was being done, naming the dataset where there is one.
        what: String,
        /// What the library reported.
        #[source]
        source: hdf5::Error,
    },
    /// The dataset path does not exist in the file.
    #[error("{}: no dataset '{dataset}'; datasets that can be factorized: {}", path.display(), list(available))]
    DatasetNotFound {
        /// The file.
        path: PathBuf,
        /// The dataset asked for.
        dataset: String,
        /// The 2-D numeric datasets of the file.
        available: Vec<String>,
    },
    /// No dataset was named and the file has no single obvious matrix.
    #[error("{}: name the dataset to factorize as FILE:/path; datasets that can be factorized: {}", path.display(), list(available))]
    AmbiguousDataset {
        /// The file.
        path: PathBuf,
        /// The 2-D numeric datasets of the file.
        available: Vec<String>,
    },
    /// The dataset does not hold numbers.
    #[error("{}: dataset '{dataset}' has type {dtype}, not a numeric type", path.display())]
    NotNumeric {
        /// The file.
        path: PathBuf,
        /// The dataset.
        dataset: String,
        /// Its type.
        dtype: String,
    },
    /// The dataset is not two-dimensional.
    #[error("{}: dataset '{dataset}' has shape {shape:?}; a matrix (2-D) is needed", path.display())]
    NotMatrix {
        /// The file.
        path: PathBuf,
        /// The dataset.
        dataset: String,
        /// Its shape.
        shape: Vec<usize>,
    },
    /// A `.npy` file that cannot be used.
    #[error("{}: {reason}", path.display())]
    Npy {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Reading rows of a matrix failed.
    #[error("{}: {what}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What was being read, naming the dataset and rows.
        what: String,
        /// Why.
        #[source]
        source: nmflow_core::SourceError,
    },
    /// A sparse matrix or a single-cell file whose content is inconsistent.
    #[error("{}: {object}: {reason}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The group or dataset at fault.
        object: String,
        /// What is wrong.
        reason: String,
    },
    /// The file holds something nmflow cannot read.
    #[error("{}: {object}: {reason}", path.display())]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// The group or dataset at fault.
        object: String,
        /// What is not supported.
        reason: String,
    },
    /// An element the user asked for (a layer, raw/X, X, a genome) is absent.
    #[error("{}: {what}; available: {}", path.display(), list(available))]
    Missing {
        /// The file.
        path: PathBuf,
        /// What is missing.
        what: String,
        /// What there is instead.
        available: Vec<String>,
    },
    /// The output file exists and overwriting was not asked for.
    #[error("{}: the output file exists (use --force to replace it)", path.display())]
    OutputExists {
        /// The output path.
        path: PathBuf,
    },
    /// The output names the input file (by identity: the same file under
    /// another name or a hard link counts too).
    #[error(
        "{}: this output is the input file {}; nmflow never replaces its input \
         (choose another output name)",
        output.display(), input.display()
    )]
    OutputIsInput {
        /// The output path.
        output: PathBuf,
        /// The input path.
        input: PathBuf,
    },
    /// A file the user marked read-only.
    #[error(
        "{}: the file is read-only (mode {mode:o}); nmflow does not write into a file its owner \
         marked read-only: write a new file with -o result.h5ad, or make it writable first",
        path.display()
    )]
    ReadOnly {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

impl IoError {
    pub(crate) fn hdf5(
        path: &std::path::Path,
        what: impl Into<String>,
        source: hdf5::Error,
    ) -> Self {
        IoError::Hdf5 {
            path: path.to_path_buf(),
            what: what.into(),
            source,
        }
    }

    pub(crate) fn malformed(
        path: &std::path::Path,
        object: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        IoError::Malformed {
            path: path.to_path_buf(),
            object: object.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn os(path: &std::path::Path, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            IoError::NotFound {
                path: path.to_path_buf(),
            }
        } else {
            IoError::Os {
                path: path.to_path_buf(),
                source,
            }
        }
    }
}
