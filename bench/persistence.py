"""What keeping the run's state on disk costs.

Runs N no-op (async) function tasks at concurrency 64 through the real
runtime, with and without a StateStore, in interleaved rounds, and reports
the median run times, the overhead, and the bytes written to the state
folder. Bytes are measured for 1,000 and 10,000 tasks to show they grow
linearly (rewriting the snapshot per change would grow them quadratically).

Usage: python bench/persistence.py [--rounds 5]
Writes reports/bench-persistence.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import statistics
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


def measure(folder: Path, count: int, rounds: int) -> dict[str, Any]:
    graph = trt.load_task_file(write_task_file(folder, count))
    one_run(graph, None)  # warm up imports and caches
    plain: list[float] = []
    kept: list[float] = []
    written: list[int] = []
    for _ in range(rounds):
        seconds, _ = one_run(graph, None)
        plain.append(seconds)
        seconds, size = one_run(graph, folder / "state")
        kept.append(seconds)
        written.append(size)
    without = statistics.median(plain)
    with_state = statistics.median(kept)
    final = (folder / "state" / "run.json").stat().st_size
    return {
        "tasks": count,
        "concurrency": CONCURRENCY,
        "withoutStateMs": round(without * 1000, 1),
        "withStateMs": round(with_state * 1000, 1),
        "overhead": round(with_state / without - 1, 3),
        "perTaskWithoutUs": round(without / count * 1e6, 1),
        "perTaskWithUs": round(with_state / count * 1e6, 1),
        "bytesWritten": statistics.median(written),
        "bytesPerTask": round(statistics.median(written) / count),
        "finalSnapshotBytes": final,
        "roundsMs": {
            "without": [round(s * 1000, 1) for s in plain],
            "with": [round(s * 1000, 1) for s in kept],
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="trt-persist-") as temp:
        small = measure(Path(temp), 1000, args.rounds)
        large = measure(Path(temp), 10_000, args.rounds)
    summary = {
        "small": small,
        "large": large,
        "bytesRatio10x": round(large["bytesWritten"] / small["bytesWritten"], 2),
    }
    for row in (small, large):
        print(
            f"{row['tasks']:>6} tasks: without state {row['withoutStateMs']:7.1f} ms, "
            f"with {row['withStateMs']:7.1f} ms (+{row['overhead'] * 100:.0f} %), "
            f"{row['bytesWritten'] / 1e6:.2f} MB written "
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
