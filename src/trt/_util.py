"""Small helpers shared by the runtime and the report writers."""

from __future__ import annotations

import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path


def utc_now() -> str:
    """Return the wall-clock time as ISO 8601 with milliseconds, in UTC."""
    # utc_stamp's fast path, repeated: this runs several times per task.
    millis = int(_wall_clock() * 1000)
    if millis == _last_millis:
        return _last_text
    return _format_millis(millis)


def utc_stamp(seconds: float) -> str:
    """Return ``seconds`` since the epoch as ISO 8601 with ms, in UTC.

    The result is that of
    ``datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")``
    but for float rounding in the last millisecond.
    """
    millis = int(seconds * 1000)
    if millis == _last_millis:
        # A busy run stamps many times within one millisecond.
        return _last_text
    return _format_millis(millis)


def plural(count: int, noun: str) -> str:
    """Return ``count`` and ``noun``, with an s unless there is one."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def span_ms(seconds: float) -> float:
    """Return a non-negative span in seconds as milliseconds to the µs.

    The same as ``round(seconds * 1000, 3)`` for spans of a run, at a third
    of its cost; each task measures several.
    """
    return int(seconds * 1e6 + 0.5) / 1000


def _format_millis(millis: int) -> str:
    # The date and time part is formatted once per second and reused.
    global _second, _prefix, _last_millis, _last_text
    second, fraction = divmod(millis, 1000)
    if second != _second:
        stamp = datetime.fromtimestamp(second, UTC)
        _second, _prefix = second, stamp.strftime("%Y-%m-%dT%H:%M:%S")
    _last_millis = millis
    _last_text = f"{_prefix}.{fraction:03d}+00:00"
    return _last_text


_wall_clock = time.time
_second = -1
_prefix = ""
_last_millis = -1
_last_text = ""


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so a reader never sees a torn file.

    The bytes go to a temporary file in the same folder (a rename is only
    atomic within one file system), are fsynced, and the file is renamed
    over the old one; the folder is fsynced so the rename survives a crash.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        # mkstemp makes the file private (0600); a report should get the
        # same permissions as any other file the user creates.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def _umask() -> int:
    # The only portable way to read the umask is to set it and restore it.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
