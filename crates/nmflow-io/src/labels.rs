//! Known groups of the rows (cell types, the generator's programs), read to
//! score clusterings: an h5ad `obs` column (categorical, string or numeric),
//! a loom column attribute, or any 1-D dataset.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use hdf5::types::TypeDescriptor;
use hdf5::{Dataset, File};

use crate::error::IoError;
use crate::singlecell::{Layout, detect};
use crate::strings::{is_string, read_string_dataset};

/// One label per row, as codes into `names`.
#[derive(Debug, Clone, PartialEq)]
pub struct Labels {
    /// Code of every row.
    pub codes: Vec<u32>,
    /// Name of every code.
    pub names: Vec<String>,
    /// Where they were read, as FILE:/path.
    pub source: String,
}

/// Reads the labels named by `spec` for an input of `n_rows` rows:
/// `FILE:/path` (a dataset or categorical group of another file), `/path`
/// (of the input file), or a bare name: the `obs` column of an h5ad, the
/// column attribute of a loom (row attribute when `transposed`), else the
/// dataset `/name`.
pub fn read_labels(
    input: &Path,
    spec: &str,
    n_rows: usize,
    transposed: bool,
) -> Result<Labels, IoError> {
    let (path, object) = match spec.split_once(":/") {
        Some((file, object)) if !file.is_empty() && Path::new(file).exists() => {
            (PathBuf::from(file), format!("/{object}"))
        }
        _ => (input.to_path_buf(), spec.to_owned()),
    };
    if !path.exists() {
        return Err(IoError::NotFound { path });
    }
    let file = File::open(&path).map_err(|e| IoError::hdf5(&path, "opening the labels", e))?;
    if !object.starts_with('/')
        && detect(&file) == Layout::H5ad
        && crate::legacy::is_compound_frame(&file, "obs")
    {
        let declared = file.dataset("obs").map(|d| d.size()).unwrap_or(0);
        if declared != n_rows {
            return Err(IoError::malformed(
                &path,
                "/obs",
                format!("has {declared} records; the matrix has {n_rows} rows"),
            ));
        }
        return legacy_obs_column(&file, &path, &object);
    }
    let object = if object.starts_with('/') {
        object
    } else {
        let parent = match detect(&file) {
            Layout::H5ad => "/obs",
            Layout::Loom if transposed => "/row_attrs",
            Layout::Loom => "/col_attrs",
            _ => "",
        };
        let candidate = format!("{parent}/{object}");
        if file.link_exists(&candidate) {
            candidate
        } else {
            let available = file
                .group(if parent.is_empty() { "/" } else { parent })
                .and_then(|g| g.member_names())
                .unwrap_or_default();
            return Err(IoError::Missing {
                path,
                what: format!(
                    "no labels '{object}' in {}",
                    if parent.is_empty() { "/" } else { parent }
                ),
                available,
            });
        }
    };
    // Every reader checks the count the file declares against `n_rows`
    // before it reads.
    read_element(&file, &path, &object, n_rows)
}

/// A column of a legacy compound `obs` (anndata < 0.7): a field of the
/// records; integer codes of a categorical take their names from
/// `uns/<column>_categories`.
fn legacy_obs_column(file: &File, path: &Path, column: &str) -> Result<Labels, IoError> {
    let err = |e| IoError::hdf5(path, format!("reading the obs column '{column}'"), e);
    let obs = file.dataset("obs").map_err(err)?;
    let fields = crate::legacy::field_names(&obs).map_err(err)?;
    if !fields.iter().any(|f| f == column) {
        return Err(IoError::Missing {
            path: path.to_path_buf(),
            what: format!("no labels '{column}' in obs"),
            available: fields,
        });
    }
    let source = format!("{}:/obs[{column}]", path.display());
    let categories = format!("uns/{column}_categories");
    let text: Vec<String> = match crate::legacy::read_field(&obs, column).map_err(err)? {
        crate::legacy::Column::Ints(codes) if file.link_exists(&categories) => {
            let ds = file.dataset(&categories).map_err(err)?;
            let names = values_as_text(&ds, path, &categories)?;
            let mut text = Vec::with_capacity(codes.len());
            for (row, &c) in codes.iter().enumerate() {
                match usize::try_from(c).ok().and_then(|c| names.get(c)) {
                    Some(name) => text.push(name.clone()),
                    None if c < 0 => text.push("NA".to_owned()),
                    None => {
                        return Err(IoError::malformed(
                            path,
                            format!("/obs[{column}]"),
                            format!(
                                "row {row} has code {c}, beyond the {} categories of {categories}",
                                names.len()
                            ),
                        ));
                    }
                }
            }
            text
        }
        crate::legacy::Column::Ints(v) => v.iter().map(i64::to_string).collect(),
        crate::legacy::Column::Floats(v) => v.iter().map(f64::to_string).collect(),
        crate::legacy::Column::Strings(v) => v,
    };
    Ok(labels_from_text(text, source))
}

