"""The result objects a run produces; the reports are these, encoded.

They are frozen so a listener or a report writer can never change what
another one sees. Field names become camelCase in JSON.
"""

from __future__ import annotations

from typing import Any

import msgspec

from trt._modes import MODES as _MODES


class ResultStruct(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    rename="camel",
):
    """Base of every result object.

    ``frozen`` because results are shared between the scheduler, listeners
    and report writers; ``rename="camel"`` to match the task file's style.
    Defaults are kept in the output so a report's shape never varies.

    Subclasses that hold only text, numbers and other such structs are
    declared ``gc=False``: frozen, they can never form a cycle, and a run
    makes several per task, which the cycle collector need not scan.
    """


class TaskError(ResultStruct, frozen=True, kw_only=True, gc=False):
    """Why an attempt did not succeed: a kind, a message, maybe a stack."""

    kind: str
    message: str
    stack: str | None = None


class ProcessEvidence(ResultStruct, frozen=True, kw_only=True, gc=False):
    """What happened to a command's process, for the report."""

    pid: int | None = None
    exit_code: int | None = None
    signal: str | None = None
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    terminated_with: str | None = None
    terminated_at: str | None = None


class AttemptResult(ResultStruct, frozen=True, kw_only=True, gc=False):
    """One try at a task: when it ran, how it ended, and the evidence."""

    task_id: str
    attempt: int
    status: str
    started_at: str
    ended_at: str
    elapsed_ms: float
    error: TaskError | None = None
    process: ProcessEvidence | None = None
    timeout_ms: int | None = None
    timed_out_at: str | None = None
    next_delay_ms: float | None = None

    @property
    def ok(self) -> bool:
        """Tell whether the attempt succeeded."""
        return self.status == "success"


class TaskResult(ResultStruct, frozen=True, kw_only=True):
    """A task's final state and every attempt it took.

    ``blocked_by`` is the dependency that stopped it; ``blocked_root`` is
    the task whose failure started the chain (the same for direct
    dependents). ``carried_over`` marks a success kept from the run that
    this one resumed; its attempts are that run's.
    """

    id: str
    type: str
    status: str
    depends_on: tuple[str, ...] = ()
    attempts: tuple[AttemptResult, ...] = ()
    queued_at: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    queue_ms: float | None = None
    duration_ms: float | None = None
    blocked_by: str | None = None
    blocked_root: str | None = None
    error: TaskError | None = None
    stop_reason: str | None = None
    carried_over: bool = False
    metadata: dict[str, Any] = {}


class RunMetrics(ResultStruct, frozen=True, kw_only=True):
    """Counts and extremes of one run.

    ``completed_count`` counts tasks that succeeded; the other counts are
    per final status. ``max_active`` is the most attempts running at once,
    ``queue_length_max`` the longest the ready queue grew.
    """

    task_count: int = 0
    completed_count: int = 0
    failed_count: int = 0
    blocked_count: int = 0
    timed_out_count: int = 0
    canceled_count: int = 0
    retry_count: int = 0
    max_active: int = 0
    queue_length_max: int = 0
    duration_ms: float = 0.0


class RunOptions(ResultStruct, frozen=True, kw_only=True):
    """How a run was asked to behave; recorded verbatim in reports."""

    concurrency: int = 1
    mode: str = "allSettled"
    timeout_ms: int | None = None
    cancel_after_ms: int | None = None
    kill_grace_ms: int = 2000

    def __post_init__(self) -> None:
        # The CLI checks its flags, but the API must refuse the same values.
        problems = []
        if self.concurrency < 1:
            problems.append(f"concurrency must be at least 1, got {self.concurrency!r}")
        if self.mode not in _MODES:
            choices = ", ".join(_MODES)
            problems.append(f"mode must be one of {choices}; got {self.mode!r}")
        for name in ("timeout_ms", "cancel_after_ms"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                problems.append(f"{name} must be positive or None, got {value!r}")
        if self.kill_grace_ms < 0:
            problems.append(f"kill_grace_ms must be >= 0, got {self.kill_grace_ms!r}")
        if problems:
            raise ValueError("; ".join(problems))


class TaskFailure(ResultStruct, frozen=True, kw_only=True):
    """One task's failure inside an aggregate error."""

    task_id: str
    status: str
    kind: str
    message: str


class AggregateError(ResultStruct, frozen=True, kw_only=True):
    """Why a run failed when every candidate failed (mode any)."""

    kind: str = "aggregate"
    message: str
    errors: tuple[TaskFailure, ...] = ()


class ShutdownInfo(ResultStruct, frozen=True, kw_only=True):
    """A graceful shutdown: the signal that began it, the mode, the time."""

    signal: str
    mode: str
    started_at: str


class RunResult(ResultStruct, frozen=True, kw_only=True):
    """Everything a run produced; ``reports/latest.json`` is this object."""

    run_id: str
    task_file: str
    status: str
    options: RunOptions
    started_at: str
    ended_at: str
    tasks: tuple[TaskResult, ...]
    metrics: RunMetrics
    mode: str = "allSettled"
    stop_reason: str | None = None
    canceled_at: str | None = None
    cancel_reason: str | None = None
    canceled_task_ids: tuple[str, ...] = ()
    error: AggregateError | None = None
    shutdown: ShutdownInfo | None = None
    resumed_from: str | None = None
    carried_over_task_ids: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Tell whether the run met its success condition."""
        return self.status == "success"
