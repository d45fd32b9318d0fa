"""The load a fault lands in, and what the clients were told.

Writers (threads, each with its own channel, so that a `--workers` pool spreads them)
make awards, deductions, AwardBatch calls and RecordEvent calls through the repository's
client (clients/tally_client.py), every change with an idempotency key of its own. The
client retries UNAVAILABLE with the same request; a call whose outcome is still unknown
after that (UNAVAILABLE past the client's attempts, DEADLINE_EXCEEDED, or a code that
should never come) is made again with the same keys, and so is an AwardBatch item that
failed UNAVAILABLE, until the answer is definite: acknowledged (with its entries) or
refused (INSUFFICIENT_POINTS). Every attempt's status is recorded by an interceptor, so
the checks can see each answer given while the fault lasted.

A follower reads WatchLedger (follow) throughout, resuming after the last sequence it saw
whenever its stream ends, and records how each stream ended.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import grpc

from clients.tally_client import InsufficientPoints, TallyClient, TallyError, error_from
from tally.v1 import common_pb2, points_pb2, points_pb2_grpc

SYSTEM = "faults"
EVENT_TYPE = "fault.ping"
EVENT_POINTS = 5
# Codes that settle a call: the server decided (acknowledged, or refused for good).
DEFINITE = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
}
# Reconnect soon after a restart (gRPC's default backoff grows to 120 s).
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]
ATTEMPT_SECONDS = 30.0  # the deadline of one attempt: far above any answer under load

R = TypeVar("R")


class GaveUp(Exception):
    """The scenario's time limit passed with this call still unanswered."""


@dataclass(frozen=True)
class Attempt:
    """One attempt of one call, as the client saw it."""

    method: str
    start: float
    end: float
    code: str
    reason: str = ""  # ErrorInfo reason (or an AwardBatch item's), when there is one


@dataclass
class Write:
    """One change with its own idempotency key, and what its caller was told."""

    kind: str  # award | deduct | batch (one item) | event
    user_id: str
    key: str
    amount: int  # requested (an event's points come from its trigger)
    status: str = "pending"  # acked | refused | unresolved
    entries: tuple[tuple[str, int], ...] = ()  # as told: (entry id, amount)
    reason: str = ""  # why it was refused
    replayed: bool = False  # acknowledged by a replay of the stored response
    event_id: str = ""


class Recorder(grpc.UnaryUnaryClientInterceptor):
    """Records every attempt's outcome, and how many calls are in flight."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.attempts: list[Attempt] = []
        self.in_flight = 0

    def note(self, attempt: Attempt) -> None:
        with self.lock:
            self.attempts.append(attempt)

    def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        method = details.method.rsplit("/", 1)[-1]
        start = time.monotonic()
        with self.lock:
            self.in_flight += 1
        try:
            outcome = continuation(details, request)
            code = outcome.code()
        finally:
            with self.lock:
                self.in_flight -= 1
        reason = ""
        if code is not grpc.StatusCode.OK:
            reason = error_from(outcome).reason
        self.note(Attempt(method, start, time.monotonic(), code.name, reason))
        return outcome

    def between(self, start: float, end: float) -> list[Attempt]:
        with self.lock:
            return [a for a in self.attempts if start <= a.end and a.start <= end]


@dataclass(frozen=True)
class Mix:
    """The load's shape: how many calls, by how many writers, over how many users."""

    calls: int = 400
    writers: int = 8
    users: int = 12
    seed: int = 15


# Calls by kind, in proportion; a batch holds 2-8 awards; reads (GetBalance,
# ListTransactions) write nothing but meet the fault too.
KINDS = {"award": 4, "deduct": 3, "batch": 2, "event": 2, "read": 1}
BATCH_ITEMS = (2, 8)


@dataclass(frozen=True)
class Planned:
    """One call a writer will make: its kind and (user, key, amount) per change (a read
    has one, whose key only names it)."""

    kind: str
    items: list[tuple[str, str, int]]


