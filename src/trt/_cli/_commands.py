"""What each subcommand does, on top of the Python API."""

from __future__ import annotations

from trt._cli import _exit_codes
from trt._cli._console import err, out, printable
from trt._cli._options import Options

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: see _main.py
if TYPE_CHECKING:
    from trt._events import Event
    from trt._results import RunResult
    from trt._runtime import Runtime


def dispatch(command: str, options: Options) -> int:
    """Run ``command`` with its parsed ``options``; return the exit code."""
    if command == "validate":
        return validate(options)
    if command == "schema":
        return schema()
    return run(options)


def validate(options: Options) -> int:
    """Load the file; print its task count and ids, or raise its problems."""
    from trt._loader import check_task_file

    assert options.file is not None  # the parser requires FILE for validate
    ids = check_task_file(options.file)
    noun = "task" if len(ids) == 1 else "tasks"
    lines = [f"{options.file}: valid, {len(ids)} {noun}", *ids]
    out("\n".join(lines) + "\n")
    return _exit_codes.SUCCESS


def schema() -> int:
    """Print the task file's JSON Schema."""
    import msgspec

    from trt._spec import json_schema

    data = msgspec.json.format(msgspec.json.encode(json_schema()), indent=2)
    out(data.decode() + "\n")
    return _exit_codes.SUCCESS


class _EventLog:
    """Writes each event as one JSON line to stderr or a file."""

    def __init__(self, fd: int, owned: bool) -> None:
        import msgspec

        self._fd = fd
        self._owned = owned
        self._encoder = msgspec.json.Encoder()
        self.failure: str | None = None

    def __call__(self, event: Event) -> None:
        from trt._fdio import write_all

        if self.failure is not None:
            return
        try:
            write_all(self._fd, self._encoder.encode(event) + b"\n")
        except OSError as exc:
            # Once: a full disk must not turn every later event into a
            # fault report. The run goes on; trt exits 1 and says why.
            self.failure = f"--log-events: writing failed: {exc.strerror or exc}"

    def close(self) -> None:
        if self._owned:
            import os

            os.close(self._fd)


def _refuse_overwrite(target: str | None, task_file: str, reports_dir: str) -> None:
    """Refuse an event log path that would overwrite trt's own files."""
    import os

    from trt._exceptions import UsageError

    if target is None or target == "-":
        return
    reports = ("latest.json", "modes.json", "timeline.html", "trace.json")
    protected = [task_file, *(os.path.join(reports_dir, name) for name in reports)]
    mine = os.path.realpath(target)
    for path in protected:
        if os.path.realpath(path) == mine:
            message = (
                f"--log-events: {target!r} is {path}, which trt itself writes or reads"
            )
            raise UsageError(message)


def _open_event_log(target: str | None) -> _EventLog | None:
    """Open where --log-events writes; "-" (the bare flag) is stderr."""
    if target is None:
        return None
    if target == "-":
        return _EventLog(2, owned=False)
    import os

    from trt._exceptions import UsageError

    try:
        fd = os.open(
            target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666
        )
    except OSError as exc:
        message = f"--log-events: cannot write to {target!r}: {exc.strerror}"
        raise UsageError(message) from None
    return _EventLog(fd, owned=True)


def _check_reports_dir(path: str) -> None:
    """Fail before anything runs if the reports cannot be written."""
    import os

    from trt._exceptions import UsageError

    if os.path.exists(path) and not os.path.isdir(path):
        message = f"--reports-dir: {path!r} exists and is not a folder"
        raise UsageError(message)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        message = f"--reports-dir: cannot create {path!r}: {reason}"
        raise UsageError(message) from None
    if not os.access(path, os.W_OK | os.X_OK):
        message = f"--reports-dir: cannot write to {path!r}: permission denied"
        raise UsageError(message)


