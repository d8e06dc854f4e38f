"""nmflow's solvers against scikit-learn's on the same start.

scikit-learn updates W before H and nmflow H before W, so scikit-learn
factorizes Xᵀ from (H₀ᵀ, W₀ᵀ): both then update the factor on the genes'
side first, and follow the same iterates. scikit-learn's penalty on its W
(here nmflow's Hᵀ) is scaled by its number of features (the cells), which
is how nmflow scales its penalty on H: alpha_W and alpha_H swap sides."""

import json
import subprocess

import h5py
import numpy as np
import pytest
import scipy.sparse as sp


def matrix(kind, seed):
    rng = np.random.default_rng(seed)
    if kind == "counts":
        programs = rng.gamma(0.5, 1.0, size=(4, 40))
        usage = rng.dirichlet(np.ones(4) * 0.3, size=150)
        x = rng.poisson(4.0 * usage @ programs).astype(np.float32)
    elif kind == "sparse":
        x = sp.random(160, 50, density=0.15, random_state=seed, dtype=np.float32).toarray() * 10
    else:  # dense, uniform
        x = rng.random((120, 30), dtype=np.float32)
    keep = x.std(axis=0) > 0
    return np.ascontiguousarray(x[:, keep])


def start(x, k, seed):
    rng = np.random.default_rng(100 + seed)
    w0 = rng.random((x.shape[0], k)).astype(np.float32)
    h0 = rng.random((k, x.shape[1])).astype(np.float32)
    return w0, h0


def sklearn_fit(x, w0, h0, **kwargs):
    """scikit-learn on Xᵀ from (H₀ᵀ, W₀ᵀ); returns (W, H, n_iter) in nmflow's orientation."""
    from sklearn.decomposition import NMF

    model = NMF(n_components=w0.shape[1], init="custom", **kwargs)
    ht = model.fit_transform(np.ascontiguousarray(x.T), W=np.ascontiguousarray(h0.T),
                             H=np.ascontiguousarray(w0.T))
    return model.components_.T, ht.T, model.n_iter_


