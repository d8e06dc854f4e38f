//! HDF5 datasets as row sources.
//!
//! A 2-D dataset of any integer or float type, contiguous or chunked, with
//! any filter the library (and the built-in LZF filter) can decode, is read
//! as row hyperslabs converted to f32 by the library. The preferred block
//! height is the dataset's chunk height, so that each chunk is decoded once
//! per pass.

use std::ops::Range;
use std::path::{Path, PathBuf};

use hdf5::Dataset;
use ndarray::{Array2, s};
use nmflow_core::{RowBlock, RowSource, SourceError};

use crate::catalog::{DatasetInfo, describe, list_matrices};
use crate::error::IoError;

/// The dataset nmflow factorizes when a file holds several and none is named.
pub(crate) const DEFAULT_DATASET: &str = "/X";

/// A 2-D numeric HDF5 dataset read in row blocks.
#[derive(Debug)]
pub(crate) struct Hdf5Source {
    path: PathBuf,
    /// Open while passes read it; closed (with the file and the library's
    /// caches) between them, and opened again by the next read.
    dataset: Option<Dataset>,
    info: DatasetInfo,
    buf: Array2<f32>,
}

impl Hdf5Source {
    /// Opens `dataset` of the file at `path`, or, when `dataset` is `None`,
    /// `/X` if it exists, else the only 2-D numeric dataset of the file.
    pub(crate) fn open(path: &Path, dataset: Option<&str>) -> Result<Self, IoError> {
        let ds = open_matrix_dataset(path, dataset)?;
        let info = describe(&ds);
        Ok(Self {
            path: path.to_path_buf(),
            dataset: Some(ds),
            info,
            buf: Array2::zeros((0, 0)),
        })
    }

    /// What the dataset is.
    pub(crate) fn info(&self) -> &DatasetInfo {
        &self.info
    }
}

/// Opens and checks the dataset to factorize.
pub(crate) fn open_matrix_dataset(path: &Path, dataset: Option<&str>) -> Result<Dataset, IoError> {
    let file =
        hdf5::File::open(path).map_err(|e| IoError::hdf5(path, "opening the HDF5 file", e))?;
    let name = match dataset {
        Some(name) => name.to_owned(),
        None if file.link_exists(DEFAULT_DATASET.trim_start_matches('/')) => {
            DEFAULT_DATASET.to_owned()
        }
        None => {
            let matrices = list_matrices(path)?;
            match matrices.as_slice() {
                [only] => only.path.clone(),
                _ => {
                    return Err(IoError::AmbiguousDataset {
                        path: path.to_path_buf(),
                        available: matrices.into_iter().map(|m| m.path).collect(),
                    });
                }
            }
        }
    };
    let ds = match file.dataset(&name) {
        Ok(ds) => ds,
        Err(_) => {
            return Err(IoError::DatasetNotFound {
                path: path.to_path_buf(),
                dataset: name,
                available: list_matrices(path)?.into_iter().map(|m| m.path).collect(),
            });
        }
    };
    let info = describe(&ds);
    if !info.dtype.is_numeric() {
        return Err(IoError::NotNumeric {
            path: path.to_path_buf(),
            dataset: info.path,
            dtype: info.dtype.to_string(),
        });
    }
    if info.shape.len() != 2 {
        return Err(IoError::NotMatrix {
            path: path.to_path_buf(),
            dataset: info.path,
            shape: info.shape,
        });
    }
    Ok(ds)
}

impl RowSource for Hdf5Source {
    fn n_rows(&self) -> usize {
        self.info.shape[0]
    }

    fn n_cols(&self) -> usize {
        self.info.shape[1]
    }

    fn preferred_block_rows(&self) -> Option<usize> {
        self.info.chunk.as_ref().and_then(|c| c.first().copied())
    }

    fn done_reading(&mut self) {
        self.buf = Array2::zeros((0, 0));
        self.dataset = None;
    }

    fn block(&mut self, rows: Range<usize>) -> Result<RowBlock<'_>, SourceError> {
        let (start, end) = (rows.start, rows.end);
        let dataset = match self.dataset.take() {
            Some(ds) => ds,
            None => open_matrix_dataset(&self.path, Some(&self.info.path))?,
        };
        let dataset = self.dataset.insert(dataset);
        self.buf = dataset
            .read_slice_2d::<f32, _>(s![start..end, ..])
            .map_err(|e| {
                IoError::hdf5(
                    &self.path,
                    format!("reading dataset '{}'", self.info.path),
                    e,
                )
            })?;
        Ok(RowBlock::Dense(self.buf.view()))
    }
}
