"""The stored form behind idempotency keys: a replayed response must equal the original.

A replay is read back from this JSON, so anything the codec loses (a timezone, a decimal
digit, a tuple turned list, a nested level) would change what a retrying caller sees. The
fingerprint must tell apart requests that differ and only those.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.domain import commands
from server.domain.model import (
    Balance,
    EntryType,
    LedgerEntry,
    Level,
    LevelChange,
    UserProfile,
)
from server.services.pipeline import codec
from server.services.pipeline.results import WriteResult
from tests.conftest import T0

GOLD = Level("lvl-1", "xp", "gold", "Gold", "shiny", "https://x/gold.png", 100)
SILVER = Level("lvl-0", "xp", "silver", "Silver", "", "", 0)


def entry(**fields: object) -> LedgerEntry:
    values: dict[str, object] = {
        "id": "6f1c2a7e-0000-4000-8000-000000000001",
        "system_key": "xp",
        "user_id": "alice",
        "type": EntryType.AWARD,
        "amount": 45,
        "base_amount": 10,
        "multiplier": Decimal("4.50"),
        "capped": False,
        "balance_after": 145,
        "reason": "quest",
        "create_time": T0.replace(microsecond=123456),
    }
    values.update(fields)
    return LedgerEntry(**values)  # type: ignore[arg-type]


def balance(**fields: object) -> Balance:
    values: dict[str, object] = {
        "system_key": "xp",
        "user_id": "alice",
        "balance": 145,
        "total_earned": 200,
        "total_spent": 40,
        "total_expired": 15,
        "max_points": 0,
    }
    values.update(fields)
    return Balance(**values)  # type: ignore[arg-type]


def round_trip(result: WriteResult) -> WriteResult:
    back = codec.loads(codec.dumps(result))
    assert isinstance(back, WriteResult)
    return back


def test_full_result_round_trips() -> None:
    result = WriteResult(
        entry=entry(
            sequence=987_654_321_012,
            boost_ids=("boost-a", "boost-b"),
            metadata={"order": {"id": 42, "lines": [1, 2.5, None, True, "x"]}, "ü": "ß"},
            idempotency_key="order:42",
            trigger_id="trg-1",
            event_type="quest.done",
            expire_time=datetime(2026, 3, 1, 8, 30, 0, 1, tzinfo=timezone(timedelta(hours=-5))),
            reverses_entry_id="6f1c2a7e-0000-4000-8000-000000000000",
        ),
        balance=balance(last_earned_time=T0, level=GOLD, max_points=10**15),
        level_change=LevelChange("xp", "alice", SILVER, GOLD, "e-1", T0, sequence=7),
        replayed=False,
    )
    back = round_trip(result)
    assert back == result
    # Equality alone would let a list pass for a tuple, or a naive time for an aware one.
    assert type(back.entry.boost_ids) is tuple
    assert isinstance(back.entry.multiplier, Decimal)
    assert str(back.entry.multiplier) == "4.50"
    assert back.entry.type is EntryType.AWARD
    assert back.entry.expire_time is not None
    assert back.entry.expire_time.utcoffset() == timedelta(hours=-5)
    assert back.entry.expire_time.microsecond == 1
    assert back.balance.last_earned_time is not None
    assert back.balance.last_earned_time.tzinfo is not None
    assert isinstance(back.balance.level, Level)
    assert back.level_change is not None
    assert isinstance(back.level_change.previous_level, Level)


def test_optionals_left_unset_come_back_unset() -> None:
    result = WriteResult(entry(), balance(), level_change=None)
    back = round_trip(result)
    assert back == result
    assert back.level_change is None
    assert back.balance.level is None
    assert back.balance.last_earned_time is None
    assert back.entry.expire_time is None
    assert back.entry.boost_ids == ()


def test_level_change_to_no_level_round_trips() -> None:
    change = LevelChange("xp", "alice", GOLD, None, "e-2", T0)
    result = WriteResult(entry(type=EntryType.REVERSAL, amount=-45), balance(), change)
    back = round_trip(result)
    assert back == result
    assert back.level_change is not None
    assert back.level_change.new_level is None


def test_replayed_flag_round_trips() -> None:
    assert round_trip(WriteResult(entry(), balance(), replayed=True)).replayed is True


def test_dumps_is_canonical() -> None:
    """Fingerprints hash this text, so equal values must give equal text."""
    a = WriteResult(entry(metadata={"b": 1, "a": 2}), balance())
    b = WriteResult(entry(metadata={"a": 2, "b": 1}), balance())
    assert codec.dumps(a) == codec.dumps(b)
    assert codec.dumps(a) != codec.dumps(WriteResult(entry(metadata={"a": 2}), balance()))
    decoded = json.loads(codec.dumps(a))
    assert decoded["entry"]["multiplier"] == "4.50"
    assert decoded["entry"]["type"] == "AWARD"


def test_the_stored_form_is_versioned_and_names_every_field() -> None:
    stored = json.loads(codec.dumps(WriteResult(entry(), balance())))
    assert stored["v"] == codec.FORMAT
    assert stored["entry"]["create_time"] == "2026-01-01T12:00:00.123456+00:00"
    # A response stored before a field existed loads with that field's default.
    del stored["entry"]["trigger_id"], stored["balance"]["level"]
    back = codec.loads(json.dumps(stored))
    assert isinstance(back, WriteResult)
    assert back.entry.trigger_id == ""
    assert back.balance.level is None


def test_a_stored_form_of_another_version_is_refused() -> None:
    stored = json.loads(codec.dumps(WriteResult(entry(), balance())))
    stored["v"] = codec.FORMAT + 1
    with pytest.raises(ValueError, match="format"):
        codec.loads(json.dumps(stored))


AWARD = commands.Award(
    "xp",
    UserProfile("alice", display_name="Alice", attributes={"tier": "gold", "a": "b"}),
    10,
    metadata={"k": [1], "j": {"y": 1, "x": 2}},
    idempotency_key="key-1",
    expire_time=T0,
)


def test_fingerprints_ignore_key_order_the_key_and_the_dry_run_flag() -> None:
    same = replace(
        AWARD,
        user=UserProfile("alice", display_name="Alice", attributes={"a": "b", "tier": "gold"}),
        metadata={"j": {"x": 2, "y": 1}, "k": [1]},
        idempotency_key="key-2",
        validate_only=True,
    )
    assert codec.fingerprint("Award", same) == codec.fingerprint("Award", AWARD)
    assert len(codec.fingerprint("Award", AWARD)) == 64


@pytest.mark.parametrize(
    "changed",
    [
        replace(AWARD, amount=11),
        replace(AWARD, reason="other"),
        replace(AWARD, metadata={"k": [1]}),
        replace(AWARD, expire_time=T0.replace(microsecond=1)),
        replace(AWARD, user=UserProfile("alice", display_name="Alice")),
        replace(
            AWARD,
            user=UserProfile("bob", display_name="Alice", attributes={"tier": "gold", "a": "b"}),
        ),
        replace(AWARD, skip_boosts=True),
        replace(AWARD, system_key="coins"),
    ],
)
def test_fingerprints_tell_apart_requests_that_differ(changed: commands.Award) -> None:
    assert codec.fingerprint("Award", changed) != codec.fingerprint("Award", AWARD)


def test_fingerprints_tell_apart_operations_and_sets() -> None:
    assert codec.fingerprint("Deduct", AWARD) != codec.fingerprint("Award", AWARD)
    a = commands.Deduct("xp", "alice", 5, idempotency_key="k")
    assert codec.fingerprint("Deduct", a) != codec.fingerprint("Deduct", replace(a, amount=6))
    assert codec.fingerprint("Deduct", replace(a, idempotency_key="")) == ""


# -- any WriteResult -----------------------------------------------------------------------

texts = st.text(max_size=20)
ints = st.integers(-(2**63), 2**63 - 1)
times = st.datetimes(
    min_value=datetime(1970, 1, 1),
    max_value=datetime(9998, 12, 31),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))]),
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)
levels = st.builds(Level, texts, texts, texts, texts, texts, texts, ints)
entries = st.builds(
    LedgerEntry,
    id=texts,
    system_key=texts,
    user_id=texts,
    type=st.sampled_from(EntryType),
    amount=ints,
    base_amount=ints,
    multiplier=st.decimals(allow_nan=False, allow_infinity=False),
    capped=st.booleans(),
    balance_after=ints,
    reason=texts,
    create_time=times,
    sequence=ints,
    boost_ids=st.lists(texts, max_size=3).map(tuple),
    metadata=st.dictionaries(texts, json_values, max_size=4),
    idempotency_key=texts,
    trigger_id=texts,
    event_type=texts,
    expire_time=st.none() | times,
    reverses_entry_id=texts,
)
balances = st.builds(
    Balance,
    texts,
    texts,
    ints,
    ints,
    ints,
    ints,
    ints,
    last_earned_time=st.none() | times,
    level=st.none() | levels,
)
changes = st.builds(
    LevelChange,
    texts,
    texts,
    st.none() | levels,
    st.none() | levels,
    texts,
    times,
    sequence=ints,
)
results = st.builds(WriteResult, entries, balances, st.none() | changes, st.booleans())


@given(results)
def test_any_write_result_round_trips(result: WriteResult) -> None:
    back = round_trip(result)
    assert back == result
    assert str(back.entry.multiplier) == str(result.entry.multiplier)
    assert codec.dumps(back) == codec.dumps(result)


@given(
    st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
    )
)
def test_timestamps_convert_exactly_both_ways(value: datetime) -> None:
    """time_out is hand-rolled for speed: it must agree with protobuf's own conversion."""
    from google.protobuf import timestamp_pb2

    from server.api import convert

    expected = timestamp_pb2.Timestamp()
    expected.FromDatetime(value)
    assert convert.time_out(value) == expected
    assert expected.ToDatetime(tzinfo=UTC) == value
