"""Group commit: the changes of concurrent calls posted together, in one transaction.

Flat combining, with no writer thread: a call that finds nobody posting becomes the
leader and posts what is queued (its own change first among them) in one unit of work;
calls that arrive meanwhile queue up and wait. When its batch is committed the leader
answers every call in it and, if more have queued, hands the lead to the first of them,
which posts the next batch. At low load a call posts its own change at once (no timer
adds latency); under load a batch grows to what queued during the previous commit. Every
queued change belongs to a waiting call, so a shutdown that waits for calls in flight
drains the queue too.

A queue per write group (ports.WriteGroups): under Citus a group is the worker that holds
a user's shard, so a batch commits on one worker and batches of different workers commit
concurrently; elsewhere there is one group. A call whose changes span groups (an
AwardBatch, whose items are independent) is posted as a part per group, each part in a
batch of its group, and its outcomes come back in the call's order.

A database error in a batch of several changes re-runs each change in a transaction of
its own, so no change fails because of a neighbour. A store that stays unavailable, or a
commit whose outcome is unknown, answers every change of the batch STORE_UNAVAILABLE
(safe to retry with the same idempotency key).
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Sequence
from functools import partial

from server import metrics, tracing
from server.domain.errors import StoreUnavailable, TallyError
from server.domain.model import EntryType, LedgerEntry
from server.domain.results import Result
from server.services.held.configuration import Configuration
from server.services.pipeline.posting import Change, Outcome, post
from server.services.ports import Store, UnitOfWork, WriteGroups
from server.services.transactions import in_transaction

log = logging.getLogger(__name__)

MAX_BATCH_CHANGES = 256  # the default; Settings.max_batch


class _Ticket:
    """One call's changes of one write group, waiting to be posted, and (once posted)
    their outcomes."""

    __slots__ = ("caller", "changes", "crash", "done", "lead", "outcomes")

    def __init__(self, changes: Sequence[Change], caller: tracing.Caller) -> None:
        self.changes = changes
        self.caller = caller  # the call's span, linked from the commit's
        self.outcomes: list[Outcome] | None = None
        self.crash: BaseException | None = None
        self.lead = False  # set when the lead is handed to this ticket's call
        self.done = threading.Event()


class _Part(threading.Thread):
    """A further part of a call whose changes span write groups, posted beside the call's
    thread on a thread of its own, in the call's context (its caller, its span). Not a
    shared pool: a part waiting in a slow group's queue must never hold up the parts of
    other groups (the threads are bounded by the calls in flight)."""

    def __init__(self, post: Callable[[], list[Outcome]]) -> None:
        super().__init__(name="tally-part", daemon=True)
        self._context = contextvars.copy_context()
        self._post = post
        self.outcomes: list[Outcome] = []

    def run(self) -> None:
        self.outcomes = self._context.run(self._post)


class _Queue:
    """One write group's tickets, and whether a call is leading (posting) them."""

    def __init__(self, max_batch: int) -> None:
        self.max_batch = max_batch
        self._mutex = threading.Lock()
        self._waiting: deque[_Ticket] = deque()
        self._leading = False

    def join(self, ticket: _Ticket) -> bool:
        """Queue `ticket`; True when nobody was leading, and so its call leads now."""
        with self._mutex:
            self._waiting.append(ticket)
            lead = not self._leading
            self._leading = True
        return lead

    def take(self) -> list[_Ticket]:
        """The next batch, from the head: whole tickets while there is room (a call's
        own changes are never split: a ticket larger than max_batch is a batch alone)."""
        with self._mutex:
            batch = [self._waiting.popleft()]
            size = len(batch[0].changes)
            while self._waiting and size + len(self._waiting[0].changes) <= self.max_batch:
                ticket = self._waiting.popleft()
                batch.append(ticket)
                size += len(ticket.changes)
        return batch

    def __len__(self) -> int:
        return len(self._waiting)

    def pass_on(self) -> None:
        """Hand the lead to the first ticket waiting, or drop it when none is."""
        with self._mutex:
            if self._waiting:
                successor = self._waiting[0]
                successor.lead = True
                successor.done.set()
            else:
                self._leading = False


