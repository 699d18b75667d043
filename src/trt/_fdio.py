"""Write whole buffers to file descriptors; import-light for start-up."""

from __future__ import annotations

import os
import select


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd``, waiting whenever it is full.

    Raises:
        OSError: when the write fails for any other reason than a full
            non-blocking descriptor (BrokenPipeError when the reader left).
    """
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            # The descriptor may be non-blocking (a parent such as Node.js
            # sets O_NONBLOCK on its pipes): wait for room, lose nothing.
            select.select([], [fd], [])
            continue
        view = view[written:]
