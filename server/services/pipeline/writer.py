"""Group commit: the changes of concurrent calls posted together, in one transaction.

Flat combining, with no writer thread: a call that finds nobody posting becomes the
leader and posts what is queued (its own change first among them) in one unit of work;
calls that arrive meanwhile queue up and wait. When its batch is committed the leader
answers every call in it and, if more have queued, hands the lead to the first of them,
which posts the next batch. At low load a call posts its own change at once (no timer
adds latency); under load a batch grows to what queued during the previous commit. Every
queued change belongs to a waiting call, so a shutdown that waits for calls in flight
drains the queue too.

A database error in a batch of several changes re-runs each change in a transaction of
its own, so no change fails because of a neighbour. A store that stays unavailable, or a
commit whose outcome is unknown, answers every change of the batch STORE_UNAVAILABLE
(safe to retry with the same idempotency key).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Sequence

from server import metrics, tracing
from server.domain.errors import StoreUnavailable, TallyError
from server.domain.model import EntryType, LedgerEntry
from server.domain.results import Result
from server.services.held.configuration import Configuration
from server.services.pipeline.posting import Change, Outcome, post
from server.services.ports import Store, UnitOfWork
from server.services.transactions import in_transaction

log = logging.getLogger(__name__)

MAX_BATCH_CHANGES = 256  # the default; Settings.max_batch


class _Ticket:
    """One call's changes, waiting to be posted, and (once posted) their outcomes."""

    __slots__ = ("caller", "changes", "crash", "done", "lead", "outcomes")

    def __init__(self, changes: Sequence[Change]) -> None:
        self.changes = changes
        self.caller = tracing.current()  # the call's span, linked from the commit's
        self.outcomes: list[Outcome] | None = None
        self.crash: BaseException | None = None
        self.lead = False  # set when the lead is handed to this ticket's call
        self.done = threading.Event()


class Writer:
    """Posts changes for the calls of one process, many changes to one transaction."""

    def __init__(
        self,
        store: Store,
        config: Configuration,
        *,
        max_batch: int = MAX_BATCH_CHANGES,
        on_commit: Callable[[Collection[str]], None] = lambda systems: None,
    ) -> None:
        self.store = store
        self.config = config
        # Called after each commit with the systems it changed (the live feeds wake their
        # followers: services/held/feed.py).
        self.on_commit = on_commit
        # A batch takes queued calls while it has room (a call's own changes, such as an
        # AwardBatch's, are never split: a call larger than this is a batch of its own).
        self.max_batch = max(1, max_batch)
        self._mutex = threading.Lock()
        self._queue: deque[_Ticket] = deque()
        self._leading = False
        recorded = metrics.instruments()
        self._batch_changes = recorded.batch_changes
        self._commit_seconds = recorded.commit_seconds
        self._entries = {kind: recorded.entries.labels(kind.value) for kind in EntryType}

    def post(self, changes: Sequence[Change]) -> list[Outcome]:
        """Post `changes` (with whatever other calls have queued); outcomes in order."""
        ticket = _Ticket(changes)
        with self._mutex:
            self._queue.append(ticket)
            lead = not self._leading
            self._leading = True
        if not lead:
            with tracing.span("tally.commit_wait"):  # another call's commit carries this one
                ticket.done.wait()
            lead = ticket.lead
        if lead:
            self._lead()
        if ticket.crash is not None:
            raise ticket.crash
        assert ticket.outcomes is not None
        return ticket.outcomes

    def _lead(self) -> None:
        """Post one batch from the head of the queue, then pass the lead on or drop it."""
        with self._mutex:
            batch = [self._queue.popleft()]
            size = len(batch[0].changes)
            while self._queue and size + len(self._queue[0].changes) <= self.max_batch:
                ticket = self._queue.popleft()
                batch.append(ticket)
                size += len(ticket.changes)
        try:
            self._run(batch)
        finally:
            with self._mutex:
                if self._queue:
                    successor = self._queue[0]
                    successor.lead = True
                    successor.done.set()
                else:
                    self._leading = False
            for ticket in batch:
                if ticket.outcomes is None and ticket.crash is None:  # _run itself died
                    ticket.crash = StoreUnavailable("the outcome of this call is unknown")
                ticket.done.set()

    def _run(self, batch: list[_Ticket]) -> None:
        changes = [change for ticket in batch for change in ticket.changes]
        try:
            outcomes = self._post(changes, [ticket.caller for ticket in batch])
        except StoreUnavailable as error:
            # one error per change: each call's API layer adds its own metadata
            outcomes = [StoreUnavailable(error.message) for _ in changes]
        except Exception as error:  # noqa: BLE001 - a database error: the batch runs apart
            if len(batch) == 1 and len(changes) == 1:
                batch[0].crash = error
                return
            log.warning("a batch of %d changes failed; posting each alone", len(changes))
            for ticket in batch:
                self._run_alone(ticket)
            return
        at = 0
        for ticket in batch:
            ticket.outcomes = outcomes[at : at + len(ticket.changes)]
            at += len(ticket.changes)

    def _run_alone(self, ticket: _Ticket) -> None:
        outcomes: list[Outcome] = []
        for change in ticket.changes:
            try:
                outcomes.extend(self._post([change], [ticket.caller]))
            except TallyError as error:
                outcomes.append(error)
            except Exception as error:
                if len(ticket.changes) == 1:
                    ticket.crash = error
                    return
                log.exception("a change failed alone")
                outcomes.append(StoreUnavailable("the change could not be posted"))
        ticket.outcomes = outcomes

    def _post(self, changes: list[Change], callers: Sequence[tracing.Caller]) -> list[Outcome]:
        """Post `changes` in one unit of work; the span of the commit, in the call that
        leads it, links the spans of the calls whose changes it carries."""
        written: list[LedgerEntry] = []

        def work(uow: UnitOfWork) -> list[Outcome]:
            written.clear()  # of an attempt rolled back
            outcomes = post(uow, changes, self.config, written=written)
            uow.commit()
            return outcomes

        self._batch_changes.observe(len(changes))
        started = time.perf_counter()
        try:
            attributes = {"tally.changes": len(changes), "tally.calls": len(callers)}
            with tracing.span("tally.group_commit", attributes, links=callers):
                outcomes = in_transaction(self.store, work, write=True)
        finally:
            self._commit_seconds.observe(time.perf_counter() - started)
        for entry in written:
            self._entries[entry.type].inc()
        self.on_commit({change.system_key for change in changes})
        return outcomes

    def dry_run(self, change: Change) -> Outcome:
        """Decide `change` exactly as posting would, on a read, and write nothing."""

        def work(uow: UnitOfWork) -> Outcome:
            return post(uow, [change], self.config, dry_run=True)[0]

        return in_transaction(self.store, work, write=False)


def post_one(writer: Writer, change: Change, *, dry_run: bool) -> Result:
    """Post one change (a dry run: decide it, writing nothing) and return its result;
    its error is raised."""
    outcome = writer.dry_run(change) if dry_run else writer.post([change])[0]
    if isinstance(outcome, TallyError):
        raise outcome
    assert outcome is not None, "a change of one call answers"
    return outcome
