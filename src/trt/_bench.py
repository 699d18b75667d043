"""``trt bench``: deterministic scenarios, each beside its own baselines.

Design::

    trt bench ──> for each scenario: a fresh child interpreter
                  (python -m trt._bench SCENARIO) runs it through the real
                  Runtime (state and an event listener on, as `trt run`
                  has them) and prints one JSON result, peak RSS included
              ──> the baselines of that scenario, measured right after it:
                  the ideal time from the task mix, a bare Trio loop doing
                  the same spawns (CapacityLimiter, no bookkeeping), and
                  xargs -P for the spawn scenario
              ──> reports/bench.json and reports/task-runtime.md (+ .svg),
                  both written from the same ScenarioResult objects

A child per scenario keeps scenarios from sharing caches, garbage or a
high-water mark of memory, so peak RSS is that scenario's own.
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

import msgspec

# Runs of each scenario (and of its references) in a full run; the median
# is reported. Three keep the full run under two minutes on 2 cores; the
# scenarios the targets judge, short ones whose noise on a shared machine
# is a large part of their time, get five.
ROUNDS: Final = 3
TARGET_ROUNDS: Final = 5

# Delays of the shared mix, in seconds; the mix repeats them in this order.
DELAY_MIX: Final = (0.05, 0.1, 0.15, 0.2)


class BenchStruct(msgspec.Struct, kw_only=True, rename="camel"):
    """Base of the benchmark's result objects (camelCase, like reports)."""


class ScenarioResult(BenchStruct, kw_only=True):
    """One scenario's figures, its references, and trt's ratio to each."""

    group: str
    name: str
    description: str
    task_count: int
    concurrency: int
    mode: str = "allSettled"
    duration_ms: float = 0.0
    throughput_per_second: float = 0.0
    success_count: int = 0
    failed_count: int = 0
    timed_out_count: int = 0
    canceled_count: int = 0
    retry_count: int = 0
    queue_ms_avg: float | None = None
    queue_ms_p95: float | None = None
    max_active: int = 0
    per_task_us: float | None = None
    peak_rss_mb: float | None = None
    ideal_ms: float | None = None
    baselines_ms: dict[str, float] = {}
    ratios: dict[str, float] = {}


class Target(BenchStruct, kw_only=True):
    """A target from the issue, the measured value and whether it holds."""

    name: str
    measured: float
    limit: float
    unit: str
    met: bool


class BenchReport(BenchStruct, kw_only=True):
    """The whole of ``reports/bench.json``."""

    command: str
    quick: bool
    started_at: str
    seconds: float
    python: str
    trio: str
    msgspec: str
    platform: str
    cpu_count: int
    scenarios: list[ScenarioResult]
    targets: list[Target]


# -- task mixes --------------------------------------------------------------


def _command(task_id: str, argv: list[str], **fields: Any) -> dict[str, Any]:
    program, *args = argv
    task = {"id": task_id, "type": "command", "command": program, "args": args}
    task.update(fields)
    return task


def _function(task_id: str, **fields: Any) -> dict[str, Any]:
    task = {"id": task_id, "type": "function", "module": "noop.py", "export": "noop"}
    task.update(fields)
    return task


def delay_tasks(count: int) -> list[dict[str, Any]]:
    """``count`` sleeps cycling through DELAY_MIX."""
    return [
        _command(f"d{i:03d}", ["sleep", str(DELAY_MIX[i % len(DELAY_MIX)])])
        for i in range(count)
    ]


def flaky_tasks(count: int, retries: bool) -> list[dict[str, Any]]:
    """Half the tasks fail their first attempt (by TRT_ATTEMPT), then pass."""
    tasks = []
    for i in range(count):
        script = "sleep 0.05"
        if i % 2:
            script += '; test "$TRT_ATTEMPT" -ge 2'
        task = _command(f"f{i:03d}", ["sh", "-c", script])
        if retries:
            task["retries"] = {"maxAttempts": 2, "backoffMs": 50}
        tasks.append(task)
    return tasks


def mixed_tasks() -> list[dict[str, Any]]:
    """Successes and failures at known times, for the four modes."""
    plan = [
        ("ok-300", "sleep 0.3"),
        ("fail-200", "sleep 0.2; exit 1"),
        ("ok-100", "sleep 0.1"),
        ("ok-400", "sleep 0.4"),
        ("fail-50", "sleep 0.05; exit 3"),
        ("ok-250", "sleep 0.25"),
    ]
    return [_command(name, ["sh", "-c", script]) for name, script in plan]


