"""The boundary between the scheduler and whatever executes an attempt.

The scheduler only ever calls ``Executor.run_task``; how an attempt runs
(a local child process, a call in this interpreter, one day a remote
worker) stays behind it. Deadlines and run-level cancellation are trio
cancellation from the scheduler's side; an executor cleans up and re-raises,
leaving what it learned in ``AttemptContext.probe`` so the scheduler can
still report a canceled or timed-out attempt with its evidence.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, final

import trio

from trt._functions import run_function
from trt._model import CommandTask, FunctionTask
from trt._process import run_command
from trt._results import AttemptResult, ProcessEvidence
from trt._task_context import TaskContext as TaskContext  # re-exported
from trt._util import span_ms, utc_now

if TYPE_CHECKING:
    from trt._model import Task
    from trt._output import OutputSink
    from trt._results import TaskError


@final
class AttemptProbe:
    """Mutable evidence an executor gathers while an attempt runs."""

    __slots__ = (
        "exit_code",
        "pid",
        "signal",
        "stderr_bytes",
        "stdout_bytes",
        "terminated_at",
        "terminated_with",
    )

    def __init__(self) -> None:
        self.pid: int | None = None
        self.exit_code: int | None = None
        self.signal: str | None = None
        self.stdout_bytes = 0
        self.stderr_bytes = 0
        self.terminated_with: str | None = None
        self.terminated_at: str | None = None


@final
class AttemptContext:
    """What an executor needs for one attempt besides the task itself."""

    __slots__ = (
        "attempt",
        "kill_grace",
        "output",
        "probe",
        "started_at",
        "started_clock",
        "task_context",
    )

    def __init__(
        self,
        *,
        attempt: int,
        output: OutputSink,
        started_at: str,
        started_clock: float,
        kill_grace: float = 2.0,
    ) -> None:
        self.attempt = attempt
        self.output = output
        self.started_at = started_at
        # trio.current_time() at the start, so elapsed times follow the
        # run's clock (virtual under trio.testing.MockClock).
        self.started_clock = started_clock
        # Seconds (RunOptions.kill_grace_ms is milliseconds).
        self.kill_grace = kill_grace
        self.probe = AttemptProbe()
        self.task_context: TaskContext | None = None

    def finish(self, task: Task, error: TaskError | None) -> AttemptResult:
        """Build the result of an attempt that ended now, on its own.

        ``success`` when there is no error, else ``failed``; timeouts and
        cancellation are the scheduler's to record, not the executor's.
        """
        return self.result(
            task,
            "success" if error is None else "failed",
            error,
            ended_clock=trio.current_time(),
            ended_at=utc_now(),
        )

    def result(
        self,
        task: Task,
        status: str,
        error: TaskError | None = None,
        *,
        ended_clock: float,
        ended_at: str,
    ) -> AttemptResult:
        """Build the attempt's result from the probe and the end time."""
        process = None
        if isinstance(task, CommandTask):
            probe = self.probe
            process = ProcessEvidence(
                pid=probe.pid,
                exit_code=probe.exit_code,
                signal=probe.signal,
                stdout_bytes=probe.stdout_bytes,
                stderr_bytes=probe.stderr_bytes,
                terminated_with=probe.terminated_with,
                terminated_at=probe.terminated_at,
            )
        return AttemptResult(
            task_id=task.id,
            attempt=self.attempt,
            status=status,
            started_at=self.started_at,
            ended_at=ended_at,
            elapsed_ms=span_ms(ended_clock - self.started_clock),
            error=error,
            process=process,
        )


class Executor(Protocol):
    """Runs single attempts; the scheduler's only view of execution."""

    async def run_task(self, task: Task, context: AttemptContext) -> AttemptResult:
        """Run one attempt and return how it ended.

        A failure of the task is returned as data, never raised. Trio
        cancellation is the one thing that propagates, after cleanup.
        """
        ...


@final
class LocalExecutor:
    """Runs commands as local child processes and functions in-process."""

    async def run_task(self, task: Task, context: AttemptContext) -> AttemptResult:
        """Run ``task`` here, as a process or a call, and report the result."""
        if isinstance(task, CommandTask):
            return await run_command(task, context)
        if isinstance(task, FunctionTask):
            return await run_function(task, context)
        message = f"task kind {task.kind!r} has no executor"
        raise TypeError(message)


async def run_task(task: Task, context: AttemptContext) -> AttemptResult:
    """Run one attempt of ``task`` on this machine.

    Args:
        task: the task to run.
        context: attempt number, output sink and the probe to fill.

    Returns:
        The attempt's result; failures are data, not exceptions.
    """
    return await LocalExecutor().run_task(task, context)
