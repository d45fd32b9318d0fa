"""Reads of users' standing, coalesced: the calls of one process that ask for a view
while another read is running are read together, in one unit of work and, where the
store can (ports.ViewsTogether), one statement.

A GetBalance is little more than one indexed read, so what it costs is mostly what
surrounds the read: a pooled connection checked out and in, a statement sent, its
result described and decoded, a round trip. Calls that arrive together share all of it.
As in the write pipeline, the first caller leads: it reads for everyone queued when it
starts (at most TOGETHER_MAX_ASKS), then hands the lead to a caller that queued
meanwhile. A lone call reads at once, as it would alone. One leader reads at a time
(`lanes`): measured on one PostgreSQL (bench get_balance, 16 calls in flight), two
leaders formed batches of about 1.2 asks and saved nothing, one formed batches of about
1.6 and cut the database's CPU per call by a third or more. Only small asks are read
together (at most TOGETHER_MAX_ENTRIES entries, sixteen asks a batch), so a batch's cost
is bounded however a caller asks; any other ask (a bigger, typed or later page) reads
alone, beside the lane.

Each ask is resolved (its system found, what its caller may see checked) by the leader,
in the same unit of work, but inside the context of the call that asked, so that
`callers.current()` is that call's caller, never the leader's.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from server.domain.errors import StoreUnavailable, TransientStoreError
from server.services.ports import Store, UnitOfWork, UserView, ViewAsk, ViewsTogether
from server.services.transactions import in_transaction

T = TypeVar("T")

# What turns an ask's view into its answer, in the unit of work that read it.
Resolve = Callable[[UnitOfWork, ViewAsk, UserView | None], T]

_UNSET: Any = object()  # an ask not answered yet
LANES = 1  # leaders reading at a time, per process (see above)
# What is read together: small asks (GetBalance's default page), at most this many a
# batch, so that a batch costs a bounded few milliseconds however callers ask; a bigger
# page reads alone, beside the lane.
TOGETHER_MAX_ENTRIES = 10
TOGETHER_MAX_ASKS = 16


class _Ask(Generic[T]):
    __slots__ = ("answer", "ask", "context", "done", "error", "lead", "resolve")

    def __init__(self, ask: ViewAsk, resolve: Resolve[T]) -> None:
        self.ask = ask
        self.resolve = resolve
        self.context = contextvars.copy_context()  # the asking call's caller, span, ...
        self.done = threading.Event()
        self.lead = False  # handed the lead while queued
        self.answer: Any = _UNSET
        self.error: BaseException | None = None

    def outcome(self) -> T:
        if self.error is not None:
            raise self.error
        answer: T = self.answer
        return answer

    def answered(self) -> bool:
        return self.answer is not _UNSET or self.error is not None


class ViewReader:
    """The process's reads of users' standing (services/standing.py), coalesced."""

    def __init__(self, store: Store, *, together: bool | None = None, lanes: int = LANES) -> None:
        self.store = store
        self._together = together  # asked of the store at the first read, when None
        self._lanes = lanes
        self._lock = threading.Lock()
        self._queue: list[_Ask[Any]] = []
        self._leading = 0  # leaders reading or handed the lead

    @property
    def together(self) -> bool:
        if self._together is None:
            store = self.store
            self._together = isinstance(store, ViewsTogether) and store.views_together()
        return self._together

    def read(self, ask: ViewAsk, resolve: Resolve[T]) -> T:
        """`resolve` of the ask's view, read with the asks of other calls queued meanwhile
        (alone where the store reads no faster together, or the ask is not small)."""
        item: _Ask[T] = _Ask(ask, resolve)
        if not (self.together and ask.first_page and ask.limit <= TOGETHER_MAX_ENTRIES):
            self._run([item])
            return item.outcome()
        with self._lock:
            lead = self._leading < self._lanes
            if lead:
                self._leading += 1
            else:
                self._queue.append(item)
        if not lead:
            try:
                item.done.wait()  # read by a leader, or handed the lead
            except BaseException:
                self._abandon(item)
                raise
            if not item.lead:
                return item.outcome()
        self._lead(item)
        return item.outcome()

    def _lead(self, own: _Ask[Any]) -> None:
        """Read for `own` and the asks queued first, then hand the lead to the next ask
        queued (taken off the queue: no other leader reads it) or give the lane up."""
        with self._lock:
            taken = self._queue[: TOGETHER_MAX_ASKS - 1]
            del self._queue[: len(taken)]
        batch = [own, *taken]
        try:
            self._run(batch)
        finally:
            for item in batch:
                if not item.answered():  # the batch died with a BaseException
                    item.error = StoreUnavailable("the outcome of this read is unknown")
            for item in taken:
                item.done.set()
            self._pass_lead()

    def _pass_lead(self) -> None:
        with self._lock:
            following = self._queue.pop(0) if self._queue else None
            if following is None:
                self._leading -= 1
            else:
                following.lead = True
        if following is not None:
            following.done.set()

    def _abandon(self, item: _Ask[Any]) -> None:
        """A queued call that stopped waiting (interrupted): off the queue, or, if it
        was handed the lead meanwhile, the lead passed on, so the lane is never lost."""
        with self._lock:
            if item in self._queue:
                self._queue.remove(item)
                return
            handed = item.lead
        if handed:
            self._pass_lead()

    def _run(self, batch: Sequence[_Ask[Any]]) -> None:
        """One unit of work for the batch: its views read together, each resolved in the
        context of the call that asked. A domain error (or a bug) in resolving is that
        ask's alone; a batch that fails otherwise (a row one ask's view cannot decode)
        is read again one ask at a time, so that only that ask fails."""

        def work(uow: UnitOfWork) -> None:
            views = uow.users.views([item.ask for item in batch])
            for item, view in zip(batch, views, strict=True):
                item.answer, item.error = _UNSET, None
                try:
                    item.answer = item.context.run(item.resolve, uow, item.ask, view)
                except TransientStoreError:
                    raise  # the unit of work runs again
                except Exception as error:  # noqa: BLE001 - the asking call raises it
                    item.error = error

        try:
            in_transaction(self.store, work, write=False)
        except Exception as error:  # noqa: BLE001 - every ask's, each its own
            if len(batch) > 1 and not isinstance(error, StoreUnavailable):
                for item in batch:
                    self._run([item])
                return
            for item in batch:
                item.error = error if len(batch) == 1 else _own(error)


def _own(error: Exception) -> Exception:
    """A store failure for one of a batch's asks: an exception of its own, so that N
    calls do not raise (and log, with a growing traceback) one shared object."""
    if isinstance(error, StoreUnavailable):
        return StoreUnavailable(error.message)
    return StoreUnavailable("the read could not be made")
