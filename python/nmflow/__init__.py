"""nmflow: out-of-core non-negative matrix factorization for single-cell data.

The engine of the ``nmflow`` command, in Python:

- :class:`NMF`, a scikit-learn estimator (``fit``, ``fit_transform``,
  ``transform``, ``inverse_transform``) on NumPy arrays, SciPy sparse
  matrices (read in place where their layout allows) or the path of any file
  ``nmflow fit`` reads (streamed, never loaded);
- :func:`tl.nmf` and :func:`tl.sweep`, in scanpy's style, on an AnnData
  object held in memory or opened ``backed="r"``.

Results equal ``nmflow fit``'s bit for bit for the same input, parameters
and seed.
"""

from . import tl
from ._estimator import NMF
from ._nmflow import __version__

__all__ = ["NMF", "tl", "__version__"]
