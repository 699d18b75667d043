"""trt: a local task runtime on Trio.

The public API is re-exported here from private modules. Names load on first
use (PEP 562) so that ``trt --help`` and ``trt validate`` never pay for
importing trio: the console script imports this package first.
"""

from __future__ import annotations

import importlib

# Not typing.TYPE_CHECKING: importing typing alone would cost ``trt --help``
# a noticeable share of its start-up. Type checkers honor this name as-is.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from trt._events import Event, EventBus
    from trt._exceptions import StateError, TaskFileError, TrtError, UsageError
    from trt._executor import AttemptContext, Executor, LocalExecutor, run_task
    from trt._loader import check_task_file, load_task_file
    from trt._model import CommandTask, FunctionTask, RetryPolicy, Task, TaskGraph
    from trt._output import OutputSink
    from trt._progress import progress_events
    from trt._report import write_report
    from trt._results import (
        AttemptResult,
        ProcessEvidence,
        RunMetrics,
        RunOptions,
        RunResult,
        ShutdownInfo,
        TaskError,
        TaskResult,
    )
    from trt._runtime import Runtime, run_graph
    from trt._spec import json_schema
    from trt._state import RunState, StateStore, TaskRecord
    from trt._task_context import TaskContext

__version__ = "0.1.0"

_EXPORTS = {
    "AttemptContext": "trt._executor",
    "AttemptResult": "trt._results",
    "CommandTask": "trt._model",
    "Event": "trt._events",
    "EventBus": "trt._events",
    "Executor": "trt._executor",
    "FunctionTask": "trt._model",
    "LocalExecutor": "trt._executor",
    "OutputSink": "trt._output",
    "ProcessEvidence": "trt._results",
    "RetryPolicy": "trt._model",
    "RunMetrics": "trt._results",
    "RunOptions": "trt._results",
    "RunResult": "trt._results",
    "RunState": "trt._state",
    "Runtime": "trt._runtime",
    "ShutdownInfo": "trt._results",
    "StateError": "trt._exceptions",
    "StateStore": "trt._state",
    "Task": "trt._model",
    "TaskContext": "trt._task_context",
    "TaskError": "trt._results",
    "TaskFileError": "trt._exceptions",
    "TaskGraph": "trt._model",
    "TaskRecord": "trt._state",
    "TaskResult": "trt._results",
    "TrtError": "trt._exceptions",
    "UsageError": "trt._exceptions",
    "check_task_file": "trt._loader",
    "json_schema": "trt._spec",
    "load_task_file": "trt._loader",
    "progress_events": "trt._progress",
    "run_graph": "trt._runtime",
    "run_task": "trt._executor",
    "write_report": "trt._report",
}

__all__ = [
    "AttemptContext",
    "AttemptResult",
    "CommandTask",
    "Event",
    "EventBus",
    "Executor",
    "FunctionTask",
    "LocalExecutor",
    "OutputSink",
    "ProcessEvidence",
    "RetryPolicy",
    "RunMetrics",
    "RunOptions",
    "RunResult",
    "RunState",
    "Runtime",
    "ShutdownInfo",
    "StateError",
    "StateStore",
    "Task",
    "TaskContext",
    "TaskError",
    "TaskFileError",
    "TaskGraph",
    "TaskRecord",
    "TaskResult",
    "TrtError",
    "UsageError",
    "check_task_file",
    "json_schema",
    "load_task_file",
    "progress_events",
    "run_graph",
    "run_task",
    "write_report",
]


def __getattr__(name: str) -> object:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        message = f"module 'trt' has no attribute {name!r}"
        raise AttributeError(message)
    module = importlib.import_module(module_name)
    value = getattr(module, name)
    # Show the public path in reprs, tracebacks and docs, not the private one.
    # Not for msgspec Structs: msgspec resolves their (postponed) annotations
    # in the namespace their __module__ names, which must stay the real one.
    is_struct = isinstance(value, type) and hasattr(value, "__struct_fields__")
    if getattr(value, "__module__", None) == module_name and not is_struct:
        try:
            value.__module__ = "trt"
        except (AttributeError, TypeError):
            pass
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
