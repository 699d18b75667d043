"""Foundation benchmark: what trt costs on top of the work it runs.

Run from the repository root::

    python bench/foundation.py [--repeat N] [--quick]

Every figure is the wall time of a real subprocess (``time.perf_counter``
around ``subprocess.run``), repeated N times; the median is reported. Within
one repetition the contenders run interleaved (A, B, C, A, B, C, ...) so that
machine noise hits them all alike, and one untimed warm-up round goes first.

What is measured, and why:

1. Delays: ``tasks/one-hundred-delays.json`` (100 x ``sleep 0.1``) at
   concurrency 5, against the ideal 2.0 s and against a "bare Trio loop": a
   separate Python process that runs the same argvs with
   ``trio.run_process`` under a ``trio.CapacityLimiter``, and nothing else.
   This shows the scheduling overhead when the children do the waiting.
   Targets: trt <= 1.15x ideal and <= 1.03x the bare loop.
2. Spawn: 1000 tasks running ``true`` at concurrency 8, against
   ``xargs -P 8 -n 1 true`` (the floor for starting processes) and the bare
   Trio loop. This shows the cost per task when the children do nothing.
   Target: trt <= 1.5x xargs.
3. Start-up: ``trt --help`` against ``python -c pass`` on the same
   interpreter (target <= 3x), and ``trt validate`` of the 1000-task file
   against a Python process that imports msgspec and decodes that file
   (target <= 1.2x). Both commands must leave trio unimported, and
   ``--help`` msgspec too; that is checked in-process and reported.

The table goes to stdout; the raw samples, medians and checks are written as
JSON to ``reports/bench-foundation.json`` under the current folder.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DELAYS_FILE = REPO / "tasks" / "one-hundred-delays.json"
REPORT_PATH = Path("reports") / "bench-foundation.json"
PYTHON = sys.executable

DELAYS_CONCURRENCY = 5
# 100 tasks x 0.1 s each, 5 at a time: no scheduler can beat this.
IDEAL_DELAYS_S = 100 * 0.1 / DELAYS_CONCURRENCY
SPAWN_TASKS = 1000
SPAWN_CONCURRENCY = 8
# The start-up commands take tens of milliseconds, so they get more runs.
FAST_REPEAT_FACTOR = 4

# The reference scheduler: one nursery, one limiter, no bookkeeping at all.
# Output is captured, as trt also reads every child's pipes.
BARE_LOOP = """\
import json
import sys

import trio


async def main(path, limit):
    with open(path) as file:
        spec = json.load(file)
    argvs = [[task["command"], *task.get("args", [])] for task in spec["tasks"]]
    limiter = trio.CapacityLimiter(limit)

    async def one(argv):
        async with limiter:
            await trio.run_process(argv, capture_stdout=True, capture_stderr=True)

    async with trio.open_nursery() as nursery:
        for argv in argvs:
            nursery.start_soon(one, argv)


trio.run(main, sys.argv[1], int(sys.argv[2]))
"""

# What each lazily-importing command must not load.
FORBIDDEN_IMPORTS = {"trt --help": ("trio", "msgspec"), "trt validate": ("trio",)}

# Runs trt's own entry point with the given arguments, then reports on
# stderr which heavy modules that pulled in (trt writes its own output to
# file descriptor 1 directly, so stdout is sent to /dev/null by the caller).
IMPORT_PROBE = """\
import json
import sys

from trt._cli._main import main

