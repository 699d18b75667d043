"""The scheduler: runs a task graph under a concurrency limit.

Design::

    ready heap (file order) ──> worker 1..k ──> limiter ──> executor
          ^                          │
          │   dependents whose deps  │ result
          └──── all succeeded <── _settle ──> blocked dependents (BFS)
                                     │
          backoff sleeper <── retry ─┘  (holds no slot while it waits)

One nursery holds everything a run starts. There are as many workers as the
limit allows attempts (never more than there are tasks); each pulls the
next ready task, so the cost per task is one heap operation rather than one
trio task. The ``trio.CapacityLimiter`` is what bounds attempts: a worker
holds one token for exactly the span of an attempt, and the active count
changes only in ``_run_attempt``. All bookkeeping happens on the event loop
thread between checkpoints, so it needs no locks.
"""

from __future__ import annotations

import contextlib
import heapq
import math
import os
import signal
import time
import uuid
from collections import deque
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, final

import msgspec
import trio

from trt._events import Event, EventBus, EventType
from trt._exceptions import StateError
from trt._executor import AttemptContext, Executor, LocalExecutor
from trt._model import (
    BLOCKED,
    CANCELED,
    SUCCESS,
    TERMINAL_STATUSES,
    TIMED_OUT,
    Task,
    TaskGraph,
)
from trt._modes import ModeRules
from trt._output import OutputSink
from trt._results import (
    AggregateError,
    AttemptResult,
    RunMetrics,
    RunOptions,
    RunResult,
    ShutdownInfo,
    TaskError,
    TaskFailure,
    TaskResult,
)
from trt._resume import check_same_run, plan_resume
from trt._state import (
    STATE_VERSION,
    RunningAttempt,
    RunState,
    TaskRecord,
    definition_hash,
)
from trt._state_writer import StateWriter
from trt._util import plural, span_ms, utc_now, utc_stamp

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from trt._state import StateStore

PENDING: Final = "pending"
QUEUED: Final = "queued"
RUNNING: Final = "running"
WAITING_RETRY: Final = "waiting_retry"

# An event as the scheduler records it: type, trio clock, task id, status,
# attempt, message. The dispatcher turns these into Event objects.
_Batch = list[tuple[EventType, float, str | None, str | None, int | None, str | None]]


@final
class _TaskState:
    """The scheduler's mutable view of one task during a run."""

    __slots__ = (
        "attempt_started_at",
        "attempts",
        "blocked_by",
        "blocked_root",
        "cancel_scope",
        "carried_over",
        "context",
        "ended_at",
        "ended_clock",
        "prior_attempts",
        "queued_at",
        "queued_clock",
        "remaining",
        "started_at",
        "started_clock",
        "status",
        "stop_reason",
        "task",
    )

    def __init__(self, task: Task) -> None:
        self.task = task
        self.status = PENDING
        # Dependencies that have not succeeded yet; at zero the task is ready.
        self.remaining = len(task.depends_on)
        self.attempts: list[AttemptResult] = []
        self.queued_at: str | None = None
        self.queued_clock: float | None = None
        self.started_at: str | None = None
        self.started_clock: float | None = None
        self.ended_at: str | None = None
        self.ended_clock: float | None = None
        self.blocked_by: str | None = None
        self.blocked_root: str | None = None
        self.stop_reason: str | None = None
        # The scope of the running attempt, or of the backoff wait.
        self.cancel_scope: trio.CancelScope | None = None
        # The running attempt's context (its probe knows the pid).
        self.context: AttemptContext | None = None
        self.attempt_started_at: str | None = None
        # Attempts made by earlier runs of a resumed run: they are history,
        # and this run's retry budget starts after them.
        self.prior_attempts = 0
        self.carried_over = False


