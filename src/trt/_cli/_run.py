"""``trt run``: load, lock the state, run under signal handling, report.

Signals, from the first line of run() to the process's exit::

    main() ─ SignalRecorder installed (trt._cli._signals): SIGINT, SIGTERM
    │        and SIGHUP are recorded, never raised, so no KeyboardInterrupt
    │        can land inside an import, the task-file decoder or half-way
    │        through writing a report
    ├─ trio.run ─ open_signal_receiver takes over; trt._shutdown decides:
    │             1st signal: graceful shutdown; 2nd: snapshot, kill, exit
    │             (a signal after every task finished changes nothing)
    └─ reports  ─ the recorder again: signals arriving now, or still pending
                  when the receiver closed, are noted as late and ignored
"""

from __future__ import annotations

import contextlib

from trt._cli import _exit_codes
from trt._cli._console import err, printable
from trt._cli._options import Options
from trt._cli._signals import SignalRecorder

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: see _main.py
if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

    from trt._events import Event
    from trt._model import TaskGraph
    from trt._results import RunOptions, RunResult
    from trt._runtime import Runtime
    from trt._state import RunState, StateStore


class _EventLog:
    """Writes each event as one JSON line to stderr or a file."""

    def __init__(self, fd: int, owned: bool) -> None:
        import msgspec

        self._fd = fd
        self._owned = owned
        self._encoder = msgspec.json.Encoder()
        self.failure: str | None = None
        # Called before each line: on stderr, a live progress line clears
        # itself first, as it does for task output.
        self.before_write: Callable[[], None] | None = None

    def __call__(self, event: Event) -> None:
        from trt._fdio import write_all

        if self.failure is not None:
            return
        if self.before_write is not None:
            self.before_write()
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


# What a run writes into the reports folder.
REPORT_NAMES = (
    "latest.json",
    "modes.json",
    "timeline.html",
    "trace.json",
    "shutdown.json",
)


def _refuse_overwrite(
    target: str | None, task_file: str, reports_dir: str, state_dir: str
) -> None:
    """Refuse an event log path that would overwrite trt's own files."""
    import os

    from trt._exceptions import UsageError

    if target is None or target == "-":
        return
    protected = [
        task_file,
        *(os.path.join(reports_dir, name) for name in REPORT_NAMES),
    ]
    mine = os.path.realpath(target)
    if os.path.dirname(mine) == os.path.realpath(state_dir):
        message = f"--log-events: {target!r} is in the state folder {state_dir!r}"
        raise UsageError(message)
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


def check_reports_dir(path: str, task_file: str | None = None) -> None:
    """Fail before anything runs if the reports cannot be written, or if
    one of them would overwrite the task file."""
    import os

    from trt._exceptions import UsageError

    # The file itself, not a link to it, is what a report would replace.
    real = os.path.realpath(task_file) if task_file is not None else ""
    if os.path.basename(real) in REPORT_NAMES:
        if os.path.dirname(real) == os.path.realpath(path):
            message = (
                f"--reports-dir: {path!r} holds the task file {task_file!r} "
                "under a name trt writes a report to; use another --reports-dir"
            )
            raise UsageError(message)

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
        read_only = os.statvfs(path).f_flag & os.ST_RDONLY
        reason = "read-only file system" if read_only else "permission denied"
        message = f"--reports-dir: cannot write to {path!r}: {reason}"
        raise UsageError(message)


def check_state_dir(path: str, task_file: str) -> None:
    """Refuse a state folder that is empty or would overwrite the task file."""
    import os

    from trt._exceptions import UsageError

    if not path:
        message = "--state-dir: expected a folder, got ''"
        raise UsageError(message)
    folder = os.path.realpath(path)
    real = os.path.realpath(task_file)
    name = os.path.basename(real)
    if os.path.dirname(real) == folder and (
        name in ("run.json", "lock") or name.endswith(".journal")
    ):
        message = (
            f"--state-dir: {path!r} holds the task file {task_file!r} under a "
            "name trt writes its state to; use another --state-dir"
        )
        raise UsageError(message)


class _Stop:
    """What the signal watcher saw, for run() to act on afterwards."""

    def __init__(self) -> None:
        self.signals: list[int] = []
        self.first_at = 0.0
        # Signals that came after every task had finished: they stop
        # nothing, and are only mentioned.
        self.late: list[int] = []
        # A signal before the run could start: nothing ran.
        self.before_start: int | None = None
        # Set by a second signal: the exit code, the moment, the statuses
        # and whether the snapshot was written.
        self.forced: int | None = None
        self.forced_at = ""
        self.statuses: dict[str, str] = {}
        self.state_saved = False


