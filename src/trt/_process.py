"""Run a command task as a child process in a process group of its own.

Data flow for one attempt::

    loop thread                    spawner thread (trt._spawn)
    pipes + epoll, spawn() ------> posix_spawn(argv, pgroup=0)
       <------------------------- pid (or errno)
    pump: epoll ──stdout pipe──> OutputSink
               └─stderr pipe──> OutputSink
    after both pipes close: leader exited? (waitid WNOWAIT, else a pidfd
    wait; it stays a zombie)

The attempt ends when the leader has exited *and* both pipes reached EOF, so
no output is lost. Only then is the group swept with SIGKILL (anything left
in it is a stray this task started) and the leader reaped: keeping the
leader a zombie until after the sweep pins the group id, so the sweep can
never hit an unrelated process that reused the pid.

Cancellation (a timeout or the run being stopped) sends SIGTERM to the whole
group, then SIGKILL after the grace period, and waits until the leader is
really gone before the cancellation propagates. A cancellation that arrives
while the spawn is in flight waits for it: the child, once it exists, is
always in the hands of the code that ends its group.
"""

from __future__ import annotations

import fcntl
import os
import select
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

import trio

from trt._results import TaskError
from trt._spawn import HAVE_THREADED_SPAWN, spawn
from trt._util import utc_now

if TYPE_CHECKING:
    from trt._executor import AttemptContext, AttemptProbe
    from trt._model import CommandTask
    from trt._output import StreamWriter
    from trt._results import AttemptResult

# Large reads keep the number of loop iterations low for chatty children;
# the pipe buffer itself is 64 KiB on Linux.
READ_SIZE = 65536

HAVE_PIDFD = sys.platform == "linux" and hasattr(os, "pidfd_open")


# KI protection: Ctrl-C must not interrupt the few lines between the spawn
# and the try block that owns the child, or the new process group would
# escape cleanup. trio delivers the KeyboardInterrupt at the next
# checkpoint instead, where the handler below terminates the group.
@trio.lowlevel.enable_ki_protection
async def run_command(task: CommandTask, context: AttemptContext) -> AttemptResult:
    """Run one attempt of a command task and return its result.

    Args:
        task: the command to start; ``argv[0]`` is looked up on PATH.
        context: the attempt's output sink, kill grace and probe.

    Returns:
        ``success`` on exit code 0, else ``failed`` with ``non_zero_exit``
        or, when the program could not be started (or trt is out of file
        descriptors for its pipes), ``spawn_error``.
    """
    probe = context.probe

    # Pipes are made here rather than by the spawn call so that the read
    # ends can be handed straight to the pump, which owns them from then
    # on. Its epoll is made here too: running out of descriptors for any
    # of them is the same spawn_error.
    poller: select.epoll | None = None
    opened: list[int] = []
    try:
        poller = select.epoll(2)
        out_read, out_write = os.pipe()
        opened += (out_read, out_write)
        err_read, err_write = os.pipe()
        opened += (err_read, err_write)
        process = await _spawn(task, context.attempt, out_write, err_write)
    except (OSError, ValueError) as exc:
        for fd in opened:
            os.close(fd)
        if poller is not None:
            poller.close()
        return context.finish(task, _spawn_error(task, exc))
    os.close(out_write)
    os.close(err_write)
    probe.pid = process.pid

    try:
        streams = {
            out_read: ("stdout", context.output.stream(task.id, "stdout")),
            err_read: ("stderr", context.output.stream(task.id, "stderr")),
        }
        await _pump(poller, streams, probe)
        # Both pipes are closed; usually because the leader exited, so a
        # non-blocking check spares the pidfd and its epoll registration.
        # A leader that closed its output but lives on is waited for.
        if not _has_exited(process.pid):
            await _wait_exited(process.pid)
    except BaseException:
        # Cancelled (timeout or run stop) or a bug: either way the group
        # must be gone before we let go of it.
        with trio.CancelScope(shield=True):
            await _terminate_group(process, probe, context.kill_grace)
        raise
    _sweep_group(process.pid)
    _reap(process, probe)

    if process.returncode == 0:
        return context.finish(task, None)
    if probe.signal is not None:
        message = f"{task.argv[0]} was killed by {probe.signal}"
    else:
        message = f"{task.argv[0]} exited with code {probe.exit_code}"
    return context.finish(task, TaskError(kind="non_zero_exit", message=message))


