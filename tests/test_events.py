"""Contract tests for the event bus and the events a run emits."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trt
from tests.conftest import TASKS, ScriptedExecutor, WriteTasks, run_cli
from tests.test_runtime import scripted
from trt._events import UnhandledErrorEvent

OOPS = "oops"


def event(event_type: Any = "task:start", task_id: str = "a") -> trt.Event:
    return trt.Event(type=event_type, timestamp="t", elapsed_ms=0.0, task_id=task_id)


class TestBus:
    def test_listeners_run_in_registration_order(self) -> None:
        bus = trt.EventBus()
        calls: list[str] = []
        bus.on("task:start", lambda e: calls.append("first"))
        bus.on("*", lambda e: calls.append("every"))
        bus.on("task:start", lambda e: calls.append("third"))
        bus.on("task:finish", lambda e: calls.append("other type"))

        bus.emit(event())

        assert calls == ["first", "every", "third"]

    def test_once_and_off(self) -> None:
        bus = trt.EventBus()
        calls: list[str] = []

        def keep(e: trt.Event) -> None:
            calls.append("keep")

        bus.once("task:start", lambda e: calls.append("once"))
        bus.on("task:start", keep)
        bus.emit(event())
        bus.emit(event())
        bus.off("task:start", keep)
        bus.emit(event())

        assert calls == ["once", "keep", "keep"]
        assert bus.listener_count() == 0

    def test_unknown_event_type_is_refused(self) -> None:
        with pytest.raises(ValueError, match=r"^event type must be one of \*, "):
            trt.EventBus().on("task:started", print)

    def test_error_without_listener_raises(self) -> None:
        with pytest.raises(UnhandledErrorEvent, match=r"^broken$"):
            trt.EventBus().emit(
                trt.Event(type="error", timestamp="t", elapsed_ms=0, message="broken")
            )

    def test_raising_listener_becomes_an_error_event(self) -> None:
        bus = trt.EventBus()
        errors: list[trt.Event] = []
        after: list[str] = []

        def broken(e: trt.Event) -> None:
            raise KeyError(OOPS)

        bus.on("task:start", broken)
        bus.on("task:start", lambda e: after.append("still called"))
        bus.on("error", errors.append)
        bus.emit(event())

        assert after == ["still called"]
        assert len(errors) == 1
        assert errors[0].message is not None
        assert errors[0].message.endswith("raised on task:start: KeyError: 'oops'")

    def test_raising_listener_with_nobody_listening_is_logged(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        bus = trt.EventBus()

        def broken(e: trt.Event) -> None:
            raise KeyError(OOPS)

        bus.on("task:start", broken)
        with caplog.at_level(logging.ERROR, logger="trt"):
            bus.emit(event())

        assert "raised on task:start" in caplog.text


async def test_run_emits_lifecycle_in_order(
    write_tasks: WriteTasks, autojump_clock: trio.testing.MockClock
) -> None:
    graph = trt.load_task_file(
        write_tasks(
            scripted(
                "flaky",
                retries={"maxAttempts": 2},
                metadata={"outcomes": ["failed", "success"]},
            ),
            scripted("after", dependsOn=["flaky"]),
        )
    )
    runtime = trt.Runtime(graph, executor=ScriptedExecutor())
    seen: list[tuple[str, str | None]] = []
    runtime.events.on("*", lambda e: seen.append((e.type, e.task_id)))

    await runtime.run()

    assert seen == [
        ("run:start", None),
        ("task:queued", "flaky"),
        ("task:start", "flaky"),
        ("task:failure", "flaky"),
        ("task:retry", "flaky"),
        ("task:queued", "flaky"),
        ("task:start", "flaky"),
        ("task:success", "flaky"),
        ("task:finish", "flaky"),
        ("task:queued", "after"),
        ("task:start", "after"),
        ("task:success", "after"),
        ("task:finish", "after"),
        ("run:finish", None),
    ]


async def test_listener_fault_does_not_stop_the_run(
    write_tasks: WriteTasks, autojump_clock: trio.testing.MockClock
) -> None:
    graph = trt.load_task_file(write_tasks(scripted("a"), scripted("b")))
    runtime = trt.Runtime(graph, executor=ScriptedExecutor())
    errors: list[trt.Event] = []

    def broken(e: trt.Event) -> None:
        raise RuntimeError(OOPS)

    runtime.events.on("task:start", broken)
    runtime.events.on("error", errors.append)
    result = await runtime.run()

    assert result.status == "success"
    assert len(errors) == 2


@st.composite
def random_runs(draw: st.DrawFn) -> tuple[list[dict[str, Any]], str, int, int | None]:
    count = draw(st.integers(min_value=0, max_value=12))
    tasks = []
    for index in range(count):
        deps = draw(st.sets(st.integers(0, max(index - 1, 0)), max_size=3))
        outcomes = draw(
            st.lists(st.sampled_from(["success", "failed"]), min_size=1, max_size=3)
        )
        tasks.append(
            scripted(
                f"t{index}",
                ms=draw(st.integers(1, 50)),
                dependsOn=[f"t{d}" for d in sorted(deps) if d < index],
                retries={"maxAttempts": draw(st.integers(1, 3)), "backoffMs": 5},
                metadata={"outcomes": outcomes},
            )
        )
    mode = draw(st.sampled_from(["allSettled", "all", "race", "any"]))
    concurrency = draw(st.integers(1, 4))
    cancel_after = draw(st.none() | st.integers(1, 100))
    return tasks, mode, concurrency, cancel_after


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(run=random_runs())
def test_task_finish_exactly_once_per_task(
    run: tuple[list[dict[str, Any]], str, int, int | None], tmp_path: Path
) -> None:
    """Property: every task gets one task:finish, whatever its ending."""
    tasks, mode, concurrency, cancel_after = run
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps({"version": 1, "tasks": tasks}))
    graph = trt.load_task_file(path)
    options = trt.RunOptions(
        concurrency=concurrency, mode=mode, cancel_after_ms=cancel_after
    )
    runtime = trt.Runtime(graph, options, executor=ScriptedExecutor())
    finishes: list[str | None] = []
    runtime.events.on("task:finish", lambda e: finishes.append(e.task_id))

    result = trio.run(runtime.run, clock=trio.testing.MockClock(autojump_threshold=0))

    assert sorted(finishes, key=str) == sorted((t["id"] for t in tasks), key=str)
    assert result.metrics.task_count == len(tasks)
    assert runtime.events.listener_count() == 1


@pytest.mark.parametrize("to_file", [False, True], ids=["stderr", "file"])
def test_log_events_lines_are_json_in_time_order(tmp_path: Path, to_file: bool) -> None:
    log = tmp_path / "events.jsonl"
    flag = f"--log-events={log}" if to_file else "--log-events"

    done = run_cli(
        "run",
        str(TASKS / "dag.json"),
        "--concurrency",
        "2",
        flag,
        "--reports-dir",
        str(tmp_path),
    )

    assert done.returncode == 0, done.stderr
    text = log.read_text() if to_file else done.stderr
    events = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    types = [e["type"] for e in events]
    assert types[0] == "run:start"
    assert types[-1] == "run:finish"
    assert types.count("task:finish") == 5
    elapsed = [e["elapsedMs"] for e in events]
    assert elapsed == sorted(elapsed)


def test_failing_event_log_is_one_error_and_exit_1(tmp_path: Path) -> None:
    done = run_cli(
        "run",
        str(TASKS / "dag.json"),
        "--log-events=/dev/full",
        "--reports-dir",
        str(tmp_path),
    )

    assert done.returncode == 1
    assert done.stderr.count("--log-events: writing failed: No space left") == 1
    assert "Traceback" not in done.stderr


def test_event_log_may_not_overwrite_the_task_file(
    write_tasks: WriteTasks, tmp_path: Path
) -> None:
    path = write_tasks(scripted("a"))
    before = path.read_text()

    done = run_cli(
        "run", str(path), f"--log-events={path}", "--reports-dir", str(tmp_path)
    )

    assert done.returncode == 2
    assert "--log-events:" in done.stderr
    assert path.read_text() == before
