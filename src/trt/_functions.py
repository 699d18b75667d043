"""Run a function task: import its module, call its export, judge the outcome.

Async callables run on the event loop, inside the attempt's cancel scope, so
a timeout or a stopped run cancels them like any trio code. Plain (sync)
callables run in a worker process (trio-parallel), which can be killed on a
timeout or cancellation: a thread could only have been abandoned, still
running. The module is also imported here, in a worker thread, to learn
which kind the export is.
"""

from __future__ import annotations

import inspect
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from trt._process import signal_name
from trt._results import TaskError
from trt._task_context import TaskContext
from trt._worker import (
    LoadError,
    call_in_worker,
    describe,
    export_of,
    load_export,
    loaded_module,
    user_stack,
)

if TYPE_CHECKING:
    from trt._executor import AttemptContext
    from trt._model import FunctionTask
    from trt._results import AttemptResult


async def run_function(task: FunctionTask, context: AttemptContext) -> AttemptResult:
    """Run one attempt of a function task and return its result.

    Args:
        task: names the module and the export to call.
        context: the attempt's number and its timing.

    Returns:
        ``success`` when the call (and any awaitable it returned) finished;
        ``failed`` with ``thrown`` when the call raised, ``rejected`` when
        the awaitable raised, or ``spawn_error`` when the export could not
        be loaded.
    """
    # A dotted module is in sys.modules while it is still being imported:
    # an import under way is waited for, never looked into.
    key = (task.module, task.module_path)
    function = None if key in _importing else _loaded_export(task)
    if function is None:
        function = await _import_export(task)
    if isinstance(function, LoadError):
        return context.finish(task, _load_error(function))

    task_context = TaskContext(task.id, context.attempt, task.metadata)
    context.task_context = task_context
    try:
        failure = await _call(task, function, task_context)
    except trio.Cancelled:
        task_context.request_cancel()
        raise
    return context.finish(task, failure)


def _is_stop(exc: BaseException) -> bool:
    """Tell whether ``exc`` stops the run rather than failing one task.

    A cancellation that a scope around the attempt asked for, and a Ctrl-C
    that trio delivered, must propagate. Anything else a task raises is
    that task's failure: SystemExit, a KeyboardInterrupt that the code
    raised itself, and a trio.Cancelled that nothing asked for.
    """
    if isinstance(exc, BaseExceptionGroup):
        return any(_is_stop(inner) for inner in exc.exceptions)
    if isinstance(exc, trio.Cancelled):
        # Canceled scopes make the effective deadline -inf; an expired
        # timeout makes it a moment already past.
        return trio.current_effective_deadline() <= trio.current_time()
    if isinstance(exc, KeyboardInterrupt):
        return _sigint_raises()
    return False


def _sigint_raises() -> bool:
    """Tell whether SIGINT is delivered as KeyboardInterrupt right now.

    Under ``trt run`` it never is (trt's signal receiver takes it), so a
    KeyboardInterrupt is the task's own doing. Through the Python API,
    trio's handler raises it wherever the loop is, task code included.
    """
    handler = signal.getsignal(signal.SIGINT)
    return handler is signal.default_int_handler or (
        getattr(handler, "__module__", None) == "trio._core._ki"
    )


def _load_error(exc: LoadError) -> TaskError:
    return TaskError(kind="spawn_error", message=str(exc), stack=exc.stack() or None)


async def _call(
    task: FunctionTask, function: Callable[..., Any], task_context: TaskContext
) -> TaskError | None:
    """Call ``function``; return the failure, or None when it succeeded."""
    if not _is_async(function):
        return await _call_in_worker(task, task_context)
    try:
        awaitable = function(task_context)
    except BaseException as exc:
        if _is_stop(exc):
            raise
        return _error("thrown", exc)
    try:
        await awaitable
    except BaseException as exc:
        if _is_stop(exc):
            raise
        return _error("rejected", exc)
    return None


