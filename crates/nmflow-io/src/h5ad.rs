//! Results as anndata (`.h5ad`): a new file holding the factorization, or
//! the same entries added to the user's own file.
//!
//! Entries (anndata's on-disk encoding 0.1.0/0.2.0, readable by anndata ≥ 0.8):
//! `obs` (index = input's cell names, categorical column `nmf_cluster`),
//! `var` (index = gene names; `gene_ids` when the input has them); from an
//! h5ad input, its `obs` and `var` whole with `nmf_cluster` added, and its
//! small `obsm` and `uns` entries (`copy_annotations`),
//! `obsm['X_nmf']` = W, `varm['NMF_H']` = Hᵀ in the units of the matrix
//! factorized, `varm['NMF_H_scaled']` = the column-scaled H's transpose
//! (`uns['nmf']['loadings']` says which is which), `uns['nmf']` = every parameter,
//! the error trace, the column divisors, the row sample with its principal
//! components (`sample_rows`, `sample_pca`) and the nmflow version. X is not
//! copied, unless asked (`Annotations::x`, `--copy-x`).
//!
//! `--write-into` works on a copy of the input in the same directory and
//! renames it over the original when complete: a crash at any moment leaves
//! the original as it was.

use std::path::Path;

use hdf5::types::VarLenUnicode;
use hdf5::{File, Group};
use ndarray::Array2;

use crate::elements::{
    array_1d, array_2d, dataframe, dict, replace, set_encoding, set_str_array_attr, string_array,
    unicode,
};
use crate::error::IoError;
use crate::names;
use crate::output::{AttrValue, FitOutput, check_output_path};
use crate::singlecell::Names;
use crate::strings::{read_string_attr, string_attr};

fn scalar(group: &Group, name: &str, value: &AttrValue) -> hdf5::Result<()> {
    replace(group, name)?;
    let ds = match value {
        AttrValue::Int(v) => {
            let ds = group.new_dataset::<i64>().shape(()).create(name)?;
            ds.write_scalar(v)?;
            ds
        }
        AttrValue::Float(v) => {
            let ds = group.new_dataset::<f64>().shape(()).create(name)?;
            ds.write_scalar(v)?;
            ds
        }
        AttrValue::Str(v) => {
            let ds = group
                .new_dataset::<VarLenUnicode>()
                .shape(())
                .create(name)?;
            ds.write_scalar(&unicode(v)?)?;
            set_encoding(&ds, "string", "0.2.0")?;
            return Ok(());
        }
    };
    set_encoding(&ds, "numeric-scalar", "0.2.0")
}

/// `varm['NMF_H']` (the loadings in the units of the matrix factorized,
/// genes × k) and `varm['NMF_H_scaled']` (those of the column-scaled
/// matrix).
fn loadings(varm: &Group, out: &FitOutput<'_>) -> hdf5::Result<()> {
    let h = crate::output::input_units(out.h, out.col_scale);
    for (name, h) in [(names::NMF_H, h.view()), (names::NMF_H_SCALED, out.h)] {
        let ht: Array2<f32> = h.t().as_standard_layout().into_owned();
        array_2d(varm, name, ht.view())?;
    }
    Ok(())
}

/// The categorical column `nmf_cluster` (categories "0" .. "k-1").
fn cluster_column(frame: &Group, clusters: &[u32], k: usize) -> hdf5::Result<()> {
    replace(frame, "nmf_cluster")?;
    let group = frame.create_group("nmf_cluster")?;
    set_encoding(&group, "categorical", "0.2.0")?;
    group
        .new_attr::<bool>()
        .create("ordered")?
        .write_scalar(&false)?;
    let codes: Vec<i32> = clusters.iter().map(|&c| c as i32).collect();
    array_1d(&group, "codes", &codes)?;
    let categories: Vec<String> = (0..k).map(|c| c.to_string()).collect();
    string_array(&group, "categories", &categories)
}

