//! Reading back a result of `nmflow fit` (plain HDF5 or `.h5ad`) for
//! reports: H, the error trace, the parameters, the column names, and W
//! only at the sampled rows (W is read block by block, never whole).

use std::path::{Path, PathBuf};

use hdf5::{Container, File, Group};
use ndarray::{Array2, s};

use crate::error::IoError;
use crate::names;
use crate::strings::{is_string, read_string_attr, read_string_dataset};

/// What a report needs of a fit.
#[derive(Debug, Clone)]
pub struct FitResult {
    /// The file.
    pub path: PathBuf,
    /// Rows of W.
    pub n_rows: usize,
    /// Components.
    pub k: usize,
    /// H, `k × n_cols`, in the units of the matrix factorized.
    pub h: Array2<f32>,
    /// H of the column-scaled matrix the updates ran on.
    pub h_scaled: Array2<f32>,
    /// Relative error after every iteration.
    pub rel_error: Vec<f64>,
    /// Column (gene) names, when stored.
    pub col_names: Option<Vec<String>>,
    /// The sampled rows (stored with the result, or drawn evenly when the
    /// result has none).
    pub sample_rows: Vec<u64>,
    /// W at the sampled rows, `sample × k`.
    pub sample_w: Array2<f32>,
    /// Principal components of the sampled rows and their variance ratios.
    pub pca: Option<(Array2<f32>, Vec<f64>)>,
    /// Parameters of the run, as text.
    pub params: Vec<(String, String)>,
}

/// Rows of W read at a time.
const READ_ROWS: usize = 1 << 16;

/// Reads the result at `path`; `max_sample` bounds the rows drawn when the
/// file stores no sample.
pub fn read_result(path: &Path, max_sample: usize) -> Result<FitResult, IoError> {
    let h5 = |what: &str| {
        let what = what.to_owned();
        move |e| IoError::hdf5(path, what.clone(), e)
    };
    let (file, is_h5ad) = open_result(path)?;
    if !is_h5ad && !file.link_exists(names::W) {
        return Err(IoError::Unsupported {
            path: path.to_path_buf(),
            object: "/".into(),
            reason: "not a result of nmflow fit (no /W and no obsm/X_nmf)".into(),
        });
    }
    let (w_name, prefix) = if is_h5ad {
        (names::OBSM_X_NMF, names::UNS_NMF)
    } else {
        (names::W, "")
    };
    let w = file.dataset(w_name).map_err(h5(w_name))?;
    let shape = w.shape();
    let &[n_rows, k] = shape.as_slice() else {
        return Err(IoError::malformed(path, w_name, "W is not a matrix"));
    };
    let Loadings {
        h,
        h_scaled,
        name: h_name,
        ..
    } = loadings(path, &file, is_h5ad)?;
    if h.nrows() != k {
        return Err(IoError::malformed(
            path,
            "H",
            format!("has {} rows; W has {k} columns", h.nrows()),
        ));
    }
    let rel_name = format!("{prefix}{}", names::REL_ERROR);
    let rel_error: Vec<f64> = file
        .dataset(&rel_name)
        .and_then(|d| d.read_raw())
        .map_err(h5(&rel_name))?;
    let col_names = col_names_of(&file, is_h5ad);
    let (rows_name, pca_name, ratio_name) = if is_h5ad {
        (
            "uns/nmf/sample_rows",
            "uns/nmf/sample_pca",
            "uns/nmf/sample_pca_variance_ratio",
        )
    } else {
        ("sample/rows", "sample/pca", "sample/pca_variance_ratio")
    };
    let stored_rows: Option<Vec<u64>> =
        file.dataset(rows_name).ok().and_then(|d| d.read_raw().ok());
    let pca = match &stored_rows {
        Some(_) => {
            let scores: Array2<f32> = file
                .dataset(pca_name)
                .and_then(|d| d.read_2d())
                .map_err(h5(pca_name))?;
            let ratio: Vec<f64> = file
                .dataset(ratio_name)
                .and_then(|d| d.read_raw())
                .map_err(h5(ratio_name))?;
            Some((scores, ratio))
        }
        None => None,
    };
    let sample_rows = stored_rows.unwrap_or_else(|| {
        nmflow_core::sample_row_indices(n_rows, max_sample, 0)
            .into_iter()
            .map(|r| r as u64)
            .collect()
    });
    if let Some(&bad) = sample_rows.iter().find(|&&r| r as usize >= n_rows) {
        return Err(IoError::malformed(
            path,
            rows_name,
            format!("row {bad} is beyond W's {n_rows} rows"),
        ));
    }
    let mut sample_w = Array2::<f32>::zeros((sample_rows.len(), k));
    let mut next = 0;
    for start in (0..n_rows).step_by(READ_ROWS) {
        let end = (start + READ_ROWS).min(n_rows);
        if next >= sample_rows.len() {
            break;
        }
        if sample_rows[next] as usize >= end {
            continue;
        }
        let block: Array2<f32> = w.read_slice(s![start..end, ..]).map_err(h5(w_name))?;
        while next < sample_rows.len() && (sample_rows[next] as usize) < end {
            let r = sample_rows[next] as usize - start;
            sample_w.row_mut(next).assign(&block.row(r));
            next += 1;
        }
    }
    for (object, finite) in [
        (h_name, h.iter().all(|v| v.is_finite())),
        (rel_name.as_str(), rel_error.iter().all(|v| v.is_finite())),
        (w_name, sample_w.iter().all(|v| v.is_finite())),
    ] {
        if !finite {
            return Err(IoError::malformed(
                path,
                object,
                "holds NaN or infinite values: not the result of a sound run",
            ));
        }
    }
    let params = params_of(&file, is_h5ad);
    Ok(FitResult {
        path: path.to_path_buf(),
        n_rows,
        k,
        h,
        h_scaled,
        rel_error,
        col_names,
        sample_rows,
        sample_w,
        pca,
        params,
    })
}

