"""The stream budget counts a user token's streams under the key that issued it: a write
key mints tokens for any user, so counting each token's user apart would let one key hold
the whole server's budget (review of issue 21's M6)."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any, cast

import pytest

from server.api.streams import StreamBudget
from server.domain.access import Caller, Scope
from server.domain.errors import RateLimited
from server.services.held import callers


def open_stream(budget: StreamBudget, caller: Caller) -> Generator[Any, None, None]:
    """A stream of `caller`, started (its slot taken) and left open."""

    def endless(_request: Any, _context: Any) -> Iterator[Any]:
        while True:
            yield 1

    wrapped = budget.wrap_stream(endless, "/tally.v1.PointsService/StreamHistory")
    stream = cast(Generator[Any, None, None], wrapped(None, cast(Any, None)))
    callers.context_of(caller).run(next, stream)
    return stream


def token(key_id: str, user_id: str) -> Caller:
    return Caller(key_id, Scope.READ, user_id=user_id)


def test_a_keys_tokens_share_its_budget_and_leave_the_rest_to_other_keys() -> None:
    budget = StreamBudget(max_streams=4, per_caller=2, max_open_streams=1)
    held = [open_stream(budget, token("front", f"user-{i}")) for i in range(2)]
    with pytest.raises(RateLimited) as refused:
        open_stream(budget, token("front", "user-2"))  # another user, the same key
    assert refused.value.metadata["budget"] == "per_key"
    with pytest.raises(RateLimited):
        open_stream(budget, Caller("front", Scope.WRITE))  # the key itself
    held += [open_stream(budget, Caller("other", Scope.READ)) for _ in range(2)]
    assert len(held) == 4
    held[0].close()  # a slot given back is the key's again
    held.append(open_stream(budget, token("front", "user-3")))
