"""Tools in scanpy's style: ``nmflow.tl.nmf(adata, ...)`` and
``nmflow.tl.sweep(adata, ...)``."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from typing import Any, Iterable, Optional

import numpy as np

from . import _nmflow
from ._estimator import NMF


def _matrix_of(adata: Any, layer: Optional[str], use_raw: bool) -> Any:
    """The matrix of ``adata`` to factorize: its file (streamed) when it is
    opened backed, else the in-memory array (read in place)."""
    if layer is not None and use_raw:
        raise ValueError("give layer or use_raw, not both")
    if adata.isbacked:
        return os.fspath(adata.filename)
    if use_raw:
        if adata.raw is None:
            raise ValueError("use_raw=True, but adata.raw is None")
        return adata.raw.X
    if layer is not None:
        if layer not in adata.layers:
            raise ValueError(f"no layer {layer!r}; the layers are {list(adata.layers.keys())}")
        return adata.layers[layer]
    return adata.X


def nmf(
    adata: Any,
    n_components: int,
    *,
    layer: Optional[str] = None,
    use_raw: bool = False,
    key_added: str = "nmf",
    copy: bool = False,
    random_state: Any = 0,
    verbose: int = 0,
    **kwargs: Any,
) -> Optional[Any]:
    """Factorize ``adata`` (cells × genes) and annotate it as
    ``nmflow fit --write-into`` annotates an h5ad file.

    Parameters
    ----------
    adata : AnnData
        In memory, or opened with ``anndata.read_h5ad(path, backed="r")``, in
        which case the matrix is streamed from its file and never loaded.
    n_components : int
        Number of programs k.
    layer : str, optional
        Factorize ``adata.layers[layer]`` instead of ``adata.X``.
    use_raw : bool, default=False
        Factorize ``adata.raw.X``.
    key_added : str, default="nmf"
        Names of what is added: ``obsm['X_{key}']``, ``varm['{KEY}_H']``,
        ``varm['{KEY}_H_scaled']``, ``obs['{key}_cluster']``, ``uns['{key}']``.
    copy : bool, default=False
        Annotate a copy and return it instead of ``adata``.
    random_state : int, default=0
        The seed.
    verbose : int, default=0
        1 shows a progress bar.
    **kwargs
        Any parameter of :class:`nmflow.NMF` (``solver``, ``init``,
        ``beta_loss``, ``max_iter``, ``tol``, ``normalize``, ``scale``,
        ``restarts``, ``memory``, ...).

    Returns
    -------
    The annotated copy with ``copy=True``, else ``None``.

    Adds
    ----
    ``obsm['X_nmf']`` : W, cells × k (float32).
    ``varm['NMF_H']`` : the loadings in the units of the matrix factorized,
        genes × k (read these for top genes); ``varm['NMF_H_scaled']``: those
        of the column-scaled matrix. With ``use_raw`` and genes in ``raw``
        that ``var`` lacks, both go to ``adata.raw.varm``.
    ``obs['nmf_cluster']`` : the program of largest usage, categorical.
    ``uns['nmf']`` : the parameters, error trace, column divisors and the row
        sample's principal components, as ``nmflow fit --write-into`` writes.
    """
    import pandas as pd

    if copy:
        adata = adata.copy() if not adata.isbacked else adata.to_memory()
    matrix = _matrix_of(adata, layer, use_raw)
    est = NMF(
        n_components,
        random_state=random_state,
        verbose=verbose,
        layer=layer if adata.isbacked else None,
        use_raw=use_raw and adata.isbacked,
        **kwargs,
    )
    W = est.fit_transform(matrix)
    key = key_added
    k = est.n_components_
    adata.obsm[f"X_{key}"] = np.asarray(W, dtype=np.float32)
    h = np.asarray(est.components_, dtype=np.float32).T
    h_scaled = np.asarray(est.components_scaled_, dtype=np.float32).T
    target = adata
    if use_raw and adata.raw is not None and adata.raw.n_vars != adata.n_vars:
        target = adata.raw
    target.varm[f"{key.upper()}_H"] = h
    target.varm[f"{key.upper()}_H_scaled"] = h_scaled
    adata.obs[f"{key}_cluster"] = pd.Categorical(
        est.clusters_.astype(np.int64).astype(str), categories=[str(c) for c in range(k)]
    )
    adata.uns[key] = {
        "params": dict(est.params_),
        "rel_error": np.asarray(est.rel_error_),
        "iteration_seconds": np.asarray(est.iteration_seconds_),
        "col_scale": np.asarray(est.col_scale_),
        "nmflow_version": _nmflow.__version__,
        "loadings": _nmflow.LOADINGS_NOTE,
        "sample_rows": np.asarray(est.sample_["rows"]),
        "sample_pca": np.asarray(est.sample_["pca"]),
        "sample_pca_variance_ratio": np.asarray(est.sample_["pca_variance_ratio"]),
    }
    return adata if copy else None


def sweep(
    adata: Any,
    ks: Iterable[int] = range(2, 13),
    *,
    restarts: int = 10,
    labels_key: Optional[str] = None,
    layer: Optional[str] = None,
    use_raw: bool = False,
    random_state: int = 0,
    out_dir: Optional[str] = None,
    verbose: int = 0,
    **options: Any,
) -> Any:
    """Factorize for every k of ``ks`` with ``restarts`` random restarts, as
    ``nmflow sweep`` does, and score each k.

    The sweep runs on the file of a backed ``adata`` (streamed); an in-memory
    ``adata`` is written to a temporary h5ad file first (its matrix, its
    ``obs`` for the labels). Options are those of ``nmflow sweep``
    (``max_iter``, ``tol``, ``normalize``, ``scale``, ``solver``,
    ``memory``, ...), with ``_`` for ``-``.

    Returns
    -------
    pandas.DataFrame
        Indexed by k: ``best_rel_error``, ``mean_rel_error``,
        ``sd_rel_error``, ``cophenetic``, ``spectra_stability``, ``ari`` and
        ``nmi`` (with ``labels_key``), ``best_seed``, and the best
        factorization of that k: ``W`` (cells × k) and ``H`` (k × genes, the
        data's units); with ``out_dir``, also ``result``, the path of its
        h5ad file there (and the sweep's other files: sweep.json, the
        consensus, the programs' tables). The suggested k and its rule are in
        ``df.attrs['suggested_k']`` and ``df.attrs['rule']``.
    """
    import pandas as pd

    ks = sorted({int(k) for k in ks})
    if not ks:
        raise ValueError("ks is empty")
    work = tempfile.TemporaryDirectory(prefix="nmflow-sweep-")
    try:
        if adata.isbacked:
            path = os.fspath(adata.filename)
        else:
            path = os.path.join(work.name, "input.h5ad")
            adata.write_h5ad(path)
        out = out_dir or os.path.join(work.name, "sweep")
        words = [
            "sweep", path,
            "-k", ",".join(str(k) for k in ks),
            "--restarts", str(int(restarts)),
            "--seed", str(int(random_state)),
            "-o", out, "--force",
        ]
        if not verbose:
            words.append("-q")
        if labels_key is not None:
            words += ["--labels", labels_key]
        if layer is not None:
            words += ["--layer", layer]
        if use_raw:
            words.append("--raw")
        for name, value in options.items():
            flag = "--" + name.replace("_", "-")
            if value is True:
                words.append(flag)
            elif value is not False and value is not None:
                words += [flag, str(value)]
        _run_command(words)
        table = pd.read_csv(os.path.join(out, "sweep.tsv"), sep="\t")
        table["result"] = [os.path.join(out, r) for r in table["result"]]
        table = table.set_index("k")
        suggested = _suggested(out)
        table.attrs["suggested_k"] = suggested[0]
        table.attrs["rule"] = suggested[1]
        # Each k's best factorization, read from its result file.
        import anndata

        ws, hs = [], []
        for result in table["result"]:
            best = anndata.read_h5ad(result)
            ws.append(np.asarray(best.obsm["X_nmf"]))
            hs.append(np.asarray(best.varm["NMF_H"]).T)
        table["W"] = ws
        table["H"] = hs
        if out_dir is None:
            # The result files were in a temporary directory, gone now.
            table = table.drop(columns="result")
        return table
    finally:
        work.cleanup()


def _run_command(words: list) -> None:
    """Runs ``nmflow WORDS`` in a child process of this interpreter (the
    package's own engine), raising its message as the matching exception."""
    code = "import sys; from nmflow import _nmflow; sys.exit(_nmflow.main(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-c", code, *words], capture_output=True, text=True)
    if done.returncode != 0:
        message = done.stderr.strip().removeprefix("nmflow: error: ")
        if done.returncode == 2:
            raise ValueError(message)
        if "no such file" in message:
            raise FileNotFoundError(message)
        raise RuntimeError(message)


def _suggested(out: str) -> tuple:
    import json

    with open(os.path.join(out, "sweep.json")) as f:
        sweep = json.load(f)
    ks = [r["k"] for r in sweep["per_k"]]
    best = [r["best_rel_error"] for r in sweep["per_k"]]
    stability = [r["spectra_stability"] for r in sweep["per_k"]]
    return _nmflow.suggest_k(ks, best, [np.nan if s is None else s for s in stability])