/// What projecting new rows needs of a fit (`nmflow transform`).
#[derive(Debug, Clone)]
pub struct Components {
    /// H, `k × n_cols`, in the fit's scaled units.
    pub h: Array2<f32>,
    /// The fit's divisor of every column.
    pub col_scale: Vec<f32>,
    /// Column (gene) names, when stored.
    pub col_names: Option<Vec<String>>,
    /// Parameters of the fit, as text.
    pub params: Vec<(String, String)>,
}

impl Components {
    /// The parameter `name` of the fit.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads the components of the result at `path` (plain HDF5 or h5ad of
/// `nmflow fit`), without W.
pub fn read_components(path: &Path) -> Result<Components, IoError> {
    let (file, is_h5ad) = open_result(path)?;
    if !is_h5ad && !file.link_exists(names::H) {
        return Err(IoError::Unsupported {
            path: path.to_path_buf(),
            object: "/".into(),
            reason: "not a result of nmflow fit (no /H and no varm/NMF_H)".into(),
        });
    }
    let Loadings {
        h_scaled: h,
        col_scale,
        scale_name,
        name: h_name,
        ..
    } = loadings(path, &file, is_h5ad)?;
    if !h.iter().all(|v| v.is_finite() && *v >= 0.0) {
        return Err(IoError::malformed(
            path,
            h_name,
            "holds negative, NaN or infinite values: not the result of a sound run",
        ));
    }
    if !col_scale.iter().all(|v| v.is_finite() && *v > 0.0) {
        return Err(IoError::malformed(
            path,
            &scale_name,
            "holds a divisor that is not finite and positive",
        ));
    }
    let col_names = col_names_of(&file, is_h5ad);
    let params = params_of(&file, is_h5ad);
    Ok(Components {
        h,
        col_scale,
        col_names,
        params,
    })
}

/// A result's two H and the column divisors that relate them.
struct Loadings {
    /// In the units of the matrix factorized.
    h: Array2<f32>,
    /// Of the column-scaled matrix.
    h_scaled: Array2<f32>,
    col_scale: Vec<f32>,
    /// Where the column divisors are.
    scale_name: String,
    /// Where the scaled H is.
    name: &'static str,
}

/// The loadings of a result in either layout: `H` in the data's units
/// beside `H_scaled` (`varm/NMF_H`, `varm/NMF_H_scaled`), or, in results
/// written before `H_scaled` existed, the scaled H alone as `H`, whose
/// data-unit loadings are then formed as the writer forms them
/// ([`crate::output::input_units`]). Both `k × n_cols`.
fn loadings(path: &Path, file: &File, is_h5ad: bool) -> Result<Loadings, IoError> {
    let (h_name, scaled_name, scale_name) = if is_h5ad {
        (
            names::VARM_NMF_H,
            names::VARM_NMF_H_SCALED,
            format!("{}{}", names::UNS_NMF, names::COL_SCALE),
        )
    } else {
        (names::H, names::H_SCALED, names::COL_SCALE.to_owned())
    };
    let read = |name: &str| -> Result<Array2<f32>, IoError> {
        let stored: Array2<f32> = file
            .dataset(name)
            .and_then(|d| d.read_2d())
            .map_err(|e| IoError::hdf5(path, name, e))?;
        Ok(if is_h5ad {
            stored.t().as_standard_layout().into_owned()
        } else {
            stored
        })
    };
    let col_scale: Vec<f32> = file
        .dataset(&scale_name)
        .and_then(|d| d.read_raw())
        .map_err(|e| IoError::hdf5(path, &scale_name, e))?;
    let (h_scaled, name) = if file.link_exists(scaled_name) {
        (read(scaled_name)?, scaled_name)
    } else {
        (read(h_name)?, h_name)
    };
    if col_scale.len() != h_scaled.ncols() {
        return Err(IoError::malformed(
            path,
            &scale_name,
            format!(
                "has {} entries; H has {} columns",
                col_scale.len(),
                h_scaled.ncols()
            ),
        ));
    }
    let h = if name == scaled_name {
        read(h_name)?
    } else {
        crate::output::input_units(h_scaled.view(), &col_scale)
    };
    if h.dim() != h_scaled.dim() {
        return Err(IoError::malformed(
            path,
            scaled_name,
            format!("has shape {:?}; H has {:?}", h_scaled.dim(), h.dim()),
        ));
    }
    Ok(Loadings {
        h,
        h_scaled,
        col_scale,
        scale_name,
        name,
    })
}

/// Opens a result file; whether it is an h5ad one (with `obsm/X_nmf`).
fn open_result(path: &Path) -> Result<(File, bool), IoError> {
    if !path.exists() {
        return Err(IoError::NotFound {
            path: path.to_path_buf(),
        });
    }
    let file = File::open(path).map_err(|e| IoError::hdf5(path, "opening the result", e))?;
    let is_h5ad = file.link_exists(names::OBSM_X_NMF);
    Ok((file, is_h5ad))
}

/// The column names a result stores (`var`'s index in h5ad, `/col_names`
/// in plain HDF5), if any.
fn col_names_of(file: &File, is_h5ad: bool) -> Option<Vec<String>> {
    if is_h5ad {
        file.group("var").ok().and_then(|var| {
            let index = crate::strings::string_attr(&var, "_index").unwrap_or("_index".into());
            var.dataset(&index)
                .ok()
                .and_then(|d| read_string_dataset(&d).ok())
        })
    } else {
        file.dataset("col_names")
            .ok()
            .and_then(|d| read_string_dataset(&d).ok())
    }
}

/// The fit's parameters (`uns/nmf/params` in h5ad, attributes of `/` in
/// plain HDF5), as text.
fn params_of(file: &File, is_h5ad: bool) -> Vec<(String, String)> {
    if is_h5ad {
        match file.group("uns/nmf/params") {
            Ok(group) => group_scalars(&group),
            Err(_) => Vec::new(),
        }
    } else {
        root_attrs(file)
    }
}

fn text_of(obj: &Container, is_attr: bool) -> Option<String> {
    if is_string(obj) {
        let values = if is_attr {
            read_string_attr(&obj.as_attr().ok()?).ok()?
        } else {
            read_string_dataset(&obj.as_dataset().ok()?).ok()?
        };
        return values.into_iter().next();
    }
    let value: f64 = obj.read_raw::<f64>().ok()?.into_iter().next()?;
    Some(if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    })
}

fn root_attrs(file: &File) -> Vec<(String, String)> {
    let names = file.attr_names().unwrap_or_default();
    names
        .into_iter()
        .filter_map(|name| {
            let attr = file.attr(&name).ok()?;
            Some((name, text_of(&attr, true)?))
        })
        .collect()
}

fn group_scalars(group: &Group) -> Vec<(String, String)> {
    let names = group.member_names().unwrap_or_default();
    names
        .into_iter()
        .filter_map(|name| {
            let ds = group.dataset(&name).ok()?;
            Some((name, text_of(&ds, false)?))
        })
        .collect()
}
