"""When a run settles and whether it succeeded: the four result modes.

The rules live here, apart from the scheduler's mechanics, as small pure
objects: the scheduler reports each task that reaches a final state and
asks whether the run is settled; at the end it asks whether the run met
its success condition. They hold no trio state and are tested directly.

| mode       | settles early when      | succeeds when                 |
|------------|-------------------------|-------------------------------|
| allSettled | never                   | every task succeeded          |
| all        | a task fails            | every task succeeded          |
| race       | any task settles        | that first task succeeded     |
| any        | a task succeeds         | some task succeeded           |

With no tasks at all, all and allSettled succeed, race and any fail.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, final

MODES: Final = ("allSettled", "all", "race", "any")

SUCCESS: Final = "success"

# Final statuses that come from a task's own attempts, as opposed to
# "blocked" (a dependency failed) or "canceled" (the run stopped it).
OWN_OUTCOMES: Final = frozenset({"success", "failed", "timed_out"})


@final
class ModeRules:
    """The settlement and success rules of one mode.

    Args:
        mode: one of ``MODES``.

    Raises:
        ValueError: for an unknown mode name.
    """

    __slots__ = ("_first", "mode")

    def __init__(self, mode: str) -> None:
        if mode not in MODES:
            message = f"mode must be one of {', '.join(MODES)}; got {mode!r}"
            raise ValueError(message)
        self.mode = mode
        # The first task that settled by its own outcome, for race.
        self._first: tuple[str, str] | None = None

    def settle_on(self, task_id: str, status: str) -> str | None:
        """Record a task's final status; return a stop reason to settle now.

        None means the run goes on.
        """
        if status not in OWN_OUTCOMES:
            return None
        if self._first is None:
            self._first = (task_id, status)
        if self.mode == "all" and status != SUCCESS:
            return f"mode all: task {task_id!r} ended {status}"
        if self.mode == "race":
            return f"mode race: task {task_id!r} settled first ({status})"
        if self.mode == "any" and status == SUCCESS:
            return f"mode any: task {task_id!r} succeeded"
        return None

    def succeeded(self, statuses: Mapping[str, str]) -> bool:
        """Tell whether a run whose tasks ended so met the mode's condition."""
        values = list(statuses.values())
        if self.mode in ("allSettled", "all"):
            return all(value == SUCCESS for value in values)
        if self.mode == "race":
            return self._first is not None and self._first[1] == SUCCESS
        return SUCCESS in values
