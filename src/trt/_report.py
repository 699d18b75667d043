"""Write run results to the reports folder as JSON."""

from __future__ import annotations

from pathlib import Path

import msgspec

from trt._results import RunResult
from trt._util import write_atomic


def encode_result(result: RunResult) -> bytes:
    """Return ``result`` as indented JSON, the form the reports use."""
    return msgspec.json.format(msgspec.json.encode(result), indent=2) + b"\n"


def write_report(result: RunResult, reports_dir: str | Path = "reports") -> Path:
    """Write ``reports_dir/latest.json`` atomically and return its path.

    Raises:
        OSError: when the folder cannot be created or the file written.
    """
    path = Path(reports_dir) / "latest.json"
    write_atomic(path, encode_result(result))
    return path
