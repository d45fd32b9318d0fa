"""The decision of a batch (domain/batch.py) on plain values: no store, no writer.

What the pipeline would read is given as values; what it would write is read off the
decision. The property tests show the decision is a function of its input: deciding the
same input twice gives equal decisions, ids included."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from server.domain import commands
from server.domain.access import EVERY_SYSTEM, LEGACY_USER_SCOPE, Reach
from server.domain.batch import (
    AwardPoints,
    BatchDecision,
    BatchInput,
    Command,
    CountEvent,
    Decided,
    DeductPoints,
    Remembered,
    Repeat,
    ReverseEntry,
    SettleAccount,
    decide,
)
from server.domain.errors import (
    IdempotencyKeyReused,
    InsufficientPoints,
    SystemNotFound,
    TallyError,
    UserNotFound,
)
from server.domain.ledger import Account
from server.domain.model import (
    Level,
    LevelBasis,
    PointsSystem,
    Trigger,
    TriggerStatus,
    TriggerType,
    User,
    UserProfile,
    Welcomed,
)
from server.domain.results import EventResult, SystemEventResult, WriteResult, Written
from server.domain.rules import Rules
from tests.conftest import T0


def points_system(key: str, created: datetime = T0) -> PointsSystem:
    return PointsSystem(key, key, "", "", 0, LevelBasis.BALANCE, created, created)


def welcome(trigger_id: str, system_key: str, points: int, created: datetime = T0) -> Trigger:
    return Trigger(
        trigger_id,
        system_key,
        TriggerType.USER_IDENTIFIED,
        points,
        TriggerStatus.ACTIVE,
        created,
        created,
        activate_time=created,
    )


def level(key: str, points: int) -> Level:
    return Level(f"level-{key}", "xp", key, key.title(), "", "", points)


RULES = Rules.of(
    [points_system("xp"), points_system("gems")],
    [
        welcome("w-xp", "xp", 5),
        welcome("w-gems", "gems", 7),
        Trigger(
            "t-lesson",
            "xp",
            TriggerType.EVENT,
            2,
            TriggerStatus.ACTIVE,
            T0,
            T0,
            event_type="lesson",
        ),
    ],
    levels=[level("silver", 10), level("gold", 100)],
)


XP_ONLY = Reach(frozenset({"xp"}))
COINS_ONLY = Reach(frozenset({"coins"}))
ANN = frozenset({"ann"})
T1 = T0 + timedelta(hours=1)  # coins is created after xp and gems
WITH_COINS = Rules.of(
    [*RULES.systems.values(), points_system("coins", T1)],
    [
        *RULES.triggers.values(),
        welcome("w-coins", "coins", 11, T1),
        Trigger(
            "t-coins-lesson",
            "coins",
            TriggerType.EVENT,
            3,
            TriggerStatus.ACTIVE,
            T1,
            T1,
            event_type="lesson",
        ),
    ],
)
# What a call of every system at RULES leaves: welcomed in every system created by T0.
WELCOMED_AT_T0 = Welcomed(through=T0)


def user(user_id: str) -> User:
    return User(user_id, "", "", {}, T0, WELCOMED_AT_T0)


def award(user_id: str, amount: int, *, key: str = "", system: str = "xp", **fields: Any) -> Any:
    cmd = commands.Award(system, UserProfile(user_id), amount, idempotency_key=key)
    return AwardPoints(cmd, T0, request_hash=f"{user_id} {amount}" if key else "", **fields)


def deduct(user_id: str, amount: int, *, key: str = "") -> DeductPoints:
    cmd = commands.Deduct("xp", user_id, amount, idempotency_key=key)
    return DeductPoints(cmd, T0, request_hash=f"{user_id} -{amount}" if key else "")


def batch(
    cmds: list[Command],
    *,
    existing: dict[str, dict[str, int]] | None = None,
    new: frozenset[str] = frozenset(),
    seed: str = "seed",
    users: Sequence[User] = (),
    rules: Rules | None = None,
    **fields: Any,
) -> BatchInput:
    """The input the pipeline would prepare: `existing` users with their balances by
    system (welcomed by a call of every system at T0, unless given in `users`); `new`,
    the users the lock created."""
    existing = existing or {}
    read = {u: user(u) for u in [*existing, *new]} | {u.id: u for u in users}
    accounts = {
        (u, key): Account(key, u, balance=amount, total_earned=amount, create_time=T0)
        for u, balances in existing.items()
        for key, amount in balances.items()
    }
    return BatchInput(cmds, read, new, rules or RULES, accounts, id_seed=seed, **fields)


def outcomes(decision: BatchDecision) -> list[Any]:
    written = Written(
        {e.id: e for e in decision.entries}, {m.entry_id: m for m in decision.level_changes}
    )
    return decision.outcomes(written)


# -- presence ------------------------------------------------------------------------------


def test_a_user_that_does_not_exist_is_not_found_unless_the_command_creates_it() -> None:
    decision = decide(batch([deduct("ann", 1), award("ann", 3)], new=frozenset({"ann"})))
    missing, awarded = decision.answers
    assert isinstance(missing, UserNotFound)
    assert isinstance(awarded, Decided)
    assert isinstance(awarded.result, WriteResult)
    assert awarded.result.balance.balance == 3 + 5  # with the welcome in xp
    # the welcomes (in trigger order: created together, so by id: gems, xp), then the award
    assert [e.amount for e in decision.entries] == [7, 5, 3]
    assert [(a.user_id, a.system_key) for a in decision.accounts] == [
        ("ann", "gems"),
        ("ann", "xp"),
    ]


def test_a_change_of_an_unknown_system_fails_alone() -> None:
    decision = decide(
        batch([award("bob", 1, system="nope"), award("bob", 2)], existing={"bob": {}})
    )
    assert isinstance(decision.answers[0], SystemNotFound)
    assert isinstance(decision.answers[1], Decided)
    assert [e.amount for e in decision.entries] == [2]


def test_a_failed_change_leaves_nothing_behind() -> None:
    decision = decide(batch([deduct("bob", 50), deduct("bob", 4)], existing={"bob": {"xp": 10}}))
    assert isinstance(decision.answers[0], InsufficientPoints)
    assert [e.amount for e in decision.entries] == [-4]
    assert [a.balance for a in decision.accounts] == [6]


# -- repeated keys -------------------------------------------------------------------------


def test_a_repeated_key_replays_its_first_change_and_a_different_request_is_refused() -> None:
    decision = decide(
        batch(
            [award("bob", 10, key="k"), award("bob", 10, key="k"), award("bob", 11, key="k")],
            existing={"bob": {}},
        )
    )
    first, repeat, reused = decision.answers
    assert isinstance(first, Decided)
    assert repeat == Repeat(0)
    assert isinstance(reused, IdempotencyKeyReused)
    assert len(decision.entries) == 1
    assert decision.remember == {("bob", "xp", "k"): (0, "bob 10")}
    results = outcomes(decision)
    assert (results[0].replayed, results[1].replayed) == (False, True)
    assert results[1].entry == results[0].entry


def test_a_key_remembered_by_an_earlier_batch_replays_without_writing() -> None:
    stored = WriteResult(award_entry := _one_entry(), balance=_balance())
    remembered = {("bob", "xp", "k"): Remembered("bob 10", lambda: stored)}
    decision = decide(
        batch(
            [award("bob", 10, key="k"), award("bob", 12, key="k")],
            existing={"bob": {"xp": 10}},
            remembered=remembered,
        )
    )
    replayed, reused = decision.answers
    assert isinstance(replayed, WriteResult)
    assert replayed.replayed
    assert replayed.entry == award_entry
    assert isinstance(reused, IdempotencyKeyReused)
    assert decision.entries == ()
    assert decision.remember == {}


def test_the_same_key_in_another_scope_is_another_key() -> None:
    decision = decide(
        batch(
            [award("bob", 1, key="k"), award("bob", 2, key="k", system="gems")],
            existing={"bob": {}},
        )
    )
    assert all(isinstance(a, Decided) for a in decision.answers)
    assert len(decision.remember) == 2


# -- welcome -------------------------------------------------------------------------------


def test_a_new_user_is_welcomed_once_in_the_callers_systems_alone() -> None:
    decision = decide(
        batch(
            [award("ann", 1, reach=XP_ONLY), award("ann", 1, reach=XP_ONLY)],
            new=frozenset({"ann"}),
        )
    )
    welcomes = [e for e in decision.entries if e.trigger_id]
    assert [(e.trigger_id, e.amount) for e in welcomes] == [("w-xp", 5)]  # not in gems
    assert sum(e.amount for e in decision.entries) == 5 + 1 + 1
    assert [u.welcomed for u in decision.users] == [Welcomed(frozenset({"xp"}))]


def test_a_later_call_of_other_systems_welcomes_the_user_there_once() -> None:
    """A user a key limited to gems created is still owed xp's welcome (attacker probe,
    issue 21): an xp key's event answers what it would for a user it names first, and a
    key of every system welcomes in the systems left, once."""
    gems_only = Reach(frozenset({"gems"}))
    created = decide(batch([award("ann", 1, system="gems", reach=gems_only)], new=ANN))
    assert [e.trigger_id for e in created.entries] == ["w-gems", ""]
    (ann,) = created.users
    assert ann.welcomed == Welcomed(frozenset({"gems"}))

    lesson = commands.RecordEvent(UserProfile("ann"), "lesson", Decimal(1))
    seen = decide(
        batch([CountEvent(lesson, T0, reach=XP_ONLY)], existing={"ann": {"gems": 8}}, users=[ann])
    )
    first = decide(batch([CountEvent(lesson, T0, reach=XP_ONLY)], new=ANN))
    assert _added(seen) == _added(first) == {"xp": 5 + 2}
    (ann,) = seen.users
    assert ann.welcomed == Welcomed(frozenset({"gems", "xp"}))

    three = decide(
        batch(
            [award("ann", 1), award("ann", 1), deduct("ann", 1)],
            existing={"ann": {"gems": 8, "xp": 7}},
            users=[ann],
            rules=WITH_COINS,
        )
    )
    welcomes = [(e.trigger_id, e.amount) for e in three.entries if e.trigger_id]
    assert welcomes == [("w-coins", 11)]  # the one system left, once
    # welcomed through the newest system the call read (coins's creation), not the clock
    assert [u.welcomed for u in three.users] == [Welcomed(through=T1)]


def test_a_user_welcomed_by_a_call_of_every_system_is_welcomed_there_again_nowhere() -> None:
    """Neither a call of every system nor a limited key's welcomes them again in the
    systems that existed then, and the user is not written."""
    for reach in (EVERY_SYSTEM, XP_ONLY):
        decision = decide(batch([award("bob", 1, reach=reach)], existing={"bob": {}}))
        assert [e.trigger_id for e in decision.entries] == [""]
        assert decision.users == ()


def test_a_system_created_after_a_call_of_every_system_welcomed_the_user_is_owed() -> None:
    """Review probe: welcomed by a call of every system at T0, bob was counted welcomed in
    coins, created at T1, too: coins's USER_IDENTIFIED never fired for him, and a key
    limited to coins told him (its event added 3) from a new user (11 + 3). The next call
    that may use coins welcomes him there, once, whichever it is."""
    for reach, left in [
        (EVERY_SYSTEM, Welcomed(through=T1)),
        (COINS_ONLY, Welcomed(frozenset({"coins"}), through=T0)),
    ]:
        calls = [award("bob", 1, system="coins", reach=reach) for _ in range(2)]
        first = decide(batch(calls, existing={"bob": {"xp": 9}}, rules=WITH_COINS))
        welcomes = [(e.trigger_id, e.amount) for e in first.entries if e.trigger_id]
        assert welcomes == [("w-coins", 11)]
        assert [u.welcomed for u in first.users] == [left]
        (bob,) = first.users
        again = decide(
            batch([calls[0]], existing={"bob": {"coins": 13}}, users=[bob], rules=WITH_COINS)
        )
        assert [e.trigger_id for e in again.entries] == [""]
        assert again.users == ()
    # A key limited to coins: a user seen elsewhere answers what a new user does.
    lesson = commands.RecordEvent(UserProfile("bob"), "lesson", Decimal(1))
    event = CountEvent(lesson, T1, reach=COINS_ONLY)
    seen = decide(batch([event], existing={"bob": {"xp": 9}}, rules=WITH_COINS))
    fresh = decide(batch([event], new=frozenset({"bob"}), rules=WITH_COINS))
    assert _added(seen) == _added(fresh) == {"coins": 11 + 3}
    # A key limited to xp owes nothing: coins is not its to welcome in.
    xp = decide(batch([award("bob", 1, reach=XP_ONLY)], existing={"bob": {}}, rules=WITH_COINS))
    assert [e.trigger_id for e in xp.entries] == [""]
    assert xp.users == ()


def test_a_new_user_made_as_its_first_change_welcomes_it_is_not_written_again() -> None:
    """The lock makes a new user as its first change would (welcome included), so the
    usual new user costs no second write; when that change fails and another creates the
    user, the user is written as that one welcomed it."""
    made = User.new(UserProfile("ann"), T0).welcomed_by(XP_ONLY, RULES)
    decision = decide(batch([award("ann", 1, reach=XP_ONLY)], new=ANN, users=[made]))
    assert [e.trigger_id for e in decision.entries] == ["w-xp", ""]
    assert decision.users == ()
    failing = award("ann", 1, system="nope", reach=XP_ONLY)
    decision = decide(batch([failing, award("ann", 1)], new=ANN, users=[made]))
    assert {e.trigger_id for e in decision.entries} == {"w-xp", "w-gems", ""}
    assert [u.welcomed for u in decision.users] == [WELCOMED_AT_T0]


def test_a_user_that_existed_is_not_welcomed() -> None:
    decision = decide(batch([award("bob", 1)], existing={"bob": {}}))
    assert [e.trigger_id for e in decision.entries] == [""]


def test_an_event_of_a_new_user_answers_its_welcome_and_its_triggers() -> None:
    record = commands.RecordEvent(UserProfile("ann"), "lesson", Decimal(1))
    decision = decide(batch([CountEvent(record, T0)], new=frozenset({"ann"})))
    (answer,) = decision.answers
    assert isinstance(answer, Decided)
    assert isinstance(answer.result, EventResult)
    assert {k: r.added for k, r in answer.result.results.items()} == {"xp": 5 + 2, "gems": 7}
    assert [e.id for e in decision.events] == [answer.result.event_id]
    assert decision.totals == {("ann", "lesson", ""): Decimal(1)}


# -- level moves ---------------------------------------------------------------------------


def test_crossing_thresholds_moves_the_level_once_to_the_last_one_reached() -> None:
    decision = decide(batch([award("bob", 95), deduct("bob", 50)], existing={"bob": {"xp": 9}}))
    up, down = decision.level_changes
    assert (up.previous_level, up.new_level) == (None, level("gold", 100))
    assert (down.previous_level, down.new_level) == (level("gold", 100), level("silver", 10))
    assert [m.entry_id for m in decision.level_changes] == [e.id for e in decision.entries]
    first, second = outcomes(decision)
    assert first.level_change == up
    assert second.level_change == down


def test_a_change_within_a_level_moves_nothing() -> None:
    decision = decide(batch([award("bob", 5)], existing={"bob": {"xp": 10}}))
    assert decision.level_changes == ()


# -- what it reads and reports -------------------------------------------------------------


def test_a_reversal_already_made_in_the_batch_is_refused_the_second_time() -> None:
    first = decide(batch([award("bob", 10)], existing={"bob": {}}))
    (original,) = first.entries
    undo = commands.Reverse(original.id)
    decision = decide(
        batch(
            [ReverseEntry(undo, original, T0), ReverseEntry(undo, original, T0)],
            existing={"bob": {"xp": 10}},
        )
    )
    assert isinstance(decision.answers[0], Decided)
    assert decision.answers[1].reason == "ALREADY_REVERSED"  # type: ignore[union-attr]


def test_changed_lots_are_reported_and_what_was_read_is_left_unchanged() -> None:
    expiring = commands.Award("xp", UserProfile("bob"), 10, expire_time=T0 + timedelta(days=1))
    given_ = batch([AwardPoints(expiring, T0)], existing={"bob": {"xp": 0}})
    before = {k: a.copy() for k, a in given_.accounts.items()}
    decision = decide(given_)
    (entry,) = decision.entries
    assert [lot.entry_id for lot in decision.lots[("bob", "xp")]] == [entry.id]
    assert dict(given_.accounts) == before


def test_settling_an_account_with_nothing_due_writes_nothing() -> None:
    decision = decide(batch([SettleAccount("xp", "bob", T0)], existing={"bob": {"xp": 3}}))
    assert decision.answers == (Decided(None),)
    assert decision.entries == ()
    assert decision.accounts == ()


# -- determinism ---------------------------------------------------------------------------


def comparable(decision: BatchDecision) -> Any:
    """The decision as a value (errors compare by what they say, not by identity)."""

    def answer(a: Any) -> Any:
        if isinstance(a, TallyError):
            return (type(a).__name__, a.reason, a.metadata)
        return a

    return (
        tuple(answer(a) for a in decision.answers),
        decision.entries,
        decision.level_changes,
        decision.accounts,
        decision.lots,
        decision.totals,
        decision.events,
        decision.users,
        decision.remember,
        [answer(o) for o in outcomes(decision)],
    )


USERS = st.sampled_from(["ann", "bob", "cat"])
COMMANDS = st.one_of(
    st.builds(
        lambda u, n, k, s: award(u, n, key=k, system=s),
        USERS,
        st.integers(0, 120),
        st.sampled_from(["", "k1", "k2"]),
        st.sampled_from(["xp", "gems", "nope"]),
    ),
    st.builds(
        lambda u, n, k: deduct(u, n, key=k), USERS, st.integers(1, 60), st.sampled_from(["", "k1"])
    ),
    st.builds(
        lambda u, v: CountEvent(commands.RecordEvent(UserProfile(u), "lesson", Decimal(v)), T0),
        USERS,
        st.integers(1, 3),
    ),
    st.builds(lambda u: SettleAccount("xp", u, T0), USERS),
)
INPUTS = st.builds(
    lambda cmds, new, seed: batch(
        cmds, existing={"bob": {"xp": 40}, "cat": {}}, new=new, seed=seed
    ),
    st.lists(COMMANDS, min_size=1, max_size=8),
    st.just(frozenset({"ann"})),  # ann is new: the lock made her (or a dry run would)
    st.text(max_size=8),
)


@settings(max_examples=150, deadline=None)
@given(INPUTS)
def test_deciding_the_same_input_twice_gives_equal_decisions(given_: BatchInput) -> None:
    assert comparable(decide(given_)) == comparable(decide(given_))


@settings(max_examples=60, deadline=None)
@given(st.lists(COMMANDS, min_size=1, max_size=8))
def test_the_same_commands_under_one_seed_get_the_same_ids_and_another_seed_others(
    cmds: list[Command],
) -> None:
    existing = {"bob": {"xp": 40}, "cat": {}}
    one = decide(batch(cmds, existing=existing, new=frozenset({"ann"}), seed="a"))
    again = decide(batch(list(cmds), existing=existing, new=frozenset({"ann"}), seed="a"))
    other = decide(batch(cmds, existing=existing, new=frozenset({"ann"}), seed="b"))
    assert [e.id for e in one.entries] == [e.id for e in again.entries]
    assert not {e.id for e in one.entries} & {e.id for e in other.entries}
    assert [dataclasses.replace(e, id="") for e in one.entries] == [
        dataclasses.replace(e, id="") for e in other.entries
    ]


# -- helpers -------------------------------------------------------------------------------


def _one_entry() -> Any:
    return decide(batch([award("bob", 10)], existing={"bob": {}})).entries[0]


def _added(decision: BatchDecision) -> dict[str, int]:
    """What the batch's one event added, by system."""
    (answer,) = decision.answers
    assert isinstance(answer, Decided)
    assert isinstance(answer.result, EventResult)
    return {key: r.added for key, r in answer.result.results.items()}