class _Child:
    """A started child: its pid, and the Popen object when one was used."""

    __slots__ = ("pid", "popen", "returncode")

    def __init__(self, pid: int, popen: subprocess.Popen[bytes] | None = None):
        self.pid = pid
        self.popen = popen
        self.returncode: int | None = None


_devnull: int | None = None
_RESTORED_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)


@trio.lowlevel.enable_ki_protection
async def _spawn(task: CommandTask, attempt: int, stdout: int, stderr: int) -> _Child:
    """Start the task's process group leader; raise OSError if it can't.

    The common case goes through posix_spawn, which skips about 100 us of
    Popen's Python-level set-up per spawn, and runs it in a helper thread
    (see trt._spawn) so the loop keeps working while the child execs. A
    working folder, or a PATH of the task's own, needs Popen (posix_spawn
    cannot chdir before Python 3.13, and posix_spawnp searches trt's PATH,
    not the child's); Popen runs on the loop thread, since a thread hop
    for it costs more in GIL hand-offs than it saves.
    """
    global _devnull
    if task.cwd is not None or "PATH" in task.env:
        return _popen(task, attempt, stdout, stderr)

    if _devnull is None:
        _devnull = os.open(os.devnull, os.O_RDONLY)
    env = _spawn_env(task.env, task.id, attempt)
    # Limitation: unlike Popen(close_fds=True), posix_spawn does not close
    # descriptors that trt itself inherited as inheritable from its parent,
    # so such a descriptor also reaches the task. trt's own descriptors are
    # all close-on-exec, as Python makes them.
    program = _resolve(task.argv[0])
    if HAVE_THREADED_SPAWN:
        argv = [os.fsencode(arg) for arg in task.argv]
        envp = [name + b"=" + value for name, value in env.items()]
        # ctypes would silently cut a string at a NUL byte; trt's own
        # environment cannot hold one, so only the task's part is checked.
        _check_strings(argv, task.env, task.id)
        pid = await spawn(
            os.fsencode(program or task.argv[0]),
            argv,
            envp,
            (_devnull, stdout, stderr),
            search=program is None,
        )
        return _Child(pid)

    spawn_on_loop = os.posix_spawn if program is not None else os.posix_spawnp
    pid = spawn_on_loop(
        program or task.argv[0],
        task.argv,
        env,
        file_actions=[
            (os.POSIX_SPAWN_DUP2, _devnull, 0),
            (os.POSIX_SPAWN_DUP2, stdout, 1),
            (os.POSIX_SPAWN_DUP2, stderr, 2),
        ],
        setpgroup=0,
        # Python ignores SIGPIPE (and SIGXFSZ), and an ignored signal
        # stays ignored across exec: restore the defaults, as Popen's
        # restore_signals does, or `yes | head` in a task would spin.
        setsigdef=_RESTORED_SIGNALS,
        setsigmask=(),
    )
    return _Child(pid)


def _popen(task: CommandTask, attempt: int, stdout: int, stderr: int) -> _Child:
    popen = subprocess.Popen(
        task.argv,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        cwd=task.cwd,
        env={
            **os.environ,
            **task.env,
            **_attempt_env(task.id, attempt),
        },
        process_group=0,
    )
    return _Child(popen.pid, popen)


def _check_strings(argv: list[bytes], env: Mapping[str, str], task_id: str) -> None:
    """Raise the ValueError os.posix_spawn would for what C cannot carry."""
    for name, value in env.items():
        if not name or "=" in name:
            message = "illegal environment variable name"
            raise ValueError(message)
        if "\0" in name or "\0" in value:
            message = "embedded null byte"
            raise ValueError(message)
    if "\0" in task_id or any(b"\0" in arg for arg in argv):
        message = "embedded null byte"
        raise ValueError(message)


