"""Graceful shutdown: the pure rules, drain in the runtime, real signals.

End-to-end tests start a real ``trt`` and send it real signals; the crash
test SIGKILLs it and resumes.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio

import trt
from tests.conftest import (
    TASKS,
    ScriptedExecutor,
    WriteTasks,
    cli_cwd,
    command,
    run_cli,
)
from tests.test_signals import EXIT_LIMIT, wait_for_files
from trt._shutdown import (
    SignalAction,
    forced_exit_code,
    incomplete_task_ids,
    on_signal,
    shutdown_report,
)


class TestDecisions:
    @pytest.mark.parametrize("mode", ["cancel", "drain"])
    def test_the_first_signal_begins_a_shutdown_in_the_chosen_mode(
        self, mode: str
    ) -> None:
        action = on_signal(None, 0.0, signal.SIGTERM, mode)

        assert action == SignalAction(kind="shutdown", mode=mode)

    @pytest.mark.parametrize(
        ("signum", "code"),
        [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)],
    )
    def test_a_later_signal_forces_the_exit(self, signum: int, code: int) -> None:
        assert on_signal(signal.SIGTERM, 2.0, signum, "drain") == SignalAction(
            kind="force", exit_code=code
        )
        assert on_signal(signal.SIGINT, 0.6, signum, "cancel").exit_code == code
        assert forced_exit_code(signum) == code

    def test_the_same_signal_at_once_is_an_echo_of_the_first(self) -> None:
        """GNU timeout signals trt, then trt's whole process group."""
        echo = on_signal(signal.SIGTERM, 0.01, signal.SIGTERM, "cancel")
        other = on_signal(signal.SIGTERM, 0.01, signal.SIGINT, "cancel")

        assert echo == SignalAction(kind="ignore")
        assert other.kind == "force"

    def test_an_unknown_mode_is_refused(self) -> None:
        with pytest.raises(ValueError, match="got 'later'"):
            on_signal(None, 0.0, signal.SIGINT, "later")

    def test_incomplete_work_is_canceled_or_still_open(self) -> None:
        statuses = {
            "a": "success",
            "b": "failed",
            "c": "canceled",
            "d": "running",
            "e": "blocked",
            "f": "queued",
            "g": "timed_out",
        }

        assert incomplete_task_ids(statuses) == ("c", "d", "f")

    def test_the_report_counts_and_names_the_signal(self) -> None:
        report = shutdown_report(
            signals=(signal.SIGTERM, signal.SIGINT),
            mode="drain",
            run_id="r",
            run_status="interrupted",
            exit_code=130,
            started_at="s",
            ended_at="e",
            statuses={"a": "success", "b": "running", "c": "canceled"},
            state_saved=True,
            state_path="state/run.json",
        )

        assert report.signal == "SIGTERM"
        assert report.forced
        assert report.counts == {"canceled": 1, "running": 1, "success": 1}
        assert report.incomplete_task_ids == ("b", "c")


def scripted(task_id: str, ms: int, **fields: object) -> dict[str, object]:
    return command(task_id, "unused", metadata={"ms": ms}, **fields)


