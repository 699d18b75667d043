"""Collaboration tests: the scheduler against a scripted executor.

Time is trio's MockClock with autojump, so every duration asserted here is
exact and the tests take no real time.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest
import trio

import trt
from tests.conftest import ScriptedExecutor, WriteTasks, command


def scripted(task_id: str, ms: int = 10, **fields: Any) -> dict[str, Any]:
    """A task the scripted executor runs for ``ms`` virtual milliseconds."""
    metadata = {"ms": ms, **fields.pop("metadata", {})}
    return command(task_id, "unused", metadata=metadata, **fields)


async def run(
    write_tasks: WriteTasks,
    *tasks: dict[str, Any],
    concurrency: int = 1,
    timeout_ms: int | None = None,
) -> tuple[trt.RunResult, ScriptedExecutor]:
    executor = ScriptedExecutor()
    graph = trt.load_task_file(write_tasks(*tasks))
    options = trt.RunOptions(concurrency=concurrency, timeout_ms=timeout_ms)
    runtime = trt.Runtime(graph, options, executor=executor)
    return await runtime.run(), executor


def by_id(result: trt.RunResult) -> dict[str, trt.TaskResult]:
    return {task.id: task for task in result.tasks}


class TestConcurrency:
    @pytest.mark.parametrize(("count", "limit"), [(10, 1), (10, 3), (10, 10), (3, 8)])
    async def test_active_never_exceeds_limit_and_reaches_it(
        self,
        write_tasks: WriteTasks,
        autojump_clock: trio.testing.MockClock,
        count: int,
        limit: int,
    ) -> None:
        tasks = [scripted(f"t{i}", ms=100) for i in range(count)]

        result, executor = await run(write_tasks, *tasks, concurrency=limit)

        assert executor.max_active == min(count, limit)
        assert result.metrics.max_active == min(count, limit)
        assert result.metrics.completed_count == count

    async def test_duration_is_the_ideal_schedule(
        self, write_tasks: WriteTasks, autojump_clock: trio.testing.MockClock
    ) -> None:
        tasks = [scripted(f"t{i}", ms=100) for i in range(10)]

        start = trio.current_time()
        result, _ = await run(write_tasks, *tasks, concurrency=5)

        assert trio.current_time() - start == pytest.approx(0.2)
        assert result.metrics.duration_ms == pytest.approx(200)

    async def test_ready_tasks_start_in_file_order(
        self, write_tasks: WriteTasks, autojump_clock: trio.testing.MockClock
    ) -> None:
        tasks = [scripted(f"t{i}", ms=10 * (5 - i % 5)) for i in range(12)]

        _, executor = await run(write_tasks, *tasks, concurrency=2)

        started = [task_id for task_id, _ in executor.started]
        assert started == [f"t{i}" for i in range(12)]

    async def test_queue_times_are_recorded(
        self, write_tasks: WriteTasks, autojump_clock: trio.testing.MockClock
    ) -> None:
        tasks = [scripted(f"t{i}", ms=100) for i in range(4)]

        result, _ = await run(write_tasks, *tasks, concurrency=2)

        queue = [task.queue_ms for task in result.tasks]
        assert queue == pytest.approx([0, 0, 100, 100])
        assert result.metrics.queue_length_max == 4
        for task in result.tasks:
            assert task.queued_at is not None
            assert task.queued_at <= task.started_at <= task.ended_at  # type: ignore[operator]
            assert task.duration_ms == pytest.approx(100)


class TestDependencies:
    async def test_dependents_start_after_dependencies_succeed(
        self, write_tasks: WriteTasks, autojump_clock: trio.testing.MockClock
    ) -> None:
        tasks = [
            scripted("fetch", ms=50),
            scripted("build", ms=100, dependsOn=["fetch"]),
            scripted("docs", ms=30, dependsOn=["fetch"]),
            scripted("ship", ms=10, dependsOn=["build", "docs"]),
        ]

        _, executor = await run(write_tasks, *tasks, concurrency=4)

        started = dict(executor.started)
        ended = dict(executor.ended)
        assert started["build"] == started["docs"] == ended["fetch"]
        assert started["ship"] == max(ended["build"], ended["docs"])

    async def test_failure_blocks_dependents_transitively(
        self, write_tasks: WriteTasks, autojump_clock: trio.testing.MockClock
    ) -> None:
        tasks = [
            scripted("root", metadata={"outcomes": ["failed"]}),
            scripted("child", dependsOn=["root"]),
            scripted("grandchild", dependsOn=["child"]),
            scripted("other", ms=50),
            scripted("joined", dependsOn=["other", "grandchild"]),
        ]

        result, executor = await run(write_tasks, *tasks, concurrency=2)

        tasks_by_id = by_id(result)
        assert {t for t, _ in executor.started} == {"root", "other"}
        assert tasks_by_id["child"].status == "blocked"
        assert tasks_by_id["child"].blocked_by == "root"
        assert tasks_by_id["grandchild"].blocked_by == "child"
        assert tasks_by_id["grandchild"].blocked_root == "root"
        assert tasks_by_id["joined"].blocked_by == "grandchild"
        assert tasks_by_id["joined"].attempts == ()
        assert tasks_by_id["other"].status == "success"
        assert result.metrics.blocked_count == 3
        assert result.status == "failed"

    async def test_blocked_error_names_the_chain(
        self, write_tasks: WriteTasks, autojump_clock: trio.testing.MockClock
    ) -> None:
        tasks = [
            scripted("a", metadata={"outcomes": ["failed"]}),
            scripted("b", dependsOn=["a"]),
            scripted("c", dependsOn=["b"]),
        ]

        result, _ = await run(write_tasks, *tasks)

        error = by_id(result)["c"].error
        assert error is not None
        assert error.kind == "blocked"
        assert error.message == (
            "dependency 'b' did not succeed (the chain starts at 'a')"
        )


class TestTimeoutsAndRetries:
    async def test_task_timeout_beats_run_timeout(
        self, write_tasks: WriteTasks, autojump_clock: trio.testing.MockClock
    ) -> None:
        tasks = [
            scripted("own", ms=1000, timeoutMs=100),
            scripted("fallback", ms=1000),
            scripted("fast", ms=10),
        ]

        result, _ = await run(write_tasks, *tasks, concurrency=3, timeout_ms=300)

        tasks_by_id = by_id(result)
        own, fallback = tasks_by_id["own"], tasks_by_id["fallback"]
        assert own.status == fallback.status == "timed_out"
        assert own.attempts[0].timeout_ms == 100
        assert own.duration_ms == pytest.approx(100)
        assert fallback.attempts[0].timeout_ms == 300
        assert fallback.duration_ms == pytest.approx(300)
        assert own.error == trt.TaskError(
            kind="timeout", message="timed out after 100 ms"
        )
        assert tasks_by_id["fast"].status == "success"
        assert result.metrics.timed_out_count == 2

    async def test_an_attempt_that_outlives_its_deadline_timed_out(
        self, write_tasks: WriteTasks, autojump_clock: trio.testing.MockClock
    ) -> None:
        class Stubborn(ScriptedExecutor):
            # Shields its work from the deadline, as a task might.
            async def run_task(
                self, task: trt.Task, context: trt.AttemptContext
            ) -> trt.AttemptResult:
                with trio.CancelScope(shield=True):
                    return await super().run_task(task, context)

        graph = trt.load_task_file(
            write_tasks(scripted("stubborn", ms=1000, timeoutMs=100))
        )
        runtime = trt.Runtime(graph, executor=Stubborn())

        result = await runtime.run()

        (task,) = result.tasks
        assert task.status == "timed_out"
        assert task.error == trt.TaskError(
            kind="timeout", message="timed out after 100 ms"
        )
        assert task.duration_ms == pytest.approx(1000)

    async def test_retries_wait_backoff_times_factor(
        self, write_tasks: WriteTasks, autojump_clock: trio.testing.MockClock
    ) -> None:
        retries = {"maxAttempts": 4, "backoffMs": 100, "factor": 3}
        flaky = scripted(
            "flaky",
            ms=10,
            retries=retries,
            metadata={"outcomes": ["failed", "failed", "failed", "success"]},
        )

        result, executor = await run(write_tasks, flaky)

        starts = [when for _, when in executor.started]
        gaps = [round(b - a, 6) for a, b in itertools.pairwise(starts)]
        assert gaps == [0.11, 0.31, 0.91]
        task = result.tasks[0]
        assert task.status == "success"
        assert [a.next_delay_ms for a in task.attempts] == [100, 300, 900, None]
        assert result.metrics.retry_count == 3

    async def test_retry_exhaustion_fails_with_every_attempt_kept(
        self, write_tasks: WriteTasks, autojump_clock: trio.testing.MockClock
    ) -> None:
        task = scripted(
            "never", retries={"maxAttempts": 3}, metadata={"outcomes": ["failed"]}
        )

        result, _ = await run(write_tasks, task)

        attempts = result.tasks[0].attempts
        assert [a.attempt for a in attempts] == [1, 2, 3]
        assert [a.status for a in attempts] == ["failed"] * 3
        assert result.tasks[0].status == "failed"

    async def test_retry_on_filters_statuses(
        self, write_tasks: WriteTasks, autojump_clock: trio.testing.MockClock
    ) -> None:
        only_timeouts = {"maxAttempts": 3, "retryOn": ["timed_out"]}
        task = scripted("a", retries=only_timeouts, metadata={"outcomes": ["failed"]})

        result, _ = await run(write_tasks, task)

        assert len(result.tasks[0].attempts) == 1

    async def test_backoff_holds_no_slot(
        self, write_tasks: WriteTasks, autojump_clock: trio.testing.MockClock
    ) -> None:
        flaky = scripted(
            "flaky",
            ms=10,
            retries={"maxAttempts": 2, "backoffMs": 1000},
            metadata={"outcomes": ["failed", "success"]},
        )
        others = [scripted(f"o{i}", ms=100) for i in range(3)]

        _, executor = await run(write_tasks, flaky, *others, concurrency=1)

        order = [task_id for task_id, _ in executor.started]
        assert order == ["flaky", "o0", "o1", "o2", "flaky"]


async def test_empty_task_file_succeeds(
    write_tasks: WriteTasks, autojump_clock: trio.testing.MockClock
) -> None:
    result, _ = await run(write_tasks)

    assert result.status == "success"
    assert result.metrics.task_count == 0


async def test_runtime_runs_only_once(
    write_tasks: WriteTasks, autojump_clock: trio.testing.MockClock
) -> None:
    graph = trt.load_task_file(write_tasks(scripted("a")))
    runtime = trt.Runtime(graph, executor=ScriptedExecutor())
    await runtime.run()

    with pytest.raises(
        RuntimeError, match=r"^this runtime has already run; build a new one$"
    ):
        await runtime.run()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency": 0}, "concurrency must be at least 1, got 0"),
        (
            {"mode": "some"},
            "mode must be one of allSettled, all, race, any; got 'some'",
        ),
        ({"timeout_ms": -5}, "timeout_ms must be positive or None, got -5"),
        ({"cancel_after_ms": 0}, "cancel_after_ms must be positive or None, got 0"),
        ({"kill_grace_ms": -1}, "kill_grace_ms must be >= 0, got -1"),
    ],
    ids=["concurrency", "mode", "timeout", "cancel-after", "kill-grace"],
)
def test_run_options_refuse_bad_values(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=rf"^{re.escape(message)}$"):
        trt.RunOptions(**options)


def test_cancel_before_run_is_refused(write_tasks: WriteTasks) -> None:
    graph = trt.load_task_file(write_tasks(scripted("a")))
    runtime = trt.Runtime(graph, executor=ScriptedExecutor())

    with pytest.raises(RuntimeError, match=r"^the run has not started"):
        runtime.cancel("too early")
