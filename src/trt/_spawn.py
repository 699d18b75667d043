"""Start children with libc's posix_spawn from helper threads, off the loop.

CPython's os.posix_spawn keeps the GIL for the whole call, and with vfork
semantics the caller waits there until the child has exec'd: about half a
millisecond per spawn during which trio's loop can do nothing. libc's own
posix_spawn, called through ctypes.CDLL, releases the GIL instead. Data flow
for one spawn::

    event loop                            spawner thread (SPAWN_THREADS)
    ----------                            ------------------------------
    build argv, envp, file actions
    _jobs.put(job) ---------------------> job = _jobs.get()
    wait_task_rescheduled (no abort)      posix_spawn(...)   (GIL released)
    <---- token.run_sync_soon(reschedule) job.result = errno or 0
    destroy file actions, return pid

Everything but the spawn itself happens on the loop thread, so a helper
needs the GIL only to pick up a job and to hand back its result: on a
busy machine each GIL hand-off is a context switch, and the loop pays for
it. The setup calls go through ctypes.PyDLL, which keeps the GIL, for the
same reason. trio.to_thread.run_sync would do the hand-off too, but its
per-call bookkeeping made trt use some 60 % more CPU on 1000 short tasks
than this queue of persistent threads.

The wait cannot be aborted: once a job is queued, its child may exist at any
moment, and only the waiting task knows to end it. A cancellation (or a
KeyboardInterrupt) that arrives meanwhile is delivered at the caller's next
checkpoint, after it has taken ownership of the pid.
"""

from __future__ import annotations

import ctypes
import errno
import os
import queue
import signal
import sys
import threading

import trio

# Two threads let one child exec while the next spawn starts; one was
# about 15 % slower on 1000 short tasks. More do not pay even on big
# machines: each spawn holds its thread for about 0.5 ms, so two keep up
# with some 4000 spawns a second, more than the loop's own per-task work
# allows, and three or four measured no faster on 2 cores.
SPAWN_THREADS = 2

# posix_spawnattr_t flags, the same in glibc and musl (os has no names).
_SETPGROUP = 0x02
_SETSIGDEF = 0x04
_SETSIGMASK = 0x08

# Opaque libc structures are allocated by size here. glibc and musl on
# 64-bit Linux use 80 bytes for file actions, 336 for attributes and 128
# for a sigset_t; the margin covers any other C library.
_OPAQUE_SIZE = 1024


class _Libc:
    """The libc functions one spawn needs, bound once."""

    def __init__(self) -> None:
        # CDLL drops the GIL around each call, PyDLL keeps it: only the
        # spawn itself is worth a GIL round trip.
        releasing = ctypes.CDLL(None)
        holding = ctypes.PyDLL(None)
        int_p = ctypes.POINTER(ctypes.c_int)
        pointer = ctypes.c_void_p
        spawn_args = (int_p, ctypes.c_char_p, pointer, pointer, pointer, pointer)
        self.spawn = releasing.posix_spawn
        self.spawnp = releasing.posix_spawnp
        for function in (self.spawn, self.spawnp):
            function.argtypes = spawn_args
            function.restype = ctypes.c_int

        self.actions_init = holding.posix_spawn_file_actions_init
        self.actions_destroy = holding.posix_spawn_file_actions_destroy
        self.add_dup2 = holding.posix_spawn_file_actions_adddup2
        self.add_dup2.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]

        # The attributes are the same for every child and posix_spawn only
        # reads them, so one copy serves all threads.
        self.attributes = ctypes.create_string_buffer(_OPAQUE_SIZE)
        default = ctypes.create_string_buffer(_OPAQUE_SIZE)
        empty = ctypes.create_string_buffer(_OPAQUE_SIZE)
        checks = [
            holding.posix_spawnattr_init(self.attributes),
            holding.sigemptyset(empty),
            holding.sigemptyset(default),
            # Python ignores SIGPIPE and SIGXFSZ, and an ignored signal
            # stays ignored across exec: restore the defaults, as Popen's
            # restore_signals does, or `yes | head` in a task would spin.
            holding.sigaddset(default, signal.SIGPIPE),
            holding.sigaddset(default, signal.SIGXFSZ),
            holding.posix_spawnattr_setsigdefault(self.attributes, default),
            # The spawning thread's mask would otherwise be inherited.
            holding.posix_spawnattr_setsigmask(self.attributes, empty),
            # A new group led by the child: its pid is the group id.
            holding.posix_spawnattr_setpgroup(self.attributes, 0),
            holding.posix_spawnattr_setflags(
                self.attributes,
                ctypes.c_short(_SETPGROUP | _SETSIGDEF | _SETSIGMASK),
            ),
        ]
        if any(checks):
            message = "posix_spawn attributes could not be set"
            raise OSError(message)


def _load() -> _Libc | None:
    if sys.platform != "linux":
        return None
    try:
        return _Libc()
    except (OSError, AttributeError):
        # No shared libc (a static build) or a symbol is missing: the
        # caller falls back to os.posix_spawn on the loop thread.
        return None


