"""What a resumed run keeps from the saved one and what it runs again.

Pure functions over the task graph and the saved state, so every rule can
be tested without running anything:

- a success is kept ("carried over") when its definition is unchanged and
  every dependency is carried over too;
- a task whose definition changed runs again, and so does everything that
  depends on it, however far down;
- a task that was running when trt stopped gets an ``interrupted`` attempt
  in its history and runs again;
- everything else (failed, timed out, canceled, blocked, queued) runs again.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import TYPE_CHECKING, Final, final

from trt._exceptions import StateError
from trt._model import SUCCESS
from trt._results import AttemptResult, TaskError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from trt._model import Task, TaskGraph
    from trt._state import RunState, TaskRecord

# The status of an attempt that was cut off by trt itself stopping.
INTERRUPTED: Final = "interrupted"

# How many ids a mismatch message lists before it says "and N more".
_SHOWN_IDS: Final = 5


@final
class ResumePlan:
    """The outcome of planning a resume.

    Attributes:
        carried: the saved records of the successes that are kept.
        reasons: for each task that runs again, why, in a few words.
        history: for each task that runs again, its earlier attempts, with
            an ``interrupted`` attempt added where one was cut off.
    """

    __slots__ = ("carried", "history", "reasons")

    def __init__(
        self,
        carried: dict[str, TaskRecord],
        reasons: dict[str, str],
        history: dict[str, tuple[AttemptResult, ...]],
    ) -> None:
        self.carried = carried
        self.reasons = reasons
        self.history = history


def check_same_run(graph: TaskGraph, previous: RunState) -> None:
    """Refuse to resume ``previous`` with a different file or other ids.

    Raises:
        StateError: when the saved run read another file, or the file's
            task ids are no longer the saved ones; the message says which.
    """
    path = os.path.realpath(graph.source)
    if path != previous.task_file_path:
        before, now = previous.task_file, graph.source
        if before == now:
            before, now = previous.task_file_path, path
        message = (
            f"cannot resume: the saved run is of {before!r}, not {now!r} "
            "(run without --resume to start afresh)"
        )
        raise StateError(message)
    saved = set(previous.tasks_by_id)
    current = set(graph.ids)
    if saved == current:
        _check_times(previous)
        return
    parts = []
    added = [task_id for task_id in graph.ids if task_id not in saved]
    removed = [task_id for task_id in previous.tasks_by_id if task_id not in current]
    if added:
        parts.append(f"new: {_some(added)}")
    if removed:
        parts.append(f"gone: {_some(removed)}")
    message = (
        f"cannot resume: the task ids in {graph.source!r} changed since the "
        f"saved run ({'; '.join(parts)}); run without --resume to start afresh"
    )
    raise StateError(message)


def _check_times(previous: RunState) -> None:
    """Refuse saved times that are not ISO 8601 with a UTC offset.

    A resume computes with them (an interrupted attempt's length) and the
    timeline places carried attempts by them; a hand-edited or damaged
    state must fail here, as a clear error, not later as a crash.
    """
    where: list[tuple[str, str | None]] = [("updatedAt", previous.updated_at)]
    for task_id, record in previous.tasks_by_id.items():
        if record.running is not None:
            where.append((f"{task_id}.running.startedAt", record.running.started_at))
        for name in ("queued_at", "started_at", "ended_at"):
            value = getattr(record, name)
            if value is not None:
                where.append((f"{task_id}.{_camel(name)}", value))
        for index, attempt in enumerate(record.attempts):
            prefix = f"{task_id}.attempts[{index}]"
            where.append((f"{prefix}.startedAt", attempt.started_at))
            where.append((f"{prefix}.endedAt", attempt.ended_at))
            if attempt.timed_out_at is not None:
                where.append((f"{prefix}.timedOutAt", attempt.timed_out_at))
            process = attempt.process
            if process is not None and process.terminated_at is not None:
                where.append((f"{prefix}.process.terminatedAt", process.terminated_at))
    for place, text in where:
        try:
            stamp = datetime.fromisoformat(text or "")
        except ValueError:
            stamp = None
        if stamp is None or stamp.tzinfo is None:
            message = (
                f"cannot resume: the saved state has a bad time at "
                f"$.tasksById.{place}: {text!r} (expected ISO 8601 with an offset)"
            )
            if place == "updatedAt":
                message = message.replace("$.tasksById.", "$.")
            raise StateError(message)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.title() for word in rest)


def _some(ids: list[str]) -> str:
    shown = ", ".join(repr(task_id) for task_id in ids[:_SHOWN_IDS])
    if len(ids) > _SHOWN_IDS:
        shown += f" and {len(ids) - _SHOWN_IDS} more"
    return shown


def plan_resume(
    graph: TaskGraph, previous: RunState, hashes: Mapping[str, str]
) -> ResumePlan:
    """Decide, task by task, what a resume of ``previous`` keeps.

    Args:
        graph: the task file as it is now; its ids must be the saved ones
            (see :func:`check_same_run`).
        previous: the saved state, journal applied.
        hashes: each task's current definition hash.
    """
    carried: dict[str, TaskRecord] = {}
    reasons: dict[str, str] = {}
    history: dict[str, tuple[AttemptResult, ...]] = {}
    # File order is not dependency order, so walk the graph so that each
    # task is decided after its dependencies.
    for task in _dependency_order(graph):
        record = previous.tasks_by_id[task.id]
        rerun_dep = next((dep for dep in task.depends_on if dep in reasons), None)
        attempts = record.attempts
        if record.running is not None:
            attempts += (_interrupted(task.id, record, previous.updated_at),)
        if record.definition_hash != hashes[task.id]:
            reasons[task.id] = "its definition changed"
        elif rerun_dep is not None and record.status == SUCCESS:
            reasons[task.id] = f"dependency {rerun_dep!r} runs again"
        elif record.status == SUCCESS:
            carried[task.id] = record
            continue
        elif record.running is not None:
            reasons[task.id] = "it was interrupted"
        else:
            reasons[task.id] = f"it ended {record.status}"
        history[task.id] = attempts
    return ResumePlan(carried, reasons, history)


def _dependency_order(graph: TaskGraph) -> list[Task]:
    """Return the tasks so that each comes after all its dependencies."""
    waiting = {task.id: len(task.depends_on) for task in graph}
    order = [task for task in graph if not task.depends_on]
    for task in order:  # grows while it is walked
        for dependent_id in graph.dependents(task.id):
            waiting[dependent_id] -= 1
            if waiting[dependent_id] == 0:
                order.append(graph[dependent_id])
    return order


def _interrupted(task_id: str, record: TaskRecord, saved_at: str) -> AttemptResult:
    """Return the attempt a stop cut off, as history can record it.

    When trt died is unknown; the last moment the state was saved is the
    best bound there is, so the attempt ends there.
    """
    running = record.running
    assert running is not None
    started = datetime.fromisoformat(running.started_at)
    ended = max(datetime.fromisoformat(saved_at), started)
    message = "trt stopped while this attempt ran; it ran again on resume"
    return AttemptResult(
        task_id=task_id,
        attempt=running.attempt,
        status=INTERRUPTED,
        started_at=running.started_at,
        ended_at=ended.isoformat(timespec="milliseconds"),
        elapsed_ms=round((ended - started).total_seconds() * 1000, 3),
        error=TaskError(kind=INTERRUPTED, message=message),
    )
