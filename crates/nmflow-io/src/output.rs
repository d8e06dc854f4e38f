//! Result files, written to a temporary file beside the target and renamed
//! into place, so that a failed or interrupted run leaves no partial output.
//!
//! Layout (HDF5): `/W` (n_rows × k, f32), `/H` (k × n_cols, f32, the
//! loadings in the units of the matrix factorized: [`input_units`]),
//! `/H_scaled` (the loadings of the column-scaled matrix, X_s ≈ W·H_scaled;
//! each H's attribute `units` says which is which),
//! `/rel_error` (one f64 per iteration), `/iteration_seconds` (one f64 per
//! iteration: the time to an error is the `prepare_seconds` attribute plus
//! their running sum), `/cluster` (u32 per row, the
//! argmax of its W row), `/col_scale` (f32 per column, the divisor applied to
//! X before factorizing; ∞ in a result of `nmflow transform` for a column
//! the components do not have, which was ignored), `/col_names` (when the input names its columns),
//! `/sample/rows` (u64, the sampled rows), `/sample/pca` (their first
//! principal components, rows × 2), `/sample/pca_variance_ratio`; every
//! parameter of the run as attributes of `/`.

use std::path::Path;

use hdf5::types::VarLenUnicode;
use ndarray::{Array2, ArrayView2};
use nmflow_core::FactorStore;

use crate::atomic::{self, Overwrite, WriteError, parent_dir};
use crate::error::IoError;
use crate::names;

/// A value of a result attribute.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
}

/// What a fit writes.
pub struct FitOutput<'a> {
    /// W.
    pub w: &'a mut dyn FactorStore,
    /// H.
    pub h: ArrayView2<'a, f32>,
    /// Relative error after every iteration.
    pub rel_error: &'a [f64],
    /// Seconds of every iteration.
    pub iteration_seconds: &'a [f64],
    /// Cluster of every row.
    pub cluster: &'a [u32],
    /// Column divisors applied to X.
    pub col_scale: &'a [f32],
    /// Attributes of the root group.
    pub attrs: Vec<(String, AttrValue)>,
    /// The row sample and its principal components.
    pub sample: Option<SampleOutput<'a>>,
    /// Names of the columns (genes), when the input has them.
    pub col_names: Option<&'a [String]>,
}

/// A row sample as written to a result.
#[derive(Debug, Clone, Copy)]
pub struct SampleOutput<'a> {
    /// Sampled row indices, increasing.
    pub rows: &'a [u64],
    /// Principal component scores of the sampled rows (rows × components).
    pub pca: ArrayView2<'a, f32>,
    /// Fraction of variance along each component.
    pub variance_ratio: &'a [f64],
}

/// Fails if `path` exists and `overwrite` is false; call before the work
/// so that a refused output costs nothing.
pub fn check_output_path(path: &Path, overwrite: bool) -> Result<(), IoError> {
    if !overwrite && path.exists() {
        return Err(IoError::OutputExists {
            path: path.to_path_buf(),
        });
    }
    let dir = parent_dir(path);
    if !dir.is_dir() {
        return Err(IoError::Os {
            path: dir,
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the output directory does not exist",
            ),
        });
    }
    Ok(())
}

/// Writes `output` to `path` atomically (temporary file, then rename).
pub fn write_result(
    path: &Path,
    output: &mut FitOutput<'_>,
    overwrite: bool,
) -> Result<(), IoError> {
    check_output_path(path, overwrite)?;
    check_finite(path, output)?;
    persist_atomically(path, overwrite, |tmp| write_hdf5(tmp, output))
}

/// [`atomic::write_beside`] for an HDF5 writer.
pub(crate) fn persist_atomically(
    path: &Path,
    overwrite: bool,
    write: impl FnOnce(&Path) -> hdf5::Result<()>,
) -> Result<(), IoError> {
    atomic::write_beside(path, Overwrite::from_force(overwrite), write).map_err(|e| match e {
        WriteError::Write(e) => IoError::hdf5(path, "writing the result", e),
        WriteError::Io(e) => e,
    })
}

/// The loadings in the units of the matrix factorized: each column of the
/// scaled H times its divisor (X_s = X·D⁻¹ ≈ W·H_s, so X ≈ W·(H_s·D)
/// exactly). A column whose divisor is infinite (a gene the components of
/// `nmflow transform` do not have, ignored) has no loadings: 0. The one
/// place this product is formed.
pub fn input_units(h_scaled: ArrayView2<'_, f32>, col_scale: &[f32]) -> Array2<f32> {
    let mut h = h_scaled.to_owned();
    for mut row in h.axis_iter_mut(ndarray::Axis(0)) {
        for (v, &d) in row.iter_mut().zip(col_scale) {
            *v = if d.is_finite() { *v * d } else { 0.0 };
        }
    }
    h
}

