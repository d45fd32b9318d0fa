"""Group commit changes nothing a caller can see: changes posted as one batch get the same
outcomes, and leave the same ledger and accounts, as the same changes posted one at a
time, in the same order (on the fake store; awards, deductions, repeated and reused
idempotency keys, a points cap and levels, in any order hypothesis finds)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from server.domain import commands
from server.domain.batch import AwardPoints, DeductPoints, Outcome
from server.domain.errors import TallyError
from server.domain.model import Level, UserProfile
from server.domain.results import WriteResult
from server.services.pipeline import idempotency
from server.services.pipeline.posting import Change
from server.services.tally import Tally
from server.services.use_cases import levels, systems
from tests.conftest import T0
from tests.fakes import FakeStore

USERS = ("ann", "bob", "cat")
KEYS = ("", "", "k1", "k2")  # mostly none; a repeat of k1 or k2 replays, or is refused

OPS = st.lists(
    st.tuples(
        st.sampled_from(("award", "deduct")),
        st.sampled_from(USERS),
        st.integers(1, 60),
        st.sampled_from(KEYS),
    ),
    min_size=1,
    max_size=12,
)


def fresh() -> Tally:
    """A system capped at 100 points a user, with two levels."""
    tally = Tally(FakeStore(), clock=lambda: T0)
    systems.create_system(tally, commands.CreateSystem(key="xp", max_points=100), T0)
    for key, points in (("silver", 30), ("gold", 80)):
        made = commands.LevelFields(key=key, points=points)
        levels.create_level(tally, commands.CreateLevel("xp", made), T0)
    return tally


def change(op: tuple[str, str, int, str]) -> Change:
    kind, user, amount, key = op
    if kind == "award":
        award = commands.Award("xp", UserProfile(user), amount, idempotency_key=key)
        return AwardPoints(award, T0, request_hash=idempotency.fingerprint("Award", award))
    deduct = commands.Deduct("xp", user, amount, idempotency_key=key)
    return DeductPoints(deduct, T0, request_hash=idempotency.fingerprint("Deduct", deduct))


def seen(outcome: Outcome) -> Any:
    """What a caller sees of an outcome, ids and numbers of entries aside."""
    if isinstance(outcome, TallyError):
        return (type(outcome).__name__, outcome.reason)
    assert isinstance(outcome, WriteResult)
    entry, balance = outcome.entry, outcome.balance
    level = outcome.level_change
    return (
        entry.type,
        entry.user_id,
        entry.amount,
        entry.base_amount,
        entry.capped,
        entry.balance_after,
        entry.idempotency_key,
        balance.balance,
        balance.total_earned,
        balance.total_spent,
        outcome.replayed,
        None if level is None else (_key(level.previous_level), _key(level.new_level)),
    )


def books(tally: Tally) -> Any:
    """Every account's figures and every entry, in ledger order, ids aside."""
    with tally.store.unit_of_work(write=False) as uow:
        views = [uow.users.view(user, "xp", frozenset(), None, 100) for user in USERS]
    accounts = {}
    entries = []
    for view in views:
        if view is None or view.account is None:
            continue
        a = view.account
        accounts[a.user_id] = (a.balance, a.total_earned, a.total_spent, a.entry_counts)
        entries += [
            (e.sequence, e.user_id, e.type, e.amount, e.balance_after) for e in view.entries
        ]
    return accounts, sorted(entries)


def _key(level: Level | None) -> str | None:
    return None if level is None else level.key


@settings(max_examples=80, deadline=None)
@given(OPS)
def test_a_batch_posts_what_the_same_changes_post_one_at_a_time(
    ops: list[tuple[str, str, int, str]],
) -> None:
    together, alone = fresh(), fresh()
    batched = together.writer.post([change(op) for op in ops])
    one_by_one = [alone.writer.post([change(op)])[0] for op in ops]
    assert [seen(o) for o in batched] == [seen(o) for o in one_by_one]
    assert books(together) == books(alone)
