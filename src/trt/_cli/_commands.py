"""What each subcommand does, on top of the Python API."""

from __future__ import annotations

from trt._cli import _exit_codes
from trt._cli._console import out
from trt._cli._options import Options

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: see _main.py
if TYPE_CHECKING:
    from trt._cli._signals import SignalRecorder


def dispatch(
    command: str, options: Options, recorder: SignalRecorder | None = None
) -> int:
    """Run ``command`` with its parsed ``options``; return the exit code.

    ``recorder`` holds the stop signals since trt started: ``run`` keeps
    it; every other command gives them back now that its imports are done.
    """
    runs = command == "run" and not options.status
    if not runs and recorder is not None:
        # What every other command uses, imported while signals are held.
        import msgspec  # noqa: F401

        recorder.release()
    if command == "validate":
        return validate(options)
    if command == "schema":
        return schema()
    if command == "bench":
        return bench(options)
    if command == "status" or options.status:
        from trt._cli._status import status

        return status(options)
    from trt._cli._run import run

    return run(options, recorder)


def validate(options: Options) -> int:
    """Load the file; print its task count and ids, or raise its problems."""
    from trt._loader import check_task_file

    assert options.file is not None  # the parser requires FILE for validate
    ids = check_task_file(options.file)
    noun = "task" if len(ids) == 1 else "tasks"
    lines = [f"{options.file}: valid, {len(ids)} {noun}", *ids]
    out("\n".join(lines) + "\n")
    return _exit_codes.SUCCESS


def bench(options: Options) -> int:
    """Run the benchmark; print the targets; exit 0 (figures are data)."""
    import sys
    from pathlib import Path

    from trt._bench import run_bench
    from trt._bench_report import QUICK_CAVEAT, measured
    from trt._cli._run import check_reports_dir

    check_reports_dir(options.reports_dir)
    command = "trt " + " ".join(sys.argv[1:]) if sys.argv[1:] else "trt bench"
    report = run_bench(options.quick, Path(options.reports_dir), command)
    lines = [f"trt bench: {len(report.scenarios)} scenarios in {report.seconds:.0f} s"]
    if report.quick:
        lines.append(f"  {QUICK_CAVEAT}")
    for target in report.targets:
        if report.quick:
            verdict = "under" if target.met else "over"
        else:
            verdict = "met" if target.met else "MISSED"
        lines.append(
            f"  {verdict:6} {target.name}: {measured(target)} "
            f"(target <= {target.limit:g})"
        )
    folder = options.reports_dir
    lines.append(
        f"  reports: {folder}/bench.json, {folder}/task-runtime.md, "
        f"{folder}/task-runtime.svg"
    )
    out("\n".join(lines) + "\n")
    return _exit_codes.SUCCESS


def schema() -> int:
    """Print the task file's JSON Schema."""
    import msgspec

    from trt._spec import json_schema

    data = msgspec.json.format(msgspec.json.encode(json_schema()), indent=2)
    out(data.decode() + "\n")
    return _exit_codes.SUCCESS