/// Refuses to write a result whose H or error trace holds a non-finite value
/// (the fit's guard stops such runs first; this is the last line of
/// defence).
pub(crate) fn check_finite(path: &Path, output: &mut FitOutput<'_>) -> Result<(), IoError> {
    let bad = |what: &str| {
        Err(IoError::malformed(
            path,
            "/",
            format!("{what} holds a non-finite value; nothing was written"),
        ))
    };
    if !output.h.iter().all(|v| v.is_finite()) {
        return bad("H");
    }
    if !input_units(output.h, output.col_scale)
        .iter()
        .all(|v| v.is_finite())
    {
        return bad("H in the input's units (H_scaled times col_scale)");
    }
    if !output.rel_error.iter().all(|v| v.is_finite()) {
        return bad("the error trace");
    }
    // W is checked block by block as it is written (`write_factor_rows`):
    // one pass over a W that may live on disk.
    Ok(())
}

fn write_hdf5(path: &Path, output: &mut FitOutput<'_>) -> hdf5::Result<()> {
    let file = hdf5::File::create(path)?;
    write_factor_rows(&file, names::W, output.w)?;
    let h = input_units(output.h, output.col_scale);
    for (name, h) in [(names::H, h.view()), (names::H_SCALED, output.h)] {
        let ds = file.new_dataset_builder().with_data(&h).create(name)?;
        crate::elements::set_str_attr(&ds, "units", names::LOADINGS_NOTE)?;
    }
    file.new_dataset_builder()
        .with_data(output.rel_error)
        .create(names::REL_ERROR)?;
    file.new_dataset_builder()
        .with_data(output.iteration_seconds)
        .create(names::ITERATION_SECONDS)?;
    file.new_dataset_builder()
        .with_data(output.cluster)
        .create(names::CLUSTER)?;
    file.new_dataset_builder()
        .with_data(output.col_scale)
        .create(names::COL_SCALE)?;
    if let Some(col_names) = output.col_names {
        crate::elements::string_array(&file, names::COL_NAMES, col_names)?;
    }
    if let Some(sample) = &output.sample {
        write_sample(&file, sample)?;
    }
    for (name, value) in &output.attrs {
        match value {
            AttrValue::Int(v) => file
                .new_attr::<i64>()
                .create(name.as_str())?
                .write_scalar(v)?,
            AttrValue::Float(v) => file
                .new_attr::<f64>()
                .create(name.as_str())?
                .write_scalar(v)?,
            AttrValue::Str(v) => {
                let text: VarLenUnicode = v
                    .parse()
                    .map_err(|e| hdf5::Error::from(format!("attribute {name}: {e}")))?;
                file.new_attr::<VarLenUnicode>()
                    .create(name.as_str())?
                    .write_scalar(&text)?;
            }
        }
    }
    file.close()
}

/// The row sample as the group `sample` of `file`: `rows`, `pca`,
/// `pca_variance_ratio` (the layout of results and checkpoints).
pub(crate) fn write_sample(file: &hdf5::File, sample: &SampleOutput<'_>) -> hdf5::Result<()> {
    let group = file.create_group(names::SAMPLE)?;
    group
        .new_dataset_builder()
        .with_data(sample.rows)
        .create("rows")?;
    group
        .new_dataset_builder()
        .with_data(&sample.pca)
        .create("pca")?;
    group
        .new_dataset_builder()
        .with_data(sample.variance_ratio)
        .create("pca_variance_ratio")?;
    Ok(())
}

/// Rows of W written at a time.
const WRITE_ROWS: usize = 1 << 16;

/// Writes W as the 2-D f32 dataset `name` of `group`, block by block, so
/// that a W kept on disk is never whole in memory; fails on a non-finite
/// value, so no file nmflow writes holds one. Returns the dataset.
pub(crate) fn write_factor_rows(
    group: &hdf5::Group,
    name: &str,
    w: &mut dyn FactorStore,
) -> hdf5::Result<hdf5::Dataset> {
    let (n_rows, k) = w.shape();
    let ds = group.new_dataset::<f32>().shape((n_rows, k)).create(name)?;
    for start in (0..n_rows).step_by(WRITE_ROWS) {
        let rows = start..(start + WRITE_ROWS).min(n_rows);
        let block = w.rows_mut(rows.clone()).as_standard_layout().into_owned();
        if let Some(pos) = block.iter().position(|v| !v.is_finite()) {
            // The writer fails, so the protocol leaves nothing behind.
            return Err(hdf5::Error::from(format!(
                "{name} holds a non-finite value at row {}; nothing was written",
                start + pos / k.max(1)
            )));
        }
        ds.write_slice(&block, ndarray::s![rows.clone(), ..])?;
        w.release(rows);
    }
    Ok(ds)
}
