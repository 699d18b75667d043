"""Contract tests for progress_events and the --progress view."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio
import trio.testing

import trt
from tests.conftest import TASKS, ScriptedExecutor, WriteTasks, run_cli
from tests.test_runtime import scripted
from trt._executor import AttemptContext
from trt._model import Task
from trt._results import AttemptResult


def make_runtime(write_tasks: WriteTasks, count: int = 3) -> trt.Runtime:
    graph = trt.load_task_file(write_tasks(*[scripted(f"t{i}") for i in range(count)]))
    return trt.Runtime(graph, executor=ScriptedExecutor())


async def test_records_before_the_first_read_are_kept(
    write_tasks: WriteTasks, autojump_clock: trio.testing.MockClock
) -> None:
    runtime = make_runtime(write_tasks)
    records = trt.progress_events(runtime)

    await runtime.run()
    types = [record.type async for record in records]

    assert types[0] == "run:start"
    assert types[-1] == "run:finish"
    assert types.count("task:finish") == 3
    assert runtime.events.listener_count() == 0


async def test_waiting_consumer_is_woken_by_the_run(
    write_tasks: WriteTasks, autojump_clock: trio.testing.MockClock
) -> None:
    runtime = make_runtime(write_tasks, count=1)
    records = trt.progress_events(runtime)
    first: list[str] = []

    async def consume() -> None:
        first.append((await records.__anext__()).type)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume)
        await trio.testing.wait_all_tasks_blocked()
        assert first == []
        nursery.start_soon(runtime.run)

    assert first == ["run:start"]


async def test_iteration_ends_when_the_run_is_canceled(
    write_tasks: WriteTasks, autojump_clock: trio.testing.MockClock
) -> None:
    graph = trt.load_task_file(write_tasks(scripted("slow", ms=60_000)))
    runtime = trt.Runtime(graph, executor=ScriptedExecutor())
    records = trt.progress_events(runtime)
    seen: list[str] = []

    async def consume() -> None:
        async for record in records:
            seen.append(record.type)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume)
        with trio.move_on_after(1):
            await runtime.run()

    assert "run:finish" not in seen
    assert seen[:1] == ["run:start"]
    assert runtime.events.listener_count() == 0


class Broken:
    """An executor with a bug: the run itself fails."""

    async def run_task(self, task: Task, context: AttemptContext) -> AttemptResult:
        message = "executor bug"
        raise RuntimeError(message)


async def test_iteration_ends_when_the_run_fails(write_tasks: WriteTasks) -> None:
    graph = trt.load_task_file(write_tasks(scripted("a")))
    runtime = trt.Runtime(graph, executor=Broken())
    records = trt.progress_events(runtime)

    with pytest.RaisesGroup(
        pytest.RaisesExc(RuntimeError, match="^executor bug$"), flatten_subgroups=True
    ):
        await runtime.run()
    types = [record.type async for record in records]

    assert "run:finish" not in types
    assert runtime.events.listener_count() == 0


async def test_closing_early_detaches_the_listener(
    write_tasks: WriteTasks, autojump_clock: trio.testing.MockClock
) -> None:
    runtime = make_runtime(write_tasks)
    records = trt.progress_events(runtime)
    assert runtime.events.listener_count() == 1

    await records.aclose()
    await runtime.run()

    assert runtime.events.listener_count() == 0


async def test_iterator_made_after_the_run_ends_at_once(
    write_tasks: WriteTasks, autojump_clock: trio.testing.MockClock
) -> None:
    runtime = make_runtime(write_tasks)
    await runtime.run()

    assert [record async for record in trt.progress_events(runtime)] == []


def test_progress_flag_prints_plain_lines_off_a_terminal(tmp_path: object) -> None:
    done = run_cli(
        "run",
        str(TASKS / "dag.json"),
        "--concurrency",
        "2",
        "--progress",
        "--reports-dir",
        str(tmp_path),
    )

    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "/5 " in line]
    assert len(lines) == 5
    assert lines[-1].endswith("5/5 package: success")


async def test_async_with_detaches_when_leaving_early(
    write_tasks: WriteTasks, autojump_clock: trio.testing.MockClock
) -> None:
    runtime = make_runtime(write_tasks, count=5)

    async with trio.open_nursery() as nursery:
        async with trt.progress_events(runtime) as records:
            nursery.start_soon(runtime.run)
            async for record in records:
                if record.type == "task:start":
                    break
        assert runtime.events.listener_count() == 0


def test_event_lines_never_join_the_live_line(tmp_path: Path) -> None:
    # On a terminal, --log-events on stderr clears the progress line first.
    import os
    import pty
    import re
    import subprocess
    import sys
    import time

    path = tmp_path / "t.json"
    tasks = [
        {"id": f"t{i}", "type": "command", "command": "sleep", "args": ["0.15"]}
        for i in range(4)
    ]
    path.write_text(json.dumps({"version": 1, "tasks": tasks}))
    master, slave = pty.openpty()
    trt = subprocess.Popen(
        [sys.executable, "-m", "trt", "run", str(path), "--progress", "--log-events"],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=slave,
    )
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the pty closed: trt is gone
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    assert trt.wait(timeout=30) == 0

    text = seen.decode()
    assert text.count('{"type":') == 2 + 4 * 4  # run start/finish, 4 per task
    # Each event starts a line, or follows the sequence that erased one.
    assert not re.search(r'[^\n\x1b\[K]\{"type":', text.replace("\r\x1b[K", "\n"))
