"""Lifecycle events and the bus that delivers them to listeners.

Data flow::

    scheduler ──send_nowait──> memory channel ──> dispatcher task ──> bus
    (never blocks, never                          (one, in the run's     │
     runs listener code)                           nursery)              v
                                                            listeners, in
                                                            registration order

The scheduler only drops events into an unbounded trio memory channel, so
a slow listener can neither stall scheduling nor reorder events: one
dispatcher hands them out strictly in the order they were sent. With no
listener at all, events are not even built.
"""

from __future__ import annotations

import logging
import typing
from collections.abc import Callable
from typing import Final, Literal, final

import msgspec

EventType = Literal[
    "run:start",
    "run:finish",
    "task:queued",
    "task:start",
    "task:success",
    "task:failure",
    "task:retry",
    "task:finish",
    "error",
]

EVENT_TYPES: Final[tuple[str, ...]] = typing.get_args(EventType)

# Listen to every event type at once.
ALL: Final = "*"

logger = logging.getLogger("trt")


@final
class Event(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    rename="camel",
    omit_defaults=True,
    gc=False,
):
    """One thing that happened in a run, as listeners and logs see it.

    ``elapsed_ms`` is monotonic time since the run started, so events can
    be ordered and spaced exactly; ``timestamp`` is the wall clock.
    Untracked by the cycle collector (``gc=False``): it holds no objects
    that could lead back to it, and a run makes four per task.
    """

    type: EventType
    timestamp: str
    elapsed_ms: float
    task_id: str | None = None
    status: str | None = None
    attempt: int | None = None
    message: str | None = None


Listener = Callable[[Event], object]


class UnhandledErrorEvent(RuntimeError):
    """An ``error`` event was emitted while nobody listened for it."""


@final
class EventBus:
    """Listeners by event type, called in the order they registered.

    Task failures are ``task:failure`` events; ``error`` is reserved for
    faults of the runtime itself, such as a listener that raised, and
    emitting it with no listener raises, so such a fault is never lost
    silently.
    """

    def __init__(self) -> None:
        # (type, listener, once) in registration order across all types,
        # so "*" listeners and specific ones interleave as registered.
        self._entries: list[tuple[str, Listener, bool]] = []
        # Per event type: its listeners, and whether any is a once; rebuilt
        # after each change, since emit() runs several times per task.
        self._by_type: dict[str, tuple[list[tuple[str, Listener, bool]], bool]] = {}

    def on(self, event_type: str, listener: Listener) -> None:
        """Call ``listener`` for every event of ``event_type`` ("*": all)."""
        self._check(event_type)
        self._entries.append((event_type, listener, False))
        self._by_type.clear()

    def once(self, event_type: str, listener: Listener) -> None:
        """Call ``listener`` for the next event of ``event_type`` only."""
        self._check(event_type)
        self._entries.append((event_type, listener, True))
        self._by_type.clear()

    def off(self, event_type: str, listener: Listener) -> None:
        """Remove ``listener`` from ``event_type``; unknown ones are ignored."""
        self._entries = [
            entry
            for entry in self._entries
            if not (entry[0] == event_type and entry[1] == listener)
        ]
        self._by_type.clear()

    def listener_count(self, event_type: str | None = None) -> int:
        """Return how many listeners are attached (to one type, or in all)."""
        if event_type is None:
            return len(self._entries)
        return sum(1 for entry in self._entries if entry[0] == event_type)

    @property
    def active(self) -> bool:
        """Tell whether anybody listens at all."""
        return bool(self._entries)

    def emit(self, event: Event) -> None:
        """Deliver ``event`` to its listeners now, in registration order.

        A listener that raises does not stop the others: the fault becomes
        an ``error`` event.

        Raises:
            UnhandledErrorEvent: when ``event`` is an ``error`` event and no
                listener takes it.
        """
        found = self._by_type.get(event.type)
        if found is None:
            listeners = [e for e in self._entries if e[0] in (event.type, ALL)]
            found = self._by_type[event.type] = (
                listeners,
                any(e[2] for e in listeners),
            )
        matching, has_once = found
        if event.type == "error" and not matching:
            raise UnhandledErrorEvent(event.message or "runtime error")
        if has_once:
            self._entries = [
                entry for entry in self._entries if not (entry[2] and entry in matching)
            ]
            self._by_type.clear()
        for _, listener, _ in matching:
            try:
                listener(event)
            except Exception as exc:
                if event.type == "error":
                    # A failing error listener has nobody left to tell.
                    logger.exception("trt: an error listener raised")
                    continue
                self._report_listener_fault(event, listener, exc)

    def _report_listener_fault(
        self, event: Event, listener: Listener, exc: Exception
    ) -> None:
        name = getattr(listener, "__qualname__", repr(listener))
        fault = Event(
            type="error",
            timestamp=event.timestamp,
            elapsed_ms=event.elapsed_ms,
            task_id=event.task_id,
            message=f"listener {name} raised on {event.type}: "
            f"{type(exc).__name__}: {exc}",
        )
        try:
            self.emit(fault)
        except UnhandledErrorEvent:
            # Not raised: a listener's bug must not kill the run. Logging is
            # the one channel left (STYLE: loggers where errors can't reach
            # a caller).
            logger.error("%s", fault.message, exc_info=exc)

    @staticmethod
    def _check(event_type: str) -> None:
        if event_type != ALL and event_type not in EVENT_TYPES:
            choices = ", ".join([ALL, *EVENT_TYPES])
            message = f"event type must be one of {choices}; got {event_type!r}"
            raise ValueError(message)
