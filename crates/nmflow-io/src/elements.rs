//! anndata's on-disk elements (encoding 0.1.0/0.2.0, readable by anndata
//! ≥ 0.8), written with the HDF5 library: string attributes, encodings,
//! dicts, string arrays, dense arrays and dataframes. Used by the h5ad
//! writer, the plain HDF5 result (its column names), checkpoints and the
//! synthetic data sets.

use hdf5::types::VarLenUnicode;
use hdf5::{Group, H5Type, Location};
use ndarray::ArrayView2;

/// `text` as an HDF5 variable-length UTF-8 string.
pub(crate) fn unicode(text: &str) -> hdf5::Result<VarLenUnicode> {
    text.parse::<VarLenUnicode>()
        .map_err(|e| hdf5::Error::from(format!("string {text:?}: {e}")))
}

/// anndata element writer.
pub(crate) fn set_str_attr(loc: &Location, name: &str, value: &str) -> hdf5::Result<()> {
    if loc.attr(name).is_ok() {
        loc.delete_attr(name)?;
    }
    loc.new_attr::<VarLenUnicode>()
        .create(name)?
        .write_scalar(&unicode(value)?)
}

/// anndata element writer.
pub fn set_encoding(loc: &Location, kind: &str, version: &str) -> hdf5::Result<()> {
    set_str_attr(loc, "encoding-type", kind)?;
    set_str_attr(loc, "encoding-version", version)
}

/// anndata element writer.
pub fn set_str_array_attr(loc: &Location, name: &str, values: &[String]) -> hdf5::Result<()> {
    if loc.attr(name).is_ok() {
        loc.delete_attr(name)?;
    }
    if values.is_empty() {
        // h5py cannot type an empty list: anndata writes an empty float64 array.
        return loc.new_attr::<f64>().shape(0).create(name).map(|_| ());
    }
    let values: Vec<VarLenUnicode> = values
        .iter()
        .map(|v| unicode(v))
        .collect::<hdf5::Result<_>>()?;
    loc.new_attr::<VarLenUnicode>()
        .shape(values.len())
        .create(name)?
        .write(&values)
}

/// Removes `name` from `group` when it exists (elements are replaced).
pub(crate) fn replace(group: &Group, name: &str) -> hdf5::Result<()> {
    if group.link_exists(name) {
        group.unlink(name)?;
    }
    Ok(())
}

/// anndata element writer.
pub fn dict(parent: &Group, name: &str) -> hdf5::Result<Group> {
    let group = match parent.group(name) {
        Ok(g) => g,
        Err(_) => parent.create_group(name)?,
    };
    set_encoding(&group, "dict", "0.1.0")?;
    Ok(group)
}

/// anndata element writer.
pub fn string_array(group: &Group, name: &str, values: &[String]) -> hdf5::Result<()> {
    replace(group, name)?;
    let values: Vec<VarLenUnicode> = values
        .iter()
        .map(|v| unicode(v))
        .collect::<hdf5::Result<_>>()?;
    let ds = group
        .new_dataset_builder()
        .with_data(&values)
        .create(name)?;
    set_encoding(&ds, "string-array", "0.2.0")
}

/// anndata element writer.
pub fn array_1d<T: H5Type>(group: &Group, name: &str, values: &[T]) -> hdf5::Result<()> {
    replace(group, name)?;
    let ds = group.new_dataset_builder().with_data(values).create(name)?;
    set_encoding(&ds, "array", "0.2.0")
}

/// anndata element writer.
pub fn array_2d(group: &Group, name: &str, values: ArrayView2<'_, f32>) -> hdf5::Result<()> {
    replace(group, name)?;
    let ds = group
        .new_dataset_builder()
        .with_data(&values)
        .create(name)?;
    set_encoding(&ds, "array", "0.2.0")
}
/// anndata element writer.
pub fn dataframe(parent: &Group, name: &str, index: &[String]) -> hdf5::Result<Group> {
    let frame = parent.create_group(name)?;
    set_encoding(&frame, "dataframe", "0.2.0")?;
    set_str_attr(&frame, "_index", "_index")?;
    string_array(&frame, "_index", index)?;
    Ok(frame)
}
