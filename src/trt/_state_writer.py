"""Keeps a running run's state on disk without slowing the scheduler down.

Data flow::

    scheduler ── mark(task_id) ──> dirty set ──> writer task (one per run)
    (a dict insert; never             │   encodes each dirty task's record
     waits, never does I/O)           v   once, then in a worker thread:
                                 StateStore.append_lines()  + fdatasync
                                 StateStore.write_snapshot() when the journal
                                                             outgrows it

Writes are coalesced: while one batch is being written and synced, the next
one collects, so a fast run writes few large batches and a slow one writes
each transition almost at once. A task that changes twice within one batch
is written once, with its latest record, which holds every attempt so far:
no attempt is ever lost, only intermediate statuses that a newer one
supersedes. A change counts as saved once the sync of its batch returned;
that is the moment :meth:`StateStore.load` is sure to see it.

Each task's record is encoded once per change and the bytes are kept, so a
compaction splices the kept bytes (``msgspec.Raw``) instead of building and
encoding every record again: compacting costs a copy, not a rebuild.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING, Any, Final, final

import msgspec
import trio

from trt._events import Event
from trt._report import encode_json
from trt._state import MIN_COMPACT_BYTES, JournalRecord
from trt._util import utc_now

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from trt._events import EventType
    from trt._results import ShutdownInfo
    from trt._state import RunState, StateStore, TaskRecord

logger = logging.getLogger("trt")

# Transitions a snapshot lists in ``events``: the latest ones, for a glance
# at what was happening; --log-events is the place for the whole stream.
EVENTS_KEPT: Final = 100

# How long a change may wait for others to share its write and sync. A
# change counts as saved only once its batch is synced, so this bounds how
# much a crash can lose, by far less than any task's own start-up.
COALESCE_SECONDS: Final = 0.005

# Compact when the journal is this many times the snapshot's size. Each
# compaction then at least doubles what the next one may write, so all the
# snapshots of a run add up to a small multiple of the last one: the bytes
# written grow linearly with the run, and load() reads at most this much
# journal per byte of snapshot.
COMPACT_RATIO: Final = 2

# The event type a saved transition is listed as.
_EVENT_FOR_STATUS: Final[dict[str, EventType]] = {
    "pending": "task:queued",
    "queued": "task:queued",
    "running": "task:start",
    "waiting_retry": "task:retry",
}


@final
class StateWriter:
    """Writes a run's changes to a :class:`StateStore` in the background.

    Args:
        store: an open store.
        task_ids: every task id, in file order.
        record: builds the current record of a task, by id.
        quick: the encoded record of a task that has not started, framed
            cheaply, or None when ``record`` is needed.
        header: builds the run's snapshot for a status, a sequence number,
            the tasks (as encoded records), the latest events and the name
            of the journal that continues it.
        clock: milliseconds since the run started.
        journal: the file name of this run's journal.
    """

    def __init__(
        self,
        store: StateStore,
        task_ids: Sequence[str],
        record: Callable[[str], TaskRecord],
        quick: Callable[[str], bytes | None],
        header: Callable[
            [str, int, dict[str, Any], tuple[Event, ...], str | None], RunState
        ],
        clock: Callable[[], float],
        journal: str,
    ) -> None:
        self.store = store
        self._ids = task_ids
        self._record = record
        self._quick = quick
        self._header = header
        self._clock = clock
        self._journal = journal
        self._encode = msgspec.json.Encoder().encode
        # Each task's latest record, encoded, in file order: every snapshot
        # encodes this very dict, so an unchanged task costs a copy.
        self._encoded: dict[str, msgspec.Raw] = {}
        # Tasks whose kept record is older than their latest journal line.
        self._stale: set[str] = set()
        # Task ids as JSON strings, encoded once each.
        self._ids_json: dict[str, bytes] = {}
        # How many of each task's attempts are on disk already.
        self._persisted: dict[str, int] = {}
        # Insertion-ordered, so a batch keeps the order of the changes.
        self._dirty: dict[str, None] = {}
        self._shutdown: ShutdownInfo | None = None
        self._events: deque[Event] = deque(maxlen=EVENTS_KEPT)
        self._seq = 0
        self._lot = trio.lowlevel.ParkingLot()
        # Whether the writer is parked, waiting for a change.
        self._idle = False
        self._closing = False
        # The coalescing window under way, which close() cuts short.
        self._window = trio.CancelScope()
        # Why saving stopped, when it did; the run goes on without it.
        self.failure: str | None = None

    def mark(self, task_id: str) -> None:
        """Note that a task changed; it is written with the next batch."""
        self._dirty[task_id] = None
        # Only the first change after the writer went idle wakes it: this
        # runs for every change of every task.
        if self._idle:
            self._idle = False
            self._lot.unpark()

    def mark_shutdown(self, shutdown: ShutdownInfo) -> None:
        """Note that a graceful shutdown began."""
        self._shutdown = shutdown
        self._lot.unpark()

    def close(self) -> None:
        """Let :meth:`run` return once the write under way is done.

        Changes still pending are not appended: the final snapshot, which
        :meth:`finish` writes next, holds them anyway.
        """
        self._closing = True
        self._lot.unpark()
        # Nor wait out the coalescing window: the run is over.
        self._window.cancel()

    async def run(self) -> None:
        """Write batches until closed; stop for good if a write fails."""
        store = self.store
        while True:
            while not self._dirty and self._shutdown is None:
                if self._closing or self.failure is not None:
                    return
                self._idle = True
                await self._lot.park()
                self._idle = False
            # Let the changes of the next few milliseconds join this batch:
            # fewer, larger writes, and a task that starts and ends within
            # the window is written once. Once closed, the final snapshot
            # holds what is pending.
            if not self._closing:
                with trio.CancelScope() as self._window:
                    await trio.sleep(COALESCE_SECONDS)
            if self._closing:
                return
            lines = self._take_batch()
            try:
                # Written here, synced in a thread: the write only copies to
                # the page cache (safe from a kill at once), while the sync
                # waits for the disk. A thread that ran the whole append
                # slowed a busy loop far more: each GIL hand-off of its
                # Python code cost the loop more than the write itself.
                store.append_lines(lines, sync=False)
                await trio.to_thread.run_sync(store.sync)
                limit = max(COMPACT_RATIO * store.snapshot_bytes, MIN_COMPACT_BYTES)
                if store.journal_bytes > limit:
                    data, seq, journal = self.snapshot("running")
                    await trio.to_thread.run_sync(
                        store.write_snapshot, data, seq, journal
                    )
            except OSError as exc:
                self.fail(exc)
                return

    def _take_batch(self) -> bytes:
        at = utc_now()
        lines = bytearray()
        if self._shutdown is not None:
            self._seq += 1
            record = JournalRecord(seq=self._seq, at=at, shutdown=self._shutdown)
            lines += self._encode(record) + b"\n"
            self._shutdown = None
        dirty, self._dirty = self._dirty, {}
        # The lines JournalRecord would encode to, framed by hand: this is
        # the one loop that runs once per change of every task.
        frame = b'{"seq":%d,"at":"' + at.encode() + b'","id":%s,"task":%s}\n'
        ids = self._ids_json
        encode_change = self._encode_change
        seq = self._seq
        parts = [bytes(lines)]
        for task_id in dirty:
            seq += 1
            name = ids.get(task_id)
            if name is None:
                name = ids[task_id] = self._encode(task_id)
            parts.append(frame % (seq, name, encode_change(task_id)))
        self._seq = seq
        lines = bytearray(b"".join(parts))
        # Only the last few become events: building one per change would
        # cost more than the change's own record.
        elapsed = self._clock()
        for task_id in list(dirty)[-EVENTS_KEPT:]:
            self._events.append(self._event(task_id, at, elapsed))
        return bytes(lines)

    def _encode_change(self, task_id: str) -> bytes:
        """Encode a task's change for the journal: new attempts only.

        A journal line with every attempt so far would make a task with
        many retries cost the square of its attempts; a line carries the
        attempts from ``attemptsFrom`` on, and load() joins them up.
        """
        known = self._persisted.get(task_id, 0)
        if not known:
            # Nothing to leave out: the whole record, kept for snapshots.
            return self._encode_task(task_id)
        record = self._record(task_id)
        self._persisted[task_id] = len(record.attempts)
        self._stale.add(task_id)
        record = msgspec.structs.replace(
            record, attempts=record.attempts[known:], attempts_from=known
        )
        return self._encode_record(record)

    def _encode_task(self, task_id: str) -> bytes:
        """Encode a task's whole record and keep it for snapshots."""
        data = self._quick(task_id)
        attempts = 0
        if data is None:
            record = self._record(task_id)
            data = self._encode_record(record)
            attempts = len(record.attempts)
        self._encoded[task_id] = msgspec.Raw(data)
        self._persisted[task_id] = attempts
        self._stale.discard(task_id)
        return data

    def _encode_all(self) -> None:
        """Encode and keep every task's record: the first snapshot's work.

        _encode_task, inlined for the hand-framed records most tasks have
        at the start, saves most of the per-task cost on large runs.
        """
        quick = self._quick
        encoded = self._encoded
        persisted = self._persisted
        raw = msgspec.Raw
        for task_id in self._ids:
            found = quick(task_id)
            if found is None:
                self._encode_task(task_id)
            else:
                encoded[task_id] = raw(found)
                persisted[task_id] = 0  # quick records are of unstarted tasks

    def _encode_record(self, record: TaskRecord) -> bytes:
        try:
            return self._encode(record)
        except UnicodeEncodeError:
            # Text that is not valid Unicode (an exception message with a
            # lone surrogate) is kept, escaped, as in the reports.
            return encode_json(record)

    def _event(self, task_id: str, at: str, elapsed: float) -> Event:
        record = self._record(task_id)
        attempt = len(record.attempts) + (record.running is not None)
        return Event(
            type=_EVENT_FOR_STATUS.get(record.status, "task:finish"),
            timestamp=at,
            elapsed_ms=round(elapsed, 3),
            task_id=task_id,
            status=record.status,
            attempt=attempt or None,
        )

    def snapshot(self, status: str) -> tuple[bytes, int, str | None]:
        """Return the whole run encoded, its sequence number and journal.

        Tasks changed since their last write are encoded afresh; the others
        reuse their kept bytes. Once this snapshot is written, it holds
        every change so far, so nothing is due for the journal any more.
        A running run's snapshot names this run's journal; a finished or
        interrupted one names none.
        """
        self._seq += 1
        journal = self._journal if status == "running" else None
        tasks: dict[str, Any]
        if journal is None:
            # The last snapshot: nothing will reuse its records, so the
            # changed ones go in as records, encoded in the one call below.
            changed = {*self._dirty, *self._stale}
            record = self._record
            tasks = {
                task_id: record(task_id)
                if task_id in changed or task_id not in self._encoded
                else self._encoded[task_id]
                for task_id in self._ids
            }
        else:
            if not self._encoded:
                self._encode_all()
            else:
                for task_id in [*self._dirty, *self._stale]:
                    self._encode_task(task_id)
            tasks = self._encoded
        self._dirty.clear()
        self._shutdown = None
        state = self._header(status, self._seq, tasks, tuple(self._events), journal)
        try:
            data = self._encode(state)
        except UnicodeEncodeError:
            # A task file name that is not valid Unicode: escape it, as the
            # reports do (rare enough to decode the records again for it).
            plain = {
                key: msgspec.json.decode(raw) if isinstance(raw, msgspec.Raw) else raw
                for key, raw in tasks.items()
            }
            data = encode_json(msgspec.structs.replace(state, tasks_by_id=plain))
        return data, self._seq, journal

    def save_now(self, status: str) -> bool:
        """Write a snapshot at once, blocking; for the start and a forced exit.

        Raises:
            OSError: when the snapshot cannot be written.
        """
        return self.store.write_snapshot(*self.snapshot(status))

    def finish(self, status: str) -> bool:
        """Write the final snapshot (no journal); say if it was written.

        Blocking, on purpose: every task has ended, so the loop has nothing
        to do meanwhile, and a thread hop would only add its latency.
        """
        if self.failure is not None:
            return False
        try:
            return self.save_now(status)
        except OSError as exc:
            self.fail(exc)
            return False

    def fail(self, exc: OSError) -> None:
        """Stop saving after ``exc``; the run goes on and reports it."""
        reason = exc.strerror or str(exc)
        where = self.store.directory
        self.failure = f"cannot save the run's state in {where}: {reason}"
        logger.debug("state writing stopped", exc_info=exc)
