"""nmflow against files written by the tools single-cell users have:
anndata (dense, CSR, CSC, layers, raw, LZF), h5py (the 10x layout) and
loompy; and nmflow's own h5ad results read back by anndata."""

import subprocess

import anndata as ad
import h5py
import loompy
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

K = 3
FIT_ARGS = ["-k", K, "--max-iter", 15, "--tol", 0, "--seed", 4, "-q"]


def counts(n_cells=80, n_genes=30, seed=0):
    rng = np.random.default_rng(seed)
    programs = rng.gamma(0.5, 1.0, size=(K, n_genes))
    usage = rng.dirichlet(np.ones(K) * 0.3, size=n_cells)
    x = rng.poisson(4.0 * usage @ programs).astype(np.float32)
    x[5] = 0  # an empty cell
    x[:, 7] = 0  # an unexpressed gene
    return x


def names(prefix, n):
    return [f"{prefix}{i}" for i in range(n)]


def adata(x):
    return ad.AnnData(
        X=x,
        obs=pd.DataFrame(index=names("cell", x.shape[0])),
        var=pd.DataFrame(index=names("gene", x.shape[1])),
    )


@pytest.fixture
def dense_w(fit, tmp_path):
    """W of the dense path on the same matrix (a plain HDF5 dataset by h5py)."""
    x = counts()
    path = tmp_path / "dense.h5"
    with h5py.File(path, "w") as f:
        f["X"] = x
    out, _ = fit(path, *FIT_ARGS, out_name="dense-result.h5")
    with h5py.File(out) as f:
        return f["W"][:]


def w_of(out):
    return ad.read_h5ad(out).obsm["X_nmf"]


def assert_same_w(w, reference):
    np.testing.assert_allclose(w, reference, rtol=1e-3, atol=1e-4 * np.abs(reference).max())


@pytest.mark.parametrize("encoding", ["dense", "csr", "csc"])
def test_anndata_encodings_match_the_dense_path(fit, tmp_path, dense_w, encoding):
    x = counts()
    a = adata({"dense": x, "csr": sp.csr_matrix(x), "csc": sp.csc_matrix(x)}[encoding])
    path = tmp_path / f"{encoding}.h5ad"
    a.write_h5ad(path)
    out, summary = fit(path, *FIT_ARGS)
    assert summary["n_rows"] == 80 and summary["n_cols"] == 30
    assert_same_w(w_of(out), dense_w)


def test_layers_raw_and_lzf(fit, tmp_path, dense_w):
    x = counts()
    a = adata(np.log1p(x))
    a.layers["counts"] = sp.csr_matrix(x)
    a.raw = adata(sp.csr_matrix(x))
    path = tmp_path / "layered.h5ad"
    a.write_h5ad(path, compression="lzf")
    for flag in (["--layer", "counts"], ["--raw"]):
        out, _ = fit(path, *FIT_ARGS, *flag)
        assert_same_w(w_of(out), dense_w)


def test_result_h5ad_loads_with_names_and_keys(fit, tmp_path):
    x = counts()
    path = tmp_path / "in.h5ad"
    adata(sp.csr_matrix(x)).write_h5ad(path)
    out, summary = fit(path, *FIT_ARGS, "--normalize", "cp10k-log1p")
    result = ad.read_h5ad(out)
    assert result.shape == (80, 30)
    assert list(result.obs_names) == names("cell", 80)
    assert list(result.var_names) == names("gene", 30)
    assert result.obsm["X_nmf"].shape == (80, K)
    assert result.varm["NMF_H"].shape == (30, K)
    cluster = result.obs["nmf_cluster"]
    assert isinstance(cluster.dtype, pd.CategoricalDtype)
    np.testing.assert_array_equal(cluster.cat.codes.to_numpy(), result.obsm["X_nmf"].argmax(axis=1))
    nmf = result.uns["nmf"]
    assert nmf["params"]["k"] == K
    assert nmf["params"]["normalize"] == "cp10k-log1p"
    assert len(nmf["rel_error"]) == summary["n_iter"] == 15
    assert isinstance(nmf["nmflow_version"], str)
    assert result.X is None  # X is not copied