def nmflow_fit(nmflow_bin, tmp_path, x, w0, h0, *args):
    for name, a in [("x", x), ("w0", w0), ("h0", h0)]:
        np.save(tmp_path / f"{name}.npy", a)
    out = tmp_path / "r.h5"
    cmd = [str(nmflow_bin), "fit", str(tmp_path / "x.npy"), "-k", str(w0.shape[1]), "--init", "custom",
           "--w0", str(tmp_path / "w0.npy"), "--h0", str(tmp_path / "h0.npy"), "--scale", "none",
           "--tol", "0", "--json", "-q", "--force", "-o", str(out), *map(str, args)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with h5py.File(out) as f:
        return f["W"][:], f["H"][:], f["rel_error"][:], json.loads(done.stdout)


def rel_error(x, w, h):
    x = x.astype(np.float64)
    return np.linalg.norm(x - w.astype(np.float64) @ h.astype(np.float64)) / np.linalg.norm(x)


def rel_diff(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


@pytest.mark.parametrize("kind", ["counts", "sparse", "uniform"])
def test_hals_reaches_the_fixed_point_of_scikit_learn_cd(nmflow_bin, tmp_path, kind):
    x = matrix(kind, seed=3)
    k = 4
    w0, h0 = start(x, k, seed=3)
    w_sk, h_sk, n_iter = sklearn_fit(x, w0, h0, solver="cd", tol=0.0, max_iter=500)
    w, h, trace, summary = nmflow_fit(nmflow_bin, tmp_path, x, w0, h0, "--solver", "hals",
                                      "--inner", "1", "--max-iter", n_iter)
    assert summary["n_iter"] == n_iter
    assert (w >= 0).all() and (h >= 0).all()
    assert np.all(np.diff(trace) <= 1e-6 * trace[:-1]), "the error rose"
    assert abs(trace[-1] - rel_error(x, w_sk, h_sk)) < 1e-3
    assert summary["rel_error"] == pytest.approx(rel_error(x, w, h), rel=1e-4)


def test_hals_follows_scikit_learn_cd_iterates(nmflow_bin, tmp_path):
    x = matrix("counts", seed=5)
    w0, h0 = start(x, 3, seed=5)
    w_sk, h_sk, _ = sklearn_fit(x, w0, h0, solver="cd", tol=0.0, max_iter=20)
    w, h, _, _ = nmflow_fit(nmflow_bin, tmp_path, x, w0, h0, "--solver", "hals", "--inner", "1",
                            "--max-iter", 20)
    assert rel_diff(w, w_sk) < 1e-3 and rel_diff(h, h_sk) < 1e-3


@pytest.mark.parametrize("solver", ["mu", "hals"])
@pytest.mark.parametrize("l1_ratio", [0.0, 0.5, 1.0])
def test_penalties_follow_scikit_learn(nmflow_bin, tmp_path, solver, l1_ratio):
    x = matrix("counts", seed=7)
    w0, h0 = start(x, 3, seed=7)
    alpha_w, alpha_h = 0.01, 0.002
    n_iter = 50 if solver == "mu" else 20
    w_sk, h_sk, _ = sklearn_fit(x, w0, h0, solver="mu" if solver == "mu" else "cd", tol=0.0,
                                max_iter=n_iter, alpha_W=alpha_h, alpha_H=alpha_w, l1_ratio=l1_ratio)
    w, h, _, _ = nmflow_fit(nmflow_bin, tmp_path, x, w0, h0, "--solver", solver, "--max-iter", n_iter,
                            "--inner", "1", "--alpha-w", alpha_w, "--alpha-h", alpha_h,
                            "--l1-ratio", l1_ratio)
    tol = 1e-4 if solver == "mu" else 1e-3
    assert rel_diff(w, w_sk) < tol and rel_diff(h, h_sk) < tol, (rel_diff(w, w_sk), rel_diff(h, h_sk))


@pytest.mark.parametrize("storage", ["dense", "sparse"])
def test_kullback_leibler_follows_scikit_learn_mu(nmflow_bin, tmp_path, storage):
    """scikit-learn's β = 1 updates, from the same start, the same iterates:
    W and H within 1e-4 after 50 iterations, on a dense .npy and a CSR h5ad."""
    import anndata as ad

    x = matrix("counts", seed=11)
    w0, h0 = start(x, 3, seed=11)
    w_sk, h_sk, _ = sklearn_fit(x, w0, h0, solver="mu", beta_loss="kullback-leibler", tol=0.0,
                                max_iter=50)
    args = ["--beta-loss", "kullback-leibler", "--max-iter", 50]
    if storage == "dense":
        w, h, trace, summary = nmflow_fit(nmflow_bin, tmp_path, x, w0, h0, *args)
    else:
        path = tmp_path / "x.h5ad"
        ad.AnnData(X=sp.csr_matrix(x)).write_h5ad(path)
        for name, a in [("w0", w0), ("h0", h0)]:
            np.save(tmp_path / f"{name}.npy", a)
        out = tmp_path / "r.h5"
        cmd = [str(nmflow_bin), "fit", str(path), "-k", "3", "--init", "custom", "--w0",
               str(tmp_path / "w0.npy"), "--h0", str(tmp_path / "h0.npy"), "--scale", "none",
               "--tol", "0", "--json", "-q", "--force", "-o", str(out), *map(str, args)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        with h5py.File(out) as f:
            w, h, trace = f["W"][:], f["H"][:], f["rel_error"][:]
        summary = json.loads(done.stdout)
    assert rel_diff(w, w_sk) < 1e-4 and rel_diff(h, h_sk) < 1e-4, (rel_diff(w, w_sk), rel_diff(h, h_sk))
    assert np.all(np.diff(trace) <= 1e-6 * trace[:-1])
    # The trace is sqrt(2 D(X ‖ WH)) / ‖X‖_F: scikit-learn's reconstruction error over ‖X‖_F.
    from sklearn.decomposition._nmf import _beta_divergence

    err = _beta_divergence(x, w_sk, h_sk, 1, square_root=True) / np.linalg.norm(x)
    assert summary["rel_error"] == pytest.approx(err, rel=1e-4)


def test_kullback_leibler_with_hals_is_refused_before_any_work(nmflow_bin, tmp_path):
    x = matrix("counts", seed=1)
    np.save(tmp_path / "x.npy", x)
    done = subprocess.run([str(nmflow_bin), "fit", str(tmp_path / "x.npy"), "-k", "2", "--solver", "hals",
                           "--beta-loss", "kullback-leibler", "-o", str(tmp_path / "r.h5")],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert "--solver mu" in done.stderr
    assert not (tmp_path / "r.h5").exists()


@pytest.mark.parametrize("init", ["nndsvd", "nndsvda"])
def test_nndsvd_starts_are_scikit_learns(nmflow_bin, tmp_path, init):
    """On a matrix of rank 6 < k + 10 the streamed randomized SVD is exact:
    nmflow's start equals scikit-learn's `_initialize_nmf`, seen through one
    update from it (scikit-learn on Xᵀ from its start, transposed)."""
    from sklearn.decomposition import NMF
    from sklearn.decomposition._nmf import _initialize_nmf

    rng = np.random.default_rng(0)
    x = (rng.random((200, 6)) @ rng.random((6, 40))).astype(np.float32)
    w0, h0 = _initialize_nmf(x, 4, init=init, random_state=0)
    model = NMF(n_components=4, init="custom", solver="mu", tol=0.0, max_iter=1)
    ht = model.fit_transform(np.ascontiguousarray(x.T), W=np.ascontiguousarray(h0.T),
                             H=np.ascontiguousarray(w0.T))
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "r.h5"
    done = subprocess.run([str(nmflow_bin), "fit", str(tmp_path / "x.npy"), "-k", "4", "--init", init,
                           "--scale", "none", "--tol", "0", "--max-iter", "1", "-q", "-o", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with h5py.File(out) as f:
        w, h = f["W"][:], f["H"][:]
        assert f.attrs["init"] == init
    assert rel_diff(w, model.components_.T) < 1e-4 and rel_diff(h, ht.T) < 1e-4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.h5", "r.programs.tsv", "x.npy"]
