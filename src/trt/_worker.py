"""Load and call function tasks; also the code worker processes run.

Plain (sync) functions run in worker processes (trio-parallel), which trt
can kill on a timeout or cancellation; a thread could only be abandoned.
Everything here is therefore import-light and free of trio: a worker
imports this module, loads the task's module itself, calls the export and
sends back plain strings, never the exception object, which might not
survive pickling.
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
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

# Modules loaded from a path, keyed by that path: a file is executed once
# per process, however many tasks and attempts use it, as an import would.
_loaded_files: dict[str, ModuleType] = {}
# Whether this process imported a task's module: its code may leave files
# unflushed or threads running that only the interpreter's normal exit
# takes care of (see trt._cli._main.entry).
imported_task_code = False
# One lock per file: a slow import must not hold up other modules.
# (dict.setdefault is atomic under the GIL, so the dict needs no lock.)
_load_locks: dict[str, threading.Lock] = {}

# What a call reports: None for success, else (kind, message, stack).
Failure = tuple[str, str, str] | None


class LoadError(Exception):
    """The export could not be loaded; becomes a ``spawn_error`` result."""

    def stack(self) -> str:
        """Return the traceback of what the import raised, or ""."""
        cause = self.__cause__
        if cause is None:
            return ""
        return clipped("".join(traceback.format_exception(cause)), MAX_STACK_CHARS)


def load_export(
    module: str, module_path: str | None, import_root: str | None, export: str
) -> Callable[..., Any]:
    """Import the task's module (once per process) and return its export.

    Raises:
        LoadError: when the module cannot be imported (whatever it raised,
            SystemExit and KeyboardInterrupt included, as this runs off the
            main thread or in a worker) or the export is missing or not
            callable.
    """
    global imported_task_code
    imported_task_code = True
    # The task file's folder, for every function task alike: a module
    # imports its helpers from there (a subfolder's as `jobs.helper`).
    # Not each module's own folder: one process has one sys.modules, so
    # two folders' `helper` would be whichever was imported first.
    # Appended, not prepended: a jobs folder must not shadow the standard
    # library or installed packages.
    if import_root is not None and import_root not in sys.path:
        sys.path.append(import_root)
    try:
        if module_path is not None:
            loaded = _load_file(module_path)
        else:
            loaded = importlib.import_module(module)
    except BaseException as exc:
        message = f"cannot import {module!r}: {describe(exc)}"
        raise LoadError(message) from exc
    return export_of(loaded, module, export)


def loaded_module(module: str, module_path: str | None) -> ModuleType | None:
    """Return the task's module if this process loaded it already."""
    if module_path is not None:
        return _loaded_files.get(module_path)
    return sys.modules.get(module)


def export_of(loaded: ModuleType, module: str, export: str) -> Callable[..., Any]:
    """Return ``export`` from a loaded module, if it is a callable."""
    function = getattr(loaded, export, None)
    if function is None:
        message = f"module {module!r} has no attribute {export!r}"
        raise LoadError(message)
    if not callable(function):
        kind = type(function).__name__
        message = f"{module}:{export} is a {kind}, not a callable"
        raise LoadError(message)
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
    name = f"_trt_task_{os.path.splitext(os.path.basename(path))[0]}_{digest}"
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


def call_in_worker(
    module: str,
    module_path: str | None,
    import_root: str | None,
    export: str,
    task_id: str,
    attempt: int,
    metadata: Mapping[str, Any],
) -> Failure:
    """Run one sync function task inside a worker process.

    Returns None on success, else (kind, message, stack) with kind
    ``spawn_error``, ``thrown`` or ``rejected``. The return value of the
    function is not sent back: it is not kept, and might not pickle.
    """
    from trt._task_context import TaskContext

    try:
        function = load_export(module, module_path, import_root, export)
    except LoadError as exc:
        return ("spawn_error", str(exc), exc.stack())
    context = TaskContext(task_id, attempt, metadata)
    try:
        result = function(context)
    except BaseException as exc:
        # In a worker, even KeyboardInterrupt is the function's own: trio-
        # parallel keeps SIGINT away from its workers.
        return ("thrown", describe(exc), user_stack(exc))
    if inspect.isawaitable(result):
        try:
            _await_here(result)
        except BaseException as exc:
            return ("rejected", describe(exc), user_stack(exc))
    return None


def _await_here(awaitable: Any) -> None:
    """Await what a sync function returned, on a trio loop of our own."""
    import trio

    async def wait() -> None:
        await awaitable

    trio.run(wait)


# What an error keeps of an exception's text and of its traceback: enough
# to read, while a task that raises with megabytes of text must not make
# every report and state file that size (nor trt's memory).
MAX_MESSAGE_CHARS = 10_000
MAX_STACK_CHARS = 100_000


def clipped(text: str, limit: int) -> str:
    """Return ``text``, cut to ``limit`` characters with a note if longer."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def describe(exc: BaseException) -> str:
    """Return "Type: text" for an exception whose str() may itself fail."""
    name = type(exc).__name__
    try:
        text = str(exc)
    except Exception:
        text = f"<str() of this {name} raised>"
    return clipped(f"{name}: {text}" if text else name, MAX_MESSAGE_CHARS)


def user_stack(exc: BaseException) -> str:
    """Format the traceback without trt's, trio's and the workers' frames.

    The user wants to see where their function failed; the frames of the
    thread hop, the worker and this module only push that out of view.
    """
    hidden = _hidden_prefixes()
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if not frame.filename.startswith(hidden)
    ]
    lines = ["Traceback (most recent call last):\n"]
    lines += traceback.format_list(frames)
    lines += traceback.format_exception_only(exc)
    return clipped("".join(lines), MAX_STACK_CHARS)


def _hidden_prefixes() -> tuple[str, ...]:
    prefixes = [os.path.dirname(__file__) + os.sep]
    for name in ("trio", "outcome", "trio_parallel"):
        module = sys.modules.get(name)
        if module is not None and module.__file__:
            prefixes.append(os.path.dirname(module.__file__) + os.sep)
    return tuple(prefixes)
