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


@final
class ProgressEvents(AsyncIterator[Event]):
    """The records of one run, from now until it ends; see progress_events."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._send, self._receive = trio.open_memory_channel[Event](math.inf)
        runtime.events.on(ALL, self._on_event)
        runtime._watch_end(self._close_sender)

    def _on_event(self, event: Event) -> None:
        if self._send._closed:
            return
        self._send.send_nowait(event)
        if event.type == "run:finish":
            self._close_sender()

    def _close_sender(self) -> None:
        self._runtime.events.off(ALL, self._on_event)
        self._send.close()

    def __aiter__(self) -> ProgressEvents:
        return self

    async def __anext__(self) -> Event:
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        """Stop listening; records not yet read are dropped."""
        self._close_sender()
        await self._receive.aclose()


def progress_events(runtime: Runtime) -> ProgressEvents:
    """Return an async iterator over the progress records of ``runtime``.

    Create it before (or while) the run runs; records that arrive before
    the first ``__anext__`` are kept. Iteration ends when the run ends,
    however it ends, and the iterator leaves no listener behind.
    """
    return ProgressEvents(runtime)