def test_tenx_layout_written_with_h5py(fit, tmp_path, dense_w):
    x = counts()
    csc = sp.csr_matrix(x).T.tocsc()  # genes × cells, compressed by cell
    path = tmp_path / "filtered_feature_bc_matrix.h5"
    with h5py.File(path, "w") as f:
        m = f.create_group("matrix")
        m["data"] = csc.data.astype(np.int32)
        m["indices"] = csc.indices.astype(np.int64)
        m["indptr"] = csc.indptr.astype(np.int64)
        m["shape"] = np.array([30, 80], dtype=np.int32)
        m["barcodes"] = np.array([f"AAAC{i:04d}-1" for i in range(80)], dtype="S12")
        feats = m.create_group("features")
        feats["id"] = np.array([f"ENSG{i:05d}" for i in range(30)], dtype="S10")
        feats["name"] = np.array(names("gene", 30), dtype="S8")
        feats["feature_type"] = np.array([b"Gene Expression"] * 30)
        feats["genome"] = np.array([b"GRCh38"] * 30)
    out, _ = fit(path, *FIT_ARGS)
    assert_same_w(w_of(out), dense_w)
    result = ad.read_h5ad(out)
    assert result.obs_names[0] == "AAAC0000-1"
    assert result.var["gene_ids"].iloc[0] == "ENSG00000"


def test_loom_written_by_loompy(fit, tmp_path, dense_w):
    x = counts()
    path = tmp_path / "cells.loom"
    loompy.create(
        str(path),
        x.T,
        row_attrs={"Gene": np.array(names("gene", 30))},
        col_attrs={"CellID": np.array(names("cell", 80))},
    )
    out, summary = fit(path, *FIT_ARGS)
    assert summary["n_rows"] == 80
    assert_same_w(w_of(out), dense_w)
    assert ad.read_h5ad(out).obs_names[0] == "cell0"
    # Genes as rows.
    out, summary = fit(path, *FIT_ARGS, "--transpose", out_name="genes.h5ad")
    assert (summary["n_rows"], summary["n_cols"]) == (30, 80)


