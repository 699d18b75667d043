"""Exit codes, in one place so the README, tests and code agree."""

from __future__ import annotations

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: see _main.py
if TYPE_CHECKING:
    from typing import Final

SUCCESS: Final = 0
# The run finished but did not meet its success condition.
RUN_FAILED: Final = 1
# Bad usage or a bad task file: nothing ran.
USAGE_ERROR: Final = 2
# 128 + signal number, as shells report a death by that signal (SIGINT
# here; a forced exit by another signal is 128 + its number).
INTERRUPTED: Final = 130
