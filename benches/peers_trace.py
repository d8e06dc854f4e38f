"""Error against time of the peers nmflow is measured with, for
`cargo xtask bench --time-to-error`.

    python benches/peers_trace.py SOLVER INPUT K MAX_ITER SECONDS [NORMALIZE]
        SOLVER is sklearn-cd or sklearn-mu: scikit-learn's NMF with that
        solver and its defaults otherwise (init nndsvda, no penalty),
        iteration by iteration through the same private update functions
        `NMF.fit` calls, timing only the initialisation and the updates.
        Stops after MAX_ITER iterations or SECONDS of timed work. Prints one
        JSON object: cumulative seconds and ‖X − WH‖_F / ‖X‖_F after every
        iteration, the seconds that reading (and normalising) the matrix
        took before them (`load_seconds`), peak RSS, BLAS.
    python benches/peers_trace.py export INPUT DIR [NORMALIZE]
        writes the matrix for R (Xᵀ, genes × cells): DIR/shape.txt and either
        DIR/dense.f64 (row-major X) or DIR/{indptr,indices}.i32 and
        DIR/data.f64 (CSR of X = CSC of Xᵀ).

INPUT is an HDF5 file: /X dense (from `synth seed`) or an anndata CSR group
X. NORMALIZE `cp10k-log1p` scales every row to 10,000 and takes log1p, as
`nmflow fit --normalize cp10k-log1p` does. Values are otherwise used as they
are (nmflow runs with --scale none).
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
from sklearn.decomposition import _nmf
from threadpoolctl import threadpool_info


def load(path, normalize):
    with h5py.File(path, "r") as f:
        x = f["X"]
        if isinstance(x, h5py.Dataset):
            x = np.asarray(x[:], dtype=np.float32)
        else:
            shape = tuple(int(v) for v in x.attrs["shape"])
            x = sp.csr_matrix(
                (np.asarray(x["data"][:], dtype=np.float32), x["indices"][:], x["indptr"][:]),
                shape=shape,
            )
    if normalize == "cp10k-log1p":
        sums = np.asarray(x.sum(axis=1), dtype=np.float64).ravel()
        factor = np.where(sums > 0, 1e4 / np.where(sums > 0, sums, 1.0), 0.0)
        if sp.issparse(x):
            x = sp.csr_matrix(sp.diags(factor.astype(np.float32)) @ x)
            x.data = np.log1p(x.data)
        else:
            x = np.log1p(x * factor[:, None].astype(np.float32))
    return x


def rel_error(x, x_sq, w, h):
    w = w.astype(np.float64)
    h = h.astype(np.float64)
    cross = float((np.asarray(x @ h.T) * w).sum())
    fit = float(((w.T @ w) * (h @ h.T)).sum())
    return max(x_sq - 2 * cross + fit, 0.0) ** 0.5 / x_sq**0.5


def trace(solver, x, k, max_iter, seconds):
    x_sq = float(x.multiply(x).sum()) if sp.issparse(x) else float((x.astype(np.float64) ** 2).sum())
    began = time.perf_counter()
    w, h = _nmf._initialize_nmf(x, k, init="nndsvda", random_state=0)
    elapsed = time.perf_counter() - began
    times, errors = [], []
    ht = np.ascontiguousarray(h.T)
    w = np.ascontiguousarray(w)
    x_t = x.T
    rng = np.random.RandomState(0)
    for _ in range(max_iter):
        began = time.perf_counter()
        if solver == "sklearn-cd":
            _nmf._update_coordinate_descent(x, w, ht, 0.0, 0.0, False, rng)
            _nmf._update_coordinate_descent(x_t, ht, w, 0.0, 0.0, False, rng)
            h = ht.T
        else:
            w, *_ = _nmf._multiplicative_update_w(x, w, h, 2, 0.0, 0.0, 1.0)
            h = _nmf._multiplicative_update_h(x, w, h, 2, 0.0, 0.0, 1.0)
        elapsed += time.perf_counter() - began
        times.append(elapsed)
        errors.append(rel_error(x, x_sq, w, h))
        if elapsed > seconds:
            break
    return times, errors


def export(x, out):
    out.mkdir(parents=True, exist_ok=True)
    (out / "shape.txt").write_text(f"{x.shape[0]} {x.shape[1]}\n")
    if sp.issparse(x):
        x = sp.csr_matrix(x)
        x.sort_indices()
        x.indptr.astype(np.int32).tofile(out / "indptr.i32")
        x.indices.astype(np.int32).tofile(out / "indices.i32")
        x.data.astype(np.float64).tofile(out / "data.f64")
    else:
        np.ascontiguousarray(x, dtype=np.float64).tofile(out / "dense.f64")


def main():
    warnings.simplefilter("ignore")
    mode = sys.argv[1]
    if mode == "export":
        x = load(sys.argv[2], sys.argv[4] if len(sys.argv) > 4 else "none")
        export(x, Path(sys.argv[3]))
        return
    path, k, max_iter, seconds = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
    began = time.perf_counter()
    x = load(path, sys.argv[6] if len(sys.argv) > 6 else "none")
    load_seconds = time.perf_counter() - began
    times, errors = trace(mode, x, k, max_iter, seconds)
    print(
        json.dumps(
            {
                "solver": mode,
                "seconds": times,
                "load_seconds": load_seconds,
                "rel_error": errors,
                "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                "blas": [f"{i.get('internal_api')} threads={i.get('num_threads')}" for i in threadpool_info()],
            }
        )
    )


if __name__ == "__main__":
    main()