def dag_tasks(layers: int, width: int, fan_in: int) -> list[dict[str, Any]]:
    """A layered DAG of no-op functions; each node depends on ``fan_in``
    nodes of the layer before, chosen with a fixed seed."""
    rng = random.Random(1203)
    tasks = []
    for layer in range(layers):
        for slot in range(width):
            deps = []
            if layer:
                picks = rng.sample(range(width), fan_in)
                deps = [f"n{layer - 1:02d}-{pick:03d}" for pick in sorted(picks)]
            tasks.append(_function(f"n{layer:02d}-{slot:03d}", dependsOn=deps))
    return tasks


# -- scenarios ---------------------------------------------------------------


def scenarios(quick: bool) -> list[dict[str, Any]]:
    """Every scenario, as plain data a child process can rebuild."""
    delays = 12 if quick else 24
    flaky = 10 if quick else 20
    spawns = 300 if quick else 1000
    noops = 2000 if quick else 10_000
    found: list[dict[str, Any]] = []
    for concurrency in (1, 5, 20):
        found.append(
            {
                "group": "concurrency",
                "name": f"concurrency-{concurrency}",
                "description": f"{delays} sleeps of 50-200 ms",
                "tasks": delay_tasks(delays),
                "concurrency": concurrency,
            }
        )
    for timeout in (None, 120):
        found.append(
            {
                "group": "timeouts",
                "name": "no-timeout" if timeout is None else f"timeout-{timeout}ms",
                "description": f"{delays} sleeps of 50-200 ms at concurrency 5",
                "tasks": delay_tasks(delays),
                "concurrency": 5,
                "timeout_ms": timeout,
            }
        )
    for retries in (False, True):
        found.append(
            {
                "group": "retries",
                "name": "retries-on" if retries else "retries-off",
                "description": f"{flaky} 50 ms tasks, half failing their first try",
                "tasks": flaky_tasks(flaky, retries),
                "concurrency": 5,
            }
        )
    for mode in ("allSettled", "all", "race", "any"):
        found.append(
            {
                "group": "modes",
                "name": f"mode-{mode}",
                "description": "4 successes and 2 failures, 50-400 ms",
                "tasks": mixed_tasks(),
                "concurrency": 3,
                "mode": mode,
            }
        )
    found.append(
        {
            "group": "scale",
            "name": f"spawn-{spawns}-true",
            "description": f"{spawns} x `true` at concurrency 8, output counted",
            "tasks": [_command(f"t{i:04d}", ["true"]) for i in range(spawns)],
            "concurrency": 8,
        }
    )
    found.append(
        {
            "group": "scale",
            "name": f"noop-{noops}-functions",
            "description": f"{noops} no-op async functions at concurrency 64",
            "tasks": [_function(f"f{i:05d}") for i in range(noops)],
            "concurrency": 64,
        }
    )
    layers, width, fan_in = (10, 40, 8) if quick else (10, 100, 11)
    edges = (layers - 1) * width * fan_in
    found.append(
        {
            "group": "scale",
            "name": f"dag-{layers * width}-nodes",
            "description": (
                f"{layers} layers x {width} no-op functions, {edges} edges"
            ),
            "tasks": dag_tasks(layers, width, fan_in),
            "concurrency": 64,
            "critical_path_s": 0.0,
        }
    )
    return found


def ideal_ms(scenario: dict[str, Any]) -> float | None:
    """The least time any scheduler needs for the mix, from its delays.

    Sum of delays over the concurrency, but never less than the longest
    task (for a DAG: the critical path). Timeouts cut delays short; a
    retried task runs twice, after its backoff; modes that settle early
    are bounded by the first task that settles them.
    """
    delays = []
    for task in scenario["tasks"]:
        delay = _delay_of(task)
        if delay is None:
            return float(scenario.get("critical_path_s", 0.0)) * 1000
        timeout = scenario.get("timeout_ms")
        if timeout is not None:
            delay = min(delay, timeout / 1000)
        if "retries" in task and "TRT_ATTEMPT" in str(task["args"]):
            delay = 2 * delay + task["retries"]["backoffMs"] / 1000
        delays.append(delay)
    if not delays:
        return 0.0
    concurrency: int = scenario["concurrency"]
    if "mode" in scenario:
        # Modes are compared by when each settles: simulate the schedule.
        return _settle_ms(scenario["tasks"], delays, concurrency, scenario["mode"])
    return float(round(max(sum(delays) / concurrency, max(delays)) * 1000, 1))


