"""h5ad files written by anndata before 0.7 (2017–2019; scanpy's own
`pbmc68k_reduced` example is one): built with h5py from anndata's documented
legacy layout (obs and var as compound datasets with an `index` field,
categorical codes with their categories in `uns/<column>_categories`,
sparse matrices as groups with `h5sparse_format`/`h5sparse_shape`, raw at the
root as `raw.X`, `raw.var`, `raw.varm`, obsm as a compound dataset), and
checked with anndata's own reader where it still reads them."""

import json
import subprocess

import anndata as ad
import h5py
import numpy as np
import pytest
import scipy.sparse as sp

from test_interop import FIT_ARGS, K, assert_same_w, counts


def write_legacy(path, x, raw_x, cell_types):
    n_cells, n_genes = x.shape
    n_raw_genes = raw_x.shape[1]
    cats = sorted(set(cell_types))
    with h5py.File(path, "w") as f:
        def csr(name, m):
            m = sp.csr_matrix(m)
            g = f.create_group(name)
            g.attrs["h5sparse_format"] = "csr"
            g.attrs["h5sparse_shape"] = np.array(m.shape)
            g["data"] = m.data
            g["indices"] = m.indices
            g["indptr"] = m.indptr

        csr("X", x)
        csr("raw.X", raw_x)
        obs = np.zeros(n_cells, dtype=[("index", "S12"), ("cell_type", "i1"), ("n_counts", "<f4")])
        obs["index"] = [f"cell{i}".encode() for i in range(n_cells)]
        obs["cell_type"] = [cats.index(c) for c in cell_types]
        obs["n_counts"] = raw_x.sum(axis=1)
        f["obs"] = obs
        var = np.zeros(n_genes, dtype=[("index", "S10"), ("highly_variable", "?")])
        var["index"] = [f"gene{i}".encode() for i in range(n_genes)]
        f["var"] = var
        raw_var = np.zeros(n_raw_genes, dtype=[("index", "S10")])
        raw_var["index"] = [f"rgene{i}".encode() for i in range(n_raw_genes)]
        f["raw.var"] = raw_var
        f["raw.varm"] = np.zeros(n_raw_genes, dtype=[("PCs", "<f4", (2,))])
        f["obsm"] = np.zeros(n_cells, dtype=[("X_pca", "<f4", (2,))])
        f["varm"] = np.zeros(n_genes, dtype=[("PCs", "<f4", (2,))])
        f.create_group("uns")
        f["uns/cell_type_categories"] = np.array([c.encode() for c in cats])


@pytest.fixture
def legacy(tmp_path):
    raw_x = counts(n_cells=80, n_genes=40, seed=3)
    x = raw_x[:, :30].copy()
    cell_types = [["B", "T", "NK"][i % 3] for i in range(80)]
    path = tmp_path / "legacy.h5ad"
    write_legacy(path, x, raw_x, cell_types)
    return path, x, raw_x, cell_types


def dense_w_of(fit, tmp_path, x, name):
    path = tmp_path / f"{name}.h5"
    with h5py.File(path, "w") as f:
        f["X"] = x
    out, _ = fit(path, *FIT_ARGS, out_name=f"{name}-result.h5")
    with h5py.File(out) as f:
        return f["W"][:]


def test_anndata_reads_the_fixture_as_a_legacy_file(legacy):
    path, x, raw_x, cell_types = legacy
    a = ad.read_h5ad(path)
    np.testing.assert_array_equal(a.X.toarray(), x)
    np.testing.assert_array_equal(a.raw.X.toarray(), raw_x)
    assert list(a.obs_names[:2]) == ["cell0", "cell1"]
    assert list(a.obs["cell_type"][:3]) == ["B", "T", "NK"]


def test_x_raw_and_names_of_a_legacy_file(fit, tmp_path, legacy):
    path, x, raw_x, _ = legacy
    out, summary = fit(path, *FIT_ARGS, out_name="x.h5ad")
    assert (summary["n_rows"], summary["n_cols"]) == x.shape
    assert_same_w(ad.read_h5ad(out).obsm["X_nmf"], dense_w_of(fit, tmp_path, x, "x"))
    b = ad.read_h5ad(out)
    assert list(b.obs_names[:2]) == ["cell0", "cell1"]
    assert list(b.var_names[:2]) == ["gene0", "gene1"]

    out, summary = fit(path, "--raw", *FIT_ARGS, out_name="raw.h5ad")
    assert (summary["n_rows"], summary["n_cols"]) == raw_x.shape
    b = ad.read_h5ad(out)
    assert list(b.var_names[-2:]) == ["rgene38", "rgene39"]
    assert_same_w(b.obsm["X_nmf"], dense_w_of(fit, tmp_path, raw_x, "raw"))


def test_labels_from_a_compound_obs_column(nmflow_bin, tmp_path, legacy):
    from sklearn.metrics import adjusted_rand_score

    path, _, _, cell_types = legacy
    out = tmp_path / "sweep"
    cmd = [str(nmflow_bin), "sweep", str(path), "-k", "2..3", "--restarts", "2", "--max-iter", "20",
           "--labels", "cell_type", "-o", str(out), "-q", "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["labels"].endswith("/obs[cell_type]")
    for row in summary["per_k"]:
        # An h5ad input's sweep writes kK.h5ad: the clusters are obs's
        # nmf_cluster, whose categories are "0" .. "k-1".
        assert row["result"].endswith(".h5ad")
        clusters = ad.read_h5ad(out / row["result"]).obs["nmf_cluster"].astype(int).to_numpy()
        assert row["ari"] == pytest.approx(adjusted_rand_score(cell_types, clusters), abs=1e-12)


def test_inspect_lists_x_and_raw(nmflow_bin, legacy):
    path = legacy[0]
    done = subprocess.run([str(nmflow_bin), "inspect", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "/X" in done.stdout and "/raw.X" in done.stdout, done.stdout


def test_write_into_a_legacy_file_is_refused_naming_it(nmflow_bin, tmp_path, legacy):
    path = legacy[0]
    before = path.read_bytes()
    cmd = [str(nmflow_bin), "fit", str(path), *map(str, FIT_ARGS), "--write-into", str(path)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 1
    assert str(path) in done.stderr and "-o result.h5ad" in done.stderr, done.stderr
    assert path.read_bytes() == before
    assert ".tmp" not in " ".join(p.name for p in tmp_path.iterdir())