@final
class Runtime:
    """Runs one task graph once and returns a :class:`RunResult`.

    Args:
        graph: the validated tasks.
        options: concurrency, fallback timeout and kill grace.
        executor: runs single attempts; defaults to local processes and
            in-process function calls.
        output: where command output goes; defaults to trt's own stdout
            and stderr, tagged by task id when more than one task can run.
        store: an open :class:`StateStore`; the run's state is then kept
            there while it runs (see ``trt._state_writer``).
        previous: a saved run of the same task file to resume: its
            unchanged successes are kept, everything else runs again.

    Raises:
        StateError: when ``previous`` is of another file or other ids.
    """

    def __init__(
        self,
        graph: TaskGraph,
        options: RunOptions | None = None,
        *,
        executor: Executor | None = None,
        output: OutputSink | None = None,
        store: StateStore | None = None,
        previous: RunState | None = None,
    ) -> None:
        self.graph = graph
        self.options = options or RunOptions()
        self.executor: Executor = executor or LocalExecutor()
        self.output = output or OutputSink(prefix=self.options.concurrency > 1)
        self.run_id = uuid.uuid4().hex
        self._states = {task.id: _TaskState(task) for task in graph}
        self._ready: list[tuple[int, _TaskState]] = []
        self._lot = trio.lowlevel.ParkingLot()
        self._limiter = trio.CapacityLimiter(self.options.concurrency)
        self._unfinished = len(graph)
        self._active = 0
        self._max_active = 0
        self._queue_length_max = 0
        self._retry_count = 0
        self._ran = False
        self._nursery: trio.Nursery | None = None
        self._rules = ModeRules(self.options.mode)
        self._stop_reason: str | None = None
        self._settled_by_mode = False
        self._canceled_at: str | None = None
        self._cancel_reason: str | None = None
        self._timer_scope = trio.CancelScope()
        self.events = EventBus()
        self._send: trio.MemorySendChannel[_Batch] | None = None
        self._batch: _Batch = []
        self._started_wall = 0.0
        self._started_clock = 0.0
        # The run's clock, read directly: trio.current_time() costs two
        # more calls, and the scheduler reads the time several times a task.
        self._now: Callable[[], float] = trio.current_time
        self._end_watchers: list[Callable[[], None]] = []
        self._ended = False
        # Nothing new starts once the run stops (cancel, drain, a mode
        # settling); _aborted: running attempts were canceled too.
        self._stopping = False
        self._aborted = False
        self._shutdown: ShutdownInfo | None = None
        self.store = store
        self._writer: StateWriter | None = None
        self._started_at = ""
        self._task_file_path = os.path.realpath(graph.source)
        self.state_saved = False
        self._hashes: dict[str, str] = {}
        if store is not None or previous is not None:
            self._hashes = {task.id: definition_hash(task) for task in graph}
        self.resumed_from: str | None = None
        if previous is not None:
            self._resume(previous)

    def _resume(self, previous: RunState) -> None:
        """Carry the saved successes over and give the rest their history."""
        check_same_run(self.graph, previous)
        plan = plan_resume(self.graph, previous, self._hashes)
        self.resumed_from = previous.run_id
        for task_id, record in plan.carried.items():
            state = self._states[task_id]
            state.status = SUCCESS
            state.carried_over = True
            state.attempts = list(record.attempts)
            state.queued_at = record.queued_at
            state.started_at = record.started_at
            state.ended_at = record.ended_at
            self._unfinished -= 1
            for dependent_id in self.graph.dependents(task_id):
                self._states[dependent_id].remaining -= 1
        for task_id, attempts in plan.history.items():
            state = self._states[task_id]
            state.attempts = list(attempts)
            state.prior_attempts = len(attempts)

    @property
    def finished(self) -> bool:
        """Tell whether every task has reached a final status."""
        return self._ran and self._unfinished == 0

    @property
    def shutdown_info(self) -> ShutdownInfo | None:
        """Return the graceful shutdown under way or done, if any."""
        return self._shutdown

    def task_statuses(self) -> dict[str, str]:
        """Return each task's status right now, in file order."""
        return {task_id: state.status for task_id, state in self._states.items()}

    @property
    def active_count(self) -> int:
        """Return how many attempts are running right now."""
        return self._active

    async def run(self) -> RunResult:
        """Run every task to a terminal state and return the result.

        Raises:
            RuntimeError: when called a second time; a runtime runs once.
        """
        if self._ran:
            message = "this runtime has already run; build a new one"
            raise RuntimeError(message)
        self._ran = True
        self._started_wall = time.time()
        started_at = utc_stamp(self._started_wall)
        self._now = trio.lowlevel.current_clock().current_time
        started_clock = self._started_clock = self._now()

        try:
            return await self._run(started_at, started_clock)
        finally:
            # However the run ends (finished, canceled from outside, a bug),
            # whoever watches it learns that it ended.
            self._ended = True
            watchers, self._end_watchers = self._end_watchers, []
            for watcher in watchers:
                watcher()

    def _watch_end(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once when run() returns or raises (now if it has)."""
        if self._ended:
            callback()
        else:
            self._end_watchers.append(callback)

    async def _run(self, started_at: str, started_clock: float) -> RunResult:
        self._started_at = started_at
        # Unbounded, so events sent before the dispatcher starts just wait.
        send, receive = trio.open_memory_channel[_Batch](math.inf)
        with send, receive:
            self._send = send
            self._emit(
                "run:start",
                message=f"{plural(len(self.graph), 'task')}, "
                f"mode {self.options.mode}, "
                f"concurrency {self.options.concurrency}",
            )
            self._carry_over()
            for state in self._states.values():
                if state.remaining == 0 and state.status == PENDING:
                    self._enqueue(state)
            if self.store is not None:
                # Saved before any task starts, with the first ones queued;
                # a StateError here leaves nothing started.
                self._writer = self._begin_state(self.store)
            async with trio.open_nursery() as outer:
                outer.start_soon(self._dispatch, receive.clone())
                if self._writer is not None:
                    outer.start_soon(self._writer.run)
                if self._unfinished:
                    async with trio.open_nursery() as nursery:
                        self._nursery = nursery
                        if self.options.cancel_after_ms is not None:
                            nursery.start_soon(
                                self._cancel_after, self.options.cancel_after_ms
                            )
                        workers = min(self.options.concurrency, len(self.graph))
                        for _ in range(workers):
                            nursery.start_soon(self._worker)
                duration_ms = (self._now() - started_clock) * 1000
                result = self._result(started_at, utc_now(), duration_ms)
                self._emit("run:finish", status=result.status)
                self._send = None
                # Lets the dispatcher drain and end, and the writer finish.
                send.close()
                if self._writer is not None:
                    self._writer.close()
        if self._writer is not None:
            await self._end_state(self._writer, result.status)
        return result

    def _carry_over(self) -> None:
        """Announce the successes a resumed run kept, and let modes see them."""
        message = f"carried over from run {self.resumed_from}"
        for state in self._states.values():
            if not state.carried_over:
                continue
            self._emit(
                "task:finish", task_id=state.task.id, status=SUCCESS, message=message
            )
            reason = self._rules.settle_on(state.task.id, SUCCESS)
            if reason is not None and not self._stopping:
                self._stop_reason = reason
                self._settled_by_mode = True
                self.cancel(reason)
        self._after_finish()

    # -- state on disk ---------------------------------------------------

    def _begin_state(self, store: StateStore) -> StateWriter:
        """Save the whole run once, and return the writer that goes on."""
        writer = StateWriter(
            store,
            tuple(self._states),
            self._task_record,
            self._quick_record,
            self._header,
            lambda: (self._now() - self._started_clock) * 1000,
            journal=f"{self.run_id}.journal",
        )
        try:
            # Blocking, on purpose: no task has started, so the loop has
            # nothing else to do, and a thread hop only adds latency.
            writer.save_now(RUNNING)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            message = f"cannot save the run's state in {store.directory}: {reason}"
            raise StateError(message) from None
        return writer

    async def _end_state(self, writer: StateWriter, status: str) -> None:
        # Shielded: a run that finished must say so on disk even when the
        # caller is already being canceled.
        with trio.CancelScope(shield=True):
            # The last batch, if one is being written, is done by now (the
            # nursery waited for the writer); the snapshot holds the rest.
            self.state_saved = writer.finish(status)
            await trio.lowlevel.checkpoint()

    @property
    def state_failure(self) -> str | None:
        """Return why the run's state stopped being saved, if it did."""
        return self._writer.failure if self._writer is not None else None

    def save_state(self, status: str = "interrupted") -> bool:
        """Save the run as it is right now, blocking, and stop saving.

        For a forced exit: running tasks are saved as running, so a resume
        records their attempts as interrupted. Nothing is written after
        this snapshot. Returns whether it was written.
        """
        if self._writer is None or self.store is None:
            return False
        try:
            saved = self._writer.save_now(status)
        except OSError as exc:
            self._writer.fail(exc)
            return False
        self.store.close()
        self.state_saved = saved
        return saved

    def _changed(self, state: _TaskState) -> None:
        if self._writer is not None:
            self._writer.mark(state.task.id)

    def _task_record(self, task_id: str) -> TaskRecord:
        state = self._states[task_id]
        if state.status == SUCCESS and not state.carried_over:
            # Most records of a finished run; the fields left out are unset
            # for a success (and fewer arguments build faster).
            return TaskRecord(
                status=SUCCESS,
                definition_hash=self._hashes[task_id],
                attempts=tuple(state.attempts),
                queued_at=state.queued_at,
                started_at=state.started_at,
                ended_at=state.ended_at,
                stop_reason=state.stop_reason,
            )
        running = None
        if state.status == RUNNING and state.attempt_started_at is not None:
            running = RunningAttempt(
                attempt=len(state.attempts) + 1, started_at=state.attempt_started_at
            )
        return TaskRecord(
            status=state.status,
            definition_hash=self._hashes[task_id],
            attempts=tuple(state.attempts),
            running=running,
            queued_at=state.queued_at,
            started_at=state.started_at,
            ended_at=state.ended_at,
            error=_task_error(state),
            blocked_by=state.blocked_by,
            blocked_root=state.blocked_root,
            stop_reason=state.stop_reason,
            carried_over=state.carried_over,
        )

    def _quick_record(self, task_id: str) -> bytes | None:
        """Frame the record of a task that never started by hand, or None.

        Every task is in the first snapshot, most of them pending or
        queued; building and encoding a TaskRecord for each costs several
        times this. Only ASCII that needs no escaping goes in (a hex hash,
        an ISO time); test_state checks it decodes to the same record.
        """
        state = self._states[task_id]
        if state.attempts or state.carried_over or state.stop_reason:
            return None
        digest = self._hashes[task_id].encode()
        if state.status == PENDING:
            return b'{"status":"pending","definitionHash":"%s"}' % digest
        if state.status == QUEUED and state.queued_at is not None:
            return b'{"status":"queued","definitionHash":"%s","queuedAt":"%s"}' % (
                digest,
                state.queued_at.encode(),
            )
        return None

    def _header(
        self,
        status: str,
        seq: int,
        tasks: dict[str, Any],
        events: tuple[Event, ...],
        journal: str | None,
    ) -> RunState:
        return RunState(
            version=STATE_VERSION,
            run_id=self.run_id,
            task_file=self.graph.source,
            task_file_path=self._task_file_path,
            pid=os.getpid(),
            started_at=self._started_at,
            updated_at=utc_now(),
            status=status,
            options=self.options,
            seq=seq,
            journal=journal,
            resumed_from=self.resumed_from,
            shutdown=self._shutdown,
            tasks_by_id=tasks,
            events=events,
            event_count=seq,
        )

    async def _dispatch(self, receive: trio.MemoryReceiveChannel[_Batch]) -> None:
        # One dispatcher, so listeners see events in exactly the order the
        # scheduler produced them, however long any listener takes. Events
        # travel in batches: the scheduler appends to the batch last sent
        # until the dispatcher takes it, so a fast run costs one channel
        # operation per scheduling round rather than one per event.
        async with receive:
            async for batch in receive:
                self._batch = []
                emit = self.events.emit
                wall = self._started_wall
                for event_type, clock, task_id, status, attempt, message in batch:
                    elapsed = clock - self._started_clock
                    emit(
                        Event(
                            type=event_type,
                            timestamp=utc_stamp(wall + elapsed),
                            elapsed_ms=span_ms(elapsed),
                            task_id=task_id,
                            status=status,
                            attempt=attempt,
                            message=message,
                        )
                    )

    def _emit(
        self,
        event_type: EventType,
        *,
        task_id: str | None = None,
        status: str | None = None,
        attempt: int | None = None,
        message: str | None = None,
        clock: float | None = None,
    ) -> None:
        # ``clock``: the moment of the event, when the caller has read it.
        if self._send is None or not self.events.active:
            return
        # Only the moment is taken now; the Event (and its wall-clock time,
        # derived from the run's start) is built by the dispatcher.
        batch = self._batch
        batch.append(
            (
                event_type,
                self._now() if clock is None else clock,
                task_id,
                status,
                attempt,
                message,
            )
        )
        if len(batch) == 1:
            self._send.send_nowait(batch)

    def cancel(self, reason: str = "canceled") -> None:
        """Stop the run: start nothing new and cancel what is running.

        Queued and waiting tasks end ``canceled`` at once; running attempts
        are canceled and end ``canceled`` once their processes are gone.
        Canceled work is never retried. Calling it again does nothing.

        Raises:
            RuntimeError: when the run has not started.
        """
        self._stop(reason, abort_running=True)

    def drain(self, reason: str = "draining") -> None:
        """Stop starting work, but let running attempts finish.

        Queued and waiting tasks end ``canceled`` at once, and no attempt
        is retried; a later :meth:`cancel` still cancels what runs.

        Raises:
            RuntimeError: when the run has not started.
        """
        self._stop(reason, abort_running=False)

    def shutdown(self, signal_name: str, mode: str) -> None:
        """Begin a graceful shutdown after a signal: drain or cancel.

        The shutdown is recorded in the result and the saved state; a
        second call can turn a drain into a cancel.

        Raises:
            ValueError: when ``mode`` is neither "drain" nor "cancel".
        """
        if mode not in ("drain", "cancel"):
            message = f"mode must be 'drain' or 'cancel', got {mode!r}"
            raise ValueError(message)
        if self.finished:
            return  # nothing is left to stop, so nothing is recorded
        if self._shutdown is None:
            self._shutdown = ShutdownInfo(
                signal=signal_name, mode=mode, started_at=utc_now()
            )
            if self._writer is not None:
                self._writer.mark_shutdown(self._shutdown)
        reason = f"{signal_name} received: shutdown ({mode})"
        self._stop(reason, abort_running=mode == "cancel")

    def kill(self, reason: str = "killed") -> None:
        """Stop at once: SIGKILL every running command's group, cancel all.

        The process leaders stay unreaped until their attempts notice, so
        their group ids cannot have been reused by then.
        """
        for state in self._states.values():
            if state.status == RUNNING and state.context is not None:
                pid = state.context.probe.pid
                if pid is not None:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(pid, signal.SIGKILL)
        self.cancel(reason)

    def _stop(self, reason: str, *, abort_running: bool) -> None:
        if not self._ran:
            message = "the run has not started; call this while run() runs"
            raise RuntimeError(message)
        if self._unfinished == 0:
            return
        if not self._stopping:
            self._stopping = True
            self._ready.clear()
            waiting = [
                state
                for state in self._states.values()
                if state.status in (PENDING, QUEUED, WAITING_RETRY)
            ]
            if waiting:
                self._record_stop(reason)
            for state in waiting:
                if state.cancel_scope is not None:
                    state.cancel_scope.cancel()
                state.stop_reason = reason
                self._finish(state, CANCELED)
        if abort_running and not self._aborted:
            self._aborted = True
            running = [s for s in self._states.values() if s.status == RUNNING]
            if running:
                self._record_stop(reason)
            for state in running:
                assert state.cancel_scope is not None
                state.stop_reason = state.stop_reason or reason
                state.cancel_scope.cancel()
        self._after_finish()

    def _record_stop(self, reason: str) -> None:
        # Only a stop that ended some task's work is recorded as one: a
        # drain with nothing left to cancel stopped nothing.
        if self._canceled_at is None:
            self._canceled_at = utc_now()
            self._cancel_reason = reason
            if self._stop_reason is None:
                self._stop_reason = reason

    async def _cancel_after(self, delay_ms: int) -> None:
        with self._timer_scope:
            await trio.sleep(delay_ms / 1000)
            self.cancel(f"cancel-after: {delay_ms} ms elapsed")

    # -- queue -----------------------------------------------------------

    def _enqueue(self, state: _TaskState) -> None:
        state.status = QUEUED
        now = self._now()
        if state.queued_clock is None:
            state.queued_at = utc_now()
            state.queued_clock = now
        heapq.heappush(self._ready, (state.task.index, state))
        self._changed(state)
        self._emit("task:queued", task_id=state.task.id, status=QUEUED, clock=now)
        self._queue_length_max = max(self._queue_length_max, len(self._ready))
        if len(self._lot):
            self._lot.unpark()

    async def _worker(self) -> None:
        # One cancel scope serves many attempts: entering a scope costs
        # about as much as a cheap attempt itself. Canceling the run cancels
        # the scope of each running attempt's worker; a scope used that way
        # is spent, and the worker opens a new one for its next attempt.
        while True:
            state: _TaskState | None = None
            with trio.CancelScope() as scope:
                while not scope.cancel_called:
                    # The token is taken before the pop, and nothing between
                    # the pop and the start of the attempt yields: otherwise
                    # two workers freed at the same instant could start
                    # their tasks out of file order, since trio runs ready
                    # tasks in no fixed order.
                    async with self._limiter:
                        while not self._ready:
                            if self._unfinished == 0:
                                return
                            await self._lot.park()
                        _, state = heapq.heappop(self._ready)
                        await self._run_attempt(state, scope)
                        state = None
            if state is not None:
                # The run canceled the attempt in flight; cleanup is done.
                context = state.context
                assert scope.cancelled_caught
                assert context is not None
                result = self._canceled(state.task, context, state.stop_reason)
                timeout_ms = state.task.timeout_ms or self.options.timeout_ms
                if timeout_ms is not None:
                    result = msgspec.structs.replace(result, timeout_ms=timeout_ms)
                self._end_attempt(state, context, result)

    # -- one attempt -----------------------------------------------------

    async def _run_attempt(self, state: _TaskState, scope: trio.CancelScope) -> None:
        task = state.task
        attempt = len(state.attempts) + 1
        now_clock = self._now()
        now = utc_now()
        if state.started_clock is None:
            state.started_at = now
            state.started_clock = now_clock
        state.status = RUNNING
        state.attempt_started_at = now
        self._changed(state)
        self._emit(
            "task:start",
            task_id=task.id,
            status=RUNNING,
            attempt=attempt,
            clock=now_clock,
        )
        context = AttemptContext(
            attempt=attempt,
            output=self.output,
            started_at=now,
            started_clock=now_clock,
            kill_grace=self.options.kill_grace_ms / 1000,
        )
        state.context = context
        # How the run cancels this attempt: see _worker.
        state.cancel_scope = scope
        timeout_ms = task.timeout_ms or self.options.timeout_ms

        self._active += 1
        self._max_active = max(self._max_active, self._active)
        try:
            if timeout_ms is None:
                result = await self.executor.run_task(task, context)
            else:
                # The attempt's own deadline scope, inside the worker's: if
                # the run is canceled too, the outer scope wins, so a
                # canceled attempt is never mistaken for a timed-out one.
                deadline = now_clock + timeout_ms / 1000
                with trio.move_on_at(deadline) as deadline_scope:
                    result = await self.executor.run_task(task, context)
                # cancel_called, not cancelled_caught: an attempt that
                # shielded itself or swallowed the cancellation and ended
                # later still outlived its deadline.
                if deadline_scope.cancel_called:
                    result = self._timed_out(task, context, timeout_ms)
                result = msgspec.structs.replace(result, timeout_ms=timeout_ms)
        finally:
            self._active -= 1
            state.cancel_scope = None
        self._end_attempt(state, context, result)

    def _end_attempt(
        self, state: _TaskState, context: AttemptContext, result: AttemptResult
    ) -> None:
        """Record an attempt's result; retry the task, or settle it."""
        task = state.task
        attempt = context.attempt
        state.context = None
        now = self._now()
        error = result.error
        self._emit(
            "task:success" if result.status == SUCCESS else "task:failure",
            task_id=task.id,
            status=result.status,
            attempt=attempt,
            message=error.message if error is not None else None,
            clock=now,
        )
        policy = task.retries
        kind = error.kind if error is not None else None
        # A resumed task gets a fresh budget: attempts of earlier runs are
        # history, not tries of this run.
        tries = attempt - state.prior_attempts
        if (
            result.status != SUCCESS
            and not self._stopping
            and tries < policy.max_attempts
            and policy.allows(result.status, kind)
        ):
            delay_ms = policy.delay_ms(tries)
            state.attempts.append(
                msgspec.structs.replace(result, next_delay_ms=delay_ms)
            )
            state.status = WAITING_RETRY
            self._changed(state)
            self._retry_count += 1
            self._emit(
                "task:retry",
                task_id=task.id,
                status=WAITING_RETRY,
                attempt=attempt + 1,
                message=f"attempt {attempt + 1} in {delay_ms:g} ms",
            )
            # The scope exists before the sleeper starts: a cancel() that
            # comes in between must still be able to stop the wait.
            state.cancel_scope = trio.CancelScope()
            assert self._nursery is not None
            self._nursery.start_soon(self._retry_after, state, delay_ms)
            return
        state.attempts.append(result)
        self._settle(state, result.status, now)

    def _timed_out(
        self, task: Task, context: AttemptContext, timeout_ms: int | None
    ) -> AttemptResult:
        if context.task_context is not None:
            context.task_context.request_cancel()
        error = TaskError(kind="timeout", message=f"timed out after {timeout_ms} ms")
        result = context.result(
            task,
            TIMED_OUT,
            error,
            ended_clock=trio.current_time(),
            ended_at=utc_now(),
        )
        # The deadline itself, not when trt got round to signalling: the
        # SIGKILL after a grace period would be later by the grace.
        started = datetime.fromisoformat(context.started_at)
        deadline = started + timedelta(milliseconds=timeout_ms or 0)
        return msgspec.structs.replace(
            result,
            timeout_ms=timeout_ms,
            timed_out_at=deadline.isoformat(timespec="milliseconds"),
        )

    async def _retry_after(self, state: _TaskState, delay_ms: float) -> None:
        # The sleeper holds no limiter token: a task in backoff must not
        # keep another task from running. Canceling the run cancels the
        # wait at once; cancel() has then already ended the task, which
        # must not come back to the queue.
        assert state.cancel_scope is not None
        with state.cancel_scope:
            await trio.sleep(delay_ms / 1000)
        state.cancel_scope = None
        if state.status == WAITING_RETRY:
            self._enqueue(state)

    def _canceled(
        self, task: Task, context: AttemptContext, reason: str | None
    ) -> AttemptResult:
        if context.task_context is not None:
            context.task_context.request_cancel()
        error = TaskError(kind="canceled", message=reason or "canceled")
        return context.result(
            task,
            CANCELED,
            error,
            ended_clock=trio.current_time(),
            ended_at=utc_now(),
        )

    # -- endings ---------------------------------------------------------

    def _settle(
        self, state: _TaskState, status: str, clock: float | None = None
    ) -> None:
        """Record a final status and release or block the dependents."""
        self._finish(state, status, clock)
        if status == SUCCESS:
            for dependent_id in self.graph.dependents(state.task.id):
                dependent = self._states[dependent_id]
                dependent.remaining -= 1
                if dependent.remaining == 0 and dependent.status == PENDING:
                    self._enqueue(dependent)
        else:
            self._block_dependents(state)
        reason = self._rules.settle_on(state.task.id, status)
        if reason is not None and not self._stopping:
            self._stop_reason = reason
            self._settled_by_mode = True
            self.cancel(reason)
        self._after_finish()

    def _after_finish(self) -> None:
        if self._unfinished == 0:
            # Let the workers and the timer go, so the nursery can close.
            self._lot.unpark_all()
            self._timer_scope.cancel()

    def _finish(
        self, state: _TaskState, status: str, clock: float | None = None
    ) -> None:
        # ``clock``: the moment the task ended, when the caller has read it.
        assert state.status not in TERMINAL_STATUSES, state.status
        now = self._now() if clock is None else clock
        state.status = status
        self._emit("task:finish", task_id=state.task.id, status=status, clock=now)
        state.ended_at = utc_now()
        state.ended_clock = now
        self._unfinished -= 1
        self._changed(state)

    def _block_dependents(self, root: _TaskState) -> None:
        # Breadth first, so each blocked task names the nearest dependency
        # on its way to the task that really failed.
        todo = deque([root])
        while todo:
            current = todo.popleft()
            for dependent_id in self.graph.dependents(current.task.id):
                dependent = self._states[dependent_id]
                if dependent.status != PENDING:
                    continue
                dependent.blocked_by = current.task.id
                dependent.blocked_root = root.task.id
                self._finish(dependent, BLOCKED)
                todo.append(dependent)

    # -- result ----------------------------------------------------------

    def _result(self, started_at: str, ended_at: str, duration_ms: float) -> RunResult:
        tasks = tuple(self._task_result(state) for state in self._states.values())
        ok = self._rules.succeeded({task.id: task.status for task in tasks})
        if ok:
            status = "success"
        elif self._cancel_reason is not None and not self._settled_by_mode:
            # Stopped from outside (--cancel-after, cancel()), not settled
            # by its mode.
            status = "canceled"
        else:
            status = "failed"
        canceled_ids = tuple(t.id for t in tasks if t.status == CANCELED)
        return RunResult(
            run_id=self.run_id,
            task_file=self.graph.source,
            status=status,
            mode=self.options.mode,
            stop_reason=self._stop_reason,
            canceled_at=self._canceled_at,
            cancel_reason=self._cancel_reason,
            canceled_task_ids=canceled_ids,
            error=self._aggregate(tasks) if not ok else None,
            shutdown=self._shutdown,
            resumed_from=self.resumed_from,
            carried_over_task_ids=tuple(t.id for t in tasks if t.carried_over),
            options=self.options,
            started_at=started_at,
            ended_at=ended_at,
            tasks=tasks,
            metrics=_metrics(
                tasks,
                max_active=self._max_active,
                queue_length_max=self._queue_length_max,
                retry_count=self._retry_count,
                duration_ms=duration_ms,
            ),
        )

    def _aggregate(self, tasks: Sequence[TaskResult]) -> AggregateError | None:
        """List every failure when mode any found no success at all."""
        if self.options.mode == "race" and not tasks:
            return AggregateError(message="mode race: there are no tasks to race")
        if self.options.mode != "any":
            return None
        failures = tuple(
            TaskFailure(
                task_id=task.id,
                status=task.status,
                kind=task.error.kind,
                message=task.error.message,
            )
            for task in tasks
            if task.error is not None
        )
        if not tasks:
            message = "mode any: there are no tasks, so none succeeded"
        else:
            message = f"mode any: none of {len(tasks)} tasks succeeded"
        return AggregateError(message=message, errors=failures)

    @staticmethod
    def _task_result(state: _TaskState) -> TaskResult:
        queue_ms = duration_ms = None
        if state.started_clock is not None and state.queued_clock is not None:
            queue_ms = span_ms(state.started_clock - state.queued_clock)
        if state.started_clock is not None and state.ended_clock is not None:
            duration_ms = span_ms(state.ended_clock - state.started_clock)
        task = state.task
        return TaskResult(
            id=task.id,
            type=task.kind,
            status=state.status,
            depends_on=task.depends_on,
            attempts=tuple(state.attempts),
            queued_at=state.queued_at,
            started_at=state.started_at,
            ended_at=state.ended_at,
            queue_ms=queue_ms,
            duration_ms=duration_ms,
            blocked_by=state.blocked_by,
            blocked_root=state.blocked_root,
            error=_task_error(state),
            stop_reason=state.stop_reason,
            carried_over=state.carried_over,
            metadata=dict(task.metadata),
        )


def _task_error(state: _TaskState) -> TaskError | None:
    """Return what ended a task that did not succeed, or None."""
    if state.status == CANCELED:
        # Also for a task canceled in its backoff: its last attempt
        # failed, but what ended the task was the cancellation.
        return TaskError(kind="canceled", message=state.stop_reason or "canceled")
    if state.status == BLOCKED:
        message = f"dependency {state.blocked_by!r} did not succeed"
        if state.blocked_root != state.blocked_by:
            message += f" (the chain starts at {state.blocked_root!r})"
        return TaskError(kind="blocked", message=message)
    if state.status == SUCCESS or not state.attempts:
        return None
    return state.attempts[-1].error


def _metrics(
    tasks: Sequence[TaskResult],
    *,
    max_active: int,
    queue_length_max: int,
    retry_count: int,
    duration_ms: float,
) -> RunMetrics:
    counts: dict[str, int] = {}
    for task in tasks:
        counts[task.status] = counts.get(task.status, 0) + 1
    return RunMetrics(
        task_count=len(tasks),
        completed_count=counts.get("success", 0),
        failed_count=counts.get("failed", 0),
        blocked_count=counts.get("blocked", 0),
        timed_out_count=counts.get("timed_out", 0),
        canceled_count=counts.get("canceled", 0),
        retry_count=retry_count,
        max_active=max_active,
        queue_length_max=queue_length_max,
        duration_ms=round(duration_ms, 3),
    )


async def run_graph(
    graph: TaskGraph,
    options: RunOptions | None = None,
    *,
    executor: Executor | None = None,
    output: OutputSink | None = None,
) -> RunResult:
    """Run ``graph`` inside the current trio program and return the result."""
    runtime = Runtime(graph, options, executor=executor, output=output)
    return await runtime.run()
