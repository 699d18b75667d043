"""Exceptions raised by trt, under one root so callers can catch them all.

This module imports nothing else from trt, so every other module can use it.
"""

from __future__ import annotations

# typing.TYPE_CHECKING would import typing, which the start-up budget of
# ``trt --help`` cannot afford; type checkers honor this name as-is.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence


class TrtError(Exception):
    """Root of every error trt raises on purpose."""


class UsageError(TrtError):
    """The command line asked for something trt cannot do."""


class TaskFileError(TrtError):
    """A task file could not be read, parsed or validated.

    Validation reports every problem it finds, not only the first, so a
    user can fix a file in one pass. Each entry of ``problems`` is one
    self-contained line naming the file, the place and the bad value.
    """

    def __init__(
        self, path: str, problems: Sequence[str], *, total: int | None = None
    ) -> None:
        self.path = path
        self.problems = tuple(problems)
        # The number found, when only the first ``problems`` are listed.
        self.total = len(self.problems) if total is None else total
        noun = "problem" if self.total == 1 else "problems"
        header = f"{path}: {self.total} {noun}"
        super().__init__("\n".join([header, *self.problems]))


class StateError(TrtError):
    """Saved run state is missing, unreadable or does not fit the request."""
