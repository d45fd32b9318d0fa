"""Running a use case in one unit of work, retried on transient store failures.

Serialization failures, deadlocks and lost connections before COMMIT leave nothing
written, so the whole unit of work runs again (tenacity, bounded in tries and time). When
the budget runs out the caller gets UNAVAILABLE STORE_UNAVAILABLE, which is safe to retry
with the same idempotency key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from server import metrics, tracing
from server.domain.errors import StoreUnavailable, TransientStoreError
from server.services.ports import Store, UnitOfWork

T = TypeVar("T")

MAX_ATTEMPTS = 8
MAX_SECONDS = 5.0


def in_transaction(store: Store, work: Callable[[UnitOfWork], T], *, write: bool) -> T:
    """Run `work` in a new unit of work, again on transient failures. `work` commits.
    Each retry is counted (tally_store_retries_total) and, when tracing is on, the whole
    is one span inside the call's."""
    retrying = Retrying(
        stop=stop_after_attempt(MAX_ATTEMPTS) | stop_after_delay(MAX_SECONDS),
        wait=wait_random_exponential(multiplier=0.005, max=0.25),
        retry=retry_if_exception_type(TransientStoreError),
        reraise=True,
        before_sleep=_count_write_retry if write else _count_read_retry,
    )
    try:
        with tracing.span("tally.unit_of_work", {"tally.write": write}):
            for attempt in retrying:
                with attempt, store.unit_of_work(write=write) as uow:
                    return work(uow)
    except TransientStoreError as exc:
        raise StoreUnavailable() from exc
    raise AssertionError("unreachable: tenacity either returns or raises")


def _count_write_retry(_state: RetryCallState) -> None:
    metrics.instruments().store_retries.labels("write").inc()


def _count_read_retry(_state: RetryCallState) -> None:
    metrics.instruments().store_retries.labels("read").inc()
