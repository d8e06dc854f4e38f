//! What an HDF5 file holds that nmflow can factorize.

use std::path::Path;

use hdf5::{Dataset, Group};

use crate::dtype::Dtype;
use crate::error::IoError;

/// One dataset of an HDF5 file.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetInfo {
    /// Absolute path inside the file.
    pub path: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Element type.
    pub dtype: Dtype,
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
        self.dtype.is_numeric() && self.shape.len() == 2
    }
}

/// Describes one dataset.
pub(crate) fn describe(ds: &Dataset) -> DatasetInfo {
    let descriptor = ds.dtype().and_then(|t| t.to_descriptor());
    let dtype = Dtype::of_hdf5(&descriptor);
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

/// Reads the whole structure of an HDF5 file: every group and dataset,
/// and every string attribute's value (where damaged metadata shows). The
/// command line runs this under a time limit before anything else reads
/// the file, since the HDF5 library can loop for ever on some damage.
/// Other files pass.
pub fn probe(path: &Path) -> Result<(), IoError> {
    if crate::kind::sniff(path)? != crate::kind::InputKind::Hdf5 {
        return Ok(());
    }
    let file =
        hdf5::File::open(path).map_err(|e| IoError::hdf5(path, "opening the HDF5 file", e))?;
    probe_group(&file, path, 0)
}

/// Groups deeper than this are not probed (no single-cell layout nests so).
const PROBE_DEPTH: usize = 16;

fn probe_group(group: &Group, path: &Path, depth: usize) -> Result<(), IoError> {
    probe_attrs(group, path)?;
    if depth >= PROBE_DEPTH {
        return Ok(());
    }
    let what = || format!("listing the group '{}'", group.name());
    for ds in group
        .datasets()
        .map_err(|e| IoError::hdf5(path, what(), e))?
    {
        let _ = describe(&ds);
        probe_attrs(&ds, path)?;
    }
    for child in group.groups().map_err(|e| IoError::hdf5(path, what(), e))? {
        probe_group(&child, path, depth + 1)?;
    }
    Ok(())
}

fn probe_attrs(loc: &hdf5::Location, path: &Path) -> Result<(), IoError> {
    let names = loc.attr_names().map_err(|e| {
        IoError::hdf5(
            path,
            format!("listing the attributes of '{}'", loc.name()),
            e,
        )
    })?;
    for name in names {
        if let Ok(attr) = loc.attr(&name)
            && crate::strings::is_string(&attr)
        {
            let _ = crate::strings::read_string_attr(&attr);
        }
    }
    Ok(())
}

/// The datasets of the file at `path` that nmflow can factorize.
pub(crate) fn list_matrices(path: &Path) -> Result<Vec<DatasetInfo>, IoError> {
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

/// A sparse matrix group of a file (anndata `csr_matrix` / `csc_matrix`,
/// or a 10x matrix group), with its shape as rows × columns of the
/// factorization (cells × genes).
#[derive(Debug, Clone, PartialEq)]
pub struct SparseInfo {
    /// Absolute path of the group.
    pub path: String,
    /// `csr_matrix`, `csc_matrix` or `10x`.
    pub encoding: String,
    /// Rows × columns as nmflow factorizes them.
    pub shape: [usize; 2],
    /// Stored entries.
    pub nnz: usize,
    /// Type of the stored values.
    pub dtype: Dtype,
    /// Filters of the `data` dataset.
    pub filters: Vec<String>,
    /// Bytes of `data`, `indices` and `indptr` in the file.
    pub storage_bytes: u64,
}

/// Every sparse matrix group of the file at `path`.
pub fn list_sparse(path: &Path) -> Result<Vec<SparseInfo>, IoError> {
    let file =
        hdf5::File::open(path).map_err(|e| IoError::hdf5(path, "opening the HDF5 file", e))?;
    let mut out = Vec::new();
    walk_sparse(&file, &mut out);
    Ok(out)
}

fn walk_sparse(group: &Group, out: &mut Vec<SparseInfo>) {
    if let Some(info) = sparse_info(group) {
        out.push(info);
        return;
    }
    let mut groups = group.groups().unwrap_or_default();
    groups.sort_by_key(|g| g.name());
    for child in &groups {
        walk_sparse(child, out);
    }
}

fn sparse_info(group: &Group) -> Option<SparseInfo> {
    let data = group.dataset("data").ok()?;
    let indptr = group.dataset("indptr").ok()?;
    let storage_bytes = data.storage_size()
        + indptr.storage_size()
        + group
            .dataset("indices")
            .map(|d| d.storage_size())
            .unwrap_or(0);
    let described = describe(&data);
    let encoding = crate::strings::string_attr(group, "encoding-type").or_else(|| {
        crate::strings::string_attr(group, "h5sparse_format").map(|f| format!("{f}_matrix"))
    });
    let shape = match encoding.as_deref() {
        Some("csr_matrix" | "csc_matrix") => {
            let s: Vec<i64> = group
                .attr("shape")
                .or_else(|_| group.attr("h5sparse_shape"))
                .ok()?
                .read_raw()
                .ok()?;
            [
                usize::try_from(*s.first()?).ok()?,
                usize::try_from(*s.get(1)?).ok()?,
            ]
        }
        _ => {
            let s: Vec<i64> = group.dataset("shape").ok()?.read_raw().ok()?;
            // 10x: genes × barcodes stored; cells × genes factorized.
            [
                usize::try_from(*s.get(1)?).ok()?,
                usize::try_from(*s.first()?).ok()?,
            ]
        }
    };
    Some(SparseInfo {
        path: group.name(),
        encoding: encoding.unwrap_or_else(|| "10x".into()),
        shape,
        nnz: data.size(),
        dtype: described.dtype,
        filters: described.filters,
        storage_bytes,
    })
}
