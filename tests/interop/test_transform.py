"""`nmflow transform`: new cells projected onto the programs of a fit, as
scikit-learn's `NMF.transform` does (H fixed, W the non-negative least-squares
solution), with genes matched by name."""

import json
import subprocess

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest


def counts(n_cells, n_genes=30, seed=0):
    rng = np.random.default_rng(seed)
    programs = np.random.default_rng(99).gamma(0.5, 1.0, size=(4, n_genes))
    usage = rng.dirichlet(np.ones(4) * 0.3, size=n_cells)
    return rng.poisson(4.0 * usage @ programs + 0.1).astype(np.float32)


def write_adata(path, x, genes):
    a = ad.AnnData(X=x, obs=pd.DataFrame(index=[f"c{i}" for i in range(x.shape[0])]),
                   var=pd.DataFrame(index=list(genes)))
    a.write_h5ad(path)
    return path


def genes(n):
    return [f"g{j}" for j in range(n)]


def run(nmflow_bin, *args):
    done = subprocess.run([str(nmflow_bin), *map(str, args)], capture_output=True, text=True)
    return done


def fit(nmflow_bin, tmp_path, x, k=4):
    train = write_adata(tmp_path / "train.h5ad", x, genes(x.shape[1]))
    out = tmp_path / "fit.h5ad"
    done = run(nmflow_bin, "fit", train, "-k", k, "--solver", "hals", "--scale", "none", "--tol", 0,
               "--max-iter", 500, "-q", "-o", out)
    assert done.returncode == 0, done.stderr
    return out


def transform(nmflow_bin, tmp_path, path, components, *args, name="w.h5"):
    out = tmp_path / name
    done = run(nmflow_bin, "transform", path, "--components", components, "--json", "--force",
               "-o", out, *args)
    assert done.returncode == 0, done.stderr
    with h5py.File(out) as f:
        return f["W"][:], json.loads(done.stdout)


def rel_diff(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


def test_new_rows_get_scikit_learn_transform(nmflow_bin, tmp_path):
    from sklearn.decomposition import non_negative_factorization

    result = fit(nmflow_bin, tmp_path, counts(400))
    h = ad.read_h5ad(result).varm["NMF_H"].T.astype(np.float64)
    x_new = counts(150, seed=1)
    path = write_adata(tmp_path / "new.h5ad", x_new, genes(30))
    w, summary = transform(nmflow_bin, tmp_path, path, result, "--tol", 1e-7)
    w_sk, _, _ = non_negative_factorization(x_new.astype(np.float64), H=h, n_components=4,
                                            update_H=False, solver="cd", tol=1e-10, max_iter=5000)
    assert rel_diff(w, w_sk) < 1e-3
    error = np.linalg.norm(x_new - w_sk @ h) / np.linalg.norm(x_new)
    assert summary["rel_error"] == pytest.approx(error, rel=1e-4)
    w_mu, _ = transform(nmflow_bin, tmp_path, path, result, "--solver", "mu", "--max-iter", 20000,
                        "--tol", 1e-9, name="mu.h5")
    assert rel_diff(w_mu, w_sk) < 1e-2


def test_the_training_rows_give_back_the_fitted_w(nmflow_bin, tmp_path):
    x = counts(400)
    result = fit(nmflow_bin, tmp_path, x)
    w, _ = transform(nmflow_bin, tmp_path, tmp_path / "train.h5ad", result, "--tol", 1e-7)
    assert rel_diff(w, np.asarray(ad.read_h5ad(result).obsm["X_nmf"])) < 1e-3


def test_genes_are_matched_by_name(nmflow_bin, tmp_path):
    result = fit(nmflow_bin, tmp_path, counts(300))
    x_new = counts(80, seed=2)
    w, _ = transform(nmflow_bin, tmp_path, write_adata(tmp_path / "same.h5ad", x_new, genes(30)), result)
    # Shuffled genes and three the fit never saw: the same W.
    order = np.random.default_rng(5).permutation(30)
    extra = np.random.default_rng(6).poisson(3.0, size=(80, 3)).astype(np.float32)
    shuffled = np.hstack([x_new[:, order], extra])
    path = write_adata(tmp_path / "shuffled.h5ad", shuffled, [f"g{j}" for j in order] + ["new0", "new1", "new2"])
    w_shuffled, summary = transform(nmflow_bin, tmp_path, path, result, name="shuffled.h5")
    assert (summary["matched_genes"], summary["ignored_genes"], summary["missing_genes"]) == (30, 3, 0)
    np.testing.assert_allclose(w_shuffled, w, rtol=1e-5, atol=1e-6 * np.abs(w).max())
    # Two genes of the programs missing: refused unless asked, then zeros.
    keep = [j for j in range(30) if j not in (4, 11)]
    path = write_adata(tmp_path / "missing.h5ad", x_new[:, keep], [f"g{j}" for j in keep])
    done = run(nmflow_bin, "transform", path, "--components", result, "-o", tmp_path / "m.h5")
    assert done.returncode == 2
    assert "2 of the 30 genes" in done.stderr and "g4, g11" in done.stderr
    assert not (tmp_path / "m.h5").exists()
    w_missing, summary = transform(nmflow_bin, tmp_path, path, result, "--allow-missing-genes", name="m.h5")
    assert summary["missing_genes"] == 2
    zeroed = x_new.copy()
    zeroed[:, [4, 11]] = 0
    w_zeroed, _ = transform(nmflow_bin, tmp_path, write_adata(tmp_path / "z.h5ad", zeroed, genes(30)),
                            result, name="z.h5")
    np.testing.assert_allclose(w_missing, w_zeroed, rtol=1e-5, atol=1e-6 * np.abs(w_zeroed).max())


def test_write_into_adds_the_projection_to_the_new_file(nmflow_bin, tmp_path):
    result = fit(nmflow_bin, tmp_path, counts(300))
    path = write_adata(tmp_path / "new.h5ad", counts(60, seed=3), genes(30))
    done = run(nmflow_bin, "transform", path, "--components", result, "--write-into", path, "-q")
    assert done.returncode == 0, done.stderr
    after = ad.read_h5ad(path)
    assert after.obsm["X_nmf"].shape == (60, 4)
    assert list(after.obs["nmf_cluster"].astype(int)) == list(np.asarray(after.obsm["X_nmf"]).argmax(axis=1))
    assert after.uns["nmf"]["params"]["command"] == "transform"
