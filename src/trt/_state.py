"""A run's state on disk: a snapshot, a journal of changes, and a lock.

Layout of the state folder::

    run.json          the snapshot: the whole run at one moment. Replaced
                      atomically (temp file, fsync, rename, fsync folder).
    RUNID.journal     one JSON line per change since some snapshot, each
                      with a sequence number and the task's whole record.
                      The snapshot names its journal; there is none once
                      the run has ended.
    lock              flock()ed by the process that owns the folder.

Why a journal: rewriting the snapshot after each of N transitions costs
O(N) bytes each time, O(N²) per run. Appending a task's record costs only
that record. The snapshot is rewritten ("compacted") when the journal has
grown as large as the snapshot, so the bytes written over a run stay within
a small constant factor of the final snapshot's size.

Why a crash at any instant is safe:

- A journal line is appended and then fsynced. A torn last line is not
  valid JSON, and :meth:`StateStore.load` stops reading there.
- Compaction renames a new snapshot into place and only then empties the
  journal. The snapshot records the last sequence number it includes, so
  if trt dies between the two steps, ``load`` skips the journal lines the
  snapshot already holds.
- Each run has a journal of its own, named by the snapshot. A previous
  run's journal (left by a crash) is removed only after the new snapshot
  is durable, and even if a power cut undid that removal, no snapshot
  names it: its lines can never be applied to another run's state.
- One lock serializes every write, and a snapshot older than the last one
  written is dropped, so a late background write cannot undo a newer one.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast, final

import msgspec

from trt._events import Event
from trt._exceptions import StateError
from trt._model import TERMINAL_STATUSES
from trt._report import encode_json
from trt._results import AttemptResult, RunOptions, ShutdownInfo, TaskError
from trt._util import write_atomic

if TYPE_CHECKING:
    from collections.abc import Iterable

    from trt._model import RetryPolicy, Task

# Bumped when the layout changes in a way older trt versions cannot read.
STATE_VERSION: Final = 1

# Compact no earlier than this: below it, reading the journal costs a
# resume or `trt status` next to nothing, while each compaction rewrites
# every record; runs of a few thousand tasks never compact.
MIN_COMPACT_BYTES: Final = 1024 * 1024

# Reads of a snapshot and its journal that a compaction may interrupt
# before load() settles for the last one; each compaction at least doubles
# the journal it takes to trigger the next, so two in a row are rare.
LOAD_TRIES: Final = 5

# Tries, 5 ms apart, before a held lock means another run holds it.
LOCK_TRIES: Final = 20

SNAPSHOT_NAME: Final = "run.json"
JOURNAL_SUFFIX: Final = ".journal"
# The journals trt writes: the run id (uuid4 hex) and the suffix.
_RUN_JOURNAL: Final = re.compile(r"[0-9a-f]{32}\.journal")
# What a journal's name may be: a file in the state folder, never a path.
_JOURNAL_NAME: Final = re.compile(r"[0-9A-Za-z_-]{1,64}\.journal")
LOCK_NAME: Final = "lock"


class StateStruct(
    msgspec.Struct, kw_only=True, frozen=True, rename="camel", omit_defaults=True
):
    """Base of the state file's structs: camelCase, like the reports.

    The per-task ones are ``gc=False``, as the results are (see
    trt._results.ResultStruct).
    """


# Every status trt saves: a run's (running until it ends; interrupted when
# a forced exit saved it mid-run) and a task's.
SAVED_RUN_STATUSES: Final = frozenset(
    {"running", "success", "failed", "canceled", "interrupted"}
)
SAVED_TASK_STATUSES: Final = frozenset(
    {"pending", "queued", "running", "waiting_retry", *TERMINAL_STATUSES}
)
# An attempt ends as a task can, but blocked, or cut off by a forced exit.
SAVED_ATTEMPT_STATUSES: Final = frozenset(
    {*(TERMINAL_STATUSES - {"blocked"}), "interrupted"}
)


# The temporary name write_atomic gives a snapshot (tempfile.mkstemp's
# eight characters), and nothing else a user might keep in the folder.
_TORN_SNAPSHOT: Final = re.compile(r"\.run\.json\.[a-z0-9_]{8}")


def no_saved_run(path: str) -> str:
    """Say that there is no snapshot at ``path``."""
    return f"no saved run: {path!r} does not exist"


@final
class RunningAttempt(StateStruct, frozen=True, kw_only=True, gc=False):
    """The attempt a task was in the middle of when the state was saved."""

    attempt: int
    started_at: str


@final
class TaskRecord(StateStruct, frozen=True, kw_only=True, gc=False):
    """One task as saved: its status, history and definition hash.

    ``running`` is set while an attempt runs; a resume turns it into an
    ``interrupted`` attempt. ``carried_over`` marks a success kept from an
    earlier run rather than earned in this one.
    """

    status: str
    definition_hash: str
    attempts: tuple[AttemptResult, ...] = ()
    running: RunningAttempt | None = None
    queued_at: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    error: TaskError | None = None
    blocked_by: str | None = None
    blocked_root: str | None = None
    stop_reason: str | None = None
    carried_over: bool = False
    # In a journal line only: ``attempts`` holds the attempts from this
    # index on; the ones before are in the record the line updates.
    attempts_from: int | None = None


@final
class RunState(StateStruct, frozen=True, kw_only=True):
    """The whole of ``state/run.json``.

    ``status`` is ``running`` while trt works, then the run's final status,
    or ``interrupted`` when a forced exit saved it mid-run. ``seq`` is the
    last journal sequence number the snapshot includes, and ``journal``
    the file in the same folder that continues it. ``events`` are the
    latest saved transitions as of this snapshot (the full stream is what
    ``--log-events`` is for); ``event_count`` counts every change saved.
    """

    version: int = STATE_VERSION
    run_id: str
    task_file: str
    task_file_path: str
    pid: int
    started_at: str
    updated_at: str
    status: str
    options: RunOptions
    seq: int = 0
    journal: str | None = None
    resumed_from: str | None = None
    shutdown: ShutdownInfo | None = None
    tasks_by_id: dict[str, TaskRecord]
    events: tuple[Event, ...] = ()
    event_count: int = 0


@final
class JournalRecord(StateStruct, frozen=True, kw_only=True):
    """One journal line: a task's new record, or a change of the run."""

    seq: int
    at: str
    id: str | None = None
    task: TaskRecord | None = None
    status: str | None = None
    shutdown: ShutdownInfo | None = None