@contextlib.contextmanager
def _stop_signal_receiver(signums: tuple[int, ...]) -> Iterator[AsyncIterator[int]]:
    """Receive ``signums``; with none to watch, an iterator that never yields."""
    import trio

    if signums:
        with trio.open_signal_receiver(*signums) as signals:
            yield signals
        return
    send, receive = trio.open_memory_channel[int](0)
    with send, receive:
        yield receive


async def _run_with_signals(
    runtime: Runtime,
    progress: bool,
    shutdown_mode: str,
    stop: _Stop,
    recorder: SignalRecorder,
) -> RunResult | None:
    """Run under SIGINT/SIGTERM receivers; None when a second signal forced it.

    The receivers are installed before any task starts. What each signal
    does is decided by ``trt._shutdown.on_signal``: the first begins a
    graceful shutdown (nothing new starts; running attempts are drained or
    canceled, their process groups terminated), so the run still ends with
    a result, state and reports. A second one saves a snapshot at once,
    SIGKILLs every process group and abandons the run. Without the
    receivers, SIGTERM would kill trt and leave every child (each in a
    process group of its own) behind.
    """
    import functools
    import signal
    import time

    import trio

    from trt._shutdown import on_signal
    from trt._util import utc_now

    with (
        _stop_signal_receiver(recorder.watched) as signals,
        trio.CancelScope() as everything,
    ):
        async with trio.open_nursery() as nursery:

            async def watch_signals() -> None:
                # Keep reading after the first signal: a signal still
                # pending when the receiver closes is delivered again, and
                # one during cleanup would then kill trt with its children
                # half-terminated.
                async for signum in signals:
                    if runtime.finished:
                        # Every task ended; what is left is writing state.
                        stop.late.append(signum)
                        continue
                    first = stop.signals[0] if stop.signals else None
                    since = time.monotonic() - stop.first_at
                    action = on_signal(first, since, signum, shutdown_mode)
                    if action.kind == "ignore":
                        continue
                    if first is None:
                        stop.first_at = time.monotonic()
                    stop.signals.append(signum)
                    name = signal.Signals(signum).name
                    if action.kind == "shutdown":
                        assert action.mode is not None
                        runtime.shutdown(name, action.mode)
                        continue
                    stop.forced = action.exit_code
                    stop.forced_at = utc_now()
                    stop.statuses = runtime.task_statuses()
                    stop.state_saved = runtime.save_state("interrupted")
                    runtime.kill(f"second signal ({name}): forced exit")
                    everything.cancel()
                    return

            watcher = trio.CancelScope()

            async def watch() -> None:
                with watcher:
                    await watch_signals()

            if recorder.signals:
                # Came after the last check, before the receiver: nothing
                # has started, so nothing needs stopping.
                stop.before_start = recorder.signals[0]
                everything.cancel()
            nursery.start_soon(watch)
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
    if stop.forced is not None or stop.before_start is not None:
        return None
    return result


def _run_options(options: Options, previous: RunState | None) -> RunOptions:
    """Return the run's options: the flags, over the saved run's on resume.

    A resumed run goes on as the saved one was asked to run, except for
    ``--cancel-after``, a timer of that run rather than a setting of the
    work; flags given again on the command line win.
    """
    import msgspec

    from trt._results import RunOptions

    flags = RunOptions(
        concurrency=options.concurrency,
        mode=options.mode,
        timeout_ms=options.timeout,
        cancel_after_ms=options.cancel_after,
        kill_grace_ms=options.kill_grace,
    )
    if previous is None:
        return flags
    # RunOptions field -> the Options attribute its flag sets.
    dests = {
        "concurrency": "concurrency",
        "mode": "mode",
        "timeout_ms": "timeout",
        "cancel_after_ms": "cancel_after",
        "kill_grace_ms": "kill_grace",
    }
    chosen = {
        field: getattr(flags, field)
        for field, dest in dests.items()
        if dest in options.given
    }
    chosen.setdefault("cancel_after_ms", None)
    return msgspec.structs.replace(previous.options, **chosen)


def _load_previous(store: StateStore) -> RunState:
    """Load the run to resume, or explain why there is none."""
    from trt._exceptions import StateError

    try:
        return store.load()
    except StateError as exc:
        message = f"--resume: {exc}"
        raise StateError(message) from None


