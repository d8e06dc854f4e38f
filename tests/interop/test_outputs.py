"""What a scientist reads out of a result, checked with the tools they use:
the loadings in the data's units (anndata), the programs' table (pandas),
and X ≈ W·H in the data's units within the fit's own error."""

import anndata as ad
import h5py
import numpy as np
import pandas as pd

from test_interop import adata, counts


def test_loadings_in_the_data_units_reconstruct_it_as_the_fit_reports(fit, tmp_path):
    x = counts(n_cells=120, n_genes=30)
    x[:, 3] *= 40  # a highly expressed gene, as ribosomal ones are
    path = tmp_path / "in.h5ad"
    adata(x).write_h5ad(path)
    out, summary = fit(path, "-k", 3, "--max-iter", 200, "--tol", 0, "-q")
    result = ad.read_h5ad(out)
    h32, scaled32 = result.varm["NMF_H"].T, result.varm["NMF_H_scaled"].T
    scale32 = result.uns["nmf"]["col_scale"]
    # The one product, in single precision as nmflow forms it.
    np.testing.assert_array_equal(h32, scaled32 * scale32)
    h, col_scale = h32.astype(np.float64), scale32.astype(np.float64)
    assert "H_scaled times col_scale" in result.uns["nmf"]["loadings"]
    w = result.obsm["X_nmf"].astype(np.float64)
    # The fit's error is measured on X / col_scale; the same error follows
    # from W·H in the data's units.
    d = np.where(col_scale > 0, col_scale, 1.0)
    rel = np.linalg.norm((x - w @ h) / d) / np.linalg.norm(x / d)
    assert abs(rel - summary["rel_error"]) < 1e-4, (rel, summary["rel_error"])

    # The programs' table beside the result, as pandas and the index read it.
    table = pd.read_csv(tmp_path / "result.programs.tsv", sep="\t")
    assert list(table.columns) == ["program", "rank", "gene", "loading", "specificity"]
    assert len(table) == 3 * 30
    assert set(table["gene"]) <= set(result.var_names)
    for p, rows in table.groupby("program"):
        top = rows.sort_values("rank").iloc[0]
        assert top["gene"] == result.var_names[int(np.argmax(h[p]))]
        np.testing.assert_allclose(top["loading"], h[p].max(), rtol=1e-6)
    # The plain HDF5 result holds the same two H.
    plain, _ = fit(path, "-k", 3, "--max-iter", 200, "--tol", 0, "-q", out_name="plain.h5")
    with h5py.File(plain) as f:
        np.testing.assert_array_equal(f["H"][:], result.varm["NMF_H"].T)
        np.testing.assert_array_equal(f["H_scaled"][:], result.varm["NMF_H_scaled"].T)


def test_an_h5ad_result_carries_the_inputs_annotations(fit, tmp_path):
    """The calls that failed on results before: an obs column and an
    embedding of the input, read from the result alone."""
    x = counts(n_cells=80, n_genes=30)
    a = adata(x)
    a.obs["cell_type"] = pd.Categorical(["B", "T", "NK", "T"] * 20)
    a.obs["n_counts"] = x.sum(axis=1)
    a.var["highly_variable"] = np.arange(30) % 2 == 0
    a.obsm["X_umap"] = np.random.default_rng(1).random((80, 2)).astype(np.float32)
    a.obsm["X_big"] = np.zeros((80, 100), dtype=np.float32)
    a.uns["cell_type_colors"] = np.array(["#1f77b4", "#ff7f0e", "#2ca02c"], dtype=object)
    path = tmp_path / "in.h5ad"
    a.write_h5ad(path)
    out, summary = fit(path, "-k", 3, "--max-iter", 20, "-q")
    b = ad.read_h5ad(out)
    assert b.X is None
    assert list(b.obs_names) == list(a.obs_names) and list(b.var_names) == list(a.var_names)
    assert b.obs["cell_type"].dtype == "category"
    assert list(b.obs["cell_type"]) == list(a.obs["cell_type"])
    np.testing.assert_array_equal(b.obs["n_counts"], a.obs["n_counts"])
    assert list(b.var["highly_variable"]) == list(a.var["highly_variable"])
    np.testing.assert_array_equal(b.obsm["X_umap"], a.obsm["X_umap"])
    assert "X_big" not in b.obsm  # more than 64 columns: not copied
    assert list(b.uns["cell_type_colors"]) == list(a.uns["cell_type_colors"])
    clusters = np.asarray(b.obsm["X_nmf"]).argmax(axis=1)
    assert list(b.obs["nmf_cluster"].astype(int)) == list(clusters)
    assert summary["output"].endswith("result.h5ad")