def file_order_ms(scenario: dict[str, Any]) -> float | None:
    """The makespan of the mix's delays started in file order, as trt does.

    The ideal assumes perfect packing, which no fixed order reaches; this
    is the least time for the order trt promises. None where it does not
    apply: no delays to schedule (functions, bare commands), retries, or a
    mode that settles early.
    """
    tasks = scenario["tasks"]
    if "mode" in scenario or "retries" in str(tasks):
        return None
    delays = [_delay_of(task) for task in tasks]
    if not delays or None in delays or not any(delays):
        return None
    timeout = scenario.get("timeout_ms")
    cut = [
        min(delay or 0.0, timeout / 1000) if timeout else delay or 0.0
        for delay in delays
    ]
    return _settle_ms(tasks, cut, scenario["concurrency"], "allSettled")


def _settle_ms(
    tasks: list[dict[str, Any]], delays: list[float], concurrency: int, mode: str
) -> float:
    """When a mode settles at the earliest: file-order list scheduling."""
    slots = [0.0] * concurrency
    ends = []
    for task, delay in zip(tasks, delays, strict=True):
        slot = min(range(concurrency), key=slots.__getitem__)
        slots[slot] += delay
        ok = "exit" not in " ".join(task["args"])
        ends.append((slots[slot], ok))
    makespan = max(end for end, _ in ends)
    failures = [end for end, ok in ends if not ok]
    successes = [end for end, ok in ends if ok]
    settle = {
        "all": min(failures, default=makespan),
        "race": min(end for end, _ in ends),
        "any": min(successes, default=makespan),
    }.get(mode, makespan)
    return float(round(settle * 1000, 1))


def _delay_of(task: dict[str, Any]) -> float | None:
    if task["type"] != "command":
        return None
    words = " ".join([task["command"], *task["args"]]).replace(";", " ").split()
    if "sleep" in words:
        return float(words[words.index("sleep") + 1])
    return 0.0


# -- the child: one scenario through the runtime ------------------------------


def run_scenario(scenario: dict[str, Any]) -> ScenarioResult:
    """Run one scenario through trt's Runtime, as `trt run` would."""
    import trio

    import trt

    with tempfile.TemporaryDirectory(prefix="trt-bench-") as temp:
        folder = Path(temp)
        (folder / "noop.py").write_text("async def noop(context):\n    return None\n")
        path = folder / "tasks.json"
        path.write_text(json.dumps({"version": 1, "tasks": scenario["tasks"]}))
        graph = trt.load_task_file(path)
        options = trt.RunOptions(
            concurrency=scenario["concurrency"],
            mode=scenario.get("mode", "allSettled"),
            timeout_ms=scenario.get("timeout_ms"),
        )
        null = os.open(os.devnull, os.O_WRONLY)
        output = trt.OutputSink(prefix=True, stdout_fd=null, stderr_fd=null)
        seen = [0]

        def count(event: trt.Event) -> None:
            seen[0] += 1

        async def main() -> tuple[trt.RunResult, float]:
            with trt.StateStore(folder / "state") as store:
                runtime = trt.Runtime(graph, options, output=output, store=store)
                runtime.events.on("*", count)
                started = time.perf_counter()
                result = await runtime.run()
                return result, time.perf_counter() - started

        try:
            result, seconds = trio.run(main)
        finally:
            os.close(null)
    return _summarize(scenario, result, seconds)


def _summarize(scenario: dict[str, Any], result: Any, seconds: float) -> ScenarioResult:
    metrics = result.metrics
    waits = sorted(t.queue_ms for t in result.tasks if t.queue_ms is not None)
    count = len(result.tasks)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return ScenarioResult(
        group=scenario["group"],
        name=scenario["name"],
        description=scenario["description"],
        task_count=count,
        concurrency=scenario["concurrency"],
        mode=scenario.get("mode", "allSettled"),
        duration_ms=round(seconds * 1000, 1),
        throughput_per_second=round(count / seconds, 1) if seconds else 0.0,
        success_count=metrics.completed_count,
        failed_count=metrics.failed_count + metrics.blocked_count,
        timed_out_count=metrics.timed_out_count,
        canceled_count=metrics.canceled_count,
        retry_count=metrics.retry_count,
        queue_ms_avg=round(statistics.fmean(waits), 2) if waits else 0.0,
        queue_ms_p95=round(_percentile(waits, 0.95), 2) if waits else 0.0,
        max_active=metrics.max_active,
        per_task_us=round(seconds / count * 1e6, 1) if count else 0.0,
        peak_rss_mb=round(peak_kb / 1024, 1),
        ideal_ms=ideal_ms(scenario),
    )