_libc = _load()
HAVE_THREADED_SPAWN = _libc is not None


class _Job:
    """One spawn request, shared by the waiting task and a spawner thread."""

    __slots__ = (
        "actions",
        "argv",
        "envp",
        "path",
        "pid",
        "result",
        "search",
        "task",
        "token",
    )

    def __init__(
        self,
        path: bytes,
        argv: ctypes.Array[ctypes.c_char_p],
        envp: ctypes.Array[ctypes.c_char_p],
        actions: ctypes.Array[ctypes.c_char],
        search: bool,
    ) -> None:
        # The job keeps every buffer alive until the spawn has returned.
        self.path = path
        self.argv = argv
        self.envp = envp
        self.actions = actions
        self.search = search
        self.pid = ctypes.c_int(0)
        self.result = -1
        self.task = trio.lowlevel.current_task()
        self.token = trio.lowlevel.current_trio_token()


_jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
_started = 0
_start_lock = threading.Lock()


@trio.lowlevel.enable_ki_protection
async def spawn(
    path: bytes,
    argv: list[bytes],
    envp: list[bytes],
    fds: tuple[int, int, int],
    *,
    search: bool,
) -> int:
    """Start ``path`` in a new process group and return its pid.

    Args:
        path: the program, or with ``search`` a name to look up on PATH.
        argv: the arguments, ``argv[0]`` included, without NUL bytes.
        envp: ``NAME=value`` entries, without NUL bytes.
        fds: descriptors that become the child's stdin, stdout and stderr.
        search: use posix_spawnp, which searches trt's own PATH.

    Raises:
        OSError: when the program could not be started.

    The call cannot be canceled while the spawn is in flight; a pending
    cancellation reaches the caller at its next checkpoint instead.
    """
    assert _libc is not None
    libc = _libc

    # posix_spawn_file_actions_* return an errno value, not -1.
    actions = ctypes.create_string_buffer(_OPAQUE_SIZE)
    if error := libc.actions_init(actions):
        raise OSError(error, os.strerror(error))
    try:
        for target, fd in enumerate(fds):
            if error := libc.add_dup2(actions, fd, target):
                raise OSError(error, os.strerror(error))
        job = _Job(path, _c_strings(argv), _c_strings(envp), actions, search)
        _submit(job)
        await trio.lowlevel.wait_task_rescheduled(_refuse_abort)
    finally:
        libc.actions_destroy(actions)

    if job.result:
        raise OSError(job.result, os.strerror(job.result), path.decode())
    return job.pid.value


def _c_strings(items: list[bytes]) -> ctypes.Array[ctypes.c_char_p]:
    """Return a NULL-terminated ``char *[]`` holding ``items``."""
    array = (ctypes.c_char_p * (len(items) + 1))()
    # Slice assignment is about twice as fast as passing *items.
    array[: len(items)] = items  # type: ignore[assignment]
    return array


def _refuse_abort(_: object) -> trio.lowlevel.Abort:
    # The thread may be spawning right now; see the module docstring.
    return trio.lowlevel.Abort.FAILED


def _submit(job: _Job) -> None:
    """Queue ``job``, starting the spawner threads on first use."""
    global _started
    if _started < SPAWN_THREADS:
        with _start_lock:
            while _started < SPAWN_THREADS:
                # Daemon threads: idle ones sit in _jobs.get() and must
                # not keep the interpreter from exiting.
                thread = threading.Thread(
                    target=_serve, args=(_jobs,), name="trt-spawn", daemon=True
                )
                try:
                    thread.start()
                except RuntimeError as exc:
                    # Out of threads: one running spawner is enough.
                    if _started:
                        break
                    raise OSError(errno.EAGAIN, str(exc)) from exc
                _started += 1
    _jobs.put(job)


def _serve(jobs: queue.SimpleQueue[_Job]) -> None:
    """Run spawn jobs forever; the body of each spawner thread."""
    assert _libc is not None
    libc = _libc
    attributes = libc.attributes
    while True:
        job = jobs.get()
        function = libc.spawnp if job.search else libc.spawn
        job.result = function(
            ctypes.byref(job.pid),
            job.path,
            job.actions,
            attributes,
            job.argv,
            job.envp,
        )
        try:
            job.token.run_sync_soon(trio.lowlevel.reschedule, job.task)
        except trio.RunFinishedError:  # pragma: no cover - see below
            # Cannot happen while the task waits unabortably, but if the
            # run is gone nobody owns the child: end it here.
            if job.result == 0:
                _kill_orphan(job.pid.value)


def _kill_orphan(pid: int) -> None:  # pragma: no cover - defensive
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass
    os.waitpid(pid, 0)


def _forget_threads() -> None:
    # A forked child inherits none of the threads; start afresh if it
    # ever spawns.
    global _jobs, _start_lock, _started
    _jobs = queue.SimpleQueue()
    _start_lock = threading.Lock()
    _started = 0


os.register_at_fork(after_in_child=_forget_threads)
