"""Type hints of the extension module (see python/src/lib.rs)."""

from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np

__version__: str
LOADINGS_NOTE: str

EventCallback = Callable[[str, int, int, int, float], None]
EngineMatrix = Union[
    str,
    np.ndarray,
    Tuple[np.ndarray, np.ndarray, np.ndarray, Tuple[int, int]],
]

def fit(
    matrix: EngineMatrix, options: List[str], on_event: Optional[EventCallback] = None
) -> Dict[str, Any]: ...
def project(
    matrix: EngineMatrix,
    h_scaled: np.ndarray,
    col_scale: np.ndarray,
    normalize: str,
    solver: str,
    max_iter: int,
    tol: float,
    on_event: Optional[EventCallback] = None,
    input_options: List[str] = ...,
) -> Tuple[np.ndarray, float]: ...
def main(args: List[str]) -> int: ...
def shape(path: str, input_options: List[str] = ...) -> Tuple[int, int]: ...
def suggest_k(
    ks: List[int], best_rel_error: List[float], spectra_stability: List[float]
) -> Tuple[Optional[int], Optional[str]]: ...