class TestDrain:
    async def test_drain_lets_running_attempts_finish_and_starts_nothing(
        self, write_tasks: WriteTasks, autojump_clock: trio.testing.MockClock
    ) -> None:
        graph = trt.load_task_file(
            write_tasks(
                scripted("one", 1000),
                scripted("two", 1000, retries={"maxAttempts": 3}),
                scripted("three", 1000),
                scripted("after", 10, dependsOn=["one"]),
            )
        )
        executor = ScriptedExecutor()
        runtime = trt.Runtime(graph, trt.RunOptions(concurrency=2), executor=executor)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(runtime.run)
            await trio.sleep(0.5)
            runtime.shutdown("SIGTERM", "drain")
            assert runtime.task_statuses() == {
                "one": "running",
                "two": "running",
                "three": "canceled",
                "after": "canceled",
            }

        assert [task_id for task_id, _ in executor.started] == ["one", "two"]
        # Both ran their full second: drained, not canceled.
        assert [end for _, end in executor.ended] == [1.0, 1.0]
        assert runtime.task_statuses()["one"] == "success"
        info = runtime.shutdown_info
        assert info is not None
        assert (info.signal, info.mode) == ("SIGTERM", "drain")

    async def test_a_drained_failure_is_not_retried(
        self, write_tasks: WriteTasks, autojump_clock: trio.testing.MockClock
    ) -> None:
        graph = trt.load_task_file(
            write_tasks(
                command(
                    "flaky",
                    "unused",
                    metadata={"ms": 100, "outcomes": ["failed", "success"]},
                    retries={"maxAttempts": 3},
                )
            )
        )
        executor = ScriptedExecutor()
        runtime = trt.Runtime(graph, executor=executor)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(runtime.run)
            await trio.sleep(0.05)
            runtime.shutdown("SIGINT", "drain")

        assert len(executor.started) == 1
        assert runtime.task_statuses() == {"flaky": "failed"}

    async def test_a_drain_with_nothing_queued_stops_nothing(
        self, write_tasks: WriteTasks, autojump_clock: trio.testing.MockClock
    ) -> None:
        graph = trt.load_task_file(write_tasks(scripted("only", 1000)))
        runtime = trt.Runtime(graph, executor=ScriptedExecutor())

        results: list[trt.RunResult] = []

        async def run() -> None:
            results.append(await runtime.run())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            await trio.sleep(0.5)
            runtime.shutdown("SIGTERM", "drain")

        (result,) = results
        assert result.ok
        assert result.canceled_at is None
        assert result.stop_reason is None
        assert result.shutdown is not None

    async def test_cancel_after_a_drain_still_cancels_what_runs(
        self, write_tasks: WriteTasks, autojump_clock: trio.testing.MockClock
    ) -> None:
        graph = trt.load_task_file(write_tasks(scripted("long", 60_000)))
        runtime = trt.Runtime(graph, executor=ScriptedExecutor())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(runtime.run)
            await trio.sleep(1)
            runtime.drain("draining")
            await trio.sleep(1)
            assert runtime.task_statuses() == {"long": "running"}
            runtime.cancel("enough")

        assert trio.current_time() == pytest.approx(2.0)
        assert runtime.task_statuses() == {"long": "canceled"}