def definition_hash(task: Task) -> str:
    """Return a short hash of what the task does, for --resume to compare.

    It covers what changes the work: the command or function, timeouts,
    retries and dependencies. Not the file position or ``metadata``, which
    change no result, and not the contents of a script or module the task
    names, which trt cannot know the extent of. Sets and mappings are
    sorted first: their order varies between processes.
    """
    retries = task.retries
    normalized = msgspec.structs.replace(
        task,
        index=0,
        metadata={},
        depends_on=tuple(sorted(task.depends_on)),
        retries=cast(
            "RetryPolicy",
            (
                retries.max_attempts,
                retries.backoff_ms,
                retries.factor,
                sorted(retries.retry_on),
            ),
        ),
    )
    data = _HASH_ENCODER.encode((task.kind, normalized))
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def _sorted_mapping(value: object) -> object:
    # msgspec cannot encode a MappingProxyType (a task's env) by itself.
    if isinstance(value, Mapping):
        return dict(sorted(value.items()))
    message = f"cannot hash a value of type {type(value).__name__}"
    raise TypeError(message)


_HASH_ENCODER: Final = msgspec.json.Encoder(enc_hook=_sorted_mapping)


@final
class StateStore:
    """Saves and loads one run's state in a folder, safely across crashes.

    Use it as a context manager: entering takes the folder's lock, so two
    trt processes can never write the same state at once.

    Args:
        directory: the state folder; created when entered.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.path = self.directory / SNAPSHOT_NAME
        self.journal_path: Path | None = None
        self._mutex = threading.Lock()
        self._lock_fd: int | None = None
        self._journal_fd: int | None = None
        self._saved_seq = -1
        self._closed = False
        # Sizes that drive compaction, and the total for benchmarks.
        self.snapshot_bytes = 0
        self.journal_bytes = 0
        self.bytes_written = 0

    # -- ownership -------------------------------------------------------

    def __enter__(self) -> StateStore:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def open(self) -> None:
        """Create the folder and take its lock.

        Raises:
            StateError: when the folder cannot be created or another trt
                process holds the lock.
        """

        if self.directory.exists() and not self.directory.is_dir():
            message = f"--state-dir: {str(self.directory)!r} exists and is not a folder"
            raise StateError(message)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(
                self.directory / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666
            )
        except OSError as exc:
            message = (
                f"--state-dir: cannot use {str(self.directory)!r}: "
                f"{exc.strerror or exc}"
            )
            raise StateError(message) from None
        try:
            _lock_soon(fd)
        except OSError as exc:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                message = f"cannot lock {self.directory / LOCK_NAME}: {exc.strerror}"
                raise StateError(message) from None
            who = f"trt process {holder}" if holder else "another trt process"
            message = (
                f"{str(self.directory)!r} is in use by {who}; wait for it to end "
                "or give this run its own --state-dir"
            )
            raise StateError(message) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd
        self._closed = False
        self._remove_torn_snapshots()

    def _remove_torn_snapshots(self) -> None:
        # Temporary files of snapshots a killed trt never renamed into
        # place; with the lock held, no writer of them is left.
        with contextlib.suppress(OSError), os.scandir(self.directory) as entries:
            for entry in entries:
                if _TORN_SNAPSHOT.fullmatch(entry.name) and entry.is_file():
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)

    def close(self) -> None:
        """Stop writing and release the lock; later writes are dropped."""
        with self._mutex:
            self._closed = True
            if self._journal_fd is not None:
                os.close(self._journal_fd)
                self._journal_fd = None
        if self._lock_fd is not None:
            # Closing the descriptor releases the flock.
            os.close(self._lock_fd)
            self._lock_fd = None

    def holder(self) -> int | None:
        """Return the pid of the process using the folder, or None if none.

        0 stands for a holder that has not written its pid yet.
        """
        import fcntl

        try:
            fd = os.open(self.directory / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                text = os.pread(fd, 32, 0).strip()
                return int(text) if text.isdigit() else 0
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    # -- writing ---------------------------------------------------------

    def save(self, state: RunState) -> bool:
        """Replace the snapshot with ``state``; begin its journal afresh.

        The journal is the file ``state.journal`` names, emptied; with none
        (a finished run, whose snapshot is the whole story) no journal is
        left. Returns False, writing nothing, when the store is closed or
        a snapshot with a later ``seq`` was saved already.

        Raises:
            OSError: when the snapshot cannot be written.
        """
        return self.write_snapshot(encode_json(state), state.seq, state.journal)

    def write_snapshot(self, data: bytes, seq: int, journal: str | None) -> bool:
        """Like :meth:`save`, for a snapshot already encoded.

        ``seq`` and ``journal`` must be the ones encoded in ``data``.

        Raises:
            OSError: when the snapshot cannot be written.
        """
        with self._mutex:
            if self._closed or seq < self._saved_seq:
                return False
            path = None if journal is None else self.directory / journal
            if path != self.journal_path and self._journal_fd is not None:
                os.close(self._journal_fd)
                self._journal_fd = None
            if path is not None and self._journal_fd is None:
                # Created before the snapshot is renamed into place, so the
                # folder's fsync in write_atomic makes both names durable.
                flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
                self._journal_fd = os.open(path, flags, 0o666)
            write_atomic(self.path, data)
            self._saved_seq = seq
            self.snapshot_bytes = len(data)
            self.bytes_written += len(data)
            # Only now that the snapshot is durable may journals go: lines
            # left by a crash in between have seq <= the snapshot's, or
            # belong to a journal no snapshot names any more.
            self.journal_path = path
            if self._journal_fd is not None:
                os.ftruncate(self._journal_fd, 0)
            for stale in self.directory.glob(f"*{JOURNAL_SUFFIX}"):
                # Only trt's own journals: never another file of the folder.
                if stale != path and _RUN_JOURNAL.fullmatch(stale.name):
                    stale.unlink(missing_ok=True)
            self.journal_bytes = 0
            return True

    def append(self, records: Iterable[JournalRecord]) -> bool:
        """Append ``records`` to the journal and sync it.

        Returns False, writing nothing, when the store is closed.

        Raises:
            OSError: when the journal cannot be written.
        """
        lines = b"".join(encode_json(record) + b"\n" for record in records)
        return self.append_lines(lines)

    def append_lines(self, lines: bytes, *, sync: bool = True) -> bool:
        """Like :meth:`append`, for records already encoded, one per line.

        With ``sync=False`` the lines reach the page cache only, which a
        killed trt cannot lose but a power cut can; :meth:`sync` then makes
        them durable.

        Raises:
            OSError: when the journal cannot be written.
        """
        with self._mutex:
            if self._closed or self._journal_fd is None:
                # Closed, or the last snapshot names no journal (a forced
                # exit's, which nothing may follow): not written.
                return False
            view = memoryview(lines)
            while view:
                written = os.write(self._journal_fd, view)
                view = view[written:]
            if sync:
                # Data only: the file's times need not survive a crash.
                os.fdatasync(self._journal_fd)
            self.journal_bytes += len(lines)
            self.bytes_written += len(lines)
            return True

    def sync(self) -> None:
        """Make every line appended so far durable (fdatasync).

        Raises:
            OSError: when the journal cannot be synced.
        """
        with self._mutex:
            if not self._closed and self._journal_fd is not None:
                os.fdatasync(self._journal_fd)

    # -- reading ---------------------------------------------------------

    def exists(self) -> bool:
        """Tell whether a snapshot exists in the folder."""
        return self.path.exists()

    def load(self) -> RunState:
        """Return the saved run: the snapshot with the journal applied.

        Every change whose journal write completed is included. A torn line
        at the journal's end (trt died while appending) is ignored, and so
        is anything after it.

        Raises:
            StateError: when there is no snapshot, it cannot be read, or it
                holds a status trt never writes.
        """
        state = self._load()
        if state.status not in SAVED_RUN_STATUSES:
            message = f"{str(self.path)!r} has an unknown run status {state.status!r}"
            raise StateError(message)
        for task_id, record in state.tasks_by_id.items():
            if record.status not in SAVED_TASK_STATUSES:
                message = (
                    f"{str(self.path)!r}: task {task_id!r} has an unknown "
                    f"status {record.status!r}"
                )
                raise StateError(message)
            for attempt in record.attempts:
                if attempt.status not in SAVED_ATTEMPT_STATUSES:
                    message = (
                        f"{str(self.path)!r}: task {task_id!r}, attempt "
                        f"{attempt.attempt} has an unknown status {attempt.status!r}"
                    )
                    raise StateError(message)
        return state

    def _load(self) -> RunState:
        # A running trt may compact between reading the snapshot and its
        # journal, leaving a journal that continues a newer snapshot; the
        # rename gives run.json a new inode, so a changed one means: again.
        for _ in range(LOAD_TRIES):
            before = _identity(self.path)
            state = self._read_snapshot()
            if state.journal is None:
                return state
            if not _JOURNAL_NAME.fullmatch(state.journal):
                message = (
                    f"{str(self.path)!r} names no journal of trt's: {state.journal!r}"
                )
                raise StateError(message)
            records = self._journal_records(self.directory / state.journal)
            if _identity(self.path) == before:
                break
        return _replay(state, records)

    def _read_snapshot(self) -> RunState:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            message = no_saved_run(str(self.path))
            raise StateError(message) from None
        except OSError as exc:
            message = f"cannot read {str(self.path)!r}: {exc.strerror or exc}"
            raise StateError(message) from None
        try:
            state = msgspec.json.decode(data, type=RunState)
        except msgspec.DecodeError as exc:
            message = f"{str(self.path)!r} is not a trt state file: {exc}"
            raise StateError(message) from None
        if state.version != STATE_VERSION:
            message = (
                f"{str(self.path)!r} has state version {state.version}; "
                f"this trt reads version {STATE_VERSION}"
            )
            raise StateError(message)
        return state

    def _journal_records(self, path: Path) -> list[JournalRecord]:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            message = f"cannot read {str(path)!r}: {exc.strerror or exc}"
            raise StateError(message) from None
        decoder = msgspec.json.Decoder(JournalRecord)
        records = []
        for line in data.splitlines():
            try:
                records.append(decoder.decode(line))
            except msgspec.DecodeError:
                # A torn append: nothing after it was acknowledged either.
                break
        return records


def _lock_soon(fd: int) -> None:
    """Take the folder's lock, waiting out a brief holder such as status.

    ``trt status`` takes the lock for an instant to see whether a run
    holds it; a run starting at that instant must not be refused for it.
    """
    import fcntl
    import time

    for _ in range(LOCK_TRIES - 1):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            time.sleep(0.005)
        else:
            return
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        found = path.stat()
    except OSError:
        return None
    return found.st_ino, found.st_mtime_ns


def _updated(before: TaskRecord, change: TaskRecord) -> TaskRecord:
    """Return the record ``change`` makes of ``before``."""
    start = change.attempts_from
    if start is None:
        return change
    attempts = before.attempts[:start] + change.attempts
    return msgspec.structs.replace(change, attempts=attempts, attempts_from=None)


def _replay(state: RunState, records: Iterable[JournalRecord]) -> RunState:
    """Apply journal ``records`` newer than the snapshot to ``state``."""
    tasks = dict(state.tasks_by_id)
    changes: dict[str, Any] = {}
    seq = state.seq
    for record in records:
        if record.seq <= seq:
            continue
        seq = record.seq
        changes["updated_at"] = record.at
        if record.id is not None and record.task is not None:
            if record.id in tasks:
                tasks[record.id] = _updated(tasks[record.id], record.task)
        if record.status is not None:
            changes["status"] = record.status
        if record.shutdown is not None:
            changes["shutdown"] = record.shutdown
    if seq == state.seq:
        return state
    return msgspec.structs.replace(state, seq=seq, tasks_by_id=tasks, **changes)
