//! Sparse matrices stored as three HDF5 datasets (`data`, `indices`,
//! `indptr`), compressed by row: anndata's `csr_matrix` and Cell Ranger's
//! feature-barcode matrices (which are CSC genes × cells, i.e. CSR cells ×
//! genes).
//!
//! `indptr` (one u64 per row, plus one) is read whole and checked when the
//! source is opened; `data` and `indices` are read by row range, converted
//! (any integer or float width) and checked block by block, so that a bad
//! column index is reported with its row. Indices need not be sorted.

use std::ops::Range;
use std::path::{Path, PathBuf};

use hdf5::Dataset;
use hdf5::types::TypeDescriptor;
use ndarray::s;
use nmflow_core::{CsrBlock, RowBlock, RowSource, SourceError};

use crate::error::IoError;

/// Stored entries a block aims for.
pub const BLOCK_NNZ: usize = 1 << 22;

/// A CSR matrix in an HDF5 group.
#[derive(Debug)]
pub struct Hdf5CsrSource {
    path: PathBuf,
    group: String,
    data: Dataset,
    indices: Dataset,
    indptr: Vec<u64>,
    n_rows: usize,
    n_cols_stored: usize,
    col_map: Option<Vec<u32>>,
    n_cols: usize,
    dtype: String,
    block_indptr: Vec<usize>,
    block_indices: Vec<u32>,
    block_data: Vec<f32>,
}

/// Opens dataset `name` of `group`, naming the file and group on failure.
pub(crate) fn child(path: &Path, group: &hdf5::Group, name: &str) -> Result<Dataset, IoError> {
    group.dataset(name).map_err(|_| {
        IoError::malformed(
            path,
            group.name(),
            format!("the sparse matrix has no '{name}' dataset"),
        )
    })
}

fn check_integer(path: &Path, ds: &Dataset, what: &str) -> Result<(), IoError> {
    match ds.dtype().and_then(|t| t.to_descriptor()) {
        Ok(TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_)) => Ok(()),
        Ok(other) => Err(IoError::Unsupported {
            path: path.to_path_buf(),
            object: ds.name(),
            reason: format!("{what} must be integers, found {other}"),
        }),
        Err(e) => Err(IoError::hdf5(
            path,
            format!("reading the type of '{}'", ds.name()),
            e,
        )),
    }
}

impl Hdf5CsrSource {
    /// Opens the CSR matrix of `group` (`n_rows × n_cols_stored`, rows compressed).
    /// `col_map`, when given, renumbers columns (`u32::MAX` drops one) into
    /// `n_cols` columns.
    pub fn open(
        path: &Path,
        group: &hdf5::Group,
        (n_rows, n_cols_stored): (usize, usize),
        col_map: Option<(Vec<u32>, usize)>,
    ) -> Result<Self, IoError> {
        let name = group.name();
        let data = child(path, group, "data")?;
        let indices = child(path, group, "indices")?;
        let indptr_ds = child(path, group, "indptr")?;
        let dtype = match data.dtype().and_then(|t| t.to_descriptor()) {
            Ok(
                d @ (TypeDescriptor::Integer(_)
                | TypeDescriptor::Unsigned(_)
                | TypeDescriptor::Float(_)),
            ) => d.to_string(),
            Ok(other) => {
                return Err(IoError::Unsupported {
                    path: path.to_path_buf(),
                    object: data.name(),
                    reason: format!("unsupported data type {other} (numbers are needed)"),
                });
            }
            Err(e) => {
                return Err(IoError::hdf5(
                    path,
                    format!("reading the type of '{}'", data.name()),
                    e,
                ));
            }
        };
        check_integer(path, &indices, "indices")?;
        check_integer(path, &indptr_ds, "indptr")?;
        let nnz = data.size();
        if indices.size() != nnz {
            return Err(IoError::malformed(
                path,
                &name,
                format!("data has {nnz} entries but indices has {}", indices.size()),
            ));
        }
        let raw: Vec<i64> = indptr_ds
            .read_raw::<i64>()
            .map_err(|e| IoError::hdf5(path, format!("reading '{}'", indptr_ds.name()), e))?;
        if raw.len() != n_rows + 1 {
            return Err(IoError::malformed(
                path,
                &name,
                format!(
                    "indptr has {} entries; the shape ({n_rows} rows) needs {}",
                    raw.len(),
                    n_rows + 1
                ),
            ));
        }
        if raw[0] != 0 {
            return Err(IoError::malformed(
                path,
                &name,
                format!("indptr starts at {}, not 0", raw[0]),
            ));
        }
        for (row, pair) in raw.windows(2).enumerate() {
            if pair[1] < pair[0] {
                return Err(IoError::malformed(
                    path,
                    &name,
                    format!(
                        "indptr is not monotone: it falls from {} to {} at row {row}",
                        pair[0], pair[1]
                    ),
                ));
            }
        }
        let last = raw[n_rows];
        if last as u64 != nnz as u64 {
            return Err(IoError::malformed(
                path,
                &name,
                format!("indptr ends at {last} but data holds {nnz} entries"),
            ));
        }
        let (col_map, n_cols) = match col_map {
            Some((map, n)) => (Some(map), n),
            None => (None, n_cols_stored),
        };
        Ok(Self {
            path: path.to_path_buf(),
            group: name,
            data,
            indices,
            indptr: raw.into_iter().map(|v| v as u64).collect(),
            n_rows,
            n_cols_stored,
            col_map,
            n_cols,
            dtype,
            block_indptr: Vec::new(),
            block_indices: Vec::new(),
            block_data: Vec::new(),
        })
    }