def _percentile(values: list[float], fraction: float) -> float:
    index = min(len(values) - 1, max(0, round(fraction * (len(values) - 1))))
    return values[index]


# -- baselines ---------------------------------------------------------------

# A bare Trio loop: the same argvs through trio.run_process under a
# CapacityLimiter, output read and dropped, and no bookkeeping at all.
BARE_SPAWN = """\
import json, sys, time
import trio

async def main(path, limit, timeout):
    tasks = json.load(open(path))["tasks"]
    argvs = [[t["command"], *t["args"]] for t in tasks]
    limiter = trio.CapacityLimiter(limit)
    async def one(argv):
        async with limiter:
            with trio.move_on_after(timeout):
                await trio.run_process(
                    argv, capture_stdout=True, capture_stderr=True, check=False
                )
    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for argv in argvs:
            nursery.start_soon(one, argv)
    print(time.perf_counter() - started)

trio.run(main, sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))
"""

# Bare Trio, no-op jobs: one task per job under a CapacityLimiter, and the
# leaner shape of 64 workers pulling from a memory channel.
BARE_NOOP = """\
import sys, time
import trio

async def nursery_per_job(count, limit):
    limiter = trio.CapacityLimiter(limit)
    async def job():
        async with limiter:
            await trio.lowlevel.checkpoint()
    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(job)
    return time.perf_counter() - started

async def workers(count, limit):
    send, receive = trio.open_memory_channel(count)
    for i in range(count):
        send.send_nowait(i)
    send.close()
    async def worker():
        async for _ in receive:
            await trio.lowlevel.checkpoint()
    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(limit):
            nursery.start_soon(worker)
    return time.perf_counter() - started

count, limit = int(sys.argv[1]), int(sys.argv[2])
print(trio.run(nursery_per_job, count, limit), trio.run(workers, count, limit))
"""


def _python(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, check=True
    )
    return done.stdout


def baselines(scenario: dict[str, Any], folder: Path) -> dict[str, float]:
    """Measure the scenario's references on this machine, in ms."""
    found: dict[str, float] = {}
    tasks = scenario["tasks"]
    if (
        all(task["type"] == "command" for task in tasks)
        and scenario.get("mode", "allSettled") == "allSettled"
        and "retries" not in str(tasks)
    ):
        path = folder / "bare.json"
        path.write_text(json.dumps({"tasks": tasks}))
        timeout = scenario.get("timeout_ms")
        seconds = float(
            _python(
                "-c",
                BARE_SPAWN,
                str(path),
                str(scenario["concurrency"]),
                str(timeout / 1000 if timeout else 3600),
            )
        )
        found["bareTrioLoop"] = round(seconds * 1000, 1)
    order = file_order_ms(scenario)
    if order is not None:
        found["fileOrder"] = order
    if scenario["name"].startswith("spawn-"):
        found["xargs"] = round(_xargs(len(tasks), scenario["concurrency"]) * 1000, 1)
    if scenario["name"].startswith("noop-"):
        per_job, workers = _python(
            "-c", BARE_NOOP, str(len(tasks)), str(scenario["concurrency"])
        ).split()
        found["bareTrioNursery"] = round(float(per_job) * 1000, 1)
        found["bareTrioWorkers"] = round(float(workers) * 1000, 1)
    return found