/// The categorical `nmf_cluster` in the encoding of anndata 0.7's
/// dataframes (`dataframe` 0.1.0): integer codes whose attribute
/// `categories` is an object reference to `__categories/nmf_cluster`, a
/// string dataset with the attribute `ordered`; no encoding attributes on
/// either, as anndata 0.7 wrote them.
fn cluster_column_v010(frame: &Group, clusters: &[u32], k: usize) -> hdf5::Result<()> {
    replace(frame, "nmf_cluster")?;
    let cats = match frame.group("__categories") {
        Ok(g) => g,
        Err(_) => frame.create_group("__categories")?,
    };
    replace(&cats, "nmf_cluster")?;
    let categories: Vec<VarLenUnicode> = (0..k)
        .map(|c| unicode(&c.to_string()))
        .collect::<hdf5::Result<_>>()?;
    let cat_ds = cats
        .new_dataset_builder()
        .with_data(&categories)
        .create("nmf_cluster")?;
    cat_ds
        .new_attr::<bool>()
        .create("ordered")?
        .write_scalar(&false)?;
    let codes = if k <= i8::MAX as usize + 1 {
        let codes: Vec<i8> = clusters.iter().map(|&c| c as i8).collect();
        frame
            .new_dataset_builder()
            .with_data(&codes)
            .create("nmf_cluster")?
    } else {
        let codes: Vec<i32> = clusters.iter().map(|&c| c as i32).collect();
        frame
            .new_dataset_builder()
            .with_data(&codes)
            .create("nmf_cluster")?
    };
    let reference: hdf5::ObjectReference1 = cats.reference("nmf_cluster")?;
    codes
        .new_attr::<hdf5::ObjectReference1>()
        .create("categories")?
        .write_scalar(&reference)
}

/// W as the `array` element `name` of `group`, written block by block.
fn factor_array(
    group: &Group,
    name: &str,
    w: &mut dyn nmflow_core::FactorStore,
) -> hdf5::Result<()> {
    replace(group, name)?;
    let ds = crate::output::write_factor_rows(group, name, w)?;
    set_encoding(&ds, "array", "0.2.0")
}

/// `uns['nmf']`: parameters, error trace, column divisors, version.
fn uns_nmf(root: &Group, out: &FitOutput<'_>, extra_cluster: bool) -> hdf5::Result<()> {
    let uns = dict(root, "uns")?;
    replace(&uns, "nmf")?;
    let nmf = dict(&uns, "nmf")?;
    let params = dict(&nmf, "params")?;
    for (name, value) in &out.attrs {
        scalar(&params, name, value)?;
    }
    array_1d(&nmf, names::REL_ERROR, out.rel_error)?;
    array_1d(&nmf, names::ITERATION_SECONDS, out.iteration_seconds)?;
    array_1d(&nmf, names::COL_SCALE, out.col_scale)?;
    scalar(
        &nmf,
        "nmflow_version",
        &AttrValue::Str(env!("CARGO_PKG_VERSION").into()),
    )?;
    scalar(
        &nmf,
        "loadings",
        &AttrValue::Str(names::LOADINGS_NOTE.into()),
    )?;
    if let Some(sample) = &out.sample {
        array_1d(&nmf, "sample_rows", sample.rows)?;
        let pca = sample.pca.as_standard_layout().into_owned();
        array_2d(&nmf, "sample_pca", pca.view())?;
        array_1d(&nmf, "sample_pca_variance_ratio", sample.variance_ratio)?;
    }
    if extra_cluster {
        let codes: Vec<i64> = out.cluster.iter().map(|&c| i64::from(c)).collect();
        array_1d(&nmf, names::CLUSTER, &codes)?;
    }
    Ok(())
}