    /// Stored entries.
    pub fn nnz(&self) -> u64 {
        self.indptr.last().copied().unwrap_or(0)
    }

    /// The stored data type.
    pub fn dtype(&self) -> &str {
        &self.dtype
    }

    fn read_rows(&mut self, rows: Range<usize>) -> Result<(), IoError> {
        let (a, b) = (
            self.indptr[rows.start] as usize,
            self.indptr[rows.end] as usize,
        );
        let what = |ds: &Dataset| format!("reading '{}'", ds.name());
        let (data, indices) = if a == b {
            (Vec::new(), Vec::new())
        } else {
            let data = self
                .data
                .read_slice_1d::<f32, _>(s![a..b])
                .map_err(|e| IoError::hdf5(&self.path, what(&self.data), e))?;
            let indices = self
                .indices
                .read_slice_1d::<i64, _>(s![a..b])
                .map_err(|e| IoError::hdf5(&self.path, what(&self.indices), e))?;
            (
                data.into_raw_vec_and_offset().0,
                indices.into_raw_vec_and_offset().0,
            )
        };
        self.block_indptr.clear();
        self.block_indices.clear();
        self.block_data.clear();
        self.block_indptr.push(0);
        for row in rows.clone() {
            let start = self.indptr[row] as usize - a;
            let end = self.indptr[row + 1] as usize - a;
            for (&col, &value) in indices[start..end].iter().zip(&data[start..end]) {
                if col < 0 || col as u64 >= self.n_cols_stored as u64 {
                    return Err(IoError::malformed(
                        &self.path,
                        &self.group,
                        format!(
                            "column index {col} out of range in row {row} (the matrix has {} columns)",
                            self.n_cols_stored
                        ),
                    ));
                }
                let col = match &self.col_map {
                    Some(map) => match map[col as usize] {
                        u32::MAX => continue,
                        mapped => mapped,
                    },
                    None => col as u32,
                };
                self.block_indices.push(col);
                self.block_data.push(value);
            }
            self.block_indptr.push(self.block_data.len());
        }
        Ok(())
    }
}

impl RowSource for Hdf5CsrSource {
    fn n_rows(&self) -> usize {
        self.n_rows
    }

    fn n_cols(&self) -> usize {
        self.n_cols
    }

    fn preferred_block_rows(&self) -> Option<usize> {
        let per_row = (self.nnz() as usize / self.n_rows.max(1)).max(1);
        Some((BLOCK_NNZ / per_row).max(64).min(self.n_rows.max(1)))
    }

    fn block(&mut self, rows: Range<usize>) -> Result<RowBlock<'_>, SourceError> {
        self.read_rows(rows)?;
        Ok(RowBlock::Csr(CsrBlock {
            indptr: &self.block_indptr,
            indices: &self.block_indices,
            data: &self.block_data,
            n_cols: self.n_cols,
        }))
    }
}
