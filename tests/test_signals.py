"""End-to-end: a real ``trt`` process stopped by real signals.

Each test starts trt with tasks that write their pid to a file and then
sleep, waits for those files, signals trt, and checks that trt exits with
the right code and that no task process survives it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import WriteTasks, cli_cwd, command
from tests.test_process import gone_within, pid_alive

# Generous bounds for real processes on a shared 2-core machine.
STARTUP_LIMIT = 20.0
EXIT_LIMIT = 20.0


def start_trt(*args: str) -> subprocess.Popen[str]:
    """Start ``python -m trt ARGS`` with SIGINT handled.

    A job started in the background by a non-interactive shell inherits
    SIGINT ignored, and Python then leaves it ignored, as Unix expects of
    background jobs; the test must not depend on how pytest was started.
    """
    return subprocess.Popen(
        [sys.executable, "-m", "trt", *args],
        cwd=cli_cwd(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def stop(trt: subprocess.Popen[str]) -> None:
    """End a trt the test gave up on, letting it clean up its children."""
    if trt.poll() is None:
        trt.terminate()
        try:
            trt.wait(EXIT_LIMIT)
        except subprocess.TimeoutExpired:
            trt.kill()
            trt.wait()


def wait_for_files(paths: list[Path]) -> None:
    deadline = time.monotonic() + STARTUP_LIMIT
    while not all(path.exists() and path.read_text().strip() for path in paths):
        assert time.monotonic() < deadline, "tasks never started"
        time.sleep(0.02)


def stopped_line(name: str, path: Path) -> re.Pattern[str]:
    return re.compile(
        rf"trt: stopped by {name} \(--shutdown cancel\): (\d+ running tasks? "
        rf"(was|were) terminated|running tasks were let finish); resume with: "
        rf"trt run {re.escape(str(path))} --resume\n\Z"
    )


@pytest.mark.parametrize(
    ("signum", "name"),
    [(signal.SIGINT, "SIGINT"), (signal.SIGTERM, "SIGTERM"), (signal.SIGHUP, "SIGHUP")],
    ids=["sigint", "sigterm", "sighup"],
)
def test_signal_stops_run_and_every_child(
    write_tasks: WriteTasks, tmp_path: Path, signum: int, name: str
) -> None:
    markers = [tmp_path / f"pid-{i}" for i in range(3)]
    tasks = [
        # The shell's background child shares its process group: both die.
        command(f"sleeper-{i}", "sh", "-c", f"sleep 477 & echo $$ $! > {marker}; wait")
        for i, marker in enumerate(markers)
    ]
    tasks.append(command("queued", "sleep", "477"))
    path = write_tasks(*tasks)
    log = tmp_path / "events.jsonl"
    trt = start_trt(
        "run",
        str(path),
        "--concurrency",
        "3",
        f"--log-events={log}",
        "--reports-dir",
        str(tmp_path / "reports"),
    )
    try:
        wait_for_files(markers)
        trt.send_signal(signum)
        _, stderr = trt.communicate(timeout=EXIT_LIMIT)
    finally:
        stop(trt)

    # A graceful stop: the run failed to finish, and every report says so.
    assert trt.returncode == 1
    assert stopped_line(name, path).search(stderr)
    assert "3 running tasks were terminated" in stderr
    pids = [int(pid) for marker in markers for pid in marker.read_text().split()]
    assert len(pids) == 6
    assert not [pid for pid in pids if not gone_within(pid)]
    assert "Traceback" not in stderr
    # The run still ends properly: every task canceled, the report written.
    report = json.loads((tmp_path / "reports" / "latest.json").read_text())
    assert report["status"] == "canceled"
    assert report["cancelReason"] == f"{name} received: shutdown (cancel)"
    assert {task["status"] for task in report["tasks"]} == {"canceled"}
    events = [json.loads(line) for line in log.read_text().splitlines()]
    finished = [e["taskId"] for e in events if e["type"] == "task:finish"]
    assert sorted(finished) == sorted(task["id"] for task in tasks)
    assert events[-1]["type"] == "run:finish"


def test_second_sigterm_forces_exit_143_and_kills_the_group(
    write_tasks: WriteTasks, tmp_path: Path
) -> None:
    """A repeated SIGTERM ends trt at once, but never before its children."""
    marker = tmp_path / "pid"
    stubborn = (
        f"import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        f"open({str(marker)!r}, 'w').write(str(os.getpid())); time.sleep(300)"
    )
    path = write_tasks(command("stubborn", sys.executable, "-c", stubborn))
    trt = start_trt(
        "run",
        str(path),
        "--kill-grace",
        "60000",
        "--reports-dir",
        str(tmp_path / "reports"),
    )
    try:
        wait_for_files([marker])
        trt.send_signal(signal.SIGTERM)
        # Past the half second within which the same signal is an echo.
        time.sleep(0.8)
        trt.send_signal(signal.SIGTERM)
        _, stderr = trt.communicate(timeout=EXIT_LIMIT)
    finally:
        stop(trt)

    assert trt.returncode == 143
    assert "trt: second signal (SIGTERM): stopped at once" in stderr
    # Killed with its group, long before the 60 s grace ran out.
    assert gone_within(int(marker.read_text()))
    assert "Traceback" not in stderr


def processes_running(argv: list[str]) -> list[int]:
    """Return the pids whose command line is exactly ``argv``."""
    wanted = "\0".join(argv) + "\0"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "cmdline").read_text() == wanted and pid_alive(int(entry.name)):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_ctrl_c_amid_rapid_spawns_leaves_no_process(
    write_tasks: WriteTasks, tmp_path: Path
) -> None:
    """Regression: SIGINT landing just after a spawn leaked its group."""
    stray = ["sleep", "479.31"]
    body = f"{' '.join(stray)} >/dev/null 2>&1 & sleep 0.002"
    path = write_tasks(*[command(f"t{i}", "sh", "-c", body) for i in range(3000)])

    for delay in (0.6, 0.9, 1.2):
        trt = start_trt(
            "run",
            str(path),
            "--concurrency",
            "8",
            "--reports-dir",
            str(tmp_path / "reports"),
        )
        try:
            time.sleep(delay)
            trt.send_signal(signal.SIGINT)
            _, stderr = trt.communicate(timeout=EXIT_LIMIT)
        finally:
            stop(trt)
        leaked = [pid for pid in processes_running(stray) if not gone_within(pid)]
        for pid in leaked:
            os.kill(pid, signal.SIGKILL)

        assert trt.returncode == 1
        assert stopped_line("SIGINT", path).search(stderr)
        assert leaked == []


def test_a_signal_ignored_at_start_stays_ignored(
    write_tasks: WriteTasks, tmp_path: Path
) -> None:
    # As under nohup: the hangup trt was started ignoring stops nothing.
    marker = tmp_path / "started"
    path = write_tasks(
        command("nap", "sh", "-c", f"echo $$ > {marker}; sleep 0.5"),
    )
    trt = subprocess.Popen(
        [sys.executable, "-m", "trt", "run", str(path)],
        cwd=cli_cwd(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN),
    )
    try:
        wait_for_files([marker])
        trt.send_signal(signal.SIGHUP)
        _, stderr = trt.communicate(timeout=EXIT_LIMIT)
    finally:
        stop(trt)

    assert trt.returncode == 0, stderr
    assert "trt: success: 1 task, 1 succeeded" in stderr
    assert "SIGHUP" not in stderr