def test_write_into_keeps_the_file_readable_with_its_content(nmflow_bin, tmp_path):
    x = counts()
    a = adata(sp.csr_matrix(x))
    a.obs["batch"] = pd.Categorical(["a", "b"] * 40)
    a.obsm["X_pca"] = np.ones((80, 2), dtype=np.float32)
    path = tmp_path / "mine.h5ad"
    a.write_h5ad(path)
    cmd = [str(nmflow_bin), "fit", str(path), *map(str, FIT_ARGS), "--write-into", str(path)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    b = ad.read_h5ad(path)
    np.testing.assert_array_equal(b.X.toarray(), x)
    assert list(b.obs["batch"]) == list(a.obs["batch"])
    assert set(b.obsm) == {"X_pca", "X_nmf"}
    assert b.varm["NMF_H"].shape == (30, K)
    assert b.varm["NMF_H_scaled"].shape == (30, K)
    assert "nmf_cluster" in b.obs
    assert b.uns["nmf"]["params"]["k"] == K
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.h5ad", "mine.programs.tsv"]


def test_sweep_scores_labels_of_an_anndata_categorical_column_as_scikit_learn(nmflow_bin, tmp_path):
    """`--labels` reads an obs column written by anndata (categorical, with a
    missing value); ARI and NMI equal scikit-learn's on the written clusters."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    x = counts(n_cells=120)
    a = adata(x)
    rng = np.random.default_rng(1)
    kinds = rng.choice(["B", "T", "NK"], size=x.shape[0]).astype(object)
    kinds[3] = None
    a.obs["cell_type"] = pd.Categorical(kinds)
    path = tmp_path / "labelled.h5ad"
    a.write_h5ad(path)
    out = tmp_path / "sweep"
    cmd = [str(nmflow_bin), "sweep", str(path), "-k", "2..3", "--restarts", "2", "--max-iter", "20",
           "--labels", "cell_type", "-o", str(out), "-q", "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    codes = a.obs["cell_type"].cat.codes.to_numpy()
    import json
    summary = json.loads(done.stdout)
    for row in summary["per_k"]:
        # An h5ad input's sweep writes kK.h5ad: the clusters are obs's
        # nmf_cluster, whose categories are "0" .. "k-1".
        assert row["result"].endswith(".h5ad")
        clusters = ad.read_h5ad(out / row["result"]).obs["nmf_cluster"].astype(int).to_numpy()
        assert row["ari"] == pytest.approx(adjusted_rand_score(codes, clusters), abs=1e-12)
        assert row["nmi"] == pytest.approx(normalized_mutual_info_score(codes, clusters), abs=1e-12)
    table = (out / "sweep.tsv").read_text().splitlines()
    assert table[0].split("\t")[:8] == ["k", "best_rel_error", "mean_rel_error", "sd_rel_error",
                                        "cophenetic", "spectra_stability", "ari", "nmi"]


def test_stored_principal_components_match_numpy_svd(fit, tmp_path):
    """/sample/pca: the first two principal components of the sampled rows of
    X / X.std(axis=0), as numpy's SVD of the centred sample gives them."""
    x = counts(n_cells=300, n_genes=40, seed=3)
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        f["X"] = x
    out, _ = fit(path, *FIT_ARGS, "--sample", 120, out_name="pca.h5")
    with h5py.File(out) as f:
        rows = f["sample/rows"][:]
        pca = f["sample/pca"][:]
        ratio = f["sample/pca_variance_ratio"][:]
    assert len(rows) == 120 and np.all(np.diff(rows) > 0)
    std = x.std(axis=0)
    xs = x / np.where(std > 0, std, 1)
    s = xs[rows].astype(np.float64)
    s -= s.mean(axis=0)
    u, sv, _ = np.linalg.svd(s, full_matrices=False)
    for j in range(2):
        ref = u[:, j] * sv[j]
        ref *= np.sign(ref[np.argmax(np.abs(ref))])
        np.testing.assert_allclose(pca[:, j], ref, atol=1e-3 * np.abs(ref).max())
        assert ratio[j] == pytest.approx(sv[j] ** 2 / (s**2).sum(), rel=1e-4)


REAL = __import__("pathlib").Path(__file__).resolve().parents[3] / "shared" / "data" / "real"


@pytest.mark.parametrize("name", ["anndata-v0.7.0.synthetic.h5ad", "anndata-v0.7.8.synthetic.h5ad"])
def test_write_into_an_anndata_07_file_puts_the_clusters_in_obs(nmflow_bin, tmp_path, name):
    """anndata 0.7 wrote dataframes in encoding 0.1.0 (categories behind an
    object reference); `--write-into` writes `obs['nmf_cluster']` in that
    encoding, so `sc.pl.umap(adata, color='nmf_cluster')` finds it."""
    source = REAL / "original" / name
    if not source.exists():
        pytest.skip(f"{source} is absent (shared/data/real is not beside the project)")
    import shutil
    path = tmp_path / name
    shutil.copyfile(source, path)
    before = ad.read_h5ad(path)
    k = 2
    cmd = [str(nmflow_bin), "fit", str(path), "-k", str(k), "--max-iter", "5", "-q",
           "--write-into", str(path)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    after = ad.read_h5ad(path)
    assert after.obs["nmf_cluster"].dtype == "category"
    assert list(after.obs["nmf_cluster"].cat.categories) == [str(c) for c in range(k)]
    clusters = np.asarray(after.obsm["X_nmf"]).argmax(axis=1)
    assert list(after.obs["nmf_cluster"].astype(int)) == list(clusters)
    for column in before.obs.columns:
        assert after.obs[column].equals(before.obs[column]), column
    assert "cluster" not in after.uns["nmf"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, name.replace(".h5ad", ".programs.tsv")])


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("tol", [1e-3, 1e-4])
def test_tol_stops_where_scikit_learn_mu_stops_from_the_same_start(nmflow_bin, tmp_path, seed, tol):
    """`--tol` is scikit-learn's rule (every 10 iterations, stop when the error
    fell by less than tol × the error of the start). scikit-learn updates W
    first and nmflow H first, so scikit-learn factorizes Xᵀ from (H₀ᵀ, W₀ᵀ):
    the same iterates in the same order."""
    from sklearn.decomposition import NMF

    k = 4
    x = counts(n_cells=300, n_genes=60, seed=seed)
    x = x[:, x.std(axis=0) > 0]
    xs = (x / x.std(axis=0)).astype(np.float32)
    rng = np.random.default_rng(100 + seed)
    w0 = rng.random((xs.shape[0], k)).astype(np.float32)
    h0 = rng.random((k, xs.shape[1])).astype(np.float32)
    for name, a in [("x", xs), ("w0", w0), ("h0", h0)]:
        np.save(tmp_path / f"{name}.npy", a)
    model = NMF(n_components=k, solver="mu", init="custom", tol=tol, max_iter=1000)
    model.fit_transform(np.ascontiguousarray(xs.T), W=np.ascontiguousarray(h0.T),
                        H=np.ascontiguousarray(w0.T))
    cmd = [str(nmflow_bin), "fit", str(tmp_path / "x.npy"), "-k", str(k), "--init", "custom",
           "--w0", str(tmp_path / "w0.npy"), "--h0", str(tmp_path / "h0.npy"), "--scale", "none",
           "--tol", str(tol), "--max-iter", "1000", "--json", "-q", "-o", str(tmp_path / "r.h5")]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    summary = __import__("json").loads(done.stdout)
    assert summary["n_iter"] == model.n_iter_
    rel = model.reconstruction_err_ / np.linalg.norm(xs)
    assert summary["rel_error"] == pytest.approx(rel, rel=1e-4)
