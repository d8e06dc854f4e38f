//! The names of the entries of nmflow's result files, written once and
//! used by the writers (`output`, `h5ad`, `checkpoint`) and the readers
//! (`result`, `input`'s starts).

/// Plain HDF5 result: W, `n_rows × k`.
pub(crate) const W: &str = "W";
/// Plain HDF5 result: H, `k × n_cols`, in the units of the matrix
/// factorized (after the row normalisation, before the column scaling):
/// H_scaled times the column divisors, so that X ≈ W·H.
pub(crate) const H: &str = "H";
/// Plain HDF5 result: H of the column-scaled matrix the updates ran on
/// (X_s ≈ W·H_scaled); earlier results have no `H_scaled` and hold this H
/// as `H` ([`crate::result`] reads both layouts).
pub(crate) const H_SCALED: &str = "H_scaled";
/// What the two H say of themselves: the attribute `units` of `/H` and
/// `/H_scaled`, the entry `loadings` of `uns['nmf']`.
pub const LOADINGS_NOTE: &str = "H (varm NMF_H): loadings in the units of the matrix \
     factorized (after --normalize, before --scale), H_scaled times col_scale, so that X ≈ W·H; \
     read these for top genes. H_scaled (varm NMF_H_scaled): the loadings of the column-scaled \
     matrix the updates ran on (X / col_scale ≈ W·H_scaled)";
/// The relative error after every iteration.
pub(crate) const REL_ERROR: &str = "rel_error";
/// Seconds of every iteration (of the pass it shared with the runs of its batch).
pub(crate) const ITERATION_SECONDS: &str = "iteration_seconds";
/// The cluster of every row.
pub(crate) const CLUSTER: &str = "cluster";
/// The divisor of every column.
pub(crate) const COL_SCALE: &str = "col_scale";
/// The input's column names.
pub(crate) const COL_NAMES: &str = "col_names";
/// The group of the row sample.
pub(crate) const SAMPLE: &str = "sample";

/// AnnData result: the group of W.
pub(crate) const OBSM: &str = "obsm";
/// AnnData result: W's key in `obsm`.
pub(crate) const X_NMF: &str = "X_nmf";
/// AnnData result: the group of Hᵀ.
pub(crate) const VARM: &str = "varm";
/// AnnData result: Hᵀ's key in `varm` (genes × k), in the units of the
/// matrix factorized (as [`H`]).
pub(crate) const NMF_H: &str = "NMF_H";
/// AnnData result: H_scaledᵀ's key in `varm` (as [`H_SCALED`]).
pub(crate) const NMF_H_SCALED: &str = "NMF_H_scaled";
/// AnnData result: W's path.
pub(crate) const OBSM_X_NMF: &str = "obsm/X_nmf";
/// AnnData result: Hᵀ's path.
pub(crate) const VARM_NMF_H: &str = "varm/NMF_H";
/// AnnData result: H_scaledᵀ's path.
pub(crate) const VARM_NMF_H_SCALED: &str = "varm/NMF_H_scaled";
/// AnnData result: the prefix of the parameters, trace and sample in `uns`.
pub(crate) const UNS_NMF: &str = "uns/nmf/";
