"""``--progress``: live progress from an ``async for`` over progress_events.

On a terminal, one status line redrawn in place (at most ten times a
second, so drawing never competes with the run); otherwise one plain line
per finished task, which reads well in a CI log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import trio

from trt._cli._console import err

if TYPE_CHECKING:
    from trt._output import OutputSink
    from trt._progress import ProgressEvents

# Seconds between redraws of the live line: fast enough to feel live,
# slow enough that a 10,000-task run does not spend its time drawing.
REDRAW_INTERVAL: Final = 0.1

_FAILED = frozenset({"failed", "timed_out", "blocked", "canceled"})


async def show_progress(
    records: ProgressEvents, total: int, *, live: bool, sink: OutputSink | None = None
) -> None:
    """Print the run's progress until ``records`` ends with the run.

    The ``async for`` loop keeps the counts; on a terminal a separate
    ticker redraws the line every REDRAW_INTERVAL from the latest counts,
    so the line moves (and the clock runs) even between events, and a
    burst of events shows its end, not its start.
    """
    state = _Counts(total)
    if live and sink is not None:
        sink.before_write = state.clear
    async with trio.open_nursery() as nursery:
        if live:
            nursery.start_soon(_redraw_forever, state)
        async for record in records:
            state.update(record.type, record.status)
            if not live and record.type == "task:finish":
                err(
                    f"[{record.elapsed_ms / 1000:8.2f}s] {state.done}/{total} "
                    f"{record.task_id}: {record.status}\n"
                )
        nursery.cancel_scope.cancel()
    if live:
        if sink is not None:
            sink.before_write = None
        err(f"\r\x1b[K{state.line()}\n")


class _Counts:
    """What the status line shows, kept up to date from the records."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = self.failed = self.active = 0
        self.started = trio.current_time()
        self.drawn = False

    def clear(self) -> None:
        """Erase the live line (before task output is written)."""
        if self.drawn:
            err("\r\x1b[K")
            self.drawn = False

    def update(self, event_type: str, status: str | None) -> None:
        if event_type == "task:start":
            self.active += 1
        elif event_type in ("task:success", "task:failure"):
            self.active -= 1
        elif event_type == "task:finish":
            self.done += 1
            self.failed += status in _FAILED

    def line(self) -> str:
        elapsed = trio.current_time() - self.started
        return _status_line(self.done, self.total, self.active, self.failed, elapsed)


async def _redraw_forever(state: _Counts) -> None:
    while True:
        err(f"\r\x1b[K{state.line()}")
        state.drawn = True
        await trio.sleep(REDRAW_INTERVAL)


def _status_line(
    done: int, total: int, active: int, failed: int, elapsed: float
) -> str:
    eta = ""
    if 0 < done < total:
        eta = f", eta {elapsed / done * (total - done):.1f}s"
    percent = 100 * done // total if total else 100
    return (
        f"trt: {done}/{total} done ({percent}%), {active} active, "
        f"{failed} not ok, {elapsed:.1f}s{eta}"
    )
