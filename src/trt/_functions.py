"""Run a function task: import its module, call its export, judge the outcome.

Async callables run on the event loop, inside the attempt's cancel scope, so
a timeout or a stopped run cancels them like any trio code. Sync callables
run in a worker thread so a slow one cannot stall the scheduler.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import trio

from trt._executor import TaskContext
from trt._results import TaskError

if TYPE_CHECKING:
    from trt._executor import AttemptContext
    from trt._model import FunctionTask
    from trt._results import AttemptResult

# Modules loaded from a path, keyed by that path: a file is executed once per
# trt process, however many tasks and attempts use it, as an import would be.
_loaded_files: dict[str, ModuleType] = {}
# One lock per file: a slow import must not hold up other modules.
# (dict.setdefault is atomic under the GIL, so the dict needs no lock.)
_load_locks: dict[str, threading.Lock] = {}


def _package_dir(module: ModuleType) -> str:
    return str(Path(module.__file__ or "").parent) + os.sep


# Frames from these folders are machinery, not the user's code.
_HIDDEN_PREFIXES = (
    _package_dir(trio),
    _package_dir(sys.modules["outcome"]),
    str(Path(__file__).parent) + os.sep,
)


class _LoadError(Exception):
    """The export could not be found; becomes a ``spawn_error`` result."""


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
    function = _loaded_export(task)
    if function is None:
        # The first use of a module imports it in a worker thread: import
        # runs arbitrary code, which must not stall the event loop (nor
        # escape its task's timeout).
        try:
            function = await trio.to_thread.run_sync(
                _load, task, abandon_on_cancel=True
            )
        except _LoadError as exc:
            return context.finish(task, _load_error(exc))
    elif isinstance(function, _LoadError):
        return context.finish(task, _load_error(function))

    task_context = TaskContext(task.id, context.attempt, task.metadata)
    context.task_context = task_context
    try:
        failure = await _call(function, task_context)
    except trio.Cancelled:
        task_context.request_cancel()
        raise
    return context.finish(task, failure)


def _is_stop(exc: BaseException) -> bool:
    """Tell whether ``exc`` stops the run rather than failing one task.

    Cancellation and Ctrl-C must propagate; anything else a task raises,
    SystemExit included, is that task's failure.
    """
    if isinstance(exc, BaseExceptionGroup):
        return exc.subgroup((trio.Cancelled, KeyboardInterrupt)) is not None
    return isinstance(exc, trio.Cancelled | KeyboardInterrupt)


def _load_error(exc: _LoadError) -> TaskError:
    cause = exc.__cause__
    stack = None
    if cause is not None:
        stack = "".join(traceback.format_exception(cause))
    return TaskError(kind="spawn_error", message=str(exc), stack=stack)


async def _call(
    function: Callable[..., Any], task_context: TaskContext
) -> TaskError | None:
    """Call ``function``; return the failure, or None when it succeeded."""
    if _is_async(function):
        try:
            awaitable = function(task_context)
        except BaseException as exc:
            if _is_stop(exc):
                raise
            return _error("thrown", exc)
    else:
        # Limitation: a sync function that never returns keeps its worker
        # thread after a timeout or cancellation; trt stops waiting for it
        # and sets task_context.cancel_requested, but Python cannot kill a
        # thread, so only functions that check the flag really stop.
        try:
            # Boxed in a tuple: trio refuses a thread function that returns
            # a coroutine, but a sync function may legitimately do so.
            (awaitable,) = await trio.to_thread.run_sync(
                lambda: (function(task_context),), abandon_on_cancel=True
            )
        except BaseException as exc:
            # Ctrl-C is delivered to the main thread only: a
            # KeyboardInterrupt from the worker thread is the function's.
            if isinstance(exc, trio.Cancelled):
                raise
            return _error("thrown", exc)
        if not inspect.isawaitable(awaitable):
            return None
    try:
        await awaitable
    except BaseException as exc:
        if _is_stop(exc):
            raise
        return _error("rejected", exc)
    return None


def _is_async(function: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(function):
        return True
    call = getattr(function, "__call__", None)  # noqa: B004 - callable objects
    return inspect.iscoroutinefunction(call)


def _error(kind: str, exc: BaseException) -> TaskError:
    return TaskError(kind=kind, message=_describe(exc), stack=_user_stack(exc))


def _describe(exc: BaseException) -> str:
    """Return "Type: text" for an exception whose str() may itself fail."""
    name = type(exc).__name__
    try:
        text = str(exc)
    except Exception:
        text = f"<str() of this {name} raised>"
    return f"{name}: {text}" if text else name


def _user_stack(exc: BaseException) -> str:
    """Format the traceback without trt's and trio's own frames.

    The user wants to see where their function failed; the frames of the
    thread hop and of this module only push that out of view.
    """
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if not frame.filename.startswith(_HIDDEN_PREFIXES)
    ]
    lines = ["Traceback (most recent call last):\n"]
    lines += traceback.format_list(frames)
    lines += traceback.format_exception_only(exc)
    return "".join(lines)


def _loaded_export(task: FunctionTask) -> Callable[..., Any] | _LoadError | None:
    """Return the export if its module is loaded already, else None."""
    if task.module_path is not None:
        module = _loaded_files.get(task.module_path)
    else:
        module = sys.modules.get(task.module)
    if module is None:
        return None
    try:
        return _export(task, module)
    except _LoadError as exc:
        return exc


def _load(task: FunctionTask) -> Callable[..., Any]:
    """Import the task's module (once) and return its export."""
    try:
        if task.module_path is not None:
            module = _load_file(task.module_path)
        else:
            # Appended, not prepended: a jobs folder must not shadow the
            # standard library or installed packages.
            if task.import_root is not None and task.import_root not in sys.path:
                sys.path.append(task.import_root)
            module = importlib.import_module(task.module)
    except BaseException as exc:
        # This runs in a worker thread, where a KeyboardInterrupt can only
        # come from the module itself, never from Ctrl-C.
        message = f"cannot import {task.module!r}: {_describe(exc)}"
        raise _LoadError(message) from exc
    return _export(task, module)


def _export(task: FunctionTask, module: ModuleType) -> Callable[..., Any]:
    function = getattr(module, task.export, None)
    if function is None:
        message = f"module {task.module!r} has no attribute {task.export!r}"
        raise _LoadError(message)
    if not callable(function):
        kind = type(function).__name__
        message = f"{task.module}:{task.export} is a {kind}, not a callable"
        raise _LoadError(message)
    return function  # type: ignore[no-any-return]


def _load_file(path: str) -> ModuleType:
    # Imports run in worker threads; the lock makes two tasks sharing a
    # file wait for one execution of it rather than run it twice.
    with _load_locks.setdefault(path, threading.Lock()):
        module = _loaded_files.get(path)
        if module is None:
            module = _exec_file(path)
            _loaded_files[path] = module
        return module


def _exec_file(path: str) -> ModuleType:
    # A private, unique module name: two task folders may both hold a
    # jobs.py, and neither must shadow a real module of that name.
    digest = hashlib.sha1(path.encode(), usedforsecurity=False).hexdigest()[:12]
    name = f"_trt_task_{Path(path).stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        message = f"cannot load {path!r} as a Python module"
        raise ImportError(message)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