def _xargs(count: int, concurrency: int) -> float:
    lines = b"x\n" * count
    started = time.perf_counter()
    subprocess.run(
        ["xargs", "-P", str(concurrency), "-n", "1", "true"],
        input=lines,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def _ratios(result: ScenarioResult) -> dict[str, float]:
    ratios: dict[str, float] = {}
    if result.ideal_ms:
        ratios["ideal"] = round(result.duration_ms / result.ideal_ms, 3)
    for name, ms in result.baselines_ms.items():
        if ms:
            ratios[name] = round(result.duration_ms / ms, 3)
    return ratios


# -- the headline: start-up included ---------------------------------------


def delays_headline(folder: Path, rounds: int) -> ScenarioResult:
    """100 x 100 ms at concurrency 5 as `trt run`, start-up included,
    interleaved with the bare loop as its own process."""
    tasks = [_command(f"delay-{i:03d}", ["sleep", "0.1"]) for i in range(100)]
    path = folder / "delays.json"
    path.write_text(json.dumps({"version": 1, "tasks": tasks}))
    trt_argv = [
        sys.executable, "-m", "trt", "run", str(path), "--concurrency", "5",
        "--state-dir", str(folder / "state"), "--reports-dir", str(folder / "r"),
    ]  # fmt: skip
    bare_argv = [sys.executable, "-c", BARE_SPAWN, str(path), "5", "3600"]
    trt_times: list[float] = []
    bare_times: list[float] = []
    for _ in range(rounds):
        for argv, times in ((trt_argv, trt_times), (bare_argv, bare_times)):
            started = time.perf_counter()
            subprocess.run(argv, capture_output=True, check=True)
            times.append(time.perf_counter() - started)
    result = ScenarioResult(
        group="delays",
        name="one-hundred-delays",
        description="100 x sleep 0.1 at concurrency 5, process start-up included",
        task_count=100,
        concurrency=5,
        duration_ms=round(statistics.median(trt_times) * 1000, 1),
        success_count=100,
        ideal_ms=2000.0,
        baselines_ms={"bareTrioLoop": round(statistics.median(bare_times) * 1000, 1)},
    )
    result.throughput_per_second = round(100 / (result.duration_ms / 1000), 1)
    result.max_active = 5
    return result


# -- the parent ----------------------------------------------------------------


def run_bench(quick: bool, reports_dir: Path, command: str) -> BenchReport:
    """Run every scenario and its baselines; write bench.json and the report."""
    import compileall
    import platform

    import trio

    from trt._bench_report import check_targets, write_reports
    from trt._util import utc_now

    # Start-up is part of what is measured: make sure it is not spent
    # compiling trt's sources, which it would be under
    # PYTHONDONTWRITEBYTECODE (set on our machines) or in a fresh checkout.
    compileall.compile_dir(str(Path(__file__).parent), quiet=2)
    started_at = utc_now()
    started = time.perf_counter()
    results: list[ScenarioResult] = []
    with tempfile.TemporaryDirectory(prefix="trt-bench-") as temp:
        folder = Path(temp)
        for index, scenario in enumerate(scenarios(quick)):
            print(f"trt bench: {scenario['name']} ...", file=sys.stderr, flush=True)
            runs: list[ScenarioResult] = []
            references: list[dict[str, float]] = []
            # Interleaved, trt then its references, so that noise on the
            # machine falls on both alike; the median run is reported.
            rounds = ROUNDS if scenario["group"] != "scale" else TARGET_ROUNDS
            for _ in range(1 if quick else rounds):
                data = _python(
                    "-m", "trt._bench", str(index), "quick" if quick else "full"
                )
                runs.append(msgspec.json.decode(data, type=ScenarioResult))
                references.append(baselines(scenario, folder))
            result = sorted(runs, key=lambda run: run.duration_ms)[len(runs) // 2]
            result.baselines_ms = {
                name: statistics.median(found[name] for found in references)
                for name in references[0]
            }
            result.ratios = _ratios(result)
            results.append(result)
        print("trt bench: one-hundred-delays ...", file=sys.stderr, flush=True)
        headline = delays_headline(folder, rounds=1 if quick else TARGET_ROUNDS)
        headline.ratios = _ratios(headline)
        results.append(headline)
        shutil.rmtree(folder / "state", ignore_errors=True)
    report = BenchReport(
        command=command,
        quick=quick,
        started_at=started_at,
        seconds=round(time.perf_counter() - started, 1),
        python=platform.python_version(),
        trio=trio.__version__,
        msgspec=msgspec.__version__,
        platform=platform.platform(),
        cpu_count=os.cpu_count() or 1,
        scenarios=results,
        targets=check_targets(results),
    )
    write_reports(report, reports_dir)
    return report


def _child(argv: list[str]) -> None:
    index, size = int(argv[0]), argv[1]
    scenario = scenarios(size == "quick")[index]
    sys.stdout.buffer.write(msgspec.json.encode(run_scenario(scenario)))


if __name__ == "__main__":
    _child(sys.argv[1:])
