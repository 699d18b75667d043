"""Write run results to the reports folder as JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from trt._results import RunResult
from trt._util import write_atomic


def encode_result(result: RunResult) -> bytes:
    """Return ``result`` as indented JSON, the form the reports use."""
    try:
        data = msgspec.json.encode(result)
    except UnicodeEncodeError:
        # A string that is not valid Unicode (a file name in a foreign
        # encoding, an exception message with a lone surrogate) cannot be
        # JSON; keep it readable with backslash escapes instead of failing.
        data = msgspec.json.encode(_escaped(msgspec.to_builtins(result)))
    return msgspec.json.format(data, indent=2) + b"\n"


def _escaped(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_escaped(key): _escaped(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_escaped(item) for item in value]
    return value


def write_report(result: RunResult, reports_dir: str | Path = "reports") -> Path:
    """Write ``reports_dir/latest.json`` atomically and return its path.

    Raises:
        OSError: when the folder cannot be created or the file written.
    """
    path = Path(reports_dir) / "latest.json"
    write_atomic(path, encode_result(result))
    return path
