"""What a stop signal means, and what ``reports/shutdown.json`` says.

Pure functions, so the rules are tested without sending signals:

- the first SIGINT, SIGTERM or SIGHUP begins a graceful shutdown in the chosen
  mode: ``cancel`` aborts running attempts, ``drain`` lets them finish;
  either way nothing new starts and queued work is canceled;
- any later one forces the exit: one best-effort snapshot, every process
  group killed, exit code 128 + the signal number (130 for SIGINT, 143 for
  SIGTERM, 129 for SIGHUP), as shells report a death by that signal;
- except the same signal again within half a second, an echo of the
  first (GNU timeout sends it to trt and then to trt's process group).
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Final, Literal, final

import msgspec

from trt._model import CANCELED, TERMINAL_STATUSES
from trt._results import ResultStruct

if TYPE_CHECKING:
    from collections.abc import Mapping

SHUTDOWN_MODES: Final = ("cancel", "drain")

# The same signal again within this many seconds is taken for an echo of
# the first, not a second request: no one presses Ctrl-C twice this fast,
# while tools that signal both a process and its group do.
ECHO_SECONDS: Final = 0.5


@final
class SignalAction(msgspec.Struct, frozen=True, kw_only=True):
    """What to do about one received signal.

    ``kind`` is "shutdown" (begin a graceful shutdown in ``mode``),
    "force" (snapshot, kill, exit with ``exit_code``) or "ignore" (the
    first signal again, too soon to be a second request).
    """

    kind: Literal["shutdown", "force", "ignore"]
    mode: str | None = None
    exit_code: int | None = None


def on_signal(
    first: int | None, seconds_since_first: float, signum: int, mode: str
) -> SignalAction:
    """Decide what the signal ``signum`` does.

    Args:
        first: the first stop signal received, or None if this is it.
        seconds_since_first: the time since that first signal.
        signum: the signal now received.
        mode: the ``--shutdown`` mode, "cancel" or "drain".

    Raises:
        ValueError: when ``mode`` is not a shutdown mode.
    """
    if mode not in SHUTDOWN_MODES:
        message = f"mode must be one of {', '.join(SHUTDOWN_MODES)}; got {mode!r}"
        raise ValueError(message)
    if first is None:
        return SignalAction(kind="shutdown", mode=mode)
    if signum == first and seconds_since_first < ECHO_SECONDS:
        # One stop, delivered twice: GNU timeout, for one, signals the
        # child and then its whole process group, trt included.
        return SignalAction(kind="ignore")
    return SignalAction(kind="force", exit_code=forced_exit_code(signum))


def forced_exit_code(signum: int) -> int:
    """Return the exit code of a forced exit: 128 + the signal number."""
    return 128 + signum


def incomplete_task_ids(statuses: Mapping[str, str]) -> tuple[str, ...]:
    """Return the tasks a shutdown left undone: canceled or still open.

    Failures and blocked tasks ended on their own; they are not the
    shutdown's doing, though a resume runs them again too.
    """
    return tuple(
        task_id
        for task_id, status in statuses.items()
        if status == CANCELED or status not in TERMINAL_STATUSES
    )


class ShutdownReport(ResultStruct, frozen=True, kw_only=True):
    """The whole of ``reports/shutdown.json``.

    ``forced`` is true when a second signal cut the shutdown short; then
    ``counts`` are the statuses at that moment, running tasks included.
    """

    signal: str
    mode: str
    forced: bool
    run_id: str
    run_status: str
    exit_code: int
    shutdown_started_at: str
    shutdown_ended_at: str
    counts: dict[str, int]
    incomplete_task_ids: tuple[str, ...]
    state_saved: bool
    state_path: str


def shutdown_report(
    *,
    signals: tuple[int, ...],
    mode: str,
    run_id: str,
    run_status: str,
    exit_code: int,
    started_at: str,
    ended_at: str,
    statuses: Mapping[str, str],
    state_saved: bool,
    state_path: str,
) -> ShutdownReport:
    """Build the shutdown report from what the run knows at its end."""
    counts: dict[str, int] = {}
    for status in statuses.values():
        counts[status] = counts.get(status, 0) + 1
    return ShutdownReport(
        signal=signal.Signals(signals[0]).name,
        mode=mode,
        forced=len(signals) > 1,
        run_id=run_id,
        run_status=run_status,
        exit_code=exit_code,
        shutdown_started_at=started_at,
        shutdown_ended_at=ended_at,
        counts=dict(sorted(counts.items())),
        incomplete_task_ids=incomplete_task_ids(statuses),
        state_saved=state_saved,
        state_path=state_path,
    )