def start_trt(*args: str) -> subprocess.Popen[str]:
    """Start ``python -m trt ARGS`` in the test's folder, SIGINT handled."""
    return subprocess.Popen(
        [sys.executable, "-m", "trt", *args],
        cwd=cli_cwd(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def wait_for_running(count: int) -> None:
    """Wait until the saved state shows ``count`` tasks running."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done = run_cli("status", "--json")
        if done.returncode == 0:
            counts = json.loads(done.stdout)["counts"]
            if counts.get("running") == count and counts.get("success", 0) >= 5:
                return
        time.sleep(0.05)
    pytest.fail("the run never got going")


def test_a_run_without_signals_clears_an_old_shutdown_report(
    write_tasks: WriteTasks,
) -> None:
    (cli_cwd() / "reports").mkdir()
    (cli_cwd() / "reports" / "shutdown.json").write_text("{}")

    done = run_cli("run", str(write_tasks(command("a", "true"))))

    assert done.returncode == 0
    assert not (cli_cwd() / "reports" / "shutdown.json").exists()


class TestRealSignals:
    def test_sigint_during_the_delays_stops_within_the_grace(self) -> None:
        trt_process = start_trt(
            "run", str(TASKS / "one-hundred-delays.json"), "--concurrency", "5"
        )
        try:
            wait_for_running(5)
            sent = time.monotonic()
            trt_process.send_signal(signal.SIGINT)
            _, stderr = trt_process.communicate(timeout=EXIT_LIMIT)
            took = time.monotonic() - sent
        finally:
            trt_process.kill()

        # The delays end on SIGTERM at once; 2 s is the default kill grace.
        assert took < 2.0
        assert trt_process.returncode == 1, stderr
        shutdown = json.loads((cli_cwd() / "reports" / "shutdown.json").read_text())
        assert shutdown["signal"] == "SIGINT"
        assert shutdown["mode"] == "cancel"
        assert not shutdown["forced"]
        assert shutdown["stateSaved"]
        assert shutdown["counts"]["canceled"] == len(shutdown["incompleteTaskIds"])
        assert shutdown["counts"]["success"] + shutdown["counts"]["canceled"] == 100
        state = json.loads((cli_cwd() / "state" / "run.json").read_text())
        assert state["status"] == "canceled"
        assert state["shutdown"]["signal"] == "SIGINT"
        assert {t["status"] for t in state["tasksById"].values()} == {
            "success",
            "canceled",
        }

    def test_drain_lets_the_running_five_finish(self) -> None:
        trt_process = start_trt(
            "run",
            str(TASKS / "one-hundred-delays.json"),
            "--concurrency",
            "5",
            "--shutdown",
            "drain",
        )
        try:
            wait_for_running(5)
            before = json.loads(run_cli("status", "--json").stdout)["counts"]
            trt_process.send_signal(signal.SIGTERM)
            _, stderr = trt_process.communicate(timeout=EXIT_LIMIT)
        finally:
            trt_process.kill()

        assert trt_process.returncode == 1, stderr
        assert "running tasks were let finish" in stderr
        report = json.loads((cli_cwd() / "reports" / "latest.json").read_text())
        statuses = [task["status"] for task in report["tasks"]]
        # Every attempt that started ended in success: none was cut off.
        started = [task for task in report["tasks"] if task["attempts"]]
        assert {task["status"] for task in started} == {"success"}
        assert len(started) >= before["success"] + 5
        assert statuses.count("canceled") == 100 - len(started)
        shutdown = json.loads((cli_cwd() / "reports" / "shutdown.json").read_text())
        assert shutdown["mode"] == "drain"
        assert shutdown["stateSaved"]

    def test_a_second_signal_snapshots_and_exits_130(
        self, write_tasks: WriteTasks, tmp_path: Path
    ) -> None:
        marker = tmp_path / "started"
        stubborn = f"trap '' TERM; echo $$ > {marker}; sleep 300 & wait"
        path = write_tasks(
            command("stubborn", "sh", "-c", stubborn), command("later", "true")
        )
        trt_process = start_trt("run", str(path), "--kill-grace", "60000")
        try:
            wait_for_files([marker])
            trt_process.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            trt_process.send_signal(signal.SIGINT)
            _, stderr = trt_process.communicate(timeout=EXIT_LIMIT)
        finally:
            trt_process.kill()

        assert trt_process.returncode == 130
        assert "second signal (SIGINT): stopped at once" in stderr
        state = json.loads((cli_cwd() / "state" / "run.json").read_text())
        assert state["status"] == "interrupted"
        assert state["tasksById"]["stubborn"]["status"] == "running"
        shutdown = json.loads((cli_cwd() / "reports" / "shutdown.json").read_text())
        assert shutdown["forced"]
        assert shutdown["exitCode"] == 130
        assert shutdown["signal"] == "SIGTERM"
        from tests.test_process import gone_within

        assert gone_within(int(marker.read_text()))

        # The cut-off attempt is history on resume, and the task runs again.
        marker.unlink()
        path.write_text(path.read_text().replace("sleep 300 & wait", "true"))
        resumed = run_cli("run", str(path), "--resume")
        assert resumed.returncode == 0, resumed.stderr
        report = json.loads((cli_cwd() / "reports" / "latest.json").read_text())
        stubborn_task = report["tasks"][0]
        assert [a["status"] for a in stubborn_task["attempts"]] == [
            "interrupted",
            "success",
        ]


def test_sigkill_at_random_instants_then_resume_reruns_no_success(
    write_tasks: WriteTasks, tmp_path: Path
) -> None:
    """A small run of the crash-consistency check (bench/crash_consistency.py)."""
    ledger = tmp_path / "ledger"
    note = f'echo "$TRT_TASK_ID" >> {ledger}; sleep 0.01'
    path = write_tasks(*[command(f"t{i:03d}", "sh", "-c", note) for i in range(120)])
    rng = random.Random(5)

    for _ in range(3):
        process = start_trt("run", str(path), "--concurrency", "8")
        time.sleep(rng.uniform(0.3, 1.0))
        process.kill()
        process.communicate(timeout=EXIT_LIMIT)
        time.sleep(0.1)  # let the orphaned short tasks finish

        status = run_cli("status", "--json")
        assert status.returncode == 0, status.stderr
        saved = json.loads((cli_cwd() / "state" / "run.json").read_text())
        assert saved["runId"] == json.loads(status.stdout)["runId"]
        state = trt.StateStore(cli_cwd() / "state").load()
        kept = {
            key for key, task in state.tasks_by_id.items() if task.status == "success"
        }
        before = ledger.read_text().split()

        resumed = run_cli("run", str(path), "--resume", "--concurrency", "8")

        assert resumed.returncode == 0, resumed.stderr
        after = ledger.read_text().split()
        reran = [task_id for task_id in after[len(before) :] if task_id in kept]
        assert reran == []
        final = trt.StateStore(cli_cwd() / "state").load()
        assert {task.status for task in final.tasks_by_id.values()} == {"success"}
