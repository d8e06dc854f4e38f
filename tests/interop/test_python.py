"""The Python package (`python/`, built from source into this venv by
scripts/test): the estimator against the command and scikit-learn,
scikit-learn's estimator checks, the scanpy-style tool against
`--write-into`, memory, Ctrl-C and errors."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

import nmflow
from test_solvers import matrix, rel_diff, sklearn_fit, start

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "real"


def cli_fit(nmflow_bin, tmp_path, input_spec, *args, name="r.h5"):
    out = tmp_path / name
    cmd = [str(nmflow_bin), "fit", str(input_spec), "-q", "--force", "-o", str(out), *map(str, args)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with h5py.File(out) as f:
        return f["W"][:], f["H"][:], f["rel_error"][:]


@pytest.fixture(scope="module")
def counts():
    return matrix("counts", seed=21)


def test_the_estimator_equals_the_command_bit_for_bit(nmflow_bin, tmp_path, counts):
    x = counts
    np.save(tmp_path / "x.npy", x)
    w_cli, h_cli, trace_cli = cli_fit(nmflow_bin, tmp_path, tmp_path / "x.npy", "-k", 4, "--seed", 3,
                                      "--max-iter", 40, "--restarts", 2)
    for given in [x, np.asfortranarray(x), x.astype(np.float64), tmp_path / "x.npy"]:
        model = nmflow.NMF(4, random_state=3, max_iter=40, restarts=2)
        w = model.fit_transform(given)
        assert np.array_equal(w.astype(np.float32), w_cli)
        assert np.array_equal(model.components_.astype(np.float32), h_cli)
        assert np.array_equal(model.rel_error_, trace_cli)
        assert model.n_iter_ == len(trace_cli) and model.n_components_ == 4
        assert model.n_features_in_ == x.shape[1]


def test_a_csr_matrix_equals_the_command_on_its_h5ad_file(nmflow_bin, tmp_path, counts):
    import anndata as ad

    x = sp.csr_matrix(counts)
    ad.AnnData(x).write_h5ad(tmp_path / "x.h5ad")
    args = ["-k", 3, "--seed", 1, "--max-iter", 30, "--block-rows", 64, "--normalize", "cp10k-log1p"]
    w_cli, h_cli, _ = cli_fit(nmflow_bin, tmp_path, tmp_path / "x.h5ad", *args)
    for given in [x, sp.csr_array(x), x.astype(np.float64), x.tocsc()]:
        model = nmflow.NMF(3, random_state=1, max_iter=30, block_rows=64, normalize="cp10k-log1p")
        w = model.fit_transform(given)
        assert np.array_equal(w.astype(np.float32), w_cli), type(given)
        assert np.array_equal(model.components_.astype(np.float32), h_cli)


def test_the_estimator_follows_scikit_learn_mu_from_the_same_start(counts):
    x = counts
    w0, h0 = start(x, 3, seed=4)
    w_sk, h_sk, _ = sklearn_fit(x, w0, h0, solver="mu", tol=0.0, max_iter=50)
    model = nmflow.NMF(3, init="custom", scale="none", tol=0.0, max_iter=50)
    w = model.fit_transform(x, W=w0, H=h0)
    assert model.n_iter_ == 50
    assert rel_diff(w, w_sk) < 1e-4 and rel_diff(model.components_, h_sk) < 1e-4


def test_scikit_learns_estimator_checks_pass():
    """Every check of scikit-learn's suite passes (none is listed as an
    expected failure). The transformer checks compare fit_transform's W with
    transform's (the non-negative least-squares solution for the learnt H)
    within 0.01, which holds at convergence: the estimator is checked with
    HALS run to convergence, as scikit-learn checks its own NMF with more
    iterations than its default."""
    from sklearn.utils.estimator_checks import check_estimator

    results = check_estimator(
        nmflow.NMF(n_components=2, solver="hals", max_iter=500, tol=1e-8), on_fail=None
    )
    failed = [r for r in results if r["status"] == "failed"]
    assert not failed, "\n".join(f"{r['check_name']}: {r['exception']!r}" for r in failed)
    assert sum(r["status"] == "passed" for r in results) >= 40


def test_the_estimator_works_in_a_pipeline_and_a_grid_search(counts):
    from sklearn.base import clone
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import Pipeline

    x = counts
    y = (x[:, 0] > np.median(x[:, 0])).astype(int)
    pipe = Pipeline([("nmf", nmflow.NMF(3, max_iter=30)), ("lr", LogisticRegression())])
    search = GridSearchCV(pipe, {"nmf__n_components": [2, 4]}, cv=2).fit(x, y)
    assert search.best_params_["nmf__n_components"] in (2, 4)
    copy = clone(nmflow.NMF(5, solver="hals", memory="1GiB"))
    assert copy.get_params()["solver"] == "hals" and copy.get_params()["memory"] == "1GiB"
    model = nmflow.NMF(3, max_iter=30).fit(x)
    w = model.transform(x)
    assert w.shape == (x.shape[0], 3) and (w >= 0).all()
    assert model.inverse_transform(w).shape == x.shape


def test_feature_names_are_kept_from_a_dataframe(counts):
    import pandas as pd

    frame = pd.DataFrame(counts, columns=[f"gene{j}" for j in range(counts.shape[1])])
    model = nmflow.NMF(2, max_iter=10).fit(frame)
    assert list(model.feature_names_in_) == list(frame.columns)
    assert list(model.get_feature_names_out()) == ["nmf0", "nmf1"]


def test_errors_arrive_as_python_exceptions_of_the_right_type(tmp_path, counts):
    with pytest.raises(ValueError, match="solver"):
        nmflow.NMF(2, solver="sgd").fit(counts)
    negative = counts.copy()
    negative[3, 1] = -1.0
    with pytest.raises(ValueError, match="negative"):
        nmflow.NMF(2).fit(negative)
    with pytest.raises(FileNotFoundError, match="no-such.h5ad"):
        nmflow.NMF(2).fit(tmp_path / "no-such.h5ad")
    with pytest.raises(MemoryError, match="budget"):
        nmflow.NMF(2, memory="1KiB").fit(counts)
    with pytest.raises(ValueError, match="max_iter"):
        nmflow.NMF(2, max_iter=0).fit(counts)


def test_a_fit_releases_the_interpreter(counts):
    """Another Python thread runs while a fit runs."""
    x = np.tile(counts, (20, 1))
    ticks = []
    done = threading.Event()

    def count():
        while not done.is_set():
            ticks.append(1)
            time.sleep(0.001)

    thread = threading.Thread(target=count)
    thread.start()
    started = time.perf_counter()
    nmflow.NMF(4, max_iter=200, tol=0.0).fit(x)
    seconds = time.perf_counter() - started
    done.set()
    thread.join()
    assert len(ticks) > 0.3 * seconds / 0.0012, (len(ticks), seconds)


def run_script(code, env=None, timeout=300):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def test_ctrl_c_stops_a_fit_cleanly(tmp_path):
    """SIGINT during a long fit raises KeyboardInterrupt within a second,
    leaves no thread running and no temporary file behind."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    code = """
        import sys, threading, time, numpy as np, nmflow
        x = np.random.default_rng(0).random((20000, 300), dtype=np.float32)
        print("ready", flush=True)
        try:
            nmflow.NMF(10, max_iter=100000, tol=0.0).fit(x)
        except KeyboardInterrupt:
            time.sleep(0.2)
            print("interrupted", threading.active_count(), flush=True)
            sys.exit(3)
    """
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "TMPDIR": str(scratch)})
    assert child.stdout.readline().strip() == "ready"
    time.sleep(1.5)
    sent = time.perf_counter()
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=30)
    waited = time.perf_counter() - sent
    assert child.returncode == 3, err
    assert out.split() == ["interrupted", "1"], out
    assert waited < 2.0, waited
    assert list(scratch.iterdir()) == []


def test_a_csr_matrix_is_read_in_place(tmp_path):
    """Peak memory of a fit of a 1 GB float32 CSR matrix stays below the
    matrix plus the budget (a copy of it would not fit)."""
    code = """
        import json, resource, numpy as np, scipy.sparse as sp, nmflow
        def rss():
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * resource.getpagesize()
        base = rss()
        n_rows, n_cols, per_row = 250_000, 20_000, 500
        nnz = n_rows * per_row
        rng = np.random.default_rng(0)
        # Row r stores columns offset_r + 40·j (j < 500): sorted, distinct.
        stride = n_cols // per_row
        steps = np.arange(per_row, dtype=np.int32) * stride
        indices = np.empty(nnz, dtype=np.int32)
        data = np.empty(nnz, dtype=np.float32)
        for start in range(0, n_rows, 10_000):
            offsets = rng.integers(0, stride, size=(10_000, 1), dtype=np.int32)
            indices[start * per_row:(start + 10_000) * per_row] = (offsets + steps).ravel()
            data[start * per_row:(start + 10_000) * per_row] = rng.integers(
                1, 20, size=10_000 * per_row).astype(np.float32)
        indptr = np.arange(0, nnz + 1, per_row, dtype=np.int64)
        x = sp.csr_matrix((data, indices, indptr), shape=(n_rows, n_cols))
        x.has_canonical_format = True
        matrix_bytes = data.nbytes + indices.nbytes + indptr.nbytes
        before = rss()
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets the peak (VmHWM) to the current RSS
        nmflow.NMF(10, max_iter=3, memory="256MiB", scale="none").fit(x)
        with open("/proc/self/status") as f:
            peak = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) * 1024
        print(json.dumps({"base": base, "before": before, "peak": peak, "matrix": matrix_bytes}))
    """
    done = run_script(code)
    assert done.returncode == 0, done.stderr
    m = json.loads(done.stdout)
    budget = 256 << 20
    print(f"CSR {m['matrix'] / 1e9:.2f} GB: interpreter {m['base'] / 2**20:.0f} MiB, "
          f"peak {m['peak'] / 2**20:.0f} MiB, bound {(m['base'] + m['matrix'] + budget) / 2**20:.0f} MiB")
    assert m["matrix"] > 0.99e9
    assert m["peak"] < m["base"] + m["matrix"] + budget


def test_a_backed_anndata_fit_stays_within_its_budget(tmp_path):
    import anndata as ad

    rng = np.random.default_rng(5)
    per_row = 100
    indices = (rng.integers(0, 20, size=(60_000, 1)) + np.arange(per_row) * 20).ravel()
    data = rng.integers(1, 10, size=60_000 * per_row).astype(np.float32)
    indptr = np.arange(0, 60_000 * per_row + 1, per_row)
    x = sp.csr_matrix((data, indices.astype(np.int32), indptr), shape=(60_000, 2_000))
    ad.AnnData(x).write_h5ad(tmp_path / "big.h5ad")
    code = f"""
        import json, anndata as ad, nmflow
        def kib(field):
            with open("/proc/self/status") as f:
                return next(int(l.split()[1]) for l in f if l.startswith(field))
        a = ad.read_h5ad({str(tmp_path / "big.h5ad")!r}, backed="r")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets the peak (VmHWM) to the current RSS
        before = kib("VmRSS:") * 1024
        nmflow.tl.nmf(a, 8, max_iter=5, memory="96MiB")
        peak = kib("VmHWM:") * 1024
        print(json.dumps({{"before": before, "peak": peak, "shape": list(a.obsm["X_nmf"].shape)}}))
    """
    done = run_script(code)
    assert done.returncode == 0, done.stderr
    m = json.loads(done.stdout)
    print(f"backed fit: {(m['peak'] - m['before']) / 2**20:.0f} MiB above the interpreter's "
          f"{m['before'] / 2**20:.0f} MiB, budget 96 MiB")
    assert m["shape"] == [60_000, 8]
    assert m["peak"] - m["before"] < 96 << 20


REAL_FILES = [
    ("derived/mouse_neurons_10k_subset.csr.gzip.h5ad", None),
    ("derived/mouse_neurons_10k_subset.dense.lzf.h5ad", None),
    ("derived/pbmc_chr21_v3.processed.h5ad", "counts"),
    ("derived/pbmc_chr21_v3.csc.h5ad", None),
]


@pytest.mark.parametrize("name,layer", REAL_FILES)
def test_tl_nmf_annotates_as_write_into_does(nmflow_bin, tmp_path, name, layer):
    import shutil

    import anndata as ad

    source = REAL / name
    if not source.exists():
        pytest.skip(f"{source} is absent (../shared/data is not here)")
    target = tmp_path / "copy.h5ad"
    shutil.copyfile(source, target)
    target.chmod(0o644)
    args = ["-k", 5, "--seed", 2, "--max-iter", 30, "--normalize", "cp10k-log1p"]
    if layer:
        args += ["--layer", layer]
    cmd = [str(nmflow_bin), "fit", str(target), "--write-into", str(target), "-q", *map(str, args)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    expected = ad.read_h5ad(target)
    kwargs = dict(random_state=2, max_iter=30, normalize="cp10k-log1p", layer=layer)
    # Streamed from the file: the command's reading, bit for bit.
    backed = ad.read_h5ad(source, backed="r")
    nmflow.tl.nmf(backed, 5, **kwargs)
    for got in [backed]:
        assert np.array_equal(got.obsm["X_nmf"], expected.obsm["X_nmf"])
        assert np.array_equal(got.varm["NMF_H"], expected.varm["NMF_H"])
        assert np.array_equal(got.varm["NMF_H_scaled"], expected.varm["NMF_H_scaled"])
        assert list(got.obs["nmf_cluster"]) == list(expected.obs["nmf_cluster"])
        assert got.uns["nmf"]["params"]["k"] == 5
        assert np.array_equal(got.uns["nmf"]["col_scale"], expected.uns["nmf"]["col_scale"])
    # In memory, at the command's block height: the same factorization to
    # rounding (the command's block cache may also hand the products a
    # column-ordered copy, which sums in another order).
    memory = ad.read_h5ad(source)
    block_rows = int(expected.uns["nmf"]["params"]["block_rows"])
    nmflow.tl.nmf(memory, 5, block_rows=block_rows, **kwargs)
    for got, want in [(memory.obsm["X_nmf"], expected.obsm["X_nmf"]),
                      (memory.varm["NMF_H"], expected.varm["NMF_H"])]:
        assert rel_diff(np.asarray(got), np.asarray(want)) < 1e-4
    assert memory.obs["nmf_cluster"].dtype == "category"


def test_tl_sweep_returns_the_table_and_each_ks_best(tmp_path):
    import anndata as ad

    rng = np.random.default_rng(8)
    programs = rng.gamma(0.5, 1.0, size=(3, 60))
    usage = np.zeros((300, 3))
    usage[np.arange(300), np.arange(300) % 3] = 1.0
    x = rng.poisson(20.0 * usage @ programs).astype(np.float32)
    x = x[:, x.std(axis=0) > 0]
    adata = ad.AnnData(x)
    adata.obs["truth"] = (np.arange(300) % 3).astype(str)
    table = nmflow.tl.sweep(adata, ks=[2, 3, 4], restarts=3, labels_key="truth", max_iter=100)
    assert list(table.index) == [2, 3, 4]
    assert table.loc[3, "ari"] > 0.9
    assert table.loc[3, "W"].shape == (300, 3) and table.loc[4, "H"].shape == (4, x.shape[1])
    assert table.attrs["suggested_k"] in (2, 3, 4) and "k" in table.attrs["rule"]


def test_transform_reads_a_layer_of_an_h5ad_path(tmp_path, counts):
    import anndata as ad

    adata = ad.AnnData(np.zeros_like(counts))
    adata.layers["counts"] = sp.csr_matrix(counts)
    adata.write_h5ad(tmp_path / "x.h5ad")
    model = nmflow.NMF(3, max_iter=50, layer="counts").fit(counts)
    from_path = model.transform(tmp_path / "x.h5ad")
    in_memory = model.transform(sp.csr_matrix(counts))
    assert np.array_equal(from_path, in_memory)
    assert rel_diff(from_path, model.transform(counts)) < 1e-5


def test_verbose_fits_show_a_progress_bar():
    code = """
        import numpy as np, nmflow
        x = np.random.default_rng(0).random((400, 30), dtype=np.float32)
        nmflow.NMF(3, max_iter=20, tol=0.0, verbose=1).fit(x)
        nmflow.NMF(3, max_iter=20, tol=0.0).fit(x)
    """
    done = run_script(code)
    assert done.returncode == 0, done.stderr
    # One bar (tqdm's: "nmflow fit: ...| 5/20 ..."), for the verbose fit only.
    assert "nmflow fit" in done.stderr and "/20" in done.stderr, done.stderr
    assert done.stdout == ""