class Load:
    """Writers calling until each has made its share of `mix.calls`, or `deadline`."""

    def __init__(self, target: str, api_key: str, mix: Mix, deadline: float) -> None:
        self.target = target
        self.api_key = api_key
        self.mix = mix
        self.deadline = deadline
        self.recorder = Recorder()
        self.lock = threading.Lock()
        self.writes: list[Write] = []
        self.calls = 0
        self.threads = [
            threading.Thread(target=self._writer, args=(n,), name=f"fault-writer-{n}", daemon=True)
            for n in range(mix.writers)
        ]
        self.users = [f"u{n:02d}" for n in range(mix.users)]
        self.plans = [self._plan(n) for n in range(mix.writers)]
        self.planned_writes = sum(
            len(p.items) for plan in self.plans for p in plan if p.kind != "read"
        )

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        for thread in self.threads:
            thread.join(max(1.0, self.deadline - time.monotonic() + 30))

    def acked(self) -> int:
        with self.lock:
            return sum(1 for w in self.writes if w.status == "acked")

    def wait_acked(self, count: int) -> bool:
        """Until `count` writes are acknowledged (False: the writers ended or time ran out)."""
        while self.acked() < count:
            if time.monotonic() > self.deadline or not any(t.is_alive() for t in self.threads):
                return False
            time.sleep(0.005)
        return True

    def in_flight(self) -> int:
        return self.recorder.in_flight

    def wait_busy(self, seconds: float = 5.0) -> int:
        """Until most writers still at work have a call in flight (a fault should land in
        the middle of things), at most `seconds`; how many calls are in flight."""
        until = min(self.deadline, time.monotonic() + seconds)
        while time.monotonic() < until:
            working = sum(1 for t in self.threads if t.is_alive())
            if self.in_flight() >= max(1, working // 2):
                break
            time.sleep(0.002)
        return self.in_flight()

    # -- the writers -------------------------------------------------------------------

    def _sleep(self, seconds: float) -> None:
        if time.monotonic() + seconds > self.deadline:
            raise GaveUp()
        time.sleep(seconds)

    def _plan(self, number: int) -> list[Planned]:
        """Writer `number`'s calls, drawn from the seed (the same load every run)."""
        rng = random.Random(self.mix.seed * 1000 + number)
        share = self.mix.calls // self.mix.writers + (number < self.mix.calls % self.mix.writers)
        plan = []
        for n in range(share):
            key = f"w{number}-{n}"
            kind = rng.choices(list(KINDS), list(KINDS.values()))[0]
            if kind == "batch":
                items = [
                    (rng.choice(self.users), f"{key}.{i}", rng.randint(1, 60))
                    for i in range(rng.randint(*BATCH_ITEMS))
                ]
            else:
                amount = {"award": rng.randint(1, 100), "deduct": rng.randint(1, 400)}
                items = [(rng.choice(self.users), key, amount.get(kind, 0))]
            plan.append(Planned(kind, items))
        return plan

    def _writer(self, number: int) -> None:
        with (
            grpc.insecure_channel(self.target, options=CHANNEL_OPTIONS) as bare,
            TallyClient(
                api_key=self.api_key,
                channel=grpc.intercept_channel(bare, self.recorder),
                timeout=ATTEMPT_SECONDS,
                attempts=50,
                sleep=self._sleep,
            ) as client,
        ):
            for planned in self.plans[number]:
                user, key, amount = planned.items[0]
                try:
                    if planned.kind == "award":
                        self._award(client, user, key, amount)
                    elif planned.kind == "deduct":
                        self._deduct(client, user, key, amount)
                    elif planned.kind == "batch":
                        self._batch(client, planned.items)
                    elif planned.kind == "event":
                        self._event(client, user, key)
                    else:
                        self._read(client, user, balance=key.endswith(("0", "2", "4", "6", "8")))
                except GaveUp:
                    return
                finally:
                    with self.lock:
                        self.calls += 1

    def _read(self, client: TallyClient, user_id: str, balance: bool) -> None:
        """A read, retried like a write; its answers are recorded, its result not kept."""
        while True:
            try:
                if balance:
                    client.get_balance(SYSTEM, user_id)
                else:
                    next(client.transactions(SYSTEM, user_id), None)
                return
            except TallyError as error:
                if error.code in DEFINITE:
                    return
            self._sleep(0.1)

    def _new(self, kind: str, user_id: str, key: str, amount: int) -> Write:
        write = Write(kind, user_id, key, amount)
        with self.lock:
            self.writes.append(write)
        return write

    def _definite(self, write: Write, call: Callable[[], R]) -> R | TallyError:
        """`call` again (same keys) until its answer is definite; GaveUp past the deadline."""
        while True:
            try:
                return call()
            except InsufficientPoints as refused:
                return refused
            except TallyError as error:
                if error.code in DEFINITE:
                    return error
                # UNAVAILABLE past the client's attempts, DEADLINE_EXCEEDED, or a code that
                # should never come: the outcome is unknown, so ask again with the same key.
            except GaveUp:
                write.status = "unresolved"
                raise
            self._sleep(0.1)

    def _settle(self, write: Write, answer: Any, entries: tuple[tuple[str, int], ...]) -> None:
        if isinstance(answer, TallyError):
            write.status, write.reason = "refused", answer.reason or answer.code.name
            return
        write.status, write.entries, write.replayed = "acked", entries, bool(answer.replayed)

    def _award(self, client: TallyClient, user_id: str, key: str, amount: int) -> None:
        write = self._new("award", user_id, key, amount)
        answer = self._definite(
            write, lambda: client.award(SYSTEM, user_id, amount, idempotency_key=key)
        )
        entries = (
            () if isinstance(answer, TallyError) else ((answer.entry.id, answer.entry.amount),)
        )
        self._settle(write, answer, entries)

    def _deduct(self, client: TallyClient, user_id: str, key: str, amount: int) -> None:
        write = self._new("deduct", user_id, key, amount)
        answer = self._definite(
            write, lambda: client.deduct(SYSTEM, user_id, amount, idempotency_key=key)
        )
        entries = (
            () if isinstance(answer, TallyError) else ((answer.entry.id, answer.entry.amount),)
        )
        self._settle(write, answer, entries)

    def _batch(self, client: TallyClient, items: list[tuple[str, str, int]]) -> None:
        """An AwardBatch; items that failed UNAVAILABLE (or not definitely) are sent again,
        alone in a new batch with their keys, until each has a definite answer."""
        pending = {key: self._new("batch", user, key, amount) for user, key, amount in items}
        while pending:
            writes = list(pending.values())
            request = [
                points_pb2.AwardBatchItem(
                    system_key=SYSTEM,
                    user=common_pb2.User(id=w.user_id),
                    amount=w.amount,
                    idempotency_key=w.key,
                )
                for w in writes
            ]
            answer = self._definite(writes[0], partial(client.award_batch, request))
            if isinstance(answer, TallyError):
                for write in writes:
                    self._settle(write, answer, ())
                return
            now = time.monotonic()
            for write, result in zip(writes, answer.results, strict=True):
                if result.HasField("error"):
                    code = status_code(result.error.code)
                    item = Attempt("AwardBatch[item]", now, now, code.name, result.error.reason)
                    self.recorder.note(item)
                    if code not in DEFINITE:
                        continue  # again, in the next batch
                    write.status, write.reason = "refused", result.error.reason or code.name
                else:
                    write.status, write.replayed = "acked", bool(result.replayed)
                    write.entries = ((result.entry.id, result.entry.amount),)
                del pending[write.key]
            if pending:
                self._sleep(0.1)

    def _event(self, client: TallyClient, user_id: str, key: str) -> None:
        write = self._new("event", user_id, key, 0)
        answer = self._definite(
            write, lambda: client.record_event(user_id, EVENT_TYPE, idempotency_key=key)
        )
        if isinstance(answer, TallyError):
            self._settle(write, answer, ())
            return
        result = answer.results.get(SYSTEM)
        awards = (
            () if result is None else tuple((a.entry.id, a.entry.amount) for a in result.awards)
        )
        self._settle(write, answer, awards)
        write.event_id = answer.event_id

    def unresolved(self) -> list[Write]:
        """Writes with no definite answer (after join: the time limit cut them)."""
        with self.lock:
            for write in self.writes:
                if write.status == "pending":
                    write.status = "unresolved"
            return [w for w in self.writes if w.status == "unresolved"]


def status_code(value: int) -> grpc.StatusCode:
    """The status code numbered `value` (an AwardBatch item's error carries the number)."""
    return next((c for c in grpc.StatusCode if c.value[0] == value), grpc.StatusCode.UNKNOWN)


@dataclass
class StreamEnd:
    """How one WatchLedger stream ended, and the last sequence seen before it did."""

    code: str
    reason: str
    after_sequence: int


@dataclass
class Follower:
    """WatchLedger (follow) over SYSTEM, resumed after the last sequence seen whenever a
    stream ends, until stopped."""

    target: str
    api_key: str
    sequences: list[int] = field(default_factory=list)
    ends: list[StreamEnd] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _call: Any = None
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="fault-follower", daemon=True)
        self._thread.start()

    def last(self) -> int:
        return self.sequences[-1] if self.sequences else 0

    def wait_for(self, sequence: int, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while self.last() < sequence and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.last() >= sequence

    def stop(self) -> None:
        self._stop.set()
        call = self._call
        if call is not None:
            call.cancel()
        if self._thread is not None:
            self._thread.join(10)

    def _stream(self, stub: points_pb2_grpc.PointsServiceStub) -> Iterator[common_pb2.LedgerEntry]:
        request = points_pb2.WatchLedgerRequest(
            system_key=SYSTEM, after_sequence=self.last(), follow=True
        )
        self._call = stub.WatchLedger(request, metadata=(("x-api-key", self.api_key),))
        for response in self._call:
            yield from response.entries

    def _run(self) -> None:
        with grpc.insecure_channel(self.target, options=CHANNEL_OPTIONS) as channel:
            stub = points_pb2_grpc.PointsServiceStub(channel)
            while not self._stop.is_set():
                after = self.last()
                try:
                    for entry in self._stream(stub):
                        self.sequences.append(entry.sequence)
                    self.ends.append(StreamEnd("OK", "", after))
                except grpc.RpcError as error:
                    if self._stop.is_set():
                        return
                    failed = error_from(error)
                    self.ends.append(StreamEnd(failed.code.name, failed.reason, self.last()))
                    # As clients/tally_client.py does: the server's RetryInfo, when given.
                    self._stop.wait(max(0.2, failed.retry_delay or 0.0))
                    continue
                self._stop.wait(0.2)

    def codes(self) -> Counter[str]:
        return Counter(end.code for end in self.ends)
