"""Keeps a running run's state on disk without slowing the scheduler down.

Data flow::

    scheduler ── mark(task_id) ──> dirty set ──> writer task (one per run)
    (a dict insert; never             │   builds each dirty task's record,
     waits, never does I/O)           v   then in a worker thread:
                                 StateStore.append(records)  + fsync
                                 StateStore.save(snapshot)   when the journal
                                                             outgrows it

Writes are coalesced: while one batch is being written and fsynced, the
next one collects, so a fast run writes few large batches and a slow one
writes each transition almost at once. A task that changes twice within one
batch is written once, with its latest record, which holds every attempt
so far: no attempt is ever lost, only intermediate statuses that a newer
one supersedes. A change counts as saved once the fsync of its batch
returned; that is the moment :meth:`StateStore.load` is sure to see it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, final

import trio

from trt._state import MIN_COMPACT_BYTES, JournalRecord
from trt._util import utc_now

if TYPE_CHECKING:
    from collections.abc import Callable

    from trt._results import ShutdownInfo
    from trt._state import RunState, StateStore, TaskRecord

logger = logging.getLogger("trt")


@final
class StateWriter:
    """Writes a run's changes to a :class:`StateStore` in the background.

    Args:
        store: an open store.
        record: builds the current record of a task, by id.
        snapshot: builds a snapshot of the whole run including journal
            sequence number ``seq``.
    """

    def __init__(
        self,
        store: StateStore,
        record: Callable[[str], TaskRecord],
        snapshot: Callable[[int], RunState],
    ) -> None:
        self.store = store
        self._record = record
        self._snapshot = snapshot
        # Insertion-ordered, so a batch keeps the order of the changes.
        self._dirty: dict[str, None] = {}
        self._run_status: str | None = None
        self._shutdown: ShutdownInfo | None = None
        self._seq = 0
        self._lot = trio.lowlevel.ParkingLot()
        self._closing = False
        # Why saving stopped, when it did; the run goes on without it.
        self.failure: str | None = None

    @property
    def seq(self) -> int:
        """Return the sequence number of the last change handed out."""
        return self._seq

    def mark(self, task_id: str) -> None:
        """Note that a task changed; it is written with the next batch."""
        self._dirty[task_id] = None
        self._lot.unpark()

    def mark_shutdown(self, shutdown: ShutdownInfo) -> None:
        """Note that a graceful shutdown began."""
        self._shutdown = shutdown
        self._lot.unpark()

    def close(self) -> None:
        """Write what is pending, then let :meth:`run` return."""
        self._closing = True
        self._lot.unpark()

    async def run(self) -> None:
        """Write batches until closed; stop for good if a write fails."""
        while True:
            while not self._dirty and self._shutdown is None:
                if self._closing or self.failure is not None:
                    return
                await self._lot.park()
            records = self._take_batch()
            try:
                await trio.to_thread.run_sync(self.store.append, records)
                if self.store.journal_bytes > max(
                    self.store.snapshot_bytes, MIN_COMPACT_BYTES
                ):
                    snapshot = self._snapshot(self._seq)
                    await trio.to_thread.run_sync(self.store.save, snapshot)
            except OSError as exc:
                self.fail(exc)
                return

    def _take_batch(self) -> list[JournalRecord]:
        at = utc_now()
        records = []
        if self._shutdown is not None:
            self._seq += 1
            records.append(JournalRecord(seq=self._seq, at=at, shutdown=self._shutdown))
            self._shutdown = None
        dirty, self._dirty = self._dirty, {}
        for task_id in dirty:
            self._seq += 1
            task = self._record(task_id)
            records.append(JournalRecord(seq=self._seq, at=at, id=task_id, task=task))
        return records

    def next_seq(self) -> int:
        """Hand out a sequence number for a snapshot saved outside run()."""
        self._seq += 1
        return self._seq

    def fail(self, exc: OSError) -> None:
        """Stop saving after ``exc``; the run goes on and reports it."""
        reason = exc.strerror or str(exc)
        where = self.store.directory
        self.failure = f"cannot save the run's state in {where}: {reason}"
        logger.debug("state writing stopped", exc_info=exc)