/// Codes in order of first appearance.
fn labels_from_text(text: Vec<String>, source: String) -> Labels {
    let mut ids: HashMap<String, u32> = HashMap::new();
    let mut names = Vec::new();
    let codes = text
        .into_iter()
        .map(|t| {
            *ids.entry(t.clone()).or_insert_with(|| {
                names.push(t);
                (names.len() - 1) as u32
            })
        })
        .collect();
    Labels {
        codes,
        names,
        source,
    }
}

fn read_element(file: &File, path: &Path, object: &str, n_rows: usize) -> Result<Labels, IoError> {
    let source = format!("{}:{object}", path.display());
    // The count the file declares is checked before it is read (a damaged
    // dataspace may claim billions).
    let declared = |ds: &Dataset, what: &str| -> Result<(), IoError> {
        if ds.size() != n_rows {
            return Err(IoError::malformed(
                path,
                what,
                format!("has {} labels; the matrix has {n_rows} rows", ds.size()),
            ));
        }
        Ok(())
    };
    if let Ok(group) = file.group(object) {
        // anndata categorical: codes into categories, −1 for missing.
        let (Ok(codes), Ok(categories)) = (group.dataset("codes"), group.dataset("categories"))
        else {
            return Err(IoError::Unsupported {
                path: path.to_path_buf(),
                object: object.to_owned(),
                reason: "a group without codes and categories is not a label column".into(),
            });
        };
        declared(&codes, &format!("{object}/codes"))?;
        if categories.size() > n_rows.max(1) {
            return Err(IoError::malformed(
                path,
                format!("{object}/categories"),
                format!(
                    "declares {} categories for {n_rows} rows",
                    categories.size()
                ),
            ));
        }
        let mut names = values_as_text(&categories, path, &format!("{object}/categories"))?;
        let raw: Vec<i64> = codes
            .read_raw::<i64>()
            .map_err(|e| IoError::hdf5(path, format!("reading {object}/codes"), e))?;
        let mut missing = None;
        let mut out = Vec::with_capacity(raw.len());
        for (row, &c) in raw.iter().enumerate() {
            if c < 0 {
                let code = *missing.get_or_insert_with(|| {
                    names.push("NA".to_owned());
                    names.len() - 1
                });
                out.push(code as u32);
            } else if (c as usize) < names.len() {
                out.push(c as u32);
            } else {
                return Err(IoError::malformed(
                    path,
                    format!("{object}/codes"),
                    format!(
                        "row {row} has code {c}, beyond the {} categories",
                        names.len()
                    ),
                ));
            }
        }
        return Ok(Labels {
            codes: out,
            names,
            source,
        });
    }
    let ds = file
        .dataset(object)
        .map_err(|e| IoError::hdf5(path, format!("opening {object}"), e))?;
    if ds.ndim() != 1 {
        return Err(IoError::malformed(
            path,
            object,
            format!("has shape {:?}; labels need one value per row", ds.shape()),
        ));
    }
    declared(&ds, object)?;
    let text = values_as_text(&ds, path, object)?;
    Ok(labels_from_text(text, source))
}

/// The values of a 1-D dataset as text (strings as they are, numbers
/// printed), so that every kind of label column is compared by value.
fn values_as_text(ds: &Dataset, path: &Path, object: &str) -> Result<Vec<String>, IoError> {
    let err = |e| IoError::hdf5(path, format!("reading {object}"), e);
    if is_string(ds) {
        return read_string_dataset(ds).map_err(err);
    }
    match ds.dtype().and_then(|t| t.to_descriptor()).map_err(err)? {
        TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_) | TypeDescriptor::Boolean => {
            Ok(ds
                .read_raw::<i64>()
                .map_err(err)?
                .into_iter()
                .map(|v| v.to_string())
                .collect())
        }
        TypeDescriptor::Float(_) => Ok(ds
            .read_raw::<f64>()
            .map_err(err)?
            .into_iter()
            .map(|v| v.to_string())
            .collect()),
        other => Err(IoError::Unsupported {
            path: path.to_path_buf(),
            object: object.to_owned(),
            reason: format!("labels of type {other} cannot be read"),
        }),
    }
}
