"""Progress as an async iterator: ``async for record in progress_events(rt)``.

The iterator attaches one listener to the runtime's event bus the moment it
is created, so records emitted before the consumer first asks are kept in
an unbounded trio memory channel; a waiting consumer is woken by the
channel, never by polling. It ends after ``run:finish``, when the run ends
any other way (cancellation, an internal error), or when the consumer
closes it, and in every case it detaches its listener.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, final

import trio

from trt._events import ALL, Event

if TYPE_CHECKING:
    from trt._runtime import Runtime


# Records returned without a checkpoint before one is forced.
_YIELD_EVERY = 100


@final
class ProgressEvents(AsyncIterator[Event]):
    """The records of one run, from now until it ends; see progress_events."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._send, self._receive = trio.open_memory_channel[Event](math.inf)
        self._closed = False
        self._unyielded = 0
        runtime.events.on(ALL, self._on_event)
        # Ends iteration however the run ends, even if run:finish never
        # comes (canceled from outside, a bug in a task's executor).
        runtime._watch_end(self._close_sender)

    def _on_event(self, event: Event) -> None:
        if self._closed:
            return
        self._send.send_nowait(event)
        if event.type == "run:finish":
            self._close_sender()

    def _close_sender(self) -> None:
        if not self._closed:
            self._closed = True
            self._runtime.events.off(ALL, self._on_event)
            self._send.close()

    def __aiter__(self) -> ProgressEvents:
        return self

    async def __anext__(self) -> Event:
        # A record that is already waiting is returned without a full
        # scheduling round (receive() always checkpoints), or a consumer
        # would fall ever further behind a fast run; every so often it
        # still checkpoints, so a long backlog cannot starve other tasks.
        self._unyielded += 1
        if self._unyielded < _YIELD_EVERY:
            try:
                return self._receive.receive_nowait()
            except trio.WouldBlock:
                pass
            except (trio.EndOfChannel, trio.ClosedResourceError):
                raise StopAsyncIteration from None
        self._unyielded = 0
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise StopAsyncIteration from None

    async def __aenter__(self) -> ProgressEvents:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop listening; records not yet read are dropped."""
        self._close_sender()
        await self._receive.aclose()


def progress_events(runtime: Runtime) -> ProgressEvents:
    """Return an async iterator over the progress records of ``runtime``.

    Create it before (or while) the run runs; records that arrive before
    the first ``__anext__`` are kept. Iteration ends when the run ends,
    however it ends, and the iterator leaves no listener behind. To stop
    reading early, use ``async with progress_events(rt) as records:`` or
    call ``aclose()``: a ``break`` alone keeps it listening (and keeping
    records) until the run ends.
    """
    return ProgressEvents(runtime)