async def _run_with_signals(
    runtime: Runtime, progress: bool, stopped_by: list[int]
) -> RunResult:
    """Run; on SIGINT or SIGTERM cancel the run cleanly and finish it.

    The first signal cancels the run through the runtime: nothing new
    starts, queued tasks end canceled, and running attempts terminate their
    process groups (SIGTERM, then SIGKILL after the kill grace), so the run
    still ends with a result, events and reports. The signals received are
    appended to ``stopped_by``. Without this, SIGTERM would kill trt at once
    and leave every child (each in a process group of its own) behind.
    """
    import functools
    import signal

    import trio

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def stop_on_signal() -> None:
                # Keep reading after the first signal: a signal still
                # pending when the receiver closes is delivered again, and
                # a second one during cleanup would then kill trt with its
                # children half-terminated. Cleanup is bounded by the kill
                # grace anyway.
                async for signum in signals:
                    stopped_by.append(signum)
                    runtime.cancel(f"{signal.Signals(signum).name} received")

            watcher = trio.CancelScope()

            async def watch_signals() -> None:
                with watcher:
                    await stop_on_signal()

            nursery.start_soon(watch_signals)
            if progress:
                import os

                from trt._cli._progress_view import show_progress
                from trt._progress import progress_events

                # The iterator exists before the run starts, so no record
                # is missed; it ends by itself when the run ends.
                records = progress_events(runtime)
                total = len(runtime.graph)
                live = os.isatty(2)
                nursery.start_soon(
                    functools.partial(
                        show_progress, records, total, live=live, sink=runtime.output
                    )
                )
            result = await runtime.run()
            # Stop watching for signals, but let the progress view finish
            # the records it has not shown yet.
            watcher.cancel()
    return result


def run(options: Options) -> int:
    """Run a task file, write the report, print a summary on stderr."""
    from trt._loader import load_task_file

    # Validate before importing trio: a bad file fails fast.
    assert options.file is not None  # the parser requires FILE for run
    graph = load_task_file(options.file)
    _check_reports_dir(options.reports_dir)

    import trio

    from trt._report import update_modes, write_report
    from trt._results import RunOptions
    from trt._runtime import Runtime
    from trt._timeline import write_timeline

    run_options = RunOptions(
        concurrency=options.concurrency,
        mode=options.mode,
        timeout_ms=options.timeout,
        cancel_after_ms=options.cancel_after,
        kill_grace_ms=options.kill_grace,
    )
    runtime = Runtime(graph, run_options)
    _refuse_overwrite(options.log_events, options.file, options.reports_dir)
    log = _open_event_log(options.log_events)
    if log is not None:
        runtime.events.on("*", log)
    stopped_by: list[int] = []
    try:
        result = trio.run(_run_with_signals, runtime, options.progress, stopped_by)
    finally:
        if log is not None:
            log.close()
    # Every problem that changes the exit code is known before modes.json
    # records that code.
    code = _exit_codes.SUCCESS if result.ok else _exit_codes.RUN_FAILED
    problems: list[str] = []
    if runtime.output.failure is not None:
        problems.append(runtime.output.failure)
    try:
        report: str = str(write_report(result, options.reports_dir))
        write_timeline(result, options.reports_dir)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        report = f"not written ({reason})"
        problems.append(f"cannot write the report to {options.reports_dir!r}: {reason}")
    if problems:
        code = _exit_codes.RUN_FAILED
    try:
        warning = update_modes(result, code, options.reports_dir)
    except OSError as exc:
        problems.append(f"cannot update modes.json: {exc.strerror or exc}")
        code = _exit_codes.RUN_FAILED
    else:
        if warning is not None:
            err(f"trt: warning: {warning}\n")

    if log is not None and log.failure is not None:
        problems.append(log.failure)
        code = _exit_codes.RUN_FAILED
    _print_summary(result, report)
    for problem in problems:
        err(f"trt: error: {problem}\n")
    if stopped_by:
        import signal

        name = signal.Signals(stopped_by[0]).name
        err(f"trt: stopped by {name}; running tasks were terminated\n")
        interrupted = stopped_by[0] == signal.SIGINT
        return _exit_codes.INTERRUPTED if interrupted else _exit_codes.TERMINATED
    return code


def _print_summary(result: RunResult, report: str) -> None:
    """Print the run's outcome on stderr: one line, then what went wrong."""
    metrics = result.metrics
    counts = [f"{metrics.completed_count} succeeded"]
    for label, count in (
        ("failed", metrics.failed_count),
        ("timed out", metrics.timed_out_count),
        ("canceled", metrics.canceled_count),
        ("blocked", metrics.blocked_count),
    ):
        if count:
            counts.append(f"{count} {label}")
    seconds = metrics.duration_ms / 1000
    err(
        f"trt: {result.status}: {metrics.task_count} tasks, "
        f"{', '.join(counts)} in {seconds:.2f} s; report: {report}\n"
    )
    if result.stop_reason is not None:
        # "stopped early" only when the settlement did stop something.
        how = "stopped early" if result.canceled_at is not None else "settled"
        err(f"  {how}: {result.stop_reason}\n")
    if result.error is not None:
        err(f"  {result.error.message}\n")
    if not result.ok:
        for task in result.tasks:
            if task.status not in ("success", "canceled") and task.error is not None:
                err(f"  {task.id}: {task.status}: {printable(task.error.message)}\n")