async def _call_in_worker(
    task: FunctionTask, task_context: TaskContext
) -> TaskError | None:
    import trio_parallel

    # Limitation: only the worker process is killed on a timeout or
    # cancellation; processes the function itself started are not tracked
    # (they are not in a process group of their own, as commands are) and
    # can outlive the run. Work that starts programs belongs in command
    # tasks.

    try:
        failure = await trio_parallel.run_sync(
            call_in_worker,
            task.module,
            task.module_path,
            task.import_root,
            task.export,
            task.id,
            task_context.attempt,
            dict(task.metadata),
            kill_on_cancel=True,
            # trt's own limiter bounds attempts; trio-parallel's default
            # (one worker per CPU) would quietly lower --concurrency.
            limiter=trio.CapacityLimiter(1),
        )
    except trio_parallel.BrokenWorkerError as exc:
        return TaskError(kind="thrown", message=_worker_death(exc))
    if failure is None:
        return None
    kind, message, stack = failure
    return TaskError(kind=kind, message=message, stack=stack or None)


def _worker_death(exc: BaseException) -> str:
    """Say how a worker process died (os._exit, a signal) in plain words."""
    code = next((arg.exitcode for arg in exc.args if hasattr(arg, "exitcode")), None)
    message = "the worker process running the function died"
    if isinstance(code, int) and code < 0:
        return f"{message}, killed by {signal_name(-code)}"
    if isinstance(code, int):
        return f"{message} with exit code {code}"
    return message


def _is_async(function: Callable[..., Any]) -> bool:
    # Asked once per attempt, and inspect is slow for what it answers;
    # exports are module attributes, kept alive by their modules anyway.
    try:
        return _ASYNC[function]
    except KeyError:
        pass
    except TypeError:  # an unhashable callable object
        return _inspect_async(function)
    found = _ASYNC[function] = _inspect_async(function)
    return found


def _inspect_async(function: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(function):
        return True
    call = getattr(function, "__call__", None)  # noqa: B004 - callable objects
    return inspect.iscoroutinefunction(call)


_ASYNC: dict[Callable[..., Any], bool] = {}


def _error(kind: str, exc: BaseException) -> TaskError:
    return TaskError(kind=kind, message=describe(exc), stack=user_stack(exc))


# The import under way of each module, keyed by its name and file: the
# attempts that start meanwhile wait for it and take its outcome, rather
# than each starting a thread of its own to wait on the same import lock.
_importing: dict[tuple[str, str | None], _Import] = {}


class _Import:
    __slots__ = ("done", "outcome")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.outcome: Callable[..., Any] | LoadError | None = None


async def _import_export(task: FunctionTask) -> Callable[..., Any] | LoadError:
    """Import the task's module in a worker thread; return its export.

    Import runs arbitrary code, which must not stall the event loop (nor
    escape its task's timeout). The import itself runs in a system task:
    an attempt that times out while waiting leaves it to finish for the
    next attempt, rather than abandoning a half-run module. A failure is
    returned, not raised.
    """
    key = (task.module, task.module_path)
    pending = _importing.get(key)
    if pending is None:
        pending = _importing[key] = _Import()
        trio.lowlevel.spawn_system_task(_import_in_thread, task, key, pending)
    await pending.done.wait()
    if pending.outcome is None:
        # Only when the run ended mid-import, which this attempt outlived.
        return LoadError(f"the import of {task.module!r} was abandoned")
    # This task's export of the module, which may be another one.
    return _loaded_export(task) or pending.outcome


async def _import_in_thread(
    task: FunctionTask, key: tuple[str, str | None], pending: _Import
) -> None:
    try:
        pending.outcome = await trio.to_thread.run_sync(
            _load, task, abandon_on_cancel=True
        )
    except LoadError as exc:
        pending.outcome = exc
    finally:
        del _importing[key]
        pending.done.set()


def _loaded_export(task: FunctionTask) -> Callable[..., Any] | LoadError | None:
    """Return the export if its module is loaded already, else None."""
    module = loaded_module(task.module, task.module_path)
    if module is None:
        return None
    try:
        return export_of(module, task.module, task.export)
    except LoadError as exc:
        return exc


def _load(task: FunctionTask) -> Callable[..., Any]:
    """Import the task's module (once) and return its export."""
    return load_export(task.module, task.module_path, task.import_root, task.export)
