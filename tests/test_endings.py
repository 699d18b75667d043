"""End-to-end: how runs and attempts end, on the shipped fixtures.

Real processes throughout: timeouts, kills and cancellation are about
processes, so each test also checks that none of the fixture's distinctive
sleeps survives the run.
"""

from __future__ import annotations

import itertools
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.conftest import TASKS, WriteTasks, run_cli
from tests.test_process import gone_within
from tests.test_signals import processes_running


def leftovers(*durations: str) -> list[int]:
    """Return the pids of fixture sleeps still alive after a grace."""
    found = []
    for duration in durations:
        found += processes_running(["sleep", duration])
    return [pid for pid in found if not gone_within(pid)]


def report(reports: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((reports / "latest.json").read_text())
    return data


def _ms(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp() * 1000


def by_id(data: dict[str, Any]) -> dict[str, Any]:
    return {task["id"]: task for task in data["tasks"]}


def test_cancel_after_stops_everything(tmp_path: Path) -> None:
    start = time.monotonic()
    done = run_cli(
        "run",
        str(TASKS / "cancel-after.json"),
        "--concurrency",
        "2",
        "--cancel-after",
        "250",
        "--reports-dir",
        str(tmp_path),
    )
    elapsed = time.monotonic() - start

    assert done.returncode == 1, done.stderr
    # The sleeps last over 30 s; ending at all within 10 s proves the stop.
    assert elapsed < 10
    assert leftovers("31.25", "31.5", "31.75", "32.25") == []
    data = report(tmp_path)
    tasks = by_id(data)
    assert data["status"] == "canceled"
    assert data["cancelReason"] == "cancel-after: 250 ms elapsed"
    assert data["canceledAt"] is not None
    assert set(data["canceledTaskIds"]) == set(tasks)
    assert [a["status"] for a in tasks["with-grandchild"]["attempts"]] == ["canceled"]
    attempt = tasks["with-grandchild"]["attempts"][0]
    assert attempt["error"]["kind"] == "canceled"
    assert attempt["process"]["terminatedWith"] == "SIGTERM"
    assert tasks["queued-1"]["attempts"] == []
    assert tasks["queued-1"]["stopReason"] == "cancel-after: 250 ms elapsed"
    assert data["metrics"]["canceledCount"] == 5


def test_timeouts_end_every_kind_of_process(tmp_path: Path) -> None:
    done = run_cli(
        "run",
        str(TASKS / "timeouts.json"),
        "--concurrency",
        "5",
        "--timeout",
        "500",
        "--kill-grace",
        "500",
        "--reports-dir",
        str(tmp_path),
    )

    assert done.returncode == 1, done.stderr
    assert leftovers("33.25", "33.5", "33.75") == []
    tasks = by_id(report(tmp_path))
    stubborn = tasks["ignores-sigterm"]["attempts"][0]
    assert stubborn["status"] == "timed_out"
    assert stubborn["timeoutMs"] == 300
    assert stubborn["timedOutAt"] is not None
    assert stubborn["process"]["terminatedWith"] == "SIGKILL"
    assert stubborn["process"]["signal"] == "SIGKILL"
    assert stubborn["elapsedMs"] >= 800
    assert tasks["holds-the-pipe"]["status"] == "timed_out"
    assert tasks["in-time"]["status"] == "success"
    fallback = tasks["uses-the-fallback"]["attempts"][0]
    assert (fallback["status"], fallback["timeoutMs"]) == ("timed_out", 500)
    assert fallback["process"]["signal"] == "SIGTERM"
    assert tasks["async-function"]["error"]["kind"] == "timeout"
    assert tasks["sync-function"]["status"] == "timed_out"


def test_flaky_tasks_retry_by_policy(tmp_path: Path) -> None:
    done = run_cli(
        "run",
        str(TASKS / "flaky.json"),
        "--concurrency",
        "4",
        "--reports-dir",
        str(tmp_path),
    )

    assert done.returncode == 1
    data = report(tmp_path)
    tasks = by_id(data)
    command = tasks["flaky-command"]
    assert command["status"] == "success"
    assert [a["status"] for a in command["attempts"]] == ["failed", "failed", "success"]
    assert [a["nextDelayMs"] for a in command["attempts"]] == [100, 200, None]
    # Each retry starts no sooner than its backoff after the previous end.
    attempts = command["attempts"]
    for before, after in itertools.pairwise(attempts):
        gap = _ms(after["startedAt"]) - _ms(before["endedAt"])
        assert gap >= before["nextDelayMs"] - 1
    function = tasks["flaky-function"]
    assert function["status"] == "success"
    assert [a["nextDelayMs"] for a in function["attempts"]] == [50, 150, None]
    assert len(tasks["never-works"]["attempts"]) == 2
    assert len(tasks["not-worth-retrying"]["attempts"]) == 1
    assert data["metrics"]["retryCount"] == 5
    assert "[flaky-command] attempt 1 fails" in done.stderr


def test_early_settlement_leaves_no_process(tmp_path: Path) -> None:
    done = run_cli(
        "run",
        str(TASKS / "cancel-after.json"),
        "--concurrency",
        "2",
        "--mode",
        "race",
        "--timeout",
        "300",
        "--reports-dir",
        str(tmp_path),
    )

    assert done.returncode == 1
    assert leftovers("31.25", "31.5", "31.75", "32.25") == []
    data = report(tmp_path)
    assert data["stopReason"].startswith("mode race: task ")
    assert data["status"] == "failed"


def test_empty_file_in_each_mode(write_tasks: WriteTasks, tmp_path: Path) -> None:
    path = write_tasks()
    codes = {}
    for mode in ("allSettled", "all", "race", "any"):
        done = run_cli("run", str(path), "--mode", mode, "--reports-dir", str(tmp_path))
        codes[mode] = done.returncode

    assert codes == {"allSettled": 0, "all": 0, "race": 1, "any": 1}
    assert report(tmp_path)["error"]["message"] == (
        "mode any: there are no tasks, so none succeeded"
    )