fn write_new(path: &Path, out: &mut FitOutput<'_>, names: &Names) -> hdf5::Result<()> {
    let file = File::create(path)?;
    set_encoding(&file, "anndata", "0.1.0")?;
    let k = out.w.shape().1;
    let cluster_written = match &names.annotations {
        Some(annotations) => {
            copy_annotations(&file, annotations)?;
            add_cluster_column(&file.group("obs")?, out)?
        }
        None => {
            let obs = dataframe(&file, "obs", &names.obs)?;
            set_str_array_attr(&obs, "column-order", &["nmf_cluster".to_owned()])?;
            cluster_column(&obs, out.cluster, k)?;
            let var = dataframe(&file, "var", &names.var)?;
            match &names.var_ids {
                Some(ids) => {
                    string_array(&var, "gene_ids", ids)?;
                    set_str_array_attr(&var, "column-order", &["gene_ids".to_owned()])?;
                }
                None => set_str_array_attr(&var, "column-order", &[])?,
            }
            true
        }
    };
    factor_array(&dict(&file, names::OBSM)?, names::X_NMF, out.w)?;
    loadings(&dict(&file, names::VARM)?, out)?;
    for empty in ["layers", "obsp", "varp"] {
        dict(&file, empty)?;
    }
    uns_nmf(&file, out, !cluster_written)?;
    file.close()
}

/// Dense `obsm` entries with at most this many columns are copied into a
/// new h5ad result (embeddings: `X_pca`, `X_umap`, `X_tsne`, ...).
pub(crate) const OBSM_COLUMNS: usize = 64;

/// `uns` entries storing at most this many bytes are copied into a new
/// h5ad result (colours, parameters, small tables; not graphs).
pub(crate) const UNS_ENTRY_BYTES: u64 = 1 << 20;

/// Copies an h5ad input's `obs` and `var` whole, and its small `obsm` and
/// `uns` entries ([`crate::singlecell::Annotations`]), into `file`, as
/// stored (encodings and categories kept).
fn copy_annotations(file: &File, annotations: &crate::singlecell::Annotations) -> hdf5::Result<()> {
    let src = File::open(&annotations.file)?;
    src.group(&annotations.obs)?.copy_to(file, "obs")?;
    src.group(&annotations.var)?.copy_to(file, "var")?;
    if let Some(x) = &annotations.x {
        // A dense dataset or a sparse group; the library copies it in
        // pieces (chunk by chunk, or through a bounded buffer).
        match src.dataset(x) {
            Ok(ds) => ds.copy_to(file, "X")?,
            Err(_) => src.group(x)?.copy_to(file, "X")?,
        }
    }
    if let Ok(obsm) = src.group(names::OBSM) {
        let dst = dict(file, names::OBSM)?;
        for name in obsm.member_names()? {
            if let Ok(ds) = obsm.dataset(&name)
                && ds.shape().len() == 2
                && ds.shape()[1] <= OBSM_COLUMNS
                && name != names::X_NMF
            {
                ds.copy_to(&dst, &name)?;
            }
        }
    }
    if let Ok(uns) = src.group("uns") {
        let dst = dict(file, "uns")?;
        for name in uns.member_names()? {
            if name != "nmf" && stored_bytes(&uns, &name) <= UNS_ENTRY_BYTES {
                if let Ok(ds) = uns.dataset(&name) {
                    ds.copy_to(&dst, &name)?;
                } else if let Ok(group) = uns.group(&name) {
                    group.copy_to(&dst, &name)?;
                }
            }
        }
    }
    Ok(())
}

/// Bytes stored under `name` in `group` (a dataset, or every dataset of a
/// group); `u64::MAX` for what cannot be measured.
fn stored_bytes(group: &Group, name: &str) -> u64 {
    if let Ok(ds) = group.dataset(name) {
        return ds.storage_size();
    }
    match group.group(name) {
        Ok(inner) => inner.member_names().map_or(u64::MAX, |members| {
            members
                .iter()
                .map(|m| stored_bytes(&inner, m))
                .fold(0u64, u64::saturating_add)
        }),
        Err(_) => u64::MAX,
    }
}

