"""Where a user has been welcomed (model.Welcomed): the systems a call owes, the time
bound a call of every system leaves, and the stored form."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.domain.access import EVERY_SYSTEM, Reach
from server.domain.model import WELCOMED_NOWHERE, LevelBasis, PointsSystem, Welcomed
from server.domain.rules import Rules
from tests.conftest import T0

T1 = T0 + timedelta(hours=1)
T2 = T0 + timedelta(hours=2)


def points_system(key: str, created: datetime) -> PointsSystem:
    return PointsSystem(key, key, "", "", 0, LevelBasis.BALANCE, created, created)


# a and b exist at T0, c is created at T1, d at T2
RULES = Rules.of(
    [
        points_system("a", T0),
        points_system("b", T0),
        points_system("c", T1),
        points_system("d", T2),
    ],
    [],
)


def reach(*keys: str) -> Reach:
    return Reach(frozenset(keys))


def test_rules_know_their_newest_system() -> None:
    assert RULES.newest_system == T2
    assert Rules().newest_system is None


def test_a_user_welcomed_nowhere_is_owed_every_system_the_call_may_use() -> None:
    assert WELCOMED_NOWHERE.owed(EVERY_SYSTEM, RULES) == {"a", "b", "c", "d"}
    assert WELCOMED_NOWHERE.owed(reach("a", "c"), RULES) == {"a", "c"}


def test_a_time_bound_covers_the_systems_created_at_or_before_it_alone() -> None:
    welcomed = Welcomed(through=T1)
    assert welcomed.owed(EVERY_SYSTEM, RULES) == {"d"}
    assert welcomed.owed(reach("a", "c"), RULES) == set()
    assert welcomed.owed(reach("a", "d"), RULES) == {"d"}
    # the systems named count as well as the bound
    assert Welcomed(frozenset({"d"}), through=T0).owed(EVERY_SYSTEM, RULES) == {"c"}


def test_a_call_of_every_system_welcomes_through_the_newest_system_it_read() -> None:
    """Not the clock's time: a system created after the rules were read is still owed."""
    assert WELCOMED_NOWHERE.after(EVERY_SYSTEM, RULES) == Welcomed(through=T2)
    assert Welcomed(frozenset({"c"}), T0).after(EVERY_SYSTEM, RULES) == Welcomed(through=T2)
    # a system the rules do not know (created since, welcomed by a call that read newer
    # rules) is kept
    older = Rules.of([points_system("a", T0), points_system("b", T0)], [])
    assert Welcomed(frozenset({"c"})).after(EVERY_SYSTEM, older) == Welcomed(frozenset({"c"}), T0)


def test_a_limited_call_adds_the_existing_systems_it_welcomed_in_alone() -> None:
    """Not the reach's systems that do not exist yet: created later, they are owed."""
    welcomed = Welcomed(through=T0).after(reach("c", "e"), RULES)
    assert welcomed == Welcomed(frozenset({"c"}), T0)
    later = Rules.of([*RULES.systems.values(), points_system("e", T2 + timedelta(1))], [])
    assert welcomed.owed(reach("c", "e"), later) == {"e"}


def test_the_cheap_path_returns_the_same_value() -> None:
    """Welcomed through the newest system (or no system to owe): no new value, so the
    change writes no user."""
    for welcomed in (Welcomed(through=T2), Welcomed(frozenset({"x"}), T2 + timedelta(1))):
        for call in (EVERY_SYSTEM, reach("a"), reach("zz")):
            assert not welcomed.owed(call, RULES)
            assert welcomed.after(call, RULES) is welcomed
    owed_nothing = Welcomed(frozenset({"d"}), T1)
    assert owed_nothing.after(reach("a", "d"), RULES) is owed_nothing
    assert WELCOMED_NOWHERE.after(EVERY_SYSTEM, Rules()) is WELCOMED_NOWHERE


@pytest.mark.parametrize(
    ("welcomed", "name"),
    [
        (WELCOMED_NOWHERE, ""),
        (Welcomed(frozenset({"b", "a"})), "a,b"),
        (Welcomed(through=T0), "*2026-01-01T12:00:00+00:00"),
        (
            Welcomed(frozenset({"c", "a-1"}), T0 + timedelta(microseconds=5)),
            "*2026-01-01T12:00:00.000005+00:00;a-1,c",
        ),
        # kept in UTC whatever zone it was given in
        (
            Welcomed(through=datetime(2026, 1, 1, 14, tzinfo=timezone(timedelta(hours=2)))),
            "*2026-01-01T12:00:00+00:00",
        ),
    ],
)
def test_the_stored_form(welcomed: Welcomed, name: str) -> None:
    assert welcomed.name == name
    assert Welcomed.named(name) == welcomed


@given(
    st.frozensets(st.from_regex(r"[a-z0-9][a-z0-9_-]{0,63}", fullmatch=True), max_size=4),
    st.none() | st.datetimes(timezones=st.just(UTC)),
)
def test_every_value_round_trips(systems: frozenset[str], through: datetime | None) -> None:
    welcomed = Welcomed(systems, through)
    assert Welcomed.named(welcomed.name) == welcomed


@pytest.mark.parametrize("name", ["*", "*;a", "*yesterday"])
def test_a_name_without_a_time_after_its_star_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="Invalid isoformat"):
        Welcomed.named(name)


@pytest.mark.parametrize(
    "name", ["*2026-01-01T12:00:00+00:00;", "*2026-01-01T12:00:00", "a,,b", ",", "a;b"]
)
def test_a_name_no_value_gives_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="not a welcome"):
        Welcomed.named(name)
