"""scikit-learn's multiplicative-update NMF on a matrix nmflow also
factorizes, for `cargo xtask bench`.

    python benches/sklearn_mu.py start INPUT K SEED OUTDIR
        draws W0, H0 (uniform [0, 1), float32), runs one scikit-learn
        iteration (W is updated before H) and writes W1.npy and H0.npy:
        nmflow started from (W1, H0) follows scikit-learn's iterates.
    python benches/sklearn_mu.py run INPUT K SEED N [DTYPE]
        runs N iterations from (W0, H0), in float32 (the default, nmflow's
        precision) or float64 (DTYPE `float64`: X, W0 and H0 converted
        before the clock starts), and prints one JSON object:
        seconds per iteration, peak RSS, BLAS info, and the relative error
        of (W_{N+1}, H_N) — the iterate nmflow reaches after N iterations
        from (W1, H0) — as well as scikit-learn's own (W_N, H_N).

INPUT is an HDF5 file: /X dense (from `synth seed`) or an anndata
csr_matrix group X (from `synth sc`). Values are used as they are
(nmflow runs with --scale none).
"""

import json
import resource
import sys
import time
import warnings
from pathlib import Path

import h5py
import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import NMF
from threadpoolctl import threadpool_info


def load(path):
    with h5py.File(path, "r") as f:
        x = f["X"]
        if isinstance(x, h5py.Dataset):
            return np.asarray(x[:], dtype=np.float32)
        shape = tuple(int(v) for v in x.attrs["shape"])
        return sp.csr_matrix(
            (np.asarray(x["data"][:], dtype=np.float32), x["indices"][:], x["indptr"][:]), shape=shape
        )


def start(x, k, seed):
    rng = np.random.default_rng(seed)
    w0 = rng.random((x.shape[0], k), dtype=np.float32)
    h0 = rng.random((k, x.shape[1]), dtype=np.float32)
    return w0, h0


def model(k, n_iter):
    return NMF(n_components=k, init="custom", solver="mu", beta_loss="frobenius", tol=0.0, max_iter=n_iter)


def rel_error(x, w, h):
    w = w.astype(np.float64)
    h = h.astype(np.float64)
    if sp.issparse(x):
        x_sq = float(x.multiply(x).sum())
        cross = float((x @ h.T).ravel() @ w.ravel())
    else:
        x64 = x.astype(np.float64)
        x_sq = float((x64 * x64).sum())
        cross = float(((x64 @ h.T) * w).sum())
    fit = float(((w.T @ w) * (h @ h.T)).sum())
    return max(x_sq - 2 * cross + fit, 0.0) ** 0.5 / x_sq**0.5


def main():
    warnings.simplefilter("ignore")
    mode, path, k, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    x = load(path)
    w0, h0 = start(x, k, seed)
    if mode == "start":
        out = Path(sys.argv[5])
        nmf = model(k, 1)
        w1 = nmf.fit_transform(x, W=w0.copy(), H=h0.copy())
        np.save(out / "W1.npy", w1.astype(np.float32))
        np.save(out / "H0.npy", h0)
        return
    n_iter = int(sys.argv[5])
    dtype = np.dtype(sys.argv[6]) if len(sys.argv) > 6 else np.dtype(np.float32)
    x, w0, h0 = x.astype(dtype), w0.astype(dtype), h0.astype(dtype)
    nmf = model(k, n_iter)
    began = time.perf_counter()
    w = nmf.fit_transform(x, W=w0.copy(), H=h0.copy())
    seconds = time.perf_counter() - began
    h = nmf.components_
    # nmflow started from (W1, H0) holds (W_{N+1}, H_N) after N iterations:
    # one more W update (untimed) gives the same iterate.
    numerator = np.asarray(x @ h.T, dtype=dtype)
    denominator = w @ (h @ h.T)
    denominator[denominator == 0] = np.finfo(dtype).eps
    w_next = w * (numerator / denominator)
    print(
        json.dumps(
            {
                "n_iter": int(nmf.n_iter_),
                "dtype": str(w.dtype),
                "seconds_per_iter": seconds / max(int(nmf.n_iter_), 1),
                "rel_error": rel_error(x, w_next, h),
                "rel_error_sklearn": rel_error(x, w, h),
                "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                "blas": [f"{i.get('internal_api')} {i.get('architecture')} threads={i.get('num_threads')}" for i in threadpool_info()],
            }
        )
    )


if __name__ == "__main__":
    main()