def test_inspect_marks_the_default_matrix_and_leaves_graphs_out(nmflow_bin, tmp_path):
    import json
    import subprocess

    import scipy.sparse as sp

    x = counts(n_cells=40, n_genes=30)
    a = adata(sp.csr_matrix(x))
    a.layers["counts"] = sp.csr_matrix(x)
    a.obsp["connectivities"] = sp.random(40, 40, density=0.1, format="csr", random_state=0)
    a.uns["neighbors"] = {"params": {"n_neighbors": 15}}
    path = tmp_path / "graph.h5ad"
    a.write_h5ad(path)
    done = subprocess.run([str(nmflow_bin), "inspect", str(path), "--json"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    entries = {e["dataset"].strip("/"): e for e in json.loads(done.stdout)}
    assert entries["X"]["factorizable"] and entries["X"]["default"]
    assert entries["layers/counts"]["factorizable"] and not entries["layers/counts"]["default"]
    assert not entries["obsp/connectivities"]["factorizable"]
    text = subprocess.run([str(nmflow_bin), "inspect", str(path)], capture_output=True, text=True).stdout
    assert "X  (what fit factorizes by default)" in text


def test_a_sweep_of_an_h5ad_writes_results_anndata_opens(nmflow_bin, tmp_path):
    import json
    import subprocess

    x = counts(n_cells=60, n_genes=30)
    a = adata(x)
    a.obs["cell_type"] = pd.Categorical(["B", "T", "NK"] * 20)
    path = tmp_path / "in.h5ad"
    a.write_h5ad(path)
    out = tmp_path / "sweep"
    done = subprocess.run([str(nmflow_bin), "sweep", str(path), "-k", "2..3", "--restarts", "2",
                           "--max-iter", "20", "-q", "-o", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "sweep.json").read_text())
    assert [r["result"] for r in summary["per_k"]] == ["k2.h5ad", "k3.h5ad"]
    for k in (2, 3):
        b = ad.read_h5ad(out / f"k{k}.h5ad")
        assert b.obsm["X_nmf"].shape == (60, k)
        assert list(b.obs["cell_type"]) == list(a.obs["cell_type"])
        assert (out / f"k{k}.programs.tsv").exists()
    plain = tmp_path / "plain"
    done = subprocess.run([str(nmflow_bin), "sweep", str(path), "-k", "2", "--restarts", "2",
                           "--max-iter", "20", "-q", "--format", "h5", "-o", str(plain)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (plain / "k2.h5").exists() and not (plain / "k2.h5ad").exists()


def test_copy_x_puts_the_inputs_x_in_the_result(fit, tmp_path):
    import scipy.sparse as sp

    x = counts(n_cells=50, n_genes=30)
    path = tmp_path / "in.h5ad"
    adata(sp.csr_matrix(x)).write_h5ad(path)
    out, _ = fit(path, "-k", 2, "--max-iter", 10, "-q", "--copy-x", out_name="with-x.h5ad")
    b = ad.read_h5ad(out)
    np.testing.assert_array_equal(b.X.toarray(), x)
    without, _ = fit(path, "-k", 2, "--max-iter", 10, "-q", out_name="without-x.h5ad")
    assert ad.read_h5ad(without).X is None