/// Adds the categorical `nmf_cluster` to an existing `obs` dataframe, in
/// its own encoding: 0.2.0 (anndata ≥ 0.8) or 0.1.0 (anndata 0.7), and
/// appends it to `column-order`; `false` (nothing written) for another.
fn add_cluster_column(obs: &Group, out: &FitOutput<'_>) -> hdf5::Result<bool> {
    let version = string_attr(obs, "encoding-version");
    let Some(v @ ("0.2.0" | "0.1.0")) = version.as_deref() else {
        return Ok(false);
    };
    let mut order = obs
        .attr("column-order")
        .ok()
        .and_then(|a| read_string_attr(&a).ok())
        .unwrap_or_default();
    if !order.iter().any(|c| c == "nmf_cluster") {
        order.push("nmf_cluster".into());
    }
    if v == "0.2.0" {
        cluster_column(obs, out.cluster, out.w.shape().1)?;
    } else {
        cluster_column_v010(obs, out.cluster, out.w.shape().1)?;
    }
    set_str_array_attr(obs, "column-order", &order)?;
    Ok(true)
}

/// Writes a new `.h5ad` at `path` atomically.
pub fn write_h5ad(
    path: &Path,
    out: &mut FitOutput<'_>,
    names: &Names,
    overwrite: bool,
) -> Result<(), IoError> {
    check_output_path(path, overwrite)?;
    let (n_rows, k) = out.w.shape();
    if names.obs.len() != n_rows || names.var.len() != out.h.ncols() || out.h.nrows() != k {
        return Err(IoError::malformed(
            path,
            "/",
            "names and factors disagree in shape",
        ));
    }
    crate::output::check_finite(path, out)?;
    crate::output::persist_atomically(path, overwrite, |tmp| write_new(tmp, out, names))
}

/// Adds the result to the h5ad file at `path` (see the module docs). The
/// factorization used `raw/X` when `raw` is true.
pub fn write_into_h5ad(path: &Path, out: &mut FitOutput<'_>, raw: bool) -> Result<(), IoError> {
    crate::output::check_finite(path, out)?;
    check_editable(path)?;
    let tmp = crate::atomic::new_temp(path)?;
    std::fs::copy(path, tmp.path()).map_err(|e| IoError::os(path, e))?;
    edit(tmp.path(), out, raw).map_err(|e| IoError::hdf5(path, "adding the result", e))?;
    tmp.as_file().sync_all().map_err(|e| IoError::os(path, e))?;
    crate::atomic::persist(tmp, path, crate::atomic::Overwrite::Replace)
}

/// Refuses, before anything is copied, an h5ad whose layout nmflow cannot
/// add to: files written by anndata < 0.7 keep `obsm` and `varm` as
/// compound datasets. The message names the user's file.
pub fn check_editable(path: &Path) -> Result<(), IoError> {
    let file = File::open(path).map_err(|e| IoError::hdf5(path, "opening the file", e))?;
    for name in ["obsm", "varm", "obs", "var"] {
        if file.dataset(name).is_ok() {
            return Err(IoError::Unsupported {
                path: path.to_path_buf(),
                object: name.to_owned(),
                reason: "written by anndata < 0.7 (a compound dataset, not a group); nmflow does \
                         not edit this layout: write a new file with -o result.h5ad instead"
                    .into(),
            });
        }
    }
    Ok(())
}

fn edit(path: &Path, out: &mut FitOutput<'_>, raw: bool) -> hdf5::Result<()> {
    let file = File::open_rw(path)?;
    factor_array(&dict(&file, names::OBSM)?, names::X_NMF, out.w)?;
    let raw_genes_differ = raw
        && file
            .group("raw/var")
            .ok()
            .and_then(|g| {
                let index = string_attr(&g, "_index").unwrap_or_else(|| "_index".into());
                g.dataset(&index).ok().map(|d| d.size())
            })
            .zip(file.group("var").ok().and_then(|g| {
                let index = string_attr(&g, "_index").unwrap_or_else(|| "_index".into());
                g.dataset(&index).ok().map(|d| d.size())
            }))
            .is_some_and(|(raw_n, n)| raw_n != n);
    let varm_parent = if raw_genes_differ {
        file.group("raw")?
    } else {
        file.as_group()?
    };
    loadings(&dict(&varm_parent, names::VARM)?, out)?;
    // The categorical in the encoding of the file's own dataframe.
    let written = match file.group("obs") {
        Ok(obs) => add_cluster_column(&obs, out)?,
        Err(_) => false,
    };
    uns_nmf(&file, out, !written)?;
    file.close()?;
    Ok(())
}