def _check_saved_run(state_dir: str) -> None:
    import os

    from trt._exceptions import StateError
    from trt._state import SNAPSHOT_NAME, no_saved_run

    path = os.path.join(state_dir, SNAPSHOT_NAME)
    if not os.path.lexists(path):
        message = f"--resume: {no_saved_run(path)}"
        raise StateError(message)


def run(options: Options, recorder: SignalRecorder | None = None) -> int:
    """Run a task file, write state and reports, print a summary on stderr.

    ``recorder``: the one main() installed, holding any signal so far.
    """
    if recorder is None:
        recorder = SignalRecorder().install()
    from trt._loader import load_task_file

    # Validate before importing trio: a bad file fails fast.
    assert options.file is not None  # the parser requires FILE for run
    graph = load_task_file(options.file)
    if options.resume:
        # Before any folder is made: a resume with nothing to resume must
        # leave no trace (an empty state folder, a reports folder).
        _check_saved_run(options.state_dir)
    check_reports_dir(options.reports_dir, options.file)
    check_state_dir(options.state_dir, options.file)
    _refuse_overwrite(
        options.log_events, options.file, options.reports_dir, options.state_dir
    )

    from trt._state import StateStore

    # The lock is held for the whole run: two runs in one state folder
    # would overwrite each other's state.
    with StateStore(options.state_dir) as store:
        previous = _load_previous(store) if options.resume else None
        code = _run_and_report(options, graph, store, previous, recorder)
    late = recorder.signals
    if late and code not in (128 + signum for signum in late):
        import signal

        name = signal.Signals(late[0]).name
        err(f"trt: {name} arrived after every task had ended; it stopped nothing\n")
    recorder.ignore()
    return code


def _stopped_before_start(signum: int) -> int:
    import signal

    name = signal.Signals(signum).name
    err(f"trt: stopped by {name} before any task started\n")
    return 128 + signum


def _run_and_report(
    options: Options,
    graph: TaskGraph,
    store: StateStore,
    previous: RunState | None,
    recorder: SignalRecorder,
) -> int:
    if recorder.signals:
        return _stopped_before_start(recorder.signals[0])
    import trio

    from trt._runtime import Runtime

    runtime = Runtime(
        graph, _run_options(options, previous), store=store, previous=previous
    )
    log = _open_event_log(options.log_events)
    if log is not None:
        runtime.events.on("*", log)
        if options.log_events == "-":
            log.before_write = runtime.output.clear_live_line
    stop = _Stop()
    try:
        result = trio.run(
            _run_with_signals,
            runtime,
            options.progress,
            options.shutdown,
            stop,
            recorder,
        )
    finally:
        if log is not None:
            log.close()
    # Signals the receiver still held when it closed were handed back to
    # the recorder; and a run that ended needs none of them.
    recorder.signals[:0] = stop.late
    if stop.before_start is not None:
        recorder.signals.remove(stop.before_start)
        return _stopped_before_start(stop.before_start)
    if result is None:
        return _forced_exit(options, runtime, stop)
    code, problems, report = _write_reports(options, result, runtime)
    if log is not None and log.failure is not None:
        problems.append(log.failure)
        code = _exit_codes.RUN_FAILED
    if stop.signals:
        shutdown = _write_shutdown(options, runtime, stop, result, code)
        if shutdown is not None:
            problems.append(shutdown)
            code = _exit_codes.RUN_FAILED
    else:
        # A shutdown.json left by an earlier run would describe this one.
        import os

        with contextlib.suppress(OSError):
            os.unlink(os.path.join(options.reports_dir, "shutdown.json"))
    if _ends_mid_line(runtime):
        # A task's last line had no newline: the summary starts its own.
        err("\n")
    _print_summary(result, report)
    for problem in problems:
        err(f"trt: error: {problem}\n")
    if stop.signals:
        err(_stopped_line(options, result, stop.signals[0]))
    return code


def _ends_mid_line(runtime: Runtime) -> bool:
    """Tell whether task output left the line trt's summary would join.

    That is stderr's, or stdout's when both go to the same terminal.
    """
    import os

    output = runtime.output
    if output.mid_line("stderr"):
        return True
    if not output.mid_line("stdout"):
        return False
    try:
        one, two = os.fstat(1), os.fstat(2)
    except OSError:
        return False
    return (one.st_dev, one.st_ino) == (two.st_dev, two.st_ino)


def _resume_command(options: Options) -> str:
    """The command that resumes this run, quoted for a POSIX shell."""
    import shlex

    path = options.file or ""
    if path.startswith("-"):
        path = "./" + path  # or the parser takes it for a flag
    words = ["trt", "run", path, "--resume"]
    if options.state_dir != "state":
        words += ["--state-dir", options.state_dir]
    return " ".join(shlex.quote(word) for word in words)