code = main(sys.argv[1:])
loaded = {name: name in sys.modules for name in ("trio", "msgspec")}
print(json.dumps({"exit_code": code, **loaded}), file=sys.stderr)
"""


@dataclass
class Check:
    """One ratio held against its target (lower is better)."""

    name: str
    ratio: float
    target: float
    ok: bool = field(init=False)

    def __post_init__(self) -> None:
        self.ok = self.ratio <= self.target


@dataclass
class Workload:
    """The samples of one interleaved comparison, keyed by contender label."""

    title: str
    samples: dict[str, list[float]]
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def median(self, label: str) -> float:
        """Return the median wall time of ``label`` in seconds."""
        return statistics.median(self.samples[label])


def find_trt() -> str:
    """Return the ``trt`` script next to this interpreter, else the one on PATH."""
    beside = Path(sys.executable).parent / "trt"
    if beside.is_file():
        return str(beside)
    found = shutil.which("trt")
    if found is None:
        sys.exit("bench: cannot find the trt executable (is the project installed?)")
    return found


def time_command(argv: Sequence[str], stdin: bytes | None = None) -> float:
    """Run ``argv`` with its output discarded; return its wall time in seconds.

    Raises:
        RuntimeError: if the command exits non-zero, since a failed run's time
            means nothing.
    """
    start = time.perf_counter()
    completed = subprocess.run(
        argv,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if completed.returncode != 0:
        message = f"{' '.join(argv)} exited with code {completed.returncode}"
        raise RuntimeError(message)
    return elapsed


def measure(
    contenders: dict[str, tuple[list[str], bytes | None]], repeat: int
) -> dict[str, list[float]]:
    """Time each contender ``repeat`` times, interleaved, after one warm-up.

    Args:
        contenders: label -> (argv, bytes for stdin or None).
        repeat: timed rounds; each round runs every contender once, in order.

    Returns:
        label -> wall times in seconds, one per round.
    """
    samples: dict[str, list[float]] = {label: [] for label in contenders}
    for round_index in range(repeat + 1):
        for label, (argv, stdin) in contenders.items():
            elapsed = time_command(argv, stdin)
            if round_index > 0:
                samples[label].append(elapsed)
    return samples


def write_command_tasks(path: Path, count: int) -> None:
    """Write a task file of ``count`` independent command tasks running true."""
    tasks = [
        {"id": f"t{index:04d}", "type": "command", "command": "true"}
        for index in range(1, count + 1)
    ]
    path.write_text(json.dumps({"version": 1, "tasks": tasks}))


def probe_imports(args: Sequence[str]) -> dict[str, object]:
    """Run trt's main with ``args`` in a fresh process; report what it imported."""
    completed = subprocess.run(
        [PYTHON, "-c", IMPORT_PROBE, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=True,
    )
    result: dict[str, object] = json.loads(completed.stderr.splitlines()[-1])
    if result["exit_code"] != 0:
        message = f"trt {' '.join(args)} exited with code {result['exit_code']}"
        raise RuntimeError(message)
    return result


def bench_delays(trt: str, reports_dir: Path, repeat: int) -> Workload:
    """Workload 1: 100 sleeps of 0.1 s, five at a time."""
    limit = str(DELAYS_CONCURRENCY)
    samples = measure(
        {
            "bare Trio loop": (
                [PYTHON, "-c", BARE_LOOP, str(DELAYS_FILE), limit],
                None,
            ),
            "trt run": (
                [
                    trt,
                    "run",
                    str(DELAYS_FILE),
                    "--concurrency",
                    limit,
                    "--reports-dir",
                    str(reports_dir),
                ],
                None,
            ),
            # The same run with the progress view on (plain lines, since
            # stderr is not a terminal here): its cost should not show.
            "trt run --progress": (
                [
                    trt,
                    "run",
                    str(DELAYS_FILE),
                    "--concurrency",
                    limit,
                    "--progress",
                    "--reports-dir",
                    str(reports_dir),
                ],
                None,
            ),
        },
        repeat,
    )
    # The ideal is a constant; it goes first so the table reads top-down.
    samples = {"ideal (100 x 0.1 s / 5)": [IDEAL_DELAYS_S], **samples}
    workload = Workload("Delays: 100 x sleep 0.1, concurrency 5", samples)
    trt_s = workload.median("trt run")
    workload.checks = [
        Check("trt / ideal", trt_s / IDEAL_DELAYS_S, 1.15),
        Check("trt / bare Trio loop", trt_s / workload.median("bare Trio loop"), 1.03),
        Check(
            "--progress / plain trt run",
            workload.median("trt run --progress") / trt_s,
            1.01,
        ),
    ]
    return workload


def bench_spawn(trt: str, task_file: Path, reports_dir: Path, repeat: int) -> Workload:
    """Workload 2: 1000 processes that do nothing, eight at a time."""
    limit = str(SPAWN_CONCURRENCY)
    lines = "".join(f"{index}\n" for index in range(SPAWN_TASKS)).encode()
    samples = measure(
        {
            "xargs -P 8 -n 1 true": (["xargs", "-P", limit, "-n", "1", "true"], lines),
            "bare Trio loop": ([PYTHON, "-c", BARE_LOOP, str(task_file), limit], None),
            "trt run": (
                [
                    trt,
                    "run",
                    str(task_file),
                    "--concurrency",
                    limit,
                    "--reports-dir",
                    str(reports_dir),
                ],
                None,
            ),
        },
        repeat,
    )
    workload = Workload(f"Spawn: {SPAWN_TASKS} x true, concurrency 8", samples)
    trt_s = workload.median("trt run")
    workload.checks = [
        Check("trt / xargs", trt_s / workload.median("xargs -P 8 -n 1 true"), 1.5),
    ]
    bare_ratio = trt_s / workload.median("bare Trio loop")
    per_task_ms = trt_s / SPAWN_TASKS * 1000
    workload.notes = [
        f"trt / bare Trio loop: {bare_ratio:.2f}x (no target)",
        f"trt per task: {per_task_ms:.2f} ms",
    ]
    return workload


def bench_startup(trt: str, task_file: Path, repeat: int) -> Workload:
    """Workload 3: start-up of --help and validate, and what they import."""
    decode = "import msgspec, sys; msgspec.json.decode(open(sys.argv[1], 'rb').read())"
    samples = measure(
        {
            "python -c pass": ([PYTHON, "-c", "pass"], None),
            "trt --help": ([trt, "--help"], None),
            "python -c 'import msgspec'": ([PYTHON, "-c", "import msgspec"], None),
            "python: msgspec decode of file": (
                [PYTHON, "-c", decode, str(task_file)],
                None,
            ),
            "trt validate (1000 tasks)": ([trt, "validate", str(task_file)], None),
        },
        repeat,
    )
    workload = Workload("Start-up (trt --help, trt validate)", samples)
    workload.checks = [
        Check(
            "trt --help / python -c pass",
            workload.median("trt --help") / workload.median("python -c pass"),
            3.0,
        ),
        Check(
            "trt validate / msgspec decode",
            workload.median("trt validate (1000 tasks)")
            / workload.median("python: msgspec decode of file"),
            1.2,
        ),
    ]
    return workload


def check_imports(task_file: Path) -> dict[str, dict[str, object]]:
    """Report whether ``--help`` and ``validate`` pulled in trio or msgspec."""
    return {
        "trt --help": probe_imports(["--help"]),
        "trt validate": probe_imports(["validate", str(task_file)]),
    }


def import_violations(imports: dict[str, dict[str, object]]) -> list[str]:
    """List each forbidden module a command imported, as 'COMMAND imported X'."""
    return [
        f"{command} imported {name}"
        for command, names in FORBIDDEN_IMPORTS.items()
        for name in names
        if imports[command][name]
    ]


def format_table(
    workloads: list[Workload], imports: dict[str, dict[str, object]]
) -> str:
    """Lay out the medians, the ratios against their targets, and the probes."""
    width = 34
    lines = [f"{'wall time, ms':{width}}  {'median':>9}  {'min..max':>15}"]
    for workload in workloads:
        lines += ["", workload.title]
        for label, values in workload.samples.items():
            spread = f"{min(values) * 1000:.1f}..{max(values) * 1000:.1f}"
            median = f"{workload.median(label) * 1000:.1f}"
            lines.append(f"  {label:{width - 2}}  {median:>9}  {spread:>15}")
        for check in workload.checks:
            verdict = "ok" if check.ok else "MISSED"
            target = f"target <= {check.target:.2f}x"
            lines.append(
                f"  {check.name:{width - 2}}  {check.ratio:>8.2f}x  "
                f"{target:>15}  {verdict}"
            )
        lines += [f"  {note}" for note in workload.notes]
    lines += ["", "Imports (must stay lazy)"]
    for command, loaded in imports.items():
        found = (
            f"trio: {_yes_no(loaded['trio'])}, msgspec: {_yes_no(loaded['msgspec'])}"
        )
        bad = [name for name in FORBIDDEN_IMPORTS[command] if loaded[name]]
        verdict = f"MISSED (must not import {', '.join(bad)})" if bad else "ok"
        lines.append(f"  {command:{width - 2}}  {found}  {verdict}")
    return "\n".join(lines)


def _yes_no(flag: object) -> str:
    return "yes" if flag else "no"


def main(argv: Sequence[str] | None = None) -> int:
    """Run all workloads, print the table, write the JSON; 1 if a target missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeat", type=int, default=5, help="timed rounds per workload (default 5)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 2 rounds per workload"
    )
    options = parser.parse_args(argv)
    repeat = 2 if options.quick else options.repeat
    if repeat < 1:
        parser.error("--repeat must be at least 1")
    trt = find_trt()
    # Byte-compile trt first: where PYTHONDONTWRITEBYTECODE is set (as on
    # these machines) every start would otherwise recompile trt's modules,
    # a cost no installed copy pays.
    subprocess.run(
        [PYTHON, "-m", "compileall", "-q", str(REPO / "src")],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    print(
        f"trt foundation benchmark: {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, {repeat} rounds (start-up: "
        f"{repeat * FAST_REPEAT_FACTOR})",
        flush=True,
    )

    with tempfile.TemporaryDirectory(prefix="trt-bench-") as temp:
        temp_dir = Path(temp)
        task_file = temp_dir / "thousand-true.json"
        write_command_tasks(task_file, SPAWN_TASKS)
        reports_dir = temp_dir / "reports"
        workloads = [
            bench_delays(trt, reports_dir, repeat),
            bench_spawn(trt, task_file, reports_dir, repeat),
            bench_startup(trt, task_file, repeat * FAST_REPEAT_FACTOR),
        ]
        imports = check_imports(task_file)

    print(format_table(workloads, imports))
    failures = [c.name for w in workloads for c in w.checks if not c.ok]
    failures += import_violations(imports)

    report = {
        "meta": {
            "python": platform.python_version(),
            "executable": PYTHON,
            "trt": trt,
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "repeat": repeat,
            "startup_repeat": repeat * FAST_REPEAT_FACTOR,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
        "workloads": {
            workload.title: {
                "samples_s": workload.samples,
                "median_s": {
                    label: workload.median(label) for label in workload.samples
                },
                "checks": [asdict(check) for check in workload.checks],
                "notes": workload.notes,
            }
            for workload in workloads
        },
        "imports": imports,
        "failures": failures,
    }
    REPORT_PATH.parent.mkdir(parents=True, exist_ok=True)
    REPORT_PATH.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nraw numbers: {REPORT_PATH}")
    if failures:
        print(f"targets missed: {'; '.join(failures)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
