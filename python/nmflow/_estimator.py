"""The scikit-learn estimator."""

from __future__ import annotations

import numbers
import os
import tempfile
from typing import Any, Dict, List, Optional, Union

import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from . import _nmflow
from ._input import engine_matrix, is_path, shape_of
from ._progress import progress

_SOLVERS = {"mu": "mu", "hals": "hals", "cd": "hals"}
_LOSSES = {"frobenius": "frobenius", 2: "frobenius", "kullback-leibler": "kullback-leibler", 1: "kullback-leibler"}
_INITS = ("random", "random-scaled", "nndsvd", "nndsvda", "nndsvdar", "custom")
_NORMALIZE = ("none", "cp10k-log1p", "log1p")
_SCALE = ("col-std", "none")


class NMF(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Non-negative matrix factorization X ≈ W·H by nmflow's engine.

    The parameters are scikit-learn's ``NMF``'s where they mean the same, plus
    nmflow's own (``normalize``, ``scale``, ``restarts``, ``memory``). A fit
    runs exactly as ``nmflow fit`` does with the same options, so its W and H
    equal the command's bit for bit on the same input and seed; it streams a
    file and never holds X in memory, and reads arrays in place.

    Parameters
    ----------
    n_components : int or None, default=None
        Number of components k; ``None`` takes the number of features.
    solver : {"mu", "hals", "cd"}, default="mu"
        ``"mu"``: Lee & Seung's multiplicative updates (nmflow's seed
        algorithm). ``"hals"``: hierarchical alternating least squares, exact
        coordinate descent (``"cd"`` is scikit-learn's name for it).
    init : {"random", "random-scaled", "nndsvd", "nndsvda", "nndsvdar", "custom"} or None, default=None
        The start. ``None`` and ``"random"``: W and H uniform on [0, 1) from
        the seed (nmflow's default, not scikit-learn's). ``"random-scaled"``
        is scikit-learn's ``init="random"``. ``"custom"`` takes ``W`` and
        ``H`` given to :meth:`fit`.
    beta_loss : {"frobenius", "kullback-leibler", 2, 1}, default="frobenius"
        The loss; Kullback-Leibler needs ``solver="mu"``.
    tol : float, default=1e-4
        Stop once the relative error improves by less than ``tol`` between
        checks.
    max_iter : int, default=200
        Iterations at most.
    random_state : int, RandomState instance or None, default=None
        The seed. ``None`` uses seed 0, so that results are reproducible
        (nmflow's rule); a RandomState draws a seed from it.
    alpha_W, alpha_H, l1_ratio : float, default=0.0, "same", 0.0
        Penalties as scikit-learn's (``alpha_W`` scaled by the number of
        features, ``alpha_H`` by the number of samples).
    normalize : {"none", "cp10k-log1p", "log1p"}, default="none"
        Per-cell normalisation applied as X is read.
    scale : {"col-std", "none"}, default="col-std"
        Divide each column by its standard deviation before the updates
        (nmflow's seed algorithm); ``components_`` is in the data's units
        either way.
    restarts : int, default=1
        Random restarts (seeds ``seed``, ``seed + 1``, ...); the lowest final
        error is kept.
    memory : str or None, default=None
        Memory budget of the fit, e.g. ``"2GiB"`` (default: half of the
        available memory); a budget too small is a ``MemoryError``.
    n_jobs : int or None, default=None
        Worker threads (``None`` or ``-1``: all cores). Results do not depend
        on it.
    block_rows : int or None, default=None
        Rows per block read (results depend on it in the last bits only).
    layer : str or None, default=None
        For an h5ad path: the layer to factorize instead of ``X``.
    use_raw : bool, default=False
        For an h5ad path: factorize ``raw/X``.
    verbose : int, default=0
        1 shows a progress bar (tqdm's when installed).

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
        H in the units of the matrix factorized (after ``normalize``, before
        ``scale``), so that X ≈ W·H.
    components_scaled_ : ndarray of shape (n_components, n_features)
        H in the column-scaled units the updates ran in.
    col_scale_ : ndarray of shape (n_features,)
        The divisor of every column.
    reconstruction_err_ : float
        The final relative error ‖X_s − W H_s‖_F / ‖X_s‖_F of the scaled
        matrix (as ``nmflow fit`` reports it; scikit-learn's is absolute).
    rel_error_ : ndarray
        The relative error after every iteration.
    n_iter_ : int
        Iterations run.
    n_components_ : int
        k.
    n_features_in_ : int
        Features seen by :meth:`fit`.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Feature names, when X has string column names (a DataFrame).
    seed_ : int
        The seed of the run kept.
    params_ : dict
        Every parameter of the run, as an h5ad result's ``uns['nmf']``
        holds them.
    """

    def __init__(
        self,
        n_components: Optional[int] = None,
        *,
        solver: str = "mu",
        init: Optional[str] = None,
        beta_loss: Union[str, float] = "frobenius",
        tol: float = 1e-4,
        max_iter: int = 200,
        random_state: Any = None,
        alpha_W: float = 0.0,
        alpha_H: Union[float, str] = "same",
        l1_ratio: float = 0.0,
        normalize: str = "none",
        scale: str = "col-std",
        restarts: int = 1,
        memory: Optional[str] = None,
        n_jobs: Optional[int] = None,
        block_rows: Optional[int] = None,
        layer: Optional[str] = None,
        use_raw: bool = False,
        verbose: int = 0,
    ) -> None:
        self.n_components = n_components
        self.solver = solver
        self.init = init
        self.beta_loss = beta_loss
        self.tol = tol
        self.max_iter = max_iter
        self.random_state = random_state
        self.alpha_W = alpha_W
        self.alpha_H = alpha_H
        self.l1_ratio = l1_ratio
        self.normalize = normalize
        self.scale = scale
        self.restarts = restarts
        self.memory = memory
        self.n_jobs = n_jobs
        self.block_rows = block_rows
        self.layer = layer
        self.use_raw = use_raw
        self.verbose = verbose

    # scikit-learn's tags: X must be non-negative; results are deterministic
    # for a seed.
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True
        tags.input_tags.sparse = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    def _more_tags(self) -> Dict[str, Any]:
        return {"requires_positive_X": True, "preserves_dtype": [np.float64, np.float32]}

    # -- options -----------------------------------------------------------

    def _seed(self) -> int:
        if self.random_state is None:
            return 0
        if isinstance(self.random_state, numbers.Integral):
            if self.random_state < 0:
                raise ValueError(f"random_state must be non-negative, got {self.random_state}")
            return int(self.random_state)
        return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

    def _options(self, n_features: int, start: Optional[List[str]] = None) -> List[str]:
        """The option words of ``nmflow fit`` for these parameters."""
        k = n_features if self.n_components is None else self.n_components
        if not isinstance(k, numbers.Integral) or isinstance(k, bool) or k < 1:
            raise ValueError(f"n_components must be a positive integer or None, got {k!r}")
        solver = _SOLVERS.get(self.solver)
        if solver is None:
            raise ValueError(f"solver must be 'mu', 'hals' or 'cd', got {self.solver!r}")
        loss = _LOSSES.get(self.beta_loss)
        if loss is None:
            raise ValueError(
                f"beta_loss must be 'frobenius' or 'kullback-leibler', got {self.beta_loss!r}"
            )
        init = "random" if self.init is None else self.init
        if init not in _INITS:
            raise ValueError(f"init must be one of {', '.join(_INITS)} or None, got {init!r}")
        if self.normalize not in _NORMALIZE:
            raise ValueError(f"normalize must be one of {', '.join(_NORMALIZE)}, got {self.normalize!r}")
        if self.scale not in _SCALE:
            raise ValueError(f"scale must be one of {', '.join(_SCALE)}, got {self.scale!r}")
        if not isinstance(self.max_iter, numbers.Integral) or self.max_iter < 1:
            raise ValueError(f"max_iter must be a positive integer, got {self.max_iter!r}")
        if not isinstance(self.tol, numbers.Real) or self.tol < 0:
            raise ValueError(f"tol must be a non-negative number, got {self.tol!r}")
        words = [
            "-k", str(int(k)),
            "--solver", solver,
            "--beta-loss", loss,
            "--init", init,
            "--max-iter", str(int(self.max_iter)),
            "--tol", repr(float(self.tol)),
            "--seed", str(self._seed()),
            "--alpha-w", repr(float(self.alpha_W)),
            "--l1-ratio", repr(float(self.l1_ratio)),
            "--normalize", self.normalize,
            "--scale", self.scale,
            "--restarts", str(int(self.restarts)),
        ]
        if self.alpha_H != "same":
            words += ["--alpha-h", repr(float(self.alpha_H))]
        if self.memory is not None:
            words += ["--memory", str(self.memory)]
        if self.n_jobs is not None and self.n_jobs != -1:
            if self.n_jobs < 1:
                raise ValueError(f"n_jobs must be None, -1 or positive, got {self.n_jobs!r}")
            words += ["--threads", str(int(self.n_jobs))]
        if self.block_rows is not None:
            words += ["--block-rows", str(int(self.block_rows))]
        return words + self._input_options() + (start or [])

    def _input_options(self) -> List[str]:
        """The options choosing an h5ad path's matrix."""
        words = []
        if self.layer is not None:
            words += ["--layer", self.layer]
        if self.use_raw:
            words += ["--raw"]
        return words

    # -- fitting -----------------------------------------------------------

    def _validated(self, X: Any, reset: bool) -> Any:
        """X checked as scikit-learn checks it (names, shape, finiteness) when
        it is an array; a path is the engine's to check."""
        if is_path(X):
            return X
        from sklearn.utils.validation import validate_data

        return validate_data(
            self,
            X,
            accept_sparse=("csr", "csc"),
            dtype=[np.float64, np.float32],
            reset=reset,
            ensure_min_samples=1,
        )

    def _fit(self, X: Any, W: Any = None, H: Any = None) -> np.ndarray:
        X = self._validated(X, reset=True)
        matrix = engine_matrix(X)
        n_features = None if isinstance(matrix, str) else shape_of(matrix)[1]
        with tempfile.TemporaryDirectory(prefix="nmflow-") as tmp:
            start = self._start_files(W, H, tmp)
            if n_features is None:
                # A file: k defaults need the width, which the engine reads.
                n_features = self.n_components or _width_of(matrix, self)
            options = self._options(n_features, start)
            bar = progress(self.verbose, int(self.max_iter), int(self.restarts), "nmflow fit")
            try:
                result = _engine(_nmflow.fit, matrix, options, bar)
            finally:
                if bar is not None:
                    bar.close()
        dtype = X.dtype if hasattr(X, "dtype") and X.dtype in (np.float32, np.float64) else np.float32
        self.components_ = result["H"].astype(dtype, copy=False)
        self.components_scaled_ = result["H_scaled"]
        self.col_scale_ = result["col_scale"]
        self.rel_error_ = result["rel_error"]
        self.reconstruction_err_ = float(result["rel_error"][-1])
        self.n_iter_ = int(len(result["rel_error"]))
        self.n_components_ = int(result["H"].shape[0])
        self.seed_ = int(result["seed"])
        self.normalize_ = str(result["normalize"])
        self.params_ = dict(result["params"])
        self.clusters_ = result["clusters"]
        self.restart_rel_errors_ = result["restart_rel_errors"]
        self.iteration_seconds_ = result["iteration_seconds"]
        self.sample_ = {
            "rows": result["sample_rows"],
            "pca": result["sample_pca"],
            "pca_variance_ratio": result["sample_pca_variance_ratio"],
        }
        if is_path(X):
            self.n_features_in_ = int(result["H"].shape[1])
        return result["W"].astype(dtype, copy=False)

    def _start_files(self, W: Any, H: Any, tmp: str) -> List[str]:
        """``--w0``/``--h0`` files of a custom start."""
        init = "random" if self.init is None else self.init
        if init != "custom":
            if W is not None or H is not None:
                raise ValueError("W and H are a custom start: give init='custom' with them")
            return []
        if W is None or H is None:
            raise ValueError("init='custom' needs both W and H")
        w0 = os.path.join(tmp, "w0.npy")
        h0 = os.path.join(tmp, "h0.npy")
        np.save(w0, np.ascontiguousarray(W, dtype=np.float32))
        np.save(h0, np.ascontiguousarray(H, dtype=np.float32))
        return ["--w0", w0, "--h0", h0]

    def fit(self, X: Any, y: Any = None, W: Any = None, H: Any = None) -> "NMF":
        """Learn the components of ``X``.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features), or a path
            The matrix (cells × genes): a NumPy array, a SciPy sparse matrix or
            array, or the path of a file ``nmflow fit`` reads (h5ad, 10x .h5,
            loom, plain HDF5 ``FILE:/dataset``, .npy), streamed.
        y : ignored
        W, H : array-like, optional
            The start, with ``init="custom"``.

        Returns
        -------
        self
        """
        self._fit(X, W, H)
        return self

    def fit_transform(self, X: Any, y: Any = None, W: Any = None, H: Any = None) -> np.ndarray:
        """Learn the components of ``X`` and return W (n_samples × n_components)."""
        return self._fit(X, W, H)

    def transform(self, X: Any) -> np.ndarray:
        """Project new cells onto the components: W with H fixed, each row the
        non-negative least-squares solution (HALS sweeps, as
        ``nmflow transform``), after the fit's normalisation and scaling."""
        check_is_fitted(self, "components_")
        X = self._validated(X, reset=False)
        matrix = engine_matrix(X)
        bar = progress(self.verbose, 1, 1, "nmflow transform")
        try:
            W, _ = _engine(
                _nmflow.project,
                matrix,
                np.ascontiguousarray(self.components_scaled_, dtype=np.float32),
                np.ascontiguousarray(self.col_scale_, dtype=np.float32),
                self.normalize_,
                "hals",
                1000,
                1e-4,
                bar,
                self._input_options() if is_path(X) else [],
            )
        finally:
            if bar is not None:
                bar.close()
        dtype = X.dtype if hasattr(X, "dtype") and X.dtype in (np.float32, np.float64) else np.float32
        return W.astype(dtype, copy=False)

    def inverse_transform(self, X: Any = None, *, Xt: Any = None) -> np.ndarray:
        """W·H: the data the usages ``X`` (n_samples × n_components) stand for,
        in the units of the matrix factorized."""
        check_is_fitted(self, "components_")
        W = Xt if X is None else X
        W = np.asarray(W)
        return W @ self.components_

    @property
    def _n_features_out(self) -> int:
        return self.components_.shape[0]


def _engine(call: Any, *args: Any) -> Any:
    """Calls the engine; a negative value is reported in scikit-learn's
    words first ("Negative values in data passed to NMF"), then nmflow's,
    which name the row and column."""
    try:
        return call(*args)
    except ValueError as e:
        if "negative value" in str(e):
            raise ValueError(f"Negative values in data passed to NMF: {e}") from None
        raise


def _width_of(path: str, est: NMF) -> int:
    """The number of columns of the matrix a path names (for
    ``n_components=None``), from the file's structure."""
    return int(_nmflow.shape(path, est._input_options())[1])
