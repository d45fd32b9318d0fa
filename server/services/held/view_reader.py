"""Reads of users' standing, coalesced: the calls of one process that ask for a view
while another read is running are read together, in one unit of work and, where the
store can (ports.ViewsTogether), one statement.

A GetBalance is little more than one indexed read, so what it costs is mostly what
surrounds the read: a pooled connection checked out and in, a statement sent, its
result described and decoded, a round trip. Calls that arrive together share all of it.
As in the write pipeline, the first caller leads: it reads for everyone queued when it
starts, then hands the lead to a caller that queued meanwhile. A lone call reads at
once, as it would alone. One leader reads at a time (`lanes`): measured on one
PostgreSQL (bench get_balance, 16 calls in flight), two leaders formed batches of about
1.2 asks and saved nothing, one formed batches of about 1.6 and cut the database's CPU
per call by a third or more. Every ask is small (a page is at most 100 entries), and an
ask that one statement cannot read with the others (a typed page, a later page) reads
alone, beside the leader, so nothing slow holds the lane.

Each ask is resolved (its system found, what its caller may see checked) by the leader,
in the same unit of work, but inside the context of the call that asked, so that
`callers.current()` is that call's caller, never the leader's.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from server.domain.errors import TransientStoreError
from server.services.ports import Store, UnitOfWork, UserView, ViewAsk, ViewsTogether
from server.services.transactions import in_transaction

T = TypeVar("T")

# What turns an ask's view into its answer, in the unit of work that read it.
Resolve = Callable[[UnitOfWork, ViewAsk, UserView | None], T]

LANES = 1  # leaders reading at a time, per process (see above)


class _Ask(Generic[T]):
    __slots__ = ("answer", "ask", "context", "done", "error", "lead", "resolve")

    def __init__(self, ask: ViewAsk, resolve: Resolve[T]) -> None:
        self.ask = ask
        self.resolve = resolve
        self.context = contextvars.copy_context()  # the asking call's caller, span, ...
        self.done = threading.Event()
        self.lead = False  # handed the lead while queued
        self.answer: T | None = None
        self.error: BaseException | None = None

    def outcome(self) -> T:
        if self.error is not None:
            raise self.error
        return self.answer  # type: ignore[return-value]


class ViewReader:
    """The process's reads of users' standing (services/standing.py), coalesced."""

    def __init__(self, store: Store, *, together: bool | None = None, lanes: int = LANES) -> None:
        self.store = store
        if together is None:
            together = isinstance(store, ViewsTogether) and store.views_together()
        self.together = together
        self._lanes = lanes
        self._lock = threading.Lock()
        self._queue: list[_Ask[Any]] = []
        self._leading = 0  # leaders reading or handed the lead

    def read(self, ask: ViewAsk, resolve: Resolve[T]) -> T:
        """`resolve` of the ask's view, read with the asks of other calls queued meanwhile
        (alone where the store reads no faster together)."""
        item: _Ask[T] = _Ask(ask, resolve)
        if not (self.together and ask.first_page):
            self._run([item])
            return item.outcome()
        with self._lock:
            lead = self._leading < self._lanes
            if lead:
                self._leading += 1
            else:
                self._queue.append(item)
        if not lead:
            item.done.wait()  # read by a leader, or handed the lead
            if not item.lead:
                return item.outcome()
        self._lead(item)
        return item.outcome()

    def _lead(self, own: _Ask[Any]) -> None:
        """Read for `own` and every ask queued, then hand the lead to the first ask queued
        meanwhile (taken off the queue: no other leader reads it) or give the lane up."""
        with self._lock:
            batch, self._queue = [own, *self._queue], []
        try:
            self._run(batch)
        finally:
            with self._lock:
                following = self._queue.pop(0) if self._queue else None
                if following is None:
                    self._leading -= 1
                else:
                    following.lead = True
            for item in batch[1:]:
                item.done.set()
            if following is not None:
                following.done.set()

    def _run(self, batch: Sequence[_Ask[Any]]) -> None:
        """One unit of work for the batch: its views read together, each resolved in the
        context of the call that asked. A domain error (or a bug) is that ask's alone; a
        store failure is every ask's."""

        def work(uow: UnitOfWork) -> None:
            views = uow.users.views([item.ask for item in batch])
            for item, view in zip(batch, views, strict=True):
                item.answer, item.error = None, None
                try:
                    item.answer = item.context.run(item.resolve, uow, item.ask, view)
                except TransientStoreError:
                    raise  # the unit of work runs again
                except Exception as error:  # noqa: BLE001 - the asking call raises it
                    item.error = error

        try:
            in_transaction(self.store, work, write=False)
        except Exception as error:  # noqa: BLE001 - every ask's: the store failed
            for item in batch:
                item.error = error
