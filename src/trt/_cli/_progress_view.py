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
    from trt._progress import ProgressEvents

# Seconds between redraws of the live line: fast enough to feel live,
# slow enough that a 10,000-task run does not spend its time drawing.
REDRAW_INTERVAL: Final = 0.1

_FAILED = frozenset({"failed", "timed_out", "blocked", "canceled"})


async def show_progress(records: ProgressEvents, total: int, *, live: bool) -> None:
    """Print the run's progress until ``records`` ends with the run."""
    done = failed = active = 0
    last_draw = -REDRAW_INTERVAL
    line = ""
    async for record in records:
        elapsed = record.elapsed_ms / 1000
        if record.type == "task:start":
            active += 1
        elif record.type in ("task:success", "task:failure"):
            active -= 1
        elif record.type == "task:finish":
            done += 1
            failed += record.status in _FAILED
            if not live:
                err(
                    f"[{elapsed:8.2f}s] {done}/{total} {record.task_id}: "
                    f"{record.status}\n"
                )
        line = _status_line(done, total, active, failed, elapsed)
        now = trio.current_time()
        if live and (now - last_draw >= REDRAW_INTERVAL or record.type == "run:finish"):
            err(f"\r\x1b[K{line}")
            last_draw = now
    if live and line:
        err("\n")


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
