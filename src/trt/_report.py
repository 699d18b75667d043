"""Write run results to the reports folder as JSON."""

from __future__ import annotations

from pathlib import Path

import msgspec

from trt._results import RunResult
from trt._util import write_atomic


def encode_result(result: RunResult) -> bytes:
    """Return ``result`` as indented JSON, the form the reports use."""
    return msgspec.json.format(msgspec.json.encode(result), indent=2) + b"\n"


def write_latest(result: RunResult, reports_dir: str | Path) -> Path:
    """Write ``reports_dir/latest.json`` atomically and return its path."""
    path = Path(reports_dir) / "latest.json"
    write_atomic(path, encode_result(result))
    return path
