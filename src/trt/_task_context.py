"""The context a function task is called with.

Its own module, free of trio and of the rest of trt, because worker
processes build it too and must start fast.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, final


@final
class TaskContext:
    """What a function task receives: who it is and whether to stop.

    ``cancel_requested`` turns true when the attempt is canceled or times
    out. Async functions are canceled by trio directly and may check it in
    cleanup code; plain functions run in a worker process, get a copy of
    the context, and are ended by killing that process instead.
    """

    __slots__ = ("_cancel_requested", "attempt", "metadata", "task_id")

    def __init__(self, task_id: str, attempt: int, metadata: Mapping[str, Any]):
        self.task_id = task_id
        self.attempt = attempt
        self.metadata = metadata
        self._cancel_requested = False

    @property
    def cancel_requested(self) -> bool:
        """Tell whether the attempt was asked to stop."""
        return self._cancel_requested

    def request_cancel(self) -> None:
        """Mark the attempt as asked to stop (called by trt, not by tasks)."""
        self._cancel_requested = True

    def __repr__(self) -> str:
        return f"TaskContext(task_id={self.task_id!r}, attempt={self.attempt})"