def _resolve(program: str) -> str | None:
    """Return the file posix_spawn should run for ``program``, if known.

    The vfork'd child searches PATH while trt's event loop waits for it,
    trying each folder in turn. So the search happens here instead, once
    per program and PATH, and the result is kept while the file is still
    executable. None leaves the search (and its error) to posix_spawnp.
    """
    if "/" in program:
        return program
    path = os.environ.get("PATH", os.defpath)
    key = (program, path)
    found = _resolved.get(key)
    if found is None or not os.access(found, os.X_OK):
        found = shutil.which(program, path=path)
        if found is None:
            return None
        _resolved[key] = found
    return found


# Program name and PATH -> absolute path, filled by _resolve.
_resolved: dict[tuple[str, str], str] = {}


def _attempt_env(task_id: str, attempt: int) -> dict[str, str]:
    """Return what every command learns about its attempt."""
    return {"TRT_TASK_ID": task_id, "TRT_ATTEMPT": str(attempt)}


def _spawn_env(
    extra: Mapping[str, str], task_id: str, attempt: int
) -> Mapping[bytes, bytes]:
    """Return the child's environment as bytes, cheaply.

    Besides trt's environment and the task's ``env``, every command sees
    TRT_TASK_ID and TRT_ATTEMPT (1 for the first attempt), so a script can
    tell a retry from a first try.

    posix_spawn would otherwise walk os.environ through its str-decoding
    mapping interface on every spawn, about 0.1 ms per task with a typical
    environment. os.environ keeps its bytes in ``_data``, always current
    (os.environ writes go through it); when that detail is missing, fall
    back to encoding a copy.
    """
    data: Mapping[bytes, bytes] | None = getattr(os.environ, "_data", None)
    if data is None:  # pragma: no cover - not CPython on POSIX
        data = {os.fsencode(k): os.fsencode(v) for k, v in os.environ.items()}
    merged = dict(data)
    for name, value in extra.items():
        merged[os.fsencode(name)] = os.fsencode(value)
    for name, value in _attempt_env(task_id, attempt).items():
        merged[name.encode()] = value.encode()
    return merged


def _spawn_error(task: CommandTask, exc: OSError | ValueError) -> TaskError:
    if not isinstance(exc, OSError):
        return TaskError(kind="spawn_error", message=f"cannot start: {exc}")
    reason = exc.strerror or str(exc)
    if task.cwd is not None and isinstance(exc, FileNotFoundError | NotADirectoryError):
        if exc.filename == task.cwd:
            return TaskError(
                kind="spawn_error",
                message=f"cannot enter working folder {task.cwd!r}: {reason}",
            )
    return TaskError(
        kind="spawn_error",
        message=f"cannot start {task.argv[0]!r}: {reason}",
    )


