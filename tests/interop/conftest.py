"""Shared fixtures of the interop tests: the nmflow binary and a runner."""

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def nmflow_bin() -> Path:
    path = Path(os.environ.get("NMFLOW_BIN", ROOT / "target" / "debug" / "nmflow"))
    if not path.is_file():
        pytest.fail(f"nmflow binary not found at {path}; build it with `cargo build --bin nmflow`")
    return path


@pytest.fixture
def fit(nmflow_bin, tmp_path):
    """Runs `nmflow fit INPUT ... -o OUT` and returns (OUT, summary)."""

    def run(input_spec, *args, out_name="result.h5ad"):
        out = tmp_path / out_name
        cmd = [str(nmflow_bin), "fit", str(input_spec), "--json", "--force", "-o", str(out), *map(str, args)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return out, json.loads(done.stdout)

    return run
