//! The names of the entries of nmflow's result files, written once and
//! used by the writers (`output`, `h5ad`, `checkpoint`) and the readers
//! (`result`, `input`'s starts).

/// Plain HDF5 result: W, `n_rows × k`.
pub const W: &str = "W";
/// Plain HDF5 result: H, `k × n_cols`.
pub const H: &str = "H";
/// The relative error after every iteration.
pub const REL_ERROR: &str = "rel_error";
/// The cluster of every row.
pub const CLUSTER: &str = "cluster";
/// The divisor of every column.
pub const COL_SCALE: &str = "col_scale";
/// The input's column names.
pub const COL_NAMES: &str = "col_names";
/// The group of the row sample.
pub const SAMPLE: &str = "sample";

/// AnnData result: the group of W.
pub const OBSM: &str = "obsm";
/// AnnData result: W's key in `obsm`.
pub const X_NMF: &str = "X_nmf";
/// AnnData result: the group of Hᵀ.
pub const VARM: &str = "varm";
/// AnnData result: Hᵀ's key in `varm` (genes × k).
pub const NMF_H: &str = "NMF_H";
/// AnnData result: W's path.
pub const OBSM_X_NMF: &str = "obsm/X_nmf";
/// AnnData result: Hᵀ's path.
pub const VARM_NMF_H: &str = "varm/NMF_H";
/// AnnData result: the prefix of the parameters, trace and sample in `uns`.
pub const UNS_NMF: &str = "uns/nmf/";
