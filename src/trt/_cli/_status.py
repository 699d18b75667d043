"""``trt status``: what the saved run looks like, without starting anything."""

from __future__ import annotations

from trt._cli import _exit_codes
from trt._cli._console import out, printable

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: see _main.py
if TYPE_CHECKING:
    from typing import Any

    from trt._cli._options import Options
    from trt._state import RunState

# The order counts are listed in: finished first, then work in flight.
STATUS_ORDER = (
    "success",
    "failed",
    "timed_out",
    "canceled",
    "blocked",
    "running",
    "waiting_retry",
    "queued",
    "pending",
)


def status(options: Options) -> int:
    """Print the saved run's status; exit 2 when there is none to read."""
    from trt._exceptions import StateError
    from trt._state import StateStore

    store = StateStore(options.state_dir)
    try:
        state = store.load()
    except StateError as exc:
        message = f"{exc} (trt keeps a run's state there; see --state-dir)"
        raise StateError(message) from None
    if options.file is not None:
        import os

        if os.path.realpath(options.file) != state.task_file_path:
            message = (
                f"the saved run in {options.state_dir!r} is of "
                f"{state.task_file_path!r}, not {options.file!r}"
            )
            raise StateError(message)
    holder = store.holder()
    summary = describe(state, holder)
    if options.json:
        import msgspec

        out(msgspec.json.encode(summary).decode() + "\n")
    else:
        out(render(summary, options.state_dir))
    return _exit_codes.SUCCESS


def describe(state: RunState, holder: int | None) -> dict[str, Any]:
    """Summarize ``state``; ``holder`` is the pid of a live run, if any.

    A state that says "running" while no process holds the folder's lock
    was left by a trt that died: its status is shown as "interrupted".
    """
    counts: dict[str, int] = {}
    for record in state.tasks_by_id.values():
        counts[record.status] = counts.get(record.status, 0) + 1
    ordered = {name: counts.pop(name) for name in STATUS_ORDER if name in counts}
    ordered.update(sorted(counts.items()))
    live = holder is not None
    shown = state.status
    if shown == "running" and not live:
        shown = "interrupted"
    carried = sum(1 for record in state.tasks_by_id.values() if record.carried_over)
    return {
        "runId": state.run_id,
        "taskFile": state.task_file,
        "taskFilePath": state.task_file_path,
        "status": shown,
        "savedStatus": state.status,
        "live": live,
        "pid": holder if live else state.pid,
        "startedAt": state.started_at,
        "updatedAt": state.updated_at,
        "resumedFrom": state.resumed_from,
        "taskCount": len(state.tasks_by_id),
        "carriedOverCount": carried,
        "counts": ordered,
        "shutdown": (
            None
            if state.shutdown is None
            else {
                "signal": state.shutdown.signal,
                "mode": state.shutdown.mode,
                "startedAt": state.shutdown.started_at,
            }
        ),
    }


def render(summary: dict[str, Any], state_dir: str = "state") -> str:
    """Return the plain-text form of :func:`describe`'s summary."""
    status = summary["status"]
    if summary["live"]:
        status += f" (trt pid {summary['pid']})"
    elif summary["savedStatus"] == "running":
        status += f" (trt pid {summary['pid']} ended without finishing the run)"
    counts = ", ".join(f"{n} {name}" for name, n in summary["counts"].items())
    lines = [
        f"run:       {summary['runId']}",
        f"task file: {printable(summary['taskFile'])}",
        f"status:    {status}",
        f"started:   {summary['startedAt']}",
        f"updated:   {summary['updatedAt']}",
        f"tasks:     {summary['taskCount']}" + (f": {counts}" if counts else ""),
    ]
    if summary["resumedFrom"] is not None:
        lines.append(
            f"resumed:   from run {summary['resumedFrom']}, "
            f"{summary['carriedOverCount']} tasks carried over"
        )
    shutdown = summary["shutdown"]
    if shutdown is not None:
        lines.append(
            f"shutdown:  {shutdown['signal']} at {shutdown['startedAt']}, "
            f"mode {shutdown['mode']}"
        )
    if not summary["live"] and summary["status"] != "success":
        import os
        import shlex

        path = summary["taskFile"]
        if os.path.realpath(path) != summary["taskFilePath"]:
            path = summary["taskFilePath"]  # the saved one is relative elsewhere
        if path.startswith("-"):
            path = "./" + path
        words = ["trt", "run", path, "--resume"]
        if state_dir != "state":
            words += ["--state-dir", state_dir]
        command = " ".join(shlex.quote(word) for word in words)
        lines.append(f"resume:    {printable(command)}")
    return "\n".join(lines) + "\n"
