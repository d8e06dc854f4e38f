//! What an HDF5 file holds that nmflow can factorize.

use std::path::Path;

use hdf5::types::TypeDescriptor;
use hdf5::{Dataset, Group};

use crate::error::IoError;

/// One dataset of an HDF5 file.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetInfo {
    /// Absolute path inside the file.
    pub path: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Element type, e.g. `float32`, or the HDF5 description.
    pub dtype: String,
    /// Whether the element type is an integer or float.
    pub numeric: bool,
    /// Chunk shape, when chunked.
    pub chunk: Option<Vec<usize>>,
    /// Filters, e.g. `deflate(4)`, `shuffle`, `lzf`.
    pub filters: Vec<String>,
    /// Bytes the dataset occupies in the file.
    pub storage_bytes: u64,
}

impl DatasetInfo {
    /// A 2-D numeric dataset, which nmflow can factorize.
    pub fn is_matrix(&self) -> bool {
        self.numeric && self.shape.len() == 2
    }

    /// Bytes per element of the stored type, when numeric.
    pub fn element_bytes(&self) -> Option<usize> {
        let digits: String = self.dtype.chars().filter(char::is_ascii_digit).collect();
        let bits: usize = digits.parse().ok()?;
        self.numeric.then_some(bits / 8)
    }
}

/// Whether `descriptor` is a type nmflow reads as numbers.
pub(crate) fn is_numeric(descriptor: &TypeDescriptor) -> bool {
    matches!(
        descriptor,
        TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_) | TypeDescriptor::Float(_)
    )
}

/// Describes one dataset.
pub(crate) fn describe(ds: &Dataset) -> DatasetInfo {
    let descriptor = ds.dtype().and_then(|t| t.to_descriptor());
    let (dtype, numeric) = match &descriptor {
        Ok(d) => (d.to_string(), is_numeric(d)),
        Err(_) => ("unsupported type".to_owned(), false),
    };
    let filters = ds
        .filters()
        .iter()
        .map(|f| match f {
            hdf5::filters::Filter::Deflate(level) => format!("gzip({level})"),
            hdf5::filters::Filter::Shuffle => "shuffle".to_owned(),
            hdf5::filters::Filter::Fletcher32 => "fletcher32".to_owned(),
            hdf5::filters::Filter::LZF => "lzf".to_owned(),
            other => format!("filter {}", other.id()),
        })
        .collect();
    DatasetInfo {
        path: ds.name(),
        shape: ds.shape(),
        dtype,
        numeric,
        chunk: ds.chunk(),
        filters,
        storage_bytes: ds.storage_size(),
    }
}

/// Every dataset of the file at `path`, depth first in name order.
pub fn list_datasets(path: &Path) -> Result<Vec<DatasetInfo>, IoError> {
    let file =
        hdf5::File::open(path).map_err(|e| IoError::hdf5(path, "opening the HDF5 file", e))?;
    let mut out = Vec::new();
    walk(&file, path, &mut out)?;
    Ok(out)
}

/// The datasets of the file at `path` that nmflow can factorize.
pub fn list_matrices(path: &Path) -> Result<Vec<DatasetInfo>, IoError> {
    Ok(list_datasets(path)?
        .into_iter()
        .filter(DatasetInfo::is_matrix)
        .collect())
}

fn walk(group: &Group, path: &Path, out: &mut Vec<DatasetInfo>) -> Result<(), IoError> {
    let what = || format!("listing the group '{}'", group.name());
    let mut datasets = group
        .datasets()
        .map_err(|e| IoError::hdf5(path, what(), e))?;
    datasets.sort_by_key(|d| d.name());
    out.extend(datasets.iter().map(describe));
    let mut groups = group.groups().map_err(|e| IoError::hdf5(path, what(), e))?;
    groups.sort_by_key(|g| g.name());
    for child in &groups {
        walk(child, path, out)?;
    }
    Ok(())
}
