"""A progress bar for long fits: tqdm's (``tqdm.auto``, which draws in
notebooks and terminals) when tqdm is installed, else a line on stderr."""

from __future__ import annotations

import math
import sys
from typing import Callable, Optional

Callback = Callable[[str, int, int, int, float], None]


class Progress:
    """Counts the iterations of ``n_runs`` runs of at most ``max_iter`` each."""

    def __init__(self, max_iter: int, n_runs: int, desc: str) -> None:
        self.total = max(1, max_iter * n_runs)
        self.done = 0
        self.desc = desc
        try:
            from tqdm.auto import tqdm
        except ImportError:
            self.bar = None
        else:
            self.bar = tqdm(total=self.total, desc=desc, unit="it", leave=False)

    def __call__(self, kind: str, run: int, done: int, total: int, rel_error: float) -> None:
        if kind != "iteration":
            return
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
            if not math.isnan(rel_error):
                self.bar.set_postfix_str(f"rel. error {rel_error:.4g}", refresh=False)
        else:
            sys.stderr.write(
                f"\r{self.desc}: {self.done}/{self.total} iterations, "
                f"relative error {rel_error:.4g}"
            )
            sys.stderr.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.done:
            sys.stderr.write("\n")


def progress(verbose: int, max_iter: int, n_runs: int, desc: str) -> Optional[Progress]:
    """A progress bar, or ``None`` when ``verbose`` is 0."""
    return Progress(max_iter, n_runs, desc) if verbose else None
