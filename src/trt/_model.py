"""The normalized, immutable task model the scheduler runs.

The file structs in ``_spec`` mirror what a user wrote; the classes here are
what trt runs: paths resolved against the task file's folder, defaults
filled in, argument lists joined into argv, and the dependency graph indexed
both ways so the scheduler never searches.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any, ClassVar, Final, final

import msgspec

# The same bound the task file enforces on backoffMs: one day.
MAX_BACKOFF_MS: Final = 24 * 3600 * 1000

# Statuses an attempt or a task ends in; everything else is in flight.
SUCCESS: Final = "success"
FAILED: Final = "failed"
TIMED_OUT: Final = "timed_out"
CANCELED: Final = "canceled"
BLOCKED: Final = "blocked"
TERMINAL_STATUSES: Final = frozenset({SUCCESS, FAILED, TIMED_OUT, CANCELED, BLOCKED})

# Failure kinds a policy may name besides statuses; "canceled" is never
# retried, so it is not in either set.
RETRYABLE_STATUSES: Final = frozenset({FAILED, TIMED_OUT})


# Most tasks have no env and no metadata: they all share this one view.
_EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})


@final
class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """When and after how long a failed attempt is tried again.

    ``retry_on`` empty means every failure except cancellation. Delays are
    ``backoff_ms`` before the second attempt, multiplied by ``factor`` for
    each later one.
    """

    max_attempts: int = 1
    backoff_ms: int = 0
    factor: float = 2.0
    retry_on: frozenset[str] = frozenset()

    def allows(self, status: str, error_kind: str | None) -> bool:
        """Tell whether an attempt that ended so may be retried."""
        if status not in RETRYABLE_STATUSES:
            return False
        if not self.retry_on:
            return True
        return status in self.retry_on or error_kind in self.retry_on

    def delay_ms(self, attempt: int) -> float:
        """Return the wait before attempt number ``attempt + 1``.

        Capped at a day: with many attempts the exponential would reach
        float overflow (and 0 x inf is NaN), never a useful wait.
        """
        if self.backoff_ms == 0:
            return 0.0
        try:
            delay = self.backoff_ms * self.factor ** (attempt - 1)
        except OverflowError:
            return float(MAX_BACKOFF_MS)
        return min(delay, MAX_BACKOFF_MS)


class Task(msgspec.Struct, frozen=True, kw_only=True):
    """One runnable task, as the scheduler sees it.

    ``index`` is the task's position in its file; ready tasks start in that
    order.
    """

    id: str
    index: int
    timeout_ms: int | None
    retries: RetryPolicy
    depends_on: tuple[str, ...]
    metadata: Mapping[str, Any]

    # "command" or "function"; a class constant, so it costs no field.
    kind: ClassVar[str] = ""


@final
class CommandTask(Task, frozen=True, kw_only=True):
    """A task that runs ``argv`` as a child process in its own group.

    ``cwd`` is absolute, or None for trt's own working folder; ``env`` is
    added to trt's environment.
    """

    kind: ClassVar[str] = "command"
    argv: tuple[str, ...]
    cwd: str | None = None
    env: Mapping[str, str] = _EMPTY


@final
class FunctionTask(Task, frozen=True, kw_only=True):
    """A task that calls ``export`` from a module.

    ``module_path`` is the absolute path when ``module`` named a ``.py``
    file, else None and ``module`` is a dotted import name.
    """

    kind: ClassVar[str] = "function"
    module: str
    module_path: str | None
    export: str
    # The task file's folder: dotted module names are also looked up there.
    import_root: str | None = None


def frozen_mapping(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """Return a read-only view over a private copy of ``data``."""
    return MappingProxyType(dict(data)) if data else _EMPTY


@final
class TaskGraph:
    """A validated task file: tasks in file order, indexed both ways.

    Built only by the loader, which has already proven the ids unique, the
    dependencies present and the graph acyclic.
    """

    __slots__ = ("_by_id", "_dependents", "metadata", "source", "tasks")

    def __init__(
        self,
        tasks: tuple[Task, ...],
        *,
        source: str,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self.tasks = tasks
        self.source = source
        self.metadata = frozen_mapping(metadata or {})
        self._by_id = {task.id: task for task in tasks}
        dependents: dict[str, list[str]] = {task.id: [] for task in tasks}
        for task in tasks:
            for dep in task.depends_on:
                dependents[dep].append(task.id)
        self._dependents = {key: tuple(ids) for key, ids in dependents.items()}

    def __len__(self) -> int:
        return len(self.tasks)

    def __iter__(self) -> Iterator[Task]:
        return iter(self.tasks)

    def __getitem__(self, task_id: str) -> Task:
        return self._by_id[task_id]

    def dependents(self, task_id: str) -> tuple[str, ...]:
        """Return the ids of the tasks that list ``task_id`` in dependsOn."""
        return self._dependents[task_id]

    @property
    def ids(self) -> tuple[str, ...]:
        """Return every task id in file order."""
        return tuple(task.id for task in self.tasks)