async def _pump(
    poller: select.epoll,
    streams: dict[int, tuple[str, StreamWriter]],
    probe: AttemptProbe,
) -> None:
    """Copy both pipes to the sink until EOF, counting bytes; close them.

    One task watches both pipes through an epoll of its own, whose
    descriptor trio waits on. Measured against a task per pipe with
    trio.lowlevel.FdStream, this saves about a fifth of trt's CPU per
    short task: a second task, its nursery, a second registration with
    trio's epoll, and the EAGAIN read FdStream tries first. The epoll is
    level-triggered, so a chatty pipe gets read again after each trip
    through the scheduler, and other tasks run in between.
    """
    try:
        for fd in streams:
            # A new pipe has no status flags set, so F_SETFL needs no
            # F_GETFL; non-blocking guards the loop against a read that
            # should not, but could, block.
            fcntl.fcntl(fd, fcntl.F_SETFL, os.O_NONBLOCK)
            poller.register(fd, select.EPOLLIN)
        while streams:
            await trio.lowlevel.wait_readable(poller.fileno())
            for fd, _ in poller.poll(0):
                try:
                    chunk = os.read(fd, READ_SIZE)
                except BlockingIOError:
                    continue
                name, writer = streams[fd]
                if not chunk:
                    # Unregistered explicitly: a Popen fork elsewhere may
                    # briefly hold a copy of the pipe, which would keep
                    # it in the epoll, at EOF, after the close.
                    poller.unregister(fd)
                    del streams[fd]
                    os.close(fd)
                    writer.close()
                    continue
                if name == "stdout":
                    probe.stdout_bytes += len(chunk)
                else:
                    probe.stderr_bytes += len(chunk)
                writer.feed(chunk)
    finally:
        # Also on cancellation: a timed-out task's last partial line is
        # often the most telling one.
        for fd, (_, writer) in streams.items():
            os.close(fd)
            writer.close()
        # wait_readable registered the epoll with trio's I/O manager,
        # which must forget it before the number can be reused.
        trio.lowlevel.notify_closing(poller.fileno())
        poller.close()


async def _wait_exited(pid: int) -> None:
    """Wait until the process has exited, without reaping it."""
    pidfd = -1
    if HAVE_PIDFD:
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            # Out of descriptors (EMFILE): fall back to a waiting thread.
            pidfd = -1
    if pidfd >= 0:
        try:
            await trio.lowlevel.wait_readable(pidfd)
        finally:
            # wait_readable registered the fd with trio's I/O manager,
            # which must forget it before the number can be reused.
            trio.lowlevel.notify_closing(pidfd)
            os.close(pidfd)
    else:
        flags = os.WEXITED | os.WNOWAIT
        await trio.to_thread.run_sync(
            os.waitid, os.P_PID, pid, flags, abandon_on_cancel=True
        )


def _sweep_group(pgid: int) -> None:
    """SIGKILL whatever is left in the group; ESRCH means nothing was."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _reap(process: _Child, probe: AttemptProbe) -> None:
    _, status = os.waitpid(process.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    process.returncode = code
    if process.popen is not None:
        # Tell Popen the child is reaped, or it warns about a running
        # process when it is garbage collected.
        process.popen.returncode = code
    if code < 0:
        probe.signal = signal_name(-code)
    else:
        probe.exit_code = code


async def _terminate_group(process: _Child, probe: AttemptProbe, grace: float) -> None:
    """SIGTERM the group, SIGKILL it after ``grace`` seconds, then reap.

    A leader that already exited (its pipes held open by a grandchild)
    needs no SIGTERM: the sweep below ends the rest of its group.
    """
    if _has_exited(process.pid):
        # Only the sweep below is needed, for whatever still holds the
        # pipes; record it so the report shows trt ended something.
        probe.terminated_with = "SIGKILL"
        probe.terminated_at = utc_now()
    else:
        probe.terminated_with = "SIGTERM"
        probe.terminated_at = utc_now()
        _signal_group(process.pid, signal.SIGTERM)
        with trio.move_on_after(grace) as scope:
            await _wait_exited(process.pid)
        if scope.cancelled_caught:
            probe.terminated_with = "SIGKILL"
            probe.terminated_at = utc_now()
            _signal_group(process.pid, signal.SIGKILL)
            await _wait_exited(process.pid)
    _sweep_group(process.pid)
    _reap(process, probe)


def signal_name(number: int) -> str:
    """Name a signal, including real-time ones Python has no name for."""
    try:
        return signal.Signals(number).name
    except ValueError:
        low, high = signal.SIGRTMIN, signal.SIGRTMAX
        if low < number < high:
            return f"SIGRTMIN+{number - low}"
        return f"signal {number}"


def _has_exited(pid: int) -> bool:
    """Tell whether ``pid`` exited, leaving it unreaped."""
    flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
    return os.waitid(os.P_PID, pid, flags) is not None


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass
