"""A module imported by dotted name in the function-task tests."""

from __future__ import annotations

from typing import Any


def succeed(context: Any) -> str:
    """Return the task id."""
    return str(context.task_id)
