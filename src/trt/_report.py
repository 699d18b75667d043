"""Write run results to the reports folder as JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from trt._modes import OWN_OUTCOMES
from trt._results import RunResult
from trt._util import write_atomic


def encode_result(result: RunResult) -> bytes:
    """Return ``result`` as indented JSON, the form the reports use."""
    return msgspec.json.format(encode_json(result), indent=2) + b"\n"


def encode_json(value: object) -> bytes:
    """Encode ``value`` as JSON, escaping text that is not valid Unicode.

    A string that is not valid Unicode (a file name in a foreign encoding,
    an exception message with a lone surrogate) cannot be JSON; it is kept
    readable with backslash escapes instead of failing the report.
    """
    try:
        return msgspec.json.encode(value)
    except UnicodeEncodeError:
        return msgspec.json.encode(_escaped(msgspec.to_builtins(value)))


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


def update_modes(
    result: RunResult, exit_code: int, reports_dir: str | Path
) -> str | None:
    """Record this run in ``reports_dir/modes.json`` under its mode.

    One entry per mode: this run's replaces the entry of its own mode and
    the others are kept, so running a file in each mode leaves a side by
    side comparison. An unreadable file is moved aside to ``modes.json.bad``
    and started afresh.

    Returns:
        A warning to show the user, or None.

    Raises:
        OSError: when the file cannot be written.
    """
    path = Path(reports_dir) / "modes.json"
    entries: dict[str, Any] = {}
    warning = None
    if path.exists() or path.is_symlink():
        try:
            existing = msgspec.json.decode(path.read_bytes())
        except msgspec.DecodeError:
            existing = None
        if isinstance(existing, dict):
            entries = existing
        else:
            aside = path.with_name("modes.json.bad")
            path.replace(aside)
            warning = f"{path} was not a JSON object; moved it to {aside}"
    counts: dict[str, int] = {}
    for task in result.tasks:
        counts[task.status] = counts.get(task.status, 0) + 1
    entries[result.mode] = {
        "taskFile": result.task_file,
        "status": result.status,
        "exitCode": exit_code,
        "startedCount": sum(1 for task in result.tasks if task.attempts),
        "settledCount": sum(1 for task in result.tasks if task.status in OWN_OUTCOMES),
        "stopReason": result.stop_reason,
        "counts": counts,
        "durationMs": result.metrics.duration_ms,
        "startedAt": result.started_at,
        "endedAt": result.ended_at,
    }
    ordered = {mode: entries[mode] for mode in sorted(entries)}
    data = msgspec.json.format(msgspec.json.encode(ordered), indent=2) + b"\n"
    write_atomic(path, data)
    return warning
