"""Small helpers shared by the runtime and the report writers."""

from __future__ import annotations

import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path


def utc_now() -> str:
    """Return the wall-clock time as ISO 8601 with milliseconds, in UTC."""
    return utc_stamp(time.time())


def utc_stamp(seconds: float) -> str:
    """Return ``seconds`` since the epoch as ISO 8601 with ms, in UTC.

    Called several times per task, so the date and time part is formatted
    once per second and reused; the result is that of
    ``datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")``
    but for float rounding in the last millisecond.
    """
    global _second, _prefix, _last
    second = int(seconds)
    millis = int((seconds - second) * 1000)
    if (second, millis) == _last[0]:
        # A busy run stamps many events within one millisecond.
        return _last[1]
    if second != _second:
        stamp = datetime.fromtimestamp(second, UTC)
        _second, _prefix = second, stamp.strftime("%Y-%m-%dT%H:%M:%S")
    text = f"{_prefix}.{millis:03d}+00:00"
    _last = ((second, millis), text)
    return text


_second = -1
_prefix = ""
_last: tuple[tuple[int, int], str] = ((-1, -1), "")


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
