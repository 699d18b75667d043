"""trt's own messages to stdout and stderr, written so that none is lost.

``print`` would drop output silently when a parent made our pipe
non-blocking (it raises BlockingIOError mid-write) and fails oddly when a
descriptor is closed (``sys.stdout`` is None). These helpers write whole
strings to the file descriptors and turn failures into one clear error.
"""

from __future__ import annotations

import errno

from trt._exceptions import TrtError
from trt._fdio import write_all

STDOUT = 1
STDERR = 2


class OutputError(TrtError):
    """trt could not write its own output (disk full, closed descriptor)."""


def out(text: str) -> None:
    """Write ``text`` to stdout."""
    _write(STDOUT, text)


def err(text: str) -> None:
    """Write ``text`` to stderr; a failure here has nowhere to be told."""
    try:
        _write(STDERR, text)
    except (OSError, OutputError):
        pass


def printable(text: str) -> str:
    """Show control characters (ESC, NUL, newlines) as escapes.

    Task error messages go to the terminal on one line each; an ESC in
    one must not recolour the terminal, nor a newline break the layout.
    """
    return "".join(
        f"\\x{ord(char):02x}" if ord(char) < 32 or ord(char) == 127 else char
        for char in text
    )


def _write(fd: int, text: str) -> None:
    try:
        write_all(fd, text.encode("utf-8", "backslashreplace"))
    except BrokenPipeError:
        # The reader went away (trt ... | head): the caller stops quietly.
        raise
    except OSError as exc:
        name = "stdout" if fd == STDOUT else "stderr"
        reason = exc.strerror or errno.errorcode.get(exc.errno or 0, str(exc))
        message = f"cannot write to {name}: {reason}"
        raise OutputError(message) from None
