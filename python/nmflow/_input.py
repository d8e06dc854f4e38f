"""What the engine reads: a file, a dense array or the parts of a CSR matrix,
with as few copies as the layout allows."""

from __future__ import annotations

import os
from typing import Any, Tuple, Union

import numpy as np
import scipy.sparse as sp

#: The engine's view of a matrix: a file name, a 2-D float array, or
#: ``(data, indices, indptr, (n_rows, n_cols))`` of a CSR matrix.
Matrix = Union[str, np.ndarray, Tuple[np.ndarray, np.ndarray, np.ndarray, Tuple[int, int]]]

_FLOATS = (np.float32, np.float64)
_INDICES = (np.int32, np.int64)


def is_path(X: Any) -> bool:
    """Whether ``X`` names a file (``str`` or ``os.PathLike``)."""
    return isinstance(X, (str, os.PathLike))


def engine_matrix(X: Any) -> Matrix:
    """``X`` as the engine reads it.

    - A path is streamed from its file (``FILE`` or ``FILE:/dataset``).
    - A float32 or float64 NumPy array is read in place, whatever its order
      (C, Fortran or strided); other dtypes are converted to float32 (a copy).
    - A SciPy CSR matrix or array is read in place (float32 or float64 values,
      int32 or int64 indices); other value types are converted to float32. A
      CSR matrix with duplicate entries is copied and summed first, and any
      other sparse format (CSC, COO, ...) is converted to CSR (a copy), as the
      engine reads rows.
    """
    if is_path(X):
        return os.fspath(X)
    if sp.issparse(X):
        if X.format != "csr":
            X = X.tocsr()
        if not X.has_canonical_format:
            X = X.copy()
            X.sum_duplicates()
        data = X.data if X.data.dtype in _FLOATS else X.data.astype(np.float32)
        indices = X.indices if X.indices.dtype in _INDICES else X.indices.astype(np.int64)
        indptr = X.indptr if X.indptr.dtype in _INDICES else X.indptr.astype(np.int64)
        return (
            np.ascontiguousarray(data),
            np.ascontiguousarray(indices),
            np.ascontiguousarray(indptr),
            (int(X.shape[0]), int(X.shape[1])),
        )
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"Expected a 2-D array (cells × genes), got {X.ndim} dimension(s)")
    if X.dtype not in _FLOATS:
        if X.dtype.kind not in "biuf":
            raise ValueError(f"Expected a numeric array, got dtype {X.dtype}")
        X = X.astype(np.float32)
    return X


def shape_of(matrix: Matrix) -> Tuple[int, int]:
    """Rows and columns of an engine matrix that is not a file."""
    if isinstance(matrix, tuple):
        return matrix[3]
    return matrix.shape  # type: ignore[union-attr]
