"""End-to-end: a real ``trt`` process stopped by real signals.

Each test starts trt with tasks that write their pid to a file and then
sleep, waits for those files, signals trt, and checks that trt exits with
the right code and that no task process survives it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, WriteTasks, command
from tests.test_process import pid_alive

# Generous bounds for real processes on a shared 2-core machine.
STARTUP_LIMIT = 20.0
EXIT_LIMIT = 20.0


def wait_for_files(paths: list[Path]) -> None:
    deadline = time.monotonic() + STARTUP_LIMIT
    while not all(path.exists() and path.read_text().strip() for path in paths):
        assert time.monotonic() < deadline, "tasks never started"
        time.sleep(0.02)


@pytest.mark.parametrize(
    ("signum", "code", "message"),
    [
        (signal.SIGINT, 130, "trt: interrupted\n"),
        (
            signal.SIGTERM,
            143,
            "trt: terminated by SIGTERM; running tasks were stopped\n",
        ),
    ],
    ids=["sigint", "sigterm"],
)
def test_signal_stops_run_and_every_child(
    write_tasks: WriteTasks, tmp_path: Path, signum: int, code: int, message: str
) -> None:
    markers = [tmp_path / f"pid-{i}" for i in range(3)]
    tasks = [
        # The shell's background child shares its process group: both die.
        command(f"sleeper-{i}", "sh", "-c", f"sleep 477 & echo $$ $! > {marker}; wait")
        for i, marker in enumerate(markers)
    ]
    tasks.append(command("queued", "sleep", "477"))
    path = write_tasks(*tasks)
    trt = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trt",
            "run",
            str(path),
            "--concurrency",
            "3",
            "--reports-dir",
            str(tmp_path / "reports"),
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_files(markers)
        trt.send_signal(signum)
        _, stderr = trt.communicate(timeout=EXIT_LIMIT)
    finally:
        if trt.poll() is None:
            trt.kill()

    assert trt.returncode == code
    assert stderr == message
    pids = [int(pid) for marker in markers for pid in marker.read_text().split()]
    assert len(pids) == 6
    assert not [pid for pid in pids if pid_alive(pid)]
    assert "Traceback" not in stderr
    assert not (tmp_path / "reports" / "latest.json").exists()
