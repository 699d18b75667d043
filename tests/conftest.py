"""Shared fixtures: task files on disk, a scripted executor, a CLI runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

import trt
from trt._executor import AttemptContext
from trt._model import Task
from trt._results import AttemptResult, TaskError

REPO = Path(__file__).resolve().parent.parent
TASKS = REPO / "tasks"

WriteTasks = Callable[..., Path]


@pytest.fixture
def write_tasks(tmp_path: Path) -> WriteTasks:
    """Return a function writing a task file from task dicts."""

    def write(*tasks: dict[str, Any], name: str = "tasks.json", **top: Any) -> Path:
        document = {"version": 1, "tasks": list(tasks), **top}
        path = tmp_path / name
        path.write_text(json.dumps(document, indent=2))
        return path

    return write


def command(task_id: str, *argv: str, **fields: Any) -> dict[str, Any]:
    """Build a command task dict."""
    program, *args = argv
    return {
        "id": task_id,
        "type": "command",
        "command": program,
        "args": args,
        **fields,
    }


def function(task_id: str, module: str, export: str, **fields: Any) -> dict[str, Any]:
    """Build a function task dict."""
    return {
        "id": task_id,
        "type": "function",
        "module": module,
        "export": export,
        **fields,
    }


class ScriptedExecutor:
    """A fake executor: each task sleeps ``metadata.ms`` then ends as told.

    ``metadata.outcomes`` lists the status of each attempt in turn
    ("success" or "failed"); the last one repeats. It records the order of
    starts and the most attempts it ever saw at once.
    """

    def __init__(self) -> None:
        self.active = 0
        self.max_active = 0
        self.started: list[tuple[str, float]] = []
        self.ended: list[tuple[str, float]] = []

    async def run_task(self, task: Task, context: AttemptContext) -> AttemptResult:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        self.started.append((task.id, trio.current_time()))
        try:
            await trio.sleep(task.metadata.get("ms", 10) / 1000)
        finally:
            self.active -= 1
        self.ended.append((task.id, trio.current_time()))
        outcomes = task.metadata.get("outcomes", ["success"])
        status = outcomes[min(context.attempt, len(outcomes)) - 1]
        error = None
        if status != "success":
            error = TaskError(kind="non_zero_exit", message="scripted failure")
        return context.finish(task, error)


@pytest.fixture
def quiet_output(tmp_path: Path) -> Iterator[trt.OutputSink]:
    """An output sink writing to files instead of the test's terminal."""
    out = os.open(tmp_path / "stdout.txt", os.O_WRONLY | os.O_CREAT, 0o600)
    err = os.open(tmp_path / "stderr.txt", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        yield trt.OutputSink(prefix=False, stdout_fd=out, stderr_fd=err)
    finally:
        os.close(out)
        os.close(err)


_cli_cwd: Path | None = None


@pytest.fixture(autouse=True)
def _fresh_cli_cwd(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Give each test's trt processes a working folder of their own.

    trt keeps ``state/`` (locked while a run runs) and ``reports/`` in its
    working folder; tests must neither share them nor litter the checkout.
    """
    global _cli_cwd
    _cli_cwd = tmp_path_factory.mktemp("cwd")


def cli_cwd() -> Path:
    """Return the working folder for trt processes of the current test."""
    assert _cli_cwd is not None
    return _cli_cwd


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the real ``trt`` command line in a child interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "trt", *args],
        capture_output=True,
        text=True,
        cwd=cwd or cli_cwd(),
        timeout=timeout,
        check=False,
    )
