"""Where the children's output goes: through to trt's own stdout/stderr.

Output is passed on as it arrives and only counted, never kept, so a task
that prints gigabytes costs a bounded buffer. When several tasks can run at
once, each line is prefixed with its task id, as ``parallel --tag`` does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, final

from trt._fdio import write_all

# A line longer than this is passed on in pieces rather than held whole,
# which bounds memory for output with no newlines at all.
MAX_LINE_BYTES: Final = 64 * 1024


@final
class OutputSink:
    """Writes task output to two file descriptors, optionally tagged.

    Writes are plain blocking ``os.write`` calls on trt's own descriptors;
    a reader that went away (``trt run ... | head``) turns the sink off
    instead of failing the run.
    """

    def __init__(self, *, prefix: bool, stdout_fd: int = 1, stderr_fd: int = 2):
        self.prefix = prefix
        self._fds = {"stdout": stdout_fd, "stderr": stderr_fd}
        self._closed: set[str] = set()
        # Streams whose last write did not end a line.
        self._mid_line: set[str] = set()
        # The first write error other than a vanished reader, if any.
        self.failure: str | None = None
        # Called before each write: a live progress line clears itself so
        # task output does not land on the end of it.
        self.before_write: Callable[[], None] | None = None

    def clear_live_line(self) -> None:
        """Let a live progress line clear itself before something is written."""
        if self.before_write is not None:
            self.before_write()

    def mid_line(self, name: str) -> bool:
        """Tell whether task output left the named stream mid-line."""
        return name in self._mid_line

    def stream(self, task_id: str, name: str) -> StreamWriter:
        """Return a writer for one task's ``stdout`` or ``stderr``."""
        label = f"[{task_id}] ".encode() if self.prefix else None
        return StreamWriter(self, name, label)

    def write(self, name: str, data: bytes) -> None:
        """Write all of ``data`` to the named stream, unless it was closed."""
        if name in self._closed:
            return
        # Limitation: these writes block the event loop while the terminal
        # or pipe is full, so a reader that stops reading (Ctrl-S, a stalled
        # pager) pauses the whole run, timeouts included. A writer thread
        # would fix that at the cost of a thread hop per chunk.
        self.clear_live_line()
        try:
            write_all(self._fds[name], data)
            if data.endswith(b"\n"):
                self._mid_line.discard(name)
            elif data:
                self._mid_line.add(name)
        except BrokenPipeError:
            # The reader is gone (trt run ... | head): stop quietly.
            self._closed.add(name)
        except OSError as exc:
            # Anything else (a full disk, a closed descriptor) loses output
            # the user expected: stop writing, but say so.
            self._closed.add(name)
            if self.failure is None:
                self.failure = f"cannot write task output to {name}: {exc.strerror}"


@final
class StreamWriter:
    """Feeds one child stream into the sink, splitting lines when tagged."""

    __slots__ = ("_label", "_name", "_pending", "_sink")

    def __init__(self, sink: OutputSink, name: str, label: bytes | None) -> None:
        self._sink = sink
        self._name = name
        self._label = label
        self._pending = b""

    def feed(self, data: bytes) -> None:
        """Pass on a chunk; with a label, only whole lines go out."""
        if self._label is None:
            self._sink.write(self._name, data)
            return
        data = self._pending + data
        end = data.rfind(b"\n") + 1
        if end == 0:
            if len(data) < MAX_LINE_BYTES:
                self._pending = data
                return
            # One huge line: pass it on in pieces so memory stays bounded.
            complete, self._pending = data + b"\n", b""
        else:
            complete, self._pending = data[:end], data[end:]
        # Written in batches of about MAX_LINE_BYTES, so that a long label
        # on many short lines cannot multiply the memory a chunk takes.
        label = self._label
        batch: list[bytes] = []
        size = 0
        for line in complete[:-1].split(b"\n"):
            batch += (label, line, b"\n")
            size += len(label) + len(line) + 1
            if size >= MAX_LINE_BYTES:
                self._sink.write(self._name, b"".join(batch))
                batch, size = [], 0
        if batch:
            self._sink.write(self._name, b"".join(batch))

    def close(self) -> None:
        """Flush a last line that had no newline."""
        if self._label is not None and self._pending:
            self._sink.write(self._name, self._label + self._pending + b"\n")
            self._pending = b""
