"""Crash consistency: SIGKILL trt at random instants, then check and resume.

Each cycle starts a fresh run of a few hundred short command tasks that
append their id to a ledger file, SIGKILLs ``trt`` at a random instant
(sometimes the resumed run too), and after every kill checks that:

- ``state/run.json`` parses as JSON and ``trt status`` works;
- ``trt run --resume`` finishes the run, every task ends ``success``, and
  no task that the state recorded as a success appears in the ledger again.

Usage: python bench/crash_consistency.py [--kills 50] [--tasks 300]
       [--kill-within 0.6]
The summary is printed and written to reports/crash-consistency.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TRT = [sys.executable, "-m", "trt"]


def task_file(folder: Path, count: int, rng: random.Random) -> Path:
    """Write the task file: short tasks, some with dependencies."""
    ledger = folder / "ledger"
    tasks: list[dict[str, Any]] = []
    for index in range(count):
        pause = rng.choice(["0", "0.005", "0.01", "0.02"])
        task: dict[str, Any] = {
            "id": f"t{index:04d}",
            "type": "command",
            "command": "sh",
            "args": ["-c", f'echo "$TRT_TASK_ID" >> {ledger}; sleep {pause}'],
        }
        if index >= 10 and rng.random() < 0.3:
            task["dependsOn"] = [f"t{rng.randrange(index - 10, index):04d}"]
        tasks.append(task)
    path = folder / "tasks.json"
    path.write_text(json.dumps({"version": 1, "tasks": tasks}))
    return path


def trt(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TRT, *args],
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def start(folder: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*TRT, *args],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def kill_at_random(
    folder: Path, args: list[str], rng: random.Random, latest: float
) -> float | None:
    """Start trt, SIGKILL it at a random instant; return when, or None.

    The instant is drawn after the run's first state snapshot exists (a
    kill before that leaves the previous run's state, which proves less).
    None means the run finished before the kill came.
    """
    state = folder / "state" / "run.json"
    before = state.stat().st_mtime_ns if state.exists() else None
    process = start(folder, *args)
    deadline = time.monotonic() + 30
    while not state.exists() or state.stat().st_mtime_ns == before:
        if process.poll() is not None or time.monotonic() > deadline:
            break
        time.sleep(0.002)
    delay = rng.uniform(0, latest)
    time.sleep(delay)
    if process.poll() is not None:
        return None
    process.send_signal(signal.SIGKILL)
    process.wait()
    # The killed trt's children are orphans in their own process groups
    # (SIGKILL cannot be caught, so nobody terminates them); they are
    # short, so let them end before reading the ledger.
    time.sleep(0.1)
    return delay


def check_after_kill(folder: Path, path: Path) -> dict[str, Any]:
    """The checks one kill must pass; raises AssertionError if one fails."""
    raw = (folder / "state" / "run.json").read_text()
    json.loads(raw)  # parses: never torn
    status = trt(folder, "status", "--json")
    assert status.returncode == 0, status.stderr
    summary = json.loads(status.stdout)

    sys.path.insert(0, str(REPO / "src"))
    import trt as api

    state = api.StateStore(folder / "state").load()
    kept = {key for key, task in state.tasks_by_id.items() if task.status == "success"}
    ledger = folder / "ledger"
    before = ledger.read_text().split() if ledger.exists() else []

    resumed = trt(folder, "run", str(path), "--resume", "--concurrency", "8")
    assert resumed.returncode == 0, resumed.stderr
    after = ledger.read_text().split()
    reran = [task_id for task_id in after[len(before) :] if task_id in kept]
    assert not reran, f"successes ran again: {reran[:5]}"
    final = api.StateStore(folder / "state").load()
    statuses = {task.status for task in final.tasks_by_id.values()}
    assert statuses == {"success"}, statuses
    assert set(after) == set(final.tasks_by_id)
    return {
        "savedStatus": summary["savedStatus"],
        "shownStatus": summary["status"],
        "successesKept": len(kept),
        "ranAgain": len(after) - len(before),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--tasks", type=int, default=300)
    # Longer runs reach the journal size at which state is compacted
    # (1 MB): --tasks 3000 --kill-within 3 kills runs mid-compaction too.
    parser.add_argument("--kill-within", type=float, default=0.6)
    parser.add_argument("--seed", type=int, default=20261203)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    results: list[dict[str, Any]] = []
    missed = 0
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="trt-crash-") as temp:
        base = Path(temp)
        while len(results) < args.kills:
            folder = base / f"cycle-{len(results)}"
            folder.mkdir()
            path = task_file(folder, args.tasks, rng)
            run = ["run", str(path), "--concurrency", "8"]
            # Kill the first run; half the time also kill the resumed run
            # before letting the check's own resume finish it.
            for attempt_args in (run, [*run, "--resume"]):
                delay = kill_at_random(
                    folder, attempt_args, rng, latest=args.kill_within
                )
                if delay is None:
                    missed += 1
                    break
                outcome = check_after_kill(folder, path)
                outcome["killedAfterMs"] = round(delay * 1000, 1)
                results.append(outcome)
                print(
                    f"kill {len(results):2d}: after {delay * 1000:5.0f} ms, "
                    f"{outcome['successesKept']:3d} successes kept, "
                    f"{outcome['ranAgain']:3d} tasks ran on resume: ok",
                    flush=True,
                )
                if len(results) >= args.kills or rng.random() < 0.5:
                    break
            shutil.rmtree(folder)

    summary = {
        "kills": len(results),
        "tasksPerRun": args.tasks,
        "runsFinishedBeforeTheKill": missed,
        "failures": 0,
        "seconds": round(time.monotonic() - started, 1),
        "results": results,
    }
    reports = REPO / "reports"
    reports.mkdir(exist_ok=True)
    (reports / "crash-consistency.json").write_text(json.dumps(summary, indent=2))
    print(
        f"{len(results)} SIGKILLs, every check passed "
        f"({summary['seconds']} s); reports/crash-consistency.json"
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONPATH", str(REPO / "src"))
    sys.exit(main())
