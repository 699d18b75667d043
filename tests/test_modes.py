"""Contract tests for the mode rules, and their effect on real runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

import trt
from tests.conftest import TASKS, ScriptedExecutor, WriteTasks, command, run_cli
from tests.test_runtime import scripted
from trt._cli._options import MODE_CHOICES
from trt._modes import MODES, ModeRules


def test_every_copy_of_the_mode_names_agrees() -> None:
    from trt._results import _MODES

    assert MODE_CHOICES == MODES == _MODES


class TestRules:
    def test_unknown_mode_is_refused(self) -> None:
        with pytest.raises(
            ValueError,
            match=r"^mode must be one of allSettled, all, race, any; got 'some'$",
        ):
            ModeRules("some")

    @pytest.mark.parametrize(
        ("mode", "ok"),
        [("allSettled", True), ("all", True), ("race", False), ("any", False)],
    )
    def test_empty_runs(self, mode: str, ok: bool) -> None:
        assert ModeRules(mode).succeeded({}) is ok

    @pytest.mark.parametrize(
        ("mode", "events", "settles_at"),
        [
            ("allSettled", ["failed", "success"], None),
            ("all", ["success", "timed_out"], 1),
            ("race", ["failed", "success"], 0),
            ("any", ["failed", "timed_out", "success"], 2),
        ],
    )
    def test_settlement(
        self, mode: str, events: list[str], settles_at: int | None
    ) -> None:
        rules = ModeRules(mode)

        reasons = [rules.settle_on(f"t{i}", status) for i, status in enumerate(events)]

        settled = [i for i, reason in enumerate(reasons) if reason is not None]
        assert settled[:1] == ([] if settles_at is None else [settles_at])

    def test_blocked_and_canceled_never_settle(self) -> None:
        rules = ModeRules("race")

        assert rules.settle_on("a", "blocked") is None
        assert rules.settle_on("b", "canceled") is None

    def test_race_success_follows_the_first_task(self) -> None:
        rules = ModeRules("race")
        rules.settle_on("slow-fail", "failed")
        rules.settle_on("later", "success")

        assert not rules.succeeded({"slow-fail": "failed", "later": "success"})


async def run_mode(
    write_tasks: WriteTasks, mode: str, *tasks: dict[str, Any], concurrency: int = 2
) -> trt.RunResult:
    graph = trt.load_task_file(write_tasks(*tasks))
    options = trt.RunOptions(concurrency=concurrency, mode=mode)
    return await trt.Runtime(graph, options, executor=ScriptedExecutor()).run()


class TestEarlySettlement:
    async def test_all_stops_at_first_failure(
        self, write_tasks: WriteTasks, autojump_clock: trio.testing.MockClock
    ) -> None:
        result = await run_mode(
            write_tasks,
            "all",
            scripted("slow", ms=1000),
            scripted("bad", ms=10, metadata={"outcomes": ["failed"]}),
            scripted("queued", ms=10),
        )

        statuses = {task.id: task.status for task in result.tasks}
        assert statuses == {"slow": "canceled", "bad": "failed", "queued": "canceled"}
        assert result.status == "failed"
        assert result.stop_reason == "mode all: task 'bad' ended failed"
        slow = result.tasks[0]
        assert slow.stop_reason == result.stop_reason
        assert slow.attempts[0].status == "canceled"
        assert slow.duration_ms == pytest.approx(10)
        assert result.canceled_task_ids == ("slow", "queued")
        assert result.metrics.canceled_count == 2

    async def test_race_takes_the_first_to_settle(
        self, write_tasks: WriteTasks, autojump_clock: trio.testing.MockClock
    ) -> None:
        result = await run_mode(
            write_tasks,
            "race",
            scripted("slow", ms=100),
            scripted("fast-fail", ms=10, metadata={"outcomes": ["failed"]}),
        )

        assert result.status == "failed"
        assert (
            result.stop_reason == "mode race: task 'fast-fail' settled first (failed)"
        )

    async def test_any_settles_on_first_success(
        self, write_tasks: WriteTasks, autojump_clock: trio.testing.MockClock
    ) -> None:
        result = await run_mode(
            write_tasks,
            "any",
            scripted("fail", ms=5, metadata={"outcomes": ["failed"]}),
            scripted("win", ms=20),
            scripted("never", ms=20),
            concurrency=2,
        )

        statuses = {task.id: task.status for task in result.tasks}
        assert statuses == {"fail": "failed", "win": "success", "never": "canceled"}
        assert result.status == "success"
        assert result.error is None

    async def test_any_with_every_failure_lists_them_all(
        self, write_tasks: WriteTasks, autojump_clock: trio.testing.MockClock
    ) -> None:
        result = await run_mode(
            write_tasks,
            "any",
            scripted("a", metadata={"outcomes": ["failed"]}),
            scripted("b", metadata={"outcomes": ["failed"]}),
            scripted("c", dependsOn=["a"]),
        )

        assert result.status == "failed"
        assert result.error is not None
        assert result.error.message == "mode any: none of 3 tasks succeeded"
        assert [(e.task_id, e.kind) for e in result.error.errors] == [
            ("a", "non_zero_exit"),
            ("b", "non_zero_exit"),
            ("c", "blocked"),
        ]


class TestCancel:
    async def test_cancel_after_cancels_running_queued_and_waiting(
        self, write_tasks: WriteTasks, autojump_clock: trio.testing.MockClock
    ) -> None:
        graph = trt.load_task_file(
            write_tasks(
                scripted("done", ms=10),
                scripted("running", ms=1000),
                scripted("queued", ms=10),
                scripted("after", ms=10, dependsOn=["running"]),
                scripted(
                    "backoff",
                    ms=10,
                    retries={"maxAttempts": 3, "backoffMs": 5000},
                    metadata={"outcomes": ["failed"]},
                ),
            )
        )
        options = trt.RunOptions(concurrency=2, cancel_after_ms=250)
        runtime = trt.Runtime(graph, options, executor=ScriptedExecutor())

        start = trio.current_time()
        result = await runtime.run()

        assert trio.current_time() - start == pytest.approx(0.25)
        statuses = {task.id: task.status for task in result.tasks}
        assert statuses == {
            "done": "success",
            "running": "canceled",
            "queued": "success",
            "after": "canceled",
            "backoff": "canceled",
        }
        assert result.status == "canceled"
        assert result.cancel_reason == "cancel-after: 250 ms elapsed"
        assert result.canceled_at is not None
        backoff = next(t for t in result.tasks if t.id == "backoff")
        assert [a.status for a in backoff.attempts] == ["failed"]
        assert result.metrics.retry_count == 1

    async def test_cancel_during_backoff_ends_at_once(
        self, write_tasks: WriteTasks, autojump_clock: trio.testing.MockClock
    ) -> None:
        graph = trt.load_task_file(
            write_tasks(
                scripted(
                    "flaky",
                    ms=10,
                    retries={"maxAttempts": 2, "backoffMs": 60_000},
                    metadata={"outcomes": ["failed", "success"]},
                )
            )
        )
        runtime = trt.Runtime(graph, executor=ScriptedExecutor())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(runtime.run)
            await trio.sleep(1)
            before = trio.current_time()
            runtime.cancel("test stop")
        assert trio.current_time() == before


@pytest.mark.parametrize(
    ("mode", "code", "status"),
    [
        ("allSettled", 1, "failed"),
        ("all", 1, "failed"),
        ("race", 0, "success"),
        ("any", 0, "success"),
    ],
)
def test_mixed_results_in_each_mode(
    tmp_path: Path, mode: str, code: int, status: str
) -> None:
    (tmp_path / "modes.json").write_text(json.dumps({"other": {"kept": True}}))

    done = run_cli(
        "run",
        str(TASKS / "mixed-results.json"),
        "--mode",
        mode,
        "--concurrency",
        "3",
        "--reports-dir",
        str(tmp_path),
    )

    assert done.returncode == code, done.stderr
    modes = json.loads((tmp_path / "modes.json").read_text())
    assert modes["other"] == {"kept": True}
    entry = modes[mode]
    assert entry["status"] == status
    assert entry["exitCode"] == code
    assert entry["taskFile"] == str(TASKS / "mixed-results.json")
    assert sum(entry["counts"].values()) == 10


def test_modes_json_keeps_one_entry_per_mode(tmp_path: Path) -> None:
    for mode in MODES:
        run_cli(
            "run",
            str(TASKS / "mixed-results.json"),
            "--mode",
            mode,
            "--concurrency",
            "3",
            "--reports-dir",
            str(tmp_path),
        )

    modes = json.loads((tmp_path / "modes.json").read_text())
    assert sorted(modes) == sorted(MODES)


def test_unknown_mode_is_refused_on_the_command_line() -> None:
    done = run_cli("run", str(TASKS / "dag.json"), "--mode", "some")

    assert done.returncode == 2
    assert done.stderr == (
        "trt: error: --mode: expected one of allSettled, all, race, any; got 'some'\n"
    )


async def test_retry_racing_with_settlement_ends_canceled(
    write_tasks: WriteTasks, autojump_clock: trio.testing.MockClock
) -> None:
    """Regression: a retry scheduled just before the run settled came back.

    Both tasks end at the same instant; whichever the scheduler sees first,
    the failed one must end canceled or failed, never queued, and the run
    must not wait out the backoff.
    """
    for _ in range(20):
        graph = trt.load_task_file(
            write_tasks(
                scripted(
                    "flaky",
                    ms=10,
                    retries={"maxAttempts": 3, "backoffMs": 86_400_000},
                    metadata={"outcomes": ["failed"]},
                ),
                scripted("winner", ms=10),
            )
        )
        options = trt.RunOptions(concurrency=2, mode="any")
        runtime = trt.Runtime(graph, options, executor=ScriptedExecutor())

        with trio.fail_after(60):
            result = await runtime.run()

        flaky = result.tasks[0]
        assert flaky.status in ("canceled", "failed")
        assert result.status == "success"
        assert result.metrics.canceled_count + result.metrics.failed_count == 1


def test_corrupt_modes_json_is_moved_aside(tmp_path: Path) -> None:
    (tmp_path / "modes.json").write_text("[1, 2")

    done = run_cli("run", str(TASKS / "dag.json"), "--reports-dir", str(tmp_path))

    assert done.returncode == 0
    assert "modes.json was not a JSON object; moved it to" in done.stderr
    assert (tmp_path / "modes.json.bad").read_text() == "[1, 2"
    assert list(json.loads((tmp_path / "modes.json").read_text())) == ["allSettled"]


def test_modes_json_records_the_real_exit_code(tmp_path: Path) -> None:
    """Lost output makes the run fail; modes.json must say so too."""
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "trt",
                "run",
                str(TASKS / "dag.json"),
                "--mode",
                "all",
                "--reports-dir",
                str(tmp_path),
            ],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )

    assert done.returncode == 1
    assert json.loads((tmp_path / "modes.json").read_text())["all"]["exitCode"] == 1


def test_a_successful_any_run_still_lists_its_failures(
    write_tasks: WriteTasks, tmp_path: Path
) -> None:
    path = write_tasks(
        command("broken", "sh", "-c", "echo no >&2; exit 4"),
        command("slow-ok", "sh", "-c", "sleep 0.3"),
    )

    done = run_cli(
        "run", str(path), "--mode", "any", "--concurrency", "2",
        "--reports-dir", str(tmp_path / "r"), "--state-dir", str(tmp_path / "s"),
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert "settled: mode any: task 'slow-ok' succeeded" in done.stderr
    assert "  broken: failed: " in done.stderr
