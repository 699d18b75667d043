"""Function tasks used by the fixtures in this folder."""

from __future__ import annotations

from typing import Any

import trio


def succeed(context: Any) -> str:
    """Return at once: the plainest successful sync task."""
    return f"hello from {context.task_id}"


async def succeed_later(context: Any) -> str:
    """Succeed after a short sleep on the event loop."""
    await trio.sleep(0.05)
    return f"{context.task_id} done"


def raise_now(context: Any) -> None:
    """Fail when called: trt reports the kind 'thrown'."""
    message = f"{context.task_id} fails on purpose"
    raise ValueError(message)


async def raise_later(context: Any) -> None:
    """Fail inside the awaitable: trt reports the kind 'rejected'."""
    await trio.sleep(0.01)
    message = f"{context.task_id} fails on purpose, later"
    raise RuntimeError(message)


async def noop(context: Any) -> None:
    """Do nothing; used to measure trt's own cost per task."""


def fail_twice(context: Any) -> str:
    """Fail on the first two attempts, succeed on the third."""
    if context.attempt < 3:
        message = f"attempt {context.attempt} fails on purpose"
        raise RuntimeError(message)
    return f"attempt {context.attempt} works"


async def sleep_long(context: Any) -> None:
    """Sleep far past any sensible timeout; ends only by cancellation."""
    await trio.sleep(33)


def busy_loop(context: Any) -> None:
    """Spin without ever returning; only killing its process ends it."""
    while True:
        pass