def _balance() -> Any:
    return Account("xp", "bob", balance=10, total_earned=10).to_balance(0)


# -- reaches -------------------------------------------------------------------------------


def test_a_deduct_welcomes_no_one() -> None:
    """The change that created the user failed, so it is not welcomed yet; a deduction
    (of any reach) gives no welcome, and a later award of a key limited to xp welcomes it
    in xp alone (review: Deduct ran with every system)."""
    creating = award("ann", 3, system="nope", reach=XP_ONLY)  # fails: no such system
    for reach in (XP_ONLY, EVERY_SYSTEM):
        later = DeductPoints(commands.Deduct("xp", "ann", 1), T0, reach=reach)
        decision = decide(batch([creating, later, award("ann", 2, reach=XP_ONLY)], new=ANN))
        assert isinstance(decision.answers[1], InsufficientPoints)
        assert [(e.system_key, e.amount) for e in decision.entries] == [("xp", 5), ("xp", 2)]


def test_an_event_key_kept_before_keys_had_reaches_still_replays() -> None:
    """A RecordEvent key stored user-wide (scope '', before migration 0014) replays for a
    caller of any reach, showing that caller's systems only, rather than running again."""
    cmd = commands.RecordEvent(UserProfile("bob"), "lesson", idempotency_key="order-1")
    each = SystemEventResult(0, _balance())
    kept = EventResult("ev-1", Decimal(1), {"xp": each, "gems": each})
    remembered = {("bob", LEGACY_USER_SCOPE, "order-1"): Remembered("h", lambda: kept)}
    limited = Reach(frozenset({"xp"}))
    for reach, systems in ((limited, {"xp"}), (EVERY_SYSTEM, {"xp", "gems"})):
        event = CountEvent(cmd, T0, request_hash="h", reach=reach)
        decision = decide(batch([event], existing={"bob": {}}, remembered=remembered))
        (answer,) = decision.answers
        assert isinstance(answer, EventResult), answer
        assert (answer.replayed, answer.event_id, set(answer.results)) == (True, "ev-1", systems)
        assert decision.entries == ()
    other = CountEvent(cmd, T0, request_hash="another request", reach=limited)
    (refused,) = decide(batch([other], existing={"bob": {}}, remembered=remembered)).answers
    assert isinstance(refused, IdempotencyKeyReused)


def test_a_limited_deduct_of_a_user_seen_only_elsewhere_does_not_find_them() -> None:
    """A caller limited to xp sees a user only through an account in xp (as its reads
    do): a deduction must not tell it, by INSUFFICIENT_POINTS, that the user exists."""
    limited = Reach(frozenset({"xp"}))
    cmd = commands.Deduct("xp", "bob", 1)
    seen_in_gems = {"bob": {"gems": 10}}
    (hidden,) = decide(batch([DeductPoints(cmd, T0, reach=limited)], existing=seen_in_gems)).answers
    (short,) = decide(batch([DeductPoints(cmd, T0)], existing=seen_in_gems)).answers
    assert isinstance(hidden, UserNotFound)
    assert isinstance(short, InsufficientPoints)
    (own,) = decide(
        batch([DeductPoints(cmd, T0, reach=limited)], existing={"bob": {"xp": 0}})
    ).answers
    assert isinstance(own, InsufficientPoints)
