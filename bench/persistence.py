"""What keeping the run's state on disk costs.

Runs N no-op (async) function tasks at concurrency 64 through the real
runtime, with and without a StateStore, in interleaved rounds, and reports
the median run times, the overhead, and the bytes written to the state
folder. Bytes are measured for 1,000 and 10,000 tasks to show they grow
linearly (rewriting the snapshot per change would grow them quadratically).

Each size runs in several fresh processes (interleaved rounds in each);
the medians pool every round.

Usage: python bench/persistence.py [--rounds 5] [--processes 3]
Writes reports/bench-persistence.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

import trio  # noqa: E402

import trt  # noqa: E402

CONCURRENCY = 64


def write_task_file(folder: Path, count: int) -> Path:
    (folder / "noop.py").write_text("async def noop(context):\n    return None\n")
    tasks = [
        {"id": f"t{i:05d}", "type": "function", "module": "noop.py", "export": "noop"}
        for i in range(count)
    ]
    path = folder / f"noop-{count}.json"
    path.write_text(json.dumps({"version": 1, "tasks": tasks}))
    return path


def one_run(graph: trt.TaskGraph, state_dir: Path | None) -> tuple[float, int]:
    """Run once; return the run's seconds and the bytes written to state."""
    options = trt.RunOptions(concurrency=CONCURRENCY)

    async def main() -> tuple[float, int]:
        if state_dir is None:
            runtime = trt.Runtime(graph, options)
            started = time.perf_counter()
            result = await runtime.run()
            assert result.ok
            return time.perf_counter() - started, 0
        shutil.rmtree(state_dir, ignore_errors=True)
        with trt.StateStore(state_dir) as store:
            runtime = trt.Runtime(graph, options, store=store)
            started = time.perf_counter()
            result = await runtime.run()
            assert result.ok
            return time.perf_counter() - started, store.bytes_written

    gc.collect()
    return trio.run(main)


def measure(folder: Path, count: int, rounds: int) -> dict[str, list[float]]:
    """Interleaved rounds in this process: run times and bytes written."""
    graph = trt.load_task_file(write_task_file(folder, count))
    one_run(graph, None)  # warm up imports and caches
    plain: list[float] = []
    kept: list[float] = []
    written: list[float] = []
    for _ in range(rounds):
        seconds, _ = one_run(graph, None)
        plain.append(seconds)
        seconds, size = one_run(graph, folder / "state")
        kept.append(seconds)
        written.append(size)
    final = (folder / "state" / "run.json").stat().st_size
    return {"without": plain, "with": kept, "written": written, "final": [final]}


def summarize(count: int, runs: list[dict[str, list[float]]]) -> dict[str, Any]:
    """Pool the rounds of every process; the overhead of each process too."""
    plain = [s for run in runs for s in run["without"]]
    kept = [s for run in runs for s in run["with"]]
    written = [b for run in runs for b in run["written"]]
    without = statistics.median(plain)
    with_state = statistics.median(kept)
    per_process = [
        statistics.median(run["with"]) / statistics.median(run["without"]) - 1
        for run in runs
    ]
    return {
        "tasks": count,
        "concurrency": CONCURRENCY,
        "processes": len(runs),
        "withoutStateMs": round(without * 1000, 1),
        "withStateMs": round(with_state * 1000, 1),
        "overhead": round(with_state / without - 1, 3),
        "overheadPerProcess": [round(o, 3) for o in per_process],
        "perTaskWithoutUs": round(without / count * 1e6, 1),
        "perTaskWithUs": round(with_state / count * 1e6, 1),
        "bytesWritten": statistics.median(written),
        "bytesPerTask": round(statistics.median(written) / count),
        "finalSnapshotBytes": runs[0]["final"][0],
    }


def child(count: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="trt-persist-") as temp:
        print(json.dumps(measure(Path(temp), count, rounds)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.rounds)
        return 0
    rows = []
    for count in (1000, 10_000):
        # Fresh processes: on a shared machine a whole process can run fast
        # or slow, so one process's rounds are not enough.
        runs = [
            json.loads(
                subprocess.run(
                    [sys.executable, __file__, "--child", str(count),
                     "--rounds", str(args.rounds)],
                    capture_output=True, check=True, text=True,
                ).stdout
            )
            for _ in range(args.processes)
        ]  # fmt: skip
        rows.append(summarize(count, runs))
    small, large = rows
    summary = {
        "small": small,
        "large": large,
        "bytesRatio10x": round(large["bytesWritten"] / small["bytesWritten"], 2),
    }
    for row in rows:
        spread = ", ".join(f"{o * 100:+.0f} %" for o in row["overheadPerProcess"])
        print(
            f"{row['tasks']:>6} tasks: without state {row['withoutStateMs']:7.1f} ms, "
            f"with {row['withStateMs']:7.1f} ms (+{row['overhead'] * 100:.0f} %; "
            f"per process {spread}), {row['bytesWritten'] / 1e6:.2f} MB written "
            f"({row['bytesPerTask']} B/task; final snapshot "
            f"{row['finalSnapshotBytes'] / 1e6:.2f} MB)"
        )
    print(f"bytes for 10x the tasks: {summary['bytesRatio10x']}x")
    reports = REPO / "reports"
    reports.mkdir(exist_ok=True)
    (reports / "bench-persistence.json").write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