class _Groups:
    """The queue of each write group (made on first use), and how a call's changes fall
    into groups (ports.WriteGroups; one group for a store without)."""

    def __init__(self, store: Store, max_batch: int) -> None:
        self._of = store.write_groups if isinstance(store, WriteGroups) else None
        self._max_batch = max_batch
        self._queues: dict[int, _Queue] = {}
        self._mutex = threading.Lock()

    def split(self, changes: Sequence[Change]) -> dict[int, list[int]]:
        """The indexes of `changes` by write group, in order within each."""
        if self._of is None:
            return {0: list(range(len(changes)))}
        parts: dict[int, list[int]] = {}
        for index, group in enumerate(self._of([change.user_id for change in changes])):
            parts.setdefault(group, []).append(index)
        return parts

    def waiting(self) -> int:
        return sum(len(queue) for queue in list(self._queues.values()))

    def queue(self, group: int) -> _Queue:
        queue = self._queues.get(group)
        if queue is None:
            with self._mutex:
                queue = self._queues.setdefault(group, _Queue(self._max_batch))
        return queue


class Writer:
    """Posts changes for the calls of one process, many changes to one transaction, a
    queue per write group (under Citus, per worker: batches of different workers commit
    concurrently, and a batch never spans two)."""

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
        self.max_batch = max(1, max_batch)
        self._groups = _Groups(store, self.max_batch)
        recorded = metrics.instruments()
        self._batch_changes = recorded.batch_changes
        self._commit_seconds = recorded.commit_seconds
        self._entries = {kind: recorded.entries.labels(kind.value) for kind in EntryType}

    def waiting(self) -> int:
        """How many calls' tickets wait in the queues (not those being posted)."""
        return self._groups.waiting()

    def post(self, changes: Sequence[Change]) -> list[Outcome]:
        """Post `changes` (with whatever other calls have queued); outcomes in order.

        Changes of several write groups are posted as a part per group, concurrently,
        each in a batch of its group: they are independent (an AwardBatch's items are),
        so each part fails or commits on its own."""
        caller = tracing.current()
        parts = self._groups.split(changes)
        if len(parts) == 1:
            [group] = parts
            return self._post_in(group, changes, caller)
        outcomes: list[Outcome] = [None] * len(changes)
        (first, first_indexes), *rest = parts.items()
        further = [
            (indexes, _Part(partial(self._post_part, group, changes, indexes, caller)))
            for group, indexes in rest
        ]
        for _, thread in further:
            thread.start()
        done = [(first_indexes, self._post_part(first, changes, first_indexes, caller))]
        for indexes, thread in further:
            thread.join()
            done.append((indexes, thread.outcomes))
        for indexes, part in done:
            for index, outcome in zip(indexes, part, strict=True):
                outcomes[index] = outcome
        return outcomes

    def _post_part(
        self, group: int, changes: Sequence[Change], indexes: list[int], caller: tracing.Caller
    ) -> list[Outcome]:
        """Post one group's part of a call's changes; an error that would fail the call
        (a database error of a change alone) is its changes' outcome instead."""
        try:
            return self._post_in(group, [changes[i] for i in indexes], caller)
        except TallyError as error:
            return [error for _ in indexes]
        except Exception:
            log.exception("a part of a call's changes failed")
            return [StoreUnavailable("the change could not be posted") for _ in indexes]

    def _post_in(
        self, group: int, changes: Sequence[Change], caller: tracing.Caller
    ) -> list[Outcome]:
        """Post `changes`, all of `group`, through its queue: lead, or wait for a batch
        that carries them."""
        queue = self._groups.queue(group)
        ticket = _Ticket(changes, caller)
        lead = queue.join(ticket)
        if not lead:
            with tracing.span("tally.commit_wait"):  # another call's commit carries this one
                ticket.done.wait()
            lead = ticket.lead
        if lead:
            self._lead(queue)
        if ticket.crash is not None:
            raise ticket.crash
        assert ticket.outcomes is not None
        return ticket.outcomes

    def _lead(self, queue: _Queue) -> None:
        """Post one batch from the head of the queue, then pass the lead on or drop it."""
        batch = queue.take()
        try:
            self._run(batch)
        finally:
            queue.pass_on()
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