def _stopped_line(options: Options, result: RunResult, signum: int) -> str:
    """Say what a graceful shutdown did, and how to go on."""
    import signal

    name = signal.Signals(signum).name
    cut = sum(
        1
        for task in result.tasks
        if task.status == "canceled"
        and task.attempts
        and task.attempts[-1].status == "canceled"
    )
    if cut:
        how = f"{cut} running {'task was' if cut == 1 else 'tasks were'} terminated"
    elif options.shutdown == "drain":
        how = "running tasks were let finish"
    else:
        how = "no task was running"
    line = f"trt: stopped by {name} (--shutdown {options.shutdown}): {how}"
    if not result.ok:
        line += f"; resume with: {printable(_resume_command(options))}"
    return line + "\n"


def _write_reports(
    options: Options, result: RunResult, runtime: Runtime
) -> tuple[int, list[str], str]:
    """Write latest.json, the timeline and modes.json; return code, problems."""
    from trt._report import update_modes, write_report
    from trt._timeline import write_timeline

    # Every problem that changes the exit code is known before modes.json
    # records that code.
    code = _exit_codes.SUCCESS if result.ok else _exit_codes.RUN_FAILED
    problems: list[str] = []
    if runtime.output.failure is not None:
        problems.append(runtime.output.failure)
    if runtime.state_failure is not None:
        problems.append(runtime.state_failure)
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
    return code, problems, report


def _write_shutdown(
    options: Options,
    runtime: Runtime,
    stop: _Stop,
    result: RunResult | None,
    code: int,
) -> str | None:
    """Write reports/shutdown.json; return a problem, or None if written."""
    import os
    from pathlib import Path

    from trt._report import encode_json
    from trt._shutdown import shutdown_report
    from trt._util import write_atomic

    info = runtime.shutdown_info
    started_at = info.started_at if info is not None else stop.forced_at
    report = shutdown_report(
        signals=tuple(stop.signals),
        mode=options.shutdown,
        run_id=runtime.run_id,
        run_status="interrupted" if result is None else result.status,
        exit_code=code,
        started_at=started_at,
        ended_at=stop.forced_at if result is None else result.ended_at,
        statuses=stop.statuses if result is None else runtime.task_statuses(),
        state_saved=stop.state_saved if result is None else runtime.state_saved,
        state_path=os.path.join(options.state_dir, "run.json"),
    )
    try:
        write_atomic(Path(options.reports_dir, "shutdown.json"), encode_json(report))
    except OSError as exc:
        return f"cannot write shutdown.json: {exc.strerror or exc}"
    return None


def _forced_exit(options: Options, runtime: Runtime, stop: _Stop) -> int:
    """Finish a run a second signal cut short: shutdown.json, one line."""
    import os
    import signal

    assert stop.forced is not None
    problem = _write_shutdown(options, runtime, stop, None, stop.forced)
    name = signal.Signals(stop.signals[-1]).name
    saved = (
        f"state saved to {os.path.join(options.state_dir, 'run.json')}"
        if stop.state_saved
        else "state NOT saved"
    )
    err(
        f"trt: second signal ({name}): stopped at once, every process group "
        f"killed; {saved}; resume with: {printable(_resume_command(options))}\n"
    )
    if problem is not None:
        err(f"trt: error: {problem}\n")
    return stop.forced


def _print_summary(result: RunResult, report: str) -> None:
    """Print the run's outcome on stderr: one line, then what went wrong."""
    from trt._util import plural

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
        f"trt: {result.status}: {plural(metrics.task_count, 'task')}, "
        f"{', '.join(counts)} in {seconds:.2f} s; report: {report}\n"
    )
    if result.resumed_from is not None:
        carried = len(result.carried_over_task_ids)
        ran = sum(
            1 for task in result.tasks if not task.carried_over and task.started_at
        )
        err(f"  resumed run {result.resumed_from}: {carried} carried over, {ran} ran\n")
    if result.stop_reason is not None:
        # "stopped early" only when the settlement did stop something.
        how = "stopped early" if result.canceled_at is not None else "settled"
        err(f"  {how}: {result.stop_reason}\n")
    if result.error is not None:
        err(f"  {result.error.message}\n")
    # Also when the run succeeded: a mode any or race run that settled on
    # a success may still have failures worth seeing.
    for task in result.tasks:
        if task.status not in ("success", "canceled") and task.error is not None:
            err(f"  {task.id}: {task.status}: {printable(task.error.message)}\n")
